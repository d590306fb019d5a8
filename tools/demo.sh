#!/bin/sh
# make demo: the rollout story against simulated providers (tools/demo.py starts and
# stops every process it needs, and ends by itself).
set -u
cd "$(dirname "$0")/.."
exec python3 tools/demo.py --build "${BUILD:-build}"
