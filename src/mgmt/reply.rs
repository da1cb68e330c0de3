//! Answers to management commands, byte-compatible with OpenVPN 2.6 where the command exists
//! there (tests/vectors/mgmt/openvpn-2.6.14/). Every reply is complete text with CRLF line ends.
//!
//! Commands that need server state run through [`execute`] on the control thread, against the
//! [`ServerState`] trait (implemented by the server process, faked in tests); the rest are
//! answered by [`local`] on the management connection's own thread from [`LocalInfo`].

use std::net::SocketAddr;

use crate::mgmt::command::{Command, KillTarget, StateArg};
use crate::mgmt::status::{self, StatusSnapshot, StatusVersion};

/// First line sent on a new management connection (same text as OpenVPN: clients wait for it).
pub const GREETING: &str =
    ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info\r\n";

/// `load-stats` numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub nclients: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What the control thread offers to management commands.
pub trait ServerState {
    fn snapshot(&mut self) -> StatusSnapshot;
    /// The configured `status-version` (for `status` / `status 0`).
    fn default_status_version(&self) -> StatusVersion;
    fn load_stats(&self) -> LoadStats;
    /// Disconnect every client with this common name silently; returns how many.
    fn kill_by_cn(&mut self, cn: &str) -> usize;
    /// Disconnect the client(s) at this real address silently; returns how many.
    fn kill_by_addr(&mut self, addr: SocketAddr) -> usize;
    /// Send `message` to client `cid` and disconnect it; false if there is no such client.
    fn client_kill(&mut self, cid: u64, message: &str) -> bool;
    /// `(client id, bytes in, bytes out)` per client, for `>BYTECOUNT_CLI`.
    fn byte_counts(&mut self) -> Vec<(u64, u64, u64)>;
}

/// Static facts the connection threads answer from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalInfo {
    pub title: String,
    pub pid: u32,
    pub verb: u32,
    /// Unix time the server came up.
    pub started: u64,
    /// The server's own tunnel addresses, for the `state` line.
    pub tun_v4: Option<std::net::Ipv4Addr>,
    pub tun_v6: Option<std::net::Ipv6Addr>,
}

fn line(s: &str) -> String {
    format!("{s}\r\n")
}

/// Run a command that [`Command::needs_server`]; other commands get `None`.
pub fn execute(cmd: &Command, state: &mut dyn ServerState) -> Option<String> {
    Some(match cmd {
        Command::Status(v) => {
            let version = v.unwrap_or_else(|| state.default_status_version());
            status::to_crlf(&status::render(version, &state.snapshot()))
        }
        Command::LoadStats => {
            let s = state.load_stats();
            line(&format!(
                "SUCCESS: nclients={},bytesin={},bytesout={}",
                s.nclients, s.bytes_in, s.bytes_out
            ))
        }
        Command::Kill(KillTarget::CommonName(cn)) => match state.kill_by_cn(cn) {
            0 => line(&format!("ERROR: common name '{cn}' not found")),
            n => line(&format!(
                "SUCCESS: common name '{cn}' found, {n} client(s) killed"
            )),
        },
        Command::Kill(KillTarget::Address(addr)) => {
            let shown = match addr {
                SocketAddr::V4(a) => a.to_string(),
                SocketAddr::V6(a) => format!("{}:{}", a.ip(), a.port()),
            };
            match state.kill_by_addr(*addr) {
                0 => line(&format!("ERROR: client at address {shown} not found")),
                n => line(&format!("SUCCESS: {n} client(s) at address {shown} killed")),
            }
        }
        Command::ClientKill { cid, message } => {
            if state.client_kill(*cid, message.as_deref().unwrap_or("RESTART")) {
                line("SUCCESS: client-kill command succeeded")
            } else {
                line("ERROR: client-kill command failed")
            }
        }
        _ => return None,
    })
}

/// `>BYTECOUNT_CLI:CID,IN,OUT` lines for every client.
pub fn bytecount_lines(state: &mut dyn ServerState) -> String {
    state
        .byte_counts()
        .into_iter()
        .map(|(cid, i, o)| line(&format!(">BYTECOUNT_CLI:{cid},{i},{o}")))
        .collect()
}

/// Answer a command that does not need server state. `None` for commands that do, and for
/// `quit` (the connection closes) — an empty string means "no reply" (blank line, `version N`).
pub fn local(cmd: &Command, info: &LocalInfo) -> Option<String> {
    Some(match cmd {
        Command::Empty | Command::Version(Some(_)) => String::new(),
        Command::Help => help(&info.title),
        Command::Pid => line(&format!("SUCCESS: pid={}", info.pid)),
        Command::Version(None) => {
            format!(
                "OpenVPN Version: {}\r\nManagement Version: 5\r\nEND\r\n",
                info.title
            )
        }
        Command::State(StateArg::History) => {
            let v4 = info.tun_v4.map(|a| a.to_string()).unwrap_or_default();
            let v6 = info.tun_v6.map(|a| a.to_string()).unwrap_or_default();
            format!(
                "{},CONNECTED,SUCCESS,{v4},,,,,{v6}\r\nEND\r\n",
                info.started
            )
        }
        // The state never changes after start-up, so there is nothing to notify either way.
        Command::State(StateArg::On) => line("SUCCESS: real-time state notification set to ON"),
        Command::State(StateArg::Off) => line("SUCCESS: real-time state notification set to OFF"),
        Command::Bytecount(_) => line("SUCCESS: bytecount interval changed"),
        Command::Verb(None) => line(&format!("SUCCESS: verb={}", info.verb)),
        Command::Verb(Some(_)) => line("ERROR: fwd cannot change the log level at run time"),
        Command::Quit
        | Command::Status(_)
        | Command::LoadStats
        | Command::Kill(_)
        | Command::ClientKill { .. } => return None,
    })
}

/// `help`: OpenVPN's layout, listing what fwd implements.
pub fn help(title: &str) -> String {
    let lines = [
        "Commands:",
        "bytecount n            : Show bytes in/out, update every n secs (0=off).",
        "exit|quit              : Close management session.",
        "help                   : Print this message.",
        "kill cn                : Kill the client instance(s) having common name cn.",
        "kill IP:port           : Kill the client instance connecting from IP:port.",
        "load-stats             : Show global server load stats.",
        "pid                    : Show process ID of the current OpenVPN process.",
        "client-kill CID [M]    : Kill client instance CID with message M (def=RESTART)",
        "state [on|off] [N|all] : Like log, but show state history.",
        "status [n]             : Show current daemon status info using format #n.",
        "verb [n]               : Set log verbosity level to n, or show if n is absent.",
        "version [n]            : Set client's version to n or show current version of daemon.",
        "END",
    ];
    let mut out = line(&format!("Management Interface for {title}"));
    for l in lines {
        out.push_str(&line(l));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::command::parse;
    use crate::mgmt::time::Stamp;

    const DIR: &str = "tests/vectors/mgmt/openvpn-2.6.14";

    fn golden(name: &str) -> String {
        let path = format!("{}/{DIR}/{name}", env!("CARGO_MANIFEST_DIR"));
        String::from_utf8(std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
    }

    const OVPN_TITLE: &str = "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)] [LZO] [LZ4] [EPOLL] [PKCS11] [MH/PKTINFO] [AEAD] [DCO]";

    #[derive(Default)]
    struct Fake {
        killed_cn: Vec<String>,
        killed_addr: Vec<SocketAddr>,
        client_kills: Vec<(u64, String)>,
    }

    impl ServerState for Fake {
        fn snapshot(&mut self) -> StatusSnapshot {
            StatusSnapshot {
                title: OVPN_TITLE.into(),
                now: Stamp::utc(1_795_894_175),
                clients: vec![],
            }
        }
        fn default_status_version(&self) -> StatusVersion {
            StatusVersion::V2
        }
        fn load_stats(&self) -> LoadStats {
            LoadStats {
                nclients: 2,
                bytes_in: 5358,
                bytes_out: 4717,
            }
        }
        fn kill_by_cn(&mut self, cn: &str) -> usize {
            self.killed_cn.push(cn.into());
            usize::from(cn == "client1")
        }
        fn kill_by_addr(&mut self, addr: SocketAddr) -> usize {
            self.killed_addr.push(addr);
            usize::from(addr.port() == 39137)
        }
        fn client_kill(&mut self, cid: u64, message: &str) -> bool {
            self.client_kills.push((cid, message.into()));
            cid == 1
        }
        fn byte_counts(&mut self) -> Vec<(u64, u64, u64)> {
            vec![(0, 2760, 2371)]
        }
    }

    fn run(cmd: &str, fake: &mut Fake) -> String {
        execute(&parse(cmd).unwrap(), fake).unwrap()
    }

    fn info() -> LocalInfo {
        LocalInfo {
            title: OVPN_TITLE.into(),
            pid: 26548,
            verb: 3,
            started: 1_795_894_094,
            tun_v4: Some("10.8.0.1".parse().unwrap()),
            tun_v6: Some("fd00:8::1".parse().unwrap()),
        }
    }

    #[test]
    fn server_replies_match_openvpn() {
        let mut f = Fake::default();
        assert_eq!(run("load-stats", &mut f), golden("mgmt-load-stats.raw"));
        assert_eq!(run("status", &mut f), golden("mgmt-status-2-empty.raw"));
        let tsv = golden("mgmt-replies.tsv");
        for (cmd, want) in tsv.lines().filter_map(|l| l.split_once('\t')) {
            let covered = [
                "kill client1",
                "kill nosuch",
                "kill 1.2.3.4:5",
                "client-kill 1",
                "client-kill 99",
            ];
            if covered.contains(&cmd) {
                assert_eq!(run(cmd, &mut f), format!("{want}\r\n"), "{cmd}");
            }
        }
        assert_eq!(f.killed_cn, ["nosuch", "client1"]);
        assert_eq!(
            f.client_kills,
            [(99, "RESTART".to_string()), (1, "RESTART".to_string())]
        );
        assert_eq!(
            run("client-kill 1 HALT", &mut f),
            "SUCCESS: client-kill command succeeded\r\n"
        );
        assert_eq!(f.client_kills.last(), Some(&(1, "HALT".to_string())));
        assert_eq!(
            run("kill 10.200.1.2:39137", &mut f),
            "SUCCESS: 1 client(s) at address 10.200.1.2:39137 killed\r\n"
        );
        assert_eq!(
            run("kill [fd00::2]:5", &mut f),
            "ERROR: client at address fd00::2:5 not found\r\n"
        );
        assert_eq!(bytecount_lines(&mut f), ">BYTECOUNT_CLI:0,2760,2371\r\n");
    }

    #[test]
    fn local_replies_match_openvpn() {
        let i = info();
        let l = |c: &str| local(&parse(c).unwrap(), &i).unwrap();
        assert_eq!(GREETING, golden("mgmt-greeting.raw"));
        assert_eq!(l("version"), golden("mgmt-version.raw"));
        assert_eq!(l("pid"), golden("mgmt-pid.raw"));
        assert_eq!(l("version 2"), "");
        assert_eq!(l(""), "");
        for (cmd, want) in golden("mgmt-replies.tsv")
            .lines()
            .filter_map(|x| x.split_once('\t'))
        {
            if ["verb", "state", "bytecount 0", "state off"].contains(&cmd) {
                assert_eq!(
                    l(cmd),
                    if cmd == "state" {
                        format!("{want}\r\nEND\r\n")
                    } else {
                        format!("{want}\r\n")
                    },
                    "{cmd}"
                );
            }
        }
        assert!(local(&Command::Quit, &i).is_none());
        assert!(local(&parse("status").unwrap(), &i).is_none());
    }

    #[test]
    fn help_is_a_subset_of_openvpns() {
        let theirs = golden("mgmt-help.raw");
        let ours = help(OVPN_TITLE);
        for l in ours.split_inclusive("\r\n") {
            assert!(theirs.contains(l), "not in openvpn's help: {l:?}");
        }
        assert!(ours.starts_with(&format!(
            "Management Interface for {OVPN_TITLE}\r\nCommands:\r\n"
        )));
        assert!(ours.ends_with("\r\nEND\r\n"));
    }

    #[test]
    fn local_commands_do_not_reach_execute() {
        let mut f = Fake::default();
        assert!(execute(&Command::Pid, &mut f).is_none());
        assert!(execute(&Command::Help, &mut f).is_none());
    }
}
