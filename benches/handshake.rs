//! Control-plane cost: one complete in-memory connection per iteration between a client
//! [`Session`] and a [`ServerCore`], both built from the configs `fwd init` writes (ECDSA
//! P-256 certificates, tls-crypt, AES-256-GCM, TLS-EKM): cookie exchange, TLS handshake,
//! key-method 2, authentication (incl. the ccd lookup), PUSH_REQUEST/PUSH_REPLY, data keys on
//! both sides, then the server drops the peer again so the pool never runs dry. Both sides
//! run on the one benchmark thread, so the figure is "connections per second per core" for
//! the client and the server together; the server's share is roughly half.
//! Results go to perf/RESULTS.md ("Handshakes").

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fwd::pki::{init_dir, InitOptions};
use fwd::plan::{client_plan, server_plan};
use fwd::proto::data::Cipher;
use fwd::proto::session::{CloseReason, DataParams, Event, Session, SessionConfig};
use fwd::server::core::{ServerCore, ServerEvent};

struct Setup {
    core: ServerCore,
    client_cfg: Arc<SessionConfig>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(
        dir.path(),
        InitOptions {
            server_cn: "bench-server".into(),
            clients: vec!["alice".into()],
            remote: "192.0.2.1".into(),
            port: 1194,
        },
    )
    .expect("fwd init");
    // server.conf names its files relative to the working directory, like OpenVPN.
    std::env::set_current_dir(dir.path()).expect("chdir");
    let srv = fwd::config::load_file(&dir.path().join("server.conf")).expect("server.conf");
    let cli = fwd::config::load_file(&dir.path().join("alice.ovpn")).expect("alice.ovpn");
    let mut sp = server_plan(&srv.config).expect("server plan");
    // connect-freq-initial (100 stateless replies per 10 s) would refuse the benchmark's
    // thousands of connections per second: it is DoS policy, not handshake cost.
    sp.settings.initial_reply_limit = u32::MAX;
    let cp = client_plan(&cli.config).expect("client plan");
    let now = Instant::now();
    let core = ServerCore::new(
        sp.settings,
        sp.pool,
        sp.directory,
        now,
        1_800_000_000,
        [7; 32],
    );
    Setup {
        core,
        client_cfg: cp.session,
        _dir: dir,
    }
}

/// One connection from `from`; returns the number of datagrams exchanged.
fn connect(s: &mut Setup, from: SocketAddr, seed: u64) -> usize {
    let now = Instant::now();
    let mut sd = [0u8; 32];
    sd[..8].copy_from_slice(&seed.to_le_bytes());
    let mut client =
        Session::new_client(s.client_cfg.clone(), now, 1_800_000_000, sd).expect("client");
    let (mut client_keys, mut pushed, mut server_peer, mut server_keys) =
        (false, false, None, false);
    let mut datagrams = 0;
    for _round in 0..64 {
        let now = Instant::now();
        let mut moved = false;
        while let Some(d) = client.poll_transmit(now) {
            s.core.handle_datagram(now, from, &d);
            datagrams += 1;
            moved = true;
        }
        while let Some((to, d)) = s.core.poll_transmit() {
            assert_eq!(to, from);
            client.handle_datagram(now, &d);
            datagrams += 1;
            moved = true;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                Event::PushReply(opts) => {
                    let p = fwd::client::pushed::parse(&opts);
                    let cipher = p
                        .cipher
                        .as_deref()
                        .and_then(Cipher::from_name)
                        .unwrap_or(Cipher::Aes256Gcm);
                    client.set_data_params(now, DataParams { cipher, ekm: p.ekm });
                    pushed = true;
                }
                Event::KeysReady { .. } => client_keys = true,
                Event::Closed(r) => panic!("client closed: {r:?}"),
                _ => {}
            }
        }
        while let Some(ev) = s.core.poll_event() {
            match ev {
                ServerEvent::PeerUp(up) => server_peer = Some(up.peer_id),
                ServerEvent::Keys { .. } => server_keys = true,
                ServerEvent::HandshakeFailed { reason, .. } => panic!("server: {reason:?}"),
                _ => {}
            }
        }
        if client_keys && pushed && server_keys {
            if let Some(id) = server_peer {
                s.core
                    .kill_peer(now, id, None, CloseReason::Local("bench".into()));
                while s.core.poll_event().is_some() {}
                while s.core.poll_transmit().is_some() {}
                return datagrams;
            }
        }
        if !moved {
            // Nothing in flight: let timers (push-request retry) fire.
            client.handle_timeout(now);
            s.core.handle_timeout(now);
        }
    }
    panic!("handshake did not complete");
}

fn handshake(c: &mut Criterion) {
    let mut s = setup();
    let mut n: u64 = 0;
    let addr = |n: u64| {
        SocketAddr::from((
            Ipv4Addr::from(0xC0A8_0000 + (n / 50_000) as u32),
            10_000 + (n % 50_000) as u16,
        ))
    };
    let dgrams = connect(&mut s, addr(0), 0);
    eprintln!("one connection = {dgrams} datagrams");
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("client+server/AES-256-GCM/ecdsa-p256/tls-crypt", |b| {
        b.iter(|| {
            n += 1;
            connect(&mut s, addr(n), n)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = handshake
}
criterion_main!(benches);
