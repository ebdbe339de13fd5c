//! TCP through passt when frames arrive out of order: the relay swaps
//! every 16th frame with the one after it, guest to passt and passt to
//! guest, and 32 MiB still arrive byte for byte, host to guest over IPv4
//! and IPv6, guest to host over IPv4 and IPv6. The guest's stack puts
//! passt's segments back in order itself; passt drops guest segments that
//! come out of order and relies on the guest's retransmission.
//! Run it on both peek paths: with and without `PASST_RS_NO_PEEK_OFF`.

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::relay::{Guest, Reorder, Reordering, Swaps};
use support::*;

/// The relay holds back every `EVERY`th frame of each direction.
const EVERY: u64 = 16;

/// Size of each transfer.
const MIB: u64 = 32;

/// Generous: every swap of guest segments costs a retransmission.
const LIMIT: Duration = Duration::from_secs(180);

/// Swaps made since `before`.
fn since(g: &Guest, before: Swaps) -> Swaps {
    let now = g.swaps();
    Swaps {
        to_passt: now.to_passt - before.to_passt,
        to_guest: now.to_guest - before.to_guest,
    }
}

/// A guest behind a reordering relay, with an IPv6 default route (from
/// passt's router advertisements) when `v6`.
fn reordering_guest(v6: bool) -> (Host, TempDir, Daemon, Guest) {
    let (h, dir, d, g) = routed_guest_with(&[], Reordering::both(EVERY));
    if v6 {
        assert!(wait_for(Duration::from_secs(10), || {
            g.ns.run("ip -6 route show default")
                .stdout
                .starts_with(b"default")
        }));
    }
    (h, dir, d, g)
}

/// Send a fresh file from the guest to a host server, socat's `listen`
/// address there and `connect` address in the guest, and compare.
fn upload(v6: bool, listen: &str, connect: &str) {
    let (h, dir, _d, g) = reordering_guest(v6);
    let src = random_file(&dir, "src", MIB as usize);
    let up = dir.join("up");
    let _s = socat_server(
        &h.ns,
        &[
            "-u",
            &format!("{listen},reuseaddr"),
            &format!("CREATE:{}", up.display()),
        ],
    );
    let before = g.swaps();
    let t = Instant::now();
    let _client = Reaped(
        g.ns.cmd("socat")
            .args(["-u", &format!("OPEN:{}", src.display()), connect])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let len = || std::fs::metadata(&up).map(|m| m.len()).unwrap_or(0);
    let whole = wait_for(LIMIT, || len() == MIB << 20);
    let took = t.elapsed();
    let swaps = since(&g, before);
    eprintln!("{MIB} MiB guest -> host ({connect}) in {took:?}, swaps {swaps:?}");
    // The guest's view of the connection tells why it is stuck.
    assert!(
        whole,
        "guest to host: {} of {} bytes after {took:?}; guest: {}",
        len(),
        MIB << 20,
        String::from_utf8_lossy(&g.ns.run("ss -tni state established").stdout)
    );
    assert!(same(&src, &up), "guest to host: content differs");
    assert!(swaps.to_passt >= 100, "guest to passt: {swaps:?}");
    assert!(swaps.to_guest > 0, "passt to guest: {swaps:?}");
}

/// Send a fresh file from a host server to the guest, socat's `listen`
/// address there and `connect` address in the guest, and compare.
fn download(v6: bool, listen: &str, connect: &str) {
    let (h, dir, _d, g) = reordering_guest(v6);
    let src = random_file(&dir, "src", MIB as usize);
    let down = dir.join("down");
    let _s = socat_server(
        &h.ns,
        &[
            "-u",
            &format!("OPEN:{}", src.display()),
            &format!("{listen},reuseaddr"),
        ],
    );
    let before = g.swaps();
    let t = Instant::now();
    g.ns.sh(&format!(
        "timeout {} socat -u {connect} CREATE:{}",
        LIMIT.as_secs(),
        down.display()
    ));
    let took = t.elapsed();
    let swaps = since(&g, before);
    eprintln!("{MIB} MiB host -> guest ({connect}) in {took:?}, swaps {swaps:?}");
    assert!(same(&src, &down), "host to guest: content differs");
    assert!(swaps.to_guest >= 100, "passt to guest: {swaps:?}");
    assert!(swaps.to_passt > 0, "guest to passt: {swaps:?}");
}

#[test]
fn reorder_swaps_every_nth_frame_and_loses_none() {
    let swaps = Arc::new(AtomicU64::new(0));
    let mut r = Reorder::new(4, swaps.clone());
    let mut out = Vec::new();
    for f in 1..=12u8 {
        assert!(r.pass(&[f], |b| {
            out.push(b[0]);
            true
        }));
    }
    // Frame 12 is held until the direction goes idle.
    assert_eq!(out, [1, 2, 3, 5, 4, 6, 7, 9, 8, 10, 11]);
    assert!(r.holding());
    assert!(r.flush(|b| {
        out.push(b[0]);
        true
    }));
    assert_eq!(out[11..], [12]);
    assert!(!r.holding());
    assert_eq!(swaps.load(Ordering::Relaxed), 2);
}

#[test]
fn reordered_ipv4_host_to_guest() {
    download(
        false,
        &format!("TCP4-LISTEN:7101,bind={HOST_REMOTE4}"),
        &format!("TCP4:{HOST_REMOTE4}:7101"),
    );
}

#[test]
fn reordered_ipv6_host_to_guest() {
    download(
        true,
        &format!("TCP6-LISTEN:7102,bind=[{HOST_REMOTE6}]"),
        &format!("TCP6:[{HOST_REMOTE6}]:7102"),
    );
}

// Uploads: the guest's swapped segments usually reach passt in one batch,
// where dispatch holds a segment past a gap until the one before it went.
#[test]
fn reordered_ipv4_guest_to_host() {
    upload(
        false,
        &format!("TCP4-LISTEN:7103,bind={HOST_REMOTE4}"),
        &format!("TCP4:{HOST_REMOTE4}:7103"),
    );
}

#[test]
fn reordered_ipv6_guest_to_host() {
    upload(
        true,
        &format!("TCP6-LISTEN:7104,bind=[{HOST_REMOTE6}]"),
        &format!("TCP6:[{HOST_REMOTE6}]:7104"),
    );
}
