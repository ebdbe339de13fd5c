//! Packet views and builders: bytes only, no configuration, flows or policy.
//!
//! Each format has a view over a byte buffer (`Frame`, `Packet`) whose
//! `new_checked` validates lengths once, after which no accessor can panic,
//! and where useful a parsed `Repr` with `parse` and `emit`.

pub mod arp;
pub mod checksum;
pub mod compose;
pub mod ethernet;
pub mod icmp_error;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use ethernet::{EtherType, Mac};
pub use ip::IpProtocol;

/// Why a buffer could not be viewed as a given format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the format's fixed header.
    #[error("truncated")]
    Truncated,
    /// A field holds a value this format does not allow.
    #[error("malformed")]
    Malformed,
}
