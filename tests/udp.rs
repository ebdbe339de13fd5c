//! UDP from a guest and from a pasta namespace to host services, with the
//! address mappings podman relies on (--dns-forward, the gateway as host
//! loopback).

mod support;

use passt_rs::wire::{Mac, compose};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

/// A UDP echo server in `ns` on `addr` (socat, one child per peer).
fn echo_server(ns: &Netns, family: &str, addr: &str, port: u16) -> Reaped {
    socat_server(
        ns,
        &[
            &format!("{family}-RECVFROM:{port},bind={addr},fork"),
            "PIPE",
        ],
    )
}

/// Send `msg` over UDP from inside the guest namespace and return the reply.
fn udp_query(ns: &Netns, family: &str, addr: &str, port: u16, msg: &str) -> String {
    let out = ns.run(&format!("echo {msg} | socat -t 2 - {family}:{addr}:{port}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn guest_udp_to_host_service_v4_and_v6() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    let _s4 = echo_server(&h.ns, "UDP4", HOST_REMOTE4, 5555);
    let _s6 = echo_server(&h.ns, "UDP6", &format!("[{HOST_REMOTE6}]"), 5556);
    assert_eq!(
        udp_query(&g.ns, "UDP4", HOST_REMOTE4, 5555, "hello4"),
        "hello4"
    );
    assert!(wait_for(Duration::from_secs(5), || {
        g.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    assert_eq!(
        udp_query(&g.ns, "UDP6", &format!("[{HOST_REMOTE6}]"), 5556, "hello6"),
        "hello6"
    );
}

#[test]
fn gateway_address_reaches_host_loopback() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    let _s = echo_server(&h.ns, "UDP4", "127.0.0.1", 5557);
    assert_eq!(udp_query(&g.ns, "UDP4", HOST_GW4, 5557, "via-gw"), "via-gw");
}

#[test]
fn no_udp_drops_datagrams() {
    let (h, _dir, _d, g) = routed_guest(&["--no-udp"]);
    let _s = echo_server(&h.ns, "UDP4", HOST_REMOTE4, 5558);
    assert_eq!(udp_query(&g.ns, "UDP4", HOST_REMOTE4, 5558, "x"), "");
}

#[test]
fn pasta_dns_forward_as_podman_sets_it() {
    let host = Host::new();
    // The host's resolver (from its resolv.conf) answers on port 53.
    host.ns.sh("ip addr add 192.0.2.53/32 dev lo");
    let _s = echo_server(&host.ns, "UDP4", "192.0.2.53", 53);
    let out = host
        .pasta(true)
        .args([
            "-q",
            "--config-net",
            "--dns-forward",
            "169.254.1.1",
            "--no-map-gw",
            "--",
        ])
        .args(["sh", "-c", "echo query | socat -t 2 - UDP4:169.254.1.1:53"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "query");
}

/// A UDP echo server in `ns` (python3: unlike socat, it echoes empty
/// datagrams too, and one datagram is always one reply).
fn exact_echo_server(ns: &Netns, addr: &str, port: u16) -> Reaped {
    let c = ns
        .cmd("python3")
        .args(["-c", ECHO_SERVER, addr, &port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let c = Reaped(c);
    udp_bound(ns, port);
    c
}

const ECHO_SERVER: &str = r#"
import socket, sys
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((a, p))
while True:
    d, peer = s.recvfrom(65535)
    if d == b'burst':
        # Many datagrams at once, empty ones among them; few enough to fit
        # the host socket's default receive buffer however slow we read.
        for i in range(100):
            s.sendto(b'b' * (0 if i % 25 == 12 else i * 37 % 700), peer)
    else:
        s.sendto(d, peer)
"#;

/// Datagram lengths sent by `UDP_CLIENT`: empty ones, around the Ethernet
/// MTU, and close to the largest IPv4 datagram.
const SIZES: &str = "0 1 7 100 1000 1472 1473 0 8000 30000 60000 2";

/// Sends one datagram per length in argv[3] (or "burst"), prints the
/// lengths of every datagram received until a second of silence.
const UDP_CLIENT: &str = r#"
import socket, sys
a, p, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 23)  # SO_RCVBUFFORCE
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
s.connect((a, p))
if what == 'burst':
    s.send(b'burst')
else:
    for n in what.split():
        s.send(b'x' * int(n))
s.settimeout(1.0)
got = []
try:
    while True:
        got.append(len(s.recv(65535)))
except socket.timeout:
    pass
print(' '.join(map(str, got)))
"#;

/// The burst `ECHO_SERVER` sends, as lengths.
fn burst_sizes() -> String {
    (0..100)
        .map(|i| if i % 25 == 12 { 0 } else { i * 37 % 700 }.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A list of lengths in ascending order: UDP may reorder datagrams (a tap
/// write lands in the backlog of whichever CPU the writer runs on), but
/// every one must arrive exactly once.
fn sorted(lengths: &str) -> Vec<usize> {
    let mut v: Vec<usize> = lengths
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// Run `UDP_CLIENT` in the guest namespace.
fn guest_udp_client(ns: &Netns, addr: &str, port: u16, what: &str) -> String {
    let out = ns
        .cmd("python3")
        .args(["-c", UDP_CLIENT, addr, &port.to_string(), what])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn every_datagram_arrives_once_with_its_length() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    // Large datagrams go out whole rather than as fragments, which we drop.
    g.ns.sh("ip link set eth0 mtu 65520");
    let _s4 = exact_echo_server(&h.ns, HOST_REMOTE4, 6000);
    let _s6 = exact_echo_server(&h.ns, HOST_REMOTE6, 6001);
    assert_eq!(
        sorted(&guest_udp_client(&g.ns, HOST_REMOTE4, 6000, SIZES)),
        sorted(SIZES)
    );
    assert_eq!(
        sorted(&guest_udp_client(&g.ns, HOST_REMOTE4, 6000, "burst")),
        sorted(&burst_sizes())
    );
    assert!(wait_for(Duration::from_secs(5), || {
        g.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    assert_eq!(
        sorted(&guest_udp_client(&g.ns, HOST_REMOTE6, 6001, SIZES)),
        sorted(SIZES)
    );
    assert_eq!(
        sorted(&guest_udp_client(&g.ns, HOST_REMOTE6, 6001, "burst")),
        sorted(&burst_sizes())
    );
}

#[test]
fn every_datagram_arrives_once_with_its_length_pasta() {
    let host = Host::new();
    let _s4 = exact_echo_server(&host.ns, HOST_REMOTE4, 6002);
    let _s6 = exact_echo_server(&host.ns, HOST_REMOTE6, 6003);
    let p = AttachedPasta::start(&host, &["-q"]);
    assert!(wait_for(Duration::from_secs(5), || {
        p.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    for (addr, port) in [(HOST_REMOTE4, 6002), (HOST_REMOTE6, 6003)] {
        assert_eq!(
            sorted(&guest_udp_client(&p.ns, addr, port, SIZES)),
            sorted(SIZES),
            "{addr}"
        );
        assert_eq!(
            sorted(&guest_udp_client(&p.ns, addr, port, "burst")),
            sorted(&burst_sizes()),
            "{addr}"
        );
    }
}

/// Once a datagram arrives, floods its sender with 1000-byte datagrams
/// that start with the send time (CLOCK_MONOTONIC, ns, big-endian), about
/// 10 MB/s, until killed.
const FLOOD_SERVER: &str = r#"
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
_, peer = s.recvfrom(100)
pad = b'f' * 992
while True:
    for _ in range(50):
        s.sendto(struct.pack('!Q', time.monotonic_ns()) + pad, peer)
    time.sleep(0.005)
"#;

/// CLOCK_MONOTONIC now, in ns, as python's time.monotonic_ns() tells it.
fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The send time `FLOOD_SERVER` put in a frame, if it is one of its
/// datagrams.
fn flood_stamp(f: &[u8]) -> Option<u64> {
    let is_flood = f.get(12..14) == Some(&[0x08, 0x00][..])
        && f.get(23) == Some(&17)
        && f.get(26..30) == Some(&[203, 0, 113, 1][..])
        && f.get(34..36) == Some(&6100u16.to_be_bytes()[..]);
    if !is_flood {
        return None;
    }
    Some(u64::from_be_bytes(f.get(42..50)?.try_into().ok()?))
}

#[test]
fn guest_that_stops_reading_costs_no_cpu() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    let _flood = Reaped(
        host.ns
            .cmd("python3")
            .args(["-c", FLOOD_SERVER, HOST_REMOTE4, "6100"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    udp_bound(&host.ns, 6100);
    let mut c = connect(&d.socket);
    let mut frame = vec![0u8; 100];
    let n = compose::udp4(
        &mut frame,
        compose::Link {
            src: Mac([2, 0, 0, 0, 0, 1]),
            dst: Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]),
        },
        SocketAddrV4::new(HOST_ADDR4.parse::<Ipv4Addr>().unwrap(), 40000),
        SocketAddrV4::new(HOST_REMOTE4.parse::<Ipv4Addr>().unwrap(), 6100),
        |p| {
            p[..2].copy_from_slice(b"go");
            Some(2)
        },
    );
    c.write_all(&framed(&frame[..n])).unwrap();
    // The guest reads nothing: passt's queue and the socket between us
    // fill within a second at this rate, and stay full.
    std::thread::sleep(Duration::from_millis(1500));
    let before = cpu_time(d.pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(d.pid) - before;
    assert!(
        used < Duration::from_millis(200),
        "passt used {used:?} of CPU in 2 s with a guest not reading"
    );
    // Reading again: past what was queued, new datagrams arrive.
    let resumed = monotonic_ns();
    let until = Instant::now() + Duration::from_secs(5);
    let mut fresh = false;
    while !fresh && Instant::now() < until {
        let Some(f) = read_frame(&mut c, Duration::from_secs(1)) else {
            break;
        };
        fresh = flood_stamp(&f).is_some_and(|t| t > resumed);
    }
    assert!(fresh, "no new datagram after the guest read again");
}

/// Sends one datagram on a connected socket and tells how the reply came:
/// "refused SECONDS" (ICMP port unreachable), "reply" or "timeout".
const REFUSED_CLIENT: &str = r#"
import socket, sys, time
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((a, p))
s.settimeout(3)
t = time.monotonic()
s.send(b'anyone there?')
try:
    s.recv(100)
    print('reply')
except ConnectionRefusedError:
    print('refused %.3f' % (time.monotonic() - t))
except socket.timeout:
    print('timeout')
"#;

/// Seconds until a datagram from `ns` to a closed port at `addr` is
/// refused, panicking if it isn't.
fn refused_after(ns: &Netns, addr: &str, port: u16) -> f64 {
    let out = ns
        .cmd("python3")
        .args(["-c", REFUSED_CLIENT, addr, &port.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let secs = text
        .trim()
        .strip_prefix("refused ")
        .and_then(|s| s.parse().ok());
    secs.unwrap_or_else(|| panic!("{addr}: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn closed_port_is_refused_v4_and_v6() {
    let cap = TempDir::new();
    let pcap = cap.join("errors.pcap");
    let (_h, _dir, _d, g) = routed_guest(&["-p", pcap.to_str().unwrap()]);
    assert!(refused_after(&g.ns, HOST_REMOTE4, 6200) < 1.0);
    // The host's loopback, through the gateway address.
    assert!(refused_after(&g.ns, HOST_GW4, 6201) < 1.0);
    assert!(wait_for(Duration::from_secs(5), || {
        g.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    assert!(refused_after(&g.ns, HOST_REMOTE6, 6202) < 1.0);
    // Each error comes from the address the guest sent to, and quotes the
    // guest's datagram (tcpdump decodes the quote).
    let out = sh(&format!("tcpdump -nn -r {} icmp or icmp6", pcap.display()));
    for want in [
        format!("{HOST_REMOTE4} > {HOST_ADDR4}: ICMP {HOST_REMOTE4} udp port 6200 unreachable"),
        format!("{HOST_GW4} > {HOST_ADDR4}: ICMP {HOST_GW4} udp port 6201 unreachable"),
        format!("{HOST_REMOTE6} > "),
    ] {
        assert!(out.contains(&want), "{want} in:\n{out}");
    }
    assert!(out.contains("unreachable port"), "{out}");
}

#[test]
fn closed_port_is_refused_pasta() {
    let host = Host::new();
    let p = AttachedPasta::start(&host, &["-q"]);
    assert!(wait_for(Duration::from_secs(5), || {
        p.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    assert!(refused_after(&p.ns, HOST_REMOTE4, 6203) < 1.0);
    assert!(refused_after(&p.ns, HOST_REMOTE6, 6204) < 1.0);
}

/// Two UDP sinks in one process: each keeps what arrives on its port
/// and, on "done", answers how many datagrams came and whether every
/// one was its own (tagged with its port) with intact content.
const TWO_SINKS: &str = r#"
import select, socket, sys
a, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
fam = socket.AF_INET6 if ':' in a else socket.AF_INET
socks = {}
for p in ports:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    # Room for every datagram however slowly we read (root: past rmem_max).
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 23)  # SO_RCVBUFFORCE
    s.bind((a, p))
    socks[s] = (p, set(), [True])
while True:
    for s in select.select(list(socks), [], [])[0]:
        d, peer = s.recvfrom(65535)
        p, seen, ok = socks[s]
        if d == b'done':
            s.sendto(b'%d %s' % (len(seen), b'ok' if ok[0] else b'bad'), peer)
            seen.clear()
            ok[0] = True
            continue
        tag, n, size = d[:16].split(b' ')[:3]
        ok[0] = ok[0] and int(tag) == p and len(d) == int(size) and (n, size) not in seen
        seen.add((n, size))
"#;

/// From two sockets in turn, in quick bursts, `count` datagrams each of
/// assorted sizes, to two ports of one address; then "done" to each,
/// printing the two answers.
const TWO_SENDERS: &str = r#"
import socket, sys, time
a, p1, p2, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ':' in a else socket.AF_INET
ss = []
for p in (p1, p2):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    s.connect((a, p))
    ss.append((s, p))
for i in range(count):
    for k, (s, p) in enumerate(ss):
        size = 40 + (i * 131 + k * 17) % 1300
        head = b'%d %d %d ' % (p, i, size)
        s.send(head + b'x' * (size - len(head)))
    # Bursts of 40 that the tap's queue always holds, never a flood.
    if i % 20 == 19:
        time.sleep(0.002)
out = []
for s, p in ss:
    s.settimeout(2)
    s.send(b'done')
    out.append(s.recv(100).decode())
print(' / '.join(out))
"#;

/// Datagrams of two flows interleaved in the same tap reads (they leave
/// in batches per flow) each reach their own socket, once, whole.
fn interleaved_flows(ns: &Netns, host: &Netns, addr: &str, ports: (u16, u16)) {
    let sinks = host
        .cmd("python3")
        .args([
            "-c",
            TWO_SINKS,
            addr,
            &ports.0.to_string(),
            &ports.1.to_string(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _sinks = Reaped(sinks);
    udp_bound(host, ports.0);
    udp_bound(host, ports.1);
    let out = ns
        .cmd("python3")
        .args([
            "-c",
            TWO_SENDERS,
            addr,
            &ports.0.to_string(),
            &ports.1.to_string(),
            "400",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.trim(), "400 ok / 400 ok", "{addr}");
}

#[test]
fn interleaved_flows_keep_their_own_datagrams() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    interleaved_flows(&g.ns, &h.ns, HOST_REMOTE4, (6010, 6011));
    let host = Host::new();
    let p = AttachedPasta::start(&host, &["-q"]);
    interleaved_flows(&p.ns, &host.ns, HOST_REMOTE4, (6012, 6013));
    assert!(wait_for(Duration::from_secs(5), || {
        p.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    interleaved_flows(&p.ns, &host.ns, HOST_REMOTE6, (6014, 6015));
}

/// Watches `lo` in its namespace for UDP to port argv[1] and, once a
/// datagram starting with "done" goes by, prints the longest UDP length
/// it saw there: longer than any datagram sent means a segmented send.
const LO_SNIFFER: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(('lo', 0))
print('ready', flush=True)
longest = 0
while True:
    d = s.recv(128)
    if len(d) < 28 or d[9] != 17:
        continue
    ihl = (d[0] & 15) * 4
    _, dport, ulen = struct.unpack('!HHH', d[ihl:ihl + 6])
    if dport != port:
        continue
    if d[ihl + 8:ihl + 12] == b'done':
        print(longest, flush=True)
        break
    longest = max(longest, ulen)
"#;

/// Bursts of `count` datagrams from one socket: `size` bytes each, the
/// last of every burst of 40 half as long; then "done", printing the
/// sink's answer.
const EQUAL_BURSTS: &str = r#"
import socket, sys, time
a, p, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
s.connect((a, p))
out = []
for i in range(count):
    n = size if i % 40 != 39 else size // 2
    head = b'%d %d %d ' % (p, i, n)
    out.append(head + b'x' * (n - len(head)))
for i in range(0, count, 40):
    for d in out[i:i + 40]:
        s.send(d)
    time.sleep(0.005)
s.settimeout(2)
s.send(b'done')
print(s.recv(100).decode())
"#;

/// The guest's bursts of equal datagrams to `addr`:`port` in the host
/// namespace: the sink gets every one, whole and its own; and, seen on
/// the host's `lo` (IPv4), some crossed the stack as one segmented send.
fn equal_bursts(ns: &Netns, host: &Netns, addr: &str, port: u16) {
    let sink = host
        .cmd("python3")
        .args(["-c", TWO_SINKS, addr, &port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let _sink = Reaped(sink);
    let v4 = !addr.contains(':');
    let mut sniffer = v4.then(|| {
        let mut c = host
            .cmd("python3")
            .args(["-c", LO_SNIFFER, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        (Reaped(c), out)
    });
    udp_bound(host, port);
    let out = ns
        .cmd("python3")
        .args(["-c", EQUAL_BURSTS, addr, &port.to_string(), "800", "1000"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.trim(), "800 ok", "{addr}");
    if let Some((_c, out)) = sniffer.as_mut() {
        let mut line = String::new();
        std::io::BufRead::read_line(out, &mut line).unwrap();
        let longest: usize = line.trim().parse().unwrap();
        assert!(longest > 1008, "no segmented send: longest UDP {longest}");
    }
}

#[test]
fn equal_datagrams_in_bursts_go_segmented_and_arrive_whole() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    equal_bursts(&g.ns, &h.ns, HOST_REMOTE4, 6020);
    let host = Host::new();
    let p = AttachedPasta::start(&host, &["-q"]);
    equal_bursts(&p.ns, &host.ns, HOST_REMOTE4, 6021);
    assert!(wait_for(Duration::from_secs(5), || {
        p.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    equal_bursts(&p.ns, &host.ns, HOST_REMOTE6, 6022);
}
