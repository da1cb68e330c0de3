//! Block occupancy filter: the first thing every lookup consults, so that an address no route
//! can cover (typically an Internet destination of client traffic, the common case for the
//! inner-destination lookup) costs one bit test, and an address in a block that holds only
//! iroutes (or only host routes) skips the other structure's probe.
//!
//! Owns: two bits per address *block* (IPv4: the top 16 bits, exact; IPv6: the top 32 bits
//! hashed to 16 bits): [`HOST`] is set iff some host route lies in a block with that bit index,
//! [`IROUTE`] iff some iroute at least as long as a block does; plus the per-bit counts that
//! make removal exact. Iroutes shorter than a block are not represented here (the caller
//! checks them whenever it has any, see `seg::IrouteIndex::has_short`).
//!
//! Invariant: a bit is clear only if no route of its kind lies in any block mapping to it.
//! False positives (hash collisions) only cost the probe the filter could not save.
//!
//! Layout: both bits of a block sit next to each other in one `u64` word (32 blocks per
//! word), so a lookup loads one word of one flat 16 KiB array (no pointer chasing: a chunked
//! array costs a dependent load, measurable on the ~2 ns miss path). Opening or closing a
//! block copies the 16 KiB if a published snapshot shares it (~1 µs, per update at most).

use std::sync::Arc;

use super::pmap::PMap;

/// Bit of a block that may hold host routes.
pub(crate) const HOST: u32 = 1;
/// Bit of a block that may hold iroutes (at least as long as a block).
pub(crate) const IROUTE: u32 = 2;

/// 2^16 blocks × 2 bits = 2048 words.
const WORDS: usize = 2048;

#[derive(Clone, Debug)]
pub(crate) struct BlockFilter {
    bits: Arc<[u64; WORDS]>,
    /// Routes per (block bit index << 2 | kind); only non-zero counts are stored.
    counts: PMap<u32, u32>,
}

/// Block index of an IPv4 address: its /16.
#[inline(always)]
pub(crate) fn block_v4(a: u32) -> u32 {
    a >> 16
}

/// Block index of an IPv6 address: its /32, hashed (multiplicative) to 16 bits.
#[inline(always)]
pub(crate) fn block_v6(a: u128) -> u32 {
    ((a >> 96) as u32).wrapping_mul(0x9e37_79b1) >> 16
}

impl BlockFilter {
    pub(crate) fn new() -> Self {
        BlockFilter {
            bits: Arc::new([0; WORDS]),
            counts: PMap::new(),
        }
    }

    /// The [`HOST`] / [`IROUTE`] bits of block `b` (< 2^16).
    #[inline(always)]
    pub(crate) fn get(&self, b: u32) -> u32 {
        let b = b as usize & 0xffff;
        let word = self.bits.get(b >> 5).copied().unwrap_or(u64::MAX);
        (word >> ((b & 31) * 2)) as u32 & 3
    }

    /// Account for a new route of `kind` in block `b`.
    pub(crate) fn add(&mut self, kind: u32, b: u32) {
        let key = (b & 0xffff) << 2 | kind;
        let n = self.counts.get(key).copied().unwrap_or(0);
        self.counts.insert(key, n + 1);
        if n == 0 {
            self.set(kind, b, true);
        }
    }

    /// Account for the removal of a route of `kind` in block `b`.
    pub(crate) fn remove(&mut self, kind: u32, b: u32) {
        let key = (b & 0xffff) << 2 | kind;
        match self.counts.get(key).copied() {
            Some(n) if n > 1 => {
                self.counts.insert(key, n - 1);
            }
            Some(_) => {
                self.counts.remove(key);
                self.set(kind, b, false);
            }
            None => {}
        }
    }

    fn set(&mut self, kind: u32, b: u32, on: bool) {
        // Copies the bitmap if a published snapshot shares it; only changes that open or
        // close a block get here.
        let b = b as usize & 0xffff;
        if let Some(w) = Arc::make_mut(&mut self.bits).get_mut(b >> 5) {
            let bit = u64::from(kind) << ((b & 31) * 2);
            if on {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_make_removal_exact_per_kind() {
        let mut f = BlockFilter::new();
        let b = block_v4(0xc0a8_0100);
        assert_eq!(f.get(b), 0);
        f.add(IROUTE, block_v4(0xc0a8_0100));
        f.add(IROUTE, block_v4(0xc0a8_0200));
        f.add(HOST, block_v4(0xc0a8_0005));
        assert_eq!(f.get(block_v4(0xc0a8_ffff)), HOST | IROUTE);
        assert_eq!(f.get(block_v4(0xc0a9_0000)), 0);
        assert_eq!(f.get(block_v4(0xc0a7_ffff)), 0);
        f.remove(IROUTE, block_v4(0xc0a8_0100));
        assert_eq!(f.get(b), HOST | IROUTE, "second iroute still there");
        f.remove(IROUTE, block_v4(0xc0a8_0200));
        assert_eq!(f.get(b), HOST);
        f.remove(HOST, b);
        assert_eq!(f.get(b), 0);
        // Removing what is not there changes nothing.
        f.remove(HOST, b);
        assert_eq!(f.get(b), 0);
    }

    #[test]
    fn every_block_has_its_own_bits() {
        let mut f = BlockFilter::new();
        for b in [0u32, 1, 31, 32, 4095, 4096, 0xffff] {
            f.add(HOST, b);
            assert_eq!(f.get(b), HOST);
            let old = f.clone();
            f.add(IROUTE, b);
            assert_eq!(f.get(b), HOST | IROUTE);
            assert_eq!(old.get(b), HOST, "clone unaffected");
        }
        assert_eq!(f.get(2), 0);
        assert_eq!(f.get(4097), 0);
        assert_eq!(f.get(0xfffe), 0);
    }

    #[test]
    fn v6_blocks_hash_the_top_32_bits() {
        let a = 0xfd00_0001_u128 << 96;
        assert_eq!(block_v6(a), block_v6(a | 0xffff_ffff));
        assert!(block_v6(a) < 1 << 16);
        let mut f = BlockFilter::new();
        f.add(IROUTE, block_v6(a));
        assert_eq!(f.get(block_v6(a | 1 << 80)), IROUTE);
    }
}
