#!/usr/bin/python3
"""kiln-entrypoint overhead and large-hyperparameter fetch (issue 4's speed targets).

  /usr/bin/python3 bench/entrypoint_bench.py [--runs 50] [--no-record]

Starts kilnd, submits two long-running jobs (small and ~5 MB / 10,000-key
hyperparameters), mints their instance tokens from kilnd's secret, then:
  * times GET /v1/runtime for each (the fetch round trip, body read, not parsed);
  * runs `kiln-entrypoint -- /bin/date +%s%N` as each instance would (contract
    files into a temp /opt/ml root) and takes the user command's first line time:
    overhead = (start -> first line) - fetch round trip.
"""
import argparse, glob, hashlib, hmac, http.client, json, os, shutil, signal, subprocess, tempfile, time

from benchlib import ROOT, heading, machine, pct, report
BIN = os.path.join(ROOT, "build", "cmd")




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="kiln-epbench-", dir="/var/tmp")
    kilnd = subprocess.Popen([os.path.join(BIN, "kilnd"), "--data-dir", data, "--listen", "127.0.0.1:0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (os.path.exists(data + "/kilnd.addr") and open(data + "/kilnd.addr").read().strip()):
            time.sleep(0.01)
        addr = open(data + "/kilnd.addr").read().strip()
        host, port = addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))

        token = open(data + "/admin.token").read().strip()

        def call(method, path, body=None, headers=None):
            # The admin's API token, unless the call brings its own (an instance token).
            h = dict({"Authorization": "Bearer " + token, "Content-Type": "application/json"}, **(headers or {}))
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
            r = conn.getresponse()
            return r.status, r.read()

        big = {"k%05d" % i: "v" * 500 for i in range(10000)}
        jobs = {}
        for label, hps in (("small", {"lr": 0.1, "depth": 6}), ("5MB", big)):
            st, body = call("POST", "/v1/jobs", {"name": "epbench-%s-%d" % (label.lower(), os.getpid()),
                                                 "command": ["/bin/sleep", "300"], "hyperparameters": hps})
            assert st == 201, body
            jobs[label] = json.loads(body)["id"]
        secret = open(data + "/secret.key", "rb").read()
        tokens = {l: "%s.1.0.%s" % (j, hmac.new(secret, (j + ".1.0").encode(), hashlib.sha256).hexdigest())
                  for l, j in jobs.items()}
        time.sleep(1.0)  # let the real instances start

        rows = []
        for label, token in tokens.items():
            fetch = []
            for _ in range(a.runs):
                # The fetch round trip: the runtime document, plus the staged
                # hyperparameters when they are too big to travel inline.
                t = time.perf_counter()
                st, body = call("GET", "/v1/runtime", headers={"Authorization": "Bearer " + token})
                assert st == 200, body[:200]
                size = len(body)
                if json.loads(body).get("hyperparameters_url"):
                    st, raw = call("GET", "/v1/runtime/hyperparameters", headers={"Authorization": "Bearer " + token})
                    assert st == 200, raw[:200]
                    size += len(raw)
                fetch.append((time.perf_counter() - t) * 1000)
            first_line = []
            for i in range(a.runs):
                root = tempfile.mkdtemp(prefix="kiln-epbench-ml-", dir="/var/tmp")
                env = dict(os.environ, KILN_API_URL="http://" + addr, KILN_TOKEN=token, KILN_RUNTIME="kiln-local",
                           KILN_ML_ROOT=root)
                t0 = time.time_ns()
                p = subprocess.run([os.path.join(BIN, "kiln-entrypoint"), "--", "/bin/date", "+%s%N"], env=env,
                                   capture_output=True, text=True, timeout=60)
                first = int(p.stdout.split()[0])
                first_line.append((first - t0) / 1e6)
                shutil.rmtree(root, ignore_errors=True)
            f50 = pct(fetch, 50)
            rows.append((label, size, f50, pct(fetch, 99), pct(first_line, 50), pct(first_line, 99),
                         pct(first_line, 50) - f50))
        for j in jobs.values():
            call("POST", "/v1/jobs/%s/stop" % j)
    finally:
        kilnd.send_signal(signal.SIGTERM)
        kilnd.wait(timeout=30)
        for pidfile in glob.glob(data + "/instances/*/supervisor.pid"):
            try:
                os.kill(int(open(pidfile).read().split()[0]), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        time.sleep(0.5)
        shutil.rmtree(data, ignore_errors=True)

    out = ["", heading("kiln-entrypoint"), "",
           "Machine: %s. %d runs each; entrypoint run directly (no sandbox)," % (machine(), a.runs),
           "so the numbers are the entrypoint's own cost; the sandbox's is in the Kiln core section.", "",
           "| hyperparameters | fetched | fetch p50 / p99 | start -> first user line p50 / p99 | overhead beyond fetch (p50) | targets |",
           "|---|---|---|---|---|---|"]
    for label, size, f50, f99, l50, l99, over in rows:
        target = "fetch <= 50 ms" if label == "5MB" else "overhead <= 5 ms"
        out.append("| %s | %.1f KB | %.2f / %.2f ms | %.2f / %.2f ms | %.2f ms | %s |" % (
            label, size / 1024.0, f50, f99, l50, l99, over, target))
    text = "\n".join(out) + "\n"
    report(text, not a.no_record)


if __name__ == "__main__":
    main()
