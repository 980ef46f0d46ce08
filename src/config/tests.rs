//! Loader tests over small in-memory trees: jail resolution, filter and action arguments,
//! the jail options, and how problems are reported.

use super::*;

/// A minimal filter and action most trees below use.
const BASE: [(&str, &str); 3] = [
    (
        "filter.d/demo.conf",
        "[INCLUDES]\nbefore = demo-common.conf\n\n[Definition]\nprefregex = ^%(_pfx)s<F-CONTENT>.+</F-CONTENT>$\nfailregex = ^bad login from <HOST>$\n            <extra-<mode>>\nextra-normal =\nextra-strict = ^probe from <HOST>$\nmode = normal\ndatepattern = {^LN-BEG}\njournalmatch = _SYSTEMD_UNIT=demo.service + _COMM=demo\n",
    ),
    (
        "filter.d/demo-common.conf",
        "[DEFAULT]\n_pfx = \\s*demo:\\s+\n",
    ),
    (
        "action.d/fw.conf",
        "[Definition]\nactionban = fw add <table> <ip> port <port>\nactionunban = fw del <table> <ip>\n\n[Init]\ntable = t-<name>\nport = any\n\n[Init?family=inet6]\ntable = t6-<name>\n",
    ),
];

fn tree(extra: &[(&'static str, &'static str)]) -> Config {
    let mut files: Vec<(&'static str, &'static str)> = BASE.to_vec();
    for (p, t) in extra {
        files.retain(|(q, _)| q != p);
        files.push((p, t));
    }
    load_source(&MemSource::new("cfg", &files))
}

fn jail<'a>(c: &'a Config, name: &str) -> &'a JailConfig {
    c.jails
        .iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no jail {name}; errors: {:?}", c.errors))
}

fn messages(ds: &[Diagnostic]) -> Vec<String> {
    ds.iter().map(|d| d.to_string()).collect()
}

#[test]
fn a_jail_resolves_filter_actions_and_timings() {
    let c = tree(&[(
        "jail.conf",
        "[DEFAULT]\nbantime = 1h\nfindtime = 10m\nmaxretry = 3\nfilter = %(__name__)s\nport = 0:65535\nbanaction = fw\naction = %(banaction)s[port=\"%(port)s\"]\n\n[demo]\nenabled = true\nport = ssh,2222\nlogpath = /var/log/demo.log\n          /var/log/demo-*.log tail\n",
    )]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    let j = jail(&c, "demo");
    assert!(j.enabled);
    assert_eq!(j.bantime, 3600);
    assert_eq!(j.findtime, 600);
    assert_eq!(j.maxretry, 3);
    assert_eq!(j.maxmatches, 3, "maxmatches defaults to maxretry");
    assert_eq!(j.port, "ssh,2222");
    assert_eq!(j.logpath, vec!["/var/log/demo.log", "/var/log/demo-*.log"]);
    assert_eq!(j.logpath_tail, vec![false, true]);
    assert_eq!(j.filter.name, "demo");
    assert_eq!(
        j.filter.prefregex.as_deref(),
        Some("^\\s*demo:\\s+<F-CONTENT>.+</F-CONTENT>$")
    );
    assert_eq!(j.filter.failregex, vec!["^bad login from <HOST>$"]);
    assert_eq!(j.filter.datepattern.as_deref(), Some("{^LN-BEG}"));
    assert_eq!(
        j.filter.journalmatch,
        vec![vec!["_SYSTEMD_UNIT=demo.service"], vec!["_COMM=demo"]]
    );
    assert_eq!(
        j.filter.failregex_spans[0].to_string(),
        "cfg/filter.d/demo.conf:6"
    );
    let a = &j.actions[0];
    assert_eq!((a.name.as_str(), a.kind.as_str()), ("fw", "fw"));
    assert_eq!(a.params["port"], "ssh,2222");
    // Tags stay symbolic; the jail's name fills <name> when rendered.
    assert_eq!(a.params["actionban"], "fw add <table> <ip> port <port>");
    assert_eq!(a.params["table"], "t-<name>");
    assert_eq!(a.params["table?family=inet6"], "t6-<name>");
    let r = render_static_tags(&a.params, Some("inet6")).unwrap();
    assert_eq!(r["actionban"], "fw add t6-demo <ip> port ssh,2222");
    assert_eq!(j.span.to_string(), "cfg/jail.conf:10");
}

#[test]
fn filter_arguments_select_a_mode() {
    let c = tree(&[(
        "jail.conf",
        "[a]\nfilter = demo[mode=strict]\n[b]\nfilter = demo\n",
    )]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    assert_eq!(
        jail(&c, "a").filter.failregex,
        vec!["^bad login from <HOST>$", "^probe from <HOST>$"]
    );
    assert_eq!(jail(&c, "a").filter.args["mode"], "strict");
    assert_eq!(jail(&c, "b").filter.failregex.len(), 1);
}

#[test]
fn jail_can_extend_the_filters_regexes_with_known() {
    let c = tree(&[(
        "jail.conf",
        "[demo]\nfilter = demo\nfailregex = %(known/failregex)s\n            ^also from <HOST>$\nignoreregex = ^ok\nmaxlines = 2\nprefregex =\n",
    )]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    let f = &jail(&c, "demo").filter;
    assert_eq!(
        f.failregex,
        vec!["^bad login from <HOST>$", "^also from <HOST>$"]
    );
    assert_eq!(f.ignoreregex, vec!["^ok"]);
    assert_eq!(f.maxlines, 2);
    // An empty prefregex in the jail switches the filter's off, as in fail2ban.
    assert_eq!(f.prefregex, None);
}

#[test]
fn local_files_extend_filters_with_known_values() {
    let c = tree(&[
        ("jail.conf", "[demo]\nfilter = demo\n"),
        (
            "filter.d/demo.local",
            "[Definition]\nfailregex = %(known/failregex)s\n            ^local from <HOST>$\n",
        ),
    ]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    assert_eq!(
        jail(&c, "demo").filter.failregex,
        vec!["^bad login from <HOST>$", "^local from <HOST>$"]
    );
}

#[test]
fn inline_regexes_without_a_filter() {
    let c = tree(&[(
        "jail.conf",
        "[x]\nenabled = true\nfilter =\nfailregex = ^x <HOST>$\nlogpath = /l\naction = fw\n",
    )]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    let f = &jail(&c, "x").filter;
    assert_eq!(f.name, "(inline)");
    assert_eq!(f.file, None);
    assert_eq!(f.failregex, vec!["^x <HOST>$"]);
}

#[test]
fn several_actions_with_quoted_arguments_and_actname() {
    let c = tree(&[(
        "jail.conf",
        "[demo]\nfilter = demo\naction = fw[port=\"a, b\", table=\"x\"]\n         fw[actname=fw2, port=c]\n         fw[name=demo-extra]\n",
    )]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    let acts = &jail(&c, "demo").actions;
    let names: Vec<&str> = acts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["fw", "fw2", "fw-extra"]);
    assert_eq!(acts[0].params["port"], "a, b");
    assert_eq!(acts[0].params["table"], "x");
    assert_eq!(acts[0].args.len(), 2);
    assert_eq!(acts[1].params["port"], "c");
    assert_eq!(acts[2].params["name"], "demo-extra");
    assert_eq!(acts[1].span.line, 4);
    assert_eq!(acts[2].span.line, 5);
}

#[test]
fn jail_options_are_parsed() {
    let c = tree(&[(
        "jail.conf",
        "[DEFAULT]\nfilter = demo\n[demo]\nbackend = systemd[journalpath=/run/log/journal]\nbantime = -1\nignoreip = 127.0.0.1/8, ::1\n  192.0.2.0/24\nignoreself = false\nignorecommand = /bin/check <ip>\nusedns = no\nlogencoding = utf-8\nlogtimezone = UTC\nmaxmatches = 7\nbantime.increment = true\nbantime.factor = 2\nbantime.multipliers = 1 5 30\nbantime.maxtime = 1w\nbantime.rndtime = 5m\nbantime.overalljails = yes\nbantime.formula = ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor\nkill_states = all\n",
    )]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    let j = jail(&c, "demo");
    assert_eq!(
        j.backend,
        LogBackend::Systemd([("journalpath".to_string(), "/run/log/journal".to_string())].into())
    );
    assert_eq!(j.bantime, -1);
    assert_eq!(j.ignoreip, vec!["127.0.0.1/8", "::1", "192.0.2.0/24"]);
    assert!(!j.ignoreself);
    assert_eq!(j.ignorecommand.as_deref(), Some("/bin/check <ip>"));
    assert_eq!(j.usedns, UseDns::No);
    assert_eq!(j.logencoding, "utf-8");
    assert_eq!(j.logtimezone.as_deref(), Some("UTC"));
    assert_eq!(j.maxmatches, 7);
    let e = &j.escalation;
    assert!(e.increment && e.overalljails);
    assert_eq!(e.factor, 2.0);
    assert_eq!(e.multipliers, vec![1.0, 5.0, 30.0]);
    assert_eq!(e.maxtime, Some(604_800));
    assert_eq!(e.rndtime, Some(300));
    assert_eq!(j.options["kill_states"], "all");
    // The systemd backend reads the journal: the filter's logtype follows.
    assert_eq!(j.filter.options["logtype"], "journal");
}

#[test]
fn backends_map_to_the_model() {
    for (text, want) in [
        ("auto", LogBackend::Auto),
        ("polling", LogBackend::Polling),
        ("pyinotify", LogBackend::Notify),
        ("inotify", LogBackend::Notify),
        ("kqueue", LogBackend::Notify),
        ("gamin", LogBackend::Auto),
        ("pflog", LogBackend::Pflog),
        ("ledger", LogBackend::Ledger),
        ("systemd", LogBackend::Systemd(Default::default())),
    ] {
        let jail_conf: &'static str =
            Box::leak(format!("[demo]\nfilter = demo\nbackend = {text}\n").into_boxed_str());
        let c = tree(&[("jail.conf", jail_conf)]);
        assert!(c.errors.is_empty(), "{text}: {:?}", messages(&c.errors));
        assert_eq!(jail(&c, "demo").backend, want, "{text}");
    }
    let c = tree(&[(
        "jail.conf",
        "[demo]\nenabled = true\nfilter = demo\nbackend = carrier-pigeon\n",
    )]);
    assert!(messages(&c.errors)[0].contains("unknown backend `carrier-pigeon`"));
}

#[test]
fn broken_jails_are_left_out_and_the_others_load() {
    let c = tree(&[(
        "jail.conf",
        "[DEFAULT]\nenabled = true\nfilter = demo\n[good]\n[nofilter]\nfilter = nosuch\n[badtime]\nfindtime = soon\n[noaction]\naction = nosuch\n[interp]\nport = %(undefined)s\n[python]\naction = smtp.py[dest=root]\n[badint]\nmaxretry = five\n[formula]\nbantime.formula = ban.Time * math.exp(ban.Count)\n",
    )]);
    let names: Vec<&str> = c.jails.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, vec!["good"]);
    let m = messages(&c.errors);
    let want = [
        "cfg/jail.conf:6: [nofilter] filter `nosuch` not found",
        "cfg/jail.conf:8: [badtime] findtime: `soon`: expected a number",
        "cfg/jail.conf:10: [noaction] action `nosuch` not found",
        "cfg/jail.conf:12: [interp] `port` refers to %(undefined)s",
        "cfg/jail.conf:14: [python] action `smtp.py` is a Python action",
        "cfg/jail.conf:16: [badint] maxretry `five` is not a whole number",
        "cfg/jail.conf:18: [formula] bantime.formula is a Python expression",
    ];
    for w in want {
        assert!(m.iter().any(|e| e.starts_with(w)), "want {w} in {m:#?}");
    }
    assert_eq!(m.len(), want.len(), "{m:#?}");
}

#[test]
fn problems_of_disabled_jails_are_warnings() {
    let c = tree(&[(
        "jail.conf",
        "[on]\nenabled = true\nfilter = demo\n[off]\nfilter = nosuch\n",
    )]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    assert_eq!(c.jails.len(), 1);
    let w = messages(&c.warnings);
    assert!(
        w.iter().any(
            |m| m.starts_with("cfg/jail.conf:5: [off] filter `nosuch` not found")
                && m.ends_with("(the jail is disabled)")
        ),
        "{w:?}"
    );
}

#[test]
fn recursion_in_tags_is_an_error() {
    let c = tree(&[
        ("jail.conf", "[demo]\nenabled = true\nfilter = loop\n"),
        (
            "filter.d/loop.conf",
            "[Definition]\nfailregex = <a>\na = <b>x\nb = <a>y\n",
        ),
    ]);
    let m = messages(&c.errors);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("cfg/filter.d/loop.conf:2: [demo] "),
        "{m:?}"
    );
    assert!(m[0].contains("more than 25 times"), "{m:?}");
}

#[test]
fn syntax_errors_in_a_filter_disable_its_jails() {
    let c = tree(&[
        (
            "jail.conf",
            "[demo]\nenabled = true\nfilter = demo\n[other]\nenabled = true\nfilter = demo[mode=strict]\n",
        ),
        ("filter.d/demo.local", "[Definition]\n  \nnot an option\n"),
    ]);
    let m = messages(&c.errors);
    assert!(
        m[0].starts_with("cfg/filter.d/demo.local:3: `not an option`"),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|e| e.contains("[demo] filter `demo` has lines"))
    );
    assert!(
        m.iter()
            .any(|e| e.contains("[other] filter `demo` has lines"))
    );
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(c.jails.is_empty());
}

#[test]
fn include_cycles_are_reported_not_followed() {
    let c = tree(&[
        ("jail.conf", "[demo]\nfilter = cyc\n"),
        (
            "filter.d/cyc.conf",
            "[INCLUDES]\nbefore = cyc2.conf\n[Definition]\nfailregex = ^x <HOST>$\n",
        ),
        ("filter.d/cyc2.conf", "[INCLUDES]\nbefore = cyc.conf\n"),
    ]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    assert_eq!(jail(&c, "demo").filter.failregex, vec!["^x <HOST>$"]);
    let w = messages(&c.warnings);
    assert!(
        w.iter().any(|m| m.starts_with(
            "cfg/filter.d/cyc2.conf:2: include of cfg/filter.d/cyc.conf is recursive"
        )),
        "{w:?}"
    );
}

#[test]
fn no_jail_file_is_an_error() {
    let c = load_source(&MemSource::new("cfg", &[("warden.conf", "[Definition]\n")]));
    assert_eq!(
        messages(&c.errors),
        vec!["cfg/jail.conf: no jail.conf or jail.local: no jail is defined"]
    );
}

#[test]
fn daemon_settings_from_warden_conf() {
    let c = tree(&[
        ("jail.conf", "[DEFAULT]\n"),
        (
            "warden.conf",
            "[Definition]\nloglevel = debug\nlogtarget = SYSLOG\nsocket = /tmp/w.sock\npidfile = /tmp/w.pid\ndbfile = /tmp/w.db\ndbpurgeage = 2d\ndbmaxmatches = 3\n",
        ),
        ("warden.local", "[Definition]\ndbmaxmatches = 4\n"),
    ]);
    assert!(c.errors.is_empty() && c.warnings.is_empty());
    let d = &c.daemon;
    assert_eq!(d.loglevel, "DEBUG");
    assert_eq!(d.logtarget, "SYSLOG");
    assert_eq!(d.socket, std::path::PathBuf::from("/tmp/w.sock"));
    assert_eq!(d.dbfile, std::path::PathBuf::from("/tmp/w.db"));
    assert_eq!(d.dbpurgeage, 172_800);
    assert_eq!(d.dbmaxmatches, 4);
}

#[test]
fn fail2ban_conf_is_read_without_taking_fail2bans_files() {
    let c = tree(&[
        ("jail.conf", "[DEFAULT]\n"),
        (
            "fail2ban.conf",
            "[Definition]\nloglevel = NOTICE\nlogtarget = /var/log/fail2ban.log\nsocket = /var/run/fail2ban/fail2ban.sock\ndbfile = /var/lib/fail2ban/fail2ban.sqlite3\ndbpurgeage = 1w\n",
        ),
    ]);
    let d = &c.daemon;
    assert_eq!(d.loglevel, "NOTICE");
    assert_eq!(d.dbpurgeage, 604_800);
    assert_eq!(d.socket, std::path::PathBuf::from(DEFAULT_SOCKET));
    assert_eq!(d.dbfile, std::path::PathBuf::from(DEFAULT_DBFILE));
    assert_eq!(d.logtarget, "STDERR");
    let w = messages(&c.warnings);
    assert!(w[0].contains("kept warden's own files"), "{w:?}");
    assert!(
        w[0].contains("dbfile /var/lib/fail2ban/fail2ban.sqlite3"),
        "{w:?}"
    );
    // With warden.conf present, fail2ban.conf is not read at all.
    let c = tree(&[
        ("jail.conf", "[DEFAULT]\n"),
        ("warden.conf", "[Definition]\nloglevel = ERROR\n"),
        ("fail2ban.conf", "[Definition]\nloglevel = NOTICE\n"),
    ]);
    assert_eq!(c.daemon.loglevel, "ERROR");
}

#[test]
fn bad_daemon_settings_are_errors() {
    let c = tree(&[
        ("jail.conf", "[DEFAULT]\n"),
        (
            "warden.conf",
            "[Definition]\nloglevel = LOUD\ndbpurgeage = forever\n",
        ),
    ]);
    let m = messages(&c.errors);
    assert!(
        m[0].starts_with("cfg/warden.conf:2: loglevel `LOUD`"),
        "{m:?}"
    );
    assert!(m[1].starts_with("cfg/warden.conf:3: dbpurgeage"), "{m:?}");
}

#[test]
fn the_embedded_configuration_loads_cleanly() {
    let c = load_embedded();
    assert_eq!(c.dir, std::path::PathBuf::from("(embedded)"));
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    assert!(c.warnings.is_empty(), "{:?}", messages(&c.warnings));
    let enabled: Vec<&str> = c.enabled_jails().map(|j| j.name.as_str()).collect();
    assert_eq!(enabled, vec!["sshd"]);
    let recidive = jail(&c, "recidive");
    assert_eq!(recidive.backend, LogBackend::Ledger);
    assert_eq!(recidive.actions[0].params["port"], "0:65535");
    assert_eq!(recidive.actions[0].params["kill_states"], "all");
    let sshd = jail(&c, "sshd");
    assert_eq!(sshd.actions[0].kind, "auto");
    assert_eq!(sshd.actions[0].params["native"], "auto");
    assert!(sshd.filter.failregex.len() >= 5);
    for native in ["pf", "nftables", "log"] {
        let jail_local: &'static str =
            Box::leak(format!("[sshd]\nbanaction = {native}\n").into_boxed_str());
        let mut files: Vec<(&'static str, &'static str)> = embedded_files().to_vec();
        files.push(("jail.local", jail_local));
        let c = load_source(&MemSource::new("x", &files));
        assert!(c.errors.is_empty(), "{native}: {:?}", messages(&c.errors));
        let a = &jail(&c, "sshd").actions[0];
        assert_eq!(a.params["native"], native);
        assert_eq!(a.params["port"], "ssh");
    }
}

#[test]
fn load_filter_by_name_and_by_path() {
    let loc = ConfigLocation::Embedded;
    let f = load_filter(&loc, "sshd[mode=aggressive]").unwrap();
    let normal = load_filter(&loc, "sshd").unwrap();
    assert!(f.failregex.len() > normal.failregex.len());
    assert_eq!(f.args["mode"], "aggressive");
    assert_eq!(
        f.file.as_deref(),
        Some(std::path::Path::new("(embedded)/filter.d/sshd.conf"))
    );
    let e = load_filter(&loc, "nosuch").unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "(command line): filter `nosuch` not found in (embedded)/filter.d"
    );
    let e = load_filter(&loc, "sshd[mode").unwrap_err();
    assert!(e[0].message.contains("expected `]`"), "{e:?}");

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("inc.conf"), "[DEFAULT]\n_x = from <HOST>\n").unwrap();
    let file = tmp.path().join("mine.conf");
    std::fs::write(
        &file,
        "[INCLUDES]\nbefore = inc.conf\n[Definition]\nfailregex = ^fail %(_x)s <mode>$\nmode = one\n",
    )
    .unwrap();
    let spec = format!("{}[mode=two]", file.display());
    let f = load_filter(&loc, &spec).unwrap();
    assert_eq!(f.failregex, vec!["^fail from <HOST> two$"]);
    let missing = tmp.path().join("nope.conf");
    let e = load_filter(&loc, &missing.display().to_string()).unwrap_err();
    assert!(e[0].message.contains("not found"), "{e:?}");
}

#[test]
fn load_reports_an_unreadable_directory() {
    let e = load(std::path::Path::new("/nonexistent/warden")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read configuration directory /nonexistent/warden")
    );
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let e = load(tmp.path()).unwrap_err();
    assert!(e.to_string().ends_with("is not a directory"), "{e}");
}

#[test]
fn known_init_values_as_tags() {
    let c = tree(&[
        (
            "jail.conf",
            "[a]\nfilter = kn[word=jail]\n[b]\nfilter = kn\n",
        ),
        (
            "filter.d/kn.conf",
            "[Definition]\nfailregex = ^<known/word> then <word> from <HOST>$\n[Init]\nword = init\n",
        ),
    ]);
    assert!(c.errors.is_empty(), "{:?}", messages(&c.errors));
    assert_eq!(
        jail(&c, "a").filter.failregex,
        vec!["^init then jail from <HOST>$"]
    );
    assert_eq!(
        jail(&c, "b").filter.failregex,
        vec!["^init then init from <HOST>$"]
    );
}

#[test]
fn load_filter_given_a_file_of_the_configs_filter_d_applies_its_drop_ins() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = tmp.path().join("filter.d");
    std::fs::create_dir_all(&fd).unwrap();
    std::fs::write(
        fd.join("x.conf"),
        "[Definition]\nfailregex = ^conf <HOST>$\n",
    )
    .unwrap();
    std::fs::write(
        fd.join("x.local"),
        "[Definition]\nfailregex = ^local <HOST>$\n",
    )
    .unwrap();
    std::fs::create_dir_all(fd.join("x.d")).unwrap();
    std::fs::write(
        fd.join("x.d/z.local"),
        "[Definition]\nfailregex = ^drop-in <HOST>$\n",
    )
    .unwrap();
    let loc = ConfigLocation::Dir(tmp.path().to_path_buf());
    let spec = fd.join("x.conf").display().to_string();
    assert_eq!(
        load_filter(&loc, &spec).unwrap().failregex,
        vec!["^drop-in <HOST>$"]
    );
    assert_eq!(
        load_filter(&loc, "x").unwrap().failregex,
        vec!["^drop-in <HOST>$"]
    );
    // The same file outside a configuration is read with its .local twin (as
    // fail2ban-regex does) but without drop-ins.
    let outside = ConfigLocation::Embedded;
    assert_eq!(
        load_filter(&outside, &spec).unwrap().failregex,
        vec!["^local <HOST>$"]
    );
}
