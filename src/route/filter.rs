//! Miss filter over iroute prefixes: lets a lookup that missed the host routes skip probing
//! every iroute length when no iroute can cover the address (typically Internet destinations
//! of client traffic, the common case for the inner-destination lookup).
//!
//! Owns: one bit per address *block* (IPv4: the top 16 bits, exact; IPv6: the top 32 bits
//! hashed to 16 bits), set iff at least one iroute at least as long as the block lies in it,
//! plus the per-bit counts that make removal exact, plus the number of iroutes shorter than a
//! block (any such iroute disables the filter, since it spans many blocks).
//!
//! Invariant: `may_match(b)` is false only if no iroute of this family covers any address of
//! block `b`. False positives only cost the probes the filter could not save.

use std::sync::Arc;

use super::pmap::PMap;

/// 2^16 bits.
const WORDS: usize = 1024;

#[derive(Clone, Debug)]
pub(crate) struct BlockFilter {
    /// Shortest prefix length the blocks can represent (16 for IPv4, 32 for IPv6).
    block_len: u8,
    /// Number of iroutes shorter than `block_len`.
    short: u32,
    bits: Arc<[u64; WORDS]>,
    /// Iroutes per bit index (only non-zero counts are stored).
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
    pub(crate) fn new(block_len: u8) -> Self {
        BlockFilter {
            block_len,
            short: 0,
            bits: Arc::new([0; WORDS]),
            counts: PMap::new(),
        }
    }

    /// Could an iroute cover an address of block `b`?
    #[inline(always)]
    pub(crate) fn may_match(&self, b: u32) -> bool {
        let word = self.bits.get((b as usize >> 6) & (WORDS - 1)).copied();
        self.short > 0 || word.is_some_and(|w| w >> (b & 63) & 1 == 1)
    }

    /// Account for a new iroute of length `len` in block `b`.
    pub(crate) fn add(&mut self, len: u8, b: u32) {
        if len < self.block_len {
            self.short += 1;
            return;
        }
        let n = self.counts.get(b).copied().unwrap_or(0);
        self.counts.insert(b, n + 1);
        if n == 0 {
            self.set(b, true);
        }
    }

    /// Account for the removal of an iroute of length `len` in block `b`.
    pub(crate) fn remove(&mut self, len: u8, b: u32) {
        if len < self.block_len {
            self.short = self.short.saturating_sub(1);
            return;
        }
        match self.counts.get(b).copied() {
            Some(n) if n > 1 => {
                self.counts.insert(b, n - 1);
            }
            Some(_) => {
                self.counts.remove(b);
                self.set(b, false);
            }
            None => {}
        }
    }

    fn set(&mut self, b: u32, on: bool) {
        // Copies the 8 KiB bitmap if a published snapshot shares it; only iroute changes that
        // open or close a block get here, never host-route changes.
        let bits = Arc::make_mut(&mut self.bits);
        if let Some(w) = bits.get_mut((b as usize >> 6) & (WORDS - 1)) {
            if on {
                *w |= 1 << (b & 63);
            } else {
                *w &= !(1 << (b & 63));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_make_removal_exact_and_short_routes_disable() {
        let mut f = BlockFilter::new(16);
        assert!(!f.may_match(block_v4(0xc0a8_0100)));
        f.add(24, block_v4(0xc0a8_0100));
        f.add(24, block_v4(0xc0a8_0200));
        assert!(f.may_match(block_v4(0xc0a8_ffff)));
        assert!(!f.may_match(block_v4(0xc0a9_0000)));
        f.remove(24, block_v4(0xc0a8_0100));
        assert!(
            f.may_match(block_v4(0xc0a8_0000)),
            "second route still there"
        );
        f.remove(24, block_v4(0xc0a8_0200));
        assert!(!f.may_match(block_v4(0xc0a8_0000)));
        f.add(8, block_v4(0x0a00_0000));
        assert!(f.may_match(block_v4(0x0b00_0000)));
        f.remove(8, block_v4(0x0a00_0000));
        assert!(!f.may_match(block_v4(0x0b00_0000)));
    }

    #[test]
    fn v6_blocks_hash_the_top_32_bits() {
        let a = 0xfd00_0001_u128 << 96;
        assert_eq!(block_v6(a), block_v6(a | 0xffff_ffff));
        assert!(block_v6(a) < 1 << 16);
        let mut f = BlockFilter::new(32);
        f.add(48, block_v6(a));
        assert!(f.may_match(block_v6(a | 1 << 80)));
    }
}
