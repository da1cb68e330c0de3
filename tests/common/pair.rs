//! In-memory fwd client ↔ fwd server pair over a simulated network with a fake clock.
//!
//! Owns: building both ends from OpenVPN-syntax config text with inline, in-test generated key
//! material (`fwd::pki::Pki`), a lossy/reordering/duplicating datagram link with per-datagram
//! fates, and a tiny data plane on each side that installs keys exactly as `server/run.rs`
//! (`ServerEvent::{PeerUp, Keys, TxSwitch, KeyRetired, PeerDown}`) and `client/run.rs`
//! (`Event::{PushReply, KeysReady, TxSwitch, KeyRetired}`) do.
//!
//! Invariants: nothing touches the network or the real clock; time only moves through
//! [`Pair::advance`] / [`Pair::run_until`]; every datagram is routed by its opcode like a shard
//! does (P_DATA_* to the data plane, everything else to the control plane), so data packets and
//! control packets share one ordered link. Included with `#[path]` by the tests that use it.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fwd::client::pushed::{self, Pushed};
use fwd::client::run::ClientPlan;
use fwd::dataplane::forward::key_slot;
use fwd::dataplane::peers::{Peer, PeerTable};
use fwd::pki::{render_static_key_v1, Pki};
use fwd::proto::data::{parse_data_header, DropReason, Side, HEADROOM};
use fwd::proto::session::{CloseReason, DataParams, Event, Session, SessionConfig};
use fwd::proto::wire::Opcode;
use fwd::route::PeerId;
use fwd::server::core::{ServerCore, ServerEvent};

/// Unix time at the start of every simulation (fixed so runs are reproducible).
pub const UNIX0: u64 = 1_750_000_000;

/// Key material shared by every pair in a test binary (generating it is the slow part).
pub struct Material {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    /// OpenVPN static key file text, for tls-crypt / tls-auth.
    pub static_key: String,
}

pub fn material() -> &'static Material {
    static M: OnceLock<Material> = OnceLock::new();
    M.get_or_init(|| {
        let pki = Pki::new_ca("fwd test CA").expect("CA");
        let server = pki.issue_server("server").expect("server cert");
        let client = pki.issue_client("alice").expect("client cert");
        let mut key = [0u8; 256];
        for (i, b) in key.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        Material {
            ca: pki.ca_cert_pem.clone(),
            server_cert: server.cert_pem,
            server_key: server.key_pem,
            client_cert: client.cert_pem,
            client_key: client.key_pem,
            static_key: render_static_key_v1(&key),
        }
    })
}

/// Control-channel wrapping of both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wrap {
    TlsCrypt,
    TlsAuth,
    None,
}

/// Knobs of one simulated pair.
#[derive(Clone, Debug)]
pub struct Options {
    pub wrap: Wrap,
    /// Extra lines for the server / client configuration.
    pub server_extra: String,
    pub client_extra: String,
    /// Replace the client's IV_PROTO (peer-info) with this value.
    pub client_iv_proto: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            wrap: Wrap::TlsCrypt,
            server_extra: String::new(),
            client_extra: String::new(),
            client_iv_proto: None,
        }
    }
}

fn inline(s: &mut String, tag: &str, body: &str) {
    s.push_str(&format!("<{tag}>\n{}\n</{tag}>\n", body.trim_end()));
}

/// The `fwd init` cipher list unless the extra lines choose their own.
fn default_ciphers(s: &mut String, extra: &str) {
    if !extra.contains("data-ciphers ") {
        s.push_str("data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\n");
    }
}

pub fn server_conf(o: &Options) -> String {
    let m = material();
    let mut s = String::from(
        "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\n\
         server-ipv6 fd00:8::/64\ndh none\nremote-cert-tls client\n",
    );
    default_ciphers(&mut s, &o.server_extra);
    inline(&mut s, "ca", &m.ca);
    inline(&mut s, "cert", &m.server_cert);
    inline(&mut s, "key", &m.server_key);
    match o.wrap {
        Wrap::TlsCrypt => inline(&mut s, "tls-crypt", &m.static_key),
        Wrap::TlsAuth => {
            inline(&mut s, "tls-auth", &m.static_key);
            s.push_str("key-direction 0\n");
        }
        Wrap::None => {}
    }
    s.push_str(&o.server_extra);
    s.push('\n');
    s
}

pub fn client_conf(o: &Options) -> String {
    let m = material();
    let mut s = String::from(
        "client\ndev tun\nproto udp\nremote 192.0.2.1 1194\nnobind\nremote-cert-tls server\n",
    );
    default_ciphers(&mut s, &o.client_extra);
    inline(&mut s, "ca", &m.ca);
    inline(&mut s, "cert", &m.client_cert);
    inline(&mut s, "key", &m.client_key);
    match o.wrap {
        Wrap::TlsCrypt => inline(&mut s, "tls-crypt", &m.static_key),
        Wrap::TlsAuth => {
            inline(&mut s, "tls-auth", &m.static_key);
            s.push_str("key-direction 1\n");
        }
        Wrap::None => {}
    }
    s.push_str(&o.client_extra);
    s.push('\n');
    s
}

/// Direction of a datagram on the simulated link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// What the network does with one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Deliver,
    Drop,
    Duplicate,
    /// Deliver it after the next datagram in the same direction (reordering).
    Hold,
    /// Deliver these bytes instead (tampering).
    Replace(Vec<u8>),
}

/// Decides the fate of each datagram put on the link.
pub type Impair = Box<dyn FnMut(Dir, &[u8]) -> Fate>;

/// Whether a datagram is a data-channel packet (P_DATA_V1/V2).
pub fn is_data(b: &[u8]) -> bool {
    b.first()
        .is_some_and(|&f| f >> 3 == Opcode::DataV1 as u8 || f >> 3 == Opcode::DataV2 as u8)
}

/// What one side of the pair saw, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    PushReply(Vec<String>),
    Keys { key_id: u8, tx_now: bool },
    TxSwitch(u8),
    KeyRetired(u8),
    PeerUp(u32),
    PeerDown(u32, CloseReason),
    HandshakeFailed(CloseReason),
    Closed(CloseReason),
    Message(String),
}

#[derive(Default)]
struct Link {
    queue: VecDeque<Vec<u8>>,
    held: Vec<Vec<u8>>,
}

/// A received, decrypted data packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub key_id: u8,
    pub plain: Vec<u8>,
}

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub server: ServerCore,
    pub client: Session,
    pub client_plan: ClientPlan,
    pub server_replay: (u32, u64),
    pub client_addr: SocketAddr,
    pub server_addr: SocketAddr,
    pub impair: Option<Impair>,
    to_server: Link,
    to_client: Link,
    /// Server data plane: the peer table as `server/run.rs` maintains it.
    pub server_peers: PeerTable,
    /// Client data plane: the one peer (the server), created at PUSH_REPLY.
    pub client_peer: Option<Arc<Peer>>,
    pub pushed: Option<Pushed>,
    pub client_seen: Vec<Seen>,
    pub server_seen: Vec<Seen>,
    /// Key blocks per key id as each side derived them.
    pub client_blocks: BTreeMap<u8, Vec<u8>>,
    pub server_blocks: BTreeMap<u8, Vec<u8>>,
    pub client_rx: Vec<Received>,
    pub server_rx: Vec<Received>,
    pub client_drops: Vec<DropReason>,
    pub server_drops: Vec<DropReason>,
    /// Every datagram put on the link (before impairment), per direction.
    pub sent_to_server: Vec<Vec<u8>>,
    pub sent_to_client: Vec<Vec<u8>>,
    /// One line per datagram put on the link: time, direction, opcode, length, fate.
    pub trace: Vec<String>,
    /// Datagrams the server sent to addresses other than the client's.
    pub stray: Vec<(SocketAddr, Vec<u8>)>,
}

fn fate_name(f: &Fate) -> &'static str {
    match f {
        Fate::Deliver => "deliver",
        Fate::Drop => "DROP",
        Fate::Duplicate => "DUP",
        Fate::Hold => "HOLD",
        Fate::Replace(_) => "TAMPER",
    }
}

impl Pair {
    pub fn new(o: &Options) -> Pair {
        Pair::with_seed(o, 7)
    }

    pub fn with_seed(o: &Options, seed: u8) -> Pair {
        let s = fwd::config::load_str(&server_conf(o), Path::new("server.conf"))
            .unwrap_or_else(|e| panic!("server config: {e:?}"));
        let c = fwd::config::load_str(&client_conf(o), Path::new("client.conf"))
            .unwrap_or_else(|e| panic!("client config: {e:?}"));
        let splan = fwd::plan::server_plan(&s.config).expect("server plan");
        let mut cplan = fwd::plan::client_plan(&c.config).expect("client plan");
        if let Some(iv) = o.client_iv_proto {
            let base = &cplan.session;
            let peer_info = fwd::proto::messages::peer_info_string(&cplan.data_ciphers, iv, 1600);
            cplan.session = Arc::new(SessionConfig {
                peer_info: Some(peer_info),
                ..SessionConfig::clone(base)
            });
        }
        let now = Instant::now();
        let max = splan.settings.max_clients as usize;
        let server = ServerCore::new(
            splan.settings,
            splan.pool,
            splan.directory,
            now,
            UNIX0,
            [seed; 32],
        );
        let client = Session::new_client(
            cplan.session.clone(),
            now,
            UNIX0,
            [seed.wrapping_add(1); 32],
        )
        .expect("client session");
        Pair {
            now,
            start: now,
            server,
            client,
            client_plan: cplan,
            server_replay: splan.replay_window,
            client_addr: "192.0.2.10:40000".parse().expect("addr"),
            server_addr: "192.0.2.1:1194".parse().expect("addr"),
            impair: None,
            to_server: Link::default(),
            to_client: Link::default(),
            server_peers: PeerTable::new(max),
            client_peer: None,
            pushed: None,
            client_seen: Vec::new(),
            server_seen: Vec::new(),
            client_blocks: BTreeMap::new(),
            server_blocks: BTreeMap::new(),
            client_rx: Vec::new(),
            server_rx: Vec::new(),
            client_drops: Vec::new(),
            server_drops: Vec::new(),
            sent_to_server: Vec::new(),
            sent_to_client: Vec::new(),
            trace: Vec::new(),
            stray: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn unix(&self) -> u64 {
        UNIX0 + self.elapsed().as_secs()
    }

    /// Put a datagram on the link, through the impairment.
    pub fn send(&mut self, dir: Dir, bytes: Vec<u8>) {
        match dir {
            Dir::ToServer => self.sent_to_server.push(bytes.clone()),
            Dir::ToClient => self.sent_to_client.push(bytes.clone()),
        }
        let fate = match self.impair.as_mut() {
            Some(f) => f(dir, &bytes),
            None => Fate::Deliver,
        };
        let op = bytes.first().map_or(0, |b| b >> 3);
        self.trace.push(format!(
            "{:?} {dir:?} op={op} len={} {:?}",
            self.elapsed(),
            bytes.len(),
            fate_name(&fate)
        ));
        let link = match dir {
            Dir::ToServer => &mut self.to_server,
            Dir::ToClient => &mut self.to_client,
        };
        match fate {
            Fate::Deliver => {
                link.queue.push_back(bytes);
                let held = std::mem::take(&mut link.held);
                link.queue.extend(held);
            }
            Fate::Drop => {}
            Fate::Duplicate => {
                link.queue.push_back(bytes.clone());
                link.queue.push_back(bytes);
            }
            Fate::Hold => link.held.push(bytes),
            Fate::Replace(b) => link.queue.push_back(b),
        }
    }

    /// Move every output and every queued datagram until nothing changes (time stands still).
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            while let Some(b) = self.client.poll_transmit(self.now) {
                self.send(Dir::ToServer, b);
                progress = true;
            }
            while let Some(ev) = self.client.poll_event() {
                self.client_event(ev);
                progress = true;
            }
            while let Some((to, b)) = self.server.poll_transmit() {
                if to == self.client_addr {
                    self.send(Dir::ToClient, b);
                } else {
                    self.stray.push((to, b));
                }
                progress = true;
            }
            while let Some(ev) = self.server.poll_event() {
                self.server_event(ev);
                progress = true;
            }
            while let Some(b) = self.to_server.queue.pop_front() {
                self.deliver_to_server(&b);
                progress = true;
            }
            while let Some(b) = self.to_client.queue.pop_front() {
                self.deliver_to_client(&b);
                progress = true;
            }
            if !progress {
                return;
            }
        }
        panic!("pair does not quiesce at {:?}", self.elapsed());
    }

    /// Release reordered datagrams that found no successor.
    fn release_held(&mut self) {
        for link in [&mut self.to_server, &mut self.to_client] {
            let held = std::mem::take(&mut link.held);
            link.queue.extend(held);
        }
    }

    /// Run both ends' timers up to `now + max` (or their next deadline, whichever is first).
    pub fn advance(&mut self, max: Duration) {
        self.pump();
        self.release_held();
        self.pump();
        let mut target = self.now + max;
        for t in [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
        {
            target = target.min(t);
        }
        // A deadline in the past is handled now; never move time backwards.
        self.now = target.max(self.now);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.pump();
    }

    /// Advance the fake clock (in steps of at most `step`) until `pred` holds or `limit` of
    /// fake time passed since the call. Returns whether `pred` held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut pred: impl FnMut(&Pair) -> bool,
    ) -> bool {
        let end = self.now + limit;
        let mut spins = 0u32;
        self.pump();
        while !pred(self) {
            if self.now >= end {
                return false;
            }
            let before = self.now;
            self.advance(step.min(end - self.now));
            if self.now == before {
                spins += 1;
                assert!(
                    spins < 1000,
                    "timers fire without progress at {:?} after {} datagrams: client {:?} server {:?} ({:?} / {:?})",
                    self.elapsed(),
                    self.sent_to_server.len() + self.sent_to_client.len(),
                    self.client_seen,
                    self.server_seen,
                    self.client.poll_timeout().map(|t| t.saturating_duration_since(self.start)),
                    self.server.poll_timeout().map(|t| t.saturating_duration_since(self.start)),
                );
            } else {
                spins = 0;
            }
        }
        true
    }

    /// Both ends have data keys and the client has its PUSH_REPLY.
    pub fn established(&self) -> bool {
        let client_ok = self
            .client_peer
            .as_ref()
            .is_some_and(|p| p.keys().tx.is_some());
        let server_ok = self.server_peers.iter().any(|p| p.keys().tx.is_some());
        client_ok && server_ok
    }

    pub fn handshake(&mut self, limit: Duration) -> bool {
        self.run_until(limit, Duration::from_millis(100), |p| p.established())
    }

    pub fn client_closed(&self) -> Option<&CloseReason> {
        self.client_seen.iter().find_map(|s| match s {
            Seen::Closed(r) => Some(r),
            _ => None,
        })
    }

    fn client_event(&mut self, ev: Event) {
        let now = self.now;
        match ev {
            Event::PushReply(opts) => {
                let filtered = pushed::filter(&opts, &self.client_plan.pull_filters, false)
                    .expect("pull-filter");
                let p = pushed::parse(&filtered);
                let cipher = pushed::choose_cipher(
                    &self.client_plan.data_ciphers,
                    self.client_plan.data_ciphers_fallback,
                    &p,
                )
                .ok();
                self.client_seen.push(Seen::PushReply(opts));
                match cipher {
                    Some(cipher) => self
                        .client
                        .set_data_params(now, DataParams { cipher, ekm: p.ekm }),
                    None => self
                        .client_seen
                        .push(Seen::Message("no usable pushed cipher".into())),
                }
                let peer = Peer::new(
                    PeerId(p.peer_id.unwrap_or(0)),
                    p.peer_id.is_some(),
                    self.server_addr,
                    "server".into(),
                );
                self.client_peer = Some(Arc::new(peer));
                self.pushed = Some(p);
            }
            Event::KeysReady {
                key_id,
                cipher,
                key_block,
                tx_now,
            } => {
                self.client_seen.push(Seen::Keys { key_id, tx_now });
                self.client_blocks
                    .insert(key_id, key_block.as_bytes().to_vec());
                let peer = self.client_peer.as_ref().expect("keys before PUSH_REPLY");
                let slot = key_slot(
                    key_id,
                    cipher,
                    &key_block,
                    Side::Client,
                    self.client_plan.replay_window,
                )
                .expect("client key slot");
                peer.install_key(slot, tx_now);
            }
            Event::TxSwitch { key_id } => {
                self.client_seen.push(Seen::TxSwitch(key_id));
                if let Some(peer) = &self.client_peer {
                    peer.switch_tx(key_id);
                }
            }
            Event::KeyRetired { key_id } => {
                self.client_seen.push(Seen::KeyRetired(key_id));
                if let Some(peer) = &self.client_peer {
                    peer.retire_key(key_id);
                }
            }
            Event::Closed(r) => self.client_seen.push(Seen::Closed(r)),
            Event::Message(m) => self.client_seen.push(Seen::Message(format!("{m:?}"))),
            Event::ClientAuthRequest { .. } => self
                .client_seen
                .push(Seen::Message("auth request at client".into())),
        }
    }

    fn server_event(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::PeerUp(up) => {
                self.server_seen.push(Seen::PeerUp(up.peer_id.0));
                let peer = Arc::new(Peer::new(
                    up.peer_id,
                    up.data_v2,
                    up.remote,
                    up.common_name.clone(),
                ));
                self.server_peers.insert(peer);
            }
            ServerEvent::Keys {
                peer_id,
                key_id,
                cipher,
                key_block,
                tx_now,
            } => {
                self.server_seen.push(Seen::Keys { key_id, tx_now });
                self.server_blocks
                    .insert(key_id, key_block.as_bytes().to_vec());
                let peer = self
                    .server_peers
                    .get(peer_id)
                    .expect("keys for unknown peer");
                let slot = key_slot(key_id, cipher, &key_block, Side::Server, self.server_replay)
                    .expect("server key slot");
                peer.install_key(slot, tx_now);
            }
            ServerEvent::TxSwitch { peer_id, key_id } => {
                self.server_seen.push(Seen::TxSwitch(key_id));
                if let Some(peer) = self.server_peers.get(peer_id) {
                    peer.switch_tx(key_id);
                }
            }
            ServerEvent::KeyRetired { peer_id, key_id } => {
                self.server_seen.push(Seen::KeyRetired(key_id));
                if let Some(peer) = self.server_peers.get(peer_id) {
                    peer.retire_key(key_id);
                }
            }
            ServerEvent::PeerDown {
                peer_id, reason, ..
            } => {
                self.server_seen.push(Seen::PeerDown(peer_id.0, reason));
                self.server_peers.remove(peer_id);
            }
            ServerEvent::HandshakeFailed { reason, .. } => {
                self.server_seen.push(Seen::HandshakeFailed(reason))
            }
        }
    }

    fn deliver_to_server(&mut self, b: &[u8]) {
        if !is_data(b) {
            self.server.handle_datagram(self.now, self.client_addr, b);
            return;
        }
        let peer = match parse_data_header(b) {
            Ok(h) => match h.peer_id {
                Some(id) => self.server_peers.get(PeerId(id)),
                None => self.server_peers.by_addr(self.client_addr),
            },
            Err(e) => {
                self.server_drops.push(e);
                return;
            }
        };
        let Some(peer) = peer else {
            self.server_drops.push(DropReason::UnknownPeer);
            return;
        };
        match open(&peer, b, self.unix()) {
            Ok(r) => self.server_rx.push(r),
            Err(e) => self.server_drops.push(e),
        }
    }

    fn deliver_to_client(&mut self, b: &[u8]) {
        if !is_data(b) {
            self.client.handle_datagram(self.now, b);
            return;
        }
        let Some(peer) = self.client_peer.clone() else {
            self.client_drops.push(DropReason::UnknownPeer);
            return;
        };
        match open(&peer, b, self.unix()) {
            Ok(r) => self.client_rx.push(r),
            Err(e) => self.client_drops.push(e),
        }
    }

    /// A datagram for the server from any address, bypassing the link (injection).
    pub fn inject_to_server(&mut self, from: SocketAddr, b: &[u8]) {
        if from == self.client_addr || is_data(b) {
            let saved = self.client_addr;
            self.client_addr = from;
            self.deliver_to_server(b);
            self.client_addr = saved;
        } else {
            self.server.handle_datagram(self.now, from, b);
        }
    }

    /// Start over with a fresh client session from the same address (a client restart).
    pub fn restart_client(&mut self, seed: u8) {
        self.client = Session::new_client(
            self.client_plan.session.clone(),
            self.now,
            self.unix(),
            [seed; 32],
        )
        .expect("client session");
        self.client_peer = None;
        self.pushed = None;
        self.client_blocks.clear();
        self.to_client = Link::default();
    }

    /// The server's view of the (only) client.
    pub fn server_peer(&self) -> Option<Arc<Peer>> {
        self.server_peers.iter().next()
    }

    /// Seal `plain` with the client's current TX key; returns the wire packet and its key id.
    pub fn client_seal(&self, plain: &[u8]) -> Option<(Vec<u8>, u8)> {
        seal(self.client_peer.as_ref()?, plain)
    }

    pub fn server_seal(&self, plain: &[u8]) -> Option<(Vec<u8>, u8)> {
        let peer = self.server_peer()?;
        seal(&peer, plain)
    }

    /// Seal and put on the link; returns the key id used.
    pub fn client_send_data(&mut self, plain: &[u8]) -> Option<u8> {
        let (wire, key_id) = self.client_seal(plain)?;
        self.send(Dir::ToServer, wire);
        Some(key_id)
    }

    pub fn server_send_data(&mut self, plain: &[u8]) -> Option<u8> {
        let (wire, key_id) = self.server_seal(plain)?;
        self.send(Dir::ToClient, wire);
        Some(key_id)
    }
}

/// Seal with `peer`'s TX key as `forward::seal_one` does (HEADROOM convention).
pub fn seal(peer: &Peer, plain: &[u8]) -> Option<(Vec<u8>, u8)> {
    let ring = peer.keys();
    let slot = ring.tx.as_ref()?;
    let mut b = vec![0u8; HEADROOM + plain.len()];
    b[HEADROOM..].copy_from_slice(plain);
    let peer_id = peer.data_v2.then_some(peer.id.0);
    let range = slot
        .tx
        .seal_in_place(slot.key_id, peer_id, &mut b, plain.len())
        .ok()?;
    Some((b[range].to_vec(), slot.key_id))
}

/// Open a data packet with the RX key its key id names, as the shard does.
pub fn open(peer: &Peer, wire: &[u8], now_secs: u64) -> Result<Received, DropReason> {
    let h = parse_data_header(wire)?;
    let ring = peer.keys();
    let slot = ring.rx_key(h.key_id).ok_or(DropReason::UnknownKeyId)?;
    let mut buf = wire.to_vec();
    let mut replay = slot.replay.lock().expect("replay lock");
    let plain = slot.rx.open_in_place(&mut buf, &mut replay, now_secs)?;
    Ok(Received {
        key_id: h.key_id,
        plain: plain.to_vec(),
    })
}

/// A minimal IPv4/UDP packet from `src` to `dst` carrying `tag` as payload.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, tag: u32) -> Vec<u8> {
    let payload = tag.to_be_bytes();
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&5000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5001u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(&payload);
    p
}

/// A minimal IPv6/UDP packet from `src` to `dst` carrying `tag` as payload.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, tag: u32) -> Vec<u8> {
    let payload = tag.to_be_bytes();
    let plen = 8 + payload.len();
    let mut p = vec![0u8; 40 + plen];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..42].copy_from_slice(&5000u16.to_be_bytes());
    p[42..44].copy_from_slice(&5001u16.to_be_bytes());
    p[44..46].copy_from_slice(&(plen as u16).to_be_bytes());
    p[48..].copy_from_slice(&payload);
    p
}
