//! The load generator behind `fwd-loadgen`: thousands of simulated OpenVPN clients from one
//! process, each a real client control channel ([`crate::proto::session::Session`]) with its
//! own UDP socket, against one server (fwd or stock openvpn).
//!
//! Structure: [`client::SimClient`] is the sans-IO per-client logic (handshake, push, data
//! keys, echo traffic); this module owns the IO: `threads` workers, each with its share of the
//! clients (client `g` goes to worker `g % threads`), one connected non-blocking UDP socket per
//! client, an epoll set over them and a deadline heap for the clients' timers.
//!
//! Invariants: the run is bounded: new handshakes start only before `duration` ends, data
//! stops at `duration`, and the workers exit `drain` later whatever the server does. Every
//! socket is connected to the one given server address, so nothing else is ever sent to.

pub mod args;
pub mod client;
pub mod icmp;
pub mod stats;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use rand::RngCore;

use crate::client::run::ClientPlan;

use crate::os::epoll::Epoll;
use client::{Phase, Profile, SimClient};
pub use stats::{Report, Stats};

/// Largest datagram we expect from a server.
const RECV_BUF: usize = 2048;
/// Datagrams read from one socket per readiness, so one busy client cannot starve the rest.
const RECV_BATCH: usize = 32;
/// Longest epoll sleep: the loop re-checks the clock at least this often.
const MAX_WAIT_MS: i32 = 50;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server; every socket is connected to exactly this address.
    pub server: SocketAddr,
    pub clients: u32,
    /// New handshakes per second (all threads together).
    pub rate: f64,
    /// Total run time: handshakes start and data flows only within it.
    pub duration: Duration,
    /// Echo requests per second per connected client (0: handshakes only).
    pub pps: f64,
    /// Inner packet size of the echo requests (bytes, IP header included).
    pub size: usize,
    pub threads: usize,
    /// After `duration`, keep receiving this long for replies in flight.
    pub drain: Duration,
    /// Echo targets instead of the pushed server tunnel addresses.
    pub target_v4: Option<Ipv4Addr>,
    pub target_v6: Option<Ipv6Addr>,
}

/// Load a client profile (`client.ovpn`) into the plan the simulated clients share.
pub fn load_profile(path: &Path) -> Result<ClientPlan> {
    let loaded = crate::config::load_file(path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    crate::plan::client_plan(&loaded.config)
}

/// The server address: `explicit` if given, else the profile's first `remote` (which must
/// resolve; an IP literal never touches DNS).
pub fn server_addr(plan: &ClientPlan, explicit: Option<SocketAddr>) -> Result<SocketAddr> {
    if let Some(a) = explicit {
        return Ok(a);
    }
    let r = plan
        .remotes
        .first()
        .ok_or_else(|| anyhow!("the profile has no `remote`; give --server ADDR:PORT"))?;
    (r.host.as_str(), r.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", r.host))?
        .find(|a| r.v6.is_none_or(|v6| a.is_ipv6() == v6))
        .ok_or_else(|| anyhow!("{} has no usable address", r.host))
}

/// Raise the open-file limit to the hard limit: one socket per client.
fn raise_nofile(need: u64) -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one is allowed.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
    if lim.rlim_cur < need {
        bail!(
            "{need} sockets needed but the open-file limit is {} (ulimit -n)",
            lim.rlim_cur
        );
    }
    Ok(())
}

/// Run the load and report. Blocks for about `duration + drain`.
pub fn run(plan: &ClientPlan, opts: &Options) -> Result<Report> {
    if opts.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(opts.rate > 0.0 && opts.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    if !(opts.pps >= 0.0 && opts.pps.is_finite()) {
        bail!("--pps must be a number >= 0");
    }
    raise_nofile(u64::from(opts.clients) + 64)?;
    let threads = opts.threads.clamp(1, opts.clients as usize);
    // Handshakes begin a little after the workers exist, so thread start-up is not measured.
    let origin = Instant::now() + Duration::from_millis(50);
    let unix_origin = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut profile = Profile::from_plan(plan, opts.pps, opts.size, origin);
    profile.target_v4 = opts.target_v4;
    profile.target_v6 = opts.target_v6;
    let profile = Arc::new(profile);
    let mut handles = Vec::new();
    for tid in 0..threads {
        let profile = profile.clone();
        let opts = opts.clone();
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{tid}"))
            .spawn(move || worker(tid, threads, &opts, &profile, unix_origin))
            .context("spawning a worker thread")?;
        handles.push(h);
    }
    let mut total = Stats::default();
    let mut incomplete = 0;
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok((s, inc))) => {
                total.merge(s);
                incomplete += inc;
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(anyhow!("a worker thread panicked"));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let mut report = Report::new(opts.clients, total, origin.elapsed(), incomplete);
    report.self_cpu = process_cpu();
    Ok(report)
}

/// User + system CPU time of this process so far.
fn process_cpu() -> Option<Duration> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to write into.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// One client of a worker with its IO state.
struct Slot {
    client: SimClient,
    sock: Option<UdpSocket>,
    start_at: Instant,
    /// The client's deadline when it was last scheduled.
    deadline: Option<Instant>,
    /// Its key in the heap (older heap entries for this client are stale).
    scheduled: Option<Instant>,
}

struct Worker<'a> {
    profile: &'a Profile,
    server: SocketAddr,
    slots: Vec<Slot>,
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    stats: Stats,
}

impl Worker<'_> {
    fn open_socket(&self) -> io::Result<UdpSocket> {
        let bind: SocketAddr = match self.server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let s = UdpSocket::bind(bind)?;
        s.connect(self.server)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    /// Send what the client queued, then put its next deadline into the heap.
    fn flush(&mut self, i: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        while let Some(b) = slot.client.poll_transmit() {
            let Some(sock) = slot.sock.as_ref() else {
                continue;
            };
            if let Err(e) = sock.send(&b) {
                self.stats.drop(match e.kind() {
                    io::ErrorKind::WouldBlock => "tx_busy",
                    io::ErrorKind::ConnectionRefused => "tx_refused",
                    _ => "tx_error",
                });
            }
        }
        let deadline = slot.client.poll_timeout();
        if deadline == slot.deadline && slot.scheduled.is_some() {
            return;
        }
        slot.deadline = deadline;
        slot.scheduled = deadline.map(|t| {
            // A deadline that is already due fires on the next loop turn; one that did not
            // move past `now` after being handled must not spin the loop.
            let t = t.max(now + Duration::from_millis(1));
            self.heap.push(Reverse((t, i)));
            t
        });
    }

    fn receive(&mut self, i: usize, now: Instant, buf: &mut [u8]) {
        for _ in 0..RECV_BATCH {
            let Some(slot) = self.slots.get_mut(i) else {
                return;
            };
            let Some(sock) = slot.sock.as_ref() else {
                return;
            };
            match sock.recv(buf) {
                Ok(n) => {
                    let Some(pkt) = buf.get_mut(..n) else { return };
                    slot.client
                        .handle_datagram(self.profile, now, pkt, &mut self.stats);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The server's port answered ICMP unreachable (not up yet, or gone).
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.stats.drop("rx_refused")
                }
                Err(_) => {
                    self.stats.drop("rx_error");
                    break;
                }
            }
        }
        self.flush(i, now);
    }
}

fn worker(
    tid: usize,
    threads: usize,
    opts: &Options,
    profile: &Profile,
    unix_origin: u64,
) -> Result<(Stats, u64)> {
    let origin = profile.origin;
    let end = origin + opts.duration;
    let drain_end = end + opts.drain;
    let mut rng = rand::thread_rng();
    let slots: Vec<Slot> = (tid..opts.clients as usize)
        .step_by(threads)
        .map(|g| {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            Slot {
                client: SimClient::new(g as u32, seed),
                sock: None,
                start_at: origin + Duration::from_secs_f64(g as f64 / opts.rate),
                deadline: None,
                scheduled: None,
            }
        })
        .collect();
    let mut w = Worker {
        profile,
        server: opts.server,
        slots,
        heap: BinaryHeap::new(),
        stats: Stats::default(),
    };
    let mut ep = Epoll::new(256).context("epoll")?;
    let mut ready = Vec::with_capacity(256);
    let mut buf = vec![0u8; RECV_BUF];
    let mut next_start = 0usize;
    let mut stopped = false;
    loop {
        let now = Instant::now();
        if now >= drain_end {
            break;
        }
        if !stopped && now >= end {
            stopped = true;
            for i in 0..w.slots.len() {
                w.slots[i].client.stop_sending(profile, now, &mut w.stats);
                w.flush(i, now);
            }
        }
        // Start the clients whose turn has come.
        while !stopped && next_start < w.slots.len() && w.slots[next_start].start_at <= now {
            let i = next_start;
            next_start += 1;
            match w.open_socket() {
                Ok(sock) => {
                    if let Err(e) = ep.add(sock.as_raw_fd(), i as u64) {
                        tracing::warn!("epoll add: {e}");
                        w.slots[i].client.fail_local("socket_error", &mut w.stats);
                        continue;
                    }
                    w.slots[i].sock = Some(sock);
                    let unix = unix_origin + now.saturating_duration_since(origin).as_secs();
                    w.slots[i].client.start(profile, now, unix, &mut w.stats);
                    w.flush(i, now);
                }
                Err(e) => {
                    tracing::warn!("client socket: {e}");
                    w.slots[i].client.fail_local("socket_error", &mut w.stats);
                }
            }
        }
        // Due timers.
        while let Some(&Reverse((t, i))) = w.heap.peek() {
            if t > now {
                break;
            }
            w.heap.pop();
            let Some(slot) = w.slots.get_mut(i) else {
                continue;
            };
            if slot.scheduled != Some(t) {
                continue; // stale entry
            }
            slot.scheduled = None;
            slot.client.handle_timeout(profile, now, &mut w.stats);
            w.flush(i, now);
        }
        // Sleep until the next thing to do, or input.
        let mut next = drain_end;
        if let Some(&Reverse((t, _))) = w.heap.peek() {
            next = next.min(t);
        }
        if !stopped {
            next = next.min(end);
            if let Some(s) = w.slots.get(next_start) {
                next = next.min(s.start_at);
            }
        }
        let wait = next.saturating_duration_since(Instant::now());
        // Round up so a wake-up never comes before the deadline (no busy loop).
        let ms = wait.as_micros().div_ceil(1000);
        let ms = i32::try_from(ms).unwrap_or(MAX_WAIT_MS).min(MAX_WAIT_MS);
        ep.wait(ms, &mut ready).context("epoll_wait")?;
        let now = Instant::now();
        for &token in &ready {
            w.receive(token as usize, now, &mut buf);
        }
    }
    let incomplete = w
        .slots
        .iter()
        .filter(|s| s.client.phase() == Phase::Handshaking)
        .count() as u64;
    w.stats.clients_replied = w
        .slots
        .iter()
        .filter(|s| {
            let (v4, v6) = s.client.replies();
            v4 > 0 && v6 > 0
        })
        .count() as u64;
    Ok((w.stats, incomplete))
}
