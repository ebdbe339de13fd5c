//! ARP responder: every IPv4 address except the guest's own is behind us.

use crate::wire::Mac;
use crate::wire::arp::{ArpRepr, Operation};
use std::net::Ipv4Addr;

/// Answer an ARP request on behalf of the gateway and every remote host.
///
/// `guest_addrs` are the addresses the guest uses or may use (configured,
/// or seen as a sender): we never claim those, so the guest's duplicate
/// address detection for them succeeds. Every other address is ours,
/// probes included, as Linux answers for its own addresses.
pub fn reply(req: &ArpRepr, guest_addrs: &[Ipv4Addr], our_mac: Mac) -> Option<ArpRepr> {
    if req.operation != Operation::Request || guest_addrs.contains(&req.target_ip) {
        return None;
    }
    // RFC 5227 2.3: "Having probed to determine that a desired address
    // may be used safely, a host implementing this specification MUST
    // then announce that it is commencing to use the address by
    // broadcasting ANNOUNCE_NUM ARP Announcements". An announcement
    // (gratuitous ARP) has the address as both sender and target: the
    // guest claims it, nothing to answer. No one owns 0.0.0.0 either.
    if req.target_ip == req.sender_ip || req.target_ip.is_unspecified() {
        return None;
    }
    // RFC 5227 2.1.1: "If during this period, from the beginning of the
    // probing process until ANNOUNCE_WAIT seconds after the last probe
    // packet is sent, the host receives any ARP packet (Request *or*
    // Reply) on the interface where the probe is being performed, where
    // the packet's 'sender IP address' is the address being probed for,
    // then the host MUST treat this address as being in use by some other
    // host". So a probe for the gateway or a remote address is answered:
    // the guest must not take an address we stand for. As Linux does, the
    // reply goes to the prober's MAC and its target IP is the probe's
    // sender, 0.0.0.0.
    Some(ArpRepr {
        operation: Operation::Reply,
        sender_mac: our_mac,
        sender_ip: req.target_ip,
        target_mac: req.sender_mac,
        target_ip: req.sender_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Mac = Mac([0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55]);
    const GUEST_MAC: Mac = Mac([2, 0, 0, 0, 0, 1]);
    const GUEST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    fn req(sender: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: Operation::Request,
            sender_mac: GUEST_MAC,
            sender_ip: sender,
            target_mac: Mac::ZERO,
            target_ip: target,
        }
    }

    #[test]
    fn answers_gateway_and_remote() {
        for target in [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)] {
            let r = reply(&req(GUEST, target), &[GUEST], OURS).unwrap();
            assert_eq!(r.operation, Operation::Reply);
            assert_eq!(r.sender_mac, OURS);
            assert_eq!(r.sender_ip, target);
            assert_eq!(r.target_mac, GUEST_MAC);
            assert_eq!(r.target_ip, GUEST);
        }
    }

    #[test]
    fn probe_for_our_address_is_answered_as_linux_does() {
        // Captured from Linux answering busybox `arping -D` for one of its
        // addresses: our MAC and the probed address as sender, the
        // prober's MAC and 0.0.0.0 as target.
        for target in [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)] {
            let probe = ArpRepr {
                target_mac: Mac::BROADCAST,
                ..req(Ipv4Addr::UNSPECIFIED, target)
            };
            let r = reply(&probe, &[GUEST], OURS).unwrap();
            assert_eq!(
                r,
                ArpRepr {
                    operation: Operation::Reply,
                    sender_mac: OURS,
                    sender_ip: target,
                    target_mac: GUEST_MAC,
                    target_ip: Ipv4Addr::UNSPECIFIED,
                }
            );
        }
    }

    #[test]
    fn silent_cases() {
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let seen = Ipv4Addr::new(192, 0, 2, 77);
        let cases = [
            (
                "guest's own address",
                req(Ipv4Addr::new(192, 0, 2, 9), GUEST),
            ),
            (
                "probe for the guest's address",
                req(Ipv4Addr::UNSPECIFIED, GUEST),
            ),
            (
                "probe for the address seen",
                req(Ipv4Addr::UNSPECIFIED, seen),
            ),
            ("request for the address seen", req(GUEST, seen)),
            ("gratuitous", req(gw, gw)),
            ("gratuitous, guest's address", req(GUEST, GUEST)),
            (
                "all zero",
                req(Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED),
            ),
            ("for 0.0.0.0", req(GUEST, Ipv4Addr::UNSPECIFIED)),
            (
                "reply",
                ArpRepr {
                    operation: Operation::Reply,
                    ..req(GUEST, gw)
                },
            ),
        ];
        for (what, r) in cases {
            assert_eq!(reply(&r, &[GUEST, seen], OURS), None, "{what}");
        }
    }
}
