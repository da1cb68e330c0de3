//! Portable driver, for kernels or sandboxes without io_uring (containers often forbid it):
//! a level-triggered epoll set over the UDP socket, tun queue and waker; per wakeup one
//! `recvmmsg` of up to `udp_depth` datagrams (UDP GRO batches included) and up to
//! `tun_depth` non-blocking tun reads; then the batch's outputs, the UDP ones in
//! `sendmmsg` calls of up to `udp_depth` messages (UDP GSO sends among them), the tun ones
//! written one by one (a tun takes one packet, or one super-packet, per write).
//!
//! Level-triggered means a socket that still holds datagrams after one `recvmmsg` wakes the
//! loop again at once, after the tun had its turn: neither side starves the other.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::mmsg::{RecvBatch, SendBatch};
use super::outputs::{Data, Dest, Op, Outputs};
use super::sys::{self, is_fatal};
use super::vnet::VNET_HDR_LEN;
use super::{ShardHandler, ShardIo, ShardOptions};
use crate::os::epoll::Epoll;
use crate::os::set_nonblocking;

const TOKEN_UDP: u64 = 0;
const TOKEN_TUN: u64 = 1;
const TOKEN_WAKE: u64 = 2;

pub(crate) fn run<H: ShardHandler>(
    io: ShardIo,
    mut handler: H,
    stop: &AtomicBool,
    opts: &ShardOptions,
) -> io::Result<()> {
    let udp = io.udp.as_fd();
    let tun = io.tun.as_fd();
    set_nonblocking(udp, true)?;
    set_nonblocking(tun, true)?;
    let gro = opts.udp_gro
        && match crate::os::udp::enable_gro(&io.udp) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "UDP GRO unavailable");
                false
            }
        };
    tracing::info!(
        driver = "epoll",
        udp_gro = gro,
        udp_gso = opts.udp_gso,
        tun_vnet = opts.tun_vnet,
        "shard data path"
    );
    let mut ep = Epoll::new(4)?;
    ep.add(udp.as_raw_fd(), TOKEN_UDP)?;
    ep.add(tun.as_raw_fd(), TOKEN_TUN)?;
    ep.add(io.waker.fd().as_raw_fd(), TOKEN_WAKE)?;
    let mut out = Outputs::new(opts.buf_len, opts.max_buffers);
    out.set_tun_vnet(opts.tun_vnet);
    let mut rx = RecvBatch::new(opts.udp_depth, gro);
    let mut tx = SendBatch::new(opts.udp_depth, sys::socket_family(udp)?);
    let mut gso_max = if opts.udp_gso {
        usize::from(u16::MAX)
    } else {
        0
    };
    let timeout_ms = i32::try_from(opts.tick.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    let mut ready = Vec::with_capacity(4);

    while !stop.load(Ordering::Acquire) {
        ep.wait(timeout_ms, &mut ready)?;
        for &token in &ready {
            match token {
                TOKEN_UDP => recv_udp(udp, &mut rx, &mut handler, &mut out)?,
                TOKEN_TUN => read_tun(tun, &mut handler, &mut out, opts.tun_depth)?,
                _ => {
                    let mut v = 0u64;
                    // SAFETY: reads 8 bytes into a live u64; the eventfd is readable.
                    unsafe {
                        libc::read(io.waker.fd().as_raw_fd(), (&mut v as *mut u64).cast(), 8)
                    };
                }
            }
        }
        let start = out.ops.len();
        handler.on_tick(&mut out);
        out.drop_current(start);
        out.fit_gso(gso_max);
        flush(udp, tun, &mut tx, &mut out, &mut gso_max);
    }
    Ok(())
}

/// One `recvmmsg`, each datagram (or GRO batch) handed to the handler in its slot's buffer.
fn recv_udp<H: ShardHandler>(
    udp: BorrowedFd<'_>,
    rx: &mut RecvBatch,
    handler: &mut H,
    out: &mut Outputs,
) -> io::Result<()> {
    let n = match rx.recv(udp, out) {
        Ok(n) => n,
        Err(e) => {
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ if is_fatal(&e) => Err(e),
                // ICMP-induced errors (ECONNREFUSED…) concern one peer, not the socket.
                _ => {
                    tracing::trace!(error = %e, "udp receive error");
                    Ok(())
                }
            };
        }
    };
    for i in 0..n {
        let Some(r) = rx.received(i) else { continue };
        let (Some(from), false) = (r.from, r.truncated) else {
            out.stats.rx_truncated += 1;
            continue;
        };
        let Some(mut b) = rx.take(i) else { continue };
        out.stats.udp_rx += 1;
        let start = out.ops.len();
        match r.seg {
            Some(seg) if seg < r.len => {
                out.stats.udp_gro_batches += 1;
                handler.on_udp_gro(from, &mut b, r.len, seg, out);
            }
            _ => handler.on_udp(from, &mut b, r.len, out),
        }
        // None: an output kept the buffer; the slot gets a fresh one at the next receive.
        let back = out.resolve_current(start, b);
        rx.put(i, back);
    }
    Ok(())
}

fn read_tun<H: ShardHandler>(
    tun: BorrowedFd<'_>,
    handler: &mut H,
    out: &mut Outputs,
    batch: usize,
) -> io::Result<()> {
    for _ in 0..batch {
        let Some(mut b) = out.alloc() else {
            return Ok(());
        };
        // With a vnet header it lands just before HEADROOM, the packet at HEADROOM.
        let front = if out.tun_vnet() { VNET_HDR_LEN } else { 0 };
        let res = match b.get_mut(super::HEADROOM - front..) {
            Some(payload) => crate::os::tun::read_fd(tun, payload),
            None => Err(io::ErrorKind::InvalidInput.into()),
        };
        match res.map(|n| n.saturating_sub(front)) {
            Ok(0) => {
                out.recycle(b);
                return Ok(());
            }
            Ok(len) => {
                out.stats.tun_rx += 1;
                let start = out.ops.len();
                handler.on_tun(&mut b, len, out);
                if let Some(b) = out.resolve_current(start, b) {
                    out.recycle(b);
                }
            }
            Err(e) => {
                out.recycle(b);
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                    _ => Err(e),
                };
            }
        }
    }
    Ok(())
}

/// Sends the queued outputs: UDP ones batched into `sendmmsg`, tun ones written in order.
fn flush(
    udp: BorrowedFd<'_>,
    tun: BorrowedFd<'_>,
    tx: &mut SendBatch,
    out: &mut Outputs,
    gso_max: &mut usize,
) {
    // Drained and handed back so the queue keeps its capacity across batches.
    let mut ops: Vec<Op> = std::mem::take(&mut out.ops);
    for op in ops.drain(..) {
        // `Current` never reaches here: the driver resolves or drops it after each callback.
        let Data::Owned(b, range) = op.data else {
            continue;
        };
        match op.dest {
            Dest::Udp(to) => {
                if tx.is_full() {
                    tx.send(udp, out, gso_max);
                }
                if let Err(b) = tx.push(to, b, range, op.segment) {
                    out.stats.tx_dropped += 1;
                    out.recycle(b);
                }
            }
            Dest::Tun => {
                let res = match b.get(range) {
                    Some(data) => crate::os::tun::write_fd(tun, data),
                    None => Err(io::ErrorKind::InvalidInput.into()),
                };
                match res {
                    Ok(_) => out.stats.tun_tx += 1,
                    Err(e) => {
                        tracing::trace!(error = %e, "tun write failed");
                        out.stats.tx_errors += 1;
                    }
                }
                out.recycle(b);
            }
        }
    }
    tx.send(udp, out, gso_max);
    out.ops = ops;
}
