//! Parsing of management command lines (OpenVPN 2.6 manage.c syntax and error texts, as
//! captured in tests/vectors/mgmt/openvpn-2.6.14/mgmt-replies.tsv).
//!
//! A line is split into parameters at blanks; double quotes group a parameter and a backslash
//! escapes the next character inside quotes. Command names are case sensitive. Parsing never
//! fails on odd input with anything but a [`CommandError`] whose `Display` is the exact
//! `ERROR: ...` line OpenVPN prints.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::mgmt::status::StatusVersion;

/// Who `kill` is aimed at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillTarget {
    CommonName(String),
    /// `kill IP:port` (OpenVPN 2.6 takes IPv4 only; fwd also takes `[IPv6]:port`).
    Address(SocketAddr),
}

/// `state` arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateArg {
    /// Show the history (`state`, `state all`, `state N`).
    History,
    On,
    Off,
}

/// A parsed management command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// A blank line: no reply.
    Empty,
    Help,
    Pid,
    /// `quit` / `exit`: close this management connection.
    Quit,
    /// `version` (show) or `version N` (the client announces its version: no reply).
    Version(Option<u32>),
    /// `status [N]`; `None` = the configured `status-version`.
    Status(Option<StatusVersion>),
    LoadStats,
    Kill(KillTarget),
    /// `client-kill CID [MSG]` (MSG defaults to `RESTART`).
    ClientKill {
        cid: u64,
        message: Option<String>,
    },
    State(StateArg),
    /// `bytecount N`: `>BYTECOUNT_CLI` every N seconds (0 = off).
    Bytecount(u32),
    /// `verb` (show) / `verb N` (set).
    Verb(Option<u32>),
}

impl Command {
    /// Whether answering needs the control thread (server state) rather than static facts.
    pub fn needs_server(&self) -> bool {
        matches!(
            self,
            Command::Status(_) | Command::LoadStats | Command::Kill(_) | Command::ClientKill { .. }
        )
    }
}

/// A refused line; `Display` is OpenVPN's error line (without the line end).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("ERROR: unknown command, enter 'help' for more options")]
    Unknown,
    #[error("ERROR: the '{command}' command requires {}{count} parameter{}", if *.at_least { "at least " } else { "" }, if *.count == 1 { "" } else { "s" })]
    Params {
        command: &'static str,
        count: usize,
        at_least: bool,
    },
    #[error("ERROR: bad status format version number")]
    StatusVersion,
    #[error("ERROR: cannot parse CID")]
    Cid,
    #[error("ERROR: error parsing IP address: {0}")]
    Address(String),
    #[error("ERROR: port number is out of range: {0}")]
    Port(String),
    #[error("ERROR: unterminated quote")]
    Quote,
}

/// Split a line into parameters (OpenVPN `parse_line` rules, simplified: no `#` comments).
pub fn tokenize(line: &str) -> Result<Vec<String>, CommandError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' => quoted = false,
                '\\' => match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err(CommandError::Quote),
                },
                _ => cur.push(c),
            }
        } else if c == '"' {
            quoted = true;
            in_token = true;
        } else if c.is_whitespace() {
            if in_token {
                out.push(std::mem::take(&mut cur));
                in_token = false;
            }
        } else {
            cur.push(c);
            in_token = true;
        }
    }
    if quoted {
        return Err(CommandError::Quote);
    }
    if in_token {
        out.push(cur);
    }
    Ok(out)
}

/// C `atoi`: optional sign and leading digits, anything else ends the number; no digits = 0.
fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut n: i64 = 0;
    for d in rest.chars().map_while(|c| c.to_digit(10)) {
        n = n.saturating_mul(10).saturating_add(i64::from(d));
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Require exactly `count` parameters after the command (or at least, with `at_least`).
fn need(
    p: &[String],
    command: &'static str,
    count: usize,
    at_least: bool,
) -> Result<(), CommandError> {
    let have = p.len().saturating_sub(1);
    if have < count || (!at_least && have > count) {
        return Err(CommandError::Params {
            command,
            count,
            at_least,
        });
    }
    Ok(())
}

fn kill_target(victim: &str) -> Result<KillTarget, CommandError> {
    // fwd extension: anything Rust parses as a socket address (`[fd00::2]:1194` too).
    if let Ok(addr) = victim.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(CommandError::Port("0".into()));
        }
        return Ok(KillTarget::Address(addr));
    }
    // OpenVPN: p1 up to the first ':', p2 up to the next one.
    let mut parts = victim.split(':');
    let p1 = parts.next().unwrap_or("");
    let p2 = parts.next().unwrap_or("");
    if !p1.is_empty() && !p2.is_empty() {
        let ip: Ipv4Addr = p1
            .parse()
            .map_err(|_| CommandError::Address(p1.to_string()))?;
        let port = atoi(p2);
        let port = u16::try_from(port)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| CommandError::Port(p2.to_string()))?;
        return Ok(KillTarget::Address(SocketAddr::new(IpAddr::V4(ip), port)));
    }
    if p1.is_empty() {
        return Err(CommandError::Params {
            command: "kill",
            count: 1,
            at_least: false,
        });
    }
    Ok(KillTarget::CommonName(p1.to_string()))
}

/// Parse one command line (without or with its `\r\n`).
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let p = tokenize(line)?;
    let Some(name) = p.first() else {
        return Ok(Command::Empty);
    };
    let arg = |i: usize| p.get(i).map(String::as_str);
    Ok(match name.as_str() {
        "help" => Command::Help,
        "pid" => Command::Pid,
        "exit" | "quit" => Command::Quit,
        "load-stats" => Command::LoadStats,
        "version" => Command::Version(arg(1).map(|v| u32::try_from(atoi(v)).unwrap_or(0))),
        "status" => {
            let n = arg(1).map_or(0, atoi);
            match n {
                0 => Command::Status(None),
                _ => Command::Status(Some(
                    u8::try_from(n)
                        .ok()
                        .and_then(|n| StatusVersion::try_from(n).ok())
                        .ok_or(CommandError::StatusVersion)?,
                )),
            }
        }
        "kill" => {
            need(&p, "kill", 1, false)?;
            Command::Kill(kill_target(arg(1).unwrap_or(""))?)
        }
        "client-kill" => {
            need(&p, "client-kill", 1, true)?;
            let cid = arg(1)
                .and_then(|c| c.parse::<u64>().ok())
                .ok_or(CommandError::Cid)?;
            Command::ClientKill {
                cid,
                message: arg(2).map(str::to_string),
            }
        }
        "state" => match arg(1) {
            Some("on") => Command::State(StateArg::On),
            Some("off") => Command::State(StateArg::Off),
            _ => Command::State(StateArg::History),
        },
        "bytecount" => {
            need(&p, "bytecount", 1, false)?;
            Command::Bytecount(u32::try_from(arg(1).map_or(0, atoi)).unwrap_or(0))
        }
        "verb" => Command::Verb(arg(1).map(|v| u32::try_from(atoi(v)).unwrap_or(0))),
        _ => return Err(CommandError::Unknown),
    })
}

impl fmt::Display for KillTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KillTarget::CommonName(cn) => f.write_str(cn),
            KillTarget::Address(a) => write!(f, "{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLIES: &str = include_str!("../../tests/vectors/mgmt/openvpn-2.6.14/mgmt-replies.tsv");

    /// Every ERROR line openvpn 2.6.14 printed for a malformed command is ours too.
    #[test]
    fn error_texts_match_openvpn() {
        let mut checked = 0;
        for line in REPLIES.lines().filter(|l| !l.starts_with('#')) {
            let Some((cmd, reply)) = line.split_once('\t') else {
                continue;
            };
            let ours = parse(cmd);
            let is_lookup_miss =
                reply.contains("not found") || reply.contains("client-kill command failed");
            if reply.starts_with("ERROR:") && !is_lookup_miss && !cmd.starts_with("kill fd00") {
                match (cmd, ours) {
                    // Commands fwd does not implement answer like any unknown command.
                    ("log" | "echo", Err(e)) => assert_eq!(e, CommandError::Unknown),
                    (_, Err(e)) => assert_eq!(e.to_string(), reply, "{cmd}"),
                    (_, Ok(c)) => panic!("{cmd}: parsed as {c:?}, openvpn said {reply}"),
                }
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} error lines checked");
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse("status"), Ok(Command::Status(None)));
        assert_eq!(parse("status 0\r\n"), Ok(Command::Status(None)));
        assert_eq!(
            parse("status 3"),
            Ok(Command::Status(Some(StatusVersion::V3)))
        );
        assert_eq!(
            parse("status 2 extra"),
            Ok(Command::Status(Some(StatusVersion::V2)))
        );
        assert_eq!(parse("status abc"), Ok(Command::Status(None)));
        assert_eq!(parse("status -1"), Err(CommandError::StatusVersion));
        assert_eq!(parse("  load-stats  "), Ok(Command::LoadStats));
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(parse("  \r\n"), Ok(Command::Empty));
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("exit"), Ok(Command::Quit));
        assert_eq!(parse("version"), Ok(Command::Version(None)));
        assert_eq!(parse("version 3"), Ok(Command::Version(Some(3))));
        assert_eq!(parse("pid"), Ok(Command::Pid));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("bytecount 5"), Ok(Command::Bytecount(5)));
        assert_eq!(parse("state"), Ok(Command::State(StateArg::History)));
        assert_eq!(parse("state all"), Ok(Command::State(StateArg::History)));
        assert_eq!(parse("state on"), Ok(Command::State(StateArg::On)));
        assert_eq!(parse("verb"), Ok(Command::Verb(None)));
        assert_eq!(parse("verb 4"), Ok(Command::Verb(Some(4))));
        assert_eq!(parse("KILL client1"), Err(CommandError::Unknown));
        assert_eq!(parse("hold release"), Err(CommandError::Unknown));
    }

    #[test]
    fn kill_targets() {
        let cn = |s: &str| Ok(Command::Kill(KillTarget::CommonName(s.into())));
        let addr = |s: &str| Ok(Command::Kill(KillTarget::Address(s.parse().unwrap())));
        assert_eq!(parse("kill client1"), cn("client1"));
        assert_eq!(parse("kill \"client one\""), cn("client one"));
        assert_eq!(parse("kill 10.200.1.2:39137"), addr("10.200.1.2:39137"));
        assert_eq!(
            parse("kill [fd00:200:2::2]:1194"),
            addr("[fd00:200:2::2]:1194")
        );
        assert_eq!(
            parse("kill 10.0.0.1:0"),
            Err(CommandError::Port("0".into()))
        );
        assert_eq!(
            parse("kill 10.0.0.1:70000"),
            Err(CommandError::Port("70000".into()))
        );
        assert_eq!(
            parse("kill fd00:200:2::2"),
            Err(CommandError::Address("fd00".into()))
        );
        assert_eq!(
            parse("kill a b").unwrap_err().to_string(),
            "ERROR: the 'kill' command requires 1 parameter"
        );
        assert!(parse("kill :5").is_err());
    }

    #[test]
    fn client_kill() {
        assert_eq!(
            parse("client-kill 7"),
            Ok(Command::ClientKill {
                cid: 7,
                message: None
            })
        );
        assert_eq!(
            parse("client-kill 7 HALT"),
            Ok(Command::ClientKill {
                cid: 7,
                message: Some("HALT".into())
            })
        );
        assert_eq!(
            parse(r#"client-kill 7 "RESTART,see \"you\"""#),
            Ok(Command::ClientKill {
                cid: 7,
                message: Some("RESTART,see \"you\"".into())
            })
        );
        assert_eq!(parse("client-kill -1"), Err(CommandError::Cid));
        assert_eq!(parse("client-kill \"1"), Err(CommandError::Quote));
    }

    #[test]
    fn tokenizer_and_atoi() {
        assert_eq!(tokenize("a  \"b c\"\td").unwrap(), vec!["a", "b c", "d"]);
        assert_eq!(tokenize("\"\"").unwrap(), vec![""]);
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("-3"), -3);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("99999999999999999999999"), i64::MAX);
    }

    #[test]
    fn needs_server_split() {
        assert!(parse("status").unwrap().needs_server());
        assert!(parse("kill x").unwrap().needs_server());
        assert!(parse("client-kill 1").unwrap().needs_server());
        assert!(parse("load-stats").unwrap().needs_server());
        assert!(!parse("pid").unwrap().needs_server());
        assert!(!parse("bytecount 1").unwrap().needs_server());
    }
}
