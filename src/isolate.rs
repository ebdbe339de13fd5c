//! Process isolation and life cycle: the stages `main` walks through once,
//! in this order.
//!
//! 1. `initial`: block the signals we handle through a signalfd.
//! 2. files named on the command line are opened (by the caller) while we
//!    may still be root, so `-p /root/x.pcap` works.
//! 3. `daemonise`: fork to background once the guest side is ready to be
//!    connected to; the foreground process exits only when the daemon says
//!    it is serving (`Ready::notify`), so callers can rely on the socket and
//!    pidfile as soon as we return.
//! 4. `drop_privileges`: root becomes `nobody` (or `--runas`).
//!
//! Later stages (empty mount namespace, seccomp) belong here too.

use crate::conf::RunAs;
use crate::sys::{self, Forked};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Gid, Uid};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Signals that end the program cleanly.
pub const EXIT_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

/// The set of `EXIT_SIGNALS`.
pub fn exit_sigset() -> SigSet {
    let mut set = SigSet::empty();
    for s in EXIT_SIGNALS {
        set.add(s);
    }
    set
}

/// Prints the counters once (`crate::stats`); doesn't end the program.
pub const STATS_SIGNAL: Signal = Signal::SIGUSR1;

/// Every signal the loop's signalfd takes: `EXIT_SIGNALS` and `STATS_SIGNAL`.
pub fn handled_sigset() -> SigSet {
    let mut set = exit_sigset();
    set.add(STATS_SIGNAL);
    set
}

/// Stage 1: block the signals we handle so they queue on a signalfd
/// instead of killing us before we cleaned up (or, for SIGUSR1, at all).
///
/// # Errors
/// `sigprocmask` failure.
pub fn initial() -> io::Result<()> {
    handled_sigset().thread_block()?;
    raise_fd_limit();
    Ok(())
}

/// Every flow holds a socket: take all the descriptors we are allowed
/// (the soft limit is often 1024, the hard one much higher); the flow
/// table is then sized to what we got (`fd_limit`).
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        log::debug!("can't raise the open files limit to {hard}: {e}");
    }
}

/// The open files limit we run under (after `initial` raised it): what
/// the flow table's capacity is derived from (`flow::capacity_for`).
pub fn fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Files we created and must remove when we exit.
#[derive(Debug, Default)]
pub struct Leftovers {
    paths: Vec<PathBuf>,
}

impl Leftovers {
    /// Remember `p` for removal.
    pub fn add(&mut self, p: &Path) {
        self.paths.push(p.to_path_buf());
    }

    /// Stop remembering `p`: it is meant to outlive us.
    pub fn forget_path(&mut self, p: &Path) {
        self.paths.retain(|q| q != p);
    }

    /// The remembered paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Keep the files: another process owns them now.
    pub fn forget(&mut self) {
        self.paths.clear();
    }

    /// Remove every remembered file, carrying on past failures and
    /// reporting each one.
    pub fn remove_all(&mut self) {
        for p in self.paths.drain(..) {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    log::warn!("can't remove {}: {e}", p.display());
                }
                _ => {}
            }
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Held by the daemon until it is serving; tells the waiting foreground
/// process to exit 0.
pub struct Ready {
    pipe: Option<OwnedFd>,
}

impl Ready {
    /// A no-op handle for foreground operation.
    pub fn foreground() -> Self {
        Ready { pipe: None }
    }

    /// Let the foreground process exit successfully.
    pub fn notify(mut self) {
        if let Some(fd) = self.pipe.take() {
            let _ = File::from(fd).write_all(b"1");
        }
    }
}

/// Stage 3: fork to background.
///
/// Returns only in the child, which is now a session leader with its
/// standard streams on /dev/null. The parent waits until the child calls
/// `Ready::notify` and exits 0, or exits 1 if the child dies first.
///
/// Must be called while single-threaded.
///
/// # Errors
/// `pipe`, `fork`, `setsid` or redirection failure (before forking, or in
/// the child).
pub fn daemonise(leftovers: &mut Leftovers) -> io::Result<Ready> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match sys::fork()? {
        Forked::Parent(_) => {
            drop(wr);
            leftovers.forget();
            let mut b = [0u8; 1];
            let ok = matches!(File::from(rd).read(&mut b), Ok(1));
            // Flush nothing and run no destructors: the files belong to
            // the daemon now.
            std::process::exit(if ok { 0 } else { 1 });
        }
        Forked::Child => {
            drop(rd);
            nix::unistd::setsid()?;
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            nix::unistd::dup2_stdin(&null)?;
            nix::unistd::dup2_stdout(&null)?;
            nix::unistd::dup2_stderr(&null)?;
            Ok(Ready { pipe: Some(wr) })
        }
    }
}

/// Write our PID to an already opened pidfile.
///
/// # Errors
/// Write failure.
pub fn write_pidfile(f: &mut File) -> io::Result<()> {
    f.set_len(0)?;
    f.rewind()?;
    writeln!(f, "{}", std::process::id())?;
    f.flush()
}

/// Whether this process lives in the initial user namespace, where every
/// ID maps to itself. Rootless podman runs us as "root" in a user namespace
/// of its own, where typically no `nobody` exists to become.
fn in_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f == ["0", "0", "4294967295"]
    })
}

/// Resolve who we become: `--runas`, or `nobody` when started as root in
/// the initial user namespace (in any other, "root" is already an
/// unprivileged user outside, and `nobody` may not even be mapped).
pub fn target_ids(runas: Option<RunAs>) -> Option<RunAs> {
    if runas.is_some() {
        return runas;
    }
    if !Uid::effective().is_root() || !in_initial_userns() {
        return None;
    }
    match nix::unistd::User::from_name("nobody") {
        Ok(Some(u)) => Some(RunAs {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        _ => Some(RunAs {
            uid: 65534,
            gid: 65534,
        }),
    }
}

/// Stage 4: become `ids`, handing the files in `own` to that user first so
/// we can still remove them at exit (a sticky /tmp only lets owners unlink).
///
/// # Errors
/// `setgroups`/`setgid`/`setuid` failure, naming the step.
pub fn drop_privileges(ids: Option<RunAs>, own: &[PathBuf]) -> io::Result<()> {
    let Some(ids) = ids else {
        return Ok(());
    };
    if Uid::effective().as_raw() == ids.uid && Gid::effective().as_raw() == ids.gid {
        return Ok(());
    }
    for p in own {
        if let Err(e) = nix::unistd::chown(
            p,
            Some(Uid::from_raw(ids.uid)),
            Some(Gid::from_raw(ids.gid)),
        ) {
            log::debug!("can't hand {} to UID {}: {e}", p.display(), ids.uid);
        }
    }
    let step = |what: &str, r: nix::Result<()>| {
        r.map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")))
    };
    if Uid::effective().is_root() {
        step("setgroups", nix::unistd::setgroups(&[]))?;
    }
    step("setgid", nix::unistd::setgid(Gid::from_raw(ids.gid)))?;
    step("setuid", nix::unistd::setuid(Uid::from_raw(ids.uid)))?;
    log::debug!("running as UID {}, GID {}", ids.uid, ids.gid);
    Ok(())
}
