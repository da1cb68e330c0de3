//! The typed, immutable result of loading a configuration ([`Config`]) and its parts.
//!
//! Everything here is already validated and macro-expanded: `server`/`server-ipv6`/`keepalive`
//! /`client` no longer exist, only what they expand to (OpenVPN 2.6 semantics). Key material is
//! held as text (read at load time), never as a path the data plane would have to open.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Which side fwd plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `mode server` + `tls-server` (what `server`/`server-ipv6` imply).
    Server,
    /// `pull` + `tls-client` (what `client` implies).
    Client,
}

/// UDP socket family (`proto udp|udp4|udp6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportProto {
    Udp4,
    Udp6,
    /// `proto udp`: dual stack (IPv6 socket accepting v4-mapped peers on a server).
    Udp,
}

impl TransportProto {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportProto::Udp4 => "udp4",
            TransportProto::Udp6 => "udp6",
            TransportProto::Udp => "udp",
        }
    }
}

/// One `remote host [port] [proto]`; the port is resolved (remote's own, else rport/port, else 1194).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub host: String,
    pub port: u16,
    pub proto: Option<TransportProto>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Net30,
    P2p,
    Subnet,
}

impl Topology {
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Net30 => "net30",
            Topology::P2p => "p2p",
            Topology::Subnet => "subnet",
        }
    }
}

/// `ifconfig LOCAL REMOTE_OR_NETMASK`: second value is the peer (net30/p2p) or netmask (subnet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfconfigV4 {
    pub local: Ipv4Addr,
    pub remote_netmask: Ipv4Addr,
}

/// `ifconfig-ipv6 LOCAL/BITS REMOTE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfconfigV6 {
    /// Server (or p2p) tun address with the tunnel prefix length, e.g. `fd00:8::1/64`.
    pub local: Ipv6Net,
    /// The "remote": gateway for `route-ipv6` and the pushed remote for clients.
    pub remote: Ipv6Addr,
}

/// `ifconfig-pool START END [NETMASK]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolV4Spec {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub netmask: Option<Ipv4Addr>,
}

/// `ifconfig-ipv6-pool BASE/BITS` (BITS only sizes the pool; see server-ipv6.md 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolV6Spec {
    pub base: Ipv6Addr,
    pub prefix_len: u8,
}

impl PoolV6Spec {
    /// First address actually handed out (host-part-zero rule) and number of addresses,
    /// per OpenVPN 2.6 pool.c.
    pub fn first_and_size(&self) -> (Ipv6Addr, u64) {
        let base = u128::from(self.base);
        let host_bits = 128u32.saturating_sub(u32::from(self.prefix_len));
        let mut low = base as u32;
        if host_bits < 32 {
            low &= (1u32 << host_bits).wrapping_sub(1);
        }
        let (first, offset) = if low == 0 {
            (base.wrapping_add(1), 1u64)
        } else {
            (base, 0)
        };
        let size = if self.prefix_len >= 112 {
            let hostpart = if host_bits < 32 {
                u64::from(base as u32 & ((1u32 << host_bits).wrapping_sub(1)))
            } else {
                u64::from(base as u32)
            };
            (1u64 << host_bits).saturating_sub(hostpart.max(offset))
        } else {
            65536
        };
        (Ipv6Addr::from(first), size)
    }
}

/// `route NETWORK [NETMASK [GATEWAY [METRIC]]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteV4 {
    /// As written (host bits are kept, like OpenVPN; a warning is given).
    pub net: Ipv4Net,
    pub gateway: Option<RouteGatewayV4>,
    pub metric: Option<u32>,
}

/// Gateway field of `route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteGatewayV4 {
    Addr(Ipv4Addr),
    VpnGateway,
    NetGateway,
    RemoteHost,
}

/// `route-ipv6 PREFIX/BITS [GATEWAY [METRIC]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteV6 {
    pub net: Ipv6Net,
    pub gateway: Option<Ipv6Addr>,
    pub metric: Option<u32>,
}

/// `route-gateway GW|dhcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGateway {
    Addr(Ipv4Addr),
    Dhcp,
}

/// Where key material came from (for rendering only; the text is what counts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaterialOrigin {
    File(PathBuf),
    Inline,
}

/// Key/cert text loaded at config time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pem {
    pub text: String,
    pub origin: MaterialOrigin,
}

/// `remote-cert-tls client|server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    Client,
    Server,
}

/// `verify-x509-name NAME [subject|name|name-prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyX509Name {
    pub name: String,
    pub kind: X509NameKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X509NameKind {
    Subject,
    Name,
    NamePrefix,
}

/// `dh FILE|none`; fwd negotiates ECDHE only (rustls), DH params are read but unused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhSpec {
    None,
    Params(Pem),
}

/// TLS material: all present where the role requires them (checked at load).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsMaterial {
    pub ca: Option<Pem>,
    pub cert: Option<Pem>,
    pub key: Option<Pem>,
    pub extra_certs: Option<Pem>,
    pub dh: Option<DhSpec>,
    pub crl: Option<Pem>,
    pub remote_cert_tls: Option<CertUsage>,
    pub verify_x509_name: Option<VerifyX509Name>,
    pub tls_version_min: Option<String>,
}

/// Control-channel wrapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlWrapSpec {
    /// `tls-auth KEY [DIRECTION]` (+ `key-direction`), HMAC digest from `auth`.
    TlsAuth {
        key: Pem,
        direction: Option<u8>,
        auth: String,
    },
    /// `tls-crypt KEY`.
    TlsCrypt { key: Pem },
}

/// `replay-window N [T]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    pub size: u32,
    pub seconds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFilterAction {
    Accept,
    Ignore,
    Reject,
}

impl PullFilterAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PullFilterAction::Accept => "accept",
            PullFilterAction::Ignore => "ignore",
            PullFilterAction::Reject => "reject",
        }
    }
}

/// `pull-filter accept|ignore|reject "text"` (prefix match on pushed options, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullFilter {
    pub action: PullFilterAction,
    pub text: String,
}

/// `redirect-gateway [flags…]` (flags validated against OpenVPN 2.6's list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectGateway {
    pub flags: Vec<String>,
}

/// `resolv-retry N|infinite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvRetry {
    Infinite,
    Seconds(u32),
}

/// `auth-user-pass [FILE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthUserPassSource {
    Prompt,
    File(PathBuf),
}

/// `auth-user-pass-verify CMD via-env|via-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUserPassVerify {
    pub command: String,
    pub via_file: bool,
}

/// Fully expanded configuration. Construct only through `load_file`/`load_args`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub role: Role,
    /// `threads N` (fwd): number of data-plane shards; None = one per core.
    pub threads: Option<usize>,
    /// `offload on|off` (fwd): tun TSO/checksum offload, UDP GSO/GRO and coalescing where
    /// the kernel has them (default on).
    pub offload: bool,
    /// `io auto|uring|epoll` (fwd): the data-plane driver.
    pub io: IoDriver,
    pub dev: String,
    pub proto: TransportProto,
    pub local: Option<IpAddr>,
    /// Local port (`port`/`lport`, default 1194).
    pub port: u16,
    pub remotes: Vec<Remote>,
    pub remote_random: bool,
    pub nobind: bool,
    pub float: bool,
    pub resolv_retry: Option<ResolvRetry>,
    pub connect_retry: Option<(u32, Option<u32>)>,
    pub server_poll_timeout: Option<u32>,
    pub topology: Topology,
    pub ifconfig: Option<IfconfigV4>,
    pub ifconfig_ipv6: Option<IfconfigV6>,
    pub pool_v4: Option<PoolV4Spec>,
    pub pool_v6: Option<PoolV6Spec>,
    /// `ifconfig-pool-persist FILE [SECONDS]` (default 600).
    pub pool_persist: Option<(PathBuf, u32)>,
    pub route_gateway: Option<RouteGateway>,
    pub routes: Vec<RouteV4>,
    pub routes_v6: Vec<RouteV6>,
    /// Global push list (option text), user entries then macro-generated ones.
    pub push: Vec<String>,
    pub ccd_dir: Option<PathBuf>,
    pub ccd_exclusive: bool,
    pub client_to_client: bool,
    pub duplicate_cn: bool,
    pub max_clients: u32,
    /// `connect-freq-initial N S`: at most N stateless (cookie) replies per S seconds
    /// (OpenVPN 2.6 default 100 per 10).
    pub connect_freq_initial: (u32, u32),
    pub ping: Option<u32>,
    pub ping_restart: Option<u32>,
    pub ping_exit: Option<u32>,
    pub hand_window: u32,
    pub tran_window: u32,
    pub tls_timeout: u32,
    pub tls: TlsMaterial,
    pub control_wrap: Option<ControlWrapSpec>,
    pub data_ciphers: Vec<String>,
    pub data_ciphers_fallback: Option<String>,
    /// Legacy `cipher` (only meaningful as fallback / for pre-2.4 peers).
    pub cipher: Option<String>,
    /// `auth` digest (tls-auth HMAC; CBC data channel), default SHA1.
    pub auth: String,
    pub reneg_sec: u32,
    pub reneg_bytes: Option<u64>,
    pub reneg_pkts: Option<u64>,
    pub replay_window: ReplayWindow,
    pub tun_mtu: u32,
    /// `mssfix N [mtu|fixed]`: None = OpenVPN's default (also `mssfix` with no argument),
    /// N = 0 disables clamping.
    pub mssfix: Option<Mssfix>,
    pub txqueuelen: Option<u32>,
    pub tun_ipv6: bool,
    /// `status FILE [SECONDS]` (default 60).
    pub status: Option<(PathBuf, u32)>,
    pub status_version: u8,
    pub management: Option<(IpAddr, u16)>,
    /// `explicit-exit-notify [N]`: 0 = off.
    pub explicit_exit_notify: u32,
    /// fwd-only `force-prf`: use the TLS 1.0 PRF key derivation even if EKM is available.
    pub force_prf: bool,
    pub pull: bool,
    pub pull_filters: Vec<PullFilter>,
    pub route_nopull: bool,
    pub redirect_gateway: Option<RedirectGateway>,
    pub verb: u32,
    pub mute: u32,
    pub user: Option<String>,
    pub group: Option<String>,
    pub persist_key: bool,
    pub persist_tun: bool,
    pub setenv: Vec<(String, String)>,
    pub script_security: u8,
    pub auth_user_pass_verify: Option<AuthUserPassVerify>,
    pub auth_user_pass: Option<AuthUserPassSource>,
    pub sndbuf: Option<u32>,
    pub rcvbuf: Option<u32>,
    pub ignore_unknown_option: Vec<String>,
}

impl Config {
    /// Tunnel IPv6 subnet of the server (its `ifconfig-ipv6` network).
    pub fn tunnel_net_v6(&self) -> Option<Ipv6Net> {
        self.ifconfig_ipv6.map(|i| i.local.trunc())
    }
}

/// `mssfix N [mtu|fixed]`: the bound N and what it bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mssfix {
    pub value: u32,
    pub flag: MssfixFlag,
}

/// The second argument of `mssfix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssfixFlag {
    /// None: N bounds the OpenVPN packet (data-channel header, AEAD tag and payload).
    Payload,
    /// `mtu`: N bounds the whole underlay IP datagram, IP and UDP headers included.
    Mtu,
    /// `fixed`: N is the inner IPv4 packet size, MSS = N - 40, no overhead counted.
    Fixed,
}

impl MssfixFlag {
    /// The config syntax (empty for [`MssfixFlag::Payload`]).
    pub fn as_str(self) -> &'static str {
        match self {
            MssfixFlag::Payload => "",
            MssfixFlag::Mtu => "mtu",
            MssfixFlag::Fixed => "fixed",
        }
    }
}

/// `io` (fwd): which data-plane driver the shards use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoDriver {
    /// io_uring where the kernel allows it, else the portable driver.
    #[default]
    Auto,
    /// io_uring only: fail at start if it is unavailable.
    Uring,
    /// The portable readiness driver (non-blocking syscalls in batches).
    Epoll,
}
