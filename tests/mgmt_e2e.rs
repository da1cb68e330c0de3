//! End to end: fwd server + one stock openvpn 2.6 client in a netns lab; the status file in
//! all three formats and the management interface over TCP with two simultaneous clients.
//!
//! Shapes are compared with openvpn 2.6.14's own output (tests/vectors/mgmt/openvpn-2.6.14/)
//! after masking what legitimately differs (times, ports, byte counts, the TITLE).
//! Needs root, /dev/net/tun, `ip`, `openvpn`, `openssl`; skips elsewhere, fails under CI.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::net::{edit, wait_until, Mgmt, Net};
use common::scenario::Underlay;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/mgmt/openvpn-2.6.14"
);

/// The reference server config (without its routes and pushes) with client1's ccd, quick
/// keepalive, exit notify, a status file of `version` and the management interface.
fn server_conf(net: &Net, ccd: &Path, status: &Path, version: u8) -> String {
    edit(
        &net.base_server_conf(),
        &["client-to-client", "keepalive"],
        &format!(
            "client-config-dir {}\nkeepalive 2 6\nexplicit-exit-notify 1\n\
             status {} 1\nstatus-version {version}\n{}",
            ccd.display(),
            status.display(),
            Net::mgmt_conf()
        ),
    )
}

/// Mask what differs between runs and implementations: times, unix times, ports, byte
/// counts, the title; sort routing rows (OpenVPN prints them in hash order).
fn shape(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut routes = Vec::new();
    let mut in_v1_routes = false;
    let sep = if text.contains('\t') { '\t' } else { ',' };
    for line in text.lines() {
        if line.starts_with("GLOBAL") {
            in_v1_routes = false;
        }
        let fields: Vec<String> = line
            .split(sep)
            .enumerate()
            .map(|(i, f)| mask(i, f, line.starts_with("TITLE")))
            .collect();
        let masked = fields.join(&sep.to_string());
        if in_v1_routes || line.starts_with("ROUTING_TABLE") {
            routes.push(masked);
        } else {
            out.push(masked);
        }
        if line.starts_with("Virtual Address,") {
            in_v1_routes = true;
        }
    }
    routes.sort();
    out.extend(routes);
    out
}

fn mask(i: usize, f: &str, title: bool) -> String {
    let is_time =
        f.len() == 19 && f.as_bytes().get(4) == Some(&b'-') && f.as_bytes().get(13) == Some(&b':');
    if title && i == 1 {
        "<title>".into()
    } else if is_time {
        "<time>".into()
    } else if !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()) && i > 0 {
        // Counters, unix times, CIDs and peer ids vary; their presence and position do not.
        "<n>".into()
    } else if let Some((ip, port)) = f
        .rsplit_once(':')
        .filter(|(ip, _)| ip.parse::<std::net::Ipv4Addr>().is_ok())
    {
        let _ = port;
        format!("{ip}:<port>")
    } else {
        f.to_string()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A management connection to the server; asserts fwd's exact greeting.
fn connect_mgmt(net: &Net) -> Mgmt {
    let m = net.mgmt();
    assert_eq!(
        m.greeting,
        ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\r\n"
    );
    m
}

/// The CLIENT_LIST row of client1 in a v2 status text, split into fields.
fn client_row(v2: &str) -> Option<Vec<String>> {
    v2.lines()
        .find(|l| l.starts_with("CLIENT_LIST,client1,"))
        .map(|l| l.trim_end().split(',').map(str::to_string).collect())
}

/// The lab (server + client1) and client1's ccd file with its iroutes.
fn setup() -> Option<(Net, PathBuf)> {
    let net = Net::new("mgmt", Underlay::V4, &["client1"])?;
    let ccd = net.dir.join("ccd");
    std::fs::create_dir_all(&ccd).unwrap();
    std::fs::write(
        ccd.join("client1"),
        "iroute 10.99.0.0 255.255.255.0\niroute-ipv6 fd00:99::/64\n",
    )
    .unwrap();
    Some((net, ccd))
}

#[test]
fn status_file_and_management() {
    let Some((mut s, ccd)) = setup() else { return };
    let fwd = env!("CARGO_BIN_EXE_fwd");
    let client_conf_path = s.dir.join("client1.conf");
    std::fs::write(&client_conf_path, s.client_conf(0)).unwrap();
    let mut client_started = false;

    let golden_v1 = std::fs::read_to_string(format!("{GOLDEN}/status-file-v1.txt")).unwrap();
    let golden_v3 = std::fs::read_to_string(format!("{GOLDEN}/status-file-v3.txt")).unwrap();

    for version in [1u8, 2, 3] {
        let status = s.dir.join(format!("status-v{version}.txt"));
        let conf = s.dir.join(format!("server-v{version}.conf"));
        std::fs::write(&conf, server_conf(&s, &ccd, &status, version)).unwrap();
        let log = s.dir.join(format!("fwd-v{version}.log"));
        let server = s.server.clone();
        let id = s
            .lab
            .spawn(&server, &[fwd, "--config", &conf.to_string_lossy()], &log);
        s.lab
            .wait_for_log(
                &log,
                "MANAGEMENT: TCP Socket listening",
                Duration::from_secs(15),
            )
            .unwrap_or_else(|e| panic!("fwd did not start: {e}"));
        if !client_started {
            let client = s.client(0).clone();
            s.lab.spawn(
                &client,
                &["openvpn", "--config", &client_conf_path.to_string_lossy()],
                &s.dir.join("client1.log"),
            );
            client_started = true;
        }
        // The client (re)connects: first start, or after the previous server's RESTART.
        let text = wait_until(
            Duration::from_secs(30),
            &format!("client1 in the v{version} status file"),
            || {
                let t = read(&status);
                (t.contains("client1") && t.ends_with("END\n")).then_some(t)
            },
        );
        assert!(!text.contains('\r'), "status file lines end with LF only");
        match version {
            1 => {
                // openvpn's capture had two clients; keep its header/footer lines and compare
                // client1's rows.
                let ours = shape(&text);
                let theirs: Vec<String> = shape(&golden_v1)
                    .into_iter()
                    .filter(|l| !l.contains("client2"))
                    .collect();
                assert_eq!(ours, theirs, "v1 status file:\n{text}");
            }
            2 => {
                let theirs = golden_v3.replace('\t', ",");
                assert_eq!(shape(&text), shape(&theirs), "v2 status file:\n{text}");
            }
            _ => assert_eq!(shape(&text), shape(&golden_v3), "v3 status file:\n{text}"),
        }
        if version < 3 {
            s.lab.kill(id);
            continue;
        }

        // Two management clients at once.
        let mut a = connect_mgmt(&s);
        let mut b = connect_mgmt(&s);
        let v2 = a.multi("status 2");
        assert_eq!(
            shape(&v2.replace("\r\n", "\n")),
            shape(&golden_v3.replace('\t', ","))
        );
        assert_eq!(
            b.one("load-stats").split_once(',').map(|x| x.0),
            Some("SUCCESS: nclients=1")
        );
        let v3 = b.multi("status");
        assert!(
            v3.starts_with("TITLE\tfwd "),
            "bare status uses status-version 3: {v3}"
        );
        let v1 = a.multi("status 1");
        assert!(v1.starts_with("OpenVPN CLIENT LIST\r\n"));
        assert!(b
            .multi("version")
            .contains("\r\nManagement Version: 5\r\nEND\r\n"));
        assert_eq!(a.one("pid"), format!("SUCCESS: pid={}", s.lab.pid(id)));
        assert_eq!(
            a.one("bogus"),
            "ERROR: unknown command, enter 'help' for more options"
        );
        assert_eq!(
            b.one("kill nosuch"),
            "ERROR: common name 'nosuch' not found"
        );

        let row = client_row(&v2).expect("client1 row");
        assert_eq!(row.len(), 13, "{row:?}");
        assert_eq!(&row[3..5], ["10.8.0.2", "fd00:8::1000"]);
        assert_eq!(row[9], "UNDEF");
        assert_eq!(row[12], "AES-256-GCM");
        let cid: u64 = row[10].parse().unwrap();

        // kill CN: silent disconnect; the client notices by ping-restart and reconnects with
        // a new client id.
        assert_eq!(
            a.one("kill client1"),
            "SUCCESS: common name 'client1' found, 1 client(s) killed"
        );
        assert!(
            client_row(&b.multi("status 2")).is_none(),
            "client1 still listed after kill"
        );
        let row = wait_until(Duration::from_secs(30), "client1 back after kill", || {
            client_row(&b.multi("status 2"))
        });
        let cid2: u64 = row[10].parse().unwrap();
        assert!(cid2 > cid, "new connection, new CID ({cid} -> {cid2})");

        // client-kill CID: the client is told RESTART and comes back at once.
        assert_eq!(
            a.one(&format!("client-kill {cid2}")),
            "SUCCESS: client-kill command succeeded"
        );
        let row = wait_until(
            Duration::from_secs(30),
            "client1 back after client-kill",
            || client_row(&a.multi("status 2")).filter(|r| r[10] != cid2.to_string()),
        );
        assert!(row[10].parse::<u64>().unwrap() > cid2);
        let client_log = read(&s.dir.join("client1.log"));
        assert!(
            client_log.contains("server-pushed-connection-reset"),
            "client did not get RESTART"
        );
        assert_eq!(
            a.one(&format!("client-kill {cid2}")),
            "ERROR: client-kill command failed"
        );

        // bytecount: periodic per-client counters on this connection only.
        assert_eq!(b.one("bytecount 1"), "SUCCESS: bytecount interval changed");
        let l = b.line();
        assert!(l.starts_with(">BYTECOUNT_CLI:"), "{l:?}");
        assert_eq!(b.one("bytecount 0"), "SUCCESS: bytecount interval changed");

        b.send("quit");
        a.send("exit");
        s.lab.kill(id);
        // Written once more at shutdown, still complete.
        assert!(read(&status).ends_with("END\n"));
    }
}
