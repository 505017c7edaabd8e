"""End-to-end tests of kilnd's SageMaker-compatible API with real clients:
boto3/botocore from Debian (python3-boto3) and the AWS CLI v2 (awscli), signed
with SigV4 by those clients, against a private kilnd with real sandboxes.

Run with /usr/bin/python3 (Debian's boto3).  S3 URIs map to <data-dir>/s3/<bucket>/<key>,
so the tests put data there and read results from there.
"""

import datetime
import glob
import hashlib
import hmac
import http.client
import io
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import unittest
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from test_kilnd import KilndHarness, PYTHON, unique

DEADLINE_S = 90
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/KilnTests"

# An unmodified SageMaker script-mode training script (as the SageMaker Python SDK
# documents them): hyperparameters as argparse flags, SM_* directories.
TRAIN_PY = r'''
import argparse, os, json
import numpy as np
import joblib
from sklearn.ensemble import GradientBoostingClassifier

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-estimators", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--model-dir", type=str, default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAIN"))
    args, _ = parser.parse_known_args()
    data = np.loadtxt(os.path.join(args.train, "train.csv"), delimiter=",")
    X, y = data[:, 1:], data[:, 0]
    model = GradientBoostingClassifier(n_estimators=args.n_estimators, learning_rate=args.learning_rate)
    model.fit(X, y)
    print("train_accuracy=%.4f;" % model.score(X, y))
    print("hosts=%s current=%s" % (os.environ["SM_HOSTS"], os.environ["SM_CURRENT_HOST"]))
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
'''

SCORE_PY = r'''
import os, tarfile, joblib, numpy as np
with tarfile.open("/opt/ml/processing/model/model.tar.gz") as t:
    t.extractall("/tmp/model")
model = joblib.load("/tmp/model/model.joblib")
data = np.loadtxt("/opt/ml/processing/input/test.csv", delimiter=",")
pred = model.predict(data[:, 1:])
acc = float((pred == data[:, 0]).mean())
os.makedirs("/opt/ml/processing/output", exist_ok=True)
np.savetxt("/opt/ml/processing/output/predictions.csv", pred, fmt="%d")
with open("/opt/ml/output/message", "w") as f:
    f.write("scored %d rows, accuracy %.3f" % (len(pred), acc))
'''

# Two instances: algo-1 listens, algo-2 connects by name and sends a message over TCP.
PAIR_PY = r'''
import json, os, socket, sys, time
rc = json.load(open("/opt/ml/input/config/resourceconfig.json"))
port = int(json.load(open("/opt/ml/input/config/hyperparameters.json"))["port"])
me = rc["current_host"]
te = json.loads(os.environ["SM_TRAINING_ENV"])
assert te["current_host"] == me and te["hosts"] == rc["hosts"], te
assert te["channel_input_dirs"]["shards"] == "/opt/ml/input/data/shards", te
assert te["is_master"] == (me == "algo-1") and te["master_hostname"] == "algo-1", te
assert json.loads(os.environ["SM_USER_ARGS"]) == ["--port", str(port)], os.environ["SM_USER_ARGS"]
files = sorted(os.listdir("/opt/ml/input/data/shards"))
idc = json.load(open("/opt/ml/input/config/inputdataconfig.json"))
assert idc["shards"]["S3DistributionType"] == "ShardedByS3Key", idc
assert idc["code"]["S3DistributionType"] == "FullyReplicated", idc
with open("/opt/ml/checkpoints/%s.json" % me, "w") as f:
    json.dump({"hosts": rc["hosts"], "shards": files}, f)
if me == "algo-1":
    srv = socket.create_server((socket.gethostbyname("algo-1"), port))
    srv.settimeout(60)
    conn, _ = srv.accept()
    msg = conn.recv(100).decode()
    open("/opt/ml/model/message.txt", "w").write(msg)
    conn.sendall(b"ack")
else:
    for _ in range(600):
        try:
            c = socket.create_connection(("algo-1", port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    c.sendall(("hello from %s" % me).encode())
    assert c.recv(3) == b"ack"
'''


def sign_v4(method, host, body, key, secret, target, amz_date=None, region="us-east-1", service="sagemaker",
            sign_target=True):
    """An independent SigV4 signer (hashlib/hmac), for requests botocore would not send."""
    amz_date = amz_date or datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    headers = {"content-type": "application/x-amz-json-1.1", "host": host, "x-amz-date": amz_date}
    if target is not None and sign_target:
        headers["x-amz-target"] = target
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, "/", "", "".join("%s:%s\n" % (k, headers[k]) for k in sorted(headers)), signed,
                           hashlib.sha256(body).hexdigest()])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        key, scope, signed, sig)
    if target is not None and not sign_target:
        headers["x-amz-target"] = target  # sent, not signed
    return headers


class SageMakerApiE2E(KilndHarness):
    KILND_ARGS = ["--statsd-flush-ms", "300"]
    responses = []  # (operation, response) pairs, checked against botocore's output shapes at the end

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.creds_file = os.path.join(cls.data, "credentials")
        for _ in range(100):
            if os.path.exists(cls.creds_file):
                break
            time.sleep(0.1)
        cls.endpoint = "http://" + cls.addr
        cls.env = dict(os.environ, AWS_SHARED_CREDENTIALS_FILE=cls.creds_file, AWS_DEFAULT_REGION="us-east-1",
                       AWS_CONFIG_FILE="/dev/null", AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")
        with open(cls.creds_file) as f:
            lines = dict(l.split(" = ", 1) for l in f.read().splitlines() if " = " in l)
        cls.key, cls.secret = lines["aws_access_key_id"], lines["aws_secret_access_key"]
        cls.sm = cls.client()
        cls.sm_raw = cls.client(parameter_validation=False)
        cls.s3root = os.path.join(cls.data, "s3")

    @classmethod
    def client(cls, key=None, secret=None, **cfg):
        session = boto3.session.Session(aws_access_key_id=key or cls.key, aws_secret_access_key=secret or cls.secret,
                                        region_name="us-east-1")
        return session.client("sagemaker", endpoint_url=cls.endpoint,
                              config=botocore.config.Config(retries={"max_attempts": 1}, **cfg))

    # ---------------------------------------------------------------- helpers

    def put(self, uri, data):
        assert uri.startswith("s3://")
        path = os.path.join(self.s3root, uri[5:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return path

    def local(self, uri):
        return os.path.join(self.s3root, uri[5:])

    def call(self, op, **kw):
        resp = getattr(self.sm, op)(**kw)
        resp.pop("ResponseMetadata", None)
        self.responses.append((op, resp))
        return resp

    def error_code(self, fn, **kw):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            fn(**kw)
        return cm.exception.response["Error"]["Code"], cm.exception.response["Error"].get("Message", "")

    def training_request(self, name, command=None, image="host", **extra):
        req = {"TrainingJobName": name, "RoleArn": ROLE,
               "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
               "OutputDataConfig": {"S3OutputPath": "s3://models/out"},
               "ResourceConfig": {"InstanceType": "local.small", "InstanceCount": 1, "VolumeSizeInGB": 1},
               "StoppingCondition": {"MaxRuntimeInSeconds": 300}}
        if command:
            req["AlgorithmSpecification"]["ContainerEntrypoint"] = command
        req.update(extra)
        return req

    def wait_training(self, name):
        waiter = self.sm.get_waiter("training_job_completed_or_stopped")
        try:
            waiter.wait(TrainingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": DEADLINE_S})
        except botocore.exceptions.WaiterError:
            pass  # Failed is terminal too; the caller asserts the status
        return self.call("describe_training_job", TrainingJobName=name)

    def wait_processing(self, name):
        deadline = time.time() + DEADLINE_S
        while time.time() < deadline:
            d = self.call("describe_processing_job", ProcessingJobName=name)
            if d["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"):
                return d
            time.sleep(0.3)
        self.fail("processing job %s did not finish" % name)

    def raw(self, body, target="SageMaker.ListTrainingJobs", key=None, secret=None, amz_date=None, send_body=None,
            headers=None, **sign):
        body = body if isinstance(body, bytes) else body.encode()
        h = headers if headers is not None else sign_v4("POST", self.addr, body, key or self.key,
                                                         secret or self.secret, target, amz_date, **sign)
        conn = http.client.HTTPConnection(self.addr, timeout=30)
        conn.request("POST", "/", body=send_body if send_body is not None else body, headers=h)
        r = conn.getresponse()
        out = r.status, json.loads(r.read() or b"{}")
        conn.close()
        return out

    def job_count(self):
        return len(self.sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"])

    # ------------------------------------------------------------------ tests

    def test_01_credentials_file_works_at_once(self):
        self.assertEqual(os.stat(self.creds_file).st_mode & 0o777, 0o600)
        self.assertEqual(self.call("list_training_jobs")["TrainingJobSummaries"], [])
        # The AWS CLI reads the same file.
        out = subprocess.run(["/usr/bin/aws", "sagemaker", "list-training-jobs", "--endpoint-url", self.endpoint],
                             env=self.env, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["TrainingJobSummaries"], [])

    def test_02_authentication_refusals_change_nothing(self):
        body = json.dumps(self.training_request(unique("auth"), ["true"]))
        before = self.job_count()
        # Wrong secret: botocore signs, kilnd refuses.
        code, _ = self.error_code(self.client(secret="x" * 40).create_training_job,
                                  **self.training_request(unique("auth"), ["true"]))
        self.assertEqual(code, "InvalidSignatureException")
        code, _ = self.error_code(self.client(key="AKIAUNKNOWNUNKNOWN00").list_training_jobs)
        self.assertEqual(code, "UnrecognizedClientException")
        status, err = self.raw(body, target="SageMaker.CreateTrainingJob", headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.CreateTrainingJob"})
        self.assertEqual((status, err["__type"]), (403, "MissingAuthenticationTokenException"))
        old = (datetime.datetime.utcnow() - datetime.timedelta(minutes=16)).strftime("%Y%m%dT%H%M%SZ")
        status, err = self.raw(body, target="SageMaker.CreateTrainingJob", amz_date=old)
        self.assertEqual(err["__type"], "InvalidSignatureException")
        self.assertIn("Signature expired", err["message"])
        tampered = body.replace('"true"', '"false"').encode()
        status, err = self.raw(body, target="SageMaker.CreateTrainingJob", send_body=tampered)
        self.assertEqual((status, err["__type"]), (403, "InvalidSignatureException"))
        # The scope must be this Kiln's region and the sagemaker service; the target must be signed.
        status, err = self.raw(body, target="SageMaker.CreateTrainingJob", region="eu-west-1")
        self.assertEqual((status, err["__type"]), (403, "InvalidSignatureException"))
        self.assertIn("scoped to a valid region", err["message"])
        status, err = self.raw(body, target="SageMaker.CreateTrainingJob", service="s3")
        self.assertEqual((status, err["__type"]), (403, "InvalidSignatureException"))
        status, err = self.raw(body, target="SageMaker.CreateTrainingJob", sign_target=False)
        self.assertEqual((status, err["__type"]), (400, "IncompleteSignatureException"))
        self.assertEqual(self.job_count(), before)
        # The same request signed properly is accepted: the refusals were about the signature.
        headers = sign_v4("POST", self.addr, body.encode(), self.key, self.secret, "SageMaker.CreateTrainingJob")
        status, ok = self.raw(body, headers=headers)
        self.assertEqual(status, 200, ok)
        self.assertEqual(self.job_count(), before + 1)
        # Sent again as it was (a captured request): refused, nothing done.
        status, err = self.raw(body, headers=headers)
        self.assertEqual((status, err["__type"]), (403, "InvalidSignatureException"), err)
        self.assertIn("already carried out", err["message"])
        # Replaying it as another operation fails the signature (the target is signed).
        replayed = dict(headers, **{"x-amz-target": "SageMaker.StopTrainingJob"})
        status, err = self.raw(body, headers=replayed)
        self.assertEqual((status, err["__type"]), (403, "InvalidSignatureException"), err)
        self.assertEqual(self.job_count(), before + 1)
        # Reads may repeat.
        reads = sign_v4("POST", self.addr, b"{}", self.key, self.secret, "SageMaker.ListTrainingJobs")
        self.assertEqual(self.raw("{}", headers=reads)[0], 200)
        self.assertEqual(self.raw("{}", headers=reads)[0], 200)

    def test_03_bad_input_gets_aws_errors_and_changes_nothing(self):
        before = self.job_count()
        name = unique("bad")
        cases = [
            (dict(self.training_request("bad_name!", ["true"])), "ValidationException", "TrainingJobName"),
            (dict(self.training_request(name, ["true"]), HyperParameters={"h%d" % i: "1" for i in range(101)}),
             "ValidationException", "HyperParameters"),
            (dict(self.training_request(name, ["true"]), HyperParameters={"big": "x" * 2501}),
             "ValidationException", "HyperParameters.big"),
            (dict(self.training_request(name, ["true"]), Environment={"E%d" % i: "1" for i in range(101)}),
             "ValidationException", "Environment"),
            (dict(self.training_request(name, ["true"]), Tags=[{"Key": "k%d" % i, "Value": "v"} for i in range(51)]),
             "ValidationException", "Tags"),
            (dict(self.training_request(name, ["true"]), StoppingCondition={"MaxRuntimeInSeconds": 28 * 86400 + 1}),
             "ValidationException", "MaxRuntimeInSeconds"),
            (dict(self.training_request(name, ["true"]), ResourceConfig={"InstanceType": "local.small",
                                                                         "InstanceCount": "two", "VolumeSizeInGB": 1}),
             "ValidationException", "ResourceConfig.InstanceCount"),
            (dict(self.training_request(name, ["true"]), InputDataConfig=[{"ChannelName": "train", "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/../../etc"}}}]),
             "ValidationException", "S3Uri"),
            (dict(self.training_request(name, ["true"]), InputDataConfig=[{"ChannelName": "..", "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/x"}}}]),
             "ValidationException", "ChannelName"),
            (dict(self.training_request(name, ["true"]), OutputDataConfig={"S3OutputPath": "s3://models/../x"}),
             "ValidationException", "S3OutputPath"),
        ]
        for req, code, field in cases:
            got, msg = self.error_code(self.sm_raw.create_training_job, **req)
            self.assertEqual(got, code, msg)
            self.assertIn(field, msg)
        status, err = self.raw(json.dumps(dict(self.training_request(name, ["true"]), Bogus=1)),
                               target="SageMaker.CreateTrainingJob")
        self.assertEqual((status, err["__type"]), (400, "ValidationException"))
        self.assertIn("Bogus", err["message"])
        # Protocol-level refusals.
        status, err = self.raw("{not json", target="SageMaker.CreateTrainingJob")
        self.assertEqual((status, err["__type"]), (400, "SerializationException"))
        status, err = self.raw("{}", target="SageMaker.DeleteEverything")
        self.assertEqual((status, err["__type"]), (400, "UnknownOperationException"))
        status, err = self.raw("{}", target=None)
        self.assertEqual(err["__type"], "UnknownOperationException")
        big = json.dumps(dict(self.training_request(name, ["true"]), Environment={"X": "y" * (10 << 20)}))
        status, err = self.raw(big, target="SageMaker.CreateTrainingJob")
        self.assertEqual((status, err["__type"]), (413, "ValidationException"))
        # A supported-by-AWS operation Kiln does not serve.
        status, err = self.raw("{}", target="SageMaker.CreateTransformJob")
        self.assertEqual(err["__type"], "UnknownOperationException")
        self.assertEqual(self.job_count(), before)
        # Unknown and duplicate names.
        code, msg = self.error_code(self.sm.describe_training_job, TrainingJobName="no-such-job")
        self.assertEqual((code, msg), ("ValidationException", "Requested resource not found."))
        dup = unique("dup")
        self.call("create_training_job", **self.training_request(dup, ["true"]))
        time.sleep(1.01)  # not the same signed request (X-Amz-Date has seconds): that would be a replay
        code, _ = self.error_code(self.sm.create_training_job, **self.training_request(dup, ["true"]))
        self.assertEqual(code, "ResourceInUse")
        code, _ = self.error_code(self.sm.stop_training_job, TrainingJobName="no-such-job")
        self.assertEqual(code, "ValidationException")

    def test_04_script_mode_sklearn_trains_and_model_loads(self):
        from sklearn.datasets import load_iris
        import numpy as np
        iris = load_iris()
        rows = np.column_stack([iris.target, iris.data])
        buf = io.StringIO()
        np.savetxt(buf, rows, delimiter=",", fmt="%g")
        self.put("s3://data/iris/train/train.csv", buf.getvalue())
        src = io.BytesIO()
        with tarfile.open(fileobj=src, mode="w:gz") as t:
            info = tarfile.TarInfo("train.py")
            info.size = len(TRAIN_PY.encode())
            t.addfile(info, io.BytesIO(TRAIN_PY.encode()))
        self.put("s3://code/sk/sourcedir.tar.gz", src.getvalue())
        name = unique("sk")
        self.__class__.sk_job = name
        self.call("create_training_job", **self.training_request(
            name, image=SKLEARN_IMAGE,
            HyperParameters={"n-estimators": "25", "learning-rate": "0.2",
                             "sagemaker_program": json.dumps("train.py"),
                             "sagemaker_submit_directory": json.dumps("s3://code/sk/sourcedir.tar.gz"),
                             "sagemaker_region": json.dumps("us-east-1")},
            AlgorithmSpecification={"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File",
                                    "MetricDefinitions": [{"Name": "train:accuracy",
                                                           "Regex": "train_accuracy=([0-9\\.]+);"}]},
            InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://data/iris/train",
                "S3DataDistributionType": "FullyReplicated"}}}],
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            Tags=[{"Key": "project", "Value": "iris"}]))
        d = self.wait_training(name)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d.get("FailureReason"))
        self.assertEqual(d["SecondaryStatus"], "Completed")
        self.assertEqual(d["HyperParameters"]["n-estimators"], "25")
        statuses = [t["Status"] for t in d["SecondaryStatusTransitions"]]
        self.assertEqual(statuses[0], "Starting")
        self.assertIn("Training", statuses)
        art = d["ModelArtifacts"]["S3ModelArtifacts"]
        self.assertEqual(art, "s3://models/out/%s/output/model.tar.gz" % name)
        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(self.local(art)), "output.tar.gz")))
        with tarfile.open(self.local(art)) as t:
            t.extractall(os.path.join(self.tmp, "model-" + name))
        import joblib
        model = joblib.load(os.path.join(self.tmp, "model-" + name, "model.joblib"))
        self.assertGreater(model.score(iris.data, iris.target), 0.9)
        self.assertEqual(model.n_estimators, 25)
        # MetricDefinitions -> FinalMetricDataList (after the gateway's flush).
        deadline = time.time() + 30
        while time.time() < deadline and "FinalMetricDataList" not in d:
            time.sleep(0.3)
            d = self.call("describe_training_job", TrainingJobName=name)
        metrics = {m["MetricName"]: m["Value"] for m in d.get("FinalMetricDataList", [])}
        self.assertGreater(metrics.get("train:accuracy", 0), 0.9, d.get("FinalMetricDataList"))
        # The same series through the native API.
        st, text = self.http("GET", "/v1/jobs/%s/metrics" % name)
        self.assertEqual(st, 200, text)
        self.assertIn("train:accuracy", text)

    def test_05_list_filters_sorting_and_paginator(self):
        prefix = unique("ls")
        names = ["%s-%d" % (prefix, i) for i in range(5)]
        t0 = time.time()
        for n in names:
            self.call("create_training_job", **self.training_request(n, ["true"]))
        for n in names:
            self.assertEqual(self.wait_training(n)["TrainingJobStatus"], "Completed")
        pages = list(self.sm.get_paginator("list_training_jobs").paginate(
            NameContains=prefix, PaginationConfig={"PageSize": 2}))
        self.assertEqual(len(pages), 3)
        for p in pages:
            self.responses.append(("list_training_jobs", {k: v for k, v in p.items() if k != "ResponseMetadata"}))
        got = [s["TrainingJobName"] for p in pages for s in p["TrainingJobSummaries"]]
        self.assertEqual(got, list(reversed(names)))  # newest first
        asc = self.call("list_training_jobs", NameContains=prefix, SortBy="Name", SortOrder="Ascending")
        self.assertEqual([s["TrainingJobName"] for s in asc["TrainingJobSummaries"]], names)
        done = self.call("list_training_jobs", NameContains=prefix, StatusEquals="Completed", MaxResults=100)
        self.assertEqual(len(done["TrainingJobSummaries"]), 5)
        none = self.call("list_training_jobs", NameContains=prefix, StatusEquals="Failed")
        self.assertEqual(none["TrainingJobSummaries"], [])
        later = self.call("list_training_jobs", NameContains=prefix,
                          CreationTimeAfter=datetime.datetime.fromtimestamp(time.time() + 3600))
        self.assertEqual(later["TrainingJobSummaries"], [])
        since = self.call("list_training_jobs", NameContains=prefix,
                          CreationTimeAfter=datetime.datetime.fromtimestamp(t0 - 5))
        self.assertEqual(len(since["TrainingJobSummaries"]), 5)

    def test_06_stop_training_job(self):
        name = unique("stop")
        self.call("create_training_job", **self.training_request(name, ["sleep", "300"]))
        deadline = time.time() + DEADLINE_S
        while self.call("describe_training_job", TrainingJobName=name)["SecondaryStatus"] != "Training":
            self.assertLess(time.time(), deadline)
            time.sleep(0.2)
        self.call("stop_training_job", TrainingJobName=name)
        d = self.wait_training(name)
        self.assertEqual((d["TrainingJobStatus"], d["SecondaryStatus"]), ("Stopped", "Stopped"))
        code, msg = self.error_code(self.sm.stop_training_job, TrainingJobName=name)
        self.assertEqual(code, "ValidationException")
        self.assertIn("Stopped", msg)

    def test_07_tags(self):
        name = unique("tags")
        arn = self.call("create_training_job", **self.training_request(
            name, ["true"], Tags=[{"Key": "a", "Value": "1"}]))["TrainingJobArn"]
        self.call("add_tags", ResourceArn=arn, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}])
        self.assertEqual(self.wait_training(name)["TrainingJobStatus"], "Completed")
        tags = self.call("list_tags", ResourceArn=arn)["Tags"]
        self.assertEqual(sorted((t["Key"], t["Value"]) for t in tags), [("a", "3"), ("b", "2")])
        self.call("delete_tags", ResourceArn=arn, TagKeys=["a"])
        self.assertEqual(self.call("list_tags", ResourceArn=arn)["Tags"], [{"Key": "b", "Value": "2"}])
        code, _ = self.error_code(self.sm.list_tags, ResourceArn=arn.replace(name, "nope-" + name))
        self.assertEqual(code, "ValidationException")
        code, msg = self.error_code(self.sm.add_tags, ResourceArn=arn,
                                    Tags=[{"Key": "k%d" % i, "Value": "v"} for i in range(50)])
        self.assertEqual(code, "ValidationException")
        self.assertEqual(len(self.call("list_tags", ResourceArn=arn)["Tags"]), 1)  # unchanged

    def test_08_processing_job_scores_with_trained_model(self):
        name = getattr(self, "sk_job", None)
        if not name:
            self.skipTest("needs test_04's model")
        from sklearn.datasets import load_iris
        import numpy as np
        iris = load_iris()
        buf = io.StringIO()
        np.savetxt(buf, np.column_stack([iris.target, iris.data])[::3], delimiter=",", fmt="%g")
        self.put("s3://data/iris/test/test.csv", buf.getvalue())
        self.put("s3://code/score/score.py", SCORE_PY)
        pname = unique("score")
        self.call("create_processing_job", ProcessingJobName=pname, RoleArn=ROLE,
                  AppSpecification={"ImageUri": SKLEARN_IMAGE,
                                    "ContainerEntrypoint": [PYTHON, "/opt/ml/processing/code/score.py"]},
                  ProcessingInputs=[
                      {"InputName": "model", "S3Input": {"S3Uri": "s3://models/out/%s/output/model.tar.gz" % name,
                                                          "LocalPath": "/opt/ml/processing/model",
                                                          "S3DataType": "S3Prefix", "S3InputMode": "File"}},
                      {"InputName": "data", "S3Input": {"S3Uri": "s3://data/iris/test",
                                                         "LocalPath": "/opt/ml/processing/input",
                                                         "S3DataType": "S3Prefix", "S3InputMode": "File"}},
                      {"InputName": "code", "S3Input": {"S3Uri": "s3://code/score",
                                                         "LocalPath": "/opt/ml/processing/code",
                                                         "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
                  ProcessingOutputConfig={"Outputs": [{"OutputName": "predictions", "S3Output": {
                      "S3Uri": "s3://results/%s" % pname, "LocalPath": "/opt/ml/processing/output",
                      "S3UploadMode": "EndOfJob"}}]},
                  ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                         "VolumeSizeInGB": 1}},
                  StoppingCondition={"MaxRuntimeInSeconds": 300})
        d = self.wait_processing(pname)
        self.assertEqual(d["ProcessingJobStatus"], "Completed", d.get("FailureReason"))
        self.assertRegex(d["ExitMessage"], r"^scored 50 rows, accuracy (0\.9|1\.0)")
        preds = open(os.path.join(self.s3root, "results", pname, "predictions.csv")).read().split()
        self.assertEqual(len(preds), 50)
        listed = self.call("list_processing_jobs", NameContains=pname)["ProcessingJobSummaries"]
        self.assertEqual([s["ProcessingJobName"] for s in listed], [pname])
        # Processing and training jobs are listed apart.
        self.assertNotIn(pname, [s["TrainingJobName"] for s in self.sm.list_training_jobs(
            MaxResults=100)["TrainingJobSummaries"]])
        code, _ = self.error_code(self.sm.describe_processing_job, ProcessingJobName="nope-" + pname)
        self.assertEqual(code, "ValidationException")

    def test_09_two_instances_talk_over_tcp_and_shard_a_channel(self):
        for i in range(4):
            self.put("s3://data/shards/part-%d.txt" % i, "part %d\n" % i)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        name = unique("pair")
        self.put("s3://code/pair/pair.py", PAIR_PY)
        self.call("create_training_job", **self.training_request(
            name, [PYTHON, "/opt/ml/input/data/code/pair.py"],
            HyperParameters={"port": str(port)},
            InputDataConfig=[{"ChannelName": "shards", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://data/shards", "S3DataDistributionType": "ShardedByS3Key"}}},
                             {"ChannelName": "code", "DataSource": {"S3DataSource": {
                                 "S3DataType": "S3Prefix", "S3Uri": "s3://code/pair"}}}],
            CheckpointConfig={"S3Uri": "s3://ckpt/%s" % name},
            ResourceConfig={"InstanceType": "local.small", "InstanceCount": 2, "VolumeSizeInGB": 1}))
        d = self.wait_training(name)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d.get("FailureReason"))
        with tarfile.open(self.local(d["ModelArtifacts"]["S3ModelArtifacts"])) as t:
            msg = t.extractfile("./message.txt").read().decode()
        self.assertEqual(msg, "hello from algo-2")
        seen = {}
        for host in ("algo-1", "algo-2"):
            with open(os.path.join(self.s3root, "ckpt", name, host + ".json")) as f:
                seen[host] = json.load(f)
            self.assertEqual(seen[host]["hosts"], ["algo-1", "algo-2"])
        self.assertEqual(seen["algo-1"]["shards"], ["part-0.txt", "part-2.txt"])
        self.assertEqual(seen["algo-2"]["shards"], ["part-1.txt", "part-3.txt"])

    def test_10_unknown_image_fails_with_reason(self):
        name = unique("noimg")
        self.call("create_training_job", **self.training_request(name, image="example.com/unknown/image:1"))
        d = self.wait_training(name)
        self.assertEqual(d["TrainingJobStatus"], "Failed")
        self.assertIn("ImageNotFound", d["FailureReason"])
        self.assertIn("example.com/unknown/image:1", d["FailureReason"])

    def test_11_aws_cli_flows(self):
        name = unique("cli")
        req = self.training_request(name, ["sleep", "300"])
        aws = lambda *args: subprocess.run(["/usr/bin/aws", "sagemaker"] + list(args) + ["--endpoint-url",
                                           self.endpoint], env=self.env, capture_output=True, text=True, timeout=120)
        out = aws("create-training-job", "--cli-input-json", json.dumps(req))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(json.loads(out.stdout)["TrainingJobArn"].endswith("training-job/" + name))
        out = aws("describe-training-job", "--training-job-name", name)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["TrainingJobStatus"], "InProgress")
        out = aws("stop-training-job", "--training-job-name", name)
        self.assertEqual(out.returncode, 0, out.stderr)
        d = self.wait_training(name)
        self.assertEqual(d["TrainingJobStatus"], "Stopped")
        out = aws("describe-training-job", "--training-job-name", "no-such-" + name)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("ValidationException", out.stderr)
        self.assertIn("Requested resource not found", out.stderr)
        out = aws("list-training-jobs", "--name-contains", name)
        self.assertEqual([s["TrainingJobName"] for s in json.loads(out.stdout)["TrainingJobSummaries"]], [name])

    def test_12_team_keys_see_only_their_jobs(self):
        # An unknown role is refused, not silently made a team key.
        st, err = self.http("POST", "/v1/keys", {"team": "ads", "role": "superuser"})
        self.assertEqual(st, 400, err)
        self.assertEqual(json.loads(err)["error"]["field"], "role")
        out = self.kiln("keys", "create", "--team", "ads", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        k = json.loads(out.stdout)
        ads = self.client(key=k["access_key_id"], secret=k["secret_access_key"])
        name = unique("ads")
        ads.create_training_job(**self.training_request(name, ["true"]))
        self.assertEqual([s["TrainingJobName"] for s in ads.list_training_jobs()["TrainingJobSummaries"]], [name])
        self.assertEqual(self.sm.describe_training_job(TrainingJobName=name)["TrainingJobName"], name)  # admin
        foreign = unique("admins")
        self.sm.create_training_job(**self.training_request(foreign, ["true"]))
        other = self.sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
        self.assertEqual({name, foreign} - {s["TrainingJobName"] for s in other}, set())  # admin sees both
        code, _ = self.error_code(ads.describe_training_job, TrainingJobName=foreign)
        self.assertEqual(code, "ValidationException")
        self.assertTrue(other)
        # A deleted key is refused from then on.
        listed = self.kiln("keys", "list", "--team", "ads")
        self.assertIn(k["access_key_id"], listed.stdout)
        self.assertEqual(self.kiln("keys", "delete", k["access_key_id"]).returncode, 0)
        code, _ = self.error_code(ads.list_training_jobs)
        self.assertEqual(code, "UnrecognizedClientException")

    def test_13_checkpoints_are_restored_on_retry(self):
        name = unique("ckpt")
        script = ("if [ -f /opt/ml/checkpoints/epoch ]; then echo resumed from $(cat /opt/ml/checkpoints/epoch); "
                  "else echo 3 > /opt/ml/checkpoints/epoch; echo first attempt fails >&2; exit 1; fi")
        self.call("create_training_job", **self.training_request(
            name, ["sh", "-c", script], CheckpointConfig={"S3Uri": "s3://ckpt/%s" % name},
            RetryStrategy={"MaximumRetryAttempts": 2}))
        d = self.wait_training(name)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d.get("FailureReason"))
        self.assertIn("Restarting", [t["Status"] for t in d["SecondaryStatusTransitions"]])
        with open(os.path.join(self.s3root, "ckpt", name, "epoch")) as f:
            self.assertEqual(f.read().strip(), "3")

    def warm_cache_dirs(self, chain):
        """Where a chain's cache lives on the host: a subvolume per instance of the
        scratch pool, or a directory under the instances' directory."""
        return (glob.glob(os.path.join(self.data, "scratch", "warm.%s.*" % chain)) +
                glob.glob(os.path.join(self.data, "instances", ".warmcache", chain)))

    def test_14_warm_pools_keep_the_cache_and_nothing_else(self):
        rc = {"InstanceType": "local.small", "InstanceCount": 1, "VolumeSizeInGB": 1, "KeepAlivePeriodInSeconds": 600}
        # The first job leaves something in every place a job can write, and a process behind.
        first = unique("warm-a")
        leave = ('C=$SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY; [ "$C" = /opt/ml/sagemaker/warmpoolcache ] || exit 7; '
                 'echo from-a > $C/weights; echo a > /opt/ml/model/a; echo a > /tmp/a-tmp; '
                 'echo a > /opt/ml/output/data/a; (setsid sleep 3107 >/dev/null 2>&1 &); true')
        self.call("create_training_job", **self.training_request(first, ["sh", "-c", leave], ResourceConfig=rc,
                                                                   Environment={"ONLY_A": "secret-of-a"}))
        d = self.wait_training(first)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d.get("FailureReason"))
        self.assertEqual(d["WarmPoolStatus"]["Status"], "Available", d)
        self.assertEqual(d["ResourceConfig"]["KeepAlivePeriodInSeconds"], 600)
        self.assertEqual(subprocess.run(["pgrep", "-f", "sleep 3107"]).returncode, 1, "a process of the job lives on")
        listed = self.call("list_training_jobs", WarmPoolStatusEquals="Available", MaxResults=100)
        self.assertIn(first, [x["TrainingJobName"] for x in listed["TrainingJobSummaries"]])
        code, msg = self.error_code(self.sm_raw.list_training_jobs, WarmPoolStatusEquals="Warm")
        self.assertEqual(code, "ValidationException", msg)

        # Another team's matching job does not get it.
        out = self.kiln("keys", "create", "--team", "ads", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        k = json.loads(out.stdout)
        ads = self.client(key=k["access_key_id"], secret=k["secret_access_key"])
        foreign = unique("warm-ads")
        ads.create_training_job(**self.training_request(
            foreign, ["sh", "-c", "[ ! -e $SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY/weights ]"], ResourceConfig=rc))
        self.assertEqual(self.sm.describe_training_job(TrainingJobName=first)["WarmPoolStatus"]["Status"], "Available")

        # The next matching job of the team takes it: the cache is there, nothing else is.
        check = ('C=$SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY; '
                 'fail() { echo "$1" > /opt/ml/output/failure; exit 1; }; '
                 '[ "$(cat $C/weights)" = from-a ] || fail "no cache"; '
                 '[ -z "$(ls -A /opt/ml/model)$(ls -A /opt/ml/output/data)" ] || fail "outputs leaked"; '
                 '[ ! -e /tmp/a-tmp ] || fail "tmp leaked"; [ -z "$ONLY_A" ] || fail "environment leaked"; '
                 '! pgrep -f "sleep 3107" || fail "process leaked"; echo from-b > $C/weights')
        second = unique("warm-b")
        self.put("s3://warm/%s/check.sh" % second, check)
        self.call("create_training_job", **self.training_request(
            second, ["sh", "/opt/ml/input/data/script/check.sh"], ResourceConfig=rc, InputDataConfig=[{
                "ChannelName": "script", "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": "s3://warm/%s" % second}}}]))
        d = self.wait_training(second)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d.get("FailureReason"))
        self.assertEqual(d["WarmPoolStatus"]["Status"], "Available", d)
        warm = self.kiln("pools", "warm", "list")
        self.assertEqual(warm.returncode, 0, warm.stderr)
        self.assertIn(second, warm.stdout)
        self.assertNotIn(first, warm.stdout)  # Reused, not Available
        was = self.call("describe_training_job", TrainingJobName=first)["WarmPoolStatus"]
        self.assertEqual((was["Status"], was["ReusedByJob"]), ("Reused", second), was)
        self.assertIsInstance(was["ResourceRetainedBillableTimeInSeconds"], int)
        d = self.wait_training(foreign)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d.get("FailureReason"))

        # kill -9 of kilnd keeps the pool; the restarted kilnd hands it on once.
        self.stop_kilnd(signal.SIGKILL)
        type(self).start_kilnd()
        type(self).endpoint = "http://" + self.addr
        type(self).sm = self.client()
        type(self).sm_raw = self.client(parameter_validation=False)
        self.assertEqual(self.sm.describe_training_job(TrainingJobName=second)["WarmPoolStatus"]["Status"], "Available")
        third = unique("warm-c")
        self.call("create_training_job", **self.training_request(
            third, ["sh", "-c", '[ "$(cat $SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY/weights)" = from-b ]'],
            ResourceConfig=rc))
        d = self.wait_training(third)
        self.assertEqual(d["TrainingJobStatus"], "Completed", d.get("FailureReason"))
        chain = self.http("GET", "/v1/jobs/" + first, token=self.admin_token)
        chain_id = json.loads(chain[1])["id"]
        self.assertTrue(self.warm_cache_dirs(chain_id), "the chain's cache is on the host")

        # UpdateTrainingJob: past the maximum is refused; 0 ends the pool and its cache.
        code, msg = self.error_code(self.sm_raw.update_training_job, TrainingJobName=third,
                                    ResourceConfig={"KeepAlivePeriodInSeconds": 7200})
        self.assertEqual(code, "ValidationException", msg)
        self.call("update_training_job", TrainingJobName=third, ResourceConfig={"KeepAlivePeriodInSeconds": 0})
        deadline = time.time() + DEADLINE_S
        while self.sm.describe_training_job(TrainingJobName=third)["WarmPoolStatus"]["Status"] != "Terminated":
            self.assertLess(time.time(), deadline)
            time.sleep(0.2)
        while self.warm_cache_dirs(chain_id):
            self.assertLess(time.time(), deadline, "the cache outlived its pool")
            time.sleep(0.2)
        code, msg = self.error_code(self.sm.update_training_job, TrainingJobName=third,
                                    ResourceConfig={"KeepAlivePeriodInSeconds": 60})
        self.assertEqual(code, "ValidationException", msg)
        self.assertIn("Terminated", msg)

    def test_99_responses_match_botocore_output_shapes(self):
        model = botocore.session.get_session().get_service_model("sagemaker")
        self.assertGreater(len(self.responses), 20)
        checked = set()
        for op, resp in self.responses:
            name = "".join(w.capitalize() for w in op.split("_"))
            shape = model.operation_model(name).output_shape
            problems = []
            if shape is None:
                self.assertEqual(resp, {}, op)
            else:
                check_shape(shape, resp, op, problems)
            self.assertEqual(problems, [], op)
            checked.add(op)
        self.assertGreaterEqual(checked, {"create_training_job", "describe_training_job", "list_training_jobs",
                                          "stop_training_job", "add_tags", "list_tags", "delete_tags",
                                          "create_processing_job", "describe_processing_job",
                                          "list_processing_jobs"})


def check_shape(shape, value, path, problems):
    """Structural check of a parsed response against a botocore output shape:
    no member outside the shape, required members present, types right."""
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            problems.append("%s: not a structure" % path)
            return
        for k in value:
            if k not in shape.members:
                problems.append("%s.%s: not in the model" % (path, k))
        for r in shape.required_members:
            if r not in value:
                problems.append("%s.%s: required member missing" % (path, r))
        for k, v in value.items():
            if k in shape.members:
                check_shape(shape.members[k], v, path + "." + k, problems)
    elif t == "list":
        if not isinstance(value, list):
            problems.append("%s: not a list" % path)
            return
        for i, v in enumerate(value):
            check_shape(shape.member, v, "%s[%d]" % (path, i), problems)
    elif t == "map":
        if not isinstance(value, dict):
            problems.append("%s: not a map" % path)
            return
        for k, v in value.items():
            check_shape(shape.value, v, "%s.%s" % (path, k), problems)
    elif t == "string":
        if not isinstance(value, str):
            problems.append("%s: not a string" % path)
        elif shape.enum and value not in shape.enum and shape.name not in ("TrainingInstanceType",
                                                                            "ProcessingInstanceType"):
            # Kiln's catalog adds instance types (local.*); every other enum must hold.
            problems.append("%s: %r not in enum" % (path, value))
    elif t in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append("%s: not an integer" % path)
    elif t in ("float", "double"):
        if not isinstance(value, (int, float)):
            problems.append("%s: not a number" % path)
    elif t == "boolean":
        if not isinstance(value, bool):
            problems.append("%s: not a boolean" % path)
    elif t == "timestamp":
        if not isinstance(value, datetime.datetime):
            problems.append("%s: not a timestamp" % path)


if __name__ == "__main__":
    unittest.main()
