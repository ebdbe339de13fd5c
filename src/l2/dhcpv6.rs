//! DHCPv6 server (RFC 8415): hands the guest its one global address, the
//! nameservers, the search list and the FQDN, from our link-local address.
//!
//! # Theory of operation
//!
//! Like the DHCPv4 side, this is a stateless responder for a single client
//! and a single address (`conf.ip6.addr`): the one address goes into the
//! first IA_NA of every Solicit, Request, Renew and Rebind, with infinite
//! lifetimes and T1/T2, so a guest never needs to come back. Other IAs are
//! answered with a status (no temporary addresses, no prefix delegation).
//! An unspecified `addr` (local mode) means there is nothing to assign.
//! Our DUID is a DUID-LL built from our MAC address, so it is the same for
//! as long as the process (and its `-M`) lives.
//!
//! Guest input is parsed by hand, bounded and without allocation: the
//! four-octet header, then the top-level options, and one level into IA
//! options (where addresses are). The options we act on must be well-formed
//! and appear once (IAs once per IAID); section 16's rules on Client and
//! Server Identifiers are enforced; anything else drops the message.
//! `dhcproto`'s v6 decoder isn't used (see also `dhcp.rs`): it reads
//! fixed-size values whatever the declared length (a zero-length Preference
//! swallows the next option) and recurses without bound into nested IA
//! options, so a crafted 64 KiB message overflows a 2 MiB stack.
//!
//! The reply is written in place into the frame by `compose::udp6`, each
//! option whole or not at all, so a huge configuration (nameservers, search
//! list) is cut rather than overflowing the datagram.

use super::dhcp::{write_name, write_name_list};
use super::router_ll;
use crate::conf::{Config, Ip6Config};
use crate::wire::Mac;
use crate::wire::compose::{self, Link};
use std::net::{Ipv6Addr, SocketAddrV6};

/// UDP port of the server (us).
pub const SERVER_PORT: u16 = 547;
/// UDP port of the client (the guest).
pub const CLIENT_PORT: u16 = 546;
/// Length of our DUID.
pub const DUID_LEN: usize = 10;

/// Message types (RFC 8415 7.3).
mod msg {
    pub const SOLICIT: u8 = 1;
    pub const ADVERTISE: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const CONFIRM: u8 = 4;
    pub const RENEW: u8 = 5;
    pub const REBIND: u8 = 6;
    pub const REPLY: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const DECLINE: u8 = 9;
    pub const INFORMATION_REQUEST: u8 = 11;
}

/// Option codes (RFC 8415 21 and the RFCs named).
mod opt {
    pub const CLIENTID: u16 = 1;
    pub const SERVERID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IA_TA: u16 = 4;
    pub const IAADDR: u16 = 5;
    pub const PREFERENCE: u16 = 7;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    /// RFC 3646.
    pub const DNS_SERVERS: u16 = 23;
    /// RFC 3646.
    pub const DOMAIN_LIST: u16 = 24;
    pub const IA_PD: u16 = 25;
    /// RFC 4704.
    pub const CLIENT_FQDN: u16 = 39;
}

/// Status codes (RFC 8415 21.13).
mod status {
    pub const SUCCESS: u16 = 0;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NO_BINDING: u16 = 3;
    pub const NOT_ON_LINK: u16 = 4;
    pub const NO_PREFIX_AVAIL: u16 = 6;
}

/// Message header: type and transaction ID (RFC 8415 8).
const HEADER_LEN: usize = 4;
/// RFC 8415 7.7: "the value 0xffffffff ... represents infinity".
const INFINITY: u32 = u32::MAX;
/// Fixed part of IA_NA and IA_PD (IAID, T1, T2) and of IA_TA (IAID).
const IA_NA_LEN: usize = 12;
const IA_TA_LEN: usize = 4;
/// Fixed part of an IA Address option (address, two lifetimes).
const IAADDR_LEN: usize = 24;
/// RFC 8415 11.1: "A DUID consists of a 2-octet type code represented in
/// network byte order, followed by a variable number of octets that make
/// up the actual identifier. The length of the DUID (not including the
/// type code) is at least 1 octet and at most 128 octets."
const DUID_MIN: usize = 3;
const DUID_MAX: usize = 130;
/// IAs answered in one message; a real client sends one or two.
const MAX_IAS: usize = 8;
/// Stale addresses per IA handed back with zero lifetimes.
const MAX_STALE: usize = 8;
/// Smallest `out` we write into: the IPv6 minimum MTU (RFC 8200 5).
const MIN_OUT: usize = 1280;

/// Why a DHCPv6 message from the guest was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Dhcp6Drop {
    /// Shorter than the header, or an option runs past its container.
    #[error("truncated message")]
    Truncated,
    /// Source address unspecified or multicast: nowhere to reply to.
    #[error("bad source address")]
    BadSource,
    /// A message type a server doesn't take (Advertise, Reply, relay...).
    #[error("message type {0} not for a server")]
    Unsupported(u8),
    /// An option we act on is malformed, repeated, or not allowed here.
    #[error("bad or repeated option {0}")]
    BadOption(u16),
    /// No Client Identifier where RFC 8415 16 requires one.
    #[error("no client identifier")]
    NoClientId,
    /// A Server Identifier where RFC 8415 16 forbids one.
    #[error("unexpected server identifier")]
    UnexpectedServerId,
    /// Missing or foreign Server Identifier where ours is required.
    #[error("server identifier missing or not ours")]
    WrongServerId,
    /// More IA options than we answer in one message.
    #[error("too many IA options")]
    TooManyIas,
}

/// Our server DUID: a DUID-LL (RFC 8415 11.4: type 3, hardware type 1 for
/// Ethernet, link-layer address), stable for the life of the process.
pub fn server_duid(conf: &Config) -> [u8; DUID_LEN] {
    let m = conf.our_mac;
    [0, 3, 0, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
}

/// Kind of identity association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IaKind {
    /// Non-temporary addresses (RFC 8415 21.4).
    Na,
    /// Temporary addresses (RFC 8415 21.5).
    Ta,
    /// Delegated prefixes (RFC 8415 21.21).
    Pd,
}

impl IaKind {
    fn code(self) -> u16 {
        match self {
            IaKind::Na => opt::IA_NA,
            IaKind::Ta => opt::IA_TA,
            IaKind::Pd => opt::IA_PD,
        }
    }
}

/// One IA option of the client's message.
#[derive(Debug, Clone, Copy)]
struct Ia<'a> {
    kind: IaKind,
    iaid: [u8; 4],
    /// Its options, already checked to be well framed.
    opts: &'a [u8],
}

/// Call `f` on each (code, value) of an options area (RFC 8415 21.1: code
/// and length of two octets each).
fn each_option<'a>(
    mut area: &'a [u8],
    mut f: impl FnMut(u16, &'a [u8]) -> Result<(), Dhcp6Drop>,
) -> Result<(), Dhcp6Drop> {
    while !area.is_empty() {
        let (head, rest) = area.split_first_chunk::<4>().ok_or(Dhcp6Drop::Truncated)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let (value, rest) = rest.split_at_checked(len).ok_or(Dhcp6Drop::Truncated)?;
        f(code, value)?;
        area = rest;
    }
    Ok(())
}

/// Addresses of the IA Address options in a well-framed `area`.
fn addresses(area: &[u8]) -> impl Iterator<Item = Ipv6Addr> + '_ {
    let mut rest = area;
    std::iter::from_fn(move || {
        loop {
            let (head, tail) = rest.split_first_chunk::<4>()?;
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let (value, tail) = tail.split_at_checked(len)?;
            rest = tail;
            if u16::from_be_bytes([head[0], head[1]]) == opt::IAADDR
                && let Some(a) = value.first_chunk::<16>()
            {
                return Some(Ipv6Addr::from(*a));
            }
        }
    })
}

/// Store `value` in an empty `slot`; a repeated option is `BadOption`.
fn once<T>(slot: &mut Option<T>, value: T, code: u16) -> Result<(), Dhcp6Drop> {
    if slot.is_some() {
        return Err(Dhcp6Drop::BadOption(code));
    }
    *slot = Some(value);
    Ok(())
}

/// What we act on in a client message.
#[derive(Debug)]
struct Request<'a> {
    msg_type: u8,
    xid: [u8; 3],
    client_id: Option<&'a [u8]>,
    server_id: Option<&'a [u8]>,
    rapid_commit: Option<()>,
    fqdn_flags: Option<u8>,
    ias: [Option<Ia<'a>>; MAX_IAS],
}

impl<'a> Request<'a> {
    fn parse(m: &'a [u8]) -> Result<Self, Dhcp6Drop> {
        let (head, opts) = m
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(Dhcp6Drop::Truncated)?;
        let msg_type = head[0];
        // RFC 8415 16: servers discard Advertise, Reply, Reconfigure and
        // Relay-reply; we don't take relayed messages (nobody relays on a
        // tap link) nor leasequery.
        if !matches!(
            msg_type,
            msg::SOLICIT
                | msg::REQUEST
                | msg::CONFIRM
                | msg::RENEW
                | msg::REBIND
                | msg::RELEASE
                | msg::DECLINE
                | msg::INFORMATION_REQUEST
        ) {
            return Err(Dhcp6Drop::Unsupported(msg_type));
        }
        let mut req = Request {
            msg_type,
            xid: [head[1], head[2], head[3]],
            client_id: None,
            server_id: None,
            rapid_commit: None,
            fqdn_flags: None,
            ias: [None; MAX_IAS],
        };
        each_option(opts, |code, value| req.take(code, value))?;
        Ok(req)
    }

    fn take(&mut self, code: u16, value: &'a [u8]) -> Result<(), Dhcp6Drop> {
        let bad = Dhcp6Drop::BadOption(code);
        match code {
            opt::CLIENTID | opt::SERVERID => {
                if !(DUID_MIN..=DUID_MAX).contains(&value.len()) {
                    return Err(bad);
                }
                let slot = if code == opt::CLIENTID {
                    &mut self.client_id
                } else {
                    &mut self.server_id
                };
                once(slot, value, code)
            }
            // RFC 8415 21.14: "option-len 0".
            opt::RAPID_COMMIT if value.is_empty() => once(&mut self.rapid_commit, (), code),
            opt::RAPID_COMMIT => Err(bad),
            // RFC 4704 4: flags, then the domain name.
            opt::CLIENT_FQDN => once(&mut self.fqdn_flags, *value.first().ok_or(bad)?, code),
            opt::IA_NA => self.add_ia(IaKind::Na, IA_NA_LEN, value),
            opt::IA_TA => self.add_ia(IaKind::Ta, IA_TA_LEN, value),
            opt::IA_PD => self.add_ia(IaKind::Pd, IA_NA_LEN, value),
            _ => Ok(()),
        }
    }

    fn add_ia(&mut self, kind: IaKind, fixed: usize, value: &'a [u8]) -> Result<(), Dhcp6Drop> {
        let bad = Dhcp6Drop::BadOption(kind.code());
        let (head, opts) = value.split_at_checked(fixed).ok_or(bad)?;
        let iaid = [head[0], head[1], head[2], head[3]];
        each_option(opts, |code, value| {
            if code == opt::IAADDR && value.len() < IAADDR_LEN {
                return Err(Dhcp6Drop::BadOption(code));
            }
            Ok(())
        })?;
        // RFC 8415 21.4: IAIDs identify IAs, so one appearing twice of the
        // same kind contradicts itself.
        let mut slots = self.ias.iter_mut();
        for slot in slots.by_ref() {
            match slot {
                Some(ia) if ia.kind == kind && ia.iaid == iaid => return Err(bad),
                Some(_) => {}
                None => {
                    *slot = Some(Ia { kind, iaid, opts });
                    return Ok(());
                }
            }
        }
        Err(Dhcp6Drop::TooManyIas)
    }

    fn ias(&self) -> impl Iterator<Item = &Ia<'a>> {
        self.ias.iter().flatten()
    }

    /// RFC 8415 16: which identifiers each message must and mustn't carry.
    fn validate(&self, duid: &[u8]) -> Result<(), Dhcp6Drop> {
        let ours = self.server_id.map(|id| id == duid);
        match self.msg_type {
            // 16.2, 16.5, 16.7: "Servers MUST discard any Solicit messages
            // that do not include a Client Identifier option or that do
            // include a Server Identifier option" (Confirm and Rebind alike).
            msg::SOLICIT | msg::CONFIRM | msg::REBIND => {
                self.client_id.ok_or(Dhcp6Drop::NoClientId)?;
                if ours.is_some() {
                    return Err(Dhcp6Drop::UnexpectedServerId);
                }
            }
            // 16.4, 16.6, 16.9, 16.10: discard if "the message does not
            // include a Server Identifier option", if "the contents of the
            // Server Identifier option do not match the server's DUID", or
            // if "the message does not include a Client Identifier option".
            msg::REQUEST | msg::RENEW | msg::RELEASE | msg::DECLINE => {
                self.client_id.ok_or(Dhcp6Drop::NoClientId)?;
                if ours != Some(true) {
                    return Err(Dhcp6Drop::WrongServerId);
                }
            }
            // 16.12: discard if "the message includes a Server Identifier
            // option, and the DUID in the option does not match the
            // server's DUID" or "the message includes an IA option". A
            // Client Identifier is optional here.
            _ => {
                if ours == Some(false) {
                    return Err(Dhcp6Drop::WrongServerId);
                }
                if let Some(ia) = self.ias().next() {
                    return Err(Dhcp6Drop::BadOption(ia.kind.code()));
                }
            }
        }
        Ok(())
    }
}

/// Answer one DHCPv6 message (the UDP payload sent to port 547 from `src`
/// port 546, `src` being the guest's link-local address).
///
/// Writes the whole reply frame into `out`: from our link-local address
/// ([`router_ll`]) port 547 to `src` port 546, Ethernet from our MAC to
/// `guest_mac`. Returns its length, or `Ok(0)` when nothing is to be sent:
/// DHCPv6 disabled or no IPv6, a Confirm without addresses, or an `out`
/// shorter than 1280 octets (callers pass at least 65549).
///
/// # Errors
///
/// The message is malformed, not one a server answers, or fails the
/// identifier checks of RFC 8415 16; see [`Dhcp6Drop`].
pub fn reply(
    conf: &Config,
    guest_mac: Mac,
    src: Ipv6Addr,
    msg: &[u8],
    out: &mut [u8],
) -> Result<usize, Dhcp6Drop> {
    let Some(ip6) = conf.ip6.as_ref().filter(|_| conf.services.dhcpv6) else {
        return Ok(0);
    };
    if src.is_unspecified() || src.is_multicast() {
        return Err(Dhcp6Drop::BadSource);
    }
    let duid = server_duid(conf);
    let req = Request::parse(msg)?;
    req.validate(&duid)?;

    let confirm = if req.msg_type == msg::CONFIRM {
        // RFC 8415 18.3.3: "If all of the addresses in the Confirm message
        // pass this test, the server returns a status of Success. If any of
        // the addresses do not pass this test, the server returns a status
        // of NotOnLink. If ... there were no addresses in any of the IAs
        // sent by the client, the server MUST NOT send a Reply". The test
        // here is stricter than on-link: only our one address passes, so a
        // guest holding an old one starts over.
        let mut addrs = req.ias().flat_map(|ia| addresses(ia.opts)).peekable();
        if addrs.peek().is_none() {
            return Ok(0);
        }
        let all_ours = addrs.all(|a| a == ip6.addr && !a.is_unspecified());
        Some(if all_ours {
            status::SUCCESS
        } else {
            status::NOT_ON_LINK
        })
    } else {
        None
    };
    if out.len() < MIN_OUT {
        return Ok(0);
    }

    let link = Link {
        src: Mac(conf.our_mac),
        dst: guest_mac,
    };
    let from = SocketAddrV6::new(router_ll(conf), SERVER_PORT, 0, 0);
    let to = SocketAddrV6::new(src, CLIENT_PORT, 0, 0);
    Ok(compose::udp6(out, link, from, to, |p| {
        // Option lengths are 16-bit: keep the whole payload below that.
        let room = p.len().min(usize::from(u16::MAX));
        Some(build(conf, ip6, &req, &duid, confirm, &mut p[..room]))
    }))
}

/// Write the reply message into `p`; returns its length.
fn build(
    conf: &Config,
    ip6: &Ip6Config,
    req: &Request<'_>,
    duid: &[u8],
    confirm: Option<u16>,
    p: &mut [u8],
) -> usize {
    // RFC 8415 18.3.1: a Solicit with a Rapid Commit option gets a Reply
    // committing the assignments, from a server configured for it (we
    // always are); otherwise an Advertise (18.3.9).
    let rapid = req.msg_type == msg::SOLICIT && req.rapid_commit.is_some();
    let advertise = req.msg_type == msg::SOLICIT && !rapid;
    let reply_type = if advertise {
        msg::ADVERTISE
    } else {
        msg::REPLY
    };

    let mut w = Writer { buf: p, pos: 0 };
    // RFC 8415 16.1: the reply carries the client's transaction ID.
    let [a, b, c] = req.xid;
    if w.bytes(&[reply_type, a, b, c]).is_none() {
        return 0;
    }
    // RFC 8415 18.3: every reply carries our Server Identifier and the
    // client's Client Identifier (if it sent one, 18.3.6).
    if let Some(id) = req.client_id {
        w.atomic(|w| w.put(opt::CLIENTID, &[id]));
    }
    w.atomic(|w| w.put(opt::SERVERID, &[duid]));

    match req.msg_type {
        msg::SOLICIT | msg::REQUEST | msg::RENEW | msg::REBIND => {
            write_ias(&mut w, req, ip6, advertise);
            if rapid {
                // RFC 8415 18.3.1: such a Reply carries a Rapid Commit
                // option too.
                w.atomic(|w| w.put(opt::RAPID_COMMIT, &[]));
            }
            if advertise {
                // RFC 8415 18.2.1: on an Advertise with preference 255
                // the client sends its Request at once instead of waiting
                // to collect Advertises from other servers: there are none.
                w.atomic(|w| w.put(opt::PREFERENCE, &[&[255]]));
            }
            write_config(&mut w, conf, ip6, req);
        }
        msg::CONFIRM => {
            let code = confirm.unwrap_or(status::NOT_ON_LINK);
            w.atomic(|w| put_status(w, code));
        }
        // RFC 8415 18.3.7 (Release), 18.3.8 (Decline): "the server ...
        // generates a Reply message ... includes a Status Code option with
        // the value Success". We hold no bindings to update.
        msg::RELEASE | msg::DECLINE => {
            w.atomic(|w| put_status(w, status::SUCCESS));
        }
        // Information-request (RFC 8415 18.3.6): configuration only.
        _ => write_config(&mut w, conf, ip6, req),
    }
    w.pos
}

/// Answer the client's IAs: our address in the first IA_NA, a status in
/// the others. RFC 8415 18.3.2 (as RFC 3315 18.2.1): "If the server cannot
/// assign any addresses to an IA in the message from the client, the
/// server MUST include the IA in the Reply message with no addresses in
/// the IA and a Status Code option in the IA containing status code
/// NoAddrsAvail".
fn write_ias(w: &mut Writer<'_>, req: &Request<'_>, ip6: &Ip6Config, advertise: bool) {
    let mut to_give = Some(ip6.addr).filter(|a| !a.is_unspecified());
    let mut assigned = false;
    for ia in req.ias() {
        if ia.kind == IaKind::Na
            && let Some(addr) = to_give.take()
        {
            assigned = w.atomic(|w| put_ia_na(w, req, ia, addr));
            continue;
        }
        // RFC 3315 17.2.2, which clients still follow (some choke on an
        // Advertise with an IA and no address): an Advertise leaves out
        // the IAs it can't serve; a top-level status below says why.
        if advertise {
            continue;
        }
        let code = match (ia.kind, req.msg_type) {
            (IaKind::Pd, _) => status::NO_PREFIX_AVAIL,
            // RFC 8415 18.3.4: "If the server cannot find a client entry
            // for the IA, the server returns the IA containing no addresses
            // with a Status Code option set to NoBinding".
            (_, msg::RENEW | msg::REBIND) => status::NO_BINDING,
            _ => status::NO_ADDRS_AVAIL,
        };
        w.atomic(|w| {
            let start = w.open(ia.kind.code())?;
            w.bytes(&ia.iaid)?;
            if ia.kind != IaKind::Ta {
                w.bytes(&[0; 8])?; // T1, T2
            }
            put_status(w, code)?;
            w.close(start);
            Some(())
        });
    }
    // RFC 3315 17.2.2: "If the server will not assign any addresses to any
    // IAs in a subsequent Request from the client, the server MUST send an
    // Advertise message to the client that includes only a Status Code
    // option with code NoAddrsAvail" (with the identifiers). We add the
    // configuration options anyway: harmless, and RFC 8415 18.2.9 clients
    // ignore such an Advertise in any case.
    if advertise && !assigned && req.ias().any(|ia| ia.kind != IaKind::Pd) {
        w.atomic(|w| put_status(w, status::NO_ADDRS_AVAIL));
    }
}

/// Our address in an IA_NA, with infinite lifetimes; in a Request, Renew
/// or Rebind, the client's other addresses go back with lifetimes 0 (RFC
/// 8415 18.3.4: "If the server finds that any of the addresses in the IA
/// are not appropriate for the link to which the client is attached, the
/// server returns the address to the client with lifetimes of 0").
fn put_ia_na(w: &mut Writer<'_>, req: &Request<'_>, ia: &Ia<'_>, addr: Ipv6Addr) -> Option<()> {
    let inf = INFINITY.to_be_bytes();
    let start = w.open(opt::IA_NA)?;
    // RFC 8415 21.4: T1 and T2 of infinity with infinite lifetimes: the
    // client never needs to renew.
    w.bytes(&ia.iaid)?;
    w.bytes(&inf)?;
    w.bytes(&inf)?;
    w.put(opt::IAADDR, &[&addr.octets(), &inf, &inf])?;
    if req.msg_type != msg::SOLICIT {
        for stale in addresses(ia.opts).filter(|&a| a != addr).take(MAX_STALE) {
            w.put(opt::IAADDR, &[&stale.octets(), &[0; 8]])?;
        }
    }
    w.close(start);
    Some(())
}

/// A Status Code option (RFC 8415 21.13) with a short message for humans.
fn put_status(w: &mut Writer<'_>, code: u16) -> Option<()> {
    let text: &[u8] = match code {
        status::SUCCESS => b"success",
        status::NO_ADDRS_AVAIL => b"no addresses available",
        status::NO_BINDING => b"no binding",
        status::NOT_ON_LINK => b"not on link",
        _ => b"no prefixes available",
    };
    w.put(opt::STATUS_CODE, &[&code.to_be_bytes(), text])
}

/// Nameservers, FQDN and search list, in that order of importance; each is
/// left out if it doesn't fit.
fn write_config(w: &mut Writer<'_>, conf: &Config, ip6: &Ip6Config, req: &Request<'_>) {
    if conf.services.dhcp_dns && !ip6.dns.is_empty() {
        w.atomic(|w| {
            let start = w.open(opt::DNS_SERVERS)?;
            for a in &ip6.dns {
                w.bytes(&a.octets())?;
            }
            w.close(start);
            Some(())
        });
    }
    if let Some(fqdn) = conf.fqdn.as_deref() {
        // RFC 4704 4.1: flags N (0x04), O (0x02), S (0x01). We update no
        // DNS records: N set, so S must be clear; O set when that overrides
        // a client asking for S.
        let flags = 0x04
            | if req.fqdn_flags.is_some_and(|f| f & 1 != 0) {
                0x02
            } else {
                0
            };
        w.atomic(|w| {
            w.put_with(opt::CLIENT_FQDN, |b| {
                let (head, name) = b.split_first_mut()?;
                *head = flags;
                // RFC 4704 4.2 (and RFC 8415 10): uncompressed wire format.
                Some(1 + write_name(fqdn, name)?)
            })
        });
    }
    if conf.services.dhcp_search && !conf.search.is_empty() {
        // RFC 3646 4 with RFC 8415 10: names "MUST NOT be stored in
        // compressed form".
        w.atomic(|w| w.put_with(opt::DOMAIN_LIST, |b| write_name_list(&conf.search, b)));
    }
}

/// Reply being written: each option goes in whole or not at all.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Option<()> {
        self.buf
            .get_mut(self.pos..self.pos + b.len())?
            .copy_from_slice(b);
        self.pos += b.len();
        Some(())
    }

    /// Start an option; returns its position for `close`.
    fn open(&mut self, code: u16) -> Option<usize> {
        let start = self.pos;
        let [a, b] = code.to_be_bytes();
        self.bytes(&[a, b, 0, 0])?;
        Some(start)
    }

    /// Fill in the length of the option opened at `start`.
    fn close(&mut self, start: usize) {
        // The buffer is at most 65535 octets (see reply()).
        let len = (self.pos - start - 4) as u16;
        self.buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// An option whose value is these parts, concatenated.
    fn put(&mut self, code: u16, parts: &[&[u8]]) -> Option<()> {
        let start = self.open(code)?;
        for part in parts {
            self.bytes(part)?;
        }
        self.close(start);
        Some(())
    }

    /// An option whose value `f` writes into the space left, returning its
    /// length.
    fn put_with(&mut self, code: u16, f: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<()> {
        let start = self.open(code)?;
        let room = self.buf.len() - self.pos;
        let n = f(&mut self.buf[self.pos..]).filter(|&n| n <= room)?;
        self.pos += n;
        self.close(start);
        Some(())
    }

    /// Run `f`; if it fails, undo what it wrote. True if it succeeded.
    fn atomic(&mut self, f: impl FnOnce(&mut Self) -> Option<()>) -> bool {
        let mark = self.pos;
        let ok = f(self).is_some();
        if !ok {
            self.pos = mark;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::dhcp::tests::{GUEST_MAC, OUT_LEN, XorShift, config};
    use crate::wire::{EtherType, ethernet::Frame, ipv6, udp};
    use dhcproto::v6::{
        self, DhcpOption, DhcpOptions, IAAddr, IANA, IAPD, IATA, MessageType, OptionCode, Status,
    };
    use dhcproto::{Decodable, Encodable};

    const GUEST_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x5e);
    const CLIENT_DUID: [u8; 10] = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
    const XID: [u8; 3] = [0xab, 0xcd, 0xef];
    const IAID: u32 = 0x0102_0304;

    fn ours() -> Ipv6Addr {
        config().ip6.unwrap().addr
    }

    fn client(t: MessageType) -> v6::Message {
        let mut m = v6::Message::new_with_id(t, XID);
        m.opts_mut()
            .insert(DhcpOption::ClientId(CLIENT_DUID.to_vec()));
        m
    }

    fn with_server_id(mut m: v6::Message) -> v6::Message {
        m.opts_mut()
            .insert(DhcpOption::ServerId(server_duid(&config()).to_vec()));
        m
    }

    fn ia_na(id: u32, addrs: &[Ipv6Addr]) -> DhcpOption {
        let mut opts = DhcpOptions::new();
        for &addr in addrs {
            opts.insert(DhcpOption::IAAddr(IAAddr {
                addr,
                preferred_life: 3600,
                valid_life: 7200,
                opts: DhcpOptions::new(),
            }));
        }
        DhcpOption::IANA(IANA {
            id,
            t1: 0,
            t2: 0,
            opts,
        })
    }

    fn run_raw(conf: &Config, msg: &[u8]) -> Result<usize, Dhcp6Drop> {
        reply(conf, GUEST_MAC, GUEST_LL, msg, &mut vec![0; OUT_LEN])
    }

    /// The reply, with frame, addresses, ports and checksum verified.
    fn run(conf: &Config, m: &v6::Message) -> v6::Message {
        let mut out = vec![0; OUT_LEN];
        let n = reply(conf, GUEST_MAC, GUEST_LL, &m.to_vec().unwrap(), &mut out).unwrap();
        assert!(n > 0, "no reply");
        let payload = check_frame(conf, &out[..n]);
        let r = v6::Message::from_bytes(payload).unwrap();
        assert_eq!(r.xid(), XID);
        // Every reply: our Server ID, the Client ID echoed.
        assert_eq!(
            r.opts().get(OptionCode::ServerId),
            Some(&DhcpOption::ServerId(server_duid(conf).to_vec()))
        );
        assert_eq!(
            r.opts().get(OptionCode::ClientId),
            Some(&DhcpOption::ClientId(CLIENT_DUID.to_vec()))
        );
        r
    }

    fn check_frame<'a>(conf: &Config, frame: &'a [u8]) -> &'a [u8] {
        let f = Frame::new_checked(frame).unwrap();
        assert_eq!((f.dst(), f.src()), (GUEST_MAC, Mac(conf.our_mac)));
        assert_eq!(f.ethertype(), EtherType::Ipv6);
        let ip = ipv6::Packet::new_checked(&frame[14..]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (router_ll(conf), GUEST_LL));
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert!(u.verify_checksum_v6(ip.src(), ip.dst()));
        assert_eq!((u.src_port(), u.dst_port()), (SERVER_PORT, CLIENT_PORT));
        let off = 14 + 40 + 8;
        &frame[off..off + u.payload().len()]
    }

    fn status_of(opts: &DhcpOptions) -> Option<Status> {
        match opts.get(OptionCode::StatusCode) {
            Some(DhcpOption::StatusCode(s)) => Some(s.status),
            _ => None,
        }
    }

    fn iana(r: &v6::Message) -> &IANA {
        match r.opts().get(OptionCode::IANA) {
            Some(DhcpOption::IANA(ia)) => ia,
            other => panic!("no IA_NA: {other:?}"),
        }
    }

    fn ia_addrs(ia: &IANA) -> Vec<(Ipv6Addr, u32, u32)> {
        ia.opts
            .iter()
            .filter_map(|o| match o {
                DhcpOption::IAAddr(a) => Some((a.addr, a.preferred_life, a.valid_life)),
                _ => None,
            })
            .collect()
    }

    fn raw_option(r: &v6::Message, code: u16) -> Option<Vec<u8>> {
        r.opts().iter().find_map(|o| match o {
            DhcpOption::Unknown(u) if u16::from(u.code()) == code => Some(u.data().to_vec()),
            _ => None,
        })
    }

    fn check_config(r: &v6::Message) {
        let o = r.opts();
        assert_eq!(
            o.get(OptionCode::DomainNameServers),
            Some(&DhcpOption::DomainNameServers(vec![
                "2001:db8::53".parse().unwrap()
            ]))
        );
        match o.get(OptionCode::DomainSearchList) {
            Some(DhcpOption::DomainSearchList(n)) => {
                let n: Vec<_> = n.iter().map(|n| n.to_string()).collect();
                assert_eq!(n, ["example.com.", "sub.example.com.", "example.org."]);
            }
            other => panic!("no domain list: {other:?}"),
        }
        assert_eq!(
            raw_option(r, opt::CLIENT_FQDN).unwrap(),
            b"\x04\x05guest\x07example\x03com\x00"
        );
    }

    #[test]
    fn duid_is_ll_from_our_mac() {
        let conf = config();
        let m = conf.our_mac;
        assert_eq!(
            server_duid(&conf),
            [0, 3, 0, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
        );
    }

    #[test]
    fn solicit_gets_advertise() {
        let conf = config();
        let mut m = client(MessageType::Solicit);
        m.opts_mut().insert(ia_na(IAID, &[]));
        let r = run(&conf, &m);
        assert_eq!(r.msg_type(), MessageType::Advertise);
        let ia = iana(&r);
        assert_eq!((ia.id, ia.t1, ia.t2), (IAID, u32::MAX, u32::MAX));
        assert_eq!(ia_addrs(ia), [(ours(), u32::MAX, u32::MAX)]);
        assert_eq!(
            r.opts().get(OptionCode::Preference),
            Some(&DhcpOption::Preference(255))
        );
        assert_eq!(r.opts().get(OptionCode::RapidCommit), None);
        assert_eq!(status_of(r.opts()), None);
        check_config(&r);
    }

    #[test]
    fn rapid_commit_solicit_gets_reply() {
        let mut m = client(MessageType::Solicit);
        m.opts_mut().insert(ia_na(IAID, &[]));
        m.opts_mut().insert(DhcpOption::RapidCommit);
        let r = run(&config(), &m);
        assert_eq!(r.msg_type(), MessageType::Reply);
        assert_eq!(
            r.opts().get(OptionCode::RapidCommit),
            Some(&DhcpOption::RapidCommit)
        );
        assert_eq!(r.opts().get(OptionCode::Preference), None);
        assert_eq!(ia_addrs(iana(&r)), [(ours(), u32::MAX, u32::MAX)]);
    }

    #[test]
    fn request_renew_rebind_get_reply() {
        let stale: Ipv6Addr = "2001:db8:1::9".parse().unwrap();
        for (t, server_id) in [
            (MessageType::Request, true),
            (MessageType::Renew, true),
            (MessageType::Rebind, false),
        ] {
            let mut m = client(t);
            if server_id {
                m = with_server_id(m);
            }
            m.opts_mut().insert(ia_na(IAID, &[ours(), stale]));
            let r = run(&config(), &m);
            assert_eq!(r.msg_type(), MessageType::Reply, "{t:?}");
            // RFC 8415 18.3.4: addresses not for this link, lifetimes 0.
            assert_eq!(
                ia_addrs(iana(&r)),
                [(ours(), u32::MAX, u32::MAX), (stale, 0, 0)],
                "{t:?}"
            );
            check_config(&r);
        }
    }

    #[test]
    fn server_id_rules() {
        let conf = config();
        let foreign = DhcpOption::ServerId(vec![0, 3, 0, 1, 1, 1, 1, 1, 1, 1]);
        for t in [
            MessageType::Request,
            MessageType::Renew,
            MessageType::Release,
            MessageType::Decline,
        ] {
            let m = client(t);
            assert_eq!(
                run_raw(&conf, &m.to_vec().unwrap()),
                Err(Dhcp6Drop::WrongServerId),
                "{t:?}"
            );
            let mut m = client(t);
            m.opts_mut().insert(foreign.clone());
            assert_eq!(
                run_raw(&conf, &m.to_vec().unwrap()),
                Err(Dhcp6Drop::WrongServerId),
                "{t:?}"
            );
        }
        for t in [
            MessageType::Solicit,
            MessageType::Confirm,
            MessageType::Rebind,
        ] {
            let m = with_server_id(client(t));
            assert_eq!(
                run_raw(&conf, &m.to_vec().unwrap()),
                Err(Dhcp6Drop::UnexpectedServerId),
                "{t:?}"
            );
        }
        let mut m = client(MessageType::InformationRequest);
        m.opts_mut().insert(foreign);
        assert_eq!(
            run_raw(&conf, &m.to_vec().unwrap()),
            Err(Dhcp6Drop::WrongServerId)
        );
        // Ours is fine in an Information-request.
        let r = run(
            &conf,
            &with_server_id(client(MessageType::InformationRequest)),
        );
        assert_eq!(r.msg_type(), MessageType::Reply);
    }

    #[test]
    fn client_id_required() {
        for t in [
            MessageType::Solicit,
            MessageType::Confirm,
            MessageType::Rebind,
        ] {
            let m = v6::Message::new_with_id(t, XID);
            assert_eq!(
                run_raw(&config(), &m.to_vec().unwrap()),
                Err(Dhcp6Drop::NoClientId)
            );
        }
        let mut m = v6::Message::new_with_id(MessageType::Request, XID);
        m.opts_mut()
            .insert(DhcpOption::ServerId(server_duid(&config()).to_vec()));
        assert_eq!(
            run_raw(&config(), &m.to_vec().unwrap()),
            Err(Dhcp6Drop::NoClientId)
        );
        // Optional in an Information-request (RFC 8415 18.2.6).
        let m = v6::Message::new_with_id(MessageType::InformationRequest, XID);
        assert!(run_raw(&config(), &m.to_vec().unwrap()).unwrap() > 0);
    }

    #[test]
    fn confirm() {
        let conf = config();
        let confirm = |addrs: &[Ipv6Addr]| {
            let mut m = client(MessageType::Confirm);
            m.opts_mut().insert(ia_na(IAID, addrs));
            m
        };
        let r = run(&conf, &confirm(&[ours()]));
        assert_eq!(r.msg_type(), MessageType::Reply);
        assert_eq!(status_of(r.opts()), Some(Status::Success));
        assert_eq!(r.opts().get(OptionCode::IANA), None);
        let other: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let r = run(&conf, &confirm(&[ours(), other]));
        assert_eq!(status_of(r.opts()), Some(Status::NotOnLink));
        // RFC 8415 18.3.3: no addresses, no Reply.
        assert_eq!(run_raw(&conf, &confirm(&[]).to_vec().unwrap()), Ok(0));
    }

    #[test]
    fn information_request_gets_configuration_only() {
        let r = run(&config(), &client(MessageType::InformationRequest));
        assert_eq!(r.msg_type(), MessageType::Reply);
        assert_eq!(r.opts().get(OptionCode::IANA), None);
        assert_eq!(status_of(r.opts()), None);
        check_config(&r);
        // RFC 8415 16.12: no IA allowed.
        let mut m = client(MessageType::InformationRequest);
        m.opts_mut().insert(ia_na(IAID, &[]));
        assert_eq!(
            run_raw(&config(), &m.to_vec().unwrap()),
            Err(Dhcp6Drop::BadOption(3))
        );
    }

    #[test]
    fn release_and_decline_get_success() {
        for t in [MessageType::Release, MessageType::Decline] {
            let mut m = with_server_id(client(t));
            m.opts_mut().insert(ia_na(IAID, &[ours()]));
            let r = run(&config(), &m);
            assert_eq!(r.msg_type(), MessageType::Reply);
            assert_eq!(status_of(r.opts()), Some(Status::Success));
            assert_eq!(r.opts().get(OptionCode::IANA), None);
        }
    }

    #[test]
    fn server_messages_are_dropped() {
        for t in [
            msg::ADVERTISE,
            msg::REPLY,
            10, // Reconfigure
            12, // Relay-forward
            13, // Relay-reply
            14, // Leasequery
            0,
            255,
        ] {
            assert_eq!(
                run_raw(&config(), &[t, 1, 2, 3]),
                Err(Dhcp6Drop::Unsupported(t))
            );
        }
    }

    #[test]
    fn other_ias_get_status() {
        let mut m = with_server_id(client(MessageType::Request));
        m.opts_mut().insert(ia_na(IAID, &[]));
        m.opts_mut().insert(ia_na(IAID + 1, &[]));
        m.opts_mut().insert(DhcpOption::IATA(IATA {
            id: 7,
            opts: DhcpOptions::new(),
        }));
        m.opts_mut().insert(DhcpOption::IAPD(IAPD {
            id: 8,
            t1: 0,
            t2: 0,
            opts: DhcpOptions::new(),
        }));
        let r = run(&config(), &m);
        let nas: Vec<_> = r
            .opts()
            .get_all(OptionCode::IANA)
            .unwrap()
            .iter()
            .map(|o| match o {
                DhcpOption::IANA(ia) => (ia.id, ia_addrs(ia).len(), status_of(&ia.opts)),
                _ => unreachable!(),
            })
            .collect();
        // dhcproto reorders options, so either IA_NA may be the first.
        let mut nas = nas;
        nas.sort_by_key(|&(_, n, _)| n);
        let ids = [nas[0].0, nas[1].0];
        assert!(ids.contains(&IAID) && ids.contains(&(IAID + 1)));
        let got: Vec<_> = nas.iter().map(|&(_, n, s)| (n, s)).collect();
        assert_eq!(got, [(0, Some(Status::NoAddrsAvail)), (1, None)]);
        match r.opts().get(OptionCode::IATA) {
            Some(DhcpOption::IATA(ia)) => {
                assert_eq!(
                    (ia.id, status_of(&ia.opts)),
                    (7, Some(Status::NoAddrsAvail))
                )
            }
            other => panic!("{other:?}"),
        }
        match r.opts().get(OptionCode::IAPD) {
            Some(DhcpOption::IAPD(ia)) => {
                assert_eq!(
                    (ia.id, status_of(&ia.opts)),
                    (8, Some(Status::NoPrefixAvail))
                )
            }
            other => panic!("{other:?}"),
        }
        // An Advertise leaves them out.
        let mut m = client(MessageType::Solicit);
        m.opts_mut().insert(ia_na(IAID, &[]));
        m.opts_mut().insert(DhcpOption::IATA(IATA {
            id: 7,
            opts: DhcpOptions::new(),
        }));
        let r = run(&config(), &m);
        assert_eq!(r.opts().get(OptionCode::IATA), None);
        assert_eq!(status_of(r.opts()), None);
    }

    #[test]
    fn local_mode_assigns_nothing() {
        let mut conf = config();
        conf.ip6.as_mut().unwrap().addr = Ipv6Addr::UNSPECIFIED;
        let mut m = client(MessageType::Solicit);
        m.opts_mut().insert(ia_na(IAID, &[]));
        let r = run(&conf, &m);
        assert_eq!(r.msg_type(), MessageType::Advertise);
        assert_eq!(r.opts().get(OptionCode::IANA), None);
        assert_eq!(status_of(r.opts()), Some(Status::NoAddrsAvail));
        // Configuration still goes out.
        assert!(r.opts().get(OptionCode::DomainNameServers).is_some());

        let mut m = with_server_id(client(MessageType::Request));
        m.opts_mut().insert(ia_na(IAID, &[]));
        let r = run(&conf, &m);
        let ia = iana(&r);
        assert!(ia_addrs(ia).is_empty());
        assert_eq!(status_of(&ia.opts), Some(Status::NoAddrsAvail));

        let mut m = with_server_id(client(MessageType::Renew));
        m.opts_mut()
            .insert(ia_na(IAID, &["2001:db8::2".parse().unwrap()]));
        assert_eq!(
            status_of(&iana(&run(&conf, &m)).opts),
            Some(Status::NoBinding)
        );

        let mut m = client(MessageType::Confirm);
        m.opts_mut()
            .insert(ia_na(IAID, &["2001:db8::2".parse().unwrap()]));
        assert_eq!(status_of(run(&conf, &m).opts()), Some(Status::NotOnLink));
    }

    #[test]
    fn switches() {
        let m = client(MessageType::InformationRequest).to_vec().unwrap();
        let mut conf = config();
        conf.services.dhcpv6 = false;
        assert_eq!(run_raw(&conf, &m), Ok(0), "--no-dhcpv6");
        let mut conf = config();
        conf.ip6 = None;
        assert_eq!(run_raw(&conf, &m), Ok(0), "no IPv6");

        let without = |f: fn(&mut Config), code: OptionCode| {
            let mut conf = config();
            f(&mut conf);
            let r = run(&conf, &client(MessageType::InformationRequest));
            assert_eq!(r.opts().get(code), None, "{code:?}");
        };
        without(
            |c| c.services.dhcp_dns = false,
            OptionCode::DomainNameServers,
        );
        without(
            |c| c.ip6.as_mut().unwrap().dns.clear(),
            OptionCode::DomainNameServers,
        );
        without(
            |c| c.services.dhcp_search = false,
            OptionCode::DomainSearchList,
        );
        without(|c| c.search.clear(), OptionCode::DomainSearchList);
        let mut conf = config();
        conf.fqdn = None;
        let r = run(&conf, &client(MessageType::InformationRequest));
        assert_eq!(raw_option(&r, opt::CLIENT_FQDN), None);
    }

    #[test]
    fn fqdn_overrides_client_s_bit() {
        let mut m = client(MessageType::Solicit);
        m.opts_mut()
            .insert(DhcpOption::Unknown(v6::UnknownOption::new(
                OptionCode::ClientFqdn,
                vec![0x01, 0],
            )));
        let r = run(&config(), &m);
        assert_eq!(raw_option(&r, opt::CLIENT_FQDN).unwrap()[0], 0x04 | 0x02);
    }

    #[test]
    fn source_is_router_link_local() {
        let mut conf = config();
        conf.ip6.as_mut().unwrap().gateway = "2001:db8::1".parse().unwrap();
        // run() checks the source against router_ll(): fe80::1 now.
        run(&conf, &client(MessageType::InformationRequest));
        assert_eq!(
            reply(
                &conf,
                GUEST_MAC,
                "ff02::1".parse().unwrap(),
                &[11, 0, 0, 0],
                &mut vec![0; OUT_LEN]
            ),
            Err(Dhcp6Drop::BadSource)
        );
        assert_eq!(
            reply(
                &conf,
                GUEST_MAC,
                Ipv6Addr::UNSPECIFIED,
                &[11, 0, 0, 0],
                &mut vec![0; OUT_LEN]
            ),
            Err(Dhcp6Drop::BadSource)
        );
    }

    #[test]
    fn malformed_messages_are_dropped() {
        let conf = config();
        let cid: &[u8] = &[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
        let msg = |t: u8, opts: &[&[u8]]| -> Vec<u8> {
            let mut m = vec![t, 1, 2, 3];
            for o in opts {
                m.extend_from_slice(o);
            }
            m
        };
        let solicit = |opts: &[&[u8]]| {
            let mut all = vec![cid];
            all.extend_from_slice(opts);
            run_raw(&conf, &msg(msg::SOLICIT, &all))
        };
        let bad = Dhcp6Drop::BadOption;
        assert_eq!(run_raw(&conf, &[]), Err(Dhcp6Drop::Truncated));
        assert_eq!(run_raw(&conf, &[1, 2, 3]), Err(Dhcp6Drop::Truncated));
        assert!(solicit(&[]).unwrap() > 0);
        assert_eq!(solicit(&[&[0, 8, 0]]), Err(Dhcp6Drop::Truncated));
        assert_eq!(solicit(&[&[0, 8, 0, 2, 0]]), Err(Dhcp6Drop::Truncated));
        assert_eq!(
            solicit(&[&[0, 8, 0xff, 0xff, 0, 0]]),
            Err(Dhcp6Drop::Truncated)
        );
        assert_eq!(solicit(&[cid]), Err(bad(1)));
        assert_eq!(solicit(&[&[0, 2, 0, 1, 0]]), Err(bad(2)));
        assert_eq!(
            run_raw(&conf, &msg(msg::SOLICIT, &[&[0, 1, 0, 2, 0, 1]])),
            Err(bad(1))
        );
        assert_eq!(solicit(&[&[0, 14, 0, 1, 0]]), Err(bad(14)));
        assert_eq!(solicit(&[&[0, 14, 0, 0], &[0, 14, 0, 0]]), Err(bad(14)));
        assert_eq!(solicit(&[&[0, 39, 0, 0]]), Err(bad(39)));
        assert_eq!(solicit(&[&[0, 3, 0, 4, 0, 0, 0, 1]]), Err(bad(3)));
        assert_eq!(
            solicit(&[&[0, 25, 0, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]]),
            Err(bad(25))
        );
        assert_eq!(solicit(&[&[0, 4, 0, 3, 0, 0, 0]]), Err(bad(4)));
        let ia: &[u8] = &[0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(solicit(&[ia]).unwrap() > 0);
        assert_eq!(solicit(&[ia, ia]), Err(bad(3)));
        // Same IAID in different IA kinds is fine.
        assert!(solicit(&[ia, &[0, 4, 0, 4, 0, 0, 0, 1]]).unwrap() > 0);
        let many: Vec<Vec<u8>> = (0..=MAX_IAS as u8)
            .map(|i| vec![0, 4, 0, 4, 0, 0, 0, i])
            .collect();
        let many: Vec<&[u8]> = many.iter().map(|v| &v[..]).collect();
        assert_eq!(solicit(&many[..MAX_IAS]).map(|n| n > 0), Ok(true));
        assert_eq!(solicit(&many), Err(Dhcp6Drop::TooManyIas));
        // Nested: a short IA Address, and an option running past its IA.
        let mut short_addr = vec![0, 3, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 4];
        short_addr.extend([0; 4]);
        assert_eq!(solicit(&[&short_addr]), Err(bad(5)));
        let overrun: &[u8] = &[0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 24];
        assert_eq!(solicit(&[overrun]), Err(Dhcp6Drop::Truncated));
    }

    #[test]
    fn huge_configuration_is_cut_not_overflowed() {
        let mut conf = config();
        conf.ip6.as_mut().unwrap().dns = (0..3000u16)
            .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))
            .collect();
        conf.search = (0..2000)
            .map(|i| format!("d{i}.{}.example", "x".repeat(40)))
            .collect();
        let mut out = vec![0; OUT_LEN];
        let m = client(MessageType::InformationRequest).to_vec().unwrap();
        let n = reply(&conf, GUEST_MAC, GUEST_LL, &m, &mut out).unwrap();
        let payload = check_frame(&conf, &out[..n]);
        let r = v6::Message::from_bytes(payload).unwrap();
        // 48000 octets of nameservers fit, the search list then doesn't.
        assert!(r.opts().get(OptionCode::DomainNameServers).is_some());
        assert_eq!(r.opts().get(OptionCode::DomainSearchList), None);
        assert!(raw_option(&r, opt::CLIENT_FQDN).is_some());
    }

    /// Stable stand-in for `fuzz/fuzz_targets/dhcpv6.rs`.
    #[test]
    fn mutation_smoke() {
        let conf = config();
        let mut local = config();
        local.ip6.as_mut().unwrap().addr = Ipv6Addr::UNSPECIFIED;
        let fqdn = DhcpOption::Unknown(v6::UnknownOption::new(OptionCode::ClientFqdn, vec![1, 0]));
        let mut seeds = Vec::new();
        for t in [
            MessageType::Solicit,
            MessageType::Request,
            MessageType::Renew,
            MessageType::Rebind,
            MessageType::Confirm,
            MessageType::Release,
            MessageType::InformationRequest,
        ] {
            let mut m = client(t);
            if matches!(
                t,
                MessageType::Request | MessageType::Renew | MessageType::Release
            ) {
                m = with_server_id(m);
            }
            if t != MessageType::InformationRequest {
                m.opts_mut()
                    .insert(ia_na(IAID, &[ours(), "2001:db8::99".parse().unwrap()]));
                m.opts_mut().insert(DhcpOption::IATA(IATA {
                    id: 2,
                    opts: DhcpOptions::new(),
                }));
            }
            m.opts_mut().insert(DhcpOption::RapidCommit);
            m.opts_mut().insert(DhcpOption::ElapsedTime(0));
            m.opts_mut().insert(fqdn.clone());
            seeds.push(m.to_vec().unwrap());
        }
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut out = vec![0; OUT_LEN];
        let mut sent = 0;
        for i in 0..20_000 {
            let m = rng.mutate(&seeds[i % seeds.len()], HEADER_LEN);
            let conf = if i % 4 == 0 { &local } else { &conf };
            if let Ok(n) = reply(conf, GUEST_MAC, GUEST_LL, &m, &mut out)
                && n > 0
            {
                sent += 1;
                check_frame(conf, &out[..n]);
            }
        }
        assert!(sent > 1000, "only {sent} replies");
    }
}
