//! A hostile guest: a storm of frames that are almost right (real
//! handshakes with the host's services, then segments at or around the
//! sequence numbers we expect, with mixed flags, windows and options;
//! datagrams, echo requests, ARP, NDP, DHCP and DHCPv6 with random
//! bodies; headers with bytes flipped, lengths that lie, frames cut
//! short or padded), their checksums often made right again so that they
//! get past the first check. At passt's socket and at pasta's tap: each
//! must stay up, bounded in memory, and still answer a well-behaved guest
//! afterwards (passt also the next guest).
//!
//! The storm is seeded: a failure prints its seed, and
//! `PASST_RS_STORM_SEED=N` runs that storm again. It lasts 6 seconds;
//! `PASST_RS_STORM_SECS=N` makes it a soak.

mod support;

use passt_rs::wire::Mac;
use passt_rs::wire::checksum;
use passt_rs::wire::compose::{self, Csum, Link};
use passt_rs::wire::tcp::{Flags, TcpRepr};
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

/// xorshift64*: a storm is replayed from its seed alone.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True once in `n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next() as u8;
        }
    }
}

const GUEST_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
/// The ports the guest's connections come from: few, so that segments
/// keep finding the flows that handshakes opened.
const GUEST_PORTS: u16 = 48;
const FIRST_PORT: u16 = 41000;
/// The host's echo service (TCP and UDP, both families), and a closed port.
const ECHO: u16 = 7410;
const CLOSED: u16 = 7411;

/// A TCP and UDP echo server on every address of the host, one thread
/// per connection, so the storm's connections find someone to talk to.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
def tcp_conn(c):
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
    except OSError:
        pass
    finally:
        c.close()
def tcp():
    l = socket.socket(socket.AF_INET6)
    l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("::", port)); l.listen(512)
    while True:
        c, _ = l.accept()
        c.settimeout(30)
        threading.Thread(target=tcp_conn, args=(c,), daemon=True).start()
def udp():
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.bind(("::", port))
    while True:
        d, a = u.recvfrom(65536)
        try:
            u.sendto(d, a)
        except OSError:
            pass
threading.Thread(target=udp, daemon=True).start()
tcp()
"#;

/// Where a connection of the storm stands, as our last segment on it
/// said (passt's or pasta's): what we expect from the guest next (its
/// ACK field), and what the guest would acknowledge (its sequence number
/// past its data), so that some segments land exactly where expected.
#[derive(Clone, Copy)]
struct Peer {
    expects: u32,
    sent: u32,
}

/// What the storm learnt from the answers, by guest port and family
/// (true for IPv6).
type Learnt = Arc<Mutex<HashMap<(u16, bool), Peer>>>;

struct Storm {
    rng: Rng,
    link: Link,
    v4: (Ipv4Addr, Ipv4Addr, Ipv4Addr),
    v6: (Ipv6Addr, Ipv6Addr, Ipv6Addr),
    learnt: Learnt,
}

impl Storm {
    /// One frame: a well-formed one of a random kind, then perhaps
    /// damaged, then perhaps with its checksums put right again.
    fn frame(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.resize(1600, 0);
        let n = match self.rng.below(20) {
            0..=9 => self.tcp(out),
            10..=12 => self.udp(out),
            13 | 14 => self.icmp(out),
            15 => self.arp(out),
            16 => self.dhcp(out),
            17 => self.ndp(out),
            _ => {
                // Anything at all behind an Ethernet header.
                let n = 14 + self.rng.below(200);
                self.rng.fill(&mut out[..n]);
                out[..6].copy_from_slice(&self.link.dst.0);
                n
            }
        };
        out.truncate(n.max(1));
        if self.rng.one_in(3) {
            self.damage(out);
            if self.rng.one_in(2) {
                fix_checksums(out);
            }
        }
        if out.is_empty() {
            // A zero length breaks the stream's framing: passt would
            // rightly hang up.
            out.push(0);
        }
    }

    fn v6(&mut self) -> bool {
        self.rng.one_in(2)
    }

    fn tcp(&mut self, out: &mut [u8]) -> usize {
        let port = FIRST_PORT + self.rng.below(usize::from(GUEST_PORTS)) as u16;
        let dst_port = match self.rng.below(8) {
            0 => CLOSED,
            1 => self.rng.next() as u16,
            _ => ECHO,
        };
        let v6 = self.v6();
        // Our own sequence numbers start at the port, so that a SYN
        // repeated on a port that has a connection isn't a new one.
        let isn = u32::from(port) << 16;
        let peer = self.learnt.lock().unwrap().get(&(port, v6)).copied();
        let wander = |r: &mut Rng, at: u32| match r.below(6) {
            0 => r.next() as u32,
            1 => at.wrapping_add(r.below(2000) as u32).wrapping_sub(1000),
            2 => at.wrapping_add(r.below(70000) as u32),
            _ => at,
        };
        let mut hdr = TcpRepr {
            src_port: port,
            dst_port,
            window: self.rng.next() as u16,
            ..Default::default()
        };
        match (self.rng.below(6), peer) {
            (0, _) | (_, None) => {
                hdr.flags = Flags::SYN;
                hdr.seq = isn;
                hdr.mss = (!self.rng.one_in(4)).then(|| self.rng.next() as u16);
                hdr.wscale = (!self.rng.one_in(4)).then(|| self.rng.below(20) as u8);
            }
            (_, Some(p)) => {
                hdr.seq = wander(&mut self.rng, p.expects);
                hdr.ack = wander(&mut self.rng, p.sent);
                // Mostly ACK or ACK with PSH, then any other mix.
                hdr.flags = match self.rng.below(8) {
                    0..=3 => Flags::ACK,
                    4 => Flags::ACK | Flags::FIN,
                    5 => Flags(self.rng.next() as u8 | Flags::ACK.0),
                    6 => Flags(self.rng.next() as u8),
                    _ => Flags::ACK | Flags::PSH,
                };
            }
        }
        let plen = match self.rng.below(4) {
            0 | 1 => 0,
            2 => self.rng.below(20),
            _ => self.rng.below(1400),
        };
        let fill = self.rng.next() as u8;
        let payload = |p: &mut [u8]| {
            let n = plen.min(p.len());
            p[..n].fill(fill);
            n
        };
        if v6 {
            compose::tcp6(
                out,
                self.link,
                self.v6.0,
                self.v6.2,
                &hdr,
                Csum::Full,
                payload,
            )
        } else {
            compose::tcp4(
                out,
                self.link,
                self.v4.0,
                self.v4.2,
                &hdr,
                Csum::Full,
                payload,
            )
        }
    }

    fn udp(&mut self, out: &mut [u8]) -> usize {
        let src = 40000 + self.rng.below(64) as u16;
        let dst = match self.rng.below(6) {
            0 => CLOSED,
            1 => 53,
            2 => self.rng.next() as u16,
            _ => ECHO,
        };
        let plen = self.rng.below(1400);
        let fill = self.rng.next() as u8;
        let payload = |p: &mut [u8]| {
            let n = plen.min(p.len());
            p[..n].fill(fill);
            Some(n)
        };
        // The gateway's address is the host's loopback, or DNS.
        let to_gw = self.rng.one_in(4);
        if self.v6() {
            let d = if to_gw { self.v6.1 } else { self.v6.2 };
            compose::udp6(
                out,
                self.link,
                SocketAddrV6::new(self.v6.0, src, 0, 0),
                SocketAddrV6::new(d, dst, 0, 0),
                payload,
            )
        } else {
            let d = if to_gw { self.v4.1 } else { self.v4.2 };
            compose::udp4(
                out,
                self.link,
                SocketAddrV4::new(self.v4.0, src),
                SocketAddrV4::new(d, dst),
                payload,
            )
        }
    }

    fn icmp(&mut self, out: &mut [u8]) -> usize {
        // An echo request most of the time; any type otherwise.
        let ty = if self.rng.one_in(4) {
            self.rng.next() as u8
        } else {
            0
        };
        let id = self.rng.below(16) as u16;
        let len = 8 + self.rng.below(200);
        let mut body = [0u8; 208];
        self.rng.fill(&mut body[..len]);
        body[2..4].fill(0);
        body[4..6].copy_from_slice(&id.to_be_bytes());
        let fill = |m: &mut [u8], echo: u8| {
            let n = len.min(m.len());
            m[..n].copy_from_slice(&body[..n]);
            m[0] = if ty == 0 { echo } else { ty };
            m[1] = 0;
            Some(n)
        };
        if self.v6() {
            compose::icmp6(out, self.link, self.v6.0, self.v6.2, |m| fill(m, 128))
        } else {
            compose::icmp4(out, self.link, self.v4.0, self.v4.2, |m| fill(m, 8))
        }
    }

    fn arp(&mut self, out: &mut [u8]) -> usize {
        let mut f = arp_request([192, 0, 2, self.rng.next() as u8]);
        if self.rng.one_in(2) {
            let i = 14 + self.rng.below(28);
            f[i] = self.rng.next() as u8;
        }
        out[..f.len()].copy_from_slice(&f);
        f.len()
    }

    /// DHCP (IPv4) or DHCPv6 with a random body behind a plausible start.
    fn dhcp(&mut self, out: &mut [u8]) -> usize {
        let len = self.rng.below(600);
        let mut body = [0u8; 600];
        self.rng.fill(&mut body[..len]);
        if len > 240 && self.rng.one_in(2) {
            // BOOTREQUEST with the magic cookie: into the option parser.
            body[0] = 1;
            body[236..240].copy_from_slice(&[99, 130, 83, 99]);
        }
        let payload = |p: &mut [u8]| {
            let n = len.min(p.len());
            p[..n].copy_from_slice(&body[..n]);
            Some(n)
        };
        if self.v6() {
            let ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
            let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
            compose::udp6(
                out,
                self.link,
                SocketAddrV6::new(ll, 546, 0, 0),
                SocketAddrV6::new(all, 547, 0, 0),
                payload,
            )
        } else {
            compose::udp4(
                out,
                self.link,
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
                SocketAddrV4::new(Ipv4Addr::BROADCAST, 67),
                payload,
            )
        }
    }

    /// NDP (types 133 to 137) with random options.
    fn ndp(&mut self, out: &mut [u8]) -> usize {
        let ty = 133 + self.rng.below(5) as u8;
        let len = 8 + self.rng.below(120);
        let mut body = [0u8; 128];
        self.rng.fill(&mut body[..len]);
        let ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let dst = if self.rng.one_in(2) {
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2)
        } else {
            self.v6.1
        };
        compose::icmp6(out, self.link, ll, dst, |m| {
            let n = len.min(m.len());
            m[..n].copy_from_slice(&body[..n]);
            m[0] = ty;
            m[1] = 0;
            Some(n)
        })
    }

    /// Flip bytes in the headers, make a length lie, or cut or pad.
    fn damage(&mut self, f: &mut Vec<u8>) {
        match self.rng.below(5) {
            0 | 1 => {
                for _ in 0..1 + self.rng.below(3) {
                    let i = self.rng.below(f.len().min(80));
                    f[i] = self.rng.next() as u8;
                }
            }
            2 => {
                // The IP length fields: IPv4's total length or IPv6's
                // payload length.
                let at = if f.get(12..14) == Some(&[0x86, 0xdd]) {
                    18
                } else {
                    16
                };
                if f.len() > at + 2 {
                    let v = self.rng.next() as u16;
                    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
            3 => {
                let n = self.rng.below(f.len() + 1);
                f.truncate(n);
            }
            _ => {
                for _ in 0..self.rng.below(64) {
                    f.push(self.rng.next() as u8);
                }
            }
        }
    }
}

/// Recompute the IPv4 header checksum and the TCP, UDP or ICMP checksum
/// over what the IP header claims (within the frame), so a damaged
/// header still gets past checksum validation.
fn fix_checksums(f: &mut [u8]) {
    let l4 = match f.get(12..14) {
        Some([0x08, 0x00]) if f.len() >= 34 => {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            if ihl < 20 || f.len() < 14 + ihl {
                return;
            }
            f[24..26].fill(0);
            let c = !checksum::fold(checksum::sum(&f[14..14 + ihl], 0));
            f[24..26].copy_from_slice(&c.to_be_bytes());
            let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
            let end = (14 + total).min(f.len());
            let start = 14 + ihl;
            if end <= start {
                return;
            }
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&f[26..30]).unwrap());
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&f[30..34]).unwrap());
            let proto = f[23];
            let pseudo = checksum::pseudo_v4(src, dst, proto, (end - start) as u32);
            (start, end, proto, if proto == 1 { 0 } else { pseudo })
        }
        Some([0x86, 0xdd]) if f.len() >= 54 => {
            let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
            let end = (54 + plen).min(f.len());
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&f[22..38]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&f[38..54]).unwrap());
            let proto = f[20];
            let pseudo = checksum::pseudo_v6(src, dst, proto, (end - 54) as u32);
            (54, end, proto, pseudo)
        }
        _ => return,
    };
    let (start, end, proto, pseudo) = l4;
    let at = match proto {
        6 => 16,
        17 => 6,
        1 | 58 => 2,
        _ => return,
    };
    if end < start + at + 2 {
        return;
    }
    f[start + at..start + at + 2].fill(0);
    let c = !checksum::fold(checksum::sum(&f[start..end], pseudo));
    f[start + at..start + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// What came back: frames, and TCP segments carrying the echo
/// service's data (the storm got as far as established connections).
#[derive(Default)]
struct Seen {
    frames: AtomicU64,
    echoed: AtomicU64,
}

/// Read the frames that come back until told to stop, noting where each of the
/// storm's connections stands (`Peer`).
fn reader(mut s: UnixStream, learnt: Learnt, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(f) = read_frame(&mut s, Duration::from_millis(200)) else {
            continue;
        };
        seen.frames.fetch_add(1, Ordering::Relaxed);
        // Where the TCP header starts and the IP packet ends (frames
        // may be padded).
        let (tcp, end) = match f.get(12..14) {
            Some([0x08, 0x00]) if f.get(23) == Some(&6) => (
                14 + usize::from(f[14] & 0x0f) * 4,
                14 + usize::from(u16::from_be_bytes([f[16], f[17]])),
            ),
            Some([0x86, 0xdd]) if f.get(20) == Some(&6) => {
                (54, 54 + usize::from(u16::from_be_bytes([f[18], f[19]])))
            }
            _ => continue,
        };
        let Some(h) = f.get(tcp..tcp + 20) else {
            continue;
        };
        let len = end.saturating_sub(tcp + usize::from(h[12] >> 4) * 4);
        if u16::from_be_bytes([h[0], h[1]]) == ECHO && len > 0 {
            seen.echoed.fetch_add(1, Ordering::Relaxed);
        }
        let port = u16::from_be_bytes([h[2], h[3]]);
        let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let ack = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let (syn, fin) = (h[13] & 0x02 != 0, h[13] & 0x01 != 0);
        let key = (port, f[12] == 0x86);
        if h[13] & 0x04 != 0 {
            learnt.lock().unwrap().remove(&key);
        } else if h[13] & 0x10 != 0 {
            // At most 64 KiB.
            let sent = seq
                .wrapping_add(len as u32)
                .wrapping_add(u32::from(syn) + u32::from(fin));
            let p = Peer { expects: ack, sent };
            learnt.lock().unwrap().insert(key, p);
        }
    }
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The host's echo service, started in `host`.
fn echo_service(host: &Host, dir: &TempDir) -> Reaped {
    let srv = script(dir, "echo.py", ECHO_SERVER);
    let r = Reaped(
        host.ns
            .cmd("python3")
            .arg(&srv)
            .arg(ECHO.to_string())
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    listening(&host.ns, ECHO);
    r
}

/// Throw the storm at the guest's end of `s`, with `who` (passt or
/// pasta, process `pid`) on the other; check that it stayed up and
/// small and that data came back through the storm's connections.
/// Returns the storm, for the frames a well-behaved guest sends next.
fn storm(s: &UnixStream, who: &str, pid: i32) -> Storm {
    let seed = std::env::var("PASST_RS_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("{who}: storm seed {seed} (PASST_RS_STORM_SEED={seed} to replay)");
    let learnt = Learnt::default();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let rd = {
        let (s, learnt, stop, seen) = (
            s.try_clone().unwrap(),
            learnt.clone(),
            stop.clone(),
            seen.clone(),
        );
        std::thread::spawn(move || reader(s, learnt, stop, seen))
    };
    let mut storm = Storm {
        rng: Rng(seed),
        link: Link {
            src: GUEST_MAC,
            dst: Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]),
        },
        v4: (
            HOST_ADDR4.parse().unwrap(),
            HOST_GW4.parse().unwrap(),
            HOST_REMOTE4.parse().unwrap(),
        ),
        v6: (
            HOST_ADDR6.parse().unwrap(),
            HOST_GW6.parse().unwrap(),
            HOST_REMOTE6.parse().unwrap(),
        ),
        learnt,
    };
    let mut w = BufWriter::with_capacity(256 * 1024, s.try_clone().unwrap());
    let mut f = Vec::with_capacity(2048);
    let (mut sent, mut peak) = (0u64, 0u64);
    let secs = std::env::var("PASST_RS_STORM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        for _ in 0..256 {
            storm.frame(&mut f);
            w.write_all(&framed(&f)).unwrap();
            sent += 1;
        }
        w.flush().unwrap();
        assert!(alive(pid), "{who} died in the storm (seed {seed})");
        peak = peak.max(rss_kib(pid));
    }
    drop(w);
    // Let the last of it play out: timers, the host's answers.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    rd.join().unwrap();
    eprintln!(
        "{who}: {sent} frames sent, {} received, {} of them echoed data, peak RSS {peak} KiB",
        seen.frames.load(Ordering::Relaxed),
        seen.echoed.load(Ordering::Relaxed),
    );
    assert!(alive(pid), "{who} died after the storm (seed {seed})");
    assert!(
        peak < 64 * 1024,
        "{who}'s memory grew to {peak} KiB (seed {seed})"
    );
    // Else the storm no longer reaches established connections, and this
    // test would pass without testing much.
    assert!(
        seen.echoed.load(Ordering::Relaxed) > 0,
        "{who}: no data came back through the storm's connections (seed {seed})"
    );
    storm
}

#[test]
fn a_storm_of_almost_right_frames_leaves_passt_up_and_serving() {
    let host = Host::new();
    let dir = TempDir::new();
    let _srv = echo_service(&host, &dir);
    let d = Daemon::start(&host, &dir, &[]);
    let mut s = connect(&d.socket);
    let storm = storm(&s, "passt", d.pid);
    // A well-behaved guest is still served on the same connection, and
    // so is the next guest once this one has gone with its flows in
    // whatever state the storm left them.
    if let Err(e) = well_behaved(&mut s, &storm, 45000) {
        panic!("after the storm: {e}");
    }
    drop(s);
    let mut s = connect(&d.socket);
    if let Err(e) = well_behaved(&mut s, &storm, 45001) {
        panic!("for the next guest: {e}");
    }
}

/// Frames between a stream with qemu's framing and pasta's tap, through
/// an `AF_PACKET` socket in pasta's namespace: `bridge.py IFNAME PATH`
/// listens on `PATH`, prints `ready`, and serves one connection.
/// Frames the namespace sends itself (ours included) are left out.
const TAP_BRIDGE: &str = r#"
import socket, struct, sys, threading
ifname, path = sys.argv[1], sys.argv[2]
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
p.bind((ifname, 0))
p.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
l = socket.socket(socket.AF_UNIX)
l.bind(path)
l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
def to_tap():
    f = c.makefile("rb", buffering=1 << 20)
    while True:
        h = f.read(4)
        if len(h) < 4:
            break
        d = f.read(struct.unpack(">I", h)[0])
        try:
            p.send(d)
        except OSError:
            pass
threading.Thread(target=to_tap, daemon=True).start()
while True:
    d, a = p.recvfrom(1 << 17)
    if a[2] != socket.PACKET_OUTGOING:
        c.sendall(struct.pack(">I", len(d)) + d)
"#;

#[test]
fn a_storm_of_almost_right_frames_leaves_pasta_up_and_serving() {
    let host = Host::new();
    let dir = TempDir::new();
    let _srv = echo_service(&host, &dir);
    let p = AttachedPasta::start(&host, &[]);
    // The namespace's own stack would answer pasta's frames for the
    // storm's connections with resets: it sees none of them.
    p.ns.sh("nft add table inet storm && \
         nft add chain inet storm i '{ type filter hook input priority 0; }' && \
         nft add rule inet storm i iifname eth0 drop");
    let bridge = script(&dir, "bridge.py", TAP_BRIDGE);
    let path = dir.join("tap.socket");
    let mut b =
        p.ns.cmd("python3")
            .arg(&bridge)
            .arg("eth0")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(b.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    let _b = Reaped(b);
    assert_eq!(ready.trim(), "ready");
    let mut s = connect(&path);
    let storm = storm(&s, "pasta", p.pid);
    if let Err(e) = well_behaved(&mut s, &storm, 45000) {
        panic!("after the storm: {e}");
    }
}

/// Whether passt or pasta answers a guest's ARP request, and a SYN from
/// `port` to the echo service with a SYN-ACK.
fn well_behaved(s: &mut UnixStream, storm: &Storm, port: u16) -> Result<(), &'static str> {
    s.write_all(&framed(&arp_request([192, 0, 2, 1]))).unwrap();
    read_arp(s, Duration::from_secs(2)).ok_or("no ARP answer")?;
    let hdr = TcpRepr {
        src_port: port,
        dst_port: ECHO,
        seq: 1,
        flags: Flags::SYN,
        window: 65535,
        mss: Some(1460),
        ..Default::default()
    };
    let mut syn = [0u8; 128];
    let (link, (guest, _, remote)) = (storm.link, storm.v4);
    let n = compose::tcp4(&mut syn, link, guest, remote, &hdr, Csum::Full, |_| 0);
    s.write_all(&framed(&syn[..n])).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let Some(f) = read_frame(s, Duration::from_secs(1)) else {
            continue;
        };
        // IPv4 without options, as we build them: flags at byte 47.
        if f.get(12..14) == Some(&[0x08, 0x00])
            && f.get(23) == Some(&6)
            && f.get(36..38) == Some(&port.to_be_bytes()[..])
            && f.get(47).is_some_and(|fl| fl & 0x12 == 0x12)
        {
            return Ok(());
        }
    }
    Err("no SYN-ACK")
}
