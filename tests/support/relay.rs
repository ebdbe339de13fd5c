//! A guest for passt: a network namespace whose tap device `eth0` is
//! copied to and from passt's UNIX socket with qemu's framing, so the
//! namespace's own Linux stack acts as the VM.

use super::Netns;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// MAC of the guest's tap device.
pub const GUEST_MAC: &str = "02:00:00:00:00:01";

/// A guest namespace connected to passt; the relay stops on drop.
pub struct Guest {
    /// The guest's namespace.
    pub ns: Netns,
    stop: Arc<AtomicBool>,
    relay: Option<JoinHandle<()>>,
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
        let s2 = stop.clone();
        let relay = std::thread::spawn(move || relay(tap, stream, &s2));
        Guest {
            ns,
            stop,
            relay: Some(relay),
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
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.relay.take() {
            let _ = h.join();
        }
    }
}

/// Copy frames both ways until `stop` or until passt closes the stream.
fn relay(tap: OwnedFd, stream: UnixStream, stop: &AtomicBool) {
    let mut tap = std::fs::File::from(tap);
    let mut stream_w = stream.try_clone().expect("clone stream");
    // Blocking stream: poll tells us when one read won't block.
    let mut stream_r = stream;
    let mut frame = vec![0u8; 70000];
    let mut inbuf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let (tap_ready, sock_ready) = {
            let mut fds = [
                PollFd::new(tap.as_fd(), PollFlags::POLLIN),
                PollFd::new(stream_r.as_fd(), PollFlags::POLLIN),
            ];
            if poll(&mut fds, PollTimeout::from(50u16)).is_err() {
                continue;
            }
            let r = |i: usize| fds[i].revents().is_some_and(|e| !e.is_empty());
            (r(0), r(1))
        };
        if tap_ready {
            while let Ok(n) = tap.read(&mut frame) {
                let mut out = (n as u32).to_be_bytes().to_vec();
                out.extend_from_slice(&frame[..n]);
                if stream_w.write_all(&out).is_err() {
                    return;
                }
            }
        }
        if sock_ready {
            match stream_r.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
                Err(_) => return,
            }
            while inbuf.len() >= 4 {
                let len = u32::from_be_bytes([inbuf[0], inbuf[1], inbuf[2], inbuf[3]]) as usize;
                if inbuf.len() < 4 + len {
                    break;
                }
                let _ = tap.write(&inbuf[4..4 + len]);
                inbuf.drain(..4 + len);
            }
        }
    }
}
