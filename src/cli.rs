//! Command-line options of passt and pasta: parsing, per-value checks and help text.
//!
//! Both faces accept the same option names, so one clap definition serves
//! both. Each option that only one face accepts carries that face's help
//! heading ([`PASST_ONLY`] or [`PASTA_ONLY`]), and that heading is the single
//! source of truth for the mode check: the other face hides such options
//! from its help and rejects them by name.
//!
//! Parsing follows getopt_long conventions, as upstream does: an option
//! that takes a value takes the next word whatever it looks like, long
//! names may be abbreviated, and for pasta the first non-option word starts
//! the command (everything after it belongs to the command). Options that
//! the manual says may be repeated keep every occurrence in order; for the
//! others, the last one wins.
//!
//! This module checks values one by one and the few rules between options
//! that need no host knowledge. `conf::build` turns a [`Cli`] into a
//! `Config`.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, ColorChoice, CommandFactory, FromArgMatches, Parser};

use crate::conf::ports::{self, PortSpec, PortSpecError};
use crate::conf::{Mode, NsTarget};

/// Help heading of the options only passt accepts.
pub const PASST_ONLY: &str = "passt-only options";
/// Help heading of the options only pasta accepts.
pub const PASTA_ONLY: &str = "pasta-only options";

/// Smallest `--log-size`: room for a few hundred lines, so that trimming
/// old entries from the start of the file still leaves something useful.
pub const MIN_LOG_SIZE: u64 = 4096;

/// Largest MTU we advertise (see `conf::DEFAULT_MTU`).
pub const MAX_MTU: u16 = crate::conf::DEFAULT_MTU;

/// Smallest non-zero MTU: the IPv4 minimum (RFC 791).
pub const MIN_MTU: u16 = 68;

/// Longest host name or FQDN we pass on (RFC 1035 limits names to 253
/// characters in text form).
pub const MAX_DNAME_LEN: usize = 253;

/// Where `--netns NAME` looks for bound namespaces, as ip-netns(8) does.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Why parsing stopped: help or version to print, or a bad command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// `-h`/`--help`: print this on stdout and exit 0.
    #[error("{0}")]
    Help(String),
    /// `--version`: print this on stdout and exit 0.
    #[error("{0}")]
    Version(String),
    /// A bad command line: one line naming the option and the reason.
    #[error("{0}")]
    Invalid(String),
}

/// A value that may also be the word `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrNone<T> {
    /// The word `none`.
    None,
    /// Anything else, parsed.
    Value(T),
}

/// An `-a` value: address and optional CIDR prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrArg {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length after `/`, if given.
    pub prefix_len: Option<u8>,
}

/// A `--runas` value, not yet looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAsArg {
    /// UID or login name.
    pub user: String,
    /// GID or group name, if given.
    pub group: Option<String>,
}

/// Every option of passt and pasta, as given (checked one by one).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    disable_version_flag = true,
    args_override_self = true,
    infer_long_args = true,
    color = ColorChoice::Never
)]
pub struct Cli {
    /// Be verbose, don't log to the system logger
    #[arg(short, long)]
    pub debug: bool,

    /// Be extra verbose, show single packets (implies --debug)
    #[arg(long)]
    pub trace: bool,

    /// Display event statistics, at least DELAY seconds apart
    #[arg(long, value_name = "DELAY", value_parser = parse_stats)]
    pub stats: Option<u32>,

    /// Don't print informational messages
    #[arg(short, long, overrides_with_all = ["debug", "trace"])]
    pub quiet: bool,

    /// Don't run in background
    #[arg(short, long)]
    pub foreground: bool,

    /// Deprecated, no effect
    #[arg(short = 'e', long)]
    pub stderr: bool,

    /// Log to file PATH, not to the system logger
    #[arg(short, long, value_name = "PATH", value_parser = parse_path)]
    pub log_file: Option<PathBuf>,

    /// Maximum size of the log file in bytes [default: 1048576]
    #[arg(long, value_name = "SIZE", value_parser = parse_log_size)]
    pub log_size: Option<u64>,

    /// User (and group) to run as [default: nobody if root]
    #[arg(long, value_name = "USER[:GROUP]", value_parser = parse_runas)]
    pub runas: Option<RunAsArg>,

    /// Configuration and control socket for pesto(1) (experimental)
    #[arg(short = 'c', long, value_name = "PATH", value_parser = parse_path)]
    pub conf_path: Option<PathBuf>,

    /// Show version and exit
    #[arg(long)]
    pub version: bool,

    /// Capture guest-side packets to FILE in pcap format
    #[arg(short, long, value_name = "FILE", value_parser = parse_path)]
    pub pcap: Option<PathBuf>,

    /// Write our PID to FILE once set up
    #[arg(short = 'P', long = "pid", value_name = "FILE", value_parser = parse_path)]
    pub pidfile: Option<PathBuf>,

    /// MTU to assign via DHCP/NDP, 0 to not assign one [default: 65520]
    #[arg(short, long, value_parser = parse_mtu)]
    pub mtu: Option<u16>,

    /// Address to assign, ADDR[/PREFIX_LEN] (once per family)
    #[arg(short, long, value_name = "ADDR", value_parser = parse_address)]
    pub address: Vec<AddrArg>,

    /// IPv4 netmask to assign, dot-decimal or number of bits
    #[arg(short, long, value_name = "MASK", value_parser = parse_netmask)]
    pub netmask: Option<u8>,

    /// Our MAC address towards the guest [default: 9a:55:9a:55:9a:55]
    #[arg(short = 'M', long, value_name = "ADDR", value_parser = parse_mac)]
    pub mac_addr: Option<[u8; 6]>,

    /// IPv4 or IPv6 gateway to assign (once per family)
    #[arg(short, long, value_name = "ADDR", value_parser = parse_gateway)]
    pub gateway: Vec<IpAddr>,

    /// Host interface to take addresses and routes from
    #[arg(short, long, value_name = "NAME", value_parser = parse_ifname)]
    pub interface: Option<String>,

    /// Source address for outbound sockets (once per family)
    #[arg(short, long, value_name = "ADDR", value_parser = parse_outbound)]
    pub outbound: Vec<IpAddr>,

    /// Bind IPv4 outbound sockets to interface NAME
    #[arg(long, value_name = "NAME", value_parser = parse_ifname)]
    pub outbound_if4: Option<String>,

    /// Bind IPv6 outbound sockets to interface NAME
    #[arg(long, value_name = "NAME", value_parser = parse_ifname)]
    pub outbound_if6: Option<String>,

    /// Nameserver for the guest instead of resolv.conf's, or 'none'
    #[arg(short = 'D', long, value_name = "ADDR", value_parser = parse_dns)]
    pub dns: Vec<OrNone<IpAddr>>,

    /// Redirect DNS queries for ADDR to the host nameserver
    #[arg(long, value_name = "ADDR", value_parser = parse_dns_forward)]
    pub dns_forward: Vec<IpAddr>,

    /// Host nameserver for --dns-forward queries
    #[arg(long, value_name = "ADDR", value_parser = parse_dns_host)]
    pub dns_host: Vec<IpAddr>,

    /// Space-separated search list, or 'none' [default: resolv.conf's]
    #[arg(short = 'S', long, value_name = "LIST", value_parser = parse_search)]
    pub search: Vec<OrNone<Vec<String>>>,

    /// Don't announce nameservers via DHCP, DHCPv6 or NDP
    #[arg(long, help_heading = PASST_ONLY)]
    pub no_dhcp_dns: bool,

    /// Announce nameservers via DHCP, DHCPv6 and NDP
    #[arg(long, help_heading = PASTA_ONLY)]
    pub dhcp_dns: bool,

    /// Don't announce the search list via DHCP, DHCPv6 or NDP
    #[arg(long, help_heading = PASST_ONLY)]
    pub no_dhcp_search: bool,

    /// Announce the search list via DHCP, DHCPv6 and NDP
    #[arg(long, help_heading = PASTA_ONLY)]
    pub dhcp_search: bool,

    /// Disable the TCP protocol handler
    #[arg(long)]
    pub no_tcp: bool,

    /// Disable the UDP protocol handler
    #[arg(long)]
    pub no_udp: bool,

    /// Disable the ICMP/ICMPv6 handler (implies --no-ndp)
    #[arg(long)]
    pub no_icmp: bool,

    /// Disable the DHCP server
    #[arg(long)]
    pub no_dhcp: bool,

    /// Disable Neighbor Discovery
    #[arg(long)]
    pub no_ndp: bool,

    /// Disable the DHCPv6 server
    #[arg(long)]
    pub no_dhcpv6: bool,

    /// Disable Router Advertisements
    #[arg(long)]
    pub no_ra: bool,

    /// Allow any address to be bound for -t and -u
    #[arg(long)]
    pub freebind: bool,

    /// Guest address that means the host, or 'none' [default: gateway]
    #[arg(long, value_name = "ADDR", value_parser = parse_map_addr)]
    pub map_host_loopback: Vec<OrNone<IpAddr>>,

    /// Don't map the gateway address to the host
    #[arg(long)]
    pub no_map_gw: bool,

    /// Fall back to chroot() if pivot_root() fails
    #[arg(long)]
    pub chroot_fallback: bool,

    /// Address to map to the guest's address on the host, or 'none'
    #[arg(long, value_name = "ADDR", value_parser = parse_map_addr)]
    pub map_guest_addr: Vec<OrNone<IpAddr>>,

    /// IPv4-only operation
    #[arg(short = '4', long, overrides_with = "ipv6_only")]
    pub ipv4_only: bool,

    /// IPv6-only operation
    #[arg(short = '6', long)]
    pub ipv6_only: bool,

    /// Host name to send via DHCP
    #[arg(short = 'H', long, value_name = "NAME", value_parser = parse_dname)]
    pub hostname: Option<String>,

    /// FQDN to send via DHCP and DHCPv6
    #[arg(long, value_name = "NAME", value_parser = parse_dname)]
    pub fqdn: Option<String>,

    /// TCP ports to forward: none, all, [ADDR[%IF]/]PORTS, auto (pasta)
    #[arg(short, long, value_name = "SPEC", value_parser = parse_ports_pasta)]
    pub tcp_ports: Vec<PortSpec>,

    /// UDP ports to forward to the guest, as for --tcp-ports
    #[arg(short, long, value_name = "SPEC", value_parser = parse_ports_pasta)]
    pub udp_ports: Vec<PortSpec>,

    /// Hypervisor socket (or --socket) [default: free /tmp/passt_N.socket]
    #[arg(
        short = 's',
        long,
        alias = "socket",
        value_name = "PATH",
        value_parser = parse_path,
        help_heading = PASST_ONLY,
        overrides_with = "fd",
    )]
    pub socket_path: Option<PathBuf>,

    /// Enable vhost-user on the --socket path
    #[arg(long, help_heading = PASST_ONLY)]
    pub vhost_user: bool,

    /// Print vhost-user back-end capabilities as JSON
    #[arg(long, help_heading = PASST_ONLY)]
    pub print_capabilities: bool,

    /// Socket for passt-repair(1), or 'none'
    #[arg(long, value_name = "PATH", value_parser = parse_repair_path, help_heading = PASST_ONLY)]
    pub repair_path: Option<OrNone<PathBuf>>,

    /// Deprecated: exit after migrating away
    #[arg(long, help_heading = PASST_ONLY)]
    pub migrate_exit: bool,

    /// Deprecated: close sockets after migrating away
    #[arg(long, help_heading = PASST_ONLY)]
    pub migrate_no_linger: bool,

    /// Serve this already connected socket (implies --one-off)
    #[arg(short = 'F', long, value_name = "FD", value_parser = parse_fd, help_heading = PASST_ONLY)]
    pub fd: Option<RawFd>,

    /// Quit once the first guest disconnects
    #[arg(short = '1', long, help_heading = PASST_ONLY)]
    pub one_off: bool,

    /// Tap interface name in the namespace [default: host's, or tap0]
    #[arg(
        short = 'I',
        long,
        value_name = "NAME",
        value_parser = parse_ifname,
        help_heading = PASTA_ONLY,
    )]
    pub ns_ifname: Option<String>,

    /// TCP ports to forward from namespace to host [default: auto]
    #[arg(
        short = 'T',
        long,
        value_name = "SPEC",
        value_parser = parse_ports_ns,
        help_heading = PASTA_ONLY,
    )]
    pub tcp_ns: Vec<PortSpec>,

    /// UDP ports to forward from namespace to host [default: auto]
    #[arg(
        short = 'U',
        long,
        value_name = "SPEC",
        value_parser = parse_ports_ns,
        help_heading = PASTA_ONLY,
    )]
    pub udp_ns: Vec<PortSpec>,

    /// Deliver host loopback connections to the namespace loopback
    #[arg(long, help_heading = PASTA_ONLY)]
    pub host_lo_to_ns_lo: bool,

    /// User namespace to join, as a path
    #[arg(
        long,
        value_name = "PATH",
        value_parser = parse_path,
        help_heading = PASTA_ONLY,
        overrides_with = "netns_only",
    )]
    pub userns: Option<PathBuf>,

    /// Network namespace to join, as a path or a name in /run/netns
    #[arg(long, value_name = "PATH|NAME", value_parser = parse_netns, help_heading = PASTA_ONLY)]
    pub netns: Option<PathBuf>,

    /// Join only the network namespace, not a user namespace
    #[arg(long, help_heading = PASTA_ONLY)]
    pub netns_only: bool,

    /// Don't quit when the target namespace goes away
    #[arg(long, help_heading = PASTA_ONLY)]
    pub no_netns_quit: bool,

    /// Configure addresses, routes and link in the namespace
    #[arg(long, help_heading = PASTA_ONLY)]
    pub config_net: bool,

    /// Deprecated: with --config-net, set up only the default route
    #[arg(long, help_heading = PASTA_ONLY)]
    pub no_copy_routes: bool,

    /// Deprecated: with --config-net, set up only one address
    #[arg(long, help_heading = PASTA_ONLY)]
    pub no_copy_addrs: bool,

    /// MAC address of the tap interface in the namespace
    #[arg(long, value_name = "ADDR", value_parser = parse_mac, help_heading = PASTA_ONLY)]
    pub ns_mac_addr: Option<[u8; 6]>,

    /// Disable the loopback bypass for inbound local traffic
    #[arg(long, help_heading = PASTA_ONLY)]
    pub no_splice: bool,

    /// Create no tap device, only forward loopback traffic
    #[arg(long, help_heading = PASTA_ONLY)]
    pub splice_only: bool,

    /// Command to run in a new namespace, or PID whose namespaces to join
    #[arg(value_name = "COMMAND [ARG]... | PID", trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// Parses argv (including `argv[0]`) for `mode`.
///
/// # Errors
///
/// [`CliError::Help`] and [`CliError::Version`] carry text for stdout;
/// [`CliError::Invalid`] one line naming the option and the problem.
pub fn parse<I, T>(mode: Mode, args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command(mode).try_get_matches_from(args).map_err(one_line)?;
    let cli = Cli::from_arg_matches(&matches).map_err(one_line)?;
    if cli.version {
        return Err(CliError::Version(version_text(mode)));
    }
    check_mode_only(mode, &matches)?;
    cli.check(mode)?;
    Ok(cli)
}

impl Cli {
    /// Template interface names to probe for IPv4 and IPv6: `-i` for both,
    /// else `--outbound-if4`/`--outbound-if6`; `None` means "find one".
    pub fn probe_hints(&self) -> (Option<String>, Option<String>) {
        let pick = |family: &Option<String>| self.interface.clone().or_else(|| family.clone());
        (pick(&self.outbound_if4), pick(&self.outbound_if6))
    }

    /// Whether IPv4 is wanted at all (not disabled by `-6`).
    pub fn ipv4_wanted(&self) -> bool {
        !self.ipv6_only
    }

    /// Whether IPv6 is wanted at all (not disabled by `-4`).
    pub fn ipv6_wanted(&self) -> bool {
        !self.ipv4_only
    }

    /// The effective (last) `-a` value of the IPv4 or IPv6 family.
    pub fn address_of(&self, v4: bool) -> Option<AddrArg> {
        self.address
            .iter()
            .rev()
            .find(|a| a.addr.is_ipv4() == v4)
            .copied()
    }

    /// pasta's target namespace: `--netns`, a PID, or a command to spawn.
    pub fn ns_target(&self) -> NsTarget {
        if let Some(path) = &self.netns {
            return NsTarget::Path(path.clone());
        }
        match single_pid(&self.command).map(str::parse::<u32>) {
            Some(Ok(pid)) => NsTarget::Pid(pid),
            _ => NsTarget::Spawn(self.command.clone()),
        }
    }

    /// Rules between options that need no host knowledge.
    fn check(&self, mode: Mode) -> Result<(), CliError> {
        if mode == Mode::Passt
            && let Some(extra) = self.command.first()
        {
            return Err(invalid(format!("extra non-option argument '{extra}'")));
        }
        for (name, specs) in [
            ("--tcp-ports", &self.tcp_ports),
            ("--udp-ports", &self.udp_ports),
            ("--tcp-ns", &self.tcp_ns),
            ("--udp-ns", &self.udp_ns),
        ] {
            PortSpec::combine(specs).map_err(|e| invalid(format!("{name}: {e}")))?;
        }
        if self.netmask.is_some()
            && self
                .address_of(true)
                .is_some_and(|a| a.prefix_len.is_some())
        {
            return Err(invalid(
                "--netmask: can't be combined with a prefix length in --address",
            ));
        }
        if mode == Mode::Pasta {
            self.check_pasta()?;
        }
        Ok(())
    }

    /// pasta's own combination rules.
    fn check_pasta(&self) -> Result<(), CliError> {
        if self.netns.is_some() && !self.command.is_empty() {
            return Err(invalid("--netns: can't be combined with a PID or command"));
        }
        if let Some(pid) = single_pid(&self.command) {
            match pid.parse::<u32>() {
                Ok(n) if n > 0 && i32::try_from(n).is_ok() => {}
                _ => return Err(invalid(format!("invalid PID '{pid}'"))),
            }
        }
        if !self.config_net {
            if self.no_copy_routes {
                return Err(invalid("--no-copy-routes: requires --config-net"));
            }
            if self.no_copy_addrs {
                return Err(invalid("--no-copy-addrs: requires --config-net"));
            }
        }
        if self.host_lo_to_ns_lo && self.no_splice {
            return Err(invalid("--host-lo-to-ns-lo: incompatible with --no-splice"));
        }
        if self.splice_only && self.no_splice {
            return Err(invalid("--splice-only: incompatible with --no-splice"));
        }
        Ok(())
    }
}

/// The clap command for `mode`: name, usage, and the other face's options hidden.
fn command(mode: Mode) -> clap::Command {
    let (foreign, _) = foreign_options(mode);
    let cmd = Cli::command()
        .name(mode.name())
        .bin_name(mode.name())
        .mut_args(|a| {
            // getopt: an option's value is the next word, even if it starts
            // with '-' (`-l -d` logs to a file named "-d").
            let takes_value = !a.is_positional() && a.get_action().takes_values();
            // The other face's options stay parseable, to be rejected by
            // name in `check_mode_only`, but out of the help text.
            let hide = a.get_help_heading() == Some(foreign);
            a.allow_hyphen_values(takes_value).hide(hide)
        });
    match mode {
        Mode::Passt => cmd
            .about("Unprivileged user-mode networking for virtual machines")
            .override_usage("passt [OPTION]...")
            .mut_arg("command", |a| a.hide(true))
            .mut_arg("tcp_ports", |a| a.value_parser(parse_ports_passt))
            .mut_arg("udp_ports", |a| a.value_parser(parse_ports_passt)),
        Mode::Pasta => cmd
            .about("Unprivileged user-mode networking for network namespaces")
            .override_usage(
                "pasta [OPTION]... [COMMAND [ARG]...]\n       \
                 pasta [OPTION]... PID\n       \
                 pasta [OPTION]... --netns PATH|NAME",
            ),
    }
}

/// Help heading of the options `mode` rejects, and the name of the face
/// they belong to.
fn foreign_options(mode: Mode) -> (&'static str, &'static str) {
    match mode {
        Mode::Passt => (PASTA_ONLY, "pasta"),
        Mode::Pasta => (PASST_ONLY, "passt"),
    }
}

/// Text for `--version`.
fn version_text(mode: Mode) -> String {
    format!(
        "{} (passt-rs) {}\nLicense GPL-2.0-or-later: free software, no warranty.\n",
        mode.name(),
        env!("CARGO_PKG_VERSION")
    )
}

/// Rejects the first option, in argv order, that belongs to the other face.
fn check_mode_only(mode: Mode, matches: &ArgMatches) -> Result<(), CliError> {
    let (foreign, owner) = foreign_options(mode);
    let cmd = Cli::command();
    let first = cmd
        .get_arguments()
        .filter(|a| a.get_help_heading() == Some(foreign))
        .filter(|a| matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .filter_map(|a| Some((matches.index_of(a.get_id().as_str())?, a.get_long()?)))
        .min();
    match first {
        Some((_, long)) => Err(invalid(format!("--{long} is a {owner}-only option"))),
        None => Ok(()),
    }
}

/// Exactly one positional word made of digits only: a PID, not a command.
fn single_pid(command: &[String]) -> Option<&str> {
    match command {
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => Some(one),
        _ => None,
    }
}

/// Wraps a message as [`CliError::Invalid`].
fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Invalid(msg.into())
}

/// Turns clap's multi-line report into one line, getopt style where it helps.
fn one_line(err: clap::Error) -> CliError {
    let context = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    // clap names an option as "--mtu <MTU>": keep the name only.
    let arg = context(ContextKind::InvalidArg)
        .map(|a| a.split(' ').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let value = context(ContextKind::InvalidValue).unwrap_or_default();
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            CliError::Help(err.render().to_string())
        }
        ErrorKind::DisplayVersion => CliError::Version(err.render().to_string()),
        ErrorKind::UnknownArgument if arg.starts_with("--") => {
            let name = arg.split('=').next().unwrap_or_default();
            invalid(format!("unrecognized option '{name}'"))
        }
        ErrorKind::UnknownArgument if arg.starts_with('-') => invalid(format!(
            "invalid option -- '{}'",
            arg.strip_prefix('-').unwrap_or(&arg)
        )),
        ErrorKind::UnknownArgument => invalid(format!("unexpected argument '{arg}'")),
        ErrorKind::ValueValidation if value.is_empty() => invalid(format!("{arg}: empty value")),
        ErrorKind::ValueValidation => {
            let reason = std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_else(|| "invalid value".into());
            invalid(format!("{arg}: {value}: {reason}"))
        }
        ErrorKind::InvalidValue if value.is_empty() => invalid(format!("{arg}: missing value")),
        ErrorKind::TooManyValues | ErrorKind::NoEquals if !arg.is_empty() => {
            invalid(format!("{arg}: doesn't take a value"))
        }
        _ => invalid(first_line(&err)),
    }
}

/// First line of clap's report, without its "error: " prefix.
fn first_line(err: &clap::Error) -> String {
    let text = err.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

// Value parsers. Each returns only the reason; `one_line` adds the option
// name and the value.

/// Parses a decimal or `0x` hexadecimal number, as strtoul(3) would.
fn parse_number(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16)
        }
        _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse(),
        _ => return Err("not a number".into()),
    };
    parsed.map_err(|_| "number too large".into())
}

fn parse_stats(s: &str) -> Result<u32, String> {
    u32::try_from(parse_number(s)?).map_err(|_| "number too large".into())
}

fn parse_log_size(s: &str) -> Result<u64, String> {
    let size = parse_number(s)?;
    if size < MIN_LOG_SIZE {
        return Err(format!("too small (minimum {MIN_LOG_SIZE} bytes)"));
    }
    Ok(size)
}

fn parse_mtu(s: &str) -> Result<u16, String> {
    let range = || format!("out of range ({MIN_MTU}-{MAX_MTU}, or 0)");
    let mtu = u16::try_from(parse_number(s)?).map_err(|_| range())?;
    if mtu != 0 && !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(range());
    }
    Ok(mtu)
}

fn parse_fd(s: &str) -> Result<RawFd, String> {
    let fd = RawFd::try_from(parse_number(s)?).map_err(|_| "number too large".to_string())?;
    // stdout and stderr carry our messages; stdin is fine (inetd style).
    if fd == 1 || fd == 2 {
        return Err("can't be standard output or error".into());
    }
    Ok(fd)
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty path".into());
    }
    Ok(PathBuf::from(s))
}

fn parse_repair_path(s: &str) -> Result<OrNone<PathBuf>, String> {
    match s {
        "none" => Ok(OrNone::None),
        _ => parse_path(s).map(OrNone::Value),
    }
}

fn parse_netns(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("empty name or path".into());
    }
    // A bare name is an ip-netns(8) name.
    if s.contains('/') {
        Ok(PathBuf::from(s))
    } else {
        Ok(PathBuf::from(NETNS_RUN_DIR).join(s))
    }
}

fn parse_runas(s: &str) -> Result<RunAsArg, String> {
    let (user, group) = match s.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (s, None),
    };
    if user.is_empty() || group.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err("expected UID, UID:GID, LOGIN or LOGIN:GROUP".into());
    }
    Ok(RunAsArg {
        user: user.to_string(),
        group: group.map(str::to_string),
    })
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| "not an IPv4 or IPv6 address".to_string())
}

/// Whether an address is unspecified, loopback or multicast: none of these
/// can be a guest, gateway or mapped address.
fn is_special(addr: IpAddr) -> bool {
    addr.is_unspecified() || addr.is_loopback() || addr.is_multicast()
}

/// IPv4 limited broadcast, never usable as a unicast address.
fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_broadcast())
}

fn parse_address(s: &str) -> Result<AddrArg, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let addr = parse_ip(addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        None => None,
        Some(p) => match p.parse::<u8>() {
            Ok(len) if len <= max && p.bytes().all(|b| b.is_ascii_digit()) => Some(len),
            _ => return Err(format!("prefix length out of range (0-{max})")),
        },
    };
    // IPv4-compatible IPv6 (::a.b.c.d) is deprecated (RFC 4291 2.5.5.1).
    let v4_compat = matches!(addr, IpAddr::V6(a) if a.segments()[..6] == [0; 6]);
    if is_special(addr) || is_broadcast(addr) || v4_compat {
        return Err("not a usable address".into());
    }
    Ok(AddrArg { addr, prefix_len })
}

fn parse_netmask(s: &str) -> Result<u8, String> {
    if let Ok(mask) = s.parse::<Ipv4Addr>() {
        let mask = u32::from(mask);
        let len = mask.leading_ones();
        // Contiguous: nothing left once the leading ones are shifted out.
        if mask.checked_shl(len).unwrap_or(0) != 0 {
            return Err("netmask is not contiguous".into());
        }
        return u8::try_from(len).map_err(|e| e.to_string());
    }
    match parse_number(s) {
        Ok(len) if len <= 32 => u8::try_from(len).map_err(|e| e.to_string()),
        Ok(_) => Err("prefix length out of range (0-32)".into()),
        Err(_) => Err("not a netmask or prefix length".into()),
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || "not a MAC address (expected aa:bb:cc:dd:ee:ff)".to_string();
    let mut mac = [0u8; 6];
    let mut octets = s.split(':');
    for byte in &mut mac {
        let octet = octets.next().ok_or_else(bad)?;
        // from_str_radix alone would take a sign ("+f").
        if octet.len() != 2 || !octet.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(octet, 16).map_err(|_| bad())?;
    }
    match octets.next() {
        Some(_) => Err(bad()),
        None => Ok(mac),
    }
}

fn parse_gateway(s: &str) -> Result<IpAddr, String> {
    let addr = parse_ip(s)?;
    if addr.is_unspecified() || addr.is_loopback() || is_broadcast(addr) {
        return Err("not a usable gateway address".into());
    }
    Ok(addr)
}

fn parse_outbound(s: &str) -> Result<IpAddr, String> {
    let addr = parse_ip(s)?;
    if is_special(addr) || is_broadcast(addr) {
        return Err("not a usable source address".into());
    }
    Ok(addr)
}

fn parse_ifname(s: &str) -> Result<String, String> {
    ports::check_ifname(s).map_err(str::to_string)?;
    Ok(s.to_string())
}

fn parse_dns(s: &str) -> Result<OrNone<IpAddr>, String> {
    match s {
        "none" => Ok(OrNone::None),
        // Given to the guest as is: even loopback makes sense (the guest itself).
        _ => parse_ip(s).map(OrNone::Value),
    }
}

fn parse_dns_forward(s: &str) -> Result<IpAddr, String> {
    let addr = parse_ip(s)?;
    if addr.is_unspecified() || addr.is_loopback() || is_broadcast(addr) {
        return Err("not a usable forwarding address".into());
    }
    Ok(addr)
}

fn parse_dns_host(s: &str) -> Result<IpAddr, String> {
    let addr = parse_ip(s)?;
    if addr.is_unspecified() || is_broadcast(addr) {
        return Err("not a usable nameserver address".into());
    }
    Ok(addr)
}

fn parse_map_addr(s: &str) -> Result<OrNone<IpAddr>, String> {
    if s == "none" {
        return Ok(OrNone::None);
    }
    let addr = parse_ip(s)?;
    if is_special(addr) {
        return Err("not a usable address to map".into());
    }
    Ok(OrNone::Value(addr))
}

fn parse_search(s: &str) -> Result<OrNone<Vec<String>>, String> {
    if s == "none" {
        return Ok(OrNone::None);
    }
    let domains: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    if domains.is_empty() {
        return Err("empty search list".into());
    }
    if let Some(long) = domains.iter().find(|d| d.len() > MAX_DNAME_LEN) {
        return Err(format!(
            "domain '{long}' too long (max {MAX_DNAME_LEN} bytes)"
        ));
    }
    Ok(OrNone::Value(domains))
}

fn parse_dname(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty name".into());
    }
    if s.len() > MAX_DNAME_LEN {
        return Err(format!("name too long (max {MAX_DNAME_LEN} bytes)"));
    }
    Ok(s.to_string())
}

/// `-t`/`-u` for pasta: the whole grammar.
fn parse_ports_pasta(s: &str) -> Result<PortSpec, String> {
    ports::parse(s).map_err(|e: PortSpecError| e.to_string())
}

/// `-t`/`-u` for passt: no `auto`, as there is no namespace to scan.
fn parse_ports_passt(s: &str) -> Result<PortSpec, String> {
    let spec = parse_ports_pasta(s)?;
    if spec.has_auto() {
        return Err("'auto' is only valid for pasta".into());
    }
    Ok(spec)
}

/// `-T`/`-U`: they always listen on the namespace's loopback.
fn parse_ports_ns(s: &str) -> Result<PortSpec, String> {
    let spec = parse_ports_pasta(s)?;
    if spec.has_listen() {
        return Err("listening address not allowed".into());
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::ports::{PortRule, Ports};
    use std::path::Path;

    const BOTH: &[Mode] = &[Mode::Passt, Mode::Pasta];
    const PASST: &[Mode] = &[Mode::Passt];
    const PASTA: &[Mode] = &[Mode::Pasta];

    fn run(mode: Mode, args: &[&str]) -> Result<Cli, CliError> {
        parse(
            mode,
            std::iter::once(mode.name()).chain(args.iter().copied()),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn path(c: &Option<PathBuf>) -> Option<&Path> {
        c.as_deref()
    }

    /// A check on the parsed options, for the table below.
    type Check = fn(&Cli) -> bool;

    /// At least one good value of every option, in each mode that takes it.
    #[test]
    fn good_options() {
        let cases: &[(&[Mode], &[&str], Check)] = &[
            (BOTH, &[], |c| {
                !c.debug && c.mtu.is_none() && c.tcp_ports.is_empty() && c.command.is_empty()
            }),
            (BOTH, &["-d"], |c| c.debug),
            (BOTH, &["--debug"], |c| c.debug),
            (BOTH, &["--trace"], |c| c.trace),
            (BOTH, &["--stats", "5"], |c| c.stats == Some(5)),
            (BOTH, &["-q"], |c| c.quiet),
            (BOTH, &["--quiet"], |c| c.quiet),
            (BOTH, &["-d", "-q"], |c| c.quiet && !c.debug),
            (BOTH, &["-q", "-d"], |c| c.debug && !c.quiet),
            (BOTH, &["--trace", "-q"], |c| c.quiet && !c.trace),
            (BOTH, &["-f"], |c| c.foreground),
            (BOTH, &["--foreground"], |c| c.foreground),
            (BOTH, &["-e"], |c| c.stderr),
            (BOTH, &["--stderr"], |c| c.stderr),
            (BOTH, &["-l", "/tmp/log"], |c| {
                path(&c.log_file) == Some(Path::new("/tmp/log"))
            }),
            (BOTH, &["--log-file=/tmp/a", "-l", "/tmp/b"], |c| {
                path(&c.log_file) == Some(Path::new("/tmp/b"))
            }),
            // getopt style: a value is the next word, whatever it looks like.
            (BOTH, &["-l", "-d"], |c| {
                path(&c.log_file) == Some(Path::new("-d")) && !c.debug
            }),
            (BOTH, &["--log-size", "4096"], |c| c.log_size == Some(4096)),
            (BOTH, &["--log-size", "0x100000"], |c| {
                c.log_size == Some(1 << 20)
            }),
            (BOTH, &["--runas", "1000"], |c| {
                c.runas
                    == Some(RunAsArg {
                        user: "1000".into(),
                        group: None,
                    })
            }),
            (BOTH, &["--runas", "nobody:nogroup"], |c| {
                c.runas
                    == Some(RunAsArg {
                        user: "nobody".into(),
                        group: Some("nogroup".into()),
                    })
            }),
            (BOTH, &["-c", "/tmp/conf"], |c| {
                path(&c.conf_path) == Some(Path::new("/tmp/conf"))
            }),
            (BOTH, &["--conf-path", "/tmp/c"], |c| c.conf_path.is_some()),
            (BOTH, &["-p", "/tmp/x.pcap"], |c| {
                path(&c.pcap) == Some(Path::new("/tmp/x.pcap"))
            }),
            (BOTH, &["--pcap", "/tmp/y"], |c| c.pcap.is_some()),
            (BOTH, &["-P", "/tmp/pid"], |c| {
                path(&c.pidfile) == Some(Path::new("/tmp/pid"))
            }),
            (BOTH, &["--pid", "/tmp/pid"], |c| c.pidfile.is_some()),
            (BOTH, &["-m", "1500"], |c| c.mtu == Some(1500)),
            (BOTH, &["--mtu", "0"], |c| c.mtu == Some(0)),
            (BOTH, &["-m68"], |c| c.mtu == Some(68)),
            (BOTH, &["--mtu=65520"], |c| c.mtu == Some(65520)),
            (BOTH, &["-m", "1500", "-m", "9000"], |c| c.mtu == Some(9000)),
            (BOTH, &["-a", "192.0.2.5"], |c| {
                c.address
                    == [AddrArg {
                        addr: ip("192.0.2.5"),
                        prefix_len: None,
                    }]
            }),
            (BOTH, &["--address", "192.0.2.5/24"], |c| {
                c.address_of(true).map(|a| a.prefix_len) == Some(Some(24))
            }),
            (BOTH, &["-a", "192.0.2.5", "-a", "2001:db8::5/64"], |c| {
                c.address_of(true).map(|a| a.addr) == Some(ip("192.0.2.5"))
                    && c.address_of(false).map(|a| a.addr) == Some(ip("2001:db8::5"))
            }),
            (BOTH, &["-a", "192.0.2.5", "-a", "192.0.2.6"], |c| {
                c.address_of(true).map(|a| a.addr) == Some(ip("192.0.2.6"))
            }),
            (BOTH, &["-n", "255.255.255.0"], |c| c.netmask == Some(24)),
            (BOTH, &["--netmask", "24"], |c| c.netmask == Some(24)),
            (BOTH, &["-n", "0"], |c| c.netmask == Some(0)),
            (BOTH, &["-n", "255.255.255.255"], |c| c.netmask == Some(32)),
            (BOTH, &["-n", "0.0.0.0"], |c| c.netmask == Some(0)),
            (BOTH, &["-a", "192.0.2.5", "-n", "16"], |c| {
                c.netmask == Some(16)
            }),
            // -n is IPv4 only: an IPv6 prefix doesn't clash with it.
            (BOTH, &["-a", "2001:db8::1/64", "-n", "24"], |c| {
                c.netmask == Some(24)
            }),
            (BOTH, &["-M", "02:00:00:00:00:01"], |c| {
                c.mac_addr == Some([2, 0, 0, 0, 0, 1])
            }),
            (BOTH, &["--mac-addr", "9A:55:9a:55:9a:55"], |c| {
                c.mac_addr == Some([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55])
            }),
            (BOTH, &["-g", "192.0.2.1", "--gateway", "fe80::1"], |c| {
                c.gateway == [ip("192.0.2.1"), ip("fe80::1")]
            }),
            (BOTH, &["-i", "eth0"], |c| {
                c.interface.as_deref() == Some("eth0")
            }),
            (BOTH, &["--interface", "enp0s31f6"], |c| {
                c.interface.is_some()
            }),
            (
                BOTH,
                &["-o", "192.0.2.5", "--outbound", "2001:db8::5"],
                |c| c.outbound.len() == 2,
            ),
            (BOTH, &["--outbound-if4", "eth0"], |c| {
                c.outbound_if4.as_deref() == Some("eth0")
            }),
            (BOTH, &["--outbound-if6", "eth1"], |c| {
                c.outbound_if6.as_deref() == Some("eth1")
            }),
            (BOTH, &["-D", "192.0.2.53", "--dns", "::1"], |c| {
                c.dns == [OrNone::Value(ip("192.0.2.53")), OrNone::Value(ip("::1"))]
            }),
            (BOTH, &["-D", "none"], |c| c.dns == [OrNone::None]),
            (BOTH, &["--dns-forward", "169.254.1.1"], |c| {
                c.dns_forward == [ip("169.254.1.1")]
            }),
            (BOTH, &["--dns-host", "127.0.0.53"], |c| {
                c.dns_host == [ip("127.0.0.53")]
            }),
            (BOTH, &["-S", "a.example b.example"], |c| {
                c.search == [OrNone::Value(vec!["a.example".into(), "b.example".into()])]
            }),
            (BOTH, &["--search", "none"], |c| c.search == [OrNone::None]),
            (BOTH, &["--no-tcp"], |c| c.no_tcp),
            (BOTH, &["--no-udp"], |c| c.no_udp),
            (BOTH, &["--no-icmp"], |c| c.no_icmp),
            (BOTH, &["--no-dhcp"], |c| c.no_dhcp && !c.no_dhcpv6),
            (BOTH, &["--no-ndp"], |c| c.no_ndp),
            (BOTH, &["--no-dhcpv6"], |c| c.no_dhcpv6 && !c.no_dhcp),
            (BOTH, &["--no-ra"], |c| c.no_ra),
            (BOTH, &["--freebind"], |c| c.freebind),
            (BOTH, &["--map-host-loopback", "192.0.2.2"], |c| {
                c.map_host_loopback == [OrNone::Value(ip("192.0.2.2"))]
            }),
            (BOTH, &["--map-host-loopback", "none"], |c| {
                c.map_host_loopback == [OrNone::None]
            }),
            (BOTH, &["--no-map-gw"], |c| c.no_map_gw),
            (BOTH, &["--chroot-fallback"], |c| c.chroot_fallback),
            (BOTH, &["--map-guest-addr", "169.254.1.2"], |c| {
                c.map_guest_addr == [OrNone::Value(ip("169.254.1.2"))]
            }),
            (BOTH, &["--map-guest-addr", "none"], |c| {
                c.map_guest_addr == [OrNone::None]
            }),
            (BOTH, &["-4"], |c| {
                c.ipv4_only && c.ipv4_wanted() && !c.ipv6_wanted()
            }),
            (BOTH, &["--ipv6-only"], |c| c.ipv6_only && !c.ipv4_wanted()),
            (BOTH, &["-4", "-6"], |c| c.ipv6_only && !c.ipv4_only),
            (BOTH, &["-6", "--ipv4-only"], |c| {
                c.ipv4_only && !c.ipv6_only
            }),
            (BOTH, &["-H", "guest"], |c| {
                c.hostname.as_deref() == Some("guest")
            }),
            (BOTH, &["--fqdn", "guest.example"], |c| {
                c.fqdn.as_deref() == Some("guest.example")
            }),
            (BOTH, &["-t", "22"], |c| c.tcp_ports.len() == 1),
            (BOTH, &["-t", "22", "--tcp-ports", "80:8080"], |c| {
                c.tcp_ports.len() == 2
            }),
            (BOTH, &["-t", "none"], |c| c.tcp_ports == [PortSpec::none()]),
            (BOTH, &["-t", "none", "-t", "22"], |c| {
                c.tcp_ports.len() == 2
            }),
            (BOTH, &["-t22", "-u", "53"], |c| c.udp_ports.len() == 1),
            (BOTH, &["--udp-ports", "127.0.0.1/5353"], |c| {
                c.udp_ports[0].has_listen()
            }),
            // Long options may be abbreviated, as with getopt_long.
            (BOTH, &["--fore", "--no-dhcpv"], |c| {
                c.foreground && c.no_dhcpv6
            }),
            (PASST, &["-s", "/tmp/s"], |c| {
                path(&c.socket_path) == Some(Path::new("/tmp/s"))
            }),
            (PASST, &["--socket", "/tmp/s"], |c| c.socket_path.is_some()),
            (PASST, &["--socket-path", "/tmp/s"], |c| {
                c.socket_path.is_some()
            }),
            (PASST, &["--vhost-user"], |c| c.vhost_user),
            (PASST, &["--print-capabilities"], |c| c.print_capabilities),
            (PASST, &["--repair-path", "none"], |c| {
                c.repair_path == Some(OrNone::None)
            }),
            (PASST, &["--repair-path", "/tmp/r"], |c| {
                c.repair_path == Some(OrNone::Value("/tmp/r".into()))
            }),
            (PASST, &["--migrate-exit"], |c| c.migrate_exit),
            (PASST, &["--migrate-no-linger"], |c| c.migrate_no_linger),
            (PASST, &["-F", "0"], |c| c.fd == Some(0)),
            (PASST, &["--fd", "5"], |c| c.fd == Some(5)),
            (PASST, &["-s", "/tmp/s", "-F", "5"], |c| {
                c.fd == Some(5) && c.socket_path.is_none()
            }),
            (PASST, &["-F", "5", "-s", "/tmp/s"], |c| {
                c.fd.is_none() && c.socket_path.is_some()
            }),
            (PASST, &["-1"], |c| c.one_off),
            (PASST, &["--one-off"], |c| c.one_off),
            (PASST, &["--no-dhcp-dns"], |c| c.no_dhcp_dns),
            (PASST, &["--no-dhcp-search"], |c| c.no_dhcp_search),
            (PASTA, &["-I", "tap1"], |c| {
                c.ns_ifname.as_deref() == Some("tap1")
            }),
            (PASTA, &["--ns-ifname", "eth0"], |c| c.ns_ifname.is_some()),
            (PASTA, &["--tcp-ns", "none", "-T", "80"], |c| {
                c.tcp_ns.len() == 2
            }),
            (PASTA, &["-U", "53", "--udp-ns", "auto"], |c| {
                c.udp_ns.len() == 2
            }),
            (PASTA, &["-t", "auto", "-u", "8000-8010,auto"], |c| {
                c.tcp_ports[0].has_auto() && c.udp_ports[0].has_auto()
            }),
            (PASTA, &["--host-lo-to-ns-lo"], |c| c.host_lo_to_ns_lo),
            (PASTA, &["--userns", "/proc/1/ns/user"], |c| {
                c.userns.is_some()
            }),
            (PASTA, &["--netns", "foo"], |c| {
                path(&c.netns) == Some(Path::new("/run/netns/foo"))
                    && c.ns_target() == NsTarget::Path("/run/netns/foo".into())
            }),
            (PASTA, &["--netns", "/run/user/1000/netns/x"], |c| {
                path(&c.netns) == Some(Path::new("/run/user/1000/netns/x"))
            }),
            (PASTA, &["--netns-only"], |c| c.netns_only),
            (PASTA, &["--userns", "/u", "--netns-only"], |c| {
                c.netns_only && c.userns.is_none()
            }),
            (PASTA, &["--netns-only", "--userns", "/u"], |c| {
                !c.netns_only && c.userns.is_some()
            }),
            (PASTA, &["--no-netns-quit"], |c| c.no_netns_quit),
            (PASTA, &["--config-net"], |c| c.config_net),
            (PASTA, &["--config-net", "--no-copy-routes"], |c| {
                c.no_copy_routes
            }),
            (PASTA, &["--config-net", "--no-copy-addrs"], |c| {
                c.no_copy_addrs
            }),
            (PASTA, &["--ns-mac-addr", "02:00:00:00:00:02"], |c| {
                c.ns_mac_addr == Some([2, 0, 0, 0, 0, 2])
            }),
            (PASTA, &["--no-splice"], |c| c.no_splice),
            (PASTA, &["--splice-only"], |c| c.splice_only),
            (PASTA, &["--dhcp-dns"], |c| c.dhcp_dns),
            (PASTA, &["--dhcp-search"], |c| c.dhcp_search),
            (PASTA, &["1234"], |c| c.ns_target() == NsTarget::Pid(1234)),
            (PASTA, &["-d", "--", "1234"], |c| {
                c.ns_target() == NsTarget::Pid(1234)
            }),
            (PASTA, &[], |c| c.ns_target() == NsTarget::Spawn(vec![])),
            // The first non-option starts the command; the rest is its own.
            (PASTA, &["sh", "-c", "exit 7", "-d"], |c| {
                c.command == ["sh", "-c", "exit 7", "-d"] && !c.debug
            }),
            (PASTA, &["--config-net", "--", "ip", "-j", "addr"], |c| {
                c.config_net
                    && c.ns_target()
                        == NsTarget::Spawn(vec!["ip".into(), "-j".into(), "addr".into()])
            }),
            (
                PASTA,
                &["1234", "5"],
                |c| matches!(c.ns_target(), NsTarget::Spawn(v) if v.len() == 2),
            ),
        ];
        for (modes, args, check) in cases {
            for mode in *modes {
                match run(*mode, args) {
                    Ok(cli) => assert!(check(&cli), "{mode:?} {args:?}: check failed: {cli:#?}"),
                    Err(e) => panic!("{mode:?} {args:?}: {e:?}"),
                }
            }
        }
    }

    /// Each kind of bad value or combination, with the exact message.
    #[test]
    fn bad_options() {
        let cases: &[(&[Mode], &[&str], &str)] = &[
            // Unknown options, missing or unexpected values.
            (BOTH, &["--bogus"], "unrecognized option '--bogus'"),
            (BOTH, &["--bogus=3"], "unrecognized option '--bogus'"),
            (BOTH, &["-x"], "invalid option -- 'x'"),
            (BOTH, &["-dx"], "invalid option -- 'x'"),
            (BOTH, &["-4=1"], "invalid option -- '='"),
            (BOTH, &["--no"], "unrecognized option '--no'"),
            (BOTH, &["--mtu"], "--mtu: missing value"),
            (BOTH, &["-a"], "--address: missing value"),
            (BOTH, &["--debug=1"], "--debug: doesn't take a value"),
            // MTU.
            (
                BOTH,
                &["--mtu", "70000"],
                "--mtu: 70000: out of range (68-65520, or 0)",
            ),
            (
                BOTH,
                &["-m", "65521"],
                "--mtu: 65521: out of range (68-65520, or 0)",
            ),
            (
                BOTH,
                &["-m", "67"],
                "--mtu: 67: out of range (68-65520, or 0)",
            ),
            (BOTH, &["-m", "abc"], "--mtu: abc: not a number"),
            (BOTH, &["-m", "-1"], "--mtu: -1: not a number"),
            (BOTH, &["--mtu="], "--mtu: empty value"),
            // Addresses and prefixes.
            (
                BOTH,
                &["-a", "300.1.1.1"],
                "--address: 300.1.1.1: not an IPv4 or IPv6 address",
            ),
            (
                BOTH,
                &["-a", "192.0.2.1/33"],
                "--address: 192.0.2.1/33: prefix length out of range (0-32)",
            ),
            (
                BOTH,
                &["-a", "192.0.2.1/x"],
                "--address: 192.0.2.1/x: prefix length out of range (0-32)",
            ),
            (
                BOTH,
                &["-a", "2001:db8::1/129"],
                "--address: 2001:db8::1/129: prefix length out of range (0-128)",
            ),
            (
                BOTH,
                &["-a", "127.0.0.1"],
                "--address: 127.0.0.1: not a usable address",
            ),
            (
                BOTH,
                &["-a", "0.0.0.0"],
                "--address: 0.0.0.0: not a usable address",
            ),
            (
                BOTH,
                &["-a", "224.0.0.1"],
                "--address: 224.0.0.1: not a usable address",
            ),
            (BOTH, &["-a", "::1"], "--address: ::1: not a usable address"),
            (
                BOTH,
                &["-a", "::192.0.2.1"],
                "--address: ::192.0.2.1: not a usable address",
            ),
            (
                BOTH,
                &["-n", "255.0.255.0"],
                "--netmask: 255.0.255.0: netmask is not contiguous",
            ),
            (
                BOTH,
                &["-n", "33"],
                "--netmask: 33: prefix length out of range (0-32)",
            ),
            (
                BOTH,
                &["-n", "foo"],
                "--netmask: foo: not a netmask or prefix length",
            ),
            (
                BOTH,
                &["-a", "192.0.2.1/24", "-n", "24"],
                "--netmask: can't be combined with a prefix length in --address",
            ),
            (
                BOTH,
                &["-n", "255.255.255.0", "-a", "192.0.2.1/24"],
                "--netmask: can't be combined with a prefix length in --address",
            ),
            (
                BOTH,
                &["-g", "0.0.0.0"],
                "--gateway: 0.0.0.0: not a usable gateway address",
            ),
            (
                BOTH,
                &["-g", "127.0.0.1"],
                "--gateway: 127.0.0.1: not a usable gateway address",
            ),
            (
                BOTH,
                &["-g", "255.255.255.255"],
                "--gateway: 255.255.255.255: not a usable gateway address",
            ),
            (
                BOTH,
                &["-g", "gw"],
                "--gateway: gw: not an IPv4 or IPv6 address",
            ),
            (
                BOTH,
                &["-o", "224.0.0.1"],
                "--outbound: 224.0.0.1: not a usable source address",
            ),
            (
                BOTH,
                &["-o", "::1"],
                "--outbound: ::1: not a usable source address",
            ),
            (
                BOTH,
                &["-D", "dns.example"],
                "--dns: dns.example: not an IPv4 or IPv6 address",
            ),
            (
                BOTH,
                &["--dns-forward", "127.0.0.1"],
                "--dns-forward: 127.0.0.1: not a usable forwarding address",
            ),
            (
                BOTH,
                &["--dns-host", "0.0.0.0"],
                "--dns-host: 0.0.0.0: not a usable nameserver address",
            ),
            (
                BOTH,
                &["--map-host-loopback", "127.0.0.1"],
                "--map-host-loopback: 127.0.0.1: not a usable address to map",
            ),
            (
                BOTH,
                &["--map-guest-addr", "::"],
                "--map-guest-addr: ::: not a usable address to map",
            ),
            // MAC addresses.
            (
                BOTH,
                &["-M", "02:00:00:00:00"],
                "--mac-addr: 02:00:00:00:00: not a MAC address (expected aa:bb:cc:dd:ee:ff)",
            ),
            (
                BOTH,
                &["-M", "02:00:00:00:00:01:02"],
                "--mac-addr: 02:00:00:00:00:01:02: not a MAC address (expected aa:bb:cc:dd:ee:ff)",
            ),
            (
                BOTH,
                &["-M", "zz:00:00:00:00:01"],
                "--mac-addr: zz:00:00:00:00:01: not a MAC address (expected aa:bb:cc:dd:ee:ff)",
            ),
            (
                BOTH,
                &["-M", "2:0:0:0:0:1"],
                "--mac-addr: 2:0:0:0:0:1: not a MAC address (expected aa:bb:cc:dd:ee:ff)",
            ),
            (
                PASTA,
                &["--ns-mac-addr", "+2:00:00:00:00:01"],
                "--ns-mac-addr: +2:00:00:00:00:01: not a MAC address (expected aa:bb:cc:dd:ee:ff)",
            ),
            // Numbers, sizes, names, paths.
            (
                BOTH,
                &["--log-size", "100"],
                "--log-size: 100: too small (minimum 4096 bytes)",
            ),
            (BOTH, &["--log-size", "1M"], "--log-size: 1M: not a number"),
            (
                BOTH,
                &["--log-size", "0x+f"],
                "--log-size: 0x+f: not a number",
            ),
            (BOTH, &["--stats", "soon"], "--stats: soon: not a number"),
            (
                BOTH,
                &["--stats", "99999999999"],
                "--stats: 99999999999: number too large",
            ),
            (
                BOTH,
                &["--runas", ":wheel"],
                "--runas: :wheel: expected UID, UID:GID, LOGIN or LOGIN:GROUP",
            ),
            (
                BOTH,
                &["--runas", "nobody:"],
                "--runas: nobody:: expected UID, UID:GID, LOGIN or LOGIN:GROUP",
            ),
            (
                BOTH,
                &["--runas", "a:b:c"],
                "--runas: a:b:c: expected UID, UID:GID, LOGIN or LOGIN:GROUP",
            ),
            (BOTH, &["--fqdn", ""], "--fqdn: empty value"),
            (BOTH, &["-S", " "], "--search:  : empty search list"),
            (
                BOTH,
                &["-i", "averyveryverylongname"],
                "--interface: averyveryverylongname: interface name too long (max 15 bytes)",
            ),
            (
                BOTH,
                &["--outbound-if4", "a/b"],
                "--outbound-if4: a/b: interface name contains '/', ':' or whitespace",
            ),
            (BOTH, &["-l", ""], "--log-file: empty value"),
            (PASST, &["-F", "-1"], "--fd: -1: not a number"),
            (
                PASST,
                &["-F", "2"],
                "--fd: 2: can't be standard output or error",
            ),
            (
                PASST,
                &["--fd", "99999999999"],
                "--fd: 99999999999: number too large",
            ),
            (PASTA, &["--netns", ""], "--netns: empty value"),
            // Port specs.
            (
                BOTH,
                &["-t", "22-80:32-95"],
                "--tcp-ports: 22-80:32-95: range 22-80 and target 32-95 differ in length",
            ),
            (
                BOTH,
                &["-t", "0"],
                "--tcp-ports: 0: port 0 can't be forwarded",
            ),
            (
                BOTH,
                &["-u", "70000"],
                "--udp-ports: 70000: port 70000 out of range (1-65535)",
            ),
            (
                BOTH,
                &["-t", "80-22"],
                "--tcp-ports: 80-22: range 80-22 is reversed",
            ),
            (
                BOTH,
                &["-t", "ssh"],
                "--tcp-ports: ssh: 'ssh': not a port, range, 'all' or 'auto'",
            ),
            (
                BOTH,
                &["-t", "22", "-t", "none"],
                "--tcp-ports: 'none' conflicts with earlier port specs",
            ),
            (
                PASST,
                &["-t", "auto"],
                "--tcp-ports: auto: 'auto' is only valid for pasta",
            ),
            (
                PASST,
                &["-u", "::1/auto"],
                "--udp-ports: ::1/auto: 'auto' is only valid for pasta",
            ),
            (
                PASTA,
                &["-T", "127.0.0.1/80"],
                "--tcp-ns: 127.0.0.1/80: listening address not allowed",
            ),
            (
                PASTA,
                &["-U", "%lo/53"],
                "--udp-ns: %lo/53: listening address not allowed",
            ),
            (
                PASTA,
                &["-U", "53", "-U", "none"],
                "--udp-ns: 'none' conflicts with earlier port specs",
            ),
            // Options of the other mode, and positional arguments.
            (PASST, &["--netns", "foo"], "--netns is a pasta-only option"),
            (PASST, &["-T", "80"], "--tcp-ns is a pasta-only option"),
            (PASST, &["-I", "tap0"], "--ns-ifname is a pasta-only option"),
            (
                PASST,
                &["--config-net", "--userns", "/u"],
                "--config-net is a pasta-only option",
            ),
            (
                PASST,
                &["--userns", "/u", "--config-net"],
                "--userns is a pasta-only option",
            ),
            (PASST, &["--dhcp-dns"], "--dhcp-dns is a pasta-only option"),
            (
                PASST,
                &["--dhcp-search"],
                "--dhcp-search is a pasta-only option",
            ),
            (
                PASST,
                &["--splice-only"],
                "--splice-only is a pasta-only option",
            ),
            (
                PASTA,
                &["-s", "/tmp/s"],
                "--socket-path is a passt-only option",
            ),
            (
                PASTA,
                &["--socket", "/tmp/s"],
                "--socket-path is a passt-only option",
            ),
            (PASTA, &["-1"], "--one-off is a passt-only option"),
            (PASTA, &["-F", "3"], "--fd is a passt-only option"),
            (
                PASTA,
                &["--vhost-user"],
                "--vhost-user is a passt-only option",
            ),
            (
                PASTA,
                &["--no-dhcp-dns"],
                "--no-dhcp-dns is a passt-only option",
            ),
            (
                PASTA,
                &["--no-dhcp-search"],
                "--no-dhcp-search is a passt-only option",
            ),
            (PASST, &["foo", "-d"], "extra non-option argument 'foo'"),
            (
                PASTA,
                &["--netns", "foo", "1234"],
                "--netns: can't be combined with a PID or command",
            ),
            (
                PASTA,
                &["--netns", "foo", "--", "sh"],
                "--netns: can't be combined with a PID or command",
            ),
            (PASTA, &["0"], "invalid PID '0'"),
            (PASTA, &["99999999999"], "invalid PID '99999999999'"),
            (
                PASTA,
                &["--no-copy-routes"],
                "--no-copy-routes: requires --config-net",
            ),
            (
                PASTA,
                &["--no-copy-addrs"],
                "--no-copy-addrs: requires --config-net",
            ),
            (
                PASTA,
                &["--host-lo-to-ns-lo", "--no-splice"],
                "--host-lo-to-ns-lo: incompatible with --no-splice",
            ),
            (
                PASTA,
                &["--splice-only", "--no-splice"],
                "--splice-only: incompatible with --no-splice",
            ),
        ];
        for (modes, args, want) in cases {
            for mode in *modes {
                match run(*mode, args) {
                    Err(CliError::Invalid(got)) => assert_eq!(got, *want, "{mode:?} {args:?}"),
                    other => panic!("{mode:?} {args:?}: expected {want:?}, got {other:?}"),
                }
            }
        }
    }

    #[test]
    fn long_names_rejected() {
        let long = "h".repeat(MAX_DNAME_LEN + 1);
        let want = format!("--hostname: {long}: name too long (max 253 bytes)");
        assert_eq!(
            run(Mode::Passt, &["-H", &long]).err(),
            Some(CliError::Invalid(want))
        );
        let ok = "h".repeat(MAX_DNAME_LEN);
        assert!(run(Mode::Pasta, &["--fqdn", &ok]).is_ok());
    }

    #[test]
    fn help_is_per_mode() {
        let help = |mode, flag| match run(mode, &[flag]) {
            Err(CliError::Help(text)) => text,
            other => panic!("{mode:?} {flag}: {other:?}"),
        };
        let passt = help(Mode::Passt, "-h");
        assert!(passt.contains("Usage: passt [OPTION]..."), "{passt}");
        assert!(passt.contains("--socket-path") && passt.contains("--mtu"));
        assert!(!passt.contains("--netns") && !passt.contains("COMMAND"));
        let pasta = help(Mode::Pasta, "--help");
        assert!(pasta.contains("pasta [OPTION]... PID"), "{pasta}");
        assert!(pasta.contains("--netns") && pasta.contains("--mtu"));
        assert!(!pasta.contains("--socket-path") && !pasta.contains("--one-off"));
        for line in passt.lines().chain(pasta.lines()) {
            assert!(line.len() <= 100, "help line too long: {line}");
        }
    }

    #[test]
    fn version_names_the_mode() {
        for mode in BOTH {
            match run(*mode, &["-d", "--version"]) {
                Err(CliError::Version(text)) => {
                    let first = format!("{} (passt-rs) {}", mode.name(), env!("CARGO_PKG_VERSION"));
                    assert_eq!(text.lines().next(), Some(first.as_str()));
                }
                other => panic!("{mode:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn probe_hints_prefer_interface() {
        let cli = run(
            Mode::Passt,
            &["--outbound-if4", "eth1", "--outbound-if6", "eth2"],
        )
        .expect("parse");
        assert_eq!(
            cli.probe_hints(),
            (Some("eth1".into()), Some("eth2".into()))
        );
        let cli = run(Mode::Passt, &["-i", "eth0", "--outbound-if6", "eth2"]).expect("parse");
        assert_eq!(
            cli.probe_hints(),
            (Some("eth0".into()), Some("eth0".into()))
        );
        let cli = run(Mode::Passt, &[]).expect("parse");
        assert_eq!(cli.probe_hints(), (None, None));
        assert!(cli.ipv4_wanted() && cli.ipv6_wanted());
    }

    #[test]
    fn port_specs_are_typed() {
        let cli = run(Mode::Passt, &["-t", "2222:22"]).expect("parse");
        let rule = &cli.tcp_ports[0].rules[0];
        assert_eq!(rule.listen_addr, None);
        match &rule.ports {
            Ports::Ranges(maps) => {
                assert_eq!((maps[0].from.first(), maps[0].to.first()), (2222, 22));
            }
            other => panic!("{other:?}"),
        }
        let cli = run(Mode::Pasta, &["-t", "auto"]).expect("parse");
        assert_eq!(cli.tcp_ports, [PortSpec::auto()]);
        let _: Option<&PortRule> = cli.tcp_ports[0].rules.first();
    }
}
