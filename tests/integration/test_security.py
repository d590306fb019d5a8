"""Security cases (issue 8): each one fails if its protection is removed."""
import json
import re
import resource
import socket
import time

from harness import (Router, Sim, check, eq, open_idle, openai_error, raw_request,
                     router_config, status_of)


CHAT = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}


def _stack(extra="", **kw):
    o, n = Sim("original"), Sim("new")
    try:
        r = Router(router_config(o, n, percentage=50, extra=extra, **kw))
    except Exception:
        o.stop()
        n.stop()
        raise
    return o, n, r


def _stop(*procs):
    for p in procs:
        p.stop()


def case_control_characters_in_headers_are_refused():
    o, n, r = _stack()
    try:
        for name, raw in (
            ("bare CR in a value", b"X-Thing: a\rInjected: b\r\n"),
            ("bare CR in a forwarded header", b"Idempotency-Key: a\rX-Evil: 1\r\n"),
            ("control byte", b"X-Thing: a\x07b\r\n"),
        ):
            req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-user-id: s\r\n" + raw +
                   b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            o.reset()
            n.reset()
            resp = raw_request(r.port, req)
            st = status_of(resp)
            check(st in (400, None), f"{name}: status {st}")
            eq(len(o.requests()) + len(n.requests()), 0, f"{name}: reached an upstream")
    finally:
        _stop(r, n, o)


def _read_all(s, until_closed_within):
    """Reads until the peer closes (or the deadline passes); returns (bytes, closed)."""
    s.settimeout(0.2)
    end = time.monotonic() + until_closed_within
    data = b""
    while time.monotonic() < end:
        try:
            c = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not c:
            return data, True
        data += c
    return data, False


def case_nul_in_the_request_head_is_refused():
    o, n, r = _stack()
    try:
        body = json.dumps(CHAT).encode()

        def req(extra=b"", target=b"/v1/chat/completions"):
            return (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nx-user-id: nul\r\n" + extra +
                    b"Content-Type: application/json\r\nContent-Length: " +
                    str(len(body)).encode() + b"\r\n\r\n" + body)

        for name, raw in (
            ("NUL in a header value", req(b"X-Thing: a\x00Injected: b\r\n")),
            ("NUL in a forwarded header", req(b"Idempotency-Key: k\x00evil\r\n")),
            ("NUL in the request target", req(target=b"/v1/chat/completions\x00/../admin")),
        ):
            o.reset()
            n.reset()
            st = status_of(raw_request(r.port, raw))
            eq(st, 400, f"{name}: status")
            eq(len(o.requests()) + len(n.requests()), 0, f"{name}: reached an upstream")
        # Keep-alive and pipelining: two clean requests, then one with a NUL, in one
        # write. The clean ones are served; the third is refused and the connection closed.
        o.reset()
        n.reset()
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(req() + req() + req(b"X-Thing: a\x00b\r\n"))
        data, closed = _read_all(s, 5)
        s.close()
        codes = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3})", data)]
        eq(codes, [200, 200, 400], "pipelined answers")
        check(closed, "the connection stays open after a NUL")
        eq(len(o.requests()) + len(n.requests()), 2, "requests that reached an upstream")
        # NUL bytes after the head are the body's business, not the head guard's: a
        # body with a NUL in a JSON string is not refused as a bad header.
        nul_body = b'{"model":"gpt-4.1","messages":[{"role":"user","content":"a\x00b"}]}'
        raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-user-id: nul\r\n"
               b"Content-Type: application/json\r\nContent-Length: " +
               str(len(nul_body)).encode() + b"\r\n\r\n" + nul_body)
        resp = raw_request(r.port, raw)
        check(b"invalid_header" not in resp, f"a NUL in the body was judged as a header: {resp[:200]!r}")
    finally:
        _stop(r, n, o)


def _trickle(s, data, give_up_s=6):
    """Sends data 4 bytes every ~0.25 s on s, reading what comes back, until the peer
    closes or give_up_s passes. (bytes received, closed, seconds taken)."""
    s.settimeout(0.2)
    t0 = time.monotonic()
    got, closed = b"", False
    for i in range(0, len(data), 4):
        try:
            s.sendall(data[i:i + 4])
            c = s.recv(4096)
            if not c:
                closed = True
                break
            got += c
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if time.monotonic() - t0 > give_up_s:
            break
        time.sleep(0.05)
    took = time.monotonic() - t0
    if not closed:
        more, closed = _read_all(s, 1)
        got += more
    s.close()
    return got, closed, took


def case_trickled_head_is_cut_off():
    # Each byte comes well within client_timeout_ms (an idle timeout), so only the
    # total deadline on the head (header_timeout_ms) can end this.
    o, n, r = _stack(extra="limits: { client_timeout_ms: 1000, header_timeout_ms: 1500 }", workers=1)
    try:
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" +
                b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 40) for i in range(40)))
        # 4 bytes every 0.25 s: ~110 s for the head
        got, closed, took = _trickle(socket.create_connection(("127.0.0.1", r.port)), head)
        check(closed, f"a trickling client kept its connection for {took:.1f}s")
        check(took < 3.0, f"cut off after {took:.2f}s (header_timeout_ms 1500)")
        eq(status_of(got), 408, "answer to the trickled head")
        head, _, body = got.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length: (\d+)", head)
        check(m and int(m.group(1)) == len(body), f"408 length {m and m.group(1)} for {len(body)} bytes")
        eq(json.loads(body)["error"]["code"], "request_timeout", "408 body")
        # The worker is free for others at once.
        st, _, _ = r.chat(CHAT, {"x-user-id": "after"})
        eq(st, 200, "served after the trickler")
        print(f"  trickling client cut off after {took:.2f}s with 408 (header_timeout_ms 1500)")
    finally:
        _stop(r, n, o)


def case_every_head_on_a_keep_alive_connection_is_watched():
    # The guard stops watching once a head is whole and starts again when the handler
    # has it: the second head on a connection must be judged like the first.
    o, n, r = _stack(extra="limits: { client_timeout_ms: 1000, header_timeout_ms: 1500 }",
                     workers=1)
    try:
        body = json.dumps(CHAT).encode()
        clean = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-user-id: ka\r\n"
                 b"Content-Type: application/json\r\nContent-Length: " +
                 str(len(body)).encode() + b"\r\n\r\n" + body)

        def first_answer(s):
            got = b""
            while b"\r\n\r\n" not in got or not got.endswith(b"}"):
                c = s.recv(65536)
                check(c, "the connection stays open after the first answer")
                got += c
            eq(status_of(got), 200, "first request on the connection")

        # A NUL in the second head, sent after the first answer.
        s = socket.create_connection(("127.0.0.1", r.port))
        s.settimeout(5)
        s.sendall(clean)
        first_answer(s)
        s.sendall(clean.replace(b"x-user-id: ka", b"x-user-id: k\x00a"))
        data, _ = _read_all(s, 3)
        s.close()
        eq(status_of(data), 400, "a NUL in the second head")
        # A trickled second head.
        s = socket.create_connection(("127.0.0.1", r.port))
        s.settimeout(5)
        s.sendall(clean)
        first_answer(s)
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"y" * 400
        got, closed, took = _trickle(s, head)
        check(closed and took < 3.0, f"trickled second head: closed={closed} after {took:.2f}s")
        eq(status_of(got), 408, "answer to the trickled second head")
        print(f"  second head on a kept-alive connection: NUL 400; trickled, cut off "
              f"after {took:.2f}s")
    finally:
        _stop(r, n, o)


def case_ambiguous_body_framing_is_refused():
    o, n, r = _stack()
    try:
        body = b'{"model":"gpt-4.1","messages":[]}'
        both = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() +
                b"\r\nTransfer-Encoding: chunked\r\n\r\n" + hex(len(body))[2:].encode() +
                b"\r\n" + body + b"\r\n0\r\n\r\n")
        two = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(body)).encode() + b"\r\nContent-Length: 5\r\n\r\n" +
               body)
        for name, req in (("Content-Length and Transfer-Encoding", both),
                          ("two different Content-Lengths", two)):
            o.reset()
            n.reset()
            resp = raw_request(r.port, req)
            eq(status_of(resp), 400, name)
            check(b"connection: close" in resp.lower(), f"{name}: connection not closed")
            eq(len(o.requests()) + len(n.requests()), 0, f"{name}: reached an upstream")
    finally:
        _stop(r, n, o)


def case_request_target_cannot_choose_the_host():
    o, n, r = _stack()
    try:
        for target in (b"http://127.0.0.1:1/v1/models", b"//evil.example/v1/models",
                       b"/v1/../../etc/passwd", b"/v1/%2e%2e/admin", b"/v1/models/..%2f..%2f"):
            o.reset()
            n.reset()
            resp = raw_request(r.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            st = status_of(resp)
            got = o.requests() + n.requests()
            for rq in got:
                check(rq["path"].startswith("/v1/") and ".." not in rq["path"],
                      f"{target!r} reached {rq['path']}")
            check(st in (200, 400, 404), f"{target!r}: {st}")
    finally:
        _stop(r, n, o)


def case_slow_loris_is_cut_off_without_holding_the_worker():
    o, n, r = _stack(extra="limits: { client_timeout_ms: 800 }", workers=1)
    try:
        slows = []
        for _ in range(50):  # half-sent requests that then go quiet
            c = socket.create_connection(("127.0.0.1", r.port))
            c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: b")
            slows.append(c)
        t0 = time.monotonic()
        for i in range(20):  # the only worker keeps serving others meanwhile
            st, _, _ = r.chat(CHAT, {"x-user-id": f"s{i}"})
            eq(st, 200, "served while slow clients hold connections")
        for c in slows:
            c.settimeout(5)
            data = c.recv(4096)  # returns when the router closes the connection
            check(time.monotonic() - t0 < 4, "a slow client was not cut off in time")
            c.close()
        took = time.monotonic() - t0
        print(f"  50 stalled clients cut off within {took:.2f}s (client_timeout_ms 800)")
    finally:
        _stop(r, n, o)


def case_ten_thousand_idle_connections_do_not_stop_service():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 10000 + 500
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want + 1000), hard))
    check(resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want,
          "this machine cannot open 10,000 sockets in one process")
    o, n, r = _stack(extra="limits: { client_timeout_ms: 60000 }")
    idle = []
    try:
        idle = open_idle(r.port, 10000)
        time.sleep(1.0)
        t0 = time.monotonic()
        for i in range(20):
            st, _, _ = r.chat(CHAT, {"x-user-id": f"i{i}"})
            eq(st, 200, "served with 10,000 idle connections open")
        took = time.monotonic() - t0
        check(took < 5, f"20 requests took {took:.1f}s beside 10,000 idle connections")
        print(f"  20 requests in {took * 1000:.0f} ms beside 10,000 idle connections")
    finally:
        for s in idle:
            s.close()
        _stop(r, n, o)


def case_admin_refuses_every_call_without_the_token():
    env = {"SEC_ADMIN_TOKEN": "sec-token-value"}
    o, n = Sim("original"), Sim("new")
    r = Router(router_config(o, n, admin_extra=", token_env: SEC_ADMIN_TOKEN",
                             extra="rollout: { state_file: \"/tmp/sec.state\", "
                                   "audit_log: \"/tmp/sec-audit.jsonl\", mode: manual }"),
               env=env)
    try:
        calls = [("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/admin/rollout"),
                 ("POST", "/admin/rollout/rollback"), ("POST", "/admin/reload"),
                 ("PUT", "/admin/flags/use_new_provider"),
                 ("POST", "/ofrep/v1/evaluate/flags/use_new_provider"), ("GET", "/nope")]
        for method, path in calls:
            st, _, body = r.admin(method, path, {"percentage": 0} if method != "GET" else None)
            eq(st, 401, f"{method} {path} without the token")
            st, _, _ = r.admin(method, path, {} if method != "GET" else None,
                               {"Authorization": "Bearer sec-token-valuf"})
            eq(st, 401, f"{method} {path} with a wrong token")
        st, _, _ = r.admin("GET", "/metrics", headers={"Authorization": "Bearer sec-token-value"})
        eq(st, 200, "with the token")
    finally:
        _stop(r, n, o)


def case_no_key_and_no_body_in_any_log_line():
    env = {"SEC_ORIG_KEY": "sk-orig-LOGSECRET", "SEC_NEW_KEY": "sk-new-LOGSECRET"}
    o = Sim("original", "--api-key", "sk-orig-LOGSECRET")
    n = Sim("new", "--api-key", "sk-new-LOGSECRET")
    log = f"/tmp/sec-access-{time.monotonic_ns()}.jsonl"
    r = Router(router_config(o, n, percentage=50,
                             original_extra="    api_key_env: SEC_ORIG_KEY",
                             new_extra="    api_key_env: SEC_NEW_KEY",
                             extra=f'access_log: {{ path: "{log}" }}'), env=env)
    try:
        for i in range(20):
            r.chat({"model": "gpt-4.1", "messages": [{"role": "user", "content": "BODYSECRET"}],
                    "stream": i % 2 == 0}, {"x-user-id": f"u{i}",
                                            "Authorization": "Bearer sk-client-CLIENTSECRET",
                                            "x-sim-fault": "new:status=503" if i % 3 == 0 else ""})
        r.chat("{bad json BODYSECRET", {"Authorization": "Bearer sk-client-CLIENTSECRET"})
        time.sleep(0.3)
    finally:
        _stop(r, n, o)
    text = r.stderr_text() + open(log).read()
    for secret in ("LOGSECRET", "CLIENTSECRET", "BODYSECRET"):
        check(secret not in text, f"{secret} reached a log")


def case_a_provider_echoing_its_key_does_not_hand_it_to_the_client():
    """A relay that repeats the key it got (an error message, a debug header) must not
    pass it to the client: through the error body, a translated error (the browser's
    /v1/stream) or a header, on any attempt of a fallback."""
    env = {"SEC_ORIG_KEY": "sk-orig-ECHOSECRET-1", "SEC_NEW_KEY": "sk-new-ECHOSECRET-2"}
    o, n = Sim("original"), Sim("new")
    r = Router(router_config(o, n, percentage=100,
                             original_extra="    api_key_env: SEC_ORIG_KEY",
                             new_extra="    api_key_env: SEC_NEW_KEY"), env=env)
    try:
        seen = []
        for stream in (False, True):
            # the new provider echoes and the request stays there (a 401 passes through)
            status, h, body = r.chat(dict(CHAT, stream=stream),
                                     {"x-user-id": "echo-1", "x-sim-fault": "new:echo_key"})
            eq(status, 401, "the provider's 401 passes through")
            check(b"[redacted]" in body, f"the echoed key is redacted: {body!r}")
            check("x-echo-authorization" not in h, f"the echoing header is dropped: {h}")
            seen.append(repr(h).encode() + body)
        # a fallback: the new provider fails, the original answers but echoes a header
        status, h, body = r.chat(CHAT, {"x-user-id": "echo-2",
                                        "x-sim-fault": "new:status=503,original:echo_key"})
        seen.append(repr(h).encode() + body)
        status, h, body = r.request("GET", "/v1/stream?model=gpt-4.1&message=hi", None,
                                    {"x-user-id": "echo-3", "x-sim-fault": "new:echo_key"})
        seen.append(repr(h).encode() + body)
    finally:
        _stop(r, n, o)
    for what in seen:
        check(b"ECHOSECRET" not in what, f"a provider key reached the client: {what!r}")
    check("event=upstream_echoed_key" in r.stderr_text(), "the echo is logged")
    check("ECHOSECRET" not in r.stderr_text(), "the log names no key")


def _close_code(ws, timeout=5):
    """Reads until a close frame; its code, or None."""
    ws.settimeout(timeout)
    buf = b""
    try:
        while True:
            c = ws.recv(65536)
            if not c:
                return None
            buf += c
            i = 0
            while i + 2 <= len(buf):  # server frames: unmasked, short here
                op, n = buf[i] & 0x0F, buf[i + 1] & 0x7F
                at = i + 2
                if n == 126:
                    n, at = int.from_bytes(buf[i + 2:i + 4], "big"), i + 4
                if len(buf) < at + n:
                    break
                if op == 8:
                    return int.from_bytes(buf[at:at + 2], "big")
                i = at + n
    except socket.timeout:
        return None


def case_a_key_removed_by_reload_is_revoked_on_open_websockets():
    # WebSockets checked keys against the config of their handshake: after a reload that
    # removed a client, a connection opened before it still authenticated with that key
    # (or a session token of it), and an authenticated one kept chatting.
    import json as _json
    from test_faults import _ws_open, _ws_send_text
    env = {"REV_KEY_A": "sk-client-REVOKE-A", "REV_KEY_B": "sk-client-KEEP-B",
           "REV_SESSION": "x" * 32}
    def cfg(with_a):
        a = ('  - { name: app-a, key_env: REV_KEY_A, user: "user-a", permissions: [chat] }\n'
             if with_a else "")
        return router_config(o, n, percentage=0, extra=(
            "clients:\n" + a +
            '  - { name: app-b, key_env: REV_KEY_B, user: "user-b", permissions: [chat] }\n'
            "realtime: { session_secret_env: REV_SESSION }\n"))
    o, n = Sim("original"), Sim("new")
    r = Router(cfg(True), env=env)
    try:
        authed = _ws_open(r.port)
        _ws_send_text(authed, _json.dumps({"type": "auth", "token": env["REV_KEY_A"]}).encode())
        time.sleep(0.2)
        waiting = _ws_open(r.port)
        kept = _ws_open(r.port)
        _ws_send_text(kept, _json.dumps({"type": "auth", "token": env["REV_KEY_B"]}).encode())
        time.sleep(0.2)
        with open(r.config_path, "w") as f:
            f.write(cfg(False))
        status, _, body = r.admin("POST", "/admin/reload")
        eq(status, 200, f"reload: {body!r}")
        chat = _json.dumps(dict(CHAT, type="chat", id="after")).encode()
        _ws_send_text(authed, chat)
        eq(_close_code(authed), 4401, "the removed key's open connection")
        _ws_send_text(waiting, _json.dumps({"type": "auth", "token": env["REV_KEY_A"]}).encode())
        eq(_close_code(waiting), 4401, "authenticating with the removed key")
        _ws_send_text(kept, chat)
        kept.settimeout(5)
        got = b""
        while b'"complete"' not in got:
            c = kept.recv(65536)
            check(c, "the other client's connection is served")
            got += c
        for s in (authed, waiting, kept):
            s.close()
    finally:
        _stop(r, n, o)


def case_rotating_a_client_key_voids_its_session_tokens():
    # Session tokens were matched by client name only: after a reload gave a client a
    # new key (the old one leaked), tokens minted with the old key still opened streams
    # for up to their TTL.
    import json as _json
    env = {"ROT_OLD": "sk-client-ROT-OLD", "ROT_NEW": "sk-client-ROT-NEW",
           "ROT_SESSION": "y" * 32}
    def cfg(var):
        return router_config(o, n, percentage=0, extra=(
            f'clients:\n  - {{ name: app, key_env: {var}, user: "u", permissions: [chat] }}\n'
            "realtime: { session_secret_env: ROT_SESSION, session_token_ttl_s: 300 }\n"))
    o, n = Sim("original"), Sim("new")
    r = Router(cfg("ROT_OLD"), env=env)
    try:
        def token(key):
            status, _, body = r.request("POST", "/v1/session-token", {},
                                        {"Authorization": f"Bearer {key}"})
            eq(status, 200, "session token")
            return _json.loads(body)["token"]
        def stream(tok):
            return r.request("GET", f"/v1/stream?model=gpt-4.1&message=hi&token={tok}", None,
                             {})[0]
        old = token(env["ROT_OLD"])
        eq(stream(old), 200, "the token works before the rotation")
        with open(r.config_path, "w") as f:
            f.write(cfg("ROT_NEW"))
        status, _, body = r.admin("POST", "/admin/reload")
        eq(status, 200, f"reload: {body!r}")
        eq(stream(old), 401, "a token of the rotated key")
        eq(stream(token(env["ROT_NEW"])), 200, "a token of the new key")
    finally:
        _stop(r, n, o)
