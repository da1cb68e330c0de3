//! Macro expansion and cross-option validation, following OpenVPN 2.6 helper.c
//! (`helper_client_server`, `helper_keepalive`) as described in server-ipv6.md §2–§3.
//!
//! Order matters and matches OpenVPN: user `push` lines first (file order), then
//! `server-ipv6` (pushes `tun-ipv6`), then `server` (route/route-gateway, topology), then
//! `keepalive` (ping, ping-restart). Every numeric fact here was compared with the output of
//! `openvpn --verb 7` (2.6.14); see tests/config_expand.rs.

use super::args::{v4_add, v4_sub, v6_add};
use super::directive::{Builder, ServerMacro};
use super::error::{ConfigError, ConfigErrors, ErrorKind, Location, Warning};
use super::model::*;
use super::SourceMap;
use ipnet::{Ipv4Net, Ipv6Net};

pub const DEFAULT_DATA_CIPHERS: &[&str] = &["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"];

struct Ctx<'a> {
    b: &'a Builder,
    top: &'a Location,
    errors: ConfigErrors,
}

impl Ctx<'_> {
    fn loc(&self, name: &str) -> Location {
        self.b
            .seen
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.top.clone())
    }
    fn err(&mut self, name: &str, kind: ErrorKind) {
        let loc = self.loc(name);
        self.errors.push(ConfigError::new(loc, name, kind));
    }
    fn has(&self, name: &str) -> bool {
        self.b.seen.contains_key(name)
    }
}

/// Options that make sense only for one role, with the role that may use them.
const SERVER_ONLY: &[&str] = &[
    "ifconfig-pool",
    "ifconfig-ipv6-pool",
    "ifconfig-pool-persist",
    "push",
    "client-config-dir",
    "ccd-exclusive",
    "client-to-client",
    "duplicate-cn",
    "max-clients",
    "connect-freq-initial",
    "auth-user-pass-verify",
];
const CLIENT_ONLY: &[&str] = &[
    "remote",
    "remote-random",
    "nobind",
    "resolv-retry",
    "connect-retry",
    "server-poll-timeout",
    "pull-filter",
    "route-nopull",
    "redirect-gateway",
    "auth-user-pass",
];

pub fn finish(
    b: &mut Builder,
    top: &Location,
    warnings: &mut Vec<Warning>,
) -> Result<(Config, SourceMap), ConfigErrors> {
    let mut c = Ctx {
        b,
        top,
        errors: ConfigErrors::default(),
    };
    let b = c.b;

    // ---- role -------------------------------------------------------------------------
    let is_server_macro = b.server.is_some() || b.server_ipv6.is_some();
    if b.client {
        for m in ["server", "server-ipv6", "mode"] {
            if m == "mode" && b.mode_server != Some(true) {
                continue;
            }
            if c.has(m) {
                c.err(
                    m,
                    ErrorKind::Conflict("cannot be combined with `client`".into()),
                );
            }
        }
    }
    let mode_server = b.mode_server == Some(true) || (is_server_macro && !b.client);
    let tls_server = b.tls_server || (is_server_macro && !b.client);
    let tls_client = b.tls_client || b.client;
    let pull = b.pull || b.client;
    let role = if mode_server {
        if !tls_server {
            c.err(
                "mode",
                ErrorKind::Missing("`mode server` requires `tls-server`".into()),
            );
        }
        if tls_client {
            c.err(
                "tls-client",
                ErrorKind::Conflict("cannot be used with `mode server`".into()),
            );
        }
        Role::Server
    } else if tls_client {
        if tls_server {
            c.err(
                "tls-server",
                ErrorKind::Conflict("cannot be combined with tls-client".into()),
            );
        }
        if !pull {
            c.err(
                "tls-client",
                ErrorKind::Unsupported(
                    "TLS point-to-point mode without `pull` is not implemented; use `client`"
                        .into(),
                ),
            );
        }
        Role::Client
    } else {
        if tls_server {
            c.err(
                "tls-server",
                ErrorKind::Unsupported(
                    "TLS point-to-point mode is not implemented; use `server`/`server-ipv6` or `mode server`".into(),
                ),
            );
        } else {
            c.err(
                "mode",
                ErrorKind::Missing(
                    "no role configured: use `server`/`server-ipv6` (or `mode server` + `tls-server`) for a server, or `client` for a client".into(),
                ),
            );
        }
        Role::Server
    };
    for o in SERVER_ONLY {
        if role == Role::Client && c.has(o) {
            c.err(
                o,
                ErrorKind::NotAllowed("only valid in a server configuration".into()),
            );
        }
    }
    for o in CLIENT_ONLY {
        if role == Role::Server && c.has(o) {
            c.err(
                o,
                ErrorKind::NotAllowed("only valid in a client configuration".into()),
            );
        }
    }

    // ---- device ------------------------------------------------------------------------
    let dev = match &b.dev {
        Some(d) => {
            if !d.starts_with("tun") && b.dev_type.is_none() {
                c.err(
                    "dev",
                    ErrorKind::Invalid(format!(
                        "cannot tell the device type from the name `{d}`; add `dev-type tun`"
                    )),
                );
            }
            d.clone()
        }
        None => {
            c.err(
                "dev",
                ErrorKind::Missing("missing required option (add `dev tun`)".into()),
            );
            String::from("tun")
        }
    };

    let topology = b.topology.unwrap_or(Topology::Net30);
    let mut ifconfig = b.ifconfig;
    let mut ifconfig_ipv6 = b.ifconfig_ipv6;
    let mut pool_v4 = b.pool_v4;
    let mut pool_v6 = b.pool_v6;
    let mut tun_ipv6 = b.tun_ipv6;
    let mut route_gateway = b.route_gateway;
    let mut routes: Vec<(RouteV4, Location)> = b.routes.clone();
    let mut push: Vec<(String, Option<Location>)> = b.push.clone();

    // ---- server-ipv6 -------------------------------------------------------------------
    if let Some(net) = b.server_ipv6 {
        let at = c.loc("server-ipv6");
        if b.pool_v6.is_some() {
            c.err(
                "server-ipv6",
                ErrorKind::Conflict(
                    "cannot be combined with an explicit ifconfig-ipv6-pool (server-ipv6 sets it up)".into(),
                ),
            );
        }
        if b.server.as_ref().is_some_and(|s| s.nopool) {
            c.err(
                "server-ipv6",
                ErrorKind::Conflict("cannot be combined with `server ... nopool`".into()),
            );
        }
        if b.ifconfig_ipv6.is_some() {
            warnings.push(Warning::new(
                at.clone(),
                "server-ipv6",
                "overrides the explicit ifconfig-ipv6",
            ));
        }
        let bits = net.prefix_len();
        // As OpenVPN: address arithmetic on the address as written (host bits included).
        let local = Ipv6Net::new(v6_add(net.addr(), 1), bits).unwrap_or(net);
        ifconfig_ipv6 = Some(IfconfigV6 {
            local,
            remote: v6_add(net.addr(), 2),
        });
        pool_v6 = Some(PoolV6Spec {
            base: v6_add(net.addr(), if bits < 112 { 0x1000 } else { 2 }),
            prefix_len: bits,
        });
        tun_ipv6 = true;
        push.push(("tun-ipv6".into(), None));
    }

    // ---- server ------------------------------------------------------------------------
    if let Some(ServerMacro {
        network,
        netmask,
        prefix_len,
        nopool,
    }) = b.server.clone()
    {
        let at = c.loc("server");
        if b.pool_v4.is_some() && !nopool {
            c.err(
                "server",
                ErrorKind::Conflict(
                    "cannot be combined with ifconfig-pool (add `nopool` to use your own pool)"
                        .into(),
                ),
            );
        }
        if b.ifconfig.is_some() {
            warnings.push(Warning::new(
                at.clone(),
                "server",
                "overrides the explicit ifconfig",
            ));
        }
        let host_bits = 32 - u32::from(prefix_len);
        let bcast = v4_add(network, (1u32 << host_bits) - 1);
        match topology {
            Topology::Net30 | Topology::P2p => {
                ifconfig = Some(IfconfigV4 {
                    local: v4_add(network, 1),
                    remote_netmask: v4_add(network, 2),
                });
                if !nopool {
                    pool_v4 = Some(PoolV4Spec {
                        start: v4_add(network, 4),
                        end: if prefix_len == 29 {
                            bcast
                        } else {
                            v4_sub(bcast, 4)
                        },
                        netmask: None,
                    });
                }
                let net = Ipv4Net::new(network, prefix_len).unwrap_or_default();
                routes.push((
                    RouteV4 {
                        net,
                        gateway: None,
                        metric: None,
                    },
                    at.clone(),
                ));
                if b.client_to_client {
                    push.push((format!("route {network} {netmask}"), None));
                } else if topology == Topology::Net30 {
                    push.push((format!("route {}", v4_add(network, 1)), None));
                }
                push.push((format!("topology {}", topology.as_str()), None));
                if pool_v4.is_some() {
                    let hint = if b.topology.is_none() {
                        " (net30 is the OpenVPN 2.6 default when `topology` is not set)"
                    } else {
                        ""
                    };
                    warnings.push(Warning::new(
                        at.clone(),
                        "server",
                        format!(
                            "topology {} uses a /30 or host route per client and is deprecated for servers{hint}; add `topology subnet`",
                            topology.as_str()
                        ),
                    ));
                }
            }
            Topology::Subnet => {
                ifconfig = Some(IfconfigV4 {
                    local: v4_add(network, 1),
                    remote_netmask: netmask,
                });
                if !nopool {
                    pool_v4 = Some(PoolV4Spec {
                        start: v4_add(network, 2),
                        end: v4_sub(bcast, 1),
                        netmask: Some(netmask),
                    });
                }
                push.push((format!("route-gateway {}", v4_add(network, 1)), None));
                if route_gateway.is_none() {
                    route_gateway = Some(RouteGateway::Addr(v4_add(network, 2)));
                }
                push.push(("topology subnet".into(), None));
            }
        }
    }

    // ---- keepalive ---------------------------------------------------------------------
    let (mut ping, mut ping_restart) = (b.ping, b.ping_restart);
    if let Some((p, t)) = b.keepalive {
        if b.ping.is_some() || b.ping_restart.is_some() || b.ping_exit.is_some() {
            c.err(
                "keepalive",
                ErrorKind::Conflict(
                    "conflicts with ping, ping-restart or ping-exit (keepalive sets them)".into(),
                ),
            );
        }
        ping = Some(p);
        if role == Role::Server {
            ping_restart = Some(t.saturating_mul(2));
            push.push((format!("ping {p}"), None));
            push.push((format!("ping-restart {t}"), None));
        } else {
            ping_restart = Some(t);
        }
    }

    // ---- cross checks ------------------------------------------------------------------
    if role == Role::Server {
        if pool_v6.is_some() && ifconfig_ipv6.is_none() {
            c.err(
                "ifconfig-ipv6-pool",
                ErrorKind::Missing(
                    "requires ifconfig-ipv6 (the server's own tun IPv6 address; or use server-ipv6)".into(),
                ),
            );
        }
        if b.pool_persist.is_some() && pool_v4.is_none() && pool_v6.is_none() {
            c.err(
                "ifconfig-pool-persist",
                ErrorKind::Missing("requires an address pool (server, server-ipv6, ifconfig-pool or ifconfig-ipv6-pool)".into()),
            );
        }
        if ifconfig.is_none()
            && ifconfig_ipv6.is_none()
            && !c.errors.iter().any(|e| e.directive == "mode")
        {
            c.err(
                "mode",
                ErrorKind::Missing(
                    "a server needs tunnel addresses: use server / server-ipv6, or ifconfig / ifconfig-ipv6".into(),
                ),
            );
        }
        if pool_v4.is_some() && ifconfig.is_none() {
            c.err(
                "ifconfig-pool",
                ErrorKind::Missing("requires ifconfig (or use `server`)".into()),
            );
        }
        if let (Some(i), Topology::Subnet) = (ifconfig, topology) {
            if super::args::netmask_arg(&i.remote_netmask.to_string()).is_err() {
                c.err(
                    "ifconfig",
                    ErrorKind::Invalid(format!(
                        "with topology subnet the second argument must be a netmask, got {}",
                        i.remote_netmask
                    )),
                );
            }
        }
    }
    if b.ccd_exclusive && b.ccd_dir.is_none() {
        c.err(
            "ccd-exclusive",
            ErrorKind::Missing("requires client-config-dir".into()),
        );
    }
    if role == Role::Client
        && b.remotes.is_empty()
        && !c.errors.iter().any(|e| e.directive == "mode")
    {
        c.err(
            "remote",
            ErrorKind::Missing("a client needs at least one `remote`".into()),
        );
    }
    if b.tls_auth.is_some() && b.tls_crypt.is_some() {
        c.err(
            "tls-crypt",
            ErrorKind::Conflict("cannot be combined with tls-auth".into()),
        );
    }
    // TLS material.
    let need_cert = role == Role::Server
        || b.auth_user_pass.is_none()
        || b.tls.cert.is_some()
        || b.tls.key.is_some();
    if b.tls.ca.is_none() {
        c.err(
            "ca",
            ErrorKind::Missing("missing required option (CA certificate)".into()),
        );
    }
    if need_cert {
        if b.tls.cert.is_none() {
            c.err(
                "cert",
                ErrorKind::Missing("missing required option (own certificate)".into()),
            );
        }
        if b.tls.key.is_none() {
            c.err(
                "key",
                ErrorKind::Missing("missing required option (own private key)".into()),
            );
        }
    }

    // ---- defaults & assembly -----------------------------------------------------------
    let port = b.lport.unwrap_or(1194);
    let rport = b.rport.unwrap_or(1194);
    let remotes = b
        .remotes
        .iter()
        .map(|(h, p, pr)| Remote {
            host: h.clone(),
            port: p.unwrap_or(rport),
            proto: *pr,
        })
        .collect();
    let auth = b.auth.clone().unwrap_or_else(|| "SHA1".into());
    let mut data_ciphers: Vec<String> = b
        .data_ciphers
        .clone()
        .unwrap_or_else(|| DEFAULT_DATA_CIPHERS.iter().map(|s| s.to_string()).collect());
    if let Some(ci) = &b.cipher {
        // OpenVPN 2.6 appends --cipher to --data-ciphers if missing (for compatibility).
        if ci != "BF-CBC" && ci != "none" && !data_ciphers.contains(ci) {
            data_ciphers.push(ci.clone());
        }
    }
    let control_wrap = if let Some(k) = &b.tls_crypt {
        Some(ControlWrapSpec::TlsCrypt { key: k.clone() })
    } else {
        b.tls_auth.as_ref().map(|(k, d)| ControlWrapSpec::TlsAuth {
            key: k.clone(),
            direction: d.or(b.key_direction),
            auth: auth.clone(),
        })
    };

    let sources = SourceMap {
        top: top.clone(),
        directives: b.seen.clone(),
        routes: routes.iter().map(|(_, l)| l.clone()).collect(),
        routes_v6: b.routes_v6.iter().map(|(_, l)| l.clone()).collect(),
        push: push.iter().map(|(_, l)| l.clone()).collect(),
        topology_explicit: b.topology.is_some(),
        max_clients_explicit: b.max_clients.is_some(),
    };

    let config = Config {
        role,
        threads: b.threads,
        offload: b.offload.unwrap_or(true),
        io: b.io.unwrap_or_default(),
        dev,
        proto: b.proto.unwrap_or(TransportProto::Udp),
        local: b.local,
        port,
        remotes,
        remote_random: b.remote_random,
        nobind: b.nobind,
        float: b.float,
        resolv_retry: b.resolv_retry,
        connect_retry: b.connect_retry,
        server_poll_timeout: b.server_poll_timeout,
        topology,
        ifconfig,
        ifconfig_ipv6,
        pool_v4,
        pool_v6,
        pool_persist: b.pool_persist.clone(),
        route_gateway,
        routes: routes.into_iter().map(|(r, _)| r).collect(),
        routes_v6: b.routes_v6.iter().map(|(r, _)| r.clone()).collect(),
        push: push.into_iter().map(|(p, _)| p).collect(),
        ccd_dir: b.ccd_dir.clone(),
        ccd_exclusive: b.ccd_exclusive,
        client_to_client: b.client_to_client,
        duplicate_cn: b.duplicate_cn,
        max_clients: b.max_clients.unwrap_or(1024),
        connect_freq_initial: b.connect_freq_initial.unwrap_or((100, 10)),
        ping,
        ping_restart,
        ping_exit: b.ping_exit,
        hand_window: b.hand_window.unwrap_or(60),
        tran_window: b.tran_window.unwrap_or(3600),
        tls_timeout: b.tls_timeout.unwrap_or(2),
        tls: b.tls.clone(),
        control_wrap,
        data_ciphers,
        data_ciphers_fallback: b.data_ciphers_fallback.clone(),
        cipher: b.cipher.clone(),
        auth,
        reneg_sec: b.reneg_sec.unwrap_or(3600),
        reneg_bytes: b.reneg_bytes,
        reneg_pkts: b.reneg_pkts,
        replay_window: b.replay_window.unwrap_or(ReplayWindow {
            size: 64,
            seconds: 15,
        }),
        tun_mtu: b.tun_mtu.unwrap_or(1500),
        mssfix: b.mssfix,
        txqueuelen: b.txqueuelen,
        tun_ipv6,
        status: b.status.clone(),
        status_version: b.status_version.unwrap_or(1),
        management: b.management,
        explicit_exit_notify: b.explicit_exit_notify.unwrap_or(0),
        force_prf: b.force_prf,
        pull,
        pull_filters: b.pull_filters.clone(),
        route_nopull: b.route_nopull,
        redirect_gateway: b.redirect_gateway.clone(),
        verb: b.verb.unwrap_or(1),
        mute: b.mute.unwrap_or(0),
        user: b.user.clone(),
        group: b.group.clone(),
        persist_key: b.persist_key,
        persist_tun: b.persist_tun,
        setenv: b.setenv.clone(),
        script_security: b.script_security.unwrap_or(1),
        auth_user_pass_verify: b.auth_user_pass_verify.clone(),
        auth_user_pass: b.auth_user_pass.clone(),
        sndbuf: b.sndbuf,
        rcvbuf: b.rcvbuf,
        ignore_unknown_option: b.ignore_unknown_option.clone(),
    };
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    warnings.extend(super::check::config_warnings(&config, &sources));
    Ok((config, sources))
}

/// Netmask of the server's IPv4 tunnel (subnet topology) — used by checks.
pub fn tunnel_net_v4(c: &Config) -> Option<Ipv4Net> {
    let i = c.ifconfig?;
    match c.topology {
        Topology::Subnet => {
            let len = u32::from(i.remote_netmask).leading_ones() as u8;
            Ipv4Net::new(i.local, len).ok().map(|n| n.trunc())
        }
        _ => None,
    }
}
