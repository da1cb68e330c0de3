//! The server's control plane as a sans-IO state machine: the stateless HMAC-cookie handshake,
//! one [`Session`] per connected client, authentication decisions (ccd, `duplicate-cn`,
//! `max-clients`, cipher negotiation), address assignment from the pool and the PUSH_REPLY.
//!
//! Inputs: control datagrams with their source address and time. Outputs: datagrams to send,
//! [`ServerEvent`]s for the data plane (peer up/down, keys) and the next deadline. The owner
//! (the control thread) performs all IO, including reading ccd files through
//! [`ClientDirectory`].
//!
//! Invariants: a peer id is held by at most one connection; a pool slot is released exactly
//! once, when its connection ends; no state is created for a source address until it echoed our
//! cookie; `timers` holds exactly one `(deadline, conn)` entry per connection whose session has
//! a deadline, refreshed after every call into that session (so the control loop's
//! `poll_timeout`/`handle_timeout` cost O(log n), not a scan of every connection).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use ring::hmac;

use crate::config::ccd::CcdEntry;
use crate::pool::{Pool, PoolError, SlotId};
use crate::proto::data::{Cipher, KeyBlock};
use crate::proto::messages::{
    self, PeerInfo, PushTail, IV_PROTO_AUTH_FAIL_TEMP, IV_PROTO_DATA_V2, IV_PROTO_REQUEST_PUSH,
    IV_PROTO_TLS_KEY_EXPORT,
};
use crate::proto::session::{CloseReason, DataParams, Event, Session, SessionConfig};
use crate::proto::wire::{ControlPacket, KeyId, Opcode, SessionId};
use crate::proto::wrap::ReplayId;
use crate::route::PeerId;
use crate::server::push::{self, ClientPush, PushedV4, PushedV6};

/// Per-client configuration lookup (ccd). Runs on the control thread at connect time.
pub trait ClientDirectory {
    /// `Ok(None)`: no file for this client (and no DEFAULT). `Err`: the client must be refused
    /// (e.g. `ccd-exclusive` without a file, or a broken file), with the reason for the log.
    fn lookup(&mut self, common_name: &str) -> Result<Option<CcdEntry>, String>;
}

/// No ccd directory configured.
pub struct NoDirectory;

impl ClientDirectory for NoDirectory {
    fn lookup(&mut self, _: &str) -> Result<Option<CcdEntry>, String> {
        Ok(None)
    }
}

/// How the server's IPv4 tunnel is laid out, for the pushed `ifconfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V4Layout {
    Subnet { netmask: Ipv4Addr },
    Net30,
}

/// Fixed server settings derived from the configuration.
pub struct ServerSettings {
    pub session: Arc<SessionConfig>,
    /// Global push list in config order (user lines, then macro-generated ones).
    pub push: Vec<String>,
    pub v4_layout: V4Layout,
    /// The server's own tun IPv6 address and the tunnel prefix length (`ifconfig-ipv6`).
    pub server_v6: Option<(Ipv6Addr, u8)>,
    pub data_ciphers: Vec<Cipher>,
    pub data_ciphers_fallback: Option<Cipher>,
    pub duplicate_cn: bool,
    pub max_clients: u32,
    pub tun_mtu: u16,
    pub hand_window: Duration,
    /// `connect-freq-initial N S`: at most N stateless replies per `initial_reply_window` (S).
    pub initial_reply_limit: u32,
    pub initial_reply_window: Duration,
}

/// Everything the data plane needs to know about a connected client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUp {
    pub peer_id: PeerId,
    pub common_name: String,
    pub remote: SocketAddr,
    pub v4: Option<PushedV4>,
    pub v6: Option<PushedV6>,
    pub iroutes: Vec<Ipv4Net>,
    pub iroutes_v6: Vec<Ipv6Net>,
    /// Send P_DATA_V2 to this client (it announced IV_PROTO_DATA_V2).
    pub data_v2: bool,
    pub cipher: Cipher,
    /// Management client id (`client-kill CID`, status `Client ID`): a counter from 0, one per
    /// admitted connection, never reused while the server runs (like OpenVPN's CID).
    pub client_id: u64,
    /// Unix seconds when the client was admitted (status `Connected Since`).
    pub connected_unix: u64,
    /// ccd `ping` / `ping-restart` for this client (seconds, 0 = off); `None` keeps the
    /// server's own.
    pub ping: Option<u32>,
    pub ping_restart: Option<u32>,
}

/// The AUTH_FAILED reason for a refusal that goes away by itself (server full, pool
/// exhausted). OpenVPN drops a client over max-clients silently, so it retries after its
/// handshake times out; a plain AUTH_FAILED would make a stock client exit for good. Clients
/// that understand it get the temporary form: they restart, after the backoff, trying the
/// next `remote` first.
fn temporary_refusal(info: &PeerInfo, reason: &str) -> String {
    if info.iv_proto & IV_PROTO_AUTH_FAIL_TEMP != 0 {
        format!("TEMP[backoff 10,advance remote]:{reason}")
    } else {
        reason.to_string()
    }
}

/// A client's tunnel addresses and the pool slot they came from (none for static ones).
type Assignment = (Option<PushedV4>, Option<PushedV6>, Option<SlotId>);

/// Output for the data plane and the operator.
#[derive(Debug)]
pub enum ServerEvent {
    /// Keys for the first key id are announced right after this.
    PeerUp(PeerUp),
    Keys {
        peer_id: PeerId,
        key_id: u8,
        cipher: Cipher,
        key_block: Box<KeyBlock>,
        tx_now: bool,
    },
    TxSwitch {
        peer_id: PeerId,
        key_id: u8,
    },
    KeyRetired {
        peer_id: PeerId,
        key_id: u8,
    },
    PeerDown {
        peer_id: PeerId,
        common_name: String,
        reason: CloseReason,
    },
    /// A connection that never became a peer ended (failed handshake, refused client).
    HandshakeFailed {
        remote: SocketAddr,
        reason: CloseReason,
    },
}

struct Conn {
    session: Session,
    remote: SocketAddr,
    peer: Option<ConnPeer>,
    common_name: Option<String>,
    /// This connection's entry in `ServerCore::timers`.
    timer: Option<Instant>,
}

struct ConnPeer {
    id: PeerId,
    pool_slot: Option<SlotId>,
    announced: bool,
    up: PeerUp,
}

/// Whether a datagram carries the session id of `conn`'s peer (it sits right after the
/// opcode in every wrapping mode).
fn same_session(conn: &Conn, wire: &[u8]) -> bool {
    let remote = conn.session.remote_session_id();
    wire.get(1..9)
        .is_some_and(|sid| remote.is_some_and(|r| r.0[..] == *sid))
}

/// Counters of refused input, for status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlStats {
    /// Dropped by live sessions (bad authentication, replay, malformed, wrong session).
    pub dropped_in_session: u64,
    pub dropped_unauthenticated: u64,
    pub dropped_bad_cookie: u64,
    pub dropped_rate_limited: u64,
    pub cookie_replies: u64,
    pub sessions_created: u64,
}

/// The server control plane.
pub struct ServerCore {
    settings: ServerSettings,
    pool: Pool,
    directory: Box<dyn ClientDirectory + Send>,
    cookie_key: hmac::Key,
    conns: HashMap<u64, Conn>,
    by_addr: HashMap<SocketAddr, u64>,
    /// Session deadlines, earliest first (see the module invariants).
    timers: BTreeSet<(Instant, u64)>,
    next_conn: u64,
    next_client_id: u64,
    peer_ids: Vec<bool>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<ServerEvent>,
    rng: StdRng,
    epoch: Instant,
    unix_at_epoch: u64,
    rate_window: (u64, u32),
    pub stats: ControlStats,
}

impl ServerCore {
    pub fn new(
        settings: ServerSettings,
        pool: Pool,
        directory: Box<dyn ClientDirectory + Send>,
        now: Instant,
        unix_now: u64,
        seed: [u8; 32],
    ) -> Self {
        let mut rng = StdRng::from_seed(seed);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let max = settings.max_clients as usize;
        ServerCore {
            settings,
            pool,
            directory,
            cookie_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            timers: BTreeSet::new(),
            next_conn: 1,
            next_client_id: 0,
            peer_ids: vec![false; max],
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            epoch: now,
            unix_at_epoch: unix_now,
            rate_window: (0, 0),
            stats: ControlStats::default(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    fn unix(&self, now: Instant) -> u64 {
        self.unix_at_epoch + now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Number of connections that completed authentication.
    pub fn peer_count(&self) -> usize {
        self.conns.values().filter(|c| c.peer.is_some()).count()
    }

    /// A control-channel datagram (opcode is not P_DATA_*).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, wire: &[u8]) {
        if let Some(&id) = self.by_addr.get(&from) {
            if let Some(conn) = self.conns.get_mut(&id) {
                // Anything carrying another session id from the address of a live session is a
                // reconnect (its hard reset, then the packet echoing our cookie): it goes
                // through the cookie handshake, which replaces the old session.
                if same_session(conn, wire) {
                    let before = conn.session.dropped_packets();
                    conn.session.handle_datagram(now, wire);
                    self.stats.dropped_in_session += conn.session.dropped_packets() - before;
                    self.drain_conn(now, id);
                    return;
                }
            }
        }
        self.stateless(now, from, wire);
    }

    fn cookie(&self, slot: u64, from: SocketAddr, client_sid: SessionId) -> SessionId {
        let mut ctx = hmac::Context::with_key(&self.cookie_key);
        ctx.update(&(slot as u32).to_be_bytes());
        match from {
            SocketAddr::V4(a) => {
                ctx.update(&a.ip().octets());
                ctx.update(&a.port().to_be_bytes());
            }
            SocketAddr::V6(a) => {
                ctx.update(&a.ip().octets());
                ctx.update(&a.port().to_be_bytes());
            }
        }
        ctx.update(&client_sid.0);
        let tag = ctx.sign();
        let mut sid = [0u8; 8];
        sid.copy_from_slice(&tag.as_ref()[..8]);
        if sid == [0; 8] {
            sid[7] = 1;
        }
        SessionId(sid)
    }

    fn cookie_slot(&self, now: Instant) -> u64 {
        let width = self.settings.hand_window.as_secs().div_ceil(2);
        self.unix(now) / width.max(1)
    }

    /// OpenVPN 2.6's stateless handshake (openvpn-wire.md §6.2).
    fn stateless(&mut self, now: Instant, from: SocketAddr, wire: &[u8]) {
        let mut plain = Vec::with_capacity(wire.len());
        if self.settings.session.wrap.unwrap(wire, &mut plain).is_err() {
            self.stats.dropped_unauthenticated += 1;
            return;
        }
        let Ok(pkt) = ControlPacket::parse(&plain) else {
            self.stats.dropped_unauthenticated += 1;
            return;
        };
        if pkt.key_id.get() != 0 {
            self.stats.dropped_bad_cookie += 1;
            return;
        }
        let slot = self.cookie_slot(now);
        match pkt.opcode {
            Opcode::ControlHardResetClientV2 if pkt.message_id == Some(0) => {
                if !self.rate_ok(now) {
                    self.stats.dropped_rate_limited += 1;
                    return;
                }
                let server_sid = self.cookie(slot, from, pkt.session_id);
                let reply = ControlPacket {
                    opcode: Opcode::ControlHardResetServerV2,
                    key_id: KeyId::ZERO,
                    session_id: server_sid,
                    acks: vec![0],
                    remote_session_id: Some(pkt.session_id),
                    message_id: Some(0),
                    payload: Vec::new(),
                };
                let mut p = Vec::with_capacity(32);
                reply.encode(&mut p);
                let mut out = Vec::with_capacity(p.len() + 64);
                let replay = ReplayId {
                    id: 1,
                    time: self.unix(now) as u32,
                };
                if self
                    .settings
                    .session
                    .wrap
                    .wrap(replay, &p, &mut out)
                    .is_err()
                {
                    return;
                }
                self.stats.cookie_replies += 1;
                self.transmits.push_back((from, out));
            }
            Opcode::ControlV1 | Opcode::AckV1 | Opcode::ControlWkcV1 => {
                let Some(echo) = pkt.remote_session_id else {
                    self.stats.dropped_bad_cookie += 1;
                    return;
                };
                let valid = (0..3).any(|back| {
                    slot.checked_sub(back)
                        .is_some_and(|s| self.cookie(s, from, pkt.session_id) == echo)
                });
                let ids_ok =
                    pkt.acks.iter().all(|&a| a <= 1) && pkt.message_id.is_none_or(|m| m <= 1);
                if !valid || !ids_ok {
                    self.stats.dropped_bad_cookie += 1;
                    return;
                }
                self.create_session(now, from, echo, pkt.session_id, wire);
            }
            _ => self.stats.dropped_bad_cookie += 1,
        }
    }

    fn rate_ok(&mut self, now: Instant) -> bool {
        let window = self.unix(now) / self.settings.initial_reply_window.as_secs().max(1);
        if self.rate_window.0 != window {
            self.rate_window = (window, 0);
        }
        self.rate_window.1 += 1;
        self.rate_window.1 <= self.settings.initial_reply_limit
    }

    fn create_session(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local: SessionId,
        remote: SessionId,
        wire: &[u8],
    ) {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let unix = self.unix(now);
        let session = match Session::new_server_after_cookie(
            self.settings.session.clone(),
            now,
            unix,
            local,
            remote,
            seed,
        ) {
            Ok(s) => s,
            Err(reason) => {
                self.events.push_back(ServerEvent::HandshakeFailed {
                    remote: from,
                    reason,
                });
                return;
            }
        };
        let id = self.next_conn;
        self.next_conn += 1;
        self.stats.sessions_created += 1;
        // A reconnect from the same address: the old connection goes away once the new one is
        // authenticated (see `authenticate`); until then it keeps its address entry.
        let old = self.by_addr.insert(from, id);
        if let Some(old) = old {
            self.close_conn(
                old,
                CloseReason::Local("replaced by a new connection".into()),
            );
        }
        self.conns.insert(
            id,
            Conn {
                session,
                remote: from,
                peer: None,
                common_name: None,
                timer: None,
            },
        );
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.session.handle_datagram(now, wire);
        }
        self.drain_conn(now, id);
    }

    /// Move a session's output into the core's queues and act on its events.
    fn drain_conn(&mut self, now: Instant, id: u64) {
        loop {
            let Some(conn) = self.conns.get_mut(&id) else {
                return;
            };
            while let Some(bytes) = conn.session.poll_transmit(now) {
                self.transmits.push_back((conn.remote, bytes));
            }
            let Some(ev) = conn.session.poll_event() else {
                self.reschedule(id);
                return;
            };
            self.handle_session_event(now, id, ev);
        }
    }

    /// Refresh `id`'s entry in `timers` after its session was touched.
    fn reschedule(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let next = conn.session.poll_timeout();
        if next == conn.timer {
            return;
        }
        if let Some(t) = conn.timer.take() {
            self.timers.remove(&(t, id));
        }
        if let Some(t) = next {
            self.timers.insert((t, id));
        }
        conn.timer = next;
    }

    fn handle_session_event(&mut self, now: Instant, id: u64, ev: Event) {
        match ev {
            Event::ClientAuthRequest {
                common_name,
                peer_info,
                ..
            } => {
                self.authenticate(now, id, common_name, peer_info);
            }
            Event::KeysReady {
                key_id,
                cipher,
                key_block,
                tx_now,
            } => {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                let Some(peer) = conn.peer.as_mut() else {
                    return;
                };
                if !peer.announced {
                    peer.announced = true;
                    self.events.push_back(ServerEvent::PeerUp(peer.up.clone()));
                }
                let peer_id = peer.id;
                self.events.push_back(ServerEvent::Keys {
                    peer_id,
                    key_id,
                    cipher,
                    key_block,
                    tx_now,
                });
            }
            Event::TxSwitch { key_id } => {
                if let Some(peer_id) = self
                    .conns
                    .get(&id)
                    .and_then(|c| c.peer.as_ref())
                    .map(|p| p.id)
                {
                    self.events
                        .push_back(ServerEvent::TxSwitch { peer_id, key_id });
                }
            }
            Event::KeyRetired { key_id } => {
                if let Some(peer_id) = self
                    .conns
                    .get(&id)
                    .and_then(|c| c.peer.as_ref())
                    .map(|p| p.id)
                {
                    self.events
                        .push_back(ServerEvent::KeyRetired { peer_id, key_id });
                }
            }
            Event::Closed(reason) => self.close_conn(id, reason),
            Event::Message(m) => tracing::debug!(conn = id, "control message {m:?}"),
            Event::PushReply(_) => {}
        }
    }

    fn authenticate(
        &mut self,
        now: Instant,
        id: u64,
        common_name: Option<String>,
        peer_info: Option<String>,
    ) {
        let info = PeerInfo::parse(peer_info.as_deref().unwrap_or(""));
        let cn = common_name.unwrap_or_else(|| "UNDEF".to_string());
        let connected_unix = self.unix(now);
        let verdict = self.admit(id, &cn, &info, connected_unix);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.common_name = Some(cn.clone());
        match verdict {
            Err(reason) => {
                tracing::info!(cn, remote = %conn.remote, "client refused: {reason}");
                conn.session.reject(now, Some(reason));
            }
            Ok((peer, params, push)) => {
                tracing::info!(cn, remote = %conn.remote, peer_id = peer.id.0, "client accepted");
                let push_now = info.iv_proto & IV_PROTO_REQUEST_PUSH != 0;
                conn.peer = Some(peer);
                conn.session.accept(now, params, push, push_now);
            }
        }
        self.drain_conn(now, id);
    }

    /// Decide about a client: ccd, duplicate-cn, max-clients, cipher, addresses, push list.
    fn admit(
        &mut self,
        id: u64,
        cn: &str,
        info: &PeerInfo,
        connected_unix: u64,
    ) -> Result<(ConnPeer, DataParams, Vec<String>), String> {
        let overrides = self.directory.lookup(cn)?.unwrap_or_default();
        if overrides.disable {
            return Err("client disabled".into());
        }
        let cipher = messages::negotiate_cipher(
            &self.settings.data_ciphers,
            info,
            None,
            self.settings.data_ciphers_fallback,
        )
        .map_err(|_| "Data channel cipher negotiation failed (no shared cipher)".to_string())?;
        if !self.settings.duplicate_cn {
            let dups: Vec<u64> = self
                .conns
                .iter()
                .filter(|(&cid, c)| {
                    cid != id && c.peer.is_some() && c.common_name.as_deref() == Some(cn)
                })
                .map(|(&cid, _)| cid)
                .collect();
            for d in dups {
                self.close_conn(
                    d,
                    CloseReason::Local(
                        "replaced by a new connection with the same common name".into(),
                    ),
                );
            }
        }
        let Some(slot) = self.peer_ids.iter().position(|used| !used) else {
            return Err(temporary_refusal(info, "max-clients reached"));
        };
        let (v4, v6, pool_slot) = match self.assign_addresses(cn, &overrides) {
            Ok(a) => a,
            // Like max-clients: an address frees up when some client leaves.
            Err(e @ PoolError::Exhausted { .. }) => {
                return Err(temporary_refusal(info, &e.to_string()))
            }
            Err(e) => return Err(e.to_string()),
        };
        self.peer_ids[slot] = true;
        let peer_id = PeerId(slot as u32);
        let data_v2 = info.iv_proto & IV_PROTO_DATA_V2 != 0;
        let ekm = info.iv_proto & IV_PROTO_TLS_KEY_EXPORT != 0 && !self.settings.session.force_prf;
        let ncp = info.supports_ncp();
        let client_push = ClientPush {
            push_reset: overrides.push_reset,
            push_remove: &overrides.push_remove,
            push: &overrides.push,
            iroutes: &overrides.iroutes,
            iroutes_v6: &overrides.iroutes_v6,
        };
        let mut push = push::client_push_list(&self.settings.push, &client_push);
        push.extend(messages::server_push_tail(&PushTail {
            ifconfig_ipv6: v6.map(|v| (v.addr, v.prefix_len, v.remote)),
            ifconfig: v4.map(|v| match v {
                PushedV4::Subnet { addr, netmask } => (addr, netmask),
                PushedV4::PointToPoint { addr, peer } => (addr, peer),
            }),
            peer_id: data_v2.then_some(peer_id.0),
            auth_token: None,
            cipher: ncp.then_some(cipher),
            iv_proto: info.iv_proto,
            ekm,
            tun_mtu: info.iv_mtu.map(|_| self.settings.tun_mtu),
        }));
        let remote = self
            .conns
            .get(&id)
            .map(|c| c.remote)
            .ok_or("connection vanished")?;
        let up = PeerUp {
            peer_id,
            common_name: cn.to_string(),
            remote,
            v4,
            v6,
            // An `ifconfig-push` alias (the client's address as the server sees it behind NAT)
            // routes to this client like an iroute.
            iroutes: overrides
                .iroutes
                .iter()
                .map(|n| n.trunc())
                .chain(
                    overrides
                        .ifconfig_push
                        .and_then(|p| p.alias)
                        .map(Ipv4Net::from),
                )
                .collect(),
            iroutes_v6: overrides.iroutes_v6.clone(),
            ping: overrides.ping,
            ping_restart: overrides.ping_restart,
            data_v2,
            cipher,
            client_id: self.next_client_id,
            connected_unix,
        };
        self.next_client_id += 1;
        Ok((
            ConnPeer {
                id: peer_id,
                pool_slot,
                announced: false,
                up,
            },
            DataParams { cipher, ekm },
            push,
        ))
    }

    fn assign_addresses(&mut self, cn: &str, o: &CcdEntry) -> Result<Assignment, PoolError> {
        let server_v6 = self.settings.server_v6;
        let static_v6 = o.ifconfig_ipv6_push.map(|p| PushedV6 {
            addr: p.addr.addr(),
            prefix_len: p.addr.prefix_len(),
            remote: p
                .remote
                .or(server_v6.map(|s| s.0))
                .unwrap_or(Ipv6Addr::UNSPECIFIED),
        });
        if let Some(p) = o.ifconfig_push {
            let (local, remote_or_mask) = (p.local, p.remote_netmask);
            // A static IPv4 address disables pool IPv6 for that client (OpenVPN 2.6).
            let v4 = match self.settings.v4_layout {
                V4Layout::Subnet { .. } => PushedV4::Subnet {
                    addr: local,
                    netmask: remote_or_mask,
                },
                V4Layout::Net30 => PushedV4::PointToPoint {
                    addr: local,
                    peer: remote_or_mask,
                },
            };
            return Ok((Some(v4), static_v6, None));
        }
        if !self.pool.has_v4() && !self.pool.has_v6() {
            return Ok((None, static_v6, None));
        }
        if !self.pool.has_v4() && static_v6.is_some() {
            return Ok((None, static_v6, None));
        }
        let lease = self.pool.acquire(cn)?;
        let v4 = lease
            .v4
            .map(|addr| match (self.settings.v4_layout, lease.v4_remote) {
                (V4Layout::Subnet { netmask }, _) => PushedV4::Subnet { addr, netmask },
                (V4Layout::Net30, Some(peer)) => PushedV4::PointToPoint { addr, peer },
                (V4Layout::Net30, None) => PushedV4::PointToPoint { addr, peer: addr },
            });
        let v6 = static_v6.or_else(|| {
            let (server, bits) = server_v6?;
            lease.v6.map(|addr| PushedV6 {
                addr,
                prefix_len: bits,
                remote: server,
            })
        });
        Ok((v4, v6, Some(lease.slot)))
    }

    fn close_conn(&mut self, id: u64, reason: CloseReason) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(t) = conn.timer {
            self.timers.remove(&(t, id));
        }
        if self.by_addr.get(&conn.remote) == Some(&id) {
            self.by_addr.remove(&conn.remote);
        }
        match conn.peer {
            Some(peer) => {
                if let Some(slot) = peer.pool_slot {
                    if let Err(e) = self.pool.release(slot) {
                        tracing::warn!("pool slot {slot} not released: {e}");
                    }
                }
                if let Some(used) = self.peer_ids.get_mut(peer.id.0 as usize) {
                    *used = false;
                }
                tracing::info!(
                    cn = peer.up.common_name,
                    peer_id = peer.id.0,
                    ?reason,
                    "client disconnected"
                );
                if peer.announced {
                    self.events.push_back(ServerEvent::PeerDown {
                        peer_id: peer.id,
                        common_name: peer.up.common_name,
                        reason,
                    });
                }
            }
            None => self.events.push_back(ServerEvent::HandshakeFailed {
                remote: conn.remote,
                reason,
            }),
        }
    }

    /// Disconnect a peer (ping-restart expiry, OCC_EXIT, management kill). With `message`, the
    /// client is told first (`RESTART`, `HALT`) and the session lingers for its ACK.
    pub fn kill_peer(
        &mut self,
        now: Instant,
        peer_id: PeerId,
        message: Option<&str>,
        reason: CloseReason,
    ) {
        let Some(id) = self.conn_of_peer(peer_id) else {
            return;
        };
        match message {
            Some(text) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.session.shutdown(now, text);
                }
                self.drain_conn(now, id);
            }
            None => self.close_conn(id, reason),
        }
    }

    fn conn_of_peer(&self, peer_id: PeerId) -> Option<u64> {
        self.conns
            .iter()
            .find(|(_, c)| c.peer.as_ref().is_some_and(|p| p.id == peer_id))
            .map(|(&id, _)| id)
    }

    /// A data packet authenticated from a new address for this peer (float, §11.6).
    pub fn peer_floated(&mut self, peer_id: PeerId, to: SocketAddr) {
        let Some(id) = self.conn_of_peer(peer_id) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&id) {
            if self.by_addr.get(&c.remote) == Some(&id) {
                self.by_addr.remove(&c.remote);
            }
            c.remote = to;
            if let Some(p) = c.peer.as_mut() {
                p.up.remote = to;
            }
            self.by_addr.insert(to, id);
        }
    }

    /// Renegotiate a peer's keys now (reneg-bytes / reneg-pkts reached in the data plane).
    pub fn renegotiate(&mut self, now: Instant, peer_id: PeerId) {
        if let Some(id) = self.conn_of_peer(peer_id) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.session.start_renegotiation(now);
            }
            self.drain_conn(now, id);
        }
    }

    /// Tell every client we are going (`RESTART` for `explicit-exit-notify`).
    pub fn shutdown_all(&mut self, now: Instant, text: &str) {
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.conns.get_mut(&id) {
                c.session.send_text(text);
            }
            self.drain_conn(now, id);
        }
    }

    /// The earliest session deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Run the sessions whose deadline has come (each at most once per call, even if its next
    /// deadline is already due again).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(c) = self.conns.get_mut(&id) {
                c.timer = None;
            }
            due.push(id);
        }
        for id in due {
            if let Some(c) = self.conns.get_mut(&id) {
                c.session.handle_timeout(now);
            }
            self.drain_conn(now, id);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Connected peers, for status output.
    pub fn peers(&self) -> impl Iterator<Item = &PeerUp> {
        self.conns
            .values()
            .filter_map(|c| c.peer.as_ref().filter(|p| p.announced).map(|p| &p.up))
    }

    /// Find a peer by common name or real address (management `kill`).
    pub fn find_peers(&self, pred: impl Fn(&PeerUp) -> bool) -> Vec<PeerId> {
        self.peers()
            .filter(|p| pred(p))
            .map(|p| p.peer_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_refusal_only_for_clients_that_understand_it() {
        let mut info = PeerInfo::parse("IV_PROTO=990\n");
        assert_eq!(
            temporary_refusal(&info, "max-clients reached"),
            "TEMP[backoff 10,advance remote]:max-clients reached"
        );
        info.iv_proto &= !IV_PROTO_AUTH_FAIL_TEMP;
        assert_eq!(
            temporary_refusal(&info, "max-clients reached"),
            "max-clients reached"
        );
    }
}
