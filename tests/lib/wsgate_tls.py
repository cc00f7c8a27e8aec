# SPDX-License-Identifier: MIT
"""wsgate_tls.py — a throw-away certificate authority for TLS tests, made
with the openssl CLI at test time (nothing is checked in), and the Python
ssl contexts that trust it.

    ca = TestCA(tmpdir)                  # ca.pem / ca.key in tmpdir
    cert, key = ca.issue("server")       # leaf for 127.0.0.1 and localhost
    ccert, ckey = ca.issue("client", client=True)
    ctx = ca.client_context()            # trusts ca.pem, TLS 1.2+
    pin = spki_sha256_b64(cert)          # for Chromium's SPKI allow-list

Keys are EC P-256 (fast to make and to use). A missing openssl binary is a
failure (FileNotFoundError), never a skip.
"""

import base64
import hashlib
import os
import ssl
import subprocess


def _run(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(args), r.stdout.decode()))


class TestCA:
    __test__ = False  # not a unittest case

    def __init__(self, directory, name="ca"):
        self.dir = directory
        self.name = name
        self.pem = os.path.join(directory, name + ".pem")
        self.key = os.path.join(directory, name + ".key")
        self.serial = 1
        _run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", self.key, "-out", self.pem, "-days", "2",
              "-subj", "/CN=wsgate test CA %s" % name], directory)

    def issue(self, stem, client=False, cn=None):
        """A leaf signed by this CA: (cert path, key path). Server leaves are
        for IP 127.0.0.1 and DNS localhost; client leaves for clientAuth."""
        cert = os.path.join(self.dir, stem + ".pem")
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        ext = os.path.join(self.dir, stem + ".ext")
        with open(ext, "w") as f:
            if client:
                f.write("extendedKeyUsage=clientAuth\n")
            else:
                f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                        "extendedKeyUsage=serverAuth\n")
        _run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", key, "-out", csr, "-subj", "/CN=%s" % (cn or stem)], self.dir)
        self.serial += 1
        _run(["x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key,
              "-set_serial", str(self.serial), "-out", cert, "-days", "2", "-extfile", ext],
             self.dir)
        return cert, key

    def client_context(self, cert=None, key=None):
        """An ssl context that trusts this CA only (hostname checked), TLS
        1.2+; cert/key: a client certificate to present."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.pem)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            ctx.load_cert_chain(cert, key)
        return ctx


def peer_cn(sock):
    """The CN of the certificate an SSLSocket's server presented."""
    for rdn in sock.getpeercert().get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def spki_sha256_b64(cert):
    """base64(SHA-256(DER SubjectPublicKeyInfo)) of a PEM certificate, read
    with the openssl CLI: what Chromium's --ignore-certificate-errors-spki-list
    takes to accept exactly that key."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub.stdout,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=True)
    return base64.b64encode(hashlib.sha256(der.stdout).digest()).decode()
