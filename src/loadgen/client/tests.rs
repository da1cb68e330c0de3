//! Simulated clients against fwd's real sans-IO server control plane ([`ServerCore`]) in
//! memory, on a virtual clock: handshakes, pushed addresses, data keys on both sides, and echo
//! requests answered by a stand-in for the server's kernel.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::config::load_str;
use crate::dataplane::peers::KeySlot;
use crate::pki::Pki;
use crate::pki::{render_client_profile, render_static_key_v1};
use crate::plan::{client_plan, server_plan};
use crate::proto::data::parse_data_header;
use crate::route::PeerId;
use crate::server::core::{ServerCore, ServerEvent};

const UNIX: u64 = 1_700_000_000;

struct Lab {
    core: ServerCore,
    plan: ClientPlan,
    /// Server-side data keys and P_DATA_V2 flag per peer.
    keys: HashMap<PeerId, (Arc<KeySlot>, bool)>,
    addr_of_peer: HashMap<PeerId, SocketAddr>,
    /// Server control datagrams sent so far, and which of them (by number) get lost.
    server_tx: usize,
    lose_server_tx: Vec<usize>,
    /// While `now - origin` is in this window, every client datagram is lost; the server
    /// datagrams sent meanwhile are counted in `server_tx_in_window`.
    lose_client_window: Option<(Duration, Duration)>,
    server_tx_in_window: usize,
}

fn lab(tls_crypt_matches: bool) -> Lab {
    lab_with(tls_crypt_matches, "")
}

fn lab_with(tls_crypt_matches: bool, extra: &str) -> Lab {
    let pki = Pki::new_ca("loadgen test CA").unwrap();
    let server = pki.issue_server("server").unwrap();
    let client = pki.issue_client("sim").unwrap();
    let tc = render_static_key_v1(&[7u8; 256]);
    let server_conf = format!(
        "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\n\
         server-ipv6 fd00:8::/64\ndh none\nduplicate-cn\nkeepalive 10 60\n{}\n\
         <ca>\n{}</ca>\n<cert>\n{}</cert>\n<key>\n{}</key>\n<tls-crypt>\n{}</tls-crypt>\n",
        extra, pki.ca_cert_pem, server.cert_pem, server.key_pem, tc
    );
    let loaded = load_str(&server_conf, Path::new("server.conf")).unwrap();
    let sp = server_plan(&loaded.config).unwrap();
    let core = ServerCore::new(
        sp.settings,
        sp.pool,
        sp.directory,
        Instant::now(),
        UNIX,
        [1; 32],
    );
    let client_tc = if tls_crypt_matches {
        tc
    } else {
        render_static_key_v1(&[8u8; 256])
    };
    let profile = render_client_profile("127.0.0.1", 1194, &pki.ca_cert_pem, &client, &client_tc);
    let loaded = load_str(&profile, Path::new("sim.ovpn")).unwrap();
    let plan = client_plan(&loaded.config).unwrap();
    Lab {
        core,
        plan,
        keys: HashMap::new(),
        addr_of_peer: HashMap::new(),
        server_tx: 0,
        lose_server_tx: Vec::new(),
        lose_client_window: None,
        server_tx_in_window: 0,
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 20_000 + i as u16))
}

impl Lab {
    /// The server's data plane and kernel: decrypt, answer the echo request, encrypt.
    fn server_data(&mut self, from: SocketAddr, mut pkt: Vec<u8>, now_s: u64) -> Option<Vec<u8>> {
        let hdr = parse_data_header(&pkt).ok()?;
        let peer = PeerId(hdr.peer_id?);
        assert_eq!(
            self.addr_of_peer.get(&peer),
            Some(&from),
            "peer id of another client"
        );
        let (slot, v2) = self.keys.get(&peer)?.clone();
        let plain = {
            let mut replay = slot.replay.lock().unwrap();
            slot.rx
                .open_in_place(&mut pkt, &mut replay, now_s)
                .ok()?
                .to_vec()
        };
        let reply = icmp::answer(&plain)?;
        let mut b = vec![0u8; HEADROOM + reply.len()];
        b[HEADROOM..].copy_from_slice(&reply);
        let range = slot
            .tx
            .seal_in_place(slot.key_id, v2.then_some(peer.0), &mut b, reply.len())
            .ok()?;
        Some(b[range].to_vec())
    }

    fn server_events(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                ServerEvent::PeerUp(up) => {
                    self.addr_of_peer.insert(up.peer_id, up.remote);
                }
                ServerEvent::Keys {
                    peer_id,
                    key_id,
                    cipher,
                    key_block,
                    ..
                } => {
                    let slot =
                        forward::key_slot(key_id, cipher, &key_block, Side::Server, (64, 15))
                            .unwrap();
                    self.keys.insert(peer_id, (Arc::new(slot), true));
                }
                _ => {}
            }
        }
    }

    /// Runs `clients` on a virtual clock in `step`s until `until`; sending stops at `stop`.
    fn run(
        &mut self,
        p: &Profile,
        clients: &mut [SimClient],
        st: &mut Stats,
        step: Duration,
        stop: Instant,
        until: Instant,
    ) {
        let mut now = p.origin;
        for c in clients.iter_mut() {
            c.start(p, now, UNIX, st);
        }
        let mut stopped = false;
        while now < until {
            if !stopped && now >= stop {
                for c in clients.iter_mut() {
                    c.stop_sending(p, now, st);
                }
                stopped = true;
            }
            let since = now.saturating_duration_since(p.origin);
            let silent = self
                .lose_client_window
                .is_some_and(|(a, b)| since >= a && since < b);
            for (i, c) in clients.iter_mut().enumerate() {
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(p, now, st);
                }
                while let Some(b) = c.poll_transmit() {
                    if silent {
                        continue;
                    }
                    let data = b[0] >> 3 == Opcode::DataV2 as u8;
                    if data {
                        let now_s = now.saturating_duration_since(p.origin).as_secs();
                        if let Some(mut r) = self.server_data(addr(i), b, now_s) {
                            c.handle_datagram(p, now, &mut r, st);
                        }
                    } else {
                        self.core.handle_datagram(now, addr(i), &b);
                    }
                }
            }
            self.core.handle_timeout(now);
            self.server_events();
            while let Some((to, mut b)) = self.core.poll_transmit() {
                self.server_tx += 1;
                if silent {
                    self.server_tx_in_window += 1;
                }
                if self.lose_server_tx.contains(&self.server_tx) {
                    continue;
                }
                let i = usize::from(to.port() - 20_000);
                clients[i].handle_datagram(p, now, &mut b, st);
            }
            now += step;
        }
    }
}

#[test]
fn clients_complete_handshake_and_get_echo_replies() {
    let mut lab = lab(true);
    let origin = Instant::now();
    let p = Profile::from_plan(&lab.plan, 10.0, 100, origin);
    let mut clients: Vec<SimClient> = (0..3)
        .map(|i| SimClient::new(i, [i as u8 + 1; 32]))
        .collect();
    let mut st = Stats::default();
    let stop = origin + Duration::from_secs(3);
    lab.run(
        &p,
        &mut clients,
        &mut st,
        Duration::from_millis(5),
        stop,
        stop + Duration::from_secs(1),
    );

    assert_eq!(st.hs_started, 3);
    assert_eq!(st.hs_ok, 3, "drops: {:?}", st.drops);
    assert_eq!(st.hs_failed, 0);
    assert_eq!(st.hs_us.len(), 3);
    let mut v4s = Vec::new();
    for c in &clients {
        assert_eq!(c.phase(), Phase::Up);
        let e = c.endpoints();
        let (src4, dst4) = e.v4.unwrap();
        let (src6, dst6) = e.v6.unwrap();
        assert_eq!(dst4, Ipv4Addr::new(10, 8, 0, 1));
        assert_eq!(dst6, "fd00:8::1".parse::<Ipv6Addr>().unwrap());
        assert!(
            src4.octets()[..3] == [10, 8, 0] && src4.octets()[3] >= 2,
            "{src4}"
        );
        assert!(src6.segments()[..4] == [0xfd00, 8, 0, 0], "{src6}");
        let (r4, r6) = c.replies();
        assert!(
            r4 > 0 && r6 > 0,
            "client got no replies in one family: {r4} {r6}"
        );
        v4s.push(src4);
    }
    v4s.sort();
    v4s.dedup();
    assert_eq!(v4s.len(), 3, "every client has its own address");
    // ~3 s at 10 pps minus the handshake, per client; both families.
    assert!(st.sent_v4 >= 30 && st.sent_v6 >= 30, "{st:?}");
    assert_eq!(st.recv_v4, st.sent_v4, "drops: {:?}", st.drops);
    assert_eq!(st.recv_v6, st.sent_v6, "drops: {:?}", st.drops);
    assert_eq!(st.rtt_us.len() as u64, st.recv_v4 + st.recv_v6);
    assert!(st.drops.is_empty(), "{:?}", st.drops);
}

#[test]
fn wrong_tls_crypt_key_fails_by_handshake_timeout() {
    let mut lab = lab(false);
    let origin = Instant::now();
    let p = Profile::from_plan(&lab.plan, 10.0, 100, origin);
    let mut clients = vec![SimClient::new(0, [9; 32])];
    let mut st = Stats::default();
    let end = origin + Duration::from_secs(70);
    lab.run(
        &p,
        &mut clients,
        &mut st,
        Duration::from_millis(200),
        end,
        end,
    );
    assert_eq!(st.hs_started, 1);
    assert_eq!(st.hs_ok, 0);
    assert_eq!(st.hs_failed, 1);
    assert_eq!(
        st.drops.get("hs_handshake_timeout"),
        Some(&1),
        "{:?}",
        st.drops
    );
    assert_eq!(clients[0].phase(), Phase::Down);
    assert_eq!(lab.core.stats.sessions_created, 0);
    assert!(lab.core.stats.dropped_unauthenticated > 0);
    // A closed client asks for no more timers and sends nothing.
    assert_eq!(clients[0].poll_timeout(), None);
    assert!(clients[0].poll_transmit().is_none());
}

#[test]
fn no_data_without_pps_and_nothing_after_stop() {
    let mut lab = lab(true);
    let origin = Instant::now();
    let p = Profile::from_plan(&lab.plan, 0.0, 100, origin);
    let mut clients = vec![SimClient::new(0, [3; 32])];
    let mut st = Stats::default();
    let end = origin + Duration::from_secs(2);
    lab.run(
        &p,
        &mut clients,
        &mut st,
        Duration::from_millis(5),
        end,
        end,
    );
    assert_eq!(st.hs_ok, 1);
    assert_eq!(st.sent_v4 + st.sent_v6, 0);
    let c = &mut clients[0];
    c.stop_sending(&p, end, &mut st);
    c.handle_timeout(&p, end + Duration::from_secs(60), &mut st);
    // Only control-channel traffic may remain (no data opcode).
    while let Some(b) = c.poll_transmit() {
        assert_ne!(b[0] >> 3, Opcode::DataV2 as u8);
    }
}

#[test]
fn connect_freq_initial_limits_cookie_replies() {
    // 2 replies per 10 s: of 3 clients starting together, the third waits for the next window
    // (its hard-reset retransmissions are dropped until then).
    let mut lab = lab_with(true, "connect-freq-initial 2 10");
    let origin = Instant::now();
    let p = Profile::from_plan(&lab.plan, 0.0, 100, origin);
    let mut clients: Vec<SimClient> = (0..3)
        .map(|i| SimClient::new(i, [i as u8 + 5; 32]))
        .collect();
    let mut st = Stats::default();
    let end = origin + Duration::from_secs(3);
    lab.run(
        &p,
        &mut clients,
        &mut st,
        Duration::from_millis(10),
        end,
        end,
    );
    assert_eq!(st.hs_ok, 2, "{:?}", st.drops);
    assert_eq!(lab.core.stats.cookie_replies, 2);
    assert!(lab.core.stats.dropped_rate_limited >= 1);

    // A limit above the offered load never drops.
    let mut lab = lab_with(true, "connect-freq-initial 1000 1");
    let p = Profile::from_plan(&lab.plan, 0.0, 100, origin);
    let mut clients: Vec<SimClient> = (0..3)
        .map(|i| SimClient::new(i, [i as u8 + 5; 32]))
        .collect();
    let mut st = Stats::default();
    lab.run(
        &p,
        &mut clients,
        &mut st,
        Duration::from_millis(10),
        end,
        end,
    );
    assert_eq!(st.hs_ok, 3, "{:?}", st.drops);
    assert_eq!(lab.core.stats.dropped_rate_limited, 0);
}

#[test]
fn server_retransmits_lost_control_packets_from_its_timers() {
    // Lose the server's 2nd-4th control datagrams (its first TLS flight), then silence the
    // client for a while: whatever the server sends meanwhile comes from its own timers
    // (ServerCore::poll_timeout/handle_timeout), and the handshake completes afterwards.
    let mut lab = lab(true);
    lab.lose_server_tx = vec![2, 3, 4];
    lab.lose_client_window = Some((Duration::from_millis(200), Duration::from_secs(8)));
    let origin = Instant::now();
    let p = Profile::from_plan(&lab.plan, 0.0, 100, origin);
    let mut clients = vec![SimClient::new(0, [4; 32])];
    let mut st = Stats::default();
    let end = origin + Duration::from_secs(20);
    lab.run(
        &p,
        &mut clients,
        &mut st,
        Duration::from_millis(50),
        end,
        end,
    );
    assert_eq!(st.hs_ok, 1, "{:?}", st.drops);
    assert!(
        lab.server_tx_in_window > 0,
        "the server retransmitted nothing while the client was silent"
    );
    // Once the handshake is done, the server has no retransmission pending: its next deadline
    // is a session timer far ahead (reneg-sec), not one in the past.
    let next = lab
        .core
        .poll_timeout()
        .expect("a connected session keeps a deadline");
    assert!(next > end, "{next:?} vs {end:?}");
}
