#!/usr/bin/env python3
"""End-to-end ingest: warden's daemon against fail2ban-server on the same kind of log.

Both daemons run pinned to one core (taskset), with the same ten jails reading one log
through fail2ban's own sshd filter (warden reads fail2ban's configuration files as they
are) and the same `dummy` action. No ban happens: maxretry is above the failures of any
address, so every address stays tracked, which is the case that costs memory.

The log: `--addresses` distinct IPv4 addresses failing in turn ("Failed password for
invalid user ..."), one line in ten an accepted login of another address (matched by the
filter, no failure), every line dated when the log is generated.

Runs, each with a fresh daemon, data directory and log:
  fail2ban   fed `--lines` lines (enough for every address to fail at least once);
  warden     fed the very same log, `--repeat` times (the median run is reported);
  warden     fed `--warden-lines` lines of the same kind (the same addresses failing more
             often), for a rate measured over seconds rather than about one;
  warden     paced: `--pace` times fail2ban's measured rate for `--pace-seconds` seconds,
             to show it keeps up (skipped with --pace 0 or without a fail2ban run).

Rate: a writer pinned to another core appends the whole log at once (in 1 MiB writes),
far faster than either daemon reads; the clock runs from the first write until every
jail reports every line processed (warden: `warden_lines_read_total` of each jail in
`warden metrics`, polled every 10 ms; fail2ban: `Total failed` of each jail in
`fail2ban-client status JAIL`, polled every 0.5 s, must reach the number of failures).
lines / seconds is the append rate the daemon keeps up with. The paced run appends at a
fixed rate in 10 ms steps and reports the lag after the last write.

Memory: the daemon's peak resident set (VmHWM in /proc/PID/status) read once it is done:
the highest RSS over its whole life, start-up included. CPU time (utime + stime of the
daemon) is reported as well: unlike wall time it does not grow when other processes
share the core.

Usage: run.py --warden BIN --fail2ban ROOT [options]   (bench/ingest/run.sh drives it)
"""

import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception so that every `finally` stops its daemon.
    raise Interrupted(f"signal {signum}")


def die_with_parent():
    """In a child before exec: it gets SIGKILL if this script dies, however it dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def status_field(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def generate(lines, addresses, stamp):
    """The log text and its number of failure lines."""
    failures = 0
    chunks = []
    for i in range(lines):
        if i % 10 == 9:
            chunks.append(
                f"{stamp} host sshd[{1000 + i % 5000}]: Accepted publickey for deploy from 10.255.0.1 port 50022 ssh2\n"
            )
            continue
        a = failures % addresses
        ip = f"10.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"
        chunks.append(
            f"{stamp} host sshd[{1000 + i % 5000}]: Failed password for invalid user u{failures % 977} from {ip} port {1024 + i % 60000} ssh2\n"
        )
        failures += 1
    return "".join(chunks).encode(), failures


def jails_text(n, log, backend, action, extra=()):
    out = [
        "[DEFAULT]",
        f"backend = {backend}",
        "usedns = no",
        "ignoreip =",
        "ignoreself = false",
        "findtime = 1h",
        "maxretry = 100",
        "bantime = 1h",
        f"action = {action}",
        *extra,
        "",
    ]
    for j in range(n):
        out += [f"[sshd{j}]", "enabled = true", "filter = sshd", f"logpath = {log}", ""]
    return "\n".join(out)


def config_dir(root, dest):
    shutil.copytree(os.path.join(root, "etc/fail2ban"), dest)
    for f in os.listdir(os.path.join(dest, "jail.d")):
        os.remove(os.path.join(dest, "jail.d", f))


def append(path, data):
    """Appends all of `data` at once; returns the seconds the writes took."""
    t0 = time.monotonic()
    with open(path, "ab") as f:
        step = 1 << 20
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
    return time.monotonic() - t0


def append_paced(path, data, rate):
    """Appends `data` at `rate` lines per second in 10 ms steps (whole lines)."""
    t0 = time.monotonic()
    pos = 0
    sent = 0
    with open(path, "ab") as f:
        while pos < len(data):
            due = int((time.monotonic() - t0) * rate) - sent
            if due > 0:
                end = pos
                for _ in range(due):
                    nl = data.find(b"\n", end)
                    if nl < 0:
                        end = len(data)
                        break
                    end = nl + 1
                f.write(data[pos:end])
                f.flush()
                sent += due
                pos = end
            time.sleep(0.01)
    return time.monotonic() - t0


def wait(what, cond, timeout, every):
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def stop(proc, graceful, timeout=60):
    if proc.poll() is not None:
        return
    try:
        graceful()
        proc.wait(timeout)
    except (subprocess.TimeoutExpired, OSError, Interrupted):
        proc.kill()
        proc.wait()


def metric(out, name):
    return {j: int(v) for j, v in re.findall(rf'^{name}\{{jail="(sshd\d+)"\}} (\d+)', out, re.M)}


class Warden:
    def __init__(self, args, run_dir, log):
        self.args = args
        conf = os.path.join(run_dir, "conf")
        config_dir(args.fail2ban, conf)
        with open(os.path.join(conf, "warden.conf"), "w") as f:
            f.write(
                "[Definition]\nloglevel = WARNING\nlogtarget = STDERR\n"
                f"socket = {run_dir}/warden.sock\npidfile = {run_dir}/warden.pid\n"
                f"dbfile = {run_dir}/warden.sqlite3\n"
            )
        with open(os.path.join(conf, "jail.local"), "w") as f:
            # warden tracks at most `maxtracked` ids per jail (100,000 unless set).
            f.write(jails_text(args.jails, log, "auto", f'dummy[target="{run_dir}/dummy"]',
                               [f"maxtracked = {max(args.addresses, 100_000)}"]))
        self.client = [args.warden, "--config", conf, "--socket", f"{run_dir}/warden.sock"]
        self.err = open(os.path.join(run_dir, "warden.err"), "w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(args.core), args.warden, "--config", conf, "run", "--foreground"],
            stdout=subprocess.DEVNULL,
            stderr=self.err,
            preexec_fn=die_with_parent,
        )
        record_pid(args, self.proc.pid)

    def ready(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"warden exited with status {self.proc.returncode}; see {self.err.name}")
        return subprocess.run(self.client + ["ping"], capture_output=True).returncode == 0

    def metrics(self):
        out = subprocess.run(self.client + ["metrics"], capture_output=True, text=True).stdout
        return {n: metric(out, n) for n in ("warden_lines_read_total", "warden_failures_total", "warden_currently_failed")}

    def stop(self):
        stop(self.proc, lambda: self.proc.send_signal(signal.SIGTERM))


class Fail2ban:
    def __init__(self, args, run_dir, log):
        self.args = args
        conf = os.path.join(run_dir, "conf")
        config_dir(args.fail2ban, conf)
        with open(os.path.join(conf, "fail2ban.local"), "w") as f:
            # WARNING: fail2ban logs every failure at INFO; leaving that out is in its favour.
            f.write(
                "[Definition]\nloglevel = WARNING\n"
                f"logtarget = {run_dir}/f2b.log\nsocket = {run_dir}/f2b.sock\n"
                f"pidfile = {run_dir}/f2b.pid\ndbfile = {run_dir}/f2b.sqlite3\n"
            )
        with open(os.path.join(conf, "jail.local"), "w") as f:
            f.write(jails_text(args.jails, log, args.f2b_backend, f'dummy[target="{run_dir}/dummy"]'))
        self.env = dict(os.environ, PYTHONPATH=os.path.join(args.fail2ban, "usr/lib/python3/dist-packages"))
        bin_dir = os.path.join(args.fail2ban, "usr/bin")
        sock = f"{run_dir}/f2b.sock"
        self.client = [args.python, os.path.join(bin_dir, "fail2ban-client"), "-c", conf, "-s", sock]
        self.out = open(os.path.join(run_dir, "f2b.out"), "w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(args.core), args.python, os.path.join(bin_dir, "fail2ban-server"),
             "-c", conf, "-s", sock, "-p", f"{run_dir}/f2b.pid", "-x", "-f"],
            env=self.env,
            stdout=self.out,
            stderr=self.out,
            preexec_fn=die_with_parent,
        )
        record_pid(args, self.proc.pid)

    def status(self, jail=None):
        r = subprocess.run(self.client + ["status"] + ([jail] if jail else []), capture_output=True, text=True, env=self.env)
        return r.stdout

    def ready(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"fail2ban-server exited with status {self.proc.returncode}; see {self.out.name}")
        return f"Number of jail:\t{self.args.jails}" in self.status()

    def counts(self, jail):
        out = self.status(jail)
        total = re.search(r"Total failed:\s+(\d+)", out)
        current = re.search(r"Currently failed:\s+(\d+)", out)
        return (int(total.group(1)) if total else -1, int(current.group(1)) if current else -1)

    def stop(self):
        stop(self.proc, lambda: subprocess.run(self.client + ["stop"], capture_output=True, env=self.env, timeout=60))


def record_pid(args, pid):
    # run.sh kills what is listed here if this script is killed before it can.
    with open(os.path.join(args.work, "pids"), "a") as f:
        f.write(f"{pid}\n")


def run_warden(args, name, data, lines, failures, pace=None):
    run_dir = os.path.join(args.work, name)
    os.makedirs(run_dir)
    log = os.path.join(run_dir, "auth.log")
    open(log, "w").close()
    d = Warden(args, run_dir, log)
    jails = [f"sshd{j}" for j in range(args.jails)]
    try:
        wait("warden to answer", d.ready, 60, 0.05)
        rest = status_field(d.proc.pid, "VmRSS")
        cpu0 = cpu_seconds(d.proc.pid)
        seen = {}

        def done():
            m = d.metrics()
            seen.update(m)
            read = m["warden_lines_read_total"]
            return all(read.get(j) == lines for j in jails)

        t0 = time.monotonic()
        if pace:
            wrote = append_paced(log, data, pace)
        else:
            wrote = append(log, data)
        t_written = time.monotonic()
        wait("warden to process every line", done, args.timeout, 0.01)
        t1 = time.monotonic()
        took = t1 - t0
        # A jail sets its gauge of ids tracked just after its line counters (after the
        # clock stopped): give it a moment.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen.update(d.metrics())
            if all(seen["warden_currently_failed"].get(j) == args.addresses for j in jails):
                break
            time.sleep(0.01)
        fails = seen["warden_failures_total"]
        current = seen["warden_currently_failed"]
        bad = [j for j in jails if fails.get(j) != failures]
        if bad:
            raise SystemExit(f"warden: failures counted {fails}, expected {failures} in every jail")
        tracked = min(current.get(j, -1) for j in jails)
        if any(current.get(j) != args.addresses for j in jails):
            raise SystemExit(f"warden: ids tracked {current}, expected {args.addresses} in every jail")
        r = {
            "daemon": "warden",
            "lines": lines,
            "failures": failures,
            "seconds": took,
            "lines_per_s": lines / took,
            "append_seconds": wrote,
            "lag_after_last_write": t1 - t_written,
            "cpu_seconds": cpu_seconds(d.proc.pid) - cpu0,
            "peak_rss": status_field(d.proc.pid, "VmHWM"),
            "rss_at_rest": rest,
            "tracked_per_jail": tracked,
        }
        if pace:
            r["paced_lines_per_s"] = pace
        return r
    finally:
        d.stop()


def run_fail2ban(args, name, data, lines, failures):
    run_dir = os.path.join(args.work, name)
    os.makedirs(run_dir)
    log = os.path.join(run_dir, "auth.log")
    open(log, "w").close()
    d = Fail2ban(args, run_dir, log)
    try:
        wait("fail2ban to start its jails", d.ready, 120, 0.2)
        rest = status_field(d.proc.pid, "VmRSS")
        cpu0 = cpu_seconds(d.proc.pid)
        t0 = time.monotonic()
        wrote = append(log, data)
        t_written = time.monotonic()
        # The jails are checked one after the other; the clock stops when the last is done.
        pending = [f"sshd{j}" for j in range(args.jails)]
        tracked = []

        def done():
            while pending:
                total, current = d.counts(pending[0])
                if total != failures:
                    if total > failures:
                        raise SystemExit(f"fail2ban: {pending[0]} counted {total} failures, expected {failures}")
                    return False
                tracked.append(current)
                pending.pop(0)
            return True

        wait("fail2ban to process every line", done, args.timeout, 0.5)
        t1 = time.monotonic()
        if any(t != args.addresses for t in tracked):
            raise SystemExit(f"fail2ban: ids tracked {tracked}, expected {args.addresses} in every jail")
        took = t1 - t0
        return {
            "daemon": "fail2ban",
            "lines": lines,
            "failures": failures,
            "seconds": took,
            "lines_per_s": lines / took,
            "append_seconds": wrote,
            "lag_after_last_write": t1 - t_written,
            "cpu_seconds": cpu_seconds(d.proc.pid) - cpu0,
            "peak_rss": status_field(d.proc.pid, "VmHWM"),
            "rss_at_rest": rest,
            "tracked_per_jail": min(tracked),
        }
    finally:
        d.stop()


def machine():
    info = {"kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            info["cpu"] = m.group(1) if m else "?"
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / MIB, 1)
    except OSError:
        pass
    info["loadavg"] = os.getloadavg()
    return info


def row(r):
    extra = ""
    if "paced_lines_per_s" in r:
        extra = f"  (paced at {r['paced_lines_per_s']:.0f}/s, lag {r['lag_after_last_write']:.2f} s)"
    return (
        f"{r['label']:34} {r['lines']:>10,} {r['lines_per_s']:>12,.0f} {r['seconds']:>9.2f} "
        f"{r['cpu_seconds']:>8.2f} {r['peak_rss'] / MIB:>9.1f} {r['tracked_per_jail']:>9,}{extra}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warden", required=True, help="the warden binary")
    p.add_argument("--fail2ban", required=True, help="root of the unpacked Debian package")
    p.add_argument("--python", default="/usr/bin/python3", help="the interpreter fail2ban runs on")
    p.add_argument("--addresses", type=int, default=100_000)
    p.add_argument("--jails", type=int, default=10)
    p.add_argument("--lines", type=int, default=120_000, help="fail2ban's log, also fed to warden")
    p.add_argument("--warden-lines", type=int, default=1_000_000, help="warden's longer log (0: none)")
    p.add_argument("--repeat", type=int, default=3, help="warden runs on the shared log")
    p.add_argument("--pace", type=float, default=50, help="paced run at this multiple of fail2ban's rate (0: none)")
    p.add_argument("--pace-seconds", type=float, default=10)
    cpus = sorted(os.sched_getaffinity(0))
    p.add_argument("--core", type=int, default=cpus[-1], help="the core both daemons run on")
    p.add_argument("--writer-core", type=int, default=cpus[0], help="the core of the writer and the pollers")
    p.add_argument("--long-fail2ban", action="store_true",
                   help="feed fail2ban the longer log too (about 17 minutes at the defaults)")
    p.add_argument("--f2b-backend", default="pyinotify")
    p.add_argument("--only", choices=["warden", "fail2ban"])
    p.add_argument("--timeout", type=float, default=1800, help="seconds any one run may take")
    p.add_argument("--work", help="directory for the runs (default: a new one under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    if args.core == args.writer_core:
        print(f"warning: one core only: the writer shares core {args.core} with the daemons", file=sys.stderr)
    # The writer and every poll run on the writer's core; the daemons alone on theirs.
    os.sched_setaffinity(0, {args.writer_core})
    if args.lines * 9 // 10 < args.addresses:
        raise SystemExit(f"--lines {args.lines}: too few failures for {args.addresses} addresses to fail")
    if args.warden_lines and args.warden_lines * 9 // 10 < args.addresses:
        raise SystemExit(f"--warden-lines {args.warden_lines}: too few failures for {args.addresses} addresses")
    own_work = args.work is None
    args.work = args.work or tempfile.mkdtemp(prefix="warden-ingest-")
    os.makedirs(args.work, exist_ok=True)

    stamp = time.strftime("%b %e %H:%M:%S")
    results = {
        "addresses": args.addresses,
        "jails": args.jails,
        "core": args.core,
        "machine_before": machine(),
        "runs": [],
    }
    runs = results["runs"]

    def report(r, label):
        r["label"] = label
        runs.append(r)
        print(f"{label}: {json.dumps({k: v for k, v in r.items() if k != 'label'})}", flush=True)
        return r

    try:
        shared, shared_failures = generate(args.lines, args.addresses, stamp)
        f2b = None
        if args.only != "warden":
            f2b = report(run_fail2ban(args, "fail2ban-shared", shared, args.lines, shared_failures), "fail2ban, shared log")
        if args.only != "fail2ban":
            same = [
                run_warden(args, f"warden-shared-{i}", shared, args.lines, shared_failures)
                for i in range(args.repeat)
            ]
            for i, r in enumerate(same):
                r["repeat"] = i
            med = sorted(same, key=lambda r: r["lines_per_s"])[len(same) // 2]
            med["rates_of_all_repeats"] = [r["lines_per_s"] for r in same]
            med["peak_rss_of_all_repeats"] = [r["peak_rss"] for r in same]
            report(med, f"warden, shared log (median of {len(same)})")
            if args.warden_lines:
                data, failures = generate(args.warden_lines, args.addresses, stamp)
                report(run_warden(args, "warden-long", data, args.warden_lines, failures), "warden, longer log")
                if args.long_fail2ban and args.only is None:
                    report(run_fail2ban(args, "fail2ban-long", data, args.warden_lines, failures), "fail2ban, longer log")
                del data
            if args.pace and f2b:
                rate = args.pace * f2b["lines_per_s"]
                n = max(int(rate * args.pace_seconds), args.addresses * 10 // 9 + 10)
                data, failures = generate(n, args.addresses, stamp)
                report(run_warden(args, "warden-paced", data, n, failures, pace=rate),
                       f"warden, paced at {args.pace:g}x fail2ban")
    except Interrupted as e:
        raise SystemExit(f"interrupted ({e})")
    finally:
        if own_work and not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    results["machine_after"] = machine()

    print()
    print(f"{args.addresses:,} distinct failing addresses, {args.jails} jails, both daemons on core {args.core}")
    print(f"{'run':34} {'lines':>10} {'lines/s':>12} {'seconds':>9} {'CPU s':>8} {'peak MiB':>9} {'tracked':>9}")
    for r in runs:
        print(row(r))
    by = {r["label"]: r for r in runs}
    f = by.get("fail2ban, shared log")
    shared_w = next((r for r in runs if r["label"].startswith("warden, shared")), None)
    long_w = by.get("warden, longer log")
    long_f = by.get("fail2ban, longer log")
    if f and shared_w:
        ratios = {
            "ingest_shared_log": shared_w["lines_per_s"] / f["lines_per_s"],
            "memory_shared_log": shared_w["peak_rss"] / f["peak_rss"],
            "cpu_per_line_shared_log": (f["cpu_seconds"] / f["lines"]) / (shared_w["cpu_seconds"] / shared_w["lines"]),
        }
        if long_w:
            ratios["ingest_longer_log"] = long_w["lines_per_s"] / f["lines_per_s"]
        if long_w and long_f:
            ratios["ingest_longer_log_both"] = long_w["lines_per_s"] / long_f["lines_per_s"]
            ratios["memory_longer_log"] = long_w["peak_rss"] / long_f["peak_rss"]
        results["ratios"] = ratios
        print()
        print(f"ingest, same log:   warden {ratios['ingest_shared_log']:.1f}x fail2ban's rate (target >= 50x)")
        if long_w and not long_f:
            print(f"ingest, longer log: warden {ratios['ingest_longer_log']:.1f}x fail2ban's rate on the shared log")
        if long_f:
            print(f"ingest, longer log: warden {ratios['ingest_longer_log_both']:.1f}x fail2ban's rate on the longer log")
        print(f"CPU per line:       fail2ban uses {ratios['cpu_per_line_shared_log']:.1f}x warden's")
        print(f"peak RSS, same log: warden {ratios['memory_shared_log']:.3f} of fail2ban's (target < 0.333)")
        if long_f:
            print(f"peak RSS, longer log: warden {ratios['memory_longer_log']:.3f} of fail2ban's")
    print(f"load average before {results['machine_before']['loadavg']}, after {results['machine_after']['loadavg']}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    sys.exit(main())
