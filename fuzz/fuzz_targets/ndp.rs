//! Fuzz the NDP responder (`l2::ndp::reply`) with guest messages: an IPv6
//! header made from the input's first bytes, the rest as the ICMPv6 message.
//!
//! Input layout: byte 0 holds flags, then 16 bytes of source and 16 of
//! destination address; everything after is the message. Random bytes
//! almost never carry a valid checksum or hop limit 255, so the flags can
//! supply them and let the fuzzer reach the code past those checks:
//!
//! - bit 0: fill in the correct ICMPv6 checksum;
//! - bit 1: hop limit 255 (otherwise byte 0 itself is the hop limit);
//! - bit 2: source `::` (duplicate address detection, RS before an address).
//!
//! Answers come from the fixed configuration in `common.rs` (NDP, RA and
//! every RA option on). Every reply must parse back as an Ethernet, IPv6,
//! ICMPv6 frame with hop limit 255 and a correct checksum.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use passt_rs::conf::Config;
use passt_rs::l2::ndp;
use passt_rs::wire::IpProtocol;
use passt_rs::wire::ethernet::Frame;
use passt_rs::wire::icmpv6::Packet;
use passt_rs::wire::ipv6::{self, Ipv6Repr};
use std::net::Ipv6Addr;
use std::sync::OnceLock;

/// Flags byte, source and destination addresses.
const HEADER_LEN: usize = 1 + 16 + 16;

static CONF: OnceLock<Config> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<HEADER_LEN>() else {
        return;
    };
    let flags = head[0];
    let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
    let src = if flags & 4 != 0 {
        Ipv6Addr::UNSPECIFIED
    } else {
        addr(&head[1..17])
    };
    let dst = addr(&head[17..33]);
    // An IPv6 payload is at most 65535 bytes.
    let mut msg = body[..body.len().min(usize::from(u16::MAX))].to_vec();
    if flags & 1 != 0 && msg.len() >= 4 {
        Packet::new_unchecked(&mut msg[..]).fill_checksum(src, dst);
    }
    let ip = Ipv6Repr {
        src,
        dst,
        next_header: IpProtocol::Icmpv6,
        payload_len: msg.len(),
        hop_limit: if flags & 2 != 0 { 255 } else { flags },
    };
    let conf = CONF.get_or_init(common::config);
    let mut out = vec![0u8; common::OUT_LEN];
    let Ok(n) = ndp::reply(conf, common::GUEST_MAC, &ip, &msg, &mut out) else {
        return;
    };
    if n == 0 {
        return;
    }
    let frame = Frame::new_checked(&out[..n]).expect("reply frame");
    let packet = ipv6::Packet::new_checked(frame.payload()).expect("reply IPv6 packet");
    let reply_ip = Ipv6Repr::parse(&packet).expect("reply IPv6 header");
    assert_eq!(reply_ip.hop_limit, 255);
    let icmp = Packet::new_checked(packet.payload()).expect("reply ICMPv6 message");
    assert!(icmp.verify_checksum(reply_ip.src, reply_ip.dst));
    icmp.ndp_options()
        .expect("reply is NDP")
        .validate()
        .expect("reply options");
});
