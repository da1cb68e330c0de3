//! `render_effective`: the expanded configuration as canonical config text, one directive per
//! line, in a fixed order. Re-parsing the output yields an equal [`Config`] (tested), so it is
//! what `fwd check` prints. Inline secrets (key, tls-auth, tls-crypt) are redacted unless asked.

use super::model::*;
use std::fmt::Write;

/// Rendering options.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Print inline private keys / static keys instead of a redaction comment.
    pub show_secrets: bool,
}

/// Quote a token if the lexer would otherwise split or alter it.
pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'))
        && !s.starts_with(['#', ';'])
        && !s.starts_with('<');
    if plain {
        s.to_string()
    } else {
        let mut o = String::from("\"");
        for c in s.chars() {
            if c == '"' || c == '\\' {
                o.push('\\');
            }
            o.push(c);
        }
        o.push('"');
        o
    }
}

fn material(out: &mut String, name: &str, p: &Pem, secret: bool, opts: RenderOptions) {
    match &p.origin {
        MaterialOrigin::File(f) => {
            let _ = writeln!(out, "{name} {}", quote(&f.to_string_lossy()));
        }
        MaterialOrigin::Inline if secret && !opts.show_secrets => {
            let _ = writeln!(out, "# {name}: inline, redacted");
        }
        MaterialOrigin::Inline => {
            let _ = write!(out, "<{name}>\n{}", p.text);
            if !p.text.ends_with('\n') {
                out.push('\n');
            }
            let _ = writeln!(out, "</{name}>");
        }
    }
}

/// Render with secrets redacted.
pub fn render_effective(c: &Config) -> String {
    render_with(c, RenderOptions::default())
}

/// Render with options.
pub fn render_with(c: &Config, opts: RenderOptions) -> String {
    let mut o = String::new();
    macro_rules! l { ($($t:tt)*) => {{ let _ = writeln!(o, $($t)*); }} }
    match c.role {
        Role::Server => {
            l!("mode server");
            l!("tls-server");
        }
        Role::Client => {
            l!("pull");
            l!("tls-client");
        }
    }
    if !c.ignore_unknown_option.is_empty() {
        let v: Vec<String> = c.ignore_unknown_option.iter().map(|s| quote(s)).collect();
        l!("ignore-unknown-option {}", v.join(" "));
    }
    if let Some(t) = c.threads {
        l!("threads {t}");
    }
    if !c.offload {
        l!("offload off");
    }
    match c.io {
        IoDriver::Auto => {}
        IoDriver::Uring => l!("io uring"),
        IoDriver::Epoll => l!("io epoll"),
    }
    if c.force_prf {
        l!("force-prf");
    }
    l!("dev {}", quote(&c.dev));
    if !c.dev.starts_with("tun") {
        l!("dev-type tun");
    }
    l!("proto {}", c.proto.as_str());
    if let Some(a) = c.local {
        l!("local {a}");
    }
    l!("port {}", c.port);
    for r in &c.remotes {
        match r.proto {
            Some(p) => l!("remote {} {} {}", quote(&r.host), r.port, p.as_str()),
            None => l!("remote {} {}", quote(&r.host), r.port),
        }
    }
    if c.remote_random {
        l!("remote-random");
    }
    if c.nobind {
        l!("nobind");
    }
    if c.float {
        l!("float");
    }
    match c.resolv_retry {
        Some(ResolvRetry::Infinite) => l!("resolv-retry infinite"),
        Some(ResolvRetry::Seconds(s)) => l!("resolv-retry {s}"),
        None => {}
    }
    match c.connect_retry {
        Some((n, Some(m))) => l!("connect-retry {n} {m}"),
        Some((n, None)) => l!("connect-retry {n}"),
        None => {}
    }
    if let Some(v) = c.server_poll_timeout {
        l!("server-poll-timeout {v}");
    }
    if let Some(v) = c.sndbuf {
        l!("sndbuf {v}");
    }
    if let Some(v) = c.rcvbuf {
        l!("rcvbuf {v}");
    }
    l!("topology {}", c.topology.as_str());
    if c.tun_ipv6 {
        l!("tun-ipv6");
    }
    l!("tun-mtu {}", c.tun_mtu);
    if let Some(m) = c.mssfix {
        let sep = if m.flag.as_str().is_empty() { "" } else { " " };
        l!("mssfix {}{sep}{}", m.value, m.flag.as_str());
    }
    if let Some(v) = c.txqueuelen {
        l!("txqueuelen {v}");
    }
    if let Some(i) = c.ifconfig {
        l!("ifconfig {} {}", i.local, i.remote_netmask);
    }
    if let Some(i) = c.ifconfig_ipv6 {
        l!("ifconfig-ipv6 {} {}", i.local, i.remote);
    }
    if let Some(p) = c.pool_v4 {
        match p.netmask {
            Some(m) => l!("ifconfig-pool {} {} {m}", p.start, p.end),
            None => l!("ifconfig-pool {} {}", p.start, p.end),
        }
    }
    if let Some(p) = c.pool_v6 {
        l!("ifconfig-ipv6-pool {}/{}", p.base, p.prefix_len);
    }
    if let Some((f, s)) = &c.pool_persist {
        l!("ifconfig-pool-persist {} {s}", quote(&f.to_string_lossy()));
    }
    match c.route_gateway {
        Some(RouteGateway::Addr(a)) => l!("route-gateway {a}"),
        Some(RouteGateway::Dhcp) => l!("route-gateway dhcp"),
        None => {}
    }
    for r in &c.routes {
        let mut s = format!("route {} {}", r.net.addr(), r.net.netmask());
        let gw = match &r.gateway {
            Some(RouteGatewayV4::Addr(a)) => Some(a.to_string()),
            Some(RouteGatewayV4::VpnGateway) => Some("vpn_gateway".into()),
            Some(RouteGatewayV4::NetGateway) => Some("net_gateway".into()),
            Some(RouteGatewayV4::RemoteHost) => Some("remote_host".into()),
            None => None,
        };
        if gw.is_some() || r.metric.is_some() {
            let _ = write!(s, " {}", gw.unwrap_or_else(|| "default".into()));
        }
        if let Some(m) = r.metric {
            let _ = write!(s, " {m}");
        }
        l!("{s}");
    }
    for r in &c.routes_v6 {
        let mut s = format!("route-ipv6 {}", r.net);
        if let Some(g) = r.gateway {
            let _ = write!(s, " {g}");
            if let Some(m) = r.metric {
                let _ = write!(s, " {m}");
            }
        }
        l!("{s}");
    }
    if c.route_nopull {
        l!("route-nopull");
    }
    if let Some(r) = &c.redirect_gateway {
        if r.flags.is_empty() {
            l!("redirect-gateway");
        } else {
            l!("redirect-gateway {}", r.flags.join(" "));
        }
    }
    for f in &c.pull_filters {
        l!("pull-filter {} {}", f.action.as_str(), quote(&f.text));
    }
    for p in &c.push {
        l!("push {}", quote_always(p));
    }
    if let Some(d) = &c.ccd_dir {
        l!("client-config-dir {}", quote(&d.to_string_lossy()));
    }
    if c.ccd_exclusive {
        l!("ccd-exclusive");
    }
    if c.client_to_client {
        l!("client-to-client");
    }
    if c.duplicate_cn {
        l!("duplicate-cn");
    }
    if c.role == Role::Server {
        l!("max-clients {}", c.max_clients);
        if c.connect_freq_initial != (100, 10) {
            let (n, s) = c.connect_freq_initial;
            l!("connect-freq-initial {n} {s}");
        }
    }
    if let Some(v) = c.ping {
        l!("ping {v}");
    }
    if let Some(v) = c.ping_restart {
        l!("ping-restart {v}");
    }
    if let Some(v) = c.ping_exit {
        l!("ping-exit {v}");
    }
    l!("hand-window {}", c.hand_window);
    l!("tran-window {}", c.tran_window);
    l!("tls-timeout {}", c.tls_timeout);
    l!("reneg-sec {}", c.reneg_sec);
    if let Some(v) = c.reneg_bytes {
        l!("reneg-bytes {v}");
    }
    if let Some(v) = c.reneg_pkts {
        l!("reneg-pkts {v}");
    }
    if c.explicit_exit_notify > 0 {
        l!("explicit-exit-notify {}", c.explicit_exit_notify);
    }
    let t = &c.tls;
    if let Some(p) = &t.ca {
        material(&mut o, "ca", p, false, opts);
    }
    if let Some(p) = &t.cert {
        material(&mut o, "cert", p, false, opts);
    }
    if let Some(p) = &t.extra_certs {
        material(&mut o, "extra-certs", p, false, opts);
    }
    if let Some(p) = &t.key {
        material(&mut o, "key", p, true, opts);
    }
    match &t.dh {
        Some(DhSpec::None) => l!("dh none"),
        Some(DhSpec::Params(p)) => material(&mut o, "dh", p, false, opts),
        None => {}
    }
    if let Some(p) = &t.crl {
        material(&mut o, "crl-verify", p, false, opts);
    }
    match t.remote_cert_tls {
        Some(CertUsage::Client) => l!("remote-cert-tls client"),
        Some(CertUsage::Server) => l!("remote-cert-tls server"),
        None => {}
    }
    if let Some(v) = &t.verify_x509_name {
        let k = match v.kind {
            X509NameKind::Subject => "subject",
            X509NameKind::Name => "name",
            X509NameKind::NamePrefix => "name-prefix",
        };
        l!("verify-x509-name {} {k}", quote(&v.name));
    }
    if let Some(v) = &t.tls_version_min {
        l!("tls-version-min {v}");
    }
    match &c.control_wrap {
        Some(ControlWrapSpec::TlsCrypt { key }) => material(&mut o, "tls-crypt", key, true, opts),
        Some(ControlWrapSpec::TlsAuth { key, direction, .. }) => {
            material(&mut o, "tls-auth", key, true, opts);
            if let Some(d) = direction {
                l!("key-direction {d}");
            }
        }
        None => {}
    }
    l!("data-ciphers {}", c.data_ciphers.join(":"));
    if let Some(v) = &c.data_ciphers_fallback {
        l!("data-ciphers-fallback {v}");
    }
    if let Some(v) = &c.cipher {
        l!("cipher {v}");
    }
    l!("auth {}", c.auth);
    l!(
        "replay-window {} {}",
        c.replay_window.size,
        c.replay_window.seconds
    );
    if let Some((f, s)) = &c.status {
        l!("status {} {s}", quote(&f.to_string_lossy()));
    }
    l!("status-version {}", c.status_version);
    if let Some((ip, port)) = c.management {
        l!("management {ip} {port}");
    }
    l!("verb {}", c.verb);
    if c.mute > 0 {
        l!("mute {}", c.mute);
    }
    if let Some(u) = &c.user {
        l!("user {}", quote(u));
    }
    if let Some(g) = &c.group {
        l!("group {}", quote(g));
    }
    if c.persist_key {
        l!("persist-key");
    }
    if c.persist_tun {
        l!("persist-tun");
    }
    for (k, v) in &c.setenv {
        l!("setenv {} {}", quote(k), quote(v));
    }
    l!("script-security {}", c.script_security);
    if let Some(v) = &c.auth_user_pass_verify {
        l!(
            "auth-user-pass-verify {} {}",
            quote(&v.command),
            if v.via_file { "via-file" } else { "via-env" }
        );
    }
    match &c.auth_user_pass {
        Some(AuthUserPassSource::Prompt) => l!("auth-user-pass"),
        Some(AuthUserPassSource::File(f)) => l!("auth-user-pass {}", quote(&f.to_string_lossy())),
        None => {}
    }
    o
}

fn quote_always(s: &str) -> String {
    let q = quote(s);
    if q.starts_with('"') {
        q
    } else {
        format!("\"{s}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lexer::tokenize;

    #[test]
    fn quote_roundtrips_through_lexer() {
        for s in [
            "plain",
            "with space",
            "a\"b",
            "back\\slash",
            "#hash",
            ";semi",
            "",
            "it's",
            "<tag>",
        ] {
            let line = format!("x {}", quote(s));
            let toks = tokenize(&line).unwrap_or_default();
            assert_eq!(toks, vec!["x".to_string(), s.to_string()], "{line}");
        }
        assert_eq!(
            quote_always("route-ipv6 fd00::/48"),
            "\"route-ipv6 fd00::/48\""
        );
        assert_eq!(quote_always("tun-ipv6"), "\"tun-ipv6\"");
    }
}
