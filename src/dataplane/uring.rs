//! io_uring driver: one ring per shard.
//!
//! Kept posted at all times: the UDP receive, `tun_depth` Read on the tun queue, one Read
//! on the waker eventfd and one Timeout of `tick`. Each wakeup reaps every completion, hands
//! received packets to the handler, runs `on_tick`, then submits the batch's outputs as
//! SendMsg/Write and re-posts the receives.
//!
//! The UDP receive is, when the kernel has it (probed once, kernel >= 6.0) and it is not
//! turned off, ONE multishot RecvMsg drawing from a provided-buffer ring of `udp_depth`
//! (rounded up to a power of two) pool buffers: one poll armed on the socket instead of one
//! per posted receive, each of which every datagram would wake. The kernel writes each
//! datagram at the start of a ring buffer as `io_uring_recvmsg_out` (16 bytes), the source
//! address (a fixed `namelen` field) and the payload. Pool buffers are therefore `front`
//! bytes longer than `buf_len`, where `front + HEADROOM` is that prefix: the handler gets
//! `buf[front..]` (exactly `buf_len` bytes, packet at `HEADROOM`, the headroom overlapping
//! the already-parsed prefix), and in-place output ranges are shifted by `front`. A buffer
//! kept by an in-place output goes to the transmit side as usual; its ring slot (buffer id)
//! is refilled from the pool before the next wait. Otherwise the driver falls back to
//! `udp_depth` separate RecvMsg SQEs.
//!
//! Memory invariant: every pointer in a submitted SQE (msghdr, iovec, sockaddr, buffer,
//! timespec, eventfd counter) points into a `Box` owned by [`Driver`] that is neither freed
//! nor reused until that SQE's completion has been reaped (for a multishot SQE: its last
//! completion, the one without IORING_CQE_F_MORE). A buffer published in the provided-buffer
//! ring stays owned by the driver until a completion names its buffer id; the ring memory
//! itself lives until it is unregistered. Shutdown (including unwinding
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
use super::sys::{self, is_fatal, UdpCmsg, UDP_CMSG_SPACE};
use super::vnet::VNET_HDR_LEN;
use super::{ShardHandler, ShardIo, ShardOptions, HEADROOM};
use crate::os::set_nonblocking;

mod multishot;
pub(crate) use multishot::multishot_probe;
use multishot::{parse_recvmsg_out, Multishot, BGID};

/// user_data tags (high 32 bits); the low 32 bits index the slot.
const TAG_UDP_RECV: u64 = 1;
const TAG_TUN_READ: u64 = 2;
const TAG_WAKE: u64 = 3;
const TAG_TIMEOUT: u64 = 4;
const TAG_UDP_SEND: u64 = 5;
const TAG_TUN_WRITE: u64 = 6;
const TAG_CANCEL: u64 = 7;
const TAG_UDP_MULTI: u64 = 8;

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
    let multishot = opts.uring_multishot
        && std::env::var("FWD_URING_MULTISHOT").as_deref() != Ok("0")
        && match multishot_probe() {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "io_uring multishot receive unavailable");
                false
            }
        };
    // GRO needs the segment size from a control message: only the multishot receive reads it.
    let gro = opts.udp_gro
        && multishot
        && match crate::os::udp::enable_gro(&io.udp) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "UDP GRO unavailable");
                false
            }
        };
    tracing::info!(
        driver = "io_uring",
        multishot,
        udp_gro = gro,
        udp_gso = opts.udp_gso,
        tun_vnet = opts.tun_vnet,
        "shard data path"
    );
    let mut d = Driver::new(&io, opts, multishot, gro)?;
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
    /// The UDP_SEGMENT control message of a GSO send (u64s for cmsghdr alignment).
    ctrl: UdpCmsg,
    /// Segment size of the GSO send in flight (0: a plain send).
    gso: usize,
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
    /// The multishot receive; `udp` is empty when this is used.
    ms: Option<Multishot>,
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
    /// Bytes of `virtio_net_hdr` before each tun packet read (0 or VNET_HDR_LEN).
    tun_front: usize,
    /// Largest datagram sent in UDP GSO sends (0: none); lowered when the kernel rejects one.
    gso_max: usize,
    out: Outputs,
}

impl Driver {
    fn new(io: &ShardIo, opts: &ShardOptions, multishot: bool, gro: bool) -> io::Result<Self> {
        // The CQ must hold every possible in-flight completion (each posted op, each output,
        // plus a cancel per op at shutdown) so it can never overflow.
        let max_inflight = 2 * (opts.udp_depth + opts.tun_depth + 2) + opts.tx_slots;
        let cq = u32::try_from(max_inflight.next_power_of_two())
            .unwrap_or(u32::MAX)
            .max(2 * SQ_ENTRIES);
        let ring = IoUring::builder().setup_cqsize(cq).build(SQ_ENTRIES)?;
        let family = sys::socket_family(io.udp.as_fd())?;
        let mut ms = match multishot {
            true => Some(Multishot::new(opts.udp_depth, family, gro)?),
            false => None,
        };
        if let Some(m) = ms.as_mut() {
            m.ring.register(&ring)?;
        }
        let front = ms.as_ref().map_or(0, |m| m.front);
        let udp_slots = if ms.is_some() { 0 } else { opts.udp_depth };
        let udp = (0..udp_slots)
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
                    ctrl: [0; UDP_CMSG_SPACE / 8],
                    gso: 0,
                    buf: None,
                })
            })
            .collect();
        let tick = types::Timespec::new()
            .sec(opts.tick.as_secs())
            .nsec(opts.tick.subsec_nanos());
        let mut out = Outputs::new(opts.buf_len + front, opts.max_buffers);
        out.set_tun_vnet(opts.tun_vnet);
        Ok(Driver {
            ring,
            tun_front: if opts.tun_vnet { VNET_HDR_LEN } else { 0 },
            gso_max: if opts.udp_gso {
                usize::from(u16::MAX)
            } else {
                0
            },
            udp_fd: io.udp.as_raw_fd(),
            tun_fd: io.tun.as_raw_fd(),
            wake_fd: io.waker.fd().as_raw_fd(),
            family,
            udp,
            ms,
            tun,
            tx,
            tx_free: (0..opts.tx_slots).rev().collect(),
            wake_buf: Box::new(0),
            wake_posted: false,
            tick: Box::new(tick),
            timeout_posted: false,
            inflight: 0,
            leak: false,
            // Multishot: room for the kernel's prefix so the handler still gets `buf_len`.
            out,
        })
    }

    fn run<H: ShardHandler>(&mut self, handler: &mut H, stop: &AtomicBool) -> io::Result<()> {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::new();
        self.repost()?;
        while !stop.load(Ordering::Acquire) {
            self.submit_and_wait()?;
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c: cqueue::Entry| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &cqes {
                self.reaped(flags);
                self.complete(ud, res, flags, Some(&mut *handler))?;
            }
            let start = self.out.ops.len();
            handler.on_tick(&mut self.out);
            self.out.drop_current(start);
            self.flush()?;
            self.repost()?;
        }
        Ok(())
    }

    /// Books one reaped completion: a multishot request stays in flight while F_MORE is set.
    fn reaped(&mut self, flags: u32) {
        if !cqueue::more(flags) {
            self.inflight = self.inflight.saturating_sub(1);
        }
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
        self.refill_ring();
        self.post_multishot()?;
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

    /// Publishes every idle buffer id in the provided-buffer ring, taking fresh pool
    /// buffers for ids whose buffer left with an in-place output.
    fn refill_ring(&mut self) {
        let (Some(ms), out) = (self.ms.as_mut(), &mut self.out) else {
            return;
        };
        let mut published = false;
        while let Some(&bid) = ms.idle.last() {
            let Some(slot) = ms.bufs.get_mut(usize::from(bid)) else {
                ms.idle.pop();
                continue;
            };
            if slot.is_none() {
                // No buffer now: retried after the next batch frees some.
                let Some(b) = out.alloc() else { break };
                *slot = Some(b);
            }
            let Some(b) = slot.as_mut() else { break };
            ms.ring.push(bid, b);
            ms.idle.pop();
            published = true;
        }
        if published {
            ms.ring.publish();
        }
    }

    /// Arms the multishot receive if it is not armed and the ring holds a buffer (armed on
    /// an empty ring it would only end at once with ENOBUFS).
    fn post_multishot(&mut self) -> io::Result<()> {
        let Some(ms) = self.ms.as_mut() else {
            return Ok(());
        };
        if ms.posted || ms.idle.len() >= ms.bufs.len() {
            return Ok(());
        }
        let e = opcode::RecvMsgMulti::new(types::Fd(self.udp_fd), &*ms.hdr, BGID)
            .build()
            .user_data(ud(TAG_UDP_MULTI, 0));
        ms.posted = true;
        self.out.stats.udp_multishot_arms += 1;
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
        // With a vnet header it lands just before HEADROOM, the packet at HEADROOM.
        let at = HEADROOM - self.tun_front;
        let Some(payload) = slot.buf.as_mut().and_then(|b| b.get_mut(at..)) else {
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
        flags: u32,
        handler: Option<&mut H>,
    ) -> io::Result<()> {
        let tag = user_data >> 32;
        let idx = (user_data & 0xffff_ffff) as usize;
        match tag {
            TAG_UDP_RECV => self.complete_udp(idx, res, handler),
            TAG_UDP_MULTI => self.complete_multishot(res, flags, handler),
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
                let mut was_gso = 0;
                if let Some(s) = self.tx.get_mut(idx) {
                    was_gso = std::mem::take(&mut s.gso);
                    if let Some(b) = s.buf.take() {
                        self.out.recycle(b);
                        self.tx_free.push(idx);
                    }
                }
                if was_gso > 0 && res < 0 {
                    self.gso_max = super::gso::after_refusal(self.gso_max, was_gso, -res);
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

    fn complete_multishot<H: ShardHandler>(
        &mut self,
        res: i32,
        flags: u32,
        handler: Option<&mut H>,
    ) -> io::Result<()> {
        let Some(ms) = self.ms.as_mut() else {
            return Ok(());
        };
        if !cqueue::more(flags) {
            // Ended (cancelled, out of buffers, error): re-armed by `repost`.
            ms.posted = false;
        }
        let taken = cqueue::buffer_select(flags)
            .and_then(|bid| Some((bid, ms.bufs.get_mut(usize::from(bid))?.take()?)));
        let Some((bid, mut b)) = taken else {
            if res < 0 {
                let e = io::Error::from_raw_os_error(-res);
                if res == -libc::ECANCELED || res == -libc::ENOBUFS || handler.is_none() {
                    return Ok(());
                }
                if is_fatal(&e) {
                    return Err(e);
                }
                tracing::trace!(error = %e, "udp multishot receive error");
            }
            return Ok(());
        };
        let (namelen, controllen, front) = (ms.namelen, ms.controllen, ms.front);
        // Buffer id `bid` is out of the kernel's ring; it goes back through `idle`.
        ms.idle.push(bid);
        let parsed = match (res >= 0, handler.is_some()) {
            (true, true) => parse_recvmsg_out(&b, namelen, controllen),
            _ => None,
        };
        let (Some(handler), Some((from, len, truncated, seg))) = (handler, parsed) else {
            if let Some(slot) = ms.bufs.get_mut(usize::from(bid)) {
                *slot = Some(b);
            }
            return Ok(());
        };
        let fits = front + HEADROOM + len <= b.len();
        let (Some(from), false, true) = (from, truncated, fits) else {
            self.out.stats.rx_truncated += 1;
            if let Some(slot) = ms.bufs.get_mut(usize::from(bid)) {
                *slot = Some(b);
            }
            return Ok(());
        };
        self.out.stats.udp_rx += 1;
        let start = self.out.ops.len();
        if let Some(view) = b.get_mut(front..) {
            match seg {
                Some(seg) if seg < len => {
                    self.out.stats.udp_gro_batches += 1;
                    handler.on_udp_gro(from, view, len, seg, &mut self.out);
                }
                _ => handler.on_udp(from, view, len, &mut self.out),
            }
        }
        self.out.shift_current(start, front);
        let back = self.out.resolve_current(start, b);
        // `None`: an output took the buffer; `refill_ring` gives the id a fresh one.
        if let Some(slot) = self
            .ms
            .as_mut()
            .and_then(|m| m.bufs.get_mut(usize::from(bid)))
        {
            *slot = back;
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
        let Some(len) = (res.unsigned_abs() as usize)
            .checked_sub(self.tun_front)
            .filter(|&n| n > 0)
        else {
            return Ok(());
        };
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
        self.out.fit_gso(self.gso_max);
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
                    slot.gso = usize::from(op.segment);
                    if slot.gso > 0 {
                        self.out.stats.udp_gso_sends += 1;
                        sys::write_segment_cmsg(&mut slot.ctrl, op.segment);
                        slot.hdr.msg_control = slot.ctrl.as_mut_ptr().cast();
                        slot.hdr.msg_controllen = UDP_CMSG_SPACE;
                    }
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
        if self.ms.as_ref().is_some_and(|m| m.posted) {
            cancels.push(opcode::AsyncCancel::new(ud(TAG_UDP_MULTI, 0)).build());
        }
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
            let done: Vec<(u64, i32, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            for (u, r, f) in done {
                self.reaped(f);
                self.complete::<NoHandler>(u, r, f, None)?;
            }
        }
        // Nothing in flight: the kernel reads the buffer ring no more once unregistered.
        if let Some(ms) = self.ms.as_mut() {
            ms.ring.unregister(&self.ring)?;
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
            std::mem::forget(self.ms.take());
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
