"""End-to-end tests for kilnd: a real daemon, real kiln-supervisors and real
bubblewrap sandboxes, driven over HTTP (urllib / http.client) and through the
kiln CLI.  Standard library only; run with

    /usr/bin/python3 -m unittest discover -s tests/e2e -v

The binaries are taken from $KILN_BIN_DIR (default <repo>/build/cmd) and copied
into the run's temp dir ($KILN_E2E_TMPDIR, default /var/tmp) first.  Every run
starts its own kilnd on 127.0.0.1:0 in a fresh temporary data directory and
kills everything it started (kilnd, supervisors, sandboxes, cgroups) at the end.

Tests are numbered because unittest runs them in name order and the crash test
(test_12) restarts kilnd for the tests after it.
"""

import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("KILN_BIN_DIR", os.path.join(REPO, "build", "cmd"))
BINARIES = ("kilnd", "kiln", "kiln-supervisor", "kiln-entrypoint")
PYTHON = "/usr/bin/python3"

DEADLINE_S = 60  # generous: a deadline, never a timing assertion
TERMINAL = ("Completed", "Failed", "Stopped")


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:8])


def process_start_time(pid):
    """Field 22 of /proc/PID/stat (what kiln-supervisor.pid records), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rfind(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def parse_sse(text):
    """Parses an SSE body into a list of (id:int, event:str, data:dict).
    Comment lines (":...") are ignored, as the API contract requires."""
    frames = []
    for block in text.split("\n\n"):
        fid, ev, data = None, None, []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            if line.startswith("id: "):
                fid = int(line[4:])
            elif line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            frames.append((fid, ev, json.loads("\n".join(data))))
    return frames


class KilndHarness(unittest.TestCase):
    """Starts a private kilnd (binaries snapshotted) for a test class; no tests here."""
    KILND_ARGS = []
    proc = None
    addr = None

    # ------------------------------------------------------------------ setup

    @classmethod
    def setUpClass(cls):
        for b in BINARIES:
            if not os.access(os.path.join(BIN_DIR, b), os.X_OK):
                raise RuntimeError("missing binary %s (set KILN_BIN_DIR)" % os.path.join(BIN_DIR, b))
        # Not under /tmp: every sandbox gets a private tmpfs on /tmp, which would hide the
        # kiln-entrypoint snapshot (kilnd runs it from the host path next to itself).
        base = os.environ.get("KILN_E2E_TMPDIR", "/var/tmp")
        cls.tmp = tempfile.mkdtemp(prefix="kiln-e2e-", dir=base if os.path.isdir(base) else None)
        # Jobs run as an unprivileged user: it must reach the code and inputs here
        # (mkdtemp makes the directory 0700).
        os.chmod(cls.tmp, 0o755)
        cls.snapshot_binaries()
        cls.data = os.path.join(cls.tmp, "data")
        os.makedirs(cls.data)
        cls.log = open(os.path.join(cls.tmp, "kilnd.log"), "ab")
        cls.start_kilnd()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.stop_kilnd(signal.SIGTERM)
        finally:
            cls.kill_leftover_instances()
            cls.unmount_scratch()
            cls.log.close()
            if os.environ.get("KILN_E2E_KEEP"):
                sys.stderr.write("kiln e2e: kept %s\n" % cls.tmp)
            else:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def snapshot_binaries(cls):
        """Copies the four binaries into the temp dir and runs those: a rebuild of
        KILN_BIN_DIR while the suite runs must not swap binaries under running
        instances (kilnd finds kiln-supervisor and kiln-entrypoint next to itself)."""
        cls.bin = os.path.join(cls.tmp, "bin")
        os.makedirs(cls.bin)
        for _ in range(20):
            stamp = lambda: [(os.stat(os.path.join(BIN_DIR, b)).st_mtime_ns, os.stat(os.path.join(BIN_DIR, b)).st_size)
                             for b in BINARIES]
            before = stamp()
            for b in BINARIES:
                shutil.copy2(os.path.join(BIN_DIR, b), os.path.join(cls.bin, b))
            if stamp() == before and time.time() - max(m for m, _ in before) / 1e9 > 1:
                return
            time.sleep(1)  # being rebuilt right now: wait for it to settle
        raise RuntimeError("binaries in %s keep changing" % BIN_DIR)

    @classmethod
    def start_kilnd(cls, listen="127.0.0.1:0"):
        addr_file = os.path.join(cls.data, "kilnd.addr")
        if os.path.exists(addr_file):  # left behind by a kill -9
            os.unlink(addr_file)
        cls.proc = subprocess.Popen(
            [os.path.join(cls.bin, "kilnd"), "--data-dir", cls.data, "--listen", listen] + cls.KILND_ARGS,
            stdin=subprocess.DEVNULL, stdout=cls.log, stderr=cls.log, start_new_session=True)
        deadline = time.monotonic() + DEADLINE_S
        addr = ""
        while time.monotonic() < deadline:
            if cls.proc.poll() is not None:
                raise RuntimeError("kilnd exited with %s; see %s/kilnd.log" % (cls.proc.returncode, cls.tmp))
            try:
                with open(addr_file) as f:
                    addr = f.read().strip()
            except OSError:
                addr = ""
            if addr:
                break
            time.sleep(0.05)
        if not addr:
            raise RuntimeError("kilnd did not write %s" % addr_file)
        cls.addr = addr
        # The bootstrap admin's API token, which kilnd wrote on its first start.
        with open(os.path.join(cls.data, "admin.token")) as f:
            cls.admin_token = f.read().strip()
        st, body = cls.http("GET", "/v1/health")
        if st != 200 or json.loads(body).get("status") != "ok":
            raise RuntimeError("kilnd unhealthy: %s %r" % (st, body))

    @classmethod
    def stop_kilnd(cls, sig):
        p = cls.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)

    @classmethod
    def unmount_scratch(cls):
        """kilnd's scratch pool (a loop-mounted btrfs under the data dir) outlives
        kilnd, as it must for running instances; the test's data dir goes with it."""
        scratch = os.path.join(cls.data, "scratch")
        if os.path.ismount(scratch):
            subprocess.run(["umount", "-l", scratch], check=False)

    @classmethod
    def kill_leftover_instances(cls):
        """Kills whatever instances of THIS data dir still run: their cgroup
        members, then their supervisor (checked against the recorded start time),
        and removes their cgroups."""
        inst_dirs = glob.glob(os.path.join(cls.data, "instances", "*"))
        ids = [os.path.basename(d) for d in inst_dirs]
        cg_dirs = []
        for iid in ids:
            cg_dirs += glob.glob("/sys/fs/cgroup/*/kiln/" + iid) + glob.glob("/sys/fs/cgroup/kiln/" + iid)
        for d in cg_dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except OSError:
                            pass
            except OSError:
                pass
        for d in inst_dirs:
            try:
                with open(os.path.join(d, "supervisor.pid")) as f:
                    pid, start = (int(x) for x in f.read().split()[:2])
            except (OSError, ValueError):
                continue
            if pid > 0 and process_start_time(pid) == start:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for d in cg_dirs:
            while os.path.isdir(d) and time.monotonic() < deadline:
                try:
                    os.rmdir(d)
                except OSError:
                    time.sleep(0.05)

    # ------------------------------------------------------------- HTTP utils

    @classmethod
    def http(cls, method, path, body=None, headers=None, timeout=DEADLINE_S, token=None):
        """Returns (status, body text). Sent with the admin's API token, or with
        TOKEN; token="" sends none."""
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request("http://%s%s" % (cls.addr, path), data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        token = cls.admin_token if token is None else token
        if token:
            req.add_header("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def api(self, method, path, body=None, headers=None, token=None):
        """Returns (status, parsed JSON)."""
        st, text = self.http(method, path, body, headers, token=token)
        try:
            return st, json.loads(text)
        except ValueError:
            self.fail("%s %s -> %s: body is not JSON: %r" % (method, path, st, text[:500]))

    def spec(self, name, command, **kw):
        s = {"name": name, "command": command, "instance": {"type": "local.small", "count": 1},
             "max_runtime_seconds": 300, "stop_grace_seconds": 5, "tags": {"suite": "e2e"}}
        s.update(kw)
        return s

    def submit(self, spec):
        st, job = self.api("POST", "/v1/jobs", spec)
        self.assertEqual(st, 201, "submit %s: %s" % (spec.get("name"), job))
        self.assertTrue(job["id"])
        self.assertEqual(job["name"], spec["name"])
        return job

    def get_job(self, ref):
        st, job = self.api("GET", "/v1/jobs/" + urllib.parse.quote(ref))
        self.assertEqual(st, 200, job)
        return job

    def wait_job(self, job_id, pred, what, timeout=DEADLINE_S):
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            job = self.get_job(job_id)
            if pred(job):
                return job
            time.sleep(0.1)
        self.fail("job %s: not %s within %ss; last state: %s" % (job_id, what, timeout, json.dumps(job)[:3000]))

    def wait_terminal(self, job_id, timeout=DEADLINE_S):
        return self.wait_job(job_id, lambda j: j["status"] in TERMINAL, "terminal", timeout)

    def wait_log(self, job_id, needle, timeout=DEADLINE_S):
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            st, text = self.http("GET", "/v1/jobs/%s/logs" % job_id)
            self.assertEqual(st, 200, text)
            if needle in text:
                return text
            time.sleep(0.1)
        self.fail("job %s: log never contained %r; log: %r" % (job_id, needle, text[-2000:]))

    def logs(self, job_id):
        st, text = self.http("GET", "/v1/jobs/%s/logs" % job_id)
        self.assertEqual(st, 200, text)
        return text

    def events(self, path, headers=None):
        st, text = self.http("GET", path, headers=headers)
        self.assertEqual(st, 200, text)
        return parse_sse(text)

    def instance_dir(self, iid):
        return os.path.join(self.data, "instances", iid)

    def scratch_dir(self, iid):
        """The instance's /opt/ml on the host: its subvolume in the scratch pool
        (until cleanup), or its instance directory's ml/ without disk quotas."""
        sub = os.path.join(self.data, "scratch", iid)
        return sub if os.path.isdir(sub) else os.path.join(self.instance_dir(iid), "ml")

    def sagemaker_client(self, team=None):
        """boto3's SageMaker client for this kilnd: signed with the admin key of the
        credentials file, or with a new key of `team`."""
        import boto3
        import botocore.config
        if team:
            out = self.kiln("keys", "create", "--team", team, "--json")
            self.assertEqual(out.returncode, 0, out.stderr)
            k = json.loads(out.stdout)
            key, secret = k["access_key_id"], k["secret_access_key"]
        else:
            with open(os.path.join(self.data, "credentials")) as f:
                kv = dict(l.split(" = ", 1) for l in f.read().splitlines() if " = " in l)
            key, secret = kv["aws_access_key_id"], kv["aws_secret_access_key"]
        return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret,
                                     region_name="us-east-1").client(
            "sagemaker", endpoint_url="http://" + self.addr,
            config=botocore.config.Config(retries={"max_attempts": 1}))

    def kiln_env(self, token=None):
        """The environment the CLI runs in: the admin's token, or TOKEN."""
        return dict(os.environ, KILN_API_TOKEN=self.admin_token if token is None else token)

    def kiln(self, *args, timeout=120, cwd=None, token=None, input=None):
        """Runs the CLI against this kilnd; returns CompletedProcess (text)."""
        return subprocess.run([os.path.join(self.bin, "kiln"), "--endpoint", self.addr] + list(args), capture_output=True, text=True,
                              timeout=timeout, cwd=cwd or self.tmp, env=self.kiln_env(token), input=input)

    def assertError(self, status, body, want_status, want_field):
        self.assertEqual(status, want_status, body)
        self.assertIn("error", body, body)
        self.assertIsInstance(body["error"].get("message"), str, body)
        self.assertEqual(body["error"].get("field"), want_field, body)

class KilndE2E(KilndHarness):

    # ------------------------------------------------------------------ tests

    def test_01_cli_train_sklearn_example(self):
        spec_path = os.path.join(REPO, "examples", "train-sklearn", "job.yaml")
        # Run from an unrelated directory: relative code_dir/inputs resolve against the spec file.
        r = self.kiln("run", spec_path, "--follow", timeout=300)
        self.assertEqual(r.returncode, 0, "kiln run --follow failed\nstdout:\n%s\nstderr:\n%s" % (r.stdout, r.stderr))
        self.assertIn("==> submitted", r.stderr)
        for st in ("InProgress/Starting", "InProgress/Training", "Completed/Completed"):
            self.assertIn(st, r.stderr, "status change %s not printed:\n%s" % (st, r.stderr))
        self.assertIn("validation_accuracy=", r.stdout, "logs were not streamed by --follow")

        job = self.get_job("train-sklearn")
        self.assertEqual((job["status"], job["secondary_status"]), ("Completed", "Completed"), job)
        self.assertEqual(job["exit_code"], 0)
        art = job["model_artifact"]
        self.assertIsInstance(art, str, job)
        self.assertTrue(art.startswith("file://"), art)
        path = art[len("file://"):]
        self.assertEqual(os.path.realpath(path),
                         os.path.realpath(os.path.join(self.data, "artifacts", "train-sklearn", "output",
                                                       "model.tar.gz")))
        self.assertTrue(os.path.isfile(path) and os.path.getsize(path) > 0, path)
        self.assertIn("model artifact: " + art, r.stderr)

        lm = subprocess.run([PYTHON, os.path.join(REPO, "examples", "train-sklearn", "load_model.py"), art],
                            capture_output=True, text=True, timeout=120)
        self.assertEqual(lm.returncode, 0, "load_model.py: %s %s" % (lm.stdout, lm.stderr))
        self.assertIn("accuracy=", lm.stdout)

        r = self.kiln("jobs", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        row = [l for l in r.stdout.splitlines() if " train-sklearn " in l]
        self.assertEqual(len(row), 1, r.stdout)
        self.assertIn(job["id"], row[0])
        self.assertIn("Completed", row[0])

        r = self.kiln("jobs", "describe", "train-sklearn")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(job["id"], r.stdout)
        self.assertIn("Completed / Completed", r.stdout)
        self.assertIn(art, r.stdout)

        r = self.kiln("jobs", "logs", "train-sklearn")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("validation_accuracy=", r.stdout)

        r = self.kiln("jobs", "events", "train-sklearn")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("JobCreated", r.stdout)
        self.assertIn("InstanceExited", r.stdout)
        self.assertIn("Completed/Completed", r.stdout.strip().splitlines()[-1])

        # --json variants (global flag, given before the subcommand).
        r = self.kiln("--json", "jobs", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        listed = json.loads(r.stdout)
        self.assertIn(job["id"], [j["id"] for j in listed["jobs"]])

        r = self.kiln("--json", "jobs", "describe", "train-sklearn")
        self.assertEqual(r.returncode, 0, r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual((d["id"], d["status"], d["model_artifact"]), (job["id"], "Completed", art))

        r = self.kiln("--json", "jobs", "events", "train-sklearn")
        self.assertEqual(r.returncode, 0, r.stderr)
        evs = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        self.assertGreaterEqual(len(evs), 2)
        self.assertEqual([e["job_seq"] for e in evs], list(range(1, len(evs) + 1)))
        self.assertTrue(all(e["job_id"] == job["id"] for e in evs))
        self.assertEqual(evs[-1]["status"], "Completed")

        r = self.kiln("--json", "jobs", "events", "train-sklearn", "--after", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        tail = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
        self.assertEqual([e["job_seq"] for e in tail], [e["job_seq"] for e in evs if e["job_seq"] > 2])

        # Unknown job: non-zero exit, error on stderr.
        r = self.kiln("jobs", "describe", unique("no-such-job"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("404", r.stderr)

    def test_01b_cli_json_flag_after_subcommand(self):
        # `kiln jobs list --json` (flag after the subcommand) is how a user writes it.
        name = unique("clijson")
        job = self.submit(self.spec(name, ["/bin/true"]))
        self.wait_terminal(job["id"])
        for args in (("jobs", "list", "--json"), ("jobs", "describe", name, "--json"),
                     ("jobs", "events", name, "--json")):
            r = self.kiln(*args)
            self.assertEqual(r.returncode, 0, "kiln %s -> rc %d: %s" % (" ".join(args), r.returncode, r.stderr))
            first = r.stdout.strip().splitlines()[0]
            json.loads(first if args[1] == "events" else r.stdout)

    def test_01c_schedules_run_each_slot_once_with_a_history(self):
        name = unique("sched")[:30]
        spec = os.path.join(self.tmp, name + ".json")
        with open(spec, "w") as f:
            json.dump({"name": "ignored", "command": ["/bin/sh", "-c", "echo run"],
                       "instance": {"type": "local.small"}}, f)
        bad = self.kiln("schedules", "create", name, spec, "--cron", "61 * * * *")
        self.assertEqual(bad.returncode, 2)
        self.assertIn("cron", bad.stderr)
        made = self.kiln("schedules", "create", name, spec, "--cron", "@every 2s", "--json")
        self.assertEqual(made.returncode, 0, made.stderr)
        self.assertEqual(json.loads(made.stdout)["overlap"], "skip")
        deadline = time.monotonic() + DEADLINE_S
        while True:
            st, doc = self.api("GET", "/v1/schedules/" + name)
            self.assertEqual(st, 200, doc)
            started = [h for h in doc["history"] if h["outcome"] == "Started"]
            if len(started) >= 2:
                break
            self.assertLess(time.monotonic(), deadline, doc)
            time.sleep(0.2)
        names = [h["job_name"] for h in started]
        self.assertEqual(len(set(names)), len(names), names)  # one job per slot
        for h in started[:2]:
            self.assertRegex(h["job_name"], "^%s-[0-9]{14}$" % name)
            self.assertEqual(self.wait_terminal(h["job_id"])["status"], "Completed")
        listed = self.kiln("schedules", "list")
        self.assertIn(name, listed.stdout)
        self.assertEqual(self.kiln("schedules", "delete", name).returncode, 0)
        st, _ = self.api("GET", "/v1/schedules/" + name)
        self.assertEqual(st, 404)
        st, jobs = self.api("GET", "/v1/jobs?name=%s-&limit=1000" % name)
        runs = len(jobs["jobs"])
        time.sleep(2.5)  # a slot passes: nothing more runs
        st, jobs = self.api("GET", "/v1/jobs?name=%s-&limit=1000" % name)
        self.assertEqual(len(jobs["jobs"]), runs)

    def test_02_bad_input(self):
        existing = unique("dup")
        dup_job = self.submit(self.spec(existing, ["/bin/true"]))
        st, before = self.api("GET", "/v1/jobs?limit=1000")
        self.assertEqual(st, 200)
        n_before = len(before["jobs"])

        good = lambda **kw: dict(self.spec(unique("bad"), ["/bin/true"]), **kw)
        no_name = good()
        del no_name["name"]
        cases = [
            ("missing name", no_name, "name"),
            ("invalid name", good(name="Bad_Name!"), "name"),
            ("missing command", {"name": unique("bad")}, "command"),
            ("empty command", good(command=[]), "command"),
            ("instance.count 0", good(instance={"type": "local.small", "count": 0}), "instance.count"),
            ("instance.count 65", good(instance={"type": "local.small", "count": 65}), "instance.count"),
            ("instance.count string", good(instance={"type": "local.small", "count": "2"}), "instance.count"),
            ("unknown instance type", good(instance={"type": "ml.nope.huge", "count": 1}), "instance.type"),
            ("unknown instance field", good(instance={"type": "local.small", "gpus": 1}), "instance.gpus"),
            ("relative input path", good(inputs={"train": "data/train.csv"}), "inputs.train"),
            ("input path missing", good(inputs={"train": "/nonexistent/kiln-e2e/" + uuid.uuid4().hex}),
             "inputs.train"),
            ("unknown field", good(colour="red"), "colour"),
            ("max_runtime 0", good(max_runtime_seconds=0), "max_runtime_seconds"),
            ("retry_attempts -1", good(retry_attempts=-1), "retry_attempts"),
            ("bad env key", good(environment={"1BAD": "x"}), "environment.1BAD"),
            ("code_dir not a dir", good(code_dir=os.path.join(REPO, "examples", "train-sklearn", "job.yaml")),
             "code_dir"),
            ("spec is a list", [1, 2], ""),
        ]
        for label, body, field in cases:
            with self.subTest(case=label):
                st, err = self.api("POST", "/v1/jobs", body)
                if field == "":
                    self.assertEqual(st, 400, err)
                    self.assertIn(err["error"].get("field"), ("", None), err)
                else:
                    self.assertError(st, err, 400, field)

        with self.subTest(case="non-JSON body"):
            st, err = self.api("POST", "/v1/jobs", b"name: not-json\n{")
            self.assertEqual(st, 400, err)
            self.assertIn(err["error"].get("field"), ("", None), err)

        with self.subTest(case="duplicate name"):
            st, err = self.api("POST", "/v1/jobs", self.spec(existing, ["/bin/false"]))
            self.assertError(st, err, 409, "name")
            # The original job is untouched.
            self.assertEqual(self.get_job(existing)["id"], dup_job["id"])

        with self.subTest(case="body > 64 MiB"):
            st = self.post_oversized(64 * 1024 * 1024 + 1)
            self.assertEqual(st, 413)

        st, after = self.api("GET", "/v1/jobs?limit=1000")
        self.assertEqual(st, 200)
        self.assertEqual(len(after["jobs"]), n_before, "rejected submissions created jobs: %s" %
                         sorted(j["name"] for j in after["jobs"]))
        self.assertEqual({j["id"] for j in after["jobs"]}, {j["id"] for j in before["jobs"]})
        self.wait_terminal(dup_job["id"])

    def post_oversized(self, size, with_body=False):
        """POSTs a valid-looking JSON job spec of SIZE bytes; returns the HTTP status, or
        (status, parsed JSON body) with WITH_BODY."""
        pad = size - len(b'{"name":"big","command":["/bin/true"],"tags":{"x":""}}')
        body = b'{"name":"big","command":["/bin/true"],"tags":{"x":"' + b"a" * pad + b'"}}'
        assert len(body) == size
        host, port = self.addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=DEADLINE_S)
        try:
            conn.putrequest("POST", "/v1/jobs")
            conn.putheader("Authorization", "Bearer " + self.admin_token)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            try:
                view = memoryview(body)
                for i in range(0, len(body), 1 << 20):
                    conn.send(view[i:i + (1 << 20)])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer and close before reading everything
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            if not with_body:
                return resp.status
            try:
                return resp.status, json.loads(text)
            except ValueError:
                self.fail("oversized POST -> %s: body is not JSON: %r" % (resp.status, text[:500]))
        finally:
            conn.close()

    def test_02a_deep_json_is_refused_and_kilnd_lives(self):
        # 75,000 levels crashed kilnd (a stack overflow in the JSON parser).
        n = 75000
        for path, body in (("/v1/jobs", '{"name":"deep","command":["true"],"hyperparameters":{"a":%s%s}}'),
                           ("/v1/tuning-jobs", '{"name":"deep","objective":%s%s}')):
            st, text = self.http("POST", path, (body % ("[" * n, "]" * n)).encode())
            self.assertEqual(st, 400, text[:300])
            self.assertIn("nested deeper than 64 levels", text)
        st, text = self.http("GET", "/v1/health")
        self.assertEqual(st, 200, text)

    def test_02b_error_body_matches_openapi(self):
        # docs/openapi.yaml: every error body is {"error": {"code", "field", "message"}}; code is
        # a Status code name (spec errors and bad query parameters 400 InvalidArgument, duplicate
        # names 409 AlreadyExists, oversized bodies 413 PayloadTooLarge); field is a dotted path
        # relative to the request body (which is the spec: no "spec." prefix) or the query
        # parameter name, null when no single field is at fault.
        name = unique("oa")
        job = self.submit(self.spec(name, ["/bin/true"]))
        cases = [
            ("spec field", "POST", "/v1/jobs",
             self.spec(unique("oa"), ["/bin/true"], instance={"type": "local.small", "count": 0}),
             400, "InvalidArgument", "instance.count"),
            ("spec list element", "POST", "/v1/jobs", self.spec(unique("oa"), ["/bin/true", 3]),
             400, "InvalidArgument", "command[1]"),
            ("malformed JSON", "POST", "/v1/jobs", b"{not json", 400, "InvalidArgument", None),
            ("duplicate name", "POST", "/v1/jobs", self.spec(name, ["/bin/true"]), 409, "AlreadyExists", "name"),
            ("bad query parameter", "GET", "/v1/jobs?status=Bogus", None, 400, "InvalidArgument", "status"),
            ("unknown job", "GET", "/v1/jobs/" + unique("no-such-job"), None, 404, "NotFound", None),
        ]
        for label, method, path, body, want_st, want_code, want_field in cases:
            with self.subTest(case=label):
                st, err = self.api(method, path, body)
                self.assertEqual(st, want_st, err)
                self.assertEqual((err["error"]["code"], err["error"]["field"]), (want_code, want_field), err)
                self.assertIsInstance(err["error"]["message"], str, err)
        with self.subTest(case="body > 64 MiB"):
            st, err = self.post_oversized(64 * 1024 * 1024 + 1, with_body=True)
            self.assertEqual(st, 413, err)
            self.assertEqual((err["error"]["code"], err["error"]["field"]), ("PayloadTooLarge", None), err)
        self.wait_terminal(job["id"])

    def test_03_command_not_found(self):
        job = self.submit(self.spec(unique("notfound"), ["/nonexistent/cmd"]))
        job = self.wait_terminal(job["id"])
        self.assertEqual(job["status"], "Failed", job)
        self.assertIn("not found", job["failure_reason"], job)
        self.assertIn("/nonexistent/cmd", job["failure_reason"], job)
        self.assertEqual(job["exit_code"], 127, job)
        self.assertIsNone(job["model_artifact"], job)

    def test_04a_failure_file(self):
        reason = "DataError: column 'target' missing (e2e %s)" % uuid.uuid4().hex[:6]
        cmd = "printf '%%s\\n' \"%s\" > /opt/ml/output/failure; echo some-stderr >&2; exit 3" % reason
        job = self.submit(self.spec(unique("failfile"), cmd))
        job = self.wait_terminal(job["id"])
        self.assertEqual((job["status"], job["secondary_status"]), ("Failed", "Failed"), job)
        self.assertEqual(job["failure_reason"], reason, job)
        self.assertEqual(job["exit_code"], 3, job)
        self.assertEqual(job["instances"][0]["exit_code"], 3, job)
        self.assertIsNone(job["model_artifact"], job)

    def test_04b_failure_from_stderr_tail(self):
        cmd = "echo stdout-noise; echo 'first stderr line' >&2; echo 'boom: stderr tail marker' >&2; exit 2"
        job = self.submit(self.spec(unique("stderrtail"), cmd))
        job = self.wait_terminal(job["id"])
        self.assertEqual(job["status"], "Failed", job)
        self.assertEqual(job["exit_code"], 2, job)
        self.assertIn("boom: stderr tail marker", job["failure_reason"], job)
        self.assertNotIn("stdout-noise", job["failure_reason"], job)

    def test_04c_failure_text_that_is_not_utf8(self):
        # Binary stderr, and a failure file cut inside a multi-byte character.
        # The cut character is dropped whole: the reason keeps its 1023 valid bytes.
        for name, cmd, want in (("binstderr", "printf 'bad \\377 bytes\\n' >&2; exit 4", "bad \ufffd bytes"),
                                ("cututf8", "printf '%01023d\\303\\251' 0 > /opt/ml/output/failure; exit 4",
                                 "0" * 1023)):
            job = self.wait_terminal(self.submit(self.spec(unique(name), cmd))["id"])
            self.assertEqual(job["status"], "Failed", job)
            self.assertEqual(job["exit_code"], 4, job)
            self.assertEqual(job["failure_reason"], want, job)

    def test_05_oom(self):
        spec_path = os.path.join(REPO, "examples", "fail-oom", "job.yaml")
        name = unique("fail-oom")
        r = self.kiln("run", spec_path, "--name", name, "--follow", timeout=300)
        self.assertEqual(r.returncode, 1, "kiln run --follow of a failing job must exit 1\n%s\n%s" %
                         (r.stdout[-2000:], r.stderr[-2000:]))
        job = self.get_job(name)
        self.assertEqual(job["spec"]["instance"]["type"], "local.small")
        self.assertEqual(job["status"], "Failed", job)
        self.assertTrue(job["failure_reason"].startswith("OutOfMemory"), job["failure_reason"])
        self.assertTrue(job["instances"][0]["oom"], job["instances"])
        self.assertNotIn("memory limit NOT enforced", self.logs(job["id"]))
        self.assertIn("OutOfMemory", r.stderr)

    def test_06_max_runtime(self):
        job = self.submit(self.spec(unique("maxrt"), ["/bin/sleep", "60"], max_runtime_seconds=2,
                                    stop_grace_seconds=2))
        job = self.wait_terminal(job["id"])
        self.assertEqual((job["status"], job["secondary_status"]), ("Stopped", "MaxRuntimeExceeded"), job)
        self.assertTrue((job.get("failure_reason") or "").startswith("MaxRuntimeExceeded"), job)
        self.assertIsNone(job["model_artifact"], job)

    def test_07a_stop(self):
        job = self.submit(self.spec(unique("stop"), ["/bin/sleep", "60"], stop_grace_seconds=2))
        jid = job["id"]
        self.wait_job(jid, lambda j: j["secondary_status"] == "Training", "Training")
        st, resp = self.api("POST", "/v1/jobs/%s/stop" % jid)
        self.assertEqual(st, 202, resp)
        self.assertEqual(resp["id"], jid)
        # The stop is applied asynchronously: the 202 body may still say InProgress.
        self.assertIn(resp["status"], ("InProgress", "Stopping", "Stopped"), resp)
        job = self.wait_terminal(jid)
        self.assertEqual((job["status"], job["secondary_status"]), ("Stopped", "Stopped"), job)
        self.assertFalse(job.get("failure_reason"), job)
        self.assertIsNone(job["model_artifact"], job)
        # Idempotent: stopping a stopped job is a no-op returning it.
        st, again = self.api("POST", "/v1/jobs/%s/stop" % jid)
        self.assertEqual(st, 202, again)
        self.assertEqual((again["status"], again["secondary_status"]), ("Stopped", "Stopped"), again)
        st, err = self.api("POST", "/v1/jobs/%s/stop" % unique("no-such-job"))
        self.assertEqual(st, 404, err)

    def test_07b_stop_forwards_sigterm(self):
        cmd = ("trap 'echo got-sigterm; echo trapped; exit 0' TERM; "
               "echo ready; while :; do sleep 0.1; done")
        job = self.submit(self.spec(unique("sigterm"), cmd, stop_grace_seconds=30))
        jid = job["id"]
        self.wait_log(jid, "ready")
        st, resp = self.api("POST", "/v1/jobs/%s/stop" % jid)
        self.assertEqual(st, 202, resp)
        job = self.wait_terminal(jid)
        self.assertEqual((job["status"], job["secondary_status"]), ("Stopped", "Stopped"), job)
        self.assertIn("got-sigterm", self.logs(jid), "SIGTERM was not forwarded")
        # The trap ran to completion: a clean exit, not a SIGKILL after the grace period.
        self.assertEqual((job["instances"][0]["exit_code"], job["instances"][0]["signal"]), (0, 0), job["instances"])
        self.assertIn("trapped", self.logs(jid))

    def test_07c_stop_without_request_body(self):
        # `curl -X POST .../stop` sends neither Content-Length nor Transfer-Encoding: per
        # RFC 9112 that is a request without a body, and the stop endpoint takes no body.
        job = self.submit(self.spec(unique("stopraw"), ["/bin/sleep", "60"], stop_grace_seconds=2))
        jid = job["id"]
        host, port = self.addr.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as sk:
            sk.sendall(("POST /v1/jobs/%s/stop HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                        "Connection: close\r\n\r\n" % (jid, self.addr, self.admin_token)).encode())
            raw = b""
            while True:
                chunk = sk.recv(65536)
                if not chunk:
                    break
                raw += chunk
        status_line = raw.split(b"\r\n", 1)[0].decode()
        try:
            self.assertEqual(status_line.split()[1], "202", raw[:500])
            job = self.wait_terminal(jid)
            self.assertEqual(job["status"], "Stopped", job)
        finally:
            self.api("POST", "/v1/jobs/%s/stop" % jid)  # do not leave it running
            self.wait_terminal(jid)

    def test_08a_retries_exhausted(self):
        job = self.submit(self.spec(unique("retryfail"), ["sh", "-c", "echo attempt-ran; exit 1"], retry_attempts=2))
        jid = job["id"]
        job = self.wait_terminal(jid)
        self.assertEqual(job["status"], "Failed", job)
        self.assertEqual(job["attempt"], 3, job)
        self.assertEqual(job["exit_code"], 1, job)
        self.assertEqual(len(job["instances"]), 3, job["instances"])
        self.assertEqual(sorted(i["attempt"] for i in job["instances"]), [1, 2, 3])
        st, inst = self.api("GET", "/v1/instances?job=" + jid)
        self.assertEqual(st, 200, inst)
        self.assertEqual(len(inst["instances"]), 3, inst)
        self.assertEqual(self.logs(jid).count("attempt-ran"), 3)
        self.assertTrue(any(t["status"] == "Restarting" for t in job["transitions"]), job["transitions"])

    def test_08b_retry_then_success(self):
        name = unique("retryok")
        out = os.path.join(self.tmp, "out-" + name)
        os.makedirs(out)
        # The job's output directory <output>/<name>/output is bound writable at the
        # same path inside the sandbox: a counter there survives between attempts.
        counter = os.path.join(out, name, "output", "count")
        cmd = ('n=$(cat %s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %s; echo "attempt $n"; '
               '[ "$n" -ge 2 ] || { echo "first attempt fails" >&2; exit 5; }') % (counter, counter)
        job = self.submit(self.spec(name, cmd, retry_attempts=3, output="file://" + out))
        job = self.wait_terminal(job["id"])
        self.assertEqual((job["status"], job["attempt"]), ("Completed", 2), job)
        self.assertEqual(job["exit_code"], 0, job)
        self.assertFalse(job.get("failure_reason"), job)
        self.assertEqual(len(job["instances"]), 2, job["instances"])
        with open(counter) as f:
            self.assertEqual(f.read().strip(), "2")
        self.assertEqual(job["model_artifact"], "file://" + os.path.join(out, name, "output", "model.tar.gz"))
        # The job left /opt/ml/model empty: an empty archive (written without tar) that tar reads.
        listing = subprocess.run(["tar", "-tzf", os.path.join(out, name, "output", "model.tar.gz")],
                                 capture_output=True, text=True)
        self.assertEqual((listing.returncode, listing.stdout), (0, ""), listing.stderr)

    def test_09_events(self):
        a = self.submit(self.spec(unique("evA"), "echo a"))
        b = self.submit(self.spec(unique("evB"), "echo b"))
        for j in (a, b):
            self.assertEqual(self.wait_terminal(j["id"])["status"], "Completed")

        frames = self.events("/v1/jobs/%s/events?follow=false" % a["id"])
        ids = [f[0] for f in frames]
        self.assertGreaterEqual(len(ids), 3, frames)
        self.assertEqual(ids[0], 1, ids)
        self.assertTrue(all(x < y for x, y in zip(ids, ids[1:])), ids)
        for fid, ev, data in frames:
            self.assertEqual(data["job_seq"], fid)
            self.assertEqual(data["type"], ev)
            self.assertEqual(data["job_id"], a["id"])
        self.assertEqual(frames[0][1], "JobCreated")
        self.assertEqual(frames[-1][2]["status"], "Completed", frames[-1])

        n = ids[1]
        tail = self.events("/v1/jobs/%s/events?follow=false" % a["id"], {"Last-Event-ID": str(n)})
        self.assertEqual([f[0] for f in tail], [x for x in ids if x > n])
        tail = self.events("/v1/jobs/%s/events?follow=false&after=%d" % (a["id"], n))
        self.assertEqual([f[0] for f in tail], [x for x in ids if x > n])
        # Last-Event-ID wins over a stale ?after.
        tail = self.events("/v1/jobs/%s/events?follow=false&after=1" % a["id"], {"Last-Event-ID": str(ids[-2])})
        self.assertEqual([f[0] for f in tail], [ids[-1]])
        # Default follow=true on an ended job ends after the terminal event.
        self.assertEqual([f[0] for f in self.events("/v1/jobs/%s/events" % a["id"])], ids)
        st, err = self.api("GET", "/v1/jobs/%s/events?follow=false" % a["id"], headers={"Last-Event-ID": "abc"})
        self.assertEqual(st, 400, err)
        self.assertEqual(err["error"]["field"], "Last-Event-ID")

        glob_frames = self.events("/v1/events?follow=false")
        seqs = [f[0] for f in glob_frames]
        self.assertTrue(all(x < y for x, y in zip(seqs, seqs[1:])), seqs)
        self.assertTrue(all(f[0] == f[2]["seq"] for f in glob_frames))
        jobs_seen = {f[2]["job_id"] for f in glob_frames}
        self.assertTrue({a["id"], b["id"]} <= jobs_seen, jobs_seen)
        per_a = [f[2]["job_seq"] for f in glob_frames if f[2]["job_id"] == a["id"]]
        self.assertEqual(per_a, ids, "global stream must contain job A's events in job_seq order")
        mid = seqs[len(seqs) // 2]
        later = self.events("/v1/events?follow=false", {"Last-Event-ID": str(mid)})
        self.assertEqual([f[0] for f in later], [s for s in seqs if s > mid])

    def test_10_logs_follow(self):
        name = unique("logf")
        out = os.path.join(self.tmp, "out-" + name)
        os.makedirs(out)
        # Lines 1-3, then wait (up to 30 s) for the test to create GO in the job's
        # /opt/ml, which it does only after it has *received* line-3 through the
        # follow stream; then lines 4-5.
        cmd = ("for i in 1 2 3; do echo line-$i; sleep 0.2; done; n=0; "
               "while [ ! -e /opt/ml/output/data/go ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; "
               "[ -e /opt/ml/output/data/go ] || { echo 'never got go' >&2; exit 1; }; "
               "for i in 4 5; do echo line-$i; sleep 0.2; done")
        job = self.submit(self.spec(name, cmd, output="file://" + out))
        jid = job["id"]
        host, port = self.addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=DEADLINE_S)
        got = []
        try:
            conn.request("GET", "/v1/jobs/%s/logs?follow=true" % jid,
                         headers={"Authorization": "Bearer " + self.admin_token})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            while True:
                line = resp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line.startswith("line-"):
                    got.append(line)
                if line == "line-3":
                    self.assertNotIn(self.get_job(jid)["status"], TERMINAL)
                    open(os.path.join(self.scratch_dir(jid + ".1.0"), "output", "data", "go"), "w").close()
        finally:
            conn.close()
        self.assertEqual(got, ["line-%d" % i for i in range(1, 6)])
        job = self.get_job(jid)
        self.assertEqual(job["status"], "Completed", "the follow stream ended before the job did: %s" % job)

    def test_10b_logs_in_ranges_and_in_bounded_chunks(self):
        # 3 MB of numbered lines: more than one 1 MiB read, sent whole and in ranges.
        cmd = "seq -w 1 300000"
        job = self.wait_terminal(self.submit(self.spec(unique("logrange"), cmd))["id"])
        self.assertEqual(job["status"], "Completed", job)
        want = "".join("%06d\n" % i for i in range(1, 300001))
        st, text = self.http("GET", "/v1/jobs/%s/logs" % job["id"])
        self.assertEqual(st, 200)
        start = text.index("000001\n")
        self.assertEqual(text[start:start + len(want)], want)
        for offset, limit in ((start, 14), (start + 7 * 150000, 7), (start + len(want) - 7, 100), (0, 0)):
            st, part = self.http("GET", "/v1/jobs/%s/logs?offset=%d&limit=%d" % (job["id"], offset, limit))
            self.assertEqual(st, 200)
            self.assertEqual(part, text[offset:offset + limit], (offset, limit))
        st, rest = self.http("GET", "/v1/jobs/%s/logs?offset=%d" % (job["id"], start + len(want) - 7))
        self.assertEqual(rest, text[start + len(want) - 7:])
        for bad in ("offset=-1", "limit=x", "offset=1&follow=true"):
            st, err = self.api("GET", "/v1/jobs/%s/logs?%s" % (job["id"], bad))
            self.assertEqual(st, 400, err)

    def test_11_list_filters_and_pagination(self):
        tok = uuid.uuid4().hex[:8]
        plan = [  # (exit code, tags)
            (0, {"team": "x-" + tok}),
            (1, {"team": "x-" + tok}),
            (0, {"team": "y-" + tok}),
            (0, {"other": "1"}),
            (1, {"team": "x-" + tok}),
        ]
        jobs = []
        for i, (code, tags) in enumerate(plan):
            jobs.append(self.submit(self.spec("lst-%s-%d" % (tok, i), "exit %d" % code, tags=tags)))
        for j in jobs:
            self.wait_terminal(j["id"])
        ids = [j["id"] for j in jobs]

        def q(**params):
            st, body = self.api("GET", "/v1/jobs?" + urllib.parse.urlencode(params))
            self.assertEqual(st, 200, body)
            return body

        body = q(name=tok)
        by_name = [j["id"] for j in body["jobs"]]
        self.assertEqual(sorted(by_name), sorted(ids), "name filter")
        created = [j["created_at"] for j in body["jobs"]]
        self.assertEqual(created, sorted(created, reverse=True), "newest first (jobs created in the same "
                         "millisecond may come in either order)")
        self.assertIsNone(body["next_page_token"])
        self.assertEqual({j["id"] for j in q(name=tok, status="Completed")["jobs"]}, {ids[0], ids[2], ids[3]})
        self.assertEqual({j["id"] for j in q(name=tok, status="Failed")["jobs"]}, {ids[1], ids[4]})
        self.assertEqual({j["id"] for j in q(tag="team=x-" + tok)["jobs"]}, {ids[0], ids[1], ids[4]})
        self.assertEqual({j["id"] for j in q(tag="team=x-" + tok, status="Completed")["jobs"]}, {ids[0]})
        completed = q(status="Completed", limit=1000)["jobs"]
        self.assertTrue(all(j["status"] == "Completed" for j in completed))
        self.assertTrue({ids[0], ids[2], ids[3]} <= {j["id"] for j in completed})
        self.assertEqual(q(name="no-such-" + tok)["jobs"], [])

        pages, token = [], None
        while True:
            params = {"name": tok, "limit": 2}
            if token:
                params["page_token"] = token
            body = q(**params)
            self.assertLessEqual(len(body["jobs"]), 2)
            pages.append([j["id"] for j in body["jobs"]])
            token = body["next_page_token"]
            if not token:
                break
            self.assertLess(len(pages), 10, "pagination does not terminate")
        self.assertEqual([x for p in pages for x in p], by_name, pages)

        everything = [j["id"] for j in q(limit=1000)["jobs"]]
        paged, token = [], None
        for _ in range(1000):
            params = {"limit": 3}
            if token:
                params["page_token"] = token
            body = q(**params)
            paged += [j["id"] for j in body["jobs"]]
            token = body["next_page_token"]
            if not token:
                break
        self.assertEqual(len(paged), len(set(paged)), "a job appeared on two pages")
        self.assertEqual(paged, everything)

        for params, field in (({"status": "Bogus"}, "status"), ({"limit": 0}, "limit"),
                              ({"tag": "novalue"}, "tag")):
            st, err = self.api("GET", "/v1/jobs?" + urllib.parse.urlencode(params))
            self.assertError(st, err, 400, field)

    def test_12_crash_safety(self):
        tok = uuid.uuid4().hex[:6]
        out = os.path.join(self.tmp, "out-crash-" + tok)
        os.makedirs(out)
        # "ok" and "fail" run until the test creates their GO file in their /opt/ml
        # (which it does only once kilnd is dead), so they certainly end while kilnd is down.
        wait_go = ("n=0; while [ ! -e /opt/ml/output/data/go ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); "
                   "done; ")
        specs = {
            "ok": self.spec("crash-ok-" + tok, "echo crash-marker-ok; " + wait_go + "exit 0",
                            output="file://" + out),
            "fail": self.spec("crash-fail-" + tok, "echo crash-marker-fail; " + wait_go + "exit 4",
                              output="file://" + out),
            "long": self.spec("crash-long-" + tok, "echo crash-marker-long; exec sleep 60", stop_grace_seconds=2),
        }
        jobs = {k: self.submit(s) for k, s in specs.items()}
        for k, j in jobs.items():
            self.wait_log(j["id"], "crash-marker-" + k)
        inst = {}
        pids = {}
        for k, j in jobs.items():
            j = self.get_job(j["id"])
            self.assertEqual(j["status"], "InProgress", j)
            self.assertEqual(len(j["instances"]), 1, j)
            inst[k] = j["instances"][0]["id"]
            with open(os.path.join(self.instance_dir(inst[k]), "supervisor.pid")) as f:
                pids[k] = f.read().strip()

        # Crash kilnd while all three run.
        self.stop_kilnd(signal.SIGKILL)
        for k in ("ok", "fail"):
            open(os.path.join(self.scratch_dir(inst[k]), "output", "data", "go"), "w").close()
        deadline = time.monotonic() + DEADLINE_S
        for k in ("ok", "fail"):
            st_file = os.path.join(self.instance_dir(inst[k]), "status.json")
            while not os.path.exists(st_file):
                self.assertLess(time.monotonic(), deadline, "instance %s never wrote %s" % (k, st_file))
                time.sleep(0.1)
        self.assertFalse(os.path.exists(os.path.join(self.instance_dir(inst["long"]), "status.json")))

        old_addr = self.addr
        type(self).start_kilnd()
        self.assertNotEqual(self.addr, "")
        sys.stderr.write("(kilnd restarted: %s -> %s) " % (old_addr, self.addr))

        ok = self.wait_terminal(jobs["ok"]["id"])
        self.assertEqual((ok["status"], ok["exit_code"]), ("Completed", 0), ok)
        self.assertIsInstance(ok["model_artifact"], str, ok)
        fail = self.wait_terminal(jobs["fail"]["id"])
        self.assertEqual((fail["status"], fail["exit_code"]), ("Failed", 4), fail)
        self.assertIn("4", fail["failure_reason"], fail)
        long_job = self.get_job(jobs["long"]["id"])
        self.assertEqual(long_job["status"], "InProgress", long_job)
        st, resp = self.api("POST", "/v1/jobs/%s/stop" % jobs["long"]["id"])
        self.assertEqual(st, 202, resp)
        long_job = self.wait_terminal(jobs["long"]["id"])
        self.assertEqual((long_job["status"], long_job["secondary_status"]), ("Stopped", "Stopped"), long_job)

        for k, j in jobs.items():
            with self.subTest(job=k):
                j = self.get_job(j["id"])
                self.assertEqual([i["id"] for i in j["instances"]], [inst[k]], j["instances"])
                st, il = self.api("GET", "/v1/instances?job=" + j["id"])
                self.assertEqual([i["id"] for i in il["instances"]], [inst[k]], il)
                self.assertEqual(glob.glob(os.path.join(self.data, "instances", j["id"] + ".*")),
                                 [self.instance_dir(inst[k])])
                d = self.instance_dir(inst[k])
                with open(os.path.join(d, "supervisor.pid")) as f:
                    self.assertEqual(f.read().strip(), pids[k], "a second supervisor was started")
                with open(os.path.join(d, "output.log")) as f:
                    log = f.read()
                self.assertEqual(log.count("crash-marker-" + k), 1, "command ran more than once:\n" + log)
                self.assertEqual(self.logs(j["id"]).count("crash-marker-" + k), 1)
                self.assertTrue(os.path.exists(os.path.join(d, "status.json")))

    def test_13_multi_instance(self):
        job = self.submit(self.spec(unique("multi"), ["sh", "-c", "echo host=$SM_CURRENT_HOST hosts=$SM_HOSTS"],
                                    instance={"type": "local.small", "count": 2}))
        job = self.wait_terminal(job["id"])
        self.assertEqual(job["status"], "Completed", job)
        self.assertEqual(len(job["instances"]), 2, job["instances"])
        self.assertEqual(sorted(i["index"] for i in job["instances"]), [0, 1])
        log = self.logs(job["id"])
        for h in ("algo-1", "algo-2"):
            lines = [l for l in log.splitlines() if l.startswith("host=%s " % h)]
            self.assertEqual(len(lines), 1, log)
            self.assertEqual(json.loads(lines[0].split("hosts=", 1)[1]), ["algo-1", "algo-2"])

    def test_14_runtime_contract(self):
        hp = {"lr": 0.01, "epochs": 3, "optimizer": "adam", "flag": True, "layers": [64, 32],
              "sched": {"kind": "cosine", "warmup": {"steps": 100, "ratio": 0.1}, "milestones": [1, 2, None]}}
        in_dir = os.path.join(self.tmp, "contract-input")
        os.makedirs(in_dir, exist_ok=True)
        in_file = os.path.join(in_dir, "train.csv")
        with open(in_file, "w") as f:
            f.write("a,b\n1,2\n")
        check = r'''
import json, os, sys
want_hp = json.loads(%r)
bad = []
def check(what, cond):
    if not cond:
        bad.append(what)
cfg = "/opt/ml/input/config"
with open(cfg + "/hyperparameters.json") as f:
    check("hyperparameters.json", json.load(f) == want_hp)
with open(cfg + "/resourceconfig.json") as f:
    rc = json.load(f)
check("resourceconfig.current_host", rc.get("current_host") == "algo-1")
check("resourceconfig.hosts", rc.get("hosts") == ["algo-1"])
with open(cfg + "/inputdataconfig.json") as f:
    check("inputdataconfig.train", "train" in json.load(f))
e = os.environ
check("SM_MODEL_DIR", e.get("SM_MODEL_DIR") == "/opt/ml/model")
check("SM_OUTPUT_DATA_DIR", e.get("SM_OUTPUT_DATA_DIR") == "/opt/ml/output/data")
ch = e.get("SM_CHANNEL_TRAIN", "")
check("SM_CHANNEL_TRAIN", ch == "/opt/ml/input/data/train")
check("channel lists train.csv", os.path.isdir(ch) and os.listdir(ch) == ["train.csv"])
check("channel content", os.path.isfile(ch + "/train.csv") and open(ch + "/train.csv").read() == "a,b\n1,2\n")
check("SM_HPS", json.loads(e.get("SM_HPS", "null")) == want_hp)
check("SM_HP_LR", float(e.get("SM_HP_LR", "nan")) == 0.01)
check("SM_HP_EPOCHS", e.get("SM_HP_EPOCHS") == "3")
check("SM_HP_OPTIMIZER", e.get("SM_HP_OPTIMIZER") == "adam")
check("SM_HP_LAYERS", json.loads(e.get("SM_HP_LAYERS", "null")) == [64, 32])
check("SM_HP_SCHED", json.loads(e.get("SM_HP_SCHED", "null")) == want_hp["sched"])
check("SM_CURRENT_HOST", e.get("SM_CURRENT_HOST") == "algo-1")
check("SM_HOSTS", json.loads(e.get("SM_HOSTS", "null")) == ["algo-1"])
check("SM_NUM_CPUS", e.get("SM_NUM_CPUS") == "1")
check("SM_NUM_GPUS", e.get("SM_NUM_GPUS") == "0")
check("KILN_RUNTIME", e.get("KILN_RUNTIME") == "kiln-local")
check("KILN_JOB_ID", e.get("KILN_JOB_ID", "").startswith("j-"))
check("KILN_INSTANCE_ID", e.get("KILN_INSTANCE_ID", "").startswith(e.get("KILN_JOB_ID", "?")))
check("spec environment", e.get("E2E_VAR") == "hello world")
check("model dir writable", os.access("/opt/ml/model", os.W_OK))
with open("/opt/ml/model/weights.txt", "w") as f:
    f.write("w=1\n")
print("job-id=" + e.get("KILN_JOB_ID", ""), flush=True)
if bad:
    msg = "ContractError: " + ", ".join(bad)
    print(msg, file=sys.stderr)
    with open("/opt/ml/output/failure", "w") as f:
        f.write(msg)
    sys.exit(1)
print("contract-ok", flush=True)
''' % json.dumps(hp)
        job = self.submit(self.spec(unique("contract"), [PYTHON, "-c", check], hyperparameters=hp,
                                    inputs={"train": in_file}, environment={"E2E_VAR": "hello world"}))
        job = self.wait_terminal(job["id"])
        self.assertEqual(job["status"], "Completed", "contract check failed: %s\nlog:\n%s" %
                         (job.get("failure_reason"), self.logs(job["id"])[-3000:]))
        log = self.logs(job["id"])
        self.assertIn("contract-ok", log)
        self.assertIn("job-id=" + job["id"], log)
        self.assertEqual(job["spec"]["hyperparameters"], hp)
        art = job["model_artifact"]
        self.assertIsInstance(art, str, job)
        import tarfile
        with tarfile.open(art[len("file://"):]) as t:
            names = [n.lstrip("./") for n in t.getnames()]
        self.assertIn("weights.txt", names)

    def test_14b_workdir_without_code_dir(self):
        # docs/runtime-contract.md: /opt/ml/code "is the working directory of the command ...
        # Without code_dir it is an empty directory."
        job = self.submit(self.spec(unique("cwd"), [PYTHON, "-c", "import os; print('cwd=' + os.getcwd()); "
                                                    "print('code=' + repr(os.listdir('/opt/ml/code')))"]))
        job = self.wait_terminal(job["id"])
        self.assertEqual(job["status"], "Completed", job)
        log = self.logs(job["id"])
        self.assertIn("code=[]", log)
        self.assertIn("cwd=/opt/ml/code\n", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
