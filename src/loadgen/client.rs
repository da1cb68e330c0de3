//! One simulated OpenVPN client as a sans-IO state machine: the real client control channel
//! ([`Session`] in client role), the client's handling of the PUSH_REPLY (pull-filter, cipher
//! choice, pushed addresses; no tun, no netlink) and data-channel keys built exactly as the
//! client process builds them ([`forward::key_slot`]). On top of that, a traffic source: ICMP
//! echo requests to the server's tunnel address, IPv4 and IPv6 alternating, at a fixed rate,
//! and a sink that counts the decrypted echo replies.
//!
//! Inputs: wire datagrams from the server and time. Outputs: wire datagrams
//! ([`SimClient::poll_transmit`]), the next deadline ([`SimClient::poll_timeout`]) and counts in
//! the caller's [`Stats`]. Never opens sockets or reads the clock.
//!
//! Invariants: a client is counted once as started and at most once as completed or failed;
//! data is sent only with an installed transmit key and only while sending is enabled.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::client::pushed::{self, IfconfigV4, PullFilter, Pushed};
use crate::client::run::ClientPlan;
use crate::dataplane::forward;
use crate::dataplane::peers::KeyRing;
use crate::proto::data::{Cipher, Side, HEADROOM};
use crate::proto::messages::{classify_plaintext, Plain, OCC_EXIT_PACKET, PING_MAGIC};
use crate::proto::session::{CloseReason, DataParams, Event, Session, SessionConfig};
use crate::proto::wire::Opcode;

use super::icmp::{self, Tag};
use super::stats::Stats;

/// If the sender falls this far behind its schedule (an overloaded thread), it skips ahead
/// instead of bursting to catch up.
const MAX_LAG: Duration = Duration::from_secs(1);

/// What every simulated client of a run shares: the client profile and the traffic shape.
pub struct Profile {
    pub session: Arc<SessionConfig>,
    pub data_ciphers: Vec<Cipher>,
    pub data_ciphers_fallback: Option<Cipher>,
    pub pull_filters: Vec<PullFilter>,
    pub route_nopull: bool,
    pub replay_window: (u32, u64),
    /// Send OCC_EXIT when the run ends (`explicit-exit-notify` in the profile).
    pub exit_notify: bool,
    /// Keepalive from the profile (`ping N`); a pushed `ping` overrides it.
    pub ping: Option<Duration>,
    /// Gap between two echo requests of one client; `None`: no data traffic.
    pub interval: Option<Duration>,
    /// Inner (IP) packet size of the echo requests.
    pub size: usize,
    /// Echo targets overriding what the push says (server tun addresses).
    pub target_v4: Option<Ipv4Addr>,
    pub target_v6: Option<Ipv6Addr>,
    /// Time zero of the run: stats offsets and the echo tags count from here.
    pub origin: Instant,
}

impl Profile {
    /// The shared part of a run from a client plan (`fwd::plan::client_plan`).
    pub fn from_plan(plan: &ClientPlan, pps: f64, size: usize, origin: Instant) -> Profile {
        Profile {
            session: plan.session.clone(),
            data_ciphers: plan.data_ciphers.clone(),
            data_ciphers_fallback: plan.data_ciphers_fallback,
            pull_filters: plan.pull_filters.clone(),
            route_nopull: plan.route_nopull,
            replay_window: plan.replay_window,
            exit_notify: plan.exit_notify > 0,
            ping: plan.ping,
            interval: (pps > 0.0 && pps.is_finite()).then(|| Duration::from_secs_f64(1.0 / pps)),
            size: icmp::clamp_size(size),
            target_v4: None,
            target_v6: None,
            origin,
        }
    }

    fn us(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }
}

/// Where a simulated client is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Idle,
    Handshaking,
    /// Pushed options applied and data keys installed.
    Up,
    /// Handshake failed, or the session closed.
    Down,
}

/// The tunnel addresses a client got and the ones it pings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub v4: Option<(Ipv4Addr, Ipv4Addr)>,
    pub v6: Option<(Ipv6Addr, Ipv6Addr)>,
}

/// One simulated client.
pub struct SimClient {
    index: u32,
    seed: [u8; 32],
    phase: Phase,
    session: Option<Session>,
    started: Option<Instant>,
    pushed: Option<Pushed>,
    /// This client's data-channel keys (the same ring the client process uses).
    keys: KeyRing,
    peer_id: Option<u32>,
    endpoints: Endpoints,
    ping: Option<Duration>,
    sending: bool,
    next_send: Option<Instant>,
    last_tx: Option<Instant>,
    seq: u32,
    /// Echo replies this client received, IPv4 and IPv6.
    replies: (u64, u64),
    out: VecDeque<Vec<u8>>,
    scratch: Vec<u8>,
}

fn close_kind(r: &CloseReason) -> &'static str {
    match r {
        CloseReason::HandshakeTimeout => "handshake_timeout",
        CloseReason::Tls(_) => "tls",
        CloseReason::Protocol(_) => "protocol",
        CloseReason::AuthFailed(_) => "auth_failed",
        CloseReason::PeerExit(_) => "peer_exit",
        CloseReason::Rejected => "rejected",
        CloseReason::Local(_) => "local",
    }
}

impl SimClient {
    /// Client number `index` of the run (its ICMP identifier and tag); `seed` feeds its
    /// session's randomness.
    pub fn new(index: u32, seed: [u8; 32]) -> SimClient {
        SimClient {
            index,
            seed,
            phase: Phase::Idle,
            session: None,
            started: None,
            pushed: None,
            keys: KeyRing::default(),
            peer_id: None,
            endpoints: Endpoints::default(),
            ping: None,
            sending: true,
            next_send: None,
            last_tx: None,
            seq: 0,
            replies: (0, 0),
            out: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn endpoints(&self) -> Endpoints {
        self.endpoints
    }

    /// Echo replies received so far: (IPv4, IPv6).
    pub fn replies(&self) -> (u64, u64) {
        self.replies
    }

    /// Begin the handshake (queues the hard reset).
    pub fn start(&mut self, p: &Profile, now: Instant, unix_now: u64, st: &mut Stats) {
        if self.phase != Phase::Idle {
            return;
        }
        st.hs_started += 1;
        let at = p.us(now);
        st.first_start_us = Some(st.first_start_us.map_or(at, |t| t.min(at)));
        self.started = Some(now);
        match Session::new_client(p.session.clone(), now, unix_now, self.seed) {
            Ok(s) => {
                self.session = Some(s);
                self.phase = Phase::Handshaking;
                self.pump(p, now, st);
            }
            Err(r) => self.fail(&r, st),
        }
    }

    /// Give up on a client that could not even get a socket.
    pub fn fail_local(&mut self, why: &str, st: &mut Stats) {
        if self.phase == Phase::Idle {
            st.hs_started += 1;
        }
        if matches!(self.phase, Phase::Idle | Phase::Handshaking) {
            st.hs_failed += 1;
            st.drop(why);
        }
        self.phase = Phase::Down;
    }

    fn fail(&mut self, r: &CloseReason, st: &mut Stats) {
        match self.phase {
            Phase::Handshaking | Phase::Idle => {
                st.hs_failed += 1;
                st.drop(&format!("hs_{}", close_kind(r)));
            }
            Phase::Up => st.drop(&format!("closed_{}", close_kind(r))),
            Phase::Down => {}
        }
        tracing::debug!(client = self.index, reason = ?r, "simulated client down");
        self.phase = Phase::Down;
        self.next_send = None;
    }

    /// A datagram from the server (data or control). `buf` is modified (decrypted in place).
    pub fn handle_datagram(&mut self, p: &Profile, now: Instant, buf: &mut [u8], st: &mut Stats) {
        let Some(&first) = buf.first() else { return };
        let op = first >> 3;
        if op == Opcode::DataV2 as u8 || op == Opcode::DataV1 as u8 {
            self.data_in(p, now, buf, st);
            return;
        }
        if let Some(s) = self.session.as_mut() {
            s.handle_datagram(now, buf);
        }
        self.pump(p, now, st);
    }

    fn data_in(&mut self, p: &Profile, now: Instant, buf: &mut [u8], st: &mut Stats) {
        let key_id = buf.first().map_or(0, |b| b & 7);
        let Some(slot) = self.keys.rx_key(key_id) else {
            st.drop("rx_no_key");
            return;
        };
        let now_s = now.saturating_duration_since(p.origin).as_secs();
        let plain = {
            let Ok(mut replay) = slot.replay.lock() else {
                return;
            };
            match slot.rx.open_in_place(buf, &mut replay, now_s) {
                Ok(plain) => plain,
                Err(e) => {
                    st.drop(&format!("rx_crypto_{}", e.as_str()));
                    return;
                }
            }
        };
        match classify_plaintext(plain) {
            Plain::Ping => {}
            Plain::OccExit => {
                st.drop("rx_occ_exit");
                self.fail(&CloseReason::PeerExit("OCC_EXIT".into()), st);
            }
            Plain::Occ(_) | Plain::OccEmpty => {}
            Plain::Ip => match icmp::parse_reply(plain) {
                Ok(r) if r.tag.client != self.index => st.drop("rx_other_client"),
                Ok(r) => {
                    if r.v6 {
                        st.recv_v6 += 1;
                        self.replies.1 += 1;
                    } else {
                        st.recv_v4 += 1;
                        self.replies.0 += 1;
                    }
                    st.rtt(p.us(now).saturating_sub(r.tag.sent_us));
                }
                Err(e) => st.drop(e.as_str()),
            },
        }
    }

    /// Run due timers: the session's, the traffic schedule and the keepalive.
    pub fn handle_timeout(&mut self, p: &Profile, now: Instant, st: &mut Stats) {
        if let Some(s) = self.session.as_mut() {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        self.pump(p, now, st);
        if self.phase != Phase::Up || !self.sending {
            return;
        }
        if let (Some(due), Some(interval)) = (self.next_send, p.interval) {
            if due <= now {
                self.send_echo(p, now, st);
                let next = due + interval;
                self.next_send = Some(if next + MAX_LAG < now {
                    now + interval
                } else {
                    next
                });
            }
        }
        if let Some(ping) = self.ping {
            if self.last_tx.is_none_or(|t| t + ping <= now) {
                self.seal(now, &PING_MAGIC, st);
            }
        }
    }

    /// The earliest instant at which [`SimClient::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let session = self
            .session
            .as_ref()
            .filter(|s| !s.is_closed() && self.phase != Phase::Down)
            .and_then(|s| s.poll_timeout());
        let (send, keepalive) = if self.phase == Phase::Up && self.sending {
            (
                self.next_send,
                self.ping.zip(self.last_tx).map(|(p, t)| t + p),
            )
        } else {
            (None, None)
        };
        [session, send, keepalive].into_iter().flatten().min()
    }

    /// Next datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The run is over: no more data (OCC_EXIT if the profile asks for explicit-exit-notify).
    pub fn stop_sending(&mut self, p: &Profile, now: Instant, st: &mut Stats) {
        if !self.sending {
            return;
        }
        self.sending = false;
        self.next_send = None;
        if p.exit_notify && self.phase == Phase::Up {
            self.seal(now, &OCC_EXIT_PACKET, st);
        }
    }

    /// Move the session's output to our queue and act on its events.
    fn pump(&mut self, p: &Profile, now: Instant, st: &mut Stats) {
        loop {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            while let Some(bytes) = s.poll_transmit(now) {
                self.out.push_back(bytes);
            }
            let Some(ev) = s.poll_event() else {
                break;
            };
            if let Err(e) = self.on_event(p, now, ev, st) {
                tracing::debug!(
                    client = self.index,
                    "client refused the server's answer: {e:#}"
                );
                self.fail(&CloseReason::Local(e.to_string()), st);
                self.session = None;
                return;
            }
        }
        if self.phase == Phase::Handshaking && self.pushed.is_some() && self.keys.tx.is_some() {
            self.up(p, now, st);
        }
    }

    fn on_event(&mut self, p: &Profile, now: Instant, ev: Event, st: &mut Stats) -> Result<()> {
        match ev {
            Event::PushReply(opts) => {
                let filtered = pushed::filter(&opts, &p.pull_filters, p.route_nopull)?;
                let pu = pushed::parse(&filtered);
                let cipher = pushed::choose_cipher(&p.data_ciphers, p.data_ciphers_fallback, &pu)
                    .map_err(|e| anyhow!(e))?;
                if let Some(s) = self.session.as_mut() {
                    s.set_data_params(
                        now,
                        DataParams {
                            cipher,
                            ekm: pu.ekm,
                        },
                    );
                }
                self.pushed = Some(pu);
            }
            Event::KeysReady {
                key_id,
                cipher,
                key_block,
                tx_now,
            } => {
                let slot = Arc::new(forward::key_slot(
                    key_id,
                    cipher,
                    &key_block,
                    Side::Client,
                    p.replay_window,
                )?);
                self.keys.install(slot, tx_now);
            }
            Event::TxSwitch { key_id } => self.keys.switch_tx(key_id),
            Event::KeyRetired { key_id } => self.keys.retire(key_id),
            Event::Closed(reason) => {
                self.fail(&reason, st);
            }
            Event::ClientAuthRequest { .. } | Event::Message(_) => {}
        }
        Ok(())
    }

    /// Handshake complete: take the pushed addresses, start the traffic schedule.
    fn up(&mut self, p: &Profile, now: Instant, st: &mut Stats) {
        self.phase = Phase::Up;
        if let Some(t0) = self.started {
            let us = now.saturating_duration_since(t0).as_micros();
            st.hs_us.push(u32::try_from(us).unwrap_or(u32::MAX));
        }
        st.hs_ok += 1;
        let at = p.us(now);
        st.last_done_us = Some(st.last_done_us.map_or(at, |t| t.max(at)));
        let Some(pu) = self.pushed.as_ref() else {
            return;
        };
        self.peer_id = pu.peer_id;
        self.ping = pu
            .ping
            .filter(|&s| s > 0)
            .map(|s| Duration::from_secs(s.into()))
            .or(p.ping);
        self.endpoints = endpoints(p, pu);
        if self.endpoints.v4.is_none() && self.endpoints.v6.is_none() {
            st.drop("no_pushed_address");
            return;
        }
        if let Some(interval) = p.interval {
            // Spread the clients' first packets over one interval (golden-ratio hash of the
            // index) so N clients do not send in lockstep.
            let frac = f64::from(self.index.wrapping_mul(0x9E37_79B9)) / f64::from(u32::MAX);
            self.next_send = Some(now + interval.mul_f64(frac));
        }
    }

    fn send_echo(&mut self, p: &Profile, now: Instant, st: &mut Stats) {
        let e = self.endpoints;
        let want_v6 = match (e.v4, e.v6) {
            (Some(_), Some(_)) => self.seq % 2 == 1,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (None, None) => return,
        };
        let at = p.us(now);
        let tag = Tag {
            client: self.index,
            seq: self.seq,
            sent_us: at,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut pkt = std::mem::take(&mut self.scratch);
        match (want_v6, e.v4, e.v6) {
            (true, _, Some((src, dst))) => icmp::echo_request_v6(&mut pkt, src, dst, p.size, tag),
            (false, Some((src, dst)), _) => icmp::echo_request_v4(&mut pkt, src, dst, p.size, tag),
            _ => {
                self.scratch = pkt;
                return;
            }
        }
        if self.seal(now, &pkt, st) {
            st.data_sent(want_v6, at);
        }
        self.scratch = pkt;
    }

    /// Encrypt one data-channel plaintext and queue it. False if there is no key or sealing
    /// failed (both counted).
    fn seal(&mut self, now: Instant, plain: &[u8], st: &mut Stats) -> bool {
        let Some(slot) = self.keys.tx.as_ref() else {
            st.drop("tx_no_key");
            return false;
        };
        let mut b = vec![0u8; HEADROOM + plain.len()];
        b[HEADROOM..].copy_from_slice(plain);
        match slot
            .tx
            .seal_in_place(slot.key_id, self.peer_id, &mut b, plain.len())
        {
            Ok(range) => {
                if range.start > 0 {
                    b.drain(..range.start);
                }
                b.truncate(range.len());
                self.out.push_back(b);
                self.last_tx = Some(now);
                true
            }
            Err(_) => {
                st.drop("tx_seal");
                false
            }
        }
    }
}

/// Our pushed addresses and the server's tunnel addresses: `route-gateway` (topology subnet)
/// or the point-to-point peer for IPv4, the `ifconfig-ipv6` remote for IPv6, unless the
/// profile overrides them.
fn endpoints(p: &Profile, pu: &Pushed) -> Endpoints {
    let v4 = match pu.ifconfig {
        Some(IfconfigV4::Subnet { addr, .. }) => {
            p.target_v4.or(pu.route_gateway).map(|gw| (addr, gw))
        }
        Some(IfconfigV4::PointToPoint { addr, peer }) => {
            Some((addr, p.target_v4.or(pu.route_gateway).unwrap_or(peer)))
        }
        None => None,
    };
    let v6 = pu.ifconfig_ipv6.and_then(|(addr, _, remote)| {
        let dst = p
            .target_v6
            .or((!remote.is_unspecified()).then_some(remote))?;
        Some((addr, dst))
    });
    Endpoints { v4, v6 }
}

#[cfg(test)]
mod tests;
