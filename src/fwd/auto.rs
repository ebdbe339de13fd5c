//! pasta's `auto` forwarding in the loop: once a second, scan which
//! ports are bound on the other side (`scan.rs`) and open or close our
//! listeners to match.
//!
//! - `-t auto`, `-u auto`: ports bound in the namespace get a listener on
//!   the host (and from there the tap path, or the splice path for the
//!   host's loopback clients);
//! - `-T auto`: ports listening on the host get a listener on the
//!   namespace's loopback, spliced to the host's.
//!
//! The scanners' files are opened at start-up, in the namespace they
//! watch (`/proc/thread-self/net` from a thread inside pasta's namespace,
//! `/proc/self/net` for the host), so the scan needs no privilege and no
//! namespace switch. A port we hold ourselves in the other direction is
//! never forwarded back (`scan::wanted`), nor is one a `~` exclude names.
//! A port taken on our side by something else is skipped, and tried again
//! at the next scan. A failed scan changes nothing: with a partial view,
//! closing listeners would cut live services off.
//!
//! Listeners opened here count against `MAX_AUTO`; the flow table was
//! sized with that many descriptors set aside.

use super::Proto;
use super::listen::{Listeners, listen_addrs};
use super::scan::{self, PortSet, Scanner};
use crate::conf::Config;
use crate::conf::ports::{PortRule, Ports};
use crate::event::EventLoop;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How often the other side is scanned: upstream's pace, and well within
/// the second a user waits for a new server to become reachable.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Most listeners `auto` holds at once (descriptors set aside for them).
pub const MAX_AUTO: usize = 4096;

/// Where a rule's listeners are, and so which side it scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// On the host, for ports bound in the namespace (`-t`, `-u`).
    Host,
    /// In the namespace, for ports bound on the host (`-T`).
    Ns,
}

/// One `auto` rule and the listeners it holds.
struct Rule {
    proto: Proto,
    place: Place,
    rule: PortRule,
    /// Ports held, each with its listeners (one per family).
    held: PortSet,
    listeners: HashMap<u16, Vec<u32>>,
}

/// The scanners and rules of `auto`.
pub struct Auto {
    rules: Vec<Rule>,
    /// Scanners of the namespace (TCP, UDP) and of the host (TCP).
    ns_tcp: Option<Scanner>,
    ns_udp: Option<Scanner>,
    host_tcp: Option<Scanner>,
    host_udp: Option<Scanner>,
    /// Scratch sets, allocated once.
    bound: PortSet,
    ours: PortSet,
    want: PortSet,
    /// Listeners held by every rule together, and at most (`MAX_AUTO`,
    /// or an eighth of the open files limit if less: what the loop set
    /// aside).
    count: usize,
    cap: usize,
    /// The kernel's ephemeral port range (`listen::ephemeral_ports`).
    ephemeral: std::ops::RangeInclusive<u16>,
    next: Instant,
}

impl Auto {
    /// `auto` for `conf`, if any rule asks for it, with scanners opened by
    /// `ns_scanner` (on a thread inside the namespace) and on the host.
    ///
    /// # Errors
    /// A scanner that can't be opened, as a message.
    pub fn new(
        conf: &Config,
        ns_scanner: impl Fn(Proto) -> Result<Scanner, String>,
    ) -> Result<Option<Auto>, String> {
        let mut rules = Vec::new();
        let specs = [
            (Proto::Tcp, Place::Host, &conf.fwd.tcp_in),
            (Proto::Udp, Place::Host, &conf.fwd.udp_in),
            (Proto::Tcp, Place::Ns, &conf.fwd.tcp_out),
            (Proto::Udp, Place::Ns, &conf.fwd.udp_out),
        ];
        for (proto, place, spec) in specs {
            for r in spec.rules.iter().filter(|r| r.auto) {
                rules.push(Rule {
                    proto,
                    place,
                    rule: r.clone(),
                    held: PortSet::new(),
                    listeners: HashMap::new(),
                });
            }
        }
        if rules.is_empty() {
            return Ok(None);
        }
        let wants = |proto, place| rules.iter().any(|r| r.proto == proto && r.place == place);
        let ns_tcp = wants(Proto::Tcp, Place::Host)
            .then(|| ns_scanner(Proto::Tcp))
            .transpose()?;
        let ns_udp = wants(Proto::Udp, Place::Host)
            .then(|| ns_scanner(Proto::Udp))
            .transpose()?;
        let host_tcp = wants(Proto::Tcp, Place::Ns)
            .then(|| Scanner::open_best(std::path::Path::new("/proc/self/net"), Proto::Tcp))
            .transpose()
            .map_err(|e| format!("/proc/self/net/tcp: {e}"))?;
        let host_udp = wants(Proto::Udp, Place::Ns)
            .then(|| Scanner::open_best(std::path::Path::new("/proc/self/net"), Proto::Udp))
            .transpose()
            .map_err(|e| format!("/proc/self/net/udp: {e}"))?;
        Ok(Some(Auto {
            rules,
            ns_tcp,
            ns_udp,
            host_tcp,
            host_udp,
            bound: PortSet::new(),
            ours: PortSet::new(),
            want: PortSet::new(),
            count: 0,
            cap: cap(),
            ephemeral: super::listen::ephemeral_ports(),
            next: Instant::now(),
        }))
    }

    /// When the next scan is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Scan if due, and open and close listeners of `ls` to match.
    pub fn tick(&mut self, conf: &Config, ls: &mut Listeners, ev: &EventLoop, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + PERIOD;
        for i in 0..self.rules.len() {
            self.update(i, conf, ls, ev);
        }
    }

    /// Bring rule `i` in line with a fresh scan of the side it watches.
    fn update(&mut self, i: usize, conf: &Config, ls: &mut Listeners, ev: &EventLoop) {
        let Some(r) = self.rules.get(i) else {
            return;
        };
        let (proto, place) = (r.proto, r.place);
        let scanner = match (proto, place) {
            (Proto::Tcp, Place::Host) => self.ns_tcp.as_mut(),
            (Proto::Udp, Place::Host) => self.ns_udp.as_mut(),
            (Proto::Tcp, Place::Ns) => self.host_tcp.as_mut(),
            (Proto::Udp, Place::Ns) => self.host_udp.as_mut(),
            _ => None,
        };
        let Some(scanner) = scanner else {
            return;
        };
        if let Err(e) = scanner.scan(&mut self.bound) {
            log::debug!("auto: scan failed ({e}), nothing changed");
            return;
        }
        if proto == Proto::Udp {
            // Unconnected UDP clients (a resolver's query socket) sit on
            // ephemeral ports for a moment: they are not services.
            if let Some(r) =
                crate::conf::ports::PortRange::new(*self.ephemeral.start(), *self.ephemeral.end())
            {
                self.bound.remove_range(r);
            }
        }
        // Our own listeners on the scanned side, in the other direction.
        self.ours.clear();
        for (_, l) in ls.iter() {
            if l.proto == proto && l.ns == (place == Place::Host) {
                self.ours.insert(l.bound.port());
            }
        }
        let Some(r) = self.rules.get_mut(i) else {
            return;
        };
        scan::wanted(&r.rule, &self.bound, &self.ours, &mut self.want);
        let ch = scan::diff(&r.held, &self.want);
        let closing: Vec<u16> = ch.close.collect();
        let opening: Vec<u16> = ch.open.collect();
        for port in closing {
            for l in r.listeners.remove(&port).unwrap_or_default() {
                ls.remove(l, ev);
                self.count = self.count.saturating_sub(1);
            }
            r.held.remove(port);
            log::debug!("auto: {proto:?} port {port} no longer forwarded");
        }
        for port in opening {
            let mut got = Vec::new();
            for addr in listen_addrs(conf, r.rule.listen_addr, place == Place::Ns) {
                if self.count >= self.cap {
                    break;
                }
                let (to_addr, to_port) = target_of(&r.rule, port);
                let at = SocketAddr::new(addr, port);
                let dev = r.rule.listen_if.as_deref();
                match ls.open_one(conf, proto, at, dev, to_addr, to_port, place == Place::Ns) {
                    Ok(l) => match ls.add(l, ev) {
                        Ok(n) => {
                            got.push(n);
                            self.count += 1;
                        }
                        Err(e) => log::debug!("auto: {at}: {e}"),
                    },
                    // Taken on our side by something else: skipped, and
                    // tried again next time.
                    Err(e) => log::debug!("auto: {proto:?} {at}: {e}"),
                }
            }
            if !got.is_empty() {
                log::debug!("auto: {proto:?} port {port} forwarded");
                r.held.insert(port);
                r.listeners.insert(port, got);
            }
        }
    }
}

/// The most listeners `auto` may hold under the open files limit.
pub fn cap() -> usize {
    let share = usize::try_from(crate::isolate::fd_limit() / 8).unwrap_or(usize::MAX);
    MAX_AUTO.min(share)
}

/// Where a port of `rule` goes: the spec's target address and port.
fn target_of(rule: &PortRule, port: u16) -> (Option<IpAddr>, u16) {
    match &rule.ports {
        Ports::All { to_addr } => (*to_addr, port),
        Ports::Ranges(maps) => maps
            .iter()
            .find(|m| m.from.contains(port))
            .map_or((None, port), |m| {
                (m.to_addr, m.to.first() + (port - m.from.first()))
            }),
    }
}
