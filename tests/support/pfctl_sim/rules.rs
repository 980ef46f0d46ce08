//! Rulesets: `-f FILE|-` (a line-level parse of pf.conf: table definitions are real,
//! rules are kept verbatim), `-s rules`, `-s Anchors`, `-F rules` and the `-a 'X/*'`
//! recursion with its `Removing:` listing.

use std::sync::OnceLock;

use regex::Regex;

use crate::addr::Net;
use crate::ctx::{self, Ctx, Exit, Res};
use crate::os::{Errno, Os, pf_strerror};
use crate::state::{Entry, State, Table};
use crate::tables;

/// First words of the statements stored verbatim as rules.
const RULE_WORDS: &[&str] = &[
    "pass",
    "block",
    "match",
    "anchor",
    "load",
    "scrub",
    "antispoof",
    "nat",
    "rdr",
    "binat",
    "nat-anchor",
    "rdr-anchor",
    "binat-anchor",
];

const ANCHOR_WORDS: &[&str] = &["anchor", "nat-anchor", "rdr-anchor", "binat-anchor"];

fn table_ref_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"<([^<>\s]+)>").expect("valid regex"))
}

/// The tables a rule references as `<name>`.
pub fn table_refs(rule: &str) -> Vec<String> {
    table_ref_re()
        .captures_iter(rule)
        .map(|c| c[1].to_string())
        .collect()
}

/// Splits on blanks outside double quotes.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            cur.push(c);
        } else if c.is_whitespace() && !quoted {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// For an anchor-call rule in ruleset `path`: the called ruleset and whether the call
/// is a wildcard (`anchor "f2b/*"`). Relative names resolve below `path`.
pub fn anchor_call_target(path: &str, rule: &str) -> Option<(String, bool)> {
    let w = words(rule);
    if !ANCHOR_WORDS.contains(&w.first()?.as_str()) {
        return None;
    }
    let raw = w.get(1)?;
    let name = if let Some(q) = raw.strip_prefix('"') {
        q.strip_suffix('"')?.to_string()
    } else {
        const KEYWORDS: &[&str] = &[
            "in", "out", "on", "inet", "inet6", "proto", "from", "to", "all", "quick", "log", "{",
            "tagged", "rtable",
        ];
        if KEYWORDS.contains(&raw.as_str()) || raw.starts_with('{') {
            return None;
        }
        raw.clone()
    };
    let (name, wildcard) = match name.strip_suffix("/*") {
        Some(n) => (n.to_string(), true),
        None if name == "*" => (String::new(), true),
        None => (name, false),
    };
    let target = if let Some(abs) = name.strip_prefix('/') {
        abs.trim_start_matches('/').to_string()
    } else {
        let mut base: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut rest = name.as_str();
        while let Some(r) = rest.strip_prefix("../") {
            base.pop();
            rest = r;
        }
        if !rest.is_empty() {
            base.push(rest);
        }
        base.join("/")
    };
    Some((target, wildcard))
}

/// A `table <name> …` definition.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub name: String,
    pub persist: bool,
    pub konst: bool,
    pub counters: bool,
    /// `None` for a bare definition, which keeps the entries a table already has.
    pub addrs: Option<Vec<(Net, bool)>>,
    pub line: usize,
}

#[derive(Debug, Default)]
pub struct Parsed {
    pub tables: Vec<TableDef>,
    pub rules: Vec<String>,
    pub limits: Vec<(String, u64, usize)>,
}

/// Statements with their first line number: comments removed, `\` continuations and
/// lines inside an open `{` joined.
fn statements(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let mut line = String::new();
        let mut quoted = false;
        for c in raw.chars() {
            if c == '"' {
                quoted = !quoted;
            }
            if c == '#' && !quoted {
                break;
            }
            line.push(c);
        }
        if cur.is_empty() {
            start = i + 1;
        }
        let continued = line.trim_end().ends_with('\\');
        let body = if continued {
            line.trim_end().trim_end_matches('\\').to_string()
        } else {
            line
        };
        cur.push(' ');
        cur.push_str(&body);
        let open = cur.matches('{').count() > cur.matches('}').count();
        if continued || open {
            continue;
        }
        if !cur.trim().is_empty() {
            out.push((start, std::mem::take(&mut cur)));
        }
        cur.clear();
    }
    if !cur.trim().is_empty() {
        out.push((start, cur));
    }
    out
}

fn balanced(s: &str) -> bool {
    s.matches('"').count().is_multiple_of(2)
        && s.matches('{').count() == s.matches('}').count()
        && s.matches('(').count() == s.matches(')').count()
}

/// The per-OS `set limit` names (`pf_limits[]` of pfctl.c).
fn limit_names(os: Os) -> Vec<&'static str> {
    os.default_limits().iter().map(|(n, _)| *n).collect()
}

fn parse_table(stmt: &str, line: usize, fname: &str, errs: &mut String) -> Option<TableDef> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re =
        RE.get_or_init(|| Regex::new(r"^table\s*<\s*([^<>\s]+)\s*>(.*)$").expect("valid regex"));
    let Some(c) = re.captures(stmt) else {
        errs.push_str(&format!("{fname}:{line}: syntax error\n"));
        return None;
    };
    let name = c[1].to_string();
    if name.len() >= 32 {
        errs.push_str(&format!(
            "{fname}:{line}: table name too long, max 31 chars\n"
        ));
        return None;
    }
    let mut def = TableDef {
        name,
        persist: false,
        konst: false,
        counters: false,
        addrs: None,
        line,
    };
    let mut rest = c[2].trim().to_string();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('{') {
            let Some(end) = r.find('}') else {
                errs.push_str(&format!("{fname}:{line}: syntax error\n"));
                return None;
            };
            let list: Vec<String> = r[..end]
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect();
            match tables::parse_table_addrs(&list) {
                Ok(a) => def.addrs.get_or_insert_with(Vec::new).extend(a),
                Err(msg) => {
                    errs.push_str(&msg);
                    errs.push_str(&format!(
                        "{fname}:{line}: could not parse host specification\n"
                    ));
                    return None;
                }
            }
            rest = r[end + 1..].trim().to_string();
            continue;
        }
        let (w, r) = rest
            .split_once(char::is_whitespace)
            .unwrap_or((rest.as_str(), ""));
        match w {
            "persist" => def.persist = true,
            "const" => def.konst = true,
            "counters" => def.counters = true,
            _ => {
                errs.push_str(&format!("{fname}:{line}: syntax error\n"));
                return None;
            }
        }
        rest = r.trim().to_string();
    }
    Some(def)
}

fn parse_set(
    os: Os,
    w: &[String],
    line: usize,
    fname: &str,
    p: &mut Parsed,
    errs: &mut String,
) -> bool {
    if w.get(1).map(String::as_str) != Some("limit") {
        // Other options are accepted and ignored.
        return true;
    }
    let spec = w[2..].join(" ");
    let spec = spec.trim();
    let inner = match spec.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(i) => i.to_string(),
        None => spec.to_string(),
    };
    let toks: Vec<&str> = inner
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .collect();
    if toks.is_empty() || !toks.len().is_multiple_of(2) {
        errs.push_str(&format!("{fname}:{line}: syntax error\n"));
        return false;
    }
    for pair in toks.chunks(2) {
        let Ok(v) = pair[1].parse::<u64>() else {
            errs.push_str(&format!("{fname}:{line}: syntax error\n"));
            return false;
        };
        if !limit_names(os)
            .iter()
            .any(|n| n.eq_ignore_ascii_case(pair[0]))
        {
            errs.push_str("pfctl: Bad pool name.\n");
            errs.push_str(&format!(
                "{fname}:{line}: unable to set limit {} {v}\n",
                pair[0]
            ));
            return false;
        }
        p.limits.push((pair[0].to_ascii_lowercase(), v, line));
    }
    true
}

/// Parses a ruleset; the errors are the exact stderr lines.
pub fn parse_config(os: Os, text: &str, fname: &str) -> (Parsed, String) {
    let mut p = Parsed::default();
    let mut errs = String::new();
    for (line, stmt) in statements(text) {
        let w = words(&stmt);
        let Some(first) = w.first() else { continue };
        let collapsed = w.join(" ");
        if !balanced(&collapsed) {
            errs.push_str(&format!("{fname}:{line}: syntax error\n"));
            continue;
        }
        match first.as_str() {
            "table" => {
                if let Some(def) = parse_table(&collapsed, line, fname, &mut errs) {
                    p.tables.push(def);
                }
            }
            "set" => {
                parse_set(os, &w, line, fname, &mut p, &mut errs);
            }
            f if RULE_WORDS.contains(&f) => p.rules.push(collapsed),
            _ => errs.push_str(&format!("{fname}:{line}: syntax error\n")),
        }
    }
    (p, errs)
}

/// Applies table definitions the way `DIOCRINADEFINE` + commit do: flags replaced,
/// address lists merged (surviving entries keep `tzero` and counters), bare
/// definitions keep the entries (no `PFR_FLAG_ADDRSTOO`) [commit semantics from the
/// kernel as remembered; fail2ban relies on them]. Returns the definition that hit
/// the entries limit.
fn define_tables<'a>(
    st: &mut State,
    os: Os,
    anchor: &str,
    defs: &'a [TableDef],
    now: i64,
) -> Result<(), &'a TableDef> {
    let limit = tables::limit(st, os, "table-entries").unwrap_or(200_000) as usize;
    for def in defs {
        let a = st.anchor_mut(anchor);
        let t = a
            .tables
            .entry(def.name.clone())
            .or_insert_with(|| Table::new(def.persist, now));
        if !t.active {
            t.tzero = now;
        }
        t.active = true;
        t.persist = def.persist;
        t.konst = def.konst;
        t.counters = def.counters;
        if let Some(addrs) = &def.addrs {
            let old = std::mem::take(&mut t.entries);
            for (net, not) in addrs {
                let key = net.key();
                let mut e = old
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| Entry::new(*not, now));
                e.not = *not;
                t.entries.insert(key, e);
            }
        }
        if st.total_entries() > limit {
            return Err(def);
        }
    }
    Ok(())
}

/// `pfctl_rules()` for `-f`: parse, then replace the anchor's rules atomically.
/// `tables_only` is FreeBSD's `-T load`.
pub fn load_rules(
    ctx: &mut Ctx,
    st: &mut State,
    file: &str,
    anchor: &str,
    tables_only: bool,
) -> Res<()> {
    let fname = if file == "-" {
        "stdin".to_string()
    } else {
        file.to_string()
    };
    let text = match ctx::read_input(ctx, file) {
        Ok(t) => t,
        Err(e) => {
            // parse.y pushfile() and parse_config() both warn [wording unverified].
            let m = ctx::io_strerror(&e);
            ctx.warnx(&format!("{file}: {m}"));
            ctx.warnx(&format!("cannot open the main config file!: {m}"));
            return Err(syntax_exit(ctx));
        }
    };
    let (parsed, errs) = parse_config(ctx.os, &text, &fname);
    ctx.err.push_str(&errs);
    if !errs.is_empty() {
        return Err(syntax_exit(ctx));
    }
    if ctx.opts.noaction {
        return Ok(());
    }
    if let Some(def) = parsed
        .tables
        .iter()
        .find(|d| d.addrs.iter().flatten().any(|(n, _)| !n.is_valid()))
    {
        return Err(define_failed(ctx, &fname, def, Errno::Einval));
    }
    let mut next = st.clone();
    if let Err(def) = define_tables(&mut next, ctx.os, anchor, &parsed.tables, ctx.now) {
        return Err(define_failed(ctx, &fname, def, Errno::Enomem));
    }
    if !tables_only {
        next.anchor_mut(anchor).rules = parsed.rules;
        if anchor.is_empty() {
            for (name, v, _) in &parsed.limits {
                next.limits.insert(name.clone(), *v);
            }
        }
    }
    next.settle_tables(anchor, ctx.now);
    next.prune();
    *st = next;
    Ok(())
}

/// A table definition the kernel refused: FreeBSD prints the errno's text, OpenBSD
/// `pf_strerror()`'s.
fn define_failed(ctx: &mut Ctx, fname: &str, def: &TableDef, e: Errno) -> Exit {
    let why = match ctx.os {
        Os::FreeBsd => e.strerror(),
        Os::OpenBsd => pf_strerror(e),
    };
    ctx.err.push_str(&format!(
        "{fname}:{}: cannot define table {}: {why}\n",
        def.line, def.name
    ));
    syntax_exit(ctx)
}

fn syntax_exit(ctx: &mut Ctx) -> Exit {
    if !ctx.opts.noaction {
        ctx.warnx("Syntax error in config file: pf rules not loaded");
    }
    Exit(1)
}

/// `pfctl_flush_rules()` / OpenBSD `pfctl_clear_rules()`.
pub fn flush_rules(ctx: &mut Ctx, st: &mut State, anchor: &str) {
    if let Some(a) = st.anchors.get_mut(anchor) {
        a.rules.clear();
    }
    st.settle_tables(anchor, ctx.now);
    st.prune();
    ctx.info("rules cleared");
}

/// Child rulesets of `path`, by name (`DIOCGETRULESETS` / `DIOCGETRULESET`).
fn children(st: &State, path: &str) -> Vec<String> {
    let all = st.existing_anchors();
    let mut out: Vec<String> = all
        .iter()
        .filter(|p| !p.is_empty())
        .filter(|p| match p.rsplit_once('/') {
            Some((parent, _)) => parent == path,
            None => path.is_empty(),
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| leaf(a).cmp(leaf(b)));
    out.retain(|p| leaf(p) != "_pf");
    out
}

fn leaf(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn indent(ctx: &mut Ctx, depth: usize) {
    if !ctx.opts.v1() {
        for _ in 0..depth {
            ctx.out.push_str("  ");
        }
    }
}

fn rule_counters(ctx: &mut Ctx) {
    let os = ctx.os;
    if ctx.opts.v1() {
        ctx.out.push_str(&format!(
            "  [ Evaluations: {:<8}  Packets: {:<8}  Bytes: {:<10}  States: {:<6}]\n",
            0, 0, 0, 0
        ));
        if os == Os::FreeBsd {
            ctx.out.push_str(&format!(
                "  [ Source Nodes: {:<6} Limit: {:<6} NAT/RDR: {:<6} Route: {:<6} ]\n",
                0, 0, 0, 0
            ));
        }
        if !ctx.opts.debug {
            ctx.out.push_str(&format!(
                "  [ Inserted: uid {} pid {} State Creations: {:<6}]\n",
                0, 0, 0
            ));
        }
    }
    if ctx.opts.v2() && os == Os::FreeBsd {
        ctx.out.push_str("  [ Last Active Time: N/A ]\n");
    }
}

fn wildcard_children(ctx: &mut Ctx, st: &State, path: &str, name: &str, depth: usize) -> Res<()> {
    if !st.anchor_exists(path) {
        match ctx.os {
            Os::FreeBsd => ctx.err.push_str(&format!("Anchor '{name}' not found.\n")),
            Os::OpenBsd => return Err(ctx.errx(1, pf_strerror(Errno::Enoent))),
        }
        return Ok(());
    }
    for child in children(st, path) {
        indent(ctx, depth);
        ctx.out
            .push_str(&format!("anchor \"{}\" all {{\n", leaf(&child)));
        show_rules(ctx, st, &child, leaf(&child), depth + 1, false, None)?;
        indent(ctx, depth);
        ctx.out.push_str("}\n");
    }
    Ok(())
}

/// `pfctl_show_rules()`: the stored rules of `path`, recursing into called anchors with
/// `-a '…*'`.
pub fn show_rules(
    ctx: &mut Ctx,
    st: &State,
    path: &str,
    name: &str,
    depth: usize,
    wildcard: bool,
    shownr: Option<i64>,
) -> Res<()> {
    if ctx.os == Os::FreeBsd && wildcard && ctx.opts.recurse {
        return wildcard_children(ctx, st, path, name, depth);
    }
    if !st.anchor_exists(path) {
        ctx.warnx(pf_strerror(Errno::Enoent));
        return Ok(());
    }
    let rules: Vec<String> = st.anchor(path).map(|a| a.rules.clone()).unwrap_or_default();
    let range = match shownr {
        None => 0..rules.len(),
        Some(n) if (n as usize) < rules.len() => n as usize..n as usize + 1,
        Some(n) => {
            ctx.warnx(&format!("rule {n} not found"));
            return Ok(());
        }
    };
    let mut wildcard = wildcard;
    for (nr, rule) in rules.iter().enumerate().skip(range.start).take(range.len()) {
        let call = anchor_call_target(path, rule);
        if !call.as_ref().is_some_and(|(_, w)| *w) {
            wildcard = false;
        }
        indent(ctx, depth);
        if ctx.opts.v2() || ctx.opts.debug {
            ctx.out.push_str(&format!("@{nr} "));
        }
        ctx.out.push_str(rule);
        match call {
            Some((target, w)) if ctx.opts.recurse => {
                ctx.out.push_str(" {\n");
                rule_counters(ctx);
                show_rules(ctx, st, &target, leaf(&target), depth + 1, w, None)?;
                indent(ctx, depth);
                ctx.out.push_str("}\n");
            }
            _ => {
                ctx.out.push('\n');
                rule_counters(ctx);
            }
        }
    }
    if ctx.os == Os::OpenBsd && wildcard && ctx.opts.recurse {
        wildcard_children(ctx, st, path, name, depth)?;
    }
    Ok(())
}

/// `pfctl_walk_anchors()` collecting full paths in walk order.
fn walk(st: &State, path: &str, out: &mut Vec<String>) {
    for c in children(st, path) {
        out.push(c.clone());
        walk(st, &c, out);
    }
}

/// `-s Anchors`.
pub fn show_anchors(ctx: &mut Ctx, st: &State, anchor: &str, shown_name: &str) -> Res<()> {
    if !st.anchor_exists(anchor) {
        match ctx.os {
            // [the kernel's errno here is unverified; this follows the EINVAL branch]
            Os::FreeBsd => ctx
                .err
                .push_str(&format!("Anchor '{shown_name}' not found.\n")),
            Os::OpenBsd => return Err(ctx.errx(1, pf_strerror(Errno::Enoent))),
        }
    } else {
        let mut all = Vec::new();
        walk(st, anchor, &mut all);
        for p in all {
            let (parent, name) = match p.rsplit_once('/') {
                Some((a, b)) => (a, b),
                None => ("", p.as_str()),
            };
            let hidden = if parent.is_empty() {
                name.starts_with('_')
            } else {
                parent.starts_with('_')
            };
            if !hidden || ctx.opts.v1() {
                ctx.out.push_str(&format!("  {p}\n"));
            }
        }
    }
    if ctx.os == Os::FreeBsd && ctx.opts.v2() {
        ctx.out.push_str("Ethernet:\n");
    }
    Ok(())
}

/// `pfctl_get_anchors()`: the anchor itself first, then its descendants, each inserted
/// at the head of the list, so the listing comes out reversed.
pub fn recursion_list(ctx: &mut Ctx, st: &State, anchor: &str) -> Res<Vec<String>> {
    if !st.anchor_exists(anchor) {
        return Err(match ctx.os {
            Os::FreeBsd => {
                ctx.err.push_str(&format!("Anchor '{anchor}' not found.\n"));
                ctx.errx(
                    1,
                    "pfctl_get_anchors failed to retrieve list of anchors, can't continue",
                )
            }
            Os::OpenBsd => ctx.errx(1, pf_strerror(Errno::Enoent)),
        });
    }
    let mut list = vec![anchor.to_string()];
    walk(st, anchor, &mut list);
    list.reverse();
    Ok(list)
}

#[derive(Clone, Copy)]
pub enum RecurseWhat {
    Rules,
    Tables,
    Both,
}

/// `pfctl_recurse()`: prints `Removing:` and each anchor on stdout, clearing quietly.
pub fn recurse(ctx: &mut Ctx, st: &mut State, anchor: &str, what: RecurseWhat) -> Res<()> {
    let list = recursion_list(ctx, st, anchor)?;
    ctx.out.push_str("Removing:\n");
    let quiet = ctx.opts.quiet;
    ctx.opts.quiet = true;
    for a in list {
        let shown = if a.is_empty() {
            "/".to_string()
        } else {
            a.clone()
        };
        ctx.out.push_str(&format!("  {shown}\n"));
        if matches!(what, RecurseWhat::Tables | RecurseWhat::Both) {
            tables::pfctl_clear_tables(ctx, st, &a, true)?;
        }
        if matches!(what, RecurseWhat::Rules | RecurseWhat::Both) {
            flush_rules(ctx, st, &a);
        }
    }
    ctx.opts.quiet = quiet;
    Ok(())
}
