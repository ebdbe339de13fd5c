//! pasta mode: serve a network namespace through a tap device inside it.
//!
//! Theory of operation, in the order `run` does it:
//! 1. the target namespace is prepared while we are still single-threaded
//!    (creating it and spawning the command, or joining it; see `ns`);
//! 2. a thread that entered the target netns opens the tap device there
//!    and, with `--config-net`, sets it up over netlink: link up, MTU,
//!    addresses and routes copied from the host's template interface;
//! 3. attached to an existing namespace, we fork to background only now,
//!    when the namespace is fully configured (podman reads the addresses
//!    right after we return); with a command we stay its parent;
//! 4. privileges go, the command is released, and the shared event loop
//!    (`serve`) runs with the tap fd as its tap side until a signal, the
//!    command's exit, or the namespace's disappearance ends it.

use crate::conf::host::{HostAddr, HostRoute};
use crate::conf::{Config, DEFAULT_MTU, NsTarget, PastaConfig};
use crate::fwd::auto::Auto;
use crate::fwd::listen::Listeners;
use crate::fwd::scan::Scanner;
use crate::isolate::{self, Leftovers};
use crate::netlink::{IpFamily, Netlink, NetlinkError};
use crate::ns::{QuitWatch, Target};
use crate::serve::{Outcome, QuitSource, Server, TapSide};
use crate::startup::{StartError, detach_and_drop, err_at, open_files};
use crate::sys::tun::Offloads;
use crate::tcp::spliced::Splicer;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// After the command exits, how long its connections may take to close:
/// data it wrote just before exiting is still on its way to the peer.
pub const LINGER: Duration = Duration::from_secs(5);
/// Set (to anything) in the environment, the tap is opened without
/// virtio-net headers and offloads: the path kernels that refuse them
/// take, forced for tests.
pub const NO_OFFLOAD_ENV: &str = "PASST_RS_NO_OFFLOAD";
/// Set (to anything), the offloads stay but UDP datagrams go through the
/// tap one frame each, both ways, as on kernels before 6.2: forced for
/// tests.
pub const NO_USO_ENV: &str = "PASST_RS_NO_USO";
use std::process::ExitCode;

impl QuitSource for QuitWatch {
    fn gone(&mut self) -> bool {
        QuitWatch::gone(self)
    }
}

fn ns_err(e: crate::ns::NsError) -> StartError {
    StartError(e.to_string())
}

/// Run pasta: prepare the namespace, open and configure the tap inside,
/// serve until the end, and give the exit status (the command's, when we
/// spawned one).
///
/// # Errors
/// Start-up failures, as one line for the user.
pub fn run(conf: &Config) -> Result<ExitCode, StartError> {
    let Some(p) = conf.pasta.as_ref() else {
        return Err(StartError("pasta settings missing".into()));
    };
    isolate::initial().map_err(|e| err_at("signals", e))?;
    let mut leftovers = Leftovers::default();
    let files = open_files(conf, &mut leftovers)?;
    let mut target = Target::prepare(p).map_err(ns_err)?;

    let tap: Option<(OwnedFd, Offloads)> = if p.splice_only {
        // No tap: only the namespace's loopback, which splices reach.
        crate::ns::bring_up_loopback(&target).map_err(ns_err)?;
        None
    } else {
        let fd = target
            .run_in(|| -> Result<(OwnedFd, Offloads), String> {
                let uso = std::env::var_os(NO_USO_ENV).is_none();
                let fd = if std::env::var_os(NO_OFFLOAD_ENV).is_none() {
                    crate::sys::tun::open_tap_offload(&p.ns_ifname, uso)
                } else {
                    crate::sys::tun::open_tap(&p.ns_ifname).map(|f| (f, Offloads::default()))
                }
                .map_err(|e| format!("/dev/net/tun: {}", crate::startup::plain(&e)))?;
                configure(conf, p)?;
                Ok(fd)
            })
            .map_err(ns_err)?
            .map_err(StartError)?;
        Some(fd)
    };

    let mut listeners = Listeners::bind(conf, isolate::fd_limit())?;
    if !conf.fwd.tcp_out.is_none() || !conf.fwd.udp_out.is_none() {
        let l = &mut listeners;
        target
            .run_in(|| l.bind_ns(conf, isolate::fd_limit()))
            .map_err(ns_err)??;
    }
    // `auto` watches the namespace through files opened inside it.
    listeners.auto = Auto::new(conf, |proto| {
        target
            .run_in(|| Scanner::open_best(std::path::Path::new("/proc/thread-self/net"), proto))
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("/proc/thread-self/net: {e}"))
    })
    .map_err(StartError)?;
    // With a command we stay its parent; attached to a namespace we fork
    // only now that it is fully configured.
    let spawned = matches!(p.target, NsTarget::Spawn(_));
    // Only our own IDs exist in a user namespace we joined: there is no
    // one else to become.
    // Clients of -T ports and host loopback clients of -t ports are
    // spliced: a thread inside the namespace opens sockets there.
    let splice = p.splice_only
        || !conf.fwd.tcp_out.is_none()
        || !conf.fwd.udp_out.is_none()
        || (!p.no_splice && !conf.fwd.tcp_in.is_none());
    let mut splicer = None;
    let (ready, pcap) = detach_and_drop(
        conf,
        files,
        &mut leftovers,
        spawned,
        target.joined_userns(),
        || {
            if splice {
                splicer = Some(Splicer {
                    worker: target.worker().map_err(ns_err)?,
                    ns4: conf.ip4.as_ref().map(|c| c.addr),
                    ns6: conf.ip6.as_ref().map(|c| c.addr),
                    lo_to_lo: p.host_lo_to_ns_lo,
                    no_splice: p.no_splice,
                    splice_only: p.splice_only,
                    buf: vec![0u8; 1 << 18].into_boxed_slice(),
                });
            }
            Ok(())
        },
    )?;
    listeners.splicer = splicer;
    let quit = target
        .quit_watch()
        .map_err(ns_err)?
        .map(|q| Box::new(q) as Box<dyn QuitSource>);
    target.release().map_err(ns_err)?;
    crate::startup::log_summary(conf);

    let mut server = Server::new(
        conf,
        tap.map_or(TapSide::Nothing, |(t, offloads)| {
            if offloads.uso {
                log::debug!(
                    "tap: virtio-net headers, checksum and TCP segmentation offload, UDP super-datagrams both ways"
                );
            } else if offloads.vnet {
                log::debug!("tap: virtio-net headers, checksum and TCP segmentation offload");
            } else {
                log::debug!("tap: no offloads, one frame of at most the MTU per read");
            }
            TapSide::Tun {
                dev: File::from(t),
                offloads,
            }
        }),
        pcap,
        quit,
        listeners,
    )?;
    if spawned {
        server.linger_on_quit(LINGER);
    }
    ready.notify();
    let outcome = server.serve();
    leftovers.remove_all();
    Ok(exit_code(&mut target, outcome))
}

/// The command's status when we spawned one; otherwise 0, or 1 if the
/// tap device failed.
fn exit_code(target: &mut Target, outcome: Outcome) -> ExitCode {
    let Some(child) = target.spawned() else {
        if outcome == Outcome::Quit {
            log::info!("namespace gone, exiting");
        }
        return if outcome == Outcome::TapError {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    };
    if outcome != Outcome::Quit {
        // We are leaving first: take the command down with us (the whole
        // namespace goes when its init does).
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.pid()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    match child.wait() {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Treat "already there" as success: the kernel adds prefix routes with
/// addresses, and copying the host's table repeats them.
fn add_ignoring_exists(r: Result<(), NetlinkError>) -> Result<(), NetlinkError> {
    match r {
        Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => Ok(()),
        r => r,
    }
}

/// Addresses to give the namespace for one family: the configured one
/// alone when given with `-a` (or `--no-copy-addrs`), else every address
/// of the host's template interface.
fn addrs_for<A: Copy + PartialEq>(
    addr: A,
    prefix_len: u8,
    from_cli: bool,
    no_copy: bool,
    host: &[HostAddr<A>],
) -> Vec<(A, u8)> {
    if from_cli || no_copy || host.is_empty() {
        return vec![(addr, prefix_len)];
    }
    host.iter().map(|a| (a.addr, a.prefix_len)).collect()
}

/// Routes to give the namespace for one family: only a default route via
/// the gateway when `-g` (or `--no-copy-routes`) says so, else every route
/// of the template interface, the ones without a gateway first so that
/// gateways are reachable when routes through them are added.
fn routes_for<A: Copy>(
    any: A,
    gateway: A,
    from_cli: bool,
    no_copy: bool,
    host: &[HostRoute<A>],
) -> Vec<HostRoute<A>> {
    if from_cli || no_copy || host.is_empty() {
        return vec![HostRoute {
            dst: any,
            prefix_len: 0,
            gateway: Some(gateway),
            metric: None,
        }];
    }
    let mut r: Vec<HostRoute<A>> = host.to_vec();
    r.sort_by_key(|r| r.gateway.is_some());
    r
}

fn step<T>(what: impl FnOnce() -> String, r: Result<T, NetlinkError>) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what()))
}

/// Set up the namespace's side: `lo` and the tap link, and with
/// `--config-net` MTU, addresses and routes. Runs in a thread inside the
/// target netns.
///
/// # Errors
/// One line naming the step that failed.
pub fn configure(conf: &Config, p: &PastaConfig) -> Result<(), String> {
    let mut nl = step(|| "netlink".into(), Netlink::new())?;
    let lo = step(|| "lo".into(), nl.link_index("lo"))?;
    step(|| "bring up lo".into(), nl.set_link_up(lo))?;
    let ifname = &p.ns_ifname;
    let idx = step(|| ifname.clone(), nl.link_index(ifname))?;
    if let Some(mac) = p.ns_mac {
        step(
            || format!("--ns-mac-addr on {ifname}"),
            nl.set_mac(idx, mac),
        )?;
    }
    if !p.config_net {
        return Ok(());
    }
    let mtu = u32::from(conf.mtu.unwrap_or(DEFAULT_MTU));
    step(|| format!("MTU {mtu} on {ifname}"), nl.set_mtu(idx, mtu))?;
    step(|| format!("bring up {ifname}"), nl.set_link_up(idx))?;
    if let Some(ip4) = &conf.ip4 {
        for (a, len) in addrs_for(
            ip4.addr,
            ip4.prefix_len,
            ip4.addr_from_cli,
            p.no_copy_addrs,
            &ip4.host_addrs,
        ) {
            let r = add_ignoring_exists(nl.add_addr(idx, IpAddr::V4(a), len, false));
            step(|| format!("add address {a}/{len}"), r)?;
        }
        for r in routes_for(
            std::net::Ipv4Addr::UNSPECIFIED,
            ip4.gateway,
            ip4.gateway_from_cli,
            p.no_copy_routes,
            &ip4.host_routes,
        ) {
            add_route(&mut nl, idx, &r)?;
        }
    }
    if let Some(ip6) = &conf.ip6 {
        if !ip6.addr.is_unspecified() {
            for (a, len) in addrs_for(
                ip6.addr,
                ip6.prefix_len,
                ip6.addr_from_cli,
                p.no_copy_addrs,
                &ip6.host_addrs,
            ) {
                let r = add_ignoring_exists(nl.add_addr(idx, IpAddr::V6(a), len, true));
                step(|| format!("add address {a}/{len}"), r)?;
            }
        }
        for r in routes_for(
            std::net::Ipv6Addr::UNSPECIFIED,
            ip6.gateway,
            ip6.gateway_from_cli,
            p.no_copy_routes,
            &ip6.host_routes,
        ) {
            add_route(&mut nl, idx, &r)?;
        }
    }
    Ok(())
}

fn add_route<A: IpFamily + std::fmt::Display>(
    nl: &mut Netlink,
    idx: u32,
    r: &HostRoute<A>,
) -> Result<(), String> {
    let res = add_ignoring_exists(nl.add_route(idx, r));
    step(
        || match r.gateway {
            Some(gw) => format!("add route {}/{} via {gw}", r.dst, r.prefix_len),
            None => format!("add route {}/{}", r.dst, r.prefix_len),
        },
        res,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_copied_unless_given() {
        let host = [
            HostAddr {
                addr: v4("192.0.2.2"),
                prefix_len: 24,
            },
            HostAddr {
                addr: v4("198.51.100.2"),
                prefix_len: 25,
            },
        ];
        assert_eq!(addrs_for(v4("192.0.2.2"), 24, false, false, &host).len(), 2);
        assert_eq!(
            addrs_for(v4("10.0.0.2"), 8, true, false, &host),
            vec![(v4("10.0.0.2"), 8)]
        );
        assert_eq!(
            addrs_for(v4("192.0.2.2"), 24, false, true, &host),
            vec![(v4("192.0.2.2"), 24)]
        );
    }

    #[test]
    fn routes_copied_onlink_first_unless_gateway_given() {
        let host = [
            HostRoute {
                dst: v4("0.0.0.0"),
                prefix_len: 0,
                gateway: Some(v4("192.0.2.1")),
                metric: None,
            },
            HostRoute {
                dst: v4("192.0.2.0"),
                prefix_len: 24,
                gateway: None,
                metric: None,
            },
        ];
        let r = routes_for(Ipv4Addr::UNSPECIFIED, v4("192.0.2.1"), false, false, &host);
        assert_eq!(r[0].gateway, None);
        assert_eq!(r[1].gateway, Some(v4("192.0.2.1")));
        let r = routes_for(Ipv4Addr::UNSPECIFIED, v4("10.0.0.1"), true, false, &host);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].prefix_len, r[0].gateway), (0, Some(v4("10.0.0.1"))));
    }
}
