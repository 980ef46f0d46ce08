#!/usr/bin/env python3
"""Runs the filter benchmark cases and reports them (called by run.sh).

Every tool runs pinned to one core (`taskset -c CORE`) under `/usr/bin/time`, which gives
user+system CPU time and peak RSS; wall time is taken around the process. Lines per second
are the log's lines over the whole run's wall time (start-up included, as a user sees it).

Cases:
  - fail2ban's own filter files (sshd, sshd[mode=aggressive], nginx-botsearch) through
    `warden test LOG FILTER` and `fail2ban-regex LOG FILTER`; their matched-line counts
    must be equal, else the run fails.
  - fail2ban-rs's built-in sshd and nginx-botsearch jails (`fail2ban-rs gen-config`)
    through `fail2ban-rs dry-run`, and the same patterns written as a warden filter file
    through `warden test --usedns no`.

With --warden-pgo, every warden run is made with both builds: the plain release build and
the profile-guided one (bench/pgo.sh), and the table gives both ratios.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tomllib

BEGIN = "<!-- results:begin -->"
# The profile-guided build's tool name in the results.
PGO = "warden (PGO)"
END = "<!-- results:end -->"

LINES_RE = re.compile(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", re.M)


class Run:
    def __init__(self, wall, cpu, rss_kb, out):
        self.wall, self.cpu, self.rss_kb, self.out = wall, cpu, rss_kb, out


def measure(args, cmd, repeat, env=None):
    """Runs `cmd` `repeat` times on the chosen core; returns the fastest run (wall time)."""
    runs = []
    for _ in range(repeat):
        with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
            full = ["/usr/bin/time", "-f", "%U %S %M", "-o", tf.name, "taskset", "-c", str(args.core)] + cmd
            t0 = time.perf_counter()
            p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            wall = time.perf_counter() - t0
            stats = tf.read().strip().splitlines()
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.decode(errors='replace')[-2000:]}")
        user, system, rss = stats[-1].split()
        runs.append(Run(wall, float(user) + float(system), int(rss), p.stdout.decode(errors="replace")))
    return min(runs, key=lambda r: r.wall)


def lines_summary(out, what):
    m = LINES_RE.search(out)
    if not m:
        sys.exit(f"no 'Lines:' summary in the output of {what}")
    total, ignored, matched, missed = map(int, m.groups())
    return {"lines": total, "ignored": ignored, "matched": matched, "missed": missed}


def rs_summary(out):
    lines = re.search(r"^\s*Lines:\s+(\d+)", out, re.M)
    matches = re.search(r"^\s*Matches:\s+(\d+)", out, re.M)
    if not lines or not matches:
        sys.exit("no Lines/Matches in fail2ban-rs's dry-run output")
    return {"lines": int(lines.group(1)), "matched": int(matches.group(1))}


def toml_str(s):
    # JSON string escapes are valid in TOML basic strings.
    return json.dumps(s)


def rs_jail(args, service, log, workdir):
    """fail2ban-rs's built-in jail for `service`, pointed at `log`: the config file and
    the jail's patterns and date format."""
    gen = subprocess.run([args.fail2ban_rs, "gen-config", service], check=True, capture_output=True, text=True).stdout
    jail = tomllib.loads(gen)["jail"][service]
    conf = os.path.join(workdir, f"fail2ban-rs-{service}.toml")
    with open(conf, "w") as f:
        f.write("[global]\n")
        f.write(f"state_dir = {toml_str(os.path.join(workdir, 'fail2ban-rs-state'))}\n")
        f.write(f"socket_path = {toml_str(os.path.join(workdir, 'fail2ban-rs.sock'))}\n\n")
        f.write(f"[jail.{service}]\n")
        f.write(f"log_path = {toml_str(log)}\n")
        f.write(f"date_format = {toml_str(jail['date_format'])}\n")
        f.write("filter = [\n" + "".join(f"    {toml_str(p)},\n" for p in jail["filter"]) + "]\n")
        # No address of this machine is left out (as in warden test and fail2ban-regex).
        f.write("ignoreip = []\nignoreself = false\n")
    return conf, jail["filter"], jail["date_format"]


# fail2ban-rs's date formats as datepatterns: its `common` (CLF, `[15/Jan/2024:10:30:00
# +0000]`) is what fail2ban's own web-server filters look for; syslog and ISO 8601 dates
# are found by the default templates, as fail2ban's sshd filter finds them.
DATEPATTERNS = {"common": r"^[^\[]*\[({DATE})", "epoch": "EPOCH"}


def warden_filter(path, patterns, date_format):
    """A fail2ban-format filter file with `patterns` as its failregexes and the datepattern
    for fail2ban-rs's `date_format`; returns the datepattern (None: the defaults)."""
    for p in patterns:
        if " ;" in p or "\n" in p:
            sys.exit(f"pattern cannot be written to a filter file: {p!r}")
    datepattern = DATEPATTERNS.get(date_format)
    with open(path, "w") as f:
        f.write("[Definition]\nfailregex = " + "\n            ".join(p.replace("%", "%%") for p in patterns) + "\n")
        if datepattern:
            f.write(f"datepattern = {datepattern.replace('%', '%%')}\n")
    return datepattern


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": os.getloadavg(),
    }


def fmt_rate(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def ratio(x):
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def render(res):
    """The Markdown report of a run's results (as saved in results.json)."""
    rows = res["rows"]
    by = {(r["case"], r["tool"]): r for r in rows}
    pgo = any(r["tool"] == PGO for r in rows)
    head = "| Case | Tool | Matched lines | Lines/s (wall) | Wall s | CPU s | Peak RSS MB | warden ÷ other, wall (CPU) |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if pgo:
        head += " warden PGO ÷ other, wall (CPU) |"
        rule += "---:|"
    table = [head, rule]

    def cell(r, tool):
        w = by.get((r["case"], tool))
        if w is None or r["tool"] in ("warden", PGO):
            return ""
        return f"{ratio(r['wall'] / w['wall'])} ({ratio(r['cpu'] / w['cpu'])})"

    for r in rows:
        line = (f"| {r['case']} | {r['tool']} | {r['matched']:,} | {fmt_rate(r['rate'])} | {r['wall']:.2f} | "
                f"{r['cpu']:.2f} | {r['rss_mb']:.1f} | {cell(r, 'warden')} |")
        if pgo:
            line += f" {cell(r, PGO)} |"
        table.append(line)
    notes = []
    for service, info in res["fail2ban_rs"].items():
        case = f"fail2ban-rs {service} patterns"
        rr, wr = by[(case, "fail2ban-rs")], by[(case, "warden")]
        full = by[(service, "warden")]
        n = info["patterns"]
        agree = "the same" if rr["matched"] == wr["matched"] else "a different"
        notes.append(
            f"- fail2ban-rs {service}: its {n} built-in pattern{'s' if n != 1 else ''} give{'' if n != 1 else 's'} "
            f"{rr['matched']:,} matched lines; warden with the same pattern{'s' if n != 1 else ''} gives {agree} count "
            f"({wr['matched']:,}), run as `{wr['what']}`. fail2ban's {service} filter matches {full['matched']:,} lines of the "
            f"same log (different rules, see above). warden running fail2ban's whole {service} filter takes "
            f"{full['wall'] / rr['wall']:.1f}x the wall time of fail2ban-rs running its own.")
    before, after = res["machine_before"], res["machine_after"]
    builds = ("warden (each build; half before, half after fail2ban-regex's)" if pgo
              else "warden (half before, half after fail2ban-regex's)")
    header = [
        f"Run {res['stamp']}: {before['cpu']}, {before['cpus']} CPUs, Linux {before['kernel']}, Python {before['python']}; "
        f"load average {before['load'][0]:.2f} before, {after['load'][0]:.2f} after; every tool pinned to core {res['core']}; "
        f"best of {res['repeat']} runs for {builds} and fail2ban-rs, "
        f"{res['f2b_repeat']} for fail2ban-regex.",
        f"Versions: {res['versions']['warden']}, fail2ban-regex from Debian's fail2ban 1.0.2, {res['versions']['fail2ban-rs']}.",
        f"Logs: {res['logs'][0]} and {res['logs'][1]} from gen_logs.py.",
    ]
    if pgo:
        header.append(f"Builds: `warden` is the release build (`cargo build --release`), `{PGO}` the same code "
                      "built by bench/pgo.sh with the profile of its training runs (logs of another seed).")
    return "\n".join(header) + "\n\n" + "\n".join(table) + "\n\n" + "\n".join(notes) + "\n"


def write_readme(path, text):
    with open(path) as f:
        doc = f.read()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        with open(path, "w") as f:
            f.write(head + BEGIN + "\n" + text + END + tail)
        print(f"(table written to {path})")


def main():
    ap = argparse.ArgumentParser()
    if len(sys.argv) >= 3 and sys.argv[1] == "--render":
        # Re-render a saved run: compare.py --render results.json [README.md]
        with open(sys.argv[2]) as f:
            text = render(json.load(f))
        print(text)
        if len(sys.argv) > 3:
            write_readme(sys.argv[3], text)
        return
    ap.add_argument("--warden", required=True)
    ap.add_argument("--warden-pgo", help="the profile-guided build, measured alongside")
    ap.add_argument("--fail2ban", required=True, help="root of the unpacked fail2ban package")
    ap.add_argument("--fail2ban-rs", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--auth-log", required=True)
    ap.add_argument("--nginx-log", required=True)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--f2b-repeat", type=int, default=1)
    ap.add_argument("--readme")
    args = ap.parse_args()

    filter_d = os.path.join(args.fail2ban, "etc/fail2ban/filter.d")
    f2b_env = dict(os.environ, PYTHONPATH=os.path.join(args.fail2ban, "usr/lib/python3/dist-packages"))
    f2b_regex = ["python3", os.path.join(args.fail2ban, "usr/bin/fail2ban-regex")]
    rs_version = subprocess.run([args.fail2ban_rs, "--version"], capture_output=True, text=True).stdout.strip()
    warden_version = subprocess.run([args.warden, "--version"], capture_output=True, text=True).stdout.strip()
    git = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    before = machine()

    rows = []  # dicts: case, tool, what, counts, run, nlines
    # The warden builds measured: (tool name in the results, binary).
    builds = [("warden", args.warden)] + ([(PGO, args.warden_pgo)] if args.warden_pgo else [])
    failures = []

    def row(case, tool, what, run, counts):
        r = {
            "case": case,
            "tool": tool,
            "what": what,
            "matched": counts["matched"],
            "lines": counts["lines"],
            "wall": run.wall,
            "cpu": run.cpu,
            "rss_mb": run.rss_kb / 1024,
            "rate": counts["lines"] / run.wall,
            "cpu_rate": counts["lines"] / run.cpu if run.cpu > 0 else float("inf"),
        }
        rows.append(r)
        print(f"  {tool:<15} {r['matched']:>8} matched  {r['wall']:7.2f} s wall  {r['cpu']:7.2f} s CPU  "
              f"{fmt_rate(r['rate'])} lines/s  {r['rss_mb']:6.1f} MB", flush=True)
        return r

    # fail2ban's filters: warden test and fail2ban-regex on the same file.
    for case, log, flt in [
        ("sshd", args.auth_log, "sshd.conf"),
        ("sshd[mode=aggressive]", args.auth_log, "sshd.conf[mode=aggressive]"),
        ("nginx-botsearch", args.nginx_log, "nginx-botsearch.conf"),
    ]:
        spec = os.path.join(filter_d, flt)
        print(f"== {case} on {os.path.basename(log)}", flush=True)
        # warden's runs bracket fail2ban-regex's (half before, half after), so that both
        # tools sample the same stretch of the machine's time: a slow spell of a few
        # seconds cannot catch all of warden's sub-second runs while fail2ban-regex's
        # minute-long run averages it away.
        wcmd = {tool: [binary, "test", "--no-progress", log, spec] for tool, binary in builds}
        w = {tool: measure(args, wcmd[tool], (args.repeat + 1) // 2) for tool, _ in builds}
        f = measure(args, f2b_regex + [log, spec], args.f2b_repeat, env=f2b_env)
        if args.repeat > 1:
            for tool, _ in builds:
                w[tool] = min(w[tool], measure(args, wcmd[tool], args.repeat // 2), key=lambda r: r.wall)
        wrs = [row(case, tool, f"warden test LOG filter.d/{flt}", w[tool], lines_summary(w[tool].out, "warden test"))
               for tool, _ in builds]
        fr = row(case, "fail2ban-regex", f"fail2ban-regex LOG filter.d/{flt}", f, lines_summary(f.out, "fail2ban-regex"))
        for wr in wrs:
            if wr["matched"] != fr["matched"] or wr["lines"] != fr["lines"]:
                failures.append(f"{case}: {wr['tool']} matched {wr['matched']} of {wr['lines']}, "
                                f"fail2ban-regex {fr['matched']} of {fr['lines']}")

    # fail2ban-rs's built-in jails, and warden with the same patterns.
    rs_runs = {}
    for service, log in [("sshd", args.auth_log), ("nginx-botsearch", args.nginx_log)]:
        case = f"fail2ban-rs {service} patterns"
        print(f"== {case} on {os.path.basename(log)}", flush=True)
        conf, patterns, date_format = rs_jail(args, service, log, args.work)
        rs = measure(args, [args.fail2ban_rs, "-c", conf, "dry-run", log, "--jail", service], args.repeat)
        rr = row(case, "fail2ban-rs", f"fail2ban-rs dry-run (built-in {service}, date_format {date_format})",
                 rs, rs_summary(rs.out))
        flt = os.path.join(args.work, f"fail2ban-rs-{service}.conf")
        datepattern = warden_filter(flt, patterns, date_format)
        what = "warden test --usedns no LOG (the same patterns" + (f", datepattern {datepattern})" if datepattern else ")")
        wr = None
        for tool, binary in builds:
            w = measure(args, [binary, "test", "--no-progress", "--usedns", "no", log, flt], args.repeat)
            r = row(case, tool, what, w, lines_summary(w.out, "warden test"))
            wr = wr or r
        rs_runs[service] = (rr, wr, patterns)

    after = machine()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results = {
        "stamp": stamp,
        "rows": rows,
        "machine_before": before,
        "machine_after": after,
        "core": args.core,
        "repeat": args.repeat,
        "f2b_repeat": args.f2b_repeat,
        "versions": {"warden": f"{warden_version} ({git})", "fail2ban-rs": rs_version},
        "logs": [os.path.basename(args.auth_log), os.path.basename(args.nginx_log)],
        "fail2ban_rs": {s: {"patterns": len(p)} for s, (_, _, p) in rs_runs.items()},
        "failures": failures,
    }
    with open(os.path.join(args.work, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    text = render(results)
    print()
    print(text)

    if args.readme and not failures:
        write_readme(args.readme, text)
    if failures:
        sys.exit("matched-line counts differ:\n" + "\n".join(failures))


if __name__ == "__main__":
    main()
