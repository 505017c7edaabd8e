#!/usr/bin/python3
"""The sandbox's cost (issue "A sandbox that holds"): submit-to-running latency
and trivial-job throughput of two builds in one run, on the same machine, one
after the other — before the hardening (host network, root, no seccomp) and
after it (own user, network, pid, ipc, uts and cgroup namespaces, seccomp,
fd binds, admission control).

  /usr/bin/python3 bench/sandbox_bench.py --before /tmp/before/build [--after build]
      [--latency-jobs 200] [--jobs 2000] [--rounds 2]

Rounds alternate the builds (before, after, before, after) so drift on a shared
machine hits both. Appends a section to bench/RESULTS.md.
"""
import argparse, os, shutil, subprocess, tempfile

from benchlib import ROOT, heading, machine, pct, report
from run_bench import Kilnd, bench_latency, bench_throughput


def measure(build, latency_jobs, jobs):
    data = tempfile.mkdtemp(prefix="kiln-sandbox-bench-")
    k = Kilnd(build, data)
    try:
        lat = bench_latency(k, latency_jobs)
        thr = bench_throughput(k, jobs) if jobs else None
    finally:
        k.stop()
        scratch = os.path.join(data, "scratch")  # the disk-quota pool outlives kilnd
        if os.path.ismount(scratch):
            subprocess.run(["umount", "-l", scratch], check=False)
        shutil.rmtree(data, ignore_errors=True)
    return lat, thr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="build dir of the commit before the hardening")
    ap.add_argument("--after", default=os.path.join(ROOT, "build"))
    ap.add_argument("--latency-jobs", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--title", default="Sandbox hardening: before / after")
    a = ap.parse_args()
    lat = {"before": [], "after": []}
    thr = {"before": [], "after": []}
    for _ in range(a.rounds):
        for name, build in (("before", a.before), ("after", a.after)):
            l, t = measure(build, a.latency_jobs, a.jobs)
            lat[name] += l
            if t:
                thr[name].append(t["jobs_per_s"])
    rows = []
    for p in (50, 99):
        b, f = pct(lat["before"], p), pct(lat["after"], p)
        rows.append(("submit-to-running p%d" % p, "%.1f ms" % b, "%.1f ms" % f, "%+.1f ms (x%.2f)" % (f - b, f / b)))
    if thr["before"]:
        b, f = sum(thr["before"]) / len(thr["before"]), sum(thr["after"]) / len(thr["after"])
        rows.append(("throughput, %d trivial jobs" % a.jobs, "%.0f jobs/s" % b, "%.0f jobs/s" % f, "x%.2f" % (f / b)))
    out = ["", heading(a.title), "", "Machine: " + machine(),
           "Before: %s; after: %s; %d rounds of %d latency jobs and %d throughput jobs each, alternating." % (
               a.before, a.after, a.rounds, a.latency_jobs, a.jobs),
           "", "| measure | before | after | difference |", "|---|---|---|---|"]
    out += ["| %s | %s | %s | %s |" % r for r in rows]
    report("\n".join(out) + "\n", not a.no_record)


if __name__ == "__main__":
    main()
