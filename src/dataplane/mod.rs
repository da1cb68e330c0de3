//! Shards: per-core event loops that move datagrams between one UDP socket and one tun
//! queue, with the protocol logic plugged in through [`ShardHandler`].
//!
//! Two drivers implement the same contract: io_uring (`uring`, preferred) and epoll with
//! batched `recvmmsg`/`sendmmsg` (`epoll`, used when io_uring is unavailable or forbidden,
//! or chosen with `io epoll` / `FWD_DRIVER=epoll`).
//! The contract every driver keeps:
//! - each received packet is handed over in a buffer whose first [`HEADROOM`] bytes are free,
//!   so the handler can prepend the data-channel header in place;
//! - outputs queued in [`Outputs`] while handling one batch are submitted together after it;
//! - [`ShardHandler::on_tick`] runs after every batch and at least once per `tick`;
//! - the loop returns within about one `tick` after `stop` is set (sooner with
//!   [`Waker::wake`]), and never while the kernel still owns one of its buffers.

pub mod coalesce;
pub mod csum;
mod epoll;
pub mod forward;
mod gso;
pub mod ip;
mod mmsg;
pub mod mss;
mod outputs;
pub mod peers;
pub mod segment;
pub mod setup;
pub mod steer;
mod sys;
mod uring;
pub mod vnet;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use outputs::{Outputs, ShardStats};

/// Free bytes before every received packet: the OpenVPN 2.6 AEAD header
/// (opcode/key-id 1 + peer-id 3 + packet-id 4 + tag 16) fits exactly.
pub const HEADROOM: usize = 24;

/// Protocol logic run by a shard. All methods run on the shard's thread and must not block.
pub trait ShardHandler: Send {
    /// A datagram arrived on this shard's UDP socket from `from` (v4-mapped addresses already
    /// normalized to IPv4). `buf[..HEADROOM]` is free headroom; the packet is
    /// `buf[HEADROOM..HEADROOM + len]`. The handler may rewrite the buffer in place and queue
    /// outputs, including ones that reference this buffer (`*_in_place`).
    fn on_udp(&mut self, from: SocketAddr, buf: &mut [u8], len: usize, out: &mut Outputs);
    /// Several datagrams from `from` that the kernel's UDP GRO handed over in one receive:
    /// `buf[HEADROOM..HEADROOM + len]` holds them back to back, each `seg` bytes but the
    /// last (which may be shorter). The default hands each to [`ShardHandler::on_udp`] in a
    /// buffer of its own; a handler that never writes before `HEADROOM` of the datagram it
    /// handles may instead work on the segments where they lie (in-place outputs of
    /// different segments are then disjoint ranges of `buf`).
    fn on_udp_gro(
        &mut self,
        from: SocketAddr,
        buf: &mut [u8],
        len: usize,
        seg: usize,
        out: &mut Outputs,
    ) {
        for (off, n) in gro_segments(len, seg) {
            on_udp_alone(self, from, buf.get(HEADROOM + off..HEADROOM + off + n), out);
        }
    }
    /// A packet was read from this shard's tun queue (same headroom convention). When the
    /// tun carries `virtio_net_hdr`s ([`Outputs::tun_vnet`]), the packet's header is the
    /// [`vnet::VNET_HDR_LEN`] bytes before `HEADROOM`, and the packet may be a TCP/UDP
    /// super-packet of up to 64 KiB.
    fn on_tun(&mut self, buf: &mut [u8], len: usize, out: &mut Outputs);
    /// Called after every batch and at least every `tick`: control messages, timers,
    /// snapshot reloads. `*_in_place` outputs are meaningless here and are dropped.
    fn on_tick(&mut self, out: &mut Outputs);
}

/// The datagrams of a GRO receive of `len` bytes cut at `seg`: (offset from the first
/// datagram, length) of each.
pub(crate) fn gro_segments(len: usize, seg: usize) -> impl Iterator<Item = (usize, usize)> {
    let seg = seg.max(1);
    (0..len)
        .step_by(seg)
        .map(move |off| (off, seg.min(len - off)))
}

/// Hands `datagram` to `handler` in a pool buffer of its own (with headroom), as a driver
/// would, and returns the buffer once the outputs are resolved. No datagram or no free
/// buffer: dropped and counted.
pub(crate) fn on_udp_alone<H: ShardHandler + ?Sized>(
    handler: &mut H,
    from: SocketAddr,
    datagram: Option<&[u8]>,
    out: &mut Outputs,
) {
    let (Some(src), Some(mut b)) = (datagram, out.alloc()) else {
        out.stats.tx_dropped += 1;
        return;
    };
    let n = src.len();
    match b.get_mut(HEADROOM..HEADROOM + n) {
        Some(dst) => dst.copy_from_slice(src),
        None => {
            out.stats.rx_truncated += 1;
            out.recycle(b);
            return;
        }
    }
    let start = out.queued();
    handler.on_udp(from, &mut b, n, out);
    if let Some(b) = out.resolve_current(start, b) {
        out.recycle(b);
    }
}

/// Which driver a shard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverKind {
    /// io_uring when the kernel supports it, else epoll; `FWD_DRIVER=epoll|uring` overrides.
    #[default]
    Auto,
    /// io_uring only; fails if unavailable.
    Uring,
    /// epoll with non-blocking recvmmsg/sendmmsg and tun read/write.
    Epoll,
}

/// Tunables of one shard. Defaults suit a 1500-byte tun MTU with room for jumbo frames.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Maximum interval between [`ShardHandler::on_tick`] calls; also bounds stop latency.
    pub tick: Duration,
    /// Bytes per buffer including [`HEADROOM`]; larger datagrams are dropped as truncated.
    pub buf_len: usize,
    /// Receives kept posted on the UDP socket (io_uring: buffers in the multishot receive's
    /// ring, rounded up to a power of two, or separate RecvMsg); epoll: datagrams per
    /// `recvmmsg` and messages per `sendmmsg`.
    pub udp_depth: usize,
    /// Reads kept posted on the tun queue (io_uring) / tun reads per wakeup (epoll).
    pub tun_depth: usize,
    /// Outputs that may be in flight at once (io_uring); more are dropped and counted.
    pub tx_slots: usize,
    /// Cap on buffers the shard allocates (receive + in-flight transmit).
    pub max_buffers: usize,
    /// Driver selection.
    pub driver: DriverKind,
    /// The tun queues were opened with `IFF_VNET_HDR` (`Tun::create_with`): reads and writes
    /// carry a `virtio_net_hdr`.
    pub tun_vnet: bool,
    /// Turn on UDP GRO receive where the driver can read its segment size (epoll, and
    /// io_uring with multishot receive); ignored by io_uring's single-shot receives.
    pub udp_gro: bool,
    /// Send runs of same-sized datagrams to one peer as one UDP GSO send (`UDP_SEGMENT`),
    /// turned off by the driver for good if the kernel rejects one.
    pub udp_gso: bool,
    /// io_uring: receive UDP with one multishot RecvMsg over a provided-buffer ring
    /// (kernel >= 6.0, probed) instead of `udp_depth` separate RecvMsg, each of which arms
    /// its own poll on the socket. `FWD_URING_MULTISHOT=0` turns it off too.
    pub uring_multishot: bool,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            tick: Duration::from_millis(100),
            // 16 KiB holds a 9000-byte jumbo packet plus any OpenVPN overhead.
            buf_len: 16 * 1024,
            udp_depth: 64,
            tun_depth: 32,
            tx_slots: 256,
            max_buffers: 1024,
            driver: DriverKind::Auto,
            uring_multishot: true,
            tun_vnet: false,
            udp_gro: false,
            udp_gso: false,
        }
    }
}

impl ShardOptions {
    /// Options for a shard with the given offloads: buffers large enough for a 64 KiB
    /// super-packet (tun TSO, UDP GRO) plus its headers when any is on.
    pub fn with_offloads(tun_vnet: bool, udp_gro: bool, udp_gso: bool) -> Self {
        let mut o = ShardOptions {
            tun_vnet,
            udp_gro,
            udp_gso,
            ..ShardOptions::default()
        };
        if tun_vnet || udp_gro {
            o.buf_len = HEADROOM + MAX_SUPER_PACKET + 64;
        }
        o
    }
}

/// Largest packet a tun with TSO or a UDP GRO receive hands over (the 16-bit IP length),
/// plus the `virtio_net_hdr` before it.
pub const MAX_SUPER_PACKET: usize = 65535 + vnet::VNET_HDR_LEN;

/// The file descriptors one shard owns.
#[derive(Debug)]
pub struct ShardIo {
    /// This shard's member of the SO_REUSEPORT group.
    pub udp: UdpSocket,
    /// This shard's tun queue.
    pub tun: OwnedFd,
    /// Wakes the shard from other threads.
    pub waker: Waker,
}

impl ShardIo {
    /// Bundles a socket and tun queue with a fresh [`Waker`].
    pub fn new(udp: UdpSocket, tun: OwnedFd) -> io::Result<Self> {
        Ok(ShardIo {
            udp,
            tun,
            waker: Waker::new()?,
        })
    }
}

/// Wakes a shard's event loop (an eventfd the shard always has a read posted on). Cheap to
/// clone; safe to call from any thread.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Creates an eventfd (blocking: io_uring needs a blocking fd to park a read on it,
    /// and epoll only reads it once it is readable).
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Waker { fd: Arc::new(fd) })
    }

    /// Makes the shard run a batch (and `on_tick`) soon.
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Runs a shard with default options and the given tick until `stop` is set.
pub fn run_shard<H: ShardHandler>(
    io: ShardIo,
    handler: H,
    stop: Arc<AtomicBool>,
    tick: Duration,
) -> io::Result<()> {
    run_shard_with(
        io,
        handler,
        stop,
        &ShardOptions {
            tick,
            ..ShardOptions::default()
        },
    )
}

/// Runs a shard until `stop` is set, picking the driver per `opts.driver`.
pub fn run_shard_with<H: ShardHandler>(
    io: ShardIo,
    handler: H,
    stop: Arc<AtomicBool>,
    opts: &ShardOptions,
) -> io::Result<()> {
    let opts = sanitize(opts);
    match resolve_driver(opts.driver) {
        DriverKind::Epoll => epoll::run(io, handler, &stop, &opts),
        DriverKind::Uring => uring::run(io, handler, &stop, &opts),
        DriverKind::Auto => match uring::probe() {
            Ok(()) => uring::run(io, handler, &stop, &opts),
            Err(e) => {
                tracing::info!(error = %e, "io_uring unavailable, using the epoll driver");
                epoll::run(io, handler, &stop, &opts)
            }
        },
    }
}

/// Whether the io_uring driver can run here (ring setup and every opcode it uses).
pub fn uring_available() -> io::Result<()> {
    uring::probe()
}

/// Whether the io_uring driver's multishot UDP receive (provided-buffer ring plus
/// multishot RecvMsg) works on this kernel; probed once per process.
pub fn uring_multishot_available() -> io::Result<()> {
    uring::multishot_probe()
}

/// Spawns a shard thread named `name`, pinned to `core` when given (pinning failure is
/// logged, not fatal: the shard still works unpinned).
pub fn spawn_shard<H: ShardHandler + 'static>(
    core: Option<usize>,
    name: String,
    io: ShardIo,
    handler: H,
    stop: Arc<AtomicBool>,
    opts: ShardOptions,
) -> io::Result<JoinHandle<io::Result<()>>> {
    std::thread::Builder::new().name(name).spawn(move || {
        if let Some(id) = core {
            if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                tracing::warn!(core = id, "could not pin shard thread");
            }
        }
        run_shard_with(io, handler, stop, &opts)
    })
}

/// The driver `kind` means after applying `FWD_DRIVER`.
fn resolve_driver(kind: DriverKind) -> DriverKind {
    if kind != DriverKind::Auto {
        return kind;
    }
    match std::env::var("FWD_DRIVER").as_deref() {
        // `poll` names the driver epoll replaced.
        Ok("epoll" | "poll") => DriverKind::Epoll,
        Ok("uring" | "io_uring") => DriverKind::Uring,
        _ => DriverKind::Auto,
    }
}

/// Clamps options into the ranges the drivers rely on (non-zero depths, room past headroom,
/// enough buffers for every posted receive).
fn sanitize(opts: &ShardOptions) -> ShardOptions {
    let mut o = opts.clone();
    o.tick = o.tick.max(Duration::from_millis(1));
    o.buf_len = o
        .buf_len
        .clamp(HEADROOM + 64, HEADROOM + MAX_SUPER_PACKET + 64);
    o.udp_depth = o.udp_depth.clamp(1, 4096);
    o.tun_depth = o.tun_depth.clamp(1, 4096);
    o.tx_slots = o.tx_slots.clamp(1, 16384);
    // The multishot path keeps a power-of-two count of receive buffers.
    o.max_buffers = o
        .max_buffers
        .max(o.udp_depth.next_power_of_two() + o.tun_depth + 16);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_invariants() {
        let o = sanitize(&ShardOptions {
            tick: Duration::ZERO,
            buf_len: 0,
            udp_depth: 0,
            tun_depth: 0,
            tx_slots: 0,
            max_buffers: 0,
            driver: DriverKind::Epoll,
            uring_multishot: true,
            tun_vnet: false,
            udp_gro: false,
            udp_gso: false,
        });
        assert!(o.tick > Duration::ZERO);
        assert!(o.buf_len > HEADROOM);
        assert!(o.udp_depth >= 1 && o.tun_depth >= 1 && o.tx_slots >= 1);
        assert!(o.max_buffers > o.udp_depth + o.tun_depth);
    }

    #[test]
    fn waker_wakes() {
        let w = Waker::new().unwrap();
        w.clone().wake().unwrap();
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64.
        let n = unsafe { libc::read(w.fd().as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        assert_eq!((n, v), (8, 1));
    }
}
