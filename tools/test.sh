#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and integration tests (which start the
# real shardis binary, redis-cli and a real redis-server for the differential test).
# Installs redis-tools / redis-server / nodejs / npm from Debian if they are missing, the
# pinned BullMQ, ioredis and node-redis (tests/node) with npm, and redis-py and Celery with pip.
set -euo pipefail
cd "$(dirname "$0")/.."

# io_uring rings may need locked memory; raise the limit as far as we are allowed.
ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

need=()
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# node and npm for tests/bullmq.rs (BullMQ, the Node.js job queue, run against shardis).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# redis-py for tests/scripting.rs (its Lock runs EVALSHA scripts under contention).
if ! python3 -c 'import redis' >/dev/null 2>&1; then
  echo "==> installing redis-py"
  python3 -m pip install -q redis 2>/dev/null || pip3 install -q redis
fi

# Celery for tests/celery.rs (a real worker with shardis as broker and result backend).
if ! python3 -c 'import celery, packaging' >/dev/null 2>&1; then
  echo "==> installing Celery"
  python3 -m pip install -q 'celery==5.7.0' packaging 2>/dev/null \
    || pip3 install -q 'celery==5.7.0' packaging
fi

# BullMQ for tests/bullmq.rs, ioredis and node-redis for tests/sentinel.rs, at the versions
# tests/node/package.json pins (package-lock.json fixes the rest of the tree); reinstalled
# when a pin changes.
node_dir=tests/node
pinned=$(node -p "const d = require('./$node_dir/package.json').dependencies;
  Object.keys(d).sort().map(k => k + '@' + d[k]).join(' ')")
have=$(node -p "const d = require('./$node_dir/package.json').dependencies;
  Object.keys(d).sort().map(k => { try { return k + '@' +
    require('./$node_dir/node_modules/' + k + '/package.json').version } catch (e) { return '' } })
  .join(' ')")
if [ "$have" != "$pinned" ]; then
  echo "==> installing $pinned into $node_dir/node_modules"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "==> cargo test (shards: ${SHARDIS_TEST_SHARDS:-1,4})"
# Unit and integration tests; benches are compiled by clippy above and smoke-run below
# (criterion's harness does not take libtest flags such as --test-threads).
cargo test --lib --bins --tests -- --test-threads "${TEST_THREADS:-4}"
cargo test --bench mesh_rtt
cargo test --examples

# The mixed-workload load generator of tools/bench.sh against the real server: every
# request answered, no error replies, SET:GET 1:10.
echo "==> loadgen smoke (examples/loadgen.rs against shardis --shards 2)"
cargo build --quiet --example loadgen --bin shardis
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/shardis --port "$port" --shards 2 --loglevel warning --save '' &
srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
out=$(target/debug/examples/loadgen --port "$port" --clients 8 --requests 11000 --pipeline 4 --ratio 1:10 --key-max 500)
echo "$out" | head -1
# Every connection keeps 1 SET per 10 GETs; the total may be off by one cycle per connection.
echo "$out" | awk '/^totals/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  d = v["sets"] * 10 - v["gets"]; if (d < 0) d = -d
  ok = v["requests"] == 11000 && v["sets"] + v["gets"] == 11000 && v["errors"] == 0 && d <= 11 * 8 }
  END { exit ok ? 0 : 1 }' || { echo "loadgen smoke failed"; exit 1; }
[ "$(redis-cli -p "$port" dbsize)" -gt 0 ] || { echo "loadgen wrote no keys"; exit 1; }
kill $srv; wait $srv 2>/dev/null || true
trap - EXIT
# The cargo-fuzz targets (fuzz/) for a bounded time when cargo-fuzz is installed (it needs
# nightly features: RUSTC_BOOTSTRAP=1 on stable). The same properties run above as bounded
# randomized unit tests, so a machine without cargo-fuzz loses nothing essential.
if command -v cargo-fuzz >/dev/null 2>&1 && [ "${SHARDIS_SKIP_FUZZ:-0}" != 1 ]; then
  echo "==> cargo fuzz (20 s per target)"
  # Leak detection is off: each shard's Lua VM lives as long as its thread, by design.
  for t in glob parser_chunks dispatch rdb aof config; do
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time=20 -timeout=5 \
      -detect_leaks=0 -rss_limit_mb=4096 2>&1 | tail -n 2)
  done
else
  echo "==> fuzz targets skipped (cargo-fuzz not installed, or SHARDIS_SKIP_FUZZ=1; see fuzz/README.md)"
fi
echo "==> all tests passed"
