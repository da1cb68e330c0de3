//! Lexer for OpenVPN config syntax, following OpenVPN 2.6 `parse_line`/`read_config_file`.
//!
//! * whitespace separates tokens; `#` or `;` where a token would start begins a comment;
//! * `"…"` double quotes: backslash escapes the next character (`\\`, `\"`, `\ `);
//! * `'…'` single quotes: everything literal until the next `'`;
//! * unquoted tokens: backslash escapes the next character (so `\ ` embeds a space), quote
//!   characters inside an unquoted token are literal (as in OpenVPN);
//! * a leading `--` on the directive name is stripped (OpenVPN accepts `--dev tun` in files);
//! * `<tag>` … `</tag>` inline blocks become the directive `tag [inline]` with the block text.
//!
//! Invariant: the lexer never panics on any input; malformed lines become [`ConfigError`]s.

use super::error::{ConfigError, ErrorKind, Location};

/// OpenVPN's limit on parameters per line (MAX_PARMS).
pub const MAX_PARAMS: usize = 16;

/// Placeholder argument OpenVPN uses for inline material.
pub const INLINE_MARKER: &str = "[inline]";

/// One logical directive: name + args, where it came from, and inline block text if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub location: Location,
    /// tokens[0] is the directive name (without leading `--`); never empty.
    pub tokens: Vec<String>,
    /// Content of an inline `<tag>…</tag>` block (each line terminated by `\n`).
    pub inline: Option<String>,
}

impl Line {
    pub fn name(&self) -> &str {
        self.tokens.first().map(String::as_str).unwrap_or("")
    }
    pub fn args(&self) -> &[String] {
        self.tokens.get(1..).unwrap_or(&[])
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Initial,
    Unquoted,
    Double,
    Single,
}

/// Split one line into tokens. Errors: unterminated quote.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut state = State::Initial;
    let mut backslash = false;
    for c in line.chars() {
        if !backslash && c == '\\' && state != State::Single {
            backslash = true;
            if state == State::Initial {
                // An escaped character starts an unquoted token.
                state = State::Unquoted;
            }
            continue;
        }
        match state {
            State::Initial => {
                if c.is_whitespace() {
                } else if c == '#' || c == ';' {
                    break;
                } else if c == '"' {
                    state = State::Double;
                } else if c == '\'' {
                    state = State::Single;
                } else {
                    cur.push(c);
                    state = State::Unquoted;
                }
            }
            State::Unquoted => {
                if !backslash && c.is_whitespace() {
                    out.push(std::mem::take(&mut cur));
                    state = State::Initial;
                } else {
                    cur.push(c);
                }
            }
            State::Double => {
                if !backslash && c == '"' {
                    out.push(std::mem::take(&mut cur));
                    state = State::Initial;
                } else {
                    cur.push(c);
                }
            }
            State::Single => {
                if c == '\'' {
                    out.push(std::mem::take(&mut cur));
                    state = State::Initial;
                } else {
                    cur.push(c);
                }
            }
        }
        backslash = false;
    }
    match state {
        State::Double => Err("no closing quotation (\")".into()),
        State::Single => Err("no closing quotation (')".into()),
        State::Unquoted => {
            out.push(cur);
            Ok(out)
        }
        State::Initial => Ok(out),
    }
}

fn inline_tag(tok: &str) -> Option<&str> {
    let inner = tok.strip_prefix('<')?.strip_suffix('>')?;
    if inner.is_empty() || inner.starts_with('/') || inner.contains(char::is_whitespace) {
        return None;
    }
    Some(inner)
}

/// Lex a whole file. `make_loc(line_no)` builds locations (file or command line).
pub fn lex_text(text: &str, base: &Location) -> (Vec<Line>, Vec<ConfigError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut iter = text.split('\n').enumerate().peekable();
    let loc = |n: usize| Location {
        source: base.source.clone(),
        line: Some(u32::try_from(n + 1).unwrap_or(u32::MAX)),
    };
    while let Some((n, raw)) = iter.next() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let mut tokens = match tokenize(raw) {
            Ok(t) => t,
            Err(e) => {
                let name = raw.split_whitespace().next().unwrap_or("").to_string();
                errors.push(ConfigError::new(loc(n), name, ErrorKind::Syntax(e)));
                continue;
            }
        };
        let Some(first) = tokens.first_mut() else {
            continue;
        };
        if let Some(stripped) = first.strip_prefix("--") {
            *first = stripped.to_string();
        }
        if let Some(tag) = inline_tag(first).map(str::to_string) {
            let close = format!("</{tag}>");
            let mut body = String::new();
            let mut closed = false;
            for (_, l) in iter.by_ref() {
                let l = l.strip_suffix('\r').unwrap_or(l);
                if l.trim_start().starts_with(&close) {
                    closed = true;
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            if !closed {
                errors.push(ConfigError::new(
                    loc(n),
                    tag.clone(),
                    ErrorKind::Syntax(format!("inline block <{tag}> has no closing {close}")),
                ));
                continue;
            }
            lines.push(Line {
                location: loc(n),
                tokens: vec![tag, INLINE_MARKER.to_string()],
                inline: Some(body),
            });
            continue;
        }
        if tokens.len() > MAX_PARAMS {
            errors.push(ConfigError::new(
                loc(n),
                tokens.first().cloned().unwrap_or_default(),
                ErrorKind::Syntax(format!("more than {} parameters", MAX_PARAMS - 1)),
            ));
            continue;
        }
        lines.push(Line {
            location: loc(n),
            tokens,
            inline: None,
        });
    }
    (lines, errors)
}

/// Split argv (`--opt a b --opt2 c`) into directive lines, as OpenVPN's `parse_argv` does:
/// each `--name` starts a directive, following non-`--` words are its arguments.
pub fn lex_args(args: &[String]) -> (Vec<Line>, Vec<ConfigError>) {
    let mut lines: Vec<Line> = Vec::new();
    let mut errors = Vec::new();
    for a in args {
        if let Some(name) = a.strip_prefix("--") {
            lines.push(Line {
                location: Location::command_line(),
                tokens: vec![name.to_string()],
                inline: None,
            });
        } else if let Some(last) = lines.last_mut() {
            last.tokens.push(a.clone());
        } else {
            errors.push(ConfigError::new(
                Location::command_line(),
                a.clone(),
                ErrorKind::Syntax("options on the command line must start with `--`".into()),
            ));
        }
    }
    (lines, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<String> {
        tokenize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn basic_tokens_and_comments() {
        assert_eq!(t("dev tun"), ["dev", "tun"]);
        assert_eq!(t("  dev\ttun  # comment"), ["dev", "tun"]);
        assert_eq!(t("; whole line"), Vec::<String>::new());
        assert_eq!(t("# whole line"), Vec::<String>::new());
        // `#` inside an unquoted token is literal (OpenVPN behaviour).
        assert_eq!(t("setenv a b#c"), ["setenv", "a", "b#c"]);
        assert_eq!(t("port 1194 ;c"), ["port", "1194"]);
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(
            t(r#"push "route 10.0.0.0 255.0.0.0""#),
            ["push", "route 10.0.0.0 255.0.0.0"]
        );
        assert_eq!(t(r#"push "a \"q\" b""#), ["push", "a \"q\" b"]);
        assert_eq!(t(r#"x "a\\b""#), ["x", "a\\b"]);
        assert_eq!(t(r"x 'a\b c'"), ["x", "a\\b c"]);
        assert_eq!(t(r"x a\ b"), ["x", "a b"]);
        assert_eq!(t(r"x a\\b"), ["x", "a\\b"]);
        assert_eq!(t(r#"x "" y"#), ["x", "", "y"]);
        assert_eq!(t(r##"x "#notcomment""##), ["x", "#notcomment"]);
        assert_eq!(t(r#"x a"b"#), ["x", "a\"b"]);
        assert!(tokenize(r#"push "unterminated"#).is_err());
        assert!(tokenize("push 'unterminated").is_err());
    }

    #[test]
    fn inline_blocks_and_dashes() {
        let text = "--dev tun\n<ca>\n-----BEGIN X-----\nabc\n</ca>\nport 1\r\n";
        let (lines, errs) = lex_text(text, &Location::file("s.conf"));
        assert!(errs.is_empty());
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].tokens, ["dev", "tun"]);
        assert_eq!(lines[1].tokens, ["ca", INLINE_MARKER]);
        assert_eq!(lines[1].inline.as_deref(), Some("-----BEGIN X-----\nabc\n"));
        assert_eq!(lines[1].location.line, Some(2));
        assert_eq!(lines[2].tokens, ["port", "1"]);
        assert_eq!(lines[2].location.line, Some(6));
    }

    #[test]
    fn unclosed_inline_block_is_error() {
        let (lines, errs) = lex_text("<key>\nabc\n", &Location::file("s.conf"));
        assert!(lines.is_empty());
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "s.conf:1: key: inline block <key> has no closing </key>"
        );
    }

    #[test]
    fn argv_split() {
        let a: Vec<String> = ["--config", "x", "--threads", "4", "--nobind"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (lines, errs) = lex_args(&a);
        assert!(errs.is_empty());
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1].tokens, ["threads", "4"]);
        let (_, errs) = lex_args(&["stray".to_string()]);
        assert_eq!(errs.len(), 1);
    }
}
