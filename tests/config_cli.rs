//! Runs the built `fwd` binary: `check` exit codes and output, `--help`, `--version`.

use std::process::Command;

fn fwd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fwd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run fwd: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Cross-check done while writing this test: the output of
// `fwd check --config examples/server.conf` (with `dev tun` replaced by `dev null` +
// `dev-type tun`) was fed to `openvpn --config … --verb 7` (2.6.14): it is accepted and yields
// the same push_entry list, ifconfig_ipv6_pool_base fd00:8::1000, route_default_gateway
// 10.8.0.2 and ping_rec_timeout 120 as the original examples/server.conf.
#[test]
fn check_example_server_passes() {
    let (code, out, err) = fwd(&["check", "--config", "examples/server.conf"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("ifconfig-ipv6 fd00:8::1/64 fd00:8::2\n"),
        "{out}"
    );
    assert!(out.contains("ifconfig-ipv6-pool fd00:8::1000/64\n"));
    assert!(out.contains("push \"route-ipv6 fd00:100::/48\"\n"));
    assert!(out.contains("push \"topology subnet\"\n"));
    assert!(
        !err.contains("warning:"),
        "example should be warning-free: {err}"
    );
}

#[test]
fn check_example_client_passes() {
    let (code, out, err) = fwd(&["check", "--config", "examples/client.ovpn"]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.starts_with("pull\ntls-client\n"), "{out}");
}

#[test]
fn check_with_command_line_override() {
    let (code, out, _) = fwd(&[
        "check",
        "--config",
        "examples/server.conf",
        "--threads",
        "4",
        "--verb",
        "5",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("threads 4\n") && out.contains("verb 5\n"),
        "{out}"
    );
}

#[test]
fn check_errors_exit_2_with_locations() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let f = dir.path().join("bad.conf");
    std::fs::write(&f, "dev tun\nserver-ipv6 fd00::/48\nproto tcp\n").unwrap_or_default();
    let fs = f.to_string_lossy().into_owned();
    let (code, out, err) = fwd(&["check", "--config", &fs]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains(&format!(
            "{fs}:2: server-ipv6: prefix length must be between 64 and 124, got /48\n"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{fs}:3: proto: not supported by fwd: proto tcp")),
        "{err}"
    );
}

#[test]
fn check_prints_warnings_on_stderr() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ccd = dir.path().join("ccd");
    std::fs::create_dir(&ccd).unwrap_or_default();
    std::fs::write(ccd.join("alice"), "iroute-ipv6 fd00:200::/48\n").unwrap_or_default();
    let f = dir.path().join("s.conf");
    let pki = "tests/vectors/config/pki";
    std::fs::write(
        &f,
        format!("dev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\nserver-ipv6 fd00:8::/64\nkeepalive 10 60\nca {pki}/ca.crt\ncert {pki}/server.crt\nkey {pki}/server.key\nclient-config-dir {}\n", ccd.display()),
    )
    .unwrap_or_default();
    let (code, out, err) = fwd(&["check", "--config", &f.to_string_lossy()]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.is_empty());
    assert!(
        err.contains(&format!(
            "warning: {}:1: iroute-ipv6: fd00:200::/48 has no covering route-ipv6",
            ccd.join("alice").display()
        )),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let (code, out, _) = fwd(&["--help"]);
    assert_eq!(code, 0);
    for k in [
        "--server-ipv6",
        "--ifconfig-ipv6-pool",
        "--ifconfig-pool-persist",
        "--iroute-ipv6",
        "--route-ipv6",
        "--ifconfig-ipv6-push",
        "--tun-ipv6",
        "push \"route-ipv6",
    ] {
        assert!(out.contains(k), "{k}");
    }
    let (code, out, _) = fwd(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("fwd {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_subcommand_and_unwired_run() {
    let (code, _, err) = fwd(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command `frobnicate`"));
    let (code, _, err) = fwd(&["--config", "examples/server.conf", "--port", "banana"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("command line: port: `banana` is not a valid port"),
        "{err}"
    );
}
