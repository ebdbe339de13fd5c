//! Turns parsed options and what host probing found into one validated `Config`.
//!
//! # Theory of operation
//!
//! [`build`] runs in this order, each step reading only what the previous
//! ones settled:
//!
//! 1. Options this build doesn't implement yet are refused by name; so are
//!    explicit port specs other than `none`, which is why forwarding is
//!    settled this early.
//! 2. `--runas` is looked up in the user and group databases.
//! 3. Each wanted address family picks a template: the host interface that
//!    probing found, if it has an address and a gateway (or `-g` supplies
//!    one). A family without a template is disabled when the other family
//!    has one; when neither has (or `-a` gives the family an address), it
//!    runs in local mode (manual, "Local mode for disconnected setups"):
//!    IPv4 169.254.2.1/16 via 169.254.2.2, IPv6 with no address of its own
//!    via fe80::1. `-a`, `-n` and `-g` override either source.
//! 4. Address mappings: `--map-host-loopback` defaults to the gateway.
//! 5. Nameservers: `-D` per family, else the host's, with loopback ones
//!    (unreachable from the guest) replaced by a forwarding address.
//! 6. Services, forwarding defaults, and the settings of each mode.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nix::unistd::{Group, Uid, User};

use crate::cli::{Cli, OrNone, RunAsArg};
use crate::conf::host::HostFamily;
use crate::conf::ports::{PortSpec, PortSpecError};
use crate::conf::{
    Config, DEFAULT_LOG_SIZE, DEFAULT_MTU, DEFAULT_OUR_MAC, Forwarding, HostInfo, Ip4Config,
    Ip6Config, Mode, NsTarget, PasstConfig, PastaConfig, RunAs, Services,
};

/// IPv4 address the guest gets in local mode.
pub const LOCAL_ADDR4: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 1);
/// Prefix length of [`LOCAL_ADDR4`].
pub const LOCAL_PREFIX_LEN4: u8 = 16;
/// IPv4 gateway in local mode.
pub const LOCAL_GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 2, 2);
/// IPv6 gateway (router) in local mode.
pub const LOCAL_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// IPv6 prefix length announced to the guest: the manual says a `-a`
/// prefix is overridden by 64, and SLAAC needs a /64 anyway (RFC 4862 5.5.3).
pub const PREFIX_LEN6: u8 = 64;
/// pasta's tap name when there is no template interface to copy the name of.
pub const DEFAULT_NS_IFNAME: &str = "tap0";

/// Why no `Config` could be built; one line naming the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    /// An option this build accepts but doesn't implement yet.
    #[error("{0}: not supported yet")]
    NotSupported(&'static str),
    /// `--runas` names an unknown login.
    #[error("--runas: no such user '{0}'")]
    NoSuchUser(String),
    /// `--runas` names an unknown group.
    #[error("--runas: no such group '{0}'")]
    NoSuchGroup(String),
    /// The user or group database couldn't be read.
    #[error("--runas: can't look up '{0}': {1}")]
    Lookup(String, nix::errno::Errno),
    /// Port specs that don't combine (normally caught by `cli::parse`).
    #[error("{0}: {1}")]
    Ports(&'static str, PortSpecError),
    /// `--outbound-if4`/`--outbound-if6` names an interface probing couldn't use.
    #[error("{0}: {1}: interface not usable for {2}")]
    OutboundIf(&'static str, String, &'static str),
}

/// Builds the configuration for `mode` from the options and the host.
///
/// # Errors
///
/// A [`ConfError`] for options not supported yet, unknown `--runas`
/// user or group, or an unusable outbound interface.
pub fn build(mode: Mode, cli: &Cli, host: &HostInfo) -> Result<Config, ConfError> {
    check_supported(cli)?;
    check_outbound_ifs(cli, host)?;
    let runas = cli.runas.as_ref().map(resolve_runas).transpose()?;
    let fwd = forwarding(mode, cli)?;

    let tmpl4 = cli
        .ipv4_wanted()
        .then(|| template(host.v4.as_ref(), cli, v4_of))
        .flatten();
    let tmpl6 = cli
        .ipv6_wanted()
        .then(|| template(host.v6.as_ref(), cli, v6_of))
        .flatten();
    // A host with one family only runs just that one (the other is
    // disabled, and `app` says so); local mode is for hosts with no usable
    // family at all, or for a family whose address is given with -a.
    let disconnected = tmpl4.is_none() && tmpl6.is_none();
    let run4 =
        cli.ipv4_wanted() && (tmpl4.is_some() || disconnected || cli.address_of(true).is_some());
    let run6 =
        cli.ipv6_wanted() && (tmpl6.is_some() || disconnected || cli.address_of(false).is_some());
    let ip4 = run4.then(|| ip4_config(cli, host, tmpl4));
    let ip6 = run6.then(|| ip6_config(cli, host, tmpl6));
    let template_if4 = tmpl4.map(|t| t.ifname.clone());
    let template_if6 = tmpl6.map(|t| t.ifname.clone());

    let template_name = template_if4.as_deref().or(template_if6.as_deref());
    let pasta = (mode == Mode::Pasta).then(|| pasta_config(cli, template_name));
    let services = services(mode, cli, ip4.as_ref(), ip6.as_ref());
    Ok(Config {
        mode,
        debug: cli.debug || cli.trace,
        trace: cli.trace,
        quiet: cli.quiet,
        foreground: cli.foreground,
        log_file: cli.log_file.clone(),
        log_size: cli.log_size.unwrap_or(DEFAULT_LOG_SIZE),
        stats: cli.stats.map(|s| Duration::from_secs(s.into())),
        runas,
        pcap: cli.pcap.clone(),
        pidfile: cli.pidfile.clone(),
        our_mac: cli.mac_addr.unwrap_or(DEFAULT_OUR_MAC),
        mtu: match cli.mtu {
            None => Some(DEFAULT_MTU),
            Some(0) => None,
            Some(mtu) => Some(mtu),
        },
        ip4,
        ip6,
        template_if4,
        template_if6,
        search: search_list(cli, host),
        hostname: cli.hostname.clone(),
        fqdn: cli.fqdn.clone(),
        services,
        freebind: cli.freebind,
        chroot_fallback: cli.chroot_fallback,
        fwd,
        passt: passt_config(mode, cli),
        pasta,
    })
}

/// Refuses, by name, options that this build accepts but can't honour yet.
fn check_supported(cli: &Cli) -> Result<(), ConfError> {
    let unsupported = [
        (cli.vhost_user, "--vhost-user"),
        (cli.print_capabilities, "--print-capabilities"),
        (cli.repair_path.is_some(), "--repair-path"),
        (cli.conf_path.is_some(), "--conf-path"),
        (cli.migrate_exit, "--migrate-exit"),
        (cli.migrate_no_linger, "--migrate-no-linger"),
    ];
    match unsupported.iter().find(|(given, _)| *given) {
        Some((_, name)) => Err(ConfError::NotSupported(name)),
        None => Ok(()),
    }
}

/// An outbound interface that probing found nothing on can't be bound to.
fn check_outbound_ifs(cli: &Cli, host: &HostInfo) -> Result<(), ConfError> {
    if let Some(name) = &cli.outbound_if4
        && cli.ipv4_wanted()
        && host.v4.is_none()
    {
        return Err(ConfError::OutboundIf(
            "--outbound-if4",
            name.clone(),
            "IPv4",
        ));
    }
    if let Some(name) = &cli.outbound_if6
        && cli.ipv6_wanted()
        && host.v6.is_none()
    {
        return Err(ConfError::OutboundIf(
            "--outbound-if6",
            name.clone(),
            "IPv6",
        ));
    }
    Ok(())
}

/// Looks up `--runas` USER[:GROUP] by number or name.
fn resolve_runas(arg: &RunAsArg) -> Result<RunAs, ConfError> {
    let (uid, primary_gid) = resolve_user(&arg.user)?;
    let gid = match &arg.group {
        Some(group) => resolve_group(group)?,
        None => primary_gid,
    };
    Ok(RunAs { uid, gid })
}

/// A user's UID and primary GID.
fn resolve_user(user: &str) -> Result<(u32, u32), ConfError> {
    if let Some(uid) = numeric_id(user) {
        // A bare UID runs with that user's group; with no passwd entry,
        // the GID of the same number, as upstream does.
        let gid = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or(uid, |u| u.gid.as_raw());
        return Ok((uid, gid));
    }
    match User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(ConfError::NoSuchUser(user.to_string())),
        Err(e) => Err(ConfError::Lookup(user.to_string(), e)),
    }
}

/// A group's GID.
fn resolve_group(group: &str) -> Result<u32, ConfError> {
    if let Some(gid) = numeric_id(group) {
        return Ok(gid);
    }
    match Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(ConfError::NoSuchGroup(group.to_string())),
        Err(e) => Err(ConfError::Lookup(group.to_string(), e)),
    }
}

/// A UID or GID written as a number.
fn numeric_id(s: &str) -> Option<u32> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

/// The IPv4 half of an address, if it is one.
fn v4_of(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// The IPv6 half of an address, if it is one.
fn v6_of(addr: IpAddr) -> Option<Ipv6Addr> {
    match addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

/// The last address of one family in a repeated option.
fn last_of<A>(addrs: &[IpAddr], pick: fn(IpAddr) -> Option<A>) -> Option<A> {
    addrs.iter().rev().find_map(|a| pick(*a))
}

/// The host family as template, if it can serve as one: it needs an address,
/// and a gateway unless `-g` gives one (as upstream, a family without a
/// default gateway falls back to local mode).
fn template<'h, A: Copy>(
    family: Option<&'h HostFamily<A>>,
    cli: &Cli,
    pick: fn(IpAddr) -> Option<A>,
) -> Option<&'h HostFamily<A>> {
    let gateway_given = last_of(&cli.gateway, pick).is_some();
    family.filter(|f| !f.addrs.is_empty() && (f.gateway.is_some() || gateway_given))
}

/// Classful prefix length of an IPv4 address given without one (RFC 791).
fn classful_prefix_len(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

/// IPv4 settings: `-a`/`-n`/`-g`, else the template, else local mode.
fn ip4_config(cli: &Cli, host: &HostInfo, tmpl: Option<&HostFamily<Ipv4Addr>>) -> Ip4Config {
    let cli_addr = cli
        .address_of(true)
        .and_then(|a| Some((v4_of(a.addr)?, a.prefix_len)));
    let cli_gateway = last_of(&cli.gateway, v4_of);
    let host_addr = tmpl.and_then(|t| t.addrs.first());
    let (addr, prefix_len) = match (cli_addr, host_addr) {
        (Some((addr, len)), _) => (addr, len.unwrap_or_else(|| classful_prefix_len(addr))),
        (None, Some(h)) => (h.addr, h.prefix_len),
        (None, None) => (LOCAL_ADDR4, LOCAL_PREFIX_LEN4),
    };
    let gateway = cli_gateway
        .or_else(|| tmpl.and_then(|t| t.gateway))
        .unwrap_or(LOCAL_GATEWAY4);
    let map_host_loopback = host_mapping(cli, v4_of, gateway);
    let dns = dns_choice(cli, host, v4_of, Ipv4Addr::is_loopback, map_host_loopback);
    Ip4Config {
        addr,
        prefix_len: cli.netmask.unwrap_or(prefix_len),
        gateway,
        // Local mode copies nothing from the host either: it is as if
        // address and gateway had been given.
        addr_from_cli: cli_addr.is_some() || tmpl.is_none(),
        gateway_from_cli: cli_gateway.is_some() || tmpl.is_none(),
        dns: dns.announce,
        dns_forward: dns.forward,
        dns_host: dns.host,
        map_host_loopback,
        map_guest_addr: guest_mapping(cli, v4_of),
        outbound: last_of(&cli.outbound, v4_of),
        outbound_if: cli.outbound_if4.clone(),
        host_addrs: tmpl.map(|t| t.addrs.clone()).unwrap_or_default(),
        host_routes: tmpl.map(|t| t.routes.clone()).unwrap_or_default(),
    }
}

/// IPv6 settings: `-a`/`-g`, else the template, else local mode, where the
/// guest keeps only its link-local address (`addr` is `::`).
fn ip6_config(cli: &Cli, host: &HostInfo, tmpl: Option<&HostFamily<Ipv6Addr>>) -> Ip6Config {
    let cli_addr = cli.address_of(false).and_then(|a| v6_of(a.addr));
    let cli_gateway = last_of(&cli.gateway, v6_of);
    let addr = cli_addr
        .or_else(|| tmpl.and_then(|t| t.addrs.first()).map(|h| h.addr))
        .unwrap_or(Ipv6Addr::UNSPECIFIED);
    let gateway = cli_gateway
        .or_else(|| tmpl.and_then(|t| t.gateway))
        .unwrap_or(LOCAL_GATEWAY6);
    let map_host_loopback = host_mapping(cli, v6_of, gateway);
    let dns = dns_choice(cli, host, v6_of, Ipv6Addr::is_loopback, map_host_loopback);
    Ip6Config {
        addr,
        prefix_len: PREFIX_LEN6,
        gateway,
        addr_from_cli: cli_addr.is_some() || tmpl.is_none(),
        gateway_from_cli: cli_gateway.is_some() || tmpl.is_none(),
        dns: dns.announce,
        dns_forward: dns.forward,
        dns_host: dns.host,
        map_host_loopback,
        map_guest_addr: guest_mapping(cli, v6_of),
        outbound: last_of(&cli.outbound, v6_of),
        outbound_if: cli.outbound_if6.clone(),
        host_addrs: tmpl.map(|t| t.addrs.clone()).unwrap_or_default(),
        host_routes: tmpl.map(|t| t.routes.clone()).unwrap_or_default(),
    }
}

/// `--map-host-loopback` for one family: the last address given, else the
/// gateway, unless `--no-map-gw` or `none` (which stays in effect, as it
/// implies `--no-map-gw`).
fn host_mapping<A>(cli: &Cli, pick: fn(IpAddr) -> Option<A>, gateway: A) -> Option<A> {
    let mut explicit = None;
    let mut no_map_gw = cli.no_map_gw;
    for arg in &cli.map_host_loopback {
        match arg {
            OrNone::None => {
                explicit = None;
                no_map_gw = true;
            }
            OrNone::Value(addr) => explicit = pick(*addr).or(explicit),
        }
    }
    explicit.or(if no_map_gw { None } else { Some(gateway) })
}

/// `--map-guest-addr` for one family: the last address given, `none` clears.
fn guest_mapping<A>(cli: &Cli, pick: fn(IpAddr) -> Option<A>) -> Option<A> {
    let mut mapped = None;
    for arg in &cli.map_guest_addr {
        match arg {
            OrNone::None => mapped = None,
            OrNone::Value(addr) => mapped = pick(*addr).or(mapped),
        }
    }
    mapped
}

/// Nameserver settings for one family.
struct DnsChoice<A> {
    /// Announced to the guest.
    announce: Vec<A>,
    /// Address whose DNS traffic goes to `host`.
    forward: Option<A>,
    /// Host nameserver for forwarded queries.
    host: Option<A>,
}

/// What `-D` says for one family, in command-line order.
enum CliDns<A> {
    /// Nothing for this family: use the host's.
    Unset,
    /// `-D none` last: announce nothing.
    Off,
    /// Addresses to announce as given.
    List(Vec<A>),
}

/// Folds the `-D` options for one family. `none` clears both families; a
/// later address of either family cancels it, like upstream.
fn cli_dns<A>(args: &[OrNone<IpAddr>], pick: fn(IpAddr) -> Option<A>) -> CliDns<A> {
    let mut none = false;
    let mut list = Vec::new();
    for arg in args {
        match arg {
            OrNone::None => {
                none = true;
                list.clear();
            }
            OrNone::Value(addr) => {
                none = false;
                list.extend(pick(*addr));
            }
        }
    }
    match (list.is_empty(), none) {
        (false, _) => CliDns::List(list),
        (true, true) => CliDns::Off,
        (true, false) => CliDns::Unset,
    }
}

/// Picks nameservers, forwarding address and host nameserver for a family.
fn dns_choice<A: Copy + PartialEq>(
    cli: &Cli,
    host: &HostInfo,
    pick: fn(IpAddr) -> Option<A>,
    is_loopback: fn(&A) -> bool,
    map_host_loopback: Option<A>,
) -> DnsChoice<A> {
    let host_ns: Vec<A> = host.nameservers.iter().filter_map(|a| pick(*a)).collect();
    let mut forward = last_of(&cli.dns_forward, pick);
    let host_server = last_of(&cli.dns_host, pick).or_else(|| host_ns.first().copied());
    let announce = match cli_dns(&cli.dns, pick) {
        CliDns::List(list) => list,
        CliDns::Off => Vec::new(),
        CliDns::Unset => guest_nameservers(&host_ns, &mut forward, map_host_loopback, is_loopback),
    };
    DnsChoice {
        announce,
        forward,
        host: host_server,
    }
}

/// The host's nameservers as the guest can reach them.
///
/// A loopback nameserver means nothing to the guest, and one equal to the
/// host-mapped address would be shadowed by the mapping. Such a server is
/// announced as the `--dns-forward` address, or, without one, as the mapped
/// address, which then becomes the forwarding address (manual, NOTES:
/// "Handling of traffic with loopback destination and source addresses").
/// With neither, it is dropped.
fn guest_nameservers<A: Copy + PartialEq>(
    host_ns: &[A],
    forward: &mut Option<A>,
    map_host_loopback: Option<A>,
    is_loopback: fn(&A) -> bool,
) -> Vec<A> {
    let mut out: Vec<A> = Vec::new();
    for ns in host_ns {
        let reachable = !is_loopback(ns) && Some(*ns) != map_host_loopback;
        let announced = if reachable {
            Some(*ns)
        } else if forward.is_some() {
            *forward
        } else {
            *forward = map_host_loopback;
            map_host_loopback
        };
        if let Some(addr) = announced.filter(|a| !out.contains(a)) {
            out.push(addr);
        }
    }
    out
}

/// Search domains: `-S` (folded like `-D`), else the host's.
fn search_list(cli: &Cli, host: &HostInfo) -> Vec<String> {
    let mut none = false;
    let mut list = Vec::new();
    for arg in &cli.search {
        match arg {
            OrNone::None => {
                none = true;
                list.clear();
            }
            OrNone::Value(domains) => {
                none = false;
                list.extend(domains.iter().cloned());
            }
        }
    }
    if list.is_empty() && !none {
        host.search.clone()
    } else {
        list
    }
}

/// Built-in services, after the manual's implications.
fn services(mode: Mode, cli: &Cli, ip4: Option<&Ip4Config>, ip6: Option<&Ip6Config>) -> Services {
    // --no-icmp implies --no-ndp.
    let ndp = ip6.is_some() && !cli.no_ndp && !cli.no_icmp;
    let pasta_configures_ns = mode == Mode::Pasta && cli.config_net;
    Services {
        tcp: !cli.no_tcp,
        udp: !cli.no_udp,
        icmp: !cli.no_icmp,
        dhcp: ip4.is_some() && !cli.no_dhcp,
        ndp,
        // Nothing to lease without a global address (IPv6 local mode).
        dhcpv6: ip6.is_some_and(|c| !c.addr.is_unspecified()) && !cli.no_dhcpv6,
        // With --config-net pasta sets addresses and routes itself; RAs
        // would only add a second, competing configuration.
        ra: ndp && !cli.no_ra && !pasta_configures_ns,
        dhcp_dns: match mode {
            Mode::Passt => !cli.no_dhcp_dns,
            Mode::Pasta => cli.dhcp_dns,
        },
        dhcp_search: match mode {
            Mode::Passt => !cli.no_dhcp_search,
            Mode::Pasta => cli.dhcp_search,
        },
    }
}

/// Forwarding in all four directions: mode defaults, or the specs given.
/// Still refused until implemented: `-U`.
fn forwarding(mode: Mode, cli: &Cli) -> Result<Forwarding, ConfError> {
    let pasta_default = || match mode {
        Mode::Passt => PortSpec::none(),
        Mode::Pasta => PortSpec::auto(),
    };
    let one = |name: &'static str, specs: &[PortSpec], default: PortSpec, on: bool| {
        let supported = matches!(
            name,
            "--tcp-ports" | "--udp-ports" | "--tcp-ns" | "--udp-ns"
        );
        let spec = match PortSpec::combine(specs).map_err(|e| ConfError::Ports(name, e))? {
            Some(spec) if !spec.is_none() && !supported => {
                return Err(ConfError::NotSupported(name));
            }
            Some(spec) if !spec.is_none() => spec,
            Some(none) => none,
            None => default,
        };
        // A disabled protocol forwards nothing, whatever the default.
        Ok(if on { spec } else { PortSpec::none() })
    };
    Ok(Forwarding {
        tcp_in: one("--tcp-ports", &cli.tcp_ports, pasta_default(), !cli.no_tcp)?,
        udp_in: one("--udp-ports", &cli.udp_ports, pasta_default(), !cli.no_udp)?,
        tcp_out: one("--tcp-ns", &cli.tcp_ns, pasta_default(), !cli.no_tcp)?,
        udp_out: one("--udp-ns", &cli.udp_ns, pasta_default(), !cli.no_udp)?,
    })
}

/// passt-only settings (defaults for pasta, which rejects them at parse time).
fn passt_config(mode: Mode, cli: &Cli) -> PasstConfig {
    match mode {
        Mode::Passt => PasstConfig {
            socket_path: cli.socket_path.clone(),
            fd: cli.fd,
            one_off: cli.one_off || cli.fd.is_some(),
        },
        Mode::Pasta => PasstConfig::default(),
    }
}

/// pasta-only settings; `template_name` is the template interface's name,
/// IPv4 first, that the tap takes unless `-I` names it.
fn pasta_config(cli: &Cli, template_name: Option<&str>) -> PastaConfig {
    let target = cli.ns_target();
    // Joining a namespace by path without --userns joins no user namespace.
    let netns_only =
        cli.netns_only || (matches!(target, NsTarget::Path(_)) && cli.userns.is_none());
    let ns_ifname = cli
        .ns_ifname
        .clone()
        .unwrap_or_else(|| template_name.unwrap_or(DEFAULT_NS_IFNAME).to_string());
    PastaConfig {
        target,
        userns: cli.userns.clone(),
        netns_only,
        no_netns_quit: cli.no_netns_quit,
        config_net: cli.config_net,
        no_copy_routes: cli.no_copy_routes,
        no_copy_addrs: cli.no_copy_addrs,
        ns_ifname,
        ns_mac: cli.ns_mac_addr,
        no_splice: cli.no_splice,
        splice_only: cli.splice_only,
        host_lo_to_ns_lo: cli.host_lo_to_ns_lo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli;
    use crate::conf::host::{HostAddr, HostRoute};

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("test IPv4 address")
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test IPv6 address")
    }

    fn family<A: Copy>(ifname: &str, addr: A, prefix_len: u8, gateway: Option<A>) -> HostFamily<A> {
        HostFamily {
            ifname: ifname.into(),
            ifindex: 2,
            mtu: 1500,
            addrs: vec![HostAddr { addr, prefix_len }],
            gateway,
            routes: vec![HostRoute {
                dst: addr,
                prefix_len,
                gateway: None,
                metric: None,
            }],
        }
    }

    fn host4() -> Option<HostFamily<Ipv4Addr>> {
        Some(family("eth0", v4("192.0.2.10"), 24, Some(v4("192.0.2.1"))))
    }

    fn host6() -> Option<HostFamily<Ipv6Addr>> {
        Some(family(
            "eth6",
            v6("2001:db8::10"),
            64,
            Some(v6("fe80::1:1")),
        ))
    }

    /// A dual-stack host with ordinary nameservers and a search list.
    fn dual() -> HostInfo {
        HostInfo {
            v4: host4(),
            v6: host6(),
            v6_link_local: Some(v6("fe80::10")),
            nameservers: vec![
                "192.0.2.53".parse().expect("ns"),
                "2001:db8::53".parse().expect("ns"),
            ],
            search: vec!["example.org".into()],
        }
    }

    fn v4_only() -> HostInfo {
        HostInfo {
            v6: None,
            v6_link_local: None,
            ..dual()
        }
    }

    fn v6_only() -> HostInfo {
        HostInfo { v4: None, ..dual() }
    }

    /// A host with a local caching resolver, as with systemd-resolved.
    fn loopback_dns() -> HostInfo {
        HostInfo {
            nameservers: vec![
                "127.0.0.53".parse().expect("ns"),
                "::1".parse().expect("ns"),
            ],
            ..dual()
        }
    }

    fn try_build(mode: Mode, args: &[&str], host: &HostInfo) -> Result<Config, ConfError> {
        let argv = std::iter::once(mode.name()).chain(args.iter().copied());
        let cli = cli::parse(mode, argv).expect("test command line parses");
        build(mode, &cli, host)
    }

    fn conf(mode: Mode, args: &[&str], host: &HostInfo) -> Config {
        try_build(mode, args, host).expect("test configuration builds")
    }

    fn ip4(c: &Config) -> &Ip4Config {
        c.ip4.as_ref().expect("IPv4 enabled")
    }

    fn ip6(c: &Config) -> &Ip6Config {
        c.ip6.as_ref().expect("IPv6 enabled")
    }

    #[test]
    fn passt_defaults_mirror_the_host() {
        let c = conf(Mode::Passt, &[], &dual());
        let four = ip4(&c);
        assert_eq!(
            (four.addr, four.prefix_len, four.gateway),
            (v4("192.0.2.10"), 24, v4("192.0.2.1"))
        );
        assert!(!four.addr_from_cli && !four.gateway_from_cli);
        assert_eq!(four.dns, [v4("192.0.2.53")]);
        assert_eq!(
            (four.dns_forward, four.dns_host),
            (None, Some(v4("192.0.2.53")))
        );
        assert_eq!(four.map_host_loopback, Some(v4("192.0.2.1")));
        assert_eq!(four.map_guest_addr, None);
        let six = ip6(&c);
        assert_eq!(
            (six.addr, six.prefix_len, six.gateway),
            (v6("2001:db8::10"), 64, v6("fe80::1:1"))
        );
        assert_eq!(six.dns, [v6("2001:db8::53")]);
        assert_eq!(six.map_host_loopback, Some(v6("fe80::1:1")));
        assert_eq!(
            (c.template_if4.as_deref(), c.template_if6.as_deref()),
            (Some("eth0"), Some("eth6"))
        );
        assert_eq!(c.search, ["example.org"]);
        assert_eq!(c.mtu, Some(DEFAULT_MTU));
        assert_eq!(c.our_mac, DEFAULT_OUR_MAC);
        assert_eq!(c.log_size, DEFAULT_LOG_SIZE);
        assert_eq!(c.stats, None);
        assert_eq!(
            c.services,
            Services {
                tcp: true,
                udp: true,
                icmp: true,
                dhcp: true,
                ndp: true,
                dhcpv6: true,
                ra: true,
                dhcp_dns: true,
                dhcp_search: true,
            }
        );
        assert_eq!(c.fwd, Forwarding::default());
        assert_eq!(c.passt, PasstConfig::default());
        assert_eq!(c.pasta, None);
        assert!(!c.debug && !c.quiet && !c.foreground && c.runas.is_none());
    }

    #[test]
    fn pasta_defaults() {
        let c = conf(Mode::Pasta, &[], &dual());
        assert_eq!(
            c.fwd,
            Forwarding {
                tcp_in: PortSpec::auto(),
                udp_in: PortSpec::auto(),
                tcp_out: PortSpec::auto(),
                udp_out: PortSpec::auto(),
            }
        );
        assert!(!c.services.dhcp_dns && !c.services.dhcp_search && c.services.ra);
        assert_eq!(
            c.pasta,
            Some(PastaConfig {
                target: NsTarget::Spawn(Vec::new()),
                userns: None,
                netns_only: false,
                no_netns_quit: false,
                config_net: false,
                no_copy_routes: false,
                no_copy_addrs: false,
                ns_ifname: "eth0".into(),
                ns_mac: None,
                no_splice: false,
                splice_only: false,
                host_lo_to_ns_lo: false,
            })
        );
        assert_eq!(c.passt, PasstConfig::default());
        // pasta configures the namespace itself: no competing RAs.
        let c = conf(
            Mode::Pasta,
            &["--config-net", "--dhcp-dns", "--dhcp-search"],
            &dual(),
        );
        assert!(!c.services.ra && c.services.ndp && c.services.dhcp_dns && c.services.dhcp_search);
    }

    #[test]
    fn v4_only_host_disables_ipv6() {
        let c = conf(Mode::Pasta, &[], &v4_only());
        assert!(c.ip6.is_none());
        assert_eq!(c.template_if6, None);
        assert_eq!(c.pasta.map(|p| p.ns_ifname), Some("eth0".into()));
    }

    #[test]
    fn v6_only_host_disables_ipv4_unless_given_an_address() {
        let c = conf(Mode::Pasta, &[], &v6_only());
        assert!(c.ip4.is_none());
        assert_eq!(c.template_if4, None);
        assert!(c.services.dhcpv6);
        // The tap takes the name of the IPv6 template.
        assert_eq!(c.pasta.map(|p| p.ns_ifname), Some("eth6".into()));
        // -a brings IPv4 back, in local mode for what it doesn't say.
        let c = conf(Mode::Passt, &["-a", "10.1.2.3/24"], &v6_only());
        let four = ip4(&c);
        assert_eq!(
            (four.addr, four.prefix_len, four.gateway),
            (v4("10.1.2.3"), 24, LOCAL_GATEWAY4)
        );
        assert!(four.addr_from_cli && four.gateway_from_cli);
    }

    #[test]
    fn disconnected_host() {
        let c = conf(Mode::Pasta, &[], &HostInfo::default());
        assert_eq!(ip4(&c).addr, LOCAL_ADDR4);
        assert_eq!(ip6(&c).gateway, LOCAL_GATEWAY6);
        assert_eq!(
            c.pasta.as_ref().map(|p| p.ns_ifname.as_str()),
            Some(DEFAULT_NS_IFNAME)
        );
        assert!(c.search.is_empty() && ip4(&c).dns.is_empty());
        // -a and -g in local mode.
        let c = conf(
            Mode::Passt,
            &["-a", "10.1.2.3", "-g", "10.1.2.1"],
            &HostInfo::default(),
        );
        assert_eq!(
            (ip4(&c).addr, ip4(&c).prefix_len, ip4(&c).gateway),
            (v4("10.1.2.3"), 8, v4("10.1.2.1"))
        );
    }

    #[test]
    fn template_without_gateway_is_unused_unless_g() {
        let host = HostInfo {
            v4: Some(family("wg0", v4("10.9.0.2"), 32, None)),
            ..v6_only()
        };
        let c = conf(Mode::Passt, &[], &host);
        assert!(c.ip4.is_none() && c.template_if4.is_none());
        let c = conf(Mode::Passt, &["-g", "10.9.0.1"], &host);
        assert_eq!(
            (ip4(&c).addr, ip4(&c).gateway),
            (v4("10.9.0.2"), v4("10.9.0.1"))
        );
        assert_eq!(c.template_if4.as_deref(), Some("wg0"));
        assert!(!ip4(&c).addr_from_cli && ip4(&c).gateway_from_cli);
    }

    #[test]
    fn address_overrides() {
        // (args, IPv4 address, prefix length, gateway)
        let cases: &[(&[&str], &str, u8, &str)] = &[
            (&["-a", "10.0.0.5"], "10.0.0.5", 8, "192.0.2.1"),
            (&["-a", "172.16.0.5"], "172.16.0.5", 16, "192.0.2.1"),
            (&["-a", "192.0.2.99"], "192.0.2.99", 24, "192.0.2.1"),
            (&["-a", "192.0.2.99/28"], "192.0.2.99", 28, "192.0.2.1"),
            (
                &["-a", "10.0.0.5", "-n", "255.255.0.0"],
                "10.0.0.5",
                16,
                "192.0.2.1",
            ),
            (&["-n", "20"], "192.0.2.10", 20, "192.0.2.1"),
            (&["-g", "192.0.2.254"], "192.0.2.10", 24, "192.0.2.254"),
            (
                &["-a", "198.51.100.7/24", "-g", "198.51.100.1"],
                "198.51.100.7",
                24,
                "198.51.100.1",
            ),
        ];
        for (args, addr, prefix_len, gateway) in cases {
            let c = conf(Mode::Passt, args, &dual());
            let four = ip4(&c);
            assert_eq!(
                (four.addr, four.prefix_len, four.gateway),
                (v4(addr), *prefix_len, v4(gateway)),
                "{args:?}"
            );
            assert_eq!(four.addr_from_cli, args.contains(&"-a"), "{args:?}");
            assert_eq!(four.gateway_from_cli, args.contains(&"-g"), "{args:?}");
        }
        // IPv6: -a prefix is replaced by 64, as the manual says.
        let c = conf(
            Mode::Passt,
            &["-a", "2001:db8::99/48", "-g", "fe80::2"],
            &dual(),
        );
        assert_eq!(
            (ip6(&c).addr, ip6(&c).prefix_len, ip6(&c).gateway),
            (v6("2001:db8::99"), 64, v6("fe80::2"))
        );
        assert!(ip6(&c).addr_from_cli && ip6(&c).gateway_from_cli);
        assert_eq!(ip4(&c).addr, v4("192.0.2.10"));
    }

    #[test]
    fn family_switches() {
        let c = conf(Mode::Passt, &["-4"], &dual());
        assert!(c.ip4.is_some() && c.ip6.is_none() && c.template_if6.is_none());
        assert!(!c.services.ndp && !c.services.dhcpv6 && !c.services.ra && c.services.dhcp);
        let c = conf(Mode::Pasta, &["-6"], &dual());
        assert!(c.ip4.is_none() && c.ip6.is_some() && !c.services.dhcp);
        assert_eq!(c.pasta.map(|p| p.ns_ifname), Some("eth6".into()));
        let c = conf(Mode::Passt, &["-6", "-4"], &dual());
        assert!(c.ip4.is_some() && c.ip6.is_none());
    }

    #[test]
    fn dns_choices() {
        // (host, args, IPv4 announced, IPv4 forward, IPv6 announced)
        type Case = (
            fn() -> HostInfo,
            &'static [&'static str],
            &'static [&'static str],
            Option<&'static str>,
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (dual, &[], &["192.0.2.53"], None, &["2001:db8::53"]),
            (
                dual,
                &["-D", "1.1.1.1", "-D", "2606:4700::1111"],
                &["1.1.1.1"],
                None,
                &["2606:4700::1111"],
            ),
            // -D for one family leaves the other to the host.
            (
                dual,
                &["-D", "1.1.1.1"],
                &["1.1.1.1"],
                None,
                &["2001:db8::53"],
            ),
            (dual, &["-D", "none"], &[], None, &[]),
            (dual, &["-D", "1.1.1.1", "-D", "none"], &[], None, &[]),
            (
                dual,
                &["-D", "none", "-D", "1.1.1.1"],
                &["1.1.1.1"],
                None,
                &["2001:db8::53"],
            ),
            // Given as is, even loopback (the guest itself).
            (
                dual,
                &["-D", "127.0.0.1"],
                &["127.0.0.1"],
                None,
                &["2001:db8::53"],
            ),
            // Loopback host resolvers: the mapped gateway stands in.
            (
                loopback_dns,
                &[],
                &["192.0.2.1"],
                Some("192.0.2.1"),
                &["fe80::1:1"],
            ),
            (
                loopback_dns,
                &["--dns-forward", "169.254.1.1"],
                &["169.254.1.1"],
                Some("169.254.1.1"),
                &["fe80::1:1"],
            ),
            (loopback_dns, &["--no-map-gw"], &[], None, &[]),
            (
                loopback_dns,
                &[
                    "--map-host-loopback",
                    "none",
                    "--dns-forward",
                    "169.254.1.1",
                ],
                &["169.254.1.1"],
                Some("169.254.1.1"),
                &[],
            ),
            (
                dual,
                &["--dns-forward", "169.254.1.1"],
                &["192.0.2.53"],
                Some("169.254.1.1"),
                &["2001:db8::53"],
            ),
        ];
        for (host, args, want4, fwd4, want6) in cases {
            let c = conf(Mode::Passt, args, &host());
            let got4: Vec<String> = ip4(&c).dns.iter().map(ToString::to_string).collect();
            let got6: Vec<String> = ip6(&c).dns.iter().map(ToString::to_string).collect();
            assert_eq!(got4, *want4, "{args:?}");
            assert_eq!(ip4(&c).dns_forward, fwd4.map(v4), "{args:?}");
            assert_eq!(got6, *want6, "{args:?}");
        }
        // The host nameserver defaults to the first one of the family.
        let c = conf(Mode::Passt, &[], &loopback_dns());
        assert_eq!(
            (ip4(&c).dns_host, ip6(&c).dns_host),
            (Some(v4("127.0.0.53")), Some(v6("::1")))
        );
        let c = conf(
            Mode::Passt,
            &["--dns-host", "192.0.2.54", "--dns-host", "2001:db8::54"],
            &dual(),
        );
        assert_eq!(
            (ip4(&c).dns_host, ip6(&c).dns_host),
            (Some(v4("192.0.2.54")), Some(v6("2001:db8::54")))
        );
    }

    #[test]
    fn gateway_as_resolver_is_forwarded() {
        // The host's resolver is its gateway, which the guest sees as the host.
        let host = HostInfo {
            nameservers: vec!["192.0.2.1".parse().expect("ns")],
            ..dual()
        };
        let c = conf(Mode::Passt, &[], &host);
        assert_eq!(ip4(&c).dns, [v4("192.0.2.1")]);
        assert_eq!(ip4(&c).dns_forward, Some(v4("192.0.2.1")));
        assert_eq!(ip4(&c).dns_host, Some(v4("192.0.2.1")));
    }

    #[test]
    fn search_choices() {
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &["example.org"]),
            (&["-S", "a.example b.example"], &["a.example", "b.example"]),
            (
                &["-S", "a.example", "-S", "b.example"],
                &["a.example", "b.example"],
            ),
            (&["-S", "none"], &[]),
            (&["-S", "a.example", "-S", "none"], &[]),
            (&["-S", "none", "-S", "c.example"], &["c.example"]),
        ];
        for (args, want) in cases {
            assert_eq!(conf(Mode::Passt, args, &dual()).search, *want, "{args:?}");
        }
    }

    #[test]
    fn mappings() {
        let c = conf(Mode::Passt, &["--map-host-loopback", "none"], &dual());
        assert_eq!(
            (ip4(&c).map_host_loopback, ip6(&c).map_host_loopback),
            (None, None)
        );
        let c = conf(Mode::Passt, &["--no-map-gw"], &dual());
        assert_eq!(
            (ip4(&c).map_host_loopback, ip6(&c).map_host_loopback),
            (None, None)
        );
        let c = conf(
            Mode::Passt,
            &["--map-host-loopback", "192.0.2.222"],
            &dual(),
        );
        assert_eq!(ip4(&c).map_host_loopback, Some(v4("192.0.2.222")));
        assert_eq!(ip6(&c).map_host_loopback, Some(v6("fe80::1:1")));
        // An explicit address wins over --no-map-gw; `none` stays in effect.
        let c = conf(
            Mode::Passt,
            &["--no-map-gw", "--map-host-loopback", "192.0.2.222"],
            &dual(),
        );
        assert_eq!(
            (ip4(&c).map_host_loopback, ip6(&c).map_host_loopback),
            (Some(v4("192.0.2.222")), None)
        );
        let c = conf(
            Mode::Passt,
            &[
                "--map-host-loopback",
                "none",
                "--map-host-loopback",
                "fe80::5",
            ],
            &dual(),
        );
        assert_eq!(
            (ip4(&c).map_host_loopback, ip6(&c).map_host_loopback),
            (None, Some(v6("fe80::5")))
        );
        let c = conf(Mode::Passt, &["--map-guest-addr", "169.254.1.2"], &dual());
        assert_eq!(
            (ip4(&c).map_guest_addr, ip6(&c).map_guest_addr),
            (Some(v4("169.254.1.2")), None)
        );
        let c = conf(
            Mode::Passt,
            &[
                "--map-guest-addr",
                "169.254.1.2",
                "--map-guest-addr",
                "none",
            ],
            &dual(),
        );
        assert_eq!(ip4(&c).map_guest_addr, None);
    }

    #[test]
    fn outbound_settings() {
        let args = [
            "-o",
            "192.0.2.10",
            "-o",
            "2001:db8::10",
            "--outbound-if4",
            "eth0",
            "--outbound-if6",
            "eth6",
        ];
        let c = conf(Mode::Passt, &args, &dual());
        assert_eq!(
            (ip4(&c).outbound, ip4(&c).outbound_if.as_deref()),
            (Some(v4("192.0.2.10")), Some("eth0"))
        );
        assert_eq!(
            (ip6(&c).outbound, ip6(&c).outbound_if.as_deref()),
            (Some(v6("2001:db8::10")), Some("eth6"))
        );
        assert_eq!(
            try_build(Mode::Passt, &["--outbound-if4", "eth9"], &v6_only())
                .map_err(|e| e.to_string()),
            Err("--outbound-if4: eth9: interface not usable for IPv4".to_string())
        );
        assert_eq!(
            try_build(Mode::Passt, &["--outbound-if6", "eth9"], &v4_only())
                .map_err(|e| e.to_string()),
            Err("--outbound-if6: eth9: interface not usable for IPv6".to_string())
        );
        // Not an error when that family is off anyway.
        assert!(try_build(Mode::Passt, &["-4", "--outbound-if6", "eth9"], &v4_only()).is_ok());
    }

    #[test]
    fn service_switches() {
        type Check = fn(&Services) -> bool;
        let cases: &[(&[&str], Check)] = &[
            (&["--no-tcp"], |s| !s.tcp && s.udp),
            (&["--no-udp"], |s| s.tcp && !s.udp),
            (&["--no-icmp"], |s| !s.icmp && !s.ndp && !s.ra && s.dhcpv6),
            (&["--no-dhcp"], |s| !s.dhcp && s.dhcpv6),
            (&["--no-ndp"], |s| !s.ndp && !s.ra && s.icmp),
            (&["--no-dhcpv6"], |s| !s.dhcpv6 && s.dhcp),
            (&["--no-ra"], |s| !s.ra && s.ndp),
            (&["--no-dhcp-dns"], |s| !s.dhcp_dns && s.dhcp_search),
            (&["--no-dhcp-search"], |s| s.dhcp_dns && !s.dhcp_search),
        ];
        for (args, check) in cases {
            let c = conf(Mode::Passt, args, &dual());
            assert!(check(&c.services), "{args:?}: {:?}", c.services);
        }
        // A disabled protocol forwards nothing, even by default.
        let c = conf(Mode::Pasta, &["--no-tcp"], &dual());
        assert!(c.fwd.tcp_in.is_none() && c.fwd.tcp_out.is_none() && c.fwd.udp_in.has_auto());
    }

    #[test]
    fn general_settings() {
        let args = [
            "-d",
            "-f",
            "-l",
            "/tmp/log",
            "--log-size",
            "8192",
            "-p",
            "/tmp/p.pcap",
            "-P",
            "/tmp/pid",
            "-m",
            "1500",
            "-M",
            "02:00:00:00:00:01",
            "-H",
            "guest",
            "--fqdn",
            "guest.example",
            "--freebind",
            "--chroot-fallback",
            "--stats",
            "10",
        ];
        let c = conf(Mode::Passt, &args, &dual());
        assert!(c.debug && !c.trace && c.foreground && c.freebind && c.chroot_fallback);
        assert_eq!(c.log_file, Some("/tmp/log".into()));
        assert_eq!(c.log_size, 8192);
        assert_eq!(c.stats, Some(Duration::from_secs(10)));
        assert_eq!(
            (c.pcap, c.pidfile),
            (Some("/tmp/p.pcap".into()), Some("/tmp/pid".into()))
        );
        assert_eq!((c.mtu, c.our_mac), (Some(1500), [2, 0, 0, 0, 0, 1]));
        assert_eq!(
            (c.hostname.as_deref(), c.fqdn.as_deref()),
            (Some("guest"), Some("guest.example"))
        );
        assert_eq!(conf(Mode::Passt, &["-m", "0"], &dual()).mtu, None);
        let c = conf(Mode::Passt, &["--trace"], &dual());
        assert!(c.trace && c.debug);
        assert!(conf(Mode::Passt, &["-q"], &dual()).quiet);
    }

    #[test]
    fn log_level_quiet_by_default_in_pasta() {
        use log::LevelFilter::{Debug, Info, Trace, Warn};
        let cases: [(Mode, &[&str], _); 10] = [
            (Mode::Passt, &[], Info),
            (Mode::Passt, &["-q"], Warn),
            (Mode::Passt, &["-d"], Debug),
            (Mode::Passt, &["--trace"], Trace),
            (Mode::Pasta, &[], Warn),
            (Mode::Pasta, &["-q"], Warn),
            (Mode::Pasta, &["-d"], Debug),
            (Mode::Pasta, &["--debug"], Debug),
            (Mode::Pasta, &["--trace"], Trace),
            (Mode::Pasta, &["-d", "-q"], Warn),
        ];
        for (mode, args, want) in cases {
            let got = conf(mode, args, &dual()).log_level();
            assert_eq!(got, want, "{} {args:?}", mode.name());
        }
    }

    #[test]
    fn passt_settings() {
        let c = conf(Mode::Passt, &["-s", "/tmp/s.sock", "-1"], &dual());
        assert_eq!(
            c.passt,
            PasstConfig {
                socket_path: Some("/tmp/s.sock".into()),
                fd: None,
                one_off: true
            }
        );
        // --fd implies --one-off.
        let c = conf(Mode::Passt, &["-F", "5"], &dual());
        assert_eq!(
            c.passt,
            PasstConfig {
                socket_path: None,
                fd: Some(5),
                one_off: true
            }
        );
        // Explicit `none` forwarding is fine.
        let c = conf(Mode::Passt, &["-t", "none", "-u", "none"], &dual());
        assert_eq!(c.fwd, Forwarding::default());
    }

    #[test]
    fn pasta_settings() {
        let pasta = |args: &[&str]| {
            conf(Mode::Pasta, args, &dual())
                .pasta
                .expect("pasta settings")
        };
        let p = pasta(&["1234"]);
        assert_eq!((p.target, p.netns_only), (NsTarget::Pid(1234), false));
        let p = pasta(&["--netns", "ctr"]);
        assert_eq!(
            (p.target, p.netns_only),
            (NsTarget::Path("/run/netns/ctr".into()), true)
        );
        let p = pasta(&[
            "--netns",
            "/run/user/1000/netns/x",
            "--userns",
            "/proc/9/ns/user",
        ]);
        assert!(!p.netns_only && p.userns.is_some());
        let p = pasta(&["--netns-only", "sh"]);
        assert_eq!(
            (p.target, p.netns_only),
            (NsTarget::Spawn(vec!["sh".into()]), true)
        );
        let p = pasta(&[
            "-I",
            "tap9",
            "--ns-mac-addr",
            "02:00:00:00:00:02",
            "--no-netns-quit",
            "--config-net",
            "--no-copy-routes",
            "--no-copy-addrs",
            "--host-lo-to-ns-lo",
        ]);
        assert_eq!(p.ns_ifname, "tap9");
        assert_eq!(p.ns_mac, Some([2, 0, 0, 0, 0, 2]));
        assert!(
            p.no_netns_quit
                && p.config_net
                && p.no_copy_routes
                && p.no_copy_addrs
                && p.host_lo_to_ns_lo
        );
        assert!(pasta(&["--no-splice"]).no_splice);
        // podman passes `none` for each direction it doesn't forward.
        let c = conf(
            Mode::Pasta,
            &["-t", "none", "-u", "none", "-T", "none", "-U", "none"],
            &dual(),
        );
        assert_eq!(c.fwd, Forwarding::default());
    }

    #[test]
    fn unsupported_options_are_named() {
        let cases: &[(Mode, &[&str], &str)] = &[
            (
                Mode::Passt,
                &["--vhost-user"],
                "--vhost-user: not supported yet",
            ),
            (
                Mode::Passt,
                &["--print-capabilities"],
                "--print-capabilities: not supported yet",
            ),
            (
                Mode::Passt,
                &["--repair-path", "none"],
                "--repair-path: not supported yet",
            ),
            (
                Mode::Passt,
                &["-c", "/tmp/c"],
                "--conf-path: not supported yet",
            ),
            (
                Mode::Pasta,
                &["--conf-path", "/tmp/c"],
                "--conf-path: not supported yet",
            ),
            (
                Mode::Passt,
                &["--migrate-exit"],
                "--migrate-exit: not supported yet",
            ),
            (
                Mode::Passt,
                &["--migrate-no-linger"],
                "--migrate-no-linger: not supported yet",
            ),
        ];
        for (mode, args, want) in cases {
            let got = try_build(*mode, args, &dual()).map_err(|e| e.to_string());
            assert_eq!(got.err().as_deref(), Some(*want), "{mode:?} {args:?}");
        }
    }

    #[test]
    fn runas_lookup() {
        let runas = |arg: &str| try_build(Mode::Passt, &["--runas", arg], &dual()).map(|c| c.runas);
        assert_eq!(runas("0"), Ok(Some(RunAs { uid: 0, gid: 0 })));
        assert_eq!(runas("root"), Ok(Some(RunAs { uid: 0, gid: 0 })));
        assert_eq!(runas("0:4242"), Ok(Some(RunAs { uid: 0, gid: 4242 })));
        assert_eq!(runas("root:root"), Ok(Some(RunAs { uid: 0, gid: 0 })));
        // A UID with no passwd entry runs with the GID of the same number.
        assert_eq!(
            runas("4000000"),
            Ok(Some(RunAs {
                uid: 4_000_000,
                gid: 4_000_000
            }))
        );
        assert_eq!(
            runas("no-such-user-passt-rs").map_err(|e| e.to_string()),
            Err("--runas: no such user 'no-such-user-passt-rs'".to_string())
        );
        assert_eq!(
            runas("0:no-such-group-passt-rs").map_err(|e| e.to_string()),
            Err("--runas: no such group 'no-such-group-passt-rs'".to_string())
        );
    }

    #[test]
    fn classful_prefixes() {
        let cases = [
            ("1.2.3.4", 8),
            ("127.0.0.2", 8),
            ("128.0.0.1", 16),
            ("191.255.0.1", 16),
            ("192.0.0.1", 24),
            ("223.1.1.1", 24),
            ("240.0.0.1", 32),
        ];
        for (addr, want) in cases {
            assert_eq!(classful_prefix_len(v4(addr)), want, "{addr}");
        }
    }
}
