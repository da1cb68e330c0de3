//! End-to-end: `fwd demo` run as a child process, the way the README tells a user to run it.
//!
//! Checks that a full run passes every check and exits 0, and that the lab is gone afterwards
//! (no `fwdd-<pid>-…` namespace, no process the demo started, no work directory) — also when
//! the demo is interrupted with SIGINT half-way. Needs root, /dev/net/tun, iproute2 and ping;
//! skips otherwise (fails under CI, which installs them).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One demo at a time: they are independent, but each wants the CPU for its throughput step.
static SERIAL: Mutex<()> = Mutex::new(());

/// Upper bound for a whole demo run (it takes seconds when things work).
const RUN_TIMEOUT: Duration = Duration::from_secs(150);

fn find_bin(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `None` when the demo can run here; otherwise why not (a failure under CI).
fn skip() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let reason = if unsafe { libc::geteuid() } != 0 {
        Some("not root".to_string())
    } else if !Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun missing".to_string())
    } else {
        ["ip", "ping"]
            .iter()
            .find(|b| find_bin(b).is_none())
            .map(|b| format!("{b} not installed"))
    }?;
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(!ci, "fwd demo cannot run under CI: {reason}");
    eprintln!("SKIPPED demo e2e: {reason}");
    Some(reason)
}

/// A running `fwd demo` with its stdout arriving line by line.
struct Demo {
    child: Child,
    lines: Receiver<String>,
    output: String,
}

impl Demo {
    fn start() -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fwd"))
            .arg("demo")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn fwd demo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines: rx,
            output: String::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads output until a line contains `needle`; panics (after killing the demo) on
    /// timeout or when the demo ends first.
    fn wait_line(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                    if line.contains(needle) {
                        return;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let why = match e {
                        RecvTimeoutError::Timeout => "timed out",
                        RecvTimeoutError::Disconnected => "demo ended",
                    };
                    panic!(
                        "{why} waiting for {needle:?}; output so far:\n{}",
                        self.output
                    );
                }
            }
        }
    }

    /// Collects the rest of the output and the exit status (killing the demo on timeout).
    fn finish(mut self, timeout: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => {
                    if start.elapsed() < timeout {
                        continue;
                    }
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return (st, self.output);
            }
            if start.elapsed() >= timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "fwd demo did not finish within {timeout:?}; output:\n{}",
                    self.output
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Namespaces the demo with this pid left behind.
fn leftover_namespaces(pid: u32) -> Vec<String> {
    let prefix = format!("fwdd-{pid}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Every `(pid N` the demo printed, i.e. every process it started.
fn printed_pids(output: &str) -> Vec<u32> {
    output
        .split("(pid ")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The work directory the demo announced.
fn work_dir(output: &str) -> Option<PathBuf> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("work dir: "))
        .map(PathBuf::from)
}

/// Asserts that nothing of the demo survives: namespaces, processes, work directory.
fn assert_gone(pid: u32, output: &str) {
    let ns = leftover_namespaces(pid);
    assert!(ns.is_empty(), "namespaces left behind: {ns:?}\n{output}");
    let pids = printed_pids(output);
    for p in &pids {
        // A zombie would still have /proc/<p>; the demo reaps its children, so gone = gone.
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "process {p} still exists\n{output}"
        );
    }
    let dir = work_dir(output).expect("demo prints its work dir");
    assert!(!dir.exists(), "{} left behind\n{output}", dir.display());
}

#[test]
fn demo_passes_every_check_and_cleans_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if skip().is_some() {
        return;
    }
    let demo = Demo::start();
    let pid = demo.pid();
    let (status, out) = demo.finish(RUN_TIMEOUT);
    assert_eq!(status.code(), Some(0), "fwd demo failed:\n{out}");
    for needle in [
        "✔ client1 → server ",
        "✔ client2 → server ",
        "✔ server → client1 ",
        "✔ client1 → client2 (client-to-client)",
        "✔ client2 → client1 (client-to-client)",
        "✔ client2 → LAN behind client1 (iroute) ",
        "✔ client2 → LAN behind client1 (iroute-ipv6)",
        "✔ client2 got its fixed IPv6 address (ccd)",
        "✔ throughput measured",
        "checks passed",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    assert!(!out.contains('✘'), "a check failed:\n{out}");
    // client2 is the fwd client (peer-id 1, IPv6 underlay); no fallback to openvpn.
    assert!(
        !out.contains('⚠'),
        "the fwd client fell back to openvpn:\n{out}"
    );
    // Every ping path is checked over both families.
    assert!(
        out.contains("fd00:99::1") && out.contains("10.99.0.1"),
        "{out}"
    );
    assert!(
        printed_pids(&out).len() >= 3,
        "server and two clients: {out}"
    );
    assert_gone(pid, &out);
}

/// Sends SIGINT once the demo printed `needle`, then expects a full teardown and exit 130.
fn interrupt_after(needle: &str) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if skip().is_some() {
        return;
    }
    let mut demo = Demo::start();
    let pid = demo.pid();
    demo.wait_line(needle, Duration::from_secs(60));
    let raw = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own unreaped child.
    assert_eq!(unsafe { libc::kill(raw, libc::SIGINT) }, 0);
    let (status, out) = demo.finish(Duration::from_secs(60));
    assert_eq!(
        status.code(),
        Some(130),
        "expected exit 130 after SIGINT:\n{out}"
    );
    assert!(out.contains("interrupted"), "{out}");
    assert!(
        out.contains("deleted netns"),
        "teardown not reported:\n{out}"
    );
    assert_gone(pid, &out);
}

#[test]
fn sigint_after_lab_creation_tears_down() {
    interrupt_after("(the LAN behind client1)");
}

#[test]
fn sigint_with_server_and_client_running_tears_down() {
    interrupt_after(") connected in");
}

#[test]
fn pid_and_dir_parsing() {
    let out = "    work dir: /tmp/fwd-demo-1-2\n    $ x   (pid 42, log a)\n    (pid 7, log b)\n";
    assert_eq!(printed_pids(out), vec![42, 7]);
    assert_eq!(work_dir(out), Some(PathBuf::from("/tmp/fwd-demo-1-2")));
}
