//! Warnings for common misconfigurations (never errors: OpenVPN would accept these configs).
//!
//! [`config_warnings`] looks at the main config alone and runs on every load;
//! [`ccd_warnings`] additionally scans the client-config-dir (used by `fwd check`), because
//! most IPv6 routing mistakes only show when server routes and per-client iroutes are
//! compared (server-ipv6.md §8.6: a routed prefix needs route-ipv6 + iroute-ipv6 + push).

use super::ccd::{self, CcdEntry, CcdSpans, DEFAULT_FILE};
use super::error::{ConfigErrors, Location, Warning};
use super::expand::tunnel_net_v4;
use super::model::*;
use super::SourceMap;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

fn at(s: &SourceMap, names: &[&str]) -> Location {
    names
        .iter()
        .find_map(|n| s.directives.get(*n).cloned())
        .unwrap_or_else(|| s.top.clone())
}

/// Number of addresses in the IPv4 pool (net30: one /30 per slot).
pub fn pool_v4_slots(c: &Config) -> Option<u64> {
    let p = c.pool_v4?;
    let n = u64::from(u32::from(p.end)).saturating_sub(u64::from(u32::from(p.start))) + 1;
    Some(if c.topology == Topology::Net30 {
        n / 4
    } else {
        n
    })
}

fn v6_pool_range(c: &Config) -> Option<(u128, u128)> {
    let (first, size) = c.pool_v6?.first_and_size();
    let f = u128::from(first);
    Some((f, f.saturating_add(u128::from(size)).saturating_sub(1)))
}

fn in_v4_pool(c: &Config, a: Ipv4Addr) -> bool {
    c.pool_v4
        .is_some_and(|p| (u32::from(p.start)..=u32::from(p.end)).contains(&u32::from(a)))
}

fn in_v6_pool(c: &Config, a: Ipv6Addr) -> bool {
    v6_pool_range(c).is_some_and(|(lo, hi)| (lo..=hi).contains(&u128::from(a)))
}

fn overlaps6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(b) || b.contains(a)
}

fn overlaps4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.trunc().contains(&b.trunc()) || b.trunc().contains(&a.trunc())
}

/// Warnings derivable from the main configuration alone.
pub fn config_warnings(c: &Config, s: &SourceMap) -> Vec<Warning> {
    let mut w = Vec::new();
    let has_v6 = c.ifconfig_ipv6.is_some() || !c.routes_v6.is_empty();
    if has_v6 && c.tun_mtu < 1280 {
        w.push(Warning::new(
            at(s, &["tun-mtu"]),
            "tun-mtu",
            format!(
                "{} is below the IPv6 minimum MTU of 1280; IPv6 will not work on the tunnel",
                c.tun_mtu
            ),
        ));
    }
    if c.role != Role::Server {
        return w;
    }
    if c.ping.is_none() && c.ping_restart.is_none() {
        w.push(Warning::new(
            at(s, &["mode", "server", "server-ipv6"]),
            "keepalive",
            "missing from server config: dead clients are never detected (add `keepalive 10 60`)",
        ));
    }
    // Pools overlapping the server's own addresses.
    if let Some(i) = c.ifconfig {
        if in_v4_pool(c, i.local) {
            w.push(Warning::new(
                at(s, &["ifconfig-pool", "server"]),
                "ifconfig-pool",
                format!("pool contains the server's own address {}", i.local),
            ));
        }
    }
    if let Some(i6) = c.ifconfig_ipv6 {
        let pool_loc = at(s, &["ifconfig-ipv6-pool", "server-ipv6"]);
        if in_v6_pool(c, i6.local.addr()) {
            w.push(Warning::new(
                pool_loc.clone(),
                "ifconfig-ipv6-pool",
                format!("pool contains the server's own address {}", i6.local.addr()),
            ));
        }
        if let Some(p) = c.pool_v6 {
            let tn = i6.local.trunc();
            if !tn.contains(&p.base) {
                w.push(Warning::new(
                    pool_loc.clone(),
                    "ifconfig-ipv6-pool",
                    format!("pool {}/{} is outside the server's tunnel subnet {tn}; clients get off-link addresses", p.base, p.prefix_len),
                ));
            }
        }
    }
    let v4 = pool_v4_slots(c);
    let v6 = c.pool_v6.map(|p| p.first_and_size().1);
    if let (Some(a), Some(b6)) = (v4, v6) {
        if b6 < a {
            w.push(Warning::new(
                at(s, &["ifconfig-ipv6-pool", "server-ipv6"]),
                "ifconfig-ipv6-pool",
                format!("IPv6 pool ({b6} addresses) is smaller than the IPv4 pool ({a}); the pools share slots so only {b6} clients get addresses (likely a mistake)"),
            ));
        }
    }
    let slots = match (v4, v6) {
        (Some(a), Some(b6)) => Some(a.min(b6)),
        (a, b6) => a.or(b6),
    };
    if let Some(n) = slots {
        if s.max_clients_explicit && u64::from(c.max_clients) > n {
            w.push(Warning::new(
                at(s, &["max-clients"]),
                "max-clients",
                format!("{} is larger than the address pool ({n} slots); clients beyond that get no dynamic address", c.max_clients),
            ));
        }
    }
    if c.client_to_client && c.ccd_dir.is_none() {
        // Nothing to check without iroutes.
    }
    w
}

/// One parsed ccd file with its locations.
pub struct CcdFile {
    pub name: String,
    pub entry: CcdEntry,
    pub spans: CcdSpans,
}

/// Scan the client-config-dir: parse every file (errors are returned) and compare it with the
/// server configuration. Without a ccd dir only the route checks run.
pub fn ccd_warnings(c: &Config, s: &SourceMap) -> Result<Vec<Warning>, ConfigErrors> {
    let mut files = Vec::new();
    let mut errors = ConfigErrors::default();
    let mut w = Vec::new();
    if let Some(dir) = &c.ccd_dir {
        match std::fs::read_dir(dir) {
            Ok(rd) => {
                let mut names: Vec<_> = rd
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| !n.starts_with('.') && !n.ends_with('~'))
                    .collect();
                names.sort();
                for name in names {
                    match ccd::parse_file(&dir.join(&name)) {
                        Ok((entry, spans, mut fw)) => {
                            w.append(&mut fw);
                            files.push(CcdFile { name, entry, spans });
                        }
                        Err(mut e) => errors.0.append(&mut e.0),
                    }
                }
            }
            Err(e) => w.push(Warning::new(
                at(s, &["client-config-dir"]),
                "client-config-dir",
                format!("cannot read {}: {e}", dir.display()),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    w.extend(compare(c, s, &files));
    Ok(w)
}

/// The cross checks between server config and ccd files.
pub fn compare(c: &Config, s: &SourceMap, files: &[CcdFile]) -> Vec<Warning> {
    let mut w = Vec::new();
    let tn6 = c.tunnel_net_v6();
    let tn4 = tunnel_net_v4(c);
    let dual = c.pool_v4.is_some() && c.pool_v6.is_some();
    for f in files {
        let e = &f.entry;
        if f.name == DEFAULT_FILE
            && (!e.iroutes.is_empty()
                || !e.iroutes_v6.is_empty()
                || e.ifconfig_push.is_some()
                || e.ifconfig_ipv6_push.is_some())
        {
            let loc = f
                .spans
                .iroutes_v6
                .first()
                .or(f.spans.iroutes.first())
                .or(f.spans.ifconfig_push.as_ref())
                .or(f.spans.ifconfig_ipv6_push.as_ref())
                .cloned()
                .unwrap_or_else(|| Location::file(e.source.clone()));
            w.push(Warning::new(loc, "DEFAULT", "DEFAULT applies to every client without its own file: static addresses and iroutes in it are shared by all of them"));
        }
        for (n, loc) in e.iroutes_v6.iter().zip(&f.spans.iroutes_v6) {
            if !c.routes_v6.iter().any(|r| r.net.trunc().contains(n)) {
                w.push(Warning::new(loc.clone(), "iroute-ipv6", format!("{n} has no covering route-ipv6 in the server config: the OS will not send its traffic to fwd (add `route-ipv6 {n}`)")));
            }
        }
        for (n, loc) in e.iroutes.iter().zip(&f.spans.iroutes) {
            if !c.routes.iter().any(|r| r.net.trunc().contains(&n.trunc())) {
                w.push(Warning::new(
                    loc.clone(),
                    "iroute",
                    format!(
                        "{} {} has no covering route in the server config (add `route {} {}`)",
                        n.addr(),
                        n.netmask(),
                        n.network(),
                        n.netmask()
                    ),
                ));
            }
        }
        if let (Some(p), Some(loc)) = (e.ifconfig_ipv6_push, &f.spans.ifconfig_ipv6_push) {
            match tn6 {
                None => w.push(Warning::new(
                    loc.clone(),
                    "ifconfig-ipv6-push",
                    "the server has no IPv6 tunnel address (server-ipv6 / ifconfig-ipv6)",
                )),
                Some(t) if !t.contains(&p.addr.addr()) => w.push(Warning::new(
                    loc.clone(),
                    "ifconfig-ipv6-push",
                    format!(
                        "{} is outside the server's IPv6 tunnel subnet {t}",
                        p.addr.addr()
                    ),
                )),
                Some(_) => {}
            }
            if in_v6_pool(c, p.addr.addr()) {
                w.push(Warning::new(loc.clone(), "ifconfig-ipv6-push", format!("{} is inside the dynamic IPv6 pool; another client may get it too (use an address below the pool start)", p.addr.addr())));
            }
            if c.ifconfig_ipv6
                .is_some_and(|i| i.local.addr() == p.addr.addr())
            {
                w.push(Warning::new(
                    loc.clone(),
                    "ifconfig-ipv6-push",
                    "is the server's own address",
                ));
            }
        }
        if let (Some(p), Some(loc)) = (e.ifconfig_push, &f.spans.ifconfig_push) {
            if in_v4_pool(c, p.local) {
                w.push(Warning::new(
                    loc.clone(),
                    "ifconfig-push",
                    format!(
                        "{} is inside the dynamic IPv4 pool; another client may get it too",
                        p.local
                    ),
                ));
            }
            if let Some(t) = tn4 {
                if !t.contains(&p.local) {
                    w.push(Warning::new(
                        loc.clone(),
                        "ifconfig-push",
                        format!("{} is outside the server's tunnel subnet {t}", p.local),
                    ));
                }
            }
            if dual && e.ifconfig_ipv6_push.is_none() {
                w.push(Warning::new(loc.clone(), "ifconfig-push", "a static IPv4 address disables pool IPv6 for this client (OpenVPN 2.6); add ifconfig-ipv6-push"));
            }
        }
    }
    // Cross-client: duplicates and overlaps.
    for (i, a) in files.iter().enumerate() {
        for b in files.iter().skip(i + 1) {
            for (n, loc) in b.entry.iroutes_v6.iter().zip(&b.spans.iroutes_v6) {
                for m in &a.entry.iroutes_v6 {
                    if m == n {
                        w.push(Warning::new(loc.clone(), "iroute-ipv6", format!("{n} is also routed to client `{}`; only one of them can receive it", a.name)));
                    } else if c.client_to_client && overlaps6(m, n) {
                        w.push(Warning::new(loc.clone(), "iroute-ipv6", format!("{n} overlaps {m} of client `{}` (client-to-client uses the longest match)", a.name)));
                    }
                }
            }
            for (n, loc) in b.entry.iroutes.iter().zip(&b.spans.iroutes) {
                for m in &a.entry.iroutes {
                    if m.trunc() == n.trunc() {
                        w.push(Warning::new(
                            loc.clone(),
                            "iroute",
                            format!("{} is also routed to client `{}`", n.trunc(), a.name),
                        ));
                    } else if c.client_to_client && overlaps4(m, n) {
                        w.push(Warning::new(
                            loc.clone(),
                            "iroute",
                            format!(
                                "{} overlaps {} of client `{}`",
                                n.trunc(),
                                m.trunc(),
                                a.name
                            ),
                        ));
                    }
                }
            }
            if let (Some(x), Some(y), Some(loc)) = (
                a.entry.ifconfig_ipv6_push,
                b.entry.ifconfig_ipv6_push,
                &b.spans.ifconfig_ipv6_push,
            ) {
                if x.addr.addr() == y.addr.addr() {
                    w.push(Warning::new(
                        loc.clone(),
                        "ifconfig-ipv6-push",
                        format!("{} is also assigned to client `{}`", y.addr.addr(), a.name),
                    ));
                }
            }
            if let (Some(x), Some(y), Some(loc)) = (
                a.entry.ifconfig_push,
                b.entry.ifconfig_push,
                &b.spans.ifconfig_push,
            ) {
                if x.local == y.local {
                    w.push(Warning::new(
                        loc.clone(),
                        "ifconfig-push",
                        format!("{} is also assigned to client `{}`", y.local, a.name),
                    ));
                }
            }
        }
    }
    // Server routes nobody serves.
    for (r, loc) in c.routes_v6.iter().zip(&s.routes_v6) {
        let served = files.iter().any(|f| {
            f.entry
                .iroutes_v6
                .iter()
                .any(|n| overlaps6(n, &r.net.trunc()))
        });
        let tunnel = tn6.is_some_and(|t| overlaps6(&t, &r.net.trunc()));
        if !served && !tunnel {
            w.push(Warning::new(loc.clone(), "route-ipv6", format!("no client's iroute-ipv6 serves {}: packets the OS routes there are dropped by fwd (add `iroute-ipv6` in a ccd file)", r.net)));
        }
    }
    w
}
