//! AEAD data-channel micro-benchmarks: seal and open in place per cipher and payload size,
//! plus the replay window's check+commit. Results go to perf/RESULTS.md ("AEAD").

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fwd::proto::data::{data_keys, Cipher, KeyBlock, ReplayWindow, Side, HEADROOM};

const SIZES: [usize; 3] = [64, 512, 1400];

fn key_block() -> KeyBlock {
    let mut b = [0u8; 256];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(13).wrapping_add(5);
    }
    KeyBlock::new(b)
}

fn seal(c: &mut Criterion) {
    let kb = key_block();
    let mut g = c.benchmark_group("seal");
    for cipher in Cipher::ALL {
        let (tx, _) = data_keys(cipher, &kb, Side::Server).expect("keys");
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let mut buf = vec![0x45u8; HEADROOM + size];
            g.bench_function(format!("{}/{size}", cipher.name()), |b| {
                b.iter(|| {
                    let r = tx
                        .seal_in_place(0, Some(5), black_box(&mut buf), size)
                        .expect("seal");
                    black_box(r);
                })
            });
        }
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let kb = key_block();
    let mut g = c.benchmark_group("open");
    for cipher in Cipher::ALL {
        let (tx, _) = data_keys(cipher, &kb, Side::Server).expect("keys");
        let (_, rx) = data_keys(cipher, &kb, Side::Client).expect("keys");
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let mut buf = vec![0x45u8; HEADROOM + size];
            let r = tx.seal_in_place(0, Some(5), &mut buf, size).expect("seal");
            let wire = buf[r].to_vec();
            g.bench_function(format!("{}/{size}", cipher.name()), |b| {
                // The copy and the fresh window are set-up, not measured.
                b.iter_batched_ref(
                    || (wire.clone(), ReplayWindow::default()),
                    |(pkt, win)| {
                        let p = rx.open_in_place(pkt, win, 0).expect("open");
                        black_box(p.len());
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(1));
    g.bench_function("in-order check+commit", |b| {
        let mut w = ReplayWindow::default();
        let mut id = 0u32;
        b.iter(|| {
            id = id.wrapping_add(1).max(1);
            if w.check(black_box(id), 0).is_ok() {
                w.commit(id, 0);
            }
        })
    });
    g.bench_function("reordered check+commit", |b| {
        // Pairs swapped: 2,1,4,3,... — every other packet fills a hole.
        let mut w = ReplayWindow::default();
        let mut n = 0u32;
        b.iter(|| {
            n = n.wrapping_add(1);
            let id = (n ^ 1).max(1);
            if w.check(black_box(id), n as u64 / 100_000).is_ok() {
                w.commit(id, n as u64 / 100_000);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, seal, open, replay);
criterion_main!(benches);
