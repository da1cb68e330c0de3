//! Portable driver: poll(2) on the UDP socket, tun queue and waker, then non-blocking
//! recvmsg/read in batches of up to `udp_depth`/`tun_depth`, then the batch's outputs with
//! non-blocking sendto/write. A send the kernel cannot take right now (EAGAIN) is dropped
//! and counted, like a full device queue.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::outputs::{Data, Dest, Op, Outputs};
use super::sys;
use super::vnet::VNET_HDR_LEN;
use super::{ShardHandler, ShardIo, ShardOptions, HEADROOM};
use crate::os::set_nonblocking;

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
    let family = sys::socket_family(udp)?;
    let mut out = Outputs::new(opts.buf_len, opts.max_buffers);
    out.set_tun_vnet(opts.tun_vnet);
    let mut gso_max = if opts.udp_gso {
        usize::from(u16::MAX)
    } else {
        0
    };
    let timeout_ms = libc::c_int::try_from(opts.tick.as_millis())
        .unwrap_or(libc::c_int::MAX)
        .max(1);

    while !stop.load(Ordering::Acquire) {
        let mut fds = [
            libc::pollfd {
                fd: udp.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: tun.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: io.waker.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a live array of 3 pollfd.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let [u, t, w] = fds.map(|p| p.revents);
        if w != 0 {
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a live u64; POLLIN means it will not block.
            unsafe { libc::read(io.waker.fd().as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
        if u != 0 {
            recv_udp(udp, &mut handler, &mut out, opts.udp_depth)?;
        }
        if t != 0 {
            read_tun(tun, &mut handler, &mut out, opts.tun_depth)?;
        }
        let start = out.ops.len();
        handler.on_tick(&mut out);
        out.drop_current(start);
        out.fit_gso(gso_max);
        flush(udp, tun, family, &mut out, &mut gso_max);
    }
    Ok(())
}

fn recv_udp<H: ShardHandler>(
    udp: BorrowedFd<'_>,
    handler: &mut H,
    out: &mut Outputs,
    batch: usize,
) -> io::Result<()> {
    for _ in 0..batch {
        let Some(mut b) = out.alloc() else {
            return Ok(());
        };
        let res = match b.get_mut(HEADROOM..) {
            Some(payload) => sys::recv_from(udp, payload),
            None => Err(io::ErrorKind::InvalidInput.into()),
        };
        match res {
            Ok((_, _, true)) | Ok((_, None, _)) => {
                out.stats.rx_truncated += 1;
                out.recycle(b);
            }
            Ok((len, Some(from), false)) => {
                out.stats.udp_rx += 1;
                let start = out.ops.len();
                handler.on_udp(from, &mut b, len, out);
                if let Some(b) = out.resolve_current(start, b) {
                    out.recycle(b);
                }
            }
            Err(e) => {
                out.recycle(b);
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
        }
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
        let res = match b.get_mut(HEADROOM - front..) {
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

fn flush(
    udp: BorrowedFd<'_>,
    tun: BorrowedFd<'_>,
    family: libc::c_int,
    out: &mut Outputs,
    gso_max: &mut usize,
) {
    // Drained and handed back so the queue keeps its capacity across batches.
    let mut ops: Vec<Op> = std::mem::take(&mut out.ops);
    let mut st = sys::zeroed_storage();
    for op in ops.drain(..) {
        // `Current` never reaches here: the driver resolves or drops it after each callback.
        let Data::Owned(b, range) = op.data else {
            continue;
        };
        let Some(data) = b.get(range) else {
            out.stats.tx_dropped += 1;
            out.recycle(b);
            continue;
        };
        let res = match op.dest {
            Dest::Udp(to) => match sys::to_sockaddr(to, family, &mut st) {
                Some(len) if op.segment > 0 => {
                    let r = sys::send_gso(udp, data, &st, len, op.segment);
                    if let Err(e) = &r {
                        let errno = e.raw_os_error().unwrap_or(0);
                        *gso_max = super::gso::after_refusal(*gso_max, op.segment.into(), errno);
                    }
                    r.map(|_| {
                        out.stats.udp_tx += 1;
                        out.stats.udp_gso_sends += 1;
                    })
                }
                Some(len) => sys::send_to(udp, data, &st, len).map(|_| out.stats.udp_tx += 1),
                None => Err(io::ErrorKind::Unsupported.into()),
            },
            Dest::Tun => crate::os::tun::write_fd(tun, data).map(|_| out.stats.tun_tx += 1),
        };
        if let Err(e) = res {
            tracing::trace!(error = %e, dest = ?op.dest, "send failed");
            out.stats.tx_errors += 1;
        }
        out.recycle(b);
    }
    out.ops = ops;
}

/// Errors that mean the fd itself is unusable, as opposed to one datagram failing.
pub(crate) fn is_fatal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::EBADFD | libc::ENOTSOCK | libc::EINVAL | libc::EFAULT)
    )
}
