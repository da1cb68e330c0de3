//! Fuzzes control-channel unwrapping (none, tls-auth SHA1/SHA256, tls-crypt) and the static
//! key parser: nothing may panic, a failed unwrap must leave the output buffer untouched,
//! and a successful unwrap must re-wrap to exactly the input bytes.
#![no_main]

use fwd::proto::wire::ControlPacket;
use fwd::proto::wrap::{Digest, KeyDirection, ReplayId, ReplayWindow, Role, StaticKey, WrapKeys};
use libfuzzer_sys::fuzz_target;

fn key() -> StaticKey {
    let mut b = [0u8; 256];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    StaticKey::from_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let _ = StaticKey::parse(data);
    let k = key();
    let modes = [
        WrapKeys::None,
        WrapKeys::tls_auth(&k, Some(KeyDirection::Normal), Digest::Sha1),
        WrapKeys::tls_auth(&k, None, Digest::Sha256),
        WrapKeys::tls_crypt(&k, Role::Server),
    ];
    // The sender of an accepted packet is the opposite role.
    let senders = [
        WrapKeys::None,
        WrapKeys::tls_auth(&k, Some(KeyDirection::Inverse), Digest::Sha1),
        WrapKeys::tls_auth(&k, None, Digest::Sha256),
        WrapKeys::tls_crypt(&k, Role::Client),
    ];
    for (rx, tx) in modes.iter().zip(senders.iter()) {
        let mut out = vec![0xEE];
        match rx.unwrap(data, &mut out) {
            Err(_) => assert_eq!(out, [0xEE]),
            Ok(rid) => {
                let plain = &out[1..];
                let _ = ControlPacket::parse(plain);
                let mut again = Vec::new();
                tx.wrap(rid.unwrap_or(ReplayId::default()), plain, &mut again)
                    .expect("unwrapped packet is at least a header");
                assert_eq!(again, data, "unwrap/wrap not byte-exact");
                if let Some(rid) = rid {
                    let mut w = ReplayWindow::default();
                    if w.check(rid, 0) {
                        w.commit(rid, 0);
                        assert!(!w.check(rid, 0));
                    }
                }
            }
        }
    }
});
