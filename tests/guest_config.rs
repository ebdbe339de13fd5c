//! Guest configuration with clients nobody here wrote: busybox udhcpc, ISC
//! dhclient (v4 and v6), dhcpcd, the kernel's SLAAC and rdisc6, in the
//! guest namespace of the test harness.

mod support;

use std::time::Duration;
use support::relay::Guest;
use support::*;

/// A udhcpc event script that records what udhcpc was told and applies it
/// the way distribution scripts do.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
env | grep -E '^(ip|subnet|mask|router|dns|domain|search|mtu|hostname|lease|staticroutes|serverid)=' > "$OUT"
ip addr add "$ip/$mask" dev "$interface"
[ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
for r in $router; do ip route add default via "$r" dev "$interface"; done
: > /etc/resolv.conf
[ -n "$search" ] && echo "search $search" >> /etc/resolv.conf
for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
exit 0
"#;

/// Start passt in a fresh host with `args`, connect a guest.
fn setup(args: &[&str]) -> (Host, TempDir, Daemon, Guest) {
    let host = Host::new();
    let dir = TempDir::new();
    let d = Daemon::start(&host, &dir, args);
    let g = Guest::connect(&d.socket);
    (host, dir, d, g)
}

/// Run udhcpc once in the guest; returns what the script recorded, or
/// None if no lease was obtained.
fn udhcpc(g: &Guest, dir: &TempDir) -> Option<String> {
    let script = dir.join("udhcpc.sh");
    let out = dir.join("udhcpc.env");
    std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
    sh(&format!("chmod +x {}", script.display()));
    let r = g.ns.run(&format!(
        "OUT={} busybox udhcpc -f -q -n -t 3 -T 1 -A 1 -i eth0 -s {}",
        out.display(),
        script.display()
    ));
    if !r.status.success() {
        return None;
    }
    std::fs::read_to_string(&out).ok()
}

fn has(env: &str, line: &str) -> bool {
    env.lines().any(|l| l == line)
}

#[test]
fn udhcpc_gets_the_host_configuration() {
    let (_h, dir, _d, g) = setup(&[]);
    let env = udhcpc(&g, &dir).expect("udhcpc got a lease");
    for want in [
        "ip=192.0.2.2",
        "subnet=255.255.255.0",
        "mask=24",
        "router=192.0.2.1",
        "dns=192.0.2.53",
        "search=example.org",
        "mtu=65520",
    ] {
        assert!(has(&env, want), "missing {want} in:\n{env}");
    }
    let addr = g.ns.sh("ip -4 -o addr show dev eth0");
    assert!(addr.contains("192.0.2.2/24"), "{addr}");
    let route = g.ns.sh("ip -4 route show default");
    assert!(route.contains("via 192.0.2.1"), "{route}");
    assert!(g.ns.sh("ip -o link show dev eth0").contains("mtu 65520"));
    let resolv = g.resolv_conf();
    assert!(
        resolv.contains("nameserver 192.0.2.53") && resolv.contains("search example.org"),
        "{resolv}"
    );
}

#[test]
fn udhcpc_with_overrides() {
    let (_h, dir, _d, g) = setup(&[
        "-a",
        "10.0.5.6/16",
        "-g",
        "10.0.0.1",
        "-D",
        "10.0.0.53",
        "-S",
        "a.example b.example",
        "-m",
        "9000",
        "-H",
        "guesthost",
    ]);
    let env = udhcpc(&g, &dir).expect("udhcpc got a lease");
    for want in [
        "ip=10.0.5.6",
        "subnet=255.255.0.0",
        "router=10.0.0.1",
        "dns=10.0.0.53",
        "search=a.example b.example",
        "mtu=9000",
        "hostname=guesthost",
    ] {
        assert!(has(&env, want), "missing {want} in:\n{env}");
    }
}

#[test]
fn udhcpc_with_netmask_option() {
    let (_h, dir, _d, g) = setup(&["-a", "10.0.5.6", "-n", "255.255.240.0"]);
    let env = udhcpc(&g, &dir).expect("udhcpc got a lease");
    assert!(has(&env, "ip=10.0.5.6") && has(&env, "mask=20"), "{env}");
}

#[test]
fn off_link_gateway_comes_with_classless_routes() {
    let (_h, dir, _d, g) = setup(&["-a", "10.0.5.6/24", "-g", "10.9.9.9"]);
    let env = udhcpc(&g, &dir).expect("udhcpc got a lease");
    assert!(env.contains("staticroutes="), "no option 121 in:\n{env}");
    assert!(env.contains("10.9.9.9"), "{env}");
}

#[test]
fn no_dhcp_options_take_effect() {
    let (_h, dir, _d, g) = setup(&["--no-dhcp"]);
    assert!(udhcpc(&g, &dir).is_none(), "no lease with --no-dhcp");

    let (_h, dir, _d, g) = setup(&["--no-dhcp-dns"]);
    let env = udhcpc(&g, &dir).expect("lease");
    assert!(!env.contains("dns="), "{env}");
    assert!(has(&env, "search=example.org"), "{env}");

    let (_h, dir, _d, g) = setup(&["--no-dhcp-search"]);
    let env = udhcpc(&g, &dir).expect("lease");
    assert!(!env.contains("search="), "{env}");
    assert!(has(&env, "dns=192.0.2.53"), "{env}");

    let (_h, dir, _d, g) = setup(&["-m", "0"]);
    let env = udhcpc(&g, &dir).expect("lease");
    assert!(!env.contains("mtu="), "{env}");
}

#[test]
fn isc_dhclient_v4() {
    let (_h, dir, _d, g) = setup(&[]);
    let lf = dir.join("dhclient.leases");
    let pf = dir.join("dhclient.pid");
    g.ns.sh(&format!(
        "timeout 20 dhclient -4 -1 -v -lf {} -pf {} eth0",
        lf.display(),
        pf.display()
    ));
    let addr = g.ns.sh("ip -4 -o addr show dev eth0");
    assert!(addr.contains("192.0.2.2/24"), "{addr}");
    assert!(
        g.ns.sh("ip -4 route show default")
            .contains("via 192.0.2.1")
    );
    let resolv = g.resolv_conf();
    assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
    assert!(resolv.contains("search example.org"), "{resolv}");
    let _ = g.ns.run(&format!("dhclient -x -pf {}", pf.display()));
}

#[test]
fn dhcpcd_v4() {
    let (_h, dir, _d, g) = setup(&[]);
    let _ = dir;
    g.ns.sh("timeout 30 dhcpcd -4 -1 -t 15 --nohook resolv.conf -f /dev/null eth0");
    let addr = g.ns.sh("ip -4 -o addr show dev eth0");
    assert!(addr.contains("192.0.2.2/24"), "{addr}");
    assert!(
        g.ns.sh("ip -4 route show default")
            .contains("via 192.0.2.1")
    );
    let _ = g.ns.run("dhcpcd -x eth0");
}

/// Wait until the guest has an address matching `pat` (or time runs out).
fn wait_addr(g: &Guest, pat: &str, limit: Duration) -> String {
    let mut last = String::new();
    wait_for(limit, || {
        last =
            String::from_utf8_lossy(&g.ns.run("ip -6 -o addr show dev eth0").stdout).into_owned();
        last.contains(pat)
    });
    last
}

#[test]
fn kernel_slaac_and_rdisc6() {
    let (_h, _dir, _d, g) = setup(&[]);
    // EUI-64 from the guest MAC 02:00:00:00:00:01.
    let addrs = wait_addr(&g, "2001:db8::ff:fe00:1/64", Duration::from_secs(5));
    assert!(addrs.contains("2001:db8::ff:fe00:1/64"), "{addrs}");
    let route = g.ns.sh("ip -6 route show default");
    assert!(route.contains("via fe80::1"), "{route}");
    let ra = g.ns.sh("rdisc6 -1 -w 2000 eth0");
    assert!(ra.contains("2001:db8::/64"), "{ra}");
    assert!(ra.contains("2001:db8::53"), "RDNSS in: {ra}");
    assert!(ra.contains("example.org"), "DNSSL in: {ra}");
    assert!(ra.contains("65520"), "MTU in: {ra}");
}

#[test]
fn neighbour_solicitations_get_our_mac() {
    let (_h, _dir, _d, g) = setup(&[]);
    for target in ["fe80::1", "2001:db8::1", "2001:db8::77"] {
        let out = g.ns.sh(&format!("ndisc6 -1 -w 2000 {target} eth0"));
        assert!(
            out.to_lowercase().contains("9a:55:9a:55:9a:55"),
            "{target}: {out}"
        );
    }
}

#[test]
fn isc_dhclient_v6() {
    let (_h, dir, _d, g) = setup(&[]);
    wait_addr(&g, "fe80::", Duration::from_secs(3));
    let lf = dir.join("dhclient6.leases");
    let pf = dir.join("dhclient6.pid");
    g.ns.sh(&format!(
        "timeout 20 dhclient -6 -1 -v -lf {} -pf {} eth0",
        lf.display(),
        pf.display()
    ));
    let addrs = g.ns.sh("ip -6 -o addr show dev eth0");
    assert!(addrs.contains(&format!("{HOST_ADDR6}/")), "{addrs}");
    let _ = g.ns.run(&format!("dhclient -6 -x -pf {}", pf.display()));
}

#[test]
fn dhcpcd_v6() {
    let (_h, _dir, _d, g) = setup(&[]);
    wait_addr(&g, "fe80::", Duration::from_secs(3));
    // Not one-shot: dhcpcd would stop after the router advertisement,
    // before its DHCPv6 exchange. It goes to background; the namespace's
    // cleanup ends it.
    g.ns.sh("dhcpcd -6 --nohook resolv.conf -f /dev/null eth0");
    let addrs = wait_addr(&g, &format!("{HOST_ADDR6}/128"), Duration::from_secs(10));
    assert!(addrs.contains(&format!("{HOST_ADDR6}/128")), "{addrs}");
    let _ = g.ns.run("dhcpcd -x eth0");
}

#[test]
fn no_ndp_no_ra_no_dhcpv6_take_effect() {
    // --no-ra: no router advertisement, but neighbours are still answered.
    let (_h, _dir, _d, g) = setup(&["--no-ra"]);
    assert!(
        !g.ns.run("rdisc6 -1 -w 1000 -r 2 eth0").status.success(),
        "no RA with --no-ra"
    );
    assert!(
        g.ns.sh("ndisc6 -1 -w 2000 fe80::1 eth0")
            .to_lowercase()
            .contains("9a:55:9a:55:9a:55")
    );

    // --no-ndp: neither.
    let (_h, _dir, _d, g) = setup(&["--no-ndp"]);
    assert!(
        !g.ns.run("rdisc6 -1 -w 1000 -r 2 eth0").status.success(),
        "no RA with --no-ndp"
    );
    assert!(
        !g.ns
            .run("ndisc6 -1 -w 1000 -r 2 fe80::1 eth0")
            .status
            .success(),
        "no NA with --no-ndp"
    );

    // --no-dhcpv6: dhclient -6 gets nothing.
    let (_h, dir, _d, g) = setup(&["--no-dhcpv6"]);
    wait_addr(&g, "fe80::", Duration::from_secs(3));
    let lf = dir.join("l");
    let pf = dir.join("p");
    let r = g.ns.run(&format!(
        "timeout 6 dhclient -6 -1 -lf {} -pf {} eth0",
        lf.display(),
        pf.display()
    ));
    assert!(!r.status.success(), "no DHCPv6 lease with --no-dhcpv6");
    let _ = g.ns.run(&format!("dhclient -6 -x -pf {}", pf.display()));
}
