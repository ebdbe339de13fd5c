//! Start-up steps both modes share: the error users see, and the files
//! named on the command line, opened early (before anything can fail
//! halfway, and before privileges are dropped).

use crate::conf::Config;
use crate::isolate::{self, Leftovers, Ready};
use crate::pcap::Pcap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A start-up failure: one line for the user, exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// `what: why`, the shape of every start-up error.
pub fn err_at(what: impl std::fmt::Display, e: impl std::fmt::Display) -> StartError {
    StartError(format!("{what}: {}", plain(&e)))
}

/// An error's text without std's " (os error N)" suffix: users know the
/// words, the number is noise.
pub fn plain(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// Files named on the command line.
pub struct OpenedFiles {
    /// `-P`, written once the daemon runs.
    pub pidfile: Option<File>,
    /// `-p`.
    pub pcap: Option<Pcap>,
    /// `-l`.
    pub log: Option<File>,
}

fn create_file(path: &Path, opt: &str, leftovers: &mut Leftovers) -> Result<File, StartError> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| err_at(format_args!("{opt} {}", path.display()), e))?;
    leftovers.add(path);
    Ok(f)
}

/// Open (create) the pidfile, capture file and log file, remembering in
/// `leftovers` what must be removed at exit (the pidfile).
///
/// # Errors
/// The first file that can't be opened, as `-P /x: Permission denied`.
pub fn open_files(conf: &Config, leftovers: &mut Leftovers) -> Result<OpenedFiles, StartError> {
    let pidfile = match &conf.pidfile {
        Some(p) => Some(create_file(p, "-P", leftovers)?),
        None => None,
    };
    let pcap = match &conf.pcap {
        Some(p) => {
            let f = create_file(p, "-p", leftovers)?;
            // The capture is the user's result: keep it when we exit.
            leftovers.forget_path(p);
            Some(Pcap::new(f).map_err(|e| err_at(format_args!("-p {}", p.display()), e))?)
        }
        None => None,
    };
    let log = match &conf.log_file {
        Some(p) => {
            // Readable too: when the file is full, the logger moves the
            // newest lines to the front through this same descriptor.
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
                .map_err(|e| err_at(format_args!("-l {}", p.display()), e))?;
            Some(f)
        }
        None => None,
    };
    Ok(OpenedFiles { pidfile, pcap, log })
}

/// The common tail of start-up, once the guest side is ready: fork to
/// background unless `stay` (or `-f`), write the pidfile, switch logging
/// to its final place, and drop privileges unless `keep_ids`. Returns the
/// handle that lets the foreground process exit.
///
/// # Errors
/// Forking, writing the pidfile or changing IDs failed.
pub fn detach_and_drop(
    conf: &Config,
    files: OpenedFiles,
    leftovers: &mut Leftovers,
    stay: bool,
    keep_ids: bool,
    before_drop: impl FnOnce() -> Result<(), StartError>,
) -> Result<(Ready, Option<Pcap>), StartError> {
    let ready = if conf.foreground || stay {
        Ready::foreground()
    } else {
        let r = isolate::daemonise(leftovers).map_err(|e| err_at("daemonise", e))?;
        if files.log.is_none() {
            crate::log::use_syslog();
        }
        r
    };
    if let Some(mut f) = files.pidfile {
        isolate::write_pidfile(&mut f).map_err(|e| err_at("-P", e))?;
    }
    if let Some(f) = files.log {
        crate::log::use_file(f, conf.log_size);
    }
    // In the process that serves (after the fork), with privileges:
    // threads that must enter namespaces start here.
    before_drop()?;
    if !keep_ids {
        let ids = isolate::target_ids(conf.runas);
        isolate::drop_privileges(ids, leftovers.paths()).map_err(|e| err_at("--runas", e))?;
    }
    Ok((ready, files.pcap))
}

/// What the guest will be told, as upstream prints it at start-up.
pub fn log_summary(conf: &Config) {
    match (&conf.template_if4, &conf.template_if6) {
        (Some(a), Some(b)) if a != b => log::info!("Outbound interfaces: {a} (IPv4), {b} (IPv6)"),
        (Some(a), _) | (None, Some(a)) => log::info!("Outbound interface: {a}"),
        (None, None) => log::info!("No outbound interface: local mode"),
    }
    log::info!("ARP: address {}", crate::wire::Mac(conf.our_mac));
    if let Some(ip4) = &conf.ip4 {
        log::info!(
            "DHCP: assign {}/{}, router {}",
            ip4.addr,
            ip4.prefix_len,
            ip4.gateway
        );
    }
    if let Some(ip6) = &conf.ip6 {
        log::info!("NDP/DHCPv6: assign {}, router {}", ip6.addr, ip6.gateway);
    }
}
