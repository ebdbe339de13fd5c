//! Test support: a "host" network namespace with fixed addresses, a
//! "guest" namespace whose tap device is relayed to passt's socket with
//! qemu's framing, and guards that clean every namespace and process up,
//! even when a test fails.
#![allow(dead_code)]

pub mod relay;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The passt binary under test.
pub const PASST: &str = env!("CARGO_BIN_EXE_passt");

/// Addresses of the test host (documentation ranges only).
pub const HOST_ADDR4: &str = "192.0.2.2";
/// The host's IPv4 default gateway.
pub const HOST_GW4: &str = "192.0.2.1";
/// The host's IPv6 address.
pub const HOST_ADDR6: &str = "2001:db8::2";
/// The host's IPv6 default gateway.
pub const HOST_GW6: &str = "2001:db8::1";
/// An address of the host's own (on its loopback), for the guest to reach.
pub const HOST_REMOTE4: &str = "203.0.113.1";
/// The same for IPv6.
pub const HOST_REMOTE6: &str = "2001:db8:1::1";
/// Our default MAC towards the guest.
pub const OUR_MAC: &str = "9a:55:9a:55:9a:55";

/// Fail loudly, with the reason, when the test can't run here.
pub fn require_root() {
    if !nix::unistd::Uid::effective().is_root() {
        panic!(
            "this test needs root (network namespaces, tap devices); run it as root, as CI does"
        );
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short name for namespaces and files of this test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run a command, panicking with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace from `ip netns add`, deleted on drop.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Create a namespace with a unique name and `lo` up.
    pub fn new(prefix: &str) -> Self {
        require_root();
        let name = unique(prefix);
        sh(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Netns { name }
    }

    /// `ip netns exec` prefix for running a command inside.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// Run a shell command inside, returning its output (any status).
    pub fn run(&self, cmd: &str) -> Output {
        self.cmd("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .expect("spawn ip netns exec")
    }

    /// Run a shell command inside, panicking if it fails.
    pub fn sh(&self, cmd: &str) -> String {
        let out = self.run(cmd);
        assert!(
            out.status.success(),
            "in {}: `{cmd}` failed: {}\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Path of the namespace file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// Which address families the test host has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Families {
    /// IPv4 and IPv6.
    Both,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// A "host" namespace: interface `eth0` (veth) with fixed addresses,
/// default routes, and a resolv.conf of its own (used by `ip netns exec`).
pub struct Host {
    /// The namespace.
    pub ns: Netns,
}

impl Host {
    /// A dual-stack host.
    pub fn new() -> Self {
        Self::with(Families::Both)
    }

    /// A host with the given families.
    pub fn with(f: Families) -> Self {
        let ns = Netns::new("prs-h");
        let n = &ns.name;
        // No dummy driver on every kernel: a veth pair whose far end stays
        // in the host namespace carries the addresses just as well.
        sh(&format!(
            "ip -n {n} link add eth0 mtu 1500 type veth peer name rtr0 && ip -n {n} link set rtr0 up && ip -n {n} link set eth0 up"
        ));
        if f != Families::V6 {
            sh(&format!(
                "ip -n {n} addr add {HOST_ADDR4}/24 dev eth0 && ip -n {n} route add default via {HOST_GW4}"
            ));
        }
        if f != Families::V4 {
            sh(&format!(
                "ip -n {n} addr add {HOST_ADDR6}/64 dev eth0 nodad && ip -n {n} -6 route add default via {HOST_GW6}"
            ));
        } else {
            sh(&format!(
                "ip netns exec {n} sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
            ));
        }
        // Ping sockets for every group (each namespace starts with none),
        // and an address of the host's own to ping.
        sh(&format!(
            "ip netns exec {n} sysctl -qw net.ipv4.ping_group_range='0 2147483647' && ip -n {n} addr add {HOST_REMOTE4}/32 dev lo"
        ));
        if f != Families::V4 {
            sh(&format!("ip -n {n} addr add {HOST_REMOTE6}/128 dev lo"));
        }
        std::fs::create_dir_all(format!("/etc/netns/{n}")).expect("mkdir /etc/netns");
        std::fs::write(
            format!("/etc/netns/{n}/resolv.conf"),
            "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.org\n",
        )
        .expect("write resolv.conf");
        Host { ns }
    }

    /// A passt command that runs inside this host.
    pub fn passt(&self) -> Command {
        self.ns.cmd(PASST)
    }

    /// A pasta command that runs inside this host, as `nobody` when
    /// `unprivileged` (as users run it), with no standard input.
    pub fn pasta(&self, unprivileged: bool) -> Command {
        let mut c = self.ns.cmd("setpriv");
        if unprivileged {
            c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
        }
        c.arg("--").arg(PASTA);
        c.stdin(Stdio::null());
        c
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Create one under /tmp.
    pub fn new() -> Self {
        let p = PathBuf::from(format!("/tmp/{}", unique("prs-t")));
        std::fs::create_dir_all(&p).expect("mkdir temp");
        // Sticky and world-writable like /tmp, where Kata and qemu users put
        // sockets: a daemon that dropped root can still remove its files.
        sh(&format!("chmod 1777 {}", p.display()));
        TempDir(p)
    }

    /// A path inside.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wait for a child with a deadline; kill it if it overstays.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// A socat server in `ns` given socat's arguments (typically a listening
/// address and what each connection gets), returned once its port is
/// bound (or after 300 ms, for an address this doesn't recognise).
pub fn socat_server(ns: &Netns, args: &[&str]) -> Reaped {
    use std::os::unix::process::CommandExt;
    // A group of its own: `Reaped` then ends the children `fork` makes
    // too, which otherwise outlive the test holding its output pipe open.
    let c = Reaped(
        ns.cmd("socat")
            .args(args)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    match args.iter().find_map(|a| socat_port(a)) {
        Some((true, port)) => listening(ns, port),
        Some((false, port)) => udp_bound(ns, port),
        None => std::thread::sleep(Duration::from_millis(300)),
    }
    c
}

/// The port of a socat server address (`TCP4-LISTEN:7001,...`,
/// `UDP4-RECVFROM:7310,...`), and whether it is TCP.
fn socat_port(addr: &str) -> Option<(bool, u16)> {
    let (kind, rest) = addr.split_once(':')?;
    let tcp = kind.starts_with("TCP") && kind.ends_with("-LISTEN");
    let udp = kind.starts_with("UDP")
        && ["-LISTEN", "-RECVFROM", "-RECV"]
            .iter()
            .any(|k| kind.ends_with(k));
    if !tcp && !udp {
        return None;
    }
    let port = rest.split(',').next()?.parse().ok()?;
    Some((tcp, port))
}

/// Wait until a socket in `ns` listens on TCP `port`: a server started
/// under load can take longer than any fixed pause.
pub fn listening(ns: &Netns, port: u16) {
    bound(ns, "t", port);
}

/// Wait until a UDP socket in `ns` is bound to `port`.
pub fn udp_bound(ns: &Netns, port: u16) {
    bound(ns, "u", port);
}

fn bound(ns: &Netns, proto: &str, port: u16) {
    assert!(
        wait_for(Duration::from_secs(10), || {
            let o = ns.run(&format!("ss -Hl{proto}n sport = :{port}"));
            !String::from_utf8_lossy(&o.stdout).trim().is_empty()
        }),
        "nothing bound to port {port} ({proto}) after 10 s"
    );
}

/// Poll `cond` every 10 ms for up to `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// What a process writes to file `path`, once there is something, within
/// `limit`: the output of a server started with its standard output
/// redirected there.
pub fn written(path: &Path, limit: Duration) -> Option<String> {
    let mut got = None;
    wait_for(limit, || {
        got = std::fs::read_to_string(path).ok().filter(|o| !o.is_empty());
        got.is_some()
    });
    got
}

/// A daemonised passt, found through its pidfile, killed on drop.
pub struct Daemon {
    /// The daemon's PID.
    pub pid: i32,
    /// Its socket.
    pub socket: PathBuf,
}

impl Daemon {
    /// Start passt in `host` with `args` plus `-P`/`-s` in `dir`, and wait
    /// for the foreground process to exit 0.
    pub fn start(host: &Host, dir: &TempDir, args: &[&str]) -> Self {
        Self::start_env(host, dir, args, &[])
    }

    /// The same with variables `env` added to its environment (testing
    /// aids such as `PASST_RS_TCP_KEEPALIVE_SECS`).
    pub fn start_env(host: &Host, dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Self {
        let pidfile = dir.join("passt.pid");
        let socket = dir.join("passt.socket");
        let mut c = host.passt();
        c.envs(env.iter().copied());
        c.arg("-P").arg(&pidfile).arg("-s").arg(&socket).args(args);
        let out = c.stdin(Stdio::null()).output().expect("spawn passt");
        assert!(
            out.status.success(),
            "passt failed to start: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = read_pid(&pidfile);
        Daemon { pid, socket }
    }

    /// Send a signal and wait up to a second for the daemon to go.
    pub fn stop(&self, sig: nix::sys::signal::Signal) -> bool {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig);
        wait_for(Duration::from_secs(1), || !alive(self.pid))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if alive(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A child process killed and reaped on drop (servers a test starts),
/// with its process group if it leads one.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // No such group (ESRCH) unless the child was started as a leader.
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pasta binary under test.
pub const PASTA: &str = env!("CARGO_BIN_EXE_pasta");

/// A passt guest in a fresh host, with the host's IPv4 address and
/// default route configured statically (IPv6 comes from our RAs).
pub fn routed_guest(args: &[&str]) -> (Host, TempDir, Daemon, relay::Guest) {
    routed_guest_with(args, relay::Reordering::default())
}

/// The same, with the relay reordering frames as `reordering` says.
pub fn routed_guest_with(
    args: &[&str],
    reordering: relay::Reordering,
) -> (Host, TempDir, Daemon, relay::Guest) {
    routed_guest_env(args, reordering, &[])
}

/// The same, with passt's environment added to as `env` says.
pub fn routed_guest_env(
    args: &[&str],
    reordering: relay::Reordering,
    env: &[(&str, &str)],
) -> (Host, TempDir, Daemon, relay::Guest) {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start_env(&host, &dir, args, env);
    let g = relay::Guest::connect_with(&d.socket, reordering);
    g.ns.sh(&format!(
        "ip addr add {HOST_ADDR4}/24 dev eth0 && ip route add default via {HOST_GW4}"
    ));
    (host, dir, d, g)
}

/// Frame `f` with qemu's 4-byte length.
pub fn framed(f: &[u8]) -> Vec<u8> {
    let mut v = (f.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(f);
    v
}

/// An ARP request from the guest (MAC 02:00:00:00:00:01, 192.0.2.2) for `target`.
pub fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 192, 0, 2, 2]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

/// Read one framed frame from a raw client, with a timeout.
pub fn read_frame(s: &mut UnixStream, limit: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(limit)).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut f).ok()?;
    Some(f)
}

/// Read frames until an ARP one arrives (router advertisements and other
/// unsolicited frames are skipped).
pub fn read_arp(s: &mut UnixStream, limit: Duration) -> Option<Vec<u8>> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let f = read_frame(s, until.saturating_duration_since(Instant::now()))?;
        if f.get(12..14) == Some(&[0x08, 0x06][..]) {
            return Some(f);
        }
    }
    None
}

/// Whether the peer closes the stream within `limit`, whatever frames it
/// sends first.
pub fn closed_within(s: &mut UnixStream, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Connect a raw client to a passt socket, retrying briefly.
pub fn connect(path: &Path) -> UnixStream {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) if Instant::now() > until => panic!("connect {}: {e}", path.display()),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// How to start an attached pasta, beyond its arguments.
#[derive(Default, Clone, Copy)]
pub struct PastaOpts<'a> {
    /// Environment variables to add (testing aids such as
    /// `PASST_RS_UDP_IDLE_SECS`).
    pub env: &'a [(&'a str, &'a str)],
    /// An open files limit (soft and hard) to start it under, through
    /// `prlimit`: a small flow table.
    pub nofile: Option<u64>,
}

/// pasta attached to a namespace of its own in `host`, killed on drop.
pub struct AttachedPasta {
    /// The namespace pasta serves (its tap is `eth0`).
    pub ns: Netns,
    /// pasta's PID (from its pidfile).
    pub pid: i32,
    _dir: TempDir,
}

impl AttachedPasta {
    /// Start pasta (as root, which drops to nobody) with `args` plus
    /// `--config-net --netns NS -P FILE`; returns once it is configured.
    pub fn start(host: &Host, args: &[&str]) -> Self {
        Self::start_with(host, args, PastaOpts::default())
    }

    /// The same, started as `opts` says.
    pub fn start_with(host: &Host, args: &[&str], opts: PastaOpts) -> Self {
        let ns = Netns::new("prs-p");
        let dir = TempDir::new();
        let pidfile = dir.join("pasta.pid");
        let mut cmd = match opts.nofile {
            Some(n) => {
                let mut c = host.ns.cmd("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(PASTA);
                c.stdin(Stdio::null());
                c
            }
            None => host.pasta(false),
        };
        let out = cmd
            .envs(opts.env.iter().copied())
            .args(args)
            .args(["--config-net", "--netns", &ns.name, "-P"])
            .arg(&pidfile)
            .output()
            .expect("spawn pasta");
        assert!(
            out.status.success(),
            "pasta failed to start: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = read_pid(&pidfile);
        AttachedPasta { ns, pid, _dir: dir }
    }

    /// Put raw Ethernet frames on the namespace's tap device, as if its
    /// stack had sent them (an AF_PACKET socket, through python3).
    pub fn inject(&self, frames: &[Vec<u8>]) {
        let hex: Vec<String> = frames
            .iter()
            .map(|f| f.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        self.ns.sh(&format!(
            "python3 -c 'import socket,sys\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind((\"eth0\",0))\nfor h in sys.argv[1:]: s.send(bytes.fromhex(h))' {}",
            hex.join(" ")
        ));
    }
}

impl Drop for AttachedPasta {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// CPU time (user and system) a process used so far.
pub fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which may hold spaces: state is the
    // first, utime and stime the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    Duration::from_millis((f[0] + f[1]) * 1000 / hz)
}

/// The PID a pidfile holds.
pub fn read_pid(pidfile: &Path) -> i32 {
    std::fs::read_to_string(pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid in pidfile")
}

/// A file of `mib` MiB of random bytes in `dir`.
pub fn random_file(dir: &TempDir, name: &str, mib: usize) -> PathBuf {
    let p = dir.join(name);
    sh(&format!(
        "dd if=/dev/urandom of={} bs=1M count={mib} status=none",
        p.display()
    ));
    p
}

/// Whether two files have the same content (`cmp`).
pub fn same(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

/// Write a script (python3, sh) into `dir`.
pub fn script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Python for the scripts below: `endpoint(role, addr, port, timeout)`
/// is one TCP connection's socket, either family, as the server
/// (`listen`: the first connection accepted) or the client (`connect`).
pub const PY_ENDPOINT: &str = r#"
import socket
def endpoint(role, addr, port, timeout):
    fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
    if role == 'listen':
        l = socket.socket(fam)
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((addr, port)); l.listen(1)
        c, _ = l.accept()
    else:
        c = socket.create_connection((addr, port), timeout=timeout)
    c.settimeout(timeout)
    return c
"#;

/// Script `name` in `dir`: `PY_ENDPOINT`, then `body`.
pub fn py_script(dir: &TempDir, name: &str, body: &str) -> PathBuf {
    script(dir, name, &format!("{PY_ENDPOINT}{body}"))
}

/// Rounds of two small writes and a one-byte answer, with `TCP_NODELAY`,
/// as request/response protocols write a header and a body: python3
/// `SCRIPT w|r listen|connect ADDR PORT ROUNDS`. The writer (`w`) prints
/// the median round in milliseconds. A Nagle on the way holds the second
/// write until the reader's delayed ACK: about 40 ms a round, against
/// the 2 ms pause between the writes. Written with `py_script`.
pub const WRITE_WRITE_READ: &str = r#"
import socket, sys, time
role, mode, addr, port, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
s = endpoint(mode, addr, port, 10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
for i in range(rounds):
    if role == "w":
        t = time.monotonic()
        s.send(b"a"); time.sleep(0.002); s.send(b"b")
        assert s.recv(1) == b"r"
        times.append(time.monotonic() - t)
    else:
        got = b""
        while len(got) < 2:
            d = s.recv(2 - len(got))
            if not d:
                sys.exit("closed early")
            got += d
        s.send(b"r")
if role == "w":
    times.sort()
    print("%.2f" % (times[len(times) // 2] * 1e3))
"#;

/// The median round of `WRITE_WRITE_READ`'s output, in milliseconds.
pub fn median_ms(out: &str) -> f64 {
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("write-write-read: {out:?}"))
}
