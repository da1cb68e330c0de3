//! Throwaway network namespaces for kernel-dependent tests (unit, integration, e2e).
//!
//! [`NetnsGuard::new`] creates a uniquely named namespace with `ip netns add`, brings its
//! loopback up, and deletes it on drop (also when the test panics). [`NetnsGuard::run_in`]
//! runs a closure on a scoped thread that has joined the namespace with `setns(2)`; threads
//! that closure spawns inherit the namespace, the calling thread never changes namespace.
//! Requires root (CAP_SYS_ADMIN) and iproute2; callers probe with `new` and skip on error.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// `ip netns exec NS ARGV…` as a [`Command`] whose process the kernel kills (SIGKILL) when
/// the spawning thread exits — so a test or demo killed outright (Drop never runs) leaves no
/// server or client behind. The death signal survives `ip netns exec`'s exec (it is cleared
/// only for set-uid programs). Callers set stdio and spawn.
pub fn exec_in(ip: &std::path::Path, ns: &str, argv: &[impl AsRef<std::ffi::OsStr>]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(ip);
    cmd.args(["netns", "exec", ns]).args(argv);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// An interface address as printed by `ip -o addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// Interface name (`tun0`).
    pub ifname: String,
    pub addr: std::net::IpAddr,
    pub prefix_len: u8,
    /// `global`, `link`, `host`…
    pub scope: String,
}

impl std::fmt::Display for IfAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Parses `ip -o addr` lines: `5: tun0    inet 10.8.0.2/24 scope global tun0\ ...`.
pub fn parse_ip_o_addr(text: &str) -> Vec<IfAddr> {
    let mut v = Vec::new();
    for line in text.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        let Some(ifname) = toks.get(1) else {
            continue;
        };
        let Some(i) = toks.iter().position(|t| *t == "inet" || *t == "inet6") else {
            continue;
        };
        let Some((addr, plen)) = toks.get(i + 1).and_then(|t| t.split_once('/')) else {
            continue;
        };
        let (Ok(addr), Ok(prefix_len)) = (addr.parse::<std::net::IpAddr>(), plen.parse::<u8>())
        else {
            continue;
        };
        let scope = toks
            .iter()
            .position(|t| *t == "scope")
            .and_then(|j| toks.get(j + 1))
            .map(|s| s.to_string())
            .unwrap_or_default();
        v.push(IfAddr {
            ifname: ifname.trim_end_matches(':').to_string(),
            addr,
            prefix_len,
            scope,
        });
    }
    v
}

/// Distinguishes namespaces created by one process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace that exists as long as this guard.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
    file: File,
}

impl NetnsGuard {
    /// Creates namespace `<prefix>-<pid>-<n>` with `lo` up.
    pub fn new(prefix: &str) -> io::Result<Self> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        run_ip(&["netns", "add", &name])?;
        // From here on the namespace exists; a failure below must still delete it, which
        // building the guard first guarantees.
        let file = match File::open(format!("/var/run/netns/{name}")) {
            Ok(f) => f,
            Err(e) => {
                let _ = run_ip(&["netns", "del", &name]);
                return Err(e);
            }
        };
        let guard = NetnsGuard { name, file };
        guard.ip(&["link", "set", "lo", "up"])?;
        Ok(guard)
    }

    /// The namespace name (for `ip -n NAME …`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> <args…>` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_ip(&full)
    }

    /// Runs `f` on a new thread inside the namespace and returns its result. A panic in `f`
    /// is propagated to the caller.
    pub fn run_in<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let fd = self.file.as_raw_fd();
        std::thread::scope(|s| {
            let handle = s.spawn(move || {
                // SAFETY: fd is an open nsfs file kept alive by `self` for the whole scope.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = run_ip(&["netns", "del", &self.name]) {
            tracing::warn!(netns = %self.name, error = %e, "could not delete test namespace");
        }
    }
}

/// Runs `ip <args>`; a non-zero exit becomes an error carrying stderr.
fn run_ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_o_addr() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    5: tun0    inet 10.8.0.2/24 scope global tun0\\       valid_lft forever\n\
                    5: tun0    inet6 fd00:8::1000/64 scope global \\       valid_lft forever\n\
                    5: tun0    inet6 fe80::1/64 scope link stable-privacy\n\
                    garbage line\n";
        let v = parse_ip_o_addr(text);
        assert_eq!(v.len(), 4);
        assert_eq!(v[1].ifname, "tun0");
        assert_eq!(v[1].to_string(), "10.8.0.2/24");
        assert_eq!(v[1].scope, "global");
        assert_eq!(
            v[2].addr,
            "fd00:8::1000".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(v[3].scope, "link");
    }
}
