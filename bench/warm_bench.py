#!/usr/bin/python3
"""Submit to the script's first printed line, cold vs warm sandbox vs warm runtime (issue 15).

  /usr/bin/python3 bench/warm_bench.py [--runs 30] [--no-record]

Starts kilnd with two warm pools: local.small keeps /usr/bin/python3 started with
sklearn.ensemble (and torch, when /usr/bin/python3 has it) imported; local.medium
keeps plain pre-started sandboxes. ml.t3.medium has no pool: cold starts. For each
script (trivial, `import sklearn.ensemble`, `import torch`) and each way, it
submits --runs jobs one at a time (each once a warm sandbox is idle) and takes
FirstLine's time (the entrypoint's clock, when it read the line) minus the time
just before the POST. The bare interpreter's start (fork/exec of the same script
to its first line, no sandbox) is the floor for a warm sandbox without a runtime.
"""
import argparse, glob, http.client, json, os, shutil, signal, subprocess, tempfile, time

from benchlib import ROOT, heading, machine, pct, report

BIN = os.path.join(ROOT, "build", "cmd")
PY = "/usr/bin/python3"


def has_torch():
    return subprocess.run([PY, "-c", "import torch"], capture_output=True).returncode == 0


def bare_start(script, runs):
    """fork/exec of `python3 -c script` to its first line, in ms."""
    out = []
    for _ in range(runs):
        t0 = time.monotonic()
        p = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE)
        p.stdout.readline()
        out.append((time.monotonic() - t0) * 1000)
        p.wait()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    torch = has_torch()
    preload = ["sklearn.ensemble"] + (["torch"] if torch else [])
    scripts = [("trivial", "print('first', flush=True)"),
               ("import sklearn.ensemble", "import sklearn.ensemble\nprint('first', flush=True)")]
    if torch:
        scripts.append(("import torch", "import torch\nprint('first', flush=True)"))
    data = tempfile.mkdtemp(prefix="kiln-warmbench-", dir="/var/tmp")
    os.chmod(data, 0o755)
    code = os.path.join(data, "code")
    os.makedirs(code)
    config = os.path.join(data, "kilnd.yaml")
    with open(config, "w") as f:
        json.dump({"sandbox": {"warm": [
            {"instance_type": "local.small", "count": 1, "runtime": PY, "preload": preload},
            {"instance_type": "local.medium", "count": 1}]}}, f)
    kilnd = subprocess.Popen([os.path.join(BIN, "kilnd"), "--data-dir", os.path.join(data, "d"), "--listen",
                              "127.0.0.1:0", "--config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        addr_file = os.path.join(data, "d", "kilnd.addr")
        while not (os.path.exists(addr_file) and open(addr_file).read().strip()):
            time.sleep(0.01)
        host, port = open(addr_file).read().strip().rsplit(":", 1)
        token = open(os.path.join(data, "d", "admin.token")).read().strip()
        conn = http.client.HTTPConnection(host, int(port))

        def call(method, path, body=None):
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read().decode()

        def idle(_):
            # Both pools idle again: the next job takes a warm one (GET /v1/pools).
            st, body = call("GET", "/v1/pools")
            return sum(p.get("warm_idle", 0) for p in json.loads(body)["pools"]) >= 2

        ways = [("cold", "ml.t3.medium", None), ("warm sandbox", "local.medium", 2048),
                ("warm runtime", "local.small", 512)]
        results = {}
        for sname, script in scripts:
            with open(os.path.join(code, "run.py"), "w") as f:
                f.write(script + "\n")
            for way, itype, mib in ways:
                lat, kinds = [], set()
                for i in range(a.runs):
                    deadline = time.monotonic() + 120
                    while not idle(mib) and time.monotonic() < deadline:
                        time.sleep(0.02)
                    spec = {"name": "wb-%d-%d" % (int(time.time() * 1000), i), "command": ["python3", "run.py"],
                            "code_dir": code, "instance": {"type": itype}}
                    t0 = time.time() * 1000
                    st, body = call("POST", "/v1/jobs", spec)
                    assert st == 201, body
                    jid = json.loads(body)["id"]
                    while json.loads(call("GET", "/v1/jobs/" + jid)[1])["status"] not in ("Completed", "Failed", "Stopped"):
                        time.sleep(0.02)
                    st, text = call("GET", "/v1/jobs/%s/events?follow=false" % jid)
                    first = None
                    for block in text.split("\n\n"):
                        for line in block.split("\n"):
                            if line.startswith("data: "):
                                ev = json.loads(line[6:])
                                p = ev.get("payload", {})
                                if ev.get("type") == "PhaseReported" and p.get("phase") == "FirstLine":
                                    first = p.get("time_ms")
                                if ev.get("type") == "PhaseReported" and p.get("phase") == "Training":
                                    kinds.add(p.get("start"))
                    assert first, text[-2000:]
                    lat.append(first - t0)
                results[(sname, way)] = (lat, kinds)
            results[(sname, "bare interpreter")] = (bare_start(script, a.runs), {"no sandbox"})
    finally:
        kilnd.send_signal(signal.SIGTERM)
        kilnd.wait()
        for m in glob.glob(os.path.join(data, "d", "scratch")):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)

    lines = [heading("Warm sandboxes and warm runtimes: submit to the script's first line"), "",
             "Machine: " + machine() + ". %d runs per cell, one job at a time; ms (p50 / p99)." % a.runs, "",
             "| script | cold | warm sandbox | warm runtime | bare interpreter (no sandbox) | cold / warm runtime |",
             "|---|---|---|---|---|---|"]
    for sname, _ in scripts:
        cells = []
        for way in ("cold", "warm sandbox", "warm runtime", "bare interpreter"):
            lat, kinds = results[(sname, way)]
            cells.append("%.1f / %.1f" % (pct(lat, 50), pct(lat, 99)))
        ratio = pct(results[(sname, "cold")][0], 50) / max(0.01, pct(results[(sname, "warm runtime")][0], 50))
        lines.append("| %s | %s | %.0f× |" % (sname, " | ".join(cells), ratio))
    lines.append("")
    lines.append("Start kinds seen (Training events): " + "; ".join(
        "%s/%s: %s" % (s, w, ",".join(sorted(k for k in results[(s, w)][1] if k)))
        for s, _ in scripts for w in ("cold", "warm sandbox", "warm runtime")))
    if not torch:
        lines.append("")
        lines.append("`import torch`: not measured, python3-torch is not installed on this machine.")
    report("\n".join(lines) + "\n\n", not a.no_record)


if __name__ == "__main__":
    main()
