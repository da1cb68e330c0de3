//! Reliability layer of the control channel (openvpn-wire.md §4), sans-IO, one instance
//! per key state (key id).
//!
//! Owns: message-id assignment, the 6-slot send window with a backlog behind it,
//! retransmission timers with doubling backoff and fast retransmit, the 12-slot receive
//! window with in-order delivery, and the ACK queue (piggy-backed ≤ 4, `P_ACK_V1` ≤ 8, plus
//! an MRU list of recently sent ACKs that fills spare room, like OpenVPN 2.6).
//!
//! Invariants: outgoing message ids are consecutive from 0 (the reset) and a retransmission
//! reuses its id; at most [`SEND_WINDOW`] messages are unacknowledged; a received message is
//! acknowledged iff it was stored or is a duplicate (never when dropped for being beyond the
//! window, never for `P_ACK_V1`); messages are handed out strictly in id order. Time only
//! enters through `now` parameters. Wrapping (tls-auth/tls-crypt, replay ids) is the caller's
//! job: every packet returned by [`Reliable::poll_transmit`] is wrapped anew.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::wire::{ControlPacket, KeyId, Opcode, SessionId, MAX_ACKS, MAX_PIGGYBACK_ACKS};

/// Outstanding (unacknowledged) messages per key state (`TLS_RELIABLE_N_SEND_BUFFERS`).
pub const SEND_WINDOW: u32 = 6;
/// Receive buffer size in messages (`TLS_RELIABLE_N_REC_BUFFERS`).
pub const RECV_WINDOW: u32 = 12;
/// ACKs for higher ids after which a message is resent early (`N_ACK_RETRANSMIT`).
pub const N_ACK_RETRANSMIT: u32 = 3;
/// Upper bound of the retransmission backoff. OpenVPN doubles without a cap, but the
/// 60 s hand-window ends every handshake long before this matters; the cap only keeps the
/// arithmetic bounded.
pub const MAX_RETRANSMIT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Pending ACK ids kept at most; more (only possible with a misbehaving peer spraying
/// duplicates) are dropped and the peer simply retransmits.
const MAX_PENDING_ACKS: usize = 2 * MAX_ACKS;
/// Fixed control header bytes budgeted by OpenVPN when cutting TLS data (§4.4): opcode,
/// session id, ack array for 4 entries with peer session id, message id.
pub const CONTROL_HEADER_BUDGET: usize = 1 + 8 + (1 + 4 * MAX_PIGGYBACK_ACKS + 8) + 4;

/// Tunables of one reliability instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReliableConfig {
    /// First retransmission timeout (`--tls-timeout`, default 2 s), doubled per send.
    pub initial_timeout: Duration,
    /// TLS bytes per `P_CONTROL_V1` message; see [`ReliableConfig::max_payload_for`].
    pub max_payload: usize,
}

impl ReliableConfig {
    /// TLS payload per control packet so that the whole datagram including IP/UDP headers
    /// fits `tls_mtu` (default 1250): `tls_mtu − ip_udp_overhead (28 IPv4 / 48 IPv6) −
    /// wrap_overhead (WrapKeys::mtu_overhead) − 38`, at least 1.
    pub fn max_payload_for(tls_mtu: usize, ip_udp_overhead: usize, wrap_overhead: usize) -> usize {
        tls_mtu
            .saturating_sub(ip_udp_overhead + wrap_overhead + CONTROL_HEADER_BUDGET)
            .max(1)
    }
}

impl Default for ReliableConfig {
    /// 2 s timeout; payload for tls-mtu 1250 over IPv6 with tls-crypt (the worst common case).
    fn default() -> Self {
        ReliableConfig {
            initial_timeout: Duration::from_secs(2),
            max_payload: Self::max_payload_for(1250, 48, 56),
        }
    }
}

/// Reasons a received control packet is rejected as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReliableError {
    /// Packet for another key state.
    #[error("key id {got} does not match this key state ({expected})")]
    KeyIdMismatch {
        /// Our key id.
        expected: KeyId,
        /// The packet's key id.
        got: KeyId,
    },
    /// The ACK's peer session id is not our session id ("ACK read BAD SESSION-ID").
    #[error("ack carries a foreign session id")]
    BadAckSessionId,
    /// The sender's session id differs from the established remote session.
    #[error("packet from an unexpected remote session")]
    WrongRemoteSession,
    /// Data-channel opcodes have no place in the reliability layer.
    #[error("{0:?} is not a control opcode")]
    NotControl(Opcode),
    /// A non-ACK control packet without message id (violates the [`ControlPacket`] contract).
    #[error("control packet without message id")]
    MissingMessageId,
}

#[derive(Debug)]
struct OutMsg {
    id: u32,
    opcode: Opcode,
    payload: Vec<u8>,
    /// `None` until first transmitted.
    next_try: Option<Instant>,
    timeout: Duration,
    /// ACKs for higher ids seen since the last transmission.
    higher_acks: u32,
}

#[derive(Debug)]
enum Pending {
    Msg(Opcode, Vec<u8>),
    /// Contiguous TLS bytes not yet cut into messages; cut lazily so that several small
    /// writes between two polls share one packet.
    Tls(Vec<u8>),
}

/// The reliability state of one key state. See the module docs.
#[derive(Debug)]
pub struct Reliable {
    local: SessionId,
    remote: Option<SessionId>,
    key_id: KeyId,
    cfg: ReliableConfig,
    created: Instant,
    /// Last `now` seen; lets [`Reliable::poll_timeout`] report "due already".
    last_now: Instant,
    next_send_id: u32,
    /// Unacknowledged messages, ascending ids.
    send: VecDeque<OutMsg>,
    backlog: VecDeque<Pending>,
    next_expected: u32,
    /// Slot `i` holds message `next_expected + i`; always `RECV_WINDOW` long.
    recv: VecDeque<Option<(Opcode, Vec<u8>)>>,
    acks_pending: VecDeque<u32>,
    /// Recently sent ACK ids, most recent first, ≤ 8.
    acks_mru: VecDeque<u32>,
}

impl Reliable {
    /// A fresh key state: next own id 0, next expected id 0, remote session unknown.
    pub fn new(local: SessionId, key_id: KeyId, now: Instant, cfg: ReliableConfig) -> Self {
        Reliable {
            local,
            remote: None,
            key_id,
            cfg,
            created: now,
            last_now: now,
            next_send_id: 0,
            send: VecDeque::with_capacity(SEND_WINDOW as usize),
            backlog: VecDeque::new(),
            next_expected: 0,
            recv: std::iter::repeat_with(|| None)
                .take(RECV_WINDOW as usize)
                .collect(),
            acks_pending: VecDeque::new(),
            acks_mru: VecDeque::new(),
        }
    }

    /// Fixes the peer's session id. Packets from another session are then rejected. If
    /// never called, the sender session id of the first accepted packet is adopted.
    pub fn set_remote_session(&mut self, sid: SessionId) {
        self.remote = Some(sid);
    }

    /// Our session id.
    pub fn local_session(&self) -> SessionId {
        self.local
    }

    /// The peer's session id, once known.
    pub fn remote_session(&self) -> Option<SessionId> {
        self.remote
    }

    /// The key id of this key state.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The `now` given at creation (start of the hand-window).
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Queues a whole reliable message (hard/soft reset, or a pre-built control message).
    /// Ids are assigned in queue order when the message enters the send window. `AckV1`
    /// and data opcodes are not reliable messages and are ignored.
    pub fn queue_message(&mut self, opcode: Opcode, payload: Vec<u8>) {
        debug_assert!(
            opcode.has_message_id(),
            "{opcode:?} is not a reliable message"
        );
        if opcode.has_message_id() {
            self.backlog.push_back(Pending::Msg(opcode, payload));
        }
    }

    /// Queues TLS ciphertext; it is cut into `P_CONTROL_V1` messages of at most
    /// `max_payload` bytes as window space allows.
    pub fn queue_tls_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(Pending::Tls(buf)) = self.backlog.back_mut() {
            buf.extend_from_slice(bytes);
        } else {
            self.backlog.push_back(Pending::Tls(bytes.to_vec()));
        }
    }

    /// Processes a received (unwrapped, parsed) control packet: verifies session ids,
    /// applies its ACKs, and stores its message in the receive window (queuing an ACK), or
    /// re-ACKs a duplicate, or drops it silently when beyond the window. A hard reset with
    /// a message id other than 0 is ignored (2.6.22 behaviour).
    pub fn handle_packet(
        &mut self,
        now: Instant,
        pkt: &ControlPacket,
    ) -> Result<(), ReliableError> {
        if !pkt.opcode.is_control() {
            return Err(ReliableError::NotControl(pkt.opcode));
        }
        if pkt.key_id != self.key_id {
            return Err(ReliableError::KeyIdMismatch {
                expected: self.key_id,
                got: pkt.key_id,
            });
        }
        if self.remote.is_some_and(|r| r != pkt.session_id) {
            return Err(ReliableError::WrongRemoteSession);
        }
        if !pkt.acks.is_empty() && pkt.remote_session_id != Some(self.local) {
            return Err(ReliableError::BadAckSessionId);
        }
        let message_id = if pkt.opcode == Opcode::AckV1 {
            None
        } else {
            Some(pkt.message_id.ok_or(ReliableError::MissingMessageId)?)
        };
        if pkt.opcode.is_hard_reset() && message_id != Some(0) {
            return Ok(());
        }
        self.last_now = now;
        self.remote.get_or_insert(pkt.session_id);
        for &acked in pkt.acks.iter().take(MAX_ACKS) {
            self.apply_ack(acked);
        }
        let Some(id) = message_id else {
            return Ok(());
        };
        let offset = id.wrapping_sub(self.next_expected);
        if offset >= u32::MAX / 2 {
            // Below next_expected: already delivered; the peer missed our ACK.
            self.queue_ack(id);
        } else if offset < RECV_WINDOW {
            if let Some(slot) = self.recv.get_mut(offset as usize) {
                if slot.is_none() {
                    *slot = Some((pkt.opcode, pkt.payload.clone()));
                }
                self.queue_ack(id);
            }
        }
        // Beyond the window: neither stored nor acknowledged; the peer will retransmit.
        Ok(())
    }

    fn apply_ack(&mut self, acked: u32) {
        let mut found = None;
        for (i, m) in self.send.iter_mut().enumerate() {
            if m.id == acked {
                found = Some(i);
            } else if m.next_try.is_some() && m.id.wrapping_sub(acked) >= u32::MAX / 2 {
                // m.id < acked: a later message got through first, m was likely lost.
                m.higher_acks += 1;
            }
        }
        if let Some(i) = found {
            self.send.remove(i);
        }
    }

    fn queue_ack(&mut self, id: u32) {
        if !self.acks_pending.contains(&id) && self.acks_pending.len() < MAX_PENDING_ACKS {
            self.acks_pending.push_back(id);
        }
    }

    /// Next received message in id order, with its opcode (resets included, so the caller
    /// sees e.g. the early-negotiation TLVs of a hard reset).
    pub fn pop_received(&mut self) -> Option<(Opcode, Vec<u8>)> {
        if self.recv.front().is_some_and(Option::is_some) {
            let msg = self.recv.pop_front().flatten();
            self.recv.push_back(None);
            self.next_expected = self.next_expected.wrapping_add(1);
            msg
        } else {
            None
        }
    }

    /// Moves backlog entries into the send window while it has room.
    fn fill_window(&mut self) {
        loop {
            let lowest = self.send.front().map_or(self.next_send_id, |m| m.id);
            if self.next_send_id.wrapping_sub(lowest) >= SEND_WINDOW {
                return;
            }
            let (opcode, payload) = match self.backlog.front_mut() {
                None => return,
                Some(Pending::Tls(buf)) if buf.len() > self.cfg.max_payload => {
                    let rest = buf.split_off(self.cfg.max_payload.max(1));
                    (Opcode::ControlV1, std::mem::replace(buf, rest))
                }
                Some(_) => match self.backlog.pop_front() {
                    Some(Pending::Tls(buf)) => (Opcode::ControlV1, buf),
                    Some(Pending::Msg(op, payload)) => (op, payload),
                    None => return,
                },
            };
            self.send.push_back(OutMsg {
                id: self.next_send_id,
                opcode,
                payload,
                next_try: None,
                timeout: self.cfg.initial_timeout,
                higher_acks: 0,
            });
            self.next_send_id = self.next_send_id.wrapping_add(1);
        }
    }

    /// Up to `max` ACK ids: pending ones first (they move to the MRU list), then MRU
    /// re-ACKs while there is room. Empty when the remote session is unknown.
    fn take_acks(&mut self, max: usize) -> Vec<u32> {
        if self.remote.is_none() {
            return Vec::new();
        }
        let n = self.acks_pending.len().min(max);
        let mut acks: Vec<u32> = self.acks_pending.drain(..n).collect();
        for &id in &self.acks_mru {
            if acks.len() >= max {
                break;
            }
            if !acks.contains(&id) {
                acks.push(id);
            }
        }
        for &id in acks.iter().take(n).rev() {
            self.acks_mru.retain(|&x| x != id);
            self.acks_mru.push_front(id);
        }
        self.acks_mru.truncate(MAX_ACKS);
        acks
    }

    /// The next packet to send, if any: the lowest-id message that is new, due for
    /// retransmission (timer or fast retransmit), with ≤ 4 piggy-backed ACKs; otherwise a
    /// `P_ACK_V1` with ≤ 8 ACKs if ACKs are pending. Call until `None`, wrapping each packet
    /// with a fresh replay id.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<ControlPacket> {
        self.last_now = now;
        self.fill_window();
        let due = self
            .send
            .iter()
            .position(|m| m.next_try.is_none_or(|t| t <= now) || m.higher_acks >= N_ACK_RETRANSMIT);
        if let Some(i) = due {
            let acks = self.take_acks(MAX_PIGGYBACK_ACKS);
            let remote = self.remote;
            let (local, key_id) = (self.local, self.key_id);
            let m = self.send.get_mut(i)?;
            m.next_try = Some(now.checked_add(m.timeout).unwrap_or(now));
            m.timeout = m.timeout.saturating_mul(2).min(MAX_RETRANSMIT_TIMEOUT);
            m.higher_acks = 0;
            return Some(ControlPacket {
                opcode: m.opcode,
                key_id,
                session_id: local,
                remote_session_id: if acks.is_empty() { None } else { remote },
                acks,
                message_id: Some(m.id),
                payload: m.payload.clone(),
            });
        }
        if self.acks_pending.is_empty() {
            return None;
        }
        let acks = self.take_acks(MAX_ACKS);
        if acks.is_empty() {
            return None;
        }
        Some(ControlPacket {
            opcode: Opcode::AckV1,
            key_id: self.key_id,
            session_id: self.local,
            acks,
            remote_session_id: self.remote,
            message_id: None,
            payload: Vec::new(),
        })
    }

    /// When [`Reliable::poll_transmit`] should be called next: the earliest retransmission
    /// time, or the last seen `now` if something is sendable already; `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let window_room = {
            let lowest = self.send.front().map_or(self.next_send_id, |m| m.id);
            self.next_send_id.wrapping_sub(lowest) < SEND_WINDOW
        };
        let ready_now = (!self.acks_pending.is_empty() && self.remote.is_some())
            || (window_room && !self.backlog.is_empty())
            || self
                .send
                .iter()
                .any(|m| m.next_try.is_none() || m.higher_acks >= N_ACK_RETRANSMIT);
        if ready_now {
            return Some(self.last_now);
        }
        self.send.iter().filter_map(|m| m.next_try).min()
    }

    /// True when every queued message has been sent and acknowledged.
    pub fn all_acked(&self) -> bool {
        self.send.is_empty() && self.backlog.is_empty()
    }

    /// True if ACKs are waiting to be sent.
    pub fn has_pending_acks(&self) -> bool {
        !self.acks_pending.is_empty()
    }

    /// Id the next new outgoing message will get (once it enters the window).
    pub fn next_send_id(&self) -> u32 {
        self.next_send_id
    }

    /// Id of the next message [`Reliable::pop_received`] will deliver.
    pub fn next_expected_id(&self) -> u32 {
        self.next_expected
    }

    /// Places a fresh instance in the state after the §6.2 stateless cookie handshake:
    /// our reset (id 0) counts as sent and acknowledged (next own id 1) and the peer's reset
    /// as consumed (next expected id 1). The caller sets the remote session and starts its
    /// replay counter at 2.
    pub fn preset_after_cookie(&mut self) {
        self.send.clear();
        self.next_send_id = 1;
        self.next_expected = 1;
        for slot in &mut self.recv {
            *slot = None;
        }
        self.acks_pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wrap::{ReplayCounter, ReplayWindow, Role, StaticKey, WrapKeys};
    use rand::{rngs::StdRng, Rng, SeedableRng};

    const A: SessionId = SessionId([0xa1; 8]);
    const B: SessionId = SessionId([0xb2; 8]);

    fn cfg(max_payload: usize) -> ReliableConfig {
        ReliableConfig {
            initial_timeout: Duration::from_secs(2),
            max_payload,
        }
    }

    fn pair(t0: Instant, max_payload: usize) -> (Reliable, Reliable) {
        let mut a = Reliable::new(A, KeyId::ZERO, t0, cfg(max_payload));
        let mut b = Reliable::new(B, KeyId::ZERO, t0, cfg(max_payload));
        a.set_remote_session(B);
        b.set_remote_session(A);
        (a, b)
    }

    fn drain(r: &mut Reliable, now: Instant) -> Vec<ControlPacket> {
        std::iter::from_fn(|| r.poll_transmit(now))
            .take(100)
            .collect()
    }

    #[test]
    fn max_payload_budget() {
        assert_eq!(CONTROL_HEADER_BUDGET, 38);
        assert_eq!(ReliableConfig::max_payload_for(1250, 28, 56), 1128);
        assert_eq!(ReliableConfig::max_payload_for(10, 28, 56), 1);
        assert_eq!(ReliableConfig::default().max_payload, 1108);
    }

    #[test]
    fn handshake_three_way() {
        let t0 = Instant::now();
        let mut c = Reliable::new(A, KeyId::ZERO, t0, cfg(100));
        let mut s = Reliable::new(B, KeyId::ZERO, t0, cfg(100));
        c.queue_message(Opcode::ControlHardResetClientV2, vec![]);
        let reset = c.poll_transmit(t0).unwrap();
        assert_eq!(
            reset.to_bytes(),
            [&[0x38][..], &A.0, &[0, 0, 0, 0, 0]].concat()
        );
        assert!(c.poll_transmit(t0).is_none());

        s.handle_packet(t0, &reset).unwrap();
        assert_eq!(s.remote_session(), Some(A), "adopted from the first packet");
        assert_eq!(
            s.pop_received(),
            Some((Opcode::ControlHardResetClientV2, vec![]))
        );
        s.queue_message(Opcode::ControlHardResetServerV2, vec![]);
        let sreset = s.poll_transmit(t0).unwrap();
        // §3.3 server reply: acks [0], peer sid, own message id 0.
        assert_eq!(
            sreset.to_bytes(),
            [&[0x40][..], &B.0, &[1, 0, 0, 0, 0], &A.0, &[0, 0, 0, 0]].concat()
        );
        assert!(s.poll_transmit(t0).is_none());

        c.handle_packet(t0, &sreset).unwrap();
        assert!(c.all_acked());
        assert_eq!(
            c.pop_received().map(|m| m.0),
            Some(Opcode::ControlHardResetServerV2)
        );
        c.queue_tls_bytes(b"\x16\x03\x01hello");
        let hello = c.poll_transmit(t0).unwrap();
        assert_eq!(hello.opcode, Opcode::ControlV1);
        assert_eq!(hello.message_id, Some(1));
        assert_eq!(hello.acks, vec![0]);
        assert_eq!(hello.remote_session_id, Some(B));
        assert!(!s.all_acked());
        s.handle_packet(t0, &hello).unwrap();
        assert!(s.all_acked());
        assert_eq!(
            s.pop_received(),
            Some((Opcode::ControlV1, b"\x16\x03\x01hello".to_vec()))
        );
        // Ack-only answer; acks of an AckV1 are never acked back.
        let ack = s.poll_transmit(t0).unwrap();
        assert_eq!(ack.opcode, Opcode::AckV1);
        // Like OpenVPN (see tests/vectors/wire/plain.hex): new ACK first, then MRU re-ACKs.
        assert_eq!(ack.acks, vec![1, 0]);
        assert_eq!(ack.message_id, None);
        c.handle_packet(t0, &ack).unwrap();
        assert!(c.all_acked());
        assert!(!c.has_pending_acks());
        assert!(c.poll_transmit(t0).is_none());
    }

    #[test]
    fn backoff_schedule_2_4_8() {
        let t0 = Instant::now();
        let s = |n| Duration::from_secs(n);
        let mut c = Reliable::new(A, KeyId::ZERO, t0, cfg(100));
        c.queue_message(Opcode::ControlHardResetClientV2, vec![]);
        assert_eq!(c.poll_timeout(), Some(t0), "sendable now");
        assert_eq!(c.poll_transmit(t0).and_then(|p| p.message_id), Some(0));
        assert_eq!(c.poll_timeout(), Some(t0 + s(2)));
        assert!(c.poll_transmit(t0 + s(1)).is_none());
        let mut sends = vec![];
        let mut now = t0;
        for _ in 0..3 {
            now = c.poll_timeout().unwrap();
            let p = c.poll_transmit(now).unwrap();
            assert_eq!(p.message_id, Some(0), "retransmit keeps the message id");
            sends.push(now - t0);
        }
        assert_eq!(sends, [s(2), s(6), s(14)]);
        assert_eq!(c.poll_timeout(), Some(now + s(16)));
    }

    #[test]
    fn send_window_is_six() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0, 10);
        a.queue_tls_bytes(&[7u8; 95]); // 10 messages of ≤ 10 bytes
        let first = drain(&mut a, t0);
        assert_eq!(
            first
                .iter()
                .map(|p| p.message_id.unwrap())
                .collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert!(first.iter().all(|p| p.payload.len() == 10));
        // Acking a middle message does not open the window (lowest unacked is still 0).
        b.handle_packet(t0, &first[3]).unwrap();
        let ack3 = b.poll_transmit(t0).unwrap();
        a.handle_packet(t0, &ack3).unwrap();
        assert!(a.poll_transmit(t0).is_none());
        // Acking 0 lets exactly one more in (window 1..=6 but 3 is gone: 1,2,4,5,6 + 7?).
        b.handle_packet(t0, &first[0]).unwrap();
        a.handle_packet(t0, &b.poll_transmit(t0).unwrap()).unwrap();
        let more = drain(&mut a, t0);
        assert_eq!(
            more.iter()
                .map(|p| p.message_id.unwrap())
                .collect::<Vec<_>>(),
            [6]
        );
        assert!(!a.all_acked());
    }

    #[test]
    fn ack_limits_8_and_4() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0, 1);
        // b receives 10 messages in two rounds (window 6), acks them without sending data.
        a.queue_tls_bytes(&[1u8; 10]);
        let mut got = vec![];
        for _ in 0..2 {
            for p in drain(&mut a, t0) {
                b.handle_packet(t0, &p).unwrap();
            }
            let acks = drain(&mut b, t0);
            assert!(acks
                .iter()
                .all(|p| p.opcode == Opcode::AckV1 && p.acks.len() <= 8));
            for p in &acks {
                a.handle_packet(t0, p).unwrap();
            }
            got.push(acks);
        }
        assert!(a.all_acked());
        while let Some((_, m)) = b.pop_received() {
            assert_eq!(m, [1]);
        }
        assert_eq!(b.next_expected_id(), 10);
        // Now 10 more messages pending ack at b while b also has data: first packet
        // piggy-backs 4, the rest go in an AckV1 (≤ 8).
        let (mut a, mut b) = pair(t0, 1);
        a.queue_tls_bytes(&[2u8; 6]);
        for p in drain(&mut a, t0) {
            b.handle_packet(t0, &p).unwrap();
        }
        b.queue_tls_bytes(b"x");
        let out = drain(&mut b, t0);
        assert_eq!(out[0].opcode, Opcode::ControlV1);
        assert_eq!(out[0].acks, [0, 1, 2, 3]);
        assert_eq!(out[1].opcode, Opcode::AckV1);
        // The two remaining pending acks, then MRU fill-up to 6 distinct ids.
        assert_eq!(&out[1].acks[..2], &[4, 5]);
        assert_eq!(out[1].acks.len(), 6);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn ack_v1_carries_at_most_8() {
        let t0 = Instant::now();
        let (_, mut b) = pair(t0, 100);
        for id in 0..10u32 {
            let p = ControlPacket {
                opcode: Opcode::ControlV1,
                key_id: KeyId::ZERO,
                session_id: A,
                acks: vec![],
                remote_session_id: None,
                message_id: Some(id),
                payload: vec![id as u8],
            };
            b.handle_packet(t0, &p).unwrap();
        }
        let out = drain(&mut b, t0);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|p| p.opcode == Opcode::AckV1));
        assert_eq!(out[0].acks, (0..8).collect::<Vec<_>>());
        assert_eq!(&out[1].acks[..2], &[8, 9]);
        assert_eq!(out[1].acks.len(), 8, "filled up with MRU re-acks");
        assert!(out.iter().all(|p| p.remote_session_id == Some(A)));
        // Every packet round-trips through the codec (≤ 8 acks accepted by the parser).
        for p in &out {
            assert_eq!(ControlPacket::parse(&p.to_bytes()).as_ref(), Ok(p));
        }
    }

    #[test]
    fn receive_window_dupes_and_beyond() {
        let t0 = Instant::now();
        let (_, mut b) = pair(t0, 100);
        let msg = |id: u32| ControlPacket {
            opcode: Opcode::ControlV1,
            key_id: KeyId::ZERO,
            session_id: A,
            acks: vec![],
            remote_session_id: None,
            message_id: Some(id),
            payload: id.to_be_bytes().to_vec(),
        };
        // Id 12 is beyond next_expected(0) + 12: dropped and not acked.
        b.handle_packet(t0, &msg(12)).unwrap();
        assert!(!b.has_pending_acks());
        b.handle_packet(t0, &msg(11)).unwrap();
        b.handle_packet(t0, &msg(11)).unwrap();
        b.handle_packet(t0, &msg(1)).unwrap();
        assert_eq!(b.pop_received(), None, "0 missing: nothing in order yet");
        b.handle_packet(t0, &msg(0)).unwrap();
        assert_eq!(b.pop_received().map(|m| m.1), Some(vec![0, 0, 0, 0]));
        assert_eq!(b.pop_received().map(|m| m.1), Some(vec![0, 0, 0, 1]));
        assert_eq!(b.pop_received(), None);
        // Duplicate of a delivered message is re-acked.
        let acks = b.poll_transmit(t0).unwrap();
        assert_eq!(acks.acks[..3], [11, 1, 0]);
        b.handle_packet(t0, &msg(0)).unwrap();
        assert_eq!(b.poll_transmit(t0).unwrap().acks[0], 0);
        // Window moved to 2: 13 now fits.
        b.handle_packet(t0, &msg(13)).unwrap();
        assert!(b.has_pending_acks());
        // Hard reset with message id != 0 is ignored.
        let mut bad = msg(0);
        bad.opcode = Opcode::ControlHardResetClientV2;
        bad.message_id = Some(5);
        let _ = b.poll_transmit(t0);
        b.handle_packet(t0, &bad).unwrap();
        assert!(!b.has_pending_acks());
    }

    #[test]
    fn rejects_bad_sessions_and_keys() {
        let t0 = Instant::now();
        let (_, mut b) = pair(t0, 100);
        let mut p = ControlPacket {
            opcode: Opcode::AckV1,
            key_id: KeyId::ZERO,
            session_id: A,
            acks: vec![0],
            remote_session_id: Some(SessionId([9; 8])),
            message_id: None,
            payload: vec![],
        };
        assert_eq!(b.handle_packet(t0, &p), Err(ReliableError::BadAckSessionId));
        p.remote_session_id = Some(B);
        assert_eq!(b.handle_packet(t0, &p), Ok(()));
        p.session_id = SessionId([5; 8]);
        assert_eq!(
            b.handle_packet(t0, &p),
            Err(ReliableError::WrongRemoteSession)
        );
        p.session_id = A;
        p.key_id = KeyId::new(1).unwrap();
        assert!(matches!(
            b.handle_packet(t0, &p),
            Err(ReliableError::KeyIdMismatch { .. })
        ));
        p.key_id = KeyId::ZERO;
        p.opcode = Opcode::DataV2;
        assert_eq!(
            b.handle_packet(t0, &p),
            Err(ReliableError::NotControl(Opcode::DataV2))
        );
    }

    #[test]
    fn fast_retransmit_after_three_higher_acks() {
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0, 1);
        a.queue_tls_bytes(&[0, 1, 2, 3, 4]);
        let sent = drain(&mut a, t0);
        assert_eq!(sent.len(), 5);
        // Message 0 is lost; 1, 2 arrive and are acked: not yet 3 higher acks.
        for p in &sent[1..3] {
            b.handle_packet(t0, p).unwrap();
        }
        a.handle_packet(t0, &b.poll_transmit(t0).unwrap()).unwrap();
        assert!(a.poll_transmit(t0).is_none());
        b.handle_packet(t0, &sent[3]).unwrap();
        let ack = b.poll_transmit(t0).unwrap();
        a.handle_packet(t0, &ack).unwrap();
        // Third higher ack (plus MRU re-acks) → 0 resent right away, long before 2 s.
        let re = a.poll_transmit(t0).unwrap();
        assert_eq!(re.message_id, Some(0));
        assert!(a.poll_transmit(t0).is_none());
    }

    #[test]
    fn preset_after_cookie_state() {
        let t0 = Instant::now();
        let mut s = Reliable::new(B, KeyId::ZERO, t0, cfg(100));
        s.preset_after_cookie();
        s.set_remote_session(A);
        assert!(s.all_acked());
        assert_eq!(s.next_send_id(), 1);
        assert_eq!(s.next_expected_id(), 1);
        // Client's third packet: ClientHello id 1 acking our reset 0.
        let hello = ControlPacket {
            opcode: Opcode::ControlV1,
            key_id: KeyId::ZERO,
            session_id: A,
            acks: vec![0],
            remote_session_id: Some(B),
            message_id: Some(1),
            payload: b"hello".to_vec(),
        };
        s.handle_packet(t0, &hello).unwrap();
        assert_eq!(
            s.pop_received(),
            Some((Opcode::ControlV1, b"hello".to_vec()))
        );
        s.queue_tls_bytes(b"server hello");
        let p = s.poll_transmit(t0).unwrap();
        assert_eq!(p.message_id, Some(1));
        assert_eq!(p.acks, vec![1]);
        // A retransmitted client reset (id 0) is just re-acked.
        let reset = ControlPacket {
            opcode: Opcode::ControlHardResetClientV2,
            key_id: KeyId::ZERO,
            session_id: A,
            acks: vec![],
            remote_session_id: None,
            message_id: Some(0),
            payload: vec![],
        };
        s.handle_packet(t0, &reset).unwrap();
        assert_eq!(s.pop_received(), None);
        assert_eq!(s.poll_transmit(t0).unwrap().acks[0], 0);
    }

    /// A lossy, reordering, duplicating link between two instances, through real
    /// tls-crypt wrapping and replay windows, with a fake clock.
    #[test]
    fn lossy_link_delivers_streams_in_order() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let key = StaticKey::generate(&mut rng);
        let wraps = [
            WrapKeys::tls_crypt(&key, Role::Client),
            WrapKeys::tls_crypt(&key, Role::Server),
        ];
        let mut counters = [ReplayCounter::new(1000), ReplayCounter::new(2000)];
        let mut windows = [ReplayWindow::default(), ReplayWindow::default()];
        let mut peers = [
            Reliable::new(A, KeyId::ZERO, t0, cfg(97)),
            Reliable::new(B, KeyId::ZERO, t0, cfg(97)),
        ];
        let streams: [Vec<u8>; 2] = [
            (0..20_000).map(|_| rng.gen()).collect(),
            (0..15_000).map(|_| rng.gen()).collect(),
        ];
        let mut received: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        peers[0].queue_message(Opcode::ControlHardResetClientV2, vec![]);
        let mut fed = [0usize; 2];
        // In flight: (deliver_at, to, wire bytes).
        let mut link: Vec<(Instant, usize, Vec<u8>)> = Vec::new();
        let mut now = t0;
        let mut sent_count = 0u64;
        let mut server_reset_queued = false;
        for _round in 0..20_000 {
            for side in 0..2 {
                // Feed the TLS stream in uneven pieces once the handshake allows it.
                if (side == 0 && peers[0].next_expected_id() >= 1
                    || side == 1 && server_reset_queued)
                    && fed[side] < streams[side].len()
                {
                    let n = rng.gen_range(1..3000).min(streams[side].len() - fed[side]);
                    peers[side].queue_tls_bytes(&streams[side][fed[side]..fed[side] + n]);
                    fed[side] += n;
                }
                while let Some(p) = peers[side].poll_transmit(now) {
                    assert!(p.acks.len() <= if p.opcode == Opcode::AckV1 { 8 } else { 4 });
                    let mut wire = Vec::new();
                    let rid = counters[side].next().unwrap();
                    wraps[side].wrap(rid, &p.to_bytes(), &mut wire).unwrap();
                    sent_count += 1;
                    if sent_count % 3 == 0 {
                        continue; // drop every third datagram
                    }
                    let delay = Duration::from_millis(rng.gen_range(1..400));
                    if sent_count % 5 == 0 {
                        link.push((now + delay * 2, 1 - side, wire.clone())); // duplicate
                    }
                    link.push((now + delay, 1 - side, wire));
                }
            }
            // Deliver everything due (random delays reorder packets).
            link.sort_by_key(|l| l.0);
            let due = link.iter().take_while(|l| l.0 <= now).count();
            for (_, to, wire) in link.drain(..due).collect::<Vec<_>>() {
                let mut plain = Vec::new();
                let Ok(Some(rid)) = wraps[to].unwrap(&wire, &mut plain) else {
                    panic!("unwrap failed");
                };
                if !windows[to].check(rid, 0) {
                    continue; // replayed duplicate
                }
                windows[to].commit(rid, 0);
                let p = ControlPacket::parse(&plain).unwrap();
                peers[to].handle_packet(now, &p).unwrap();
                while let Some((op, data)) = peers[to].pop_received() {
                    match op {
                        Opcode::ControlHardResetClientV2 => {
                            peers[1].queue_message(Opcode::ControlHardResetServerV2, vec![]);
                            server_reset_queued = true;
                        }
                        Opcode::ControlHardResetServerV2 => {}
                        Opcode::ControlV1 => received[to].extend_from_slice(&data),
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            let done = received[1] == streams[0]
                && received[0] == streams[1]
                && peers.iter().all(Reliable::all_acked);
            if done {
                return;
            }
            // Advance the fake clock to the next event.
            let next_link = link.iter().map(|l| l.0).min();
            let next_timer = peers.iter().filter_map(Reliable::poll_timeout).min();
            now = [next_link, next_timer]
                .into_iter()
                .flatten()
                .min()
                .map_or(now + Duration::from_millis(10), |t| {
                    t.max(now + Duration::from_millis(1))
                });
        }
        panic!(
            "streams not delivered: {}/{} and {}/{}",
            received[1].len(),
            streams[0].len(),
            received[0].len(),
            streams[1].len()
        );
    }
}
