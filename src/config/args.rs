//! Typed argument parsers shared by main-config and ccd directives.
//!
//! Each returns an [`ErrorKind`] describing what was wrong with the value; callers attach the
//! location and directive name. IPv6 `ADDR[/BITS]` defaults BITS to 64 like OpenVPN 2.6's
//! `get_ipv6_addr` (verified with the 2.6.14 binary: `route-ipv6 fd00:77::` → /64).

use super::error::ErrorKind;
use super::lexer::Line;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Check the number of arguments (after the name) is within `min..=max`.
pub fn nargs(line: &Line, min: usize, max: usize) -> Result<&[String], ErrorKind> {
    let a = line.args();
    if a.len() < min || a.len() > max {
        let expected = match (min, max) {
            (0, 0) => "no arguments".to_string(),
            (a, b) if a == b => format!("{a} argument(s)"),
            (a, usize::MAX) => format!("at least {a} argument(s)"),
            (a, b) => format!("{a} to {b} arguments"),
        };
        return Err(ErrorKind::ArgCount {
            expected,
            got: a.len(),
        });
    }
    Ok(a)
}

/// Argument `i`, or an error (callers have checked the count, this keeps it panic-free).
pub fn arg(a: &[String], i: usize) -> Result<&str, ErrorKind> {
    a.get(i)
        .map(String::as_str)
        .ok_or_else(|| ErrorKind::Invalid(format!("missing argument {}", i + 1)))
}

pub fn u32_arg(s: &str, what: &str) -> Result<u32, ErrorKind> {
    s.parse::<u32>().map_err(|_| {
        ErrorKind::Invalid(format!("{what} must be a non-negative integer, got `{s}`"))
    })
}

pub fn u64_arg(s: &str, what: &str) -> Result<u64, ErrorKind> {
    s.parse::<u64>().map_err(|_| {
        ErrorKind::Invalid(format!("{what} must be a non-negative integer, got `{s}`"))
    })
}

pub fn port_arg(s: &str) -> Result<u16, ErrorKind> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ErrorKind::Invalid(format!(
            "`{s}` is not a valid port (1..65535)"
        ))),
    }
}

pub fn ipv4_arg(s: &str, what: &str) -> Result<Ipv4Addr, ErrorKind> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| ErrorKind::Invalid(format!("{what} `{s}` is not an IPv4 address")))
}

pub fn ipv6_arg(s: &str, what: &str) -> Result<Ipv6Addr, ErrorKind> {
    s.parse::<Ipv6Addr>()
        .map_err(|_| ErrorKind::Invalid(format!("{what} `{s}` is not an IPv6 address")))
}

/// Contiguous IPv4 netmask → prefix length.
pub fn netmask_arg(s: &str) -> Result<(Ipv4Addr, u8), ErrorKind> {
    let m = ipv4_arg(s, "netmask")?;
    let bits = u32::from(m);
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err(ErrorKind::Invalid(format!(
            "netmask `{s}` is not contiguous"
        )));
    }
    Ok((m, ones as u8))
}

/// `NETWORK [NETMASK]` → Ipv4Net as written (host bits kept). Netmask default /32.
pub fn ipv4_net_args(net: &str, mask: Option<&str>) -> Result<Ipv4Net, ErrorKind> {
    let addr = ipv4_arg(net, "network")?;
    let len = match mask {
        Some(m) => netmask_arg(m)?.1,
        None => 32,
    };
    Ipv4Net::new(addr, len).map_err(|e| ErrorKind::Invalid(e.to_string()))
}

/// `ADDR[/BITS]` IPv6 with OpenVPN's default of 64 bits.
pub fn ipv6_net_arg(s: &str) -> Result<Ipv6Net, ErrorKind> {
    let (a, bits) = match s.split_once('/') {
        Some((a, b)) => {
            let bits = b.parse::<u8>().ok().filter(|b| *b <= 128).ok_or_else(|| {
                ErrorKind::Invalid(format!("`{s}`: prefix length must be 0..128"))
            })?;
            (a, bits)
        }
        None => (s, 64),
    };
    let addr = ipv6_arg(a, "address")?;
    Ipv6Net::new(addr, bits).map_err(|e| ErrorKind::Invalid(e.to_string()))
}

pub fn bool_flag(line: &Line) -> Result<bool, ErrorKind> {
    nargs(line, 0, 0)?;
    Ok(true)
}

/// Netmask for an IPv4 prefix length.
pub fn mask_of(len: u8) -> Ipv4Addr {
    let l = u32::from(len.min(32));
    Ipv4Addr::from(if l == 0 { 0 } else { u32::MAX << (32 - l) })
}

/// IPv4 address arithmetic that never overflows (saturates).
pub fn v4_add(a: Ipv4Addr, k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a).saturating_add(k))
}

pub fn v4_sub(a: Ipv4Addr, k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a).saturating_sub(k))
}

pub fn v6_add(a: Ipv6Addr, k: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(a).wrapping_add(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netmasks() {
        assert_eq!(netmask_arg("255.255.255.0").ok().map(|x| x.1), Some(24));
        assert_eq!(netmask_arg("0.0.0.0").ok().map(|x| x.1), Some(0));
        assert_eq!(netmask_arg("255.255.255.255").ok().map(|x| x.1), Some(32));
        assert!(netmask_arg("255.0.255.0").is_err());
        assert!(netmask_arg("banana").is_err());
    }

    #[test]
    fn ipv6_nets() {
        assert_eq!(
            ipv6_net_arg("fd00::/48").ok().map(|n| n.prefix_len()),
            Some(48)
        );
        assert_eq!(
            ipv6_net_arg("fd00::").ok().map(|n| n.prefix_len()),
            Some(64)
        );
        assert!(ipv6_net_arg("fd00::/129").is_err());
        assert!(ipv6_net_arg("10.0.0.0/8").is_err());
        assert!(ipv6_net_arg("fd00::/x").is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(v4_add(Ipv4Addr::BROADCAST, 5), Ipv4Addr::BROADCAST);
        assert_eq!(v4_sub(Ipv4Addr::UNSPECIFIED, 5), Ipv4Addr::UNSPECIFIED);
        assert_eq!(mask_of(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(mask_of(0), Ipv4Addr::UNSPECIFIED);
    }
}
