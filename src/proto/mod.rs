//! Sans-IO OpenVPN 2.6 protocol core. Nothing here touches a socket, a file or a clock:
//! every input carries `now`, every output is bytes, events or a timer.

pub mod data;
pub mod keys;
pub mod messages;
pub mod reliable;
pub mod session;
pub mod tls;
pub mod wire;
pub mod wrap;
