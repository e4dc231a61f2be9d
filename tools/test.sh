#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and integration tests (which start the
# real shardis binary, redis-cli and a real redis-server for the differential test).
# Installs redis-tools / redis-server from Debian if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# io_uring rings may need locked memory; raise the limit as far as we are allowed.
ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

need=()
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
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
echo "==> all tests passed"
