//! Iroute longest-prefix match: small per-group run arrays in a persistent hash map.
//!
//! Owns: every iroute (prefix shorter than a host route) of one address family.
//!
//! Layout: iroutes at least as long as a *block* (IPv4 /16, IPv6 /32; the filter's unit) are
//! "long"; the rest are "short". Long routes are grouped by their first `glen` bits, where
//! `glen` is at most the shortest long route's length (so every long route lies in exactly
//! one group, and with the usual uniform iroute lengths — say all /48../64 — groups hold one
//! or a few routes). Per group the index keeps
//! * `members`, an ordered map `(prefix, len) → peer`, the source of truth for updates, and
//! * `groups`, what lookups read: the route itself, inline, if the group has one (the common
//!   case), else the routes flattened into disjoint address *runs* (nested prefixes resolved
//!   longest-first, equal neighbours merged), an `Arc<[Run]>`.
//!
//! The short routes (rare: an iroute wider than a /16 or a /32) form one extra run array.
//!
//! Lookup: one hash probe for the group of `a & mask(glen)`, one binary search in its (short)
//! run array; then, if that found nothing, the short routes' run array. This is exactly
//! longest-prefix match: a long route covering the address is in that group, and is longer
//! than every short route. It replaces OpenVPN's one-probe-per-length-in-use.
//!
//! Updates touch only the changed route's group (plus the hash-map paths): the member map is
//! copied if a published snapshot shares it, and its runs are rebuilt by
//! [`IrouteIndex::finish`] once per batch. A route shorter than `glen` (but long) regroups
//! every long route once (O(long routes); only when a new, shorter length comes into use);
//! `glen` resets when the last long route goes.
//!
//! Invariants (of a published index, i.e. after `finish`):
//! * every long route has length ≥ `glen` and sits in `members[p & gmask]`; no member map is
//!   empty; `groups` has exactly the keys of `members`; `dirty` is empty;
//! * a group is `One` iff its member map has one route; every run array starts at 0, is
//!   strictly ascending, and run `i` (up to run `i+1`) is owned by the longest member route
//!   covering it (or nobody).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::pmap::{PMap, K6};
use super::PeerId;

/// Mask of the top `len` bits of a `width`-bit address held in the low bits of a `u128`.
#[inline(always)]
fn mask(width: u8, len: u8) -> u128 {
    let full = u128::MAX >> (128 - u32::from(width));
    let host = full.checked_shr(u32::from(len)).unwrap_or(0);
    full & !host
}

/// Routes of one group (or the short routes): `(prefix, len) → owner`, ordered.
type Members = BTreeMap<(u128, u8), PeerId>;

/// From `start` on (up to the next run's start), addresses belong to `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    start: u128,
    owner: Option<PeerId>,
}

/// Longest-prefix match in a run array (first run starts at 0).
#[inline(always)]
fn runs_lookup(runs: &[Run], a: u128) -> Option<PeerId> {
    // Branch-free binary search for the last run starting at or before `a`: the trip count
    // depends only on the length and the comparison compiles to a conditional move, so
    // random addresses cost no mispredictions (a branchy search over 3 runs cost ~5 ns).
    let mut base = 0usize;
    let mut n = runs.len();
    while n > 1 {
        let half = n / 2;
        let mid = base + half;
        if runs.get(mid).is_some_and(|r| r.start <= a) {
            base = mid;
        }
        n -= half;
    }
    runs.get(base).and_then(|r| r.owner)
}

/// The lookup side of one group.
#[derive(Clone, Debug)]
pub(crate) enum Group {
    /// Exactly one route, `(prefix, len, owner)`, inline: the common case, no pointer to chase.
    One(K6, u8, PeerId),
    /// Several routes, flattened into runs.
    Many(Arc<[Run]>),
}

/// Flatten `routes` (`width`: 32 or 128) into disjoint runs: nested prefixes resolved
/// longest-first, equal neighbours merged, the first run starting at 0.
fn build_runs(routes: &Members, width: u8) -> Arc<[Run]> {
    let mut out: Vec<Run> = vec![Run {
        start: 0,
        owner: None,
    }];
    // Enclosing routes still open at the current position: (last address, owner).
    let mut open: Vec<(u128, PeerId)> = Vec::new();
    // Sorted by (prefix, len): an enclosing prefix comes before everything it contains.
    for (&(p, len), &o) in routes {
        let last = p | (!mask(width, len) & mask(width, width));
        close_before(&mut open, &mut out, p);
        emit(&mut out, p, Some(o));
        open.push((last, o));
    }
    // Whatever is still open after this ends at the top of the address space.
    close_before(&mut open, &mut out, u128::MAX);
    out.into()
}

/// Append "from `start` on, `owner`": a later emission at the same start replaces the earlier
/// one (it is more specific); equal neighbours are merged.
fn emit(out: &mut Vec<Run>, start: u128, owner: Option<PeerId>) {
    if let Some(last) = out.last_mut() {
        if last.start == start {
            last.owner = owner;
            let n = out.len();
            if n >= 2 && out.get(n - 2).map(|x| x.owner) == Some(owner) {
                out.pop();
            }
            return;
        }
        if last.owner == owner {
            return;
        }
    }
    out.push(Run { start, owner });
}

/// Close every open route that ends before `p`, handing the rest of its span back to its
/// enclosing route (or nobody).
fn close_before(open: &mut Vec<(u128, PeerId)>, out: &mut Vec<Run>, p: u128) {
    while let Some(&(last, _)) = open.last() {
        if last >= p {
            break;
        }
        open.pop();
        let parent = open.last().map(|x| x.1);
        // `last < p ≤ u128::MAX`, so `last + 1` does not overflow.
        emit(out, last + 1, parent);
    }
}

/// All iroutes of one family; see the module doc.
#[derive(Clone, Debug)]
pub(crate) struct IrouteIndex {
    /// Address width in bits (32 or 128).
    width: u8,
    /// Block prefix length (16 or 32): routes shorter than this are "short".
    block_len: u8,
    /// Group length: every long route is at least this long (`width` when there is none).
    glen: u8,
    /// `mask(width, glen)`.
    gmask: u128,
    /// Group prefix → runs of the group's routes (the lookup side).
    groups: PMap<K6, Group>,
    /// Group prefix → the group's routes (the update side).
    members: PMap<K6, Arc<Members>>,
    /// Number of long routes.
    long: usize,
    short_members: Option<Arc<Members>>,
    short: Option<Arc<[Run]>>,
    /// Group prefixes edited since the last `finish`.
    dirty: Vec<u128>,
    short_dirty: bool,
}

impl IrouteIndex {
    pub(crate) fn new(width: u8, block_len: u8) -> Self {
        IrouteIndex {
            width,
            block_len,
            glen: width,
            gmask: mask(width, width),
            groups: PMap::new(),
            members: PMap::new(),
            long: 0,
            short_members: None,
            short: None,
            dirty: Vec::new(),
            short_dirty: false,
        }
    }

    /// Longest-prefix match among the iroutes covering `a`, looking at the long routes only
    /// if `in_block` (the caller's filter says the block may hold some).
    #[inline(always)]
    pub(crate) fn lookup(&self, a: u128, in_block: bool) -> Option<PeerId> {
        if in_block {
            let hit = match self.groups.get(K6::new(a & self.gmask)) {
                Some(Group::One(p, len, o)) => {
                    (a & mask(self.width, *len) == p.get()).then_some(*o)
                }
                Some(Group::Many(runs)) => runs_lookup(runs, a),
                None => None,
            };
            if hit.is_some() {
                return hit;
            }
        }
        self.short.as_deref().and_then(|r| runs_lookup(r, a))
    }

    /// Whether any iroute is shorter than a block (then every address may match).
    #[inline(always)]
    pub(crate) fn has_short(&self) -> bool {
        self.short.is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.long + self.short_members.as_ref().map_or(0, |m| m.len())
    }

    /// Owner of exactly the normalised prefix `(p, len)`.
    pub(crate) fn get(&self, p: u128, len: u8) -> Option<PeerId> {
        let m = if len < self.block_len {
            self.short_members.as_deref()
        } else if len < self.glen {
            None
        } else {
            self.members.get(K6::new(p & self.gmask)).map(|m| &**m)
        };
        m.and_then(|m| m.get(&(p, len)).copied())
    }

    /// Set (`Some`) or clear (`None`) the owner of the normalised prefix `(p, len)`; returns
    /// the previous owner. Runs are stale until [`IrouteIndex::finish`].
    pub(crate) fn put(&mut self, p: u128, len: u8, peer: Option<PeerId>) -> Option<PeerId> {
        if peer.is_none() && self.get(p, len).is_none() {
            return None;
        }
        if len < self.block_len {
            let m = Arc::make_mut(self.short_members.get_or_insert_with(Default::default));
            let old = edit(m, p, len, peer);
            if m.is_empty() {
                self.short_members = None;
            }
            self.short_dirty = true;
            return old;
        }
        if len < self.glen {
            self.regroup(len);
        }
        let g = K6::new(p & self.gmask);
        let mut m = self.members.get(g).cloned().unwrap_or_default();
        // Drop the map's copy of the pointer first so `make_mut` copies the group only if a
        // published snapshot shares it.
        self.members.remove(g);
        let ms = Arc::make_mut(&mut m);
        let old = edit(ms, p, len, peer);
        if !ms.is_empty() {
            self.members.insert(g, m);
        }
        self.dirty.push(p & self.gmask);
        match (old, peer) {
            (None, Some(_)) => self.long += 1,
            (Some(_), None) => self.long -= 1,
            _ => {}
        }
        if self.long == 0 {
            // Nothing left to group: the next route may choose any group length. `finish`
            // still drops the emptied groups (their prefixes are in `dirty`).
            self.glen = self.width;
            self.gmask = mask(self.width, self.width);
        }
        old
    }

    /// Regroup every long route by its first `glen` bits (needed when a route shorter than
    /// the current group length arrives: O(long routes), rare — routes of a new, shorter
    /// length in use).
    fn regroup(&mut self, glen: u8) {
        let mut by_group: HashMap<u128, Members> = HashMap::new();
        let gmask = mask(self.width, glen);
        for (_, m) in self.members.iter() {
            for (&(p, l), &o) in m.iter() {
                by_group.entry(p & gmask).or_default().insert((p, l), o);
            }
        }
        self.glen = glen;
        self.gmask = gmask;
        self.groups = PMap::new();
        self.members = PMap::new();
        self.dirty.clear();
        for (g, m) in by_group {
            self.members.insert(K6::new(g), Arc::new(m));
            self.dirty.push(g);
        }
    }

    /// Rebuild the runs of every group edited since the last call.
    pub(crate) fn finish(&mut self) {
        let width = self.width;
        if std::mem::take(&mut self.short_dirty) {
            self.short = self.short_members.as_deref().map(|m| build_runs(m, width));
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for g in dirty {
            let g = K6::new(g);
            match self.members.get(g) {
                Some(m) => {
                    let group = match m.iter().next() {
                        Some((&(p, len), &o)) if m.len() == 1 => Group::One(K6::new(p), len, o),
                        _ => Group::Many(build_runs(m, width)),
                    };
                    self.groups.insert(g, group);
                }
                None => {
                    self.groups.remove(g);
                }
            }
        }
    }
}

fn edit(m: &mut Members, p: u128, len: u8, peer: Option<PeerId>) -> Option<PeerId> {
    match peer {
        Some(o) => m.insert((p, len), o),
        None => m.remove(&(p, len)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Seg(Arc<[Run]>);
    impl Seg {
        fn lookup(&self, a: u128) -> Option<PeerId> {
            runs_lookup(&self.0, a)
        }
    }

    fn seg(width: u8, routes: &[(u128, u8, u32)]) -> Seg {
        let mut m = Members::new();
        for &(p, l, o) in routes {
            m.insert((p & mask(width, l), l), PeerId(o));
        }
        Seg(build_runs(&m, width))
    }

    #[test]
    fn masks() {
        assert_eq!(mask(32, 0), 0);
        assert_eq!(mask(32, 24), 0xffff_ff00);
        assert_eq!(mask(32, 32), 0xffff_ffff);
        assert_eq!(mask(128, 64), u128::MAX << 64);
        assert_eq!(mask(128, 128), u128::MAX);
    }

    #[test]
    fn nested_prefixes_become_disjoint_intervals() {
        // 10.0.0.0/8 -> 1, 10.1.0.0/16 -> 2, 10.1.2.0/24 -> 3, 10.1.3.0/24 -> 2 (merged).
        let s = seg(
            32,
            &[
                (0x0a00_0000, 8, 1),
                (0x0a01_0000, 16, 2),
                (0x0a01_0200, 24, 3),
                (0x0a01_0300, 24, 2),
            ],
        );
        assert_eq!(
            s.0.iter().map(|r| r.start).collect::<Vec<_>>(),
            &[
                0,
                0x0a00_0000,
                0x0a01_0000,
                0x0a01_0200,
                0x0a01_0300,
                0x0a02_0000,
                0x0b00_0000
            ]
        );
        assert_eq!(s.lookup(0x09ff_ffff), None);
        assert_eq!(s.lookup(0x0a00_0000), Some(PeerId(1)));
        assert_eq!(s.lookup(0x0a01_0001), Some(PeerId(2)));
        assert_eq!(s.lookup(0x0a01_02ff), Some(PeerId(3)));
        assert_eq!(s.lookup(0x0a01_0300), Some(PeerId(2)));
        assert_eq!(s.lookup(0x0a01_ffff), Some(PeerId(2)));
        assert_eq!(s.lookup(0x0a02_0000), Some(PeerId(1)));
        assert_eq!(s.lookup(0x0aff_ffff), Some(PeerId(1)));
        assert_eq!(s.lookup(0x0b00_0000), None);
    }

    #[test]
    fn routes_reaching_the_top_of_the_space() {
        let s = seg(128, &[(0, 0, 7), (u128::MAX, 127, 8)]);
        assert_eq!(s.lookup(0), Some(PeerId(7)));
        assert_eq!(s.lookup(u128::MAX - 2), Some(PeerId(7)));
        assert_eq!(s.lookup(u128::MAX - 1), Some(PeerId(8)));
        assert_eq!(s.lookup(u128::MAX), Some(PeerId(8)));
        let s = seg(32, &[(0xffff_ff00, 24, 1)]);
        assert_eq!(s.lookup(0xffff_ffff), Some(PeerId(1)));
        assert_eq!(s.lookup(0xffff_feff), None);
    }

    #[test]
    fn index_edits_touch_one_block_and_keep_old_clones() {
        let mut ix = IrouteIndex::new(128, 32);
        let a = 0xfd00_0001_u128 << 96;
        assert_eq!(ix.put(a, 48, Some(PeerId(1))), None);
        assert_eq!(ix.put(a | 1 << 64, 64, Some(PeerId(2))), None);
        assert_eq!(ix.put(0xfd << 120, 8, Some(PeerId(3))), None);
        ix.finish();
        let old = ix.clone();
        assert_eq!(ix.put(a, 48, None), Some(PeerId(1)));
        ix.finish();
        assert_eq!(ix.len(), 2);
        assert_eq!(old.len(), 3);
        assert_eq!(old.lookup(a | 5, true), Some(PeerId(1)));
        assert_eq!(ix.lookup(a | 5, true), Some(PeerId(3)));
        assert_eq!(ix.lookup(a | 1 << 64 | 5, true), Some(PeerId(2)));
        assert_eq!(ix.lookup(0xfe << 120, true), None);
        assert_eq!(ix.put(0xfd << 120, 8, None), Some(PeerId(3)));
        assert_eq!(ix.put(a | 1 << 64, 64, None), Some(PeerId(2)));
        ix.finish();
        assert!(!ix.has_short());
        assert_eq!(ix.groups.len(), 0);
        assert_eq!(ix.members.len(), 0);
        assert_eq!(ix.len(), 0);
    }

    #[test]
    fn shorter_long_route_regroups_and_glen_resets() {
        let mut ix = IrouteIndex::new(32, 16);
        ix.put(0x0a01_0200, 24, Some(PeerId(1)));
        ix.put(0x0a01_0280, 25, Some(PeerId(2)));
        ix.finish();
        assert_eq!(ix.glen, 24);
        let old = ix.clone();
        ix.put(0x0a01_0000, 16, Some(PeerId(3)));
        ix.finish();
        assert_eq!(ix.glen, 16);
        assert_eq!(ix.groups.len(), 1);
        assert_eq!(ix.lookup(0x0a01_0201, true), Some(PeerId(1)));
        assert_eq!(ix.lookup(0x0a01_0281, true), Some(PeerId(2)));
        assert_eq!(ix.lookup(0x0a01_0301, true), Some(PeerId(3)));
        assert_eq!(old.lookup(0x0a01_0301, true), None);
        assert_eq!(ix.get(0x0a01_0280, 25), Some(PeerId(2)));
        for (p, l) in [(0x0a01_0200, 24), (0x0a01_0280, 25), (0x0a01_0000, 16)] {
            assert!(ix.put(p, l, None).is_some());
        }
        ix.finish();
        assert_eq!(ix.glen, 32);
        assert_eq!(ix.groups.len(), 0);
        assert_eq!(ix.len(), 0);
        assert_eq!(old.lookup(0x0a01_0201, true), Some(PeerId(1)));
    }
}
