//! DHCPv4 server (RFC 2131, options from RFC 2132): hands the guest the one
//! address, netmask, gateway, nameservers and search list that mirror the
//! host's.
//!
//! # Theory of operation
//!
//! There is no pool and no lease database. The guest is the only client on
//! the link and there is exactly one address to give (`conf.ip4.addr`), so
//! every DISCOVER gets the same OFFER and every REQUEST for that address an
//! ACK, with nothing remembered between messages. A REQUEST for any other
//! address gets a NAK, which sends the client back to DISCOVER. The lease is
//! infinite: nothing could ever take the address back, and it spares the
//! guest renewals (upstream passt does the same).
//!
//! Guest input is parsed by hand, with bounds checks and no allocation: the
//! fixed 240-octet header, then one pass over the options field (and over
//! `file`/`sname` when option 52 overloads them). Only the options we act on
//! are interpreted; each of them must have its exact length and appear once,
//! or the message is dropped. Every other option is skipped by its length.
//! `dhcproto` (0.15) is deliberately not used on this path: its decoder
//! panics on a short option 81 in debug builds (an assertion, then a
//! `len - 3` underflow), silently merges or overwrites repeated options, and
//! allocates per option; making it safe would take a full validating
//! pre-parse, which is all the parsing we need anyway. The tests use it as
//! an independent decoder of what we send.
//!
//! The reply is written in place into the frame by `compose::udp4`. Options
//! go in order of importance, each written whole or not at all, within the
//! client's maximum message size (option 57, never less than 576 octets).
//! The mandatory ones always fit: at most 304 octets, client identifier
//! echo included, of the 308 a 576-octet datagram leaves. The optional ones
//! follow in decreasing importance (nameservers, hostname, FQDN, search
//! list), each only if it fits, so the search list is the first to go.
//!
//! Relay agents are not supported: the tap link has nobody else on it, so
//! `giaddr` is copied but never used to route the reply.

use crate::conf::{Config, Ip4Config};
use crate::wire::Mac;
use crate::wire::compose::{self, Link};
use crate::wire::{ethernet, ipv4, udp};
use std::net::{Ipv4Addr, SocketAddrV4};

/// UDP port of the server (us).
pub const SERVER_PORT: u16 = 67;
/// UDP port of the client (the guest).
pub const CLIENT_PORT: u16 = 68;

/// Byte ranges of the fixed part of a message (RFC 2131 2, figure 1).
mod field {
    use std::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const XID: Range<usize> = 4..8;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// Option codes (RFC 2132 and the RFCs named).
mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MSG_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const MESSAGE: u8 = 56;
    pub const MAX_SIZE: u8 = 57;
    pub const CLIENT_ID: u8 = 61;
    /// RFC 4702.
    pub const CLIENT_FQDN: u8 = 81;
    /// RFC 3397.
    pub const DOMAIN_SEARCH: u8 = 119;
    /// RFC 3442.
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// Values of option 53 (RFC 2132 9.6).
mod msg {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
    pub const INFORM: u8 = 8;
}

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
/// ARP hardware type of Ethernet, with its address length.
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
/// RFC 2131 3: "the first four octets of the 'options' field of the DHCP
/// message contain the (decimal) values 99, 130, 83 and 99".
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// RFC 2131 2, figure 2: the leftmost bit of 'flags'.
const FLAG_BROADCAST: u16 = 0x8000;
/// RFC 2131 3.3: "0xffffffff is reserved to represent 'infinity'".
const LEASE_INFINITE: u32 = u32::MAX;
/// RFC 2132 9.10: "The minimum legal value is 576 octets." Every client
/// must accept a datagram this long (RFC 2131 2).
const MIN_DATAGRAM: usize = 576;
/// IPv4 and UDP headers, counted in the maximum message size of option 57.
const IP_UDP_HEADERS: usize = ipv4::HEADER_LEN + udp::HEADER_LEN;
/// RFC 951's message, with its fixed 64-octet vendor area, is 300 octets:
/// shorter replies are padded, as some BOOTP-era clients expect.
const MIN_MESSAGE: usize = 300;
/// RFC 2132 5.1: "The minimum legal value for the MTU is 68."
const MIN_MTU: u16 = 68;
/// Text of option 56 in a NAK (RFC 2131 4.3.2 suggests one).
const NAK_MESSAGE: &[u8] = b"requested address is not ours to give";

/// Why a DHCP message from the guest was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhcpDrop {
    /// Shorter than the fixed header, or an option runs past the end.
    #[error("truncated message")]
    Truncated,
    /// `op` isn't BOOTREQUEST.
    #[error("not a BOOTREQUEST (op {0})")]
    NotRequest(u8),
    /// Hardware type or length isn't Ethernet's.
    #[error("hardware type or length not Ethernet")]
    Hardware,
    /// The options don't start with the DHCP magic cookie (plain BOOTP).
    #[error("no DHCP magic cookie")]
    BadMagic,
    /// An option we act on has the wrong length, a bad value, is repeated,
    /// or sits where it isn't allowed.
    #[error("bad or repeated option {0}")]
    BadOption(u8),
    /// No DHCP message type option (plain BOOTP).
    #[error("no DHCP message type")]
    NoMessageType,
    /// A message type a server doesn't take (OFFER, ACK, NAK, unknown).
    #[error("message type {0} not for a server")]
    Unsupported(u8),
}

/// The fields and options of a client message that we act on.
#[derive(Debug, Clone, Copy)]
struct Request<'a> {
    xid: [u8; 4],
    flags: [u8; 2],
    ciaddr: Ipv4Addr,
    giaddr: [u8; 4],
    chaddr: [u8; 16],
    msg_type: Option<u8>,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    client_id: Option<&'a [u8]>,
    max_size: Option<u16>,
    overload: Option<u8>,
    fqdn_flags: Option<u8>,
}

/// `N` octets from `b` at `range`; `b` was length-checked before.
fn octets<const N: usize>(b: &[u8], range: std::ops::Range<usize>) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[range]);
    a
}

/// Store `value` in an empty `slot`; a repeated or invalid option is `err`.
fn once<T>(slot: &mut Option<T>, value: Option<T>, err: DhcpDrop) -> Result<(), DhcpDrop> {
    match value {
        Some(v) if slot.is_none() => {
            *slot = Some(v);
            Ok(())
        }
        _ => Err(err),
    }
}

impl<'a> Request<'a> {
    fn parse(m: &'a [u8]) -> Result<Self, DhcpDrop> {
        let head = m.get(..field::OPTIONS).ok_or(DhcpDrop::Truncated)?;
        if head[field::OP] != BOOTREQUEST {
            return Err(DhcpDrop::NotRequest(head[field::OP]));
        }
        if head[field::HTYPE] != HTYPE_ETHERNET || head[field::HLEN] != HLEN_ETHERNET {
            return Err(DhcpDrop::Hardware);
        }
        if head[field::MAGIC] != MAGIC {
            return Err(DhcpDrop::BadMagic);
        }
        let mut req = Request {
            xid: octets(head, field::XID),
            flags: octets(head, field::FLAGS),
            ciaddr: Ipv4Addr::from(octets::<4>(head, field::CIADDR)),
            giaddr: octets(head, field::GIADDR),
            chaddr: octets(head, field::CHADDR),
            msg_type: None,
            requested: None,
            server_id: None,
            client_id: None,
            max_size: None,
            overload: None,
            fqdn_flags: None,
        };
        req.scan(&m[field::OPTIONS..], true)?;
        if let Some(overload) = req.overload {
            // RFC 2131 4.1: "the client interprets 'options' first, then
            // 'file' (if so indicated), then 'sname' (if so indicated)".
            if overload & 1 != 0 {
                req.scan(&head[field::FILE], false)?;
            }
            if overload & 2 != 0 {
                req.scan(&head[field::SNAME], false)?;
            }
        }
        Ok(req)
    }

    /// Walk one options area up to End or its last octet.
    fn scan(&mut self, area: &'a [u8], main: bool) -> Result<(), DhcpDrop> {
        let mut rest = area;
        while let Some((&code, tail)) = rest.split_first() {
            match code {
                // RFC 2132 3.1/3.2: Pad and End are the only options with
                // no length octet.
                opt::PAD => {
                    rest = tail;
                    continue;
                }
                opt::END => return Ok(()),
                _ => {}
            }
            let (&len, tail) = tail.split_first().ok_or(DhcpDrop::Truncated)?;
            let (data, tail) = tail
                .split_at_checked(usize::from(len))
                .ok_or(DhcpDrop::Truncated)?;
            self.take(code, data, main)?;
            rest = tail;
        }
        // No End option: tolerated, the area's length bounds it anyway.
        Ok(())
    }

    /// Note one option. Only the ones we act on are checked; RFC 3396
    /// splitting of those is not supported (none of them is near 255
    /// octets), so a repetition is a contradiction.
    fn take(&mut self, code: u8, data: &'a [u8], main: bool) -> Result<(), DhcpDrop> {
        let bad = DhcpDrop::BadOption(code);
        let exact = |n: usize| (data.len() == n).then_some(data);
        let addr = || exact(4).map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]));
        match code {
            opt::MSG_TYPE => once(&mut self.msg_type, exact(1).map(|d| d[0]), bad),
            opt::REQUESTED_IP => once(&mut self.requested, addr(), bad),
            opt::SERVER_ID => once(&mut self.server_id, addr(), bad),
            opt::MAX_SIZE => once(
                &mut self.max_size,
                exact(2).map(|d| u16::from_be_bytes([d[0], d[1]])),
                bad,
            ),
            // RFC 2132 9.14: "The minimum length is 2."
            opt::CLIENT_ID => once(&mut self.client_id, (data.len() >= 2).then_some(data), bad),
            // RFC 2132 9.3: values 1 (file), 2 (sname), 3 (both); it can
            // only be in the options field itself.
            opt::OVERLOAD => once(
                &mut self.overload,
                exact(1)
                    .map(|d| d[0])
                    .filter(|v| main && (1..=3).contains(v)),
                bad,
            ),
            // RFC 4702 2: flags, RCODE1, RCODE2, then the name.
            opt::CLIENT_FQDN => once(
                &mut self.fqdn_flags,
                (data.len() >= 3).then(|| data[0]),
                bad,
            ),
            _ => Ok(()),
        }
    }

    fn broadcast(&self) -> bool {
        u16::from_be_bytes(self.flags) & FLAG_BROADCAST != 0
    }

    /// Longest DHCP message (UDP payload) the client takes.
    fn budget(&self) -> usize {
        // RFC 2132 9.10: option 57 is the whole datagram; values below 576
        // are illegal, and we fall back to 576 rather than trust them.
        let datagram = self
            .max_size
            .map(usize::from)
            .filter(|&s| s >= MIN_DATAGRAM)
            .unwrap_or(MIN_DATAGRAM);
        datagram - IP_UDP_HEADERS
    }
}

/// Which reply a message gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Offer,
    Ack,
    Nak,
    /// ACK to an INFORM: configuration only, no address, no lease.
    InformAck,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Offer => msg::OFFER,
            Kind::Ack | Kind::InformAck => msg::ACK,
            Kind::Nak => msg::NAK,
        }
    }
}

/// Answer one DHCPv4 message (the UDP payload the guest sent to port 67
/// from port 68).
///
/// Writes the whole reply frame (Ethernet, IPv4, UDP, DHCP) into `out` and
/// returns its length, or `Ok(0)` when there is nothing to send: DHCP
/// disabled or no IPv4, RELEASE, DECLINE, a REQUEST for another server, no
/// address configured (except for INFORM), or an `out` shorter than a
/// minimal reply (callers pass at least 65549 octets).
///
/// # Errors
///
/// The message is malformed or not one a server answers; see [`DhcpDrop`].
pub fn reply(conf: &Config, guest_mac: Mac, msg: &[u8], out: &mut [u8]) -> Result<usize, DhcpDrop> {
    let Some(ip4) = conf.ip4.as_ref().filter(|_| conf.services.dhcp) else {
        return Ok(0);
    };
    let req = Request::parse(msg)?;
    let kind = match req.msg_type.ok_or(DhcpDrop::NoMessageType)? {
        msg::DISCOVER => Kind::Offer,
        msg::REQUEST => {
            // A server identifier names the server the client chose (RFC
            // 2131 4.3.2); "Those servers not selected by the DHCPREQUEST
            // message use the message as notification that the client has
            // declined that server's offer" (RFC 2131 3.1).
            if req.server_id.is_some_and(|id| id != ip4.gateway) {
                return Ok(0);
            }
            // Option 50 in SELECTING and INIT-REBOOT, 'ciaddr' in RENEWING
            // and REBINDING (RFC 2131 4.3.2). RFC 2131 4.3.2 INIT-REBOOT:
            // "Server SHOULD send a DHCPNAK message to the client if the
            // 'requested IP address' is incorrect".
            let ciaddr = Some(req.ciaddr).filter(|a| !a.is_unspecified());
            match req.requested.or(ciaddr) {
                Some(a) if a != ip4.addr => Kind::Nak,
                _ => Kind::Ack,
            }
        }
        msg::INFORM => Kind::InformAck,
        // RFC 2131 4.3.3 and 4.3.4: DECLINE and RELEASE get no answer.
        msg::DECLINE | msg::RELEASE => return Ok(0),
        t => return Err(DhcpDrop::Unsupported(t)),
    };
    // Without an address there is nothing to offer; an INFORM still gets
    // the configuration.
    if matches!(kind, Kind::Offer | Kind::Ack) && ip4.addr.is_unspecified() {
        return Ok(0);
    }
    if out.len() < ethernet::HEADER_LEN + MIN_DATAGRAM {
        return Ok(0);
    }

    let (dst_ip, dst_mac) = destination(kind, &req, ip4, guest_mac);
    let link = Link {
        src: Mac(conf.our_mac),
        dst: dst_mac,
    };
    let src = SocketAddrV4::new(ip4.gateway, SERVER_PORT);
    let dst = SocketAddrV4::new(dst_ip, CLIENT_PORT);
    let budget = req.budget();
    Ok(compose::udp4(out, link, src, dst, |p| {
        let room = budget.min(p.len());
        Some(build(conf, ip4, &req, kind, &mut p[..room]))
    }))
}

/// Where the reply goes (RFC 2131 4.1; we are never behind a relay).
fn destination(kind: Kind, req: &Request<'_>, ip4: &Ip4Config, guest_mac: Mac) -> (Ipv4Addr, Mac) {
    let broadcast = (Ipv4Addr::BROADCAST, Mac::BROADCAST);
    match kind {
        // "In all cases, when 'giaddr' is zero, the server broadcasts any
        // DHCPNAK messages to 0xffffffff."
        Kind::Nak => broadcast,
        // "If the 'giaddr' field is zero and the 'ciaddr' field is nonzero,
        // then the server unicasts DHCPOFFER and DHCPACK messages to the
        // address in 'ciaddr'."
        _ if !req.ciaddr.is_unspecified() => (req.ciaddr, guest_mac),
        // "If 'giaddr' is zero and 'ciaddr' is zero, and the broadcast bit
        // is set, then the server broadcasts DHCPOFFER and DHCPACK messages
        // to 0xffffffff."
        _ if req.broadcast() => broadcast,
        // "If the broadcast bit is not set and 'giaddr' is zero and 'ciaddr'
        // is zero, then the server unicasts DHCPOFFER and DHCPACK messages
        // to the client's hardware address and 'yiaddr' address." We build
        // the frame ourselves, so no ARP entry is needed for that.
        Kind::Offer | Kind::Ack => (ip4.addr, guest_mac),
        // An INFORM must carry 'ciaddr' (RFC 2131 4.4.3); without it there
        // is no address to unicast to.
        Kind::InformAck => broadcast,
    }
}

/// Netmask of a prefix length (lengths past 32 count as 32).
fn netmask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

/// Write the DHCP message into `p` (sized to the client's budget); returns
/// its length.
fn build(conf: &Config, ip4: &Ip4Config, req: &Request<'_>, kind: Kind, p: &mut [u8]) -> usize {
    let Some(head) = p.get_mut(..field::OPTIONS) else {
        return 0;
    };
    // RFC 2131 4.3.1, table 3 gives every field of the reply.
    head.fill(0);
    head[field::OP] = BOOTREPLY;
    head[field::HTYPE] = HTYPE_ETHERNET;
    head[field::HLEN] = HLEN_ETHERNET;
    head[field::XID].copy_from_slice(&req.xid);
    head[field::FLAGS].copy_from_slice(&req.flags);
    // 'ciaddr': "0" in OFFER and NAK, "'ciaddr' from DHCPREQUEST or 0" in ACK.
    if matches!(kind, Kind::Ack | Kind::InformAck) {
        head[field::CIADDR].copy_from_slice(&req.ciaddr.octets());
    }
    // 'yiaddr': "IP address offered to client"; after an INFORM the server
    // "SHOULD NOT fill in 'yiaddr'" (RFC 2131 4.3.5).
    if matches!(kind, Kind::Offer | Kind::Ack) {
        head[field::YIADDR].copy_from_slice(&ip4.addr.octets());
    }
    // 'siaddr' stays 0: we serve no boot files.
    head[field::GIADDR].copy_from_slice(&req.giaddr);
    head[field::CHADDR].copy_from_slice(&req.chaddr);
    head[field::MAGIC].copy_from_slice(&MAGIC);

    let mut w = Options::new(p);
    w.put(opt::MSG_TYPE, &[kind.code()]);
    // RFC 2131 table 3: server identifier "MUST" in OFFER, ACK and NAK.
    w.put(opt::SERVER_ID, &ip4.gateway.octets());
    // RFC 6842 3: "the server MUST return the 'client identifier' option,
    // unaltered, in its response message" (OFFER, ACK and NAK alike).
    if let Some(id) = req.client_id {
        w.put(opt::CLIENT_ID, id);
    }
    if kind == Kind::Nak {
        // RFC 2131 table 3: a NAK carries nothing else but an optional
        // message.
        w.put(opt::MESSAGE, NAK_MESSAGE);
        return w.finish();
    }
    // RFC 2131 4.3.5: after an INFORM "The server MUST NOT send a lease
    // expiration time to the client".
    if kind != Kind::InformAck {
        w.put(opt::LEASE_TIME, &LEASE_INFINITE.to_be_bytes());
    }
    w.put(opt::SUBNET_MASK, &netmask(ip4.prefix_len).to_be_bytes());
    if !ip4.gateway.is_unspecified() {
        let gw = ip4.gateway.octets();
        w.put(opt::ROUTER, &gw);
        let off_link =
            (u32::from(ip4.gateway) ^ u32::from(ip4.addr)) & netmask(ip4.prefix_len) != 0;
        if off_link {
            // A gateway outside the guest's subnet needs a host route to
            // reach it first. RFC 3442: "If the DHCP server returns both a
            // Classless Static Routes option and a Router option, the DHCP
            // client MUST ignore the Router option", so the default route
            // goes here too ("should specify the default router(s) both in
            // the Router option and in the Classless Static Routes option").
            // Each route is: width, significant octets of the destination,
            // router; router 0.0.0.0 means on-link.
            let [a, b, c, d] = gw;
            let routes = [32, a, b, c, d, 0, 0, 0, 0, 0, a, b, c, d];
            w.put(opt::CLASSLESS_ROUTES, &routes);
        }
    }
    if let Some(mtu) = conf.mtu.filter(|&m| m >= MIN_MTU) {
        w.put(opt::MTU, &mtu.to_be_bytes());
    }

    // From here on, in decreasing importance: each is left out if it
    // doesn't fit in the client's budget.
    if conf.services.dhcp_dns && !ip4.dns.is_empty() {
        w.put_with(opt::DNS, |b| {
            let n = ip4.dns.len() * 4;
            for (chunk, a) in b.get_mut(..n)?.chunks_exact_mut(4).zip(&ip4.dns) {
                chunk.copy_from_slice(&a.octets());
            }
            Some(n)
        });
    }
    if let Some(host) = conf.hostname.as_deref() {
        w.put(opt::HOSTNAME, host.as_bytes());
    }
    if let Some(fqdn) = conf.fqdn.as_deref() {
        w.put_with(opt::CLIENT_FQDN, |b| {
            let (head, name) = b.split_at_mut_checked(3)?;
            head.copy_from_slice(&[fqdn_flags(req.fqdn_flags), 255, 255]);
            Some(3 + write_name(fqdn, name)?)
        });
    }
    if conf.services.dhcp_search && !conf.search.is_empty() {
        w.put_with(opt::DOMAIN_SEARCH, |b| write_search_list(&conf.search, b));
    }
    w.finish()
}

/// Flags of our Client FQDN option (RFC 4702 2.1), given the client's.
fn fqdn_flags(client: Option<u8>) -> u8 {
    const S: u8 = 0x01;
    const O: u8 = 0x02;
    const E: u8 = 0x04;
    const N: u8 = 0x08;
    // We update no DNS records: N set, and with it S must be 0. O tells the
    // client that we overrode its S bit, if it had set it. E: the name is
    // in canonical wire format (RFC 4702 2.3); RCODE1 and RCODE2 are 255
    // in a server's option (RFC 4702 2.2).
    let overridden = client.is_some_and(|f| f & S != 0);
    N | E | if overridden { O } else { 0 }
}

/// Options area of a reply being written: each option goes in whole or not
/// at all, always leaving room for End.
struct Options<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Options<'b> {
    /// Options start after the fixed header and magic cookie.
    fn new(buf: &'b mut [u8]) -> Self {
        Options {
            buf,
            pos: field::OPTIONS,
        }
    }

    /// Add an option with this value; false if it doesn't fit.
    fn put(&mut self, code: u8, value: &[u8]) -> bool {
        self.put_with(code, |b| {
            b.get_mut(..value.len())?.copy_from_slice(value);
            Some(value.len())
        })
    }

    /// Add an option whose value `f` writes into the space it is given,
    /// returning its length (`None`: leave the option out). Values longer
    /// than 255 octets are split into consecutive instances of the option
    /// of at most 255 octets each, which the client concatenates (RFC
    /// 3396). False if it doesn't fit.
    fn put_with(&mut self, code: u8, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        let start = self.pos;
        // One octet stays free for End.
        let end = self.buf.len().saturating_sub(1);
        let Some(area) = self.buf.get_mut(start + 2..end) else {
            return false;
        };
        let room = area.len();
        let Some(n) = f(area).filter(|&n| n > 0 && n <= room) else {
            return false;
        };
        let segments = n.div_ceil(255);
        let total = n + 2 * segments;
        if start + total > end {
            return false;
        }
        // The value sits at start + 2; open a two-octet gap before every
        // segment, last segment first so nothing is overwritten before it
        // has moved.
        for i in (0..segments).rev() {
            let from = start + 2 + i * 255;
            let len = (n - i * 255).min(255);
            let to = start + i * 257;
            self.buf.copy_within(from..from + len, to + 2);
            self.buf[to] = code;
            self.buf[to + 1] = len as u8; // at most 255
        }
        self.pos = start + total;
        true
    }

    /// Close with End and pad to the BOOTP minimum; returns the message
    /// length.
    fn finish(self) -> usize {
        let Some(end) = self.buf.get_mut(self.pos) else {
            return self.pos;
        };
        *end = opt::END;
        let len = (self.pos + 1).max(MIN_MESSAGE).min(self.buf.len());
        self.buf[self.pos + 1..len].fill(opt::PAD);
        len
    }
}

/// `name` without a trailing dot, if it is a valid domain name: labels of 1
/// to 63 octets and, in wire format, 255 octets at most (RFC 1035 2.3.4).
fn valid_name(name: &str) -> Option<&str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    // Wire length: one length octet per label plus the root: len + 2.
    let ok = !name.is_empty()
        && name.len() + 2 <= 255
        && name.split('.').all(|l| (1..=63).contains(&l.len()));
    ok.then_some(name)
}

/// Write one label as length and octets; returns the new position.
fn write_label(label: &str, out: &mut [u8], pos: usize) -> Option<usize> {
    let dst = out.get_mut(pos..pos + 1 + label.len())?;
    dst[0] = label.len() as u8; // at most 63, see valid_name()
    dst[1..].copy_from_slice(label.as_bytes());
    Some(pos + 1 + label.len())
}

/// Write `name` in DNS wire format, uncompressed (RFC 1035 3.1); returns
/// its length, `None` if it is invalid or doesn't fit.
pub(super) fn write_name(name: &str, out: &mut [u8]) -> Option<usize> {
    let name = valid_name(name)?;
    let mut pos = 0;
    for label in name.split('.') {
        pos = write_label(label, out, pos)?;
    }
    *out.get_mut(pos)? = 0;
    Some(pos + 1)
}

/// Write the valid names of `names` one after another, uncompressed;
/// returns the length, `None` if none is valid or they don't fit.
pub(super) fn write_name_list(names: &[String], out: &mut [u8]) -> Option<usize> {
    let mut pos = 0;
    for name in names.iter().filter(|n| valid_name(n).is_some()) {
        pos += write_name(name, out.get_mut(pos..)?)?;
    }
    (pos > 0).then_some(pos)
}

/// Write the search list for option 119: names in RFC 1035 format, which
/// may be compressed, with pointers counted from the start of the option
/// data (RFC 3397 2). A suffix already written is replaced by a pointer;
/// invalid names are skipped. Returns the length, `None` if nothing valid
/// fits (the option is then left out whole).
fn write_search_list(names: &[String], out: &mut [u8]) -> Option<usize> {
    /// Suffixes remembered for compression; past this, names are written
    /// without it.
    const SUFFIXES: usize = 64;
    /// RFC 1035 4.1.4: a pointer holds a 14-bit offset.
    const MAX_POINTER: usize = 0x3fff;
    let mut known: [(usize, &str); SUFFIXES] = [(0, ""); SUFFIXES];
    let mut n_known = 0;
    let mut pos = 0;
    for name in names.iter().filter_map(|n| valid_name(n)) {
        let mut rest = name;
        loop {
            if rest.is_empty() {
                *out.get_mut(pos)? = 0;
                pos += 1;
                break;
            }
            if let Some(&(off, _)) = known[..n_known].iter().find(|(_, s)| *s == rest) {
                // 11 in the top bits marks a pointer (RFC 1035 4.1.4).
                let ptr = 0xc000 | off as u16; // off <= MAX_POINTER
                out.get_mut(pos..pos + 2)?
                    .copy_from_slice(&ptr.to_be_bytes());
                pos += 2;
                break;
            }
            if n_known < SUFFIXES && pos <= MAX_POINTER {
                known[n_known] = (pos, rest);
                n_known += 1;
            }
            let (label, tail) = rest.split_once('.').unwrap_or((rest, ""));
            pos = write_label(label, out, pos)?;
            rest = tail;
        }
    }
    (pos > 0).then_some(pos)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::conf::*;
    use crate::wire::{EtherType, ethernet::Frame};
    use dhcproto::v4::{self, DhcpOption, MessageType, OptionCode};
    use dhcproto::{Decodable, Encodable};

    pub(in crate::l2) const GUEST_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const OUR_MAC: Mac = Mac(DEFAULT_OUR_MAC);
    const ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DNS: [Ipv4Addr; 2] = [
        Ipv4Addr::new(192, 0, 2, 53),
        Ipv4Addr::new(198, 51, 100, 53),
    ];
    const XID: u32 = 0x1234_5678;
    /// What callers pass (see `reply`).
    pub(in crate::l2) const OUT_LEN: usize = 65549;

    /// A configuration with every DHCP(v6) feature on.
    /// `Config::example()` with this module's addresses and a search
    /// list that also needs a trailing-dot name.
    pub(in crate::l2) fn config() -> Config {
        let mut c = Config::example();
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.addr = ADDR;
            ip4.prefix_len = 24;
            ip4.gateway = GW;
            ip4.dns = DNS.to_vec();
        }
        c.search.push("example.org.".into());
        c
    }

    /// Deterministic xorshift64 generator for the mutation smoke tests.
    pub(in crate::l2) struct XorShift(pub u64);

    impl XorShift {
        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        /// A position, half of the time at or past `hot` (where options are).
        fn pos(&mut self, len: usize, hot: usize) -> usize {
            if len > hot && self.next() & 1 == 0 {
                hot + self.below(len - hot)
            } else {
                self.below(len)
            }
        }

        /// A few random mutations of `seed`: bit flips, truncation, length
        /// fields set to extremes, random bytes, inserted and appended junk.
        pub fn mutate(&mut self, seed: &[u8], hot: usize) -> Vec<u8> {
            let mut m = seed.to_vec();
            for _ in 0..1 + self.below(4) {
                let len = m.len();
                match self.below(7) {
                    0 if len > 0 => {
                        let p = self.pos(len, hot);
                        m[p] ^= 1 << self.below(8);
                    }
                    1 => m.truncate(self.below(len + 1)),
                    2 if len > 0 => {
                        let p = self.pos(len, hot);
                        m[p] = [0, 1, 2, 3, 4, 0x7f, 0x80, 0xfe, 0xff][self.below(9)];
                    }
                    3 if len > 0 => {
                        let p = self.pos(len, hot);
                        m[p] = self.next() as u8;
                    }
                    4 => {
                        let p = self.pos(len + 1, hot).min(len);
                        let n = self.below(16);
                        let junk: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                        m.splice(p..p, junk);
                    }
                    5 => {
                        let n = self.below(300);
                        m.extend((0..n).map(|_| self.next() as u8));
                    }
                    _ => {
                        // Duplicate a slice: repeated options, loops.
                        if len > 1 {
                            let a = self.pos(len, hot);
                            let b = (a + 1 + self.below(32)).min(len);
                            let dup = m[a..b].to_vec();
                            m.splice(a..a, dup);
                        }
                    }
                }
            }
            m
        }
    }

    fn client(t: MessageType) -> v4::Message {
        let u = Ipv4Addr::UNSPECIFIED;
        let mut m = v4::Message::new_with_id(XID, u, u, u, u, &GUEST_MAC.0);
        m.opts_mut().insert(DhcpOption::MessageType(t));
        m
    }

    fn bytes(m: &v4::Message) -> Vec<u8> {
        m.to_vec().unwrap()
    }

    /// A reply frame taken apart, with every checksum verified.
    #[derive(Debug)]
    struct Sent {
        eth_dst: Mac,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: Vec<u8>,
        msg: v4::Message,
    }

    fn parse_frame(frame: &[u8]) -> Sent {
        let f = Frame::new_checked(frame).unwrap();
        assert_eq!(f.src(), OUR_MAC);
        assert_eq!(f.ethertype(), EtherType::Ipv4);
        let ip = ipv4::Packet::new_checked(f.payload()).unwrap();
        assert!(ip.verify_checksum());
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum_v4(ip.src(), ip.dst()));
        assert_eq!((u.src_port(), u.dst_port()), (SERVER_PORT, CLIENT_PORT));
        Sent {
            eth_dst: f.dst(),
            src: ip.src(),
            dst: ip.dst(),
            payload: u.payload().to_vec(),
            msg: v4::Message::from_bytes(u.payload()).unwrap(),
        }
    }

    fn run_raw(conf: &Config, msg: &[u8]) -> Result<usize, DhcpDrop> {
        reply(conf, GUEST_MAC, msg, &mut vec![0; OUT_LEN])
    }

    fn run(conf: &Config, m: &v4::Message) -> Sent {
        let mut out = vec![0; OUT_LEN];
        let n = reply(conf, GUEST_MAC, &bytes(m), &mut out).unwrap();
        assert!(n > 0, "no reply");
        parse_frame(&out[..n])
    }

    /// Every instance of option `code` in a reply, raw (RFC 3396 splits
    /// show up as several).
    fn raw_options(payload: &[u8], code: u8) -> Vec<Vec<u8>> {
        let mut found = Vec::new();
        let mut i = field::OPTIONS;
        while i < payload.len() && payload[i] != opt::END {
            if payload[i] == opt::PAD {
                i += 1;
                continue;
            }
            let len = usize::from(payload[i + 1]);
            if payload[i] == code {
                found.push(payload[i + 2..i + 2 + len].to_vec());
            }
            i += 2 + len;
        }
        found
    }

    fn names(o: Option<&DhcpOption>) -> Vec<String> {
        match o {
            Some(DhcpOption::DomainSearch(n)) => n
                .iter()
                .map(|n| n.to_string().trim_end_matches('.').to_owned())
                .collect(),
            other => panic!("no search list: {other:?}"),
        }
    }

    #[test]
    fn discover_gets_offer_with_everything() {
        let conf = config();
        let s = run(&conf, &client(MessageType::Discover));
        // RFC 2131 4.1: no ciaddr, no broadcast flag: unicast to yiaddr.
        assert_eq!((s.eth_dst, s.src, s.dst), (GUEST_MAC, GW, ADDR));
        let m = &s.msg;
        assert_eq!(m.opcode(), v4::Opcode::BootReply);
        assert_eq!((m.htype(), m.hlen()), (v4::HType::Eth, 6));
        assert_eq!(m.xid(), XID);
        assert_eq!(m.yiaddr(), ADDR);
        assert_eq!(m.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(m.siaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(&m.chaddr()[..6], &GUEST_MAC.0);
        assert!(!m.flags().broadcast());
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Offer));
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(GW))
        );
        assert_eq!(
            o.get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(u32::MAX))
        );
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![GW]))
        );
        assert_eq!(
            o.get(OptionCode::DomainNameServer),
            Some(&DhcpOption::DomainNameServer(DNS.to_vec()))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(65520))
        );
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("guest".into()))
        );
        assert_eq!(
            names(o.get(OptionCode::DomainSearch)),
            ["example.com", "sub.example.com", "example.org"]
        );
        match o.get(OptionCode::ClientFQDN) {
            Some(DhcpOption::ClientFQDN(f)) => {
                assert_eq!(f.domain().to_string(), "guest.example.com.");
                assert!(f.flags().n() && f.flags().e() && !f.flags().o() && !f.flags().s());
                assert_eq!((f.r1(), f.r2()), (255, 255));
            }
            other => panic!("no FQDN: {other:?}"),
        }
        // On-link gateway: no classless routes; nothing echoed unasked.
        assert_eq!(o.get(OptionCode::ClasslessStaticRoute), None);
        assert_eq!(o.get(OptionCode::ClientIdentifier), None);
        // Fits the 576-octet default, padded to the BOOTP minimum.
        assert!(
            (MIN_MESSAGE..=548).contains(&s.payload.len()),
            "{}",
            s.payload.len()
        );
    }

    #[test]
    fn search_list_is_compressed() {
        let conf = config();
        let s = run(&conf, &client(MessageType::Discover));
        let raw = raw_options(&s.payload, opt::DOMAIN_SEARCH);
        let want: &[u8] = b"\x07example\x03com\x00\x03sub\xc0\x00\x07example\x03org\x00";
        assert_eq!(raw, [want]);
    }

    #[test]
    fn request_gets_ack() {
        let conf = config();
        let mut m = client(MessageType::Request);
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(ADDR));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(GW));
        let s = run(&conf, &m);
        assert_eq!((s.eth_dst, s.dst), (GUEST_MAC, ADDR));
        assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(s.msg.yiaddr(), ADDR);
        assert_eq!(
            s.msg.opts().get(OptionCode::AddressLeaseTime),
            Some(&DhcpOption::AddressLeaseTime(u32::MAX))
        );
    }

    #[test]
    fn request_without_address_gets_ack() {
        let s = run(&config(), &client(MessageType::Request));
        assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
    }

    #[test]
    fn request_for_other_address_gets_broadcast_nak() {
        let conf = config();
        let mut m = client(MessageType::Request);
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 7)));
        m.opts_mut()
            .insert(DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1]));
        let s = run(&conf, &m);
        assert_eq!((s.eth_dst, s.dst), (Mac::BROADCAST, Ipv4Addr::BROADCAST));
        assert_eq!(s.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
        let o = s.msg.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Nak));
        assert_eq!(
            o.get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(GW))
        );
        assert_eq!(
            o.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![1, 2, 0, 0, 0, 0, 1]))
        );
        assert!(matches!(
            o.get(OptionCode::Message),
            Some(DhcpOption::Message(_))
        ));
        // RFC 2131 table 3: nothing else in a NAK.
        let codes: Vec<u8> = o.iter().map(|(c, _)| u8::from(*c)).collect();
        assert_eq!(codes, [53, 54, 56, 61]);
    }

    #[test]
    fn renewing_unicasts_to_ciaddr() {
        let conf = config();
        let mut m = client(MessageType::Request);
        m.set_ciaddr(ADDR);
        let s = run(&conf, &m);
        assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!((s.eth_dst, s.dst), (GUEST_MAC, ADDR));
        assert_eq!(s.msg.ciaddr(), ADDR);

        m.set_ciaddr(Ipv4Addr::new(10, 0, 0, 7));
        let s = run(&conf, &m);
        assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(s.msg.ciaddr(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn request_for_another_server_is_ignored() {
        let mut m = client(MessageType::Request);
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 99)));
        assert_eq!(run_raw(&config(), &bytes(&m)), Ok(0));
    }

    #[test]
    fn broadcast_flag_broadcasts() {
        let mut m = client(MessageType::Discover);
        m.set_flags(v4::Flags::default().set_broadcast());
        let s = run(&config(), &m);
        assert_eq!((s.eth_dst, s.dst), (Mac::BROADCAST, Ipv4Addr::BROADCAST));
        assert!(s.msg.flags().broadcast());
    }

    #[test]
    fn inform_gets_configuration_only() {
        let conf = config();
        let mut m = client(MessageType::Inform);
        let static_addr = Ipv4Addr::new(192, 0, 2, 77);
        m.set_ciaddr(static_addr);
        let s = run(&conf, &m);
        assert_eq!((s.eth_dst, s.dst), (GUEST_MAC, static_addr));
        assert_eq!(s.msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(s.msg.ciaddr(), static_addr);
        let o = s.msg.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Ack));
        assert_eq!(o.get(OptionCode::AddressLeaseTime), None);
        assert!(o.get(OptionCode::SubnetMask).is_some());
        assert!(o.get(OptionCode::DomainNameServer).is_some());
        assert!(o.get(OptionCode::ServerIdentifier).is_some());

        // Without ciaddr there is no one to unicast to.
        let s = run(&conf, &client(MessageType::Inform));
        assert_eq!((s.eth_dst, s.dst), (Mac::BROADCAST, Ipv4Addr::BROADCAST));
    }

    #[test]
    fn no_address_no_offer() {
        let mut conf = config();
        conf.ip4.as_mut().unwrap().addr = Ipv4Addr::UNSPECIFIED;
        for t in [MessageType::Discover, MessageType::Request] {
            assert_eq!(run_raw(&conf, &bytes(&client(t))), Ok(0), "{t:?}");
        }
        let s = run(&conf, &client(MessageType::Inform));
        assert_eq!(s.msg.opts().msg_type(), Some(MessageType::Ack));
    }

    #[test]
    fn release_and_decline_get_nothing() {
        for t in [MessageType::Release, MessageType::Decline] {
            let mut m = client(t);
            m.opts_mut().insert(DhcpOption::ServerIdentifier(GW));
            assert_eq!(run_raw(&config(), &bytes(&m)), Ok(0), "{t:?}");
        }
    }

    #[test]
    fn client_identifier_is_echoed() {
        let id = vec![0xff, 0, 0, 0, 1, 0, 2, 0, 1, 0x5e, 0x10, 0xaa];
        for t in [MessageType::Discover, MessageType::Request] {
            let mut m = client(t);
            m.opts_mut()
                .insert(DhcpOption::ClientIdentifier(id.clone()));
            let s = run(&config(), &m);
            assert_eq!(
                s.msg.opts().get(OptionCode::ClientIdentifier),
                Some(&DhcpOption::ClientIdentifier(id.clone()))
            );
        }
    }

    #[test]
    fn switches() {
        let m = bytes(&client(MessageType::Discover));
        let mut conf = config();
        conf.services.dhcp = false;
        assert_eq!(run_raw(&conf, &m), Ok(0), "--no-dhcp");
        let mut conf = config();
        conf.ip4 = None;
        assert_eq!(run_raw(&conf, &m), Ok(0), "no IPv4");

        let without = |f: fn(&mut Config), code: OptionCode| {
            let mut conf = config();
            f(&mut conf);
            let s = run(&conf, &client(MessageType::Discover));
            assert_eq!(s.msg.opts().get(code), None, "{code:?}");
        };
        without(
            |c| c.services.dhcp_dns = false,
            OptionCode::DomainNameServer,
        );
        without(
            |c| c.ip4.as_mut().unwrap().dns.clear(),
            OptionCode::DomainNameServer,
        );
        without(|c| c.services.dhcp_search = false, OptionCode::DomainSearch);
        without(|c| c.search.clear(), OptionCode::DomainSearch);
        without(|c| c.mtu = None, OptionCode::InterfaceMtu);
        without(|c| c.hostname = None, OptionCode::Hostname);
        without(|c| c.fqdn = None, OptionCode::ClientFQDN);
    }

    #[test]
    fn off_link_gateway_gets_classless_routes() {
        let mut conf = config();
        let ip4 = conf.ip4.as_mut().unwrap();
        ip4.addr = Ipv4Addr::new(10, 0, 0, 2);
        ip4.prefix_len = 24;
        let s = run(&conf, &client(MessageType::Discover));
        let o = s.msg.opts();
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec![GW]))
        );
        match o.get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(r)) => {
                let r: Vec<_> = r.iter().map(|(net, gw)| (net.to_string(), *gw)).collect();
                assert_eq!(
                    r,
                    [
                        ("192.0.2.1/32".to_owned(), Ipv4Addr::UNSPECIFIED),
                        ("0.0.0.0/0".to_owned(), GW)
                    ]
                );
            }
            other => panic!("no routes: {other:?}"),
        }
        // /32: everything but ourselves is off-link.
        let mut conf = config();
        conf.ip4.as_mut().unwrap().prefix_len = 32;
        let s = run(&conf, &client(MessageType::Discover));
        assert!(s.msg.opts().get(OptionCode::ClasslessStaticRoute).is_some());
        assert_eq!(
            s.msg.opts().get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::BROADCAST))
        );
    }

    #[test]
    fn fqdn_overrides_client_s_bit() {
        let mut m = bytes(&client(MessageType::Discover));
        // Client FQDN with S set (RFC 4702 2.1), inserted before End.
        let end = m.iter().rposition(|&b| b == opt::END).unwrap();
        m.splice(end..end, [opt::CLIENT_FQDN, 4, 0x05, 0, 0, 0]);
        let mut out = vec![0; OUT_LEN];
        let n = reply(&config(), GUEST_MAC, &m, &mut out).unwrap();
        let s = parse_frame(&out[..n]);
        let raw = raw_options(&s.payload, opt::CLIENT_FQDN);
        assert_eq!(raw[0][0], 0x08 | 0x04 | 0x02);
    }

    #[test]
    fn long_search_list_respects_message_size() {
        let mut conf = config();
        conf.search = (0..20)
            .map(|i| format!("domain-number-{i}.a-rather-long-organisation-name.example"))
            .collect();
        // Default 576-octet limit: the search list is what gives way.
        let s = run(&conf, &client(MessageType::Discover));
        assert!(s.payload.len() <= 548);
        assert_eq!(s.msg.opts().get(OptionCode::DomainSearch), None);
        assert!(s.msg.opts().get(OptionCode::ClientFQDN).is_some());
        // Below 576 is illegal (RFC 2132 9.10) and changes nothing.
        let mut m = client(MessageType::Discover);
        m.opts_mut().insert(DhcpOption::MaxMessageSize(300));
        assert!(run(&conf, &m).payload.len() <= 548);
        // With room, it goes out split in several options (RFC 3396).
        m.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
        let s = run(&conf, &m);
        assert!(s.payload.len() <= 1500 - 28);
        assert!(raw_options(&s.payload, opt::DOMAIN_SEARCH).len() > 1);
        assert_eq!(
            names(s.msg.opts().get(OptionCode::DomainSearch)),
            conf.search
        );
    }

    #[test]
    fn huge_configuration_never_overflows() {
        let mut conf = config();
        conf.hostname = Some("h".repeat(250));
        conf.fqdn = Some(format!(
            "{}.{}.{}.example",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63)
        ));
        conf.ip4.as_mut().unwrap().dns = (0..100).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let mut m = client(MessageType::Discover);
        m.opts_mut()
            .insert(DhcpOption::ClientIdentifier(vec![7; 255]));
        let s = run(&conf, &m);
        assert!(s.payload.len() <= 548);
        let o = s.msg.opts();
        assert_eq!(
            o.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![7; 255]))
        );
        assert!(
            o.get(OptionCode::SubnetMask).is_some() && o.get(OptionCode::InterfaceMtu).is_some()
        );
        // The nameservers split over two options when there's room.
        m.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
        let s = run(&conf, &m);
        assert_eq!(raw_options(&s.payload, opt::DNS).len(), 2);
        match s.msg.opts().get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(d)) => assert_eq!(d.len(), 100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overloaded_file_field_is_read() {
        let mut m = bytes(&client(MessageType::Discover));
        // Move the message type into 'file' (RFC 2132 9.3).
        m.truncate(field::OPTIONS);
        m.extend([opt::OVERLOAD, 1, 1, opt::END]);
        m[field::FILE.start..field::FILE.start + 4].copy_from_slice(&[
            opt::MSG_TYPE,
            1,
            msg::DISCOVER,
            opt::END,
        ]);
        let mut out = vec![0; OUT_LEN];
        let n = reply(&config(), GUEST_MAC, &m, &mut out).unwrap();
        assert_eq!(
            parse_frame(&out[..n]).msg.opts().msg_type(),
            Some(MessageType::Offer)
        );
        // Overload inside the overloaded field is not allowed.
        m[field::FILE.start..field::FILE.start + 3].copy_from_slice(&[opt::OVERLOAD, 1, 1]);
        assert_eq!(
            run_raw(&config(), &m),
            Err(DhcpDrop::BadOption(opt::OVERLOAD))
        );
    }

    #[test]
    fn malformed_messages_are_dropped() {
        let good = bytes(&client(MessageType::Discover));
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = good.clone();
            f(&mut m);
            run_raw(&config(), &m)
        };
        /// Replace everything after the cookie.
        fn opts(m: &mut Vec<u8>, o: &[u8]) {
            m.truncate(field::OPTIONS);
            m.extend_from_slice(o);
        }
        assert_eq!(run_raw(&config(), &[]), Err(DhcpDrop::Truncated));
        assert_eq!(run_raw(&config(), &good[..239]), Err(DhcpDrop::Truncated));
        assert_eq!(
            run_raw(&config(), &[0xff; 1000]),
            Err(DhcpDrop::NotRequest(0xff))
        );
        assert_eq!(with(&|m| m[0] = BOOTREPLY), Err(DhcpDrop::NotRequest(2)));
        assert_eq!(with(&|m| m[1] = 6), Err(DhcpDrop::Hardware));
        assert_eq!(with(&|m| m[2] = 16), Err(DhcpDrop::Hardware));
        assert_eq!(with(&|m| m[236] = 0), Err(DhcpDrop::BadMagic));
        assert_eq!(with(&|m| opts(m, &[])), Err(DhcpDrop::NoMessageType));
        assert_eq!(with(&|m| opts(m, &[53, 1])), Err(DhcpDrop::Truncated));
        assert_eq!(with(&|m| opts(m, &[53])), Err(DhcpDrop::Truncated));
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 12, 255, b'x'])),
            Err(DhcpDrop::Truncated)
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 2, 1, 1, 255])),
            Err(DhcpDrop::BadOption(53))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 0, 255])),
            Err(DhcpDrop::BadOption(53))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 53, 1, 3, 255])),
            Err(DhcpDrop::BadOption(53))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 50, 3, 1, 2, 3, 255])),
            Err(DhcpDrop::BadOption(50))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 54, 0, 255])),
            Err(DhcpDrop::BadOption(54))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 61, 1, 1, 255])),
            Err(DhcpDrop::BadOption(61))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 57, 1, 9, 255])),
            Err(DhcpDrop::BadOption(57))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 52, 1, 4, 255])),
            Err(DhcpDrop::BadOption(52))
        );
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 81, 2, 0, 0, 255])),
            Err(DhcpDrop::BadOption(81))
        );
        for t in [msg::OFFER, msg::ACK, msg::NAK, 9, 18, 0, 255] {
            assert_eq!(
                with(&|m| opts(m, &[53, 1, t, 255])),
                Err(DhcpDrop::Unsupported(t))
            );
        }
        // Unknown options, Pad runs and a missing End are fine.
        assert_eq!(
            with(&|m| opts(m, &[0, 0, 200, 3, 1, 2, 3, 0, 53, 1, 1])).map(|n| n > 0),
            Ok(true)
        );
        // Garbage after End is never looked at.
        assert_eq!(
            with(&|m| opts(m, &[53, 1, 1, 255, 53, 9])).map(|n| n > 0),
            Ok(true)
        );
    }

    #[test]
    fn small_output_buffer_gives_nothing() {
        let m = bytes(&client(MessageType::Discover));
        assert_eq!(reply(&config(), GUEST_MAC, &m, &mut [0; 100]), Ok(0));
        // Exactly enough for a 576-octet datagram works.
        let mut out = vec![0; 14 + 576];
        assert!(reply(&config(), GUEST_MAC, &m, &mut out).unwrap() > 0);
    }

    #[test]
    fn name_encoding() {
        let mut b = [0; 300];
        assert_eq!(write_name("a.bc.", &mut b), Some(6));
        assert_eq!(&b[..6], b"\x01a\x02bc\x00");
        for bad in [
            "",
            ".",
            "a..b",
            &"x".repeat(64),
            &vec!["y".repeat(63); 4].join("."),
        ] {
            assert_eq!(write_name(bad, &mut b), None, "{bad:?}");
        }
        assert_eq!(write_name("abc", &mut b[..4]), None);
        let list = ["a.example".into(), "..".into(), "b.example".into()];
        let n = write_search_list(&list, &mut b).unwrap();
        assert_eq!(&b[..n], b"\x01a\x07example\x00\x01b\xc0\x02");
        assert_eq!(write_search_list(&list, &mut b[..5]), None);
        let n = write_name_list(&list, &mut b).unwrap();
        assert_eq!(&b[..n], b"\x01a\x07example\x00\x01b\x07example\x00");
    }

    /// Stable stand-in for `fuzz/fuzz_targets/dhcp.rs`: mutated valid
    /// messages must never panic, and whatever is sent must be a valid
    /// frame.
    #[test]
    fn mutation_smoke() {
        let conf = config();
        let mut off_link = config();
        off_link.ip4.as_mut().unwrap().addr = Ipv4Addr::new(10, 0, 0, 2);
        let mut seeds = Vec::new();
        for t in [
            MessageType::Discover,
            MessageType::Request,
            MessageType::Inform,
        ] {
            let mut m = client(t);
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(ADDR));
            m.opts_mut()
                .insert(DhcpOption::ClientIdentifier(vec![1, 2, 3, 4, 5, 6, 7]));
            m.opts_mut().insert(DhcpOption::MaxMessageSize(1500));
            m.opts_mut().insert(DhcpOption::Hostname("guest".into()));
            m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::Router,
                OptionCode::DomainSearch,
            ]));
            seeds.push(bytes(&m));
        }
        let mut overloaded = seeds[0].clone();
        overloaded.truncate(field::OPTIONS);
        overloaded.extend([opt::OVERLOAD, 1, 3, 53, 1, 1, opt::END]);
        overloaded[field::FILE.start..field::FILE.start + 3].copy_from_slice(&[61, 1, 1]);
        seeds.push(overloaded);

        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut out = vec![0; OUT_LEN];
        let mut sent = 0;
        for i in 0..20_000 {
            let seed = &seeds[i % seeds.len()];
            let m = rng.mutate(seed, field::OPTIONS);
            let conf = if i % 3 == 0 { &off_link } else { &conf };
            if let Ok(n) = reply(conf, GUEST_MAC, &m, &mut out)
                && n > 0
            {
                sent += 1;
                let f = Frame::new_checked(&out[..n]).unwrap();
                let ip = ipv4::Packet::new_checked(f.payload()).unwrap();
                assert!(ip.verify_checksum());
                let u = udp::Packet::new_checked(ip.payload()).unwrap();
                assert!(u.verify_checksum_v4(ip.src(), ip.dst()));
                assert!(u.payload().len() >= MIN_MESSAGE);
            }
        }
        // The mutations must leave enough valid messages to exercise replies.
        assert!(sent > 1000, "only {sent} replies");
    }
}
