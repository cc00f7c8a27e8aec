# SPDX-License-Identifier: MIT
"""test_version.py — one version, reported the same everywhere, with a
licence and a changelog entry beside it.

- `wsgate --version` prints "wsgate X.Y.Z" and exits 0;
- the changelog has a "## [X.Y.Z]" section and LICENSE is the MIT licence
  of "the wsgate authors";
- the build tree's generated wsgate/version.h (libwsgate's
  WSGATE_VERSION_STRING, what wsgate_version() returns: tests/sdk) and
  wsgate.pc say the same X.Y.Z;
- the dispatcher's webhooks carry "User-Agent: wsgate/X.Y.Z".

Env: WSGATE_BIN (its directory is the build tree), WSGATE_SOURCE_DIR,
PYTHONPATH=tests/lib.
"""

import os
import re

import wsgate_test as w

SRC = os.environ.get("WSGATE_SOURCE_DIR", ".")


def binary_version():
    p = w.run_wsgate(["--version"], timeout=30, universal_newlines=True)
    assert p.returncode == 0, p.stderr
    m = re.fullmatch(r"wsgate (\d+\.\d+\.\d+)\n", p.stdout)
    assert m, repr(p.stdout)
    return m.group(1)


class Version(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        w.require_binary(self)
        self.version = binary_version()
        self.build = os.path.dirname(os.path.abspath(os.environ["WSGATE_BIN"]))

    def read(self, *parts):
        with open(os.path.join(*parts), encoding="utf-8") as f:
            return f.read()

    def test_changelog_and_licence(self):
        log = self.read(SRC, "CHANGELOG.md")
        self.assertIn("## [%s]" % self.version, log)
        lic = self.read(SRC, "LICENSE")
        self.assertTrue(lic.startswith("MIT License\n"), lic[:40])
        self.assertRegex(lic, r"Copyright \(c\) \d{4} the wsgate authors")
        self.assertIn("THE SOFTWARE IS PROVIDED \"AS IS\"", lic)

    def test_sdk_header_and_pkg_config(self):
        hdr = self.read(self.build, "include", "wsgate", "version.h")
        self.assertIn('#define WSGATE_VERSION_STRING "%s"' % self.version, hdr)
        pc = self.read(self.build, "sdk-c", "wsgate.pc")
        self.assertIn("\nVersion: %s\n" % self.version, pc)

    def test_webhook_user_agent(self):
        be = self.backend()
        gw = self.gateway([w.route("/chat", be.url)])
        ws = self.client(gw.edge_url + "/chat")
        ws.close(1000, "bye")
        req = be.wait_for(lambda rs: rs[0] if rs else None, 20, "a webhook")
        self.assertEqual(req.headers.get("user-agent"), "wsgate/" + self.version)


if __name__ == "__main__":
    w.main()
