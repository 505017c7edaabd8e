#!/usr/bin/python3
"""Describe latency with 10,000 idle event streams open (issue 13's target: p99
within 2x its p99 without them), on a real kilnd with a running job.

  /usr/bin/python3 bench/streams_bench.py [--streams 10000] [--n 3000] [--no-record]

One kilnd (local backend, SQLite) runs a job that sleeps. A keep-alive client
times GET /v1/jobs/{id} n times; then 10,000 connections each open that job's
event stream (SSE) and stay idle; the same describe is timed again, health too,
and a second job is submitted and must complete while they are open."""
import argparse, http.client, json, os, resource, select, shutil, signal, socket, subprocess, tempfile, time

from benchlib import ROOT, heading, machine, pct, report


class Kilnd:
    def __init__(self, data, config):
        os.makedirs(data, exist_ok=True)
        cfg = os.path.join(data, "..", "kilnd.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        self.proc = subprocess.Popen([os.path.join(ROOT, "build", "cmd", "kilnd"), "--data-dir", data,
                                      "--listen", "127.0.0.1:0", "--config", cfg],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "..", "kilnd.log"), "a"))
        addr = os.path.join(data, "kilnd.addr")
        for _ in range(1000):
            if os.path.exists(addr) and open(addr).read().strip():
                break
            time.sleep(0.01)
        self.host, port = open(addr).read().strip().rsplit(":", 1)
        self.port = int(port)
        self.token = open(os.path.join(data, "admin.token")).read().strip()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def rss_mb(self):
        for line in open("/proc/%d/status" % self.proc.pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        return -1

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def wait_status(k, job_id, want, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, j = k.call("GET", "/v1/jobs/" + job_id)
        if j["status"] in want or j["secondary_status"] in want:
            return j
        time.sleep(0.05)
    raise RuntimeError("job %s not %s" % (job_id, want))


def time_describe(k, job_id, n):
    lat = []
    for i in range(n + 100):
        t0 = time.perf_counter()
        st, _ = k.call("GET", "/v1/jobs/" + job_id)
        if st != 200:
            raise RuntimeError("describe: %d" % st)
        if i >= 100:
            lat.append((time.perf_counter() - t0) * 1e6)
    return lat


def time_health(k, n=500):
    lat = []
    for _ in range(n):
        c = http.client.HTTPConnection(k.host, k.port, timeout=60)  # a new connection each time
        t0 = time.perf_counter()
        c.request("GET", "/v1/health")
        r = c.getresponse()
        r.read()
        lat.append((time.perf_counter() - t0) * 1e6)
        c.close()
        if r.status != 200:
            raise RuntimeError("health: %d" % r.status)
    return lat


def open_streams(k, job_id, n):
    """n idle SSE connections on the job's events; returns them once each has its 200."""
    socks, pending = [], {}
    req = ("GET /v1/jobs/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % (job_id, k.token)).encode()
    for _ in range(n):
        s = socket.create_connection((k.host, k.port), timeout=60)
        s.sendall(req)
        s.setblocking(False)
        socks.append(s)
        pending[s.fileno()] = [s, b""]
    ok = 0
    poller = select.epoll()
    for fd in pending:
        poller.register(fd, select.EPOLLIN)
    deadline = time.time() + 120
    while pending and time.time() < deadline:
        for fd, _ in poller.poll(1.0):
            s, got = pending[fd]
            got += s.recv(65536)
            if b"\r\n\r\n" in got:
                ok += got.startswith(b"HTTP/1.1 200")
                poller.unregister(fd)
                del pending[fd]
            else:
                pending[fd][1] = got
    poller.close()
    return socks, ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.streams + 200:
        raise SystemExit("the open-file limit (%d) is too low for %d streams" % (hard, a.streams))
    tmp = tempfile.mkdtemp(prefix="kiln-streams-bench-", dir="/var/tmp")
    os.chmod(tmp, 0o755)
    k = Kilnd(os.path.join(tmp, "data"), {"api": {"max_streams": a.streams + 100,
                                                  "max_streams_per_principal": a.streams + 100,
                                                  "max_connections_per_address": a.streams + 1000}})
    socks, job = [], None
    try:
        st, job = k.call("POST", "/v1/jobs", {"name": "sleeper", "command": ["/bin/sleep", "600"]})
        assert st == 201, job
        wait_status(k, job["id"], {"Training"})
        rss_idle = k.rss_mb()
        base = time_describe(k, job["id"], a.n)
        base_health = time_health(k)
        t0 = time.time()
        socks, ok = open_streams(k, job["id"], a.streams)
        open_s = time.time() - t0
        if ok != a.streams:
            raise RuntimeError("only %d of %d streams opened" % (ok, a.streams))
        rss_streams = k.rss_mb()
        loaded = time_describe(k, job["id"], a.n)
        loaded_health = time_health(k)
        t0 = time.time()
        st, other = k.call("POST", "/v1/jobs", {"name": "during", "command": ["/bin/true"]})
        assert st == 201, other
        done = wait_status(k, other["id"], {"Completed", "Failed", "Stopped"})
        during_s = time.time() - t0
        assert done["status"] == "Completed", done
        still = sum(1 for s in socks if s.fileno() >= 0)
    finally:
        for s in socks:
            s.close()
        if job:
            k.call("POST", "/v1/jobs/%s/stop" % job["id"])
        k.stop()
        subprocess.run(["umount", "-l", os.path.join(tmp, "data", "scratch")], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = pct(loaded, 99) / pct(base, 99)
    text = "\n".join([
        heading("Describe with 10,000 idle event streams open"), "",
        "Machine: %s. One kilnd (local backend, SQLite on disk) with a running job; %d describes of it over one "
        "keep-alive connection before and while %d connections hold that job's event stream (SSE) open and idle; "
        "health on a new connection each time (500)." % (machine(), a.n, a.streams), "",
        "| | idle | with %d streams | target |" % a.streams, "|---|---|---|---|",
        "| describe p50 | %.0f us | %.0f us | |" % (pct(base, 50), pct(loaded, 50)),
        "| describe p99 | %.0f us | %.0f us | |" % (pct(base, 99), pct(loaded, 99)),
        "| **describe p99, with streams / idle** | | **%.2fx** | <= 2x |" % ratio,
        "| health p99 (new connection) | %.0f us | %.0f us | |" % (pct(base_health, 99), pct(loaded_health, 99)),
        "| kilnd RSS | %.1f MB | %.1f MB | |" % (rss_idle, rss_streams),
        "", "Opening the %d streams took %.1f s; a job submitted while they were open completed in %.2f s; "
        "%d streams were still open at the end." % (a.streams, open_s, during_s, still), "", ""])
    report(text, not a.no_record)


if __name__ == "__main__":
    main()
