//! Per-shard packet logic: UDP → (decrypt, check, route) → tun or another client, and
//! tun → (route, encrypt) → UDP. Pure over caller-owned buffers, so it runs the same under the
//! io_uring driver, the epoll driver and in unit tests.
//!
//! Buffers follow the shard convention: `buf[..HEADROOM]` is free, the packet is
//! `buf[HEADROOM..HEADROOM + len]`. Encryption writes the OpenVPN header and tag into the
//! headroom; a decrypted packet that goes to another client is re-sealed in place.
//! Every packet either leaves or is dropped with a counted [`Drop`] reason; nothing panics.
//!
//! Hot-path rules (see perf/RESULTS.md "Forwarder"): a unicast packet leaves in the very
//! buffer it arrived in (`*_in_place` outputs, no copy); the route table is read through this
//! shard's [`RouteCache`] (one atomic load when it did not change, no shared reference count);
//! peers are borrowed through `arc_swap` guards, not cloned; the clock is read once per batch
//! ([`ShardHandler::on_tick`]), so per-packet timestamps (replay window seconds, peer
//! last-seen) may lag by up to one shard tick.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::proto::data::{self, DropReason, HEADROOM};
use crate::proto::messages::{classify_plaintext, Plain};
use crate::proto::wire::Opcode;
use crate::route::{PeerId, RouteCache, RouteTable};

use super::coalesce::Coalescer;
use super::mss;
use super::peers::{Peer, PeerTable};
use super::{Outputs, ShardHandler};

mod offload;

/// P_DATA_V2 peer id meaning "none, look me up by address".
const NO_PEER_ID: u32 = 0x00FF_FFFF;

/// What a shard hands to the control thread.
#[derive(Debug)]
pub enum ToControl {
    /// A control-channel datagram.
    Datagram { from: SocketAddr, bytes: Vec<u8> },
    /// A peer's data packet authenticated from a new address.
    Float { peer: PeerId, to: SocketAddr },
    /// A peer said goodbye with OCC_EXIT.
    OccExit { peer: PeerId },
}

/// Why a packet was dropped; indexes [`DropCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    Crypto(DropReason),
    UnknownPeer,
    NoKey,
    /// Inner source address is not the peer's own address or iroute.
    Spoofed,
    /// Inner destination matches no client.
    NoRoute,
    /// Not an IPv4/IPv6 packet, or truncated.
    BadIp,
    /// The control thread's queue was full.
    ControlBusy,
    /// Sealing failed (packet id exhausted: renegotiation overdue).
    Seal,
}

impl Drop {
    fn index(self) -> usize {
        match self {
            Drop::Crypto(_) => 0,
            Drop::UnknownPeer => 1,
            Drop::NoKey => 2,
            Drop::Spoofed => 3,
            Drop::NoRoute => 4,
            Drop::BadIp => 5,
            Drop::ControlBusy => 6,
            Drop::Seal => 7,
        }
    }

    pub const NAMES: [&'static str; 8] = [
        "crypto",
        "unknown_peer",
        "no_key",
        "spoofed",
        "no_route",
        "bad_ip",
        "control_busy",
        "seal",
    ];
}

/// Drop counters, shared for reporting.
#[derive(Default)]
pub struct DropCounters([AtomicU64; 8]);

impl DropCounters {
    pub fn count(&self, d: Drop) {
        self.0[d.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, d: Drop) -> u64 {
        self.0[d.index()].load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> [u64; 8] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

/// Which side of the tunnel this forwarder serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Many clients, routed by the route table.
    Server { client_to_client: bool },
    /// One peer (the server, peer id 0) takes everything.
    Client,
}

/// Milliseconds since a fixed origin, shared by the shards and the control thread.
#[derive(Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new(origin: Instant) -> Self {
        Clock { origin }
    }

    pub fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }
}

/// The per-shard forwarding state.
pub struct Forwarder {
    pub mode: Mode,
    pub peers: Arc<PeerTable>,
    pub routes: Arc<RouteTable>,
    pub control: Sender<ToControl>,
    pub drops: Arc<DropCounters>,
    pub clock: Clock,
    /// This shard's view of `routes`.
    route_cache: RouteCache,
    /// `clock.ms()` as of the last [`ShardHandler::on_tick`] (after every batch, at least once
    /// per tick): one clock read per batch instead of one or two per packet.
    now_ms: u64,
    /// Reused for the per-peer copies of a multicast packet.
    scratch: Vec<u8>,
    /// TCP segments bound for a vnet tun, merged until the end of the batch.
    coalescer: Coalescer,
    /// `mssfix` limits for IPv4 / IPv6 TCP SYNs (0: leave alone).
    mss: (u16, u16),
}

struct Inner {
    src: IpAddr,
    dst: IpAddr,
}

fn inner_addrs(p: &[u8]) -> Option<Inner> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some(Inner {
                src: Ipv4Addr::from(s).into(),
                dst: Ipv4Addr::from(d).into(),
            })
        }
        6 if p.len() >= 40 => {
            let s: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some(Inner {
                src: Ipv6Addr::from(s).into(),
                dst: Ipv6Addr::from(d).into(),
            })
        }
        _ => None,
    }
}

fn is_multicast(a: IpAddr) -> bool {
    a.is_multicast()
}

fn is_link_local_v6(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

impl Forwarder {
    /// A shard's forwarder over the shared tables.
    pub fn new(
        mode: Mode,
        peers: Arc<PeerTable>,
        routes: Arc<RouteTable>,
        control: Sender<ToControl>,
        drops: Arc<DropCounters>,
        clock: Clock,
    ) -> Self {
        Forwarder {
            mode,
            route_cache: routes.cache(),
            peers,
            routes,
            control,
            drops,
            clock,
            now_ms: clock.ms(Instant::now()),
            scratch: Vec::new(),
            coalescer: Coalescer::new(),
            mss: (0, 0),
        }
    }

    /// Clamps the MSS of TCP SYNs crossing the tunnel, both ways, to `v4` / `v6` (OpenVPN's
    /// `mssfix`; 0 leaves that family alone), so the sealed datagrams fit the path MTU and
    /// the kernel's UDP GSO can take them.
    pub fn set_mss_limits(&mut self, (v4, v6): (u16, u16)) {
        self.mss = (v4, v6);
    }

    /// Re-reads the clock (the shard does it after every batch).
    pub fn refresh_clock(&mut self) {
        self.now_ms = self.clock.ms(Instant::now());
    }

    /// A datagram from the outside. `buf[HEADROOM..HEADROOM + len]` holds it.
    pub fn udp_in(&mut self, from: SocketAddr, buf: &mut [u8], len: usize, out: &mut Outputs) {
        let Some(pkt) = buf.get(HEADROOM..HEADROOM + len) else {
            return;
        };
        let Some(&first) = pkt.first() else { return };
        let op = first >> 3;
        let is_v2 = op == Opcode::DataV2 as u8;
        if !is_v2 && op != Opcode::DataV1 as u8 {
            let msg = ToControl::Datagram {
                from,
                bytes: pkt.to_vec(),
            };
            if self.control.try_send(msg).is_err() {
                self.drops.count(Drop::ControlBusy);
            }
            return;
        }
        let id = match (self.mode, pkt.get(1..4)) {
            (Mode::Client, _) => Some(PeerId(0)),
            (Mode::Server { .. }, Some(&[a, b, c])) if is_v2 => {
                let id = u32::from_be_bytes([0, a, b, c]);
                (id != NO_PEER_ID).then_some(PeerId(id))
            }
            _ => None,
        };
        // P_DATA_V1 / no peer id: the rare linear search by address yields an owned `Arc`;
        // the common case borrows the slot through a guard.
        let (guard, owned);
        let peer: &Peer = match id {
            Some(id) => {
                guard = self.peers.load(id);
                match guard.as_ref().and_then(|g| g.as_deref()) {
                    Some(p) => p,
                    None => {
                        self.drops.count(Drop::UnknownPeer);
                        return;
                    }
                }
            }
            None => {
                owned = self.peers.by_addr(from);
                match owned.as_deref() {
                    Some(p) => p,
                    None => {
                        self.drops.count(Drop::UnknownPeer);
                        return;
                    }
                }
            }
        };
        let key_id = first & 7;
        let ring = peer.keys();
        let Some(slot) = ring.rx_key(key_id) else {
            self.drops.count(Drop::NoKey);
            return;
        };
        let now_ms = self.now_ms;
        let header = if is_v2 { 4 } else { 1 };
        let plain_len = {
            let Ok(mut replay) = slot.replay.lock() else {
                return;
            };
            let Some(wire) = buf.get_mut(HEADROOM..HEADROOM + len) else {
                return;
            };
            match slot.rx.open_in_place(wire, &mut replay, now_ms / 1000) {
                Ok(p) => p.len(),
                Err(e) => {
                    self.drops.count(Drop::Crypto(e));
                    return;
                }
            }
        };
        peer.touch_rx(now_ms, len);
        if self.mode != Mode::Client && peer.remote() != from {
            // Authenticated from a new address: the client floated (openvpn-wire.md §11.6).
            peer.set_remote(from);
            let _ = self.control.try_send(ToControl::Float {
                peer: peer.id,
                to: from,
            });
        }
        // Plaintext sits after header + packet id + tag.
        let start = HEADROOM + header + 4 + 16;
        if let Some(p) = buf.get_mut(start..start + plain_len) {
            mss::clamp(p, self.mss.0, self.mss.1);
        }
        let Some(plain) = buf.get(start..start + plain_len) else {
            return;
        };
        match classify_plaintext(plain) {
            Plain::Ping => return,
            Plain::OccExit => {
                let _ = self.control.try_send(ToControl::OccExit { peer: peer.id });
                return;
            }
            Plain::Occ(_) | Plain::OccEmpty => return,
            Plain::Ip => {}
        }
        match self.mode {
            Mode::Client => {
                if !self.coalesce(buf, start, plain_len, out) {
                    out.write_tun_in_place(start..start + plain_len)
                }
            }
            Mode::Server { client_to_client } => {
                self.route_from_client(peer, buf, start, plain_len, client_to_client, out)
            }
        }
    }

    fn route_from_client(
        &mut self,
        peer: &Peer,
        buf: &mut [u8],
        start: usize,
        plain_len: usize,
        client_to_client: bool,
        out: &mut Outputs,
    ) {
        let Some(inner) = buf.get(start..start + plain_len).and_then(inner_addrs) else {
            self.drops.count(Drop::BadIp);
            return;
        };
        let (src_owner, dst_owner) = {
            let table = self.route_cache.load();
            let dst = (client_to_client && !is_multicast(inner.dst))
                .then(|| table.lookup(inner.dst))
                .flatten();
            (table.lookup(inner.src), dst)
        };
        if src_owner != Some(peer.id) {
            if !is_link_local_v6(inner.src) {
                self.drops.count(Drop::Spoofed);
            }
            return;
        }
        if client_to_client {
            if is_multicast(inner.dst) {
                if let Some(data) = buf.get(start..start + plain_len) {
                    self.seal_copies(data, Some(peer.id), out);
                }
            } else if let Some(dst) = dst_owner {
                if dst != peer.id {
                    let other = self.peers.load(dst);
                    if let Some(other) = other.as_ref().and_then(|g| g.as_deref()) {
                        // Re-seal in place: the plaintext already has HEADROOM bytes before it.
                        self.seal_in_place(other, buf, start - HEADROOM, plain_len, out);
                    }
                    return;
                }
            }
        }
        if !self.coalesce(buf, start, plain_len, out) {
            out.write_tun_in_place(start..start + plain_len);
        }
    }

    /// A packet read from the tun queue. `buf[HEADROOM..HEADROOM + len]` holds it.
    pub fn tun_in(&mut self, buf: &mut [u8], len: usize, out: &mut Outputs) {
        let hdr = match out.tun_vnet() {
            true => match self.tun_packet_ready(buf, len) {
                Ok(h) => h,
                Err(()) => return,
            },
            false => Default::default(),
        };
        // A SYN is never a super-packet, and its checksum is complete by now.
        if hdr.is_single() {
            if let Some(p) = buf.get_mut(HEADROOM..HEADROOM + len) {
                mss::clamp(p, self.mss.0, self.mss.1);
            }
        }
        let id = match self.mode {
            Mode::Client => PeerId(0),
            Mode::Server { .. } => {
                let Some(inner) = buf.get(HEADROOM..HEADROOM + len).and_then(inner_addrs) else {
                    self.drops.count(Drop::BadIp);
                    return;
                };
                if is_multicast(inner.dst) {
                    if let Some(data) = buf.get(HEADROOM..HEADROOM + len) {
                        self.seal_copies(data, None, out);
                    }
                    return;
                }
                match self.route_cache.load().lookup(inner.dst) {
                    Some(id) => id,
                    None => {
                        self.drops.count(Drop::NoRoute);
                        return;
                    }
                }
            }
        };
        let guard = self.peers.load(id);
        match guard.as_ref().and_then(|g| g.as_deref()) {
            Some(p) if !hdr.is_single() => self.seal_segments(p, &hdr, buf, len, out),
            Some(p) => self.seal_in_place(p, buf, 0, len, out),
            None => self.drops.count(Drop::NoRoute),
        }
    }

    /// Seal a copy of `data` (multicast) for every peer but `skip`, through one reused
    /// scratch buffer rather than an allocation per peer.
    fn seal_copies(&mut self, data: &[u8], skip: Option<PeerId>, out: &mut Outputs) {
        let mut b = std::mem::take(&mut self.scratch);
        for p in self.peers.iter().filter(|p| Some(p.id) != skip) {
            b.clear();
            b.resize(HEADROOM, 0);
            b.extend_from_slice(data);
            self.seal_and_send(&p, &mut b, data.len(), out);
        }
        self.scratch = b;
    }

    /// Seal `buf[HEADROOM..HEADROOM + len]` (any buffer) for `peer` and queue a copy.
    pub fn seal_and_send(&self, peer: &Peer, buf: &mut [u8], len: usize, out: &mut Outputs) {
        if let Some((to, range)) = self.seal(peer, buf, len) {
            if let Some(wire) = buf.get(range) {
                out.send_udp(to, wire);
            }
        }
    }

    /// Seal `buf[base + HEADROOM..][..len]`, where `buf` is the buffer the shard handed to
    /// the current callback, and queue it without copying.
    fn seal_in_place(
        &self,
        peer: &Peer,
        buf: &mut [u8],
        base: usize,
        len: usize,
        out: &mut Outputs,
    ) {
        let Some(sub) = buf.get_mut(base..) else {
            return;
        };
        if let Some((to, range)) = self.seal(peer, sub, len) {
            out.send_udp_in_place(to, base + range.start..base + range.end);
        }
    }

    /// Seals `buf[HEADROOM..HEADROOM + len]` for `peer`; the wire packet's range in `buf`
    /// and its destination, or `None` (counted) when it cannot be sent.
    fn seal(&self, peer: &Peer, buf: &mut [u8], len: usize) -> Option<(SocketAddr, Range<usize>)> {
        let ring = peer.keys();
        let Some(slot) = ring.tx.as_ref() else {
            self.drops.count(Drop::NoKey);
            return None;
        };
        let peer_id = peer.data_v2.then_some(peer.id.0);
        match slot.tx.seal_in_place(slot.key_id, peer_id, buf, len) {
            Ok(range) => {
                peer.touch_tx(self.now_ms, range.len());
                Some((peer.remote(), range))
            }
            Err(_) => {
                self.drops.count(Drop::Seal);
                None
            }
        }
    }
}

impl ShardHandler for Forwarder {
    fn on_udp(&mut self, from: SocketAddr, buf: &mut [u8], len: usize, out: &mut Outputs) {
        self.udp_in(from, buf, len, out)
    }

    fn on_udp_gro(
        &mut self,
        from: SocketAddr,
        buf: &mut [u8],
        len: usize,
        seg: usize,
        out: &mut Outputs,
    ) {
        offload::udp_gro(self, from, buf, len, seg, out)
    }

    fn on_tun(&mut self, buf: &mut [u8], len: usize, out: &mut Outputs) {
        self.tun_in(buf, len, out)
    }

    fn on_tick(&mut self, out: &mut Outputs) {
        self.coalescer.flush(out);
        self.refresh_clock();
        // Picks up a new route snapshot now rather than at the next packet, so an idle shard
        // does not keep an old one alive (RouteCache doc).
        let _ = self.route_cache.load();
    }
}

/// Seal one plaintext (a keepalive ping, OCC_EXIT) for `peer` into a fresh datagram.
pub fn seal_one(peer: &Peer, plain: &[u8]) -> Option<Vec<u8>> {
    let ring = peer.keys();
    let slot = ring.tx.as_ref()?;
    let mut b = vec![0u8; HEADROOM + plain.len()];
    b[HEADROOM..].copy_from_slice(plain);
    let peer_id = peer.data_v2.then_some(peer.id.0);
    let range = slot
        .tx
        .seal_in_place(slot.key_id, peer_id, &mut b, plain.len())
        .ok()?;
    Some(b[range].to_vec())
}

/// Build the data-channel keys for one key generation.
pub fn key_slot(
    key_id: u8,
    cipher: data::Cipher,
    block: &data::KeyBlock,
    side: data::Side,
    replay_window: (u32, u64),
) -> Result<super::peers::KeySlot, data::DataKeyError> {
    let (tx, rx) = data::data_keys(cipher, block, side)?;
    // The window size was validated with the configuration; fall back to the default anyway.
    let replay = data::ReplayWindow::new(replay_window.0, replay_window.1).unwrap_or_default();
    Ok(super::peers::KeySlot {
        key_id,
        cipher,
        tx,
        rx,
        replay: std::sync::Mutex::new(replay),
    })
}

#[cfg(test)]
mod tests {
    use super::super::outputs::{Data, Dest};
    use super::*;
    use crate::proto::data::{data_keys, Cipher, KeyBlock, ReplayWindow, Side, TxKey};
    use ipnet::IpNet;

    const SERVER: [u8; 4] = [10, 8, 0, 1];

    fn block(i: u8) -> KeyBlock {
        let mut b = [0u8; 256];
        for (j, x) in b.iter_mut().enumerate() {
            *x = (j as u8).wrapping_mul(7) ^ i ^ 0x33;
        }
        KeyBlock::new(b)
    }

    fn remote(i: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, i], 5000))
    }

    fn v4(i: u8) -> [u8; 4] {
        [10, 8, 0, 10 + i]
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
        let mut p = vec![0xabu8; len];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    /// A server forwarder with peers 1 and 2 (10.8.0.11, 10.8.0.12) and the clients' keys.
    fn setup(c2c: bool) -> (Forwarder, Vec<(TxKey, crate::proto::data::RxKey)>) {
        let peers = Arc::new(PeerTable::new(4));
        let routes = Arc::new(RouteTable::new());
        let mut clients = Vec::new();
        for i in 1..=2u8 {
            let slot = Arc::new(
                key_slot(
                    0,
                    Cipher::Aes256Gcm,
                    &block(i),
                    data::Side::Server,
                    (64, 15),
                )
                .unwrap(),
            );
            let p = Arc::new(Peer::new(
                PeerId(i.into()),
                true,
                remote(i),
                format!("c{i}"),
            ));
            p.update_keys(|r| {
                r.tx = Some(slot.clone());
                r.rx = vec![slot];
            });
            peers.insert(p);
            routes.insert(
                IpNet::from(IpAddr::V4(Ipv4Addr::from(v4(i)))),
                PeerId(i.into()),
            );
            clients.push(data_keys(Cipher::Aes256Gcm, &block(i), Side::Client).unwrap());
        }
        let (tx, _rx) = crossbeam_channel::bounded(16);
        let f = Forwarder::new(
            Mode::Server {
                client_to_client: c2c,
            },
            peers,
            routes,
            tx,
            Arc::new(DropCounters::default()),
            Clock::new(Instant::now()),
        );
        (f, clients)
    }

    fn in_buf(out: &mut Outputs, pkt: &[u8]) -> Box<[u8]> {
        let mut b = out.take_buffer().unwrap();
        b[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(pkt);
        b
    }

    fn seal_from_client(tx: &TxKey, peer: u32, plain: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADROOM + plain.len()];
        b[HEADROOM..].copy_from_slice(plain);
        let r = tx
            .seal_in_place(0, Some(peer), &mut b, plain.len())
            .unwrap();
        b[r].to_vec()
    }

    /// The single resolved output: (dest, bytes), and whether it kept the input buffer.
    fn only_output(out: &Outputs, kept: bool) -> (Dest, Vec<u8>) {
        assert_eq!(out.ops.len(), 1);
        assert!(
            kept,
            "unicast output must take the input buffer (zero copy)"
        );
        match &out.ops[0].data {
            Data::Owned(b, r) => (out.ops[0].dest, b[r.clone()].to_vec()),
            Data::Current(_) => panic!("unresolved"),
        }
    }

    #[test]
    fn tun_to_client_in_place() {
        let (mut f, clients) = setup(false);
        let mut out = Outputs::new(2048, 16);
        let pkt = ipv4(SERVER, v4(2), 100);
        let mut b = in_buf(&mut out, &pkt);
        f.tun_in(&mut b, pkt.len(), &mut out);
        let kept = out.finish_detached(0, b).is_none();
        let (dest, mut wire) = only_output(&out, kept);
        assert_eq!(dest, Dest::Udp(remote(2)));
        let mut win = ReplayWindow::default();
        let plain = clients[1].1.open_in_place(&mut wire, &mut win, 0).unwrap();
        assert_eq!(plain, &pkt[..]);
        assert_eq!(
            f.peers
                .get(PeerId(2))
                .unwrap()
                .stats
                .packets_out
                .load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn tun_no_route_dropped() {
        let (mut f, _) = setup(false);
        let mut out = Outputs::new(2048, 16);
        let pkt = ipv4(SERVER, [10, 8, 0, 99], 60);
        let mut b = in_buf(&mut out, &pkt);
        f.tun_in(&mut b, pkt.len(), &mut out);
        assert!(out.finish_detached(0, b).is_some());
        assert_eq!(out.queued(), 0);
        assert_eq!(f.drops.get(Drop::NoRoute), 1);
    }

    #[test]
    fn client_to_tun_in_place_and_spoof_check() {
        let (mut f, clients) = setup(false);
        let mut out = Outputs::new(2048, 16);
        let pkt = ipv4(v4(1), SERVER, 80);
        let wire = seal_from_client(&clients[0].0, 1, &pkt);
        let mut b = in_buf(&mut out, &wire);
        f.udp_in(remote(1), &mut b, wire.len(), &mut out);
        let kept = out.finish_detached(0, b).is_none();
        let (dest, bytes) = only_output(&out, kept);
        assert_eq!((dest, bytes), (Dest::Tun, pkt));
        out.discard();

        // Peer 1 claiming peer 2's address: dropped as spoofed.
        let spoof = ipv4(v4(2), SERVER, 80);
        let wire = seal_from_client(&clients[0].0, 1, &spoof);
        let mut b = in_buf(&mut out, &wire);
        f.udp_in(remote(1), &mut b, wire.len(), &mut out);
        assert!(out.finish_detached(0, b).is_some());
        assert_eq!(out.queued(), 0);
        assert_eq!(f.drops.get(Drop::Spoofed), 1);
    }

    #[test]
    fn client_to_client_resealed_in_place() {
        let (mut f, clients) = setup(true);
        let mut out = Outputs::new(2048, 16);
        let pkt = ipv4(v4(1), v4(2), 120);
        let wire = seal_from_client(&clients[0].0, 1, &pkt);
        let mut b = in_buf(&mut out, &wire);
        f.udp_in(remote(1), &mut b, wire.len(), &mut out);
        let kept = out.finish_detached(0, b).is_none();
        let (dest, mut fwd) = only_output(&out, kept);
        assert_eq!(dest, Dest::Udp(remote(2)));
        let mut win = ReplayWindow::default();
        let plain = clients[1].1.open_in_place(&mut fwd, &mut win, 0).unwrap();
        assert_eq!(plain, &pkt[..]);
    }

    /// The sealed copies queued in `out`, by destination, opened with each client's key.
    fn opened_copies(
        out: &Outputs,
        clients: &[(TxKey, crate::proto::data::RxKey)],
    ) -> Vec<(Dest, Vec<u8>)> {
        out.ops
            .iter()
            .map(|op| {
                let Data::Owned(b, r) = &op.data else {
                    panic!("unresolved")
                };
                let Dest::Udp(to) = op.dest else {
                    return (op.dest, b[r.clone()].to_vec());
                };
                let i = usize::from(to.ip().to_string().ends_with(".2"));
                let mut wire = b[r.clone()].to_vec();
                let mut win = ReplayWindow::default();
                let plain = clients[i].1.open_in_place(&mut wire, &mut win, 0).unwrap();
                (op.dest, plain.to_vec())
            })
            .collect()
    }

    #[test]
    fn multicast_goes_to_every_client_and_from_a_client_also_to_the_tun() {
        let (mut f, clients) = setup(true);
        let mut out = Outputs::new(2048, 16);
        let mcast = ipv4(SERVER, [224, 0, 0, 1], 90);
        let mut b = in_buf(&mut out, &mcast);
        f.tun_in(&mut b, mcast.len(), &mut out);
        let _ = out.finish_detached(0, b);
        let mut got = opened_copies(&out, &clients);
        got.sort_by_key(|(d, _)| format!("{d:?}"));
        assert_eq!(
            got,
            vec![
                (Dest::Udp(remote(1)), mcast.clone()),
                (Dest::Udp(remote(2)), mcast.clone())
            ]
        );
        out.discard();

        // From client 1: a copy for client 2 (not back to 1) and one to the tun.
        let from1 = ipv4(v4(1), [224, 0, 0, 1], 90);
        let wire = seal_from_client(&clients[0].0, 1, &from1);
        let mut b = in_buf(&mut out, &wire);
        f.udp_in(remote(1), &mut b, wire.len(), &mut out);
        let _ = out.finish_detached(0, b);
        let mut got = opened_copies(&out, &clients);
        got.sort_by_key(|(d, _)| format!("{d:?}"));
        assert_eq!(
            got,
            vec![(Dest::Tun, from1.clone()), (Dest::Udp(remote(2)), from1)]
        );
    }

    #[test]
    fn client_mode_both_directions_in_place() {
        let peers = Arc::new(PeerTable::new(1));
        let slot = Arc::new(
            key_slot(
                0,
                Cipher::Aes256Gcm,
                &block(9),
                data::Side::Client,
                (64, 15),
            )
            .unwrap(),
        );
        let server = remote(200);
        let p = Arc::new(Peer::new(PeerId(0), true, server, "server".into()));
        p.update_keys(|r| {
            r.tx = Some(slot.clone());
            r.rx = vec![slot];
        });
        peers.insert(p);
        let (srv_tx, srv_rx) = data_keys(Cipher::Aes256Gcm, &block(9), Side::Server).unwrap();
        let (tx, _rx) = crossbeam_channel::bounded(4);
        let mut f = Forwarder::new(
            Mode::Client,
            peers,
            Arc::new(RouteTable::new()),
            tx,
            Arc::new(DropCounters::default()),
            Clock::new(Instant::now()),
        );
        let mut out = Outputs::new(2048, 16);
        let pkt = ipv4([10, 8, 0, 2], [198, 51, 100, 7], 90);
        let mut b = in_buf(&mut out, &pkt);
        f.tun_in(&mut b, pkt.len(), &mut out);
        let kept = out.finish_detached(0, b).is_none();
        let (dest, mut wire) = only_output(&out, kept);
        assert_eq!(dest, Dest::Udp(server));
        let mut win = ReplayWindow::default();
        assert_eq!(
            srv_rx.open_in_place(&mut wire, &mut win, 0).unwrap(),
            &pkt[..]
        );
        out.discard();

        let wire = seal_from_client(&srv_tx, 0, &pkt);
        let mut b = in_buf(&mut out, &wire);
        f.udp_in(server, &mut b, wire.len(), &mut out);
        let kept = out.finish_detached(0, b).is_none();
        assert_eq!(only_output(&out, kept), (Dest::Tun, pkt));
    }

    #[test]
    fn unknown_peer_and_bad_tag_counted() {
        let (mut f, clients) = setup(false);
        let mut out = Outputs::new(2048, 16);
        let pkt = ipv4(v4(1), SERVER, 40);
        let wire = seal_from_client(&clients[0].0, 3, &pkt); // peer id 3: empty slot
        let mut b = in_buf(&mut out, &wire);
        f.udp_in(remote(1), &mut b, wire.len(), &mut out);
        let mut wire = seal_from_client(&clients[0].0, 1, &pkt);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let b2 = out.finish_detached(0, b).unwrap();
        let mut b2 = {
            let mut b2 = b2;
            b2[HEADROOM..HEADROOM + wire.len()].copy_from_slice(&wire);
            b2
        };
        f.udp_in(remote(1), &mut b2, wire.len(), &mut out);
        assert_eq!(out.queued(), 0);
        assert_eq!(f.drops.get(Drop::UnknownPeer), 1);
        assert_eq!(f.drops.snapshot()[0], 1, "bad tag counted as a crypto drop");
    }
}
