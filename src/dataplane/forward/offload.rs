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

use super::super::gso::{MAX_BYTES, MAX_SEGMENTS};
use super::super::outputs::Dest;
use super::super::segment::{finish_checksum, Split};
use super::super::vnet::{VnetHdr, VNET_HDR_LEN};
use super::super::{gro_segments, on_udp_alone, Outputs};
use super::{Drop, Forwarder, Peer};

impl Forwarder {
    /// Reads the `virtio_net_hdr` before `buf[HEADROOM..HEADROOM + len]` (a packet from a
    /// vnet tun) and completes the packet's checksum if it is a single packet; a super-packet
    /// is left for [`Forwarder::seal_segments`]. `Err`: dropped and counted.
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
        let to = Dest::Udp(peer.remote());
        let lead_in = wire_start(peer);
        let mut batch: Option<Batch> = None;
        for i in 0..split.count() {
            let seg_len = split.segment_len(i);
            if batch.as_ref().is_some_and(|b| !b.fits(seg_len)) {
                if let Some(b) = batch.take() {
                    b.queue(to, out);
                }
            }
            let b = match batch.as_mut() {
                Some(b) => b,
                None => {
                    let Some(buf) = out.alloc() else {
                        out.stats.tx_dropped += 1;
                        return;
                    };
                    batch.insert(Batch::new(buf, lead_in))
                }
            };
            // Sealed in a view that starts so its wire bytes (which begin `lead_in` into
            // it) continue the batch exactly.
            let base = b.end - lead_in;
            let Some(sub) = b.buf.get_mut(base..) else {
                return;
            };
            let written = sub
                .get_mut(HEADROOM..HEADROOM + seg_len)
                .and_then(|dst| split.write(i, dst));
            if written != Some(seg_len) {
                self.drops.count(Drop::BadIp);
                continue;
            }
            if let Some((_, sealed)) = self.seal(peer, sub, seg_len) {
                b.push(base + sealed.end, sealed.len());
            }
        }
        if let Some(b) = batch {
            b.queue(to, out);
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
        // The coalescer itself declines everything when the tun has no vnet header.
        buf.get(start..start + len)
            .is_some_and(|pkt| self.coalescer.push(pkt, out))
    }
}

/// Sealed segments of one super-packet back to back in one pool buffer, to leave as one UDP
/// GSO send: every datagram `size` bytes but the last.
struct Batch {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    size: usize,
    count: usize,
}

impl Batch {
    fn new(buf: Box<[u8]>, start: usize) -> Self {
        Batch {
            buf,
            start,
            end: start,
            size: 0,
            count: 0,
        }
    }

    /// Whether one more segment of `seg_len` plaintext bytes stays within the kernel's GSO
    /// limits and the buffer (its plaintext lands HEADROOM after the batch's end).
    fn fits(&self, seg_len: usize) -> bool {
        self.count < MAX_SEGMENTS
            && self.end + HEADROOM + seg_len <= self.buf.len()
            && self.end - self.start + HEADROOM + seg_len <= MAX_BYTES
    }

    fn push(&mut self, end: usize, wire_len: usize) {
        if self.count == 0 {
            self.size = wire_len;
        }
        self.end = end;
        self.count += 1;
    }

    fn queue(self, to: Dest, out: &mut Outputs) {
        if self.count == 0 {
            out.recycle(self.buf);
            return;
        }
        let segment = if self.count > 1 { self.size as u16 } else { 0 };
        out.push_owned(to, self.buf, self.start..self.end, segment);
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
    for (off, n) in gro_segments(len, seg) {
        let v2 = buf
            .get(HEADROOM + off)
            .is_some_and(|b| b >> 3 == Opcode::DataV2 as u8);
        if v2 {
            let start = out.queued();
            if let Some(view) = buf.get_mut(off..) {
                f.udp_in(from, view, n, out);
            }
            out.shift_current(start, off);
        } else {
            on_udp_alone(f, from, buf.get(HEADROOM + off..HEADROOM + off + n), out);
        }
    }
}
