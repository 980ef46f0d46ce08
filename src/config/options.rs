//! The argument syntax of `filter = name[key=value, ...]` and `action = ...` lines:
//! values may be quoted with `"` or `'` (then they may hold commas, brackets and newlines),
//! groups may be chained (`name[a=1][b=2]`), and an action list holds one action per
//! whitespace-separated item, where an item's `[...]` may span lines.

use indexmap::IndexMap;

use super::diag::clip;

/// Splits `name[k=v, ...]` into the name and its arguments (fail2ban's `extractOptions`).
pub(crate) fn extract(spec: &str) -> Result<(String, IndexMap<String, String>), String> {
    let (name, args) = match spec.find('[') {
        None => (spec, None),
        Some(i) => {
            let rest = spec[i..].trim_end();
            if !rest.ends_with(']') {
                return Err(format!("`{}`: expected `]` at the end", clip(spec, 25)));
            }
            (&spec[..i], Some(&rest[1..rest.len() - 1]))
        }
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{}`: missing name before `[`", clip(spec, 25)));
    }
    let mut out = IndexMap::new();
    if let Some(args) = args {
        parse_args(args, &mut out)?;
    }
    Ok((name.to_string(), out))
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The end of a `key=` at `at` (the index of `=`), if there is one.
fn key_at(s: &str, at: usize) -> Option<usize> {
    let end = at + s[at..].find(|c: char| !is_key_char(c))?;
    (end > at && s[end..].starts_with('=')).then_some(end)
}

/// A value starting at `at`: quoted if a closing quote exists, otherwise up to the next
/// `,` or `]`. Returns the value and the index after it.
fn value_at(s: &str, at: usize) -> (&str, usize) {
    let rest = &s[at..];
    if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'')
        && let Some(close) = rest[1..].find(q)
    {
        return (&rest[1..1 + close], at + close + 2);
    }
    let end = rest.find([',', ']']).unwrap_or(rest.len());
    (&rest[..end], at + end)
}

fn skip_ws(s: &str, at: usize) -> usize {
    at + s[at..].len() - s[at..].trim_start().len()
}

fn parse_args(s: &str, out: &mut IndexMap<String, String>) -> Result<(), String> {
    let mut pos = 0;
    loop {
        let p = skip_ws(s, pos);
        if let Some(key_end) = key_at(s, p) {
            let key = &s[p..key_end];
            let (value, after) = value_at(s, key_end + 1);
            out.insert(key.trim().to_string(), value.trim().to_string());
            let rest = &s[after..];
            if rest.is_empty() {
                return Ok(());
            }
            if rest.starts_with(',') {
                pos = after + 1;
                continue;
            }
            if let Some(r) = rest.strip_prefix(']')
                && r.trim_start().starts_with('[')
            {
                pos = after + 1 + (r.len() - r.trim_start().len()) + 1;
                continue;
            }
            return Err(format!(
                "unexpected `{}` after argument `{key}`",
                clip(rest, 25)
            ));
        }
        let rest = &s[pos..];
        let tail = rest.strip_prefix(',').unwrap_or(rest);
        if tail.trim().is_empty() {
            return Ok(());
        }
        return Err(format!(
            "expected `key=value`, found `{}`",
            clip(rest.trim_start(), 25)
        ));
    }
}

/// Splits an `action` value into single action specifications (fail2ban's
/// `splitWithOptions`): items are separated by whitespace, except inside a well-formed
/// `[...]` argument list.
pub(crate) fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i..].chars().next().unwrap_or(' ');
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let end = item_with_args(s, i)
            .unwrap_or_else(|| s[i..].find(char::is_whitespace).map_or(s.len(), |e| i + e));
        out.push(s[i..end].trim().to_string());
        i = end;
    }
    out
}

/// `name` or `name[args]` starting at `at` and followed by whitespace or the end.
fn item_with_args(s: &str, at: usize) -> Option<usize> {
    let name_end = s[at..]
        .find(|c: char| c == '[' || c.is_whitespace())
        .map_or(s.len(), |e| at + e);
    if name_end == at {
        return None;
    }
    let b = skip_ws(s, name_end);
    let end = if s[b..].starts_with('[') {
        bracket_end(s, b).unwrap_or(name_end)
    } else {
        name_end
    };
    let ends_item = |e: usize| e == s.len() || s[e..].starts_with(char::is_whitespace);
    if ends_item(end) {
        Some(end)
    } else if end != name_end && ends_item(name_end) {
        Some(name_end)
    } else {
        None
    }
}

/// The index after the `]` closing the argument list that opens at `open`.
fn bracket_end(s: &str, open: usize) -> Option<usize> {
    let mut p = skip_ws(s, open + 1);
    while let Some(key_end) = key_at(s, p) {
        let (_, after) = value_at(s, key_end + 1);
        p = skip_ws(s, after);
        if s[p..].starts_with(',') {
            p = skip_ws(s, p + 1);
        } else if let Some(r) = s[p..].strip_prefix(']') {
            let q = skip_ws(s, p + 1);
            // `][` chains another group only when an argument follows.
            if r.trim_start().starts_with('[') && key_at(s, skip_ws(s, q + 1)).is_some() {
                p = skip_ws(s, q + 1);
            }
        }
    }
    s[p..].starts_with(']').then_some(p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> (String, Vec<(String, String)>) {
        let (n, a) = extract(s).unwrap();
        (n, a.into_iter().collect())
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plain_name() {
        assert_eq!(ex("sshd"), ("sshd".into(), vec![]));
        assert_eq!(ex(" sshd \n"), ("sshd".into(), vec![]));
    }

    #[test]
    fn arguments_quoted_and_unquoted() {
        assert_eq!(
            ex(r#"iptables[name=SSH, port="ssh, 2222", protocol='tcp', chain=]"#),
            (
                "iptables".into(),
                kv(&[
                    ("name", "SSH"),
                    ("port", "ssh, 2222"),
                    ("protocol", "tcp"),
                    ("chain", "")
                ])
            )
        );
        assert_eq!(
            ex("sshd[mode=aggressive]"),
            ("sshd".into(), kv(&[("mode", "aggressive")]))
        );
        assert_eq!(ex("a[x=1 y=2]").1, kv(&[("x", "1 y=2")]));
        assert_eq!(ex("a[x=1,]").1, kv(&[("x", "1")]));
        assert_eq!(ex(r#"a[x="[b]"]"#).1, kv(&[("x", "[b]")]));
        assert_eq!(ex("a[x=\"multi\nline\"]").1, kv(&[("x", "multi\nline")]));
    }

    #[test]
    fn chained_groups() {
        assert_eq!(ex("a[x=1][y=2]").1, kv(&[("x", "1"), ("y", "2")]));
        assert_eq!(ex("a[x=1] [y=2]").1, kv(&[("x", "1"), ("y", "2")]));
    }

    #[test]
    fn syntax_errors() {
        assert!(extract("a[x=1").unwrap_err().contains("expected `]`"));
        assert!(extract("[x=1]").unwrap_err().contains("missing name"));
        assert!(
            extract("a[x]")
                .unwrap_err()
                .contains("expected `key=value`")
        );
        assert!(
            extract(r#"a[x="1"y]"#)
                .unwrap_err()
                .contains("after argument `x`")
        );
        assert!(
            extract("a[x=1]]")
                .unwrap_err()
                .contains("after argument `x`")
        );
    }

    #[test]
    fn split_action_lists() {
        let v = split_list(
            "iptables-multiport[name=sshd, port=\"ssh,sftp\", protocol=tcp]\n   sendmail-whois[name=sshd, dest=\"a b\"]\n  plain",
        );
        assert_eq!(
            v,
            vec![
                "iptables-multiport[name=sshd, port=\"ssh,sftp\", protocol=tcp]",
                "sendmail-whois[name=sshd, dest=\"a b\"]",
                "plain"
            ]
        );
        // Arguments may continue on the next line.
        let v = split_list("a[x=1,\n   y=2] b");
        assert_eq!(v, vec!["a[x=1,\n   y=2]", "b"]);
        // Several items on one line.
        assert_eq!(split_list("a b[c=d]"), vec!["a", "b[c=d]"]);
        // A broken list falls back to whitespace splitting.
        assert_eq!(split_list("a[x] b"), vec!["a[x]", "b"]);
        assert_eq!(split_list("a[x=1][y=2] z"), vec!["a[x=1][y=2]", "z"]);
        assert!(split_list("  \n ").is_empty());
    }
}
