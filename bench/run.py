#!/usr/bin/env python3
"""switchyard side-by-side benchmark: direct vs nginx vs switchyard, then many streams.

    python3 bench/run.py              make bench          proxy cases + many streams
    python3 bench/run.py --proxy      (proxy cases only)
    python3 bench/run.py --streams    make bench-streams  10,000 slow streams only
    python3 bench/run.py --smoke      make bench-smoke    everything, tiny, with pass/fail
    python3 bench/run.py --profile    make bench-profile  perf record on switchyard under load

Upstream: one switchyard-sim in its fastest mode (no latency, no ttft, no chunk delay,
20 content chunks). Reference proxy: Debian's nginx, one worker, upstream keepalive,
HTTP/1.1 upstream, proxy_buffering off. Under test: switchyard, one worker, the flag at
50% bucketed on x-user-id, metrics on, access log to a file, prices for the model.
Load: wrk with bench/chat.lua (a distinct x-user-id per request). The proxy runs on
one CPU, wrk and the sim on another (taskset); both proxies get the same treatment.
Each case runs direct (wrk at the sim), nginx and switchyard in turn, several rounds
in a rotating order, and the table gives medians over the rounds.

Environment: BUILD (build), BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_WARMUP (1, s per
target and case; 0 = none), BENCH_CASES (comma list of case names, default all),
BENCH_STREAMS (10000), BENCH_STREAM_SECONDS (30), BENCH_SY_NOFILE (65536: the
RLIMIT_NOFILE switchyard is started with in the many-streams run; 0 = inherit),
BENCH_PERF_SECONDS (10), BENCH_QUIET_MAX (120: seconds the whole run may wait, before
a run, for other processes on the machine to go quiet; 0 = never wait).

Only 127.0.0.1 is used. Every process started here is ended by its own PID. Results:
BUILD/bench/run/results.txt (the table) and results.json (every run); --proxy and
--streams write results-proxy.* / results-streams.*, --profile writes profile.txt; the
smoke run works in BUILD/bench/smoke and writes BUILD/bench-smoke-results.txt ("P F").
"""
import argparse
import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD", "build")))
LUA = os.path.join(ROOT, "bench", "chat.lua")
STREAMS_PY = os.path.join(ROOT, "bench", "streams.py")
CHUNKS = 20
MODEL = "gpt-4.1"
CHAT = "/v1/chat/completions"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# name, streaming, connections, what it shows
CASES = [
    ("chat-50", False, 50, "non-streaming, 50 connections"),
    ("stream-50", True, 50, "streaming (20 chunks), 50 connections"),
    ("chat-1", False, 1, "non-streaming, 1 connection (added latency)"),
    ("stream-1", True, 1, "streaming (20 chunks), 1 connection (added latency)"),
    ("chat-500", False, 500, "non-streaming, 500 connections"),
    ("stream-500", True, 500, "streaming (20 chunks), 500 connections"),
]
TARGETS = ["direct", "nginx", "switchyard"]


def env_num(name, default, kind=int):
    v = os.environ.get(name, "")
    try:
        return kind(v) if v != "" else default
    except ValueError:
        sys.exit(f"bench: {name} must be a number, got {v!r}")


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- checks ----

class Checks:
    """Counts pass/fail; every failure is printed with its reason."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.failures = []

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
            log(f"  ok    {what}")
        else:
            self.failed += 1
            self.failures.append(f"{what}: {detail}")
            log(f"  FAIL  {what}: {detail}")
        return ok


# ------------------------------------------------------------- processes ----

def cpu_plan():
    """(proxy CPU, load CPU, note). The load generator and the sim share the second."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return cpus[0], cpus[1], f"proxy on CPU {cpus[0]}; wrk and sim on CPU {cpus[1]}"
    return cpus[0], cpus[0], (f"only one CPU ({cpus[0]}): everything shares it, "
                              "numbers are not comparable with a two-CPU run")


def pinned(cpu, argv):
    if shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + argv
    return argv


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Proc:
    """A child process we own: started here, ended here by its PID."""

    def __init__(self, name, argv, outdir, nofile=None, stdout_pipe=False):
        self.name = name
        self.err_path = os.path.join(outdir, f"{name}.log")
        self.err = open(self.err_path, "wb")

        def pre():
            os.setpgid(0, 0)  # a Ctrl-C on the terminal reaches us only; we end the children
            if nofile:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                want = max(nofile, soft)
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
                except (ValueError, OSError):
                    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE if stdout_pipe else self.err,
                                  stderr=self.err, stdin=subprocess.DEVNULL, preexec_fn=pre)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def read_line(self, timeout):
        end = time.monotonic() + timeout
        buf = b""
        fd = self.p.stdout.fileno()
        while time.monotonic() < end and not buf.endswith(b"\n"):
            r, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            c = os.read(fd, 1)
            if not c:
                break
            buf += c
        return buf.decode(errors="replace")

    def log_text(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, wait=10):
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
                self.p.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self.p.stdout:
            self.p.stdout.close()
        self.err.close()
        return self.p.returncode


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def cpu_seconds(pids, user_only=False):
    """CPU time of the processes: user + system, or user mode alone."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            total += int(fields[11]) + (0 if user_only else int(fields[12]))  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total / CLK_TCK


def mem_kb(pids):
    """(VmRSS, VmHWM) summed over pids, in kB."""
    rss = hwm = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                    elif line.startswith("VmHWM:"):
                        hwm += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return rss, hwm


# ------------------------------------------------------------ the stack ----

def http_req(port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    try:
        conn.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body,
                     headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def chat_body(stream):
    b = {"model": MODEL, "messages": [{"role": "user", "content": "Say twenty words."}]}
    if stream:
        b["stream"] = True
    return b


def make_cert(outdir):
    """A self-signed certificate for 127.0.0.1, for the sim's HTTP/2 (TLS) port."""
    cert, key = os.path.join(outdir, "sim-cert.pem"), os.path.join(outdir, "sim-key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", cert], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench: openssl could not make a certificate: {r.stderr[-500:]}")
    return cert, key


def start_sim(outdir, cpu, name, extra, h2_cert=None):
    """h2_cert: (cert, key) to also serve HTTP/2 on TLS; its port is p.h2_port."""
    h2 = ["--h2-port", "0", "--tls-cert", h2_cert[0], "--tls-key", h2_cert[1]] if h2_cert else []
    argv = pinned(cpu, [os.path.join(BUILD, "switchyard-sim"), "--port", "0", "--name", name,
                        "--quiet"] + h2 + extra)
    p = Proc(name, argv, outdir, stdout_pipe=True)
    line = p.read_line(10)
    m = re.search(r"listening on ([0-9.]+):(\d+)", line)
    if not m:
        p.stop()
        raise SystemExit(f"bench: {name} did not start: {line!r} {p.log_text()[-500:]}")
    p.port = int(m.group(2))
    if h2_cert:
        line = p.read_line(10)
        m = re.search(r" h2 on ([0-9.]+):(\d+)", line)
        if not m:
            p.stop()
            raise SystemExit(f"bench: {name} did not start HTTP/2: {line!r}")
        p.h2_port = int(m.group(2))
    p.pids = lambda: [p.pid]
    return p


NGINX_CONF = """# generated by bench/run.py: nginx as a plain reverse proxy, the reference.
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{
    worker_connections {nofile};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-tmp/body;
    proxy_temp_path {dir}/nginx-tmp/proxy;
    fastcgi_temp_path {dir}/nginx-tmp/fastcgi;
    uwsgi_temp_path {dir}/nginx-tmp/uwsgi;
    scgi_temp_path {dir}/nginx-tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_buffer_size 64k;
    upstream sim {{
        server 127.0.0.1:{sim_port};
        keepalive 1024;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def start_nginx(outdir, cpu, sim_port):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    os.makedirs(os.path.join(outdir, "nginx-tmp"), exist_ok=True)
    conf = os.path.join(outdir, "nginx.conf")
    with open(conf, "w") as f:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = hard if hard != resource.RLIM_INFINITY else 65536
        f.write(NGINX_CONF.format(dir=outdir, port=port, sim_port=sim_port, nofile=nofile))
    argv = pinned(cpu, [nginx, "-e", os.path.join(outdir, "nginx-error.log"), "-c", conf,
                        "-p", outdir + "/", "-g", "daemon off;"])
    p = Proc("nginx", argv, outdir)
    p.port = port
    p.pids = lambda: [p.pid] + children(p.pid)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if not p.alive():
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p
        except OSError:
            time.sleep(0.05)
    err = p.log_text()
    try:
        with open(os.path.join(outdir, "nginx-error.log")) as f:
            err += f.read()
    except OSError:
        pass
    p.stop()
    raise SystemExit(f"bench: nginx did not start:\n{err[-1500:]}")


SY_CONF = """# generated by bench/run.py: switchyard as the benchmark runs it.
listen: "127.0.0.1:0"
workers: 1
admin: {{ listen: "127.0.0.1:0" }}
access_log: {{ path: "{access_log}" }}
providers:
  original:
    name: original
    base_url: "{scheme}://127.0.0.1:{sim_port}/v1"{upstream_extra}
    pricing:
      "{model}": {{ input: 60.00, output: 60.00 }}
  new:
    name: new
    base_url: "{scheme}://127.0.0.1:{sim_port}/v1"{upstream_extra}
    pricing:
      "{model}": {{ input: 8.00, output: 8.00 }}
flags:
  use_new_provider:
    percentage: 50
    sticky: ["header:x-user-id", "body:user", "api_key"]
"""


def start_switchyard(outdir, cpu, sim_port, name="switchyard", nofile=None, ca_file=None):
    """ca_file: the sim's port is its HTTP/2 one, on TLS with that certificate."""
    access_log = os.path.join(outdir, f"{name}-access.jsonl")
    if os.path.exists(access_log):
        os.unlink(access_log)
    conf = os.path.join(outdir, f"{name}.yaml")
    extra = (f'\n    http_version: "2"\n    ca_file: "{ca_file}"' if ca_file else "")
    with open(conf, "w") as f:
        f.write(SY_CONF.format(access_log=access_log, sim_port=sim_port, model=MODEL,
                               scheme="https" if ca_file else "http", upstream_extra=extra))
    argv = pinned(cpu, [os.path.join(BUILD, "switchyard"), "-c", conf])
    p = Proc(name, argv, outdir, nofile=nofile)
    p.access_log = access_log
    p.pids = lambda: [p.pid]
    end = time.monotonic() + 15
    while time.monotonic() < end:
        m = re.search(r"event=listening addr=\S+:(\d+) admin=\S+:(\d+)", p.log_text())
        if m:
            p.port, p.admin_port = int(m.group(1)), int(m.group(2))
            return p
        if not p.alive():
            break
        time.sleep(0.02)
    text = p.log_text()
    p.stop(signal.SIGKILL)
    raise SystemExit(f"bench: switchyard did not start:\n{text[-1500:]}")


# ------------------------------------------------------------ proxy runs ----

def verify(stack, checks):
    """A request through each path before any load: the proxies must really proxy."""
    sim, ngx, sy = stack["sim"], stack["nginx"], stack["switchyard"]
    for name, port in (("direct", sim.port), ("nginx", ngx.port), ("switchyard", sy.port)):
        for stream in (False, True):
            what = f"{name} proxies a {'streaming' if stream else 'non-streaming'} chat completion"
            try:
                st, h, body = http_req(port, "POST", CHAT, chat_body(stream),
                                       {"x-user-id": "verify-1"})
            except OSError as e:
                checks.check(False, what, str(e))
                continue
            text = body.decode(errors="replace")
            ok = st == 200 and h.get("x-sim-provider") == "sim"
            detail = f"status {st}, x-sim-provider={h.get('x-sim-provider')}"
            if name == "switchyard":
                ok = ok and h.get("x-switchyard-provider") in ("original", "new")
                detail += f", x-switchyard-provider={h.get('x-switchyard-provider')}"
            if stream:
                content = text.count('"delta":{"content"')
                ok = ok and text.rstrip().endswith("data: [DONE]") and content == CHUNKS
                detail += f", {content} content events, ends with [DONE]: " \
                          f"{text.rstrip().endswith('data: [DONE]')}"
            else:
                try:
                    ok = ok and json.loads(text)["choices"][0]["message"]["content"] != ""
                except (ValueError, KeyError, IndexError, TypeError):
                    ok = False
                    detail += f", body {text[:120]!r}"
            checks.check(ok, what, detail)
    # The flag at 50% with sticky keys: 200 users split between the two providers,
    # and the same user always lands on the same one.
    seen = {}
    sticky_ok = True
    for i in range(200):
        st, h, _ = http_req(sy.port, "POST", CHAT, chat_body(False), {"x-user-id": f"split-{i}"})
        prov = h.get("x-switchyard-provider")
        seen[prov] = seen.get(prov, 0) + 1
        if i < 20:
            _, h2, _ = http_req(sy.port, "POST", CHAT, chat_body(False),
                                {"x-user-id": f"split-{i}"})
            sticky_ok = sticky_ok and h2.get("x-switchyard-provider") == prov
    share = seen.get("new", 0) / 200
    checks.check(0.3 <= share <= 0.7 and sticky_ok,
                 "switchyard splits sticky users about 50/50 between original and new",
                 f"{seen}, sticky={sticky_ok}")


def run_wrk(cpu, port, conns, secs, stream, outdir, tag):
    url = f"http://127.0.0.1:{port}{CHAT}"
    argv = pinned(cpu, ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "5s",
                        "--latency", "-s", LUA, url, "--", "stream" if stream else "plain"])
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=secs + 30)
        out = r.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + "\n(wrk timed out)"
    with open(os.path.join(outdir, "wrk.log"), "a") as f:
        f.write(f"==== {tag}\n$ {' '.join(argv)}\n{out}\n")
    m = re.search(r"^wrk-json (\{.*\})$", out, re.M)
    if not m:
        return {"failed": out[-400:]}
    w = json.loads(m.group(1))
    w["errors"] = sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_timeout",
                                     "err_status"))
    w["rps"] = w["requests"] / (w["duration_us"] / 1e6) if w["duration_us"] else 0.0
    return w


def machine_ticks():
    """{cpu index: (busy ticks, steal ticks)} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = line.split()
                n = [int(x) for x in v[1:]]
                # user nice system idle iowait irq softirq steal
                out[int(v[0][3:])] = (n[0] + n[1] + n[2] + n[5] + n[6], n[7] if len(n) > 7 else 0)
    return out


class Quiet:
    """Waits, within a total budget, for other tenants' CPU use to drop before a run.

    Between runs our own processes are idle, so the machine's busy time is someone
    else's (a compiler, a fuzzer, another test suite). A run next to a busy neighbour
    measures the neighbour; this keeps most runs clean and says how long it waited.
    """

    def __init__(self, budget_s, threshold_pct=15.0):
        self.budget = budget_s
        self.threshold = threshold_pct
        self.waited = 0.0
        self.gave_up = 0

    def busy_pct(self, sample=0.5):
        k0 = machine_ticks()
        time.sleep(sample)
        k1 = machine_ticks()
        return sum(k1[c][0] - k0[c][0] for c in k1 if c in k0) / CLK_TCK / sample * 100.0

    def wait(self):
        if self.budget <= 0:
            return
        first = True
        while True:
            b = self.busy_pct()
            if b <= self.threshold:
                return
            if self.waited >= self.budget:
                self.gave_up += 1
                return
            if first:
                log(f"   (waiting for the machine to be quiet: {b:.0f}% of a core busy elsewhere)")
                first = False
            time.sleep(1.5)
            self.waited += 2.0


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(stack, target, cpu_load, case, secs, outdir, tag):
    """One wrk run at one target, with the CPU of every process involved.

    cpu_pct / rss: the process under test (the sim itself for `direct`). load_pct: the
    load CPU's busy time (wrk + sim + anything else there). other_pct: busy time on the
    machine that is none of ours (other tenants' work), in % of one core: a run with a
    high value was disturbed.
    """
    _, stream, conns, _ = case
    proc = stack["sim"] if target == "direct" else stack[target]
    pids = proc.pids()
    sim_pids = stack["sim"].pids()
    c0, u0, s0, k0, w0, t0 = (cpu_seconds(pids), cpu_seconds(pids, True),
                              cpu_seconds(sim_pids), machine_ticks(), children_cpu(),
                              time.monotonic())
    w = run_wrk(cpu_load, proc.port, conns, secs, stream, outdir, tag)
    c1, u1, s1, k1, w1, t1 = (cpu_seconds(pids), cpu_seconds(pids, True),
                              cpu_seconds(sim_pids), machine_ticks(), children_cpu(),
                              time.monotonic())
    rss, hwm = mem_kb(pids)
    if "failed" in w:
        return w
    wall = t1 - t0
    w["cpu_pct"] = (c1 - c0) / wall * 100.0
    w["cpu_us_per_req"] = (c1 - c0) * 1e6 / w["requests"] if w["requests"] else 0.0
    # The kernel's share (sockets, epoll) is about the same for any proxy of this shape;
    # user mode is what the proxy's own code and libraries add.
    w["user_us_per_req"] = (u1 - u0) * 1e6 / w["requests"] if w["requests"] else 0.0
    w["rss_kb"], w["hwm_kb"] = rss, hwm
    busy = {c: (k1[c][0] - k0[c][0]) / CLK_TCK for c in k1 if c in k0}
    steal = sum((k1[c][1] - k0[c][1]) / CLK_TCK for c in k1 if c in k0)
    w["load_pct"] = busy.get(cpu_load, 0.0) / wall * 100.0
    ours = (c1 - c0) + (w1 - w0) + (0 if target == "direct" else s1 - s0)
    w["other_pct"] = max(0.0, sum(busy.values()) - ours) / wall * 100.0
    w["steal_pct"] = steal / wall * 100.0
    w["alive"] = proc.alive()
    if target == "switchyard":
        # The access log is appended with O_APPEND: count this run's lines, then empty it
        # so a long benchmark does not fill the disk. Lines are flushed every 100 ms.
        time.sleep(0.25)
        try:
            with open(proc.access_log, "rb") as f:
                data = f.read()
            w["log_lines"] = data.count(b"\n")
            w["log_cost"] = b'"cost_usd":' in data
            os.truncate(proc.access_log, 0)
        except OSError:
            w["log_lines"], w["log_cost"] = 0, False
    return w


def fmt_lat(us):
    if us is None:
        return "-"
    return f"{us:.0f}us" if abs(us) < 1000 else f"{us / 1000:.2f}ms"


def fmt_added(us):
    if us is None:
        return "-"
    s = fmt_lat(abs(us))
    return ("+" if us >= 0 else "-") + s


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    """Medians of one target's rounds in one case."""
    ok = [r for r in runs if "failed" not in r]
    keys = ("rps", "p50", "p99", "cpu_pct", "cpu_us_per_req", "user_us_per_req", "load_pct",
            "other_pct", "steal_pct")
    s = {k: med([r[k] for r in ok]) for k in keys}
    s["other_max"] = max([r["other_pct"] for r in ok], default=None)
    s["rss_mb"] = med([r["rss_kb"] / 1024 for r in ok])
    s["hwm_mb"] = max([r["hwm_kb"] / 1024 for r in ok], default=None)
    s["requests"] = sum(r["requests"] for r in ok)
    s["errors"] = sum(r["errors"] for r in ok)
    kinds = {}
    for r in ok:
        for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"):
            if r[k]:
                kinds[k[4:]] = kinds.get(k[4:], 0) + r[k]
    s["error_kinds"] = kinds
    s["failed_runs"] = len(runs) - len(ok)
    return s


def ratio(a, b):
    return a / b if a is not None and b else None


def round_ratios(runs, key):
    """switchyard/nginx for each round (the two ran in the same round): how far the ratio
    moves between rounds, which the median alone hides."""
    out = []
    for y, n in zip(runs["switchyard"], runs["nginx"]):
        if "failed" not in y and "failed" not in n and n.get(key):
            out.append(f"{y[key] / n[key]:.2f}x")
    return " ".join(out) if out else "-"


def render_case(case, res, secs, rounds, runs=None):
    """One case's table. Medians over the rounds; errors are totals over the rounds."""
    name, _, conns, what = case
    d, n, y = (res[t] for t in TARGETS)

    def num(v, f="{:.0f}"):
        return "-" if v is None else f.format(v)

    def added(s, k):
        return None if None in (s[k], d[k]) else s[k] - d[k]

    lines = [f"{name}: {what}   ({rounds} x {secs} s per target, medians)",
             f"  {'target':<11}{'req/s':>8}{'p50':>9}{'p99':>9}{'+p50':>9}{'+p99':>9}"
             f"{'errors':>7}{'CPU%':>6}{'us/req':>8}{'user':>6}{'RSS MB':>7}{'peak':>6}"
             f"{'load%':>7}{'other%':>7}"]
    for t, s in zip(TARGETS, (d, n, y)):
        err = str(s["errors"]) + ("" if not s["failed_runs"] else f"+{s['failed_runs']}r")
        rss = "(sim)" if t == "direct" else num(s["rss_mb"], "{:.1f}")
        hwm = "" if t == "direct" else num(s["hwm_mb"], "{:.1f}")
        a50 = None if t == "direct" else added(s, "p50")
        a99 = None if t == "direct" else added(s, "p99")
        lines.append(f"  {t:<11}{num(s['rps']):>8}{fmt_lat(s['p50']):>9}{fmt_lat(s['p99']):>9}"
                     f"{fmt_added(a50):>9}{fmt_added(a99):>9}{err:>7}{num(s['cpu_pct']):>6}"
                     f"{num(s['cpu_us_per_req'], '{:.1f}'):>8}"
                     f"{num(s['user_us_per_req'], '{:.1f}'):>6}{rss:>7}{hwm:>6}"
                     f"{num(s['load_pct']):>7}{num(s['other_pct']):>7}")

    def r(k):
        v = ratio(y[k], n[k])
        return f"{v:.2f}x" if v is not None else "-"

    def radd(k):
        ay, an = added(y, k), added(n, k)
        return f"{ay / an:.2f}x" if ay is not None and an and an > 0 else "-"

    lines.append(f"  {'sy/nginx':<11}{r('rps'):>8}{r('p50'):>9}{r('p99'):>9}{radd('p50'):>9}"
                 f"{radd('p99'):>9}{'':>7}{r('cpu_pct'):>6}{r('cpu_us_per_req'):>8}"
                 f"{r('user_us_per_req'):>6}"
                 f"{r('rss_mb'):>7}{r('hwm_mb'):>6}")
    if runs and rounds > 1:
        lines.append(f"  {'rounds':<11}sy/nginx req/s {round_ratios(runs, 'rps')}; "
                     f"p99 {round_ratios(runs, 'p99')}")
    for t, s in zip(TARGETS, (d, n, y)):
        if s["error_kinds"] or s["failed_runs"]:
            lines.append(f"  ! {t}: errors {s['error_kinds']}, wrk runs without a result: "
                         f"{s['failed_runs']}")
        if s["other_max"] is not None and s["other_max"] > 15:
            lines.append(f"  ! {t}: other processes used up to {s['other_max']:.0f}% of a core "
                         "during a run (a noisy neighbour): compare with care")
    return "\n".join(lines)


def run_proxy_cases(stack, cases, secs, rounds, warmup, cpu_load, outdir, checks, quiet):
    results = {}
    blocks = []
    sy = stack["switchyard"]
    for case in cases:
        name = case[0]
        log(f"\n== {name}: {case[3]}")
        if warmup > 0:
            for t in TARGETS:
                measure(stack, t, cpu_load, case, warmup, outdir, f"{name} warmup {t}")
        runs = {t: [] for t in TARGETS}
        for rnd in range(rounds):
            order = TARGETS[rnd % 3:] + TARGETS[:rnd % 3]
            for t in order:
                quiet.wait()
                w = measure(stack, t, cpu_load, case, secs, outdir, f"{name} round {rnd + 1} {t}")
                runs[t].append(w)
                if "failed" in w:
                    log(f"   round {rnd + 1} {t:<10} wrk gave no result: {w['failed'][-200:]!r}")
                else:
                    extra = ""
                    if t == "switchyard":
                        extra = f"  access log lines {w['log_lines']}"
                    log(f"   round {rnd + 1} {t:<10} {w['rps']:9.0f} req/s  p50 {fmt_lat(w['p50']):>8}"
                        f"  p99 {fmt_lat(w['p99']):>8}  errors {w['errors']}  "
                        f"cpu {w['cpu_pct']:.0f}%  load cpu {w['load_pct']:.0f}%  "
                        f"other {w['other_pct']:.0f}%{extra}")
        res = {t: summarize(runs[t]) for t in TARGETS}
        results[name] = {"case": case[3], "connections": case[2], "stream": case[1],
                         "summary": res, "runs": runs}
        block = render_case(case, res, secs, rounds, runs)
        blocks.append(block)
        log(block)
        all_runs = [w for t in TARGETS for w in runs[t]]
        errs = {t: res[t]["errors"] for t in TARGETS}
        checks.check(all(("failed" not in w) and w["requests"] > 0 and w["errors"] == 0
                         for w in all_runs) and all(p.alive() for p in stack.values()),
                     f"{name}: every wrk run completed with requests and zero errors",
                     f"errors per target {errs}, kinds "
                     f"{ {t: res[t]['error_kinds'] for t in TARGETS} }, runs without a result "
                     f"{ {t: res[t]['failed_runs'] for t in TARGETS} }, processes alive "
                     f"{ {k: p.alive() for k, p in stack.items()} }")
        syr = [w for w in runs["switchyard"] if "failed" not in w]
        checks.check(syr and all(w["log_lines"] >= w["requests"] and w["log_cost"] for w in syr),
                     f"{name}: switchyard wrote an access log line with a cost for every request",
                     str([(w.get("log_lines"), w.get("requests"), w.get("log_cost")) for w in syr]))
    return results, blocks


# ----------------------------------------------------------- many streams ----

def nofile_of(pid):
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def streams_one(target, sdir, sim, cpu_proxy, cpu_load, n, secs, nofile, cert=None):
    """n slow streams through one proxy; RSS sampled every 100 ms.

    switchyard talks HTTP/2 on TLS to the sim, as to a real provider: the streams share
    a few multiplexed connections. switchyard-http1 talks HTTP/1.1 (a connection and a
    descriptor per stream), as nginx does."""
    result = {"target": target, "streams": n, "seconds": secs}
    proxy = None
    try:
        if target == "switchyard":
            proxy = start_switchyard(sdir, cpu_proxy, sim.h2_port, "switchyard-streams",
                                     nofile=nofile, ca_file=cert)
            result["upstream"] = "HTTP/2 on TLS"
        elif target == "switchyard-http1":
            proxy = start_switchyard(sdir, cpu_proxy, sim.port, "switchyard-streams-http1",
                                     nofile=nofile)
            result["upstream"] = "HTTP/1.1"
        else:
            proxy = start_nginx(sdir, cpu_proxy, sim.port)
        pids = proxy.pids()
        result["nofile"] = nofile_of(pids[-1])
        # Idle: after a few requests, so the pools and the first allocations exist.
        for i in range(4):
            http_req(proxy.port, "POST", CHAT, chat_body(False), {"x-user-id": f"idle-{i}"},
                     timeout=30)
        time.sleep(0.3)
        idle_kb, _ = mem_kb(pids)
        cpu0 = cpu_seconds(pids)
        client = subprocess.Popen(
            pinned(cpu_load, [sys.executable, STREAMS_PY, "--port", str(proxy.port), "--streams",
                              str(n), "--expect-chunks", str(secs),
                              "--timeout", str(secs * 2 + 60)]),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        peak_kb, samples = idle_kb, 0
        deadline = time.monotonic() + secs * 3 + 120
        t0 = time.monotonic()
        while client.poll() is None and time.monotonic() < deadline:
            rss, _ = mem_kb(pids)
            peak_kb = max(peak_kb, rss)
            samples += 1
            time.sleep(0.1)
        if client.poll() is None:
            client.kill()
        out = client.communicate()[0].decode(errors="replace")
        wall = time.monotonic() - t0
        _, hwm_kb = mem_kb(pids)
        cpu1 = cpu_seconds(pids)
        with open(os.path.join(sdir, f"streams-client-{target}.log"), "w") as f:
            f.write(out)
        m = re.search(r"^streams-json (\{.*\})$", out, re.M)
        c = json.loads(m.group(1)) if m else {"completed": 0, "errors": n,
                                              "error_kinds": {"client": 1},
                                              "error_examples": {"client": out[-300:]}}
        result.update(c)
        if target == "switchyard":
            st = json.loads(http_req(sim.port, "GET", "/_sim/stats", None, {}, timeout=10)[2])
            result["upstream_connections"] = st.get("h2_connections")
        result.update({"idle_rss_kb": idle_kb, "peak_rss_kb": peak_kb, "hwm_kb": hwm_kb,
                       "rss_samples": samples, "wall_s": round(wall, 2),
                       "per_stream_bytes": round((peak_kb - idle_kb) * 1024 / max(1, c.get("peak_open") or n)),
                       "cpu_s": round(cpu1 - cpu0, 2), "alive": proxy.alive()})
        text = proxy.log_text()
        if target == "nginx":
            try:
                with open(os.path.join(sdir, "nginx-error.log")) as f:
                    text += f.read()
            except OSError:
                pass
        bad = [l for l in text.splitlines()
               if re.search(r"level=(error|warn)|\[(alert|crit|error|emerg)\]", l)]
        result["log"] = bad[:6]
        result["log_lines_total"] = len(bad)
    except SystemExit as e:
        result.update({"completed": 0, "errors": n, "startup_error": str(e)})
    finally:
        if proxy:
            proxy.stop()
    return result


def render_streams(r, n):
    need = 2 * n + 32
    up = (f" (upstream {r['upstream']}"
          + (f", {r['upstream_connections']} connections" if r.get("upstream_connections") else "")
          + ")") if r.get("upstream") else ""
    lines = [f"  {r['target']}{up}: {r.get('completed', 0)}/{n} completed, "
             f"{r.get('errors', n)} errors {r.get('error_kinds') or ''}",
             f"    peak open at once {r.get('peak_open', '-')}, every stream had its headers after "
             f"{r.get('ramp_s', '-')} s, client duration {r.get('duration_s', '-')} s",
             f"    RSS idle {r.get('idle_rss_kb', 0) / 1024:.1f} MB, peak "
             f"{r.get('peak_rss_kb', 0) / 1024:.1f} MB (VmHWM {r.get('hwm_kb', 0) / 1024:.1f} MB), "
             f"{r.get('per_stream_bytes', '-')} bytes per stream; CPU {r.get('cpu_s', '-')} s; "
             f"RLIMIT_NOFILE {r.get('nofile', '-')}"]
    if r.get("nofile") and r["nofile"] < need and r["target"] != "switchyard":
        lines.append(f"    ! RLIMIT_NOFILE {r['nofile']} is below the ~{need} descriptors {n} "
                     "proxied streams need (a client and an upstream socket each)")
    for k, v in (r.get("error_examples") or {}).items():
        lines.append(f"    ! {k}: {v}")
    for l in r.get("log", []):
        lines.append(f"    ! log: {l[:240]}")
    if r.get("log_lines_total", 0) > len(r.get("log", [])):
        lines.append(f"    ! ... {r['log_lines_total']} warning/error lines in the proxy's log")
    if r.get("startup_error"):
        lines.append(f"    ! {r['startup_error']}")
    return "\n".join(lines)


def run_streams(outdir, cpu_proxy, cpu_load, n, secs, nofile, checks, with_nginx, quiet):
    log(f"\n== streams: {n} concurrent streams, a chunk every second for {secs} s "
        "(switchyard with 1 worker, upstream HTTP/2 on TLS" + (", then over HTTP/1.1, then nginx with 1 worker)" if with_nginx else ")"))
    sdir = os.path.join(outdir, "streams")
    os.makedirs(sdir, exist_ok=True)
    results = {}
    sim = None
    try:
        cert = make_cert(sdir)
        sim = start_sim(sdir, cpu_load, "slowsim", ["--chunk-ms", "1000", "--chunks", str(secs)],
                        h2_cert=cert)
        peers = ["switchyard-http1", "nginx"] if with_nginx else []
        # BENCH_STREAM_PEERS=none measures switchyard alone (a memory change needs no
        # nginx run each time); the default, and the full bench, compare with both.
        want = os.environ.get("BENCH_STREAM_PEERS", "")
        if want:
            asked = [] if want == "none" else want.split(",")
            unknown = [t for t in asked if t not in peers]
            if unknown:
                sys.exit(f"bench: BENCH_STREAM_PEERS names {unknown}; known: {peers} or none")
            peers = asked
        for target in ["switchyard"] + peers:
            quiet.wait()
            results[target] = streams_one(target, sdir, sim, cpu_proxy, cpu_load, n, secs, nofile,
                                          cert=cert[0])
            log(render_streams(results[target], n))
    except SystemExit as e:
        results.setdefault("switchyard", {"target": "switchyard", "completed": 0, "errors": n,
                                          "startup_error": str(e)})
    finally:
        if sim:
            sim.stop()
    r = results["switchyard"]
    block = (f"streams: {n} concurrent streams, one chunk a second for {secs} s, 1 worker\n"
             + "\n".join(render_streams(results[t], n) for t in results))
    y, x = results.get("switchyard", {}), results.get("nginx", {})
    if y.get("per_stream_bytes") and x.get("per_stream_bytes"):
        block += (f"\n  sy/nginx: peak RSS {y['peak_rss_kb'] / max(1, x['peak_rss_kb']):.2f}x, "
                  f"bytes per stream {y['per_stream_bytes'] / max(1, x['per_stream_bytes']):.2f}x, "
                  f"CPU {y['cpu_s'] / max(0.01, x['cpu_s']):.2f}x")
    checks.check(r.get("completed") == n and r.get("errors") == 0 and r.get("alive", False),
                 f"streams: all {n} streams through switchyard completed with zero errors",
                 f"completed {r.get('completed')}, errors {r.get('error_kinds')}, "
                 f"RLIMIT_NOFILE {r.get('nofile')}, {r.get('startup_error', '')}")
    checks.check(r.get("peak_open", 0) == n,
                 f"streams: all {n} streams were open through switchyard at the same time",
                 f"peak {r.get('peak_open')}")
    return results, block


# ----------------------------------------------------------------- profile ----

def perf_table(data, args, limit):
    r = subprocess.run(["perf", "report", "-i", data, "--stdio"] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    rows = [l.rstrip() for l in r.stdout.decode(errors="replace").splitlines()
            if l.strip() and not l.lstrip().startswith("#") and "%" in l]
    return rows[:limit]


def run_profile(stack, cpu_load, secs, outdir):
    """Where switchyard's time goes under the chat-50 load, next to nginx's syscalls.

    1. perf record (DWARF call graphs) on switchyard: time per library, the hottest
       symbols, and inclusive time of the entry points (what a request costs in total).
    2. strace -c on each proxy during the same load: system calls per request.
    """
    if not shutil.which("perf"):
        sys.exit("bench: perf is missing (Debian: linux-perf)")
    sy = stack["switchyard"]
    data = os.path.join(outdir, "perf.data")
    perf = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384",
                             "-p", str(sy.pid), "-o", data, "--", "sleep", str(secs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    w = run_wrk(cpu_load, sy.port, 50, max(1, secs - 1), False, outdir, "profile chat-50")
    perf.wait(timeout=secs + 60)
    out = [f"profile: switchyard under chat-50 for {secs} s: {w.get('rps', 0):.0f} req/s, "
           f"errors {w.get('errors')} (perf's own cost lowers the rate)",
           "", "time per library (self):"]
    out += ["  " + l.strip() for l in perf_table(data, ["--no-children", "--sort", "dso",
                                                          "-g", "none"], 12)]
    out += ["", "hottest symbols (self):"]
    out += ["  " + l.strip() for l in perf_table(data, ["--no-children", "--sort", "dso,sym",
                                                          "-g", "none"], 30)]
    out += ["", "inclusive (self + callees), unresolved frames left out:"]
    rows = perf_table(data, ["--children", "--sort", "sym", "-g", "none"], 400)
    rows = [l for l in rows if "] 0x" not in l and not re.search(r"\] (clone3|start_thread)$", l)]
    out += ["  " + l.strip() for l in rows[:40]]
    if shutil.which("strace"):
        out += ["", "system calls per request (strace -c -f, 3 s of chat-50):"]
        for name in ("nginx", "switchyard"):
            p = stack[name]
            cnt = os.path.join(outdir, f"strace-{name}.txt")
            pids = p.pids()
            st = subprocess.Popen(["strace", "-c", "-f", "-o", cnt] +
                                  sum((["-p", str(x)] for x in pids), []),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            w = run_wrk(cpu_load, p.port, 50, 3, False, outdir, f"strace chat-50 {name}")
            st.send_signal(signal.SIGINT)
            try:
                st.wait(timeout=30)
            except subprocess.TimeoutExpired:
                st.kill()
            reqs = max(1, w.get("requests", 1))
            calls = {}
            try:
                with open(cnt) as f:
                    for line in f:
                        v = line.split()
                        if len(v) >= 5 and v[0][0].isdigit() and v[-1] != "total":
                            calls[v[-1]] = int(v[3])
            except (OSError, ValueError):
                pass
            total = sum(calls.values())
            top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
            out.append(f"  {name:<11}{total / reqs:6.2f} per request ({reqs} requests): " +
                       ", ".join(f"{k} {v / reqs:.2f}" for k, v in top))
    text = "\n".join(out)
    with open(os.path.join(outdir, "profile.txt"), "w") as f:
        f.write(text + "\n")
    log(text)
    log(f"(saved: {os.path.join(outdir, 'profile.txt')}; perf data: {data})")


# -------------------------------------------------------------------- main ----

def versions():
    v = {}
    try:
        v["nginx"] = subprocess.run(["nginx", "-v"], stderr=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL).stderr.decode().strip()
    except OSError:
        v["nginx"] = "?"
    try:
        out = subprocess.run(["wrk", "-v"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout.decode()
        v["wrk"] = out.splitlines()[0].strip() if out else "?"
    except OSError:
        v["wrk"] = "?"
    for pc in ("libcurl", "libevent"):
        try:
            v[pc] = subprocess.run(["pkg-config", "--modversion", pc], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL).stdout.decode().strip()
        except OSError:
            v[pc] = "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    v["cpu"] = f"{os.cpu_count()} x {model}"
    v["kernel"] = os.uname().release
    return v


def main():
    ap = argparse.ArgumentParser(description="switchyard side-by-side benchmark")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--smoke", action="store_true", help="tiny durations, pass/fail checks")
    g.add_argument("--proxy", action="store_true", help="the proxy cases only")
    g.add_argument("--streams", action="store_true", help="the many-streams run only")
    g.add_argument("--profile", action="store_true", help="perf record switchyard under load")
    args = ap.parse_args()

    smoke = args.smoke
    secs = 1 if smoke else env_num("BENCH_SECONDS", 5)
    rounds = 1 if smoke else env_num("BENCH_ROUNDS", 3)
    warmup = 0 if smoke else env_num("BENCH_WARMUP", 1)
    n_streams = 200 if smoke else env_num("BENCH_STREAMS", 10000)
    stream_secs = 3 if smoke else env_num("BENCH_STREAM_SECONDS", 30)
    nofile = env_num("BENCH_SY_NOFILE", 65536)
    only = [c for c in os.environ.get("BENCH_CASES", "").split(",") if c]
    cases = [c for c in CASES if not only or c[0] in only]
    secs, rounds = max(1, secs), max(1, rounds)

    outdir = os.path.join(BUILD, "bench", "smoke" if smoke else "run")
    os.makedirs(outdir, exist_ok=True)
    for stale in ("wrk.log",):
        if os.path.exists(os.path.join(outdir, stale)):
            os.unlink(os.path.join(outdir, stale))
    for tool in ("wrk", "nginx"):
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
            sys.exit(f"bench: {tool} is missing: run `make bench-deps` (as root)")
    for b in ("switchyard", "switchyard-sim"):
        if not os.access(os.path.join(BUILD, b), os.X_OK):
            sys.exit(f"bench: {BUILD}/{b} is missing: run `make`")

    cpu_proxy, cpu_load, cpu_note = cpu_plan()
    v = versions()
    header = (f"switchyard benchmark — {v['cpu']}, kernel {v['kernel']}\n"
              f"{v['nginx']}; {v['wrk']}; libcurl {v['libcurl']}; libevent {v['libevent']}\n"
              f"{cpu_note}")
    log(header)
    checks = Checks()
    quiet = Quiet(0 if smoke else env_num("BENCH_QUIET_MAX", 120))
    stack = {}
    report = {"machine": v, "cpu_plan": cpu_note, "seconds": secs, "rounds": rounds}
    blocks = [header]

    def on_signal(sig, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        if not args.streams:
            log("\n== starting: sim (fastest mode), nginx, switchyard")
            stack["sim"] = start_sim(outdir, cpu_load, "sim", ["--chunks", str(CHUNKS)])
            stack["nginx"] = start_nginx(outdir, cpu_proxy, stack["sim"].port)
            stack["switchyard"] = start_switchyard(outdir, cpu_proxy, stack["sim"].port)
            log(f"  sim :{stack['sim'].port}  nginx :{stack['nginx'].port} "
                f"(pids {stack['nginx'].pids()})  switchyard :{stack['switchyard'].port} "
                f"(admin :{stack['switchyard'].admin_port})")
            verify(stack, checks)
            if args.profile:
                run_profile(stack, cpu_load, env_num("BENCH_PERF_SECONDS", 10), outdir)
                return 0
            results, case_blocks = run_proxy_cases(stack, cases, secs, rounds, warmup, cpu_load,
                                                   outdir, checks, quiet)
            report["cases"] = results
            blocks += case_blocks
            st, _, body = http_req(stack["switchyard"].admin_port, "GET", "/metrics")
            total = sum(float(m.group(1)) for m in re.finditer(
                rb'^switchyard_requests_total\{[^}]*status_class="2xx"[^}]*\} ([0-9.e+]+)$',
                body, re.M))
            checks.check(st == 200 and total > 0, "switchyard /metrics counts the requests",
                         f"status {st}, 2xx requests {total:.0f}")
            for name in ("switchyard", "nginx", "sim"):
                p = stack.pop(name)
                rc = p.stop()
                if name == "switchyard":
                    text = p.log_text()
                    san = [m for m in ("AddressSanitizer", "LeakSanitizer", "runtime error:")
                           if m in text]
                    checks.check(rc == 0 and not san,
                                 "switchyard exits 0 on SIGTERM after the load, no sanitizer report",
                                 f"exit status {rc}; sanitizer {san}; log tail {text[-300:]!r}")
        if not args.proxy:
            sres, sblock = run_streams(outdir, cpu_proxy, cpu_load, n_streams, stream_secs,
                                       nofile, checks, with_nginx=not smoke, quiet=quiet)
            report["streams"] = sres
            blocks.append(sblock)
    except KeyboardInterrupt:
        log("bench: interrupted")
        checks.check(False, "run finished", "interrupted")
    finally:
        for p in stack.values():
            p.stop()

    if not args.streams:
        want = len(cases)
        got = sum(1 for b in blocks if b.split(":")[0] in {c[0] for c in cases}
                  and "sy/nginx" in b)
        checks.check(got == want, "the table has every case", f"{got} of {want}")
    elapsed = time.monotonic() - started
    report["elapsed_s"] = round(elapsed, 1)
    report["quiet_wait_s"] = quiet.waited
    if quiet.waited or quiet.gave_up:
        blocks.append(f"(waited {quiet.waited:.0f} s in all for other tenants' CPU use to drop; "
                      f"{quiet.gave_up} runs started on a busy machine after the "
                      f"{quiet.budget:.0f} s budget ran out)")
    report["checks"] = {"passed": checks.passed, "failed": checks.failed,
                        "failures": checks.failures}
    text = "\n\n".join(blocks) + "\n"
    base = "results" + ("-proxy" if args.proxy else "-streams" if args.streams else "")
    with open(os.path.join(outdir, base + ".txt"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, base + ".json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    log("\n" + "=" * 100 + "\n" + text)
    if checks.failures:
        log("failures:\n  " + "\n  ".join(checks.failures))
    label = "bench-smoke" if smoke else "bench"
    if smoke:
        with open(os.path.join(BUILD, "bench-smoke-results.txt"), "w") as f:
            f.write(f"{checks.passed} {checks.failed}\n")
    log(f"(results: {outdir}/{base}.txt, {base}.json; {elapsed:.0f} s)")
    log(f"{label}: {checks.passed} passed, {checks.failed} failed")
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
