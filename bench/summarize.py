#!/usr/bin/env python3
"""Summarise a bench/compare.sh results file (JSON lines) as Markdown.

usage: bench/summarize.py bench/results/compare-STAMP.jsonl

Medians are over rounds, with [min..max]; ratios are computed round by round from the
back-to-back runs of one round, then their median is taken (as in
shared/research/bench-anchors.md). Also prints the issue-8 goals as PASS/FAIL and
flags lost stanzas, errors, failed runs and noisy measurements.
"""
import json
import statistics
import sys
from collections import defaultdict

ORDER = ["router", "base", "prosody", "ejabberd", "relay", "direct"]
NAMES = {
    "router": "router (this project)",
    "base": "router, other build (ROUTER_BASE)",
    "prosody": "Prosody",
    "ejabberd": "ejabberd",
    "relay": "plain relay (loadgen relay)",
    "direct": "direct (loadgen to itself)",
}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, (int, float)) and abs(x) >= 1000:
        return format(round(x), ",")
    if isinstance(x, float):
        return f"{x:.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"
    return str(x)


def spread(xs, digits=3):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0], digits)
    return f"**{fmt(med(xs), digits)}** [{fmt(min(xs), digits)}..{fmt(max(xs), digits)}]"


def main(path):
    meta = {}
    recs = []
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        if r.get("meta"):
            meta = r
        else:
            recs.append(r)
    out = []
    p = out.append
    by = defaultdict(list)  # (test, system) -> records
    for r in recs:
        by[(r["test"], r["system"])].append(r)

    def systems(test):
        return [s for s in ORDER if (test, s) in by]

    if meta:
        p(f"# compare.sh results, {meta.get('date')}")
        p("")
        p(f"- machine: {meta.get('nproc')} CPUs, {meta.get('cpu')}, kernel {meta.get('kernel')}")
        p(f"- commit {meta.get('commit')} ({meta.get('modified_tracked_files')} tracked files modified); {meta.get('versions')}")
        p(f"- command: `{meta.get('command')}`; rounds {meta.get('rounds')}; "
          f"throughput N {meta.get('tput_n')}; latency {meta.get('lat_duration_s')} s per run "
          f"({meta.get('lat_warmup_s')} s warm-up); many-components runs {meta.get('many_rounds')} "
          f"with {meta.get('many_count')} components, {meta.get('many_concurrency')} in flight; "
          f"quiet wait: {meta.get('quiet')}")
        p("")

    # ---------------------------------------------------------------- throughput
    tput = systems("tput")
    if tput:
        w = meta.get("tput_window", 0)
        p("## Throughput (198-byte messages, 1 sender + 1 receiver component, "
          + ("unbounded window)" if not w else f"window {w})"))
        p("")
        p("| system | stanzas/s | server CPU µs/stanza | server cores | lost / errors / reordered | runs |")
        p("|---|---|---|---|---|---|")
        for s in tput:
            rs = by[("tput", s)]
            p(f"| {NAMES[s]} | {spread([r.get('rate') for r in rs])} "
              f"| {spread([r.get('server_cpu_us_per_stanza') for r in rs])} "
              f"| {spread([r.get('server_cpu_cores') for r in rs])} "
              f"| {sum(r.get('lost') or 0 for r in rs)} / {sum(r.get('errors') or 0 for r in rs)} / "
              f"{sum(r.get('reordered') or 0 for r in rs)} | {len(rs)} |")
        p("")
        per_round = defaultdict(dict)
        for s in tput:
            for r in by[("tput", s)]:
                per_round[r["round"]][s] = r
        others = [s for s in tput if s != "router"]
        if "router" in tput and others:
            p("Per-round ratios (router / X; for CPU: X's µs per stanza / the router's):")
            p("")
            hdr = ["round"] + [f"tput router/{s}" for s in others] + \
                [f"CPU {s}/router" for s in others if s not in ("direct",)]
            p("| " + " | ".join(hdr) + " |")
            p("|" + "---|" * len(hdr))
            cols = defaultdict(list)
            for rnd in sorted(per_round):
                row = per_round[rnd]
                cells = [str(rnd)]
                ro = row.get("router")
                for s in others:
                    v = None
                    if ro and s in row and row[s].get("rate"):
                        v = ro["rate"] / row[s]["rate"]
                    cols["t" + s].append(v)
                    cells.append(fmt(v))
                for s in others:
                    if s == "direct":
                        continue
                    v = None
                    if ro and s in row and ro.get("server_cpu_us_per_stanza") and row[s].get("server_cpu_us_per_stanza") is not None:
                        v = row[s]["server_cpu_us_per_stanza"] / ro["server_cpu_us_per_stanza"]
                    cols["c" + s].append(v)
                    cells.append(fmt(v))
                p("| " + " | ".join(cells) + " |")
            cells = ["**median**"] + [spread(cols["t" + s]) for s in others] + \
                [spread(cols["c" + s]) for s in others if s != "direct"]
            p("| " + " | ".join(cells) + " |")
            p("")

    # ---------------------------------------------------------------- latency
    lat_tests = sorted({t for (t, _s) in by if t.startswith("lat")}, key=lambda t: int(t[3:]))
    for t in lat_tests:
        rate = int(t[3:])
        p(f"## Latency at {rate:,} stanzas/s (one-way, paced, ms)")
        p("")
        p("| system | p50 | p99 | p99.9 | max | server CPU µs/stanza | rate kept | lost / errors |")
        p("|---|---|---|---|---|---|---|---|")
        for s in systems(t):
            rs = by[(t, s)]
            kept = sum(1 for r in rs if r.get("rate_ok"))
            p(f"| {NAMES[s]} | {spread([r.get('p50_ms') for r in rs])} | {spread([r.get('p99_ms') for r in rs])} "
              f"| {spread([r.get('p999_ms') for r in rs])} | {spread([r.get('max_ms') for r in rs])} "
              f"| {spread([r.get('server_cpu_us_per_stanza') for r in rs])} | {kept}/{len(rs)} "
              f"| {sum(r.get('lost') or 0 for r in rs)} / {sum(r.get('errors') or 0 for r in rs)} |")
        p("")
        if ("router" in systems(t)):
            for ref in [s for s in systems(t) if s != "router"]:
                rr = {r["round"]: r for r in by[(t, "router")]}
                xr = {r["round"]: r for r in by[(t, ref)]}
                for q in ("p50_ms", "p99_ms"):
                    ratios = [rr[k][q] / xr[k][q] for k in sorted(rr) if k in xr
                              and rr[k].get(q) and xr[k].get(q)]
                    per = ", ".join(fmt(x) for x in ratios)
                    p(f"- router/{ref} {q[:-3]} at {rate:,}/s: {spread(ratios)} (rounds: {per})")
            p("")

    # ---------------------------------------------------------------- many
    many = systems("many")
    if many:
        p("## Many components (fresh server per run; RSS per idle component = (RSS connected − RSS before) / connected)")
        p("")
        p("| system | components | connected | handshakes/s | handshake p99 ms | RSS before → connected MB | KiB per idle component | server CPU µs/handshake | ring delivered |")
        p("|---|---|---|---|---|---|---|---|---|")
        for s in many:
            rs = by[("many", s)]
            before = med([r.get("baseline_rss_kb") for r in rs])
            after = med([r.get("rss_kb") for r in rs])
            ring = ", ".join(f"{r.get('ring_delivered')}/{r.get('ring_sent')}" for r in rs)
            p(f"| {NAMES[s]} | {rs[0].get('count')} | {min(r.get('connected') or 0 for r in rs)} "
              f"| {spread([r.get('handshakes_per_s') for r in rs])} "
              f"| {spread([r.get('handshake_p99_ms') for r in rs])} "
              f"| {fmt(before / 1024 if before else None)} → {fmt(after / 1024 if after else None)} "
              f"| {spread([r.get('rss_per_conn_kib') for r in rs])} "
              f"| {spread([r.get('server_cpu_us_per_handshake') for r in rs])} "
              f"| {ring} |")
        p("")

    # ---------------------------------------------------------------- goals
    p("## Goals (medians of per-round figures)")
    p("")

    def ratio_med(test, num, den, field="rate"):
        a = {r["round"]: r for r in by.get((test, num), [])}
        b = {r["round"]: r for r in by.get((test, den), [])}
        xs = [a[k][field] / b[k][field] for k in a if k in b and a[k].get(field) and b[k].get(field)]
        return med(xs)

    goals = []
    v = ratio_med("tput", "router", "prosody")
    goals.append(("throughput ≥ 10× Prosody", v, v is not None and v >= 10))
    v = ratio_med("tput", "router", "ejabberd")
    goals.append(("throughput ≥ 3× ejabberd", v, v is not None and v >= 3))
    v = med([r.get("server_cpu_us_per_stanza") for r in by.get(("tput", "router"), [])])
    goals.append(("server CPU < 5 µs per stanza", v, v is not None and v < 5))
    for t in lat_tests:
        v = ratio_med(t, "router", "relay", "p99_ms")
        goals.append((f"p99 at {int(t[3:]):,}/s within 2× the relay's", v, v is not None and v <= 2))
    v = med([r.get("rss_per_conn_kib") for r in by.get(("many", "router"), [])])
    cnt = (by.get(("many", "router")) or [{}])[0].get("count")
    goals.append((f"< 20 KiB RSS per idle component at {cnt} components", v, v is not None and v < 20))
    p("| goal | measured | |")
    p("|---|---|---|")
    for name, val, ok in goals:
        p(f"| {name} | {fmt(val)} | {'PASS' if ok else ('n/a' if val is None else 'FAIL')} |")
    p("")

    # ---------------------------------------------------------------- flags
    flags = []
    not_quiet, other_cores, measured = [], [], 0
    for r in recs:
        tag = f"r{r.get('round')} {r.get('system')} {r.get('test')}"
        if r.get("test") == "relay_stop":
            if r.get("errors"):
                flags.append(f"{tag}: the relay counted {r['errors']} connection errors "
                             f"over {r.get('connections')} connections")
            continue
        measured += 1
        if not r.get("ok"):
            flags.append(f"{tag}: not ok: {r.get('error') or r.get('error_messages') or r.get('failure_samples')}")
        for k in ("lost", "duplicated", "reordered", "errors", "malformed", "misrouted", "failures",
                  "ring_timeouts", "ring_errors", "ring_misdelivered"):
            if r.get(k):
                flags.append(f"{tag}: {k} = {r[k]}")
        if r.get("timed_out"):
            flags.append(f"{tag}: timed out")
        if r.get("test", "").startswith("lat") and r.get("rate_ok") is False:
            flags.append(f"{tag}: target rate not kept (achieved {r.get('achieved_rate')}/s)")
        if (r.get("steal_s") or 0) > 0.5:
            flags.append(f"{tag}: hypervisor steal {r['steal_s']} s")
        if not r.get("quiet", True):
            not_quiet.append(tag)
        if r.get("other_cpu_s") is not None and r.get("wall_s"):
            other_cores.append(max(0.0, r["other_cpu_s"]) / r["wall_s"])
    p("## Flags")
    p("")
    for f in flags:
        p(f"- {f}")
    if not flags:
        p("- no lost, reordered or bounced stanzas, no failed run")
    p("")
    p("## Noise")
    p("")
    p(f"- {len(not_quiet)} of {measured} tests started on a machine that was not quiet (wanted: {meta.get('quiet', '?')}) "
      "(the wait gave up and measured anyway)")
    if other_cores:
        busy = sum(1 for c in other_cores if c > 0.5)
        p(f"- CPU used by processes other than the server and the load generator during a test: "
          f"median {med(other_cores):.2f} cores [{min(other_cores):.2f}..{max(other_cores):.2f}]; "
          f"more than half a core in {busy} of {len(other_cores)} tests (2 cores in all)")
    p("")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
