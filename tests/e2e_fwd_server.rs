//! fwd as the server against real, stock `openvpn` 2.6 clients, end to end in network
//! namespaces (issues #3 and #4).
//!
//! Every test builds its own lab (unique namespaces, torn down by `Lab`'s `Drop` even when an
//! assertion fails), starts the fwd binary as the server with an OpenVPN-syntax config and
//! connects `/usr/sbin/openvpn` clients. "Works" always means: the client completed
//! initialization, its tun carries the pushed IPv4/IPv6 addresses (read back with
//! `ip -o addr`), and pings cross the tunnel in both directions.
//!
//! The tests take a process-wide lock and run one at a time: each fwd server runs a shard per
//! core, and on a small shared box parallel labs would only make the 1 s ping timeouts flaky.
//!
//! Needs root, /dev/net/tun, `ip`, `openvpn`, `openssl`, `ping` (installed by `.ci/run`);
//! skips with a message elsewhere, fails under CI.

mod common;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::lab::{Host, IfAddr};
use common::net::{edit, fwd, ip, serial, show, Net, READY};
use common::scenario::{run_server_scenario, ServerKind, Underlay, PORT};

/// How long a log line may trail the client's ready line.
const LOG_SETTLE: Duration = Duration::from_secs(3);

/// The log line openvpn 2.6 prints with the data channel's negotiated flags.
fn protocol_flags(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("Protocol options: protocol-flags"))
        .map(str::to_string)
        .unwrap_or_default()
}

fn data_cipher_line(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("Data Channel: cipher"))
        .map(str::to_string)
        .unwrap_or_default()
}

/// The client log's line with the (first) PUSH_REPLY it received; empty if none.
fn push_reply_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("PUSH_REPLY"))
        .unwrap_or_default()
}

/// The options of a PUSH_REPLY log line, without the line's timestamp and prefix (which
/// differ between runs and servers) and without ` dyn-tls-crypt` (in openvpn's
/// `protocol-flags`; fwd does not offer it), so fwd's and openvpn's replies compare equal.
fn push_options(line: &str) -> String {
    line.split_once("PUSH_REPLY")
        .map(|x| x.1.replace(" dyn-tls-crypt", ""))
        .unwrap_or_default()
}

/// Asserts that the client's log shows the data channel using `cipher` (quoted, as logged).
fn assert_cipher(log: &str, cipher: &str) {
    let line = data_cipher_line(log);
    assert!(line.contains(cipher), "{line}");
}

/// Starts fwd with `conf`, connects client `i` (client1 or client2) alone with `cc` and
/// asserts that it works: 10.8.0.2 and, from the scenario, fd00:8::1000 (client1, the pool)
/// or fd00:8::100 (client2, its ccd).
fn serve_one(net: &mut Net, conf: &str, i: usize, cc: &str) {
    net.start_server(conf);
    net.connect(i, cc);
    net.assert_client_works(i, Some("10.8.0.2"), SOLE_V6[i]);
}

/// The IPv6 address of client1 / client2 when it is the only client (see [`serve_one`]).
const SOLE_V6: [&str; 2] = ["fd00:8::1000", "fd00:8::100"];

/// `conf` with `tls-crypt` replaced by `{before}tls-auth KEY{after}` (same key file).
fn tls_auth(net: &Net, conf: &str, before: &str, after: &str) -> String {
    let key = net.pki.tls_crypt.display();
    edit(
        conf,
        &["tls-crypt"],
        &format!("{before}tls-auth {key}{after}"),
    )
}

/// Client1 on the IPv4/IPv6 network 10.99.0.0/24 + fd00:99::/64 (its ccd iroutes), IP
/// forwarding off in the server namespace, fwd started with `conf` and both clients
/// connected and working; returns the two client hosts.
fn two_clients_with_lan(net: &mut Net, conf: &str) -> (Host, Host) {
    let c1 = net.client(0).clone();
    net.lab
        .stub_net(&c1, "lan0", &["10.99.0.1/24", "fd00:99::1/64"]);
    net.server_forwarding_off();
    let (cc1, cc2) = (net.client_conf(0), net.client_conf(1));
    serve_two(net, conf, &cc1, &cc2);
    (c1, net.client(1).clone())
}

/// Starts fwd with `conf`, connects client1 with `cc1`, then client2 with `cc2`, and asserts
/// that both work with the scenario's addresses (client2's IPv6 from its ccd).
fn serve_two(net: &mut Net, conf: &str, cc1: &str, cc2: &str) {
    net.start_server(conf);
    net.connect(0, cc1);
    net.connect(1, cc2);
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::100");
}

// ---------------------------------------------------------------------------------------
// Issue #3: the compatibility matrix, one stock client each.
// ---------------------------------------------------------------------------------------

/// tls-crypt + AES-256-GCM over an IPv4 underlay: the full reference scenario (two clients,
/// ccd, iroutes, client-to-client), then the negotiated cipher and key derivation.
#[test]
fn tls_crypt_aes256gcm_ipv4_underlay() {
    let _g = serial();
    run_server_scenario(fwd(), Underlay::V4);
    // The scenario drops its lab; the cipher is checked on a lab of our own.
    let Some(mut net) = Net::new("fwd-gcm", Underlay::V4, &["client1"]) else {
        return;
    };
    let conf = net.scenario_server_conf();
    let cc = edit(&net.client_conf(0), &[], "data-ciphers AES-256-GCM");
    serve_one(&mut net, &conf, 0, &cc);
    assert_data_path_variant(&net);
    let log = net.wait_client_log(0, "Protocol options", LOG_SETTLE);
    assert_cipher(&log, "'AES-256-GCM'");
    assert!(
        protocol_flags(&log).contains("tls-ekm"),
        "{}",
        protocol_flags(&log)
    );
}

/// The server's shards log the data path this run asked for with `FWD_E2E_ARGS` (how
/// `.ci/run` runs the suite once per driver and with offloads off): the io_uring driver by
/// default, epoll with `--io epoll`; tun and UDP offloads on unless `--offload off`.
fn assert_data_path_variant(net: &Net) {
    let log = std::fs::read_to_string(net.server_log()).unwrap_or_default();
    let args = std::env::var("FWD_E2E_ARGS").unwrap_or_default();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("shard data path"))
        .collect();
    assert!(
        !lines.is_empty(),
        "no `shard data path` line in the server log:\n{log}"
    );
    let driver = if args.contains("--io epoll") {
        "driver=\"epoll\""
    } else {
        "driver=\"io_uring\""
    };
    let offloads = if args.contains("--offload off") {
        "udp_gso=false tun_vnet=false"
    } else {
        "udp_gso=true tun_vnet=true"
    };
    for l in lines {
        assert!(
            l.contains(driver) && l.contains(offloads),
            "want {driver} {offloads}: {l}"
        );
    }
}

/// The client only offers CHACHA20-POLY1305; fwd must pick it.
#[test]
fn chacha20_poly1305() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-chacha", Underlay::V4, &["client1"]) else {
        return;
    };
    let conf = net.scenario_server_conf();
    let cc = edit(&net.client_conf(0), &[], "data-ciphers CHACHA20-POLY1305");
    serve_one(&mut net, &conf, 0, &cc);
    let log = net.wait_client_log(0, "Data Channel: cipher", LOG_SETTLE);
    assert_cipher(&log, "'CHACHA20-POLY1305'");
}

/// tls-auth with the default SHA1 HMAC: server `tls-auth ta.key 0`; client1 gives the
/// direction inline (`tls-auth ta.key 1`), client2 with `key-direction 1`.
#[test]
fn tls_auth_sha1() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-tlsauth", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let conf = tls_auth(&net, &net.scenario_server_conf(), "", " 0");
    let c1 = tls_auth(&net, &net.client_conf(0), "", " 1");
    let c2 = tls_auth(&net, &net.client_conf(1), "key-direction 1\n", "");
    serve_two(&mut net, &conf, &c1, &c2);
}

/// Data keys from the TLS 1.0 PRF instead of TLS-EKM.
///
/// A stock openvpn 2.6 client always announces IV_PROTO_TLS_KEY_EXPORT; `compat-mode 2.4.0`
/// (checked against the binary) changes cipher defaults, not that. So the client-side case
/// checks that fwd still serves a `compat-mode` client (with EKM), and PRF itself is forced
/// by fwd's `force-prf`: fwd then does not push `protocol-flags … tls-ekm` and both sides
/// must derive the same keys with the PRF for ping to work.
#[test]
fn prf_key_derivation() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-prf", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let conf = net.scenario_server_conf();
    let cc = edit(&net.client_conf(0), &[], "compat-mode 2.4.0");
    serve_one(&mut net, &conf, 0, &cc);
    let _ = net.stop_server();
    net.disconnect(0);

    let conf = edit(&net.scenario_server_conf(), &[], "force-prf");
    let cc = net.client_conf(1);
    serve_one(&mut net, &conf, 1, &cc);
    let log = net.wait_client_log(1, "Protocol options", LOG_SETTLE);
    let flags = protocol_flags(&log);
    assert!(!flags.contains("tls-ekm"), "client still uses EKM: {flags}");
    assert!(
        !log.contains("key-derivation tls-ekm"),
        "fwd pushed key-derivation tls-ekm"
    );
}

/// `proto udp6`: the clients reach fwd at its fd00:200:k::1 underlay address; the full
/// reference scenario.
#[test]
fn ipv6_underlay() {
    let _g = serial();
    run_server_scenario(fwd(), Underlay::V6);
}

// ---------------------------------------------------------------------------------------
// Issue #4: server features with two stock clients.
// ---------------------------------------------------------------------------------------

/// ccd (static `ifconfig-ipv6-push` for client2, `iroute`/`iroute-ipv6` for client1), pushed
/// routes installed on the client, and client-to-client switching inside fwd: forwarding is
/// off in the server namespace, so only fwd can carry client2 -> client1 and client2 -> the
/// network behind client1.
#[test]
fn ccd_iroute_client_to_client_on() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-c2c", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let conf = net.scenario_server_conf();
    let (c1, c2) = two_clients_with_lan(&mut net, &conf);
    let r6 = net.routes(&c2, true);
    assert!(
        r6.iter().any(|r| r.starts_with("fd00:99::/64")),
        "pushed route-ipv6 not installed on client2: {r6:?}"
    );
    let r4 = net.routes(&c2, false);
    assert!(
        r4.iter().any(|r| r.starts_with("10.99.0.0/24")),
        "pushed route not installed on client2: {r4:?}"
    );
    net.assert_pings(&[
        (&c1, "10.8.0.3"),
        (&c1, "fd00:8::100"),
        (&c2, "10.8.0.2"),
        (&c2, "fd00:8::1000"),
        (&c2, "10.99.0.1"),
        (&c2, "fd00:99::1"),
        (&net.server, "10.99.0.1"),
        (&net.server, "fd00:99::1"),
    ]);
}

/// Without `client-to-client`, fwd hands client-to-client packets to the server's tun; with
/// forwarding off there, they must not arrive. The server itself still reaches both clients
/// and client1's iroute networks.
#[test]
fn ccd_client_to_client_off() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-noc2c", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let conf = edit(&net.scenario_server_conf(), &["client-to-client"], "");
    let (c1, c2) = two_clients_with_lan(&mut net, &conf);
    net.assert_pings(&[(&net.server, "10.99.0.1"), (&net.server, "fd00:99::1")]);
    net.assert_no_pings(&[
        (&c1, "10.8.0.3"),
        (&c1, "fd00:8::100"),
        (&c2, "10.8.0.2"),
        (&c2, "fd00:8::1000"),
        (&c2, "10.99.0.1"),
        (&c2, "fd00:99::1"),
    ]);
}

/// `ifconfig-pool-persist`: after a fwd restart, clients reconnecting in the reverse order
/// get their previous IPv4 and IPv6 pool addresses back (no ccd here: both come from the
/// pools, so without the file the order alone would swap them).
#[test]
fn pool_persist_across_restart() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-persist", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let persist = net.dir.join("ipp.txt");
    let conf = edit(
        &net.scenario_server_conf(),
        &["client-config-dir"],
        &format!("ifconfig-pool-persist {}", persist.display()),
    );
    net.start_server(&conf);
    for i in 0..2 {
        net.connect(i, &net.client_conf(i));
    }
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");
    net.disconnect(0);
    net.disconnect(1);
    let status = net.stop_server();
    let text = std::fs::read_to_string(&persist).unwrap_or_default();
    assert!(
        text.contains("client1,10.8.0.2") && text.contains("client2,10.8.0.3"),
        "persist file after fwd stopped ({status}):\n{text}"
    );

    net.start_server(&conf);
    for i in [1, 0] {
        net.connect(i, &net.client_conf(i));
    }
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
}

/// An IPv6-only server: `server-ipv6` alone, then the explicit `mode server` form; the
/// client gets no IPv4 address, ping6 works both ways, and fwd pushes what openvpn 2.6
/// pushes for the same configs (run first as the baseline).
#[test]
fn ipv6_only_server() {
    let _g = serial();
    let Some(want) = ipv6_only(ServerKind::OpenVpn) else {
        return;
    };
    let Some(got) = ipv6_only(fwd()) else {
        return;
    };
    assert_eq!(got, want, "IPv6-only PUSH_REPLYs: fwd vs openvpn");
}

/// Runs both IPv6-only server forms with `kind`; returns the PUSH_REPLY options of each.
fn ipv6_only(kind: ServerKind) -> Option<Vec<String>> {
    let name = format!("{}-v6only", kind.label());
    let mut net = Net::with_server(kind, &name, Underlay::V4, &["client1", "client2"])?;
    let mut replies = Vec::new();
    let base = edit(
        &net.scenario_server_conf(),
        &[
            "server",
            "server-ipv6",
            "route",
            "push",
            "client-config-dir",
            "topology",
        ],
        "",
    );
    let macro_form = edit(&base, &[], "topology subnet\nserver-ipv6 fd00:8::/64");
    let explicit = edit(
        &base,
        &[],
        "mode server\ntls-server\ntopology subnet\npush \"topology subnet\"\n\
         ifconfig-ipv6 fd00:8::1/64 fd00:8::2\nifconfig-ipv6-pool fd00:8::1000/64\n\
         push \"tun-ipv6\"",
    );
    for (i, conf) in [macro_form, explicit].iter().enumerate() {
        net.start_server(conf);
        let cc = net.client_conf(i);
        let log = net.connect(i, &cc);
        net.assert_client_works(i, None, "fd00:8::1000");
        let c = net.client(i);
        let v4: Vec<IfAddr> = net
            .lab
            .addrs(c, "tun0")
            .into_iter()
            .filter(|a| a.addr.is_ipv4())
            .collect();
        assert!(v4.is_empty(), "IPv6-only server gave IPv4 [{}]", show(&v4));
        let push = push_reply_line(&log);
        assert!(!push.contains("ifconfig 10."), "IPv4 pushed: {push}");
        replies.push(push_options(push));
        net.disconnect(i);
        let _ = net.stop_server();
    }
    Some(replies)
}

/// 200 `push "route-ipv6 …"` lines: far more than one PUSH_REPLY holds, so fwd must split
/// them with push-continuation; the stock client installs all of them.
#[test]
fn push_200_routes() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-push200", Underlay::V4, &["client1"]) else {
        return;
    };
    let mut pushes = String::new();
    // 1..=200: `fd00:1:0::` would print as `fd00:1::`.
    for n in 1..=200u32 {
        let _ = writeln!(pushes, "push \"route-ipv6 fd00:1:{n:x}::/64\"");
    }
    let conf = edit(&net.scenario_server_conf(), &[], &pushes);
    net.start_server(&conf);
    let cc = net.client_conf(0);
    let log = net.connect(0, &cc);
    let replies = log.matches("PUSH: Received control message").count();
    assert!(replies > 1, "expected a split PUSH_REPLY, got {replies}");
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    let c = net.client(0).clone();
    let routes = net.routes(&c, true);
    let pushed: Vec<&String> = routes.iter().filter(|r| r.starts_with("fd00:1:")).collect();
    assert_eq!(
        pushed.len(),
        200,
        "client installed {} of 200 pushed IPv6 routes",
        pushed.len()
    );
    for n in [1u32, 2, 100, 200] {
        let want = format!("fd00:1:{n:x}::/64");
        assert!(
            pushed.iter().any(|r| r.starts_with(&want)),
            "route {want} missing"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Robustness.
// ---------------------------------------------------------------------------------------

/// Runs `f` on a thread that has joined the network namespace `ns`.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let path = format!("/run/netns/{ns}");
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            use std::os::fd::AsRawFd as _;
            // SAFETY: setns(2) on a namespace fd we own; it changes only this thread's
            // network namespace, and this thread ends with the scope.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Datagrams a broken or hostile peer might send: empty, one byte, every opcode with a
/// truncated body, oversized, random.
fn garbage() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff; 1]];
    for op in 1u8..=11 {
        for key_id in [0u8, 7] {
            let b = (op << 3) | key_id;
            for len in [1usize, 2, 4, 9, 13, 14, 30, 60] {
                let mut p = vec![0u8; len];
                p[0] = b;
                for (i, x) in p.iter_mut().enumerate().skip(1) {
                    *x = (i as u8).wrapping_mul(37) ^ op;
                }
                v.push(p);
            }
        }
    }
    // Large and random-looking.
    let mut x: u32 = 0x1234_5678;
    for len in [100usize, 1000, 1400, 2000, 9000] {
        let p = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        v.push(p);
    }
    v
}

/// Sends every datagram of `garbage()` `rounds` times to `dst` from a fresh socket in `ns`.
fn spray(ns: &str, dst: SocketAddr, rounds: usize) -> usize {
    in_netns(ns, || {
        let bind: SocketAddr = if dst.is_ipv6() {
            "[::]:0".parse().unwrap_or_else(|e| panic!("{e}"))
        } else {
            "0.0.0.0:0".parse().unwrap_or_else(|e| panic!("{e}"))
        };
        let sock = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind: {e}"));
        let mut sent = 0;
        for _ in 0..rounds {
            for p in garbage() {
                if sock.send_to(&p, dst).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
}

/// Captures up to `n` UDP payloads sent from `src` to the fwd port, with a raw socket in the
/// server's namespace (the kernel hands raw sockets a copy of every incoming UDP datagram).
fn capture(ns: &str, src: IpAddr, n: usize, timeout: Duration) -> Vec<(u16, Vec<u8>)> {
    in_netns(ns, move || {
        // SAFETY: plain socket(2) call; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: setsockopt with a valid timeval of the size we pass.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let mut got = Vec::new();
        let start = Instant::now();
        let mut buf = vec![0u8; 65536];
        while got.len() < n && start.elapsed() < timeout {
            // SAFETY: recv into a buffer we own, with its length.
            let len = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            let Ok(len) = usize::try_from(len) else {
                continue;
            };
            let pkt = &buf[..len];
            if pkt.len() < 28 {
                continue;
            }
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let Some(udp) = pkt.get(ihl..) else { continue };
            if udp.len() < 8 {
                continue;
            }
            let from = IpAddr::from([pkt[12], pkt[13], pkt[14], pkt[15]]);
            let sport = u16::from_be_bytes([udp[0], udp[1]]);
            let dport = u16::from_be_bytes([udp[2], udp[3]]);
            if from == src && dport == PORT {
                got.push((sport, udp[8..].to_vec()));
            }
        }
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
        got
    })
}

/// Sends `payload` as a UDP datagram from `src:sport` to `dst:PORT` through a raw IPv4
/// socket in `ns` (so it carries the real client's source port: a true replay).
fn raw_send(ns: &str, src: IpAddr, dst: IpAddr, packets: &[(u16, Vec<u8>)]) -> usize {
    let (IpAddr::V4(s4), IpAddr::V4(d4)) = (src, dst) else {
        panic!("raw_send is IPv4 only");
    };
    in_netns(ns, move || {
        // SAFETY: plain socket(2) call; the fd is closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let mut sent = 0;
        for (sport, payload) in packets {
            let ulen = 8 + payload.len();
            let total = 20 + ulen;
            let mut p = Vec::with_capacity(total);
            // IPv4 header; the kernel fills in the checksum and the id (raw(7)).
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&(total as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
            p.extend_from_slice(&s4.octets());
            p.extend_from_slice(&d4.octets());
            // UDP header, checksum 0 = none (legal over IPv4).
            p.extend_from_slice(&sport.to_be_bytes());
            p.extend_from_slice(&PORT.to_be_bytes());
            p.extend_from_slice(&(ulen as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(payload);
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(d4.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sendto with a buffer and sockaddr_in we own, with their lengths.
            let rc = unsafe {
                libc::sendto(
                    fd,
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if rc >= 0 {
                sent += 1;
            }
        }
        // SAFETY: closing the fd we opened.
        unsafe { libc::close(fd) };
        sent
    })
}

/// While client1 is connected: garbage and truncated datagrams from a third host (both
/// underlay families), the same garbage spoofed from client1's own address and port, and
/// replays of client1's captured packets. fwd must stay up and client1 keep pinging.
#[test]
fn garbage_and_replay_do_not_hurt() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-garbage", Underlay::V4, &["client1", "intruder"]) else {
        return;
    };
    let conf = net.scenario_server_conf();
    let cc = net.client_conf(0);
    serve_one(&mut net, &conf, 0, &cc);

    // A third host on its own link (10.200.2.0/24): never connects, only sprays.
    let intruder = net.client(1).ns().to_string();
    for dst in ["10.200.2.1", "fd00:200:2::1"] {
        let n = spray(&intruder, SocketAddr::new(ip(dst), PORT), 5);
        assert!(n > 0, "nothing sent to {dst}");
    }
    assert!(net.server_running(), "fwd died from garbage");
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");

    // Capture client1's traffic while it pings, then replay it verbatim, twice.
    let server_ns = net.server.ns().to_string();
    let c1_addr = net.clients[0].remote;
    let c1_src = net.clients[0].addr;
    let captured = std::thread::scope(|s| {
        let h = s.spawn(|| capture(&server_ns, c1_src, 20, Duration::from_secs(6)));
        std::thread::sleep(Duration::from_millis(300));
        let c1 = net.client(0).clone();
        let _ = net.lab.ping(&c1, ip("10.8.0.1"), 8);
        let _ = net.lab.ping(&c1, ip("fd00:8::1"), 8);
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    });
    assert!(
        captured.len() >= 4,
        "captured only {} packets from client1",
        captured.len()
    );
    let c1_ns = net.client(0).ns().to_string();
    for _ in 0..2 {
        raw_send(&c1_ns, c1_src, c1_addr, &captured);
    }
    // Garbage from client1's own address and port (fwd cannot tell it from the client by
    // address): must not tear the session down.
    let sport = captured.first().map(|(p, _)| *p).unwrap_or(0);
    let spoofed: Vec<(u16, Vec<u8>)> = garbage().into_iter().map(|p| (sport, p)).collect();
    let spoofed: Vec<(u16, Vec<u8>)> = spoofed
        .into_iter()
        .filter(|(_, p)| p.len() <= 1400)
        .collect();
    raw_send(&c1_ns, c1_src, c1_addr, &spoofed);

    assert!(
        net.server_running(),
        "fwd died from replays / spoofed garbage"
    );
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
}

/// The lab's own helpers used above.
#[test]
fn edit_drops_and_appends() {
    let c = "a 1\nb 2\n# c\nc 3\n";
    assert_eq!(edit(c, &["b", "c"], "d 4"), "a 1\n# c\nd 4\n");
    assert_eq!(edit(c, &[], ""), c);
    assert!(garbage().iter().any(|p| p.is_empty()));
}

// ---------------------------------------------------------------------------------------
// Beyond the issue lists: what stock clients do in everyday operation.
// ---------------------------------------------------------------------------------------

/// A client that dies without telling the server (SIGKILL-like: no exit notify) and comes
/// back from a new source port gets its addresses back at once; one that leaves with
/// `explicit-exit-notify` frees its session and reconnects the same way.
#[test]
fn client_restart_and_exit_notify() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-restart", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let conf = net.scenario_server_conf();
    let cc = net.client_conf(0);
    serve_one(&mut net, &conf, 0, &cc);
    net.disconnect(0);
    net.connect(0, &cc);
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");

    let cc2 = edit(&net.client_conf(1), &[], "explicit-exit-notify 1");
    net.connect(1, &cc2);
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::100");
    net.disconnect(1);
    // The EXIT control message (cc-exit) ends client2's session long before ping-restart.
    let log = net.server_log();
    let text = net
        .lab
        .wait_for_log(&log, "PeerExit", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("fwd did not act on the client's EXIT: {e}"));
    assert!(
        text.lines()
            .any(|l| l.contains("PeerExit") && l.contains("client2")),
        "EXIT attributed to the wrong client"
    );
    net.connect(1, &cc2);
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::100");
    assert!(net.server_running());
}

/// Data-channel key renegotiation, started by the client (`reneg-sec`) and by the server:
/// the client (at verb 4) logs each new data key, and traffic keeps flowing across the key
/// switches (the client sends with the newest key, so fwd must have installed it).
#[test]
fn renegotiation() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-reneg", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    // First the client renegotiates every 3 s, then the server does.
    for (i, server_reneg, client_reneg) in [(0, "0", "3"), (1, "3", "0")] {
        let conf = edit(
            &net.scenario_server_conf(),
            &[],
            &format!("reneg-sec {server_reneg}"),
        );
        let cc = edit(
            &net.client_conf(i),
            &["verb"],
            &format!("reneg-sec {client_reneg}\nverb 4"),
        );
        serve_one(&mut net, &conf, i, &cc);
        // The initial key plus two renegotiations.
        let key = "Outgoing Data Channel: Cipher";
        net.wait_client_log_count(i, key, 3, Duration::from_secs(15));
        net.assert_client_works(i, Some("10.8.0.2"), SOLE_V6[i]);
        net.disconnect(i);
        let _ = net.stop_server();
    }
}

/// A dual-stack server (`proto udp`, one socket for both families) with one client over
/// IPv4 and one over IPv6.
#[test]
fn dual_stack_listener() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-dual", Underlay::V6, &["client1", "client2"]) else {
        return;
    };
    let conf = edit(&net.scenario_server_conf(), &["proto"], "proto udp");
    let c1 = edit(
        &net.client_conf(0),
        &["proto", "remote"],
        &format!("proto udp4\nremote 10.200.1.1 {PORT}"),
    );
    let c2 = net.client_conf(1);
    serve_two(&mut net, &conf, &c1, &c2);
}

/// tls-auth with a non-default digest on both sides.
#[test]
fn tls_auth_sha256() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-tlsauth256", Underlay::V4, &["client1"]) else {
        return;
    };
    let conf = tls_auth(&net, &net.scenario_server_conf(), "", " 0\nauth SHA256");
    let c1 = tls_auth(&net, &net.client_conf(0), "", " 1\nauth SHA256");
    serve_one(&mut net, &conf, 0, &c1);
}

/// Server keepalive: with `keepalive 1 3` pushed, an idle client restarts unless fwd pings it
/// every second; fwd in turn must not drop the idle-but-pinging client. Then large packets
/// (1400-byte and fragmented 3000-byte pings) in both families.
#[test]
fn keepalive_idle_and_large_packets() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-keepalive", Underlay::V4, &["client1"]) else {
        return;
    };
    let conf = edit(&net.scenario_server_conf(), &["keepalive"], "keepalive 1 3");
    net.start_server(&conf);
    let cc = net.client_conf(0);
    let log = net.connect(0, &cc);
    assert!(
        log.contains("ping 1,ping-restart 3"),
        "keepalive not pushed"
    );
    std::thread::sleep(Duration::from_secs(7));
    let log = net.wait_client_log(0, READY, LOG_SETTLE);
    assert!(
        !log.contains("Inactivity timeout"),
        "client restarted: fwd sent no keepalive pings"
    );
    let slog = std::fs::read_to_string(net.server_log()).unwrap_or_default();
    assert!(
        !slog.contains("ping-restart"),
        "fwd dropped an idle client that keeps pinging"
    );
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    let c = net.client(0).clone();
    for dst in ["10.8.0.1", "fd00:8::1"] {
        for size in ["1400", "3000"] {
            let fam = if dst.contains(':') { "-6" } else { "-4" };
            let out = net.lab.exec(
                &c,
                &[
                    "ping", fam, "-n", "-q", "-c", "2", "-i", "0.2", "-W", "2", "-s", size, dst,
                ],
            );
            assert!(
                out.status.success(),
                "{size}-byte ping to {dst} failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// ccd `ifconfig-push` (static IPv4 inside the subnet), `push-reset` + `push` in ccd, and
/// `push-remove`: each client gets what its ccd file says, and fwd's PUSH_REPLYs are the
/// ones openvpn 2.6 sends for the same files (but for `dyn-tls-crypt`, which fwd does not
/// offer).
#[test]
fn ccd_ifconfig_push_and_push_filters() {
    let _g = serial();
    let Some(want) = ccd_push_filters(ServerKind::OpenVpn) else {
        return;
    };
    let Some(got) = ccd_push_filters(fwd()) else {
        return;
    };
    assert_eq!(got.0, want.0, "client1 PUSH_REPLY: fwd vs openvpn");
    assert_eq!(got.1, want.1, "client2 PUSH_REPLY: fwd vs openvpn");
}

/// Runs the ccd push scenario with `kind` as the server; returns both clients' PUSH_REPLY.
fn ccd_push_filters(kind: ServerKind) -> Option<(String, String)> {
    let name = format!("{}-ccdpush", kind.label());
    let mut net = Net::with_server(kind, &name, Underlay::V4, &["client1", "client2"])?;
    let conf = edit(
        &net.scenario_server_conf(),
        &[],
        "push \"route 10.77.0.0 255.255.255.0\"\npush \"route-ipv6 fd00:77::/64\"",
    );
    let ccd = net.dir.join("ccd");
    std::fs::write(
        ccd.join("client1"),
        "ifconfig-push 10.8.0.50 255.255.255.0\nifconfig-ipv6-push fd00:8::50/64\n\
         push-remove \"route-ipv6 fd00:77::/64\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        ccd.join("client2"),
        // push-reset also drops the `server` macro's topology and route-gateway pushes.
        "push-reset\npush \"topology subnet\"\npush \"route-gateway 10.8.0.1\"\n\
         push \"route-ipv6 fd00:78::/64\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    net.start_server(&conf);
    let l1 = net.connect(0, &net.client_conf(0));
    let l2 = net.connect(1, &net.client_conf(1));
    net.assert_client_works(0, Some("10.8.0.50"), "fd00:8::50");
    net.assert_client_works(1, Some("10.8.0.2"), "fd00:8::1000");
    let (p1, p2) = (push_reply_line(&l1), push_reply_line(&l2));
    assert!(
        p1.contains("route 10.77.0.0") && !p1.contains("fd00:77::"),
        "{p1}"
    );
    assert!(
        p2.contains("route-ipv6 fd00:78::/64")
            && !p2.contains("10.77.0.0")
            && !p2.contains("fd00:77::"),
        "{p2}"
    );
    let c1 = net.client(0).clone();
    let c2 = net.client(1).clone();
    assert!(net
        .routes(&c1, false)
        .iter()
        .any(|r| r.starts_with("10.77.0.0/24")));
    assert!(!net
        .routes(&c1, true)
        .iter()
        .any(|r| r.starts_with("fd00:77::")));
    assert!(net
        .routes(&c2, true)
        .iter()
        .any(|r| r.starts_with("fd00:78::/64")));
    Some((push_options(p1), push_options(p2)))
}
