//! pfctl's `main()`: option parsing with the per-OS getopt string, the argument and
//! anchor checks, opening `/dev/pf`, then the actions in pfctl's fixed order:
//! `-d`, `-s`, `-z`, `-F`, `-k`, `-K`, `-T`, `-f`, `-e`, `-x`.

use crate::addr;
use crate::ctx::{Ctx, Exit, Res};
use crate::getopt::{Getopt, GetoptError};
use crate::os::Os;
use crate::rules::{self, RecurseWhat};
use crate::state::State;
use crate::states;
use crate::tables;

/// Runs one invocation against `st`; returns the exit status.
pub fn pfctl(ctx: &mut Ctx, st: &mut State, args: &[String]) -> i32 {
    match main_flow(ctx, st, args) {
        Ok(code) => code,
        Err(Exit(code)) => code,
    }
}

/// `pfctl_lookup_option()`: prefix match; FreeBSD takes the first, OpenBSD refuses an
/// ambiguous prefix.
fn lookup(ctx: &mut Ctx, word: &str, list: &'static [&'static str]) -> Res<Option<&'static str>> {
    if word.is_empty() {
        return Ok(None);
    }
    let mut found = None;
    for item in list {
        if item.starts_with(word) {
            match ctx.os {
                Os::FreeBsd => return Ok(Some(item)),
                Os::OpenBsd if found.is_some() => {
                    return Err(ctx.errx(1, &format!("{word} is ambigious")));
                }
                Os::OpenBsd => found = Some(*item),
            }
        }
    }
    Ok(found)
}

#[derive(Default)]
struct Cmdline {
    anchoropt: Option<String>,
    clearopt: Option<&'static str>,
    rulesopt: Option<String>,
    showopt: Option<&'static str>,
    debugopt: Option<&'static str>,
    ifaceopt: Option<String>,
    tableopt: Option<String>,
    tblcmdopt: Option<&'static str>,
    state_kill: Vec<String>,
    src_node_kill: Vec<String>,
    device: Option<String>,
    rdwr: bool,
    /// FreeBSD `-A`, `-N`, `-O`, `-R`: partial loads.
    partial_load: bool,
    clear_counters: bool,
    rdomain: u32,
    state_files: bool,
    /// OpenBSD `-R id`: only this rule (and its states) for `-s rules`/`-s states`.
    shownr: Option<i64>,
}

fn parse_options(ctx: &mut Ctx, args: &[String]) -> Res<(Cmdline, usize)> {
    let os = ctx.os;
    let mut c = Cmdline::default();
    let mut g = Getopt::new(args, os.optstring());
    while let Some(next) = g.next_opt() {
        let (opt, arg) = match next {
            Ok(x) => x,
            Err(GetoptError::Unknown(ch)) => {
                ctx.err.push_str(&os.getopt_unknown(ch));
                return Err(ctx.usage());
            }
            Err(GetoptError::MissingArgument(ch)) => {
                ctx.err.push_str(&os.getopt_missing(ch));
                return Err(ctx.usage());
            }
        };
        let arg = arg.unwrap_or_default();
        match (opt, os) {
            ('a', _) => c.anchoropt = Some(arg),
            ('d', _) => {
                ctx.opts.disable = true;
                c.rdwr = true;
            }
            ('D', _) => {
                if !arg.contains('=') {
                    ctx.warnx(&format!("could not parse macro definition {arg}"));
                }
            }
            ('e', _) => {
                ctx.opts.enable = true;
                c.rdwr = true;
            }
            ('q', _) => ctx.opts.quiet = true,
            ('F', _) => {
                c.clearopt = lookup(ctx, &arg, os.flush_modifiers())?;
                if c.clearopt.is_none() {
                    return Err(ctx.warnx_usage(&format!("Unknown flush modifier '{arg}'")));
                }
                c.rdwr = true;
            }
            ('i', _) => c.ifaceopt = Some(arg),
            ('k', _) => {
                if c.state_kill.len() >= 2 {
                    return Err(ctx.warnx_usage("can only specify -k twice"));
                }
                c.state_kill.push(arg);
                c.rdwr = true;
            }
            ('K', _) => {
                if c.src_node_kill.len() >= 2 {
                    return Err(ctx.warnx_usage("can only specify -K twice"));
                }
                c.src_node_kill.push(arg);
                c.rdwr = true;
            }
            ('m', Os::FreeBsd) => {}
            ('M', Os::FreeBsd) => ctx.opts.killmatch = true,
            ('n', _) => ctx.opts.noaction = true,
            ('N', Os::FreeBsd) | ('A', Os::FreeBsd) | ('O', Os::FreeBsd) | ('R', Os::FreeBsd) => {
                c.partial_load = true
            }
            ('N', Os::OpenBsd) => ctx.opts.nodns = true,
            ('S', Os::FreeBsd) => ctx.opts.nodns = true,
            ('r', _) => ctx.opts.usedns = true,
            ('R', Os::OpenBsd) => match addr::strtonum(&arg, -1, i64::MAX) {
                Ok(v) => c.shownr = (v >= 0).then_some(v),
                Err(e) => return Err(ctx.warnx_usage(&format!("invalid rule id: {e}"))),
            },
            ('f', _) => {
                c.rulesopt = Some(arg);
                c.rdwr = true;
            }
            ('g', _) => ctx.opts.debug = true,
            ('o', _) => {
                if lookup(ctx, &arg, &["none", "basic", "profile"])?.is_none() {
                    return Err(ctx.warnx_usage(&format!("Unknown optimization '{arg}'")));
                }
            }
            ('p', _) => c.device = Some(arg),
            ('P', _) => ctx.opts.numeric = true,
            ('s', _) => {
                c.showopt = lookup(ctx, &arg, os.show_modifiers())?;
                if c.showopt.is_none() {
                    return Err(ctx.warnx_usage(&format!("Unknown show modifier '{arg}'")));
                }
            }
            ('S', Os::OpenBsd) | ('L', Os::OpenBsd) => {
                c.state_files = true;
                c.rdwr = true;
            }
            ('t', _) => c.tableopt = Some(arg),
            ('T', _) => {
                c.tblcmdopt = lookup(ctx, &arg, os.table_commands())?;
                if c.tblcmdopt.is_none() {
                    return Err(ctx.warnx_usage(&format!("Unknown table command '{arg}'")));
                }
            }
            ('v', _) => ctx.opts.verbose = (ctx.opts.verbose + 1).min(2),
            ('V', Os::OpenBsd) => match addr::strtonum(&arg, 0, 255) {
                Ok(v) => c.rdomain = v as u32,
                Err(e) => return Err(ctx.warnx_usage(&format!("Invalid rdomain: {e}"))),
            },
            ('x', _) => {
                c.debugopt = lookup(ctx, &arg, os.debug_levels())?;
                if c.debugopt.is_none() {
                    return Err(ctx.warnx_usage(&format!("Unknown debug level '{arg}'")));
                }
                c.rdwr = true;
            }
            ('z', _) => {
                c.clear_counters = true;
                c.rdwr = true;
            }
            _ => return Err(ctx.usage()),
        }
    }
    Ok((c, g.optind()))
}

fn main_flow(ctx: &mut Ctx, st: &mut State, args: &[String]) -> Res<i32> {
    let os = ctx.os;
    if args.is_empty() {
        return Err(ctx.usage());
    }
    let (mut c, optind) = parse_options(ctx, args)?;

    if ctx.opts.nodns && ctx.opts.usedns {
        return Err(ctx.errx(1, "-N and -r are mutually exclusive"));
    }
    if c.tblcmdopt.is_none() != c.tableopt.is_none() {
        return Err(ctx.usage());
    }
    let mut table_args: Vec<String> = Vec::new();
    let mut tables_only = false;
    if let Some(cmd) = c.tblcmdopt {
        table_args = args[optind..].to_vec();
        if cmd.starts_with('l') {
            tables_only = true;
            c.tblcmdopt = None;
        } else {
            c.rdwr = !cmd.starts_with(['s', 't']);
        }
    } else if optind != args.len() {
        return Err(ctx.warnx_usage(&format!(
            "unknown command line argument: {} ...",
            args[optind]
        )));
    }

    let mut anchorname = String::new();
    let mut anchor_wildcard = false;
    if let Some(a) = c.anchoropt.clone() {
        if a.is_empty() {
            return Err(ctx.errx(1, "anchor name must not be empty"));
        }
        if !c.rdwr && c.showopt.is_none() && c.tblcmdopt.is_none() {
            return Err(ctx.warnx_usage("anchors apply to -f, -F, -s, and -T only"));
        }
        if c.rdwr && c.tblcmdopt.is_none() && (a.starts_with('_') || a.contains("/_")) {
            return Err(ctx.errx(
                1,
                "anchor names beginning with '_' cannot be modified from the command line",
            ));
        }
        let mut a = a;
        if a.ends_with('*') {
            if a.ends_with("/*") {
                a.truncate(a.len() - 2);
                anchor_wildcard = true;
            } else {
                a.truncate(a.len() - 1);
            }
            ctx.opts.recurse = true;
        }
        if a.len() >= 1024 {
            return Err(ctx.errx(1, &format!("anchor name '{a}' too long")));
        }
        anchorname = a;
    }
    // The kernel ignores leading slashes of anchor paths.
    let anchor = anchorname.trim_start_matches('/').to_string();

    let device = c.device.clone().unwrap_or_else(|| "/dev/pf".into());
    let dev_error = if device != "/dev/pf" {
        Some("No such file or directory")
    } else if ctx.deny {
        Some("Permission denied")
    } else {
        None
    };
    if !ctx.opts.noaction {
        if let Some(e) = dev_error {
            return Err(ctx.errx(1, &format!("{device}: {e}")));
        }
    } else {
        ctx.opts.dummy = dev_error.is_none();
        ctx.opts.enable = false;
        ctx.opts.disable = false;
        c.clearopt = None;
        c.showopt = None;
        c.debugopt = None;
    }
    if os == Os::FreeBsd {
        // FreeBSD opens the netlink handle through the device even with -n.
        if let Some(e) = dev_error {
            return Err(ctx.errx(1, &format!("Failed to open netlink: {e}")));
        }
    }
    if c.partial_load && c.rulesopt.is_some() {
        return Err(ctx.not_simulated("partial loading with -A, -N, -O or -R"));
    }

    let mut exit_val = 0;

    if ctx.opts.disable {
        if !st.enabled {
            return Err(ctx.errx(1, "pf not enabled"));
        }
        st.enabled = false;
        ctx.info("pf disabled");
    }

    if let Some(show) = c.showopt {
        match show {
            "Anchors" => rules::show_anchors(ctx, st, &anchor, &anchorname)?,
            "rules" => {
                let wildcard = os == Os::OpenBsd && anchor_wildcard;
                rules::show_rules(ctx, st, &anchor, &anchor, 0, wildcard, c.shownr)?;
            }
            "states" => states::show_states(ctx, st, c.ifaceopt.as_deref(), c.shownr),
            "Sources" => states::show_sources(ctx, st),
            // `print_running()` prints Enabled/Disabled; the exit status is `!running`.
            "Running" => {
                ctx.out.push_str(if st.enabled {
                    "Enabled\n"
                } else {
                    "Disabled\n"
                });
                exit_val = i32::from(!st.enabled);
            }
            "memory" => {
                for (name, _) in os.default_limits() {
                    let v = tables::limit(st, os, name).unwrap_or(0);
                    if v == u64::from(u32::MAX) {
                        ctx.out.push_str(&format!("{name:<13} unlimited\n"));
                    } else {
                        ctx.out.push_str(&format!("{name:<13} hard limit {v:>8}\n"));
                    }
                }
            }
            "Tables" => tables::pfctl_show_tables(ctx, st, &anchor)?,
            other => return Err(ctx.not_simulated(&format!("-s {other}"))),
        }
    }

    if let Some(clear) = c.clearopt {
        flush(ctx, st, clear, &anchor, c.ifaceopt.as_deref())?;
    }

    // pfctl would still issue the kill ioctls under -n (on a read-only descriptor, with
    // OS-dependent results); the simulator skips them.
    if !c.state_kill.is_empty() && !ctx.opts.noaction {
        states::kill_states(ctx, st, &c.state_kill, c.ifaceopt.as_deref(), c.rdomain)?;
    }
    if !c.src_node_kill.is_empty() && !ctx.opts.noaction {
        states::kill_src_nodes(ctx, st, &c.src_node_kill)?;
    }

    if let Some(cmd) = c.tblcmdopt {
        let rv = tables::pfctl_table(
            ctx,
            st,
            &table_args,
            c.tableopt.as_deref(),
            cmd,
            c.rulesopt.as_deref(),
            &anchor,
        )?;
        exit_val = rv;
        c.rulesopt = None;
    }

    if let Some(file) = c.rulesopt.clone() {
        rules::load_rules(ctx, st, &file, &anchor, tables_only)?;
    }

    if ctx.opts.enable {
        if st.enabled {
            return Err(ctx.errx(1, "pf already enabled"));
        }
        st.enabled = true;
        ctx.info("pf enabled");
    }

    if let Some(level) = c.debugopt {
        ctx.info(&format!("debug level set to '{level}'"));
    }
    if c.state_files {
        return Err(ctx.not_simulated("-S/-L state files"));
    }
    Ok(exit_val & 0xff)
}

fn flush(ctx: &mut Ctx, st: &mut State, clear: &str, anchor: &str, iface: Option<&str>) -> Res<()> {
    let os = ctx.os;
    let recurse = ctx.opts.recurse;
    match clear {
        "ethernet" => ctx.info("Ethernet rules cleared"),
        "rules" => {
            if recurse {
                rules::recurse(ctx, st, anchor, RecurseWhat::Rules)?;
            } else {
                rules::flush_rules(ctx, st, anchor);
            }
        }
        "nat" => ctx.info("nat cleared"),
        // No ALTQ in the simulated kernel: pfctl_clear_altq() returns quietly.
        "queue" => {}
        "states" => states::clear_states(ctx, st, iface)?,
        "Sources" => {
            st.src_nodes.clear();
            ctx.info("source tracking entries cleared");
        }
        "info" => clear_stats(ctx, iface),
        "osfp" => {}
        "Tables" => {
            if recurse {
                rules::recurse(ctx, st, anchor, RecurseWhat::Tables)?;
            } else {
                tables::pfctl_clear_tables(ctx, st, anchor, false)?;
            }
        }
        "Reset" => reset(ctx, st),
        "all" => {
            if iface.is_some() {
                return Err(ctx.warnx_usage("don't specify an interface with -Fall"));
            }
            if os == Os::FreeBsd {
                ctx.info("Ethernet rules cleared");
                rules::flush_rules(ctx, st, anchor);
                ctx.info("nat cleared");
            }
            if recurse {
                rules::recurse(ctx, st, anchor, RecurseWhat::Both)?;
            } else {
                tables::pfctl_clear_tables(ctx, st, anchor, false)?;
                rules::flush_rules(ctx, st, anchor);
            }
            if anchor.is_empty() {
                states::clear_states(ctx, st, iface)?;
                st.src_nodes.clear();
                ctx.info("source tracking entries cleared");
                clear_stats(ctx, iface);
                reset(ctx, st);
            }
        }
        other => return Err(ctx.not_simulated(&format!("-F {other}"))),
    }
    Ok(())
}

fn clear_stats(ctx: &mut Ctx, iface: Option<&str>) {
    match (ctx.os, iface) {
        (Os::OpenBsd, Some(i)) => ctx.info(&format!("pf: statistics cleared for interface {i}")),
        _ => ctx.info("pf: statistics cleared"),
    }
}

/// `pfctl_reset()`: limits back to their defaults, interface flags cleared.
fn reset(ctx: &mut Ctx, st: &mut State) {
    st.limits.clear();
    if !ctx.opts.noaction {
        ctx.info("pf: interface flags reset");
    }
}
