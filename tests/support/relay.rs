//! A guest for passt: a network namespace whose tap device `eth0` is
//! copied to and from passt's UNIX socket with qemu's framing, so the
//! namespace's own Linux stack acts as the VM.
//!
//! The relay can also reorder frames, each direction on its own: every
//! Nth frame is held back and sent right after the frame that follows it
//! (a swap). A held frame is released as soon as its direction has
//! nothing to read in a poll round (the other direction woke us, or the
//! poll, shortened to 1 ms while a frame is held, timed out), so no frame
//! waits for traffic that may never come, and none is dropped.

use super::Netns;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

/// MAC of the guest's tap device.
pub const GUEST_MAC: &str = "02:00:00:00:00:01";

/// Which frames the relay swaps: every Nth frame of a direction, 0 for
/// none. The default swaps nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reordering {
    /// Guest (tap) to passt (socket).
    pub to_passt: u64,
    /// Passt (socket) to guest (tap).
    pub to_guest: u64,
}

impl Reordering {
    /// Every `every`th frame in both directions.
    pub fn both(every: u64) -> Self {
        Reordering {
            to_passt: every,
            to_guest: every,
        }
    }
}

/// How many swaps the relay made so far, per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swaps {
    /// Guest to passt.
    pub to_passt: u64,
    /// Passt to guest.
    pub to_guest: u64,
}

/// One direction's reordering: holds every `every`th frame back until the
/// next one has gone out.
pub struct Reorder {
    every: u64,
    seen: u64,
    held: Option<Vec<u8>>,
    swaps: Arc<AtomicU64>,
}

impl Reorder {
    /// Swap every `every`th frame with the next (0: pass everything as
    /// it comes), counting swaps in `swaps`.
    ///
    /// # Panics
    ///
    /// If `every` is 1: a frame can't be both the held one and the one
    /// that releases it.
    pub fn new(every: u64, swaps: Arc<AtomicU64>) -> Self {
        assert_ne!(every, 1, "reordering every frame swaps nothing");
        Reorder {
            every,
            seen: 0,
            held: None,
            swaps,
        }
    }

    /// Pass `frame` on through `out`, or hold it, or pass it and then the
    /// held one. Stops at the first `out` that fails and returns false.
    pub fn pass(&mut self, frame: &[u8], mut out: impl FnMut(&[u8]) -> bool) -> bool {
        if self.every == 0 {
            return out(frame);
        }
        self.seen += 1;
        if let Some(held) = self.held.take() {
            self.swaps.fetch_add(1, Ordering::Relaxed);
            return out(frame) && out(&held);
        }
        if self.seen.is_multiple_of(self.every) {
            self.held = Some(frame.to_vec());
            return true;
        }
        out(frame)
    }

    /// Whether a frame is held back.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// The direction is idle: send the held frame, if any, on its own.
    pub fn flush(&mut self, out: impl FnOnce(&[u8]) -> bool) -> bool {
        match self.held.take() {
            Some(held) => out(&held),
            None => true,
        }
    }
}

/// A guest namespace connected to passt; the relay stops on drop.
pub struct Guest {
    /// The guest's namespace.
    pub ns: Netns,
    stop: Arc<AtomicBool>,
    relay: Option<JoinHandle<()>>,
    swaps_to_passt: Arc<AtomicU64>,
    swaps_to_guest: Arc<AtomicU64>,
}

fn open_tap_in(ns: &Netns) -> OwnedFd {
    let path = ns.path();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        passt_rs::sys::tun::open_tap("eth0").expect("open tap in guest namespace")
    })
    .join()
    .expect("tap thread")
}

impl Guest {
    /// Create the guest namespace with `eth0` up (no address yet) and
    /// connect it to the passt socket at `socket`.
    pub fn connect(socket: &Path) -> Self {
        Self::connect_with(socket, Reordering::default())
    }

    /// The same, swapping every `every`th frame with the next one in
    /// both directions.
    pub fn connect_reordering(socket: &Path, every: u64) -> Self {
        Self::connect_with(socket, Reordering::both(every))
    }

    /// The same, reordering frames as `reordering` says.
    pub fn connect_with(socket: &Path, reordering: Reordering) -> Self {
        let ns = Netns::new("prs-g");
        // DHCP clients rewrite /etc/resolv.conf: give the guest its own,
        // which `ip netns exec` mounts over the real one.
        let etc = format!("/etc/netns/{}", ns.name);
        std::fs::create_dir_all(&etc).expect("mkdir /etc/netns/guest");
        std::fs::write(format!("{etc}/resolv.conf"), "").expect("guest resolv.conf");
        // No duplicate address detection: addresses are usable at once.
        ns.sh("sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0");
        let tap = open_tap_in(&ns);
        ns.sh(&format!(
            "ip link set eth0 address {GUEST_MAC} && ip link set eth0 up"
        ));
        let stream = super::connect(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let swaps_to_passt = Arc::new(AtomicU64::new(0));
        let swaps_to_guest = Arc::new(AtomicU64::new(0));
        let to_passt = Reorder::new(reordering.to_passt, swaps_to_passt.clone());
        let to_guest = Reorder::new(reordering.to_guest, swaps_to_guest.clone());
        let s2 = stop.clone();
        let relay = std::thread::spawn(move || relay(tap, stream, &s2, to_passt, to_guest));
        Guest {
            ns,
            stop,
            relay: Some(relay),
            swaps_to_passt,
            swaps_to_guest,
        }
    }

    /// The guest's own resolv.conf, as its DHCP clients wrote it.
    pub fn resolv_conf(&self) -> String {
        std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", self.ns.name))
            .unwrap_or_default()
    }

    /// Whether the relay is still running (passt hasn't hung up).
    pub fn connected(&self) -> bool {
        self.relay.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Swaps the relay made so far.
    pub fn swaps(&self) -> Swaps {
        Swaps {
            to_passt: self.swaps_to_passt.load(Ordering::Relaxed),
            to_guest: self.swaps_to_guest.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.relay.take() {
            let _ = h.join();
        }
    }
}

/// Copy frames both ways until `stop` or until passt closes the stream,
/// reordering them as `to_passt` and `to_guest` say.
fn relay(
    tap: OwnedFd,
    stream: UnixStream,
    stop: &AtomicBool,
    mut to_passt: Reorder,
    mut to_guest: Reorder,
) {
    let mut tap = std::fs::File::from(tap);
    let mut stream_w = stream.try_clone().expect("clone stream");
    // Blocking stream: poll tells us when one read won't block.
    let mut stream_r = stream;
    let mut frame = vec![0u8; 70000];
    let mut inbuf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    let mut out: Vec<u8> = Vec::with_capacity(70004);
    // Frame it with qemu's length and send it to passt.
    let mut send = |f: &[u8]| {
        out.clear();
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
        stream_w.write_all(&out).is_ok()
    };
    while !stop.load(Ordering::Relaxed) {
        let (tap_ready, sock_ready) = {
            let mut fds = [
                PollFd::new(tap.as_fd(), PollFlags::POLLIN),
                PollFd::new(stream_r.as_fd(), PollFlags::POLLIN),
            ];
            // A held frame waits for the next one at most a short poll.
            let wait: u16 = if to_passt.holding() || to_guest.holding() {
                1
            } else {
                50
            };
            if poll(&mut fds, PollTimeout::from(wait)).is_err() {
                continue;
            }
            let r = |i: usize| fds[i].revents().is_some_and(|e| !e.is_empty());
            (r(0), r(1))
        };
        if tap_ready {
            while let Ok(n) = tap.read(&mut frame) {
                if !to_passt.pass(&frame[..n], &mut send) {
                    return;
                }
            }
        } else if !to_passt.flush(&mut send) {
            return;
        }
        // The tap device is non-blocking: a frame the kernel can't take
        // now is lost, as on a wire.
        let mut deliver = |f: &[u8]| {
            let _ = tap.write(f);
            true
        };
        if sock_ready {
            match stream_r.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
                Err(_) => return,
            }
            let mut at = 0;
            while inbuf.len() - at >= 4 {
                let len =
                    u32::from_be_bytes([inbuf[at], inbuf[at + 1], inbuf[at + 2], inbuf[at + 3]])
                        as usize;
                if inbuf.len() - at < 4 + len {
                    break;
                }
                to_guest.pass(&inbuf[at + 4..at + 4 + len], &mut deliver);
                at += 4 + len;
            }
            inbuf.drain(..at);
        } else {
            to_guest.flush(&mut deliver);
        }
    }
}
