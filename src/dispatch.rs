//! Dispatch: walk a batch of guest frames, route each by EtherType and
//! protocol to its handler, and queue the replies.
//!
//! Guest input is hostile. Nothing here returns an error for bad input: a
//! frame that cannot be parsed is dropped and counted by `DropReason`, and
//! the next frame is looked at as if nothing happened.

use crate::conf::Config;
use crate::event::EventLoop;
use crate::flow::{Flow, Flows, Kind, SideRef};
use crate::fwd::{self, listen::Listener};
use crate::icmp::{self, IcmpDrop, Pings};
use crate::l2::{self, dhcp, dhcpv6, ndp};
use crate::tap::vnet::{Gso, RxCsum, RxOffload, VnetError};
use crate::tap::{BATCH_MAX, Batch, MAX_FRAME, TxQueue};
use crate::tcp::{self, Taken, Tcp, TcpDrop};
use crate::udp::{self, Udp, UdpDrop};
use crate::wire::arp::ArpRepr;
use crate::wire::ethernet::{self, Frame};
use crate::wire::{
    EtherType, IpProtocol, Mac, compose, ipv4, ipv6, tcp as wire_tcp, udp as wire_udp,
};
use nix::sys::epoll::EpollFlags;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

/// Why a guest frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// ARP we could not parse.
    MalformedArp,
    /// An EtherType we don't handle (LLDP, VLAN tags, ...).
    UnknownEtherType,
    /// IPv4/IPv6 traffic for which no handler exists in this build.
    Unhandled,
    /// Traffic of an IP version that is disabled.
    FamilyDisabled,
    /// An IPv4 or IPv6 header that fails validation (lengths, checksum).
    MalformedIp,
    /// A UDP header that fails validation (length, checksum).
    MalformedUdp,
    /// IP fragments: nothing we answer ourselves is ever fragmented.
    Fragment,
    /// A DHCP message we can't or won't answer.
    Dhcp,
    /// An NDP message that fails RFC 4861 validation.
    Ndp,
    /// A DHCPv6 message we can't or won't answer.
    Dhcpv6,
    /// An ICMP/ICMPv6 message we don't forward (malformed, not an echo
    /// request, `--no-icmp`).
    Icmp,
    /// An echo request the host wouldn't send (ping socket refused).
    IcmpHost,
    /// A destination no host socket may reach for the guest (loopback,
    /// IPv4-mapped, broadcast, ...: `fwd::outbound`), any protocol.
    Destination,
    /// A datagram the host wouldn't send (`--no-udp`, socket refused).
    Udp,
    /// A TCP header that fails validation (lengths, checksum).
    MalformedTcp,
    /// A TCP segment we don't translate (`--no-tcp`, socket refused).
    Tcp,
    /// A new flow with no room: no room for TCP and every connection
    /// established (the SYN got an RST), or no flow to evict.
    FlowLimit,
    /// A virtio-net header (pasta's tap) that makes no sense, by itself or
    /// for its frame: segmentation of another protocol, a checksum
    /// elsewhere than the L4 header's.
    VnetHeader,
}

impl DropReason {
    /// Every reason, in counter order.
    const ALL: [DropReason; 19] = [
        DropReason::Runt,
        DropReason::MalformedArp,
        DropReason::UnknownEtherType,
        DropReason::Unhandled,
        DropReason::FamilyDisabled,
        DropReason::MalformedIp,
        DropReason::MalformedUdp,
        DropReason::Fragment,
        DropReason::Dhcp,
        DropReason::Ndp,
        DropReason::Dhcpv6,
        DropReason::Icmp,
        DropReason::IcmpHost,
        DropReason::Udp,
        DropReason::MalformedTcp,
        DropReason::Tcp,
        DropReason::Destination,
        DropReason::FlowLimit,
        DropReason::VnetHeader,
    ];
    /// Number of variants, for the counter array.
    const COUNT: usize = Self::ALL.len();

    fn index(self) -> usize {
        match self {
            DropReason::Runt => 0,
            DropReason::MalformedArp => 1,
            DropReason::UnknownEtherType => 2,
            DropReason::Unhandled => 3,
            DropReason::FamilyDisabled => 4,
            DropReason::MalformedIp => 5,
            DropReason::MalformedUdp => 6,
            DropReason::Fragment => 7,
            DropReason::Dhcp => 8,
            DropReason::Ndp => 9,
            DropReason::Dhcpv6 => 10,
            DropReason::Icmp => 11,
            DropReason::IcmpHost => 12,
            DropReason::Udp => 13,
            DropReason::MalformedTcp => 14,
            DropReason::Tcp => 15,
            DropReason::Destination => 16,
            DropReason::FlowLimit => 17,
            DropReason::VnetHeader => 18,
        }
    }

    fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Runt => "runt frame",
            DropReason::MalformedArp => "malformed ARP",
            DropReason::UnknownEtherType => "unknown EtherType",
            DropReason::Unhandled => "no handler",
            DropReason::FamilyDisabled => "IP version disabled",
            DropReason::MalformedIp => "malformed IP header",
            DropReason::MalformedUdp => "malformed UDP header",
            DropReason::Fragment => "IP fragment",
            DropReason::Dhcp => "DHCP",
            DropReason::Ndp => "NDP",
            DropReason::Dhcpv6 => "DHCPv6",
            DropReason::Icmp => "ICMP",
            DropReason::IcmpHost => "ICMP (host refused)",
            DropReason::Udp => "UDP",
            DropReason::MalformedTcp => "malformed TCP",
            DropReason::Tcp => "TCP",
            DropReason::Destination => "destination refused",
            DropReason::FlowLimit => "flow limit",
            DropReason::VnetHeader => "bad virtio-net header",
        })
    }
}

/// Counters of dropped guest frames, by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl DropCounters {
    /// Count one drop.
    pub fn bump(&mut self, r: DropReason) {
        self.0[r.index()] += 1;
    }

    /// How many frames were dropped for `r`.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    /// Total drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl fmt::Display for DropCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (i, n) in self.0.iter().enumerate() {
            if let (Some(r), true) = (DropReason::from_index(i), *n > 0) {
                write!(f, "{}{r}: {n}", if first { "" } else { ", " })?;
                first = false;
            }
        }
        Ok(())
    }
}

/// What we have learnt about the guest from its own frames.
#[derive(Debug, Default, Clone)]
pub struct GuestState {
    /// The guest's MAC, once it sent a frame from a unicast address.
    pub mac: Option<Mac>,
    /// The IPv4 address the guest last used as ARP sender.
    pub addr4_seen: Option<Ipv4Addr>,
    /// The addresses it sends IP from: where inbound flows go.
    pub addrs: fwd::GuestAddrs,
}

/// Most passes over the TCP segments a batch delivered past a gap.
const REORDER_PASSES: usize = 4;

/// Routes guest frames to protocol handlers.
pub struct Dispatch<'c> {
    conf: &'c Config,
    /// What the guest told us about itself.
    pub guest: GuestState,
    /// Frames dropped, by reason.
    pub drops: DropCounters,
    pings: Pings,
    udp: Udp,
    tcp: Tcp,
    next_ra: Option<Instant>,
    /// Frames of this batch held back: TCP segments past a gap.
    held: Vec<usize>,
    /// Whether TCP holds segments past a gap in this pass.
    hold_ahead: bool,
    /// The frame just handled was held back.
    held_last: bool,
    /// What the virtio-net header of the frame being handled said.
    rx: RxOffload,
}

impl<'c> Dispatch<'c> {
    /// A dispatcher for this configuration, whose flows go in `flows`.
    pub fn new(conf: &'c Config, flows: &Flows) -> Self {
        Dispatch {
            conf,
            guest: GuestState::default(),
            drops: DropCounters::default(),
            pings: Pings::new(flows),
            udp: Udp::new(flows),
            tcp: Tcp::new(flows),
            next_ra: None,
            held: Vec::with_capacity(BATCH_MAX),
            hold_ahead: false,
            held_last: false,
            rx: RxOffload::default(),
        }
    }

    /// Handle every frame of `batch` (ranges into `buf`), queueing replies on `tx`.
    pub fn handle_batch(
        &mut self,
        buf: &[u8],
        batch: &Batch,
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
    ) {
        if tx.capturing() {
            tx.capture_rx(batch.frames(buf));
        }
        let now = Instant::now();
        // TCP segments that arrive past a gap are held back and offered
        // again once the rest of the batch went through: a guest's frames
        // swapped on the way (or sent out of order) then still go in
        // order, where dropping them would cost the guest a retransmission
        // and teach its stack that this path reorders.
        let mut held = std::mem::take(&mut self.held);
        held.clear();
        self.hold_ahead = true;
        self.udp.begin_batch(buf);
        self.tcp.begin_batch(buf, batch.len());
        for i in 0..batch.len() {
            if let Some(frame) = batch.frame(buf, i)
                && self.frame(frame, buf, batch.meta(i), tx, ev, flows, now)
            {
                held.push(i);
            }
            if self.udp.batch_full() {
                self.flush_udp(buf, flows);
            }
        }
        // Datagrams go before held TCP segments are looked at again: only
        // UDP's own order matters, and the passes below may send.
        self.flush_udp(buf, flows);
        self.udp.end_batch();
        // Each pass takes what the previous one filled the gap for; the
        // last one lets TCP answer what is still ahead (a duplicate ACK).
        for pass in 0..=REORDER_PASSES {
            if held.is_empty() {
                break;
            }
            self.hold_ahead = pass < REORDER_PASSES;
            let before = held.len();
            let mut kept = 0;
            for j in 0..held.len() {
                let i = held[j];
                if let Some(frame) = batch.frame(buf, i)
                    && self.frame(frame, buf, batch.meta(i), tx, ev, flows, now)
                {
                    held[kept] = i;
                    kept += 1;
                }
            }
            held.truncate(kept);
            if kept == before {
                // No progress: one last pass without holding.
                self.hold_ahead = false;
                for &i in &held {
                    if let Some(frame) = batch.frame(buf, i) {
                        self.frame(frame, buf, batch.meta(i), tx, ev, flows, now);
                    }
                }
                break;
            }
        }
        self.hold_ahead = false;
        self.held = held;
        let link = self.link();
        self.tcp.end_batch(flows, buf, link, ev, tx);
    }

    /// Send the guest's datagrams waiting from this batch, counting drops.
    fn flush_udp(&mut self, buf: &[u8], flows: &Flows) {
        let drops = &mut self.drops;
        self.udp.flush(buf, flows, |e| drops.bump(udp_reason(e)));
    }

    /// Handle one frame, with what its virtio-net header said, counting a
    /// drop; true if TCP held it back.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        frame: &[u8],
        buf: &[u8],
        meta: Result<RxOffload, VnetError>,
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
        now: Instant,
    ) -> bool {
        self.held_last = false;
        let handled = match meta {
            Ok(rx) => {
                self.rx = rx;
                self.handle_frame(frame, buf, tx, ev, flows, now)
            }
            Err(e) => {
                log::debug!("virtio-net header: {e}");
                Err(DropReason::VnetHeader)
            }
        };
        if let Err(r) = handled {
            self.drops.bump(r);
            log::trace!("dropped guest frame ({r}), {} bytes", frame.len());
        }
        self.held_last
    }

    /// Time-driven work: unsolicited router advertisements (RFC 4861
    /// 6.2.4), the first one as soon as a guest appears, and the flows
    /// whose timers are due. Returns when the next advertisement is due;
    /// flows' deadlines are in `flows` (`Flows::next_deadline`).
    pub fn periodic(
        &mut self,
        now: Instant,
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
    ) -> Option<Instant> {
        let s = &self.conf.services;
        if self.conf.ip6.is_some() && s.ndp && s.ra {
            if self.next_ra.is_none_or(|t| t <= now) {
                tx.push_with(MAX_FRAME, |out| ndp::unsolicited_ra(self.conf, out));
                self.next_ra = Some(now + ndp::RA_INTERVAL);
            }
        } else {
            self.next_ra = None;
        }
        // Only flows whose timer is due come up; each handler schedules
        // its flow's next deadline, never at or before `now`.
        let link = self.link();
        while let Some(r) = flows.pop_due(now) {
            match flows.get(r).map(Flow::kind) {
                Some(Kind::Tcp) => self.tcp.timer(flows, r, now, link, ev, tx),
                Some(Kind::Udp) => self.udp.expire(flows, ev, r, now),
                Some(Kind::Ping) => self.pings.expire(flows, ev, r, now),
                Some(Kind::Splice) => tcp::spliced::timer(flows, ev, r, now),
                Some(Kind::UdpSplice) => {
                    udp::spliced::expire(flows, ev, r, self.udp.idle(), now);
                }
                None => {}
            }
        }
        self.next_ra
    }

    /// A guest appeared: it gets a router advertisement right away.
    pub fn guest_attached(&mut self) {
        self.next_ra = None;
    }

    /// The guest went away: its flows go with it.
    pub fn guest_left(&mut self, ev: &EventLoop, flows: &mut Flows) {
        flows.drain(|f| match f {
            Flow::Tcp(c) => tcp::close(c, ev),
            Flow::Udp(u) => udp::close(u, ev),
            Flow::Ping(p) => icmp::close(p, ev),
            Flow::Splice(s) => tcp::spliced::close(s),
            Flow::UdpSplice(u) => udp::spliced::close(u, ev),
        });
        self.tcp.clear();
        self.udp.clear();
        self.pings.clear();
    }

    /// Events on the socket of TCP connection `r`.
    pub fn tcp_event(
        &mut self,
        flows: &mut Flows,
        r: SideRef,
        events: EpollFlags,
        tx: &mut TxQueue,
        ev: &EventLoop,
    ) {
        let link = self.link();
        self.tcp.event(flows, r, events, link, ev, tx);
    }

    /// Connections waiting on forwarded TCP port `l`.
    pub fn tcp_accept(
        &mut self,
        l: &Listener,
        splicer: Option<&tcp::spliced::Splicer>,
        flows: &mut Flows,
        tx: &mut TxQueue,
        ev: &EventLoop,
    ) {
        let link = self.link();
        let r = self.tcp.accept(
            self.conf,
            &self.guest.addrs,
            l,
            splicer,
            ev,
            flows,
            link,
            tx,
            Instant::now(),
        );
        if let Err(e) = r {
            log::debug!("TCP port {}: {e}", l.bound);
            self.drops.bump(tcp_reason(e));
        }
    }

    /// Datagrams on forwarded UDP port `l`.
    pub fn udp_forwarded(
        &mut self,
        l: &Listener,
        flows: &mut Flows,
        splicer: Option<&crate::tcp::spliced::Splicer>,
        tx: &mut TxQueue,
        ev: &EventLoop,
    ) {
        let link = self.link();
        let drops = &mut self.drops;
        self.udp.forwarded(
            self.conf,
            &self.guest.addrs,
            l,
            ev,
            flows,
            splicer,
            link,
            tx,
            Instant::now(),
            |e| drops.bump(udp_reason(e)),
        );
    }

    /// How long a UDP flow lives without traffic.
    pub fn udp_idle(&self) -> std::time::Duration {
        self.udp.idle()
    }

    /// Link-layer addresses of frames towards the guest.
    fn link(&self) -> compose::Link {
        compose::Link {
            src: Mac(self.conf.our_mac),
            dst: self.guest.mac.unwrap_or(Mac::BROADCAST),
        }
    }

    /// Events on the socket of UDP flow `r`.
    pub fn udp_event(
        &mut self,
        flows: &mut Flows,
        r: SideRef,
        events: EpollFlags,
        tx: &mut TxQueue,
        ev: &EventLoop,
    ) {
        let mac = self.guest.mac.unwrap_or(Mac::BROADCAST);
        self.udp
            .event(flows, r, events, self.conf, mac, tx, ev, Instant::now());
    }

    /// Events on the socket of echo flow `r`.
    pub fn ping_event(
        &mut self,
        flows: &mut Flows,
        r: SideRef,
        events: EpollFlags,
        tx: &mut TxQueue,
        ev: &EventLoop,
    ) {
        let mac = self.guest.mac.unwrap_or(Mac::BROADCAST);
        self.pings.event(flows, r, events, self.conf, mac, tx, ev);
    }

    /// The queue towards the guest drained (`TxQueue::drained`): sockets
    /// and connections paused while it was full go on. Cheap when none
    /// is.
    pub fn tap_drained(&mut self, ev: &EventLoop, tx: &mut TxQueue, flows: &mut Flows) {
        self.udp.resume(flows, ev);
        self.pings.resume(flows, ev);
        let link = self.link();
        self.tcp.tap_drained(flows, link, ev, tx);
    }

    fn handle_frame(
        &mut self,
        bytes: &[u8],
        buf: &[u8],
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
        now: Instant,
    ) -> Result<(), DropReason> {
        let frame = Frame::new_checked(bytes).map_err(|_| DropReason::Runt)?;
        let src = frame.src();
        if src.is_unicast() && self.guest.mac != Some(src) {
            log::debug!("guest MAC address: {src}");
            self.guest.mac = Some(src);
        }
        match frame.ethertype() {
            EtherType::Arp => self.handle_arp(src, frame.payload(), tx),
            EtherType::Ipv4 if self.conf.ip4.is_none() => Err(DropReason::FamilyDisabled),
            EtherType::Ipv6 if self.conf.ip6.is_none() => Err(DropReason::FamilyDisabled),
            EtherType::Ipv4 => self.handle_ipv4(src, frame.payload(), buf, tx, ev, flows, now),
            EtherType::Ipv6 => self.handle_ipv6(src, frame.payload(), buf, tx, ev, flows, now),
            EtherType::Unknown(_) => Err(DropReason::UnknownEtherType),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_ipv4(
        &mut self,
        src: Mac,
        payload: &[u8],
        buf: &[u8],
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
        now: Instant,
    ) -> Result<(), DropReason> {
        let pkt = ipv4::Packet::new_checked(payload).map_err(|_| DropReason::MalformedIp)?;
        let ip = ipv4::Ipv4Repr::parse(&pkt).map_err(|_| DropReason::MalformedIp)?;
        if pkt.is_fragment() {
            return Err(DropReason::Fragment);
        }
        if self.guest.addrs.v4 != Some(ip.src) {
            self.guest.addrs.saw(IpAddr::V4(ip.src));
        }
        // A super-segment can only be the TCP of its own family, or UDP.
        if !gso_fits(self.rx.gso, Gso::Tcp4, ip.protocol) {
            return Err(DropReason::VnetHeader);
        }
        let l4_off = ethernet::HEADER_LEN + pkt.header_len();
        match ip.protocol {
            IpProtocol::Udp => self.handle_udp(
                src,
                IpAddr::V4(ip.src),
                IpAddr::V4(ip.dst),
                pkt.payload(),
                l4_off,
                buf,
                tx,
                ev,
                flows,
                now,
            ),
            IpProtocol::Icmp => self
                .pings
                .request(
                    self.conf,
                    ev,
                    flows,
                    IpAddr::V4(ip.src),
                    IpAddr::V4(ip.dst),
                    pkt.payload(),
                    now,
                )
                .map_err(icmp_reason),
            IpProtocol::Tcp => self.handle_tcp(
                IpAddr::V4(ip.src),
                IpAddr::V4(ip.dst),
                pkt.payload(),
                l4_off,
                buf,
                tx,
                ev,
                flows,
                now,
            ),
            _ => Err(DropReason::Unhandled),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_ipv6(
        &mut self,
        src: Mac,
        payload: &[u8],
        buf: &[u8],
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
        now: Instant,
    ) -> Result<(), DropReason> {
        let pkt = ipv6::Packet::new_checked(payload).map_err(|_| DropReason::MalformedIp)?;
        let ip = ipv6::Ipv6Repr::parse(&pkt).map_err(|_| DropReason::MalformedIp)?;
        self.guest.addrs.saw(IpAddr::V6(ip.src));
        // A real fragment or a broken chain of extension headers ends here.
        let (proto, l4) = pkt.upper_layer().ok_or(DropReason::Fragment)?;
        if !gso_fits(self.rx.gso, Gso::Tcp6, proto) {
            return Err(DropReason::VnetHeader);
        }
        // `l4` runs to the end of the payload, after the extension headers.
        let l4_off = ethernet::HEADER_LEN + ipv6::HEADER_LEN + (pkt.payload().len() - l4.len());
        let conf = self.conf;
        match proto {
            IpProtocol::Icmpv6 => match l4.first() {
                // Router Solicitation .. Redirect (RFC 4861 4).
                Some(133..=137) => reply_with(tx, |out| ndp::reply(conf, src, &ip, l4, out))
                    .map_err(|e| {
                        log::debug!("NDP: dropped ({e})");
                        DropReason::Ndp
                    }),
                Some(128) => self
                    .pings
                    .request(
                        conf,
                        ev,
                        flows,
                        IpAddr::V6(ip.src),
                        IpAddr::V6(ip.dst),
                        l4,
                        now,
                    )
                    .map_err(icmp_reason),
                _ => Err(DropReason::Icmp),
            },
            IpProtocol::Udp => self.handle_udp(
                src,
                IpAddr::V6(ip.src),
                IpAddr::V6(ip.dst),
                l4,
                l4_off,
                buf,
                tx,
                ev,
                flows,
                now,
            ),
            IpProtocol::Tcp => self.handle_tcp(
                IpAddr::V6(ip.src),
                IpAddr::V6(ip.dst),
                l4,
                l4_off,
                buf,
                tx,
                ev,
                flows,
                now,
            ),
            _ => Err(DropReason::Unhandled),
        }
    }

    /// UDP of either IP version: our DHCP and DHCPv6 servers first,
    /// everything else to the host.
    #[allow(clippy::too_many_arguments)]
    fn handle_udp(
        &mut self,
        src: Mac,
        from: IpAddr,
        to: IpAddr,
        l4: &[u8],
        l4_off: usize,
        buf: &[u8],
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
        now: Instant,
    ) -> Result<(), DropReason> {
        let u = wire_udp::Packet::new_checked(l4).map_err(|_| DropReason::MalformedUdp)?;
        if !self.csum_trusted(l4_off, wire_udp::CHECKSUM_OFFSET)? && !u.verify_checksum(from, to) {
            return Err(DropReason::MalformedUdp);
        }
        let conf = self.conf;
        if self.rx.gso == Gso::Udp {
            // A run of datagrams of one size (a sender's `UDP_SEGMENT`,
            // which the tap passes on whole where the kernel splits what we
            // write): each goes as it was sent, queued in order like any
            // other (and, being of one size, leaves in one segmented send).
            // `parse` refused a size of 0; DHCP never comes this way, nor
            // a run of nothing (only a hand-made header says so).
            let seg = usize::from(self.rx.gso_size);
            if seg == 0
                || u.payload().is_empty()
                || u.payload().len().div_ceil(seg) > MAX_GUEST_RUN
                || matches!(u.dst_port(), dhcp::SERVER_PORT | dhcpv6::SERVER_PORT)
            {
                return Err(DropReason::VnetHeader);
            }
            let guest = SocketAddr::new(from, u.src_port());
            let remote = SocketAddr::new(to, u.dst_port());
            for datagram in u.payload().chunks(seg) {
                if self.udp.batch_full() {
                    self.flush_udp(buf, flows);
                }
                self.udp
                    .request(conf, ev, flows, guest, remote, datagram, now)
                    .map_err(udp_reason)?;
            }
            return Ok(());
        }
        match (from, u.dst_port()) {
            (IpAddr::V4(_), dhcp::SERVER_PORT) => {
                reply_with(tx, |out| dhcp::reply(conf, src, u.payload(), out)).map_err(|e| {
                    log::debug!("DHCP: dropped ({e})");
                    DropReason::Dhcp
                })
            }
            (IpAddr::V6(from6), dhcpv6::SERVER_PORT) => {
                reply_with(tx, |out| dhcpv6::reply(conf, src, from6, u.payload(), out)).map_err(
                    |e| {
                        log::debug!("DHCPv6: dropped ({e})");
                        DropReason::Dhcpv6
                    },
                )
            }
            (_, port) => {
                let guest = SocketAddr::new(from, u.src_port());
                let remote = SocketAddr::new(to, port);
                self.udp
                    .request(conf, ev, flows, guest, remote, u.payload(), now)
                    .map_err(udp_reason)
            }
        }
    }

    /// TCP of either IP version.
    #[allow(clippy::too_many_arguments)]
    fn handle_tcp(
        &mut self,
        from: IpAddr,
        to: IpAddr,
        l4: &[u8],
        l4_off: usize,
        buf: &[u8],
        tx: &mut TxQueue,
        ev: &EventLoop,
        flows: &mut Flows,
        now: Instant,
    ) -> Result<(), DropReason> {
        let t = wire_tcp::Packet::new_checked(l4).map_err(|_| DropReason::MalformedTcp)?;
        // Only to check where a partial checksum sits: the guest's TCP
        // checksums are never verified ("The guest's TCP checksums",
        // ARCHITECTURE.md).
        self.csum_trusted(l4_off, wire_tcp::CHECKSUM_OFFSET)?;
        let guest = SocketAddr::new(from, t.src_port());
        let remote = SocketAddr::new(to, t.dst_port());
        let link = self.link();
        let taken = self
            .tcp
            .segment(
                self.conf,
                ev,
                flows,
                link,
                guest,
                remote,
                l4,
                buf,
                self.hold_ahead,
                tx,
                now,
            )
            .map_err(tcp_reason)?;
        self.held_last |= taken == Taken::Ahead;
        Ok(())
    }

    /// Whether the kernel vouched for the L4 checksum of the frame being
    /// handled, whose L4 header starts `l4_off` bytes in and has its
    /// checksum `field` bytes further: verified already, or partial (the
    /// sender's own stack left it to offload; there is nothing to verify).
    ///
    /// # Errors
    /// A partial checksum anywhere else: the header lies about the frame.
    fn csum_trusted(&self, l4_off: usize, field: usize) -> Result<bool, DropReason> {
        match self.rx.csum {
            RxCsum::Verify => Ok(false),
            RxCsum::Valid => Ok(true),
            RxCsum::Partial { start, offset }
                if usize::from(start) == l4_off && usize::from(offset) == field =>
            {
                Ok(true)
            }
            RxCsum::Partial { .. } => Err(DropReason::VnetHeader),
        }
    }

    fn handle_arp(&mut self, src: Mac, payload: &[u8], tx: &mut TxQueue) -> Result<(), DropReason> {
        let Some(ip4) = self.conf.ip4.as_ref() else {
            return Err(DropReason::FamilyDisabled);
        };
        let req = ArpRepr::parse(payload).map_err(|_| DropReason::MalformedArp)?;
        if !req.sender_ip.is_unspecified() && req.sender_mac == src {
            self.guest.addr4_seen = Some(req.sender_ip);
        }
        let ours = Mac(self.conf.our_mac);
        // A guest may configure an address other than the one we assign:
        // both are its own, never ours to claim.
        let seen = self.guest.addr4_seen.unwrap_or(ip4.addr);
        if let Some(rep) = l2::arp::reply(&req, &[ip4.addr, seen], ours) {
            let len = ethernet::HEADER_LEN + rep.buffer_len();
            tx.push_with(len, |b| {
                let mut f = Frame::new_unchecked(&mut b[..len]);
                f.set_header(req.sender_mac, ours, EtherType::Arp);
                rep.emit(f.payload_mut());
                len
            });
        }
        Ok(())
    }
}

/// Count a datagram that didn't go out.
fn udp_reason(e: UdpDrop) -> DropReason {
    log::debug!("UDP: dropped ({e})");
    match e {
        UdpDrop::Destination(_) => DropReason::Destination,
        UdpDrop::TableFull => DropReason::FlowLimit,
        UdpDrop::Disabled | UdpDrop::Socket(_) => DropReason::Udp,
    }
}

/// Count a TCP segment that wasn't translated.
fn tcp_reason(e: TcpDrop) -> DropReason {
    log::debug!("TCP: dropped ({e})");
    match e {
        TcpDrop::Malformed => DropReason::MalformedTcp,
        TcpDrop::Destination(_) => DropReason::Destination,
        TcpDrop::TableFull => DropReason::FlowLimit,
        TcpDrop::Disabled | TcpDrop::Socket(_) => DropReason::Tcp,
    }
}

/// Count an echo request that didn't go out under the right reason.
fn icmp_reason(e: IcmpDrop) -> DropReason {
    log::debug!("ICMP: dropped ({e})");
    match e {
        IcmpDrop::Malformed | IcmpDrop::NotEcho | IcmpDrop::Disabled => DropReason::Icmp,
        IcmpDrop::Destination(_) => DropReason::Destination,
        IcmpDrop::TableFull => DropReason::FlowLimit,
        IcmpDrop::Socket(_) => DropReason::IcmpHost,
    }
}

/// Let a handler build its reply straight into the queue; its error, if
/// any, comes back (and nothing is queued).
fn reply_with<E>(
    tx: &mut TxQueue,
    handler: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<(), E> {
    let mut result = Ok(());
    tx.push_with(MAX_FRAME, |out| match handler(out) {
        Ok(n) => n,
        Err(e) => {
            result = Err(e);
            0
        }
    });
    result
}

/// Most datagrams one UDP run from the guest may hold: what the kernel
/// lets a segmented send make (`UDP_MAX_SEGMENTS`, 64, or 128 in later
/// releases). A header claiming more, which only a hand-made frame can
/// (a packet socket's own virtio-net header), is dropped rather than
/// turned into thousands of sends.
const MAX_GUEST_RUN: usize = 128;

/// Whether a frame with segmentation `gso` may carry `proto` in a packet
/// of the family whose TCP super-segments are `tcp`: none at all, TCP of
/// that family, or UDP of either.
fn gso_fits(gso: Gso, tcp: Gso, proto: IpProtocol) -> bool {
    match gso {
        Gso::None => true,
        Gso::Udp => proto == IpProtocol::Udp,
        g => g == tcp && proto == IpProtocol::Tcp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::arp::Operation;

    /// IPv4 only: guest 192.0.2.2/24 behind gateway 192.0.2.1.
    pub(crate) fn test_config() -> Config {
        let mut c = Config::example();
        c.ip6 = None;
        if let Some(ip4) = c.ip4.as_mut() {
            ip4.addr = Ipv4Addr::new(192, 0, 2, 2);
            ip4.gateway = Ipv4Addr::new(192, 0, 2, 1);
        }
        c
    }

    const GUEST_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);

    fn arp_request_frame(target: Ipv4Addr) -> Vec<u8> {
        arp_frame(Ipv4Addr::new(192, 0, 2, 2), target)
    }

    /// A broadcast ARP request from the guest's MAC.
    fn arp_frame(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let mut b = vec![0u8; 42];
        let mut f = Frame::new_unchecked(&mut b[..]);
        f.set_header(Mac::BROADCAST, GUEST_MAC, EtherType::Arp);
        ArpRepr {
            operation: Operation::Request,
            sender_mac: GUEST_MAC,
            sender_ip: sender,
            target_mac: Mac::ZERO,
            target_ip: target,
        }
        .emit(f.payload_mut());
        b
    }

    fn run<'c>(conf: &'c Config, frames: &[Vec<u8>]) -> (Dispatch<'c>, Vec<Vec<u8>>) {
        let mut rx = crate::tap::stream::StreamRx::with_capacity(0);
        for f in frames {
            rx.feed(&(f.len() as u32).to_be_bytes());
            rx.feed(f);
        }
        let mut batch = Batch::default();
        rx.frames(&mut batch).unwrap();
        let mut tx = TxQueue::new(0, None);
        let mut flows = Flows::new(64);
        let mut d = Dispatch::new(conf, &flows);
        let ev = EventLoop::new().unwrap();
        d.handle_batch(rx.buf(), &batch, &mut tx, &ev, &mut flows);
        let mut out_rx = crate::tap::stream::StreamRx::with_capacity(0);
        out_rx.feed(tx.pending());
        out_rx.frames(&mut batch).unwrap();
        let out = batch.frames(out_rx.buf()).map(|f| f.to_vec()).collect();
        (d, out)
    }

    #[test]
    fn arp_for_gateway_is_answered_with_our_mac() {
        let conf = test_config();
        let (d, out) = run(&conf, &[arp_request_frame(Ipv4Addr::new(192, 0, 2, 1))]);
        assert_eq!(out.len(), 1);
        let f = Frame::new_checked(&out[0][..]).unwrap();
        assert_eq!(f.dst(), GUEST_MAC);
        assert_eq!(f.src(), Mac(conf.our_mac));
        let rep = ArpRepr::parse(f.payload()).unwrap();
        assert_eq!(rep.operation, Operation::Reply);
        assert_eq!(rep.sender_ip, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(d.guest.mac, Some(GUEST_MAC));
    }

    #[test]
    fn probe_for_gateway_is_answered_to_zero_address() {
        let conf = test_config();
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let (_, out) = run(&conf, &[arp_frame(Ipv4Addr::UNSPECIFIED, gw)]);
        assert_eq!(out.len(), 1, "the gateway's address is taken");
        let f = Frame::new_checked(&out[0][..]).unwrap();
        assert_eq!(f.dst(), GUEST_MAC, "unicast to the prober, as Linux");
        let rep = ArpRepr::parse(f.payload()).unwrap();
        assert_eq!(rep.operation, Operation::Reply);
        assert_eq!((rep.sender_mac, rep.sender_ip), (Mac(conf.our_mac), gw));
        assert_eq!(
            (rep.target_mac, rep.target_ip),
            (GUEST_MAC, Ipv4Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn guests_own_addresses_stay_free() {
        let conf = test_config();
        let configured = Ipv4Addr::new(192, 0, 2, 2);
        let used = Ipv4Addr::new(192, 0, 2, 77);
        let zero = Ipv4Addr::UNSPECIFIED;
        // The guest probes the configured address, then picks another one
        // of its own: it announces it (gratuitous ARP) and probes it again,
        // as on a link flap. None of that may be answered.
        let (d, out) = run(
            &conf,
            &[
                arp_frame(zero, configured),
                arp_frame(used, used),
                arp_frame(zero, used),
                arp_frame(used, configured),
            ],
        );
        assert!(out.is_empty(), "{} replies", out.len());
        assert_eq!(d.guest.addr4_seen, Some(used));
        assert_eq!(d.drops.total(), 0);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let conf = test_config();
        let mut bad_arp = arp_request_frame(Ipv4Addr::new(192, 0, 2, 1));
        bad_arp.truncate(30);
        let mut lldp = arp_request_frame(Ipv4Addr::new(192, 0, 2, 1));
        lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
        let frames = vec![
            vec![1, 2, 3],
            bad_arp,
            lldp,
            arp_request_frame(Ipv4Addr::new(192, 0, 2, 1)),
        ];
        let (d, out) = run(&conf, &frames);
        assert_eq!(
            out.len(),
            1,
            "the good frame after the bad ones is answered"
        );
        assert_eq!(d.drops.get(DropReason::Runt), 1);
        assert_eq!(d.drops.get(DropReason::MalformedArp), 1);
        assert_eq!(d.drops.get(DropReason::UnknownEtherType), 1);
        assert_eq!(d.drops.total(), 3);
        assert_eq!(
            d.drops.to_string(),
            "runt frame: 1, malformed ARP: 1, unknown EtherType: 1"
        );
    }

    /// Dispatch `frames`, each with what its virtio-net header said.
    fn run_vnet(conf: &Config, frames: &[(Vec<u8>, Result<RxOffload, VnetError>)]) -> DropCounters {
        let mut buf = Vec::new();
        let mut batch = Batch::default();
        for (f, meta) in frames {
            batch.push_meta(buf.len()..buf.len() + f.len(), *meta);
            buf.extend_from_slice(f);
        }
        let mut tx = TxQueue::new(0, None);
        let mut flows = Flows::new(64);
        let mut d = Dispatch::new(conf, &flows);
        let ev = EventLoop::new().unwrap();
        d.handle_batch(&buf, &batch, &mut tx, &ev, &mut flows);
        d.drops
    }

    #[test]
    fn vnet_headers_are_checked_against_their_frame() {
        let conf = test_config();
        let link = compose::Link {
            src: GUEST_MAC,
            dst: Mac(conf.our_mac),
        };
        let (g, gw) = (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 1));
        // A DHCP request of nonsense with a wrong checksum: only a frame
        // whose checksum is trusted gets as far as the DHCP server.
        let mut udp = vec![0u8; 100];
        let n = compose::udp4(
            &mut udp,
            link,
            std::net::SocketAddrV4::new(g, 68),
            std::net::SocketAddrV4::new(gw, dhcp::SERVER_PORT),
            |p| {
                p[..4].fill(0xee);
                Some(4)
            },
        );
        udp.truncate(n);
        udp[40] ^= 0x55;
        let partial = |start, offset| RxOffload {
            csum: RxCsum::Partial { start, offset },
            ..RxOffload::default()
        };
        let valid = RxOffload {
            csum: RxCsum::Valid,
            ..RxOffload::default()
        };
        let udp_gso = RxOffload {
            gso: Gso::Tcp4,
            gso_size: 1000,
            ..partial(34, 6)
        };
        // A run of UDP datagrams is fine, but never DHCP.
        let udp_run = RxOffload {
            gso: Gso::Udp,
            gso_size: 2,
            ..partial(34, 6)
        };
        let drops = run_vnet(
            &conf,
            &[
                (udp.clone(), Ok(RxOffload::default())),
                (udp.clone(), Ok(partial(34, 6))),
                (udp.clone(), Ok(valid)),
                (udp.clone(), Ok(partial(34, 16))),
                (udp.clone(), Ok(partial(14, 6))),
                (udp.clone(), Ok(udp_gso)),
                (udp.clone(), Ok(udp_run)),
                (udp.clone(), Err(VnetError::GsoSize)),
            ],
        );
        assert_eq!(drops.get(DropReason::MalformedUdp), 1, "{drops}");
        assert_eq!(drops.get(DropReason::Dhcp), 2, "{drops}");
        assert_eq!(drops.get(DropReason::VnetHeader), 5, "{drops}");
        // A run claiming more datagrams than a segmented send can make (a
        // hand-made header): dropped before any flow is opened.
        // A datagram of `len` bytes from the guest to the gateway.
        let guest_udp = |len: usize| {
            let mut f = vec![0u8; 100 + len];
            let n = compose::udp4(
                &mut f,
                link,
                std::net::SocketAddrV4::new(g, 40000),
                std::net::SocketAddrV4::new(gw, 5000),
                |_| Some(len),
            );
            f.truncate(n);
            f
        };
        let many = guest_udp(200);
        let one_byte_runs = RxOffload {
            gso: Gso::Udp,
            gso_size: 1,
            ..partial(34, 6)
        };
        // And a run of no datagram at all.
        let empty = guest_udp(0);
        let drops = run_vnet(
            &conf,
            &[(many, Ok(one_byte_runs)), (empty, Ok(one_byte_runs))],
        );
        assert_eq!(drops.get(DropReason::VnetHeader), 2, "{drops}");
        assert_eq!(drops.total(), 2, "{drops}");

        // TCP: a wrong checksum is never verified, whether the kernel left
        // it partial or said nothing (the segment, for no connection, gets
        // an RST); the wrong family's super-segment is dropped.
        let mut tcp = vec![0u8; 100];
        let hdr = wire_tcp::TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 1,
            flags: wire_tcp::Flags::ACK,
            window: 100,
            ..Default::default()
        };
        let n = compose::tcp4(&mut tcp, link, g, gw, &hdr, compose::Csum::Full, |_| 0);
        tcp.truncate(n);
        tcp[50] ^= 0x55;
        let tcp6_gso = RxOffload {
            gso: Gso::Tcp6,
            gso_size: 1000,
            ..partial(34, 16)
        };
        let tcp_as_udp_run = RxOffload {
            gso: Gso::Udp,
            gso_size: 1000,
            ..partial(34, 16)
        };
        let drops = run_vnet(
            &conf,
            &[
                (tcp.clone(), Ok(RxOffload::default())),
                (tcp.clone(), Ok(partial(34, 16))),
                (tcp.clone(), Ok(tcp6_gso)),
                (tcp.clone(), Ok(tcp_as_udp_run)),
            ],
        );
        assert_eq!(drops.get(DropReason::MalformedTcp), 0, "{drops}");
        assert_eq!(drops.get(DropReason::VnetHeader), 2, "{drops}");
        assert_eq!(drops.total(), 2, "{drops}");
    }

    #[test]
    fn arp_ignored_without_ipv4() {
        let mut conf = test_config();
        conf.ip4 = None;
        let (d, out) = run(&conf, &[arp_request_frame(Ipv4Addr::new(192, 0, 2, 1))]);
        assert!(out.is_empty());
        assert_eq!(d.drops.get(DropReason::FamilyDisabled), 1);
    }
}
