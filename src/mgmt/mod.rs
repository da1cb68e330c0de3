//! Management interface and status file (OpenVPN 2.6 formats, server-ipv6.md §10).
//!
//! Pure parts: [`status`] renders the status text from a [`status::StatusSnapshot`],
//! [`command`] parses management command lines, [`reply`] executes a parsed command against
//! the server's state (through the [`reply::ServerState`] trait) and formats the answer.
//! IO part: [`server`] runs the TCP listener and one thread per management connection; those
//! threads never touch server state, they send [`server::MgmtRequest`]s to the control thread.

pub mod command;
pub mod reply;
pub mod server;
pub mod status;
pub mod time;

/// The program title, in OpenVPN's `title_string` shape (`TITLE` row, `version`, `help`).
pub fn title() -> String {
    format!(
        "fwd {} {}-{} [SSL (rustls)] [OpenVPN 2.6 compatible]",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}
