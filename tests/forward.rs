//! Port forwarding into the guest (`-t`, `-u`) through the tap, for passt
//! (a guest namespace behind the test relay) and pasta: what the guest
//! sees as the client's address, every form of the spec grammar, UDP
//! both ways, bulk data compared byte for byte, refusals, a client that
//! vanishes, and the command lines podman and libvirt run.
//!
//! A "client" namespace hangs off the host (`eth1` there, 198.18.0.1 and
//! 2001:db8:c::1; the client is .2 and ::2): its connections reach the
//! host's own address from outside, as a remote peer's would.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::*;

const CLIENT4: &str = "198.18.0.2";
const CLIENT6: &str = "2001:db8:c::2";

/// A TCP server on every port given (both families): each connection
/// gets "peer ADDR PORT" (IPv4-mapped shown as IPv4), then its own
/// bytes back until EOF. Writes `ready` once listening.
const PEER_ECHO: &str = r#"
import os, socket, sys, threading
ready, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
udp_port = int(os.environ.get('UDP_PORT', '53'))
def serve(l):
    while True:
        c, a = l.accept()
        threading.Thread(target=talk, args=(c, a), daemon=True).start()
def talk(c, a):
    ip = a[0][7:] if a[0].startswith('::ffff:') else a[0]
    c.sendall(('peer %s %d\n' % (ip, a[1])).encode())
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()
for p in ports:
    l = socket.socket(socket.AF_INET6)
    l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(('::', p))
    l.listen(64)
    threading.Thread(target=serve, args=(l,), daemon=True).start()
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(('::', udp_port))
open(ready, 'w').close()
while True:
    b, a = u.recvfrom(65536)
    ip = a[0][7:] if a[0].startswith('::ffff:') else a[0]
    u.sendto(('peer %s %d ' % (ip, a[1])).encode() + b, a)
"#;

/// Connect to ADDR PORT, send a line, print what came back ("peer ..."
/// and the echo), or "refused"/"reset".
const CLIENT: &str = r#"
import errno, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
try:
    c = socket.create_connection((addr, port), timeout=5)
    c.sendall(b'hello\n')
    c.shutdown(socket.SHUT_WR)
    out = b''
    while True:
        b = c.recv(65536)
        if not b:
            break
        out += b
    print(out.decode().replace('\n', ' ').strip())
except ConnectionRefusedError:
    print('refused')
except (ConnectionResetError, BrokenPipeError):
    print('reset')
except socket.timeout:
    print('timeout')
except OSError as e:
    # The reset may come before our shutdown: not connected any more.
    print('reset' if e.errno == errno.ENOTCONN else 'error %d' % e.errno)
"#;

/// One UDP exchange: send "ping" to ADDR PORT from a connected socket
/// (so only a reply from that very address and port counts), print it.
const UDP_CLIENT: &str = r#"
import socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
u = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(3)
u.connect((addr, port))
for _ in range(3):
    u.send(b'ping')
    try:
        print(u.recv(65536).decode())
        break
    except socket.timeout:
        pass
    except ConnectionRefusedError:
        print('refused')
        break
else:
    print('timeout')
"#;

/// Where the guest is.
enum Guest {
    Passt(relay::Guest, Daemon),
    Pasta(AttachedPasta),
}

/// A host, a client namespace beside it, and a guest behind passt or
/// pasta started with `args`.
struct Scene {
    host: Host,
    client: Netns,
    dir: TempDir,
    guest: Guest,
    _servers: Vec<Reaped>,
}

impl Scene {
    fn new(pasta: bool, args: &[&str]) -> Self {
        Self::with_env(pasta, args, &[])
    }

    /// The same, with passt's or pasta's environment added to as `env`
    /// says.
    fn with_env(pasta: bool, args: &[&str], env: &[(&str, &str)]) -> Self {
        let host = Host::new();
        let client = Netns::new("prs-c");
        let (h, c) = (&host.ns.name, &client.name);
        sh(&format!(
            "ip -n {h} link add eth1 type veth peer name eth0 netns {c} && \
             ip -n {h} addr add 198.18.0.1/24 dev eth1 && ip -n {h} addr add 2001:db8:c::1/64 dev eth1 nodad && \
             ip -n {h} link set eth1 up && \
             ip -n {c} addr add {CLIENT4}/24 dev eth0 && ip -n {c} addr add {CLIENT6}/64 dev eth0 nodad && \
             ip -n {c} link set eth0 up && ip -n {c} route add default via 198.18.0.1 && \
             ip -n {c} -6 route add default via 2001:db8:c::1"
        ));
        let dir = TempDir::new();
        let guest = if pasta {
            Guest::Pasta(AttachedPasta::start_with(
                &host,
                args,
                PastaOpts {
                    env,
                    ..Default::default()
                },
            ))
        } else {
            let d = Daemon::start_env(&host, &dir, args, env);
            let g = relay::Guest::connect(&d.socket);
            g.ns.sh(&format!(
                "ip addr add {HOST_ADDR4}/24 dev eth0 && ip route add default via {HOST_GW4} && \
                 ip addr add {HOST_ADDR6}/64 dev eth0 nodad"
            ));
            Guest::Passt(g, d)
        };
        Scene {
            host,
            client,
            dir,
            guest,
            _servers: Vec::new(),
        }
    }

    fn guest_ns(&self) -> &Netns {
        match &self.guest {
            Guest::Passt(g, _) => &g.ns,
            Guest::Pasta(p) => &p.ns,
        }
    }

    fn pid(&self) -> i32 {
        match &self.guest {
            Guest::Passt(_, d) => d.pid,
            Guest::Pasta(p) => p.pid,
        }
    }

    /// Start `PEER_ECHO` in the guest on `ports` (and UDP 53).
    fn serve(&mut self, ports: &[u16]) {
        let s = script(&self.dir, "peer_echo.py", PEER_ECHO);
        let ready = self.dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let child = self
            .guest_ns()
            .cmd("python3")
            .arg(&s)
            .arg(&ready)
            .args(ports.iter().map(u16::to_string))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self._servers.push(Reaped(child));
        assert!(wait_for(Duration::from_secs(5), || ready.exists()));
        // The guest's stack has spoken (passt learns where it is).
        let ns = self.guest_ns();
        let _ = ns.run(&format!(
            "ping -c1 -W1 {HOST_GW4}; ping -6 -c1 -W1 {HOST_GW6}"
        ));
    }

    /// `CLIENT` from namespace `ns` to addr:port.
    fn tcp(&self, ns: &Netns, addr: &str, port: u16) -> String {
        let s = script(&self.dir, "client.py", CLIENT);
        ns.sh(&format!("python3 {} {addr} {port}", s.display()))
            .trim()
            .to_string()
    }

    fn udp(&self, ns: &Netns, addr: &str, port: u16) -> String {
        let s = script(&self.dir, "udp_client.py", UDP_CLIENT);
        ns.sh(&format!("python3 {} {addr} {port}", s.display()))
            .trim()
            .to_string()
    }
}

/// A one-way socat in `ns` from `from` to `to` (one of them listening),
/// for one connection.
fn socat_once(ns: &Netns, from: &str, to: &str) -> Reaped {
    Reaped(
        ns.cmd("socat")
            .args(["-u", from, to])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// "peer ADDR PORT hello": the address the guest saw.
fn peer(reply: &str) -> &str {
    reply.split_whitespace().nth(1).unwrap_or(reply)
}

const GRAMMAR: &[&str] = &[
    "-t",
    "8080:80",
    "-t",
    "8081-8083:81-83",
    "-t",
    "8090-8095,~8092",
    "-t",
    "127.0.0.1/9090:90",
    "-t",
    "%lo/7000:70",
    "-t",
    "[::1]/9091:90",
    "-t",
    "8099:99",
    "-u",
    "5353:53",
];

fn grammar_end_to_end(pasta: bool) {
    let mut s = Scene::new(pasta, GRAMMAR);
    s.serve(&[80, 81, 82, 83, 8090, 8091, 8092, 8093, 90, 70]);
    let (h, c) = (&s.host.ns, &s.client);
    // The true client's address, both families, from outside.
    let r = s.tcp(c, HOST_ADDR4, 8080);
    assert!(r.ends_with("hello"), "{r}");
    assert_eq!(peer(&r), CLIENT4);
    assert_eq!(peer(&s.tcp(c, HOST_ADDR6, 8080)), CLIENT6);
    // The host itself: its loopback as the gateway through the tap, or,
    // spliced (pasta), from the namespace's own address; its own address
    // (which the guest shares) as the gateway.
    let (lo4, lo6) = if pasta {
        (HOST_ADDR4, HOST_ADDR6)
    } else {
        (HOST_GW4, HOST_GW6)
    };
    assert_eq!(peer(&s.tcp(h, "127.0.0.1", 8080)), lo4);
    assert_eq!(peer(&s.tcp(h, "::1", 8080)), lo6);
    assert_eq!(peer(&s.tcp(h, HOST_ADDR4, 8080)), HOST_GW4);
    // A range remapped: 8082 is the guest's 82.
    let r = s.tcp(c, HOST_ADDR4, 8082);
    assert!(r.starts_with("peer") && r.ends_with("hello"), "{r}");
    // Ranges without a target keep their numbers; the excluded port
    // isn't bound on the host at all.
    assert!(s.tcp(c, HOST_ADDR4, 8091).ends_with("hello"));
    assert_eq!(s.tcp(c, HOST_ADDR4, 8092), "refused");
    // Bound to an address: only there.
    assert!(s.tcp(h, "127.0.0.1", 9090).ends_with("hello"));
    assert_eq!(s.tcp(h, HOST_ADDR4, 9090), "refused");
    assert!(s.tcp(h, "::1", 9091).ends_with("hello"));
    // Bound to an interface: traffic arriving elsewhere isn't taken.
    assert!(s.tcp(h, "127.0.0.1", 7000).ends_with("hello"));
    assert_ne!(s.tcp(c, HOST_ADDR4, 7000).len(), 0);
    assert!(!s.tcp(c, HOST_ADDR4, 7000).ends_with("hello"));
    // Nothing listening in the guest: the client is reset at once.
    assert_eq!(s.tcp(c, HOST_ADDR4, 8099), "reset");
    // UDP both ways, the reply from the very port the client wrote to.
    let r = s.udp(c, HOST_ADDR4, 5353);
    assert!(
        r.starts_with(&format!("peer {CLIENT4} ")) && r.ends_with("ping"),
        "{r}"
    );
    let r = s.udp(c, HOST_ADDR6, 5353);
    assert!(r.starts_with(&format!("peer {CLIENT6} ")), "{r}");
    // A host loopback client: through the tap from the gateway for
    // passt, spliced from the namespace's own address for pasta.
    let r = s.udp(h, "127.0.0.1", 5353);
    let seen = if pasta { HOST_ADDR4 } else { HOST_GW4 };
    assert!(r.starts_with(&format!("peer {seen} ")), "{r}");
    // Later datagrams of the flow take its own socket: still answered.
    let r = s.udp(c, HOST_ADDR4, 5353);
    assert!(r.ends_with("ping"), "{r}");
    assert!(alive(s.pid()));
}

#[test]
fn passt_forwards_every_form_of_the_grammar() {
    grammar_end_to_end(false);
}

#[test]
fn pasta_forwards_every_form_of_the_grammar() {
    grammar_end_to_end(true);
}

/// 64 MiB each way through a forwarded port, compared byte for byte.
fn bulk(pasta: bool) {
    let s = Scene::new(pasta, &["-t", "8080:80", "-t", "8081:81"]);
    let src = random_file(&s.dir, "src", 64);
    let (up, down) = (s.dir.join("up"), s.dir.join("down"));
    let g = s.guest_ns();
    // Into the guest: its server writes what it receives.
    let _sink = socat_once(
        g,
        "TCP-LISTEN:80,reuseaddr",
        &format!("CREATE:{}", up.display()),
    );
    // Out of it: its server sends the file.
    let _source = socat_once(
        g,
        &format!("OPEN:{}", src.display()),
        "TCP-LISTEN:81,reuseaddr",
    );
    listening(g, 80);
    listening(g, 81);
    let t = std::time::Instant::now();
    s.client.sh(&format!(
        "timeout 20 socat -u OPEN:{} TCP:{HOST_ADDR4}:8080",
        src.display()
    ));
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::metadata(&up).is_ok_and(|m| m.len() == 64 << 20)
    }));
    assert!(same(&src, &up), "into the guest: content differs");
    eprintln!("64 MiB host -> guest in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    s.client.sh(&format!(
        "timeout 20 socat -u TCP:{HOST_ADDR4}:8081 CREATE:{}",
        down.display()
    ));
    eprintln!("64 MiB guest -> host in {:?}", t.elapsed());
    assert!(same(&src, &down), "out of the guest: content differs");
}

/// A guest server's side of one connection: answers a line, writes
/// `ready`, then waits for more and prints how the wait ended: `reset`,
/// `eof` or `timeout`.
const WAITING_SERVER: &str = r#"
import socket, sys
port, ready = int(sys.argv[1]), sys.argv[2]
l = socket.socket(socket.AF_INET6)
l.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('::', port)); l.listen(1)
c, _ = l.accept()
c.recv(100); c.sendall(b'hi\n')
open(ready, 'w').close()
c.settimeout(20)
try:
    print('eof' if not c.recv(100) else 'data', flush=True)
except ConnectionResetError:
    print('reset', flush=True)
except socket.timeout:
    print('timeout', flush=True)
"#;

/// A client that vanishes (its link goes down, as a pulled cable) from a
/// connection through a forwarded port: the kernel's keepalives on our
/// socket find it gone, and the guest's server gets an RST instead of
/// waiting forever (its own keepalives are answered by us).
fn vanished_client(pasta: bool) {
    let s = Scene::with_env(
        pasta,
        &["-t", "8080:80"],
        &[("PASST_RS_TCP_KEEPALIVE_SECS", "1")],
    );
    let prog = script(&s.dir, "wait.py", WAITING_SERVER);
    let (ready, out) = (s.dir.join("ready"), s.dir.join("out"));
    let _server = Reaped(
        s.guest_ns()
            .cmd("sh")
            .arg("-c")
            .arg(format!(
                "exec python3 {} 80 {} > {}",
                prog.display(),
                ready.display(),
                out.display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    listening(s.guest_ns(), 80);
    let _client = Reaped(
        s.client
            .cmd("python3")
            .arg("-c")
            .arg(format!(
                "import socket, time\n\
                 c = socket.create_connection(('{HOST_ADDR4}', 8080), timeout=5)\n\
                 c.sendall(b'hello\\n'); c.recv(100); time.sleep(60)"
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for(Duration::from_secs(5), || ready.exists()),
        "no answer"
    );
    s.client.sh("ip link set eth0 down");
    let t = std::time::Instant::now();
    let said = written(&out, Duration::from_secs(25)).expect("the guest's server never heard");
    assert_eq!(said.trim(), "reset", "after {:?}", t.elapsed());
}

#[test]
fn passt_resets_the_guest_when_a_forwarded_client_vanishes() {
    vanished_client(false);
}

#[test]
fn pasta_resets_the_guest_when_a_forwarded_client_vanishes() {
    vanished_client(true);
}

/// Write-write-read rounds through a forwarded port, with the writer on
/// either side: the guest's server, or the client on the host (or a peer
/// beside it). Our socket on the host must not hold the second write back
/// (Nagle) until the reader's delayed ACK.
fn small_writes(pasta: bool) {
    let s = Scene::new(pasta, &["-t", "8080:80"]);
    let ww = py_script(&s.dir, "ww.py", WRITE_WRITE_READ);
    let g = s.guest_ns();
    // From a peer, through the tap; from the host's loopback, spliced
    // (pasta).
    let mut paths = vec![("tap", &s.client, HOST_ADDR4)];
    if pasta {
        paths.push(("splice", &s.host.ns, "127.0.0.1"));
    }
    for (path, from, addr) in paths {
        for guest_writes in [true, false] {
            let (gr, cr) = if guest_writes { ("w", "r") } else { ("r", "w") };
            let out = s.dir.join("ww.out");
            let server = Reaped(
                g.cmd("sh")
                    .arg("-c")
                    .arg(format!(
                        "exec python3 {} {gr} listen 0.0.0.0 80 20 >{}",
                        ww.display(),
                        out.display()
                    ))
                    .stdin(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            listening(g, 80);
            let client = from.sh(&format!(
                "python3 {} {cr} connect {addr} 8080 20",
                ww.display()
            ));
            let mut server = server;
            wait_timeout(&mut server.0, Duration::from_secs(10)).expect("the guest's server ended");
            let ms = if guest_writes {
                median_ms(&std::fs::read_to_string(&out).unwrap())
            } else {
                median_ms(&client)
            };
            let who = if guest_writes { "guest" } else { "client" };
            eprintln!("{path}, the {who} writing: {ms} ms a round");
            assert!(
                ms < 20.0,
                "{path}, the {who} writing: the second write waited, {ms} ms a round"
            );
        }
    }
}

#[test]
fn passt_forwarded_small_writes_are_not_held_back() {
    small_writes(false);
}

#[test]
fn pasta_forwarded_small_writes_are_not_held_back() {
    small_writes(true);
}

#[test]
fn passt_moves_64_mib_each_way_through_a_forwarded_port() {
    bulk(false);
}

#[test]
fn pasta_moves_64_mib_each_way_through_a_forwarded_port() {
    bulk(true);
}

#[test]
fn an_explicit_port_that_cant_be_bound_fails_start_up() {
    let host = Host::new();
    let _busy = Reaped(
        host.ns
            .cmd("socat")
            .args(["TCP-LISTEN:8080,reuseaddr", "-"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    listening(&host.ns, 8080);
    let dir = TempDir::new();
    for pasta in [false, true] {
        let out = if pasta {
            host.pasta(false)
                .args(["--config-net", "-t", "8080", "--", "true"])
                .output()
                .unwrap()
        } else {
            host.passt()
                .arg("-s")
                .arg(dir.join("s"))
                .args(["-t", "8080"])
                .output()
                .unwrap()
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.trim_end()
                .ends_with("--tcp-ports: port 8080: Address already in use"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(!dir.join("s").exists(), "passt left its socket behind");
}

#[test]
fn pasta_as_nobody_forwards_a_port() {
    let host = Host::new();
    let dir = TempDir::new();
    let s = script(&dir, "peer_echo.py", PEER_ECHO);
    let ready = dir.join("ready");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let _p = Reaped(
        host.pasta(true)
            .args(["--config-net", "-t", "8080:80", "-u", "5353:53", "--"])
            .arg("python3")
            .arg(&s)
            .arg(&ready)
            .arg("80")
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    let c = script(&dir, "client.py", CLIENT);
    let r = host
        .ns
        .sh(&format!("python3 {} 127.0.0.1 8080", c.display()));
    assert!(r.trim().ends_with("hello"), "{r}");
    // Spliced: from the namespace's own address.
    assert_eq!(peer(r.trim()), HOST_ADDR4);
}

/// podman's command line, verbatim but for the namespace (with and without
/// `--no-splice`): `-t none`-style options only for kinds not given.
fn podman(no_splice: bool) {
    let mut args = vec!["--config-net"];
    if no_splice {
        args.push("--no-splice");
    }
    args.extend([
        "-t",
        "8080-8080:80-80",
        "-t",
        "127.0.0.1/9090-9090:90-90",
        "-u",
        "5353-5353:53-53",
        "--dns-forward",
        "169.254.1.1",
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
        "--quiet",
        "--map-guest-addr",
        "169.254.1.2",
    ]);
    let mut s = Scene::new(true, &args);
    s.serve(&[80, 90]);
    let h = &s.host.ns;
    assert!(s.tcp(h, "127.0.0.1", 8080).ends_with("hello"));
    assert!(s.tcp(h, "::1", 8080).ends_with("hello"));
    // The host's own address, which the container shares: shown as the
    // --map-guest-addr address.
    assert_eq!(peer(&s.tcp(h, HOST_ADDR4, 8080)), "169.254.1.2");
    assert!(s.tcp(h, HOST_ADDR6, 8080).ends_with("hello"));
    assert_eq!(peer(&s.tcp(&s.client, HOST_ADDR4, 8080)), CLIENT4);
    assert!(s.tcp(h, "127.0.0.1", 9090).ends_with("hello"));
    assert_eq!(s.tcp(&s.client, HOST_ADDR4, 9090), "refused");
    assert!(s.udp(h, "127.0.0.1", 5353).ends_with("ping"));
    assert!(s.udp(&s.client, HOST_ADDR6, 5353).ends_with("ping"));
}

#[test]
fn podmans_command_line() {
    podman(false);
}

#[test]
fn podmans_command_line_without_splice() {
    podman(true);
}

#[test]
fn libvirts_port_forwards() {
    let mut s = Scene::new(
        false,
        &[
            "--one-off",
            "--tcp-ports",
            "0.0.0.0/2222:22",
            "--udp-ports",
            "%eth1/5000-5010:53-63",
        ],
    );
    s.serve(&[22]);
    let c = &s.client;
    assert_eq!(peer(&s.tcp(c, HOST_ADDR4, 2222)), CLIENT4);
    // IPv4 only: nothing on IPv6.
    assert_eq!(s.tcp(c, HOST_ADDR6, 2222), "refused");
    // The UDP range only takes what arrives on eth1.
    assert!(s.udp(c, HOST_ADDR4, 5000).ends_with("ping"));
    assert_eq!(s.udp(&s.host.ns, "127.0.0.1", 5000), "refused");
}

#[test]
fn all_forwards_every_port_it_may_hold() {
    // A small open files limit: `all` binds what its share allows (from
    // port 1 up, both families) and says the rest isn't forwarded.
    let host = Host::new();
    let dir = TempDir::new();
    let (pidfile, socket) = (dir.join("passt.pid"), dir.join("passt.socket"));
    let out = host
        .ns
        .cmd("prlimit")
        .args(["--nofile=1024:1024", PASST, "-P"])
        .arg(&pidfile)
        .arg("-s")
        .arg(&socket)
        .args(["-t", "all", "-q"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ports not forwarded"), "{err}");
    let d = Daemon {
        pid: read_pid(&pidfile),
        socket,
    };
    let g = relay::Guest::connect(&d.socket);
    g.ns.sh(&format!(
        "ip addr add {HOST_ADDR4}/24 dev eth0 && ip route add default via {HOST_GW4}"
    ));
    let s = script(&dir, "peer_echo.py", PEER_ECHO);
    let ready = dir.join("ready");
    let _server = Reaped(
        g.ns.cmd("python3")
            .arg(&s)
            .arg(&ready)
            .arg("100")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    let c = script(&dir, "client.py", CLIENT);
    let r = host
        .ns
        .sh(&format!("python3 {} 127.0.0.1 100", c.display()));
    assert!(r.trim().ends_with("hello"), "{r}");
    // Past the share: not bound, so refused by the host itself.
    let r = host
        .ns
        .sh(&format!("python3 {} 127.0.0.1 20000", c.display()));
    assert_eq!(r.trim(), "refused");
    assert!(
        std::fs::read_dir(format!("/proc/{}/fd", d.pid))
            .unwrap()
            .count()
            < 1024
    );
}

/// Bytes the namespace's tap device has received and sent.
fn tap_bytes(ns: &Netns) -> u64 {
    let r = ns
        .sh("cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes");
    r.split_whitespace()
        .map(|v| v.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn pasta_splices_loopback_clients_without_the_tap() {
    let mut s = Scene::new(true, &["-t", "8080:80", "-t", "8081:81"]);
    s.serve(&[80]);
    let h = &s.host.ns;
    // From the namespace's own address, not through the tap.
    assert_eq!(peer(&s.tcp(h, "127.0.0.1", 8080)), HOST_ADDR4);
    assert_eq!(peer(&s.tcp(h, "::1", 8080)), HOST_ADDR6);
    let src = random_file(&s.dir, "src", 64);
    let (up, down) = (s.dir.join("up"), s.dir.join("down"));
    let g = s.guest_ns();
    let _sink = socat_once(
        g,
        "TCP-LISTEN:81,reuseaddr",
        &format!("CREATE:{}", up.display()),
    );
    listening(g, 81);
    let before = tap_bytes(g);
    let t = std::time::Instant::now();
    h.sh(&format!(
        "timeout 20 socat -u OPEN:{} TCP:127.0.0.1:8081",
        src.display()
    ));
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::metadata(&up).is_ok_and(|m| m.len() == 64 << 20)
    }));
    eprintln!("64 MiB host -> namespace spliced in {:?}", t.elapsed());
    assert!(same(&src, &up), "into the namespace: content differs");
    let _source = socat_once(
        g,
        &format!("OPEN:{}", src.display()),
        "TCP-LISTEN:81,reuseaddr",
    );
    listening(g, 81);
    let t = std::time::Instant::now();
    h.sh(&format!(
        "timeout 20 socat -u TCP:127.0.0.1:8081 CREATE:{}",
        down.display()
    ));
    eprintln!("64 MiB namespace -> host spliced in {:?}", t.elapsed());
    assert!(same(&src, &down), "out of the namespace: content differs");
    // The tap saw at most some router advertisements and neighbour
    // traffic, not 128 MiB.
    let crossed = tap_bytes(g) - before;
    assert!(crossed < 1 << 20, "{crossed} bytes crossed the tap");
    assert!(alive(s.pid()));
}

/// Send `count` datagrams of `size` bytes from `ns` to addr:port, one
/// at a time, each answered: prints how many answers came back.
fn udp_many(ns: &Netns, addr: &str, port: u16, count: usize, size: usize) -> usize {
    let r = ns.sh(&format!(
        "python3 -c 'import socket\nu=socket.socket(socket.AF_INET6 if \":\" in \"{addr}\" else socket.AF_INET,socket.SOCK_DGRAM)\nu.settimeout(2)\nu.connect((\"{addr}\",{port}))\nok=0\nfor i in range({count}):\n    u.send(b\"x\"*{size})\n    try:\n        ok += u.recv(70000).endswith(b\"x\"*{size})\n    except socket.timeout:\n        pass\nprint(ok)'"
    ));
    r.trim().parse().unwrap_or(0)
}

#[test]
fn pasta_splices_udp_from_loopback_clients() {
    let mut s = Scene::new(true, &["-u", "5353:53", "-t", "none"]);
    s.serve(&[]);
    let (h, g) = (&s.host.ns, s.guest_ns());
    // The namespace's own address answers, the reply comes from the
    // very port the client wrote to (UDP_CLIENT is connected).
    let r = s.udp(h, "127.0.0.1", 5353);
    assert!(r.starts_with(&format!("peer {HOST_ADDR4} ")), "{r}");
    let r = s.udp(h, "::1", 5353);
    assert!(r.starts_with(&format!("peer {HOST_ADDR6} ")), "{r}");
    // 2000 datagrams of 1200 bytes each way (2.4 MB) don't cross the tap.
    let before = tap_bytes(g);
    assert_eq!(udp_many(h, "127.0.0.1", 5353, 2000, 1200), 2000);
    let crossed = tap_bytes(g) - before;
    assert!(crossed < 1 << 20, "{crossed} bytes crossed the tap");
    // A client from outside still goes through the tap.
    let r = s.udp(&s.client, HOST_ADDR4, 5353);
    assert!(r.starts_with(&format!("peer {CLIENT4} ")), "{r}");
    assert!(alive(s.pid()));
}

#[test]
fn pasta_udp_splice_follows_host_lo_to_ns_lo_and_no_splice() {
    let mut s = Scene::new(true, &["-u", "5353:53", "-t", "none", "--host-lo-to-ns-lo"]);
    s.serve(&[]);
    let r = s.udp(&s.host.ns, "127.0.0.1", 5353);
    assert!(r.starts_with("peer 127.0.0.1 "), "{r}");
    let r = s.udp(&s.host.ns, "::1", 5353);
    assert!(r.starts_with("peer ::1 "), "{r}");
    let mut s = Scene::new(true, &["-u", "5353:53", "-t", "none", "--no-splice"]);
    s.serve(&[]);
    let r = s.udp(&s.host.ns, "127.0.0.1", 5353);
    assert!(r.starts_with(&format!("peer {HOST_GW4} ")), "{r}");
}

#[test]
fn pasta_host_lo_to_ns_lo_keeps_loopback() {
    let mut s = Scene::new(true, &["-t", "8080:80", "--host-lo-to-ns-lo"]);
    s.serve(&[80]);
    assert_eq!(peer(&s.tcp(&s.host.ns, "127.0.0.1", 8080)), "127.0.0.1");
    assert_eq!(peer(&s.tcp(&s.host.ns, "::1", 8080)), "::1");
}

#[test]
fn pasta_no_splice_takes_the_tap() {
    let mut s = Scene::new(true, &["-t", "8080:80", "--no-splice"]);
    s.serve(&[80]);
    assert_eq!(peer(&s.tcp(&s.host.ns, "127.0.0.1", 8080)), HOST_GW4);
}

#[test]
fn pasta_tcp_ns_reaches_the_hosts_loopback() {
    let s = Scene::new(true, &["-T", "7777", "-T", "7780:7778"]);
    let h = &s.host.ns;
    let dir = &s.dir;
    let sc = script(dir, "peer_echo.py", PEER_ECHO);
    let ready = dir.join("ready");
    // Host services on its loopback only: the namespace reaches them
    // through -T, spliced.
    let _server = Reaped(
        h.cmd("python3")
            .arg(&sc)
            .arg(&ready)
            .args(["7777", "7778"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    let g = s.guest_ns();
    let r = s.tcp(g, "127.0.0.1", 7777);
    assert_eq!(
        r,
        "peer 127.0.0.1 ".to_string() + r.split_whitespace().nth(2).unwrap() + " hello"
    );
    assert!(s.tcp(g, "::1", 7777).ends_with("hello"));
    assert!(s.tcp(g, "127.0.0.1", 7780).ends_with("hello"));
    // Not forwarded: nothing there.
    assert_eq!(s.tcp(g, "127.0.0.1", 7778), "refused");
    // Bulk into the host, compared.
    let src = random_file(dir, "src", 64);
    let up = dir.join("up");
    drop(_server);
    let _sink = socat_once(
        h,
        "TCP-LISTEN:7777,bind=127.0.0.1,reuseaddr",
        &format!("CREATE:{}", up.display()),
    );
    listening(h, 7777);
    g.sh(&format!(
        "timeout 20 socat -u OPEN:{} TCP:127.0.0.1:7777",
        src.display()
    ));
    assert!(wait_for(Duration::from_secs(10), || {
        std::fs::metadata(&up).is_ok_and(|m| m.len() == 64 << 20)
    }));
    assert!(same(&src, &up), "namespace to host: content differs");
    // The host service going away resets the namespace's client.
    assert_eq!(s.tcp(g, "127.0.0.1", 7780), "reset");
}

/// A TCP server from `PEER_ECHO` in `ns` on `ports` (and UDP 5353),
/// once ready.
fn peer_echo(ns: &Netns, dir: &TempDir, name: &str, ports: &[u16]) -> Reaped {
    let s = script(dir, "peer_echo.py", PEER_ECHO);
    let ready = dir.join(name);
    let _ = std::fs::remove_file(&ready);
    let c = ns
        .cmd("python3")
        .arg(&s)
        .arg(&ready)
        .args(ports.iter().map(u16::to_string))
        .env("UDP_PORT", "5353")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    Reaped(c)
}

/// How long until `f` holds, polling; panics past `limit`.
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t = std::time::Instant::now();
    assert!(wait_for(limit, &mut f), "{what}: not within {limit:?}");
    t.elapsed()
}

#[test]
fn pasta_auto_follows_the_namespaces_servers() {
    // pasta's defaults: -t auto -u auto -T auto.
    let s = Scene::new(true, &[]);
    let (h, g) = (&s.host.ns, s.guest_ns());
    // Nothing listens in the namespace yet: nothing forwarded.
    assert_eq!(s.tcp(h, "127.0.0.1", 4444), "refused");
    let server = peer_echo(g, &s.dir, "ready1", &[4444]);
    let took = within(Duration::from_secs(3), "TCP port appears", || {
        s.tcp(h, "127.0.0.1", 4444).ends_with("hello")
    });
    eprintln!("a new namespace server reachable after {took:?}");
    // Through the tap too, from outside, and over IPv6.
    assert_eq!(peer(&s.tcp(&s.client, HOST_ADDR4, 4444)), CLIENT4);
    assert!(s.tcp(&s.client, HOST_ADDR6, 4444).ends_with("hello"));
    // UDP: the same script's socket on 5353. (Ports below 1024 need
    // privileges pasta no longer has when it finds them.)
    within(Duration::from_secs(3), "UDP port appears", || {
        s.udp(&s.client, HOST_ADDR4, 5353).ends_with("ping")
    });
    // The server goes: so does the forward.
    drop(server);
    let took = within(Duration::from_secs(3), "TCP port goes", || {
        s.tcp(h, "127.0.0.1", 4444) == "refused"
    });
    eprintln!("gone after {took:?}");
    assert!(alive(s.pid()));
}

#[test]
fn pasta_auto_skips_ports_taken_on_the_host() {
    let s = Scene::new(
        true,
        &["-t", "auto", "-u", "none", "-T", "none", "-U", "none"],
    );
    let (h, g) = (&s.host.ns, s.guest_ns());
    // The host has its own server on 4445: the namespace's can't be
    // forwarded there, which is no error.
    let _host_server = peer_echo(h, &s.dir, "host.ready", &[4445]);
    let _server = peer_echo(g, &s.dir, "ready", &[4445, 4446]);
    // Forwarded: spliced from the namespace's own address.
    within(Duration::from_secs(3), "the free port", || {
        s.tcp(h, "127.0.0.1", 4446).ends_with("hello")
    });
    assert_eq!(peer(&s.tcp(h, "127.0.0.1", 4446)), HOST_ADDR4);
    // Taken on the host: its own server answers, seeing the loopback.
    assert_eq!(peer(&s.tcp(h, "127.0.0.1", 4445)), "127.0.0.1");
    assert!(alive(s.pid()));
}

#[test]
fn pasta_tcp_ns_auto_follows_the_hosts_servers() {
    let s = Scene::new(
        true,
        &["-t", "none", "-u", "none", "-T", "auto", "-U", "none"],
    );
    let (h, g) = (&s.host.ns, s.guest_ns());
    assert_eq!(s.tcp(g, "127.0.0.1", 5555), "refused");
    // A host service on its loopback only, started after pasta.
    let server = peer_echo(h, &s.dir, "ready", &[5555]);
    let took = within(Duration::from_secs(3), "host port appears", || {
        s.tcp(g, "127.0.0.1", 5555).ends_with("hello")
    });
    eprintln!("a new host server reachable from the namespace after {took:?}");
    assert!(s.tcp(g, "::1", 5555).ends_with("hello"));
    drop(server);
    within(Duration::from_secs(3), "host port goes", || {
        s.tcp(g, "127.0.0.1", 5555) == "refused"
    });
}

/// rootlesskit's command line, verbatim but for the namespace: a server
/// started in the namespace after pasta becomes reachable from the host.
fn rootlesskit(extra: &[&str]) {
    let mut args = vec![
        "--stderr",
        "--ns-ifname=tap0",
        "--mtu=65520",
        "--address=10.0.2.100",
        "--netmask=24",
        "--gateway=10.0.2.2",
        "--dns-forward=10.0.2.3",
        "--tcp-ports=auto",
        "--udp-ports=auto",
        "--host-lo-to-ns-lo",
    ];
    args.extend_from_slice(extra);
    let host = Host::new();
    let dir = TempDir::new();
    let p = AttachedPasta::start(&host, &args);
    p.ns.sh("ip -4 addr show dev tap0 | grep -q 10.0.2.100");
    let _server = peer_echo(&p.ns, &dir, "ready", &[8000]);
    let c = script(&dir, "client.py", CLIENT);
    let got = |addr: &str| host.ns.sh(&format!("python3 {} {addr} 8000", c.display()));
    // Spliced to the namespace's loopback (--host-lo-to-ns-lo).
    within(Duration::from_secs(3), "port 8000 appears", || {
        got("127.0.0.1").trim().ends_with("hello")
    });
    assert_eq!(peer(got("127.0.0.1").trim()), "127.0.0.1");
    // Through the tap, to the namespace's own address.
    let r = got(HOST_ADDR4);
    assert!(r.trim().ends_with("hello"), "{r}");
    assert!(alive(p.pid));
}

#[test]
fn rootlesskits_command_line() {
    rootlesskit(&[]);
}

#[test]
fn rootlesskits_command_line_ipv4_only_no_map_gw() {
    rootlesskit(&["--ipv4-only", "--no-map-gw"]);
}

#[test]
fn auto_costs_an_idle_pasta_nothing_with_thousands_of_connections() {
    // pasta's defaults (auto everywhere), 3000 connections from the
    // namespace held open: scanning once a second must not make an idle
    // pasta busy (sock_diag reports the listening sockets alone).
    let s = Scene::new(true, &[]);
    let (h, g) = (&s.host.ns, s.guest_ns());
    let _server = Reaped(
        h.cmd("python3")
            .arg("-c")
            .arg(format!(
                "import socket,time\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\nl.bind(('{HOST_REMOTE4}',6100))\nl.listen(4096)\nc=[]\nwhile True:\n    c.append(l.accept()[0])"
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    listening(h, 6100);
    let dir = &s.dir;
    let done = dir.join("held");
    let _clients = Reaped(
        g.cmd("python3")
            .arg("-c")
            .arg(format!(
                "import resource,socket,time\nresource.setrlimit(resource.RLIMIT_NOFILE,(8192,8192))\nc=[socket.create_connection(('{HOST_REMOTE4}',6100)) for _ in range(3000)]\nopen('{}','w').close()\ntime.sleep(60)",
                done.display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for(Duration::from_secs(20), || done.exists()));
    std::thread::sleep(Duration::from_millis(1500));
    let before = cpu_time(s.pid());
    std::thread::sleep(Duration::from_secs(4));
    let used = cpu_time(s.pid()) - before;
    eprintln!("idle pasta with 3000 connections and auto: {used:?} of CPU in 4 s");
    assert!(used < Duration::from_millis(200), "{used:?}");
}

/// A UDP echo server in `ns` on loopback `port` (both families),
/// answering "echo " and the datagram.
fn udp_echo(ns: &Netns, dir: &TempDir, port: u16) -> Reaped {
    let ready = dir.join(&format!("udp{port}.ready"));
    let c = ns
        .cmd("python3")
        .arg("-c")
        .arg(format!(
            "import select,socket\nss=[]\nfor fam,a in ((socket.AF_INET,'127.0.0.1'),(socket.AF_INET6,'::1')):\n    u=socket.socket(fam,socket.SOCK_DGRAM)\n    u.bind((a,{port}))\n    ss.append(u)\nopen('{}','w').close()\nwhile True:\n    for u in select.select(ss,[],[])[0]:\n        b,a=u.recvfrom(65536)\n        u.sendto(b'echo '+b,a)",
            ready.display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(Duration::from_secs(5), || ready.exists()));
    Reaped(c)
}

#[test]
fn pasta_udp_ns_reaches_the_hosts_loopback() {
    let s = Scene::new(
        true,
        &[
            "-t",
            "none",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "6001,6003:6002",
        ],
    );
    let (h, g) = (&s.host.ns, s.guest_ns());
    let _e1 = udp_echo(h, &s.dir, 6001);
    let _e2 = udp_echo(h, &s.dir, 6002);
    assert_eq!(s.udp(g, "127.0.0.1", 6001), "echo ping");
    assert_eq!(s.udp(g, "::1", 6001), "echo ping");
    assert_eq!(s.udp(g, "127.0.0.1", 6003), "echo ping");
    // Many clients at once, each its own flow, each its own answer.
    let r = g.sh(
        "python3 -c 'import socket\nok=0\nfor i in range(50):\n    u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n    u.settimeout(2)\n    u.connect((\"127.0.0.1\",6001))\n    u.send(b\"%d\" % i)\n    ok += u.recv(100) == b\"echo %d\" % i\nprint(ok)'",
    );
    assert_eq!(r.trim(), "50");
    assert!(alive(s.pid()));
}

#[test]
fn pasta_udp_ns_auto_follows_the_hosts_servers() {
    let s = Scene::new(
        true,
        &["-t", "none", "-u", "none", "-T", "none", "-U", "auto"],
    );
    let (h, g) = (&s.host.ns, s.guest_ns());
    let e = udp_echo(h, &s.dir, 6011);
    let took = within(Duration::from_secs(4), "host UDP port appears", || {
        s.udp(g, "127.0.0.1", 6011) == "echo ping"
    });
    eprintln!("a new host UDP server reachable from the namespace after {took:?}");
    drop(e);
    within(Duration::from_secs(4), "host UDP port goes", || {
        s.udp(g, "127.0.0.1", 6011) != "echo ping"
    });
}

#[test]
fn pasta_splice_only_has_no_tap_and_splices_both_ways() {
    let host = Host::new();
    let dir = TempDir::new();
    let p = AttachedPasta::start(
        &host,
        &[
            "--splice-only",
            "-t",
            "8080:80",
            "-T",
            "7777",
            "-u",
            "6353:5353",
            "-U",
            "none",
        ],
    );
    // No tap device: the namespace has its loopback only.
    let links = p.ns.sh("ip -o link show | wc -l");
    assert_eq!(links.trim(), "1", "{}", p.ns.sh("ip -o link show"));
    let _ns_server = peer_echo(&p.ns, &dir, "ns.ready", &[80]);
    let _host_server = peer_echo(&host.ns, &dir, "host.ready", &[7777]);
    let c = script(&dir, "client.py", CLIENT);
    let r = host
        .ns
        .sh(&format!("python3 {} 127.0.0.1 8080", c.display()));
    assert!(r.trim().ends_with("hello"), "{r}");
    assert_eq!(peer(r.trim()), "127.0.0.1");
    // UDP from any client, as there is no tap.
    let u = script(&dir, "udp_client.py", UDP_CLIENT);
    let r = host
        .ns
        .sh(&format!("python3 {} 127.0.0.1 6353", u.display()));
    assert!(r.trim().starts_with("peer 127.0.0.1 "), "{r}");
    let r = p.ns.sh(&format!("python3 {} 127.0.0.1 7777", c.display()));
    assert!(r.trim().ends_with("hello"), "{r}");
    assert!(alive(p.pid));
}

#[test]
fn pasta_auto_within_a_range_only() {
    // `8000-8010,auto`: those ports, and only while bound in the
    // namespace.
    let s = Scene::new(
        true,
        &[
            "-t",
            "8000-8010,auto",
            "-u",
            "none",
            "-T",
            "none",
            "-U",
            "none",
        ],
    );
    let (h, g) = (&s.host.ns, s.guest_ns());
    assert_eq!(s.tcp(h, "127.0.0.1", 8005), "refused");
    let _server = peer_echo(g, &s.dir, "ready", &[8005, 8020]);
    within(Duration::from_secs(3), "8005 appears", || {
        s.tcp(h, "127.0.0.1", 8005).ends_with("hello")
    });
    // Bound in the namespace but outside the range: never forwarded.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(s.tcp(h, "127.0.0.1", 8020), "refused");
}
