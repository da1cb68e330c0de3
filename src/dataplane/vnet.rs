//! The `virtio_net_hdr` that a tun opened with `IFF_VNET_HDR` puts before every packet it
//! hands out and expects before every packet written to it (Linux
//! `include/uapi/linux/virtio_net.h`, legacy 10-byte layout, native byte order).
//!
//! With `TUNSETOFFLOAD` the kernel may hand fwd packets whose TCP/UDP checksum is only the
//! pseudo-header sum (`F_NEEDS_CSUM`: "finish it from `csum_start`, store at
//! `csum_start + csum_offset`") and TCP/UDP super-packets of up to 64 KiB to be cut into
//! `gso_size`-byte segments (`gso_type` TCPV4/TCPV6/UDP_L4). Writing works the same way
//! back: fwd hands the kernel coalesced super-packets described by this header.

/// Bytes of the header on the wire (the tun default `TUNSETVNETHDRSZ`).
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the rest is to be added from `csum_start` to the end.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: checksums already verified.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO, IP fragmentation offload): never enabled by fwd.
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO: UDP segmentation, each segment a full datagram).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN` flag bit of `gso_type`: the segments carry ECN CWR.
pub const GSO_ECN: u8 = 0x80;

/// One parsed `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Bytes of headers (IP + transport) in front of the payload; a hint only, recomputed
    /// from the packet where it matters.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parses the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Writes the header into the first [`VNET_HDR_LEN`] bytes of `b`; false if too short.
    pub fn write(&self, b: &mut [u8]) -> bool {
        let Some(b) = b.get_mut(..VNET_HDR_LEN) else {
            return false;
        };
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        true
    }

    /// The GSO type without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// Whether the packet is one packet as it stands (no segmentation asked).
    pub fn is_single(&self) -> bool {
        self.gso_kind() == GSO_NONE
    }

    /// Whether the transport checksum still has to be completed.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_short_input() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6 | GSO_ECN,
            hdr_len: 72,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        assert!(h.write(&mut b));
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert_eq!(h.gso_kind(), GSO_TCPV6);
        assert!(!h.is_single() && h.needs_csum());
        assert_eq!(VnetHdr::parse(&b[..9]), None);
        assert!(!h.write(&mut [0u8; 9]));
        assert!(VnetHdr::parse(&[0u8; 10]).is_some_and(|z| z.is_single() && !z.needs_csum()));
    }
}
