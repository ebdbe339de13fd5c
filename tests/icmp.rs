//! Echo requests from a guest and from a pasta namespace, answered by the
//! host through unprivileged ping sockets.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::*;

#[test]
fn guest_pings_the_host_v4() {
    let (_h, _dir, _d, g) = routed_guest(&[]);
    let out = g.ns.sh(&format!("ping -c 3 -i 0.2 -W 2 {HOST_REMOTE4}"));
    assert!(out.contains("3 received"), "{out}");
    // The gateway address stands for the host's loopback.
    let out = g.ns.sh(&format!("ping -c 1 -W 2 {HOST_GW4}"));
    assert!(out.contains("1 received"), "{out}");
}

#[test]
fn guest_pings_the_host_v6() {
    let (_h, _dir, _d, g) = routed_guest(&[]);
    // SLAAC address and default route from our router advertisement.
    assert!(wait_for(Duration::from_secs(5), || {
        g.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    let out = g.ns.sh(&format!("ping -6 -c 3 -i 0.2 -W 2 {HOST_REMOTE6}"));
    assert!(out.contains("3 received"), "{out}");
}

#[test]
fn no_icmp_drops_echo_requests() {
    let (_h, _dir, _d, g) = routed_guest(&["--no-icmp"]);
    let r = g.ns.run(&format!("ping -c 1 -W 1 {HOST_REMOTE4}"));
    assert!(!r.status.success(), "no reply with --no-icmp");
}

#[test]
fn ping_from_pasta_as_nobody() {
    let host = Host::new();
    let out = host
        .pasta(true)
        .args(["-q", "--config-net", "--"])
        .args([
            "sh",
            "-c",
            &format!(
                "ping -c 2 -i 0.2 -W 2 {HOST_REMOTE4} && ping -6 -c 2 -i 0.2 -W 2 {HOST_REMOTE6}"
            ),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("2 received").count(), 2, "{text}");
}

/// Echo payload sizes: empty, small, around the MTU, and large.
const PING_SIZES: [u32; 6] = [0, 56, 1000, 1472, 8000, 60000];

#[test]
fn every_echo_request_gets_exactly_one_reply() {
    let host = Host::new();
    let dir = TempDir::new();
    let pcap = dir.join("ping.pcap");
    let d = Daemon::start(&host, &dir, &["-p", pcap.to_str().unwrap()]);
    let g = support::relay::Guest::connect(&d.socket);
    g.ns.sh(&format!(
        "ip link set eth0 mtu 65520 && ip addr add {HOST_ADDR4}/24 dev eth0 && ip route add default via {HOST_GW4}"
    ));
    assert!(wait_for(Duration::from_secs(5), || {
        g.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    for size in PING_SIZES {
        for (v, addr) in [("-4", HOST_REMOTE4), ("-6", HOST_REMOTE6)] {
            let out =
                g.ns.sh(&format!("ping {v} -c 3 -i 0.1 -W 2 -s {size} {addr}"));
            assert!(out.contains("3 received"), "{out}");
            assert!(!out.contains("DUP!"), "{out}");
        }
    }
    drop(g);
    assert!(d.stop(nix::sys::signal::Signal::SIGTERM));
    // Exactly one reply per request on the guest's link, nothing else.
    let out = sh(&format!("tcpdump -nn -r {} icmp or icmp6", pcap.display()));
    let n = PING_SIZES.len() * 3;
    let count = |what: &str| out.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("ICMP echo request"), n, "{out}");
    assert_eq!(count("ICMP echo reply"), n, "{out}");
    assert_eq!(count("ICMP6, echo request"), n, "{out}");
    assert_eq!(count("ICMP6, echo reply"), n, "{out}");
}

#[test]
fn every_echo_request_gets_exactly_one_reply_pasta() {
    let host = Host::new();
    let p = AttachedPasta::start(&host, &["-q"]);
    assert!(wait_for(Duration::from_secs(5), || {
        p.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    for size in PING_SIZES {
        for (v, addr) in [("-4", HOST_REMOTE4), ("-6", HOST_REMOTE6)] {
            let out =
                p.ns.sh(&format!("ping {v} -c 3 -i 0.1 -W 2 -s {size} {addr}"));
            assert!(out.contains("3 received"), "{out}");
            assert!(!out.contains("DUP!"), "{out}");
        }
    }
}

#[test]
fn unreachable_host_is_reported_to_ping() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    // Nobody answers for .77 on the host's link; neighbour resolution
    // gives up after one probe, and the host's kernel reports the host
    // unreachable to the ping socket.
    h.ns.sh(
        "sysctl -qw net.ipv4.neigh.eth0.mcast_solicit=1 net.ipv4.neigh.eth0.retrans_time_ms=100 \
         net.ipv6.neigh.eth0.mcast_solicit=1 net.ipv6.neigh.eth0.retrans_time_ms=100",
    );
    let out = g.ns.run("ping -c 1 -W 3 192.0.2.77");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From 192.0.2.77 icmp_seq=1 Destination Host Unreachable"),
        "{text}"
    );
    assert!(wait_for(Duration::from_secs(5), || {
        g.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    let out = g.ns.run("ping -6 -c 1 -W 3 2001:db8::77");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("From 2001:db8::77 icmp_seq=1 Destination unreachable: Address unreachable"),
        "{text}"
    );
}
