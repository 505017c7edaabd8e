"""The sandbox as a security boundary, tried as an attacker would: a probe job
attempts every escape we know of (capabilities, remounts, new namespaces,
kernel interfaces, kilnd's API and files, another instance's metrics, the pids
limit) and reports each; every one must be blocked. Other tests plant symlinks
where kilnd or the supervisor reads or creates files on a job's behalf."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from test_kilnd import KilndHarness, unique, DEADLINE_S

PIDS_MAX = 64


def tearDownModule():
    shutil.rmtree(_CONFIG_DIR, ignore_errors=True)

# kilnd's config for this class: a small pids limit, so forking past it is quick.
_CONFIG_DIR = tempfile.mkdtemp(prefix="kiln-sandbox-config-", dir="/var/tmp")
os.chmod(_CONFIG_DIR, 0o755)
_CONFIG = os.path.join(_CONFIG_DIR, "kilnd.yaml")
with open(_CONFIG, "w") as _f:
    _f.write("sandbox:\n  pids_max: %d\n  capacity: {vcpus: 2, memory_mib: 8192}\n" % PIDS_MAX)

# Runs inside the job as its user. Prints one JSON line: {probe: "blocked: ..." or
# "ESCAPED: ..."}. Each probe is independent; an exception in one is a result.
PROBE = r'''
import ctypes, ctypes.util, errno, json, os, signal, socket, subprocess, sys, time
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
data = os.environ["PROBE_DATA_DIR"]
results = {}

def probe(name):
    def wrap(fn):
        try:
            results[name] = fn()
        except Exception as e:  # the attempt itself failing is "blocked"
            results[name] = "blocked: %s: %s" % (type(e).__name__, e)
        return fn
    return wrap

def syscall_blocked(nr, *args):
    r = libc.syscall(nr, *args)
    err = ctypes.get_errno()
    return ("blocked: errno %d" % err) if r == -1 else "ESCAPED: syscall %d returned %d" % (nr, r)

@probe("capabilities")
def _():
    st = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    caps = {k: int(st[k].strip(), 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
    if any(caps.values()):
        return "ESCAPED: %s" % caps
    if st["NoNewPrivs"].strip() != "1" or st["Seccomp"].strip() != "2":
        return "ESCAPED: NoNewPrivs=%s Seccomp=%s" % (st["NoNewPrivs"].strip(), st["Seccomp"].strip())
    return "blocked: no capabilities, no_new_privs, seccomp filter"

@probe("host_uid")
def _():
    # Which host uid this is, the test reads from the owner of model.tar.gz on the host.
    open("/opt/ml/model/owner-probe", "w").write(str(os.getuid()))
    return "blocked: wrote owner-probe as uid %d (inside)" % os.getuid()

@probe("remount_root_rw")
def _():
    r = subprocess.run(["mount", "-o", "remount,bind,rw", "/"], capture_output=True, text=True)
    if r.returncode == 0:
        return "ESCAPED: remounted /"
    return "blocked: rc %d" % r.returncode

@probe("write_host_root")
def _():
    open("/etc/kiln-sandbox-probe", "w").write("x")
    return "ESCAPED: wrote /etc/kiln-sandbox-probe"

@probe("mount_proc_and_sysfs")
def _():
    os.makedirs("/tmp/p", exist_ok=True)
    for fs in ("proc", "sysfs", "tmpfs"):
        if libc.mount(fs.encode(), b"/tmp/p", fs.encode(), 0, None) == 0:
            return "ESCAPED: mounted " + fs
    return "blocked: errno %d" % ctypes.get_errno()

@probe("new_user_namespace")
def _():
    if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
        return "ESCAPED: unshare(CLONE_NEWUSER)"
    return "blocked: errno %d" % ctypes.get_errno()

@probe("new_mount_namespace")
def _():
    if libc.unshare(0x00020000) == 0:  # CLONE_NEWNS
        return "ESCAPED: unshare(CLONE_NEWNS)"
    return "blocked: errno %d" % ctypes.get_errno()

@probe("kernel_interfaces")
def _():
    # x86_64: init_module 175, keyctl 250, perf_event_open 298, bpf 321, io_uring_setup 425, kexec_load 246
    out = []
    for name, nr in (("init_module", 175), ("keyctl", 250), ("perf_event_open", 298), ("bpf", 321),
                     ("io_uring_setup", 425), ("kexec_load", 246)):
        r = syscall_blocked(nr, 0, 0, 0, 0, 0)
        if r.startswith("ESCAPED"):
            return "ESCAPED: " + name
        out.append(name)
    return "blocked: " + ", ".join(out)

@probe("btrfs_subvolume")
def _():
    # A subvolume of its own in /opt/ml would have a qgroup outside the
    # instance's disk quota. The kernel reads the request as 32 bits: try the
    # plain one and one with upper bits set.
    import fcntl
    fd = os.open("/opt/ml", os.O_RDONLY | os.O_DIRECTORY)
    out = []
    for request in (0x5000940e, 0x1_5000940e):  # BTRFS_IOC_SUBVOL_CREATE
        args = bytearray(4096)
        args[8:12] = b"nest"
        try:
            fcntl.ioctl(fd, request, args)
            return "ESCAPED: created subvolume /opt/ml/nest (request %#x)" % request
        except OSError as e:
            out.append("errno %d" % e.errno)
    os.close(fd)
    return "blocked: " + ", ".join(out)

@probe("raw_socket")
def _():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    return "ESCAPED: raw socket"

@probe("host_processes_visible")
def _():
    comms = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                comms.append(open("/proc/%s/comm" % p).read().strip())
            except OSError:
                pass
    bad = [c for c in comms if c in ("kilnd", "kiln-supervisor", "systemd", "init", "sshd")]
    if bad:
        return "ESCAPED: sees %s" % bad
    return "blocked: sees only %d processes of its own" % len(comms)

@probe("ptrace_outside")
def _():
    # Pids 1.. are the sandbox's own; the host's are not in this pid namespace.
    return syscall_blocked(101, 16, int(os.environ["PROBE_KILND_PID"]), 0, 0)  # PTRACE_ATTACH

@probe("kilnd_tcp_api")
def _():
    host, port = os.environ["PROBE_KILND_ADDR"].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=2)
    s.sendall(b"GET /v1/jobs HTTP/1.0\r\n\r\n")
    return "ESCAPED: reached kilnd at %s: %r" % (os.environ["PROBE_KILND_ADDR"], s.recv(64))

@probe("kilnd_api_on_runtime_socket")
def _():
    path = os.environ["KILN_API_URL"][len("unix:"):]
    out = []
    for target in ("/v1/jobs", "/v1/health", "/v1/secrets", "/api/v1/sagemaker"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(("GET %s HTTP/1.0\r\n\r\n" % target).encode())
        status = s.recv(64).split(b" ")[1]
        s.close()
        if status != b"404":
            return "ESCAPED: %s answered %s on the runtime socket" % (target, status)
        out.append(target)
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"GET /v1/runtime HTTP/1.0\r\n\r\n")
    status = s.recv(64).split(b" ")[1]
    if status != b"401":
        return "ESCAPED: /v1/runtime without a token answered %s" % status
    return "blocked: only /v1/runtime, with a token (404 for %s)" % out

@probe("outside_network")
def _():
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    return "ESCAPED: reached 1.1.1.1"

@probe("data_dir_files")
def _():
    iid = os.environ["KILN_INSTANCE_ID"]
    paths = [os.path.join(data, f) for f in ("kiln.db", "master.key", "secret.key", "credentials", "kilnd.lock")]
    paths += [os.path.join(data, "instances", iid, "launch.json"), os.path.join(data, "run")]
    paths += ["/proc/1/root" + p for p in paths]
    for p in paths:
        try:
            if os.path.isdir(p) and os.listdir(p):
                return "ESCAPED: listed %s: %s" % (p, os.listdir(p))
            with open(p, "rb") as f:
                return "ESCAPED: read %s: %r" % (p, f.read(16))
        except OSError:
            pass
    seen = []
    for root, dirs, files in os.walk(data):
        seen += [os.path.join(root, f) for f in files]
    if seen:
        return "ESCAPED: files visible under the data dir: %s" % seen[:5]
    return "blocked: %d paths refused; the data dir is empty here" % len(paths)

@probe("host_home_dirs")
def _():
    for d in ("/root", "/home"):
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        if entries:
            return "ESCAPED: listed %s: %s" % (d, entries[:5])
    return "blocked"

@probe("other_instance_statsd")
def _():
    port = int(os.environ["PROBE_VICTIM_PORT"])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(20):
        s.sendto(b"injected_by_probe:1|g", ("127.0.0.1", port))
    return "blocked: sent (the victim's series must not show it)"

@probe("inherited_descriptors")
def _():
    # Nothing of kilnd's or the supervisor's beyond stdio reaches the job: a
    # directory descriptor from outside would let it openat() its way out.
    import stat
    for pid in ("1", "self"):
        for fd in os.listdir("/proc/%s/fd" % pid):
            path = "/proc/%s/fd/%s" % (pid, fd)
            try:
                target = os.readlink(path)
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and not target.startswith("/proc"):
                return "ESCAPED: pid %s holds directory fd %s -> %s" % (pid, fd, target)
            if int(fd) > 2 and data in target:
                return "ESCAPED: pid %s holds fd %s -> %s" % (pid, fd, target)
    return "blocked: only stdio and the entrypoint's own pipes and sockets"

@probe("pids_limit")
def _():
    limit = int(os.environ["PROBE_PIDS_MAX"])
    kids = []
    try:
        for _ in range(limit * 3):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            kids.append(pid)
    except OSError:
        pass
    n = len(kids)
    for k in kids:
        os.kill(k, signal.SIGKILL)
        os.waitpid(k, 0)
    if n >= limit:
        return "ESCAPED: forked %d processes (limit %d)" % (n, limit)
    return "blocked: fork failed after %d processes (limit %d)" % (n, limit)

print("PROBES " + json.dumps(results), flush=True)
'''


class SandboxE2E(KilndHarness):
    KILND_ARGS = ["--config", _CONFIG, "--statsd-flush-ms", "200"]

    def run_job(self, name, command, **kw):
        job = self.wait_terminal(self.submit(self.spec(unique(name), command, **kw))["id"])
        return job

    def metrics(self, job_id):
        st, body = self.api("GET", "/v1/jobs/%s/metrics" % job_id)
        self.assertEqual(st, 200, body)
        return {s["name"] for s in body["series"]}

    def test_01_every_probe_is_blocked(self):
        # A victim instance with a StatsD port of its own, for the probe to aim at.
        victim = self.submit(self.spec(unique("victim"), [
            "/usr/bin/python3", "-c",
            "from statsd.defaults.env import statsd\nimport time\nstatsd.gauge('victim_own', 1)\ntime.sleep(60)"]))
        port_file = os.path.join(self.data, "instances", victim["id"] + ".1.0", "sock", "statsd.sock.port")
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and not os.path.exists(port_file):
            time.sleep(0.05)
        with open(port_file) as f:
            victim_port = f.read().strip()
        env = {"PROBE_DATA_DIR": self.data, "PROBE_KILND_ADDR": self.addr, "PROBE_VICTIM_PORT": victim_port,
               "PROBE_KILND_PID": str(self.proc.pid), "PROBE_PIDS_MAX": str(PIDS_MAX)}
        job = self.run_job("probe", ["/usr/bin/python3", "-c", PROBE], environment=env)
        log = self.logs(job["id"])
        self.assertEqual(job["status"], "Completed", log[-3000:])
        line = [l for l in log.splitlines() if "PROBES " in l]
        self.assertTrue(line, log[-3000:])
        results = json.loads(line[-1].split("PROBES ", 1)[1])
        expected = {"capabilities", "host_uid", "remount_root_rw", "write_host_root", "mount_proc_and_sysfs",
                    "new_user_namespace", "new_mount_namespace", "kernel_interfaces", "raw_socket",
                    "host_processes_visible", "ptrace_outside", "kilnd_tcp_api", "kilnd_api_on_runtime_socket",
                    "outside_network", "data_dir_files", "host_home_dirs", "other_instance_statsd", "pids_limit",
                    "inherited_descriptors", "btrfs_subvolume"}
        self.assertEqual(set(results), expected)
        escaped = {k: v for k, v in results.items() if not v.startswith("blocked")}
        self.assertEqual(escaped, {}, json.dumps(results, indent=1))
        self.assertFalse(os.path.exists("/etc/kiln-sandbox-probe"))
        # EPERM from the seccomp filter (ENOTTY would mean /opt/ml is not btrfs: not tested).
        self.assertEqual(results["btrfs_subvolume"], "blocked: errno 1, errno 1", results["btrfs_subvolume"])
        owner = os.stat(os.path.join(job["output_dir"], "model.tar.gz")).st_uid
        self.assertNotEqual(owner, 0, "the job's files are owned by host root")
        # The victim's series hold only what it sent itself.
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and "victim_own" not in self.metrics(victim["id"]):
            time.sleep(0.1)
        time.sleep(0.5)  # two flush intervals: an injected point would have landed
        self.assertEqual(self.metrics(victim["id"]), {"victim_own"})
        self.api("POST", "/v1/jobs/%s/stop" % victim["id"])
        self.wait_terminal(victim["id"])

    def test_02_failure_message_and_exit_symlinks_leak_nothing(self):
        secret = open(os.path.join(self.data, "secret.key")).read()
        for target in (os.path.join(self.data, "secret.key"), "/etc/shadow"):
            cmd = ("ln -s %s /opt/ml/output/failure; ln -s %s /opt/ml/output/message; "
                   "mkdir -p /opt/ml/.kiln; rm -f /opt/ml/.kiln/exit.json; ln -s %s /opt/ml/.kiln/exit.json; exit 3"
                   % (target, target, target))
            job = self.run_job("plant", ["/bin/sh", "-c", cmd])
            self.assertEqual(job["status"], "Failed", job)
            reason = job["failure_reason"]
            self.assertNotIn(secret[:16], reason)
            self.assertNotIn("root:", reason)
            self.assertEqual(job["exit_code"], 3, job)  # the planted exit.json was not read either

    def test_03_checkpoint_symlink_does_not_redirect_a_later_job(self):
        base = os.path.join(self.tmp, "ckpt-" + unique("c"))  # kilnd creates it, for the job's user
        # Job A plants a link to /etc among its checkpoints: the supervisor publishes
        # its checkpoints from its volume, and a symlink is not among what it copies.
        job = self.run_job("ckpt-a", ["/bin/sh", "-c", "ln -s /etc /opt/ml/checkpoints/evil; "
                                      "echo kept > /opt/ml/checkpoints/real"], checkpoint_dir=base)
        self.assertEqual(job["status"], "Completed", self.logs(job["id"]))
        with open(os.path.join(base, "real")) as f:
            self.assertEqual(f.read(), "kept\n")
        self.assertFalse(os.path.lexists(os.path.join(base, "evil")))
        # Job A' replaces its checkpoint directory by a link to /etc: nothing of /etc
        # is published, and the job fails saying why.
        other = os.path.join(self.tmp, "ckpt-" + unique("c"))
        job = self.run_job("ckpt-a2", ["/bin/sh", "-c", "rm -rf /opt/ml/checkpoints && ln -s /etc /opt/ml/checkpoints"],
                           checkpoint_dir=other)
        self.assertEqual(job["status"], "Failed", job)
        self.assertIn("OutputPublishFailed", job["failure_reason"])
        self.assertEqual(os.listdir(other), [])
        # Planted some other way (a kilnd without disk quotas binds checkpoints in place).
        os.symlink("/etc", os.path.join(base, "evil"))
        # Job B's checkpoint path goes through that link: refused, nothing created in /etc.
        job = self.run_job("ckpt-b", ["/bin/sh", "-c", "touch /opt/ml/checkpoints/pwned"],
                           checkpoint_dir=os.path.join(base, "evil", "kiln-probe-dir"))
        self.assertEqual(job["status"], "Failed", job)
        self.assertIn("symlink", job["failure_reason"])
        self.assertFalse(os.path.exists("/etc/kiln-probe-dir"))

    def test_04_sharded_channel_does_not_bind_a_planted_symlink(self):
        d = os.path.join(self.tmp, unique("shard"))
        os.makedirs(d)
        for i in range(2):
            with open(os.path.join(d, "part-%d.txt" % i), "w") as f:
                f.write("x")
        os.symlink("/etc/shadow", os.path.join(d, "part-9-link.txt"))
        spec = self.spec(unique("sharded"), ["/bin/sh", "-c",
                                            "ls /opt/ml/input/data/train; cat /opt/ml/input/data/train/* | head -c 100; "
                                            "/usr/bin/python3 -c \"import json; print('IFACE', json.load(open("
                                            "'/opt/ml/input/config/resourceconfig.json'))['network_interface_name'], "
                                            "open('/sys/class/net/eth0/operstate').read().strip())\""],
                         inputs={"train": d}, instance={"type": "local.small", "count": 2})
        spec["sharded_channels"] = ["train"]
        job = self.wait_terminal(self.submit(spec)["id"])
        self.assertEqual(job["status"], "Completed", job)
        log = self.logs(job["id"])
        self.assertIn("part-0.txt", log)
        self.assertIn("part-1.txt", log)
        self.assertNotIn("part-9-link", log)
        self.assertIn("IFACE eth0 up", log)  # peers are reached on the job's link, and the contract says so
        self.assertNotIn("root:", log)

    def test_05_paths_inside_kilnd_data_dir_are_refused(self):
        # Spelled plainly, through the /proc/self/root magic link, or through a
        # symlink outside the data dir: kilnd's files are never bound.
        link = os.path.join(self.tmp, unique("to-instances"))
        os.symlink(os.path.join(self.data, "instances"), link)
        for field, value in (("code_dir", self.data), ("inputs", {"k": os.path.join(self.data, "secret.key")}),
                             ("checkpoint_dir", os.path.join(self.data, "instances")),
                             ("inputs", {"k": "/proc/self/root" + os.path.join(self.data, "instances")}),
                             ("inputs", {"k": link}), ("code_dir", link),
                             ("checkpoint_dir", os.path.join(self.data, "artifacts", ".staged-hyperparameters")),
                             ("checkpoint_dir", os.path.join(self.data, "s3"))):
            job = self.run_job("datadir", ["/bin/cat", "/opt/ml/input/data/k/secret.key"], **{field: value})
            self.assertEqual(job["status"], "Failed", job)
            self.assertRegex(job["failure_reason"], "data dir|magic link", job)

    def test_06_output_outside_writable_roots_is_refused(self):
        job = self.run_job("outside", ["/bin/true"], output="file:///etc/kiln-probe-out")
        self.assertEqual(job["status"], "Failed", job)
        self.assertIn("writable_roots", job["failure_reason"], job)
        self.assertFalse(os.path.exists("/etc/kiln-probe-out"))

    def test_07_jobs_beyond_capacity_wait_pending_then_run(self):
        # The host declares 2 vCPUs: two local.small jobs run, the third waits.
        wait_go = ["/bin/sh", "-c", "while [ ! -e /opt/ml/output/data/go ]; do sleep 0.05; done"]
        a = self.submit(self.spec(unique("cap-a"), wait_go))
        b = self.submit(self.spec(unique("cap-b"), wait_go))
        for j in (a, b):
            self.wait_job(j["id"], lambda x: x["instances"] and x["instances"][0]["state"] == "Running", "running")
        c = self.submit(self.spec(unique("cap-c"), ["/bin/true"]))
        c = self.wait_job(c["id"], lambda x: x["secondary_status"] == "Pending", "pending")
        self.assertIn("Waiting for capacity", c["transitions"][-1]["message"], c)
        self.assertEqual(c["instances"][0]["state"], "Launching", c)
        for j in (a, b):
            open(os.path.join(self.scratch_dir(j["id"] + ".1.0"), "output", "data", "go"), "w").close()
        for j in (a, b, c):
            self.assertEqual(self.wait_terminal(j["id"])["status"], "Completed", j["id"])
        # A job that can never fit is refused with the reason.
        big = self.run_job("cap-big", ["/bin/true"], instance={"type": "local.small", "count": 3})
        self.assertEqual(big["status"], "Failed", big)
        self.assertIn("sandbox.capacity", big["failure_reason"], big)


_NO_QUOTA_CONFIG = os.path.join(_CONFIG_DIR, "no-quota.yaml")
with open(_NO_QUOTA_CONFIG, "w") as _f:
    _f.write("sandbox:\n  disk: {quota: off}\n")


class DiskFullE2E(KilndHarness):
    """Without disk quotas (sandbox.disk.quota: off), kilnd's data dir on a small
    ext4 of its own (64 MiB, 10% reserved for root): a job fills it. Jobs run
    unprivileged, so the root reserve is kilnd's: the job fails as OutOfDisk,
    kilnd records it and restarts on the full disk, and once space is freed the
    next job runs."""
    KILND_ARGS = ["--config", _NO_QUOTA_CONFIG]

    @classmethod
    def start_kilnd(cls, listen="127.0.0.1:0"):
        if not os.path.ismount(cls.data):
            img = os.path.join(cls.tmp, "data.img")
            subprocess.run(["truncate", "-s", "64M", img], check=True)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "10", img], check=True)
            subprocess.run(["mount", "-o", "loop", img, cls.data], check=True)
        super(DiskFullE2E, cls).start_kilnd(listen)

    @classmethod
    def kill_leftover_instances(cls):
        super(DiskFullE2E, cls).kill_leftover_instances()
        if os.path.ismount(cls.data):
            subprocess.run(["umount", cls.data], check=False)

    def test_a_job_that_fills_the_disk_fails_as_out_of_disk_and_kilnd_keeps_working(self):
        fill = self.submit(self.spec(unique("fill"), [
            "/bin/sh", "-c", "dd if=/dev/zero of=/opt/ml/output/data/fill bs=1M count=200 2>&1; exit 1"]))
        fill = self.wait_terminal(fill["id"])
        self.assertEqual(fill["status"], "Failed", fill)
        self.assertTrue(fill["failure_reason"].startswith("OutOfDisk: "), fill["failure_reason"])
        # kilnd restarts on the full disk, with its records intact.
        self.stop_kilnd(signal.SIGTERM)
        self.start_kilnd()
        self.assertEqual(self.get_job(fill["id"])["status"], "Failed")
        # A second filler fails the same way: the disk is still full for jobs.
        again = self.wait_terminal(self.submit(self.spec(unique("fill2"), [
            "/bin/sh", "-c", "dd if=/dev/zero of=/opt/ml/output/data/fill bs=1M count=200 2>&1; exit 1"]))["id"])
        self.assertTrue(again["failure_reason"].startswith("OutOfDisk: "), again["failure_reason"])
        for j in (fill, again):
            os.unlink(os.path.join(self.data, "instances", j["id"] + ".1.0", "ml", "output", "data", "fill"))
        ok = self.wait_terminal(self.submit(self.spec(unique("after"), [
            "/bin/sh", "-c", "dd if=/dev/zero of=/opt/ml/model/weights bs=1M count=8"]))["id"])
        self.assertEqual(ok["status"], "Completed", ok)


_QUOTA_CONFIG = os.path.join(_CONFIG_DIR, "quota.yaml")
with open(_QUOTA_CONFIG, "w") as _f:
    _f.write("sandbox:\n  disk: {quota: required, pool_gib: 8, default_volume_gb: 2}\n  log_max_mib: 1\n")

FILL = "head -c 1500000000 /dev/zero > /opt/ml/model/big; echo head-rc=$?; exit 1"


class DiskQuotaE2E(KilndHarness):
    """Disk quotas (sandbox.disk.quota: required): each instance's /opt/ml is a
    subvolume of kilnd's btrfs scratch pool, limited to its volume_gb. A job that
    writes past it gets EDQUOT and fails as OutOfDisk; a neighbour writing at the
    same time and the next job are not affected; the volume goes at cleanup."""
    KILND_ARGS = ["--config", _QUOTA_CONFIG]

    def test_a_job_over_its_volume_fails_as_out_of_disk_and_others_run(self):
        self.assertTrue(os.path.ismount(os.path.join(self.data, "scratch")))
        fill = self.submit(self.spec(unique("over"), ["/bin/sh", "-c", FILL],
                                     instance={"type": "local.small", "count": 1, "volume_gb": 1}))
        # The default volume (2 GB here) holds what the neighbour writes: 1.2 GB.
        neighbour = self.submit(self.spec(unique("neighbour"), [
            "/bin/sh", "-c", "head -c 1200000000 /dev/zero > /opt/ml/model/big && rm /opt/ml/model/big"]))
        fill = self.wait_terminal(fill["id"])
        self.assertEqual(fill["status"], "Failed", fill)
        self.assertTrue(fill["failure_reason"].startswith("OutOfDisk: the instance used all of its volume: 1.0 of 1.0 GB"),
                        fill["failure_reason"])
        log = self.logs(fill["id"])
        self.assertIn("Disk quota exceeded", log)
        self.assertIn("head-rc=1", log)
        neighbour = self.wait_terminal(neighbour["id"])
        self.assertEqual(neighbour["status"], "Completed", (neighbour, self.logs(neighbour["id"])[-2000:]))
        # The volume goes with the instance; kilnd and the next job are fine.
        gone = os.path.join(self.data, "scratch", fill["id"] + ".1.0")
        deadline = time.monotonic() + DEADLINE_S
        while os.path.exists(gone) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(os.path.exists(gone), "the volume of an ended instance is left")
        after = self.wait_terminal(self.submit(self.spec(unique("after"), [
            "/bin/sh", "-c", "head -c 100000000 /dev/zero > /opt/ml/model/weights"]))["id"])
        self.assertEqual(after["status"], "Completed", after)

    def test_output_past_the_log_cap_is_dropped_and_the_job_runs_on(self):
        # The log lies in kilnd's data dir, outside the volume's quota: without a cap
        # a job could fill kilnd's disk through its stdout (sandbox.log_max_mib: 1).
        job = self.submit(self.spec(unique("loud"), ["/bin/sh", "-c",
                                    "yes 0123456789abcdef0123456789abcdef | head -c 50000000; echo done >&2; "
                                    "echo finished > /opt/ml/model/marker"]))
        job = self.wait_terminal(job["id"])
        self.assertEqual(job["status"], "Completed", job)
        log_file = os.path.join(self.instance_dir(job["id"] + ".1.0"), "output.log")
        size = os.path.getsize(log_file)
        self.assertGreaterEqual(size, 1 << 20)
        self.assertLess(size, (1 << 20) + 4096)
        log = self.logs(job["id"])
        self.assertIn("reached its cap of 1048576 bytes (sandbox.log_max_mib)", log)
        self.assertNotIn("done", log[-500:])  # after the cap: dropped

    def test_volume_gb_out_of_range_is_refused(self):
        for bad in (0, 16385, "1"):
            st, err = self.api("POST", "/v1/jobs", self.spec(unique("badvol"), ["true"],
                                                             instance={"type": "local.small", "volume_gb": bad}))
            self.assertEqual(st, 400, err)
            self.assertEqual(err["error"]["field"], "instance.volume_gb", err)


_TEAMS_CONFIG = os.path.join(_CONFIG_DIR, "teams.yaml")
with open(_TEAMS_CONFIG, "w") as _f:
    _f.write("sandbox:\n  teams:\n"
             "    default: {buckets: [default-data]}\n"
             "    risk: {buckets: [risk-data]}\n"
             "    ml: {buckets: [ml-data], read_buckets: [shared-datasets]}\n")


class TeamsE2E(KilndHarness):
    """sandbox.teams: one team's job cannot read or write another team's bucket
    (S3-style, under the data dir's s3/), may read but not write a shared one."""
    KILND_ARGS = ["--config", _TEAMS_CONFIG]

    def bucket(self, name):
        d = os.path.join(self.data, "s3", name)
        os.makedirs(d, exist_ok=True)
        return d

    def test_cross_team_reads_and_writes_are_refused(self):
        risk, ml, shared = self.bucket("risk-data"), self.bucket("ml-data"), self.bucket("shared-datasets")
        with open(os.path.join(risk, "model.tar.gz"), "w") as f:
            f.write("risk's model")
        with open(os.path.join(shared, "iris.csv"), "w") as f:
            f.write("5.1,3.5\n")
        cases = [
            ("reads another team's bucket", {"inputs": {"train": risk}}, "inputs.train", "is not in team ml's data"),
            ("writes another team's bucket", {"checkpoint_dir": os.path.join(risk, "ckpt")}, "checkpoint_dir",
             "is not writable by team ml"),
            ("outputs into another team's bucket", {"output": "file://" + risk}, "output", "is not writable by team ml"),
            ("writes a shared bucket", {"checkpoint_dir": os.path.join(shared, "ckpt")}, "checkpoint_dir",
             "is not writable by team ml"),
        ]
        for what, extra, _field, reason in cases:
            job = self.wait_terminal(self.submit(self.spec(unique("xteam"), [
                "/bin/sh", "-c", "cat /opt/ml/input/data/train/model.tar.gz; echo pwned > /opt/ml/checkpoints/x"],
                team="ml", **extra))["id"])
            self.assertEqual(job["status"], "Failed", what)
            self.assertIn(reason, job["failure_reason"], what)
        with open(os.path.join(risk, "model.tar.gz")) as f:
            self.assertEqual(f.read(), "risk's model")
        self.assertFalse(os.path.exists(os.path.join(risk, "ckpt")))
        # Its own bucket and the shared one (read only) work.
        job = self.wait_terminal(self.submit(self.spec(unique("ownteam"), [
            "/bin/sh", "-c", "cat /opt/ml/input/data/shared/iris.csv && echo ok > /opt/ml/checkpoints/mine"],
            team="ml", inputs={"shared": shared}, checkpoint_dir=os.path.join(ml, "ckpt")))["id"])
        self.assertEqual(job["status"], "Completed", self.logs(job["id"]))
        self.assertIn("5.1,3.5", self.logs(job["id"]))
        with open(os.path.join(ml, "ckpt", "mine")) as f:
            self.assertEqual(f.read(), "ok\n")
        # A team the host has no namespace for runs nothing.
        job = self.wait_terminal(self.submit(self.spec(unique("noteam"), ["/bin/true"], team="intruders"))["id"])
        self.assertEqual(job["status"], "Failed", job)
        self.assertIn("has no data namespace", job["failure_reason"])

    def test_a_team_key_on_the_sagemaker_api_reaches_only_its_teams_buckets(self):
        risk, ml = self.bucket("risk-data"), self.bucket("ml-data")
        os.makedirs(os.path.join(risk, "train"), exist_ok=True)
        os.makedirs(os.path.join(ml, "train"), exist_ok=True)
        with open(os.path.join(risk, "train", "secret.csv"), "w") as f:
            f.write("risk's data")
        with open(os.path.join(ml, "train", "iris.csv"), "w") as f:
            f.write("5.1,3.5")
        sm = self.sagemaker_client(team="ml")

        def train(name, data, output):
            sm.create_training_job(
                TrainingJobName=name, RoleArn="arn:aws:iam::111122223333:role/kiln",
                AlgorithmSpecification={"TrainingImage": "host", "TrainingInputMode": "File",
                                        "ContainerEntrypoint": ["/bin/sh", "-c", "cat /opt/ml/input/data/train/*"]},
                InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": data}}}],
                OutputDataConfig={"S3OutputPath": output},
                ResourceConfig={"InstanceType": "local.small", "InstanceCount": 1, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 60})
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                d = sm.describe_training_job(TrainingJobName=name)
                if d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
                    return d
                time.sleep(0.2)
            self.fail("training job %s never ended" % name)

        reads = train(unique("smxread"), "s3://risk-data/train", "s3://ml-data/out")
        self.assertEqual(reads["TrainingJobStatus"], "Failed", reads)
        self.assertIn("is not in team ml's data", reads["FailureReason"])
        writes = train(unique("smxwrite"), "s3://ml-data/train", "s3://risk-data/out")
        self.assertEqual(writes["TrainingJobStatus"], "Failed", writes)
        self.assertIn("is not writable by team ml", writes["FailureReason"])
        self.assertFalse(os.path.exists(os.path.join(risk, "out")))
        own = train(unique("smown"), "s3://ml-data/train", "s3://ml-data/out")
        self.assertEqual(own["TrainingJobStatus"], "Completed", own)
        self.assertTrue(own["ModelArtifacts"]["S3ModelArtifacts"].startswith("s3://ml-data/out/"), own)



_EGRESS_CONFIG = os.path.join(_CONFIG_DIR, "egress.yaml")
with open(_EGRESS_CONFIG, "w") as _f:
    _f.write("sandbox:\n  egress: {teams: [web], instance_types: [local.medium], subnet: 172.30.0.0/16}\n")

OUTSIDE_NS = "kiln-e2e-outside"
OUTSIDE_ADDR = "198.51.100.2"  # TEST-NET-2: "another network", reached through the host
OUTSIDE_PORT = 18080

# A TCP server in the outside namespace: answers each connection with the
# address it came from.
OUTSIDE_SERVER = r"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", %d))
s.listen(16)
while True:
    c, peer = s.accept()
    c.sendall(("peer=%%s\n" %% peer[0]).encode())
    c.close()
""" % OUTSIDE_PORT

# Run inside a job: tries each target (host:port) and prints one JSON line.
EGRESS_PROBE = r"""
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        c = socket.create_connection((host, int(port)), timeout=2)
        out[target] = "connected: " + c.recv(100).decode().strip()
        c.close()
    except Exception as e:
        out[target] = "blocked: %s" % e
print("EGRESS " + json.dumps(out), flush=True)
"""


def _ip(*args, ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["ip"] + list(args)
    subprocess.run(cmd, check=True)


class EgressE2E(KilndHarness):
    """sandbox.egress: instances of the listed teams or instance types reach
    other networks (NAT through the host); others do not; none reaches the host
    itself, a link-local address (cloud metadata) or another instance. "Other
    networks" is a network namespace routed through the host."""
    KILND_ARGS = ["--config", _EGRESS_CONFIG]
    server = None
    forward_before = None

    @classmethod
    def setUpClass(cls):
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            cls.forward_before = f.read().strip()
        subprocess.run(["ip", "netns", "del", OUTSIDE_NS], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", "kvoutside"], check=False, stderr=subprocess.DEVNULL)
        _ip("netns", "add", OUTSIDE_NS)
        _ip("link", "add", "kvoutside", "type", "veth", "peer", "name", "kvinside", "netns", OUTSIDE_NS)
        _ip("addr", "add", "198.51.100.1/24", "dev", "kvoutside")
        _ip("link", "set", "kvoutside", "up")
        _ip("addr", "add", OUTSIDE_ADDR + "/24", "dev", "kvinside", ns=OUTSIDE_NS)
        _ip("link", "set", "kvinside", "up", ns=OUTSIDE_NS)
        _ip("link", "set", "lo", "up", ns=OUTSIDE_NS)
        _ip("route", "add", "default", "via", "198.51.100.1", ns=OUTSIDE_NS)
        cls.server = subprocess.Popen(["ip", "netns", "exec", OUTSIDE_NS, "/usr/bin/python3", "-c", OUTSIDE_SERVER])
        super(EgressE2E, cls).setUpClass()

    @classmethod
    def start_kilnd(cls, listen="0.0.0.0:0"):  # on every host address: none may be reachable from a job
        super(EgressE2E, cls).start_kilnd("0.0.0.0:0")

    @classmethod
    def tearDownClass(cls):
        try:
            super(EgressE2E, cls).tearDownClass()
        finally:
            if cls.server:
                cls.server.kill()
                cls.server.wait()
            subprocess.run(["ip", "netns", "del", OUTSIDE_NS], check=False)
            subprocess.run(["ip", "link", "del", "kvoutside"], check=False, stderr=subprocess.DEVNULL)
            subprocess.run(["nft", "delete", "table", "ip", "kiln_egress"], check=False)
            subprocess.run(["ip", "link", "del", "kegress"], check=False, stderr=subprocess.DEVNULL)
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write(cls.forward_before)

    def probe(self, name, targets, **kw):
        job = self.wait_terminal(self.submit(self.spec(
            unique(name), ["/usr/bin/python3", "-c", EGRESS_PROBE] + targets, **kw))["id"])
        log = self.logs(job["id"])
        self.assertEqual(job["status"], "Completed", log[-2000:])
        return json.loads([l for l in log.splitlines() if l.startswith("EGRESS ")][-1][len("EGRESS "):])

    def host_targets(self):
        """kilnd's TCP port on every IPv4 address of the host, the egress gateway's included."""
        port = self.addr.rsplit(":", 1)[1]
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
        addrs = {line.split()[3].split("/")[0] for line in out.splitlines()}
        return ["%s:%s" % (a, port) for a in sorted(addrs)]

    def test_listed_team_reaches_other_networks_but_not_the_host(self):
        outside = "%s:%d" % (OUTSIDE_ADDR, OUTSIDE_PORT)
        hosts = self.host_targets()
        self.assertIn("172.30.0.1:" + self.addr.rsplit(":", 1)[1], hosts)
        got = self.probe("egress", [outside, "169.254.169.254:80"] + hosts, team="web")
        # Masqueraded: the other network sees the host's address on it.
        self.assertEqual(got[outside], "connected: peer=198.51.100.1", got)
        leaked = {t: r for t, r in got.items() if t != outside and not r.startswith("blocked")}
        self.assertEqual(leaked, {}, got)

    def test_listed_instance_type_reaches_other_networks(self):
        outside = "%s:%d" % (OUTSIDE_ADDR, OUTSIDE_PORT)
        got = self.probe("egresstype", [outside], instance={"type": "local.medium", "count": 1})
        self.assertEqual(got[outside], "connected: peer=198.51.100.1", got)

    def test_other_teams_have_no_outbound_access(self):
        outside = "%s:%d" % (OUTSIDE_ADDR, OUTSIDE_PORT)
        got = self.probe("noegress", [outside], team="default")
        self.assertTrue(got[outside].startswith("blocked"), got)

    def test_sagemaker_network_isolation_takes_outbound_access_away(self):
        sm = self.sagemaker_client()
        outside = "%s:%d" % (OUTSIDE_ADDR, OUTSIDE_PORT)
        # The outcome travels in FailureReason: the probe fails on purpose.
        probe = ("import socket\n"
                 "try:\n    c = socket.create_connection(('%s', %d), timeout=2); r = 'connected'\n"
                 "except Exception as e:\n    r = 'blocked: %%s' %% e\n"
                 "open('/opt/ml/output/failure', 'w').write('PROBE ' + r)\nraise SystemExit(1)\n"
                 % (OUTSIDE_ADDR, OUTSIDE_PORT))
        outcome = {}
        for isolation in (False, True):
            name = unique("smisolation")
            sm.create_training_job(
                TrainingJobName=name, RoleArn="arn:aws:iam::111122223333:role/kiln",
                AlgorithmSpecification={"TrainingImage": "host", "TrainingInputMode": "File",
                                        "ContainerEntrypoint": ["/usr/bin/python3", "-c", probe]},
                OutputDataConfig={"S3OutputPath": "s3://models/out"},
                ResourceConfig={"InstanceType": "local.medium", "InstanceCount": 1, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 60}, EnableNetworkIsolation=isolation)
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                d = sm.describe_training_job(TrainingJobName=name)
                if d["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
                    break
                time.sleep(0.2)
            outcome[isolation] = d.get("FailureReason", "")
        self.assertIn("PROBE connected", outcome[False], outside)
        self.assertIn("PROBE blocked", outcome[True], outside)

    def test_instances_with_outbound_access_do_not_reach_each_other(self):
        listener = self.submit(self.spec(unique("egresslisten"), ["/usr/bin/python3", "-c", (
            "import socket, subprocess\n"
            "addr = subprocess.run(['ip', '-4', '-o', 'addr', 'show', 'eth1'], capture_output=True, text=True)"
            ".stdout.split()[3].split('/')[0]\n"
            "s = socket.socket(); s.bind(('0.0.0.0', 9000)); s.listen(4)\n"
            "print('LISTENING ' + addr, flush=True)\n"
            "s.settimeout(30)\n"
            "try:\n    c, _ = s.accept(); c.sendall(b'reached'); c.close()\nexcept OSError:\n    pass\n")],
            team="web"))
        text = self.wait_log(listener["id"], "LISTENING ")
        addr = [l for l in text.splitlines() if l.startswith("LISTENING ")][-1].split()[1]
        self.assertTrue(addr.startswith("172.30."), addr)
        got = self.probe("egresspeer", ["%s:9000" % addr], team="web")
        self.assertTrue(got["%s:9000" % addr].startswith("blocked"), got)
        self.api("POST", "/v1/jobs/%s/stop" % listener["id"])
        self.wait_terminal(listener["id"])


if __name__ == "__main__":
    unittest.main()
