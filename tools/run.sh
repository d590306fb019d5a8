#!/bin/sh
# make run: two simulated providers (original on 8101, new on 8102) and switchyard
# with the default config, in the foreground. Ctrl-C stops all three.
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

"$BUILD/switchyard-sim" --port 8101 --name original --ttft-ms 120 --chunk-ms 15 --chunks 24 --quiet &
pids="$pids $!"
"$BUILD/switchyard-sim" --port 8102 --name new --ttft-ms 60 --chunk-ms 10 --chunks 24 --quiet &
pids="$pids $!"
echo "switchyard: sims on 127.0.0.1:8101 (original) and 127.0.0.1:8102 (new); router on 127.0.0.1:8080, admin 127.0.0.1:9090"
echo "switchyard: try  curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' -d '{\"model\":\"gpt-4.1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'"
"$BUILD/switchyard" -c "$CONFIG" &
pids="$pids $!"
wait $!
