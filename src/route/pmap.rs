//! Persistent (structurally shared) hash map used by the route snapshots.
//!
//! Owns: the storage layout of every exact-match table in a [`super::Snapshot`] (host routes,
//! the iroute block index, the filter counts and the peer index).
//!
//! Layout: open addressing with linear probing inside *leaves*; a leaf is an immutable
//! `Arc<[Slot]>` once published. A small map is a single leaf; a large map is a fixed two-level
//! radix over the hash (64 × 64 leaves, like a two-level HAMT without bitmaps). Cloning a map
//! is one reference-count increment; modifying a clone copies only the path it touches (top
//! array, one mid array, one leaf), so an update to a 1M-entry map copies ~2 KiB of pointers
//! and one leaf of ~256 entries instead of the whole table.
//!
//! Invariants:
//! * every leaf has a power-of-two number of slots and at least one empty slot (load ≤ 1/2 after
//!   any insert), so a probe always terminates at an empty slot;
//! * a key sits in the leaf selected by its hash (high bits) at or after its home slot (low
//!   bits), with no empty slot between home and position (linear probing; removal uses
//!   backward-shift deletion, so there are no tombstones);
//! * `len` is the number of occupied slots over all leaves.
//!
//! Hashing: a folded 64×64→128-bit multiply (the foldhash/FxHash family), not a keyed
//! DoS-resistant hash. Keys are addresses and prefixes chosen by the operator or the address
//! pool, never by a remote peer; a remote peer only chooses the addresses we *look up*, and a
//! miss costs at most one probe run (load ≤ 1/2 keeps runs short).

use std::sync::Arc;

/// Fan-out of each radix level of a large map.
const FAN_BITS: u32 = 6;
const FAN: usize = 1 << FAN_BITS;
/// A single-leaf map is converted to the two-level form above this many entries …
const SMALL_MAX: usize = 64;
/// … and back below this many (hysteresis, so an add/remove at the boundary does not rebuild).
const SMALL_MIN: usize = 16;

const SEED0: u64 = 0x243f_6a88_85a3_08d3;
const SEED1: u64 = 0x1319_8a2e_0370_7344;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A key of a [`PMap`]: small, copyable, with a fast non-cryptographic hash (see module doc).
pub(crate) trait Key: Copy + Eq + Default {
    fn hash(self) -> u64;
}

impl Key for u32 {
    #[inline(always)]
    fn hash(self) -> u64 {
        fold_mul(u64::from(self) ^ SEED0, SEED1)
    }
}

impl Key for u64 {
    #[inline(always)]
    fn hash(self) -> u64 {
        fold_mul(self ^ SEED0, SEED1)
    }
}

/// An IPv6 address as two `u64`s: keeps slots 8-byte aligned (a `u128` would force 16-byte
/// alignment and 32-byte slots instead of 24).
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub(crate) struct K6 {
    hi: u64,
    lo: u64,
}

impl K6 {
    #[inline(always)]
    pub(crate) fn new(a: u128) -> Self {
        K6 {
            hi: (a >> 64) as u64,
            lo: a as u64,
        }
    }

    #[inline(always)]
    pub(crate) fn get(self) -> u128 {
        u128::from(self.hi) << 64 | u128::from(self.lo)
    }
}

impl Key for K6 {
    #[inline(always)]
    fn hash(self) -> u64 {
        fold_mul(self.lo ^ SEED0, self.hi ^ SEED1)
    }
}

#[derive(Clone, Debug)]
struct Slot<K, V> {
    key: K,
    /// `None` marks an empty slot (for `PeerId` this costs 4 bytes, which fit into the padding).
    val: Option<V>,
}

/// One leaf: its slots and how many of them are occupied.
#[derive(Clone, Debug)]
struct Leaf<K, V> {
    slots: Arc<[Slot<K, V>]>,
    count: usize,
}

type Mid<K, V> = [Leaf<K, V>; FAN];
type Top<K, V> = [Arc<Mid<K, V>>; FAN];

#[derive(Clone, Debug)]
enum Repr<K, V> {
    Small(Leaf<K, V>),
    Large(Arc<Top<K, V>>),
}

/// Persistent hash map from `K` to `V`; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct PMap<K, V> {
    repr: Repr<K, V>,
    len: usize,
}

#[inline(always)]
fn top_idx(h: u64) -> usize {
    (h >> (64 - FAN_BITS)) as usize
}

#[inline(always)]
fn mid_idx(h: u64) -> usize {
    ((h >> (64 - 2 * FAN_BITS)) as usize) & (FAN - 1)
}

impl<K: Key, V: Clone> Leaf<K, V> {
    fn empty() -> Self {
        Self::with_capacity(1)
    }

    fn with_capacity(cap: usize) -> Self {
        let slots: Vec<Slot<K, V>> = (0..cap)
            .map(|_| Slot {
                key: K::default(),
                val: None,
            })
            .collect();
        Leaf {
            slots: slots.into(),
            count: 0,
        }
    }

    /// Capacity for `n` entries: a power of two with load ≤ 1/2 (at least one slot).
    fn cap_for(n: usize) -> usize {
        (n * 2).next_power_of_two().max(1)
    }

    fn build(entries: impl IntoIterator<Item = (K, V)>, n: usize) -> Self {
        let mut leaf = Self::with_capacity(Self::cap_for(n));
        let slots = Arc::get_mut(&mut leaf.slots);
        if let Some(slots) = slots {
            for (k, v) in entries {
                if insert_in_place(slots, k, v).is_none() {
                    leaf.count += 1;
                }
            }
        }
        leaf
    }

    #[inline(always)]
    fn get(&self, h: u64, k: K) -> Option<&V> {
        let slots = &*self.slots;
        let mask = slots.len().wrapping_sub(1);
        let mut i = (h as usize) & mask;
        // Bounded by the slot count: the load invariant guarantees an empty slot earlier.
        for _ in 0..slots.len() {
            let s = slots.get(i)?;
            match &s.val {
                None => return None,
                Some(v) if s.key == k => return Some(v),
                Some(_) => i = (i + 1) & mask,
            }
        }
        None
    }

    fn iter(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.val.as_ref().map(|v| (s.key, v)))
    }

    /// Mutable slots, copying the leaf first if a published snapshot still shares it.
    fn slots_mut(&mut self) -> &mut [Slot<K, V>] {
        if Arc::get_mut(&mut self.slots).is_none() {
            self.slots = self.slots.iter().cloned().collect::<Vec<_>>().into();
        }
        // Unique now: either it was, or we just made a fresh copy.
        Arc::get_mut(&mut self.slots).unwrap_or(&mut [])
    }

    fn insert(&mut self, k: K, v: V) -> Option<V> {
        if (self.count + 1) * 2 > self.slots.len() {
            // Grow: rebuild at twice the size (also unshares it).
            let old = self.get(k.hash(), k).cloned();
            let n = self.count + usize::from(old.is_none());
            let entries: Vec<(K, V)> = self
                .iter()
                .filter(|(key, _)| *key != k)
                .map(|(key, val)| (key, val.clone()))
                .chain(std::iter::once((k, v)))
                .collect();
            *self = Self::build(entries, n);
            return old;
        }
        let old = insert_in_place(self.slots_mut(), k, v);
        if old.is_none() {
            self.count += 1;
        }
        old
    }

    fn remove(&mut self, k: K) -> Option<V> {
        // Do not copy a shared leaf for a key it does not hold.
        self.get(k.hash(), k)?;
        if self.slots.len() > 8 && (self.count - 1) * 8 < self.slots.len() {
            // Shrink: rebuild at the right size without `k`.
            let old = self.get(k.hash(), k).cloned();
            let entries: Vec<(K, V)> = self
                .iter()
                .filter(|(key, _)| *key != k)
                .map(|(key, val)| (key, val.clone()))
                .collect();
            let n = entries.len();
            *self = Self::build(entries, n);
            return old;
        }
        let old = remove_in_place(self.slots_mut(), k);
        if old.is_some() {
            self.count -= 1;
        }
        old
    }
}

/// Linear-probing insert into a slot array that has room; returns the replaced value.
fn insert_in_place<K: Key, V>(slots: &mut [Slot<K, V>], k: K, v: V) -> Option<V> {
    let mask = slots.len().wrapping_sub(1);
    let mut i = (k.hash() as usize) & mask;
    for _ in 0..slots.len() {
        let s = slots.get_mut(i)?;
        match &s.val {
            None => {
                s.key = k;
                s.val = Some(v);
                return None;
            }
            Some(_) if s.key == k => return s.val.replace(v),
            Some(_) => i = (i + 1) & mask,
        }
    }
    None
}

/// Linear-probing removal with backward-shift deletion (no tombstones).
fn remove_in_place<K: Key, V>(slots: &mut [Slot<K, V>], k: K) -> Option<V> {
    let len = slots.len();
    let mask = len.wrapping_sub(1);
    let mut i = (k.hash() as usize) & mask;
    let mut found = None;
    for _ in 0..len {
        let s = slots.get(i)?;
        match &s.val {
            None => return None,
            Some(_) if s.key == k => {
                found = Some(i);
                break;
            }
            Some(_) => i = (i + 1) & mask,
        }
    }
    let mut hole = found?;
    let old = slots.get_mut(hole)?.val.take();
    // Shift later members of the probe run back into the hole when their home slot allows it.
    let mut j = hole;
    for _ in 0..len {
        j = (j + 1) & mask;
        let (key, full) = match slots.get(j) {
            Some(s) => (s.key, s.val.is_some()),
            None => break,
        };
        if !full {
            break;
        }
        let home = (key.hash() as usize) & mask;
        // `key` may move to `hole` iff its home is not cyclically in (hole, j].
        let dist_home = j.wrapping_sub(home) & mask;
        let dist_hole = j.wrapping_sub(hole) & mask;
        if dist_home >= dist_hole {
            slots.swap(hole, j);
            hole = j;
        }
    }
    old
}

impl<K: Key, V: Clone> Default for PMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, V: Clone> PMap<K, V> {
    pub(crate) fn new() -> Self {
        PMap {
            repr: Repr::Small(Leaf::empty()),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub(crate) fn get(&self, k: K) -> Option<&V> {
        let h = k.hash();
        match &self.repr {
            Repr::Small(leaf) => leaf.get(h, k),
            Repr::Large(top) => top
                .get(top_idx(h))
                .and_then(|mid| mid.get(mid_idx(h)))
                .and_then(|leaf| leaf.get(h, k)),
        }
    }

    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (K, &V)> + '_> {
        match &self.repr {
            Repr::Small(leaf) => Box::new(leaf.iter()),
            Repr::Large(top) => Box::new(
                top.iter()
                    .flat_map(|mid| mid.iter())
                    .flat_map(|leaf| leaf.iter()),
            ),
        }
    }

    fn leaf_mut(&mut self, h: u64) -> Option<&mut Leaf<K, V>> {
        match &mut self.repr {
            Repr::Small(leaf) => Some(leaf),
            Repr::Large(top) => {
                // Path copying: clones the top (64 pointers) and one mid (64 leaf refs) only if
                // a published snapshot still shares them.
                let top = Arc::make_mut(top);
                let mid = Arc::make_mut(top.get_mut(top_idx(h))?);
                mid.get_mut(mid_idx(h))
            }
        }
    }

    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        let old = self.leaf_mut(k.hash())?.insert(k, v);
        if old.is_none() {
            self.len += 1;
            if self.len > SMALL_MAX && matches!(self.repr, Repr::Small(_)) {
                self.make_large();
            }
        }
        old
    }

    pub(crate) fn remove(&mut self, k: K) -> Option<V> {
        self.get(k)?;
        let old = self.leaf_mut(k.hash())?.remove(k);
        if old.is_some() {
            self.len -= 1;
            if self.len < SMALL_MIN && matches!(self.repr, Repr::Large(_)) {
                self.make_small();
            }
        }
        old
    }

    fn make_large(&mut self) {
        let mut buckets: Vec<Vec<(K, V)>> = (0..FAN * FAN).map(|_| Vec::new()).collect();
        for (k, v) in self.iter() {
            let h = k.hash();
            if let Some(b) = buckets.get_mut(top_idx(h) * FAN + mid_idx(h)) {
                b.push((k, v.clone()));
            }
        }
        let empty = Leaf::empty();
        let mut buckets = buckets.into_iter();
        let top: Top<K, V> = std::array::from_fn(|_| {
            Arc::new(std::array::from_fn(|_| match buckets.next() {
                Some(b) if !b.is_empty() => {
                    let n = b.len();
                    Leaf::build(b, n)
                }
                _ => empty.clone(),
            }))
        });
        self.repr = Repr::Large(Arc::new(top));
    }

    fn make_small(&mut self) {
        let entries: Vec<(K, V)> = self.iter().map(|(k, v)| (k, v.clone())).collect();
        let n = entries.len();
        self.repr = Repr::Small(Leaf::build(entries, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn insert_get_remove_across_small_large_transitions() {
        let mut m: PMap<u32, u32> = PMap::new();
        let mut reference = HashMap::new();
        for i in 0..5000u32 {
            let k = i.wrapping_mul(2_654_435_761);
            assert_eq!(m.insert(k, i), None);
            reference.insert(k, i);
        }
        assert_eq!(m.len(), 5000);
        assert!(matches!(m.repr, Repr::Large(_)));
        for (k, v) in &reference {
            assert_eq!(m.get(*k), Some(v));
        }
        assert_eq!(m.get(7), None);
        // Replace keeps the length.
        let k0 = 0u32;
        assert_eq!(m.insert(k0, 99), Some(0));
        assert_eq!(m.len(), 5000);
        assert_eq!(m.get(k0), Some(&99));
        reference.insert(k0, 99);
        let keys: Vec<u32> = reference.keys().copied().collect();
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(m.remove(*k), reference.remove(k));
            assert_eq!(m.remove(*k), None);
            if n % 97 == 0 {
                for (k, v) in &reference {
                    assert_eq!(m.get(*k), Some(v));
                }
            }
        }
        assert_eq!(m.len(), 0);
        assert!(matches!(m.repr, Repr::Small(_)));
        assert_eq!(m.iter().count(), 0);
    }

    #[test]
    fn clones_are_isolated_from_later_updates() {
        let mut a: PMap<K6, u32> = PMap::new();
        for i in 0..3000u128 {
            a.insert(K6::new(i << 64 | 1), i as u32);
        }
        let snapshot = a.clone();
        a.remove(K6::new(5 << 64 | 1));
        a.insert(K6::new(u128::MAX), 1);
        a.insert(K6::new(6 << 64 | 1), 1234);
        assert_eq!(snapshot.get(K6::new(5 << 64 | 1)), Some(&5));
        assert_eq!(snapshot.get(K6::new(u128::MAX)), None);
        assert_eq!(snapshot.get(K6::new(6 << 64 | 1)), Some(&6));
        assert_eq!(snapshot.len(), 3000);
        assert_eq!(a.get(K6::new(5 << 64 | 1)), None);
        assert_eq!(a.get(K6::new(6 << 64 | 1)), Some(&1234));
        assert_eq!(a.len(), 3000);
        assert_eq!(a.iter().count(), 3000);
    }

    #[test]
    fn backward_shift_keeps_colliding_keys_reachable() {
        // Many keys in one small leaf, removed in insertion order: exercises run shifting.
        let mut m: PMap<u32, u32> = PMap::new();
        for i in 0..200u32 {
            m.insert(i, i);
        }
        for i in 0..200u32 {
            assert_eq!(m.remove(i), Some(i));
            for j in i + 1..200 {
                assert_eq!(m.get(j), Some(&j), "lost {j} after removing {i}");
            }
        }
    }
}
