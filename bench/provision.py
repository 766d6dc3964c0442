#!/usr/bin/python3
"""The measuring side of bench/provision (run by it; Debian's python3,
standard library only).

    provision.py --api URL --token T --cluster C --k8s URL --ca F --cert F
        --key F --pid PID [--tenants 100] [--inflight 8] [--prefix bench-p]
        [--idle 5] [--timeout 600]

1. The Operator (PID) idle: its resident memory and the CPU it uses over
   --idle seconds.
2. A watch on the NovaTenants (kube-apiserver, the admin client
   certificate), from the resourceVersion of a list, so no event is missed.
3. --tenants tenants provisioned, --inflight at a time: POST
   /api/v1/tenants, then the watch event that shows its NovaTenant with
   condition Ready True and status.appliedGeneration at the generation the
   POST answered (sync[].generation on the cluster): the reconciler writes
   that status after every other object is applied.  The latency of each
   is the time from sending the POST to that event.  Meanwhile the
   Operator's resident memory is sampled every 50 ms.
4. The Operator idle again (after --idle seconds to settle).

Prints "key value" lines for bench/provision; exits 1 when a POST fails or
not every tenant is Ready within --timeout seconds.
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import threading
import time
from concurrent import futures
from urllib.parse import urlparse

TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
NOVATENANTS = "/apis/kubenova.io/v1alpha1/novatenants"


# --- the Operator's process -------------------------------------------------

class Proc:
    def __init__(self, pid):
        self.pid = pid

    def rss_kb(self):
        with open("/proc/%d/statm" % self.pid) as f:
            return int(f.read().split()[1]) * PAGE_KB

    def status_kb(self, field):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def cpu_s(self):
        """utime + stime, seconds"""
        with open("/proc/%d/stat" % self.pid) as f:
            # after "(comm)", which may hold spaces: fields 14 and 15
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / TICK


def idle(proc, secs):
    """(RSS kB at the end, CPU seconds used, CPU % of one core)"""
    c0, t0 = proc.cpu_s(), time.monotonic()
    time.sleep(secs)
    c1, t1 = proc.cpu_s(), time.monotonic()
    return proc.status_kb("VmRSS"), c1 - c0, 100.0 * (c1 - c0) / (t1 - t0)


class Sampler(threading.Thread):
    """peak resident memory while running"""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc = proc
        self.peak = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.rss_kb())
            except OSError:
                return
            self.stop.wait(0.05)


# --- kube-apiserver ---------------------------------------------------------

def k8s_conn(args, timeout=30):
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    u = urlparse(args.k8s)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx,
                                       timeout=timeout)


class Watch(threading.Thread):
    """NovaTenant events: for each name, the first time (monotonic) it was
    seen Ready at each appliedGeneration"""

    def __init__(self, args):
        super().__init__(daemon=True)
        self.args = args
        self.ready = {}             # name -> [(time, appliedGeneration)]
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.error = None
        self.stop = False
        c = k8s_conn(args)
        c.request("GET", NOVATENANTS)
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise SystemExit("listing the NovaTenants: HTTP %d %s"
                             % (r.status, body[:200]))
        self.rv = json.loads(body)["metadata"]["resourceVersion"]
        c.close()

    def run(self):
        while not self.stop:
            try:
                self.watch()
            except Exception as e:  # noqa: BLE001 (reported, then again)
                if self.stop:
                    return
                self.error = repr(e)
                time.sleep(0.2)

    def watch(self):
        c = k8s_conn(self.args, timeout=None)
        c.request("GET", "%s?watch=1&resourceVersion=%s"
                  % (NOVATENANTS, self.rv))
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError("watch: HTTP %d" % r.status)
        while not self.stop:
            line = r.readline()
            if not line:
                return              # the server ended it: watch again
            now = time.monotonic()
            ev = json.loads(line)
            obj = ev.get("object", {})
            if ev.get("type") == "ERROR":
                raise RuntimeError("watch: %s" % obj.get("message"))
            self.rv = obj.get("metadata", {}).get("resourceVersion", self.rv)
            st = obj.get("status") or {}
            if not any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in st.get("conditions") or []):
                continue
            name = obj["metadata"]["name"]
            with self.lock:
                self.ready.setdefault(name, []).append(
                    (now, int(st.get("appliedGeneration") or 0)))
                self.changed.notify_all()

    def ready_at(self, name, generation):
        for t, g in self.ready.get(name, []):
            if g >= generation:
                return t
        return None


# --- the Manager ------------------------------------------------------------

def provision(args, watch, name, deadline):
    """POST the tenant, then wait for its NovaTenant Ready at the generation
    the POST answered: (send time, answer time, Ready time), monotonic"""
    if time.monotonic() > deadline:
        raise TimeoutError("tenant %s: not posted, the %.0f s are over"
                           % (name, args.timeout))
    u = urlparse(args.api)
    body = json.dumps({"name": name,
                       "placement": {"clusters": [args.cluster]}})
    t0 = time.monotonic()
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request("POST", "/api/v1/tenants", body,
              {"Authorization": "Bearer " + args.token,
               "Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    t1 = time.monotonic()
    c.close()
    if r.status != 201:
        raise RuntimeError("POST tenant %s: HTTP %d %s"
                           % (name, r.status, data[:300]))
    sync = [s for s in json.loads(data)["sync"]
            if s["cluster"] == args.cluster]
    if not sync:
        raise RuntimeError("tenant %s is not placed on %s"
                           % (name, args.cluster))
    gen = int(sync[0]["generation"])
    with watch.lock:
        while True:
            t2 = watch.ready_at(name, gen)
            left = deadline - time.monotonic()
            if t2 is not None or left <= 0:
                break
            watch.changed.wait(min(left, 1.0))
    if t2 is None:
        raise TimeoutError("tenant %s (generation %d) is not Ready after "
                           "%.0f s; watch: %s" % (name, gen, args.timeout,
                                                  watch.error or "ok"))
    return t0, t1, t2


def pct(sorted_values, p):
    """nearest rank"""
    n = len(sorted_values)
    k = max(1, -(-n * p // 100))
    return sorted_values[int(k) - 1]


def main():
    ap = argparse.ArgumentParser()
    for a in ("api", "token", "cluster", "k8s", "ca", "cert", "key"):
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=8)
    ap.add_argument("--prefix", default="bench-p")
    ap.add_argument("--idle", type=float, default=5)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()

    proc = Proc(args.pid)
    out = []

    rss, cpu, pcpu = idle(proc, args.idle)
    out += ["idle_before_rss_kb %d" % rss,
            "idle_before_cpu_s %.3f" % cpu,
            "idle_before_cpu_pct %.2f" % pcpu]

    watch = Watch(args)
    watch.start()
    sampler = Sampler(proc)
    sampler.peak = proc.rss_kb()
    sampler.start()

    names = ["%s-%03d" % (args.prefix, i) for i in range(1, args.tenants + 1)]
    cpu0, start = proc.cpu_s(), time.monotonic()
    deadline = start + args.timeout
    done = {}
    failed = []
    with futures.ThreadPoolExecutor(max_workers=args.inflight) as pool:
        jobs = {pool.submit(provision, args, watch, n, deadline): n
                for n in names}
        for f in futures.as_completed(jobs):
            try:
                done[jobs[f]] = f.result()
            except Exception as e:  # noqa: BLE001 (reported below)
                failed.append(str(e))
    end = time.monotonic()
    cpu1 = proc.cpu_s()
    sampler.stop.set()
    sampler.join()

    if failed:
        print("%d of %d tenants failed:\n  %s"
              % (len(failed), len(names), "\n  ".join(failed[:5])),
              file=sys.stderr)
        sys.exit(1)

    lat = sorted((done[n][2] - done[n][0]) * 1000 for n in names)
    last = max(done[n][2] for n in names)
    post_ms = sorted((done[n][1] - done[n][0]) * 1000 for n in names)
    wall = last - start
    out += ["tenants %d" % len(names),
            "inflight %d" % args.inflight,
            "latency_p50_ms %.1f" % pct(lat, 50),
            "latency_p99_ms %.1f" % pct(lat, 99),
            "latency_max_ms %.1f" % lat[-1],
            "latency_min_ms %.1f" % lat[0],
            "post_p50_ms %.1f" % pct(post_ms, 50),
            "post_p99_ms %.1f" % pct(post_ms, 99),
            "run_s %.3f" % wall,
            "tenants_per_s %.2f" % (len(names) / wall),
            "run_peak_rss_kb %d" % sampler.peak,
            "run_cpu_s %.3f" % (cpu1 - cpu0),
            "run_cpu_pct %.1f" % (100.0 * (cpu1 - cpu0) / (end - start))]

    watch.stop = True
    time.sleep(args.idle)          # settle
    rss, cpu, pcpu = idle(proc, args.idle)
    out += ["idle_after_rss_kb %d" % rss,
            "idle_after_cpu_s %.3f" % cpu,
            "idle_after_cpu_pct %.2f" % pcpu,
            "hwm_rss_kb %d" % proc.status_kb("VmHWM")]
    print("\n".join(out))


if __name__ == "__main__":
    main()
