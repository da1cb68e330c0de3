// Shared helpers for the config_* integration tests (included with `mod`-less `include!`).
#[allow(unused_imports)]
use fwd::config::{self, load_str, render_with, ConfigErrors, Loaded, RenderOptions};
#[allow(unused_imports)]
use std::path::Path;

#[allow(dead_code)]
pub const PKI: &str = "tests/vectors/config/pki";

#[allow(dead_code)]
pub fn server_base() -> String {
    format!("dev tun\nca {PKI}/ca.crt\ncert {PKI}/server.crt\nkey {PKI}/server.key\ndh none\n")
}

#[allow(dead_code)]
pub fn client_base() -> String {
    format!(
        "client\ndev tun\nremote vpn.example.org 1194\nca {PKI}/ca.crt\ncert {PKI}/client1.crt\nkey {PKI}/client1.key\n"
    )
}

#[allow(dead_code)]
pub fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("test.conf"))
}

#[allow(dead_code)]
pub fn ok(text: &str) -> Loaded {
    match load(text) {
        Ok(l) => l,
        Err(e) => panic!("config failed:\n{e}\n---\n{text}"),
    }
}

#[allow(dead_code)]
pub fn errs(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("config unexpectedly loaded:\n{text}"),
        Err(e) => e.iter().map(|x| x.to_string()).collect(),
    }
}

/// render → re-parse must give the same Config.
#[allow(dead_code)]
pub fn roundtrip(l: &Loaded) {
    let text = render_with(&l.config, RenderOptions { show_secrets: true });
    let again = match load(&text) {
        Ok(a) => a,
        Err(e) => panic!("rendered config does not re-parse:\n{e}\n---\n{text}"),
    };
    assert_eq!(again.config, l.config, "round trip differs:\n{text}");
    let text2 = render_with(&again.config, RenderOptions { show_secrets: true });
    assert_eq!(text, text2, "rendering is not canonical");
}
