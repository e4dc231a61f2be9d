#!/usr/bin/env bash
# Side-by-side benchmark of shardis and stock Redis; see tools/bench.py --help.
# Default: servers on core 0, redis-benchmark on core 1, SET/GET at P1 and P16, 1M-key memory load.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -l unlimited 2>/dev/null || true
exec python3 tools/bench.py "$@"
