//! Netlink against the real kernel, inside a throwaway network namespace: link settings,
//! addresses (v4, v6, point-to-point) and routes are added, checked with `ip -j`, deleted
//! and checked gone. Skips with a reason when namespaces or tun are unavailable.

use std::net::IpAddr;

use fwd::os::netlink::{DefaultRoute, Netlink};
use fwd::os::netns::NetnsGuard;
use fwd::os::tun::Tun;
use fwd::os::OsError;

fn ip(addr: &str) -> IpAddr {
    addr.parse().unwrap()
}

#[test]
fn netlink_links_addresses_routes() {
    let ns = match NetnsGuard::new("fwdtest-nl") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping: cannot create network namespace: {e}");
            return;
        }
    };
    ns.run_in(|| {
        let tun = match Tun::create("fwdnl%d", 1) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("skipping: cannot create tun: {e}");
                return;
            }
        };
        let name = tun.name().to_owned();
        let mut nl = Netlink::open().unwrap();
        let idx = nl.link_index(&name).unwrap();
        assert!(idx > 1);
        assert!(matches!(
            nl.link_index("nosuchdev0"),
            Err(OsError::NoSuchLink(_))
        ));

        nl.set_mtu(idx, 1400).unwrap();
        nl.set_txqueuelen(idx, 777).unwrap();
        nl.set_link_up(idx).unwrap();
        let link = ns.ip(&["-j", "link", "show", "dev", &name]).unwrap();
        assert!(link.contains("\"mtu\":1400"), "{link}");
        assert!(link.contains("\"txqlen\":777"), "{link}");
        assert!(link.contains("\"UP\""), "{link}");

        nl.add_address(idx, ip("10.99.0.1"), 24, None).unwrap();
        nl.add_address(idx, ip("10.99.0.1"), 24, None).unwrap(); // idempotent
        nl.add_address(idx, ip("fd00::1"), 64, None).unwrap();
        nl.add_address(idx, ip("10.98.0.1"), 32, Some(ip("10.98.0.2")))
            .unwrap();
        let addrs = ns.ip(&["-j", "addr", "show", "dev", &name]).unwrap();
        assert!(
            addrs.contains("\"local\":\"10.99.0.1\",\"prefixlen\":24"),
            "{addrs}"
        );
        assert!(
            addrs.contains("\"local\":\"fd00::1\",\"prefixlen\":64"),
            "{addrs}"
        );
        assert!(
            addrs.contains("\"local\":\"10.98.0.1\",\"address\":\"10.98.0.2\""),
            "{addrs}"
        );

        nl.add_route("10.77.0.0/16".parse().unwrap(), idx, None, None)
            .unwrap();
        nl.add_route(
            "10.66.0.0/16".parse().unwrap(),
            idx,
            Some(ip("10.99.0.254")),
            Some(20),
        )
        .unwrap();
        nl.add_route("fd00:77::/48".parse().unwrap(), idx, None, Some(100))
            .unwrap();
        nl.add_route("fd00:77::/48".parse().unwrap(), idx, None, Some(100))
            .unwrap(); // idempotent
        nl.add_route(
            "0.0.0.0/0".parse().unwrap(),
            idx,
            Some(ip("10.99.0.254")),
            Some(50),
        )
        .unwrap();
        nl.add_route("::/0".parse().unwrap(), idx, Some(ip("fd00::fe")), None)
            .unwrap();
        let r4 = ns.ip(&["-j", "-4", "route", "show"]).unwrap();
        assert!(r4.contains("\"dst\":\"10.77.0.0/16\",\"dev\":\""), "{r4}");
        assert!(
            r4.contains("\"dst\":\"10.66.0.0/16\",\"gateway\":\"10.99.0.254\""),
            "{r4}"
        );
        assert!(
            r4.contains("\"dst\":\"default\",\"gateway\":\"10.99.0.254\""),
            "{r4}"
        );
        let r6 = ns.ip(&["-j", "-6", "route", "show"]).unwrap();
        assert!(r6.contains("\"dst\":\"fd00:77::/48\""), "{r6}");
        assert!(r6.contains("\"metric\":100"), "{r6}");

        assert_eq!(
            nl.default_route_v4().unwrap(),
            Some(DefaultRoute {
                gateway: Some(ip("10.99.0.254")),
                ifindex: idx,
                metric: 50
            })
        );
        let d6 = nl.default_route_v6().unwrap().unwrap();
        assert_eq!((d6.gateway, d6.ifindex), (Some(ip("fd00::fe")), idx));

        nl.del_route(
            "0.0.0.0/0".parse().unwrap(),
            idx,
            Some(ip("10.99.0.254")),
            Some(50),
        )
        .unwrap();
        nl.del_route("::/0".parse().unwrap(), idx, Some(ip("fd00::fe")), None)
            .unwrap();
        nl.del_route("10.77.0.0/16".parse().unwrap(), idx, None, None)
            .unwrap();
        nl.del_route(
            "10.66.0.0/16".parse().unwrap(),
            idx,
            Some(ip("10.99.0.254")),
            Some(20),
        )
        .unwrap();
        nl.del_route("fd00:77::/48".parse().unwrap(), idx, None, Some(100))
            .unwrap();
        nl.del_route("fd00:77::/48".parse().unwrap(), idx, None, Some(100))
            .unwrap(); // idempotent
        assert_eq!(nl.default_route_v4().unwrap(), None);
        assert_eq!(nl.default_route_v6().unwrap(), None);
        let r4 = ns.ip(&["-j", "-4", "route", "show"]).unwrap();
        assert!(
            !r4.contains("10.77.0.0") && !r4.contains("10.66.0.0"),
            "{r4}"
        );
        let r6 = ns.ip(&["-j", "-6", "route", "show"]).unwrap();
        assert!(!r6.contains("fd00:77::"), "{r6}");

        nl.del_address(idx, ip("10.99.0.1"), 24, None).unwrap();
        nl.del_address(idx, ip("fd00::1"), 64, None).unwrap();
        nl.del_address(idx, ip("10.98.0.1"), 32, Some(ip("10.98.0.2")))
            .unwrap();
        nl.del_address(idx, ip("10.99.0.1"), 24, None).unwrap(); // idempotent
        let addrs = ns.ip(&["-j", "addr", "show", "dev", &name]).unwrap();
        assert!(
            !addrs.contains("10.99.0.1")
                && !addrs.contains("fd00::1")
                && !addrs.contains("10.98.0.1"),
            "{addrs}"
        );

        nl.set_link_down(idx).unwrap();
        let link = ns.ip(&["-j", "link", "show", "dev", &name]).unwrap();
        assert!(!link.contains("\"UP\""), "{link}");

        drop(tun);
        assert!(
            matches!(nl.link_index(&name), Err(OsError::NoSuchLink(_))),
            "tun must not persist"
        );
    })
    .unwrap();
}
