#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/report.py — turns bench/run.sh's results.jsonl into the printed table
(wsgate standalone, wsgate cluster, Pushpin, wsgate over wss:// and with
permessage-deflate, ratios; and, when measured, a second table for the
compatibility modes: wsgate against wsgate-grip and wsgate-aws; a third for
wsgate against wsgate-stream, its /bench route over a backend stream), <date>.json (machine,
versions, load averages, every measurement) and <date>.png (gnuplot).
Usage: report.py RESULTS.jsonl[,MORE.jsonl] OUT_DIR QUICK N HOLD
"""
import datetime, json, os, platform, re, subprocess, sys


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def machine():
    mem = sh("awk '/MemTotal/{print $2}' /proc/meminfo")
    return {
        "nproc": int(sh("nproc") or 0),
        "cpu": sh("awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo"),
        "mem_mib": int(mem) // 1024 if mem.isdigit() else None,
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "nofile_hard": sh("ulimit -Hn"),
        "pushpin": sh("dpkg-query -W -f='${Version}' pushpin"),
        "condure": sh("dpkg-query -W -f='${Version}' condure"),
        "wrk": sh("dpkg-query -W -f='${Version}' wrk"),
        "libwebsockets": sh("pkg-config --modversion libwebsockets"),
        "libmicrohttpd": sh("pkg-config --modversion libmicrohttpd"),
        "nats_server": sh("nats-server --version 2>/dev/null || /usr/sbin/nats-server --version"),
        "postgresql": sh("/usr/lib/postgresql/15/bin/postgres --version"),
        # BENCH_WSGATE_COMMIT: what was built when the tree is not a git
        # checkout (e.g. `git archive` of a commit, to bench a pinned source)
        "wsgate_commit": os.environ.get("BENCH_WSGATE_COMMIT") or
                         sh("git -C %s rev-parse --short HEAD" % os.path.dirname(os.path.abspath(__file__))),
    }


def best(rows, key, where=lambda r: True):
    c = [r for r in rows if where(r) and r.get("pass") and key(r) is not None]
    return max(c, key=key) if c else None


def summarize(rows, server):
    """Headline numbers per workload for one server: {label: (value, unit)}."""
    rs = [r for r in rows if r["server"] == server]
    out = {}
    def nr(w):
        for r in rs:
            if r["workload"] == w and "not_run" in r:
                return r["not_run"]
        if not any(r["workload"] == w for r in rs):
            return "not selected (BENCH_SERVERS / BENCH_WORKLOADS)"
        return None
    for w in "abcdef":
        why = nr(w)
        if why:
            out[w] = {"not_run": why}
    sizes = sorted({r["payload_bytes"] for r in rs if "payload_bytes" in r})
    if sizes:
        out["b c d: payload bytes per message"] = "/".join(map(str, sizes))
    def zcount(w, key):  # messages that travelled compressed / all of them
        got = [r for r in rs if r["workload"] == w and key in r]
        return "%d / %d" % (sum(r[key] for r in got), sum(r.get("sent" if key == "sent_compressed" else "received", 0)
                                                       for r in got)) if got else None
    if server == "wsgate-deflate":
        for w, key in (("b", "received_compressed"), ("c", "sent_compressed"), ("d", "received_compressed")):
            if zcount(w, key):
                out["%s: messages compressed / all" % w] = zcount(w, key)
    a = [r for r in rs if r["workload"] == "a" and "not_run" not in r]
    if a:
        r = a[0]
        out["a: RSS per connection (KiB)"] = r["rss_kib_per_conn"]
        out["a: idle CPU (% of a core)"] = r["idle_cpu_pct"]
        out["a: connections held / lost"] = "%d / %d" % (r["open"], r["conns"] - r["open"] + r["closed_early"])
        if "rss_kib_per_conn_above_start" in r:
            out["a: RSS per connection above start (KiB)"] = r["rss_kib_per_conn_above_start"]
        infra = r.get("infra") or {}
        if "nats_rss_kib" in infra:  # the cluster: beside, not in, the wsgate sum
            out["a: nats-server RSS (KiB, not in the sum)"] = infra["nats_rss_kib"]
            out["a: PostgreSQL PSS (KiB, not in the sum)"] = infra["postgres_pss_kib"]
            by = infra.get("idle_cpu_pct_by_process", {})
            out["a: nats-server / PostgreSQL idle CPU (%)"] = "%s / %s" % (by.get("nats", "?"), by.get("postgres", "?"))
    b = [r for r in rs if r["workload"] == "b" and "not_run" not in r]
    for subs in sorted({r["subscribers"] for r in b}):
        one = [r for r in b if r["subscribers"] == subs and r["step"] == "one"]
        if one:
            out["b: %d subs: one message reaches all (ms)" % subs] = one[0]["all_reached_ms"]
        top = best(b, lambda r: r["deliveries_per_s"], lambda r: r["subscribers"] == subs and r["step"] == "rate")
        if top:
            out["b: %d subs: deliveries/s (zero loss)" % subs] = top["deliveries_per_s"]
            out["b: %d subs: p99 at that rate (ms)" % subs] = top["latency_ms"]["p99"]
            out["b: %d subs: CPU-s per 1000 deliveries" % subs] = top["cpu_s_per_1000"]
        fast = best(b, lambda r: r["deliveries_per_s"], lambda r: r["subscribers"] == subs and
                    r["step"] == "rate" and r["latency_ms"]["p99"] <= 100)
        out["b: %d subs: deliveries/s with p99 <= 100 ms" % subs] = fast["deliveries_per_s"] if fast else "none"
        lost = sum(r["lost"] for r in b if r["subscribers"] == subs)
        out["b: %d subs: lost" % subs] = lost
    c = [r for r in rs if r["workload"] == "c" and "not_run" not in r]
    if c:
        at1k = [r for r in c if r["offered_per_s"] == min(x["offered_per_s"] for x in c)][0]
        out["c: p50 / p99 at %d/s (ms)" % at1k["offered_per_s"]] = "%s / %s" % (at1k["latency_ms"]["p50"], at1k["latency_ms"]["p99"])
        top = best(c, lambda r: r["frames_per_s"])
        if top:
            out["c: frames/s (zero loss)"] = top["frames_per_s"]
            out["c: p50 / p99 at max (ms)"] = "%s / %s" % (top["latency_ms"]["p50"], top["latency_ms"]["p99"])
            out["c: CPU-s per 1000 webhooks"] = top["cpu_s_per_1000"]
        fast = best(c, lambda r: r["frames_per_s"], lambda r: r["latency_ms"]["p99"] <= 20)
        out["c: frames/s with p99 <= 20 ms"] = fast["frames_per_s"] if fast else "none"
        out["c: lost"] = sum(r["lost"] for r in c)
    d = [r for r in rs if r["workload"] == "d" and "not_run" not in r]
    if d:
        r = d[0]
        out["d: req/s"] = r["req_per_s"]
        out["d: API p99 (ms)"] = r["api_p99_ms"]
        out["d: delivery p99 (ms)"] = r["delivery_ms"]["p99"]
        out["d: CPU-s per 1000 sends"] = r["cpu_s_per_1000"]
        out["d: lost / non-2xx"] = "%d / %d" % (r["lost"], r["non_2xx"])
    f = [r for r in rs if r["workload"] == "f" and "not_run" not in r]
    if f:
        r = f[0]
        out["f: connections held / edges"] = "%d / %d" % (r["open"], r["edges"])
        out["f: time to open all (s)"] = r["connect_s"]
        out["f: one publish reaches all (ms)"] = r["all_reached_ms"]
        out["f: edges' RSS per connection (KiB)"] = r["rss_kib_per_conn"]
        out["f: lost / closed early"] = "%d / %d" % (r["lost"], r["closed_early"])
    # wsgate-tls's e: full handshakes, and apart from them (never mixed) a
    # run resuming TLS sessions, with how many did resume
    for resume, tag in ((False, ""), (True, " (TLS resumed)")):
        e = [r for r in rs if r["workload"] == "e" and "not_run" not in r and r.get("tls_resume", False) == resume]
        if e:
            r = e[0]
            out["e: connections/s" + tag] = r["connects_per_s"]
            out["e: handshake p99 (ms)" + tag] = r["handshake_ms"]["p99"]
            out["e: failures" + tag] = r["failed"]
            out["e: CPU-s per 1000 connections" + tag] = r["cpu_s_per_1000"]
            if resume:
                out["e: handshakes resumed / open (TLS resumed)"] = "%d / %d" % (r["tls_resumed"], r["open"])
    return out


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return "%.3g" % (a / b)
    return ""


SERVERS = ("wsgate", "wsgate-cluster", "pushpin", "wsgate-tls", "wsgate-deflate")
COMPAT = ("wsgate-grip", "wsgate-aws")  # route protocol grip / aws (c and d only)
STREAM = ("wsgate-stream",)  # the /bench route's backend a ws:// stream (c and d only)


def side_table(summ, title, others, tags, note):
    """wsgate against variants of it (one route changed), with ratios; []
    when none of them ran."""
    if not any(k for srv in others for k in summ[srv] if len(k) > 1):
        return []
    ws = summ["wsgate"]
    keys = [k for k in dict.fromkeys(k for srv in others for k in summ[srv]) if len(k) > 1]
    w = max([len(k) for k in keys] + [20])
    fmt = "%-*s" + "  %14s" * (1 + len(others)) + "  %8s" * len(others)
    lines = ["", fmt % ((w, title, "wsgate") + others + tags), "-" * (w + 16 * (1 + len(others)) + 10 * len(others))]
    for k in keys:
        a = ws.get(k, "")
        vals = tuple(summ[srv].get(k, "") for srv in others)
        lines.append(fmt % ((w, k, a) + vals + tuple(ratio(v, a) for v in vals)))
    lines.append(note)
    return lines


def compat_table(summ):
    return side_table(summ, "compatibility modes", COMPAT, ("grip/ws", "aws/ws"),
                      "grip/ws, aws/ws: the /bench route with protocol: grip / aws against protocol: wsgate "
                      "(aws: batch_max 1, one event per request, as AWS)")


def stream_table(summ):
    return side_table(summ, "backend stream", STREAM, ("st/ws",),
                      "st/ws: the /bench route's backend a ws:// backend stream against webhooks "
                      "(both batch_max 16)")


def main():
    src, out_dir, quick, n, hold = sys.argv[1:6]
    # SRC may list several results.jsonl (comma-separated) to merge runs that
    # measured different workloads; the JSON records which files were merged.
    rows = []
    for one in src.split(","):
        if os.path.exists(one):
            rows += [json.loads(l) for l in open(one)]
    summ = {srv: summarize(rows, srv) for srv in SERVERS + COMPAT + STREAM}
    ws, cl, pp, tl, df = (summ[srv] for srv in SERVERS)
    keys = [k for srv in SERVERS for k in summ[srv] if len(k) > 1]
    keys = sorted(dict.fromkeys(keys), key=lambda k: k[0])
    w = max([len(k) for k in keys] + [20])
    fmt = "%-*s  %14s  %14s  %14s  %14s  %14s  %8s  %8s  %8s  %8s"
    lines = [fmt % (w, "measurement", "wsgate", "wsgate-cluster", "pushpin", "wsgate-tls", "wsgate-deflate",
                    "cl/ws", "ws/pp", "tls/ws", "df/ws"), "-" * (w + 122)]
    # deflate against plain only where both carried the same payload size
    same = df.get("b c d: payload bytes per message") == ws.get("b c d: payload bytes per message")
    for k in keys:
        a, c, b, t, z = ws.get(k, ""), cl.get(k, ""), pp.get(k, ""), tl.get(k, ""), df.get(k, "")
        lines.append(fmt % (w, k, a, c, b, t, z, ratio(c, a), ratio(a, b), ratio(t, a),
                            ratio(z, a) if same or k[0] in "ae" else ""))
    lines.append("cl/ws: cluster / standalone; ws/pp: standalone / Pushpin; "
                 "tls/ws: standalone over wss:// / over ws://; df/ws: standalone with "
                 "compression: on / off (b, c, d only at equal payload sizes)")
    lines += compat_table(summ)
    lines += stream_table(summ)
    ran = SERVERS + tuple(c for c in COMPAT + STREAM if any(r["server"] == c for r in rows))
    for srv in ran:
        for wl in "abcdef":
            if wl in summ[srv]:
                lines.append("%s (%s): not run: %s" % (wl, srv, summ[srv][wl]["not_run"]))
    loads = {}
    for r in rows:
        if r.get("loadavg"):
            loads.setdefault(r["server"], []).append(float(r["loadavg"][0]))
    for srv in SERVERS + COMPAT + STREAM:
        if srv in loads:
            lines.append("load average (1 min) while measuring %s: %.2f-%.2f (shared machine: numbers are lower bounds)"
                         % (srv, min(loads[srv]), max(loads[srv])))
    stamp = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H%M%SZ")
    m = machine()
    head = ("machine: %(nproc)s cores (%(cpu)s), %(mem_mib)s MiB, Linux %(kernel)s, %(os)s; "
            "Pushpin %(pushpin)s; open-file hard limit %(nofile_hard)s (soft raised to it)" % m)
    table = "\n".join([head, "run: %s, N=%s, hold=%ss%s" % (stamp, n, hold, " (BENCH_QUICK)" if quick == "1" else "")] + lines)
    print(table)
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, stamp + ("-quick" if quick == "1" else ""))
    with open(base + ".json", "w") as f:
        json.dump({"run": stamp, "quick": quick == "1", "machine": m,
                   "merged_from": [os.path.basename(os.path.dirname(x)) + "/" + os.path.basename(x) for x in src.split(",")], "summary": summ,
                   "measurements": rows}, f, indent=1)
    with open(base + ".txt", "w") as f:
        f.write(table + "\n")
    chart(rows, base)
    print("bench: wrote %s.json, %s.txt and %s.png" % (base, base, base))


def chart(rows, base):
    """Four groups: b deliveries/s, c frames/s, d req/s, e connections/s (log y),
    one bar per server."""
    panels = [("b", "b: deliveries/s", lambda r: r.get("deliveries_per_s")),
              ("c", "c: webhooks/s", lambda r: r.get("frames_per_s")),
              ("d", "d: API sends/s", lambda r: r.get("req_per_s")),
              ("e", "e: connects/s", lambda r: r.get("connects_per_s"))]
    dat = base + ".dat"
    with open(dat, "w") as f:
        for wl, label, key in panels:
            vals = []
            for srv in SERVERS:
                c = [key(r) for r in rows if r["workload"] == wl and r["server"] == srv and r.get("pass") and key(r)
                     and not r.get("tls_resume")]
                # 1 = no bar on the log axis (0 is undefined there, and a
                # server with no bar at all made gnuplot fail)
                vals.append(str(max(c)) if c else "1")
            f.write('"%s" %s\n' % (label, " ".join(vals)))
    script = """set terminal pngcairo size 900,500 noenhanced
set output '%s.png'
set title "best zero-loss rate per workload (log scale; no bar = no run without loss; wsgate-deflate: BENCH_DEFLATE_PAYLOAD)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [1:*]
set grid ytics
set key top right
plot '%s' using 2:xtic(1) title 'wsgate', '' using 3 title 'wsgate-cluster', '' using 4 title 'pushpin', '' using 5 title 'wsgate-tls', '' using 6 title 'wsgate-deflate'
""" % (base, dat)
    p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    if p.returncode != 0:
        print("bench: gnuplot failed: " + p.stderr.strip())
    os.remove(dat)


if __name__ == "__main__":
    main()
