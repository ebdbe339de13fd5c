//! passt's socket mode against the real kernel: start-up contract, ARP
//! through a real guest stack, framing edge cases, life cycle, capture.

mod support;

use nix::sys::signal::Signal;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
use support::relay::Guest;
use support::*;

#[test]
fn foreground_exits_only_once_listening_with_pidfile() {
    let host = Host::new();
    let dir = TempDir::new();
    // Kata's command line, verbatim.
    let d = Daemon::start(&host, &dir, &[]);
    assert!(alive(d.pid), "pidfile names a live daemon");
    // The socket listens right away: connecting must not need a retry.
    std::os::unix::net::UnixStream::connect(&d.socket)
        .expect("socket listening when passt returned");
    assert!(d.stop(Signal::SIGTERM), "daemon exits on SIGTERM");
    assert!(!d.socket.exists(), "socket removed at exit");
    assert!(!dir.join("passt.pid").exists(), "pidfile removed at exit");
}

#[test]
fn sigint_and_sigquit_clean_up_too() {
    for sig in [Signal::SIGINT, Signal::SIGQUIT] {
        let host = Host::new();
        let dir = TempDir::new();
        let d = Daemon::start(&host, &dir, &[]);
        assert!(d.stop(sig), "daemon exits on {sig}");
        assert!(!d.socket.exists(), "socket removed after {sig}");
    }
}

#[test]
fn arping_from_guest_gets_our_mac() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    let guest = Guest::connect(&d.socket);
    guest
        .ns
        .sh(&format!("ip addr add {HOST_ADDR4}/24 dev eth0"));
    let out = guest.ns.sh(&format!("arping -c 1 -w 5 -I eth0 {HOST_GW4}"));
    assert!(out.to_lowercase().contains(OUR_MAC), "arping output: {out}");
    // A remote address is behind us as well.
    let out = guest.ns.sh("arping -c 1 -w 5 -I eth0 192.0.2.200");
    assert!(out.to_lowercase().contains(OUR_MAC), "arping output: {out}");
    drop(guest);
    drop(d);
}

/// RFC 5227 probes (sender 0.0.0.0) from the guest's own stack: busybox
/// `arping -D` exits 1 when someone answers. The gateway is ours, so the
/// guest must see it taken, as a Linux host would show it; the guest's own
/// address must look free, or the guest could never configure it.
#[test]
fn probes_find_the_gateway_taken_and_the_guests_address_free() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    let guest = Guest::connect(&d.socket);
    let dad = |target: &str| {
        guest
            .ns
            .run(&format!("busybox arping -D -c 2 -w 3 -I eth0 {target}"))
    };
    for taken in [HOST_GW4, "192.0.2.200"] {
        let out = dad(taken);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{taken} answered: {text}");
        assert!(text.to_lowercase().contains(OUR_MAC), "{taken}: {text}");
    }
    let out = dad(HOST_ADDR4);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the guest's own address gets no answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn mac_addr_option_changes_our_mac() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &["--mac-addr", "02:12:34:56:78:9a"]);
    let guest = Guest::connect(&d.socket);
    guest
        .ns
        .sh(&format!("ip addr add {HOST_ADDR4}/24 dev eth0"));
    let out = guest.ns.sh(&format!("arping -c 1 -w 5 -I eth0 {HOST_GW4}"));
    assert!(
        out.to_lowercase().contains("02:12:34:56:78:9a"),
        "arping output: {out}"
    );
}

#[test]
fn frames_split_and_batched_are_handled() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    let mut c = connect(&d.socket);
    // Three requests in one write, then one split byte by byte.
    let mut bytes = Vec::new();
    for t in [1u8, 3, 4] {
        bytes.extend(framed(&arp_request([192, 0, 2, t])));
    }
    c.write_all(&bytes).unwrap();
    for _ in 0..3 {
        let f = read_arp(&mut c, Duration::from_secs(2)).expect("ARP reply");
        assert_eq!(&f[6..12], &[0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]);
    }
    for b in framed(&arp_request([192, 0, 2, 5])) {
        c.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let f = read_arp(&mut c, Duration::from_secs(2)).expect("reply to split frame");
    assert_eq!(&f[38..42], &[192, 0, 2, 2], "reply targets the requester");
    assert_eq!(
        &f[28..32],
        &[192, 0, 2, 5],
        "reply is for the asked address"
    );
}

#[test]
fn malformed_frames_are_dropped_connection_kept() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    let mut c = connect(&d.socket);
    let mut truncated_arp = arp_request([192, 0, 2, 1]);
    truncated_arp.truncate(20);
    let mut bytes = framed(&[1, 2, 3]);
    bytes.extend(framed(&truncated_arp));
    bytes.extend(framed(&[0xffu8; 60]));
    bytes.extend(framed(&arp_request([192, 0, 2, 1])));
    c.write_all(&bytes).unwrap();
    let f = read_arp(&mut c, Duration::from_secs(2)).expect("good frame still answered");
    assert_eq!(&f[28..32], &[192, 0, 2, 1]);
}

#[test]
fn broken_framing_drops_connection_then_serves_next_guest() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    for bad in [vec![0u8, 0, 0, 0], (1u32 << 20).to_be_bytes().to_vec()] {
        let mut c = connect(&d.socket);
        c.write_all(&bad).unwrap();
        assert!(
            closed_within(&mut c, Duration::from_secs(2)),
            "connection closed"
        );
        assert!(alive(d.pid), "daemon survives a broken stream");
    }
    // Disconnect and reconnect: a new guest is served.
    let mut c = connect(&d.socket);
    c.write_all(&framed(&arp_request([192, 0, 2, 1]))).unwrap();
    assert!(
        read_arp(&mut c, Duration::from_secs(2)).is_some(),
        "next guest served"
    );
}

#[test]
fn second_guest_is_refused_while_one_is_connected() {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, &[]);
    let mut first = connect(&d.socket);
    first
        .write_all(&framed(&arp_request([192, 0, 2, 1])))
        .unwrap();
    assert!(read_arp(&mut first, Duration::from_secs(2)).is_some());
    let mut second = connect(&d.socket);
    let _ = second.write_all(&framed(&arp_request([192, 0, 2, 1])));
    assert!(
        read_arp(&mut second, Duration::from_secs(1)).is_none(),
        "second guest refused"
    );
    first
        .write_all(&framed(&arp_request([192, 0, 2, 1])))
        .unwrap();
    assert!(
        read_arp(&mut first, Duration::from_secs(2)).is_some(),
        "first guest unaffected"
    );
}

#[test]
fn one_off_exits_when_guest_leaves() {
    let host = Host::new();
    let dir = TempDir::new();
    let socket = dir.join("s");
    let mut child = host
        .passt()
        .args(["-f", "-q", "--one-off", "-s"])
        .arg(&socket)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let c = connect(&socket);
    drop(c);
    let st = wait_timeout(&mut child, Duration::from_secs(3))
        .expect("passt exits after the guest leaves");
    assert!(st.success(), "{st}");
    assert!(!socket.exists());
}

/// In the foreground, passt prints what the guest will be told and where
/// to connect, as upstream does; only pasta is quiet by default.
#[test]
fn foreground_prints_the_informational_lines() {
    let host = Host::new();
    let dir = TempDir::new();
    let socket = dir.join("s");
    let mut child = Reaped(
        host.passt()
            .arg("-f")
            .arg("-s")
            .arg(&socket)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    drop(connect(&socket));
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let st = wait_timeout(&mut child.0, Duration::from_secs(3)).expect("passt exits on SIGTERM");
    assert!(st.success(), "{st}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
    for line in [
        "passt: Outbound interface: eth0".to_string(),
        format!("passt: ARP: address {OUR_MAC}"),
        format!("passt: DHCP: assign {HOST_ADDR4}/24, router {HOST_GW4}"),
        format!("passt: NDP/DHCPv6: assign {HOST_ADDR6}, router {HOST_GW6}"),
        format!("passt: UNIX domain socket bound at {}", socket.display()),
    ] {
        assert!(err.lines().any(|l| l == line), "no {line:?} in:\n{err}");
    }
}

#[test]
fn guest_over_inherited_fd() {
    let host = Host::new();
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    // The shell moves the socket from stdin to fd 3, as a parent
    // process handing us a connected socket would.
    let mut child = host
        .ns
        .cmd("sh")
        .arg("-c")
        .arg(format!("exec {PASST} -f -q --fd 3 3<&0 </dev/null"))
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .unwrap();
    ours.write_all(&framed(&arp_request([192, 0, 2, 1])))
        .unwrap();
    assert!(
        read_arp(&mut ours, Duration::from_secs(3)).is_some(),
        "served over --fd"
    );
    drop(ours);
    let st = wait_timeout(&mut child, Duration::from_secs(3)).expect("exits when the fd closes");
    assert!(st.success());
}

#[test]
fn pcap_is_readable_by_tcpdump() {
    let host = Host::new();
    let dir = TempDir::new();
    let pcap = dir.join("cap.pcap");
    let d = Daemon::start(&host, &dir, &["-p", pcap.to_str().unwrap()]);
    let mut c = connect(&d.socket);
    c.write_all(&framed(&arp_request([192, 0, 2, 1]))).unwrap();
    assert!(read_arp(&mut c, Duration::from_secs(2)).is_some());
    assert!(d.stop(Signal::SIGTERM));
    let out = sh(&format!("tcpdump -nn -r {}", pcap.display()));
    assert!(
        out.contains("Request who-has 192.0.2.1 tell 192.0.2.2"),
        "{out}"
    );
    assert!(
        out.contains("Reply 192.0.2.1 is-at 9a:55:9a:55:9a:55"),
        "{out}"
    );
}

#[test]
fn slow_guest_does_not_stall_and_drops_are_counted() {
    let host = Host::new();
    let dir = TempDir::new();
    let log = dir.join("log");
    let d = Daemon::start(&host, &dir, &["-l", log.to_str().unwrap()]);
    let mut c = connect(&d.socket);
    // Many requests, no reads: replies pile up far past socket buffers
    // (passt's, up to net.core.wmem_max, and ours).
    let one = framed(&arp_request([192, 0, 2, 1]));
    let burst: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 50_000)
        .collect();
    for _ in 0..16 {
        c.write_all(&burst)
            .expect("passt keeps reading while the guest doesn't");
    }
    // Now read what is queued, then check the guest is still served.
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 20];
    while let Ok(n) = std::io::Read::read(&mut c, &mut sink) {
        if n == 0 {
            break;
        }
    }
    drop(c);
    assert!(
        wait_for(Duration::from_secs(2), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("guest not reading")
        }),
        "drops reported: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let mut c = connect(&d.socket);
    c.write_all(&one).unwrap();
    assert!(
        read_arp(&mut c, Duration::from_secs(2)).is_some(),
        "still serving"
    );
}

#[test]
fn root_drops_to_nobody_after_opening_files() {
    let host = Host::new();
    let dir = TempDir::new();
    // A directory only root can write: files must be opened before the drop.
    let private = dir.join("private");
    std::fs::create_dir(&private).unwrap();
    sh(&format!("chmod 0700 {}", private.display()));
    let pcap = private.join("x.pcap");
    let d = Daemon::start(&host, &dir, &["-p", pcap.to_str().unwrap()]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid_line}"
    );
    assert!(pcap.exists());
    assert!(d.stop(Signal::SIGTERM));
    assert!(
        !d.socket.exists(),
        "socket removed even after dropping privileges"
    );
}

#[test]
fn default_socket_path_skips_one_in_use() {
    let host = Host::new();
    let dir = TempDir::new();
    let pidfile = dir.join("pid");
    let out = host
        .passt()
        .arg("-P")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let path = stderr
        .split([' ', ',', '\n'])
        .find_map(|w| w.strip_prefix("addr.path="))
        .expect("qemu command line printed")
        .to_string();
    assert!(
        path.starts_with("/tmp/passt_") && path.ends_with(".socket"),
        "{path}"
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let first = Daemon {
        pid,
        socket: path.clone().into(),
    };
    // A second passt must not take the socket in use.
    let pidfile2 = dir.join("pid2");
    let out2 = host
        .passt()
        .arg("-P")
        .arg(&pidfile2)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out2.status.success());
    let pid2: i32 = std::fs::read_to_string(&pidfile2)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stderr2 = String::from_utf8_lossy(&out2.stderr);
    let path2 = stderr2
        .split([' ', ',', '\n'])
        .find_map(|w| w.strip_prefix("addr.path="))
        .unwrap()
        .to_string();
    let second = Daemon {
        pid: pid2,
        socket: path2.clone().into(),
    };
    assert_ne!(path, path2);
    assert!(first.stop(Signal::SIGTERM) && second.stop(Signal::SIGTERM));
}

#[test]
fn stale_socket_file_is_reused() {
    let host = Host::new();
    let dir = TempDir::new();
    let socket = dir.join("passt.socket");
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let d = Daemon::start(&host, &dir, &[]);
    connect(&d.socket);
}

#[test]
fn ipv4_only_and_ipv6_only_hosts_start() {
    for f in [Families::V4, Families::V6] {
        let host = Host::with(f);
        let dir = TempDir::new();
        let d = Daemon::start(&host, &dir, &[]);
        let mut c = connect(&d.socket);
        c.write_all(&framed(&arp_request([192, 0, 2, 1]))).unwrap();
        let reply = read_arp(&mut c, Duration::from_millis(500));
        assert_eq!(
            reply.is_some(),
            f == Families::V4,
            "ARP answered only with IPv4 ({f:?})"
        );
    }
}

#[test]
fn guest_on_stdin_survives_daemonising() {
    // inetd style: the connected socket is our standard input, and we fork
    // to background (which points 0-2 at /dev/null).
    let host = Host::new();
    let dir = TempDir::new();
    let pidfile = dir.join("pid");
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let status = host
        .passt()
        .args(["-q", "--fd", "0", "-P"])
        .arg(&pidfile)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .status()
        .unwrap();
    assert!(status.success());
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let d = Daemon {
        pid,
        socket: dir.join("none"),
    };
    ours.write_all(&framed(&arp_request([192, 0, 2, 1])))
        .unwrap();
    assert!(
        read_arp(&mut ours, Duration::from_secs(3)).is_some(),
        "served after daemonising"
    );
    drop(ours);
    assert!(
        wait_for(Duration::from_secs(2), || !alive(d.pid)),
        "exits when the guest leaves"
    );
}
