#!/bin/sh
# Adds up the per-build result files written by tests/run.sh and prints the
# suite's closing line. A missing file counts as one failure (that run broke).
passed=0
failed=0
for f in "$@"; do
    if [ -f "$f" ]; then
        read -r p q <"$f"
        passed=$((passed + p))
        failed=$((failed + q))
    else
        failed=$((failed + 1))
    fi
done
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
