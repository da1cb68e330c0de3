//! Fuzzes the control-packet codec and the reliability layer: parsing must never panic,
//! every accepted packet must re-encode to exactly the input, and feeding it to a
//! `Reliable` instance (then polling) must never panic.
#![no_main]

use std::time::{Duration, Instant};

use fwd::proto::reliable::{Reliable, ReliableConfig};
use fwd::proto::wire::{ControlPacket, KeyId, SessionId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pkt) = ControlPacket::parse(data) else {
        return;
    };
    assert_eq!(pkt.to_bytes(), data, "parse/encode not byte-exact");
    assert!(pkt.acks.len() <= 8);
    assert_eq!(pkt.acks.is_empty(), pkt.remote_session_id.is_none());

    let t0 = Instant::now();
    let cfg = ReliableConfig {
        initial_timeout: Duration::from_secs(2),
        max_payload: 64,
    };
    // Our own session id equals the packet's peer sid half the time so ACKs get applied.
    let local = pkt.remote_session_id.unwrap_or(SessionId([0x42; 8]));
    let mut r = Reliable::new(local, KeyId::ZERO, t0, cfg);
    r.queue_tls_bytes(&pkt.payload);
    while r.poll_transmit(t0).is_some() {}
    let _ = r.handle_packet(t0, &pkt);
    while r.pop_received().is_some() {}
    let later = t0 + Duration::from_secs(3);
    while let Some(out) = r.poll_transmit(later) {
        assert!(out.acks.len() <= 8);
        let bytes = out.to_bytes();
        assert_eq!(ControlPacket::parse(&bytes).ok(), Some(out));
    }
    let _ = r.poll_timeout();
});
