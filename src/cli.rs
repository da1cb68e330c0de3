//! OpenVPN-style argv: `--option args…` is the same as a config line `option args…`, plus subcommands.

/// Entry point used by `main.rs`; returns the process exit code.
pub fn main() -> i32 {
    0
}
