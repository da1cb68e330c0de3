//! Data-path benchmarks of one shard's [`Forwarder`], no syscalls: a batch of packets through
//! `tun_in` (route lookup + seal for the owning client) and through `udp_in` (peer lookup,
//! open + replay check, inner source check, route to tun), with 1k and 100k connected peers
//! (each with its own AES-256-GCM keys and a host route per family). The caller plays the
//! driver with a detached [`Outputs`]: a received packet sits in a pool buffer behind
//! `HEADROOM` bytes, outputs are resolved like the drivers do and then discarded.
//!
//! Timed: the handler calls plus output resolution and recycling for one batch of
//! [`BATCH`] packets, each to a different peer spread over the table (cache-unfriendly, like
//! many clients). Not timed: copying the packet into the receive buffer (the kernel's job)
//! and resetting the replay windows so the same sealed packets can be replayed.
//! Results go to perf/RESULTS.md ("Forwarder").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fwd::dataplane::forward::{key_slot, Clock, DropCounters, Forwarder, Mode, ToControl};
use fwd::dataplane::peers::{KeySlot, Peer, PeerTable};
use fwd::dataplane::Outputs;
use fwd::proto::data::{data_keys, Cipher, KeyBlock, ReplayWindow, Side, TxKey, HEADROOM};
use fwd::route::{PeerId, RouteChange, RouteTable};
use ipnet::IpNet;

/// Packets per batch: about what one io_uring wakeup reaps under load.
const BATCH: usize = 64;
const SIZES: [usize; 3] = [64, 512, 1400];
const PEERS: [u32; 2] = [1_000, 100_000];
const CIPHER: Cipher = Cipher::Aes256Gcm;
/// Shard buffer geometry of `ShardOptions::default()`.
const BUF_LEN: usize = 16 * 1024;
const MAX_BUFFERS: usize = 1024;

const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn peer_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SERVER_V4) + 1 + i)
}

fn peer_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(0xfd00_0008_u128 << 96 | u128::from(i + 2))
}

fn server_v6() -> Ipv6Addr {
    Ipv6Addr::from(0xfd00_0008_u128 << 96 | 1)
}

fn peer_remote(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0xC0A8_0000 + i), 40000 + (i % 20000) as u16))
}

fn key_block(i: u32) -> KeyBlock {
    let mut b = [0u8; 256];
    let seed = i.to_le_bytes();
    for (j, x) in b.iter_mut().enumerate() {
        *x = (j as u8).wrapping_mul(31) ^ seed[j % 4] ^ 0x5a;
    }
    KeyBlock::new(b)
}

/// A minimal IPv4 or IPv6 packet of `len` bytes (header fields the forwarder reads only).
fn ip_packet(v6: bool, src_peer: Option<u32>, dst_peer: Option<u32>, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        p[6] = 17;
        p[7] = 64;
        let src = src_peer.map_or(server_v6(), peer_v6);
        let dst = dst_peer.map_or(server_v6(), peer_v6);
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        let src = src_peer.map_or(SERVER_V4, peer_v4);
        let dst = dst_peer.map_or(SERVER_V4, peer_v4);
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
    }
    p
}

struct World {
    fwd: Forwarder,
    slots: Vec<Arc<KeySlot>>,
    /// The batch's peers, spread over the whole table.
    batch: Vec<u32>,
    out: Outputs,
    /// Receive buffers no output kept (the drivers re-post these).
    spare: Vec<Box<[u8]>>,
    _control: crossbeam_channel::Receiver<ToControl>,
}

impl World {
    fn new(n: u32) -> World {
        let peers = Arc::new(PeerTable::new(n as usize));
        let routes = Arc::new(RouteTable::new());
        let mut changes = Vec::with_capacity(2 * n as usize);
        let mut slots = Vec::with_capacity(n as usize);
        for i in 0..n {
            let slot = Arc::new(
                key_slot(0, CIPHER, &key_block(i), Side::Server, (64, 15)).expect("key slot"),
            );
            let peer = Arc::new(Peer::new(PeerId(i), true, peer_remote(i), format!("c{i}")));
            peer.update_keys(|r| {
                r.tx = Some(slot.clone());
                r.rx = vec![slot.clone()];
            });
            peers.insert(peer);
            slots.push(slot);
            changes.push(RouteChange::Add(
                IpNet::from(IpAddr::V4(peer_v4(i))),
                PeerId(i),
            ));
            changes.push(RouteChange::Add(
                IpNet::from(IpAddr::V6(peer_v6(i))),
                PeerId(i),
            ));
        }
        routes.apply(changes);
        let (tx, rx) = crossbeam_channel::bounded(1024);
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
        // 7919 is prime, so coprime to n (1k, 100k): BATCH distinct peers far apart.
        let batch = (0..BATCH as u64)
            .map(|k| (k * 7919 % u64::from(n)) as u32)
            .collect();
        World {
            fwd,
            slots,
            batch,
            out: Outputs::new_detached(BUF_LEN, MAX_BUFFERS),
            spare: Vec::new(),
            _control: rx,
        }
    }

    fn buffers(&mut self, pkts: &[Vec<u8>]) -> Vec<Box<[u8]>> {
        pkts.iter()
            .map(|p| {
                let mut b = match self.spare.pop() {
                    Some(b) => b,
                    None => self.out.take_buffer().expect("pool buffer"),
                };
                b[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
                b
            })
            .collect()
    }

    /// Runs one batch through `tun_in`; returns (outputs, bytes).
    fn tun_batch(&mut self, bufs: Vec<Box<[u8]>>, lens: &[usize]) -> (usize, usize) {
        for (mut b, &len) in bufs.into_iter().zip(lens) {
            let start = self.out.queued();
            self.fwd.tun_in(&mut b, len, &mut self.out);
            self.spare.extend(self.out.finish_detached(start, b));
        }
        self.out.discard()
    }
}

fn seal_for_server(tx: &TxKey, peer: u32, plain: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; HEADROOM + plain.len()];
    b[HEADROOM..].copy_from_slice(plain);
    let r = tx
        .seal_in_place(0, Some(peer), &mut b, plain.len())
        .expect("seal");
    b[r].to_vec()
}

fn tun_in(c: &mut Criterion) {
    let mut g = c.benchmark_group("tun_in");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in PEERS {
        let mut w = World::new(n);
        for v6 in [false, true] {
            for size in SIZES {
                let pkts: Vec<Vec<u8>> = w
                    .batch
                    .iter()
                    .map(|&p| ip_packet(v6, None, Some(p), size))
                    .collect();
                let lens: Vec<usize> = pkts.iter().map(Vec::len).collect();
                let bufs = w.buffers(&pkts);
                let (outs, _) = w.tun_batch(bufs, &lens);
                assert_eq!(outs, BATCH, "every packet leaves ({n} peers)");
                assert_eq!(w.fwd.drops.snapshot(), [0; 8]);
                let fam = if v6 { "v6" } else { "v4" };
                g.bench_function(format!("{n}peers/{fam}/{size}"), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let bufs = w.buffers(&pkts);
                            let t = Instant::now();
                            let r = w.tun_batch(bufs, &lens);
                            total += t.elapsed();
                            criterion::black_box(r);
                        }
                        total
                    })
                });
            }
        }
    }
    g.finish();
}

fn udp_in(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_in");
    g.throughput(Throughput::Elements(BATCH as u64));
    for n in PEERS {
        let mut w = World::new(n);
        // The clients' send keys for the batch's peers.
        let client_tx: Vec<TxKey> = w
            .batch
            .iter()
            .map(|&p| {
                data_keys(CIPHER, &key_block(p), Side::Client)
                    .expect("keys")
                    .0
            })
            .collect();
        for v6 in [false, true] {
            for size in SIZES {
                let pkts: Vec<Vec<u8>> = w
                    .batch
                    .iter()
                    .zip(&client_tx)
                    .map(|(&p, tx)| seal_for_server(tx, p, &ip_packet(v6, Some(p), None, size)))
                    .collect();
                let lens: Vec<usize> = pkts.iter().map(Vec::len).collect();
                let froms: Vec<SocketAddr> = w.batch.iter().map(|&p| peer_remote(p)).collect();
                let batch_slots: Vec<Arc<KeySlot>> = w
                    .batch
                    .iter()
                    .map(|&p| w.slots[p as usize].clone())
                    .collect();
                let reset = |slots: &[Arc<KeySlot>]| {
                    for s in slots {
                        *s.replay.lock().expect("replay lock") =
                            ReplayWindow::new(64, 15).expect("window");
                    }
                };
                let run = |w: &mut World, bufs: Vec<Box<[u8]>>| {
                    for ((mut b, &len), &from) in bufs.into_iter().zip(&lens).zip(&froms) {
                        let start = w.out.queued();
                        w.fwd.udp_in(from, &mut b, len, &mut w.out);
                        w.spare.extend(w.out.finish_detached(start, b));
                    }
                    w.out.discard()
                };
                reset(&batch_slots);
                let bufs = w.buffers(&pkts);
                let (outs, _) = run(&mut w, bufs);
                assert_eq!(outs, BATCH, "every packet reaches the tun ({n} peers)");
                assert_eq!(w.fwd.drops.snapshot(), [0; 8]);
                let fam = if v6 { "v6" } else { "v4" };
                g.bench_function(format!("{n}peers/{fam}/{size}"), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            reset(&batch_slots);
                            let bufs = w.buffers(&pkts);
                            let t = Instant::now();
                            let r = run(&mut w, bufs);
                            total += t.elapsed();
                            criterion::black_box(r);
                        }
                        total
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = tun_in, udp_in
}
criterion_main!(benches);
