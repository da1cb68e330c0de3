//! `fwd-loadgen` against a fwd server in network namespaces: 20 simulated clients all complete
//! the handshake, take their pushed addresses and get IPv4 and IPv6 echo replies from the
//! server's kernel through the tunnel.
//!
//! Bounded: the load generator stops by itself after `--duration` + `--drain` (7 s here), the
//! lab (namespaces, server process) is torn down by `Lab`'s `Drop` even when an assertion
//! fails. Needs root, /dev/net/tun, `ip`, `openvpn` (for `--genkey`), `openssl`; skips with a
//! message elsewhere, fails under CI.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::lab::Lab;
use common::pki::test_pki_with_clients;

const CLIENTS: u32 = 20;

/// `RESULT k=v ...` of the load generator's output.
fn result_line(out: &str) -> HashMap<String, String> {
    out.lines()
        .find(|l| l.starts_with("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{out}"))
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(r: &HashMap<String, String>, k: &str) -> u64 {
    r.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RESULT has no numeric {k}: {r:?}"))
}

#[test]
fn twenty_simulated_clients_handshake_and_get_replies() {
    let Some(mut lab) = Lab::try_new("loadgen") else {
        return;
    };
    let dir = lab.dir().to_path_buf();
    let server = lab.host("server");
    let lg = lab.host("lg");
    let link = lab.link(&server, &lg);
    let pki = test_pki_with_clients(&dir, &["client1"]);
    let c = pki.client("client1");
    let server_conf = dir.join("server.conf");
    std::fs::write(
        &server_conf,
        format!(
            "port 1194\nproto udp\ndev tun\nca {ca}\ncert {cert}\nkey {key}\ndh none\n\
             tls-crypt {tc}\ntopology subnet\nserver 10.8.0.0 255.255.0.0\n\
             server-ipv6 fd00:8::/64\nmax-clients 100\nduplicate-cn\nkeepalive 10 60\nverb 3\n",
            ca = pki.ca_cert.display(),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            tc = pki.tls_crypt.display(),
        ),
    )
    .unwrap();
    let profile = dir.join("client.ovpn");
    std::fs::write(
        &profile,
        format!(
            "client\ndev tun\nproto udp\nremote {remote} 1194\nnobind\nca {ca}\ncert {cert}\n\
             key {key}\nremote-cert-tls server\ntls-crypt {tc}\n",
            remote = link.a(false),
            ca = pki.ca_cert.display(),
            cert = c.cert.display(),
            key = c.key.display(),
            tc = pki.tls_crypt.display(),
        ),
    )
    .unwrap();

    let log = dir.join("server.log");
    let conf = server_conf.to_string_lossy().into_owned();
    lab.spawn(
        &server,
        &[
            env!("CARGO_BIN_EXE_fwd"),
            "--config",
            &conf,
            "--threads",
            "2",
        ],
        &log,
    );
    if let Err(e) = lab.wait_for_log(
        &log,
        "Initialization Sequence Completed",
        Duration::from_secs(15),
    ) {
        panic!("fwd server did not start: {e}");
    }

    let profile = profile.to_string_lossy().into_owned();
    let clients = CLIENTS.to_string();
    let out = lab.exec(
        &lg,
        &[
            env!("CARGO_BIN_EXE_fwd-loadgen"),
            "--config",
            &profile,
            "--clients",
            &clients,
            "--rate",
            "20",
            "--duration",
            "6",
            "--pps",
            "5",
            "--threads",
            "2",
            "--drain",
            "1",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fwd-loadgen failed ({}):\n{text}",
        out.status
    );
    let r = result_line(&text);
    assert_eq!(num(&r, "clients"), u64::from(CLIENTS), "{text}");
    assert_eq!(num(&r, "hs_ok"), u64::from(CLIENTS), "{text}");
    assert_eq!(num(&r, "hs_failed"), 0, "{text}");
    // Every client got replies in both families: its pushed IPv4 and IPv6 addresses work.
    assert_eq!(num(&r, "clients_replied"), u64::from(CLIENTS), "{text}");
    let (sent, received) = (num(&r, "sent"), num(&r, "received"));
    assert!(
        num(&r, "sent_v6") > 0 && num(&r, "received_v6") > 0,
        "{text}"
    );
    assert!(received <= sent, "{text}");
    // Loopback-like veth, light load: essentially nothing may be lost.
    assert!(received * 100 >= sent * 95, "too much loss:\n{text}");
}
