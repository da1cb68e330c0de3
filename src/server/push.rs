//! Building one client's PUSH_REPLY option list the way an OpenVPN 2.6 server does: the global
//! push list (after the client's `push-reset`/`push-remove`), the client's own `push` lines, minus
//! routes equal to the client's own iroutes, then the generated tail (`ifconfig-ipv6`,
//! `ifconfig`, `peer-id`, `cipher`, protocol flags, `tun-mtu`).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The client-specific inputs of a PUSH_REPLY.
#[derive(Clone, Debug, Default)]
pub struct ClientPush<'a> {
    pub push_reset: bool,
    pub push_remove: &'a [String],
    pub push: &'a [String],
    pub iroutes: &'a [Ipv4Net],
    pub iroutes_v6: &'a [Ipv6Net],
}

/// The global list with the client's `push-reset`, `push-remove` and `push` applied, and pushed
/// routes that equal one of the client's own iroutes left out.
pub fn client_push_list(global: &[String], client: &ClientPush<'_>) -> Vec<String> {
    let base: &[String] = if client.push_reset { &[] } else { global };
    base.iter()
        .filter(|opt| !client.push_remove.iter().any(|r| removes(r, opt)))
        .chain(client.push.iter())
        .filter(|opt| !is_own_iroute(opt, client))
        .cloned()
        .collect()
}

/// OpenVPN's `push-remove X` drops every pushed option whose text starts with X as whole words.
fn removes(pattern: &str, option: &str) -> bool {
    let p: Vec<&str> = pattern.split_whitespace().collect();
    let o: Vec<&str> = option.split_whitespace().collect();
    !p.is_empty() && o.len() >= p.len() && o[..p.len()] == p[..]
}

fn is_own_iroute(option: &str, client: &ClientPush<'_>) -> bool {
    let mut words = option.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("route-ipv6"), Some(net), _) => net
            .parse::<Ipv6Net>()
            .is_ok_and(|n| client.iroutes_v6.iter().any(|i| i.trunc() == n.trunc())),
        (Some("route"), Some(net), mask) => {
            let mask = mask.unwrap_or("255.255.255.255");
            match (net.parse::<Ipv4Addr>(), mask.parse::<Ipv4Addr>()) {
                (Ok(n), Ok(m)) => Ipv4Net::with_netmask(n, m)
                    .is_ok_and(|n| client.iroutes.iter().any(|i| i.trunc() == n.trunc())),
                _ => false,
            }
        }
        _ => false,
    }
}

/// How a client's IPv4 tunnel address is pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushedV4 {
    /// `topology subnet`: `ifconfig ADDR NETMASK`.
    Subnet { addr: Ipv4Addr, netmask: Ipv4Addr },
    /// net30/p2p: `ifconfig ADDR PEER`.
    PointToPoint { addr: Ipv4Addr, peer: Ipv4Addr },
}

impl PushedV4 {
    pub fn addr(&self) -> Ipv4Addr {
        match *self {
            PushedV4::Subnet { addr, .. } | PushedV4::PointToPoint { addr, .. } => addr,
        }
    }
}

/// A client's IPv6 tunnel address as pushed: `ifconfig-ipv6 ADDR/BITS REMOTE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushedV6 {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    pub remote: Ipv6Addr,
}

/// Routes owned by a client inside fwd: its addresses as host routes and its iroutes.
pub fn client_routes(
    v4: Option<PushedV4>,
    v6: Option<PushedV6>,
    iroutes: &[Ipv4Net],
    iroutes_v6: &[Ipv6Net],
) -> Vec<IpNet> {
    let mut r = Vec::new();
    if let Some(v4) = v4 {
        r.push(IpNet::V4(Ipv4Net::from(v4.addr())));
    }
    if let Some(v6) = v6 {
        r.push(IpNet::V6(Ipv6Net::from(v6.addr)));
    }
    r.extend(iroutes.iter().map(|n| IpNet::V4(n.trunc())));
    r.extend(iroutes_v6.iter().map(|n| IpNet::V6(n.trunc())));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn push_reset_remove_and_own_iroute() {
        let global = s(&[
            "route-ipv6 fd00:99::/64",
            "route 192.168.5.0 255.255.255.0",
            "redirect-gateway def1 ipv6",
            "ping 10",
        ]);
        let remove = s(&["redirect-gateway"]);
        let own = s(&["dhcp-option DNS 10.8.0.1"]);
        let iroutes = ["192.168.5.0/24".parse().unwrap()];
        let iroutes_v6 = ["fd00:99::/64".parse().unwrap()];
        let c = ClientPush {
            push_reset: false,
            push_remove: &remove,
            push: &own,
            iroutes: &iroutes,
            iroutes_v6: &iroutes_v6,
        };
        assert_eq!(
            client_push_list(&global, &c),
            s(&["ping 10", "dhcp-option DNS 10.8.0.1"])
        );
        let reset = ClientPush {
            push_reset: true,
            push: &own,
            ..Default::default()
        };
        assert_eq!(client_push_list(&global, &reset), own);
        // Another client without those iroutes gets the routes.
        let other = ClientPush::default();
        assert_eq!(client_push_list(&global, &other), global);
    }

    #[test]
    fn push_remove_matches_whole_words_only() {
        assert!(removes("route", "route 10.0.0.0 255.0.0.0"));
        assert!(!removes("route", "route-ipv6 fd00::/64"));
        assert!(removes("route-ipv6", "route-ipv6 fd00::/64"));
        assert!(!removes("", "ping 10"));
    }
}
