//! The flow table at scale, through pasta against the real kernel:
//! thousands of concurrent TCP connections and UDP flows, every socket
//! given back afterwards, and a guest flooding the table with handshakes
//! that never complete and datagrams to thousands of ports, which must
//! not keep an ordinary connection out.
//!
//! Sizes follow the table's reserves and shared pool, which pasta logs
//! with `-d` (they come from the open files limit: this machine's may be
//! low).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

const TCP_PORT: u16 = 7300;
const UDP_PORT: u16 = 7301;
/// Blackholed on the host (nftables drops everything to it): SYNs there
/// stay in the handshake until we give up.
const BLACKHOLE: &str = "198.51.100";

/// A TCP echo server for thousands of connections at once; writes
/// `ready` once listening.
const TCP_ECHO: &str = r#"
import asyncio, resource, sys
addr, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def handle(r, w):
    try:
        while True:
            b = await r.read(65536)
            if not b:
                break
            w.write(b)
            await w.drain()
    except ConnectionError:
        pass
    finally:
        w.close()
async def main():
    srv = await asyncio.start_server(handle, addr, port, backlog=4096)
    open(ready, 'w').close()
    await srv.serve_forever()
asyncio.run(main())
"#;

/// Open N connections, in waves, send each its own 64 bytes, check the
/// echo, hold them all open until `close` appears next to `open`, then
/// close them all. Prints "connected echoed seconds".
const TCP_CLIENT: &str = r#"
import os, resource, selectors, socket, sys, time
n, addr, port, d = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
t0 = time.time()
sel = selectors.DefaultSelector()
socks = []
connected = 0
until = time.time() + 120
# In waves of a thousand, each left open: all n are open at the end.
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((addr, port))
    socks.append(s)
    sel.register(s, selectors.EVENT_WRITE, i)
    if i % 1000 != 999 and i != n - 1:
        continue
    while connected < i + 1 and time.time() < until:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                sys.exit('connect %d: %s' % (key.data, os.strerror(err)))
            sel.unregister(s)
            connected += 1
msg = lambda i: (b'%08d' % i) * 8
got = [b''] * n
for i, s in enumerate(socks):
    s.send(msg(i))
    sel.register(s, selectors.EVENT_READ, i)
echoed = 0
while echoed < n and time.time() < until:
    for key, _ in sel.select(timeout=1):
        i = key.data
        got[i] += key.fileobj.recv(4096)
        if len(got[i]) >= 64:
            if got[i] != msg(i):
                sys.exit('connection %d: wrong echo' % i)
            sel.unregister(key.fileobj)
            echoed += 1
print(connected, echoed, round(time.time() - t0, 1), flush=True)
open(os.path.join(d, 'open'), 'w').close()
while not os.path.exists(os.path.join(d, 'close')) and time.time() < until + 60:
    time.sleep(0.05)
for s in socks:
    s.close()
"#;

/// A UDP echo server.
const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3], 'w').close()
while True:
    b, a = s.recvfrom(2048)
    s.sendto(b, a)
"#;

/// One datagram from each of N source ports (from `base` up), each
/// answered by the echo server; a batch's missing answers are sent again
/// a few times (UDP may drop). Prints "answered sent".
const UDP_CLIENT: &str = r#"
import resource, selectors, socket, sys, time
n, addr, port, base = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', base + i))
    s.setblocking(False)
    socks.append(s)
got = set()
sent = 0
sel = selectors.DefaultSelector()
for start in range(0, n, 200):
    batch = range(start, min(n, start + 200))
    for i in batch:
        sel.register(socks[i], selectors.EVENT_READ, i)
    for attempt in range(6):
        missing = [i for i in batch if i not in got]
        if not missing:
            break
        for i in missing:
            socks[i].sendto(b'%d' % i, (addr, port))
            sent += 1
        until = time.time() + 0.3 * (attempt + 1)
        while time.time() < until and any(i not in got for i in batch):
            for key, _ in sel.select(timeout=0.05):
                if key.fileobj.recv(64) == b'%d' % key.data:
                    got.add(key.data)
    for i in batch:
        sel.unregister(socks[i])
print(len(got), sent, flush=True)
"#;

/// Raw frames on the namespace's tap: SYNs from the guest's address to
/// the blackholed range, N of them from distinct ports, paced so the tap
/// queue keeps up.
const SYN_FLOOD: &str = r#"
import socket, struct, sys, time
n, src, net, ours = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
mac = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))
dst_mac = bytes.fromhex(ours.replace(':', ''))
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
p.bind(('eth0', 0))
sa = socket.inet_aton(src)
for i in range(n):
    da = socket.inet_aton('%s.%d' % (net, 1 + i % 250))
    sport, dport = 1024 + i % 60000, 1 + i // 250
    tcp = struct.pack('!HHIIBBHHH', sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
    c = csum(sa + da + struct.pack('!BBH', 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack('!H', c) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, sa, da)
    ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
    while True:
        try:
            p.send(dst_mac + mac + b'\x08\x00' + ip + tcp)
            break
        except OSError:
            time.sleep(0.01)
    if i % 250 == 249:
        time.sleep(0.02)
"#;

fn spawn(ns: &Netns, cmd: &str) -> Reaped {
    Reaped(
        ns.cmd("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Descriptors pasta holds now.
fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The flow table as pasta logged it with `-d`.
#[derive(Debug, Clone, Copy)]
struct Table {
    capacity: usize,
    /// Reserved per kind: TCP, UDP, ping.
    reserve: [usize; 3],
    /// What the reserves leave, for any kind.
    shared: usize,
    /// Spliced connections (their own reserve only).
    splice: usize,
}

const TCP: usize = 0;
const UDP: usize = 1;
const PING: usize = 2;

impl Table {
    /// Most flows of kind `k`: its reserve and the whole pool.
    fn max(&self, k: usize) -> usize {
        self.reserve[k] + self.shared
    }
}

/// The table's size as pasta logged it, e.g. `flow table: 19872 flows
/// (reserved TCP 2484, UDP 1242, ping 310; 14906 shared; 155 spliced
/// connections, 6 descriptors each) for 20000 open
/// files`.
fn table(log: &Path) -> Table {
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(5), || {
            line = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .find(|l| l.contains("flow table:"))
                .unwrap_or_default()
                .to_string();
            !line.is_empty()
        }),
        "pasta logs its flow table with -d"
    );
    let (_, rest) = line.split_once("flow table:").unwrap();
    let n: Vec<usize> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let t = Table {
        capacity: n[0],
        reserve: [n[1], n[2], n[3]],
        shared: n[4],
        splice: n[5],
    };
    assert_eq!(
        t.reserve.iter().sum::<usize>() + t.shared + n[6] * t.splice + n[7] * n[8],
        t.capacity,
        "{line}"
    );
    t
}

/// pasta in a fresh host, with a debug log; the host blackholes
/// `BLACKHOLE`.0/24.
struct Scene {
    host: Host,
    dir: TempDir,
    p: AttachedPasta,
    log: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        Self::with(PastaOpts::default())
    }

    /// The same, pasta started as `opts` says.
    fn with(opts: PastaOpts) -> Scene {
        let host = Host::new();
        host.ns.sh(&format!(
            "nft 'add table ip bh; add chain ip bh out {{ type filter hook output priority 0 ; }} ; add rule ip bh out ip daddr {BLACKHOLE}.0/24 drop'"
        ));
        let dir = TempDir::new();
        let log = dir.join("pasta.log");
        // No port forwarding: its listeners would count in the descriptors
        // these tests account for one by one, and thousands of unconnected
        // UDP sockets in the namespace would look like services to `-u
        // auto`.
        let p = AttachedPasta::start_with(
            &host,
            &[
                "-d",
                "-l",
                log.to_str().unwrap(),
                "-t",
                "none",
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
            ],
            opts,
        );
        Scene { host, dir, p, log }
    }

    fn tcp_server(&self) -> Reaped {
        let ready = self.dir.join("tcp.ready");
        let s = script(&self.dir, "tcp_echo.py", TCP_ECHO);
        let r = spawn(
            &self.host.ns,
            &format!(
                "python3 {} {HOST_REMOTE4} {TCP_PORT} {}",
                s.display(),
                ready.display()
            ),
        );
        assert!(wait_for(Duration::from_secs(5), || ready.exists()));
        r
    }

    fn udp_server(&self) -> Reaped {
        let ready = self.dir.join("udp.ready");
        let s = script(&self.dir, "udp_echo.py", UDP_ECHO);
        let r = spawn(
            &self.host.ns,
            &format!(
                "python3 {} {HOST_REMOTE4} {UDP_PORT} {}",
                s.display(),
                ready.display()
            ),
        );
        assert!(wait_for(Duration::from_secs(5), || ready.exists()));
        r
    }

    /// From the namespace, datagrams from `n` ports (from `base` up) to
    /// the UDP echo server: (answered, sent).
    fn udp_round(&self, n: usize, base: u16) -> (usize, usize) {
        let c = script(&self.dir, "udp_client.py", UDP_CLIENT);
        let out = self.p.ns.sh(&format!(
            "python3 {} {n} {HOST_REMOTE4} {UDP_PORT} {base}",
            c.display()
        ));
        let v: Vec<usize> = out.split_whitespace().map(|w| w.parse().unwrap()).collect();
        (v[0], v[1])
    }
}

#[test]
fn ten_thousand_tcp_connections_come_and_go() {
    let s = Scene::new();
    let t = table(&s.log);
    // 10 000, or what TCP can hold with some room to spare.
    let n = 10_000.min(t.max(TCP) * 9 / 10);
    let _server = s.tcp_server();
    let before = fds(s.p.pid);
    let client = script(&s.dir, "tcp_client.py", TCP_CLIENT);
    // Closing thousands of sockets at once would overflow the namespace's
    // tap queue (1000 frames) and leave the guest's TCP to recover by
    // retransmissions: not what this test is about.
    s.p.ns.sh("ip link set eth0 txqueuelen 100000");
    let started = Instant::now();
    let mut c = spawn(
        &s.p.ns,
        &format!(
            "python3 {} {n} {HOST_REMOTE4} {TCP_PORT} {}",
            client.display(),
            s.dir.0.display()
        ),
    );
    let open = s.dir.join("open");
    assert!(
        wait_for(Duration::from_secs(180), || open.exists()),
        "{n} connections didn't all connect and echo"
    );
    let mut summary = String::new();
    use std::io::Read;
    let mut out = c.0.stdout.take().unwrap();
    // The client printed its summary before creating `open`.
    let mut buf = [0u8; 128];
    let k = out.read(&mut buf).unwrap();
    summary.push_str(&String::from_utf8_lossy(&buf[..k]));
    let held = fds(s.p.pid);
    eprintln!(
        "{n} connections (connected, echoed, seconds: {}) in {:?}; pasta holds {held} descriptors, {before} before",
        summary.trim(),
        started.elapsed()
    );
    assert_eq!(
        summary.split_whitespace().take(2).collect::<Vec<_>>(),
        vec![n.to_string(), n.to_string()]
    );
    assert!(held >= before + n, "one socket per connection: {held}");
    // All idle: nothing is due, so pasta sleeps (no walk over the table).
    let cpu = cpu_time(s.p.pid);
    std::thread::sleep(Duration::from_secs(2));
    let idle = cpu_time(s.p.pid) - cpu;
    assert!(
        idle < Duration::from_millis(100),
        "idle with {n} flows: {idle:?}"
    );
    std::fs::write(s.dir.join("close"), "").unwrap();
    assert!(wait_timeout(&mut c.0, Duration::from_secs(60)).is_some_and(|st| st.success()));
    // Every close completes both ways: each slot and socket is given back.
    let released = wait_for(Duration::from_secs(60), || fds(s.p.pid) == before);
    assert!(
        released,
        "pasta holds {} descriptors, {before} before",
        fds(s.p.pid)
    );
    eprintln!("released in {:?} total", started.elapsed());
}

/// The UDP idle timeout pasta gets in `fifteen_thousand_udp_flows_...`:
/// short, so the test sees every flow expire, yet ten times what the
/// flows take to open here, so none expires before all are open.
const UDP_IDLE_SECS: u64 = 15;

#[test]
fn fifteen_thousand_udp_flows_held_at_once_then_released() {
    let idle = UDP_IDLE_SECS.to_string();
    let s = Scene::with(PastaOpts {
        env: &[("PASST_RS_UDP_IDLE_SECS", &idle)],
        ..PastaOpts::default()
    });
    let t = table(&s.log);
    let _server = s.udp_server();
    let before = fds(s.p.pid);
    // 15 000, or what UDP can hold on this machine.
    let n = 15_000.min(t.max(UDP));
    let started = Instant::now();
    let (answered, sent) = s.udp_round(n, 20_000);
    let held = fds(s.p.pid);
    eprintln!(
        "{n} UDP flows (most {}): {answered} answered, {sent} sent, in {:?}; pasta holds {held} descriptors, {before} before",
        t.max(UDP),
        started.elapsed(),
    );
    // Every flow forwarded both ways, all open at once: UDP's reserve and
    // the shared pool hold them, nothing was evicted.
    assert_eq!(answered, n);
    assert_eq!(held, before + n, "one socket per flow, all at once");
    assert!(
        started.elapsed() < Duration::from_secs(UDP_IDLE_SECS),
        "opening the flows took longer than their idle timeout"
    );
    // Another round from the same ports needs no new socket.
    let (again, _) = s.udp_round(n / 2, 20_000);
    assert_eq!(again, n / 2);
    assert_eq!(fds(s.p.pid), before + n);
    // Idle for the timeout, every flow is closed: all descriptors back.
    let idle_since = Instant::now();
    let released = wait_for(Duration::from_secs(3 * UDP_IDLE_SECS), || {
        fds(s.p.pid) == before
    });
    eprintln!(
        "released {:?} after the last datagram: pasta holds {} descriptors",
        idle_since.elapsed(),
        fds(s.p.pid)
    );
    assert!(released, "pasta holds {} descriptors", fds(s.p.pid));
    assert!(alive(s.p.pid));
}

/// Datagrams from the namespace to `ports` ports of `dst`, one each.
fn udp_flood(ns: &Netns, dst: &str, ports: usize) {
    ns.sh(&format!(
        "python3 -c 'import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor p in range(1, {ports} + 1):\n    try: u.sendto(b\"x\", (\"{dst}\", p))\n    except OSError: pass'"
    ));
}

/// Descriptors of `pid` once they settle at `want` (pasta may still be
/// reading the tail of a flood), or what they were after 5 s. While a
/// kind is full, each new flow is "close the oldest, open the new one",
/// so the count never goes past `want`: the highest seen is returned too.
fn settle(pid: i32, want: usize) -> (usize, usize) {
    let mut most = 0;
    let mut now = 0;
    wait_for(Duration::from_secs(5), || {
        now = fds(pid);
        most = most.max(now);
        now == want
    });
    (now, most)
}

/// From the namespace: one connection to the TCP echo server, which
/// must echo. Returns how long connecting and the echo took (timed in
/// the client, so the interpreter's start-up doesn't count).
fn ordinary_connection(ns: &Netns, addr: &str) -> Duration {
    let out = ns.sh(&format!(
        "python3 -c 'import socket, time\nt = time.time()\nc = socket.create_connection((\"{addr}\", {TCP_PORT}), timeout=3)\nc.sendall(b\"still here\")\nprint(c.recv(64).decode(), time.time() - t)'"
    ));
    let (echo, secs) = out.trim().rsplit_once(' ').unwrap();
    assert_eq!(echo, "still here");
    Duration::from_secs_f64(secs.parse().unwrap())
}

#[test]
fn a_flood_of_dead_handshakes_and_datagrams_keeps_no_one_out() {
    let s = Scene::new();
    let t = table(&s.log);
    let _tcp = s.tcp_server();
    let _udp = s.udp_server();
    let before = fds(s.p.pid);
    // Twice what TCP can hold of SYNs that will never be answered: the
    // dead handshakes take TCP's reserve and the whole pool. Then more
    // datagrams to the same black hole than UDP's reserve.
    let syns = 2 * t.max(TCP);
    let flood = script(&s.dir, "syn_flood.py", SYN_FLOOD);
    // The namespace's tap queue (1000 frames) would drop much of a burst
    // before pasta reads it: let all of the flood reach pasta.
    s.p.ns.sh("ip link set eth0 txqueuelen 100000");
    let started = Instant::now();
    s.p.ns.sh(&format!(
        "python3 {} {syns} {HOST_ADDR4} {BLACKHOLE} {OUR_MAC}",
        flood.display()
    ));
    let ports = t.reserve[UDP] + 2000;
    udp_flood(&s.p.ns, &format!("{BLACKHOLE}.7"), ports);
    // TCP at its most, not beyond: every SYN past it took the place of an
    // older dead handshake. UDP, with the pool taken, still has its
    // reserve: every new flow past it took the place of the least
    // recently used.
    let full = before + t.max(TCP) + t.reserve[UDP];
    let (flooded, most) = settle(s.p.pid, full);
    eprintln!(
        "{syns} SYNs and {ports} datagrams in {:?}: pasta holds {flooded} descriptors ({before} before, {t:?})",
        started.elapsed()
    );
    assert_eq!(flooded, full);
    assert!(most <= full, "{most} descriptors at some point");
    // An ordinary connection gets through at once: the oldest dead
    // handshake makes way for it.
    let took = ordinary_connection(&s.p.ns, HOST_REMOTE4);
    assert!(took < Duration::from_secs(1), "connected in {took:?}");
    // And an ordinary UDP exchange, its flow taking the least recently
    // used one's place.
    let (answered, _) = s.udp_round(10, 40_000);
    assert_eq!(answered, 10);
    eprintln!("an ordinary connection in {took:?}");
    // Meanwhile the virtual gateway still answers ARP and DHCP.
    s.p.ns
        .sh(&format!("busybox arping -c 1 -w 2 -I eth0 {HOST_GW4}"));
    s.p.ns
        .sh("busybox udhcpc -i eth0 -n -q -f -s /bin/true -t 3 -T 1 >/dev/null 2>&1");
    // Dead handshakes last 10 s from their SYN: then only UDP flows are
    // left, UDP's reserve and perhaps one more: once the ordinary
    // connection closed, its place in the pool was free for the ordinary
    // UDP exchange.
    assert!(
        wait_for(Duration::from_secs(20), || fds(s.p.pid)
            <= before + t.reserve[UDP] + 1),
        "handshakes outlived their timeout: {} descriptors",
        fds(s.p.pid)
    );
    assert!(alive(s.p.pid));
}

#[test]
fn datagrams_holding_the_pool_leave_tcp_and_ping_their_reserves() {
    let s = Scene::new();
    let t = table(&s.log);
    let _tcp = s.tcp_server();
    let before = fds(s.p.pid);
    s.p.ns.sh("ip link set eth0 txqueuelen 100000");
    // UDP first this time: more flows than it can hold, to the black
    // hole. They take UDP's reserve and the whole pool.
    let ports = t.max(UDP) + 2000;
    udp_flood(&s.p.ns, &format!("{BLACKHOLE}.8"), ports);
    let (flooded, most) = settle(s.p.pid, before + t.max(UDP));
    assert_eq!(flooded, before + t.max(UDP), "{t:?}");
    assert!(most <= flooded, "{most} descriptors at some point");
    // Then twice TCP's reserve of dead handshakes: TCP gets its reserve,
    // no more, and takes nothing from UDP.
    let syns = 2 * t.reserve[TCP];
    let flood = script(&s.dir, "syn_flood.py", SYN_FLOOD);
    s.p.ns.sh(&format!(
        "python3 {} {syns} {HOST_ADDR4} {BLACKHOLE} {OUR_MAC}",
        flood.display()
    ));
    let full = before + t.max(UDP) + t.reserve[TCP];
    let (flooded, most) = settle(s.p.pid, full);
    eprintln!(
        "{ports} datagrams, then {syns} SYNs: pasta holds {flooded} descriptors ({before} before, {t:?})"
    );
    assert_eq!(flooded, full);
    assert!(most <= full, "{most} descriptors at some point");
    // TCP, within its reserve, still connects at once, and ping has its
    // own reserve.
    let took = ordinary_connection(&s.p.ns, HOST_REMOTE4);
    assert!(took < Duration::from_secs(1), "connected in {took:?}");
    assert!(t.reserve[PING] > 0);
    s.p.ns.sh(&format!("ping -c 1 -W 2 {HOST_REMOTE4}"));
    assert!(fds(s.p.pid) <= before + t.capacity);
    assert!(alive(s.p.pid));
}

/// A UDP echo server that answers each datagram after a random delay
/// between `lo` and `hi` seconds, so replies are still on their way
/// while the flows they belong to are evicted.
const UDP_LATE_ECHO: &str = r#"
import asyncio, random, socket, sys
addr, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lo, hi = float(sys.argv[4]), float(sys.argv[5])
class Late(asyncio.DatagramProtocol):
    def connection_made(self, t):
        self.t = t
    def datagram_received(self, data, a):
        asyncio.get_running_loop().call_later(random.uniform(lo, hi), self.t.sendto, data, a)
    def error_received(self, e):
        pass
async def main():
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(Late, local_addr=(addr, port))
    t.get_extra_info('socket').setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    open(ready, 'w').close()
    await asyncio.Event().wait()
asyncio.run(main())
"#;

/// For `secs` seconds: datagrams from `n` ports (from `base` up), each
/// tagged with its port, over and over in random order, every reply
/// checked for its port's tag; meanwhile, in a thread, TCP connections
/// eight at a time, each sending its own tagged payload and checking
/// the echo. Prints "sent answered misdelivered tcp_ok tcp_wrong
/// tcp_failed".
const MIXED_CHURN: &str = r#"
import random, resource, selectors, socket, sys, threading, time
n, addr, uport, tport, secs, base = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
burst, pause = int(sys.argv[7]), float(sys.argv[8])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
until = time.time() + secs
tcp = {'ok': 0, 'wrong': 0, 'failed': 0}
def churn():
    i = 0
    while time.time() < until:
        conns = []
        for _ in range(8):
            i += 1
            tag = (b'<tcp %d>' % i) * random.randint(1, 100)
            try:
                c = socket.create_connection((addr, tport), timeout=5)
                c.sendall(tag)
                conns.append((c, tag))
            except OSError:
                tcp['failed'] += 1
        for c, tag in conns:
            got = b''
            try:
                while len(got) < len(tag):
                    b = c.recv(65536)
                    if not b:
                        break
                    got += b
            except OSError:
                pass
            tcp['ok' if got == tag else 'wrong'] += 1
            c.close()
t = threading.Thread(target=churn)
t.start()
sel = selectors.DefaultSelector()
socks = {}
for p in range(base, base + n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', p))
    s.setblocking(False)
    socks[p] = s
    sel.register(s, selectors.EVENT_READ, p)
count = {'sent': 0, 'answered': 0, 'wrong': 0}
def drain(timeout):
    for key, _ in sel.select(timeout):
        while True:
            try:
                b = key.fileobj.recv(256)
            except BlockingIOError:
                break
            count['answered'] += 1
            if not b.startswith(b'%d:' % key.data):
                count['wrong'] += 1
rnd = 0
ports = list(socks)
while time.time() < until:
    rnd += 1
    random.shuffle(ports)
    for j, p in enumerate(ports):
        try:
            socks[p].sendto(b'%d:%d' % (p, rnd), (addr, uport))
            count['sent'] += 1
        except OSError:
            pass
        if j % burst == burst - 1:
            # Paced, so pasta keeps up and its tap queue stays short:
            # TCP's segments wait behind no more than a burst.
            drain(pause)
    drain(0)
end = time.time() + 1
while time.time() < end:
    drain(0.05)
t.join()
print(count['sent'], count['answered'], count['wrong'], tcp['ok'], tcp['wrong'], tcp['failed'], flush=True)
"#;

/// The last stats pasta printed to `log` (on SIGUSR1): its "to guest"
/// line's evictions per kind and stale events.
fn stats_after_sigusr1(pid: i32, log: &Path) -> ([u64; 3], u64) {
    let printed = |l: &str| l.contains("stats: to guest:");
    let before = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| printed(l))
        .count();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let mut line = String::new();
    assert!(
        wait_for(Duration::from_secs(5), || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| printed(l)).collect();
            line = lines.last().map(|l| l.to_string()).unwrap_or_default();
            lines.len() > before
        }),
        "no stats after SIGUSR1"
    );
    let (_, evicted) = line.split_once("evicted:").unwrap();
    let n: Vec<u64> = evicted
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(line.contains("; stale events "), "{line}");
    ([n[0], n[1], n[2]], n[3])
}

#[test]
fn stale_events_under_load_never_misdeliver() {
    // A table of a few hundred flows (400 open files), and UDP flows that
    // expire after 2 s, so the end of the test sees every one go.
    let s = Scene::with(PastaOpts {
        env: &[("PASST_RS_UDP_IDLE_SECS", "2")],
        nofile: Some(400),
    });
    let t = table(&s.log);
    assert!(t.capacity < 300, "{t:?}");
    let _tcp = s.tcp_server();
    let ready = s.dir.join("late.ready");
    let late = script(&s.dir, "udp_late_echo.py", UDP_LATE_ECHO);
    let _udp = spawn(
        &s.host.ns,
        &format!(
            "python3 {} {HOST_REMOTE4} {UDP_PORT} {} 0 0.02",
            late.display(),
            ready.display()
        ),
    );
    assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    s.p.ns.sh("ip link set eth0 txqueuelen 100000");
    let before = fds(s.p.pid);
    // Ten times more source ports than UDP can hold, while TCP opens and
    // closes connections, for a few seconds: 50 datagrams every 10 ms
    // from ports in random order, so each round of pasta's loop opens
    // dozens of flows, evicting as many, some of whose replies are ready
    // in the same round. Their events, later in the round, are stale.
    let ports = 10 * t.max(UDP);
    let churn = script(&s.dir, "mixed_churn.py", MIXED_CHURN);
    let out = s.p.ns.sh(&format!(
        "python3 {} {ports} {HOST_REMOTE4} {UDP_PORT} {TCP_PORT} 6 20000 50 0.01",
        churn.display()
    ));
    let v: Vec<u64> = out.split_whitespace().map(|w| w.parse().unwrap()).collect();
    let [sent, answered, misdelivered, tcp_ok, tcp_wrong, tcp_failed] = v[..] else {
        panic!("client printed {out:?}");
    };
    let (evicted, stale) = stats_after_sigusr1(s.p.pid, &s.log);
    eprintln!(
        "{ports} ports: {sent} datagrams sent, {answered} answered, {misdelivered} misdelivered; TCP {tcp_ok} echoed, {tcp_wrong} wrong, {tcp_failed} failed; evicted {evicted:?}, stale events {stale} ({t:?})"
    );
    assert!(alive(s.p.pid));
    assert_eq!(misdelivered, 0, "a reply reached another port's flow");
    assert!(answered > 0);
    assert_eq!((tcp_wrong, tcp_failed), (0, 0));
    assert!(tcp_ok > 0);
    assert!(evicted[UDP] > 0);
    assert!(stale > 0, "no stale event: the load didn't make any");
    // Every flow goes: UDP's once idle, TCP's once closed.
    assert!(
        wait_for(Duration::from_secs(20), || fds(s.p.pid) == before),
        "pasta holds {} descriptors, {before} before",
        fds(s.p.pid)
    );
}

/// Raw frames on the namespace's `eth0` as if its stack had sent them:
/// `n` in all, taken in turn from each spec `KIND/SRC/DST/DPORT`. KIND is
/// `syn` (a TCP SYN) or `udp` (a one-byte datagram); SRC an IPv4 or IPv6
/// address; DST an address, or a prefix ending in `.` or `:` to which 1
/// to 250 is appended; DPORT a port, or 0 for 1, 2, ... per 250 frames.
/// Each frame of a spec has its own source port or destination: one new
/// flow each. Paced so the tap queue keeps up.
const FRAME_FLOOD: &str = r#"
import ipaddress, socket, struct, sys, time
n, ours = int(sys.argv[1]), sys.argv[2]
specs = [a.split('/') for a in sys.argv[3:]]
def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
mac = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))
dst_mac = bytes.fromhex(ours.replace(':', ''))
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
p.bind(('eth0', 0))
def frame(kind, src, dst, sport, dport):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    proto = 6 if kind == 'syn' else 17
    if kind == 'syn':
        l4 = struct.pack('!HHIIBBHHH', sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
        at = 16
    else:
        l4 = struct.pack('!HHHH', sport, dport, 9, 0) + b'x'
        at = 6
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack('!BBH', 0, proto, len(l4))
    else:
        pseudo = s.packed + d.packed + struct.pack('!I3xB', len(l4), proto)
    c = csum(pseudo + l4) or 0xffff
    l4 = l4[:at] + struct.pack('!H', c) + l4[at + 2:]
    if s.version == 4:
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, s.packed, d.packed)
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        return dst_mac + mac + b'\x08\x00' + ip + l4
    ip = struct.pack('!IHBB16s16s', 0x60000000, len(l4), proto, 64, s.packed, d.packed)
    return dst_mac + mac + b'\x86\xdd' + ip + l4
for i in range(n):
    kind, src, dst, dport = specs[i % len(specs)]
    k = i // len(specs)
    if dst[-1] in '.:':
        dst = dst + ('%d' if dst[-1] == '.' else '%x') % (1 + k % 250)
    dport = int(dport) or 1 + k // 250
    f = frame(kind, src, dst, 1024 + k % 60000, dport)
    while True:
        try:
            p.send(f)
            break
        except OSError:
            time.sleep(0.01)
    if i % 250 == 249:
        time.sleep(0.02)
"#;

/// Blackholed on the host for IPv6, as `BLACKHOLE` is for IPv4.
const BLACKHOLE6: &str = "2001:db8:bad::";
/// A TCP port on the host that accepts, but whose SYN-ACKs the guest
/// drops: handshakes that never complete on the guest's side.
const HALF_OPEN_PORT: u16 = 7302;

/// From a passt guest: one TCP connection to the echo server at `addr`
/// and one UDP exchange with `udp` (if any), each timed in the client.
fn ordinary_exchange(ns: &Netns, tcp: &str, udp: Option<&str>) -> (Duration, Duration) {
    let took_tcp = ordinary_connection(ns, tcp);
    let Some(udp) = udp else {
        return (took_tcp, Duration::ZERO);
    };
    let out = ns.sh(&format!(
        "python3 -c 'import socket, time\nt = time.time()\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nu.settimeout(3)\nu.sendto(b\"ping\", (\"{udp}\", {UDP_PORT}))\nprint(u.recv(64).decode(), time.time() - t)'"
    ));
    let (echo, secs) = out.trim().rsplit_once(' ').unwrap();
    assert_eq!(echo, "ping");
    (took_tcp, Duration::from_secs_f64(secs.parse().unwrap()))
}

/// ARP and DHCP from a passt guest answered, each within its tool's
/// timeout (2 s and 3 tries of 1 s).
fn gateway_answers(ns: &Netns) -> Duration {
    let t = Instant::now();
    ns.sh(&format!("busybox arping -c 1 -w 2 -I eth0 {HOST_GW4}"));
    ns.sh("busybox udhcpc -i eth0 -n -q -f -s /bin/true -t 3 -T 1 >/dev/null 2>&1");
    t.elapsed()
}

/// A passt guest with its IPv4 address and route, and its IPv6 route
/// learnt from our advertisements; its tap queue takes a whole flood.
fn passt_guest(socket: &Path) -> relay::Guest {
    let g = relay::Guest::connect(socket);
    g.ns.sh(&format!(
        "ip addr add {HOST_ADDR4}/24 dev eth0 && ip route add default via {HOST_GW4} && ip link set eth0 txqueuelen 100000"
    ));
    assert!(
        wait_for(Duration::from_secs(5), || g
            .ns
            .run("ip -6 route show default")
            .stdout
            .starts_with(b"default")),
        "no IPv6 route from our advertisements"
    );
    g
}

#[test]
fn through_passt_a_flood_keeps_no_one_out_and_a_new_guest_starts_clean() {
    let host = Host::new();
    host.ns.sh(&format!(
        "nft 'add table inet bh; add chain inet bh out {{ type filter hook output priority 0 ; }} ; add rule inet bh out ip daddr {BLACKHOLE}.0/24 drop; add rule inet bh out ip6 daddr {BLACKHOLE6}/64 drop'"
    ));
    let dir = TempDir::new();
    let log = dir.join("passt.log");
    let d = Daemon::start(&host, &dir, &["-d", "-l", log.to_str().unwrap()]);
    let t = table(&log);
    let tcp_echo = script(&dir, "tcp_echo.py", TCP_ECHO);
    let udp_echo = script(&dir, "udp_echo.py", UDP_ECHO);
    let mut servers = Vec::new();
    for (i, (prog, addr, port)) in [
        (&tcp_echo, HOST_REMOTE4, TCP_PORT),
        (&tcp_echo, HOST_REMOTE6, TCP_PORT),
        (&tcp_echo, HOST_REMOTE4, HALF_OPEN_PORT),
        (&udp_echo, HOST_REMOTE4, UDP_PORT),
    ]
    .into_iter()
    .enumerate()
    {
        let ready = dir.join(&format!("ready{i}"));
        servers.push(spawn(
            &host.ns,
            &format!(
                "python3 {} {addr} {port} {}",
                prog.display(),
                ready.display()
            ),
        ));
        assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    }
    // passt with no guest, then with one.
    let alone = fds(d.pid);
    let g = passt_guest(&d.socket);
    // The guest's stack drops our SYN-ACKs from the half-open port, and
    // so never acknowledges them (nor resets them).
    g.ns.sh(&format!(
        "nft 'add table inet g; add chain inet g in {{ type filter hook input priority 0 ; }} ; add rule inet g in tcp sport {HALF_OPEN_PORT} drop'"
    ));
    let before = fds(d.pid);
    // Twice what TCP can hold of SYNs, in turn to the IPv4 and IPv6 black
    // holes and to the half-open port; then datagrams to more IPv4 and
    // IPv6 ports than UDP's reserve.
    let flood = script(&dir, "frame_flood.py", FRAME_FLOOD);
    let syns = 2 * t.max(TCP);
    let started = Instant::now();
    g.ns.sh(&format!(
        "python3 {} {syns} {OUR_MAC} syn/{HOST_ADDR4}/{BLACKHOLE}./0 syn/{HOST_ADDR6}/{BLACKHOLE6}/0 syn/{HOST_ADDR4}/{HOST_REMOTE4}/{HALF_OPEN_PORT}",
        flood.display()
    ));
    let datagrams = 2 * (t.reserve[UDP] + 2000);
    g.ns.sh(&format!(
        "python3 {} {datagrams} {OUR_MAC} udp/{HOST_ADDR4}/{BLACKHOLE}.7/0 udp/{HOST_ADDR6}/{BLACKHOLE6}7/0",
        flood.display()
    ));
    // As through pasta: TCP at its most, UDP at its reserve.
    let full = before + t.max(TCP) + t.reserve[UDP];
    let (flooded, most) = settle(d.pid, full);
    eprintln!(
        "passt: {syns} SYNs and {datagrams} datagrams in {:?}: {flooded} descriptors ({before} before, {alone} without a guest; {t:?})",
        started.elapsed()
    );
    assert_eq!(flooded, full);
    assert!(most <= full, "{most} descriptors at some point");
    // Each part of the flood was taken for what it is: IPv6 handshakes,
    // and connections the host accepted that wait for the guest's ACK.
    let half_open = host.ns.sh(&format!(
        "ss -Htn state established '( sport = :{HALF_OPEN_PORT} )' | wc -l"
    ));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let v6 = text
        .lines()
        .filter(|l| l.contains(&format!("-> [{BLACKHOLE6}")))
        .count();
    eprintln!(
        "half-open on the host: {}; IPv6 flows: {v6}",
        half_open.trim()
    );
    assert!(half_open.trim().parse::<usize>().unwrap() > 0);
    assert!(v6 > 0);
    // Ordinary traffic gets through at once, both families.
    let (tcp4, udp4) = ordinary_exchange(&g.ns, HOST_REMOTE4, Some(HOST_REMOTE4));
    let (tcp6, _) = ordinary_exchange(&g.ns, HOST_REMOTE6, None);
    eprintln!("passt under the flood: TCP {tcp4:?} (IPv6 {tcp6:?}), UDP {udp4:?}");
    for took in [tcp4, udp4, tcp6] {
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
    let arp_dhcp = gateway_answers(&g.ns);
    // The guest goes away: every flow it had goes with it, at once.
    drop(g);
    let t_gone = Instant::now();
    let released = wait_for(Duration::from_secs(5), || fds(d.pid) == alone);
    eprintln!(
        "ARP and DHCP in {arp_dhcp:?}; guest gone: {} descriptors after {:?}",
        fds(d.pid),
        t_gone.elapsed()
    );
    assert!(
        released,
        "{} descriptors, {alone} without a guest",
        fds(d.pid)
    );
    // A new guest on the same socket starts with a clean table: ARP,
    // DHCP and a connection at once.
    let g = passt_guest(&d.socket);
    let arp_dhcp = gateway_answers(&g.ns);
    let (tcp4, udp4) = ordinary_exchange(&g.ns, HOST_REMOTE4, Some(HOST_REMOTE4));
    eprintln!("new guest: ARP and DHCP in {arp_dhcp:?}, TCP {tcp4:?}, UDP {udp4:?}");
    for took in [tcp4, udp4] {
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
    assert!(fds(d.pid) <= alone + 3, "{} descriptors", fds(d.pid));
    assert!(alive(d.pid));
}
