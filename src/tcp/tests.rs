//! Unit tests: stray segments, and the state machine against real
//! loopback sockets (the host side) with segments crafted as a guest
//! would send them.

use super::*;
use crate::flow::Flows;
use std::net::IpAddr;

#[test]
fn rst_for_stray_segments() {
    let seg = TcpRepr {
        src_port: 4000,
        dst_port: 80,
        seq: 100,
        ack: 555,
        flags: Flags::ACK,
        ..Default::default()
    };
    let r = rst_for(&seg, 10);
    assert_eq!((r.src_port, r.dst_port), (80, 4000));
    assert_eq!((r.seq, r.flags), (555, Flags::RST));
    let syn = TcpRepr {
        flags: Flags::SYN,
        ..seg
    };
    let r = rst_for(&syn, 0);
    assert_eq!((r.seq, r.ack, r.flags), (0, 101, Flags::RST | Flags::ACK));
}

#[test]
fn backoff_doubles_and_caps() {
    assert_eq!(backoff(0), RTO);
    assert_eq!(backoff(2), RTO * 4);
    assert_eq!(backoff(200), RTO * 32);
}

#[test]
fn no_tcp_and_bad_segments_are_dropped() {
    let mut c = Config::example();
    let ev = EventLoop::new().unwrap();
    let mut flows = Flows::new(64);
    let mut t = Tcp::new(&flows);
    let mut tx = TxQueue::new(0, None);
    let link = compose::Link {
        src: crate::wire::Mac([0x9a; 6]),
        dst: crate::wire::Mac([2, 0, 0, 0, 0, 1]),
    };
    let g: SocketAddr = "10.0.0.2:4000".parse().unwrap();
    let r: SocketAddr = "192.0.2.9:80".parse().unwrap();
    let mut syn = vec![0u8; 20];
    TcpRepr {
        src_port: 4000,
        dst_port: 80,
        flags: Flags::SYN,
        ..Default::default()
    }
    .emit(&mut syn);
    Packet::new_unchecked(&mut syn[..])
        .fill_checksum_v4([10, 0, 0, 2].into(), [192, 0, 2, 9].into());
    let now = Instant::now();
    c.services.tcp = false;
    assert_eq!(
        t.segment(
            &c,
            &ev,
            &mut flows,
            link,
            g,
            r,
            &syn,
            &[],
            false,
            &mut tx,
            now
        ),
        Err(TcpDrop::Disabled)
    );
    c.services.tcp = true;
    // A data offset shorter than the header. (A wrong checksum is no
    // reason: the guest's are trusted, see dispatch's tests.)
    let mut bad = syn.clone();
    bad[12] = 4 << 4;
    assert_eq!(
        t.segment(
            &c,
            &ev,
            &mut flows,
            link,
            g,
            r,
            &bad,
            &[],
            false,
            &mut tx,
            now
        ),
        Err(TcpDrop::Malformed)
    );
    assert_eq!(
        t.segment(
            &c,
            &ev,
            &mut flows,
            link,
            g,
            r,
            &syn[..12],
            &[],
            false,
            &mut tx,
            now
        ),
        Err(TcpDrop::Malformed)
    );
    let bcast: SocketAddr = "255.255.255.255:80".parse().unwrap();
    let mut syn_b = syn.clone();
    Packet::new_unchecked(&mut syn_b[..]).fill_checksum_v4([10, 0, 0, 2].into(), [255; 4].into());
    assert_eq!(
        t.segment(
            &c,
            &ev,
            &mut flows,
            link,
            g,
            bcast,
            &syn_b,
            &[],
            false,
            &mut tx,
            now
        ),
        Err(TcpDrop::Destination(Refused::NotUnicast))
    );
    assert!(flows.is_empty());
    // Only the RST refusing the broadcast destination went out.
    assert_eq!(tx.pending().len(), 4 + 14 + 20 + 20);
}

/// A connection from a crafted guest to a real listener on the host's
/// loopback (through the `--map-host-loopback` address), driven by hand.
struct Rig {
    conf: Config,
    ev: EventLoop,
    flows: Flows,
    t: Tcp,
    tx: TxQueue,
    link: compose::Link,
    guest: SocketAddr,
    remote: SocketAddr,
    /// The host side's accepted socket.
    peer: Option<std::net::TcpStream>,
    /// Our initial sequence number.
    iss: u32,
    /// The guest's next sequence number.
    gseq: u32,
}

/// Segment size the guest announces: small, so a few KiB are many segments.
const GUEST_MSS: u16 = 1000;

impl Rig {
    fn new(no_peek_off: bool) -> Rig {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut conf = Config::example();
        if let Some(ip4) = conf.ip4.as_mut() {
            ip4.map_host_loopback = Some(std::net::Ipv4Addr::new(10, 0, 0, 1));
        }
        let flows = Flows::new(64);
        let mut r = Rig {
            conf,
            ev: EventLoop::new().unwrap(),
            t: Tcp::new(&flows),
            flows,
            tx: TxQueue::new(1 << 20, None),
            link: compose::Link {
                src: crate::wire::Mac([0x9a; 6]),
                dst: crate::wire::Mac([2, 0, 0, 0, 0, 1]),
            },
            guest: "10.0.0.2:4000".parse().unwrap(),
            remote: SocketAddr::new([10, 0, 0, 1].into(), l.local_addr().unwrap().port()),
            peer: None,
            iss: 0,
            gseq: 1000,
        };
        r.t.no_peek_off = no_peek_off;
        let syn = TcpRepr {
            flags: Flags::SYN,
            seq: 999,
            window: 65535,
            mss: Some(GUEST_MSS),
            ..r.hdr()
        };
        r.send(&syn, &[]);
        // Our connect() completes on the listener.
        r.peer = Some(l.accept().unwrap().0);
        let until = Instant::now() + Duration::from_secs(2);
        let synack = loop {
            r.pump(10);
            if let Some(s) = r.out().into_iter().find(|(h, _)| h.flags.has(Flags::SYN)) {
                break s.0;
            }
            assert!(Instant::now() < until, "no SYN-ACK");
        };
        r.iss = synack.seq;
        let ack = TcpRepr {
            flags: Flags::ACK,
            ack: r.iss.wrapping_add(1),
            ..r.hdr()
        };
        r.send(&ack, &[]);
        assert!(r.out().is_empty(), "nothing to say yet");
        r
    }

    /// A header from the guest at its next sequence number.
    fn hdr(&self) -> TcpRepr {
        TcpRepr {
            src_port: self.guest.port(),
            dst_port: self.remote.port(),
            seq: self.gseq,
            ack: self.iss.wrapping_add(1),
            flags: Flags::ACK,
            window: 65535,
            ..Default::default()
        }
    }

    /// A data segment's header from the guest, `off` bytes past `base`.
    fn data_at(&self, base: u32, off: u32) -> TcpRepr {
        TcpRepr {
            seq: base.wrapping_add(off),
            flags: Flags::ACK | Flags::PSH,
            ..self.hdr()
        }
    }

    /// An ACK from the guest for `upto` bytes of ours, offering `window`.
    fn ack(&mut self, upto: u32, window: u16) {
        let h = TcpRepr {
            ack: self.iss.wrapping_add(1).wrapping_add(upto),
            window,
            ..self.hdr()
        };
        self.send(&h, &[]);
    }

    fn send(&mut self, h: &TcpRepr, payload: &[u8]) {
        let res = self.offer(h, payload, false);
        assert_eq!(res, Ok(Taken::Done));
    }

    /// A segment from the guest, as its IP payload.
    fn segment_bytes(&self, h: &TcpRepr, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; h.buffer_len() + payload.len()];
        h.emit(&mut b);
        b[h.buffer_len()..].copy_from_slice(payload);
        let (IpAddr::V4(g), IpAddr::V4(r)) = (self.guest.ip(), self.remote.ip()) else {
            unreachable!()
        };
        Packet::new_unchecked(&mut b[..]).fill_checksum_v4(g, r);
        b
    }

    /// Hand a segment to `Tcp::segment`, holding it if it's ahead.
    fn offer(&mut self, h: &TcpRepr, payload: &[u8], hold: bool) -> Result<Taken, TcpDrop> {
        let b = self.segment_bytes(h, payload);
        self.offer_in(&b, &[], hold)
    }

    /// Hand `segment`, inside the batch's buffer `batch`, to `Tcp::segment`.
    fn offer_in(&mut self, segment: &[u8], batch: &[u8], hold: bool) -> Result<Taken, TcpDrop> {
        let now = Instant::now();
        self.t.segment(
            &self.conf,
            &self.ev,
            &mut self.flows,
            self.link,
            self.guest,
            self.remote,
            segment,
            batch,
            hold,
            &mut self.tx,
            now,
        )
    }

    /// Segments laid out one after the other, as in a batch's buffer,
    /// with where each is.
    fn batch_of(&self, segs: &[(TcpRepr, Vec<u8>)]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut buf = Vec::new();
        let mut at = Vec::new();
        for (h, payload) in segs {
            let b = self.segment_bytes(h, payload);
            at.push(buf.len()..buf.len() + b.len());
            buf.extend_from_slice(&b);
        }
        (buf, at)
    }

    /// Handle socket events for up to `ms` milliseconds.
    fn pump(&mut self, ms: u64) {
        let until = Instant::now() + Duration::from_millis(ms);
        let mut events = [nix::sys::epoll::EpollEvent::empty(); 8];
        while Instant::now() < until {
            let n = self
                .ev
                .wait(&mut events, Some(Duration::from_millis(5)))
                .unwrap();
            for e in &events[..n] {
                if let Ok(EpollRef::Tcp(f)) = EpollRef::try_from(e.data()) {
                    assert_eq!(f.end, End::Target, "the socket is the host side");
                    self.t.event(
                        &mut self.flows,
                        f,
                        e.events(),
                        self.link,
                        &self.ev,
                        &mut self.tx,
                    );
                }
            }
        }
    }

    /// Run every timer due at `now`, as the loop does.
    fn run_timers(&mut self, now: Instant) {
        while let Some(f) = self.flows.pop_due(now) {
            self.t
                .timer(&mut self.flows, f, now, self.link, &self.ev, &mut self.tx);
        }
    }

    /// Segments queued towards the guest since the last look.
    fn out(&mut self) -> Vec<(TcpRepr, Vec<u8>)> {
        let mut v = Vec::new();
        let mut p = self.tx.pending();
        while let Some(len) = p
            .first_chunk::<4>()
            .map(|l| u32::from_be_bytes(*l) as usize)
        {
            let f = &p[4..4 + len];
            let seg = &f[ethernet::HEADER_LEN + ipv4::HEADER_LEN..];
            let pkt = Packet::new_checked(seg).unwrap();
            let h = TcpRepr::parse(&pkt, self.remote.ip(), self.guest.ip()).unwrap();
            v.push((h, pkt.payload().to_vec()));
            p = &p[4 + len..];
        }
        self.tx.clear();
        v
    }

    /// The connection's reference, found by its tap side.
    fn flow_ref(&self) -> Option<FlowRef> {
        let tap = FlowSide::new(Side::Tap, self.guest, self.remote);
        let s = self.flows.lookup(Proto::Tcp, &tap)?;
        assert_eq!(s.end, End::Initiator, "the guest opened it");
        Some(s.flow)
    }

    fn conn(&mut self) -> &mut Conn {
        let r = self.flow_ref().unwrap();
        conn_mut(&mut self.flows, r).unwrap()
    }

    fn is_open(&self) -> bool {
        self.flow_ref().is_some()
    }

    /// The host peer writes `n` bytes (byte i is i mod 251); we send them.
    fn peer_writes(&mut self, n: usize) -> Vec<(TcpRepr, Vec<u8>)> {
        use std::io::Write;
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        self.peer.as_ref().unwrap().write_all(&data).unwrap();
        self.pump(50);
        self.out()
    }
}

/// Byte `i` of what the peer wrote.
fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

fn data_only(segs: &[(TcpRepr, Vec<u8>)]) -> Vec<(u32, usize)> {
    segs.iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(h, p)| (h.seq, p.len()))
        .collect()
}

#[test]
fn keepalive_and_out_of_window_segments_get_an_ack() {
    for no_peek_off in [false, true] {
        let mut r = Rig::new(no_peek_off);
        // RFC 9293 3.8.4: a keepalive probe carries SEG.SEQ = SND.NXT - 1.
        let probe = TcpRepr {
            seq: r.gseq.wrapping_sub(1),
            ..r.hdr()
        };
        r.send(&probe, &[]);
        let out = r.out();
        assert_eq!(out.len(), 1, "one ACK");
        assert_eq!(out[0].0.flags, Flags::ACK);
        assert_eq!(out[0].0.ack, r.gseq);
        assert!(out[0].0.window > 0, "with our window");
        // Far beyond our window: the same.
        let far = TcpRepr {
            seq: r.gseq.wrapping_add(1 << 30),
            ..r.hdr()
        };
        r.send(&far, &[]);
        assert_eq!(r.out().len(), 1);
        assert!(r.is_open());
    }
}

/// The keepalive probes a silent guest gets when `at` comes, and whether
/// the connection is still open after them.
fn probes_at(r: &mut Rig, at: Instant) -> (usize, bool) {
    assert!(
        r.flows.next_deadline().is_some_and(|t| t <= at),
        "the timer wakes the connection by then"
    );
    r.run_timers(at);
    let out = r.out();
    for (h, p) in &out {
        if !h.flags.has(Flags::RST) {
            assert_eq!((h.flags, h.seq), (Flags::ACK, r.iss), "SND.UNA - 1");
            assert!(p.is_empty());
        }
    }
    let probes = out.iter().filter(|(h, _)| !h.flags.has(Flags::RST)).count();
    (probes, r.is_open())
}

#[test]
fn a_silent_guest_is_probed_and_its_answer_keeps_the_connection() {
    let mut r = Rig::new(false);
    let ka = r.t.keepalive;
    assert_eq!(ka, KEEPALIVE);
    let start = r.conn().last;
    assert_eq!(probes_at(&mut r, start + ka.idle), (1, true));
    // The guest answers, with an ACK for what it has.
    r.ack(0, 65535);
    assert!(r.out().is_empty());
    // Silent again: probed again, a whole idle time after its answer,
    // however long the connection has been idle for the host peer.
    let later = start + ka.idle + ka.interval * u32::from(ka.probes) * 2;
    assert_eq!(probes_at(&mut r, later), (1, true));
    r.ack(0, 65535);
    // Data still crosses both ways.
    let got = data_only(&r.peer_writes(100));
    assert_eq!(got, vec![(r.iss.wrapping_add(1), 100)]);
    let data = r.data_at(r.gseq, 0);
    r.send(&data, b"ping");
    assert_eq!(peer_got(&r, 4, 1000), 4);
}

#[test]
fn a_guest_that_answers_no_keepalive_is_reset() {
    let mut r = Rig::new(false);
    let ka = r.t.keepalive;
    let start = r.conn().last;
    for n in 0..ka.probes {
        let at = start + ka.idle + ka.interval * u32::from(n);
        assert_eq!(probes_at(&mut r, at), (1, true), "probe {n}");
    }
    let last = start + ka.idle + ka.interval * u32::from(ka.probes);
    r.run_timers(last - Duration::from_millis(1));
    assert!(r.out().is_empty() && r.is_open(), "not before its time");
    r.run_timers(last);
    let out = r.out();
    assert_eq!(out.len(), 1);
    assert!(out[0].0.flags.has(Flags::RST), "the guest is told");
    assert!(!r.is_open());
    // The host peer too.
    use std::io::Read;
    let mut b = [0u8; 4];
    let e = r.peer.as_ref().unwrap().read(&mut b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
}

#[test]
fn host_sockets_through_the_tap_have_keepalives() {
    let mut r = Rig::new(false);
    assert!(getsockopt(&r.conn().sock, sockopt::KeepAlive).unwrap());
    assert_eq!(keepalive_from(None), KEEPALIVE);
    let ka = keepalive_from(Some("2".into()));
    assert_eq!(
        (ka.idle, ka.interval, ka.probes),
        (Duration::from_secs(2), Duration::from_secs(2), 3)
    );
    assert!(ka.tune_socket && !KEEPALIVE.tune_socket);
    for bad in ["", "0", "-1", "1.5", "soon", "18446744073709551615"] {
        assert_eq!(keepalive_from(Some(bad.into())), KEEPALIVE, "{bad:?}");
    }
    // Shortened, the host socket gets the same times.
    let mut r = Rig::new(false);
    let sock = r.conn().sock.try_clone().unwrap();
    host_keepalive(&sock, &ka);
    assert_eq!(getsockopt(&sock, sockopt::TcpKeepIdle).unwrap(), 2);
    assert_eq!(getsockopt(&sock, sockopt::TcpKeepInterval).unwrap(), 2);
    assert_eq!(getsockopt(&sock, sockopt::TcpKeepCount).unwrap(), 3);
}

#[test]
fn rst_resets_only_at_the_expected_sequence_number() {
    let mut r = Rig::new(false);
    let base = r.hdr();
    let rst = |seq| TcpRepr {
        seq,
        flags: Flags::RST,
        ..base
    };
    // Outside the window: ignored, silently.
    r.send(&rst(r.gseq.wrapping_add(1 << 30)), &[]);
    assert!(r.is_open());
    assert!(r.out().is_empty());
    // In the window but not exact: a challenge ACK (RFC 5961 3.2).
    r.send(&rst(r.gseq.wrapping_add(10)), &[]);
    assert!(r.is_open());
    let out = r.out();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0.flags, out[0].0.ack), (Flags::ACK, r.gseq));
    r.send(&rst(r.gseq), &[]);
    assert!(!r.is_open(), "an exact RST resets");
}

#[test]
fn three_duplicate_acks_resend_one_segment() {
    for no_peek_off in [false, true] {
        let mut r = Rig::new(no_peek_off);
        let sent = data_only(&r.peer_writes(10_000));
        assert_eq!(sent.len(), 10, "ten segments of {GUEST_MSS}");
        for i in 0..3 {
            r.ack(0, 65535);
            let again = r.out();
            if i < 2 {
                assert!(data_only(&again).is_empty(), "nothing after {i} dup ACKs");
            } else {
                assert_eq!(
                    data_only(&again),
                    vec![(r.iss.wrapping_add(1), 1000)],
                    "exactly the first segment, once"
                );
                assert_eq!(again[0].1, pattern(0, 1000));
            }
        }
        // A partial ACK in recovery: the next hole goes at once.
        r.ack(1000, 65535);
        let next = r.out();
        assert_eq!(data_only(&next), vec![(r.iss.wrapping_add(1001), 1000)]);
        assert_eq!(next[0].1, pattern(1000, 1000));
        // Everything acknowledged: out of recovery, nothing in flight.
        r.ack(10_000, 65535);
        assert!(data_only(&r.out()).is_empty());
        assert_eq!(r.conn().recover, None);
        assert_eq!(r.conn().in_flight(), 0);
    }
}

#[test]
fn acks_for_data_sent_before_a_rewind_still_count() {
    for no_peek_off in [false, true] {
        let mut r = Rig::new(no_peek_off);
        assert_eq!(data_only(&r.peer_writes(6000)).len(), 6);
        // A retransmission timeout sends everything again from the start...
        r.conn().rewind();
        // ...but before anything went, the ACK for the first pass arrives.
        r.ack(4000, 65535);
        let c = r.conn();
        assert_eq!(c.snd_una, c.iss.wrapping_add(4001));
        // What goes next starts at byte 4000, with the right bytes.
        let out = r.out();
        let data: Vec<_> = out.iter().filter(|(_, p)| !p.is_empty()).collect();
        assert_eq!(data.len(), 2, "{:?}", data_only(&out));
        assert_eq!(data[0].0.seq, r.iss.wrapping_add(4001));
        assert_eq!(data[0].1, pattern(4000, 1000));
        assert_eq!(data[1].1, pattern(5000, 1000));
    }
}

#[test]
fn an_older_ack_never_overrides_a_newer_window() {
    let mut r = Rig::new(false);
    assert_eq!(data_only(&r.peer_writes(3000)).len(), 3);
    // Sent in this order by the guest, delivered the other way round.
    r.ack(2000, 0);
    r.ack(1000, 65535);
    assert_eq!(r.conn().snd_wnd, 0, "the window from the newer ACK stands");
    let iss = r.iss;
    assert_eq!(r.conn().snd_una, iss.wrapping_add(2001));
}

#[test]
fn a_closed_guest_window_is_probed() {
    let mut r = Rig::new(false);
    assert_eq!(data_only(&r.peer_writes(1000)).len(), 1);
    r.ack(1000, 0);
    assert!(data_only(&r.peer_writes(1000)).is_empty(), "window shut");
    let at = r.conn().persist_at.expect("probe scheduled");
    // The table's timers wake the connection up by then (an earlier,
    // since outdated, retransmission deadline may come first).
    assert!(r.flows.next_deadline().is_some_and(|t| t <= at));
    r.run_timers(at);
    let out = r.out();
    assert_eq!(out.len(), 1, "one probe");
    assert_eq!(out[0].0.seq, r.iss.wrapping_add(1000), "SND.UNA - 1");
    assert!(out[0].1.is_empty());
    // The guest's answer opens the window: the data goes.
    r.ack(1000, 65535);
    let out = r.out();
    assert_eq!(data_only(&out), vec![(r.iss.wrapping_add(1001), 1000)]);
    assert_eq!(r.conn().persist_at, None);
}

#[test]
fn without_peek_off_eof_waits_for_the_peers_fin() {
    let mut r = Rig::new(true);
    assert_eq!(data_only(&r.peer_writes(2000)).len(), 2);
    // Half acknowledged: everything queued is already in flight, which a
    // peek can't tell from the end of the stream.
    r.ack(1000, 65535);
    r.pump(20);
    let out = r.out();
    assert!(
        out.iter().all(|(h, _)| !h.flags.has(Flags::FIN)),
        "no FIN in mid-stream"
    );
    // More data still follows in order.
    let more = r.peer_writes(500);
    assert_eq!(data_only(&more), vec![(r.iss.wrapping_add(2001), 500)]);
    r.peer
        .as_ref()
        .unwrap()
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    r.pump(50);
    r.ack(2500, 65535);
    let fin: Vec<_> = r
        .out()
        .into_iter()
        .filter(|(h, _)| h.flags.has(Flags::FIN))
        .collect();
    assert_eq!(fin.len(), 1, "FIN once the peer closed");
    assert_eq!(fin[0].0.seq, r.iss.wrapping_add(2501));
}

#[test]
fn a_guest_fin_that_acknowledges_everything_closes_with_a_fin_not_a_reset() {
    use std::io::Read;
    for no_peek_off in [false, true] {
        let mut r = Rig::new(no_peek_off);
        assert_eq!(data_only(&r.peer_writes(1000)).len(), 1);
        let peer = r.peer.take().unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        r.pump(50);
        let out = r.out();
        let fin = out.iter().find(|(h, _)| h.flags.has(Flags::FIN));
        assert_eq!(fin.map(|(h, _)| h.seq), Some(r.iss.wrapping_add(1001)));
        // One segment from the guest acknowledges our data and our FIN,
        // and carries its own FIN: the connection ends on it, and what it
        // acknowledged must be read from the socket before it closes, or
        // the kernel resets the peer instead of sending a FIN.
        let h = TcpRepr {
            ack: r.iss.wrapping_add(1002),
            flags: Flags::ACK | Flags::FIN,
            ..r.hdr()
        };
        r.send(&h, &[]);
        assert!(!r.is_open());
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 16];
        let got = (&peer).read(&mut buf).map_err(|e| e.kind());
        assert_eq!(got, Ok(0), "a FIN, not a reset");
    }
}

#[test]
fn a_segment_past_a_gap_can_be_held_and_taken_later() {
    use std::io::Read;
    let mut r = Rig::new(false);
    let a = pattern(0, 700);
    let b = pattern(700, 300);
    let hb = TcpRepr {
        seq: r.gseq.wrapping_add(700),
        ..r.hdr()
    };
    assert_eq!(r.offer(&hb, &b, true), Ok(Taken::Ahead));
    assert!(r.out().is_empty(), "held: not even a duplicate ACK");
    let ha = r.hdr();
    assert_eq!(r.offer(&ha, &a, true), Ok(Taken::Done));
    assert_eq!(r.offer(&hb, &b, true), Ok(Taken::Done));
    let acks: Vec<u32> = r.out().iter().map(|(h, _)| h.ack).collect();
    assert_eq!(acks.last(), Some(&r.gseq.wrapping_add(1000)));
    let mut got = vec![0u8; 1000];
    r.peer.as_ref().unwrap().read_exact(&mut got).unwrap();
    assert_eq!(got, pattern(0, 1000), "in order on the host");
    // Not held back by the caller: a duplicate ACK for the gap, as any
    // receiver sends, and a copy kept until the gap is filled.
    let c = pattern(2000, 300);
    let hc = TcpRepr {
        seq: r.gseq.wrapping_add(2000),
        ..r.hdr()
    };
    assert_eq!(r.offer(&hc, &c, false), Ok(Taken::Done));
    let out = r.out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.ack, r.gseq.wrapping_add(1000));
    let gap = TcpRepr {
        seq: r.gseq.wrapping_add(1000),
        ..r.hdr()
    };
    r.send(&gap, &pattern(1000, 1000));
    let out = r.out();
    assert_eq!(
        out.last().map(|(h, _)| h.ack),
        Some(r.gseq.wrapping_add(2300))
    );
    let mut got = vec![0u8; 1300];
    r.peer.as_ref().unwrap().read_exact(&mut got).unwrap();
    assert_eq!(
        got,
        pattern(1000, 1300),
        "the held segment followed the gap"
    );
}

/// Several guest connections to one real listener, in a table with room
/// for only two: the pressure policy, by hand.
struct Crowd {
    conf: Config,
    ev: EventLoop,
    flows: Flows,
    t: Tcp,
    tx: TxQueue,
    link: compose::Link,
    remote: SocketAddr,
    _listener: std::net::TcpListener,
}

impl Crowd {
    fn new() -> Crowd {
        // Never accepted: the kernel completes our connects regardless.
        Crowd::with(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn with(l: std::net::TcpListener) -> Crowd {
        let mut conf = Config::example();
        if let Some(ip4) = conf.ip4.as_mut() {
            ip4.map_host_loopback = Some(std::net::Ipv4Addr::new(10, 0, 0, 1));
        }
        // Room for two connections: TCP's reserve, and no pool.
        let flows = Flows::with_reserves([2, 1, 1, 0, 0], 0);
        Crowd {
            conf,
            ev: EventLoop::new().unwrap(),
            t: Tcp::new(&flows),
            flows,
            tx: TxQueue::new(1 << 20, None),
            link: compose::Link {
                src: crate::wire::Mac([0x9a; 6]),
                dst: crate::wire::Mac([2, 0, 0, 0, 0, 1]),
            },
            remote: SocketAddr::new([10, 0, 0, 1].into(), l.local_addr().unwrap().port()),
            _listener: l,
        }
    }

    /// A segment from the guest's port `port`.
    fn send(&mut self, port: u16, flags: Flags, ack: u32) -> Result<(), TcpDrop> {
        let h = TcpRepr {
            src_port: port,
            dst_port: self.remote.port(),
            // The SYN takes 1000, what follows starts at 1001.
            seq: if flags.has(Flags::SYN) { 1000 } else { 1001 },
            ack,
            flags,
            window: 65535,
            ..Default::default()
        };
        let mut b = vec![0u8; h.buffer_len()];
        h.emit(&mut b);
        Packet::new_unchecked(&mut b[..])
            .fill_checksum_v4([10, 0, 0, 2].into(), [10, 0, 0, 1].into());
        let guest = SocketAddr::new([10, 0, 0, 2].into(), port);
        let now = Instant::now();
        let res = self.t.segment(
            &self.conf,
            &self.ev,
            &mut self.flows,
            self.link,
            guest,
            self.remote,
            &b,
            &[],
            false,
            &mut self.tx,
            now,
        );
        let until = Instant::now() + Duration::from_millis(50);
        let mut events = [nix::sys::epoll::EpollEvent::empty(); 8];
        while Instant::now() < until {
            let n = self
                .ev
                .wait(&mut events, Some(Duration::from_millis(5)))
                .unwrap();
            for e in &events[..n] {
                if let Ok(EpollRef::Tcp(f)) = EpollRef::try_from(e.data()) {
                    self.t.event(
                        &mut self.flows,
                        f,
                        e.events(),
                        self.link,
                        &self.ev,
                        &mut self.tx,
                    );
                }
            }
        }
        res.map(|_| ())
    }

    /// (guest port, segment) queued towards the guest since the last look.
    fn out(&mut self) -> Vec<(u16, TcpRepr)> {
        let mut v = Vec::new();
        let mut p = self.tx.pending();
        while let Some(len) = p
            .first_chunk::<4>()
            .map(|l| u32::from_be_bytes(*l) as usize)
        {
            let f = &p[4..4 + len];
            let pkt = Packet::new_checked(&f[ethernet::HEADER_LEN + ipv4::HEADER_LEN..]).unwrap();
            let h = TcpRepr::parse(&pkt, self.remote.ip(), [10, 0, 0, 2].into()).unwrap();
            v.push((h.dst_port, h));
            p = &p[4 + len..];
        }
        self.tx.clear();
        v
    }

    fn is_open(&self, port: u16) -> bool {
        let tap = FlowSide::new(
            Side::Tap,
            SocketAddr::new([10, 0, 0, 2].into(), port),
            self.remote,
        );
        self.flows.lookup(Proto::Tcp, &tap).is_some()
    }

    /// The guest's SYN from `port`, answered with our SYN-ACK: returns our ISS.
    fn syn(&mut self, port: u16) -> u32 {
        self.send(port, Flags::SYN, 0).unwrap();
        let out = self.out();
        let synack = out
            .iter()
            .find(|(p, h)| *p == port && h.flags.has(Flags::SYN));
        synack.expect("a SYN-ACK").1.seq
    }
}

#[test]
fn handshakes_make_way_but_established_connections_stay() {
    let mut c = Crowd::new();
    c.syn(4001);
    let b = c.syn(4002);
    assert_eq!(c.flows.count(Kind::Tcp), 2, "TCP has no more room");
    // A third SYN: the oldest connection still in the handshake goes,
    // with an RST to its guest, and the new one is served at once.
    let third = c.send(4003, Flags::SYN, 0);
    assert_eq!(third, Ok(()));
    let out = c.out();
    let rst = out
        .iter()
        .find(|(p, _)| *p == 4001)
        .expect("4001 hears of it");
    assert!(rst.1.flags.has(Flags::RST));
    assert!(
        out.iter()
            .any(|(p, h)| *p == 4003 && h.flags.has(Flags::SYN))
    );
    assert!(!c.is_open(4001) && c.is_open(4002) && c.is_open(4003));
    assert_eq!(c.flows.evicted(Kind::Tcp), 1);
    // Both remaining connections complete their handshake.
    let d = c
        .flows
        .iter()
        .find_map(|(r, f)| match f {
            Flow::Tcp(conn) if conn.guest().port() == 4003 => Some((r, conn.iss)),
            _ => None,
        })
        .unwrap()
        .1;
    c.send(4002, Flags::ACK, b.wrapping_add(1)).unwrap();
    c.send(4003, Flags::ACK, d.wrapping_add(1)).unwrap();
    assert!(c.out().is_empty(), "nothing to say");
    // Now every connection is established: a new SYN is refused with an
    // RST, and none of them is touched.
    assert_eq!(c.send(4004, Flags::SYN, 0), Err(TcpDrop::TableFull));
    let out = c.out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 4004);
    assert_eq!(out[0].1.flags, Flags::RST | Flags::ACK);
    assert!(c.is_open(4002) && c.is_open(4003) && !c.is_open(4004));
    assert_eq!(c.flows.evicted(Kind::Tcp), 1);
}

#[test]
fn the_handshake_times_out_from_the_syn() {
    let mut c = Crowd::new();
    let start = Instant::now();
    c.syn(4001);
    // The guest repeats its SYN (our SYN-ACK "lost"): no more time for it.
    c.send(4001, Flags::SYN, 0).unwrap();
    c.out();
    let f = c
        .flows
        .lookup(
            Proto::Tcp,
            &FlowSide::new(Side::Tap, "10.0.0.2:4001".parse().unwrap(), c.remote),
        )
        .unwrap()
        .flow;
    let late = start + HANDSHAKE_TIMEOUT + Duration::from_millis(100);
    while let Some(r) = c.flows.pop_due(late) {
        c.t.timer(&mut c.flows, r, late, c.link, &c.ev, &mut c.tx);
    }
    assert!(
        c.flows.get(f).is_none(),
        "closed {HANDSHAKE_TIMEOUT:?} after the SYN"
    );
    let out = c.out();
    assert!(
        out.iter()
            .any(|(p, h)| *p == 4001 && h.flags.has(Flags::RST))
    );
}

#[test]
fn a_connect_that_never_completes_times_out() {
    use nix::sys::socket::{Backlog, bind, listen};
    // A listener whose accept queue is full drops further SYNs: our
    // connect() stays in progress, as towards an address that never
    // answers.
    let l = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        l.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new([127, 0, 0, 1].into(), 0)),
    )
    .unwrap();
    listen(&l, Backlog::new(0).unwrap()).unwrap();
    let l = std::net::TcpListener::from(l);
    let _queued = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let mut c = Crowd::with(l);
    let start = Instant::now();
    c.send(4001, Flags::SYN, 0).unwrap();
    assert!(c.out().is_empty(), "no SYN-ACK: still connecting");
    assert!(c.is_open(4001));
    // Its timer is armed, for the handshake's end at the latest.
    let due = c.flows.next_deadline().expect("a timer");
    assert!(due <= start + HANDSHAKE_TIMEOUT + Duration::from_millis(100));
    let late = start + HANDSHAKE_TIMEOUT + Duration::from_millis(100);
    while let Some(r) = c.flows.pop_due(late) {
        c.t.timer(&mut c.flows, r, late, c.link, &c.ev, &mut c.tx);
    }
    assert!(!c.is_open(4001));
    let out = c.out();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].1.flags,
        Flags::RST | Flags::ACK,
        "the guest's connect fails"
    );
    assert_eq!(out[0].1.ack, 1001, "acknowledging its SYN");
}

#[test]
fn a_full_send_buffer_reopens_our_window_on_the_sockets_event() {
    for no_peek_off in [false, true] {
        let mut r = Rig::new(no_peek_off);
        // A small send buffer and a peer that doesn't read yet: our window
        // shuts after a few hundred KiB of the guest's 1000-byte segments.
        setsockopt(&r.conn().sock, sockopt::SndBuf, &(64 << 10)).unwrap();
        let chunk = [7u8; 1000];
        let mut sent = 0usize;
        let mut window = usize::from(u16::MAX);
        while window >= chunk.len() {
            assert!(sent < 64 << 20, "our window never shut");
            let h = TcpRepr {
                flags: Flags::ACK | Flags::PSH,
                ..r.hdr()
            };
            r.send(&h, &chunk);
            let out = r.out();
            let (ack, _) = out.last().expect("an ACK for every segment");
            // Our window is a promise: whatever the guest sends inside it
            // is taken at once, never left for the guest to send again.
            assert_eq!(ack.ack, r.gseq.wrapping_add(1000), "after {sent} bytes");
            r.gseq = r.gseq.wrapping_add(1000);
            sent += chunk.len();
            window = usize::from(ack.window);
            // Never more full-size segments in flight than the tap's queue
            // takes.
            let c = r.conn();
            assert!(
                c.adv_wnd <= GUEST_SEGMENTS_IN_FLIGHT * c.mss,
                "{}",
                c.adv_wnd
            );
        }
        // The peer reads everything now. No timer runs: the window update
        // must come from the socket's own event, once room is freed.
        let mut peer = r.peer.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0;
            while got < sent {
                match peer.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
            }
            (got, peer)
        });
        let until = Instant::now() + Duration::from_secs(5);
        let reopened = loop {
            r.pump(20);
            let out = r.out();
            if let Some((h, _)) = out.iter().find(|(h, p)| p.is_empty() && h.window > 1000) {
                break h.window;
            }
            assert!(Instant::now() < until, "no window update without a timer");
        };
        assert!(usize::from(reopened) >= 8 * chunk.len(), "{reopened}");
        let (got, peer) = reader.join().unwrap();
        assert_eq!(got, sent);
        r.peer = Some(peer);
        // And the guest goes on.
        let h = TcpRepr {
            flags: Flags::ACK | Flags::PSH,
            ..r.hdr()
        };
        r.send(&h, &chunk);
        let out = r.out();
        assert_eq!(out.last().unwrap().0.ack, r.gseq.wrapping_add(1000));
    }
}

#[test]
fn in_a_batch_in_order_data_waits_for_one_ack_and_gaps_are_answered_at_once() {
    for no_peek_off in [false, true] {
        let mut r = Rig::new(no_peek_off);
        let base = r.gseq;
        let chunk = |off: u32| vec![(off / 1000) as u8; 1000];
        r.t.begin_batch(&[], 3);
        for off in [0, 1000, 2000] {
            let h = r.data_at(base, off);
            r.send(&h, &chunk(off));
        }
        assert!(r.out().is_empty(), "in-order data: the ACK waits");
        // Past a gap: a duplicate ACK at once, which also covers the rest.
        let h = r.data_at(base, 4000);
        r.send(&h, &chunk(4000));
        let out = r.out();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.ack, base.wrapping_add(3000));
        // The gap filled: it and the held segment go, acknowledged at once.
        let h = r.data_at(base, 3000);
        r.send(&h, &chunk(3000));
        let out = r.out();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.ack, base.wrapping_add(5000));
        r.t.end_batch(&mut r.flows, &[], r.link, &r.ev, &mut r.tx);
        assert!(r.out().is_empty(), "nothing owed any more");
        // Next batch: one ACK at its end, with our window.
        r.t.begin_batch(&[], 3);
        let h = r.data_at(base, 5000);
        r.send(&h, &chunk(5000));
        let h = r.data_at(base, 6000);
        r.send(&h, &chunk(6000));
        assert!(r.out().is_empty());
        r.t.end_batch(&mut r.flows, &[], r.link, &r.ev, &mut r.tx);
        let out = r.out();
        assert_eq!(out.len(), 1, "one ACK for the batch");
        assert_eq!(out[0].0.ack, base.wrapping_add(7000));
        assert!(out[0].0.window > 0);
        // Everything reached the peer, in order.
        use std::io::Read;
        let mut got = vec![0u8; 7000];
        r.peer.as_ref().unwrap().read_exact(&mut got).unwrap();
        let want: Vec<u8> = (0..7u8).flat_map(|i| [i; 1000]).collect();
        assert_eq!(got, want);
    }
}

/// What reached the host peer within `ms` milliseconds, up to `max` bytes.
fn peer_got(r: &Rig, max: usize, ms: u64) -> usize {
    use std::io::Read;
    let mut peer = r.peer.as_ref().unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(ms)))
        .unwrap();
    let mut buf = vec![0u8; max];
    let mut got = 0;
    while got < max {
        match peer.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

#[test]
fn pure_acks_in_a_batch_push_once_at_its_end() {
    for no_peek_off in [false, true] {
        let mut r = Rig::new(no_peek_off);
        // A window of two segments, as a receiver keeping up would leave.
        r.ack(0, 2000);
        let sent = data_only(&r.peer_writes(10_000));
        assert_eq!(
            sent,
            vec![
                (r.iss.wrapping_add(1), 1000),
                (r.iss.wrapping_add(1001), 1000)
            ]
        );
        // Each ACK opens the window by a segment. Pushed at each one, the
        // first would send a segment before the second is read; pushed
        // once, both segments go in one peek at the batch's end.
        r.t.begin_batch(&[], 2);
        r.ack(1000, 2000);
        r.ack(2000, 2000);
        assert!(r.out().is_empty(), "nothing pushed while the batch lasts");
        r.t.end_batch(&mut r.flows, &[], r.link, &r.ev, &mut r.tx);
        let out = r.out();
        let base = r.iss.wrapping_add(1);
        assert_eq!(
            data_only(&out),
            vec![
                (base.wrapping_add(2000), 1000),
                (base.wrapping_add(3000), 1000)
            ]
        );
        // What was acknowledged left the socket first: the bytes are the
        // ones that follow, with or without SO_PEEK_OFF.
        assert_eq!(out[0].1, pattern(2000, 1000));
        assert_eq!(out[1].1, pattern(3000, 1000));
        // Outside a batch, an ACK pushes at once.
        r.ack(3000, 2000);
        let out = r.out();
        assert_eq!(data_only(&out), vec![(base.wrapping_add(4000), 1000)]);
        assert_eq!(out[0].1, pattern(4000, 1000));
    }
}

#[test]
fn a_batch_gathers_a_connections_data_and_pushes_it_at_its_end() {
    let mut r = Rig::new(false);
    let base = r.gseq;
    // A peer that delays its ACKs (40 ms at least): with Nagle on our
    // socket, the second small write would wait for the ACK of the first.
    sys::tcp::delay_acks(r.peer.as_ref().unwrap().as_fd()).unwrap();
    let h = r.data_at(base, 0);
    r.send(&h, &[1; 100]);
    let h = r.data_at(base, 100);
    r.send(&h, &[2; 100]);
    assert_eq!(peer_got(&r, 200, 20), 200, "small writes not held back");
    // Once the peer acknowledged it all, no ACK can come to release what
    // the batch below holds back: only the push at its end.
    let until = Instant::now() + Duration::from_secs(2);
    while sys::tcp::outq(r.conn().sock.as_fd()).unwrap() > 0 {
        assert!(Instant::now() < until, "never acknowledged");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Several frames: the kernel holds the small segments back (MSG_MORE)
    // until the batch ends. Without the push it would wait for a timer of
    // 200 ms or more.
    r.t.begin_batch(&[], 3);
    for off in [200, 300, 400] {
        let h = r.data_at(base, off);
        r.send(&h, &[3; 100]);
    }
    assert_eq!(peer_got(&r, 300, 50), 0, "held while the batch lasts");
    r.t.end_batch(&mut r.flows, &[], r.link, &r.ev, &mut r.tx);
    assert_eq!(peer_got(&r, 300, 100), 300, "pushed at the batch's end");
    // A batch of one frame, as a request is: sent at once.
    r.t.begin_batch(&[], 1);
    let h = r.data_at(base, 500);
    r.send(&h, &[4; 100]);
    assert_eq!(peer_got(&r, 100, 100), 100, "sent before the batch ends");
    r.t.end_batch(&mut r.flows, &[], r.link, &r.ev, &mut r.tx);
}

#[test]
fn a_batch_gathers_a_runs_data_into_one_send_acknowledged_once_it_went() {
    let mut r = Rig::new(false);
    let base = r.gseq;
    let chunk = |off: u32| vec![(off / 1000) as u8 + 1; 1000];
    let segs: Vec<_> = (0..4u32)
        .map(|i| (r.data_at(base, i * 1000), chunk(i * 1000)))
        .collect();
    let (buf, at) = r.batch_of(&segs);
    r.t.begin_batch(&buf, 4);
    for range in &at[..3] {
        assert_eq!(
            r.offer_in(&buf[range.clone()], &buf, false),
            Ok(Taken::Done)
        );
    }
    assert_eq!(peer_got(&r, 3000, 30), 0, "gathered, not yet sent");
    assert_eq!(r.conn().rcv_nxt, base, "nothing taken yet");
    // A segment acknowledging what we never sent gets an ACK at once: it
    // must not cover the gathered data, which isn't in the socket.
    let mut bogus = r.data_at(base, 3000);
    bogus.ack = r.iss.wrapping_add(1_000_000);
    let b = r.segment_bytes(&bogus, &[9; 10]);
    assert_eq!(r.offer_in(&b, &buf, false), Ok(Taken::Done));
    let out = r.out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.ack, base, "only what the socket holds");
    // The run goes on and is sent in one call at the batch's end, with
    // one ACK for all of it.
    assert_eq!(
        r.offer_in(&buf[at[3].clone()], &buf, false),
        Ok(Taken::Done)
    );
    assert!(r.out().is_empty());
    r.t.end_batch(&mut r.flows, &buf, r.link, &r.ev, &mut r.tx);
    let out = r.out();
    assert_eq!(out.len(), 1, "one ACK for the batch");
    assert_eq!(out[0].0.ack, base.wrapping_add(4000));
    use std::io::Read;
    let mut got = vec![0u8; 4000];
    r.peer.as_ref().unwrap().read_exact(&mut got).unwrap();
    let want: Vec<u8> = (0..4u32).flat_map(|i| chunk(i * 1000)).collect();
    assert_eq!(got, want);
}

#[test]
fn whatever_ends_a_run_is_answered_with_the_run_in_the_socket() {
    use std::io::Read;
    let mut r = Rig::new(false);
    let base = r.gseq;
    let chunk = |off: u32| vec![(off / 1000) as u8 + 1; 1000];
    // Two in order, one past a gap, then a FIN right after the first two.
    let mut fin = r.data_at(base, 2000);
    fin.flags = Flags::ACK | Flags::FIN;
    let segs = vec![
        (r.data_at(base, 0), chunk(0)),
        (r.data_at(base, 1000), chunk(1000)),
        (r.data_at(base, 3000), chunk(3000)),
        (fin, Vec::new()),
    ];
    let (buf, at) = r.batch_of(&segs);
    r.t.begin_batch(&buf, 4);
    for range in &at[..2] {
        assert_eq!(
            r.offer_in(&buf[range.clone()], &buf, false),
            Ok(Taken::Done)
        );
    }
    assert!(r.out().is_empty());
    // Past the gap: the run goes to the socket first, so the duplicate ACK
    // asks for the byte after it.
    assert_eq!(
        r.offer_in(&buf[at[2].clone()], &buf, false),
        Ok(Taken::Done)
    );
    let out = r.out();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.ack, base.wrapping_add(2000));
    let mut got = vec![0u8; 2000];
    r.peer.as_ref().unwrap().read_exact(&mut got).unwrap();
    // The FIN is taken, and with it the end of the stream.
    assert_eq!(
        r.offer_in(&buf[at[3].clone()], &buf, false),
        Ok(Taken::Done)
    );
    r.t.end_batch(&mut r.flows, &buf, r.link, &r.ev, &mut r.tx);
    let out = r.out();
    assert_eq!(out.last().unwrap().0.ack, base.wrapping_add(2001));
    let mut rest = Vec::new();
    r.peer.as_ref().unwrap().read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the held segment past the FIN never went");
}

#[test]
fn a_run_whose_connection_closed_is_dropped_unacknowledged() {
    let mut r = Rig::new(false);
    let base = r.gseq;
    let mut rst = r.data_at(base, 1000);
    rst.flags = Flags::RST;
    let segs = vec![(r.data_at(base, 0), vec![1; 1000]), (rst, Vec::new())];
    let (buf, at) = r.batch_of(&segs);
    r.t.begin_batch(&buf, 2);
    assert_eq!(
        r.offer_in(&buf[at[0].clone()], &buf, false),
        Ok(Taken::Done)
    );
    // The RST is at the next byte after the run, which went first.
    assert_eq!(
        r.offer_in(&buf[at[1].clone()], &buf, false),
        Ok(Taken::Done)
    );
    assert!(!r.is_open());
    r.t.end_batch(&mut r.flows, &buf, r.link, &r.ev, &mut r.tx);
    assert!(
        r.out().is_empty(),
        "nothing to acknowledge on a reset connection"
    );
}

#[test]
fn a_run_of_peeked_segments_is_in_order_and_within_the_window() {
    let mut r = Rig::new(false);
    let isn = r.iss.wrapping_add(1);
    // 5500 bytes come as six segments (one peek, `Conn::peek_run`), one
    // MSS each but the last, with the right sequence numbers, checksums
    // (`out` parses them) and data.
    let out = r.peer_writes(5500);
    let got = data_only(&out);
    let want: Vec<_> = (0..6u32)
        .map(|i| (isn.wrapping_add(i * 1000), if i < 5 { 1000 } else { 500 }))
        .collect();
    assert_eq!(got, want);
    let data: Vec<u8> = out.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(data, pattern(0, 5500));
    assert_eq!(r.conn().snd_nxt, isn.wrapping_add(5500));
    // A window of 2500 bytes cuts the next run there.
    r.ack(5500, 2500);
    assert!(r.out().is_empty());
    let got = data_only(&r.peer_writes(5000));
    let at = isn.wrapping_add(5500);
    assert_eq!(
        got,
        [
            (at, 1000),
            (at.wrapping_add(1000), 1000),
            (at.wrapping_add(2000), 500)
        ]
    );
}
