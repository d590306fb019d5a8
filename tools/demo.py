#!/usr/bin/env python3
"""Traffic for `make demo`: simulated users send chat requests (half of them
streamed) through switchyard; prints which provider served whom and the split."""
import argparse
import collections
import concurrent.futures
import json
import sys
import time
import urllib.error
import urllib.request


def wait_ready(url, seconds=15):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    return False


def one(url, user, i):
    body = {"model": "gpt-4.1", "messages": [{"role": "user", "content": f"question {i}"}],
            "stream": i % 2 == 0}
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "x-user-id": user})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        return user, r.headers["x-switchyard-provider"], r.status, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--admin", default="http://127.0.0.1:9090")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--requests", type=int, default=8, help="per user")
    args = ap.parse_args()
    if not wait_ready(args.url):
        print("demo: switchyard did not come up (see build/demo/switchyard.log)")
        return 1
    users = [f"user-{i:02d}" for i in range(args.users)]
    jobs = [(u, i) for i in range(args.requests) for u in users]
    served = collections.defaultdict(collections.Counter)
    errors = 0
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        futs = [pool.submit(one, args.url, u, i) for u, i in jobs]
        for f in concurrent.futures.as_completed(futs):
            try:
                user, provider, status, _ = f.result()
                served[user][provider] += 1
            except Exception as e:  # noqa: BLE001 - a demo reports, it does not stop
                errors += 1
                print("request failed:", e)
    elapsed = time.monotonic() - t0
    totals = collections.Counter()
    for c in served.values():
        totals.update(c)
    n = sum(totals.values())
    print(f"\n{n} requests from {len(users)} users in {elapsed:.1f}s ({errors} failed)\n")
    print("per user (sticky: each user stays on one provider):")
    sticky = True
    for u in users:
        c = served[u]
        names = ", ".join(f"{p} x{k}" for p, k in sorted(c.items()))
        sticky &= len(c) == 1
        print(f"  {u}  {names}")
    print("\nper provider:")
    for p, k in sorted(totals.items()):
        print(f"  {p:10s} {k:5d} requests  {100.0 * k / max(n, 1):5.1f}%")
    new_users = sum(1 for u in users if "relay" in served[u])
    print(f"\nusers on the new provider: {new_users}/{len(users)}"
          f" (flag use_new_provider, see configs/switchyard.yaml)")
    print("every user stayed on one provider" if sticky else "STICKINESS BROKEN")
    return 0 if sticky and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
