//! OpenVPN-style argv: `--option args…` is the same as a config line `option args…`, plus
//! subcommands.
//!
//! ```text
//! fwd --config server.conf [--opt args…]     run (server or client, per the config)
//! fwd run --config server.conf …             same
//! fwd check --config server.conf [--opt …]   print the effective config; warnings on stderr
//! fwd init [DIR] [--opt …]                   create a demo PKI + profiles
//! fwd demo                                   run the built-in demo
//! fwd --help | fwd --version
//! ```
//!
//! Exit codes: 0 success, 2 usage or configuration error (every error is printed as
//! `FILE:LINE: option: reason`).

use crate::config::{self, check, options, ConfigErrors, Loaded};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug)]
pub enum Command {
    /// `fwd check …`: loaded config to print/verify (boxed: `Loaded` is large).
    Check(Box<Loaded>),
    /// `fwd --config …` or `fwd run …`.
    Run(Box<Loaded>),
    /// `fwd init [DIR] [args…]`: remaining arguments are passed through untouched.
    Init {
        dir: PathBuf,
        args: Vec<String>,
    },
    Demo,
    Help,
    Version,
}

/// Why argv could not be turned into a [`Command`].
#[derive(Debug)]
pub enum CliError {
    Usage(String),
    Config(ConfigErrors),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(s) => write!(f, "usage error: {s} (see `fwd --help`)"),
            CliError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CliError {}

/// Default directory for `fwd init`.
pub const DEFAULT_INIT_DIR: &str = "fwd-pki";

/// Parse argv (without the program name).
pub fn parse_command(args: &[String]) -> Result<Command, CliError> {
    let Some(first) = args.first() else {
        return Ok(Command::Help);
    };
    let rest = args.get(1..).unwrap_or(&[]);
    match first.as_str() {
        "--help" | "-h" | "help" => Ok(Command::Help),
        "--version" | "-V" | "version" => Ok(Command::Version),
        "check" => {
            if rest.is_empty() {
                return Err(CliError::Usage(
                    "`fwd check` needs `--config FILE` and/or options".into(),
                ));
            }
            config::load_args(rest)
                .map(|l| Command::Check(Box::new(l)))
                .map_err(CliError::Config)
        }
        "run" => config::load_args(rest)
            .map(|l| Command::Run(Box::new(l)))
            .map_err(CliError::Config),
        "init" => {
            let (dir, more) = match rest.first() {
                Some(d) if !d.starts_with("--") => (PathBuf::from(d), rest.get(1..).unwrap_or(&[])),
                _ => (PathBuf::from(DEFAULT_INIT_DIR), rest),
            };
            Ok(Command::Init {
                dir,
                args: more.to_vec(),
            })
        }
        "demo" => {
            if rest.is_empty() {
                Ok(Command::Demo)
            } else {
                Err(CliError::Usage("`fwd demo` takes no arguments".into()))
            }
        }
        a if a.starts_with("--") => {
            if args.iter().any(|a| a == "--help") {
                return Ok(Command::Help);
            }
            if args.iter().any(|a| a == "--version") {
                return Ok(Command::Version);
            }
            config::load_args(args)
                .map(|l| Command::Run(Box::new(l)))
                .map_err(CliError::Config)
        }
        other => Err(CliError::Usage(format!("unknown command `{other}`"))),
    }
}

/// The `fwd --help` text: usage plus every option from the option table.
pub fn help_text() -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "fwd {} — OpenVPN 2.6 compatible VPN (UDP, tun, IPv4 + IPv6)\n\n",
        env!("CARGO_PKG_VERSION")
    ));
    s.push_str(
        "Usage:\n\
         \x20 fwd --config FILE [--option args...]    run as server or client\n\
         \x20 fwd check --config FILE [--option ...]  print the effective configuration and warnings\n\
         \x20 fwd init [DIR]                           create a demo PKI and profiles\n\
         \x20 fwd demo                                 run the demo\n\
         \x20 fwd --help | --version\n\n\
         Every option can be given in a config file as `option args` or on the command line\n\
         as `--option args`; later ones override earlier ones. Config syntax is OpenVPN's:\n\
         `#`/`;` comments, \"double\" and 'single' quotes, backslash escapes, inline\n\
         <ca>/<cert>/<key>/<tls-crypt>/<tls-auth>/<dh>/<crl-verify>/<extra-certs> blocks.\n\
         Relative paths are relative to the current directory (use `cd DIR` to change).\n\n\
         IPv6: `server-ipv6 fd00:8::/64` gives the server fd00:8::1/64 and a pool from\n\
         fd00:8::1000; a routed client prefix needs `route-ipv6 P` (server), `iroute-ipv6 P`\n\
         (ccd file) and usually `push \"route-ipv6 P\"`. `fwd check` warns when one is missing.\n\n\
         Options:\n",
    );
    for o in options::OPTIONS {
        let head = if o.args.is_empty() {
            o.name.to_string()
        } else {
            format!("{} {}", o.name, o.args)
        };
        s.push_str(&format!("  --{head}\n      {}\n", o.help));
    }
    s.push_str(
        "\nNot supported (rejected with a reason): proto tcp, dev tap, comp-lzo/compress,\n\
         fragment, secret (static-key mode), tls-crypt-v2, scripts and plugins.\n\
         Unknown options are errors unless listed in `ignore-unknown-option`.\n",
    );
    s
}

fn print_errors(err: &mut dyn Write, e: &CliError) {
    match e {
        CliError::Config(errs) => {
            for x in errs.iter() {
                let _ = writeln!(err, "{x}");
            }
        }
        CliError::Usage(_) => {
            let _ = writeln!(err, "{e}");
        }
    }
}

/// `fwd check`: effective config on `out`, warnings (config + ccd scan) on `err`.
pub fn check(loaded: &Loaded, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    for w in &loaded.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    match check::ccd_warnings(&loaded.config, &loaded.sources) {
        Ok(ws) => {
            for w in ws {
                let _ = writeln!(err, "warning: {w}");
            }
        }
        Err(es) => {
            print_errors(err, &CliError::Config(es));
            return 2;
        }
    }
    let _ = write!(out, "{}", config::render_effective(&loaded.config));
    0
}

/// Run a parsed argv with explicit output streams (tests use this).
pub fn run_with(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let cmd = match parse_command(args) {
        Ok(c) => c,
        Err(e) => {
            print_errors(err, &e);
            return 2;
        }
    };
    match cmd {
        Command::Help => {
            let _ = write!(out, "{}", help_text());
            0
        }
        Command::Version => {
            let _ = writeln!(out, "fwd {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Check(l) => check(&l, out, err),
        Command::Run(l) => run_config(&l, err),
        Command::Init { dir, args } => init(&dir, &args, out, err),
        Command::Demo => crate::demo::main(out, err),
    }
}

/// Log to stderr; `verb` picks the level like OpenVPN's (1-3 = normal operation messages,
/// 4+ = debug, 7+ = trace), `RUST_LOG` overrides.
pub fn init_logging(verb: u32) {
    let level = match verb {
        0 => "error",
        1..=3 => "info",
        4..=6 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // netlink-packet-route warns on every link dump about attributes newer kernels add.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{level},netlink_packet_route=error"))
        });
    // Colour only on a terminal: logs redirected to files must stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// `fwd --config F …`: run the server or client the configuration describes.
fn run_config(loaded: &Loaded, err: &mut dyn Write) -> i32 {
    init_logging(loaded.config.verb);
    for w in &loaded.warnings {
        let _ = writeln!(err, "warning: {w}");
    }
    let stop = crate::os::signals::install();
    let result = match loaded.config.role {
        config::Role::Server => crate::plan::server_plan(&loaded.config)
            .and_then(|plan| crate::server::run::run(plan, stop)),
        config::Role::Client => crate::plan::client_plan(&loaded.config)
            .and_then(|plan| crate::client::run::run(plan, stop)),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "fwd: {e:#}");
            1
        }
    }
}

/// `fwd init [DIR] [--client NAME]… [--remote HOST] [--port N] [--server-cn CN]`.
fn init(dir: &std::path::Path, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut opts = crate::pki::InitOptions {
        server_cn: "fwd-server".into(),
        clients: Vec::new(),
        remote: "127.0.0.1".into(),
        port: 1194,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let r = match a.as_str() {
            "--client" => value("--client").map(|v| opts.clients.push(v)),
            "--remote" => value("--remote").map(|v| opts.remote = v),
            "--server-cn" => value("--server-cn").map(|v| opts.server_cn = v),
            "--port" => value("--port").and_then(|v| {
                v.parse()
                    .map(|p| opts.port = p)
                    .map_err(|_| format!("--port: bad port {v}"))
            }),
            other => Err(format!("unknown init option {other}")),
        };
        if let Err(e) = r {
            let _ = writeln!(err, "fwd init: {e}");
            return 2;
        }
    }
    if opts.clients.is_empty() {
        opts.clients.push("client1".into());
    }
    match crate::pki::init_dir(dir, opts) {
        Ok(()) => {
            let _ = writeln!(out, "fwd init: wrote a CA, server and client certificates, a tls-crypt key, server.conf and client profiles to {}", dir.display());
            0
        }
        Err(e) => {
            let _ = writeln!(err, "fwd init: {e}");
            1
        }
    }
}

/// Entry point used by `main.rs`; returns the process exit code.
pub fn main() -> i32 {
    // args_os + lossy conversion: a non-UTF-8 argument must not panic.
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Unlocked handles: holding stderr's lock here for the whole run would block every log line
    // from other threads (tracing writes to stderr) forever.
    run_with(&args, &mut std::io::stdout(), &mut std::io::stderr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn simple_commands() {
        assert!(matches!(parse_command(&[]), Ok(Command::Help)));
        assert!(matches!(parse_command(&v(&["--help"])), Ok(Command::Help)));
        assert!(matches!(
            parse_command(&v(&["--version"])),
            Ok(Command::Version)
        ));
        assert!(matches!(parse_command(&v(&["demo"])), Ok(Command::Demo)));
        assert!(matches!(
            parse_command(&v(&["demo", "x"])),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            parse_command(&v(&["frobnicate"])),
            Err(CliError::Usage(_))
        ));
        match parse_command(&v(&["init", "mypki"])) {
            Ok(Command::Init { dir, args }) => {
                assert_eq!(dir, PathBuf::from("mypki"));
                assert!(args.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match parse_command(&v(&["init"])) {
            Ok(Command::Init { dir, .. }) => assert_eq!(dir, PathBuf::from(DEFAULT_INIT_DIR)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn version_output() {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        assert_eq!(run_with(&v(&["--version"]), &mut o, &mut e), 0);
        assert_eq!(
            String::from_utf8_lossy(&o),
            format!("fwd {}\n", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn help_documents_every_option_and_ipv6() {
        let h = help_text();
        for o in options::OPTIONS {
            assert!(
                h.contains(&format!("--{}", o.name)),
                "{} missing from help",
                o.name
            );
        }
        for k in [
            "--server-ipv6",
            "--ifconfig-ipv6 ",
            "--ifconfig-ipv6-pool",
            "--ifconfig-pool-persist",
            "--iroute-ipv6",
            "--route-ipv6",
            "push \"route-ipv6",
            "--ifconfig-ipv6-push",
            "--tun-ipv6",
        ] {
            assert!(h.contains(k), "{k} missing from help");
        }
    }

    #[test]
    fn config_error_exits_2_with_location() {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let code = run_with(
            &v(&["check", "--dev", "tun", "--bogus-opt", "1"]),
            &mut o,
            &mut e,
        );
        assert_eq!(code, 2);
        let e = String::from_utf8_lossy(&e);
        assert!(e.contains("command line: bogus-opt: unknown option"), "{e}");
    }
}
