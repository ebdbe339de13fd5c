//! TCP as real applications use it, through passt (a guest behind the
//! relay) and pasta: keepalives on an idle connection (the guest's, the
//! host peer's and ours), a host peer that vanished, a reset mid-stream
//! either way, a host server that reads slowly with pauses, a guest that
//! stops reading for a while, 2% segment loss both ways, a command that
//! exits right after writing, a host server that answers and closes
//! before we see our connect complete, and small writes of a
//! `TCP_NODELAY` client that must not wait.
//! Run on both peek paths: scripts/test runs this file again with
//! `PASST_RS_NO_PEEK_OFF` set.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

/// Where the guest runs its clients: passt's guest or pasta's namespace.
enum Setup {
    Passt {
        host: Host,
        _dir: TempDir,
        d: Daemon,
        g: relay::Guest,
    },
    Pasta {
        host: Host,
        p: AttachedPasta,
    },
}

impl Setup {
    fn passt(env: &[(&str, &str)]) -> Self {
        let (host, dir, d, g) = routed_guest_env(&[], relay::Reordering::default(), env);
        Setup::Passt {
            host,
            _dir: dir,
            d,
            g,
        }
    }

    fn pasta(env: &[(&str, &str)]) -> Self {
        let host = Host::new();
        let p = AttachedPasta::start_with(
            &host,
            &[],
            PastaOpts {
                env,
                ..Default::default()
            },
        );
        Setup::Pasta { host, p }
    }

    fn host(&self) -> &Netns {
        match self {
            Setup::Passt { host, .. } | Setup::Pasta { host, .. } => &host.ns,
        }
    }

    fn guest(&self) -> &Netns {
        match self {
            Setup::Passt { g, .. } => &g.ns,
            Setup::Pasta { p, .. } => &p.ns,
        }
    }

    /// The PID of passt or pasta.
    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(match self {
            Setup::Passt { d, .. } => d.pid,
            Setup::Pasta { p, .. } => p.pid,
        })
    }
}

/// How clients and servers name the host's service address, per family.
struct Fam {
    /// For socat: `TCP4` or `TCP6`.
    tcp: &'static str,
    /// The address, bracketed for IPv6 (socat's `bind=`, `TCPn:A:P`).
    bracketed: String,
    /// The address as python takes it.
    plain: &'static str,
}

fn v4() -> Fam {
    Fam {
        tcp: "TCP4",
        bracketed: HOST_REMOTE4.to_string(),
        plain: HOST_REMOTE4,
    }
}
fn v6() -> Fam {
    Fam {
        tcp: "TCP6",
        bracketed: format!("[{HOST_REMOTE6}]"),
        plain: HOST_REMOTE6,
    }
}

/// Run `test` through passt and pasta, over IPv4 and IPv6.
fn each(test: impl Fn(&Setup, &Fam)) {
    each_env(&[], test);
}

/// The same, with passt's and pasta's environment added to as `env` says.
fn each_env(env: &[(&str, &str)], test: impl Fn(&Setup, &Fam)) {
    for s in [Setup::passt(env), Setup::pasta(env)] {
        test(&s, &v4());
        // passt's guest learns its IPv6 route from our advertisements.
        assert!(wait_for(Duration::from_secs(5), || {
            s.guest()
                .run("ip -6 route show default")
                .stdout
                .starts_with(b"default")
        }));
        test(&s, &v6());
    }
}

fn spawn(ns: &Netns, cmd: &str) -> Reaped {
    Reaped(
        ns.cmd("sh")
            .arg("-c")
            // exec: the process killed on drop is the server itself.
            .arg(format!("exec {cmd}"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// A host server that writes what it receives to `out`, reading `chunk`
/// bytes every `delay_ms`, and pausing `pause_s` every `pause_every`
/// bytes: a slow application.
const SLOW_READER: &str = r#"
import socket, sys, time
addr, port, out, chunk, delay, every, pause = sys.argv[1:]
l = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((addr, int(port))); l.listen(1)
c, _ = l.accept()
got = 0; mark = 0
with open(out + '.part', 'wb') as f:
    while True:
        b = c.recv(int(chunk))
        if not b: break
        f.write(b); got += len(b)
        time.sleep(float(delay) / 1000)
        if got - mark >= int(every):
            mark = got; time.sleep(float(pause))
import os; os.rename(out + '.part', out)
"#;

#[test]
fn keepalive_probes_keep_an_idle_connection() {
    each(|s, f| {
        let dir = TempDir::new();
        let _echo = spawn(
            s.host(),
            &format!(
                "socat {}-LISTEN:7201,bind={},reuseaddr,fork PIPE",
                f.tcp, f.bracketed
            ),
        );
        // Probes every second after one idle second, two unanswered
        // probes kill it: 6 s idle is several rounds.
        let client = script(
            &dir,
            "ka.py",
            &format!(
                r#"
import socket, time
s = socket.create_connection(("{}", 7201), timeout=5)
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
time.sleep(6)
s.sendall(b"still-there\n")
print(s.recv(100).decode().strip())
"#,
                f.plain
            ),
        );
        listening(s.host(), 7201);
        let out = s.guest().sh(&format!("python3 {}", client.display()));
        assert_eq!(out.trim(), "still-there");
    });
}

/// Keepalives after one idle second, every second, three unanswered
/// ones reset the connection: on both sides of ours.
const KEEPALIVE_1S: &[(&str, &str)] = &[("PASST_RS_TCP_KEEPALIVE_SECS", "1")];

#[test]
fn an_idle_connection_outlives_our_keepalive_time() {
    each_env(KEEPALIVE_1S, |s, f| {
        let dir = TempDir::new();
        // The host peer probes too: its probes are answered by our
        // socket's kernel and never reach us.
        let _echo = spawn(
            s.host(),
            &format!(
                "socat {}-LISTEN:7202,bind={},reuseaddr,keepalive,keepidle=1,keepintvl=1,keepcnt=2 PIPE",
                f.tcp, f.bracketed
            ),
        );
        // A client without keepalives of its own, idle for twice the
        // time three unanswered probes take: our probes must have been
        // answered by the guest's kernel, and seen as answers.
        let client = script(
            &dir,
            "idle.py",
            &format!(
                r#"
import socket, time
s = socket.create_connection(("{}", 7202), timeout=5)
time.sleep(8)
s.sendall(b"still-there\n")
print(s.recv(100).decode().strip())
"#,
                f.plain
            ),
        );
        listening(s.host(), 7202);
        let out = s.guest().sh(&format!("python3 {}", client.display()));
        assert_eq!(out.trim(), "still-there");
    });
}

#[test]
fn a_host_peer_that_vanished_resets_the_guests_connection() {
    each_env(KEEPALIVE_1S, |s, f| {
        let dir = TempDir::new();
        let _echo = spawn(
            s.host(),
            &format!(
                // No `fork`: a child serving the connection would
                // outlive the test, stuck on a peer it can no longer reach.
                "socat {}-LISTEN:7203,bind={},reuseaddr PIPE",
                f.tcp, f.bracketed
            ),
        );
        let ready = dir.join("ready");
        // The guest's client, idle and waiting for data that never comes:
        // only an RST from us can tell it that its peer is gone.
        let client = script(
            &dir,
            "wait.py",
            &format!(
                r#"
import socket, time
s = socket.create_connection(("{}", 7203), timeout=5)
s.sendall(b"hello\n")
assert s.recv(100) == b"hello\n"
open("{}", "w").close()
s.settimeout(20)
t = time.monotonic()
try:
    s.recv(100)
    print("eof")
except ConnectionResetError:
    print("reset after %.1f s" % (time.monotonic() - t))
except socket.timeout:
    print("still waiting after 20 s")
"#,
                f.plain,
                ready.display()
            ),
        );
        listening(s.host(), 7203);
        let mut c = Reaped(
            s.guest()
                .cmd("python3")
                .arg(&client)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        assert!(
            wait_for(Duration::from_secs(5), || ready.exists()),
            "no echo"
        );
        // The host peer vanishes without a word, as a host whose cable
        // was pulled: nothing of the connection reaches it any more.
        s.host().sh("nft delete table inet vanish 2>/dev/null; \
             nft add table inet vanish && \
             nft add chain inet vanish in '{ type filter hook input priority 0; }' && \
             nft add rule inet vanish in tcp dport 7203 drop && \
             nft add rule inet vanish in tcp sport 7203 drop");
        let status = wait_timeout(&mut c.0, Duration::from_secs(30));
        let mut out = String::new();
        std::io::Read::read_to_string(c.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(status.is_some_and(|s| s.success()), "{out}");
        assert!(out.starts_with("reset after"), "{out}");
        s.host().sh("nft delete table inet vanish");
    });
}

/// One end of a connection that resets it mid-stream: `send` writes 4 MiB
/// and then closes with `SO_LINGER` 0 (an RST, whatever is unsent);
/// `recv` reads until the end and prints how it ended, `reset` or `eof`,
/// and the bytes it got. The server's role (`listen`) or the client's
/// (`connect`) at the address and port given. Written with `py_script`.
const RESETTER: &str = r#"
import struct, sys
role, mode, addr, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = endpoint(role, addr, port, 20)
if mode == 'send':
    c.sendall(b'x' * (4 << 20))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    c.close()
else:
    got = 0
    try:
        while True:
            b = c.recv(1 << 16)
            if not b:
                print('eof', got); break
            got += len(b)
    except ConnectionResetError:
        print('reset', got)
"#;

#[test]
fn a_reset_mid_stream_reaches_the_other_peer_as_a_reset() {
    each(|s, f| {
        let dir = TempDir::new();
        let prog = py_script(&dir, "resetter.py", RESETTER);
        // Either way: the host peer resets while sending to the guest,
        // then the guest resets while sending to the host peer. A reset
        // passed on as a clean end would hide the lost data.
        for (server, client) in [("send", "recv"), ("recv", "send")] {
            let out = dir.join(&format!("server-{server}"));
            let _server = spawn(
                s.host(),
                &format!(
                    "python3 {} listen {server} {} 7204 > {}",
                    prog.display(),
                    f.plain,
                    out.display()
                ),
            );
            listening(s.host(), 7204);
            let said = s.guest().sh(&format!(
                "python3 {} connect {client} {} 7204",
                prog.display(),
                f.plain
            ));
            let said = if client == "recv" {
                said
            } else {
                written(&out, Duration::from_secs(10)).expect("the host server never ended")
            };
            assert!(said.starts_with("reset "), "{server} -> {client}: {said}");
        }
    });
}

#[test]
fn slow_host_reader_gets_a_whole_upload() {
    each(|s, f| {
        let dir = TempDir::new();
        let src = random_file(&dir, "src", 24);
        let out = dir.join("out");
        let reader = script(&dir, "slow.py", SLOW_READER);
        // 64 KiB every 2 ms, and a 700 ms pause every 6 MiB.
        let _srv = spawn(
            s.host(),
            &format!(
                "python3 {} {} 7202 {} 65536 2 6291456 0.7",
                reader.display(),
                f.plain,
                out.display()
            ),
        );
        listening(s.host(), 7202);
        let t = Instant::now();
        s.guest().sh(&format!(
            "timeout 40 socat -u OPEN:{} {}:{}:7202",
            src.display(),
            f.tcp,
            f.bracketed
        ));
        assert!(
            wait_for(Duration::from_secs(40), || out.exists()),
            "the server got everything"
        );
        eprintln!("24 MiB to a slow reader ({}) in {:?}", f.tcp, t.elapsed());
        assert!(same(&src, &out), "content differs");
    });
}

#[test]
fn guest_that_stops_reading_then_drains_everything() {
    each(|s, f| {
        let dir = TempDir::new();
        let src = random_file(&dir, "src", 24);
        let out = dir.join("out");
        let _srv = spawn(
            s.host(),
            &format!(
                "socat -u OPEN:{} {}-LISTEN:7203,bind={},reuseaddr",
                src.display(),
                f.tcp,
                f.bracketed
            ),
        );
        listening(s.host(), 7203);
        let client = script(
            &dir,
            "pause.py",
            &format!(
                r#"
import socket, time
s = socket.create_connection(("{addr}", 7203), timeout=30)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
f = open("{out}", "wb")
f.write(s.recv(65536))
time.sleep(4)
while True:
    b = s.recv(1 << 20)
    if not b: break
    f.write(b)
"#,
                addr = f.plain,
                out = out.display()
            ),
        );
        s.guest()
            .sh(&format!("timeout 60 python3 {}", client.display()));
        assert!(same(&src, &out), "content differs");
    });
}

/// Drop 2% of TCP segments in and out of the guest's namespace.
fn lossy(ns: &Netns) {
    ns.sh("nft add table inet loss && \
         nft add chain inet loss o '{ type filter hook output priority 0; }' && \
         nft add chain inet loss i '{ type filter hook input priority 0; }' && \
         nft add rule inet loss o meta l4proto tcp numgen random mod 50 0 drop && \
         nft add rule inet loss i meta l4proto tcp numgen random mod 50 0 drop");
}

#[test]
fn two_percent_loss_both_ways_stays_intact() {
    each(|s, f| {
        let dir = TempDir::new();
        let src = random_file(&dir, "src", 32);
        lossy(s.guest());
        let up = dir.join("up");
        let _up = spawn(
            s.host(),
            &format!(
                "socat -u {}-LISTEN:7204,bind={},reuseaddr CREATE:{}",
                f.tcp,
                f.bracketed,
                up.display()
            ),
        );
        let _down = spawn(
            s.host(),
            &format!(
                "socat -u OPEN:{} {}-LISTEN:7205,bind={},reuseaddr",
                src.display(),
                f.tcp,
                f.bracketed
            ),
        );
        // Both servers: started in a row, they may come up in any order.
        listening(s.host(), 7204);
        listening(s.host(), 7205);
        let t = Instant::now();
        s.guest().sh(&format!(
            "timeout 90 socat -u OPEN:{} {}:{}:7204",
            src.display(),
            f.tcp,
            f.bracketed
        ));
        assert!(wait_for(Duration::from_secs(20), || {
            std::fs::metadata(&up).is_ok_and(|m| m.len() == 32 << 20)
        }));
        assert!(same(&src, &up), "guest to host: content differs");
        let down = dir.join("down");
        s.guest().sh(&format!(
            "timeout 90 socat -u {}:{}:7205 CREATE:{}",
            f.tcp,
            f.bracketed,
            down.display()
        ));
        assert!(same(&src, &down), "host to guest: content differs");
        eprintln!(
            "32 MiB each way with 2% loss ({}) in {:?}",
            f.tcp,
            t.elapsed()
        );
    });
}

#[test]
fn command_that_exits_right_after_writing_delivers_everything() {
    let host = Host::new();
    let dir = TempDir::new();
    let src = random_file(&dir, "src", 8);
    let out = dir.join("out");
    let reader = script(&dir, "slow.py", SLOW_READER);
    // About 2 s to read it all: 64 KiB every 15 ms.
    let _srv = spawn(
        &host.ns,
        &format!(
            "python3 {} {HOST_REMOTE4} 7206 {} 65536 15 1000000000 0",
            reader.display(),
            out.display()
        ),
    );
    listening(&host.ns, 7206);
    let t = Instant::now();
    let res = host
        .pasta(true)
        .args(["--config-net", "--", "socat", "-u"])
        .arg(format!("OPEN:{}", src.display()))
        .arg(format!("TCP4:{HOST_REMOTE4}:7206"))
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    eprintln!("pasta returned after {:?}", t.elapsed());
    assert!(
        wait_for(Duration::from_secs(10), || out.exists()),
        "the reader got to the end"
    );
    assert!(same(&src, &out), "content differs");
}

#[test]
fn a_peer_that_answers_and_closes_before_we_look_still_ends_the_stream() {
    use nix::sys::signal::{Signal, kill};
    each(|s, f| {
        let dir = TempDir::new();
        let out = dir.join("out");
        let _srv = socat_server(
            s.host(),
            &[
                &format!("{}-LISTEN:7210,bind={},reuseaddr", f.tcp, f.bracketed),
                "SYSTEM:'echo early'",
            ],
        );
        // The server's SYN-ACK is held back, so our connect() stays
        // pending until we are stopped; then the handshake, the answer
        // and the server's FIN all land while we can't look: epoll hands
        // us the connect's completion, the data and the FIN as one event.
        s.host().sh("nft add table inet hold && \
             nft add chain inet hold o '{ type filter hook output priority 0; }' && \
             nft add rule inet hold o tcp sport 7210 'tcp flags & (syn | ack) == syn | ack' drop");
        // Killed on drop, whatever fails first.
        let mut client = Reaped(
            s.guest()
                .cmd("sh")
                .arg("-c")
                .arg(format!(
                    "exec socat -u {}:{}:7210 - >{}",
                    f.tcp,
                    f.bracketed,
                    out.display()
                ))
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pending = |state: &str| {
            let q = format!("ss -Htn state {state} '( dport = :7210 )'");
            move || !s.host().run(&q).stdout.is_empty()
        };
        assert!(wait_for(Duration::from_secs(5), pending("syn-sent")));
        kill(s.pid(), Signal::SIGSTOP).unwrap();
        s.host().sh("nft delete table inet hold");
        // Our kernel completes the handshake on its own (a SYN or SYN-ACK
        // sent again after a second) and takes the answer and the FIN.
        let closed = wait_for(Duration::from_secs(5), pending("close-wait"));
        kill(s.pid(), Signal::SIGCONT).unwrap();
        assert!(closed, "the server's answer and FIN reached our socket");
        let status = wait_timeout(&mut client.0, Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap_or_default().trim(),
            "early",
            "{}",
            f.tcp
        );
        assert!(
            status.is_some_and(|st| st.success()),
            "{}: the guest's client saw the end of the stream",
            f.tcp
        );
    });
}

/// The TCP segment in an Ethernet/IPv4 frame from passt: (seq, flags,
/// payload length).
fn segment_of(f: &[u8]) -> Option<(u32, u8, usize)> {
    if f.get(12..14)? != [0x08, 0x00] || *f.get(23)? != 6 {
        return None;
    }
    let ihl = usize::from(f.get(14)? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*f.get(16)?, *f.get(17)?]));
    let tcp = f.get(14 + ihl..14 + total)?;
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    let off = usize::from(tcp.get(12)? >> 4) * 4;
    Some((seq, *tcp.get(13)?, tcp.len().checked_sub(off)?))
}

#[test]
fn paused_vm_costs_no_cpu_and_its_connection_survives() {
    use passt_rs::wire::tcp::{Flags, TcpRepr};
    use passt_rs::wire::{Mac, compose};
    use std::io::Write;
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    let _srv = spawn(
        &host.ns,
        &format!("socat -u OPEN:/dev/zero TCP4-LISTEN:7207,bind={HOST_REMOTE4},reuseaddr"),
    );
    listening(&host.ns, 7207);
    let mut c = connect(&d.socket);
    let link = compose::Link {
        src: Mac([2, 0, 0, 0, 0, 1]),
        dst: Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]),
    };
    let (g, r) = (HOST_ADDR4.parse().unwrap(), HOST_REMOTE4.parse().unwrap());
    let send = |c: &mut std::os::unix::net::UnixStream, hdr: &TcpRepr| {
        let mut f = vec![0u8; 128];
        let n = compose::tcp4(&mut f, link, g, r, hdr, compose::Csum::Full, |_| 0);
        c.write_all(&framed(&f[..n])).unwrap();
    };
    let mut hdr = TcpRepr {
        src_port: 40007,
        dst_port: 7207,
        seq: 1,
        flags: Flags::SYN,
        window: 65535,
        mss: Some(65000),
        wscale: Some(7),
        ..Default::default()
    };
    send(&mut c, &hdr);
    let until = Instant::now() + Duration::from_secs(3);
    let mut iss = None;
    while iss.is_none() && Instant::now() < until {
        let f = read_frame(&mut c, Duration::from_secs(1)).expect("SYN-ACK");
        iss = segment_of(&f).filter(|s| s.1 & 0x12 == 0x12).map(|s| s.0);
    }
    let iss = iss.expect("SYN-ACK");
    hdr = TcpRepr {
        seq: 2,
        ack: iss.wrapping_add(1),
        flags: Flags::ACK,
        window: 65535,
        mss: None,
        wscale: None,
        ..hdr
    };
    send(&mut c, &hdr);
    // A paused VM: nothing read, nothing acknowledged, for several of our
    // retransmission timeouts.
    std::thread::sleep(Duration::from_millis(2500));
    let before = cpu_time(d.pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_time(d.pid) - before;
    assert!(
        used < Duration::from_millis(300),
        "passt used {used:?} of CPU in 3 s for a guest not reading"
    );
    // The VM resumes: it reads and acknowledges, and the stream goes on
    // past anything sent before.
    let mut highest = iss.wrapping_add(1);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let Some(f) = read_frame(&mut c, Duration::from_secs(2)) else {
            break;
        };
        let Some((seq, flags, len)) = segment_of(&f) else {
            continue;
        };
        assert_eq!(flags & 0x04, 0, "the connection was reset");
        let end = seq.wrapping_add(len as u32);
        if end.wrapping_sub(highest) as i32 > 0 && seq == highest {
            highest = end;
            hdr.ack = highest;
            send(&mut c, &hdr);
        }
        if highest.wrapping_sub(iss) as usize > 32 << 20 {
            break;
        }
    }
    let got = highest.wrapping_sub(iss) as usize;
    assert!(
        got > 32 << 20,
        "after resuming, the guest got {got} bytes in order"
    );
}

#[test]
fn small_writes_of_a_nodelay_client_are_not_held_back() {
    each(|s, f| {
        let dir = TempDir::new();
        let ww = py_script(&dir, "ww.py", WRITE_WRITE_READ);
        let _srv = spawn(
            s.host(),
            &format!("python3 {} r listen {} 7208 20", ww.display(), f.plain),
        );
        listening(s.host(), 7208);
        let out = s.guest().sh(&format!(
            "python3 {} w connect {} 7208 20",
            ww.display(),
            f.plain
        ));
        let ms = median_ms(&out);
        eprintln!(
            "write-write-read from the guest ({}): {ms} ms a round",
            f.tcp
        );
        // 2 ms of it is the writer's own pause.
        assert!(ms < 20.0, "the second write waited: {ms} ms a round");
    });
}
