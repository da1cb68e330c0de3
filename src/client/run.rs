//! The client process: connect to a server from the `remote` list, apply what it pushes to a
//! tun device through netlink, forward until told to stop or the connection dies, then
//! reconnect with back-off. Everything it added to the system is removed on the way out.
//!
//! Invariants:
//! - the tun device lives as long as the process (deleted by the kernel when its fd closes);
//!   addresses and routes live as long as one connection: every one added is recorded in
//!   [`Applied`] and removed before the next attempt and before exit;
//! - `Initialization Sequence Completed` is logged (info) exactly when a connection is up and
//!   its pushed configuration applied, once per connection, as OpenVPN does;
//! - remotes are tried in order, wrapping around; the pause between attempts follows
//!   OpenVPN's `connect-retry` rules ([`retry_pause`]); `AUTH_FAILED` and `HALT` end the
//!   process, everything else (ping-restart, RESTART, OCC_EXIT, handshake failure) reconnects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use ipnet::{IpNet, Ipv4Net};
use rand::RngCore;

use crate::client::pushed::{self, IfconfigV4, PullFilter, Pushed};
use crate::dataplane::forward::{self, Clock, DropCounters, Forwarder, Mode, ToControl};
use crate::dataplane::peers::{Peer, PeerTable};
use crate::dataplane::setup::{open_tun, shard_options, DataPathConfig};
use crate::dataplane::{spawn_shard, ShardIo};
use crate::os::netlink::Netlink;
use crate::proto::data::{Cipher, Side};
use crate::proto::messages::{ControlMessage, OCC_EXIT_PACKET, PING_MAGIC};
use crate::proto::session::{CloseReason, DataParams, Event, Session, SessionConfig};
use crate::route::{PeerId, RouteTable};

/// One `remote HOST [PORT] [PROTO]` entry.
#[derive(Clone, Debug)]
pub struct RemoteSpec {
    pub host: String,
    pub port: u16,
    /// `Some(true)` for udp6, `Some(false)` for udp4, `None` either.
    pub v6: Option<bool>,
}

/// Everything the client process needs, derived from the configuration.
pub struct ClientPlan {
    pub session: Arc<SessionConfig>,
    pub remotes: Vec<RemoteSpec>,
    pub dev: String,
    /// `offload`, `io`.
    pub data_path: DataPathConfig,
    /// Socket buffer sizes in bytes (`sndbuf` / `rcvbuf`, or fwd's default).
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub local: Option<SocketAddr>,
    pub data_ciphers: Vec<Cipher>,
    pub data_ciphers_fallback: Option<Cipher>,
    pub pull_filters: Vec<PullFilter>,
    pub route_nopull: bool,
    pub ping: Option<Duration>,
    pub ping_restart: Option<Duration>,
    pub tun_mtu: u16,
    pub replay_window: (u32, u64),
    /// `explicit-exit-notify N` (0 = off).
    pub exit_notify: u32,
    /// `connect-retry N [MAX]`: pause between attempts (OpenVPN default 1 s).
    pub connect_retry: Duration,
    /// `connect-retry N MAX`: the pause never grows beyond this (OpenVPN default 300 s).
    pub connect_retry_max: Duration,
    /// `server-poll-timeout N`: give up on a remote that has not answered at all within this
    /// time and try the next one (OpenVPN default 120 s).
    pub server_poll_timeout: Duration,
    /// `resolv-retry N` seconds (`infinite` = u64::MAX).
    pub resolv_retry: Duration,
    /// Stop after this many failed connection attempts (tests); `None` = forever.
    pub max_attempts: Option<u32>,
}

/// What the client did to the system for one connection, so it can be undone.
#[derive(Default)]
struct Applied {
    addrs: Vec<(IpAddr, u8, Option<IpAddr>)>,
    routes: Vec<(IpNet, Option<u32>)>,
    /// Host routes to the server via the original gateway (redirect-gateway).
    bypass: Vec<(IpNet, u32, Option<IpAddr>)>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The client's tun queue, kept across reconnects.
struct TunQueue {
    fd: OwnedFd,
    /// Opened with `virtio_net_hdr`s (offloads on).
    vnet: bool,
}

/// Run the client until `stop` is set (or `max_attempts` connections failed).
pub fn run(plan: ClientPlan, stop: Arc<AtomicBool>) -> Result<()> {
    if plan.remotes.is_empty() {
        bail!("no remote configured");
    }
    let (tun, tun_vnet) = open_tun(&plan.dev, 1, plan.data_path)
        .with_context(|| format!("creating tun device {}", plan.dev))?;
    let dev = tun.name().to_string();
    let fd = tun
        .into_queues()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("tun has no queue"))?;
    let queue = TunQueue { fd, vnet: tun_vnet };
    let mut nl = Netlink::open().context("opening rtnetlink")?;
    let ifindex = nl.link_index(&dev)?;
    tracing::info!(%dev, "TUN/TAP device opened");
    // OpenVPN's `unsuccessful_attempts`: reset by every completed connection.
    let mut unsuccessful = 0u32;
    let mut failures = 0u32;
    let mut next_remote = 0usize;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if !first {
            let pause = retry_pause(
                plan.connect_retry,
                plan.connect_retry_max,
                unsuccessful,
                plan.remotes.len(),
            );
            tracing::info!("Restart pause, {} second(s)", pause.as_secs());
            sleep_unless_stopped(pause, &stop);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        first = false;
        let remote = &plan.remotes[next_remote % plan.remotes.len()];
        next_remote += 1;
        let outcome = connect_once(&plan, remote, &queue, &mut nl, ifindex, &dev, &stop);
        let failed = match outcome {
            Ok(Outcome::Stopped) => break,
            Ok(Outcome::Halted(msg)) => bail!(
                "server sent HALT{}: not reconnecting",
                msg.map(|m| format!(",{m}")).unwrap_or_default()
            ),
            Ok(Outcome::Lost(reason)) => {
                // The connection was up: count failures afresh, as OpenVPN does.
                unsuccessful = 0;
                fatal(&reason)?;
                tracing::warn!(?reason, "connection lost, restarting");
                None
            }
            Ok(Outcome::Failed(reason)) => {
                fatal(&reason)?;
                Some(anyhow!("session closed during the handshake: {reason:?}"))
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            tracing::warn!(
                "connection to {}:{} failed: {e:#}",
                remote.host,
                remote.port
            );
            unsuccessful = unsuccessful.saturating_add(1);
            failures += 1;
            if plan.max_attempts.is_some_and(|m| failures >= m) {
                return Err(e);
            }
        }
    }
    tracing::info!("SIGTERM received, process exiting");
    Ok(())
}

/// The pause before the next connection attempt, as OpenVPN's `socket_restart_pause`:
/// `connect-retry` seconds, doubled for every round through the remote list beyond the fifth
/// failed one, never more than `connect-retry-max`.
fn retry_pause(retry: Duration, max: Duration, unsuccessful: u32, remotes: usize) -> Duration {
    let rounds = unsuccessful / u32::try_from(remotes.max(1)).unwrap_or(u32::MAX);
    let backoff = rounds.saturating_sub(4).min(15);
    let base = retry.max(Duration::from_secs(1));
    (base * (1u32 << backoff)).min(max.max(Duration::from_secs(1)))
}

/// `AUTH_FAILED` ends the client (OpenVPN without `auth-retry`); `HALT` is [`Outcome::Halted`].
fn fatal(reason: &CloseReason) -> Result<()> {
    match reason {
        CloseReason::AuthFailed(why) => {
            bail!(
                "AUTH_FAILED{}",
                why.as_ref().map(|w| format!(",{w}")).unwrap_or_default()
            )
        }
        _ => Ok(()),
    }
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

enum Outcome {
    /// `stop` was set.
    Stopped,
    /// The connection had come up and then ended.
    Lost(CloseReason),
    /// The session ended before the connection came up.
    Failed(CloseReason),
    /// The server sent `HALT[,message]`: do not reconnect.
    Halted(Option<String>),
}

fn resolve(remote: &RemoteSpec, retry: Duration, stop: &AtomicBool) -> Result<SocketAddr> {
    let deadline = Instant::now().checked_add(retry);
    loop {
        // The first address of the wanted family (`proto udp` takes either).
        let found = (remote.host.as_str(), remote.port)
            .to_socket_addrs()
            .map(|mut it| it.find(|a| remote.v6.is_none_or(|v6| a.is_ipv6() == v6)));
        match found {
            Ok(Some(a)) => return Ok(a),
            Ok(_) | Err(_)
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || stop.load(Ordering::Relaxed) =>
            {
                bail!("cannot resolve {}", remote.host)
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn connect_once(
    plan: &ClientPlan,
    remote: &RemoteSpec,
    queue: &TunQueue,
    nl: &mut Netlink,
    ifindex: u32,
    dev: &str,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome> {
    let server = resolve(remote, plan.resolv_retry, stop)?;
    let bind: SocketAddr = match (plan.local, server) {
        (Some(l), _) => l,
        (None, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (None, SocketAddr::V6(_)) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    // A GRO receive holds up to 64 KiB: the default buffer holds only a few of them.
    crate::os::udp::set_buffers(&sock, plan.sndbuf, plan.rcvbuf)
        .context("setting sndbuf/rcvbuf")?;
    sock.connect(server)
        .with_context(|| format!("connecting UDP to {server}"))?;
    tracing::info!(%server, "connecting");

    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let mut session = Session::new_client(plan.session.clone(), Instant::now(), unix_now(), seed)
        .map_err(|r| anyhow!("{r:?}"))?;

    // Handshake on the socket directly; the shard takes the socket over once keys exist.
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = vec![0u8; 4096];
    let mut pushed: Option<Pushed> = None;
    let mut first_keys = None;
    let started = Instant::now();
    let mut heard_from_server = false;
    while first_keys.is_none() || pushed.is_none() {
        if stop.load(Ordering::Relaxed) {
            return Ok(Outcome::Stopped);
        }
        let now = Instant::now();
        if !heard_from_server && now.saturating_duration_since(started) >= plan.server_poll_timeout
        {
            bail!(
                "no answer from {server} within server-poll-timeout ({}s)",
                plan.server_poll_timeout.as_secs()
            );
        }
        while let Some(bytes) = session.poll_transmit(now) {
            // ECONNREFUSED from an earlier datagram's ICMP error shows up here or in recv.
            if let Err(e) = sock.send(&bytes) {
                bail!("sending to {server}: {e}");
            }
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::PushReply(opts) => {
                    tracing::debug!(
                        "PUSH: Received control message: PUSH_REPLY,{}",
                        opts.join(",")
                    );
                    let filtered = pushed::filter(&opts, &plan.pull_filters, plan.route_nopull)?;
                    let p = pushed::parse(&filtered);
                    for (opt, why) in &p.ignored {
                        tracing::debug!("pushed option ignored: {opt}: {why}");
                    }
                    let cipher =
                        pushed::choose_cipher(&plan.data_ciphers, plan.data_ciphers_fallback, &p)
                            .map_err(|e| anyhow!(e))?;
                    session.set_data_params(now, DataParams { cipher, ekm: p.ekm });
                    pushed = Some(p);
                }
                Event::KeysReady {
                    key_id,
                    cipher,
                    key_block,
                    ..
                } => {
                    first_keys = Some((key_id, cipher, key_block));
                }
                Event::Message(ControlMessage::Halt(m)) => return Ok(Outcome::Halted(m)),
                Event::Closed(reason) => return Ok(Outcome::Failed(reason)),
                _ => {}
            }
        }
        if first_keys.is_some() && pushed.is_some() {
            break;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                heard_from_server = true;
                session.handle_datagram(Instant::now(), buf.get(..n).unwrap_or_default())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            // Nothing listens there (ICMP port unreachable): OpenVPN would wait out the
            // handshake window; moving on to the next remote at once is kinder.
            Err(e) => bail!("receiving from {server}: {e}"),
        }
        session.handle_timeout(Instant::now());
    }
    let (Some(p), Some((key_id, cipher, block))) = (pushed, first_keys) else {
        bail!("handshake ended without keys")
    };

    let peer = Arc::new(Peer::new(
        PeerId(p.peer_id.unwrap_or(0)),
        p.peer_id.is_some(),
        server,
        "server".into(),
    ));
    let clock = Clock::new(Instant::now());
    install_key(&peer, key_id, cipher, &block, true, plan.replay_window)?;
    peer.touch_rx(clock.ms(Instant::now()), 0);
    // The server's pushed peer-id goes into our P_DATA_V2 headers; the table slot is 0.
    let peers = Arc::new(PeerTable::single(peer.clone()));
    let mut applied = Applied::default();
    let result = apply_pushed(nl, ifindex, dev, &p, plan, server, &mut applied).and_then(|()| {
        tracing::info!(v4 = ?p.ifconfig, v6 = ?p.ifconfig_ipv6, routes = p.routes.len() + p.routes_v6.len(), "pushed options applied");
        // Exactly OpenVPN's line: scripts and tests wait for it.
        tracing::info!("Initialization Sequence Completed");
        forward_loop(plan, &mut session, &peer, &peers, &p, sock, queue, clock, stop)
    });
    undo(nl, ifindex, &applied);
    result
}

fn install_key(
    peer: &Peer,
    key_id: u8,
    cipher: Cipher,
    block: &crate::proto::data::KeyBlock,
    tx: bool,
    replay: (u32, u64),
) -> Result<()> {
    peer.install_key(
        forward::key_slot(key_id, cipher, block, Side::Client, replay)?,
        tx,
    );
    Ok(())
}

fn apply_pushed(
    nl: &mut Netlink,
    idx: u32,
    dev: &str,
    p: &Pushed,
    plan: &ClientPlan,
    server: SocketAddr,
    applied: &mut Applied,
) -> Result<()> {
    nl.set_mtu(idx, p.tun_mtu.unwrap_or(plan.tun_mtu) as u32)?;
    nl.set_link_up(idx)?;
    match p.ifconfig {
        Some(IfconfigV4::Subnet { addr, netmask }) => {
            let prefix = Ipv4Net::with_netmask(addr, netmask)
                .map(|n| n.prefix_len())
                .unwrap_or(32);
            add_addr(nl, idx, IpAddr::V4(addr), prefix, None, applied)?;
        }
        Some(IfconfigV4::PointToPoint { addr, peer }) => {
            add_addr(
                nl,
                idx,
                IpAddr::V4(addr),
                32,
                Some(IpAddr::V4(peer)),
                applied,
            )?;
        }
        None => {}
    }
    if let Some((addr, bits, _remote)) = p.ifconfig_ipv6 {
        add_addr(nl, idx, IpAddr::V6(addr), bits, None, applied)?;
    }
    for (net, _gw, metric) in &p.routes {
        add_route(nl, idx, IpNet::V4(*net), *metric, applied, dev)?;
    }
    for (net, metric) in &p.routes_v6 {
        if matches!(server.ip(), IpAddr::V6(a) if net.contains(&a)) {
            bypass(nl, server, applied)?;
        }
        add_route(nl, idx, IpNet::V6(*net), *metric, applied, dev)?;
    }
    if let Some(r) = p.redirect {
        if r.ipv4 {
            if server.is_ipv4() && !r.local {
                bypass(nl, server, applied)?;
            }
            for net in ["0.0.0.0/1", "128.0.0.0/1"] {
                add_route(nl, idx, net.parse()?, None, applied, dev)?;
            }
        }
        if r.ipv6 {
            if server.is_ipv6() && !r.local {
                bypass(nl, server, applied)?;
            }
            for net in ["::/3", "2000::/4", "3000::/4", "fc00::/7"] {
                add_route(nl, idx, net.parse()?, None, applied, dev)?;
            }
        }
    }
    Ok(())
}

fn add_addr(
    nl: &mut Netlink,
    idx: u32,
    addr: IpAddr,
    prefix: u8,
    peer: Option<IpAddr>,
    applied: &mut Applied,
) -> Result<()> {
    nl.add_address(idx, addr, prefix, peer)
        .with_context(|| format!("adding address {addr}/{prefix}"))?;
    applied.addrs.push((addr, prefix, peer));
    Ok(())
}

fn add_route(
    nl: &mut Netlink,
    idx: u32,
    net: IpNet,
    metric: Option<u32>,
    applied: &mut Applied,
    dev: &str,
) -> Result<()> {
    // As in OpenVPN, a route that cannot be added is reported, not fatal: the tunnel itself
    // works, and the rest of the pushed routes may.
    match nl.add_route(net, idx, None, metric) {
        Ok(()) => applied.routes.push((net, metric)),
        Err(e) => tracing::warn!("ERROR: adding route {net} dev {dev} failed: {e}"),
    }
    Ok(())
}

/// Keep the server reachable outside the tunnel when a pushed route would swallow it.
fn bypass(nl: &mut Netlink, server: SocketAddr, applied: &mut Applied) -> Result<()> {
    if applied
        .bypass
        .iter()
        .any(|(n, _, _)| n.addr() == server.ip())
    {
        return Ok(());
    }
    let def = match server.ip() {
        IpAddr::V4(_) => nl.default_route_v4()?,
        IpAddr::V6(_) => nl.default_route_v6()?,
    };
    if let Some(d) = def {
        let host = IpNet::from(server.ip());
        match nl.add_route(host, d.ifindex, d.gateway, None) {
            Ok(()) => applied.bypass.push((host, d.ifindex, d.gateway)),
            Err(e) => {
                tracing::warn!("ERROR: adding the host route to the server {host} failed: {e}")
            }
        }
    }
    Ok(())
}

fn undo(nl: &mut Netlink, idx: u32, applied: &Applied) {
    for (net, metric) in applied.routes.iter().rev() {
        let _ = nl.del_route(*net, idx, None, *metric);
    }
    for (net, oif, gw) in &applied.bypass {
        let _ = nl.del_route(*net, *oif, *gw, None);
    }
    for (addr, prefix, peer) in &applied.addrs {
        let _ = nl.del_address(idx, *addr, *prefix, *peer);
    }
}

#[allow(clippy::too_many_arguments)]
fn forward_loop(
    plan: &ClientPlan,
    session: &mut Session,
    peer: &Arc<Peer>,
    peers: &Arc<PeerTable>,
    p: &Pushed,
    sock: UdpSocket,
    queue: &TunQueue,
    clock: Clock,
    stop: &Arc<AtomicBool>,
) -> Result<Outcome> {
    let ctl_sock = sock.try_clone()?;
    let (tx, rx) = bounded(1024);
    let mut fwd = Forwarder::new(
        Mode::Client,
        peers.clone(),
        Arc::new(RouteTable::new()),
        tx,
        Arc::new(DropCounters::default()),
        clock,
    );
    fwd.set_mss_limits(plan.data_path.mss);
    let shard_stop = Arc::new(AtomicBool::new(false));
    let opts = shard_options(plan.data_path, queue.vnet, &sock);
    let io = ShardIo::new(sock, queue.fd.try_clone()?)?;
    let shard = spawn_shard(
        None,
        "fwd-client-shard".into(),
        io,
        fwd,
        shard_stop.clone(),
        opts,
    )?;
    let ping = pushed_timer(p.ping, plan.ping);
    let ping_restart = pushed_timer(p.ping_restart, plan.ping_restart);
    let outcome = control_loop(
        plan,
        session,
        peer,
        p,
        &ctl_sock,
        &rx,
        clock,
        ping,
        ping_restart,
        stop,
    );
    shard_stop.store(true, Ordering::Relaxed);
    let _ = shard.join();
    outcome
}

/// A pushed `ping`/`ping-restart` overrides the local one; 0 turns it off (as in OpenVPN)
/// rather than meaning "every moment".
fn pushed_timer(pushed: Option<u32>, local: Option<Duration>) -> Option<Duration> {
    match pushed {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s.into())),
        None => local,
    }
}

#[allow(clippy::too_many_arguments)]
fn control_loop(
    plan: &ClientPlan,
    session: &mut Session,
    peer: &Arc<Peer>,
    p: &Pushed,
    sock: &UdpSocket,
    rx: &Receiver<ToControl>,
    clock: Clock,
    ping: Option<Duration>,
    ping_restart: Option<Duration>,
    stop: &AtomicBool,
) -> Result<Outcome> {
    loop {
        if stop.load(Ordering::Relaxed) {
            say_goodbye(plan, session, peer, p, sock, rx);
            return Ok(Outcome::Stopped);
        }
        let now = Instant::now();
        let wait = session
            .poll_timeout()
            .map_or(Duration::from_millis(500), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(500));
        match rx.recv_timeout(wait) {
            Ok(ToControl::Datagram { bytes, .. }) => {
                session.handle_datagram(Instant::now(), &bytes)
            }
            // OpenVPN restarts (SIGUSR1 "remote-exit") when the server says OCC_EXIT.
            Ok(ToControl::OccExit { .. }) => {
                return Ok(Outcome::Lost(CloseReason::PeerExit("OCC_EXIT".into())))
            }
            Ok(ToControl::Float { .. }) => {}
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Ok(Outcome::Lost(CloseReason::Local("shard stopped".into())))
            }
        }
        let now = Instant::now();
        session.handle_timeout(now);
        while let Some(bytes) = session.poll_transmit(now) {
            let _ = sock.send(&bytes);
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                Event::KeysReady {
                    key_id,
                    cipher,
                    key_block,
                    tx_now,
                } => {
                    install_key(peer, key_id, cipher, &key_block, tx_now, plan.replay_window)?;
                    tracing::info!(key_id, ?cipher, "Data Channel: renegotiated key installed");
                }
                Event::TxSwitch { key_id } => peer.switch_tx(key_id),
                Event::KeyRetired { key_id } => peer.retire_key(key_id),
                Event::Message(ControlMessage::Halt(m)) => return Ok(Outcome::Halted(m)),
                Event::Closed(reason) => return Ok(Outcome::Lost(reason)),
                _ => {}
            }
        }
        let now_ms = clock.ms(now);
        if let Some(ping) = ping {
            if now_ms.saturating_sub(peer.stats.last_tx_ms.load(Ordering::Relaxed))
                >= ping.as_millis() as u64
            {
                if let Some(b) = forward::seal_one(peer, &PING_MAGIC) {
                    if sock.send(&b).is_ok() {
                        peer.touch_tx(now_ms, b.len());
                    }
                }
            }
        }
        if let Some(limit) = ping_restart {
            if now_ms.saturating_sub(peer.stats.last_rx_ms.load(Ordering::Relaxed))
                > limit.as_millis() as u64
            {
                tracing::info!("Inactivity timeout (--ping-restart), restarting");
                return Ok(Outcome::Lost(CloseReason::Local("ping-restart".into())));
            }
        }
    }
}

/// `explicit-exit-notify N`: `EXIT` over the control channel when the server offered cc-exit
/// (retransmitted by the reliability layer until acknowledged, for at most N seconds), else
/// N `OCC_EXIT` data packets.
fn say_goodbye(
    plan: &ClientPlan,
    session: &mut Session,
    peer: &Peer,
    p: &Pushed,
    sock: &UdpSocket,
    rx: &Receiver<ToControl>,
) {
    if plan.exit_notify == 0 {
        return;
    }
    tracing::info!("SIGTERM received, sending exit notification to peer");
    if p.cc_exit {
        session.send_text("EXIT");
        let until = Instant::now() + Duration::from_secs(plan.exit_notify.min(5).into());
        let mut answered: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // The server's acknowledgement is the first control datagram after ours; linger a
            // little for a retransmission request, then go.
            if now >= until || answered.is_some_and(|t| now >= t + Duration::from_millis(100)) {
                break;
            }
            session.handle_timeout(now);
            while let Some(b) = session.poll_transmit(now) {
                let _ = sock.send(&b);
            }
            if let Ok(ToControl::Datagram { bytes, .. }) =
                rx.recv_timeout(Duration::from_millis(20))
            {
                session.handle_datagram(Instant::now(), &bytes);
                answered.get_or_insert(Instant::now());
            }
        }
    } else {
        for i in 0..plan.exit_notify.min(5) {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(b) = forward::seal_one(peer, &OCC_EXIT_PACKET) {
                let _ = sock.send(&b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn retry_pause_follows_openvpn() {
        let max = 300 * S;
        // The first five rounds through the list wait connect-retry seconds…
        assert_eq!(retry_pause(S, max, 0, 1), S);
        assert_eq!(retry_pause(5 * S, max, 4, 1), 5 * S);
        assert_eq!(retry_pause(S, max, 9, 2), S);
        // …then the pause doubles each round…
        assert_eq!(retry_pause(S, max, 5, 1), 2 * S);
        assert_eq!(retry_pause(S, max, 6, 1), 4 * S);
        assert_eq!(retry_pause(S, max, 12, 2), 4 * S);
        // …up to connect-retry-max.
        assert_eq!(retry_pause(S, 10 * S, 40, 1), 10 * S);
        assert_eq!(retry_pause(S, max, u32::MAX, 1), max);
        // A zero connect-retry still pauses a second (no busy loop on a refusing remote).
        assert_eq!(retry_pause(Duration::ZERO, max, 0, 3), S);
    }

    #[test]
    fn pushed_timers_override_and_zero_disables() {
        assert_eq!(pushed_timer(Some(10), Some(S)), Some(10 * S));
        assert_eq!(pushed_timer(None, Some(S)), Some(S));
        assert_eq!(pushed_timer(Some(0), Some(S)), None);
        assert_eq!(pushed_timer(None, None), None);
    }

    #[test]
    fn auth_failed_is_fatal_other_reasons_restart() {
        assert!(fatal(&CloseReason::AuthFailed(Some("bad".into()))).is_err());
        assert!(fatal(&CloseReason::HandshakeTimeout).is_ok());
        assert!(fatal(&CloseReason::PeerExit("RESTART".into())).is_ok());
    }
}
