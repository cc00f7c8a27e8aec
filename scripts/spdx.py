#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Every source file of wsgate names its licence on an SPDX line.

  scripts/spdx.py          list the tracked source files without one (exit 1 if any)
  scripts/spdx.py --fix    add the line where it is missing

"Source file" means what git tracks with one of the suffixes or names in
KINDS, outside vendored and generated paths (SKIP). The line goes first,
after a "#!" line or an XML declaration if there is one, in the comment
syntax of the file's kind. tests/lib/selftest_spdx.py runs the check, so a
new file without the line fails `make test`.
"""
import os
import re
import subprocess
import sys

TAG = "SPDX-License-Identifier: MIT"

# suffix or file name -> (line before the text, line after)
KINDS = {
    ".c": ("/* ", " */"),
    ".h": ("/* ", " */"),
    ".py": ("# ", ""),
    ".sh": ("# ", ""),
    ".cmake": ("# ", ""),
    "CMakeLists.txt": ("# ", ""),
    "Makefile": ("# ", ""),
    ".js": ("// ", ""),
    ".mjs": ("// ", ""),
    ".html": ("<!-- ", " -->"),
    ".tpl": ("{{/* ", " */}}"),
    "Dockerfile": ("# ", ""),
    ".Dockerfile": ("# ", ""),
    ".service": ("# ", ""),
    ".lua": ("-- ", ""),
    ".sql": ("-- ", ""),
    ".h.in": ("/* ", " */"),
    ".cmake.in": ("# ", ""),
    ".pc.in": ("# ", ""),
    ".yaml": ("# ", ""),
    ".ci/run": ("# ", ""),
}

# Paths whose files are not ours to label or not code: test corpora and data,
# generated docs, lock files.
SKIP = re.compile(r"^(tests/fuzz/corpus/|tests/data/|docs/|.*node_modules/|.*package(-lock)?\.json$)")


def kind_of(path):
    if "/templates/" in path and path.startswith("deploy/helm/"):
        return ("{{/* ", " */}}")  # a Helm template: renders to nothing
    base = os.path.basename(path)
    if base in KINDS or path in KINDS:
        return KINDS.get(base) or KINDS[path]
    for suffix, k in KINDS.items():
        if suffix.startswith(".") and base.endswith(suffix):
            return k
    return None


def sources(root):
    out = subprocess.run(["git", "-C", root, "ls-files"], check=True, capture_output=True,
                         text=True).stdout.split("\n")
    return [p for p in out if p and not SKIP.match(p) and kind_of(p)
            and os.path.isfile(os.path.join(root, p))]


def has_tag(text):
    return TAG in "\n".join(text.split("\n")[:3])


def add_tag(path, text):
    pre, post = kind_of(path)
    line = pre + TAG + post + "\n"
    lines = text.split("\n")
    first = lines[0] if lines else ""
    if first.startswith("#!") or first.startswith("<?xml") or first.lower().startswith("<!doctype"):
        return first + "\n" + line + "\n".join(lines[1:])
    return line + text


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fix = "--fix" in sys.argv[1:]
    missing = []
    for p in sources(root):
        full = os.path.join(root, p)
        with open(full, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
        if has_tag(text):
            continue
        if fix:
            with open(full, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(add_tag(p, text))
        else:
            missing.append(p)
    for p in missing:
        print("no SPDX line: " + p)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
