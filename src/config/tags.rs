//! The `<tag>` layer fail2ban applies when it combines a filter's or an action's options:
//! `<name>` is replaced by the option of that name (or, failing that, by whatever a lookup
//! callback finds, such as `<known/x>` or `<lt_file/__prefix_line>`), repeatedly, so tags
//! built from tags (`<mdre-<mode>>`) resolve from the inside out. Tags nobody defines
//! (`<HOST>`, `<F-USER>`, `<ip>`) stay for the filter engine or the action renderer.
//!
//! The replacement order follows fail2ban's, so the results are the same strings; a tag
//! that refers to itself, or is replaced more than 25 times within one option, is an error
//! rather than a hang.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;

use super::diag::Problem;
use super::ini::Value;

/// fail2ban's `MAX_TAG_REPLACE_COUNT`.
const MAX_REPLACE: usize = 25;
/// A bound on one value's size, so doubling definitions cannot exhaust memory.
const MAX_LEN: usize = 4 << 20;

/// Finds the next `<name>` at or after byte `from`: a name is one or more characters other
/// than space, `<` and `>`.
pub(crate) fn find_tag(value: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = value.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let mut j = i + 1;
            while j < bytes.len() && !matches!(bytes[j], b' ' | b'<' | b'>') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'>' && j > i + 1 {
                return Some((i, j + 1));
            }
        }
        i += 1;
    }
    None
}

/// Substitutes tags among `tags` (fail2ban's `substituteRecursiveTags`). `ignore` lists tag
/// names left alone; `conditional` (e.g. `family=inet6`) prefers `name?conditional` keys;
/// `lookup` resolves names that are not keys of `tags`.
pub(crate) fn substitute(
    input: &IndexMap<String, Value>,
    conditional: &str,
    ignore: &HashSet<String>,
    lookup: &mut dyn FnMut(&str) -> Result<Option<String>, Problem>,
) -> Result<IndexMap<String, Value>, Problem> {
    let mut tags = input.clone();
    let mut done: HashSet<String> = HashSet::new();
    let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    let keys: Vec<String> = tags.keys().cloned().collect();
    let mut cache: HashMap<String, Option<String>> = HashMap::new();
    loop {
        let mut again = false;
        for tag in &keys {
            if ignore.contains(tag) || done.contains(tag) {
                continue;
            }
            let original = tags[tag].text.clone();
            let mut value = original.clone();
            let had_counts = counts.contains_key(tag);
            let mut replaced = counts.remove(tag).unwrap_or_default();
            let mut at = find_tag(&value, 0);
            while let Some((start, end)) = at {
                let rtag = value[start + 1..end - 1].to_string();
                if ignore.contains(&rtag) {
                    at = find_tag(&value, end);
                    continue;
                }
                let span = tags[tag].span.clone();
                if rtag == *tag {
                    return Err(Problem::new(
                        span,
                        format!("`{tag}` refers to itself through <{rtag}>"),
                    ));
                }
                if replaced.get(&rtag).copied().unwrap_or(1) > MAX_REPLACE {
                    return Err(Problem::new(
                        span,
                        format!(
                            "<{rtag}> in `{tag}` was replaced more than {MAX_REPLACE} times: the tags refer to each other"
                        ),
                    ));
                }
                let mut repl = None;
                if !conditional.is_empty() {
                    repl = tags
                        .get(&format!("{rtag}?{conditional}"))
                        .map(|t| t.text.clone());
                }
                if repl.is_none() {
                    repl = tags.get(&rtag).map(|t| t.text.clone());
                }
                if repl.is_none() {
                    repl = match cache.get(&rtag) {
                        Some(hit) => hit.clone(),
                        None => {
                            let found = lookup(&rtag)?;
                            cache.insert(rtag.clone(), found.clone());
                            found
                        }
                    };
                }
                let Some(repl) = repl else {
                    at = find_tag(&value, end);
                    continue;
                };
                value = value.replace(&format!("<{rtag}>"), &repl);
                if value.len() > MAX_LEN {
                    return Err(Problem::new(
                        span,
                        format!("expanding <{rtag}> in `{tag}` grows it beyond {MAX_LEN} bytes"),
                    ));
                }
                *replaced.entry(rtag).or_insert(0) += 1;
                at = find_tag(&value, start);
            }
            let changed = value != original;
            if changed && find_tag(&value, 0).is_some() {
                again = true;
                counts.insert(tag.clone(), replaced);
            } else if had_counts {
                counts.insert(tag.clone(), replaced);
            }
            if !value.contains('<') {
                done.insert(tag.clone());
            }
            if changed {
                tags[tag].text = value;
            }
        }
        if !again {
            break;
        }
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Span;

    fn span() -> Span {
        Span {
            file: "f.conf".into(),
            line: 7,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> IndexMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::synthetic(*v, span())))
            .collect()
    }

    fn run(
        pairs: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Result<IndexMap<String, String>, String> {
        let extra: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut lookup = |name: &str| Ok(extra.get(name).cloned());
        substitute(&map(pairs), "", &HashSet::new(), &mut lookup)
            .map(|m| m.into_iter().map(|(k, v)| (k, v.text)).collect())
            .map_err(|p| p.to_string())
    }

    #[test]
    fn simple_and_nested_tags() {
        let r = run(&[("a", "3"), ("b", "<a>_3"), ("c", "<b>-<a>")], &[]).unwrap();
        assert_eq!(r["b"], "3_3");
        assert_eq!(r["c"], "3_3-3");
    }

    #[test]
    fn tag_in_tag_resolves_inside_out() {
        let r = run(
            &[("failregex", "x <mdre-<mode>> y"), ("mode", "ddos")],
            &[("mdre-ddos", "DDOS<HOST>"), ("mdre-normal", "N")],
        )
        .unwrap();
        assert_eq!(r["failregex"], "x DDOS<HOST> y");
    }

    #[test]
    fn unknown_tags_are_kept() {
        let r = run(&[("failregex", "^<F-USER>.*</F-USER> from <HOST>$")], &[]).unwrap();
        assert_eq!(r["failregex"], "^<F-USER>.*</F-USER> from <HOST>$");
    }

    #[test]
    fn lookup_resolves_qualified_names() {
        let r = run(
            &[("p", "<lt_<logtype>/__prefix_line>"), ("logtype", "file")],
            &[("lt_file/__prefix_line", "PFX")],
        )
        .unwrap();
        assert_eq!(r["p"], "PFX");
    }

    #[test]
    fn self_reference_is_an_error() {
        let e = run(&[("a", "x<a>")], &[]).unwrap_err();
        assert!(e.starts_with("f.conf:7: "), "{e}");
        assert!(e.contains("refers to itself"), "{e}");
    }

    #[test]
    fn mutual_reference_is_an_error_not_a_hang() {
        let e = run(&[("a", "<b>"), ("b", "<a>")], &[]).unwrap_err();
        assert!(
            e.contains("refers to itself") || e.contains("more than 25"),
            "{e}"
        );
        let e = run(&[("a", "<b>")], &[("b", "x<b>")]).unwrap_err();
        assert!(e.contains("more than 25"), "{e}");
    }

    #[test]
    fn ignored_and_conditional_tags() {
        let mut lookup = |_: &str| Ok(None);
        let ignore: HashSet<String> = ["ip".to_string()].into();
        let r = substitute(
            &map(&[
                ("ip", "X"),
                ("cmd", "ban <ip> <bt>"),
                ("bt", "v4"),
                ("bt?family=inet6", "v6"),
            ]),
            "family=inet6",
            &ignore,
            &mut lookup,
        )
        .unwrap();
        assert_eq!(r["cmd"].text, "ban <ip> v6");
    }

    #[test]
    fn tag_names_exclude_spaces_but_not_tabs() {
        assert_eq!(find_tag("a <b c> <d>", 0), Some((8, 11)));
        assert_eq!(find_tag("<a\tb>", 0), Some((0, 5)));
        assert_eq!(find_tag("<>", 0), None);
        assert_eq!(find_tag("<<x>>", 0), Some((1, 4)));
    }
}
