//! Every option parses into its type, round-trips through render_effective → re-parse, and
//! has error cases with the exact `FILE:LINE: option: reason` format.

include!("config_common.rs");

use fwd::config::options::OPTIONS;
use fwd::config::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// (extra line(s), role) — one sample per option; `S` = server base, `C` = client base.
const SAMPLES: &[(&str, char)] = &[
    ("server 10.8.0.0 255.255.255.0", 'S'),
    ("server-ipv6 fd00:8::/64", 'S'),
    ("mode server\ntls-server\nifconfig 10.9.0.1 255.255.255.0\ntopology subnet", 'S'),
    ("tls-client\npull", 'C'),
    ("threads 4", 'S'),
    ("offload off\nio epoll", 'S'),
    ("offload on\nio uring", 'C'),
    ("force-prf", 'S'),
    ("dev-type tun\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("tun-ipv6\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("tun-mtu 1400\nmssfix 1360\ntxqueuelen 500\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("mssfix 1400 mtu\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("mssfix 1300 fixed", 'C'),
    ("proto udp6\nport 1195\nlocal ::1\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("proto udp4\nlport 1196\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("rport 443\nremote second.example.org\nremote 192.0.2.1 1197 udp6\nremote-random\nnobind\nfloat\nresolv-retry infinite\nconnect-retry 5 300\nserver-poll-timeout 10", 'C'),
    ("sndbuf 393216\nrcvbuf 393216\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("ifconfig-ipv6 fd00:9::1/64 fd00:9::2\nifconfig-ipv6-pool fd00:9::100/64\nmode server\ntls-server", 'S'),
    ("topology subnet\nifconfig 10.9.0.1 255.255.255.0\nifconfig-pool 10.9.0.10 10.9.0.100 255.255.255.0\nifconfig-pool-persist ipp.txt 0\nmode server\ntls-server", 'S'),
    ("server 10.8.0.0 255.255.255.0\nroute 192.168.1.0 255.255.255.0\nroute 192.168.2.0 255.255.255.0 10.8.0.2 5\nroute 192.168.3.0 255.255.255.0 vpn_gateway\nroute 192.168.4.0 255.255.255.0 default 7", 'S'),
    ("server-ipv6 fd00:8::/64\nroute-ipv6 fd00:100::/48\nroute-ipv6 fd00:200::/56 fd00:8::2 10", 'S'),
    ("route-gateway dhcp\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("route-nopull\nredirect-gateway def1 ipv6 !ipv4\npull-filter ignore \"route-ipv6 \"\npull-filter accept route\npull-filter reject redirect-gateway", 'C'),
    ("server 10.8.0.0 255.255.255.0\npush \"route-ipv6 fd00:100::/48\"\npush \"dhcp-option DNS 10.8.0.1\"", 'S'),
    ("server 10.8.0.0 255.255.255.0\nclient-config-dir ccd\nccd-exclusive\nclient-to-client\nduplicate-cn\nmax-clients 100\nconnect-freq-initial 500 10", 'S'),
    ("server 10.8.0.0 255.255.255.0\nkeepalive 10 60", 'S'),
    ("server 10.8.0.0 255.255.255.0\nping 5\nping-restart 30\nping-exit 600", 'S'),
    ("server 10.8.0.0 255.255.255.0\nhand-window 30\ntran-window 60\ntls-timeout 3\nreneg-sec 600\nreneg-bytes 1000000\nreneg-pkts 5000", 'S'),
    ("explicit-exit-notify 2", 'C'),
    ("server 10.8.0.0 255.255.255.0\nextra-certs tests/vectors/config/pki/ca.crt\ncrl-verify tests/vectors/config/pki/crl.pem\ndh tests/vectors/config/pki/dh.pem", 'S'),
    ("remote-cert-tls server\nverify-x509-name server name\ntls-version-min 1.2", 'C'),
    ("remote-cert-tls client\nverify-x509-name 'C=DE, CN=x' subject\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("tls-auth tests/vectors/config/pki/ta.key 1\nauth SHA256", 'C'),
    ("tls-auth tests/vectors/config/pki/ta.key\nkey-direction 0\nserver 10.8.0.0 255.255.255.0", 'S'),
    ("tls-crypt tests/vectors/config/pki/tc.key", 'C'),
    ("data-ciphers aes-256-gcm:CHACHA20-POLY1305\ndata-ciphers-fallback AES-256-CBC\ncipher AES-128-GCM\nreplay-window 128 30", 'C'),
    ("server 10.8.0.0 255.255.255.0\nstatus status.log 10\nstatus-version 3\nmanagement ::1 7505", 'S'),
    ("verb 4\nmute 20\nuser nobody\ngroup nogroup\npersist-key\npersist-tun\nsetenv FOO \"bar baz\"\nscript-security 2", 'C'),
    ("server 10.8.0.0 255.255.255.0\nauth-user-pass-verify \"/usr/local/bin/check user\" via-file", 'S'),
    ("auth-user-pass creds.txt", 'C'),
    ("auth-user-pass", 'C'),
    ("ignore-unknown-option block-outside-dns foo\nblock-outside-dns\nfoo 1 2", 'C'),
    ("allow-compression no", 'C'),
    ("setenv opt block-outside-dns", 'C'),
    ("config tests/vectors/config/include.conf\ncd tests", 'C'),
];

fn base(role: char) -> String {
    if role == 'S' {
        server_base()
    } else {
        client_base()
    }
}

fn with(role: char, extra: &str) -> Loaded {
    let mut t = base(role);
    // Server samples without their own address get a default one.
    if role == 'S' && !extra.contains("server") && !extra.contains("ifconfig") {
        t.push_str("server 10.8.0.0 255.255.255.0\n");
    }
    t.push_str(extra);
    t.push('\n');
    ok(&t)
}

#[test]
fn every_sample_parses_and_roundtrips() {
    for (extra, role) in SAMPLES {
        let l = with(*role, extra);
        roundtrip(&l);
    }
}

#[test]
fn every_documented_option_has_a_sample() {
    let all: String = SAMPLES
        .iter()
        .map(|s| format!("{}\n", s.0))
        .collect::<String>()
        + &server_base()
        + &client_base();
    for o in OPTIONS {
        if o.ccd_only {
            continue; // covered by config_ccd.rs
        }
        let found = all
            .lines()
            .any(|l| l.split_whitespace().next() == Some(o.name));
        assert!(found, "option `{}` has no parse sample", o.name);
    }
}

#[test]
fn typed_values() {
    let c = with(
        'S',
        "proto udp6\nport 1195\nlocal ::1\nserver 10.8.0.0 255.255.255.0\nthreads 4\nforce-prf",
    )
    .config;
    assert_eq!(c.role, Role::Server);
    assert_eq!(c.proto, TransportProto::Udp6);
    assert_eq!(c.port, 1195);
    assert_eq!(c.local, Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert_eq!(c.threads, Some(4));
    assert!(c.force_prf);

    let mss = |extra: &str| with('C', extra).config.mssfix;
    let m = |value, flag| Some(Mssfix { value, flag });
    assert_eq!(mss("mssfix 1360"), m(1360, MssfixFlag::Payload));
    assert_eq!(mss("mssfix 1400 mtu"), m(1400, MssfixFlag::Mtu));
    assert_eq!(mss("mssfix 1300 fixed"), m(1300, MssfixFlag::Fixed));
    assert_eq!(mss("mssfix 0"), m(0, MssfixFlag::Payload));
    // No argument keeps OpenVPN's default, exactly as if the line were absent.
    assert_eq!(mss("mssfix"), None);

    let c = with('C', "rport 443\nremote second.example.org\nremote 192.0.2.1 1197 udp6\nremote-random\nnobind\nfloat\nresolv-retry infinite\nconnect-retry 5 300\nserver-poll-timeout 10").config;
    assert_eq!(c.role, Role::Client);
    assert!(c.pull);
    assert_eq!(
        c.remotes,
        vec![
            Remote {
                host: "vpn.example.org".into(),
                port: 1194,
                proto: None
            },
            Remote {
                host: "second.example.org".into(),
                port: 443,
                proto: None
            },
            Remote {
                host: "192.0.2.1".into(),
                port: 1197,
                proto: Some(TransportProto::Udp6)
            },
        ]
    );
    assert!(c.remote_random && c.nobind && c.float);
    assert_eq!(c.resolv_retry, Some(ResolvRetry::Infinite));
    assert_eq!(c.connect_retry, Some((5, Some(300))));
    assert_eq!(c.server_poll_timeout, Some(10));

    let c = with(
        'C',
        "route-nopull\nredirect-gateway def1 ipv6 !ipv4\npull-filter ignore \"route-ipv6 \"",
    )
    .config;
    assert!(c.route_nopull);
    assert_eq!(
        c.redirect_gateway.map(|r| r.flags),
        Some(vec!["def1".into(), "ipv6".into(), "!ipv4".into()])
    );
    assert_eq!(
        c.pull_filters,
        vec![PullFilter {
            action: PullFilterAction::Ignore,
            text: "route-ipv6 ".into()
        }]
    );

    let c = with(
        'S',
        "server-ipv6 fd00:8::/64\nroute-ipv6 fd00:100::/48\nroute-ipv6 fd00:200::/56 fd00:8::2 10",
    )
    .config;
    assert_eq!(c.routes_v6[0].net.to_string(), "fd00:100::/48");
    assert_eq!(
        c.routes_v6[1].gateway,
        Some("fd00:8::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED))
    );
    assert_eq!(c.routes_v6[1].metric, Some(10));

    let c = with('S', "server 10.8.0.0 255.255.255.0\nstatus status.log 10\nstatus-version 3\nmanagement ::1 7505").config;
    assert_eq!(c.status, Some(("status.log".into(), 10)));
    assert_eq!(c.status_version, 3);
    assert_eq!(c.management, Some((IpAddr::V6(Ipv6Addr::LOCALHOST), 7505)));

    let c = with('C', "data-ciphers aes-256-gcm:CHACHA20-POLY1305\ndata-ciphers-fallback AES-256-CBC\ncipher AES-128-GCM\nreplay-window 128 30").config;
    // OpenVPN 2.6 appends --cipher to data-ciphers.
    assert_eq!(
        c.data_ciphers,
        ["AES-256-GCM", "CHACHA20-POLY1305", "AES-128-GCM"]
    );
    assert_eq!(c.data_ciphers_fallback.as_deref(), Some("AES-256-CBC"));
    assert_eq!(
        c.replay_window,
        ReplayWindow {
            size: 128,
            seconds: 30
        }
    );

    let c = with(
        'C',
        "tls-auth tests/vectors/config/pki/ta.key 1\nauth SHA256",
    )
    .config;
    match c.control_wrap {
        Some(ControlWrapSpec::TlsAuth {
            key,
            direction,
            auth,
        }) => {
            assert!(key.text.contains("BEGIN OpenVPN Static key V1"));
            assert_eq!(direction, Some(1));
            assert_eq!(auth, "SHA256");
            assert_eq!(parse_static_key(&key.text).map(|k| k.len()), Ok(256));
        }
        other => panic!("{other:?}"),
    }
    let c = with(
        'S',
        "tls-auth tests/vectors/config/pki/ta.key\nkey-direction 0",
    )
    .config;
    assert!(matches!(
        c.control_wrap,
        Some(ControlWrapSpec::TlsAuth {
            direction: Some(0),
            ..
        })
    ));
    let c = with('C', "tls-crypt tests/vectors/config/pki/tc.key").config;
    assert!(matches!(
        c.control_wrap,
        Some(ControlWrapSpec::TlsCrypt { .. })
    ));

    // Key material is text, not a path.
    let ca = c.tls.ca.map(|p| p.text).unwrap_or_default();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    let c = with('S', "server 10.8.0.0 255.255.255.0\nclient-config-dir ccd\nccd-exclusive\nclient-to-client\nduplicate-cn\nmax-clients 100").config;
    assert_eq!(c.ccd_dir, Some("ccd".into()));
    assert!(c.ccd_exclusive && c.client_to_client && c.duplicate_cn);
    assert_eq!(c.max_clients, 100);

    let c = with('S', "topology subnet\nifconfig 10.9.0.1 255.255.255.0\nifconfig-pool 10.9.0.10 10.9.0.100 255.255.255.0\nifconfig-pool-persist ipp.txt 0\nmode server\ntls-server").config;
    assert_eq!(
        c.pool_v4,
        Some(PoolV4Spec {
            start: Ipv4Addr::new(10, 9, 0, 10),
            end: Ipv4Addr::new(10, 9, 0, 100),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0))
        })
    );
    assert_eq!(c.pool_persist, Some(("ipp.txt".into(), 0)));
}

#[test]
fn defaults() {
    let c = with('S', "").config;
    assert_eq!(c.port, 1194);
    assert_eq!(c.proto, TransportProto::Udp);
    assert_eq!(c.topology, Topology::Net30);
    assert_eq!(c.max_clients, 1024);
    assert_eq!(c.hand_window, 60);
    assert_eq!(c.reneg_sec, 3600);
    assert_eq!(c.tun_mtu, 1500);
    assert_eq!(c.mssfix, None);
    assert_eq!(c.auth, "SHA1");
    assert_eq!(
        c.data_ciphers,
        ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"]
    );
    assert_eq!(
        c.replay_window,
        ReplayWindow {
            size: 64,
            seconds: 15
        }
    );
    assert_eq!(c.status_version, 1);
    assert!(c.control_wrap.is_none());
}

#[test]
fn inline_blocks_and_quoting() {
    let ca = std::fs::read_to_string(format!("{PKI}/ca.crt")).unwrap_or_default();
    let cert = std::fs::read_to_string(format!("{PKI}/client1.crt")).unwrap_or_default();
    let key = std::fs::read_to_string(format!("{PKI}/client1.key")).unwrap_or_default();
    let tc = std::fs::read_to_string(format!("{PKI}/tc.key")).unwrap_or_default();
    let text = format!(
        "client\n--dev tun\nremote 'vpn.example.org' 1194 ; comment\n<ca>\n{ca}</ca>\n<cert>\n{cert}</cert>\n<key>\n{key}</key>\n<tls-crypt>\n{tc}</tls-crypt>\nsetenv X \"a \\\"quoted\\\" b\"\n"
    );
    let l = ok(&text);
    assert_eq!(
        l.config.tls.ca.as_ref().map(|p| p.text.as_str()),
        Some(ca.as_str())
    );
    assert_eq!(
        l.config.tls.ca.as_ref().map(|p| &p.origin),
        Some(&MaterialOrigin::Inline)
    );
    assert_eq!(
        l.config.setenv,
        vec![("X".to_string(), "a \"quoted\" b".to_string())]
    );
    roundtrip(&l);
    // Default rendering redacts inline secrets.
    let r = render_effective(&l.config);
    assert!(r.contains("# key: inline, redacted"));
    assert!(r.contains("# tls-crypt: inline, redacted"));
    assert!(!r.contains("PRIVATE KEY"));
    assert!(r.contains("<ca>\n-----BEGIN CERTIFICATE-----"));
}

#[test]
fn command_line_equals_config_lines_and_overrides() {
    let file = std::env::temp_dir().join(format!("fwd-cfg-{}.conf", std::process::id()));
    let text = format!(
        "{}server 10.8.0.0 255.255.255.0\nthreads 2\n",
        server_base()
    );
    std::fs::write(&file, &text).unwrap_or_default();
    let args: Vec<String> = [
        "--config",
        file.to_str().unwrap_or(""),
        "--threads",
        "4",
        "--push",
        "route-ipv6 fd00::/48",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let l = load_args(&args).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.config.threads, Some(4));
    assert_eq!(
        l.config.push.first().map(String::as_str),
        Some("route-ipv6 fd00::/48")
    );
    // Options alone on the command line.
    let mut only: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        if let Some(n) = w.next() {
            only.push(format!("--{n}"));
            only.extend(w.map(str::to_string));
        }
    }
    let l2 = load_args(&only).unwrap_or_else(|e| panic!("{e}"));
    let l3 = load_file(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l2.config, l3.config);
    let _ = std::fs::remove_file(&file);
}

#[test]
fn error_format_and_collection() {
    let text = format!(
        "{}server 10.8.0.0 255.255.255.0\nifconfig-ipv6-pool fd00::/200\nport 0\nbogus-option 1\n",
        server_base()
    );
    let e = errs(&text);
    // All three bad lines are reported, in order, with file:line.
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        e[0],
        "test.conf:7: ifconfig-ipv6-pool: `fd00::/200`: prefix length must be 0..128"
    );
    assert_eq!(
        e[1],
        "test.conf:8: port: `0` is not a valid port (1..65535)"
    );
    assert_eq!(
        e[2],
        "test.conf:9: bogus-option: unknown option (list it in `ignore-unknown-option` to skip it)"
    );
    // Command-line location.
    let e = load_args(&[
        "--dev".to_string(),
        "tun".into(),
        "--port".into(),
        "x".into(),
    ])
    .err()
    .unwrap_or_default();
    assert!(
        e.iter()
            .any(|x| x.to_string() == "command line: port: `x` is not a valid port (1..65535)"),
        "{e}"
    );
}

/// (extra lines, role, expected error display) — the error must be reported exactly.
const ERRORS: &[(&str, char, &str)] = &[
    ("proto tcp", 'C', "test.conf:7: proto: not supported by fwd: proto tcp: fwd only implements UDP transport"),
    ("proto tcp-server", 'C', "test.conf:7: proto: not supported by fwd: proto tcp-server: fwd only implements UDP transport"),
    ("proto sctp", 'C', "test.conf:7: proto: unknown protocol `sctp` (use udp, udp4 or udp6)"),
    ("dev tap0", 'C', "test.conf:7: dev: not supported by fwd: dev tap: fwd implements routed tun mode only (layer 3); use dev tun"),
    ("dev-type tap", 'C', "test.conf:7: dev-type: not supported by fwd: dev-type tap: fwd implements routed tun mode only (layer 3)"),
    ("comp-lzo no", 'C', "test.conf:7: comp-lzo: not supported by fwd: compression framing is not implemented (VORACLE attack; OpenVPN 2.6 disables compression by default); remove it on both ends"),
    ("compress", 'C', "test.conf:7: compress: not supported by fwd: compression framing is not implemented (VORACLE attack; OpenVPN 2.6 disables compression by default); remove it on both ends"),
    ("allow-compression yes", 'C', "test.conf:7: allow-compression: not supported by fwd: only `allow-compression no` is accepted: fwd does not implement compression"),
    ("mssfix 1400 encap", 'C', "test.conf:7: mssfix: second argument must be `mtu` or `fixed`, got `encap`"),
    ("fragment 1300", 'C', "test.conf:7: fragment: not supported by fwd: fragment is not implemented; lower tun-mtu or use mssfix instead"),
    ("secret static.key", 'C', "test.conf:7: secret: not supported by fwd: static-key mode is insecure and removed in OpenVPN 2.7; use TLS (ca/cert/key, optionally tls-crypt)"),
    ("server 10.8.0.0 255.255.255.0 pool", 'S', "test.conf:6: server: third argument must be `nopool`, got `pool`"),
    ("server 10.8.0.1 255.255.255.0", 'S', "test.conf:6: server: network/netmask combination is invalid: 10.8.0.1 has host bits set for 255.255.255.0"),
    ("server 10.0.0.0 255.0.0.0", 'S', "test.conf:6: server: netmask 255.0.0.0 is too large: at most 65536 addresses (/16)"),
    ("server 10.8.0.0 255.255.255.252", 'S', "test.conf:6: server: with dev tun the subnet must be /29 (255.255.255.248) or larger, got /30"),
    ("server 10.8.0.0 255.0.255.0", 'S', "test.conf:6: server: netmask `255.0.255.0` is not contiguous"),
    ("server-ipv6 fd00::/48", 'S', "test.conf:6: server-ipv6: prefix length must be between 64 and 124, got /48"),
    ("server-ipv6 fd00::/126", 'S', "test.conf:6: server-ipv6: prefix length must be between 64 and 124, got /126"),
    ("server-ipv6 fd00::", 'S', "test.conf:6: server-ipv6: `fd00::`: expected PREFIX/BITS"),
    ("server-ipv6 10.0.0.0/24", 'S', "test.conf:6: server-ipv6: address `10.0.0.0` is not an IPv6 address"),
    ("server-ipv6 fd00::/64\nifconfig-ipv6-pool fd00::100/64", 'S', "test.conf:6: server-ipv6: cannot be combined with an explicit ifconfig-ipv6-pool (server-ipv6 sets it up)"),
    ("server 10.8.0.0 255.255.255.0 nopool\nserver-ipv6 fd00::/64", 'S', "test.conf:7: server-ipv6: cannot be combined with `server ... nopool`"),
    ("server 10.8.0.0 255.255.255.0\nifconfig-pool 10.8.0.10 10.8.0.20", 'S', "test.conf:6: server: cannot be combined with ifconfig-pool (add `nopool` to use your own pool)"),
    ("mode server\ntls-server\nifconfig 10.9.0.1 10.9.0.2\nifconfig-ipv6-pool fd00::1000/64", 'S', "test.conf:9: ifconfig-ipv6-pool: requires ifconfig-ipv6 (the server's own tun IPv6 address; or use server-ipv6)"),
    ("ifconfig-ipv6-pool fd00::1000/48\nserver 10.8.0.0 255.255.255.0", 'S', "test.conf:6: ifconfig-ipv6-pool: prefix length must be between 64 and 124, got /48"),
    ("ifconfig-ipv6 fd00::1/64\nserver 10.8.0.0 255.255.255.0", 'S', "test.conf:6: ifconfig-ipv6: expects 2 argument(s), got 1 argument(s)"),
    ("ifconfig-ipv6 fd00::1/32 fd00::2\nserver 10.8.0.0 255.255.255.0", 'S', "test.conf:6: ifconfig-ipv6: prefix length must be between 64 and 124, got /32"),
    ("ifconfig-pool 10.8.0.20 10.8.0.10\nmode server\ntls-server\nifconfig 10.8.0.1 10.8.0.2", 'S', "test.conf:6: ifconfig-pool: start 10.8.0.20 is above end 10.8.0.10"),
    ("ifconfig-pool-persist ipp.txt\nmode server\ntls-server\nifconfig 10.8.0.1 10.8.0.2", 'S', "test.conf:6: ifconfig-pool-persist: requires an address pool (server, server-ipv6, ifconfig-pool or ifconfig-ipv6-pool)"),
    ("server 10.8.0.0 255.255.255.0\nkeepalive 10 15", 'S', "test.conf:7: keepalive: the restart timeout (15) must be at least twice the ping interval (10); recommended: keepalive 10 60"),
    ("server 10.8.0.0 255.255.255.0\nkeepalive 0 60", 'S', "test.conf:7: keepalive: parameters must be > 0"),
    ("server 10.8.0.0 255.255.255.0\nkeepalive 10 60\nping 5", 'S', "test.conf:7: keepalive: conflicts with ping, ping-restart or ping-exit (keepalive sets them)"),
    ("server 10.8.0.0 255.255.255.0\npush \"route-ipv6 nonsense\"", 'S', "test.conf:7: push: address `nonsense` is not an IPv6 address"),
    ("server 10.8.0.0 255.255.255.0\npush \"a,b\"", 'S', "test.conf:7: push: push option must not contain `,` (it is the PUSH_REPLY separator)"),
    ("server 10.8.0.0 255.255.255.0\nroute-ipv6 fd00::/64 nothere", 'S', "test.conf:7: route-ipv6: gateway `nothere` is not an IPv6 address"),
    ("server 10.8.0.0 255.255.255.0\nroute 10.1.0.0 255.255.0.0 10.8.0.2 x", 'S', "test.conf:7: route: metric must be a non-negative integer, got `x`"),
    ("server 10.8.0.0 255.255.255.0\niroute 10.1.0.0 255.255.0.0", 'S', "test.conf:7: iroute: not allowed here: only valid in a client-config-dir file"),
    ("server 10.8.0.0 255.255.255.0\niroute-ipv6 fd00::/64", 'S', "test.conf:7: iroute-ipv6: not allowed here: only valid in a client-config-dir file"),
    ("server 10.8.0.0 255.255.255.0\npush-reset", 'S', "test.conf:7: push-reset: not allowed here: only valid in a client-config-dir file"),
    ("server 10.8.0.0 255.255.255.0\nremote x", 'S', "test.conf:7: remote: not allowed here: only valid in a client configuration"),
    ("push \"route 1.2.3.0 255.255.255.0\"", 'C', "test.conf:7: push: not allowed here: only valid in a server configuration"),
    ("server 10.8.0.0 255.255.255.0", 'C', "test.conf:7: server: cannot be combined with `client`"),
    ("server 10.8.0.0 255.255.255.0\ntopology ring", 'S', "test.conf:7: topology: unknown topology `ring` (net30|p2p|subnet)"),
    ("server 10.8.0.0 255.255.255.0\nthreads 0", 'S', "test.conf:7: threads: threads must be 1..1024, got 0"),
    ("server 10.8.0.0 255.255.255.0\ntls-auth tests/vectors/config/pki/ca.crt", 'S', "test.conf:7: tls-auth: tests/vectors/config/pki/ca.crt: missing `-----BEGIN OpenVPN Static key V1-----`"),
    ("server 10.8.0.0 255.255.255.0\ntls-crypt tests/vectors/config/pki/tc.key\ntls-auth tests/vectors/config/pki/ta.key", 'S', "test.conf:7: tls-crypt: cannot be combined with tls-auth"),
    ("server 10.8.0.0 255.255.255.0\nca tests/vectors/config/pki/missing.crt", 'S', "test.conf:7: ca: cannot read tests/vectors/config/pki/missing.crt: No such file or directory (os error 2)"),
    ("server 10.8.0.0 255.255.255.0\ncert tests/vectors/config/pki/server.key", 'S', "test.conf:7: cert: tests/vectors/config/pki/server.key does not contain a PEM certificate (`-----BEGIN CERTIFICATE-----`)"),
    ("server 10.8.0.0 255.255.255.0\nkey tests/vectors/config/pki/server.crt", 'S', "test.conf:7: key: tests/vectors/config/pki/server.crt does not contain a PEM private key (`PRIVATE KEY-----`)"),
    ("server 10.8.0.0 255.255.255.0\ncrl-verify tests/vectors/config/pki dir", 'S', "test.conf:7: crl-verify: not supported by fwd: crl-verify DIR dir (a directory of revoked serials) is not implemented; use a CRL file"),
    ("server 10.8.0.0 255.255.255.0\nmanagement 0.0.0.0 7505 pw.txt", 'S', "test.conf:7: management: not supported by fwd: management password files are not implemented; bind to localhost"),
    ("server 10.8.0.0 255.255.255.0\nmanagement /run/fwd.sock unix", 'S', "test.conf:7: management: `/run/fwd.sock` is not an IP address (unix sockets are not supported)"),
    ("server 10.8.0.0 255.255.255.0\nstatus-version 4", 'S', "test.conf:7: status-version: status-version must be 1..3, got `4`"),
    ("server 10.8.0.0 255.255.255.0\nverb 12", 'S', "test.conf:7: verb: verb must be 0..11, got 12"),
    ("server 10.8.0.0 255.255.255.0\nmax-clients 0", 'S', "test.conf:7: max-clients: max-clients must be greater than 0"),
    ("server 10.8.0.0 255.255.255.0\nccd-exclusive", 'S', "test.conf:7: ccd-exclusive: requires client-config-dir"),
    ("server 10.8.0.0 255.255.255.0\nauth-user-pass-verify x via-pigeon", 'S', "test.conf:7: auth-user-pass-verify: method must be via-env or via-file, got `via-pigeon`"),
    ("redirect-gateway def2", 'C', "test.conf:7: redirect-gateway: unknown flag `def2` (known: local autolocal def1 bypass-dhcp bypass-dns block-local ipv6 !ipv4)"),
    ("pull-filter drop route", 'C', "test.conf:7: pull-filter: unknown action `drop` (accept|ignore|reject)"),
    ("remote x 1194 tcp", 'C', "test.conf:7: remote: not supported by fwd: proto tcp: fwd only implements UDP transport"),
    ("local vpn.example.org", 'C', "test.conf:7: local: `vpn.example.org` is not an IP address (fwd does not resolve names for `local`)"),
    ("auth SHA3", 'C', "test.conf:7: auth: unknown digest `SHA3` (known: SHA1 SHA224 SHA256 SHA384 SHA512 MD5 none)"),
    ("key-direction 2", 'C', "test.conf:7: key-direction: key-direction must be 0..1, got `2`"),
    ("verify-x509-name a b", 'C', "test.conf:7: verify-x509-name: unknown type `b` (subject|name|name-prefix)"),
    ("remote-cert-tls peer", 'C', "test.conf:7: remote-cert-tls: `peer`: expected client or server"),
    ("tls-crypt-v2 x.key", 'C', "test.conf:7: tls-crypt-v2: not supported by fwd: tls-crypt-v2 is not implemented yet; use tls-crypt"),
    ("tls-server", 'C', "test.conf:7: tls-server: cannot be combined with tls-client"),
    ("replay-window 0", 'C', "test.conf:7: replay-window: window size must be 1..65536, got 0"),
    ("resolv-retry soon", 'C', "test.conf:7: resolv-retry: resolv-retry must be a non-negative integer, got `soon`"),
    ("ca [inline]", 'C', "test.conf:7: ca: `[inline]` is only valid for a <tag>…</tag> block"),
    ("config tests/vectors/config/loop.conf", 'C', "tests/vectors/config/loop.conf:2: config: include loop: tests/vectors/config/loop.conf includes itself"),
    ("config nonexistent.conf", 'C', "test.conf:7: config: cannot read nonexistent.conf: No such file or directory (os error 2)"),
    ("nobind extra", 'C', "test.conf:7: nobind: expects no arguments, got 1 argument(s)"),
    ("setenv FORWARD_COMPATIBLE 1", 'C', "test.conf:7: setenv: not supported by fwd: setenv FORWARD_COMPATIBLE would turn every unknown option into a warning; use ignore-unknown-option"),
    ("push \"unterminated", 'C', "test.conf:7: push: no closing quotation (\")"),
];

#[test]
fn error_cases() {
    for (extra, role, want) in ERRORS {
        let mut t = base(*role);
        t.push_str(extra);
        t.push('\n');
        let e = errs(&t);
        assert!(
            e.iter().any(|x| x == want),
            "for `{extra}`:\n  want: {want}\n  got:  {e:#?}"
        );
    }
}

#[test]
fn missing_required_options() {
    let e = errs("server 10.8.0.0 255.255.255.0\n");
    for want in [
        "test.conf: dev: missing required option (add `dev tun`)",
        "test.conf: ca: missing required option (CA certificate)",
        "test.conf: cert: missing required option (own certificate)",
        "test.conf: key: missing required option (own private key)",
    ] {
        assert!(e.iter().any(|x| x == want), "want {want} in {e:#?}");
    }
    let e = errs(&format!(
        "dev tun\nca {PKI}/ca.crt\ncert {PKI}/server.crt\nkey {PKI}/server.key\n"
    ));
    assert!(
        e.iter()
            .any(|x| x.starts_with("test.conf: mode: no role configured")),
        "{e:#?}"
    );
    let e = errs(&format!(
        "client\ndev tun\nca {PKI}/ca.crt\ncert {PKI}/client1.crt\nkey {PKI}/client1.key\n"
    ));
    assert!(
        e.iter()
            .any(|x| x == "test.conf: remote: a client needs at least one `remote`"),
        "{e:#?}"
    );
    let e = errs(&format!(
        "mode server\n{}ifconfig 10.8.0.1 10.8.0.2\n",
        server_base()
    ));
    assert!(
        e.iter()
            .any(|x| x == "test.conf:1: mode: `mode server` requires `tls-server`"),
        "{e:#?}"
    );
    let e = errs(&format!(
        "{}tls-server\nifconfig 10.8.0.1 10.8.0.2\n",
        server_base()
    ));
    assert!(
        e.iter().any(|x| x
            .starts_with("test.conf:6: tls-server: not supported by fwd: TLS point-to-point mode")),
        "{e:#?}"
    );
    let e = errs(&format!(
        "dev vpn0\n{}",
        &client_base().replace("dev tun\n", "")
    ));
    assert!(e.iter().any(|x| x == "test.conf:1: dev: cannot tell the device type from the name `vpn0`; add `dev-type tun`"), "{e:#?}");
    // auth-user-pass clients may omit cert/key.
    ok(&format!(
        "client\ndev tun\nremote x\nca {PKI}/ca.crt\nauth-user-pass\n"
    ));
}

#[test]
fn unknown_option_policy() {
    // Unknown before ignore-unknown-option is still an error (OpenVPN processes in order).
    let e = errs(&format!(
        "{}foo 1\nignore-unknown-option foo\n",
        client_base()
    ));
    assert_eq!(
        e,
        ["test.conf:7: foo: unknown option (list it in `ignore-unknown-option` to skip it)"]
    );
    let l = ok(&format!(
        "{}ignore-unknown-option foo\nfoo 1\nsetenv opt bar 2\n",
        client_base()
    ));
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        w.contains(&"test.conf:8: foo: unknown option ignored".to_string()),
        "{w:?}"
    );
    assert!(
        w.contains(&"test.conf:9: bar: unknown option ignored".to_string()),
        "{w:?}"
    );
    // `setenv opt` of a known option applies it.
    let l = ok(&format!("{}setenv opt verb 5\n", client_base()));
    assert_eq!(l.config.verb, 5);
}

#[test]
fn include_relative_to_cwd_and_cd() {
    let l = with('C', "config tests/vectors/config/include.conf");
    assert_eq!(l.config.verb, 6);
    assert_eq!(l.config.mute, 3);
    // cd changes how later relative paths resolve.
    let t = "client\ndev tun\nremote x\ncd tests/vectors/config/pki\nca ca.crt\ncert client1.crt\nkey client1.key\n";
    let l = ok(t);
    assert!(
        matches!(&l.config.tls.ca, Some(Pem { origin: MaterialOrigin::File(p), .. }) if p.ends_with("pki/ca.crt"))
    );
}
