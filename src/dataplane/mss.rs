//! TCP MSS clamping (`mssfix`): the MSS limit OpenVPN 2.6 derives from `mssfix` and the
//! data-channel overhead ([`mss_limit`]), and the in-place rewrite of the MSS option of TCP
//! SYN / SYN-ACK packets crossing the tunnel ([`clamp`], [`clamp_partial_csum`]).
//!
//! Behaviour follows OpenVPN's `src/openvpn/mss.c`: `frame_calculate_mssfix` (the limit),
//! `mss_fixup_ipv4` / `mss_fixup_ipv6` (which packets qualify; IPv6 gets the limit minus
//! 20) and `mss_fixup_dowork` (the option walk, lowering only, checksum adjusted
//! incrementally); the defaults come from `options.c` (`options_postprocess_mutate_ce`:
//! `mssfix 1492 mtu` when tun-mtu is 1500, else `mssfix <tun-mtu> fixed`). OpenVPN applies
//! it in both directions (packets read from the tun and packets decrypted from the link).
//! This is an independent implementation; no OpenVPN code is copied.
//!
//! Checked against OpenVPN 2.6.14 (two processes in network namespaces, SYNs captured on
//! both tuns): AES-256-GCM, tls-crypt, peer-id, tun-mtu 1500, UDP over IPv4 clamps
//! MSS 1460 to **1400** (IPv6 inner: 1380); over IPv6: 1380 (1360). The tests below carry
//! every measured case.

use super::csum;
use super::ip::{PROTO_TCP, TCP_HDR_LEN, TCP_SYN};

/// OpenVPN's `MSSFIX_DEFAULT`: the `mssfix` used (with `mtu`) when tun-mtu is 1500.
pub const MSSFIX_DEFAULT: u32 = 1492;
/// OpenVPN's `TUN_MTU_DEFAULT`.
pub const TUN_MTU_DEFAULT: u32 = 1500;
/// Data-channel overhead of a `P_DATA_V2` AEAD packet: opcode/key-id + peer-id (4),
/// packet-id (4), tag (16). Same for AES-GCM and ChaCha20-Poly1305.
pub const AEAD_OVERHEAD_V2: u32 = 24;
/// Data-channel overhead of a `P_DATA_V1` AEAD packet (no peer-id): opcode 1 + 4 + 16.
pub const AEAD_OVERHEAD_V1: u32 = 21;

/// Inner IPv4 + TCP header without options, which OpenVPN subtracts from the payload bound
/// ("liberal" MSS per RFC 879 section 7).
const INNER_V4_TCP: u32 = 20 + 20;
/// What an IPv6 inner header costs more than an IPv4 one.
const INNER_V6_EXTRA: u16 = 20;

/// How the `mssfix` value is meant (its optional second argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MssfixMode {
    /// `mssfix N`: N bounds the OpenVPN packet (data-channel header, AEAD overhead and
    /// payload; plus the 2-byte length prefix on TCP links), not the UDP/IP headers.
    Payload,
    /// `mssfix N mtu` (and the default `mssfix 1492 mtu`): N bounds the whole underlay IP
    /// datagram, encapsulating IP and UDP/TCP headers included.
    Mtu,
    /// `mssfix N fixed` (and the default for tun-mtu other than 1500): MSS = N - 40,
    /// no overhead counted.
    Fixed,
}

/// The underlay: transport and the address family of the peer's socket address as
/// OpenVPN sees it. On a dual-stack `proto udp6` socket an IPv4 peer has a v4-mapped IPv6
/// address, so OpenVPN counts it as [`Link::Udp6`] (measured: the 2.6.14 server clamped
/// to 1380 for an IPv4 client there, while that client clamped to 1400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// UDP over IPv4: 8 + 20 bytes of encapsulation.
    Udp4,
    /// UDP over IPv6: 8 + 40.
    Udp6,
    /// TCP over IPv4: 20 + 20, plus OpenVPN's 2-byte packet length prefix.
    Tcp4,
    /// TCP over IPv6: 20 + 40, plus the 2-byte prefix.
    Tcp6,
}

impl Link {
    /// IP + UDP/TCP header bytes around each datagram (OpenVPN's `datagram_overhead`).
    pub fn encap_overhead(self) -> u32 {
        match self {
            Link::Udp4 => 8 + 20,
            Link::Udp6 => 8 + 40,
            Link::Tcp4 => 20 + 20,
            Link::Tcp6 => 20 + 40,
        }
    }

    fn is_tcp(self) -> bool {
        matches!(self, Link::Tcp4 | Link::Tcp6)
    }
}

/// The `mssfix` OpenVPN 2.6 uses when none is configured or `mssfix` has no value:
/// `1492 mtu` for tun-mtu 1500, otherwise `<tun-mtu> fixed`.
pub fn default_mssfix(tun_mtu: u32) -> (u32, MssfixMode) {
    if tun_mtu == TUN_MTU_DEFAULT {
        (MSSFIX_DEFAULT, MssfixMode::Mtu)
    } else {
        (tun_mtu, MssfixMode::Fixed)
    }
}

/// The MSS OpenVPN 2.6 clamps IPv4-in-tunnel TCP SYNs to for `mssfix mssfix [mode]` on
/// `link`, with `data_overhead` bytes of data-channel overhead per packet
/// ([`AEAD_OVERHEAD_V2`] with peer-id, [`AEAD_OVERHEAD_V1`] without). IPv6 inner packets
/// get 20 less: [`v6_limit`]. With compression framing, add its 1 byte to `data_overhead`.
///
/// - `Fixed`: `mssfix - 40`
/// - `Payload`: `mssfix - data_overhead - tcp_prefix - 40`
/// - `Mtu`: `mssfix - data_overhead - tcp_prefix - encap_overhead - 40`
///
/// where `tcp_prefix` is 2 on TCP links, 0 on UDP. `mssfix 0` (disabled) and values too
/// small for the overhead saturate to 0, which [`clamp`] treats as "do not clamp"
/// (OpenVPN's 16-bit arithmetic would wrap instead).
pub fn mss_limit(mssfix: u32, mode: MssfixMode, link: Link, data_overhead: u32) -> u16 {
    let limit = match mode {
        MssfixMode::Fixed => mssfix.saturating_sub(INNER_V4_TCP),
        MssfixMode::Payload | MssfixMode::Mtu => {
            let mut overhead = data_overhead.saturating_add(if link.is_tcp() { 2 } else { 0 });
            if mode == MssfixMode::Mtu {
                overhead = overhead.saturating_add(link.encap_overhead());
            }
            mssfix.saturating_sub(overhead).saturating_sub(INNER_V4_TCP)
        }
    };
    u16::try_from(limit).unwrap_or(u16::MAX)
}

/// The limit for IPv6 inner packets given the IPv4 one (20 bytes more of IP header).
pub fn v6_limit(v4: u16) -> u16 {
    v4.saturating_sub(INNER_V6_EXTRA)
}

/// Clamps the MSS option of a TCP SYN (IPv4 or IPv6 packet `pkt`, no tun header) to `max`
/// (`max_v4` / `max_v6` by IP version; 0 = leave that family alone), updating the TCP
/// checksum incrementally (RFC 1624). True if it changed the packet.
///
/// Only lowers. Never panics on any input; non-TCP / non-SYN / no-MSS-option packets,
/// non-first IPv4 fragments, truncated packets and IPv6 packets with extension headers
/// before TCP are left untouched.
///
/// The checksum field must hold a complete checksum. A packet read from a tun with
/// checksum offload (`virtio_net_hdr` with `VIRTIO_NET_HDR_F_NEEDS_CSUM`) instead holds
/// only the pseudo-header sum, and whoever completes it sums the segment as it is then, so
/// the rewritten MSS is picked up by itself: use [`clamp_partial_csum`] for those.
/// Adjusting such a field as well would cancel the change and leave a checksum that is
/// wrong (the kernel's TCPMSS target likewise skips the update for `CHECKSUM_PARTIAL`).
pub fn clamp(pkt: &mut [u8], max_v4: u16, max_v6: u16) -> bool {
    clamp_inner(pkt, max_v4, max_v6, true)
}

/// [`clamp`] for a packet whose TCP checksum is partial (pseudo-header sum only, to be
/// completed by offload): rewrites the MSS option and leaves the checksum field alone.
pub fn clamp_partial_csum(pkt: &mut [u8], max_v4: u16, max_v6: u16) -> bool {
    clamp_inner(pkt, max_v4, max_v6, false)
}

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_MSS_LEN: usize = 4;

#[inline]
fn clamp_inner(pkt: &mut [u8], max_v4: u16, max_v6: u16, update_csum: bool) -> bool {
    // The common case (not a TCP SYN) costs a few byte compares.
    let Some(&first) = pkt.first() else {
        return false;
    };
    let (tcp_start, ip_end, max) = match first >> 4 {
        4 => {
            if pkt.len() < 20 || pkt[9] != PROTO_TCP {
                return false;
            }
            // Only the first fragment (offset 0) carries the TCP header.
            if u16::from_be_bytes([pkt[6], pkt[7]]) & 0x1fff != 0 {
                return false;
            }
            let ihl = usize::from(first & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            if ihl < 20 || total > pkt.len() {
                return false;
            }
            (ihl, total, max_v4)
        }
        6 => {
            // Next header TCP directly; extension headers are left alone (as OpenVPN does).
            if pkt.len() < 40 || pkt[6] != PROTO_TCP {
                return false;
            }
            let total = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            if total > pkt.len() {
                return false;
            }
            (40, total, max_v6)
        }
        _ => return false,
    };
    if max == 0 {
        return false;
    }
    let Some(tcp) = pkt.get_mut(tcp_start..ip_end) else {
        return false;
    };
    match tcp.get(13) {
        Some(flags) if flags & TCP_SYN != 0 => clamp_tcp(tcp, max, update_csum),
        _ => false,
    }
}

/// Walks the options of the TCP header at the start of `tcp` and lowers every well-formed
/// MSS option above `max`.
fn clamp_tcp(tcp: &mut [u8], max: u16, update_csum: bool) -> bool {
    let Some(&doff) = tcp.get(12) else {
        return false;
    };
    let hlen = usize::from(doff >> 4) * 4;
    if hlen <= TCP_HDR_LEN || hlen > tcp.len() {
        return false;
    }
    let mut changed = false;
    let mut i = TCP_HDR_LEN;
    while i < hlen {
        match tcp[i] {
            OPT_EOL => break,
            OPT_NOP => i += 1,
            kind => {
                let Some(&len) = tcp.get(i + 1).filter(|_| i + 1 < hlen) else {
                    break;
                };
                let len = usize::from(len);
                if len < 2 || i + len > hlen {
                    break;
                }
                if kind == OPT_MSS && len == OPT_MSS_LEN {
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old > max {
                        tcp[i + 2..i + 4].copy_from_slice(&max.to_be_bytes());
                        if update_csum {
                            let check = u16::from_be_bytes([tcp[16], tcp[17]]);
                            tcp[16..18].copy_from_slice(
                                &csum::replace_word(check, old, max).to_be_bytes(),
                            );
                        }
                        changed = true;
                    }
                }
                i += len;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent RFC 1071 sum (byte pairs, folded at the end), not the crate's csum.
    fn sum16(data: &[u8]) -> u32 {
        let mut s: u32 = 0;
        for c in data.chunks(2) {
            let w = u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
            s += w;
        }
        s
    }

    fn fold(mut s: u32) -> u16 {
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    fn pseudo(pkt: &[u8]) -> (u32, usize) {
        if pkt[0] >> 4 == 4 {
            let ihl = usize::from(pkt[0] & 15) * 4;
            let len = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])) - ihl;
            (sum16(&pkt[12..20]) + 6 + len as u32, ihl)
        } else {
            let len = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            (sum16(&pkt[8..40]) + 6 + len as u32, 40)
        }
    }

    /// True if the TCP checksum of `pkt` verifies (sum over pseudo-header and segment is
    /// 0xffff).
    fn tcp_csum_ok(pkt: &[u8]) -> bool {
        let (p, off) = pseudo(pkt);
        fold(p + sum16(&pkt[off..])) == 0xffff
    }

    fn set_tcp_csum(pkt: &mut [u8]) {
        let (p, off) = pseudo(pkt);
        pkt[off + 16] = 0;
        pkt[off + 17] = 0;
        let c = !fold(p + sum16(&pkt[off..]));
        pkt[off + 16..off + 18].copy_from_slice(&c.to_be_bytes());
    }

    /// TCP header with `opts` (padded to 4 bytes) and `flags`, plus `payload`.
    fn tcp(flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut o = opts.to_vec();
        while o.len() % 4 != 0 {
            o.push(0);
        }
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&443u16.to_be_bytes());
        t[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        t[12] = (((20 + o.len()) / 4) as u8) << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(&o);
        t.extend_from_slice(payload);
        t
    }

    fn v4(ip_opts: &[u8], seg: &[u8]) -> Vec<u8> {
        assert_eq!(ip_opts.len() % 4, 0);
        let ihl = 20 + ip_opts.len();
        let mut p = vec![0u8; ihl];
        p[0] = 0x40 | (ihl / 4) as u8;
        p[2..4].copy_from_slice(&((ihl + seg.len()) as u16).to_be_bytes());
        p[6] = 0x40; // DF
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 8, 0, 2]);
        p[16..20].copy_from_slice(&[93, 184, 216, 34]);
        p[20..].copy_from_slice(ip_opts);
        p.extend_from_slice(seg);
        set_tcp_csum(&mut p);
        p
    }

    fn v6(seg: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(seg.len() as u16).to_be_bytes());
        p[6] = 6;
        p[7] = 64;
        p[8..24].copy_from_slice(&[0xfd, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        p[24..40].copy_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(seg);
        set_tcp_csum(&mut p);
        p
    }

    const SYN: u8 = 0x02;
    const SYN_ACK: u8 = 0x12;
    const ACK: u8 = 0x10;
    /// Linux's SYN options: MSS 1460, SACK-permitted, timestamps, NOP, window scale.
    const LINUX_OPTS: [u8; 20] = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 10,
    ];

    fn be16(pkt: &[u8], off: usize) -> u16 {
        u16::from_be_bytes([pkt[off], pkt[off + 1]])
    }

    #[test]
    fn syn_mss_1460_clamped_to_default_limit_with_valid_checksum() {
        let max = mss_limit(
            MSSFIX_DEFAULT,
            MssfixMode::Mtu,
            Link::Udp4,
            AEAD_OVERHEAD_V2,
        );
        assert_eq!(max, 1400);
        let mut p = v4(&[], &tcp(SYN, &LINUX_OPTS, &[]));
        assert!(tcp_csum_ok(&p));
        let before = p.clone();
        assert!(clamp(&mut p, max, v6_limit(max)));
        assert_eq!(be16(&p, 42), 1400);
        assert!(tcp_csum_ok(&p), "checksum broken after clamp");
        // Only the MSS value and the checksum changed.
        let diff: Vec<usize> = (0..p.len()).filter(|&i| p[i] != before[i]).collect();
        assert!(
            diff.iter().all(|&i| [42, 43, 36, 37].contains(&i)),
            "{diff:?}"
        );
        // Idempotent.
        assert!(!clamp(&mut p, max, v6_limit(max)));
    }

    #[test]
    fn checksum_matches_full_recompute_over_many_values() {
        for (old, new) in [
            (1460u16, 1400u16),
            (0xffff, 536),
            (65535, 1),
            (1461, 1460),
            (9000, 1380),
        ] {
            for seed in 0u8..=255 {
                let mut opts = vec![2, 4];
                opts.extend_from_slice(&old.to_be_bytes());
                let mut p = v4(&[], &tcp(SYN, &opts, &[seed, seed.wrapping_mul(7), 3]));
                assert!(clamp(&mut p, new, 1000) == (old > new));
                let mut r = p.clone();
                set_tcp_csum(&mut r);
                assert!(tcp_csum_ok(&p), "{old}->{new} seed {seed}");
                // Equal as numbers except the +0/-0 ambiguity of one's complement.
                let (a, b) = (be16(&p, 36), be16(&r, 36));
                assert!(
                    a == b || (a ^ b == 0xffff && (a == 0 || b == 0)),
                    "{a:#x} {b:#x}"
                );
            }
        }
    }

    #[test]
    fn smaller_mss_left_alone() {
        let mut p = v4(&[], &tcp(SYN, &[2, 4, 0x05, 0x00], &[])); // 1280
        let before = p.clone();
        assert!(!clamp(&mut p, 1400, 1380));
        assert_eq!(p, before);
        let mut p = v4(&[], &tcp(SYN, &[2, 4, 0x05, 0x78], &[])); // exactly 1400
        assert!(!clamp(&mut p, 1400, 1380));
    }

    #[test]
    fn syn_ack_clamped() {
        let mut p = v4(&[], &tcp(SYN_ACK, &LINUX_OPTS, &[]));
        assert!(clamp(&mut p, 1400, 1380));
        assert_eq!(be16(&p, 42), 1400);
        assert!(tcp_csum_ok(&p));
    }

    #[test]
    fn non_syn_untouched() {
        // An ACK that (oddly) carries an MSS option is not a SYN.
        for flags in [ACK, 0x18, 0x11, 0x04, 0] {
            let mut p = v4(&[], &tcp(flags, &LINUX_OPTS, b"data"));
            let before = p.clone();
            assert!(!clamp(&mut p, 1400, 1380));
            assert_eq!(p, before);
        }
    }

    #[test]
    fn ipv6_syn_clamped_to_v6_limit() {
        let mut p = v6(&tcp(SYN, &LINUX_OPTS, &[]));
        assert!(tcp_csum_ok(&p));
        assert!(clamp(&mut p, 1400, 1380));
        assert_eq!(be16(&p, 62), 1380);
        assert!(tcp_csum_ok(&p));
        // Extension header before TCP (hop-by-hop): left alone.
        let mut q = v6(&tcp(SYN, &LINUX_OPTS, &[]));
        q[6] = 0;
        assert!(!clamp(&mut q, 1400, 1380));
    }

    #[test]
    fn nops_and_other_options_before_mss() {
        let opts = [1, 1, 4, 2, 1, 3, 3, 7, 2, 4, 0x23, 0x28]; // ..., MSS 9000
        let mut p = v4(&[], &tcp(SYN, &opts, &[]));
        assert!(clamp(&mut p, 1400, 1380));
        assert_eq!(be16(&p, 20 + 20 + 10), 1400);
        assert!(tcp_csum_ok(&p));
        // MSS after EOL is not an option.
        let mut p = v4(&[], &tcp(SYN, &[0, 0, 0, 0, 2, 4, 0x23, 0x28], &[]));
        assert!(!clamp(&mut p, 1400, 1380));
        // Malformed MSS length is skipped; a later good one is still clamped.
        let mut p = v4(&[], &tcp(SYN, &[2, 3, 0x23, 1, 2, 4, 0x23, 0x28], &[]));
        assert!(clamp(&mut p, 1400, 1380));
        assert_eq!(be16(&p, 46), 1400);
        assert_eq!(be16(&p, 42), 0x2301);
        assert!(tcp_csum_ok(&p));
    }

    #[test]
    fn ipv4_options_and_fragments() {
        // IHL 6 (a 4-byte IP option: NOP NOP NOP EOL).
        let mut p = v4(&[1, 1, 1, 0], &tcp(SYN, &LINUX_OPTS, &[]));
        assert!(clamp(&mut p, 1400, 1380));
        assert_eq!(be16(&p, 46), 1400);
        assert!(tcp_csum_ok(&p));
        // First fragment (MF set, offset 0) is clamped; a later fragment is not.
        let mut p = v4(&[], &tcp(SYN, &LINUX_OPTS, &[]));
        p[6] = 0x20;
        assert!(clamp(&mut p, 1400, 1380));
        let mut p = v4(&[], &tcp(SYN, &LINUX_OPTS, &[]));
        p[6] = 0x20;
        p[7] = 0x01;
        assert!(!clamp(&mut p, 1400, 1380));
        // UDP is not touched.
        let mut p = v4(&[], &tcp(SYN, &LINUX_OPTS, &[]));
        p[9] = 17;
        assert!(!clamp(&mut p, 1400, 1380));
        // Total length beyond the buffer (truncated): untouched.
        let mut p = v4(&[], &tcp(SYN, &LINUX_OPTS, &[]));
        p.truncate(p.len() - 1);
        assert!(!clamp(&mut p, 1400, 1380));
    }

    #[test]
    fn zero_limit_means_no_clamp() {
        let mut p = v4(&[], &tcp(SYN, &LINUX_OPTS, &[]));
        assert!(!clamp(&mut p, 0, 1380));
        let mut p = v6(&tcp(SYN, &LINUX_OPTS, &[]));
        assert!(!clamp(&mut p, 1400, 0));
    }

    #[test]
    fn partial_checksum_left_for_offload_to_complete() {
        // As read from a tun with offload: the field holds the folded pseudo-header sum.
        let mut p = v4(&[], &tcp(SYN, &LINUX_OPTS, &[]));
        let (ps, off) = pseudo(&p);
        p[off + 16..off + 18].copy_from_slice(&fold(ps).to_be_bytes());
        let partial = p.clone();
        assert!(clamp_partial_csum(&mut p, 1400, 1380));
        assert_eq!(be16(&p, 42), 1400);
        assert_eq!(
            p[36..38],
            partial[36..38],
            "partial checksum field must stay"
        );
        // "Offload": complete the checksum from the seed over the segment as it is now.
        let c = !fold(sum16(&p[off..]));
        p[off + 16..off + 18].copy_from_slice(&c.to_be_bytes());
        assert!(tcp_csum_ok(&p));
        // The full-checksum update on the partial packet would give a wrong result.
        let mut q = partial.clone();
        assert!(clamp(&mut q, 1400, 1380));
        let c = !fold(sum16(&q[off..]));
        q[off + 16..off + 18].copy_from_slice(&c.to_be_bytes());
        assert!(!tcp_csum_ok(&q));
    }

    #[test]
    fn garbage_and_truncated_never_panic() {
        let good = [
            v4(&[], &tcp(SYN, &LINUX_OPTS, &[])),
            v4(&[1, 1, 1, 0], &tcp(SYN_ACK, &LINUX_OPTS, b"x")),
            v6(&tcp(SYN, &LINUX_OPTS, &[])),
        ];
        // Every truncation of valid SYNs (headers claim more than there is).
        for g in &good {
            for n in 0..=g.len() {
                let mut p = g[..n].to_vec();
                clamp(&mut p, 1400, 1380);
                clamp_partial_csum(&mut p, 1, 1);
            }
        }
        // Random mutations of valid SYNs and pure random bytes (xorshift, fixed seed).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200_000 {
            let mut p = if round % 4 == 0 {
                let n = (rnd() % 120) as usize;
                let mut v: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
                if let Some(b) = v.first_mut() {
                    *b = if rnd() % 2 == 0 { 0x45 } else { 0x60 } | (*b & 0x0f);
                }
                v
            } else {
                let mut v = good[(rnd() % 3) as usize].clone();
                for _ in 0..1 + rnd() % 4 {
                    let i = (rnd() as usize) % v.len();
                    v[i] = rnd() as u8;
                }
                let keep = v.len() - (rnd() as usize % 8).min(v.len());
                v.truncate(keep);
                v
            };
            let max = (rnd() % 70_000).min(65535) as u16;
            clamp(&mut p, max, v6_limit(max));
            clamp_partial_csum(&mut p, max, 0);
        }
    }

    #[test]
    fn limits_match_openvpn_2_6_14_measurements() {
        // Measured with OpenVPN 2.6.14, AES-256-GCM, tls-crypt, peer-id (P_DATA_V2):
        // MSS seen on the far tun for a 1460 SYN / SYN-ACK.
        let v2 = AEAD_OVERHEAD_V2;
        let (m, mode) = default_mssfix(1500);
        assert_eq!((m, mode), (1492, MssfixMode::Mtu));
        // tun-mtu 1500, UDP over IPv4 (default mssfix 1492 mtu): 1400 / IPv6 inner 1380.
        assert_eq!(mss_limit(m, mode, Link::Udp4, v2), 1400);
        assert_eq!(v6_limit(mss_limit(m, mode, Link::Udp4, v2)), 1380);
        // Same over UDP/IPv6 (also a v4 client of a dual-stack udp6 server): 1380 / 1360.
        assert_eq!(mss_limit(m, mode, Link::Udp6, v2), 1380);
        assert_eq!(v6_limit(mss_limit(m, mode, Link::Udp6, v2)), 1360);
        // `mssfix 1400`: 1336. `mssfix 1400 mtu`: 1308. `mssfix 1300 fixed`: 1260.
        assert_eq!(mss_limit(1400, MssfixMode::Payload, Link::Udp4, v2), 1336);
        assert_eq!(mss_limit(1400, MssfixMode::Mtu, Link::Udp4, v2), 1308);
        assert_eq!(mss_limit(1300, MssfixMode::Fixed, Link::Udp4, v2), 1260);
        // tun-mtu 1400, no mssfix: `mssfix 1400 fixed` -> 1360 / IPv6 inner 1340.
        let (m, mode) = default_mssfix(1400);
        assert_eq!((m, mode), (1400, MssfixMode::Fixed));
        assert_eq!(mss_limit(m, mode, Link::Udp4, v2), 1360);
        assert_eq!(v6_limit(mss_limit(m, mode, Link::Udp4, v2)), 1340);
    }

    #[test]
    fn limits_from_the_formula_not_measured() {
        // TCP link: 2-byte length prefix and 40 bytes of TCP/IPv4.
        assert_eq!(
            mss_limit(1492, MssfixMode::Mtu, Link::Tcp4, AEAD_OVERHEAD_V2),
            1386
        );
        assert_eq!(
            mss_limit(1492, MssfixMode::Payload, Link::Tcp6, AEAD_OVERHEAD_V2),
            1426
        );
        // No peer-id (P_DATA_V1): 3 bytes more.
        assert_eq!(
            mss_limit(1492, MssfixMode::Mtu, Link::Udp4, AEAD_OVERHEAD_V1),
            1403
        );
        // Disabled / nonsensical values saturate to 0 (no clamp).
        assert_eq!(
            mss_limit(0, MssfixMode::Mtu, Link::Udp4, AEAD_OVERHEAD_V2),
            0
        );
        assert_eq!(mss_limit(30, MssfixMode::Fixed, Link::Udp4, 0), 0);
        assert_eq!(
            mss_limit(u32::MAX, MssfixMode::Fixed, Link::Udp4, 0),
            u16::MAX
        );
        assert_eq!(v6_limit(10), 0);
    }
}
