//! Shard steering by OpenVPN peer-id: which shard's socket of the SO_REUSEPORT group a
//! datagram is delivered to.
//!
//! The kernel's default picks a group member by 4-tuple hash, so a client that floats (new
//! address or port) would land on a shard that doesn't hold its keys. `P_DATA_V2` packets
//! carry a 24-bit peer-id chosen by the server, so steering on it keeps every data packet of
//! a peer on one shard no matter where it comes from, without cross-shard handoff on the
//! hot path. This module owns that rule twice, and keeps both copies equal:
//! - [`peer_id_program`] / [`attach`]: a classic BPF program run by the kernel for every
//!   datagram that reaches the group (`SO_ATTACH_REUSEPORT_CBPF`);
//! - [`shard_for`] / [`shard_of_peer`]: the same rule in Rust, so the server knows which
//!   shard owns a peer-id (and must allocate peer-ids accordingly).
//!
//! The rule: a payload of at least 4 bytes whose opcode (`byte0 >> 3`) is `P_DATA_V2` and
//! whose peer-id is not `0xFFFFFF` goes to member `peer_id % shards`; anything else
//! (control packets, `P_DATA_V1`, "no peer-id", short datagrams) falls back to the
//! kernel's hash, so those reach *some* shard and the server must route them itself.
//!
//! Kernel facts this relies on (each checked by a test below): the program sees the UDP
//! payload at offset 0 and its length as the packet length (the UDP header is pulled
//! first); a return value `>= members` means "use the hash"; a failed absolute load ends
//! the program with 0, i.e. member 0, which is why the length is checked before loading.
//!
//! Member indices are the kernel's array order, which is bind order only while no member
//! is closed: closing one moves the last member into its slot. The server therefore keeps
//! every socket of a group open for the group's lifetime. With fewer members than
//! `shards`, ids mapping past the last member fall back to the hash.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use crate::proto::data::{NO_PEER_ID, P_DATA_V2};

/// `SO_ATTACH_REUSEPORT_CBPF` from `asm-generic/socket.h`; libc only exports it for
/// Android. SPARC numbers its socket options differently.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 0x35;

/// What the program returns to mean "no choice": any value `>= members` makes the kernel
/// fall back to its 4-tuple hash.
const FALLBACK: u32 = u32::MAX;

/// Smallest payload the program steers: opcode/key-id byte plus the 3-byte peer-id.
const HEADER_LEN: u32 = 4;

/// Index of the `ret #FALLBACK` instruction in [`peer_id_program`]; every "not ours" jump
/// targets it.
const RET_FALLBACK: usize = 10;

/// Builds the cBPF program for `shards` sockets (pure; unit-testable by interpreting it).
///
/// Returns `peer_id % shards` for `P_DATA_V2` payloads with a peer-id, [`u32::MAX`]
/// (kernel hash) for everything else; see [`shard_for`] for the same rule in Rust. With
/// `shards == 0` the program always falls back (the kernel rejects a modulo by zero).
pub fn peer_id_program(shards: u32) -> Vec<libc::sock_filter> {
    if shards == 0 {
        return vec![stmt(libc::BPF_RET | libc::BPF_K, FALLBACK)];
    }
    let prog = vec![
        // 0: A = payload length. Checked first because a load past the end would end the
        // program with 0, which steers to member 0 instead of falling back.
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0),
        // 1
        jump(libc::BPF_JGE, HEADER_LEN, 1, 0, RET_FALLBACK),
        // 2, 3: A = opcode (the low 3 bits are the key-id, any of which is fine).
        stmt(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0),
        stmt(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 3),
        // 4
        jump(libc::BPF_JEQ, u32::from(P_DATA_V2), 4, 0, RET_FALLBACK),
        // 5, 6: A = peer-id (big-endian bytes 1..4).
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, NO_PEER_ID),
        // 7: "no peer-id" says nothing about the owner; the server finds it by address.
        jump(libc::BPF_JEQ, NO_PEER_ID, 7, RET_FALLBACK, 0),
        // 8, 9
        stmt(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, shards),
        stmt(libc::BPF_RET | libc::BPF_A, 0),
        // 10 = RET_FALLBACK
        stmt(libc::BPF_RET | libc::BPF_K, FALLBACK),
    ];
    debug_assert_eq!(prog.len(), RET_FALLBACK + 1);
    prog
}

/// Attaches the program to the reuseport group of `sock` (any member). Err if the kernel
/// refuses (e.g. `sock` was not bound with SO_REUSEPORT), or `InvalidInput` for
/// `shards == 0`.
///
/// The group keeps the program for members bound later too; attaching again replaces it.
pub fn attach(sock: &UdpSocket, shards: u32) -> io::Result<()> {
    if shards == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "steering over zero shards",
        ));
    }
    attach_program(sock, &peer_id_program(shards))
}

/// The shard the program picks for a payload (`None` = kernel hash), the same rule in Rust:
/// used by the server to know which shard owns a peer and by tests.
pub fn shard_for(payload: &[u8], shards: u32) -> Option<u32> {
    let [op, p0, p1, p2, ..] = *payload else {
        return None;
    };
    if op >> 3 != P_DATA_V2 {
        return None;
    }
    shard_of_peer(u32::from_be_bytes([0, p0, p1, p2]), shards)
}

/// The shard that receives `P_DATA_V2` packets carrying `peer_id`: `peer_id % shards`.
///
/// The server allocates a peer-id on the shard that must own the peer (the one holding its
/// keys), so it picks ids for which this returns that shard. `None` when there is no
/// owner by peer-id: `shards == 0`, or `peer_id` is [`NO_PEER_ID`] or does not fit the
/// 24-bit wire field.
pub fn shard_of_peer(peer_id: u32, shards: u32) -> Option<u32> {
    if shards == 0 || peer_id >= NO_PEER_ID {
        return None;
    }
    Some(peer_id % shards)
}

fn attach_program(sock: &UdpSocket, prog: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(prog.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cBPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program (it copies it before returning); the field is
        // `*mut` because that is how the C struct is declared.
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` is a live sock_fprog whose `filter` points at `len` initialized
    // instructions borrowed for the whole call; the kernel copies them and writes nothing.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A non-jump instruction. The opcode constants are u32 in libc but all fit the u16 field.
const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// `if A <op> k` at index `at`, continuing at absolute indices `t` / `f`, where 0 means
/// the next instruction (cBPF stores forward offsets from the next instruction, which are
/// easy to get wrong by hand).
const fn jump(op: u32, k: u32, at: usize, t: usize, f: usize) -> libc::sock_filter {
    let next = at + 1;
    let t = if t == 0 { next } else { t };
    let f = if f == 0 { next } else { f };
    assert!(t >= next && t - next <= 255 && f >= next && f - next <= 255);
    libc::sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt: (t - next) as u8,
        jf: (f - next) as u8,
        k,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::os::fd::AsRawFd;

    use rand::{Rng, SeedableRng};

    use super::*;

    /// Runs a cBPF program the way the kernel does for a reuseport group, for the opcodes
    /// this module emits; panics on anything else so a new opcode can't go unchecked.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        assert!(!prog.is_empty() && prog.len() <= libc::BPF_MAXINSNS as usize);
        let mut a: u32 = 0;
        let mut pc = 0usize;
        loop {
            let ins = prog.get(pc).expect("ran off the end of the program");
            let code = u32::from(ins.code);
            let k = ins.k;
            pc += 1;
            let skip = |c: bool| usize::from(if c { ins.jt } else { ins.jf });
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_LEN => a = pkt.len() as u32,
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => {
                    match pkt.get(k as usize) {
                        Some(&b) => a = u32::from(b),
                        // The kernel ends the program with 0 on an out-of-bounds load.
                        None => return 0,
                    }
                }
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    match pkt.get(k as usize..k as usize + 4) {
                        Some(w) => a = u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                        None => return 0,
                    }
                }
                c if c == libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K => a = a.wrapping_shr(k),
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => a &= k,
                c if c == libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K => {
                    assert_ne!(k, 0, "the kernel rejects mod by constant 0");
                    a %= k;
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => pc += skip(a == k),
                c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => pc += skip(a >= k),
                c if c == libc::BPF_RET | libc::BPF_A => return a,
                c if c == libc::BPF_RET | libc::BPF_K => return k,
                _ => panic!("opcode {code:#x} not interpreted"),
            }
        }
    }

    /// What the kernel does with the program's result: an index below `members` picks that
    /// member, anything else means the hash.
    fn pick(prog: &[libc::sock_filter], pkt: &[u8], members: u32) -> Option<u32> {
        Some(run(prog, pkt)).filter(|&i| i < members)
    }

    fn v2(key_id: u8, peer_id: u32, body: &[u8]) -> Vec<u8> {
        let mut p = vec![(P_DATA_V2 << 3) | key_id];
        p.extend_from_slice(&peer_id.to_be_bytes()[1..]);
        p.extend_from_slice(body);
        p
    }

    const SHARD_COUNTS: [u32; 9] = [1, 2, 3, 4, 7, 8, 64, 1000, 0xFF_FFFF];

    #[test]
    fn program_matches_shard_for_on_edges() {
        let edge_ids = |n: u32| [0, 1, n - 1, n, n + 1, 0xFF_FFFE, NO_PEER_ID];
        for &n in &SHARD_COUNTS {
            let prog = peer_id_program(n);
            // Every first byte (all opcodes and key-ids) with edge peer-ids and lengths
            // around the 4-byte header, including 0..4-byte short payloads.
            for op in 0..=255u8 {
                for id in edge_ids(n) {
                    let full = [op, (id >> 16) as u8, (id >> 8) as u8, id as u8, 0xAA, 0x55];
                    for len in 0..=full.len() {
                        let pkt = &full[..len];
                        assert_eq!(
                            pick(&prog, pkt, n),
                            shard_for(pkt, n),
                            "n={n} pkt={pkt:02x?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn program_matches_shard_for_on_random_payloads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x05ee_d0f5_7ee7);
        for &n in &SHARD_COUNTS {
            let prog = peer_id_program(n);
            for _ in 0..20_000 {
                let len = rng.gen_range(0..64);
                let mut pkt: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                // Half of them look like data packets so the steering path gets exercised.
                if len > 0 && rng.gen_bool(0.5) {
                    pkt[0] = (P_DATA_V2 << 3) | rng.gen_range(0..8);
                }
                assert_eq!(pick(&prog, &pkt, n), shard_for(&pkt, n), "n={n} {pkt:02x?}");
            }
        }
    }

    #[test]
    fn program_returns_in_range_or_fallback_never_a_wrong_member() {
        // A raw return value is either a valid member or clearly "hash": never a value
        // that would land in a bigger group by accident.
        for &n in &SHARD_COUNTS {
            let prog = peer_id_program(n);
            for pkt in [
                &b""[..],
                b"\x48",
                b"\x48\0\0",
                b"\x38\0\0\0",
                b"\x48\xff\xff\xff",
            ] {
                assert_eq!(run(&prog, pkt), FALLBACK, "n={n} {pkt:02x?}");
            }
            assert_eq!(run(&prog, &v2(0, 5, b"")), 5 % n);
        }
        assert_eq!(run(&peer_id_program(0), &v2(0, 5, b"x")), FALLBACK);
    }

    #[test]
    fn shard_for_follows_the_rule() {
        for key_id in 0..8 {
            assert_eq!(shard_for(&v2(key_id, 7, b"body"), 3), Some(1));
            assert_eq!(shard_for(&v2(key_id, 7, b""), 3), Some(1));
            assert_eq!(shard_for(&v2(key_id, NO_PEER_ID, b"body"), 3), None);
        }
        assert_eq!(shard_for(&v2(0, 0xFF_FFFE, b""), 4), Some(0xFF_FFFE % 4));
        assert_eq!(shard_for(&v2(0, 7, b"")[..3], 3), None);
        assert_eq!(shard_for(&[0x38, 0, 0, 7], 3), None); // P_CONTROL_HARD_RESET_CLIENT_V2
        assert_eq!(shard_for(&[6 << 3, 0, 0, 7], 3), None); // P_DATA_V1
        assert_eq!(shard_for(&v2(0, 7, b""), 0), None);
        assert_eq!(shard_of_peer(7, 3), Some(1));
        assert_eq!(shard_of_peer(NO_PEER_ID, 3), None);
        assert_eq!(shard_of_peer(NO_PEER_ID + 1, 3), None);
        assert_eq!(shard_of_peer(7, 0), None);
    }

    #[test]
    fn attach_rejects_zero_shards_and_non_reuseport_sockets() {
        let plain = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert_eq!(
            attach(&plain, 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        if let Ok(()) = attach(&plain, 2) {
            panic!("attached a reuseport program to a socket outside any group");
        }
    }

    /// A reuseport group on 127.0.0.1 with a fresh port, non-blocking so tests can see
    /// which member got a datagram.
    fn group(n: usize) -> (Vec<UdpSocket>, SocketAddr) {
        let socks = crate::os::udp::bind_reuseport((Ipv4Addr::LOCALHOST, 0).into(), n, None)
            .expect("bind reuseport group");
        for s in &socks {
            s.set_nonblocking(true).unwrap();
        }
        let addr = socks[0].local_addr().unwrap();
        (socks, addr)
    }

    /// Attaches `prog`, or returns false when this sandbox can't (only outside CI).
    fn attach_or_skip(sock: &UdpSocket, prog: &[libc::sock_filter]) -> bool {
        match attach_program(sock, prog) {
            Ok(()) => true,
            Err(e)
                if std::env::var_os("CI").is_none()
                    && matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOPROTOOPT)) =>
            {
                eprintln!("skipping: SO_ATTACH_REUSEPORT_CBPF refused here ({e})");
                false
            }
            Err(e) => panic!("SO_ATTACH_REUSEPORT_CBPF: {e}"),
        }
    }

    /// Sends `pkt` from `client` and returns the index of the member that received it,
    /// checking it arrived intact and nowhere else.
    fn deliver(socks: &[UdpSocket], client: &UdpSocket, to: SocketAddr, pkt: &[u8]) -> usize {
        client.send_to(pkt, to).unwrap();
        let mut fds: Vec<libc::pollfd> = socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live, initialized array of exactly `fds.len()` pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 2000) };
        assert!(rc > 0, "datagram {pkt:02x?} not delivered (poll rc {rc})");
        let mut got = None;
        let mut buf = [0u8; 256];
        for (i, s) in socks.iter().enumerate() {
            while let Ok((len, from)) = s.recv_from(&mut buf) {
                assert_eq!(from, client.local_addr().unwrap());
                assert_eq!(&buf[..len], pkt);
                assert!(got.replace(i).is_none(), "{pkt:02x?} delivered twice");
            }
        }
        got.expect("poll said readable but nothing was received")
    }

    fn clients(count: usize) -> Vec<UdpSocket> {
        (0..count)
            .map(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
            .collect()
    }

    #[test]
    fn kernel_program_sees_payload_at_offset_0_and_payload_length() {
        let (socks, to) = group(3);
        // Probe 1: return the length. Member 1 for a 1-byte datagram proves the length
        // excludes the 8-byte UDP header (else every probe would fall back to the hash).
        let ret_len = [
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_LEN, 0),
            stmt(libc::BPF_RET | libc::BPF_A, 0),
        ];
        if !attach_or_skip(&socks[0], &ret_len) {
            return;
        }
        for c in clients(6) {
            for len in 0..3 {
                assert_eq!(deliver(&socks, &c, to, &vec![0x77; len]), len);
            }
        }
        // Probe 2: return byte 0. If offset 0 were the UDP header it would be the source
        // port's high byte (>= 3 for any port above 767), never these small values.
        let ret_byte0 = [
            stmt(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0),
            stmt(libc::BPF_RET | libc::BPF_A, 0),
        ];
        assert!(attach_or_skip(&socks[1], &ret_byte0));
        for c in clients(6) {
            for b in 0..3u8 {
                assert_eq!(
                    deliver(&socks, &c, to, &[b, 0xEE, 0xEE, 0xEE]),
                    usize::from(b)
                );
            }
        }
        // Probe 3: a load past the end picks member 0 rather than the hash, which is why
        // the real program checks the length first.
        let load_past_end = [
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            stmt(libc::BPF_RET | libc::BPF_K, FALLBACK),
        ];
        assert!(attach_or_skip(&socks[2], &load_past_end));
        for c in clients(6) {
            assert_eq!(deliver(&socks, &c, to, &[0x48, 0, 1]), 0);
        }
    }

    fn kernel_steers_by_peer_id(n: usize) {
        let (socks, to) = group(n);
        if !attach_or_skip(&socks[n - 1], &peer_id_program(n as u32)) {
            return;
        }
        let shards = n as u32;
        let ids = [0, 1, 2, 3, 4, 5, 6, 7, 100, 0x12_3456, 0xFF_FFFD, 0xFF_FFFE];
        // Each client is the same peer set "floating" to a new source port.
        let cs = clients(5);
        let mut hashed = Vec::new();
        for (ci, c) in cs.iter().enumerate() {
            for (i, &id) in ids.iter().enumerate() {
                let key_id = ((ci + i) % 8) as u8;
                // Also exactly 4 bytes: the shortest payload that is steered.
                let body: &[u8] = if i % 3 == 0 { b"" } else { b"packet-id+ct+tag" };
                let pkt = v2(key_id, id, body);
                let want = shard_of_peer(id, shards).unwrap() as usize;
                assert_eq!(deliver(&socks, c, to, &pkt), want, "peer-id {id:#x}, n={n}");
            }
            // Not steerable: all of these go by the 4-tuple hash, i.e. to one member per
            // client, whichever it is.
            let control = deliver(&socks, c, to, &[0x38, 1, 2, 3, 4, 5, 6, 7, 8]);
            for pkt in [
                &v2(0, NO_PEER_ID, b"body")[..],
                &[6 << 3, 0, 0, 1, 9, 9][..], // P_DATA_V1
                &v2(0, 1, b"")[..3],          // short
                &[0x48][..],
                &[][..],
            ] {
                assert_eq!(deliver(&socks, c, to, pkt), control, "{pkt:02x?} n={n}");
            }
            hashed.push(control);
        }
        // More clients, short data-looking packets only: a failed load would put them all
        // on member 0; the hash spreads them (all-on-0 by chance: 1 in n^24).
        for c in clients(24) {
            hashed.push(deliver(&socks, &c, to, &[0x48, 0, 1]));
        }
        assert!(
            hashed.iter().any(|&i| i != 0),
            "fallback always member 0: {hashed:?}"
        );
    }

    #[test]
    fn kernel_steers_by_peer_id_over_3_sockets() {
        kernel_steers_by_peer_id(3);
    }

    #[test]
    fn kernel_steers_by_peer_id_over_2_sockets() {
        kernel_steers_by_peer_id(2);
    }

    #[test]
    fn attach_applies_to_members_bound_later() {
        let (mut socks, to) = group(1);
        if !attach_or_skip(&socks[0], &peer_id_program(2)) {
            return;
        }
        let more = crate::os::udp::bind_reuseport(to, 1, None).unwrap();
        more[0].set_nonblocking(true).unwrap();
        socks.extend(more);
        let c = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for id in 0..6 {
            assert_eq!(deliver(&socks, &c, to, &v2(0, id, b"x")), (id % 2) as usize);
        }
    }
}
