# SPDX-License-Identifier: MIT
"""test_sdk_install.py — libwsgate as a user gets it: `cmake --install`
into a temporary prefix, then, outside the source tree,
  - the chat example built through pkg-config (its Makefile) and through
    CMake's find_package(wsgate) (its CMakeLists.txt), each started against
    the installed library alone and answering its page;
  - the complete backend of docs/sdk-c.md (its ```c block, with the port
    and API URL swapped for free ones) compiled through pkg-config and run
    against a real gateway: a message from one client reaches both.
The installed tree must hold the headers under include/wsgate/ and no
gateway header.

Env: BUILD_DIR (the build tree to install), WSGATE_BIN, WSGATE_SOURCE_DIR,
SDK_EXTRA_CFLAGS (the sanitizer flags of a -DWSGATE_SANITIZE=ON tree),
PYTHONPATH=tests/lib.
"""

import os
import re
import shutil
import signal
import subprocess
import urllib.request

import wsgate_test as w

SRC = os.environ.get("WSGATE_SOURCE_DIR", ".")
BUILD = os.environ.get("BUILD_DIR", "")
EXTRA = os.environ.get("SDK_EXTRA_CFLAGS", "").strip()


class SdkInstall(w.GatewayTestCase):
    def sh(self, cmd, env=None, cwd=None):
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd,
                           timeout=w.scaled(300))
        self.assertEqual(p.returncode, 0, "%s\n%s\n%s" % (" ".join(cmd), p.stdout, p.stderr))
        return p.stdout

    def setUp(self):
        super().setUp()
        self.assertTrue(os.path.isfile(os.path.join(BUILD, "CMakeCache.txt")), BUILD)
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.prefix = self.tmp.join("prefix")
        self.sh(["cmake", "--install", BUILD, "--prefix", self.prefix])
        self.env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(self.prefix, "lib", "pkgconfig"),
                        LD_LIBRARY_PATH=os.path.join(self.prefix, "lib"),
                        CFLAGS="-O1 -Wall -Wextra -Werror -Wno-unused-parameter " + EXTRA)

    def run_chat(self, binary):
        """Starts an out-of-tree chat build; it must serve its page and
        stop cleanly on SIGTERM."""
        port = w.free_port()
        env = dict(self.env, CHAT_PORT=str(port),
                   CHAT_PAGE=os.path.join(SRC, "sdk-c/examples/chat/index.html"))
        p = subprocess.Popen([binary], env=env, stderr=subprocess.PIPE, text=True)
        try:
            w.wait_until(lambda: w.port_open(port) or p.poll() is not None, 10, 0.05, "chat")
            with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
                self.assertIn("bearer.", r.read().decode())
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            err = p.communicate(timeout=w.scaled(20))[1]
        self.assertEqual(p.returncode, 0, err)

    def test_layout(self):
        inc = os.path.join(self.prefix, "include")
        self.assertEqual(sorted(os.listdir(os.path.join(inc, "wsgate"))),
                         ["client.h", "token.h", "version.h", "webhook.h", "wsgate.h"])
        self.assertFalse(os.path.exists(os.path.join(inc, "common")))
        lib = os.path.join(self.prefix, "lib")
        self.assertEqual(os.readlink(os.path.join(lib, "libwsgate.so")), "libwsgate.so.0")
        self.assertTrue(os.path.exists(os.path.join(lib, "libwsgate.a")))
        out = self.sh(["pkg-config", "--modversion", "wsgate"], env=self.env)
        self.assertRegex(out.strip(), r"^\d+\.\d+\.\d+$")

    def test_example_through_pkg_config(self):
        src = self.tmp.join("chat-pc")
        shutil.copytree(os.path.join(SRC, "sdk-c/examples/chat"), src)
        self.sh(["make", "-C", src], env=self.env)
        self.run_chat(os.path.join(src, "wsgate-chat"))

    def test_example_through_find_package(self):
        src = self.tmp.join("chat-cmake")
        shutil.copytree(os.path.join(SRC, "sdk-c/examples/chat"), src)
        b = self.tmp.join("chat-cmake-build")
        self.sh(["cmake", "-S", src, "-B", b, "-DCMAKE_PREFIX_PATH=" + self.prefix,
                 "-DCMAKE_C_FLAGS=" + self.env["CFLAGS"]], env=self.env)
        self.sh(["cmake", "--build", b], env=self.env)
        self.run_chat(os.path.join(b, "wsgate-chat"))

    def test_docs_backend(self):
        doc = open(os.path.join(SRC, "docs/sdk-c.md")).read()
        blocks = [b for b in re.findall(r"```c\n(.*?)```", doc, re.S) if "int main" in b]
        self.assertEqual(len(blocks), 1, "docs/sdk-c.md: one complete backend")
        code = blocks[0]
        self.assertLess(code.count("\n"), 60, "the minimal backend is under 60 lines")
        be_port = w.free_port()
        gw = self.gateway([w.route("/chat", "http://127.0.0.1:%d/events" % be_port)])
        self.assertIn(", 9000,", code)
        self.assertIn('"http://127.0.0.1:8081"', code)
        code = code.replace(", 9000,", ", %d," % be_port)
        code = code.replace('"http://127.0.0.1:8081"', '"%s"' % gw.api_url)
        c = self.tmp.join("backend.c")
        with open(c, "w") as f:
            f.write(code)
        exe = self.tmp.join("backend")
        flags = self.sh(["pkg-config", "--cflags", "--libs", "wsgate", "libmicrohttpd"],
                        env=self.env).split()
        self.sh(["cc", "-std=c11", "-D_GNU_SOURCE"] + self.env["CFLAGS"].split() +
                [c, "-o", exe] + flags, env=self.env)
        p = subprocess.Popen([exe], env=dict(self.env, API_SECRET=gw.api_secret),
                             stderr=subprocess.PIPE, text=True)
        try:
            w.wait_until(lambda: w.port_open(be_port) or p.poll() is not None, 10, 0.05,
                         "backend")
            self.assertIsNone(p.poll(), "the docs backend exited")
            a = self.client(gw.edge_url + "/chat")
            b = self.client(gw.edge_url + "/chat")
            w.wait_until(lambda: len([r for r in gw.store().query(
                "SELECT channel FROM subscriptions") if r["channel"] == "all"]) == 2,
                10, 0.05, "both subscribed to all")
            a.send_text("hello everyone")
            self.assertEqual(a.recv_text(10), "hello everyone")
            self.assertEqual(b.recv_text(10), "hello everyone")
        finally:
            p.kill()  # it serves until a signal; its exit status is not the point
            p.communicate(timeout=w.scaled(20))


if __name__ == "__main__":
    w.main()
