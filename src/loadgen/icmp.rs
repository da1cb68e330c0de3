//! ICMP echo packets for the load generator: IPv4 and IPv6 echo requests from a simulated
//! client's tunnel address to the server's, and the parse of the echo replies that come back.
//!
//! The request payload carries a tag (client index, sequence number, send time) so a reply can
//! be matched to its client and timed without any per-packet state. Checksums are complete (the
//! receiving kernel verifies the IPv4 header and both ICMP checksums), so the packets are
//! exactly what a real client's tun would hand to its VPN.
//!
//! Invariant: the parser never panics on any input; anything that is not an echo reply with our
//! tag is a typed [`NotReply`].

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::dataplane::csum;

/// First bytes of every payload we send, so foreign traffic is never counted as a reply.
pub const MAGIC: [u8; 4] = *b"fwdL";
/// IPv4 header (no options) + ICMP header.
const V4_HEADERS: usize = 20 + 8;
/// IPv6 header + ICMPv6 header.
const V6_HEADERS: usize = 40 + 8;
/// The tag after the ICMP header: magic, client index, sequence, send time in microseconds.
pub const TAG_LEN: usize = 4 + 4 + 4 + 8;
/// Smallest inner packet size we build (an IPv6 echo with a whole tag).
pub const MIN_SIZE: usize = V6_HEADERS + TAG_LEN;
/// Largest inner packet size we build (fits any tunnel MTU we set up, 1500).
pub const MAX_SIZE: usize = 1500;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP6_ECHO_REQUEST: u8 = 128;
const ICMP6_ECHO_REPLY: u8 = 129;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMP6: u8 = 58;

/// What identifies one echo request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub client: u32,
    pub seq: u32,
    /// Microseconds since the run's origin when the request was built.
    pub sent_us: u64,
}

/// A matched echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub v6: bool,
    pub tag: Tag,
}

/// Why a tunnelled packet is not one of our echo replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReply {
    #[error("not an IPv4/IPv6 packet")]
    NotIp,
    #[error("truncated")]
    Truncated,
    #[error("not ICMP echo reply")]
    NotEchoReply,
    #[error("payload without our tag")]
    Foreign,
}

impl NotReply {
    /// Short stable name for drop counters.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReply::NotIp => "rx_not_ip",
            NotReply::Truncated => "rx_truncated",
            NotReply::NotEchoReply => "rx_not_echo_reply",
            NotReply::Foreign => "rx_foreign_payload",
        }
    }
}

/// Internet checksum of `data` alone.
pub fn checksum(data: &[u8]) -> u16 {
    csum::finish(csum::add(0, data))
}

fn put_tag(out: &mut [u8], tag: Tag) {
    out[..4].copy_from_slice(&MAGIC);
    out[4..8].copy_from_slice(&tag.client.to_be_bytes());
    out[8..12].copy_from_slice(&tag.seq.to_be_bytes());
    out[12..20].copy_from_slice(&tag.sent_us.to_be_bytes());
}

fn read_tag(p: &[u8]) -> Result<Tag, NotReply> {
    let t = p.get(..TAG_LEN).ok_or(NotReply::Foreign)?;
    if t[..4] != MAGIC {
        return Err(NotReply::Foreign);
    }
    let u32_at = |i: usize| u32::from_be_bytes([t[i], t[i + 1], t[i + 2], t[i + 3]]);
    let mut us = [0u8; 8];
    us.copy_from_slice(&t[12..20]);
    Ok(Tag {
        client: u32_at(4),
        seq: u32_at(8),
        sent_us: u64::from_be_bytes(us),
    })
}

/// Clamp a requested inner packet size to what we can build.
pub fn clamp_size(size: usize) -> usize {
    size.clamp(MIN_SIZE, MAX_SIZE)
}

/// Writes an IPv4 echo request of `size` bytes (clamped) into `out` (cleared first).
/// The ICMP identifier is the low 16 bits of the client index, the ICMP sequence the low 16
/// bits of `tag.seq`; the full values are in the tag.
pub fn echo_request_v4(out: &mut Vec<u8>, src: Ipv4Addr, dst: Ipv4Addr, size: usize, tag: Tag) {
    let size = clamp_size(size);
    out.clear();
    out.resize(size, 0);
    let total = size as u16;
    let ip = &mut out[..20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&(tag.seq as u16).to_be_bytes()); // identification
    ip[6] = 0x40; // DF
    ip[8] = 64; // TTL
    ip[9] = PROTO_ICMP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut out[20..];
    icmp[0] = ICMP_ECHO_REQUEST;
    icmp[4..6].copy_from_slice(&(tag.client as u16).to_be_bytes());
    icmp[6..8].copy_from_slice(&(tag.seq as u16).to_be_bytes());
    put_tag(&mut icmp[8..], tag);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}

/// ICMPv6 checksum over the pseudo-header (RFC 8200 §8.1) and `icmp`.
fn icmp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
    let len = u32::try_from(icmp.len()).unwrap_or(u32::MAX);
    let pseudo = csum::pseudo_header(src.into(), dst.into(), PROTO_ICMP6, len);
    csum::finish(csum::add(pseudo, icmp))
}

/// Writes an IPv6 echo request of `size` bytes (clamped) into `out` (cleared first).
pub fn echo_request_v6(out: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr, size: usize, tag: Tag) {
    let size = clamp_size(size);
    out.clear();
    out.resize(size, 0);
    let payload = (size - 40) as u16;
    let ip = &mut out[..40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&payload.to_be_bytes());
    ip[6] = PROTO_ICMP6;
    ip[7] = 64; // hop limit
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let icmp = &mut out[40..];
    icmp[0] = ICMP6_ECHO_REQUEST;
    icmp[4..6].copy_from_slice(&(tag.client as u16).to_be_bytes());
    icmp[6..8].copy_from_slice(&(tag.seq as u16).to_be_bytes());
    put_tag(&mut icmp[8..], tag);
    let c = icmp6_checksum(src, dst, icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Parses a tunnelled packet as one of our echo replies. Checksums are not verified: the
/// packet was authenticated by the data channel, and the sender is the server's kernel.
pub fn parse_reply(p: &[u8]) -> Result<Reply, NotReply> {
    let version = p.first().ok_or(NotReply::Truncated)? >> 4;
    match version {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl + 8 {
                return Err(NotReply::Truncated);
            }
            if p[9] != PROTO_ICMP || p[ihl] != ICMP_ECHO_REPLY {
                return Err(NotReply::NotEchoReply);
            }
            let tag = read_tag(&p[ihl + 8..])?;
            Ok(Reply { v6: false, tag })
        }
        6 => {
            if p.len() < V6_HEADERS {
                return Err(NotReply::Truncated);
            }
            // The kernel's echo reply carries no extension headers.
            if p[6] != PROTO_ICMP6 || p[40] != ICMP6_ECHO_REPLY {
                return Err(NotReply::NotEchoReply);
            }
            let tag = read_tag(&p[V6_HEADERS..])?;
            Ok(Reply { v6: true, tag })
        }
        _ => Err(NotReply::NotIp),
    }
}

/// What a host answering `req` would send back (tests and the in-memory server of the unit
/// tests): addresses swapped, type changed, checksums recomputed.
pub fn answer(req: &[u8]) -> Option<Vec<u8>> {
    let mut r = req.to_vec();
    match r.first()? >> 4 {
        4 if r.len() >= V4_HEADERS && r[9] == PROTO_ICMP && r[20] == ICMP_ECHO_REQUEST => {
            let (src, dst) = (r[12..16].to_vec(), r[16..20].to_vec());
            r[12..16].copy_from_slice(&dst);
            r[16..20].copy_from_slice(&src);
            r[10..12].fill(0);
            let c = checksum(&r[..20]);
            r[10..12].copy_from_slice(&c.to_be_bytes());
            r[20] = ICMP_ECHO_REPLY;
            r[22..24].fill(0);
            let c = checksum(&r[20..]);
            r[22..24].copy_from_slice(&c.to_be_bytes());
            Some(r)
        }
        6 if r.len() >= V6_HEADERS && r[6] == PROTO_ICMP6 && r[40] == ICMP6_ECHO_REQUEST => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&r[8..24]);
            d.copy_from_slice(&r[24..40]);
            r[8..24].copy_from_slice(&d);
            r[24..40].copy_from_slice(&s);
            r[40] = ICMP6_ECHO_REPLY;
            r[42..44].fill(0);
            let c = icmp6_checksum(Ipv6Addr::from(d), Ipv6Addr::from(s), &r[40..]);
            r[42..44].copy_from_slice(&c.to_be_bytes());
            Some(r)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: Tag = Tag {
        client: 0x0102_0304,
        seq: 7,
        sent_us: 0x1122_3344_5566_7788,
    };

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2, checksum 220d.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // Odd length pads with a zero byte.
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn v4_request_is_well_formed() {
        let mut b = Vec::new();
        let src = Ipv4Addr::new(10, 8, 0, 2);
        let dst = Ipv4Addr::new(10, 8, 0, 1);
        echo_request_v4(&mut b, src, dst, 100, TAG);
        assert_eq!(b.len(), 100);
        assert_eq!(b[0], 0x45);
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), 100);
        assert_eq!(&b[12..16], &src.octets());
        assert_eq!(&b[16..20], &dst.octets());
        // A correct checksum makes the whole header (and ICMP message) sum to zero.
        assert_eq!(checksum(&b[..20]), 0);
        assert_eq!(checksum(&b[20..]), 0);
        assert_eq!(b[20], ICMP_ECHO_REQUEST);
        assert_eq!(u16::from_be_bytes([b[24], b[25]]), 0x0304);
        assert_eq!(&b[28..32], b"fwdL");
    }

    #[test]
    fn v4_header_checksum_known_answer() {
        // 10.8.0.2 -> 10.8.0.1, total length 84, id 0, DF, ttl 64, ICMP: computed by hand
        // (4500 + 0054 + 0000 + 4000 + 4001 + 0a08 + 0002 + 0a08 + 0001 = d968, complement
        // 2697).
        let mut b = Vec::new();
        let tag = Tag { seq: 0, ..TAG };
        echo_request_v4(
            &mut b,
            Ipv4Addr::new(10, 8, 0, 2),
            Ipv4Addr::new(10, 8, 0, 1),
            84,
            tag,
        );
        assert_eq!(&b[10..12], &[0x26, 0x97]);
    }

    #[test]
    fn v6_request_is_well_formed() {
        let mut b = Vec::new();
        let src: Ipv6Addr = "fd00:8::1000".parse().unwrap();
        let dst: Ipv6Addr = "fd00:8::1".parse().unwrap();
        echo_request_v6(&mut b, src, dst, 100, TAG);
        assert_eq!(b.len(), 100);
        assert_eq!(b[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 60);
        assert_eq!(b[6], PROTO_ICMP6);
        assert_eq!(icmp6_checksum(src, dst, &b[40..]), 0);
    }

    #[test]
    fn sizes_are_clamped() {
        let mut b = Vec::new();
        echo_request_v6(&mut b, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, 1, TAG);
        assert_eq!(b.len(), MIN_SIZE);
        echo_request_v4(
            &mut b,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::LOCALHOST,
            99_999,
            TAG,
        );
        assert_eq!(b.len(), MAX_SIZE);
    }

    #[test]
    fn answered_requests_parse_as_replies() {
        let mut b = Vec::new();
        echo_request_v4(
            &mut b,
            Ipv4Addr::new(10, 8, 0, 2),
            Ipv4Addr::new(10, 8, 0, 1),
            64,
            TAG,
        );
        assert_eq!(parse_reply(&b), Err(NotReply::NotEchoReply));
        let r = answer(&b).unwrap();
        assert_eq!(checksum(&r[..20]), 0);
        assert_eq!(checksum(&r[20..]), 0);
        assert_eq!(
            parse_reply(&r),
            Ok(Reply {
                v6: false,
                tag: TAG
            })
        );

        let src: Ipv6Addr = "fd00:8::1000".parse().unwrap();
        let dst: Ipv6Addr = "fd00:8::1".parse().unwrap();
        echo_request_v6(&mut b, src, dst, 64, TAG);
        let r = answer(&b).unwrap();
        assert_eq!(icmp6_checksum(dst, src, &r[40..]), 0);
        assert_eq!(parse_reply(&r), Ok(Reply { v6: true, tag: TAG }));
    }

    #[test]
    fn garbage_is_typed_never_a_panic() {
        assert_eq!(parse_reply(&[]), Err(NotReply::Truncated));
        assert_eq!(parse_reply(&[0x45]), Err(NotReply::Truncated));
        assert_eq!(parse_reply(&[0x60; 47]), Err(NotReply::Truncated));
        assert_eq!(parse_reply(&[0x10; 64]), Err(NotReply::NotIp));
        // IHL of 60 bytes on a 40-byte packet.
        let mut p = vec![0u8; 40];
        p[0] = 0x4f;
        assert_eq!(parse_reply(&p), Err(NotReply::Truncated));
        // An echo reply without our magic.
        let mut b = Vec::new();
        echo_request_v4(&mut b, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 64, TAG);
        let mut r = answer(&b).unwrap();
        r[28] = b'x';
        assert_eq!(parse_reply(&r), Err(NotReply::Foreign));
        for n in 0..r.len() {
            let _ = parse_reply(&r[..n]);
        }
    }
}
