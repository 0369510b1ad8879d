#!/usr/bin/env python3
"""Switchyard against nginx and HAProxy, side by side, on this machine.

One backend (nginx answering a small 200, a 1 MiB file and 1 MiB uploads)
stands behind three proxies with equivalent settings: one worker each,
upstream keep-alive on, access logs off. Each scenario measures every proxy
through the same client, alternating their order, for several rounds, and
reports medians and the ratios Switchyard/nginx and Switchyard/HAProxy.

Started by bench/run.sh, which builds Switchyard first. Everything listens
on 127.0.0.1; nothing else is dialled.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# SWITCHYARD_BIN=path measures another build (an older commit's, say).
SWITCHYARD = Path(os.environ.get("SWITCHYARD_BIN", ROOT / "target" / "release" / "switchyard"))
# The floor (bench/floor): the same stack with no engine; built by run.sh.
FLOOR = ROOT / "target" / "floor" / "release" / "switchyard-floor"
RESULTS = ROOT / "bench" / "results"
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "10"))
IDLE_CONNECTIONS = int(os.environ.get("IDLE_CONNECTIONS", "10000"))  # lowered to fit the FD limit
# Workers of each proxy under test (nginx worker_processes, HAProxy nbthread,
# Switchyard workers); the backend keeps one. The floor has one thread only,
# so it sits out runs with more.
WORKERS = int(os.environ.get("WORKERS", "1"))

BACKEND = 18080
FLAPPING = 18090  # the flapping scenario's second backend
FLAP_PERIOD = float(os.environ.get("FLAP_PERIOD", "2"))  # seconds down, then up
PORTS = {"switchyard": 18083, "nginx": 18081, "haproxy": 18082, "floor": 18093}
# HTTP/2 from the client: cleartext with prior knowledge (h2c), and over TLS
# (ALPN h2). Upstream stays HTTP/1.1 for all three (the same backend).
H2C_PORTS = {"switchyard": 18086, "nginx": 18084, "haproxy": 18085, "floor": 18094}
TLS_PORTS = {"switchyard": 18089, "nginx": 18087, "haproxy": 18088}
PROXIES = ["switchyard", "nginx", "haproxy"]
# Every scenario the floor can take part in (no TLS, no policy) reports
# Switchyard/floor beside the peers.
WITH_FLOOR = PROXIES + ["floor"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- configs

def nginx_preamble(work, name, workers=1):
    """What both nginx instances share: long keep-alive, no access log.
    Ends inside the `http` block."""
    return f"""
worker_processes {workers};
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
worker_rlimit_nofile 65536;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/{name}-body;
    proxy_temp_path {work}/{name}-proxy;
"""


def backend_conf(work, name="backend", port=None):
    port = port or BACKEND
    big = work / "big.bin"
    big.write_bytes(b"b" * (1024 * 1024))
    return nginx_preamble(work, name) + f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 4m;
        location = /big {{ alias {big}; }}
        location = /upload {{ client_body_buffer_size 2m; return 200 "ok\\n"; }}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def nginx_conf(work, upstream, connect_timeout):
    h2 = f"""
        listen 127.0.0.1:{H2C_PORTS["nginx"]} http2;
        listen 127.0.0.1:{TLS_PORTS["nginx"]} ssl http2;
        ssl_certificate {work}/cert.pem;
        ssl_certificate_key {work}/key.pem;
        http2_max_requests 1000000;"""
    return nginx_preamble(work, "nginx", WORKERS) + f"""
    upstream up {{
        {upstream}
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{PORTS["nginx"]} backlog=4096;{h2}
        client_max_body_size 4m;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout {connect_timeout};
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def haproxy_conf(work, servers, connect_timeout):
    return f"""
global
    nbthread {WORKERS}
    maxconn {max(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2 - 100)}
    pidfile {work}/haproxy.pid
defaults
    mode http
    timeout connect {connect_timeout}
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    option http-keep-alive
    http-reuse always
    retries 1
    option redispatch
frontend fe
    bind 127.0.0.1:{PORTS["haproxy"]}
    bind 127.0.0.1:{H2C_PORTS["haproxy"]} proto h2
    bind 127.0.0.1:{TLS_PORTS["haproxy"]} ssl crt {work}/combined.pem alpn h2,http/1.1
    default_backend be
backend be
{servers}
"""


def switchyard_conf(work, upstream, connect_timeout, extra=""):
    return f"""
[server]
listen = ["127.0.0.1:{PORTS["switchyard"]}", "127.0.0.1:{H2C_PORTS["switchyard"]}"]
workers = {WORKERS}
header_read_timeout = "300s"

[server.tls]
listen = ["127.0.0.1:{TLS_PORTS["switchyard"]}"]
cert = "{work}/cert.pem"
key = "{work}/key.pem"

[log]
access = false

[upstreams.backend]
{upstream}
connect_timeout = "{connect_timeout}"
pool_size = 128
{extra}"""


def make_certificate(work):
    """A self-signed P-256 certificate for 127.0.0.1, made for this run."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem"), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    (work / "combined.pem").write_text((work / "cert.pem").read_text() + (work / "key.pem").read_text())


# ---------------------------------------------------------------- processes

class Stack:
    """The backend and the three proxies for one scenario."""

    def __init__(self, work, mode=None):
        self.work = work
        self.procs = {}
        self.blackhole = None
        self.flapper = None
        try:
            self.start_all(mode)
        except BaseException:
            self.stop()
            raise

    def start_all(self, mode):
        work = self.work
        for port in [BACKEND, *PORTS.values(), *H2C_PORTS.values(), *TLS_PORTS.values()]:
            with socket.socket() as probe:
                # As the servers do: TIME_WAIT leftovers must not count as "in use".
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    raise SystemExit(f"port {port} is in use; is an earlier benchmark still running?")
        # The same active checks for HAProxy and Switchyard (TCP connect, 1 s, fall 1, rise 2).
        sy_checks = ('[upstreams.backend.health_check]\ninterval = "1s"\ndown_interval = "1s"\n'
                     'timeout = "1s"\nfall = 1\nrise = 2\n')
        if mode == "flapping":
            steady, flapping = f"127.0.0.1:{BACKEND}", f"127.0.0.1:{FLAPPING}"
            nginx_up = f"server {steady} max_fails=1 fail_timeout=2s; server {flapping} max_fails=1 fail_timeout=2s;"
            ha_servers = (
                f"    server steady {steady} check inter 1s fall 1 rise 2\n"
                f"    server flapping {flapping} check inter 1s fall 1 rise 2"
            )
            sy_up = f'servers = ["{steady}", "{flapping}"]'
            sy_extra = sy_checks
        elif mode == "failover":
            self.blackhole = Blackhole()
            primary = f"127.0.0.1:{self.blackhole.port}"
            nginx_up = f"server {primary} max_fails=1 fail_timeout=10s; server 127.0.0.1:{BACKEND} backup;"
            ha_servers = (
                f"    server primary {primary} check inter 1s fall 1 rise 2\n"
                f"    server backup 127.0.0.1:{BACKEND} backup"
            )
            sy_up = f'servers = ["{primary}"]\nbackup = ["127.0.0.1:{BACKEND}"]'
            sy_extra = sy_checks
        else:
            nginx_up = f"server 127.0.0.1:{BACKEND} max_fails=0;"
            ha_servers = f"    server s1 127.0.0.1:{BACKEND}"
            sy_up = f'servers = ["127.0.0.1:{BACKEND}"]'
            sy_extra = ""
        make_certificate(work)
        (work / "backend-body").mkdir(exist_ok=True)
        self.start("backend", ["nginx", "-c", self.write("backend.conf", backend_conf(work))], BACKEND)
        if mode == "flapping":
            (work / "flapping-body").mkdir(exist_ok=True)
            conf = self.write("flapping.conf", backend_conf(work, "flapping", FLAPPING))
            self.flapper = Flapper(["nginx", "-c", conf], work)
        self.start("nginx", ["nginx", "-c", self.write("nginx.conf", nginx_conf(work, nginx_up, "1s"))], PORTS["nginx"])
        self.start("haproxy", ["haproxy", "-db", "-f", self.write("haproxy.cfg", haproxy_conf(work, ha_servers, "1s"))],
                   PORTS["haproxy"])
        self.start("switchyard", [str(SWITCHYARD), "run", "-c", self.write("switchyard.toml", switchyard_conf(work, sy_up, "1s", sy_extra))],
                   PORTS["switchyard"])
        if mode is None and WORKERS == 1:
            self.start("floor", [str(FLOOR), f"127.0.0.1:{PORTS['floor']}", f"127.0.0.1:{BACKEND}",
                                 f"127.0.0.1:{H2C_PORTS['floor']}"], PORTS["floor"])

    def write(self, name, text):
        path = self.work / name
        path.write_text(text)
        return str(path)

    def start(self, name, argv, port):
        out = open(self.work / f"{name}.out", "w")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.work, start_new_session=True)
        self.procs[name] = proc
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited: {(self.work / f'{name}.out').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"{name} did not listen on {port}")

    def pids(self, name):
        """The process and its children (nginx's workers)."""
        root = self.procs[name].pid
        pids = [root]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == root:
                        pids.append(int(entry))
                except (OSError, IndexError, ValueError):
                    pass
        return pids

    def cpu_seconds(self, name):
        total = 0
        for pid in self.pids(name):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
        return total / CLK_TCK

    def rss_kib(self, name):
        total = 0
        for pid in self.pids(name):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.blackhole:
            self.blackhole.close()
        if self.flapper:
            self.flapper.close()


class Flapper:
    """A backend that is up for FLAP_PERIOD seconds, then down as long, and so
    on: stopped with SIGTERM (nginx's fast shutdown closes its connections)
    and started again."""

    def __init__(self, argv, work):
        self.argv, self.work = argv, work
        self.stopping = threading.Event()
        self.proc = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            out = open(self.work / "flapping.out", "a")
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.work, start_new_session=True)
            if self.stopping.wait(FLAP_PERIOD):
                break
            self._kill()
            self.stopping.wait(FLAP_PERIOD)
        self._kill()

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=15)


class Blackhole:
    """A listener whose accept queue is full: connects to it time out."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers = []
        for _ in range(64):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            time.sleep(0.05)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0 or not self._connected(s):
                s.close()
                return
            self.fillers.append(s)
        raise SystemExit("could not fill the blackhole's accept queue")

    @staticmethod
    def _connected(s):
        try:
            s.getpeername()
            return True
        except OSError:
            return False

    def close(self):
        for s in self.fillers:
            s.close()
        self.listener.close()


# ---------------------------------------------------------------- clients

def parse_duration(text):
    number, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(port, connections, path="/", script=None, duration=DURATION, scheme="http", headers=()):
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script:
        argv += ["-s", str(ROOT / "bench" / "lua" / script)]
    for header in headers:
        argv += ["-H", header]
    argv.append(f"{scheme}://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}(?:\.000)?%\s+([\d.]+\w+)", out, re.M)
        result[f"p{p}_ms"] = parse_duration(m.group(1)) * 1000 if m else None
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = (sum(map(int, errors.groups())) if errors else 0) + (int(non2xx.group(1)) if non2xx else 0)
    slow = re.search(r"SLOW_FRACTION ([\d.]+)", out)
    if slow:
        result["over_0_9s"] = round(float(slow.group(1)) * result["requests"])
    return result


def h2load(url, clients=10, streams=10, duration=DURATION):
    """h2load over HTTP/2: `clients` connections, `streams` concurrent streams each."""
    argv = ["h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{duration}", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not done:
        raise RuntimeError(f"h2load printed no result: {out[-500:]}")
    succeeded, failed, errored = int(done.group(4)), int(done.group(5)), int(done.group(6))
    status = re.search(r"status codes: (\d+) 2xx", out)
    ok = int(status.group(1)) if status else 0
    result = {"rps": succeeded / duration, "requests": succeeded,
              # h2load's status count can run one ahead of "succeeded" when -D ends a run.
              "errors": failed + errored + max(succeeded - ok, 0)}
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+\w+)", out)
    result["mean_ms"] = parse_duration(mean.group(1)) * 1000 if mean else None
    return result


def measure_h2(stack, name, url):
    before = stack.cpu_seconds(name)
    result = h2load(url)
    cpu = stack.cpu_seconds(name) - before
    result["cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
    return result


def open_idle(port, count):
    """Open `count` keep-alive connections, one request each, and keep them idle."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request)
        sockets.append(s)
    for s in sockets:
        got = b""
        while b"ok\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("a proxy closed an idle-memory connection")
            got += chunk
    return sockets


# ---------------------------------------------------------------- scenarios

def measure_load(stack, name, connections, path="/", script=None, tls=False, headers=()):
    before = stack.cpu_seconds(name)
    if tls:
        result = wrk(TLS_PORTS[name], connections, path, script, scheme="https", headers=headers)
    else:
        result = wrk(PORTS[name], connections, path, script, headers=headers)
    cpu = stack.cpu_seconds(name) - before
    result["cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
    return result


def scenario_throughput(stack, name):
    return measure_load(stack, name, 50)


def scenario_large_body(stack, name):
    get = measure_load(stack, name, 10, "/big")
    post = measure_load(stack, name, 10, "/upload", "post.lua")
    return {
        "get_mib_s": get["rps"],  # 1 MiB per response
        "post_mib_s": post["rps"],  # 1 MiB per request
        "get_p99_ms": get["p99_ms"],
        "post_p99_ms": post["p99_ms"],
        "errors": get["errors"] + post["errors"],
    }


def scenario_many_connections(stack, name):
    return measure_load(stack, name, 2000)


def scenario_idle_memory(stack, name):
    """RSS growth per idle connection, opened in two bursts of half each.

    The second half's growth is the cost of an idle connection once memory
    freed by the first half can be reused (Switchyard parks idle connections
    and frees hyper's buffers, but the C allocator keeps the pages)."""
    half = IDLE_CONNECTIONS // 2
    time.sleep(0.5)
    before = stack.rss_kib(name)
    first = open_idle(PORTS[name], half)
    # Long enough for Switchyard to park every idle connection (it parks
    # after 1-2 s of quiet); the same wait for every proxy.
    time.sleep(3.0)
    middle = stack.rss_kib(name)
    second = open_idle(PORTS[name], IDLE_CONNECTIONS - half)
    time.sleep(3.0)
    after = stack.rss_kib(name)
    for s in first + second:
        s.close()
    return {"rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": (after - before) / IDLE_CONNECTIONS,
            "kib_per_connection_second_half": (after - middle) / (IDLE_CONNECTIONS - half)}


SLOW_READERS = int(os.environ.get("SLOW_READERS", "200"))
SLOW_RATE = 32 * 1024  # bytes per second each slow reader takes


def slow_reader(port, stop, read):
    """GET /big (1 MiB) and read it at SLOW_RATE until `stop` is set. A small
    receive buffer, the same for every proxy, keeps the kernel's share low."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n")
    step = 4096
    try:
        while not stop.is_set():
            chunk = s.recv(step)
            if not chunk:
                break
            read[0] += len(chunk)
            time.sleep(step / SLOW_RATE)
    except OSError:
        pass
    finally:
        s.close()


def scenario_slow_readers(stack, name):
    """SLOW_READERS clients each ask for the 1 MiB body and read it at
    32 KiB/s: the proxy's resident memory per slow reader (peak during the
    transfer, less before). A proxy that reads the upstream ahead of the
    client holds the difference."""
    time.sleep(0.5)
    before = stack.rss_kib(name)
    stop = threading.Event()
    reads = [[0] for _ in range(SLOW_READERS)]
    threads = [threading.Thread(target=slow_reader, args=(PORTS[name], stop, reads[i]), daemon=True)
               for i in range(SLOW_READERS)]
    for t in threads:
        t.start()
    peak = before
    deadline = time.time() + 8
    while time.time() < deadline:
        time.sleep(0.5)
        peak = max(peak, stack.rss_kib(name))
    stop.set()
    for t in threads:
        t.join(timeout=15)
    taken = sum(r[0] for r in reads) / SLOW_READERS
    return {"kib_per_slow_reader": (peak - before) / SLOW_READERS, "rss_before_kib": before,
            "rss_peak_kib": peak, "kib_read_per_client": taken / 1024}


def scenario_https(stack, name):
    """HTTPS/1.1 with keep-alive: 50 connections, each handshakes once."""
    return measure_load(stack, name, 50, tls=True)


def scenario_handshakes(stack, name):
    """A new TLS connection (full handshake, ECDHE P-256) for every request:
    `rps` is handshakes per second."""
    return measure_load(stack, name, 10, tls=True, headers=["Connection: close"])


def scenario_h2c(stack, name):
    """HTTP/2 with prior knowledge from the client: 10 connections x 10 streams."""
    return measure_h2(stack, name, f"http://127.0.0.1:{H2C_PORTS[name]}/")


def scenario_h2_tls(stack, name):
    """HTTP/2 over TLS (ALPN h2): 10 connections x 10 streams, handshakes once."""
    return measure_h2(stack, name, f"https://127.0.0.1:{TLS_PORTS[name]}/")


def scenario_failover(stack, name):
    return wrk(PORTS[name], 50, "/", "slow.lua")


def scenario_flapping(stack, name):
    """GETs (idempotent) while one of two servers goes down and up."""
    return wrk(PORTS[name], 50, "/", "slow.lua")


SCENARIOS = {
    # name: (measure, stack mode, metrics, proxies)
    "throughput": (scenario_throughput, None, ["rps", "p50_ms", "p99_ms", "cpu_us_per_request", "errors"], WITH_FLOOR),
    "large-body": (scenario_large_body, None, ["get_mib_s", "post_mib_s", "get_p99_ms", "post_p99_ms", "errors"], WITH_FLOOR),
    "many-connections": (scenario_many_connections, None, ["rps", "p50_ms", "p99_ms", "cpu_us_per_request", "errors"], WITH_FLOOR),
    "idle-memory": (scenario_idle_memory, None, ["kib_per_connection", "kib_per_connection_second_half", "rss_before_kib", "rss_after_kib"], WITH_FLOOR),
    "slow-readers": (scenario_slow_readers, None, ["kib_per_slow_reader", "rss_before_kib", "rss_peak_kib", "kib_read_per_client"], PROXIES),
    "h2c": (scenario_h2c, None, ["rps", "mean_ms", "cpu_us_per_request", "errors"], WITH_FLOOR),
    "h2-tls": (scenario_h2_tls, None, ["rps", "mean_ms", "cpu_us_per_request", "errors"], PROXIES),
    "https": (scenario_https, None, ["rps", "p50_ms", "p99_ms", "cpu_us_per_request", "errors"], PROXIES),
    "handshakes": (scenario_handshakes, None, ["rps", "p50_ms", "p99_ms", "cpu_us_per_request", "errors"], PROXIES),
    "failover": (scenario_failover, "failover", ["rps", "p50_ms", "p99_ms", "over_0_9s", "errors"], PROXIES),
    "flapping": (scenario_flapping, "flapping", ["rps", "p50_ms", "p99_ms", "over_0_9s", "errors"], PROXIES),
}


def run_scenario(name):
    run, mode, keys, proxies = SCENARIOS[name]
    if WORKERS > 1:
        proxies = [p for p in proxies if p != "floor"]
    rounds = {p: [] for p in proxies}
    for r in range(ROUNDS):
        work = Path(tempfile.mkdtemp(prefix=f"switchyard-bench-{name}-"))
        work.chmod(0o755)  # nginx workers run as nobody and must read big.bin
        stack = Stack(work, mode)
        try:
            if mode:
                time.sleep(2.5)  # let HAProxy's check mark the primary down, as it would in service
            shift = r % len(proxies)
            order = proxies[shift:] + proxies[:shift]
            for proxy in order:
                log(f"  {name} round {r + 1}/{ROUNDS}: {proxy}")
                try:
                    rounds[proxy].append(run(stack, proxy))
                except Exception as e:  # one failed measurement must not lose the run
                    log(f"    {proxy} failed: {e!r}")
                    rounds[proxy].append({"error": repr(e)})
        finally:
            stack.stop()
            shutil.rmtree(work, ignore_errors=True)
    medians = {}
    for proxy in proxies:
        medians[proxy] = {k: statistics.median(v[k] for v in rounds[proxy] if v.get(k) is not None)
                          for k in keys if any(v.get(k) is not None for v in rounds[proxy])}
        failed = sum(1 for v in rounds[proxy] if "error" in v)
        if failed:
            medians[proxy]["failed_rounds"] = failed
    return {"rounds": rounds, "median": medians}


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def table(results):
    lines = []
    for scenario, data in results.items():
        med = data["median"]
        keys = SCENARIOS[scenario][2]
        lines.append(f"\n{scenario} (median of {ROUNDS} rounds)")
        lines.append(f"  {'metric':<32}{'switchyard':>12}{'nginx':>12}{'haproxy':>12}{'floor':>12}"
                     f"{'sy/nginx':>10}{'sy/haproxy':>11}{'sy/floor':>10}")
        for key in keys:
            vals = [med.get(p, {}).get(key) for p in WITH_FLOOR]
            cells = "".join(f"{v:>12.2f}" if v is not None else f"{'-':>12}" for v in vals)
            ratios = (f"{ratio(vals[0], vals[1]) or '-':>10}{ratio(vals[0], vals[2]) or '-':>11}"
                      f"{ratio(vals[0], vals[3]) or '-':>10}")
            lines.append(f"  {key:<32}{cells}{ratios}")
    return "\n".join(lines)


def raise_fd_limit():
    """Room for 10,000 idle connections through each proxy (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200000, 200000))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    global IDLE_CONNECTIONS
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    # HAProxy needs two descriptors per connection it may hold (maxconn).
    fits = limit // 2 - 500
    if IDLE_CONNECTIONS > fits:
        log(f"note: {limit} file descriptors allow {fits} idle connections per proxy, not {IDLE_CONNECTIONS}")
        IDLE_CONNECTIONS = fits


def main():
    chosen = sys.argv[1:] or list(SCENARIOS)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown}; choose from {list(SCENARIOS)}")
    raise_fd_limit()
    RESULTS.mkdir(exist_ok=True)
    results = {}
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rounds": ROUNDS,
        "duration_s": DURATION,
        "cpus": os.cpu_count(),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "idle_connections": IDLE_CONNECTIONS,
        "workers": WORKERS,
    }
    for name in chosen:
        log(f"scenario {name}")
        results[name] = run_scenario(name)
        # Saved after every scenario, so a later failure loses nothing.
        (RESULTS / "latest.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"{meta['date']}, {meta['cpus']} cores, {meta['nginx']}, {meta['haproxy']}, {WORKERS} worker(s) each")
    print(table(results))
    print(f"\nraw rounds: {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
