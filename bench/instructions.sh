#!/usr/bin/env bash
# Instructions per proxied request for Switchyard, counted by callgrind:
# steadier than requests/s on a shared machine. A backend nginx answers a
# small 200; Switchyard (1 worker, access log off) runs under callgrind;
# counters are zeroed after a warm-up, then wrk sends a fixed-length load.
#
#   bench/instructions.sh [path/to/switchyard]      (default: target/release/switchyard)
#   KEEP_PROFILE=FILE bench/instructions.sh ...     (keep the callgrind profile, for callgrind_annotate)
#   SCENARIO=failover bench/instructions.sh ...     (the primary refuses connections and
#                                                   active checks hold it down; requests
#                                                   go to the backup, as in bench.py failover)
#
# Prints "requests N  instructions/request M". Needs nginx, wrk, valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/switchyard}
for tool in nginx wrk valgrind callgrind_control; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is missing (apt-get install nginx wrk valgrind)" >&2; exit 2; }
done
W=$(mktemp -d /tmp/switchyard-instructions-XXXX)
trap 'kill $SY $NG 2>/dev/null || true; rm -rf "$W"' EXIT
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
cat > "$W/switchyard.toml" <<CONF
[server]
listen = ["127.0.0.1:18183"]
workers = 1
[log]
access = false
[upstreams.backend]
$UPSTREAM
CONF
nginx -c "$W/backend.conf" & NG=$!
valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$BIN" run -c "$W/switchyard.toml" 2>/dev/null & SY=$!
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:18183/ && break; sleep 0.1; done
wrk -t1 -c10 -d3s http://127.0.0.1:18183/ >/dev/null
callgrind_control -z "$SY" >/dev/null
REQUESTS=$(wrk -t1 -c10 -d8s http://127.0.0.1:18183/ | awk '/requests in/ {print $1}')
callgrind_control -d "$SY" >/dev/null
sleep 1
DUMP=$(ls "$W"/cg.out.* | head -1)
IR=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
python3 -c "print(f'requests $REQUESTS  instructions/request {$IR / $REQUESTS:,.0f}')"
if [ -n "${KEEP_PROFILE:-}" ]; then cp "$DUMP" "$KEEP_PROFILE"; fi
