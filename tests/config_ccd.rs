//! ccd files: legality, lookup (sanitised CN, DEFAULT, ccd-exclusive), parsing.

use fwd::config::ccd::{self, CcdEntry, IfconfigPush};
use std::net::Ipv4Addr;
use std::path::Path;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (n, t) in files {
        std::fs::write(d.path().join(n), t).unwrap_or_else(|e| panic!("{e}"));
    }
    d
}

#[test]
fn lookup_own_default_exclusive() {
    let d = dir_with(&[
        (
            "alice",
            "iroute-ipv6 fd00:100:5::/64\nifconfig-ipv6-push fd00:8::10/64\n",
        ),
        ("DEFAULT", "push \"dhcp-option DNS 10.8.0.1\"\n"),
        ("a_b", "disable\n"),
    ]);
    let e = ccd::load_for(d.path(), "alice", false)
        .unwrap_or_default()
        .unwrap_or_default();
    assert_eq!(e.iroutes_v6[0].to_string(), "fd00:100:5::/64");
    assert_eq!(
        e.ifconfig_ipv6_push.map(|p| p.addr.to_string()),
        Some("fd00:8::10/64".into())
    );
    assert_eq!(e.ifconfig_ipv6_push.and_then(|p| p.remote), None);
    assert!(e.source.ends_with("alice"));
    // Fallback to DEFAULT.
    let e = ccd::load_for(d.path(), "bob", false)
        .unwrap_or_default()
        .unwrap_or_default();
    assert_eq!(e.push, ["dhcp-option DNS 10.8.0.1"]);
    // Exclusive: no DEFAULT fallback, and CN "DEFAULT" is refused.
    assert_eq!(ccd::load_for(d.path(), "bob", true).ok(), Some(None));
    assert_eq!(ccd::load_for(d.path(), "DEFAULT", true).ok(), Some(None));
    assert!(ccd::load_for(d.path(), "alice", true)
        .ok()
        .flatten()
        .is_some());
    // Sanitised CN: "a/b" → file "a_b"; "." / ".." refused.
    assert_eq!(
        ccd::load_for(d.path(), "a/b", false)
            .ok()
            .flatten()
            .map(|e| e.disable),
        Some(true)
    );
    assert_eq!(ccd::load_for(d.path(), "..", false).ok(), Some(None));
    // Lookup is case-sensitive.
    assert!(ccd::load_for(d.path(), "Alice", true)
        .ok()
        .flatten()
        .is_none());
}

#[test]
fn ccd_errors_have_file_and_line() {
    let d = dir_with(&[(
        "carol",
        "# comment\nifconfig-push 10.8.0.9\nroute-ipv6 fd00::/48\ncomp-lzo\n",
    )]);
    let e = ccd::load_for(d.path(), "carol", false)
        .err()
        .unwrap_or_default();
    let p = d.path().join("carol");
    let s: Vec<String> = e.iter().map(|x| x.to_string()).collect();
    assert_eq!(s.len(), 3, "{s:?}");
    assert_eq!(
        s[0],
        format!(
            "{}:2: ifconfig-push: expects 2 to 3 arguments, got 1 argument(s)",
            p.display()
        )
    );
    assert_eq!(s[1], format!("{}:3: route-ipv6: not allowed here: not a per-client option; only valid in the server configuration", p.display()));
    assert!(s[2].starts_with(&format!(
        "{}:4: comp-lzo: not supported by fwd",
        p.display()
    )));
}

#[test]
fn ccd_values() {
    let e = ccd::parse_text(
        "ifconfig-push 10.8.0.9 10.8.0.10 192.0.2.9\nifconfig-ipv6-push fd00:8::9/64 fd00:8::1\niroute 192.168.5.0 255.255.255.0\niroute 192.168.6.1\npush-remove ifconfig-ipv6\ndisable\n",
        Path::new("ccd/x"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        e.ifconfig_push,
        Some(IfconfigPush {
            local: Ipv4Addr::new(10, 8, 0, 9),
            remote_netmask: Ipv4Addr::new(10, 8, 0, 10),
            alias: Some(Ipv4Addr::new(192, 0, 2, 9))
        })
    );
    assert_eq!(
        e.ifconfig_ipv6_push.and_then(|p| p.remote),
        "fd00:8::1".parse().ok()
    );
    assert_eq!(
        e.iroutes.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        ["192.168.5.0/24", "192.168.6.1/32"]
    );
    assert!(e.removes("ifconfig-ipv6"));
    assert!(e.disable);
    // iroute-ipv6 is normalised like OpenVPN's mroute.
    let e = ccd::parse_text("iroute-ipv6 fd00:1:2:3::99/48\n", Path::new("x")).unwrap_or_default();
    assert_eq!(e.iroutes_v6[0].to_string(), "fd00:1:2::/48");
    assert_eq!(
        ccd::parse_text("", Path::new("x")).ok(),
        Some(CcdEntry {
            source: "x".into(),
            ..CcdEntry::default()
        })
    );
}

#[test]
fn every_ccd_only_option_is_accepted_in_ccd() {
    for o in fwd::config::options::OPTIONS.iter().filter(|o| o.ccd) {
        let line = match o.name {
            "ifconfig-push" => "ifconfig-push 10.8.0.9 255.255.255.0",
            "ifconfig-ipv6-push" => "ifconfig-ipv6-push fd00::9/64",
            "iroute" => "iroute 10.1.0.0 255.255.0.0",
            "iroute-ipv6" => "iroute-ipv6 fd00:1::/64",
            "push-reset" => "push-reset",
            "push-remove" => "push-remove route",
            "disable" => "disable",
            "ping" => "ping 10",
            "ping-restart" => "ping-restart 60",
            "ping-exit" => "ping-exit 60",
            other => panic!("no ccd sample for {other}"),
        };
        assert!(ccd::parse_text(line, Path::new("x")).is_ok(), "{line}");
    }
}
