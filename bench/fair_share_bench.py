#!/usr/bin/python3
"""The fair-share decision over 10,000 queued jobs of 100 teams (issue 13's
target: <= 1 ms).

  /usr/bin/python3 bench/fair_share_bench.py [--decisions 10000] [--no-record]

Runs build/bench/kiln_fair_share_bench: FairShare (src/controller/fair_share.h)
with 10,000 waiters of 100 teams, quotas on half of them, 1,000 instances
running; each decision is a PopNext, after which the winner is charged and a new
waiter queued, so the queue stays at 10,000."""
import argparse, json, os, subprocess

from benchlib import ROOT, heading, machine, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=10000)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    out = subprocess.run([os.path.join(ROOT, "build", "bench", "kiln_fair_share_bench"), str(a.decisions)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    text = "\n".join([
        heading("Fair-share decision over 10,000 queued jobs"), "",
        "Machine: %s. %d waiters of %d teams (quotas on half, weights 1-3), 1,000 instances running; "
        "%d decisions (%d launched)." % (machine(), r["queued"], r["teams"], r["decisions"], r["launched"]), "",
        "| | p50 | p99 | max | target |", "|---|---|---|---|---|",
        "| one decision (`FairShare::PopNext`) | %.1f us | %.1f us | %.1f us | <= 1 ms |" % (
            r["p50_us"], r["p99_us"], r["max_us"]),
        "", ""])
    report(text, not a.no_record)


if __name__ == "__main__":
    main()
