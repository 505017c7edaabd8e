#!/usr/bin/python3
"""What authentication and authorization add per request (issue 13's target:
<= 50 us p50 against the same path without them).

  /usr/bin/python3 bench/auth_bench.py [--n 5000] [--no-record]

Runs build/bench/kiln_auth_bench: one kilnd HTTP server (http::AsyncServer), one on-disk SQLite
store with 1,001 tokens, the same describe handler behind an open route and
behind the router's whole gate; a keep-alive client alternates them."""
import argparse, json, os, subprocess

from benchlib import ROOT, heading, machine, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    out = subprocess.run([os.path.join(ROOT, "build", "bench", "kiln_auth_bench"), str(a.n)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    text = "\n".join([
        heading("Authentication and authorization overhead"), "",
        "Machine: %s. %d requests per route, alternating, keep-alive, loopback." % (machine(), r["n"]), "",
        "| | p50 | p99 | target |", "|---|---|---|---|",
        "| describe, open route | %.1f us | %.1f us | |" % (r["open_p50_us"], r["open_p99_us"]),
        "| describe, behind the gate (Bearer token, role, team) | %.1f us | %.1f us | |" % (r["auth_p50_us"], r["auth_p99_us"]),
        "| **added by the gate** | **%.1f us** | | <= 50 us |" % r["added_p50_us"],
        "| `ApiTokens::Authenticate` alone (SQLite lookup + SHA-256, %d tokens) | %.1f us | %.1f us | |" % (
            r["tokens"], r["authenticate_p50_us"], r["authenticate_p99_us"]),
        "", ""])
    report(text, not a.no_record)


if __name__ == "__main__":
    main()
