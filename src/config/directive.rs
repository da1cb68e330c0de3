//! Typed directives: applies one lexed [`Line`] of a main config (file or command line) to a
//! [`Builder`], parsing every argument into its type immediately (bad values are errors here,
//! never later). Single-valued options follow OpenVPN: the last occurrence wins, so the
//! command line can override a file. Lists (remote, route, push, …) accumulate in order.

use super::args::*;
use super::error::{ErrorKind, Location, Warning};
use super::lexer::{Line, INLINE_MARKER};
use super::model::*;
use super::options;
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Raw `server NETWORK NETMASK [nopool]`.
#[derive(Debug, Clone)]
pub struct ServerMacro {
    pub network: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub prefix_len: u8,
    pub nopool: bool,
}

/// Everything parsed so far, before macro expansion and cross-option checks.
#[derive(Debug, Default)]
pub struct Builder {
    pub seen: BTreeMap<String, Location>,
    pub mode_server: Option<bool>,
    pub server: Option<ServerMacro>,
    pub server_ipv6: Option<Ipv6Net>,
    pub client: bool,
    pub tls_server: bool,
    pub tls_client: bool,
    pub pull: bool,
    pub threads: Option<usize>,
    pub offload: Option<bool>,
    pub io: Option<IoDriver>,
    pub force_prf: bool,
    pub dev: Option<String>,
    pub dev_type: Option<String>,
    pub topology: Option<Topology>,
    pub tun_ipv6: bool,
    pub tun_mtu: Option<u32>,
    pub mssfix: Option<Mssfix>,
    pub txqueuelen: Option<u32>,
    pub proto: Option<TransportProto>,
    pub lport: Option<u16>,
    pub rport: Option<u16>,
    pub local: Option<IpAddr>,
    pub remotes: Vec<(String, Option<u16>, Option<TransportProto>)>,
    pub remote_random: bool,
    pub nobind: bool,
    pub float: bool,
    pub resolv_retry: Option<ResolvRetry>,
    pub connect_retry: Option<(u32, Option<u32>)>,
    pub server_poll_timeout: Option<u32>,
    pub sndbuf: Option<u32>,
    pub rcvbuf: Option<u32>,
    pub ifconfig: Option<IfconfigV4>,
    pub ifconfig_ipv6: Option<IfconfigV6>,
    pub pool_v4: Option<PoolV4Spec>,
    pub pool_v6: Option<PoolV6Spec>,
    pub pool_persist: Option<(PathBuf, u32)>,
    pub routes: Vec<(RouteV4, Location)>,
    pub routes_v6: Vec<(RouteV6, Location)>,
    pub route_gateway: Option<RouteGateway>,
    pub route_nopull: bool,
    pub redirect_gateway: Option<RedirectGateway>,
    pub push: Vec<(String, Option<Location>)>,
    pub pull_filters: Vec<PullFilter>,
    pub ccd_dir: Option<PathBuf>,
    pub ccd_exclusive: bool,
    pub client_to_client: bool,
    pub duplicate_cn: bool,
    pub max_clients: Option<u32>,
    /// `connect-freq-initial N S`.
    pub connect_freq_initial: Option<(u32, u32)>,
    pub keepalive: Option<(u32, u32)>,
    pub ping: Option<u32>,
    pub ping_restart: Option<u32>,
    pub ping_exit: Option<u32>,
    pub hand_window: Option<u32>,
    pub tran_window: Option<u32>,
    pub tls_timeout: Option<u32>,
    pub reneg_sec: Option<u32>,
    pub reneg_bytes: Option<u64>,
    pub reneg_pkts: Option<u64>,
    pub explicit_exit_notify: Option<u32>,
    pub tls: TlsMaterial,
    pub tls_auth: Option<(Pem, Option<u8>)>,
    pub tls_crypt: Option<Pem>,
    pub key_direction: Option<u8>,
    pub data_ciphers: Option<Vec<String>>,
    pub data_ciphers_fallback: Option<String>,
    pub cipher: Option<String>,
    pub auth: Option<String>,
    pub replay_window: Option<ReplayWindow>,
    pub status: Option<(PathBuf, u32)>,
    pub status_version: Option<u8>,
    pub management: Option<(IpAddr, u16)>,
    pub verb: Option<u32>,
    pub mute: Option<u32>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub persist_key: bool,
    pub persist_tun: bool,
    pub setenv: Vec<(String, String)>,
    pub script_security: Option<u8>,
    pub auth_user_pass_verify: Option<AuthUserPassVerify>,
    pub auth_user_pass: Option<AuthUserPassSource>,
    pub ignore_unknown_option: Vec<String>,
}

/// Per-line environment: where relative paths resolve, and a warning sink.
pub struct Env<'a> {
    pub base_dir: &'a Path,
    pub warnings: &'a mut Vec<Warning>,
}

impl Env<'_> {
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() || self.base_dir.as_os_str().is_empty() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Key/cert material: inline block or file read now, so later stages never see paths.
    pub fn material(&self, line: &Line, arg: &str) -> Result<Pem, ErrorKind> {
        if arg == INLINE_MARKER {
            return match &line.inline {
                Some(t) => Ok(Pem {
                    text: t.clone(),
                    origin: MaterialOrigin::Inline,
                }),
                None => Err(ErrorKind::Invalid(
                    "`[inline]` is only valid for a <tag>…</tag> block".into(),
                )),
            };
        }
        let path = self.resolve(arg);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Pem {
                text,
                origin: MaterialOrigin::File(path),
            }),
            Err(e) => Err(ErrorKind::Io {
                path,
                reason: e.to_string(),
            }),
        }
    }

    fn warn(&mut self, line: &Line, msg: impl Into<String>) {
        self.warnings
            .push(Warning::new(line.location.clone(), line.name(), msg));
    }
}

fn need_pem(p: &Pem, what: &str, marker: &str) -> Result<(), ErrorKind> {
    if p.text.contains(marker) {
        Ok(())
    } else {
        Err(ErrorKind::Invalid(format!(
            "{} does not contain a PEM {what} (`{marker}`)",
            describe(&p.origin)
        )))
    }
}

fn describe(o: &MaterialOrigin) -> String {
    match o {
        MaterialOrigin::File(p) => p.display().to_string(),
        MaterialOrigin::Inline => "inline block".to_string(),
    }
}

/// Parse and validate an OpenVPN static key file (`-----BEGIN OpenVPN Static key V1-----`,
/// 256 bytes hex). Returns the key bytes.
pub fn parse_static_key(text: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN OpenVPN Static key V1-----";
    const END: &str = "-----END OpenVPN Static key V1-----";
    let start = text
        .find(BEGIN)
        .ok_or_else(|| format!("missing `{BEGIN}`"))?;
    let rest = text.get(start + BEGIN.len()..).unwrap_or("");
    let end = rest.find(END).ok_or_else(|| format!("missing `{END}`"))?;
    let body = rest.get(..end).unwrap_or("");
    let mut out = Vec::with_capacity(256);
    let mut hi: Option<u8> = None;
    for ch in body.chars().filter(|c| !c.is_whitespace()) {
        let v = ch
            .to_digit(16)
            .ok_or_else(|| format!("invalid character `{ch}` in static key"))?
            as u8;
        match hi.take() {
            None => hi = Some(v),
            Some(h) => out.push((h << 4) | v),
        }
    }
    if hi.is_some() || out.len() != 256 {
        return Err(format!(
            "static key must contain 256 bytes (512 hex digits), found {} bytes",
            out.len()
        ));
    }
    Ok(out)
}

fn static_key(env: &Env<'_>, line: &Line, arg: &str) -> Result<Pem, ErrorKind> {
    let p = env.material(line, arg)?;
    parse_static_key(&p.text)
        .map_err(|e| ErrorKind::Invalid(format!("{}: {e}", describe(&p.origin))))?;
    Ok(p)
}

pub fn proto_arg(s: &str) -> Result<TransportProto, ErrorKind> {
    match s {
        "udp" => Ok(TransportProto::Udp),
        "udp4" => Ok(TransportProto::Udp4),
        "udp6" => Ok(TransportProto::Udp6),
        "tcp" | "tcp4" | "tcp6" | "tcp-server" | "tcp-client" | "tcp4-server" | "tcp6-server"
        | "tcp4-client" | "tcp6-client" => Err(ErrorKind::Unsupported(format!(
            "proto {s}: fwd only implements UDP transport"
        ))),
        _ => Err(ErrorKind::Invalid(format!(
            "unknown protocol `{s}` (use udp, udp4 or udp6)"
        ))),
    }
}

pub const KNOWN_CIPHERS: &[&str] = &[
    "AES-128-GCM",
    "AES-192-GCM",
    "AES-256-GCM",
    "CHACHA20-POLY1305",
    "AES-128-CBC",
    "AES-192-CBC",
    "AES-256-CBC",
    "BF-CBC",
    "none",
];

pub const KNOWN_DIGESTS: &[&str] = &[
    "SHA1", "SHA224", "SHA256", "SHA384", "SHA512", "MD5", "none",
];

fn cipher_name(s: &str) -> Result<String, ErrorKind> {
    if s.is_empty() {
        return Err(ErrorKind::Invalid("empty cipher name".into()));
    }
    // OpenVPN matches cipher names case-insensitively and prints them upper case.
    let up = s.to_ascii_uppercase();
    Ok(KNOWN_CIPHERS
        .iter()
        .find(|c| c.eq_ignore_ascii_case(&up))
        .map(|c| c.to_string())
        .unwrap_or(up))
}

const REDIRECT_FLAGS: &[&str] = &[
    "local",
    "autolocal",
    "def1",
    "bypass-dhcp",
    "bypass-dns",
    "block-local",
    "ipv6",
    "!ipv4",
];

fn u8_range(s: &str, what: &str, lo: u8, hi: u8) -> Result<u8, ErrorKind> {
    match s.parse::<u8>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(ErrorKind::Invalid(format!(
            "{what} must be {lo}..{hi}, got `{s}`"
        ))),
    }
}

fn positive(v: u32, what: &str) -> Result<u32, ErrorKind> {
    if v == 0 {
        Err(ErrorKind::Invalid(format!("{what} must be greater than 0")))
    } else {
        Ok(v)
    }
}

impl Builder {
    /// Apply one main-config directive. `config`, `cd`, `ignore-unknown-option` and the
    /// unknown-option policy are handled by the loader before this is called.
    pub fn apply(&mut self, line: &Line, env: &mut Env<'_>) -> Result<(), ErrorKind> {
        let name = line.name();
        if let Some(doc) = options::find(name) {
            if doc.ccd_only {
                return Err(ErrorKind::NotAllowed(
                    "only valid in a client-config-dir file".into(),
                ));
            }
        }
        self.apply_inner(line, env)?;
        self.seen.insert(name.to_string(), line.location.clone());
        Ok(())
    }

    fn apply_inner(&mut self, line: &Line, env: &mut Env<'_>) -> Result<(), ErrorKind> {
        let name = line.name();
        if let Some(why) = options::unsupported_reason(name) {
            return Err(ErrorKind::Unsupported(why.into()));
        }
        match name {
            "mode" => {
                let a = nargs(line, 1, 1)?;
                self.mode_server = Some(match arg(a, 0)? {
                    "server" => true,
                    "p2p" => false,
                    o => {
                        return Err(ErrorKind::Invalid(format!(
                            "unknown mode `{o}` (server|p2p)"
                        )))
                    }
                });
            }
            "server" => {
                let a = nargs(line, 2, 3)?;
                let network = ipv4_arg(arg(a, 0)?, "network")?;
                let (netmask, prefix_len) = netmask_arg(arg(a, 1)?)?;
                let nopool = match a.get(2).map(String::as_str) {
                    None => false,
                    Some("nopool") => true,
                    Some(o) => {
                        return Err(ErrorKind::Invalid(format!(
                            "third argument must be `nopool`, got `{o}`"
                        )))
                    }
                };
                if u32::from(network) & !u32::from(netmask) != 0 {
                    return Err(ErrorKind::Invalid(format!(
                        "network/netmask combination is invalid: {network} has host bits set for {netmask}"
                    )));
                }
                if prefix_len < 16 {
                    return Err(ErrorKind::Invalid(format!(
                        "netmask {netmask} is too large: at most 65536 addresses (/16)"
                    )));
                }
                if prefix_len > 29 {
                    return Err(ErrorKind::Invalid(format!(
                        "with dev tun the subnet must be /29 (255.255.255.248) or larger, got /{prefix_len}"
                    )));
                }
                self.server = Some(ServerMacro {
                    network,
                    netmask,
                    prefix_len,
                    nopool,
                });
            }
            "server-ipv6" => {
                let a = nargs(line, 1, 1)?;
                let s = arg(a, 0)?;
                if !s.contains('/') {
                    return Err(ErrorKind::Invalid(format!("`{s}`: expected PREFIX/BITS")));
                }
                let net = ipv6_net_arg(s)?;
                if !(64..=124).contains(&net.prefix_len()) {
                    return Err(ErrorKind::Invalid(format!(
                        "prefix length must be between 64 and 124, got /{}",
                        net.prefix_len()
                    )));
                }
                if net.addr() != net.network() {
                    env.warn(line, format!(
                        "{net} has host bits set; like OpenVPN the server takes {}+1 and the pool starts at {}+0x1000",
                        net.addr(), net.addr()
                    ));
                }
                self.server_ipv6 = Some(net);
            }
            "client" => self.client = bool_flag(line)?,
            "tls-server" => self.tls_server = bool_flag(line)?,
            "tls-client" => self.tls_client = bool_flag(line)?,
            "pull" => self.pull = bool_flag(line)?,
            "threads" => {
                let a = nargs(line, 1, 1)?;
                let n = u32_arg(arg(a, 0)?, "threads")?;
                if n == 0 || n > 1024 {
                    return Err(ErrorKind::Invalid(format!(
                        "threads must be 1..1024, got {n}"
                    )));
                }
                self.threads = Some(n as usize);
            }
            "offload" => {
                let a = nargs(line, 1, 1)?;
                self.offload = Some(match arg(a, 0)? {
                    "on" => true,
                    "off" => false,
                    v => {
                        return Err(ErrorKind::Invalid(format!(
                            "offload must be on or off, got {v:?}"
                        )))
                    }
                });
            }
            "io" => {
                let a = nargs(line, 1, 1)?;
                self.io = Some(match arg(a, 0)? {
                    "auto" => IoDriver::Auto,
                    "uring" | "io_uring" => IoDriver::Uring,
                    "epoll" => IoDriver::Epoll,
                    v => {
                        return Err(ErrorKind::Invalid(format!(
                            "io must be auto, uring or epoll, got {v:?}"
                        )))
                    }
                });
            }
            "force-prf" => self.force_prf = bool_flag(line)?,
            "dev" => {
                let a = nargs(line, 1, 1)?;
                let d = arg(a, 0)?;
                if d.starts_with("tap") {
                    return Err(ErrorKind::Unsupported(
                        "dev tap: fwd implements routed tun mode only (layer 3); use dev tun"
                            .into(),
                    ));
                }
                if d.is_empty() || d.len() > 15 || d.contains(['/', ' ']) {
                    return Err(ErrorKind::Invalid(format!(
                        "`{d}` is not a valid interface name (1..15 characters, no `/`)"
                    )));
                }
                self.dev = Some(d.to_string());
            }
            "dev-type" => {
                let a = nargs(line, 1, 1)?;
                match arg(a, 0)? {
                    "tun" => self.dev_type = Some("tun".into()),
                    "tap" => {
                        return Err(ErrorKind::Unsupported(
                            "dev-type tap: fwd implements routed tun mode only (layer 3)".into(),
                        ))
                    }
                    o => return Err(ErrorKind::Invalid(format!("unknown dev-type `{o}` (tun)"))),
                }
            }
            "topology" => {
                let a = nargs(line, 1, 1)?;
                self.topology = Some(match arg(a, 0)? {
                    "net30" => Topology::Net30,
                    "p2p" => Topology::P2p,
                    "subnet" => Topology::Subnet,
                    o => {
                        return Err(ErrorKind::Invalid(format!(
                            "unknown topology `{o}` (net30|p2p|subnet)"
                        )))
                    }
                });
            }
            "tun-ipv6" => self.tun_ipv6 = bool_flag(line)?,
            "tun-mtu" => {
                let a = nargs(line, 1, 1)?;
                let v = u32_arg(arg(a, 0)?, "tun-mtu")?;
                if !(576..=65535).contains(&v) {
                    return Err(ErrorKind::Invalid(format!(
                        "tun-mtu must be 576..65535, got {v}"
                    )));
                }
                self.tun_mtu = Some(v);
            }
            "mssfix" => {
                let a = nargs(line, 0, 2)?;
                let flag = match a.get(1).map(String::as_str) {
                    None => MssfixFlag::Payload,
                    Some("mtu") => MssfixFlag::Mtu,
                    Some("fixed") => MssfixFlag::Fixed,
                    Some(m) => {
                        return Err(ErrorKind::Invalid(format!(
                            "second argument must be `mtu` or `fixed`, got `{m}`"
                        )))
                    }
                };
                // With no argument OpenVPN keeps its default (options.c: mssfix_default).
                self.mssfix = match a.first() {
                    Some(v) => Some(Mssfix {
                        value: u32_arg(v, "mssfix")?,
                        flag,
                    }),
                    None => None,
                };
            }
            "txqueuelen" => self.txqueuelen = Some(self.one_u32(line, "txqueuelen")?),
            "proto" => {
                let a = nargs(line, 1, 1)?;
                self.proto = Some(proto_arg(arg(a, 0)?)?);
            }
            "port" => {
                let a = nargs(line, 1, 1)?;
                let p = port_arg(arg(a, 0)?)?;
                self.lport = Some(p);
                self.rport = Some(p);
            }
            "lport" => {
                let a = nargs(line, 1, 1)?;
                self.lport = Some(port_arg(arg(a, 0)?)?);
            }
            "rport" => {
                let a = nargs(line, 1, 1)?;
                self.rport = Some(port_arg(arg(a, 0)?)?);
            }
            "local" => {
                let a = nargs(line, 1, 1)?;
                let s = arg(a, 0)?;
                self.local = Some(s.parse::<IpAddr>().map_err(|_| {
                    ErrorKind::Invalid(format!(
                        "`{s}` is not an IP address (fwd does not resolve names for `local`)"
                    ))
                })?);
            }
            "remote" => {
                let a = nargs(line, 1, 3)?;
                let host = arg(a, 0)?;
                if host.is_empty() || host.starts_with('-') {
                    return Err(ErrorKind::Invalid(format!(
                        "`{host}` is not a host name or address"
                    )));
                }
                let port = a.get(1).map(|p| port_arg(p)).transpose()?;
                let proto = a.get(2).map(|p| proto_arg(p)).transpose()?;
                self.remotes.push((host.to_string(), port, proto));
            }
            "remote-random" => self.remote_random = bool_flag(line)?,
            "nobind" => self.nobind = bool_flag(line)?,
            "float" => self.float = bool_flag(line)?,
            "resolv-retry" => {
                let a = nargs(line, 1, 1)?;
                let s = arg(a, 0)?;
                self.resolv_retry = Some(if s == "infinite" {
                    ResolvRetry::Infinite
                } else {
                    ResolvRetry::Seconds(u32_arg(s, "resolv-retry")?)
                });
            }
            "connect-retry" => {
                let a = nargs(line, 1, 2)?;
                let n = u32_arg(arg(a, 0)?, "connect-retry")?;
                let max = a
                    .get(1)
                    .map(|m| u32_arg(m, "connect-retry max"))
                    .transpose()?;
                self.connect_retry = Some((n, max));
            }
            "server-poll-timeout" => {
                self.server_poll_timeout = Some(self.one_u32(line, "server-poll-timeout")?)
            }
            "sndbuf" => self.sndbuf = Some(self.one_u32(line, "sndbuf")?),
            "rcvbuf" => self.rcvbuf = Some(self.one_u32(line, "rcvbuf")?),
            "ifconfig" => {
                let a = nargs(line, 2, 2)?;
                self.ifconfig = Some(IfconfigV4 {
                    local: ipv4_arg(arg(a, 0)?, "local address")?,
                    remote_netmask: ipv4_arg(arg(a, 1)?, "remote address/netmask")?,
                });
            }
            "ifconfig-ipv6" => {
                let a = nargs(line, 2, 2)?;
                let local = ipv6_net_arg(arg(a, 0)?)?;
                if !(64..=124).contains(&local.prefix_len()) {
                    // OpenVPN 2.6 accepts any length here, but clients reject pushes outside
                    // 64..124 and Linux tun needs a sensible prefix; be strict.
                    return Err(ErrorKind::Invalid(format!(
                        "prefix length must be between 64 and 124, got /{}",
                        local.prefix_len()
                    )));
                }
                let remote = ipv6_arg(arg(a, 1)?, "remote")?;
                self.ifconfig_ipv6 = Some(IfconfigV6 { local, remote });
            }
            "ifconfig-pool" => {
                let a = nargs(line, 2, 3)?;
                let start = ipv4_arg(arg(a, 0)?, "start")?;
                let end = ipv4_arg(arg(a, 1)?, "end")?;
                if u32::from(start) > u32::from(end) {
                    return Err(ErrorKind::Invalid(format!(
                        "start {start} is above end {end}"
                    )));
                }
                if u32::from(end) - u32::from(start) >= 65536 {
                    return Err(ErrorKind::Invalid(
                        "pool is larger than 65536 addresses".into(),
                    ));
                }
                let netmask = a.get(2).map(|m| netmask_arg(m).map(|x| x.0)).transpose()?;
                self.pool_v4 = Some(PoolV4Spec {
                    start,
                    end,
                    netmask,
                });
            }
            "ifconfig-ipv6-pool" => {
                let a = nargs(line, 1, 1)?;
                let s = arg(a, 0)?;
                if !s.contains('/') {
                    return Err(ErrorKind::Invalid(format!("`{s}`: expected BASE/BITS")));
                }
                let n = ipv6_net_arg(s)?;
                if !(64..=124).contains(&n.prefix_len()) {
                    return Err(ErrorKind::Invalid(format!(
                        "prefix length must be between 64 and 124, got /{}",
                        n.prefix_len()
                    )));
                }
                self.pool_v6 = Some(PoolV6Spec {
                    base: n.addr(),
                    prefix_len: n.prefix_len(),
                });
            }
            "ifconfig-pool-persist" => {
                let a = nargs(line, 1, 2)?;
                let secs = match a.get(1) {
                    Some(s) => u32_arg(s, "seconds")?,
                    None => 600,
                };
                self.pool_persist = Some((env.resolve(arg(a, 0)?), secs));
            }
            "route" => {
                let a = nargs(line, 1, 4)?;
                let net = ipv4_net_args(
                    arg(a, 0)?,
                    a.get(1).map(String::as_str).filter(|m| *m != "default"),
                )?;
                if net.addr() != net.network() {
                    env.warn(
                        line,
                        format!("{} has host bits set for /{}", net.addr(), net.prefix_len()),
                    );
                }
                let gateway = match a.get(2).map(String::as_str) {
                    None | Some("default") => None,
                    Some("vpn_gateway") => Some(RouteGatewayV4::VpnGateway),
                    Some("net_gateway") => Some(RouteGatewayV4::NetGateway),
                    Some("remote_host") => Some(RouteGatewayV4::RemoteHost),
                    Some(g) => Some(RouteGatewayV4::Addr(ipv4_arg(g, "gateway")?)),
                };
                let metric = match a.get(3).map(String::as_str) {
                    None | Some("default") => None,
                    Some(m) => Some(u32_arg(m, "metric")?),
                };
                self.routes.push((
                    RouteV4 {
                        net,
                        gateway,
                        metric,
                    },
                    line.location.clone(),
                ));
            }
            "route-ipv6" => {
                let a = nargs(line, 1, 3)?;
                let net = ipv6_net_arg(arg(a, 0)?)?;
                if net.addr() != net.network() {
                    env.warn(line, format!("{net} has host bits set"));
                }
                let gateway = a.get(1).map(|g| ipv6_arg(g, "gateway")).transpose()?;
                let metric = a.get(2).map(|m| u32_arg(m, "metric")).transpose()?;
                self.routes_v6.push((
                    RouteV6 {
                        net,
                        gateway,
                        metric,
                    },
                    line.location.clone(),
                ));
            }
            "route-gateway" => {
                let a = nargs(line, 1, 1)?;
                let s = arg(a, 0)?;
                self.route_gateway = Some(if s == "dhcp" {
                    RouteGateway::Dhcp
                } else {
                    RouteGateway::Addr(ipv4_arg(s, "gateway")?)
                });
            }
            "route-nopull" => self.route_nopull = bool_flag(line)?,
            "redirect-gateway" => {
                let a = nargs(line, 0, 8)?;
                for f in a {
                    if !REDIRECT_FLAGS.contains(&f.as_str()) {
                        return Err(ErrorKind::Invalid(format!(
                            "unknown flag `{f}` (known: {})",
                            REDIRECT_FLAGS.join(" ")
                        )));
                    }
                }
                self.redirect_gateway = Some(RedirectGateway { flags: a.to_vec() });
            }
            "push" => {
                let text = push_text(line)?;
                self.push.push((text, Some(line.location.clone())));
            }
            "pull-filter" => {
                let a = nargs(line, 2, 2)?;
                let action = match arg(a, 0)? {
                    "accept" => PullFilterAction::Accept,
                    "ignore" => PullFilterAction::Ignore,
                    "reject" => PullFilterAction::Reject,
                    o => {
                        return Err(ErrorKind::Invalid(format!(
                            "unknown action `{o}` (accept|ignore|reject)"
                        )))
                    }
                };
                self.pull_filters.push(PullFilter {
                    action,
                    text: arg(a, 1)?.to_string(),
                });
            }
            "client-config-dir" => {
                let a = nargs(line, 1, 1)?;
                self.ccd_dir = Some(env.resolve(arg(a, 0)?));
            }
            "ccd-exclusive" => self.ccd_exclusive = bool_flag(line)?,
            "client-to-client" => self.client_to_client = bool_flag(line)?,
            "duplicate-cn" => self.duplicate_cn = bool_flag(line)?,
            "max-clients" => {
                let v = self.one_u32(line, "max-clients")?;
                self.max_clients = Some(positive(v, "max-clients")?);
            }
            "connect-freq-initial" => {
                let a = nargs(line, 2, 2)?;
                let n = u32_arg(arg(a, 0)?, "connect-freq-initial count")?;
                let s = u32_arg(arg(a, 1)?, "connect-freq-initial seconds")?;
                self.connect_freq_initial = Some((n, positive(s, "connect-freq-initial seconds")?));
            }
            "keepalive" => {
                let a = nargs(line, 2, 2)?;
                let p = u32_arg(arg(a, 0)?, "ping interval")?;
                let t = u32_arg(arg(a, 1)?, "restart timeout")?;
                if p == 0 || t == 0 {
                    return Err(ErrorKind::Invalid("parameters must be > 0".into()));
                }
                if t < p.saturating_mul(2) {
                    return Err(ErrorKind::Invalid(format!(
                        "the restart timeout ({t}) must be at least twice the ping interval ({p}); recommended: keepalive 10 60"
                    )));
                }
                self.keepalive = Some((p, t));
            }
            "ping" => self.ping = Some(self.one_u32(line, "ping")?),
            "ping-restart" => self.ping_restart = Some(self.one_u32(line, "ping-restart")?),
            "ping-exit" => self.ping_exit = Some(self.one_u32(line, "ping-exit")?),
            "hand-window" => {
                let v = self.one_u32(line, "hand-window")?;
                self.hand_window = Some(positive(v, "hand-window")?);
            }
            "tran-window" => self.tran_window = Some(self.one_u32(line, "tran-window")?),
            "tls-timeout" => {
                let v = self.one_u32(line, "tls-timeout")?;
                self.tls_timeout = Some(positive(v, "tls-timeout")?);
            }
            "reneg-sec" => {
                // 2.6 accepts `reneg-sec MAX [MIN]`; fwd uses MAX.
                let a = nargs(line, 1, 2)?;
                self.reneg_sec = Some(u32_arg(arg(a, 0)?, "reneg-sec")?);
            }
            "reneg-bytes" => {
                let a = nargs(line, 1, 1)?;
                self.reneg_bytes = Some(u64_arg(arg(a, 0)?, "reneg-bytes")?);
            }
            "reneg-pkts" => {
                let a = nargs(line, 1, 1)?;
                self.reneg_pkts = Some(u64_arg(arg(a, 0)?, "reneg-pkts")?);
            }
            "explicit-exit-notify" => {
                let a = nargs(line, 0, 1)?;
                self.explicit_exit_notify = Some(match a.first() {
                    Some(v) => u32_arg(v, "explicit-exit-notify")?,
                    None => 1,
                });
            }
            "ca" => {
                let a = nargs(line, 1, 1)?;
                let p = env.material(line, arg(a, 0)?)?;
                need_pem(&p, "certificate", "-----BEGIN CERTIFICATE-----")?;
                self.tls.ca = Some(p);
            }
            "cert" => {
                let a = nargs(line, 1, 1)?;
                let p = env.material(line, arg(a, 0)?)?;
                need_pem(&p, "certificate", "-----BEGIN CERTIFICATE-----")?;
                self.tls.cert = Some(p);
            }
            "extra-certs" => {
                let a = nargs(line, 1, 1)?;
                let p = env.material(line, arg(a, 0)?)?;
                need_pem(&p, "certificate", "-----BEGIN CERTIFICATE-----")?;
                self.tls.extra_certs = Some(p);
            }
            "key" => {
                let a = nargs(line, 1, 1)?;
                let p = env.material(line, arg(a, 0)?)?;
                need_pem(&p, "private key", "PRIVATE KEY-----")?;
                self.tls.key = Some(p);
            }
            "dh" => {
                let a = nargs(line, 1, 1)?;
                let s = arg(a, 0)?;
                if s == "none" {
                    self.tls.dh = Some(DhSpec::None);
                } else {
                    let p = env.material(line, s)?;
                    need_pem(&p, "DH parameters", "-----BEGIN DH PARAMETERS-----")?;
                    env.warn(
                        line,
                        "fwd uses ECDHE only; DH parameters are not used (use `dh none`)",
                    );
                    self.tls.dh = Some(DhSpec::Params(p));
                }
            }
            "crl-verify" => {
                let a = nargs(line, 1, 2)?;
                if a.get(1).is_some() {
                    return Err(ErrorKind::Unsupported(
                        "crl-verify DIR dir (a directory of revoked serials) is not implemented; use a CRL file".into(),
                    ));
                }
                let p = env.material(line, arg(a, 0)?)?;
                need_pem(&p, "CRL", "-----BEGIN X509 CRL-----")?;
                self.tls.crl = Some(p);
            }
            "remote-cert-tls" => {
                let a = nargs(line, 1, 1)?;
                self.tls.remote_cert_tls = Some(match arg(a, 0)? {
                    "client" => CertUsage::Client,
                    "server" => CertUsage::Server,
                    o => {
                        return Err(ErrorKind::Invalid(format!(
                            "`{o}`: expected client or server"
                        )))
                    }
                });
            }
            "verify-x509-name" => {
                let a = nargs(line, 1, 2)?;
                let kind = match a.get(1).map(String::as_str) {
                    None | Some("subject") => X509NameKind::Subject,
                    Some("name") => X509NameKind::Name,
                    Some("name-prefix") => X509NameKind::NamePrefix,
                    Some(o) => {
                        return Err(ErrorKind::Invalid(format!(
                            "unknown type `{o}` (subject|name|name-prefix)"
                        )))
                    }
                };
                self.tls.verify_x509_name = Some(VerifyX509Name {
                    name: arg(a, 0)?.to_string(),
                    kind,
                });
            }
            "tls-version-min" => {
                let a = nargs(line, 1, 2)?;
                let v = arg(a, 0)?;
                if !matches!(v, "1.0" | "1.1" | "1.2" | "1.3") {
                    return Err(ErrorKind::Invalid(format!("unknown TLS version `{v}`")));
                }
                if a.get(1).is_some_and(|x| x != "or-highest") {
                    return Err(ErrorKind::Invalid(
                        "second argument must be `or-highest`".into(),
                    ));
                }
                self.tls.tls_version_min = Some(v.to_string());
            }
            "tls-auth" => {
                let a = nargs(line, 1, 2)?;
                let p = static_key(env, line, arg(a, 0)?)?;
                let dir = a
                    .get(1)
                    .map(|d| u8_range(d, "key direction", 0, 1))
                    .transpose()?;
                self.tls_auth = Some((p, dir));
            }
            "tls-crypt" => {
                let a = nargs(line, 1, 1)?;
                self.tls_crypt = Some(static_key(env, line, arg(a, 0)?)?);
            }
            "key-direction" => {
                let a = nargs(line, 1, 1)?;
                self.key_direction = Some(u8_range(arg(a, 0)?, "key-direction", 0, 1)?);
            }
            "data-ciphers" | "ncp-ciphers" => {
                let a = nargs(line, 1, 1)?;
                let mut v = Vec::new();
                for c in arg(a, 0)?.split(':') {
                    let c = cipher_name(c)?;
                    if !KNOWN_CIPHERS.contains(&c.as_str()) {
                        env.warn(
                            line,
                            format!("unknown cipher `{c}` (kept; a peer may still negotiate it)"),
                        );
                    }
                    v.push(c);
                }
                self.data_ciphers = Some(v);
            }
            "data-ciphers-fallback" => {
                let a = nargs(line, 1, 1)?;
                self.data_ciphers_fallback = Some(cipher_name(arg(a, 0)?)?);
            }
            "cipher" => {
                let a = nargs(line, 1, 1)?;
                self.cipher = Some(cipher_name(arg(a, 0)?)?);
            }
            "auth" => {
                let a = nargs(line, 1, 1)?;
                let d = arg(a, 0)?;
                let up = if d.eq_ignore_ascii_case("none") {
                    "none".to_string()
                } else {
                    d.to_ascii_uppercase().replace("SHA-", "SHA")
                };
                if !KNOWN_DIGESTS.contains(&up.as_str()) {
                    return Err(ErrorKind::Invalid(format!(
                        "unknown digest `{d}` (known: {})",
                        KNOWN_DIGESTS.join(" ")
                    )));
                }
                self.auth = Some(up);
            }
            "replay-window" => {
                let a = nargs(line, 1, 2)?;
                let size = u32_arg(arg(a, 0)?, "window size")?;
                if !(1..=65536).contains(&size) {
                    return Err(ErrorKind::Invalid(format!(
                        "window size must be 1..65536, got {size}"
                    )));
                }
                let seconds = match a.get(1) {
                    Some(s) => u32_arg(s, "seconds")?,
                    None => 15,
                };
                self.replay_window = Some(ReplayWindow { size, seconds });
            }
            "status" => {
                let a = nargs(line, 1, 2)?;
                let secs = match a.get(1) {
                    Some(s) => u32_arg(s, "seconds")?,
                    None => 60,
                };
                self.status = Some((env.resolve(arg(a, 0)?), secs));
            }
            "status-version" => {
                let a = nargs(line, 1, 1)?;
                self.status_version = Some(u8_range(arg(a, 0)?, "status-version", 1, 3)?);
            }
            "management" => {
                let a = nargs(line, 2, 3)?;
                let ip = arg(a, 0)?;
                let ip = ip.parse::<IpAddr>().map_err(|_| {
                    ErrorKind::Invalid(format!(
                        "`{ip}` is not an IP address (unix sockets are not supported)"
                    ))
                })?;
                let port = port_arg(arg(a, 1)?)?;
                if a.get(2).is_some() {
                    return Err(ErrorKind::Unsupported(
                        "management password files are not implemented; bind to localhost".into(),
                    ));
                }
                if !ip.is_loopback() {
                    env.warn(
                        line,
                        "management interface is reachable from the network without a password",
                    );
                }
                self.management = Some((ip, port));
            }
            "verb" => {
                let v = self.one_u32(line, "verb")?;
                if v > 11 {
                    return Err(ErrorKind::Invalid(format!("verb must be 0..11, got {v}")));
                }
                self.verb = Some(v);
            }
            "mute" => self.mute = Some(self.one_u32(line, "mute")?),
            "user" => self.user = Some(one_str(line)?),
            "group" => self.group = Some(one_str(line)?),
            "persist-key" => self.persist_key = bool_flag(line)?,
            "persist-tun" => self.persist_tun = bool_flag(line)?,
            "setenv" => {
                let a = nargs(line, 1, 2)?;
                let n = arg(a, 0)?;
                if n.eq_ignore_ascii_case("FORWARD_COMPATIBLE") {
                    return Err(ErrorKind::Unsupported("setenv FORWARD_COMPATIBLE would turn every unknown option into a warning; use ignore-unknown-option".into()));
                }
                self.setenv
                    .push((n.to_string(), a.get(1).cloned().unwrap_or_default()));
            }
            "script-security" => {
                let a = nargs(line, 1, 1)?;
                self.script_security = Some(u8_range(arg(a, 0)?, "script-security", 0, 3)?);
            }
            "auth-user-pass-verify" => {
                let a = nargs(line, 2, 2)?;
                let via_file = match arg(a, 1)? {
                    "via-env" => false,
                    "via-file" => true,
                    o => {
                        return Err(ErrorKind::Invalid(format!(
                            "method must be via-env or via-file, got `{o}`"
                        )))
                    }
                };
                self.auth_user_pass_verify = Some(AuthUserPassVerify {
                    command: arg(a, 0)?.to_string(),
                    via_file,
                });
            }
            "auth-user-pass" => {
                let a = nargs(line, 0, 1)?;
                self.auth_user_pass = Some(match a.first() {
                    None => AuthUserPassSource::Prompt,
                    Some(f) => AuthUserPassSource::File(env.resolve(f)),
                });
            }
            "allow-compression" => {
                let a = nargs(line, 1, 1)?;
                if arg(a, 0)? != "no" {
                    return Err(ErrorKind::Unsupported(
                        "only `allow-compression no` is accepted: fwd does not implement compression".into(),
                    ));
                }
            }
            _ => return Err(ErrorKind::UnknownOption),
        }
        Ok(())
    }

    fn one_u32(&self, line: &Line, what: &str) -> Result<u32, ErrorKind> {
        let a = nargs(line, 1, 1)?;
        u32_arg(arg(a, 0)?, what)
    }
}

fn one_str(line: &Line) -> Result<String, ErrorKind> {
    let a = nargs(line, 1, 1)?;
    Ok(arg(a, 0)?.to_string())
}

/// `push "OPTION"`: exactly one argument, the option text (like OpenVPN, an unquoted
/// multi-word push is an argument-count error).
pub fn push_text(line: &Line) -> Result<String, ErrorKind> {
    let a = nargs(line, 1, 1)?;
    let t = arg(a, 0)?.trim().to_string();
    if t.is_empty() {
        return Err(ErrorKind::Invalid("empty push option".into()));
    }
    if t.contains(',') {
        return Err(ErrorKind::Invalid(
            "push option must not contain `,` (it is the PUSH_REPLY separator)".into(),
        ));
    }
    // Validate pushed IPv6 routes early: a typo here only fails on every client.
    let words: Vec<&str> = t.split_whitespace().collect();
    match words.as_slice() {
        ["route-ipv6", net, ..] => {
            ipv6_net_arg(net)?;
        }
        ["route", net, rest @ ..] => {
            ipv4_net_args(net, rest.first().copied().filter(|m| *m != "default"))?;
        }
        ["route-ipv6"] | ["route"] => {
            return Err(ErrorKind::Invalid(format!("pushed `{t}` lacks a network")))
        }
        _ => {}
    }
    Ok(t)
}

/// Parse `iroute NETWORK [NETMASK]` (shared with ccd).
pub fn iroute_args(line: &Line) -> Result<Ipv4Net, ErrorKind> {
    let a = nargs(line, 1, 2)?;
    ipv4_net_args(arg(a, 0)?, a.get(1).map(String::as_str))
}

/// Parse `iroute-ipv6 PREFIX/BITS`: normalised (host bits cleared) like OpenVPN's mroute.
pub fn iroute_v6_args(line: &Line) -> Result<Ipv6Net, ErrorKind> {
    let a = nargs(line, 1, 1)?;
    Ok(ipv6_net_arg(arg(a, 0)?)?.trunc())
}

/// `ifconfig-ipv6-push ADDR/BITS [REMOTE]`.
pub fn ifconfig_ipv6_push_args(line: &Line) -> Result<(Ipv6Net, Option<Ipv6Addr>), ErrorKind> {
    let a = nargs(line, 1, 2)?;
    let addr = ipv6_net_arg(arg(a, 0)?)?;
    let remote = a.get(1).map(|r| ipv6_arg(r, "remote")).transpose()?;
    Ok((addr, remote))
}
