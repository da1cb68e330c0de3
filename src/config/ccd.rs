//! Client-config-dir files: per-client options, parsed with the main lexer.
//!
//! Only per-client options are legal (server-ipv6.md §6): ifconfig-push, ifconfig-ipv6-push,
//! iroute, iroute-ipv6, push, push-reset, push-remove, disable, config, and the per-client
//! timers ping / ping-restart / ping-exit. `echo` is accepted and ignored. Anything else is
//! an error with file:line.
//!
//! Semantics of ordering inside one file follow OpenVPN: `push-reset` clears everything pushed
//! so far (inherited list and earlier ccd pushes); `push-remove P` removes matching earlier ccd
//! pushes immediately and is remembered to filter the inherited global list.

use super::args::{arg, ipv4_arg, nargs, u32_arg};
use super::directive::{ifconfig_ipv6_push_args, iroute_args, iroute_v6_args, push_text};
use super::error::{ConfigError, ConfigErrors, ErrorKind, Location, Warning};
use super::lexer::{lex_text, Line};
use super::options;
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Name of the fallback file.
pub const DEFAULT_FILE: &str = "DEFAULT";

/// `ifconfig-push LOCAL REMOTE_NETMASK [ALIAS]` (client's point of view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfconfigPush {
    pub local: Ipv4Addr,
    /// Netmask (subnet) or server-side endpoint (net30/p2p).
    pub remote_netmask: Ipv4Addr,
    /// Address pushed instead of `local` when NAT makes the client's view differ.
    pub alias: Option<Ipv4Addr>,
}

/// `ifconfig-ipv6-push ADDR/BITS [REMOTE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfconfigV6Push {
    /// Client address with the prefix length pushed to it.
    pub addr: Ipv6Net,
    /// Pushed remote; None = the server's own `ifconfig-ipv6` address.
    pub remote: Option<Ipv6Addr>,
}

/// Options for one client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CcdEntry {
    /// File this entry was read from (`DIR/<cn>` or `DIR/DEFAULT`).
    pub source: PathBuf,
    pub ifconfig_push: Option<IfconfigPush>,
    pub ifconfig_ipv6_push: Option<IfconfigV6Push>,
    /// As written (host bits kept, like OpenVPN 2.6 for IPv4).
    pub iroutes: Vec<Ipv4Net>,
    /// Normalised (host bits cleared), like OpenVPN.
    pub iroutes_v6: Vec<Ipv6Net>,
    pub push: Vec<String>,
    pub push_reset: bool,
    pub push_remove: Vec<String>,
    pub disable: bool,
    pub ping: Option<u32>,
    pub ping_restart: Option<u32>,
    pub ping_exit: Option<u32>,
}

impl CcdEntry {
    /// Does `push-remove` suppress this inherited push option? (prefix match as OpenVPN).
    pub fn removes(&self, option: &str) -> bool {
        self.push_remove
            .iter()
            .any(|p| option.starts_with(p.as_str()))
    }
}

/// Where each element of a [`CcdEntry`] came from (for warnings).
#[derive(Debug, Clone, Default)]
pub struct CcdSpans {
    pub ifconfig_push: Option<Location>,
    pub ifconfig_ipv6_push: Option<Location>,
    pub iroutes: Vec<Location>,
    pub iroutes_v6: Vec<Location>,
}

/// Sanitise a common name for use as a file name (OpenVPN: non-printable → `_`, `/` → `_`).
/// Returns None for names that must be refused (`""`, `.`, `..`).
pub fn sanitize_cn(cn: &str) -> Option<String> {
    let s: String = cn
        .chars()
        .map(|c| {
            if c.is_control() || c == '/' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        None
    } else {
        Some(s)
    }
}

/// Find and parse the ccd file for `common_name`: `dir/<sanitised cn>`, else `dir/DEFAULT`
/// (not with `exclusive`). Ok(None) = no file applies (with `exclusive` the caller must
/// refuse the client). A CN equal to `DEFAULT` never selects the DEFAULT file by name when
/// exclusive.
pub fn load_for(
    dir: &Path,
    common_name: &str,
    exclusive: bool,
) -> Result<Option<CcdEntry>, ConfigErrors> {
    let Some(name) = sanitize_cn(common_name) else {
        return Ok(None);
    };
    if exclusive && name == DEFAULT_FILE {
        return Ok(None);
    }
    let own = dir.join(&name);
    if own.is_file() {
        return parse_file(&own).map(|(e, _, _)| Some(e));
    }
    if !exclusive {
        let def = dir.join(DEFAULT_FILE);
        if def.is_file() {
            return parse_file(&def).map(|(e, _, _)| Some(e));
        }
    }
    Ok(None)
}

/// Parse one ccd file with locations and warnings.
pub fn parse_file(path: &Path) -> Result<(CcdEntry, CcdSpans, Vec<Warning>), ConfigErrors> {
    let mut st = State {
        entry: CcdEntry {
            source: path.to_path_buf(),
            ..CcdEntry::default()
        },
        spans: CcdSpans::default(),
        errors: ConfigErrors::default(),
        warnings: Vec::new(),
        depth: 0,
    };
    st.file(path, Location::file(path.to_path_buf()));
    if st.errors.is_empty() {
        Ok((st.entry, st.spans, st.warnings))
    } else {
        Err(st.errors)
    }
}

/// Parse ccd text (for tests and the management `client-auth` path).
pub fn parse_text(text: &str, origin: &Path) -> Result<CcdEntry, ConfigErrors> {
    let mut st = State {
        entry: CcdEntry {
            source: origin.to_path_buf(),
            ..CcdEntry::default()
        },
        spans: CcdSpans::default(),
        errors: ConfigErrors::default(),
        warnings: Vec::new(),
        depth: 0,
    };
    st.text(text, origin);
    if st.errors.is_empty() {
        Ok(st.entry)
    } else {
        Err(st.errors)
    }
}

struct State {
    entry: CcdEntry,
    spans: CcdSpans,
    errors: ConfigErrors,
    warnings: Vec<Warning>,
    depth: usize,
}

impl State {
    fn file(&mut self, path: &Path, at: Location) {
        if self.depth >= super::load::MAX_DEPTH {
            self.errors.push(ConfigError::new(
                at,
                "config",
                ErrorKind::Invalid("includes nested too deeply (loop?)".into()),
            ));
            return;
        }
        match std::fs::read_to_string(path) {
            Ok(t) => {
                self.depth += 1;
                self.text(&t, path);
                self.depth -= 1;
            }
            Err(e) => self.errors.push(ConfigError::new(
                at,
                "config",
                ErrorKind::Io {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                },
            )),
        }
    }

    fn text(&mut self, text: &str, origin: &Path) {
        let (lines, errs) = lex_text(text, &Location::file(origin.to_path_buf()));
        self.errors.0.extend(errs);
        for l in &lines {
            if let Err(kind) = self.line(l) {
                self.errors
                    .push(ConfigError::new(l.location.clone(), l.name(), kind));
            }
        }
    }

    fn line(&mut self, l: &Line) -> Result<(), ErrorKind> {
        let e = &mut self.entry;
        match l.name() {
            "ifconfig-push" => {
                let a = nargs(l, 2, 3)?;
                e.ifconfig_push = Some(IfconfigPush {
                    local: ipv4_arg(arg(a, 0)?, "local address")?,
                    remote_netmask: ipv4_arg(arg(a, 1)?, "remote address/netmask")?,
                    alias: a.get(2).map(|x| ipv4_arg(x, "alias")).transpose()?,
                });
                self.spans.ifconfig_push = Some(l.location.clone());
            }
            "ifconfig-ipv6-push" => {
                let (addr, remote) = ifconfig_ipv6_push_args(l)?;
                if !(64..=124).contains(&addr.prefix_len()) {
                    self.warnings.push(Warning::new(
                        l.location.clone(),
                        l.name(),
                        format!(
                            "/{} is outside 64..124; OpenVPN clients reject such an ifconfig-ipv6",
                            addr.prefix_len()
                        ),
                    ));
                }
                e.ifconfig_ipv6_push = Some(IfconfigV6Push { addr, remote });
                self.spans.ifconfig_ipv6_push = Some(l.location.clone());
            }
            "iroute" => {
                let n = iroute_args(l)?;
                if n.addr() != n.network() {
                    self.warnings.push(Warning::new(
                        l.location.clone(),
                        l.name(),
                        format!("{} has host bits set for /{}: OpenVPN 2.6 never matches such an iroute", n.addr(), n.prefix_len()),
                    ));
                }
                e.iroutes.push(n);
                self.spans.iroutes.push(l.location.clone());
            }
            "iroute-ipv6" => {
                e.iroutes_v6.push(iroute_v6_args(l)?);
                self.spans.iroutes_v6.push(l.location.clone());
            }
            "push" => e.push.push(push_text(l)?),
            "push-reset" => {
                nargs(l, 0, 0)?;
                e.push_reset = true;
                e.push.clear();
            }
            "push-remove" => {
                let a = nargs(l, 1, 1)?;
                let p = arg(a, 0)?.to_string();
                e.push.retain(|x| !x.starts_with(p.as_str()));
                e.push_remove.push(p);
            }
            "disable" => {
                nargs(l, 0, 0)?;
                e.disable = true;
            }
            "ping" | "ping-restart" | "ping-exit" => {
                let a = nargs(l, 1, 1)?;
                let v = Some(u32_arg(arg(a, 0)?, l.name())?);
                match l.name() {
                    "ping" => e.ping = v,
                    "ping-restart" => e.ping_restart = v,
                    _ => e.ping_exit = v,
                }
            }
            "echo" => {}
            "config" => {
                let a = nargs(l, 1, 1)?;
                let p = PathBuf::from(arg(a, 0)?);
                self.file(&p, l.location.clone());
            }
            name => {
                if let Some(why) = options::unsupported_reason(name) {
                    return Err(ErrorKind::Unsupported(why.into()));
                }
                return Err(if options::find(name).is_some() {
                    ErrorKind::NotAllowed(
                        "not a per-client option; only valid in the server configuration".into(),
                    )
                } else {
                    ErrorKind::UnknownOption
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_cn("alice").as_deref(), Some("alice"));
        assert_eq!(sanitize_cn("a/b").as_deref(), Some("a_b"));
        assert_eq!(sanitize_cn("a\u{1}b").as_deref(), Some("a_b"));
        assert_eq!(sanitize_cn(".."), None);
        assert_eq!(sanitize_cn("."), None);
        assert_eq!(sanitize_cn(""), None);
    }

    #[test]
    fn parse_all_legal() {
        let t = "ifconfig-push 10.8.0.50 255.255.255.0\n\
                 ifconfig-ipv6-push fd00:8::50/64 fd00:8::1\n\
                 iroute 192.168.5.0 255.255.255.0\n\
                 iroute-ipv6 fd00:100:5::1/64\n\
                 push \"route 10.0.0.0 255.0.0.0\"\n\
                 push-remove route-gateway\n\
                 ping 5\nping-restart 30\necho hello\n";
        let e = parse_text(t, Path::new("ccd/alice")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            e.ifconfig_push.map(|i| i.local),
            Some(Ipv4Addr::new(10, 8, 0, 50))
        );
        assert_eq!(
            e.ifconfig_ipv6_push.map(|i| i.addr.to_string()),
            Some("fd00:8::50/64".into())
        );
        assert_eq!(e.iroutes[0].to_string(), "192.168.5.0/24");
        assert_eq!(e.iroutes_v6[0].to_string(), "fd00:100:5::/64");
        assert_eq!(e.push, ["route 10.0.0.0 255.0.0.0"]);
        assert!(e.removes("route-gateway 10.8.0.1"));
        assert!(!e.removes("topology subnet"));
        assert_eq!((e.ping, e.ping_restart), (Some(5), Some(30)));
    }

    #[test]
    fn push_reset_clears_earlier_pushes() {
        let e =
            parse_text("push \"a\"\npush-reset\npush \"b\"\n", Path::new("x")).unwrap_or_default();
        assert!(e.push_reset);
        assert_eq!(e.push, ["b"]);
    }

    #[test]
    fn illegal_options_are_errors_with_line() {
        let err = parse_text(
            "iroute-ipv6 fd00::/48\nserver 10.0.0.0 255.255.255.0\nbogus 1\n",
            Path::new("ccd/bob"),
        )
        .err()
        .unwrap_or_default();
        let s: Vec<String> = err.iter().map(|e| e.to_string()).collect();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], "ccd/bob:2: server: not allowed here: not a per-client option; only valid in the server configuration");
        assert!(s[1].starts_with("ccd/bob:3: bogus: unknown option"));
        let err = parse_text("comp-lzo no\n", Path::new("c"))
            .err()
            .unwrap_or_default();
        assert!(err.to_string().contains("not supported by fwd"));
        let err = parse_text("iroute-ipv6 nonsense\n", Path::new("c"))
            .err()
            .unwrap_or_default();
        assert!(err.to_string().starts_with("c:1: iroute-ipv6: "));
    }
}
