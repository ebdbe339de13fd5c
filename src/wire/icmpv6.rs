//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861, RFC 8106): a
//! bounds-checked view, NDP option walking, parsers for the solicitations a
//! guest sends and builders for the advertisements a router answers with.
//!
//! # Theory of operation
//!
//! `Packet` views exactly one ICMPv6 message: the buffer handed to
//! `new_checked` must end where the message ends (the IPv6 upper-layer
//! payload), because its length enters the checksum's pseudo-header.
//!
//! Guest messages are checked in one place: `RouterSolicitRepr::parse` and
//! `NeighborSolicitRepr::parse` apply every validity rule of RFC 4861 6.1.1
//! and 7.1.1 (hop limit, checksum, code, length, options) and return a plain
//! value, or an error meaning "silently discard".
//!
//! Replies are built by `NdpBuilder` straight into a caller-provided buffer
//! (the frame being assembled), without allocating: start with
//! `router_advert` or `neighbor_advert`, append options, then `finish`
//! fills the checksum and returns the message length. An option that does
//! not fit, or is invalid, is refused whole and leaves the message as it
//! was, so the caller may drop just that option or give up.

use super::ipv6::Ipv6Repr;
use super::{Mac, WireError, checksum};
use std::iter::FusedIterator;
use std::net::Ipv6Addr;

/// Length of the ICMPv6 header: type, code, checksum.
pub const HEADER_LEN: usize = 4;
/// Length of a Router Solicitation without options.
pub const ROUTER_SOLICIT_LEN: usize = 8;
/// Length of a Router Advertisement without options.
pub const ROUTER_ADVERT_LEN: usize = 16;
/// Length of a Neighbor Solicitation without options.
pub const NEIGHBOR_SOLICIT_LEN: usize = 24;
/// Length of a Neighbor Advertisement without options.
pub const NEIGHBOR_ADVERT_LEN: usize = 24;
/// Length of a Redirect without options.
pub const REDIRECT_LEN: usize = 40;

/// Hop limit of every Neighbor Discovery message (RFC 4861 6.1.1, 7.1.1).
pub const ND_HOP_LIMIT: u8 = 255;

/// Next Header value of ICMPv6, for the pseudo-header.
const PROTO: u8 = 58;

mod field {
    use std::ops::{Range, RangeFrom};
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const BODY: RangeFrom<usize> = 4..;
    // Echo Request/Reply (RFC 4443 4.1, 4.2).
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQ: Range<usize> = 6..8;
    // Neighbor Solicitation/Advertisement (RFC 4861 4.3, 4.4).
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
    // Router Advertisement (RFC 4861 4.2).
    pub const RA_HOP_LIMIT: usize = 4;
    pub const RA_FLAGS: usize = 5;
    pub const RA_LIFETIME: Range<usize> = 6..8;
    pub const RA_REACHABLE: Range<usize> = 8..12;
    pub const RA_RETRANS: Range<usize> = 12..16;
}

/// ICMPv6 message types, with the ones we don't handle kept as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// 1.
    DstUnreachable,
    /// 2.
    PacketTooBig,
    /// 3.
    TimeExceeded,
    /// 4.
    ParamProblem,
    /// 128.
    EchoRequest,
    /// 129.
    EchoReply,
    /// 133.
    RouterSolicit,
    /// 134.
    RouterAdvert,
    /// 135.
    NeighborSolicit,
    /// 136.
    NeighborAdvert,
    /// 137.
    Redirect,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(v: u8) -> Self {
        match v {
            1 => Message::DstUnreachable,
            2 => Message::PacketTooBig,
            3 => Message::TimeExceeded,
            4 => Message::ParamProblem,
            128 => Message::EchoRequest,
            129 => Message::EchoReply,
            133 => Message::RouterSolicit,
            134 => Message::RouterAdvert,
            135 => Message::NeighborSolicit,
            136 => Message::NeighborAdvert,
            137 => Message::Redirect,
            n => Message::Unknown(n),
        }
    }
}

impl From<Message> for u8 {
    fn from(m: Message) -> u8 {
        match m {
            Message::DstUnreachable => 1,
            Message::PacketTooBig => 2,
            Message::TimeExceeded => 3,
            Message::ParamProblem => 4,
            Message::EchoRequest => 128,
            Message::EchoReply => 129,
            Message::RouterSolicit => 133,
            Message::RouterAdvert => 134,
            Message::NeighborSolicit => 135,
            Message::NeighborAdvert => 136,
            Message::Redirect => 137,
            Message::Unknown(n) => n,
        }
    }
}

impl Message {
    /// Where NDP options start in this message type; `None` if not NDP.
    pub fn ndp_options_offset(self) -> Option<usize> {
        match self {
            Message::RouterSolicit => Some(ROUTER_SOLICIT_LEN),
            Message::RouterAdvert => Some(ROUTER_ADVERT_LEN),
            Message::NeighborSolicit => Some(NEIGHBOR_SOLICIT_LEN),
            Message::NeighborAdvert => Some(NEIGHBOR_ADVERT_LEN),
            Message::Redirect => Some(REDIRECT_LEN),
            _ => None,
        }
    }
}

/// A view of an ICMPv6 message.
#[derive(Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap a buffer without checking it; only for buffers we size ourselves.
    pub fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wrap a buffer holding exactly one message, checking that it holds
    /// the 4-byte header. Afterwards no accessor can panic.
    ///
    /// # Errors
    /// `Truncated` if the buffer is shorter than 4 bytes.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Packet { buffer })
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::CHECKSUM.start], b[field::CHECKSUM.start + 1]])
    }

    /// Message body: everything after the checksum.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY]
    }

    /// Identifier and sequence number of an Echo Request or Reply; `None`
    /// for other types or a body shorter than 4 bytes.
    pub fn echo_ident_seq(&self) -> Option<(u16, u16)> {
        if !matches!(self.msg_type(), Message::EchoRequest | Message::EchoReply) {
            return None;
        }
        let b = self.buffer.as_ref().get(..field::ECHO_SEQ.end)?;
        let ident =
            u16::from_be_bytes([b[field::ECHO_IDENT.start], b[field::ECHO_IDENT.start + 1]]);
        let seq = u16::from_be_bytes([b[field::ECHO_SEQ.start], b[field::ECHO_SEQ.start + 1]]);
        Some((ident, seq))
    }

    /// The NDP options of a Neighbor Discovery message.
    ///
    /// # Errors
    /// `Malformed` if this is not an NDP message type; `Truncated` if the
    /// message is shorter than its fixed part.
    pub fn ndp_options(&self) -> Result<NdpOptions<'_>, WireError> {
        let at = self
            .msg_type()
            .ndp_options_offset()
            .ok_or(WireError::Malformed)?;
        let opts = self.buffer.as_ref().get(at..).ok_or(WireError::Truncated)?;
        Ok(NdpOptions::new(opts))
    }

    /// True if the checksum is correct for a message from `src` to `dst`.
    ///
    /// RFC 4443 2.3: the checksum covers the pseudo-header, so a message
    /// is only valid between the addresses it was computed for.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let pseudo = checksum::pseudo_v6(src, dst, PROTO, msg_len(b));
        checksum::fold(checksum::sum(b, pseudo)) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the message type.
    pub fn set_msg_type(&mut self, t: Message) {
        self.buffer.as_mut()[field::TYPE] = u8::from(t);
    }

    /// Set the code.
    pub fn set_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    /// Set the checksum field as is (see `fill_checksum`).
    pub fn set_checksum(&mut self, sum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
    }

    /// Message body, writable.
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY]
    }

    /// Compute and store the checksum for a message from `src` to `dst`;
    /// the buffer must end where the message ends.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let pseudo = checksum::pseudo_v6(src, dst, PROTO, msg_len(b));
        let sum = checksum::fold(checksum::sum(b, pseudo));
        self.set_checksum(sum);
    }
}

/// Length of a message for the pseudo-header.
///
/// Guest messages are bounded by the IPv6 Payload Length (16 bits) and
/// ours by the frame buffer, so the value always fits.
fn msg_len(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap_or(u32::MAX)
}

/// NDP option types (RFC 4861 4.6, RFC 8106 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpOptionType {
    /// 1.
    SourceLinkAddr,
    /// 2.
    TargetLinkAddr,
    /// 3.
    PrefixInfo,
    /// 4.
    RedirectedHeader,
    /// 5.
    Mtu,
    /// 25: Recursive DNS Server.
    Rdnss,
    /// 31: DNS Search List.
    Dnssl,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for NdpOptionType {
    fn from(v: u8) -> Self {
        match v {
            1 => NdpOptionType::SourceLinkAddr,
            2 => NdpOptionType::TargetLinkAddr,
            3 => NdpOptionType::PrefixInfo,
            4 => NdpOptionType::RedirectedHeader,
            5 => NdpOptionType::Mtu,
            25 => NdpOptionType::Rdnss,
            31 => NdpOptionType::Dnssl,
            n => NdpOptionType::Unknown(n),
        }
    }
}

impl From<NdpOptionType> for u8 {
    fn from(t: NdpOptionType) -> u8 {
        match t {
            NdpOptionType::SourceLinkAddr => 1,
            NdpOptionType::TargetLinkAddr => 2,
            NdpOptionType::PrefixInfo => 3,
            NdpOptionType::RedirectedHeader => 4,
            NdpOptionType::Mtu => 5,
            NdpOptionType::Rdnss => 25,
            NdpOptionType::Dnssl => 31,
            NdpOptionType::Unknown(n) => n,
        }
    }
}

/// Iterator over NDP options: yields each option's type and the bytes after
/// its type and length octets.
///
/// A bad option yields one `Err` and ends the walk. RFC 4861 4.6: "Nodes
/// MUST silently discard an ND packet that contains an option with length
/// zero", so callers must discard the whole message on any `Err`, not just
/// skip the option.
#[derive(Debug, Clone)]
pub struct NdpOptions<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> NdpOptions<'a> {
    /// Walk the options in `data` (the message after its fixed part).
    pub fn new(data: &'a [u8]) -> Self {
        NdpOptions {
            rest: data,
            failed: false,
        }
    }

    /// Check every option without looking at them.
    ///
    /// # Errors
    /// The first error the walk meets.
    pub fn validate(self) -> Result<(), WireError> {
        for opt in self {
            opt?;
        }
        Ok(())
    }
}

impl<'a> Iterator for NdpOptions<'a> {
    type Item = Result<(NdpOptionType, &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let Some(&len_units) = self.rest.get(1) else {
            self.failed = true;
            return Some(Err(WireError::Truncated));
        };
        // RFC 4861 4.6: "Length: The length of the option (including the
        // type and length fields) in units of 8 octets. The value 0 is
        // invalid."
        let len = usize::from(len_units) * 8;
        if len == 0 {
            self.failed = true;
            return Some(Err(WireError::Malformed));
        }
        if len > self.rest.len() {
            self.failed = true;
            return Some(Err(WireError::Truncated));
        }
        let (opt, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Ok((NdpOptionType::from(opt[0]), &opt[2..])))
    }
}

impl FusedIterator for NdpOptions<'_> {}

/// Checks shared by every ND message from the guest (RFC 4861 6.1.1, 7.1.1).
fn check_nd<T: AsRef<[u8]>>(
    packet: &Packet<T>,
    ip: &Ipv6Repr,
    want: Message,
    min_len: usize,
) -> Result<(), WireError> {
    let b = packet.buffer.as_ref();
    if b.len() < min_len {
        return Err(WireError::Truncated);
    }
    if packet.msg_type() != want {
        return Err(WireError::Malformed);
    }
    // "The IP Hop Limit field has a value of 255, i.e., the packet could
    // not possibly have been forwarded by a router."
    if ip.hop_limit != ND_HOP_LIMIT {
        return Err(WireError::Malformed);
    }
    // "ICMP Checksum is valid." "ICMP Code is 0."
    if !packet.verify_checksum(ip.src, ip.dst) || packet.code() != 0 {
        return Err(WireError::Malformed);
    }
    Ok(())
}

/// Walk all options (so a bad one anywhere rejects the message) and return
/// the first Ethernet link-layer address option of type `want`.
fn link_addr_option(opts: NdpOptions<'_>, want: NdpOptionType) -> Result<Option<Mac>, WireError> {
    let mut found = None;
    for opt in opts {
        let (kind, data) = opt?;
        if kind != want || found.is_some() {
            continue;
        }
        // RFC 2464 6: over Ethernet the option is 8 octets long, a 6-octet
        // address after type and length.
        let mac: [u8; 6] = data.try_into().map_err(|_| WireError::Malformed)?;
        found = Some(Mac(mac));
    }
    Ok(found)
}

/// A validated Router Solicitation (RFC 4861 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterSolicitRepr {
    /// Source Link-Layer Address option, if present.
    pub source_mac: Option<Mac>,
}

impl RouterSolicitRepr {
    /// Validate a Router Solicitation carried in the IPv6 packet `ip`.
    ///
    /// # Errors
    /// Any failed RFC 4861 6.1.1 check (the message must be dropped):
    /// `Truncated` for a message or option running short, `Malformed` for
    /// anything else.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>, ip: &Ipv6Repr) -> Result<Self, WireError> {
        check_nd(packet, ip, Message::RouterSolicit, ROUTER_SOLICIT_LEN)?;
        let source_mac = link_addr_option(packet.ndp_options()?, NdpOptionType::SourceLinkAddr)?;
        // RFC 4861 6.1.1: "If the IP source address is the unspecified
        // address, there is no source link-layer address option in the
        // message."
        if ip.src.is_unspecified() && source_mac.is_some() {
            return Err(WireError::Malformed);
        }
        Ok(RouterSolicitRepr { source_mac })
    }
}

/// A validated Neighbor Solicitation (RFC 4861 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicitRepr {
    /// The address being resolved (or checked, for duplicate detection).
    pub target: Ipv6Addr,
    /// Source Link-Layer Address option, if present.
    pub source_mac: Option<Mac>,
}

impl NeighborSolicitRepr {
    /// Validate a Neighbor Solicitation carried in the IPv6 packet `ip`.
    ///
    /// A duplicate address detection probe (source `::`) parses fine; what
    /// to answer is the handler's business.
    ///
    /// # Errors
    /// Any failed RFC 4861 7.1.1 check (the message must be dropped):
    /// `Truncated` for a message or option running short, `Malformed` for
    /// anything else.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>, ip: &Ipv6Repr) -> Result<Self, WireError> {
        check_nd(packet, ip, Message::NeighborSolicit, NEIGHBOR_SOLICIT_LEN)?;
        let b = packet.buffer.as_ref();
        let mut t = [0u8; 16];
        t.copy_from_slice(&b[field::TARGET]);
        let target = Ipv6Addr::from(t);
        // RFC 4861 7.1.1: "Target Address is not a multicast address."
        if target.is_multicast() {
            return Err(WireError::Malformed);
        }
        let source_mac = link_addr_option(packet.ndp_options()?, NdpOptionType::SourceLinkAddr)?;
        // RFC 4861 7.1.1: "If the IP source address is the unspecified
        // address, the IP destination address is a solicited-node
        // multicast address" and "there is no source link-layer address
        // option in the message."
        if ip.src.is_unspecified() && (!is_solicited_node(ip.dst) || source_mac.is_some()) {
            return Err(WireError::Malformed);
        }
        Ok(NeighborSolicitRepr { target, source_mac })
    }
}

/// True for a solicited-node multicast address, ff02::1:ff00:0/104
/// (RFC 4291 2.7.1).
pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    let o = addr.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// Fixed fields of a Router Advertisement (RFC 4861 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterAdvertRepr {
    /// Cur Hop Limit for the guest's packets; 0 means unspecified.
    pub cur_hop_limit: u8,
    /// M flag: addresses are available via DHCPv6.
    pub managed: bool,
    /// O flag: other configuration is available via DHCPv6.
    pub other: bool,
    /// Router Lifetime in seconds; 0 means "not a default router".
    pub router_lifetime: u16,
    /// Reachable Time in milliseconds; 0 means unspecified.
    pub reachable_time: u32,
    /// Retrans Timer in milliseconds; 0 means unspecified.
    pub retrans_timer: u32,
}

/// Fixed fields of a Neighbor Advertisement (RFC 4861 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborAdvertRepr {
    /// R flag: the sender is a router.
    pub router: bool,
    /// S flag: sent in response to a Neighbor Solicitation.
    pub solicited: bool,
    /// O flag: override an existing cache entry.
    pub override_: bool,
    /// The address whose link-layer address is advertised.
    pub target: Ipv6Addr,
}

/// Contents of a Prefix Information option (RFC 4861 4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    /// Number of leading bits of `prefix` that are valid.
    pub prefix_len: u8,
    /// L flag: the prefix is on-link.
    pub on_link: bool,
    /// A flag: usable for stateless address autoconfiguration (RFC 4862).
    pub autonomous: bool,
    /// Valid Lifetime in seconds; all ones is infinity.
    pub valid_lifetime: u32,
    /// Preferred Lifetime in seconds; all ones is infinity.
    pub preferred_lifetime: u32,
    /// The prefix; bits past `prefix_len` should be zero.
    pub prefix: Ipv6Addr,
}

/// Most addresses in one RDNSS option: its Length octet is 1 + 2 × N.
pub const RDNSS_MAX_ADDRS: usize = 127;

/// Writes a Router or Neighbor Advertisement, options included, into a
/// caller-provided buffer.
///
/// # Errors
/// Every method returns `Truncated` when the buffer has no room left and
/// `Malformed` when its input can't be encoded; in both cases nothing is
/// written.
#[derive(Debug)]
pub struct NdpBuilder<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> NdpBuilder<'a> {
    /// Start a Router Advertisement at the start of `buf`.
    ///
    /// # Errors
    /// `Truncated` if `buf` is shorter than 16 bytes.
    pub fn router_advert(buf: &'a mut [u8], ra: &RouterAdvertRepr) -> Result<Self, WireError> {
        let b = buf
            .get_mut(..ROUTER_ADVERT_LEN)
            .ok_or(WireError::Truncated)?;
        b.fill(0);
        b[field::TYPE] = u8::from(Message::RouterAdvert);
        b[field::RA_HOP_LIMIT] = ra.cur_hop_limit;
        b[field::RA_FLAGS] = flag(ra.managed, 0x80) | flag(ra.other, 0x40);
        b[field::RA_LIFETIME].copy_from_slice(&ra.router_lifetime.to_be_bytes());
        b[field::RA_REACHABLE].copy_from_slice(&ra.reachable_time.to_be_bytes());
        b[field::RA_RETRANS].copy_from_slice(&ra.retrans_timer.to_be_bytes());
        Ok(NdpBuilder {
            buf,
            len: ROUTER_ADVERT_LEN,
        })
    }

    /// Start a Neighbor Advertisement at the start of `buf`.
    ///
    /// # Errors
    /// `Truncated` if `buf` is shorter than 24 bytes.
    pub fn neighbor_advert(buf: &'a mut [u8], na: &NeighborAdvertRepr) -> Result<Self, WireError> {
        let b = buf
            .get_mut(..NEIGHBOR_ADVERT_LEN)
            .ok_or(WireError::Truncated)?;
        b.fill(0);
        b[field::TYPE] = u8::from(Message::NeighborAdvert);
        b[field::NA_FLAGS] =
            flag(na.router, 0x80) | flag(na.solicited, 0x40) | flag(na.override_, 0x20);
        b[field::TARGET].copy_from_slice(&na.target.octets());
        Ok(NdpBuilder {
            buf,
            len: NEIGHBOR_ADVERT_LEN,
        })
    }

    /// Append a Source Link-Layer Address option (type 1, RFC 4861 4.6.1).
    ///
    /// # Errors
    /// `Truncated` if it doesn't fit.
    pub fn source_link_addr(&mut self, mac: Mac) -> Result<&mut Self, WireError> {
        self.option(NdpOptionType::SourceLinkAddr, 8)?
            .copy_from_slice(&mac.0);
        Ok(self)
    }

    /// Append a Target Link-Layer Address option (type 2, RFC 4861 4.6.1).
    ///
    /// # Errors
    /// `Truncated` if it doesn't fit.
    pub fn target_link_addr(&mut self, mac: Mac) -> Result<&mut Self, WireError> {
        self.option(NdpOptionType::TargetLinkAddr, 8)?
            .copy_from_slice(&mac.0);
        Ok(self)
    }

    /// Append a Prefix Information option (type 3, RFC 4861 4.6.2).
    ///
    /// # Errors
    /// `Malformed` if `prefix_len` is over 128; `Truncated` if it doesn't fit.
    pub fn prefix_info(&mut self, p: &PrefixInfo) -> Result<&mut Self, WireError> {
        if p.prefix_len > 128 {
            return Err(WireError::Malformed);
        }
        let d = self.option(NdpOptionType::PrefixInfo, 32)?;
        d[0] = p.prefix_len;
        d[1] = flag(p.on_link, 0x80) | flag(p.autonomous, 0x40);
        d[2..6].copy_from_slice(&p.valid_lifetime.to_be_bytes());
        d[6..10].copy_from_slice(&p.preferred_lifetime.to_be_bytes());
        // d[10..14]: Reserved2, left zero.
        d[14..30].copy_from_slice(&p.prefix.octets());
        Ok(self)
    }

    /// Append an MTU option (type 5, RFC 4861 4.6.4).
    ///
    /// # Errors
    /// `Truncated` if it doesn't fit.
    pub fn mtu(&mut self, mtu: u32) -> Result<&mut Self, WireError> {
        let d = self.option(NdpOptionType::Mtu, 8)?;
        d[2..6].copy_from_slice(&mtu.to_be_bytes());
        Ok(self)
    }

    /// Append a Recursive DNS Server option (type 25, RFC 8106 5.1).
    ///
    /// `lifetime` is in seconds (RFC 8106 5.1: all ones is infinity, 0
    /// withdraws the servers).
    ///
    /// # Errors
    /// `Malformed` for no servers or more than `RDNSS_MAX_ADDRS`;
    /// `Truncated` if it doesn't fit.
    pub fn rdnss(&mut self, lifetime: u32, servers: &[Ipv6Addr]) -> Result<&mut Self, WireError> {
        // RFC 8106 5.1: "The minimum value is 3 if one IPv6 address is
        // contained in the option."
        if servers.is_empty() || servers.len() > RDNSS_MAX_ADDRS {
            return Err(WireError::Malformed);
        }
        let d = self.option(NdpOptionType::Rdnss, 8 + 16 * servers.len())?;
        d[2..6].copy_from_slice(&lifetime.to_be_bytes());
        for (slot, s) in d[6..].chunks_exact_mut(16).zip(servers) {
            slot.copy_from_slice(&s.octets());
        }
        Ok(self)
    }

    /// Append a DNS Search List option (type 31, RFC 8106 5.2).
    ///
    /// Names are given in text form ("example.com", a trailing dot is
    /// allowed) and written uncompressed in DNS wire format.
    ///
    /// # Errors
    /// `Malformed` for an empty list, an empty name or label, a label over
    /// 63 octets, a name over 255 octets, or a list that overflows the
    /// option's 2040 octets; `Truncated` if it doesn't fit.
    pub fn dnssl<S: AsRef<str>>(
        &mut self,
        lifetime: u32,
        names: &[S],
    ) -> Result<&mut Self, WireError> {
        if names.is_empty() {
            return Err(WireError::Malformed);
        }
        let mut names_len = 0usize;
        for n in names {
            names_len += dns_name_len(n.as_ref())?;
        }
        // RFC 8106 5.2: "the remaining octets other than the encoding parts
        // of the domain name representations MUST be padded with zeros", up
        // to a multiple of 8 octets.
        let opt_len = (8 + names_len).div_ceil(8) * 8;
        if opt_len > 255 * 8 {
            return Err(WireError::Malformed);
        }
        let d = self.option(NdpOptionType::Dnssl, opt_len)?;
        d[2..6].copy_from_slice(&lifetime.to_be_bytes());
        let mut at = 6;
        for n in names {
            at += write_dns_name(n.as_ref(), &mut d[at..]);
        }
        Ok(self)
    }

    /// Fill the checksum for a message from `src` to `dst` and return its
    /// length: the bytes of `buf` that make up the message.
    pub fn finish(self, src: Ipv6Addr, dst: Ipv6Addr) -> usize {
        let buf = self.buf;
        let mut p = Packet::new_unchecked(&mut buf[..self.len]);
        p.fill_checksum(src, dst);
        self.len
    }

    /// Reserve a zeroed option of `len` bytes (a multiple of 8, at most
    /// 2040), write its type and length, and return the bytes after them.
    fn option(&mut self, kind: NdpOptionType, len: usize) -> Result<&mut [u8], WireError> {
        let units = u8::try_from(len / 8).map_err(|_| WireError::Malformed)?;
        if !len.is_multiple_of(8) || units == 0 {
            return Err(WireError::Malformed);
        }
        let start = self.len;
        let end = start + len;
        let o = self.buf.get_mut(start..end).ok_or(WireError::Truncated)?;
        self.len = end;
        o.fill(0);
        o[0] = u8::from(kind);
        o[1] = units;
        Ok(&mut o[2..])
    }
}

/// Octets `name` takes in DNS wire format (RFC 1035 3.1), after checking it.
///
/// Public so that callers can drop names `NdpBuilder::dnssl` would refuse,
/// and split a long list over several options, before building.
///
/// # Errors
/// `Malformed` for an empty name or label, a label over 63 octets or a
/// name over 255 octets.
pub fn dns_name_len(name: &str) -> Result<usize, WireError> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(WireError::Malformed);
    }
    let mut len = 1; // the root label's zero octet
    for label in name.split('.') {
        // RFC 1035 2.3.4: "labels 63 octets or less".
        if label.is_empty() || label.len() > 63 {
            return Err(WireError::Malformed);
        }
        len += 1 + label.len();
    }
    // RFC 1035 2.3.4: "names 255 octets or less".
    if len > 255 {
        return Err(WireError::Malformed);
    }
    Ok(len)
}

/// Write a name checked by `dns_name_len` into `out`; return octets written.
fn write_dns_name(name: &str, out: &mut [u8]) -> usize {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut at = 0;
    for label in name.split('.') {
        // Checked: 1 to 63 octets.
        out[at] = label.len() as u8;
        out[at + 1..at + 1 + label.len()].copy_from_slice(label.as_bytes());
        at += 1 + label.len();
    }
    out[at] = 0;
    at + 1
}

fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::IpProtocol;

    const OUR_MAC: Mac = Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]);
    const GUEST_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const GUEST: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
    const SOLICITED: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);

    /// Echo Request fe80::2 → fe80::1, ident 0x1234, seq 1, "ping".
    static ECHO: [u8; 12] = [
        0x80, 0x00, 0x91, 0xae, 0x12, 0x34, 0x00, 0x01, 0x70, 0x69, 0x6e, 0x67,
    ];

    /// Router Solicitation fe80::2 → ff02::2 with a source link-layer option.
    static RS: [u8; 16] = [
        0x85, 0x00, 0x7a, 0x2b, 0x00, 0x00, 0x00, 0x00, // type, code, sum, reserved
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // SLLA
    ];

    /// Neighbor Solicitation fe80::2 → ff02::1:ff00:1 for fe80::1.
    static NS: [u8; 32] = [
        0x87, 0x00, 0x7a, 0x98, 0x00, 0x00, 0x00, 0x00, // type, code, sum, reserved
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // target
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // SLLA
    ];

    /// Neighbor Advertisement fe80::1 → fe80::2: R, S, O, target fe80::1.
    static NA: [u8; 32] = [
        0x88, 0x00, 0xcb, 0x1b, 0xe0, 0x00, 0x00, 0x00, // type, code, sum, flags
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // target
        0x02, 0x01, 0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55, // TLLA
    ];

    /// Router Advertisement fe80::1 → ff02::1, with every option we emit.
    static RA: [u8; 112] = [
        0x86, 0x00, 0xbb, 0x70, // type, code, sum
        0x40, 0x40, 0x07, 0x08, // hop limit 64, O, lifetime 1800
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reachable, retrans
        0x01, 0x01, 0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55, // SLLA
        0x03, 0x04, 0x40, 0xc0, 0xff, 0xff, 0xff, 0xff, // prefix info: /64, L, A
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, //
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 2001:db8::
        0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0xff, 0xf0, // MTU 65520
        0x19, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, // RDNSS, 60 s
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
        0x1f, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, // DNSSL, 60 s
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // example
        0x03, b'c', b'o', b'm', 0x00, 0x00, 0x00, 0x00, // com, root, padding
    ];

    fn ip(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src,
            dst,
            next_header: IpProtocol::Icmpv6,
            payload_len: len,
            hop_limit: ND_HOP_LIMIT,
        }
    }

    fn ra_repr() -> RouterAdvertRepr {
        RouterAdvertRepr {
            cur_hop_limit: 64,
            managed: false,
            other: true,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
        }
    }

    fn prefix() -> PrefixInfo {
        PrefixInfo {
            prefix_len: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: u32::MAX,
            preferred_lifetime: u32::MAX,
            prefix: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        }
    }

    fn dns() -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)
    }

    /// Rewrite the checksum of a modified message for `src` → `dst`.
    fn refill(b: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        Packet::new_unchecked(b).fill_checksum(src, dst);
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!(p.code(), 0);
        assert_eq!(p.checksum(), 0x91ae);
        assert_eq!(p.body(), &ECHO[4..]);
        assert_eq!(p.echo_ident_seq(), Some((0x1234, 1)));
        assert!(p.verify_checksum(GUEST, ROUTER));
        assert!(!p.verify_checksum(GUEST, ALL_NODES));
        assert_eq!(p.ndp_options().unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn construct() {
        let mut b = [0xa5u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(Message::EchoRequest);
        p.set_code(0);
        p.body_mut()
            .copy_from_slice(&[0x12, 0x34, 0x00, 0x01, b'p', b'i', b'n', b'g']);
        p.fill_checksum(GUEST, ROUTER);
        assert_eq!(b, ECHO);
    }

    #[test]
    fn bad_length() {
        assert_eq!(
            Packet::new_checked(&ECHO[..3]).unwrap_err(),
            WireError::Truncated
        );
        let p = Packet::new_checked(&ECHO[..6]).unwrap();
        assert_eq!(p.echo_ident_seq(), None);
        let p = Packet::new_checked(&RS[..4]).unwrap();
        assert_eq!(p.ndp_options().unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn bad_checksum() {
        let mut b = ECHO;
        b[11] ^= 0x20;
        assert!(
            !Packet::new_checked(&b[..])
                .unwrap()
                .verify_checksum(GUEST, ROUTER)
        );
    }

    #[test]
    fn message_roundtrip() {
        for n in 0..=u8::MAX {
            assert_eq!(u8::from(Message::from(n)), n);
            assert_eq!(u8::from(NdpOptionType::from(n)), n);
        }
    }

    // NDP options

    #[test]
    fn options_walk() {
        let p = Packet::new_checked(&RA[..]).unwrap();
        let opts: Vec<_> = p.ndp_options().unwrap().map(Result::unwrap).collect();
        let kinds: Vec<_> = opts.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                NdpOptionType::SourceLinkAddr,
                NdpOptionType::PrefixInfo,
                NdpOptionType::Mtu,
                NdpOptionType::Rdnss,
                NdpOptionType::Dnssl,
            ]
        );
        assert_eq!(opts[0].1, &OUR_MAC.0);
        assert_eq!(opts[2].1, &[0, 0, 0, 0, 0xff, 0xf0]);
        assert_eq!(opts[3].1.len(), 22);
    }

    #[test]
    fn options_zero_length() {
        let data = [1, 1, 2, 0, 0, 0, 0, 1, 14, 0, 0, 0, 0, 0, 0, 0];
        let mut it = NdpOptions::new(&data);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next(), Some(Err(WireError::Malformed)));
        assert_eq!(it.next(), None);
        assert_eq!(NdpOptions::new(&data).validate(), Err(WireError::Malformed));
    }

    #[test]
    fn options_overrun() {
        // Claims 16 bytes, 8 present.
        let data = [1, 2, 2, 0, 0, 0, 0, 1];
        let mut it = NdpOptions::new(&data);
        assert_eq!(it.next(), Some(Err(WireError::Truncated)));
        assert_eq!(it.next(), None);
        // A lone type byte.
        assert_eq!(NdpOptions::new(&[1]).validate(), Err(WireError::Truncated));
        assert_eq!(NdpOptions::new(&[]).validate(), Ok(()));
    }

    // Router Solicitation

    #[test]
    fn rs_parse() {
        let p = Packet::new_checked(&RS[..]).unwrap();
        let r = RouterSolicitRepr::parse(&p, &ip(GUEST, ALL_ROUTERS, 16)).unwrap();
        assert_eq!(r.source_mac, Some(GUEST_MAC));
    }

    #[test]
    fn rs_without_option() {
        let mut b = [0u8; 8];
        b.copy_from_slice(&RS[..8]);
        refill(&mut b, Ipv6Addr::UNSPECIFIED, ALL_ROUTERS);
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = RouterSolicitRepr::parse(&p, &ip(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS, 8));
        assert_eq!(r, Ok(RouterSolicitRepr { source_mac: None }));
    }

    #[test]
    fn rs_rejects() {
        let ok = ip(GUEST, ALL_ROUTERS, 16);
        let parse = |b: &[u8], ip: &Ipv6Repr| {
            RouterSolicitRepr::parse(&Packet::new_checked(b).unwrap(), ip)
        };
        // Forwarded: hop limit below 255.
        let mut forwarded = ok;
        forwarded.hop_limit = 64;
        assert_eq!(parse(&RS, &forwarded), Err(WireError::Malformed));
        // Checksum for other addresses.
        assert_eq!(
            parse(&RS, &ip(GUEST, ALL_NODES, 16)),
            Err(WireError::Malformed)
        );
        // Non-zero code.
        let mut b = RS;
        b[1] = 1;
        refill(&mut b, GUEST, ALL_ROUTERS);
        assert_eq!(parse(&b, &ok), Err(WireError::Malformed));
        // Too short.
        let mut b = [0u8; 6];
        b.copy_from_slice(&RS[..6]);
        refill(&mut b, GUEST, ALL_ROUTERS);
        assert_eq!(parse(&b, &ok), Err(WireError::Truncated));
        // Zero-length option.
        let mut b = RS;
        b[9] = 0;
        refill(&mut b, GUEST, ALL_ROUTERS);
        assert_eq!(parse(&b, &ok), Err(WireError::Malformed));
        // Link-layer option of the wrong size (16 bytes).
        let mut b = [0u8; 24];
        b[..16].copy_from_slice(&RS);
        b[9] = 2;
        refill(&mut b, GUEST, ALL_ROUTERS);
        assert_eq!(parse(&b, &ok), Err(WireError::Malformed));
        // Unspecified source with a link-layer option.
        let mut b = RS;
        refill(&mut b, Ipv6Addr::UNSPECIFIED, ALL_ROUTERS);
        let dad = ip(Ipv6Addr::UNSPECIFIED, ALL_ROUTERS, 16);
        assert_eq!(parse(&b, &dad), Err(WireError::Malformed));
        // Not an RS at all.
        assert_eq!(parse(&NS, &ok), Err(WireError::Malformed));
    }

    // Neighbor Solicitation

    #[test]
    fn ns_parse() {
        let p = Packet::new_checked(&NS[..]).unwrap();
        let r = NeighborSolicitRepr::parse(&p, &ip(GUEST, SOLICITED, 32)).unwrap();
        assert_eq!(
            r,
            NeighborSolicitRepr {
                target: ROUTER,
                source_mac: Some(GUEST_MAC),
            }
        );
    }

    #[test]
    fn ns_dad() {
        // Duplicate address detection: from ::, no option, to solicited-node.
        let mut b = [0u8; 24];
        b.copy_from_slice(&NS[..24]);
        refill(&mut b, Ipv6Addr::UNSPECIFIED, SOLICITED);
        let p = Packet::new_checked(&b[..]).unwrap();
        let dad = ip(Ipv6Addr::UNSPECIFIED, SOLICITED, 24);
        let r = NeighborSolicitRepr::parse(&p, &dad).unwrap();
        assert_eq!(r.target, ROUTER);
        assert_eq!(r.source_mac, None);
        // From :: to a unicast address: invalid.
        refill(&mut b, Ipv6Addr::UNSPECIFIED, ROUTER);
        let p = Packet::new_checked(&b[..]).unwrap();
        let bad = ip(Ipv6Addr::UNSPECIFIED, ROUTER, 24);
        assert_eq!(
            NeighborSolicitRepr::parse(&p, &bad),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn ns_rejects() {
        let ok = ip(GUEST, SOLICITED, 32);
        let parse = |b: &[u8], ip: &Ipv6Repr| {
            NeighborSolicitRepr::parse(&Packet::new_checked(b).unwrap(), ip)
        };
        // Multicast target.
        let mut b = NS;
        b[8..24].copy_from_slice(&ALL_NODES.octets());
        refill(&mut b, GUEST, SOLICITED);
        assert_eq!(parse(&b, &ok), Err(WireError::Malformed));
        // Too short for the target.
        let mut b = [0u8; 20];
        b.copy_from_slice(&NS[..20]);
        refill(&mut b, GUEST, SOLICITED);
        assert_eq!(parse(&b, &ok), Err(WireError::Truncated));
        // Option overrun.
        let mut b = NS;
        b[25] = 2;
        refill(&mut b, GUEST, SOLICITED);
        assert_eq!(parse(&b, &ok), Err(WireError::Truncated));
        // Bad checksum.
        let mut b = NS;
        b[31] ^= 1;
        assert_eq!(parse(&b, &ok), Err(WireError::Malformed));
        // Hop limit.
        let mut forwarded = ok;
        forwarded.hop_limit = 254;
        assert_eq!(parse(&NS, &forwarded), Err(WireError::Malformed));
    }

    #[test]
    fn solicited_node() {
        assert!(is_solicited_node(SOLICITED));
        assert!(!is_solicited_node(ALL_NODES));
        assert!(!is_solicited_node(GUEST));
    }

    // Builders

    #[test]
    fn ra_emit() {
        let mut b = [0xa5u8; 200];
        let mut ra = NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap();
        ra.source_link_addr(OUR_MAC)
            .unwrap()
            .prefix_info(&prefix())
            .unwrap()
            .mtu(65520)
            .unwrap()
            .rdnss(60, &[dns()])
            .unwrap()
            .dnssl(60, &["example.com."])
            .unwrap();
        let len = ra.finish(ROUTER, ALL_NODES);
        assert_eq!(len, RA.len());
        assert_eq!(&b[..len], &RA[..]);
        assert!(b[len..].iter().all(|&x| x == 0xa5));
    }

    #[test]
    fn ra_parse_back() {
        let p = Packet::new_checked(&RA[..]).unwrap();
        assert_eq!(p.msg_type(), Message::RouterAdvert);
        assert!(p.verify_checksum(ROUTER, ALL_NODES));
        assert_eq!(p.ndp_options().unwrap().validate(), Ok(()));
    }

    #[test]
    fn ra_too_small() {
        let mut b = [0u8; 15];
        assert_eq!(
            NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap_err(),
            WireError::Truncated
        );
        // Room for the header and SLLA only: the prefix is refused whole.
        let mut b = [0u8; 24];
        let mut ra = NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap();
        ra.source_link_addr(OUR_MAC).unwrap();
        assert_eq!(ra.prefix_info(&prefix()).unwrap_err(), WireError::Truncated);
        assert_eq!(ra.mtu(1500).unwrap_err(), WireError::Truncated);
        assert_eq!(ra.finish(ROUTER, ALL_NODES), 24);
        let mut expect = [0u8; 24];
        expect.copy_from_slice(&RA[..24]);
        refill(&mut expect, ROUTER, ALL_NODES);
        assert_eq!(b, expect);
    }

    #[test]
    fn na_emit() {
        let mut b = [0u8; 64];
        let na = NeighborAdvertRepr {
            router: true,
            solicited: true,
            override_: true,
            target: ROUTER,
        };
        let mut w = NdpBuilder::neighbor_advert(&mut b, &na).unwrap();
        w.target_link_addr(OUR_MAC).unwrap();
        let len = w.finish(ROUTER, GUEST);
        assert_eq!(&b[..len], &NA[..]);

        let mut small = [0u8; 23];
        assert_eq!(
            NdpBuilder::neighbor_advert(&mut small, &na).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn na_flags() {
        let mut b = [0u8; 24];
        let na = NeighborAdvertRepr {
            router: false,
            solicited: true,
            override_: false,
            target: ROUTER,
        };
        NdpBuilder::neighbor_advert(&mut b, &na)
            .unwrap()
            .finish(ROUTER, GUEST);
        assert_eq!(b[4], 0x40);
    }

    #[test]
    fn rdnss_limits() {
        let mut b = [0u8; 4096];
        let mut ra = NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap();
        assert_eq!(ra.rdnss(60, &[]).unwrap_err(), WireError::Malformed);
        let many = [dns(); RDNSS_MAX_ADDRS + 1];
        assert_eq!(ra.rdnss(60, &many).unwrap_err(), WireError::Malformed);
        ra.rdnss(60, &many[..RDNSS_MAX_ADDRS]).unwrap();
        let len = ra.finish(ROUTER, ALL_NODES);
        assert_eq!(len, 16 + 8 + 16 * RDNSS_MAX_ADDRS);
        assert_eq!(b[17], 255);
    }

    #[test]
    fn dnssl_encoding() {
        let mut b = [0u8; 64];
        let mut ra = NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap();
        ra.dnssl(0xffff_ffff, &["a.b", "c"]).unwrap();
        let len = ra.finish(ROUTER, ALL_NODES);
        // 8 + (1+1+1+1+1) + (1+1+1) = 16: no padding needed.
        assert_eq!(len, 16 + 16);
        assert_eq!(
            &b[16..32],
            &[
                31, 2, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, b'a', 1, b'b', 0, 1, b'c', 0
            ]
        );
    }

    #[test]
    fn dnssl_rejects() {
        let mut b = [0u8; 4096];
        let mut ra = NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap();
        let long_label = "x".repeat(64);
        let label63 = "x".repeat(63);
        let long_name = [label63.as_str(); 4].join("."); // 4 × 64 + 1 = 257
        let ok_name = [label63.as_str(); 3].join(".");
        for bad in ["", ".", "a..b", ".a", &long_label, &long_name] {
            assert_eq!(
                ra.dnssl(60, &[bad]).unwrap_err(),
                WireError::Malformed,
                "{bad:?}"
            );
        }
        let none: [&str; 0] = [];
        assert_eq!(ra.dnssl(60, &none).unwrap_err(), WireError::Malformed);
        // Eleven 193-octet names overflow the 2040-octet option.
        let list = [ok_name.as_str(); 11];
        assert_eq!(ra.dnssl(60, &list[..]).unwrap_err(), WireError::Malformed);
        let list = [ok_name.as_str(); 10];
        ra.dnssl(60, &list[..]).unwrap();
        // Nothing was written by the refused calls.
        assert_eq!(ra.finish(ROUTER, ALL_NODES), 16 + 8 + 1936);
    }

    #[test]
    fn dnssl_too_small() {
        let mut b = [0u8; 30];
        let mut ra = NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap();
        assert_eq!(
            ra.dnssl(60, &["example.com"]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(ra.finish(ROUTER, ALL_NODES), 16);
    }

    #[test]
    fn prefix_len_checked() {
        let mut b = [0u8; 64];
        let mut ra = NdpBuilder::router_advert(&mut b, &ra_repr()).unwrap();
        let mut p = prefix();
        p.prefix_len = 129;
        assert_eq!(ra.prefix_info(&p).unwrap_err(), WireError::Malformed);
    }
}
