//! pasta at `-m 1500` with the tap's virtio-net offloads: bulk TCP both
//! ways, IPv4 and IPv6, compared by SHA-256; UDP both ways; and proof that
//! the offloads are in use: pasta's `-d` log says so and the capture (`-p`)
//! holds valid frames larger than the MTU in both directions; the
//! checksums left partial are right once the kernel completes them; and
//! bursts of UDP datagrams from the host, sent as runs in one frame
//! (Linux 6.2 and later), and one frame each as with `PASST_RS_NO_USO`
//! or older kernels, reach the namespace whole and in order, as do the
//! namespace's segmented sends (`UDP_SEGMENT`) at the host, read as one
//! frame where the tap takes USO.
//!
//! `scripts/test` runs this file again with `PASST_RS_NO_OFFLOAD` set:
//! the same transfers on the plain tap, whose capture then never holds a
//! frame above the MTU.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

/// Whether this run forces the path without offloads.
fn forced_off() -> bool {
    std::env::var_os("PASST_RS_NO_OFFLOAD").is_some()
}

fn sha256(p: &Path) -> String {
    let out = sh(&format!("sha256sum {}", p.display()));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// pasta at `-m 1500` with `extra` arguments, its IPv6 default route up.
fn pasta(host: &Host, extra: &[&str]) -> AttachedPasta {
    pasta_env(host, extra, false)
}

/// `pasta`, with `PASST_RS_NO_USO` set if `no_uso`.
fn pasta_env(host: &Host, extra: &[&str], no_uso: bool) -> AttachedPasta {
    let mut args = vec!["-m", "1500"];
    args.extend_from_slice(extra);
    let env: &[(&str, &str)] = if no_uso {
        &[("PASST_RS_NO_USO", "1")]
    } else {
        &[]
    };
    let p = AttachedPasta::start_with(
        host,
        &args,
        PastaOpts {
            env,
            ..PastaOpts::default()
        },
    );
    assert!(wait_for(Duration::from_secs(5), || {
        p.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    p
}

/// `mib` MiB up from the namespace to `addr` (socat's family `fam`) and
/// the same file back down, each compared by SHA-256.
fn both_ways(host: &Host, p: &AttachedPasta, dir: &TempDir, fam: &str, addr: &str, mib: usize) {
    let src = random_file(dir, &format!("src{fam}"), mib);
    let want = sha256(&src);
    let up = dir.join(&format!("up{fam}"));
    let _s = socat_server(
        &host.ns,
        &[
            "-u",
            &format!("{fam}-LISTEN:7401,bind={addr},reuseaddr"),
            &format!("CREATE:{}", up.display()),
        ],
    );
    let bracketed = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    };
    let t = Instant::now();
    p.ns.sh(&format!(
        "timeout 60 socat -u OPEN:{} {fam}:{bracketed}:7401",
        src.display()
    ));
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::fs::metadata(&up).is_ok_and(|m| m.len() == (mib << 20) as u64)
        }),
        "{fam}: the host got {mib} MiB"
    );
    assert_eq!(sha256(&up), want, "{fam}: namespace to host differs");
    eprintln!("{mib} MiB {fam} namespace -> host in {:?}", t.elapsed());

    let down = dir.join(&format!("down{fam}"));
    let _s2 = socat_server(
        &host.ns,
        &[
            "-u",
            &format!("OPEN:{}", src.display()),
            &format!("{fam}-LISTEN:7402,bind={addr},reuseaddr"),
        ],
    );
    let t = Instant::now();
    p.ns.sh(&format!(
        "timeout 60 socat -u {fam}:{bracketed}:7402 CREATE:{}",
        down.display()
    ));
    assert_eq!(sha256(&down), want, "{fam}: host to namespace differs");
    eprintln!("{mib} MiB {fam} host -> namespace in {:?}", t.elapsed());
}

#[test]
fn bulk_tcp_at_mtu_1500_both_ways() {
    let host = Host::new();
    let dir = TempDir::new();
    let p = pasta(&host, &["-q"]);
    both_ways(&host, &p, &dir, "TCP4", HOST_REMOTE4, 64);
    both_ways(&host, &p, &dir, "TCP6", HOST_REMOTE6, 16);
}

/// Frames of a classic pcap file: (source MAC is ours, frame).
fn pcap_frames(file: &Path) -> Vec<(bool, Vec<u8>)> {
    let b = std::fs::read(file).unwrap();
    assert!(b.len() >= 24, "pcap global header");
    assert_eq!(&b[0..4], &0xa1b2_c3d4u32.to_ne_bytes());
    let ours = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_ne_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        let orig = u32::from_ne_bytes(b[at + 12..at + 16].try_into().unwrap()) as usize;
        assert_eq!(incl, orig, "whole frames");
        let f = b[at + 16..at + 16 + incl].to_vec();
        out.push((f[6..12] == ours, f));
        at += 16 + incl;
    }
    assert_eq!(at, b.len(), "no partial record");
    out
}

/// An Ethernet frame that is what it says, as a reader of the capture
/// would take it: known EtherType, IP lengths matching the frame, a valid
/// IPv4 header checksum. A frame still behind a virtio-net header fails.
fn assert_valid_frame(f: &[u8]) {
    assert!(f.len() >= 14, "runt in capture");
    let ip = &f[14..];
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0806 => {}
        0x0800 => {
            assert_eq!(ip[0] >> 4, 4);
            let hl = usize::from(ip[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            assert!(total <= ip.len() && hl >= 20 && hl <= total, "IPv4 lengths");
            let mut sum: u32 = 0;
            for w in ip[..hl].chunks(2) {
                sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
            }
            while sum > 0xffff {
                sum = (sum >> 16) + (sum & 0xffff);
            }
            assert_eq!(sum, 0xffff, "IPv4 header checksum");
        }
        0x86dd => {
            assert_eq!(ip[0] >> 4, 6);
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            assert!(40 + plen <= ip.len(), "IPv6 length");
        }
        t => panic!("EtherType {t:#x} in capture"),
    }
}

#[test]
fn offloads_show_in_log_and_capture() {
    let host = Host::new();
    let dir = TempDir::new();
    let log = dir.join("pasta.log");
    let cap = dir.join("cap.pcap");
    let p = pasta(
        &host,
        &[
            "-d",
            "-l",
            log.to_str().unwrap(),
            "-p",
            cap.to_str().unwrap(),
        ],
    );
    both_ways(&host, &p, &dir, "TCP4", HOST_REMOTE4, 4);
    both_ways(&host, &p, &dir, "TCP6", HOST_REMOTE6, 2);
    drop(p);
    let text = std::fs::read_to_string(&log).unwrap();
    let frames = pcap_frames(&cap);
    assert!(frames.len() > 100, "{} frames captured", frames.len());
    for (_, f) in &frames {
        assert_valid_frame(f);
    }
    // Frames above a 1500-byte MTU: super-segments the namespace handed
    // us, and ours to it.
    let big_in = frames.iter().filter(|(o, f)| !o && f.len() > 1514).count();
    let big_out = frames.iter().filter(|(o, f)| *o && f.len() > 1514).count();
    eprintln!("frames above the MTU: {big_in} from the namespace, {big_out} to it");
    if forced_off() {
        assert!(text.contains("tap: no offloads"), "log:\n{text}");
        assert_eq!((big_in, big_out), (0, 0));
    } else {
        assert!(
            text.contains("tap: virtio-net headers, checksum and TCP segmentation offload"),
            "log:\n{text}"
        );
        assert!(big_in > 0, "no super-segment from the namespace");
        assert!(big_out > 0, "no super-segment to the namespace");
    }
}

/// Sends 300 datagrams of distinct content, up to the largest that fits
/// the MTU unfragmented, each after the echo of the one before (a burst
/// would measure buffer sizes), and checks every echo byte for byte.
const UDP_CLIENT: &str = r#"
import os, socket, sys
a, p, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((a, p))
s.settimeout(2.0)
same = 0
for i in range(300):
    d = i.to_bytes(2, 'big') + os.urandom((i * 997) % (top - 1))
    s.send(d)
    try:
        same += s.recv(65535) == d
    except socket.timeout:
        pass
print(same)
"#;

const ECHO_SERVER: &str = r#"
import socket, sys
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((a, p))
while True:
    d, peer = s.recvfrom(65535)
    s.sendto(d, peer)
"#;

/// Run python3 `server` in the host's namespace with `args` until the
/// exchange is over, wait for it to be bound to UDP `port`, and run
/// python3 `client` with the same `args` in `ns`: the client's output.
fn python_exchange(
    host: &Host,
    ns: &Netns,
    server: &str,
    client: &str,
    args: &[&str],
    port: u16,
) -> std::process::Output {
    let _server = Reaped(
        host.ns
            .cmd("python3")
            .args(["-c", server])
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    udp_bound(&host.ns, port);
    ns.cmd("python3")
        .args(["-c", client])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn udp_both_ways_at_mtu_1500() {
    let host = Host::new();
    let p = pasta(&host, &["-q"]);
    for (addr, port, top) in [(HOST_REMOTE4, 7411u16, 1472), (HOST_REMOTE6, 7412, 1452)] {
        let args = [addr, &port.to_string(), &top.to_string()];
        let out = python_exchange(&host, &p.ns, ECHO_SERVER, UDP_CLIENT, &args, port);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "300",
            "{addr}: every datagram echoed intact"
        );
    }
}

/// A namespace behind pasta's: `c0` (10.99.0.2) on a veth pair whose
/// pasta side, `p0`, computes checksums in software (tx offload off), so
/// every checksum we leave partial is completed by the kernel there and
/// verified by the receiving stack. pasta's namespace routes and
/// masquerades, as a container host inside it would.
fn routed_behind(p: &AttachedPasta) -> Netns {
    let c = Netns::new("prs-c");
    p.ns.sh(&format!(
        "ip link add p0 type veth peer name c0 netns {c} && \
         ip addr add 10.99.0.1/24 dev p0 && ip link set p0 up && \
         ethtool -K p0 tx off >/dev/null && \
         sysctl -qw net.ipv4.ip_forward=1 && \
         nft add table ip prs && \
         nft add chain ip prs post '{{ type nat hook postrouting priority 100; }}' && \
         nft add rule ip prs post oifname eth0 masquerade",
        c = c.name
    ));
    c.sh("ip addr add 10.99.0.2/24 dev c0 && ip link set c0 up && ip route add default via 10.99.0.1");
    c
}

/// Kernel counters of packets dropped for a bad checksum in `ns`.
fn csum_errors(ns: &Netns) -> u64 {
    ns.sh(
        "nstat -az UdpInCsumErrors TcpInCsumErrors | awk 'NR > 1 { s += $2 } END { print s + 0 }'",
    )
    .trim()
    .parse()
    .unwrap_or(u64::MAX)
}

#[test]
fn checksums_left_to_the_kernel_come_out_right_when_forwarded() {
    let host = Host::new();
    let p = pasta(&host, &[]);
    let c = routed_behind(&p);
    let _udp = socat_server(&host.ns, &["UDP4-RECVFROM:7310,fork", "PIPE"]);
    // UDP: replies leave pasta with partial checksums.
    let r = c.sh(
        "python3 -c 'import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\ns.connect((\"203.0.113.1\",7310))\nok=0\nfor n in (1,100,1000,1400):\n    d=bytes(range(256))*6\n    s.send(d[:n])\n    try:\n        ok+=s.recv(9000)==d[:n]\n    except socket.timeout:\n        pass\nprint(ok)'",
    );
    assert_eq!(r.trim(), "4", "UDP echoes through the routed namespace");
    // Runs of datagrams sent as one super-datagram: split, and their
    // checksums completed, by the kernel at p0, then verified at c0.
    let (want, got, same) = burst(&host, &c, HOST_REMOTE4, 7312);
    assert_eq!(
        (got, same),
        (want, want),
        "datagrams got, the same in order through the routed namespace"
    );
    // TCP: 8 MiB down from the host in super-segments, cut and summed by
    // the kernel at p0.
    let dir = TempDir::new();
    let src = random_file(&dir, "src", 8);
    let down = dir.join("down");
    let _tcp = socat_server(
        &host.ns,
        &[
            &format!("OPEN:{}", src.display()),
            "TCP4-LISTEN:7311,reuseaddr",
        ],
    );
    c.sh(&format!(
        "timeout 30 socat -u TCP4:203.0.113.1:7311 CREATE:{}",
        down.display()
    ));
    assert_eq!(
        sha256(&down),
        sha256(&src),
        "TCP through the routed namespace"
    );
    assert_eq!(csum_errors(&c), 0, "checksum errors behind pasta");
}

/// For the python3 receivers of datagram patterns: "wanted got same",
/// the number of datagrams wanted, got, and got as wanted in order from
/// the first.
const TALLY: &str = r#"
def tally(got, want):
    same = 0
    while same < min(len(got), len(want)) and got[same] == want[same]:
        same += 1
    return '%d %d %d' % (len(want), len(got), same)
"#;

/// The datagrams `BURST_SERVER` sends and `BURST_CLIENT` expects, in
/// order: runs of equal sizes, each ended by a shorter one or a longer
/// one, an empty one and single bytes among them; each begins with its
/// index where it is long enough, the rest of it a pattern of the index.
const BURST_PATTERN: &str = r#"
def pattern():
    sizes = []
    for r in range(20):
        sizes += [1400] * 40 + [700, 0] + [300] * 30 + [1400] * 5 + [1, 1]
    out = []
    for i, n in enumerate(sizes):
        d = (i.to_bytes(4, 'big') + bytes([i % 251]) * n)[:n]
        out.append(d)
    return out
"#;

/// Host side: waits for the namespace's "go", then sends it every
/// datagram of the pattern, a round of 79 at a time as fast as it can,
/// with a pause between rounds so no buffer on the way overflows.
const BURST_SERVER: &str = r#"
import socket, sys, time
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((a, p))
_, peer = s.recvfrom(100)
for i, d in enumerate(pattern()):
    s.sendto(d, peer)
    if i % 79 == 78:
        time.sleep(0.01)
"#;

/// Namespace side: asks for the pattern, takes everything until the
/// host is quiet for a second, and says how much of it came as sent.
const BURST_CLIENT: &str = r#"
import socket, sys
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE
s.connect((a, p))
s.send(b'go')
s.settimeout(1.0)
got = []
try:
    while True:
        got.append(s.recv(65535))
except socket.timeout:
    pass
print(tally(got, pattern()))
"#;

/// pasta's last count of datagrams joined to a run, from its `--stats`
/// lines in `log`.
fn joined(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("UDP datagrams joined to runs "))?;
    let rest = line.split("UDP datagrams joined to runs ").nth(1)?;
    rest.split(';').next()?.trim().parse().ok()
}

/// The burst pattern from the host's `addr`:`port` to a client in `ns`:
/// datagrams wanted, got, and the same as wanted in order from the first.
fn burst(host: &Host, ns: &Netns, addr: &str, port: u16) -> (usize, usize, usize) {
    let out = python_exchange(
        host,
        ns,
        &format!("{BURST_PATTERN}{BURST_SERVER}"),
        &format!("{TALLY}{BURST_PATTERN}{BURST_CLIENT}"),
        &[addr, &port.to_string()],
        port,
    );
    let said = String::from_utf8_lossy(&out.stdout);
    match said
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<usize>, _>>()
    {
        Ok(n) if n.len() == 3 => (n[0], n[1], n[2]),
        _ => panic!("burst: {said}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn udp_runs_from_the_host_arrive_one_datagram_at_a_time_as_sent() {
    let host = Host::new();
    for no_uso in [false, true] {
        let dir = TempDir::new();
        let log = dir.join("pasta.log");
        let p = pasta_env(
            &host,
            &["-d", "-l", log.to_str().unwrap(), "--stats", "1"],
            no_uso,
        );
        for (addr, port) in [(HOST_REMOTE4, 7421u16), (HOST_REMOTE6, 7422)] {
            let (want, got, same) = burst(&host, &p.ns, addr, port);
            assert_eq!(
                (got, same),
                (want, want),
                "{addr} (USO off: {no_uso}): datagrams got, the same in order"
            );
        }
        // The stats line comes within a second of the last change.
        let mut merged = None;
        wait_for(Duration::from_secs(3), || {
            merged = joined(&log);
            merged.is_some()
        });
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let merged = merged.unwrap_or_else(|| panic!("no stats line:\n{text}"));
        eprintln!("USO off: {no_uso}: {merged} datagrams joined to runs");
        if forced_off() || no_uso {
            assert_eq!(merged, 0);
        } else {
            assert!(
                text.contains("UDP super-datagrams both ways"),
                "log:\n{text}"
            );
            assert!(merged > 0, "no run of datagrams sent as one frame");
        }
    }
}

/// The datagrams `GSO_SENDER` sends with `UDP_SEGMENT` (30 sends of 19
/// datagrams of 1000 bytes and one of 500 each) and `GSO_RECEIVER`
/// expects, in order, each starting with its index.
const GSO_PATTERN: &str = r#"
def pattern():
    out = []
    for i in range(30 * 20):
        n = 500 if i % 20 == 19 else 1000
        out.append((i.to_bytes(4, 'big') + bytes([i % 251]) * n)[:n])
    return out
"#;

/// Host side: takes datagrams until "done", then answers with how many
/// it got and how many of them, from the first, are the pattern's.
const GSO_RECEIVER: &str = r#"
import socket, sys
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE
s.bind((a, p))
got = []
while True:
    d, peer = s.recvfrom(65535)
    if d == b'done':
        break
    got.append(d)
s.sendto(tally(got, pattern()).encode(), peer)
"#;

/// Namespace side: the pattern, 20 datagrams per `send` with
/// `UDP_SEGMENT`, then "done", and prints the host's answer.
const GSO_SENDER: &str = r#"
import socket, sys, time
a, p = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)
s.connect((a, p))
s.setsockopt(17, 103, 1000)  # SOL_UDP, UDP_SEGMENT
want = pattern()
for k in range(0, len(want), 20):
    s.send(b''.join(want[k:k + 20]))
    time.sleep(0.005)
time.sleep(0.3)
s.setsockopt(17, 103, 0)
s.send(b'done')
s.settimeout(3)
print(s.recv(100).decode())
"#;

#[test]
fn segmented_udp_sends_from_the_namespace_arrive_one_datagram_at_a_time() {
    let host = Host::new();
    for no_uso in [false, true] {
        let dir = TempDir::new();
        let cap = dir.join("cap.pcap");
        let p = pasta_env(&host, &["-q", "-p", cap.to_str().unwrap()], no_uso);
        for (addr, port) in [(HOST_REMOTE4, 7431u16), (HOST_REMOTE6, 7432)] {
            let out = python_exchange(
                &host,
                &p.ns,
                &format!("{TALLY}{GSO_PATTERN}{GSO_RECEIVER}"),
                &format!("{GSO_PATTERN}{GSO_SENDER}"),
                &[addr, &port.to_string()],
                port,
            );
            let said = String::from_utf8_lossy(&out.stdout);
            let n: Vec<&str> = said.split_whitespace().collect();
            assert!(
                n.len() == 3 && n[0] == n[1] && n[1] == n[2],
                "{addr} (USO off: {no_uso}): datagrams wanted, got, the same in order: {said}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        drop(p);
        // UDP frames from the namespace above the MTU: runs it handed us
        // whole.
        let runs = pcap_frames(&cap)
            .iter()
            .filter(|(ours, f)| !ours && f.len() > 1514 && is_udp(f))
            .count();
        eprintln!("USO off: {no_uso}: {runs} UDP frames above the MTU from the namespace");
        if forced_off() || no_uso {
            assert_eq!(runs, 0);
        } else {
            assert!(runs > 0, "no run of datagrams came whole");
        }
    }
}

/// Whether an Ethernet frame holds UDP over IPv4 or IPv6 (no extension
/// headers, as the test's are).
fn is_udp(f: &[u8]) -> bool {
    match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => f.get(14 + 9) == Some(&17),
        0x86dd => f.get(14 + 6) == Some(&17),
        _ => false,
    }
}
