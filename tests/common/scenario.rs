//! The reference end-to-end scenario: one server, two real `openvpn` 2.6 clients.
//!
//! Owns: the server/client configs and the assertions that define "a working server":
//! both clients complete initialization, get the expected IPv4/IPv6 addresses on their tun,
//! and every path pings (server <-> clients, client <-> client via client-to-client, client2
//! -> the IPv4/IPv6 iroute networks behind client1).
//!
//! The server program is a parameter ([`ServerKind`]), so the same scenario proves the lab
//! with `openvpn` as the server and then judges fwd as the server. The hosts and processes
//! are a [`Net`]'s (tests/common/net.rs), the one harness of the server tests.
//!
//! Expected addresses are what openvpn 2.6 itself assigns (checked against the binary):
//! `server 10.8.0.0/24` + `topology subnet` -> server 10.8.0.1, pool from 10.8.0.2;
//! `server-ipv6 fd00:8::/64` -> server fd00:8::1, pool from fd00:8::1000 sharing the IPv4
//! pool's slot index. client1 connects first (slot 0: 10.8.0.2, fd00:8::1000); client2 has a
//! ccd `ifconfig-ipv6-push fd00:8::100/64` and takes IPv4 slot 1 (10.8.0.3).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::lab::Host;
use super::net::{ip, Net, PING_TIMEOUT};
use super::pki::PkiPaths;

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

/// Asserts the tun addresses of the server and both clients (IPv6 first: the one waited
/// for).
fn check_addresses(net: &Net) {
    let expect = [
        (&net.server, [("fd00:8::1", 64), ("10.8.0.1", 24)]),
        (net.client(0), [("fd00:8::1000", 64), ("10.8.0.2", 24)]),
        (net.client(1), [("fd00:8::100", 64), ("10.8.0.3", 24)]),
    ];
    for (host, want) in &expect {
        net.assert_addrs(host, "tun0", want);
    }
}

/// Asserts that every path answers pings: server <-> clients, client <-> client, and the
/// iroute networks behind client1 from client2 and from the server.
fn check_pings(net: &Net) {
    let (server, c1, c2) = (&net.server, net.client(0), net.client(1));
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
        if !net.lab.ping_eventually(host, ip(dst), PING_TIMEOUT) {
            let _ = writeln!(failed, "  {what} {dst}");
        }
    }
    assert!(
        failed.is_empty(),
        "{} server over {:?} underlay: no ping reply on:\n{failed}",
        net.kind.label(),
        net.underlay
    );
}

/// Runs the whole scenario with `kind` as the server; panics (with every log's tail, via
/// the lab's Drop) on the first broken expectation. Returns silently if the lab cannot run
/// here (not root / tools missing, outside CI).
pub fn run_server_scenario(kind: ServerKind, underlay: Underlay) {
    let name = format!("{}-{:?}", kind.label(), underlay).to_lowercase();
    let Some(mut net) = Net::with_server(kind, &name, underlay, &["client1", "client2"]) else {
        return;
    };
    // The networks behind client1 that its iroutes point at.
    let c1 = net.client(0).clone();
    net.lab
        .stub_net(&c1, "lan0", &["10.99.0.1/24", "fd00:99::1/64"]);
    let conf = net.scenario_server_conf();
    net.start_server(&conf);
    // One after the other, so client1 takes pool slot 0.
    for i in 0..2 {
        net.connect(i, &net.client_conf(i));
    }
    check_addresses(&net);
    check_pings(&net);
}
