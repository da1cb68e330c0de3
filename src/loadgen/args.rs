//! Command line of `fwd-loadgen`. Every number is range-checked here, so a run is always
//! bounded (duration and drain are capped) and never asks for absurd socket counts.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::Options;

/// Longest run we accept: a load generator that forgets to stop is a denial of service.
pub const MAX_DURATION_S: f64 = 3600.0;

pub const USAGE: &str = "\
usage: fwd-loadgen --config CLIENT.ovpn [options]

Runs N simulated OpenVPN clients from one process against one server (fwd or openvpn).
Each client handshakes (real TLS + tls-crypt/tls-auth as the profile says), takes its
pushed IPv4/IPv6 address, then sends encrypted ICMP echo requests (IPv4 and IPv6
alternating) to the server's tunnel address and counts the echo replies.

  --config FILE      client profile (OpenVPN syntax); its first `remote` is the server
  --server ADDR:PORT server address instead of the profile's remote ([v6]:port for IPv6)
  --clients N        simulated clients (default 10)
  --rate R           new handshakes per second, all threads together (default 100)
  --duration S       total run time in seconds (default 10, max 3600); handshakes start and
                     data flows only within it
  --pps P            echo requests per second per connected client (default 1; 0 = none)
  --size B           inner packet size in bytes, IP header included (default 100, 68..1500)
  --threads T        worker threads (default 1)
  --drain S          after the run, wait this long for replies in flight (default 1)
  --target4 IP       ping this IPv4 address instead of the pushed route-gateway
  --target6 IP       ping this IPv6 address instead of the pushed ifconfig-ipv6 remote
  --verb N           log level as in openvpn (default 1)

Output: a summary and one `RESULT key=value ...` line for scripts.
Exit status: 0 run completed (even with failures), 1 setup error, 2 bad arguments.";

/// Parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub config: PathBuf,
    pub server: Option<SocketAddr>,
    pub clients: u32,
    pub rate: f64,
    pub duration: Duration,
    pub pps: f64,
    pub size: usize,
    pub threads: usize,
    pub drain: Duration,
    pub target_v4: Option<Ipv4Addr>,
    pub target_v6: Option<Ipv6Addr>,
    pub verb: u32,
}

impl Args {
    /// The run options once the server address is known.
    pub fn options(&self, server: SocketAddr) -> Options {
        Options {
            server,
            clients: self.clients,
            rate: self.rate,
            duration: self.duration,
            pps: self.pps,
            size: self.size,
            threads: self.threads,
            drain: self.drain,
            target_v4: self.target_v4,
            target_v6: self.target_v6,
        }
    }
}

/// `Ok(None)`: help was asked for.
pub fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut config = None;
    let mut a = Args {
        config: PathBuf::new(),
        server: None,
        clients: 10,
        rate: 100.0,
        duration: Duration::from_secs(10),
        pps: 1.0,
        size: 100,
        threads: 1,
        drain: Duration::from_secs(1),
        target_v4: None,
        target_v6: None,
        verb: 1,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--server" => a.server = Some(parse_num(flag, value()?)?),
            "--clients" => a.clients = ranged(flag, value()?, 1.0, 1_000_000.0)? as u32,
            "--rate" => a.rate = ranged(flag, value()?, 0.001, 1_000_000.0)?,
            "--duration" => {
                a.duration = Duration::from_secs_f64(ranged(flag, value()?, 0.1, MAX_DURATION_S)?)
            }
            "--pps" => a.pps = ranged(flag, value()?, 0.0, 100_000.0)?,
            "--size" => a.size = ranged(flag, value()?, 68.0, 1500.0)? as usize,
            "--threads" => a.threads = ranged(flag, value()?, 1.0, 256.0)? as usize,
            "--drain" => a.drain = Duration::from_secs_f64(ranged(flag, value()?, 0.0, 60.0)?),
            "--target4" => a.target_v4 = Some(parse_num(flag, value()?)?),
            "--target6" => a.target_v6 = Some(parse_num(flag, value()?)?),
            "--verb" => a.verb = ranged(flag, value()?, 0.0, 11.0)? as u32,
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    a.config = config.ok_or("--config CLIENT.ovpn is required")?;
    Ok(Some(a))
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{flag}: cannot parse `{v}`"))
}

fn ranged(flag: &str, v: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let x: f64 = parse_num(flag, v)?;
    if !(lo..=hi).contains(&x) {
        return Err(format!("{flag} must be within {lo}..={hi}, got {v}"));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn full_command_line() {
        let a = parse(&v(&[
            "--config",
            "c.ovpn",
            "--clients",
            "1000",
            "--rate",
            "200",
            "--duration",
            "15",
            "--pps",
            "10",
            "--size",
            "200",
            "--threads",
            "2",
            "--server",
            "[fd00::1]:1194",
            "--target4",
            "10.8.0.1",
            "--drain",
            "0.5",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(a.config, PathBuf::from("c.ovpn"));
        assert_eq!(a.clients, 1000);
        assert_eq!(a.rate, 200.0);
        assert_eq!(a.duration, Duration::from_secs(15));
        assert_eq!(a.pps, 10.0);
        assert_eq!(a.size, 200);
        assert_eq!(a.threads, 2);
        assert_eq!(a.server, Some("[fd00::1]:1194".parse().unwrap()));
        assert_eq!(a.target_v4, Some(Ipv4Addr::new(10, 8, 0, 1)));
        assert_eq!(a.drain, Duration::from_millis(500));
        let o = a.options("127.0.0.1:1".parse().unwrap());
        assert_eq!(o.clients, 1000);
    }

    #[test]
    fn defaults_help_and_errors() {
        let a = parse(&v(&["--config", "x"])).unwrap().unwrap();
        assert_eq!((a.clients, a.threads, a.size), (10, 1, 100));
        assert_eq!(parse(&v(&["--help"])), Ok(None));
        assert!(parse(&v(&[])).unwrap_err().contains("--config"));
        assert!(parse(&v(&["--config"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&v(&["--config", "x", "--duration", "99999"])).is_err());
        assert!(parse(&v(&["--config", "x", "--clients", "0"])).is_err());
        assert!(parse(&v(&["--config", "x", "--rate", "nan"])).is_err());
        assert!(parse(&v(&["--config", "x", "--bogus"])).is_err());
        assert!(parse(&v(&["--config", "x", "--server", "nope"])).is_err());
    }
}
