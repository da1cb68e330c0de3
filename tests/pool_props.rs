//! Property tests for `fwd::pool`: random acquire/release/static sequences never hand out an
//! address twice, never hand out a static address, and only report exhaustion when the pool
//! really has no assignable slot.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use fwd::pool::persist::{self, RestoreMode};
use fwd::pool::{Lease, Pool, PoolConfig, PoolError, PoolV4, PoolV6, SlotId, V4Mode};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Acquire(u8),
    Release(usize),
    ReleaseHard(usize),
    Reconnect(usize),
    ReserveV4(u8),
    ReserveV6(u8),
    UnreserveV4(u8),
    UnreserveV6(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..10).prop_map(Op::Acquire),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::ReleaseHard),
        1 => any::<usize>().prop_map(Op::Reconnect),
        1 => (0u8..40).prop_map(Op::ReserveV4),
        1 => (0u8..12).prop_map(Op::ReserveV6),
        1 => (0u8..40).prop_map(Op::UnreserveV4),
        1 => (0u8..12).prop_map(Op::UnreserveV6),
    ]
}

fn config() -> impl Strategy<Value = PoolConfig> {
    (0u8..3, any::<bool>(), any::<bool>(), 2u32..9).prop_map(|(fam, net30, dup, n)| {
        let base4 = u32::from(Ipv4Addr::new(10, 8, 0, 4));
        let mode = if net30 {
            V4Mode::Net30
        } else {
            V4Mode::Individual
        };
        let end = if net30 {
            base4 + 4 * n - 1
        } else {
            base4 + n - 1
        };
        let v4 = PoolV4 {
            start: Ipv4Addr::from(base4),
            end: Ipv4Addr::from(end),
            mode,
        };
        // /124 from ::2 = 14 slots; sometimes smaller than IPv4, sometimes larger.
        let v6 = PoolV6 {
            base: "fd00::2".parse().unwrap(),
            prefix_len: 124,
        };
        PoolConfig {
            v4: (fam != 1).then_some(v4),
            v6: (fam != 0).then_some(v6),
            duplicate_cn: dup,
        }
    })
}

struct Model {
    pool: Pool,
    held: Vec<(String, Lease)>,
    statics_v4: BTreeSet<Ipv4Addr>,
    statics_v6: BTreeSet<Ipv6Addr>,
}

impl Model {
    fn static_slots(&self) -> BTreeSet<SlotId> {
        let a = self
            .statics_v4
            .iter()
            .filter_map(|a| self.pool.slot_of_v4(*a));
        let b = self
            .statics_v6
            .iter()
            .filter_map(|a| self.pool.slot_of_v6(*a));
        a.chain(b).collect()
    }

    fn check_lease(&self, l: &Lease) -> Result<(), TestCaseError> {
        prop_assert!(
            !self.static_slots().contains(&l.slot),
            "static slot handed out"
        );
        if let Some(a) = l.v4 {
            prop_assert!(!self.statics_v4.contains(&a), "static IPv4 {a} handed out");
            for s in &self.statics_v4 {
                prop_assert_ne!(self.pool.slot_of_v4(*s), Some(l.slot));
            }
        }
        if let Some(a) = l.v6 {
            prop_assert!(!self.statics_v6.contains(&a), "static IPv6 {a} handed out");
        }
        prop_assert_eq!(l.v4.is_some(), self.pool.has_v4());
        prop_assert_eq!(l.v6.is_some(), self.pool.has_v6());
        Ok(())
    }

    fn check_unique(&self) -> Result<(), TestCaseError> {
        let mut v4 = BTreeMap::new();
        let mut v6 = BTreeMap::new();
        for (cn, l) in &self.held {
            if let Some(a) = l.v4 {
                prop_assert!(v4.insert(a, cn).is_none(), "IPv4 {a} handed out twice");
            }
            if let Some(r) = l.v4_remote {
                prop_assert!(v4.insert(r, cn).is_none(), "net30 remote {r} collides");
            }
            if let Some(a) = l.v6 {
                prop_assert!(v6.insert(a, cn).is_none(), "IPv6 {a} handed out twice");
            }
        }
        prop_assert_eq!(self.pool.in_use() as usize, self.held.len());
        Ok(())
    }

    fn acquire(&mut self, cn: String) -> Result<Option<Lease>, TestCaseError> {
        let free = self.pool.capacity() as usize - self.held.len();
        let statics_free = self
            .static_slots()
            .iter()
            .filter(|s| !self.pool.is_in_use(**s))
            .count();
        match self.pool.acquire(&cn) {
            Ok(l) => {
                self.check_lease(&l)?;
                self.held.push((cn, l));
                Ok(Some(l))
            }
            Err(PoolError::Exhausted { .. }) => {
                prop_assert_eq!(free, statics_free, "exhausted with assignable slots left");
                Ok(None)
            }
            Err(e) => Err(TestCaseError::fail(format!("unexpected {e}"))),
        }
    }
}

/// Addresses around the pool (10.8.0.4 ..), some inside, some outside.
fn v4_candidate(k: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 8, 0, 0)) + u32::from(k))
}

/// Addresses around the IPv6 pool (fd00::2 ..), some inside, some outside.
fn v6_candidate(k: u8) -> Ipv6Addr {
    Ipv6Addr::from(u128::from("fd00::".parse::<Ipv6Addr>().unwrap()) + u128::from(k))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_double_assigns_and_never_assigns_statics(
        cfg in config(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let pool = Pool::new(cfg).unwrap();
        let mut m = Model {
            pool,
            held: Vec::new(),
            statics_v4: BTreeSet::new(),
            statics_v6: BTreeSet::new(),
        };
        for op in ops {
            match op {
                Op::Acquire(c) => {
                    m.acquire(format!("cn{c}"))?;
                }
                Op::Release(i) | Op::ReleaseHard(i) if !m.held.is_empty() => {
                    let (_, l) = m.held.remove(i % m.held.len());
                    if matches!(op, Op::Release(_)) {
                        m.pool.release(l.slot).unwrap();
                    } else {
                        m.pool.release_hard(l.slot).unwrap();
                    }
                    prop_assert_eq!(m.pool.release(l.slot), Err(PoolError::NotInUse(l.slot)));
                }
                Op::Reconnect(i) if !m.held.is_empty() => {
                    let (cn, l) = m.held.remove(i % m.held.len());
                    m.pool.release(l.slot).unwrap();
                    let was_static = m.pool.is_static(l.slot);
                    // The same CN may hold several slots (the pool allows it; the server closes
                    // duplicates): then the lowest free slot remembering it wins.
                    let lower_twin = m.pool.slot_ids().take_while(|s| *s < l.slot).any(|s| {
                        !m.pool.is_in_use(s)
                            && !m.pool.is_static(s)
                            && m.pool.cn_of(s) == Some(cn.as_str())
                    });
                    let again = m.acquire(cn)?;
                    // Without duplicate-cn a CN gets its slot back unless it became static.
                    if !cfg.duplicate_cn && !was_static && !lower_twin {
                        prop_assert_eq!(again, Some(l));
                    }
                }
                Op::ReserveV4(k) => {
                    let a = v4_candidate(k);
                    m.pool.reserve_static_v4(a);
                    m.statics_v4.insert(a);
                }
                Op::ReserveV6(k) => {
                    let a = v6_candidate(k);
                    m.pool.reserve_static_v6(a);
                    m.statics_v6.insert(a);
                }
                Op::UnreserveV4(k) => {
                    let a = v4_candidate(k);
                    // Only addresses inside the pool are tracked by it.
                    let tracked = m.statics_v4.remove(&a) && m.pool.contains_v4(a);
                    prop_assert_eq!(m.pool.unreserve_static_v4(a), tracked);
                }
                Op::UnreserveV6(k) => {
                    let a = v6_candidate(k);
                    let tracked = m.statics_v6.remove(&a) && m.pool.contains_v6(a);
                    prop_assert_eq!(m.pool.unreserve_static_v6(a), tracked);
                }
                _ => {}
            }
            m.check_unique()?;
        }
    }

    #[test]
    fn persist_round_trip_restores_every_remembered_slot(
        cfg in config(),
        ops in proptest::collection::vec((0u8..10, any::<bool>()), 1..40),
    ) {
        let cfg = PoolConfig { duplicate_cn: false, ..cfg };
        let mut p = Pool::new(cfg).unwrap();
        let mut held: Vec<SlotId> = Vec::new();
        for (c, release) in ops {
            if release && !held.is_empty() {
                let s = held.remove(usize::from(c) % held.len());
                p.release(s).unwrap();
            } else if let Ok(l) = p.acquire(&format!("cn{c}")) {
                held.push(l.slot);
            }
        }
        let text = persist::render(&p);
        let (entries, warnings) = persist::parse(&text);
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        let mut q = Pool::new(cfg).unwrap();
        let w = q.restore(&entries, RestoreMode::Preference);
        prop_assert!(w.is_empty(), "{:?}", w);
        prop_assert_eq!(persist::render(&q), text);
        for e in p.persist_entries() {
            let slot = e
                .v4
                .and_then(|a| q.slot_of_v4(a))
                .or_else(|| e.v6.and_then(|a| q.slot_of_v6(a)));
            prop_assert_eq!(slot.and_then(|s| q.cn_of(s)), Some(e.cn.as_str()));
        }
    }

    #[test]
    fn parse_never_panics(text in ".{0,400}") {
        let (entries, _warnings) = persist::parse(&text);
        for e in entries {
            prop_assert!(e.v4.is_some() || e.v6.is_some());
            prop_assert!(!e.cn.is_empty());
        }
    }
}
