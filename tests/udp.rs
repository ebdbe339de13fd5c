//! UDP from a guest and from a pasta namespace to host services, with the
//! address mappings podman relies on (--dns-forward, the gateway as host
//! loopback).

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::*;

/// A UDP echo server in `ns` on `addr` (socat, one child per peer).
fn echo_server(ns: &Netns, family: &str, addr: &str, port: u16) -> Reaped {
    let c = ns
        .cmd("socat")
        .arg(format!("{family}-RECVFROM:{port},bind={addr},fork"))
        .arg("PIPE")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    Reaped(c)
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
