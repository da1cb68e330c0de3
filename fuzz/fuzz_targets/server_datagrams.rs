//! Fuzzes `ServerCore` with arbitrary datagram sequences: raw bytes from several addresses,
//! mutated / truncated / replayed genuine client datagrams, time jumps, renegotiations, client
//! restarts and server-side kills, with a real client session alongside so that inputs reach
//! established sessions. Nothing may panic. The driver is shared with the proptest in
//! `tests/server_datagrams.rs` (which runs in normal CI).
#![no_main]

#[path = "../../tests/common/pair.rs"]
mod pair;
#[path = "../../tests/common/server_ops.rs"]
mod server_ops;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    server_ops::run(data);
});
