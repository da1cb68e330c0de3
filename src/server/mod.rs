//! Multi-client server: the sans-IO control plane (`core`: cookie handshake, sessions, peer
//! ids, ccd application, addresses, push building in `push`) and the server process (`run`).

pub mod core;
pub mod push;
pub mod run;
