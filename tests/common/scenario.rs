//! The reference end-to-end scenario: one server, two real `openvpn` 2.6 clients.
//!
//! Owns: the server/client configs and the assertions that define "a working server":
//! both clients complete initialization, get the expected IPv4/IPv6 addresses on their tun,
//! and every path pings (server <-> clients, client <-> client via client-to-client, client2
//! -> the IPv4/IPv6 iroute networks behind client1).
//!
//! The server program is a parameter ([`ServerKind`]), so the same scenario proves the lab
//! with `openvpn` as the server and then judges fwd as the server.
//!
//! Expected addresses are what openvpn 2.6 itself assigns (checked against the binary):
//! `server 10.8.0.0/24` + `topology subnet` -> server 10.8.0.1, pool from 10.8.0.2;
//! `server-ipv6 fd00:8::/64` -> server fd00:8::1, pool from fd00:8::1000 sharing the IPv4
//! pool's slot index. client1 connects first (slot 0: 10.8.0.2, fd00:8::1000); client2 has a
//! ccd `ifconfig-ipv6-push fd00:8::100/64` and takes IPv4 slot 1 (10.8.0.3).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lab::{Host, IfAddr, Lab};
use super::pki::{test_pki, PkiPaths};

/// Which program plays the server.
#[derive(Clone, Debug)]
pub enum ServerKind {
    /// `/usr/sbin/openvpn` (the baseline).
    OpenVpn,
    /// The fwd binary at this path (e.g. `env!("CARGO_BIN_EXE_fwd")`).
    Fwd(PathBuf),
}

impl ServerKind {
    /// Short name for logs and file names.
    pub fn label(&self) -> &'static str {
        match self {
            ServerKind::OpenVpn => "openvpn",
            ServerKind::Fwd(_) => "fwd",
        }
    }

    /// argv that runs the server with `config` (an OpenVPN-syntax server config).
    pub fn argv(&self, config: &Path) -> Vec<String> {
        let config = config.to_string_lossy().into_owned();
        match self {
            ServerKind::OpenVpn => vec!["openvpn".into(), "--config".into(), config],
            // fwd takes OpenVPN-style argv: `--config F` as in openvpn.
            ServerKind::Fwd(bin) => vec![
                bin.to_string_lossy().into_owned(),
                "--config".into(),
                config,
            ],
        }
    }

    /// The log line that says the server is ready for clients. fwd is expected to print the
    /// same line as openvpn; change it here if it does not.
    pub fn ready_needle(&self) -> &'static str {
        "Initialization Sequence Completed"
    }

    /// Server-only config lines that are specific to the program.
    fn extra_config(&self) -> &'static str {
        match self {
            // DCO needs a kernel module the lab does not have; say so rather than rely on
            // the fallback, so the log stays clean.
            ServerKind::OpenVpn => "disable-dco\n",
            ServerKind::Fwd(_) => "",
        }
    }
}

/// Address family of the underlay the VPN's UDP runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Underlay {
    V4,
    V6,
}

impl Underlay {
    fn is_v6(self) -> bool {
        self == Underlay::V6
    }
    /// openvpn `proto` value.
    fn proto(self) -> &'static str {
        match self {
            Underlay::V4 => "udp",
            Underlay::V6 => "udp6",
        }
    }
}

/// UDP port the server listens on (namespaces are private, so a fixed port is safe).
pub const PORT: u16 = 1194;
/// How long a client may take to complete initialization.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one path may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad literal {s}: {e}"))
}

/// The server config used by the scenario (OpenVPN syntax, paths absolute).
pub fn server_config(kind: &ServerKind, underlay: Underlay, pki: &PkiPaths, ccd: &Path) -> String {
    format!(
        "\
port {PORT}
proto {proto}
dev tun
ca {ca}
cert {cert}
key {key}
dh none
tls-crypt {tc}
topology subnet
server 10.8.0.0 255.255.255.0
server-ipv6 fd00:8::/64
client-config-dir {ccd}
client-to-client
route 10.99.0.0 255.255.255.0
route-ipv6 fd00:99::/64
push \"route 10.99.0.0 255.255.255.0\"
push \"route-ipv6 fd00:99::/64\"
keepalive 10 60
verb 3
{extra}",
        proto = underlay.proto(),
        ca = pki.ca_cert.display(),
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        tc = pki.tls_crypt.display(),
        ccd = ccd.display(),
        extra = kind.extra_config(),
    )
}

/// A client config for a real openvpn client connecting to `remote`.
pub fn client_config(underlay: Underlay, pki: &PkiPaths, name: &str, remote: IpAddr) -> String {
    let c = pki.client(name);
    format!(
        "\
client
dev tun
proto {proto}
remote {remote} {PORT}
nobind
ca {ca}
cert {cert}
key {key}
remote-cert-tls server
tls-crypt {tc}
disable-dco
connect-retry 1 1
verb 3
",
        proto = underlay.proto(),
        ca = pki.ca_cert.display(),
        cert = c.cert.display(),
        key = c.key.display(),
        tc = pki.tls_crypt.display(),
    )
}

/// Writes the ccd directory: client1 routes 10.99.0.0/24 and fd00:99::/64 (iroutes);
/// client2 gets a fixed IPv6 address.
pub fn write_ccd(dir: &Path) -> PathBuf {
    let ccd = dir.join("ccd");
    std::fs::create_dir_all(&ccd).unwrap_or_else(|e| panic!("mkdir ccd: {e}"));
    write(
        &ccd.join("client1"),
        "iroute 10.99.0.0 255.255.255.0\niroute-ipv6 fd00:99::/64\n",
    );
    write(
        &ccd.join("client2"),
        "ifconfig-ipv6-push fd00:8::100/64 fd00:8::1\n",
    );
    ccd
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn has(addrs: &[IfAddr], addr: &str, plen: u8) -> bool {
    let addr = ip(addr);
    addrs.iter().any(|a| a.addr == addr && a.prefix_len == plen)
}

fn show(addrs: &[IfAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The scenario's lab, hosts and files, for tests that run it step by step.
pub struct Scenario {
    pub kind: ServerKind,
    pub underlay: Underlay,
    pub lab: Lab,
    pub server: Host,
    pub client1: Host,
    pub client2: Host,
    pub pki: PkiPaths,
    pub server_conf: PathBuf,
    pub server_log: PathBuf,
}

impl Scenario {
    /// Builds the lab (server, client1, client2; links 1 and 2), the PKI, ccd and all
    /// configs, and the stub networks behind client1. Nothing runs yet. `None` (after
    /// printing why) when the lab cannot run here outside CI.
    pub fn setup(kind: ServerKind, underlay: Underlay) -> Option<Scenario> {
        let name = format!("{}-{:?}", kind.label(), underlay).to_lowercase();
        let mut lab = Lab::try_new(&name)?;
        let dir = lab.dir().to_path_buf();
        let server = lab.host("server");
        let client1 = lab.host("client1");
        let client2 = lab.host("client2");
        let l1 = lab.link(&server, &client1);
        let l2 = lab.link(&server, &client2);
        let v6 = underlay.is_v6();

        let pki = test_pki(&dir);
        let ccd = write_ccd(&dir);
        let server_conf = dir.join("server.conf");
        write(&server_conf, &server_config(&kind, underlay, &pki, &ccd));
        for (cn, link) in [("client1", &l1), ("client2", &l2)] {
            write(
                &dir.join(format!("{cn}.conf")),
                &client_config(underlay, &pki, cn, link.a(v6)),
            );
        }
        // The networks behind client1 that its iroutes point at.
        lab.stub_net(&client1, "lan0", &["10.99.0.1/24", "fd00:99::1/64"]);
        Some(Scenario {
            kind,
            underlay,
            lab,
            server,
            client1,
            client2,
            pki,
            server_conf,
            server_log: dir.join("server.log"),
        })
    }

    /// Starts the server and waits for its ready line.
    pub fn start_server(&mut self) {
        let argv = self.kind.argv(&self.server_conf);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.lab.spawn(&self.server, &argv, &self.server_log);
        if let Err(e) =
            self.lab
                .wait_for_log(&self.server_log, self.kind.ready_needle(), CONNECT_TIMEOUT)
        {
            panic!("{} server did not start: {e}", self.kind.label());
        }
    }

    /// Starts the openvpn clients one after the other (so client1 takes pool slot 0) and
    /// waits until each has completed initialization.
    pub fn connect_clients(&mut self) {
        let dir = self.lab.dir().to_path_buf();
        for (host, cn) in [
            (self.client1.clone(), "client1"),
            (self.client2.clone(), "client2"),
        ] {
            let conf = dir.join(format!("{cn}.conf"));
            let log = dir.join(format!("{cn}.log"));
            self.lab.spawn(
                &host,
                &["openvpn", "--config", &conf.to_string_lossy()],
                &log,
            );
            if let Err(e) =
                self.lab
                    .wait_for_log(&log, "Initialization Sequence Completed", CONNECT_TIMEOUT)
            {
                panic!(
                    "{cn} did not connect to the {} server: {e}",
                    self.kind.label()
                );
            }
        }
    }

    /// Asserts the tun addresses of the server and both clients.
    pub fn check_addresses(&self) {
        let expect = [
            (
                &self.server,
                "server",
                [("10.8.0.1", 24), ("fd00:8::1", 64)],
            ),
            (
                &self.client1,
                "client1",
                [("10.8.0.2", 24), ("fd00:8::1000", 64)],
            ),
            (
                &self.client2,
                "client2",
                [("10.8.0.3", 24), ("fd00:8::100", 64)],
            ),
        ];
        for (host, who, want) in &expect {
            let addrs = self
                .lab
                .wait_for_addr(host, "tun0", ip(want[1].0), Duration::from_secs(3));
            for (a, plen) in want {
                assert!(
                    has(&addrs, a, *plen),
                    "{who}: tun0 lacks {a}/{plen}; has [{}]",
                    show(&addrs)
                );
            }
        }
    }

    /// Asserts that every path answers pings: server <-> clients, client <-> client, and the
    /// iroute networks behind client1 from client2 and from the server.
    pub fn check_pings(&self) {
        let (server, c1, c2) = (&self.server, &self.client1, &self.client2);
        let paths: &[(&Host, &str, &str)] = &[
            (server, "server->client1", "10.8.0.2"),
            (server, "server->client1", "fd00:8::1000"),
            (server, "server->client2", "10.8.0.3"),
            (server, "server->client2", "fd00:8::100"),
            (c1, "client1->server", "10.8.0.1"),
            (c1, "client1->server", "fd00:8::1"),
            (c2, "client2->server", "10.8.0.1"),
            (c2, "client2->server", "fd00:8::1"),
            (c1, "client1->client2", "10.8.0.3"),
            (c1, "client1->client2", "fd00:8::100"),
            (c2, "client2->client1", "10.8.0.2"),
            (c2, "client2->client1", "fd00:8::1000"),
            (c2, "client2->iroute(client1)", "10.99.0.1"),
            (c2, "client2->iroute(client1)", "fd00:99::1"),
            (server, "server->iroute(client1)", "10.99.0.1"),
            (server, "server->iroute(client1)", "fd00:99::1"),
        ];
        let mut failed = String::new();
        for (host, what, dst) in paths {
            if !self.lab.ping_eventually(host, ip(dst), PING_TIMEOUT) {
                let _ = writeln!(failed, "  {what} {dst}");
            }
        }
        assert!(
            failed.is_empty(),
            "{} server over {:?} underlay: no ping reply on:\n{failed}",
            self.kind.label(),
            self.underlay
        );
    }
}

/// Runs the whole scenario with `kind` as the server; panics (with every log's tail, via
/// the lab's Drop) on the first broken expectation. Returns silently if the lab cannot run
/// here (not root / tools missing, outside CI).
pub fn run_server_scenario(kind: ServerKind, underlay: Underlay) {
    let Some(mut sc) = Scenario::setup(kind, underlay) else {
        return;
    };
    sc.start_server();
    sc.connect_clients();
    sc.check_addresses();
    sc.check_pings();
}
