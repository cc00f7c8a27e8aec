# SPDX-License-Identifier: MIT
"""test_api_tls.py — https:// on the control API (api.tls), through the real
binary, with CAs made by the openssl CLI at test time:

- an https client that trusts the CA gets answers (TLS 1.2+); a plain
  http:// request gets none;
- mutual TLS (client_ca_file): a client without a certificate, or with one
  another CA signed, fails the TLS handshake; one the CA signed is served;
- SIGHUP reloads the certificate: a keep-alive connection opened before
  still gets answers, a new connection sees the new certificate; a broken
  file keeps the old one.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import http.client
import os
import shutil
import signal
import ssl

import wsgate_test as w
from wsgate_tls import TestCA, peer_cn


class ApiTls(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.ca = TestCA(self.tmp.path)
        cert, key = self.ca.issue("api", cn="api-one")
        self.cert_file = self.tmp.join("live.pem")
        self.key_file = self.tmp.join("live.key")
        shutil.copy(cert, self.cert_file)
        shutil.copy(key, self.key_file)

    def start(self, **tls):
        self.gw = self.gateway([w.route("/chat")], config={"api": {"tls": dict(
            {"cert_file": self.cert_file, "key_file": self.key_file}, **tls)}})
        self.base = "https://127.0.0.1:%d" % self.gw.api_port
        self.token = self.gw.api_token("admin")

    def conn(self, ctx):
        c = http.client.HTTPSConnection("127.0.0.1", self.gw.api_port, timeout=w.scaled(10),
                                        context=ctx)
        self.addCleanup(c.close)
        return c

    def get(self, c, path="/v1/connections?limit=1"):
        c.request("GET", path, headers={"Authorization": "Bearer " + self.token})
        r = c.getresponse()
        return r.status, r.read()

    def test_https_and_no_plain_http(self):
        self.start()
        api = w.ControlApi(self.base, self.token, ssl_context=self.ca.client_context())
        r = api.get("/v1/connections?limit=1")
        self.assertEqual(r.status, 200, r.body)
        c = self.conn(self.ca.client_context())
        self.assertEqual(self.get(c)[0], 200)
        self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
        plain = http.client.HTTPConnection("127.0.0.1", self.gw.api_port, timeout=w.scaled(5))
        self.addCleanup(plain.close)
        with self.assertRaises((OSError, http.client.HTTPException)):
            plain.request("GET", "/healthz")
            plain.getresponse().read()

    def test_mutual_tls_refuses_clients_without_a_signed_certificate(self):
        client_ca = TestCA(self.tmp.path, "clientca")
        good_cert, good_key = client_ca.issue("good-client", client=True)
        rogue = TestCA(self.tmp.path, "rogue")
        bad_cert, bad_key = rogue.issue("bad-client", client=True)
        self.start(client_ca_file=client_ca.pem)
        for ctx in (self.ca.client_context(), self.ca.client_context(bad_cert, bad_key)):
            c = self.conn(ctx)
            with self.assertRaises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                self.get(c)  # the handshake (or its first read, TLS 1.3) fails
        c = self.conn(self.ca.client_context(good_cert, good_key))
        self.assertEqual(self.get(c)[0], 200)

    def test_sighup_reloads_certificate_keeping_connections(self):
        self.start()
        old = self.conn(self.ca.client_context())
        self.assertEqual(self.get(old)[0], 200)
        self.assertEqual(peer_cn(old.sock), "api-one")
        with open(self.key_file, "w") as f:
            f.write("broken\n")
        os.kill(self.gw.pid, signal.SIGHUP)
        self.gw.wait_log("api: certificates not reloaded", timeout=10)
        mid = self.conn(self.ca.client_context())
        self.assertEqual(self.get(mid)[0], 200)
        self.assertEqual(peer_cn(mid.sock), "api-one")
        cert2, key2 = self.ca.issue("api2", cn="api-two")
        shutil.copy(cert2, self.cert_file)
        shutil.copy(key2, self.key_file)
        os.kill(self.gw.pid, signal.SIGHUP)
        self.gw.wait_log("api: certificates reloaded", timeout=10)
        new = self.conn(self.ca.client_context())
        self.assertEqual(self.get(new)[0], 200)
        self.assertEqual(peer_cn(new.sock), "api-two")
        # the keep-alive connection made before the reload is still served
        self.assertEqual(self.get(old)[0], 200)
        self.assertEqual(peer_cn(old.sock), "api-one")
        self.assertTrue(self.gw.running())


if __name__ == "__main__":
    w.main()
