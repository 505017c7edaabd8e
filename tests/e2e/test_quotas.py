"""Team quotas and fair sharing on a real kilnd with the local backend: a job
over its team's quota waits Pending with the reason and holds nobody else back;
scarce capacity goes to teams in turn; kill -9 with queued jobs of several
teams loses none, starts none twice, and keeps the order."""
import json
import os
import shutil
import signal
import tempfile
import time
import unittest

from test_kilnd import KilndHarness, unique

_CONFIG_DIR = tempfile.mkdtemp(prefix="kiln-quota-config-", dir="/var/tmp")
os.chmod(_CONFIG_DIR, 0o755)
_CONFIG = os.path.join(_CONFIG_DIR, "kilnd.yaml")
with open(_CONFIG, "w") as _f:
    # Room for one ml.m5.large (2 vCPUs) or two local.small at a time; team "solo"
    # runs one instance at a time, team "frozen" none.
    _f.write("sandbox:\n  capacity: {vcpus: 2, memory_mib: 65536}\n"
             "quotas:\n  teams:\n    solo: {instances: 1}\n    frozen: {instances: 0}\n")


def tearDownModule():
    shutil.rmtree(_CONFIG_DIR, ignore_errors=True)


class QuotaE2E(KilndHarness):
    KILND_ARGS = ["--config", _CONFIG]

    def queue(self, team, seconds, prefix, instance_type="ml.m5.large"):
        name = unique(prefix)
        st, body = self.api("POST", "/v1/jobs", self.spec(name, ["/bin/sh", "-c", "sleep %s; echo ran-once" % seconds],
                                                          team=team, instance={"type": instance_type, "count": 1}))
        self.assertEqual(st, 201, body)
        return body["id"], name

    def start_order(self, ids):
        """The jobs' names in the order they ran: one ml.m5.large at a time (capacity 2
        vCPUs), so the order they ended in (launched_at is when the launch was first asked for)."""
        jobs = {i: self.get_job(i) for i in ids}
        for i, j in jobs.items():
            self.assertEqual(j["status"], "Completed", j)
            self.assertEqual(len(j["instances"]), 1, j["instances"])
        return [j["name"] for j in sorted(jobs.values(), key=lambda j: j["instances"][0]["exited_at"])]

    def test_1_over_quota_waits_pending_with_the_reason_and_holds_nobody_back(self):
        # More than the team's whole quota: refused at submit, with the field.
        st, body = self.api("POST", "/v1/jobs", self.spec(unique("frozen"), ["/bin/true"], team="frozen"))
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["field"], "instance.count", body)
        self.assertIn("could never start", body["error"]["message"])
        # Over the quota for now: Pending with the reason.
        first, _ = self.queue("solo", 60, "solo1", "local.small")
        self.wait_job(first, lambda j: j["secondary_status"] == "Training", "Training")
        second, _ = self.queue("solo", 0, "solo2", "local.small")
        job = self.wait_job(second, lambda j: j["secondary_status"] == "Pending", "Pending")
        self.assertIn("Waiting for team quota: team solo uses 1 of its 1 instances and this needs 1 more "
                      "(quotas.teams.solo.instances)", json.dumps(job))
        # The CLI shows the same reason.
        out = self.kiln("jobs", "describe", second)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("team quota", out.stdout)
        # Another team's job runs meanwhile.
        other, _ = self.queue("default", 0, "free", "local.small")
        self.assertEqual(self.wait_terminal(other)["status"], "Completed")
        self.assertEqual(self.get_job(second)["secondary_status"], "Pending")
        # Stopped while it waits: it never ran.
        st, _ = self.api("POST", "/v1/jobs/%s/stop" % second)
        self.assertEqual(st, 202)
        job = self.wait_terminal(second)
        self.assertEqual(job["status"], "Stopped", job)
        self.assertEqual(job["instances"][0]["failure"],
                         "LaunchFailed: StoppedBeforeLaunch: stopped while waiting for its team quota or capacity")
        st, _ = self.api("POST", "/v1/jobs/%s/stop" % first)
        self.assertEqual(st, 202)
        self.wait_terminal(first)

    def test_2_scarce_capacity_goes_to_teams_in_turn(self):
        ids = [self.queue("ads", 1, "ads1")[0]]
        self.wait_job(ids[0], lambda j: j["secondary_status"] == "Training", "Training")
        ids += [self.queue("ads", 1, "ads%d" % n)[0] for n in (2, 3)]
        ids += [self.queue("web", 1, "web%d" % n)[0] for n in (1, 2)]
        for i in ids:
            self.wait_terminal(i)
        names = [n.rsplit("-", 1)[0] for n in self.start_order(ids)]
        # FIFO would be ads1 ads2 ads3 web1 web2.
        self.assertEqual(names, ["ads1", "web1", "ads2", "web2", "ads3"])

    def test_3_kill_9_with_queued_jobs_of_several_teams_loses_none_and_starts_none_twice(self):
        ids = [self.queue("ads", 2, "k-a1")[0]]
        self.wait_job(ids[0], lambda j: j["secondary_status"] == "Training", "Training")
        ids += [self.queue("ads", 1, "k-a%d" % n)[0] for n in (2, 3)]
        ids += [self.queue("bio", 1, "k-b%d" % n)[0] for n in (1, 2)]
        ids += [self.queue("cv", 1, "k-c1")[0]]
        self.stop_kilnd(signal.SIGKILL)
        self.start_kilnd()
        for i in ids:
            self.wait_terminal(i, timeout=120)
        names = [n.rsplit("-", 1)[0] for n in self.start_order(ids)]
        # ads ran k-a1 across the restart: the other teams go first, then turns.
        self.assertEqual(names, ["k-a1", "k-b1", "k-c1", "k-a2", "k-b2", "k-a3"])
        for i in ids:  # each ran exactly once
            st, text = self.http("GET", "/v1/jobs/%s/logs" % i)
            self.assertEqual(st, 200)
            self.assertEqual(text.count("ran-once"), 1, text)


if __name__ == "__main__":
    unittest.main()
