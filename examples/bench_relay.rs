//! A guest for passt, for `scripts/bench`: copies the tap device `eth0`
//! of a network namespace to and from passt's UNIX socket with qemu's
//! framing (a 4-byte big-endian length, then the Ethernet frame), so the
//! namespace's own Linux stack acts as the VM.
//!
//!     bench_relay NETNS SOCKET
//!
//! NETNS is a name under /run/netns (`ip netns add`) or a path. The tap
//! device lives as long as the relay; the relay exits when passt closes
//! the stream, or when killed.
//!
//! The same job as the test relay in tests/support/relay.rs, made for
//! throughput: one thread per direction, so neither waits on the other,
//! and frames read from the tap are batched into one write to the socket
//! until the tap has nothing more to give. Every frame is still copied
//! once more than a VM's would be: the benchmark measures passt behind
//! this relay, upstream's and ours alike.

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Largest frame we expect from either side (passt's MTU is at most
/// 65520, plus the Ethernet header).
const FRAME_MAX: usize = 65536 + 14;
/// Bytes gathered from the tap before they go to the socket in one write.
const BATCH: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bench_relay NETNS SOCKET");
        std::process::exit(2);
    }
    if let Err(e) = run(&args[1], &args[2]) {
        eprintln!("bench_relay: {e}");
        std::process::exit(1);
    }
}

fn run(netns: &str, socket: &str) -> std::io::Result<()> {
    let path = if netns.contains('/') {
        netns.to_string()
    } else {
        format!("/run/netns/{netns}")
    };
    // Single-threaded so far: setns moves the whole process, and the tap
    // device is created in the guest's namespace.
    let ns = File::open(&path)?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
    let tap = File::from(passt_rs::sys::tun::open_tap("eth0")?);
    // passt may still be starting: retry for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // The script waits for this line before configuring the interface.
    println!("connected");
    let tap_w = tap.try_clone()?;
    let stream_w = stream.try_clone()?;
    let up = std::thread::spawn(move || to_passt(tap, stream_w));
    to_guest(stream, tap_w);
    // passt hung up: the other direction has nowhere to go either.
    drop(up);
    Ok(())
}

/// Tap to socket: read frames until the tap has none ready (it is
/// non-blocking), then send them all in one write; wait in poll.
fn to_passt(mut tap: File, mut stream: UnixStream) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH + FRAME_MAX + 4);
    let mut frame = vec![0u8; FRAME_MAX];
    loop {
        match tap.read(&mut frame) {
            Ok(n) => {
                batch.extend_from_slice(&(n as u32).to_be_bytes());
                batch.extend_from_slice(&frame[..n]);
                if batch.len() < BATCH {
                    continue;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => std::process::exit(0),
        }
        if !batch.is_empty() {
            if stream.write_all(&batch).is_err() {
                std::process::exit(0);
            }
            batch.clear();
            // Sending took time: more frames may be waiting already.
            continue;
        }
        let mut fds = [PollFd::new(tap.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::NONE);
    }
}

/// Socket to tap: read as much as the socket has, write every whole
/// frame to the tap, keep the rest for the next read.
fn to_guest(mut stream: UnixStream, mut tap: File) {
    let mut buf = vec![0u8; 4 * BATCH];
    let mut have = 0;
    loop {
        let n = match stream.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let mut at = 0;
        while have - at >= 4 {
            let len = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            if len > FRAME_MAX {
                eprintln!("bench_relay: frame of {len} bytes from passt");
                return;
            }
            if have - at < 4 + len {
                break;
            }
            write_frame(&mut tap, &buf[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        buf.copy_within(at..have, 0);
        have -= at;
    }
}

/// One frame to the tap. The descriptor is non-blocking (shared with the
/// reading thread, which needs that): should the tap push back, wait
/// rather than drop, as the relay isn't the wire being measured. A frame
/// the guest's stack refuses otherwise is lost, as on a wire.
fn write_frame(tap: &mut File, frame: &[u8]) {
    loop {
        match tap.write(frame) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(tap.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(10u16));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => return,
        }
    }
}
