//! Network-namespace lab for end-to-end tests.
//!
//! Owns: the namespaces, veth links, addresses and child processes of one test.
//!
//! Invariants:
//! - every namespace is named `fwdt-<pid>-<n>-<role>`, where `<n>` is unique within this
//!   process (a global counter), so labs in parallel test threads and parallel test binaries
//!   never collide;
//! - addresses (10.200.k.0/24 and fd00:200:k::/64 on link k) exist only inside the lab's
//!   namespaces; nothing is configured in the root namespace, not even transiently (veth
//!   pairs are created inside one lab namespace and one end is moved to the other);
//! - veth names are at most 15 bytes (IFNAMSIZ - 1);
//! - `Drop` (also while unwinding from a failed assertion) kills every process the lab
//!   spawned, by its PID, then deletes the namespaces. On panic it prints the tail of every
//!   log and keeps the lab directory so the failure can be read;
//! - if the test process is killed outright, spawned processes die with it
//!   (PR_SET_PDEATHSIG) and the next lab in any later test process deletes the leftover
//!   namespaces (dead owner PID, empty, not a `tools/lab.sh` CLI lab).
//!
//! Commands run through `ip netns exec`, which execs the command itself: the PID we hold is
//! the program's PID, not a wrapper's.

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub use fwd::os::netns::{parse_ip_o_addr, IfAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Per-process lab counter: the `<n>` in `fwdt-<pid>-<n>-<role>`.
static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Programs every lab test needs; missing ones make the test skip (or fail under CI).
const REQUIRED_BINS: &[&str] = &["ip", "openvpn", "openssl", "ping"];

/// Extra options for a fwd tunnel run (`fwd --config …`, not `fwd init`/`check`) taken from
/// `FWD_E2E_ARGS`, e.g. `--io epoll` or `--offload off`: how `.ci/run` runs the same
/// end-to-end suite once per data-path variant. Given after `--config`, they override it.
pub fn data_path_args(argv: &[String]) -> Vec<String> {
    let is_fwd = argv
        .first()
        .and_then(|p| Path::new(p).file_name())
        .is_some_and(|n| n == "fwd");
    let is_run = argv.get(1).is_some_and(|a| a == "--config");
    if !is_fwd || !is_run {
        return Vec::new();
    }
    std::env::var("FWD_E2E_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Finds an executable on `PATH`, then in the sbin directories (which a non-login `PATH`
/// may lack even for root).
pub fn find_bin(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why lab tests cannot run here, or `None` when they can.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    let missing: Vec<&str> = REQUIRED_BINS
        .iter()
        .copied()
        .filter(|b| find_bin(b).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing programs: {} (bash .ci/run installs them)",
            missing.join(", ")
        ));
    }
    None
}

/// True when running under CI, where a skipped lab test would hide a broken setup.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// One network namespace in the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    ns: String,
    role: String,
}

impl Host {
    /// The namespace name (`fwdt-<pid>-<n>-<role>`).
    pub fn ns(&self) -> &str {
        &self.ns
    }
    /// The role given to [`Lab::host`].
    pub fn role(&self) -> &str {
        &self.role
    }
}

/// The underlay addresses of one veth link (`a` is the first host given to [`Lab::link`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// 10.200.k.1
    pub a4: IpAddr,
    /// 10.200.k.2
    pub b4: IpAddr,
    /// fd00:200:k::1
    pub a6: IpAddr,
    /// fd00:200:k::2
    pub b6: IpAddr,
    /// veth name on `a`'s side.
    pub if_a: String,
    /// veth name on `b`'s side.
    pub if_b: String,
}

impl Link {
    /// `a`'s address of the given family (`v6 == true` for IPv6).
    pub fn a(&self, v6: bool) -> IpAddr {
        if v6 {
            self.a6
        } else {
            self.a4
        }
    }
    /// `b`'s address of the given family.
    pub fn b(&self, v6: bool) -> IpAddr {
        if v6 {
            self.b6
        } else {
            self.b4
        }
    }
}

/// Handle to a process started with [`Lab::spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildId(usize);

struct Spawned {
    child: Child,
    host: String,
    argv: Vec<String>,
    log: PathBuf,
}

/// A set of namespaces, links and processes that disappears when dropped.
pub struct Lab {
    name: String,
    id: String,
    ip: PathBuf,
    hosts: Vec<Host>,
    links: u32,
    children: Vec<Spawned>,
    dir: Option<tempfile::TempDir>,
    keep_on_panic: bool,
}

impl Lab {
    /// A new, empty lab. Panics when the lab cannot run here; use [`Lab::try_new`] to skip.
    pub fn new(name: &str) -> Lab {
        if let Some(reason) = skip_reason() {
            panic!("lab {name}: cannot run: {reason}");
        }
        let ip = find_bin("ip").unwrap_or_else(|| PathBuf::from("ip"));
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| sweep_stale(&ip));
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("fwdt-{}-{}", std::process::id(), n);
        let dir = tempfile::Builder::new()
            .prefix(&format!("fwd-lab-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("lab {name}: tempdir: {e}"));
        Lab {
            name: name.to_string(),
            id,
            ip,
            hosts: Vec::new(),
            links: 0,
            children: Vec::new(),
            dir: Some(dir),
            keep_on_panic: true,
        }
    }

    /// Like [`Lab::new`], but when the lab cannot run here (not root, `ip`/`openvpn`/…
    /// missing) prints the reason and returns `None`, so the test can `return`. Under CI
    /// (`CI` set) a missing prerequisite is a failure instead: CI installs them.
    pub fn try_new(name: &str) -> Option<Lab> {
        match skip_reason() {
            None => Some(Lab::new(name)),
            Some(reason) if in_ci() => panic!("lab {name}: cannot run under CI: {reason}"),
            Some(reason) => {
                eprintln!("SKIPPED lab test {name}: {reason}");
                None
            }
        }
    }

    /// Whether a panic keeps the lab directory (default true; tests that panic on purpose
    /// turn it off so they leave nothing behind).
    pub fn keep_on_panic(&mut self, keep: bool) {
        self.keep_on_panic = keep;
    }

    /// The lab's id, `fwdt-<pid>-<n>`; namespace names are `<id>-<role>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lab's temporary directory, for configs, keys and logs.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Some(d) => d.path(),
            None => Path::new("/nonexistent"),
        }
    }

    /// Creates a namespace for `role` (`[a-z0-9]+`, unique in this lab) with `lo` up and
    /// forwarding enabled (so a host can route for a network behind it).
    pub fn host(&mut self, role: &str) -> Host {
        assert!(
            !role.is_empty()
                && role
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "role must be [a-z0-9]+: {role:?}"
        );
        assert!(
            self.hosts.iter().all(|h| h.role != role),
            "duplicate role {role:?}"
        );
        let ns = format!("{}-{role}", self.id);
        // A namespace with our pid and counter can only be left over from a killed process
        // that had our pid before: it is stale, remove it.
        if Path::new("/run/netns").join(&ns).exists() {
            let _ = self.ip_cmd(&["netns", "del", &ns]);
        }
        self.ip_ok(&["netns", "add", &ns]);
        let host = Host {
            ns,
            role: role.to_string(),
        };
        self.hosts.push(host.clone());
        self.ip_ok(&["-n", &host.ns, "link", "set", "lo", "up"]);
        self.exec_ok(
            &host,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        );
        host
    }

    /// Joins `a` and `b` with a veth pair: link k (1-based, per lab) gets 10.200.k.1/24 and
    /// fd00:200:k::1/64 on `a`, .2 and ::2 on `b` (IPv6 without DAD, usable at once).
    pub fn link(&mut self, a: &Host, b: &Host) -> Link {
        self.links += 1;
        let k = self.links;
        assert!(k <= 254, "too many links");
        let if_a = ifname(k, &b.role);
        let if_b = ifname(k, &a.role);
        self.ip_ok(&[
            "-n", &a.ns, "link", "add", &if_a, "type", "veth", "peer", "name", &if_b,
        ]);
        self.ip_ok(&["-n", &a.ns, "link", "set", &if_b, "netns", &b.ns]);
        let link = Link {
            a4: IpAddr::V4(Ipv4Addr::new(10, 200, k as u8, 1)),
            b4: IpAddr::V4(Ipv4Addr::new(10, 200, k as u8, 2)),
            a6: IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, k as u16, 0, 0, 0, 0, 1)),
            b6: IpAddr::V6(Ipv6Addr::new(0xfd00, 0x200, k as u16, 0, 0, 0, 0, 2)),
            if_a,
            if_b,
        };
        for (host, ifn, a4, a6) in [
            (a, &link.if_a, link.a4, link.a6),
            (b, &link.if_b, link.b4, link.b6),
        ] {
            self.ip_ok(&[
                "-n",
                &host.ns,
                "addr",
                "add",
                &format!("{a4}/24"),
                "dev",
                ifn,
            ]);
            self.ip_ok(&[
                "-n",
                &host.ns,
                "-6",
                "addr",
                "add",
                &format!("{a6}/64"),
                "dev",
                ifn,
                "nodad",
            ]);
            self.ip_ok(&["-n", &host.ns, "link", "set", ifn, "up"]);
        }
        link
    }

    /// A stub network inside `host`: a veth pair `ifname`/`<ifname>p` (both ends in `host`,
    /// up) with `addrs` (`"fd00:99::1/64"`, `"10.99.0.1/24"`) on `ifname`. Stands in for a
    /// LAN behind a client (iroute targets); veth rather than `dummy`, which not every kernel
    /// has.
    pub fn stub_net(&mut self, host: &Host, ifname: &str, addrs: &[&str]) {
        assert!(ifname.len() <= 14, "ifname too long: {ifname}");
        let peer = format!("{ifname}p");
        self.ip_ok(&[
            "-n", &host.ns, "link", "add", ifname, "type", "veth", "peer", "name", &peer,
        ]);
        for a in addrs {
            if a.contains(':') {
                self.ip_ok(&[
                    "-n", &host.ns, "-6", "addr", "add", a, "dev", ifname, "nodad",
                ]);
            } else {
                self.ip_ok(&["-n", &host.ns, "addr", "add", a, "dev", ifname]);
            }
        }
        self.ip_ok(&["-n", &host.ns, "link", "set", ifname, "up"]);
        self.ip_ok(&["-n", &host.ns, "link", "set", &peer, "up"]);
    }

    /// Starts `cmd` in `host` in the background, stdout and stderr to `log` (created or
    /// truncated). A relative program name is looked up like [`find_bin`]. The process is
    /// killed by PID when the lab is dropped, and by the kernel (PR_SET_PDEATHSIG) if the
    /// thread that spawned it exits first: spawn from the thread that owns the lab.
    pub fn spawn(&mut self, host: &Host, cmd: &[&str], log: &Path) -> ChildId {
        let mut argv = self.resolve(cmd);
        argv.extend(data_path_args(&argv));
        let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
        let mut cmd = fwd::os::netns::exec_in(&self.ip, &host.ns, &argv);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?} in {}: {e}", host.ns));
        self.children.push(Spawned {
            child,
            host: host.ns.clone(),
            argv,
            log: log.to_path_buf(),
        });
        ChildId(self.children.len() - 1)
    }

    /// The PID of a spawned process.
    pub fn pid(&self, id: ChildId) -> u32 {
        self.spawned(id).child.id()
    }

    /// True while the spawned process has not exited.
    pub fn is_running(&self, id: ChildId) -> bool {
        !pid_exited(self.spawned(id).child.id())
    }

    /// Stops one spawned process (SIGTERM, SIGKILL after 3 s) and returns its exit status
    /// text. Idempotent.
    pub fn kill(&mut self, id: ChildId) -> String {
        let sp = self
            .children
            .get_mut(id.0)
            .unwrap_or_else(|| panic!("no child {id:?}"));
        stop_child(&mut sp.child)
    }

    /// Runs `cmd` in `host` and waits for it. Panics only if it cannot be started.
    pub fn exec(&self, host: &Host, cmd: &[&str]) -> Output {
        let argv = self.resolve(cmd);
        Command::new(&self.ip)
            .args(["netns", "exec", &host.ns])
            .args(&argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("exec {argv:?} in {}: {e}", host.ns))
    }

    /// Like [`Lab::exec`], but panics (with stderr) unless the command succeeds; returns
    /// stdout.
    pub fn exec_ok(&self, host: &Host, cmd: &[&str]) -> String {
        let out = self.exec(host, cmd);
        assert!(
            out.status.success(),
            "{cmd:?} in {} failed ({}): {}{}",
            host.ns,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until `path` contains `needle`; returns the whole log. On timeout, or when the
    /// process writing that log (if the lab spawned it) exits first, returns why plus the
    /// log's last lines.
    pub fn wait_for_log(
        &self,
        path: &Path,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let start = Instant::now();
        let writer = self.children.iter().rev().find(|s| s.log == path);
        loop {
            let text = read_lossy(path);
            if text.contains(needle) {
                return Ok(text);
            }
            let why = if let Some(w) = writer.filter(|w| pid_exited(w.child.id())) {
                // One last read: the line may have been written just before exiting.
                let text = read_lossy(path);
                if text.contains(needle) {
                    return Ok(text);
                }
                Some(format!(
                    "process {} {:?} exited before logging {needle:?}",
                    w.child.id(),
                    w.argv
                ))
            } else if start.elapsed() >= timeout {
                Some(format!(
                    "timed out after {timeout:?} waiting for {needle:?}"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(format!(
                    "{why} in {}\n--- last lines ---\n{}",
                    path.display(),
                    tail(&read_lossy(path), 40)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `count` echo requests (0.2 s apart, 1 s reply timeout) from `host` to `dst`;
    /// true if at least one reply came back.
    pub fn ping(&self, host: &Host, dst: IpAddr, count: u32) -> bool {
        let fam = if dst.is_ipv6() { "-6" } else { "-4" };
        let out = self.exec(
            host,
            &[
                "ping",
                fam,
                "-n",
                "-q",
                "-c",
                &count.max(1).to_string(),
                "-i",
                "0.2",
                "-W",
                "1",
                &dst.to_string(),
            ],
        );
        out.status.success()
    }

    /// Pings `dst` from `host` one echo at a time until a reply comes or `timeout` passes
    /// (the first packets after a tunnel comes up may meet an incomplete neighbour entry).
    pub fn ping_eventually(&self, host: &Host, dst: IpAddr, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.ping(host, dst, 1) {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
        }
    }

    /// The addresses on `ifname` in `host` (`ip -o addr show dev IFNAME`); empty if the
    /// interface does not exist.
    pub fn addrs(&self, host: &Host, ifname: &str) -> Vec<IfAddr> {
        let out = self.exec(host, &["ip", "-o", "addr", "show", "dev", ifname]);
        parse_ip_o_addr(&String::from_utf8_lossy(&out.stdout))
    }

    /// Waits until `ifname` in `host` carries `addr` (any prefix length); returns all of its
    /// addresses either way, so the caller can assert with a useful message.
    pub fn wait_for_addr(
        &self,
        host: &Host,
        ifname: &str,
        addr: IpAddr,
        timeout: Duration,
    ) -> Vec<IfAddr> {
        let start = Instant::now();
        loop {
            let addrs = self.addrs(host, ifname);
            if addrs.iter().any(|a| a.addr == addr) || start.elapsed() >= timeout {
                return addrs;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawned(&self, id: ChildId) -> &Spawned {
        self.children
            .get(id.0)
            .unwrap_or_else(|| panic!("no child {id:?}"))
    }

    /// Resolves the program name so `ip netns exec` does not depend on the caller's PATH.
    fn resolve(&self, cmd: &[&str]) -> Vec<String> {
        let (prog, args) = cmd.split_first().expect("empty command");
        let prog = find_bin(prog)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| prog.to_string());
        std::iter::once(prog)
            .chain(args.iter().map(|a| a.to_string()))
            .collect()
    }

    fn ip_cmd(&self, args: &[&str]) -> Output {
        Command::new(&self.ip)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run ip {args:?}: {e}"))
    }

    fn ip_ok(&self, args: &[&str]) {
        let out = self.ip_cmd(args);
        assert!(
            out.status.success(),
            "lab {}: ip {} failed: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let mut report = String::new();
        for sp in &mut self.children {
            let status = stop_child(&mut sp.child);
            if panicking {
                report.push_str(&format!(
                    "\n===== {} in {} ({status}) log {} =====\n{}",
                    sp.argv.join(" "),
                    sp.host,
                    sp.log.display(),
                    tail(&read_lossy(&sp.log), 60)
                ));
            }
        }
        for h in &self.hosts {
            let out = Command::new(&self.ip)
                .args(["netns", "del", &h.ns])
                .stdin(Stdio::null())
                .output();
            if !matches!(&out, Ok(o) if o.status.success()) {
                eprintln!(
                    "lab {}: could not delete namespace {}: {out:?}",
                    self.name, h.ns
                );
            }
        }
        let keep = (panicking && self.keep_on_panic) || std::env::var_os("FWD_LAB_KEEP").is_some();
        if let (true, Some(dir)) = (keep, self.dir.take()) {
            let path = dir.keep();
            report.push_str(&format!(
                "\nlab {} files kept in {}\n",
                self.name,
                path.display()
            ));
        }
        if !report.is_empty() {
            // eprintln (not a raw stderr handle) so the test harness shows it with the failing
            // test's output rather than interleaved with other tests.
            eprintln!("----- lab {} ({}) -----{report}", self.name, self.id);
        }
    }
}

/// Deletes namespaces left by lab processes that were killed outright (Drop never ran): named
/// `fwdt-<pid>-…` with `<pid>` no longer alive, no process inside, and no `tools/lab.sh`
/// state directory (a lab a human brought up with the CLI outlives its shell on purpose).
fn sweep_stale(ip: &Path) {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.splitn(4, '-');
        let (Some("fwdt"), Some(pid), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        if Path::new("/tmp/fwd-lab")
            .join(format!("fwdt-{pid}-{n}"))
            .exists()
        {
            continue;
        }
        let busy = Command::new(ip)
            .args(["netns", "pids", &name])
            .output()
            .map(|o| !o.status.success() || !o.stdout.is_empty())
            .unwrap_or(true);
        if !busy {
            let _ = Command::new(ip).args(["netns", "del", &name]).output();
        }
    }
}

/// veth name for one side of link `k`: `u<k>-<peer role>`, cut to 15 bytes.
fn ifname(k: u32, peer_role: &str) -> String {
    let mut s = format!("u{k}-{peer_role}");
    s.truncate(15);
    s
}

/// SIGTERM, up to 3 s grace, then SIGKILL; always reaps. Returns the exit status text.
fn stop_child(child: &mut Child) -> String {
    if let Ok(Some(st)) = child.try_wait() {
        return st.to_string();
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the PID of our own unreaped child (it cannot have been reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok(Some(st)) = child.try_wait() {
            return format!("{st} after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    match child.wait() {
        Ok(st) => format!("{st} after SIGKILL"),
        Err(e) => format!("wait failed: {e}"),
    }
}

/// True if `pid` (our unreaped child) has exited: it is gone or a zombie.
fn pid_exited(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Field 3, after the parenthesised command name (which may itself contain ')').
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_o_addr() {
        let text = "5: tun0    inet 10.8.0.2/24 scope global tun0\\       valid_lft forever\n\
                    5: tun0    inet6 fd00:8::1000/64 scope global \\       valid_lft forever\n\
                    5: tun0    inet6 fe80::1/64 scope link stable-privacy\n\
                    garbage line\n";
        let v = parse_ip_o_addr(text);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].to_string(), "10.8.0.2/24");
        assert_eq!(v[0].scope, "global");
        assert_eq!(v[1].addr, "fd00:8::1000".parse::<IpAddr>().unwrap());
        assert_eq!(v[2].scope, "link");
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        assert_eq!(ifname(1, "server"), "u1-server");
        assert_eq!(ifname(254, "averyveryverylongrole").len(), 15);
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
