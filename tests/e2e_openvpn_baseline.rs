//! Baseline for the end-to-end lab: real openvpn 2.6 server <-> two real openvpn clients.
//!
//! Proves the lab, the PKI fixture and the scenario's expectations against the reference
//! implementation; `tests/e2e_*` for fwd run the same scenario with `ServerKind::Fwd`.
//! Needs root, /dev/net/tun, `ip`, `openvpn`, `openssl`, `ping` (installed by `.ci/run`);
//! skips with a message elsewhere, fails under CI.

mod common;

use common::scenario::{run_server_scenario, ServerKind, Underlay};

#[test]
fn openvpn_server_ipv4_underlay() {
    run_server_scenario(ServerKind::OpenVpn, Underlay::V4);
}

#[test]
fn openvpn_server_ipv6_underlay() {
    run_server_scenario(ServerKind::OpenVpn, Underlay::V6);
}

/// The lab itself: underlay in both families, process tracking, and teardown on a normal
/// drop and on a panic (namespaces gone, spawned processes gone).
#[test]
fn lab_underlay_and_teardown() {
    use common::lab::{Lab, Link};
    use std::path::Path;
    use std::time::Duration;

    fn build(lab: &mut Lab) -> (Vec<String>, u32, Link) {
        let a = lab.host("a");
        let b = lab.host("b");
        let link = lab.link(&a, &b);
        assert!(link.if_a.len() <= 15 && link.if_b.len() <= 15);
        for v6 in [false, true] {
            assert!(
                lab.ping_eventually(&a, link.b(v6), Duration::from_secs(3)),
                "a -> b {}",
                link.b(v6)
            );
            assert!(lab.ping(&b, link.a(v6), 1), "b -> a {}", link.a(v6));
        }
        let addrs = lab.addrs(&b, &link.if_b);
        assert!(addrs
            .iter()
            .any(|x| x.addr == link.b4 && x.prefix_len == 24));
        assert!(addrs
            .iter()
            .any(|x| x.addr == link.b6 && x.prefix_len == 64));
        let log = lab.dir().join("sleep.log");
        let id = lab.spawn(&b, &["sleep", "60"], &log);
        assert!(lab.is_running(id));
        (
            vec![a.ns().to_string(), b.ns().to_string()],
            lab.pid(id),
            link,
        )
    }
    fn assert_gone(nss: &[String], pid: u32) {
        for ns in nss {
            assert!(
                !Path::new("/run/netns").join(ns).exists(),
                "{ns} left behind"
            );
        }
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} left behind"
        );
    }

    let Some(mut lab) = Lab::try_new("selftest") else {
        return;
    };
    let (nss, pid, _) = build(&mut lab);
    drop(lab);
    assert_gone(&nss, pid);

    // Teardown while unwinding from a failed assertion.
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::spawn(move || {
        let mut lab = Lab::new("selftest-panic");
        lab.keep_on_panic(false);
        let (nss, pid, _) = build(&mut lab);
        let _ = tx.send((nss, pid));
        panic!("intentional panic to exercise teardown");
    })
    .join();
    assert!(joined.is_err());
    let (nss, pid) = rx.recv().expect("thread sent its lab state");
    assert_gone(&nss, pid);
}
