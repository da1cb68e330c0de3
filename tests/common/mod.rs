//! Shared support for integration tests (`mod common;` in a tests/*.rs file).
//!
//! - [`lab`]: network-namespace lab (namespaces, veth underlay, processes, teardown);
//! - [`pki`]: test certificates and tls-crypt key;
//! - [`scenario`]: the reference server scenario with real openvpn clients, parameterized
//!   by the server program;
//! - [`net`]: fwd server + stock client hosts driven one by one, and a management client.
//!
//! Each test binary compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod lab;
pub mod net;
pub mod pki;
pub mod scenario;
