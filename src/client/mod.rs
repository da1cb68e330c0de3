//! Client side: what a client makes of a PUSH_REPLY (`pushed`) and the client process (`run`):
//! connect, apply pushed configuration through netlink, forward, reconnect, clean up.

pub mod pushed;
pub mod run;
