#!/usr/bin/env python3
"""End-to-end ingest: warden's daemon against fail2ban-server on the same log.

Both daemons run pinned to one core (taskset), with the same ten jails reading the same
log through fail2ban's own sshd filter (warden reads fail2ban's configuration files as
they are), and the same `dummy` action (no ban happens: maxretry is above the failures
per address, so every address stays tracked). The writer, pinned to another core,
appends the whole log at once; "keeps up" is measured from the start of the append until
the daemon reports every line processed by all ten jails (warden: `warden metrics`;
fail2ban: `Total failed` of `fail2ban-client status` for each jail). Peak RSS is the
daemon's VmHWM once done.

Usage: run.py --warden BIN --fail2ban ROOT [--lines N] [--addresses N] [--jails N]
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def generate(path, lines, addresses):
    """Failures of `addresses` distinct IPv4 addresses, round robin, dated now; one line
    in ten is noise the filter does not match. Returns the number of failure lines."""
    stamp = time.strftime("%b %e %H:%M:%S")
    failures = 0
    chunks = []
    for i in range(lines):
        if i % 10 == 9:
            chunks.append(f"{stamp} host sshd[{1000 + i % 5000}]: Accepted publickey for deploy from 10.255.0.1 port 50022 ssh2\n")
            continue
        a = failures % addresses
        ip = f"10.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"
        chunks.append(
            f"{stamp} host sshd[{1000 + i % 5000}]: Failed password for invalid user u{failures % 977} from {ip} port {1024 + i % 60000} ssh2\n"
        )
        failures += 1
    data = "".join(chunks).encode()
    return data, failures


def jails_text(n, log, backend, action):
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
        "",
    ]
    for j in range(n):
        out += [f"[sshd{j}]", "enabled = true", "filter = sshd", f"logpath = {log}", ""]
    return "\n".join(out)


def append(path, data, core):
    """Appends `data` from a writer pinned to `core`; returns when written."""
    os.sched_setaffinity(0, {core})
    with open(path, "ab") as f:
        step = 1 << 20
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()


def wait(what, cond, timeout, every):
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if r:
            return r
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(every)


def run_warden(args, work, data, lines, failures):
    conf = os.path.join(work, "warden-conf")
    shutil.copytree(os.path.join(args.fail2ban, "etc/fail2ban"), conf)
    for f in os.listdir(os.path.join(conf, "jail.d")):
        os.remove(os.path.join(conf, "jail.d", f))
    log = os.path.join(work, "warden-auth.log")
    open(log, "w").close()
    with open(os.path.join(conf, "warden.conf"), "w") as f:
        f.write(
            "[Definition]\nloglevel = WARNING\nlogtarget = STDERR\n"
            f"socket = {work}/warden.sock\npidfile = {work}/warden.pid\ndbfile = {work}/warden.sqlite3\n"
        )
    with open(os.path.join(conf, "jail.local"), "w") as f:
        f.write(jails_text(args.jails, log, "auto", f'dummy[target="{work}/warden.dummy"]'))
    client = [args.warden, "--config", conf, "--socket", f"{work}/warden.sock"]
    err = open(os.path.join(work, "warden.err"), "w")
    proc = subprocess.Popen(
        ["taskset", "-c", str(args.core), args.warden, "--config", conf, "run", "--foreground"],
        stderr=err,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait("warden to answer", lambda: subprocess.run(client + ["ping"], capture_output=True).returncode == 0, 60, 0.05)
        base = vm(proc.pid, "VmRSS")

        def done():
            out = subprocess.run(client + ["metrics"], capture_output=True, text=True).stdout
            read = [int(v) for v in re.findall(r'^warden_lines_read_total\{jail="sshd\d+"\} (\d+)', out, re.M)]
            fails = [int(v) for v in re.findall(r'^warden_failures_total\{jail="sshd\d+"\} (\d+)', out, re.M)]
            if len(read) == args.jails and all(r == lines for r in read):
                return fails
            return None

        t0 = time.monotonic()
        append(log, data, args.writer_core)
        fails = wait("warden to process every line", done, 3600, 0.02)
        took = time.monotonic() - t0
        peak = vm(proc.pid, "VmHWM")
        assert all(f == failures for f in fails), f"failures counted {fails}, expected {failures}"
        return {"seconds": took, "lines_per_s": lines / took, "peak_rss": peak, "base_rss": base}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def run_fail2ban(args, work, data, lines, failures):
    conf = os.path.join(work, "f2b-conf")
    shutil.copytree(os.path.join(args.fail2ban, "etc/fail2ban"), conf)
    for f in os.listdir(os.path.join(conf, "jail.d")):
        os.remove(os.path.join(conf, "jail.d", f))
    log = os.path.join(work, "f2b-auth.log")
    open(log, "w").close()
    with open(os.path.join(conf, "fail2ban.local"), "w") as f:
        # WARNING: fail2ban logs every failure at INFO; leaving that out is in its favour.
        f.write(
            "[Definition]\nloglevel = WARNING\n"
            f"logtarget = {work}/f2b.log\nsocket = {work}/f2b.sock\npidfile = {work}/f2b.pid\ndbfile = {work}/f2b.sqlite3\n"
        )
    with open(os.path.join(conf, "jail.local"), "w") as f:
        f.write(jails_text(args.jails, log, args.f2b_backend, f'dummy[target="{work}/f2b.dummy"]'))
    env = dict(os.environ, PYTHONPATH=os.path.join(args.fail2ban, "usr/lib/python3/dist-packages"))
    bin_dir = os.path.join(args.fail2ban, "usr/bin")
    client = ["python3", os.path.join(bin_dir, "fail2ban-client"), "-c", conf, "-s", f"{work}/f2b.sock"]
    out = open(os.path.join(work, "f2b.out"), "w")
    proc = subprocess.Popen(
        ["taskset", "-c", str(args.core), "python3", os.path.join(bin_dir, "fail2ban-server"),
         "-c", conf, "-s", f"{work}/f2b.sock", "-p", f"{work}/f2b.pid", "-x", "-f"],
        env=env,
        stdout=out,
        stderr=out,
    )

    def status(jail):
        r = subprocess.run(client + ["status", jail], capture_output=True, text=True, env=env)
        m = re.search(r"Total failed:\s+(\d+)", r.stdout)
        return int(m.group(1)) if m else -1

    try:
        def ready():
            r = subprocess.run(client + ["status"], capture_output=True, text=True, env=env)
            return f"Number of jail:\t{args.jails}" in r.stdout

        wait("fail2ban to start its jails", ready, 120, 0.2)
        base = vm(proc.pid, "VmRSS")
        t0 = time.monotonic()
        append(log, data, args.writer_core)
        # Once the last jail has counted every failure, all have: each is checked in turn.
        pending = [f"sshd{j}" for j in range(args.jails)]

        def done():
            while pending and status(pending[0]) == failures:
                pending.pop(0)
            return not pending

        wait("fail2ban to process every line", done, 7200, 0.5)
        took = time.monotonic() - t0
        peak = vm(proc.pid, "VmHWM")
        return {"seconds": took, "lines_per_s": lines / took, "peak_rss": peak, "base_rss": base}
    finally:
        subprocess.run(client + ["stop"], capture_output=True, env=env)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--warden", required=True)
    p.add_argument("--fail2ban", required=True, help="root of the unpacked Debian package")
    p.add_argument("--lines", type=int, default=300_000)
    p.add_argument("--addresses", type=int, default=100_000)
    p.add_argument("--jails", type=int, default=10)
    p.add_argument("--core", type=int, default=1, help="the core the daemons run on")
    p.add_argument("--writer-core", type=int, default=0)
    p.add_argument("--f2b-backend", default="pyinotify")
    p.add_argument("--only", choices=["warden", "fail2ban"])
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="warden-ingest-")
    results = {"lines": args.lines, "addresses": args.addresses, "jails": args.jails}
    try:
        if args.only != "fail2ban":
            data, failures = generate(None, args.lines, args.addresses)
            results["warden"] = run_warden(args, work, data, args.lines, failures)
            print(f"warden:   {results['warden']}", flush=True)
        if args.only != "warden":
            data, failures = generate(None, args.lines, args.addresses)
            results["fail2ban"] = run_fail2ban(args, work, data, args.lines, failures)
            print(f"fail2ban: {results['fail2ban']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "warden" in results and "fail2ban" in results:
        w, f = results["warden"], results["fail2ban"]
        results["ingest_ratio"] = w["lines_per_s"] / f["lines_per_s"]
        results["memory_ratio"] = w["peak_rss"] / f["peak_rss"]
        mib = 1024 * 1024
        print()
        print(f"{args.lines} lines ({args.addresses} distinct failing addresses), {args.jails} jails, one core")
        print(f"{'':10} {'lines/s':>12} {'seconds':>9} {'peak RSS':>10}")
        for name in ("warden", "fail2ban"):
            r = results[name]
            print(f"{name:10} {r['lines_per_s']:12.0f} {r['seconds']:9.2f} {r['peak_rss'] / mib:8.1f} MiB")
        print(f"ingest: warden {results['ingest_ratio']:.1f}x fail2ban (target >= 50x)")
        print(f"memory: warden {results['memory_ratio']:.3f} of fail2ban's (target < 0.33)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
