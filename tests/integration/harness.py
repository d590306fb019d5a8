"""Integration harness: starts the real binaries on loopback and talks HTTP to them.

Only the Python standard library, so a fresh machine needs nothing but python3.
Every process started here is stopped here, by PID. A router's stderr is kept and
checked for sanitizer reports when it stops: an ASan/UBSan/LSan finding fails the
test that owned the process.
"""
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD", "build")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL")


def binary(name):
    return os.path.join(ROOT, BUILD, name)


class TestFailure(AssertionError):
    pass


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, what="value"):
    if got != want:
        raise TestFailure(f"{what}: got {got!r}, want {want!r}")


_tmpdir = tempfile.mkdtemp(prefix="switchyard-it-")


def tmp_path(name):
    return os.path.join(_tmpdir, name)


def _env(extra=None):
    env = dict(os.environ)
    # Leaks are checked at exit; keep the reports short and the exit code distinct.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if extra:
        env.update(extra)
    return env


class Process:
    """A child process with its stderr captured to a file."""

    def __init__(self, argv, name, env=None, stdout=subprocess.PIPE):
        self.name = name
        self.err_path = tmp_path(f"{name}-{os.getpid()}-{time.monotonic_ns()}.stderr")
        self.err_file = open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=stdout, stderr=self.err_file,
                                     stdin=subprocess.DEVNULL, env=_env(env), cwd=ROOT)
        self.stopped = False

    def stderr_text(self):
        if not self.err_file.closed:
            self.err_file.flush()
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TestFailure(f"{self.name} did not exit within {timeout}s of signal {sig}")
        if self.proc.stdout:
            self.proc.stdout.close()
        self.err_file.close()
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                excerpt = text[text.index(marker) - 200 if text.index(marker) > 200 else 0:][:3000]
                raise TestFailure(f"{self.name}: sanitizer report:\n{excerpt}")
        return self.proc.returncode


class Sim(Process):
    def __init__(self, name="sim", *args, **opts):
        argv = [binary("switchyard-sim"), "--port", "0", "--name", name]
        for k, v in opts.items():
            argv += ["--" + k.replace("_", "-"), str(v)]
        argv += list(args)
        super().__init__(argv, f"sim-{name}")
        line = self._read_line(10)
        m = re.search(r"listening on ([0-9.]+):(\d+)", line)
        if not m:
            self.stop()
            raise TestFailure(f"sim did not start: {line!r} {self.stderr_text()}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}/v1"
        if "h2_port" in opts:
            line = self._read_line(10)
            m = re.search(r" h2 on ([0-9.]+):(\d+)", line)
            if not m:
                self.stop()
                raise TestFailure(f"sim did not start HTTP/2: {line!r} {self.stderr_text()}")
            self.h2_url = f"https://{m.group(1)}:{m.group(2)}/v1"

    def _read_line(self, timeout):
        result = []
        t = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()))
        t.daemon = True
        t.start()
        t.join(timeout)
        return result[0].decode() if result else ""

    def get(self, path):
        status, _, body = request("GET", self.host, self.port, path)
        check(status == 200, f"sim {path}: {status}")
        return json.loads(body)

    def stats(self):
        return self.get("/_sim/stats")

    def requests(self):
        return self.get("/_sim/requests")

    def reset(self):
        request("POST", self.host, self.port, "/_sim/reset")


def read_http_request(c):
    """One HTTP/1.1 request from socket c: (head bytes, body bytes), or (b"", b"") at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = c.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def test_cert():
    """A self-signed certificate for 127.0.0.1 (cert, key), made once per run."""
    cert, key = tmp_path("sim-cert.pem"), tmp_path("sim-key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key,
                        "-out", cert], check=True, capture_output=True)
    return cert, key


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def router_config(original, new, percentage=10, extra="", flag_extra="", original_extra="",
                  new_extra="", admin_extra="", workers=2):
    """A config for a router in front of two sims (Sim objects or URLs)."""
    ou = original.url if isinstance(original, Sim) else original
    nu = new.url if isinstance(new, Sim) else new
    return f"""
listen: "127.0.0.1:0"
workers: {workers}
admin: {{ listen: "127.0.0.1:0"{admin_extra} }}
providers:
  original:
    name: openai
    base_url: "{ou}"
{original_extra}
  new:
    name: relay
    base_url: "{nu}"
    models: {{ "claude-sonnet-4.5": "claude-sonnet-4-5" }}
{new_extra}
forward_headers: ["x-sim-fault"]
flags:
  use_new_provider:
    percentage: {percentage}
    sticky: ["header:x-user-id", "body:user", "api_key"]
{flag_extra}
{extra}
"""


class Router(Process):
    def __init__(self, config_text, env=None, name="router"):
        self.config_path = tmp_path(f"{name}-{time.monotonic_ns()}.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_text)
        # SWITCHYARD_WRAPPER runs the router under a tool (make check-valgrind).
        wrapper = shlex.split(os.environ.get("SWITCHYARD_WRAPPER", ""))
        super().__init__(wrapper + [binary("switchyard"), "-c", self.config_path], name, env=env,
                         stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + (60 if wrapper else 15)
        while time.monotonic() < deadline:
            m = re.search(r"event=listening addr=([0-9.:\[\]a-f]+):(\d+) admin=([0-9.]+):(\d+)",
                          self.stderr_text())
            if m:
                self.host, self.port = "127.0.0.1", int(m.group(2))
                self.admin_port = int(m.group(4))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        text = self.stderr_text()
        self.stop(signal.SIGKILL)
        raise TestFailure(f"router did not start:\n{text[-2000:]}")

    def request(self, method, path, body=None, headers=None, timeout=30):
        return request(method, self.host, self.port, path, body, headers, timeout)

    def chat(self, body, headers=None, timeout=30):
        status, hdrs, data = self.request("POST", "/v1/chat/completions", body, headers, timeout)
        return status, hdrs, data

    def admin(self, method, path, body=None, headers=None):
        return request(method, self.host, self.admin_port, path, body, headers)


def request(method, host, port, path, body=None, headers=None, timeout=30):
    """One HTTP request on a fresh connection. Returns (status, headers dict lower-cased, bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    h = {"Content-Type": "application/json"} if body is not None else {}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, hdrs, data
    finally:
        conn.close()


def open_idle(port, n, host="127.0.0.1"):
    """n connections that connect (non-blocking) and then send nothing; the caller closes."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def raw_request(port, data, timeout=10, host="127.0.0.1"):
    """Sends raw bytes, returns everything the server answers until it closes or times out."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                c = s.recv(65536)
            except socket.timeout:
                break
            if not c:
                break
            chunks.append(c)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)
    finally:
        s.close()


def _complete(data):
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    return bool(m) and len(body) >= int(m.group(1))


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def sse_events(data):
    """Splits an event-stream body into (event, data) pairs."""
    out = []
    for block in re.split(rb"\r?\n\r?\n", data):
        if not block.strip():
            continue
        ev, lines = None, []
        for line in block.splitlines():
            if line.startswith(b"event:"):
                ev = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                lines.append(line[5:].lstrip(b" ").decode())
        out.append((ev, "\n".join(lines)))
    return out


def openai_error(body, status_hint=""):
    """Checks the OpenAI error shape and returns the error object."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise TestFailure(f"error body is not JSON {status_hint}: {body[:200]!r}")
    check(isinstance(doc, dict) and isinstance(doc.get("error"), dict),
          f"not an OpenAI-shaped error: {doc}")
    err = doc["error"]
    for k in ("message", "type", "param", "code"):
        check(k in err, f"error lacks {k}: {err}")
    return err


def murmur3_32(data, seed=0):
    """Reference MurmurHash3 x86_32, written independently of flags/flags.c."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & 0xFFFFFFFF
    n = len(data) // 4
    for i in range(n):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
        h = ((h << 13) | (h >> 19)) & 0xFFFFFFFF
        h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail = data[4 * n:]
    k = 0
    for i, b in enumerate(tail):
        k |= b << (8 * i)
    if tail:
        k = (k * c1) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        k = (k * c2) & 0xFFFFFFFF
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def expected_variant(flag, key, percentage_bp):
    bucket = (murmur3_32((flag + key).encode()) * 10000) >> 32
    return "new" if bucket < percentage_bp else "original"
