"""The CreateTrainingJob request Kiln builds for SageMaker validates against
botocore's own SageMaker model (2017-07-24), and SageMaker's caps (100
environment entries, 100 hyperparameters) never bind, however big the job."""
import json
import os
import subprocess
import tempfile
import unittest

import botocore.session
from botocore.validate import ParamValidator

from test_kilnd import BIN_DIR


class SageMakerRequestShape(unittest.TestCase):
    def test_big_job_fits_sagemaker_caps(self):
        spec = {"name": "big-train", "command": ["python3", "train.py", "--epochs", "3"],
                "instance": {"type": "ml.m5.xlarge", "count": 2}, "retry_attempts": 2,
                "hyperparameters": {"k%05d" % i: "v" * 500 for i in range(10000)},
                "environment": {"E%d" % i: "x" * 100 for i in range(500)},
                "tags": {"team": "risk"}, "max_runtime_seconds": 7200}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(spec, f)
        try:
            out = subprocess.run([os.path.join(BIN_DIR, "kiln"), "sagemaker-request", f.name, "--image",
                                  "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1"],
                                 capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(f.name)
        self.assertEqual(out.returncode, 0, out.stderr)
        req = json.loads(out.stdout)
        model = botocore.session.get_session().get_service_model("sagemaker")
        self.assertEqual(model.api_version, "2017-07-24")
        shape = model.operation_model("CreateTrainingJob").input_shape
        report = ParamValidator().validate(req, shape)
        self.assertFalse(report.has_errors(), report.generate_report())
        self.assertLessEqual(len(req["Environment"]), 100)
        self.assertLessEqual(len(req.get("HyperParameters", {})), 100)
        self.assertEqual(set(req["Environment"]), {"KILN_API_URL", "KILN_TOKEN", "KILN_JOB_ID"})
        self.assertEqual(req["ResourceConfig"]["InstanceCount"], 2)

    def test_validator_catches_a_broken_request(self):
        # The check above can fail: a request missing a required member does not validate.
        model = botocore.session.get_session().get_service_model("sagemaker")
        shape = model.operation_model("CreateTrainingJob").input_shape
        report = ParamValidator().validate({"TrainingJobName": "x"}, shape)
        self.assertTrue(report.has_errors())


if __name__ == "__main__":
    unittest.main()
