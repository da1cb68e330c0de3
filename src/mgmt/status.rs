//! The `--status` file / management `status` text in OpenVPN 2.6's three formats
//! (server-ipv6.md §10.1, golden output in tests/vectors/mgmt/openvpn-2.6.14/).
//!
//! Pure: the control thread builds a [`StatusSnapshot`] and [`render`] turns it into text with
//! `\n` line ends (the file); the management interface converts to CRLF ([`to_crlf`]).
//! Invariants: the output always ends with `END`; a field never contains the separator of its
//! format (common names with `,`/TAB cannot come from X.509 CNs OpenVPN accepts either, and
//! are rendered as `_` to keep the table parseable).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use crate::mgmt::time::Stamp;

/// `status-version` 1, 2 or 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusVersion {
    V1,
    /// CSV with `HEADER`/`CLIENT_LIST`/`ROUTING_TABLE` row tags.
    V2,
    /// Like V2 with TAB separators.
    V3,
}

impl TryFrom<u8> for StatusVersion {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(StatusVersion::V1),
            2 => Ok(StatusVersion::V2),
            3 => Ok(StatusVersion::V3),
            other => Err(other),
        }
    }
}

/// One connected client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRow {
    pub common_name: String,
    pub real: SocketAddr,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    /// iroute / iroute-ipv6 networks owned by the client.
    pub iroutes: Vec<IpNet>,
    /// Bytes received from / sent to the client on the UDP socket.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connected_since: Stamp,
    /// Routing table "Last Ref" for the client's entries.
    pub last_ref: Stamp,
    pub username: Option<String>,
    /// Management client id (`client-kill CID`).
    pub client_id: u64,
    pub peer_id: u32,
    pub cipher: String,
}

/// Everything the status output shows, taken at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// Program title (`TITLE` row), see [`crate::mgmt::title`].
    pub title: String,
    pub now: Stamp,
    pub clients: Vec<ClientRow>,
}

/// OpenVPN's "Real Address": IPv4 (also v4-mapped) as `a.b.c.d:port`, native IPv6 without port.
pub fn real_address(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", a.port()),
            None => a.ip().to_string(),
        },
    }
}

/// Routing table "Virtual Address" of an iroute: `net/bits`, host routes as a bare address.
fn route_target(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        format!("{}/{}", net.network(), net.prefix_len())
    }
}

/// Keep the table parseable whatever a name contains.
fn field(s: &str, sep: char) -> String {
    s.chars()
        .map(|c| {
            if c == sep || c == '\n' || c == '\r' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The routing rows of one client: its IPv4 and IPv6 addresses, then its iroutes.
fn routes_of(c: &ClientRow) -> Vec<String> {
    let mut v = Vec::new();
    v.extend(c.v4.map(|a| IpAddr::V4(a).to_string()));
    v.extend(c.v6.map(|a| IpAddr::V6(a).to_string()));
    v.extend(c.iroutes.iter().map(route_target));
    v
}

/// Render `snap` in `version`'s format, `\n` line ends.
pub fn render(version: StatusVersion, snap: &StatusSnapshot) -> String {
    let mut out = String::new();
    match version {
        StatusVersion::V1 => render_v1(&mut out, snap),
        StatusVersion::V2 => render_tagged(&mut out, snap, ','),
        StatusVersion::V3 => render_tagged(&mut out, snap, '\t'),
    }
    out
}

fn render_v1(out: &mut String, snap: &StatusSnapshot) {
    let f = |s: &str| field(s, ',');
    out.push_str("OpenVPN CLIENT LIST\n");
    let _ = writeln!(out, "Updated,{}", snap.now.format());
    out.push_str("Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since\n");
    for c in &snap.clients {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            f(&c.common_name),
            real_address(c.real),
            c.bytes_in,
            c.bytes_out,
            c.connected_since.format()
        );
    }
    out.push_str("ROUTING TABLE\n");
    out.push_str("Virtual Address,Common Name,Real Address,Last Ref\n");
    for c in &snap.clients {
        for target in routes_of(c) {
            let _ = writeln!(
                out,
                "{target},{},{},{}",
                f(&c.common_name),
                real_address(c.real),
                c.last_ref.format()
            );
        }
    }
    out.push_str("GLOBAL STATS\n");
    out.push_str("Max bcast/mcast queue length,0\n");
    out.push_str("END\n");
}

fn render_tagged(out: &mut String, snap: &StatusSnapshot, sep: char) {
    let mut row = |fields: &[&str]| {
        let line: Vec<String> = fields.iter().map(|s| field(s, sep)).collect();
        out.push_str(&line.join(&sep.to_string()));
        out.push('\n');
    };
    row(&["TITLE", &snap.title]);
    row(&["TIME", &snap.now.format(), &snap.now.unix.to_string()]);
    row(&[
        "HEADER",
        "CLIENT_LIST",
        "Common Name",
        "Real Address",
        "Virtual Address",
        "Virtual IPv6 Address",
        "Bytes Received",
        "Bytes Sent",
        "Connected Since",
        "Connected Since (time_t)",
        "Username",
        "Client ID",
        "Peer ID",
        "Data Channel Cipher",
    ]);
    for c in &snap.clients {
        row(&[
            "CLIENT_LIST",
            &c.common_name,
            &real_address(c.real),
            &c.v4.map(|a| a.to_string()).unwrap_or_default(),
            &c.v6.map(|a| a.to_string()).unwrap_or_default(),
            &c.bytes_in.to_string(),
            &c.bytes_out.to_string(),
            &c.connected_since.format(),
            &c.connected_since.unix.to_string(),
            c.username.as_deref().unwrap_or("UNDEF"),
            &c.client_id.to_string(),
            &c.peer_id.to_string(),
            &c.cipher,
        ]);
    }
    row(&[
        "HEADER",
        "ROUTING_TABLE",
        "Virtual Address",
        "Common Name",
        "Real Address",
        "Last Ref",
        "Last Ref (time_t)",
    ]);
    for c in &snap.clients {
        for target in routes_of(c) {
            row(&[
                "ROUTING_TABLE",
                &target,
                &c.common_name,
                &real_address(c.real),
                &c.last_ref.format(),
                &c.last_ref.unix.to_string(),
            ]);
        }
    }
    row(&["GLOBAL_STATS", "Max bcast/mcast queue length", "0"]);
    row(&["GLOBAL_STATS", "dco_enabled", "0"]);
    row(&["END"]);
}

/// Management output: every line CRLF-terminated.
pub fn to_crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for line in text.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = include_str!("../../tests/vectors/mgmt/openvpn-2.6.14/status-file-v1.txt");
    const V3: &str = include_str!("../../tests/vectors/mgmt/openvpn-2.6.14/status-file-v3.txt");
    const V3_EMPTY: &str =
        include_str!("../../tests/vectors/mgmt/openvpn-2.6.14/status-file-v3-empty.txt");
    const V2_EMPTY: &str =
        include_str!("../../tests/vectors/mgmt/openvpn-2.6.14/status-file-v2-empty.txt");
    const M2: &[u8] = include_bytes!("../../tests/vectors/mgmt/openvpn-2.6.14/mgmt-status-2.raw");
    const M3: &[u8] = include_bytes!("../../tests/vectors/mgmt/openvpn-2.6.14/mgmt-status-3.raw");
    const M1: &[u8] = include_bytes!("../../tests/vectors/mgmt/openvpn-2.6.14/mgmt-status-1.raw");
    const OVPN_TITLE: &str = "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]";

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// client1 (IPv4 underlay, iroutes) and client2 (native IPv6 underlay) as in the golden
    /// `mgmt-status-{1,2,3}.raw` capture.
    fn capture_snapshot(now: u64) -> StatusSnapshot {
        StatusSnapshot {
            title: OVPN_TITLE.into(),
            now: Stamp::utc(now),
            clients: vec![
                ClientRow {
                    common_name: "client2".into(),
                    real: "[fd00:200:2::2]:47108".parse().unwrap(),
                    v4: Some(Ipv4Addr::new(10, 8, 0, 3)),
                    v6: Some("fd00:8::1001".parse().unwrap()),
                    iroutes: vec![],
                    bytes_in: 2679,
                    bytes_out: 2292,
                    connected_since: Stamp::utc(1_795_894_099),
                    last_ref: Stamp::utc(1_795_894_099),
                    username: None,
                    client_id: 1,
                    peer_id: 1,
                    cipher: "AES-256-GCM".into(),
                },
                ClientRow {
                    common_name: "client1".into(),
                    // v4-mapped, as a dual-stack socket reports it.
                    real: "[::ffff:10.200.1.2]:39137".parse().unwrap(),
                    v4: Some(Ipv4Addr::new(10, 8, 0, 2)),
                    v6: Some("fd00:8::1000".parse().unwrap()),
                    iroutes: vec![net("10.99.0.0/24"), net("fd00:99::/64")],
                    bytes_in: 2679,
                    bytes_out: 2293,
                    connected_since: Stamp::utc(1_795_894_096),
                    last_ref: Stamp::utc(1_795_894_096),
                    username: None,
                    client_id: 0,
                    peer_id: 0,
                    cipher: "AES-256-GCM".into(),
                },
            ],
        }
    }

    /// Lines of `text` with the routing rows sorted in place (OpenVPN prints them in hash
    /// order, fwd in client order).
    fn canonical(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut routes = Vec::new();
        let mut in_v1_routes = false;
        for line in text.lines() {
            if line.starts_with("GLOBAL") {
                in_v1_routes = false;
            }
            if in_v1_routes || line.starts_with("ROUTING_TABLE") {
                if routes.is_empty() {
                    out.push(String::from("<routes>"));
                }
                routes.push(line.to_string());
            } else {
                out.push(line.to_string());
            }
            if line.starts_with("Virtual Address,Common Name") {
                in_v1_routes = true;
            }
        }
        routes.sort();
        if let Some(i) = out.iter().position(|l| l == "<routes>") {
            out.splice(i..=i, routes);
        }
        out
    }

    #[test]
    fn v2_matches_openvpn_byte_for_byte() {
        let golden = String::from_utf8(M2.to_vec()).unwrap();
        let ours = to_crlf(&render(StatusVersion::V2, &capture_snapshot(1_795_894_111)));
        assert_eq!(canonical(&ours), canonical(&golden));
        // Same line terminator everywhere.
        assert_eq!(ours.matches("\r\n").count(), ours.matches('\n').count());
    }

    #[test]
    fn v3_matches_openvpn_byte_for_byte() {
        let golden = String::from_utf8(M3.to_vec()).unwrap();
        let ours = to_crlf(&render(StatusVersion::V3, &capture_snapshot(1_795_894_112)));
        assert_eq!(canonical(&ours), canonical(&golden));
    }

    #[test]
    fn v1_matches_openvpn_byte_for_byte() {
        let golden = String::from_utf8(M1.to_vec()).unwrap();
        let mut snap = capture_snapshot(1_795_894_110);
        snap.clients[0].bytes_in = 2639;
        snap.clients[1].bytes_in = 2679;
        let ours = to_crlf(&render(StatusVersion::V1, &snap));
        assert_eq!(canonical(&ours), canonical(&golden));
    }

    #[test]
    fn v1_file_shape_matches() {
        // The status file (LF) differs from the mgmt capture only in counters and times.
        let mut snap = capture_snapshot(1_795_894_100);
        snap.clients[0].bytes_in = 2439;
        snap.clients[0].bytes_out = 2252;
        snap.clients[1].bytes_in = 2639;
        snap.clients[1].bytes_out = 2253;
        let ours = render(StatusVersion::V1, &snap);
        assert_eq!(canonical(&ours), canonical(V1));
        assert!(!ours.contains('\r'));
    }

    #[test]
    fn empty_v2_v3_match() {
        let snap = |now| StatusSnapshot {
            title: OVPN_TITLE.into(),
            now: Stamp::utc(now),
            clients: vec![],
        };
        assert_eq!(render(StatusVersion::V2, &snap(1_795_894_173)), V2_EMPTY);
        assert_eq!(render(StatusVersion::V3, &snap(1_795_894_194)), V3_EMPTY);
    }

    #[test]
    fn v3_file_with_one_client() {
        let mut snap = capture_snapshot(1_795_894_213);
        snap.clients.remove(0);
        let c = &mut snap.clients[0];
        c.real = "10.200.1.2:40121".parse().unwrap();
        c.bytes_in = 2759;
        c.bytes_out = 2292;
        c.connected_since = Stamp::utc(1_795_894_198);
        c.last_ref = c.connected_since;
        assert_eq!(canonical(&render(StatusVersion::V3, &snap)), canonical(V3));
    }

    #[test]
    fn real_address_forms() {
        assert_eq!(
            real_address("198.51.100.7:51234".parse().unwrap()),
            "198.51.100.7:51234"
        );
        assert_eq!(
            real_address("[::ffff:198.51.100.7]:51234".parse().unwrap()),
            "198.51.100.7:51234"
        );
        assert_eq!(
            real_address("[2001:db8::7]:51234".parse().unwrap()),
            "2001:db8::7"
        );
    }

    #[test]
    fn missing_addresses_are_empty_fields_and_host_iroutes_bare() {
        let mut snap = capture_snapshot(1_795_894_111);
        snap.clients.truncate(1);
        let c = &mut snap.clients[0];
        c.v4 = None;
        c.username = Some("bob".into());
        c.iroutes = vec![
            net("192.168.5.7/32"),
            net("192.168.5.0/24"),
            net("2001:db8:100:5::/64"),
        ];
        let text = render(StatusVersion::V2, &snap);
        assert!(text.contains(
            "\nCLIENT_LIST,client2,fd00:200:2::2,,fd00:8::1001,2679,2292,2026-11-28 19:28:19,1795894099,bob,1,1,AES-256-GCM\n"
        ));
        for target in [
            "fd00:8::1001",
            "192.168.5.7",
            "192.168.5.0/24",
            "2001:db8:100:5::/64",
        ] {
            assert!(
                text.contains(&format!("\nROUTING_TABLE,{target},client2,fd00:200:2::2,")),
                "{target} missing in\n{text}"
            );
        }
        assert_eq!(text.matches("\nROUTING_TABLE,").count(), 4);
        assert!(text.ends_with("\nEND\n"));
    }

    #[test]
    fn separators_in_names_do_not_break_rows() {
        let mut snap = capture_snapshot(1);
        snap.clients[0].common_name = "a,b\tc".into();
        let v1 = render(StatusVersion::V1, &snap);
        assert!(v1.contains("\na_b\tc,"));
        let v3 = render(StatusVersion::V3, &snap);
        assert!(v3.contains("\nCLIENT_LIST\ta,b_c\t"));
    }

    #[test]
    fn version_numbers() {
        assert_eq!(StatusVersion::try_from(1), Ok(StatusVersion::V1));
        assert_eq!(StatusVersion::try_from(3), Ok(StatusVersion::V3));
        assert_eq!(StatusVersion::try_from(4), Err(4));
        assert_eq!(StatusVersion::try_from(0), Err(0));
    }
}
