#!/bin/sh
# Runs libFuzzer drivers built by tests/fuzz/fuzz.mk. Usage:
#   tests/fuzz/fuzz.sh SECONDS TARGET...
# For each target:
#   1. every file under tests/fuzz/regressions/<target>/ and tests/fuzz/corpus/<target>/
#      is executed once (libFuzzer runs files given as arguments): none may crash;
#   2. the driver fuzzes for SECONDS (-max_total_time) on a scratch copy of the seeds,
#      $FUZZ_OUT/work/<target> (the committed seeds are never rewritten), with the
#      regressions as an extra input directory; a crash, leak, timeout or OOM fails the
#      target and leaves its input under $FUZZ_OUT/crashes/.
# Environment: FUZZ_OUT (build/fuzz), FUZZ_RESULTS (file that receives "P F"),
# FUZZ_JOBS (targets run at once, default 1), FUZZ_NICE (nice level, default 10),
# FUZZ_ARGS (extra libFuzzer flags), UBSAN_OPTIONS (default halt_on_error=1:print_stacktrace=1). Logs: $FUZZ_OUT/logs/<target>.log.
# Prints one line per target and `fuzz: P passed, F failed`; exits non-zero on failure.
set -u
cd "$(dirname "$0")/../.."

seconds=${1:?usage: fuzz.sh SECONDS TARGET...}
shift
out=${FUZZ_OUT:-build/fuzz}
jobs=${FUZZ_JOBS:-1}
nice_level=${FUZZ_NICE:-10}
extra=${FUZZ_ARGS:-}
mkdir -p "$out/logs" "$out/crashes" "$out/work" "$out/status"
# The drivers are built with -fno-sanitize-recover=all; these matter for a build with
# recoverable UBSan (e.g. to fuzz past a known, reported bug with a suppressions file).
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

max_len() {
    case "$1" in
    config) echo 16384 ;;
    body) echo 8192 ;;
    sse) echo 8192 ;;
    ofrep) echo 2048 ;;
    report) echo 8192 ;;
    usage) echo 4096 ;;
    chunk) echo 4096 ;;
    ws) echo 8192 ;;
    *) echo 4096 ;;
    esac
}

# run_one TARGET: writes $out/status/TARGET ("ok"/"fail") and a one-line summary.
run_one() {
    t=$1
    bin=$out/fuzz_$t
    log=$out/logs/$t.log
    status=$out/status/$t
    : >"$log"
    echo fail >"$status"
    if [ ! -x "$bin" ]; then
        echo "fuzz $t: FAIL (no binary $bin)" >"$status.line"
        return
    fi
    seeds=tests/fuzz/corpus/$t
    reg=tests/fuzz/regressions/$t
    work=$out/work/$t
    mkdir -p "$work"
    [ -d "$seeds" ] && cp -p "$seeds"/* "$work"/ 2>/dev/null
    # 1. regressions and seeds, one run each
    files=$(find "$reg" "$seeds" -type f 2>/dev/null | sort)
    if [ -n "$files" ]; then
        # shellcheck disable=SC2086
        if ! "$bin" -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$out/crashes/$t-replay-" \
            $files >>"$log" 2>&1; then
            echo "fuzz $t: FAIL (a regression or seed input crashes; see $log)" >"$status.line"
            return
        fi
    fi
    # 2. fuzzing
    dirs=$work
    [ -d "$reg" ] && dirs="$dirs $reg"
    dict=
    [ -f "tests/fuzz/dict/$t.dict" ] && dict=-dict=tests/fuzz/dict/$t.dict
    before=$(ls "$out/crashes" | grep -c "^$t-" || true)
    t0=$(date +%s)
    # shellcheck disable=SC2086
    nice -n "$nice_level" "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/crashes/$t-" $dict $extra $dirs >>"$log" 2>&1
    rc=$?
    t1=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s\n' "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
    summary="execs=${execs:-?} exec/s=${speed:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} $((t1 - t0))s"
    after=$(ls "$out/crashes" | grep -c "^$t-" || true)
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        arts=$(ls -t "$out/crashes" | grep "^$t-" | head -3 | sed "s|^|$out/crashes/|" | tr '\n' ' ')
        echo "fuzz $t: FAIL rc=$rc $summary; artifact: ${arts:-none}; log: $log" >"$status.line"
        return
    fi
    echo ok >"$status"
    echo "fuzz $t: ok $summary" >"$status.line"
}

# Batches of $jobs targets at a time.
set -- "$@"
all="$*"
while [ $# -gt 0 ]; do
    batch=0
    while [ $# -gt 0 ] && [ "$batch" -lt "$jobs" ]; do
        run_one "$1" &
        batch=$((batch + 1))
        shift
    done
    wait
done

passed=0
failed=0
for t in $all; do
    cat "$out/status/$t.line" 2>/dev/null || echo "fuzz $t: FAIL (did not run)"
    if [ "$(cat "$out/status/$t" 2>/dev/null)" = ok ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|fuzz invariant failed' \
            "$out/logs/$t.log" 2>/dev/null | sed 's/^/    /'
    fi
done
[ -n "${FUZZ_RESULTS:-}" ] && echo "$passed $failed" >"$FUZZ_RESULTS"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
