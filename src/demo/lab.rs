//! The demo's network-namespace lab: namespaces, veth links, stub LANs and the processes
//! running inside them.
//!
//! Invariants:
//! - every namespace is named `fwdd-<pid>-<role>` (pid of this `fwd demo` process), so two
//!   demos never collide and leftovers of a killed demo are recognisable;
//! - addresses live only inside the lab's namespaces: veth pairs are created inside one lab
//!   namespace and one end is moved to the other, nothing touches the root namespace;
//! - [`Lab::teardown`] (called explicitly on every normal, failed or interrupted path, and by
//!   `Drop` as the last resort, e.g. on a panic) stops every spawned process by its PID
//!   (SIGTERM, SIGKILL after a grace period), newest first, then deletes the namespaces. It is
//!   idempotent;
//! - spawned processes carry `PR_SET_PDEATHSIG=SIGKILL`, so if the demo itself is killed
//!   outright they die with it; the next demo deletes the namespaces such a demo left behind
//!   ([`sweep_stale`]).
//!
//! Commands run through `ip netns exec`, which execs the program: the PID we hold is the
//! program's own.

use std::fs::{self, File};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub use crate::os::netns::{parse_ip_o_addr, IfAddr};
use std::time::{Duration, Instant};

use super::DemoError;

/// Prefix of every namespace the demo creates.
pub const NS_PREFIX: &str = "fwdd-";

/// How long a process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Finds an executable on `PATH`, then in the sbin directories (a non-login root shell may
/// lack them).
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One namespace of the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ns {
    name: String,
    role: String,
}

impl Ns {
    /// The namespace name, `fwdd-<pid>-<role>`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The role (`server`, `client1`…).
    pub fn role(&self) -> &str {
        &self.role
    }
}

/// Handle to a process started with [`Lab::spawn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcId(usize);

struct Proc {
    label: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

/// Namespaces, links and processes that go away on [`Lab::teardown`] or drop.
pub struct Lab {
    id: String,
    ip: PathBuf,
    namespaces: Vec<Ns>,
    procs: Vec<Proc>,
    links: u8,
}

impl Lab {
    /// An empty lab for this process; deletes stale namespaces of dead demos first.
    pub fn new() -> Result<Lab, DemoError> {
        let ip =
            find_bin("ip").ok_or_else(|| DemoError::Failed("`ip` (iproute2) not found".into()))?;
        sweep_stale(&ip);
        Ok(Lab {
            id: format!("{NS_PREFIX}{}", std::process::id()),
            ip,
            namespaces: Vec::new(),
            procs: Vec::new(),
            links: 0,
        })
    }

    /// Creates namespace `fwdd-<pid>-<role>` with `lo` up and forwarding on.
    pub fn netns(&mut self, role: &str) -> Result<Ns, DemoError> {
        let name = format!("{}-{role}", self.id);
        // Same pid as ours: left over from an earlier process that had our pid. Stale.
        if Path::new("/run/netns").join(&name).exists() {
            let _ = self.ip_out(&["netns", "del", &name]);
        }
        self.ip_ok(&["netns", "add", &name])?;
        let ns = Ns {
            name,
            role: role.to_string(),
        };
        self.namespaces.push(ns.clone());
        self.ip_ok(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        let out = self.exec(
            &ns,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        )?;
        check_output(&out, "sysctl")?;
        Ok(ns)
    }

    /// Joins `a` and `b` with a veth pair on underlay link k (1-based): `a` gets
    /// 10.201.k.1/24 + fd00:201:k::1/64, `b` .2 / ::2 (IPv6 without DAD: usable at once).
    /// Returns `(a's addresses, b's addresses)` as `[v4, v6]`.
    pub fn link(&mut self, a: &Ns, b: &Ns) -> Result<([IpAddr; 2], [IpAddr; 2]), DemoError> {
        self.links = self
            .links
            .checked_add(1)
            .filter(|k| *k < 255)
            .ok_or_else(|| DemoError::Failed("too many links".into()))?;
        let k = self.links;
        let if_a = veth_name(k, b.role());
        let if_b = veth_name(k, a.role());
        self.ip_ok(&[
            "-n", &a.name, "link", "add", &if_a, "type", "veth", "peer", "name", &if_b,
        ])?;
        self.ip_ok(&["-n", &a.name, "link", "set", &if_b, "netns", &b.name])?;
        let addrs = |host: u8| -> [IpAddr; 2] {
            [
                IpAddr::from([10, 201, k, host]),
                IpAddr::from([0xfd00, 0x201, u16::from(k), 0, 0, 0, 0, u16::from(host)]),
            ]
        };
        let (aa, ba) = (addrs(1), addrs(2));
        for (ns, ifn, [v4, v6]) in [(a, &if_a, aa), (b, &if_b, ba)] {
            self.ip_ok(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                ifn,
            ])?;
            self.ip_ok(&[
                "-n",
                &ns.name,
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifn,
                "nodad",
            ])?;
            self.ip_ok(&["-n", &ns.name, "link", "set", ifn, "up"])?;
        }
        Ok((aa, ba))
    }

    /// A stub LAN inside `ns`: veth pair `ifname`/`<ifname>p`, both ends up in `ns`, `addrs`
    /// (`"10.99.0.1/24"`, `"fd00:99::1/64"`) on `ifname`. veth rather than `dummy`, which not
    /// every kernel has.
    pub fn stub_lan(&mut self, ns: &Ns, ifname: &str, addrs: &[&str]) -> Result<(), DemoError> {
        let peer = format!("{ifname}p");
        self.ip_ok(&[
            "-n", &ns.name, "link", "add", ifname, "type", "veth", "peer", "name", &peer,
        ])?;
        for a in addrs {
            if a.contains(':') {
                self.ip_ok(&[
                    "-n", &ns.name, "-6", "addr", "add", a, "dev", ifname, "nodad",
                ])?;
            } else {
                self.ip_ok(&["-n", &ns.name, "addr", "add", a, "dev", ifname])?;
            }
        }
        self.ip_ok(&["-n", &ns.name, "link", "set", ifname, "up"])?;
        self.ip_ok(&["-n", &ns.name, "link", "set", &peer, "up"])
    }

    /// Starts `argv` in `ns` with working directory `cwd`, stdout+stderr to `log`.
    pub fn spawn(
        &mut self,
        ns: &Ns,
        label: &str,
        argv: &[String],
        cwd: &Path,
        log: &Path,
    ) -> Result<ProcId, DemoError> {
        let fail = |what: &str, e: std::io::Error| {
            DemoError::Failed(format!("{what} {}: {e}", log.display()))
        };
        let out = File::create(log).map_err(|e| fail("create", e))?;
        let err = out.try_clone().map_err(|e| fail("dup", e))?;
        let mut cmd = crate::os::netns::exec_in(&self.ip, &ns.name, argv);
        cmd.current_dir(cwd)
            // Plain logs (no ANSI colours) so the demo can quote them.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| DemoError::Failed(format!("starting {argv:?} in {}: {e}", ns.name)))?;
        self.procs.push(Proc {
            label: label.to_string(),
            child,
            log: log.to_path_buf(),
            stopped: false,
        });
        Ok(ProcId(self.procs.len() - 1))
    }

    /// PID of a spawned process (0 for an unknown handle).
    pub fn pid(&self, id: ProcId) -> u32 {
        self.procs.get(id.0).map_or(0, |p| p.child.id())
    }

    /// `Some(status text)` once the spawned process has exited.
    pub fn exited(&mut self, id: ProcId) -> Option<String> {
        let p = self.procs.get_mut(id.0)?;
        match p.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    /// The log file of a spawned process.
    pub fn log(&self, id: ProcId) -> Option<&Path> {
        self.procs.get(id.0).map(|p| p.log.as_path())
    }

    /// Stops one process (SIGTERM, SIGKILL after the grace period); returns how it ended.
    /// Idempotent.
    pub fn stop(&mut self, id: ProcId) -> Option<String> {
        let p = self.procs.get_mut(id.0)?;
        p.stopped = true;
        Some(stop_child(&mut p.child))
    }

    /// Runs `argv` in `ns` and waits for it (stdin closed, output captured).
    pub fn exec(&self, ns: &Ns, argv: &[&str]) -> Result<Output, DemoError> {
        Command::new(&self.ip)
            .args(["netns", "exec", &ns.name])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| DemoError::Failed(format!("running {argv:?} in {}: {e}", ns.name)))
    }

    /// Like [`Lab::exec`], but kills the command (by PID) if it runs longer than `limit` or
    /// the demo is interrupted; `None` then.
    pub fn exec_timeout(
        &self,
        ns: &Ns,
        argv: &[&str],
        limit: Duration,
    ) -> Result<Option<Output>, DemoError> {
        let fail =
            |e: std::io::Error| DemoError::Failed(format!("running {argv:?} in {}: {e}", ns.name));
        let mut child = Command::new(&self.ip)
            .args(["netns", "exec", &ns.name])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(fail)?;
        // Drain the pipes on helper threads so a chatty command cannot block on a full pipe.
        let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out_t = drain(
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        );
        let err_t = drain(
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        );
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().map_err(fail)? {
                break Some(st);
            }
            if start.elapsed() >= limit || crate::os::signals::interrupted() {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = out_t.join().unwrap_or_default();
        let stderr = err_t.join().unwrap_or_default();
        Ok(status.map(|status| Output {
            status,
            stdout,
            stderr,
        }))
    }

    /// Global-scope addresses on tun interfaces in `ns` (`ip -o addr show`).
    pub fn tun_addrs(&self, ns: &Ns) -> Vec<IfAddr> {
        match self.exec(ns, &["ip", "-o", "addr", "show"]) {
            Ok(out) => parse_ip_o_addr(&String::from_utf8_lossy(&out.stdout))
                .into_iter()
                .filter(|a| a.ifname.starts_with("tun") && a.scope == "global")
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// True if a UDP socket is bound to `port` in the namespace of process `id` (read from
    /// `/proc/<pid>/net/udp{,6}`, which show that process's namespace).
    pub fn udp_bound(&self, id: ProcId, port: u16) -> bool {
        let pid = self.pid(id);
        let needle = format!(":{port:04X} ");
        ["udp", "udp6"].iter().any(|f| {
            fs::read_to_string(format!("/proc/{pid}/net/{f}"))
                .map(|t| t.lines().skip(1).any(|l| local_field_has(l, &needle)))
                .unwrap_or(false)
        })
    }

    /// Stops every process (newest first) and deletes every namespace; `say` receives one
    /// line per action. Idempotent: a second call does nothing.
    pub fn teardown(&mut self, say: &mut dyn FnMut(&str)) {
        while let Some(mut p) = self.procs.pop() {
            let pid = p.child.id();
            let how = stop_child(&mut p.child);
            if !p.stopped {
                say(&format!("stopped {} (pid {pid}): {how}", p.label));
            }
        }
        while let Some(ns) = self.namespaces.pop() {
            match self.ip_out(&["netns", "del", &ns.name]) {
                Ok(o) if o.status.success() => say(&format!("deleted netns {}", ns.name)),
                Ok(o) => say(&format!(
                    "could not delete netns {}: {}",
                    ns.name,
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => say(&format!("could not delete netns {}: {e}", ns.name)),
            }
        }
    }

    fn ip_out(&self, args: &[&str]) -> Result<Output, DemoError> {
        Command::new(&self.ip)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| DemoError::Failed(format!("running ip {}: {e}", args.join(" "))))
    }

    fn ip_ok(&self, args: &[&str]) -> Result<(), DemoError> {
        let out = self.ip_out(args)?;
        check_output(&out, &format!("ip {}", args.join(" ")))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown(&mut |line| eprintln!("fwd demo: teardown: {line}"));
    }
}

fn check_output(out: &Output, what: &str) -> Result<(), DemoError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(DemoError::Failed(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Whether the `local_address` column (2nd) of a `/proc/net/udp` line ends in `needle`
/// (`:PORT ` in hex).
fn local_field_has(line: &str, needle: &str) -> bool {
    line.split_whitespace()
        .nth(1)
        .is_some_and(|local| format!("{local} ").ends_with(needle))
}

/// veth name for one side of link `k`: `v<k>-<peer role>`, cut to 15 bytes (IFNAMSIZ - 1).
fn veth_name(k: u8, peer_role: &str) -> String {
    let mut s = format!("v{k}-{peer_role}");
    s.truncate(15);
    s
}

/// SIGTERM, up to [`STOP_GRACE`], then SIGKILL; always reaps. Returns how it ended.
fn stop_child(child: &mut Child) -> String {
    if let Ok(Some(st)) = child.try_wait() {
        return format!("had already exited ({st})");
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the PID of our own unreaped child, which cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let start = Instant::now();
    while start.elapsed() < STOP_GRACE {
        if let Ok(Some(_)) = child.try_wait() {
            return "SIGTERM".into();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    "SIGKILL (ignored SIGTERM)".into()
}

/// Deletes namespaces left by demos that were killed outright: `fwdd-<pid>-…` whose `<pid>`
/// is gone and which hold no process.
fn sweep_stale(ip: &Path) {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some((pid, _role)) = rest.split_once('-') else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
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

/// The last `n` lines of a file (for error reports).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .get(lines.len().saturating_sub(n)..)
        .unwrap_or_default()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_port_match() {
        let l = "  12: 00000000:04AA 00000000:0000 07 00000000:00000000 00:00000000 00000000     0";
        assert!(local_field_has(l, ":04AA "));
        assert!(!local_field_has(l, ":04A "));
        assert!(!local_field_has(l, ":0000 "));
        let l6 =
            "  3: 00000000000000000000000000000000:04AA 00000000000000000000000000000000:0000 07";
        assert!(local_field_has(l6, ":04AA "));
        assert!(!local_field_has("", ":04AA "));
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        assert_eq!(veth_name(1, "server"), "v1-server");
        assert_eq!(veth_name(254, "averyveryverylongrole").len(), 15);
    }
}
