//! Macro expansion exactly as OpenVPN 2.6 (server-ipv6.md §2–§4).
//!
//! Every expected value below was compared with the real binary: `openvpn --config t.conf
//! --dev null --dev-type tun --verb 7` (OpenVPN 2.6.14, "Current Parameter Settings":
//! ifconfig_local, ifconfig_remote_netmask, ifconfig_ipv6_*, ifconfig_pool_*,
//! ifconfig_ipv6_pool_*, route_default_gateway, push_entry lines and the `route` list).

include!("config_common.rs");

use fwd::config::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or(Ipv6Addr::UNSPECIFIED)
}

fn server(extra: &str) -> Config {
    ok(&format!("{}{extra}\n", server_base())).config
}

#[test]
fn server_subnet() {
    // openvpn: topology=3, ifconfig_local 10.8.0.1, netmask 255.255.255.0, pool .2-.254 /24,
    // route_default_gateway 10.8.0.2, push route-gateway 10.8.0.1, topology subnet.
    let c = server("topology subnet\nserver 10.8.0.0 255.255.255.0");
    assert_eq!(c.role, Role::Server);
    assert_eq!(c.topology, Topology::Subnet);
    assert_eq!(
        c.ifconfig,
        Some(IfconfigV4 {
            local: Ipv4Addr::new(10, 8, 0, 1),
            remote_netmask: Ipv4Addr::new(255, 255, 255, 0)
        })
    );
    assert_eq!(
        c.pool_v4,
        Some(PoolV4Spec {
            start: Ipv4Addr::new(10, 8, 0, 2),
            end: Ipv4Addr::new(10, 8, 0, 254),
            netmask: Some(Ipv4Addr::new(255, 255, 255, 0))
        })
    );
    assert_eq!(
        c.route_gateway,
        Some(RouteGateway::Addr(Ipv4Addr::new(10, 8, 0, 2)))
    );
    assert_eq!(c.push, ["route-gateway 10.8.0.1", "topology subnet"]);
    assert!(c.routes.is_empty());
    assert!(c.ifconfig_ipv6.is_none() && c.pool_v6.is_none());
    // An explicit route-gateway is kept.
    let c = server("topology subnet\nroute-gateway 10.8.0.99\nserver 10.8.0.0 255.255.255.0");
    assert_eq!(
        c.route_gateway,
        Some(RouteGateway::Addr(Ipv4Addr::new(10, 8, 0, 99)))
    );
}

#[test]
fn server_net30_default() {
    // openvpn: topology=1, ifconfig 10.8.0.1 10.8.0.2, pool 10.8.0.4-10.8.0.251 (netmask
    // 0.0.0.0), route 10.8.0.0/255.255.255.0, push "route 10.8.0.1", "topology net30".
    let l = ok(&format!("{}server 10.8.0.0 255.255.255.0\n", server_base()));
    let c = &l.config;
    assert_eq!(c.topology, Topology::Net30);
    assert_eq!(
        c.ifconfig,
        Some(IfconfigV4 {
            local: Ipv4Addr::new(10, 8, 0, 1),
            remote_netmask: Ipv4Addr::new(10, 8, 0, 2)
        })
    );
    assert_eq!(
        c.pool_v4,
        Some(PoolV4Spec {
            start: Ipv4Addr::new(10, 8, 0, 4),
            end: Ipv4Addr::new(10, 8, 0, 251),
            netmask: None
        })
    );
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].net.to_string(), "10.8.0.0/24");
    assert_eq!(c.push, ["route 10.8.0.1", "topology net30"]);
    assert_eq!(c.route_gateway, None);
    // The net30 default surprise is warned about, at the server line.
    assert!(
        l.warnings.iter().any(|w| w
            .to_string()
            .starts_with("test.conf:6: server: topology net30")
            && w.message.contains("default")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn server_net30_slash29_pool_ends_at_broadcast() {
    // openvpn: ifconfig_pool_start 10.8.0.4, ifconfig_pool_end 10.8.0.7 for a /29.
    let c = server("server 10.8.0.0 255.255.255.248");
    assert_eq!(
        c.pool_v4.map(|p| (p.start, p.end)),
        Some((Ipv4Addr::new(10, 8, 0, 4), Ipv4Addr::new(10, 8, 0, 7)))
    );
}

#[test]
fn server_p2p() {
    // openvpn (p2p, no client-to-client): only push "topology p2p";
    // with client-to-client: push "route 10.8.0.0 255.255.255.0", "topology p2p".
    let c = server("topology p2p\nserver 10.8.0.0 255.255.255.0");
    assert_eq!(c.topology, Topology::P2p);
    assert_eq!(
        c.ifconfig.map(|i| i.remote_netmask),
        Some(Ipv4Addr::new(10, 8, 0, 2))
    );
    assert_eq!(
        c.pool_v4.map(|p| (p.start, p.end)),
        Some((Ipv4Addr::new(10, 8, 0, 4), Ipv4Addr::new(10, 8, 0, 251)))
    );
    assert_eq!(c.push, ["topology p2p"]);
    let c = server("topology p2p\nclient-to-client\nserver 10.8.0.0 255.255.255.0");
    assert_eq!(c.push, ["route 10.8.0.0 255.255.255.0", "topology p2p"]);
    let c = server("client-to-client\nserver 10.8.0.0 255.255.255.0");
    assert_eq!(c.push, ["route 10.8.0.0 255.255.255.0", "topology net30"]);
}

#[test]
fn server_nopool() {
    let c = server("topology subnet\nserver 10.8.0.0 255.255.255.0 nopool\nifconfig-pool 10.8.0.100 10.8.0.200 255.255.255.0");
    assert_eq!(
        c.pool_v4.map(|p| p.start),
        Some(Ipv4Addr::new(10, 8, 0, 100))
    );
    assert_eq!(
        c.ifconfig.map(|i| i.local),
        Some(Ipv4Addr::new(10, 8, 0, 1))
    );
}

#[test]
fn server_ipv6_slash64() {
    // openvpn: ifconfig_ipv6_local fd00:8::1, netbits 64, remote fd00:8::2,
    // ifconfig_ipv6_pool_base fd00:8::1000 /64, push_entry 'tun-ipv6'.
    let c = server("topology subnet\nserver 10.8.0.0 255.255.255.0\nserver-ipv6 fd00:8::/64\nkeepalive 10 60\npush \"route-ipv6 fd00:100::/48\"");
    let i6 = c.ifconfig_ipv6.unwrap_or(IfconfigV6 {
        local: "::/64".parse().unwrap_or_default(),
        remote: Ipv6Addr::UNSPECIFIED,
    });
    assert_eq!(i6.local.to_string(), "fd00:8::1/64");
    assert_eq!(i6.remote, v6("fd00:8::2"));
    assert_eq!(
        c.pool_v6,
        Some(PoolV6Spec {
            base: v6("fd00:8::1000"),
            prefix_len: 64
        })
    );
    assert!(c.tun_ipv6);
    // Exact push order from openvpn --verb 7 (server-ipv6.md §2.4).
    assert_eq!(
        c.push,
        [
            "route-ipv6 fd00:100::/48",
            "tun-ipv6",
            "route-gateway 10.8.0.1",
            "topology subnet",
            "ping 10",
            "ping-restart 60"
        ]
    );
    // keepalive 10 60 on a server: ping 10, ping-restart 120 locally.
    assert_eq!((c.ping, c.ping_restart), (Some(10), Some(120)));
    assert!(render_effective(&c).contains("ifconfig-ipv6 fd00:8::1/64 fd00:8::2\n"));
}

#[test]
fn server_ipv6_small_nets() {
    // openvpn: server-ipv6 fd00:8::/112 → pool base fd00:8::2 /112.
    for bits in [112u8, 120, 124] {
        let c = server(&format!("server-ipv6 fd00:8::/{bits}"));
        assert_eq!(
            c.pool_v6,
            Some(PoolV6Spec {
                base: v6("fd00:8::2"),
                prefix_len: bits
            })
        );
        assert_eq!(c.ifconfig_ipv6.map(|i| i.local.prefix_len()), Some(bits));
    }
    // /111 is still "large": ::1000.
    let c = server("server-ipv6 fd00:8::/111");
    assert_eq!(c.pool_v6.map(|p| p.base), Some(v6("fd00:8::1000")));
    // Pool sizes (pool.c): /112 from ::2 → 65534; /124 from ::2 → 14; /64 → 65536.
    assert_eq!(
        PoolV6Spec {
            base: v6("fd00:8::2"),
            prefix_len: 112
        }
        .first_and_size(),
        (v6("fd00:8::2"), 65534)
    );
    assert_eq!(
        PoolV6Spec {
            base: v6("fd00:8::2"),
            prefix_len: 124
        }
        .first_and_size(),
        (v6("fd00:8::2"), 14)
    );
    assert_eq!(
        PoolV6Spec {
            base: v6("fd00:8::1000"),
            prefix_len: 64
        }
        .first_and_size(),
        (v6("fd00:8::1000"), 65536)
    );
    // Host part zero → starts at +1.
    assert_eq!(
        PoolV6Spec {
            base: v6("fd00:8::"),
            prefix_len: 64
        }
        .first_and_size()
        .0,
        v6("fd00:8::1")
    );
    assert_eq!(
        PoolV6Spec {
            base: v6("fd00:8::"),
            prefix_len: 120
        }
        .first_and_size(),
        (v6("fd00:8::1"), 255)
    );
}

#[test]
fn server_ipv6_only() {
    // openvpn (server-ipv6 alone, topology subnet): no IPv4 ifconfig/pool, push only
    // 'tun-ipv6' (no topology push without `server`).
    let l = ok(&format!(
        "{}topology subnet\nserver-ipv6 fd00:8::/64\nkeepalive 10 60\n",
        server_base()
    ));
    let c = &l.config;
    assert_eq!(c.role, Role::Server);
    assert!(c.ifconfig.is_none() && c.pool_v4.is_none());
    assert!(c.ifconfig_ipv6.is_some() && c.pool_v6.is_some());
    assert_eq!(c.push, ["tun-ipv6", "ping 10", "ping-restart 60"]);
    roundtrip(&l);
}

#[test]
fn server_ipv6_host_bits_follow_openvpn() {
    // openvpn: server-ipv6 fd00:8::5/64 → local fd00:8::6, remote fd00:8::7, pool fd00:8::1005.
    let l = ok(&format!("{}server-ipv6 fd00:8::5/64\n", server_base()));
    let c = &l.config;
    assert_eq!(
        c.ifconfig_ipv6.map(|i| i.local.addr()),
        Some(v6("fd00:8::6"))
    );
    assert_eq!(c.ifconfig_ipv6.map(|i| i.remote), Some(v6("fd00:8::7")));
    assert_eq!(c.pool_v6.map(|p| p.base), Some(v6("fd00:8::1005")));
    assert!(l
        .warnings
        .iter()
        .any(|w| w.directive == "server-ipv6" && w.message.contains("host bits")));
}

#[test]
fn explicit_pools() {
    let c = server("mode server\ntls-server\ntopology subnet\nifconfig 10.9.0.1 255.255.255.0\nifconfig-pool 10.9.0.50 10.9.0.99\nifconfig-ipv6 fd00:9::1/64 fd00:9::2\nifconfig-ipv6-pool fd00:9::/64");
    assert_eq!(
        c.pool_v4.map(|p| (p.start, p.end, p.netmask)),
        Some((
            Ipv4Addr::new(10, 9, 0, 50),
            Ipv4Addr::new(10, 9, 0, 99),
            None
        ))
    );
    assert_eq!(
        c.pool_v6.map(|p| p.first_and_size()),
        Some((v6("fd00:9::1"), 65536))
    );
    assert!(c.push.is_empty());
    // route-ipv6 without /bits is /64 (openvpn: add_route_ipv6(fd00:77::/64 ...)).
    let c =
        server("mode server\ntls-server\nifconfig-ipv6 fd00:9::1 fd00:9::2\nroute-ipv6 fd00:77::");
    assert_eq!(c.routes_v6[0].net.to_string(), "fd00:77::/64");
    assert_eq!(
        c.ifconfig_ipv6.map(|i| i.local.to_string()),
        Some("fd00:9::1/64".into())
    );
}

#[test]
fn client_macro_and_keepalive() {
    let l = ok(&format!("{}keepalive 10 60\n", client_base()));
    let c = &l.config;
    assert_eq!(c.role, Role::Client);
    assert!(c.pull);
    // Client keepalive: no doubling, no push.
    assert_eq!((c.ping, c.ping_restart), (Some(10), Some(60)));
    assert!(c.push.is_empty());
    roundtrip(&l);
}

#[test]
fn expansions_roundtrip() {
    for extra in [
        "server 10.8.0.0 255.255.255.0",
        "topology subnet\nserver 10.8.0.0 255.255.255.0\nserver-ipv6 fd00:8::/64\nkeepalive 10 60",
        "topology p2p\nclient-to-client\nserver 10.8.0.0 255.255.255.0",
        "server-ipv6 fd00:8::/112",
        "server 10.8.0.0 255.255.255.248\nserver-ipv6 fd00:8::/124",
    ] {
        roundtrip(&ok(&format!("{}{extra}\n", server_base())));
    }
}
