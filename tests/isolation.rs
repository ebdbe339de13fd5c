//! What a guest may reach on the host: the host's loopback only through
//! the `--map-host-loopback` address, never with `--no-map-gw`, and never
//! through loopback, unspecified or IPv4-mapped destinations, whatever
//! the guest puts in its frames. passt and pasta, TCP and UDP, IPv4 and
//! IPv6.

mod support;

use passt_rs::wire::tcp::{Flags, TcpRepr};
use passt_rs::wire::{Mac, compose};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use support::*;

const TCP_PORT: u16 = 7100;
const UDP_PORT: u16 = 7101;

fn link() -> compose::Link {
    compose::Link {
        src: Mac([2, 0, 0, 0, 0, 1]),
        dst: Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]),
    }
}

/// A SYN and a UDP datagram from the guest's address to `dst`.
fn probes(dst: IpAddr, sport: u16) -> Vec<Vec<u8>> {
    let syn = TcpRepr {
        src_port: sport,
        dst_port: TCP_PORT,
        seq: 1000,
        flags: Flags::SYN,
        window: 65535,
        mss: Some(1460),
        ..Default::default()
    };
    let mut a = vec![0u8; 200];
    let mut b = vec![0u8; 200];
    let (n, m) = match dst {
        IpAddr::V4(d) => {
            let s: Ipv4Addr = HOST_ADDR4.parse().unwrap();
            (
                compose::tcp4(&mut a, link(), s, d, &syn, compose::Csum::Full, |_| 0),
                compose::udp4(
                    &mut b,
                    link(),
                    std::net::SocketAddrV4::new(s, sport),
                    std::net::SocketAddrV4::new(d, UDP_PORT),
                    |p| {
                        p[..5].copy_from_slice(b"probe");
                        Some(5)
                    },
                ),
            )
        }
        IpAddr::V6(d) => {
            let s: Ipv6Addr = HOST_ADDR6.parse().unwrap();
            (
                compose::tcp6(&mut a, link(), s, d, &syn, compose::Csum::Full, |_| 0),
                compose::udp6(
                    &mut b,
                    link(),
                    std::net::SocketAddrV6::new(s, sport, 0, 0),
                    std::net::SocketAddrV6::new(d, UDP_PORT, 0, 0),
                    |p| {
                        p[..5].copy_from_slice(b"probe");
                        Some(5)
                    },
                ),
            )
        }
    };
    a.truncate(n);
    b.truncate(m);
    vec![a, b]
}

/// Services on the host's loopback only (TCP and UDP, IPv4 and IPv6),
/// each leaving a file behind when something reaches it.
struct LoopbackServices {
    dir: TempDir,
    _procs: Vec<Reaped>,
}

impl LoopbackServices {
    fn start(host: &Host) -> Self {
        let dir = TempDir::new();
        let mut procs = Vec::new();
        for (name, listen) in [
            (
                "tcp4",
                format!("TCP4-LISTEN:{TCP_PORT},bind=127.0.0.1,reuseaddr,fork"),
            ),
            (
                "tcp6",
                format!("TCP6-LISTEN:{TCP_PORT},bind=[::1],ipv6only,reuseaddr,fork"),
            ),
            ("udp4", format!("UDP4-RECV:{UDP_PORT},bind=127.0.0.1")),
            ("udp6", format!("UDP6-RECV:{UDP_PORT},bind=[::1],ipv6only")),
        ] {
            let file = dir.join(name);
            let c = host
                .ns
                .cmd("socat")
                .args(["-u", &listen])
                // A TCP child opens the file only once it has accepted.
                .arg(format!("OPEN:{},creat,append", file.display()))
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            procs.push(Reaped(c));
        }
        // Both families bound on each port.
        let count = |proto: &str, port: u16| {
            let o = host.ns.run(&format!("ss -Hl{proto}n sport = :{port}"));
            String::from_utf8_lossy(&o.stdout).lines().count()
        };
        assert!(
            wait_for(Duration::from_secs(10), || count("t", TCP_PORT) == 2
                && count("u", UDP_PORT) == 2),
            "the loopback services did not start"
        );
        LoopbackServices { dir, _procs: procs }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Which services something reached.
    fn reached(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for name in ["tcp4", "tcp6"] {
            if self.file(name).exists() {
                v.push(name);
            }
        }
        for name in ["udp4", "udp6"] {
            if std::fs::metadata(self.file(name)).is_ok_and(|m| m.len() > 0) {
                v.push(name);
            }
        }
        v
    }
}

fn forbidden(no_map_gw: bool) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = [
        "127.0.0.1",
        "127.0.0.53",
        "0.0.0.0",
        "0.0.0.1",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:0.0.0.0",
        "::127.0.0.1",
        // The mapped gateway, but through IPv6: still not the loopback.
        "::ffff:192.0.2.1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    if no_map_gw {
        v.push(HOST_GW4.parse().unwrap());
        v.push(HOST_GW6.parse().unwrap());
    }
    v
}

/// Every forbidden destination, then (mapping on) the mapped gateway,
/// which must reach the services.
fn check(no_map_gw: bool, send: impl Fn(&[Vec<u8>]), svc: &LoopbackServices) {
    let mut frames = Vec::new();
    for (i, d) in forbidden(no_map_gw).into_iter().enumerate() {
        frames.extend(probes(d, 40000 + i as u16));
    }
    send(&frames);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        svc.reached(),
        Vec::<&str>::new(),
        "a forbidden destination reached the host's loopback (no_map_gw: {no_map_gw})"
    );
    if !no_map_gw {
        let mut ok = probes(HOST_GW4.parse().unwrap(), 41000);
        ok.extend(probes(HOST_GW6.parse().unwrap(), 41001));
        send(&ok);
        assert!(
            wait_for(Duration::from_secs(3), || svc.reached().len() == 4),
            "the mapped gateway reaches the host's loopback: {:?}",
            svc.reached()
        );
    }
}

fn passt_case(no_map_gw: bool) {
    let host = Host::new();
    let svc = LoopbackServices::start(&host);
    let dir = TempDir::new();
    let args: &[&str] = if no_map_gw { &["--no-map-gw"] } else { &[] };
    let d = Daemon::start(&host, &dir, args);
    let s = connect(&d.socket);
    let send = |frames: &[Vec<u8>]| {
        use std::io::Write;
        let mut w = &s;
        for f in frames {
            w.write_all(&framed(f)).unwrap();
        }
    };
    check(no_map_gw, send, &svc);
    assert!(alive(d.pid), "passt survived every destination");
}

fn pasta_case(no_map_gw: bool) {
    let host = Host::new();
    let svc = LoopbackServices::start(&host);
    let args: &[&str] = if no_map_gw { &["--no-map-gw"] } else { &[] };
    let p = AttachedPasta::start(&host, args);
    check(no_map_gw, |f| p.inject(f), &svc);
    assert!(alive(p.pid), "pasta survived every destination");
}

#[test]
fn passt_guest_reaches_loopback_only_through_the_mapping() {
    passt_case(false);
}

#[test]
fn passt_no_map_gw_keeps_loopback_closed() {
    passt_case(true);
}

#[test]
fn pasta_namespace_reaches_loopback_only_through_the_mapping() {
    pasta_case(false);
}

#[test]
fn pasta_no_map_gw_keeps_loopback_closed() {
    pasta_case(true);
}
