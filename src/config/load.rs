//! Loading: reads files (with `config` includes and `cd`), feeds every directive to the
//! [`Builder`], applies the unknown-option policy, then expands macros.
//!
//! Include guard: a file may not include itself (directly or indirectly) and nesting is
//! limited to [`MAX_DEPTH`] (OpenVPN uses 10). Errors are collected across all files.

use super::directive::{Builder, Env};
use super::error::{ConfigError, ConfigErrors, ErrorKind, Location, Source, Warning};
use super::lexer::{lex_args, lex_text, Line};
use super::{expand, Loaded};
use std::path::{Path, PathBuf};

pub const MAX_DEPTH: usize = 10;

/// Mutable state while reading one configuration.
pub struct Loader {
    pub builder: Builder,
    pub errors: ConfigErrors,
    pub warnings: Vec<Warning>,
    base_dir: PathBuf,
    stack: Vec<PathBuf>,
}

impl Default for Loader {
    fn default() -> Self {
        Self::new()
    }
}

impl Loader {
    pub fn new() -> Self {
        Loader {
            builder: Builder::default(),
            errors: ConfigErrors::default(),
            warnings: Vec::new(),
            base_dir: PathBuf::new(),
            stack: Vec::new(),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() || self.base_dir.as_os_str().is_empty() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Read and apply a config file; `at` is the location of the `config` directive.
    pub fn include(&mut self, path: &Path, at: Location) {
        let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&key) {
            self.errors.push(ConfigError::new(
                at,
                "config",
                ErrorKind::Invalid(format!("include loop: {} includes itself", path.display())),
            ));
            return;
        }
        if self.stack.len() >= MAX_DEPTH {
            self.errors.push(ConfigError::new(
                at,
                "config",
                ErrorKind::Invalid(format!("includes nested deeper than {MAX_DEPTH}")),
            ));
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.errors.push(ConfigError::new(
                    at,
                    "config",
                    ErrorKind::Io {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    },
                ));
                return;
            }
        };
        self.stack.push(key);
        let (lines, errs) = lex_text(&text, &Location::file(path.to_path_buf()));
        self.errors.0.extend(errs);
        for l in &lines {
            self.line(l, false);
        }
        self.stack.pop();
    }

    /// Apply directives from argv (after the program name / subcommand).
    pub fn args(&mut self, args: &[String]) {
        let (lines, errs) = lex_args(args);
        self.errors.0.extend(errs);
        for l in &lines {
            self.line(l, false);
        }
    }

    /// Apply one directive. `ignorable` = came from `setenv opt`.
    fn line(&mut self, l: &Line, ignorable: bool) {
        let err = |kind| ConfigError::new(l.location.clone(), l.name(), kind);
        match l.name() {
            "config" => {
                if l.args().len() != 1 {
                    self.errors.push(err(ErrorKind::ArgCount {
                        expected: "1 argument(s)".into(),
                        got: l.args().len(),
                    }));
                    return;
                }
                let p = self.resolve(l.args().first().map(String::as_str).unwrap_or(""));
                self.include(&p, l.location.clone());
            }
            "cd" => {
                if l.args().len() != 1 {
                    self.errors.push(err(ErrorKind::ArgCount {
                        expected: "1 argument(s)".into(),
                        got: l.args().len(),
                    }));
                    return;
                }
                let d = self.resolve(l.args().first().map(String::as_str).unwrap_or(""));
                if !d.is_dir() {
                    self.errors.push(err(ErrorKind::Invalid(format!(
                        "{} is not a directory",
                        d.display()
                    ))));
                    return;
                }
                self.base_dir = d;
            }
            "ignore-unknown-option" => {
                if l.args().is_empty() {
                    self.errors.push(err(ErrorKind::ArgCount {
                        expected: "at least 1 argument(s)".into(),
                        got: 0,
                    }));
                    return;
                }
                self.builder
                    .ignore_unknown_option
                    .extend(l.args().iter().cloned());
            }
            "setenv" if l.args().first().is_some_and(|a| a == "opt") => {
                let rest: Vec<String> = l.args().iter().skip(1).cloned().collect();
                if rest.is_empty() {
                    self.errors.push(err(ErrorKind::ArgCount {
                        expected: "an option after `setenv opt`".into(),
                        got: 0,
                    }));
                    return;
                }
                let inner = Line {
                    location: l.location.clone(),
                    tokens: rest,
                    inline: l.inline.clone(),
                };
                self.line(&inner, true);
            }
            _ => {
                let base = self.base_dir.clone();
                let mut env = Env {
                    base_dir: &base,
                    warnings: &mut self.warnings,
                };
                match self.builder.apply(l, &mut env) {
                    Ok(()) => {}
                    Err(ErrorKind::UnknownOption)
                        if ignorable
                            || self
                                .builder
                                .ignore_unknown_option
                                .iter()
                                .any(|o| o == l.name()) =>
                    {
                        self.warnings.push(Warning::new(
                            l.location.clone(),
                            l.name(),
                            "unknown option ignored",
                        ));
                    }
                    Err(kind) => self.errors.push(err(kind)),
                }
            }
        }
    }

    /// Expand macros and build the final configuration.
    pub fn finish(mut self, top: Location) -> Result<Loaded, ConfigErrors> {
        let result = expand::finish(&mut self.builder, &top, &mut self.warnings);
        match result {
            Ok((config, sources)) if self.errors.is_empty() => Ok(Loaded {
                config,
                warnings: self.warnings,
                sources,
            }),
            Ok(_) => Err(self.errors),
            Err(mut e) => {
                let mut all = self.errors;
                all.0.append(&mut e.0);
                Err(all)
            }
        }
    }
}

/// Location used for "missing option" errors: the top-level file, or the command line.
pub fn top_location(args: &[String]) -> Location {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            if let Some(f) = it.next() {
                return Location::file(PathBuf::from(f));
            }
        }
    }
    Location {
        source: Source::CommandLine,
        line: None,
    }
}

impl Loader {
    /// Apply config text as if read from `name`.
    pub fn text(&mut self, text: &str, name: &Path) {
        let (lines, errs) = lex_text(text, &Location::file(name.to_path_buf()));
        self.errors.0.extend(errs);
        for l in &lines {
            self.line(l, false);
        }
    }
}
