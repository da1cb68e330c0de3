//! The per-shard output queue and buffer pool shared by both drivers.
//!
//! Buffers are `Box<[u8]>` of one fixed length; their heap memory never moves while the
//! kernel owns them (the box may move, its contents do not). An output either owns a pool
//! buffer holding a copy, or references the buffer of the packet being handled
//! (`*_in_place`), which the driver then hands over to the transmit side instead of
//! reposting it for receive: the zero-copy path for packets sealed or opened in place.

use std::net::SocketAddr;
use std::ops::Range;

use super::vnet::VNET_HDR_LEN;

pub(crate) type Buf = Box<[u8]>;

/// Per-shard counters; drivers and [`Outputs`] update them, the handler may read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Datagrams received on the UDP socket.
    pub udp_rx: u64,
    /// Packets read from the tun queue.
    pub tun_rx: u64,
    /// Datagrams the kernel accepted for sending.
    pub udp_tx: u64,
    /// Packets written to the tun queue.
    pub tun_tx: u64,
    /// Received datagrams dropped because they exceeded the buffer.
    pub rx_truncated: u64,
    /// Outputs dropped: no free buffer or transmit slot, too large, or a bad range.
    pub tx_dropped: u64,
    /// Sends or tun writes the kernel failed.
    pub tx_errors: u64,
    /// Times the io_uring driver armed its multishot UDP receive (once at start, again
    /// whenever the kernel ends it, e.g. when the provided buffers ran out). Zero means the
    /// driver uses one RecvMsg per buffer (epoll driver, old kernel, or disabled).
    pub udp_multishot_arms: u64,
    /// UDP GSO sends submitted (each carries several datagrams).
    pub udp_gso_sends: u64,
    /// UDP receives that held several datagrams (UDP GRO).
    pub udp_gro_batches: u64,
}

/// Where an output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dest {
    Udp(SocketAddr),
    Tun,
}

/// Bytes of one output.
#[derive(Debug)]
pub(crate) enum Data {
    /// A pool buffer and the range to send.
    Owned(Buf, Range<usize>),
    /// A range of the buffer currently handed to the handler; resolved by the driver.
    Current(Range<usize>),
}

#[derive(Debug)]
pub(crate) struct Op {
    pub(crate) dest: Dest,
    pub(crate) data: Data,
    /// UDP GSO: every `segment` bytes of `data` is one datagram, the last may be shorter
    /// (`UDP_SEGMENT`); 0 = the data is one datagram.
    pub(crate) segment: u16,
}

impl Op {
    fn new(dest: Dest, data: Data) -> Op {
        Op {
            dest,
            data,
            segment: 0,
        }
    }
}

/// Outputs queued by a [`super::ShardHandler`] during one batch.
#[derive(Debug)]
pub struct Outputs {
    pool: Pool,
    pub(crate) ops: Vec<Op>,
    pub(crate) stats: ShardStats,
    /// An empty queue with capacity, swapped in when the GSO batch build rebuilds `ops`.
    pub(crate) spare_ops: Vec<Op>,
    /// Bytes of `virtio_net_hdr` every tun write starts with: [`VNET_HDR_LEN`] when the tun
    /// was opened with `IFF_VNET_HDR`, else 0. Tun outputs' ranges include it.
    tun_hdr: usize,
}

impl Outputs {
    pub(crate) fn new(buf_len: usize, max_buffers: usize) -> Self {
        Outputs {
            pool: Pool {
                free: Vec::new(),
                len: buf_len,
                total: 0,
                max: max_buffers,
            },
            ops: Vec::new(),
            stats: ShardStats::default(),
            spare_ops: Vec::new(),
            tun_hdr: 0,
        }
    }

    /// Makes every tun write carry a `virtio_net_hdr` (a zero one for a plain packet): the
    /// tun queue was opened with `IFF_VNET_HDR`.
    pub fn set_tun_vnet(&mut self, on: bool) {
        self.tun_hdr = if on { VNET_HDR_LEN } else { 0 };
    }

    /// Whether tun writes carry a `virtio_net_hdr`.
    pub fn tun_vnet(&self) -> bool {
        self.tun_hdr != 0
    }

    /// Queues `buf[range]` (a pool buffer from [`Outputs::alloc`], filled by the caller) as
    /// is: for a tun output it already starts with its `virtio_net_hdr` when
    /// [`Outputs::tun_vnet`]; for a UDP output `segment` > 0 makes it a GSO batch of
    /// `segment`-byte datagrams.
    pub(crate) fn push_owned(&mut self, dest: Dest, buf: Buf, range: Range<usize>, segment: u16) {
        if range.start > range.end || range.end > buf.len() {
            self.stats.tx_dropped += 1;
            self.pool.recycle(buf);
            return;
        }
        self.ops.push(Op {
            dest,
            data: Data::Owned(buf, range),
            segment,
        });
    }

    /// Queues a copy of `data` to be sent to `to`.
    pub fn send_udp(&mut self, to: SocketAddr, data: &[u8]) {
        self.push_copy(Dest::Udp(to), data);
    }

    /// Queues a copy of `data` to be written to the tun queue.
    pub fn write_tun(&mut self, data: &[u8]) {
        self.push_copy(Dest::Tun, data);
    }

    /// Queues `buf[range]` of the buffer being handled (as passed to `on_udp`/`on_tun`) to
    /// be sent to `to` without copying. Out-of-range outputs are dropped and counted.
    pub fn send_udp_in_place(&mut self, to: SocketAddr, range: Range<usize>) {
        self.ops.push(Op::new(Dest::Udp(to), Data::Current(range)));
    }

    /// Queues `buf[range]` of the buffer being handled to be written to the tun queue
    /// without copying. With [`Outputs::tun_vnet`] the [`VNET_HDR_LEN`] bytes before
    /// `range` must be free: the driver writes the (zero) header there.
    pub fn write_tun_in_place(&mut self, range: Range<usize>) {
        self.ops.push(Op::new(Dest::Tun, Data::Current(range)));
    }

    /// An `Outputs` attached to no driver, for benchmarks and tests outside the crate: the
    /// caller plays the driver with [`Outputs::take_buffer`], [`Outputs::finish_detached`]
    /// and [`Outputs::discard`]. Nothing is ever sent.
    pub fn new_detached(buf_len: usize, max_buffers: usize) -> Self {
        Outputs::new(buf_len, max_buffers)
    }

    /// Detached use: a pool buffer (`buf_len` bytes) to receive a packet into, as a driver
    /// would post it; `None` when the pool is exhausted.
    pub fn take_buffer(&mut self) -> Option<Box<[u8]>> {
        self.pool.alloc()
    }

    /// Detached use: what a driver does after `on_udp`/`on_tun` returned. `start` is
    /// [`Outputs::queued`] before the call, `cur` the buffer handed to it. Returns `cur`
    /// when no output kept it (else a later [`Outputs::discard`] recycles it).
    pub fn finish_detached(&mut self, start: usize, cur: Box<[u8]>) -> Option<Box<[u8]>> {
        self.resolve_current(start, cur)
    }

    /// Number of outputs queued and not yet submitted.
    pub fn queued(&self) -> usize {
        self.ops.len()
    }

    /// Detached use: drops every queued output, returning its buffer to the pool, as a
    /// driver does once the kernel completed it. Returns (outputs, bytes) dropped.
    pub fn discard(&mut self) -> (usize, usize) {
        let (mut n, mut bytes) = (0, 0);
        for op in self.ops.drain(..) {
            n += 1;
            match op.data {
                Data::Owned(b, r) => {
                    bytes += r.len();
                    self.pool.recycle(b);
                }
                Data::Current(r) => bytes += r.len(),
            }
        }
        (n, bytes)
    }

    /// Counters of this shard.
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// Bytes per buffer (including headroom): the largest output is this long.
    pub fn buf_len(&self) -> usize {
        self.pool.len
    }

    fn push_copy(&mut self, dest: Dest, data: &[u8]) {
        let front = self.front(dest);
        let end = front + data.len();
        if end > self.pool.len {
            self.stats.tx_dropped += 1;
            return;
        }
        let Some(mut b) = self.pool.alloc() else {
            self.stats.tx_dropped += 1;
            return;
        };
        if let Some(hdr) = b.get_mut(..front) {
            hdr.fill(0);
        }
        if let Some(dst) = b.get_mut(front..end) {
            dst.copy_from_slice(data);
        }
        self.ops.push(Op::new(dest, Data::Owned(b, 0..end)));
    }

    /// Bytes an output to `dest` carries before the packet.
    fn front(&self, dest: Dest) -> usize {
        match dest {
            Dest::Tun => self.tun_hdr,
            Dest::Udp(_) => 0,
        }
    }

    /// Resolves `Current` outputs queued since `start` against `cur`, the buffer the
    /// handler just saw. All but the last are copied; the last takes `cur` itself. Returns
    /// `cur` when no output kept it.
    pub(crate) fn resolve_current(&mut self, start: usize, mut cur: Buf) -> Option<Buf> {
        let mut last: Option<usize> = None;
        let mut i = start;
        while i < self.ops.len() {
            let Some(op) = self.ops.get(i) else { break };
            let Data::Current(r) = &op.data else {
                i += 1;
                continue;
            };
            // A tun output also takes the header bytes before the packet (module doc).
            let front = self.front(op.dest);
            let Some(hdr_start) = r.start.checked_sub(front) else {
                self.ops.remove(i);
                self.stats.tx_dropped += 1;
                continue;
            };
            let r = hdr_start..r.end;
            if r.start > r.end || r.end > cur.len() {
                self.ops.remove(i);
                self.stats.tx_dropped += 1;
                continue;
            }
            // The previous in-place output is copied out before this one's header bytes
            // are written, in case the two touch.
            if let Some(prev) = last.replace(i) {
                if !self.copy_current(prev, &cur) {
                    self.ops.remove(prev);
                    self.stats.tx_dropped += 1;
                    i -= 1;
                    last = Some(i);
                }
            }
            if let Some(h) = cur.get_mut(r.start..r.start + front) {
                h.fill(0);
            }
            if let Some(op) = self.ops.get_mut(i) {
                op.data = Data::Current(r);
            }
            i += 1;
        }
        match last.and_then(|i| self.ops.get_mut(i)) {
            Some(op) => {
                if let Data::Current(r) = &op.data {
                    op.data = Data::Owned(cur, r.clone());
                }
                None
            }
            None => Some(cur),
        }
    }

    /// Moves the ranges of `Current` outputs queued since `start` `by` bytes later: the
    /// handler saw a slice starting `by` bytes into the buffer that [`Self::resolve_current`]
    /// then gets. A range pushed past the end is dropped there like any out-of-range one.
    pub(crate) fn shift_current(&mut self, start: usize, by: usize) {
        for op in self.ops.iter_mut().skip(start) {
            if let Data::Current(r) = &mut op.data {
                *r = r.start.saturating_add(by)..r.end.saturating_add(by);
            }
        }
    }

    /// Drops `Current` outputs queued since `start` (there is no current buffer).
    pub(crate) fn drop_current(&mut self, start: usize) {
        let before = self.ops.len();
        let mut i = 0;
        self.ops.retain(|op| {
            let keep = i < start || !matches!(op.data, Data::Current(_));
            i += 1;
            keep
        });
        self.stats.tx_dropped += (before - self.ops.len()) as u64;
    }

    /// Turns `Current` output `idx` into a copy in a pool buffer; false if none is free.
    fn copy_current(&mut self, idx: usize, cur: &[u8]) -> bool {
        let Some(Op {
            data: Data::Current(r),
            ..
        }) = self.ops.get(idx)
        else {
            return true;
        };
        let r = r.clone();
        let copied = self.pool.alloc().and_then(|mut b| {
            let src = cur.get(r.clone())?;
            b.get_mut(..src.len())?.copy_from_slice(src);
            Some(Data::Owned(b, 0..src.len()))
        });
        match (copied, self.ops.get_mut(idx)) {
            (Some(d), Some(op)) => {
                op.data = d;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn alloc(&mut self) -> Option<Buf> {
        self.pool.alloc()
    }

    pub(crate) fn recycle(&mut self, b: Buf) {
        self.pool.recycle(b);
    }
}

/// Fixed-size buffers with a cap on how many exist.
#[derive(Debug)]
struct Pool {
    free: Vec<Buf>,
    len: usize,
    total: usize,
    max: usize,
}

impl Pool {
    fn alloc(&mut self) -> Option<Buf> {
        if let Some(b) = self.free.pop() {
            return Some(b);
        }
        if self.total >= self.max {
            return None;
        }
        self.total += 1;
        Some(vec![0u8; self.len].into_boxed_slice())
    }

    fn recycle(&mut self, b: Buf) {
        if b.len() == self.len {
            self.free.push(b);
        } else {
            self.total = self.total.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(op: &Op) -> (&[u8], Range<usize>) {
        match &op.data {
            Data::Owned(b, r) => (b, r.clone()),
            Data::Current(_) => panic!("unresolved"),
        }
    }

    #[test]
    fn copies_and_in_place_resolve() {
        let mut out = Outputs::new(64, 8);
        let mut cur = out.alloc().unwrap();
        cur[30..34].copy_from_slice(b"abcd");
        out.write_tun(b"xy");
        out.send_udp_in_place("10.0.0.1:1".parse().unwrap(), 30..34);
        out.write_tun_in_place(31..33);
        out.write_tun_in_place(60..65); // out of range: dropped
        let back = out.resolve_current(0, cur);
        assert!(back.is_none(), "last in-place output keeps the buffer");
        assert_eq!(out.ops.len(), 3);
        let (b, r) = owned(&out.ops[0]);
        assert_eq!(&b[r], b"xy");
        let (b, r) = owned(&out.ops[1]);
        assert_eq!(&b[r], b"abcd");
        let (b, r) = owned(&out.ops[2]);
        assert_eq!(&b[r], b"bc");
        assert_eq!(out.stats.tx_dropped, 1);
    }

    #[test]
    fn shifted_in_place_ranges_index_the_whole_buffer() {
        let mut out = Outputs::new(64, 8);
        let mut cur = out.alloc().unwrap();
        cur[40..44].copy_from_slice(b"wxyz");
        out.write_tun(b"before"); // queued before `start`: untouched
        let start = out.ops.len();
        // The handler saw cur[20..]: its range 20..24 is cur[40..44].
        out.write_tun_in_place(20..24);
        out.send_udp_in_place("10.0.0.1:1".parse().unwrap(), 40..45); // 60..65: out of range
        out.shift_current(start, 20);
        assert!(out.resolve_current(start, cur).is_none());
        assert_eq!(out.ops.len(), 2);
        let (b, r) = owned(&out.ops[0]);
        assert_eq!(&b[r], b"before");
        let (b, r) = owned(&out.ops[1]);
        assert_eq!(&b[r], b"wxyz");
        assert_eq!(out.stats.tx_dropped, 1);
    }

    #[test]
    fn pool_cap_and_oversize_drop() {
        let mut out = Outputs::new(16, 2);
        out.write_tun(&[0u8; 17]);
        out.write_tun(b"a");
        out.write_tun(b"b");
        out.write_tun(b"c");
        assert_eq!(out.ops.len(), 2);
        assert_eq!(out.stats.tx_dropped, 2);
        let cur = vec![0u8; 16].into_boxed_slice();
        assert!(
            out.resolve_current(0, cur).is_some(),
            "no in-place output: buffer returned"
        );
        out.write_tun_in_place(0..1);
        out.drop_current(0);
        assert_eq!(out.ops.len(), 2);
        assert_eq!(out.stats.tx_dropped, 3);
    }
}
