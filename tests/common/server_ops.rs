//! Arbitrary datagram sequences against `ServerCore`, with a genuine client alongside so that
//! the sequences reach established sessions, renegotiations and reconnects, not only the
//! stateless cookie check. Shared by the `server_datagrams` fuzz target and the proptest in
//! `tests/server_datagrams.rs`; [`run`] must never panic for any input.
//!
//! The input is a byte program: each op byte picks an action, following bytes are its
//! arguments; a missing argument reads as 0, so every byte string is a valid program.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use super::pair::{Options, Pair, Wrap};
use fwd::route::PeerId;

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

fn addr(sel: u8, client: SocketAddr) -> SocketAddr {
    match sel % 4 {
        0 | 1 => client,
        2 => "192.0.2.77:5000".parse().unwrap_or(client),
        _ => "[2001:db8::7]:1194".parse().unwrap_or(client),
    }
}

/// Run one byte program. Panics only on a bug (in fwd or, while developing, the harness).
pub fn run(data: &[u8]) {
    let mut inp = Input { data, pos: 0 };
    let wrap = match inp.byte() % 3 {
        0 => Wrap::None,
        1 => Wrap::TlsCrypt,
        _ => Wrap::TlsAuth,
    };
    let mut p = Pair::with_seed(
        &Options {
            wrap,
            ..Options::default()
        },
        3,
    );
    let client = p.client_addr;
    // Bound the work per input: ops and fake time.
    for _ in 0..256 {
        if inp.done() {
            break;
        }
        match inp.byte() % 10 {
            // Let the genuine traffic flow.
            0 => p.pump(),
            // Time passes.
            1 => {
                let ms = u64::from(inp.byte()) * 50;
                p.advance(Duration::from_millis(ms));
            }
            // Raw bytes from some address.
            2 => {
                let from = addr(inp.byte(), client);
                let n = usize::from(inp.byte());
                let b = inp.bytes(n).to_vec();
                p.inject_to_server(from, &b);
            }
            // A genuine client datagram, one byte changed.
            3 | 4 => {
                let (i, at, x) = (inp.byte(), inp.byte(), inp.byte());
                if let Some(mut b) = pick(&p.sent_to_server, i) {
                    if !b.is_empty() {
                        let at = usize::from(at) % b.len();
                        b[at] ^= x.max(1);
                    }
                    let from = addr(inp.byte(), client);
                    p.inject_to_server(from, &b);
                }
            }
            // A genuine client datagram replayed, possibly from elsewhere, possibly cut short.
            5 => {
                let (i, sel, cut) = (inp.byte(), inp.byte(), inp.byte());
                if let Some(mut b) = pick(&p.sent_to_server, i) {
                    if cut != 0 {
                        b.truncate(usize::from(cut));
                    }
                    p.inject_to_server(addr(sel, client), &b);
                }
            }
            // A genuine client datagram with bytes spliced onto its end.
            6 => {
                let i = inp.byte();
                let n = usize::from(inp.byte() % 64);
                let tail = inp.bytes(n).to_vec();
                if let Some(mut b) = pick(&p.sent_to_server, i) {
                    b.extend_from_slice(&tail);
                    p.inject_to_server(client, &b);
                }
            }
            // Renegotiations from either side.
            7 => {
                let now = p.now;
                if inp.byte() % 2 == 0 {
                    p.client.start_renegotiation(now);
                } else {
                    p.server.renegotiate(now, PeerId(0));
                }
            }
            // The client restarts from the same address.
            8 => {
                let seed = inp.byte();
                p.restart_client(seed);
            }
            // The server tells everyone to go, or kills the peer.
            _ => {
                let now = p.now;
                match inp.byte() % 3 {
                    0 => p.server.shutdown_all(now, "RESTART"),
                    1 => p.server.kill_peer(
                        now,
                        PeerId(0),
                        Some("HALT"),
                        fwd::proto::session::CloseReason::Local("test".into()),
                    ),
                    _ => p.server.kill_peer(
                        now,
                        PeerId(0),
                        None,
                        fwd::proto::session::CloseReason::Local("test".into()),
                    ),
                }
            }
        }
        p.pump();
    }
    // Whatever happened, time running on must settle without panics, and the server must
    // never report more peers than connections it created.
    p.run_until(Duration::from_secs(140), Duration::from_secs(1), |_| false);
    assert!(p.server.peer_count() as u64 <= p.server.stats.sessions_created);
}

fn pick(v: &[Vec<u8>], i: u8) -> Option<Vec<u8>> {
    if v.is_empty() {
        return None;
    }
    v.get(usize::from(i) % v.len()).cloned()
}
