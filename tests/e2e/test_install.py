# SPDX-License-Identifier: MIT
"""test_install.py — `make install` as a packager or an operator runs it,
into a DESTDIR staging root:

- PREFIX=/usr: /usr/bin/wsgate, the man page wsgate.1 (renders with man -l
  and names every command), /etc/wsgate/wsgate.yaml (the example
  configuration, which the installed binary's check-config accepts), the
  systemd unit wsgate.service starting that binary with that file, the
  licence and changelog;
- the installed binary reports the build's version;
- a second install keeps an edited wsgate.yaml;
- another PREFIX puts the configuration under PREFIX/etc/wsgate and the
  unit points there.

Env: WSGATE_BIN (its directory is the build tree to install), WSGATE_SOURCE_DIR,
PYTHONPATH=tests/lib.
"""

import os
import re
import subprocess

import wsgate_test as w

SRC = os.environ.get("WSGATE_SOURCE_DIR", ".")
COMMANDS = ("standalone", "edge", "api", "dispatch", "migrate", "token", "check-config", "secret")


class Install(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        w.require_binary(self)
        self.build = os.path.dirname(os.path.abspath(w.WSGATE_BIN))
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)

    def make_install(self, destdir, prefix):
        env = {k: v for k, v in os.environ.items()
               if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR")}
        p = subprocess.run(["make", "-C", SRC, "install", "BUILD=" + self.build,
                            "DESTDIR=" + destdir, "PREFIX=" + prefix],
                           capture_output=True, text=True, env=env, timeout=w.scaled(600))
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-3000:])
        return p.stdout

    def run_installed(self, binary, args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
        return w.run_wsgate(args, binary=binary, env=env, timeout=30, universal_newlines=True)

    def test_usr(self):
        root = self.tmp.join("root")
        self.make_install(root, "/usr")
        binary = os.path.join(root, "usr/bin/wsgate")
        self.assertTrue(os.access(binary, os.X_OK), binary)
        want = w.run_wsgate(["--version"], timeout=30, universal_newlines=True).stdout
        self.assertRegex(want, r"^wsgate \d+\.\d+\.\d+\n$")
        self.assertEqual(self.run_installed(binary, ["--version"]).stdout, want)

        man = os.path.join(root, "usr/share/man/man1/wsgate.1")
        page = subprocess.run(["man", "-l", man], capture_output=True, text=True,
                              env=dict(os.environ, MANWIDTH="80"),
                              timeout=60)
        self.assertEqual(page.returncode, 0, page.stderr)
        text = re.sub(".\x08", "", page.stdout)  # no bold or underline by overstrike
        self.assertIn("wsgate " + want.split()[1], text)  # the version, filled in
        for cmd in COMMANDS:
            self.assertRegex(text, r"(?m)^ {7}%s\b" % cmd)  # an entry of COMMANDS

        conf = os.path.join(root, "etc/wsgate/wsgate.yaml")
        r = self.run_installed(binary, ["check-config", "--config", conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(root, "usr/lib/systemd/system/wsgate.service")) as f:
            unit = f.read()
        self.assertIn("\nExecStart=/usr/bin/wsgate standalone --config /etc/wsgate/wsgate.yaml\n",
                      unit)
        self.assertIn("\nWantedBy=multi-user.target\n", unit)
        for doc in ("LICENSE", "CHANGELOG.md"):
            self.assertTrue(os.path.isfile(os.path.join(root, "usr/share/doc/wsgate", doc)), doc)

        # an operator's edits survive the next install
        with open(conf, "a") as f:
            f.write("# edited\n")
        self.make_install(root, "/usr")
        with open(conf) as f:
            self.assertTrue(f.read().endswith("# edited\n"))

    def test_other_prefix(self):
        root = self.tmp.join("root")
        self.make_install(root, "/opt/wsgate")
        self.assertTrue(os.path.isfile(os.path.join(root, "opt/wsgate/etc/wsgate/wsgate.yaml")))
        self.assertFalse(os.path.exists(os.path.join(root, "etc")))
        with open(os.path.join(root, "opt/wsgate/lib/systemd/system/wsgate.service")) as f:
            self.assertIn("ExecStart=/opt/wsgate/bin/wsgate standalone --config "
                          "/opt/wsgate/etc/wsgate/wsgate.yaml\n", f.read())
        self.assertTrue(os.path.isfile(os.path.join(root, "opt/wsgate/share/man/man1/wsgate.1")))


if __name__ == "__main__":
    w.main()
