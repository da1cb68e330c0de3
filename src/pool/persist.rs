//! The `ifconfig-pool-persist FILE [SECONDS]` file: parse, render, and a tiny IO shim.
//!
//! Format (OpenVPN 2.6 src/openvpn/pool.c `ifconfig_pool_read` / `ifconfig_pool_list`,
//! server-ipv6.md §4.5): one line per remembered slot, `CN,IPv4,IPv6`, no header. Either
//! address may be empty (`bob,10.8.0.3,`, `carol,,2001:db8::1002`); the 2.4-era two-field form
//! `CN,IPv4` is accepted. Empty lines and lines starting with `#` or `;` are ignored. For net30
//! pools the IPv4 field is the /30 base address. Fields are at most 127 bytes.
//!
//! Parsing is lenient like OpenVPN's (a bad line never aborts the read) but louder: every line
//! that cannot be used fully becomes a [`PersistWarning`] carrying its 1-based line number, and
//! the rest of the file is kept. Mapping entries to slots (range checks, IPv4-vs-IPv6 slot
//! disagreement) is [`super::Pool::restore`]'s job.
//!
//! [`parse`] and [`render`] are pure. [`read`], [`write_atomic`], [`load`] and [`save`] are the
//! only functions in the pool module that touch the file system; the writer replaces the file
//! atomically (temp file in the same directory, write, fsync, rename, fsync the directory) so a
//! crash never leaves a truncated file, unlike OpenVPN's truncate-and-rewrite.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Pool;

/// OpenVPN's default write interval for `ifconfig-pool-persist FILE` without SECONDS.
pub const DEFAULT_PERSIST_SECONDS: u32 = 600;

/// Longest field OpenVPN reads (its buffers are 128 bytes including the NUL).
pub const MAX_FIELD_LEN: usize = 127;

/// One `CN,IPv4,IPv6` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersistEntry {
    /// 1-based line number in the file it was parsed from; `None` for entries built from a pool.
    pub line: Option<u32>,
    /// Common name.
    pub cn: String,
    /// IPv4 field (net30: the /30 base address); `None` when empty.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 field; `None` when empty.
    pub v6: Option<Ipv6Addr>,
}

/// Something in the persist file that was skipped or only partly used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersistWarning {
    /// 1-based line number, when the warning is about a file line.
    pub line: Option<u32>,
    /// Human-readable explanation.
    pub message: String,
}

impl PersistWarning {
    /// Formats as `FILE:LINE: message` (or `FILE: message`), e.g. `ipp.txt:3: invalid IPv4 …`.
    pub fn at(&self, path: &Path) -> String {
        match self.line {
            Some(l) => format!("{}:{l}: {}", path.display(), self.message),
            None => format!("{}: {}", path.display(), self.message),
        }
    }
}

impl fmt::Display for PersistWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// How entries read at startup bind their slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestoreMode {
    /// `SECONDS > 0`: the CN is preferred for its slot, but another CN may take the slot when
    /// nothing else is free. The file is rewritten periodically.
    Preference,
    /// `SECONDS = 0`: the file is read-only and each slot is reserved for its CN only.
    Fixed,
}

impl RestoreMode {
    /// The mode implied by `ifconfig-pool-persist FILE SECONDS`.
    pub fn from_seconds(seconds: u32) -> RestoreMode {
        if seconds == 0 {
            RestoreMode::Fixed
        } else {
            RestoreMode::Preference
        }
    }

    /// Whether the server should (re)write the file: only when `SECONDS > 0`.
    pub fn writes_file(self) -> bool {
        self == RestoreMode::Preference
    }
}

/// Parses the whole file. Never fails: unusable lines become warnings, the rest is kept.
pub fn parse(text: &str) -> (Vec<PersistEntry>, Vec<PersistWarning>) {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = u32::try_from(idx).map_or(u32::MAX, |i| i.saturating_add(1));
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut warn = |message: String| {
            warnings.push(PersistWarning {
                line: Some(line_no),
                message,
            })
        };
        let mut fields = line.split(',');
        let cn = fields.next().unwrap_or_default();
        let Some(f4) = fields.next() else {
            warn("expected CN,IPv4,IPv6; line ignored".to_owned());
            continue;
        };
        let f6 = fields.next().unwrap_or_default();
        if fields.next().is_some() {
            warn(format!(
                "more than three fields for CN={cn}; extra fields ignored"
            ));
        }
        if cn.is_empty() {
            warn("empty common name; line ignored".to_owned());
            continue;
        }
        if cn.len() > MAX_FIELD_LEN {
            warn(format!(
                "common name longer than {MAX_FIELD_LEN} bytes; line ignored"
            ));
            continue;
        }
        let mut invalid = false;
        let f4 = f4.trim();
        let v4 = if f4.is_empty() {
            None
        } else {
            match f4.parse::<Ipv4Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    warn(format!("invalid IPv4 ({f4}) for CN={cn}"));
                    invalid = true;
                    None
                }
            }
        };
        let f6 = f6.trim();
        let v6 = if f6.is_empty() {
            None
        } else {
            match f6.parse::<Ipv6Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    warn(format!("invalid IPv6 ({f6}) for CN={cn}"));
                    invalid = true;
                    None
                }
            }
        };
        if v4.is_none() && v6.is_none() {
            if !invalid {
                warn(format!("no address for CN={cn}; line ignored"));
            }
            continue;
        }
        entries.push(PersistEntry {
            line: Some(line_no),
            cn: cn.to_owned(),
            v4,
            v6,
        });
    }
    (entries, warnings)
}

/// Whether a CN survives a write/read round trip in this line format. Certificate CNs never
/// contain these characters (OpenVPN remaps them), but a username-as-common-name might.
pub fn cn_is_persistable(cn: &str) -> bool {
    !cn.is_empty()
        && cn.len() <= MAX_FIELD_LEN
        && !cn.starts_with('#')
        && !cn.starts_with(';')
        && !cn.trim().is_empty()
        && !cn.contains([',', '\n', '\r', '\0'])
}

/// Renders entries as file text, one `CN,IPv4,IPv6\n` line each. Entries whose CN is not
/// [`cn_is_persistable`] are skipped (writing them would corrupt the file).
pub fn render_entries(entries: &[PersistEntry]) -> String {
    let mut out = String::new();
    for e in entries.iter().filter(|e| cn_is_persistable(&e.cn)) {
        out.push_str(&e.cn);
        out.push(',');
        if let Some(a) = e.v4 {
            out.push_str(&a.to_string());
        }
        out.push(',');
        if let Some(a) = e.v6 {
            out.push_str(&a.to_string());
        }
        out.push('\n');
    }
    out
}

/// Renders the pool's remembered slots ([`Pool::persist_entries`]) as file text.
pub fn render(pool: &Pool) -> String {
    render_entries(&pool.persist_entries())
}

// ---------------------------------------------------------------------------------------------
// IO shim
// ---------------------------------------------------------------------------------------------

/// Reads the file; `Ok(None)` if it does not exist yet (first start). Invalid UTF-8 is replaced
/// (U+FFFD) so one damaged byte only spoils its own line.
pub fn read(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`read`] + [`parse`]; a missing file yields no entries and no warnings.
pub fn load(path: &Path) -> io::Result<(Vec<PersistEntry>, Vec<PersistWarning>)> {
    Ok(read(path)?.map(|t| parse(&t)).unwrap_or_default())
}

/// Writes [`render`]`(pool)` to `path` atomically.
pub fn save(path: &Path, pool: &Pool) -> io::Result<()> {
    write_atomic(path, &render(pool))
}

/// Replaces `path` with `text` atomically: a temp file in the same directory is written and
/// fsynced, renamed over `path`, then the directory is fsynced so the rename is durable. An
/// existing file's permissions are kept. On failure the temp file is removed and `path` is
/// untouched. (A symlink at `path` is replaced by a regular file.)
pub fn write_atomic(path: &Path, text: &str) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file path", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Unique per process and call, so concurrent writers never share a temp file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = write_and_rename(&tmp, path, text);
    if result.is_err() {
        // Best effort: the original error is what matters.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    File::open(&dir)?.sync_all()
}

fn write_and_rename(tmp: &Path, path: &Path, text: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    if let Ok(meta) = fs::metadata(path) {
        f.set_permissions(meta.permissions())?;
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a4(s: &str) -> Option<Ipv4Addr> {
        Some(s.parse().unwrap())
    }

    fn a6(s: &str) -> Option<Ipv6Addr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn parses_all_accepted_forms() {
        let text = "alice,10.8.0.2,2001:db8::1000\n\
                    bob,10.8.0.3,\n\
                    carol,,2001:db8::1002\n\
                    dave,10.8.0.5\n";
        let (entries, warnings) = parse(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            entries,
            vec![
                PersistEntry {
                    line: Some(1),
                    cn: "alice".into(),
                    v4: a4("10.8.0.2"),
                    v6: a6("2001:db8::1000")
                },
                PersistEntry {
                    line: Some(2),
                    cn: "bob".into(),
                    v4: a4("10.8.0.3"),
                    v6: None
                },
                PersistEntry {
                    line: Some(3),
                    cn: "carol".into(),
                    v4: None,
                    v6: a6("2001:db8::1002")
                },
                PersistEntry {
                    line: Some(4),
                    cn: "dave".into(),
                    v4: a4("10.8.0.5"),
                    v6: None
                },
            ]
        );
    }

    #[test]
    fn comments_blank_lines_and_crlf() {
        let text = "# comment\r\n; other comment\r\n\r\n   \r\nalice,10.8.0.2,\r\n";
        let (entries, warnings) = parse(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].line, Some(5));
        assert_eq!(entries[0].v4, a4("10.8.0.2"));
    }

    #[test]
    fn corrupt_lines_warn_with_line_numbers_and_rest_is_kept() {
        let text = "alice,10.8.0.2,2001:db8::1000\n\
                    garbage\n\
                    bob,10.8.0.999,2001:db8::1001\n\
                    carol,10.8.0.4,not-v6\n\
                    ,10.8.0.5,\n\
                    dave,,\n\
                    erin,nope,alsonope\n\
                    frank,10.8.0.6,2001:db8::1004,extra\n\
                    gina,10.8.0.7,\n";
        let (entries, warnings) = parse(text);
        let names: Vec<_> = entries.iter().map(|e| e.cn.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol", "frank", "gina"]);
        // bob keeps the valid IPv6 (OpenVPN falls back to it), carol keeps IPv4.
        assert_eq!(entries[1].v4, None);
        assert_eq!(entries[1].v6, a6("2001:db8::1001"));
        assert_eq!(entries[2].v4, a4("10.8.0.4"));
        assert_eq!(entries[2].v6, None);
        let lines: Vec<_> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(
            lines,
            [2, 3, 4, 5, 6, 7, 7, 8].map(Some).to_vec(),
            "{warnings:#?}"
        );
        assert_eq!(
            warnings[0].at(Path::new("ipp.txt")),
            "ipp.txt:2: expected CN,IPv4,IPv6; line ignored"
        );
        assert_eq!(
            warnings[1].at(Path::new("ipp.txt")),
            "ipp.txt:3: invalid IPv4 (10.8.0.999) for CN=bob"
        );
        assert_eq!(
            warnings[1].to_string(),
            "line 3: invalid IPv4 (10.8.0.999) for CN=bob"
        );
    }

    #[test]
    fn overlong_cn_is_rejected() {
        let text = format!("{},10.8.0.2,\n", "x".repeat(128));
        let (entries, warnings) = parse(&text);
        assert!(entries.is_empty());
        assert_eq!(warnings.len(), 1);
        let ok = format!("{},10.8.0.2,\n", "x".repeat(127));
        assert_eq!(parse(&ok).0.len(), 1);
    }

    #[test]
    fn render_and_parse_round_trip() {
        let entries = vec![
            PersistEntry {
                line: None,
                cn: "alice".into(),
                v4: a4("10.8.0.2"),
                v6: a6("2001:db8::1000"),
            },
            PersistEntry {
                line: None,
                cn: "bob".into(),
                v4: a4("10.8.0.3"),
                v6: None,
            },
            PersistEntry {
                line: None,
                cn: "carol".into(),
                v4: None,
                v6: a6("2001:db8::1002"),
            },
        ];
        let text = render_entries(&entries);
        assert_eq!(
            text,
            "alice,10.8.0.2,2001:db8::1000\nbob,10.8.0.3,\ncarol,,2001:db8::1002\n"
        );
        let (back, warnings) = parse(&text);
        assert!(warnings.is_empty());
        let back: Vec<_> = back
            .into_iter()
            .map(|e| PersistEntry { line: None, ..e })
            .collect();
        assert_eq!(back, entries);
    }

    #[test]
    fn unpersistable_cns_are_skipped_on_render() {
        for cn in ["", "a,b", "a\nb", "#x", ";x", " "] {
            assert!(!cn_is_persistable(cn), "{cn:?}");
            let e = PersistEntry {
                line: None,
                cn: cn.into(),
                v4: a4("10.8.0.2"),
                v6: None,
            };
            assert_eq!(render_entries(&[e]), "");
        }
        assert!(cn_is_persistable("client-1.example.org"));
    }

    #[test]
    fn restore_mode_from_seconds() {
        assert_eq!(RestoreMode::from_seconds(0), RestoreMode::Fixed);
        assert!(!RestoreMode::Fixed.writes_file());
        assert_eq!(RestoreMode::from_seconds(600), RestoreMode::Preference);
        assert!(RestoreMode::Preference.writes_file());
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipp.txt");
        assert_eq!(read(&path).unwrap(), None);
        write_atomic(&path, "alice,10.8.0.2,\n").unwrap();
        write_atomic(&path, "bob,10.8.0.3,\n").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("bob,10.8.0.3,\n"));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("ipp.txt")]);
    }

    #[test]
    fn write_atomic_failure_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: rename fails, the temp file must be cleaned up.
        let path = dir.path().join("target");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "x").unwrap();
        assert!(write_atomic(&path, "data").is_err());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("target")]);
        assert!(write_atomic(Path::new("/"), "x").is_err());
    }
}
