//! Filters: a `filter.d` file (or any file given by path) combined with the jail's
//! arguments into final regex strings, as fail2ban's filter reader does. Regexes keep
//! their `<HOST>`/`<F-*>` tags; everything else (`%(x)s`, `<mode>`-style tags, `[Init]`)
//! is resolved here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use indexmap::IndexMap;

use super::definit::DefInit;
use super::diag::Problem;
use super::ini::Value;
use super::interp::Vars;
use super::model::{FilterConfig, Span};
use super::store::{Files, Store};

/// The options a filter file defines for the filter engine (fail2ban's filter options).
pub(crate) const FILTER_KEYS: [&str; 7] = [
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

/// An opened filter with its arguments applied.
pub(crate) struct FilterReader {
    pub name: String,
    pub def: DefInit,
    pub args: BTreeMap<String, String>,
}

/// What a filter resolves to before the jail's own filter options are laid over it.
pub(crate) struct FilterParts {
    /// The filter-option values (tags substituted), keyed by [`FILTER_KEYS`] names.
    pub values: IndexMap<String, Value>,
    /// Every option of the filter, resolved.
    pub options: BTreeMap<String, String>,
}

impl FilterReader {
    /// Opens `filter.d/<name>` (with `.local`, `.d/` and includes), or the file at `name`
    /// when `by_path`. `backend` decides `logtype` (journal for systemd, else file) unless
    /// the arguments or the filter set it. None when no file exists.
    pub fn open(
        files: &Files,
        name: &str,
        by_path: bool,
        args: &IndexMap<String, Value>,
        backend: &str,
        span: &Span,
    ) -> Result<Option<FilterReader>, Problem> {
        let store = if by_path {
            Store::read_explicit(files, Path::new(name))
        } else {
            Store::read_base(files, &Path::new("filter.d").join(name))
        };
        let Some(store) = store else {
            return Ok(None);
        };
        let main: PathBuf = store
            .files
            .iter()
            .find(|f| {
                by_path
                    || f.file_stem().is_some_and(|s| s == name)
                        && f.parent().is_some_and(|p| p == Path::new("filter.d"))
            })
            .or(store.files.first())
            .map(|f| files.source.display(f))
            .unwrap_or_default();
        let own_logtype = store
            .own("Definition")
            .is_some_and(|d| d.contains_key("logtype"));
        let mut def = DefInit::new(Rc::new(store), main, args);
        if def.init.get("logtype").is_none_or(|v| v.text.is_empty()) && !own_logtype {
            let logtype = if backend.starts_with("systemd") {
                "journal"
            } else {
                "file"
            };
            def.init
                .insert("logtype".into(), Value::synthetic(logtype, span.clone()));
        }
        def.read_init()?;
        Ok(Some(FilterReader {
            name: name.to_string(),
            args: args
                .iter()
                .map(|(k, v)| (k.clone(), v.text.clone()))
                .collect(),
            def,
        }))
    }

    /// The filter's options as fail2ban first reads them for a jail, to offer them to the
    /// jail as `%(known/key)s`: filter options with the jail's early variables, everything
    /// else without.
    pub fn known(&self, early: &Vars) -> Result<IndexMap<String, Value>, Problem> {
        let vars = self.def.vars(early);
        let mut opts = self.def.definition_values(&FILTER_KEYS, &vars)?;
        self.def.add_all_definition(&mut opts, &Vars::new())?;
        self.def.combine(opts, &vars, &[])
    }

    /// The resolved filter options given the jail's variables.
    pub fn resolve(&self, jail: &Vars) -> Result<FilterParts, Problem> {
        let vars = self.def.vars(jail);
        let opts = self.def.definition_values(&FILTER_KEYS, &vars)?;
        let combined = self.def.combine(opts, &vars, &[])?;
        let values = combined
            .into_iter()
            .filter(|(k, _)| FILTER_KEYS.contains(&k.as_str()))
            .collect();
        let mut all = IndexMap::new();
        self.def.add_all_definition(&mut all, &vars)?;
        let options = self
            .def
            .combine(all, &vars, &[])?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("known/"))
            .map(|(k, v)| (k, v.text))
            .collect();
        Ok(FilterParts { values, options })
    }
}

/// Lays the jail's own filter options over the filter's and builds the final filter.
/// `jail` holds only the filter options the jail itself sets.
pub(crate) fn assemble(
    name: &str,
    file: Option<PathBuf>,
    args: BTreeMap<String, String>,
    parts: Option<FilterParts>,
    jail: &IndexMap<String, Value>,
) -> Result<FilterConfig, Problem> {
    let empty = IndexMap::new();
    let (filt, options) = match &parts {
        Some(p) => (&p.values, p.options.clone()),
        None => (&empty, BTreeMap::new()),
    };
    // A jail's value replaces the filter's; list options accumulate as fail2ban's
    // add-commands do.
    let scalar = |k: &str| jail.get(k).or_else(|| filt.get(k));
    let mut failregex = Vec::new();
    let mut failregex_spans = Vec::new();
    let mut ignoreregex = Vec::new();
    let mut journal_lines = Vec::new();
    for src in [filt, jail] {
        if let Some(v) = src.get("failregex") {
            for (text, span) in lines_with_spans(v) {
                failregex.push(text);
                failregex_spans.push(span);
            }
        }
        if let Some(v) = src.get("ignoreregex") {
            ignoreregex.extend(lines_with_spans(v).into_iter().map(|(t, _)| t));
        }
        if let Some(v) = src.get("journalmatch") {
            for line in v.text.split('\n').filter(|l| !l.trim().is_empty()) {
                journal_lines.push((line.to_string(), v.span.clone()));
            }
        }
    }
    let mut journalmatch: Vec<Vec<String>> = Vec::new();
    for (line, span) in journal_lines {
        let words = shell_words(&line)
            .map_err(|e| Problem::new(span.clone(), format!("journalmatch `{line}`: {e}")))?;
        for alt in words.split(|w| w == "+") {
            if !alt.is_empty() {
                journalmatch.push(alt.to_vec());
            }
        }
    }
    let maxlines = match scalar("maxlines") {
        Some(v) if !v.text.trim().is_empty() => v
            .text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Problem::new(
                    v.span.clone(),
                    format!(
                        "maxlines `{}` is not a positive whole number",
                        v.text.trim()
                    ),
                )
            })?,
        _ => 1,
    };
    let nonempty = |k: &str| {
        scalar(k)
            .map(|v| v.text.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    Ok(FilterConfig {
        name: name.to_string(),
        file,
        args,
        prefregex: nonempty("prefregex"),
        failregex,
        ignoreregex,
        maxlines,
        datepattern: nonempty("datepattern"),
        journalmatch,
        options,
        failregex_spans,
    })
}

/// The non-empty lines of a multi-line option with the line each came from: when the
/// value has as many lines as were written, line for line; otherwise (lines added by
/// interpolation) the line of the key.
fn lines_with_spans(v: &Value) -> Vec<(String, Span)> {
    let lines: Vec<&str> = v.text.split('\n').collect();
    let exact = lines.len() == v.lines.len();
    lines
        .into_iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let line = if exact { v.lines[i] } else { v.span.line };
            (
                l.to_string(),
                Span {
                    file: v.span.file.clone(),
                    line,
                },
            )
        })
        .collect()
}

/// Splits a line into words as a POSIX shell would (quotes and backslashes), which is how
/// fail2ban splits `journalmatch` lines.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(x) => cur.push(x),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_like_shlex() {
        assert_eq!(
            shell_words("_SYSTEMD_UNIT=sshd.service + _COMM=sshd").unwrap(),
            vec!["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]
        );
        assert_eq!(
            shell_words(r#"a="b c" 'd e' f\ g"#).unwrap(),
            vec!["a=b c", "d e", "f g"]
        );
        assert!(shell_words("'x").is_err());
    }

    #[test]
    fn spans_follow_lines_when_counts_match() {
        let v = Value {
            text: "a\n\nb".into(),
            span: Span {
                file: "f".into(),
                line: 3,
            },
            lines: vec![3, 4, 5],
        };
        let got: Vec<u32> = lines_with_spans(&v).iter().map(|(_, s)| s.line).collect();
        assert_eq!(got, vec![3, 5]);
    }
}
