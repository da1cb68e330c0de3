//! fwd as the server in everyday operation against stock `openvpn` 2.6 clients, end to end
//! in network namespaces (issue #4, the server behaviours tests/e2e_fwd_server.rs leaves
//! out): client float, `duplicate-cn`, `max-clients`, server-side ping-restart, ccd
//! (`ccd-exclusive`, `disable`, `DEFAULT`), management `client-kill`/`kill` over an IPv6
//! underlay, and an IPv6-only server with three clients.
//!
//! Every test builds its own lab (torn down by `Lab`'s `Drop` even when an assertion fails)
//! and reads fwd's state through its management interface (`status 2`, `load-stats`) where
//! the behaviour is not visible from the clients alone.
//!
//! The tests take a process-wide lock and run one at a time, like e2e_fwd_server.rs: each
//! fwd server runs a shard per core, and parallel labs on a small box make pings flaky.
//!
//! Needs root, /dev/net/tun, `ip`, `openvpn`, `openssl`, `ping`; skips with a message
//! elsewhere, fails under CI.

mod common;

use std::time::Duration;

use common::net::{edit, ip, serial, show, wait_until, Mgmt, Net, READY};
use common::scenario::Underlay;

/// How long a refused client may take to hear why.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(15);

/// The `status 2` row of common name `cn` (the only one, asserted).
fn row_of(m: &mut Mgmt, cn: &str) -> Vec<String> {
    let rows: Vec<Vec<String>> = m
        .client_list()
        .into_iter()
        .filter(|r| r.get(1).is_some_and(|c| c == cn))
        .collect();
    assert_eq!(rows.len(), 1, "status rows for {cn}: {rows:?}");
    rows.into_iter().next().unwrap_or_default()
}

fn field(row: &[String], i: usize) -> &str {
    row.get(i).map(String::as_str).unwrap_or("")
}

/// Real address (status field 2) without the port an IPv4 address carries.
fn real_ip(row: &[String]) -> String {
    let real = field(row, 2);
    match real.rsplit_once(':') {
        Some((a, _)) if a.parse::<std::net::Ipv4Addr>().is_ok() => a.to_string(),
        _ => real.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// 1. Float.
// ---------------------------------------------------------------------------------------

/// A connected client whose underlay address changes under it (the new address is added,
/// the old one deleted, openvpn keeps running: its socket is unconnected, so its packets
/// then leave from the new address) keeps its session and tunnel addresses; data flows; fwd's
/// status shows the new real address; a renegotiation after the move (control channel to
/// the new address) succeeds. Over both underlay families.
#[test]
fn client_float() {
    let _g = serial();
    for underlay in [Underlay::V4, Underlay::V6] {
        if !float_case(underlay) {
            return;
        }
    }
}

/// False when the lab cannot run here.
fn float_case(underlay: Underlay) -> bool {
    let name = format!("fwd-float-{underlay:?}").to_lowercase();
    let Some(mut net) = Net::new(&name, underlay, &["client1"]) else {
        return false;
    };
    let conf = edit(&net.base_server_conf(), &[], &Net::mgmt_conf());
    net.start_server(&conf);
    // Client-side renegotiation 10 s after connecting, logged at verb 4.
    let cc = edit(&net.client_conf(0), &["verb"], "reneg-sec 10\nverb 4");
    net.connect(0, &cc);
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    let mut m = net.mgmt();
    let before = row_of(&mut m, "client1");
    assert_eq!(real_ip(&before), net.clients[0].addr.to_string());

    // Move the client: add the new address, delete the old one.
    let (host, ifn) = (net.client(0).clone(), net.clients[0].ifname.clone());
    let new_addr = match underlay {
        Underlay::V4 => {
            // Deleting the primary address would take the secondary with it otherwise.
            net.lab.exec_ok(
                &host,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{ifn}.promote_secondaries=1"),
                ],
            );
            net.lab
                .exec_ok(&host, &["ip", "addr", "add", "10.200.1.3/24", "dev", &ifn]);
            net.lab
                .exec_ok(&host, &["ip", "addr", "del", "10.200.1.2/24", "dev", &ifn]);
            "10.200.1.3"
        }
        Underlay::V6 => {
            net.lab.exec_ok(
                &host,
                &[
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    "fd00:200:1::3/64",
                    "dev",
                    &ifn,
                    "nodad",
                ],
            );
            net.lab.exec_ok(
                &host,
                &["ip", "-6", "addr", "del", "fd00:200:1::2/64", "dev", &ifn],
            );
            "fd00:200:1::3"
        }
    };
    let left = net.lab.addrs(&host, &ifn);
    assert!(
        left.iter().any(|a| a.addr == ip(new_addr))
            && !left.iter().any(|a| a.addr == net.clients[0].addr),
        "client underlay not moved: [{}]",
        show(&left)
    );
    // The client's next data packet comes from the new address.
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    let after = wait_until(
        Duration::from_secs(5),
        "status shows the new address",
        || {
            let row = row_of(&mut m, "client1");
            (real_ip(&row) == new_addr).then_some(row)
        },
    );
    // Same session: same client id, tunnel addresses and (IPv4) source port.
    for (i, what) in [(3, "virtual IPv4"), (4, "virtual IPv6"), (10, "client id")] {
        assert_eq!(
            field(&after, i),
            field(&before, i),
            "{what} changed on float"
        );
    }
    if underlay == Underlay::V4 {
        let port = |r: &[String]| field(r, 2).rsplit_once(':').map(|x| x.1.to_string());
        assert_eq!(port(&after), port(&before), "source port changed");
    }
    assert_eq!(m.nclients(), 1);
    // The server still reaches the client (it sends to the new address now).
    net.assert_pings(&[(&net.server, "10.8.0.2"), (&net.server, "fd00:8::1000")]);

    // Renegotiation after the float: the control channel follows the client.
    net.wait_client_log_count(
        0,
        "Outgoing Data Channel: Cipher",
        2,
        Duration::from_secs(20),
    );
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    let log = net.client_log_text(0);
    assert_eq!(log.matches(READY).count(), 1, "client restarted");
    assert!(!log.contains("SIGUSR1"), "client restarted");
    assert_eq!(field(&row_of(&mut m, "client1"), 10), field(&before, 10));
    // `kill IP:port` finds the client at its new address (IPv4 rows carry the port).
    if underlay == Underlay::V4 {
        let real = field(&after, 2).to_string();
        assert_eq!(
            m.one(&format!("kill {real}")),
            format!("SUCCESS: 1 client(s) at address {real} killed")
        );
        assert_eq!(m.nclients(), 0);
    }
    true
}

// ---------------------------------------------------------------------------------------
// 2. duplicate-cn.
// ---------------------------------------------------------------------------------------

/// Without `duplicate-cn` a second connection with client1's certificate (from another
/// host) replaces the first: the newcomer gets the address, the first host's tunnel is dead.
/// With `duplicate-cn` both stay up with different addresses and reach each other.
#[test]
fn duplicate_cn() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-dupcn", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let base = edit(&net.base_server_conf(), &[], &Net::mgmt_conf());
    net.start_server(&base);
    let (a, b) = (net.client(0).clone(), net.client(1).clone());
    net.connect(0, &net.client_conf(0));
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    net.connect(1, &net.client_conf_as(1, "client1"));
    net.assert_client_works(1, Some("10.8.0.2"), "fd00:8::1000");
    let mut m = net.mgmt();
    let row = row_of(&mut m, "client1");
    assert_eq!(real_ip(&row), "10.200.2.2", "status: {row:?}");
    assert_eq!(m.nclients(), 1);
    // The replaced session is gone: fwd no longer accepts the first host's packets.
    net.assert_no_pings(&[(&a, "10.8.0.1"), (&a, "fd00:8::1")]);
    let log = std::fs::read_to_string(net.server_log()).unwrap_or_default();
    assert!(log.contains("same common name"), "no replacement logged");
    net.disconnect(0);
    net.disconnect(1);
    drop(m);
    let _ = net.stop_server();

    net.start_server(&edit(&base, &[], "duplicate-cn"));
    net.connect(0, &net.client_conf(0));
    net.connect(1, &net.client_conf_as(1, "client1"));
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");
    net.assert_pings(&[
        (&a, "10.8.0.3"),
        (&a, "fd00:8::1001"),
        (&b, "10.8.0.2"),
        (&b, "fd00:8::1000"),
    ]);
    let mut m = net.mgmt();
    let rows = m.client_list();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| field(r, 1) == "client1"), "{rows:?}");
    assert_eq!(m.nclients(), 2);
    // `kill CN` takes every connection with that name.
    assert_eq!(
        m.one("kill client1"),
        "SUCCESS: common name 'client1' found, 2 client(s) killed"
    );
    assert_eq!(m.nclients(), 0);
}

// ---------------------------------------------------------------------------------------
// 3. max-clients.
// ---------------------------------------------------------------------------------------

/// `max-clients 1`: a second client is refused and gets no addresses. The refusal is
/// temporary (`AUTH_FAILED,TEMP`, which 2.6 clients understand), so the stock client keeps
/// retrying instead of exiting, and gets in by itself once the first client leaves (SIGTERM
/// with `explicit-exit-notify`). It gets the never-used 10.8.0.3, not client1's 10.8.0.2:
/// OpenVPN's pool keeps a released address for its last owner as long as it can.
#[test]
fn max_clients_one() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-maxcl", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let conf = edit(
        &net.base_server_conf(),
        &[],
        &format!("max-clients 1\n{}", Net::mgmt_conf()),
    );
    net.start_server(&conf);
    let c1 = edit(&net.client_conf(0), &[], "explicit-exit-notify 1");
    net.connect(0, &c1);
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");

    let c2 = net.client_conf(1);
    net.start_client(1, &c2);
    net.wait_client_log(1, "AUTH_FAILED,TEMP", REFUSE_TIMEOUT);
    net.wait_client_log(1, "auth-temp-failure", REFUSE_TIMEOUT);
    let log = net.client_log_text(1);
    assert!(!log.contains(READY), "client2 connected past max-clients");
    assert!(
        net.tun_addrs(1).is_empty(),
        "refused client2 has tunnel addresses [{}]",
        show(&net.tun_addrs(1))
    );
    assert!(net.client_running(1), "refused client2 gave up");
    let mut m = net.mgmt();
    assert_eq!(m.nclients(), 1);

    net.disconnect(0);
    // (nclients may go 1 -> 0 -> 1 between two polls: client2 retries every second.)
    wait_until(Duration::from_secs(10), "client1's exit", || {
        let rows = m.client_list();
        rows.iter().all(|r| field(r, 1) != "client1").then_some(())
    });
    // The refused client's own retry brings it in.
    net.wait_client_log(1, READY, Duration::from_secs(30));
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");
    assert_eq!(m.nclients(), 1);
    assert_eq!(field(&row_of(&mut m, "client2"), 3), "10.8.0.3");
}

// ---------------------------------------------------------------------------------------
// 4. Server-side ping-restart.
// ---------------------------------------------------------------------------------------

/// `keepalive 1 4` (server ping-restart 8 s) with a two-address pool: client1 and client2
/// fill it; client1 killed with SIGKILL (no exit notify) is dropped by the server's
/// ping-restart, its pool slot is freed (`load-stats` nclients 1), and client3 then gets
/// client1's address, the only free one. With the pool full again, client1 is refused
/// temporarily (`AUTH_FAILED,TEMP`), keeps retrying, and gets in by itself once client2
/// leaves with `explicit-exit-notify`.
#[test]
fn ping_restart_frees_pool_slot() {
    let _g = serial();
    let roles = ["client1", "client2", "client3"];
    let Some(mut net) = Net::new("fwd-pingrst", Underlay::V4, &roles) else {
        return;
    };
    let conf = edit(
        &net.base_server_conf(),
        &["server", "server-ipv6", "topology", "keepalive"],
        &format!(
            "mode server\ntls-server\ntopology subnet\npush \"topology subnet\"\n\
             ifconfig 10.8.0.1 255.255.255.0\nifconfig-pool 10.8.0.2 10.8.0.3\n\
             push \"route-gateway 10.8.0.1\"\n\
             ifconfig-ipv6 fd00:8::1/64 fd00:8::2\nifconfig-ipv6-pool fd00:8::1000/64\n\
             push \"tun-ipv6\"\nkeepalive 1 4\n{}",
            Net::mgmt_conf()
        ),
    );
    net.start_server(&conf);
    let log = net.connect(0, &net.client_conf(0));
    assert!(
        log.contains("ping 1,ping-restart 4"),
        "keepalive not pushed"
    );
    let c2 = edit(&net.client_conf(1), &[], "explicit-exit-notify 1");
    net.connect(1, &c2);
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");
    let mut m = net.mgmt();
    assert_eq!(m.nclients(), 2);

    net.sigkill(0);
    // 8 s of silence plus housekeeping; generous for a loaded box.
    wait_until(
        Duration::from_secs(25),
        "fwd to drop the dead client",
        || (m.nclients() == 1).then_some(()),
    );
    let slog = std::fs::read_to_string(net.server_log()).unwrap_or_default();
    assert!(slog.contains("ping-restart"), "not dropped by ping-restart");
    let rows = m.client_list();
    assert!(
        rows.len() == 1 && field(&rows[0], 1) == "client2",
        "status after ping-restart: {rows:?}"
    );

    net.connect(2, &net.client_conf(2));
    net.assert_client_works(2, Some("10.8.0.2"), "fd00:8::1000");
    assert_eq!(field(&row_of(&mut m, "client3"), 3), "10.8.0.2");
    // client2 was never disturbed (it pings the server every second).
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");

    // Pool full: client1 is turned away for now, and retries by itself.
    let c1 = net.client_conf(0);
    net.start_client(0, &c1);
    net.wait_client_log(0, "AUTH_FAILED,TEMP", REFUSE_TIMEOUT);
    net.wait_client_log(0, "auth-temp-failure", REFUSE_TIMEOUT);
    assert!(net.tun_addrs(0).is_empty(), "refused client1 has addresses");
    assert!(net.client_running(0), "refused client1 gave up");
    net.disconnect(1);
    net.wait_client_log(0, READY, Duration::from_secs(30));
    net.assert_client_works(0, Some("10.8.0.3"), "fd00:8::1001");
    let rows = m.client_list();
    assert_eq!(rows.len(), 2, "{rows:?}");
}

// ---------------------------------------------------------------------------------------
// 5. ccd.
// ---------------------------------------------------------------------------------------

/// The ccd directory: client1 has its own file (a pushed route), client2 none, client3 a
/// file saying `disable`, and a `DEFAULT` file pushes another route.
/// - `ccd-exclusive`: client1 connects; client2 (only DEFAULT applies) and client3 are
///   refused with no addresses;
/// - without it: client2 gets DEFAULT's route, client1 only its own, client3 is refused.
#[test]
fn ccd_exclusive_disable_default() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-ccd", Underlay::V4, &["client1", "client2", "client3"])
    else {
        return;
    };
    let ccd = net.dir.join("ccd-ops");
    std::fs::create_dir_all(&ccd).unwrap_or_else(|e| panic!("{e}"));
    let write = |name: &str, text: &str| {
        std::fs::write(ccd.join(name), text).unwrap_or_else(|e| panic!("{e}"));
    };
    write("client1", "push \"route-ipv6 fd00:51::/64\"\n");
    write("client3", "disable\n");
    write("DEFAULT", "push \"route-ipv6 fd00:55::/64\"\n");
    let base = edit(
        &net.base_server_conf(),
        &[],
        &format!("client-config-dir {}", ccd.display()),
    );
    let (c1, c2) = (net.client(0).clone(), net.client(1).clone());

    net.start_server(&edit(&base, &[], "ccd-exclusive"));
    net.connect(0, &net.client_conf(0));
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    for i in [1, 2] {
        refused(&mut net, i);
    }
    let slog = std::fs::read_to_string(net.server_log()).unwrap_or_default();
    assert!(
        slog.contains("ccd-exclusive"),
        "client2 refused for another reason"
    );
    assert!(
        slog.contains("disabled"),
        "client3 refused for another reason"
    );
    net.disconnect(0);
    let _ = net.stop_server();

    net.start_server(&base);
    net.connect(0, &net.client_conf(0));
    net.connect(1, &net.client_conf(1));
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");
    let r1 = net.routes(&c1, true);
    let r2 = net.routes(&c2, true);
    let has = |r: &[String], p: &str| r.iter().any(|l| l.starts_with(p));
    assert!(
        has(&r1, "fd00:51::/64"),
        "client1 lacks its ccd route: {r1:?}"
    );
    assert!(
        !has(&r1, "fd00:55::/64"),
        "DEFAULT applied to client1: {r1:?}"
    );
    assert!(
        has(&r2, "fd00:55::/64"),
        "DEFAULT not applied to client2: {r2:?}"
    );
    assert!(
        !has(&r2, "fd00:51::/64"),
        "client1's file applied to client2"
    );
    refused(&mut net, 2);
}

/// Starts client `i` and asserts that fwd refuses it: AUTH_FAILED, no tunnel addresses.
fn refused(net: &mut Net, i: usize) {
    let cc = net.client_conf(i);
    net.start_client(i, &cc);
    net.wait_client_log(i, "AUTH_FAILED", REFUSE_TIMEOUT);
    let log = net.client_log_text(i);
    assert!(!log.contains(READY), "{} connected", net.clients[i].role);
    let addrs = net.tun_addrs(i);
    assert!(
        addrs.is_empty(),
        "{} has tunnel addresses [{}]",
        net.clients[i].role,
        show(&addrs)
    );
    net.disconnect(i);
}

// ---------------------------------------------------------------------------------------
// 6. Management kills over an IPv6 underlay.
// ---------------------------------------------------------------------------------------

/// Clients over `udp6`: status shows their IPv6 real addresses; `client-kill CID` sends
/// client1 a RESTART (it reconnects with a new client id); `kill client2` drops client2
/// silently (its tunnel stops working, nclients drops).
#[test]
fn mgmt_kill_ipv6_underlay() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-mgmtkill6", Underlay::V6, &["client1", "client2"]) else {
        return;
    };
    let conf = edit(&net.base_server_conf(), &[], &Net::mgmt_conf());
    net.start_server(&conf);
    net.connect(0, &net.client_conf(0));
    net.connect(1, &net.client_conf(1));
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    net.assert_client_works(1, Some("10.8.0.3"), "fd00:8::1001");
    let mut m = net.mgmt();
    let r1 = row_of(&mut m, "client1");
    let r2 = row_of(&mut m, "client2");
    assert_eq!(real_ip(&r1), "fd00:200:1::2", "{r1:?}");
    assert_eq!(real_ip(&r2), "fd00:200:2::2", "{r2:?}");

    let cid = field(&r1, 10).to_string();
    assert_eq!(
        m.one(&format!("client-kill {cid}")),
        "SUCCESS: client-kill command succeeded"
    );
    net.wait_client_log(0, "server-pushed-connection-reset", Duration::from_secs(10));
    net.wait_client_log_count(0, READY, 2, Duration::from_secs(30));
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
    let again = row_of(&mut m, "client1");
    assert_ne!(field(&again, 10), cid, "client id reused");
    assert_eq!(real_ip(&again), "fd00:200:1::2");
    // An unknown CID fails.
    assert_eq!(
        m.one(&format!("client-kill {cid}")),
        "ERROR: client-kill command failed"
    );

    assert_eq!(
        m.one("kill client2"),
        "SUCCESS: common name 'client2' found, 1 client(s) killed"
    );
    assert_eq!(m.nclients(), 1);
    assert!(m.client_list().iter().all(|r| field(r, 1) != "client2"));
    let c2 = net.client(1).clone();
    net.assert_no_pings(&[(&c2, "10.8.0.1"), (&c2, "fd00:8::1")]);
    net.assert_client_works(0, Some("10.8.0.2"), "fd00:8::1000");
}

// ---------------------------------------------------------------------------------------
// 7. IPv6-only server, three clients.
// ---------------------------------------------------------------------------------------

/// `server-ipv6` alone with three clients: distinct pool addresses, no IPv4, and every
/// client reaches every other through fwd's client-to-client (forwarding is off in the
/// server namespace, so the kernel cannot carry it).
#[test]
fn ipv6_only_three_clients() {
    let _g = serial();
    let roles = ["client1", "client2", "client3"];
    let Some(mut net) = Net::new("fwd-v6only3", Underlay::V4, &roles) else {
        return;
    };
    net.server_forwarding_off();
    let conf = edit(
        &net.base_server_conf(),
        &["server", "server-ipv6", "topology"],
        "topology subnet\nserver-ipv6 fd00:8::/64",
    );
    net.start_server(&conf);
    let want = ["fd00:8::1000", "fd00:8::1001", "fd00:8::1002"];
    for i in 0..3 {
        net.connect(i, &net.client_conf(i));
    }
    for (i, addr) in want.iter().enumerate() {
        net.assert_client_works(i, None, addr);
        let v4: Vec<_> = net
            .tun_addrs(i)
            .into_iter()
            .filter(|a| a.addr.is_ipv4())
            .collect();
        assert!(v4.is_empty(), "client{} got IPv4 [{}]", i + 1, show(&v4));
    }
    let hosts: Vec<_> = (0..3).map(|i| net.client(i).clone()).collect();
    let mut paths = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        for (j, dst) in want.iter().enumerate() {
            if i != j {
                paths.push((h, *dst));
            }
        }
    }
    net.assert_pings(&paths);
}

/// A ccd `ping-restart` applies to that client only: with the server's own keepalive at
/// 10/60 (ping-restart 120 s), a silent client whose ccd says `ping-restart 3` is dropped
/// within seconds, while another silent client without it stays.
#[test]
fn ccd_ping_restart_overrides_the_server_default() {
    let _g = serial();
    let Some(mut net) = Net::new("fwd-ccdping", Underlay::V4, &["client1", "client2"]) else {
        return;
    };
    let ccd = net.dir.join("ccd-ping");
    std::fs::create_dir_all(&ccd).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(ccd.join("client1"), "ping-restart 3\n").unwrap_or_else(|e| panic!("{e}"));
    let conf = edit(
        &net.base_server_conf(),
        &["keepalive"],
        &format!(
            "keepalive 10 60\nclient-config-dir {}\n{}",
            ccd.display(),
            Net::mgmt_conf()
        ),
    );
    net.start_server(&conf);
    net.connect(0, &net.client_conf(0));
    net.connect(1, &net.client_conf(1));
    let mut m = net.mgmt();
    assert_eq!(m.nclients(), 2);

    net.sigkill(0);
    net.sigkill(1);
    wait_until(
        Duration::from_secs(20),
        "fwd to drop client1 by its ccd ping-restart",
        || (m.nclients() == 1).then_some(()),
    );
    let rows = m.client_list();
    assert!(
        rows.len() == 1 && field(&rows[0], 1) == "client2",
        "client2 (server ping-restart 120 s) must still be listed: {rows:?}"
    );
    let slog = std::fs::read_to_string(net.server_log()).unwrap_or_default();
    assert!(slog.contains("ping-restart"), "not dropped by ping-restart");
}
