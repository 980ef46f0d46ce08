//! `<tag>` rendering for fail2ban-style action commands.
//!
//! Two layers, as in fail2ban. Static tags come from the action's own configuration
//! (trusted) and are substituted recursively, preferring `tag?family=inet6`-style
//! conditional keys. Dynamic tags carry values derived from log lines (untrusted): they are
//! substituted once, never re-scanned, and any value that is not plainly safe is handed to
//! the shell as a positional parameter bound to a variable, so log content never becomes
//! shell syntax.

use std::collections::BTreeMap;

use crate::config::tags::find_tag;

/// How many times one tag may be substituted while rendering one string before the
/// definitions are considered self-referencing.
const MAX_REPLACE: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag <{tag}> refers to itself (through {chain})")]
    Recursive { tag: String, chain: String },
}

fn builtin(tag: &str) -> Option<String> {
    match tag {
        "br" => Some("\n".into()),
        "sp" => Some(" ".into()),
        "fq-hostname" | "sh-hostname" => {
            let host = nix::unistd::gethostname()
                .ok()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|| "localhost".into());
            if tag == "sh-hostname" {
                Some(host.split('.').next().unwrap_or(&host).to_string())
            } else {
                Some(host)
            }
        }
        _ => None,
    }
}

/// Substitutes static tags in `template` from `props`, recursively. `family` selects
/// conditional keys (`inet4` or `inet6`). Tags with no definition are left in place: they
/// may be dynamic tags or literal shell text such as `<STDIN>`.
pub fn render_static(
    template: &str,
    props: &BTreeMap<String, String>,
    family: Option<&str>,
) -> Result<String, TagError> {
    let mut value = template.to_string();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut pos = 0;
    while let Some((start, end)) = find_tag(&value, pos) {
        let tag = &value[start + 1..end - 1];
        let repl = family
            .and_then(|f| props.get(&format!("{tag}?family={f}")))
            .or_else(|| props.get(tag))
            .cloned()
            .or_else(|| builtin(tag));
        let Some(repl) = repl else {
            pos = end;
            continue;
        };
        let n = counts.entry(tag.to_string()).or_insert(0);
        *n += 1;
        if *n > MAX_REPLACE {
            return Err(TagError::Recursive {
                tag: tag.to_string(),
                chain: counts
                    .iter()
                    .filter(|(_, c)| **c > 1)
                    .map(|(t, _)| format!("<{t}>"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        value.replace_range(start..end, &repl);
        // Rescan from the start of the replacement: it may hold tags itself, or complete a
        // tag-in-tag such as `<family-<family>>`.
        pos = start;
        // When the tag sat inside another (`<cmd-<mode>>`), the outer one is complete
        // only now: back up to its opening bracket.
        if let Some(open) = value[..start].rfind('<')
            && !value[open..start].contains(['>', ' '])
        {
            pos = open;
        }
    }
    Ok(value)
}

/// A command with dynamic tags rendered, ready for `/bin/sh -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellScript {
    /// The script, with unsafe values replaced by variable references.
    pub script: String,
    /// Variables bound from positional parameters, in order ($0, $1, ...).
    pub vars: Vec<(String, String)>,
}

impl ShellScript {
    /// The argument vector for `sh -c`: the script with its variable bindings prepended,
    /// then the values.
    pub fn argv(&self) -> Vec<String> {
        let mut head = String::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            head.push_str(&format!("{name}=${i} "));
        }
        let mut argv = vec!["-c".to_string()];
        if head.is_empty() {
            argv.push(self.script.clone());
        } else {
            argv.push(format!("{head}\n{}", self.script));
        }
        argv.extend(self.vars.iter().map(|(_, v)| v.clone()));
        argv
    }
}

/// Whether a value may be spliced into a shell command as it is.
fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@%+=,-".contains(&b))
}

fn var_name(tag: &str) -> String {
    let mut s = String::from("f2bV_");
    s.extend(
        tag.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    s
}

/// Substitutes dynamic tags (`<ip>`, `<matches>`, `<F-USER>`, ...) once, without
/// recursion. `values` maps tag names to values; `fields` maps captured filter fields
/// (lowercase names without the `F-` prefix) for `<F-NAME>` tags, which render empty when
/// the filter did not capture them.
pub fn render_dynamic(
    cmd: &str,
    values: &BTreeMap<String, String>,
    fields: &BTreeMap<String, String>,
) -> ShellScript {
    let mut out = String::with_capacity(cmd.len());
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut bind = |tag: &str, value: &str, out: &mut String| {
        if is_plain(value) {
            out.push_str(value);
        } else {
            let name = var_name(tag);
            if !vars.iter().any(|(n, _)| *n == name) {
                vars.push((name.clone(), value.to_string()));
            }
            out.push('$');
            out.push_str(&name);
        }
    };
    let mut pos = 0;
    while let Some((start, end)) = find_tag(cmd, pos) {
        out.push_str(&cmd[pos..start]);
        let tag = &cmd[start + 1..end - 1];
        if let Some(v) = values.get(tag) {
            bind(tag, v, &mut out);
        } else if let Some(field) = tag.strip_prefix("F-") {
            let key = field.to_ascii_lowercase();
            if let Some(v) = fields.get(&key) {
                bind(&format!("F_{field}"), v, &mut out);
            }
        } else {
            out.push_str(&cmd[start..end]);
        }
        pos = end;
    }
    out.push_str(&cmd[pos..]);
    ShellScript { script: out, vars }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn static_tags_resolve_recursively_with_family() {
        let p = props(&[
            ("iptables", "iptables <lockingopt>"),
            ("iptables?family=inet6", "ip6tables <lockingopt>"),
            ("lockingopt", "-w"),
            ("name", "sshd"),
        ]);
        assert_eq!(
            render_static("<iptables> -N f2b-<name>", &p, Some("inet4")).unwrap(),
            "iptables -w -N f2b-sshd"
        );
        assert_eq!(
            render_static("<iptables> -N f2b-<name>", &p, Some("inet6")).unwrap(),
            "ip6tables -w -N f2b-sshd"
        );
        // Unknown tags (dynamic ones, shell text) stay.
        assert_eq!(
            render_static("add <ip> <STDIN>", &p, None).unwrap(),
            "add <ip> <STDIN>"
        );
    }

    #[test]
    fn tag_in_tag() {
        let p = props(&[("mode", "fast"), ("cmd-fast", "go"), ("cmd-slow", "wait")]);
        assert_eq!(render_static("<cmd-<mode>>!", &p, None).unwrap(), "go!");
    }

    #[test]
    fn self_reference_is_an_error() {
        let p = props(&[("a", "x<b>"), ("b", "<a>")]);
        let e = render_static("<a>", &p, None).unwrap_err();
        assert!(e.to_string().contains("refers to itself"), "{e}");
    }

    #[test]
    fn builtins() {
        assert_eq!(
            render_static("a<sp>b<br>c", &props(&[]), None).unwrap(),
            "a b\nc"
        );
    }

    #[test]
    fn unsafe_values_become_positional_variables() {
        let mut values = BTreeMap::new();
        values.insert("ip".to_string(), "192.0.2.7".to_string());
        values.insert(
            "matches".to_string(),
            "Failed for `rm -rf /`; $(reboot) 'x' \"y\"".to_string(),
        );
        let mut fields = BTreeMap::new();
        fields.insert("user".to_string(), "root; id".to_string());
        let s = render_dynamic(
            "echo <ip> <matches> user=<F-USER> none=<F-NOPE> <keep>",
            &values,
            &fields,
        );
        assert_eq!(
            s.script,
            "echo 192.0.2.7 $f2bV_matches user=$f2bV_F_USER none= <keep>"
        );
        assert_eq!(s.vars.len(), 2);
        // The values reach the shell only as data.
        let out = std::process::Command::new("/bin/sh")
            .args(
                render_dynamic("printf '%s|' \"<matches>\" \"<F-USER>\"", &values, &fields).argv(),
            )
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Failed for `rm -rf /`; $(reboot) 'x' \"y\"|root; id|"
        );
    }
}
