# SPDX-License-Identifier: MIT
# PostgreSQL 15 from Debian's packages, for the chart's optional bundled
# PostgreSQL (trials; data on a PVC at /var/lib/postgresql/data). Built by
# scripts/image.sh on the localhost/ Debian base. The entrypoint initialises
# an empty data directory (superuser postgres, password from
# POSTGRES_PASSWORD_FILE, database POSTGRES_DB) and then runs postgres as PID 1's
# child under tini, so SIGTERM is a fast, clean shutdown.
ARG BASE=localhost/debian:bookworm
FROM ${BASE}
RUN groupadd --system --gid 10003 postgres \
 && useradd --system --uid 10003 --gid 10003 --home-dir /var/lib/postgresql \
      --shell /bin/sh postgres \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postgresql-15 tini >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY deploy/docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER 10003:10003
ENV PGDATA=/var/lib/postgresql/data/pgdata
EXPOSE 5432
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/postgres-entrypoint.sh"]
