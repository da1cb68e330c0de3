//! fwd: an OpenVPN 2.6 wire-compatible VPN server and client with first-class IPv6 payload.
//!
//! Layout follows `design.md`: the protocol core (`proto`, `server`, `client`) is sans-IO;
//! `dataplane` and `os` own every socket, tun queue and netlink call.

pub mod cli;
pub mod client;
pub mod config;
pub mod dataplane;
pub mod demo;
pub mod loadgen;
pub mod mgmt;
pub mod os;
pub mod pki;
pub mod plan;
pub mod pool;
pub mod proto;
pub mod route;
pub mod server;
