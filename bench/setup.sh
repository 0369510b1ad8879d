#!/usr/bin/env bash
# Install what the benchmarks need from Debian's packages, when missing.
# Not used by CI or `cargo test`: benchmarks are run on purpose.
set -euo pipefail
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v curl >/dev/null || need+=(curl)
command -v valgrind >/dev/null || need+=(valgrind)
command -v openssl >/dev/null || need+=(openssl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    echo "bench/setup.sh: installing ${need[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
echo "bench/setup.sh: nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(haproxy -v | head -1 | awk '{print "haproxy", $3}'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
