#!/usr/bin/env bash
# HTTP/3 beside Caddy: requests per second and CPU per request of each proxy
# serving HTTP/3 (QUIC) in front of the same HTTP/1.1 backend (nginx
# answering a 5-byte body). Each proxy gets one core's worth (Switchyard
# `workers = 1`, Caddy GOMAXPROCS=1) and no access log; the load is
# `h3load` (crates/switchyard-testkit/examples/h3load.rs: quinn + h3, the
# crates Switchyard serves with; h2load in Debian has no HTTP/3) with
# CONNECTIONS connections of STREAMS requests in flight each. The proxy's
# CPU time (user + system, /proc/PID/stat) over a run is divided by the
# requests answered; ROUNDS rounds alternate; medians and ratios printed.
#
#   bench/http3.sh [path/to/switchyard]    (default: target/release/switchyard)
#   ROUNDS=5 DURATION=10 CONNECTIONS=4 STREAMS=16 bench/http3.sh ...
#
# Needs caddy, nginx, openssl (apt-get install caddy nginx openssl) and the
# release build of h3load (built here). Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/switchyard}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-4}
STREAMS=${STREAMS:-16}
for tool in caddy nginx openssl python3; do
    command -v "$tool" >/dev/null || { echo "http3.sh: $tool is missing (apt-get install caddy nginx openssl)" >&2; exit 2; }
done
cargo build --release -q -p switchyard-testkit --example h3load
H3LOAD=target/release/examples/h3load
W=$(mktemp -d /tmp/switchyard-http3-XXXX)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$W"' EXIT
mkdir -p "$W/t"
# A CA and a certificate for proxy.test, made for this run.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=proxy.test" \
    -keyout "$W/site.key" -out "$W/site.csr" 2>/dev/null
printf 'subjectAltName=DNS:proxy.test\n' > "$W/san.ext"
openssl x509 -req -in "$W/site.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 2 -extfile "$W/san.ext" -out "$W/site.pem" 2>/dev/null
chmod 644 "$W/site.key"
cat > "$W/backend.conf" <<CONF
worker_processes 1; daemon off; pid $W/b.pid; error_log $W/b.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $W/t; proxy_temp_path $W/t; fastcgi_temp_path $W/t; uwsgi_temp_path $W/t; scgi_temp_path $W/t;
  server { listen 127.0.0.1:18380; location / { return 200 "hello"; } } }
CONF
cat > "$W/Caddyfile" <<CONF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2 h3
	}
}
https://proxy.test:18443 {
	bind 127.0.0.1
	tls $W/site.pem $W/site.key
	reverse_proxy 127.0.0.1:18380
}
CONF
cat > "$W/switchyard.toml" <<CONF
[server]
listen = []
workers = 1
[server.tls]
listen = ["127.0.0.1:18444"]
cert = "$W/site.pem"
key = "$W/site.key"
[server.http3]
listen = ["127.0.0.1:18444"]
[log]
access = false
[upstreams.backend]
servers = ["127.0.0.1:18380"]
CONF
nginx -c "$W/backend.conf" & PIDS+=($!)
GOMAXPROCS=1 XDG_DATA_HOME="$W" XDG_CONFIG_HOME="$W" caddy run --config "$W/Caddyfile" --adapter caddyfile >"$W/caddy.log" 2>&1 & PIDS+=($!); CADDY=$!
"$BIN" run -c "$W/switchyard.toml" 2>"$W/switchyard.err" & PIDS+=($!); SY=$!
sleep 2
for port in 18443 18444; do
    out=$("$H3LOAD" "127.0.0.1:$port" proxy.test "$W/ca.pem" 1 1 1 /) || true
    case "$out" in
        *"failed 0 "*) ;;
        *) echo "http3.sh: HTTP/3 on $port did not answer: $out" >&2; cat "$W/caddy.log" "$W/switchyard.err" >&2; exit 1 ;;
    esac
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# One run: "microseconds-of-cpu-per-request requests-per-second".
run() {
    local pid=$1 port=$2 before after out
    before=$(cpu_ticks "$pid")
    out=$("$H3LOAD" "127.0.0.1:$port" proxy.test "$W/ca.pem" "$CONNECTIONS" "$STREAMS" "$DURATION" /)
    after=$(cpu_ticks "$pid")
    python3 - "$before" "$after" "$out" <<'PY'
import os, sys
before, after, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split()
fields = dict(zip(out[::2], out[1::2]))
requests, failed, rps = int(fields["requests"]), int(fields["failed"]), float(fields["rps"])
if failed:
    print(f"http3.sh: {failed} requests failed", file=sys.stderr)
cpu_us = (after - before) / os.sysconf("SC_CLK_TCK") * 1e6
print(f"{cpu_us / requests:.1f} {rps:.0f}")
PY
}
CA=(); SW=(); CR=(); SR=()
for round in $(seq "$ROUNDS"); do
    if (( round % 2 )); then c=$(run "$CADDY" 18443); s=$(run "$SY" 18444); else s=$(run "$SY" 18444); c=$(run "$CADDY" 18443); fi
    echo "round $round: caddy ${c% *} us/request (${c#* } req/s), switchyard ${s% *} us/request (${s#* } req/s)"
    CA+=("${c% *}"); SW+=("${s% *}"); CR+=("${c#* }"); SR+=("${s#* }")
done
python3 - "${CA[*]}" "${SW[*]}" "${CR[*]}" "${SR[*]}" <<'PY'
import statistics, sys
ca, sw, cr, sr = ([float(x) for x in a.split()] for a in sys.argv[1:5])
c, s, crm, srm = (statistics.median(v) for v in (ca, sw, cr, sr))
print(f"median CPU per request: caddy {c:.1f} us, switchyard {s:.1f} us, switchyard/caddy {s / c:.2f}")
print(f"median requests/s: caddy {crm:.0f}, switchyard {srm:.0f}, switchyard/caddy {srm / crm:.2f}")
PY
