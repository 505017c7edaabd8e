"""Shared by the benchmark scripts: percentiles, the machine line, recording."""
import os
import platform
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = int(open("/proc/meminfo").readline().split()[1]) // (1024 * 1024)
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return "%s, %d cores, %d GiB, Linux %s, commit %s" % (model, os.cpu_count(), mem, platform.release(), rev)


def heading(title):
    return "## %s — %s" % (title, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def report(text, record):
    """Prints a results section and, if `record`, appends it to bench/RESULTS.md."""
    print(text)
    if record:
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(text)
