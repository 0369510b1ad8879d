#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for SECONDS each (default 300), JOBS at a
# time (default 1; 2 shares the two cores), and print per target the
# executions, the corpus size and whether it crashed. Needs nightly and
# cargo-fuzz (installed here when missing: cargo install cargo-fuzz).
#
#   bench/fuzz.sh [SECONDS]            every target
#   TARGETS="path config" bench/fuzz.sh 60
#
# A crash leaves its input in fuzz/artifacts/TARGET/; reproduce it with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`, then make
# it a unit test beside the parser. Logs go to fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-300}
JOBS=${JOBS:-1}
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
ALL=$(cd fuzz && cargo +nightly fuzz list)
TARGETS=${TARGETS:-$ALL}
mkdir -p fuzz/logs
echo "fuzz.sh: building the targets" >&2
(cd fuzz && cargo +nightly fuzz build -O)

run_one() {
    local target=$1
    mkdir -p "fuzz/corpus/$target"
    echo "fuzz.sh: $target for ${SECONDS_EACH}s" >&2
    if (cd fuzz && cargo +nightly fuzz run -O "$target" -- \
            -max_total_time="$SECONDS_EACH" -print_final_stats=1 -rss_limit_mb=4096) \
            >"fuzz/logs/$target.log" 2>&1; then
        echo ok >"fuzz/logs/$target.result"
    else
        echo CRASH >"fuzz/logs/$target.result"
    fi
}

running=0
for target in $TARGETS; do
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

printf '%-20s %12s %8s %s\n' target executions corpus result
for target in $TARGETS; do
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/logs/$target.log" | grep -o '[0-9]*$' || echo '?')
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    printf '%-20s %12s %8s %s\n' "$target" "${execs:-?}" "$corpus" "$(cat "fuzz/logs/$target.result")"
done
