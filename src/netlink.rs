//! Host probing and interface configuration over rtnetlink: links, addresses, routes.
//!
//! # Theory of operation
//!
//! A netlink socket talks to the network namespace it was *created* in, not
//! to the one its user happens to be in later. Everything therefore goes
//! through a [`Netlink`] handle: [`Netlink::new`] opens the socket in the
//! calling thread's current namespace, and every query ([`Netlink::links`],
//! [`Netlink::addrs`], [`Netlink::routes`]) or change
//! ([`Netlink::set_link_up`], [`Netlink::set_mtu`], [`Netlink::add_addr`],
//! [`Netlink::add_route`]) made through it acts on that namespace. pasta
//! can thus create a handle in a thread that entered the target namespace
//! with `setns()` and configure it from there.
//!
//! The handle is synchronous: a `netlink-sys` socket in blocking mode,
//! messages built and parsed with `netlink-packet-route`. We do not use the
//! async `rtnetlink` crate because every exchange here is one request
//! followed by its replies, done once at start-up. An executor would add a
//! runtime, a background connection task and more syscalls for seccomp to
//! allow, and all of it would have to be set up again inside each namespace
//! thread. With a plain blocking socket a handle is a file descriptor and a
//! buffer.
//!
//! [`probe_host`] picks the template interface for each address family, as
//! `-i`/`--outbound-if4`/`--outbound-if6` in the manual describe:
//! 1. the interface named by the caller, if any (an error if it doesn't exist);
//! 2. otherwise the interface of the first default route in the main table.
//!    For a multipath route, that is the first next hop with the highest
//!    weight;
//! 3. otherwise, if exactly one non-loopback interface has routes of that
//!    family, that interface;
//! 4. otherwise none, and the family is disabled ("local mode").
//!
//! A family whose template interface has no usable address is disabled as
//! well.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteNextHopFlags, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;

use crate::conf::host::{HostAddr, HostFamily, HostInfo, HostRoute};

/// Initial receive buffer size: the kernel packs dump replies into
/// datagrams of at most 32 KiB, unless a single message is larger (a link
/// with many virtual functions), and then the buffer grows.
const RECV_BUF_SIZE: usize = 32 * 1024;

/// How often a dump is restarted when the kernel flags it as interrupted
/// (`NLM_F_DUMP_INTR`: the table changed while we were reading it).
const DUMP_RETRIES: usize = 5;

/// Errors from netlink requests and host probing.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be created or bound.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// Sending or receiving failed.
    #[error("netlink {op}: {source}")]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the request.
    #[error("netlink {op}: {errno}")]
    Kernel {
        /// What we were doing.
        op: &'static str,
        /// The error the kernel reported.
        errno: Errno,
    },
    /// The kernel's reply could not be framed.
    #[error("netlink {op}: malformed reply: {reason}")]
    Malformed {
        /// What we were doing.
        op: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The table kept changing while we dumped it.
    #[error("netlink {op}: dump interrupted {DUMP_RETRIES} times, giving up")]
    DumpInterrupted {
        /// What we were doing.
        op: &'static str,
    },
    /// No interface has the given name.
    #[error("interface '{0}' not found")]
    NoSuchInterface(String),
}

impl NetlinkError {
    /// The errno the kernel answered with, if this is a kernel refusal.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    fn af(self) -> AddressFamily {
        match self {
            Self::V4 => AddressFamily::Inet,
            Self::V6 => AddressFamily::Inet6,
        }
    }

    fn unspecified(self) -> IpAddr {
        match self {
            Self::V4 => Ipv4Addr::UNSPECIFIED.into(),
            Self::V6 => Ipv6Addr::UNSPECIFIED.into(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// An address type of one family ([`Ipv4Addr`] or [`Ipv6Addr`]), so that
/// family-generic host records convert to and from [`IpAddr`].
pub trait IpFamily: Copy + sealed::Sealed {
    /// The family of this address type.
    const FAMILY: Family;
    /// `Some` if `ip` is of this family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
    /// Widen to [`IpAddr`].
    fn to_ip(self) -> IpAddr;
}

impl IpFamily for Ipv4Addr {
    const FAMILY: Family = Family::V4;
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        self.into()
    }
}

impl IpFamily for Ipv6Addr {
    const FAMILY: Family = Family::V6;
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        self.into()
    }
}

/// A network interface as listed by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU (0 if the kernel didn't say).
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// A loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
}

/// An address assigned to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// Index of the interface carrying it.
    pub ifindex: u32,
    /// The local address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Duplicate address detection still running (`IFA_F_TENTATIVE`).
    pub tentative: bool,
    /// Valid but no longer preferred (`IFA_F_DEPRECATED`).
    pub deprecated: bool,
    /// Duplicate address detection failed (`IFA_F_DADFAILED`): unusable.
    pub dad_failed: bool,
    /// Host scope (`RT_SCOPE_HOST`): not reachable from outside the host.
    pub host_scope: bool,
}

/// One path of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Output interface.
    pub ifindex: u32,
    /// Next hop router, or `None` for a directly connected destination.
    pub gateway: Option<IpAddr>,
    /// Relative weight among the paths of a multipath route (1 to 256).
    pub weight: u16,
    /// The kernel marked this path dead (`RTNH_F_DEAD`).
    pub dead: bool,
}

/// A unicast route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network (unspecified address for a default route).
    pub dst: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Priority (metric), if set.
    pub metric: Option<u32>,
    /// Paths, in kernel order: one for an ordinary route, several for a
    /// multipath one.
    pub nexthops: Vec<NextHop>,
}

impl Route {
    /// Whether this is a default route.
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }

    /// The path taken by preference: the first one with the highest weight,
    /// skipping dead ones.
    pub fn preferred_nexthop(&self) -> Option<&NextHop> {
        // max_by_key returns the *last* maximum; we want the first.
        self.nexthops
            .iter()
            .filter(|nh| !nh.dead)
            .fold(None, |best: Option<&NextHop>, nh| match best {
                Some(b) if b.weight >= nh.weight => Some(b),
                _ => Some(nh),
            })
    }

    /// The path through interface `ifindex`, if any.
    pub fn nexthop_via(&self, ifindex: u32) -> Option<&NextHop> {
        self.nexthops.iter().find(|nh| nh.ifindex == ifindex)
    }
}

/// A route-netlink socket bound to the network namespace it was created in.
pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens a route-netlink socket in the calling thread's current network namespace.
    ///
    /// # Errors
    /// [`NetlinkError::Socket`] if the socket can't be created or bound.
    pub fn new() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        // Only the kernel (port 0) may talk to us: replies from anyone else
        // are dropped by the kernel rather than confusing our parser.
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Self {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF_SIZE),
        })
    }

    /// Lists all interfaces.
    ///
    /// # Errors
    /// Socket errors or a kernel refusal.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let msgs = self.dump(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_from_msg(&l)),
                _ => None,
            })
            .collect())
    }

    /// Index of the interface called `name`.
    ///
    /// # Errors
    /// [`NetlinkError::NoSuchInterface`] if there is none, or socket errors.
    pub fn link_index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        self.links()?
            .into_iter()
            .find(|l| l.name == name)
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::NoSuchInterface(name.to_owned()))
    }

    /// Lists addresses of `family` on all interfaces, in kernel order.
    ///
    /// # Errors
    /// Socket errors or a kernel refusal.
    pub fn addrs(&mut self, family: Family) -> Result<Vec<Addr>, NetlinkError> {
        let mut req = AddressMessage::default();
        req.header.family = family.af();
        let msgs = self.dump("dump addresses", RouteNetlinkMessage::GetAddress(req))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.family == family.af() => {
                    addr_from_msg(&a)
                }
                _ => None,
            })
            .collect())
    }

    /// Lists unicast routes of `family` in the main table, in kernel order.
    ///
    /// # Errors
    /// Socket errors or a kernel refusal.
    pub fn routes(&mut self, family: Family) -> Result<Vec<Route>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = family.af();
        let msgs = self.dump("dump routes", RouteNetlinkMessage::GetRoute(req))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) if r.header.address_family == family.af() => {
                    route_from_msg(&r, family)
                }
                _ => None,
            })
            .collect())
    }

    /// Brings interface `ifindex` up.
    ///
    /// # Errors
    /// Socket errors or a kernel refusal.
    pub fn set_link_up(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request("set link up", RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Sets the MTU of interface `ifindex`.
    ///
    /// # Errors
    /// Socket errors or a kernel refusal (e.g. `EINVAL` for an MTU out of range).
    pub fn set_mtu(&mut self, ifindex: u32, mtu: u32) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        self.request("set MTU", RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Sets the hardware address of interface `ifindex` (pasta's
    /// `--ns-mac-addr`).
    ///
    /// # Errors
    /// Socket errors or a kernel refusal.
    pub fn set_mac(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<(), NetlinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request("set MAC address", RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Adds `addr/prefix_len` to interface `ifindex`; with `nodad`, IPv6
    /// duplicate address detection is skipped so the address is usable at once.
    ///
    /// # Errors
    /// Socket errors or a kernel refusal (`EEXIST` if already present).
    pub fn add_addr(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix_len: u8,
        nodad: bool,
    ) -> Result<(), NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.index = ifindex;
        msg.header.prefix_len = prefix_len;
        match addr {
            IpAddr::V4(_) => {
                msg.header.family = AddressFamily::Inet;
                // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on
                // point-to-point links and equals IFA_LOCAL elsewhere.
                msg.attributes.push(AddressAttribute::Local(addr));
            }
            IpAddr::V6(_) => msg.header.family = AddressFamily::Inet6,
        }
        msg.attributes.push(AddressAttribute::Address(addr));
        // The kernel derives IPv6 scopes itself; IPv4 ones are ours to
        // give, and `ip addr add` defaults to global even for 169.254/16.
        msg.header.scope = if is_v6_link_local(addr) {
            AddressScope::Link
        } else {
            AddressScope::Universe
        };
        if nodad {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.request(
            "add address",
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Adds `route` through interface `ifindex` to the main table.
    ///
    /// # Errors
    /// Socket errors or a kernel refusal (`EEXIST` if already present,
    /// `ENETUNREACH` if the gateway isn't on a connected network).
    pub fn add_route<A: IpFamily>(
        &mut self,
        ifindex: u32,
        route: &HostRoute<A>,
    ) -> Result<(), NetlinkError> {
        let mut msg = RouteMessage::default();
        let h = &mut msg.header;
        h.address_family = A::FAMILY.af();
        h.destination_prefix_length = route.prefix_len;
        h.table = RouteHeader::RT_TABLE_MAIN;
        // What `ip route add` uses for administrator-added routes.
        h.protocol = RouteProtocol::Boot;
        h.kind = RouteType::Unicast;
        // Without a gateway an IPv4 destination is directly on the link;
        // IPv6 routes always have universe scope (as iproute2 does).
        h.scope = match (A::FAMILY, route.gateway) {
            (Family::V4, None) => RouteScope::Link,
            _ => RouteScope::Universe,
        };
        if route.prefix_len > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(route.dst.to_ip().into()));
        }
        if let Some(gw) = route.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(gw.to_ip().into()));
        }
        msg.attributes.push(RouteAttribute::Oif(ifindex));
        if let Some(metric) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        self.request(
            "add route",
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Probes the host: see [`probe_host`].
    ///
    /// # Errors
    /// As [`probe_host`].
    pub fn probe(
        &mut self,
        if4: Option<&str>,
        if6: Option<&str>,
    ) -> Result<HostInfo, NetlinkError> {
        let links = self.links()?;
        let v4 = self.probe_family::<Ipv4Addr>(&links, if4)?;
        let v6 = self.probe_family::<Ipv6Addr>(&links, if6)?;
        Ok(HostInfo {
            v4: v4.family,
            v6: v6.family,
            v6_link_local: v6.link_local,
            nameservers: Vec::new(),
            search: Vec::new(),
        })
    }

    /// Finds the template interface of family `A` (`ifname`, if given) and
    /// what it carries.
    fn probe_family<A: IpFamily>(
        &mut self,
        links: &[Link],
        ifname: Option<&str>,
    ) -> Result<Template<A>, NetlinkError> {
        let routes = self.routes(A::FAMILY)?;
        let link = match ifname {
            Some(name) => Some(
                links
                    .iter()
                    .find(|l| l.name == name)
                    .ok_or_else(|| NetlinkError::NoSuchInterface(name.to_owned()))?,
            ),
            None => {
                pick_template(links, &routes).and_then(|idx| links.iter().find(|l| l.index == idx))
            }
        };
        let Some(link) = link else {
            return Ok(Template {
                family: None,
                link_local: None,
            });
        };

        let mut addrs: Vec<Addr> = self
            .addrs(A::FAMILY)?
            .into_iter()
            .filter(|a| a.ifindex == link.index && !a.dad_failed && !a.host_scope)
            .collect();
        // Deprecated addresses still work but shouldn't be the one we pick
        // first; the sort is stable, so kernel order holds otherwise.
        addrs.sort_by_key(|a| a.deprecated);
        let link_local = addrs.iter().find_map(|a| match a.addr {
            IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
            _ => None,
        });
        let host_addrs: Vec<HostAddr<A>> = addrs
            .iter()
            .filter(|a| !is_v6_link_local(a.addr))
            .filter_map(|a| {
                Some(HostAddr {
                    addr: A::from_ip(a.addr)?,
                    prefix_len: a.prefix_len,
                })
            })
            .collect();
        if host_addrs.is_empty() {
            return Ok(Template {
                family: None,
                link_local,
            });
        }

        let gateway = routes
            .iter()
            .filter(|r| r.is_default())
            .find_map(|r| r.nexthop_via(link.index))
            .and_then(|nh| nh.gateway)
            .and_then(A::from_ip);
        let host_routes = routes
            .iter()
            .filter_map(|r| {
                let nh = r.nexthop_via(link.index)?;
                Some(HostRoute {
                    dst: A::from_ip(r.dst)?,
                    prefix_len: r.prefix_len,
                    gateway: nh.gateway.and_then(A::from_ip),
                    metric: r.metric,
                })
            })
            .collect();

        Ok(Template {
            family: Some(HostFamily {
                ifname: link.name.clone(),
                ifindex: link.index,
                mtu: link.mtu,
                addrs: host_addrs,
                gateway,
                routes: host_routes,
            }),
            link_local,
        })
    }

    /// Sends a dump request and collects the replies, restarting the dump if
    /// the kernel reports it was interrupted by a concurrent change.
    fn dump(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        for _ in 0..DUMP_RETRIES {
            let seq = self.send(op, msg.clone(), NLM_F_DUMP)?;
            let mut out = Vec::new();
            let mut interrupted = false;
            while let Batch::More = self.recv_one_batch(op, seq, &mut out, &mut interrupted)? {}
            if !interrupted {
                return Ok(out);
            }
        }
        Err(NetlinkError::DumpInterrupted { op })
    }

    /// Sends a request asking for an acknowledgement and waits for it.
    fn request(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let seq = self.send(op, msg, NLM_F_ACK | flags)?;
        let mut unused = Vec::new();
        let mut interrupted = false;
        while let Batch::More = self.recv_one_batch(op, seq, &mut unused, &mut interrupted)? {}
        Ok(())
    }

    fn send(
        &mut self,
        op: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut bytes = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut bytes);
        self.sock
            .send(&bytes, 0)
            .map_err(|source| NetlinkError::Io { op, source })?;
        Ok(self.seq)
    }

    /// Reads one datagram and handles the messages answering request `seq`:
    /// data goes to `out`; `NLMSG_DONE` or an acknowledgement end the
    /// exchange, an error code fails it.
    fn recv_one_batch(
        &mut self,
        op: &'static str,
        seq: u32,
        out: &mut Vec<RouteNetlinkMessage>,
        interrupted: &mut bool,
    ) -> Result<Batch, NetlinkError> {
        // Peeking into an empty buffer with MSG_TRUNC gives the size of the
        // next datagram without consuming it, so we can make room first.
        let mut empty: &mut [u8] = &mut [];
        let want = self
            .sock
            .recv(&mut empty, libc::MSG_PEEK | libc::MSG_TRUNC)
            .map_err(|source| NetlinkError::Io { op, source })?;
        self.buf.clear();
        self.buf.reserve(want);
        // MSG_TRUNC again: a datagram that still didn't fit is reported,
        // not silently cut.
        let len = self
            .sock
            .recv(&mut self.buf, libc::MSG_TRUNC)
            .map_err(|source| NetlinkError::Io { op, source })?;
        if len > self.buf.len() {
            return Err(NetlinkError::Malformed {
                op,
                reason: "datagram larger than receive buffer",
            });
        }

        let mut rest: &[u8] = &self.buf;
        let mut result = Batch::More;
        while !rest.is_empty() {
            let nb = NetlinkBuffer::new_checked(rest).map_err(|_| NetlinkError::Malformed {
                op,
                reason: "bad message length",
            })?;
            let msg_len = nb.length() as usize;
            let (msg_seq, msg_flags) = (nb.sequence_number(), nb.flags());
            let this = &rest[..msg_len];
            // Messages are padded to 4 bytes; the last one may not be.
            rest = rest.get(msg_len.next_multiple_of(4)..).unwrap_or(&[]);

            if msg_seq != seq {
                // A late answer to an earlier request: not ours any more.
                continue;
            }
            if msg_flags & NLM_F_DUMP_INTR != 0 {
                *interrupted = true;
            }
            match NetlinkMessage::<RouteNetlinkMessage>::deserialize(this) {
                Ok(m) => match m.payload {
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    NetlinkPayload::Done(done) => {
                        if done.code != 0 {
                            return Err(NetlinkError::Kernel {
                                op,
                                errno: Errno::from_raw(-done.code),
                            });
                        }
                        result = Batch::Done;
                    }
                    NetlinkPayload::Error(err) => match err.code {
                        None => result = Batch::Done,
                        Some(code) => {
                            return Err(NetlinkError::Kernel {
                                op,
                                errno: Errno::from_raw(-code.get()),
                            });
                        }
                    },
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    // NetlinkPayload is non-exhaustive.
                    _ => {}
                },
                // One message we can't decode (a newer kernel's attribute
                // layout, say) shouldn't cost us the rest of the dump.
                Err(e) => log::debug!("netlink {op}: skipping undecodable message: {e}"),
            }
        }
        Ok(result)
    }
}

/// What probing found for one address family.
struct Template<A> {
    /// The template interface, or `None` if there is none or it has no
    /// usable address of the family.
    family: Option<HostFamily<A>>,
    /// First IPv6 link-local address of the template interface, if any.
    link_local: Option<Ipv6Addr>,
}

/// Whether a reply datagram left the exchange open.
enum Batch {
    More,
    Done,
}

fn is_v6_link_local(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V6(a) if a.is_unicast_link_local())
}

fn link_from_msg(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
        loopback: msg.header.flags.contains(LinkFlags::Loopback),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            _ => {}
        }
    }
    link
}

fn addr_from_msg(msg: &AddressMessage) -> Option<Addr> {
    let mut local = None;
    let mut address = None;
    // IFA_FLAGS (32 bits) supersedes the 8-bit header field when present.
    let mut flags = AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits()));
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Flags(f) => flags = *f,
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer and IFA_LOCAL ours.
    let addr = local.or(address)?;
    Some(Addr {
        ifindex: msg.header.index,
        addr,
        prefix_len: msg.header.prefix_len,
        tentative: flags.contains(AddressFlags::Tentative),
        deprecated: flags.contains(AddressFlags::Deprecated),
        dad_failed: flags.contains(AddressFlags::Dadfailed),
        host_scope: msg.header.scope == AddressScope::Host,
    })
}

fn route_addr(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some((*a).into()),
        RouteAddress::Inet6(a) => Some((*a).into()),
        _ => None,
    }
}

fn route_from_msg(msg: &RouteMessage, family: Family) -> Option<Route> {
    if msg.header.kind != RouteType::Unicast {
        return None;
    }
    // Tables above 255 only appear in RTA_TABLE; the header then says
    // RT_TABLE_COMPAT.
    let mut table = u32::from(msg.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = None;
    let mut multipath = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = route_addr(a),
            RouteAttribute::Gateway(a) => gateway = route_addr(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = Some(*p),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let nexthops = match multipath {
        Some(hops) => hops
            .iter()
            .map(|nh| NextHop {
                ifindex: nh.interface_index,
                gateway: nh.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(g) => route_addr(g),
                    _ => None,
                }),
                // rtnh_hops holds the weight minus one.
                weight: u16::from(nh.hops) + 1,
                dead: nh.flags.contains(RouteNextHopFlags::Dead),
            })
            .collect(),
        None => oif
            .map(|ifindex| NextHop {
                ifindex,
                gateway,
                weight: 1,
                dead: false,
            })
            .into_iter()
            .collect(),
    };
    Some(Route {
        dst: dst.unwrap_or(family.unspecified()),
        prefix_len: msg.header.destination_prefix_length,
        metric,
        nexthops,
    })
}

/// Picks the template interface among `links` given the routes of one family:
/// the interface of the first default route, else the only non-loopback
/// interface with any route, else none.
fn pick_template(links: &[Link], routes: &[Route]) -> Option<u32> {
    let is_loopback = |idx: u32| links.iter().any(|l| l.index == idx && l.loopback);

    if let Some(nh) = routes
        .iter()
        .filter(|r| r.is_default())
        .find_map(|r| r.preferred_nexthop())
    {
        return Some(nh.ifindex);
    }

    let mut only = None;
    for nh in routes.iter().flat_map(|r| &r.nexthops) {
        if is_loopback(nh.ifindex) {
            continue;
        }
        match only {
            None => only = Some(nh.ifindex),
            Some(idx) if idx == nh.ifindex => {}
            Some(_) => return None,
        }
    }
    only
}

/// Probes the host's network in the current namespace: the template
/// interface of each family (the named one if given, see the module docs),
/// its addresses, gateway and routes. Nameservers and search domains are
/// left empty for the resolv.conf reader to fill in.
///
/// `v6_link_local` is the first link-local address of the IPv6 template
/// interface even when IPv6 is otherwise disabled for lack of a global address.
///
/// # Errors
/// [`NetlinkError::NoSuchInterface`] if `if4` or `if6` names a missing
/// interface; socket errors or kernel refusals otherwise.
pub fn probe_host(if4: Option<&str>, if6: Option<&str>) -> Result<HostInfo, NetlinkError> {
    Netlink::new()?.probe(if4, if6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nix::sched::{CloneFlags, setns};

    fn route(dst: IpAddr, prefix_len: u8, hops: &[(u32, u16)]) -> Route {
        Route {
            dst,
            prefix_len,
            metric: None,
            nexthops: hops
                .iter()
                .map(|&(ifindex, weight)| NextHop {
                    ifindex,
                    gateway: None,
                    weight,
                    dead: false,
                })
                .collect(),
        }
    }

    fn link(index: u32, loopback: bool) -> Link {
        Link {
            index,
            name: format!("if{index}"),
            mtu: 1500,
            up: true,
            loopback,
        }
    }

    const ANY4: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    const NET4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0));

    #[test]
    fn template_is_first_default_route() {
        let links = [link(1, true), link(2, false), link(3, false)];
        let routes = [
            route(NET4, 24, &[(2, 1)]),
            route(ANY4, 0, &[(3, 1)]),
            route(ANY4, 0, &[(2, 1)]),
        ];
        assert_eq!(pick_template(&links, &routes), Some(3));
    }

    #[test]
    fn template_multipath_takes_first_highest_weight() {
        let links = [link(2, false), link(3, false), link(4, false)];
        let routes = [route(ANY4, 0, &[(2, 1), (3, 5), (4, 5)])];
        assert_eq!(pick_template(&links, &routes), Some(3));
    }

    #[test]
    fn template_single_interface_with_routes() {
        let links = [link(1, true), link(2, false)];
        let routes = [route(NET4, 24, &[(2, 1)]), route(NET4, 25, &[(1, 1)])];
        assert_eq!(pick_template(&links, &routes), Some(2));
        let routes = [route(NET4, 24, &[(2, 1)]), route(NET4, 25, &[(3, 1)])];
        assert_eq!(
            pick_template(&[link(2, false), link(3, false)], &routes),
            None
        );
        assert_eq!(pick_template(&links, &[]), None);
    }

    // --- Kernel tests: each runs in a fresh, named network namespace. ---

    /// A named network namespace, deleted on drop even if the test panics.
    struct TestNs {
        name: String,
    }

    impl TestNs {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            assert!(
                nix::unistd::geteuid().is_root(),
                "netlink kernel tests must run as root (they create network namespaces)"
            );
            let name = format!(
                "passt-rs-nltest-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            run(&["ip", "netns", "add", &name]);
            Self { name }
        }

        /// Runs `ip -n NAME args…`, panicking with its stderr on failure.
        fn ip(&self, args: &str) -> String {
            let mut argv = vec!["ip", "-n", &self.name];
            argv.extend(args.split_whitespace());
            run(&argv)
        }

        /// Adds a link-layer interface: `dummy` if the kernel has it, else
        /// `ifb` (no dummy driver on some minimal kernels).
        fn add_if(&self, name: &str) {
            let ok = Command::new("ip")
                .args(["-n", &self.name, "link", "add", name, "type", "dummy"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                self.ip(&format!("link add {name} type ifb"));
            }
        }

        /// Adds an interface, brings it up and configures it from
        /// `addrs` (`ip addr add` arguments) and `routes` (whole `ip` commands).
        fn setup_if(&self, name: &str, addrs: &[&str], routes: &[&str]) {
            self.add_if(name);
            self.ip(&format!("link set {name} up"));
            for a in addrs {
                self.ip(&format!("addr add {a} dev {name}"));
            }
            for r in routes {
                self.ip(r);
            }
        }

        /// Runs `f` in a new thread that has entered this namespace.
        fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
            let path = format!("/run/netns/{}", self.name);
            std::thread::spawn(move || {
                let fd = File::open(&path).expect("open netns file");
                setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns into test netns");
                f()
            })
            .join()
            .expect("test thread panicked")
        }

        fn probe(
            &self,
            if4: Option<&'static str>,
            if6: Option<&'static str>,
        ) -> Result<HostInfo, NetlinkError> {
            self.run_in(move || probe_host(if4, if6))
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    fn run(argv: &[&str]) -> String {
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
        assert!(
            out.status.success(),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().expect("test IPv4 literal")
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().expect("test IPv6 literal")
    }

    /// The link-local address `ip` reports for `dev`.
    fn link_local_of(ns: &TestNs, dev: &str) -> Ipv6Addr {
        let out = ns.ip(&format!("-6 -o addr show dev {dev} scope link"));
        let word = out
            .split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .expect("link-local address in ip output");
        v6(word.split('/').next().expect("address before prefix"))
    }

    fn dual_stack(ns: &TestNs) {
        ns.setup_if(
            "d0",
            &["192.0.2.2/24", "2001:db8::2/64 nodad"],
            &[
                "route add default via 192.0.2.1 dev d0",
                "-6 route add default via 2001:db8::1 dev d0",
            ],
        );
    }

    #[test]
    fn probe_dual_stack() {
        let ns = TestNs::new();
        dual_stack(&ns);
        ns.ip("link set d0 mtu 1400");
        let host = ns.probe(None, None).expect("probe");

        let f4 = host.v4.expect("IPv4 enabled");
        assert_eq!(f4.ifname, "d0");
        assert_eq!(f4.mtu, 1400);
        assert_eq!(
            f4.addrs,
            [HostAddr {
                addr: v4("192.0.2.2"),
                prefix_len: 24
            }]
        );
        assert_eq!(f4.gateway, Some(v4("192.0.2.1")));
        assert!(f4.routes.contains(&HostRoute {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: Some(v4("192.0.2.1")),
            metric: None,
        }));
        assert!(f4.routes.contains(&HostRoute {
            dst: v4("192.0.2.0"),
            prefix_len: 24,
            gateway: None,
            metric: None,
        }));

        let f6 = host.v6.expect("IPv6 enabled");
        assert_eq!(f6.ifname, "d0");
        assert_eq!(f6.ifindex, f4.ifindex);
        assert_eq!(
            f6.addrs,
            [HostAddr {
                addr: v6("2001:db8::2"),
                prefix_len: 64
            }]
        );
        assert_eq!(f6.gateway, Some(v6("2001:db8::1")));
        assert!(
            f6.routes
                .iter()
                .any(|r| r.prefix_len == 0 && r.gateway == Some(v6("2001:db8::1")))
        );
        assert!(
            f6.routes
                .iter()
                .any(|r| r.dst == v6("2001:db8::") && r.prefix_len == 64)
        );

        assert_eq!(host.v6_link_local, Some(link_local_of(&ns, "d0")));
        assert!(host.nameservers.is_empty() && host.search.is_empty());
    }

    #[test]
    fn probe_v4_only() {
        let ns = TestNs::new();
        ns.setup_if(
            "d0",
            &["192.0.2.2/24"],
            &["route add default via 192.0.2.1"],
        );
        let host = ns.probe(None, None).expect("probe");
        assert_eq!(
            host.v4.expect("IPv4 enabled").gateway,
            Some(v4("192.0.2.1"))
        );
        // d0 still has an IPv6 link-local address and route, but no global one.
        assert_eq!(host.v6, None);
    }

    #[test]
    fn probe_v6_only() {
        let ns = TestNs::new();
        ns.setup_if(
            "d0",
            &["2001:db8::2/64 nodad"],
            &["-6 route add default via 2001:db8::1"],
        );
        let host = ns.probe(None, None).expect("probe");
        assert_eq!(host.v4, None);
        let f6 = host.v6.expect("IPv6 enabled");
        assert_eq!(f6.gateway, Some(v6("2001:db8::1")));
        assert_eq!(host.v6_link_local, Some(link_local_of(&ns, "d0")));
    }

    #[test]
    fn probe_no_default_route_single_interface() {
        let ns = TestNs::new();
        ns.setup_if("d0", &["192.0.2.2/24"], &[]);
        // A second interface that is down has no routes, so d0 is the only one.
        ns.add_if("d1");
        ns.ip("addr add 198.51.100.2/24 dev d1");
        let f4 = ns
            .probe(None, None)
            .expect("probe")
            .v4
            .expect("IPv4 enabled");
        assert_eq!(f4.ifname, "d0");
        assert_eq!(f4.gateway, None);
        assert_eq!(
            f4.routes,
            [HostRoute {
                dst: v4("192.0.2.0"),
                prefix_len: 24,
                gateway: None,
                metric: None
            }]
        );

        // Once d1 is up it has routes too: no unique candidate, local mode.
        ns.ip("link set d1 up");
        assert_eq!(ns.probe(None, None).expect("probe").v4, None);
    }

    #[test]
    fn probe_named_interface() {
        let ns = TestNs::new();
        dual_stack(&ns);
        ns.setup_if("d1", &["198.51.100.2/24", "2001:db8:1::2/64 nodad"], &[]);
        let host = ns.probe(Some("d1"), Some("d1")).expect("probe");
        let f4 = host.v4.expect("IPv4 enabled");
        assert_eq!(f4.ifname, "d1");
        assert_eq!(
            f4.addrs,
            [HostAddr {
                addr: v4("198.51.100.2"),
                prefix_len: 24
            }]
        );
        assert_eq!(f4.gateway, None);
        let f6 = host.v6.expect("IPv6 enabled");
        assert_eq!(f6.ifname, "d1");
        assert_eq!(
            f6.addrs,
            [HostAddr {
                addr: v6("2001:db8:1::2"),
                prefix_len: 64
            }]
        );
        assert_eq!(host.v6_link_local, Some(link_local_of(&ns, "d1")));

        // Different interfaces per family, as with --outbound-if4/6.
        let host = ns.probe(Some("d1"), None).expect("probe");
        assert_eq!(host.v4.expect("IPv4").ifname, "d1");
        assert_eq!(host.v6.expect("IPv6").ifname, "d0");
    }

    #[test]
    fn probe_unknown_interface() {
        let ns = TestNs::new();
        dual_stack(&ns);
        let err = ns.probe(Some("nope0"), None).expect_err("must fail");
        assert_eq!(err.to_string(), "interface 'nope0' not found");
        let err = ns.probe(None, Some("nope1")).expect_err("must fail");
        assert_eq!(err.to_string(), "interface 'nope1' not found");
    }

    #[test]
    fn probe_multipath_default() {
        let ns = TestNs::new();
        ns.setup_if("d0", &["192.0.2.2/24"], &[]);
        ns.setup_if("d1", &["198.51.100.2/24"], &[]);
        ns.ip("route add default nexthop via 192.0.2.1 dev d0 weight 1 \
             nexthop via 198.51.100.1 dev d1 weight 3");
        let f4 = ns
            .probe(None, None)
            .expect("probe")
            .v4
            .expect("IPv4 enabled");
        assert_eq!(f4.ifname, "d1");
        assert_eq!(f4.gateway, Some(v4("198.51.100.1")));
    }

    #[test]
    fn setters() {
        let ns = TestNs::new();
        ns.add_if("d0");
        let host = ns.run_in(|| -> Result<HostInfo, NetlinkError> {
            let mut nl = Netlink::new()?;
            let idx = nl.link_index("d0")?;
            assert!(matches!(
                nl.link_index("nope"),
                Err(NetlinkError::NoSuchInterface(_))
            ));
            nl.set_mtu(idx, 1280)?;
            nl.set_link_up(idx)?;
            nl.add_addr(idx, v4("192.0.2.2").into(), 24, false)?;
            nl.add_addr(idx, v6("2001:db8::2").into(), 64, true)?;
            let err = nl
                .add_addr(idx, v4("192.0.2.2").into(), 24, false)
                .expect_err("duplicate");
            assert_eq!(err.errno(), Some(Errno::EEXIST));
            nl.add_route(
                idx,
                &HostRoute {
                    dst: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gateway: Some(v4("192.0.2.1")),
                    metric: None,
                },
            )?;
            nl.add_route(
                idx,
                &HostRoute {
                    dst: v4("203.0.113.0"),
                    prefix_len: 24,
                    gateway: None,
                    metric: Some(42),
                },
            )?;
            nl.add_route(
                idx,
                &HostRoute {
                    dst: Ipv6Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gateway: Some(v6("2001:db8::1")),
                    metric: Some(7),
                },
            )?;
            nl.probe(None, None)
        });
        let host = host.expect("setters and probe");

        let link = ns.ip("-o link show dev d0");
        assert!(link.contains("mtu 1280"), "{link}");
        assert!(link.contains(",UP"), "{link}");
        let addrs = ns.ip("-o addr show dev d0");
        assert!(addrs.contains("inet 192.0.2.2/24"), "{addrs}");
        assert!(addrs.contains("inet6 2001:db8::2/64"), "{addrs}");
        assert!(
            ns.ip("-o -6 addr show dev d0 to 2001:db8::2")
                .contains("nodad"),
            "IPv6 address without nodad flag"
        );
        let r4 = ns.ip("-4 route show");
        assert!(r4.contains("default via 192.0.2.1 dev d0"), "{r4}");
        assert!(
            r4.contains("203.0.113.0/24 dev d0 scope link metric 42"),
            "{r4}"
        );
        let r6 = ns.ip("-6 route show");
        assert!(
            r6.contains("default via 2001:db8::1 dev d0 metric 7"),
            "{r6}"
        );

        // And our own probe reads back what we wrote.
        let f4 = host.v4.expect("IPv4 enabled");
        assert_eq!(f4.mtu, 1280);
        assert_eq!(f4.gateway, Some(v4("192.0.2.1")));
        assert!(f4.routes.contains(&HostRoute {
            dst: v4("203.0.113.0"),
            prefix_len: 24,
            gateway: None,
            metric: Some(42)
        }));
        let f6 = host.v6.expect("IPv6 enabled");
        assert_eq!(f6.gateway, Some(v6("2001:db8::1")));
        assert!(
            f6.routes
                .iter()
                .any(|r| r.prefix_len == 0 && r.metric == Some(7))
        );
    }
}
