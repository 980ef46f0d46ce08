//! `-t TABLE -T COMMAND`, `-s Tables` and `-F Tables`: pfctl's `pfctl_table()` on top of
//! a model of the kernel's radix-table ioctls (feedback codes, A/B counts, ESRCH/ENOENT,
//! the table-entries limit, persistent auto-created tables).

use std::net::IpAddr;

use crate::addr::{self, Net};
use crate::ctx::{self, Ctx, Exit, Res, ctime};
use crate::os::{Errno, Os};
use crate::state::{Entry, State, Table};

/// `PFR_FB_*` feedback codes, in the order of pfctl's letter array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fb {
    None,
    Match,
    Added,
    Deleted,
    Changed,
    Cleared,
    Duplicate,
    NotMatch,
    Conflict,
}

impl Fb {
    fn letter(self) -> char {
        match self {
            Fb::None | Fb::NotMatch => ' ',
            Fb::Match => 'M',
            Fb::Added => 'A',
            Fb::Deleted => 'D',
            Fb::Changed => 'C',
            Fb::Cleared => 'Z',
            Fb::Duplicate => 'X',
            Fb::Conflict => 'Y',
        }
    }
}

/// A `struct pfr_addr`.
#[derive(Debug, Clone, Copy)]
pub struct PfrAddr {
    pub net: Net,
    pub not: bool,
    pub fb: Fb,
}

impl PfrAddr {
    fn new(net: Net, not: bool) -> Self {
        PfrAddr {
            net,
            not,
            fb: Fb::None,
        }
    }
}

/// `print_addrx()`.
fn print_addrx(ad: &PfrAddr, rad: Option<&PfrAddr>) -> String {
    let fback = rad.map_or(ad.fb, |r| r.fb);
    let hostnet = ad.net.host_bits();
    let mut s = format!(
        "{} {}{}",
        fback.letter(),
        if ad.not { '!' } else { ' ' },
        addr::ntop(ad.net.ip)
    );
    if ad.net.prefix < hostnet {
        s.push_str(&format!("/{}", ad.net.prefix));
    }
    if let Some(r) = rad {
        if fback != Fb::None {
            s.push_str(&format!(
                "\t{}{}",
                if r.not { '!' } else { ' ' },
                addr::ntop(r.net.ip)
            ));
            if r.net.prefix < hostnet {
                s.push_str(&format!("/{}", r.net.prefix));
            }
        } else {
            s.push_str("\t nomatch");
        }
    }
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------
// The kernel side.

fn table_entries_limit(st: &State, os: Os) -> u64 {
    limit(st, os, "table-entries").unwrap_or(200_000)
}

pub fn limit(st: &State, os: Os, name: &str) -> Option<u64> {
    st.limits.get(name).copied().or_else(|| {
        os.default_limits()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    })
}

fn validate_table_name(name: &str) -> Result<(), Errno> {
    if name.is_empty() {
        Err(Errno::Einval)
    } else {
        Ok(())
    }
}

fn lookup_active<'a>(st: &'a mut State, anchor: &str, name: &str) -> Result<&'a mut Table, Errno> {
    validate_table_name(name)?;
    match st
        .anchors
        .get_mut(anchor)
        .and_then(|a| a.tables.get_mut(name))
    {
        Some(t) if t.active => Ok(t),
        _ => Err(Errno::Esrch),
    }
}

fn lookup_writable<'a>(
    st: &'a mut State,
    anchor: &str,
    name: &str,
) -> Result<&'a mut Table, Errno> {
    let t = lookup_active(st, anchor, name)?;
    if t.konst {
        return Err(Errno::Eperm);
    }
    Ok(t)
}

/// `pfr_add_tables()` for one persistent table: 1 if it was created or activated.
/// Creating it also creates the anchor's ruleset (`attachruleset`) [kernel behaviour
/// from memory, consistent with the pfctl(8) `-a foo/bar -T add` example].
pub fn k_add_table(st: &mut State, anchor: &str, name: &str, now: i64) -> Result<u32, Errno> {
    validate_table_name(name)?;
    if let Some(t) = st
        .anchors
        .get_mut(anchor)
        .and_then(|a| a.tables.get_mut(name))
    {
        if t.active {
            return Ok(0);
        }
        t.active = true;
        t.persist = true;
        t.konst = false;
        t.counters = false;
        return Ok(1);
    }
    // The table count is capped only where a limit is configured for it explicitly
    // [the kernel's default enforcement of "tables" is unverified].
    if let Some(max) = st.limits.get("tables")
        && st.total_tables() as u64 >= *max
    {
        return Err(Errno::Enomem);
    }
    st.anchor_mut(anchor)
        .tables
        .insert(name.to_string(), Table::new(true, now));
    Ok(1)
}

fn check_addrs(addrs: &[PfrAddr]) -> Result<(), Errno> {
    if addrs.iter().all(|a| a.net.is_valid()) {
        Ok(())
    } else {
        Err(Errno::Einval)
    }
}

/// `pfr_add_addrs()`. Running out of table entries is ENOMEM for the whole batch
/// [errno unverified; the pool allocation fails before anything is inserted].
fn k_add_addrs(
    st: &mut State,
    os: Os,
    anchor: &str,
    name: &str,
    addrs: &mut [PfrAddr],
    now: i64,
) -> Result<u32, Errno> {
    let room = table_entries_limit(st, os).saturating_sub(st.total_entries() as u64);
    let t = lookup_writable(st, anchor, name)?;
    check_addrs(addrs)?;
    let mut batch: Vec<String> = Vec::new();
    for a in addrs.iter_mut() {
        let key = a.net.key();
        let existing = t.entries.get(&key);
        a.fb = if batch.contains(&key) {
            Fb::Duplicate
        } else if existing.is_none() {
            Fb::Added
        } else if existing.is_some_and(|e| e.not != a.not) {
            Fb::Conflict
        } else {
            Fb::None
        };
        if a.fb == Fb::Added {
            if batch.len() as u64 >= room {
                return Err(Errno::Enomem);
            }
            batch.push(key);
        }
    }
    for a in addrs.iter().filter(|a| a.fb == Fb::Added) {
        t.entries.insert(a.net.key(), Entry::new(a.not, now));
    }
    Ok(batch.len() as u32)
}

fn k_del_addrs(
    st: &mut State,
    anchor: &str,
    name: &str,
    addrs: &mut [PfrAddr],
) -> Result<u32, Errno> {
    let t = lookup_writable(st, anchor, name)?;
    check_addrs(addrs)?;
    let mut marked: Vec<String> = Vec::new();
    for a in addrs.iter_mut() {
        let key = a.net.key();
        a.fb = match t.entries.get(&key) {
            None => Fb::None,
            Some(e) if e.not != a.not => Fb::Conflict,
            Some(_) if marked.contains(&key) => Fb::Duplicate,
            Some(_) => {
                marked.push(key);
                Fb::Deleted
            }
        };
    }
    for k in &marked {
        t.entries.remove(k);
    }
    Ok(marked.len() as u32)
}

struct SetResult {
    nadd: u32,
    ndel: u32,
    nchange: u32,
    deleted: Vec<PfrAddr>,
}

fn k_set_addrs(
    st: &mut State,
    os: Os,
    anchor: &str,
    name: &str,
    addrs: &mut [PfrAddr],
    now: i64,
) -> Result<SetResult, Errno> {
    let room = table_entries_limit(st, os).saturating_sub(st.total_entries() as u64);
    let t = lookup_writable(st, anchor, name)?;
    check_addrs(addrs)?;
    let mut marked: Vec<String> = Vec::new();
    let mut added: Vec<String> = Vec::new();
    let mut changed: Vec<String> = Vec::new();
    for a in addrs.iter_mut() {
        let key = a.net.key();
        a.fb = Fb::None;
        if let Some(e) = t.entries.get(&key) {
            if marked.contains(&key) {
                a.fb = Fb::Duplicate;
                continue;
            }
            marked.push(key.clone());
            if e.not != a.not {
                changed.push(key);
                a.fb = Fb::Changed;
            }
        } else if added.contains(&key) {
            a.fb = Fb::Duplicate;
        } else {
            if added.len() as u64 >= room {
                return Err(Errno::Enomem);
            }
            added.push(key);
            a.fb = Fb::Added;
        }
    }
    // Unmarked entries are queued head-first while walking the IPv4 then the IPv6 tree,
    // so they come out in reverse radix order, IPv6 first.
    let mut deleted: Vec<PfrAddr> = t
        .sorted_entries()
        .into_iter()
        .filter(|(n, _)| !marked.contains(&n.key()))
        .map(|(n, e)| PfrAddr {
            net: n,
            not: e.not,
            fb: Fb::Deleted,
        })
        .collect();
    deleted.reverse();
    for a in addrs.iter().filter(|a| a.fb == Fb::Added) {
        t.entries.insert(a.net.key(), Entry::new(a.not, now));
    }
    for d in &deleted {
        t.entries.remove(&d.net.key());
    }
    for k in &changed {
        if let Some(e) = t.entries.get_mut(k) {
            let not = !e.not;
            *e = Entry::new(not, now);
        }
    }
    Ok(SetResult {
        nadd: added.len() as u32,
        ndel: deleted.len() as u32,
        nchange: changed.len() as u32,
        deleted,
    })
}

/// Longest-prefix match of a host in a table (the radix lookup of `pfr_tst_addrs`).
fn lookup_match(t: &Table, ip: IpAddr) -> Option<(Net, bool)> {
    t.sorted_entries()
        .into_iter()
        .filter(|(n, _)| n.contains(ip))
        .max_by_key(|(n, _)| n.prefix)
        .map(|(n, e)| (n, e.not))
}

fn k_tst_addrs(
    st: &mut State,
    anchor: &str,
    name: &str,
    addrs: &mut [PfrAddr],
    replace: bool,
) -> Result<u32, Errno> {
    let t = lookup_active(st, anchor, name)?;
    if addrs.iter().any(|a| a.net.prefix != a.net.host_bits()) {
        return Err(Errno::Einval);
    }
    let mut nmatch = 0;
    for a in addrs.iter_mut() {
        match lookup_match(t, a.net.ip) {
            None => a.fb = Fb::None,
            Some((n, not)) => {
                a.fb = if not { Fb::NotMatch } else { Fb::Match };
                if !not {
                    nmatch += 1;
                }
                if replace {
                    a.net = n;
                    a.not = not;
                }
            }
        }
    }
    Ok(nmatch)
}

fn k_clr_astats(
    st: &mut State,
    anchor: &str,
    name: &str,
    addrs: &mut [PfrAddr],
    now: i64,
) -> Result<u32, Errno> {
    let t = lookup_active(st, anchor, name)?;
    check_addrs(addrs)?;
    let mut n = 0;
    for a in addrs.iter_mut() {
        match t.entries.get_mut(&a.net.key()) {
            Some(e) => {
                e.clear(now);
                a.fb = Fb::Cleared;
                n += 1;
            }
            None => a.fb = Fb::None,
        }
    }
    Ok(n)
}

/// `pfr_clr_tstats()`: table-wide `-T zero`; a missing table counts 0 rather than
/// failing (it is looked up, not required) [kernel behaviour from memory].
fn k_clr_tstats(st: &mut State, anchor: &str, name: &str, now: i64) -> Result<u32, Errno> {
    validate_table_name(name)?;
    match st
        .anchors
        .get_mut(anchor)
        .and_then(|a| a.tables.get_mut(name))
    {
        Some(t) => {
            t.clear_counters(now);
            for e in t.entries.values_mut() {
                e.clear(now);
            }
            Ok(1)
        }
        None => Ok(0),
    }
}

/// `pfr_del_tables()`: a missing or inactive table is not an error, it counts 0
/// [kernel behaviour from memory].
fn k_del_table(st: &mut State, anchor: &str, name: &str) -> Result<u32, Errno> {
    validate_table_name(name)?;
    let active = st
        .anchors
        .get(anchor)
        .and_then(|a| a.tables.get(name))
        .is_some_and(|t| t.active);
    if !active {
        return Ok(0);
    }
    st.deactivate_table(anchor, name);
    Ok(1)
}

fn k_clr_addrs(st: &mut State, anchor: &str, name: &str) -> Result<u32, Errno> {
    let t = lookup_writable(st, anchor, name)?;
    let n = t.entries.len() as u32;
    t.entries.clear();
    Ok(n)
}

/// `pfr_clr_tables()`: deactivates every active table of one anchor.
pub fn k_clr_tables(st: &mut State, anchor: &str) -> Result<u32, Errno> {
    if !st.anchor_exists(anchor) {
        return Err(Errno::Enoent);
    }
    let names: Vec<String> = st
        .anchor(anchor)
        .map(|a| {
            a.tables
                .iter()
                .filter(|(_, t)| t.active)
                .map(|(n, _)| n.clone())
                .collect()
        })
        .unwrap_or_default();
    for n in &names {
        st.deactivate_table(anchor, n);
    }
    Ok(names.len() as u32)
}

// ---------------------------------------------------------------------------------------
// pfctl's side.

enum AppendError {
    /// `host()` already printed why; errno is 0.
    Reported,
    Einval,
}

/// `append_addr()`: leading `!`s toggle negation; `test` accepts plain hosts only.
fn append_addr(
    ctx: &mut Ctx,
    b: &mut Vec<PfrAddr>,
    s: &str,
    test: bool,
) -> Result<(), AppendError> {
    let r = s.trim_start_matches('!');
    let not = (s.len() - r.len()) % 2 == 1;
    let net = match addr::host(r) {
        Ok(n) => n,
        Err(msg) => {
            ctx.err.push_str(&msg);
            return Err(AppendError::Reported);
        }
    };
    if test && (not || net.prefix != net.host_bits()) {
        return Err(AppendError::Einval);
    }
    b.push(PfrAddr::new(net, not));
    Ok(())
}

/// `pfr_next_token()`: whitespace-separated words, `#` comments at a word start.
fn tokens(text: &str) -> Vec<String> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c');
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| is_space(*c)) {
            chars.next();
        }
        match chars.peek() {
            None => break,
            Some('#') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                continue;
            }
            Some(_) => {}
        }
        let mut w = String::new();
        while let Some(c) = chars.peek().copied() {
            if is_space(c) {
                break;
            }
            w.push(c);
            chars.next();
        }
        out.push(w);
    }
    out
}

/// `load_addr()`: the command-line addresses, then those of `-f file`. On failure the
/// messages are printed and the command fails with exit status 255.
fn load_addr(
    ctx: &mut Ctx,
    args: &[String],
    file: Option<&str>,
    test: bool,
) -> Option<Vec<PfrAddr>> {
    let mut b = Vec::new();
    for a in args {
        match append_addr(ctx, &mut b, a, test) {
            Ok(()) => {}
            Err(AppendError::Reported) => return None,
            Err(AppendError::Einval) => {
                ctx.warnx(&format!("cannot decode {a}: Invalid argument"));
                return None;
            }
        }
    }
    if let Some(f) = file {
        let text = match ctx::read_input(ctx, f) {
            Ok(t) => t,
            Err(e) => {
                let msg = ctx::io_strerror(&e);
                ctx.warnx(&format!("cannot load {f}: {msg}"));
                return None;
            }
        };
        for tok in tokens(&text) {
            let res = if tok.chars().count() >= 256 {
                Err(AppendError::Einval)
            } else {
                append_addr(ctx, &mut b, &tok, test)
            };
            match res {
                Ok(()) => {}
                Err(AppendError::Reported) => {
                    let z = ctx.os.strerror_zero();
                    ctx.warnx(&format!("cannot load {f}: {z}"));
                    return None;
                }
                Err(AppendError::Einval) => {
                    ctx.warnx(&format!("cannot load {f}: Invalid argument"));
                    return None;
                }
            }
        }
    }
    Some(b)
}

/// `warn_duplicate_tables()` (FreeBSD 15, OpenBSD 7.7): active tables of the same name
/// in other anchors, in the kernel's (name, anchor) order. Printed with `warnx`, so `-q`
/// does not silence it.
fn warn_duplicate_tables(ctx: &mut Ctx, st: &State, name: &str, anchor: &str) {
    for (path, a) in &st.anchors {
        if path == anchor {
            continue;
        }
        if a.tables.get(name).is_some_and(|t| t.active) {
            let shown = if path.is_empty() { "/" } else { path.as_str() };
            ctx.warnx(&format!(
                "warning: table <{name}> already defined in anchor \"{shown}\""
            ));
        }
    }
}

fn print_feedback(ctx: &mut Ctx, b: &[PfrAddr]) {
    if !ctx.opts.v1() {
        return;
    }
    for a in b {
        if ctx.opts.v2() || a.fb != Fb::None {
            ctx.out.push_str(&print_addrx(a, None));
        }
    }
}

/// `RVTEST` failure: the error line (unless recursing) and the -1 return.
fn rv_error(ctx: &mut Ctx, e: Errno) -> i32 {
    if !ctx.opts.recurse {
        let line = ctx.os.table_error(e);
        ctx.err.push_str(&line);
    }
    -1
}

/// What `pfctl_table()` returns: 0, 2 (`test` mismatch) or -1 (exit status 255).
pub fn pfctl_table(
    ctx: &mut Ctx,
    live: &mut State,
    args: &[String],
    tname: Option<&str>,
    command: &str,
    file: Option<&str>,
    anchor: &str,
) -> Res<i32> {
    if let Some(t) = tname
        && t.len() >= 32
    {
        return Err(ctx.usage());
    }
    let tname = tname.unwrap_or("");
    // Dummy runs ask the kernel for the outcome without applying it.
    let mut scratch;
    let st: &mut State = if ctx.opts.noaction {
        scratch = live.clone();
        &mut scratch
    } else {
        live
    };
    let call = ctx.opts.calls_kernel();
    let now = ctx.now;
    let os = ctx.os;
    let no_args = |ctx: &mut Ctx| -> Res<()> {
        if !args.is_empty() || file.is_some() {
            Err(ctx.usage())
        } else {
            Ok(())
        }
    };
    macro_rules! rvtest {
        ($e:expr) => {
            if call {
                match $e {
                    Ok(v) => v,
                    Err(errno) => return Ok(rv_error(ctx, errno)),
                }
            } else {
                Default::default()
            }
        };
    }
    macro_rules! create_table {
        () => {{
            if !call {
                // pfr_get_tables() on the unopened device.
                return Err(ctx.errx(1, "pfr_get_tables: Bad file descriptor"));
            }
            warn_duplicate_tables(ctx, st, tname, anchor);
            let nadd: u32 = match k_add_table(st, anchor, tname, now) {
                Ok(n) => n,
                Err(errno) => {
                    let line = ctx.os.table_error(errno);
                    ctx.err.push_str(&line);
                    return Ok(-1);
                }
            };
            if nadd > 0 {
                ctx.xprintf(&format!("{nadd} table created"));
                if ctx.opts.noaction {
                    return Ok(0);
                }
            }
        }};
    }

    match command {
        "-F" => {
            no_args(ctx)?;
            let ndel: u32 = rvtest!(k_clr_tables(st, anchor));
            ctx.xprintf(&format!("{ndel} tables deleted"));
        }
        "-s" => {
            no_args(ctx)?;
            return show_tables(ctx, st, anchor);
        }
        "kill" => {
            no_args(ctx)?;
            let ndel: u32 = rvtest!(k_del_table(st, anchor, tname));
            ctx.xprintf(&format!("{ndel} table deleted"));
        }
        "flush" => {
            no_args(ctx)?;
            let ndel: u32 = rvtest!(k_clr_addrs(st, anchor, tname));
            ctx.xprintf(&format!("{ndel} addresses deleted"));
        }
        "add" => {
            let Some(mut b) = load_addr(ctx, args, file, false) else {
                return Ok(-1);
            };
            create_table!();
            let nadd: u32 = rvtest!(k_add_addrs(st, os, anchor, tname, &mut b, now));
            ctx.xprintf(&format!("{nadd}/{} addresses added", b.len()));
            print_feedback(ctx, &b);
        }
        "delete" => {
            let Some(mut b) = load_addr(ctx, args, file, false) else {
                return Ok(-1);
            };
            let ndel: u32 = rvtest!(k_del_addrs(st, anchor, tname, &mut b));
            ctx.xprintf(&format!("{ndel}/{} addresses deleted", b.len()));
            print_feedback(ctx, &b);
        }
        "replace" => {
            let Some(mut b) = load_addr(ctx, args, file, false) else {
                return Ok(-1);
            };
            create_table!();
            let r: Option<SetResult> =
                rvtest!(k_set_addrs(st, os, anchor, tname, &mut b, now).map(Some));
            let (nadd, ndel, nchange) = r
                .as_ref()
                .map_or((0, 0, 0), |r| (r.nadd, r.ndel, r.nchange));
            if nadd > 0 {
                ctx.xprintf(&format!("{nadd} addresses added"));
            }
            if ndel > 0 {
                ctx.xprintf(&format!("{ndel} addresses deleted"));
            }
            if nchange > 0 {
                ctx.xprintf(&format!("{nchange} addresses changed"));
            }
            if nadd == 0 && ndel == 0 && nchange == 0 {
                ctx.xprintf("no changes");
            }
            if ctx.opts.v1()
                && let Some(r) = r
            {
                b.extend(r.deleted);
            }
            print_feedback(ctx, &b);
        }
        "expire" => {
            if args.len() != 1 || file.is_some() {
                return Err(ctx.usage());
            }
            let lifetime = match addr::strtonum(&args[0], 0, i64::from(u32::MAX)) {
                Ok(v) => v,
                Err(e) => return Err(ctx.errx(1, &format!("expiry time: {e}"))),
            };
            let stats: Vec<PfrAddr> = rvtest!(get_astats(st, anchor, tname).map(|v| {
                v.into_iter()
                    .filter(|(_, tzero)| now - tzero > lifetime)
                    .map(|(a, _)| a)
                    .collect::<Vec<_>>()
            }));
            let mut b2 = stats;
            let ndel: u32 = rvtest!(k_del_addrs(st, anchor, tname, &mut b2));
            ctx.xprintf(&format!("{ndel}/{} addresses expired", b2.len()));
            print_feedback(ctx, &b2);
        }
        "reset" => {
            no_args(ctx)?;
            let all: Vec<(PfrAddr, bool)> = rvtest!(lookup_active(st, anchor, tname).map(|t| {
                t.sorted_entries()
                    .into_iter()
                    .map(|(n, e)| (PfrAddr::new(n, e.not), e.has_counts()))
                    .collect::<Vec<_>>()
            }));
            let mut b2: Vec<PfrAddr> = all.iter().filter(|(_, nz)| *nz).map(|(a, _)| *a).collect();
            let nzero: u32 = rvtest!(k_clr_astats(st, anchor, tname, &mut b2, now));
            ctx.xprintf(&format!("{nzero}/{} stats cleared", all.len()));
            print_feedback(ctx, &b2);
        }
        "show" => {
            no_args(ctx)?;
            let verbose = ctx.opts.v1();
            let lines: Vec<String> = rvtest!(lookup_active(st, anchor, tname).map(|t| {
                t.sorted_entries()
                    .into_iter()
                    .map(|(n, e)| {
                        let a = PfrAddr::new(n, e.not);
                        if verbose {
                            print_astats(os, &a, e, t.counters)
                        } else {
                            print_addrx(&a, None)
                        }
                    })
                    .collect::<Vec<_>>()
            }));
            for l in lines {
                ctx.out.push_str(&l);
            }
        }
        "test" => {
            let Some(mut b) = load_addr(ctx, args, file, true) else {
                return Ok(-1);
            };
            let orig = b.clone();
            let nmatch: u32 = rvtest!(k_tst_addrs(st, anchor, tname, &mut b, ctx.opts.v2()));
            ctx.xprintf(&format!("{nmatch}/{} addresses match", b.len()));
            if ctx.opts.v1() && !ctx.opts.v2() {
                for a in b.iter().filter(|a| a.fb == Fb::Match) {
                    ctx.out.push_str(&print_addrx(a, None));
                }
            }
            if ctx.opts.v2() {
                for (a2, a) in orig.iter().zip(b.iter()) {
                    ctx.out.push_str(&print_addrx(a2, Some(a)));
                }
            }
            if (nmatch as usize) < b.len() {
                return Ok(2);
            }
        }
        "zero" if !args.is_empty() || file.is_some() => {
            let Some(mut b) = load_addr(ctx, args, file, false) else {
                return Ok(-1);
            };
            let nzero: u32 = rvtest!(k_clr_astats(st, anchor, tname, &mut b, now));
            ctx.xprintf(&format!("{nzero}/{} addresses cleared", b.len()));
            print_feedback(ctx, &b);
        }
        "zero" => {
            let nzero: u32 = rvtest!(k_clr_tstats(st, anchor, tname, now));
            ctx.xprintf(&format!("{nzero} table/stats cleared"));
        }
        other => ctx.warnx(&format!("pfctl_table: unknown command '{other}'")),
    }
    Ok(0)
}

fn get_astats(st: &mut State, anchor: &str, name: &str) -> Result<Vec<(PfrAddr, i64)>, Errno> {
    let t = lookup_active(st, anchor, name)?;
    Ok(t.sorted_entries()
        .into_iter()
        .map(|(n, e)| (PfrAddr::new(n, e.not), e.tzero))
        .collect())
}

fn counter_line(label: &str, c: [u64; 2]) -> String {
    format!(
        "\t{:<12} [ Packets: {:<18} Bytes: {:<18} ]\n",
        label, c[0], c[1]
    )
}

/// `print_astats()`: FreeBSD has Block/Pass per direction, OpenBSD Block/Match/Pass;
/// without the `counters` flag only the `Cleared` line is printed.
fn print_astats(os: Os, a: &PfrAddr, e: &Entry, counters: bool) -> String {
    let mut s = print_addrx(a, None);
    s.push_str(&format!("\tCleared:     {}", ctime(e.tzero)));
    if !counters {
        return s;
    }
    match os {
        Os::FreeBsd => {
            s.push_str(&counter_line("In/Block:", e.in_block));
            s.push_str(&counter_line("In/Pass:", e.in_pass));
            s.push_str(&counter_line("Out/Block:", e.out_block));
            s.push_str(&counter_line("Out/Pass:", e.out_pass));
        }
        Os::OpenBsd => {
            s.push_str(&counter_line("In/Block:", e.in_block));
            s.push_str(&counter_line("In/Match:", e.in_match));
            s.push_str(&counter_line("In/Pass:", e.in_pass));
            s.push_str(&counter_line("Out/Block:", e.out_block));
            s.push_str(&counter_line("Out/Match:", e.out_match));
            s.push_str(&counter_line("Out/Pass:", e.out_pass));
        }
    }
    s
}

fn flags(st: &State, anchor: &str, name: &str, t: &Table) -> String {
    let refs = st.rule_refs(anchor, name) > 0;
    [
        (t.konst, 'c'),
        (t.persist, 'p'),
        (t.active, 'a'),
        (false, 'i'),
        (refs, 'r'),
        (false, 'h'),
        (t.counters, 'C'),
    ]
    .iter()
    .map(|(on, c)| if *on { *c } else { '-' })
    .collect()
}

fn print_table(os: Os, st: &State, anchor: &str, name: &str, t: &Table, verbose: bool) -> String {
    let mut s = String::new();
    if verbose {
        s.push_str(&flags(st, anchor, name, t));
        s.push('\t');
    }
    s.push_str(name);
    if !anchor.is_empty() {
        match os {
            Os::FreeBsd if verbose => s.push_str(&format!("\t{anchor}")),
            Os::FreeBsd => {}
            Os::OpenBsd => s.push_str(&format!("@{anchor}")),
        }
    }
    s.push('\n');
    s
}

fn print_tstats(os: Os, st: &State, anchor: &str, name: &str, t: &Table) -> String {
    let mut s = print_table(os, st, anchor, name, t, true);
    s.push_str(&format!("\tAddresses:   {}\n", t.entries.len()));
    s.push_str(&format!("\tCleared:     {}", ctime(t.tzero)));
    s.push_str(&format!(
        "\tReferences:  [ Anchors: {:<18} Rules: {:<18} ]\n",
        0,
        st.rule_refs(anchor, name)
    ));
    s.push_str(&format!(
        "\tEvaluations: [ NoMatch: {:<18} Match: {:<18} ]\n",
        t.evaluations[0], t.evaluations[1]
    ));
    let rows: Vec<(&str, [u64; 2])> = match os {
        Os::FreeBsd => vec![
            ("In/Block:", t.in_block),
            ("In/Pass:", t.in_pass),
            ("In/XPass:", t.in_xpass),
            ("Out/Block:", t.out_block),
            ("Out/Pass:", t.out_pass),
            ("Out/XPass:", t.out_xpass),
        ],
        Os::OpenBsd => vec![
            ("In/Block:", t.in_block),
            ("In/Match:", t.in_match),
            ("In/Pass:", t.in_pass),
            ("In/XPass:", t.in_xpass),
            ("Out/Block:", t.out_block),
            ("Out/Match:", t.out_match),
            ("Out/Pass:", t.out_pass),
            ("Out/XPass:", t.out_xpass),
        ],
    };
    for (l, c) in rows {
        s.push_str(&counter_line(l, c));
    }
    s
}

/// `-s Tables` of one anchor. OpenBSD with `-a 'X*'` lists the anchors below it too, as
/// pf.md describes [not found in pfctl_table.c 1.91 itself; kept from the reference].
fn show_tables(ctx: &mut Ctx, st: &mut State, anchor: &str) -> Res<i32> {
    let os = ctx.os;
    let v2 = ctx.opts.v2();
    if !st.anchor_exists(anchor) {
        // FreeBSD fetches -vv statistics through a call whose failure pfctl ignores.
        if os == Os::FreeBsd && v2 {
            return Ok(0);
        }
        return Ok(rv_error(ctx, Errno::Enoent));
    }
    let walk_all = os == Os::OpenBsd && ctx.opts.recurse;
    let mut rows: Vec<(String, String)> = Vec::new();
    for (path, a) in &st.anchors {
        let inside = path == anchor
            || (walk_all && (anchor.is_empty() || path.starts_with(&format!("{anchor}/"))));
        if !inside {
            continue;
        }
        for (name, t) in &a.tables {
            if t.active || ctx.opts.debug {
                rows.push((name.clone(), path.clone()));
            }
        }
    }
    rows.sort();
    for (name, path) in rows {
        let t = &st.anchors[&path].tables[&name];
        let text = if v2 {
            print_tstats(os, st, &path, &name, t)
        } else {
            print_table(os, st, &path, &name, t, ctx.opts.v1())
        };
        ctx.out.push_str(&text);
    }
    Ok(0)
}

/// `pfctl_show_tables()`: a failure ends pfctl with status 1.
pub fn pfctl_show_tables(ctx: &mut Ctx, st: &mut State, anchor: &str) -> Res<()> {
    if pfctl_table(ctx, st, &[], None, "-s", None, anchor)? != 0 {
        return Err(Exit(1));
    }
    Ok(())
}

/// `pfctl_do_clear_tables()`: a failure ends pfctl with status 1 unless ignored.
pub fn pfctl_clear_tables(ctx: &mut Ctx, st: &mut State, anchor: &str, ignfail: bool) -> Res<i32> {
    let rv = pfctl_table(ctx, st, &[], None, "-F", None, anchor)?;
    if rv == -1 && !ignfail {
        return Err(Exit(1));
    }
    Ok(rv)
}

/// Used by `-f` for `table <t> { … }` definitions: the addresses of the list.
pub fn parse_table_addrs(words: &[String]) -> Result<Vec<(Net, bool)>, String> {
    let mut out = Vec::new();
    for w in words {
        let r = w.trim_start_matches('!');
        let not = (w.len() - r.len()) % 2 == 1;
        let net = addr::host(r)?;
        out.push((net, not));
    }
    Ok(out)
}
