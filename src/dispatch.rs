//! Dispatch: walk a batch of guest frames, route each by EtherType and
//! protocol to its handler, and queue the replies.
//!
//! Guest input is hostile. Nothing here returns an error for bad input: a
//! frame that cannot be parsed is dropped and counted by `DropReason`, and
//! the next frame is looked at as if nothing happened.

use crate::conf::Config;
use crate::l2;
use crate::tap::{Batch, TxQueue};
use crate::wire::arp::ArpRepr;
use crate::wire::ethernet::{self, Frame};
use crate::wire::{EtherType, Mac};
use std::fmt;
use std::net::Ipv4Addr;

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
}

impl DropReason {
    /// Number of variants, for the counter array.
    const COUNT: usize = 5;

    fn index(self) -> usize {
        match self {
            DropReason::Runt => 0,
            DropReason::MalformedArp => 1,
            DropReason::UnknownEtherType => 2,
            DropReason::Unhandled => 3,
            DropReason::FamilyDisabled => 4,
        }
    }

    fn from_index(i: usize) -> Option<Self> {
        [
            DropReason::Runt,
            DropReason::MalformedArp,
            DropReason::UnknownEtherType,
            DropReason::Unhandled,
            DropReason::FamilyDisabled,
        ]
        .get(i)
        .copied()
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
}

/// Routes guest frames to protocol handlers.
pub struct Dispatch<'c> {
    conf: &'c Config,
    /// What the guest told us about itself.
    pub guest: GuestState,
    /// Frames dropped, by reason.
    pub drops: DropCounters,
}

impl<'c> Dispatch<'c> {
    /// A dispatcher for this configuration.
    pub fn new(conf: &'c Config) -> Self {
        Dispatch {
            conf,
            guest: GuestState::default(),
            drops: DropCounters::default(),
        }
    }

    /// Handle every frame of `batch` (ranges into `buf`), queueing replies on `tx`.
    pub fn handle_batch(&mut self, buf: &[u8], batch: &Batch, tx: &mut TxQueue) {
        if tx.capturing() {
            tx.capture_rx(batch.frames(buf));
        }
        for frame in batch.frames(buf) {
            if let Err(r) = self.handle_frame(frame, tx) {
                self.drops.bump(r);
                log::trace!("dropped guest frame ({r}), {} bytes", frame.len());
            }
        }
    }

    /// Time-driven work (unsolicited router advertisements); returns when
    /// it is due next, `None` when there is nothing to schedule.
    pub fn periodic(
        &mut self,
        now: std::time::Instant,
        _tx: &mut TxQueue,
    ) -> Option<std::time::Instant> {
        let _ = now;
        None
    }

    fn handle_frame(&mut self, bytes: &[u8], tx: &mut TxQueue) -> Result<(), DropReason> {
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
            EtherType::Ipv4 | EtherType::Ipv6 => Err(DropReason::Unhandled),
            EtherType::Unknown(_) => Err(DropReason::UnknownEtherType),
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
        let mut reply = l2::arp::reply(&req, Some(ip4.addr), ours);
        if reply.is_some() && self.guest.addr4_seen == Some(req.target_ip) {
            reply = None;
        }
        if let Some(rep) = reply {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::arp::Operation;

    pub(crate) fn test_config() -> Config {
        use crate::conf::*;
        Config {
            mode: Mode::Passt,
            debug: false,
            trace: false,
            quiet: true,
            foreground: true,
            log_file: None,
            log_size: DEFAULT_LOG_SIZE,
            runas: None,
            pcap: None,
            pidfile: None,
            our_mac: DEFAULT_OUR_MAC,
            mtu: Some(DEFAULT_MTU),
            ip4: Some(Ip4Config {
                addr: Ipv4Addr::new(192, 0, 2, 2),
                prefix_len: 24,
                gateway: Ipv4Addr::new(192, 0, 2, 1),
                addr_from_cli: false,
                gateway_from_cli: false,
                dns: vec![],
                dns_forward: None,
                dns_host: None,
                map_host_loopback: None,
                map_guest_addr: None,
                outbound: None,
                outbound_if: None,
            }),
            ip6: None,
            template_if4: Some("eth0".into()),
            template_if6: None,
            search: vec![],
            hostname: None,
            fqdn: None,
            services: Services {
                tcp: true,
                udp: true,
                icmp: true,
                dhcp: true,
                ndp: true,
                dhcpv6: true,
                ra: true,
                dhcp_dns: true,
                dhcp_search: true,
            },
            freebind: false,
            chroot_fallback: false,
            fwd: Forwarding::default(),
            passt: PasstConfig::default(),
            pasta: None,
        }
    }

    const GUEST_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);

    fn arp_request_frame(target: Ipv4Addr) -> Vec<u8> {
        let mut b = vec![0u8; 42];
        let mut f = Frame::new_unchecked(&mut b[..]);
        f.set_header(Mac::BROADCAST, GUEST_MAC, EtherType::Arp);
        ArpRepr {
            operation: Operation::Request,
            sender_mac: GUEST_MAC,
            sender_ip: Ipv4Addr::new(192, 0, 2, 2),
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
        let mut d = Dispatch::new(conf);
        d.handle_batch(rx.buf(), &batch, &mut tx);
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

    #[test]
    fn arp_ignored_without_ipv4() {
        let mut conf = test_config();
        conf.ip4 = None;
        let (d, out) = run(&conf, &[arp_request_frame(Ipv4Addr::new(192, 0, 2, 1))]);
        assert!(out.is_empty());
        assert_eq!(d.drops.get(DropReason::FamilyDisabled), 1);
    }
}
