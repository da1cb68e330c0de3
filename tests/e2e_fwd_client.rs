//! fwd as an OpenVPN client (`fwd --config client.conf`) against a stock `openvpn` 2.6 server
//! and against a fwd server, in network namespaces.
//!
//! Each test builds its own two-host lab (`server`, `client`; link 1: server 10.200.1.1 /
//! fd00:200:1::1, client .2 / ::2) and checks what a user sees: the ready line, the pushed
//! addresses and routes on the client's tun, pings both ways, and that SIGTERM removes
//! everything the client added. The lab kills every process by PID and deletes the
//! namespaces when dropped, also when an assertion fails.
//!
//! Needs root, /dev/net/tun, `ip`, `openvpn`, `openssl`, `ping`; skips elsewhere (fails under
//! CI).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::lab::{ChildId, Host, Lab, Link};
use common::net::{assert_pings, ip, PING_TIMEOUT, READY};
use common::pki::{test_pki_with_clients, PkiPaths};
use common::scenario::PORT;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    OpenVpn,
    Fwd,
}

/// One server, one fwd client, and their files.
struct ClientLab {
    lab: Lab,
    server: Host,
    client: Host,
    link: Link,
    pki: PkiPaths,
    dir: PathBuf,
    /// Used for the UDP underlay and `remote`.
    v6: bool,
}

impl ClientLab {
    fn setup(name: &str, v6: bool) -> Option<ClientLab> {
        let mut lab = Lab::try_new(name)?;
        let dir = lab.dir().to_path_buf();
        let server = lab.host("server");
        let client = lab.host("client");
        let link = lab.link(&server, &client);
        let pki = test_pki_with_clients(&dir, &["client1"]);
        Some(ClientLab {
            lab,
            server,
            client,
            link,
            pki,
            dir,
            v6,
        })
    }

    fn proto(&self) -> &'static str {
        if self.v6 {
            "udp6"
        } else {
            "udp"
        }
    }

    /// A `server` + `server-ipv6` config with tls-crypt; `extra` is appended.
    fn server_config(&self, kind: Server, topology: &str, extra: &str) -> String {
        format!(
            "port {PORT}\nproto {proto}\ndev tun\nca {ca}\ncert {cert}\nkey {key}\ndh none\n\
             tls-crypt {tc}\ntopology {topology}\nserver 10.8.0.0 255.255.255.0\n\
             server-ipv6 fd00:8::/64\npush \"route 10.99.0.0 255.255.255.0\"\n\
             push \"route-ipv6 fd00:99::/64\"\nverb 4\n{dco}{extra}\n",
            proto = self.proto(),
            ca = self.pki.ca_cert.display(),
            cert = self.pki.server_cert.display(),
            key = self.pki.server_key.display(),
            tc = self.pki.tls_crypt.display(),
            dco = if kind == Server::OpenVpn {
                "disable-dco\n"
            } else {
                ""
            },
        )
    }

    /// A client profile as `fwd init` / OpenVPN users write it; `remotes` are `HOST PORT`
    /// lines, `extra` is appended.
    fn client_config(&self, remotes: &[String], extra: &str) -> String {
        let c = self.pki.client("client1");
        let remotes: String = remotes.iter().map(|r| format!("remote {r}\n")).collect();
        format!(
            "client\ndev tun\nproto {proto}\n{remotes}nobind\nca {ca}\ncert {cert}\nkey {key}\n\
             remote-cert-tls server\ntls-crypt {tc}\nconnect-retry 1 1\nverb 3\n{extra}\n",
            proto = self.proto(),
            ca = self.pki.ca_cert.display(),
            cert = c.cert.display(),
            key = c.key.display(),
            tc = self.pki.tls_crypt.display(),
        )
    }

    /// The server's underlay address as a `remote` argument.
    fn server_remote(&self, port: u16) -> String {
        format!("{} {port}", self.link.a(self.v6))
    }

    /// Starts a server with `conf` (written to `name.conf`), logging to `name.log`; waits for
    /// its ready line.
    fn start_server(&mut self, kind: Server, name: &str, conf: &str) -> (ChildId, PathBuf) {
        let path = self.dir.join(format!("{name}.conf"));
        write(&path, conf);
        let log = self.dir.join(format!("{name}.log"));
        let path = path.to_string_lossy().into_owned();
        let prog = match kind {
            Server::OpenVpn => "openvpn",
            Server::Fwd => env!("CARGO_BIN_EXE_fwd"),
        };
        let server = self.server.clone();
        let id = self.lab.spawn(&server, &[prog, "--config", &path], &log);
        // The fwd server may not print OpenVPN's ready line; its own says it listens.
        let start = Instant::now();
        loop {
            let text = read(&log);
            if text.contains(READY)
                || (kind == Server::Fwd && text.contains("fwd server listening"))
            {
                break;
            }
            if !self.lab.is_running(id) || start.elapsed() >= CONNECT_TIMEOUT {
                panic!(
                    "server {name} did not start:\n{}",
                    common::lab::tail(&read(&log), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (id, log)
    }

    /// Starts `fwd --config` with `conf` in the client namespace and waits for its ready line.
    fn start_client(&mut self, conf: &str) -> (ChildId, PathBuf) {
        let path = self.dir.join("client.conf");
        write(&path, conf);
        let log = self.dir.join("client.log");
        let path = path.to_string_lossy().into_owned();
        let client = self.client.clone();
        let id = self.lab.spawn(
            &client,
            &[env!("CARGO_BIN_EXE_fwd"), "--config", &path],
            &log,
        );
        if let Err(e) = self.lab.wait_for_log(&log, READY, CONNECT_TIMEOUT) {
            panic!("fwd client did not connect: {e}");
        }
        (id, log)
    }

    fn routes(&self, host: &Host, v6: bool) -> String {
        let fam = if v6 { "-6" } else { "-4" };
        self.lab.exec_ok(host, &["ip", fam, "route", "show"])
    }

    /// Asserts that `tun0` in the client namespace carries exactly these addresses (besides
    /// the link-local one).
    fn assert_client_addrs(&self, want: &[(&str, u8)]) {
        let addrs =
            self.lab
                .wait_for_addr(&self.client, "tun0", ip(want[0].0), Duration::from_secs(3));
        for (a, plen) in want {
            assert!(
                addrs
                    .iter()
                    .any(|x| x.addr == ip(a) && x.prefix_len == *plen),
                "client tun0 lacks {a}/{plen}; has {addrs:?}"
            );
        }
        let global = addrs.iter().filter(|a| a.scope == "global").count();
        assert_eq!(
            global,
            want.len(),
            "client tun0 has unexpected addresses: {addrs:?}"
        );
    }

    fn assert_pings(&self, paths: &[(&Host, &str)]) {
        assert_pings(&self.lab, paths);
    }

    /// After the client is gone: no tun device, and no route through one.
    fn assert_client_clean(&self) {
        let links = self
            .lab
            .exec_ok(&self.client, &["ip", "-o", "link", "show"]);
        assert!(!links.contains("tun"), "tun device left behind:\n{links}");
        for v6 in [false, true] {
            let r = self.routes(&self.client, v6);
            assert!(!r.contains("tun"), "routes left behind:\n{r}");
        }
    }
}

/// Waits until `needle` occurs at least `n` times in the log at `path`; panics with `what`
/// and the log's tail after `timeout`.
fn wait_for_count(path: &Path, needle: &str, n: usize, timeout: Duration, what: &str) {
    let start = Instant::now();
    loop {
        let text = read(path);
        if text.matches(needle).count() >= n {
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: timed out waiting for {n}x {needle:?} in {}:\n{}",
            path.display(),
            common::lab::tail(&text, 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has_line(routes: &str, prefix: &str) -> bool {
    routes.lines().any(|l| l.starts_with(prefix))
}

/// The full subnet scenario against `kind`: pushed addresses and routes, `redirect-gateway
/// def1 ipv6` (with the bypass host route to the server), pings both ways, and SIGTERM
/// undoing all of it. Against stock openvpn it also checks `explicit-exit-notify`.
fn subnet_scenario(kind: Server, v6: bool) {
    let name = format!(
        "client-{}-{}",
        if kind == Server::Fwd { "fwd" } else { "ovpn" },
        if v6 { 6 } else { 4 }
    );
    let Some(mut cl) = ClientLab::setup(&name, v6) else {
        return;
    };
    // The client's default routes point at the server's side of the link, so
    // redirect-gateway has an original gateway to keep the server reachable through.
    let (gw4, gw6) = (cl.link.a4.to_string(), cl.link.a6.to_string());
    cl.lab
        .exec_ok(&cl.client, &["ip", "route", "add", "default", "via", &gw4]);
    cl.lab.exec_ok(
        &cl.client,
        &["ip", "-6", "route", "add", "default", "via", &gw6],
    );

    // Renegotiation: the stock server starts it; against fwd, the client does.
    let (server_reneg, client_reneg) = match kind {
        Server::OpenVpn => ("reneg-sec 2", ""),
        Server::Fwd => ("", "reneg-sec 2"),
    };
    let conf = cl.server_config(
        kind,
        "subnet",
        &format!("keepalive 10 60\npush \"redirect-gateway def1 ipv6\"\n{server_reneg}"),
    );
    let (_, server_log) = cl.start_server(kind, "server", &conf);
    let conf = cl.client_config(
        &[cl.server_remote(PORT)],
        &format!("explicit-exit-notify 1\n{client_reneg}"),
    );
    let (client_id, client_log) = cl.start_client(&conf);

    cl.assert_client_addrs(&[("10.8.0.2", 24), ("fd00:8::1000", 64)]);
    let (r4, r6) = (cl.routes(&cl.client, false), cl.routes(&cl.client, true));
    for want in [
        "10.99.0.0/24 dev tun0",
        "0.0.0.0/1 dev tun0",
        "128.0.0.0/1 dev tun0",
    ] {
        assert!(has_line(&r4, want), "missing IPv4 route {want}:\n{r4}");
    }
    for want in [
        "fd00:99::/64 dev tun0",
        "::/3 dev tun0",
        "2000::/4 dev tun0",
        "fc00::/7 dev tun0",
    ] {
        assert!(has_line(&r6, want), "missing IPv6 route {want}:\n{r6}");
    }
    // The bypass: the server's own address via the original gateway, in its family.
    let (bypass, table) = if v6 {
        (format!("{gw6} via {gw6}"), &r6)
    } else {
        (format!("{gw4} via {gw4}"), &r4)
    };
    assert!(
        has_line(table, &bypass),
        "no bypass route {bypass}:\n{table}"
    );

    let (server, client) = (cl.server.clone(), cl.client.clone());
    cl.assert_pings(&[
        (&client, "10.8.0.1"),
        (&client, "fd00:8::1"),
        (&server, "10.8.0.2"),
        (&server, "fd00:8::1000"),
    ]);

    // Two renegotiations later the tunnel still carries traffic.
    wait_for_count(
        &client_log,
        "renegotiated key installed",
        2,
        CONNECT_TIMEOUT,
        "no data-channel renegotiation",
    );
    cl.assert_pings(&[(&client, "10.8.0.1"), (&server, "fd00:8::1000")]);

    let status = cl.lab.kill(client_id);
    assert!(
        status.contains("after SIGTERM"),
        "fwd did not exit on SIGTERM: {status}"
    );
    cl.assert_client_clean();
    let (r4, r6) = (cl.routes(&cl.client, false), cl.routes(&cl.client, true));
    assert!(
        !has_line(&r4, &format!("{gw4} via")) && !has_line(&r6, &format!("{gw6} via")),
        "bypass left:\n{r4}{r6}"
    );
    assert!(
        has_line(&r4, "default via") && has_line(&r6, "default via"),
        "default routes lost:\n{r4}{r6}"
    );

    // cc-exit: the EXIT control message, not a ping-restart timeout 60 s later.
    let (needle, wait) = match kind {
        Server::OpenVpn => ("CC-EEN exit message received by peer", 3),
        // fwd, like openvpn, drops the client 5 s after its EXIT.
        Server::Fwd => ("PeerExit(\"EXIT\")", 10),
    };
    if let Err(e) = cl
        .lab
        .wait_for_log(&server_log, needle, Duration::from_secs(wait))
    {
        panic!("server did not get the exit notification: {e}");
    }
}

#[test]
fn openvpn_server_subnet_ipv4_underlay() {
    subnet_scenario(Server::OpenVpn, false);
}

#[test]
fn openvpn_server_subnet_ipv6_underlay() {
    subnet_scenario(Server::OpenVpn, true);
}

#[test]
fn fwd_server_subnet_ipv6_underlay() {
    subnet_scenario(Server::Fwd, true);
}

/// `ping-restart`: the server dies, comes back, and the client reconnects by itself.
#[test]
fn openvpn_server_restart_ping_restart_reconnects() {
    let Some(mut cl) = ClientLab::setup("client-restart", false) else {
        return;
    };
    let conf = cl.server_config(Server::OpenVpn, "subnet", "keepalive 1 4");
    let (server_id, _) = cl.start_server(Server::OpenVpn, "server", &conf);
    let (_, client_log) = cl.start_client(&cl.client_config(&[cl.server_remote(PORT)], ""));
    let client = cl.client.clone();
    cl.assert_pings(&[(&client, "10.8.0.1")]);

    // SIGKILL-like silence: stop it without an exit notification reaching the client.
    let pid = cl.lab.pid(server_id);
    // SAFETY: kill(2) on the PID of a process this test spawned and has not reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    cl.lab.kill(server_id);
    wait_for_count(
        &client_log,
        "Inactivity timeout (--ping-restart)",
        1,
        Duration::from_secs(15),
        "client did not notice the dead server",
    );
    // Logged after the pushed configuration was undone.
    wait_for_count(
        &client_log,
        "connection lost, restarting",
        1,
        PING_TIMEOUT,
        "client did not restart",
    );
    let links = cl
        .lab
        .exec_ok(&client, &["ip", "-o", "addr", "show", "dev", "tun0"]);
    assert!(
        !links.contains("10.8.0.2"),
        "pushed address kept while disconnected:\n{links}"
    );

    // This time the server says goodbye: with explicit-exit-notify a 2.6 server sends
    // RESTART to its clients on SIGTERM, and the client restarts without waiting for
    // ping-restart.
    let conf = format!("{conf}explicit-exit-notify 1\n");
    let (server_id, _) = cl.start_server(Server::OpenVpn, "server2", &conf);
    wait_for_count(
        &client_log,
        READY,
        2,
        CONNECT_TIMEOUT,
        "client did not reconnect",
    );
    cl.assert_client_addrs(&[("10.8.0.2", 24), ("fd00:8::1000", 64)]);
    let server = cl.server.clone();
    cl.assert_pings(&[
        (&client, "10.8.0.1"),
        (&client, "fd00:8::1"),
        (&server, "10.8.0.2"),
    ]);

    cl.lab.kill(server_id);
    wait_for_count(
        &client_log,
        "PeerExit(\"Restart",
        1,
        Duration::from_secs(10),
        "client did not act on the server's RESTART",
    );
    cl.start_server(Server::OpenVpn, "server3", &conf);
    wait_for_count(
        &client_log,
        READY,
        3,
        CONNECT_TIMEOUT,
        "client did not reconnect after RESTART",
    );
    cl.assert_pings(&[(&client, "10.8.0.1"), (&server, "fd00:8::1000")]);
}

/// `topology net30` from a stock server, a `remote` list whose first entries fail (one
/// silent, one refusing), and `pull-filter ignore "route-ipv6"`.
#[test]
fn openvpn_server_net30_remote_fallback_pull_filter() {
    let Some(mut cl) = ClientLab::setup("client-net30", false) else {
        return;
    };
    let conf = cl.server_config(Server::OpenVpn, "net30", "keepalive 10 60");
    let (_, server_log) = cl.start_server(Server::OpenVpn, "server", &conf);
    // 10.200.1.77: on the link, but nobody answers (not even ARP); port 1195 on the server:
    // nothing listens (ICMP port unreachable).
    let remotes = [
        "10.200.1.77 1194".to_string(),
        cl.server_remote(PORT + 1),
        cl.server_remote(PORT),
    ];
    let conf = cl.client_config(
        &remotes,
        "server-poll-timeout 2\npull-filter ignore \"route-ipv6\"",
    );
    let (_, client_log) = cl.start_client(&conf);
    let log = read(&client_log);
    for failed in [
        "10.200.1.77:1194 failed",
        &format!("{}:{} failed", cl.link.a4, PORT + 1),
    ] {
        assert!(
            log.contains(failed),
            "expected a failed attempt {failed:?} first:\n{log}"
        );
    }

    // The server pushes `ifconfig 10.8.0.6 10.8.0.5` and `route 10.8.0.1` in net30.
    let pushed = read(&server_log);
    assert!(
        pushed.contains("ifconfig 10.8.0.6 10.8.0.5"),
        "server did not push net30 ifconfig"
    );
    let addrs = cl
        .lab
        .exec_ok(&cl.client, &["ip", "-o", "addr", "show", "dev", "tun0"]);
    assert!(
        addrs.contains("inet 10.8.0.6 peer 10.8.0.5/32"),
        "no point-to-point address:\n{addrs}"
    );
    assert!(
        addrs.contains("fd00:8::1000/64"),
        "no IPv6 address:\n{addrs}"
    );
    let (r4, r6) = (cl.routes(&cl.client, false), cl.routes(&cl.client, true));
    assert!(
        has_line(&r4, "10.8.0.1 dev tun0"),
        "no route to the server's tun address:\n{r4}"
    );
    assert!(
        has_line(&r4, "10.99.0.0/24 dev tun0"),
        "pushed IPv4 route missing:\n{r4}"
    );
    assert!(
        !r6.contains("fd00:99::"),
        "route-ipv6 installed despite pull-filter:\n{r6}"
    );

    let (server, client) = (cl.server.clone(), cl.client.clone());
    cl.assert_pings(&[
        (&client, "10.8.0.1"),
        (&client, "fd00:8::1"),
        (&server, "10.8.0.6"),
        (&server, "fd00:8::1000"),
    ]);
}
