//! passt-rs: user-mode networking for virtual machines (passt) and network
//! namespaces (pasta), translating a guest's Ethernet frames into ordinary
//! host sockets.
//!
//! A frame walks the modules in this order (see ARCHITECTURE.md):
//! `tap` (framing) → `dispatch` (by ethertype/protocol) → `l2` (ARP, later
//! NDP/DHCP) or the L4 handlers → host sockets; replies are built with
//! `wire` and queued back on the `tap`.

pub mod app;
pub mod cli;
pub mod conf;
pub mod dgram;
pub mod dispatch;
pub mod errqueue;
pub mod event;
pub mod flow;
pub mod fwd;
pub mod icmp;
pub mod isolate;
pub mod l2;
pub mod log;
pub mod netlink;
pub mod ns;
pub mod passt;
pub mod pasta;
pub mod pcap;
pub mod serve;
pub mod startup;
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
pub mod tap;
pub mod tcp;
pub mod udp;
pub mod wire;
