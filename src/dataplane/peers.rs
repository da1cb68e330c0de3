//! The peer table shared by the shards and the control thread.
//!
//! A slot per peer id (dense, `max-clients` long), each an `ArcSwapOption<Peer>`: shards load a
//! peer without a lock; the control thread is the only writer and replaces whole values. A peer's
//! keys are an immutable [`KeyRing`] behind its own `ArcSwap`, so a renegotiation publishes a new
//! ring atomically and a shard never sees half of one. The receive replay window is the only
//! per-packet mutable state behind a lock; with 4-tuple steering one peer's packets reach one
//! shard, so that lock is uncontended (design.md).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::proto::data::{Cipher, ReplayWindow, RxKey, TxKey};
use crate::route::PeerId;

/// One key generation's data-channel keys.
pub struct KeySlot {
    pub key_id: u8,
    pub cipher: Cipher,
    pub tx: TxKey,
    pub rx: RxKey,
    pub replay: Mutex<ReplayWindow>,
}

/// The keys a peer may use right now: at most two for receiving (new and lame duck) and the
/// one used for sending.
#[derive(Default, Clone)]
pub struct KeyRing {
    pub tx: Option<Arc<KeySlot>>,
    pub rx: Vec<Arc<KeySlot>>,
    /// The peer's traffic totals (bytes, packets) when `tx` became the sending key, so
    /// `reneg-bytes` / `reneg-pkts` count per key generation.
    pub tx_baseline: (u64, u64),
}

/// `reneg-bytes` / `reneg-pkts`: renegotiate once a key generation carried this much traffic
/// (both directions, as OpenVPN counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenegLimits {
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
}

impl KeyRing {
    pub fn rx_key(&self, key_id: u8) -> Option<&Arc<KeySlot>> {
        self.rx.iter().find(|k| k.key_id == key_id)
    }

    /// A new key generation (`Event::KeysReady` / `ServerEvent::Keys`): accepted at once, next
    /// to at most one older key; it sends at once if `tx_now` or if nothing else can.
    pub fn install(&mut self, slot: Arc<KeySlot>, tx_now: bool) {
        self.rx.retain(|k| k.key_id != slot.key_id);
        self.rx.insert(0, slot.clone());
        self.rx.truncate(2);
        if tx_now || self.tx.is_none() {
            self.tx = Some(slot);
        }
    }

    /// Start sending with `key_id` (`TxSwitch`).
    pub fn switch_tx(&mut self, key_id: u8) {
        if let Some(k) = self.rx_key(key_id).cloned() {
            self.tx = Some(k);
        }
    }

    /// Stop accepting `key_id` (`KeyRetired`); if it was sending, the newest other key sends.
    pub fn retire(&mut self, key_id: u8) {
        self.rx.retain(|k| k.key_id != key_id);
        if self.tx.as_ref().is_some_and(|t| t.key_id == key_id) {
            self.tx = self.rx.first().cloned();
        }
    }
}

/// Per-peer counters, updated by any shard.
#[derive(Default)]
pub struct PeerStats {
    /// Bytes on the UDP socket, OpenVPN headers included (status file semantics).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    /// Milliseconds since the data plane's clock origin.
    pub last_rx_ms: AtomicU64,
    pub last_tx_ms: AtomicU64,
}

/// A connected client (server role) or the server (client role).
pub struct Peer {
    pub id: PeerId,
    /// Send P_DATA_V2 with this peer id (else P_DATA_V1).
    pub data_v2: bool,
    remote: ArcSwap<SocketAddr>,
    keys: ArcSwap<KeyRing>,
    pub stats: PeerStats,
    pub common_name: String,
    /// Keepalive for this peer: send a ping after `ping` of silence, drop it after
    /// `ping_restart` without hearing from it (`None` = off).
    pub ping: Option<Duration>,
    pub ping_restart: Option<Duration>,
}

impl Peer {
    pub fn new(id: PeerId, data_v2: bool, remote: SocketAddr, common_name: String) -> Self {
        Peer {
            id,
            data_v2,
            remote: ArcSwap::from_pointee(remote),
            keys: ArcSwap::from_pointee(KeyRing::default()),
            stats: PeerStats::default(),
            common_name,
            ping: None,
            ping_restart: None,
        }
    }

    pub fn remote(&self) -> SocketAddr {
        **self.remote.load()
    }

    pub fn set_remote(&self, addr: SocketAddr) {
        self.remote.store(Arc::new(addr));
    }

    pub fn keys(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.keys.load()
    }

    /// Control thread only: publish a new key ring.
    pub fn update_keys(&self, f: impl FnOnce(&mut KeyRing)) {
        let mut ring = KeyRing::clone(&self.keys.load());
        let old_tx = ring.tx.as_ref().map(|k| k.key_id);
        f(&mut ring);
        if ring.tx.as_ref().map(|k| k.key_id) != old_tx {
            ring.tx_baseline = self.traffic();
        }
        self.keys.store(Arc::new(ring));
    }

    /// Install a new key generation (see [`KeyRing::install`]) and publish the ring.
    pub fn install_key(&self, slot: KeySlot, tx_now: bool) {
        let slot = Arc::new(slot);
        self.update_keys(|r| r.install(slot, tx_now));
    }

    /// Start sending with `key_id` (`TxSwitch`).
    pub fn switch_tx(&self, key_id: u8) {
        self.update_keys(|r| r.switch_tx(key_id));
    }

    /// Stop accepting `key_id` (`KeyRetired`).
    pub fn retire_key(&self, key_id: u8) {
        self.update_keys(|r| r.retire(key_id));
    }

    /// Bytes and packets in both directions since the peer came up.
    pub fn traffic(&self) -> (u64, u64) {
        let s = &self.stats;
        (
            s.bytes_in.load(Ordering::Relaxed) + s.bytes_out.load(Ordering::Relaxed),
            s.packets_in.load(Ordering::Relaxed) + s.packets_out.load(Ordering::Relaxed),
        )
    }

    /// Whether the sending key should be renegotiated: its packet id nears the end of its
    /// space, or it carried `limits` worth of traffic.
    pub fn reneg_due(&self, limits: &RenegLimits) -> bool {
        let ring = self.keys();
        let Some(tx) = ring.tx.as_ref() else {
            return false;
        };
        if tx.tx.wants_renegotiation() {
            return true;
        }
        let (bytes, packets) = self.traffic();
        let (b0, p0) = ring.tx_baseline;
        limits.bytes.is_some_and(|l| bytes.saturating_sub(b0) >= l)
            || limits
                .packets
                .is_some_and(|l| packets.saturating_sub(p0) >= l)
    }

    pub fn touch_rx(&self, now_ms: u64, bytes: usize) {
        self.stats.last_rx_ms.store(now_ms, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.stats.packets_in.fetch_add(1, Ordering::Relaxed);
    }

    pub fn touch_tx(&self, now_ms: u64, bytes: usize) {
        self.stats.last_tx_ms.store(now_ms, Ordering::Relaxed);
        self.stats
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.stats.packets_out.fetch_add(1, Ordering::Relaxed);
    }
}

/// Dense peer-id indexed table.
pub struct PeerTable {
    slots: Box<[ArcSwapOption<Peer>]>,
}

impl PeerTable {
    pub fn new(capacity: usize) -> Self {
        PeerTable {
            slots: (0..capacity).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    /// A client's table: the server at slot 0, whatever peer-id it pushed (that id is what
    /// goes into P_DATA_V2 headers, not the slot).
    pub fn single(peer: Arc<Peer>) -> Self {
        PeerTable {
            slots: Box::new([ArcSwapOption::new(Some(peer))]),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn get(&self, id: PeerId) -> Option<Arc<Peer>> {
        self.slots.get(id.0 as usize)?.load_full()
    }

    /// Borrows the peer in slot `id` without touching its reference count (an `arc_swap`
    /// guard: the per-packet path; keep it short-lived). `None` when `id` is out of range.
    #[inline]
    pub fn load(&self, id: PeerId) -> Option<arc_swap::Guard<Option<Arc<Peer>>>> {
        Some(self.slots.get(id.0 as usize)?.load())
    }

    /// Control thread only.
    pub fn insert(&self, peer: Arc<Peer>) {
        if let Some(s) = self.slots.get(peer.id.0 as usize) {
            s.store(Some(peer));
        }
    }

    /// Control thread only.
    pub fn remove(&self, id: PeerId) -> Option<Arc<Peer>> {
        self.slots.get(id.0 as usize)?.swap(None)
    }

    pub fn iter(&self) -> impl Iterator<Item = Arc<Peer>> + '_ {
        self.slots.iter().filter_map(|s| s.load_full())
    }

    /// P_DATA_V1 / peer-id 0xFFFFFF: find the peer by its current real address. Linear, but
    /// only clients too old for P_DATA_V2 take this path.
    pub fn by_addr(&self, addr: SocketAddr) -> Option<Arc<Peer>> {
        self.iter().find(|p| p.remote() == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_table_finds_the_server_at_slot_zero_whatever_its_peer_id() {
        let peer = Arc::new(Peer::new(
            PeerId(7),
            true,
            "10.0.0.1:1194".parse().unwrap(),
            "s".into(),
        ));
        let t = PeerTable::single(peer);
        assert_eq!(t.get(PeerId(0)).map(|p| p.id), Some(PeerId(7)));
        assert_eq!(t.capacity(), 1);
    }

    #[test]
    fn insert_out_of_range_is_ignored_and_remove_frees_the_slot() {
        let t = PeerTable::new(2);
        t.insert(Arc::new(Peer::new(
            PeerId(5),
            true,
            "10.0.0.1:1".parse().unwrap(),
            "x".into(),
        )));
        assert_eq!(t.iter().count(), 0);
        t.insert(Arc::new(Peer::new(
            PeerId(1),
            true,
            "10.0.0.1:1".parse().unwrap(),
            "y".into(),
        )));
        assert!(t.get(PeerId(1)).is_some());
        assert!(t.remove(PeerId(1)).is_some());
        assert!(t.get(PeerId(1)).is_none());
    }
}
