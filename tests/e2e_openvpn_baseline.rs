//! Baseline for the end-to-end lab: real openvpn 2.6 server <-> two real openvpn clients.
//!
//! Proves the lab, the PKI fixture and the scenario's expectations against the reference
//! implementation; `tests/e2e_*` for fwd run the same scenario with `ServerKind::Fwd`.
//! Needs root, /dev/net/tun, `ip`, `openvpn`, `openssl`, `ping` (installed by `.ci/run`);
//! skips with a message elsewhere, fails under CI.

mod common;

use common::scenario::{run_server_scenario, ServerKind, Underlay};

#[test]
fn openvpn_server_ipv4_underlay() {
    run_server_scenario(ServerKind::OpenVpn, Underlay::V4);
}

#[test]
fn openvpn_server_ipv6_underlay() {
    run_server_scenario(ServerKind::OpenVpn, Underlay::V6);
}
