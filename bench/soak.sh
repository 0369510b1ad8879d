#!/usr/bin/env bash
# A bounded soak of Switchyard against flapping, resetting and stalling
# upstreams (bench/soak.py): 10 minutes by default, `--minutes N` for longer.
# Passes when the proxy's RSS and open file descriptors stay flat and no GET
# failed. Loopback only; not part of CI.
#
#   bench/soak.sh
#   bench/soak.sh --minutes 60 --out bench/results/soak.json
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "bench/soak.sh: python3 is missing" >&2; exit 2; }
echo "bench/soak.sh: building switchyard (release)" >&2
cargo build --release -q -p switchyard-cli
exec python3 bench/soak.py "$@"
