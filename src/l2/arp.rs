//! ARP responder: every IPv4 address except the guest's own is behind us.

use crate::wire::Mac;
use crate::wire::arp::{ArpRepr, Operation};
use std::net::Ipv4Addr;

/// Answer an ARP request on behalf of the gateway and every remote host.
///
/// `guest_addr` is the address the guest is known to use (configured or
/// seen); we must never claim it, or the guest's duplicate address
/// detection (RFC 5227 probes, sender 0.0.0.0) would fail. Gratuitous ARP
/// (target equal to sender) announces the guest's own address and gets no
/// answer either.
pub fn reply(req: &ArpRepr, guest_addr: Option<Ipv4Addr>, our_mac: Mac) -> Option<ArpRepr> {
    if req.operation != Operation::Request {
        return None;
    }
    if req.target_ip == req.sender_ip || Some(req.target_ip) == guest_addr {
        return None;
    }
    // RFC 5227 2.1.1: a probe (sender 0.0.0.0) asks whether anyone owns
    // the target; the guest probes addresses it wants for itself, so
    // answering would make it give them up.
    if req.sender_ip.is_unspecified() {
        return None;
    }
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
            let r = reply(&req(GUEST, target), Some(GUEST), OURS).unwrap();
            assert_eq!(r.operation, Operation::Reply);
            assert_eq!(r.sender_mac, OURS);
            assert_eq!(r.sender_ip, target);
            assert_eq!(r.target_mac, GUEST_MAC);
            assert_eq!(r.target_ip, GUEST);
        }
    }

    #[test]
    fn silent_cases() {
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let cases = [
            (
                "guest's own address",
                req(Ipv4Addr::new(192, 0, 2, 9), GUEST),
            ),
            ("gratuitous", req(gw, gw)),
            ("probe", req(Ipv4Addr::UNSPECIFIED, gw)),
            (
                "reply",
                ArpRepr {
                    operation: Operation::Reply,
                    ..req(GUEST, gw)
                },
            ),
        ];
        for (what, r) in cases {
            assert_eq!(reply(&r, Some(GUEST), OURS), None, "{what}");
        }
    }
}
