//! Persist-file integration tests for `fwd::pool`: a simulated server restart through a real
//! file (same IPv4 *and* IPv6 addresses afterwards), atomic writes, and corrupt files.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use fwd::pool::persist::{self, RestoreMode};
use fwd::pool::{Lease, Pool, PoolConfig, PoolV4, PoolV6, V4Mode};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn cfg(mode: Option<V4Mode>, with_v6: bool) -> PoolConfig {
    PoolConfig {
        v4: mode.map(|mode| match mode {
            V4Mode::Individual => PoolV4 {
                start: v4("10.8.0.2"),
                end: v4("10.8.0.254"),
                mode,
            },
            V4Mode::Net30 => PoolV4 {
                start: v4("10.8.0.4"),
                end: v4("10.8.0.251"),
                mode,
            },
        }),
        v6: with_v6.then(|| PoolV6 {
            base: v6("2001:db8:0:123::1000"),
            prefix_len: 64,
        }),
        duplicate_cn: false,
    }
}

/// Runs a first server life, persists, restarts, and checks every CN gets its old lease back
/// even when reconnecting in a different order and after newcomers arrived first.
fn restart_round_trip(cfg: PoolConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipp.txt");
    let cns = ["alice", "bob", "carol", "dave", "erin"];

    let mut before = Vec::<(&str, Lease)>::new();
    {
        let mut p = Pool::new(cfg).unwrap();
        for cn in cns {
            before.push((cn, p.acquire(cn).unwrap()));
        }
        // Churn: bob and dave leave, a newcomer arrives, bob comes back.
        p.release(before[1].1.slot).unwrap();
        p.release(before[3].1.slot).unwrap();
        let _ = p.acquire("newcomer").unwrap();
        assert_eq!(p.acquire("bob").unwrap(), before[1].1);
        persist::save(&path, &p).unwrap();
    }

    let (entries, warnings) = persist::load(&path).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut p = Pool::new(cfg).unwrap();
    let w = p.restore(&entries, RestoreMode::Preference);
    assert!(w.is_empty(), "{w:?}");
    // A stranger connecting first must not steal a remembered slot.
    let stranger = p.acquire("stranger").unwrap();
    assert!(before.iter().all(|(_, l)| l.slot != stranger.slot));
    for (cn, lease) in before.iter().rev() {
        let again = p.acquire(cn).unwrap();
        assert_eq!(again.v4, lease.v4, "{cn} IPv4");
        assert_eq!(again.v4_remote, lease.v4_remote, "{cn} IPv4 remote");
        assert_eq!(again.v6, lease.v6, "{cn} IPv6");
    }
}

#[test]
fn restart_keeps_addresses_dual_stack_subnet() {
    restart_round_trip(cfg(Some(V4Mode::Individual), true));
}

#[test]
fn restart_keeps_addresses_dual_stack_net30() {
    restart_round_trip(cfg(Some(V4Mode::Net30), true));
}

#[test]
fn restart_keeps_addresses_ipv6_only() {
    restart_round_trip(cfg(None, true));
}

#[test]
fn restart_keeps_addresses_ipv4_only() {
    restart_round_trip(cfg(Some(V4Mode::Individual), false));
}

#[test]
fn openvpn_written_file_is_honoured() {
    // What OpenVPN 2.6 writes for a dual-stack net30 server (IPv4 field = /30 base).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipp.txt");
    fs::write(
        &path,
        "alice,10.8.0.8,2001:db8:0:123::1001\nbob,10.8.0.16,2001:db8:0:123::1003\n",
    )
    .unwrap();
    let (entries, warnings) = persist::load(&path).unwrap();
    assert!(warnings.is_empty());
    let mut p = Pool::new(cfg(Some(V4Mode::Net30), true)).unwrap();
    assert!(p.restore(&entries, RestoreMode::Preference).is_empty());
    let b = p.acquire("bob").unwrap();
    assert_eq!(b.v4, Some(v4("10.8.0.18")));
    assert_eq!(b.v4_remote, Some(v4("10.8.0.17")));
    assert_eq!(b.v6, Some(v6("2001:db8:0:123::1003")));
    // Re-rendering gives back the same file (bytes), slot order.
    assert_eq!(
        persist::render(&p),
        "alice,10.8.0.8,2001:db8:0:123::1001\nbob,10.8.0.16,2001:db8:0:123::1003\n"
    );
}

#[test]
fn corrupt_file_warns_per_line_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipp.txt");
    fs::write(
        &path,
        b"# written by hand\nalice,10.8.0.2,2001:db8:0:123::1000\n\xff\xfe garbage\n\
          bob,10.9.9.9,\ncarol,10.8.0.4,2001:db8:0:123::1002\n",
    )
    .unwrap();
    let (entries, mut warnings) = persist::load(&path).unwrap();
    let mut p = Pool::new(cfg(Some(V4Mode::Individual), true)).unwrap();
    warnings.extend(p.restore(&entries, RestoreMode::Preference));
    let shown: Vec<String> = warnings
        .iter()
        .map(|w| w.at(Path::new("ipp.txt")))
        .collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown[0].starts_with("ipp.txt:3: "), "{shown:?}");
    assert!(shown[1].starts_with("ipp.txt:4: "), "{shown:?}");
    assert!(shown[1].contains("out of pool range"), "{shown:?}");
    assert_eq!(p.acquire("carol").unwrap().v4, Some(v4("10.8.0.4")));
    assert_eq!(
        p.acquire("alice").unwrap().v6,
        Some(v6("2001:db8:0:123::1000"))
    );
}

#[test]
fn fixed_file_reserves_slots_for_their_cn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipp.txt");
    fs::write(&path, "alice,10.8.0.2,\n").unwrap();
    let (entries, _) = persist::load(&path).unwrap();
    let mut p = Pool::new(cfg(Some(V4Mode::Individual), true)).unwrap();
    p.restore(&entries, RestoreMode::from_seconds(0));
    assert_eq!(p.acquire("bob").unwrap().v4, Some(v4("10.8.0.3")));
    assert_eq!(p.acquire("alice").unwrap().v4, Some(v4("10.8.0.2")));
}

#[test]
fn missing_file_is_an_empty_start() {
    let dir = tempfile::tempdir().unwrap();
    let (entries, warnings) = persist::load(&dir.path().join("absent.txt")).unwrap();
    assert!(entries.is_empty() && warnings.is_empty());
}

#[test]
fn atomic_save_leaves_only_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipp.txt");
    let mut p = Pool::new(cfg(Some(V4Mode::Individual), true)).unwrap();
    for i in 0..20 {
        p.acquire(&format!("client{i}")).unwrap();
        persist::save(&path, &p).unwrap();
    }
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ipp.txt"]);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 20);
    assert!(text.starts_with("client0,10.8.0.2,2001:db8:0:123::1000\n"));
}

#[cfg(unix)]
#[test]
fn atomic_save_keeps_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipp.txt");
    fs::write(&path, "").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    persist::write_atomic(&path, "alice,10.8.0.2,\n").unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// Golden behaviour observed with the real `openvpn` 2.6.14 binary (verb 5 "IFCONFIG POOL LIST"
/// after `ifconfig_pool_read`) for `server 10.8.0.0 255.255.255.0` + `topology net30` +
/// `server-ipv6 2001:db8:0:123::/64` + `ifconfig-pool-persist ipp.txt 0`:
/// `IFCONFIG POOL IPv4: base=10.8.0.4 size=62`, slots set: alice→1, bob→3 (invalid IPv4, IPv6
/// used), carol→4 (IPv4 wins over IPv6 ::1009), dave out of range.
#[test]
fn matches_openvpn_2_6_read_of_dual_stack_net30_file() {
    let text = "alice,10.8.0.8,2001:db8:0:123::1001\n\
                bob,10.8.0.999,2001:db8:0:123::1003\n\
                carol,10.8.0.20,2001:db8:0:123::1009\n\
                dave,10.9.0.1,\n";
    let (entries, mut warnings) = persist::parse(text);
    let mut p = Pool::new(cfg(Some(V4Mode::Net30), true)).unwrap();
    assert_eq!(p.capacity(), 62);
    warnings.extend(p.restore(&entries, RestoreMode::Fixed));
    let lines: Vec<_> = warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(4)], "{warnings:?}");
    assert_eq!(
        persist::render(&p),
        "alice,10.8.0.8,2001:db8:0:123::1001\n\
         bob,10.8.0.16,2001:db8:0:123::1003\n\
         carol,10.8.0.20,2001:db8:0:123::1004\n"
    );
}

/// Golden behaviour of `openvpn` 2.6.14 for an IPv6-only server (`ifconfig-ipv6
/// fd00:0:0:1::1/64 …` + `ifconfig-ipv6-pool fd00:0:0:1::100/120`): the pool start is bumped to
/// `::101`, size 255; alice→slot 9, bob→slot 254 (its IPv4 is ignored), carol (`::100`) out of
/// range.
#[test]
fn matches_openvpn_2_6_read_of_ipv6_only_file() {
    let text = "alice,,fd00:0:0:1::10a\nbob,10.8.0.2,fd00:0:0:1::1ff\ncarol,,fd00:0:0:1::100\n";
    let (entries, warnings) = persist::parse(text);
    assert!(warnings.is_empty());
    let mut p = Pool::new(PoolConfig {
        v4: None,
        v6: Some(PoolV6 {
            base: v6("fd00:0:0:1::100"),
            prefix_len: 120,
        }),
        duplicate_cn: false,
    })
    .unwrap();
    assert_eq!(p.capacity(), 255);
    assert_eq!(p.v6_base(), Some(v6("fd00:0:0:1::101")));
    let w = p.restore(&entries, RestoreMode::Fixed);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].line, Some(3));
    assert_eq!(
        persist::render(&p),
        "alice,,fd00:0:0:1::10a\nbob,,fd00:0:0:1::1ff\n"
    );
}
