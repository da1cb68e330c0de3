//! Property tests: the route table against a naive linear-scan reference model.
//!
//! Addresses are drawn from a deliberately small space (a few varying bits under fixed bases)
//! so that random prefixes overlap, nest and collide with host routes often.

use super::*;
use proptest::prelude::*;

/// Reference model: a list of (normalised prefix, owner), a map keyed by the prefix.
#[derive(Default, Debug)]
struct Model {
    routes: Vec<(IpNet, PeerId)>,
}

impl Model {
    fn apply(&mut self, c: &RouteChange) {
        match c {
            RouteChange::Add(n, p) => {
                let n = n.trunc();
                self.routes.retain(|(r, _)| *r != n);
                self.routes.push((n, *p));
            }
            RouteChange::Remove(n) => {
                let n = n.trunc();
                self.routes.retain(|(r, _)| *r != n);
            }
            RouteChange::RemovePeer(p) => self.routes.retain(|(_, o)| o != p),
        }
    }

    fn lookup(&self, a: IpAddr) -> Option<PeerId> {
        self.routes
            .iter()
            .filter(|(n, _)| n.contains(&a))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(_, p)| *p)
    }

    fn routes_of(&self, p: PeerId) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self
            .routes
            .iter()
            .filter(|(_, o)| *o == p)
            .map(|(n, _)| *n)
            .collect();
        v.sort();
        v
    }
}

fn addr4() -> impl Strategy<Value = Ipv4Addr> {
    // 10.x.y.z with x, y in a tiny range: plenty of overlap.
    (0u32..4, 0u32..4, any::<u8>())
        .prop_map(|(a, b, c)| Ipv4Addr::from(0x0a00_0000 | (a << 16) | (b << 8) | u32::from(c)))
}

fn addr6() -> impl Strategy<Value = Ipv6Addr> {
    (0u128..4, 0u128..4, 0u128..4, any::<u16>()).prop_map(|(a, b, c, d)| {
        Ipv6Addr::from(0xfd00_u128 << 112 | a << 80 | b << 64 | c << 56 | u128::from(d))
    })
}

const LEN4: [u8; 12] = [0, 8, 14, 16, 20, 24, 25, 30, 31, 32, 32, 32];
const LEN6: [u8; 12] = [0, 16, 48, 56, 63, 64, 100, 120, 127, 128, 128, 128];

fn net4() -> impl Strategy<Value = IpNet> {
    net4_of(&LEN4)
}

fn net6() -> impl Strategy<Value = IpNet> {
    net6_of(&LEN6)
}

/// Prefixes no shorter than the miss filter's blocks (/16, /32), so the filter is active.
fn long_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![net4_of(&LEN4[3..]), net6_of(&LEN6[2..])]
}

fn net4_of(lens: &[u8]) -> impl Strategy<Value = IpNet> {
    (addr4(), prop::sample::select(lens.to_vec()))
        .prop_map(|(a, l)| IpNet::new(IpAddr::V4(a), l).unwrap_or_else(|e| panic!("{e}")))
}

fn net6_of(lens: &[u8]) -> impl Strategy<Value = IpNet> {
    (addr6(), prop::sample::select(lens.to_vec()))
        .prop_map(|(a, l)| IpNet::new(IpAddr::V6(a), l).unwrap_or_else(|e| panic!("{e}")))
}

fn any_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![net4(), net6()]
}

fn any_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        addr4().prop_map(IpAddr::V4),
        addr6().prop_map(IpAddr::V6),
        // Far away from everything: misses unless a /0 is present.
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn change() -> impl Strategy<Value = RouteChange> {
    prop_oneof![
        6 => (any_net(), 0u32..6).prop_map(|(n, p)| RouteChange::Add(n, PeerId(p))),
        2 => any_net().prop_map(RouteChange::Remove),
        1 => (0u32..6).prop_map(|p| RouteChange::RemovePeer(PeerId(p))),
    ]
}

fn check(s: &Snapshot, m: &Model, probes: &[IpAddr]) -> Result<(), TestCaseError> {
    for a in probes {
        prop_assert_eq!(s.lookup(*a), m.lookup(*a), "lookup {}", a);
        // Every route's own network address must resolve like the model says.
    }
    for (n, _) in &m.routes {
        prop_assert_eq!(
            s.lookup(n.addr()),
            m.lookup(n.addr()),
            "lookup of route {}",
            n
        );
        prop_assert_eq!(
            s.owner_of(*n),
            m.routes.iter().find(|(r, _)| r == n).map(|x| x.1)
        );
    }
    prop_assert_eq!(s.len(), m.routes.len());
    for p in 0..6 {
        let mut got = s.routes_of(PeerId(p)).collect::<Vec<_>>();
        got.sort();
        prop_assert_eq!(got, m.routes_of(PeerId(p)), "routes_of {}", p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A random set of prefixes (as one batch) answers every lookup like the linear scan.
    #[test]
    fn random_sets_match_reference(
        nets in prop::collection::vec((any_net(), 0u32..6), 0..80),
        probes in prop::collection::vec(any_addr(), 1..60),
    ) {
        let t = RouteTable::new();
        let mut m = Model::default();
        let changes: Vec<RouteChange> =
            nets.into_iter().map(|(n, p)| RouteChange::Add(n, PeerId(p))).collect();
        for c in &changes {
            m.apply(c);
        }
        t.apply(changes);
        check(&t.snapshot(), &m, &probes)?;
    }

    /// Same with only prefixes at least as long as the miss filter's blocks, so that misses
    /// are decided by the filter.
    #[test]
    fn random_long_prefix_sets_match_reference(
        nets in prop::collection::vec((long_net(), 0u32..6), 0..80),
        probes in prop::collection::vec(any_addr(), 1..60),
    ) {
        let t = RouteTable::new();
        let mut m = Model::default();
        for (n, p) in nets {
            let c = RouteChange::Add(n, PeerId(p));
            m.apply(&c);
            t.apply([c]);
        }
        check(&t.snapshot(), &m, &probes)?;
        // Remove every other route again, one by one: bits must clear exactly.
        let routes: Vec<IpNet> = m.routes.iter().map(|r| r.0).step_by(2).collect();
        for n in routes {
            let c = RouteChange::Remove(n);
            m.apply(&c);
            t.apply([c]);
        }
        check(&t.snapshot(), &m, &probes)?;
    }

    /// Random add/remove/remove-peer sequences, applied one by one or in small batches, with
    /// the previous snapshot checked to be unaffected by the next update.
    #[test]
    fn random_sequences_match_reference(
        steps in prop::collection::vec(prop::collection::vec(change(), 1..4), 1..40),
        probes in prop::collection::vec(any_addr(), 1..40),
    ) {
        let t = RouteTable::new();
        let mut m = Model::default();
        for batch in steps {
            let before = t.snapshot();
            let before_answers: Vec<Option<PeerId>> =
                probes.iter().map(|a| before.lookup(*a)).collect();
            for c in &batch {
                m.apply(c);
            }
            t.apply(batch);
            check(&t.snapshot(), &m, &probes)?;
            let again: Vec<Option<PeerId>> = probes.iter().map(|a| before.lookup(*a)).collect();
            prop_assert_eq!(before_answers, again, "old snapshot changed");
        }
    }
}

/// Large tables exercise the two-level map form (> 1024 entries per map) and its shrinking.
#[test]
fn large_table_matches_reference_through_growth_and_shrink() {
    let t = RouteTable::new();
    let mut m = Model::default();
    let mut changes = Vec::new();
    for i in 0..1500u32 {
        changes.push(RouteChange::Add(
            IpNet::from(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
            PeerId(i),
        ));
        changes.push(RouteChange::Add(
            IpNet::from(IpAddr::V6(Ipv6Addr::from(
                0xfd00_u128 << 112 | u128::from(i) << 20,
            ))),
            PeerId(i),
        ));
        if i % 3 == 0 {
            let n = IpNet::new(
                IpAddr::V6(Ipv6Addr::from(0xfd01_u128 << 112 | u128::from(i) << 72)),
                56,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            changes.push(RouteChange::Add(n, PeerId(i)));
        }
    }
    for c in &changes {
        m.apply(c);
    }
    t.apply(changes);
    let probes: Vec<IpAddr> = m
        .routes
        .iter()
        .map(|(n, _)| n.addr())
        .chain((0..500u32).map(|i| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))))
        .collect();
    check(&t.snapshot(), &m, &probes).unwrap_or_else(|e| panic!("{e}"));
    for i in (0..1500u32).filter(|i| i % 5 != 0) {
        let c = RouteChange::RemovePeer(PeerId(i));
        m.apply(&c);
        t.apply([c]);
    }
    check(&t.snapshot(), &m, &probes).unwrap_or_else(|e| panic!("{e}"));
}
