#!/bin/sh
# make bench-deps: Debian's nginx and wrk (and the small tools the driver uses), only
# when missing, through the project's installer (one apt-get update, no service started:
# the benchmark runs its own nginx in the foreground with a generated config).
set -eu
cd "$(dirname "$0")/.."
exec sh tools/deps.sh nginx:nginx wrk:wrk taskset:util-linux curl:curl python3:python3
