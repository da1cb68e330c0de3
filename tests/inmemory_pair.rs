//! In-memory fwd client ↔ fwd server: the sans-IO control planes (`Session`, `ServerCore`)
//! and the data-channel keys they produce, driven over a simulated link with a fake clock.
//! No sockets, no tun, no real time (issue #3).

#[path = "common/pair.rs"]
mod pair;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
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
    Options {
        wrap,
        ..Options::default()
    }
}

/// Default options plus config lines for the server and the client.
fn extra(server_extra: &str, client_extra: &str) -> Options {
    Options {
        server_extra: server_extra.into(),
        client_extra: client_extra.into(),
        ..Options::default()
    }
}

/// A pair with `o` that has completed its handshake within 10 s of fake time.
fn connected(o: &Options) -> Pair {
    let mut p = Pair::new(o);
    assert!(
        p.handshake(SECS(10)),
        "no handshake: client {:?} server {:?}",
        p.client_seen,
        p.server_seen
    );
    p
}

fn rx(key_id: u8, plain: Vec<u8>) -> Received {
    Received { key_id, plain }
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
        [rx(k1, up4), rx(k2, up6)],
        "server drops: {:?}",
        p.server_drops
    );
    assert_eq!(
        p.client_rx[crx..],
        [rx(k3, down4), rx(k4, down6)],
        "client drops: {:?}",
        p.client_drops
    );
}

fn pushed_has(p: &Pair, line: &str) -> bool {
    p.client_seen
        .iter()
        .any(|s| matches!(s, Seen::PushReply(o) if o.iter().any(|l| l == line)))
}

fn full_handshake(wrap: Wrap) -> Pair {
    let mut p = Pair::new(&opts(wrap));
    assert!(
        p.handshake(SECS(10)),
        "no handshake ({wrap:?}): client {:?} server {:?}",
        p.client_seen,
        p.server_seen
    );
    let pushed = p.pushed.clone().expect("PUSH_REPLY");
    assert_eq!(
        pushed.ifconfig,
        Some(IfconfigV4::Subnet {
            addr: Ipv4Addr::new(10, 8, 0, 2),
            netmask: Ipv4Addr::new(255, 255, 255, 0)
        })
    );
    let (v6, bits, remote) = pushed.ifconfig_ipv6.expect("ifconfig-ipv6");
    assert_eq!((bits, remote), (64, server_v6()));
    assert!(
        v6.segments()[..4] == [0xfd00, 8, 0, 0] && v6 != server_v6(),
        "v6 {v6}"
    );
    assert_eq!(pushed.peer_id, Some(0));
    assert_eq!(pushed.cipher.as_deref(), Some("AES-256-GCM"));
    assert!(p.server_seen.contains(&Seen::PeerUp(0)));
    assert!(p.client_seen.contains(&Seen::Keys {
        key_id: 0,
        tx_now: true
    }));
    assert!(p.server_seen.contains(&Seen::Keys {
        key_id: 0,
        tx_now: true
    }));
    assert_eq!(
        p.client_blocks.get(&0),
        p.server_blocks.get(&0),
        "key blocks differ"
    );
    assert_eq!(p.server.peer_count(), 1);
    assert_eq!(
        p.client.data_params().map(|d| d.cipher),
        Some(Cipher::Aes256Gcm)
    );
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

// ---- 2. key derivation: TLS-EKM and the PRF --------------------------------------------------

/// Handshake with `o`, then check both ends derived the same key block and data flows.
fn keys_match(o: &Options) -> Pair {
    let mut p = connected(o);
    let (c, s) = (p.client_blocks.get(&0), p.server_blocks.get(&0));
    assert!(
        c.is_some() && c == s,
        "key blocks differ between client and server"
    );
    exchange_data(&mut p, 300);
    p
}

#[test]
fn ekm_keys_match() {
    let p = keys_match(&Options::default());
    assert!(
        pushed_has(&p, "protocol-flags cc-exit tls-ekm"),
        "{:?}",
        p.client_seen
    );
    assert_eq!(p.client.data_params().map(|d| d.ekm), Some(true));
}

#[test]
fn server_force_prf_keys_match() {
    let o = extra("force-prf", "");
    let p = keys_match(&o);
    assert!(
        pushed_has(&p, "protocol-flags cc-exit"),
        "{:?}",
        p.client_seen
    );
    assert_eq!(p.client.data_params().map(|d| d.ekm), Some(false));
}

#[test]
fn client_without_key_export_uses_prf() {
    let o = Options {
        client_iv_proto: Some(IV_PROTO_FWD & !IV_PROTO_TLS_KEY_EXPORT),
        ..Options::default()
    };
    let p = keys_match(&o);
    assert!(!pushed_has(&p, "protocol-flags cc-exit tls-ekm"));
    assert_eq!(p.client.data_params().map(|d| d.ekm), Some(false));
}

#[test]
fn client_force_prf_keys_match() {
    let o = extra("", "force-prf");
    keys_match(&o);
}

#[test]
fn both_force_prf_keys_match() {
    let o = extra("force-prf", "force-prf");
    keys_match(&o);
}

// ---- 3. loss, reordering and duplication on the control channel -----------------------------

/// Every `n`th datagram (counted over both directions) gets `fate`.
fn every_nth(n: usize, fate: Fate) -> pair::Impair {
    let mut count = 0usize;
    Box::new(move |_, _| {
        count += 1;
        if count % n == 0 {
            fate.clone()
        } else {
            Fate::Deliver
        }
    })
}

/// Asserts that `p` completes its handshake within the hand window; returns the window.
fn assert_handshake_in_hand_window(p: &mut Pair) -> Duration {
    let hand_window = p.client_plan.session.hand_window;
    assert!(
        p.handshake(hand_window),
        "no handshake within {hand_window:?}: client {:?} server {:?}\n{}",
        p.client_seen,
        p.server_seen,
        p.trace.join("\n")
    );
    hand_window
}

fn handshake_within_hand_window(mut p: Pair) {
    let hand_window = assert_handshake_in_hand_window(&mut p);
    assert!(p.elapsed() < hand_window);
    assert_eq!(p.client_blocks.get(&0), p.server_blocks.get(&0));
    p.impair = None;
    exchange_data(&mut p, 400);
}

#[test]
fn handshake_survives_dropping_every_third_datagram() {
    for wrap in [Wrap::TlsCrypt, Wrap::TlsAuth, Wrap::None] {
        let mut p = Pair::new(&opts(wrap));
        p.impair = Some(every_nth(3, Fate::Drop));
        handshake_within_hand_window(p);
    }
}

#[test]
fn handshake_survives_dropping_every_second_datagram_each_way() {
    let mut p = Pair::new(&Options::default());
    // Counted per direction: a global count would drop every server reply forever.
    let (mut up, mut down) = (0usize, 0usize);
    p.impair = Some(Box::new(move |dir, _| {
        let n = match dir {
            Dir::ToServer => &mut up,
            Dir::ToClient => &mut down,
        };
        *n += 1;
        if *n % 2 == 0 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }));
    handshake_within_hand_window(p);
}

#[test]
fn handshake_survives_reordering_and_duplication() {
    let mut p = Pair::new(&Options::default());
    let mut count = 0usize;
    p.impair = Some(Box::new(move |_, _| {
        count += 1;
        match count % 5 {
            1 => Fate::Hold,
            3 => Fate::Duplicate,
            _ => Fate::Deliver,
        }
    }));
    handshake_within_hand_window(p);
}

#[test]
fn handshake_survives_loss_reordering_and_duplication_mixed() {
    for seed in 0..6u8 {
        let mut p = Pair::with_seed(&Options::default(), seed);
        let mut x = u32::from(seed) * 7919 + 1;
        p.impair = Some(Box::new(move |_, _| {
            // Small LCG: deterministic but irregular fates.
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            match (x >> 16) % 10 {
                0 | 1 => Fate::Drop,
                2 => Fate::Hold,
                3 => Fate::Duplicate,
                _ => Fate::Deliver,
            }
        }));
        handshake_within_hand_window(p);
    }
}

// ---- 4. renegotiation without losing data ----------------------------------------------------

/// Send one IPv4 packet each way every 100 ms of fake time until `until` holds (or `limit`),
/// checking that every packet sent is decrypted by the other side. Returns the tx key ids used
/// by (client, server), in order.
fn data_during(
    p: &mut Pair,
    limit: Duration,
    mut until: impl FnMut(&Pair) -> bool,
) -> (Vec<u8>, Vec<u8>) {
    let (c4, _) = client_addrs(p);
    let end = p.now + limit;
    let mut tag = 10_000u32;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let (mut up_keys, mut down_keys) = (Vec::new(), Vec::new());
    let (srx, crx) = (p.server_rx.len(), p.client_rx.len());
    let mut next = p.now;
    while !until(p) {
        assert!(
            p.now < end,
            "condition not reached within {limit:?}: client {:?} server {:?}",
            p.client_seen,
            p.server_seen
        );
        if p.now >= next {
            tag += 1;
            let a = ipv4_packet(c4, SERVER_V4, tag);
            let b = ipv4_packet(SERVER_V4, c4, tag);
            let ka = p.client_send_data(&a).expect("client tx key");
            let kb = p.server_send_data(&b).expect("server tx key");
            up.push(Received {
                key_id: ka,
                plain: a,
            });
            down.push(Received {
                key_id: kb,
                plain: b,
            });
            up_keys.push(ka);
            down_keys.push(kb);
            next = p.now + MS(100);
        }
        p.advance(MS(100));
    }
    p.pump();
    assert!(
        p.server_drops.is_empty(),
        "server dropped data: {:?}",
        p.server_drops
    );
    assert!(
        p.client_drops.is_empty(),
        "client dropped data: {:?}",
        p.client_drops
    );
    assert_eq!(p.server_rx[srx..], up[..]);
    assert_eq!(p.client_rx[crx..], down[..]);
    up_keys.dedup();
    down_keys.dedup();
    (up_keys, down_keys)
}

fn both_retired_key0(p: &Pair) -> bool {
    p.client_seen.contains(&Seen::KeyRetired(0)) && p.server_seen.contains(&Seen::KeyRetired(0))
}

fn check_after_reneg(p: &mut Pair, keys: (Vec<u8>, Vec<u8>)) {
    assert_eq!(
        keys,
        (vec![0, 1], vec![0, 1]),
        "tx key ids used (client, server)"
    );
    for seen in [&p.client_seen, &p.server_seen] {
        assert!(
            seen.contains(&Seen::Keys {
                key_id: 1,
                tx_now: false
            }),
            "{seen:?}"
        );
        assert!(seen.contains(&Seen::TxSwitch(1)), "{seen:?}");
    }
    assert!(p.client_blocks.contains_key(&1) && p.client_blocks.get(&1) == p.server_blocks.get(&1));
    assert_ne!(p.client_blocks.get(&0), p.client_blocks.get(&1));
    assert_eq!(p.client.primary_key_id(), 1);
    let (_, kc) = p.client_seal(b"x").expect("client tx");
    let (_, ks) = p.server_seal(b"x").expect("server tx");
    assert_eq!((kc, ks), (1, 1));
    exchange_data(p, 500);
    assert!(p.client_rx.iter().rev().take(2).all(|r| r.key_id == 1));
    assert!(p.server_rx.iter().rev().take(2).all(|r| r.key_id == 1));
    assert_eq!(p.server.peer_count(), 1);
    assert!(p.client_closed().is_none());
}

#[test]
fn client_initiated_renegotiation_loses_no_data() {
    // OpenVPN's tran-window default (3600 s) would keep the lame duck for an hour.
    let o = extra("tran-window 10", "tran-window 10");
    let mut p = connected(&o);
    data_during(&mut p, SECS(5), |p| p.elapsed() >= SECS(3));
    let now = p.now;
    p.client.start_renegotiation(now);
    let keys = data_during(&mut p, SECS(120), both_retired_key0);
    check_after_reneg(&mut p, keys);
}

#[test]
fn server_initiated_renegotiation_loses_no_data() {
    let o = extra(
        "reneg-sec 20\ntran-window 10",
        "reneg-sec 0\ntran-window 10",
    );
    let mut p = connected(&o);
    let keys = data_during(&mut p, SECS(120), both_retired_key0);
    assert!(p.elapsed() >= SECS(20), "renegotiated before reneg-sec");
    check_after_reneg(&mut p, keys);
}

#[test]
fn renegotiation_with_lossy_control_channel_loses_no_data() {
    let o = extra(
        "reneg-sec 20\ntran-window 10",
        "reneg-sec 0\ntran-window 10",
    );
    let mut p = connected(&o);
    let mut count = 0usize;
    p.impair = Some(Box::new(move |_, b| {
        if pair::is_data(b) {
            return Fate::Deliver;
        }
        count += 1;
        match count % 4 {
            0 => Fate::Drop,
            2 => Fate::Hold,
            _ => Fate::Deliver,
        }
    }));
    let keys = data_during(&mut p, SECS(180), both_retired_key0);
    p.impair = None;
    check_after_reneg(&mut p, keys);
}

#[test]
fn two_renegotiations_in_a_row() {
    let o = extra("reneg-sec 0\ntran-window 5", "reneg-sec 15\ntran-window 5");
    let mut p = connected(&o);
    let (up, down) = data_during(&mut p, SECS(120), |p| {
        p.client_seen.contains(&Seen::KeyRetired(1)) && p.server_seen.contains(&Seen::KeyRetired(1))
    });
    assert_eq!((up, down), (vec![0, 1, 2], vec![0, 1, 2]));
    assert_eq!(p.client_blocks.get(&2), p.server_blocks.get(&2));
}

// ---- 5. tampering and replay ------------------------------------------------------------------

#[test]
fn tampered_control_datagrams_are_dropped_and_retransmitted() {
    let mut p = Pair::new(&Options::default());
    let mut count = 0usize;
    p.impair = Some(Box::new(move |_, b| {
        count += 1;
        // The very first (the client's hard reset) and every 3rd after: flip one bit.
        if count == 1 || count % 3 == 0 {
            let mut t = b.to_vec();
            let i = 1 + (count * 7) % (t.len() - 1);
            t[i] ^= 0x10;
            Fate::Replace(t)
        } else {
            Fate::Deliver
        }
    }));
    handshake_within_hand_window_keep(&mut p);
    assert!(
        p.server.stats.dropped_unauthenticated >= 1,
        "{:?}",
        p.server.stats
    );
    assert_eq!(p.server.stats.sessions_created, 1);
}

fn handshake_within_hand_window_keep(p: &mut Pair) {
    assert_handshake_in_hand_window(p);
    p.impair = None;
    exchange_data(p, 600);
}

#[test]
fn tampered_data_packets_fail_the_tag() {
    let mut p = connected(&Options::default());
    let (c4, _) = client_addrs(&p);
    let pkt = ipv4_packet(c4, SERVER_V4, 1);
    let (wire, _) = p.client_seal(&pkt).expect("tx");
    // Header (opcode/peer-id, packet id), tag and payload: every region is authenticated.
    for i in [1, 5, 10, wire.len() - 1] {
        let mut t = wire.clone();
        t[i] ^= 0x01;
        p.send(Dir::ToServer, t);
        p.pump();
    }
    assert_eq!(p.server_drops.len(), 4, "{:?}", p.server_drops);
    // Peer-id byte flipped: no such peer; otherwise the tag fails.
    assert_eq!(p.server_drops[0], DropReason::UnknownPeer);
    assert!(
        p.server_drops[1..].iter().all(|d| *d == DropReason::BadTag),
        "{:?}",
        p.server_drops
    );
    assert!(p.server_rx.is_empty());
    // The genuine packet still opens afterwards (failed opens did not advance the window).
    p.send(Dir::ToServer, wire);
    p.pump();
    assert_eq!(p.server_rx, [rx(0, pkt)]);

    let (wire, _) = p.server_seal(&ipv4_packet(SERVER_V4, c4, 2)).expect("tx");
    let mut t = wire.clone();
    let last = t.len() - 1;
    t[last] ^= 0x80;
    p.send(Dir::ToClient, t);
    p.pump();
    assert_eq!(p.client_drops, [DropReason::BadTag]);
}

#[test]
fn replayed_data_packets_are_rejected() {
    let mut p = connected(&Options::default());
    let (c4, _) = client_addrs(&p);
    let (a, _) = p.client_seal(&ipv4_packet(c4, SERVER_V4, 1)).expect("tx");
    let (b, _) = p.client_seal(&ipv4_packet(c4, SERVER_V4, 2)).expect("tx");
    for w in [&a, &b, &a, &b] {
        p.send(Dir::ToServer, w.clone());
    }
    p.pump();
    assert_eq!(p.server_rx.len(), 2);
    assert_eq!(p.server_drops, [DropReason::Replay, DropReason::Replay]);
    let (d, _) = p.server_seal(&ipv4_packet(SERVER_V4, c4, 3)).expect("tx");
    p.send(Dir::ToClient, d.clone());
    p.send(Dir::ToClient, d);
    p.pump();
    assert_eq!(p.client_rx.len(), 1);
    assert_eq!(p.client_drops, [DropReason::Replay]);
}

#[test]
fn replayed_control_datagrams_are_ignored() {
    let mut p = connected(&Options::default());
    // Replay everything the client ever sent, then everything the server sent.
    let to_server = p.sent_to_server.clone();
    let to_client = p.sent_to_client.clone();
    for b in to_server.into_iter().filter(|b| !pair::is_data(b)) {
        p.send(Dir::ToServer, b);
    }
    for b in to_client.into_iter().filter(|b| !pair::is_data(b)) {
        p.send(Dir::ToClient, b);
    }
    p.advance(SECS(1));
    assert_eq!(p.server.peer_count(), 1);
    assert_eq!(p.server.stats.sessions_created, 1);
    assert!(p.client_closed().is_none());
    assert_eq!(
        p.client_seen
            .iter()
            .filter(|s| matches!(s, Seen::PushReply(_)))
            .count(),
        1
    );
    exchange_data(&mut p, 700);
}

// ---- 6. cipher negotiation --------------------------------------------------------------------

#[test]
fn client_offering_only_chacha_gets_chacha() {
    let o = extra("", "data-ciphers CHACHA20-POLY1305");
    let mut p = connected(&o);
    assert_eq!(
        p.pushed.as_ref().and_then(|x| x.cipher.clone()).as_deref(),
        Some("CHACHA20-POLY1305")
    );
    assert_eq!(
        p.client.data_params().map(|d| d.cipher),
        Some(Cipher::ChaCha20Poly1305)
    );
    let slot = p
        .server_peer()
        .and_then(|x| x.keys().tx.clone())
        .expect("server key");
    assert_eq!(slot.cipher, Cipher::ChaCha20Poly1305);
    exchange_data(&mut p, 800);
}

#[test]
fn no_shared_cipher_fails_authentication() {
    let o = extra(
        "data-ciphers AES-256-GCM:AES-128-GCM",
        "data-ciphers CHACHA20-POLY1305",
    );
    let mut p = Pair::new(&o);
    assert!(p.run_until(SECS(10), MS(100), |p| p.client_closed().is_some()));
    match p.client_closed() {
        Some(CloseReason::AuthFailed(_)) => {}
        other => panic!("client closed with {other:?}"),
    }
    assert!(p.client_peer.is_none() && p.pushed.is_none());
    assert!(
        p.server_seen
            .iter()
            .all(|s| !matches!(s, Seen::PeerUp(_) | Seen::Keys { .. })),
        "{:?}",
        p.server_seen
    );
    assert_eq!(p.server.peer_count(), 0);
    // The refused connection lingers for retransmissions, then goes.
    assert!(p.run_until(SECS(30), MS(500), |p| p.server.poll_timeout().is_none()));
    assert!(
        p.server_seen
            .contains(&Seen::HandshakeFailed(CloseReason::Rejected)),
        "{:?}",
        p.server_seen
    );
}

// ---- 7. the stateless cookie handshake --------------------------------------------------------

#[test]
fn hard_reset_alone_creates_no_state_and_bad_cookies_are_dropped() {
    let mut p = Pair::new(&Options::default());
    let now = p.now;
    let hard_reset = p.client.poll_transmit(now).expect("hard reset");
    assert_eq!(p.client.poll_transmit(now), None);
    let (client_addr, wrap) = (p.client_addr, p.client_plan.session.wrap.clone());
    p.server.handle_datagram(now, client_addr, &hard_reset);
    assert_eq!(p.server.stats.cookie_replies, 1);
    assert_eq!(p.server.stats.sessions_created, 0);
    assert_eq!(p.server.peer_count(), 0);
    assert_eq!(
        p.server.poll_timeout(),
        None,
        "the server keeps a timer, so it keeps state"
    );
    let (to, reply) = p.server.poll_transmit().expect("cookie reply");
    assert_eq!(to, client_addr);
    assert!(p.server.poll_transmit().is_none());

    // A third packet echoing a wrong cookie.
    let client_sid = p.client.local_session_id();
    let bogus = ControlPacket {
        opcode: Opcode::AckV1,
        key_id: KeyId::ZERO,
        session_id: client_sid,
        acks: vec![0],
        remote_session_id: Some(SessionId([0x42; 8])),
        message_id: None,
        payload: Vec::new(),
    };
    let mut plain = Vec::new();
    bogus.encode(&mut plain);
    let mut wire = Vec::new();
    wrap.wrap(
        ReplayId {
            id: 2,
            time: pair::UNIX0 as u32,
        },
        &plain,
        &mut wire,
    )
    .expect("wrap");
    p.server.handle_datagram(now, client_addr, &wire);
    assert_eq!(p.server.stats.dropped_bad_cookie, 1);
    assert_eq!(p.server.stats.sessions_created, 0);
    assert!(p.server.poll_transmit().is_none());

    // The genuine exchange continues; the client's echo from another address is refused.
    p.client.handle_datagram(now, &reply);
    let ack = p.client.poll_transmit(now).expect("client's third packet");
    let other: std::net::SocketAddr = "192.0.2.99:40000".parse().unwrap();
    p.server.handle_datagram(now, other, &ack);
    assert_eq!(p.server.stats.dropped_bad_cookie, 2);
    assert_eq!(p.server.stats.sessions_created, 0);
    p.server.handle_datagram(now, client_addr, &ack);
    assert_eq!(p.server.stats.sessions_created, 1);
    assert!(
        p.handshake(SECS(10)),
        "client {:?} server {:?}",
        p.client_seen,
        p.server_seen
    );
    exchange_data(&mut p, 900);
}

// ---- reconnects and goodbyes ------------------------------------------------------------------

#[test]
fn client_restart_from_same_address_replaces_the_old_session() {
    let mut p = connected(&Options::default());
    let old_peer = p.server_peer().expect("peer");
    p.run_until(SECS(2), MS(100), |_| false);
    p.restart_client(99);
    let ok = p.run_until(SECS(30), MS(100), |p| {
        p.client_peer
            .as_ref()
            .is_some_and(|c| c.keys().tx.is_some())
            && p.server_peer()
                .is_some_and(|s| !Arc::ptr_eq(&s, &old_peer) && s.keys().tx.is_some())
    });
    assert!(
        ok,
        "reconnect failed at {:?}: client {:?} server {:?} stats {:?}\n{}",
        p.elapsed(),
        p.client_seen,
        p.server_seen,
        p.server.stats,
        p.trace.join("\n")
    );
    assert!(
        p.server_seen
            .iter()
            .any(|s| matches!(s, Seen::PeerDown(0, _))),
        "{:?}",
        p.server_seen
    );
    assert_eq!(p.server.peer_count(), 1);
    exchange_data(&mut p, 1000);
}

#[test]
fn simultaneous_renegotiation_from_both_sides() {
    let o = extra(
        "reneg-sec 20\ntran-window 10",
        "reneg-sec 20\ntran-window 10",
    );
    let mut p = connected(&o);
    let keys = data_during(&mut p, SECS(120), both_retired_key0);
    check_after_reneg(&mut p, keys);
}

#[test]
fn client_exit_takes_the_peer_down() {
    let mut p = connected(&Options::default());
    let now = p.now;
    p.client.shutdown(now, "EXIT");
    assert!(p.run_until(SECS(30), MS(100), |p| p
        .server_seen
        .iter()
        .any(|s| matches!(s, Seen::PeerDown(..)))));
    assert!(
        p.server_seen
            .contains(&Seen::PeerDown(0, CloseReason::PeerExit("EXIT".into()))),
        "{:?}",
        p.server_seen
    );
    assert_eq!(p.server.peer_count(), 0);
    assert!(p.server_peer().is_none());
}

#[test]
fn half_open_connection_times_out_on_the_server() {
    let mut p = Pair::new(&Options::default());
    // The client vanishes right after proving its address (cookie echo + ClientHello).
    let mut up = 0;
    p.impair = Some(Box::new(move |dir, _| {
        if dir == Dir::ToServer {
            up += 1;
        }
        if up > 2 {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }));
    assert!(p.run_until(SECS(120), MS(500), |p| p
        .server_seen
        .iter()
        .any(|s| matches!(s, Seen::HandshakeFailed(_)))));
    assert!(
        p.server_seen
            .contains(&Seen::HandshakeFailed(CloseReason::HandshakeTimeout)),
        "{:?}",
        p.server_seen
    );
    assert_eq!(p.server.stats.sessions_created, 1);
    assert_eq!(p.server.poll_timeout(), None);
}
