//! The server process: builds the tun device, the SO_REUSEPORT sockets and the shards, then runs
//! the control thread (this thread) until asked to stop.
//!
//! The control thread owns [`ServerCore`] and is the only writer of the peer and route tables.
//! It never opens a socket of its own in the reuseport group (the kernel would hand it a share
//! of the data packets): it sends through a duplicate of shard 0's socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, never, select, Receiver};
use ipnet::IpNet;
use rand::RngCore;

use crate::dataplane::forward::{self, Clock, DropCounters, Forwarder, Mode, ToControl};
use crate::dataplane::peers::{Peer, PeerTable, RenegLimits};
use crate::dataplane::setup::{open_tun, shard_options, DataPathConfig};
use crate::dataplane::{spawn_shard, ShardIo};
use crate::mgmt::reply::{LoadStats, LocalInfo, ServerState};
use crate::mgmt::server::{MgmtRequest, Request};
use crate::mgmt::status::{ClientRow, StatusSnapshot, StatusVersion};
use crate::mgmt::time::Stamp;
use crate::os::netlink::Netlink;
use crate::os::udp;
use crate::pool::Pool;
use crate::proto::data::Side;
use crate::proto::messages::PING_MAGIC;
use crate::proto::session::CloseReason;
use crate::route::{RouteChange, RouteTable};
use crate::server::core::{ClientDirectory, ServerCore, ServerEvent, ServerSettings};
use crate::server::push::client_routes;

/// Control-thread queue depth: control packets are a trickle next to data, and a full queue
/// only means a client retransmits.
const CONTROL_QUEUE: usize = 4096;
/// How often the control thread looks at keepalive timers and housekeeping.
const HOUSEKEEPING: Duration = Duration::from_millis(500);

/// The server's own tun IPv4 configuration.
#[derive(Clone, Copy, Debug)]
pub struct TunV4 {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
    /// net30/p2p: the point-to-point peer address.
    pub peer: Option<Ipv4Addr>,
}

/// The management interface's settings.
#[derive(Clone, Copy, Debug)]
pub struct MgmtPlan {
    pub addr: SocketAddr,
    /// `status-version`: the format of a bare `status` command.
    pub status_version: u8,
    /// `verb`, shown by the `verb` command.
    pub verb: u32,
}

/// Everything the server process needs, derived from the configuration.
pub struct ServerPlan {
    pub settings: ServerSettings,
    pub pool: Pool,
    pub directory: Box<dyn ClientDirectory + Send>,
    pub dev: String,
    pub threads: usize,
    /// `offload`, `io`.
    pub data_path: DataPathConfig,
    pub listen: SocketAddr,
    pub v6only: Option<bool>,
    /// Socket buffer sizes in bytes (`sndbuf` / `rcvbuf`, or fwd's default).
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub tun_mtu: u16,
    pub txqueuelen: Option<u32>,
    pub tun_v4: Option<TunV4>,
    pub tun_v6: Option<(Ipv6Addr, u8)>,
    /// `route` / `route-ipv6`: installed towards the tun at start.
    pub routes: Vec<IpNet>,
    pub ping: Option<Duration>,
    pub ping_restart: Option<Duration>,
    pub client_to_client: bool,
    pub reneg: RenegLimits,
    pub replay_window: (u32, u64),
    pub persist: Option<(PathBuf, Duration)>,
    pub status: Option<(PathBuf, Duration, u8)>,
    /// `management IP PORT`.
    pub management: Option<MgmtPlan>,
    pub exit_notify: bool,
    /// Called with the tun name once the device is up (tests, demo).

    /// `user` / `group`: switch to them once the tun, sockets and routes exist.
    pub user: Option<String>,
    pub group: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Run the server until `stop` is set.
pub fn run(plan: ServerPlan, stop: Arc<AtomicBool>) -> Result<()> {
    let threads = plan.threads.max(1);
    let (tun, tun_vnet) = open_tun(&plan.dev, threads, plan.data_path)
        .with_context(|| format!("creating tun device {}", plan.dev))?;
    let dev = tun.name().to_string();
    configure_tun(&plan, &dev)?;
    let udp_opts = udp::UdpOptions {
        v6only: plan.v6only,
        sndbuf: Some(plan.sndbuf),
        rcvbuf: Some(plan.rcvbuf),
        pktinfo: false,
    };
    let sockets = udp::bind_reuseport_with(plan.listen, threads, &udp_opts)
        .with_context(|| format!("binding UDP {}", plan.listen))?;
    let local = sockets[0].local_addr()?;
    if threads > 1 {
        // One client's data packets reach one shard, whatever address it floats to.
        let n = u32::try_from(threads).unwrap_or(u32::MAX);
        if let Err(e) = crate::dataplane::steer::attach(&sockets[0], n) {
            tracing::info!(error = %e, "no peer-id steering; the kernel's 4-tuple hash spreads clients");
        }
    }
    let control_sock = sockets[0]
        .try_clone()
        .context("duplicating the control socket")?;
    tracing::info!(dev, %local, threads, "fwd server listening");

    let peers = Arc::new(PeerTable::new(plan.settings.max_clients as usize));
    let routes = Arc::new(RouteTable::new());
    let drops = Arc::new(DropCounters::default());
    let clock = Clock::new(Instant::now());
    let (control_tx, control_rx) = bounded(CONTROL_QUEUE);

    let mut shards = Vec::new();
    for (i, (sock, queue)) in sockets.into_iter().zip(tun.into_queues()).enumerate() {
        let mut fwd = Forwarder::new(
            Mode::Server {
                client_to_client: plan.client_to_client,
            },
            peers.clone(),
            routes.clone(),
            control_tx.clone(),
            drops.clone(),
            clock,
        );
        fwd.set_mss_limits(plan.data_path.mss);
        let core = (threads > 1).then_some(i);
        let opts = shard_options(plan.data_path, tun_vnet, &sock);
        let io = ShardIo::new(sock, queue)?;
        shards.push(spawn_shard(
            core,
            format!("fwd-shard-{i}"),
            io,
            fwd,
            stop.clone(),
            opts,
        )?);
    }
    let (mgmt, mgmt_rx) = match plan.management {
        Some(m) => {
            let info = LocalInfo {
                title: crate::mgmt::title(),
                pid: std::process::id(),
                verb: m.verb,
                started: unix_now(),
                tun_v4: plan.tun_v4.map(|t| t.addr),
                tun_v6: plan.tun_v6.map(|t| t.0),
            };
            let (server, rx) = crate::mgmt::server::spawn(m.addr, info, stop.clone())
                .with_context(|| format!("management interface on {}", m.addr))?;
            (Some(server), rx)
        }
        None => (None, never()),
    };
    let status_version = plan
        .management
        .map(|m| m.status_version)
        .or(plan.status.as_ref().map(|s| s.2))
        .and_then(|v| StatusVersion::try_from(v).ok())
        .unwrap_or(StatusVersion::V1);

    if plan.user.is_some() || plan.group.is_some() {
        crate::os::privs::drop_to(plan.user.as_deref(), plan.group.as_deref())
            .context("dropping privileges (user/group)")?;
    }
    // The same words as openvpn, so scripts and tests that wait for readiness work for both.
    tracing::info!("Initialization Sequence Completed");

    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    let now = Instant::now();
    let core = ServerCore::new(
        plan.settings,
        plan.pool,
        plan.directory,
        now,
        unix_now(),
        seed,
    );
    let mut ctl = Control {
        core,
        peers,
        routes,
        sock: control_sock,
        clock,
        replay_window: plan.replay_window,
        ping: plan.ping,
        ping_restart: plan.ping_restart,
        reneg: plan.reneg,
        persist: plan.persist.clone(),
        next_persist: now,
        status: plan.status.clone().map(|(path, every, v)| {
            (
                path,
                every,
                StatusVersion::try_from(v).unwrap_or(StatusVersion::V1),
            )
        }),
        next_status: now,
        status_version,
        retired_bytes: (0, 0),
        title: crate::mgmt::title(),
        drops: drops.clone(),
    };
    ctl.run(&control_rx, mgmt_rx, &stop);
    if plan.exit_notify {
        ctl.core.shutdown_all(Instant::now(), "RESTART");
        ctl.flush();
    }
    ctl.write_persist();
    ctl.write_status();
    if let Some(m) = mgmt {
        m.join();
    }
    for s in shards {
        let _ = s.join();
    }
    tracing::info!(drops = ?drops.snapshot(), "fwd server stopped");
    Ok(())
}

fn configure_tun(plan: &ServerPlan, dev: &str) -> Result<()> {
    let mut nl = Netlink::open().context("opening rtnetlink")?;
    let idx = nl.link_index(dev)?;
    nl.set_mtu(idx, plan.tun_mtu as u32)?;
    if let Some(q) = plan.txqueuelen {
        nl.set_txqueuelen(idx, q)?;
    }
    nl.set_link_up(idx)?;
    if let Some(v4) = plan.tun_v4 {
        nl.add_address(
            idx,
            IpAddr::V4(v4.addr),
            v4.prefix_len,
            v4.peer.map(IpAddr::V4),
        )?;
    }
    if let Some((addr, bits)) = plan.tun_v6 {
        nl.add_address(idx, IpAddr::V6(addr), bits, None)?;
    }
    for r in &plan.routes {
        nl.add_route(*r, idx, None, None)
            .with_context(|| format!("route {r} on {dev}"))?;
    }
    Ok(())
}

struct Control {
    core: ServerCore,
    peers: Arc<PeerTable>,
    routes: Arc<RouteTable>,
    sock: UdpSocket,
    clock: Clock,
    replay_window: (u32, u64),
    ping: Option<Duration>,
    ping_restart: Option<Duration>,
    reneg: RenegLimits,
    persist: Option<(PathBuf, Duration)>,
    next_persist: Instant,
    /// `status FILE SECONDS` with its format.
    status: Option<(PathBuf, Duration, StatusVersion)>,
    next_status: Instant,
    /// Format of a bare management `status`.
    status_version: StatusVersion,
    /// UDP bytes (in, out) of peers that are gone, for `load-stats`.
    retired_bytes: (u64, u64),
    title: String,
    drops: Arc<DropCounters>,
}

impl Control {
    fn run(
        &mut self,
        rx: &Receiver<ToControl>,
        mut mgmt_rx: Receiver<MgmtRequest>,
        stop: &AtomicBool,
    ) {
        let mut next_housekeeping = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let deadline = self
                .core
                .poll_timeout()
                .map_or(next_housekeeping, |t| t.min(next_housekeeping));
            let wait = deadline.saturating_duration_since(now).min(HOUSEKEEPING);
            select! {
                recv(rx) -> msg => match msg {
                    Ok(msg) => {
                        self.handle(msg);
                        // Drain what else is queued before looking at timers.
                        while let Ok(msg) = rx.try_recv() {
                            self.handle(msg);
                        }
                    }
                    Err(_) => break,
                },
                recv(mgmt_rx) -> req => match req {
                    Ok(req) => self.serve_mgmt(req),
                    // The listener is gone: stop polling its queue (it would be ready forever).
                    Err(_) => mgmt_rx = never(),
                },
                default(wait) => {}
            }
            let now = Instant::now();
            self.core.handle_timeout(now);
            if now >= next_housekeeping {
                self.housekeeping(now);
                next_housekeeping = now + HOUSEKEEPING;
            }
            self.flush();
        }
    }

    fn handle(&mut self, msg: ToControl) {
        let now = Instant::now();
        match msg {
            ToControl::Datagram { from, bytes } => {
                self.core.handle_datagram(now, udp::normalize(from), &bytes)
            }
            ToControl::Float { peer, to } => self.core.peer_floated(peer, udp::normalize(to)),
            ToControl::OccExit { peer } => {
                self.core
                    .kill_peer(now, peer, None, CloseReason::PeerExit("OCC_EXIT".into()))
            }
        }
        self.flush();
    }

    /// Send queued datagrams and apply events to the shared tables.
    fn flush(&mut self) {
        while let Some((to, bytes)) = self.core.poll_transmit() {
            if let Err(e) = self.sock.send_to(&bytes, to) {
                tracing::debug!(%to, "control send failed: {e}");
            }
        }
        while let Some(ev) = self.core.poll_event() {
            self.apply(ev);
        }
    }

    fn apply(&mut self, ev: ServerEvent) {
        match ev {
            ServerEvent::PeerUp(up) => {
                let mut peer = Peer::new(up.peer_id, up.data_v2, up.remote, up.common_name.clone());
                // A ccd `ping` / `ping-restart` overrides the server's for this client.
                let secs = |s: u32| (s > 0).then(|| Duration::from_secs(s.into()));
                peer.ping = up.ping.map_or(self.ping, secs);
                peer.ping_restart = up.ping_restart.map_or(self.ping_restart, secs);
                let peer = Arc::new(peer);
                peer.touch_rx(self.clock.ms(Instant::now()), 0);
                self.peers.insert(peer);
                let changes = client_routes(up.v4, up.v6, &up.iroutes, &up.iroutes_v6)
                    .into_iter()
                    .map(|net| RouteChange::Add(net, up.peer_id));
                self.routes.apply(changes);
                tracing::info!(
                    cn = up.common_name,
                    peer_id = up.peer_id.0,
                    v4 = ?up.v4.map(|v| v.addr()),
                    v6 = ?up.v6.map(|v| v.addr),
                    remote = %up.remote,
                    cipher = up.cipher.name(),
                    "peer up"
                );
            }
            ServerEvent::Keys {
                peer_id,
                key_id,
                cipher,
                key_block,
                tx_now,
            } => {
                let Some(peer) = self.peers.get(peer_id) else {
                    return;
                };
                match forward::key_slot(
                    key_id,
                    cipher,
                    &key_block,
                    Side::Server,
                    self.replay_window,
                ) {
                    Ok(slot) => peer.install_key(slot, tx_now),
                    Err(e) => tracing::warn!(peer_id = peer_id.0, "data keys not usable: {e}"),
                }
            }
            ServerEvent::TxSwitch { peer_id, key_id } => {
                if let Some(peer) = self.peers.get(peer_id) {
                    peer.switch_tx(key_id);
                }
            }
            ServerEvent::KeyRetired { peer_id, key_id } => {
                if let Some(peer) = self.peers.get(peer_id) {
                    peer.retire_key(key_id);
                }
            }
            ServerEvent::PeerDown {
                peer_id,
                common_name,
                reason,
            } => {
                self.routes.apply([RouteChange::RemovePeer(peer_id)]);
                if let Some(gone) = self.peers.remove(peer_id) {
                    self.retired_bytes.0 += gone.stats.bytes_in.load(Ordering::Relaxed);
                    self.retired_bytes.1 += gone.stats.bytes_out.load(Ordering::Relaxed);
                }
                tracing::info!(cn = common_name, peer_id = peer_id.0, ?reason, "peer down");
            }
            ServerEvent::HandshakeFailed { remote, reason } => {
                tracing::info!(%remote, ?reason, "connection failed before authentication");
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let now_ms = self.clock.ms(now);
        let mut dead = Vec::new();
        let mut reneg = Vec::new();
        for peer in self.peers.iter() {
            if peer.reneg_due(&self.reneg) {
                reneg.push(peer.id);
            }
            if let Some(ping) = peer.ping {
                let last_tx = peer.stats.last_tx_ms.load(Ordering::Relaxed);
                if now_ms.saturating_sub(last_tx) >= ping.as_millis() as u64 {
                    if let Some(bytes) = forward::seal_one(&peer, &PING_MAGIC) {
                        if self.sock.send_to(&bytes, peer.remote()).is_ok() {
                            peer.touch_tx(now_ms, bytes.len());
                        }
                    }
                }
            }
            if let Some(limit) = peer.ping_restart {
                let last_rx = peer.stats.last_rx_ms.load(Ordering::Relaxed);
                if now_ms.saturating_sub(last_rx) > limit.as_millis() as u64 {
                    dead.push(peer.id);
                }
            }
        }
        for id in reneg {
            self.core.renegotiate(now, id);
        }
        for id in dead {
            tracing::info!(peer_id = id.0, "ping-restart: no packets from client");
            self.core
                .kill_peer(now, id, None, CloseReason::Local("ping-restart".into()));
        }
        if let Some((_, every, _)) = &self.status {
            if now >= self.next_status {
                self.next_status = now + *every;
                self.write_status();
            }
        }
        if self
            .persist
            .as_ref()
            .is_some_and(|(_, every)| !every.is_zero())
            && now >= self.next_persist
        {
            self.write_persist();
            if let Some((_, every)) = &self.persist {
                self.next_persist = now + *every;
            }
        }
    }

    fn write_status(&mut self) {
        let Some((path, _, version)) = &self.status else {
            return;
        };
        let (path, version) = (path.clone(), *version);
        let text = crate::mgmt::status::render(version, &self.snapshot());
        if let Err(e) = crate::pool::persist::write_atomic(&path, &text) {
            tracing::warn!(path = %path.display(), "status file not written: {e}");
        }
    }

    fn serve_mgmt(&mut self, req: MgmtRequest) {
        let text = match &req.req {
            Request::Run(cmd) => crate::mgmt::reply::execute(cmd, self).unwrap_or_else(|| {
                "ERROR: unknown command, enter 'help' for more options\r\n".into()
            }),
            Request::ByteCounts => crate::mgmt::reply::bytecount_lines(self),
        };
        // The connection may have given up waiting; nothing to do then.
        let _ = req.reply.try_send(text);
        self.flush();
    }

    fn write_persist(&mut self) {
        let Some((path, every)) = &self.persist else {
            return;
        };
        if every.is_zero() {
            return; // seconds = 0: the file is read-only for OpenVPN too
        }
        let text = crate::pool::persist::render(self.core.pool());
        if let Err(e) = crate::pool::persist::write_atomic(path, &text) {
            tracing::warn!(path = %path.display(), "ifconfig-pool-persist not written: {e}");
        }
    }
}

/// The control thread answers management commands from the state it owns.
impl ServerState for Control {
    fn snapshot(&mut self) -> StatusSnapshot {
        let now_unix = unix_now();
        let now_ms = self.clock.ms(Instant::now());
        let mut clients: Vec<ClientRow> = self
            .core
            .peers()
            .map(|up| {
                let peer = self.peers.get(up.peer_id);
                let stat = |f: fn(&Peer) -> &std::sync::atomic::AtomicU64| {
                    peer.as_deref().map_or(0, |p| f(p).load(Ordering::Relaxed))
                };
                let idle = now_ms.saturating_sub(stat(|p| &p.stats.last_rx_ms)) / 1000;
                let last_ref = now_unix.saturating_sub(idle).max(up.connected_unix);
                let mut iroutes: Vec<IpNet> = up.iroutes.iter().map(|n| IpNet::V4(*n)).collect();
                iroutes.extend(up.iroutes_v6.iter().map(|n| IpNet::V6(*n)));
                ClientRow {
                    common_name: up.common_name.clone(),
                    real: up.remote,
                    v4: up.v4.map(|v| v.addr()),
                    v6: up.v6.map(|v| v.addr),
                    iroutes,
                    bytes_in: stat(|p| &p.stats.bytes_in),
                    bytes_out: stat(|p| &p.stats.bytes_out),
                    connected_since: Stamp::local(up.connected_unix),
                    last_ref: Stamp::local(last_ref),
                    username: None,
                    client_id: up.client_id,
                    peer_id: up.peer_id.0,
                    cipher: up.cipher.name().to_string(),
                }
            })
            .collect();
        clients.sort_by_key(|c| c.client_id);
        StatusSnapshot {
            title: self.title.clone(),
            now: Stamp::local(now_unix),
            clients,
        }
    }

    fn default_status_version(&self) -> StatusVersion {
        self.status_version
    }

    fn load_stats(&self) -> LoadStats {
        let (mut bytes_in, mut bytes_out) = self.retired_bytes;
        for p in self.peers.iter() {
            bytes_in += p.stats.bytes_in.load(Ordering::Relaxed);
            bytes_out += p.stats.bytes_out.load(Ordering::Relaxed);
        }
        LoadStats {
            nclients: self.core.peers().count(),
            bytes_in,
            bytes_out,
        }
    }

    fn kill_by_cn(&mut self, cn: &str) -> usize {
        let ids = self.core.find_peers(|p| p.common_name == cn);
        let now = Instant::now();
        for &id in &ids {
            // Silent, like OpenVPN's `kill`: the client notices by ping-restart.
            self.core.kill_peer(
                now,
                id,
                None,
                CloseReason::Local(format!("management: kill {cn}")),
            );
        }
        ids.len()
    }

    fn kill_by_addr(&mut self, addr: SocketAddr) -> usize {
        let addr = udp::normalize(addr);
        let ids = self.core.find_peers(|p| udp::normalize(p.remote) == addr);
        let now = Instant::now();
        for &id in &ids {
            self.core.kill_peer(
                now,
                id,
                None,
                CloseReason::Local(format!("management: kill {addr}")),
            );
        }
        ids.len()
    }

    fn client_kill(&mut self, cid: u64, message: &str) -> bool {
        let Some(id) = self
            .core
            .find_peers(|p| p.client_id == cid)
            .first()
            .copied()
        else {
            return false;
        };
        let reason = CloseReason::Local(format!("management: client-kill {cid}"));
        self.core
            .kill_peer(Instant::now(), id, Some(message), reason);
        true
    }

    fn byte_counts(&mut self) -> Vec<(u64, u64, u64)> {
        let mut v: Vec<(u64, u64, u64)> = self
            .core
            .peers()
            .map(|up| {
                let p = self.peers.get(up.peer_id);
                let get = |f: fn(&Peer) -> u64| p.as_deref().map_or(0, f);
                (
                    up.client_id,
                    get(|p| p.stats.bytes_in.load(Ordering::Relaxed)),
                    get(|p| p.stats.bytes_out.load(Ordering::Relaxed)),
                )
            })
            .collect();
        v.sort_unstable();
        v
    }

    fn drop_counters(&self) -> Vec<(&'static str, u64)> {
        let c = &self.core.stats;
        forward::Drop::NAMES
            .iter()
            .copied()
            .zip(self.drops.snapshot())
            .chain([
                ("control_in_session", c.dropped_in_session),
                ("control_unauthenticated", c.dropped_unauthenticated),
                ("control_bad_cookie", c.dropped_bad_cookie),
                ("control_rate_limited", c.dropped_rate_limited),
            ])
            .collect()
    }
}
