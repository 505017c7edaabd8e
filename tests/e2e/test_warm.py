"""Warm sandboxes and warm runtimes on a real kilnd: local.small jobs take a
pre-started sandbox whose preloaded /usr/bin/python3 becomes the job's script;
local.medium jobs start cold. The same script observes the same things either
way, nothing of one job reaches the next, and the pool refills."""
import json
import os
import shutil
import tempfile
import time
import unittest

from test_kilnd import KilndHarness, unique, DEADLINE_S

_CONFIG_DIR = tempfile.mkdtemp(prefix="kiln-warm-config-", dir="/var/tmp")
os.chmod(_CONFIG_DIR, 0o755)
_CONFIG = os.path.join(_CONFIG_DIR, "kilnd.yaml")
with open(_CONFIG, "w") as _f:
    _f.write("sandbox:\n"
             "  warm:\n"
             "    - {instance_type: local.small, count: 2, runtime: /usr/bin/python3, preload: [json, decimal]}\n"
             "    - {instance_type: ml.t3.medium, count: 1, max_idle_seconds: 2}\n")


def tearDownModule():
    shutil.rmtree(_CONFIG_DIR, ignore_errors=True)


# What a job observes of its process and instance, one JSON line.
OBSERVE = r'''
import json, os, resource, signal, socket, sys
def sockets():
    out = []
    for f in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink("/proc/self/fd/" + f)
        except OSError:
            continue  # the directory listing's own descriptor
        if link.startswith("socket:"):
            out.append(link)
    return out
obs = {
    "argv": sys.argv, "name": __name__, "file": __file__, "cwd": os.getcwd(), "path0": sys.path[0],
    "env": sorted(k for k in os.environ if not k.startswith("KILN_") and k not in ("SM_CURRENT_HOST",)),
    "uid": os.getuid(), "hostname": socket.gethostname(),
    "signals": [str(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)],
    "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    "cgroup_pids_max": open("/sys/fs/cgroup/pids.max").read().strip() if os.path.exists("/sys/fs/cgroup/pids.max") else "?",
    "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())),
    "sockets": sockets(),
    "tmp": sorted(os.listdir("/tmp")),
    "model": sorted(os.listdir("/opt/ml/model")),
    "train": open("/opt/ml/input/data/train/data.csv").read(),
    "hp": json.load(open("/opt/ml/input/config/hyperparameters.json")),
}
try:
    open("/opt/ml/input/data/train/data.csv", "a").write("x")
    obs["input_write"] = "allowed"
except OSError as e:
    obs["input_write"] = e.errno
print("OBS " + json.dumps(obs, sort_keys=True), flush=True)
open("/tmp/left-by-" + os.environ["WHO"], "w").write("secret")
open("/opt/ml/model/model-" + os.environ["WHO"], "w").write("weights")
if os.environ.get("FAIL"):
    raise RuntimeError("diverged at step 3")
'''


class WarmSandboxE2E(KilndHarness):
    KILND_ARGS = ["--config", _CONFIG]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.code = os.path.join(cls.tmp, "code")
        os.makedirs(cls.code)
        with open(os.path.join(cls.code, "train.py"), "w") as f:
            f.write(OBSERVE)
        cls.train = os.path.join(cls.tmp, "train")
        os.makedirs(cls.train)
        with open(os.path.join(cls.train, "data.csv"), "w") as f:
            f.write("a,b\n1,2\n")
        os.chmod(cls.train, 0o755)

    def idle_slots(self, memory_mib=None):
        """Warm sandboxes' directories (all, or those of the type with this much memory)."""
        out = []
        for d in sorted(os.listdir(os.path.join(self.data, "instances"))):
            if not d.startswith("warm-slot-"):
                continue
            if memory_mib is not None:
                try:
                    with open(os.path.join(self.data, "instances", d, "launch.json")) as f:
                        if json.load(f)["memory_bytes"] != memory_mib << 20:
                            continue
                except (OSError, ValueError):
                    continue
            out.append(d)
        return out

    def wait_idle_slots(self, n):
        """Until n local.small sandboxes (and ml.t3.medium's) are idle and warm,
        as kilnd counts them (GET /v1/pools: a sandbox counts once its runtime's
        imports are done)."""
        n += 1  # the ml.t3.medium sandbox (test_08)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            st, doc = self.api("GET", "/v1/pools")
            self.assertEqual(st, 200, doc)
            if sum(p.get("warm_idle", 0) for p in doc["pools"]) >= n:
                return
            self.assertLess(time.monotonic(), deadline, doc)
            time.sleep(0.05)

    def started_runs(self, name, n):
        """The first n runs the schedule started; the schedule is deleted then."""
        try:
            deadline = time.monotonic() + DEADLINE_S
            while True:
                st, doc = self.api("GET", "/v1/schedules/" + name)
                started = [h for h in doc["history"] if h["outcome"] == "Started"]
                if len(started) >= n:
                    return started
                self.assertLess(time.monotonic(), deadline, doc)
                time.sleep(0.2)
        finally:
            self.api("DELETE", "/v1/schedules/" + name)

    def start_of(self, job_id):
        for _, ev, data in self.events("/v1/jobs/%s/events?follow=false" % job_id):
            p = data.get("payload", {})
            if ev == "PhaseReported" and p.get("phase") == "Training":
                return p.get("start"), p.get("start_note", "")
        self.fail("job %s: no Training phase event" % job_id)

    def run_script(self, instance_type, who, command=None, **env):
        env["WHO"] = who
        spec = self.spec(unique(who), command or ["python3", "train.py", "--epochs", "3"], code_dir=self.code,
                         inputs={"train": self.train}, hyperparameters={"lr": "0.1"}, environment=env)
        spec["instance"]["type"] = instance_type
        job = self.wait_terminal(self.submit(spec)["id"])
        log = self.logs(job["id"])
        line = [l for l in log.splitlines() if l.startswith("OBS ")]
        return job, (json.loads(line[0][4:]) if line else None), log

    def test_01_a_warm_run_observes_what_a_cold_run_does(self):
        self.wait_idle_slots(2)
        cold, cold_obs, cold_log = self.run_script("local.medium", "cold")
        warm, warm_obs, warm_log = self.run_script("local.small", "warm")
        self.assertEqual(cold["status"], "Completed", cold_log[-2000:])
        self.assertEqual(warm["status"], "Completed", warm_log[-2000:])
        self.assertEqual(self.start_of(cold["id"])[0], "cold")
        self.assertEqual(self.start_of(warm["id"])[0], "warm-runtime", warm_log[-2000:])
        # The job itself says how it started and how long acquiring its instance took.
        self.assertEqual(cold.get("start"), "cold", cold)
        self.assertEqual(warm.get("start"), "warm-runtime", warm)
        for job in (cold, warm):
            self.assertIsInstance(job["timings_ms"].get("acquire"), int, job["timings_ms"])
            self.assertGreaterEqual(job["timings_ms"]["acquire"], 0)
        for obs in (cold_obs, warm_obs):
            self.assertEqual(obs["argv"], ["train.py", "--epochs", "3"])
            self.assertEqual(obs["train"], "a,b\n1,2\n")
            self.assertIn(obs["input_write"], (13, 30))  # EACCES or EROFS: inputs are read-only
            self.assertEqual(obs["hp"], {"lr": "0.1"})
            self.assertEqual(obs["procs"], [])  # only the entrypoint and the job
            self.assertEqual(obs["sockets"], [])
            self.assertEqual(obs["model"], [])
        for key in ("input_write", "name", "file", "cwd", "path0", "env", "uid", "hostname", "signals", "nofile", "cgroup_pids_max",
                    "tmp"):
            self.assertEqual(cold_obs[key], warm_obs[key], key)

    def test_02_nothing_of_one_job_reaches_the_next(self):
        self.wait_idle_slots(2)
        first, obs1, log1 = self.run_script("local.small", "first")
        second, obs2, log2 = self.run_script("local.small", "second")
        self.assertEqual(first["status"], "Completed", log1[-2000:])
        self.assertEqual(second["status"], "Completed", log2[-2000:])
        self.assertEqual(self.start_of(second["id"])[0], "warm-runtime")
        self.assertEqual(obs2["tmp"], [])      # not /tmp/left-by-first
        self.assertEqual(obs2["model"], [])    # not model-first
        self.assertEqual(obs2["procs"], [])
        self.assertNotIn("KILN_WARM_RUNTIME", log2)
        # Each job's own outputs still reach the host.
        self.assertTrue(second["model_artifact"] if "model_artifact" in second else True)

    def test_03_failures_and_tracebacks_are_the_jobs_own(self):
        self.wait_idle_slots(2)
        job, _, log = self.run_script("local.small", "failing", FAIL="1")
        self.assertEqual(job["status"], "Failed")
        self.assertEqual(self.start_of(job["id"])[0], "warm-runtime")
        self.assertIn("RuntimeError: diverged at step 3", job["failure_reason"])
        self.assertIn('File "/opt/ml/code/train.py", line', log)
        self.assertNotIn('File "<string>"', log)  # no frame of the runtime's own

    def test_04_a_command_the_runtime_cannot_run_starts_cold_in_the_warm_sandbox(self):
        self.wait_idle_slots(2)
        job, obs, log = self.run_script("local.small", "shell", command=["/bin/sh", "-c", "exec python3 train.py"])
        self.assertEqual(job["status"], "Completed", log[-2000:])
        start, note = self.start_of(job["id"])
        self.assertEqual(start, "warm")
        self.assertIn("not the warm runtime", note)
        self.assertEqual(job.get("start"), "warm", job)
        self.assertEqual(job.get("start_note"), note, job)
        self.assertEqual(obs["train"], "a,b\n1,2\n")

    def test_05_a_warm_job_stops_with_its_grace_period(self):
        self.wait_idle_slots(2)
        spec = self.spec(unique("stop"), ["python3", "-c", "import time\nprint('up', flush=True)\ntime.sleep(300)"])
        job = self.submit(spec)
        self.wait_log(job["id"], "up")
        st, _ = self.api("POST", "/v1/jobs/%s/stop" % job["id"])
        self.assertIn(st, (200, 202))
        self.assertEqual(self.wait_terminal(job["id"])["status"], "Stopped")

    def test_06_the_pool_refills_and_slots_are_used_once(self):
        self.wait_idle_slots(2)
        before = set(self.idle_slots(512))  # local.small's; ml.t3.medium's is replaced every 2 s (test_08)
        job, _, log = self.run_script("local.small", "refill")
        self.assertEqual(job["status"], "Completed", log[-2000:])
        self.wait_idle_slots(2)
        after = set(self.idle_slots(512))
        self.assertEqual(len(before - after), 1)  # the one the job took is gone for good

    def test_07_every_run_of_a_schedule_starts_warm(self):
        # A 15-minute retraining schedule, simulated with a 2 s period.
        self.wait_idle_slots(2)
        name = unique("retrain")[:30]
        job = self.spec("ignored", ["python3", "train.py"], code_dir=self.code, inputs={"train": self.train},
                        environment={"WHO": "sched"})
        del job["name"]
        st, doc = self.api("POST", "/v1/schedules", {"name": name, "cron": "@every 2s", "job": job})
        self.assertEqual(st, 201, doc)
        started = self.started_runs(name, 3)
        for h in started[:3]:
            ran = self.wait_terminal(h["job_id"])
            self.assertEqual(ran["status"], "Completed", self.logs(h["job_id"])[-2000:])
            self.assertEqual(self.start_of(h["job_id"])[0], "warm-runtime", h)

    def test_08_an_idle_sandbox_is_replaced_after_max_idle_seconds(self):
        def medium():
            return set(self.idle_slots(4096))
        deadline = time.monotonic() + DEADLINE_S
        first = set()
        while not first:
            self.assertLess(time.monotonic(), deadline)
            first = medium()
            time.sleep(0.05)
        while not (medium() - first):
            self.assertLess(time.monotonic(), deadline, "the idle sandbox %s was never replaced" % first)
            time.sleep(0.1)
        st, pools = self.api("GET", "/v1/pools")
        self.assertEqual(st, 200, pools)

    def test_09_a_schedule_prewarms_a_sandbox_for_its_runs(self):
        # local.medium has no warm sandboxes of its own: the schedule asks for one
        # 2 s ahead of each slot. Every run after the first starts warm.
        name = unique("prewarm")[:30]
        job = self.spec("ignored", ["python3", "train.py"], code_dir=self.code, inputs={"train": self.train},
                        environment={"WHO": "prewarm"})
        job["instance"]["type"] = "local.medium"
        spec = os.path.join(self.tmp, name + ".json")
        with open(spec, "w") as f:
            json.dump(job, f)
        made = self.kiln("schedules", "create", name, spec, "--cron", "@every 3s", "--prewarm", "2",
                         "--preload", "json", "--json")
        self.assertEqual(made.returncode, 0, made.stderr)
        self.assertEqual(json.loads(made.stdout)["prewarm"], {"seconds": 2, "preload": ["json"]})
        started = self.started_runs(name, 3)
        for h in started[:3]:
            self.assertEqual(self.wait_terminal(h["job_id"])["status"], "Completed", self.logs(h["job_id"])[-2000:])
        for h in started[1:3]:
            self.assertEqual(self.start_of(h["job_id"])[0], "warm-runtime", h)


if __name__ == "__main__":
    unittest.main()
