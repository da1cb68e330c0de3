//! Property tests: the config lexer, loader, ccd parser and CLI never panic on any input.

use proptest::prelude::*;
use std::path::Path;

fn config_text() -> impl Strategy<Value = String> {
    // Mix of real directive names, quotes, escapes, inline tags and junk.
    let atoms = prop::sample::select(vec![
        "server",
        "server-ipv6",
        "ifconfig-ipv6",
        "ifconfig-ipv6-pool",
        "route-ipv6",
        "push",
        "iroute-ipv6",
        "ifconfig-ipv6-push",
        "topology",
        "dev",
        "tun",
        "subnet",
        "keepalive",
        "10",
        "60",
        "fd00::/64",
        "fd00::/200",
        "10.8.0.0",
        "255.255.255.0",
        "\"",
        "'",
        "\\",
        "#",
        ";",
        "<ca>",
        "</ca>",
        "\n",
        " ",
        "--",
        "config",
        "client",
        "mode",
        "tls-server",
        "ifconfig-pool",
        "0",
        "65535",
        "::",
        "/",
        "nopool",
        "\u{feff}",
        "\r\n",
    ]);
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.join(" "))
}

proptest! {
    #[test]
    fn loader_never_panics(text in config_text()) {
        let _ = fwd::config::load_str(&text, Path::new("fuzz.conf"));
        let _ = fwd::config::ccd::parse_text(&text, Path::new("ccd/fuzz"));
    }

    #[test]
    fn loader_never_panics_on_arbitrary_strings(text in ".{0,400}") {
        let _ = fwd::config::load_str(&text, Path::new("fuzz.conf"));
        let _ = fwd::config::lexer::tokenize(&text);
    }

    #[test]
    fn argv_never_panics(args in prop::collection::vec("(--)?[a-z6-]{0,12}", 0..10)) {
        let _ = fwd::cli::parse_command(&args);
    }
}
