#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check_skips.py — fails a test run that skipped a test the allowlist does
not name, so that a skip is never a silent pass (`make test` runs it after
each ctest run).

    python3 tests/check_skips.py ALLOWLIST SKIPLOG

SKIPLOG: the lines "<ctest name>::<Class.test><TAB><reason>" that every
Python test file's main() (tests/lib/wsgate_util.py) appends to the file
named by WSGATE_SKIP_LOG, one per skipped test; no file: nothing skipped.
ALLOWLIST (tests/skip-allowlist.txt): one "<pattern> <reason>" per line,
the pattern an fnmatch pattern over "<ctest name>::<Class.test>"; blank
lines and lines starting with '#' are ignored; an entry needs a reason.

Exit 0: every skip is allowed; 1: a skip is not (each one printed, with
its reason); 2: bad usage or a malformed allowlist. Standard library only.
"""

import fnmatch
import sys


def read_allowlist(path):
    entries = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            if len(parts) < 2 or "::" not in parts[0]:
                raise ValueError("%s:%d: want '<ctest name>::<Class.test> <reason>'" % (path, n))
            entries.append((parts[0], parts[1]))
    return entries


def read_skips(path):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    return [tuple(line.split("\t", 1)) if "\t" in line else (line, "")
            for line in lines if line.strip()]


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    try:
        allowed = read_allowlist(argv[1])
    except (OSError, ValueError) as e:
        sys.stderr.write("check_skips: %s\n" % e)
        return 2
    bad = []
    for name, reason in read_skips(argv[2]):
        why = next((r for pat, r in allowed if fnmatch.fnmatchcase(name, pat)), None)
        if why is None:
            bad.append((name, reason))
        else:
            print("skipped (allowed: %s): %s: %s" % (why, name, reason))
    for name, reason in bad:
        print("SKIPPED, not in %s: %s: %s" % (argv[1], name, reason))
    if bad:
        print("check_skips: %d skipped test(s) not allowed: make them run, or add them to %s "
              "with the reason" % (len(bad), argv[1]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
