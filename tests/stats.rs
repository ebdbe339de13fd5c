//! `--stats` and SIGUSR1: the counters printed where log messages go.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use passt_rs::wire::{Mac, compose};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use support::*;

/// One UDP datagram from the guest to `HOST_REMOTE4:port`, framed for the socket.
fn udp_frame(port: u16) -> Vec<u8> {
    let mut frame = vec![0u8; 100];
    let n = compose::udp4(
        &mut frame,
        compose::Link {
            src: Mac([2, 0, 0, 0, 0, 1]),
            dst: Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]),
        },
        SocketAddrV4::new(HOST_ADDR4.parse::<Ipv4Addr>().unwrap(), 40000),
        SocketAddrV4::new(HOST_REMOTE4.parse::<Ipv4Addr>().unwrap(), port),
        |p| {
            p[..2].copy_from_slice(b"hi");
            Some(2)
        },
    );
    framed(&frame[..n])
}

/// The stats lines in the log file so far.
fn stats_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("stats: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn stats_show_a_new_flow_and_stay_quiet_when_nothing_changes() {
    let host = Host::new();
    let dir = TempDir::new();
    let log = dir.join("passt.log");
    let log_arg = log.to_str().unwrap();
    let d = Daemon::start(&host, &dir, &["-q", "-l", log_arg, "--stats", "1"]);
    let mut c = connect(&d.socket);
    // Nothing happened yet: nothing printed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(stats_lines(&log), Vec::<String>::new());
    c.write_all(&udp_frame(6200)).unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || {
            stats_lines(&log)
                .iter()
                .any(|l| l.contains("stats: flows: TCP 0/") && l.contains(", UDP 1/"))
        }),
        "no stats with the UDP flow in:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let printed = stats_lines(&log);
    assert_eq!(printed.len(), 3, "one block of three lines: {printed:?}");
    assert!(printed[0].contains("; table 1/"), "{printed:?}");
    assert!(printed[1].ends_with("stats: guest frames dropped: none"));
    assert!(printed[2].contains("stats: to guest: frames dropped 0"));
    // A second flow within the second is printed, but not before the
    // delay is over; then nothing changes and nothing more is printed.
    c.write_all(&udp_frame(6201)).unwrap();
    assert!(wait_for(Duration::from_secs(3), || {
        stats_lines(&log).iter().any(|l| l.contains(", UDP 2/"))
    }));
    let printed = stats_lines(&log);
    assert_eq!(printed.len(), 6, "{printed:?}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(stats_lines(&log), printed);
    assert!(d.stop(Signal::SIGTERM));
}

#[test]
fn sigusr1_prints_once_and_passt_goes_on() {
    let host = Host::new();
    let dir = TempDir::new();
    let socket = dir.join("passt.socket");
    // Foreground, warnings only, no --stats: the stats go to stderr anyway.
    let child = host
        .passt()
        .args(["-f", "-q", "-s"])
        .arg(&socket)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn passt");
    let mut child = Reaped(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    assert!(wait_for(Duration::from_secs(3), || socket.exists()));
    let pid = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    kill(pid, Signal::SIGUSR1).unwrap();
    let mut lines = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(3)) {
        lines.push(l);
        if lines.len() == 3 {
            break;
        }
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("passt: stats: flows: TCP 0/"),
        "{lines:?}"
    );
    assert!(lines[0].contains(", UDP 0/") && lines[0].contains("; table 0/"));
    assert_eq!(lines[1], "passt: stats: guest frames dropped: none");
    // Printed once, and still serving.
    assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err());
    assert!(child.0.try_wait().unwrap().is_none(), "passt exited");
    let mut c = connect(&socket);
    c.write_all(&udp_frame(6202)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    kill(pid, Signal::SIGUSR1).unwrap();
    let l = rx
        .recv_timeout(Duration::from_secs(3))
        .expect("second print");
    assert!(l.contains(", UDP 1/"), "{l}");
    kill(pid, Signal::SIGTERM).unwrap();
    let status = wait_timeout(&mut child.0, Duration::from_secs(3)).expect("passt exits");
    assert!(status.success(), "{status}");
}
