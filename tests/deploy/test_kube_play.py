# SPDX-License-Identifier: MIT
"""test_kube_play.py — what the Helm chart renders runs (label deploy):

builds the images (scripts/image.sh: localhost/debian:bookworm from
mmdebstrap, localhost/wsgate, wsgate-nats, wsgate-postgres), renders the
chart with the trial values (bundled NATS and PostgreSQL) plus host
networking on 127.0.0.1 and free ports, and runs the rendered objects with
`podman kube play` (podman 4.3, runc, deploy/docker/containers.conf):

- podman 4.3 cannot play Secrets, Services or Jobs, nor containerPorts with
  host networking (dropped: every port is on the host): each rendered Secret
  becomes a podman secret of the same name (a JSON Secret whose `data` holds
  the plain values, which is how 4.3 reads it), the Services' names are
  replaced by 127.0.0.1 in those values (host networking: every port is on
  the host), and the migration Job's pod template runs as a Pod that must
  exit 0;
- NATS and PostgreSQL pods, then the migration, api, dispatcher and edge
  pods, each waited for on its readiness endpoint;
- a client connects through the edge pod, its connect and message events
  reach a backend on the host as signed webhooks, an API send reaches the
  client;
- a rolling restart of the edge pod (podman pod stop: SIGTERM through tini,
  the drain; then the pod is replaced by playing the Deployment again) gives
  every client a 1001 close and every connection exactly one disconnect
  event; a client connects through the new pod.

Every pod, podman secret and volume the test made is removed at the end
(by name); the images stay in podman's store as a cache (podman rmi
localhost/wsgate localhost/wsgate-nats localhost/wsgate-postgres
localhost/debian:bookworm removes them). The test changes no host setting.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploytools as dt  # noqa: E402
import wsgate_test as w  # noqa: E402

CONF = os.path.join(dt.SRC, "deploy", "docker", "containers.conf")
# One release name per run, so two runs at once (two checkouts, two CI jobs
# on one host) never touch each other's pods, secrets or volumes.
RELEASE = "wsgkp%d" % (os.getpid() % 1000000)
FULL = RELEASE + "-wsgate"
API_SECRET = "kube-play-api-secret-0123456789abcdef"
ENV = dict(os.environ, CONTAINERS_CONF=CONF)


def podman(*args, check=True, timeout=300):
    r = subprocess.run(["podman"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=ENV, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("podman %s: %s" % (" ".join(args), r.stdout.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


def hostnet(obj):
    """podman 4.3 turns every containerPort into a port mapping and then
    refuses it with host networking ("PortMappings can only be used with
    Bridge or slirp4netns networking"); with host networking a port needs no
    mapping, so the declarations are dropped (probes name ports by number)."""
    spec = obj.get("spec", {}).get("template", {}).get("spec") or \
        (obj.get("spec") if obj["kind"] == "Pod" else None)
    if spec:
        for c in spec.get("containers", []):
            c.pop("ports", None)
    return obj


class KubePlayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pods, cls.secrets, cls.volumes = [], [], []
        cls.tmp = tempfile.mkdtemp(prefix="wsgate-kubeplay-")
        r = subprocess.run([os.path.join(dt.SRC, "scripts", "image.sh")], cwd=dt.SRC, env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=2400)
        if r.returncode != 0:
            raise AssertionError("scripts/image.sh failed:\n" + r.stdout.decode()[-4000:])
        cls.be = w.Backend()
        p = {k: w.free_port() for k in ("edge", "api", "ops", "dops", "nats", "natsmon", "pg")}
        cls.ports = p
        over = {
            "hostNetwork": True, "listenHost": "127.0.0.1",
            "ports": {"edge": p["edge"], "api": p["api"], "ops": p["ops"], "dispatchOps": p["dops"]},
            "secrets": {"apiJwtSecret": API_SECRET},
            "routes": [{"name": "chat", "path": "/chat", "backend": cls.be.url,
                        "webhookSecret": w.DEFAULT_WHSEC, "auth": {"required": False}}],
            "edge": {"shutdownGraceSeconds": 10, "preStopSeconds": 1},
            "edgeGroups": [{"name": "default", "routes": [], "replicas": 1, "maxConnections": 1000,
                            "resources": {}, "autoscaling": {"enabled": False},
                            "pdb": {"enabled": True, "maxUnavailable": 1},
                            "service": {"type": "ClusterIP", "port": p["edge"]},
                            "ingress": {"enabled": False}}],
            "api": {"replicas": 1},
            "dispatcherGroups": [{"name": "default", "replicas": 1}],
            "nats": {"bundled": True, "port": p["nats"], "monitorPort": p["natsmon"]},
            "postgresql": {"bundled": True, "port": p["pg"], "password": "kube-play-pg-pw"},
        }
        path = os.path.join(cls.tmp, "values.json")
        with open(path, "w") as f:
            json.dump(over, f)
        cls.objs = dt.render([os.path.join(dt.VALUES, "trial.yaml"), path], release=RELEASE)
        try:
            cls.start_all()
        except BaseException:
            cls.cleanup()
            raise

    # -- playing the rendered objects
    @classmethod
    def make_secrets(cls):
        for s in dt.by_kind(cls.objs, "Secret"):
            data = dict(s.get("stringData") or {})
            data.update({k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()})
            for svc in ("%s-nats" % FULL, "%s-postgresql" % FULL):  # Services -> the host
                data = {k: v.replace("@%s:" % svc, "@127.0.0.1:").replace("//%s:" % svc,
                                                                           "//127.0.0.1:")
                        for k, v in data.items()}
            name = s["metadata"]["name"]
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                    "data": data}
            f = os.path.join(cls.tmp, name + ".json")
            with open(f, "w") as out:
                json.dump(body, out)
            podman("secret", "rm", name, check=False)
            podman("secret", "create", name, f)
            cls.secrets.append(name)

    @classmethod
    def play(cls, objs, tag):
        f = os.path.join(cls.tmp, tag + ".yaml")
        objs = [hostnet(o) for o in objs]
        dt.write_manifest(objs, f)
        pods, vols = [], []
        for o in objs:
            if o["kind"] == "Deployment":
                pods.append(o["metadata"]["name"] + "-pod-0")
            elif o["kind"] == "Pod":
                pods.append(o["metadata"]["name"])
            elif o["kind"] in ("PersistentVolumeClaim", "ConfigMap"):
                vols.append(o["metadata"]["name"])  # podman makes a volume of each
            spec = o.get("spec", {}).get("template", {}).get("spec") or o.get("spec", {})
            for v in spec.get("volumes", []) if isinstance(spec, dict) else []:
                if "secret" in v:
                    vols.append(v["secret"]["secretName"])  # and of each Secret mounted
                elif "emptyDir" in v:
                    cls.volumes.append(v["name"])  # some become named volumes: removed at the end
        for p in pods:  # a pod of this run's names left by an earlier play in it
            podman("pod", "rm", "-f", p, check=False)
        for v in vols:  # not -f: a volume in use (a shared Secret's) is kept
            podman("volume", "rm", v, check=False)
        cls.pods += pods
        cls.volumes += vols
        return podman("kube", "play", "--network", "host", f, timeout=600)

    @classmethod
    def deployment(cls, name):
        d = dt.named(cls.objs, "Deployment", name)
        cm = [v["configMap"]["name"] for v in dt.pod_spec(d).get("volumes", [])
              if "configMap" in v]
        return [dt.named(cls.objs, "ConfigMap", c) for c in cm] + [d]

    @classmethod
    def wait_http(cls, port, path, what, timeout=180):
        def ok():
            try:
                return w.http_request("http://127.0.0.1:%d%s" % (port, path), timeout=2)[0] == 200
            except OSError:
                return False
        try:
            w.wait_until(ok, timeout, 0.2, what)
        except AssertionError:
            raise AssertionError("%s\n%s" % (what, cls.pod_logs()))

    @classmethod
    def pod_logs(cls):
        out = []
        for p in cls.pods:
            names = podman("ps", "-a", "--filter", "pod=" + p, "--format", "{{.Names}}",
                           check=False).split()
            for n in names:
                if n.endswith("-infra"):
                    continue
                out.append("--- %s ---\n%s" % (n, "\n".join(
                    podman("logs", n, check=False).splitlines()[-25:])))
        return "\n".join(out)

    @classmethod
    def run_migration(cls):
        job = dt.by_kind(cls.objs, "Job")[0]
        spec = dict(job["spec"]["template"]["spec"], restartPolicy="Never")
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": FULL + "-migrate", "labels": job["spec"]["template"]
                            ["metadata"]["labels"]}, "spec": spec}
        cm = dt.named(cls.objs, "ConfigMap", FULL + "-migrate")
        cls.play([cm, pod], "migrate")
        ctr = FULL + "-migrate-migrate"
        rc = podman("wait", ctr, timeout=300).strip()
        logs = podman("logs", ctr, check=False)
        if rc != "0":
            raise AssertionError("migration pod exited %s:\n%s" % (rc, logs))

    @classmethod
    def start_all(cls):
        cls.make_secrets()
        for comp in ("nats", "postgresql"):
            name = "%s-%s" % (FULL, comp)
            cls.play([dt.named(cls.objs, "PersistentVolumeClaim", name),
                      dt.named(cls.objs, "Deployment", name)], comp)
        cls.wait_http(cls.ports["natsmon"], "/healthz", "bundled NATS")
        w.wait_until(lambda: w.port_open(cls.ports["pg"]), 120, 0.2, "bundled PostgreSQL")
        cls.run_migration()
        cls.play(cls.deployment(FULL + "-api"), "api")
        cls.wait_http(cls.ports["api"], "/readyz", "api pod ready")
        cls.play(cls.deployment(FULL + "-dispatch-default"), "dispatch")
        cls.wait_http(cls.ports["dops"], "/readyz", "dispatcher pod ready")
        cls.start_edge()

    @classmethod
    def start_edge(cls):
        cls.play(cls.deployment(FULL + "-edge-default"), "edge")
        cls.wait_http(cls.ports["ops"], "/readyz", "edge pod ready")

    @classmethod
    def cleanup(cls):
        for p in reversed(cls.pods):
            podman("pod", "rm", "-f", "-t", "5", p, check=False)
        for s in cls.secrets:
            podman("secret", "rm", s, check=False)
        for v in sorted(set(cls.volumes)):
            podman("volume", "rm", "-f", v, check=False)
        cls.be.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls.cleanup()

    # -- the test
    def connect(self, known):
        ws = w.WsClient.connect("ws://127.0.0.1:%d/chat" % self.ports["edge"])
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and
                                e["connection_id"] not in known, timeout=30)
        known.add(ev["connection_id"])
        return ws, ev["connection_id"]

    def test_traffic_and_rolling_restart(self):
        known = set()
        api = w.ControlApi("http://127.0.0.1:%d" % self.ports["api"],
                           w.mint_jwt({"sub": "kube-play", "scope": "admin",
                                       "exp": int(time.time()) + 600}, "HS256", API_SECRET))
        ws, cid = self.connect(known)
        # webhooks are signed with the route's secret from the podman secret
        req = self.be.wait_for(lambda rs: [r for r in rs if b'"connect"' in r.body], 30)[0]
        w.verify_webhook(w.DEFAULT_WHSEC, req.headers, req.body)
        ws.send_text("hello through the pod")
        ev = self.be.wait_event(lambda e: e["type"] == "message" and e["connection_id"] == cid,
                                timeout=30)
        self.assertIn("hello through the pod", json.dumps(ev))
        r = api.send(cid, "hello from the api pod")
        self.assertLess(r.status, 300, r.body)
        self.assertEqual(ws.recv_text(timeout=w.scaled(15)), "hello from the api pod")

        clients = [(ws, cid)] + [self.connect(known) for _ in range(2)]
        edge_pod = FULL + "-edge-default-pod-0"
        podman("pod", "stop", "-t", "30", edge_pod, timeout=120)  # SIGTERM: the drain
        for c, _ in clients:
            w.wait_until(lambda: c.close_code is not None, 15, 0.05, "close frame")
            self.assertEqual(c.close_code, 1001, c.close_reason)
        podman("pod", "rm", "-f", edge_pod)
        self.pods.remove(edge_pod)
        self.start_edge()  # the replacement pod
        for _, c in clients:
            evs = self.be.wait_events(lambda e, c=c: e["type"] == "disconnect" and
                                      e["connection_id"] == c, 1, timeout=30)
            self.assertEqual(len(w.dedupe(evs)), 1, evs)
        ws2, cid2 = self.connect(known)
        ws2.send_text("after the restart")
        self.be.wait_event(lambda e: e["type"] == "message" and e["connection_id"] == cid2,
                           timeout=30)
        time.sleep(1)  # a late duplicate disconnect would show now
        for _, c in clients:
            evs = [e for e in self.be.events() if e["type"] == "disconnect" and
                   e["connection_id"] == c]
            self.assertEqual(len(w.dedupe(evs)), 1, evs)
        ws2.close()


if __name__ == "__main__":
    w.main()
