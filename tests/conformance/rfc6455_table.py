#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""rfc6455_table.py — runs tests/e2e/test_conformance_rfc6455.py against a
wsgate binary and writes its results as the "Conformance" table of
docs/edge.md (between the rfc6455-conformance markers), the way
tests/reliability/run.py writes docs/reliability.md.

    python3 tests/conformance/rfc6455_table.py --bin build/wsgate [--doc docs/edge.md]

Exit status: 0 when every case passed (deviations that the test accepts
count as passed and are labelled so), 1 when any failed (the table is
written either way, with FAIL rows), 2 when the test could not run.
Standard library only.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
BEGIN, END = "<!-- rfc6455-conformance:begin -->", "<!-- rfc6455-conformance:end -->"
SECTION_NAMES = {"1": "Framing", "2": "Pings and pongs", "3": "Reserved bits", "4": "Opcodes",
                 "5": "Fragmentation", "6": "UTF-8", "7": "Close handling", "9": "Limits"}


def observed(r):
    a = r["actual"]
    parts = []
    if a["deliver"]:
        parts.append("delivers %d" % a["deliver"])
    if a["pongs"]:
        parts.append("%d pong%s" % (a["pongs"], "" if a["pongs"] == 1 else "s"))
    if r["expect_close"] is None:
        parts.append("stays open")
    elif a["close"] == 1006:
        parts.append("TCP closed, no close frame")
    else:
        parts.append("close %d" % a["close"])
    return ", ".join(parts)


def verdict(r):
    if not r["ok"]:
        return "**FAIL**"
    if r["note"].startswith("deviation"):
        return "deviation: " + r["note"][len("deviation: "):]
    if r["expect_close"] and r["actual"]["close"] == 1006:
        return "pass (§7.1.7 allows failing without a close frame)"
    return "pass" + (" (%s)" % r["note"] if r["note"] else "")


def render(results):
    lines = ["| case | the client sends | RFC 6455 | wsgate | verdict |", "|---|---|---|---|---|"]
    last = None
    for r in sorted(results, key=lambda r: [int(x) for x in r["id"].split(".")]):
        sec = r["id"].split(".")[0]
        if sec != last:
            lines.append("| **%s** | **%s** | | | |" % (sec, SECTION_NAMES.get(sec, "")))
            last = sec
        lines.append("| %s | %s | %s | %s | %s |" % (r["id"], r["what"].replace("|", "\\|"),
                                                     r["rfc"], observed(r), verdict(r)))
    passed = sum(1 for r in results if r["ok"])
    return "\n".join(["%d cases, %d passed, %d failed." % (len(results), passed,
                                                          len(results) - passed), ""] + lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(SOURCE, "build", "wsgate"))
    ap.add_argument("--doc", default=os.path.join(SOURCE, "docs", "edge.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.json")
        env = dict(os.environ, WSGATE_BIN=os.path.abspath(args.bin), WSGATE_SOURCE_DIR=SOURCE,
                   PYTHONPATH=os.path.join(SOURCE, "tests", "lib"),
                   WSGATE_CONFORMANCE_RESULTS=out)
        rc = subprocess.call([sys.executable, "-u", os.path.join(
            SOURCE, "tests", "e2e", "test_conformance_rfc6455.py")], env=env)
        if not os.path.exists(out):
            print("rfc6455_table: the test wrote no results (exit %d)" % rc, file=sys.stderr)
            return 2
        with open(out) as fh:
            results = json.load(fh)
    with open(args.doc) as fh:
        doc = fh.read()
    if BEGIN not in doc or END not in doc:
        print("rfc6455_table: %s has no %s ... %s markers" % (args.doc, BEGIN, END),
              file=sys.stderr)
        return 2
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(args.doc, "w") as fh:
        fh.write(head + BEGIN + "\n" + render(results) + "\n" + END + tail)
    return 0 if all(r["ok"] for r in results) and rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
