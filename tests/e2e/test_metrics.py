"""End-to-end tests of the metrics gateway: a training job using python3-statsd
unchanged, a raw DogStatsD sender on the Unix socket, bad packets, the per-job
metrics API, and a real Prometheus scraping kilnd."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from test_kilnd import KilndHarness, unique, DEADLINE_S


class MetricsE2E(KilndHarness):
    KILND_ARGS = ["--statsd-flush-ms", "200"]

    def metrics(self, job_id):
        st, body = self.http("GET", "/v1/jobs/%s/metrics" % job_id)
        self.assertEqual(st, 200, body)
        out = {}
        for s in json.loads(body)["series"]:
            out[(s["name"], s["stat"])] = (s["tags"], s["points"])
        return out

    def wait_metric(self, job_id, key):
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            m = self.metrics(job_id)
            if key in m:
                return m
            time.sleep(0.1)
        self.fail("metric %s never appeared for %s: %s" % (key, job_id, self.metrics(job_id)))

    def test_python_statsd_client_unchanged(self):
        script = ("from statsd.defaults.env import statsd\n"
                  "import time\n"
                  "statsd.incr('steps', 5)\n"
                  "statsd.gauge('loss', 0.25)\n"
                  # One datagram for the 100 timings, so that no flush of the gateway
                  # splits them (the client's own pipeline, sized by its env setting).
                  "with statsd.pipeline() as pipe:\n"
                  "    for i in range(1, 101): pipe.timing('batch_ms', i)\n"
                  "statsd.set('users', 'a'); statsd.set('users', 'b'); statsd.set('users', 'a')\n"
                  "print('sent')\n")
        spec = self.spec(unique("statsd"), ["/usr/bin/python3", "-c", script], environment={"STATSD_MAXUDPSIZE": "8192"})
        spec["team"] = "risk"
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Completed", job)
        m = self.wait_metric(job["id"], ("batch_ms", "p99"))
        self.assertEqual(m[("steps", "count")][1][-1][1], 5)
        self.assertEqual(m[("loss", "value")][1][-1][1], 0.25)
        self.assertEqual(m[("batch_ms", "p50")][1][-1][1], 50)
        self.assertEqual(m[("batch_ms", "p90")][1][-1][1], 90)
        self.assertEqual(m[("batch_ms", "p99")][1][-1][1], 99)
        self.assertEqual(m[("users", "unique")][1][-1][1], 2)
        self.assertEqual(m[("steps", "count")][0], "job_id:%s,team:risk" % job["id"])

    def test_raw_dogstatsd_on_unix_socket_with_bad_packets(self):
        script = r"""
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ['DD_DOGSTATSD_SOCKET'])
for p in [b'dd.requests:3|c|#env:prod,route:/a', b'truncated:1', b'wrongtype:1|zz', b'bad\xff\xfe:1|c',
          b'x' * 70000, b'dd.requests:4|c|@0.5|#env:prod,route:/a\ndd.latency:7|h|#env:prod']:
    try:
        s.send(p)
    except OSError as e:
        print('send failed', len(p), e)
print('done')
"""
        job = self.wait_terminal(self.submit(self.spec(unique("dogstatsd"), ["/usr/bin/python3", "-c", script]))["id"])
        self.assertEqual(job["status"], "Completed", job)
        m = self.wait_metric(job["id"], ("dd.latency", "p99"))
        tags, points = m[("dd.requests", "count")]
        self.assertEqual(points[-1][1] if len(points) == 1 else sum(p[1] for p in points), 11)  # 3 + 4/0.5
        self.assertEqual(tags, "env:prod,job_id:%s,route:/a,team:default" % job["id"])
        st, prom = self.http("GET", "/metrics")
        self.assertEqual(st, 200)
        for reason in ("no_type", "bad_type", "not_utf8"):
            self.assertIn('kiln_statsd_bad_lines_total{reason="%s"}' % reason, prom)
        # The job has ended: once its instance is released (next flush), its series
        # leave the exposition; they stay in the job's metrics.
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and 'job_id="%s"' % job["id"] in prom:
            time.sleep(0.1)
            st, prom = self.http("GET", "/metrics")
        self.assertNotIn('job_id="%s"' % job["id"], prom)
        self.assertIn(("dd.requests", "count"), self.metrics(job["id"]))

    def test_metric_definitions_from_log_lines(self):
        spec = self.spec(unique("logmetric"), ["/bin/sh", "-c",
                                                "echo epoch=1 loss=0.9; echo epoch=2 loss=0.4; echo 'validation_accuracy=0.93'"])
        spec["metric_definitions"] = [{"name": "validation_accuracy", "regex": "validation_accuracy=([0-9.]+)"},
                                      {"name": "loss", "regex": "loss=([0-9.]+)"}]
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Completed", job)
        m = self.wait_metric(job["id"], ("validation_accuracy", "value"))
        self.assertEqual(m[("validation_accuracy", "value")][1][-1][1], 0.93)
        m = self.wait_metric(job["id"], ("loss", "value"))
        self.assertEqual(m[("loss", "value")][1][-1][1], 0.4)  # the last value in the flush window
        st, body = self.http("POST", "/v1/jobs", body=dict(spec, name=unique("badre"),
                                                           metric_definitions=[{"name": "x", "regex": "x=("}]))
        self.assertEqual(st, 400, body)
        self.assertEqual(json.loads(body)["error"]["field"], "metric_definitions[0].regex")

    def test_metrics_survive_a_kilnd_restart(self):
        script = ("from statsd.defaults.env import statsd\nimport os, time\n"
                  "statsd.gauge('phase', 1)\n"
                  "while not os.path.exists('/opt/ml/output/data/go'): time.sleep(0.05)\n"
                  "statsd.gauge('phase', 2)\n")
        job = self.submit(self.spec(unique("restartmetrics"), ["/usr/bin/python3", "-c", script]))
        self.wait_metric(job["id"], ("phase", "value"))
        self.stop_kilnd(signal.SIGKILL)
        self.start_kilnd()
        with open(os.path.join(self.scratch_dir(job["id"] + ".1.0"), "output", "data", "go"), "w"):
            pass
        job = self.wait_terminal(job["id"])
        self.assertEqual(job["status"], "Completed", job)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            points = self.metrics(job["id"]).get(("phase", "value"), ("", []))[1]
            if points and points[-1][1] == 2:
                break
            time.sleep(0.1)
        self.assertEqual(points[-1][1], 2, points)

    def test_prometheus_scrapes_kilnd(self):
        prom_bin = shutil.which("prometheus")
        if not prom_bin:
            self.fail("prometheus is not installed (scripts/install-deps.sh installs it)")
        # A running job's series are exposed; Prometheus scrapes them while it runs.
        script = "from statsd.defaults.env import statsd\nimport time\nstatsd.gauge('prom_probe', 42)\ntime.sleep(120)\n"
        job = self.submit(self.spec(unique("prom"), ["/usr/bin/python3", "-c", script]))
        self.wait_metric(job["id"], ("prom_probe", "value"))
        d = tempfile.mkdtemp(prefix="kiln-prom-", dir="/var/tmp")
        with socket_port() as port:
            pass
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            # Prometheus authenticates like any client: a viewer token of the job's team.
            token = os.path.join(d, "token")
            out = self.kiln("tokens", "create", "--name", "prometheus", "--team", "default", "--role", "viewer")
            self.assertEqual(out.returncode, 0, out.stderr)
            with open(token, "w") as t:
                t.write(out.stdout.strip())
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: kilnd\n"
                    "    authorization: {credentials_file: %s}\n"
                    "    static_configs: [{targets: ['%s']}]\n" % (token, self.addr))
        log = open(os.path.join(d, "prometheus.log"), "w")
        p = subprocess.Popen([prom_bin, "--config.file=" + os.path.join(d, "prometheus.yml"),
                              "--storage.tsdb.path=" + os.path.join(d, "data"),
                              "--web.listen-address=127.0.0.1:%d" % port],
                             stdout=subprocess.DEVNULL, stderr=log)
        try:
            q = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode(
                {"query": 'kiln_statsd_prom_probe{job_id="%s"}' % job["id"]}))
            deadline = time.monotonic() + 30
            value = None
            while time.monotonic() < deadline and value is None:
                try:
                    res = json.loads(urllib.request.urlopen(q, timeout=5).read())["data"]["result"]
                    if res:
                        value = res[0]["value"][1]
                except OSError:
                    pass
                time.sleep(0.3)
            self.assertEqual(value, "42", "prometheus never scraped the gauge; see %s" % d)
        finally:
            self.http("POST", "/v1/jobs/%s/stop" % job["id"])
            p.terminate()
            p.wait(timeout=10)
            log.close()
            shutil.rmtree(d, ignore_errors=True)


class socket_port:
    """A free TCP port on loopback."""
    def __enter__(self):
        import socket
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *a):
        self.s.close()


if __name__ == "__main__":
    unittest.main()
