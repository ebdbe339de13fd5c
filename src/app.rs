//! Program entry: argv[0] picks the mode; parse, probe, configure, run;
//! turn the outcome into an exit status.

use crate::cli::{self, CliError};
use crate::conf::{self, Mode};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The mode for the name we were started under: `pasta*` is pasta,
/// anything else passt.
pub fn mode_from_argv0(argv0: &OsString) -> Mode {
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("pasta") {
        Mode::Pasta
    } else {
        Mode::Passt
    }
}

/// Run the program with the process's arguments.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mode = args.first().map(mode_from_argv0).unwrap_or(Mode::Passt);
    // Until the options are known, what the mode logs without any.
    crate::log::init(mode.name(), mode.default_log_level());
    match run(mode, args) {
        Ok(code) => code,
        Err(msg) => {
            let msg = crate::startup::plain(&msg);
            let _ = writeln!(std::io::stderr(), "{}: {msg}", mode.name());
            ExitCode::FAILURE
        }
    }
}

fn run(mode: Mode, args: Vec<OsString>) -> Result<ExitCode, String> {
    let cli = match cli::parse(mode, args) {
        Ok(c) => c,
        Err(CliError::Help(text)) | Err(CliError::Version(text)) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
            return Ok(ExitCode::SUCCESS);
        }
        Err(CliError::Invalid(line)) => return Err(line),
    };
    let (if4, if6) = cli.probe_hints();
    let mut host =
        crate::netlink::probe_host(if4.as_deref(), if6.as_deref()).map_err(|e| e.to_string())?;
    let (ns, search) = conf::resolv::read(Path::new("/etc/resolv.conf"));
    host.nameservers = ns;
    host.search = search;
    let conf = conf::build::build(mode, &cli, &host).map_err(|e| e.to_string())?;
    crate::log::set_level(conf.log_level());
    if cli.ipv4_wanted() && conf.ip4.is_none() {
        log::info!("IPv4: no usable host interface, disabled");
    }
    if cli.ipv6_wanted() && conf.ip6.is_none() {
        log::info!("IPv6: no usable host interface, disabled");
    }
    log::debug!("{conf:#?}");
    match mode {
        Mode::Passt => crate::passt::run(&conf).map_err(|e| e.to_string())?,
        Mode::Pasta => return crate::pasta::run(&conf).map_err(|e| e.to_string()),
    }
    Ok(ExitCode::SUCCESS)
}
