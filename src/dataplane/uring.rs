//! io_uring driver: one ring per shard.
//!
//! Kept posted at all times: `udp_depth` RecvMsg on the UDP socket, `tun_depth` Read on the
//! tun queue, one Read on the waker eventfd and one Timeout of `tick`. Each wakeup reaps
//! every completion, hands received packets to the handler, runs `on_tick`, then submits
//! the batch's outputs as SendMsg/Write and re-posts the receives.
//!
//! Memory invariant: every pointer in a submitted SQE (msghdr, iovec, sockaddr, buffer,
//! timespec, eventfd counter) points into a `Box` owned by [`Driver`] that is neither freed
//! nor reused until that SQE's completion has been reaped. Shutdown (including unwinding
//! from a panicking handler) cancels everything outstanding and reaps until nothing is in
//! flight; if that fails, the memory is leaked rather than freed under the kernel.
//!
//! The UDP socket is switched to blocking mode: io_uring then parks receives on internal
//! poll instead of completing them with EAGAIN. The tun queue is switched to *non-blocking*:
//! a character device without FMODE_NOWAIT on a blocking fd makes io_uring hand every
//! posted read to an io-wq worker thread that blocks in read(2) (one thread per posted
//! read, a cross-thread wakeup per packet); with O_NONBLOCK the kernel treats the file as
//! nowait-capable and arms its internal poll instead, like for the socket. Should a kernel
//! still complete a tun read with EAGAIN, it is simply posted again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

use super::outputs::{Buf, Data, Dest, Outputs};
use super::poll::is_fatal;
use super::sys;
use super::{ShardHandler, ShardIo, ShardOptions, HEADROOM};
use crate::os::set_nonblocking;

/// user_data tags (high 32 bits); the low 32 bits index the slot.
const TAG_UDP_RECV: u64 = 1;
const TAG_TUN_READ: u64 = 2;
const TAG_WAKE: u64 = 3;
const TAG_TIMEOUT: u64 = 4;
const TAG_UDP_SEND: u64 = 5;
const TAG_TUN_WRITE: u64 = 6;
const TAG_CANCEL: u64 = 7;

/// Submission queue size; a full queue is submitted early, so this only bounds syscalls.
const SQ_ENTRIES: u32 = 256;

/// Checks that a ring can be created and supports every opcode this driver uses.
pub(crate) fn probe() -> io::Result<()> {
    let ring: IoUring = IoUring::new(8)?;
    let mut p = Probe::new();
    ring.submitter().register_probe(&mut p)?;
    let needed = [
        opcode::RecvMsg::CODE,
        opcode::SendMsg::CODE,
        opcode::Read::CODE,
        opcode::Write::CODE,
        opcode::Timeout::CODE,
        opcode::TimeoutRemove::CODE,
        opcode::AsyncCancel::CODE,
    ];
    if needed.iter().all(|&c| p.is_supported(c)) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring lacks a required opcode",
        ))
    }
}

pub(crate) fn run<H: ShardHandler>(
    io: ShardIo,
    mut handler: H,
    stop: &AtomicBool,
    opts: &ShardOptions,
) -> io::Result<()> {
    probe()?;
    set_nonblocking(io.udp.as_fd(), false)?;
    set_nonblocking(io.tun.as_fd(), true)?;
    let mut d = Driver::new(&io, opts)?;
    let r = d.run(&mut handler, stop);
    d.shutdown();
    // `d` (buffers) drops before `io` (fds): nothing is in flight after shutdown.
    drop(d);
    drop(io);
    r
}

/// A posted UDP receive: the msghdr and everything it points to.
struct RecvSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    buf: Option<Buf>,
    posted: bool,
}

/// A posted tun read.
struct ReadSlot {
    buf: Option<Buf>,
    posted: bool,
}

/// An in-flight output.
struct TxSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    buf: Option<Buf>,
}

// Slots are boxed so the addresses in posted SQEs stay valid even if a Vec were ever
// reallocated; safety should not hinge on "this Vec is never pushed to".
#[allow(clippy::vec_box)]
struct Driver {
    ring: IoUring,
    udp_fd: RawFd,
    tun_fd: RawFd,
    wake_fd: RawFd,
    family: libc::c_int,
    udp: Vec<Box<RecvSlot>>,
    tun: Vec<ReadSlot>,
    tx: Vec<Box<TxSlot>>,
    tx_free: Vec<usize>,
    wake_buf: Box<u64>,
    wake_posted: bool,
    tick: Box<types::Timespec>,
    timeout_posted: bool,
    /// SQEs pushed whose CQE has not been reaped.
    inflight: usize,
    /// Set once shutdown could not confirm the kernel is done with our memory.
    leak: bool,
    out: Outputs,
}

impl Driver {
    fn new(io: &ShardIo, opts: &ShardOptions) -> io::Result<Self> {
        // The CQ must hold every possible in-flight completion (each posted op, each output,
        // plus a cancel per op at shutdown) so it can never overflow.
        let max_inflight = 2 * (opts.udp_depth + opts.tun_depth + 2) + opts.tx_slots;
        let cq = u32::try_from(max_inflight.next_power_of_two())
            .unwrap_or(u32::MAX)
            .max(2 * SQ_ENTRIES);
        let ring = IoUring::builder().setup_cqsize(cq).build(SQ_ENTRIES)?;
        let family = sys::socket_family(io.udp.as_fd())?;
        let udp = (0..opts.udp_depth)
            .map(|_| {
                Box::new(RecvSlot {
                    // SAFETY: msghdr and iovec are plain data; all-zero is valid.
                    hdr: unsafe { std::mem::zeroed() },
                    iov: libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    },
                    addr: sys::zeroed_storage(),
                    buf: None,
                    posted: false,
                })
            })
            .collect();
        let tun = (0..opts.tun_depth)
            .map(|_| ReadSlot {
                buf: None,
                posted: false,
            })
            .collect();
        let tx = (0..opts.tx_slots)
            .map(|_| {
                Box::new(TxSlot {
                    // SAFETY: as above.
                    hdr: unsafe { std::mem::zeroed() },
                    iov: libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    },
                    addr: sys::zeroed_storage(),
                    buf: None,
                })
            })
            .collect();
        let tick = types::Timespec::new()
            .sec(opts.tick.as_secs())
            .nsec(opts.tick.subsec_nanos());
        Ok(Driver {
            ring,
            udp_fd: io.udp.as_raw_fd(),
            tun_fd: io.tun.as_raw_fd(),
            wake_fd: io.waker.fd().as_raw_fd(),
            family,
            udp,
            tun,
            tx,
            tx_free: (0..opts.tx_slots).rev().collect(),
            wake_buf: Box::new(0),
            wake_posted: false,
            tick: Box::new(tick),
            timeout_posted: false,
            inflight: 0,
            leak: false,
            out: Outputs::new(opts.buf_len, opts.max_buffers),
        })
    }

    fn run<H: ShardHandler>(&mut self, handler: &mut H, stop: &AtomicBool) -> io::Result<()> {
        let mut cqes: Vec<(u64, i32)> = Vec::new();
        self.repost()?;
        while !stop.load(Ordering::Acquire) {
            self.submit_and_wait()?;
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c: cqueue::Entry| (c.user_data(), c.result())),
            );
            for &(ud, res) in &cqes {
                self.inflight = self.inflight.saturating_sub(1);
                self.complete(ud, res, Some(&mut *handler))?;
            }
            let start = self.out.ops.len();
            handler.on_tick(&mut self.out);
            self.out.drop_current(start);
            self.flush()?;
            self.repost()?;
        }
        Ok(())
    }

    fn submit_and_wait(&mut self) -> io::Result<()> {
        match self.ring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Pushes one SQE, submitting first if the queue is full.
    fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every SQE built by this driver points into memory owned by `self`
            // that stays valid until its completion is reaped (module invariant).
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Posts every receive, the waker read and the tick timeout that are not in flight.
    fn repost(&mut self) -> io::Result<()> {
        for i in 0..self.udp.len() {
            self.post_udp(i)?;
        }
        for i in 0..self.tun.len() {
            self.post_tun(i)?;
        }
        if !self.wake_posted {
            let e = opcode::Read::new(
                types::Fd(self.wake_fd),
                (&mut *self.wake_buf as *mut u64).cast(),
                8,
            )
            .build()
            .user_data(ud(TAG_WAKE, 0));
            self.push(&e)?;
            self.wake_posted = true;
        }
        if !self.timeout_posted {
            let e = opcode::Timeout::new(&*self.tick as *const types::Timespec)
                .build()
                .user_data(ud(TAG_TIMEOUT, 0));
            self.push(&e)?;
            self.timeout_posted = true;
        }
        Ok(())
    }

    fn post_udp(&mut self, i: usize) -> io::Result<()> {
        let Some(slot) = self.udp.get(i) else {
            return Ok(());
        };
        if slot.posted {
            return Ok(());
        }
        let buf = match slot.buf.is_some() {
            true => None,
            false => match self.out.alloc() {
                Some(b) => Some(b),
                // No buffer now; retried after the next batch frees some.
                None => return Ok(()),
            },
        };
        let Some(slot) = self.udp.get_mut(i) else {
            return Ok(());
        };
        if let Some(b) = buf {
            slot.buf = Some(b);
        }
        let Some(payload) = slot.buf.as_mut().and_then(|b| b.get_mut(HEADROOM..)) else {
            return Ok(());
        };
        slot.iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        slot.addr.ss_family = 0;
        slot.hdr.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
        slot.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        slot.hdr.msg_iov = &mut slot.iov;
        slot.hdr.msg_iovlen = 1;
        slot.hdr.msg_control = std::ptr::null_mut();
        slot.hdr.msg_controllen = 0;
        slot.hdr.msg_flags = 0;
        // MSG_TRUNC makes the result the datagram's real length, so truncation is visible.
        let e = opcode::RecvMsg::new(types::Fd(self.udp_fd), &mut slot.hdr)
            .flags(libc::MSG_TRUNC as u32)
            .build()
            .user_data(ud(TAG_UDP_RECV, i));
        slot.posted = true;
        self.push(&e)
    }

    fn post_tun(&mut self, i: usize) -> io::Result<()> {
        let Some(slot) = self.tun.get(i) else {
            return Ok(());
        };
        if slot.posted {
            return Ok(());
        }
        if slot.buf.is_none() {
            let Some(b) = self.out.alloc() else {
                return Ok(());
            };
            if let Some(slot) = self.tun.get_mut(i) {
                slot.buf = Some(b);
            }
        }
        let Some(slot) = self.tun.get_mut(i) else {
            return Ok(());
        };
        let Some(payload) = slot.buf.as_mut().and_then(|b| b.get_mut(HEADROOM..)) else {
            return Ok(());
        };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let e = opcode::Read::new(types::Fd(self.tun_fd), payload.as_mut_ptr(), len)
            .build()
            .user_data(ud(TAG_TUN_READ, i));
        slot.posted = true;
        self.push(&e)
    }

    /// Handles one completion. With `handler == None` (shutdown) received data is discarded.
    fn complete<H: ShardHandler>(
        &mut self,
        user_data: u64,
        res: i32,
        handler: Option<&mut H>,
    ) -> io::Result<()> {
        let tag = user_data >> 32;
        let idx = (user_data & 0xffff_ffff) as usize;
        match tag {
            TAG_UDP_RECV => self.complete_udp(idx, res, handler),
            TAG_TUN_READ => self.complete_tun(idx, res, handler),
            TAG_WAKE => {
                self.wake_posted = false;
                Ok(())
            }
            TAG_TIMEOUT => {
                self.timeout_posted = false;
                Ok(())
            }
            TAG_UDP_SEND | TAG_TUN_WRITE => {
                if let Some(b) = self.tx.get_mut(idx).and_then(|s| s.buf.take()) {
                    self.out.recycle(b);
                    self.tx_free.push(idx);
                }
                if res < 0 {
                    self.out.stats.tx_errors += 1;
                    tracing::trace!(error = %io::Error::from_raw_os_error(-res), "io_uring send failed");
                } else if tag == TAG_UDP_SEND {
                    self.out.stats.udp_tx += 1;
                } else {
                    self.out.stats.tun_tx += 1;
                }
                Ok(())
            }
            _ => Ok(()), // TAG_CANCEL and anything unknown: nothing owned.
        }
    }

    fn complete_udp<H: ShardHandler>(
        &mut self,
        i: usize,
        res: i32,
        handler: Option<&mut H>,
    ) -> io::Result<()> {
        let Some(slot) = self.udp.get_mut(i) else {
            return Ok(());
        };
        slot.posted = false;
        if res < 0 {
            let e = io::Error::from_raw_os_error(-res);
            if res == -libc::ECANCELED || handler.is_none() {
                return Ok(());
            }
            if is_fatal(&e) {
                return Err(e);
            }
            tracing::trace!(error = %e, "udp receive error");
            return Ok(());
        }
        let Some(handler) = handler else {
            return Ok(());
        };
        let len = res.unsigned_abs() as usize;
        let from = sys::from_sockaddr(&slot.addr, slot.hdr.msg_namelen);
        let Some(mut b) = slot.buf.take() else {
            return Ok(());
        };
        let (Some(from), true) = (from, HEADROOM + len <= b.len()) else {
            self.out.stats.rx_truncated += 1;
            slot.buf = Some(b);
            return Ok(());
        };
        self.out.stats.udp_rx += 1;
        let start = self.out.ops.len();
        handler.on_udp(from, &mut b, len, &mut self.out);
        let back = self.out.resolve_current(start, b);
        if let Some(slot) = self.udp.get_mut(i) {
            slot.buf = back;
        }
        Ok(())
    }

    fn complete_tun<H: ShardHandler>(
        &mut self,
        i: usize,
        res: i32,
        handler: Option<&mut H>,
    ) -> io::Result<()> {
        let Some(slot) = self.tun.get_mut(i) else {
            return Ok(());
        };
        slot.posted = false;
        if res < 0 {
            if res == -libc::ECANCELED
                || res == -libc::EAGAIN
                || res == -libc::EINTR
                || handler.is_none()
            {
                return Ok(());
            }
            return Err(io::Error::from_raw_os_error(-res));
        }
        let Some(handler) = handler else {
            return Ok(());
        };
        let len = res.unsigned_abs() as usize;
        if len == 0 {
            return Ok(());
        }
        let Some(mut b) = slot.buf.take() else {
            return Ok(());
        };
        self.out.stats.tun_rx += 1;
        let start = self.out.ops.len();
        handler.on_tun(&mut b, len, &mut self.out);
        let back = self.out.resolve_current(start, b);
        if let Some(slot) = self.tun.get_mut(i) {
            slot.buf = back;
        }
        Ok(())
    }

    /// Submits the queued outputs.
    fn flush(&mut self) -> io::Result<()> {
        // Drained and handed back so the queue keeps its capacity across batches.
        let mut ops = std::mem::take(&mut self.out.ops);
        for op in ops.drain(..) {
            // `Current` never reaches here: resolved or dropped after each callback.
            let Data::Owned(b, range) = op.data else {
                continue;
            };
            let Some(idx) = self.tx_free.pop() else {
                self.out.stats.tx_dropped += 1;
                self.out.recycle(b);
                continue;
            };
            let Some(slot) = self.tx.get_mut(idx) else {
                continue;
            };
            let Some(data) = b.get(range) else {
                self.out.stats.tx_dropped += 1;
                self.out.recycle(b);
                self.tx_free.push(idx);
                continue;
            };
            let (ptr, len) = (data.as_ptr(), data.len());
            let e = match op.dest {
                Dest::Udp(to) => {
                    let Some(alen) = sys::to_sockaddr(to, self.family, &mut slot.addr) else {
                        self.out.stats.tx_dropped += 1;
                        self.out.recycle(b);
                        self.tx_free.push(idx);
                        continue;
                    };
                    slot.iov = libc::iovec {
                        iov_base: ptr as *mut libc::c_void,
                        iov_len: len,
                    };
                    slot.hdr.msg_name = (&mut slot.addr as *mut libc::sockaddr_storage).cast();
                    slot.hdr.msg_namelen = alen;
                    slot.hdr.msg_iov = &mut slot.iov;
                    slot.hdr.msg_iovlen = 1;
                    slot.hdr.msg_control = std::ptr::null_mut();
                    slot.hdr.msg_controllen = 0;
                    slot.hdr.msg_flags = 0;
                    opcode::SendMsg::new(types::Fd(self.udp_fd), &slot.hdr)
                        .build()
                        .user_data(ud(TAG_UDP_SEND, idx))
                }
                Dest::Tun => {
                    let len = u32::try_from(len).unwrap_or(u32::MAX);
                    opcode::Write::new(types::Fd(self.tun_fd), ptr, len)
                        .build()
                        .user_data(ud(TAG_TUN_WRITE, idx))
                }
            };
            // The buffer's heap memory stays put when the box moves into the slot.
            slot.buf = Some(b);
            self.push(&e)?;
        }
        self.out.ops = ops;
        Ok(())
    }

    /// Cancels everything in flight and reaps until the kernel holds none of our memory.
    fn shutdown(&mut self) {
        if let Err(e) = self.try_shutdown() {
            tracing::error!(error = %e, "io_uring shutdown incomplete; leaking shard buffers");
            self.leak = true;
        }
    }

    fn try_shutdown(&mut self) -> io::Result<()> {
        let mut cancels = Vec::new();
        for (i, s) in self.udp.iter().enumerate() {
            if s.posted {
                cancels.push(opcode::AsyncCancel::new(ud(TAG_UDP_RECV, i)).build());
            }
        }
        for (i, s) in self.tun.iter().enumerate() {
            if s.posted {
                cancels.push(opcode::AsyncCancel::new(ud(TAG_TUN_READ, i)).build());
            }
        }
        if self.wake_posted {
            cancels.push(opcode::AsyncCancel::new(ud(TAG_WAKE, 0)).build());
        }
        if self.timeout_posted {
            cancels.push(opcode::TimeoutRemove::new(ud(TAG_TIMEOUT, 0)).build());
        }
        for c in cancels {
            self.push(&c.user_data(ud(TAG_CANCEL, 0)))?;
        }
        while self.inflight > 0 {
            self.submit_and_wait()?;
            let done: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (u, r) in done {
                self.inflight = self.inflight.saturating_sub(1);
                self.complete::<NoHandler>(u, r, None)?;
            }
        }
        Ok(())
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.inflight > 0 && !self.leak {
            // Reached by unwinding out of a handler: still never free memory the kernel owns.
            self.shutdown();
        }
        if self.leak {
            std::mem::forget(std::mem::take(&mut self.udp));
            std::mem::forget(std::mem::take(&mut self.tun));
            std::mem::forget(std::mem::take(&mut self.tx));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
            std::mem::forget(std::mem::replace(
                &mut self.tick,
                Box::new(types::Timespec::new()),
            ));
        }
    }
}

/// Type witness for `complete(.., None)` during shutdown.
struct NoHandler;

impl ShardHandler for NoHandler {
    fn on_udp(&mut self, _: std::net::SocketAddr, _: &mut [u8], _: usize, _: &mut Outputs) {}
    fn on_tun(&mut self, _: &mut [u8], _: usize, _: &mut Outputs) {}
    fn on_tick(&mut self, _: &mut Outputs) {}
}

fn ud(tag: u64, idx: usize) -> u64 {
    (tag << 32) | (idx as u64 & 0xffff_ffff)
}
