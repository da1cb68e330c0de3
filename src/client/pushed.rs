//! What a client makes of a PUSH_REPLY: `pull-filter` and `route-nopull` applied, then the
//! options it acts on parsed into [`Pushed`]. Unknown or malformed options are reported, not
//! fatal, as OpenVPN does (a server may push options a client does not know).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::proto::data::Cipher;

/// `pull-filter accept|ignore|reject "text"`: the first filter whose text is a prefix of the
/// pushed option decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullFilter {
    Accept(String),
    Ignore(String),
    Reject(String),
}

/// `redirect-gateway` flags that matter on Linux.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redirect {
    pub ipv4: bool,
    pub ipv6: bool,
    /// fwd always installs the two-halves routes (`def1` style): the original default route
    /// stays and is restored by simply deleting ours.
    pub def1: bool,
    /// `local`: the server is on the local network, no host route around the tunnel.
    pub local: bool,
}

/// The pushed IPv4 interface configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfconfigV4 {
    Subnet { addr: Ipv4Addr, netmask: Ipv4Addr },
    PointToPoint { addr: Ipv4Addr, peer: Ipv4Addr },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub ifconfig: Option<IfconfigV4>,
    /// `ifconfig-ipv6 ADDR/BITS REMOTE`.
    pub ifconfig_ipv6: Option<(Ipv6Addr, u8, Ipv6Addr)>,
    pub routes: Vec<(Ipv4Net, Option<Ipv4Addr>, Option<u32>)>,
    pub routes_v6: Vec<(Ipv6Net, Option<u32>)>,
    pub route_gateway: Option<Ipv4Addr>,
    pub topology_subnet: bool,
    pub redirect: Option<Redirect>,
    pub tun_mtu: Option<u16>,
    pub peer_id: Option<u32>,
    pub cipher: Option<String>,
    pub ekm: bool,
    pub cc_exit: bool,
    pub ping: Option<u32>,
    pub ping_restart: Option<u32>,
    /// Options the client ignored, with the reason (for the log).
    pub ignored: Vec<(String, String)>,
}

/// Why a PUSH_REPLY is refused altogether.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("pushed option rejected by pull-filter: {0}")]
    Rejected(String),
}

/// The data cipher to use after a PUSH_REPLY: the pushed `cipher` if we allow it (in our
/// `data-ciphers` or equal to `data-ciphers-fallback`), else the fallback (OpenVPN 2.6 §12.2).
pub fn choose_cipher(
    allowed: &[Cipher],
    fallback: Option<Cipher>,
    pushed: &Pushed,
) -> Result<Cipher, String> {
    match &pushed.cipher {
        Some(name) => {
            let c =
                Cipher::from_name(name).ok_or(format!("server pushed unknown cipher {name}"))?;
            if allowed.contains(&c) || fallback == Some(c) {
                Ok(c)
            } else {
                Err(format!("negotiated cipher not allowed: {name}"))
            }
        }
        None => {
            fallback.ok_or("server pushed no cipher and no data-ciphers-fallback is set".into())
        }
    }
}

/// Apply `pull-filter` and `route-nopull` to the pushed option lines.
pub fn filter(
    options: &[String],
    filters: &[PullFilter],
    route_nopull: bool,
) -> Result<Vec<String>, PushError> {
    let mut out = Vec::with_capacity(options.len());
    'opts: for opt in options {
        for f in filters {
            match f {
                PullFilter::Accept(t) if opt.starts_with(t.as_str()) => break,
                PullFilter::Ignore(t) if opt.starts_with(t.as_str()) => continue 'opts,
                PullFilter::Reject(t) if opt.starts_with(t.as_str()) => {
                    return Err(PushError::Rejected(opt.clone()))
                }
                _ => {}
            }
        }
        if route_nopull {
            // OpenVPN's route-nopull withholds the OPT_P_ROUTE and OPT_P_DHCPDNS classes
            // (`pull_permission_mask`); `route-gateway` is OPT_P_ROUTE_EXTRAS and stays.
            let first = opt.split_whitespace().next().unwrap_or("");
            if matches!(
                first,
                "route"
                    | "route-ipv6"
                    | "redirect-gateway"
                    | "redirect-private"
                    | "route-metric"
                    | "block-ipv6"
                    | "dhcp-option"
                    | "dns"
                    | "block-outside-dns"
            ) {
                continue;
            }
        }
        out.push(opt.clone());
    }
    Ok(out)
}

/// Parse the (filtered) pushed options.
pub fn parse(options: &[String]) -> Pushed {
    let mut p = Pushed::default();
    let mut v4: Option<(Ipv4Addr, Ipv4Addr)> = None;
    for opt in options {
        let w: Vec<&str> = opt.split_whitespace().collect();
        let mut bad = |why: &str| p.ignored.push((opt.clone(), why.to_string()));
        match w.as_slice() {
            ["ifconfig", a, b] => match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) => v4 = Some((a, b)),
                _ => bad("bad address"),
            },
            ["ifconfig-ipv6", a, r] => match (a.parse::<Ipv6Net>(), r.parse::<Ipv6Addr>()) {
                (Ok(n), Ok(r)) if (64..=124).contains(&n.prefix_len()) => {
                    p.ifconfig_ipv6 = Some((n.addr(), n.prefix_len(), r))
                }
                (Ok(_), Ok(_)) => bad("prefix length must be 64..124"),
                _ => bad("bad address"),
            },
            // A route around the tunnel needs the original gateway; fwd does not install
            // those rather than wrongly sending the traffic into the tunnel.
            ["route", _, _, "net_gateway", ..] | ["route-ipv6", _, "net_gateway", ..] => {
                bad("net_gateway routes are not applied by fwd")
            }
            ["route", net, rest @ ..] => {
                let mask = rest.first().copied().unwrap_or("255.255.255.255");
                // `vpn_gateway`, `default` or an address: all mean "into the tunnel" on tun.
                let gw = rest.get(1).and_then(|g| g.parse().ok());
                let metric = rest.get(2).and_then(|m| m.parse().ok());
                match (net.parse::<Ipv4Addr>(), mask.parse::<Ipv4Addr>()) {
                    (Ok(n), Ok(m)) => match Ipv4Net::with_netmask(n, m) {
                        Ok(net) => p.routes.push((net.trunc(), gw, metric)),
                        Err(_) => bad("bad netmask"),
                    },
                    _ => bad("bad route"),
                }
            }
            ["route-ipv6", net, rest @ ..] => match net.parse::<Ipv6Net>() {
                Ok(n) => p
                    .routes_v6
                    .push((n.trunc(), rest.get(1).and_then(|m| m.parse().ok()))),
                Err(_) => bad("bad prefix"),
            },
            ["route-gateway", gw] => match gw.parse() {
                Ok(g) => p.route_gateway = Some(g),
                Err(_) => bad("bad gateway (dhcp is for tap)"),
            },
            ["topology", t] => p.topology_subnet = *t == "subnet",
            ["redirect-gateway", flags @ ..] => {
                let mut r = Redirect {
                    ipv4: true,
                    ..Redirect::default()
                };
                for f in flags {
                    match *f {
                        "def1" => r.def1 = true,
                        "ipv6" => r.ipv6 = true,
                        "!ipv4" => r.ipv4 = false,
                        "local" => r.local = true,
                        _ => {}
                    }
                }
                p.redirect = Some(r);
            }
            ["tun-mtu", n] => match n.parse() {
                Ok(n) => p.tun_mtu = Some(n),
                Err(_) => bad("bad mtu"),
            },
            ["peer-id", n] => match n.parse::<u32>() {
                Ok(n) if n < 0x00FF_FFFF => p.peer_id = Some(n),
                _ => bad("bad peer-id"),
            },
            ["cipher", c] => p.cipher = Some(c.to_string()),
            ["key-derivation", "tls-ekm"] => p.ekm = true,
            ["protocol-flags", flags @ ..] => {
                for f in flags {
                    match *f {
                        "tls-ekm" => p.ekm = true,
                        "cc-exit" => p.cc_exit = true,
                        _ => {}
                    }
                }
            }
            ["ping", n] => p.ping = n.parse().ok(),
            ["ping-restart", n] => p.ping_restart = n.parse().ok(),
            ["tun-ipv6"] | ["push-continuation", _] => {}
            [name, ..] => bad(&format!("{name}: not applied by fwd")),
            [] => {}
        }
    }
    p.ifconfig = v4.map(|(addr, b)| {
        if p.topology_subnet {
            IfconfigV4::Subnet { addr, netmask: b }
        } else {
            IfconfigV4::PointToPoint { addr, peer: b }
        }
    });
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_the_spec_push_reply() {
        let opts = s(&[
            "route-ipv6 2001:db8:100::/48",
            "redirect-gateway def1 ipv6",
            "tun-ipv6",
            "route-gateway 10.8.0.1",
            "topology subnet",
            "ping 10",
            "ping-restart 60",
            "ifconfig-ipv6 2001:db8:0:123::1000/64 2001:db8:0:123::1",
            "ifconfig 10.8.0.2 255.255.255.0",
            "peer-id 0",
            "cipher AES-256-GCM",
            "protocol-flags cc-exit tls-ekm dyn-tls-crypt",
            "tun-mtu 1500",
        ]);
        let p = parse(&opts);
        assert_eq!(
            p.ifconfig,
            Some(IfconfigV4::Subnet {
                addr: "10.8.0.2".parse().unwrap(),
                netmask: "255.255.255.0".parse().unwrap()
            })
        );
        assert_eq!(
            p.ifconfig_ipv6,
            Some((
                "2001:db8:0:123::1000".parse().unwrap(),
                64,
                "2001:db8:0:123::1".parse().unwrap()
            ))
        );
        assert_eq!(
            p.routes_v6,
            vec![("2001:db8:100::/48".parse().unwrap(), None)]
        );
        assert_eq!(
            p.redirect,
            Some(Redirect {
                ipv4: true,
                ipv6: true,
                def1: true,
                local: false
            })
        );
        assert_eq!(p.peer_id, Some(0));
        assert!(p.ekm && p.cc_exit);
        assert_eq!(
            (p.ping, p.ping_restart, p.tun_mtu),
            (Some(10), Some(60), Some(1500))
        );
        assert!(p.ignored.is_empty(), "{:?}", p.ignored);
    }

    #[test]
    fn net30_ifconfig_and_bad_prefix() {
        let p = parse(&s(&[
            "ifconfig 10.8.0.6 10.8.0.5",
            "ifconfig-ipv6 fd00::2/48 fd00::1",
        ]));
        assert!(matches!(p.ifconfig, Some(IfconfigV4::PointToPoint { .. })));
        assert_eq!(p.ifconfig_ipv6, None);
        assert_eq!(p.ignored.len(), 1);
    }

    #[test]
    fn redirect_gateway_flags() {
        let p = parse(&s(&["redirect-gateway !ipv4 ipv6 local bypass-dhcp"]));
        assert_eq!(
            p.redirect,
            Some(Redirect {
                ipv4: false,
                ipv6: true,
                def1: false,
                local: true
            })
        );
        assert_eq!(
            parse(&s(&["redirect-gateway"]))
                .redirect
                .map(|r| (r.ipv4, r.ipv6)),
            Some((true, false))
        );
    }

    #[test]
    fn route_nopull_keeps_interface_and_route_gateway() {
        let opts = s(&[
            "redirect-gateway def1",
            "route-gateway 10.8.0.1",
            "ifconfig 10.8.0.2 255.255.255.0",
            "dns server 1 address 10.8.0.1",
            "route-metric 5",
            "peer-id 3",
        ]);
        assert_eq!(
            filter(&opts, &[], true).unwrap(),
            s(&[
                "route-gateway 10.8.0.1",
                "ifconfig 10.8.0.2 255.255.255.0",
                "peer-id 3"
            ])
        );
    }

    #[test]
    fn route_forms() {
        let p = parse(&s(&[
            "route 10.1.0.0 255.255.0.0 vpn_gateway 5",
            "route 192.0.2.7",
            "route 10.2.0.0 255.255.0.0 net_gateway",
            "route-ipv6 fd00:5::/64 fd00:8::1 7",
            "route-ipv6 fd00:6::/64 net_gateway",
            "route 10.3.0.0 255.0.255.0",
        ]));
        assert_eq!(
            p.routes,
            vec![
                ("10.1.0.0/16".parse().unwrap(), None, Some(5)),
                ("192.0.2.7/32".parse().unwrap(), None, None)
            ]
        );
        assert_eq!(p.routes_v6, vec![("fd00:5::/64".parse().unwrap(), Some(7))]);
        assert_eq!(p.ignored.len(), 3, "{:?}", p.ignored);
    }

    #[test]
    fn pull_filter_and_route_nopull() {
        let opts = s(&[
            "route-ipv6 fd00:1::/64",
            "route 10.9.0.0 255.255.0.0",
            "ping 10",
            "dhcp-option DNS 10.8.0.1",
        ]);
        let f = vec![
            PullFilter::Ignore("route-ipv6".into()),
            PullFilter::Accept("route ".into()),
        ];
        assert_eq!(
            filter(&opts, &f, false).unwrap(),
            s(&[
                "route 10.9.0.0 255.255.0.0",
                "ping 10",
                "dhcp-option DNS 10.8.0.1"
            ])
        );
        assert_eq!(filter(&opts, &[], true).unwrap(), s(&["ping 10"]));
        let r = vec![PullFilter::Reject("dhcp-option".into())];
        assert!(matches!(
            filter(&opts, &r, false),
            Err(PushError::Rejected(_))
        ));
    }

    #[test]
    fn choose_cipher_follows_data_ciphers_and_fallback() {
        let allowed = [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305];
        let with = |c: Option<&str>| Pushed {
            cipher: c.map(String::from),
            ..Pushed::default()
        };
        assert_eq!(
            choose_cipher(&allowed, None, &with(Some("AES-256-GCM"))),
            Ok(Cipher::Aes256Gcm)
        );
        assert!(choose_cipher(&allowed, None, &with(Some("AES-128-GCM"))).is_err());
        assert_eq!(
            choose_cipher(
                &allowed,
                Some(Cipher::Aes128Gcm),
                &with(Some("AES-128-GCM"))
            ),
            Ok(Cipher::Aes128Gcm)
        );
        assert!(choose_cipher(&allowed, None, &with(Some("BF-CBC"))).is_err());
        assert!(choose_cipher(&allowed, None, &with(None)).is_err());
        assert_eq!(
            choose_cipher(&allowed, Some(Cipher::Aes256Gcm), &with(None)),
            Ok(Cipher::Aes256Gcm)
        );
    }
}
