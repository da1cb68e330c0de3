//! The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sums that segmentation
//! and coalescing need.
//!
//! Sums are kept unfolded in a `u64` accumulator so long buffers add up without carry
//! handling per word; [`fold`] turns an accumulator into the 16-bit one's-complement sum and
//! [`finish`] into the value that goes into a header (its complement).

use std::net::IpAddr;

/// Adds `data` (big-endian 16-bit words, an odd last byte padded with zero) to `acc`.
pub fn add(mut acc: u64, data: &[u8]) -> u64 {
    // 8 bytes at a time: a u64 of big-endian words sums to the same folded value as the
    // words one by one, because folding is associative in one's-complement arithmetic.
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_be_bytes(w);
        let (s, carry) = acc.overflowing_add(v);
        acc = s + u64::from(carry);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc = add_u64(acc, u64::from(u16::from_be_bytes([p[0], p[1]])));
    }
    if let [last] = pairs.remainder() {
        acc = add_u64(acc, u64::from(*last) << 8);
    }
    acc
}

fn add_u64(acc: u64, v: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(v);
    s + u64::from(carry)
}

/// Folds an accumulator into a 16-bit one's-complement sum (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for data summing to `acc`: the complement of the folded sum.
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The pseudo-header sum of TCP or UDP (`proto` 6 or 17) over `src`/`dst` for a transport
/// segment of `len` bytes (header included). Both addresses must be of one family.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u64 {
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => add(add(0, &s.octets()), &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => add(add(0, &s.octets()), &d.octets()),
        _ => 0,
    };
    acc = add_u64(acc, u64::from(proto));
    add_u64(acc, u64::from(len))
}

/// The IPv4 header checksum of `hdr` (its checksum field, bytes 10..12, is skipped).
pub fn ipv4_header(hdr: &[u8]) -> u16 {
    let head = hdr.get(..10).unwrap_or(hdr);
    let tail = hdr.get(12..).unwrap_or(&[]);
    finish(add(add(0, head), tail))
}

/// RFC 1624 eqn. 3: the checksum field after one 16-bit word at an even offset of the
/// summed data changed from `old` to `new`, `HC' = ~(~HC + ~m + m')`.
pub fn replace_word(check: u16, old: u16, new: u16) -> u16 {
    finish(u64::from(!check) + u64::from(!old) + u64::from(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 1071 definition, one 16-bit word at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            s += u32::from(w);
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn matches_the_word_by_word_definition() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(finish(add(0, &data)), reference(&data), "len {len}");
            // Split sums add up to the whole when the split is at an even offset.
            let mid = (len / 2) & !1;
            assert_eq!(
                finish(add(add(0, &data[..mid]), &data[mid..])),
                reference(&data)
            );
        }
        assert_eq!(finish(add(0, &[0xff; 64])), 0);
    }

    #[test]
    fn ipv4_header_checksum_of_a_known_header() {
        // Example header from RFC 1071 discussions (checksum 0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&h), 0xb861);
        // A correct header sums to zero including its checksum.
        assert_eq!(finish(add(0, &h)), 0);
    }
}
