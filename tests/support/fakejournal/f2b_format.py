#!/usr/bin/env python3
"""Runs fail2ban's own FilterSystemd.formatJournalEntry over journal records, as the
oracle for warden's journal lines.

Reads `journalctl --output=json` records on stdin, one per line; converts each field the way
python-systemd's Reader does (PIDs to int, timestamps to datetime/timedelta, byte arrays to
bytes, repeated fields to lists); prints one JSON object per record: {"text", "time"}.
Needs fail2ban's Python package on PYTHONPATH. python-systemd itself is not needed: a stub
module satisfies the import. The log encoding is argv[1] (default utf-8).
"""

import datetime
import json
import os
import sys
import tempfile
import types
import uuid


def install_stub():
    systemd = types.ModuleType("systemd")
    journal = types.ModuleType("systemd.journal")
    journal.__version__ = "252"
    journal.NOP, journal.APPEND, journal.INVALIDATE = 0, 1, 2

    class Reader:  # never used: formatJournalEntry does not touch the reader
        def __init__(self, *a, **k):
            pass

    journal.Reader = Reader
    systemd.journal = journal
    sys.modules["systemd"] = systemd
    sys.modules["systemd.journal"] = journal


def to_bytes_or_str(v):
    if isinstance(v, list) and all(isinstance(b, int) for b in v):
        b = bytes(v)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return b
    return v


def convert(field, value):
    if isinstance(value, list) and not all(isinstance(b, int) for b in value):
        return [convert(field, v) for v in value]
    value = to_bytes_or_str(value)
    try:
        if field in ("_PID", "SYSLOG_PID"):
            return int(value)
        if field in ("__REALTIME_TIMESTAMP", "_SOURCE_REALTIME_TIMESTAMP"):
            return datetime.datetime.fromtimestamp(int(value) / 1000000)
        if field == "__MONOTONIC_TIMESTAMP":
            return (datetime.timedelta(microseconds=int(value)), uuid.UUID(int=0))
        if field == "_SOURCE_MONOTONIC_TIMESTAMP":
            return datetime.timedelta(microseconds=int(value))
    except (ValueError, TypeError):
        pass
    return value


def main():
    install_stub()
    from fail2ban.server.filtersystemd import FilterSystemd

    enc = sys.argv[1] if len(sys.argv) > 1 else "utf-8"

    class Dummy:
        jailName = "oracle"

        def getLogEncoding(self):
            return enc

        def getJrnEntTime(self, logentry):
            return FilterSystemd.getJrnEntTime(self, logentry)

    d = Dummy()
    for line in sys.stdin:
        if not line.strip():
            continue
        rec = json.loads(line)
        entry = {k: convert(k, v) for k, v in rec.items()}
        (parts, t) = FilterSystemd.formatJournalEntry(d, entry)
        print(json.dumps({"text": parts[2], "time": t}))


if __name__ == "__main__":
    main()
