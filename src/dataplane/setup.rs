//! Opening a shard's kernel objects with the fastest data path the kernel grants: a vnet tun
//! with TSO and checksum offload, UDP GSO sends and GRO receives, the driver the operator
//! chose. Each feature is probed on its own and falls back on its own, logged once.

use std::io;
use std::net::UdpSocket;

use crate::os::tun::Tun;
use crate::os::udp;

use super::{DriverKind, ShardOptions};

/// What the operator asked for (`offload`, `io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataPathConfig {
    /// Off: one packet per tun read, tun write and datagram, no vnet header.
    pub offload_off: bool,
    pub driver: DriverKind,
    /// `mssfix`: the MSS TCP SYNs are clamped to in both directions, for IPv4 and IPv6
    /// packets inside the tunnel (0: no clamping).
    pub mss: (u16, u16),
}

/// Opens tun device `name` with `queues` queues: with `virtio_net_hdr`s and TSO/checksum
/// offload when offloads are on and the kernel has them, else a plain tun. Returns the
/// device and whether its queues carry vnet headers.
pub fn open_tun(name: &str, queues: usize, cfg: DataPathConfig) -> io::Result<(Tun, bool)> {
    if cfg.offload_off {
        return Ok((Tun::create(name, queues)?, false));
    }
    let tun = match Tun::create_with(name, queues, true) {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(error = %e, "tun: no IFF_VNET_HDR; one packet per read and write");
            return Ok((Tun::create(name, queues)?, false));
        }
    };
    match tun.enable_offloads() {
        Ok(o) => tracing::info!(tso = o.tso, uso = o.uso, "tun offloads enabled"),
        // Still worth the vnet header: coalesced writes need no TUNSETOFFLOAD.
        Err(e) => tracing::info!(error = %e, "tun: TUNSETOFFLOAD refused; no TSO from the tun"),
    }
    Ok((tun, true))
}

/// Shard options for a shard on `sock` with a tun opened by [`open_tun`].
pub fn shard_options(cfg: DataPathConfig, tun_vnet: bool, sock: &UdpSocket) -> ShardOptions {
    let on = !cfg.offload_off;
    let gso = on && udp::gso_supported(sock);
    if on && !gso {
        tracing::info!("UDP GSO unavailable; one send per datagram");
    }
    let mut o = ShardOptions::with_offloads(tun_vnet, on, gso);
    o.driver = cfg.driver;
    o
}
