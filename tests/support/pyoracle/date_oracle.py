"""Runs fail2ban's own DateDetector over its sample logs and prints what it finds as JSON.

Usage: python3 date_oracle.py CONFIG_DIR TEST_CONFIG_DIR LOGS_DIR NOW [EXTRA]

EXTRA is a JSON file {"patterns": [datepattern or null, ...], "lines": [...]}: the lines
are also run, in order, through one detector per pattern (file "extra").

Run with fail2ban's package on PYTHONPATH and TZ set to the zone of the comparison. The
lines are fed the way fail2ban's sample test feeds them: one date detector per filter
variant (datepattern resolved by fail2ban's FilterReader), in file order, lines of
journal variants left out (they take their time from the journal). Every file is also run
through a detector with the default templates. fail2ban keeps a per-template search
counter shared by all detectors of the process; here each detector gets its own, as if it
were the only one.
"""

import json
import os
import re
import sys
import time


def main():
    config_dir, test_config_dir, logs_dir, now = sys.argv[1:5]
    extra = sys.argv[5] if len(sys.argv) > 5 else None
    now = int(now)
    time.tzset()

    from fail2ban.client.filterreader import FilterReader
    from fail2ban.server.datedetector import DateDetector
    from fail2ban.server.filter import FileContainer
    from fail2ban.server.mytime import MyTime

    MyTime.setAlternateNow(now)
    MyTime.setTime(now)

    annotation = re.compile(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$")

    def char_to_byte(line, i):
        return len(line[:i].encode("utf-8", "surrogatepass"))

    class Run(object):
        def __init__(self, file, variant, datepattern):
            self.out = {
                "file": file,
                "variant": variant,
                "datepattern": datepattern,
                "lines": [],
            }
            dd = DateDetector()
            if datepattern is not None:
                for p in filter(bool, map(str.strip, re.split("\n+", datepattern))):
                    dd.appendTemplate(p)
            if not dd.templates:
                dd.addDefaultTemplate()
            self.dd = dd
            self.hits = dict((id(t.template), 0) for t in dd.templates)

        def feed(self, line, expect=None):
            # Give this detector its own per-template search counters.
            for t in self.dd.templates:
                t.template.hits = self.hits[id(t.template)]
            rec = {"line": line, "span": None, "time": None, "name": None, "error": None}
            if expect is not None:
                rec["expect"] = expect
            try:
                m, tmpl = self.dd.matchTime(line)
                if m:
                    s, e = m.start(1), m.end(1)
                    rec["name"] = tmpl.name
                    if s < 0 or s == e:
                        rec["span"] = [0, 0]
                    else:
                        rec["span"] = [char_to_byte(line, s), char_to_byte(line, e)]
                        try:
                            date = tmpl.getDate(line[s:e], m, default_tz=self.dd.default_tz)
                            if date is not None:
                                rec["time"] = date[0]
                        except Exception as ex:
                            # fail2ban's filter drops the line (KeyError for an unknown
                            # zone abbreviation) or takes it as undated (ValueError).
                            rec["error"] = "date: %s: %s" % (type(ex).__name__, ex)
            except Exception as ex:
                rec["error"] = "%s: %s" % (type(ex).__name__, ex)
            for t in self.dd.templates:
                self.hits[id(t.template)] = t.template.hits
            self.out["lines"].append(rec)

    def datepattern_of(name, basedir, opts):
        try:
            return read_datepattern(name, basedir, opts)
        except Exception:
            if basedir == config_dir:
                raise
        # The test filters include common.conf through a path that only resolves in
        # fail2ban's source tree; read them next to a copy of the stock filters instead.
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix="date-oracle-")
        try:
            shutil.copytree(os.path.join(config_dir, "filter.d"), os.path.join(tmp, "filter.d"))
            with open(os.path.join(basedir, "filter.d", name + ".conf")) as f:
                text = re.sub(r"(?m)^(before\s*=\s*)\S*/(common\.conf)\s*$", r"\1\2", f.read())
            with open(os.path.join(tmp, "filter.d", name + ".conf"), "w") as f:
                f.write(text)
            return read_datepattern(name, tmp, opts)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def read_datepattern(name, basedir, opts):
        reader = FilterReader(name, "jail", dict(opts), basedir=basedir)
        if not reader.read():
            raise ValueError("filter %s not found in %s" % (name, basedir))
        reader.getOptions({})
        for opt in reader.convert():
            if opt[0] == "set" and opt[2] == "datepattern":
                return opt[3]
        return None

    runs = []
    errors = []

    filters = []
    for basedir, keep in (
        (config_dir, lambda x: not x.endswith("common.conf") and x.endswith(".conf")),
        (test_config_dir, lambda x: x.startswith("zzz-") and x.endswith(".conf")),
    ):
        for f in sorted(os.listdir(os.path.join(basedir, "filter.d"))):
            if keep(f) and not f.startswith("."):
                filters.append((f.rpartition(".")[0], basedir))

    seen_files = set()
    for name, basedir in filters:
        if not os.path.isfile(os.path.join(logs_dir, name)):
            continue
        variants = {}  # fltName -> Run (shared like the sample test's filter cache)
        active = []  # [(fltName, opts)]
        filenames = [name]
        common = {}
        faildata = {}
        try:
            i = 0
            while i < len(filenames):
                filename = filenames[i]
                i += 1
                seen_files.add(filename)
                container = FileContainer(os.path.join(logs_dir, filename), "UTF-8", doOpen=True)
                container.waitForLineEnd = False
                ignore_block = False
                lines = iter(container)
                for line in lines:
                    m = annotation.match(line)
                    if m:
                        faildata = json.loads(m.group(2))
                        if m.group(1) == "fileOptions":
                            common = faildata
                            continue
                        if m.group(1) == "filterOptions":
                            active = []
                            ignore_block = False
                            for fd in faildata if isinstance(faildata, list) else [faildata]:
                                opts = dict(common)
                                opts.update(fd)
                                if opts.get("test.condition"):
                                    ignore_block = not eval(opts.get("test.condition"))
                                if not ignore_block:
                                    flt_opts = dict((k, v) for k, v in opts.items() if not k.startswith("test."))
                                    flt_name = opts.get("test.filter-name") or (str(flt_opts) if flt_opts else "")
                                    flt_name = name + flt_name
                                    if flt_name not in variants:
                                        dp = datepattern_of(name, basedir, flt_opts)
                                        variants[flt_name] = Run(name, flt_name, dp)
                                    active.append((flt_name, opts))
                            continue
                        if m.group(1) == "addFILE":
                            filenames.append(faildata)
                            continue
                        line = next(lines)
                    elif ignore_block or line.startswith("#") or not line.strip():
                        continue
                    else:
                        faildata = {}
                    if ignore_block:
                        continue
                    if not active:
                        if name not in variants:
                            variants[name] = Run(name, name, datepattern_of(name, basedir, {}))
                        active = [(name, {})]
                    line = line.rstrip("\r\n")
                    expect = faildata.get("time") if faildata.get("match") else None
                    for flt_name, opts in active:
                        if faildata.get("constraint") and not eval(faildata["constraint"]):
                            continue
                        if opts.get("logtype") == "journal":
                            continue
                        variants[flt_name].feed(line, expect)
        except Exception as ex:
            errors.append({"file": name, "error": "%s: %s" % (type(ex).__name__, ex)})
            continue
        runs.extend(v.out for v in variants.values())

    # Every sample file through the default templates.
    for root, _dirs, files in os.walk(logs_dir):
        for f in sorted(files):
            path = os.path.join(root, f)
            rel = os.path.relpath(path, logs_dir)
            run = Run(rel, "defaults", None)
            container = FileContainer(path, "UTF-8", doOpen=True)
            container.waitForLineEnd = False
            take_next = False
            for line in container:
                if take_next:
                    take_next = False
                elif annotation.match(line):
                    take_next = annotation.match(line).group(1) == "failJSON"
                    continue
                elif line.startswith("#") or not line.strip():
                    continue
                run.feed(line.rstrip("\r\n"))
            runs.append(run.out)

    if extra:
        with open(extra) as f:
            spec = json.load(f)
        for pattern in spec["patterns"]:
            try:
                run = Run("extra", pattern if pattern is not None else "defaults", pattern)
            except Exception as ex:
                errors.append({"file": "extra", "pattern": pattern, "error": "%s: %s" % (type(ex).__name__, ex)})
                continue
            for line in spec["lines"]:
                run.feed(line)
            runs.append(run.out)

    json.dump({"runs": runs, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
