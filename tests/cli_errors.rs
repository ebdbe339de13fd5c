//! Start-up errors as a user meets them: one line naming the option and
//! the reason, exit 1, and no socket or pidfile left behind.

mod support;

use std::process::Stdio;
use support::*;

fn assert_fails_clean(host: &Host, dir: &TempDir, args: &[&str], expect: &str) {
    let socket = dir.join("s");
    let pidfile = dir.join("p");
    let out = host
        .passt()
        .arg("-s")
        .arg(&socket)
        .arg("-P")
        .arg(&pidfile)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got: {err}");
    assert!(err.starts_with("passt: "), "{args:?}: {err}");
    assert!(
        err.contains(expect),
        "{args:?}: expected '{expect}' in: {err}"
    );
    assert!(!socket.exists(), "{args:?}: socket left behind");
    assert!(!pidfile.exists(), "{args:?}: pidfile left behind");
}

#[test]
fn bad_options_leave_nothing_behind() {
    let host = Host::new();
    let dir = TempDir::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--mtu", "70000"], "--mtu"),
        (&["-a", "300.1.1.1"], "300.1.1.1"),
        (&["-M", "zz:zz"], "zz:zz"),
        (&["--bogus"], "--bogus"),
        (&["--vhost-user"], "--vhost-user: not supported yet"),
        (&["--netns", "/x"], "--netns"),
        (&["--runas", "no-such-user-here"], "no-such-user-here"),
        (&["-i", "nosuchif0"], "nosuchif0"),
    ];
    for (args, expect) in cases {
        assert_fails_clean(&host, &dir, args, expect);
    }
}

#[test]
fn unwritable_pidfile_is_reported_and_socket_not_created() {
    let host = Host::new();
    let dir = TempDir::new();
    let socket = dir.join("s");
    let out = host
        .passt()
        .arg("-s")
        .arg(&socket)
        .args(["-P", "/nonexistent/dir/pid"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("/nonexistent/dir/pid: No such file or directory"),
        "{err}"
    );
    assert!(!socket.exists());
}

#[test]
fn help_and_version_go_to_stdout() {
    for (arg, expect) in [("--help", "Usage"), ("--version", "passt")] {
        let out = std::process::Command::new(PASST).arg(arg).output().unwrap();
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(expect),
            "{arg}"
        );
    }
}
