#!/usr/bin/env bash
# Benchmarks: Switchyard against nginx and HAProxy on this machine, same run,
# alternating, several rounds; medians and ratios. Run bench/setup.sh first.
#
#   bench/run.sh                      # every scenario
#   bench/run.sh throughput failover  # some of them
#   ROUNDS=5 DURATION=15 bench/run.sh throughput
#   WORKERS=2 bench/run.sh throughput many-connections   # every proxy with 2 workers
#
# Results: a table on stdout (Switchyard, nginx, HAProxy, the floor, and the
# ratios) and bench/results/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nginx haproxy wrk h2load openssl python3; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing; run bench/setup.sh" >&2; exit 2; }
done
echo "bench/run.sh: building switchyard (release)" >&2
cargo build --release -q -p switchyard-cli
# The floor: the same stack with no engine (bench/floor; not a workspace member).
echo "bench/run.sh: building the floor (release)" >&2
cargo build --release -q --manifest-path bench/floor/Cargo.toml --target-dir target/floor
exec python3 bench/bench.py "$@"
