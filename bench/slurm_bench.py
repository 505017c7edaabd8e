#!/usr/bin/python3
"""Kiln on Slurm against raw Slurm, in one run on one cluster (issue 14's targets).

  /usr/bin/python3 bench/slurm_bench.py [--n 100] [--many 1000] [--no-record]

Starts a real 2-node Slurm 22.05 (scripts/slurm.sh, the reference's latency
tuning: batch_sched_delay=0, sched_min_interval=0, OverSubscribe=FORCE:32) and a
kilnd whose pool "cluster" is that Slurm (release build in build/).
  1. submit-to-running: from the client's submit (Kiln: POST /v1/jobs; raw:
     `sbatch --wrap`) to the first instruction of the user's command (it prints
     its clock); Kiln and sbatch alternate, with random gaps (slurmctld schedules
     on a 1 s tick: fixed gaps would lock onto it). p50/p90/p99 over n each.
  2. end visible: from the command's last instruction (it prints its clock) to
     `kiln jobs describe`'s API answering a final state (polled every 2 ms), and
     to `squeue` showing the job ended (polled as fast as it answers).
  3. kilnd's CPU while `many` Kiln jobs wait in Slurm's queue and nothing changes
     (the partition is down): utime+stime over 30 s.
  4. `many` trivial jobs through Kiln and through sbatch: from the partition
     coming up to the last one ending; none lost, none run twice."""
import argparse, http.client, json, os, random, shutil, signal, subprocess, tempfile, time

from benchlib import ROOT, heading, machine, pct, report

SLURM_SH = os.path.join(ROOT, "scripts", "slurm.sh")


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


class Bench:
    def __init__(self, tmp):
        self.tmp = tmp
        self.slurm = os.path.join(tmp, "slurm")
        os.chmod(tmp, 0o755)  # slurmrestd runs as the slurm user: it reads slurm.conf here
        subprocess.run([SLURM_SH, "start", self.slurm, "24017"], check=True, capture_output=True)
        self.env = dict(line.split("=", 1) for line in open(os.path.join(self.slurm, "env")).read().split())
        self.senv = dict(os.environ, SLURM_CONF=self.env["SLURM_CONF"])
        os.makedirs(os.path.join(tmp, "shared"))
        os.makedirs(os.path.join(tmp, "out"))
        with open(os.path.join(tmp, "hook.token"), "w") as f:
            f.write("bench-hook-token-%d" % random.randrange(1 << 60))
        cfg = os.path.join(tmp, "kilnd.json")
        with open(cfg, "w") as f:
            json.dump({"instance_types": [{"name": "slurm.tiny", "vcpus": 1, "memory_mib": 64}],
                       "pools": [{"name": "cluster", "backend": "slurm", "instance_types": ["slurm.tiny"],
                                  "slurm": {"url": self.env["KILN_SLURM_URL"],
                                            "jwt_key_file": self.env["KILN_SLURM_JWT_KEY"],
                                            "shared_dir": os.path.join(tmp, "shared"),
                                            "hook_token_file": os.path.join(tmp, "hook.token")}}]}, f)
        data = os.path.join(tmp, "data")
        self.kilnd = subprocess.Popen([os.path.join(ROOT, "build", "cmd", "kilnd"), "--data-dir", data, "--listen",
                                       "127.0.0.1:0", "--config", cfg], stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(tmp, "kilnd.log"), "a"))
        addr = os.path.join(data, "kilnd.addr")
        for _ in range(1000):
            if os.path.exists(addr) and open(addr).read().strip():
                break
            time.sleep(0.01)
        self.addr = open(addr).read().strip()
        host, port = self.addr.rsplit(":", 1)
        self.token = open(os.path.join(data, "admin.token")).read().strip()
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        with open(os.path.join(self.slurm, "kiln-hooks"), "w") as f:
            f.write("http://%s cluster %s\n" % (self.addr, os.path.join(tmp, "hook.token")))
        self.seq = 0

    def call(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"null")

    def kiln_submit(self, script):
        self.seq += 1
        st, j = self.call("POST", "/v1/jobs", {"name": "b%d-%d" % (os.getpid(), self.seq),
                                                "command": ["/bin/sh", "-c", script],
                                                "instance": {"type": "slurm.tiny", "count": 1},
                                                "stop_grace_seconds": 1})
        assert st == 201, j
        return j["id"]

    def kiln_log(self, job_id):
        self.conn.request("GET", "/v1/jobs/%s/logs" % job_id, headers={"Authorization": "Bearer " + self.token})
        r = self.conn.getresponse()
        return r.read().decode()

    def sbatch(self, script, out):
        return subprocess.run(["sbatch", "--parsable", "-o", out, "--mem=64", "--wrap", script], env=self.senv,
                              capture_output=True, text=True, check=True).stdout.strip()

    def squeue_state(self, job):
        return subprocess.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], env=self.senv, capture_output=True,
                              text=True).stdout.strip()

    def stop(self):
        self.kilnd.send_signal(signal.SIGTERM)
        self.kilnd.wait(timeout=60)
        subprocess.run([SLURM_SH, "stop", self.slurm], capture_output=True)


STAMP = "echo start=$(date +%s%N); echo end=$(date +%s%N)"


def stamps(text):
    vals = dict(l.split("=", 1) for l in text.splitlines() if l.startswith(("start=", "end=")))
    return int(vals["start"]), int(vals["end"])


def latency(b, n):
    kiln_start, raw_start, kiln_end, raw_end = [], [], [], []
    for i in range(n):
        time.sleep(random.uniform(0.2, 1.2))
        t0 = now_ns()
        jid = b.kiln_submit(STAMP)
        while True:
            st, j = b.call("GET", "/v1/jobs/" + jid)
            if j["status"] in ("Completed", "Failed", "Stopped"):
                seen = now_ns()
                break
            time.sleep(0.002)
        assert j["status"] == "Completed", j
        s, e = stamps(b.kiln_log(jid))
        kiln_start.append((s - t0) / 1e6)
        kiln_end.append((seen - e) / 1e6)

        time.sleep(random.uniform(0.2, 1.2))
        out = os.path.join(b.tmp, "out", "raw-%d.out" % i)
        t0 = now_ns()
        job = b.sbatch(STAMP, out)
        while b.squeue_state(job) not in ("COMPLETED", "FAILED", "CANCELLED"):
            pass
        seen = now_ns()
        s, e = stamps(open(out).read())
        raw_start.append((s - t0) / 1e6)
        raw_end.append((seen - e) / 1e6)
    return kiln_start, raw_start, kiln_end, raw_end


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def partition(b, state):
    subprocess.run(["scontrol", "update", "PartitionName=debug", "State=" + state], env=b.senv, check=True)


def many(b, count):
    # Kiln: queued behind a down partition, then released.
    partition(b, "DOWN")
    ids = [b.kiln_submit("true") for _ in range(count)]
    time.sleep(5)  # every submit answered; the queue settles
    c0, t0 = cpu_s(b.kilnd.pid), time.time()
    time.sleep(30)
    idle_cpu = (cpu_s(b.kilnd.pid) - c0) / (time.time() - t0)
    start = time.time()
    partition(b, "UP")
    pending = set(ids)
    while pending:
        st, page = b.call("GET", "/v1/jobs?limit=1000&status=Completed")
        done = {j["id"] for j in page["jobs"]}
        pending -= done
        if pending:
            time.sleep(0.2)
    kiln_s = time.time() - start
    names = subprocess.run(["squeue", "-h", "-a", "-t", "all", "-o", "%j"], env=b.senv, capture_output=True,
                           text=True).stdout.split()
    kiln_names = [n for n in names if n.startswith("kiln.")]
    twice = len(kiln_names) - len(set(kiln_names))
    # Raw Slurm: the same count of trivial batch jobs.
    partition(b, "DOWN")
    jobs = [b.sbatch("true", "/dev/null") for _ in range(count)]
    start = time.time()
    partition(b, "UP")
    while subprocess.run(["squeue", "-h", "-o", "%i"], env=b.senv, capture_output=True, text=True).stdout.strip():
        time.sleep(0.2)
    raw_s = time.time() - start
    return idle_cpu, kiln_s, raw_s, len(ids) - len(set(ids)), twice, len(jobs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--many", type=int, default=1000)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kiln-slurm-bench-", dir="/var/tmp")
    b = Bench(tmp)
    try:
        ks, rs, ke, re_ = latency(b, args.n)
        idle_cpu, kiln_s, raw_s, dup_ids, twice, raw_n = many(b, args.many)
    finally:
        b.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    row = lambda v: "%.1f / %.1f / %.1f ms" % (pct(v, 50), pct(v, 90), pct(v, 99))
    text = "\n%s\n\nMachine: %s; Slurm 22.05.8, 2 slurmd on one host (scripts/slurm.sh)\n\n" % (
        heading("Kiln on Slurm vs raw Slurm"), machine())
    text += "| measure | Kiln on Slurm | raw Slurm | target |\n|---|---|---|---|\n"
    text += "| submit-to-running p50 / p90 / p99 (n=%d each) | %s | %s (sbatch) | Kiln adds <= 10 ms p50: adds %.1f ms |\n" % (
        args.n, row(ks), row(rs), pct(ks, 50) - pct(rs, 50))
    text += "| end of the process to a final state visible, p50 / p90 / p99 | %s (describe, polled every 2 ms) | %s (squeue, polled back to back) | Kiln p99 <= 100 ms |\n" % (
        row(ke), row(re_))
    text += "| %d trivial jobs, partition up to the last one ended | %.1f s (none lost; %d run twice) | %.1f s (sbatch) | within 10%%: ratio %.2f |\n" % (
        args.many, kiln_s, twice, raw_s, kiln_s / raw_s)
    text += "| kilnd CPU while %d jobs wait in Slurm's queue (partition down), 30 s | %.2f%% of a core | | near zero |\n" % (
        args.many, idle_cpu * 100)
    report(text, not args.no_record)


if __name__ == "__main__":
    main()
