//! `fwd demo`: a throw-away lab in network namespaces showing fwd at work.
//!
//! Owns the demo's narrative: generate a PKI and OpenVPN-syntax configs, build a lab (a
//! server, two clients, a LAN behind client1), run this very binary as the server, connect a
//! stock `openvpn` client and an fwd client, show the addresses handed out, prove every path
//! with ping (✔/✘ per check), measure throughput, and tear everything down.
//!
//! Invariants:
//! - nothing outside the lab's namespaces (`fwdd-<pid>-…`) and the private work directory is
//!   touched; see [`lab`] for the teardown guarantees;
//! - teardown runs on success, on failure, on Ctrl-C (SIGINT/SIGTERM only set a flag that
//!   every wait loop polls, see [`signal`]) and, via `Drop`, on a panic;
//! - bounded: every wait has a timeout; the whole demo takes seconds when things work;
//! - exit code: 0 all checks passed, 1 a check or step failed, 2 cannot run here (not root,
//!   no /dev/net/tun, no `ip`), 130 interrupted.

mod files;
mod lab;
mod throughput;

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};

use files::{ClientProgram, ClientSpec, WorkDir};
use lab::{find_bin, IfAddr, Lab, Ns, ProcId};

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// SIGINT or SIGTERM arrived.
    #[error("interrupted")]
    Interrupted,
    /// A step could not be completed.
    #[error("{0}")]
    Failed(String),
}

/// The demo's addressing (inside the lab only).
#[derive(Clone, Debug)]
pub struct Plan {
    pub port: u16,
    /// `server 10.8.0.0 255.255.255.0`
    pub vpn_v4_net: Ipv4Addr,
    pub vpn_v4_server: Ipv4Addr,
    /// `server-ipv6 fd00:8::/64`
    pub vpn_v6_net: Ipv6Net,
    pub vpn_v6_server: Ipv6Addr,
    /// client2's ccd `ifconfig-ipv6-push` address.
    pub client2_fixed_v6: Ipv6Addr,
    /// The LAN behind client1 (iroute / iroute-ipv6 targets) and client1's address on it.
    pub lan_v4_net: Ipv4Addr,
    pub lan_v4_host: Ipv4Addr,
    pub lan_v6_net: Ipv6Net,
    pub lan_v6_host: Ipv6Addr,
}

impl Default for Plan {
    fn default() -> Plan {
        let v6 = |s: [u16; 8]| Ipv6Addr::from(s);
        Plan {
            port: 1194,
            vpn_v4_net: Ipv4Addr::new(10, 8, 0, 0),
            vpn_v4_server: Ipv4Addr::new(10, 8, 0, 1),
            vpn_v6_net: Ipv6Net::new(v6([0xfd00, 8, 0, 0, 0, 0, 0, 0]), 64).unwrap_or_default(),
            vpn_v6_server: v6([0xfd00, 8, 0, 0, 0, 0, 0, 1]),
            client2_fixed_v6: v6([0xfd00, 8, 0, 0, 0, 0, 0, 0x100]),
            lan_v4_net: Ipv4Addr::new(10, 99, 0, 0),
            lan_v4_host: Ipv4Addr::new(10, 99, 0, 1),
            lan_v6_net: Ipv6Net::new(v6([0xfd00, 0x99, 0, 0, 0, 0, 0, 0]), 64).unwrap_or_default(),
            lan_v6_host: v6([0xfd00, 0x99, 0, 0, 0, 0, 0, 1]),
        }
    }
}

/// How long the server may take to come up, and a client to connect.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one path may take to answer its first ping.
const PING_TIMEOUT: Duration = Duration::from_secs(4);
/// The line both `openvpn` and the fwd client log once the tunnel is up.
const CONNECTED: &str = "Initialization Sequence Completed";

/// Step headings and indented detail lines, flushed as they happen.
struct Console<'a> {
    out: &'a mut dyn Write,
    step: u32,
}

impl Console<'_> {
    fn step(&mut self, title: &str) {
        self.step += 1;
        let _ = writeln!(self.out, "\n[{}] {title}", self.step);
        let _ = self.out.flush();
    }

    fn say(&mut self, line: &str) {
        for l in line.lines() {
            if l.is_empty() {
                let _ = writeln!(self.out);
            } else {
                let _ = writeln!(self.out, "    {l}");
            }
        }
        let _ = self.out.flush();
    }
}

/// One reachability (or other) check and its outcome.
struct Check {
    ok: bool,
    what: String,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn record(&mut self, con: &mut Console<'_>, ok: bool, what: String, detail: &str) {
        let mark = if ok { "✔" } else { "✘" };
        con.say(&format!("{mark} {what:<42} {detail}"));
        self.0.push(Check { ok, what });
    }
    fn failed(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.what.as_str())
            .collect()
    }
}

/// Why the demo cannot run on this machine, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "needs root (it creates network namespaces and tun devices); try `sudo fwd demo`"
                .into(),
        );
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (modprobe tun)".into());
    }
    for b in ["ip", "ping"] {
        if find_bin(b).is_none() {
            return Some(format!(
                "`{b}` is not installed (apt-get install iproute2 iputils-ping)"
            ));
        }
    }
    None
}

/// Entry point of `fwd demo`; returns the exit code.
pub fn main(out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    crate::os::signals::install();
    if let Some(reason) = cannot_run() {
        let _ = writeln!(err, "fwd demo: cannot run: {reason}");
        return 2;
    }
    let started = Instant::now();
    let mut con = Console { out, step: 0 };
    con.say(&format!(
        "fwd {} demo: an fwd server and two clients in throw-away network namespaces",
        env!("CARGO_PKG_VERSION")
    ));
    let work = match WorkDir::create() {
        Ok(w) => w,
        Err(e) => {
            let _ = writeln!(err, "fwd demo: {e}");
            return 1;
        }
    };
    let mut lab = match Lab::new() {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(err, "fwd demo: {e}");
            return 1;
        }
    };
    let mut checks = Checks::default();
    let mut result = run(&mut con, &work, &mut lab, &mut checks);
    // Ctrl-C in a terminal signals the whole process group: a child may die of it and be
    // noticed as a failure a moment before the flag is. It was still an interruption.
    if matches!(result, Err(DemoError::Failed(_))) && crate::os::signals::interrupted() {
        result = Err(DemoError::Interrupted);
    }
    if let Err(e) = &result {
        match e {
            DemoError::Interrupted => con.say("\ninterrupted: tearing down"),
            DemoError::Failed(m) => {
                con.say(&format!("\n✘ {m}"));
                let _ = writeln!(err, "fwd demo: {}", m.lines().next().unwrap_or_default());
            }
        }
    }

    con.step("Teardown");
    lab.teardown(&mut |line| con.say(line));
    if let Ok(text) = std::fs::read_to_string(work.path().join("ipp.txt")) {
        if !text.trim().is_empty() {
            con.say("the server persisted its assignments (ifconfig-pool-persist ipp.txt):");
            con.say(&indent(&text));
        }
    }
    let dir = work.path().to_path_buf();
    if std::env::var_os("FWD_DEMO_KEEP").is_some() {
        work.keep();
        con.say(&format!("kept {} (FWD_DEMO_KEEP is set)", dir.display()));
    } else {
        drop(work);
        con.say(&format!("removed {}", dir.display()));
    }

    let failed = checks.failed();
    let total = checks.0.len();
    let secs = started.elapsed().as_secs_f64();
    match result {
        Err(DemoError::Interrupted) => {
            con.say(&format!(
                "\nfwd demo: interrupted after {secs:.1} s; everything removed"
            ));
            130
        }
        Err(DemoError::Failed(_)) => {
            con.say(&format!(
                "\nfwd demo: FAILED after {secs:.1} s; everything removed"
            ));
            1
        }
        Ok(()) if failed.is_empty() => {
            con.say(&format!(
                "\nfwd demo: all {total} checks passed in {secs:.1} s ✔"
            ));
            0
        }
        Ok(()) => {
            con.say(&format!(
                "\nfwd demo: {} of {total} checks FAILED ({}) in {secs:.1} s",
                failed.len(),
                failed.join("; ")
            ));
            1
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn interrupted() -> Result<(), DemoError> {
    if crate::os::signals::interrupted() {
        Err(DemoError::Interrupted)
    } else {
        Ok(())
    }
}

/// A client's tunnel addresses as read from its tun device.
struct TunAddrs {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    all: Vec<IfAddr>,
}

impl TunAddrs {
    fn read(lab: &Lab, ns: &Ns) -> TunAddrs {
        let all = lab.tun_addrs(ns);
        let v4 = all.iter().find_map(|a| match a.addr {
            IpAddr::V4(v) => Some(v),
            IpAddr::V6(_) => None,
        });
        let v6 = all.iter().find_map(|a| match a.addr {
            IpAddr::V6(v) => Some(v),
            IpAddr::V4(_) => None,
        });
        TunAddrs { v4, v6, all }
    }
}

impl fmt::Display for TunAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dev = self.all.first().map_or("tun", |a| a.ifname.as_str());
        let list: Vec<String> = self.all.iter().map(|a| a.to_string()).collect();
        write!(f, "{dev}: {}", list.join(", "))
    }
}

/// Waits until `ns` has a tun with both an IPv4 and an IPv6 global address (or `timeout`).
fn wait_tun_addrs(lab: &Lab, ns: &Ns, timeout: Duration) -> Result<TunAddrs, DemoError> {
    let start = Instant::now();
    loop {
        interrupted()?;
        let a = TunAddrs::read(lab, ns);
        if (a.v4.is_some() && a.v6.is_some()) || start.elapsed() >= timeout {
            return Ok(a);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the log of `id` contains `needle`; fails early when the process exits.
fn wait_log(
    lab: &mut Lab,
    id: ProcId,
    who: &str,
    needle: &str,
    timeout: Duration,
) -> Result<(), DemoError> {
    let log = lab.log(id).map(Path::to_path_buf).unwrap_or_default();
    let start = Instant::now();
    loop {
        interrupted()?;
        let text = std::fs::read(&log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if text.contains(needle) {
            return Ok(());
        }
        let why = if let Some(status) = lab.exited(id) {
            Some(format!("{who} exited ({status})"))
        } else if start.elapsed() >= timeout {
            Some(format!("{who}: no {needle:?} within {timeout:?}"))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(DemoError::Failed(format!(
                "{why}; last lines of {}:\n{}",
                log.display(),
                indent(&lab::log_tail(&log, 25))
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pings `dst` from `ns` one echo at a time until one is answered or [`PING_TIMEOUT`]
/// passes; returns the round-trip time text of the answered echo.
fn ping(lab: &Lab, ns: &Ns, dst: IpAddr) -> Result<Option<String>, DemoError> {
    let fam = if dst.is_ipv6() { "-6" } else { "-4" };
    let dst_s = dst.to_string();
    let start = Instant::now();
    loop {
        interrupted()?;
        let out = lab.exec(ns, &["ping", fam, "-n", "-c", "1", "-W", "1", &dst_s])?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let rtt = text
                .split_whitespace()
                .find_map(|t| t.strip_prefix("time="))
                .map_or_else(|| "ok".to_string(), |t| format!("{t} ms"));
            return Ok(Some(rtt));
        }
        if start.elapsed() >= PING_TIMEOUT {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Formats an argv for display, with the program shortened to its file name.
fn show_argv(argv: &[String]) -> String {
    let mut v: Vec<String> = argv.to_vec();
    if let Some(first) = v.first_mut() {
        if let Some(name) = Path::new(first.as_str()).file_name() {
            *first = name.to_string_lossy().into_owned();
        }
    }
    v.join(" ")
}

/// Starts `program --config <name>.ovpn` in `ns`, waits until it is connected and its tun
/// carries addresses; returns the process and those addresses.
fn connect(
    con: &mut Console<'_>,
    lab: &mut Lab,
    work: &WorkDir,
    ns: &Ns,
    name: &str,
    program: &ClientProgram,
) -> Result<(ProcId, TunAddrs), DemoError> {
    let argv = vec![
        program.path().to_string_lossy().into_owned(),
        "--config".into(),
        format!("{name}.ovpn"),
    ];
    let log_name = format!("{name}-{}.log", program.label());
    let log = work.path().join(&log_name);
    let id = lab.spawn(
        ns,
        &format!("{name} ({})", program.label()),
        &argv,
        work.path(),
        &log,
    )?;
    con.say(&format!(
        "$ ip netns exec {} {}   (pid {}, log {log_name})",
        ns.name(),
        show_argv(&argv),
        lab.pid(id),
    ));
    let t0 = Instant::now();
    wait_log(lab, id, name, CONNECTED, START_TIMEOUT)?;
    let tun = wait_tun_addrs(lab, ns, Duration::from_secs(3))?;
    con.say(&format!(
        "{name} ({}) connected in {:.1} s; `ip -o addr` shows {tun}",
        program.label(),
        t0.elapsed().as_secs_f64()
    ));
    Ok((id, tun))
}

/// The demo proper; the caller tears down whatever it leaves behind.
fn run(
    con: &mut Console<'_>,
    work: &WorkDir,
    lab: &mut Lab,
    checks: &mut Checks,
) -> Result<(), DemoError> {
    let plan = Plan::default();
    let fwd = std::env::current_exe()
        .map_err(|e| DemoError::Failed(format!("cannot find the fwd binary itself: {e}")))?;
    let client1_prog = match find_bin("openvpn") {
        Some(p) => ClientProgram::OpenVpn(p),
        None => ClientProgram::Fwd(fwd.clone()),
    };
    let client2_prog = ClientProgram::Fwd(fwd.clone());
    con.say(&format!("server : fwd ({})", fwd.display()));
    con.say(&format!(
        "client1: {} ({}){}",
        client1_prog.label(),
        client1_prog.path().display(),
        if matches!(client1_prog, ClientProgram::Fwd(_)) {
            "  [openvpn not installed]"
        } else {
            "  (stock OpenVPN 2.6)"
        }
    ));
    con.say(&format!("client2: fwd as a client ({})", fwd.display()));
    con.say(&format!("work dir: {}", work.path().display()));

    // --- Lab --------------------------------------------------------------------------
    con.step("Lab: network namespaces, veth links, a LAN behind client1");
    let server = lab.netns("server")?;
    con.say(&format!("+ netns {}", server.name()));
    let client1 = lab.netns("client1")?;
    con.say(&format!("+ netns {}", client1.name()));
    let client2 = lab.netns("client2")?;
    con.say(&format!("+ netns {}", client2.name()));
    let (s1, c1) = lab.link(&server, &client1)?;
    con.say(&format!(
        "+ veth server {} {} <-> client1 {} {}",
        s1[0], s1[1], c1[0], c1[1]
    ));
    let (s2, c2) = lab.link(&server, &client2)?;
    con.say(&format!(
        "+ veth server {} {} <-> client2 {} {}",
        s2[0], s2[1], c2[0], c2[1]
    ));
    let lan4 = format!("{}/24", plan.lan_v4_host);
    let lan6 = format!("{}/64", plan.lan_v6_host);
    lab.stub_lan(&client1, "lan0", &[&lan4, &lan6])?;
    con.say(&format!(
        "+ client1 lan0 {lan4} {lan6} (the LAN behind client1)"
    ));
    interrupted()?;

    // --- PKI and configs -----------------------------------------------------------------
    con.step("PKI and configs (throw-away, in the work dir)");
    // client1 reaches the server over IPv4, client2 over IPv6: one dual-stack UDP socket.
    let clients = [
        ClientSpec {
            name: "client1",
            remote: s1[0],
            program: client1_prog,
        },
        ClientSpec {
            name: "client2",
            remote: s2[1],
            program: client2_prog,
        },
    ];
    let written = files::write_all(work, &plan, &clients)?;
    for l in &written.summary {
        con.say(l);
    }
    con.say("--- server.conf ---");
    con.say(&indent(&written.server_conf));
    for (rel, text) in files::ccd_files(&plan) {
        con.say(&format!("--- {rel} ---"));
        con.say(&indent(&text));
    }
    interrupted()?;

    // --- Server ----------------------------------------------------------------------------
    con.step("Start the fwd server");
    let argv = vec![
        fwd.to_string_lossy().into_owned(),
        "--config".into(),
        "server.conf".into(),
    ];
    let srv = lab.spawn(
        &server,
        "fwd server",
        &argv,
        work.path(),
        &work.path().join("server.log"),
    )?;
    con.say(&format!(
        "$ ip netns exec {} {}   (pid {}, log server.log)",
        server.name(),
        show_argv(&argv),
        lab.pid(srv)
    ));
    let t0 = Instant::now();
    loop {
        interrupted()?;
        let tun = TunAddrs::read(lab, &server);
        if tun.v4 == Some(plan.vpn_v4_server) && lab.udp_bound(srv, plan.port) {
            con.say(&format!(
                "server up in {} ms — {tun}; listening on UDP port {} (IPv4 + IPv6)",
                t0.elapsed().as_millis(),
                plan.port
            ));
            break;
        }
        if let Some(status) = lab.exited(srv) {
            return Err(DemoError::Failed(format!(
                "the fwd server exited ({status}); last lines of server.log:\n{}",
                indent(&lab::log_tail(&work.path().join("server.log"), 25))
            )));
        }
        if t0.elapsed() >= START_TIMEOUT {
            return Err(DemoError::Failed(format!(
                "the fwd server did not come up within {START_TIMEOUT:?}; last lines of server.log:\n{}",
                indent(&lab::log_tail(&work.path().join("server.log"), 25))
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // --- Clients ---------------------------------------------------------------------------
    con.step("Connect the clients");
    let openvpn = find_bin("openvpn");
    let mut addrs = Vec::new();
    for (c, ns) in clients.iter().zip([&client1, &client2]) {
        let (id, tun) = connect(con, lab, work, ns, c.name, &c.program)?;
        let mut tun = tun;
        // The fwd client may connect before its data path works (it is younger than the
        // server); rather than fail the whole demo, say so and use stock openvpn instead.
        if let (ClientProgram::Fwd(_), Some(ovpn)) = (&c.program, &openvpn) {
            if ping(lab, ns, IpAddr::V4(plan.vpn_v4_server))?.is_none() {
                con.say(&format!(
                    "⚠ the fwd client connected but its tunnel passes no traffic in this build: \
                     falling back to stock openvpn for {}",
                    c.name
                ));
                if let Some(how) = lab.stop(id) {
                    con.say(&format!(
                        "stopped {} (fwd, pid {}): {how}",
                        c.name,
                        lab.pid(id)
                    ));
                }
                let program = ClientProgram::OpenVpn(ovpn.clone());
                tun = connect(con, lab, work, ns, c.name, &program)?.1;
            }
        }
        addrs.push(tun);
    }
    let (a1, a2) = match addrs.as_slice() {
        [a1, a2] => (a1, a2),
        _ => return Err(DemoError::Failed("internal: expected two clients".into())),
    };
    let got = |who: &str,
               v4: Option<Ipv4Addr>,
               v6: Option<Ipv6Addr>|
     -> Result<(IpAddr, IpAddr), DemoError> {
        match (v4, v6) {
            (Some(v4), Some(v6)) => Ok((IpAddr::V4(v4), IpAddr::V6(v6))),
            _ => Err(DemoError::Failed(format!(
                "{who} did not get both an IPv4 and an IPv6 address"
            ))),
        }
    };
    let (c1v4, c1v6) = got("client1", a1.v4, a1.v6)?;
    let (c2v4, c2v6) = got("client2", a2.v4, a2.v6)?;
    let pool4 = Ipv4Net::new(plan.vpn_v4_net, 24).unwrap_or_default();
    checks.record(
        con,
        a1.v4.is_some_and(|a| pool4.contains(&a))
            && a1.v6.is_some_and(|a| plan.vpn_v6_net.contains(&a)),
        "client1 got addresses from both pools".into(),
        &format!("{c1v4} {c1v6}"),
    );
    checks.record(
        con,
        a2.v6 == Some(plan.client2_fixed_v6),
        "client2 got its fixed IPv6 address (ccd)".into(),
        &format!("{c2v6}"),
    );

    // --- Reachability ----------------------------------------------------------------------
    con.step("Reachability through the tunnel (ping / ping -6)");
    let sv4 = IpAddr::V4(plan.vpn_v4_server);
    let sv6 = IpAddr::V6(plan.vpn_v6_server);
    let lan4 = IpAddr::V4(plan.lan_v4_host);
    let lan6 = IpAddr::V6(plan.lan_v6_host);
    let paths: [(&Ns, &str, IpAddr); 14] = [
        (&client1, "client1 → server", sv4),
        (&client1, "client1 → server", sv6),
        (&client2, "client2 → server", sv4),
        (&client2, "client2 → server", sv6),
        (&server, "server → client1", c1v4),
        (&server, "server → client2", c2v6),
        (&client1, "client1 → client2 (client-to-client)", c2v4),
        (&client1, "client1 → client2 (client-to-client)", c2v6),
        (&client2, "client2 → client1 (client-to-client)", c1v4),
        (&client2, "client2 → client1 (client-to-client)", c1v6),
        (&client2, "client2 → LAN behind client1 (iroute)", lan4),
        (&client2, "client2 → LAN behind client1 (iroute-ipv6)", lan6),
        (&server, "server → LAN behind client1 (iroute)", lan4),
        (&server, "server → LAN behind client1 (iroute-ipv6)", lan6),
    ];
    for (ns, what, dst) in paths {
        let r = ping(lab, ns, dst)?;
        let detail = match &r {
            Some(rtt) => format!("{dst:<14} {rtt}"),
            None => format!("{dst:<14} no reply within {PING_TIMEOUT:?}"),
        };
        checks.record(con, r.is_some(), what.to_string(), &detail);
        if let Some(last) = checks.0.last_mut() {
            // The summary names the address too: several checks share a path name.
            last.what = format!("{what} {dst}");
        }
    }

    // --- Throughput ------------------------------------------------------------------------
    con.step("Throughput client2 → server through the tunnel");
    let rate = match find_bin("iperf3") {
        Some(bin) => throughput::iperf3(lab, &bin, &server, &client2, sv4, work.path(), &mut |l| {
            con.say(l)
        }),
        None => {
            con.say("iperf3 is not installed: timing a TCP stream between the namespaces instead");
            throughput::tcp_transfer(&server, &client2, sv4)
        }
    };
    match rate {
        Ok(r) => checks.record(
            con,
            true,
            "throughput measured".into(),
            &format!("{:.0} Mbit/s ({})", r.mbit_per_s, r.method),
        ),
        Err(DemoError::Interrupted) => return Err(DemoError::Interrupted),
        Err(DemoError::Failed(m)) => checks.record(con, false, "throughput measured".into(), &m),
    }
    if cfg!(debug_assertions) {
        con.say("(a debug build of fwd; `cargo build --release` is several times faster)");
    }
    Ok(())
}
