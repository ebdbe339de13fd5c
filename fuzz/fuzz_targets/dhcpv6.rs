//! Fuzz target: any UDP payload sent to port 547 must be answered or
//! dropped by `l2::dhcpv6::reply`, never panic.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static CONF: OnceLock<passt_rs::conf::Config> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let conf = CONF.get_or_init(common::config);
    let mut out = vec![0; common::OUT_LEN];
    let _ = passt_rs::l2::dhcpv6::reply(conf, common::GUEST_MAC, common::GUEST_LL, data, &mut out);
});
