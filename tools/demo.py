#!/usr/bin/env python3
"""`make demo`: the rollout story, end to end, against simulated providers.

Scenario 1: a healthy new provider is promoted 10% -> 50% -> 100%.
Scenario 2: the new provider starts failing 5% of its requests once it carries 50%
of the traffic; the rollout controller sees it against the original provider over
the same window and rolls back on its own.
A live view shows the stage, the traffic per variant and the gate verdicts. The
demo stops every process it started and ends with `switchyard report`.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = "configs/demo.yaml"
OUT = "build/demo"
USERS = 48
MODELS = ["gpt-4.1", "gpt-4.1", "claude-sonnet-4.5", "deepseek-v3.2"]


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, argv, log):
        f = open(os.path.join(ROOT, OUT, log), "wb")
        p = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.procs.append((p, f))
        return p

    def stop(self, p):
        for i, (q, f) in enumerate(self.procs):
            if q is p:
                if q.poll() is None:
                    q.send_signal(signal.SIGTERM)
                    try:
                        q.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        q.kill()
                        q.wait()
                f.close()
                del self.procs[i]
                return

    def stop_all(self):
        for p, _ in list(self.procs):
            self.stop(p)


def wait_http(url, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def rollout_status(admin):
    with urllib.request.urlopen(admin + "/admin/rollout", timeout=2) as r:
        return json.loads(r.read())


class Traffic:
    """Simulated users at a steady rate; `failing` makes the new provider fail 5%."""

    def __init__(self, url, rps=300, threads=12):
        self.host, self.port = url.split("//")[1].split(":")
        self.port = int(self.port)
        self.rps, self.threads = rps, threads
        self.stop_flag = threading.Event()
        self.failing = False
        self.sent = 0
        self.client_errors = 0
        self.lock = threading.Lock()
        self.ts = [threading.Thread(target=self.run, args=(k,), daemon=True)
                   for k in range(threads)]

    def start(self):
        for t in self.ts:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.ts:
            t.join(timeout=30)

    def run(self, k):
        rnd = random.Random(k)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        period = self.threads / self.rps
        next_at = time.monotonic()
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            user = f"user-{rnd.randrange(USERS):02d}"
            body = {"model": rnd.choice(MODELS), "stream": i % 2 == 0,
                    "messages": [{"role": "user", "content": "question " * rnd.randint(1, 40)}]}
            headers = {"Content-Type": "application/json", "x-user-id": user}
            if self.failing and rnd.random() < 0.05:
                headers["x-sim-fault"] = "new:status=503"
            try:
                conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and (not body["stream"] or b"[DONE]" in data)
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                ok = False
            with self.lock:
                self.sent += 1
                self.client_errors += 0 if ok else 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()


def fmt(v, spec="{:.1f}", none="-"):
    return none if v is None else spec.format(v)


def render(st, traffic, title, tty):
    chk = st.get("last_check") or {}
    var = chk.get("variants", {})
    gates = chk.get("gates", {})
    lines = [f"== {title}",
             f"stage {st.get('stage', 0) + 1}/{len(st.get('stages', []))}  "
             f"new = {st['percentage']:g}%  phase = {st.get('phase')}  "
             f"requests sent {traffic.sent}, client-visible failures {traffic.client_errors}",
             f"{'':10s}{'requests':>10s}{'errors':>8s}{'err %':>8s}{'p95 ms':>9s}"
             f"{'ttft p95':>10s}{'$/1k tok':>10s}"]
    for name in ("original", "new"):
        v = var.get(name, {})
        er = v.get("error_rate")
        lines.append(f"{name:10s}{v.get('requests', 0):>10d}{v.get('errors', 0):>8d}"
                     f"{fmt(er * 100 if er is not None else None, '{:.2f}'):>8s}"
                     f"{fmt(v.get('latency_p95_ms')):>9s}{fmt(v.get('ttft_p95_ms')):>10s}"
                     f"{fmt(v.get('cost_per_1k_tokens'), '{:.4f}'):>10s}")
    g = "  ".join(f"{k}: {gates[k]['verdict']}" for k in ("error_rate", "latency", "ttft", "cost")
                  if k in gates)
    lines.append(f"gates: {g or '(no check yet)'}   overall: {chk.get('overall', '-')}")
    lines.append(f"last decision: {st.get('reason', '')}")
    if tty:
        sys.stdout.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
    else:
        sys.stdout.write(lines[1] + " | " + lines[-2] + "\n")
    sys.stdout.flush()


def scenario(procs, binary, admin, url, title, fail_at_50, deadline_s, tty):
    for f in ("rollout.state", "rollout-audit.jsonl"):
        p = os.path.join(ROOT, OUT, f)
        if os.path.exists(p):
            os.remove(p)
    router = procs.start([binary, "-c", CONFIG], "switchyard.log")
    if not wait_http(admin + "/healthz") or not wait_http(url + "/healthz"):
        print("demo: switchyard did not start; see build/demo/switchyard.log")
        return None
    traffic = Traffic(url)
    traffic.start()
    t0 = time.monotonic()
    st = rollout_status(admin)
    try:
        while time.monotonic() - t0 < deadline_s:
            st = rollout_status(admin)
            if fail_at_50 and st["percentage"] >= 50:
                traffic.failing = True
            render(st, traffic, title, tty)
            if st["phase"] in ("completed", "rolled_back", "paused"):
                break
            time.sleep(0.5)
    finally:
        traffic.stop()
        procs.stop(router)
    return st, traffic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    os.makedirs(os.path.join(ROOT, OUT), exist_ok=True)
    binary = os.path.join(ROOT, args.build, "switchyard")
    sim = os.path.join(ROOT, args.build, "switchyard-sim")
    log = os.path.join(ROOT, OUT, "access.jsonl")
    if os.path.exists(log):
        os.remove(log)
    admin, url = "http://127.0.0.1:9090", "http://127.0.0.1:8080"
    tty = sys.stdout.isatty()
    procs = Procs()
    started = time.monotonic()
    try:
        procs.start([sim, "--port", "8101", "--name", "original", "--latency-ms", "30",
                     "--ttft-ms", "40", "--chunk-ms", "4", "--quiet"], "sim-original.log")
        procs.start([sim, "--port", "8102", "--name", "new", "--latency-ms", "20",
                     "--ttft-ms", "25", "--chunk-ms", "3", "--quiet"], "sim-new.log")
        if not (wait_http("http://127.0.0.1:8101/_sim/stats") and
                wait_http("http://127.0.0.1:8102/_sim/stats")):
            print("demo: the simulated providers did not start (ports 8101/8102 in use?)")
            return 1
        r1 = scenario(procs, binary, admin, url,
                      "Scenario 1: a healthy new provider is promoted 10 -> 50 -> 100",
                      False, 75, tty)
        if r1 is None:
            return 1
        st1, t1 = r1
        print(f"\nScenario 1 ended: phase {st1['phase']} at {st1['percentage']:g}% "
              f"({t1.sent} requests, {t1.client_errors} failed for the client)\n")
        r2 = scenario(procs, binary, admin, url,
                      "Scenario 2: the new provider fails 5% of requests at 50%",
                      True, 75, tty)
        if r2 is None:
            return 1
        st2, t2 = r2
        print(f"\nScenario 2 ended: phase {st2['phase']} at {st2['percentage']:g}%: "
              f"{st2['reason']}")
        print(f"({t2.sent} requests, {t2.client_errors} failed for the client: fallback "
              f"served the rest)\n")
    finally:
        procs.stop_all()
    print("== switchyard report (build/demo/access.jsonl)")
    subprocess.run([binary, "report", "-c", CONFIG, log], cwd=ROOT)
    took = time.monotonic() - started
    print(f"\ndemo finished in {took:.0f}s; logs, state and audit trail in {OUT}/")
    ok = st1["phase"] == "completed" and st2["phase"] == "rolled_back"
    if not ok:
        print("demo: the scenarios did not end as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
