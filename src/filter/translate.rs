//! Translation of Python-dialect regexes for the two matching engines.
//!
//! A pattern is parsed once (`pyre`) and written out in up to three forms:
//!
//! - **fast**: regex-syntax's dialect, for the multi-pattern `regex-automata` engine. Only
//!   patterns without lookaround, backreferences, conditionals, atomic groups or possessive
//!   quantifiers get one. It is then parsed with `regex-syntax` into the HIR the engine is
//!   built from, so "the fast engine accepts it" is decided by `regex-syntax` itself.
//! - **fancy**: the exact pattern for `fancy-regex`, the bounded backtracking fallback.
//! - **screen**: for fallback patterns, an over-approximation the fast engine can run
//!   (lookaround dropped, a backreference replaced by a copy of its group, a conditional by
//!   the union of its branches, possessive and atomic forms by plain ones). A line the
//!   screen rejects cannot match the exact pattern, so the backtracking engine only sees
//!   the few lines that might match.
//!
//! Python's semantics are kept where the Rust dialects differ: `\Z` is the absolute end
//! (`\z`), `^` without MULTILINE is `\A`, and `$` without MULTILINE matches at the end or
//! before a final newline. The fast form writes that `$` as `(?m:$)`, which is the same
//! whenever the text has no newline but its last character — always true of a single log
//! line in the buffer fail2ban builds (`line + "\n"`); the matcher switches to the exact
//! fancy form when a text has an inner newline (see `engine`).
//!
//! Classes: by default `\d`, `\w`, `\s`, `\b` and case-insensitivity are ASCII-only (as if
//! Python's `re.ASCII` were set) and matching runs on bytes; Python's defaults are Unicode.
//! A filter can opt into Unicode classes; then `\s` also covers U+001C..U+001F as Python's
//! does, and `(?a)` switches a scope back to ASCII. Group names are rewritten to names
//! both engines accept (fail2ban's `<F-MY-FIELD>` gives `my-field`); the original names are
//! kept by group index.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use regex_syntax::hir::{Hir, Look};

use super::pyre::{
    self, Assertion, Class, ClassItem, Node, Parsed, Perl, PerlKind, PyReError, RepeatMode,
    StartFlags,
};
use super::rewrite;

/// Which engine runs a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// The multi-pattern `regex-automata` engine (linear time).
    Fast,
    /// `fancy-regex`, bounded by the backtrack limit.
    Fallback,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Fast => "fast",
            Engine::Fallback => "fallback",
        })
    }
}

/// How a pattern is compiled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranslateOptions {
    /// Python's MULTILINE flag (fail2ban sets it on failregexes when `maxlines > 1`).
    pub multiline: bool,
    /// Unicode classes and case folding instead of ASCII.
    pub unicode: bool,
}

/// A translated pattern.
#[derive(Debug, Clone)]
pub struct Translation {
    pub engine: Engine,
    /// Why the fallback engine is needed (empty for fast patterns); for a pattern the
    /// fast engine runs after a rewrite, `rewritten: ` and what was rewritten.
    pub reason: String,
    /// The fast form and its HIR (fast patterns only).
    pub fast: Option<(String, Hir)>,
    /// For a fast form rewritten from a pattern with conditionals or tempered dots
    /// (`rewrite`): the Python group index of each of its capture groups, in order
    /// (copies of a group map to the same index). None: the indices are the same.
    pub fast_groups: Option<Vec<usize>>,
    /// The exact form for fancy-regex.
    pub fancy: String,
    /// Run the fancy form with Unicode classes (byte mode cannot take non-ASCII class
    /// members; the form then spells ASCII classes out).
    pub fancy_unicode: bool,
    /// The exact pattern in PCRE2's dialect, for the capture engine (None when a construct
    /// has no exact PCRE2 form).
    pub pcre: Option<PcreForm>,
    /// The fast-engine over-approximation of a fallback pattern.
    pub screen: Option<(String, Hir)>,
    /// Python group names by group index (index 0, the whole match, is unnamed).
    pub names: Vec<Option<String>>,
    /// The pattern has a `$` without MULTILINE (see the module documentation).
    pub plain_dollar: bool,
    /// Every match starts at the start of the text.
    pub start_anchored: bool,
}

impl Translation {
    /// The pattern as the serving engine runs it.
    pub fn final_pattern(&self) -> &str {
        match &self.fast {
            Some((s, _)) => s,
            None => &self.fancy,
        }
    }
}

/// Parses a Python-dialect pattern (tags already expanded) and writes it out for the
/// engines.
pub fn translate(python: &str, opts: TranslateOptions) -> Result<Translation, PyReError> {
    let parsed = pyre::parse(
        python,
        StartFlags {
            multiline: opts.multiline,
        },
    )?;
    let names: Vec<Option<String>> = parsed.groups.iter().map(|g| g.name.clone()).collect();
    let engine_names = engine_group_names(&parsed);
    let mut needs = BTreeSet::new();
    let mut plain_dollar = false;
    parsed.root.walk(&mut |n| match n {
        Node::Look { behind: false, .. } => {
            needs.insert("lookahead");
        }
        Node::Look { behind: true, .. } => {
            needs.insert("lookbehind");
        }
        Node::Backref { .. } => {
            needs.insert("backreference");
        }
        Node::Conditional { .. } => {
            needs.insert("conditional");
        }
        Node::Atomic(_) => {
            needs.insert("atomic group");
        }
        Node::Repeat {
            mode: RepeatMode::Possessive,
            ..
        } => {
            needs.insert("possessive quantifier");
        }
        Node::Assert(Assertion::End { multiline: false }) => plain_dollar = true,
        _ => {}
    });
    let mut non_ascii_class = false;
    parsed.root.walk(&mut |n| {
        if let Node::Class(c) = n {
            non_ascii_class |= c.items.iter().any(|it| match it {
                ClassItem::Char(c) => !c.is_ascii(),
                ClassItem::Range(_, hi) => !hi.is_ascii(),
                ClassItem::Perl(_) => false,
            });
        }
    });
    let fancy_unicode = opts.unicode || non_ascii_class;
    let emit = |dialect| {
        let fancy = dialect == Dialect::Fancy;
        Emitter {
            dialect,
            unicode: if fancy { fancy_unicode } else { opts.unicode },
            ascii_classes: fancy && !opts.unicode,
            parsed: &parsed,
            names: &engine_names,
            out: String::new(),
            numbered: None,
            unsupported: false,
        }
        .run()
    };
    let fancy = emit(Dialect::Fancy);
    let pcre = pcre_form(&parsed, &engine_names, opts, non_ascii_class);
    let mut reason: Vec<String> = needs.iter().map(|s| s.to_string()).collect();
    let mut fast = None;
    let mut screen = None;
    if needs.is_empty() {
        let s = emit(Dialect::Fast);
        match parse_hir(&s, opts.unicode) {
            Ok(h) => fast = Some((s, h)),
            Err(e) => reason.push(format!("fast engine rejects it: {e}")),
        }
    }
    let mut fast_groups = None;
    let rewritable = needs
        .iter()
        .all(|n| matches!(*n, "conditional" | "lookahead"));
    if fast.is_none()
        && rewritable
        && let Some(simple) = rewrite::simplify(&parsed)
    {
        let (s, order) = Emitter {
            dialect: Dialect::Fast,
            unicode: opts.unicode,
            ascii_classes: false,
            parsed: &simple,
            names: &engine_names,
            out: String::new(),
            numbered: Some(Vec::new()),
            unsupported: false,
        }
        .run_numbered();
        if let Ok(h) = parse_hir(&s, opts.unicode) {
            reason = vec![format!("rewritten: {}", reason.join(", "))];
            fast = Some((s, h));
            fast_groups = order;
        }
    }
    if fast.is_none() {
        let s = emit(Dialect::Screen);
        if let Ok(h) = parse_hir(&s, opts.unicode) {
            screen = Some((s, h));
        }
    }
    let start_anchored = fast
        .as_ref()
        .map(|(_, h): &(String, Hir)| h.properties().look_set_prefix().contains(Look::Start))
        .unwrap_or(false);
    Ok(Translation {
        engine: if fast.is_some() {
            Engine::Fast
        } else {
            Engine::Fallback
        },
        reason: if fast.is_some() && fast_groups.is_none() {
            String::new()
        } else {
            reason.join(", ")
        },
        fast,
        fast_groups,
        fancy,
        fancy_unicode,
        pcre,
        screen,
        names,
        plain_dollar,
        start_anchored,
    })
}

/// A pattern for PCRE2, with the modes it must be compiled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcreForm {
    pub pattern: String,
    /// UTF mode: the pattern has non-ASCII characters in a class, or Unicode classes.
    pub utf: bool,
    /// Unicode classes and word boundaries (the filter's `unicode` option).
    pub ucp: bool,
}

fn pcre_form(
    parsed: &Parsed,
    names: &[Option<String>],
    opts: TranslateOptions,
    non_ascii_class: bool,
) -> Option<PcreForm> {
    let utf = opts.unicode || non_ascii_class;
    if utf && !opts.unicode {
        // UTF mode folds case beyond ASCII, which an ASCII filter does not.
        let mut icase = parsed.icase;
        parsed.root.walk(&mut |n| {
            icase |= matches!(
                n,
                Node::Group {
                    icase: Some(true),
                    ..
                }
            );
        });
        if icase {
            return None;
        }
    }
    let mut e = Emitter {
        dialect: Dialect::Pcre,
        unicode: opts.unicode,
        ascii_classes: false,
        parsed,
        names,
        out: String::new(),
        numbered: None,
        unsupported: false,
    };
    if parsed.icase {
        e.out.push_str("(?i)");
    }
    match &parsed.root {
        Node::Alternation(branches) => e.alternation(branches),
        n => e.node(n),
    }
    (!e.unsupported).then_some(PcreForm {
        pattern: e.out,
        utf,
        ucp: opts.unicode,
    })
}

/// The part of a prefregex before a trailing `<F-CONTENT>.+</F-CONTENT>$`.
///
/// For such a prefregex the content starts where the leftmost-first match of the part
/// before it ends (a backtracking engine commits to that parse because `.+$` then always
/// succeeds on a one-line text), so a DFA search finds the content without a capture
/// engine. `min` is the content repetition's minimum (`.+`: 1, `.*`: 0).
#[derive(Debug, Clone)]
pub struct ContentPrefix {
    pub pattern: String,
    pub hir: Hir,
    /// The same part with its groups, numbered as in the whole prefregex (the content
    /// group comes after all of them).
    pub groups_hir: Hir,
    /// The same part for PCRE2, with its groups.
    pub pcre: Option<PcreForm>,
    pub min: u32,
}

/// The [`ContentPrefix`] of a prefregex, when it has the shape and runs on the fast engine.
pub fn content_prefix(python: &str, opts: TranslateOptions) -> Option<ContentPrefix> {
    let parsed = pyre::parse(
        python,
        StartFlags {
            multiline: opts.multiline,
        },
    )
    .ok()?;
    let items: Vec<Node> = match &parsed.root {
        Node::Concat(items) => items.clone(),
        other => vec![other.clone()],
    };
    let c = items.iter().position(|n| {
        matches!(n, Node::Group { capture: Some(i), .. }
            if parsed.groups[*i].name.as_deref() == Some("content"))
    })?;
    let Node::Group { body, .. } = &items[c] else {
        return None;
    };
    let Node::Repeat {
        body: any,
        min,
        max: None,
        mode,
    } = &**body
    else {
        return None;
    };
    if **any != (Node::Any { dotall: false }) || *min > 1 || *mode == RepeatMode::Possessive {
        return None;
    }
    let tail = &items[c + 1..];
    if !tail
        .iter()
        .all(|n| *n == Node::Assert(Assertion::End { multiline: false }))
    {
        return None;
    }
    // Without `$` a lazy content would stop after its minimum.
    if tail.is_empty() && *mode == RepeatMode::Lazy {
        return None;
    }
    let prefix = Parsed {
        root: Node::Concat(items[..c].to_vec()),
        groups: parsed.groups.clone(),
        icase: parsed.icase,
    };
    let mut fancy_only = false;
    prefix.root.walk(&mut |n| {
        fancy_only |= matches!(
            n,
            Node::Look { .. }
                | Node::Backref { .. }
                | Node::Conditional { .. }
                | Node::Atomic(_)
                | Node::Repeat {
                    mode: RepeatMode::Possessive,
                    ..
                }
        );
    });
    if fancy_only {
        return None;
    }
    let names = engine_group_names(&prefix);
    let emit = |dialect| {
        Emitter {
            dialect,
            unicode: opts.unicode,
            ascii_classes: false,
            parsed: &prefix,
            names: &names,
            out: String::new(),
            numbered: None,
            unsupported: false,
        }
        .run()
    };
    let pattern = emit(Dialect::Screen);
    let hir = parse_hir(&pattern, opts.unicode).ok()?;
    let groups_hir = parse_hir(&emit(Dialect::Fast), opts.unicode).ok()?;
    let mut non_ascii_class = false;
    prefix.root.walk(&mut |n| {
        if let Node::Class(c) = n {
            non_ascii_class |= c.items.iter().any(|it| match it {
                ClassItem::Char(c) => !c.is_ascii(),
                ClassItem::Range(_, hi) => !hi.is_ascii(),
                ClassItem::Perl(_) => false,
            });
        }
    });
    let pcre = pcre_form(&prefix, &names, opts, non_ascii_class);
    Some(ContentPrefix {
        pattern,
        hir,
        groups_hir,
        pcre,
        min: *min,
    })
}

/// Parses a pattern in regex-syntax's dialect with the configuration the fast engine uses.
pub fn parse_hir(pattern: &str, unicode: bool) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new()
        .unicode(unicode)
        .utf8(false)
        .build()
        .parse(pattern)
        .map_err(|e| {
            // The last line of regex-syntax's message carries the cause.
            e.to_string()
                .lines()
                .last()
                .unwrap_or("invalid pattern")
                .trim_start_matches("error: ")
                .to_string()
        })
}

/// Names both engines accept, unique, by group index; the Python name where it is one.
fn engine_group_names(parsed: &Parsed) -> Vec<Option<String>> {
    let mut used: BTreeSet<String> = BTreeSet::new();
    parsed
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let name = g.name.as_ref()?;
            let mut s: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                s.insert(0, '_');
            }
            if &s != name || used.contains(&s) {
                s = format!("{s}__{i}");
            }
            used.insert(s.clone());
            Some(s)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Fast,
    Screen,
    Fancy,
    /// PCRE2's dialect, the exact pattern for the capture engine.
    Pcre,
}

struct Emitter<'a> {
    dialect: Dialect,
    /// Unicode classes are in force in the target engine.
    unicode: bool,
    /// Every perl class is ASCII (an ASCII filter's fancy form run in Unicode mode).
    ascii_classes: bool,
    parsed: &'a Parsed,
    names: &'a [Option<String>],
    out: String,
    /// When set, capture groups are written unnamed (a rewritten pattern may hold copies
    /// of one group) and their Python group indices recorded in order.
    numbered: Option<Vec<usize>>,
    /// Set when the target dialect cannot express a construct exactly.
    unsupported: bool,
}

const META: &str = "\\.+*?()|[]{}^$#&-~";

impl Emitter<'_> {
    fn run(self) -> String {
        self.run_numbered().0
    }

    fn run_numbered(mut self) -> (String, Option<Vec<usize>>) {
        if self.parsed.icase {
            self.out.push_str("(?i)");
        }
        let root = &self.parsed.root;
        match root {
            Node::Alternation(branches) => self.alternation(branches),
            n => self.node(n),
        }
        (self.out, self.numbered)
    }

    fn alternation(&mut self, branches: &[Node]) {
        for (i, b) in branches.iter().enumerate() {
            if i > 0 {
                self.out.push('|');
            }
            self.node(b);
        }
    }

    fn node(&mut self, n: &Node) {
        match n {
            Node::Empty => self.out.push_str("(?:)"),
            Node::Literal(c) => self.literal(*c),
            Node::Any { dotall } => self.out.push_str(if *dotall { "(?s:.)" } else { "." }),
            Node::Class(c) => self.class(c),
            Node::Perl(p) => self.perl(*p),
            Node::Assert(a) => self.assertion(*a),
            Node::Group {
                capture,
                icase,
                body,
            } => {
                let open = match (capture, icase) {
                    (Some(i), _) if self.dialect != Dialect::Screen && self.numbered.is_some() => {
                        if let Some(order) = self.numbered.as_mut() {
                            order.push(*i);
                        }
                        "(".to_string()
                    }
                    (Some(i), _) if self.dialect != Dialect::Screen => match &self.names[*i] {
                        Some(name) => format!("(?P<{name}>"),
                        None => "(".to_string(),
                    },
                    (_, Some(true)) => "(?i:".to_string(),
                    (_, Some(false)) => "(?-i:".to_string(),
                    _ => "(?:".to_string(),
                };
                self.out.push_str(&open);
                self.group_body(body);
                self.out.push(')');
            }
            Node::Look {
                behind,
                negated,
                body,
            } => {
                if self.dialect == Dialect::Screen {
                    self.out.push_str("(?:)");
                    return;
                }
                self.out.push_str(match (behind, negated) {
                    (false, false) => "(?=",
                    (false, true) => "(?!",
                    (true, false) => "(?<=",
                    (true, true) => "(?<!",
                });
                self.group_body(body);
                self.out.push(')');
            }
            Node::Atomic(body) => {
                self.out.push_str(if self.dialect == Dialect::Screen {
                    "(?:"
                } else {
                    "(?>"
                });
                self.group_body(body);
                self.out.push(')');
            }
            Node::Backref { group, icase } => {
                if self.dialect == Dialect::Screen {
                    let g = &self.parsed.groups[*group];
                    if *icase && !g.icase {
                        // Any case variant of the captured text: no useful bound.
                        self.out.push_str("(?s:.)*");
                    } else {
                        self.out.push_str(if g.icase { "(?i:" } else { "(?-i:" });
                        self.group_body(&g.body);
                        self.out.push(')');
                    }
                } else if self.dialect == Dialect::Pcre {
                    let _ = write!(self.out, "(?:\\g{{{group}}})");
                } else {
                    let _ = write!(self.out, "(?:\\k<{group}>)");
                }
            }
            Node::Conditional { group, yes, no } => {
                if self.dialect == Dialect::Screen {
                    self.out.push_str("(?:");
                    self.node(yes);
                    self.out.push('|');
                    self.node(no);
                    self.out.push(')');
                } else {
                    let _ = write!(self.out, "(?({group})");
                    self.node(yes);
                    self.out.push('|');
                    self.node(no);
                    self.out.push(')');
                }
            }
            Node::Repeat {
                body,
                min,
                max,
                mode,
            } if zero_width(body) => {
                // Repeating an empty-width match is matching it once: Python ends a
                // repetition at an empty iteration, which still sets the groups inside.
                // fancy-regex refuses to repeat a lookaround, so an optional one is an
                // alternation with the empty string, in the order the quantifier prefers;
                // its groups stay in the pattern, unset when the empty branch is taken.
                if *min > 0 {
                    self.node(body);
                } else if *max == Some(0) {
                    // Never tried: a branch that cannot match, before the empty one.
                    self.out.push_str("(?:[^\\s\\S]");
                    self.group_body(body);
                    self.out.push_str("|)");
                } else {
                    let atomic = *mode == RepeatMode::Possessive
                        && matches!(self.dialect, Dialect::Fancy | Dialect::Pcre);
                    self.out.push_str(if atomic { "(?>" } else { "(?:" });
                    if *mode == RepeatMode::Lazy {
                        self.out.push('|');
                        self.group_body(body);
                    } else {
                        self.group_body(body);
                        self.out.push('|');
                    }
                    self.out.push(')');
                }
            }
            Node::Repeat {
                body,
                min,
                max,
                mode,
            } => {
                let atom = matches!(
                    **body,
                    Node::Literal(_)
                        | Node::Any { .. }
                        | Node::Class(_)
                        | Node::Perl(_)
                        | Node::Group { .. }
                ) && !self.literal_needs_group(body);
                if atom {
                    self.node(body);
                } else {
                    self.out.push_str("(?:");
                    self.group_body(body);
                    self.out.push(')');
                }
                match (min, max) {
                    (0, None) => self.out.push('*'),
                    (1, None) => self.out.push('+'),
                    (0, Some(1)) => self.out.push('?'),
                    (m, None) => {
                        let _ = write!(self.out, "{{{m},}}");
                    }
                    (m, Some(x)) if m == x => {
                        let _ = write!(self.out, "{{{m}}}");
                    }
                    (m, Some(x)) => {
                        let _ = write!(self.out, "{{{m},{x}}}");
                    }
                }
                match mode {
                    RepeatMode::Greedy => {}
                    RepeatMode::Lazy => self.out.push('?'),
                    RepeatMode::Possessive => {
                        if matches!(self.dialect, Dialect::Fancy | Dialect::Pcre) {
                            self.out.push('+');
                        }
                    }
                }
            }
            Node::Concat(items) => {
                for it in items {
                    if let Node::Alternation(b) = it {
                        self.out.push_str("(?:");
                        self.alternation(b);
                        self.out.push(')');
                    } else {
                        self.node(it);
                    }
                }
            }
            Node::Alternation(b) => {
                self.out.push_str("(?:");
                self.alternation(b);
                self.out.push(')');
            }
        }
    }

    /// A non-ASCII literal in byte mode is several bytes, so a quantifier needs a group.
    fn literal_needs_group(&self, n: &Node) -> bool {
        matches!(n, Node::Literal(c) if !c.is_ascii())
    }

    fn group_body(&mut self, body: &Node) {
        match body {
            Node::Alternation(b) => self.alternation(b),
            n => self.node(n),
        }
    }

    fn literal(&mut self, c: char) {
        self.escaped(c, META);
    }

    /// `c` as written in a pattern, a backslash before the characters of `meta`.
    fn escaped(&mut self, c: char, meta: &str) {
        if c.is_ascii() {
            if meta.contains(c) {
                self.out.push('\\');
                self.out.push(c);
            } else if c.is_ascii_graphic() || c == ' ' {
                self.out.push(c);
            } else {
                self.control(c);
            }
        } else {
            self.out.push(c);
        }
    }

    fn control(&mut self, c: char) {
        match c {
            '\n' => self.out.push_str("\\n"),
            '\t' => self.out.push_str("\\t"),
            '\r' => self.out.push_str("\\r"),
            _ => {
                let _ = write!(self.out, "\\x{{{:02X}}}", c as u32);
            }
        }
    }

    fn class_char(&mut self, c: char) {
        self.escaped(c, "\\[]^-&~");
    }

    fn class(&mut self, cls: &Class) {
        let non_ascii = cls.items.iter().any(|it| match it {
            ClassItem::Char(c) => !c.is_ascii(),
            ClassItem::Range(_, hi) => !hi.is_ascii(),
            ClassItem::Perl(_) => false,
        });
        // The byte-mode parser refuses non-ASCII class members; a Unicode scope accepts
        // them, with ASCII perl classes written as POSIX classes (ASCII in any mode).
        // PCRE2 takes them in its UTF mode, which the pattern then runs in.
        let wrap = !self.unicode && non_ascii && self.dialect != Dialect::Pcre;
        if wrap {
            self.out.push_str("(?u:");
        }
        self.out.push('[');
        if cls.negated {
            self.out.push('^');
        }
        for it in &cls.items {
            match *it {
                ClassItem::Char(c) => self.class_char(c),
                ClassItem::Range(lo, hi) => {
                    self.class_char(lo);
                    self.out.push('-');
                    self.class_char(hi);
                }
                ClassItem::Perl(p) if self.dialect == Dialect::Pcre => {
                    if self.unicode && p.ascii {
                        self.unsupported = true;
                    }
                    if self.unicode && p.kind == PerlKind::Space && !p.negated {
                        self.out.push_str("\\s\\x{1C}-\\x{1F}");
                    } else {
                        self.out.push_str(perl_escape(p));
                    }
                }
                ClassItem::Perl(p) => {
                    if (p.ascii || self.ascii_classes) && self.unicode || wrap {
                        self.out.push_str(posix(p));
                    } else if self.unicode && p.kind == PerlKind::Space && !p.negated {
                        self.out.push_str("\\s\\x{1C}-\\x{1F}");
                    } else {
                        self.out.push_str(perl_escape(p));
                    }
                }
            }
        }
        self.out.push(']');
        if wrap {
            self.out.push(')');
        }
    }

    fn perl(&mut self, p: Perl) {
        if self.dialect == Dialect::Pcre && self.unicode && p.ascii {
            self.unsupported = true;
        }
        if !self.unicode || (self.dialect == Dialect::Pcre && p.kind != PerlKind::Space) {
            self.out.push_str(perl_escape(p));
        } else if p.ascii || self.ascii_classes {
            let _ = write!(self.out, "[{}]", posix(p));
        } else if p.kind == PerlKind::Space {
            self.out.push_str(if p.negated {
                "[^\\s\\x{1C}-\\x{1F}]"
            } else {
                "[\\s\\x{1C}-\\x{1F}]"
            });
        } else {
            self.out.push_str(perl_escape(p));
        }
    }

    fn assertion(&mut self, a: Assertion) {
        let s = match a {
            Assertion::Start { multiline: false } | Assertion::StartText => "\\A",
            Assertion::Start { multiline: true } => "(?m:^)",
            Assertion::End { multiline: true } => "(?m:$)",
            Assertion::End { multiline: false } => {
                if matches!(self.dialect, Dialect::Fancy | Dialect::Pcre) {
                    "(?=\\n?\\z)"
                } else {
                    "(?m:$)"
                }
            }
            Assertion::EndText => "\\z",
            Assertion::WordBoundary { ascii } | Assertion::NotWordBoundary { ascii }
                if ascii && self.unicode && self.dialect == Dialect::Pcre =>
            {
                // PCRE2's Unicode mode has no ASCII-only scope.
                self.unsupported = true;
                "\\b"
            }
            Assertion::WordBoundary { ascii } => {
                if ascii && self.unicode && self.dialect != Dialect::Fancy {
                    "(?-u:\\b)"
                } else {
                    "\\b"
                }
            }
            Assertion::NotWordBoundary { ascii } => {
                if ascii && self.unicode && self.dialect != Dialect::Fancy {
                    "(?-u:\\B)"
                } else {
                    "\\B"
                }
            }
        };
        self.out.push_str(s);
    }
}

/// Matches only the empty string (assertions and lookarounds).
fn zero_width(n: &Node) -> bool {
    match n {
        Node::Empty | Node::Assert(_) | Node::Look { .. } => true,
        Node::Group { body, .. } => zero_width(body),
        Node::Concat(v) => v.iter().all(zero_width),
        _ => false,
    }
}

fn perl_escape(p: Perl) -> &'static str {
    match (p.kind, p.negated) {
        (PerlKind::Digit, false) => "\\d",
        (PerlKind::Digit, true) => "\\D",
        (PerlKind::Word, false) => "\\w",
        (PerlKind::Word, true) => "\\W",
        (PerlKind::Space, false) => "\\s",
        (PerlKind::Space, true) => "\\S",
    }
}

fn posix(p: Perl) -> &'static str {
    match (p.kind, p.negated) {
        (PerlKind::Digit, false) => "[:digit:]",
        (PerlKind::Digit, true) => "[:^digit:]",
        (PerlKind::Word, false) => "[:word:]",
        (PerlKind::Word, true) => "[:^word:]",
        (PerlKind::Space, false) => "[:space:]",
        (PerlKind::Space, true) => "[:^space:]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: &str) -> Translation {
        translate(p, TranslateOptions::default()).unwrap()
    }

    fn fast(p: &str) -> String {
        let tr = t(p);
        assert_eq!(tr.engine, Engine::Fast, "{p}: {}", tr.reason);
        tr.fast.unwrap().0
    }

    #[test]
    fn anchors() {
        assert_eq!(fast("^a$"), r"\Aa(?m:$)");
        assert_eq!(fast(r"\Aa\Z"), r"\Aa\z");
        let m = translate(
            "^a$",
            TranslateOptions {
                multiline: true,
                unicode: false,
            },
        )
        .unwrap();
        assert_eq!(m.fast.unwrap().0, "(?m:^)a(?m:$)");
        assert!(!m.plain_dollar);
        let tr = t("a$");
        assert!(tr.plain_dollar);
        assert_eq!(tr.fancy, r"a(?=\n?\z)");
        assert!(t("^a").start_anchored);
        assert!(!t("a|^b").start_anchored);
        assert!(t("^a|^b").start_anchored);
    }

    #[test]
    fn python_escapes_and_literals() {
        assert_eq!(fast(r#"\'\"\:\/\<\>\-\#\&\~"#), r#"'":/<>\-\#\&\~"#);
        assert_eq!(fast(r"\x41\101\u00e9\a\v"), "AAé\\x{07}\\x{0B}");
        assert_eq!(fast(r"a{,2}b{3}c{2,}"), "a{0,2}b{3}c{2,}");
        assert_eq!(fast("a{b}{"), r"a\{b\}\{");
        // Python's class set-operation lookalikes are literal characters there.
        assert_eq!(fast("[a&&b~~[-]"), r"[a\&\&b\~\~\[\-]");
        assert_eq!(fast(r"[]\b]"), r"[\]\x{08}]");
    }

    #[test]
    fn unicode_members_in_byte_mode() {
        assert_eq!(fast("[é\\d]"), "(?u:[é[:digit:]])");
        assert_eq!(fast("é+"), "(?:é)+");
        let u = translate(
            r"\s\d(?a:\w)[\s]",
            TranslateOptions {
                multiline: false,
                unicode: true,
            },
        )
        .unwrap();
        assert_eq!(
            u.fast.unwrap().0,
            r"[\s\x{1C}-\x{1F}]\d(?:[[:word:]])[\s\x{1C}-\x{1F}]"
        );
    }

    #[test]
    fn flags() {
        assert_eq!(fast("(?i)ab"), "(?i)ab");
        assert_eq!(fast("(?i:a)(?-i:b)"), "(?i:a)(?-i:b)");
        assert_eq!(fast("(?s:.)."), "(?:(?s:.)).");
        assert_eq!(fast("(?x) a b #c\n"), "ab");
    }

    #[test]
    fn group_names_are_mapped_and_kept() {
        let tr = t("(?P<my-field>a)(b)(?P<user>c)");
        assert_eq!(
            tr.fast.as_ref().unwrap().0,
            "(?P<my_field__1>a)(b)(?P<user>c)"
        );
        assert_eq!(
            tr.names,
            vec![
                None,
                Some("my-field".to_string()),
                None,
                Some("user".to_string())
            ]
        );
    }

    #[test]
    fn engine_choice_and_reasons() {
        for (p, why) in [
            ("a(?=b)", "lookahead"),
            ("a(?!b)", "lookahead"),
            ("(?<=a)b", "lookbehind"),
            ("(?<!a)b", "lookbehind"),
            (r"(a)\1", "backreference"),
            ("(?P<x>a)(?P=x)", "backreference"),
            ("(?:(?P<x>a)b)*(?(x)c|d)", "conditional"),
            ("a++", "possessive quantifier"),
            ("(?>a)", "atomic group"),
        ] {
            let tr = t(p);
            assert_eq!(tr.engine, Engine::Fallback, "{p}");
            assert!(tr.reason.contains(why), "{p}: {}", tr.reason);
            assert!(tr.fast.is_none());
            assert!(tr.screen.is_some(), "{p} has no screen");
        }
    }

    #[test]
    fn screens_over_approximate() {
        assert_eq!(t("a(?!b)c").screen.unwrap().0, "a(?:)c");
        assert_eq!(t(r"(a+)x\1").screen.unwrap().0, "(?:a+)x(?-i:a+)");
        assert_eq!(
            t("(?:(?P<x>a)b)*(?(x)c|d)").screen.unwrap().0,
            "(?:(?:a)b)*(?:c|d)"
        );
        assert_eq!(t("a*+b").screen.unwrap().0, "a*b");
        assert_eq!(
            t("(?i)(a)(?-i:\\1)").screen.unwrap().0,
            "(?i)(?:a)(?-i:(?i:a))"
        );
        assert_eq!(t("(a)(?i:\\1)").screen.unwrap().0, "(?:a)(?i:(?s:.)*)");
    }

    #[test]
    fn conditionals_and_tempered_dots_are_rewritten_for_the_fast_engine() {
        let tr = t("(?P<x>a)?(?(x)b|c)");
        assert_eq!(tr.engine, Engine::Fast);
        assert_eq!(tr.reason, "rewritten: conditional");
        assert_eq!(tr.fast.as_ref().unwrap().0, "(a)b|c");
        assert_eq!(tr.fast_groups, Some(vec![1]));
        let tr = t("^(?P<u>(?P<c>\\S+)|(?:(?! from ).)*?) from (?(c)x|y)");
        assert_eq!(tr.engine, Engine::Fast, "{}", tr.reason);
        assert_eq!(tr.reason, "rewritten: conditional, lookahead");
        // Two copies of each group, in branch order.
        assert_eq!(tr.fast_groups, Some(vec![1, 2, 1]));
        assert!(t("a(?=b)").fast_groups.is_none());
    }

    #[test]
    fn pcre_forms() {
        let p = |s: &str| t(s).pcre.map(|f| f.pattern);
        assert_eq!(p(r"(a)\1$").as_deref(), Some(r"(a)(?:\g{1})(?=\n?\z)"));
        assert_eq!(
            p("(?P<x>a)?(?(x)b|c)").as_deref(),
            Some("(?P<x>a)?(?(1)b|c)")
        );
        assert_eq!(p("a*+").as_deref(), Some("a*+"));
        let f = t(r"[é]\w").pcre.unwrap();
        assert!(f.utf && !f.ucp);
        assert_eq!(f.pattern, r"[é]\w");
        // UTF mode would fold case beyond ASCII.
        assert!(t("(?i)[é]").pcre.is_none());
        let u = translate(
            r"(?a:\w)",
            TranslateOptions {
                multiline: false,
                unicode: true,
            },
        )
        .unwrap();
        assert!(u.pcre.is_none(), "no ASCII scope in PCRE2's Unicode mode");
    }

    /// An optional empty-width match keeps its groups: set when it matched, unset when it
    /// was skipped (Python: `re.match(r'(?:(\b))?', '')` leaves group 1 unset, on `'a'` it
    /// is `(0, 0)`).
    #[test]
    fn optional_empty_width_groups_stay() {
        let tr = t(r"(?:(\b))?");
        assert_eq!(tr.engine, Engine::Fast);
        assert_eq!(tr.fast.as_ref().unwrap().0, r"(?:(?:(\b))|)");
        assert_eq!(tr.pcre.as_ref().unwrap().pattern, r"(?:(?:(\b))|)");
        assert_eq!(t(r"(?:(\b))*?").fancy, r"(?:|(?:(\b)))");
        let list =
            super::super::engine::PatternList::compile(vec![tr, t(r"(?:(\b))?(a)")], false, 1000)
                .unwrap();
        let mut stats = super::super::engine::MatchStats::default();
        let all = |hay: &str, stats: &mut _| {
            list.search_all(hay.as_bytes(), stats)
                .into_iter()
                .map(|h| h.groups)
                .collect::<Vec<_>>()
        };
        assert_eq!(all("", &mut stats), vec![vec![Some((0, 0)), None]]);
        assert_eq!(
            all("a", &mut stats),
            vec![
                vec![Some((0, 0)), Some((0, 0))],
                vec![Some((0, 1)), Some((0, 0)), Some((0, 1))]
            ]
        );
        assert_eq!(all(" ", &mut stats), vec![vec![Some((0, 0)), None]]);
    }

    #[test]
    fn fancy_forms() {
        assert_eq!(t(r"(a)\1").fancy, r"(a)(?:\k<1>)");
        assert_eq!(t("(?P<x>a)?(?(x)b)").fancy, "(?P<x>a)?(?(1)b|(?:))");
        assert_eq!(t("a*+").fancy, "a*+");
        assert_eq!(t("(?<=a)b$").fancy, r"(?<=a)b(?=\n?\z)");
        assert_eq!(t("(?=a)*b(?!c)+").fancy, "(?:(?=a)|)b(?!c)");
        assert_eq!(t("(?=a)??b(?!c){0}").fancy, r"(?:|(?=a))b(?:[^\s\S](?!c)|)");
        assert_eq!(t("(?=a)?+").fancy, "(?>(?=a)|)");
        let tr = t(r"(?=x)[é\d]\w\b");
        assert!(tr.fancy_unicode);
        assert_eq!(tr.fancy, r"(?=x)[é[:digit:]][[:word:]]\b");
        assert!(!t("(?=x)a").fancy_unicode);
    }

    #[test]
    fn content_prefixes() {
        let o = TranslateOptions::default();
        let p = content_prefix(r"^(?P<mlfid>\S+ svc: )(?:error: )?(?P<content>.+)$", o).unwrap();
        assert_eq!(p.pattern, r"\A(?:\S+ svc: )(?:error: )?");
        assert_eq!(p.min, 1);
        assert_eq!(content_prefix("^x (?P<content>.*?)$", o).unwrap().min, 0);
        assert_eq!(content_prefix("(?P<content>.+)", o).unwrap().pattern, "");
        for no in [
            "^x (?P<content>.+) y$",
            "^x (?P<content>.+?)",
            "^x (?P<content>[^y]+)$",
            "^x (?P<content>.+)\\Z",
            "^(?=x)(?P<content>.+)$",
            "^x (?:(?P<content>.+))$",
            "^x (?P<other>.+)$",
        ] {
            assert!(content_prefix(no, o).is_none(), "{no}");
        }
    }

    #[test]
    fn ipv6_host_tag_stays_fast() {
        let host = super::super::tags::expand("from <HOST>", crate::config::model::UseDns::Yes);
        assert_eq!(t(&host).engine, Engine::Fast);
    }
}
