"""Fault injection, declaratively (after curl's tests/data): each case names the faults
the simulated providers apply (`x-sim-fault`, scoped to one sim with `NAME:`), the
request, and what the client must get: status, body shape, serving provider, the
attempt list and the fallback class.

Cases run in groups that share one router config, so a whole group costs one start-up.
The first attempt always goes to `new` (percentage 100) unless a case says otherwise.
"""
import json
import os
import socket
import threading
import time

from harness import (Router, Sim, TestFailure, check, eq, open_idle, openai_error,
                     read_http_request, router_config, sse_events)

CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hello"}]}

FAST_TIMEOUTS = "    timeouts: { connect_ms: 500, first_byte_ms: 400, idle_ms: 400, total_ms: 3000 }"


def policy(on="[connect_error, timeout_connect, timeout_first_byte, upstream_5xx, upstream_429]",
           retry=0, attempts=2, base=20, max_ms=2000, percent=100, minps=1000, eject=0,
           eject_base=1000, eject_max=4000, stall=30000):
    return f"""
fallback:
  on: {on}
  retry_same_provider: {retry}
  max_attempts: {attempts}
  backoff: {{ base_ms: {base}, max_ms: {max_ms} }}
  budget: {{ percent: {percent}, min_per_second: {minps} }}
  eject: {{ consecutive_failures: {eject}, base_ms: {eject_base}, max_ms: {eject_max} }}
limits: {{ client_stall_ms: {stall} }}
"""


class Stack:
    """Sims `original` and `new` and a router; new_url/original_url override a sim."""

    def __init__(self, percentage=100, extra="", new_url=None, original_url=None,
                 sim_opts=None, timeouts=FAST_TIMEOUTS, env=None):
        self.procs = []
        try:
            self.o = Sim("original", **(sim_opts or {})) if original_url is None else None
            self.n = Sim("new", **(sim_opts or {})) if new_url is None else None
            self.procs += [p for p in (self.o, self.n) if p]
            self.r = Router(router_config(self.o or original_url, self.n or new_url,
                                          percentage=percentage, extra=extra,
                                          original_extra=timeouts, new_extra=timeouts), env=env)
            self.procs.append(self.r)
        except Exception:
            self.close()
            raise

    def close(self):
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - every process is stopped
                errors.append(str(e))
        self.procs = []
        if errors:
            raise TestFailure("\n".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_case(stack, case):
    body = dict(CHAT, stream=case.get("stream", False))
    headers = {"x-user-id": case.get("user", "fault-user")}
    if case.get("fault"):
        headers["x-sim-fault"] = case["fault"]
    t0 = time.monotonic()
    status, h, data = stack.r.chat(body, headers, timeout=20)
    took = time.monotonic() - t0
    where = f"case {case['name']!r}"
    eq(status, case["status"], f"{where}: status")
    if "attempts" in case:
        eq(h.get("x-switchyard-attempts"), case["attempts"], f"{where}: attempts")
    if "fallback" in case:
        eq(h.get("x-switchyard-fallback"), case["fallback"], f"{where}: fallback header")
    if "served_by" in case:
        eq(h.get("x-sim-provider"), case["served_by"], f"{where}: served by")
    shape = case.get("shape")
    if shape == "completion":
        eq(json.loads(data)["object"], "chat.completion", f"{where}: body")
    elif shape == "stream":
        ev = sse_events(data)
        eq(ev[-1][1], "[DONE]", f"{where}: stream ends with [DONE]")
        check(all(e is None for e, _ in ev), f"{where}: unexpected named event in {ev}")
    elif shape == "truncated":
        ev = sse_events(data)
        check(ev and ev[-1][0] == "error", f"{where}: stream must end with event: error: {ev[-3:]}")
        check(all(d != "[DONE]" for _, d in ev), f"{where}: a truncated stream sent [DONE]")
        err = json.loads(ev[-1][1])["error"]
        check(case["message"] in err["message"], f"{where}: error message {err['message']!r}")
    elif shape == "error":
        err = openai_error(data, where)
        for part in case.get("message_parts", []):
            check(part in err["message"], f"{where}: message {err['message']!r} lacks {part!r}")
    if "min_s" in case:
        check(took >= case["min_s"], f"{where}: took {took:.2f}s, expected >= {case['min_s']}")
    if "max_s" in case:
        check(took <= case["max_s"], f"{where}: took {took:.2f}s, expected <= {case['max_s']}")
    for name, value in case.get("headers", {}).items():
        eq(h.get(name), value, f"{where}: header {name}")
    return h


# Before the commit point every retryable failure falls back, streaming or not.
BEFORE_COMMIT = [
    dict(name="5xx falls back", fault="new:status=503", status=200, served_by="original",
         attempts="relay:503,openai:200", fallback="upstream_5xx", shape="completion"),
    dict(name="5xx falls back (stream)", stream=True, fault="new:status=502", status=200,
         served_by="original", attempts="relay:502,openai:200", fallback="upstream_5xx",
         shape="stream"),
    dict(name="429 falls back", fault="new:status=429", status=200, served_by="original",
         attempts="relay:429,openai:200", fallback="upstream_429", shape="completion"),
    dict(name="429 falls back (stream)", stream=True, fault="new:status=429", status=200,
         served_by="original", attempts="relay:429,openai:200", fallback="upstream_429",
         shape="stream"),
    dict(name="no headers in time", fault="new:hang_before_headers", status=200,
         served_by="original", attempts="relay:timeout_first_byte,openai:200",
         fallback="timeout_first_byte", shape="completion", max_s=3),
    dict(name="no headers in time (stream)", stream=True, fault="new:hang_before_headers",
         status=200, served_by="original", attempts="relay:timeout_first_byte,openai:200",
         fallback="timeout_first_byte", shape="stream", max_s=3),
    dict(name="headers then silence (stream)", stream=True, fault="new:hang_after_headers",
         status=200, served_by="original", attempts="relay:200,openai:200",
         fallback="timeout_first_byte", shape="stream", max_s=3),
    dict(name="headers then silence", fault="new:hang_after_headers", status=200,
         served_by="original", attempts="relay:200,openai:200", fallback="timeout_first_byte",
         shape="completion", max_s=3),
    dict(name="reset before the first event (stream)", stream=True,
         fault="new:reset_after_chunks=0", status=200, served_by="original",
         attempts="relay:200,openai:200", fallback="connect_error", shape="stream"),
    dict(name="body cut short by a reset", fault="new:reset_after_chunks=1", status=200,
         served_by="original", attempts="relay:200,openai:200", fallback="connect_error",
         shape="completion"),
    # a clean close (FIN) at the same points says no more than a reset
    dict(name="clean close before the first event (stream)", stream=True,
         fault="new:close_after_chunks=0", status=200, served_by="original",
         attempts="relay:200,openai:200", fallback="connect_error", shape="stream"),
    dict(name="body cut short by a clean close", fault="new:close_after_chunks=1", status=200,
         served_by="original", attempts="relay:200,openai:200", fallback="connect_error",
         shape="completion"),
    # keep-alive comments are not the commit point: the stream can still fall back
    dict(name="a comment, then a reset (stream)", stream=True,
         fault="new:comment_first,new:reset_after_chunks=0", status=200, served_by="original",
         attempts="relay:200,openai:200", fallback="connect_error", shape="stream"),
    dict(name="a comment, then silence (stream)", stream=True,
         fault="new:comment_first,new:stall_after_chunks=0", status=200, served_by="original",
         attempts="relay:200,openai:200", fallback="timeout_first_byte", shape="stream",
         max_s=3),
    # a 2xx stream that ends cleanly before its first event is no answer, never a 200
    dict(name="a stream that ends before its first event", stream=True,
         fault="new:end_after_chunks=0", status=502, attempts="relay:200", shape="error",
         message_parts=["relay: protocol (200)", "stream ended before its first event"]),
    dict(name="a stream of comments only", stream=True,
         fault="new:comment_first,new:end_after_chunks=0", status=502, attempts="relay:200",
         shape="error", message_parts=["relay: protocol (200)"]),
    dict(name="4xx passes through, no fallback", fault="new:status=400", status=400,
         attempts="relay:400", shape="error", served_by="new"),
    dict(name="422 passes through (stream)", stream=True, fault="new:status=422", status=422,
         attempts="relay:422", shape="error", served_by="new"),
    dict(name="both 503: 502 listing each attempt", fault="status=503", status=502,
         attempts="relay:503,openai:503", shape="error",
         message_parts=["relay: upstream_5xx (503) after", "openai: upstream_5xx (503) after"]),
    dict(name="429 from both: 429", fault="status=429,retry_after=3", status=429,
         attempts="relay:429,openai:429", shape="error", headers={"retry-after": "3"}),
    dict(name="a 4xx from the fallback is the answer", fault="new:status=503,original:status=401",
         status=401, attempts="relay:503,openai:401", shape="error"),
    dict(name="hang on both: 504", fault="hang_before_headers", status=504,
         attempts="relay:timeout_first_byte,openai:timeout_first_byte", shape="error",
         message_parts=["relay: timeout_first_byte", "openai: timeout_first_byte"], max_s=3),
]


def case_before_commit_every_class_falls_back():
    with Stack(extra=policy()) as s:
        for c in BEFORE_COMMIT:
            run_case(s, c)


# After the commit point nothing can fall back: the stream ends with `event: error`.
AFTER_COMMIT = [
    dict(name="reset mid-stream", stream=True, fault="new:reset_after_chunks=3", status=200,
         attempts=None, shape="truncated", message="relay: connect_error"),
    dict(name="stall mid-stream", stream=True, fault="new:stall_after_chunks=3", status=200,
         shape="truncated", message="relay: timeout_idle", max_s=3),
    dict(name="clean end without [DONE]", stream=True, fault="new:end_after_chunks=5",
         status=200, shape="truncated", message="relay: protocol"),
]


def case_after_commit_stream_ends_with_error_event():
    with Stack(extra=policy()) as s:
        for c in AFTER_COMMIT:
            c = {k: v for k, v in c.items() if v is not None}
            h = run_case(s, c)
            eq(h.get("x-sim-provider"), "new", f"{c['name']}: committed to new")
            check("x-switchyard-fallback" not in h, f"{c['name']}: no fallback after commit")
        log = s.r.stderr_text()
        check("event=response_truncated" in log, "truncated responses are logged")


def case_total_timeout_mid_stream():
    slow = "    timeouts: { connect_ms: 500, first_byte_ms: 2000, idle_ms: 2000, total_ms: 700 }"
    with Stack(extra=policy(), sim_opts={"chunk_ms": 200, "chunks": 20}, timeouts=slow) as s:
        run_case(s, dict(name="total timeout", stream=True, status=200, shape="truncated",
                         message="relay: timeout_total", max_s=3))


def case_total_timeout_before_commit_is_not_retried_by_default():
    slow = "    timeouts: { connect_ms: 500, first_byte_ms: 10000, idle_ms: 10000, total_ms: 600 }"
    with Stack(extra=policy(), timeouts=slow) as s:
        for stream in (False, True):
            run_case(s, dict(name=f"total timeout before headers (stream={stream})",
                             stream=stream, fault="new:delay_ms=3000", status=504,
                             attempts="relay:timeout_total", shape="error",
                             message_parts=["relay: timeout_total after"], max_s=2))
    with Stack(extra=policy(on="[timeout_total]"), timeouts=slow) as s:
        run_case(s, dict(name="total timeout listed: falls back", fault="new:delay_ms=3000",
                         status=200, served_by="original", attempts="relay:timeout_total,openai:200",
                         fallback="timeout_total", shape="completion", max_s=2))


def case_connect_error_falls_back():
    with Stack(extra=policy(), new_url="http://127.0.0.1:9/v1") as s:
        for stream in (False, True):
            run_case(s, dict(name=f"refused (stream={stream})", stream=stream, status=200,
                             served_by="original", attempts="relay:connect_error,openai:200",
                             fallback="connect_error",
                             shape="stream" if stream else "completion", max_s=2))


def _unanswering_listener():
    """A loopback port whose accept queue is full, so new connections hang in SYN."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fillers = []
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        try:
            f.connect(ls.getsockname())
        except BlockingIOError:
            pass
        fillers.append(f)
    time.sleep(0.1)
    return ls, fillers


def case_connect_timeout_falls_back():
    ls, fillers = _unanswering_listener()
    try:
        url = f"http://127.0.0.1:{ls.getsockname()[1]}/v1"
        with Stack(extra=policy(), new_url=url) as s:
            for stream in (False, True):
                run_case(s, dict(name=f"connect timeout (stream={stream})", stream=stream,
                                 status=200, served_by="original",
                                 attempts="relay:timeout_connect,openai:200",
                                 fallback="timeout_connect",
                                 shape="stream" if stream else "completion", max_s=3))
    finally:
        for f in fillers:
            f.close()
        ls.close()


def case_protocol_error_not_in_policy_is_502():
    with Stack(extra=policy()) as s:
        run_case(s, dict(name="garbage response", fault="new:garbage", status=502,
                         attempts="relay:protocol", shape="error",
                         message_parts=["relay: protocol"]))
    with Stack(extra=policy(on="[protocol]")) as s:
        run_case(s, dict(name="garbage response, protocol listed", fault="new:garbage",
                         status=200, attempts="relay:protocol,openai:200", fallback="protocol",
                         served_by="original", shape="completion"))


def case_4xx_listed_in_policy_falls_back():
    with Stack(extra=policy(on="[upstream_4xx]")) as s:
        run_case(s, dict(name="404 listed", fault="new:status=404", status=200,
                         attempts="relay:404,openai:200", fallback="upstream_4xx",
                         served_by="original", shape="completion"))


def case_retry_same_provider_honours_retry_after():
    with Stack(extra=policy(retry=1, attempts=3, base=10, max_ms=5000)) as s:
        h = run_case(s, dict(name="429 with Retry-After: 1 retried on new, then original",
                             fault="new:status=429,retry_after=1", status=200,
                             attempts="relay:429,relay:429,openai:200", fallback="upstream_429",
                             served_by="original", shape="completion", min_s=0.95, max_s=4))
    with Stack(extra=policy(retry=1, attempts=3, base=10, max_ms=300)) as s:
        run_case(s, dict(name="Retry-After capped at backoff.max_ms",
                         fault="new:status=429,retry_after=5", status=200,
                         attempts="relay:429,relay:429,openai:200", served_by="original",
                         shape="completion", max_s=2))


def case_max_attempts_bounds_retries():
    with Stack(extra=policy(retry=3, attempts=2, base=1, max_ms=5)) as s:
        run_case(s, dict(name="max_attempts 2", fault="status=500", status=502,
                         attempts="relay:500,relay:500", shape="error"))
    with Stack(extra=policy(attempts=1)) as s:
        run_case(s, dict(name="max_attempts 1: the only answer passes through",
                         fault="new:status=503", status=503, attempts="relay:503"))


# ---- load-shaped cases: budget, ejection, clients that leave or stall -----------------

def _drive(router, n, stream=False, threads=8, fault=None, prefix="load", pace=0.0):
    """n requests from n distinct users; returns [(status, headers, seconds)]."""
    import concurrent.futures
    import http.client

    local = threading.local()

    def one(i):
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=20)
        h = {"Content-Type": "application/json", "x-user-id": f"{prefix}-{i}"}
        if fault:
            h["x-sim-fault"] = fault
        if pace:
            time.sleep(pace)
        t0 = time.monotonic()
        try:
            conn.request("POST", "/v1/chat/completions", json.dumps(dict(CHAT, stream=stream)), h)
            resp = conn.getresponse()
            resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            return resp.status, hdrs, time.monotonic() - t0
        except Exception:
            local.conn = None
            raise

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(n)))


def case_all_fallbacks_succeed_without_budget_limit():
    # New answers 503 to everything, 50% split, no budget limit and no ejection.
    with Stack(percentage=50, extra=policy(percent=100, minps=100000, eject=0)) as s:
        s.r.stop()
        s.procs.remove(s.r)
        s.n.stop()
        s.procs.remove(s.n)
        s.n = Sim("new", "--error-rate", "1", "--error-status", "503")
        s.procs.append(s.n)
        s.r = Router(router_config(s.o, s.n, percentage=50,
                                   extra=policy(percent=100, minps=100000, eject=0)))
        s.procs.append(s.r)
        results = _drive(s.r, 1000)
        statuses = [st for st, _, _ in results]
        eq(statuses.count(200), 1000, "every request succeeds")
        fell = sum(1 for _, h, _ in results if h.get("x-switchyard-fallback") == "upstream_5xx")
        check(400 <= fell <= 600, f"about half fell back: {fell}")
        eq(s.n.stats()["requests"], fell, "each fallback cost exactly one request to new")
        print(f"  no budget limit: 1000/1000 succeeded, {fell} through fallback")


def case_budget_caps_fallbacks_and_errors_are_prompt():
    o = Sim("original")
    n = Sim("new", "--error-rate", "1", "--error-status", "503")
    r = None
    try:
        r = Router(router_config(o, n, percentage=50, extra=policy(percent=20, minps=5, eject=0)))
        t0 = time.monotonic()
        results = _drive(r, 1000)
        took = time.monotonic() - t0
        fell = sum(1 for st, h, _ in results if st == 200 and h.get("x-switchyard-fallback"))
        refused = [(st, h, t) for st, h, t in results if st != 200]
        # Two workers, each: max(5/s, 20% of its requests in the last second).
        bound = 0.2 * 1000 + 2 * 5 * (took + 1) + 10
        check(fell <= bound, f"{fell} fallbacks above the budget bound {bound:.0f}")
        check(fell >= 100, f"only {fell} fallbacks: the budget is not being used")
        check(len(refused) > 0, "no request was refused by the budget")
        for st, h, t in refused:
            eq(st, 503, "a refused request gets the provider's own error")
            eq(h.get("x-switchyard-attempts"), "relay:503", "one attempt only")
        slow = sorted(t for _, _, t in refused)[int(len(refused) * 0.99) - 1]
        check(slow < 0.25, f"refused requests waited (p99 {slow * 1000:.0f} ms)")
        eq(len(results), 1000, "every request answered")
        print(f"  budget 20%: {fell} fallbacks (bound {bound:.0f}), {len(refused)} refused, "
              f"refused p99 {slow * 1000:.1f} ms, {took:.2f}s for 1000 requests")
        log = r.stderr_text()
        check("event=retry_budget_exhausted" in log, "budget exhaustion is logged")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_ejected_provider_gets_only_probes():
    o = Sim("original")
    n = Sim("new", "--error-rate", "1", "--error-status", "503")
    r = None
    try:
        r = Router(router_config(o, n, percentage=50,
                                 extra=policy(percent=20, minps=5, eject=5, eject_base=500,
                                              eject_max=1000)))
        t0 = time.monotonic()
        results = _drive(r, 1000, threads=4, pace=0.01)  # ~3 s: several probe periods
        took = time.monotonic() - t0
        ok = sum(1 for st, _, _ in results if st == 200)
        ejected = sum(1 for _, h, _ in results if h.get("x-switchyard-fallback") == "ejected")
        hits = n.stats()["requests"]
        # Before ejection: the 5 consecutive failures, plus what was in flight on the
        # other worker and threads; after: at most one probe per back-off period.
        probes_bound = 1 + int(took / 0.5) + 1
        check(hits <= 5 + 4 + probes_bound, f"new received {hits} requests in {took:.1f}s")
        check(hits >= 5 + 2, f"new received {hits} requests in {took:.1f}s: no probe was sent")
        check(ejected >= 400, f"only {ejected} requests rerouted while new was ejected")
        check(ok >= 990, f"{ok} of 1000 succeeded")
        check("event=provider_ejected provider=relay" in r.stderr_text(), "ejection logged")
        print(f"  ejection: new received {hits} requests of 1000 in {took:.2f}s, {ejected} "
              f"rerouted as ejected, {ok} succeeded")
    finally:
        for p in (r, n, o):
            if p:
                p.stop()


def case_ejection_probe_and_recovery():
    with Stack(percentage=100, extra=policy(percent=100, minps=1000, eject=3, eject_base=400,
                                            eject_max=5000)) as s:
        bad = dict(name="failing", fault="new:status=503", status=200, served_by="original",
                   attempts="relay:503,openai:200")
        for i in range(3):
            run_case(s, dict(bad, name=f"failure {i + 1}"))
        run_case(s, dict(name="ejected: straight to original", status=200, served_by="original",
                         attempts="openai:200", fallback="ejected"))
        time.sleep(0.5)
        run_case(s, dict(bad, name="probe fails: ejected again, twice as long"))
        run_case(s, dict(name="still ejected", status=200, served_by="original",
                         fallback="ejected"))
        time.sleep(0.5)
        run_case(s, dict(name="still ejected after the first period", status=200,
                         served_by="original", fallback="ejected"))
        time.sleep(0.45)
        run_case(s, dict(name="probe succeeds", status=200, served_by="new", attempts="relay:200"))
        for i in range(3):
            run_case(s, dict(name=f"back in service {i}", status=200, served_by="new",
                             attempts="relay:200"))


def _open_stream(port, body, fault=None, user="client"):
    payload = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    extra = f"x-sim-fault: {fault}\r\n" if fault else ""
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-user-id: {user}\r\n"
               f"Content-Type: application/json\r\n{extra}Content-Length: {len(payload)}\r\n\r\n"
               ).encode() + payload)
    return s


def _abort_delay_ms(sim, closed_at):
    """How long after closed_at (time.monotonic) the sim saw its client leave."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        st = sim.stats()
        if st["last_abort_ms"] >= closed_at * 1000 - 1:
            return st["last_abort_ms"] - closed_at * 1000
        time.sleep(0.01)
    raise TestFailure(f"the upstream request was not closed: {sim.stats()}")


def case_client_leaving_closes_upstream_within_100ms():
    slow = "    timeouts: { connect_ms: 1000, first_byte_ms: 10000, idle_ms: 10000, total_ms: 60000 }"
    with Stack(extra=policy(retry=1, base=3000, max_ms=3000), timeouts=slow,
               sim_opts={"chunk_ms": 100, "chunks": 50}) as s:
        # Before the first byte: the upstream hangs before its headers.
        for stream in (False, True):
            c = _open_stream(s.r.port, dict(CHAT, stream=stream), fault="new:hang_before_headers")
            time.sleep(0.3)
            c.close()
            closed = time.monotonic()
            d = _abort_delay_ms(s.n, closed)
            check(d < 100, f"before first byte (stream={stream}): upstream closed after {d:.0f} ms")
            print(f"  client left before first byte (stream={stream}): upstream closed in {d:.1f} ms")
        # Mid-stream.
        c = _open_stream(s.r.port, dict(CHAT, stream=True))
        got = b""
        while got.count(b"data:") < 3:
            got += c.recv(4096)
        c.close()
        closed = time.monotonic()
        d = _abort_delay_ms(s.n, closed)
        check(d < 100, f"mid-stream: upstream closed after {d:.0f} ms")
        print(f"  client left mid-stream: upstream closed in {d:.1f} ms")
        # During a backoff wait: nothing is in flight; the retry must never start.
        # (Retry-After makes the wait exactly max_ms; full jitter alone could be short.)
        before = s.n.stats()["requests"]
        c = _open_stream(s.r.port, dict(CHAT), fault="new:status=503,retry_after=3")
        time.sleep(0.5)
        c.close()
        time.sleep(3.2)
        eq(s.n.stats()["requests"] - before, 1, "no retry after the client left during backoff")
        status, _, _ = s.r.request("GET", "/healthz")
        eq(status, 200, "router healthy")


def case_stalled_client_is_dropped():
    with Stack(extra=policy(stall=800), sim_opts={"chunks": 60000}) as s:
        c = _open_stream(s.r.port, dict(CHAT, stream=True))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        t0 = time.monotonic()
        deadline = t0 + 10
        while time.monotonic() < deadline and "event=client_stalled" not in s.r.stderr_text():
            time.sleep(0.05)
        took = time.monotonic() - t0
        check("event=client_stalled" in s.r.stderr_text(), "stalled client not dropped")
        check(took < 5, f"dropped after {took:.1f}s with client_stall_ms 800")
        d = _abort_delay_ms(s.n, t0)
        check(d >= 0, "upstream closed")
        c.close()
        rss = _rss_kb(s.r.proc.pid)
        check(rss < 200 * 1024, f"router RSS {rss} kB: the stream was buffered, not paused")
        status, _, _ = s.r.chat(CHAT, {"x-user-id": "after"})
        eq(status, 200, "still serving")


def case_slow_but_reading_client_is_not_dropped():
    # client_stall_ms is for a client that stops reading; one that reads slower than the
    # provider sends (a phone on a poor link) is paused behind, never dropped while it
    # keeps reading. The stall clock restarted only when the backlog emptied, so such a
    # client was cut mid-stream with no error event.
    with Stack(extra=policy(stall=800), sim_opts={"chunks": 60000}) as s:
        c = _open_stream(s.r.port, dict(CHAT, stream=True))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(5)
        got, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 4:  # five stall times, reading ~160 KB/s
            chunk = c.recv(16384)
            check(chunk, f"the stream ended under a reading client after {got} bytes")
            got += len(chunk)
            time.sleep(0.1)
        check("event=client_stalled" not in s.r.stderr_text(),
              f"a client reading {got / 4 / 1024:.0f} KiB/s was dropped as stalled")
        print(f"  read {got} bytes in 4 s while paused behind, not dropped")
        c.close()


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def case_memory_returns_to_baseline_after_10000_disconnects():
    import concurrent.futures
    # Under ASan, freed memory sits in a quarantine (256 MB by default) that would read as
    # growth; a small one keeps use-after-free detection and lets RSS settle after warm-up.
    env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:quarantine_size_mb=4:"
                           "thread_local_quarantine_size_kb=64"}
    with Stack(percentage=50, extra=policy(), sim_opts={"chunk_ms": 20, "chunks": 200},
               env=env) as s:

        def leave(i):
            c = _open_stream(s.r.port, dict(CHAT, stream=True), user=f"leaver-{i}")
            try:
                c.recv(512)
            finally:
                c.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(leave, range(1000)))
        time.sleep(0.5)
        base = _rss_kb(s.r.proc.pid)
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(leave, range(10000)))
        time.sleep(1.0)
        after = _rss_kb(s.r.proc.pid)
        check(after <= base * 1.10 + 2048,
              f"RSS grew from {base} kB to {after} kB over 10,000 disconnects")
        print(f"  RSS after warm-up {base} kB, after 10,000 disconnects {after} kB")
        st = s.o.stats()["client_aborts"] + s.n.stats()["client_aborts"]
        check(st >= 10000, f"upstreams saw only {st} aborts")
        status, _, _ = s.r.chat(CHAT, {"x-user-id": "after"})
        eq(status, 200, "still serving")


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ws_open(port):
    """A minimal RFC 6455 client: the handshake, then masked text frames."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            raise TestFailure(f"WebSocket handshake cut: {head!r}")
        head += c
    check(head.startswith(b"HTTP/1.1 101"), f"WebSocket handshake answered {head[:80]!r}")
    return s


def _ws_send_text(s, payload):
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    hdr = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def _ws_recv_text(s, timeout):
    """The next text message's payload (server frames are unmasked), or None."""
    s.settimeout(timeout)
    buf = b""
    try:
        while True:
            while len(buf) < 2:
                c = s.recv(4096)
                if not c:
                    return None
                buf += c
            n, at = buf[1] & 0x7F, 2
            if n == 126:
                while len(buf) < 4:
                    buf += s.recv(4096)
                n, at = int.from_bytes(buf[2:4], "big"), 4
            while len(buf) < at + n:
                c = s.recv(4096)
                if not c:
                    return None
                buf += c
            op, payload, buf = buf[0] & 0x0F, buf[at:at + n], buf[at + n:]
            if op == 1:
                return payload
            if op == 8:
                return None
    except socket.timeout:
        return None


def case_out_of_descriptors_is_ours_not_the_providers():
    """With no descriptor left, an upstream socket cannot be made: that is switchyard's
    trouble, answered 503 local_error, and it must not eject a healthy provider nor
    spin on accept()."""
    o = Sim("original", chunk_ms=200, chunks=100)  # 20 s streams: none ends during the test
    n = Sim("new", chunk_ms=200, chunks=100)
    r = None
    saved = os.environ.get("SWITCHYARD_WRAPPER")
    os.environ["SWITCHYARD_WRAPPER"] = "prlimit --nofile=64:64 -- " + (saved or "")
    held = []
    try:
        r = Router(router_config(o, n, percentage=0, workers=1,
                                 extra=policy(eject=2, eject_base=5000, eject_max=5000)))
        body = json.dumps(dict(CHAT, stream=True)).encode()
        req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-user-id: fd\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() +
               b"\r\n\r\n" + body)
        # Each held stream costs two descriptors (client, upstream). Make the free count
        # odd, so that the last client is accepted and its upstream socket is what fails
        # (with an even count the last client would wait in the backlog instead).
        free = 64 - len(os.listdir(f"/proc/{r.proc.pid}/fd"))
        if free % 2 == 0:
            idle = socket.create_connection(("127.0.0.1", r.port))
            held.append(idle)
            time.sleep(0.2)
        refused = None
        for _ in range(200):  # one at a time, each stream held open
            s = socket.create_connection(("127.0.0.1", r.port))
            s.settimeout(5)
            s.sendall(req)
            head = b""
            while b"\r\n\r\n" not in head:
                c = s.recv(4096)
                if not c:
                    break
                head += c
            if head.startswith(b"HTTP/1.1 200"):
                held.append(s)
                continue
            refused = head
            s.settimeout(0.5)
            try:
                while b"local_error" not in refused:
                    c = s.recv(4096)
                    if not c:
                        break
                    refused += c
            except socket.timeout:
                pass
            s.close()
            break
        check(refused is not None, f"{len(held)} streams held and no refusal: the limit did not bite")
        check(refused.startswith(b"HTTP/1.1 503"), f"out of descriptors answered {refused[:900]!r}")
        check(b"local_error" in refused and b"Retry-After: 1" in refused,
              f"not marked as switchyard's own: {refused[:400]!r}")
        # A WebSocket chat in the same state: accepted with the last descriptor, its
        # upstream socket cannot be made. It gets an error message, and the router lives.
        ws = _ws_open(r.port)
        _ws_send_text(ws, json.dumps(dict(CHAT, type="chat", id="c-fd")).encode())
        msg = _ws_recv_text(ws, 5)
        ws.close()
        check(msg is not None and b'"local_error"' in msg,
              f"WebSocket chat out of descriptors got {msg!r}")
        check(r.proc.poll() is None, "the router died on a WebSocket chat out of descriptors")
        # More clients than descriptors: accept() fails; the worker must not spin.
        extra = open_idle(r.port, 5)
        c0 = _cpu_seconds(r.proc.pid)
        time.sleep(1.0)
        spent = _cpu_seconds(r.proc.pid) - c0
        for e in extra:
            e.close()
        check(spent < 0.5, f"router used {spent:.2f} s of CPU in 1 s while out of descriptors")
        for s in held:
            s.close()
        held = []
        time.sleep(0.5)
        for i in range(5):
            st, h, _ = r.chat(CHAT, {"x-user-id": f"after-{i}"}, timeout=10)
            eq(st, 200, "served once descriptors are back")
            eq(h.get("x-switchyard-provider"), "openai", "served by the original provider")
            check("x-switchyard-fallback" not in h, f"fell back after recovery: {h}")
        log = r.stderr_text()
        check("provider_ejected" not in log, "a healthy provider was ejected for a local error")
        check("event=accept_failed" in log, "accept failure not logged")
        _, _, metrics = r.admin("GET", "/metrics")
        check(b'class="local_error"' in metrics, "local_error missing from /metrics")
        print(f"  out of descriptors: 503 local_error, no "
              f"ejection, {spent:.2f} s CPU in 1 s with accept() failing")
    finally:
        for s in held:
            s.close()
        if saved is None:
            os.environ.pop("SWITCHYARD_WRAPPER", None)
        else:
            os.environ["SWITCHYARD_WRAPPER"] = saved
        for p in (r, n, o):
            if p:
                p.stop()


class _ClosingProvider:
    """A provider that answers each request with keep-alive, then closes the connection
    close_ms later: the router's cached connection dies while idle."""

    BODY = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                 "total_tokens": 2}}).encode()

    def __init__(self, close_ms):
        self.close_ms = close_ms
        self.accepted = 0
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.url = f"http://127.0.0.1:{self.ls.getsockname()[1]}/v1"
        self.stop = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        self.ls.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                continue
            self.accepted += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        c.settimeout(5)
        try:
            head, _ = read_http_request(c)
            if not head:
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      + str(len(self.BODY)).encode() + b"\r\n\r\n" + self.BODY)
            time.sleep(self.close_ms / 1000)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.t.join()
        self.ls.close()


def case_provider_closing_idle_connections():
    # switchyard keeps a cached upstream connection registered with epoll while it is
    # idle (router/upstream.c). When the provider closes it, the router must neither
    # spin on the readable socket nor lose the registration of the next connection that
    # gets the same descriptor number.
    for close_ms in (30, 0):
        prov = _ClosingProvider(close_ms)
        r = None
        try:
            r = Router(router_config(prov.url, prov.url, percentage=0, workers=1))
            for i in range(30):
                st, _, body = r.chat(CHAT, {"x-user-id": f"u{i}"}, timeout=5)
                eq(st, 200, f"request {i} after the provider closed the last connection")
                check(json.loads(body)["choices"][0]["message"]["content"] == "hi", "body")
                time.sleep(0.05)
            c0 = _cpu_seconds(r.proc.pid)
            time.sleep(1.0)
            spent = _cpu_seconds(r.proc.pid) - c0
            check(spent < 0.2, f"router used {spent:.2f} s of CPU in 1 s with closed idle sockets")
            check(prov.accepted >= 30, f"only {prov.accepted} upstream connections for 30 requests")
            print(f"  provider closing after {close_ms} ms: 30/30 served over "
                  f"{prov.accepted} connections, {spent:.2f} s CPU in 1 s idle")
        finally:
            if r:
                r.stop()
            prov.close()


def case_stalled_websocket_chat_is_dropped_not_fatal():
    # A WebSocket chat has no evhttp connection: dropping it as a stalled client must
    # close its WebSocket (1013), not free a connection it does not have (it crashed).
    with Stack(percentage=0, extra=policy(stall=1000), sim_opts={"chunks": 50000}) as s:
        ws = _ws_open(s.r.port)
        ws.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        _ws_send_text(ws, json.dumps(dict(CHAT, type="chat", id="c-slow")).encode())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "event=client_stalled" not in s.r.stderr_text():
            time.sleep(0.1)
        check("event=client_stalled" in s.r.stderr_text(), "stalled WebSocket chat not dropped")
        time.sleep(0.3)
        check(s.r.proc.poll() is None, "the router died dropping a stalled WebSocket chat")
        st, _, _ = s.r.chat(CHAT, {"x-user-id": "after"}, timeout=10)
        eq(st, 200, "still serving after the stalled chat")
        ws.close()
        print("  stalled WebSocket chat dropped (1013), router serving")


def _server_side_owned(server_port, client_port):
    """Is the server end of this loopback connection still a socket a process holds?
    (/proc/net/tcp: an orphaned socket, closed by its process, has inode 0.)"""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            v = line.split()
            lport = int(v[1].split(":")[1], 16)
            rport = int(v[2].split(":")[1], 16)
            if lport == server_port and rport == client_port and v[9] != "0":
                return True
    return False


def case_a_websocket_that_never_reads_its_close_is_dropped():
    # close_with queued the close frame and waited for it to be written; a client that
    # reads nothing never let it out, so the connection, its socket and its buffers were
    # held for good (and pushes still counted it as delivered). It is dropped
    # CLOSE_GRACE_MS (5 s) after the close frame.
    with Stack(percentage=0, extra=policy(stall=1000), sim_opts={"chunks": 50000}) as s:
        ws = _ws_open(s.r.port)
        ws.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client_port = ws.getsockname()[1]
        _ws_send_text(ws, json.dumps(dict(CHAT, type="chat", id="c-never")).encode())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "event=client_stalled" not in s.r.stderr_text():
            time.sleep(0.1)
        check("event=client_stalled" in s.r.stderr_text(), "the chat was not dropped")
        t0 = time.monotonic()
        check(_server_side_owned(s.r.port, client_port), "the connection is open at the close")
        while time.monotonic() - t0 < 9 and _server_side_owned(s.r.port, client_port):
            time.sleep(0.2)
        held = _server_side_owned(s.r.port, client_port)
        took = time.monotonic() - t0
        ws.close()
        check(not held, "the router still holds a WebSocket whose close frame nobody reads")
        print(f"  unread close frame: connection dropped after {took:.1f} s")


def case_a_browser_stream_that_stops_reading_is_dropped_despite_heartbeats():
    # Slow-but-reading counts progress by what the client took off its connection. The
    # heartbeats a browser stream gets while paused add chunk framing to the backlog and
    # not to the count, which read as a change and restarted the stall clock for ever.
    extra = policy(stall=1500) + "realtime: { heartbeat_ms: 300 }\n"
    slow_total = "    timeouts: { connect_ms: 500, first_byte_ms: 2000, idle_ms: 2000, total_ms: 30000 }"
    with Stack(percentage=0, extra=extra, sim_opts={"chunks": 100000},
               timeouts=slow_total) as s:
        c = socket.create_connection(("127.0.0.1", s.r.port), timeout=10)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(b"GET /v1/stream?model=gpt-4.1&message=hi HTTP/1.1\r\nHost: x\r\n"
                  b"x-user-id: sse-stall\r\n\r\n")
        c.recv(1024)  # the head, then nothing more is read
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "event=client_stalled" not in s.r.stderr_text():
            time.sleep(0.1)
        c.close()
        check("event=client_stalled" in s.r.stderr_text(),
              "a browser stream that stopped reading was never dropped (heartbeats)")
