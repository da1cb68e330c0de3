//! Batch build for UDP GSO: runs of queued datagrams to one destination become one
//! `UDP_SEGMENT` send, so the kernel walks its UDP/IP stack once per run instead of once
//! per datagram (the same idea as quinn-udp's `Transmit::segment_size`).
//!
//! Invariants: the kernel cuts a GSO buffer into `segment`-byte datagrams, only the last may
//! be shorter; so a run only grows with datagrams of exactly the run's size, and a shorter one
//! closes it. A run never exceeds [`MAX_SEGMENTS`] datagrams or [`MAX_BYTES`]. Order of the
//! queued outputs is kept; only consecutive sends to one destination merge.

use super::outputs::{Buf, Data, Dest, Op, Outputs};

/// Datagrams per GSO send: the kernel's `UDP_MAX_SEGMENTS` (64 before Linux 6.9).
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Bytes per GSO send: a UDP length field must still describe the whole buffer.
pub(crate) const MAX_BYTES: usize = 65_000;

impl Outputs {
    /// Makes the queued UDP outputs fit a kernel that takes GSO sends of datagrams up to
    /// `max_segment` bytes (0: no GSO): larger GSO outputs are split back into datagrams,
    /// runs of datagrams up to that size are merged.
    pub(crate) fn fit_gso(&mut self, max_segment: usize) {
        self.unbatch_udp(max_segment);
        if max_segment > 0 {
            self.batch_udp(max_segment);
        }
    }

    /// Merges runs of single-datagram UDP outputs to one destination into GSO outputs
    /// (copying each run into one pool buffer). A run that cannot get a buffer stays as it
    /// is. The queue is rebuilt into the spare one kept from the last batch: no allocation.
    fn batch_udp(&mut self, max_segment: usize) {
        if self.ops.len() < 2 {
            return;
        }
        let mut ops = std::mem::take(&mut self.ops);
        let mut merged = std::mem::take(&mut self.spare_ops);
        merged.clear();
        // The run being built is `merged[run..]` while `Some(run)`.
        let mut run: Option<usize> = None;
        for op in ops.drain(..) {
            let candidate = mergeable(&op) && len_of(&op) <= max_segment;
            if let Some(start) = run {
                if !(candidate && joins(merged.get(start..).unwrap_or(&[]), &op)) {
                    self.close_run(&mut merged, start);
                    run = None;
                }
            }
            if candidate && run.is_none() {
                run = Some(merged.len());
            }
            merged.push(op);
        }
        if let Some(start) = run {
            self.close_run(&mut merged, start);
        }
        self.ops = merged;
        self.spare_ops = ops;
    }

    /// Replaces the run `merged[start..]` by one GSO output when it has several datagrams
    /// and a buffer is free; else leaves it as it is.
    fn close_run(&mut self, merged: &mut Vec<Op>, start: usize) {
        let Some(run) = merged.get(start..).filter(|r| r.len() >= 2) else {
            return;
        };
        let total: usize = run.iter().map(len_of).sum();
        let size = run.first().map_or(0, len_of);
        let dest = run.first().map_or(Dest::Tun, |o| o.dest);
        let (Some(mut b), Ok(segment)) = (self.alloc_for(total), u16::try_from(size)) else {
            return;
        };
        let mut at = 0;
        for op in merged.drain(start..) {
            if let Data::Owned(src, r) = op.data {
                let n = r.len();
                if let (Some(d), Some(s)) = (b.get_mut(at..at + n), src.get(r)) {
                    d.copy_from_slice(s);
                }
                at += n;
                self.recycle(src);
            }
        }
        merged.push(Op {
            dest,
            data: Data::Owned(b, 0..at),
            segment,
        });
    }

    /// Turns every GSO output back into one output per datagram (copies), for a shard
    /// whose kernel or route cannot take GSO sends. Datagrams without a buffer are dropped
    /// and counted.
    fn unbatch_udp(&mut self, max_segment: usize) {
        if self
            .ops
            .iter()
            .all(|o| usize::from(o.segment) <= max_segment)
        {
            return;
        }
        let ops = std::mem::take(&mut self.ops);
        let mut split: Vec<Op> = Vec::with_capacity(ops.len());
        for op in ops {
            let seg = usize::from(op.segment);
            let (Data::Owned(src, r), true) = (&op.data, seg > max_segment) else {
                split.push(op);
                continue;
            };
            let Some(data) = src.get(r.clone()) else {
                continue;
            };
            for d in data.chunks(seg) {
                match self.alloc_for(d.len()) {
                    Some(mut b) => {
                        if let Some(dst) = b.get_mut(..d.len()) {
                            dst.copy_from_slice(d);
                        }
                        split.push(Op {
                            dest: op.dest,
                            data: Data::Owned(b, 0..d.len()),
                            segment: 0,
                        });
                    }
                    None => self.stats.tx_dropped += 1,
                }
            }
            if let Data::Owned(src, _) = op.data {
                self.recycle(src);
            }
        }
        self.ops = split;
    }

    fn alloc_for(&mut self, len: usize) -> Option<Buf> {
        let b = self.alloc()?;
        if b.len() >= len {
            return Some(b);
        }
        self.recycle(b);
        None
    }
}

/// The new GSO size limit after the kernel failed a GSO send of `segment`-byte datagrams
/// with `errno`. EMSGSIZE/EINVAL: the datagrams exceed the route's MTU (GSO never
/// fragments), so only smaller ones are batched from now on (a tunnel whose MSS is clamped
/// still gets GSO). EIO: the device cannot checksum, no GSO at all (as quinn-udp does).
/// Other errors (no route, ICMP errors) say nothing about GSO.
pub(crate) fn after_refusal(limit: usize, segment: usize, errno: i32) -> usize {
    let new = match errno {
        libc::EMSGSIZE | libc::EINVAL => limit.min(segment.saturating_sub(1)),
        libc::EIO => 0,
        _ => limit,
    };
    if new < limit {
        tracing::info!(
            error = %std::io::Error::from_raw_os_error(errno),
            segment,
            "UDP GSO send refused; datagrams of this size go one by one"
        );
    }
    new
}

/// Whether `op` may be appended to the non-empty `run`: same destination, the run's size
/// (only its last datagram may be shorter), within the kernel's limits.
fn joins(run: &[Op], op: &Op) -> bool {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return true;
    };
    let size = len_of(first);
    op.dest == first.dest
        && len_of(last) == size
        && len_of(op) <= size
        && run.len() < MAX_SEGMENTS
        && size * run.len() + len_of(op) <= MAX_BYTES
}

/// A single-datagram UDP output with its bytes resolved.
fn mergeable(op: &Op) -> bool {
    matches!(op.dest, Dest::Udp(_)) && op.segment == 0 && matches!(op.data, Data::Owned(..))
}

fn len_of(op: &Op) -> usize {
    match &op.data {
        Data::Owned(_, r) => r.len(),
        Data::Current(r) => r.len(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn sent(out: &Outputs) -> Vec<(Dest, u16, Vec<u8>)> {
        out.ops
            .iter()
            .map(|op| match &op.data {
                Data::Owned(b, r) => (op.dest, op.segment, b[r.clone()].to_vec()),
                Data::Current(_) => panic!("unresolved"),
            })
            .collect()
    }

    #[test]
    fn runs_to_one_peer_become_one_gso_send_in_order() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let mut out = Outputs::new(70_000, 64);
        out.send_udp(a, &[1; 100]);
        out.send_udp(a, &[2; 100]);
        out.send_udp(a, &[3; 60]); // shorter: closes the run
        out.send_udp(a, &[4; 100]);
        out.write_tun(&[9; 10]);
        out.send_udp(b, &[5; 100]);
        out.send_udp(a, &[6; 100]);
        out.send_udp(a, &[7; 100]);
        out.fit_gso(1500);
        let got = sent(&out);
        let mut first = vec![1u8; 100];
        first.extend([2; 100]);
        first.extend([3; 60]);
        let mut last = vec![6u8; 100];
        last.extend([7; 100]);
        assert_eq!(
            got,
            vec![
                (Dest::Udp(a), 100, first),
                (Dest::Udp(a), 0, vec![4; 100]),
                (Dest::Tun, 0, vec![9; 10]),
                (Dest::Udp(b), 0, vec![5; 100]),
                (Dest::Udp(a), 100, last),
            ]
        );
    }

    #[test]
    fn runs_respect_segment_and_byte_limits() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut out = Outputs::new(70_000, 512);
        for _ in 0..MAX_SEGMENTS + 5 {
            out.send_udp(a, &[0; 10]);
        }
        for _ in 0..50 {
            out.send_udp(a, &[1; 1500]);
        }
        out.fit_gso(1500);
        let lens: Vec<(u16, usize)> = sent(&out).iter().map(|(_, s, d)| (*s, d.len())).collect();
        assert_eq!(
            lens,
            vec![
                (10, MAX_SEGMENTS * 10),
                (10, 50),
                (1500, 43 * 1500),
                (1500, 7 * 1500)
            ]
        );
    }

    #[test]
    fn unbatch_restores_the_datagrams() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut out = Outputs::new(70_000, 64);
        out.send_udp(a, &[1; 100]);
        out.send_udp(a, &[2; 100]);
        out.send_udp(a, &[3; 40]);
        out.write_tun(&[9; 10]);
        out.fit_gso(100);
        assert_eq!(out.ops.len(), 2);
        out.fit_gso(99);
        let got: Vec<Vec<u8>> = sent(&out)
            .into_iter()
            .map(|(_, s, d)| {
                assert_eq!(s, 0);
                d
            })
            .collect();
        assert_eq!(
            got,
            vec![vec![1; 100], vec![2; 100], vec![3; 40], vec![9; 10]]
        );
    }

    #[test]
    fn no_buffer_leaves_the_run_alone() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut out = Outputs::new(256, 3);
        for i in 0..3 {
            out.send_udp(a, &[i; 100]);
        }
        out.fit_gso(1500);
        assert_eq!(
            sent(&out).len(),
            3,
            "pool exhausted: nothing merged, nothing lost"
        );
    }
}
