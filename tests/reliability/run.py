#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""run.py — `make reliability`: runs every case of the reliability tables
(bad input on the edge and on the control API, security, faults, cluster
faults, overload) against the real wsgate binary and writes the report
(docs/reliability.md): per group a table of case, expected, observed and
verdict, headed by the date and the commit.

    python3 tests/reliability/run.py --bin build/wsgate --out docs/reliability.md
    ... --only 'api|SSRF'          # groups or cases whose key/name matches
    ... --overload-seconds 30      # the overload case's sending time (default 10 s)

Expected is what docs/contract.md and issue 13 require, never what today's code
does; a case fails when what it observed differs. Exit status: 0 when no
case failed (cases that cannot run here are listed as "not run"), 1 when
any failed, 2 when the harness itself could not run. The report is written
either way.

Standard library only. Each case is bounded by an alarm (its own timeout),
every process it started is stopped by PID when it ends, and the whole run
stops its leftovers at exit (atexit) or on SIGTERM/SIGINT.
"""

import argparse
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HARDKILL = os.path.join(HERE, "hardkill.md")  # `make test-faults` results, copied verbatim
SOURCE = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(SOURCE, "tests", "lib"),
                os.path.join(SOURCE, "tests", "integration")]


class CaseTimeout(Exception):
    pass


class Interrupted(BaseException):
    pass


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(SOURCE, "build", "wsgate"))
    ap.add_argument("--out", default=os.path.join(SOURCE, "docs", "reliability.md"))
    ap.add_argument("--asan-bin", default="",
                    help="an ASan/UBSan build: the bad-input and security groups run again on it")
    ap.add_argument("--only", default="", help="regex on group keys and case names")
    ap.add_argument("--overload-seconds", type=float,
                    default=float(os.environ.get("RELIABILITY_OVERLOAD_SECONDS", "10")))
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    return ap.parse_args()


def commit_id(out_path):
    """Short HEAD, plus "dirty" when the tree differs from it (the report
    file itself does not count: it is this run's output)."""
    def git(*a):
        return subprocess.run(["git", "-C", SOURCE] + list(a), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=30).stdout.decode()
    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    rel_out = os.path.relpath(os.path.abspath(out_path), SOURCE)
    # porcelain lines are "XY path": the status columns may start with a space
    dirty = [ln for ln in git("status", "--porcelain").splitlines()
             if ln.strip() and ln[3:] != rel_out]
    return head + (" dirty" if dirty else "")


def binary_kind(path):
    with open(path, "rb") as f:
        data = f.read()
    return "ASan/UBSan build" if b"__asan_init" in data else "release build"


def run_case(case, fx, opts):
    """(observed, verdict, seconds) of one case; never raises except
    Interrupted."""
    from rel import NotRun, Scope, fmt_exc
    sc = Scope(opts)
    t0 = time.monotonic()
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(CaseTimeout()))
    signal.alarm(int(case.timeout))
    try:
        try:
            observed, ok = case.fn(fx, sc)
            verdict = "pass" if ok else "FAIL"
        except NotRun as e:
            observed, verdict = "not run: %s" % e, "not run"
        except CaseTimeout:
            observed, verdict = "did not finish within %d s" % case.timeout, "FAIL"
        except Exception as e:
            observed, verdict = "harness error: %s" % fmt_exc(e), "FAIL"
    finally:
        signal.alarm(0)
        problems = sc.close()  # also when interrupted
    if fx is not None:
        try:
            problems += fx.check()
        except Exception as e:  # the next cases will show it too
            problems.append("repairing the shared fixture failed: %s" % fmt_exc(e))
    if problems and verdict != "not run":
        observed += "; " + "; ".join(problems)
        verdict = "FAIL"
    return observed, verdict, time.monotonic() - t0


def run_group(g, variant, opts, selected, results):
    from rel import fmt_exc
    fx, setup_error = None, None
    if g.setup:
        signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(CaseTimeout()))
        signal.alarm(180)
        try:
            fx = g.setup(opts)
        except Interrupted:
            raise
        except BaseException as e:  # every case of the group then fails visibly
            print("  setup of %s failed: %s" % (g.key, e), file=sys.stderr, flush=True)
            setup_error = "setup failed: %s" % (fmt_exc(e) if not isinstance(e, CaseTimeout)
                                                 else "did not finish within 180 s")
        finally:
            signal.alarm(0)
    try:
        for case in selected:
            if setup_error:
                results.append((case, variant, setup_error, "FAIL", 0.0))
                continue
            observed, verdict, secs = run_case(case, fx, opts)
            results.append((case, variant, observed, verdict, secs))
            print("  %-5s %-60s %5.1fs  %s" % (verdict, case.name[:60], secs, observed[:100]),
                  flush=True)
    finally:
        if fx is not None:
            for p in fx.close():
                print("  (teardown of %s: %s)" % (g.key, p), flush=True)


def md_cell(text):
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


VERDICT_MD = {"pass": "pass", "FAIL": "**FAIL**", "not run": "*not run*"}
VARIANT_TITLE = {None: "", "asan": " — ASan/UBSan build"}


def sections(results):
    """[(group, variant, its results)] in run order."""
    out = []
    for r in results:
        g, v = r[0].group, r[1]
        if not out or out[-1][0] is not g or out[-1][1] != v:
            out.append((g, v, []))
        out[-1][2].append(r)
    return out


def write_report(path, opts, results, meta):
    lines = ["# wsgate reliability report", "",
             "Generated by `make reliability` (`tests/reliability/run.py`): every case runs the "
             "real `wsgate` binary with real WebSocket clients, HTTP backends, nats-server and "
             "PostgreSQL on loopback ports. *Expected* is what docs/contract.md and issue 13 require "
             "(where they are silent: what the NATS server and HAProxy hold their own servers "
             "to), never what the code does today; *observed* is what the case saw. "
             "Do not edit by hand: run `make reliability` again.", "",
             "| | |", "|---|---|",
             "| date | %s |" % meta["date"],
             "| commit | `%s` |" % meta["commit"],
             "| binary | %s |" % meta["bins"],
             "| machine | %s, %d CPUs, run as %s |" % (meta["machine"], os.cpu_count() or 0,
                                                     "root" if os.geteuid() == 0 else
                                                     "non-root"),
             "| run time | %.0f s |" % meta["seconds"],
             "| overload | %.0f s of sending |" % opts.overload_seconds]
    if opts.only:
        lines.append("| selection | only cases matching `%s` |" % md_cell(opts.only))
    if meta.get("interrupted"):
        lines.append("| **interrupted** | the run was stopped: cases not listed did not run |")
    lines += ["", "## Summary", "", "| group | cases | pass | fail | not run |",
              "|---|---|---|---|---|"]
    secs = sections(results)
    for g, v, rs in secs:
        title = g.title + VARIANT_TITLE[v]
        n = {x: sum(1 for r in rs if r[3] == x) for x in ("pass", "FAIL", "not run")}
        lines.append("| [%s](#%s) | %d | %d | %d | %d |" % (
            title, anchor(title), len(rs), n["pass"], n["FAIL"], n["not run"]))
    lines += ["", "%d cases: %d pass, %d fail, %d not run." % (
        len(results), sum(r[3] == "pass" for r in results),
        sum(r[3] == "FAIL" for r in results), sum(r[3] == "not run" for r in results))]
    for g, v, rs in secs:
        lines += ["", "## " + g.title + VARIANT_TITLE[v], "", g.intro, "",
                  "| # | case | expected | observed | verdict |", "|---|---|---|---|---|"]
        for i, (case, _, observed, verdict, _) in enumerate(rs, 1):
            lines.append("| %d | %s | %s | %s | %s |" % (i, md_cell(case.name),
                                                       md_cell(case.expected),
                                                       md_cell(observed), VERDICT_MD[verdict]))
    with open(HARDKILL) as f:  # measured by ctest, not by this run (its own heading)
        lines += ["", f.read().rstrip()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def anchor(title):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def interrupted(*_):
    raise Interrupted()


def main():
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    opts = parse_args()
    for b in [opts.bin] + ([opts.asan_bin] if opts.asan_bin else []):
        if not os.path.exists(b):
            print("no wsgate binary at %s (make build)" % b, file=sys.stderr)
            return 2
    os.environ.setdefault("WSGATE_SOURCE_DIR", SOURCE)
    os.environ["RELIABILITY_OVERLOAD_SECONDS"] = str(opts.overload_seconds)
    os.environ["WSGATE_BIN"] = os.path.abspath(opts.bin)
    import rel
    import cases_edge, cases_api, cases_security, cases_faults, cases_overload  # noqa: F401,E401
    import cases_cluster  # noqa: F401
    only = re.compile(opts.only, re.I) if opts.only else None
    plan = []  # (group, variant, cases, binary)
    for g in rel.GROUPS:
        cs = [c for c in g.cases if not only or only.search(g.key) or only.search(c.name)]
        if cs:
            plan.append((g, None, cs, opts.bin))
    if opts.asan_bin:
        plan += [(g, "asan", cs, opts.asan_bin) for g, _, cs, _ in list(plan) if g.asan]
    if opts.list:
        for g, v, cs, b in plan:
            print("%s%s: %s (%s)" % (g.key, "/" + v if v else "", g.title, b))
            for c in cs:
                print("  - %s  [expected: %s]" % (c.name, c.expected))
        return 0

    started = time.monotonic()
    bins = ["`%s` (%s)" % (os.path.relpath(os.path.abspath(b), SOURCE), binary_kind(b))
            for b in [opts.bin] + ([opts.asan_bin] if opts.asan_bin else [])]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit_id(opts.out), "bins": ", ".join(bins),
            "machine": platform.machine()}
    results = []
    status = 0
    try:
        for g, v, cs, b in plan:
            rel.set_binary(b)
            print("%s%s (%d cases)" % (g.title, VARIANT_TITLE[v], len(cs)), flush=True)
            run_group(g, v, opts, cs, results)
    except Interrupted:
        print("interrupted: writing the report of the cases run so far", file=sys.stderr)
        meta["interrupted"] = True
        status = 2
    meta["seconds"] = time.monotonic() - started
    write_report(opts.out, opts, results, meta)
    failed = [r for r in results if r[3] == "FAIL"]
    print("%d cases, %d failed, %d not run; report: %s (%.0f s)" % (
        len(results), len(failed), sum(r[3] == "not run" for r in results), opts.out,
        meta["seconds"]))
    return status or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
