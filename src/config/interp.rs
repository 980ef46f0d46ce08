//! `%(name)s` interpolation with the semantics fail2ban gets from Python's configparser:
//! a value is looked up in the caller's variables, then the section, then `[DEFAULT]`;
//! referenced values are interpolated again in the same section; `%%` is a literal `%`;
//! `%(__name__)s` is the section's name; `%(section/key)s`, `%(default/key)s` and
//! `%(known/key)s` (the value before the last override) reach outside the section.
//! Recursion is reported with the chain of names, and nesting is limited to ten levels as
//! in Python.

use indexmap::IndexMap;

use super::diag::Problem;
use super::ini::{Options, Value};
use super::store::Store;

/// Variables that take precedence over a section's own values (fail2ban's `vars`).
pub(crate) type Vars = IndexMap<String, Value>;

/// configparser's `MAX_INTERPOLATION_DEPTH`.
const MAX_DEPTH: usize = 10;

enum Fail {
    Missing(String),
    Syntax(String),
    Recursion(Vec<String>),
    Depth,
}

struct Ctx<'a> {
    store: &'a Store,
    section: &'a str,
    own: Option<&'a Options>,
    extra: Option<&'a Options>,
    vars: &'a Vars,
}

impl<'a> Ctx<'a> {
    fn lookup(&self, key: &str) -> Option<&'a Value> {
        self.vars
            .get(key)
            .or_else(|| self.extra.and_then(|e| e.get(key)))
            .or_else(|| self.own.and_then(|o| o.get(key)))
            .or_else(|| self.store.defaults.get(key))
    }

    /// `sec/opt` references that are not plain keys: another section's raw value, the
    /// default, or the known (pre-override) value, falling back to `[DEFAULT]`.
    fn lookup_qualified(&self, written: &str) -> Option<&'a Value> {
        let (sec, opt) = written.split_once('/')?;
        if sec.is_empty()
            || opt.is_empty()
            || !sec
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        {
            return None;
        }
        let opt = opt.to_lowercase();
        let from_default = || self.store.defaults.get(&opt);
        match sec.to_lowercase().as_str() {
            "default" => from_default(),
            "known" => self
                .store
                .sections
                .get(&format!("KNOWN/{}", self.section))
                .and_then(|s| s.get(&opt))
                .or_else(from_default),
            _ => {
                let s = self.store.sections.get(sec)?;
                s.get(&opt).or_else(from_default)
            }
        }
    }

    fn interpolate(
        &self,
        rest: &str,
        depth: usize,
        chain: &mut Vec<String>,
        out: &mut String,
    ) -> Result<(), Fail> {
        if depth > MAX_DEPTH {
            return Err(Fail::Depth);
        }
        let mut rest = rest;
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            let next = rest[1..].chars().next();
            match next {
                Some('%') => {
                    out.push('%');
                    rest = &rest[2..];
                }
                Some('(') => {
                    let Some(close) = rest.find(')') else {
                        return Err(Fail::Syntax(rest.to_string()));
                    };
                    if close == 2 || !rest[close + 1..].starts_with('s') {
                        return Err(Fail::Syntax(rest.to_string()));
                    }
                    let written = &rest[2..close];
                    rest = &rest[close + 2..];
                    let var = written.to_lowercase();
                    if var == "__name__" {
                        out.push_str(self.section);
                        continue;
                    }
                    let Some(v) = self.lookup(&var).or_else(|| self.lookup_qualified(written))
                    else {
                        return Err(Fail::Missing(written.to_string()));
                    };
                    if !v.text.contains('%') {
                        out.push_str(&v.text);
                        continue;
                    }
                    if chain.contains(&var) {
                        chain.push(var);
                        return Err(Fail::Recursion(std::mem::take(chain)));
                    }
                    chain.push(var);
                    self.interpolate(&v.text, depth + 1, chain, out)?;
                    chain.pop();
                }
                _ => return Err(Fail::Syntax(rest.to_string())),
            }
        }
        out.push_str(rest);
        Ok(())
    }
}

impl Store {
    /// configparser's `get(section, option, vars=vars)`: Ok(None) when the section or the
    /// option does not exist. `extra` holds options laid over the section (fail2ban merges
    /// a filter's values into a jail's section as `known/...`).
    pub fn get(
        &self,
        section: &str,
        option: &str,
        vars: &Vars,
        extra: Option<&Options>,
    ) -> Result<Option<Value>, Problem> {
        let own = self.sections.get(section);
        if own.is_none() && section != "DEFAULT" {
            return Ok(None);
        }
        let ctx = Ctx {
            store: self,
            section,
            own,
            extra,
            vars,
        };
        let option = option.to_lowercase();
        let Some(raw) = ctx.lookup(&option) else {
            return Ok(None);
        };
        if !raw.text.contains('%') {
            return Ok(Some(raw.clone()));
        }
        let mut out = String::new();
        let mut chain = vec![option.clone()];
        match ctx.interpolate(&raw.text, 1, &mut chain, &mut out) {
            Ok(()) => Ok(Some(Value {
                text: out,
                span: raw.span.clone(),
                lines: raw.lines.clone(),
            })),
            Err(f) => Err(Problem::new(
                raw.span.clone(),
                describe(f, &option, section),
            )),
        }
    }

    /// fail2ban's `get_ex`: like [`Store::get`], but `sec/key` names another section's
    /// option and `known/key` the value before the last override (falling back to the
    /// current one). Used to resolve `<tags>` that name no option of the filter or action.
    pub fn get_ex(
        &self,
        section: &str,
        option: &str,
        vars: &Vars,
    ) -> Result<Option<Value>, Problem> {
        if let Some((sec, opt)) = option.split_once('/')
            && !sec.is_empty()
            && sec
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
            && !opt.is_empty()
            && !opt.contains(|c: char| c.is_whitespace() || c == '>')
        {
            let tries: Vec<String> = match sec.to_lowercase().as_str() {
                "known" => vec![format!("KNOWN/{section}"), section.to_string()],
                "default" => vec!["DEFAULT".to_string()],
                _ => vec![sec.to_string()],
            };
            for s in tries {
                if let Some(v) = self.get(&s, opt, &Vars::new(), None)? {
                    return Ok(Some(v));
                }
            }
        }
        self.get(section, option, vars, None)
    }
}

fn describe(f: Fail, option: &str, section: &str) -> String {
    match f {
        Fail::Missing(var) => format!(
            "`{option}` refers to %({var})s, which is not an option of [{section}] or [DEFAULT]"
        ),
        Fail::Syntax(at) => {
            let at: String = at.chars().take(30).collect();
            format!(
                "bad interpolation in `{option}`: '%' must be followed by '%' or '(name)s', found `{at}`"
            )
        }
        Fail::Recursion(chain) => format!(
            "recursive interpolation in [{section}]: {}",
            chain.join(" -> ")
        ),
        Fail::Depth => format!(
            "interpolation of `{option}` in [{section}] nests deeper than {MAX_DEPTH} levels"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::store::Files;
    use crate::config::store::tests::mem;
    use std::path::Path;

    fn store(files: &[(&'static str, &'static str)]) -> Store {
        let src = mem(files);
        let f = Files::new(&src);
        Store::read_base(&f, Path::new("a")).unwrap()
    }

    fn get(s: &Store, sect: &str, key: &str) -> Result<String, String> {
        s.get(sect, key, &Vars::new(), None)
            .map(|v| v.map(|v| v.text).unwrap_or_else(|| "<none>".into()))
            .map_err(|p| p.to_string())
    }

    #[test]
    fn basic_default_and_section_precedence() {
        let s = store(&[(
            "a.conf",
            "[DEFAULT]\nx = dx\ny = dy\nboth = %(x)s-%(y)s\n[S]\nx = sx\nv = %(both)s\n",
        )]);
        // Referenced values are interpolated in the section asking, not where they live.
        assert_eq!(get(&s, "S", "v").unwrap(), "sx-dy");
        assert_eq!(get(&s, "S", "both").unwrap(), "sx-dy");
        assert_eq!(get(&s, "DEFAULT", "both").unwrap(), "dx-dy");
        assert_eq!(get(&s, "S", "nope").unwrap(), "<none>");
        assert_eq!(get(&s, "Nope", "x").unwrap(), "<none>");
    }

    #[test]
    fn vars_take_precedence_over_section() {
        let s = store(&[("a.conf", "[S]\nmode = normal\nre = <%(mode)s>\n")]);
        let mut vars = Vars::new();
        vars.insert(
            "mode".into(),
            Value::synthetic(
                "aggressive",
                crate::config::model::Span {
                    file: "x".into(),
                    line: 0,
                },
            ),
        );
        let v = s.get("S", "re", &vars, None).unwrap().unwrap();
        assert_eq!(v.text, "<aggressive>");
    }

    #[test]
    fn name_percent_escape_and_case_folding() {
        let s = store(&[(
            "a.conf",
            "[sshd]\nFilter = %(__name__)s[x=%(Mode)s]\nmode = m\npct = 100%%\n",
        )]);
        assert_eq!(get(&s, "sshd", "filter").unwrap(), "sshd[x=m]");
        assert_eq!(get(&s, "sshd", "pct").unwrap(), "100%");
    }

    #[test]
    fn section_default_and_known_references() {
        let s = store(&[
            (
                "a.conf",
                "[INCLUDES]\nafter = a2.conf\n[DEFAULT]\nk = dk\n[lt_file]\np = file-%(k)s\n[D]\nk = sk\nr = %(lt_file/p)s|%(default/k)s\nf = one\n",
            ),
            ("a2.conf", "[D]\nf = %(known/f)s two\n"),
        ]);
        assert_eq!(get(&s, "D", "r").unwrap(), "file-sk|dk");
        assert_eq!(get(&s, "D", "f").unwrap(), "one two");
    }

    #[test]
    fn known_falls_back_to_default() {
        let s = store(&[("a.conf", "[DEFAULT]\nf = d\n[D]\nf = %(known/f)s+\n")]);
        assert_eq!(get(&s, "D", "f").unwrap(), "d+");
    }

    #[test]
    fn errors_name_file_line_and_cause() {
        let s = store(&[(
            "a.conf",
            "[S]\nmissing = %(nope)s\nself = %(self)s\nloop_a = %(loop_b)s\nloop_b = x%(loop_a)s\nbad = 50%\nbadref = %(x)d\n",
        )]);
        let e = get(&s, "S", "missing").unwrap_err();
        assert!(e.starts_with("cfg/a.conf:2: "), "{e}");
        assert!(e.contains("%(nope)s"), "{e}");
        let e = get(&s, "S", "self").unwrap_err();
        assert!(
            e.contains("recursive interpolation in [S]: self -> self"),
            "{e}"
        );
        let e = get(&s, "S", "loop_a").unwrap_err();
        assert!(e.contains("loop_a -> loop_b -> loop_a"), "{e}");
        assert!(e.starts_with("cfg/a.conf:4: "), "{e}");
        assert!(
            get(&s, "S", "bad")
                .unwrap_err()
                .contains("must be followed")
        );
        assert!(
            get(&s, "S", "badref")
                .unwrap_err()
                .contains("must be followed")
        );
    }

    #[test]
    fn depth_is_limited_like_python() {
        let mut text = String::from("[S]\nv0 = end\n");
        for i in 1..=12 {
            text.push_str(&format!("v{i} = %(v{})s\n", i - 1));
        }
        let leaked: &'static str = Box::leak(text.into_boxed_str());
        let s = store(&[("a.conf", leaked)]);
        // v10 → v9 → … → v0: ten nested levels below the top, as configparser allows.
        assert_eq!(get(&s, "S", "v9").unwrap(), "end");
        assert!(get(&s, "S", "v12").unwrap_err().contains("deeper than 10"));
    }

    #[test]
    fn get_ex_reaches_other_sections() {
        let s = store(&[
            (
                "a.conf",
                "[INCLUDES]\nafter = a2.conf\n[lt_file]\np = P\n[Definition]\nx = 1\n",
            ),
            ("a2.conf", "[Definition]\nx = 2\n"),
        ]);
        let v = |o: &str| {
            s.get_ex("Definition", o, &Vars::new())
                .unwrap()
                .map(|v| v.text)
        };
        assert_eq!(v("lt_file/p").as_deref(), Some("P"));
        assert_eq!(v("known/x").as_deref(), Some("1"));
        assert_eq!(v("x").as_deref(), Some("2"));
        assert_eq!(v("HOST"), None);
    }
}
