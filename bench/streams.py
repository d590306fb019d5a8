#!/usr/bin/env python3
"""Many concurrent slow streams against one HTTP/1.1 server (bench/run.py runs it).

Opens N connections to 127.0.0.1:PORT, sends one streaming chat completion on each
(each with its own x-user-id), reads the chunked SSE answer to its end and checks it:
status 200, at least --expect-chunks content events, and a final `data: [DONE]`.
Standard library only: asyncio streams and raw HTTP/1.1.

Connections are opened with at most --connect-concurrency connects in flight so the
listen backlog never overflows; each stream then stays open until its answer ends.
The peak of streams open at once (connected, not yet finished) is reported, so a ramp
slower than the streams themselves would show.

Prints one line: `streams-json {...}` with streams, completed, errors, error kinds
(with one example message each), peak_open, ramp_s (time until every stream had its
response headers), duration_s, and the median / max time to the response headers.
Exit status 0 when every stream completed, 1 otherwise.
"""
import argparse
import asyncio
import json
import resource
import sys
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Stats:
    def __init__(self):
        self.completed = 0
        self.errors = {}       # kind -> count
        self.examples = {}     # kind -> first message
        self.open = 0
        self.peak_open = 0
        self.headers_ms = []
        self.last_headers_at = 0.0

    def error(self, kind, msg):
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.examples.setdefault(kind, msg[:200])


def build_request(port, path, i, model):
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": "Stream a slow answer, please."}],
        "stream": True,
    }).encode()
    head = (f"POST {path} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: text/event-stream\r\n"
            f"x-user-id: stream-user-{i}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head + body


async def read_body(reader, headers):
    """The whole response body: chunked, Content-Length or until EOF."""
    te = headers.get("transfer-encoding", "").lower()
    if "chunked" in te:
        parts = []
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("EOF inside the chunked body (no terminal chunk)")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    return await reader.read()


async def one_stream(i, args, stats, sem, t0):
    writer = None
    counted_open = False
    try:
        async with sem:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", args.port, limit=1 << 20),
                timeout=args.connect_timeout)
        writer.write(build_request(args.port, args.path, i, args.model))
        started = time.monotonic()
        status_line = await asyncio.wait_for(reader.readline(), timeout=args.timeout)
        if not status_line:
            stats.error("closed_before_status", f"stream {i}: connection closed before the status line")
            return
        parts = status_line.split(None, 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout=args.timeout)
            if line in (b"\r\n", b"\n", b""):
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        now = time.monotonic()
        stats.headers_ms.append((now - started) * 1000.0)
        stats.last_headers_at = max(stats.last_headers_at, now - t0)
        stats.open += 1
        counted_open = True
        stats.peak_open = max(stats.peak_open, stats.open)
        body = await asyncio.wait_for(read_body(reader, headers), timeout=args.timeout)
        if status != 200:
            stats.error(f"status_{status}", f"stream {i}: {status_line.decode(errors='replace').strip()} "
                        f"{body[:160].decode(errors='replace')}")
            return
        text = body.decode("utf-8", errors="replace")
        events = [e for e in text.split("\n\n") if e.strip()]
        content = sum(1 for e in events if '"content":' in e and '"delta":{"content"' in e)
        if "event: error" in text:
            stats.error("error_event", f"stream {i}: {text[text.index('event: error'):][:200]}")
        elif not text.rstrip().endswith("data: [DONE]"):
            stats.error("no_done", f"stream {i}: ended without data: [DONE]: ...{text[-160:]!r}")
        elif content < args.expect_chunks:
            stats.error("short", f"stream {i}: {content} content events, expected {args.expect_chunks}")
        else:
            stats.completed += 1
    except asyncio.TimeoutError:
        stats.error("timeout", f"stream {i}: no progress within {args.timeout} s")
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as e:
        stats.error(type(e).__name__, f"stream {i}: {e}")
    finally:
        if counted_open:
            stats.open -= 1
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ConnectionError):
                pass


async def main_async(args):
    stats = Stats()
    sem = asyncio.Semaphore(args.connect_concurrency)
    t0 = time.monotonic()
    await asyncio.gather(*(one_stream(i, args, stats, sem, t0) for i in range(args.streams)))
    duration = time.monotonic() - t0
    hm = sorted(stats.headers_ms)
    return {
        "streams": args.streams,
        "completed": stats.completed,
        "errors": sum(stats.errors.values()),
        "error_kinds": stats.errors,
        "error_examples": stats.examples,
        "peak_open": stats.peak_open,
        "ramp_s": round(stats.last_headers_at, 3),
        "duration_s": round(duration, 3),
        "headers_ms_p50": round(hm[len(hm) // 2], 2) if hm else None,
        "headers_ms_max": round(hm[-1], 2) if hm else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/v1/chat/completions")
    ap.add_argument("--model", default="gpt-4.1")
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--expect-chunks", type=int, default=30)
    ap.add_argument("--connect-concurrency", type=int, default=200)
    ap.add_argument("--connect-timeout", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=90.0,
                    help="seconds without progress on one stream before it is an error")
    args = ap.parse_args()
    nofile = raise_nofile()
    if nofile < args.streams + 64:
        print(f"streams: RLIMIT_NOFILE is {nofile}, too low for {args.streams} streams",
              file=sys.stderr)
        return 2
    result = asyncio.run(main_async(args))
    print("streams-json " + json.dumps(result), flush=True)
    return 0 if result["completed"] == args.streams else 1


if __name__ == "__main__":
    sys.exit(main())
