//! A short throughput figure through the tunnel: iperf3 when installed, otherwise a plain TCP
//! transfer written here, run on two threads that have joined the lab's namespaces.
//!
//! Invariants: bounded in time (a few seconds of transfer plus connect timeouts); every
//! process it starts is a lab process (stopped by the lab on teardown); the helper threads
//! only ever change their own network namespace (`setns` is per thread), never the caller's.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::lab::{Lab, Ns};
use super::DemoError;

/// Port used for the measurement (inside the lab only).
const PORT: u16 = 5201;
/// Length of a measurement, seconds.
pub const SECS: u32 = 3;

/// A measured rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub mbit_per_s: f64,
    /// How it was measured, e.g. `iperf3 TCP, 3 s`.
    pub method: String,
}

/// iperf3 `-c` from `client` to an `iperf3 -s` in `server` bound to `dst`.
pub fn iperf3(
    lab: &mut Lab,
    iperf3: &Path,
    server: &Ns,
    client: &Ns,
    dst: IpAddr,
    cwd: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<Rate, DemoError> {
    let secs = SECS;
    let bin = iperf3.to_string_lossy().into_owned();
    let srv = vec![
        bin.clone(),
        "-s".into(),
        "-1".into(),
        "-B".into(),
        dst.to_string(),
        "-p".into(),
        PORT.to_string(),
    ];
    say(&format!(
        "$ ip netns exec {} {} &",
        server.name(),
        srv.join(" ")
    ));
    let id = lab.spawn(
        server,
        "iperf3 server",
        &srv,
        cwd,
        &cwd.join("iperf3-server.log"),
    )?;
    let secs_s = secs.to_string();
    let dst_s = dst.to_string();
    let port_s = PORT.to_string();
    let cli = [
        bin.as_str(),
        "-c",
        &dst_s,
        "-p",
        &port_s,
        "-t",
        &secs_s,
        "-f",
        "m",
        "--connect-timeout",
        "3000",
    ];
    say(&format!(
        "$ ip netns exec {} {}",
        client.name(),
        cli.join(" ")
    ));
    // The server needs a moment to listen: retry a refused connection briefly.
    let start = Instant::now();
    let out = loop {
        if crate::os::signals::interrupted() {
            return Err(DemoError::Interrupted);
        }
        // Hard limit: a dead tunnel must not leave iperf3 retrying SYNs for minutes.
        let limit = Duration::from_secs(u64::from(secs) + 5);
        let Some(out) = lab.exec_timeout(client, &cli, limit)? else {
            interrupted_or(|| format!("iperf3 did not finish within {limit:?}"))?;
            continue;
        };
        if out.status.success() || start.elapsed() > Duration::from_secs(5) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = lab.stop(id);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .chain(text.lines())
            .rfind(|l| l.contains("iperf3:"))
            .unwrap_or("no output");
        return Err(DemoError::Failed(format!(
            "iperf3 failed ({}): {}",
            out.status,
            last.trim()
        )));
    }
    let mbit = parse_iperf3_receiver(&text)
        .ok_or_else(|| DemoError::Failed(format!("no receiver line in iperf3 output:\n{text}")))?;
    Ok(Rate {
        mbit_per_s: mbit,
        method: format!("iperf3 TCP, {secs} s"),
    })
}

/// `Interrupted` if the demo was interrupted, otherwise the failure `msg` describes.
fn interrupted_or(msg: impl FnOnce() -> String) -> Result<(), DemoError> {
    if crate::os::signals::interrupted() {
        Err(DemoError::Interrupted)
    } else {
        Err(DemoError::Failed(msg()))
    }
}

/// The `… Mbits/sec … receiver` figure of iperf3's (`-f m`) summary.
pub fn parse_iperf3_receiver(text: &str) -> Option<f64> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with("receiver"))?;
    let toks: Vec<&str> = line.split_whitespace().collect();
    let i = toks.iter().position(|t| *t == "Mbits/sec")?;
    toks.get(i.checked_sub(1)?)?.parse().ok()
}

/// A TCP stream of zeros from `client` to a listener on `dst` in `server` for `secs` seconds,
/// measured at the receiver.
pub fn tcp_transfer(server: &Ns, client: &Ns, dst: IpAddr) -> Result<Rate, DemoError> {
    let secs = SECS;
    let fail = |what: String| DemoError::Failed(format!("TCP transfer: {what}"));
    let server_ns = open_ns(server)?;
    let client_ns = open_ns(client)?;
    let addr = SocketAddr::new(dst, PORT);
    let duration = Duration::from_secs(secs.into());
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();

    let receiver = std::thread::spawn(move || -> Result<(u64, Duration), String> {
        let r = (|| -> Result<TcpListener, String> {
            enter(&server_ns)?;
            let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(l)
        })();
        let listener = match r {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e.clone()));
                return Err(e);
            }
        };
        let start = Instant::now();
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() > Duration::from_secs(10) {
                        return Err("no connection within 10 s".into());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        conn.set_nonblocking(false).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let t0 = Instant::now();
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        Ok((total, t0.elapsed()))
    });

    match ready_rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(fail(e)),
        Err(_) => return Err(fail("receiver did not start".into())),
    }
    let sender = std::thread::spawn(move || -> Result<(), String> {
        enter(&client_ns)?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let buf = vec![0u8; 64 * 1024];
        let t0 = Instant::now();
        while t0.elapsed() < duration && !crate::os::signals::interrupted() {
            s.write_all(&buf).map_err(|e| format!("write: {e}"))?;
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))
    });
    let sent = sender
        .join()
        .map_err(|_| fail("sender thread panicked".into()))?;
    let received = receiver
        .join()
        .map_err(|_| fail("receiver thread panicked".into()))?;
    if crate::os::signals::interrupted() {
        return Err(DemoError::Interrupted);
    }
    sent.map_err(fail)?;
    let (bytes, elapsed) = received.map_err(fail)?;
    let secs_f = elapsed.as_secs_f64().max(0.001);
    Ok(Rate {
        mbit_per_s: bytes as f64 * 8.0 / secs_f / 1e6,
        method: format!("TCP stream timed by fwd demo, {secs} s"),
    })
}

fn open_ns(ns: &Ns) -> Result<File, DemoError> {
    let path = Path::new("/run/netns").join(ns.name());
    File::open(&path).map_err(|e| DemoError::Failed(format!("open {}: {e}", path.display())))
}

/// Moves the calling thread (only) into the namespace `f` refers to.
fn enter(f: &File) -> Result<(), String> {
    // SAFETY: setns(2) on an open nsfs file descriptor; it changes only this thread's
    // network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iperf3_summary() {
        let text = "\
Connecting to host 10.8.0.1, port 5201
[  5] local 10.8.0.3 port 40000 connected to 10.8.0.1 port 5201
[ ID] Interval           Transfer     Bitrate         Retr  Cwnd
[  5]   0.00-1.00   sec  50.0 MBytes   419 Mbits/sec    0    1.2 MBytes
- - - - - - - - - - - - - - - - - - - - - - - - -
[ ID] Interval           Transfer     Bitrate         Retr
[  5]   0.00-3.00   sec   150 MBytes   420 Mbits/sec    0             sender
[  5]   0.00-3.04   sec   148 MBytes   409.5 Mbits/sec                  receiver

iperf Done.
";
        assert_eq!(parse_iperf3_receiver(text), Some(409.5));
        assert_eq!(parse_iperf3_receiver("iperf Done.\n"), None);
        assert_eq!(parse_iperf3_receiver("Mbits/sec receiver\n"), None);
    }
}
