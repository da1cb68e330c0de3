//! A fwd server host plus stock `openvpn` client hosts, for end-to-end server tests that drive
//! clients one by one (connect, refuse, kill, move) and read the server's management
//! interface.
//!
//! Owns: the per-test configs, client processes and logs of one [`Net`], and the management
//! TCP helper [`Mgmt`].
//!
//! Invariants:
//! - every client host has its own veth link to the server (link k: 10.200.k.0/24 and
//!   fd00:200:k::/64, the server is `.1` / `::1`, the client `.2` / `::2`);
//! - the PKI holds one client certificate per client host, with the host's role as CN; a
//!   client may still connect with another host's certificate ([`Net::client_conf_as`]);
//! - client logs are `<role>-<run>.log` in the lab directory, so every run of every client
//!   can be read after a failure (the lab keeps its directory on panic);
//! - processes are stopped only through the lab (by PID).
//!
//! The one harness of the e2e server tests (e2e_fwd_server.rs, e2e_fwd_server_ops.rs,
//! mgmt_e2e.rs); e2e_fwd_client.rs shares its constants and [`assert_pings`].

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::lab::{tail, ChildId, Host, IfAddr, Lab};
use super::pki::{test_pki_with_clients, PkiPaths};
use super::scenario::{client_config, server_config, write_ccd, ServerKind, Underlay};

/// How long a client may take to complete initialization.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one path may take to answer a ping.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The openvpn client's ready line (fwd's server prints the same).
pub const READY: &str = "Initialization Sequence Completed";
/// The management port inside the server namespace (see [`Net::mgmt_conf`]).
pub const MGMT_PORT: u16 = 7505;

/// One lab at a time within a test binary: each fwd server runs a shard per core, and on a
/// small shared box parallel labs only make the ping timeouts flaky. A test that failed
/// poisons the lock; the next one still runs.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fwd binary under test as the server program.
pub fn fwd() -> ServerKind {
    ServerKind::Fwd(env!("CARGO_BIN_EXE_fwd").into())
}

/// Parses an address literal of the test itself.
pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad literal {s}: {e}"))
}

/// `conf` without the lines whose option name is in `drop`, followed by `add`.
pub fn edit(conf: &str, drop: &[&str], add: &str) -> String {
    let mut out: String = conf
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().next().unwrap_or("");
            !drop.contains(&name)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(add);
    if !add.is_empty() && !add.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// `a/len, b/len, …` for messages.
pub fn show(addrs: &[IfAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts that each `(from, to)` path answers pings (within [`PING_TIMEOUT`] each).
pub fn assert_pings(lab: &Lab, paths: &[(&Host, &str)]) {
    let mut failed = String::new();
    for (host, dst) in paths {
        if !lab.ping_eventually(host, ip(dst), PING_TIMEOUT) {
            let _ = writeln!(failed, "  {} -> {dst}", host.role());
        }
    }
    assert!(failed.is_empty(), "no ping reply on:\n{failed}");
}

/// One stock openvpn client host.
pub struct Client {
    pub host: Host,
    /// The host's role, which is also the CN of its own certificate.
    pub role: String,
    /// The server's underlay address as this client sees it.
    pub remote: IpAddr,
    /// This client's own underlay address (before any test moves it).
    pub addr: IpAddr,
    /// The client-side veth name (the interface its underlay address sits on).
    pub ifname: String,
    pub id: Option<ChildId>,
    pub runs: usize,
}

/// A fwd server host plus openvpn client hosts (see the module doc).
pub struct Net {
    pub kind: ServerKind,
    pub lab: Lab,
    pub server: Host,
    pub clients: Vec<Client>,
    pub pki: PkiPaths,
    pub underlay: Underlay,
    pub dir: PathBuf,
    pub server_id: Option<ChildId>,
    pub server_runs: usize,
}

impl Net {
    /// fwd as the server and one client host per role. `None` when the lab cannot run here
    /// (not root, tools missing; outside CI).
    pub fn new(name: &str, underlay: Underlay, roles: &[&str]) -> Option<Net> {
        Net::with_server(fwd(), name, underlay, roles)
    }

    /// Like [`Net::new`] with another server program (the openvpn baseline for a behaviour
    /// fwd must copy).
    pub fn with_server(
        kind: ServerKind,
        name: &str,
        underlay: Underlay,
        roles: &[&str],
    ) -> Option<Net> {
        let mut lab = Lab::try_new(name)?;
        let dir = lab.dir().to_path_buf();
        let server = lab.host("server");
        let v6 = underlay == Underlay::V6;
        let mut clients = Vec::new();
        for role in roles {
            let host = lab.host(role);
            let link = lab.link(&server, &host);
            clients.push(Client {
                host,
                role: role.to_string(),
                remote: link.a(v6),
                addr: link.b(v6),
                ifname: link.if_b.clone(),
                id: None,
                runs: 0,
            });
        }
        let pki = test_pki_with_clients(&dir, roles);
        Some(Net {
            kind,
            lab,
            server,
            clients,
            pki,
            underlay,
            dir,
            server_id: None,
            server_runs: 0,
        })
    }

    /// The reference server config (tls-crypt, `server` + `server-ipv6`, client-to-client,
    /// `keepalive 10 60`) without a ccd directory and without routes to iroutes.
    pub fn base_server_conf(&self) -> String {
        let ccd = self.dir.join("ccd");
        let conf = server_config(&self.kind, self.underlay, &self.pki, &ccd);
        edit(
            &conf,
            &["client-config-dir", "route", "route-ipv6", "push"],
            "",
        )
    }

    /// The full reference server config of the scenario: tls-crypt, `server` +
    /// `server-ipv6`, the scenario's ccd (written now), client-to-client, routes to client1's
    /// iroutes.
    pub fn scenario_server_conf(&self) -> String {
        let ccd = write_ccd(&self.dir);
        server_config(&self.kind, self.underlay, &self.pki, &ccd)
    }

    /// Disables IP forwarding in the server namespace: whatever crosses between clients
    /// then has to be switched inside fwd, the kernel will not route it back into the tun.
    pub fn server_forwarding_off(&self) {
        self.lab.exec_ok(
            &self.server,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=0",
                "net.ipv6.conf.all.forwarding=0",
            ],
        );
    }

    /// The config lines for fwd's management interface on 127.0.0.1:[`MGMT_PORT`] inside
    /// the server namespace.
    pub fn mgmt_conf() -> String {
        format!("management 127.0.0.1 {MGMT_PORT}\n")
    }

    /// The reference client config for client `i` with its own certificate.
    pub fn client_conf(&self, i: usize) -> String {
        let cn = self.clients[i].role.clone();
        self.client_conf_as(i, &cn)
    }

    /// The reference client config for client `i` with the certificate of `cn`.
    pub fn client_conf_as(&self, i: usize, cn: &str) -> String {
        client_config(self.underlay, &self.pki, cn, self.clients[i].remote)
    }

    pub fn client(&self, i: usize) -> &Host {
        &self.clients[i].host
    }

    pub fn server_log(&self) -> PathBuf {
        self.dir.join(format!("server-{}.log", self.server_runs))
    }

    /// The current log of client `i`.
    pub fn client_log(&self, i: usize) -> PathBuf {
        let c = &self.clients[i];
        self.dir.join(format!("{}-{}.log", c.role, c.runs))
    }

    /// The text of client `i`'s current log.
    pub fn client_log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.client_log(i)).unwrap_or_default()
    }

    /// Starts fwd with `conf` and waits for its ready line.
    pub fn start_server(&mut self, conf: &str) {
        self.server_runs += 1;
        let path = self.dir.join(format!("server-{}.conf", self.server_runs));
        std::fs::write(&path, conf).unwrap_or_else(|e| panic!("write server conf: {e}"));
        let log = self.server_log();
        let argv = self.kind.argv(&path);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        self.server_id = Some(self.lab.spawn(&self.server, &argv, &log));
        if let Err(e) = self
            .lab
            .wait_for_log(&log, self.kind.ready_needle(), CONNECT_TIMEOUT)
        {
            panic!("{} server did not start: {e}", self.kind.label());
        }
    }

    /// SIGTERM to the server (SIGKILL after 3 s); returns its exit status text.
    pub fn stop_server(&mut self) -> String {
        let id = self.server_id.take().expect("server running");
        self.lab.kill(id)
    }

    pub fn server_running(&self) -> bool {
        self.server_id.is_some_and(|id| self.lab.is_running(id))
    }

    /// Starts client `i` with `conf` without waiting; returns its log path.
    pub fn start_client(&mut self, i: usize, conf: &str) -> PathBuf {
        let c = &mut self.clients[i];
        c.runs += 1;
        let path = self.dir.join(format!("{}-{}.conf", c.role, c.runs));
        std::fs::write(&path, conf).unwrap_or_else(|e| panic!("write client conf: {e}"));
        let log = self.dir.join(format!("{}-{}.log", c.role, c.runs));
        let host = c.host.clone();
        let id = self.lab.spawn(
            &host,
            &["openvpn", "--config", &path.to_string_lossy()],
            &log,
        );
        self.clients[i].id = Some(id);
        log
    }

    /// Starts client `i` with `conf`, waits for initialization; returns its log.
    pub fn connect(&mut self, i: usize, conf: &str) -> String {
        let log = self.start_client(i, conf);
        match self.lab.wait_for_log(&log, READY, CONNECT_TIMEOUT) {
            Ok(text) => text,
            Err(e) => panic!(
                "{} did not connect to the {} server: {e}",
                self.clients[i].role,
                self.kind.label()
            ),
        }
    }

    /// Waits until client `i`'s current log contains `needle`; returns the log.
    pub fn wait_client_log(&self, i: usize, needle: &str, timeout: Duration) -> String {
        self.lab
            .wait_for_log(&self.client_log(i), needle, timeout)
            .unwrap_or_else(|e| panic!("{}: {e}", self.clients[i].role))
    }

    /// Waits until `needle` occurs `n` times in client `i`'s current log.
    pub fn wait_client_log_count(&self, i: usize, needle: &str, n: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            let text = self.client_log_text(i);
            let got = text.matches(needle).count();
            if got >= n {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{}: {needle:?} seen {got} times, want {n}; log tail:\n{}",
                self.clients[i].role,
                tail(&text, 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops client `i` (SIGTERM, so an `explicit-exit-notify` client says goodbye; the
    /// client removes its tun).
    pub fn disconnect(&mut self, i: usize) {
        if let Some(id) = self.clients[i].id.take() {
            self.lab.kill(id);
        }
    }

    /// Kills client `i` with SIGKILL: no exit notify, the tun just disappears.
    pub fn sigkill(&mut self, i: usize) {
        if let Some(id) = self.clients[i].id.take() {
            if let Ok(pid) = libc::pid_t::try_from(self.lab.pid(id)) {
                // SAFETY: kill(2) on the PID of our own unreaped child (not reused while the
                // lab holds it unreaped).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            // Reaps it (already dead: no SIGTERM grace needed).
            self.lab.kill(id);
        }
    }

    /// True while client `i`'s process runs.
    pub fn client_running(&self, i: usize) -> bool {
        self.clients[i].id.is_some_and(|id| self.lab.is_running(id))
    }

    /// Waits until client `i`'s process has exited (e.g. after AUTH_FAILED or HALT).
    pub fn wait_client_exit(&self, i: usize, timeout: Duration) {
        let what = format!("{} to exit", self.clients[i].role);
        wait_until(timeout, &what, || (!self.client_running(i)).then_some(()));
    }

    /// The addresses on client `i`'s tun0 (empty when it has none).
    pub fn tun_addrs(&self, i: usize) -> Vec<IfAddr> {
        self.lab.addrs(self.client(i), "tun0")
    }

    /// Asserts that `ifname` on `host` carries every `(addr, prefix_len)` in `want`.
    pub fn assert_addrs(&self, host: &Host, ifname: &str, want: &[(&str, u8)]) {
        let Some((first, _)) = want.first() else {
            return;
        };
        let addrs = self
            .lab
            .wait_for_addr(host, ifname, ip(first), Duration::from_secs(3));
        for (a, plen) in want {
            assert!(
                addrs
                    .iter()
                    .any(|x| x.addr == ip(a) && x.prefix_len == *plen),
                "{}: {ifname} lacks {a}/{plen}; has [{}]",
                host.role(),
                show(&addrs)
            );
        }
    }

    /// Asserts that each `(from, to)` path answers pings.
    pub fn assert_pings(&self, paths: &[(&Host, &str)]) {
        assert_pings(&self.lab, paths);
    }

    /// Asserts that no `(from, to)` path answers pings.
    pub fn assert_no_pings(&self, paths: &[(&Host, &str)]) {
        let mut leaked = String::new();
        for (host, dst) in paths {
            if self.lab.ping(host, ip(dst), 3) {
                let _ = writeln!(leaked, "  {} -> {dst}", host.role());
            }
        }
        assert!(leaked.is_empty(), "ping got through on:\n{leaked}");
    }

    /// `ip [-6] route show dev tun0` lines on `host`.
    pub fn routes(&self, host: &Host, v6: bool) -> Vec<String> {
        let fam = if v6 { "-6" } else { "-4" };
        self.lab
            .exec_ok(host, &["ip", fam, "route", "show", "dev", "tun0"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Client `i` got `v4`/`v6` (/24 and /64) and pings cross the tunnel both ways to and
    /// from the server's tun addresses (10.8.0.1, fd00:8::1).
    pub fn assert_client_works(&self, i: usize, v4: Option<&str>, v6: &str) {
        let c = self.client(i);
        let mut want = vec![(v6, 64)];
        want.extend(v4.map(|a| (a, 24)));
        self.assert_addrs(c, "tun0", &want);
        let mut paths: Vec<(&Host, &str)> = vec![(c, "fd00:8::1"), (&self.server, v6)];
        if let Some(v4) = v4 {
            paths.push((c, "10.8.0.1"));
            paths.push((&self.server, v4));
        }
        self.assert_pings(&paths);
    }

    /// A management connection to fwd (the config must carry [`Net::mgmt_conf`]).
    pub fn mgmt(&self) -> Mgmt {
        Mgmt::connect(&self.server, MGMT_PORT)
    }
}

/// A TCP connection to a management interface inside a namespace.
///
/// Every line read must end with CRLF (the management protocol's line end).
pub struct Mgmt {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    /// The `>INFO:` line the interface greeted with, line end included.
    pub greeting: String,
}

impl Mgmt {
    /// Connects to 127.0.0.1:`port` inside `host`'s namespace (a helper thread joins the
    /// namespace and connects; the socket keeps that namespace) and reads the greeting.
    pub fn connect(host: &Host, port: u16) -> Mgmt {
        let ns = PathBuf::from("/run/netns").join(host.ns());
        let stream = std::thread::spawn(move || -> std::io::Result<TcpStream> {
            let f = File::open(&ns)?;
            // SAFETY: setns on this short-lived thread only; the fd is valid for the call.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            TcpStream::connect(("127.0.0.1", port))
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
        .unwrap_or_else(|e| panic!("connect to the management port: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap_or_else(|e| panic!("{e}"));
        let reader = BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}")));
        let mut m = Mgmt {
            stream,
            reader,
            greeting: String::new(),
        };
        m.greeting = m.line();
        assert!(
            m.greeting.starts_with(">INFO:"),
            "greeting {:?}",
            m.greeting
        );
        m
    }

    /// The next line, notifications (`>...`) included, with its CRLF.
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader
            .read_line(&mut l)
            .unwrap_or_else(|e| panic!("management read: {e}"));
        assert!(!l.is_empty(), "management connection closed");
        assert!(l.ends_with("\r\n"), "line without CRLF: {l:?}");
        l
    }

    /// Sends `cmd` and the line end, without reading a reply.
    pub fn send(&mut self, cmd: &str) {
        self.stream
            .write_all(format!("{cmd}\n").as_bytes())
            .unwrap_or_else(|e| panic!("management write: {e}"));
    }

    /// The next reply line, skipping asynchronous notifications.
    fn reply_line(&mut self) -> String {
        loop {
            let l = self.line();
            if !l.starts_with('>') {
                return l;
            }
        }
    }

    /// A one-line reply (`SUCCESS: …` / `ERROR: …`), without the line end.
    pub fn one(&mut self, cmd: &str) -> String {
        self.send(cmd);
        self.reply_line().trim_end().to_string()
    }

    /// A multi-line reply up to and including `END`.
    pub fn multi(&mut self, cmd: &str) -> String {
        self.send(cmd);
        let mut text = String::new();
        loop {
            let l = self.reply_line();
            text.push_str(&l);
            if l.trim_end() == "END" || l.starts_with("ERROR") {
                return text;
            }
        }
    }

    /// `load-stats`' nclients.
    pub fn nclients(&mut self) -> usize {
        let reply = self.one("load-stats");
        reply
            .strip_prefix("SUCCESS: nclients=")
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad load-stats reply {reply:?}"))
    }

    /// The `CLIENT_LIST` rows of `status 2`, split into fields (CN is field 1, real address
    /// field 2, virtual IPv4 field 3, virtual IPv6 field 4, client id field 10).
    pub fn client_list(&mut self) -> Vec<Vec<String>> {
        self.multi("status 2")
            .lines()
            .filter(|l| l.starts_with("CLIENT_LIST,"))
            .map(|l| l.trim_end().split(',').map(str::to_string).collect())
            .collect()
    }
}
