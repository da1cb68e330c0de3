//! TCP coalescing (GRO) for tun writes.
//!
//! The UDP→tun path decrypts batches that often carry consecutive segments of one TCP flow.
//! Instead of one tun write each, a [`Coalescer`] copies in-order segments of a flow into one
//! pool buffer (`virtio_net_hdr` + one IP packet with the payloads back to back) and queues
//! it as a single `GSO_TCPV4`/`GSO_TCPV6` write, which the kernel takes whole or cuts back
//! into `gso_size` segments whose headers it derives from the first one's.
//!
//! It owns at most [`MAX_FLOWS`] pending runs, each holding one buffer from `Outputs::alloc`
//! until emitted with `Outputs::push_owned`; nothing else is allocated.
//!
//! Invariants, after Linux `net/ipv4/tcp_offload.c` `tcp_gro_receive` (and the IP layers'
//! `inet_gro_receive`/`ipv6_gro_receive`), because re-segmentation replicates the first
//! segment's headers and advances only seq, IPv4 id and lengths:
//! - a run is one flow (IP version, addresses, ports) whose segments carry the same ACK
//!   number, window, TCP header length and option bytes, IPv4 TOS/TTL/DF (and consecutive
//!   ids without DF) or IPv6 traffic class/flow label/hop limit; no IP options, fragments
//!   or IPv6 extension headers; flags are ACK with optional PSH;
//! - a segment is appended only at the run's next seq, with a payload of at most the first
//!   one's (`gso_size`); a shorter or PSH segment closes the run; at most [`MAX_SEGMENTS`]
//!   segments, 65535 bytes of IP packet and one pool buffer;
//! - each segment's TCP checksum is verified first: the super-packet goes out with
//!   `F_NEEDS_CSUM`, which the kernel trusts, so a corrupt segment must take the normal path
//!   where the kernel checks (and drops) it;
//! - before a packet is refused, any pending run of its flow is emitted, so the caller's own
//!   write of it keeps the flow's order.
//!
//! Emission: one segment is a plain packet behind a zero header; a longer run gets its IP
//! lengths (and IPv4 header checksum) fixed, PSH if any segment had it, and as TCP checksum
//! the folded, uncomplemented pseudo-header sum, which the kernel completes (`F_NEEDS_CSUM`).

use std::net::IpAddr;

use super::csum;
use super::ip::{PROTO_TCP, TCP_ACK, TCP_PSH};
use super::outputs::{Buf, Dest, Outputs};
use super::vnet::{VnetHdr, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, VNET_HDR_LEN};

/// Flows with a pending super-packet at once; a new flow beyond this emits the oldest.
pub const MAX_FLOWS: usize = 8;
/// Segments per super-packet (Linux `MAX_GRO_SKBS`-like bound the tun also accepts).
pub const MAX_SEGMENTS: u16 = 64;

const MAX_IP_LEN: usize = 65535;

/// One flow: version, addresses (IPv4 in the first 4 bytes) and `sport << 16 | dport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Key {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    ports: u32,
}

impl Key {
    fn addrs(&self) -> (IpAddr, IpAddr) {
        let v4 = |b: &[u8; 16]| IpAddr::from([b[0], b[1], b[2], b[3]]);
        match self.v6 {
            true => (IpAddr::from(self.src), IpAddr::from(self.dst)),
            false => (v4(&self.src), v4(&self.dst)),
        }
    }
}

/// A segment that passed every per-packet check.
#[derive(Debug, Clone, Copy)]
struct Seg {
    key: Key,
    ip_len: usize,
    tcp_len: usize,
    seq: u32,
    psh: bool,
    payload: usize,
}

/// Why a packet was refused: `None` if no run is concerned (not TCP), else its key and
/// whether its ports were read (not: fragment or extension header, so all runs of the hosts).
type Reject = Option<(Key, bool)>;

/// One pending run.
struct Flow {
    buf: Buf,
    key: Key,
    ip_len: usize,
    tcp_len: usize,
    /// Bytes of IP packet in `buf[VNET_HDR_LEN..]`.
    len: usize,
    next_seq: u32,
    gso_size: usize,
    segs: u16,
    psh: bool,
    closed: bool,
    /// IPv4 id of the first segment (checked only without DF).
    first_id: u16,
    age: u64,
}

/// Pending super-packets of up to [`MAX_FLOWS`] TCP flows for the tun.
#[derive(Default)]
pub struct Coalescer {
    flows: [Option<Flow>; MAX_FLOWS],
    age: u64,
}

impl Coalescer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers one decrypted IP packet bound for the tun. true: taken (copied into a pending
    /// super-packet, possibly after emitting an older one). false: not taken (module doc;
    /// also no free buffer or no `virtio_net_hdr` on the tun); any pending run of the same
    /// flow was emitted into `out` first, so the caller's own write keeps the flow's order.
    pub fn push(&mut self, pkt: &[u8], out: &mut Outputs) -> bool {
        if !out.tun_vnet() {
            return false;
        }
        let seg = match parse(pkt) {
            Ok(s) => s,
            Err(None) => return false,
            Err(Some((k, ports))) => {
                let hosts = |f: &Key| (f.v6, f.src, f.dst) == (k.v6, k.src, k.dst);
                self.emit_where(out, |f| hosts(&f.key) && (!ports || f.key.ports == k.ports));
                return false;
            }
        };
        if let Some(f) = self.flows.iter_mut().flatten().find(|f| f.key == seg.key) {
            let in_order = f.next_seq == seg.seq;
            if in_order && f.fits(&seg, pkt) {
                f.append(&seg, pkt);
                return true;
            }
            // Out of order: refused; otherwise the run ends and `seg` starts the next one.
            self.emit_where(out, |f| f.key == seg.key);
            if !in_order {
                return false;
            }
        }
        self.start(seg, pkt, out)
    }

    /// Emits every pending super-packet into `out` (end of a batch).
    pub fn flush(&mut self, out: &mut Outputs) {
        self.emit_where(out, |_| true);
    }

    /// Number of pending runs.
    pub fn pending(&self) -> usize {
        self.flows.iter().filter(|f| f.is_some()).count()
    }

    /// Starts a run with `seg`; false (nothing kept) when it would be closed at once (PSH),
    /// does not fit a buffer, or no buffer is free.
    fn start(&mut self, seg: Seg, pkt: &[u8], out: &mut Outputs) -> bool {
        if seg.psh || VNET_HDR_LEN + pkt.len() > out.buf_len() {
            return false;
        }
        if self.pending() == MAX_FLOWS {
            let oldest = self.flows.iter().flatten().map(|f| f.age).min();
            self.emit_where(out, |f| Some(f.age) == oldest);
        }
        let Some(mut buf) = out.alloc() else {
            return false;
        };
        let Some(dst) = buf.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()) else {
            out.recycle(buf);
            return false;
        };
        dst.copy_from_slice(pkt);
        self.age += 1;
        let age = self.age;
        let Some(slot) = self.flows.iter_mut().find(|f| f.is_none()) else {
            out.recycle(buf);
            return false;
        };
        *slot = Some(Flow {
            buf,
            key: seg.key,
            ip_len: seg.ip_len,
            tcp_len: seg.tcp_len,
            len: pkt.len(),
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            gso_size: seg.payload,
            segs: 1,
            psh: false,
            closed: false,
            first_id: be16(pkt, 4).unwrap_or(0),
            age,
        });
        true
    }

    /// Emits every pending run `pred` selects.
    fn emit_where(&mut self, out: &mut Outputs, pred: impl Fn(&Flow) -> bool) {
        for slot in &mut self.flows {
            if let Some(f) = slot.take_if(|f| pred(f)) {
                f.emit(out);
            }
        }
    }
}

impl Flow {
    /// Whether in-order `seg` (its `pkt`) may be appended to this run.
    fn fits(&self, seg: &Seg, pkt: &[u8]) -> bool {
        let new_len = self.len + seg.payload;
        let room = new_len <= MAX_IP_LEN && VNET_HDR_LEN + new_len <= self.buf.len();
        if self.closed || !room || self.segs >= MAX_SEGMENTS || seg.payload > self.gso_size {
            return false;
        }
        let hl = self.ip_len + seg.tcp_len;
        let (Some(head), Some(hdrs)) =
            (self.buf.get(VNET_HDR_LEN..VNET_HDR_LEN + hl), pkt.get(..hl))
        else {
            return false;
        };
        let same = |r: std::ops::Range<usize>| head.get(r.clone()) == hdrs.get(r);
        let ip_ok = if self.key.v6 {
            same(0..4) && same(7..8)
        } else {
            let df = |h: &[u8]| h.get(6).map(|b| b & 0x40);
            let ids_ok = df(head) == Some(0x40)
                || be16(pkt, 4) == Some(self.first_id.wrapping_add(self.segs));
            same(1..2) && same(8..9) && df(head) == df(hdrs) && ids_ok
        };
        let t = self.ip_len;
        // ACK number, data offset (so TCP header length) + reserved bits, window, options.
        ip_ok && same(t + 8..t + 13) && same(t + 14..t + 16) && same(t + 20..t + self.tcp_len)
    }

    fn append(&mut self, seg: &Seg, pkt: &[u8]) {
        let at = VNET_HDR_LEN + self.len;
        let src = pkt.get(seg.ip_len + seg.tcp_len..).unwrap_or_default();
        let Some(dst) = self.buf.get_mut(at..at + src.len()) else {
            return;
        };
        dst.copy_from_slice(src);
        self.len += src.len();
        self.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        self.segs += 1;
        self.psh |= seg.psh;
        self.closed = seg.psh || seg.payload < self.gso_size;
    }

    /// Finishes the headers and queues the run as one tun write.
    fn emit(mut self, out: &mut Outputs) {
        let hdr = if self.segs < 2 || !self.fix_headers() {
            VnetHdr::default()
        } else {
            VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: if self.key.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                hdr_len: (self.ip_len + self.tcp_len) as u16,
                gso_size: self.gso_size as u16,
                csum_start: self.ip_len as u16,
                csum_offset: 16,
            }
        };
        hdr.write(&mut self.buf);
        out.push_owned(Dest::Tun, self.buf, 0..VNET_HDR_LEN + self.len, 0);
    }

    /// Sets IP lengths (IPv4 header checksum), PSH and the pseudo-header sum; false if the
    /// buffer is too short (never: `fits` checked it).
    fn fix_headers(&mut self) -> bool {
        let (src, dst) = self.key.addrs();
        let tcp_total = self.len - self.ip_len;
        let pseudo = csum::fold(csum::pseudo_header(src, dst, PROTO_TCP, tcp_total as u32));
        let Some(p) = self.buf.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + self.len) else {
            return false;
        };
        if self.key.v6 {
            put16(p, 4, tcp_total as u16);
        } else {
            put16(p, 2, self.len as u16);
            let c = csum::ipv4_header(p.get(..self.ip_len).unwrap_or(&[]));
            put16(p, 10, c);
        }
        let t = self.ip_len;
        if let (true, Some(flags)) = (self.psh, p.get_mut(t + 13)) {
            *flags |= TCP_PSH;
        }
        put16(p, t + 16, pseudo);
        true
    }
}

/// `N` bytes of `b` from `at` as an array (so constant indexing is checked at compile time).
fn fixed<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(d) = b.get_mut(at..at + 2) {
        d.copy_from_slice(&v.to_be_bytes());
    }
}

/// Checks one packet against every per-segment rule (including its TCP checksum).
fn parse(pkt: &[u8]) -> Result<Seg, Reject> {
    let mut key = Key::default();
    let ip_len;
    let ip_ok;
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let h: &[u8; 20] = fixed(pkt, 0).ok_or(None)?;
            if h[9] != PROTO_TCP {
                return Err(None);
            }
            key.src[..4].copy_from_slice(&h[12..16]);
            key.dst[..4].copy_from_slice(&h[16..20]);
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 || ihl < 20 {
                return Err(Some((key, false)));
            }
            ip_len = ihl;
            ip_ok = ihl == 20
                && be16(h, 2).map(usize::from) == Some(pkt.len())
                && csum::fold(csum::add(0, h)) == 0xffff;
        }
        Some(6) => {
            let h: &[u8; 40] = fixed(pkt, 0).ok_or(None)?;
            key.v6 = true;
            key.src.copy_from_slice(&h[8..24]);
            key.dst.copy_from_slice(&h[24..40]);
            match h[6] {
                PROTO_TCP => {}
                17 | 58 | 59 => return Err(None),
                _ => return Err(Some((key, false))),
            }
            ip_len = 40;
            ip_ok = be16(h, 4).map(|l| usize::from(l) + 40) == Some(pkt.len());
        }
        _ => return Err(None),
    }
    let tcp = pkt.get(ip_len..).ok_or(Some((key, false)))?;
    let ports: &[u8; 4] = fixed(tcp, 0).ok_or(Some((key, false)))?;
    key.ports = u32::from_be_bytes(*ports);
    let rej = Some((key, true));
    let th: &[u8; 20] = fixed(tcp, 0).ok_or(rej)?;
    let tcp_len = usize::from(th[12] >> 4) * 4;
    let flags = th[13];
    let flags_ok = flags & !(TCP_ACK | TCP_PSH) == 0 && flags & TCP_ACK != 0;
    if !ip_ok || !flags_ok || tcp_len < 20 || tcp.len() <= tcp_len || th[12] & 0x0f != 0 {
        return Err(rej);
    }
    let (src, dst) = key.addrs();
    let pseudo = csum::pseudo_header(src, dst, PROTO_TCP, tcp.len() as u32);
    if csum::fold(csum::add(pseudo, tcp)) != 0xffff {
        return Err(rej);
    }
    Ok(Seg {
        key,
        ip_len,
        tcp_len,
        seq: u32::from_be_bytes([th[4], th[5], th[6], th[7]]),
        psh: flags & TCP_PSH != 0,
        payload: tcp.len() - tcp_len,
    })
}

#[cfg(test)]
mod tests {
    use super::super::outputs::Data;
    use super::*;

    #[derive(Clone, Copy)]
    struct Spec {
        v6: bool,
        sport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        len: usize,
        ts: u32,
    }

    const BASE: Spec = Spec {
        v6: false,
        sport: 1000,
        seq: 1,
        ack: 77,
        flags: TCP_ACK,
        len: 1448,
        ts: 5,
    };

    fn full(i: usize) -> Vec<u8> {
        seg(i, |_| ())
    }

    /// Segment `i` of a run of full 1448-byte segments with timestamps, adjusted by `f`.
    fn seg(i: usize, f: impl FnOnce(&mut Spec)) -> Vec<u8> {
        let seq = 1 + (i * 1448) as u32;
        let mut s = Spec { seq, ..BASE };
        f(&mut s);
        let ip = if s.v6 { 40 } else { 20 };
        let mut p = vec![0u8; ip + 32 + s.len];
        if s.v6 {
            p[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, 6, 64]);
            (p[8], p[23], p[24], p[39]) = (0xfd, 1, 0xfd, 2);
        } else {
            p[..10].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6]);
            p[12..20].copy_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
            put16(&mut p, 4, 1 + i as u16);
        }
        p[ip..ip + 4].copy_from_slice(&(u32::from(s.sport) << 16 | 80).to_be_bytes());
        p[ip + 4..ip + 8].copy_from_slice(&s.seq.to_be_bytes());
        p[ip + 8..ip + 12].copy_from_slice(&s.ack.to_be_bytes());
        p[ip + 12..ip + 24].copy_from_slice(&[8 << 4, s.flags, 2, 0, 0, 0, 0, 0, 1, 1, 8, 10]);
        p[ip + 24..ip + 28].copy_from_slice(&s.ts.to_be_bytes());
        p[ip + 31] = 9;
        let fill = |(k, b): (usize, &mut u8)| *b = (s.seq as usize + k) as u8;
        p[ip + 32..].iter_mut().enumerate().for_each(fill);
        fix(&mut p, ip);
        p
    }

    /// The pseudo-header sum of TCP packet `p`, computed from its bytes.
    fn pseudo(p: &[u8], ip: usize) -> u64 {
        let n = p.len() - ip;
        let addrs = if ip == 40 { &p[8..40] } else { &p[12..20] };
        csum::add(csum::add(0, addrs), &[0, 6, (n >> 8) as u8, n as u8])
    }

    /// Sets IP lengths and checksums and the TCP checksum of `p`.
    fn fix(p: &mut [u8], ip: usize) {
        let n = p.len();
        if ip == 40 {
            put16(p, 4, (n - 40) as u16);
        } else {
            put16(p, 2, n as u16);
            put16(p, 10, csum::ipv4_header(&p[..20]));
        }
        put16(p, ip + 16, 0);
        put16(p, ip + 16, csum::finish(csum::add(pseudo(p, ip), &p[ip..])));
    }

    /// A coalescer and a detached tun output with a vnet header.
    struct T {
        c: Coalescer,
        o: Outputs,
    }

    impl T {
        fn new(buf_len: usize, max_buffers: usize) -> T {
            let mut o = Outputs::new_detached(buf_len, max_buffers);
            o.set_tun_vnet(true);
            T {
                c: Coalescer::new(),
                o,
            }
        }

        fn push(&mut self, p: &[u8]) -> bool {
            self.c.push(p, &mut self.o)
        }

        fn state(&self) -> (usize, usize) {
            (self.c.pending(), self.o.ops.len())
        }

        /// Flushes, then every queued tun write as (header, IP packet).
        fn writes(&mut self) -> Vec<(VnetHdr, Vec<u8>)> {
            self.c.flush(&mut self.o);
            let w = |op: &super::super::outputs::Op| match &op.data {
                Data::Owned(b, r) if op.dest == Dest::Tun => {
                    let w = &b[r.clone()];
                    (VnetHdr::parse(w).unwrap(), w[VNET_HDR_LEN..].to_vec())
                }
                _ => panic!("unexpected op"),
            };
            self.o.ops.iter().map(w).collect()
        }

        fn lens(&mut self) -> Vec<usize> {
            self.writes().iter().map(|w| w.1.len()).collect()
        }
    }

    /// What the kernel does with a GSO_TCP super-packet: one segment per `gso_size`.
    fn resegment(h: VnetHdr, sp: &[u8]) -> Vec<Vec<u8>> {
        let [hl, ip, gso] = [h.hdr_len, h.csum_start, h.gso_size].map(usize::from);
        let seq0 = u32::from_be_bytes(sp[ip + 4..ip + 8].try_into().unwrap());
        let (id0, psh) = (be16(sp, 4).unwrap(), sp[ip + 13] & TCP_PSH);
        let n = sp[hl..].chunks(gso).count();
        let cut = |(i, c): (usize, &[u8])| {
            let mut p = [&sp[..hl], c].concat();
            p[ip + 4..ip + 8].copy_from_slice(&seq0.wrapping_add((i * gso) as u32).to_be_bytes());
            p[ip + 13] = (p[ip + 13] & !TCP_PSH) | if i + 1 == n { psh } else { 0 };
            put16(&mut p, 4, id0.wrapping_add(i as u16)); // IPv6: payload length, fixed next
            fix(&mut p, ip);
            p
        };
        sp[hl..].chunks(gso).enumerate().map(cut).collect()
    }

    #[test]
    fn ten_segments_become_one_super_packet() {
        for v6 in [false, true] {
            let (mut t, ip) = (T::new(16 * 1024, 8), if v6 { 40 } else { 20 });
            let flags = |i| if i == 9 { 0x18 } else { 0x10 };
            let segs = (0..10).map(|i| seg(i, |s| (s.v6, s.flags) = (v6, flags(i))));
            let segs: Vec<Vec<u8>> = segs.collect();
            assert!(segs.iter().all(|p| t.push(p)), "v6 {v6}");
            assert_eq!(t.state(), (1, 0));
            let w = t.writes();
            assert_eq!((t.c.pending(), w.len()), (0, 1));
            let (h, sp) = &w[0];
            let (kind, ip16) = (if v6 { GSO_TCPV6 } else { GSO_TCPV4 }, ip as u16);
            assert_eq!((h.flags, h.gso_type), (F_NEEDS_CSUM, kind));
            let got = [h.hdr_len, h.gso_size, h.csum_start, h.csum_offset];
            assert_eq!(got, [ip16 + 32, 1448, ip16, 16]);
            assert_eq!(sp.len(), ip + 32 + 10 * 1448);
            if v6 {
                assert_eq!(be16(sp, 4), Some((sp.len() - 40) as u16));
            } else {
                assert_eq!(be16(sp, 2), Some(sp.len() as u16));
                assert_eq!(csum::finish(csum::add(0, &sp[..20])), 0, "IPv4 header csum");
            }
            assert_ne!(sp[ip + 13] & TCP_PSH, 0);
            let payload: Vec<u8> = segs.iter().flat_map(|p| p[ip + 32..].to_vec()).collect();
            assert_eq!(&sp[ip + 32..], &payload[..]);
            assert_eq!(be16(sp, ip + 16), Some(csum::fold(pseudo(sp, ip))));
            // Completing the checksum with NEEDS_CSUM semantics makes the packet valid.
            let mut done = sp.clone();
            put16(&mut done, ip + 16, csum::finish(csum::add(0, &sp[ip..])));
            assert_eq!(csum::fold(csum::add(pseudo(sp, ip), &done[ip..])), 0xffff);
            assert_eq!(resegment(*h, sp), segs, "cut back into the originals");
        }
    }

    #[test]
    fn out_of_order_or_bad_checksum_emits_the_run_first() {
        let mut t = T::new(16 * 1024, 8);
        assert!((0..3).all(|i| t.push(&full(i))));
        assert!(!t.push(&full(5)), "gap");
        assert_eq!(t.state(), (0, 1));
        assert!(t.push(&full(6)));
        assert!(!t.push(&full(6)), "retransmission");
        let (mut bad, mut bad_ip) = (full(8), full(7));
        *bad.last_mut().unwrap() ^= 1;
        bad_ip[8] = 1; // TTL changed without fixing the header checksum
        assert!(
            !t.push(&bad_ip) && t.push(&full(7)),
            "bad IPv4 header checksum"
        );
        assert!(!t.push(&bad), "bad TCP checksum");
        assert_eq!(t.lens(), [52 + 3 * 1448, 52 + 1448, 52 + 1448]);
    }

    #[test]
    fn interleaved_flows_make_two_super_packets() {
        let mut t = T::new(16 * 1024, 8);
        assert!((0..5).all(|i| t.push(&full(i)) && t.push(&seg(i, |s| s.sport = 2000))));
        let w = t.writes();
        let got = w.iter().map(|(h, p)| (h.gso_kind(), p.len(), be16(p, 20)));
        let len = 52 + 5 * 1448;
        assert!(got.eq([(GSO_TCPV4, len, Some(1000)), (GSO_TCPV4, len, Some(2000))]));
    }

    #[test]
    fn control_segments_are_refused_and_flush_their_flow() {
        let mut t = T::new(16 * 1024, 8);
        let mut udp = full(1);
        udp[9] = 17;
        assert!(t.push(&full(0)) && !t.push(&udp), "not TCP");
        assert_eq!(t.state(), (1, 0), "unrelated: run kept");
        for flags in [0x11, 0x02, 0x14, 0x30, 0x50, 0x90, 0] {
            assert!(!t.push(&seg(1, |s| s.flags = flags)), "{flags:#x}");
        }
        assert!(!t.push(&seg(1, |s| s.len = 0)), "pure ACK");
        assert_eq!(t.writes(), [(VnetHdr::default(), full(0))], "FIN emitted");
        // An IPv4 fragment between the same hosts flushes their runs too.
        let mut frag = full(2);
        frag[6] = 0x20;
        assert!(t.push(&full(1)) && !t.push(&frag));
        assert_eq!(t.state(), (0, 2));
    }

    #[test]
    fn shorter_or_psh_segment_closes_the_run() {
        let mut t = T::new(16 * 1024, 8);
        let at = |k: usize, len: usize, flags: u8| {
            seg(2, |s| (s.seq, s.len, s.flags) = (1 + k as u32, len, flags))
        };
        let b = 2 * 1448;
        assert!(t.push(&full(0)) && t.push(&full(1)));
        assert!(t.push(&at(b, 1000, 0x10)), "short one appended");
        assert!(t.push(&at(b + 1000, 1000, 0x10)), "new run");
        assert_eq!(t.state(), (1, 1));
        // A larger segment than gso_size restarts.
        assert!(t.push(&at(b + 2000, 1200, 0x10)));
        assert_eq!(t.state(), (1, 2));
        assert!(t.push(&at(b + 3200, 1200, 0x18)), "PSH appended, closing");
        assert!(!t.push(&at(b + 4400, 1200, 0x18)), "PSH head not held");
        assert_eq!(t.lens(), [52 + 2 * 1448 + 1000, 52 + 1000, 52 + 2400]);
    }

    #[test]
    fn header_changes_start_a_new_run() {
        let mut t = T::new(16 * 1024, 8);
        assert!(t.push(&full(0)) && t.push(&seg(1, |s| s.ts = 6)));
        assert_eq!(t.state(), (1, 1), "timestamp changed");
        assert!(t.push(&seg(2, |s| (s.ts, s.ack) = (6, 99))));
        assert_eq!(t.state(), (1, 2), "ACK changed");
        let no_df = |i: usize, id: u16| {
            let mut p = seg(i, |s| (s.ts, s.ack) = (6, 99));
            (p[4], p[5], p[6]) = ((id >> 8) as u8, id as u8, 0);
            fix(&mut p, 20);
            p
        };
        assert!(t.push(&no_df(3, 500)) && t.push(&no_df(4, 501)));
        assert_eq!(t.state(), (1, 3), "DF changed; consecutive ids coalesce");
        assert!(t.push(&no_df(5, 700)));
        assert_eq!(t.state(), (1, 4), "id not consecutive without DF");
    }

    #[test]
    fn size_limits_are_respected() {
        // The 65535-byte IP limit: 45 full segments fit (52 + 45 * 1448 = 65212).
        let mut t = T::new(70_000, 8);
        assert!((0..50).all(|i| t.push(&full(i))));
        assert_eq!(t.lens(), [52 + 45 * 1448, 52 + 5 * 1448]);
        // The buffer: 11 segments in 16 KiB.
        let mut t = T::new(16 * 1024, 8);
        assert!((0..12).all(|i| t.push(&full(i))));
        assert_eq!(t.lens(), [52 + 11 * 1448, 52 + 1448]);
        assert_eq!(t.writes()[1].0, VnetHdr::default());
        // The segment count.
        let mut t = T::new(16 * 1024, 8);
        let small = |i: usize| seg(i, |s| (s.seq, s.len) = (1 + 100 * i as u32, 100));
        assert!((0..70).all(|i| t.push(&small(i))));
        assert_eq!(t.lens(), [52 + 64 * 100, 52 + 6 * 100]);
    }

    #[test]
    fn oldest_flow_is_evicted_beyond_max_flows() {
        let mut t = T::new(16 * 1024, 16);
        assert!((0..MAX_FLOWS as u16).all(|f| t.push(&seg(0, |s| s.sport = 1000 + f))));
        assert_eq!(t.state(), (MAX_FLOWS, 0));
        assert!(t.push(&seg(0, |s| s.sport = 5000)));
        assert_eq!(t.state(), (MAX_FLOWS, 1));
        assert_eq!(be16(&t.writes()[0].1, 20), Some(1000));
    }

    #[test]
    fn single_segment_is_a_plain_packet() {
        for v6 in [false, true] {
            let (mut t, p) = (T::new(16 * 1024, 8), seg(0, |s| s.v6 = v6));
            assert!(t.push(&p));
            assert_eq!(t.writes(), [(VnetHdr::default(), p)]);
        }
    }

    #[test]
    fn no_vnet_header_or_no_buffer_means_no_coalescing() {
        let mut t = T::new(16 * 1024, 1);
        t.o.set_tun_vnet(false);
        assert!(!t.push(&full(0)));
        t.o.set_tun_vnet(true);
        assert!(t.push(&full(0)));
        assert!(!t.push(&seg(0, |s| s.sport = 9)), "pool empty");
        assert_eq!(t.state(), (1, 0));
    }

    #[test]
    fn hostile_input_never_panics() {
        let mut t = T::new(16 * 1024, 64);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) as usize
        };
        let good = [seg(0, |s| s.len = 300), seg(0, |s| s.v6 = true)];
        assert!(good.iter().all(|p| (0..p.len()).all(|n| !t.push(&p[..n]))));
        let mut buf = [0u8; 1600];
        for round in 0..20_000 {
            let src = &good[round % 2];
            buf[..src.len()].copy_from_slice(src);
            for _ in 0..1 + rnd() % 3 {
                buf[rnd() % src.len()] = rnd() as u8;
            }
            if round % 5 == 0 {
                buf[1..].iter_mut().for_each(|b| *b = rnd() as u8);
            }
            let _ = t.push(&buf[..rnd() % (src.len() + 1)]);
            t.o.discard();
        }
        t.c.flush(&mut t.o);
        assert_eq!(t.c.pending(), 0);
    }
}
