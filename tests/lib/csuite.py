# SPDX-License-Identifier: MIT
"""csuite.py — run a built cmocka suite from a Python integration test.

find_build_binary(name, override_env): the unit-test binary `name` from the
build tree of $WSGATE_BIN (or the path in $override_env).

run_with_server_control(binary, env, server, url_env, control_env, timeout):
runs the suite with `url_env` pointing at the server and two pipes named in
`control_env` ("<write fd>,<read fd>" from the suite's side) on which the
suite asks "stop" / "start" (its restart tests) or "pause" / "resume" (a
hung server) and waits for "ok"; each request calls that method of
server. Returns (returncode, output
text, list of requests served, with "<what> failed: …" for a failure).
Standard library only.
"""

import glob
import os
import subprocess
import threading


def find_build_binary(name, override_env=None):
    explicit = os.environ.get(override_env) if override_env else None
    if explicit:
        return explicit
    wsgate = os.environ.get("WSGATE_BIN", "")
    if not wsgate:
        raise RuntimeError("WSGATE_BIN is not set")
    build = os.path.dirname(os.path.realpath(wsgate))
    for cand in ("tests/" + name, name, "bin/" + name, "../tests/" + name):
        path = os.path.normpath(os.path.join(build, cand))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    for depth in range(1, 4):
        for path in glob.glob(os.path.join(build, *(["*"] * depth), name)):
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    raise RuntimeError("%s not found in the build tree of %s" % (name, wsgate))


def _serve(server, cmd_r, ans_w, log):
    with os.fdopen(cmd_r, "r") as cmds, os.fdopen(ans_w, "w") as answers:
        for line in cmds:
            what = line.strip()
            try:
                if what == "stop":
                    server.stop()
                elif what == "start":
                    server.start()
                elif what == "pause":  # a hung server: SIGSTOP, then SIGCONT
                    server.pause()
                elif what == "resume":
                    server.resume()
                else:
                    raise ValueError("unknown request %r" % what)
                log.append(what)
                answers.write("ok\n")
            except Exception as e:  # the C side fails on a missing "ok"
                log.append("%s failed: %s" % (what, e))
                answers.write("no\n")
            answers.flush()


def run_with_server_control(binary, server, url_env, control_env, timeout=400):
    cmd_r, cmd_w = os.pipe()  # suite -> us
    ans_r, ans_w = os.pipe()  # us -> suite
    env = dict(os.environ, **{url_env: server.url, control_env: "%d,%d" % (cmd_w, ans_r)})
    log = []
    thread = threading.Thread(target=_serve, args=(server, cmd_r, ans_w, log), daemon=True)
    try:
        proc = subprocess.Popen([binary], env=env, pass_fds=(cmd_w, ans_r),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finally:
        os.close(cmd_w)
        os.close(ans_r)
    thread.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        thread.join(timeout=60)
        return None, out.decode(errors="replace"), log
    thread.join(timeout=60)
    return proc.returncode, out.decode(errors="replace"), log
