//! Error and warning types for the config language.
//!
//! Every problem carries a [`Location`] (file + line, or the command line) and the directive
//! name, and displays as `FILE:LINE: directive: reason` — the format `fwd check` prints and
//! tests assert on. Loading collects all errors it can instead of stopping at the first.

use std::fmt;
use std::path::PathBuf;

/// Where a directive came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A config file (as named by the user / include directive, not canonicalised).
    File(PathBuf),
    /// `--option` arguments on the command line.
    CommandLine,
}

/// A position: source plus 1-based line (None = the whole file, e.g. "missing option").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub source: Source,
    pub line: Option<u32>,
}

impl Location {
    pub fn file_line(path: impl Into<PathBuf>, line: u32) -> Location {
        Location {
            source: Source::File(path.into()),
            line: Some(line),
        }
    }
    pub fn file(path: impl Into<PathBuf>) -> Location {
        Location {
            source: Source::File(path.into()),
            line: None,
        }
    }
    pub fn command_line() -> Location {
        Location {
            source: Source::CommandLine,
            line: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.line) {
            (Source::CommandLine, _) => f.write_str("command line"),
            (Source::File(p), Some(l)) => write!(f, "{}:{}", p.display(), l),
            (Source::File(p), None) => write!(f, "{}", p.display()),
        }
    }
}

/// Why a directive was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unknown option (list it in `ignore-unknown-option` to skip it)")]
    UnknownOption,
    #[error("not supported by fwd: {0}")]
    Unsupported(String),
    #[error("expects {expected}, got {got} argument(s)")]
    ArgCount { expected: String, got: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("not allowed here: {0}")]
    NotAllowed(String),
    #[error("cannot read {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Syntax(String),
}

/// One config error: `location: directive: kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    pub directive: String,
    pub kind: ErrorKind,
}

impl ConfigError {
    pub fn new(location: Location, directive: impl Into<String>, kind: ErrorKind) -> Self {
        ConfigError {
            location,
            directive: directive.into(),
            kind,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.directive, self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// All errors found while loading (never empty when returned as `Err`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e)
    }
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A likely misconfiguration that does not stop loading. Displays as
/// `location: directive: message` (the CLI prefixes `warning: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Location,
    pub directive: String,
    pub message: String,
}

impl Warning {
    pub fn new(
        location: Location,
        directive: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Warning {
            location,
            directive: directive.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.directive, self.message)
    }
}
