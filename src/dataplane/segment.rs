//! TSO/USO segmentation and checksum completion of packets read from a tun opened with
//! `IFF_VNET_HDR` and `TUNSETOFFLOAD`, so what fwd encrypts for a peer is exactly what the
//! kernel would have put on a wire without offloads.
//!
//! It owns the per-segment header rules, which mirror Linux:
//! - `net/ipv4/tcp_offload.c` `tcp_gso_segment`: seq advances by `gso_size`; FIN and PSH
//!   only on the last segment, CWR only on the first; every other flag and option copied;
//! - `net/ipv4/udp_offload.c` `__udp_gso_segment`: every segment a full datagram with its own
//!   length, a computed checksum of 0 sent as 0xFFFF;
//! - `net/ipv4/af_inet.c` `inet_gso_segment` / `net/ipv6/ip6_offload.c` `ipv6_gso_segment`:
//!   IPv4 total length, ID + i and header checksum per segment (options copied); IPv6
//!   payload length;
//! - `net/core/dev.c` `skb_checksum_help` for [`finish_checksum`].
//!
//! Invariants: nothing here allocates, does IO or panics on any input. The virtio header's
//! `hdr_len`/`csum_start` are hints written by the kernel and are never trusted for
//! segmentation: header sizes come from the packet itself, and lengths from the IP header,
//! which must fit in the buffer. The input's TCP/UDP checksum field (a pseudo-header sum or
//! garbage) is never read; every output checksum is computed in full.

use std::fmt;

use super::csum;
use super::ip::{IPV6_HDR_LEN, PROTO_TCP, PROTO_UDP, TCP_CWR, TCP_FIN, TCP_PSH, UDP_HDR_LEN};
use super::vnet::{VnetHdr, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};

/// Why a packet from the tun could not be turned into wire packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegError {
    /// The packet ends before the headers or the length its IP header declares.
    Truncated,
    /// Neither IPv4 nor IPv6.
    NotIp,
    /// Inconsistent header fields (lengths, offsets, fragments, GSO type vs protocol).
    BadHeader,
    /// Well formed but not segmentable here (IPv6 extension headers, UFO, no GSO type).
    Unsupported,
    /// Larger than a 16-bit IP length can describe (BIG TCP).
    TooBig,
}

impl fmt::Display for SegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SegError::Truncated => "packet shorter than its headers declare",
            SegError::NotIp => "not an IPv4 or IPv6 packet",
            SegError::BadHeader => "inconsistent IP, TCP/UDP or virtio-net header",
            SegError::Unsupported => "unsupported offload or IPv6 extension header",
            SegError::TooBig => "packet too big for an IP length field",
        })
    }
}

impl std::error::Error for SegError {}

/// Completes a partial checksum in place (only when `hdr.needs_csum()`; any GSO type is
/// treated as a single packet): sums `pkt[csum_start..]` into the field at
/// `csum_start + csum_offset`, which holds the pseudo-header sum. Like `skb_checksum_help`,
/// a result of 0 is stored as 0xFFFF (required for UDP, equivalent for TCP).
pub fn finish_checksum(hdr: &VnetHdr, pkt: &mut [u8]) -> Result<(), SegError> {
    if !hdr.needs_csum() {
        return Ok(());
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > pkt.len() {
        return Err(SegError::BadHeader);
    }
    let sum = csum::finish(csum::add(0, pkt.get(start..).unwrap_or(&[]))); // start <= field
    put16(pkt, field, if sum == 0 { 0xffff } else { sum });
    Ok(())
}

/// A super-packet (GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, with or without GSO_ECN) to cut into
/// segments; the headers are validated once in [`Split::new`].
#[derive(Debug, Clone)]
pub struct Split<'a> {
    /// The packet up to the end its IP header declares.
    pkt: &'a [u8],
    l3_len: usize,
    hdr_len: usize,
    gso_size: usize,
    payload: usize,
    count: usize,
    v6: bool,
    tcp: bool,
    /// Pseudo-header sum without the length, which differs per segment.
    pseudo: u64,
    id0: u16,
    seq0: u32,
}

impl<'a> Split<'a> {
    /// Validates the headers: IPv4 (any IHL, not a fragment) or IPv6 with TCP/UDP as the
    /// next header (else [`SegError::Unsupported`]); the L4 header inside the packet and of
    /// the protocol the GSO type names; `gso_size > 0`.
    pub fn new(hdr: &VnetHdr, pkt: &'a [u8]) -> Result<Self, SegError> {
        let kind = hdr.gso_kind();
        let tcp = match kind {
            GSO_TCPV4 | GSO_TCPV6 => true,
            GSO_UDP_L4 => false,
            _ => return Err(SegError::Unsupported),
        };
        let gso_size = usize::from(hdr.gso_size);
        if gso_size == 0 {
            return Err(SegError::BadHeader);
        }
        let l3 = parse_ip(pkt)?;
        let want = if tcp { PROTO_TCP } else { PROTO_UDP };
        if l3.proto != want || (kind == GSO_TCPV4 && l3.v6) || (kind == GSO_TCPV6 && !l3.v6) {
            return Err(SegError::BadHeader);
        }
        let pkt = pkt.get(..l3.end).ok_or(SegError::Truncated)?;
        let l4 = pkt.get(l3.hdr_len..).ok_or(SegError::Truncated)?;
        let (l4_len, seq0) = match (tcp, l4.get(12), get32(l4, 4)) {
            (false, ..) => (UDP_HDR_LEN, 0),
            (true, Some(&d), Some(seq)) if d >> 4 >= 5 => (usize::from(d >> 4) * 4, seq),
            (true, Some(_), Some(_)) => return Err(SegError::BadHeader),
            _ => return Err(SegError::Truncated),
        };
        if l4.len() < l4_len {
            return Err(SegError::Truncated);
        }
        let hdr_len = l3.hdr_len + l4_len;
        let payload = pkt.len() - hdr_len;
        Ok(Split {
            pkt,
            l3_len: l3.hdr_len,
            hdr_len,
            gso_size,
            payload,
            count: payload.div_ceil(gso_size).max(1),
            v6: l3.v6,
            tcp,
            pseudo: csum::add(l3.addr_sum, &[0, want]),
            id0: l3.id,
            seq0,
        })
    }

    /// Number of segments (`ceil(payload / gso_size)`, at least 1).
    pub fn count(&self) -> usize {
        self.count
    }

    /// Full IP packet length of segment `i` (0 if `i >= count`).
    pub fn segment_len(&self, i: usize) -> usize {
        self.payload_range(i).map_or(0, |(_, n)| self.hdr_len + n)
    }

    /// IP + L4 header bytes, the same in every segment.
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// Offset in the packet and length of segment `i`'s payload.
    fn payload_range(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.count {
            return None;
        }
        let off = i * self.gso_size;
        Some((self.hdr_len + off, (self.payload - off).min(self.gso_size)))
    }

    /// Writes segment `i` as a complete IP packet into `dst[..segment_len(i)]` and returns
    /// its length; `None` if `i >= count` or `dst` is too short.
    pub fn write(&self, i: usize, dst: &mut [u8]) -> Option<usize> {
        let (off, n) = self.payload_range(i)?;
        let total = self.hdr_len + n;
        let src = self.pkt.get(off..off + n)?;
        let (head, body) = dst.get_mut(..total)?.split_at_mut_checked(self.hdr_len)?;
        head.copy_from_slice(self.pkt.get(..self.hdr_len)?);
        let (ip, l4) = head.split_at_mut_checked(self.l3_len)?;
        // Lengths fit in 16 bits: a segment is never longer than the validated original.
        if self.v6 {
            put16(ip, 4, (total - IPV6_HDR_LEN) as u16);
        } else {
            put16(ip, 2, total as u16);
            // The ID wraps like the kernel's `htons(id++)`.
            put16(ip, 4, self.id0.wrapping_add(i as u16));
            let c = csum::ipv4_header(ip);
            put16(ip, 10, c);
        }
        let l4_total = total - self.l3_len;
        let field = if self.tcp {
            let step = (i as u32).wrapping_mul(self.gso_size as u32);
            put(l4, 4, &self.seq0.wrapping_add(step).to_be_bytes());
            if let Some(flags) = l4.get_mut(13) {
                if i + 1 < self.count {
                    *flags &= !(TCP_FIN | TCP_PSH);
                }
                if i > 0 {
                    *flags &= !TCP_CWR;
                }
            }
            16
        } else {
            put16(l4, 4, l4_total as u16);
            6
        };
        put16(l4, field, 0);
        // The L4 header has even length, so the payload sum starts at an even offset.
        let acc = csum::add(self.pseudo, &(l4_total as u32).to_be_bytes());
        let acc = copy_and_sum(csum::add(acc, l4), src, body);
        let c = csum::finish(acc);
        put16(l4, field, if c == 0 && !self.tcp { 0xffff } else { c });
        Some(total)
    }
}

/// What the IP header says.
struct L3 {
    v6: bool,
    hdr_len: usize,
    /// End of the packet per the IP length field (checked against the buffer).
    end: usize,
    proto: u8,
    /// Sum of the addresses, which sit contiguously in both headers.
    addr_sum: u64,
    id: u16,
}

fn parse_ip(pkt: &[u8]) -> Result<L3, SegError> {
    let v6 = match pkt.first().ok_or(SegError::Truncated)? >> 4 {
        4 => false,
        6 => true,
        _ => return Err(SegError::NotIp),
    };
    let h = pkt.get(..if v6 { IPV6_HDR_LEN } else { 20 });
    let h = h.ok_or(SegError::Truncated)?;
    let ihl = usize::from(h.first().map_or(0, |b| b & 0x0f)) * 4;
    let (hdr_len, len_field, proto, addrs) = if v6 {
        (IPV6_HDR_LEN, get16(h, 4), h.get(6), h.get(8..40))
    } else {
        (ihl, get16(h, 2), h.get(9), h.get(12..20))
    };
    let len_field = usize::from(len_field.unwrap_or(0));
    let proto = proto.copied().unwrap_or(0);
    // A zero length field with more than 64 KiB behind it is a BIG TCP packet, whose
    // length lives elsewhere (hop-by-hop jumbo option or skb length).
    if len_field == 0 && pkt.len() > hdr_len + usize::from(u16::MAX) {
        return Err(SegError::TooBig);
    }
    let end = if v6 { hdr_len + len_field } else { len_field };
    if v6 && proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(SegError::Unsupported);
    }
    // MF or a fragment offset: no L4 header to segment by.
    let fragment = !v6 && get16(h, 6).unwrap_or(0) & 0x3fff != 0;
    if hdr_len < 20 || end < hdr_len || fragment {
        return Err(SegError::BadHeader);
    }
    if end > pkt.len() {
        return Err(SegError::Truncated);
    }
    Ok(L3 {
        v6,
        hdr_len,
        end,
        proto,
        addr_sum: csum::add(0, addrs.unwrap_or(&[])),
        id: if v6 { 0 } else { get16(h, 4).unwrap_or(0) },
    })
}

/// Copies `src` into `dst` (the shorter length of both) and adds it to `acc`, in one pass.
fn copy_and_sum(acc: u64, src: &[u8], dst: &mut [u8]) -> u64 {
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    // Big-endian 32-bit words sum to the same folded value as their 16-bit halves, and
    // 64 KiB of them cannot overflow a u64, so the loop needs no carry handling.
    let mut s: u64 = 0;
    let mut s8 = src.chunks_exact(8);
    let mut d8 = dst.chunks_exact_mut(8);
    for (d, c) in (&mut d8).zip(&mut s8) {
        d.copy_from_slice(c);
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let v = u64::from_be_bytes(w);
        s += (v >> 32) + (v & 0xffff_ffff);
    }
    let (rs, rd) = (s8.remainder(), d8.into_remainder());
    rd.copy_from_slice(rs);
    csum::add(csum::add(acc, &s.to_be_bytes()), rs)
}

fn get16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn get32(b: &[u8], at: usize) -> Option<u32> {
    let mut w = [0u8; 4];
    w.copy_from_slice(b.get(at..at + 4)?);
    Some(u32::from_be_bytes(w))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    put(b, at, &v.to_be_bytes());
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at + v.len()) {
        d.copy_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_UDP};

    const SEQ0: u32 = 0xffff_fc00; // wraps within a few segments
    const ID0: u16 = 0xfffe; // wraps too
    const ALL: u8 = TCP_FIN | TCP_PSH | TCP_CWR | 0x10 | 0x40; // + ACK, ECE

    /// RFC 1071 one 16-bit word at a time, complemented: 0 for data that verifies.
    fn rfc1071(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// Pseudo-header (RFC 793 / RFC 8200) followed by the L4 bytes of IP packet `p`.
    fn with_pseudo(p: &[u8]) -> Vec<u8> {
        if p[0] >> 4 == 4 {
            let l3 = usize::from(p[0] & 15) * 4;
            let len = ((p.len() - l3) as u16).to_be_bytes();
            [&p[12..20], &[0, p[9]], &len, &p[l3..]].concat()
        } else {
            let len = ((p.len() - 40) as u32).to_be_bytes();
            [&p[8..40], &len, &[0, 0, 0, p[6]], &p[40..]].concat()
        }
    }

    fn l4_verifies(p: &[u8]) -> bool {
        rfc1071(&with_pseudo(p)) == 0
    }

    /// IPv4 option bytes, TCP timestamps option, TCP flags.
    type Opts = (usize, bool, u8);

    /// A super-packet as the kernel hands it out: the L4 checksum field holds the
    /// pseudo-header sum.
    fn build(v6: bool, tcp: bool, o: Opts, payload: usize, gso: u16) -> (VnetHdr, Vec<u8>) {
        let (ip_opts, ts, flags) = o;
        let l4h = [8, 8, 20, 32][usize::from(tcp) * 2 + usize::from(ts)];
        let l3 = if v6 { 40 } else { 20 + ip_opts };
        let total = l3 + l4h + payload;
        let mut p: Vec<u8> = (0..total).map(|i| (i * 7 + i / 251) as u8).collect();
        let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
        if v6 {
            p[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, proto, 64]);
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        } else {
            let vihl = 0x40 | (l3 / 4) as u8;
            p[..12].copy_from_slice(&[vihl, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0]);
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            p[4..6].copy_from_slice(&ID0.to_be_bytes());
            p[20..l3].fill(1); // NOPs
        }
        let l4 = &mut p[l3..];
        let csum_offset = if tcp {
            l4[4..8].copy_from_slice(&SEQ0.to_be_bytes());
            l4[12..14].copy_from_slice(&[((l4h / 4) as u8) << 4, flags]);
            if ts {
                l4[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
            }
            16
        } else {
            l4[4..6].copy_from_slice(&((total - l3) as u16).to_be_bytes());
            6
        };
        let pseudo = with_pseudo(&p);
        let sum = !rfc1071(&pseudo[..pseudo.len() - (total - l3)]);
        p[l3 + csum_offset..l3 + csum_offset + 2].copy_from_slice(&sum.to_be_bytes());
        let mut h = VnetHdr::default();
        (h.flags, h.gso_size, h.hdr_len) = (F_NEEDS_CSUM, gso, (l3 + l4h) as u16);
        (h.csum_start, h.csum_offset) = (l3 as u16, csum_offset as u16);
        let kind = usize::from(tcp) * 2 + usize::from(v6);
        h.gso_type = [GSO_UDP_L4, GSO_UDP_L4, GSO_TCPV4, GSO_TCPV6][kind];
        (h, p)
    }

    /// Splits a built super-packet and checks every segment against the kernel's rules.
    fn check(v6: bool, tcp: bool, o @ (_, _, flags): Opts, payload: usize, gso: u16) {
        let (hdr, p) = build(v6, tcp, o, payload, gso);
        let sp = Split::new(&hdr, &p).unwrap();
        let (l3, g) = (usize::from(hdr.csum_start), usize::from(gso));
        let hl = sp.header_len();
        assert_eq!(hl, usize::from(hdr.hdr_len));
        assert_eq!(sp.count(), payload.div_ceil(g).max(1));
        // What the input's checksum field holds must not matter.
        let mut p2 = p.clone();
        p2[l3 + usize::from(hdr.csum_offset)] ^= 0x5a;
        let sp2 = Split::new(&hdr, &p2).unwrap();
        let (mut buf, mut buf2) = (vec![0u8; 70000], vec![0u8; 70000]);
        for i in 0..sp.count() {
            let n = sp.write(i, &mut buf).unwrap();
            assert_eq!(sp2.write(i, &mut buf2), Some(n));
            let seg = &buf[..n];
            assert_eq!(seg, &buf2[..n]);
            let plen = (payload - i * g).min(g);
            assert_eq!((n, sp.segment_len(i)), (hl + plen, n), "segment {i}");
            assert_eq!(&seg[hl..], &p[hl + i * g..hl + i * g + plen]);
            assert_eq!(sp.write(i, &mut buf2[..n - 1]), None);
            let be16 = |at: usize| usize::from(u16::from_be_bytes([seg[at], seg[at + 1]]));
            if v6 {
                assert_eq!(be16(4), n - 40);
            } else {
                assert_eq!(be16(2), n);
                assert_eq!(be16(4), usize::from(ID0.wrapping_add(i as u16)));
                assert_eq!(rfc1071(&seg[..l3]), 0, "IPv4 header checksum");
                assert_eq!(&seg[6..10], &p[6..10], "flags, TTL, protocol");
                assert_eq!(&seg[12..l3], &p[12..l3], "addresses, options");
            }
            if tcp {
                let seq = u32::from_be_bytes(seg[l3 + 4..l3 + 8].try_into().unwrap());
                assert_eq!(seq, SEQ0.wrapping_add((i * g) as u32));
                let (last, f) = (i + 1 == sp.count(), seg[l3 + 13]);
                assert_eq!(f & TCP_FIN != 0, last && flags & TCP_FIN != 0);
                assert_eq!(f & TCP_PSH != 0, last && flags & TCP_PSH != 0);
                assert_eq!(f & TCP_CWR != 0, i == 0 && flags & TCP_CWR != 0);
                let others = !(TCP_FIN | TCP_PSH | TCP_CWR);
                assert_eq!(f & others, flags & others);
                assert_eq!(&seg[l3 + 20..hl], &p[l3 + 20..hl], "TCP options");
            } else {
                assert_eq!(be16(l3 + 4), 8 + plen);
                assert_ne!(be16(l3 + 6), 0);
            }
            assert!(l4_verifies(seg), "L4 checksum of segment {i}");
        }
        assert_eq!(sp.segment_len(sp.count()), 0);
        assert_eq!(sp.write(sp.count(), &mut buf), None);
    }

    #[test]
    fn tcp_v4_with_ip_and_tcp_options() {
        for payload in [1, 999, 1000, 5000, 5007, 20001] {
            for (ip_opts, ts) in [(0, false), (0, true), (8, true), (40, false)] {
                check(false, true, (ip_opts, ts, ALL), payload, 1000);
            }
        }
    }

    #[test]
    fn tcp_v6_last_shorter_exact_and_single() {
        for (payload, gso) in [(5715, 1428), (5712, 1428), (100, 1428), (65000, 1)] {
            let flags = if gso == 1 { 0x10 } else { ALL };
            check(true, true, (0, true, flags), payload, gso);
        }
    }

    #[test]
    fn udp_v4_and_v6_segments_are_full_datagrams() {
        for v6 in [false, true] {
            for (payload, gso) in [(3601, 1200), (3600, 1200), (5, 1200), (333, 2)] {
                check(v6, false, (4, false, 0), payload, gso);
            }
        }
        // Adding the checksum to a payload word makes it compute to 0, sent as 0xFFFF.
        let (hdr, mut p) = build(false, false, (0, false, 0), 10, 100);
        let mut seg = [0u8; 38];
        Split::new(&hdr, &p).unwrap().write(0, &mut seg).unwrap();
        let w = u32::from(u16::from_be_bytes([p[28], p[29]])) + u32::from(seg[26]) * 256;
        let w = w + u32::from(seg[27]);
        p[28..30].copy_from_slice(&((w + (w >> 16)) as u16).to_be_bytes());
        Split::new(&hdr, &p).unwrap().write(0, &mut seg).unwrap();
        assert_eq!((seg[26], seg[27], l4_verifies(&seg)), (0xff, 0xff, true));
    }

    #[test]
    fn finish_checksum_completes_pseudo_header_sums() {
        for (v6, tcp) in [(false, false), (false, true), (true, false), (true, true)] {
            for payload in [0, 1, 2, 3, 1001] {
                let (mut hdr, mut p) = build(v6, tcp, (0, tcp, 0x18), payload, 1);
                hdr.gso_type = GSO_NONE;
                assert!(!l4_verifies(&p));
                finish_checksum(&hdr, &mut p).unwrap();
                assert!(l4_verifies(&p), "v6 {v6} tcp {tcp} payload {payload}");
            }
        }
        let mut p = [0u8; 60];
        let mut ok = VnetHdr::default();
        (ok.flags, ok.csum_start, ok.csum_offset) = (F_NEEDS_CSUM, 20, 38);
        assert_eq!(finish_checksum(&ok, &mut p), Ok(()));
        assert_eq!(&p[58..], &[0xff, 0xff], "0 is sent as 0xFFFF");
        let mut h = ok;
        for (start, off) in [(20, 39), (61, 0), (59, 0), (u16::MAX, u16::MAX)] {
            (h.csum_start, h.csum_offset) = (start, off);
            assert_eq!(finish_checksum(&h, &mut p), Err(SegError::BadHeader));
        }
        // Without NEEDS_CSUM nothing is touched, whatever the offsets say.
        h.flags = 0;
        assert_eq!(finish_checksum(&h, &mut p), Ok(()));
    }

    #[test]
    fn validates_gso_type_and_headers() {
        use SegError::*;
        let (hdr, p) = build(false, true, (0, false, 0), 3000, 1000);
        let err = |h: &VnetHdr, p: &[u8]| Split::new(h, p).err();
        let mut h = hdr;
        h.gso_type |= GSO_ECN;
        assert_eq!(Split::new(&h, &p).map(|s| s.count()), Ok(3));
        h.gso_size = 0;
        assert_eq!(err(&h, &p), Some(BadHeader));
        h = hdr;
        for t in [GSO_NONE, GSO_UDP, 0x7f] {
            h.gso_type = t;
            assert_eq!(err(&h, &p), Some(Unsupported));
        }
        for t in [GSO_TCPV6, GSO_UDP_L4] {
            h.gso_type = t; // the protocol or family disagrees
            assert_eq!(err(&h, &p), Some(BadHeader));
        }
        assert_eq!(err(&hdr, &[]), Some(Truncated));
        assert_eq!(err(&hdr, &p[..p.len() - 1]), Some(Truncated));
        let mut q = p.clone();
        q[0] = 0x55;
        assert_eq!(err(&hdr, &q), Some(NotIp));
        q[0] = 0x45;
        q[6] |= 0x20; // MF
        assert_eq!(err(&hdr, &q), Some(BadHeader));
        // hdr_len and csum_start are not trusted.
        let mut h = hdr;
        (h.hdr_len, h.csum_start, h.csum_offset) = (9999, 9999, 9999);
        assert_eq!(Split::new(&h, &p).map(|s| s.header_len()), Ok(40));

        let (h6, mut q) = build(true, true, (0, false, 0), 3000, 1000);
        for next in [0, 43, 44, 60] {
            q[6] = next; // hop-by-hop, routing, fragment, destination options
            assert_eq!(err(&h6, &q), Some(Unsupported));
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = vec![0u8; 70000];
        let run = |hdr: &VnetHdr, p: &mut [u8], out: &mut [u8]| {
            if let Ok(sp) = Split::new(hdr, p) {
                for i in 0..sp.count().min(64) {
                    let n = sp.write(i, out).unwrap();
                    assert_eq!(n, sp.segment_len(i));
                    assert!(l4_verifies(&out[..n]));
                    let _ = sp.write(i, &mut out[..n / 2]);
                }
            }
            let _ = finish_checksum(hdr, p);
        };
        for (v6, tcp) in [(false, false), (false, true), (true, false), (true, true)] {
            let (hdr, p) = build(v6, tcp, (4, true, ALL), 700, 300);
            for len in 0..=p.len() {
                run(&hdr, &mut p[..len].to_vec(), &mut out);
            }
            for _ in 0..20000 {
                let mut q = p.clone();
                for _ in 0..1 + rnd() % 4 {
                    q[(rnd() % 80) as usize] = rnd() as u8;
                }
                let len = [q.len(), rnd() as usize % q.len()][(rnd() % 2) as usize];
                let mut h = hdr;
                if rnd() % 4 == 0 {
                    h.gso_size = rnd() as u16;
                    (h.csum_start, h.csum_offset) = (rnd() as u16 % 128, rnd() as u16 % 128);
                }
                run(&h, &mut q[..len], &mut out);
            }
        }
        for _ in 0..20000 {
            let mut q: Vec<u8> = (0..rnd() % 200).map(|_| rnd() as u8).collect();
            if let Some(b) = q.first_mut() {
                *b = if rnd() % 2 == 0 { 0x45 } else { 0x60 };
            }
            let raw: Vec<u8> = (0..10).map(|_| rnd() as u8).collect();
            let mut h = VnetHdr::parse(&raw).unwrap();
            h.gso_type = [GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, h.gso_type][h.flags as usize % 4];
            (h.gso_size, h.csum_start) = (h.gso_size % 64, h.csum_start % 256);
            run(&h, &mut q, &mut out);
        }
    }
}
