#!/bin/sh
# make demo: starts the sims and switchyard in the background, drives a few hundred
# requests from simulated users, prints the split, and stops everything it started.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CONFIG=${CONFIG:-configs/switchyard.yaml}
pids=""
cleanup() {
    trap - INT TERM EXIT
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
}
trap cleanup INT TERM EXIT
log_dir=$BUILD/demo
mkdir -p "$log_dir"

"$BUILD/switchyard-sim" --port 8101 --name original --ttft-ms 40 --chunk-ms 5 --quiet >"$log_dir/sim-original.log" 2>&1 &
pids="$pids $!"
"$BUILD/switchyard-sim" --port 8102 --name new --ttft-ms 20 --chunk-ms 3 --quiet >"$log_dir/sim-new.log" 2>&1 &
pids="$pids $!"
"$BUILD/switchyard" -c "$CONFIG" 2>"$log_dir/switchyard.log" &
pids="$pids $!"
python3 tools/demo.py --url http://127.0.0.1:8080 --admin http://127.0.0.1:9090
rc=$?
echo "(logs in $log_dir/)"
exit $rc
