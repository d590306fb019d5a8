#!/usr/bin/env python3
"""HTTP/2 churn: the measurement behind `http_version: auto` meaning HTTP/1.1.

Sends N chat requests (default 3,000), 30 at a time, 70% streamed, through a router to
the sim answering at once (no pacing: every answer arrives as a burst); a share of the
clients (CUT, default 0.25) hang up after the first bytes. Counts answers that were not
whole: a non-200, a stream without [DONE], a body that is not a chat completion.
Loopback only, bounded, stops by itself. Not part of `make test` (a rate, not a
pass/fail); run it on a new libcurl before letting `auto` offer HTTP/2 again.

    python3 bench/h2_churn.py [--http1] [--end-frame]    (from the repository root)

Environment: N, CUT, CHUNKS (events per answer, default 200), CHUNK_MS (pacing,
default 0), BUILD (default build; build/asan for the sanitizer build).
See docs/DECISIONS.md, "HTTP/2 bursts".
"""
import concurrent.futures
import http.client
import json
import os
import random
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from harness import Router, Sim, test_cert  # noqa: E402
from test_http2 import CHAT, _config  # noqa: E402


def main():
    http1 = "--http1" in sys.argv
    n = int(os.environ.get("N", "3000"))
    cut = float(os.environ.get("CUT", "0.25"))
    cert, key = test_cert()
    sim = Sim("h2", *(["--h2-end-frame"] if "--end-frame" in sys.argv else []), h2_port=0,
              tls_cert=cert, tls_key=key, chunks=int(os.environ.get("CHUNKS", "200")),
              chunk_ms=int(os.environ.get("CHUNK_MS", "0")))
    cfg = _config(sim, cert)
    if http1:  # the sim's plain port: its TLS port speaks h2 only
        cfg = cfg.replace(sim.h2_url, sim.url).replace('http_version: "2"', 'http_version: "1.1"')
        cfg = "\n".join(l for l in cfg.splitlines() if "ca_file" not in l)
    r = Router(cfg)
    counts = {"whole": 0, "not whole": 0, "hung up": 0}
    bad = []

    def one(i):
        rnd = random.Random(i)
        stream = rnd.random() < 0.7
        body = json.dumps(dict(CHAT, stream=stream))
        if rnd.random() < cut:
            s = socket.create_connection(("127.0.0.1", r.port))
            s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Type: application/json\r\nx-user-id: c{i}\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
            try:
                s.settimeout(5)
                s.recv(rnd.choice([1, 100, 3000]))
            except OSError:
                pass
            s.close()
            return "hung up", None
        c = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        try:
            c.request("POST", "/v1/chat/completions", body,
                      {"Content-Type": "application/json", "x-user-id": f"u{i}"})
            resp = c.getresponse()
            data = resp.read()
            ok = resp.status == 200 and (b"data: [DONE]" in data if stream else
                                         json.loads(data)["object"] == "chat.completion")
            return ("whole", None) if ok else ("not whole", f"{i} stream={stream} {resp.status}")
        except (OSError, ValueError, http.client.HTTPException) as e:
            return "not whole", f"{i} stream={stream} {e!r}"
        finally:
            c.close()

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
            for kind, why in pool.map(one, range(n)):
                counts[kind] += 1
                if why:
                    bad.append(why)
        conns = sim.stats().get("h2_connections")
    finally:
        r.stop()
        sim.stop()
    print(f"{'HTTP/1.1' if http1 else 'HTTP/2'}: {counts}, upstream h2 connections {conns}")
    for why in bad[:10]:
        print("  not whole:", why)
    return 1 if counts["not whole"] else 0


if __name__ == "__main__":
    sys.exit(main())
