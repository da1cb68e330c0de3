//! `fwd demo`: a throw-away lab in network namespaces showing fwd at work.

use std::io::Write;

/// Entry point of `fwd demo`; returns the exit code.
pub fn main(_out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let _ = writeln!(err, "fwd demo: not available in this build yet");
    2
}
