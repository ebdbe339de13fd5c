//! Finding the ports bound on one side, for pasta's `auto` forwarding.
//!
//! `-t auto` forwards a host port into the namespace when, and only
//! while, something in the namespace listens on it (`-T auto` the other
//! way, `-u`/`-U` for UDP). The integrator scans the other side about
//! once a second and opens or closes our listeners to match. This module
//! is the building block, with no event loop in it:
//!
//! - [`PortSet`]: a fixed 65536-bit set of ports, allocated once, with
//!   allocation-free iteration and differences;
//! - [`Scanner`]: rereads `/proc/net/{tcp,tcp6}` or `/proc/net/{udp,udp6}`
//!   through files opened once, in the namespace to be watched, into a
//!   buffer allocated once, and collects the local port of every TCP
//!   socket in LISTEN and every bound, unconnected UDP socket;
//! - [`wanted`] and [`diff`]: the policy, from a rule, the ports found
//!   bound and the ports we hold ourselves in the other direction, to the
//!   ports our listeners should be on, and what to open and close.
//!
//! Why `/proc/net`: a file there shows the network namespace of the task
//! that opened it for as long as it stays open, so one descriptor per file
//! opened at start-up (from a thread inside the namespace, before any
//! sandboxing) is all the scan needs, without entering the namespace
//! again or keeping a netlink socket in it.
//!
//! The file format (`net/ipv4/tcp_ipv4.c`, `udp.c` and their IPv6
//! twins): a header line, then one line per socket,
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue ...
//!    0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 ...
//! ```
//!
//! where an address is the raw network-order 32-bit word (or four, for
//! IPv6) printed as a host-order number in hex, so its text depends on
//! the machine's byte order, the port is in host order, and `st` is the
//! TCP state in hex (UDP reuses them: 07 CLOSE is bound and unconnected,
//! 01 ESTABLISHED is connected).

use crate::conf::ports::{PortRange, PortRule, Ports};
use crate::fwd::Proto;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `TCP_LISTEN` as `/proc/net/tcp*` prints it.
pub const TCP_LISTEN: u8 = 0x0a;
/// `TCP_CLOSE`: the state of a bound, unconnected UDP socket.
pub const TCP_CLOSE: u8 = 0x07;
/// `TCP_ESTABLISHED`: a connected socket (TCP or UDP).
pub const TCP_ESTABLISHED: u8 = 0x01;

/// How much of a file one read asks for. The kernel answers a read with
/// at most about a page of whole lines (seq_file), so a larger buffer
/// saves no system calls; this leaves room should that change. Lines are
/// about 150 bytes (tcp6 180): 10000 sockets make 1.5 MB.
pub const CHUNK: usize = 16 * 1024;

/// Number of 64-bit words in a [`PortSet`].
const WORDS: usize = 65536 / 64;

/// A set of port numbers, 0 to 65535: a fixed bitmap of 8 KiB allocated
/// once, so filling, comparing and iterating never allocate.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    words: Box<[u64; WORDS]>,
}

impl Default for PortSet {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PortSet {
    /// Ranges, not 1024 words: `{22, 8000-8010}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        let mut it = self.iter().peekable();
        let mut first = true;
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek().is_some_and(|&n| Some(n) == hi.checked_add(1)) {
                hi = it.next().unwrap_or(hi);
            }
            let sep = if first { "" } else { ", " };
            first = false;
            if lo == hi {
                write!(f, "{sep}{lo}")?;
            } else {
                write!(f, "{sep}{lo}-{hi}")?;
            }
        }
        write!(f, "}}")
    }
}

impl PortSet {
    /// An empty set (the one allocation it ever makes).
    pub fn new() -> Self {
        Self {
            words: Box::new([0; WORDS]),
        }
    }

    /// Add `port`; true if it wasn't there.
    pub fn insert(&mut self, port: u16) -> bool {
        let (w, bit) = Self::at(port);
        let was = self.words[w] & bit != 0;
        self.words[w] |= bit;
        !was
    }

    /// Take `port` out; true if it was there.
    pub fn remove(&mut self, port: u16) -> bool {
        let (w, bit) = Self::at(port);
        let was = self.words[w] & bit != 0;
        self.words[w] &= !bit;
        was
    }

    /// Whether `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        let (w, bit) = Self::at(port);
        self.words[w] & bit != 0
    }

    /// Empty the set, keeping its memory.
    pub fn clear(&mut self) {
        self.words.fill(0);
    }

    /// Make this set equal to `other` without allocating.
    pub fn copy_from(&mut self, other: &PortSet) {
        self.words.copy_from_slice(&other.words[..]);
    }

    /// Add every port of `range`.
    pub fn insert_range(&mut self, range: PortRange) {
        self.range_words(range, |w, mask| *w |= mask);
    }

    /// Take out every port of `range`.
    pub fn remove_range(&mut self, range: PortRange) {
        self.range_words(range, |w, mask| *w &= !mask);
    }

    /// Number of ports in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True if the set holds no port.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The ports, ascending.
    pub fn iter(&self) -> PortIter<'_> {
        PortIter::new(&self.words, None)
    }

    /// The ports in `self` but not in `other`, ascending, without
    /// building a set.
    pub fn difference<'a>(&'a self, other: &'a PortSet) -> PortIter<'a> {
        PortIter::new(&self.words, Some(&other.words))
    }

    /// The word and bit of `port`.
    fn at(port: u16) -> (usize, u64) {
        (usize::from(port / 64), 1 << (port % 64))
    }

    /// Apply `op` to each word `range` touches, with the mask of its
    /// ports in that word: a whole range costs a word at a time.
    fn range_words(&mut self, range: PortRange, op: impl Fn(&mut u64, u64)) {
        let (first, last) = (range.first(), range.last());
        let (w0, w1) = (usize::from(first / 64), usize::from(last / 64));
        for w in w0..=w1 {
            let lo = if w == w0 { first % 64 } else { 0 };
            let hi = if w == w1 { last % 64 } else { 63 };
            // Bits lo..=hi: all ones shifted, without overflowing at 64.
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            op(&mut self.words[w], mask);
        }
    }
}

/// Ports of a [`PortSet`] (or of a difference of two), ascending.
#[derive(Debug, Clone)]
pub struct PortIter<'a> {
    words: &'a [u64; WORDS],
    minus: Option<&'a [u64; WORDS]>,
    /// Index of the word `bits` came from.
    w: usize,
    /// What is left of word `w`.
    bits: u64,
}

impl<'a> PortIter<'a> {
    fn new(words: &'a [u64; WORDS], minus: Option<&'a [u64; WORDS]>) -> Self {
        let mut it = Self {
            words,
            minus,
            w: 0,
            bits: 0,
        };
        it.bits = it.word(0);
        it
    }

    /// Word `w` of the set, less the subtracted set's.
    fn word(&self, w: usize) -> u64 {
        self.words[w] & !self.minus.map_or(0, |m| m[w])
    }
}

impl Iterator for PortIter<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        while self.bits == 0 {
            self.w += 1;
            if self.w >= WORDS {
                return None;
            }
            self.bits = self.word(self.w);
        }
        let bit = self.bits.trailing_zeros();
        // Clear the lowest set bit.
        self.bits &= self.bits - 1;
        // w < 1024 and bit < 64: always a port number.
        u16::try_from(self.w * 64 + bit as usize).ok()
    }
}

/// One socket line of a `/proc/net/{tcp,tcp6,udp,udp6}` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSocket {
    /// Local address and port (`local_address`).
    pub local: SocketAddr,
    /// Remote address and port (`rem_address`): unspecified, port 0,
    /// unless connected.
    pub remote: SocketAddr,
    /// TCP state number (`st`), also used by UDP.
    pub state: u8,
}

/// Parse one line of a `/proc/net/{tcp,udp}{,6}` file, without its
/// newline: `None` for the header and for anything malformed.
///
/// Only the first four fields are read (`sl`, `local_address`,
/// `rem_address`, `st`), so columns the kernel may append later don't
/// matter. An address is 8 hex digits (IPv4) or 32 (IPv6), decoded in
/// this machine's byte order, which is the kernel's.
pub fn parse_line(line: &[u8]) -> Option<ProcSocket> {
    let mut fields = line
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let sl = fields.next()?;
    // "12:" — the header's "sl" and garbage are refused here.
    let num = sl.strip_suffix(b":")?;
    if num.is_empty() || !num.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let local = parse_addr(fields.next()?)?;
    let remote = parse_addr(fields.next()?)?;
    let st = fields.next()?;
    if st.len() != 2 {
        return None;
    }
    let state = u8::try_from(parse_hex(st)?).ok()?;
    Some(ProcSocket {
        local,
        remote,
        state,
    })
}

/// `ADDR:PORT` in the kernel's hex form.
fn parse_addr(field: &[u8]) -> Option<SocketAddr> {
    let colon = field.iter().position(|&b| b == b':')?;
    let (addr, port) = (&field[..colon], &field[colon + 1..]);
    if port.is_empty() || port.len() > 4 {
        return None;
    }
    let port = u16::try_from(parse_hex(port)?).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(parse_hex(addr)?.to_ne_bytes())),
        32 => {
            // Four words, each the raw bytes of one `s6_addr32` printed
            // as a host-order number.
            let mut bytes = [0u8; 16];
            for (out, word) in bytes.chunks_exact_mut(4).zip(addr.chunks_exact(8)) {
                out.copy_from_slice(&parse_hex(word)?.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// 1 to 8 hex digits, either case, nothing else (no sign, no `0x`).
fn parse_hex(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

/// Whether `ip` is a loopback address: `127.0.0.0/8`, `::1`, or a
/// loopback IPv4 address mapped into IPv6 (a dual-stack socket bound to
/// `::ffff:127.0.0.1`).
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    }
}

/// Call `f` with each complete line (newline stripped) of what `read`
/// gives from offset 0 on, through `buf`, reused. A line split between
/// two reads is joined first; a line longer than `buf`, which the kernel
/// never writes, is dropped whole rather than parsed in pieces. A last
/// line without a newline still counts.
fn for_each_line(
    mut read: impl FnMut(&mut [u8], u64) -> io::Result<usize>,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]),
) -> io::Result<()> {
    let mut offset = 0u64;
    // Bytes of an unfinished line kept at the start of `buf`.
    let mut carry = 0;
    // Inside a line too long for `buf`: drop up to its newline.
    let mut skipping = false;
    loop {
        let n = match read(&mut buf[carry..], offset) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if carry > 0 && !skipping {
                f(&buf[..carry]);
            }
            return Ok(());
        }
        offset += n as u64;
        let end = carry + n;
        let mut start = 0;
        while let Some(nl) = buf[start..end].iter().position(|&b| b == b'\n') {
            if !std::mem::take(&mut skipping) {
                f(&buf[start..start + nl]);
            }
            start += nl + 1;
        }
        if start == 0 && end == buf.len() {
            skipping = true;
            carry = 0;
        } else {
            buf.copy_within(start..end, 0);
            carry = end - start;
        }
    }
}

/// Rescans a set of `/proc/net` socket files, or asks `sock_diag`, for
/// bound ports.
pub struct Scanner {
    proto: Proto,
    files: Vec<File>,
    /// The `sock_diag` netlink socket, when used instead of the files.
    diag: Option<netlink_sys::Socket>,
    buf: Vec<u8>,
    skip_loopback: bool,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scanner")
            .field("proto", &self.proto)
            .field("files", &self.files.len())
            .field("diag", &self.diag.is_some())
            .finish()
    }
}

/// `SOCK_DIAG_BY_FAMILY`, the request and answer type.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`, `NLMSG_DONE`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// A netlink header, and an `inet_diag_req_v2` after it.
const NLMSG_HDR: usize = 16;
const DIAG_REQ: usize = 56;
/// The start of `inet_diag_msg` that we read: family, state, timer,
/// retransmits, then `inet_diag_sockid` (ports, then addresses).
const DIAG_MSG_MIN: usize = 4 + 4 + 32;
/// Receive buffer for a dump's datagrams (the kernel fills up to 32 KiB).
const DIAG_BUF: usize = 64 * 1024;

/// A `sock_diag` dump request for `proto` sockets of `family` in `state`.
fn diag_request(family: u8, proto: Proto, state: u8, seq: u32) -> [u8; NLMSG_HDR + DIAG_REQ] {
    let mut m = [0u8; NLMSG_HDR + DIAG_REQ];
    let len = (NLMSG_HDR + DIAG_REQ) as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    m[16] = family;
    m[17] = match proto {
        Proto::Tcp => libc::IPPROTO_TCP as u8,
        _ => libc::IPPROTO_UDP as u8,
    };
    // idiag_states: a bit mask of TCP states.
    m[20..24].copy_from_slice(&(1u32 << state).to_ne_bytes());
    m
}

/// The local address and state of one `inet_diag_msg` (after its netlink
/// header), if well formed.
fn parse_diag(msg: &[u8]) -> Option<ProcSocket> {
    if msg.len() < DIAG_MSG_MIN {
        return None;
    }
    let (family, state) = (msg[0], msg[1]);
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let addr = |at: usize| -> Option<IpAddr> {
        match i32::from(family) {
            libc::AF_INET => {
                let b: [u8; 4] = msg.get(at..at + 4)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            }
            libc::AF_INET6 => {
                let b: [u8; 16] = msg.get(at..at + 16)?.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => None,
        }
    };
    Some(ProcSocket {
        local: SocketAddr::new(addr(8)?, sport),
        remote: SocketAddr::new(addr(24)?, dport),
        state,
    })
}

impl Scanner {
    /// Open `dir`'s `tcp` and `tcp6` (or `udp`, `udp6`) files, for
    /// `proto` TCP or UDP. `dir` is a `/proc/.../net` directory: from a
    /// thread that entered the namespace to watch, `/proc/thread-self/net`
    /// (`/proc/self/net` follows the process's main thread); otherwise
    /// `/proc/self/net` for our own namespace, or `/proc/PID/net` for a
    /// process's. The files keep showing that namespace once open. A
    /// missing file (IPv6 disabled in the kernel) is skipped.
    ///
    /// # Errors
    /// ICMP asked for, a file that can't be opened for another reason, or
    /// neither file there.
    pub fn open(dir: &Path, proto: Proto) -> io::Result<Self> {
        let names = match proto {
            Proto::Tcp => ["tcp", "tcp6"],
            Proto::Udp => ["udp", "udp6"],
            Proto::Icmp => return Err(no_ports()),
        };
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            match File::open(dir.join(name)) {
                Ok(f) => files.push(f),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        if files.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no {} socket table in {}", names[0], dir.display()),
            ));
        }
        Self::from_files(proto, files)
    }

    /// A scanner of `files`, already open, each a `/proc/net` socket
    /// table of `proto` (TCP or UDP, IPv4 or IPv6, in any order).
    ///
    /// # Errors
    /// ICMP asked for: it has no ports to forward.
    pub fn from_files(proto: Proto, files: Vec<File>) -> io::Result<Self> {
        if proto == Proto::Icmp {
            return Err(no_ports());
        }
        Ok(Self {
            proto,
            files,
            diag: None,
            buf: vec![0; CHUNK],
            skip_loopback: false,
        })
    }

    /// A scanner asking the kernel through `sock_diag` (netlink) in the
    /// calling thread's network namespace, which the socket keeps. The
    /// kernel then reports only sockets in the state we ask for: a TCP
    /// scan walks the listening sockets alone, whatever the number of
    /// connections, where the `/proc` tables list every one of them.
    ///
    /// # Errors
    /// No `sock_diag` (an old or trimmed kernel: use `open`), or ICMP.
    pub fn open_diag(proto: Proto) -> io::Result<Self> {
        if proto == Proto::Icmp {
            return Err(no_ports());
        }
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_SOCK_DIAG)?;
        sock.bind_auto()?;
        sock.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        let mut s = Self {
            proto,
            files: Vec::new(),
            diag: Some(sock),
            buf: Vec::with_capacity(DIAG_BUF),
            skip_loopback: false,
        };
        // One round now, so a kernel without it is found out here.
        s.scan_sockets(|_| {})?;
        Ok(s)
    }

    /// A scanner through `sock_diag`, else the `/proc` tables in `dir`.
    ///
    /// # Errors
    /// As `open`.
    pub fn open_best(dir: &Path, proto: Proto) -> io::Result<Self> {
        Self::open_diag(proto).or_else(|e| {
            log::debug!("sock_diag: {e}, reading {} instead", dir.display());
            Self::open(dir, proto)
        })
    }

    /// One `sock_diag` dump per family into `f`.
    fn scan_diag(&mut self, want: u8, f: &mut impl FnMut(&ProcSocket)) -> io::Result<()> {
        let Some(sock) = &self.diag else {
            return Ok(());
        };
        for (seq, family) in [(1u32, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
            sock.send(&diag_request(family, self.proto, want, seq), 0)?;
            'dump: loop {
                self.buf.clear();
                let n = sock.recv(&mut self.buf, libc::MSG_TRUNC)?;
                if n > self.buf.len() {
                    return Err(io::Error::other("sock_diag datagram too large"));
                }
                let mut rest: &[u8] = &self.buf;
                while rest.len() >= NLMSG_HDR {
                    let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    let ty = u16::from_ne_bytes([rest[4], rest[5]]);
                    if len < NLMSG_HDR || len > rest.len() {
                        return Err(io::Error::other("sock_diag: bad message length"));
                    }
                    match ty {
                        NLMSG_DONE => break 'dump,
                        NLMSG_ERROR => {
                            let code = rest
                                .get(16..20)
                                .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                            // No sockets of that family (IPv6 off): done.
                            if code == -libc::EAFNOSUPPORT || code == -libc::ENOENT {
                                break 'dump;
                            }
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        SOCK_DIAG_BY_FAMILY => {
                            if let Some(s) = parse_diag(&rest[NLMSG_HDR..len]) {
                                f(&s);
                            }
                        }
                        _ => {}
                    }
                    // Messages are 4-byte aligned.
                    let next = (len + 3) & !3;
                    rest = rest.get(next..).unwrap_or(&[]);
                }
            }
        }
        Ok(())
    }

    /// Leave out sockets bound to a loopback address only (default:
    /// kept). For a direction whose connections reach the other side
    /// only through the tap, where its loopback is out of reach; not
    /// where pasta's splice path connects to that loopback itself.
    /// Sockets on a wildcard or other address are always kept.
    pub fn set_skip_loopback(&mut self, skip: bool) {
        self.skip_loopback = skip;
    }

    /// The protocol scanned.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Reread every file from the start and call `f` for each socket
    /// found bound: for TCP, in LISTEN; for UDP, in CLOSE (bound and
    /// unconnected) with a local port; with loopback ones left out if
    /// asked. A port may come more than once (several addresses,
    /// `SO_REUSEPORT`, both families).
    ///
    /// # Errors
    /// A failed read: what was found before it has been reported.
    pub fn scan_sockets(&mut self, mut f: impl FnMut(&ProcSocket)) -> io::Result<()> {
        let want = match self.proto {
            Proto::Tcp => TCP_LISTEN,
            _ => TCP_CLOSE,
        };
        let skip_loopback = self.skip_loopback;
        if self.diag.is_some() {
            return self.scan_diag(want, &mut |s: &ProcSocket| {
                if s.state == want
                    && s.local.port() != 0
                    && !(skip_loopback && is_loopback(s.local.ip()))
                {
                    f(s);
                }
            });
        }
        for file in &self.files {
            for_each_line(
                |buf, off| file.read_at(buf, off),
                &mut self.buf,
                |line| {
                    if let Some(s) = parse_line(line)
                        && s.state == want
                        && s.local.port() != 0
                        && !(skip_loopback && is_loopback(s.local.ip()))
                    {
                        f(&s);
                    }
                },
            )?;
        }
        Ok(())
    }

    /// Empty `out` and fill it with the local port of every socket
    /// [`scan_sockets`](Self::scan_sockets) finds. Allocates nothing.
    ///
    /// # Errors
    /// A failed read: `out` is then incomplete, and closing listeners
    /// for ports missing from it would be wrong.
    pub fn scan(&mut self, out: &mut PortSet) -> io::Result<()> {
        out.clear();
        self.scan_sockets(|s| {
            out.insert(s.local.port());
        })
    }
}

fn no_ports() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "ICMP has no ports to scan")
}

/// The ports an `auto` rule's listeners should be on now, into `out`
/// (emptied first), in the rule's listening port numbers.
///
/// A candidate port is every port for `auto` alone (or with only `~`
/// excludes, or `all`: unlike a static `all`, ephemeral ports count
/// too, since only ports actually bound are forwarded), else the ports
/// of the rule's ranges (`8000-8010,auto`). A candidate is wanted if its
/// target port (itself, or its place in a mapped range such as
/// `8000:9000`) is in `bound`, found on the other side, and not in
/// `ours_opposite`, the ports our own listeners for the opposite
/// direction hold on that side: pasta's `-t` listeners in the namespace
/// must not look like namespace services to `-T auto` (nor its `-T`
/// listeners on the host like host services to `-t auto`), or each
/// direction would forward the other's ports back, in a loop. A `~`
/// exclude always wins. A rule without `auto` wants nothing from a
/// scan: its ports are bound once at start-up (`listen.rs`).
pub fn wanted(rule: &PortRule, bound: &PortSet, ours_opposite: &PortSet, out: &mut PortSet) {
    out.clear();
    if !rule.auto {
        return;
    }
    match &rule.ports {
        Ports::All { .. } => {
            for (o, (b, ours)) in out
                .words
                .iter_mut()
                .zip(bound.words.iter().zip(ours_opposite.words.iter()))
            {
                *o = b & !ours;
            }
        }
        Ports::Ranges(maps) => {
            for m in maps {
                // Inclusive on both sides: `to` may end at 65535.
                let targets = m.to.first()..=m.to.last();
                for (from, to) in (m.from.first()..=m.from.last()).zip(targets) {
                    if bound.contains(to) && !ours_opposite.contains(to) {
                        out.insert(from);
                    }
                }
            }
        }
    }
    // Port 0 is never forwarded, whatever the sets say.
    out.remove(0);
    for &ex in &rule.exclude {
        out.remove_range(ex);
    }
}

/// What to change to go from the listeners we have (`current`) to the
/// ones [`wanted`]: ports to open and ports to close, each ascending.
#[derive(Debug, Clone)]
pub struct Changes<'a> {
    /// Wanted and not held: bind these.
    pub open: PortIter<'a>,
    /// Held and no longer wanted: close these.
    pub close: PortIter<'a>,
}

/// The changes from `current` to `wanted`, computed as they are iterated.
pub fn diff<'a>(current: &'a PortSet, wanted: &'a PortSet) -> Changes<'a> {
    Changes {
        open: wanted.difference(current),
        close: current.difference(wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::ports::parse;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::time::Instant;

    fn set(ports: &[u16]) -> PortSet {
        let mut s = PortSet::new();
        for &p in ports {
            s.insert(p);
        }
        s
    }

    fn r(first: u16, last: u16) -> PortRange {
        PortRange::new(first, last).expect("valid test range")
    }

    #[test]
    fn port_set_basics() {
        let mut s = PortSet::new();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert!(s.insert(0));
        assert!(s.insert(63));
        assert!(s.insert(64));
        assert!(s.insert(65535));
        assert!(!s.insert(64));
        assert!(s.contains(63) && s.contains(65535) && !s.contains(65534));
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 63, 64, 65535]);
        assert!(s.remove(0));
        assert!(!s.remove(0));
        assert_eq!(format!("{s:?}"), "{63-64, 65535}");
        let mut t = PortSet::new();
        t.copy_from(&s);
        assert_eq!(t, s);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.iter().next(), None);
    }

    #[test]
    fn port_set_ranges() {
        let mut s = PortSet::new();
        s.insert_range(r(60, 200));
        assert_eq!(s.len(), 141);
        assert!(!s.contains(59) && s.contains(60) && s.contains(200) && !s.contains(201));
        s.remove_range(r(64, 127));
        assert_eq!(format!("{s:?}"), "{60-63, 128-200}");
        s.insert_range(r(1, 65535));
        assert_eq!(s.len(), 65535);
        s.remove_range(r(65535, 65535));
        assert_eq!(s.iter().last(), Some(65534));
        s.remove_range(r(1, 65535));
        assert!(s.is_empty());
        s.insert_range(r(5, 5));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn port_set_difference() {
        let a = set(&[1, 80, 443, 8080, 65535]);
        let b = set(&[80, 8080, 9000]);
        assert_eq!(a.difference(&b).collect::<Vec<_>>(), vec![1, 443, 65535]);
        assert_eq!(b.difference(&a).collect::<Vec<_>>(), vec![9000]);
        assert_eq!(a.difference(&a).next(), None);
    }

    // Captured on x86-64 (little-endian: addresses read backwards in
    // each 32-bit word) and trimmed; the trailing columns vary by kernel.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 48211 1 0000000000000000 100 0 0 10 0                     
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20511 1 0000000000000000 100 0 0 10 0                     
   2: 0F02000A:0016 0202000A:D4F2 01 00000000:00000000 02:0006A9C5 00000000     0        0 51102 2 0000000000000000 20 4 29 10 -1                    
   3: 0100007F:B5A0 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000                                      
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30112 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30113 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30114 1 0000000000000000 100 0 0 10 0
   3: B80D0120000000000000000002000000:01BB B80D0120000000000000000009000000:C350 01 00000000:00000000 02:00000B43 00000000    33        0 30200 2 0000000000000000 21 4 30 10 -1
";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  101: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 17021 2 0000000000000000 0            
  140: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 18004 2 0000000000000000 0            
  377: 0F02000A:A7F1 0302000A:0035 01 00000000:00000000 00:00000000 00000000  1000        0 61010 2 0000000000000000 0            
";

    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  229: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 19033 2 0000000000000000 0
  230: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 19034 2 0000000000000000 0
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    /// Every socket line of `text`, through `for_each_line` with a
    /// buffer of `size` bytes and reads of at most `max_read`.
    fn lines_of(text: &str, size: usize, max_read: usize) -> Vec<ProcSocket> {
        let src = text.as_bytes();
        let mut buf = vec![0; size];
        let mut out = Vec::new();
        for_each_line(
            |b, off| {
                let off = usize::try_from(off).expect("offset");
                let n = b.len().min(max_read).min(src.len() - off);
                b[..n].copy_from_slice(&src[off..off + n]);
                Ok(n)
            },
            &mut buf,
            |line| out.extend(parse_line(line)),
        )
        .expect("in-memory reads don't fail");
        out
    }

    #[test]
    fn parses_the_four_tables() {
        let tcp = lines_of(TCP, CHUNK, usize::MAX);
        assert_eq!(
            tcp.iter()
                .map(|s| (s.local.port(), s.state))
                .collect::<Vec<_>>(),
            vec![(8080, 0x0a), (22, 0x0a), (22, 0x01), (46496, 0x06)]
        );
        let tcp6 = lines_of(TCP6, CHUNK, usize::MAX);
        assert_eq!(
            tcp6.iter().map(|s| s.local.port()).collect::<Vec<_>>(),
            vec![80, 631, 5000, 443]
        );
        assert_eq!(tcp6[3].remote.port(), 50000);
        let udp = lines_of(UDP, CHUNK, usize::MAX);
        assert_eq!(
            udp.iter()
                .map(|s| (s.local.port(), s.state))
                .collect::<Vec<_>>(),
            vec![(53, 0x07), (68, 0x07), (42993, 0x01)]
        );
        let udp6 = lines_of(UDP6, CHUNK, usize::MAX);
        assert_eq!(
            udp6.iter().map(|s| s.local.port()).collect::<Vec<_>>(),
            vec![5353, 9000]
        );
        // The fixtures' addresses are in little-endian order.
        if cfg!(target_endian = "little") {
            assert_eq!(tcp[0].local, sa("127.0.0.1:8080"));
            assert_eq!(tcp[1].local, sa("0.0.0.0:22"));
            assert_eq!(tcp[2].local, sa("10.0.2.15:22"));
            assert_eq!(tcp[2].remote, sa("10.0.2.2:54514"));
            assert_eq!(tcp6[0].local, sa("[::]:80"));
            assert_eq!(tcp6[1].local, sa("[::1]:631"));
            assert_eq!(tcp6[2].local, sa("[::ffff:127.0.0.1]:5000"));
            assert_eq!(tcp6[3].local, sa("[2001:db8::2]:443"));
            assert_eq!(tcp6[3].remote, sa("[2001:db8::9]:50000"));
            assert_eq!(udp[0].local, sa("127.0.0.53:53"));
            assert_eq!(udp[2].remote, sa("10.0.2.3:53"));
            assert_eq!(udp6[1].local, sa("[::1]:9000"));
            assert!(is_loopback(tcp[0].local.ip()));
            assert!(is_loopback(tcp6[1].local.ip()));
            assert!(is_loopback(tcp6[2].local.ip()));
            assert!(is_loopback(udp[0].local.ip()));
            assert!(!is_loopback(tcp[1].local.ip()));
            assert!(!is_loopback(tcp6[0].local.ip()));
            assert!(!is_loopback(tcp6[3].local.ip()));
        }
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"  sl  local_address rem_address   st tx_queue",
            b"   0: 0100007F:1F90 00000000:0000",
            b"   0: 0100007F:1F90 00000000:0000 0",
            b"   0: 0100007F:1F90 00000000:0000 0AA",
            b"   0: 0100007F:1F90 00000000:0000 zz",
            b"   0: 0100007F 00000000:0000 0A",
            b"   0: 0100007F: 00000000:0000 0A",
            b"   0: 0100007F:10000 00000000:0000 0A",
            b"   0: 0100007:1F90 00000000:0000 0A",
            b"   0: 0100007F0:1F90 00000000:0000 0A",
            b"   0: 0100007G:1F90 00000000:0000 0A",
            b"   0: +100007F:1F90 00000000:0000 0A",
            b"   0: 0100007F:+F90 00000000:0000 0A",
            b"   0: 0100007F:1F90:1 00000000:0000 0A",
            b"   0: 00000000000000000000000001000000:1F9 0000:0000 0A",
            b"   0: 0000000000000000000000000100000:1F90 00000000:0000 0A",
            b"   x: 0100007F:1F90 00000000:0000 0A",
            b"   : 0100007F:1F90 00000000:0000 0A",
            b"   0 0100007F:1F90 00000000:0000 0A",
            b"\xff\xfe\x00: \xff:\xff 0A",
            "   0: 0100007F:1F9\u{0664} 00000000:0000 0A".as_bytes(),
        ];
        for line in bad {
            assert_eq!(
                parse_line(line),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // Short ports and lower case are still the kernel's numbers.
        let ok = parse_line(b"7: 0100007f:50 00000000:0 0a").expect("parses");
        assert_eq!((ok.local.port(), ok.state), (0x50, TCP_LISTEN));
        // Garbage between good lines loses only itself.
        let mixed = format!(
            "{TCP}junk line\n   9: 00000000:zz\n\n{}",
            &TCP[TCP.find('\n').unwrap() + 1..]
        );
        assert_eq!(lines_of(&mixed, CHUNK, usize::MAX).len(), 8);
    }

    #[test]
    fn lines_split_between_reads_are_joined() {
        let text = format!("{TCP}{TCP6}{UDP}{UDP6}");
        let whole = lines_of(&text, CHUNK, usize::MAX);
        assert_eq!(whole.len(), 13);
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        // Every buffer size that fits a line puts a boundary inside some
        // line; reads shorter than asked (as seq_file may give) too.
        for size in longest + 1..longest + 400 {
            assert_eq!(lines_of(&text, size, usize::MAX), whole, "buffer {size}");
        }
        for max_read in [1, 2, 7, 64, 149, 150, 151] {
            assert_eq!(lines_of(&text, 512, max_read), whole, "reads of {max_read}");
        }
        // No newline at the end: the last line still counts.
        assert_eq!(lines_of(text.trim_end(), 300, usize::MAX), whole);
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_dropped_whole() {
        let long = format!("   5: 0100007F:0050 00000000:0000 0A {}\n", "0".repeat(600));
        let text = format!("{long}{TCP}{long}{long}");
        let got = lines_of(&text, 256, usize::MAX);
        assert_eq!(got, lines_of(TCP, CHUNK, usize::MAX));
        // Exactly the buffer's size, newline included, still fits.
        let line = "   5: 0100007F:0050 00000000:0000 0A\n";
        assert_eq!(lines_of(line, line.len(), usize::MAX).len(), 1);
        assert_eq!(lines_of(line, line.len() - 2, usize::MAX).len(), 0);
    }

    /// A scanner over fixture text in temporary files.
    fn fixture_scanner(proto: Proto, texts: &[&str]) -> Scanner {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Tests run in parallel: one name per file ever made.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let files = texts
            .iter()
            .map(|t| {
                let i = NEXT.fetch_add(1, Ordering::Relaxed);
                let path =
                    std::env::temp_dir().join(format!("passt-rs-scan-{}-{i}", std::process::id()));
                std::fs::write(&path, t).expect("write fixture");
                let f = File::open(&path).expect("open fixture");
                let _ = std::fs::remove_file(&path);
                f
            })
            .collect();
        Scanner::from_files(proto, files).expect("scanner")
    }

    #[test]
    fn scanner_picks_listening_and_bound_sockets() {
        let mut found = PortSet::new();
        let mut tcp = fixture_scanner(Proto::Tcp, &[TCP, TCP6]);
        tcp.scan(&mut found).expect("scan");
        // Not 46496 (TIME_WAIT) nor 443 (established only).
        assert_eq!(
            found.iter().collect::<Vec<_>>(),
            vec![22, 80, 631, 5000, 8080]
        );
        // A second scan starts again from the top, and from empty.
        found.insert(1);
        tcp.scan(&mut found).expect("scan");
        assert_eq!(found.len(), 5);
        let mut udp = fixture_scanner(Proto::Udp, &[UDP, UDP6]);
        udp.scan(&mut found).expect("scan");
        // Not 42993: connected.
        assert_eq!(found.iter().collect::<Vec<_>>(), vec![53, 68, 5353, 9000]);
        if cfg!(target_endian = "little") {
            tcp.set_skip_loopback(true);
            tcp.scan(&mut found).expect("scan");
            assert_eq!(found.iter().collect::<Vec<_>>(), vec![22, 80]);
            udp.set_skip_loopback(true);
            udp.scan(&mut found).expect("scan");
            assert_eq!(found.iter().collect::<Vec<_>>(), vec![68, 5353]);
        }
        assert!(Scanner::from_files(Proto::Icmp, Vec::new()).is_err());
    }

    fn net() -> &'static Path {
        Path::new("/proc/self/net")
    }

    fn scan(s: &mut Scanner) -> PortSet {
        let mut out = PortSet::new();
        s.scan(&mut out).expect("scan /proc/self/net");
        out
    }

    #[test]
    fn scanner_sees_the_kernel_tcp_listeners() {
        sees_tcp_listeners(Scanner::open(net(), Proto::Tcp).expect("open"));
    }

    #[test]
    fn sock_diag_sees_the_kernel_tcp_listeners() {
        sees_tcp_listeners(Scanner::open_diag(Proto::Tcp).expect("sock_diag"));
    }

    #[test]
    fn scanner_sees_the_kernel_udp_sockets() {
        sees_udp_sockets(Scanner::open(net(), Proto::Udp).expect("open"));
    }

    #[test]
    fn sock_diag_sees_the_kernel_udp_sockets() {
        sees_udp_sockets(Scanner::open_diag(Proto::Udp).expect("sock_diag"));
    }

    fn sees_tcp_listeners(mut s: Scanner) {
        let l4 = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p4 = l4.local_addr().expect("addr").port();
        // IPv6 may be off in the test environment.
        let l6 = TcpListener::bind("[::1]:0").ok();
        let p6 = l6.as_ref().map(|l| l.local_addr().expect("addr").port());
        let client = TcpStream::connect(("127.0.0.1", p4)).expect("connect");
        let (accepted, _) = l4.accept().expect("accept");
        let pc = client.local_addr().expect("addr").port();
        let found = scan(&mut s);
        assert!(found.contains(p4), "{p4} not in {found:?}");
        assert!(p6.is_none_or(|p| found.contains(p)));
        // The client's own port is an established socket, not a service.
        assert!(!found.contains(pc));
        let mut addrs = Vec::new();
        s.scan_sockets(|sock| addrs.push(sock.local)).expect("scan");
        assert!(addrs.contains(&sa(&format!("127.0.0.1:{p4}"))));
        s.set_skip_loopback(true);
        let found = scan(&mut s);
        assert!(!found.contains(p4) && p6.is_none_or(|p| !found.contains(p)));
        s.set_skip_loopback(false);
        drop((l4, l6, client, accepted));
        // Our sockets are gone. (Checked by address: tests running beside
        // this one in the same namespace may take the same port numbers.)
        let mut addrs = Vec::new();
        s.scan_sockets(|sock| addrs.push(sock.local)).expect("scan");
        assert!(!addrs.contains(&sa(&format!("127.0.0.1:{p4}"))));
        assert!(p6.is_none_or(|p| !addrs.contains(&sa(&format!("[::1]:{p}")))));
    }

    fn sees_udp_sockets(mut s: Scanner) {
        let u4 = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p4 = u4.local_addr().expect("addr").port();
        let u6 = UdpSocket::bind("[::1]:0").ok();
        let p6 = u6.as_ref().map(|u| u.local_addr().expect("addr").port());
        let connected = UdpSocket::bind("127.0.0.1:0").expect("bind");
        connected.connect(("127.0.0.1", p4)).expect("connect");
        let pc = connected.local_addr().expect("addr").port();
        let found = scan(&mut s);
        assert!(found.contains(p4), "{p4} not in {found:?}");
        assert!(p6.is_none_or(|p| found.contains(p)));
        assert!(!found.contains(pc), "connected {pc} in {found:?}");
        drop((u4, u6, connected));
        let mut addrs = Vec::new();
        s.scan_sockets(|sock| addrs.push(sock.local)).expect("scan");
        assert!(!addrs.contains(&sa(&format!("127.0.0.1:{p4}"))));
        assert!(p6.is_none_or(|p| !addrs.contains(&sa(&format!("[::1]:{p}")))));
    }

    #[test]
    fn scanning_5000_listeners_takes_well_under_a_second() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        const N: usize = 5000;
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        let need = (N + 200) as u64;
        if hard < need {
            eprintln!("skipped: RLIMIT_NOFILE hard limit {hard} < {need}");
            return;
        }
        if soft < need {
            setrlimit(Resource::RLIMIT_NOFILE, need, hard).expect("setrlimit");
        }
        let listeners: Vec<TcpListener> = (0..N)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let mut s = Scanner::open(net(), Proto::Tcp).expect("open");
        let mut found = PortSet::new();
        // The first scan warms the kernel's and our caches; time the next.
        s.scan(&mut found).expect("scan");
        let t = Instant::now();
        const ROUNDS: u32 = 5;
        for _ in 0..ROUNDS {
            s.scan(&mut found).expect("scan");
        }
        let each = t.elapsed() / ROUNDS;
        eprintln!(
            "scan of {N} TCP listeners: {each:?} ({} ports)",
            found.len()
        );
        for l in &listeners {
            assert!(found.contains(l.local_addr().expect("addr").port()));
        }
        assert!(each.as_millis() < 250, "scan took {each:?}");
    }

    fn rule(spec: &str) -> PortRule {
        parse(spec).expect("spec").rules.remove(0)
    }

    fn want(spec: &str, bound: &[u16], ours: &[u16]) -> Vec<u16> {
        let mut out = set(&[7]);
        wanted(&rule(spec), &set(bound), &set(ours), &mut out);
        out.iter().collect()
    }

    #[test]
    fn auto_alone_forwards_whatever_is_bound() {
        assert_eq!(
            want("auto", &[22, 80, 50000, 65535], &[]),
            vec![22, 80, 50000, 65535]
        );
        assert_eq!(want("auto", &[], &[]), Vec::<u16>::new());
        // Port 0 never, even if a set says so.
        assert_eq!(want("auto", &[0, 1], &[]), vec![1]);
        assert_eq!(want("all,auto", &[443], &[]), vec![443]);
    }

    #[test]
    fn ranges_with_auto_limit_the_candidates() {
        let bound = [22, 7999, 8000, 8005, 8010, 8011];
        assert_eq!(want("8000-8010,auto", &bound, &[]), vec![8000, 8005, 8010]);
        assert_eq!(
            want("22,8000-8010,auto", &bound, &[]),
            vec![22, 8000, 8005, 8010]
        );
        // A mapped range: bound target ports, listening port numbers.
        assert_eq!(want("80-82:8080-8082,auto", &[8081, 80], &[]), vec![81]);
        assert_eq!(want("80:8080,auto", &[8080], &[8080]), Vec::<u16>::new());
    }

    #[test]
    fn excludes_always_win() {
        let bound = [22, 80, 3000, 3005, 3010, 3011];
        assert_eq!(want("auto,~3000-3010", &bound, &[]), vec![22, 80, 3011]);
        assert_eq!(
            want("~22,auto", &bound, &[]),
            vec![80, 3000, 3005, 3010, 3011]
        );
        assert_eq!(want("2000-5000,~3000-3010,auto", &bound, &[]), vec![3011]);
        // In listening port numbers, like static rules.
        assert_eq!(
            want("80-81:8080-8081,~81,auto", &[8080, 8081], &[]),
            vec![80]
        );
    }

    #[test]
    fn our_own_opposite_listeners_are_not_services() {
        // -t auto sees pasta's -T listeners (here 5000, 6000) in the
        // namespace; forwarding them back would loop.
        let bound = [22, 5000, 6000];
        assert_eq!(want("auto", &bound, &[5000, 6000, 7000]), vec![22]);
        assert_eq!(want("5000-6000,auto", &bound, &[5000]), vec![6000]);
    }

    #[test]
    fn static_rules_want_nothing_from_a_scan() {
        assert_eq!(want("22", &[22], &[]), Vec::<u16>::new());
        assert_eq!(want("all", &[22], &[]), Vec::<u16>::new());
    }

    #[test]
    fn diff_names_what_to_open_and_close() {
        let current = set(&[22, 80, 8000]);
        let wanted = set(&[22, 443, 8000, 9000]);
        let c = diff(&current, &wanted);
        assert_eq!(c.open.collect::<Vec<_>>(), vec![443, 9000]);
        assert_eq!(c.close.collect::<Vec<_>>(), vec![80]);
        let c = diff(&wanted, &wanted);
        assert_eq!(c.open.chain(c.close).next(), None);
    }

    #[test]
    fn a_scan_round_trip_converges() {
        // What the integrator does each second, on fixture tables.
        let mut scanner = fixture_scanner(Proto::Tcp, &[TCP, TCP6]);
        let (mut bound, mut want_now, mut current) =
            (PortSet::new(), PortSet::new(), PortSet::new());
        let ours = set(&[5000]);
        let r = rule("auto,~631");
        scanner.scan(&mut bound).expect("scan");
        wanted(&r, &bound, &ours, &mut want_now);
        let c = diff(&current, &want_now);
        assert_eq!(c.open.collect::<Vec<_>>(), vec![22, 80, 8080]);
        current.copy_from(&want_now);
        scanner.scan(&mut bound).expect("scan");
        wanted(&r, &bound, &ours, &mut want_now);
        let c = diff(&current, &want_now);
        assert_eq!(c.open.chain(c.close).next(), None);
    }
}
