"""Core router cases: proxying through each provider, streaming, the sticky split,
model mapping, header hygiene and every bad-input status."""
import contextlib
import json
import signal
import socket
import time

from harness import (Router, Sim, check, eq, expected_variant, openai_error, raw_request,
                     read_http_request, request, router_config, sse_events, status_of)

CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hello there"}]}


@contextlib.contextmanager
def stack(percentage=10, sim_opts=None, new_opts=None, env=None, **cfg):
    """Two sims (original, new) and a router in front of them (env: the router's)."""
    procs = []
    try:
        o = Sim("original", **(sim_opts or {}))
        procs.append(o)
        n = Sim("new", **(new_opts if new_opts is not None else (sim_opts or {})))
        procs.append(n)
        r = Router(router_config(o, n, percentage=percentage, **cfg), env=env)
        procs.append(r)
        yield o, n, r
    finally:
        errors = []
        for p in reversed(procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - report every process's problem
                errors.append(str(e))
        if errors:
            raise AssertionError("\n".join(errors))


def case_nonstreaming_through_each_provider():
    for pct, provider, sim_name in ((0, "openai", "original"), (100, "relay", "new")):
        with stack(percentage=pct) as (o, n, r):
            status, h, body = r.chat(CHAT, {"x-user-id": "u1"})
            eq(status, 200, "status")
            doc = json.loads(body)
            eq(doc["object"], "chat.completion", "object")
            check(doc["choices"][0]["message"]["content"], "empty content")
            check(doc["usage"]["completion_tokens"] > 0, "usage")
            eq(h.get("x-switchyard-provider"), provider, "provider header")
            eq(h.get("x-sim-provider"), sim_name, "served by")
            eq(h.get("x-switchyard-variant"), "new" if pct == 100 else "original", "variant")
            check(h.get("x-switchyard-request-id"), "request id header")
            eq(h.get("content-type"), "application/json", "content type")


def case_streaming_through_each_provider():
    for pct, sim_name in ((0, "original"), (100, "new")):
        with stack(percentage=pct) as (o, n, r):
            status, h, body = r.chat(dict(CHAT, stream=True), {"x-user-id": "u1"})
            eq(status, 200, "status")
            check(h.get("content-type", "").startswith("text/event-stream"), "content type")
            eq(h.get("x-sim-provider"), sim_name, "served by")
            events = sse_events(body)
            eq(events[-1][1], "[DONE]", "last event")
            chunks = [json.loads(d) for _, d in events[:-1]]
            check(all(c["object"] == "chat.completion.chunk" for c in chunks), "chunk objects")
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                           if c["choices"])
            check(len(text) > 0, "no content streamed")
            # Without include_usage the client gets no usage chunk.
            check(all("usage" not in c or c["usage"] is None for c in chunks), "unasked usage")


def _read_stream_timed(port, body, headers=None):
    """POSTs a streaming request on a raw socket; returns [(seconds, bytes)] as they arrive."""
    payload = json.dumps(body).encode()
    h = {"Host": "x", "Content-Type": "application/json", "Content-Length": str(len(payload))}
    h.update(headers or {})
    req = ("POST /v1/chat/completions HTTP/1.1\r\n" +
           "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode() + payload
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    t0 = time.monotonic()
    s.sendall(req)
    arrivals = []
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            arrivals.append((time.monotonic() - t0, c))
            if b"[DONE]" in c or b"0\r\n\r\n" in c:
                break
    finally:
        s.close()
    return arrivals


def case_stream_is_forwarded_as_it_arrives():
    # 6 chunks 150 ms apart: the first content must reach the client long before the end.
    with stack(percentage=0, sim_opts={"chunk_ms": 150, "chunks": 6}) as (o, n, r):
        arrivals = _read_stream_timed(r.port, dict(CHAT, stream=True))
        joined = b"".join(c for _, c in arrivals)
        check(b"[DONE]" in joined, "stream incomplete")
        first_content = next(t for t, c in arrivals if b'"content":"' in c and b'"role"' not in c
                             or c.count(b"data:") > 1)
        last = arrivals[-1][0]
        check(last >= 0.7, f"stream finished too fast ({last:.2f}s): chunk delay not applied?")
        check(first_content < last - 0.4,
              f"first content at {first_content:.2f}s, end at {last:.2f}s: buffered?")
        check(len(arrivals) >= 4, f"stream arrived in {len(arrivals)} pieces: buffered?")


def case_sticky_split_proportions_and_stickiness():
    users = [f"user-{i}" for i in range(1000)]
    with stack(percentage=37.5) as (o, n, r):
        seen = {}
        for u in users:
            status, h, _ = r.request("POST", "/v1/embeddings",
                                     {"model": "text-embedding-3-small", "input": "x"},
                                     {"x-user-id": u})
            eq(status, 200, "status")
            seen[u] = h["x-switchyard-variant"]
            want = expected_variant("use_new_provider", u, 3750)
            eq(seen[u], want, f"variant of {u} (flagd-compatible bucketing)")
        share = sum(v == "new" for v in seen.values()) / len(users)
        check(0.32 <= share <= 0.43, f"share of new at 37.5%: {share:.3f}")
        # Same user, same answer, every time, whichever worker serves it.
        for u in users[:50]:
            for _ in range(3):
                _, h, _ = r.chat(CHAT, {"x-user-id": u})
                eq(h["x-switchyard-variant"], seen[u], f"sticky variant of {u}")


def case_sticky_sources_in_order():
    with stack(percentage=50) as (o, n, r):
        # header wins over body:user, body:user over the api key.
        for i in range(40):
            key = f"k{i}"
            _, h, _ = r.chat(dict(CHAT, user="body-" + key),
                             {"x-user-id": key, "Authorization": "Bearer sk-" + key})
            eq(h["x-switchyard-variant"], expected_variant("use_new_provider", key, 5000),
               "header source")
            _, h, _ = r.chat(dict(CHAT, user="body-" + key), {"Authorization": "Bearer sk-" + key})
            eq(h["x-switchyard-variant"],
               expected_variant("use_new_provider", "body-" + key, 5000), "body source")
            _, h, _ = r.chat(CHAT, {"Authorization": "Bearer sk-" + key})
            eq(h["x-switchyard-variant"], expected_variant("use_new_provider", "sk-" + key, 5000),
               "api_key source")


def case_allow_deny_and_model_scope():
    flag_extra = ('    allow: ["internal-*"]\n    deny: ["vip-1"]\n'
                  '    models: ["gpt-4.1", "claude-sonnet-4.5"]\n')
    with stack(percentage=0, flag_extra=flag_extra) as (o, n, r):
        _, h, _ = r.chat(CHAT, {"x-user-id": "internal-alice"})
        eq(h["x-switchyard-variant"], "new", "allow-listed prefix")
        _, h, _ = r.chat(dict(CHAT, model="gpt-4.1-mini"), {"x-user-id": "internal-alice"})
        eq(h["x-switchyard-variant"], "original", "model out of scope")
    with stack(percentage=100, flag_extra=flag_extra) as (o, n, r):
        _, h, _ = r.chat(CHAT, {"x-user-id": "vip-1"})
        eq(h["x-switchyard-variant"], "original", "deny-listed")
        _, h, _ = r.chat(CHAT, {"x-user-id": "vip-2"})
        eq(h["x-switchyard-variant"], "new", "not deny-listed")


def case_model_mapping_and_body_preserved():
    with stack(percentage=100) as (o, n, r):
        n.reset()
        # Integers above 2^53, odd spacing and key order must reach the upstream untouched.
        raw = ('{ "model" : "claude-sonnet-4.5", "seed": 12345678901234567890,'
               ' "messages":[{"role":"user","content":"h\\u00e9llo"}], "temperature":0.70 }')
        status, h, body = r.request("POST", "/v1/chat/completions", raw,
                                    {"x-user-id": "map-1"})
        eq(status, 200, "status")
        got = n.requests()[-1]
        eq(got["body"], raw.replace('"claude-sonnet-4.5"', '"claude-sonnet-4-5"'),
           "body sent upstream")
        # An unmapped model goes through byte for byte.
        raw2 = '{"model":"gpt-4.1","messages":[],"n":1}'
        r.request("POST", "/v1/chat/completions", raw2, {"x-user-id": "map-1"})
        eq(n.requests()[-1]["body"], raw2, "unmapped body")
    with stack(percentage=0) as (o, n, r):
        raw = '{"model":"claude-sonnet-4.5","messages":[]}'
        r.request("POST", "/v1/chat/completions", raw, {"x-user-id": "map-1"})
        eq(o.requests()[-1]["body"], raw, "original has no mapping")


def case_header_hygiene():
    opts = {"original_extra": "    api_key_env: IT_ORIGINAL_KEY",
            "new_extra": "    api_key_env: IT_NEW_KEY"}
    env = {"IT_ORIGINAL_KEY": "sk-orig-SECRET-1", "IT_NEW_KEY": "sk-new-SECRET-2"}
    procs = []
    try:
        o = Sim("original", "--api-key", "sk-orig-SECRET-1")
        procs.append(o)
        n = Sim("new", "--api-key", "sk-new-SECRET-2")
        procs.append(n)
        r = Router(router_config(o, n, percentage=50, **opts), env=env)
        procs.append(r)
        client_headers = {
            "Authorization": "Bearer sk-client-CLIENTKEY",
            "Cookie": "session=abc",
            "OpenAI-Organization": "org-1",
            "OpenAI-Project": "proj-1",
            "Idempotency-Key": "idem-1",
            "Accept": "application/json",
            "Proxy-Authorization": "Basic xyz",
            "X-Custom-Secret": "nope",
            "x-request-id": "req-abc-123",
        }
        for i in range(30):
            for stream in (False, True):
                status, h, body = r.chat(dict(CHAT, stream=stream),
                                         dict(client_headers, **{"x-user-id": f"u{i}"}))
                eq(status, 200, "status (provider key accepted by the sim)")
                eq(h.get("x-switchyard-request-id"), "req-abc-123", "request id echoed")
                blob = json.dumps(h) + body.decode()
                check("SECRET" not in blob, "a provider key reached the client")
        for sim, key in ((o, "sk-orig-SECRET-1"), (n, "sk-new-SECRET-2")):
            reqs = sim.requests()
            check(reqs, f"{sim.name} got no requests")
            for rq in reqs:
                hd = {k.lower(): v for k, v in rq["headers"].items()}
                eq(hd.get("authorization"), "Bearer " + key, "upstream Authorization")
                check("CLIENTKEY" not in json.dumps(rq), "client key reached an upstream")
                for gone in ("cookie", "proxy-authorization", "x-custom-secret", "x-user-id"):
                    check(gone not in hd, f"{gone} was forwarded")
                eq(hd.get("openai-organization"), "org-1", "OpenAI-Organization")
                eq(hd.get("openai-project"), "proj-1", "OpenAI-Project")
                eq(hd.get("idempotency-key"), "idem-1", "Idempotency-Key")
                eq(hd.get("content-type"), "application/json", "Content-Type")
                check(hd.get("host", "").startswith("127.0.0.1:"), "Host is the provider's")
                check("expect" not in hd, "Expect forwarded")
        log = r.stderr_text()
        check("SECRET" not in log and "CLIENTKEY" not in log, "a key reached the log")
    finally:
        for p in reversed(procs):
            p.stop()


def case_bad_input_statuses():
    with stack(percentage=10, extra="limits: { max_body_bytes: 65536, max_header_bytes: 8192 }"
               ) as (o, n, r):
        status, _, body = r.request("POST", "/v1/chat/completions", "{not json")
        eq(status, 400, "malformed JSON")
        eq(openai_error(body)["type"], "invalid_request_error", "error type")
        status, _, body = r.request("POST", "/v1/chat/completions", "[1,2]")
        eq(status, 400, "JSON array body")
        openai_error(body)
        status, _, body = r.request("POST", "/v1/chat/completions",
                                    '{"model":"a","model":"b","messages":[]}')
        eq(status, 400, "duplicate model key")
        openai_error(body)
        status, _, body = r.request("POST", "/v1/chat/completions", '{"model":5}')
        eq(status, 400, "model of the wrong type")
        big = json.dumps(dict(CHAT, pad="x" * 70000))
        status, _, _ = r.request("POST", "/v1/chat/completions", big)
        eq(status, 413, "body over the limit")
        raw = raw_request(r.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" +
                          b"X-Big: " + b"a" * 9000 + b"\r\nContent-Length: 2\r\n\r\n{}")
        eq(status_of(raw), 431, f"headers over the limit: {raw[:80]!r}")
        # Far over: libevent refuses before the router sees it; the connection is closed.
        raw = raw_request(r.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" +
                          b"X-Big: " + b"a" * 40000 + b"\r\nContent-Length: 2\r\n\r\n{}")
        check(status_of(raw) in (400, 413, 431), f"headers far over the limit: {raw[:80]!r}")
        status, _, body = r.request("GET", "/nope")
        eq(status, 404, "unknown route")
        openai_error(body)
        status, h, body = r.request("GET", "/v1/chat/completions")
        eq(status, 405, "wrong method")
        eq(h.get("allow"), "POST", "Allow header")
        openai_error(body)
        status, _, _ = r.request("DELETE", "/v1/models")
        eq(status, 405, "wrong method on /v1/models")
        for path in ("/v1/../admin", "/v1/%2e%2e/x", "/v1/a/./b", "/v1/a%2fb", "/v1/a\\b"):
            raw = raw_request(r.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            eq(status_of(raw), 400, f"unsafe path {path}")
        # An absolute-form target cannot pick the host: it still goes to a provider.
        o.reset()
        n.reset()
        raw = raw_request(r.port, b"GET http://169.254.169.254/v1/models HTTP/1.1\r\n"
                          b"Host: 169.254.169.254\r\nx-user-id: abs\r\n\r\n")
        eq(status_of(raw), 200, "absolute-form target")
        check(len(o.requests()) + len(n.requests()) == 1, "went to a configured provider")
        status, _, body = r.request("GET", "/healthz")
        eq(status, 200, "still healthy")


def case_other_routes_proxied_verbatim():
    with stack(percentage=0) as (o, n, r):
        status, h, body = r.request("GET", "/v1/models", headers={"x-user-id": "m"})
        eq(status, 200, "models")
        eq(json.loads(body)["object"], "list", "models object")
        o.reset()
        status, h, body = r.request("GET", "/v1/files?limit=2&order=desc",
                                    headers={"x-user-id": "m"})
        eq(status, 404, "unknown upstream route passes the upstream's status through")
        got = o.requests()[-1]
        eq(got["path"], "/v1/files", "path")
        eq(got["query"], "limit=2&order=desc", "query")
        eq(got["method"], "GET", "method")
        eq(openai_error(body)["code"], "unknown_url", "upstream's error body")


def case_upstream_down_gives_openai_error():
    dead = "http://127.0.0.1:9/v1"  # discard port: connection refused
    r = Router(router_config(dead, dead.replace(":9/", ":7/"), percentage=100))
    try:
        t0 = time.monotonic()
        status, h, body = r.chat(CHAT, {"x-user-id": "u"})
        eq(status, 502, "status")
        err = openai_error(body)
        check("relay: connect_error" in err["message"] and "openai: connect_error" in
              err["message"], f"message: {err['message']}")
        check(time.monotonic() - t0 < 5, "slow failure")
        eq(h.get("x-switchyard-attempts"), "relay:connect_error,openai:connect_error",
           "attempts header")
    finally:
        r.stop()


def case_upstream_4xx_passes_through():
    with stack(percentage=100) as (o, n, r):
        status, h, body = r.chat(CHAT, {"x-user-id": "u", "x-sim-fault": "status=422"})
        eq(status, 422, "status passed through")
        openai_error(body)
        eq(h.get("x-sim-provider"), "new", "served by")


def case_client_disconnect_mid_stream_is_harmless():
    with stack(percentage=100, sim_opts={"chunk_ms": 100, "chunks": 30}) as (o, n, r):
        for _ in range(20):
            payload = json.dumps(dict(CHAT, stream=True)).encode()
            s = socket.create_connection(("127.0.0.1", r.port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: " +
                      str(len(payload)).encode() + b"\r\n\r\n" + payload)
            s.recv(1024)
            s.close()
        time.sleep(0.5)
        status, _, _ = r.chat(CHAT, {"x-user-id": "after"})
        eq(status, 200, "still serving")
        st = n.stats()
        check(st["client_aborts"] >= 20, f"upstream streams not closed: {st}")


def case_keepalive_many_requests_one_connection():
    import http.client
    with stack(percentage=50) as (o, n, r):
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        for i in range(200):
            conn.request("POST", "/v1/chat/completions", json.dumps(dict(CHAT, stream=i % 2 == 0)),
                         {"Content-Type": "application/json", "x-user-id": f"ka{i}"})
            resp = conn.getresponse()
            data = resp.read()
            eq(resp.status, 200, f"request {i}")
            check(data, "empty body")
        conn.close()


def case_healthz_and_request_ids():
    with stack() as (o, n, r):
        status, _, body = r.request("GET", "/healthz")
        eq(status, 200, "healthz")
        eq(json.loads(body)["status"], "ok", "healthz body")
        ids = set()
        for _ in range(20):
            _, h, _ = r.chat(CHAT)
            ids.add(h["x-switchyard-request-id"])
        eq(len(ids), 20, "generated request ids are unique")
        _, h, _ = r.chat(CHAT, {"x-request-id": "bad id\twith tab"})
        check(h["x-switchyard-request-id"] != "bad id\twith tab", "unsafe request id echoed")


def case_proxy_environment_is_honoured():
    # The router says "no proxy" to libcurl itself only when no proxy variable is set
    # (router/upstream.c); with http_proxy set, requests go through that proxy, and
    # no_proxy still exempts a host.
    import threading
    seen = []
    body = json.dumps({"id": "p", "object": "chat.completion", "created": 1, "model": "gpt-4.1",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "via"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                 "total_tokens": 2}}).encode()
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(0.2)
    stop = []

    def serve():
        while not stop:
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            with c:
                c.settimeout(5)
                head, _ = read_http_request(c)
                seen.append(head.split(b"\r\n")[0].decode())
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close"
                          b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    proxy = f"http://127.0.0.1:{ls.getsockname()[1]}"
    try:
        for env, via in (({"http_proxy": proxy}, True),
                         ({"http_proxy": proxy, "no_proxy": "127.0.0.1"}, False),
                         ({}, False)):
            seen.clear()
            with stack(percentage=0, env=env) as (o, n, r):
                st, _, data = r.chat(CHAT, {"x-user-id": "u1"})
            eq(st, 200, f"status with {env}")
            if via:
                eq(len(seen), 1, "requests through the proxy")
                check(seen[0].startswith(f"POST {o.url}/chat/completions "),
                      f"absolute-form request line through the proxy: {seen[0]}")
                eq(json.loads(data)["choices"][0]["message"]["content"], "via", "answer via proxy")
            else:
                eq(seen, [], f"proxy used with {env}")
        print("  http_proxy used, no_proxy honoured, direct without either")
    finally:
        stop.append(1)
        t.join()
        ls.close()


def _raw_stream_request(port, extra_headers="", version="1.1"):
    """A socket that has sent one streaming chat request (keep-alive unless
    extra_headers say otherwise), for cases that watch the connection itself."""
    body = json.dumps(dict(CHAT, stream=True))
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(5)
    s.sendall((f"POST /v1/chat/completions HTTP/{version}\r\nHost: x\r\n{extra_headers}"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               f"{body}").encode())
    return s


def _read_to_close(s, what):
    """Everything the server sends until it closes the connection (5 s at most), then
    closes the socket; fails with `what` when the server keeps it open."""
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except socket.timeout:
        check(False, f"{what}: still open 5 s on, after {data[-120:]!r}")
    finally:
        s.close()


def case_connection_after_a_stream_gets_the_client_timeout_again():
    # A stream lifts its connection's timeout to the stream's length (an SSE client sends
    # nothing); when it ends, an idle keep-alive connection must again be closed after
    # limits.client_timeout_ms, not an hour later.
    with stack(percentage=0, extra="limits: { client_timeout_ms: 1000 }") as (o, n, r):
        s = _raw_stream_request(r.port)
        data = b""
        while b"data: [DONE]" not in data:
            chunk = s.recv(65536)
            check(chunk, "connection closed before the stream ended")
            data += chunk
        t0 = time.monotonic()
        s.settimeout(4)
        try:
            while s.recv(65536):
                pass
            closed_after = time.monotonic() - t0
        except socket.timeout:
            closed_after = None
        s.close()
        check(closed_after is not None and closed_after < 3,
              f"idle keep-alive connection after a stream not closed within 3 s ({closed_after})")
        print(f"  idle connection closed {closed_after:.2f} s after its stream ended "
              "(client_timeout_ms 1000)")


def case_connection_close_is_honoured_after_a_stream():
    # A committed stream drops the headers it no longer needs (proxy.c,
    # drop_sent_headers) but must keep "Connection": evhttp reads it when the reply ends.
    with stack(percentage=0) as (o, n, r):
        s = _raw_stream_request(r.port, "Connection: close\r\n")
        data = _read_to_close(s, "a Connection: close stream")
        check(b"data: [DONE]" in data, "stream complete")
        check(b"\r\nConnection: close\r\n" in data.split(b"\r\n\r\n")[0] + b"\r\n",
              "Connection: close answered")


def case_http10_keepalive_client_gets_a_stream_that_ends():
    # HTTP/1.0 has no chunks: a stream's end is the connection's. evhttp gave a 1.0
    # keep-alive client "Content-Length: 0" (the empty body at the head) and then kept
    # the connection open under the events.
    with stack(percentage=0) as (o, n, r):
        s = _raw_stream_request(r.port, "Connection: keep-alive\r\n", version="1.0")
        data = _read_to_close(s, "an HTTP/1.0 stream")
        head, _, body = data.partition(b"\r\n\r\n")
        check(b"content-length" not in head.lower(), f"no length for a stream: {head!r}")
        check(b"\r\nConnection: close" in head + b"\r\n", f"close announced: {head!r}")
        check(b"chunked" not in head.lower(), "no chunks for HTTP/1.0")
        check(body.endswith(b"data: [DONE]\n\n"), f"the whole stream: {body[-100:]!r}")


def case_headers_named_by_connection_are_not_passed_on():
    # A header the provider lists in its Connection header is for the hop to switchyard
    # only (RFC 9110 7.6.1), like Connection itself.
    with stack(percentage=0) as (o, n, r):
        for stream in (False, True):
            status, h, _ = r.chat(dict(CHAT, stream=stream),
                                  {"x-user-id": "hop", "x-sim-fault": "hop_header"})
            eq(status, 200, "status")
            check("x-hop" not in h, f"a Connection-listed header was passed on: {h}")
            check("for-the-next-hop-only" not in repr(h), "nor its value")
            eq(h.get("content-type", "")[:4] in ("appl", "text"), True, "the rest is there")


def case_an_authenticated_client_is_one_identity_on_every_transport():
    # With client keys, the api_key sticky source is the client's `user` (README), over
    # HTTP (the key in Authorization), a WebSocket (the key in an auth message) and a
    # browser stream (a session token): one client, one bucket. HTTP hashed the key, a
    # browser stream had no key at all and was drawn at random.
    import tempfile
    from test_faults import _ws_open, _ws_recv_text, _ws_send_text
    users = [f"identity-{i}" for i in range(8)]
    env = {f"IT_CLIENT_{i}": f"sk-client-{i}-identity" for i in range(8)}
    env["IT_SESSION_SECRET"] = "s" * 32
    clients = "\n".join(f'  - {{ name: app-{i}, key_env: IT_CLIENT_{i}, user: "{u}", '
                        f'permissions: [chat] }}' for i, u in enumerate(users))
    log = tempfile.mktemp(prefix="identity-", suffix=".jsonl", dir="/tmp")
    extra = (f'access_log: {{ path: "{log}" }}\nclients:\n{clients}\n'
             'realtime: { session_secret_env: IT_SESSION_SECRET }\n')
    with stack(percentage=50, env=env, extra=extra, workers=1) as (o, n, r):
        for i, u in enumerate(users):
            key = env[f"IT_CLIENT_{i}"]
            status, _, _ = r.chat(CHAT, {"Authorization": f"Bearer {key}"})
            eq(status, 200, "HTTP chat")
            status, _, tok = r.request("POST", "/v1/session-token", {},
                                       {"Authorization": f"Bearer {key}"})
            eq(status, 200, "session token")
            token = json.loads(tok)["token"]
            status, _, _ = r.request("GET", f"/v1/stream?model=gpt-4.1&message=hi&token={token}",
                                     None, {})
            eq(status, 200, "browser stream")
            ws = _ws_open(r.port)
            try:
                _ws_send_text(ws, json.dumps({"type": "auth", "token": key}).encode())
                check(b"auth_success" in (_ws_recv_text(ws, 5) or b""), "WebSocket auth")
                _ws_send_text(ws, json.dumps(dict(CHAT, type="chat", id="c1")).encode())
                raw, ws_deadline = b"", time.monotonic() + 5
                while b'"complete"' not in raw and time.monotonic() < ws_deadline:
                    raw += ws.recv(65536)  # server frames are unmasked: the JSON shows
                check(b'"complete"' in raw, f"WebSocket chat answered: {raw[-200:]!r}")
            finally:
                ws.close()
        deadline = time.monotonic() + 5
        lines = []
        while time.monotonic() < deadline and len(lines) < 3 * len(users):
            time.sleep(0.05)
            with open(log) as f:
                lines = [json.loads(x) for x in f if x.strip()]
    eq(len(lines), 3 * len(users), "three requests per client logged")
    for i, u in enumerate(users):
        want = expected_variant("use_new_provider", u, 5000)
        got = [(l["path"], l["variant"], l["sticky_source"]) for l in lines[3 * i:3 * i + 3]]
        for path, variant, source in got:
            # the browser stream's synthesized body carries the user: body:user, the same key
            check(source in ("api_key", "body:user"), f"{u} on {path}: keyed by the client")
            eq(variant, want, f"{u} on {path}: the bucket of its user ({got})")


def case_sigterm_lets_the_last_streams_end_whole():
    # SIGTERM lets requests in flight finish (README). The worker stopped as soon as its
    # last request had handed its end to evhttp, before the bytes were written: that
    # stream lost its end ([DONE] and the chunked terminator). WebSockets were freed
    # without a close frame; now they get 1001.
    from test_faults import _ws_open
    with stack(percentage=0, sim_opts={"latency_ms": 300, "chunk_ms": 30, "chunks": 10},
               workers=1) as (o, n, r):
        streams = [_raw_stream_request(r.port) for _ in range(3)]
        ws = _ws_open(r.port)
        time.sleep(0.1)
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        for i, s in enumerate(streams):
            data = _read_to_close(s, f"stream {i} at SIGTERM")
            check(data.startswith(b"HTTP/1.1 200"), f"stream {i}: {data[:60]!r}")
            check(data.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"),
                  f"stream {i} ended whole at SIGTERM: {data[-80:]!r}")
        ws.settimeout(5)
        frame = ws.recv(64)
        ws.close()
        check(frame[:1] == b"\x88" and frame[2:4] == (1001).to_bytes(2, "big"),
              f"the WebSocket got close 1001: {frame!r}")
        r.proc.wait(timeout=10)
        eq(r.proc.returncode, 0, "clean exit")
        check(time.monotonic() - t0 < 5, "stopped once the streams were out, not at the deadline")


def case_no_new_websocket_while_draining():
    # A keep-alive connection can still ask for a WebSocket after SIGTERM; a new socket
    # then held the worker until the drain deadline (it was never told 1001).
    with stack(percentage=0, sim_opts={"latency_ms": 800}, workers=1) as (o, n, r):
        keep = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        keep.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        check(keep.recv(4096).startswith(b"HTTP/1.1 200"), "keep-alive connection up")
        slow = _raw_stream_request(r.port)  # keeps the worker draining for a while
        time.sleep(0.1)
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        keep.sendall(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        answer = keep.recv(4096)
        keep.close()
        check(answer.startswith(b"HTTP/1.1 503"), f"no WebSocket while draining: {answer[:80]!r}")
        _read_to_close(slow, "the stream in flight")
        r.proc.wait(timeout=10)
        check(time.monotonic() - t0 < 5, "stopped when the stream ended, not at the deadline")


def case_a_websocket_chat_in_flight_at_sigterm_finishes_then_1001():
    # A draining WebSocket with a chat in flight: that chat ends whole, a new chat on it
    # is refused (it would keep the worker from stopping), and then it gets 1001.
    from test_faults import _ws_open, _ws_send_text
    with stack(percentage=0, sim_opts={"latency_ms": 400, "chunk_ms": 30, "chunks": 10},
               workers=1) as (o, n, r):
        ws = _ws_open(r.port)
        _ws_send_text(ws, json.dumps(dict(CHAT, type="chat", id="first")).encode())
        time.sleep(0.1)
        r.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        _ws_send_text(ws, json.dumps(dict(CHAT, type="chat", id="second")).encode())
        texts, code, buf = [], None, b""
        ws.settimeout(5)
        while code is None:
            chunk = ws.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2:  # server frames: unmasked
                n, at = buf[1] & 0x7F, 2
                if n == 126:
                    n, at = int.from_bytes(buf[2:4], "big"), 4
                if len(buf) < at + n:
                    break
                op, payload, buf = buf[0] & 0x0F, buf[at:at + n], buf[at + n:]
                if op == 1:
                    texts.append(json.loads(payload))
                elif op == 8:
                    code = int.from_bytes(payload[:2], "big")
        ws.close()
        check(any(m.get("id") == "second" and m.get("type") == "error" and
                  m["error"].get("code") == "going_away" for m in texts),
              f"second chat refused: {texts}")
        check(any(m.get("id") == "first" and m.get("type") == "complete" for m in texts),
              f"first chat whole: {texts}")
        eq(code, 1001, "then close 1001")
        r.proc.wait(timeout=10)
        eq(r.proc.returncode, 0, "clean exit")
