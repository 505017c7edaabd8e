"""End-to-end tests of hyperparameter tuning jobs in a real kilnd: the native API
and `kiln tune`, early stopping, a kill -9 of kilnd in the middle of a tuning job,
warm start, and the SageMaker HPO operations through boto3."""

import io
import json
import os
import signal
import tarfile
import time
import unittest

import botocore.exceptions
import botocore.session

from test_kilnd import KilndHarness, PYTHON, unique
from test_sagemaker_api import SKLEARN_IMAGE, ROLE, TRAIN_PY, check_shape

DEADLINE_S = 240

# A trial with a learning curve: loss(epoch) = f(x, y, kind) + 1/epoch, printed per epoch.
TRIAL_PY = r'''
import json, os, time
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
x, y, kind = float(hp["x"]), int(hp["y"]), hp["kind"]
epochs, pause = int(hp.get("epochs", "5")), float(hp.get("pause", "0.05"))
base = (x - 0.3) ** 2 + 0.05 * abs(y - 2) + (0.0 if kind == "good" else 0.5)
for e in range(1, epochs + 1):
    time.sleep(pause)
    print("epoch=%d loss=%.6f" % (e, base + 1.0 / e), flush=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "x.txt"), "w").write(str(x))
'''

# The same learning curve sent as DogStatsD gauges tagged with their step, over
# the instance's own UDP port (no client library), several steps per flush.
STATSD_TRIAL_PY = r'''
import json, os, socket, time
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
x, y, kind = float(hp["x"]), int(hp["y"]), hp["kind"]
epochs, pause = int(hp.get("epochs", "5")), float(hp.get("pause", "0.05"))
base = (x - 0.3) ** 2 + 0.05 * abs(y - 2) + (0.0 if kind == "good" else 0.5)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
addr = (os.environ["STATSD_HOST"], int(os.environ["STATSD_PORT"]))
for e in range(1, epochs + 1):
    time.sleep(pause)
    s.sendto(b"val_loss:%.6f|g|#step:%d\nepochs_done:1|c" % (base + 1.0 / e, e), addr)
'''


class TuningE2E(KilndHarness):
    KILND_ARGS = ["--statsd-flush-ms", "300"]

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.code = os.path.join(cls.tmp, "code")
        os.makedirs(cls.code)
        with open(os.path.join(cls.code, "train.py"), "w") as f:
            f.write(TRIAL_PY)

    def tuning_spec(self, name, **kw):
        spec = {"name": name, "strategy": "Bayesian", "objective": {"metric": "loss", "type": "Minimize"},
                "max_trials": 6, "max_parallel": 2,
                "parameters": {"x": {"type": "Continuous", "min": 0, "max": 1},
                               "y": {"type": "Integer", "min": 1, "max": 5},
                               "kind": {"type": "Categorical", "values": ["good", "bad"]}},
                "trial": {"image": "host", "command": [PYTHON, "/opt/ml/code/train.py"], "code_dir": self.code,
                          "instance": {"type": "local.small"}, "hyperparameters": {"epochs": "5", "pause": "0.05"},
                          "metric_definitions": [{"name": "loss", "regex": "loss=([0-9.]+)"}]}}
        spec.update(kw)
        return spec

    def tuning(self, name):
        status, body = self.api("GET", "/v1/tuning-jobs/" + name)
        self.assertEqual(status, 200, body)
        return body

    def wait_tuning(self, name, timeout=DEADLINE_S):
        deadline = time.time() + timeout
        while time.time() < deadline:
            doc = self.tuning(name)
            if doc["status"] in ("Completed", "Failed", "Stopped"):
                return doc
            time.sleep(0.5)
        self.fail("tuning job %s did not finish: %s" % (name, json.dumps(self.tuning(name))[:2000]))

    def check_trials(self, doc, spec):
        for t in doc["trials"]:
            self.assertTrue(t["name"].startswith(doc["name"] + "-%03d-" % t["index"]), t["name"])
            hp = t["hyperparameters"]
            self.assertTrue(0 <= float(hp["x"]) <= 1, hp)
            self.assertIn(int(hp["y"]), range(1, 6))
            self.assertIn(hp["kind"], ("good", "bad"))
        names = [t["name"] for t in doc["trials"]]
        self.assertEqual(len(names), len(set(names)))
        self.assertEqual(sorted(t["index"] for t in doc["trials"]), list(range(1, len(names) + 1)))

    # ------------------------------------------------------------------ tests

    def test_01_kiln_tune_follow_runs_trials_and_reports_the_best(self):
        name = unique("tune")[:24]
        path = os.path.join(self.tmp, name + ".json")
        with open(path, "w") as f:
            json.dump(self.tuning_spec(name), f)
        out = self.kiln("tune", path, "--follow", timeout=DEADLINE_S)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("Completed", out.stdout)
        self.assertIn("best: %s-" % name, out.stdout)
        doc = self.tuning(name)
        self.assertEqual(doc["status"], "Completed")
        self.assertEqual(doc["reason"], "MaxNumberOfTrainingJobs reached")
        self.assertEqual(len(doc["trials"]), 6)
        self.check_trials(doc, None)
        objectives = [t["objective"] for t in doc["trials"]]
        self.assertTrue(all(o is not None for o in objectives), objectives)
        self.assertEqual(doc["best"]["objective"], min(objectives))
        for t in doc["trials"]:
            self.assertEqual(t["status"], "Completed")
            self.assertEqual(t["steps"], 5)
            job = self.get_job(t["name"])  # trials are ordinary jobs
            self.assertEqual(job["status"], "Completed")
        listed = self.kiln("tuning", "list")
        self.assertIn(name, listed.stdout)

    def test_02_median_rule_stops_bad_trials_early(self):
        # A grid in this order runs three good trials, then three bad ones that the
        # median rule stops while they run. (Random configurations left it nothing
        # to stop in some runs: bad trials first, good ones last; a retry hid that.)
        name = unique("es")[:24]
        xs = ["0.3", "0.32", "0.34", "0.9", "0.95", "1.0"]
        spec = self.tuning_spec(name, early_stopping="Auto", max_trials=6, max_parallel=1, strategy="Grid",
                                parameters={"x": {"type": "Categorical", "values": xs}})
        spec["trial"]["hyperparameters"] = {"epochs": "12", "pause": "0.25", "y": "2", "kind": "good"}
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 201, body)
        doc = self.wait_tuning(name)
        self.assertEqual(doc["status"], "Completed", doc["reason"])
        trials = sorted(doc["trials"], key=lambda t: t["index"])
        self.assertEqual([t["hyperparameters"]["x"] for t in trials], xs)
        stopped = [t for t in doc["trials"] if t["early_stopped"]]
        self.assertTrue(stopped, [(t["hyperparameters"], t["objective"]) for t in doc["trials"]])
        for t in stopped:
            # Stopped, unless it finished between the decision and the signal.
            self.assertIn(t["status"], ("Stopped", "Completed"))
            self.assertIsNotNone(t["objective"])  # its last reported value counts
        self.assertTrue(any(t["status"] == "Stopped" and t["steps"] < 12 for t in stopped), stopped)
        epochs = sum(t["steps"] for t in doc["trials"])
        self.assertLess(epochs, 6 * 12)

    def test_03_kill9_during_tuning_resumes_without_duplicates(self):
        name = unique("crash")[:24]
        spec = self.tuning_spec(name, max_trials=6, max_parallel=2)
        spec["trial"]["hyperparameters"] = {"epochs": "6", "pause": "0.3"}
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 201, body)
        deadline = time.time() + DEADLINE_S
        while len(self.tuning(name)["trials"]) < 3:
            self.assertLess(time.time(), deadline)
            time.sleep(0.2)
        before = {t["name"]: t["hyperparameters"] for t in self.tuning(name)["trials"]}
        self.stop_kilnd(signal.SIGKILL)
        # Back on the same address, as a production kilnd with a fixed --listen: a
        # trial launched just before the kill still fetches its runtime from it.
        self.start_kilnd(listen=self.addr)
        doc = self.wait_tuning(name)
        self.assertEqual(doc["status"], "Completed", doc["reason"])
        self.assertEqual(len(doc["trials"]), 6)
        self.check_trials(doc, spec)
        after = {t["name"]: t["hyperparameters"] for t in doc["trials"]}
        for n, hp in before.items():
            self.assertEqual(after[n], hp)  # same history: trials launched before the crash are kept as they were
        # No trial ran twice: each trial job has exactly one attempt's instance per index.
        for t in doc["trials"]:
            self.assertEqual(self.get_job(t["name"])["status"], "Completed")
        status, jobs = self.api("GET", "/v1/jobs?name=%s&limit=100" % name)
        self.assertEqual(len(jobs["jobs"]), 6)

    def test_04_warm_start_and_bad_input(self):
        parent = unique("parent")[:24]
        status, body = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(parent, max_trials=3, max_parallel=3))
        self.assertEqual(status, 201, body)
        child = unique("child")[:24]
        status, body = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(
            child, max_trials=2, warm_start={"type": "IdenticalDataAndAlgorithm", "parents": [parent]}))
        self.assertEqual(status, 400, body)  # the parent has not finished
        self.assertEqual(body["error"]["field"], "warm_start.parents")
        self.assertEqual(self.wait_tuning(parent)["status"], "Completed")
        # Another team's tuning job is one that does not exist: same answer, nothing shown.
        status, other = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(
            unique("xteam")[:24], max_trials=1, team="other-team",
            warm_start={"type": "IdenticalDataAndAlgorithm", "parents": [parent]}))
        status2, missing = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(
            unique("xteam")[:24], max_trials=1, team="other-team",
            warm_start={"type": "IdenticalDataAndAlgorithm", "parents": ["no-such-tuning-job"]}))
        self.assertEqual((status, status2), (400, 400), (other, missing))
        self.assertEqual(other["error"]["message"].replace(parent, "X"),
                         missing["error"]["message"].replace("no-such-tuning-job", "X"))
        status, body = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(
            child, max_trials=2, warm_start={"type": "IdenticalDataAndAlgorithm", "parents": [parent]}))
        self.assertEqual(status, 201, body)
        self.assertEqual(self.wait_tuning(child)["status"], "Completed")
        # IdenticalDataAndAlgorithm keeps the parents' image; TransferLearning may
        # change it and the data; both keep the number of hyperparameters.
        identical = {"type": "IdenticalDataAndAlgorithm", "parents": [parent]}
        transfer = {"type": "TransferLearning", "parents": [parent]}
        spec = self.tuning_spec(unique("wsi")[:24], max_trials=1, warm_start=identical)
        spec["trial"]["image"] = "sagemaker-scikit-learn"
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["field"], "warm_start.type", body)
        spec = self.tuning_spec(unique("wst")[:24], max_trials=1, warm_start=transfer)
        spec["trial"]["hyperparameters"]["extra"] = "1"
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["field"], "warm_start.parents", body)
        name = unique("wst")[:24]
        spec = self.tuning_spec(name, max_trials=1, warm_start=transfer)
        spec["trial"]["hyperparameters"]["pause"] = "0.01"
        spec["trial"]["inputs"] = {"train": self.code}
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 201, body)
        self.assertEqual(self.wait_tuning(name)["status"], "Completed")
        bad = [({"name": "x" * 33}, "name"),
               ({"objective": {"metric": "accuracy", "type": "Minimize"}}, "objective.metric"),
               ({"max_parallel": 0}, "max_parallel"),
               ({"parameters": {"x": {"type": "Continuous", "min": 1, "max": 0}}}, "parameters.x.min"),
               ({"strategy": "Annealing"}, "strategy")]
        for change, field in bad:
            spec = self.tuning_spec(unique("bad")[:20])
            spec.update(change)
            status, body = self.api("POST", "/v1/tuning-jobs", spec)
            self.assertEqual(status, 400, body)
            self.assertEqual(body["error"]["field"], field, body)
        status, body = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(parent))
        self.assertEqual(status, 409, body)

    def test_04c_trial_names_cannot_be_taken_in_advance(self):
        # Trial names used to derive from the tuning job's name alone: another team
        # could create a job under the name of the next trial and fail the tuning job.
        def fnv(text):
            h = 1469598103934665603
            for c in text.encode():
                h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
            return h
        name = unique("squat")[:24]
        for i in (1, 2):
            squat = "%s-%03d-%08x" % (name, i, fnv("%s/%d" % (name, i)) & 0xFFFFFFFF)
            st, body = self.api("POST", "/v1/jobs", {"name": squat, "command": ["true"], "team": "squatters",
                                                     "instance": {"type": "local.small"}})
            self.assertEqual(st, 201, body)
        st, body = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(name, max_trials=2, max_parallel=2))
        self.assertEqual(st, 201, body)
        done = self.wait_tuning(name)
        self.assertEqual(done["status"], "Completed", done)
        self.assertEqual(len(done["trials"]), 2, done)

    def test_04b_gaussian_process_algorithm(self):
        # algorithm: GP models the objective once 10 trials have results: trials 11
        # and 12 come from the GP, proposed while others still run.
        name = unique("gp")[:24]
        spec = self.tuning_spec(name, algorithm="GP", max_trials=12, max_parallel=4)
        spec["trial"]["hyperparameters"] = {"epochs": "1", "pause": "0"}
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 201, body)
        doc = self.wait_tuning(name)
        self.assertEqual(doc["status"], "Completed", doc["reason"])
        self.assertEqual(doc["spec"]["algorithm"], "GP")
        self.assertEqual(len(doc["trials"]), 12)
        self.check_trials(doc, spec)
        configs = [json.dumps(t["hyperparameters"], sort_keys=True) for t in doc["trials"]]
        self.assertEqual(len(configs), len(set(configs)))
        status, body = self.api("POST", "/v1/tuning-jobs", self.tuning_spec(unique("bad")[:20], strategy="Random",
                                                                            algorithm="GP"))
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["field"], "algorithm", body)

    def test_04c_statsd_objective_with_early_stopping(self):
        # The objective is a StatsD gauge tagged with its step: steps 0.2 s apart
        # against a 300 ms flush, every one counted, and each trial's last value is
        # its objective. A grid in this order runs three good trials, then three
        # bad ones that the median rule stops while they run (each runs 2 s).
        with open(os.path.join(self.code, "statsd_train.py"), "w") as f:
            f.write(STATSD_TRIAL_PY)
        name = unique("sd")[:24]
        xs = ["0.3", "0.32", "0.34", "0.9", "0.95", "1.0"]
        spec = self.tuning_spec(name, strategy="Grid", early_stopping="Auto", max_trials=6, max_parallel=1,
                                objective={"metric": "val_loss", "type": "Minimize", "source": "StatsD"},
                                parameters={"x": {"type": "Categorical", "values": xs}})
        spec["trial"]["command"] = [PYTHON, "/opt/ml/code/statsd_train.py"]
        spec["trial"]["hyperparameters"] = {"epochs": "10", "pause": "0.2", "y": "2", "kind": "good"}
        del spec["trial"]["metric_definitions"]
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 201, body)
        doc = self.wait_tuning(name)
        self.assertEqual(doc["status"], "Completed", doc["reason"])
        self.assertEqual(doc["spec"]["objective"]["source"], "StatsD")
        trials = sorted(doc["trials"], key=lambda t: t["index"])
        self.assertEqual([t["hyperparameters"]["x"] for t in trials], xs)
        for t in trials:
            base = (float(t["hyperparameters"]["x"]) - 0.3) ** 2
            if t["status"] == "Completed":
                self.assertEqual(t["steps"], 10, t)
                self.assertAlmostEqual(t["objective"], base + 1.0 / 10, places=5)
            else:
                self.assertTrue(t["early_stopped"], t)
                self.assertAlmostEqual(t["objective"], base + 1.0 / t["steps"], places=5)
        for t in trials[:3]:
            self.assertFalse(t["early_stopped"], t)
        self.assertTrue(any(t["early_stopped"] for t in trials[3:]), trials)
        self.assertEqual(doc["best"]["name"], trials[0]["name"])
        self.assertAlmostEqual(doc["best"]["objective"], 0.1, places=5)
        # Without a metric definition, the log source is refused, naming the field.
        spec = self.tuning_spec(unique("bad")[:20], objective={"metric": "val_loss", "type": "Minimize"})
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["field"], "objective.metric", body)
        spec["objective"]["source"] = "Syslog"
        status, body = self.api("POST", "/v1/tuning-jobs", spec)
        self.assertEqual(status, 400, body)
        self.assertEqual(body["error"]["field"], "objective.source", body)

    def wait_sagemaker_tuning(self, sm, name):
        """DescribeHyperParameterTuningJob once the tuning job has ended."""
        deadline = time.time() + DEADLINE_S
        while True:
            d = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
            if d["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"):
                return d
            self.assertLess(time.time(), deadline)
            time.sleep(1)

    def check_tuning_tags(self, sm, arn, name, responses):
        """AddTags/ListTags/DeleteTags on a tuning job's ARN: the request's Tags are the job's own."""
        def tags(client=sm, resource=arn):
            return sorted((t["Key"], t["Value"]) for t in client.list_tags(ResourceArn=resource)["Tags"])

        def error(fn, **kw):
            with self.assertRaises(botocore.exceptions.ClientError) as cm:
                fn(**kw)
            return cm.exception.response["Error"]["Code"], cm.exception.response["Error"]["Message"]

        self.assertEqual(tags(), [("project", "iris"), ("stage", "dev")])
        added = sm.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "prod"}, {"Key": "owner", "Value": "ml"}])
        responses.append(("add_tags", added))
        self.assertEqual(tags(), [("owner", "ml"), ("project", "iris"), ("stage", "prod")])
        responses.append(("delete_tags", sm.delete_tags(ResourceArn=arn, TagKeys=["project", "absent"])))
        listed = sm.list_tags(ResourceArn=arn)
        responses.append(("list_tags", listed))
        self.assertEqual(sorted((t["Key"], t["Value"]) for t in listed["Tags"]), [("owner", "ml"), ("stage", "prod")])
        # The same errors as for training jobs: an unknown tuning job, the aws: prefix, more than 50 tags.
        missing = arn.replace(name, "nope-" + name[:20])
        for op, kw in (("list_tags", {}), ("add_tags", {"Tags": [{"Key": "a", "Value": "b"}]}),
                       ("delete_tags", {"TagKeys": ["owner"]})):
            code, msg = error(getattr(sm, op), ResourceArn=missing, **kw)
            self.assertEqual(code, "ValidationException", op)
            self.assertIn(missing, msg)
        code, _ = error(sm.add_tags, ResourceArn=arn, Tags=[{"Key": "aws:x", "Value": "1"}])
        self.assertEqual(code, "ValidationException")
        code, msg = error(sm.add_tags, ResourceArn=arn, Tags=[{"Key": "k%d" % i, "Value": "v"} for i in range(49)])
        self.assertEqual(code, "ValidationException")
        self.assertIn("at most 50", msg)
        self.assertEqual(tags(), [("owner", "ml"), ("stage", "prod")])  # unchanged
        # A team key sees only its team's tuning jobs: this one (the admin's) is unknown to it.
        team = self.sagemaker_client(team="tagteam")
        for op, kw in (("list_tags", {}), ("add_tags", {"Tags": [{"Key": "a", "Value": "b"}]}),
                       ("delete_tags", {"TagKeys": ["owner"]})):
            code, _ = error(getattr(team, op), ResourceArn=arn, **kw)
            self.assertEqual(code, "ValidationException", op)
        team.close()
        self.assertEqual(tags(), [("owner", "ml"), ("stage", "prod")])  # unchanged
        # The native API shows them in the stored spec.
        self.assertEqual(self.tuning(name)["spec"]["tags"], {"owner": "ml", "stage": "prod"})

    def test_05_sagemaker_hpo_with_boto3(self):
        sm = self.sagemaker_client()
        from sklearn.datasets import load_iris
        import numpy as np
        iris = load_iris()
        s3 = os.path.join(self.data, "s3")
        os.makedirs(os.path.join(s3, "data", "iris"), exist_ok=True)
        np.savetxt(os.path.join(s3, "data", "iris", "train.csv"), np.column_stack([iris.target, iris.data]),
                   delimiter=",", fmt="%g")
        src = io.BytesIO()
        with tarfile.open(fileobj=src, mode="w:gz") as t:
            info = tarfile.TarInfo("train.py")
            info.size = len(TRAIN_PY.encode())
            t.addfile(info, io.BytesIO(TRAIN_PY.encode()))
        os.makedirs(os.path.join(s3, "code"), exist_ok=True)
        with open(os.path.join(s3, "code", "sourcedir.tar.gz"), "wb") as f:
            f.write(src.getvalue())
        name = unique("hpo")[:24]
        responses = []
        req = dict(
            HyperParameterTuningJobName=name,
            HyperParameterTuningJobConfig={
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "train:accuracy"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
                "ParameterRanges": {
                    "ContinuousParameterRanges": [{"Name": "learning-rate", "MinValue": "0.01", "MaxValue": "0.5",
                                                   "ScalingType": "Logarithmic"}],
                    "IntegerParameterRanges": [{"Name": "n-estimators", "MinValue": "2", "MaxValue": "20"}]},
                "TrainingJobEarlyStoppingType": "Off"},
            TrainingJobDefinition={
                "StaticHyperParameters": {"sagemaker_program": json.dumps("train.py"),
                                          "sagemaker_submit_directory": json.dumps("s3://code/sourcedir.tar.gz")},
                "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File",
                                           "MetricDefinitions": [{"Name": "train:accuracy",
                                                                  "Regex": "train_accuracy=([0-9\\.]+);"}]},
                "RoleArn": ROLE,
                "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": "s3://data/iris"}}}],
                "OutputDataConfig": {"S3OutputPath": "s3://models/hpo"},
                "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
                "StoppingCondition": {"MaxRuntimeInSeconds": 600}},
            Tags=[{"Key": "project", "Value": "iris"}, {"Key": "stage", "Value": "dev"}])
        r = sm.create_hyper_parameter_tuning_job(**req)
        responses.append(("create_hyper_parameter_tuning_job", r))
        arn = r["HyperParameterTuningJobArn"]
        self.assertTrue(arn.endswith("hyper-parameter-tuning-job/" + name))
        time.sleep(1.01)  # not the same signed request (X-Amz-Date has seconds): that would be a replay
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            sm.create_hyper_parameter_tuning_job(**req)
        self.assertEqual(cm.exception.response["Error"]["Code"], "ResourceInUse")
        self.check_tuning_tags(sm, arn, name, responses)
        d = self.wait_sagemaker_tuning(sm, name)
        responses.append(("describe_hyper_parameter_tuning_job", d))
        self.assertEqual(d["HyperParameterTuningJobStatus"], "Completed", d.get("FailureReason"))
        self.assertNotIn("Tags", d)  # DescribeHyperParameterTuningJob has no Tags member
        self.assertEqual(d["TrainingJobStatusCounters"]["Completed"], 4)
        self.assertEqual(d["ObjectiveStatusCounters"]["Succeeded"], 4)
        best = d["BestTrainingJob"]
        self.assertGreater(best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], 0.9)
        trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, SortBy="FinalObjectiveMetricValue", SortOrder="Descending")
        responses.append(("list_training_jobs_for_hyper_parameter_tuning_job", trials))
        summaries = trials["TrainingJobSummaries"]
        self.assertEqual(len(summaries), 4)
        self.assertEqual(summaries[0]["TrainingJobName"], best["TrainingJobName"])
        for s in summaries:
            self.assertTrue(s["TrainingJobName"].startswith(name + "-"))
            self.assertTrue(0.01 <= float(s["TunedHyperParameters"]["learning-rate"]) <= 0.5)
            self.assertIn(int(s["TunedHyperParameters"]["n-estimators"]), range(2, 21))
            dt = sm.describe_training_job(TrainingJobName=s["TrainingJobName"])
            self.assertEqual(dt["HyperParameters"]["n-estimators"], s["TunedHyperParameters"]["n-estimators"])
            self.assertEqual(dt["TuningJobArn"], arn)  # a trial names its tuning job
            # Trials carry the request's Tags; later changes to the tuning job's tags stay on the tuning job.
            trial_tags = sm.list_tags(ResourceArn=s["TrainingJobArn"])["Tags"]
            self.assertEqual(sorted((t["Key"], t["Value"]) for t in trial_tags), [("project", "iris"), ("stage", "dev")])
        listed = sm.list_hyper_parameter_tuning_jobs(NameContains=name)
        responses.append(("list_hyper_parameter_tuning_jobs", listed))
        self.assertEqual([s["HyperParameterTuningJobName"] for s in listed["HyperParameterTuningJobSummaries"]], [name])
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        self.assertEqual(cm.exception.response["Error"]["Code"], "ValidationException")
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="no-such-tuning")
        self.assertEqual(cm.exception.response["Error"]["Code"], "ResourceNotFound")
        bad = json.loads(json.dumps(req))
        bad["HyperParameterTuningJobName"] = "x" * 33
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            sm.create_hyper_parameter_tuning_job(**bad)
        self.assertEqual(cm.exception.response["Error"]["Code"], "ValidationException")
        bad = json.loads(json.dumps(req))
        bad["HyperParameterTuningJobName"] = unique("bad")[:20]
        bad["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = "nope"
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            sm.create_hyper_parameter_tuning_job(**bad)
        self.assertIn("MetricName", cm.exception.response["Error"]["Message"])
        # Warm start: an IdenticalDataAndAlgorithm child reports the best trial of
        # itself and its parent as OverallBestTrainingJob; another image needs TransferLearning.
        child = dict(json.loads(json.dumps(req)), HyperParameterTuningJobName=unique("warm")[:24],
                     WarmStartConfig={"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": name}],
                                      "WarmStartType": "IdenticalDataAndAlgorithm"})
        child["HyperParameterTuningJobConfig"]["ResourceLimits"] = {"MaxNumberOfTrainingJobs": 1,
                                                                    "MaxParallelTrainingJobs": 1}
        other = json.loads(json.dumps(child))
        other["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"] = SKLEARN_IMAGE + "-v2"
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            sm.create_hyper_parameter_tuning_job(**other)
        self.assertEqual(cm.exception.response["Error"]["Code"], "ValidationException")
        self.assertIn("training image", cm.exception.response["Error"]["Message"])
        sm.create_hyper_parameter_tuning_job(**child)
        dc = self.wait_sagemaker_tuning(sm, child["HyperParameterTuningJobName"])
        responses.append(("describe_hyper_parameter_tuning_job", dc))
        self.assertEqual(dc["HyperParameterTuningJobStatus"], "Completed", dc.get("FailureReason"))
        self.assertEqual(dc["WarmStartConfig"]["WarmStartType"], "IdenticalDataAndAlgorithm")
        values = [s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for s in summaries]
        values.append(dc["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
        self.assertEqual(dc["OverallBestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
                         max(values))
        model = botocore.session.get_session().get_service_model("sagemaker")
        for op, resp in responses:
            resp = {k: v for k, v in resp.items() if k != "ResponseMetadata"}
            shape = model.operation_model("".join(w.capitalize() for w in op.split("_"))).output_shape
            problems = []
            check_shape(shape, resp, op, problems)
            self.assertEqual(problems, [], op)


if __name__ == "__main__":
    unittest.main()
