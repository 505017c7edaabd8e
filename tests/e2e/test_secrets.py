"""End-to-end tests of team secrets and per-instance tokens: values go in through
the CLI's stdin, reach only the job that declared them, and appear nowhere else."""
import glob
import hashlib
import json
import os
import subprocess
import unittest
import uuid

from test_kilnd import KilndHarness, unique


class SecretsE2E(KilndHarness):

    def set_secret(self, team, name, value):
        r = subprocess.run([os.path.join(self.bin, "kiln"), "--endpoint", self.addr, "secrets", "set", "--team", team,
                            name], input=value, capture_output=True, text=True, timeout=30, env=self.kiln_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(value, r.stdout + r.stderr)

    def test_secret_reaches_only_its_job_and_is_never_shown(self):
        value = "s3cr3t-" + uuid.uuid4().hex
        self.set_secret("risk", "FEATURE_STORE_TOKEN", value)
        r = subprocess.run([os.path.join(self.bin, "kiln"), "--endpoint", self.addr, "secrets", "list", "--team", "risk"],
                           capture_output=True, text=True, timeout=30, env=self.kiln_env())
        self.assertIn("FEATURE_STORE_TOKEN", r.stdout)
        self.assertNotIn(value, r.stdout)

        digest = hashlib.sha256(value.encode()).hexdigest()
        check = ("import hashlib, os, sys\n"
                 "v = os.environ.get('FEATURE_STORE_TOKEN', '')\n"
                 "ok = hashlib.sha256(v.encode()).hexdigest() == %r\n"
                 "print('secret matches' if ok else 'secret mismatch')\n"
                 "sys.exit(0 if ok else 1)\n" % digest)
        spec = self.spec(unique("secret"), ["/usr/bin/python3", "-c", check])
        spec.update(team="risk", secrets=["FEATURE_STORE_TOKEN"])
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Completed", job)
        self.assertIn("secret matches", self.logs(job["id"]))

        # The value appears nowhere kilnd shows or keeps in clear.
        st, describe = self.http("GET", "/v1/jobs/%s" % job["id"])
        st, events = self.http("GET", "/v1/events?follow=false")
        st, listing = self.http("GET", "/v1/jobs?limit=1000")
        places = {"describe": describe, "events": events, "list": listing, "logs": self.logs(job["id"])}
        with open(os.path.join(self.tmp, "kilnd.log"), errors="replace") as f:
            places["kilnd.log"] = f.read()
        for path in glob.glob(os.path.join(self.data, "kiln.db*")) + glob.glob(
                os.path.join(self.data, "instances", "**", "*"), recursive=True):
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    places[path] = f.read().decode("latin-1")
        for where, text in places.items():
            self.assertNotIn(value, text, "secret value leaked into %s" % where)

    def test_other_team_cannot_fetch_it(self):
        self.set_secret("risk", "ONLY_RISK", "risk-only-" + uuid.uuid4().hex)
        spec = self.spec(unique("wrongteam"), ["/bin/true"])
        spec.update(team="ads", secrets=["ONLY_RISK"])
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Failed", job)
        self.assertIn("secret ONLY_RISK not found for team ads", job["failure_reason"])

    def test_token_is_refused_after_the_job_and_for_other_instances(self):
        spec = self.spec(unique("token"), ["/bin/sh", "-c", 'echo "TOKEN=$KILN_TOKEN"'])
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Completed", job)
        token = [l for l in self.logs(job["id"]).splitlines() if l.startswith("TOKEN=")][0][len("TOKEN="):]
        st, body = self.http("GET", "/v1/runtime", headers={"Authorization": "Bearer " + token})
        self.assertEqual(st, 401, body)
        self.assertIn("ended", body)
        # Another instance's id with this token's MAC: refused.
        iid, mac = token.rsplit(".", 1)
        forged = iid[:-1] + ("1" if iid[-1] != "1" else "2") + "." + mac
        st, body = self.http("GET", "/v1/runtime", headers={"Authorization": "Bearer " + forged})
        self.assertEqual(st, 401, body)
        st, body = self.http("GET", "/v1/runtime")
        self.assertEqual(st, 401, body)

    def test_bad_secret_input(self):
        st, body = self.http("PUT", "/v1/secrets/risk/1BAD", body=b"value-123")
        self.assertEqual(st, 400, body)
        self.assertEqual(json.loads(body)["error"]["field"], "name")
        self.assertNotIn("value-123", body)
        st, body = self.http("DELETE", "/v1/secrets/risk/NOPE")
        self.assertEqual(st, 404, body)


if __name__ == "__main__":
    unittest.main()


class LargeHyperparametersE2E(KilndHarness):

    def test_five_megabytes_of_hyperparameters(self):
        hps = {"k%05d" % i: "v" * 500 for i in range(10000)}  # 10,000 keys, ~5.2 MB
        check = ("import json, os, sys\n"
                 "h = json.load(open('/opt/ml/input/config/hyperparameters.json'))\n"
                 "ok = len(h) == 10000 and h['k09999'] == 'v' * 500 and 'SM_HPS' not in os.environ\n"
                 "print('hyperparameters ok' if ok else 'hyperparameters wrong: %d' % len(h))\n"
                 "sys.exit(0 if ok else 1)\n")
        spec = self.spec(unique("bighp"), ["/usr/bin/python3", "-c", check])
        spec["hyperparameters"] = hps
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Completed", (job["failure_reason"], self.logs(job["id"])[-2000:]))
        self.assertIn("hyperparameters ok", self.logs(job["id"]))
        # The job record keeps a pointer, not 5 MB.
        st, body = self.http("GET", "/v1/jobs/%s" % job["id"])
        self.assertLess(len(body), 64 * 1024)
        self.assertTrue(json.loads(body)["spec"]["hyperparameters_file"].endswith(".json"))

    def test_small_hyperparameters_stay_inline_with_sm_variables(self):
        check = ("import json, os, sys\n"
                 "ok = json.loads(os.environ['SM_HPS']) == {'lr': 0.1, 'layers': [1, 2]} and os.environ['SM_HP_LR'] == '0.1'\n"
                 "sys.exit(0 if ok else 1)\n")
        spec = self.spec(unique("smallhp"), ["/usr/bin/python3", "-c", check])
        spec["hyperparameters"] = {"lr": 0.1, "layers": [1, 2]}
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Completed", job["failure_reason"])
        self.assertNotIn("hyperparameters_file", job["spec"])
