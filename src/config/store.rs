//! A set of files read into one merged view, as fail2ban's reader builds it: a base name
//! expands to `X.conf`, `X.d/*.conf`, `X.local`, `X.d/*.local`; each file pulls in its
//! `[INCLUDES] before/after` (and the `.local` twin of every included file); later files
//! override earlier ones key by key; `[Init?family=inet6]` becomes keys with a `?family=inet6`
//! suffix in `[Init]`; the value a key had before an override is kept in a `KNOWN/<section>`
//! section for `%(known/key)s` and `<known/key>`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use indexmap::IndexMap;

use super::diag::Problem;
use super::ini::{self, IniFile, Options};
use super::interp::Vars;
use super::model::Span;
use super::source::{FileSource, normalize};

/// Parsed files, each parsed once per load so its problems are reported once.
pub(crate) struct Files<'s> {
    pub source: &'s dyn FileSource,
    cache: RefCell<HashMap<PathBuf, Option<Rc<IniFile>>>>,
    errors: RefCell<Vec<Problem>>,
    warnings: RefCell<Vec<Problem>>,
    seen: RefCell<HashSet<(Span, String)>>,
}

impl<'s> Files<'s> {
    pub fn new(source: &'s dyn FileSource) -> Self {
        Files {
            source,
            cache: RefCell::default(),
            errors: RefCell::default(),
            warnings: RefCell::default(),
            seen: RefCell::default(),
        }
    }

    /// The file at `path`, parsed; None when it does not exist or cannot be read (the
    /// latter is reported).
    pub fn parse(&self, path: &Path) -> Option<Rc<IniFile>> {
        let key = normalize(path);
        if let Some(hit) = self.cache.borrow().get(&key) {
            return hit.clone();
        }
        let shown = self.source.display(&key);
        let parsed = match self.source.read(&key) {
            Ok(Some(text)) => {
                let f = ini::parse(&text, &shown);
                for e in &f.errors {
                    self.error(e.clone());
                }
                for w in &f.warnings {
                    self.warning(w.clone());
                }
                Some(Rc::new(f))
            }
            Ok(None) => None,
            Err(e) => {
                self.error(Problem::new(
                    Span {
                        file: shown,
                        line: 0,
                    },
                    format!("cannot read file: {e}"),
                ));
                None
            }
        };
        self.cache.borrow_mut().insert(key, parsed.clone());
        parsed
    }

    pub fn error(&self, p: Problem) {
        if self
            .seen
            .borrow_mut()
            .insert((p.span.clone(), p.message.clone()))
        {
            self.errors.borrow_mut().push(p);
        }
    }

    pub fn warning(&self, p: Problem) {
        if self
            .seen
            .borrow_mut()
            .insert((p.span.clone(), p.message.clone()))
        {
            self.warnings.borrow_mut().push(p);
        }
    }

    pub fn take_problems(&self) -> (Vec<Problem>, Vec<Problem>) {
        (
            std::mem::take(&mut self.errors.borrow_mut()),
            std::mem::take(&mut self.warnings.borrow_mut()),
        )
    }

    pub fn span(&self, path: &Path, line: u32) -> Span {
        Span {
            file: self.source.display(path),
            line,
        }
    }

    /// The existing files for base name `base` (`jail`, `filter.d/sshd`) in fail2ban's order.
    pub fn layered(&self, base: &Path) -> Vec<PathBuf> {
        let name = base.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = base.parent().unwrap_or(Path::new(""));
        let dropins = parent.join(format!("{name}.d"));
        let mut listed = self.source.list(&dropins);
        listed.retain(|n| !n.starts_with('.'));
        listed.sort();
        let drop = |ext: &str| -> Vec<PathBuf> {
            listed
                .iter()
                .filter(|n| n.ends_with(ext))
                .map(|n| dropins.join(n))
                .collect()
        };
        let mut out = vec![parent.join(format!("{name}.conf"))];
        out.extend(drop(".conf"));
        out.push(parent.join(format!("{name}.local")));
        out.extend(drop(".local"));
        out.retain(|p| self.source.is_file(p));
        out
    }
}

/// The merged view of some files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    pub defaults: Options,
    pub sections: IndexMap<String, Options>,
    /// Logical paths of the files read, in order.
    pub files: Vec<PathBuf>,
    /// Whether any of them has a line that could not be parsed.
    pub has_errors: bool,
    /// Where each section first appears.
    pub section_spans: HashMap<String, Span>,
}

impl Store {
    /// Reads base name `base` (`filter.d/sshd`): None when none of its files exists.
    pub fn read_base(files: &Files, base: &Path) -> Option<Store> {
        let list = files.layered(base);
        if list.is_empty() {
            return None;
        }
        Some(Store::read_list(files, &list))
    }

    /// Reads one file and its includes (a filter given by path).
    pub fn read_explicit(files: &Files, path: &Path) -> Option<Store> {
        if !files.source.is_file(path) {
            return None;
        }
        Some(Store::read_list(files, &[path.to_path_buf()]))
    }

    fn read_list(files: &Files, list: &[PathBuf]) -> Store {
        let mut order = Vec::new();
        expand(files, list, &[], &mut order);
        let mut store = Store::default();
        for path in order {
            let Some(ini) = files.parse(&path) else {
                continue;
            };
            store.has_errors |= !ini.errors.is_empty();
            store.merge(&ini);
            store.files.push(path);
        }
        store
    }

    fn merge(&mut self, ini: &IniFile) {
        for section in &ini.sections {
            if section.name == "DEFAULT" {
                for (k, v) in &section.options {
                    self.defaults.insert(k.clone(), v.clone());
                }
                continue;
            }
            let (name, opts) = match split_conditional(&section.name) {
                Some((base, cond)) => (
                    base.to_string(),
                    section
                        .options
                        .iter()
                        .map(|(k, v)| (format!("{k}{cond}"), v.clone()))
                        .collect::<Options>(),
                ),
                None => (section.name.clone(), section.options.clone()),
            };
            match self.sections.get_mut(&name) {
                Some(existing) => {
                    let previous: Vec<_> = opts
                        .keys()
                        .filter_map(|k| existing.get(k).map(|v| (k.clone(), v.clone())))
                        .collect();
                    for (k, v) in opts {
                        existing.insert(k, v);
                    }
                    let known = self.sections.entry(format!("KNOWN/{name}")).or_default();
                    for (k, v) in previous {
                        known.insert(k, v);
                    }
                }
                None => {
                    self.section_spans
                        .entry(name.clone())
                        .or_insert_with(|| section.span.clone());
                    self.sections.insert(name, opts);
                }
            }
        }
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// The section's own options, without `[DEFAULT]`.
    pub fn own(&self, name: &str) -> Option<&Options> {
        self.sections.get(name)
    }

    /// Option names of a section followed by those of `[DEFAULT]` it does not set.
    pub fn option_names(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .own(name)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for k in self.defaults.keys() {
            if !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    }

    /// The sections a user defined (no `INCLUDES`, no `KNOWN/...` bookkeeping).
    pub fn user_sections(&self) -> impl Iterator<Item = &str> {
        self.sections
            .keys()
            .map(String::as_str)
            .filter(|n| *n != "INCLUDES" && !n.starts_with("KNOWN/"))
    }
}

/// `Init?family=inet6` → (`Init`, `?family=inet6`); the base must be a word.
pub(crate) fn split_conditional(name: &str) -> Option<(&str, &str)> {
    let q = name.find('?')?;
    let (base, cond) = name.split_at(q);
    (!base.is_empty() && base.chars().all(|c| c.is_alphanumeric() || c == '_') && cond.len() > 1)
        .then_some((base, cond))
}

/// fail2ban's include expansion: each file's `.local` twin follows it, and each file is
/// surrounded by its `before` and `after` includes (recursively). A file already on the
/// include chain is not included again.
fn expand(files: &Files, list: &[PathBuf], chain: &[PathBuf], out: &mut Vec<PathBuf>) {
    let mut with_local = Vec::new();
    for f in list {
        let f = normalize(f);
        with_local.push(f.clone());
        if f.extension().is_some_and(|e| e == "conf") {
            let local = f.with_extension("local");
            if !list.iter().any(|p| normalize(p) == local) && files.source.is_file(&local) {
                with_local.push(local);
            }
        }
    }
    for resource in with_local {
        let Some(ini) = files.parse(&resource) else {
            continue;
        };
        let mut chain2 = chain.to_vec();
        chain2.push(resource.clone());
        let (before, after) = includes(files, &resource, &ini);
        for (inc, span) in before {
            include_one(files, &inc, span, &chain2, out);
        }
        out.push(resource.clone());
        for (inc, span) in after {
            include_one(files, &inc, span, &chain2, out);
        }
    }
}

fn include_one(files: &Files, inc: &Path, span: Span, chain: &[PathBuf], out: &mut Vec<PathBuf>) {
    if chain.iter().any(|c| c == inc) {
        files.warning(Problem::new(
            span,
            format!(
                "include of {} is recursive (the file is already being read); skipped",
                files.source.display(inc).display()
            ),
        ));
        return;
    }
    if !files.source.is_file(inc) {
        if inc.extension().is_none_or(|e| e != "local") {
            files.warning(Problem::new(
                span,
                format!(
                    "included file {} does not exist",
                    files.source.display(inc).display()
                ),
            ));
        }
        return;
    }
    expand(files, &[inc.to_path_buf()], chain, out);
}

/// An included file and the line that names it.
type Include = (PathBuf, Span);

/// The `[INCLUDES]` of one file, each path resolved against the file's directory.
fn includes(files: &Files, resource: &Path, ini: &IniFile) -> (Vec<Include>, Vec<Include>) {
    let Some(sect) = ini.section("INCLUDES") else {
        return (Vec::new(), Vec::new());
    };
    // The values may use %(x)s from the same file's [DEFAULT] and [INCLUDES].
    let mut single = Store::default();
    single.merge(ini);
    let dir = resource.parent().unwrap_or(Path::new(""));
    let get = |key: &str| -> Vec<Include> {
        let Some(raw) = sect.options.get(key) else {
            return Vec::new();
        };
        let text = match single.get("INCLUDES", key, &Vars::new(), None) {
            Ok(Some(v)) => v.text,
            Ok(None) => return Vec::new(),
            Err(p) => {
                files.error(p);
                return Vec::new();
            }
        };
        text.split('\n')
            .map(str::trim)
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| {
                let line = raw.lines.get(i).copied().unwrap_or(raw.span.line);
                let p = Path::new(l);
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    dir.join(p)
                };
                (
                    normalize(&p),
                    Span {
                        file: raw.span.file.clone(),
                        line,
                    },
                )
            })
            .collect()
    };
    (get("before"), get("after"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::source::MemSource;

    pub fn mem(files: &[(&'static str, &'static str)]) -> MemSource {
        MemSource::new("cfg", files)
    }

    fn text(store: &Store, sect: &str, key: &str) -> String {
        store
            .get(sect, key, &Vars::new(), None)
            .unwrap()
            .unwrap()
            .text
    }

    #[test]
    fn layering_order_conf_dropins_local() {
        let src = mem(&[
            ("jail.conf", "[a]\nx = conf\ny = conf\nz = conf\nw = conf\n"),
            ("jail.d/b.conf", "[a]\ny = d-b-conf\n"),
            ("jail.d/a.conf", "[a]\ny = d-a-conf\nz = d-a-conf\n"),
            ("jail.local", "[a]\nz = local\nw = local\n"),
            ("jail.d/z.local", "[a]\nw = d-z-local\n"),
            ("jail.d/.hidden.conf", "[a]\nx = hidden\n"),
        ]);
        let files = Files::new(&src);
        let store = Store::read_base(&files, Path::new("jail")).unwrap();
        assert_eq!(text(&store, "a", "x"), "conf");
        assert_eq!(text(&store, "a", "y"), "d-b-conf");
        assert_eq!(text(&store, "a", "z"), "local");
        assert_eq!(text(&store, "a", "w"), "d-z-local");
        assert_eq!(
            store.files,
            [
                "jail.conf",
                "jail.d/a.conf",
                "jail.d/b.conf",
                "jail.local",
                "jail.d/z.local"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn includes_before_after_and_local_twins() {
        let src = mem(&[
            (
                "filter.d/x.conf",
                "[INCLUDES]\nbefore = common.conf\nafter = x-after.conf\n[Definition]\nv = x\n",
            ),
            (
                "filter.d/common.conf",
                "[DEFAULT]\nc = common\n[Definition]\nv = common\nw = common\n",
            ),
            ("filter.d/common.local", "[DEFAULT]\nc = common-local\n"),
            ("filter.d/x-after.conf", "[Definition]\nw = after\n"),
        ]);
        let files = Files::new(&src);
        let store = Store::read_base(&files, Path::new("filter.d/x")).unwrap();
        assert_eq!(
            store.files,
            [
                "filter.d/common.conf",
                "filter.d/common.local",
                "filter.d/x.conf",
                "filter.d/x-after.conf"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(text(&store, "Definition", "v"), "x");
        assert_eq!(text(&store, "Definition", "w"), "after");
        assert_eq!(text(&store, "Definition", "c"), "common-local");
        // The value before the override is remembered.
        assert_eq!(store.sections["KNOWN/Definition"]["v"].text, "common");
    }

    #[test]
    fn recursive_includes_are_reported_and_cut() {
        let src = mem(&[
            ("a.conf", "[INCLUDES]\nbefore = b.conf\n[D]\nk = a\n"),
            ("b.conf", "[INCLUDES]\nbefore = a.conf\n[D]\nk = b\n"),
        ]);
        let files = Files::new(&src);
        let store = Store::read_base(&files, Path::new("a")).unwrap();
        assert_eq!(store.files, ["b.conf", "a.conf"].map(PathBuf::from));
        let (_, warnings) = files.take_problems();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].span.to_string(), "cfg/b.conf:2");
        assert!(warnings[0].message.contains("recursive"));
    }

    #[test]
    fn self_include_is_reported() {
        let src = mem(&[("a.conf", "[INCLUDES]\nafter = ./a.conf\n[D]\nk = a\n")]);
        let files = Files::new(&src);
        let store = Store::read_base(&files, Path::new("a")).unwrap();
        assert_eq!(store.files, ["a.conf"].map(PathBuf::from));
        let (_, warnings) = files.take_problems();
        assert!(warnings[0].message.contains("recursive"), "{warnings:?}");
    }

    #[test]
    fn missing_conf_include_warns_missing_local_is_silent() {
        let src = mem(&[(
            "a.conf",
            "[INCLUDES]\nbefore = nope.conf\nafter = nope.local\n[D]\nk = a\n",
        )]);
        let files = Files::new(&src);
        Store::read_base(&files, Path::new("a")).unwrap();
        let (_, warnings) = files.take_problems();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].span.line, 2);
    }

    #[test]
    fn conditional_sections_become_suffixed_keys() {
        let src = mem(&[(
            "action.d/a.conf",
            "[Init]\nblocktype = reject\n[Init?family=inet6]\nblocktype = reject6\n",
        )]);
        let files = Files::new(&src);
        let store = Store::read_base(&files, Path::new("action.d/a")).unwrap();
        let init = store.own("Init").unwrap();
        assert_eq!(init["blocktype"].text, "reject");
        assert_eq!(init["blocktype?family=inet6"].text, "reject6");
    }

    #[test]
    fn includes_may_interpolate_defaults_of_the_same_file() {
        let src = mem(&[
            (
                "a.conf",
                "[INCLUDES]\nbefore = paths-%(os)s.conf\n[DEFAULT]\nos = linux\n",
            ),
            ("paths-linux.conf", "[DEFAULT]\nlog = /var/log/x\n"),
        ]);
        let files = Files::new(&src);
        let store = Store::read_base(&files, Path::new("a")).unwrap();
        assert_eq!(store.defaults["log"].text, "/var/log/x");
    }
}
