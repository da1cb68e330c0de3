//! One OpenVPN connection's control channel, for either role, as a sans-IO state machine.
//!
//! A `Session` owns the tls-auth/tls-crypt replay state of the connection and up to two key
//! states (the primary and, during a renegotiation, the lame duck). Each key state owns its
//! reliability layer, its TLS session and its key-method-2 exchange. Inputs are wire datagrams
//! and time; outputs are wire datagrams (`poll_transmit`), events (`poll_event`) and the next
//! deadline (`poll_timeout`). The session never derives which cipher to use or which addresses
//! a client gets: the owner (server or client logic) answers `Event::ClientAuthRequest` with
//! [`Session::accept`]/[`Session::reject`] and a client's `Event::PushReply` with
//! [`Session::set_data_params`].
//!
//! Invariants: the primary key state is `keys[0]`; a key state is never removed while it is the
//! only one; data-channel keys are announced exactly once per key state.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, RngCore, SeedableRng};

use crate::proto::data::{Cipher, KeyBlock};
use crate::proto::keys::{self, KeyMethod2};
use crate::proto::messages::{self, ControlMessage, PushReplyAccumulator};
use crate::proto::reliable::{Reliable, ReliableConfig};
use crate::proto::tls::TlsSession;
use crate::proto::wire::{ControlPacket, KeyId, Opcode, SessionId};
use crate::proto::wrap::{ReplayCounter, ReplayWindow, WrapKeys};

/// How long a client waits between PUSH_REQUESTs (OpenVPN 2.6: 5 s).
const PUSH_REQUEST_INTERVAL: Duration = Duration::from_secs(5);
/// A session that failed authentication or was told to exit lingers this long so that
/// retransmissions and ACKs still find it (OpenVPN's "scheduled exit", 5 s).
const LINGER: Duration = Duration::from_secs(5);
/// Upper bound for buffered control-channel plaintext; a peer sending more without a NUL is
/// broken or hostile.
const MAX_PLAINTEXT: usize = 64 * 1024;

/// The TLS configuration of one side; each key state gets a fresh TLS session from it.
#[derive(Clone)]
pub enum TlsSide {
    Server(Arc<rustls::ServerConfig>),
    Client(Arc<rustls::ClientConfig>),
}

impl TlsSide {
    pub fn role(&self) -> Role {
        match self {
            TlsSide::Server(_) => Role::Server,
            TlsSide::Client(_) => Role::Client,
        }
    }

    fn session(&self) -> Result<TlsSession, CloseReason> {
        match self {
            TlsSide::Server(c) => TlsSession::new_server(c.clone()),
            TlsSide::Client(c) => TlsSession::new_client(c.clone()),
        }
        .map_err(|e| CloseReason::Tls(e.to_string()))
    }
}

/// Which end of the TLS connection this session is (the same role fixes the tls-crypt key
/// directions).
pub use crate::proto::wrap::Role;

/// Everything a session needs that is fixed for the connection.
#[derive(Clone)]
pub struct SessionConfig {
    pub wrap: Arc<WrapKeys>,
    pub tls: TlsSide,
    /// `--hand-window`: a key negotiation must finish within this.
    pub hand_window: Duration,
    /// `--tls-timeout`: first control-channel retransmission.
    pub tls_timeout: Duration,
    /// `--reneg-sec`; `None` disables time-based renegotiation.
    pub reneg_after: Option<Duration>,
    /// `--tran-window`: how long the lame-duck key stays usable after a renegotiation.
    pub tran_window: Duration,
    /// TLS bytes per P_CONTROL_V1 packet.
    pub max_control_payload: usize,
    /// OCC options string sent in key-method 2.
    pub options_string: String,
    /// Client only: peer-info (`IV_VER=…`) sent in key-method 2.
    pub peer_info: Option<String>,
    /// Client only: `auth-user-pass` credentials.
    pub credentials: Option<(String, String)>,
    /// Force the legacy PRF even when the peer offers TLS-EKM (fwd's `force-prf`).
    pub force_prf: bool,
}

impl SessionConfig {
    /// Our end of the connection, as the TLS side says.
    pub fn role(&self) -> Role {
        self.tls.role()
    }
}

/// Data-channel parameters fixed at the first key negotiation and kept for renegotiations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataParams {
    pub cipher: Cipher,
    /// Derive keys with the TLS exporter (`key-derivation tls-ekm`) instead of the PRF.
    pub ekm: bool,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    HandshakeTimeout,
    Tls(String),
    Protocol(String),
    AuthFailed(Option<String>),
    /// The peer said `EXIT`, `RESTART` or `HALT`.
    PeerExit(String),
    /// We rejected the client and the linger time passed.
    Rejected,
    /// The owner asked for it.
    Local(String),
}

/// What the session asks of its owner or tells it.
#[derive(Debug)]
pub enum Event {
    /// Server: the client finished TLS and sent its key-method-2 message (first key only;
    /// renegotiations are re-authenticated against the same certificate name automatically).
    ClientAuthRequest {
        common_name: Option<String>,
        peer_info: Option<String>,
        username: Option<String>,
        password: Option<String>,
        options: String,
        cert_sha256: Option<[u8; 32]>,
    },
    /// Client: the complete (continuation-joined) PUSH_REPLY option list.
    PushReply(Vec<String>),
    /// Data-channel key material for `key_id` is ready. `tx_now` tells whether this key should
    /// be used for sending immediately (first key) or only after `Event::TxSwitch`.
    KeysReady {
        key_id: u8,
        cipher: Cipher,
        key_block: Box<KeyBlock>,
        tx_now: bool,
    },
    /// Start sending with `key_id` (the peer has certainly derived it by now).
    TxSwitch { key_id: u8 },
    /// The lame-duck key `key_id` must no longer be accepted.
    KeyRetired { key_id: u8 },
    /// A control message the session does not handle itself (INFO, EXIT on the server, …).
    Message(ControlMessage),
    /// The session is over; drop it.
    Closed(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AuthState {
    /// Server: waiting for the owner's verdict. Client: unused.
    Pending,
    Accepted,
    Rejected,
}

struct KeyState {
    key_id: KeyId,
    reliable: Reliable,
    tls: TlsSession,
    started: Instant,
    /// Decrypted control-channel bytes not yet consumed.
    plaintext: Vec<u8>,
    local_km2: Option<KeyMethod2>,
    remote_km2: Option<KeyMethod2>,
    keys_announced: bool,
    tx_switched: bool,
    keys_at: Option<Instant>,
    /// Our (hard or soft) reset was acknowledged, so TLS records may go out. Like OpenVPN's
    /// S_PRE_START -> S_START: a client that sent its ClientHello before the server's reset
    /// would have it dropped by the stateless cookie check (no echoed session id) and back
    /// off its retransmission timer for nothing.
    tls_started: bool,
}

/// One connection's control channel.
pub struct Session {
    cfg: Arc<SessionConfig>,
    local_sid: SessionId,
    remote_sid: Option<SessionId>,
    replay_tx: ReplayCounter,
    replay_rx: ReplayWindow,
    created: Instant,
    unix_at_created: u64,
    /// `keys[0]` is the primary key state, `keys[1]` (if any) the lame duck.
    keys: Vec<KeyState>,
    lame_duck_until: Option<Instant>,
    params: Option<DataParams>,
    auth: AuthState,
    push_reply: Vec<String>,
    push_acc: PushReplyAccumulator,
    push_done: bool,
    next_push_request: Option<Instant>,
    linger_until: Option<Instant>,
    close_after_linger: Option<CloseReason>,
    events: VecDeque<Event>,
    closed: bool,
    dropped: u64,
    rng: StdRng,
    scratch: Vec<u8>,
}

impl Session {
    /// A client session: queues the hard reset.
    pub fn new_client(
        cfg: Arc<SessionConfig>,
        now: Instant,
        unix_now: u64,
        seed: [u8; 32],
    ) -> Result<Self, CloseReason> {
        let mut rng = StdRng::from_seed(seed);
        let local_sid = random_sid(&mut rng);
        let tls = cfg.tls.session()?;
        let mut reliable = Reliable::new(local_sid, KeyId::ZERO, now, reliable_cfg(&cfg));
        reliable.queue_message(Opcode::ControlHardResetClientV2, Vec::new());
        let mut s = Session::base(cfg, now, unix_now, local_sid, rng);
        s.keys.push(KeyState::new(KeyId::ZERO, reliable, tls, now));
        Ok(s)
    }

    /// A server session created after the client proved, with its second packet, that it
    /// received our stateless (cookie) hard reset: our reset counts as sent and acknowledged.
    pub fn new_server_after_cookie(
        cfg: Arc<SessionConfig>,
        now: Instant,
        unix_now: u64,
        local_sid: SessionId,
        remote_sid: SessionId,
        seed: [u8; 32],
    ) -> Result<Self, CloseReason> {
        let rng = StdRng::from_seed(seed);
        let tls = cfg.tls.session()?;
        let mut reliable = Reliable::new(local_sid, KeyId::ZERO, now, reliable_cfg(&cfg));
        reliable.set_remote_session(remote_sid);
        reliable.preset_after_cookie();
        let mut s = Session::base(cfg, now, unix_now, local_sid, rng);
        // The cookie reply used replay id 1.
        s.replay_tx = ReplayCounter::starting_at(2, unix_now as u32);
        s.remote_sid = Some(remote_sid);
        s.keys.push(KeyState::new(KeyId::ZERO, reliable, tls, now));
        Ok(s)
    }

    fn base(
        cfg: Arc<SessionConfig>,
        now: Instant,
        unix_now: u64,
        local_sid: SessionId,
        rng: StdRng,
    ) -> Self {
        Session {
            cfg,
            local_sid,
            remote_sid: None,
            replay_tx: ReplayCounter::new(unix_now as u32),
            replay_rx: ReplayWindow::default(),
            created: now,
            unix_at_created: unix_now,
            keys: Vec::with_capacity(2),
            lame_duck_until: None,
            params: None,
            auth: AuthState::Pending,
            push_reply: Vec::new(),
            push_acc: PushReplyAccumulator::default(),
            push_done: false,
            next_push_request: None,
            linger_until: None,
            close_after_linger: None,
            events: VecDeque::new(),
            closed: false,
            dropped: 0,
            rng,
            scratch: Vec::with_capacity(2048),
        }
    }

    pub fn local_session_id(&self) -> SessionId {
        self.local_sid
    }

    pub fn remote_session_id(&self) -> Option<SessionId> {
        self.remote_sid
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Key id of the primary key state.
    pub fn primary_key_id(&self) -> u8 {
        self.keys.first().map(|k| k.key_id.get()).unwrap_or(0)
    }

    pub fn data_params(&self) -> Option<DataParams> {
        self.params
    }

    fn unix(&self, now: Instant) -> u64 {
        self.unix_at_created + now.saturating_duration_since(self.created).as_secs()
    }

    /// Feed one control datagram (still wrapped) from the peer.
    pub fn handle_datagram(&mut self, now: Instant, wire: &[u8]) {
        if self.closed {
            return;
        }
        match self.authenticate(now, wire) {
            Ok(pkt) => {
                self.handle_packet(now, pkt);
                self.drive(now);
            }
            Err(why) => {
                self.dropped += 1;
                tracing::debug!("control packet dropped: {why}");
            }
        }
    }

    /// Unwrap, replay-check and parse a datagram; the replay window moves only for a packet
    /// that authenticated and parsed.
    fn authenticate(&mut self, now: Instant, wire: &[u8]) -> Result<ControlPacket, String> {
        let mut plain = std::mem::take(&mut self.scratch);
        plain.clear();
        let result = (|| {
            let replay_id = self
                .cfg
                .wrap
                .unwrap(wire, &mut plain)
                .map_err(|e| e.to_string())?;
            let unix = self.unix(now);
            if replay_id.is_some_and(|r| !self.replay_rx.check(r, unix)) {
                return Err("replay".to_string());
            }
            let pkt = ControlPacket::parse(&plain).map_err(|e| e.to_string())?;
            if let Some(r) = replay_id {
                self.replay_rx.commit(r, unix);
            }
            Ok(pkt)
        })();
        self.scratch = plain;
        result
    }

    /// Control datagrams dropped so far (bad authentication, replay, malformed, wrong session
    /// or key id, rejected by the reliability layer).
    pub fn dropped_packets(&self) -> u64 {
        self.dropped
    }

    fn handle_packet(&mut self, now: Instant, pkt: ControlPacket) {
        match (self.cfg.role(), self.remote_sid) {
            (_, Some(sid)) if sid != pkt.session_id => {
                self.dropped += 1;
                tracing::debug!("control packet from a different session dropped");
                return;
            }
            (Role::Client, None) => {
                if pkt.opcode != Opcode::ControlHardResetServerV2 {
                    return;
                }
                self.remote_sid = Some(pkt.session_id);
                for k in &mut self.keys {
                    k.reliable.set_remote_session(pkt.session_id);
                }
            }
            (Role::Server, None) => return,
            _ => {}
        }
        let idx = match self.keys.iter().position(|k| k.key_id == pkt.key_id) {
            Some(i) => i,
            None => {
                let primary = self.keys[0].key_id;
                if pkt.opcode == Opcode::ControlSoftResetV1 && pkt.key_id == primary.next() {
                    if let Err(reason) = self.begin_key_state(now, pkt.key_id) {
                        self.close(reason);
                        return;
                    }
                    0
                } else {
                    self.dropped += 1;
                    tracing::debug!(
                        key_id = pkt.key_id.get(),
                        "control packet for unknown key id dropped"
                    );
                    return;
                }
            }
        };
        if let Err(e) = self.keys[idx].reliable.handle_packet(now, &pkt) {
            self.dropped += 1;
            tracing::debug!("control packet rejected: {e}");
        }
    }

    /// Start a renegotiation now (reneg-sec/bytes/pkts reached, or asked by the owner).
    pub fn start_renegotiation(&mut self, now: Instant) {
        let Some(primary) = self.keys.first().filter(|_| !self.closed) else {
            return;
        };
        // One renegotiation at a time: the previous one must have finished and its key be in
        // use for sending.
        if !primary.keys_announced || !primary.tx_switched {
            return;
        }
        let next = primary.key_id.next();
        if let Err(reason) = self.begin_key_state(now, next) {
            self.close(reason);
        }
        self.drive(now);
    }

    /// Make a new primary key state (`key_id`) and send our soft reset; the previous primary
    /// becomes the lame duck.
    fn begin_key_state(&mut self, now: Instant, key_id: KeyId) -> Result<(), CloseReason> {
        let tls = self.cfg.tls.session()?;
        let mut reliable = Reliable::new(self.local_sid, key_id, now, reliable_cfg(&self.cfg));
        if let Some(r) = self.remote_sid {
            reliable.set_remote_session(r);
        }
        reliable.queue_message(Opcode::ControlSoftResetV1, Vec::new());
        if self.keys.len() > 1 {
            let old = self.keys.pop().map(|k| k.key_id.get());
            if let Some(key_id) = old {
                self.events.push_back(Event::KeyRetired { key_id });
            }
        }
        self.keys
            .insert(0, KeyState::new(key_id, reliable, tls, now));
        self.lame_duck_until = Some(now + self.cfg.tran_window);
        tracing::debug!(key_id = key_id.get(), "renegotiation started");
        Ok(())
    }

    /// Server: the owner accepted the client. `push` is the full PUSH_REPLY option list.
    /// `push_now` sends it without waiting for PUSH_REQUEST (client announced IV_PROTO bit 2).
    pub fn accept(&mut self, now: Instant, params: DataParams, push: Vec<String>, push_now: bool) {
        if self.closed || self.auth != AuthState::Pending {
            return;
        }
        self.auth = AuthState::Accepted;
        self.params = Some(params);
        self.push_reply = push;
        if push_now {
            self.send_push_reply();
        }
        self.drive(now);
    }

    /// Server: the owner rejected the client; it gets `AUTH_FAILED[,reason]` and the session
    /// closes after the linger time.
    pub fn reject(&mut self, now: Instant, reason: Option<String>) {
        if self.closed {
            return;
        }
        self.auth = AuthState::Rejected;
        let text = match &reason {
            Some(r) => format!("AUTH_FAILED,{r}"),
            None => "AUTH_FAILED".to_string(),
        };
        self.send_text(&text);
        self.linger(now, CloseReason::Rejected);
        self.drive(now);
    }

    /// Send a control message (e.g. `RESTART`, `EXIT`, `HALT`) on the primary key state.
    pub fn send_text(&mut self, text: &str) {
        let Some(k) = self.keys.first_mut() else {
            return;
        };
        let mut msg = Vec::with_capacity(text.len() + 1);
        msg.extend_from_slice(text.as_bytes());
        msg.push(0);
        if let Err(e) = k.tls.write_message(&msg) {
            tracing::debug!("control message not sent: {e}");
        }
        flush_tls(k);
    }

    /// Tell the peer we are leaving (`EXIT` for clients, `RESTART` from servers) and close once
    /// it had time to acknowledge.
    pub fn shutdown(&mut self, now: Instant, text: &str) {
        self.send_text(text);
        self.linger(now, CloseReason::Local(text.to_string()));
    }

    fn linger(&mut self, now: Instant, reason: CloseReason) {
        self.linger_until = Some(now + LINGER);
        self.close_after_linger = Some(reason);
    }

    /// Client: the owner decided the data-channel parameters from the PUSH_REPLY.
    pub fn set_data_params(&mut self, now: Instant, params: DataParams) {
        if self.params.is_none() {
            self.params = Some(params);
            self.auth = AuthState::Accepted;
        }
        self.drive(now);
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(Event::Closed(reason));
        }
    }

    /// Run every key state as far as its inputs allow.
    fn drive(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.keys.len() && !self.closed {
            if let Err(reason) = self.drive_key(now, i) {
                if i == 0 && self.keys.len() == 1 {
                    self.close(reason);
                } else {
                    // A failed renegotiation drops that key state only.
                    tracing::info!(?reason, "key negotiation failed");
                    let k = self.keys.remove(i);
                    if i == 0 {
                        self.lame_duck_until = None;
                    }
                    self.events.push_back(Event::KeyRetired {
                        key_id: k.key_id.get(),
                    });
                    continue;
                }
            }
            i += 1;
        }
    }

    fn drive_key(&mut self, now: Instant, i: usize) -> Result<(), CloseReason> {
        let role = self.cfg.role();
        {
            let k = &mut self.keys[i];
            if !k.tls_started && k.reliable.all_acked() {
                k.tls_started = true;
            }
            while let Some((opcode, payload)) = k.reliable.pop_received() {
                if matches!(opcode, Opcode::ControlV1 | Opcode::ControlWkcV1) && !payload.is_empty()
                {
                    k.tls
                        .feed_ciphertext(&payload)
                        .map_err(|e| CloseReason::Tls(e.to_string()))?;
                }
            }
            k.tls
                .read_plaintext(&mut k.plaintext)
                .map_err(|e| CloseReason::Tls(e.to_string()))?;
            if k.plaintext.len() > MAX_PLAINTEXT {
                return Err(CloseReason::Protocol("control channel flooded".into()));
            }
        }
        if !self.keys[i].tls.is_handshaking() {
            // Client speaks key-method 2 first; the server answers once it has the client's.
            if role == Role::Client && self.keys[i].local_km2.is_none() {
                let km2 = self.make_km2();
                write_km2(&mut self.keys[i], km2)?;
            }
            if self.keys[i].remote_km2.is_none() {
                self.read_remote_km2(now, i)?;
            }
            if self.keys[i].remote_km2.is_some() {
                self.derive_if_ready(now, i)?;
                self.read_messages(now, i)?;
            }
        }
        flush_tls(&mut self.keys[i]);
        let k = &mut self.keys[i];
        if k.keys_announced && !k.tx_switched && i == 0 && k.reliable.all_acked() {
            k.tx_switched = true;
            let key_id = k.key_id.get();
            self.events.push_back(Event::TxSwitch { key_id });
        }
        Ok(())
    }

    fn make_km2(&mut self) -> KeyMethod2 {
        let client = self.cfg.role() == Role::Client;
        let mut km2 = KeyMethod2::random(&mut self.rng, client, self.cfg.options_string.clone());
        if client {
            km2.peer_info = self.cfg.peer_info.clone();
            if let Some((u, p)) = &self.cfg.credentials {
                km2.username = Some(u.clone());
                km2.password = Some(p.clone());
            }
        }
        km2
    }

    fn read_remote_km2(&mut self, now: Instant, i: usize) -> Result<(), CloseReason> {
        let from_client = self.cfg.role() == Role::Server;
        let k = &mut self.keys[i];
        let Some(len) = km2_frame_len(&k.plaintext, from_client) else {
            return Ok(());
        };
        let km2 = KeyMethod2::parse(&k.plaintext[..len], from_client)
            .map_err(|e| CloseReason::Protocol(format!("key-method 2: {e}")))?;
        k.plaintext.drain(..len);
        let first = k.key_id.get() == 0;
        if self.cfg.role() == Role::Server {
            let event = Event::ClientAuthRequest {
                common_name: k.tls.peer_common_name(),
                peer_info: km2.peer_info.clone(),
                username: km2.username.clone(),
                password: km2.password.clone(),
                options: km2.options.clone(),
                cert_sha256: k.tls.peer_cert_sha256(),
            };
            k.remote_km2 = Some(km2);
            let answer = self.make_km2();
            write_km2(&mut self.keys[i], answer)?;
            if first {
                self.events.push_back(event);
            }
        } else {
            k.remote_km2 = Some(km2);
            if first {
                self.next_push_request = Some(now);
            }
        }
        Ok(())
    }

    fn derive_if_ready(&mut self, now: Instant, i: usize) -> Result<(), CloseReason> {
        let Some(params) = self.params else {
            return Ok(());
        };
        if self.auth != AuthState::Accepted {
            return Ok(());
        }
        let (client_sid, server_sid) = match (self.cfg.role(), self.remote_sid) {
            (Role::Client, Some(r)) => (self.local_sid, r),
            (Role::Server, Some(r)) => (r, self.local_sid),
            (_, None) => return Ok(()),
        };
        let only_key = self.keys.len() == 1;
        let k = &mut self.keys[i];
        if k.keys_announced {
            return Ok(());
        }
        let (Some(local), Some(remote)) = (&k.local_km2, &k.remote_km2) else {
            return Ok(());
        };
        let block = if params.ekm && !self.cfg.force_prf {
            keys::ekm_key_block(|out| {
                k.tls
                    .export_keying_material(out, keys::EKM_LABEL.as_bytes())
            })
            .map_err(|e| CloseReason::Tls(format!("key export: {e}")))?
        } else {
            let (c, s) = match self.cfg.role() {
                Role::Client => (local, remote),
                Role::Server => (remote, local),
            };
            keys::prf_key_block(c, s, client_sid.0, server_sid.0)
                .map_err(|e| CloseReason::Protocol(format!("key derivation: {e}")))?
        };
        k.keys_announced = true;
        k.keys_at = Some(now);
        let first = only_key && k.key_id.get() == 0;
        if first {
            k.tx_switched = true;
        }
        self.events.push_back(Event::KeysReady {
            key_id: k.key_id.get(),
            cipher: params.cipher,
            key_block: Box::new(block),
            tx_now: first,
        });
        Ok(())
    }

    fn read_messages(&mut self, now: Instant, i: usize) -> Result<(), CloseReason> {
        loop {
            let k = &mut self.keys[i];
            let Some(nul) = k.plaintext.iter().position(|&b| b == 0) else {
                return Ok(());
            };
            let raw: Vec<u8> = k.plaintext.drain(..=nul).collect();
            let msg = match ControlMessage::parse(&raw[..nul]) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("control message ignored: {e}");
                    continue;
                }
            };
            self.handle_message(now, msg);
            if self.closed {
                return Ok(());
            }
        }
    }

    fn handle_message(&mut self, now: Instant, msg: ControlMessage) {
        match (self.cfg.role(), msg) {
            (Role::Server, ControlMessage::PushRequest) => {
                if self.auth == AuthState::Accepted {
                    self.send_push_reply();
                }
            }
            (
                Role::Client,
                ControlMessage::PushReply {
                    options,
                    continuation,
                },
            ) => {
                if self.push_done {
                    return;
                }
                match self.push_acc.feed(options, continuation) {
                    Ok(Some(all)) => {
                        self.push_done = true;
                        self.next_push_request = None;
                        self.events.push_back(Event::PushReply(all));
                    }
                    Ok(None) => {}
                    Err(e) => self.close(CloseReason::Protocol(e.to_string())),
                }
            }
            (Role::Client, ControlMessage::AuthFailed(reason)) => {
                self.close(CloseReason::AuthFailed(reason));
            }
            (Role::Client, m @ (ControlMessage::Restart(_) | ControlMessage::Halt(_))) => {
                let text = format!("{m:?}");
                self.events.push_back(Event::Message(m));
                self.close(CloseReason::PeerExit(text));
            }
            (Role::Server, ControlMessage::Exit) => {
                self.events.push_back(Event::Message(ControlMessage::Exit));
                self.linger(now, CloseReason::PeerExit("EXIT".into()));
            }
            (_, m) => self.events.push_back(Event::Message(m)),
        }
    }

    fn send_push_reply(&mut self) {
        let msgs = match messages::build_push_reply(&self.push_reply) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("push list not sendable: {e}");
                return;
            }
        };
        for m in &msgs {
            self.send_text(m);
        }
    }

    /// Next wire datagram to send to the peer.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        for i in 0..self.keys.len() {
            if let Some(pkt) = self.keys[i].reliable.poll_transmit(now) {
                let mut plain = Vec::with_capacity(pkt.payload.len() + 64);
                pkt.encode(&mut plain);
                let replay = match self.replay_tx.next() {
                    Ok(r) => r,
                    Err(_) => {
                        self.close(CloseReason::Protocol(
                            "control replay counter exhausted".into(),
                        ));
                        return None;
                    }
                };
                let mut wire = Vec::with_capacity(plain.len() + 64);
                if let Err(e) = self.cfg.wrap.wrap(replay, &plain, &mut wire) {
                    tracing::warn!("control packet not wrapped: {e}");
                    return None;
                }
                return Some(wire);
            }
        }
        None
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest instant at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A closed session does nothing in `handle_timeout`; a stale deadline (e.g. the
        // PUSH_REQUEST timer of a client closed by AUTH_FAILED) would make the owner spin.
        if self.closed {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut min = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for k in &self.keys {
            min(k.reliable.poll_timeout());
            if !k.keys_announced {
                min(Some(k.started + self.cfg.hand_window));
            }
        }
        if let (Some(k), Some(after)) = (self.keys.first(), self.cfg.reneg_after) {
            min(k.keys_at.map(|t| t + after));
        }
        min(self.lame_duck_until);
        min(self.next_push_request);
        min(self.linger_until);
        t
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.linger_until.is_some_and(|t| now >= t) {
            let reason = self
                .close_after_linger
                .take()
                .unwrap_or(CloseReason::Rejected);
            self.close(reason);
            return;
        }
        let hand_window = self.cfg.hand_window;
        if let Some(pos) = self.keys.iter().position(|k| {
            !k.keys_announced && now >= k.started + hand_window && self.auth != AuthState::Rejected
        }) {
            if self.keys.len() == 1 {
                self.close(CloseReason::HandshakeTimeout);
                return;
            }
            let k = self.keys.remove(pos);
            self.lame_duck_until = None;
            self.events.push_back(Event::KeyRetired {
                key_id: k.key_id.get(),
            });
        }
        if self.lame_duck_until.is_some_and(|t| now >= t) {
            self.lame_duck_until = None;
            if self.keys.len() > 1 {
                if let Some(k) = self.keys.pop() {
                    self.events.push_back(Event::KeyRetired {
                        key_id: k.key_id.get(),
                    });
                }
            }
        }
        if self.next_push_request.is_some_and(|t| now >= t) && !self.push_done {
            self.send_text("PUSH_REQUEST");
            self.next_push_request = Some(now + PUSH_REQUEST_INTERVAL);
        }
        // Due even while a lame duck lingers (tran-window is usually longer than reneg-sec):
        // the new key state replaces it, as in openvpn. Waiting for it instead would stall
        // renegotiation and leave poll_timeout in the past, spinning the caller.
        if let (Some(k), Some(after)) = (self.keys.first(), self.cfg.reneg_after) {
            if k.keys_at.is_some_and(|t| now >= t + after) {
                self.start_renegotiation(now);
            }
        }
        self.drive(now);
    }
}

impl KeyState {
    fn new(key_id: KeyId, reliable: Reliable, tls: TlsSession, now: Instant) -> Self {
        KeyState {
            key_id,
            reliable,
            tls,
            started: now,
            plaintext: Vec::new(),
            local_km2: None,
            remote_km2: None,
            keys_announced: false,
            tx_switched: false,
            keys_at: None,
            tls_started: false,
        }
    }
}

fn reliable_cfg(cfg: &SessionConfig) -> ReliableConfig {
    ReliableConfig {
        initial_timeout: cfg.tls_timeout,
        max_payload: cfg.max_control_payload,
    }
}

fn random_sid(rng: &mut StdRng) -> SessionId {
    loop {
        let mut b = [0u8; 8];
        rng.fill_bytes(&mut b);
        if b != [0; 8] {
            return SessionId(b);
        }
    }
}

fn write_km2(k: &mut KeyState, km2: KeyMethod2) -> Result<(), CloseReason> {
    let bytes = km2
        .encode()
        .map_err(|e| CloseReason::Protocol(format!("key-method 2: {e}")))?;
    k.tls
        .write_message(&bytes)
        .map_err(|e| CloseReason::Tls(e.to_string()))?;
    k.local_km2 = Some(km2);
    Ok(())
}

fn flush_tls(k: &mut KeyState) {
    if !k.tls_started {
        // Stays buffered in the TLS session until our reset is acknowledged.
        return;
    }
    let mut out = Vec::new();
    k.tls.take_ciphertext(&mut out);
    if !out.is_empty() {
        k.reliable.queue_tls_bytes(&out);
    }
}

/// Length of a complete key-method-2 message at the start of `b`, or `None` if more bytes are
/// needed. Malformed messages are reported by `KeyMethod2::parse` on the returned slice.
fn km2_frame_len(b: &[u8], from_client: bool) -> Option<usize> {
    let mut pos = 4 + 1 + if from_client { 48 } else { 0 } + 64;
    // options, username, password, peer-info: each a u16 length and that many bytes. The last
    // three may be missing entirely in messages from old peers, which a complete record shows.
    for _ in 0..4 {
        let len = u16::from_be_bytes([*b.get(pos)?, *b.get(pos + 1)?]) as usize;
        pos += 2 + len;
        if pos > b.len() {
            return None;
        }
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn km2_frame_len_waits_for_whole_message() {
        let km2 = KeyMethod2 {
            pre_master: Some([1; 48]),
            random1: [2; 32],
            random2: [3; 32],
            options: "V4,dev-type tun".into(),
            username: None,
            password: None,
            peer_info: Some("IV_VER=2.6.14\n".into()),
        };
        let bytes = km2.encode().unwrap();
        assert_eq!(km2_frame_len(&bytes, true), Some(bytes.len()));
        for cut in 0..bytes.len() {
            assert_eq!(km2_frame_len(&bytes[..cut], true), None, "cut at {cut}");
        }
        let mut more = bytes.clone();
        more.extend_from_slice(b"PUSH_REQUEST\0");
        assert_eq!(km2_frame_len(&more, true), Some(bytes.len()));
    }
}
