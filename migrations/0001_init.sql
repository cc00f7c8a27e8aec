-- SPDX-License-Identifier: MIT
-- 0001_init.sql — wsgate's first schema (SPEC.md §5).
--
-- This text runs unchanged on SQLite 3.40 and PostgreSQL 15: only TEXT,
-- BIGINT and INTEGER columns, times as BIGINT milliseconds since the Unix
-- epoch, no foreign keys (a subscription may be recorded before its
-- connection row; store_sub_gc() removes orphans). schema_migrations
-- (version, applied_at) is created by the migrator itself before it reads
-- which versions are applied, so it is not repeated here.

CREATE TABLE connections (
    id             TEXT    NOT NULL PRIMARY KEY,
    route          TEXT    NOT NULL,
    edge_id        TEXT    NOT NULL,
    user_id        TEXT,
    context        TEXT    NOT NULL DEFAULT '{}',
    remote_addr    TEXT    NOT NULL DEFAULT '',
    connected_at   BIGINT  NOT NULL,
    last_active_at BIGINT  NOT NULL
);
-- Filters of GET /v1/connections, each walked in id order for pagination.
CREATE INDEX connections_user_idx  ON connections (user_id, id);
CREATE INDEX connections_route_idx ON connections (route, id);
CREATE INDEX connections_edge_idx  ON connections (edge_id, id);

-- Keyed both ways: members of a channel by the primary key, channels of a
-- connection by the second index.
CREATE TABLE subscriptions (
    channel       TEXT    NOT NULL,
    connection_id TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (channel, connection_id)
);
CREATE INDEX subscriptions_connection_idx ON subscriptions (connection_id, channel);

CREATE TABLE edges (
    id           TEXT    NOT NULL PRIMARY KEY,
    heartbeat_at BIGINT  NOT NULL
);
CREATE INDEX edges_heartbeat_idx ON edges (heartbeat_at);

CREATE TABLE dead_letters (
    id            TEXT    NOT NULL PRIMARY KEY,
    connection_id TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    backend       TEXT    NOT NULL,
    event         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    last_status   INTEGER NOT NULL,
    last_error    TEXT    NOT NULL DEFAULT '',
    created_at    BIGINT  NOT NULL
);
CREATE INDEX dead_letters_route_idx ON dead_letters (route, id);
