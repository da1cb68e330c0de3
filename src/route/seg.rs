//! Iroute longest-prefix match: per-block interval arrays, structurally shared between
//! snapshots.
//!
//! Owns: every iroute (prefix shorter than a host route) of one address family.
//!
//! Layout: the address space is cut into fixed *blocks* (IPv4 /16, IPv6 /32). The iroutes at
//! least as long as a block live in that block's [`Segment`]; a persistent map ([`PMap`]) goes
//! from block number (the address's top bits, exact) to its segment. The few iroutes shorter
//! than a block live in one extra segment, `short`. A segment keeps its routes twice:
//! * `routes`, an ordered map `(prefix, len) → peer` — the source of truth for updates;
//! * `starts`/`owners`, the routes flattened into disjoint address intervals (nested prefixes
//!   resolved longest-first, adjacent equal owners merged), so a lookup is one binary search
//!   over a short sorted array instead of one hash probe per prefix length in use.
//!
//! Lookup: block segment first, then `short`. This is exactly longest-prefix match because any
//! route in a block segment that covers the address is longer than every short route.
//!
//! Updates touch only the segment of the changed route's block (plus the `blocks` path): the
//! segment is copied if a published snapshot shares it, edited in `routes`, and its intervals
//! are rebuilt by [`IrouteIndex::finish`] once per batch (O(routes in that block)).
//!
//! Invariants (of a published index, i.e. after `finish`):
//! * no segment is empty; `dirty` is empty;
//! * every segment's `starts` begins with 0 and is strictly ascending, `owners` has the same
//!   length, and interval `i` = `[starts[i], starts[i+1])` is owned by the longest route of
//!   `routes` covering it (or nobody);
//! * `count` is the total number of routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::pmap::PMap;
use super::PeerId;

/// Mask of the top `len` bits of a `width`-bit address held in the low bits of a `u128`.
#[inline(always)]
fn mask(width: u8, len: u8) -> u128 {
    let full = u128::MAX >> (128 - u32::from(width));
    let host = full.checked_shr(u32::from(len)).unwrap_or(0);
    full & !host
}

/// The iroutes of one block (or the short iroutes), see the module doc.
#[derive(Clone, Debug, Default)]
pub(crate) struct Segment {
    routes: BTreeMap<(u128, u8), PeerId>,
    starts: Box<[u128]>,
    owners: Box<[Option<PeerId>]>,
}

impl Segment {
    /// Longest-prefix match among this segment's routes.
    #[inline(always)]
    pub(crate) fn lookup(&self, a: u128) -> Option<PeerId> {
        // `starts[0] == 0`, so at least one start is ≤ a.
        let i = self.starts.partition_point(|&s| s <= a);
        self.owners.get(i.wrapping_sub(1)).copied().flatten()
    }

    /// Recompute the intervals from `routes` (`width`: 32 or 128).
    fn rebuild(&mut self, width: u8) {
        let mut out: Runs = vec![(0, None)];
        // Enclosing routes still open at the current position: (last address, owner).
        let mut open: Vec<(u128, PeerId)> = Vec::new();
        // Sorted by (prefix, len): an enclosing prefix comes before everything it contains.
        for (&(p, len), &o) in &self.routes {
            let last = p | (!mask(width, len) & mask(width, width));
            close_before(&mut open, &mut out, p);
            emit(&mut out, p, Some(o));
            open.push((last, o));
        }
        // Whatever is still open after this ends at the top of the address space.
        close_before(&mut open, &mut out, u128::MAX);
        let (starts, owners): (Vec<u128>, Vec<Option<PeerId>>) = out.into_iter().unzip();
        self.starts = starts.into();
        self.owners = owners.into();
    }
}

/// Interval list under construction: (first address, owner), ascending.
type Runs = Vec<(u128, Option<PeerId>)>;

/// Append "from `start` on, `owner`": a later emission at the same start replaces the earlier
/// one (it is more specific); equal neighbours are merged.
fn emit(out: &mut Runs, start: u128, owner: Option<PeerId>) {
    if let Some(last) = out.last_mut() {
        if last.0 == start {
            last.1 = owner;
            let n = out.len();
            if n >= 2 && out.get(n - 2).map(|x| x.1) == Some(owner) {
                out.pop();
            }
            return;
        }
        if last.1 == owner {
            return;
        }
    }
    out.push((start, owner));
}

/// Close every open route that ends before `p`, handing the rest of its span back to its
/// enclosing route (or nobody).
fn close_before(open: &mut Vec<(u128, PeerId)>, out: &mut Runs, p: u128) {
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
    /// Block prefix length (16 or 32).
    block_len: u8,
    blocks: PMap<u32, Arc<Segment>>,
    short: Option<Arc<Segment>>,
    count: usize,
    /// Blocks edited since the last `finish` (`u32::MAX` never is a block: blocks are ≤ 32
    /// bits, but `short_dirty` covers the short segment separately).
    dirty: Vec<u32>,
    short_dirty: bool,
}

impl IrouteIndex {
    pub(crate) fn new(width: u8, block_len: u8) -> Self {
        IrouteIndex {
            width,
            block_len,
            blocks: PMap::new(),
            short: None,
            count: 0,
            dirty: Vec::new(),
            short_dirty: false,
        }
    }

    /// Block number of an address (its top `block_len` bits).
    #[inline(always)]
    pub(crate) fn block_of(&self, a: u128) -> u32 {
        (a >> (self.width - self.block_len)) as u32
    }

    /// Longest-prefix match among the iroutes covering `a`, looking at the block segment only
    /// if `in_block` (the caller's filter says the block may hold iroutes).
    #[inline(always)]
    pub(crate) fn lookup(&self, a: u128, in_block: bool) -> Option<PeerId> {
        if in_block {
            if let Some(seg) = self.blocks.get(self.block_of(a)) {
                if let Some(p) = seg.lookup(a) {
                    return Some(p);
                }
            }
        }
        self.short.as_ref().and_then(|s| s.lookup(a))
    }

    /// Whether any iroute is shorter than a block (then every address may match).
    #[inline(always)]
    pub(crate) fn has_short(&self) -> bool {
        self.short.is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Owner of exactly the normalised prefix `(p, len)`.
    pub(crate) fn get(&self, p: u128, len: u8) -> Option<PeerId> {
        let seg = if len < self.block_len {
            self.short.as_deref()
        } else {
            self.blocks.get(self.block_of(p)).map(|s| &**s)
        };
        seg.and_then(|s| s.routes.get(&(p, len)).copied())
    }

    /// Set (`Some`) or clear (`None`) the owner of the normalised prefix `(p, len)`; returns
    /// the previous owner. Intervals are stale until [`IrouteIndex::finish`].
    pub(crate) fn put(&mut self, p: u128, len: u8, peer: Option<PeerId>) -> Option<PeerId> {
        if peer.is_none() && self.get(p, len).is_none() {
            return None;
        }
        let old = if len < self.block_len {
            let seg = Arc::make_mut(self.short.get_or_insert_with(Default::default));
            let old = edit(seg, p, len, peer);
            if seg.routes.is_empty() {
                self.short = None;
            }
            self.short_dirty = true;
            old
        } else {
            let b = self.block_of(p);
            let mut seg = self.blocks.get(b).cloned().unwrap_or_default();
            // Drop our copy of the pointer from the map first so `make_mut` copies the segment
            // only if a published snapshot shares it.
            self.blocks.remove(b);
            let s = Arc::make_mut(&mut seg);
            let old = edit(s, p, len, peer);
            if !s.routes.is_empty() {
                self.blocks.insert(b, seg);
                self.dirty.push(b);
            }
            old
        };
        match (old, peer) {
            (None, Some(_)) => self.count += 1,
            (Some(_), None) => self.count -= 1,
            _ => {}
        }
        old
    }

    /// Rebuild the intervals of every segment edited since the last call.
    pub(crate) fn finish(&mut self) {
        let width = self.width;
        if std::mem::take(&mut self.short_dirty) {
            if let Some(s) = self.short.as_mut() {
                Arc::make_mut(s).rebuild(width);
            }
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for b in dirty {
            if let Some(mut seg) = self.blocks.get(b).cloned() {
                self.blocks.remove(b);
                Arc::make_mut(&mut seg).rebuild(width);
                self.blocks.insert(b, seg);
            }
        }
    }
}

fn edit(seg: &mut Segment, p: u128, len: u8, peer: Option<PeerId>) -> Option<PeerId> {
    match peer {
        Some(o) => seg.routes.insert((p, len), o),
        None => seg.routes.remove(&(p, len)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(width: u8, routes: &[(u128, u8, u32)]) -> Segment {
        let mut s = Segment::default();
        for &(p, l, o) in routes {
            s.routes.insert((p & mask(width, l), l), PeerId(o));
        }
        s.rebuild(width);
        s
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
            &*s.starts,
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
        assert_eq!(ix.blocks.len(), 0);
        assert_eq!(ix.len(), 0);
    }
}
