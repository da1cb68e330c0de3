//! The io_uring driver's multishot UDP receive: one RecvMsgMulti drawing from a
//! provided-buffer ring, the probe that tells whether this kernel has it, and the parser of
//! the `io_uring_recvmsg_out` prefix the kernel writes before every datagram. The layout
//! and memory rules are described in the parent module.

use std::alloc::Layout;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use io_uring::{cqueue, opcode, types, IoUring};

use super::super::outputs::Buf;
use super::super::sys::{self, UDP_CMSG_SPACE};
use super::super::HEADROOM;
use super::probe;

/// Buffer group id of the shard's provided-buffer ring (the only group on its io_uring).
pub(super) const BGID: u16 = 0;

/// `sizeof(struct io_uring_recvmsg_out)`: namelen, controllen, payloadlen, flags (u32 each),
/// written by the kernel at the start of every multishot RecvMsg buffer.
const RECVMSG_OUT_LEN: usize = 16;

/// Checks, once per process, that multishot RecvMsg over a provided-buffer ring works: a
/// datagram on a private AF_UNIX socketpair must complete with a ring buffer and
/// IORING_CQE_F_MORE (an older kernel rejects the multishot flag or the buffer ring).
pub(crate) fn multishot_probe() -> io::Result<()> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| multishot_probe_uncached().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))
}

fn multishot_probe_uncached() -> io::Result<()> {
    probe()?;
    let ring: IoUring = IoUring::new(8)?;
    let mut br = BufRing::new(2)?;
    br.register(&ring)?;
    let mut bufs: Vec<Buf> = (0..2).map(|_| vec![0u8; 256].into_boxed_slice()).collect();
    for (bid, b) in (0u16..).zip(bufs.iter_mut()) {
        br.push(bid, b);
    }
    br.publish();
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two fds into a live array.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned here.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let msg = b"probe";
    // SAFETY: writes from a live byte array.
    if unsafe { libc::write(b.as_raw_fd(), msg.as_ptr().cast(), msg.len()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero msghdr is valid (no name, no control).
    let hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    let e = opcode::RecvMsgMulti::new(types::Fd(a.as_raw_fd()), &*hdr, BGID)
        .build()
        .user_data(1);
    let wait = types::Timespec::new().sec(1);
    let args = types::SubmitArgs::new().timespec(&wait);
    // SAFETY: msghdr, ring memory and buffers outlive the request: it is cancelled and
    // reaped below, or everything is leaked.
    let outcome = (|| -> io::Result<bool> {
        unsafe { ring.submission_shared().push(&e) }
            .map_err(|_| io::Error::other("probe SQ full"))?;
        let mut ok = false;
        let mut armed = true;
        let mut cancelled = false;
        for _ in 0..8 {
            match ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
            // SAFETY: only this thread touches the probe ring.
            for c in unsafe { ring.completion_shared() } {
                if c.user_data() == 1 {
                    if c.result() > 0 && cqueue::buffer_select(c.flags()).is_some() {
                        ok = cqueue::more(c.flags());
                    }
                    if !cqueue::more(c.flags()) {
                        armed = false;
                    }
                }
            }
            if !armed {
                return Ok(ok);
            }
            if !cancelled {
                let c = opcode::AsyncCancel::new(1).build().user_data(2);
                // SAFETY: a cancel holds no pointers.
                unsafe { ring.submission_shared().push(&c) }
                    .map_err(|_| io::Error::other("probe SQ full"))?;
                cancelled = true;
            }
        }
        Err(io::Error::other("probe receive did not finish"))
    })();
    match outcome {
        Ok(ok) => {
            br.unregister(&ring)?;
            drop((a, b));
            if ok {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "io_uring multishot RecvMsg unsupported",
                ))
            }
        }
        Err(e) => {
            // The kernel may still own the buffers: never free them.
            std::mem::forget(bufs);
            std::mem::forget(hdr);
            std::mem::forget(br);
            Err(e)
        }
    }
}

/// A provided-buffer ring: `entries` (a power of two) `io_uring_buf` slots in page-aligned
/// memory the kernel reads buffers from; the tail (shared with the kernel) is in slot 0's
/// reserved field.
pub(super) struct BufRing {
    base: NonNull<types::BufRingEntry>,
    layout: Layout,
    entries: u16,
    /// Our tail, published with [`BufRing::publish`].
    tail: u16,
    /// Registered with a ring and not yet unregistered: the kernel may read the memory.
    registered: bool,
}

impl BufRing {
    pub(super) fn new(entries: u16) -> io::Result<Self> {
        if !entries.is_power_of_two() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: sysconf takes no pointers.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .unwrap_or(4096)
            .max(4096);
        let size = (usize::from(entries) * std::mem::size_of::<types::BufRingEntry>()).max(page);
        let layout = Layout::from_size_align(size, page)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let base = NonNull::new(p.cast::<types::BufRingEntry>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(BufRing {
            base,
            layout,
            entries,
            tail: 0,
            registered: false,
        })
    }

    pub(super) fn register(&mut self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the memory holds `entries` slots, is page aligned, and is not freed while
        // registered (Drop leaks it then).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.base.as_ptr() as u64,
                self.entries,
                BGID,
                0,
            )?;
        }
        self.registered = true;
        Ok(())
    }

    pub(super) fn unregister(&mut self, ring: &IoUring) -> io::Result<()> {
        if self.registered {
            ring.submitter().unregister_buf_ring(BGID)?;
            self.registered = false;
        }
        Ok(())
    }

    /// Writes `buf` as buffer `bid` into the next slot (visible to the kernel after
    /// [`BufRing::publish`]). The caller keeps at most `entries` buffers in the ring.
    pub(super) fn push(&mut self, bid: u16, buf: &mut [u8]) {
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries, all inside the allocation; the kernel only reads slots
        // between head and the published tail, and this one is past the published tail.
        let e = unsafe { &mut *self.base.as_ptr().add(idx) };
        e.set_addr(buf.as_mut_ptr() as u64);
        e.set_len(u32::try_from(buf.len()).unwrap_or(u32::MAX));
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every pushed slot visible to the kernel.
    pub(super) fn publish(&self) {
        // SAFETY: the tail field is slot 0's reserved u16, inside the allocation, aligned
        // for u16 and only ever accessed atomically by us (the kernel reads it).
        let tail = unsafe {
            AtomicU16::from_ptr(types::BufRingEntry::tail(self.base.as_ptr()) as *mut u16)
        };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if !self.registered {
            // SAFETY: allocated in `new` with this layout; the kernel no longer reads it.
            unsafe { std::alloc::dealloc(self.base.as_ptr().cast(), self.layout) };
        }
    }
}

/// The multishot UDP receive: buffer ring, its buffers by id, and the msghdr template.
pub(super) struct Multishot {
    pub(super) ring: BufRing,
    /// Buffer of each id: `Some` while published in the ring (kernel-owned) or returned
    /// by the handler and waiting in `idle` to be published again.
    pub(super) bufs: Vec<Option<Buf>>,
    /// Ids not in the kernel's ring (their buffer, if any, is ours).
    pub(super) idle: Vec<u16>,
    /// Template: only `msg_namelen` (and a zero `msg_controllen`) matter.
    pub(super) hdr: Box<libc::msghdr>,
    pub(super) namelen: usize,
    /// Bytes of control data room after the name (the UDP_GRO message), 0 without GRO.
    pub(super) controllen: usize,
    /// Bytes before the handler's slice: RECVMSG_OUT_LEN + namelen + controllen - HEADROOM.
    pub(super) front: usize,
    pub(super) posted: bool,
}

impl Multishot {
    pub(super) fn new(depth: usize, family: libc::c_int, gro: bool) -> io::Result<Self> {
        let entries = u16::try_from(depth.next_power_of_two().clamp(1, 32768))
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let namelen = if family == libc::AF_INET6 {
            std::mem::size_of::<libc::sockaddr_in6>()
        } else {
            std::mem::size_of::<libc::sockaddr_in>()
        };
        // SAFETY: all-zero msghdr is valid.
        let mut hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        hdr.msg_namelen = namelen as libc::socklen_t;
        let controllen = if gro { UDP_CMSG_SPACE } else { 0 };
        hdr.msg_controllen = controllen;
        Ok(Multishot {
            ring: BufRing::new(entries)?,
            bufs: (0..entries).map(|_| None).collect(),
            idle: (0..entries).rev().collect(),
            hdr,
            namelen,
            controllen,
            front: (RECVMSG_OUT_LEN + namelen + controllen).saturating_sub(HEADROOM),
            posted: false,
        })
    }
}

/// Parses what a multishot RecvMsg wrote at the start of `buf` (with a `namelen`-byte name
/// field and `controllen` bytes of control room): (source, payload length, truncated, GRO
/// segment size). The payload starts at `RECVMSG_OUT_LEN + namelen + controllen`. `None` if
/// the prefix itself does not fit.
pub(super) fn parse_recvmsg_out(
    buf: &[u8],
    namelen: usize,
    controllen: usize,
) -> Option<(Option<std::net::SocketAddr>, usize, bool, Option<usize>)> {
    let word = |i: usize| -> Option<u32> {
        let b = buf.get(i * 4..i * 4 + 4)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    };
    let (name_got, control_got, payload, flags) = (word(0)?, word(1)?, word(2)?, word(3)?);
    let name_got = usize::try_from(name_got).ok()?;
    let name = buf.get(RECVMSG_OUT_LEN..RECVMSG_OUT_LEN + namelen.min(name_got))?;
    let mut st = sys::zeroed_storage();
    let room = std::mem::size_of::<libc::sockaddr_storage>();
    if name.len() > room {
        return None;
    }
    // SAFETY: copies at most sizeof(sockaddr_storage) bytes into a live, exclusively
    // borrowed sockaddr_storage; any byte pattern is a valid sockaddr_storage.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            (&mut st as *mut libc::sockaddr_storage).cast::<u8>(),
            name.len(),
        );
    }
    let from = sys::from_sockaddr(&st, name.len() as libc::socklen_t);
    let control_got = usize::try_from(control_got).ok()?.min(controllen);
    let at = RECVMSG_OUT_LEN + namelen;
    let seg = buf
        .get(at..at + control_got)
        .and_then(sys::gro_segment_size);
    let truncated = flags & (libc::MSG_TRUNC as u32) != 0 || name_got > namelen;
    Some((from, usize::try_from(payload).ok()?, truncated, seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// io_uring_recvmsg_out + a 16-byte sockaddr_in name field + payload, as the kernel
    /// lays it out in a provided buffer.
    fn fixture(namelen_got: u32, payload: u32, flags: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [namelen_got, 0, payload, flags] {
            b.extend_from_slice(&w.to_ne_bytes());
        }
        let mut name = [0u8; 16];
        name[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        name[2..4].copy_from_slice(&1194u16.to_be_bytes());
        name[4..8].copy_from_slice(&[192, 0, 2, 7]);
        b.extend_from_slice(&name);
        b.extend_from_slice(b"payload");
        b
    }

    #[test]
    fn parses_recvmsg_out() {
        let b = fixture(16, 7, 0);
        let (from, len, trunc, seg) = parse_recvmsg_out(&b, 16, 0).unwrap();
        assert_eq!(from, Some("192.0.2.7:1194".parse().unwrap()));
        assert_eq!((len, trunc, seg), (7, false, None));
        assert_eq!(&b[RECVMSG_OUT_LEN + 16..][..len], b"payload");
    }

    #[test]
    fn recvmsg_out_truncation_and_garbage() {
        let (_, len, trunc, _) =
            parse_recvmsg_out(&fixture(16, 9000, libc::MSG_TRUNC as u32), 16, 0).unwrap();
        assert_eq!((len, trunc), (9000, true));
        // A name longer than the field was cut: flagged, never trusted.
        let (_, _, trunc, _) = parse_recvmsg_out(&fixture(28, 7, 0), 16, 0).unwrap();
        assert!(trunc);
        // Too short for the prefix.
        assert!(parse_recvmsg_out(&[0u8; 10], 16, 0).is_none());
        assert!(parse_recvmsg_out(&fixture(16, 7, 0)[..20], 16, 0).is_none());
    }

    #[test]
    fn buf_ring_rejects_non_power_of_two() {
        assert!(BufRing::new(3).is_err());
        let r = BufRing::new(64).unwrap();
        assert_eq!(r.base.as_ptr() as usize % 4096, 0, "page aligned");
    }
}
