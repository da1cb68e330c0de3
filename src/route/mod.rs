//! Longest-prefix-match route table (IPv4 + IPv6) and its lock-free publication.
//!
//! Owns: the mapping from inner (tunnel) addresses to the peer that owns them, as described in
//! `server-ipv6.md` §8 ("Internal routing"): each connected client contributes its host routes
//! (pool address /32, `ifconfig-ipv6` address /128) and its `iroute` / `iroute-ipv6` prefixes.
//!
//! Semantics:
//! * Lookup is longest-prefix match, with a host route (full length) beating every iroute —
//!   the result of OpenVPN 2.6's algorithm (`multi_get_instance_by_virtual_addr`: exact host
//!   lookup, then one masked lookup per iroute length in use, longest first), computed
//!   differently: a one-word block filter ([`filter`]) says whether the address's block may
//!   hold host routes and/or iroutes; the host map is probed only in the former case, the
//!   iroute index ([`seg`]: iroutes grouped by a common prefix length, one hash probe for the
//!   group plus a binary search in its few address runs) only in the latter (or when some
//!   iroute is shorter than a block). An Internet destination thus costs one bit test, an
//!   iroute hit one hash probe plus a search over a handful of runs.
//! * Every prefix is normalised (host bits cleared) on insert and remove. For IPv6 that is
//!   what 2.6 does. **Deviation:** 2.6 stores IPv4 iroutes as written, so an
//!   `iroute 192.168.5.1 255.255.255.0` never matches anything there; fwd normalises it to
//!   192.168.5.0/24, which only makes such configs work.
//! * A full-length prefix (/32, /128) *is* a host route: fwd does not keep a separate
//!   "iroute x/32" next to a host route x (2.6 keeps both, host first). Adding a prefix that
//!   another peer owns moves it to the new peer (2.6's learn-address "update").
//! * Policy (max-routes-per-client, never learning all-zero/all-ones or the server's own
//!   address, learn-address scripts) belongs to the caller; the table stores what it is given.
//!
//! Concurrency (design.md "Shared, read-mostly state"): readers work on an immutable
//! [`Snapshot`] loaded from an `ArcSwap` and never lock; a snapshot never changes, so a batch
//! routed with one snapshot sees one consistent table, and a [`RouteTable::apply`] batch
//! becomes visible all at once or not at all. Writers (the control plane) are serialised by a
//! mutex readers never touch. Updates are cheap because the snapshot's maps are persistent
//! ([`pmap`]): a new snapshot shares everything with the old one except the copied paths, the
//! filter bitmap when a block opens or closes, and the run arrays of the touched iroute groups
//! (rebuilt once per batch, O(iroutes in that group)).

mod filter;
mod pmap;
mod seg;

#[cfg(test)]
mod proptests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};
use ipnet::IpNet;

use filter::{block_v4, block_v6, BlockFilter, HOST, IROUTE};
use pmap::{PMap, K6};
use seg::IrouteIndex;

/// Identifier of a connected peer (client instance) that owns routes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// One change to the route table; see [`RouteTable::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChange {
    /// Route `net` (normalised) to the peer; replaces any previous owner of exactly `net`.
    Add(IpNet, PeerId),
    /// Remove exactly `net` (normalised), whoever owns it.
    Remove(IpNet),
    /// Remove every route of the peer (its host routes and iroutes).
    RemovePeer(PeerId),
}

/// An immutable, consistent view of the route table. Cheap to clone via `Arc`; lookups never
/// allocate or lock.
#[derive(Clone, Debug)]
pub struct Snapshot {
    host4: PMap<u32, PeerId>,
    host6: PMap<K6, PeerId>,
    /// IPv4 iroutes (blocks: /16).
    iroutes4: IrouteIndex,
    /// IPv6 iroutes (blocks: /32).
    iroutes6: IrouteIndex,
    /// Which IPv4 /16 blocks may hold host routes / iroutes (see [`filter`]).
    filter4: BlockFilter,
    /// Which IPv6 /32 blocks (hashed) may hold host routes / iroutes.
    filter6: BlockFilter,
    /// Number of routes of each peer. Key: `PeerId.0`.
    peer_len: PMap<u32, u32>,
    /// The routes (normalised) of each peer, numbered densely `0..peer_len`.
    /// Key: `PeerId.0 << 32 | index`. Values are `Copy`, so copying a leaf on update is a
    /// plain memcpy (an `Arc<[IpNet]>` per peer would cost an atomic increment per entry).
    peer_routes: PMap<u64, IpNet>,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Snapshot {
            host4: PMap::new(),
            host6: PMap::new(),
            iroutes4: IrouteIndex::new(32, 16),
            iroutes6: IrouteIndex::new(128, 32),
            filter4: BlockFilter::new(),
            filter6: BlockFilter::new(),
            peer_len: PMap::new(),
            peer_routes: PMap::new(),
        }
    }

    /// Longest-prefix match of an IPv4 address given as a host-order `u32`.
    #[inline]
    pub fn lookup_v4_u32(&self, a: u32) -> Option<PeerId> {
        let bits = self.filter4.get(block_v4(a));
        if bits & HOST != 0 {
            if let Some(p) = self.host4.get(a) {
                return Some(*p);
            }
        }
        if bits & IROUTE == 0 && !self.iroutes4.has_short() {
            return None;
        }
        self.iroutes4.lookup(u128::from(a), bits & IROUTE != 0)
    }

    /// Longest-prefix match of an IPv6 address given as a host-order `u128`.
    #[inline]
    pub fn lookup_v6_u128(&self, a: u128) -> Option<PeerId> {
        let bits = self.filter6.get(block_v6(a));
        if bits & HOST != 0 {
            if let Some(p) = self.host6.get(K6::new(a)) {
                return Some(*p);
            }
        }
        if bits & IROUTE == 0 && !self.iroutes6.has_short() {
            return None;
        }
        self.iroutes6.lookup(a, bits & IROUTE != 0)
    }

    /// Longest-prefix match of an IPv4 address.
    #[inline]
    pub fn lookup_v4(&self, a: Ipv4Addr) -> Option<PeerId> {
        self.lookup_v4_u32(u32::from(a))
    }

    /// Longest-prefix match of an IPv6 address.
    #[inline]
    pub fn lookup_v6(&self, a: Ipv6Addr) -> Option<PeerId> {
        self.lookup_v6_u128(u128::from(a))
    }

    /// Longest-prefix match of an address of either family.
    #[inline]
    pub fn lookup(&self, a: IpAddr) -> Option<PeerId> {
        match a {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// The routes (normalised) owned by `peer`, in no particular order; empty if none.
    pub fn routes_of(&self, peer: PeerId) -> impl Iterator<Item = IpNet> + '_ {
        let n = self.peer_len.get(peer.0).copied().unwrap_or(0);
        (0..n).filter_map(move |i| self.peer_routes.get(route_key(peer, i)).copied())
    }

    /// The peer owning exactly `net` (normalised), if any. Not a longest-prefix lookup.
    pub fn owner_of(&self, net: IpNet) -> Option<PeerId> {
        match net.trunc() {
            IpNet::V4(n) if n.prefix_len() == 32 => self.host4.get(u32::from(n.addr())).copied(),
            IpNet::V6(n) if n.prefix_len() == 128 => {
                self.host6.get(K6::new(u128::from(n.addr()))).copied()
            }
            IpNet::V4(n) => self
                .iroutes4
                .get(u128::from(u32::from(n.addr())), n.prefix_len()),
            IpNet::V6(n) => self.iroutes6.get(u128::from(n.addr()), n.prefix_len()),
        }
    }

    /// Number of routes (host routes + iroutes, both families).
    pub fn len(&self) -> usize {
        self.host4.len() + self.host6.len() + self.iroutes4.len() + self.iroutes6.len()
    }

    /// True if the snapshot holds no route.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of peers owning at least one route.
    pub fn peer_count(&self) -> usize {
        self.peer_len.len()
    }

    /// Apply one change to this (private, not yet published) snapshot. Call
    /// [`Snapshot::finish`] before publishing.
    fn apply_one(&mut self, change: RouteChange) {
        match change {
            RouteChange::Add(net, peer) => {
                let net = net.trunc();
                match self.put(net, Some(peer)) {
                    Some(old) if old == peer => {}
                    Some(old) => {
                        self.unindex(old, net);
                        self.index(peer, net);
                    }
                    None => self.index(peer, net),
                }
            }
            RouteChange::Remove(net) => {
                let net = net.trunc();
                if let Some(old) = self.put(net, None) {
                    self.unindex(old, net);
                }
            }
            RouteChange::RemovePeer(peer) => {
                let n = self.peer_len.remove(peer.0).unwrap_or(0);
                for i in 0..n {
                    if let Some(net) = self.peer_routes.remove(route_key(peer, i)) {
                        self.put(net, None);
                    }
                }
            }
        }
    }

    /// Bring the derived lookup structures (iroute intervals) up to date after `apply_one`s.
    fn finish(&mut self) {
        self.iroutes4.finish();
        self.iroutes6.finish();
    }

    /// Set (`Some`) or clear (`None`) the owner of the normalised `net`; returns the previous.
    fn put(&mut self, net: IpNet, peer: Option<PeerId>) -> Option<PeerId> {
        let (old, filter, kind, block) = match net {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                let k = u32::from(n.addr());
                let old = match peer {
                    Some(p) => self.host4.insert(k, p),
                    None => self.host4.remove(k),
                };
                (old, &mut self.filter4, HOST, block_v4(k))
            }
            IpNet::V6(n) if n.prefix_len() == 128 => {
                let a = u128::from(n.addr());
                let old = match peer {
                    Some(p) => self.host6.insert(K6::new(a), p),
                    None => self.host6.remove(K6::new(a)),
                };
                (old, &mut self.filter6, HOST, block_v6(a))
            }
            IpNet::V4(n) => {
                let (len, a) = (n.prefix_len(), u32::from(n.addr()));
                let old = self.iroutes4.put(u128::from(a), len, peer);
                if len < 16 {
                    return old;
                }
                (old, &mut self.filter4, IROUTE, block_v4(a))
            }
            IpNet::V6(n) => {
                let (len, a) = (n.prefix_len(), u128::from(n.addr()));
                let old = self.iroutes6.put(a, len, peer);
                if len < 32 {
                    return old;
                }
                (old, &mut self.filter6, IROUTE, block_v6(a))
            }
        };
        match (old, peer) {
            (None, Some(_)) => filter.add(kind, block),
            (Some(_), None) => filter.remove(kind, block),
            _ => {}
        }
        old
    }

    fn index(&mut self, peer: PeerId, net: IpNet) {
        let n = self.peer_len.get(peer.0).copied().unwrap_or(0);
        if self.routes_of(peer).any(|r| r == net) {
            return;
        }
        self.peer_routes.insert(route_key(peer, n), net);
        self.peer_len.insert(peer.0, n + 1);
    }

    fn unindex(&mut self, peer: PeerId, net: IpNet) {
        let n = self.peer_len.get(peer.0).copied().unwrap_or(0);
        let Some(i) = (0..n).find(|i| self.peer_routes.get(route_key(peer, *i)) == Some(&net))
        else {
            return;
        };
        // Keep the numbering dense: move the last route into the freed index.
        let last = n - 1;
        if let Some(moved) = self.peer_routes.remove(route_key(peer, last)) {
            if i != last {
                self.peer_routes.insert(route_key(peer, i), moved);
            }
        }
        if last == 0 {
            self.peer_len.remove(peer.0);
        } else {
            self.peer_len.insert(peer.0, last);
        }
    }
}

#[inline]
fn route_key(peer: PeerId, i: u32) -> u64 {
    u64::from(peer.0) << 32 | u64::from(i)
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}

/// The writer side of the route table and its publication point.
///
/// Share it (`Arc<RouteTable>`) between the control plane, which is the only caller of the
/// mutating methods, and the shards, which read through [`RouteTable::load`] or a per-shard
/// [`RouteCache`].
#[derive(Debug, Default)]
pub struct RouteTable {
    current: Arc<ArcSwap<Snapshot>>,
    /// Serialises writers only (load-modify-store must not interleave); readers never take it.
    writer: Mutex<()>,
}

/// A per-shard cache of the current snapshot (`arc_swap::Cache`): `load` is a single atomic
/// read when nothing changed. An old snapshot stays alive until the shard's next `load`, so
/// shards should also load on idle ticks.
pub struct RouteCache {
    inner: arc_swap::Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>,
}

impl RouteCache {
    /// The current snapshot (refreshed if the table was updated since the last call).
    #[inline]
    pub fn load(&mut self) -> &Arc<Snapshot> {
        self.inner.load()
    }
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache").finish_non_exhaustive()
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot, as an owned `Arc` (one reference-count update).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot through an `arc_swap` guard (cheapest for short-lived reads).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// A per-shard snapshot cache.
    pub fn cache(&self) -> RouteCache {
        RouteCache {
            inner: arc_swap::Cache::new(Arc::clone(&self.current)),
        }
    }

    /// Apply `changes` in order and publish the result as one new snapshot: readers see either
    /// none or all of them. Cost: proportional to the paths touched (see [`pmap`]), not to the
    /// table size.
    pub fn apply(&self, changes: impl IntoIterator<Item = RouteChange>) {
        // A poisoned writer lock guards no data (the state is in `current`): carry on.
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Snapshot::clone(&self.current.load());
        for c in changes {
            next.apply_one(c);
        }
        next.finish();
        self.current.store(Arc::new(next));
    }

    /// Route `net` to `peer` (one-change [`RouteTable::apply`]).
    pub fn insert(&self, net: IpNet, peer: PeerId) {
        self.apply([RouteChange::Add(net, peer)]);
    }

    /// Remove exactly `net` (one-change [`RouteTable::apply`]).
    pub fn remove(&self, net: IpNet) {
        self.apply([RouteChange::Remove(net)]);
    }

    /// Remove every route of `peer` (one-change [`RouteTable::apply`]).
    pub fn remove_peer(&self, peer: PeerId) {
        self.apply([RouteChange::RemovePeer(peer)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn net(s: &str) -> IpNet {
        s.parse()
            .unwrap_or_else(|e| panic!("bad test prefix {s}: {e}"))
    }
    fn routes(s: &Snapshot, p: u32) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = s.routes_of(PeerId(p)).collect();
        v.sort();
        v
    }
    fn v4(s: &str) -> Ipv4Addr {
        s.parse()
            .unwrap_or_else(|e| panic!("bad test addr {s}: {e}"))
    }
    fn v6(s: &str) -> Ipv6Addr {
        s.parse()
            .unwrap_or_else(|e| panic!("bad test addr {s}: {e}"))
    }

    #[test]
    fn normalises_iroutes_of_both_families() {
        let t = RouteTable::new();
        t.insert(net("192.168.5.1/24"), PeerId(1));
        t.insert(net("fd00:1:2:3:4::1/64"), PeerId(2));
        let s = t.snapshot();
        assert_eq!(s.lookup_v4(v4("192.168.5.200")), Some(PeerId(1)));
        assert_eq!(s.lookup_v4(v4("192.168.6.1")), None);
        assert_eq!(s.lookup_v6(v6("fd00:1:2:3:ffff::9")), Some(PeerId(2)));
        assert_eq!(routes(&s, 1), [net("192.168.5.0/24")]);
        assert_eq!(routes(&s, 2), [net("fd00:1:2:3::/64")]);
        assert_eq!(s.owner_of(net("192.168.5.0/24")), Some(PeerId(1)));
        assert_eq!(s.owner_of(net("192.168.5.77/24")), Some(PeerId(1)));
        // Removal is normalised too.
        t.remove(net("192.168.5.99/24"));
        t.remove(net("fd00:1:2:3::abcd/64"));
        assert!(t.snapshot().is_empty());
        assert_eq!(t.snapshot().peer_count(), 0);
    }

    #[test]
    fn longest_match_among_overlapping_iroutes() {
        let t = RouteTable::new();
        t.apply([
            RouteChange::Add(net("10.0.0.0/8"), PeerId(1)),
            RouteChange::Add(net("10.1.0.0/16"), PeerId(2)),
            RouteChange::Add(net("10.1.2.0/24"), PeerId(3)),
            RouteChange::Add(net("0.0.0.0/0"), PeerId(9)),
            RouteChange::Add(net("fd00::/16"), PeerId(4)),
            RouteChange::Add(net("fd00:1::/32"), PeerId(5)),
            RouteChange::Add(net("fd00:1:2::/48"), PeerId(6)),
        ]);
        let s = t.load();
        assert_eq!(s.lookup_v4(v4("10.1.2.3")), Some(PeerId(3)));
        assert_eq!(s.lookup_v4(v4("10.1.3.3")), Some(PeerId(2)));
        assert_eq!(s.lookup_v4(v4("10.2.3.3")), Some(PeerId(1)));
        assert_eq!(s.lookup_v4(v4("11.0.0.1")), Some(PeerId(9)));
        assert_eq!(s.lookup_v6(v6("fd00:1:2::1")), Some(PeerId(6)));
        assert_eq!(s.lookup_v6(v6("fd00:1:3::1")), Some(PeerId(5)));
        assert_eq!(s.lookup_v6(v6("fd00:2::1")), Some(PeerId(4)));
        assert_eq!(s.lookup_v6(v6("fd01::1")), None);
        assert_eq!(s.lookup(IpAddr::V6(v6("fd00:1:2::1"))), Some(PeerId(6)));
        assert_eq!(s.len(), 7);
    }

    #[test]
    fn host_route_beats_iroute() {
        let t = RouteTable::new();
        t.apply([
            RouteChange::Add(net("10.8.0.0/24"), PeerId(1)),
            RouteChange::Add(net("10.8.0.6/32"), PeerId(2)),
            RouteChange::Add(net("fd00:8::/64"), PeerId(1)),
            RouteChange::Add(net("fd00:8::1000/128"), PeerId(2)),
            RouteChange::Add(net("fd00:8::1000/127"), PeerId(3)),
        ]);
        let s = t.snapshot();
        assert_eq!(s.lookup_v4(v4("10.8.0.6")), Some(PeerId(2)));
        assert_eq!(s.lookup_v4(v4("10.8.0.7")), Some(PeerId(1)));
        assert_eq!(s.lookup_v6(v6("fd00:8::1000")), Some(PeerId(2)));
        assert_eq!(s.lookup_v6(v6("fd00:8::1001")), Some(PeerId(3)));
        assert_eq!(s.lookup_v6(v6("fd00:8::1002")), Some(PeerId(1)));
        assert_eq!(
            s.lookup_v6_u128(u128::from(v6("fd00:8::1000"))),
            Some(PeerId(2))
        );
        assert_eq!(s.lookup_v4_u32(u32::from(v4("10.8.0.6"))), Some(PeerId(2)));
    }

    #[test]
    fn remove_peer_removes_everything_of_it_and_nothing_else() {
        let t = RouteTable::new();
        t.apply([
            RouteChange::Add(net("10.8.0.2/32"), PeerId(1)),
            RouteChange::Add(net("fd00::1000/128"), PeerId(1)),
            RouteChange::Add(net("192.168.1.0/24"), PeerId(1)),
            RouteChange::Add(net("fd00:1::/48"), PeerId(1)),
            RouteChange::Add(net("10.8.0.3/32"), PeerId(2)),
            RouteChange::Add(net("192.168.0.0/16"), PeerId(2)),
        ]);
        assert_eq!(routes(&t.snapshot(), 1).len(), 4);
        t.remove_peer(PeerId(1));
        let s = t.snapshot();
        assert!(routes(&s, 1).is_empty());
        assert_eq!(s.lookup_v4(v4("10.8.0.2")), None);
        assert_eq!(s.lookup_v6(v6("fd00::1000")), None);
        assert_eq!(s.lookup_v6(v6("fd00:1::5")), None);
        // The shorter iroute of peer 2 now covers 192.168.1.x.
        assert_eq!(s.lookup_v4(v4("192.168.1.1")), Some(PeerId(2)));
        assert_eq!(s.lookup_v4(v4("10.8.0.3")), Some(PeerId(2)));
        assert_eq!(s.len(), 2);
        assert_eq!(s.peer_count(), 1);
        // Emptied iroute structures are dropped.
        assert_eq!(s.iroutes6.len(), 0);
        assert_eq!(s.iroutes4.len(), 1);
        assert_eq!(s.filter6.get(block_v6(u128::from(v6("fd00:1::5")))), 0);
    }

    #[test]
    fn add_moves_route_between_peers() {
        let t = RouteTable::new();
        t.insert(net("10.8.0.2/32"), PeerId(1));
        t.insert(net("10.8.0.2/32"), PeerId(2));
        let s = t.snapshot();
        assert_eq!(s.lookup_v4(v4("10.8.0.2")), Some(PeerId(2)));
        assert!(routes(&s, 1).is_empty());
        assert_eq!(routes(&s, 2), [net("10.8.0.2/32")]);
        assert_eq!(s.len(), 1);
        // Removing the old owner must not take the moved route with it.
        t.remove_peer(PeerId(1));
        assert_eq!(t.snapshot().lookup_v4(v4("10.8.0.2")), Some(PeerId(2)));
    }

    #[test]
    fn old_snapshots_and_caches_stay_consistent() {
        let t = RouteTable::new();
        let mut cache = t.cache();
        t.insert(net("10.8.0.2/32"), PeerId(1));
        let old = t.snapshot();
        assert_eq!(cache.load().lookup_v4(v4("10.8.0.2")), Some(PeerId(1)));
        t.remove_peer(PeerId(1));
        assert_eq!(old.lookup_v4(v4("10.8.0.2")), Some(PeerId(1)));
        assert_eq!(cache.load().lookup_v4(v4("10.8.0.2")), None);
    }

    /// Readers looking up continuously while the writer churns clients: entries that are never
    /// removed are always found, and every churned client (host v4 + host v6 + iroute, added and
    /// removed in one batch each) is seen either completely or not at all.
    #[test]
    fn concurrent_readers_see_consistent_snapshots() {
        const STABLE: u32 = 2000;
        const CHURN: u32 = 200;
        let t = Arc::new(RouteTable::new());
        let client = |i: u32| -> [IpNet; 3] {
            [
                IpNet::from(IpAddr::V4(Ipv4Addr::from(0x0a08_0000 + i))),
                IpNet::from(IpAddr::V6(Ipv6Addr::from(
                    0xfd00_u128 << 112 | u128::from(i),
                ))),
                IpNet::new(IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + (i << 8))), 24)
                    .unwrap_or_else(|e| panic!("{e}")),
            ]
        };
        t.apply((0..STABLE).flat_map(|i| client(i).map(|n| RouteChange::Add(n, PeerId(i)))));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let t = Arc::clone(&t);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut cache = t.cache();
                    let mut rounds = 0u64;
                    while !stop.load(Ordering::Relaxed) || rounds < 20 {
                        let s = if r == 0 {
                            Arc::clone(cache.load())
                        } else {
                            t.snapshot()
                        };
                        for i in (0..STABLE).step_by(7) {
                            for n in client(i) {
                                assert_eq!(s.lookup(n.addr()), Some(PeerId(i)), "lost {n}");
                            }
                        }
                        for i in STABLE..STABLE + CHURN {
                            let seen: Vec<bool> = client(i)
                                .iter()
                                .map(|n| s.lookup(n.addr()).is_some())
                                .collect();
                            assert!(
                                seen.iter().all(|x| *x) || seen.iter().all(|x| !*x),
                                "half-applied client {i}: {seen:?}"
                            );
                        }
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        for round in 0..300u32 {
            let i = STABLE + round % CHURN;
            t.apply(client(i).map(|n| RouteChange::Add(n, PeerId(i))));
            if round % 3 == 0 {
                t.apply([RouteChange::RemovePeer(PeerId(
                    STABLE + (round * 7) % CHURN,
                ))]);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            let rounds = r.join().unwrap_or_else(|_| panic!("reader panicked"));
            assert!(rounds >= 20);
        }
    }
}
