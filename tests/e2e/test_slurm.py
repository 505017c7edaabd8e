"""The Slurm leg: a real kilnd with a Slurm pool in front of a real 2-node Slurm
22.05 (scripts/slurm.sh: munge, slurmctld, two slurmd, slurmrestd with JWT, the
EpilogSlurmctld hook). The same CLI and API calls as on the local backend: the
example training job, a processing job, a 2-instance job across both nodes, a
stop, a job waiting in Slurm's queue with Slurm's reason, a job Slurm refuses, a
kill -9 of kilnd mid-job, slurmrestd down and back, and a tuning job whose trials
run on Slurm. Each ends in an asserted state; none is submitted twice."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

from test_kilnd import KilndHarness, PYTHON, REPO, unique

SLURM_SH = os.path.join(REPO, "scripts", "slurm.sh")
_DIR = None
_PORT = 29000 + (os.getpid() % 200) * 16  # 29000..32200: below the ephemeral range
_HAVE_SLURM = os.geteuid() == 0 and shutil.which("slurmctld") is not None


def setUpModule():
    global _DIR
    if not _HAVE_SLURM:
        raise unittest.SkipTest("needs root and Slurm (scripts/install-deps.sh installs it)")
    _DIR = tempfile.mkdtemp(prefix="kiln-e2e-slurm-", dir="/var/tmp")
    os.chmod(_DIR, 0o755)
    out = subprocess.run([SLURM_SH, "start", os.path.join(_DIR, "slurm"), str(_PORT)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("scripts/slurm.sh start failed: " + out.stdout + out.stderr)
    env = dict(line.split("=", 1) for line in open(os.path.join(_DIR, "slurm", "env")).read().split())
    node_mib = int(subprocess.run(["sinfo", "-h", "-N", "-o", "%m"], capture_output=True, text=True, check=True,
                                  env=dict(os.environ, SLURM_CONF=env["SLURM_CONF"])).stdout.split()[0])
    with open(os.path.join(_DIR, "hook.token"), "w") as f:
        f.write("e2e-slurm-hook-token-" + unique("t"))
    os.chmod(os.path.join(_DIR, "hook.token"), 0o600)
    os.makedirs(os.path.join(_DIR, "shared"))
    with open(os.path.join(_DIR, "kilnd.json"), "w") as f:
        json.dump({
            # slurm.node: one per node at a time (60% of a node's memory); slurm.huge: more than a node has.
            "instance_types": [{"name": "slurm.small", "vcpus": 1, "memory_mib": 512},
                               {"name": "slurm.node", "vcpus": 1, "memory_mib": node_mib * 6 // 10},
                               {"name": "slurm.huge", "vcpus": 1, "memory_mib": node_mib + 1024}],
            "pools": [{"name": "cluster", "backend": "slurm",
                       "instance_types": ["slurm.small", "slurm.node", "slurm.huge", "ml.t3.medium"],
                       "slurm": {"url": env["KILN_SLURM_URL"], "jwt_key_file": env["KILN_SLURM_JWT_KEY"],
                                 "shared_dir": os.path.join(_DIR, "shared"),
                                 "hook_token_file": os.path.join(_DIR, "hook.token"),
                                 "queue_refresh_s": 1, "reconcile_interval_s": 5}}]}, f)


def tearDownModule():
    if _DIR:
        subprocess.run([SLURM_SH, "stop", os.path.join(_DIR, "slurm")], capture_output=True)
        if not os.environ.get("KILN_E2E_KEEP"):
            shutil.rmtree(_DIR, ignore_errors=True)


def slurm_jobs():
    """Every job slurmctld knows, by name (squeue, as an operator sees them)."""
    out = subprocess.run(["squeue", "-h", "-a", "-t", "all", "-o", "%i %j %T"], capture_output=True, text=True,
                         env=dict(os.environ, SLURM_CONF=os.path.join(_DIR, "slurm", "slurm.conf")), check=True)
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


class SlurmE2E(KilndHarness):
    KILND_ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.KILND_ARGS = ["--config", os.path.join(_DIR, "kilnd.json")]
        super().setUpClass()

    @classmethod
    def start_kilnd(cls, listen="127.0.0.1:0"):
        # A restart keeps its address: running instances and the hook know it.
        super().start_kilnd(listen if listen != "127.0.0.1:0" or not cls.addr else cls.addr)
        with open(os.path.join(_DIR, "slurm", "kiln-hooks"), "w") as f:
            f.write("http://%s cluster %s\n" % (cls.addr, os.path.join(_DIR, "hook.token")))

    def run_job(self, command, instance_type="slurm.small", count=1, **kw):
        name = unique(kw.pop("prefix", "s"))
        st, body = self.api("POST", "/v1/jobs", self.spec(name, command, instance={"type": instance_type, "count": count},
                                                          **kw))
        self.assertEqual(st, 201, body)
        return body["id"]

    def logs(self, job_id):
        st, text = self.http("GET", "/v1/jobs/%s/logs" % job_id)
        self.assertEqual(st, 200, text)
        return text

    def test_01_pools_list_and_the_example_training_job(self):
        out = self.kiln("pools", "list")
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = {l.split()[0]: l.split() for l in out.stdout.splitlines()[1:] if l and not l.startswith(" ")}
        self.assertEqual(lines["cluster"][1:3], ["slurm", "healthy"], out.stdout)
        self.assertEqual(lines["default"][1:3], ["local", "healthy"], out.stdout)
        st, pools = self.api("GET", "/v1/pools")
        self.assertEqual(st, 200)
        self.assertEqual([p["name"] for p in pools["pools"]], ["cluster", "default"])
        # The example job, unchanged but for its instance type (which picks the pool).
        example = os.path.join(REPO, "examples", "train-sklearn")
        spec = os.path.join(self.tmp, "train-slurm.yaml")
        with open(os.path.join(example, "job.yaml")) as f:
            text = f.read().replace("type: ml.m5.large", "type: slurm.small").replace("code_dir: .", "code_dir: " + example)
        with open(spec, "w") as f:
            f.write(text.replace("train: ./data", "train: " + os.path.join(example, "data"))
                        .replace("name: train-sklearn", "name: " + unique("train-slurm")))
        out = self.kiln("run", spec, "--follow", timeout=300)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        st, listed = self.api("GET", "/v1/jobs?limit=100")
        job = [j for j in listed["jobs"] if j["name"].startswith("train-slurm")][0]
        job = self.get_job(job["id"])
        self.assertEqual(job["status"], "Completed", job)
        self.assertTrue(job["model_artifact"].endswith("model.tar.gz"), job)
        self.assertIn("validation_accuracy=", self.logs(job["id"]))
        # Queued time (Slurm's queue) is split from the start.
        self.assertIn("backend_queue", job["timings_ms"], job["timings_ms"])
        self.assertIn("start", job["timings_ms"], job["timings_ms"])
        names = [j[1] for j in slurm_jobs()]
        self.assertEqual(names.count("kiln.%s.1" % job["id"]), 1, names)

    def test_02_two_instances_are_one_slurm_job_on_two_nodes(self):
        job_id = self.run_job(["/bin/sh", "-c", "echo task=$SLURM_PROCID node=$SLURMD_NODENAME runtime=$KILN_RUNTIME "
                                                "host=$(cat /opt/ml/input/config/resourceconfig.json)"], count=2)
        job = self.wait_terminal(job_id)
        self.assertEqual(job["status"], "Completed", job)
        log = self.logs(job_id)
        nodes = {line.split("node=")[1].split()[0] for line in log.splitlines() if "node=" in line}
        self.assertEqual(nodes, {"n1", "n2"}, log)
        self.assertIn("runtime=kiln-slurm", log)
        self.assertIn('"current_host":"algo-2"', log)
        self.assertEqual([j[1] for j in slurm_jobs()].count("kiln.%s.1" % job_id), 1)
        # Its supervisors told kilnd first; Slurm still ends the job its own way (never cancelled).
        deadline = time.monotonic() + 20
        state = None
        while time.monotonic() < deadline:
            state = [j[2] for j in slurm_jobs() if j[1] == "kiln.%s.1" % job_id][0]
            if state not in ("RUNNING", "COMPLETING"):
                break
            time.sleep(0.1)
        self.assertEqual(state, "COMPLETED")
        # A processing job runs the same way.
        st, body = self.api("POST", "/v1/jobs", self.spec(unique("proc"), ["/bin/sh", "-c", "echo processed"],
                                                          kind="processing", instance={"type": "slurm.small", "count": 1}))
        self.assertEqual(st, 201, body)
        self.assertEqual(self.wait_terminal(body["id"])["status"], "Completed")
        self.assertIn("processed", self.logs(body["id"]))

    def test_03_a_failure_and_a_stop(self):
        failing = self.run_job(["/bin/sh", "-c", "echo bad >&2; exit 3"])
        long = self.run_job(["/bin/sh", "-c", "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done"],
                            count=2, stop_grace_seconds=5)
        job = self.wait_terminal(failing)
        self.assertEqual(job["status"], "Failed", job)
        self.assertEqual(job["exit_code"], 3, job)
        deadline = time.monotonic() + 60
        while self.logs(long).count("ready") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        out = self.kiln("jobs", "stop", long)
        self.assertEqual(out.returncode, 0, out.stderr)
        job = self.wait_terminal(long)
        self.assertEqual(job["status"], "Stopped", job)
        self.assertEqual(self.logs(long).count("got-term"), 2)  # each instance had its grace period

    def test_04_a_job_waits_in_slurms_queue_with_slurms_reason(self):
        # slurm.node takes 60% of a node's memory: a 2-instance job fills both nodes.
        first = self.run_job(["/bin/sleep", "60"], "slurm.node", 2, stop_grace_seconds=1)
        self.wait_job(first, lambda j: j["secondary_status"] == "Training", "Training")
        second = self.run_job(["/bin/true"], "slurm.node", 1)
        job = self.wait_job(second, lambda j: "Resources" in j["transitions"][-1]["message"], "queued for Resources")
        self.assertEqual(job["secondary_status"], "Pending", job)
        self.assertRegex(job["transitions"][-1]["message"], r"^Queued in Slurm \(pool cluster, job \d+\): Resources$")
        out = self.kiln("jobs", "describe", second)
        self.assertIn("Queued in Slurm", out.stdout)
        st, pools = self.api("GET", "/v1/pools")
        cluster = [p for p in pools["pools"] if p["name"] == "cluster"][0]
        self.assertGreaterEqual(cluster["queued"], 1, cluster)
        self.assertEqual(self.api("POST", "/v1/jobs/%s/stop" % first)[0], 202)
        job = self.wait_terminal(second)
        self.assertEqual(job["status"], "Completed", job)
        self.assertGreater(job["timings_ms"]["backend_queue"], 0, job["timings_ms"])
        self.assertEqual(self.wait_terminal(first)["status"], "Stopped")

    def test_05_slurm_refuses_a_job_with_its_message(self):
        job = self.wait_terminal(self.run_job(["/bin/true"], "slurm.huge"))
        self.assertEqual(job["status"], "Failed", job)
        self.assertIn("Slurm refused the job", job["failure_reason"])
        self.assertIn("node configuration is not available", job["failure_reason"])
        # The hook's route takes only the pool's token, and a Slurm job id.
        url = "/v1/pools/cluster/slurm-events"
        self.assertEqual(self.http("POST", url, {"job_id": 1}, token="")[0], 401)
        self.assertEqual(self.http("POST", url, {"job_id": 1}, token="wrong")[0], 401)
        hook = open(os.path.join(_DIR, "hook.token")).read()
        self.assertEqual(self.http("POST", url, {"job_id": 1}, token=self.admin_token)[0], 401)
        st, body = self.api("POST", url, {"job_id": "1; rm -rf /"}, token=hook)
        self.assertError(st, body, 400, "job_id")
        self.assertEqual(self.http("POST", "/v1/pools/nope/slurm-events", {"job_id": 1}, token=hook)[0], 404)
        self.assertEqual(self.http("POST", url, {"job_id": 999999}, token=hook)[0], 202)

    def test_05b_a_job_cannot_report_its_own_end(self):
        # The job holds its instance token; only its supervisor holds the exit token.
        attack = ("import json, os, urllib.request, urllib.error\n"
                  "for token in (os.environ['KILN_TOKEN'], os.environ['KILN_TOKEN'].replace('.', '/exit.', 1)):\n"
                  "    req = urllib.request.Request(os.environ['KILN_API_URL'] + '/v1/runtime/exit', method='POST',\n"
                  "        data=json.dumps({'exit': {'exit_code': 0}}).encode(),\n"
                  "        headers={'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'})\n"
                  "    try:\n"
                  "        print('exit-report', urllib.request.urlopen(req).status)\n"
                  "    except urllib.error.HTTPError as e:\n"
                  "        print('exit-report', e.code)\n"
                  "raise SystemExit(4)\n")
        job = self.wait_terminal(self.run_job([PYTHON, "-c", attack]))
        self.assertEqual(self.logs(job["id"]).count("exit-report 401"), 2, self.logs(job["id"]))
        self.assertEqual((job["status"], job["exit_code"]), ("Failed", 4), job)

    def test_06_kill9_of_kilnd_mid_job_submits_nothing_twice(self):
        job_id = self.run_job(["/bin/sh", "-c", "sleep 3; echo survived"], count=2)
        self.wait_job(job_id, lambda j: j["secondary_status"] == "Training", "Training")
        self.stop_kilnd(signal.SIGKILL)
        time.sleep(4)  # the job ends while kilnd is down: the hook finds nobody
        self.start_kilnd()
        job = self.wait_terminal(job_id)
        self.assertEqual(job["status"], "Completed", job)
        self.assertEqual(self.logs(job_id).count("survived"), 2)
        self.assertEqual([j[1] for j in slurm_jobs()].count("kiln.%s.1" % job_id), 1)

    def test_07_slurmrestd_down_then_back(self):
        rest = os.path.join(_DIR, "slurm")
        subprocess.run([SLURM_SH, "stop-rest", rest], check=True)
        try:
            job_id = self.run_job(["/bin/sh", "-c", "echo after-outage"])
            job = self.wait_job(job_id, lambda j: j["secondary_status"] == "Pending", "Pending")
            self.assertIn("cannot reach Slurm", json.dumps(job["transitions"]))
            cluster = self.wait_pool("unhealthy")
            self.assertIn("did not answer", cluster["message"])
        finally:
            subprocess.run([SLURM_SH, "start-rest", rest], check=True)
        job = self.wait_terminal(job_id)
        self.assertEqual(job["status"], "Completed", job)
        self.wait_pool("healthy")
        self.assertEqual([j[1] for j in slurm_jobs()].count("kiln.%s.1" % job_id), 1)

    def wait_pool(self, health):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cluster = [p for p in self.api("GET", "/v1/pools")[1]["pools"] if p["name"] == "cluster"][0]
            if cluster["health"] == health:
                return cluster
            time.sleep(0.2)
        self.fail("pool cluster not %s: %s" % (health, cluster))

    def test_08_a_tuning_job_whose_trials_run_on_slurm(self):
        code = os.path.join(self.tmp, "tune-code")
        os.makedirs(code, exist_ok=True)
        with open(os.path.join(code, "train.py"), "w") as f:
            f.write("import json\nhp = json.load(open('/opt/ml/input/config/hyperparameters.json'))\n"
                    "print('loss=%f' % ((float(hp['x']) - 0.3) ** 2))\n")
        name = unique("tune")[:24]
        spec = {"name": name, "strategy": "Random", "objective": {"metric": "loss", "type": "Minimize"},
                "max_trials": 3, "max_parallel": 2, "parameters": {"x": {"type": "Continuous", "min": 0, "max": 1}},
                "trial": {"image": "host", "command": [PYTHON, "/opt/ml/code/train.py"], "code_dir": code,
                          "instance": {"type": "slurm.small"},
                          "metric_definitions": [{"name": "loss", "regex": "loss=([0-9.]+)"}]}}
        st, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(st, 201, body)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            doc = self.api("GET", "/v1/tuning-jobs/" + name)[1]
            if doc["status"] in ("Completed", "Failed", "Stopped"):
                break
            time.sleep(0.5)
        self.assertEqual(doc["status"], "Completed", doc)
        self.assertEqual(len(doc["trials"]), 3)
        for t in doc["trials"]:
            job = self.get_job(t["name"])
            self.assertEqual(job["status"], "Completed")
            self.assertIn("kiln.%s.1" % job["id"], [j[1] for j in slurm_jobs()])
        names = [j[1] for j in slurm_jobs()]
        self.assertEqual(len([n for n in names if n.startswith("kiln.")]), len(set(n for n in names if n.startswith("kiln."))))


    def test_09_a_sagemaker_training_job_through_boto3_runs_on_slurm(self):
        import boto3
        import botocore.config
        creds = dict(l.split(" = ", 1) for l in open(os.path.join(self.data, "credentials")).read().splitlines()
                     if " = " in l)
        sm = boto3.session.Session(aws_access_key_id=creds["aws_access_key_id"],
                                   aws_secret_access_key=creds["aws_secret_access_key"], region_name="us-east-1").client(
            "sagemaker", endpoint_url="http://" + self.addr, config=botocore.config.Config(retries={"max_attempts": 1}))
        name = unique("sm-slurm")
        sm.create_training_job(
            TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/KilnTests",
            AlgorithmSpecification={"TrainingImage": "host", "TrainingInputMode": "File",
                                    "ContainerEntrypoint": ["/bin/sh", "-c",
                                                            "echo on-$SLURMD_NODENAME > $SM_MODEL_DIR/where.txt"]},
            OutputDataConfig={"S3OutputPath": "s3://models/out"},
            ResourceConfig={"InstanceType": "ml.t3.medium", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 300})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            d = sm.describe_training_job(TrainingJobName=name)
            if d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
                break
            time.sleep(0.3)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d)
        self.assertTrue(d["ModelArtifacts"]["S3ModelArtifacts"].endswith("model.tar.gz"), d)
        job = self.get_job(name)
        self.assertEqual([j[1] for j in slurm_jobs()].count("kiln.%s.1" % job["id"]), 1)


if __name__ == "__main__":
    unittest.main()
