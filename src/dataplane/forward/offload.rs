//! The forwarder's offload paths: tun super-packets cut into segments and sealed straight
//! into one UDP GSO buffer, partial checksums completed, decrypted TCP segments coalesced
//! for the tun, and UDP GRO batches opened where they lie.
//!
//! Anti-spoofing and routing see the same addresses for every segment: the segments of a
//! super-packet share its IP header (only lengths, IDs and sequence numbers differ), and a
//! coalesced super-packet only ever holds segments that each passed the source check on
//! their own in [`Forwarder::udp_in`].

use std::net::SocketAddr;

use crate::proto::data::HEADROOM;
use crate::proto::wire::Opcode;

use super::super::outputs::Dest;
use super::super::segment::{finish_checksum, Split};
use super::super::vnet::{VnetHdr, VNET_HDR_LEN};
use super::super::{Outputs, ShardHandler};
use super::{Drop, Forwarder, Peer};

impl Forwarder {
    /// Makes `buf[HEADROOM..HEADROOM + len]` (read from a vnet tun) one ordinary packet, or
    /// sends it as segments for `peer` itself. Returns whether the caller still has a single
    /// packet to seal.
    pub(super) fn tun_packet_ready(&mut self, buf: &mut [u8], len: usize) -> Result<VnetHdr, ()> {
        let hdr = buf
            .get(HEADROOM - VNET_HDR_LEN..HEADROOM)
            .and_then(VnetHdr::parse)
            .unwrap_or_default();
        if hdr.is_single() && hdr.needs_csum() {
            let pkt = buf.get_mut(HEADROOM..HEADROOM + len).ok_or(())?;
            if finish_checksum(&hdr, pkt).is_err() {
                self.drops.count(Drop::BadIp);
                return Err(());
            }
        }
        Ok(hdr)
    }

    /// Cuts the super-packet `buf[HEADROOM..HEADROOM + len]` into segments sealed for `peer`
    /// back to back in one pool buffer, queued as one UDP GSO output.
    pub(super) fn seal_segments(
        &mut self,
        peer: &Peer,
        hdr: &VnetHdr,
        buf: &[u8],
        len: usize,
        out: &mut Outputs,
    ) {
        let Some(pkt) = buf.get(HEADROOM..HEADROOM + len) else {
            return;
        };
        let split = match Split::new(hdr, pkt) {
            Ok(s) => s,
            Err(_) => {
                self.drops.count(Drop::BadIp);
                return;
            }
        };
        let mut gso: Option<(Box<[u8]>, std::ops::Range<usize>, usize)> = None;
        for i in 0..split.count() {
            // Wire bytes of segment 0 set the datagram size of the batch; the kernel's
            // GSO limits (segments, bytes) start a new batch.
            let seg_len = split.segment_len(i);
            let full = gso.as_ref().is_some_and(|(b, r, size)| {
                r.len() / size.max(&1) >= super::super::gso::MAX_SEGMENTS
                    || r.end + HEADROOM + seg_len > b.len().min(super::super::gso::MAX_BYTES)
            });
            if full {
                if let Some((b, r, size)) = gso.take() {
                    out.push_owned(Dest::Udp(peer.remote()), b, r, size as u16);
                }
            }
            if gso.is_none() {
                let Some(b) = out.alloc() else {
                    out.stats.tx_dropped += 1;
                    return;
                };
                gso = Some((b, 0..0, 0));
            }
            let Some((b, r, size)) = gso.as_mut() else {
                return;
            };
            // Segment i's sealed bytes must start where the batch ends: its plaintext goes
            // HEADROOM later, minus the header bytes a V1 packet leaves unused.
            let lead = if r.start == r.end {
                0
            } else {
                r.end - wire_start(peer)
            };
            let Some(sub) = b.get_mut(lead..) else {
                return;
            };
            let written = sub
                .get_mut(HEADROOM..HEADROOM + seg_len)
                .and_then(|dst| split.write(i, dst));
            if written != Some(seg_len) {
                self.drops.count(Drop::BadIp);
                continue;
            }
            let Some((_, sealed)) = self.seal(peer, sub, seg_len) else {
                continue;
            };
            let sealed = lead + sealed.start..lead + sealed.end;
            if r.start == r.end {
                *size = sealed.len();
                *r = sealed;
            } else {
                r.end = sealed.end;
            }
        }
        if let Some((b, r, size)) = gso {
            let segment = if r.len() > size { size as u16 } else { 0 };
            out.push_owned(Dest::Udp(peer.remote()), b, r, segment);
        }
    }

    /// Offers a decrypted packet bound for the tun to the coalescer; true if it took it.
    pub(super) fn coalesce(
        &mut self,
        buf: &[u8],
        start: usize,
        len: usize,
        out: &mut Outputs,
    ) -> bool {
        match buf.get(start..start + len) {
            Some(pkt) if out.tun_vnet() => self.coalescer.push(pkt, out),
            _ => false,
        }
    }
}

/// Offset of the sealed bytes in a buffer sealed with `seal_in_place`: 0 for P_DATA_V2,
/// 3 for P_DATA_V1 (its header is 3 bytes shorter).
fn wire_start(peer: &Peer) -> usize {
    if peer.data_v2 {
        0
    } else {
        3
    }
}

/// The GRO batch path: datagrams are opened where they lie when they are P_DATA_V2, whose
/// processing never writes before the datagram (its own 24 header bytes take the re-seal
/// header and the tun header); anything else goes through a buffer of its own.
pub(super) fn udp_gro(
    f: &mut Forwarder,
    from: SocketAddr,
    buf: &mut [u8],
    len: usize,
    seg: usize,
    out: &mut Outputs,
) {
    let seg = seg.max(1);
    let mut off = 0;
    while off < len {
        let n = seg.min(len - off);
        let v2 = buf
            .get(HEADROOM + off)
            .is_some_and(|b| b >> 3 == Opcode::DataV2 as u8);
        if v2 {
            let start = out.queued();
            if let Some(view) = buf.get_mut(off..) {
                f.udp_in(from, view, n, out);
            }
            out.shift_current(start, off);
        } else if let (Some(src), Some(mut b)) =
            (buf.get(HEADROOM + off..HEADROOM + off + n), out.alloc())
        {
            if let Some(dst) = b.get_mut(HEADROOM..HEADROOM + n) {
                dst.copy_from_slice(src);
            }
            let start = out.queued();
            f.on_udp(from, &mut b, n, out);
            if let Some(b) = out.resolve_current(start, b) {
                out.recycle(b);
            }
        }
        off += n;
    }
}
