#!/usr/bin/python3
"""Kiln core benchmarks (issue "Kiln core"). Runs real kilnd processes.

  /usr/bin/python3 bench/run_bench.py [--build build] [--jobs 10000] [--latency-jobs 200] [--store-jobs 100000]

Measures:
  * submit-to-running latency: from the POST /v1/jobs response to the user process
    starting (the job is `date +%s%N`; its first output line is its start time);
  * end-to-end throughput of N trivial jobs (/bin/true) submitted by 8 client threads;
  * kilnd RSS idle, and with 100,000 finished jobs in the store, with describe and
    list-page latency over HTTP.
Appends a section to bench/RESULTS.md with the machine it ran on.
"""
import argparse, concurrent.futures, json, os, random, shutil, signal, subprocess
import tempfile, threading, time, urllib.request

from benchlib import ROOT, heading, machine, pct, report




class Kilnd:
    def __init__(self, build, data):
        self.data = data
        os.makedirs(data, exist_ok=True)
        addr = os.path.join(data, "kilnd.addr")
        if os.path.exists(addr):
            os.remove(addr)
        self.proc = subprocess.Popen([os.path.join(build, "cmd", "kilnd"), "--data-dir", data, "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "kilnd.log"), "a"))
        for _ in range(400):
            if os.path.exists(addr) and open(addr).read().strip():
                break
            time.sleep(0.01)
        self.base = "http://" + open(addr).read().strip()
        # kilnd's bootstrap admin token (builds from before authentication write none).
        token = os.path.join(data, "admin.token")
        self.auth = {"Authorization": "Bearer " + open(token).read().strip()} if os.path.exists(token) else {}

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers=dict({"Content-Type": "application/json"}, **self.auth))
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def rss_mb(self):
        for line in open("/proc/%d/status" % self.proc.pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return -1

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def wait_terminal(k, ids, timeout=600):
    pending = set(ids)
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        done = set()
        for status in ("Completed", "Failed", "Stopped"):
            token = None
            while True:
                q = "/v1/jobs?status=%s&limit=1000" % status + ("&page_token=" + token if token else "")
                page = k.call("GET", q)
                done.update(j["id"] for j in page["jobs"])
                token = page["next_page_token"]
                if not token:
                    break
        pending -= done
        if pending:
            time.sleep(0.05)
    return pending


def bench_latency(k, n):
    lat = []
    for i in range(n):
        spec = {"name": "lat-%d-%d" % (os.getpid(), i), "command": ["/bin/date", "+%s%N"], "instance": {"type": "local.small"}}
        job = k.call("POST", "/v1/jobs", spec)
        t_return = time.time_ns()
        if wait_terminal(k, [job["id"]], 60):
            raise SystemExit("latency job did not finish")
        log = os.path.join(k.data, "instances", job["id"] + ".1.0", "output.log")
        first = open(log).readline().strip()
        lat.append((int(first) - t_return) / 1e6)
        time.sleep(random.uniform(0.005, 0.02))
    return lat


def last_seq(k):
    """The newest global event sequence number (reads the stream without following)."""
    last = 0
    with urllib.request.urlopen(urllib.request.Request(k.base + "/v1/events?follow=false", headers=k.auth),
                                timeout=60) as r:
        for line in r:
            if line.startswith(b"id: "):
                last = int(line[4:])
    return last


def bench_throughput(k, n):
    """Waits on the global event stream (no polling) for every job to end."""
    specs = [{"name": "thr-%d-%d" % (os.getpid(), i), "command": ["/bin/true"], "instance": {"type": "local.small"}}
             for i in range(n)]
    ended = set()
    all_done = threading.Event()
    start_seq = last_seq(k)

    def watch():
        req = urllib.request.Request(k.base + "/v1/events", headers=dict({"Last-Event-ID": str(start_seq)}, **k.auth))
        with urllib.request.urlopen(req, timeout=3600) as r:
            for line in r:
                if line.startswith(b"data: "):
                    e = json.loads(line[6:])
                    if e.get("status") in ("Completed", "Failed", "Stopped"):
                        ended.add(e["job_id"])
                        if len(ended) >= n:
                            all_done.set()
                            return

    threading.Thread(target=watch, daemon=True).start()
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda s: k.call("POST", "/v1/jobs", s)["id"], specs))
    t_submitted = time.time()
    all_done.wait(3600)
    t1 = time.time()
    left = set(ids) - ended
    failed = k.call("GET", "/v1/jobs?status=Failed&limit=1")["jobs"]
    return {"jobs": n, "submit_s": t_submitted - t0, "total_s": t1 - t0, "jobs_per_s": n / (t1 - t0),
            "unfinished": len(left), "any_failed": bool(failed)}


def bench_store(build, n):
    data = tempfile.mkdtemp(prefix="kiln-bench-store-")
    subprocess.run([os.path.join(build, "bench", "kiln_fill_store"), os.path.join(data, "kiln.db"), str(n)], check=True)
    k = Kilnd(build, data)
    time.sleep(1.0)
    idle = k.rss_mb()
    describe, listing = [], []
    for _ in range(2000):
        i = random.randrange(n)
        t = time.perf_counter()
        k.call("GET", "/v1/jobs/j-fill%d" % i)
        describe.append((time.perf_counter() - t) * 1000)
    token = None
    for i in range(300):
        q = "/v1/jobs?limit=50" + ("&page_token=" + token if token else "")
        if i % 3 == 1:
            q += "&status=Completed"
        if i % 3 == 2:
            q = "/v1/jobs?limit=50&tag=team=a"
        t = time.perf_counter()
        page = k.call("GET", q)
        listing.append((time.perf_counter() - t) * 1000)
        token = page["next_page_token"] if i % 3 == 0 else token
    after = k.rss_mb()
    k.stop()
    shutil.rmtree(data, ignore_errors=True)
    return {"jobs": n, "rss_idle_mb": idle, "rss_after_queries_mb": after,
            "describe_p50_ms": pct(describe, 50), "describe_p99_ms": pct(describe, 99),
            "list_p50_ms": pct(listing, 50), "list_p99_ms": pct(listing, 99)}




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--latency-jobs", type=int, default=200)
    ap.add_argument("--store-jobs", type=int, default=100000)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    data = tempfile.mkdtemp(prefix="kiln-bench-")
    k = Kilnd(a.build, data)
    time.sleep(1.0)
    idle = k.rss_mb()
    lat = bench_latency(k, a.latency_jobs)
    thr = bench_throughput(k, a.jobs)
    rss_after = k.rss_mb()
    k.stop()
    shutil.rmtree(data, ignore_errors=True)
    store = bench_store(a.build, a.store_jobs)

    rows = [
        ("submit-to-running p50", "%.1f ms" % pct(lat, 50), "<= 5 ms"),
        ("submit-to-running p99", "%.1f ms" % pct(lat, 99), "<= 25 ms"),
        ("throughput, %d trivial jobs end to end" % thr["jobs"], "%.0f jobs/s (%.1f s; submit %.1f s; unfinished %d)" % (
            thr["jobs_per_s"], thr["total_s"], thr["submit_s"], thr["unfinished"]), ">= 500 jobs/s"),
        ("kilnd RSS idle (empty store)", "%.1f MB" % idle, "<= 30 MB"),
        ("kilnd RSS after the throughput run", "%.1f MB" % rss_after, ""),
        ("kilnd RSS, %d finished jobs, idle" % store["jobs"], "%.1f MB" % store["rss_idle_mb"], "<= 150 MB"),
        ("kilnd RSS, %d finished jobs, after queries" % store["jobs"], "%.1f MB" % store["rss_after_queries_mb"], "<= 150 MB"),
        ("describe p50 / p99 (100k jobs)", "%.2f / %.2f ms" % (store["describe_p50_ms"], store["describe_p99_ms"]), "p99 <= 10 ms"),
        ("list page (50) p50 / p99 (100k jobs)", "%.2f / %.2f ms" % (store["list_p50_ms"], store["list_p99_ms"]), "p99 <= 10 ms"),
    ]
    out = ["", heading("Kiln core"), "",
           "Machine: " + machine(), "", "| measure | result | target |", "|---|---|---|"]
    out += ["| %s | %s | %s |" % r for r in rows]
    text = "\n".join(out) + "\n"
    report(text, not a.no_record)


if __name__ == "__main__":
    main()
