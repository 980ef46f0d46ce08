//! One INI file, parsed the way Python's `configparser` reads fail2ban's files: sections,
//! `key = value` or `key: value`, indented continuation lines, blank lines kept inside a
//! value, `#`/`;` full-line comments and `;` inline comments after whitespace, option names
//! lower-cased, section names kept as written. Every value keeps the line it came from.
//!
//! `configparser` rejects a whole file on the first malformed line or repeated section;
//! here each such line is reported and skipped, and a repeated section is merged into the
//! first one with a warning, so one typo does not hide every other problem.

use std::path::Path;

use indexmap::IndexMap;

use super::diag::{Problem, clip};
use super::model::Span;

/// A value as written: the text (continuation lines joined with `\n`) and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Value {
    pub text: String,
    /// The line of the key.
    pub span: Span,
    /// The line number of each `\n`-separated line of `text`.
    pub lines: Vec<u32>,
}

impl Value {
    /// A value that comes from no file line (a built-in default or an argument).
    pub fn synthetic(text: impl Into<String>, span: Span) -> Self {
        let text = text.into();
        let n = text.split('\n').count();
        Value {
            lines: vec![span.line; n],
            text,
            span,
        }
    }
}

/// Options of one section, in the order first written.
pub(crate) type Options = IndexMap<String, Value>;

#[derive(Debug, Clone)]
pub(crate) struct IniSection {
    pub name: String,
    pub span: Span,
    pub options: Options,
}

/// A parsed file. `[DEFAULT]` is kept as an ordinary section named `DEFAULT`.
#[derive(Debug, Clone, Default)]
pub(crate) struct IniFile {
    pub sections: Vec<IniSection>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl IniFile {
    pub fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections.iter().find(|s| s.name == name)
    }
}

struct Pending {
    key: String,
    span: Span,
    pieces: Vec<(String, u32)>,
}

/// Parses `text`; `shown` names the file in spans.
pub(crate) fn parse(text: &str, shown: &Path) -> IniFile {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let span = |line: u32| Span {
        file: shown.to_path_buf(),
        line,
    };
    let mut file = IniFile::default();
    // Values are collected as pieces and joined once the file is read, as configparser does.
    let mut pending: Vec<Vec<Pending>> = Vec::new();
    let mut cur: Option<usize> = None;
    let mut opt: Option<usize> = None;
    let mut indent_level = 0usize;

    for (idx, line) in split_lines(text).enumerate() {
        let lineno = idx as u32 + 1;
        let comment_start = comment_start(line);
        let value = match comment_start {
            Some(c) => line[..c].trim(),
            None => line.trim(),
        };
        if value.is_empty() {
            // A blank line (not a comment) inside a value is kept: configparser's
            // empty_lines_in_values.
            if comment_start.is_none()
                && let (Some(s), Some(o)) = (cur, opt)
            {
                pending[s][o].pieces.push((String::new(), lineno));
            }
            continue;
        }
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        if let (Some(s), Some(o)) = (cur, opt)
            && indent > indent_level
        {
            pending[s][o].pieces.push((value.to_string(), lineno));
            continue;
        }
        indent_level = indent;
        if let Some(name) = section_header(value) {
            opt = None;
            match file.sections.iter().position(|s| s.name == name) {
                Some(i) => {
                    if name != "DEFAULT" {
                        file.warnings.push(Problem::new(
                            span(lineno),
                            format!(
                                "section [{name}] appears twice in this file; merged into the first \
                                 (fail2ban refuses such a file)"
                            ),
                        ));
                    }
                    cur = Some(i);
                }
                None => {
                    file.sections.push(IniSection {
                        name: name.to_string(),
                        span: span(lineno),
                        options: Options::new(),
                    });
                    pending.push(Vec::new());
                    cur = Some(file.sections.len() - 1);
                }
            }
            continue;
        }
        let Some(s) = cur else {
            file.errors.push(Problem::new(
                span(lineno),
                format!("`{}` appears before any [section] header", clip(value, 60)),
            ));
            continue;
        };
        let Some(delim) = value.find(['=', ':']) else {
            file.errors.push(Problem::new(
                span(lineno),
                format!(
                    "`{}` is neither a [section] header nor `key = value` (continuation lines must be indented)",
                    clip(value, 60)
                ),
            ));
            opt = None;
            continue;
        };
        let key = value[..delim].trim_end().to_lowercase();
        if key.is_empty() {
            file.errors.push(Problem::new(
                span(lineno),
                format!("`{}` has no option name", clip(value, 60)),
            ));
            opt = None;
            continue;
        }
        let val = value[delim + 1..].trim().to_string();
        let sect = &mut pending[s];
        match sect.iter().position(|p| p.key == key) {
            Some(i) => {
                file.warnings.push(Problem::new(
                    span(lineno),
                    format!(
                        "option `{key}` is set twice in [{}] of this file; the later value wins \
                         (fail2ban refuses such a file)",
                        file.sections[s].name
                    ),
                ));
                sect[i].span = span(lineno);
                sect[i].pieces = vec![(val, lineno)];
                opt = Some(i);
            }
            None => {
                sect.push(Pending {
                    key,
                    span: span(lineno),
                    pieces: vec![(val, lineno)],
                });
                opt = Some(sect.len() - 1);
            }
        }
    }

    for (section, opts) in file.sections.iter_mut().zip(pending) {
        for p in opts {
            let mut pieces = p.pieces;
            while pieces.len() > 1 && pieces.last().is_some_and(|(t, _)| t.is_empty()) {
                pieces.pop();
            }
            let text = pieces
                .iter()
                .map(|(t, _)| t.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let lines = pieces.iter().map(|(_, l)| *l).collect();
            section.options.insert(
                p.key,
                Value {
                    text,
                    span: p.span,
                    lines,
                },
            );
        }
    }
    file
}

/// Lines split on `\n`, `\r\n` or `\r`, as Python's universal newlines do.
fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\n', '\r']) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// Where a comment starts: the whole line for `#` or `;` first, otherwise the first `;`
/// at the line start or after whitespace. `#` is not an inline comment marker.
fn comment_start(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with(';') {
        return Some(0);
    }
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == ';' && prev_space {
            return Some(i);
        }
        prev_space = c.is_whitespace();
    }
    None
}

/// `[name]`: from the first `[` to the last `]`, at least one character inside.
fn section_header(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('[')?;
    let end = inner.rfind(']')?;
    (end > 0).then(|| &inner[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> IniFile {
        parse(text, Path::new("t.conf"))
    }

    fn get<'a>(f: &'a IniFile, sect: &str, key: &str) -> &'a Value {
        &f.section(sect).unwrap().options[key]
    }

    #[test]
    fn sections_keys_and_both_delimiters() {
        let f = p("[Definition]\nFailRegex = a\nmaxlines: 2\n[Init]\nx=\n");
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(get(&f, "Definition", "failregex").text, "a");
        assert_eq!(get(&f, "Definition", "maxlines").text, "2");
        assert_eq!(get(&f, "Init", "x").text, "");
        assert_eq!(get(&f, "Definition", "maxlines").span.line, 3);
        // Section names keep their case.
        assert!(f.section("definition").is_none());
    }

    #[test]
    fn continuation_lines_and_blank_lines_inside_values() {
        let f = p("[D]\nr = one\n    two\n\n    three\n\n\nk = v\n");
        let v = get(&f, "D", "r");
        assert_eq!(v.text, "one\ntwo\n\nthree");
        assert_eq!(v.lines, vec![2, 3, 4, 5]);
        assert_eq!(get(&f, "D", "k").text, "v");
    }

    #[test]
    fn empty_first_line_of_a_multiline_value_is_kept() {
        let f = p("[D]\nr =\n  a\n  b\n");
        assert_eq!(get(&f, "D", "r").text, "\na\nb");
    }

    #[test]
    fn comments_full_line_and_inline() {
        let f =
            p("# top\n[D]\n; note\na = x ; gone\nb = x;kept\nc = x # kept\n  # indented comment\n");
        assert_eq!(get(&f, "D", "a").text, "x");
        assert_eq!(get(&f, "D", "b").text, "x;kept");
        assert_eq!(get(&f, "D", "c").text, "x # kept");
    }

    #[test]
    fn comment_lines_inside_a_value_do_not_end_it() {
        let f = p("[D]\nr = a\n# c\n    b\n");
        assert_eq!(get(&f, "D", "r").text, "a\nb");
    }

    #[test]
    fn first_delimiter_splits_key_from_value() {
        let f = p("[D]\nurl = http://x:80/?a=b\n");
        assert_eq!(get(&f, "D", "url").text, "http://x:80/?a=b");
    }

    #[test]
    fn indented_key_after_header_is_a_key() {
        let f = p("[D]\n  a = 1\n  b = 2\n");
        assert_eq!(get(&f, "D", "a").text, "1");
        assert_eq!(get(&f, "D", "b").text, "2");
    }

    #[test]
    fn malformed_lines_are_reported_with_line_numbers() {
        let f = p("x = 1\n[D]\njunk line\n= v\n");
        let msgs: Vec<String> = f.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("t.conf:1: "), "{}", msgs[0]);
        assert!(msgs[0].contains("before any [section]"));
        assert!(msgs[1].starts_with("t.conf:3: "));
        assert!(msgs[2].starts_with("t.conf:4: "));
    }

    #[test]
    fn repeated_sections_merge_and_repeated_keys_override_with_warnings() {
        let f = p("[D]\na = 1\nb = 1\n[E]\n[D]\nb = 2\n[DEFAULT]\n[DEFAULT]\n");
        assert_eq!(get(&f, "D", "a").text, "1");
        assert_eq!(get(&f, "D", "b").text, "2");
        assert_eq!(f.sections.iter().filter(|s| s.name == "D").count(), 1);
        // The repeated [D] and the repeated `b` in it; a repeated [DEFAULT] is accepted.
        assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
        assert_eq!((f.warnings[0].span.line, f.warnings[1].span.line), (5, 6));
        let f = p("[D]\na = 1\na = 2\n");
        assert_eq!(get(&f, "D", "a").text, "2");
        assert_eq!(f.warnings.len(), 1);
        assert_eq!(f.warnings[0].span.line, 3);
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let f = p("\u{feff}[D]\r\na = 1\r\n  2\r\n");
        assert_eq!(get(&f, "D", "a").text, "1\n2");
    }

    #[test]
    fn conditional_section_names_are_plain_names_here() {
        let f = p("[Init?family=inet6]\nblocktype = x\n");
        assert!(f.section("Init?family=inet6").is_some());
    }
}
