//! The "virtual gateway": link-layer and configuration protocols we answer
//! ourselves. Handlers are pure: a parsed request and the configuration in,
//! an optional reply out; the caller (`dispatch`) emits it.

pub mod arp;
