//! The listening sockets of forwarded ports (`-t`, `-u`): one socket per
//! port and address family, bound at start-up, before privileges go.
//!
//! A port spec (`conf::ports`) becomes a list of (listening address,
//! port, target address, target port); each is bound as its own socket
//! so that an accepted connection or a datagram names, through the
//! socket's epoll reference, exactly where it goes in the guest. Without
//! a listening address a port is bound on both families' wildcard
//! addresses, IPv6 only on the IPv6 socket (`IPV6_V6ONLY`), so every
//! flow has one family end to end.
//!
//! Failures: a port named explicitly must be bound in at least one
//! family, or start-up fails naming it; `all` skips ports it can't bind
//! (in use, below `net.ipv4.ip_unprivileged_port_start`) unless it got
//! none at all. Listeners cost descriptors the flow table then doesn't
//! get (`Listeners::len`), and may take at most half of them
//! (`MAX_SHARE`): past that, ports are left unforwarded with a warning.

use crate::conf::Config;
use crate::conf::ports::{PortRule, PortSpec, Ports};
use crate::event::{EpollRef, EventLoop};
use crate::fwd::Proto;
use crate::startup::StartError;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, sockopt,
};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, OwnedFd};

/// Listeners may hold at most this share (1/N) of the open files limit:
/// the rest is for flows.
pub const MAX_SHARE: u64 = 2;

/// Where the kernel takes ephemeral ports from, which `all` leaves alone.
const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// One forwarded port in one family.
#[derive(Debug)]
pub struct Listener {
    /// The bound socket (listening, for TCP).
    pub sock: OwnedFd,
    /// TCP or UDP.
    pub proto: Proto,
    /// The address and port it is bound to.
    pub bound: SocketAddr,
    /// Where in the guest: its address if the spec names one.
    pub to_addr: Option<IpAddr>,
    /// The guest's port (for `-T`, the host's).
    pub to_port: u16,
    /// Bound inside pasta's namespace (`-T`): its clients are spliced to
    /// the host.
    pub ns: bool,
}

/// Every listener, indexed by the number their epoll reference carries.
#[derive(Default)]
pub struct Listeners {
    /// By number; `None` for the place of one `auto` closed, reused by the
    /// next one opened (`free`).
    list: Vec<Option<Listener>>,
    free: Vec<u32>,
    /// pasta's splice path, when it has one.
    pub splicer: Option<crate::tcp::spliced::Splicer>,
    /// pasta's `auto` forwarding, when a rule asks for it.
    pub auto: Option<super::auto::Auto>,
}

impl Listeners {
    /// Listener number `i`.
    pub fn get(&self, i: u32) -> Option<&Listener> {
        self.list.get(usize::try_from(i).ok()?)?.as_ref()
    }

    /// Every listener with its number.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Listener)> {
        // At most `MAX_SHARE` of the open files limit: fits a u32.
        self.list
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((u32::try_from(i).ok()?, l.as_ref()?)))
    }

    /// Number of listeners (descriptors held).
    pub fn len(&self) -> usize {
        self.list.len() - self.free.len()
    }

    /// True with nothing forwarded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take `l` in and watch it (an `auto` port appearing): its number.
    ///
    /// # Errors
    /// `epoll_ctl` failure (the socket is closed).
    pub fn add(&mut self, l: Listener, ev: &EventLoop) -> std::io::Result<u32> {
        let i = match self.free.pop() {
            Some(i) => i,
            None => u32::try_from(self.list.len()).map_err(|_| Errno::EMFILE)?,
        };
        let r = match l.proto {
            Proto::Tcp => EpollRef::TcpListen(i),
            _ => EpollRef::UdpListen(i),
        };
        if let Err(e) = ev.add(&l.sock, r, false) {
            self.free.push(i);
            return Err(e);
        }
        match self.list.get_mut(i as usize) {
            Some(slot) => *slot = Some(l),
            None => self.list.push(Some(l)),
        }
        Ok(i)
    }

    /// Close listener `i` (an `auto` port gone); an event already queued
    /// for it finds nothing, or the next listener given its number, which
    /// then only finds nothing waiting.
    pub fn remove(&mut self, i: u32, ev: &EventLoop) {
        if let Some(l) = self.list.get_mut(i as usize).and_then(Option::take) {
            let _ = ev.remove(&l.sock);
            self.free.push(i);
        }
    }

    /// Open a listener for `proto` on `at` (inside the namespace when
    /// `ns`, through the splicer's worker) going to `to_addr`, `to_port`.
    ///
    /// # Errors
    /// What the socket calls failed with.
    #[allow(clippy::too_many_arguments)]
    pub fn open_one(
        &self,
        conf: &Config,
        proto: Proto,
        at: SocketAddr,
        dev: Option<&str>,
        to_addr: Option<IpAddr>,
        to_port: u16,
        ns: bool,
    ) -> Result<Listener, Errno> {
        let freebind = conf.freebind;
        let sock = if ns {
            let sp = self.splicer.as_ref().ok_or(Errno::ENOTSUP)?;
            let dev = dev.map(str::to_owned);
            sp.worker
                .run(move || open(proto, at, dev.as_deref(), freebind))
                .unwrap_or(Err(Errno::EIO))?
        } else {
            open(proto, at, dev, freebind)?
        };
        Ok(Listener {
            sock,
            proto,
            bound: at,
            to_addr,
            to_port,
            ns,
        })
    }

    /// Bind the host side of `-t` and `-u` for `conf`, within
    /// `fd_budget` descriptors.
    ///
    /// # Errors
    /// An explicitly forwarded port that can't be bound in any family, or
    /// an `all` that bound nothing, as one line naming the option.
    pub fn bind(conf: &Config, fd_budget: u64) -> Result<Self, StartError> {
        let mut out = Listeners::default();
        let mut left = usize::try_from(fd_budget / MAX_SHARE).unwrap_or(usize::MAX);
        let ephemeral = ephemeral_ports();
        let specs = [
            (Proto::Tcp, &conf.fwd.tcp_in, "--tcp-ports"),
            (Proto::Udp, &conf.fwd.udp_in, "--udp-ports"),
        ];
        for (proto, spec, opt) in specs {
            out.bind_spec(conf, proto, spec, opt, &ephemeral, &mut left, false)?;
        }
        Ok(out)
    }

    /// Bind the namespace side of `-T` and `-U` for `conf`, inside the namespace
    /// (call this on a thread that is in it), within what `bind` left.
    ///
    /// # Errors
    /// As `bind`, for `--tcp-ns`.
    pub fn bind_ns(&mut self, conf: &Config, fd_budget: u64) -> Result<(), StartError> {
        let mut left = usize::try_from(fd_budget / MAX_SHARE)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.list.len());
        let ephemeral = ephemeral_ports();
        self.bind_spec(
            conf,
            Proto::Tcp,
            &conf.fwd.tcp_out,
            "--tcp-ns",
            &ephemeral,
            &mut left,
            true,
        )?;
        self.bind_spec(
            conf,
            Proto::Udp,
            &conf.fwd.udp_out,
            "--udp-ns",
            &ephemeral,
            &mut left,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_spec(
        &mut self,
        conf: &Config,
        proto: Proto,
        spec: &PortSpec,
        opt: &str,
        ephemeral: &RangeInclusive<u16>,
        left: &mut usize,
        ns: bool,
    ) -> Result<(), StartError> {
        for rule in &spec.rules {
            // `auto` ports follow what is bound on the other side, later.
            if rule.auto {
                continue;
            }
            let all = matches!(rule.ports, Ports::All { .. });
            let mut bound_any = false;
            let mut skipped = 0usize;
            for (port, to_addr, to_port) in expand(rule, ephemeral.clone()) {
                let mut ok = false;
                // An explicit port must be had in every family asked for
                // (another program holding it in one would get half the
                // clients); a family the host lacks is not a conflict.
                let mut conflict = None;
                for addr in listen_addrs(conf, rule.listen_addr, ns) {
                    if *left == 0 {
                        skipped += 1;
                        continue;
                    }
                    let at = SocketAddr::new(addr, port);
                    match open(proto, at, rule.listen_if.as_deref(), conf.freebind) {
                        Ok(sock) => {
                            *left -= 1;
                            ok = true;
                            self.list.push(Some(Listener {
                                sock,
                                proto,
                                bound: at,
                                to_addr,
                                to_port,
                                ns,
                            }));
                        }
                        Err(Errno::EAFNOSUPPORT | Errno::EADDRNOTAVAIL)
                            if rule.listen_addr.is_none() => {}
                        Err(e) => conflict = Some(e),
                    }
                }
                if !all
                    && *left > 0
                    && let Some(e) = conflict.or((!ok).then_some(Errno::EADDRNOTAVAIL))
                {
                    return Err(StartError(format!("{opt}: port {port}: {}", e.desc())));
                }
                bound_any |= ok;
            }
            if skipped > 0 {
                log::warn!(
                    "{opt}: {skipped} ports not forwarded: listeners may use only 1/{MAX_SHARE} of the open files limit"
                );
            }
            if all && !bound_any {
                return Err(StartError(format!("{opt}: no port could be bound")));
            }
        }
        Ok(())
    }
}

/// The ports of `rule` with where each goes (target address, port).
fn expand(
    rule: &PortRule,
    ephemeral: RangeInclusive<u16>,
) -> impl Iterator<Item = (u16, Option<IpAddr>, u16)> + '_ {
    let excluded = move |p: u16| rule.exclude.iter().any(|r| r.contains(p));
    let (all, maps): (Option<Option<IpAddr>>, &[_]) = match &rule.ports {
        Ports::All { to_addr } => (Some(*to_addr), &[]),
        Ports::Ranges(m) => (None, m.as_slice()),
    };
    let (lo, hi) = (*ephemeral.start(), *ephemeral.end());
    let all_ports = all.into_iter().flat_map(move |to_addr| {
        (1..=u16::MAX)
            .filter(move |p| !(lo..=hi).contains(p))
            .map(move |p| (p, to_addr, p))
    });
    let ranged = maps.iter().flat_map(|m| {
        (m.from.first()..=m.from.last())
            .map(move |p| (p, m.to_addr, m.to.first() + (p - m.from.first())))
    });
    all_ports
        .chain(ranged)
        .filter(move |&(p, _, _)| !excluded(p))
}

/// The addresses a rule listens on: its own, or each enabled family's
/// wildcard; inside the namespace (`-T`, `-U`), its loopback addresses,
/// since only the namespace's own clients are meant.
pub fn listen_addrs(conf: &Config, addr: Option<IpAddr>, ns: bool) -> Vec<IpAddr> {
    match addr {
        Some(a) => vec![a],
        None => {
            let mut v = Vec::with_capacity(2);
            if conf.ip4.is_some() {
                v.push(IpAddr::V4(if ns {
                    Ipv4Addr::LOCALHOST
                } else {
                    Ipv4Addr::UNSPECIFIED
                }));
            }
            if conf.ip6.is_some() {
                v.push(IpAddr::V6(if ns {
                    Ipv6Addr::LOCALHOST
                } else {
                    Ipv6Addr::UNSPECIFIED
                }));
            }
            v
        }
    }
}

/// The kernel's ephemeral port range, or Linux's default.
pub fn ephemeral_ports() -> RangeInclusive<u16> {
    let text = std::fs::read_to_string(PORT_RANGE).unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|w| w.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if a <= b => a..=b,
        _ => 32768..=60999,
    }
}

/// A socket bound to `at` (and `dev`), listening if TCP.
fn open(proto: Proto, at: SocketAddr, dev: Option<&str>, freebind: bool) -> Result<OwnedFd, Errno> {
    let family = if at.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let ty = match proto {
        Proto::Tcp => SockType::Stream,
        _ => SockType::Datagram,
    };
    let sock = socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&sock, sockopt::ReuseAddr, &true)?;
    if at.is_ipv6() {
        setsockopt(&sock, sockopt::Ipv6V6Only, &true)?;
    }
    if let Some(d) = dev {
        setsockopt(&sock, sockopt::BindToDevice, &OsString::from(d))?;
    }
    if freebind {
        // Linux honours IP_FREEBIND on IPv6 sockets too.
        let _ = setsockopt(&sock, sockopt::IpFreebind, &true);
    }
    match at {
        SocketAddr::V4(a) => bind(sock.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(sock.as_raw_fd(), &SockaddrIn6::from(a))?,
    }
    if proto == Proto::Tcp {
        listen(&sock, Backlog::MAXCONN)?;
    } else if at.is_ipv4() {
        // Which of our addresses a datagram went to: a flow's own socket
        // must answer from it (`udp::open_inbound`).
        setsockopt(&sock, sockopt::Ipv4PacketInfo, &true)?;
    } else {
        setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true)?;
    }
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::ports::parse;

    fn ports(spec: &str) -> Vec<(u16, Option<IpAddr>, u16)> {
        let s = parse(spec).unwrap();
        expand(&s.rules[0], 32768..=60999).collect()
    }

    #[test]
    fn specs_expand_to_ports_and_targets() {
        assert_eq!(ports("22"), vec![(22, None, 22)]);
        assert_eq!(
            ports("22-24:32-34"),
            vec![(22, None, 32), (23, None, 33), (24, None, 34)]
        );
        assert_eq!(
            ports("20-30,~22-28"),
            vec![
                (20, None, 20),
                (21, None, 21),
                (29, None, 29),
                (30, None, 30)
            ]
        );
        let t: IpAddr = "192.0.2.5".parse().unwrap();
        assert_eq!(
            ports("0.0.0.0/5000:192.0.2.5/6000"),
            vec![(5000, Some(t), 6000)]
        );
        let all = ports("~20000-20010");
        assert_eq!(all.len(), 32767 - 11 + (65535 - 60999));
        assert!(all.iter().all(|&(p, a, t)| p == t && a.is_none()));
        assert!(
            !all.iter()
                .any(|&(p, _, _)| (20000..=20010).contains(&p) || (32768..=60999).contains(&p))
        );
    }
}
