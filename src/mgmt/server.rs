//! The management listener: a TCP socket (`management IP PORT`) serving up to
//! [`MAX_CONNECTIONS`] clients at once, one thread each (OpenVPN serves a single one).
//!
//! Connection threads own no server state. Commands that need it travel as [`MgmtRequest`]s
//! over a bounded channel to the control thread, which answers on the request's own reply
//! channel; a full queue or a silent control thread turns into an `ERROR:` line, never a hang.
//! Every thread checks the stop flag at least every [`POLL`], so shutdown is prompt.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::mgmt::command::{self, Command};
use crate::mgmt::reply::{self, LocalInfo, GREETING};

/// Simultaneous management connections; more are refused with an `ERROR:` line.
pub const MAX_CONNECTIONS: usize = 16;
/// Requests waiting for the control thread.
const QUEUE: usize = 64;
/// How long a connection waits for the control thread's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Stop-flag / bytecount polling period of every management thread.
pub const POLL: Duration = Duration::from_millis(200);
/// Longest accepted command line; a client sending more is disconnected.
const MAX_LINE: usize = 64 * 1024;

/// What a connection asks of the control thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A command with [`Command::needs_server`].
    Run(Command),
    /// `>BYTECOUNT_CLI` lines for all clients (periodic, after `bytecount N`).
    ByteCounts,
}

/// A request plus where to send the complete reply text (CRLF lines).
#[derive(Debug)]
pub struct MgmtRequest {
    pub req: Request,
    pub reply: Sender<String>,
}

/// The running listener.
pub struct MgmtServer {
    pub local: SocketAddr,
    handle: JoinHandle<()>,
}

impl MgmtServer {
    /// Wait for the listener thread (after the stop flag was set).
    pub fn join(self) {
        let _ = self.handle.join();
    }
}

/// Bind `addr` and start serving. Returns the listener and the request queue the control
/// thread must poll.
pub fn spawn(
    addr: SocketAddr,
    info: LocalInfo,
    stop: Arc<AtomicBool>,
) -> io::Result<(MgmtServer, Receiver<MgmtRequest>)> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (tx, rx) = bounded(QUEUE);
    let info = Arc::new(info);
    let handle = std::thread::Builder::new()
        .name("fwd-mgmt".into())
        .spawn(move || accept_loop(listener, tx, info, stop))?;
    tracing::info!(%local, "MANAGEMENT: TCP Socket listening");
    Ok((MgmtServer { local, handle }, rx))
}

/// Decrements the live-connection count when a connection thread ends, however it ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn accept_loop(
    listener: TcpListener,
    tx: Sender<MgmtRequest>,
    info: Arc<LocalInfo>,
    stop: Arc<AtomicBool>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    let _ = stream.write_all(b"ERROR: too many management connections\r\n");
                    tracing::warn!(%peer, "MANAGEMENT: connection refused (limit {MAX_CONNECTIONS})");
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let slot = Slot(active.clone());
                let (tx, info, stop) = (tx.clone(), info.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("fwd-mgmt-conn".into())
                    .spawn(move || {
                        let _slot = slot;
                        tracing::info!(%peer, "MANAGEMENT: Client connected");
                        if let Err(e) = serve(stream, &tx, &info, &stop) {
                            tracing::debug!(%peer, "MANAGEMENT: connection error: {e}");
                        }
                        tracing::info!(%peer, "MANAGEMENT: Client disconnected");
                    });
                if let Err(e) = spawned {
                    tracing::warn!("MANAGEMENT: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("MANAGEMENT: accept failed: {e}");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Ask the control thread; errors become the reply text.
fn ask(tx: &Sender<MgmtRequest>, req: Request) -> String {
    let (rtx, rrx) = bounded(1);
    match tx.try_send(MgmtRequest { req, reply: rtx }) {
        Ok(()) => rrx
            .recv_timeout(REPLY_TIMEOUT)
            .unwrap_or_else(|_| "ERROR: the server did not answer\r\n".into()),
        Err(TrySendError::Full(_)) => "ERROR: server busy, try again\r\n".into(),
        Err(TrySendError::Disconnected(_)) => "ERROR: server is shutting down\r\n".into(),
    }
}

fn serve(
    stream: TcpStream,
    tx: &Sender<MgmtRequest>,
    info: &LocalInfo,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(GREETING.as_bytes())?;
    let mut buf = Vec::new();
    let mut bytecount: Option<(Duration, Instant)> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some((every, next)) = bytecount {
            let now = Instant::now();
            if now >= next {
                writer.write_all(ask(tx, Request::ByteCounts).as_bytes())?;
                bytecount = Some((every, next.max(now - every) + every));
            }
        }
        // read_until keeps what it read before a timeout in `buf`, so a line split across
        // timeouts is not lost.
        let eof = match reader.read_until(b'\n', &mut buf) {
            Ok(0) => true,
            Ok(_) => !buf.ends_with(b"\n"),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if buf.len() > MAX_LINE {
                    writer.write_all(b"ERROR: line too long\r\n")?;
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(&buf).into_owned();
            buf.clear();
            let out = match command::parse(&text) {
                Err(e) => format!("{e}\r\n"),
                Ok(Command::Quit) => return Ok(()),
                Ok(cmd) => {
                    if let Command::Bytecount(n) = cmd {
                        bytecount = (n > 0).then(|| {
                            let every = Duration::from_secs(n.into());
                            (every, Instant::now() + every)
                        });
                    }
                    if cmd.needs_server() {
                        ask(tx, Request::Run(cmd))
                    } else {
                        reply::local(&cmd, info).unwrap_or_default()
                    }
                }
            };
            writer.write_all(out.as_bytes())?;
        }
        if eof {
            return Ok(());
        }
    }
    Ok(())
}
