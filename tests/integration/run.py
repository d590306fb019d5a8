#!/usr/bin/env python3
"""Runs every integration case (tests/integration/test_*.py) against the binaries in
--build, one by one, and ends with `integration: N passed, N failed`.

A case is a function named case_* in a test module. `-k TEXT` runs only cases whose
name contains TEXT. Each case must clean up the processes it starts (use `with`
helpers or try/finally); a case that raises fails.
"""
import argparse
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    os.environ["BUILD"] = args.build
    sys.path.insert(0, HERE)
    cases = []
    for fn in sorted(os.listdir(HERE)):
        if fn.startswith("test_") and fn.endswith(".py"):
            mod = importlib.import_module(fn[:-3])
            for name in sorted(dir(mod)):
                if name.startswith("case_") and args.k in f"{fn[:-3]}.{name}":
                    cases.append((f"{fn[:-3]}.{name}", getattr(mod, name)))
    passed = failed = 0
    for name, fn in cases:
        t0 = time.monotonic()
        try:
            fn()
        except Exception:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            print(f"FAIL {name} ({time.monotonic() - t0:.1f}s)")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok {name} ({time.monotonic() - t0:.1f}s)")
        sys.stdout.flush()
    print(f"integration: {passed} passed, {failed} failed")
    return 1 if failed or not cases else 0


if __name__ == "__main__":
    sys.exit(main())
