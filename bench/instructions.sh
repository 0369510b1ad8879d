#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: steadier than
# requests/s on a shared machine. A backend nginx answers a small 200; the
# proxy (1 worker, access log off) runs under callgrind; counters are zeroed
# after a warm-up, then wrk sends a fixed-length load. Switchyard and the
# floor (bench/floor: the same stack with no engine) are measured one after
# the other, and the ratio printed.
#
#   bench/instructions.sh [path/to/switchyard]      (default: target/release/switchyard)
#   KEEP_PROFILE=FILE bench/instructions.sh ...     (keep Switchyard's callgrind profile, for
#                                                   callgrind_annotate; the floor's goes to FILE.floor)
#   SCENARIO=failover bench/instructions.sh ...     (the primary refuses connections and
#                                                   active checks hold it down; requests
#                                                   go to the backup, as in bench.py failover)
#   FLOOR=0 bench/instructions.sh ...               (Switchyard only)
#   PROTO=h2c bench/instructions.sh ...          (HTTP/2 with prior knowledge from the client,
#                                                   by h2load: 10 connections x 10 streams)
#   SERVER_EXTRA='normalize_path = false' bench/instructions.sh ...
#                                                   (more keys for Switchyard's [server])
#   CONFIG_EXTRA=$'[[routes]]\nupstream = "backend"\nrate_limit = ...' bench/instructions.sh ...
#                                                   (appended to Switchyard's config, after the
#                                                   [upstreams.backend] table: routes, say)
#   ACCESS_LOG=stdout|PATH bench/instructions.sh ...
#                                                   (Switchyard's access log on, to standard output
#                                                   (sent to /dev/null) or to the file PATH;
#                                                   default off)
#   PEERS=1 bench/instructions.sh ...               (also nginx and HAProxy as the proxy, one
#                                                   worker or thread each, access logs off,
#                                                   keep-alive to the backend; needs haproxy)
#
# Prints "switchyard requests N  instructions/request M", the same for the
# floor, and "switchyard/floor R" (with PEERS=1 also nginx's and HAProxy's counts and
# "switchyard/nginx R", "switchyard/haproxy R"). Needs nginx, wrk, valgrind (h2load for h2c); builds the
# floor (release) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/switchyard}
FLOOR_BIN=target/floor/release/switchyard-floor
for tool in nginx wrk h2load valgrind callgrind_control; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is missing (apt-get install nginx wrk nghttp2-client valgrind)" >&2; exit 2; }
done
if [ "${FLOOR:-1}" != 0 ] && [ ! -x "$FLOOR_BIN" ]; then
    echo "instructions.sh: building the floor (release)" >&2
    cargo build --release -q --manifest-path bench/floor/Cargo.toml --target-dir target/floor
fi
W=$(mktemp -d /tmp/switchyard-instructions-XXXX)
PROXY=
trap 'kill $PROXY $NG 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/t"
cat > "$W/backend.conf" <<CONF
worker_processes 1; daemon off; pid $W/b.pid; error_log $W/b.log;
events { worker_connections 4000; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $W/t; proxy_temp_path $W/t; fastcgi_temp_path $W/t; uwsgi_temp_path $W/t; scgi_temp_path $W/t;
  server { listen 127.0.0.1:18180; location / { return 200 "ok\n"; } } }
CONF
if [ "${SCENARIO:-}" = failover ]; then
    # Nothing listens on 18189: the checks take it down within a second.
    UPSTREAM='servers = ["127.0.0.1:18189"]
backup = ["127.0.0.1:18180"]
pool_size = 128
[upstreams.backend.health_check]
interval = "1s"
down_interval = "1s"
timeout = "1s"
fall = 1
rise = 2'
else
    UPSTREAM='servers = ["127.0.0.1:18180"]
pool_size = 128'
fi
case "${ACCESS_LOG:-}" in
    "") ACCESS_KEYS='access = false' ;;
    stdout) ACCESS_KEYS='access = true' ;;
    *) ACCESS_KEYS="access = true
access_file = \"$ACCESS_LOG\"" ;;
esac
cat > "$W/switchyard.toml" <<CONF
[server]
listen = ["127.0.0.1:18183"]
workers = 1
${SERVER_EXTRA:-}
[log]
$ACCESS_KEYS
[upstreams.backend]
$UPSTREAM
${CONFIG_EXTRA:-}
CONF
nginx -c "$W/backend.conf" & NG=$!

# The peers as proxies in front of the same backend (PEERS=1): settings as in
# bench/bench.py, reduced to one process and the listeners this script uses.
cat > "$W/nginx-proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $W/p.pid; error_log $W/p.log;
events { worker_connections 4000; }
http { access_log off; keepalive_requests 1000000; http2_max_requests 1000000;
  client_body_temp_path $W/t; proxy_temp_path $W/t; fastcgi_temp_path $W/t; uwsgi_temp_path $W/t; scgi_temp_path $W/t;
  upstream up { server 127.0.0.1:18180; keepalive 128; }
  server { listen 127.0.0.1:18196; listen 127.0.0.1:18197 http2;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$W/haproxy.conf" <<CONF
global
    nbthread 1
    pidfile $W/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:18198
    bind 127.0.0.1:18199 proto h2
    default_backend be
backend be
    server s1 127.0.0.1:18180
CONF

# load PORT SECONDS: the load for PROTO (wrk over HTTP/1.1 keep-alive, or
# h2load over h2c: 10 connections x 10 streams); prints the requests done.
load() {
    if [ "${PROTO:-http1}" = h2c ]; then
        h2load -t1 -c10 -m10 -D"$2" "http://127.0.0.1:$1/" | awk '/^requests:/ {print $8}'
    else
        wrk -t1 -c10 -d"$2"s "http://127.0.0.1:$1/" | awk '/requests in/ {print $1}'
    fi
}

# measure NAME PORT PROFILE_COPY COMMAND...: run COMMAND under callgrind,
# warm up, count a fixed-length load; prints instructions per request and
# sets PER_REQUEST.
measure() {
    local name=$1 port=$2 keep=$3 out="$W/cg-$1.out"
    shift 3
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >/dev/null 2>&1 & PROXY=$!
    local prior=
    if [ "${PROTO:-http1}" = h2c ]; then prior=--http2-prior-knowledge; fi
    for _ in $(seq 100); do curl -s $prior -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
    load "$port" 3 >/dev/null
    callgrind_control -z "$PROXY" >/dev/null 2>&1
    local requests
    requests=$(load "$port" 8)
    callgrind_control -d "$PROXY" >/dev/null 2>&1
    sleep 1
    local dump ir
    dump=$(ls "$out".* | head -1)
    ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    if [ -n "$keep" ]; then cp "$dump" "$keep"; fi
    kill "$PROXY" 2>/dev/null || true
    wait "$PROXY" 2>/dev/null || true
    PER_REQUEST=$(python3 -c "print(round($ir / $requests))")
    python3 -c "print(f'$name requests $requests  instructions/request {$PER_REQUEST:,}')"
}

measure switchyard 18183 "${KEEP_PROFILE:-}" "$BIN" run -c "$W/switchyard.toml"
SWITCHYARD=$PER_REQUEST
if [ "${FLOOR:-1}" != 0 ]; then
    if [ "${PROTO:-http1}" = h2c ]; then
        # The floor speaks h2c on a listener of its own (its third address).
        measure floor 18185 "${KEEP_PROFILE:+$KEEP_PROFILE.floor}" "$FLOOR_BIN" 127.0.0.1:18184 127.0.0.1:18180 127.0.0.1:18185
    else
        measure floor 18184 "${KEEP_PROFILE:+$KEEP_PROFILE.floor}" "$FLOOR_BIN" 127.0.0.1:18184 127.0.0.1:18180
    fi
    python3 -c "print(f'switchyard/floor {$SWITCHYARD / $PER_REQUEST:.3f}')"
fi
if [ "${PEERS:-0}" != 0 ]; then
    for tool in haproxy; do
        command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is missing (apt-get install haproxy)" >&2; exit 2; }
    done
    if [ "${PROTO:-http1}" = h2c ]; then ports=(18197 18199); else ports=(18196 18198); fi
    measure nginx "${ports[0]}" "${KEEP_PROFILE:+$KEEP_PROFILE.nginx}" nginx -c "$W/nginx-proxy.conf"
    python3 -c "print(f'switchyard/nginx {$SWITCHYARD / $PER_REQUEST:.3f}')"
    measure haproxy "${ports[1]}" "${KEEP_PROFILE:+$KEEP_PROFILE.haproxy}" haproxy -db -f "$W/haproxy.conf"
    python3 -c "print(f'switchyard/haproxy {$SWITCHYARD / $PER_REQUEST:.3f}')"
fi
