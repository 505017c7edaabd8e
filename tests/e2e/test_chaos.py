"""The kill -9 campaign: many short jobs while kilnd is killed with SIGKILL at
random moments (a launch and its supervisor handshake among them) and restarted
at once. Every job must end Completed, each command must have run exactly once,
and nothing may leak: no cgroup, no mount, no bridge of this data dir.

KILN_CHAOS_JOBS and KILN_CHAOS_KILLS size it (CI runs the defaults; bench/ runs
hundreds). The random seed is printed, and KILN_CHAOS_SEED replays a run."""
import glob
import json
import os
import random
import signal
import sys
import threading
import time
import unittest
import urllib.error

from test_kilnd import KilndHarness, unique, DEADLINE_S, TERMINAL

JOBS = int(os.environ.get("KILN_CHAOS_JOBS", "40"))
KILLS = int(os.environ.get("KILN_CHAOS_KILLS", "8"))


class ChaosE2E(KilndHarness):
    def submit_retrying(self, spec):
        """Submits through kilnd restarts: a submit whose answer was lost in a kill
        finds its job by name (names are unique) instead of creating it twice."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            try:
                st, body = self.api("POST", "/v1/jobs", spec)
                if st == 201:
                    return body["id"]
                if st == 409:
                    return self.get_job(spec["name"])["id"]
            except (OSError, urllib.error.URLError, AssertionError):
                pass
            time.sleep(0.05)
        self.fail("could not submit %s" % spec["name"])

    def get_retrying(self, job_id):
        while True:
            try:
                return self.get_job(job_id)
            except (OSError, urllib.error.URLError, AssertionError, ValueError):
                time.sleep(0.05)

    def test_kill9_campaign_loses_nothing_runs_nothing_twice_leaks_nothing(self):
        seed = int(os.environ.get("KILN_CHAOS_SEED", str(random.randrange(1 << 30))))
        sys.stderr.write("(chaos seed %d: %d jobs, %d kills) " % (seed, JOBS, KILLS))
        rnd = random.Random(seed)
        bridges_before = set(glob.glob("/sys/class/net/kb*"))
        base = os.path.join(self.tmp, "chaos")
        os.makedirs(base, mode=0o755)
        lock = threading.Lock()
        done = threading.Event()

        def killer():
            for _ in range(KILLS):
                if done.wait(rnd.uniform(0.05, 0.6)):
                    return
                with lock:
                    self.stop_kilnd(signal.SIGKILL)
                    type(self).start_kilnd()

        names = [unique("chaos%d" % i) for i in range(JOBS)]
        t = threading.Thread(target=killer)
        t.start()
        ids = {}
        try:
            for i, name in enumerate(names):
                multi = i % 10 == 9  # some two-instance jobs: bridges, handshakes in pairs
                spec = self.spec(name, ["/bin/sh", "-c",
                                        "echo run >> /opt/ml/checkpoints/ran-$SM_CURRENT_HOST; sleep 0.1"],
                                 checkpoint_dir=os.path.join(base, name),
                                 instance={"type": "local.small", "count": 2 if multi else 1})
                with lock:
                    ids[name] = self.submit_retrying(spec)
        finally:
            t.join()
            done.set()
        deadline = time.monotonic() + 4 * DEADLINE_S
        final = {}
        for name, jid in ids.items():
            while True:
                j = self.get_retrying(jid)
                if j["status"] in TERMINAL:
                    final[name] = j
                    break
                self.assertLess(time.monotonic(), deadline, "job %s never ended: %s" % (name, json.dumps(j)[:2000]))
                time.sleep(0.1)
        bad = {n: (j["status"], j.get("failure_reason")) for n, j in final.items() if j["status"] != "Completed"}
        self.assertEqual(bad, {}, "lost or failed jobs (seed %d)" % seed)
        for i, name in enumerate(names):
            # One file per instance (instances share the checkpoint directory,
            # and like SageMaker's S3 sync the last writer of a file wins); a
            # second run would have appended a second line to its file.
            runs = []
            for ran in sorted(glob.glob(os.path.join(base, name, "ran-*"))):
                with open(ran) as f:
                    runs += ["%s:%s" % (os.path.basename(ran), line) for line in f.read().split()]
            want = ["ran-algo-1:run", "ran-algo-2:run"] if i % 10 == 9 else ["ran-algo-1:run"]
            self.assertEqual(runs, want, "%s ran %s (seed %d)" % (name, runs, seed))
        # Nothing leaked: every instance's cgroups removed, no mount or bridge left.
        iids = [os.path.basename(d) for d in glob.glob(os.path.join(self.data, "instances", "*"))]
        leaked = [g for iid in iids for g in glob.glob("/sys/fs/cgroup/kiln/" + iid) +
                  glob.glob("/sys/fs/cgroup/*/kiln/" + iid)]
        self.assertEqual(leaked, [], "leaked cgroups (seed %d)" % seed)
        with open("/proc/self/mountinfo") as f:
            mounts = [l for l in f if os.path.join(self.data, "instances") in l]
        self.assertEqual(mounts, [], "leaked mounts (seed %d)" % seed)
        deadline = time.monotonic() + DEADLINE_S  # a veth goes when its namespace is torn down
        while set(glob.glob("/sys/class/net/kb*")) - bridges_before and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(sorted(set(glob.glob("/sys/class/net/kb*")) - bridges_before), [],
                         "leaked bridges (seed %d)" % seed)

    def test_a_killed_supervisor_leaves_no_process_or_cgroup(self):
        job = self.submit(self.spec(unique("orphan"), ["/bin/sh", "-c", "echo started; exec sleep 300"]))
        self.wait_log(job["id"], "started")
        iid = job["id"] + ".1.0"
        with open(os.path.join(self.data, "instances", iid, "supervisor.pid")) as f:
            pid = int(f.read().split()[0])
        cgroups = glob.glob("/sys/fs/cgroup/kiln/" + iid) + glob.glob("/sys/fs/cgroup/*/kiln/" + iid)
        self.assertTrue(cgroups)
        with open(os.path.join(cgroups[0], "cgroup.procs")) as f:
            members = [int(p) for p in f.read().split()]
        self.assertTrue(members)
        os.kill(pid, signal.SIGKILL)
        j = self.wait_terminal(job["id"])
        self.assertEqual(j["status"], "Failed", j)
        self.assertIn("InstanceLost", j["failure_reason"], j)
        deadline = time.monotonic() + DEADLINE_S
        while any(os.path.exists(g) for g in cgroups) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([g for g in cgroups if os.path.exists(g)], [])
        def running(p):  # a zombie waiting for init to reap it has ended
            try:
                with open("/proc/%d/stat" % p) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                return False
        alive = [p for p in members if running(p)]
        self.assertEqual(alive, [], "the sandbox outlived its supervisor")


if __name__ == "__main__":
    unittest.main()
