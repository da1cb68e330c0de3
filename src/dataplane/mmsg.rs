//! Batches of UDP datagrams for one `recvmmsg(2)` or `sendmmsg(2)`: the `mmsghdr` arrays and
//! everything they point to (addresses, iovecs, the UDP_GRO / UDP_SEGMENT control messages),
//! allocated once per shard. The epoll driver receives and sends a whole batch per syscall.
//!
//! The headers' pointers are rebuilt right before each syscall from the arrays, which never
//! grow after construction, so no pointer outlives or misses what it points to.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::outputs::{Buf, Outputs};
use super::sys::{self, UdpCmsg, UDP_CMSG_SPACE};
use super::{gso, HEADROOM};

/// One received datagram (or GRO batch of datagrams) in a [`RecvBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    /// The sender; None for an address family the socket should never report.
    pub from: Option<SocketAddr>,
    /// Bytes at `HEADROOM` in the slot's buffer.
    pub len: usize,
    /// The kernel cut the datagram to fit (MSG_TRUNC): it must be dropped.
    pub truncated: bool,
    /// UDP GRO: the datagrams are `seg` bytes each but the last.
    pub seg: Option<usize>,
}

/// Receive slots for `recvmmsg`, each holding a pool buffer between calls.
pub(crate) struct RecvBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    ctrl: Vec<UdpCmsg>,
    bufs: Vec<Option<Buf>>,
    /// Control bytes offered per message: [`UDP_CMSG_SPACE`] with GRO on, else 0.
    controllen: usize,
}

impl RecvBatch {
    /// `depth` slots (at least one); `gro` offers room for the UDP_GRO control message.
    pub(crate) fn new(depth: usize, gro: bool) -> Self {
        let depth = depth.max(1);
        RecvBatch {
            // SAFETY: mmsghdr and iovec are plain data; all-zero is a valid value.
            hdrs: (0..depth).map(|_| unsafe { mem::zeroed() }).collect(),
            iovs: (0..depth).map(|_| unsafe { mem::zeroed() }).collect(),
            addrs: (0..depth).map(|_| sys::zeroed_storage()).collect(),
            ctrl: vec![[0; 3]; depth],
            bufs: (0..depth).map(|_| None).collect(),
            controllen: if gro { UDP_CMSG_SPACE } else { 0 },
        }
    }

    /// One non-blocking `recvmmsg` into every slot that has (or can get) a buffer; returns
    /// how many messages arrived (slots `0..n`). `WouldBlock` when nothing was waiting.
    pub(crate) fn recv(&mut self, fd: BorrowedFd<'_>, out: &mut Outputs) -> io::Result<usize> {
        // Slots are filled front to back, so the kernel's `0..n` are all slots with buffers.
        let mut ready = 0;
        for slot in self.bufs.iter_mut() {
            if slot.is_none() {
                *slot = out.alloc();
            }
            let Some(b) = slot.as_mut().filter(|b| b.len() > HEADROOM) else {
                break;
            };
            let payload = &mut b[HEADROOM..];
            let (Some(iov), Some(h), Some(addr), Some(ctrl)) = (
                self.iovs.get_mut(ready),
                self.hdrs.get_mut(ready),
                self.addrs.get_mut(ready),
                self.ctrl.get_mut(ready),
            ) else {
                break;
            };
            *iov = libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = if self.controllen > 0 {
                ctrl.as_mut_ptr().cast()
            } else {
                std::ptr::null_mut()
            };
            h.msg_hdr.msg_controllen = self.controllen;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
            ready += 1;
        }
        if ready == 0 {
            // No buffer at all: the pool is exhausted by outputs in flight.
            return Ok(0);
        }
        let vlen = libc::c_uint::try_from(ready).unwrap_or(libc::c_uint::MAX);
        // SAFETY: the first `ready` headers point at live iovecs, addresses, control arrays
        // and buffers owned by `self`, none of which moves or is touched during the call.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.unsigned_abs() as usize)
    }

    /// What slot `i` of the last [`RecvBatch::recv`] holds.
    pub(crate) fn received(&self, i: usize) -> Option<Received> {
        let h = self.hdrs.get(i)?;
        let addr = self.addrs.get(i)?;
        let ctrl_len = h.msg_hdr.msg_controllen.min(self.controllen);
        let seg = match (self.controllen, self.ctrl.get(i)) {
            (0, _) | (_, None) => None,
            (_, Some(c)) => {
                // SAFETY: a [u64; 3] is 24 initialized bytes; ctrl_len <= 24.
                let bytes = unsafe { std::slice::from_raw_parts(c.as_ptr().cast::<u8>(), 24) };
                bytes.get(..ctrl_len).and_then(sys::gro_segment_size)
            }
        };
        Some(Received {
            from: sys::from_sockaddr(addr, h.msg_hdr.msg_namelen),
            len: h.msg_len as usize,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            seg,
        })
    }

    /// Takes slot `i`'s buffer for the handler; [`RecvBatch::put`] gives one back.
    pub(crate) fn take(&mut self, i: usize) -> Option<Buf> {
        self.bufs.get_mut(i)?.take()
    }

    /// Returns a buffer to slot `i` (None: an output kept it; the slot gets a fresh one).
    pub(crate) fn put(&mut self, i: usize, b: Option<Buf>) {
        if let Some(slot) = self.bufs.get_mut(i) {
            *slot = b;
        }
    }
}

/// Datagrams queued for one `sendmmsg`, each with its buffer until the call returns.
pub(crate) struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    ctrl: Vec<UdpCmsg>,
    /// Per message: its UDP_SEGMENT size (0: one datagram), buffer and byte range.
    segs: Vec<u16>,
    bufs: Vec<Buf>,
    ranges: Vec<Range<usize>>,
    family: libc::c_int,
}

impl SendBatch {
    /// Room for `depth` messages (at least one) on a socket of address family `family`.
    pub(crate) fn new(depth: usize, family: libc::c_int) -> Self {
        let depth = depth.max(1);
        SendBatch {
            // SAFETY: mmsghdr and iovec are plain data; all-zero is a valid value.
            hdrs: (0..depth).map(|_| unsafe { mem::zeroed() }).collect(),
            iovs: (0..depth).map(|_| unsafe { mem::zeroed() }).collect(),
            addrs: (0..depth).map(|_| sys::zeroed_storage()).collect(),
            addr_lens: vec![0; depth],
            ctrl: vec![[0; 3]; depth],
            segs: Vec::with_capacity(depth),
            bufs: Vec::with_capacity(depth),
            ranges: Vec::with_capacity(depth),
            family,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.bufs.len() >= self.hdrs.len()
    }

    /// Queues `b[range]` to `to` (`segment` > 0: a UDP GSO send). Hands the buffer back
    /// when the batch is full or the address does not fit the socket's family.
    pub(crate) fn push(
        &mut self,
        to: SocketAddr,
        b: Buf,
        range: Range<usize>,
        segment: u16,
    ) -> Result<(), Buf> {
        let i = self.bufs.len();
        let (Some(addr), Some(alen)) = (self.addrs.get_mut(i), self.addr_lens.get_mut(i)) else {
            return Err(b);
        };
        if b.get(range.clone()).is_none() {
            return Err(b);
        }
        let Some(len) = sys::to_sockaddr(to, self.family, addr) else {
            return Err(b);
        };
        *alen = len;
        self.segs.push(segment);
        self.bufs.push(b);
        self.ranges.push(range);
        Ok(())
    }

    /// Sends everything queued with as few `sendmmsg` calls as the kernel allows and
    /// recycles the buffers. A datagram the kernel refuses is counted and skipped; on
    /// EAGAIN (socket buffer full) the rest are dropped and counted, like a full device
    /// queue. A refused GSO send lowers `gso_max` (see [`gso::after_refusal`]).
    pub(crate) fn send(&mut self, fd: BorrowedFd<'_>, out: &mut Outputs, gso_max: &mut usize) {
        let n = self.bufs.len();
        for i in 0..n {
            let (Some(b), Some(r), Some(&seg)) =
                (self.bufs.get(i), self.ranges.get(i), self.segs.get(i))
            else {
                break;
            };
            let (Some(h), Some(iov), Some(addr), Some(&alen), Some(ctrl)) = (
                self.hdrs.get_mut(i),
                self.iovs.get_mut(i),
                self.addrs.get_mut(i),
                self.addr_lens.get(i),
                self.ctrl.get_mut(i),
            ) else {
                break;
            };
            let data = &b[r.clone()];
            *iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = alen;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            if seg > 0 {
                sys::write_segment_cmsg(ctrl, seg);
                h.msg_hdr.msg_control = ctrl.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = UDP_CMSG_SPACE;
            } else {
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let mut at = 0;
        while at < n {
            let vlen = libc::c_uint::try_from(n - at).unwrap_or(libc::c_uint::MAX);
            let Some(first) = self.hdrs.get_mut(at) else {
                break;
            };
            // SAFETY: headers at..n point at live iovecs, addresses, control messages and
            // buffers owned by `self`; the kernel only reads through them for a send.
            let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), first, vlen, libc::MSG_DONTWAIT) };
            if rc > 0 {
                let sent = (rc.unsigned_abs() as usize).min(n - at);
                for &seg in self.segs.get(at..at + sent).unwrap_or(&[]) {
                    out.stats.udp_tx += 1;
                    if seg > 0 {
                        out.stats.udp_gso_sends += 1;
                    }
                }
                at += sent;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    out.stats.tx_dropped += (n - at) as u64;
                    break;
                }
                errno => {
                    // Message `at` failed; the ones after it were not tried.
                    let seg = self.segs.get(at).copied().unwrap_or(0);
                    if seg > 0 {
                        *gso_max = gso::after_refusal(*gso_max, seg.into(), errno.unwrap_or(0));
                    }
                    tracing::trace!(error = %e, "udp send failed");
                    out.stats.tx_errors += 1;
                    at += 1;
                }
            }
        }
        self.segs.clear();
        self.ranges.clear();
        for b in self.bufs.drain(..) {
            out.recycle(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        (a, b)
    }

    fn buf_with(out: &mut Outputs, data: &[u8]) -> Buf {
        let mut b = out.alloc().unwrap();
        b[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
        b
    }

    #[test]
    fn batch_round_trip_in_order_with_sender() {
        let (a, b) = pair();
        let mut out = Outputs::new(HEADROOM + 2048, 64);
        let mut tx = SendBatch::new(8, libc::AF_INET);
        let to = b.local_addr().unwrap();
        for i in 0..5u8 {
            let buf = buf_with(&mut out, &[i; 100]);
            let len = 100 + usize::from(i);
            assert!(tx.push(to, buf, HEADROOM..HEADROOM + len, 0).is_ok());
        }
        let mut gso_max = 0;
        tx.send(a.as_fd(), &mut out, &mut gso_max);
        assert_eq!(out.stats.udp_tx, 5);

        let mut rx = RecvBatch::new(8, false);
        let mut got = Vec::new();
        while got.len() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            let n = rx.recv(b.as_fd(), &mut out).unwrap_or(0);
            for i in 0..n {
                let r = rx.received(i).unwrap();
                assert_eq!(r.from, Some(a.local_addr().unwrap()));
                assert!(!r.truncated);
                assert_eq!(r.seg, None);
                let buf = rx.take(i).unwrap();
                got.push((r.len, buf[HEADROOM]));
                rx.put(i, Some(buf));
            }
        }
        assert_eq!(
            got,
            (0..5u8)
                .map(|i| (100 + usize::from(i), i))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn truncation_is_reported() {
        let (a, b) = pair();
        a.send_to(&[7u8; 300], b.local_addr().unwrap()).unwrap();
        // Buffers hold 100 bytes past the headroom.
        let mut out = Outputs::new(HEADROOM + 100, 4);
        let mut rx = RecvBatch::new(2, false);
        let mut n = 0;
        for _ in 0..100 {
            n = rx.recv(b.as_fd(), &mut out).unwrap_or(0);
            if n > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 1);
        assert!(rx.received(0).unwrap().truncated);
    }

    #[test]
    fn gso_send_arrives_as_separate_datagrams() {
        let (a, b) = pair();
        let mut out = Outputs::new(HEADROOM + 4096, 8);
        let mut tx = SendBatch::new(4, libc::AF_INET);
        let buf = buf_with(&mut out, &[1u8; 250]);
        tx.push(b.local_addr().unwrap(), buf, HEADROOM..HEADROOM + 250, 100)
            .unwrap();
        let mut gso_max = usize::from(u16::MAX);
        tx.send(a.as_fd(), &mut out, &mut gso_max);
        if gso_max == 0 || out.stats.tx_errors > 0 {
            return; // kernel without UDP GSO: the refusal path ran instead
        }
        assert_eq!(out.stats.udp_gso_sends, 1);
        b.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut lens = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..3 {
            lens.push(b.recv(&mut buf).unwrap());
        }
        assert_eq!(lens, [100, 100, 50]);
    }

    #[test]
    fn wrong_family_and_bad_range_hand_the_buffer_back() {
        let mut out = Outputs::new(HEADROOM + 64, 8);
        let mut tx = SendBatch::new(1, libc::AF_INET);
        let v6: SocketAddr = "[fd00::1]:1194".parse().unwrap();
        let b = out.alloc().unwrap();
        let b = tx.push(v6, b, HEADROOM..HEADROOM + 10, 0).unwrap_err();
        let b = tx
            .push("10.0.0.1:1194".parse().unwrap(), b, 0..10_000, 0)
            .unwrap_err();
        tx.push("10.0.0.1:1194".parse().unwrap(), b, 0..10, 0)
            .unwrap();
        assert!(tx.is_full());
        let b = out.alloc().unwrap();
        assert!(tx
            .push("10.0.0.1:1194".parse().unwrap(), b, 0..10, 0)
            .is_err());
    }
}
