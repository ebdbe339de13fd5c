//! The validated, typed configuration every other module reads.
//!
//! `cli` turns argv into raw options; this module checks them against each
//! other and against what `host` probing found, and produces one `Config`.
//! Nothing downstream re-validates: if a `Config` exists, it is coherent.

pub mod build;
pub mod host;
pub mod ports;
pub mod resolv;

use log::LevelFilter;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

pub use host::HostInfo;
pub use ports::PortSpec;

/// A whole number of seconds above zero from environment variable `name`
/// (its value `value`): testing aids that shorten a timeout
/// (`PASST_RS_UDP_IDLE_SECS`, `PASST_RS_TCP_KEEPALIVE_SECS`), so tests
/// needn't wait for minutes or hours. Anything else, or more than a year
/// (so that deadlines computed from it can't overflow), is ignored, with a
/// warning.
pub fn secs_from_env(name: &str, value: Option<std::ffi::OsString>) -> Option<Duration> {
    const YEAR: u64 = 365 * 24 * 3600;
    let v = value?;
    match v.to_str().and_then(|s| s.trim().parse::<u64>().ok()) {
        Some(secs) if (1..=YEAR).contains(&secs) => Some(Duration::from_secs(secs)),
        _ => {
            log::warn!("{name}={v:?}: not a number of seconds, ignored");
            None
        }
    }
}

/// Which face the program runs as, chosen by the name it was run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve a VM over a UNIX domain socket.
    Passt,
    /// Serve a network namespace through a tap device.
    Pasta,
}

impl Mode {
    /// Program name used as the prefix of every message.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Passt => "passt",
            Mode::Pasta => "pasta",
        }
    }

    /// The most verbose level logged without `-d`, `--trace` or `-q`.
    ///
    /// pasta's command owns the terminal, so pasta only reports what went
    /// wrong; passt also tells what the guest will be given and where to
    /// connect, as upstream does.
    pub fn default_log_level(self) -> LevelFilter {
        match self {
            Mode::Passt => LevelFilter::Info,
            Mode::Pasta => LevelFilter::Warn,
        }
    }
}

/// Default MTU advertised to the guest: the largest 802.3 frame minus its
/// header, rounded down to a multiple of 4.
pub const DEFAULT_MTU: u16 = 65520;

/// Default cap of a log file, in bytes.
pub const DEFAULT_LOG_SIZE: u64 = 1 << 20;

/// Our MAC address unless `-M` says otherwise (locally administered).
pub const DEFAULT_OUR_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];

/// User and group to run as after setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// Numeric user ID.
    pub uid: u32,
    /// Numeric group ID.
    pub gid: u32,
}

/// IPv4 configuration handed to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip4Config {
    /// Address the guest gets (DHCP yiaddr, pasta --config-net).
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// Default gateway announced to the guest.
    pub gateway: Ipv4Addr,
    /// Whether `addr` was given with `-a` (so only that one is copied).
    pub addr_from_cli: bool,
    /// Whether `gateway` was given with `-g` (so routes are not copied).
    pub gateway_from_cli: bool,
    /// Nameservers announced to the guest.
    pub dns: Vec<Ipv4Addr>,
    /// `--dns-forward` address, if any.
    pub dns_forward: Option<Ipv4Addr>,
    /// `--dns-host` address (where forwarded queries go), if any.
    pub dns_host: Option<Ipv4Addr>,
    /// `--map-host-loopback` address, `None` when disabled.
    pub map_host_loopback: Option<Ipv4Addr>,
    /// `--map-guest-addr` address, `None` when disabled.
    pub map_guest_addr: Option<Ipv4Addr>,
    /// `-o` source address for outbound sockets.
    pub outbound: Option<Ipv4Addr>,
    /// `--outbound-if4` interface for outbound sockets.
    pub outbound_if: Option<String>,
    /// Every address of the template interface (pasta `--config-net`
    /// copies them all unless `-a` or `--no-copy-addrs`).
    pub host_addrs: Vec<host::HostAddr<Ipv4Addr>>,
    /// Routes of the template interface (copied by `--config-net` unless
    /// `-g` or `--no-copy-routes`).
    pub host_routes: Vec<host::HostRoute<Ipv4Addr>>,
}

/// IPv6 configuration handed to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip6Config {
    /// Global address the guest gets (DHCPv6 IA_NA, pasta --config-net).
    pub addr: Ipv6Addr,
    /// Its prefix length (used for the RA prefix).
    pub prefix_len: u8,
    /// Router address: source of RAs and DHCPv6 replies.
    pub gateway: Ipv6Addr,
    /// Whether `addr` was given with `-a`.
    pub addr_from_cli: bool,
    /// Whether `gateway` was given with `-g`.
    pub gateway_from_cli: bool,
    /// Nameservers announced to the guest.
    pub dns: Vec<Ipv6Addr>,
    /// `--dns-forward` address, if any.
    pub dns_forward: Option<Ipv6Addr>,
    /// `--dns-host` address, if any.
    pub dns_host: Option<Ipv6Addr>,
    /// `--map-host-loopback` address, `None` when disabled.
    pub map_host_loopback: Option<Ipv6Addr>,
    /// `--map-guest-addr` address, `None` when disabled.
    pub map_guest_addr: Option<Ipv6Addr>,
    /// `-o` source address for outbound sockets.
    pub outbound: Option<Ipv6Addr>,
    /// `--outbound-if6` interface for outbound sockets.
    pub outbound_if: Option<String>,
    /// Every global address of the template interface.
    pub host_addrs: Vec<host::HostAddr<Ipv6Addr>>,
    /// Routes of the template interface.
    pub host_routes: Vec<host::HostRoute<Ipv6Addr>>,
}

/// Port forwarding in all four directions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forwarding {
    /// `-t`: host TCP ports forwarded to the guest.
    pub tcp_in: PortSpec,
    /// `-u`: host UDP ports forwarded to the guest.
    pub udp_in: PortSpec,
    /// `-T` (pasta): namespace TCP ports forwarded to the host.
    pub tcp_out: PortSpec,
    /// `-U` (pasta): namespace UDP ports forwarded to the host.
    pub udp_out: PortSpec,
}

/// Which built-in services and protocol handlers are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Services {
    /// TCP translation.
    pub tcp: bool,
    /// UDP translation.
    pub udp: bool,
    /// ICMP/ICMPv6 echo translation.
    pub icmp: bool,
    /// DHCPv4 server.
    pub dhcp: bool,
    /// NDP responder (neighbour and router solicitations).
    pub ndp: bool,
    /// DHCPv6 server.
    pub dhcpv6: bool,
    /// Router advertisements.
    pub ra: bool,
    /// Announce nameservers over DHCP/DHCPv6/RA.
    pub dhcp_dns: bool,
    /// Announce the search list over DHCP/DHCPv6/RA.
    pub dhcp_search: bool,
}

/// Where pasta's target namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsTarget {
    /// Create new namespaces and spawn this command (empty: the user's shell).
    Spawn(Vec<String>),
    /// Join the namespaces of this process.
    Pid(u32),
    /// Join the network namespace bound at this path.
    Path(PathBuf),
}

/// pasta-only settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastaConfig {
    /// Which namespace to serve.
    pub target: NsTarget,
    /// `--userns` path, if given.
    pub userns: Option<PathBuf>,
    /// `--netns-only`.
    pub netns_only: bool,
    /// `--no-netns-quit`.
    pub no_netns_quit: bool,
    /// `--config-net`.
    pub config_net: bool,
    /// `--no-copy-routes`.
    pub no_copy_routes: bool,
    /// `--no-copy-addrs`.
    pub no_copy_addrs: bool,
    /// `-I`: tap name in the namespace (defaults to the template interface's name).
    pub ns_ifname: String,
    /// `--ns-mac-addr`.
    pub ns_mac: Option<[u8; 6]>,
    /// `--no-splice`.
    pub no_splice: bool,
    /// `--splice-only`: no tap device; only the splice paths.
    pub splice_only: bool,
    /// `--host-lo-to-ns-lo`.
    pub host_lo_to_ns_lo: bool,
}

/// passt-only settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasstConfig {
    /// `-s`: socket path; `None` means probe `/tmp/passt_N.socket`.
    pub socket_path: Option<PathBuf>,
    /// `-F`: serve this already connected socket.
    pub fd: Option<RawFd>,
    /// `-1`: exit when the guest disconnects (implied by `--fd`).
    pub one_off: bool,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// passt or pasta.
    pub mode: Mode,
    /// `-d`.
    pub debug: bool,
    /// `--trace` (implies debug).
    pub trace: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-f`.
    pub foreground: bool,
    /// `-l`.
    pub log_file: Option<PathBuf>,
    /// `--log-size`.
    pub log_size: u64,
    /// `--stats`: print the counters at most this often, when they change.
    pub stats: Option<Duration>,
    /// `--runas`, resolved to IDs; `None` means the default (nobody if root).
    pub runas: Option<RunAs>,
    /// `-p`.
    pub pcap: Option<PathBuf>,
    /// `-P`.
    pub pidfile: Option<PathBuf>,
    /// `-M`: our MAC address towards the guest.
    pub our_mac: [u8; 6],
    /// MTU to advertise; `None` for `-m 0` (don't advertise).
    pub mtu: Option<u16>,
    /// IPv4 settings; `None` when IPv4 is disabled (`-6` or no IPv4 on the host).
    pub ip4: Option<Ip4Config>,
    /// IPv6 settings; `None` when IPv6 is disabled.
    pub ip6: Option<Ip6Config>,
    /// Template interface names (for messages and pasta's default tap name).
    pub template_if4: Option<String>,
    /// See `template_if4`.
    pub template_if6: Option<String>,
    /// Search domains announced to the guest.
    pub search: Vec<String>,
    /// `-H`.
    pub hostname: Option<String>,
    /// `--fqdn`.
    pub fqdn: Option<String>,
    /// Built-in services.
    pub services: Services,
    /// `--freebind`.
    pub freebind: bool,
    /// `--chroot-fallback`.
    pub chroot_fallback: bool,
    /// Port forwarding.
    pub fwd: Forwarding,
    /// passt-only settings (defaults in pasta mode).
    pub passt: PasstConfig,
    /// pasta-only settings (`None` in passt mode).
    pub pasta: Option<PastaConfig>,
}

impl Config {
    /// The most verbose level to log: `--trace`, `-d`, then `-q` (warnings
    /// and errors only), else the mode's default.
    pub fn log_level(&self) -> LevelFilter {
        if self.trace {
            LevelFilter::Trace
        } else if self.debug {
            LevelFilter::Debug
        } else if self.quiet {
            LevelFilter::Warn
        } else {
            self.mode.default_log_level()
        }
    }

    /// A complete configuration for fuzz targets and examples: every
    /// DHCP(v6)/NDP feature on, an off-link IPv4 gateway (classless
    /// routes), a search list that needs compression.
    #[doc(hidden)]
    pub fn example() -> Config {
        Config {
            mode: Mode::Passt,
            debug: false,
            trace: false,
            quiet: true,
            foreground: true,
            log_file: None,
            log_size: DEFAULT_LOG_SIZE,
            stats: None,
            runas: None,
            pcap: None,
            pidfile: None,
            our_mac: DEFAULT_OUR_MAC,
            mtu: Some(DEFAULT_MTU),
            ip4: Some(Ip4Config {
                addr: Ipv4Addr::new(10, 0, 0, 2),
                prefix_len: 24,
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                addr_from_cli: false,
                gateway_from_cli: false,
                dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
                dns_forward: None,
                dns_host: None,
                map_host_loopback: None,
                map_guest_addr: None,
                outbound: None,
                outbound_if: None,
                host_addrs: vec![],
                host_routes: vec![],
            }),
            ip6: Some(Ip6Config {
                addr: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
                prefix_len: 64,
                gateway: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
                addr_from_cli: false,
                gateway_from_cli: false,
                dns: vec![Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53)],
                dns_forward: None,
                dns_host: None,
                map_host_loopback: None,
                map_guest_addr: None,
                outbound: None,
                outbound_if: None,
                host_addrs: vec![],
                host_routes: vec![],
            }),
            template_if4: Some("eth0".into()),
            template_if6: Some("eth0".into()),
            search: vec!["example.com".into(), "sub.example.com".into()],
            hostname: Some("guest".into()),
            fqdn: Some("guest.example.com".into()),
            services: Services {
                tcp: true,
                udp: true,
                icmp: true,
                dhcp: true,
                ndp: true,
                dhcpv6: true,
                ra: true,
                dhcp_dns: true,
                dhcp_search: true,
            },
            freebind: false,
            chroot_fallback: false,
            fwd: Forwarding::default(),
            passt: PasstConfig::default(),
            pasta: None,
        }
    }
}
