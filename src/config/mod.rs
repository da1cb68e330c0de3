//! OpenVPN config language: lexer, typed directives, macro expansion, ccd files, warnings.
//!
//! Public entry points:
//! * [`load_file`] / [`load_args`] → [`Loaded`] (`config` + `warnings` + `sources`), or every
//!   error found as [`ConfigErrors`] (each displays as `FILE:LINE: directive: reason`);
//! * [`render_effective`] — canonical one-directive-per-line text of a [`Config`];
//! * [`ccd::load_for`] — per-client files; [`check::ccd_warnings`] — `fwd check`'s ccd scan.
//!
//! Invariants: a [`Config`] is immutable, fully typed and macro-expanded (OpenVPN 2.6
//! semantics, see /work/shared/protocol/server-ipv6.md); key material is already read into
//! memory; nothing here panics on any input.
//!
//! Modules: `lexer` (tokens, quoting, inline blocks), `args` (typed argument parsers),
//! `options` (the documented option table), `directive` (line → builder), `load` (files,
//! includes, unknown-option policy), `expand` (server/server-ipv6/keepalive/client macros and
//! cross checks), `render`, `ccd`, `check` (warnings), `error`, `model` (the types).

pub mod args;
pub mod ccd;
pub mod check;
pub mod directive;
pub mod error;
pub mod expand;
pub mod lexer;
pub mod load;
pub mod model;
pub mod options;
pub mod render;

pub use directive::parse_static_key;
pub use error::{ConfigError, ConfigErrors, ErrorKind, Location, Source, Warning};
pub use model::*;
pub use render::{render_effective, render_with, RenderOptions};

use std::collections::BTreeMap;
use std::path::Path;

/// Where directives of the loaded config came from (for warnings and diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMap {
    /// Top-level file (or command line).
    pub top: Location,
    /// Last location of each directive name that was given.
    pub directives: BTreeMap<String, Location>,
    /// Parallel to `Config::routes` (macro routes point at the `server` line).
    pub routes: Vec<Location>,
    /// Parallel to `Config::routes_v6`.
    pub routes_v6: Vec<Location>,
    /// Parallel to `Config::push`; None for macro-generated entries.
    pub push: Vec<Option<Location>>,
    pub topology_explicit: bool,
    pub max_clients_explicit: bool,
}

/// A successfully loaded configuration.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Warning>,
    pub sources: SourceMap,
}

/// Load a config file (paths inside are relative to the current directory, like OpenVPN).
pub fn load_file(path: &Path) -> Result<Loaded, ConfigErrors> {
    let mut l = load::Loader::new();
    let top = Location::file(path.to_path_buf());
    l.include(path, top.clone());
    l.finish(top)
}

/// Load from argv (after the program name / subcommand): `--config F` and any `--opt args`.
/// Later options override earlier ones, so `--config f --threads 4` overrides the file.
pub fn load_args(args: &[String]) -> Result<Loaded, ConfigErrors> {
    let mut l = load::Loader::new();
    l.args(args);
    l.finish(load::top_location(args))
}

/// Load config text as if it were the file `name` (tests, fuzzing).
pub fn load_str(text: &str, name: &Path) -> Result<Loaded, ConfigErrors> {
    let mut l = load::Loader::new();
    l.text(text, name);
    l.finish(Location::file(name.to_path_buf()))
}
