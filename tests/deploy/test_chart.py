# SPDX-License-Identifier: MIT
"""test_chart.py — the Helm chart deploy/helm/wsgate, offline (label deploy):

for three value sets (tests/deploy/values: trial with bundled NATS and
PostgreSQL, production with external NATS/PostgreSQL, TLS CA Secret,
existing Secret, Ingress and ServiceMonitor, several edge and dispatcher
groups):
- `helm lint --strict` passes and `helm template` renders;
- every rendered object is valid against the Kubernetes schemas
  (kubernetes-models, validate.mjs), and the validator does report a broken
  object;
- every wsgate pod's config (its ConfigMap) with its environment (the
  WSGATE_*_FILE variables pointing into its Secret) passes `wsgate
  check-config`;
- the shapes an operator relies on: edge terminationGracePeriodSeconds >=
  preStop + shutdown_grace, probes on the ops port, non-root read-only
  security context, the migration Job as a hook, each edge group with only
  its routes;
- a wrong value (type, enum, unknown key) fails at `helm template` through
  values.schema.json;
- deploy/helm/wsgate/README.md's value table lists exactly the schema's
  values.
"""

import base64
import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploytools as dt  # noqa: E402
import wsgate_test as w  # noqa: E402

WSGATE_BIN = os.environ.get("WSGATE_BIN") or os.path.join(dt.SRC, "build", "wsgate")
SETS = ("trial", "production", "groups")
# the Secret an operator creates for the production value set
PROD_SECRET = {
    "api-jwt-secret": "prod-api-secret-0123456789abcdef0123456",
    "store-dsn": "postgres://wsgate:pw@pg.prod:5432/wsgate?sslmode=verify-full&"
                 "sslrootcert=/etc/wsgate/tls/pg-ca/ca.crt",
    "nats-url": "nats://user:pw@nats.prod:4222",
    "webhook-secret-chat": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "client-jwt-secret-chat": "client-secret-0123456789abcdef0123456789",
}


def values(name):
    return os.path.join(dt.VALUES, name + ".yaml")


def secret_data(objs, secret_name):
    for o in objs:
        if o["kind"] == "Secret" and o["metadata"]["name"] == secret_name:
            out = dict(o.get("stringData") or {})
            out.update({k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()})
            return out
    return dict(PROD_SECRET)  # an existing Secret, not rendered


def check_config(objs, workload, container):
    """Runs wsgate check-config on what the pod of `workload` would read:
    its ConfigMap at /etc/wsgate/config and its Secret at
    /etc/wsgate/secrets, with its env. Returns (rc, output)."""
    spec = dt.pod_spec(workload)
    vols = {v["name"]: v for v in spec["volumes"]}
    cm = dt.named(objs, "ConfigMap", vols["config"]["configMap"]["name"])
    secret = secret_data(objs, vols["secrets"]["secret"]["secretName"])
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "config"))
        os.makedirs(os.path.join(d, "secrets"))
        with open(os.path.join(d, "config", "wsgate.yaml"), "w") as f:
            f.write(cm["data"]["wsgate.yaml"])
        for k, v in secret.items():
            with open(os.path.join(d, "secrets", k), "w") as f:
                f.write(v)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"].replace("/etc/wsgate/", d + "/")
            else:
                env[e["name"]] = workload["metadata"]["name"] + "-0"  # fieldRef: pod name
        r = subprocess.run([WSGATE_BIN, "check-config", "--config", env.pop("WSGATE_CONFIG",
                            os.path.join(d, "config", "wsgate.yaml"))],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=60)
        return r.returncode, r.stdout.decode(errors="replace"), cm["data"]["wsgate.yaml"]


def schema_leaves(node, prefix=""):
    """Dotted paths of the schema's documented values ([] for array items)."""
    out = []
    props = node.get("properties")
    if node.get("type") == "array" and "properties" in node.get("items", {}):
        return schema_leaves(node["items"], prefix + "[]")
    if props and node.get("type") == "object":
        for k, v in props.items():
            out += schema_leaves(v, prefix + "." + k if prefix else k)
        return out
    return [prefix]


class ChartTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(WSGATE_BIN, os.X_OK):
            raise AssertionError("no wsgate binary at %s (set WSGATE_BIN)" % WSGATE_BIN)
        cls.rendered = {s: dt.render([values(s)]) for s in SETS}

    def test_lint_strict(self):
        for s in SETS:
            r = dt.run_helm("lint", "--strict", dt.CHART, "-f", values(s), check=False)
            self.assertEqual(r.returncode, 0, "%s: %s%s" % (s, r.stdout.decode(),
                                                           r.stderr.decode()))

    def test_objects_valid(self):
        for s in SETS:
            rc, out = dt.validate(self.rendered[s])
            self.assertEqual(rc, 0, "%s:\n%s" % (s, out))
            self.assertIn(" 0 invalid", out)
        # the validator must be able to say no
        broken = copy.deepcopy(dt.by_kind(self.rendered["trial"], "Deployment")[0])
        broken["spec"]["replicas"] = "two"
        rc, out = dt.validate([broken])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("INVALID", out)

    def test_every_pod_config_passes_check_config(self):
        for s in SETS:
            objs = self.rendered[s]
            n = 0
            for w in dt.by_kind(objs, "Deployment") + dt.by_kind(objs, "Job"):
                for c in dt.pod_spec(w)["containers"]:
                    if not c["image"].split(":")[0].endswith("/wsgate"):
                        continue
                    rc, out, cfg = check_config(objs, w, c)
                    self.assertEqual(rc, 0, "%s %s: %s" % (s, w["metadata"]["name"], out))
                    if s == "production" and "-edge-" in w["metadata"]["name"]:
                        # edge.trustedProxies reaches every edge's config
                        self.assertRegex(cfg, r"trusted_proxies:\s*- 10\.0\.0\.0/8\s*- "
                                         r"['\"]?fd00::/8")
                    n += 1
            self.assertGreaterEqual(n, 4, s)  # edge(s), api, dispatcher(s), migrate

    def test_check_config_catches_a_bad_rendered_config(self):
        objs = copy.deepcopy(self.rendered["trial"])
        cm = dt.named(objs, "ConfigMap", "wsg-wsgate-edge-default-config")
        cm["data"]["wsgate.yaml"] = cm["data"]["wsgate.yaml"].replace("0.0.0.0:8080",
                                                                      "0.0.0.0:99999")
        edge = dt.named(objs, "Deployment", "wsg-wsgate-edge-default")
        rc, out, _ = check_config(objs, edge, dt.pod_spec(edge)["containers"][0])
        self.assertNotEqual(rc, 0, out)
        self.assertIn("edge.listen", out)

    def test_edge_drains_within_grace_and_is_probed(self):
        for s in SETS:
            objs = self.rendered[s]
            vals = {"trial": (20, 5), "production": (30, 10), "groups": (20, 5)}[s]
            for d in dt.by_kind(objs, "Deployment"):
                comp = d["metadata"]["labels"].get("app.kubernetes.io/component")
                spec = dt.pod_spec(d)
                c = spec["containers"][0]
                if comp in ("edge", "api", "dispatch"):
                    self.assertTrue(spec["securityContext"]["runAsNonRoot"])
                    self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
                    self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
                    self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
                    self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
                    self.assertIn("resources", c)
                if comp == "edge":
                    grace, prestop = vals
                    self.assertGreaterEqual(spec["terminationGracePeriodSeconds"],
                                            grace + prestop, d["metadata"]["name"])
                    self.assertEqual(c["lifecycle"]["preStop"]["exec"]["command"][-1],
                                     str(prestop))
                    self.assertEqual(c["readinessProbe"]["httpGet"]["port"], 9090)
                    cmname = [v for v in spec["volumes"] if v["name"] == "config"][0]
                    cfg = dt.named(objs, "ConfigMap", cmname["configMap"]["name"])
                    self.assertIn("shutdown_grace: %ds" % grace, cfg["data"]["wsgate.yaml"])
            job = dt.by_kind(objs, "Job")[0]
            hook = job["metadata"]["annotations"]["helm.sh/hook"]
            self.assertIn("pre-upgrade", hook)
            self.assertIn("post-install" if s == "trial" else "pre-install", hook)
            self.assertEqual(dt.pod_spec(job)["containers"][0]["args"][0], "migrate")
            kinds = {o["kind"] for o in objs}
            self.assertTrue({"HorizontalPodAutoscaler", "PodDisruptionBudget", "Service",
                             "ConfigMap"} <= kinds, kinds)

    def test_groups_split_routes(self):
        objs = self.rendered["groups"]
        want = {"interactive": ["/chat", "/game"], "devices": ["/iot", "/ops"]}
        for g, paths in want.items():
            d = dt.named(objs, "Deployment", "wsg-wsgate-edge-" + g)
            c = dt.pod_spec(d)["containers"][0]
            rc, out, cfg = check_config(objs, d, c)
            self.assertEqual(rc, 0, out)
            self.assertEqual(re.findall(r"path: (/\w+)", cfg), paths)
            self.assertIn("routes: %d" % len(paths), out)
        self.assertEqual(len([d for d in dt.by_kind(objs, "Deployment")
                              if "-dispatch-" in d["metadata"]["name"]]), 2)
        self.assertEqual(dt.named(objs, "Ingress", "wsg-wsgate-edge-interactive")["spec"]
                         ["rules"][0]["http"]["paths"][1]["path"], "/game")
        prod = self.rendered["production"]
        self.assertTrue(dt.by_kind(prod, "ServiceMonitor"))
        self.assertFalse(dt.by_kind(prod, "Secret"))  # the operator's own Secret is used

    def test_schema_refuses_wrong_values(self):
        for bad in ("edge.shutdownGraceSeconds=soon", "edgeGroups[0].service.type=Magic",
                    "nats.bundled=maybe", "notAValue=1", "routes[0].path=chat"):
            r = dt.run_helm("template", "x", dt.CHART, "-f", values("trial"), "--set", bad,
                            check=False)
            self.assertNotEqual(r.returncode, 0, bad)
            self.assertIn("schema", r.stderr.decode(), bad)

    def test_readme_table_matches_schema(self):
        with open(os.path.join(dt.CHART, "values.schema.json")) as f:
            schema = json.load(f)
        leaves = set(schema_leaves(schema))
        with open(os.path.join(dt.CHART, "README.md")) as f:
            readme = f.read()
        rows = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
        self.assertEqual(sorted(leaves - rows), [], "values missing from README.md")
        self.assertEqual(sorted(rows - leaves), [], "README.md lists values not in the schema")
        vals = dt.run_helm("show", "values", dt.CHART).stdout.decode()
        self.assertIn("edgeGroups:", vals)


if __name__ == "__main__":
    w.main()
