//! The table of every option fwd understands: name, argument synopsis, help text.
//!
//! It drives `fwd --help` and the "known option" test (every entry must be accepted by the
//! parser, every accepted option must be here). Options that are ccd-only are marked.

/// One documented option.
#[derive(Debug, Clone, Copy)]
pub struct OptionDoc {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
    /// Only legal in a client-config-dir file.
    pub ccd_only: bool,
    /// Also legal in a ccd file.
    pub ccd: bool,
}

const fn o(name: &'static str, args: &'static str, help: &'static str) -> OptionDoc {
    OptionDoc {
        name,
        args,
        help,
        ccd_only: false,
        ccd: false,
    }
}

const fn c(name: &'static str, args: &'static str, help: &'static str) -> OptionDoc {
    OptionDoc {
        name,
        args,
        help,
        ccd_only: true,
        ccd: true,
    }
}

const fn b(name: &'static str, args: &'static str, help: &'static str) -> OptionDoc {
    OptionDoc {
        name,
        args,
        help,
        ccd_only: false,
        ccd: true,
    }
}

/// Every option, grouped as in `fwd --help`.
pub const OPTIONS: &[OptionDoc] = &[
    // General / modes
    o("config", "FILE", "Read options from FILE (relative paths are relative to the current directory, see `cd`). Also legal in ccd files."),
    o("cd", "DIR", "Resolve later relative paths against DIR (OpenVPN changes directory; fwd only changes path resolution)."),
    o("mode", "server|p2p", "`server` = multi-client server (needs tls-server); p2p is only usable as a client with `pull`."),
    o("server", "NETWORK NETMASK [nopool]", "IPv4 server macro: mode server, tls-server, tun address, address pool, pushes (see server-ipv6.md 2)."),
    o("server-ipv6", "PREFIX/BITS", "IPv6 server macro (BITS 64..124): ifconfig-ipv6 PREFIX::1/BITS PREFIX::2, ifconfig-ipv6-pool PREFIX::1000/BITS (PREFIX::2 for /112 and longer), push tun-ipv6. Usable alone for an IPv6-only server."),
    o("client", "", "Client macro: pull + tls-client."),
    o("tls-server", "", "Act as TLS server."),
    o("tls-client", "", "Act as TLS client."),
    o("pull", "", "Accept options pushed by the server (client)."),
    o("threads", "N", "fwd: number of data-plane threads (default: one per core)."),
    o("offload", "on|off", "fwd: kernel offloads on the data path (default on): TCP super-packets from the tun (TSO, checksum offload), UDP GSO sends and GRO receives, TCP coalescing into the tun; each falls back by itself where the kernel lacks it. off: one packet per read, write and datagram."),
    o("io", "auto|uring|epoll", "fwd: data-plane driver (default auto: io_uring where the kernel allows it, else epoll). epoll: the portable driver for kernels or containers without io_uring."),
    o("force-prf", "", "fwd (testing only): derive data keys with the legacy TLS PRF even if the peer supports tls-ekm."),
    // Device
    o("dev", "tun|tunN", "Tun device name (tap is not supported)."),
    o("dev-type", "tun", "Device type when the name does not start with `tun`."),
    o("topology", "net30|p2p|subnet", "IPv4 addressing of the tun device. OpenVPN 2.6 default is net30; use subnet."),
    o("tun-ipv6", "", "Historic, accepted and ignored (IPv6 is always enabled)."),
    o("tun-mtu", "N", "Tun MTU (default 1500; IPv6 needs at least 1280)."),
    o("mssfix", "[N [mtu|fixed]]", "Clamp TCP MSS so tunnel packets fit N (0 disables)."),
    o("txqueuelen", "N", "Tun transmit queue length."),
    // Transport
    o("proto", "udp|udp4|udp6", "Transport: udp (dual stack), udp4, udp6. TCP is not supported."),
    o("port", "PORT", "Local and remote port (default 1194)."),
    o("lport", "PORT", "Local port."),
    o("rport", "PORT", "Default remote port."),
    o("local", "ADDR", "Local IP address to bind."),
    o("remote", "HOST [PORT] [PROTO]", "Server to connect to (client); several = try in order."),
    o("remote-random", "", "Try remotes in random order."),
    o("nobind", "", "Do not bind a fixed local port (client)."),
    o("float", "", "Accept authenticated packets from a new peer address."),
    o("resolv-retry", "N|infinite", "Retry name resolution of remote for N seconds."),
    o("connect-retry", "N [MAX]", "Wait N seconds between connection attempts (backoff up to MAX)."),
    o("server-poll-timeout", "N", "Give up on a remote after N seconds."),
    o("sndbuf", "BYTES", "UDP socket send buffer size."),
    o("rcvbuf", "BYTES", "UDP socket receive buffer size."),
    // Addresses
    o("ifconfig", "LOCAL REMOTE|NETMASK", "IPv4 tun address; second value is the peer (net30/p2p) or netmask (subnet)."),
    o("ifconfig-ipv6", "ADDR/BITS REMOTE", "IPv6 tun address with tunnel prefix length; REMOTE is the gateway for route-ipv6 and the address pushed to clients as their remote."),
    o("ifconfig-pool", "START END [NETMASK]", "Dynamic IPv4 address pool (server)."),
    o("ifconfig-ipv6-pool", "BASE/BITS", "Dynamic IPv6 pool (server, needs ifconfig-ipv6). Addresses below BASE are never handed out; a BASE with zero host part starts at BASE+1. Shares slots with the IPv4 pool."),
    o("ifconfig-pool-persist", "FILE [SECONDS]", "Persist CN -> IPv4,IPv6 pool assignments in FILE (lines `CN,IPv4,IPv6`), rewritten every SECONDS (default 600; 0 = read-only, entries become fixed reservations)."),
    // Routes
    o("route", "NETWORK [NETMASK [GATEWAY [METRIC]]]", "IPv4 route to the tunnel."),
    o("route-ipv6", "PREFIX/BITS [GATEWAY [METRIC]]", "IPv6 route to the tunnel (server: OS -> tun; pair with iroute-ipv6 in a ccd file)."),
    o("route-gateway", "GW|dhcp", "Default IPv4 gateway for `route`."),
    o("route-nopull", "", "Client: ignore pushed routes."),
    o("redirect-gateway", "[FLAGS...]", "Client: route all traffic through the tunnel (flags: def1 ipv6 !ipv4 local autolocal bypass-dhcp bypass-dns block-local)."),
    // Push
    o("push", "\"OPTION\"", "Push OPTION to clients, e.g. push \"route-ipv6 2001:db8:100::/48\", push \"redirect-gateway def1 ipv6\". Also legal in ccd files."),
    o("pull-filter", "accept|ignore|reject TEXT", "Client: filter pushed options whose text starts with TEXT."),
    // Per-client (ccd)
    o("client-config-dir", "DIR", "Per-client option files DIR/<common name> (fallback DIR/DEFAULT)."),
    o("ccd-exclusive", "", "Refuse clients without a ccd file."),
    o("client-to-client", "", "Forward traffic between clients inside fwd."),
    o("duplicate-cn", "", "Allow several connections with the same common name."),
    o("max-clients", "N", "Maximum concurrent clients (default 1024)."),
    o("connect-freq-initial", "N S", "At most N replies to new connection attempts per S seconds (default 100 10)."),
    c("ifconfig-push", "LOCAL REMOTE|NETMASK [ALIAS]", "ccd: static IPv4 address for this client (disables pool IPv6; add ifconfig-ipv6-push)."),
    c("ifconfig-ipv6-push", "ADDR/BITS [REMOTE]", "ccd: static IPv6 address for this client, pushed as `ifconfig-ipv6 ADDR/BITS REMOTE` (REMOTE defaults to the server's ifconfig-ipv6 address)."),
    c("iroute", "NETWORK [NETMASK]", "ccd: IPv4 subnet behind this client (needs a server `route`)."),
    c("iroute-ipv6", "PREFIX/BITS", "ccd: IPv6 prefix behind this client (needs a server `route-ipv6`)."),
    c("push-reset", "", "ccd: do not inherit the global push list."),
    c("push-remove", "PREFIX", "ccd: drop inherited pushes starting with PREFIX (`ifconfig-ipv6` suppresses the generated address)."),
    c("disable", "", "ccd: reject this client."),
    // Timers
    o("keepalive", "PING TIMEOUT", "ping PING, ping-restart TIMEOUT (server: 2*TIMEOUT locally) and pushes both."),
    b("ping", "N", "Send a keepalive ping after N seconds of silence."),
    b("ping-restart", "N", "Restart after N seconds without packets."),
    b("ping-exit", "N", "Exit after N seconds without packets."),
    o("hand-window", "N", "TLS handshake must finish within N seconds (default 60)."),
    o("tran-window", "N", "Old key stays valid N seconds after renegotiation (default 3600)."),
    o("tls-timeout", "N", "Control-channel retransmit timeout (default 2)."),
    o("reneg-sec", "N", "Renegotiate data keys every N seconds (default 3600, 0 = off)."),
    o("reneg-bytes", "N", "Renegotiate after N bytes."),
    o("reneg-pkts", "N", "Renegotiate after N packets."),
    o("explicit-exit-notify", "[N]", "Tell the peer when exiting (client: retry N times)."),
    // Crypto
    o("ca", "FILE|[inline]", "CA certificate(s) (PEM)."),
    o("cert", "FILE|[inline]", "Own certificate (PEM)."),
    o("key", "FILE|[inline]", "Own private key (PEM)."),
    o("extra-certs", "FILE|[inline]", "Extra chain certificates (PEM)."),
    o("dh", "FILE|none", "DH parameters; fwd uses ECDHE only, so `none` is recommended."),
    o("crl-verify", "FILE|[inline]", "Certificate revocation list (PEM)."),
    o("remote-cert-tls", "client|server", "Require the peer certificate's extended key usage."),
    o("verify-x509-name", "NAME [subject|name|name-prefix]", "Require the peer certificate name."),
    o("tls-version-min", "1.2|1.3 [or-highest]", "Minimum TLS version."),
    o("tls-auth", "FILE|[inline] [DIRECTION]", "HMAC-authenticate control packets with a static key."),
    o("tls-crypt", "FILE|[inline]", "Encrypt and authenticate control packets with a static key."),
    o("key-direction", "0|1", "Direction for tls-auth keys (inline or without explicit direction)."),
    o("data-ciphers", "C1:C2:...", "Negotiable data-channel ciphers (default AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305)."),
    o("data-ciphers-fallback", "CIPHER", "Cipher for peers that cannot negotiate."),
    o("cipher", "CIPHER", "Legacy cipher option (added to data-ciphers negotiation like OpenVPN 2.6)."),
    o("auth", "DIGEST", "HMAC digest for tls-auth (and CBC data channel), default SHA1."),
    o("replay-window", "N [SECONDS]", "Replay protection window (default 64 15)."),
    // Management / status
    o("status", "FILE [SECONDS]", "Write client list/routing table to FILE every SECONDS (default 60); includes client IPv6 addresses and iroute-ipv6 entries."),
    o("status-version", "1|2|3", "Status file format."),
    o("management", "IP PORT", "Management interface on IP:PORT (use 127.0.0.1 or ::1)."),
    o("verb", "N", "Log verbosity 0..11."),
    o("mute", "N", "Log at most N consecutive messages of one category."),
    // Process
    o("user", "USER", "Drop privileges to USER after setup."),
    o("group", "GROUP", "Drop privileges to GROUP after setup."),
    o("persist-key", "", "Keep keys across restarts (accepted; fwd never re-reads keys)."),
    o("persist-tun", "", "Keep the tun device across restarts."),
    o("setenv", "NAME VALUE", "Set a script environment variable; `setenv opt X...` makes X ignorable if unknown."),
    o("script-security", "0..3", "Script policy level."),
    o("auth-user-pass-verify", "CMD via-env|via-file", "Server: verify client username/password with CMD."),
    o("auth-user-pass", "[FILE]", "Client: send username/password (from FILE or prompt)."),
    o("ignore-unknown-option", "OPT...", "Unknown options listed here (after this line) only produce a warning."),
    o("allow-compression", "no", "Only `no` is accepted (fwd does not implement compression)."),
];

/// Look up an option by name.
pub fn find(name: &str) -> Option<&'static OptionDoc> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// Options fwd deliberately rejects, with the reason shown to the user.
pub fn unsupported_reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "comp-lzo" | "compress" | "comp-noadapt" => {
            "compression framing is not implemented (VORACLE attack; OpenVPN 2.6 disables compression by default); remove it on both ends"
        }
        "fragment" => "fragment is not implemented; lower tun-mtu or use mssfix instead",
        "secret" => {
            "static-key mode is insecure and removed in OpenVPN 2.7; use TLS (ca/cert/key, optionally tls-crypt)"
        }
        "server-bridge" => "bridging needs dev tap; fwd implements routed tun mode only",
        "tls-crypt-v2" => "tls-crypt-v2 is not implemented yet; use tls-crypt",
        "daemon" | "log" | "log-append" | "syslog" => {
            "fwd logs to stderr and runs in the foreground; use your service manager"
        }
        "client-connect" | "client-disconnect" | "learn-address" | "up" | "down" | "route-up"
        | "tls-verify" | "plugin" => "scripts and plugins are not implemented",
        "http-proxy" | "socks-proxy" => "proxies need TCP transport, which fwd does not implement",
        _ => return None,
    })
}
