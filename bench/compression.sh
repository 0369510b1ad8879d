#!/usr/bin/env bash
# CPU per MiB compressed: Switchyard's `compress = ["gzip"]` beside nginx's
# `gzip on` at the same level (5), in front of the same backend serving a
# 1 MiB HTML-like page (text with varied rows: compresses about 6:1, like
# a real page, not like a run of one byte). Each proxy has one worker and
# its access log off; wrk asks for gzip on every request. The proxy's CPU
# time (user + system, from /proc/PID/stat) over the run is divided by the
# MiB of page it compressed (requests x 1 MiB), for ROUNDS rounds,
# alternating; the medians and the ratio are printed.
#
#   bench/compression.sh [path/to/switchyard]    (default: target/release/switchyard)
#   ROUNDS=5 DURATION=10 bench/compression.sh ...
#
# Needs nginx and wrk. Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/switchyard}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
for tool in nginx wrk python3; do
    command -v "$tool" >/dev/null || { echo "compression.sh: $tool is missing (apt-get install nginx wrk)" >&2; exit 2; }
done
W=$(mktemp -d /tmp/switchyard-compression-XXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/t" "$W/www"
python3 - "$W/www/page.html" <<'PY'
import random, sys
random.seed(7)
words = "switchyard proxy upstream retry failover health route header body stream".split()
rows = []
size = 0
i = 0
while size < 1 << 20:
    row = f'<tr><td>{i}</td><td>{" ".join(random.choice(words) for _ in range(6))}</td><td>{random.randint(0, 10**9)}</td></tr>\n'
    rows.append(row); size += len(row); i += 1
open(sys.argv[1], "w").write("".join(rows)[: 1 << 20])
PY
# nginx workers run as nobody: let them read the page.
chmod 755 "$W" "$W/www"; chmod 644 "$W/www/page.html"
PAGE_BYTES=$(stat -c %s "$W/www/page.html")
cat > "$W/backend.conf" <<CONF
worker_processes 1; daemon off; pid $W/b.pid; error_log $W/b.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; types { text/html html; }
  client_body_temp_path $W/t; proxy_temp_path $W/t; fastcgi_temp_path $W/t; uwsgi_temp_path $W/t; scgi_temp_path $W/t;
  server { listen 127.0.0.1:18280; root $W/www; } }
CONF
cat > "$W/nginx-proxy.conf" <<CONF
worker_processes 1; daemon off; master_process off; pid $W/p.pid; error_log $W/p.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $W/t; proxy_temp_path $W/t; fastcgi_temp_path $W/t; uwsgi_temp_path $W/t; scgi_temp_path $W/t;
  gzip on; gzip_comp_level 5; gzip_proxied any; gzip_vary on; gzip_min_length 1024;
  upstream up { server 127.0.0.1:18280; keepalive 16; }
  server { listen 127.0.0.1:18281;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$W/switchyard.toml" <<CONF
[server]
listen = ["127.0.0.1:18282"]
workers = 1
[log]
access = false
[upstreams.backend]
servers = ["127.0.0.1:18280"]
[[routes]]
path_prefix = "/"
upstream = "backend"
compress = ["gzip"]
CONF
nginx -c "$W/backend.conf" & PIDS+=($!)
nginx -c "$W/nginx-proxy.conf" & PIDS+=($!); NGINX=$!
"$BIN" run -c "$W/switchyard.toml" 2>"$W/switchyard.err" & PIDS+=($!); SY=$!
sleep 1
curl -s -D "$W/check.head" -H "Accept-Encoding: gzip" -o "$W/check.gz" http://127.0.0.1:18282/page.html; grep -q "^HTTP/1.1 200" "$W/check.head" || { echo "compression.sh: Switchyard did not answer:" >&2; cat "$W/check.head" "$W/switchyard.err" >&2; exit 1; }
gunzip -c "$W/check.gz" | cmp -s - "$W/www/page.html" || { echo "compression.sh: Switchyard's gzip does not decode to the page" >&2; exit 1; }
for port in 18281 18282; do
    curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/page.html" | grep -qi '^content-encoding: gzip' \
        || { echo "compression.sh: the proxy on $port did not compress" >&2; exit 1; }
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# One run: "ms-of-cpu-per-MiB requests".
run() {
    local pid=$1 port=$2 before after out requests
    before=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c4 -d"${DURATION}s" -H 'Accept-Encoding: gzip' "http://127.0.0.1:$port/page.html")
    after=$(cpu_ticks "$pid")
    requests=$(echo "$out" | awk '/requests in/ { print $1 }')
    python3 -c "import os,sys; t=os.sysconf('SC_CLK_TCK'); d=($after-$before)/t*1000; mib=$requests*$PAGE_BYTES/(1<<20); print(f'{d/mib:.2f} {$requests}')"
}
NG=(); SW=()
for round in $(seq "$ROUNDS"); do
    if (( round % 2 )); then n=$(run "$NGINX" 18281); s=$(run "$SY" 18282); else s=$(run "$SY" 18282); n=$(run "$NGINX" 18281); fi
    echo "round $round: nginx ${n% *} ms/MiB (${n#* } requests), switchyard ${s% *} ms/MiB (${s#* } requests)"
    NG+=("${n% *}"); SW+=("${s% *}")
done
python3 - "${NG[*]}" "${SW[*]}" <<'PY'
import statistics, sys
ng = [float(x) for x in sys.argv[1].split()]
sw = [float(x) for x in sys.argv[2].split()]
n, s = statistics.median(ng), statistics.median(sw)
print(f"median CPU per MiB compressed (gzip level 5): nginx {n:.2f} ms, switchyard {s:.2f} ms, switchyard/nginx {s / n:.2f}")
PY
