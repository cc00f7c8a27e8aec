# SPDX-License-Identifier: MIT
"""test_doc_blocks.py — runs the shell blocks of docs/*.md and of every
README.md of the tree (not under tests/ or build trees), so that a doc example that stops working fails the
test suite (docs/testing.md, "Tested docs", says the rules for writers).

Per file, in document order, every fenced block tagged sh, bash, shell or
console (of a console block only the lines starting with "$ ") runs in one
bash (`set -eE -o pipefail`: variables carry over from block to block) in
a fresh directory that looks like a clone of the repository (a symlink per
top-level entry; `build` holds only `wsgate`, the tested binary), with:
- `wsgate` (the tested build) first on PATH, and two shims before it:
  `curl` fails on an HTTP status >= 400 (--fail-with-body), and `make`
  runs `make` / `make build` as a no-op (the build is the one under test)
  and `make run` as scripts/run-example.sh on that build; any other target
  fails (mark its block skip);
- a network namespace of its own (unshare(2): loopback only), so the ports
  the docs name (8080, 18080, ...) are used verbatim and cannot collide
  with anything else on the machine, including tests run in parallel;
- TMPDIR and XDG_RUNTIME_DIR in the test's temp dir.
A file gets FILE_TIMEOUT seconds. Every process its blocks start and leave
behind is stopped by PID (the runner is their subreaper) and fails the
file: a doc must say how to stop what it starts.

Markers (HTML comments, invisible on a rendered page) right before a block:
  <!-- doc-test: skip (REASON) -->   not run; printed and counted
  <!-- doc-test: expect TEXT -->     the block's output must contain TEXT
and on their own, run at that point in the file (context a reader has but
a script needs, e.g. a gateway the page assumes is running):
  <!-- doc-test: run
  shell lines
  -->
Any other fence language (json, yaml, c, python, text, ...) is not a shell
block and is not run; a fence without a language, an unknown language or
an unknown marker fails the test: nothing is skipped silently.

Env: WSGATE_BIN, WSGATE_SOURCE_DIR (ctest sets both).
"""

import ctypes
import fcntl
import glob
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from wsgate_util import descendants

SRC = os.path.abspath(os.environ.get("WSGATE_SOURCE_DIR", "."))
BIN = os.path.abspath(os.environ.get("WSGATE_BIN", "build/wsgate"))
FILE_TIMEOUT = 300
SHELL_LANGS = {"sh", "bash", "shell", "console"}
OTHER_LANGS = {"text", "json", "yaml", "sql", "c", "python", "nginx", "js", "html", "ini",
               "toml", "diff", "dockerfile", "makefile"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(.*?)\s*(-->)?\s*$")


def doc_files():
    """docs/*.md and every README.md of the tree (not build trees, not
    node_modules, not tests/: those describe test data)."""
    files = glob.glob(os.path.join(SRC, "docs", "*.md"))
    for top, dirs, names in os.walk(SRC):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "build"))
                         and d not in ("node_modules", "tests"))
        files += [os.path.join(top, "README.md")] if "README.md" in names else []
    return sorted(files)


class DocError(Exception):
    pass


def parse(path, text):
    """The steps of one markdown file: ("run", line, code, expects) for a
    shell block or a run marker, ("skip", line, reason) for a skipped block.
    Raises DocError for what it cannot classify."""
    lines, steps, pending, i = text.split("\n"), [], [], 0
    where = lambda n: "%s:%d" % (os.path.relpath(path, SRC), n + 1)
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            word, _, arg = m.group(1).partition(" ")
            if word == "run":
                body, j = [], i + 1
                while j < len(lines) and lines[j].strip() != "-->":
                    body.append(lines[j])
                    j += 1
                if j == len(lines) or m.group(2) or pending:
                    raise DocError(where(i) + ": a run marker is a comment of its own, "
                                   "its code on the next lines, ended by a line '-->'")
                steps.append(("run", i, "\n".join(body), [], "hidden"))
                i = j + 1
                continue
            if not m.group(2):
                raise DocError(where(i) + ": a doc-test marker other than run fits on one line")
            if word == "skip":
                if not re.fullmatch(r"\(.+\)", arg.strip()):
                    raise DocError(where(i) + ": skip needs a reason: <!-- doc-test: skip (why) -->")
            elif word != "expect" or not arg.strip():
                raise DocError(where(i) + ": unknown doc-test marker %r (skip, expect, run)" % word)
            pending.append((word, arg.strip(), i))
            i += 1
            continue
        f = FENCE.match(line)
        if not f:
            if line.strip() and pending:
                raise DocError(where(pending[0][2]) + ": marker not right before a fenced block")
            i += 1
            continue
        indent, fence, lang = f.group(1), f.group(2), f.group(3).lower()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise DocError(where(i) + ": fenced block never closed")
        skip = [a for w, a, _ in pending if w == "skip"]
        expects = [a for w, a, _ in pending if w == "expect"]
        if lang in SHELL_LANGS:
            if lang == "console":
                body = [x[2:] for x in body if x.startswith("$ ")]
            if skip:
                steps.append(("skip", i, skip[0][1:-1]))
            else:
                steps.append(("run", i, "\n".join(body), expects, lang))
        elif lang in OTHER_LANGS:
            if pending:
                raise DocError(where(i) + ": doc-test markers on a %s block, which never runs" % lang)
        else:
            raise DocError(where(i) + ": fence language %r is neither a shell language (%s) nor "
                           "a known other one (%s): tag it" % (lang, ", ".join(sorted(SHELL_LANGS)),
                                                               ", ".join(sorted(OTHER_LANGS))))
        pending = []
        i = j + 1
    if pending:
        raise DocError(where(pending[0][2]) + ": marker not right before a fenced block")
    return steps


# ---- isolation ---------------------------------------------------------------

def own_network():
    """Moves this process into a network namespace of its own with loopback
    up (and, when not root, a user namespace mapping the same uid). Call
    before any thread starts; children inherit it."""
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newnet, clone_newuser = 0x40000000, 0x10000000
    uid, gid = os.getuid(), os.getgid()
    flags = clone_newnet | (0 if uid == 0 else clone_newuser)
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) for the doc test")
    if uid != 0:
        for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                           ("gid_map", "%d %d 1" % (gid, gid))):
            with open("/proc/self/" + name, "w") as f:
                f.write(text)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = struct.pack("16sH14x", b"lo", 0)
    flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
    fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
    s.close()
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of the blocks stay ours


def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def stop_leftovers(grace):
    """Waits up to grace seconds for the blocks' processes to end, then
    stops the rest by PID (SIGTERM, then SIGKILL); returns them."""
    deadline = time.monotonic() + grace
    while True:
        reap()
        left = descendants()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    named = [(p, cmdline(p)) for p in descendants(depth=1)] if left else []
    # the top ones first (a script such as cluster.sh stops its own
    # processes in order), then whatever is left, then SIGKILL
    for depth, sig, wait in ((1, signal.SIGTERM, 30), (None, signal.SIGTERM, 10),
                             (None, signal.SIGKILL, 5)):
        for p in descendants(depth=depth):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while descendants(depth=depth) and time.monotonic() < deadline:
            reap()
            time.sleep(0.2)
    reap()
    return named


# ---- running -------------------------------------------------------------------

SHIMS = {
    "curl": """#!/bin/sh
# doc test: an HTTP status >= 400 fails the command, as it fails the example
for d in $(echo "$PATH" | tr : ' '); do
  [ "$d" = "$(dirname "$0")" ] && continue
  [ -x "$d/curl" ] && exec "$d/curl" --fail-with-body "$@"
done
echo "doc test: curl is not installed" >&2; exit 127
""",
    "make": """#!/bin/sh
# doc test: the build is the one under test; `make run` runs it
case "$*" in
  ""|build) exit 0 ;;
  run) exec scripts/run-example.sh build/wsgate examples/standalone.yaml ;;
  *) echo "doc test: 'make $*' is not run by the doc test: mark its block skip" >&2; exit 2 ;;
esac
""",
}


def make_clone(tmp):
    """A directory that looks like a clone of the repository."""
    work = os.path.join(tmp, "clone")
    os.makedirs(work)
    for name in os.listdir(SRC):
        if name in ("build", ".git") or name.startswith("build-"):
            continue
        os.symlink(os.path.join(SRC, name), os.path.join(work, name))
    # build/wsgate is the tested binary; the build tree itself stays out of
    # reach (a doc's cmake there would reconfigure the tree under test)
    os.makedirs(os.path.join(work, "build"))
    os.symlink(BIN, os.path.join(work, "build", "wsgate"))
    shims = os.path.join(tmp, "shims")
    os.makedirs(shims)
    for name, text in SHIMS.items():
        with open(os.path.join(shims, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(shims, name), 0o755)
    return work, shims


def script_for(steps, rel):
    """The bash script of one file, and the doc line (1-based) of each
    script line that comes from a block (console blocks: approximate)."""
    out = ["set -eE -o pipefail",
           "trap '__doc_rc=$?; echo; echo \"@@doc-test failed: exit $__doc_rc at script line $LINENO: $BASH_COMMAND\"' ERR"]
    doc_line = {}
    for n, st in enumerate(steps):
        if st[0] == "skip":
            continue
        out.append("printf '\\n@@doc-test step %d (%s:%d)\\n'" % (n, rel, st[1] + 1))
        for k, code in enumerate(st[2].split("\n")):
            out.append(code)
            doc_line[len(out)] = st[1] + 2 + k
        out.append("printf '\\n@@doc-test done %d\\n'" % n)
    return "\n".join(out) + "\n", doc_line


def run_file(path, timeout=FILE_TIMEOUT):
    """Runs one markdown file's blocks; returns (ok, report lines)."""
    rel = os.path.relpath(path, SRC)
    with open(path) as f:
        steps = parse(path, f.read())
    report = []
    for st in steps:
        if st[0] == "skip":
            report.append("SKIP %s:%d (%s)" % (rel, st[1] + 1, st[2]))
    runs = [st for st in steps if st[0] == "run"]
    if not runs:
        return True, report + ["%s: no shell block to run, %d skipped" % (rel, len(report))]
    tmp = tempfile.mkdtemp(prefix="wsgate-doctest-")
    os.chmod(tmp, 0o755)  # PostgreSQL runs as its own user under it (deploy/local)
    try:
        work, shims = make_clone(tmp)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("WSGATE_") and k not in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS")}
        env.update(PATH=shims + ":" + os.path.join(work, "build") + ":" + env.get("PATH", "/usr/bin:/bin"),
                   TMPDIR=tmp, XDG_RUNTIME_DIR=tmp, HOME=env.get("HOME", tmp))
        script = os.path.join(tmp, "doc.sh")
        text, doc_line = script_for(steps, rel)
        with open(script, "w") as f:
            f.write(text)
        logp = os.path.join(tmp, "doc.log")
        with open(logp, "w") as log:
            proc = subprocess.Popen(["bash", script], cwd=work, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                status = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                status = "timeout after %d s" % timeout
        left = stop_leftovers(10)
        with open(logp, errors="replace") as f:
            output = f.read()
        ok, started, done = status == 0 and not left, {}, set()
        for m in re.finditer(r"^@@doc-test (step|done) (\d+).*$", output, re.M):
            if m.group(1) == "step":
                started[int(m.group(2))] = m.end()
            else:
                done.add(int(m.group(2)))
        for n, st in enumerate(steps):
            if st[0] != "run":
                continue
            what = "%s:%d (%s)" % (rel, st[1] + 1, st[4])
            if n in done:
                seg = output[started[n]:output.find("\n@@doc-test done %d\n" % n)]
                missing = [e for e in st[3] if e not in seg]
                if missing:
                    ok = False
                    report.append("FAIL %s: output lacks %r" % (what, missing))
                else:
                    report.append("ok   " + what)
            elif n in started:
                m = re.search(r"^@@doc-test failed: exit (\d+) at script line (\d+): (.*)$",
                              output[started[n]:], re.M)
                why = "exit %s" % status if isinstance(status, int) else status
                if m and int(m.group(2)) in doc_line:
                    why = "%s:%d exit %s: %s" % (rel, doc_line[int(m.group(2))], m.group(1),
                                                 m.group(3))
                report.append("FAIL %s: %s" % (what, why))
            else:
                report.append("not reached " + what)
        if status == 0 and len(done) != len(runs):
            ok = False
            report.append("FAIL: the script ended before its last block (an exit in a block?)")
        for pid, cmd in left:
            report.append("FAIL: left running, stopped by the test: pid %d %s" % (pid, cmd))
        if not ok:
            report.append("---- output of %s ----\n%s" % (rel, output[-12000:]))
        return ok, report
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RunnerChecks(unittest.TestCase):
    """The runner itself: what must fail does."""

    def run_text(self, text, timeout=60):
        d = tempfile.mkdtemp(prefix="wsgate-doctest-self-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "x.md")
        with open(path, "w") as f:
            f.write(text)
        return run_file(path, timeout)

    def test_a_failing_command_fails(self):
        ok, rep = self.run_text("```sh\ntrue\n```\n\n```sh\nwsgate no-such-command\necho after\n```\n")
        self.assertFalse(ok, rep)
        self.assertTrue(any(r.startswith("FAIL") and ":5 (sh)" in r for r in rep), rep)

    def test_an_http_error_fails(self):
        ok, rep = self.run_text("```sh\nwsgate secret\npython3 -m http.server -b 127.0.0.1 8000 "
                                ">/dev/null 2>&1 & P=$!\nuntil curl -s http://127.0.0.1:8000/ "
                                ">/dev/null; do sleep 0.2; done\ncurl -s -d x http://127.0.0.1:8000/"
                                "\nkill $P\n```\n")
        self.assertFalse(ok, rep)
        self.assertTrue(any(r.startswith("FAIL") and "exit 22" in r for r in rep), rep)

    def test_expect_and_leftovers(self):
        ok, rep = self.run_text("<!-- doc-test: expect whsec_ -->\n```sh\nwsgate secret\n```\n")
        self.assertTrue(ok, rep)
        ok, rep = self.run_text("<!-- doc-test: expect nothing-like-this -->\n```sh\ntrue\n```\n")
        self.assertFalse(ok, rep)
        ok, rep = self.run_text("```sh\nsleep 600 &\n```\n")
        self.assertFalse(ok, rep)
        self.assertTrue(any("left running" in r and "sleep 600" in r for r in rep), rep)

    def test_unclassified_blocks_fail(self):
        for text in ("```\nls\n```\n", "```zsh\nls\n```\n", "<!-- doc-test: skip -->\n```sh\nls\n```\n",
                     "<!-- doc-test: maybe -->\n```sh\nls\n```\n",
                     "<!-- doc-test: skip (x) -->\ntext\n```sh\nls\n```\n"):
            with self.assertRaises(DocError, msg=text):
                self.run_text(text)

    def test_skip_and_run_markers(self):
        ok, rep = self.run_text("<!-- doc-test: skip (needs a cluster) -->\n```sh\nfalse\n```\n"
                                "<!-- doc-test: run\nX=hidden\n-->\n<!-- doc-test: expect hidden -->"
                                "\n```console\n$ echo $X\nnot a command\n```\n")
        self.assertTrue(ok, rep)
        self.assertIn("SKIP", rep[0])


class Docs(unittest.TestCase):
    pass


def _add(path):
    name = "test_" + re.sub(r"\W", "_", os.path.relpath(path, SRC)).lower()

    def t(self):
        ok, report = run_file(path)
        report.append("%s: %d blocks ran, %d skipped" % (
            os.path.relpath(path, SRC), sum(r.startswith("ok   ") and "(hidden)" not in r
                                            for r in report),
            sum(r.startswith("SKIP ") for r in report)))
        print("\n".join(report))
        self.assertTrue(ok, "a block of %s failed (above)" % os.path.relpath(path, SRC))
    setattr(Docs, name, t)


for _p in doc_files():
    _add(_p)


if __name__ == "__main__":
    if not os.access(BIN, os.X_OK):
        sys.exit("test_doc_blocks: WSGATE_BIN=%s is not a built wsgate" % BIN)
    own_network()
    from wsgate_util import main
    main()
