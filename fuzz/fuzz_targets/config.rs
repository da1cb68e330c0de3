//! Fuzzes the config language: arbitrary text through the loader (lexer, typed directives,
//! macro expansion, warnings) and the ccd parser must give a config or errors, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(loaded) = fwd::config::load_str(text, Path::new("fuzz.conf")) {
        let _ = fwd::config::render_effective(&loaded.config);
    }
    let _ = fwd::config::ccd::parse_text(text, Path::new("ccd/fuzz"));
});
