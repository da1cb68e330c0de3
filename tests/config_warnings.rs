//! Warnings for common misconfigurations, with file:line.

include!("config_common.rs");

use fwd::config::check;

fn warnings_with_ccd(conf: &str, files: &[(&str, &str)]) -> Vec<String> {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (n, t) in files {
        std::fs::write(d.path().join(n), t).unwrap_or_else(|e| panic!("{e}"));
    }
    let text = format!(
        "{}{conf}\nclient-config-dir {}\n",
        server_base(),
        d.path().display()
    );
    let l = ok(&text);
    let mut out: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    let ws = check::ccd_warnings(&l.config, &l.sources).unwrap_or_else(|e| panic!("{e}"));
    // Make ccd paths stable for assertions.
    out.extend(ws.iter().map(|w| {
        w.to_string()
            .replace(&format!("{}/", d.path().display()), "ccd/")
    }));
    out
}

const DUAL: &str =
    "topology subnet\nserver 10.8.0.0 255.255.255.0\nserver-ipv6 fd00:8::/64\nkeepalive 10 60";

fn has(ws: &[String], want: &str) {
    assert!(
        ws.iter().any(|w| w == want),
        "missing warning:\n  {want}\ngot:\n{ws:#?}"
    );
}

fn has_prefix(ws: &[String], want: &str) {
    assert!(
        ws.iter().any(|w| w.starts_with(want)),
        "missing warning starting with:\n  {want}\ngot:\n{ws:#?}"
    );
}

#[test]
fn clean_config_has_no_warnings() {
    let ws = warnings_with_ccd(
        &format!("{DUAL}\nroute-ipv6 fd00:100::/48"),
        &[(
            "alice",
            "iroute-ipv6 fd00:100::/48\nifconfig-ipv6-push fd00:8::10/64\n",
        )],
    );
    assert!(ws.is_empty(), "{ws:#?}");
}

#[test]
fn iroute_ipv6_without_route() {
    let ws = warnings_with_ccd(DUAL, &[("alice", "# x\niroute-ipv6 fd00:100:0:5::/64\n")]);
    has(&ws, "ccd/alice:2: iroute-ipv6: fd00:100:0:5::/64 has no covering route-ipv6 in the server config: the OS will not send its traffic to fwd (add `route-ipv6 fd00:100:0:5::/64`)");
    // A covering (shorter) route is enough.
    let ws = warnings_with_ccd(
        &format!("{DUAL}\nroute-ipv6 fd00:100::/48"),
        &[("alice", "iroute-ipv6 fd00:100:0:5::/64\n")],
    );
    assert!(
        !ws.iter().any(|w| w.contains("no covering route-ipv6")),
        "{ws:#?}"
    );
}

#[test]
fn iroute_v4_without_route() {
    let ws = warnings_with_ccd(DUAL, &[("alice", "iroute 192.168.5.0 255.255.255.0\n")]);
    has(&ws, "ccd/alice:1: iroute: 192.168.5.0 255.255.255.0 has no covering route in the server config (add `route 192.168.5.0 255.255.255.0`)");
}

#[test]
fn route_ipv6_served_by_nobody() {
    // server_base has 5 lines; DUAL 4 more; route-ipv6 is line 10.
    let ws = warnings_with_ccd(&format!("{DUAL}\nroute-ipv6 fd00:200::/48"), &[]);
    has(&ws, "test.conf:10: route-ipv6: no client's iroute-ipv6 serves fd00:200::/48: packets the OS routes there are dropped by fwd (add `iroute-ipv6` in a ccd file)");
}

#[test]
fn ifconfig_ipv6_push_outside_subnet_and_inside_pool() {
    let ws = warnings_with_ccd(
        DUAL,
        &[
            ("a", "ifconfig-ipv6-push fd00:9::10/64\n"),
            ("b", "ifconfig-ipv6-push fd00:8::1001/64\n"),
            ("c", "ifconfig-ipv6-push fd00:8::1/64\n"),
        ],
    );
    has(&ws, "ccd/a:1: ifconfig-ipv6-push: fd00:9::10 is outside the server's IPv6 tunnel subnet fd00:8::/64");
    has(&ws, "ccd/b:1: ifconfig-ipv6-push: fd00:8::1001 is inside the dynamic IPv6 pool; another client may get it too (use an address below the pool start)");
    has(
        &ws,
        "ccd/c:1: ifconfig-ipv6-push: is the server's own address",
    );
}

#[test]
fn ifconfig_push_inside_pool_and_missing_v6() {
    let ws = warnings_with_ccd(DUAL, &[("a", "ifconfig-push 10.8.0.50 255.255.255.0\n")]);
    has(&ws, "ccd/a:1: ifconfig-push: 10.8.0.50 is inside the dynamic IPv4 pool; another client may get it too");
    has(&ws, "ccd/a:1: ifconfig-push: a static IPv4 address disables pool IPv6 for this client (OpenVPN 2.6); add ifconfig-ipv6-push");
    let ws = warnings_with_ccd(
        DUAL,
        &[(
            "a",
            "ifconfig-push 10.9.0.50 255.255.255.0\nifconfig-ipv6-push fd00:8::50/64\n",
        )],
    );
    has(
        &ws,
        "ccd/a:1: ifconfig-push: 10.9.0.50 is outside the server's tunnel subnet 10.8.0.0/24",
    );
}

#[test]
fn duplicates_and_overlaps() {
    let files = [("a", "iroute-ipv6 fd00:100::/48\niroute 192.168.5.0 255.255.255.0\nifconfig-ipv6-push fd00:8::10/64\n"), ("b", "iroute-ipv6 fd00:100::/48\niroute-ipv6 fd00:100:0:1::/64\niroute 192.168.5.0 255.255.255.0\nifconfig-ipv6-push fd00:8::10/64\n")];
    let conf = format!("{DUAL}\nroute-ipv6 fd00:100::/48\nroute 192.168.5.0 255.255.255.0");
    let ws = warnings_with_ccd(&conf, &files);
    has(&ws, "ccd/b:1: iroute-ipv6: fd00:100::/48 is also routed to client `a`; only one of them can receive it");
    has(
        &ws,
        "ccd/b:3: iroute: 192.168.5.0/24 is also routed to client `a`",
    );
    has(
        &ws,
        "ccd/b:4: ifconfig-ipv6-push: fd00:8::10 is also assigned to client `a`",
    );
    // Overlap (not equal) only matters with client-to-client.
    assert!(!ws.iter().any(|w| w.contains("overlaps")), "{ws:#?}");
    let ws = warnings_with_ccd(&format!("{conf}\nclient-to-client"), &files);
    has(&ws, "ccd/b:2: iroute-ipv6: fd00:100:0:1::/64 overlaps fd00:100::/48 of client `a` (client-to-client uses the longest match)");
}

#[test]
fn default_file_with_iroutes() {
    let ws = warnings_with_ccd(
        &format!("{DUAL}\nroute-ipv6 fd00:100::/48"),
        &[("DEFAULT", "iroute-ipv6 fd00:100::/48\n")],
    );
    has_prefix(
        &ws,
        "ccd/DEFAULT:1: DEFAULT: DEFAULT applies to every client",
    );
}

#[test]
fn config_only_warnings() {
    // Pool overlapping the server's own address.
    let ws = warnings_with_ccd("mode server\ntls-server\nkeepalive 10 60\ntopology subnet\nifconfig 10.9.0.1 255.255.255.0\nifconfig-pool 10.9.0.1 10.9.0.50\nifconfig-ipv6 fd00:9::1/64 fd00:9::2\nifconfig-ipv6-pool fd00:9::/64", &[]);
    has(
        &ws,
        "test.conf:11: ifconfig-pool: pool contains the server's own address 10.9.0.1",
    );
    has(
        &ws,
        "test.conf:13: ifconfig-ipv6-pool: pool contains the server's own address fd00:9::1",
    );
    // IPv6 pool outside the tunnel subnet.
    let ws = warnings_with_ccd("mode server\ntls-server\nkeepalive 10 60\nifconfig-ipv6 fd00:9::1/64 fd00:9::2\nifconfig-ipv6-pool fd00:10::1000/64", &[]);
    has_prefix(&ws, "test.conf:10: ifconfig-ipv6-pool: pool fd00:10::1000/64 is outside the server's tunnel subnet fd00:9::/64");
    // tun-mtu below 1280 with IPv6.
    let ws = warnings_with_ccd(&format!("{DUAL}\ntun-mtu 1200"), &[]);
    has(&ws, "test.conf:10: tun-mtu: 1200 is below the IPv6 minimum MTU of 1280; IPv6 will not work on the tunnel");
    // max-clients larger than the pool (only when set explicitly).
    let ws = warnings_with_ccd(&format!("{DUAL}\nmax-clients 1000"), &[]);
    has(&ws, "test.conf:10: max-clients: 1000 is larger than the address pool (253 slots); clients beyond that get no dynamic address");
    let ws = warnings_with_ccd(DUAL, &[]);
    assert!(!ws.iter().any(|w| w.contains("max-clients")), "{ws:#?}");
    // IPv6 pool smaller than IPv4 pool.
    let ws = warnings_with_ccd(
        "topology subnet\nkeepalive 10 60\nserver 10.8.0.0 255.255.255.0\nserver-ipv6 fd00:8::/124",
        &[],
    );
    has_prefix(&ws, "test.conf:9: ifconfig-ipv6-pool: IPv6 pool (14 addresses) is smaller than the IPv4 pool (253)");
    // Missing keepalive.
    let ws = warnings_with_ccd("topology subnet\nserver 10.8.0.0 255.255.255.0", &[]);
    has_prefix(&ws, "test.conf:7: keepalive: missing from server config");
}

#[test]
fn ccd_scan_reports_errors() {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(d.path().join("bad"), "route 10.0.0.0\n").unwrap_or_default();
    let l = ok(&format!(
        "{}{DUAL}\nclient-config-dir {}\n",
        server_base(),
        d.path().display()
    ));
    let e = check::ccd_warnings(&l.config, &l.sources)
        .err()
        .unwrap_or_default();
    assert_eq!(e.to_string(), format!("{}/bad:1: route: not allowed here: not a per-client option; only valid in the server configuration", d.path().display()));
}
