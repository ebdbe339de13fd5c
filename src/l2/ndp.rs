//! NDP responder: we are the one router on the guest's link, and every IPv6
//! address except the guest's own sits behind our MAC address.
//!
//! # Theory of operation
//!
//! The guest shares its link with nobody but us, so Neighbor Discovery
//! (RFC 4861) reduces to three answers:
//!
//! - A Neighbor Solicitation for any address the guest does not own gets a
//!   Neighbor Advertisement carrying our MAC: whatever the guest wants to
//!   reach, it reaches by handing the frame to us, and we translate it to a
//!   host socket. Addresses the guest owns or is probing for (duplicate
//!   address detection) get no answer, or its DAD would fail.
//! - A Router Solicitation gets a Router Advertisement that mirrors the
//!   host's configuration: the prefix of the configured address, the MTU,
//!   nameservers (RDNSS) and search domains (DNSSL, RFC 8106), and the M/O
//!   flags pointing at our DHCPv6 server.
//! - Router Advertisements, Neighbor Advertisements and Redirects from the
//!   guest are validated (so garbage is counted) and otherwise ignored:
//!   nothing the guest says changes what we route.
//!
//! The handler is pure, like the ARP one: request and `Config` in, reply
//! frame written into the caller's buffer out. It keeps no state, so it does
//! not rate-limit (see `reply`) and the caller schedules unsolicited RAs
//! every `RA_INTERVAL`.
//!
//! Validation happens before any decision: a message that fails the
//! RFC 4861 checks is an `Err(NdpDrop)` even when the answer would have
//! been "nothing" anyway, so the drop counters tell about a confused guest.
//! Only switched-off NDP (`--no-ndp`, no IPv6) short-cuts to `Ok(0)`
//! without looking, as the man page says: "NDP messages coming from guest
//! or target namespace will be ignored."

use super::router_ll;
use crate::conf::{Config, Ip6Config};
use crate::wire::compose::{self, Link};
use crate::wire::icmpv6::{
    self, Message, ND_HOP_LIMIT, NdpBuilder, NeighborAdvertRepr, NeighborSolicitRepr, Packet,
    PrefixInfo, RDNSS_MAX_ADDRS, RouterAdvertRepr, RouterSolicitRepr,
};
use crate::wire::ipv6::{self, Ipv6Repr};
use crate::wire::{Mac, WireError};
use std::net::Ipv6Addr;
use std::time::Duration;

/// Seconds between unsolicited Router Advertisements.
const RA_INTERVAL_SECS: u16 = 600;

/// Time between unsolicited Router Advertisements.
///
/// RFC 4861 6.2.1, MaxRtrAdvInterval: "MUST be no less than 4 seconds and
/// no greater than 1800 seconds. Default: 600 seconds". We use the default
/// as a fixed period: randomising between MinRtrAdvInterval and
/// MaxRtrAdvInterval (6.2.4) keeps several routers on a link from
/// synchronising, and there is only one router on this link.
pub const RA_INTERVAL: Duration = Duration::from_secs(RA_INTERVAL_SECS as u64);

/// Router Lifetime of our advertisements, in seconds.
///
/// RFC 4861 4.2: the field "can contain values up to 65535 and receivers
/// should handle any value, while the sending rules in Section 6 limit the
/// lifetime to 9000 seconds"; 6.2.1 AdvDefaultLifetime: "MUST be either
/// zero or between MaxRtrAdvInterval and 9000 seconds". RFC 8319 later
/// lifted the cap to 65535, but 9000 is valid under both and gives the
/// guest 15 periods of slack before its default route expires, should our
/// advertisements stop reaching it (a paused VM, a busy loop).
const ROUTER_LIFETIME: u16 = 9000;

/// Cur Hop Limit we advertise: the Internet's usual default initial hop
/// limit (IANA "Default IP TTL", RFC 1700). It is the value the guest picks
/// anyway, and only guest-local traffic is shaped by it: we translate to
/// host sockets, which set their own.
const CUR_HOP_LIMIT: u8 = 64;

/// Valid Lifetime of the advertised prefix: RFC 4861 6.2.1
/// AdvValidLifetime "Default: 2592000 seconds (30 days)". Long, but finite,
/// so that a prefix from an earlier run goes away on its own.
const PREFIX_VALID_LIFETIME: u32 = 2_592_000;

/// Preferred Lifetime of the advertised prefix: RFC 4861 6.2.1
/// AdvPreferredLifetime "Default: 604800 seconds (7 days)".
const PREFIX_PREFERRED_LIFETIME: u32 = 604_800;

/// Lifetime of RDNSS and DNSSL options: RFC 8106 5.1, "The value of
/// Lifetime SHOULD by default be at least 3 * MaxRtrAdvInterval".
const DNS_LIFETIME: u32 = 3 * RA_INTERVAL_SECS as u32;

/// IPv6 minimum link MTU. RFC 8200 5: "IPv6 requires that every link in
/// the Internet have an MTU of 1280 octets or greater."
const MIN_MTU: u16 = 1280;

/// Largest Router Advertisement (ICMPv6 message) we send.
///
/// Before our RA arrives the guest doesn't know our MTU, so an RA must fit
/// the smallest MTU any IPv6 link may have (RFC 8200 5), less the IPv6
/// header. Options that don't fit are left out (DNS lists are shortened).
const MAX_RA_LEN: usize = MIN_MTU as usize - ipv6::HEADER_LEN;

/// Room for names in one DNSSL option: RFC 8106 5.2, Length is in units of
/// 8 octets (at most 255), of which 8 octets are type, length, reserved and
/// lifetime.
const DNSSL_MAX_NAMES_LEN: usize = 255 * 8 - 8;

/// The all-nodes multicast address, ff02::1 (RFC 4291 2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Ethernet address of ff02::1. RFC 2464 7: a multicast IPv6 packet "is
/// transmitted to the Ethernet multicast address whose first two octets are
/// the value 3333 hexadecimal and whose last four octets are the last four
/// octets of DST."
const ALL_NODES_MAC: Mac = Mac([0x33, 0x33, 0, 0, 0, 1]);

// RFC 4861 6.2.1: AdvDefaultLifetime "MUST be either zero or between
// MaxRtrAdvInterval and 9000 seconds".
const _: () = assert!(ROUTER_LIFETIME >= RA_INTERVAL_SECS && ROUTER_LIFETIME <= 9000);
// RFC 4861 6.2.1: MaxRtrAdvInterval between 4 and 1800 seconds.
const _: () = assert!(RA_INTERVAL_SECS >= 4 && RA_INTERVAL_SECS <= 1800);
// RFC 4861 4.6.2: the preferred lifetime can't exceed the valid one.
const _: () = assert!(PREFIX_PREFERRED_LIFETIME <= PREFIX_VALID_LIFETIME);

/// Why an NDP message from the guest was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NdpDrop {
    /// The ICMPv6 type is not one of the NDP types (133 to 137).
    #[error("not a Neighbor Discovery message")]
    NotNdp,
    /// Shorter than its fixed part, or an option runs past the end.
    #[error("truncated NDP message or option")]
    Truncated,
    /// IP Hop Limit not 255: the message may have crossed a router.
    #[error("NDP message with hop limit below 255")]
    HopLimit,
    /// The ICMPv6 checksum doesn't match.
    #[error("bad ICMPv6 checksum on NDP message")]
    Checksum,
    /// Any other failed RFC 4861 validity check: non-zero code, zero-length
    /// option, bad link-layer address option, multicast target, bad
    /// source or destination address.
    #[error("malformed NDP message")]
    Malformed,
    /// The reply did not fit the output buffer (the caller's bug: `out`
    /// must hold a maximum-size frame).
    #[error("no room for the NDP reply")]
    NoRoom,
}

impl From<WireError> for NdpDrop {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => NdpDrop::Truncated,
            WireError::Malformed => NdpDrop::Malformed,
        }
    }
}

/// Handle one ICMPv6 message from the guest that is an NDP message (types
/// 133 to 137).
///
/// `ip` is the parsed IPv6 header, `icmp` the ICMPv6 message bytes (the
/// upper-layer payload, ending where the message ends), `guest_mac` the
/// frame's source MAC. Writes the whole reply frame into `out` (Ethernet,
/// IPv6 with hop limit 255, ICMPv6) and returns its length; `Ok(0)` means
/// no reply.
///
/// Accepted risk: RFC 4861 6.2.6 asks routers to delay solicited RAs by a
/// random 0 to 0.5 s and to rate-limit multicast ones. We answer at once,
/// and every valid solicitation gets its answer: the only node that
/// receives it is the guest that asked, so a flood costs the guest what it
/// costs us and reaches nobody else.
///
/// # Errors
/// An `NdpDrop` when the message fails validation (RFC 4861 6.1.1, 6.1.2,
/// 7.1.1, 7.1.2, 8.1); the message must be dropped and counted. `NoRoom`
/// if `out` can't hold the reply.
pub fn reply(
    conf: &Config,
    guest_mac: Mac,
    ip: &Ipv6Repr,
    icmp: &[u8],
    out: &mut [u8],
) -> Result<usize, NdpDrop> {
    let Some(ip6) = conf.ip6.as_ref().filter(|_| conf.services.ndp) else {
        return Ok(0);
    };
    let packet = check(ip, icmp)?;
    match packet.msg_type() {
        Message::NeighborSolicit => {
            let ns = NeighborSolicitRepr::parse(&packet, ip)?;
            neighbor_advert(conf, ip6, guest_mac, ip, &ns, out)
        }
        Message::RouterSolicit => {
            RouterSolicitRepr::parse(&packet, ip)?;
            // --no-ra: "Router Solicitations coming from guest or target
            // namespace will be ignored."
            if !conf.services.ra {
                return Ok(0);
            }
            // RFC 4861 6.2.6: "A router MAY choose to unicast the response
            // directly to the soliciting host's address (if the
            // solicitation's source address is not the unspecified
            // address), but the usual case is to multicast the response to
            // the all-nodes group." The guest is the only node either way.
            let (dst, dst_mac) = if ip.src.is_unspecified() {
                (ALL_NODES, ALL_NODES_MAC)
            } else {
                (ip.src, guest_mac)
            };
            built(router_advert(conf, ip6, dst, dst_mac, out))
        }
        // RFC 4861 6.1.2 (Router Advertisement) and 8.1 (Redirect): "IP
        // Source Address is a link-local address."
        Message::RouterAdvert | Message::Redirect if !ip.src.is_unicast_link_local() => {
            Err(NdpDrop::Malformed)
        }
        // Valid but not for us to act on: we are the router.
        Message::RouterAdvert | Message::Redirect | Message::NeighborAdvert => Ok(0),
        _ => Err(NdpDrop::NotNdp),
    }
}

/// An unsolicited Router Advertisement to all nodes (ff02::1,
/// 33:33:00:00:00:01), to send at start and every `RA_INTERVAL`.
///
/// Returns the frame length, 0 when NDP or RAs are off or IPv6 is disabled
/// (or `out` is too small).
pub fn unsolicited_ra(conf: &Config, out: &mut [u8]) -> usize {
    match &conf.ip6 {
        Some(ip6) if conf.services.ndp && conf.services.ra => {
            router_advert(conf, ip6, ALL_NODES, ALL_NODES_MAC, out)
        }
        _ => 0,
    }
}

/// Checks shared by every NDP message: RFC 4861 6.1.1, 6.1.2, 7.1.1, 7.1.2
/// and 8.1 all require them. The type-specific checks are left to the
/// `wire` parsers; done here first so that the drop reason is precise.
fn check<'a>(ip: &Ipv6Repr, icmp: &'a [u8]) -> Result<Packet<&'a [u8]>, NdpDrop> {
    let packet = Packet::new_checked(icmp)?;
    let fixed_len = packet
        .msg_type()
        .ndp_options_offset()
        .ok_or(NdpDrop::NotNdp)?;
    // "ICMP length (derived from the IP length) is 8 or more octets" for
    // an RS, 16 for an RA, 24 for NS and NA, 40 for a Redirect.
    if icmp.len() < fixed_len {
        return Err(NdpDrop::Truncated);
    }
    // "The IP Hop Limit field has a value of 255, i.e., the packet could
    // not possibly have been forwarded by a router."
    if ip.hop_limit != ND_HOP_LIMIT {
        return Err(NdpDrop::HopLimit);
    }
    // "ICMP Checksum is valid."
    if !packet.verify_checksum(ip.src, ip.dst) {
        return Err(NdpDrop::Checksum);
    }
    // "ICMP Code is 0."
    if packet.code() != 0 {
        return Err(NdpDrop::Malformed);
    }
    // RFC 4291 2.7: "Multicast addresses must not be used as source
    // addresses in IPv6 packets"; 2.5.3: "The loopback address must not be
    // used as the source address in IPv6 packets that are sent outside of
    // a single node." Our answer would go to that address.
    if ip.src.is_multicast() || ip.src.is_loopback() {
        return Err(NdpDrop::Malformed);
    }
    // "All included options have a length that is greater than zero."
    packet.ndp_options()?.validate()?;
    Ok(packet)
}

/// Our answer to a valid Neighbor Solicitation, if any.
fn neighbor_advert(
    conf: &Config,
    ip6: &Ip6Config,
    guest_mac: Mac,
    ip: &Ipv6Repr,
    ns: &NeighborSolicitRepr,
    out: &mut [u8],
) -> Result<usize, NdpDrop> {
    // RFC 4862 5.4.3: a solicitation from the unspecified address comes
    // "from a node performing Duplicate Address Detection". Answering it
    // would claim the address, and 5.4.4: "If the target address is
    // tentative, the tentative address is not unique."
    if ip.src.is_unspecified() {
        return Ok(0);
    }
    // The guest's own addresses: the configured one, and the one it is
    // asking from (an odd question, but answering it would hijack it).
    if ns.target == ip6.addr || ns.target == ip.src {
        return Ok(0);
    }
    // Not a neighbour's address: nothing to resolve (parse already
    // refused multicast targets, RFC 4861 7.1.1).
    if ns.target.is_unspecified() || ns.target.is_loopback() {
        return Ok(0);
    }
    let our_mac = Mac(conf.our_mac);
    let na = NeighborAdvertRepr {
        // Set for every target. RFC 4861 7.2.5: "In those cases where the
        // IsRouter flag changes from TRUE to FALSE as a result of this
        // update, the node MUST remove that router from the Default Router
        // List". Behind our MAC every address, the gateway and router_ll
        // included, is reached through a router (us), so answering R for
        // all keeps the guest's view consistent whatever address its
        // default route names (-g, --config-net).
        router: true,
        // RFC 4861 7.2.4: "Otherwise [source not unspecified], the node
        // MUST set the Solicited flag to one and unicast the advertisement
        // to the Source Address of the solicitation."
        solicited: true,
        // RFC 4861 7.2.4: O "SHOULD be set to zero" for proxied addresses,
        // so a real owner's advertisement wins. On this link there is no
        // other owner, and our answer must replace whatever the guest had
        // cached (say, across a restart with a different -M).
        override_: true,
        target: ns.target,
    };
    // RFC 4861 4.4: the source is "an address assigned to the interface
    // from which the advertisement is sent"; we stand in for the target.
    let (src, dst) = (ns.target, ip.src);
    let n = compose::icmp6(
        out,
        Link {
            src: our_mac,
            dst: guest_mac,
        },
        src,
        dst,
        |buf| {
            let Ok(mut na) = NdpBuilder::neighbor_advert(buf, &na) else {
                return None;
            };
            // RFC 4861 7.2.4: "If the solicitation's IP Destination Address
            // is a multicast address, the Target Link-Layer option MUST be
            // included"; for unicast ones it MAY be omitted, but it is what
            // the guest asked for.
            if na.target_link_addr(our_mac).is_err() {
                return None;
            }
            Some(na.finish(src, dst))
        },
    );
    built(n)
}

/// A frame length from `compose`, where 0 means it didn't fit.
fn built(len: usize) -> Result<usize, NdpDrop> {
    if len == 0 {
        Err(NdpDrop::NoRoom)
    } else {
        Ok(len)
    }
}

/// Build a Router Advertisement frame from `router_ll` to `dst`; returns
/// its length, 0 if `out` can't hold it.
fn router_advert(
    conf: &Config,
    ip6: &Ip6Config,
    dst: Ipv6Addr,
    dst_mac: Mac,
    out: &mut [u8],
) -> usize {
    // RFC 4861 6.1.2: "Routers must use their link-local address as the
    // source for Router Advertisement messages".
    let src = router_ll(conf);
    let our_mac = Mac(conf.our_mac);
    let link = Link {
        src: our_mac,
        dst: dst_mac,
    };
    let has_addr = !ip6.addr.is_unspecified();
    let ra = RouterAdvertRepr {
        cur_hop_limit: CUR_HOP_LIMIT,
        // RFC 4861 4.2: M, "addresses are available via Dynamic Host
        // Configuration Protocol"; only if there is one to lease.
        managed: conf.services.dhcpv6 && has_addr,
        // O: "other configuration information is available via DHCPv6".
        other: conf.services.dhcpv6,
        router_lifetime: ROUTER_LIFETIME,
        // 0: "unspecified (by this router)", the guest keeps its defaults.
        reachable_time: 0,
        retrans_timer: 0,
    };
    compose::icmp6(out, link, src, dst, |buf| {
        let room = buf.len().min(MAX_RA_LEN);
        let Ok(mut b) = NdpBuilder::router_advert(&mut buf[..room], &ra) else {
            return None;
        };
        // Every option is optional: one that is refused (doesn't fit, or
        // can't be encoded) is left out and the rest still goes.
        //
        // RFC 4861 6.2.3: the Source Link-Layer Address option "MAY be
        // omitted to facilitate in-bound load balancing over replicated
        // interfaces"; we have one, and with it the guest needn't resolve
        // our address before using the route.
        let _ = b.source_link_addr(our_mac);
        // RFC 4861 6.2.3: "MTU option: AdvLinkMTU if it is not zero"; -m 0
        // is zero. Below the IPv6 minimum (RFC 8200 5) the guest would
        // discard it, so it isn't sent either.
        if let Some(mtu) = conf.mtu.filter(|&m| m >= MIN_MTU) {
            let _ = b.mtu(u32::from(mtu));
        }
        if let Some(prefix) = prefix_info(ip6) {
            let _ = b.prefix_info(&prefix);
        }
        // --no-dhcp-dns / --dhcp-dns: announce nameservers via option 25.
        if conf.services.dhcp_dns && !ip6.dns.is_empty() {
            rdnss(&mut b, &ip6.dns);
        }
        // --no-dhcp-search / --dhcp-search: the search list via option 31.
        if conf.services.dhcp_search && !conf.search.is_empty() {
            dnssl(&mut b, &conf.search);
        }
        Some(b.finish(src, dst))
    })
}

/// Prefix Information for the configured address, if it has a prefix the
/// guest may use.
fn prefix_info(ip6: &Ip6Config) -> Option<PrefixInfo> {
    let a = ip6.addr;
    // RFC 4862 5.5.3: "If the prefix is the link-local prefix, silently
    // ignore the Prefix Information option"; the others have no prefix.
    if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_unicast_link_local() {
        return None;
    }
    if ip6.prefix_len > 128 {
        return None;
    }
    // RFC 4861 4.6.2: "The bits in the prefix after the prefix length are
    // reserved and MUST be initialized to zero by the sender."
    let mask = u128::MAX
        .checked_shl(128 - u32::from(ip6.prefix_len))
        .unwrap_or(0);
    Some(PrefixInfo {
        prefix_len: ip6.prefix_len,
        // L: addresses in the prefix are on-link, so the guest resolves
        // them with Neighbor Solicitations (which we answer) rather than
        // sending them to the default router (also us). A: the guest may
        // also form its own address (RFC 4862); it ignores A unless the
        // prefix is 64 bits long on Ethernet (RFC 4862 5.5.3 d).
        on_link: true,
        autonomous: true,
        valid_lifetime: PREFIX_VALID_LIFETIME,
        preferred_lifetime: PREFIX_PREFERRED_LIFETIME,
        prefix: Ipv6Addr::from(u128::from(a) & mask),
    })
}

/// Append an RDNSS option with as many of `servers` as fit.
fn rdnss(b: &mut NdpBuilder<'_>, servers: &[Ipv6Addr]) {
    // RFC 8106 5.1: Length is 1 + 2 × (number of addresses), one octet.
    let mut n = servers.len().min(RDNSS_MAX_ADDRS);
    while n > 0 {
        match b.rdnss(DNS_LIFETIME, &servers[..n]) {
            Err(WireError::Truncated) => n -= 1,
            Ok(_) | Err(WireError::Malformed) => return,
        }
    }
}

/// Append DNSSL options carrying as many of `names` as fit, in order,
/// leaving out names that can't be encoded.
///
/// RFC 4861 4.6: options "may appear multiple times in the same message",
/// so a list that is split around a bad name, or that overflows one
/// option's 2040 octets, goes out as several options.
fn dnssl(b: &mut NdpBuilder<'_>, names: &[String]) {
    let mut start = 0;
    while start < names.len() {
        // The longest run of encodable names from `start` that fits one
        // option (a name is at most 255 octets, so at least one fits).
        let mut end = start;
        let mut len = 0;
        while let Some(name) = names.get(end) {
            match icmpv6::dns_name_len(name) {
                Ok(n) if len + n <= DNSSL_MAX_NAMES_LEN => {
                    len += n;
                    end += 1;
                }
                _ => break,
            }
        }
        if end == start {
            // `names[start]` can't be encoded: drop it.
            start += 1;
            continue;
        }
        // Shorten the run until it fits what is left of the message.
        let mut fit = end;
        while fit > start {
            match b.dnssl(DNS_LIFETIME, &names[start..fit]) {
                Ok(_) => break,
                Err(WireError::Truncated) => fit -= 1,
                Err(WireError::Malformed) => return,
            }
        }
        if fit < end {
            // The message is full.
            return;
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::*;
    use crate::wire::ethernet::{self, Frame};
    use crate::wire::icmpv6::NdpOptionType;
    use crate::wire::{EtherType, IpProtocol};

    const GUEST_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const OUR_MAC: Mac = Mac(DEFAULT_OUR_MAC);
    const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    const GUEST_ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xabcd);
    const FE80_1: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const DNS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
    const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7);
    const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    const OUT_LEN: usize = 65549;

    /// A message from the guest: its IPv6 header and ICMPv6 bytes.
    type Req = (Ipv6Repr, Vec<u8>);

    /// IPv6 only, the guest's address and our DNS and search list.
    fn config() -> Config {
        let mut c = Config::example();
        c.ip4 = None;
        c.template_if4 = None;
        c.hostname = None;
        c.fqdn = None;
        c.search = vec!["example.org".into()];
        if let Some(ip6) = c.ip6.as_mut() {
            ip6.addr = GUEST_ADDR;
            ip6.gateway = GATEWAY;
            ip6.dns = vec![DNS];
        }
        c
    }

    fn ip6(conf: &mut Config) -> &mut Ip6Config {
        conf.ip6.as_mut().unwrap()
    }

    fn ip(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src,
            dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: len,
            hop_limit: ND_HOP_LIMIT,
        }
    }

    /// Solicited-node multicast address of `a` (RFC 4291 2.7.1).
    fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
        let o = a.octets();
        Ipv6Addr::from(
            u128::from(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0))
                | u128::from_be_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, o[13], o[14], o[15]]),
        )
    }

    /// An ICMPv6 message of type `ty`, code 0, with `rest` after the
    /// checksum, checksummed for `src` → `dst`.
    fn message(ty: u8, rest: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut m = vec![ty, 0, 0, 0];
        m.extend_from_slice(rest);
        Packet::new_unchecked(&mut m[..]).fill_checksum(src, dst);
        m
    }

    fn slla(mac: Mac) -> [u8; 8] {
        let m = mac.0;
        [1, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
    }

    /// A Neighbor Solicitation and its IPv6 header.
    fn ns(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, mac: Option<Mac>) -> Req {
        let mut rest = vec![0u8; 4];
        rest.extend_from_slice(&target.octets());
        if let Some(mac) = mac {
            rest.extend_from_slice(&slla(mac));
        }
        let m = message(135, &rest, src, dst);
        (ip(src, dst, m.len()), m)
    }

    /// A Neighbor Solicitation from the guest's link-local address.
    fn ns_for(target: Ipv6Addr) -> Req {
        ns(GUEST_LL, solicited_node(target), target, Some(GUEST_MAC))
    }

    /// A Router Solicitation and its IPv6 header.
    fn rs(src: Ipv6Addr, mac: Option<Mac>) -> Req {
        let mut rest = vec![0u8; 4];
        if let Some(mac) = mac {
            rest.extend_from_slice(&slla(mac));
        }
        let m = message(133, &rest, src, ALL_ROUTERS);
        (ip(src, ALL_ROUTERS, m.len()), m)
    }

    fn run(conf: &Config, (ip, m): &Req) -> Result<Vec<u8>, NdpDrop> {
        let mut out = vec![0u8; OUT_LEN];
        let n = reply(conf, GUEST_MAC, ip, m, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// A reply frame taken apart, after checking what every NDP frame
    /// from us must satisfy.
    #[derive(Debug)]
    struct Parsed {
        eth_dst: Mac,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        icmp: Vec<u8>,
    }

    fn parse_frame(frame: &[u8]) -> Parsed {
        let f = Frame::new_checked(frame).unwrap();
        assert_eq!(f.src(), OUR_MAC);
        assert_eq!(f.ethertype(), EtherType::Ipv6);
        let p = ipv6::Packet::new_checked(f.payload()).unwrap();
        let repr = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(repr.next_header, IpProtocol::Icmpv6);
        // RFC 4861 6.1.2, 7.1.2: receivers drop anything else.
        assert_eq!(repr.hop_limit, 255);
        assert_eq!(
            ethernet::HEADER_LEN + ipv6::HEADER_LEN + repr.payload_len,
            frame.len()
        );
        let m = Packet::new_checked(p.payload()).unwrap();
        assert!(m.verify_checksum(repr.src, repr.dst), "checksum");
        assert_eq!(m.code(), 0);
        m.ndp_options().unwrap().validate().unwrap();
        // Multicast IPv6 goes to the matching 33:33 MAC (RFC 2464 7).
        if repr.dst.is_multicast() {
            let o = repr.dst.octets();
            assert_eq!(f.dst(), Mac([0x33, 0x33, o[12], o[13], o[14], o[15]]));
        } else {
            assert_eq!(f.dst(), GUEST_MAC);
        }
        Parsed {
            eth_dst: f.dst(),
            src: repr.src,
            dst: repr.dst,
            icmp: p.payload().to_vec(),
        }
    }

    /// A Neighbor Advertisement taken apart.
    #[derive(Debug, PartialEq)]
    struct Na {
        flags: u8,
        target: Ipv6Addr,
        tlla: Vec<Mac>,
        other_options: usize,
    }

    fn parse_na(p: &Parsed) -> Na {
        let m = Packet::new_checked(&p.icmp[..]).unwrap();
        assert_eq!(m.msg_type(), Message::NeighborAdvert);
        let body = m.body();
        assert_eq!(&body[1..4], &[0, 0, 0], "reserved");
        let target = Ipv6Addr::from(<[u8; 16]>::try_from(&body[4..20]).unwrap());
        let mut tlla = vec![];
        let mut other_options = 0;
        for opt in m.ndp_options().unwrap() {
            match opt.unwrap() {
                (NdpOptionType::TargetLinkAddr, d) => tlla.push(Mac(d.try_into().unwrap())),
                _ => other_options += 1,
            }
        }
        Na {
            flags: body[0],
            target,
            tlla,
            other_options,
        }
    }

    #[derive(Debug, PartialEq)]
    struct Prefix {
        len: u8,
        flags: u8,
        valid: u32,
        preferred: u32,
        prefix: Ipv6Addr,
    }

    /// A Router Advertisement taken apart.
    #[derive(Debug, Default)]
    struct Ra {
        hop_limit: u8,
        flags: u8,
        lifetime: u16,
        reachable: u32,
        retrans: u32,
        slla: Vec<Mac>,
        mtu: Vec<u32>,
        prefixes: Vec<Prefix>,
        rdnss: Vec<(u32, Vec<Ipv6Addr>)>,
        dnssl: Vec<(u32, Vec<String>)>,
        unknown: usize,
    }

    impl Ra {
        fn search(&self) -> Vec<String> {
            self.dnssl.iter().flat_map(|(_, n)| n.clone()).collect()
        }
    }

    fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes(b[..4].try_into().unwrap())
    }

    fn addr(b: &[u8]) -> Ipv6Addr {
        Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap())
    }

    /// Names in a DNSSL option's data (after the lifetime), stopping at the
    /// zero padding.
    fn dns_names(mut d: &[u8]) -> Vec<String> {
        let mut names = vec![];
        while let Some(&first) = d.first() {
            if first == 0 {
                assert!(d.iter().all(|&x| x == 0), "padding");
                assert!(d.len() < 8, "padding over 7 octets");
                break;
            }
            let mut labels = vec![];
            loop {
                let n = usize::from(d[0]);
                if n == 0 {
                    d = &d[1..];
                    break;
                }
                labels.push(String::from_utf8(d[1..1 + n].to_vec()).unwrap());
                d = &d[1 + n..];
            }
            names.push(labels.join("."));
        }
        names
    }

    fn parse_ra(p: &Parsed) -> Ra {
        let m = Packet::new_checked(&p.icmp[..]).unwrap();
        assert_eq!(m.msg_type(), Message::RouterAdvert);
        assert!(p.icmp.len() <= MAX_RA_LEN);
        let body = m.body();
        let mut ra = Ra {
            hop_limit: body[0],
            flags: body[1],
            lifetime: u16::from_be_bytes([body[2], body[3]]),
            reachable: be32(&body[4..]),
            retrans: be32(&body[8..]),
            ..Ra::default()
        };
        for opt in m.ndp_options().unwrap() {
            match opt.unwrap() {
                (NdpOptionType::SourceLinkAddr, d) => ra.slla.push(Mac(d.try_into().unwrap())),
                (NdpOptionType::Mtu, d) => {
                    assert_eq!(d.len(), 6);
                    assert_eq!(&d[..2], &[0, 0], "reserved");
                    ra.mtu.push(be32(&d[2..]));
                }
                (NdpOptionType::PrefixInfo, d) => {
                    assert_eq!(d.len(), 30);
                    ra.prefixes.push(Prefix {
                        len: d[0],
                        flags: d[1],
                        valid: be32(&d[2..]),
                        preferred: be32(&d[6..]),
                        prefix: addr(&d[14..30]),
                    });
                }
                (NdpOptionType::Rdnss, d) => {
                    assert_eq!((d.len() - 6) % 16, 0);
                    let servers = d[6..].chunks(16).map(addr).collect();
                    ra.rdnss.push((be32(&d[2..]), servers));
                }
                (NdpOptionType::Dnssl, d) => {
                    ra.dnssl.push((be32(&d[2..]), dns_names(&d[6..])));
                }
                _ => ra.unknown += 1,
            }
        }
        ra
    }

    fn ra_reply(conf: &Config, req: &Req) -> (Parsed, Ra) {
        let frame = run(conf, req).unwrap();
        assert!(!frame.is_empty(), "no RA");
        let p = parse_frame(&frame);
        let ra = parse_ra(&p);
        (p, ra)
    }

    fn default_ra(conf: &Config) -> Ra {
        ra_reply(conf, &rs(GUEST_LL, Some(GUEST_MAC))).1
    }

    // Neighbor Solicitation

    #[test]
    fn ns_answered_for_router() {
        let conf = config();
        for target in [router_ll(&conf), FE80_1] {
            let frame = run(&conf, &ns_for(target)).unwrap();
            let p = parse_frame(&frame);
            assert_eq!(p.eth_dst, GUEST_MAC);
            assert_eq!((p.src, p.dst), (target, GUEST_LL));
            let na = parse_na(&p);
            assert_eq!(
                na,
                Na {
                    flags: 0xe0, // R, S, O
                    target,
                    tlla: vec![OUR_MAC],
                    other_options: 0,
                }
            );
        }
    }

    #[test]
    fn ns_answered_for_everything_else() {
        let mut conf = config();
        conf.our_mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let gua = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let other_ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99);
        for target in [gua, REMOTE, other_ll, DNS] {
            let frame = run(&conf, &ns_for(target)).unwrap();
            let f = Frame::new_checked(&frame[..]).unwrap();
            assert_eq!(f.src(), Mac(conf.our_mac));
            let p = ipv6::Packet::new_checked(f.payload()).unwrap();
            assert_eq!((p.src(), p.dst(), p.hop_limit()), (target, GUEST_LL, 255));
            let m = Packet::new_checked(p.payload()).unwrap();
            assert!(m.verify_checksum(target, GUEST_LL));
            assert_eq!(m.body()[0], 0xe0, "R, S, O for {target}");
            let opts: Vec<_> = m.ndp_options().unwrap().map(Result::unwrap).collect();
            assert_eq!(
                opts,
                [(NdpOptionType::TargetLinkAddr, &conf.our_mac[..])],
                "{target}"
            );
        }
    }

    #[test]
    fn ns_unicast_and_from_global_source() {
        let conf = config();
        // Neighbour unreachability detection: unicast to the target.
        let frame = run(&conf, &ns(GUEST_LL, GATEWAY, GATEWAY, Some(GUEST_MAC))).unwrap();
        let p = parse_frame(&frame);
        assert_eq!((p.src, p.dst), (GATEWAY, GUEST_LL));
        // No source link-layer option: still answered, to the frame's MAC.
        let frame = run(&conf, &ns(GUEST_ADDR, solicited_node(REMOTE), REMOTE, None)).unwrap();
        let p = parse_frame(&frame);
        assert_eq!((p.src, p.dst, p.eth_dst), (REMOTE, GUEST_ADDR, GUEST_MAC));
        assert_eq!(parse_na(&p).target, REMOTE);
    }

    #[test]
    fn ns_dad_not_answered() {
        let conf = config();
        for target in [GUEST_LL, GUEST_ADDR, GATEWAY, REMOTE] {
            let req = ns(Ipv6Addr::UNSPECIFIED, solicited_node(target), target, None);
            assert_eq!(run(&conf, &req), Ok(vec![]), "{target}");
        }
    }

    #[test]
    fn ns_own_addresses_not_answered() {
        let conf = config();
        // The configured address, asked from the link-local one.
        assert_eq!(run(&conf, &ns_for(GUEST_ADDR)), Ok(vec![]));
        // The address it asks from.
        let req = ns(
            GUEST_LL,
            solicited_node(GUEST_LL),
            GUEST_LL,
            Some(GUEST_MAC),
        );
        assert_eq!(run(&conf, &req), Ok(vec![]));
        // Nonsense targets.
        for target in [Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST] {
            assert_eq!(run(&conf, &ns_for(target)), Ok(vec![]), "{target}");
        }
    }

    #[test]
    fn ndp_off() {
        let mut conf = config();
        conf.services.ndp = false;
        assert_eq!(run(&conf, &ns_for(GATEWAY)), Ok(vec![]));
        assert_eq!(run(&conf, &rs(GUEST_LL, Some(GUEST_MAC))), Ok(vec![]));
        // Not even looked at: garbage isn't counted either.
        assert_eq!(
            run(&conf, &(ip(GUEST_LL, ALL_ROUTERS, 1), vec![133])),
            Ok(vec![])
        );
        assert_eq!(unsolicited_ra(&conf, &mut [0u8; OUT_LEN]), 0);

        let mut conf = config();
        conf.ip6 = None;
        assert_eq!(run(&conf, &ns_for(GATEWAY)), Ok(vec![]));
        assert_eq!(run(&conf, &rs(GUEST_LL, Some(GUEST_MAC))), Ok(vec![]));
        assert_eq!(unsolicited_ra(&conf, &mut [0u8; OUT_LEN]), 0);
    }

    // Router Solicitation

    #[test]
    fn rs_answered_with_everything() {
        let conf = config();
        let (p, ra) = ra_reply(&conf, &rs(GUEST_LL, Some(GUEST_MAC)));
        // Unicast back to the soliciting address.
        assert_eq!((p.src, p.dst, p.eth_dst), (GATEWAY, GUEST_LL, GUEST_MAC));
        assert_eq!(ra.hop_limit, 64);
        assert_eq!(ra.flags, 0xc0, "M and O");
        assert_eq!(ra.lifetime, 9000);
        assert_eq!((ra.reachable, ra.retrans), (0, 0));
        assert_eq!(ra.slla, [OUR_MAC]);
        assert_eq!(ra.mtu, [65520]);
        assert_eq!(
            ra.prefixes,
            [Prefix {
                len: 64,
                flags: 0xc0, // L, A
                valid: 2_592_000,
                preferred: 604_800,
                prefix: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            }]
        );
        assert_eq!(ra.rdnss, [(1800, vec![DNS])]);
        assert_eq!(ra.dnssl, [(1800, vec!["example.org".to_string()])]);
        assert_eq!(ra.unknown, 0);
    }

    #[test]
    fn rs_from_unspecified_gets_multicast() {
        let conf = config();
        let (p, ra) = ra_reply(&conf, &rs(Ipv6Addr::UNSPECIFIED, None));
        assert_eq!(p.dst, ALL_NODES);
        assert_eq!(p.eth_dst, Mac([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(ra.slla, [OUR_MAC]);
    }

    #[test]
    fn rs_without_source_option() {
        let (p, _) = ra_reply(&config(), &rs(GUEST_LL, None));
        assert_eq!((p.dst, p.eth_dst), (GUEST_LL, GUEST_MAC));
    }

    #[test]
    fn ra_source_is_router_ll() {
        let mut conf = config();
        ip6(&mut conf).gateway = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let (p, _) = ra_reply(&conf, &rs(GUEST_LL, None));
        assert_eq!(p.src, FE80_1);
    }

    #[test]
    fn ra_off() {
        let mut conf = config();
        conf.services.ra = false;
        assert_eq!(run(&conf, &rs(GUEST_LL, Some(GUEST_MAC))), Ok(vec![]));
        assert_eq!(unsolicited_ra(&conf, &mut [0u8; OUT_LEN]), 0);
        // Neighbour resolution still works.
        assert!(!run(&conf, &ns_for(GATEWAY)).unwrap().is_empty());
        // Malformed solicitations are still counted.
        let (ip, mut m) = rs(GUEST_LL, None);
        m[3] ^= 1;
        assert_eq!(run(&conf, &(ip, m)), Err(NdpDrop::Checksum));
    }

    #[test]
    fn ra_mtu() {
        let mut conf = config();
        for (mtu, want) in [
            (None, vec![]),
            (Some(0), vec![]),
            (Some(576), vec![]),
            (Some(1279), vec![]),
            (Some(1280), vec![1280]),
            (Some(1500), vec![1500]),
            (Some(u16::MAX), vec![65535]),
        ] {
            conf.mtu = mtu;
            assert_eq!(default_ra(&conf).mtu, want, "{mtu:?}");
        }
    }

    #[test]
    fn ra_dns_switches() {
        let mut conf = config();
        let dns2 = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x53);
        ip6(&mut conf).dns.push(dns2);
        conf.search = vec!["a.example".into(), "b.example.".into()];
        let ra = default_ra(&conf);
        assert_eq!(ra.rdnss, [(1800, vec![DNS, dns2])]);
        assert_eq!(ra.search(), ["a.example", "b.example"]);
        assert_eq!(ra.dnssl.len(), 1);

        let mut off = conf.clone();
        off.services.dhcp_dns = false;
        let ra = default_ra(&off);
        assert!(ra.rdnss.is_empty());
        assert_eq!(ra.dnssl.len(), 1);

        let mut off = conf.clone();
        off.services.dhcp_search = false;
        let ra = default_ra(&off);
        assert!(ra.dnssl.is_empty());
        assert_eq!(ra.rdnss.len(), 1);

        let mut empty = conf.clone();
        ip6(&mut empty).dns.clear();
        empty.search.clear();
        let ra = default_ra(&empty);
        assert!(ra.rdnss.is_empty() && ra.dnssl.is_empty());
        assert_eq!((ra.slla.len(), ra.mtu.len(), ra.prefixes.len()), (1, 1, 1));
    }

    #[test]
    fn ra_search_drops_bad_names() {
        let mut conf = config();
        let long_label = "x".repeat(64);
        conf.search = ["ok.example", "", "a..b", &long_label, ".", "good"]
            .map(String::from)
            .to_vec();
        let ra = default_ra(&conf);
        assert_eq!(ra.search(), ["ok.example", "good"]);
        assert!(ra.dnssl.iter().all(|(l, _)| *l == 1800));
        // Nothing valid: no option.
        conf.search = vec![String::new(), "..".into()];
        assert!(default_ra(&conf).dnssl.is_empty());
    }

    #[test]
    fn ra_fits_minimum_mtu() {
        let mut conf = config();
        ip6(&mut conf).dns = (0..200u16)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
            .collect();
        conf.search = (0..100).map(|i| format!("domain{i}.example")).collect();
        let ra = default_ra(&conf);
        // 16 fixed + 8 SLLA + 8 MTU + 32 prefix = 64; 1176 left; RDNSS of
        // 73 addresses takes 8 + 1168.
        assert_eq!(ra.rdnss.len(), 1);
        assert_eq!(ra.rdnss[0].1, ip6(&mut conf).dns[..73]);
        assert!(ra.dnssl.is_empty());
        assert_eq!((ra.slla.len(), ra.mtu.len(), ra.prefixes.len()), (1, 1, 1));

        // Without nameservers, the search list fills the space, in order.
        ip6(&mut conf).dns.clear();
        let ra = default_ra(&conf);
        let got = ra.search();
        assert!(got.len() > 10 && got.len() < 100, "{}", got.len());
        assert_eq!(got[..], conf.search[..got.len()]);
    }

    #[test]
    fn dnssl_splits_at_option_size() {
        // Direct test of the splitting, in a buffer larger than an RA.
        let label = "z".repeat(63);
        let name = format!("{label}.{label}.{label}"); // 193 octets
        let names = vec![name; 12]; // 10 fit 2032 octets
        let mut buf = vec![0u8; 8192];
        let ra = RouterAdvertRepr {
            cur_hop_limit: 64,
            managed: false,
            other: false,
            router_lifetime: 0,
            reachable_time: 0,
            retrans_timer: 0,
        };
        let mut b = NdpBuilder::router_advert(&mut buf, &ra).unwrap();
        dnssl(&mut b, &names);
        let len = b.finish(FE80_1, ALL_NODES);
        let m = Packet::new_checked(&buf[..len]).unwrap();
        let sizes: Vec<_> = m
            .ndp_options()
            .unwrap()
            .map(|o| o.unwrap().1.len() + 2)
            .collect();
        // 10 names (1930 octets) fill the first option's 2032; the other
        // two (386) go in a second. Each is padded to 8 octets.
        assert_eq!(sizes, [1944, 400]);
    }

    #[test]
    fn ra_flags_follow_dhcpv6() {
        let mut conf = config();
        conf.services.dhcpv6 = false;
        assert_eq!(default_ra(&conf).flags, 0);

        // No address to lease: O only, and no prefix.
        let mut conf = config();
        ip6(&mut conf).addr = Ipv6Addr::UNSPECIFIED;
        let ra = default_ra(&conf);
        assert_eq!(ra.flags, 0x40);
        assert!(ra.prefixes.is_empty());
    }

    #[test]
    fn ra_prefix() {
        let mut conf = config();
        ip6(&mut conf).addr = Ipv6Addr::new(0x2001, 0xdb8, 0x1234, 0x5678, 1, 2, 3, 4);
        ip6(&mut conf).prefix_len = 56;
        let ra = default_ra(&conf);
        assert_eq!(ra.prefixes.len(), 1);
        assert_eq!(ra.prefixes[0].len, 56);
        assert_eq!(
            ra.prefixes[0].prefix,
            Ipv6Addr::new(0x2001, 0xdb8, 0x1234, 0x5600, 0, 0, 0, 0)
        );
        for (len, want) in [
            (0, Ipv6Addr::UNSPECIFIED),
            (
                128,
                Ipv6Addr::new(0x2001, 0xdb8, 0x1234, 0x5678, 1, 2, 3, 4),
            ),
        ] {
            ip6(&mut conf).prefix_len = len;
            assert_eq!(default_ra(&conf).prefixes[0].prefix, want, "/{len}");
        }
        // Out of range: left out, rest still sent.
        ip6(&mut conf).prefix_len = 129;
        let ra = default_ra(&conf);
        assert!(ra.prefixes.is_empty());
        assert_eq!(ra.slla, [OUR_MAC]);
        // A link-local address has no prefix to announce.
        ip6(&mut conf).prefix_len = 64;
        ip6(&mut conf).addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 5);
        assert!(default_ra(&conf).prefixes.is_empty());
    }

    #[test]
    fn unsolicited_to_all_nodes() {
        let conf = config();
        let mut out = vec![0u8; OUT_LEN];
        let n = unsolicited_ra(&conf, &mut out);
        assert!(n > 0);
        let p = parse_frame(&out[..n]);
        assert_eq!(p.eth_dst, Mac([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!((p.src, p.dst), (GATEWAY, ALL_NODES));
        let ra = parse_ra(&p);
        assert_eq!(ra.lifetime, 9000);
        assert_eq!(ra.slla, [OUR_MAC]);
        assert_eq!(ra.prefixes.len(), 1);
        // Same contents as a solicited one.
        let solicited = default_ra(&conf);
        assert_eq!(ra.rdnss, solicited.rdnss);
        assert_eq!(ra.dnssl, solicited.dnssl);
        // Too small a buffer: nothing.
        assert_eq!(unsolicited_ra(&conf, &mut [0u8; 60]), 0);
    }

    #[test]
    fn interval_constants() {
        assert_eq!(RA_INTERVAL, Duration::from_secs(600));
        assert_eq!(DNS_LIFETIME, 1800);
    }

    // Malformed input

    #[test]
    fn malformed_solicitations() {
        let conf = config();
        let good_ns = ns_for(GATEWAY);
        let good_rs = rs(GUEST_LL, Some(GUEST_MAC));
        let refill = |(ip, mut m): Req| {
            Packet::new_unchecked(&mut m[..]).fill_checksum(ip.src, ip.dst);
            (ip, m)
        };
        let with = |(ip, m): &Req, f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = m.clone();
            f(&mut m);
            refill((*ip, m))
        };
        let cases: Vec<(&str, Req, NdpDrop)> = vec![
            ("empty", (good_ns.0, vec![]), NdpDrop::Truncated),
            (
                "3 bytes",
                (good_ns.0, good_ns.1[..3].to_vec()),
                NdpDrop::Truncated,
            ),
            (
                "NS 23 bytes",
                with(&good_ns, &|m| m.truncate(23)),
                NdpDrop::Truncated,
            ),
            (
                "RS 7 bytes",
                with(&good_rs, &|m| m.truncate(7)),
                NdpDrop::Truncated,
            ),
            (
                "NS option cut",
                with(&good_ns, &|m| m.truncate(30)),
                NdpDrop::Truncated,
            ),
            (
                "option overrun",
                with(&good_ns, &|m| m[25] = 2),
                NdpDrop::Truncated,
            ),
            (
                "zero-length option",
                with(&good_rs, &|m| m[9] = 0),
                NdpDrop::Malformed,
            ),
            (
                "lone option byte",
                with(&good_rs, &|m| m.truncate(9)),
                NdpDrop::Truncated,
            ),
            ("code 1", with(&good_ns, &|m| m[1] = 1), NdpDrop::Malformed),
            (
                "bad link-layer option",
                with(&good_rs, &|m| {
                    m[9] = 2;
                    m.extend_from_slice(&[0; 8]);
                }),
                NdpDrop::Malformed,
            ),
            (
                "multicast target",
                with(&good_ns, &|m| m[8..24].copy_from_slice(&ALL_NODES.octets())),
                NdpDrop::Malformed,
            ),
            (
                "echo request",
                with(&good_ns, &|m| m[0] = 128),
                NdpDrop::NotNdp,
            ),
            ("type 0", with(&good_ns, &|m| m[0] = 0), NdpDrop::NotNdp),
            (
                "DAD with source option",
                refill((
                    ip(Ipv6Addr::UNSPECIFIED, solicited_node(GATEWAY), 32),
                    good_ns.1.clone(),
                )),
                NdpDrop::Malformed,
            ),
            (
                "DAD to unicast",
                ns(Ipv6Addr::UNSPECIFIED, GATEWAY, GATEWAY, None),
                NdpDrop::Malformed,
            ),
            (
                "NS from multicast",
                ns(ALL_NODES, GATEWAY, GATEWAY, None),
                NdpDrop::Malformed,
            ),
            (
                "RS from loopback",
                rs(Ipv6Addr::LOCALHOST, None),
                NdpDrop::Malformed,
            ),
            (
                "RS from :: with source option",
                refill((
                    ip(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS, 16),
                    good_rs.1.clone(),
                )),
                NdpDrop::Malformed,
            ),
        ];
        for (what, req, want) in cases {
            assert_eq!(run(&conf, &req), Err(want), "{what}");
        }

        // Header-level problems: checksum and hop limit.
        let (mut hdr, m) = good_ns.clone();
        hdr.hop_limit = 254;
        assert_eq!(run(&conf, &(hdr, m.clone())), Err(NdpDrop::HopLimit));
        hdr.hop_limit = 255;
        hdr.src = GUEST_ADDR; // checksum was for GUEST_LL
        assert_eq!(run(&conf, &(hdr, m.clone())), Err(NdpDrop::Checksum));
        let mut bad = m;
        bad[20] ^= 0x40;
        assert_eq!(run(&conf, &(good_ns.0, bad)), Err(NdpDrop::Checksum));
        let (mut hdr, m) = good_rs;
        hdr.hop_limit = 1;
        assert_eq!(run(&conf, &(hdr, m)), Err(NdpDrop::HopLimit));
    }

    #[test]
    fn advertisements_from_guest_ignored() {
        let conf = config();
        let na_body = {
            let mut b = vec![0x60, 0, 0, 0];
            b.extend_from_slice(&GUEST_ADDR.octets());
            b.extend_from_slice(&[2, 1, 2, 0, 0, 0, 0, 1]);
            b
        };
        let na = message(136, &na_body, GUEST_LL, ALL_NODES);
        let na_ip = ip(GUEST_LL, ALL_NODES, na.len());
        assert_eq!(run(&conf, &(na_ip, na.clone())), Ok(vec![]));

        let mut ra_body = vec![64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        ra_body.extend_from_slice(&slla(GUEST_MAC));
        let ra = message(134, &ra_body, GUEST_LL, ALL_NODES);
        let ra_ip = ip(GUEST_LL, ALL_NODES, ra.len());
        assert_eq!(run(&conf, &(ra_ip, ra.clone())), Ok(vec![]));

        let mut redirect_body = vec![0u8; 4];
        redirect_body.extend_from_slice(&REMOTE.octets());
        redirect_body.extend_from_slice(&REMOTE.octets());
        let redirect = message(137, &redirect_body, GUEST_LL, FE80_1);
        let redirect_ip = ip(GUEST_LL, FE80_1, redirect.len());
        assert_eq!(run(&conf, &(redirect_ip, redirect.clone())), Ok(vec![]));

        // Malformed ones are counted.
        let mut bad = na.clone();
        bad[5] ^= 1;
        assert_eq!(run(&conf, &(na_ip, bad)), Err(NdpDrop::Checksum));
        let short = message(136, &na_body[..10], GUEST_LL, ALL_NODES);
        assert_eq!(
            run(&conf, &(ip(GUEST_LL, ALL_NODES, short.len()), short)),
            Err(NdpDrop::Truncated)
        );
        let mut fwd = ra_ip;
        fwd.hop_limit = 64;
        assert_eq!(run(&conf, &(fwd, ra)), Err(NdpDrop::HopLimit));
        let short = message(134, &ra_body[..8], GUEST_LL, ALL_NODES);
        assert_eq!(
            run(&conf, &(ip(GUEST_LL, ALL_NODES, short.len()), short)),
            Err(NdpDrop::Truncated)
        );
        // RAs and Redirects must come from a link-local address.
        let ra = message(134, &ra_body, GUEST_ADDR, ALL_NODES);
        assert_eq!(
            run(&conf, &(ip(GUEST_ADDR, ALL_NODES, ra.len()), ra)),
            Err(NdpDrop::Malformed)
        );
        let redirect = message(137, &redirect_body, GUEST_ADDR, FE80_1);
        assert_eq!(
            run(&conf, &(ip(GUEST_ADDR, FE80_1, redirect.len()), redirect)),
            Err(NdpDrop::Malformed)
        );
        let mut zero_opt = na_body.clone();
        zero_opt[21] = 0;
        let m = message(136, &zero_opt, GUEST_LL, ALL_NODES);
        assert_eq!(run(&conf, &(na_ip, m)), Err(NdpDrop::Malformed));
    }

    #[test]
    fn no_room() {
        let conf = config();
        let (ip, m) = ns_for(GATEWAY);
        let mut out = [0u8; 60];
        assert_eq!(
            reply(&conf, GUEST_MAC, &ip, &m, &mut out),
            Err(NdpDrop::NoRoom)
        );
        let (ip, m) = rs(GUEST_LL, None);
        assert_eq!(
            reply(&conf, GUEST_MAC, &ip, &m, &mut out),
            Err(NdpDrop::NoRoom)
        );
    }

    #[test]
    fn drop_messages() {
        assert_eq!(
            NdpDrop::HopLimit.to_string(),
            "NDP message with hop limit below 255"
        );
        assert_eq!(NdpDrop::from(WireError::Truncated), NdpDrop::Truncated);
        assert_eq!(NdpDrop::from(WireError::Malformed), NdpDrop::Malformed);
    }

    // Smoke fuzzing: deterministic, so it runs in every `cargo test`.

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap()
        }

        fn byte(&mut self) -> u8 {
            self.next().to_le_bytes()[0]
        }
    }

    fn seeds() -> Vec<Req> {
        let mut na_body = vec![0x60, 0, 0, 0];
        na_body.extend_from_slice(&GUEST_ADDR.octets());
        na_body.extend_from_slice(&slla(GUEST_MAC));
        let na = message(136, &na_body, GUEST_LL, ALL_NODES);
        let mut ra_body = vec![64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
        ra_body.extend_from_slice(&slla(GUEST_MAC));
        let ra = message(134, &ra_body, GUEST_LL, ALL_NODES);
        vec![
            ns_for(GATEWAY),
            ns_for(REMOTE),
            ns(GUEST_LL, REMOTE, REMOTE, None),
            ns(
                Ipv6Addr::UNSPECIFIED,
                solicited_node(GUEST_ADDR),
                GUEST_ADDR,
                None,
            ),
            rs(GUEST_LL, Some(GUEST_MAC)),
            rs(Ipv6Addr::UNSPECIFIED, None),
            (ip(GUEST_LL, ALL_NODES, na.len()), na),
            (ip(GUEST_LL, ALL_NODES, ra.len()), ra),
        ]
    }

    #[test]
    fn smoke_fuzz() {
        let mut confs = vec![config()];
        let mut c = config();
        c.services.ra = false;
        confs.push(c);
        let mut c = config();
        c.mtu = None;
        ip6(&mut c).addr = Ipv6Addr::UNSPECIFIED;
        c.search = vec!["a".into(), "".into(), "b.c".into()];
        confs.push(c);

        let seeds = seeds();
        let addrs = [
            GUEST_LL,
            GUEST_ADDR,
            GATEWAY,
            ALL_NODES,
            ALL_ROUTERS,
            Ipv6Addr::UNSPECIFIED,
            solicited_node(GATEWAY),
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut out = vec![0u8; OUT_LEN];
        let (mut replies, mut drops) = (0, 0);
        for i in 0..20_000 {
            let (mut hdr, mut m) = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(7) {
                    0 if !m.is_empty() => {
                        let at = rng.below(m.len());
                        m[at] ^= 1 << rng.below(8);
                    }
                    1 => m.truncate(rng.below(m.len() + 1)),
                    2 if !m.is_empty() => {
                        let at = rng.below(m.len());
                        m[at] = rng.byte();
                    }
                    3 => m.extend((0..rng.below(24)).map(|_| rng.byte())),
                    4 => hdr.hop_limit = if rng.below(2) == 0 { rng.byte() } else { 255 },
                    5 => hdr.src = addrs[rng.below(addrs.len())],
                    6 => hdr.dst = addrs[rng.below(addrs.len())],
                    _ => {}
                }
            }
            // Mostly keep the checksum right, to get past it.
            if m.len() >= 4 && rng.below(4) != 0 {
                Packet::new_unchecked(&mut m[..]).fill_checksum(hdr.src, hdr.dst);
            }
            let conf = &confs[i % confs.len()];
            match reply(conf, GUEST_MAC, &hdr, &m, &mut out) {
                Ok(0) => {}
                Ok(n) => {
                    replies += 1;
                    let p = parse_frame(&out[..n]);
                    // Never an answer to duplicate address detection.
                    assert!(!hdr.src.is_unspecified() || p.dst == ALL_NODES);
                }
                Err(e) => {
                    drops += 1;
                    assert_ne!(e, NdpDrop::NoRoom);
                }
            }
        }
        // The mutations reach both outcomes.
        assert!(
            replies > 1000 && drops > 1000,
            "{replies} replies, {drops} drops"
        );
    }
}
