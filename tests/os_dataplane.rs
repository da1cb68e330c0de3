//! Shard drivers against the real kernel, inside a throwaway network namespace: two shards
//! (2-queue tun + 2-socket reuseport group) run an echo handler that writes every UDP
//! payload to the tun and sends every tun packet to a collector socket. Runs once per
//! driver; skips with a reason when namespaces, tun or io_uring are unavailable.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fwd::dataplane::{self, DriverKind, Outputs, ShardHandler, ShardIo, ShardOptions, HEADROOM};
use fwd::os::netlink::Netlink;
use fwd::os::netns::NetnsGuard;
use fwd::os::tun::Tun;
use fwd::os::udp::bind_reuseport;

struct Echo {
    collector: SocketAddr,
    ticks: Arc<AtomicUsize>,
    copy: bool,
    /// Highest `udp_multishot_arms` any shard reported.
    arms: Arc<AtomicUsize>,
}

impl ShardHandler for Echo {
    fn on_udp(&mut self, _from: SocketAddr, buf: &mut [u8], len: usize, out: &mut Outputs) {
        if self.copy {
            out.write_tun(&buf[HEADROOM..HEADROOM + len]);
        } else {
            out.write_tun_in_place(HEADROOM..HEADROOM + len);
        }
    }
    fn on_tun(&mut self, buf: &mut [u8], len: usize, out: &mut Outputs) {
        // Prove the headroom is writable: tag it, and send it along.
        buf[HEADROOM - 4..HEADROOM].copy_from_slice(b"TUN:");
        if self.copy {
            out.send_udp(self.collector, &buf[HEADROOM - 4..HEADROOM + len]);
        } else {
            out.send_udp_in_place(self.collector, HEADROOM - 4..HEADROOM + len);
        }
    }
    fn on_tick(&mut self, out: &mut Outputs) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        self.arms
            .fetch_max(out.stats().udp_multishot_arms as usize, Ordering::Relaxed);
    }
}

/// IPv6 + UDP packet with a correct checksum.
fn ipv6_udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let ulen = (8 + payload.len()) as u16;
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&ulen.to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let mut udp = Vec::new();
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&u32::from(ulen).to_be_bytes());
    add(&[0, 0, 0, 17]);
    add(&udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&ck.to_be_bytes());
    p.extend_from_slice(&udp);
    p
}

/// Sends `send()` until `rx` receives a datagram satisfying `want`, a few attempts.
fn exchange(rx: &UdpSocket, mut send: impl FnMut(), want: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    for _ in 0..10 {
        send();
        while let Ok(n) = rx.recv(&mut buf) {
            if want(&buf[..n]) {
                return buf[..n].to_vec();
            }
        }
    }
    panic!("expected datagram never arrived");
}

fn run_echo(driver: DriverKind, copy: bool, multishot: bool) {
    let ns = match NetnsGuard::new("fwdtest-dp") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping: cannot create network namespace: {e}");
            return;
        }
    };
    ns.run_in(|| {
        let tun = match Tun::create("fwddp%d", 2) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping: cannot create multi-queue tun: {e}");
                return;
            }
        };
        let mut nl = Netlink::open().unwrap();
        let idx = nl.link_index(tun.name()).unwrap();
        nl.set_link_up(idx).unwrap();
        nl.add_address(idx, "fd00:2::1".parse().unwrap(), 64, None)
            .unwrap();
        nl.add_route("fd00:99::/64".parse().unwrap(), idx, None, None)
            .unwrap();

        let collector = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let inner_rx = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 6666)).unwrap();
        let socks = bind_reuseport((Ipv4Addr::LOCALHOST, 0).into(), 2, None).unwrap();
        let shard_addr = socks[0].local_addr().unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicUsize::new(0));
        let arms = Arc::new(AtomicUsize::new(0));
        let opts = ShardOptions {
            tick: Duration::from_millis(20),
            driver,
            uring_multishot: multishot,
            ..ShardOptions::default()
        };
        let mut handles = Vec::new();
        let mut wakers = Vec::new();
        for (i, (udp, q)) in socks.into_iter().zip(tun.into_queues()).enumerate() {
            let io = ShardIo::new(udp, q).unwrap();
            wakers.push(io.waker.clone());
            let h = Echo {
                collector: collector.local_addr().unwrap(),
                ticks: ticks.clone(),
                copy,
                arms: arms.clone(),
            };
            let core = (i < 2).then_some(i);
            handles.push(
                dataplane::spawn_shard(
                    core,
                    format!("shard{i}"),
                    io,
                    h,
                    stop.clone(),
                    opts.clone(),
                )
                .unwrap(),
            );
        }

        // UDP -> tun: the datagram carries an IPv6 packet for the tun's own address.
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let pkt = ipv6_udp(
            "fd00:99::2".parse().unwrap(),
            "fd00:2::1".parse().unwrap(),
            5555,
            6666,
            b"to-tun",
        );
        let got = exchange(
            &inner_rx,
            || drop(client.send_to(&pkt, shard_addr)),
            |d| d == b"to-tun",
        );
        assert_eq!(got, b"to-tun");

        // tun -> UDP: the kernel routes a datagram for fd00:99::5 into the tun.
        let sender = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
        let got = exchange(
            &collector,
            || drop(sender.send_to(b"from-tun", "[fd00:99::5]:7777")),
            |d| d.starts_with(b"TUN:") && d.ends_with(b"from-tun"),
        );
        let ip = &got[4..];
        assert_eq!(ip[0] >> 4, 6);
        assert_eq!(ip[6], 17, "UDP inside");
        assert_eq!(
            &ip[24..40],
            &"fd00:99::5".parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(u16::from_be_bytes([ip[42], ip[43]]), 7777);

        stop.store(true, Ordering::Release);
        // Only shard 0 is woken; shard 1 must notice `stop` on its own tick.
        wakers[0].wake().unwrap();
        for h in handles {
            h.join().expect("shard panicked").expect("shard failed");
        }
        assert!(ticks.load(Ordering::Relaxed) > 0, "on_tick never ran");
        let arms = arms.load(Ordering::Relaxed);
        let want_multishot = driver == DriverKind::Uring
            && multishot
            && dataplane::uring_multishot_available().is_ok()
            && std::env::var("FWD_URING_MULTISHOT").as_deref() != Ok("0");
        if want_multishot {
            assert!(arms >= 1, "multishot receive was never armed");
        } else {
            assert_eq!(arms, 0, "multishot receive armed although not in use");
        }
    })
    .unwrap();
}

#[test]
fn epoll_driver_echo_in_place() {
    run_echo(DriverKind::Epoll, false, true);
}

#[test]
fn epoll_driver_echo_copy() {
    run_echo(DriverKind::Epoll, true, true);
}

#[test]
fn uring_driver_echo_in_place() {
    if let Err(e) = dataplane::uring_available() {
        eprintln!("skipping: io_uring unavailable: {e}");
        return;
    }
    run_echo(DriverKind::Uring, false, true);
}

#[test]
fn uring_driver_echo_copy() {
    if let Err(e) = dataplane::uring_available() {
        eprintln!("skipping: io_uring unavailable: {e}");
        return;
    }
    run_echo(DriverKind::Uring, true, true);
}

#[test]
fn uring_driver_echo_per_slot_receives() {
    if let Err(e) = dataplane::uring_available() {
        eprintln!("skipping: io_uring unavailable: {e}");
        return;
    }
    run_echo(DriverKind::Uring, false, false);
}

/// On a kernel >= 6.0 with io_uring, the multishot receive must be available (and the echo
/// tests above then assert the shards armed it).
#[test]
fn uring_multishot_available_on_new_kernels() {
    if let Err(e) = dataplane::uring_available() {
        eprintln!("skipping: io_uring unavailable: {e}");
        return;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let major: u32 = release
        .split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    if major < 6 {
        eprintln!("skipping: kernel {release} predates multishot RecvMsg");
        return;
    }
    dataplane::uring_multishot_available().expect("multishot RecvMsg on a >= 6.0 kernel");
}

/// Records what a shard saw; panics on a datagram starting with "panic".
struct Recorder {
    seen: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    truncated: Arc<AtomicUsize>,
}

impl ShardHandler for Recorder {
    fn on_udp(&mut self, _from: SocketAddr, buf: &mut [u8], len: usize, _out: &mut Outputs) {
        let pkt = buf[HEADROOM..HEADROOM + len].to_vec();
        assert!(!pkt.starts_with(b"panic"), "handler panic requested");
        self.seen.lock().unwrap().push(pkt);
    }
    fn on_tun(&mut self, buf: &mut [u8], len: usize, _out: &mut Outputs) {
        self.seen
            .lock()
            .unwrap()
            .push(buf[HEADROOM..HEADROOM + len].to_vec());
    }
    fn on_tick(&mut self, out: &mut Outputs) {
        self.truncated
            .store(out.stats().rx_truncated as usize, Ordering::Relaxed);
    }
}

/// A shard on loopback UDP with a pipe standing in for the tun queue (no namespace needed).
fn pipe_shard(
    driver: DriverKind,
) -> Option<(UdpSocket, SocketAddr, std::os::fd::OwnedFd, ShardIo)> {
    use std::os::fd::FromRawFd;
    if driver == DriverKind::Uring {
        if let Err(e) = dataplane::uring_available() {
            eprintln!("skipping: io_uring unavailable: {e}");
            return None;
        }
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a live array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are fresh and owned here.
    let (rd, wr) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = udp.local_addr().unwrap();
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    Some((client, addr, wr, ShardIo::new(udp, rd).unwrap()))
}

fn oversize_dropped(driver: DriverKind, multishot: bool) {
    let Some((client, addr, pipe_wr, io)) = pipe_shard(driver) else {
        return;
    };
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let truncated = Arc::new(AtomicUsize::new(0));
    let h = Recorder {
        seen: seen.clone(),
        truncated: truncated.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let waker = io.waker.clone();
    let opts = ShardOptions {
        tick: Duration::from_millis(10),
        buf_len: HEADROOM + 100,
        driver,
        uring_multishot: multishot,
        ..ShardOptions::default()
    };
    let shard =
        dataplane::spawn_shard(None, "shard-trunc".into(), io, h, stop.clone(), opts).unwrap();
    client.send_to(&[7u8; 101], addr).unwrap();
    client.send_to(&[8u8; 100], addr).unwrap();
    fwd::os::tun::write_fd(std::os::fd::AsFd::as_fd(&pipe_wr), b"tunpkt").unwrap();
    for _ in 0..500 {
        if seen.lock().unwrap().len() >= 2 && truncated.load(Ordering::Relaxed) >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    waker.wake().unwrap();
    shard.join().unwrap().unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&vec![8u8; 100]),
        "a datagram filling the buffer exactly is delivered"
    );
    assert!(seen.contains(&b"tunpkt".to_vec()));
    assert!(
        !seen.iter().any(|p| p.first() == Some(&7)),
        "oversize datagram must not reach the handler"
    );
    assert_eq!(truncated.load(Ordering::Relaxed), 1);
}

fn handler_panic_unwinds(driver: DriverKind) {
    let Some((client, addr, _pipe_wr, io)) = pipe_shard(driver) else {
        return;
    };
    let h = Recorder {
        seen: Default::default(),
        truncated: Default::default(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let opts = ShardOptions {
        tick: Duration::from_millis(10),
        driver,
        ..ShardOptions::default()
    };
    let shard =
        dataplane::spawn_shard(None, "shard-panic".into(), io, h, stop.clone(), opts).unwrap();
    client.send_to(b"panic now", addr).unwrap();
    // The shard thread dies with the handler's panic after draining its ring; the process
    // (and this test) carry on.
    assert!(shard.join().is_err());
}

#[test]
fn epoll_driver_drops_oversize() {
    oversize_dropped(DriverKind::Epoll, true);
}

#[test]
fn uring_driver_drops_oversize() {
    oversize_dropped(DriverKind::Uring, true);
}

#[test]
fn uring_driver_drops_oversize_per_slot_receives() {
    oversize_dropped(DriverKind::Uring, false);
}

#[test]
fn epoll_driver_handler_panic() {
    handler_panic_unwinds(DriverKind::Epoll);
}

#[test]
fn uring_driver_handler_panic() {
    handler_panic_unwinds(DriverKind::Uring);
}

/// Sends every datagram back to `to` in place (the received buffer leaves with the send).
struct Reflect {
    to: SocketAddr,
    arms: Arc<AtomicUsize>,
}

impl ShardHandler for Reflect {
    fn on_udp(&mut self, _from: SocketAddr, buf: &mut [u8], len: usize, out: &mut Outputs) {
        buf[HEADROOM - 2..HEADROOM].copy_from_slice(b"R:");
        out.send_udp_in_place(self.to, HEADROOM - 2..HEADROOM + len);
    }
    fn on_tun(&mut self, _buf: &mut [u8], _len: usize, _out: &mut Outputs) {}
    fn on_tick(&mut self, out: &mut Outputs) {
        self.arms
            .store(out.stats().udp_multishot_arms as usize, Ordering::Relaxed);
    }
}

/// Many more datagrams than receive buffers, each buffer leaving with an in-place send:
/// the multishot path must keep refilling its buffer ring (and re-arm when it ran dry).
fn reflect_many(multishot: bool) {
    let Some((client, addr, _pipe_wr, io)) = pipe_shard(DriverKind::Uring) else {
        return;
    };
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let arms = Arc::new(AtomicUsize::new(0));
    let h = Reflect {
        to: client.local_addr().unwrap(),
        arms: arms.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let waker = io.waker.clone();
    let opts = ShardOptions {
        tick: Duration::from_millis(10),
        udp_depth: 4,
        driver: DriverKind::Uring,
        uring_multishot: multishot,
        ..ShardOptions::default()
    };
    let shard =
        dataplane::spawn_shard(None, "shard-reflect".into(), io, h, stop.clone(), opts).unwrap();
    let mut got = std::collections::BTreeSet::new();
    let mut buf = [0u8; 64];
    // Bursts of 16 (four times the ring), 10 rounds: no loss on loopback with default
    // socket buffers.
    for round in 0..10u32 {
        for i in 0..16u32 {
            client
                .send_to(&(round * 16 + i).to_be_bytes(), addr)
                .unwrap();
        }
        for _ in 0..16 {
            let (n, _) = client.recv_from(&mut buf).expect("reflected datagram");
            assert_eq!(n, 6);
            assert_eq!(&buf[..2], b"R:");
            got.insert(u32::from_be_bytes(buf[2..6].try_into().unwrap()));
        }
    }
    stop.store(true, Ordering::Release);
    waker.wake().unwrap();
    shard.join().unwrap().unwrap();
    assert_eq!(got.len(), 160);
    let arms = arms.load(Ordering::Relaxed);
    if multishot && dataplane::uring_multishot_available().is_ok() {
        assert!(arms >= 1);
    } else {
        assert_eq!(arms, 0);
    }
}

#[test]
fn uring_driver_reflects_in_place_multishot() {
    reflect_many(true);
}

#[test]
fn uring_driver_reflects_in_place_per_slot() {
    reflect_many(false);
}
