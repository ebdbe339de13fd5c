//! Opening a tap device on `/dev/net/tun` (the `TUNSETIFF` ioctl), with
//! virtio-net headers and offloads when the kernel grants them.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUNSETVNETLE: libc::c_ulong = 0x4004_54dc;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// What a tap opened by `open_tap_offload` takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Frames go behind virtio-net headers, with checksum and TCP
    /// segmentation offloads.
    pub vnet: bool,
    /// UDP super-datagrams both ways (`VIRTIO_NET_HDR_GSO_UDP_L4`,
    /// Linux 6.2): the kernel splits those we write, and hands us a
    /// sender's `UDP_SEGMENT` runs whole.
    pub uso: bool,
}

/// Size of `struct virtio_net_hdr` (no `num_buffers`): what we tell the
/// kernel with `TUNSETVNETHDRSZ` rather than rely on its default.
pub const VNET_HDR_LEN: usize = 10;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags, padded to
/// the kernel's 40-byte union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Open (creating it if needed) the tap device `name` in the calling
/// thread's network namespace, non-blocking, without packet information
/// headers, so each read or write is exactly one Ethernet frame.
///
/// # Errors
/// Opening `/dev/net/tun` (`EACCES`, `ENOENT`), or the ioctl (`EPERM`
/// without CAP_NET_ADMIN in the namespace's owning user namespace,
/// `EINVAL` for a bad name).
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    open(name, false).map(OwnedFd::from)
}

/// `open_tap`, but with each frame preceded by a little-endian
/// `virtio_net_hdr` and the device taking checksum and TCP segmentation
/// offloads (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`), and UDP
/// segmentation (`TUN_F_USO4 | TUN_F_USO6`) if `uso` and the kernel has
/// it: the second value says what worked. A kernel that refuses any step gets the device
/// opened again without them, as `open_tap` does (the device, not
/// persistent, went away with the first fd).
///
/// # Errors
/// As `open_tap`.
pub fn open_tap_offload(name: &str, uso: bool) -> io::Result<(OwnedFd, Offloads)> {
    match open(name, true).and_then(|f| enable_offloads(&f, uso).map(|uso| (f, uso))) {
        Ok((f, uso)) => Ok((OwnedFd::from(f), Offloads { vnet: true, uso })),
        Err(e) => {
            log::debug!("tap: no virtio-net offloads ({e})");
            open_tap(name).map(|f| (f, Offloads::default()))
        }
    }
}

fn open(name: &str, vnet: bool) -> io::Result<File> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let file: File = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | if vnet { IFF_VNET_HDR } else { 0 },
        _pad: [0; 22],
    };
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is a
    // properly sized, initialised repr(C) value living across the call,
    // and `file` is an open tun fd.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Header size, byte order and offloads of a tap opened with
/// `IFF_VNET_HDR`, UDP super-datagrams too if `uso` and the kernel knows
/// them; whether it does.
fn enable_offloads(file: &File, uso: bool) -> io::Result<bool> {
    let fd = file.as_raw_fd();
    let size = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which
    // points at `size`, alive across the call.
    if unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ as _, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // virtio 1.0 headers are little-endian; tun's default is the host's
    // order, the same on little-endian machines, but say it anyway.
    let le: libc::c_int = 1;
    // SAFETY: TUNSETVNETLE reads one int through the pointer, which points
    // at `le`, alive across the call.
    if unsafe { libc::ioctl(fd, TUNSETVNETLE as _, &le) } < 0 {
        let e = io::Error::last_os_error();
        if cfg!(target_endian = "big") {
            return Err(e);
        }
    }
    // What we can take from the kernel: partial checksums and TCP
    // super-segments, and where the kernel knows them (Linux 6.2, USO),
    // runs of UDP datagrams of one size, which a sender's `UDP_SEGMENT`
    // makes: the same release splits the ones we write, so whether the
    // flags are taken tells both.
    let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    if uso && set_offload(fd, offloads | TUN_F_USO4 | TUN_F_USO6).is_ok() {
        return Ok(true);
    }
    set_offload(fd, offloads)?;
    Ok(false)
}

/// `TUNSETOFFLOAD`: what the device takes from the namespace's stack.
fn set_offload(fd: libc::c_int, offloads: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value, no memory is
    // touched; `fd` is an open tun fd.
    if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, offloads as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
