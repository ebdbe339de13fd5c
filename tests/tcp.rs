//! TCP from a guest and from a pasta namespace to host services: bulk
//! transfers both ways compared byte for byte, refused connections,
//! half-closes, IPv6, and `--no-tcp`.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn guest_bulk_transfer_both_ways() {
    let (h, dir, _d, g) = routed_guest(&[]);
    let src = random_file(&dir, "src", 20);
    // Guest to host: the server writes what it receives.
    let up = dir.join("up");
    let _s = socat_server(
        &h.ns,
        &[
            "-u",
            &format!("TCP4-LISTEN:7001,bind={HOST_REMOTE4},reuseaddr"),
            &format!("CREATE:{}", up.display()),
        ],
    );
    let t = Instant::now();
    g.ns.sh(&format!(
        "timeout 10 socat -u OPEN:{} TCP4:{HOST_REMOTE4}:7001",
        src.display()
    ));
    assert!(wait_for(Duration::from_secs(5), || {
        std::fs::metadata(&up).is_ok_and(|m| m.len() == 20 << 20)
    }));
    assert!(same(&src, &up), "guest to host: content differs");
    eprintln!("20 MiB guest -> host in {:?}", t.elapsed());

    // Host to guest: the server sends the file.
    let down = dir.join("down");
    let _s2 = socat_server(
        &h.ns,
        &[
            "-u",
            &format!("OPEN:{}", src.display()),
            &format!("TCP4-LISTEN:7002,bind={HOST_REMOTE4},reuseaddr"),
        ],
    );
    let t = Instant::now();
    g.ns.sh(&format!(
        "timeout 10 socat -u TCP4:{HOST_REMOTE4}:7002 CREATE:{}",
        down.display()
    ));
    eprintln!("20 MiB host -> guest in {:?}", t.elapsed());
    assert!(same(&src, &down), "host to guest: content differs");
}

#[test]
fn pasta_curl_fetches_a_file_as_nobody() {
    let host = Host::new();
    let dir = TempDir::new();
    let src = random_file(&dir, "file", 4);
    // A minimal HTTP server: read the request up to its blank line, answer
    // with the file. (python3 -m http.server looks up its own name first,
    // which waits for the host namespace's unreachable resolver.)
    let script = dir.join("serve.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsed -n '/^\\r$/q' >/dev/null\nprintf 'HTTP/1.0 200 OK\\r\\n\\r\\n'\nexec cat {}\n",
            src.display()
        ),
    )
    .unwrap();
    sh(&format!("chmod 0755 {}", script.display()));
    let _srv = socat_server(
        &host.ns,
        &[
            &format!("TCP4-LISTEN:8080,bind={HOST_REMOTE4},reuseaddr,fork"),
            &format!("EXEC:{}", script.display()),
        ],
    );
    assert!(
        host.ns
            .run(&format!(
                "curl -s -o /dev/null --max-time 2 http://{HOST_REMOTE4}:8080/file"
            ))
            .status
            .success(),
        "the server answers locally"
    );
    let out = host
        .pasta(true)
        .args(["-q", "--config-net", "--", "curl", "-s", "--max-time", "8"])
        .arg(format!("http://{HOST_REMOTE4}:8080/file"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 4 << 20);
    assert!(
        out.stdout == std::fs::read(&src).unwrap(),
        "content differs"
    );
}

#[test]
fn refused_connection_fails_fast() {
    let (_h, _dir, _d, g) = routed_guest(&[]);
    let t = Instant::now();
    let out =
        g.ns.run(&format!("curl -s --max-time 5 http://{HOST_REMOTE4}:7009/"));
    assert_eq!(out.status.code(), Some(7), "curl: couldn't connect");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn half_close_both_directions_complete() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    // The server answers only after the client's EOF.
    let _s = socat_server(
        &h.ns,
        &[
            &format!("TCP4-LISTEN:7003,bind={HOST_REMOTE4},reuseaddr"),
            "SYSTEM:'cat >/dev/null; echo reply-after-eof'",
        ],
    );
    let out = g.ns.sh(&format!(
        "echo request | timeout 5 socat -t 5 - TCP4:{HOST_REMOTE4}:7003"
    ));
    assert_eq!(out.trim(), "reply-after-eof");
}

#[test]
fn guest_ipv6_and_gateway_as_loopback() {
    let (h, _dir, _d, g) = routed_guest(&[]);
    let _s6 = socat_server(
        &h.ns,
        &[
            &format!("TCP6-LISTEN:7004,bind=[{HOST_REMOTE6}],reuseaddr"),
            "SYSTEM:'echo hello6'",
        ],
    );
    let _lo = socat_server(
        &h.ns,
        &[
            "TCP4-LISTEN:7005,bind=127.0.0.1,reuseaddr",
            "SYSTEM:'echo via-gw'",
        ],
    );
    let out =
        g.ns.sh(&format!("timeout 5 socat -u TCP4:{HOST_GW4}:7005 -"));
    assert_eq!(out.trim(), "via-gw");
    assert!(wait_for(Duration::from_secs(5), || {
        g.ns.run("ip -6 route show default")
            .stdout
            .starts_with(b"default")
    }));
    let out =
        g.ns.sh(&format!("timeout 5 socat -u TCP6:[{HOST_REMOTE6}]:7004 -"));
    assert_eq!(out.trim(), "hello6");
}

#[test]
fn no_tcp_connection_fails() {
    let (h, _dir, _d, g) = routed_guest(&["--no-tcp"]);
    let _s = socat_server(
        &h.ns,
        &[
            &format!("TCP4-LISTEN:7006,bind={HOST_REMOTE4},reuseaddr"),
            "SYSTEM:'echo nope'",
        ],
    );
    let out = g.ns.run(&format!(
        "timeout 3 socat -u TCP4:{HOST_REMOTE4}:7006,connect-timeout=2 -"
    ));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}
