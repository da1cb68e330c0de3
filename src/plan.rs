//! Turning a loaded [`Config`] into what the server and client processes run with: TLS
//! configurations, control-channel wrapping, the session parameters shared by both roles,
//! pools restored from `ifconfig-pool-persist`, and the ccd lookup.
//!
//! Everything that can fail here is a configuration problem found after parsing (a key that
//! does not parse, a pool that cannot be built); the errors name the option.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};

use crate::client::pushed::PullFilter;
use crate::client::run::{ClientPlan, RemoteSpec};
use crate::config::{self, ccd, Config, ControlWrapSpec, IoDriver, Role, Topology, TransportProto};
use crate::dataplane::peers::RenegLimits;
use crate::dataplane::setup::DataPathConfig;
use crate::dataplane::DriverKind;
use crate::pool::{persist, Pool, PoolConfig, PoolV4, PoolV6, RestoreMode, V4Mode};
use crate::proto::data::Cipher;
use crate::proto::keys::{self, OccProto};
use crate::proto::messages;
use crate::proto::session::{SessionConfig, TlsSide};
use crate::proto::tls::{self, RemoteCertTls, TlsIdentity, TlsPolicy, TlsVersion, X509NameType};
use crate::proto::wrap::{self, Digest, KeyDirection, StaticKey, WrapKeys};
use crate::server::core::{ClientDirectory, NoDirectory, ServerSettings, V4Layout};
use crate::server::run::{ServerPlan, TunV4};

/// TLS bytes per control packet: 1250-byte tls-mtu minus IPv6/UDP (48), the worst-case
/// control header with 4 ACKs (1+8+1+16+8+4) and the largest wrap overhead (tls-auth SHA512:
/// 72), rounded down.
const MAX_CONTROL_PAYLOAD: usize = 1080;

fn pem<'a>(p: &'a Option<config::Pem>, what: &str) -> Result<&'a str> {
    p.as_ref()
        .map(|p| p.text.as_str())
        .ok_or_else(|| anyhow!("{what}: missing (required for TLS)"))
}

fn wrap_keys(cfg: &Config, role: wrap::Role) -> Result<WrapKeys> {
    Ok(match &cfg.control_wrap {
        None => WrapKeys::None,
        Some(ControlWrapSpec::TlsCrypt { key }) => {
            let k = StaticKey::parse(&key.text).map_err(|e| anyhow!("tls-crypt: {e}"))?;
            WrapKeys::tls_crypt(&k, role)
        }
        Some(ControlWrapSpec::TlsAuth {
            key,
            direction,
            auth,
        }) => {
            let k = StaticKey::parse(&key.text).map_err(|e| anyhow!("tls-auth: {e}"))?;
            let dir = match direction {
                None => None,
                Some(0) => Some(KeyDirection::Normal),
                Some(1) => Some(KeyDirection::Inverse),
                Some(d) => bail!("key-direction: {d} is not 0 or 1"),
            };
            let digest: Digest = auth.parse().map_err(|e: String| anyhow!("auth: {e}"))?;
            WrapKeys::tls_auth(&k, dir, digest)
        }
    })
}

fn tls_policy(cfg: &Config) -> Result<TlsPolicy> {
    let mut policy = TlsPolicy::new(pem(&cfg.tls.ca, "ca")?);
    policy.crl_pem = cfg.tls.crl.as_ref().map(|p| p.text.clone());
    policy.remote_cert_tls = cfg.tls.remote_cert_tls.map(|u| match u {
        config::CertUsage::Client => RemoteCertTls::Client,
        config::CertUsage::Server => RemoteCertTls::Server,
    });
    policy.verify_x509_name = cfg.tls.verify_x509_name.as_ref().map(|v| {
        let kind = match v.kind {
            config::X509NameKind::Subject => X509NameType::Subject,
            config::X509NameKind::Name => X509NameType::Name,
            config::X509NameKind::NamePrefix => X509NameType::NamePrefix,
        };
        (v.name.clone(), kind)
    });
    policy.tls_version_min = match cfg.tls.tls_version_min.as_deref() {
        Some("1.3") => Some(TlsVersion::V1_3),
        _ => None,
    };
    Ok(policy)
}

fn ciphers(cfg: &Config) -> Result<(Vec<Cipher>, Option<Cipher>)> {
    let mut list = Vec::new();
    for name in &cfg.data_ciphers {
        let optional = name.starts_with('?');
        match Cipher::from_name(name.trim_start_matches('?')) {
            Some(c) => list.push(c),
            None if optional => {}
            None => bail!("data-ciphers: {name} is not supported by fwd (AEAD ciphers only)"),
        }
    }
    if list.is_empty() {
        bail!("data-ciphers: no usable cipher");
    }
    let fallback = match &cfg.data_ciphers_fallback {
        None => None,
        Some(n) => Some(
            Cipher::from_name(n)
                .ok_or_else(|| anyhow!("data-ciphers-fallback: {n} is not supported by fwd"))?,
        ),
    };
    Ok((list, fallback))
}

fn session_config(cfg: &Config, tls: TlsSide) -> Result<SessionConfig> {
    let role = tls.role();
    let client = role == wrap::Role::Client;
    let (ciphers, _) = ciphers(cfg)?;
    let wrap = wrap_keys(cfg, role)?;
    // A client that insists on the PRF must not offer TLS-EKM: the server would push
    // `tls-ekm` and derive different keys than we do.
    let iv_proto = if cfg.force_prf {
        messages::IV_PROTO_FWD & !messages::IV_PROTO_TLS_KEY_EXPORT
    } else {
        messages::IV_PROTO_FWD
    };
    let peer_info = client.then(|| messages::peer_info_string(&ciphers, iv_proto, 1600));
    Ok(SessionConfig {
        wrap: Arc::new(wrap),
        tls,
        hand_window: Duration::from_secs(cfg.hand_window.into()),
        tls_timeout: Duration::from_secs(cfg.tls_timeout.max(1).into()),
        reneg_after: (cfg.reneg_sec > 0).then(|| Duration::from_secs(cfg.reneg_sec.into())),
        tran_window: Duration::from_secs(cfg.tran_window.into()),
        max_control_payload: MAX_CONTROL_PAYLOAD,
        options_string: keys::options_string(client, cfg.tun_mtu.min(65535) as u16, OccProto::Udp),
        peer_info,
        credentials: None,
        force_prf: cfg.force_prf,
    })
}

fn listen_addr(cfg: &Config) -> (SocketAddr, Option<bool>) {
    match (cfg.local, cfg.proto) {
        (Some(ip), _) => (SocketAddr::new(ip, cfg.port), ip.is_ipv6().then_some(true)),
        (None, TransportProto::Udp4) => ((Ipv4Addr::UNSPECIFIED, cfg.port).into(), None),
        // OpenVPN 2.6 binds `udp6` dual-stack too (IPv4 clients arrive v4-mapped).
        (None, TransportProto::Udp6) => ((Ipv6Addr::UNSPECIFIED, cfg.port).into(), Some(false)),
        (None, TransportProto::Udp) => ((Ipv6Addr::UNSPECIFIED, cfg.port).into(), Some(false)),
    }
}

/// UDP socket buffers when the config sets none: each shard's one socket takes the bursts of
/// every client hashed to it, and the kernel default (~200 KiB) overflowed at a few hundred
/// Mbit/s in perf/netns-throughput.sh.
const DEFAULT_SOCKET_BUFFER: usize = 4 << 20;

/// A seconds option where 0 (or absent) means "off".
fn timer(secs: Option<u32>) -> Option<Duration> {
    secs.filter(|&s| s > 0)
        .map(|s| Duration::from_secs(s.into()))
}

/// The ccd directory as a [`ClientDirectory`].
pub struct CcdDirectory {
    pub dir: PathBuf,
    pub exclusive: bool,
}

impl ClientDirectory for CcdDirectory {
    fn lookup(&mut self, cn: &str) -> Result<Option<ccd::CcdEntry>, String> {
        let entry = ccd::load_for(&self.dir, cn, self.exclusive).map_err(|e| e.to_string())?;
        match entry {
            None if self.exclusive => Err(format!("ccd-exclusive: no ccd file for {cn}")),
            None => Ok(None),
            Some(e) => Ok(Some(e)),
        }
    }
}

fn build_pool(cfg: &Config) -> Result<Pool> {
    let v4 = cfg.pool_v4.map(|p| PoolV4 {
        start: p.start,
        end: p.end,
        mode: if cfg.topology == Topology::Net30 {
            V4Mode::Net30
        } else {
            V4Mode::Individual
        },
    });
    let v6 = cfg.pool_v6.map(|p| PoolV6 {
        base: p.base,
        prefix_len: p.prefix_len,
    });
    if v4.is_none() && v6.is_none() {
        // No dynamic pool (static addresses from ccd only): an empty IPv6 pool would refuse to
        // build, so use a 1-slot placeholder that is never consulted (`has_v4/has_v6` decide).
        return Pool::new(PoolConfig {
            v4: None,
            v6: Some(PoolV6 {
                base: "fd00::fffe".parse()?,
                prefix_len: 124,
            }),
            duplicate_cn: cfg.duplicate_cn,
        })
        .map_err(|e| anyhow!("pool: {e}"));
    }
    let mut pool = Pool::new(PoolConfig {
        v4,
        v6,
        duplicate_cn: cfg.duplicate_cn,
    })
    .map_err(|e| anyhow!("ifconfig-pool: {e}"))?;
    for note in pool.config_notes() {
        tracing::info!("{note}");
    }
    if let Some((path, secs)) = &cfg.pool_persist {
        let (entries, warnings) = persist::load(path)
            .with_context(|| format!("ifconfig-pool-persist: reading {}", path.display()))?;
        for w in warnings {
            tracing::warn!("{}", w.at(path));
        }
        for w in pool.restore(&entries, RestoreMode::from_seconds(*secs)) {
            tracing::warn!("{}", w.at(path));
        }
    }
    Ok(pool)
}

/// The server process plan for `cfg` (which must be a server configuration).
pub fn server_plan(cfg: &Config) -> Result<ServerPlan> {
    if cfg.role != Role::Server {
        bail!("not a server configuration (use `mode server` / `server` / `server-ipv6`)");
    }
    if cfg.auth_user_pass_verify.is_some() {
        // Running without it would accept every username/password the operator meant to check.
        bail!("auth-user-pass-verify: scripts are not supported by fwd; refusing to run rather than skip the check");
    }
    let identity = TlsIdentity::from_pem(pem(&cfg.tls.cert, "cert")?, pem(&cfg.tls.key, "key")?)
        .map_err(|e| anyhow!("cert/key: {e}"))?;
    let tls_cfg =
        tls::server_config(&identity, &tls_policy(cfg)?).map_err(|e| anyhow!("TLS: {e}"))?;
    let session = Arc::new(session_config(cfg, TlsSide::Server(tls_cfg))?);
    let (data_ciphers, data_ciphers_fallback) = ciphers(cfg)?;
    let v4_layout = match (cfg.topology, cfg.ifconfig) {
        (Topology::Subnet, Some(i)) => V4Layout::Subnet {
            netmask: i.remote_netmask,
        },
        (Topology::Subnet, None) => V4Layout::Subnet {
            netmask: Ipv4Addr::new(255, 255, 255, 0),
        },
        _ => V4Layout::Net30,
    };
    let tun_v4 = cfg.ifconfig.map(|i| match cfg.topology {
        Topology::Subnet => TunV4 {
            addr: i.local,
            prefix_len: Ipv4Net::with_netmask(i.local, i.remote_netmask)
                .map(|n| n.prefix_len())
                .unwrap_or(24),
            peer: None,
        },
        _ => TunV4 {
            addr: i.local,
            prefix_len: 32,
            peer: Some(i.remote_netmask),
        },
    });
    let tun_v6 = cfg
        .ifconfig_ipv6
        .map(|i| (i.local.addr(), i.local.prefix_len()));
    let mut routes: Vec<IpNet> = cfg
        .routes
        .iter()
        .map(|r| IpNet::V4(r.net.trunc()))
        .collect();
    routes.extend(cfg.routes_v6.iter().map(|r| IpNet::V6(r.net.trunc())));
    let (listen, v6only) = listen_addr(cfg);
    let directory: Box<dyn ClientDirectory + Send> = match &cfg.ccd_dir {
        Some(dir) => Box::new(CcdDirectory {
            dir: dir.clone(),
            exclusive: cfg.ccd_exclusive,
        }),
        None => Box::new(NoDirectory),
    };
    let settings = ServerSettings {
        session,
        push: cfg.push.clone(),
        v4_layout,
        server_v6: tun_v6,
        data_ciphers,
        data_ciphers_fallback,
        duplicate_cn: cfg.duplicate_cn,
        max_clients: cfg.max_clients.max(1),
        tun_mtu: cfg.tun_mtu.min(65535) as u16,
        hand_window: Duration::from_secs(cfg.hand_window.into()),
        initial_reply_limit: cfg.connect_freq_initial.0,
        initial_reply_window: Duration::from_secs(cfg.connect_freq_initial.1.max(1).into()),
    };
    Ok(ServerPlan {
        settings,
        pool: build_pool(cfg)?,
        directory,
        dev: dev_name(&cfg.dev),
        data_path: data_path(cfg, listen.is_ipv6()),
        threads: cfg
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        listen,
        v6only,
        sndbuf: cfg.sndbuf.map_or(DEFAULT_SOCKET_BUFFER, |b| b as usize),
        rcvbuf: cfg.rcvbuf.map_or(DEFAULT_SOCKET_BUFFER, |b| b as usize),
        tun_mtu: cfg.tun_mtu.min(65535) as u16,
        txqueuelen: cfg.txqueuelen,
        tun_v4,
        tun_v6,
        routes,
        ping: timer(cfg.ping),
        ping_restart: timer(cfg.ping_restart),
        client_to_client: cfg.client_to_client,
        reneg: RenegLimits {
            bytes: cfg.reneg_bytes.filter(|&b| b > 0),
            packets: cfg.reneg_pkts.filter(|&p| p > 0),
        },
        replay_window: (cfg.replay_window.size, cfg.replay_window.seconds.into()),
        persist: cfg
            .pool_persist
            .as_ref()
            .filter(|(_, secs)| RestoreMode::from_seconds(*secs).writes_file())
            .map(|(p, secs)| (p.clone(), Duration::from_secs((*secs).into()))),
        status: cfg.status.as_ref().map(|(p, secs)| {
            (
                p.clone(),
                Duration::from_secs((*secs).max(1).into()),
                cfg.status_version,
            )
        }),
        management: cfg
            .management
            .map(|(ip, port)| crate::server::run::MgmtPlan {
                addr: SocketAddr::new(ip, port),
                status_version: cfg.status_version,
                verb: cfg.verb,
            }),
        exit_notify: cfg.explicit_exit_notify > 0,
        user: cfg.user.clone(),
        group: cfg.group.clone(),
    })
}

/// OpenVPN's `dev tun` means "the next free tunN"; the kernel does that with `tun%d`.
fn dev_name(dev: &str) -> String {
    if dev == "tun" {
        "tun%d".to_string()
    } else {
        dev.to_string()
    }
}

/// The client process plan for `cfg` (which must be a client configuration).
pub fn client_plan(cfg: &Config) -> Result<ClientPlan> {
    if cfg.role != Role::Client {
        bail!("not a client configuration (use `client` or `pull` + `tls-client`)");
    }
    let identity = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => {
            Some(TlsIdentity::from_pem(&c.text, &k.text).map_err(|e| anyhow!("cert/key: {e}"))?)
        }
        _ => None,
    };
    let tls_cfg = tls::client_config(identity.as_ref(), &tls_policy(cfg)?)
        .map_err(|e| anyhow!("TLS: {e}"))?;
    let session = Arc::new(session_config(cfg, TlsSide::Client(tls_cfg))?);
    let (data_ciphers, data_ciphers_fallback) = ciphers(cfg)?;
    let remotes = cfg
        .remotes
        .iter()
        .map(|r| RemoteSpec {
            host: r.host.clone(),
            port: r.port,
            v6: match r.proto.unwrap_or(cfg.proto) {
                TransportProto::Udp4 => Some(false),
                TransportProto::Udp6 => Some(true),
                TransportProto::Udp => None,
            },
        })
        .collect();
    let pull_filters = cfg
        .pull_filters
        .iter()
        .map(|f| match f.action {
            config::PullFilterAction::Accept => PullFilter::Accept(f.text.clone()),
            config::PullFilterAction::Ignore => PullFilter::Ignore(f.text.clone()),
            config::PullFilterAction::Reject => PullFilter::Reject(f.text.clone()),
        })
        .collect();
    let local = match (cfg.nobind, cfg.local) {
        (false, Some(ip)) => Some(SocketAddr::new(ip, cfg.port)),
        _ => None,
    };
    Ok(ClientPlan {
        // The remote's family is known only once resolved; `proto udp` means IPv4 here, as
        // for an openvpn client reaching an IPv4 server.
        data_path: data_path(cfg, cfg.proto == TransportProto::Udp6),
        sndbuf: cfg.sndbuf.map_or(DEFAULT_SOCKET_BUFFER, |b| b as usize),
        rcvbuf: cfg.rcvbuf.map_or(DEFAULT_SOCKET_BUFFER, |b| b as usize),
        session,
        remotes,
        dev: dev_name(&cfg.dev),
        local,
        data_ciphers,
        data_ciphers_fallback,
        pull_filters,
        route_nopull: cfg.route_nopull,
        ping: timer(cfg.ping),
        ping_restart: timer(cfg.ping_restart),
        tun_mtu: cfg.tun_mtu.min(65535) as u16,
        replay_window: (cfg.replay_window.size, cfg.replay_window.seconds.into()),
        exit_notify: cfg.explicit_exit_notify,
        connect_retry: Duration::from_secs(cfg.connect_retry.map_or(1, |(s, _)| s.max(1)).into()),
        connect_retry_max: Duration::from_secs(
            cfg.connect_retry.and_then(|(_, m)| m).unwrap_or(300).into(),
        ),
        server_poll_timeout: Duration::from_secs(cfg.server_poll_timeout.unwrap_or(120).into()),
        resolv_retry: match cfg.resolv_retry {
            Some(config::ResolvRetry::Seconds(s)) => Duration::from_secs(s.into()),
            _ => Duration::from_secs(u32::MAX.into()),
        },
        max_attempts: None,
    })
}

/// `offload` and `io` for the shards.
fn data_path(cfg: &Config, link_v6: bool) -> DataPathConfig {
    DataPathConfig {
        mss: mss_limits(cfg, link_v6),
        offload_off: !cfg.offload,
        driver: match cfg.io {
            IoDriver::Auto => DriverKind::Auto,
            IoDriver::Uring => DriverKind::Uring,
            IoDriver::Epoll => DriverKind::Epoll,
        },
    }
}

/// The `mssfix` limits (IPv4, IPv6 inside the tunnel) as OpenVPN 2.6 computes them for an
/// AEAD data channel with peer-id over UDP (`mss.c`, `frame_calculate_mssfix`): unset means
/// its default (`1492 mtu` with tun-mtu 1500), 0 turns clamping off.
fn mss_limits(cfg: &Config, link_v6: bool) -> (u16, u16) {
    use crate::config::model::MssfixFlag;
    use crate::dataplane::mss::{self, Link, MssfixMode};
    let (value, mode) = match cfg.mssfix {
        Some(m) if m.value == 0 => return (0, 0),
        Some(m) => (
            m.value,
            match m.flag {
                MssfixFlag::Payload => MssfixMode::Payload,
                MssfixFlag::Mtu => MssfixMode::Mtu,
                MssfixFlag::Fixed => MssfixMode::Fixed,
            },
        ),
        None => mss::default_mssfix(cfg.tun_mtu),
    };
    let link = if link_v6 { Link::Udp6 } else { Link::Udp4 };
    let v4 = mss::mss_limit(value, mode, link, mss::AEAD_OVERHEAD_V2);
    (v4, mss::v6_limit(v4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn limits(extra: &str, link_v6: bool) -> (u16, u16) {
        let pki = "tests/vectors/config/pki";
        let text = format!(
            "client\ndev tun\nremote vpn.example.org\nca {pki}/ca.crt\ncert {pki}/client1.crt\nkey {pki}/client1.key\n{extra}\n"
        );
        let cfg = config::load_str(&text, Path::new("test.conf"))
            .unwrap()
            .config;
        mss_limits(&cfg, link_v6)
    }

    #[test]
    fn mssfix_flag_chooses_what_the_bound_covers() {
        // Unset and bare `mssfix`: OpenVPN's `1492 mtu` (1492 - 24 AEAD - 28 IPv4/UDP - 40).
        assert_eq!(limits("", false), (1400, 1380));
        assert_eq!(limits("mssfix", false), (1400, 1380));
        assert_eq!(limits("mssfix 1400 mtu", false), (1308, 1288));
        assert_eq!(limits("mssfix 1400 mtu", true), (1288, 1268));
        // No flag: the bound covers the OpenVPN packet, not the IP/UDP headers around it.
        assert_eq!(limits("mssfix 1360", false), (1296, 1276));
        assert_eq!(limits("mssfix 1360", true), (1296, 1276));
        assert_eq!(limits("mssfix 1300 fixed", true), (1260, 1240));
        assert_eq!(limits("mssfix 0", false), (0, 0));
        // A non-default tun-mtu without mssfix: `<tun-mtu> fixed`.
        assert_eq!(limits("tun-mtu 1400", false), (1360, 1340));
    }
}
