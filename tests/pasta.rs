//! pasta against the real kernel: new namespaces around a command, joining
//! existing ones (by path, by PID, podman's way), configuring them over
//! netlink, living and dying with them; as root and as `nobody`.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

fn run_ok(mut c: Command) -> String {
    let out = c.output().expect("spawn pasta");
    assert!(
        out.status.success(),
        "pasta failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Global addresses of `dev` from `ip -j addr` output, as "addr/len".
fn global_addrs(json: &str) -> Vec<String> {
    // Small, dependency-free scan of iproute2's JSON: pairs of "local" and
    // "prefixlen" inside addr_info entries with "scope":"global".
    let mut out = Vec::new();
    for entry in json.split('{') {
        if !entry.contains("\"scope\":\"global\"") {
            continue;
        }
        let field = |k: &str| {
            entry.split(&format!("\"{k}\":")).nth(1).map(|v| {
                v.trim_start_matches('"')
                    .split(['"', ',', '}'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        };
        if let (Some(a), Some(l)) = (field("local"), field("prefixlen")) {
            out.push(format!("{a}/{l}"));
        }
    }
    out.sort();
    out
}

/// `dst via gateway` pairs from `ip -j route` output.
fn routes(json: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in json.split('{').skip(1) {
        let field = |k: &str| {
            entry
                .split(&format!("\"{k}\":\""))
                .nth(1)
                .map(|v| v.split('"').next().unwrap_or("").to_string())
        };
        if let Some(dst) = field("dst") {
            if dst.starts_with("fe80") {
                continue;
            }
            out.push(format!(
                "{dst} via {}",
                field("gateway").unwrap_or_default()
            ));
        }
    }
    out.sort();
    out
}

fn config_net_matches_host(unprivileged: bool) {
    let host = Host::new();
    let mut c = host.pasta(unprivileged);
    c.args([
        "--config-net",
        "--",
        "sh",
        "-c",
        "ip -j addr show dev eth0; echo ===; ip -j -4 route; echo ===; ip -j -6 route",
    ]);
    let out = run_ok(c);
    let parts: Vec<&str> = out.split("===").collect();
    assert_eq!(parts.len(), 3, "{out}");
    let host_addrs = host.ns.sh("ip -j addr show dev eth0");
    assert_eq!(
        global_addrs(parts[0]),
        global_addrs(&host_addrs),
        "addresses"
    );
    assert_eq!(
        global_addrs(parts[0]),
        vec![format!("{HOST_ADDR4}/24"), format!("{HOST_ADDR6}/64")]
    );
    let host_r4 = host.ns.sh("ip -j -4 route show dev eth0");
    let host_r6 = host.ns.sh("ip -j -6 route show dev eth0");
    assert_eq!(routes(parts[1]), routes(&host_r4), "IPv4 routes");
    assert_eq!(routes(parts[2]), routes(&host_r6), "IPv6 routes");
    assert!(
        routes(parts[1]).contains(&format!("default via {HOST_GW4}")),
        "{}",
        parts[1]
    );
    assert!(
        routes(parts[2]).contains(&format!("default via {HOST_GW6}")),
        "{}",
        parts[2]
    );
}

#[test]
fn config_net_copies_host_addresses_and_routes_as_root() {
    config_net_matches_host(false);
}

#[test]
fn config_net_copies_host_addresses_and_routes_unprivileged() {
    config_net_matches_host(true);
}

#[test]
fn exit_status_of_the_command() {
    for unprivileged in [false, true] {
        let host = Host::new();
        let mut c = host.pasta(unprivileged);
        c.args(["--", "sh", "-c", "exit 7"]);
        assert_eq!(c.status().unwrap().code(), Some(7));
        let mut c = host.pasta(unprivileged);
        c.args(["--", "sh", "-c", "kill -9 $$"]);
        assert_eq!(c.status().unwrap().code(), Some(128 + 9));
    }
}

#[test]
fn command_runs_as_root_in_its_own_namespace() {
    let host = Host::new();
    let mut c = host.pasta(true);
    c.args([
        "--config-net",
        "--",
        "sh",
        "-c",
        "id -u; readlink /proc/self/ns/net; ip -o link show lo",
    ]);
    let out = run_ok(c);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"), "{out}");
    let theirs = lines.next().unwrap_or_default().to_string();
    let ours = host.ns.sh("readlink /proc/self/ns/net");
    assert_ne!(theirs.trim(), ours.trim(), "a new network namespace");
    assert!(
        lines.next().unwrap_or_default().contains("UP"),
        "lo is up: {out}"
    );
}

#[test]
fn netns_attach_returns_configured_and_quits_when_deleted() {
    let host = Host::new();
    let target = Netns::new("prs-x");
    let dir = TempDir::new();
    let pidfile = dir.join("pasta.pid");
    let mut c = host.pasta(false);
    c.args(["--config-net", "--netns", &target.name, "-P"])
        .arg(&pidfile);
    run_ok(c);
    // Configured by the time we returned: no waiting here.
    let addrs = target.sh("ip -j addr show dev eth0");
    assert_eq!(
        global_addrs(&addrs),
        vec![format!("{HOST_ADDR4}/24"), format!("{HOST_ADDR6}/64")]
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "runs as nobody: {uid}"
    );
    sh(&format!("ip netns del {}", target.name));
    assert!(
        wait_for(Duration::from_secs(1), || !alive(pid)),
        "pasta gone within a second"
    );
}

#[test]
fn attach_by_pid() {
    let host = Host::new();
    let mut holder = host
        .ns
        .cmd("unshare")
        .args(["-n", "sleep", "30"])
        .spawn()
        .unwrap();
    // The namespace exists once `sleep` runs.
    let pid = holder.id();
    assert!(wait_for(Duration::from_secs(2), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    }));
    let dir = TempDir::new();
    let pidfile = dir.join("pasta.pid");
    let mut c = host.pasta(false);
    c.args(["--config-net", "-P"])
        .arg(&pidfile)
        .arg(pid.to_string());
    run_ok(c);
    let addrs = sh(&format!("nsenter -t {pid} -n ip -j addr show dev eth0"));
    assert_eq!(
        global_addrs(&addrs),
        vec![format!("{HOST_ADDR4}/24"), format!("{HOST_ADDR6}/64")]
    );
    let daemon: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        wait_for(Duration::from_secs(1), || !alive(daemon)),
        "pasta gone within a second of the process"
    );
}

#[test]
fn podman_command_line_verbatim() {
    let host = Host::new();
    let dir = TempDir::new();
    // Podman bind-mounts the namespace under its runtime directory.
    let nsfile = dir.join("netns-0123abcd");
    std::fs::write(&nsfile, "").unwrap();
    sh(&format!("unshare --net={} true", nsfile.display()));
    let mut c = host.pasta(false);
    c.args([
        "--config-net",
        "--dns-forward",
        "169.254.1.1",
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        "--no-map-gw",
        "--quiet",
        "--netns",
    ])
    .arg(&nsfile)
    .args(["--map-guest-addr", "169.254.1.2"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "--quiet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addrs = sh(&format!(
        "nsenter --net={} ip -j addr show dev eth0",
        nsfile.display()
    ));
    assert_eq!(
        global_addrs(&addrs),
        vec![format!("{HOST_ADDR4}/24"), format!("{HOST_ADDR6}/64")]
    );
    let pids = sh("pgrep -x pasta || true");
    // Podman does no cleanup: removing the file must end pasta.
    sh(&format!("umount {0}; rm -f {0}", nsfile.display()));
    assert!(
        wait_for(Duration::from_secs(1), || {
            pids.split_whitespace().all(|p| {
                p.parse()
                    .map(|p: i32| !alive(p) || !is_ours(p, &nsfile))
                    .unwrap_or(true)
            })
        }),
        "pasta still running after the namespace file went away"
    );
}

/// Whether process `p` is a pasta serving `nsfile`.
fn is_ours(p: i32, nsfile: &std::path::Path) -> bool {
    std::fs::read(format!("/proc/{p}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains(&*nsfile.to_string_lossy()))
        .unwrap_or(false)
}

#[test]
fn dhcp_inside_pasta_without_config_net() {
    let host = Host::new();
    let dir = TempDir::new();
    let script = dir.join("s.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease $ip/$mask via $router\"\nexit 0\n",
    )
    .unwrap();
    sh(&format!("chmod +x {}", script.display()));
    let mut c = host.pasta(true);
    c.args(["--", "sh", "-c"]).arg(format!(
        "ip link set eth0 up && busybox udhcpc -f -q -n -t 3 -T 1 -i eth0 -s {}",
        script.display()
    ));
    let out = run_ok(c);
    assert!(
        out.contains(&format!("lease {HOST_ADDR4}/24 via {HOST_GW4}")),
        "{out}"
    );
}

/// What pasta tells about the guest's configuration, as passt does at
/// start-up: informational lines, for `-d` only in pasta.
const INFO_LINES: [&str; 4] = [
    "pasta: Outbound interface: eth0",
    "pasta: ARP: address 9a:55:9a:55:9a:55",
    "pasta: DHCP: assign 192.0.2.2/24, router 192.0.2.1",
    "pasta: NDP/DHCPv6: assign 2001:db8::2, router 2001:db8::1",
];

#[test]
fn quiet_by_default_the_command_owns_the_terminal() {
    let host = Host::new();
    for (cmd, stdout) in [(&["true"][..], ""), (&["sh", "-c", "echo hi"][..], "hi\n")] {
        let mut c = host.pasta(true);
        c.args(["--config-net", "--"]).args(cmd);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cmd:?}: {}\n{err}", out.status);
        assert_eq!(err, "", "{cmd:?} wrote to stderr");
        assert_eq!(String::from_utf8_lossy(&out.stdout), stdout, "{cmd:?}");
    }
}

#[test]
fn debug_and_trace_show_the_informational_lines() {
    let host = Host::new();
    for flag in ["-d", "--debug", "--trace"] {
        let mut c = host.pasta(true);
        c.args([flag, "--config-net", "--", "true"]);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{flag}: {}\n{err}", out.status);
        for line in INFO_LINES {
            assert!(
                err.lines().any(|l| l == line),
                "{flag}: no {line:?} in:\n{err}"
            );
        }
    }
}

#[test]
fn errors_are_one_clear_line() {
    let host = Host::new();
    let mut c = host.pasta(false);
    c.args(["--netns", "/nonexistent/x"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "pasta: --netns /nonexistent/x: No such file or directory"
    );
}

#[test]
fn rootless_podman_style_inside_a_user_namespace() {
    // As podman rootless does: an unprivileged user's own user and mount
    // namespaces, a network namespace bind-mounted there, and pasta run as
    // that namespace's root with podman's arguments.
    let host = Host::new();
    let dir = TempDir::new();
    let script = format!(
        r#"set -e
mount -t tmpfs none {d}
touch {d}/netns-x
unshare --net={d}/netns-x true
{PASTA} --config-net --dns-forward 169.254.1.1 -t none -u none -T none -U none --no-map-gw --quiet --netns {d}/netns-x -P {d}/pid
nsenter --net={d}/netns-x ip -j addr show dev eth0
kill $(cat {d}/pid)
"#,
        d = dir.0.display()
    );
    let mut c = host.ns.cmd("setpriv");
    c.args([
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "--",
        "unshare",
        "-r",
        "-m",
        "sh",
        "-c",
    ])
    .arg(script);
    let out = run_ok(c);
    assert_eq!(
        global_addrs(&out),
        vec![format!("{HOST_ADDR4}/24"), format!("{HOST_ADDR6}/64")],
        "{out}"
    );
}

#[test]
fn attach_by_pid_unprivileged() {
    let host = Host::new();
    let mut holder = host
        .ns
        .cmd("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--",
            "unshare",
            "-r",
            "-n",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    let setpriv_pid = holder.id();
    // setpriv execs unshare, which execs sleep: same PID throughout.
    assert!(wait_for(Duration::from_secs(2), || {
        std::fs::read_to_string(format!("/proc/{setpriv_pid}/comm"))
            .is_ok_and(|c| c.trim() == "sleep")
    }));
    let mut c = host.pasta(true);
    c.args(["--config-net", &setpriv_pid.to_string()]);
    run_ok(c);
    let addrs = sh(&format!(
        "nsenter -t {setpriv_pid} -n ip -j addr show dev eth0"
    ));
    assert_eq!(
        global_addrs(&addrs),
        vec![format!("{HOST_ADDR4}/24"), format!("{HOST_ADDR6}/64")]
    );
    let _ = holder.kill();
    let _ = holder.wait();
}

#[test]
fn namespace_interface_name_and_mac() {
    let host = Host::new();
    let mut c = host.pasta(true);
    c.args([
        "--config-net",
        "-I",
        "tap7",
        "--ns-mac-addr",
        "02:aa:bb:cc:dd:ee",
        "--",
        "ip",
        "-o",
        "link",
        "show",
        "tap7",
    ]);
    let out = run_ok(c);
    assert!(out.contains("link/ether 02:aa:bb:cc:dd:ee"), "{out}");
    assert!(out.contains("mtu 65520"), "{out}");
}

#[test]
fn no_copy_routes_and_addrs() {
    let host = Host::new();
    host.ns
        .sh("ip addr add 198.51.100.9/25 dev eth0 && ip route add 203.0.113.0/24 via 192.0.2.254");
    let mut c = host.pasta(false);
    c.args([
        "--config-net",
        "--",
        "sh",
        "-c",
        "ip -4 -o addr show dev eth0; ip -4 route",
    ]);
    let out = run_ok(c);
    assert!(
        out.contains("198.51.100.9/25") && out.contains("203.0.113.0/24 via 192.0.2.254"),
        "copied: {out}"
    );
    let mut c = host.pasta(false);
    c.args([
        "--config-net",
        "--no-copy-routes",
        "--no-copy-addrs",
        "--",
        "sh",
        "-c",
        "ip -4 -o addr show dev eth0; ip -4 route",
    ]);
    let out = run_ok(c);
    assert!(
        !out.contains("198.51.100.9") && !out.contains("203.0.113.0"),
        "not copied: {out}"
    );
    assert!(
        out.contains("192.0.2.2/24") && out.contains("default via 192.0.2.1"),
        "{out}"
    );
}

#[test]
fn tun_permission_denied_is_one_line() {
    // A private mount namespace where /dev/net/tun is root-only, as on
    // systems that restrict it.
    let host = Host::new();
    let dir = TempDir::new();
    let script = format!(
        "set -e; mknod {d}/tun c 10 200; chmod 0600 {d}/tun; mount --bind {d}/tun /dev/net/tun; \
         exec setpriv --reuid 65534 --regid 65534 --clear-groups -- {PASTA} --config-net -- true",
        d = dir.0.display()
    );
    let out = host
        .ns
        .cmd("unshare")
        .args(["-m", "sh", "-c"])
        .arg(script)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().last(),
        Some("pasta: /dev/net/tun: Permission denied"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn one_family_only_with_4_and_6() {
    let host = Host::new();
    for (flag, want, absent) in [
        ("-4", format!("{HOST_ADDR4}/24"), HOST_ADDR6),
        ("-6", format!("{HOST_ADDR6}/64"), HOST_ADDR4),
    ] {
        let mut c = host.pasta(true);
        c.args([
            flag,
            "--config-net",
            "--",
            "ip",
            "-j",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        let out = run_ok(c);
        assert_eq!(global_addrs(&out), vec![want], "{flag}: {out}");
        assert!(!out.contains(absent), "{flag}: {out}");
    }
}
