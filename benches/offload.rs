//! Data-plane offload benchmarks, no syscalls, for one TCP burst of [`SEGS`] full-size
//! segments (MSS [`MSS`], TCP timestamps, so 1500-byte IPv4 / 1520-byte IPv6 packets):
//! - `segment`: `segment::Split` cutting a TSO super-packet (as a vnet tun hands it:
//!   `GSO_TCPV4`/`GSO_TCPV6`, `NEEDS_CSUM`) into complete packets, checksums included, each
//!   written into one reused buffer;
//! - `coalesce`: the `Coalescer` taking the burst's segments of one flow (one tun write), vs
//!   one segment each of [`SEGS`] flows (no coalescing: the worst case), then flushing;
//! - `tun_to_udp`: `Forwarder::tun_in` sealing the burst for a client, fed as one TSO
//!   super-packet (vnet tun) vs [`SEGS`] single packets (plain tun);
//! - `udp_to_tun`: the client's sealed burst through `ShardHandler::on_udp_gro` (kernel-sized
//!   GRO receives) vs [`SEGS`] `on_udp` calls, each with the tun's coalescing on (vnet tun)
//!   and off (plain tun).
//!
//! The caller plays the driver with a detached [`Outputs`] like benches/forward.rs: a
//! received packet sits in a pool buffer behind `HEADROOM` bytes (a vnet header in its last
//! [`VNET_HDR_LEN`]), outputs are resolved with `finish_detached` after each call and
//! `on_tick` ends the batch (it flushes the coalescer). Timed: those calls. Not timed:
//! copying packets into receive buffers (the kernel's job), resetting replay windows so the
//! same sealed datagrams can be replayed, and `Outputs::discard` (recycling once the kernel
//! is done). Packets are valid (IPv4 header and TCP checksums), and every case asserts once,
//! before timing, how many outputs and bytes it produces, so a drop path cannot pass for a
//! fast one. Throughput is the burst's TCP payload ([`PAYLOAD`] bytes) per iteration.
//! Results go to perf/RESULTS.md ("In-memory offload benchmarks (criterion)").

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use fwd::dataplane::coalesce::Coalescer;
use fwd::dataplane::forward::{key_slot, Clock, DropCounters, Forwarder, Mode, ToControl};
use fwd::dataplane::peers::{KeySlot, Peer, PeerTable};
use fwd::dataplane::segment::Split;
use fwd::dataplane::vnet::{VnetHdr, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, VNET_HDR_LEN};
use fwd::dataplane::{Outputs, ShardHandler, ShardOptions};
use fwd::proto::data::{data_keys, Cipher, KeyBlock, ReplayWindow, Side, TxKey, HEADROOM};
use fwd::route::{PeerId, RouteChange, RouteTable};
use ipnet::IpNet;

/// Segments per burst: one TSO super-packet of `SEGS * MSS` payload bytes fits the 16-bit
/// IP length with either family's headers.
const SEGS: usize = 44;
const MSS: usize = 1448;
const PAYLOAD: usize = SEGS * MSS;
/// TCP header with NOP, NOP, timestamps (what Linux sends on a bulk flow).
const TCP_HDR: usize = 32;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const CIPHER: Cipher = Cipher::Aes256Gcm;
/// P_DATA_V2 with AES-GCM: opcode/key id + peer id 4, packet id 4, tag 16.
const WIRE_OVERHEAD: usize = 24;
/// A UDP GRO receive holds at most 64 datagrams and one IPv4 UDP payload's worth of bytes.
const GRO_MAX_SEGS: usize = 64;
const GRO_MAX_BYTES: usize = 65_507;
/// The kernel's UDP GSO limits the forwarder batches to (src/dataplane/gso.rs, private).
const GSO_MAX_BYTES: usize = 65_000;
const MAX_BUFFERS: usize = 1024;
const PEER: PeerId = PeerId(0);

const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 2);
const HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn client_v6() -> Ipv6Addr {
    Ipv6Addr::from(0xfd00_0008_u128 << 96 | 2)
}

fn host_v6() -> Ipv6Addr {
    Ipv6Addr::from(0x2001_0db8_u128 << 96 | 7)
}

fn client_remote() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 40000))
}

fn fam(v6: bool) -> &'static str {
    if v6 {
        "v6"
    } else {
        "v4"
    }
}

fn l3_len(v6: bool) -> usize {
    if v6 {
        40
    } else {
        20
    }
}

/// Bytes of one full segment's IP packet.
fn seg_len(v6: bool) -> usize {
    l3_len(v6) + TCP_HDR + MSS
}

/// Buffer length of a shard with offloads (64 KiB super-packets), and without.
fn offload_buf_len() -> usize {
    ShardOptions::with_offloads(true, true, true).buf_len
}

fn plain_buf_len() -> usize {
    ShardOptions::default().buf_len
}

/// One TCP connection; `to_client`: from an Internet host to the client (tun → UDP), else
/// from the client (UDP → tun, whose source the forwarder checks against the client's routes).
#[derive(Clone, Copy)]
struct Flow {
    v6: bool,
    to_client: bool,
    sport: u16,
}

impl Flow {
    fn addrs(&self) -> (IpAddr, IpAddr) {
        let (client, host) = match self.v6 {
            true => (IpAddr::V6(client_v6()), IpAddr::V6(host_v6())),
            false => (IpAddr::V4(CLIENT_V4), IpAddr::V4(HOST_V4)),
        };
        if self.to_client {
            (host, client)
        } else {
            (client, host)
        }
    }
}

/// RFC 1071 sum of `data` as 16-bit big-endian words, unfolded (written independently of
/// `fwd::dataplane::csum`, so the checks below do not trust the code under test).
fn ones_sum(data: &[u8]) -> u64 {
    let word = |c: &[u8]| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    data.chunks(2).map(word).sum()
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The TCP pseudo-header sum of IP packet `p` (header of `l3` bytes).
fn pseudo(p: &[u8], l3: usize) -> u64 {
    let addrs = if l3 == 40 { &p[8..40] } else { &p[12..20] };
    ones_sum(addrs) + 6 + (p.len() - l3) as u64
}

/// Whether `p`'s IPv4 header checksum (if any) and TCP checksum verify.
fn checksums_ok(p: &[u8]) -> bool {
    let l3 = if p[0] >> 4 == 6 { 40 } else { 20 };
    let ip_ok = l3 == 40 || fold(ones_sum(&p[..20])) == 0xffff;
    ip_ok && fold(pseudo(p, l3) + ones_sum(&p[l3..])) == 0xffff
}

fn put16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// A TCP/IP packet of `flow` (DF, TTL 64, ACK number, window and timestamps fixed) with
/// valid checksums.
fn tcp_packet(flow: Flow, seq: u32, flags: u8, ip_id: u16, payload: &[u8]) -> Vec<u8> {
    let l3 = l3_len(flow.v6);
    let total = l3 + TCP_HDR + payload.len();
    let mut p = vec![0u8; total];
    match flow.addrs() {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p[..10].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6]);
            put16(&mut p, 2, total as u16);
            put16(&mut p, 4, ip_id);
            p[12..16].copy_from_slice(&s.octets());
            p[16..20].copy_from_slice(&d.octets());
            let c = !fold(ones_sum(&p[..20]));
            put16(&mut p, 10, c);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p[..8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, 6, 64]);
            put16(&mut p, 4, (total - 40) as u16);
            p[8..24].copy_from_slice(&s.octets());
            p[24..40].copy_from_slice(&d.octets());
        }
        _ => unreachable!("one family per flow"),
    }
    let t = &mut p[l3..];
    t[..4].copy_from_slice(&(u32::from(flow.sport) << 16 | 443).to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&0x1234_5678_u32.to_be_bytes());
    t[12..16].copy_from_slice(&[(TCP_HDR as u8 / 4) << 4, flags, 0x01, 0xf5]);
    t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0x30, 0x39, 0, 0, 0x10, 0x92]);
    t[TCP_HDR..].copy_from_slice(payload);
    let c = !fold(pseudo(&p, l3) + ones_sum(&p[l3..]));
    put16(&mut p, l3 + 16, c);
    p
}

const SEQ0: u32 = 0x1000_0000;
const ID0: u16 = 0x4000;

fn burst_payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The burst as [`SEGS`] packets, exactly as Linux `tcp_gso_segment` would cut the
/// super-packet (seq + i * MSS, IPv4 id + i, PSH only on the last).
fn segments(flow: Flow) -> Vec<Vec<u8>> {
    let data = burst_payload();
    data.chunks(MSS)
        .enumerate()
        .map(|(i, c)| {
            let flags = if i + 1 == SEGS {
                TCP_ACK | TCP_PSH
            } else {
                TCP_ACK
            };
            tcp_packet(flow, SEQ0 + (i * MSS) as u32, flags, ID0 + i as u16, c)
        })
        .collect()
}

/// The burst as one TSO super-packet from a vnet tun: its virtio header and the packet, whose
/// TCP checksum field holds the pseudo-header sum (`NEEDS_CSUM`).
fn super_packet(flow: Flow) -> (VnetHdr, Vec<u8>) {
    let l3 = l3_len(flow.v6);
    let mut p = tcp_packet(flow, SEQ0, TCP_ACK | TCP_PSH, ID0, &burst_payload());
    let partial = fold(pseudo(&p, l3));
    put16(&mut p, l3 + 16, partial);
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if flow.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: (l3 + TCP_HDR) as u16,
        gso_size: MSS as u16,
        csum_start: l3 as u16,
        csum_offset: 16,
    };
    (hdr, p)
}

fn segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    for v6 in [false, true] {
        let flow = Flow {
            v6,
            to_client: true,
            sport: 443,
        };
        let (hdr, sp) = super_packet(flow);
        let want = segments(flow);
        let mut dst = vec![0u8; 2048];
        let split = Split::new(&hdr, &sp).expect("valid super-packet");
        assert_eq!(split.count(), SEGS);
        for (i, w) in want.iter().enumerate() {
            let n = split.write(i, &mut dst).expect("segment fits");
            assert_eq!(&dst[..n], &w[..], "segment {i} as the kernel cuts it");
            assert!(checksums_ok(&dst[..n]), "segment {i} checksums");
        }
        g.bench_function(fam(v6), |b| {
            b.iter(|| {
                let split = Split::new(black_box(&hdr), black_box(&sp)).expect("split");
                let mut bytes = 0;
                for i in 0..split.count() {
                    bytes += split.write(i, &mut dst).unwrap_or(0);
                    black_box(&mut dst);
                }
                bytes
            })
        });
    }
    g.finish();
}

fn coalesce(c: &mut Criterion) {
    let mut g = c.benchmark_group("coalesce");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    for v6 in [false, true] {
        let flow = |sport| Flow {
            v6,
            to_client: false,
            sport,
        };
        let one = segments(flow(50000));
        // Segment i of the burst, each in a flow (source port) of its own.
        let many: Vec<Vec<u8>> = one
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let hl = l3_len(v6) + TCP_HDR;
                let seq = SEQ0 + (i * MSS) as u32;
                tcp_packet(flow(50000 + i as u16), seq, TCP_ACK, ID0, &p[hl..])
            })
            .collect();
        let hl = l3_len(v6) + TCP_HDR;
        let cases = [
            ("1flow", &one, 1, VNET_HDR_LEN + hl + PAYLOAD),
            ("44flows", &many, SEGS, SEGS * (VNET_HDR_LEN + seg_len(v6))),
        ];
        for (name, pkts, writes, bytes) in cases {
            let mut out = Outputs::new_detached(offload_buf_len(), MAX_BUFFERS);
            out.set_tun_vnet(true);
            let mut co = Coalescer::new();
            let run = |co: &mut Coalescer, out: &mut Outputs| {
                let taken = pkts.iter().filter(|p| co.push(p, out)).count();
                co.flush(out);
                taken
            };
            assert_eq!(run(&mut co, &mut out), SEGS, "{name}: every segment taken");
            assert_eq!(out.discard(), (writes, bytes), "{name}: tun writes, bytes");
            assert_eq!(out.stats().tx_dropped, 0);
            g.bench_function(format!("{}/{name}", fam(v6)), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        let r = run(&mut co, &mut out);
                        total += t.elapsed();
                        black_box(r);
                        out.discard();
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

fn key_block() -> KeyBlock {
    let mut b = [0u8; 256];
    for (j, x) in b.iter_mut().enumerate() {
        *x = (j as u8).wrapping_mul(31) ^ 0x5a;
    }
    KeyBlock::new(b)
}

/// A server-mode forwarder with one client (peer 0, a /32 and a /128) and a detached
/// `Outputs` of the shard geometry the case needs.
struct World {
    fwd: Forwarder,
    slot: Arc<KeySlot>,
    out: Outputs,
    /// Receive buffers no output kept (the drivers re-post these).
    spare: Vec<Box<[u8]>>,
    _control: crossbeam_channel::Receiver<ToControl>,
}

impl World {
    fn new(buf_len: usize, tun_vnet: bool) -> World {
        let peers = Arc::new(PeerTable::new(1));
        let routes = Arc::new(RouteTable::new());
        let slot =
            Arc::new(key_slot(0, CIPHER, &key_block(), Side::Server, (64, 15)).expect("key slot"));
        let peer = Arc::new(Peer::new(PEER, true, client_remote(), "c0".into()));
        peer.update_keys(|r| {
            r.tx = Some(slot.clone());
            r.rx = vec![slot.clone()];
        });
        peers.insert(peer);
        routes.apply(vec![
            RouteChange::Add(IpNet::from(IpAddr::V4(CLIENT_V4)), PEER),
            RouteChange::Add(IpNet::from(IpAddr::V6(client_v6())), PEER),
        ]);
        let (tx, rx) = crossbeam_channel::bounded(16);
        let fwd = Forwarder::new(
            Mode::Server {
                client_to_client: false,
            },
            peers,
            routes,
            tx,
            Arc::new(DropCounters::default()),
            Clock::new(Instant::now()),
        );
        let mut out = Outputs::new_detached(buf_len, MAX_BUFFERS);
        out.set_tun_vnet(tun_vnet);
        World {
            fwd,
            slot,
            out,
            spare: Vec::new(),
            _control: rx,
        }
    }

    /// A receive buffer holding `data` at `HEADROOM`, behind the virtio header `hdr`.
    fn buffer(&mut self, data: &[u8], hdr: Option<&VnetHdr>) -> Box<[u8]> {
        let mut b = match self.spare.pop() {
            Some(b) => b,
            None => self.out.take_buffer().expect("pool buffer"),
        };
        if let Some(h) = hdr {
            h.write(&mut b[HEADROOM - VNET_HDR_LEN..HEADROOM]);
        }
        b[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
        b
    }

    fn reset_replay(&self) {
        *self.slot.replay.lock().expect("replay lock") = ReplayWindow::new(64, 15).expect("window");
    }

    fn sealed_out(&self) -> u64 {
        let peer = self.fwd.peers.get(PEER).expect("peer");
        peer.stats
            .packets_out
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks one untimed run: `outputs` outputs of `bytes` in all, nothing dropped.
    fn check(&mut self, what: &str, outputs: usize, bytes: usize) {
        assert_eq!(
            self.out.discard(),
            (outputs, bytes),
            "{what}: outputs, bytes"
        );
        assert_eq!(self.fwd.drops.snapshot(), [0; 8], "{what}: forwarder drops");
        assert_eq!(self.out.stats().tx_dropped, 0, "{what}: output drops");
    }
}

/// What one batch hands the forwarder.
enum Input {
    /// Tun reads, each with its virtio header when the tun has one.
    Tun(Vec<(Option<VnetHdr>, Vec<u8>)>),
    /// UDP receives from the client, each of datagrams of one size (`.0`), handed to
    /// `on_udp_gro` when it holds several, else to `on_udp`.
    Udp(Vec<(usize, Vec<u8>)>),
}

/// The receive buffers of one batch (not timed: the kernel's copy).
fn fill(w: &mut World, input: &Input) -> Vec<Box<[u8]>> {
    match input {
        Input::Tun(reads) => reads.iter().map(|(h, p)| w.buffer(p, h.as_ref())).collect(),
        Input::Udp(recvs) => recvs.iter().map(|(_, d)| w.buffer(d, None)).collect(),
    }
}

/// One batch as a driver runs it: each receive handed over and its outputs resolved, then
/// `on_tick` (which flushes the coalescer).
fn run(w: &mut World, input: &Input, bufs: Vec<Box<[u8]>>) {
    for (i, mut b) in bufs.into_iter().enumerate() {
        let start = w.out.queued();
        match input {
            Input::Tun(reads) => w.fwd.tun_in(&mut b, reads[i].1.len(), &mut w.out),
            Input::Udp(recvs) => {
                let (seg, len, from) = (recvs[i].0, recvs[i].1.len(), client_remote());
                if len > seg {
                    w.fwd.on_udp_gro(from, &mut b, len, seg, &mut w.out);
                } else {
                    w.fwd.on_udp(from, &mut b, len, &mut w.out);
                }
            }
        }
        w.spare.extend(w.out.finish_detached(start, b));
    }
    w.fwd.on_tick(&mut w.out);
}

fn run_once(w: &mut World, input: &Input) {
    w.reset_replay();
    let bufs = fill(w, input);
    run(w, input, bufs);
}

fn time_batches(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, w: &mut World, input: &Input) {
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                w.reset_replay();
                let bufs = fill(w, input);
                let t = Instant::now();
                run(w, input, bufs);
                total += t.elapsed();
                w.out.discard();
            }
            total
        })
    });
}

fn tun_to_udp(c: &mut Criterion) {
    let mut g = c.benchmark_group("tun_to_udp");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    for v6 in [false, true] {
        let flow = Flow {
            v6,
            to_client: true,
            sport: 443,
        };
        let wire = seg_len(v6) + WIRE_OVERHEAD;
        let (hdr, sp) = super_packet(flow);
        let tso = Input::Tun(vec![(Some(hdr), sp)]);
        let single = Input::Tun(segments(flow).into_iter().map(|p| (None, p)).collect());
        // The TSO path seals into UDP GSO buffers of at most GSO_MAX_BYTES; single packets
        // leave one output each (the driver's GSO batch build, `Outputs::fit_gso`, is
        // crate-private and not part of this).
        let gso_sends = SEGS.div_ceil(GSO_MAX_BYTES / wire);
        let cases = [
            ("tso", offload_buf_len(), true, tso, gso_sends),
            ("single", plain_buf_len(), false, single, SEGS),
        ];
        for (name, buf_len, vnet, input, outputs) in cases {
            let mut w = World::new(buf_len, vnet);
            let before = w.sealed_out();
            run_once(&mut w, &input);
            assert_eq!(
                w.sealed_out() - before,
                SEGS as u64,
                "{name}: datagrams sealed"
            );
            w.check(name, outputs, SEGS * wire);
            time_batches(&mut g, &format!("{}/{name}", fam(v6)), &mut w, &input);
        }
    }
    g.finish();
}

fn seal_from_client(tx: &TxKey, plain: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADROOM + plain.len()];
    b[HEADROOM..].copy_from_slice(plain);
    let r = tx
        .seal_in_place(0, Some(PEER.0), &mut b, plain.len())
        .expect("seal");
    b[r].to_vec()
}

fn udp_to_tun(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_to_tun");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let client_tx = data_keys(CIPHER, &key_block(), Side::Client)
        .expect("keys")
        .0;
    for v6 in [false, true] {
        let flow = Flow {
            v6,
            to_client: false,
            sport: 50000,
        };
        let dgrams: Vec<Vec<u8>> = segments(flow)
            .iter()
            .map(|p| seal_from_client(&client_tx, p))
            .collect();
        let wire = seg_len(v6) + WIRE_OVERHEAD;
        assert!(dgrams.iter().all(|d| d.len() == wire));
        // Kernel-sized GRO receives: 42 + 2 datagrams for both families here.
        let per_gro = (GRO_MAX_BYTES / wire).min(GRO_MAX_SEGS);
        let gro = Input::Udp(dgrams.chunks(per_gro).map(|c| (wire, c.concat())).collect());
        let single = Input::Udp(dgrams.iter().map(|d| (wire, d.clone())).collect());
        let coalesced = (1, VNET_HDR_LEN + l3_len(v6) + TCP_HDR + PAYLOAD);
        let plain = (SEGS, SEGS * seg_len(v6));
        let cases = [
            ("gro_coalesce", offload_buf_len(), true, &gro, coalesced),
            (
                "single_coalesce",
                offload_buf_len(),
                true,
                &single,
                coalesced,
            ),
            ("gro", offload_buf_len(), false, &gro, plain),
            ("single", plain_buf_len(), false, &single, plain),
        ];
        for (name, buf_len, vnet, input, (outputs, bytes)) in cases {
            let mut w = World::new(buf_len, vnet);
            run_once(&mut w, input);
            w.check(name, outputs, bytes);
            time_batches(&mut g, &format!("{}/{name}", fam(v6)), &mut w, input);
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = segment, coalesce, tun_to_udp, udp_to_tun
}
criterion_main!(benches);
