"""The router over HTTP/2 to a provider (the sim's TLS port, ALPN h2), as it talks to
real providers: many requests multiplexed on few connections, and one client that
stops reading must not stall the others sharing its connection."""
import concurrent.futures
import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import tempfile
import time

from harness import Router, Sim, check, eq, read_http_request, sse_events, test_cert

CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hello"}]}


def _config(sim, cert, extra=""):
    return f"""
listen: "127.0.0.1:0"
workers: 1
admin: {{ listen: "127.0.0.1:0" }}
providers:
  original:
    name: openai
    base_url: "{sim.h2_url}"
    http_version: "2"
    ca_file: "{cert}"
  new:
    name: relay
    base_url: "{sim.h2_url}"
    http_version: "2"
    ca_file: "{cert}"
flags:
  use_new_provider:
    percentage: 50
    sticky: ["header:x-user-id"]
{extra}
"""


@contextlib.contextmanager
def _h2_stack(name, extra="", sim_args=(), **sim_opts):
    """A sim serving HTTP/2 on TLS (sim_opts: its options) and a router whose two
    providers are that sim, asked for HTTP/2 (extra: more config); both stopped after."""
    cert, key = test_cert()
    sim = Sim(name, *sim_args, h2_port=0, tls_cert=cert, tls_key=key, **sim_opts)
    r = None
    try:
        r = Router(_config(sim, cert, extra))
        yield sim, r
    finally:
        if r:
            r.stop()
        sim.stop()


def _one(port, i, stream, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/v1/chat/completions", json.dumps(dict(CHAT, stream=stream)),
                  {"Content-Type": "application/json", "x-user-id": f"u{i}"})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def _check_answer(i, stream, status, body, min_content):
    eq(status, 200, f"request {i} (stream={stream})")
    if stream:
        events = [d for _, d in sse_events(body)]
        check(events and events[-1] == "[DONE]", f"stream {i} ends with [DONE]")
        content = [e for e in events if '"content"' in e]
        check(len(content) >= min_content, f"stream {i}: {len(content)} content events")
    else:
        check(json.loads(body)["object"] == "chat.completion", f"completion body {i}")


def case_requests_multiplex_over_few_connections():
    with _h2_stack("h2", chunks=20, chunk_ms=20) as (sim, r):
        jobs = [(i, i % 4 != 0) for i in range(400)]  # 300 streams, 100 plain
        with concurrent.futures.ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(lambda j: _one(r.port, *j), jobs))
        for (i, stream), (status, hdrs, body) in zip(jobs, results):
            _check_answer(i, stream, status, body, 20)
            check(hdrs.get("x-switchyard-provider") in ("openai", "relay"), "provider header")
        st = sim.stats()
        eq(st["h2_streams"], 400, "streams the provider served")
        # 100 in flight at most, 128 streams allowed per connection: a handful at most.
        check(st["h2_connections"] <= 8, f"{st['h2_connections']} connections for 400 requests")
        print(f"  400 requests (300 streamed) over {st['h2_connections']} HTTP/2 connections")


def _waits(r):
    _, _, metrics = r.admin("GET", "/metrics")
    return sum(float(l.rsplit(" ", 1)[1]) for l in metrics.decode().splitlines()
               if l.startswith("switchyard_upstream_connection_waits_total{"))


def case_a_burst_past_one_connection_opens_few_more():
    """300 streams at once: one connection carries 100 (libcurl's cap), so two more are
    needed. libcurl 7.88 alone opens one per stream that starts while the second is in
    its TLS handshake (about 200); the origin's gate (h2gate.h) lets them wait for it."""
    n = 300
    with _h2_stack("h2burst", chunks=15, chunk_ms=100) as (sim, r):
        eq(_one(r.port, -1, False)[0], 200, "first request")  # one connection, up
        before = sim.stats()["h2_connections"]
        # Fewer than a connection carries: all of them fit on the one that is up, none
        # waits (the gate counts that connection as up).
        results, _ = _timed_burst(r.port, 60)
        eq(results, [200] * 60, "60 answers at once")
        eq(sim.stats()["h2_connections"], before, "60 requests on the connection up")
        eq(_waits(r), 0.0, "requests that waited for a connection, below capacity")
        results, _ = _timed_burst_streams(r.port, n, "b")
        for i, (status, body) in enumerate(results):
            _check_answer(i, True, status, body, 15)
        opened = sim.stats()["h2_connections"] - before
        waits = _waits(r)
        print(f"  {n} streams at once opened {opened} more HTTP/2 connections; "
              f"{waits:.0f} waited for one")
        check(opened <= 3, f"{opened} connections opened for {n} streams (3 needed)")
        check(waits > 0, "past one connection's capacity, requests waited for the next")


_ANSWER = json.dumps({"id": "c-1", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "hi"}}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                "total_tokens": 2}}).encode()


def _answer_http1(c, delay=0.0):
    """Answers each HTTP/1.1 request on c with _ANSWER, delay seconds after it, until the
    client closes. delay None: it reads the requests and never answers."""
    while read_http_request(c)[0]:
        if delay is None:
            continue
        time.sleep(delay)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(_ANSWER) + _ANSWER)


def _accept_loop(ls, handle):
    """Calls handle(socket) for each connection ls accepts, on a thread of its own, until
    ls is closed."""
    def serve():
        while True:
            try:
                raw, _ = ls.accept()
            except OSError:
                return
            handle(raw)

    threading.Thread(target=serve, daemon=True).start()


def _tls_listener(cert, key, alpn, backlog):
    """A TLS server context agreeing on the protocols in alpn, and a listening socket."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(alpn)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(backlog)
    return ctx, ls


def _tls_provider(cert, key, alpn, handshake_delay, answer_delay=0.0):
    """A TLS provider that agrees on `alpn` only, waits handshake_delay seconds before each
    handshake (a provider far away), then answers HTTP/1.1 requests (see _answer_http1
    for answer_delay); each connection in a thread of its own. handshake_delay None: it
    never handshakes (an origin that cannot be reached: the TCP connection is accepted,
    TLS never answers)."""
    ctx, ls = _tls_listener(cert, key, [alpn], 256)
    held = []

    def one(raw):
        try:
            if handshake_delay is None:
                held.append(raw)  # accepted, never answered
                return
            time.sleep(handshake_delay)
            c = ctx.wrap_socket(raw, server_side=True)
            _answer_http1(c, answer_delay)
            c.close()
        except (OSError, ssl.SSLError):
            raw.close()

    _accept_loop(ls, lambda raw: threading.Thread(target=one, args=(raw,), daemon=True).start())
    return ls, held


def _timed_burst(port, n):
    """n requests at once (threads meet at a barrier first); their results and the time
    from the start to the last answer."""
    ready = threading.Barrier(n)

    def go(i):
        ready.wait()
        try:
            return _one(port, i, False, timeout=60)[0]
        except OSError as e:
            return repr(e)

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(go, range(n)))
    return results, time.monotonic() - t0


def _h2_router(url, cert, provider_extra="", extra_config=""):
    """A router whose two providers are one TLS origin asked for HTTP/2."""
    extra = f", {provider_extra}" if provider_extra else ""
    return Router(f"""
listen: "127.0.0.1:0"
workers: 1
admin: {{ listen: "127.0.0.1:0" }}
providers:
  original: {{ name: openai, base_url: "{url}", http_version: "2", ca_file: "{cert}"{extra} }}
  new: {{ name: relay, base_url: "{url}", http_version: "2", ca_file: "{cert}"{extra} }}
{extra_config}
""")


@contextlib.contextmanager
def _tls_stack(alpn, handshake_delay, answer_delay=0.0, provider_extra="", extra_config=""):
    """A _tls_provider and a router asking it for HTTP/2 (_h2_router); the router
    stopped, the listener and any connection it holds closed after."""
    cert, key = test_cert()
    ls, held = _tls_provider(cert, key, alpn, handshake_delay, answer_delay)
    r = None
    try:
        r = _h2_router(f"https://127.0.0.1:{ls.getsockname()[1]}/v1", cert, provider_extra,
                       extra_config)
        yield r
    finally:
        if r:
            r.stop()
        ls.close()
        for c in held:
            c.close()


def case_requests_waiting_for_a_connection_keep_their_connect_timeout():
    """An origin asked for HTTP/2 that cannot be reached: while its first connection is
    being opened the others wait in line (h2gate.h); when it fails they must not each
    wait for the one before, but fail at their own connect timeout, together."""
    with _tls_stack("h2", None, provider_extra="timeouts: { connect_ms: 300 }") as r:
        t0 = time.monotonic()
        one = _one(r.port, 0, False, timeout=30)[0]
        alone = time.monotonic() - t0
        check(one >= 500, f"one request to an unreachable origin fails ({one})")
        results, took = _timed_burst(r.port, 30)
        check(all(isinstance(x, int) and x >= 500 for x in results),
              f"every request failed with an answer: {sorted(set(map(str, results)))}")
        print(f"  one request failed after {alone:.2f} s; 30 at once all failed after {took:.2f} s")
        # In line one after the other would be ~30 x connect_ms per attempt (> 9 s).
        check(took < 2 * alone + 1.5, f"30 requests took {took:.2f} s, one took {alone:.2f} s")


def case_a_wait_in_line_is_not_taken_from_the_first_byte_limit():
    """Requests held at the gate while an origin's first connection is opened (400 ms
    handshakes, longer than first_byte_ms) keep their whole first_byte_ms once sent:
    answered 200 ms after the request, each is a 200 under first_byte_ms 300. One that
    is never answered times out first_byte_ms after its request, not at connect_ms."""
    limits = "timeouts: { connect_ms: 5000, first_byte_ms: 300 }"
    one_attempt = "fallback: { max_attempts: 1 }"
    for answer_delay in (0.2, None):
        with _tls_stack("http/1.1", 0.4, answer_delay, limits, one_attempt) as r:
            results, took = _timed_burst(r.port, 6)
            check(_waits(r) > 0, "some requests waited in line")
            if answer_delay is not None:
                eq(results, [200] * 6, "answers 200 ms after the request, first_byte_ms 300")
                print(f"  6 requests through a 400 ms handshake line answered in {took:.2f} s")
            else:
                eq(results, [504] * 6, "never answered: first-byte timeouts")
                print(f"  6 requests never answered timed out after {took:.2f} s")
                # line 0.4 + own handshake 0.4 + first_byte 0.3; connect_ms would be 5 s
                check(took < 2.5, f"timed out after {took:.2f} s, connect_ms is 5 s")


def case_an_origin_that_says_http1_is_not_held_in_line():
    """A provider asked for HTTP/2 that agrees only on HTTP/1.1 (ALPN): a connection
    carries one request, so none can wait for another's; after the first handshake
    the requests connect at once, not one handshake after the other."""
    with _tls_stack("http/1.1", 0.25) as r:
        eq(_one(r.port, 0, False, timeout=30)[0], 200, "first answer over HTTP/1.1")
        results, took = _timed_burst(r.port, 20)
        eq(results, [200] * 20, "20 answers at once")
        print(f"  20 requests over HTTP/1.1 connections (250 ms handshakes) in {took:.2f} s")
        # 20 handshakes one after the other would be 5 s.
        check(took < 2.0, f"20 requests took {took:.2f} s")


def _burst_round(r, i, stream):
    t0 = time.monotonic()
    status, _, body = _one(r.port, i, stream, timeout=5)
    took = time.monotonic() - t0
    _check_answer(i, stream, status, body, 200)
    check(took < 2.0, f"burst answer {i} took {took:.2f}s")


def _responses_burst(r, i):
    """A Responses API stream ends on `response.completed`, not on [DONE]."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=5)
    try:
        c.request("POST", "/v1/responses",
                  json.dumps({"model": "gpt-4.1", "input": "hello", "stream": True}),
                  {"Content-Type": "application/json", "x-user-id": f"resp{i}"})
        resp = c.getresponse()
        body = resp.read()
    finally:
        c.close()
    took = time.monotonic() - t0
    eq(resp.status, 200, f"responses stream {i}")
    names = [l.split(b":", 1)[1].strip() for l in body.split(b"\n") if l.startswith(b"event:")]
    check(names and names[-1] == b"response.completed", f"responses stream {i} ends completed")
    check(took < 2.0, f"responses stream {i} took {took:.2f}s")


def case_burst_answers_end_on_either_framing():
    # A provider answering faster than the router reads (here all at once: a 44 KB
    # stream in one go) fills libcurl 7.88's small per-stream buffer. Its HTTP/2 reader
    # then stops with the rest of the answer inside libcurl and nothing to wake it:
    # every such answer hung with its last bytes, or its end, undelivered. The end of an
    # answer comes either on the frame with its last bytes or on an empty frame of its
    # own; both are served here.
    for end_frame in (False, True):
        log_path = os.path.join(tempfile.mkdtemp(prefix="sy-burst-"), "access.jsonl")
        with _h2_stack("h2", f'access_log: {{ path: "{log_path}" }}',
                       ["--h2-end-frame"] if end_frame else [], chunks=200) as (sim, r):
            for i in range(10):
                _burst_round(r, i, True)
            for i in range(10, 15):
                _burst_round(r, i, False)
            for i in range(5):
                _responses_burst(r, i)
            eq(sim.stats()["h2_connections"], 1, "one after the other on one connection")
            with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
                list(pool.map(lambda i: _burst_round(r, i, i % 2 == 0), range(15, 55)))
            eq(sim.stats()["h2_streams"], 60, "streams the provider served")
            lines = []
            deadline = time.monotonic() + 5
            while len(lines) < 60 and time.monotonic() < deadline:
                with open(log_path) as f:
                    lines = [json.loads(l) for l in f if l.strip()]
                time.sleep(0.05)
            eq(len(lines), 60, "access log lines")
            for line in lines:
                eq(line["status"], 200, "logged status")
                eq(line["usage_source"], "upstream", "usage read from the answer")
                check(line["tokens_out"] > 0, "tokens counted")
            inferred = r.stderr_text().count("event=upstream_end_inferred")
            _, _, metrics = r.admin("GET", "/metrics")
            counted = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.decode().splitlines()
                          if l.startswith("switchyard_upstream_ends_inferred_total{"))
            eq(counted, float(inferred), "ends inferred: /metrics vs log")
            if end_frame:
                # The end is a frame libcurl holds unread: running the stream again ends
                # the answer. Were the re-check not delivering it, every answer would be
                # ended on its content instead. A few may be, legitimately: the sim
                # writes the end frame separately, and a re-check can find the answer
                # complete ([DONE]) before that frame has arrived (1 of 55 in one run,
                # before the grace period existed).
                check(inferred < 60 // 2,
                      f"{inferred} of 60 answers ended on their content with an end frame")
            framing = "end on its own frame" if end_frame else "end on the last data frame"
            print(f"  {framing}: 60 burst answers complete, {inferred} ended on their content")


def case_stalled_client_does_not_stall_its_connection():
    # libcurl 7.88 stops reading a whole HTTP/2 connection while one of its streams is
    # paused; the router holds a slow client's bytes instead (up to a limit) so the
    # streams sharing the connection go on.
    with _h2_stack("h2", "limits: { client_stall_ms: 20000 }", chunks=50000) as (sim, r), \
            socket.create_connection(("127.0.0.1", r.port)) as slow:
        body = json.dumps(dict(CHAT, stream=True))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Type: application/json\r\nx-user-id: slow\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        time.sleep(1.0)  # ~10 MB stream, never read: the router's backlog fills
        for i in range(5):
            t0 = time.monotonic()
            c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
            c.request("POST", "/v1/chat/completions",
                      json.dumps(dict(CHAT, stream=True, max_tokens=5)),
                      {"Content-Type": "application/json", "x-user-id": f"fast{i}"})
            resp = c.getresponse()
            data = resp.read()
            took = time.monotonic() - t0
            c.close()
            eq(resp.status, 200, f"stream {i} beside the stalled client")
            check(b"data: [DONE]" in data, f"stream {i} complete")
            check(took < 2.0, f"stream {i} took {took:.2f}s beside a stalled client")
        eq(sim.stats()["h2_connections"], 1, "all streams shared one connection")
        log = r.stderr_text()
        check("event=client_stalled" in log and "reason=hold_limit" in log,
              "the stalled client was dropped at the hold limit")
        print("  5 streams served in < 2 s each beside a client that stopped reading; "
              "it was dropped at the hold limit")


def _alpn_server(cert, key, seen):
    """A TLS provider offering h2 and http/1.1 by ALPN; answers HTTP/1.1 and records which
    protocol each connection agreed on."""
    ctx, ls = _tls_listener(cert, key, ["h2", "http/1.1"], 8)

    def one(raw):
        try:
            c = ctx.wrap_socket(raw, server_side=True)
            seen.append(c.selected_alpn_protocol())
            if c.selected_alpn_protocol() == "http/1.1":
                _answer_http1(c)
            c.close()
        except (OSError, ssl.SSLError):
            raw.close()

    _accept_loop(ls, one)
    return ls


def case_auto_is_http1_over_tls():
    # Through libcurl 7.88, HTTP/2 fails a few burst answers in a thousand (DECISIONS.md,
    # "HTTP/2 bursts"): "auto" does not offer h2, only "2" does.
    cert, key = test_cert()
    for version, want in (("auto", "http/1.1"), ('"2"', "h2")):
        seen = []
        ls = _alpn_server(cert, key, seen)
        url = f"https://127.0.0.1:{ls.getsockname()[1]}/v1"
        r = None
        try:
            r = Router(f"""
listen: "127.0.0.1:0"
workers: 1
admin: {{ listen: "127.0.0.1:0" }}
providers:
  original: {{ name: openai, base_url: "{url}", http_version: {version}, ca_file: "{cert}" }}
  new: {{ name: relay, base_url: "{url}", http_version: {version}, ca_file: "{cert}" }}
""")
            status, _, body = _one(r.port, 0, False, timeout=10)
            if want == "http/1.1":
                eq(status, 200, "answer over HTTPS with http_version auto")
                eq(json.loads(body)["object"], "chat.completion", "completion body")
            check(seen and all(p == want for p in seen),
                  f"http_version {version}: ALPN agreed on {seen}, want {want}")
            print(f"  http_version {version}: ALPN {seen[0]}")
        finally:
            if r:
                r.stop()
            ls.close()


def case_json_answer_cut_short_is_a_protocol_error():
    # A 200 whose JSON body ends early but cleanly (seen once through libcurl 7.88's
    # HTTP/2 under load, docs/DECISIONS.md "HTTP/2 bursts") is not passed on as an answer.
    extra = 'forward_headers: ["x-sim-fault"]\nfallback: { on: [protocol], max_attempts: 2 }'
    with _h2_stack("h2", extra) as (sim, r):
        status, hdrs, body = r.chat(dict(CHAT, stream=False), {"x-sim-fault": "cut_json"})
        eq(status, 502, "a cut JSON answer")
        err = json.loads(body)["error"]
        check("protocol" in err["message"] and "JSON answer cut short" in err["message"],
              f"error message {err['message']!r}")
        eq(hdrs.get("x-switchyard-attempts").count(":200"), 2, "two attempts, both cut")
        status, _, body = r.chat(dict(CHAT, stream=False))
        eq(status, 200, "a whole answer still passes")
        eq(json.loads(body)["object"], "chat.completion", "completion body")
        print(f"  cut answer: 502 after {hdrs.get('x-switchyard-attempts')}")


class _Forwarder:
    """A TCP port that relays each connection to the sim's TLS port: another origin
    (its own port) for the same provider. close_all() hangs up every connection made
    through it so far, as a provider that closes idle connections would."""

    def __init__(self, target_port):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(512)
        self.port = self.ls.getsockname()[1]
        self.target = target_port
        self.conns = []
        self.lock = threading.Lock()
        _accept_loop(self.ls, self._relay)

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _relay(self, c):
        try:
            up = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            c.close()
            return
        with self.lock:
            self.conns.append((c, up))
        threading.Thread(target=self._pipe, args=(c, up), daemon=True).start()
        threading.Thread(target=self._pipe, args=(up, c), daemon=True).start()

    def close_all(self):
        with self.lock:
            conns, self.conns = self.conns, []
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def count(self):
        with self.lock:
            return len(self.conns)

    def stop(self):
        self.close_all()
        self.ls.close()


def case_many_origins_over_reloads_keep_their_gate():
    """Reloads that name new origins: every origin keeps a gate, however many a worker
    has seen, so a burst still waits for the connection being opened instead of opening
    one per stream. With a table of 16 and 18 origins connected, the 17th had no gate
    and this burst opened 145 and 150 connections where 2 are needed. A gate left with
    nothing on it is taken over by the next new origin."""
    cert, _ = test_cert()
    with _h2_stack("h2many", chunks=15, chunk_ms=100) as (sim, r):
        sim_port = int(sim.h2_url.rsplit(":", 1)[1].split("/", 1)[0])
        fwd = [_Forwarder(sim_port) for _ in range(20)]

        def point_at(i):
            with open(r.config_path, "w") as f:
                f.write(_config(sim, cert).replace(sim.h2_url,
                                                   f"https://127.0.0.1:{fwd[i].port}/v1"))
            code, _, body = r.admin("POST", "/admin/reload")
            eq(code, 200, f"reload to origin {i}: {body[:200]!r}")
            status, _, body = _one(r.port, i, False)
            eq(status, 200, f"a request to origin {i}")

        def burst(i, n, needed):
            waits = _waits(r)
            results, took = _timed_burst_streams(r.port, n)
            for k, (status, body) in enumerate(results):
                _check_answer(k, True, status, body, 15)
            opened = fwd[i].count() - 1
            waits = _waits(r) - waits
            print(f"  origin {i}: {n} streams opened {opened} more connections "
                  f"({waits:.0f} waited) in {took:.1f} s")
            check(opened <= needed + 1, f"{opened} connections opened for {n} streams "
                                        f"({needed} needed)")
            check(waits > 0, f"the burst at origin {i} waited at its gate")

        try:
            for i in range(18):  # every origin's connection stays up
                point_at(i)
                eq(fwd[i].count(), 1, f"one connection to origin {i}")
            burst(17, 250, 2)
            for f in fwd:
                f.close_all()
            # libcurl finds a dead idle connection at its next check, at most once a
            # second, when a transfer starts: origin 18's. Origin 19 then takes over an
            # empty gate.
            time.sleep(1.2)
            point_at(18)
            point_at(19)
            burst(19, 150, 1)
        finally:
            for f in fwd:
                f.stop()


def case_a_provider_allowing_fewer_streams_still_serves_a_burst():
    """A provider that allows 20 streams a connection, not the 100 the gate counts on.
    The gate lets 100 start on the one connection that is up; libcurl puts 20 there and
    opens a connection for each of the others (docs/DECISIONS.md, "HTTP/2 connection
    storms": the gate cannot see the provider's number). Every stream must still be
    served whole; the connections it took are printed, not bounded."""
    n = 100
    with _h2_stack("h2few", chunks=15, chunk_ms=100, h2_max_streams=20) as (sim, r):
        eq(_one(r.port, -1, False)[0], 200, "first request")  # one connection, up
        before = sim.stats()["h2_connections"]
        results, took = _timed_burst_streams(r.port, n, "f")
        for i, (status, body) in enumerate(results):
            _check_answer(i, True, status, body, 15)
        opened = sim.stats()["h2_connections"] - before
        print(f"  {n} streams at 20 a connection: all whole, {opened} more connections "
              f"(4 needed) in {took:.1f} s")
        check(opened >= 4, f"{opened} connections for {n} streams at 20 each")
        eq(sim.stats()["h2_streams"], n + 1, "streams the provider served")


def _timed_burst_streams(port, n, user="m"):
    """n streams at once, on connections opened beforehand; their (status, body) and the
    time from the start to the last answer."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(n)]
    for c in conns:
        c.connect()
    ready = threading.Barrier(n)

    def go(i):
        c = conns[i]
        ready.wait()
        c.request("POST", "/v1/chat/completions", json.dumps(dict(CHAT, stream=True)),
                  {"Content-Type": "application/json", "x-user-id": f"{user}{i}"})
        resp = c.getresponse()
        return resp.status, resp.read()

    t0 = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(go, range(n)))
    finally:
        for c in conns:
            c.close()
    return results, time.monotonic() - t0
