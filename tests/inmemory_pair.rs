//! In-memory fwd client ↔ fwd server: the sans-IO control planes (`Session`, `ServerCore`)
//! and the data-channel keys they produce, driven over a simulated link with a fake clock.
//! No sockets, no tun, no real time (issue #3).

#[path = "common/pair.rs"]
mod pair;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use fwd::client::pushed::IfconfigV4;
use fwd::proto::data::{Cipher, DropReason};
use fwd::proto::messages::{IV_PROTO_FWD, IV_PROTO_TLS_KEY_EXPORT};
use fwd::proto::session::CloseReason;
use fwd::proto::wire::{ControlPacket, KeyId, Opcode, SessionId};
use fwd::proto::wrap::ReplayId;

use pair::{ipv4_packet, ipv6_packet, Dir, Fate, Options, Pair, Received, Seen, Wrap};

const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const SECS: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn server_v6() -> Ipv6Addr {
    "fd00:8::1".parse().unwrap()
}

fn opts(wrap: Wrap) -> Options {
    Options { wrap, ..Options::default() }
}

/// The client's tunnel addresses from its PUSH_REPLY.
fn client_addrs(p: &Pair) -> (Ipv4Addr, Ipv6Addr) {
    let pushed = p.pushed.as_ref().expect("pushed");
    let v4 = match pushed.ifconfig {
        Some(IfconfigV4::Subnet { addr, .. }) => addr,
        other => panic!("unexpected ifconfig {other:?}"),
    };
    let v6 = pushed.ifconfig_ipv6.expect("ifconfig-ipv6").0;
    (v4, v6)
}

/// One IPv4 and one IPv6 packet each way; every one must arrive decrypted and unchanged.
fn exchange_data(p: &mut Pair, tag: u32) {
    let (c4, c6) = client_addrs(p);
    let up4 = ipv4_packet(c4, SERVER_V4, tag);
    let up6 = ipv6_packet(c6, server_v6(), tag + 1);
    let down4 = ipv4_packet(SERVER_V4, c4, tag + 2);
    let down6 = ipv6_packet(server_v6(), c6, tag + 3);
    let (srx, crx) = (p.server_rx.len(), p.client_rx.len());
    let k1 = p.client_send_data(&up4).expect("client has a tx key");
    let k2 = p.client_send_data(&up6).expect("client has a tx key");
    let k3 = p.server_send_data(&down4).expect("server has a tx key");
    let k4 = p.server_send_data(&down6).expect("server has a tx key");
    p.pump();
    assert_eq!(
        p.server_rx[srx..],
        [Received { key_id: k1, plain: up4 }, Received { key_id: k2, plain: up6 }],
        "server drops: {:?}",
        p.server_drops
    );
    assert_eq!(
        p.client_rx[crx..],
        [Received { key_id: k3, plain: down4 }, Received { key_id: k4, plain: down6 }],
        "client drops: {:?}",
        p.client_drops
    );
}

fn pushed_has(p: &Pair, line: &str) -> bool {
    p.client_seen.iter().any(|s| matches!(s, Seen::PushReply(o) if o.iter().any(|l| l == line)))
}

fn full_handshake(wrap: Wrap) -> Pair {
    let mut p = Pair::new(&opts(wrap));
    assert!(p.handshake(SECS(10)), "no handshake ({wrap:?}): client {:?} server {:?}", p.client_seen, p.server_seen);
    let pushed = p.pushed.clone().expect("PUSH_REPLY");
    assert_eq!(
        pushed.ifconfig,
        Some(IfconfigV4::Subnet { addr: Ipv4Addr::new(10, 8, 0, 2), netmask: Ipv4Addr::new(255, 255, 255, 0) })
    );
    let (v6, bits, remote) = pushed.ifconfig_ipv6.expect("ifconfig-ipv6");
    assert_eq!((bits, remote), (64, server_v6()));
    assert!(v6.segments()[..4] == [0xfd00, 8, 0, 0] && v6 != server_v6(), "v6 {v6}");
    assert_eq!(pushed.peer_id, Some(0));
    assert_eq!(pushed.cipher.as_deref(), Some("AES-256-GCM"));
    assert!(p.server_seen.contains(&Seen::PeerUp(0)));
    assert!(p.client_seen.contains(&Seen::Keys { key_id: 0, tx_now: true }));
    assert!(p.server_seen.contains(&Seen::Keys { key_id: 0, tx_now: true }));
    assert_eq!(p.client_blocks.get(&0), p.server_blocks.get(&0), "key blocks differ");
    assert_eq!(p.server.peer_count(), 1);
    assert_eq!(p.client.data_params().map(|d| d.cipher), Some(Cipher::Aes256Gcm));
    exchange_data(&mut p, 100);
    exchange_data(&mut p, 200);
    p
}

#[test]
fn handshake_and_data_tls_crypt() {
    let p = full_handshake(Wrap::TlsCrypt);
    assert!(p.server.stats.cookie_replies == 1 && p.server.stats.sessions_created == 1);
}

#[test]
fn handshake_and_data_tls_auth() {
    full_handshake(Wrap::TlsAuth);
}

#[test]
fn handshake_and_data_no_wrap() {
    full_handshake(Wrap::None);
}
