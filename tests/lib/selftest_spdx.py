#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""selftest_spdx.py — the repository names its licence: LICENSE is MIT and
every tracked source file has an SPDX line (scripts/spdx.py lists those
without; `scripts/spdx.py --fix` adds it)."""
import os
import subprocess
import sys
import unittest

import wsgate_test as w

SRC = os.environ.get("WSGATE_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Licence(unittest.TestCase):
    def test_licence_file_is_mit(self):
        with open(os.path.join(SRC, "LICENSE")) as f:
            text = f.read()
        self.assertIn("MIT License", text)
        self.assertIn("Permission is hereby granted, free of charge", text)

    def test_every_source_file_has_an_spdx_line(self):
        r = subprocess.run([sys.executable, os.path.join(SRC, "scripts", "spdx.py")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


if __name__ == "__main__":
    w.main()
