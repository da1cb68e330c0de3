//! Unit tests for the slot logic of [`super::Pool`] (tied allocation, CN stickiness, statics,
//! restore). File round trips and property tests live in `tests/pool_*.rs`.

use super::*;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn subnet(start: &str, end: &str) -> Option<PoolV4> {
    Some(PoolV4 {
        start: v4(start),
        end: v4(end),
        mode: V4Mode::Individual,
    })
}

fn net30(start: &str, end: &str) -> Option<PoolV4> {
    Some(PoolV4 {
        start: v4(start),
        end: v4(end),
        mode: V4Mode::Net30,
    })
}

fn pool6(base: &str, bits: u8) -> Option<PoolV6> {
    Some(PoolV6 {
        base: v6(base),
        prefix_len: bits,
    })
}

fn pool(v4: Option<PoolV4>, v6: Option<PoolV6>, duplicate_cn: bool) -> Pool {
    Pool::new(PoolConfig {
        v4,
        v6,
        duplicate_cn,
    })
    .unwrap()
}

/// `server 10.8.0.0 255.255.255.0` + `topology subnet` + `server-ipv6 2001:db8:0:123::/64`.
fn dual_stack() -> Pool {
    pool(
        subnet("10.8.0.2", "10.8.0.254"),
        pool6("2001:db8:0:123::1000", 64),
        false,
    )
}

#[test]
fn worked_examples_first_client() {
    struct Case {
        name: &'static str,
        v4: Option<PoolV4>,
        v6: Option<PoolV6>,
        want_v4: Option<&'static str>,
        want_remote: Option<&'static str>,
        want_v6: Option<&'static str>,
        capacity: u32,
    }
    let cases = [
        Case {
            name: "server /24 topology subnet",
            v4: subnet("10.8.0.2", "10.8.0.254"),
            v6: None,
            want_v4: Some("10.8.0.2"),
            want_remote: None,
            want_v6: None,
            capacity: 253,
        },
        Case {
            name: "server /24 net30",
            v4: net30("10.8.0.4", "10.8.0.251"),
            v6: None,
            want_v4: Some("10.8.0.6"),
            want_remote: Some("10.8.0.5"),
            want_v6: None,
            capacity: 62,
        },
        Case {
            name: "server-ipv6 /64 only",
            v4: None,
            v6: pool6("2001:db8:0:123::1000", 64),
            want_v4: None,
            want_remote: None,
            want_v6: Some("2001:db8:0:123::1000"),
            capacity: 65536,
        },
        Case {
            name: "server-ipv6 /112",
            v4: None,
            v6: pool6("fd00:1::2", 112),
            want_v4: None,
            want_remote: None,
            want_v6: Some("fd00:1::2"),
            capacity: 65534,
        },
        Case {
            name: "server-ipv6 /120",
            v4: None,
            v6: pool6("fd00:1::2", 120),
            want_v4: None,
            want_remote: None,
            want_v6: Some("fd00:1::2"),
            capacity: 254,
        },
        Case {
            name: "explicit ifconfig-ipv6-pool with host part 0",
            v4: None,
            v6: pool6("2001:db8:1::", 64),
            want_v4: None,
            want_remote: None,
            want_v6: Some("2001:db8:1::1"),
            capacity: 65536,
        },
        Case {
            name: "dual stack subnet + /64",
            v4: subnet("10.8.0.2", "10.8.0.254"),
            v6: pool6("2001:db8:0:123::1000", 64),
            want_v4: Some("10.8.0.2"),
            want_remote: None,
            want_v6: Some("2001:db8:0:123::1000"),
            capacity: 253,
        },
        Case {
            name: "dual stack net30 + /64",
            v4: net30("10.8.0.4", "10.8.0.251"),
            v6: pool6("2001:db8:0:123::1000", 64),
            want_v4: Some("10.8.0.6"),
            want_remote: Some("10.8.0.5"),
            want_v6: Some("2001:db8:0:123::1000"),
            capacity: 62,
        },
    ];
    for c in cases {
        let mut p = pool(c.v4, c.v6, false);
        assert_eq!(p.capacity(), c.capacity, "{}", c.name);
        let l = p.acquire("client1").unwrap();
        assert_eq!(l.slot, SlotId(0), "{}", c.name);
        assert_eq!(l.v4, c.want_v4.map(v4), "{}", c.name);
        assert_eq!(l.v4_remote, c.want_remote.map(v4), "{}", c.name);
        assert_eq!(l.v6, c.want_v6.map(v6), "{}", c.name);
    }
}

#[test]
fn slots_tie_ipv4_and_ipv6() {
    let mut p = pool(
        net30("10.8.0.4", "10.8.0.251"),
        pool6("2001:db8:0:123::1000", 64),
        false,
    );
    for i in 0..10u32 {
        let l = p.acquire(&format!("c{i}")).unwrap();
        assert_eq!(l.slot, SlotId(i));
        let b = u32::from(v4("10.8.0.4")) + 4 * i;
        assert_eq!(l.v4, Some(Ipv4Addr::from(b + 2)));
        assert_eq!(l.v4_remote, Some(Ipv4Addr::from(b + 1)));
        assert_eq!(
            l.v6,
            Some(Ipv6Addr::from(
                u128::from(v6("2001:db8:0:123::1000")) + u128::from(i)
            ))
        );
    }
}

#[test]
fn ipv6_exhaustion_follows_ipv4_and_vice_versa() {
    // IPv4 limits: 3 addresses, big IPv6 pool.
    let mut p = pool(
        subnet("10.8.0.2", "10.8.0.4"),
        pool6("fd00::1000", 64),
        false,
    );
    assert_eq!(p.capacity(), 3);
    assert!(p.config_notes()[0].starts_with("NOTE: IPv4 pool size is 3"));
    for cn in ["a", "b", "c"] {
        p.acquire(cn).unwrap();
    }
    assert_eq!(p.acquire("d"), Err(PoolError::Exhausted { capacity: 3 }));

    // IPv6 limits: /124 from ::2 = 14 slots, /24 IPv4 = 253.
    let mut p = pool(
        subnet("10.8.0.2", "10.8.0.254"),
        pool6("fd00::2", 124),
        false,
    );
    assert_eq!(p.capacity(), 14);
    assert!(p.config_notes()[0].contains("likely a MISTAKE"));
    for i in 0..14 {
        let l = p.acquire(&format!("c{i}")).unwrap();
        assert!(l.v4.is_some() && l.v6.is_some());
    }
    assert!(matches!(p.acquire("x"), Err(PoolError::Exhausted { .. })));
    // IPv4 addresses past the slot count are not part of the dynamic pool.
    assert!(p.contains_v4(v4("10.8.0.15")));
    assert!(!p.contains_v4(v4("10.8.0.16")));
}

#[test]
fn ipv6_only_and_ipv4_only_pools() {
    let mut p = pool(None, pool6("fd00::2", 120), false);
    assert!(!p.has_v4() && p.has_v6());
    let l = p.acquire("a").unwrap();
    assert_eq!((l.v4, l.v4_remote, l.v6), (None, None, Some(v6("fd00::2"))));
    let l = p.acquire("b").unwrap();
    assert_eq!(l.v6, Some(v6("fd00::3")));

    let mut p = pool(subnet("10.8.0.2", "10.8.0.254"), None, false);
    assert!(p.has_v4() && !p.has_v6());
    let l = p.acquire("a").unwrap();
    assert_eq!((l.v4, l.v6), (Some(v4("10.8.0.2")), None));

    assert_eq!(
        Pool::new(PoolConfig {
            v4: None,
            v6: None,
            duplicate_cn: false
        })
        .err(),
        Some(PoolError::NoFamily)
    );
}

#[test]
fn exhaustion_is_an_error_and_release_frees() {
    let mut p = pool(subnet("10.8.0.2", "10.8.0.3"), None, false);
    let a = p.acquire("a").unwrap();
    let _b = p.acquire("b").unwrap();
    assert_eq!(p.in_use(), 2);
    assert_eq!(p.acquire("c"), Err(PoolError::Exhausted { capacity: 2 }));
    p.release(a.slot).unwrap();
    assert_eq!(p.in_use(), 1);
    // "a" is remembered, but it's the only free slot, so "c" gets it.
    let c = p.acquire("c").unwrap();
    assert_eq!(c.slot, a.slot);
    assert_eq!(p.cn_of(c.slot), Some("c"));
}

#[test]
fn bad_release_is_an_error() {
    let mut p = dual_stack();
    assert_eq!(p.release(SlotId(0)), Err(PoolError::NotInUse(SlotId(0))));
    assert_eq!(
        p.release(SlotId(99_999)),
        Err(PoolError::NotInUse(SlotId(99_999)))
    );
    let l = p.acquire("a").unwrap();
    p.release(l.slot).unwrap();
    assert_eq!(p.release(l.slot), Err(PoolError::NotInUse(l.slot)));
    assert_eq!(p.release_hard(l.slot), Err(PoolError::NotInUse(l.slot)));
    assert_eq!(p.in_use(), 0);
    assert_eq!(p.lease(SlotId(99_999)), None);
}

#[test]
fn cn_keeps_its_slot_across_reconnects() {
    let mut p = dual_stack();
    let a = p.acquire("alice").unwrap();
    let b = p.acquire("bob").unwrap();
    p.release(a.slot).unwrap();
    // A newcomer prefers a never-used slot over alice's remembered one.
    let c = p.acquire("carol").unwrap();
    assert_eq!(c.slot, SlotId(2));
    let a2 = p.acquire("alice").unwrap();
    assert_eq!(a2, a);
    p.release(b.slot).unwrap();
    p.release(a2.slot).unwrap();
    let b2 = p.acquire("bob").unwrap();
    assert_eq!(b2, b);
}

#[test]
fn oldest_release_is_reused_first_when_pool_is_full() {
    let mut p = pool(subnet("10.8.0.2", "10.8.0.5"), None, false);
    let l: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|cn| p.acquire(cn).unwrap())
        .collect();
    // Release order: c, a, d (b stays).
    for i in [2, 0, 3] {
        p.release(l[i].slot).unwrap();
    }
    // New CNs take the longest-released slots first, not the lowest index.
    assert_eq!(p.acquire("x").unwrap().slot, l[2].slot);
    assert_eq!(p.acquire("y").unwrap().slot, l[0].slot);
    // "d" still finds its own slot.
    assert_eq!(p.acquire("d").unwrap().slot, l[3].slot);
}

#[test]
fn hard_release_forgets_the_cn() {
    let mut p = dual_stack();
    let a = p.acquire("alice").unwrap();
    p.release_hard(a.slot).unwrap();
    assert_eq!(p.cn_of(a.slot), None);
    // Slot 0 is never-used again and lowest: a newcomer gets it.
    assert_eq!(p.acquire("bob").unwrap().slot, a.slot);
    assert!(p.persist_entries().iter().all(|e| e.cn != "alice"));
}

#[test]
fn duplicate_cn_does_not_tie_slots() {
    let mut p = pool(
        subnet("10.8.0.2", "10.8.0.254"),
        pool6("fd00::1000", 64),
        true,
    );
    assert!(p.duplicate_cn());
    let a1 = p.acquire("shared").unwrap();
    let a2 = p.acquire("shared").unwrap();
    assert_ne!(a1.slot, a2.slot);
    assert_eq!(p.cn_of(a1.slot), None);
    p.release(a1.slot).unwrap();
    let _b = p.acquire("other").unwrap(); // first free slot: 0
    assert_eq!(p.lease(SlotId(0)).map(|l| l.slot), Some(a1.slot));
    assert!(p.is_in_use(a1.slot));
    // Nothing is remembered, so nothing is persisted.
    assert!(p.persist_entries().is_empty());
}

#[test]
fn static_addresses_are_never_handed_out() {
    let mut p = pool(
        subnet("10.8.0.2", "10.8.0.254"),
        pool6("fd00::1000", 64),
        false,
    );
    assert_eq!(
        p.reserve_static_v4(v4("10.8.0.2")),
        StaticReservation::Excluded(SlotId(0))
    );
    assert_eq!(
        p.reserve_static_v6(v6("fd00::1001")),
        StaticReservation::Excluded(SlotId(1))
    );
    assert_eq!(
        p.reserve_static_v4(v4("10.8.0.1")),
        StaticReservation::OutsidePool
    );
    assert_eq!(
        p.reserve_static_v6(v6("fd00::fff")),
        StaticReservation::OutsidePool
    );
    assert!(p.is_static(SlotId(0)) && p.is_static(SlotId(1)));
    let l = p.acquire("a").unwrap();
    assert_eq!(l.v4, Some(v4("10.8.0.4")));
    assert_eq!(l.v6, Some(v6("fd00::1002")));
    // Reserving an address of a leased slot reports the conflict and excludes it afterwards.
    assert_eq!(
        p.reserve_static_v4(v4("10.8.0.4")),
        StaticReservation::InUse(l.slot)
    );
    p.release(l.slot).unwrap();
    assert_ne!(p.acquire("a").unwrap().slot, l.slot);
    // Unreserving makes the slot assignable again.
    assert!(p.unreserve_static_v4(v4("10.8.0.2")));
    assert!(!p.unreserve_static_v4(v4("10.8.0.2")));
    assert_eq!(p.acquire("b").unwrap().slot, SlotId(0));
}

#[test]
fn static_inside_net30_block_excludes_the_block() {
    let mut p = pool(net30("10.8.0.4", "10.8.0.251"), None, false);
    assert_eq!(
        p.reserve_static_v4(v4("10.8.0.5")),
        StaticReservation::Excluded(SlotId(0))
    );
    assert!(p.contains_v4(v4("10.8.0.7")));
    assert!(!p.contains_v4(v4("10.8.0.3")));
    let l = p.acquire("a").unwrap();
    assert_eq!(l.v4, Some(v4("10.8.0.10")));
}

#[test]
fn static_reservation_is_counted_per_address() {
    let mut p = dual_stack();
    p.reserve_static_v4(v4("10.8.0.2"));
    p.reserve_static_v4(v4("10.8.0.2")); // idempotent
    p.reserve_static_v6(v6("2001:db8:0:123::1000")); // same slot, other family
    assert!(p.unreserve_static_v4(v4("10.8.0.2")));
    assert!(p.is_static(SlotId(0)), "the IPv6 reservation still holds");
    assert!(p.unreserve_static_v6(v6("2001:db8:0:123::1000")));
    assert!(!p.is_static(SlotId(0)));
}

#[test]
fn contains_checks_both_families() {
    let p = dual_stack();
    assert!(p.contains_v4(v4("10.8.0.2")));
    assert!(p.contains_v4(v4("10.8.0.254")));
    assert!(!p.contains_v4(v4("10.8.0.1")));
    assert!(!p.contains_v4(v4("10.8.0.255")));
    assert!(p.contains_v6(v6("2001:db8:0:123::1000")));
    // Only the first 253 IPv6 addresses belong to slots.
    assert!(p.contains_v6(v6("2001:db8:0:123::10fc")));
    assert!(!p.contains_v6(v6("2001:db8:0:123::10fd")));
    assert!(!p.contains_v6(v6("2001:db8:0:123::fff")));
    let p4 = pool(subnet("10.8.0.2", "10.8.0.254"), None, false);
    assert!(!p4.contains_v6(v6("2001:db8:0:123::1000")));
}

fn entry(line: u32, cn: &str, a4: Option<&str>, a6: Option<&str>) -> PersistEntry {
    PersistEntry {
        line: Some(line),
        cn: cn.into(),
        v4: a4.map(v4),
        v6: a6.map(v6),
    }
}

#[test]
fn restore_prefers_cn_slots() {
    let mut p = dual_stack();
    let w = p.restore(
        &[
            entry(1, "alice", Some("10.8.0.5"), Some("2001:db8:0:123::1003")),
            entry(2, "bob", None, Some("2001:db8:0:123::1007")),
        ],
        RestoreMode::Preference,
    );
    assert!(w.is_empty(), "{w:?}");
    // A newcomer gets a never-used slot, not a remembered one.
    assert_eq!(p.acquire("zed").unwrap().slot, SlotId(0));
    let a = p.acquire("alice").unwrap();
    assert_eq!(a.v4, Some(v4("10.8.0.5")));
    assert_eq!(a.v6, Some(v6("2001:db8:0:123::1003")));
    let b = p.acquire("bob").unwrap();
    assert_eq!(b.v4, Some(v4("10.8.0.9")));
    assert_eq!(b.v6, Some(v6("2001:db8:0:123::1007")));
}

#[test]
fn restore_ipv4_wins_on_disagreement() {
    let mut p = dual_stack();
    let w = p.restore(
        &[entry(
            3,
            "alice",
            Some("10.8.0.5"),
            Some("2001:db8:0:123::1009"),
        )],
        RestoreMode::Preference,
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, Some(3));
    assert!(w[0].message.contains("relying on IPv4"), "{}", w[0]);
    assert_eq!(p.acquire("alice").unwrap().slot, SlotId(3));
}

#[test]
fn restore_falls_back_to_ipv6_when_ipv4_is_out_of_range() {
    let mut p = dual_stack();
    let w = p.restore(
        &[entry(
            1,
            "alice",
            Some("192.168.1.1"),
            Some("2001:db8:0:123::1009"),
        )],
        RestoreMode::Preference,
    );
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("out of pool range"), "{}", w[0]);
    assert_eq!(p.acquire("alice").unwrap().slot, SlotId(9));
}

#[test]
fn restore_ignores_out_of_range_entries_with_warnings() {
    let mut p = dual_stack();
    let w = p.restore(
        &[
            entry(1, "a", Some("10.9.0.2"), None),
            entry(2, "b", None, Some("2001:db8:0:124::1000")),
            entry(3, "c", Some("10.8.0.1"), Some("2001:db8:0:123::fff")),
        ],
        RestoreMode::Preference,
    );
    let lines: Vec<_> = w.iter().map(|w| w.line).collect();
    assert_eq!(lines, [1, 2, 3, 3].map(Some).to_vec(), "{w:?}");
    assert!(p.persist_entries().is_empty());
}

#[test]
fn restore_in_ipv6_only_pool_uses_ipv6_field() {
    let mut p = pool(None, pool6("fd00::1000", 64), false);
    let w = p.restore(
        &[
            // A line from a former dual-stack config: IPv4 ignored, IPv6 used.
            entry(1, "alice", Some("10.8.0.2"), Some("fd00::1004")),
            // IPv4 only: nothing usable.
            entry(2, "bob", Some("10.8.0.3"), None),
        ],
        RestoreMode::Preference,
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, Some(2));
    assert_eq!(p.acquire("alice").unwrap().v6, Some(v6("fd00::1004")));
}

#[test]
fn restore_net30_accepts_any_address_of_the_block() {
    let mut p = pool(net30("10.8.0.4", "10.8.0.251"), None, false);
    let w = p.restore(
        &[
            entry(1, "a", Some("10.8.0.8"), None),
            entry(2, "b", Some("10.8.0.14"), None),
        ],
        RestoreMode::Preference,
    );
    assert!(w.is_empty());
    assert_eq!(p.acquire("a").unwrap().v4, Some(v4("10.8.0.10")));
    assert_eq!(p.acquire("b").unwrap().v4, Some(v4("10.8.0.14")));
    let e = p.persist_entries();
    assert_eq!(e[0].v4, Some(v4("10.8.0.8")));
    assert_eq!(
        e[1].v4,
        Some(v4("10.8.0.12")),
        "net30 persists the /30 base"
    );
}

#[test]
fn restore_later_entry_for_same_slot_replaces_earlier() {
    let mut p = dual_stack();
    let w = p.restore(
        &[
            entry(1, "a", Some("10.8.0.2"), None),
            entry(2, "b", Some("10.8.0.2"), None),
        ],
        RestoreMode::Preference,
    );
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, Some(2));
    assert!(w[0].message.contains("line 1"), "{}", w[0]);
    assert_eq!(p.cn_of(SlotId(0)), Some("b"));
}

#[test]
fn restore_skips_leased_and_static_slots() {
    let mut p = dual_stack();
    p.acquire("x").unwrap();
    p.reserve_static_v4(v4("10.8.0.3"));
    let w = p.restore(
        &[
            entry(1, "a", Some("10.8.0.2"), None),
            entry(2, "b", Some("10.8.0.3"), None),
        ],
        RestoreMode::Preference,
    );
    let lines: Vec<_> = w.iter().map(|w| w.line).collect();
    assert_eq!(lines, [Some(1), Some(2)]);
    assert_eq!(p.cn_of(SlotId(0)), Some("x"));
    assert_eq!(p.cn_of(SlotId(1)), None);
}

#[test]
fn preference_entries_yield_when_pool_is_otherwise_full() {
    let mut p = pool(subnet("10.8.0.2", "10.8.0.3"), None, false);
    p.restore(
        &[entry(1, "alice", Some("10.8.0.3"), None)],
        RestoreMode::Preference,
    );
    assert_eq!(p.acquire("x").unwrap().slot, SlotId(0));
    // Only alice's remembered slot is left: another CN may take it.
    assert_eq!(p.acquire("y").unwrap().slot, SlotId(1));
}

#[test]
fn fixed_entries_are_reserved_for_their_cn() {
    let mut p = pool(subnet("10.8.0.2", "10.8.0.3"), None, false);
    p.restore(
        &[entry(1, "alice", Some("10.8.0.3"), None)],
        RestoreMode::Fixed,
    );
    assert_eq!(p.available(), 1);
    assert_eq!(p.acquire("x").unwrap().slot, SlotId(0));
    assert!(matches!(p.acquire("y"), Err(PoolError::Exhausted { .. })));
    let a = p.acquire("alice").unwrap();
    assert_eq!(a.v4, Some(v4("10.8.0.3")));
    // Still fixed after a release.
    p.release(a.slot).unwrap();
    assert!(matches!(p.acquire("y"), Err(PoolError::Exhausted { .. })));
    assert_eq!(p.acquire("alice").unwrap().slot, a.slot);
}

#[test]
fn persist_entries_list_leased_and_remembered_slots() {
    let mut p = dual_stack();
    let a = p.acquire("alice").unwrap();
    let _b = p.acquire("bob").unwrap();
    p.release(a.slot).unwrap();
    let text = persist::render(&p);
    assert_eq!(
        text,
        "alice,10.8.0.2,2001:db8:0:123::1000\nbob,10.8.0.3,2001:db8:0:123::1001\n"
    );
    let p6 = {
        let mut p = pool(None, pool6("fd00::1000", 64), false);
        p.acquire("carol").unwrap();
        p
    };
    assert_eq!(persist::render(&p6), "carol,,fd00::1000\n");
    let p4 = {
        let mut p = pool(subnet("10.8.0.2", "10.8.0.254"), None, false);
        p.acquire("dave").unwrap();
        p
    };
    assert_eq!(persist::render(&p4), "dave,10.8.0.2,\n");
}

#[test]
fn empty_cn_is_not_recorded() {
    let mut p = dual_stack();
    let l = p.acquire("").unwrap();
    assert_eq!(p.cn_of(l.slot), None);
    p.release(l.slot).unwrap();
    // An empty CN never "finds its slot": it just gets the best free one.
    assert_eq!(p.acquire("").unwrap().slot, SlotId(1));
}
