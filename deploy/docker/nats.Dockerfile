# SPDX-License-Identifier: MIT
# nats-server from Debian's package, for the chart's optional bundled NATS
# (trials: JetStream on a PVC at /data). Built by scripts/image.sh on the
# localhost/ Debian base; tini is PID 1 so SIGTERM reaches nats-server.
ARG BASE=localhost/debian:bookworm
FROM ${BASE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      nats-server tini >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 10002 natsd \
 && useradd --system --uid 10002 --gid 10002 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin natsd \
 && mkdir -p /data && chown natsd:natsd /data
USER 10002:10002
EXPOSE 4222 8222
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/sbin/nats-server"]
CMD ["-js", "-sd", "/data", "-p", "4222", "-m", "8222"]
