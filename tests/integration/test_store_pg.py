# SPDX-License-Identifier: MIT
"""test_store_pg.py — the shared store suite and `wsgate migrate` against a
real PostgreSQL server (tests/lib/pgserver.py).

- runs the built cmocka binary test_store with WSGATE_TEST_PG_URL set, and
  answers its restart test's "stop"/"start" requests on two pipes by
  stopping and starting the server; fails when that run fails or when the
  PostgreSQL group did not really run;
- `wsgate migrate --store URL` (PostgreSQL, and SQLite): applies the schema, is idempotent, several
  processes at once all succeed, an unreachable server exits 1;
- `wsgate migrate --config FILE` takes the URL from the config's `store:`.

Env: WSGATE_BIN (the built wsgate; test_store is found in the same build
tree, or named by WSGATE_TEST_STORE_BIN), WSGATE_SOURCE_DIR.
"""

import glob
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import unittest

from csuite import find_build_binary, run_with_server_control
from pgserver import PgServer, free_port
from wsgate_util import WSGATE_BIN, main, run_wsgate
SOURCE_DIR = os.environ.get("WSGATE_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))


def find_test_store():
    """test_store sits in the build tree's tests/ folder next to wsgate."""
    return find_build_binary("test_store", "WSGATE_TEST_STORE_BIN")


def migration_versions():
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(SOURCE_DIR, "migrations", "*.sql")))
    return [int(n.split("_", 1)[0]) for n in names]


class StorePgTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgServer()
        try:
            cls.pg.start()
        except BaseException:
            cls.pg.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    # ---- the shared cmocka suite ---------------------------------------------------

    def test_shared_suite_on_postgres(self):
        binary = find_test_store()
        rc, text, log = run_with_server_control(binary, self.pg, "WSGATE_TEST_PG_URL",
                                                "WSGATE_TEST_PG_CONTROL")
        sys.stdout.write(text)
        if rc is None:
            self.fail("test_store timed out:\n" + text)
        self.assertEqual(rc, 0, "test_store failed on PostgreSQL (log %s)" % log)
        self.assertIn("[       OK ] test_pg_restart", text)
        self.assertNotIn("WSGATE_TEST_PG_URL is not set", text)
        self.assertEqual(log, ["stop", "start", "stop", "start"])
        self.pg.psql("SELECT 1")  # the server is up again for the other tests

    # ---- wsgate migrate ------------------------------------------------------------------

    def migrate(self, *args, timeout=120):
        return run_wsgate(["migrate"] + list(args), timeout=timeout)

    def assert_schema(self, db):
        versions = migration_versions()
        self.assertTrue(versions)
        rows = self.pg.psql("SELECT version FROM schema_migrations ORDER BY version", db)
        self.assertEqual([int(v) for v in rows.split()], versions)
        tables = self.pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                              "ORDER BY tablename", db).split()
        for t in ("connections", "dead_letters", "edges", "schema_migrations", "subscriptions"):
            self.assertIn(t, tables)
        idx = self.pg.psql("SELECT indexdef FROM pg_indexes WHERE tablename = 'subscriptions'", db)
        self.assertIn("(channel, connection_id)", idx)
        self.assertIn("(connection_id, channel)", idx)

    def test_migrate_command_is_idempotent(self):
        url = self.pg.create_database("mig_cli")
        r = self.migrate("--store", url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"migrated from version 0", r.stdout)
        self.assertNotIn(url.encode(), r.stdout + r.stderr)
        self.assert_schema("mig_cli")
        r = self.migrate("--store=" + url)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"already at version", r.stdout)
        self.assert_schema("mig_cli")

    def test_migrate_command_sqlite(self):
        with tempfile.TemporaryDirectory() as d:
            url = "sqlite://%s/w.db" % d  # d is absolute: sqlite:///tmp/...
            for _ in range(2):
                r = self.migrate("--store", url)
                self.assertEqual(r.returncode, 0, r.stderr)
            db = sqlite3.connect(os.path.join(d, "w.db"))
            try:
                versions = [v for (v,) in db.execute(
                    "SELECT version FROM schema_migrations ORDER BY version")]
                self.assertEqual(versions, migration_versions())
                self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "wal")
                idx = [r[0] for r in db.execute(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'subscriptions'")]
                self.assertTrue(any("PRIMARY KEY (channel, connection_id)" in (x or "")
                                    for x in idx), idx)
                self.assertTrue(any("(connection_id, channel)" in (x or "") for x in idx), idx)
            finally:
                db.close()

    def test_migrate_command_concurrent(self):
        url = self.pg.create_database("mig_race")
        procs = [subprocess.Popen([WSGATE_BIN, "migrate", "--store", url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(6)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)  # 0: neither a crash nor a sanitizer report
        self.assert_schema("mig_race")

    def test_migrate_unreachable_server(self):
        r = self.migrate("--store", "postgresql://postgres@127.0.0.1:%d/x" % free_port())
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"UNAVAILABLE", r.stderr)

    def test_migrate_bad_usage(self):
        self.assertEqual(self.migrate("--store", "mysql://x/y").returncode, 2)
        self.assertEqual(self.migrate("--bogus").returncode, 2)
        r = self.migrate("--store")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"needs a value", r.stderr)
        env = {k: v for k, v in os.environ.items() if k not in ("WSGATE_CONFIG", "WSGATE_STORE")}
        r = run_wsgate(["migrate"], env=env, timeout=60)
        self.assertEqual(r.returncode, 2)

    def config_with_store(self, d, store):
        """examples/standalone.yaml (kept valid by its owners) with store: replaced."""
        with open(os.path.join(SOURCE_DIR, "examples", "standalone.yaml")) as f:
            text = f.read()
        text, n = re.subn(r"(?m)^store:.*$", "store: %s" % store, text)
        self.assertEqual(n, 1, "examples/standalone.yaml has no top-level store: line")
        path = os.path.join(d, "wsgate.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def migrate_config(self, path, env=None):
        return run_wsgate(["migrate", "--config", path], timeout=120,
                          env=dict(os.environ, **(env or {})))

    def test_migrate_with_config_file(self):
        url = self.pg.create_database("mig_conf")
        with tempfile.TemporaryDirectory() as d:
            r = self.migrate_config(self.config_with_store(d, url))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assert_schema("mig_conf")
            bad = os.path.join(d, "bad.yaml")
            with open(bad, "w") as f:
                f.write("store: [not, a, url\n")
            self.assertEqual(self.migrate_config(bad).returncode, 2)

    def test_migrate_config_store_overridden_by_env(self):
        url = self.pg.create_database("mig_env")
        with tempfile.TemporaryDirectory() as d:
            path = self.config_with_store(d, "sqlite://%s/never.db" % d)
            r = self.migrate_config(path, env={"WSGATE_STORE": url})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assert_schema("mig_env")
            self.assertFalse(os.path.exists(os.path.join(d, "never.db")))


if __name__ == "__main__":
    main()
