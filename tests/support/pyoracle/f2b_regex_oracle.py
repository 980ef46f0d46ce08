"""Regex and filter-pipeline oracle: fail2ban's own Python code run on its sample logs.

Run with fail2ban's package on PYTHONPATH:

    python3 f2b_regex_oracle.py CONFIG_DIR TEST_CONFIG_DIR LOGS_DIR > oracle.json
    python3 f2b_regex_oracle.py --scenarios < scenarios.json > results.json

For every filter in CONFIG_DIR/filter.d (and the zzz-* ones of TEST_CONFIG_DIR) it reads
the filter as fail2ban's sample tests do, once per option variant that the sample log
names, and records:

- the regexes as configured and as fail2ban compiles them (tags expanded);
- for every sample line, the line split around its date as fail2ban splits it, whether
  each regex alone matches the date-less text (failregexes and ignoreregexes: the
  prefregex's <F-CONTENT> when there is one) and with which named groups;
- what fail2ban's Filter pipeline returns for the line, in check-all mode (as the sample
  tests run) and in first-match mode (as the daemon runs).

Every filter is also listed in its default mode, and filters without a sample log are
listed with their regexes only. Finally every distinct
regex is run against every distinct sample text and the matching pairs are listed (a
cross-check for false positives).

With --scenarios it reads a list of filters with lines (dates already cut out) and returns
what fail2ban's pipeline gives for each line, or the error compiling the filter raised.
Host names never resolve.
"""

import json
import os
import sys
import time

os.environ["TZ"] = "CET-01CEST-02,M3.5.0,M10.5.0"
time.tzset()

from fail2ban.client.filterreader import FilterReader  # noqa: E402
from fail2ban.server.filter import Filter  # noqa: E402
from fail2ban.server.mytime import MyTime  # noqa: E402
from fail2ban.server.ipdns import DNSUtils  # noqa: E402

TEST_NOW = 1124013600
MyTime.setTime(TEST_NOW)
MyTime.setAlternateNow(TEST_NOW)
import datetime  # noqa: E402

TEST_NOW_STR = datetime.datetime.utcfromtimestamp(TEST_NOW).isoformat()

# Never resolve anything.
DNSUtils.dnsToIp = staticmethod(lambda host: set())


def jsonable(v):
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    if isinstance(v, (set, frozenset)):
        return sorted(jsonable(x) for x in v)
    if isinstance(v, (list,)):
        return [jsonable(x) for x in v]
    if isinstance(v, tuple):
        return str(v)
    return str(v)


def fail_json(fail):
    out = {}
    for k, v in fail.items():
        if k in ("matches", "nofail-matches"):
            out[k] = ["".join(t) for t in v]
        else:
            out[k] = jsonable(v)
    return out


def read_filter(name, basedir, opts, check_all):
    flt = Filter(None)
    flt.returnRawHost = True
    flt.checkAllRegex = check_all
    flt.checkFindTime = False
    flt.active = True
    reader = FilterReader(name, "jail", dict(opts), basedir=basedir)
    reader.read()
    reader.getOptions({})
    conf = {"prefregex": None, "failregex": [], "ignoreregex": [], "maxlines": 1}
    for opt in reader.convert():
        vals = opt[3] if opt[0] == "multi-set" else [opt[3]]
        for v in vals:
            key = opt[2]
            if key == "prefregex":
                flt.prefRegex = v
                conf["prefregex"] = v
            elif key == "addfailregex":
                flt.addFailRegex(v)
                conf["failregex"].append(v)
            elif key == "addignoreregex":
                flt.addIgnoreRegex(v)
                conf["ignoreregex"].append(v)
            elif key == "maxlines":
                flt.setMaxLines(v)
                conf["maxlines"] = int(v)
            elif key == "datepattern":
                flt.setDatePattern(v)
            elif key == "usedns":
                flt.setUseDns(v)
    conf["usedns"] = flt.getUseDns()
    conf["expanded"] = {
        "prefregex": flt.prefRegex.getRegex() if flt.prefRegex else None,
        "failregex": flt.getFailRegex(),
        "ignoreregex": flt.getIgnoreRegex(),
    }
    return flt, conf


def regex_objects(flt):
    pre = [flt.prefRegex] if flt.prefRegex else []
    return {
        "prefregex": pre,
        "failregex": flt._Filter__failRegex,
        "ignoreregex": flt._Filter__ignoreRegex,
    }


def search(regex, text):
    m = regex._regexObj.search(text + "\n")
    if not m:
        return None
    return {
        "span": [m.start(), m.end()],
        "groups": {k: v for k, v in m.groupdict().items()},
    }


def sample_lines(logs_dir, name):
    """Yields (kind, payload) in file order, like fail2ban's sample test reads them."""
    import re

    files = [name]
    i = 0
    while i < len(files):
        fname = files[i]
        i += 1
        with open(os.path.join(logs_dir, fname), encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        lnnum = 0
        it = iter(lines)
        for line in it:
            lnnum += 1
            m = re.match(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$", line)
            faildata = {}
            if m:
                data = json.loads(m.group(2))
                if m.group(1) == "fileOptions":
                    yield ("fileOptions", data)
                    continue
                if m.group(1) == "filterOptions":
                    yield ("filterOptions", data)
                    continue
                if m.group(1) == "addFILE":
                    files.append(data)
                    continue
                faildata = data
                try:
                    line = next(it)
                except StopIteration:
                    break
                lnnum += 1
            elif line.startswith("#") or not line.strip():
                continue
            yield ("line", (fname, lnnum, line.rstrip("\r\n"), faildata))


def run_variant(name, basedir, opts, lines_for_variant):
    test_opts = {k: v for k, v in opts.items() if not k.startswith("test.")}
    flt_all, conf = read_filter(name, basedir, test_opts, True)
    flt_first, _ = read_filter(name, basedir, test_opts, False)
    regs = regex_objects(flt_all)
    captured = []
    orig = flt_all.findFailure

    def spy(tupleLine, date, noDate=False):
        captured.append(tupleLine)
        return orig(tupleLine, date, noDate)

    flt_all.findFailure = spy
    out_lines = []
    for fname, lnnum, line, faildata in lines_for_variant:
        captured.clear()
        if opts.get("logtype") != "journal":
            ret_all = flt_all.processLine(line)
            ret_first = flt_first.processLine(line)
        else:
            if opts.get("test.prefix-line"):
                line = opts.get("test.prefix-line") + line
            ret_all = flt_all.processLine(("", TEST_NOW_STR, line), TEST_NOW)
            ret_first = flt_first.processLine(("", TEST_NOW_STR, line), TEST_NOW)
        if not captured:
            # processLine left the line before the regexes (too old); never with these options.
            continue
        before, date, after = captured[0]
        text = before + after
        # Failregexes and ignoreregexes see the prefregex's <F-CONTENT> when it has one.
        fail_text = text
        if regs["prefregex"]:
            m = regs["prefregex"][0]._regexObj.search(text + "\n")
            if m and m.groupdict().get("content"):
                fail_text = m.groupdict()["content"]
        per_regex = {
            "prefregex": [search(r, text) for r in regs["prefregex"]],
            "failregex": [search(r, fail_text) for r in regs["failregex"]],
            "ignoreregex": [search(r, fail_text) for r in regs["ignoreregex"]],
        }
        out_lines.append(
            {
                "file": fname,
                "lineno": lnnum,
                "line": line,
                "before": before,
                "date": date,
                "after": after,
                "fail_text": fail_text,
                "expect": faildata,
                "regex": per_regex,
                "pipeline_all": [[r[0], jsonable(r[1]), fail_json(r[3])] for r in ret_all],
                "pipeline_first": [[r[0], jsonable(r[1]), fail_json(r[3])] for r in ret_first],
            }
        )
    conf["lines"] = out_lines
    return conf


def run_scenarios():
    out = []
    for sc in json.load(sys.stdin):
        flt = Filter(None)
        flt.checkAllRegex = sc["check_all"]
        flt.checkFindTime = False
        flt.active = True
        try:
            flt.setUseDns(sc["usedns"])
            flt.setMaxLines(sc["maxlines"])
            if sc.get("prefregex"):
                flt.prefRegex = sc["prefregex"]
            for r in sc["failregex"]:
                flt.addFailRegex(r)
            for r in sc["ignoreregex"]:
                flt.addIgnoreRegex(r)
        except Exception as e:  # noqa: BLE001
            out.append({"error": str(e)})
            continue
        results = []
        for line in sc["lines"]:
            try:
                ret = flt.processLine(("", "", line), TEST_NOW)
                results.append([[r[0], jsonable(r[1]), fail_json(r[3])] for r in ret])
            except Exception as e:  # noqa: BLE001
                results.append({"exception": repr(e)})
        out.append({"results": results})
    json.dump(out, sys.stdout)


def relocate_test_filters(config_dir, test_config_dir):
    """The zzz-* test filters include common.conf through a path that only resolves in
    fail2ban's source tree (seven directories up, then config/filter.d). Rebuild that shape
    in a temporary directory so the installed package's copies can be read."""
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="f2b-oracle-")
    base = os.path.join(top, *["d%d" % i for i in range(6)])
    os.makedirs(os.path.join(base, "filter.d"))
    os.makedirs(os.path.join(top, "config", "filter.d"))
    shutil.copy(
        os.path.join(config_dir, "filter.d", "common.conf"),
        os.path.join(top, "config", "filter.d", "common.conf"),
    )
    for f in os.listdir(os.path.join(test_config_dir, "filter.d")):
        if f.startswith("zzz-"):
            shutil.copy(
                os.path.join(test_config_dir, "filter.d", f),
                os.path.join(base, "filter.d", f),
            )
    return base


def main():
    if sys.argv[1:2] == ["--scenarios"]:
        run_scenarios()
        return
    config_dir, test_config_dir, logs_dir = sys.argv[1:4]
    test_config_dir = relocate_test_filters(config_dir, test_config_dir)
    result = {"variants": [], "unsampled": [], "defaults": [], "errors": [], "cross": []}
    filters = []
    for basedir, pred in (
        (config_dir, lambda f: f.endswith(".conf") and not f.endswith("common.conf")),
        (test_config_dir, lambda f: f.startswith("zzz-") and f.endswith(".conf")),
    ):
        for f in sorted(os.listdir(os.path.join(basedir, "filter.d"))):
            if pred(f):
                filters.append((f[: -len(".conf")], basedir))
    for name, basedir in filters:
        # Every filter in its default mode (the census of what the daemon runs by default).
        try:
            _, conf = read_filter(name, basedir, {}, True)
            conf["name"] = name
            result["defaults"].append(conf)
        except Exception as e:  # noqa: BLE001
            result["errors"].append({"name": name, "error": repr(e)})
        if not os.path.isfile(os.path.join(logs_dir, name)):
            try:
                _, conf = read_filter(name, basedir, {}, True)
                conf["name"] = name
                result["unsampled"].append(conf)
            except Exception as e:  # noqa: BLE001
                result["errors"].append({"name": name, "error": repr(e)})
            continue
        # Group the sample lines by the option variants in force, in file order.
        variants = [({}, [])]
        order = [""]
        by_key = {"": variants[0]}
        current = [""]
        common = {}
        try:
            for kind, payload in sample_lines(logs_dir, name):
                if kind == "fileOptions":
                    common = payload
                elif kind == "filterOptions":
                    current = []
                    for o in payload if isinstance(payload, list) else [payload]:
                        opts = dict(common)
                        opts.update(o)
                        cond = opts.get("test.condition")
                        if cond and not eval(cond, {"name": name}):
                            continue
                        fopts = {k: v for k, v in opts.items() if not k.startswith("test.")}
                        key = opts.get("test.filter-name") or (str(fopts) if fopts else "")
                        if key not in by_key:
                            by_key[key] = (opts, [])
                            order.append(key)
                        current.append(key)
                else:
                    fname, lnnum, line, faildata = payload
                    for key in current:
                        opts, lines = by_key[key]
                        constraint = faildata.get("constraint")
                        if constraint and not eval(constraint, {"name": name, "opts": opts}):
                            continue
                        lines.append(payload)
            for key in order:
                opts, lines = by_key[key]
                if not lines:
                    continue
                conf = run_variant(name, basedir, opts, lines)
                conf["name"] = name
                conf["variant"] = key
                conf["opts"] = {k: v for k, v in opts.items() if not k.startswith("test.")}
                result["variants"].append(conf)
        except Exception as e:  # noqa: BLE001
            result["errors"].append({"name": name, "error": repr(e)})

    # Cross-check: every distinct compiled regex against every distinct date-less text.
    import re

    texts = []
    seen_t = set()
    for v in result["variants"]:
        for ln in v["lines"]:
            for t in (ln["before"] + ln["after"], ln["fail_text"]):
                if t not in seen_t:
                    seen_t.add(t)
                    texts.append(t)
    regexes = []
    seen_r = set()
    for v in result["variants"] + result["unsampled"]:
        multi = v["maxlines"] > 1
        for kind in ("prefregex", "failregex", "ignoreregex"):
            raw = v[kind] if kind != "prefregex" else ([v[kind]] if v[kind] else [])
            for i, r in enumerate(raw):
                m = multi and kind == "failregex"
                key = (r, m, v["usedns"])
                if key in seen_r:
                    continue
                seen_r.add(key)
                regexes.append({"regex": r, "multiline": m, "usedns": v["usedns"]})
    from fail2ban.server.failregex import Regex

    for ri, spec in enumerate(regexes):
        try:
            rx = Regex(spec["regex"], multiline=spec["multiline"], useDns=spec["usedns"])
        except Exception as e:  # noqa: BLE001
            spec["error"] = repr(e)
            continue
        spec["expanded"] = rx.getRegex()
        hits = []
        for ti, t in enumerate(texts):
            m = rx._regexObj.search(t + "\n")
            if m:
                hits.append([ti, [m.start(), m.end()], m.groupdict()])
        spec["hits"] = hits
    result["cross"] = {"texts": texts, "regexes": regexes}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
