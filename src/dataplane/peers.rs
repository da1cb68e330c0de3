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
}

impl KeyRing {
    pub fn rx_key(&self, key_id: u8) -> Option<&Arc<KeySlot>> {
        self.rx.iter().find(|k| k.key_id == key_id)
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
        f(&mut ring);
        self.keys.store(Arc::new(ring));
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
