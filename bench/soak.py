#!/usr/bin/env python3
"""A bounded soak: GETs and POSTs through Switchyard, for minutes, against
upstreams that flap, reset and stall, sampling the proxy's memory and open
file descriptors every 10 s.

It passes when both stay flat (the mean of the last minute's samples is
within 10% of the second minute's) and no idempotent request (GET) failed.
POSTs may fail (a POST is not sent twice after it may have been processed);
their outcomes are reported.

Started by bench/soak.sh, which builds Switchyard first. Everything listens
on 127.0.0.1 and nothing else is dialled. Not part of CI.

    bench/soak.sh                 # 10 minutes
    bench/soak.sh --minutes 60    # longer
"""

import argparse
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWITCHYARD = ROOT / "target" / "release" / "switchyard"
SAMPLE_EVERY = 10.0
CLIENTS = 8
POST_SHARE = 0.2


def log(message):
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ upstreams

class Upstream(threading.Thread):
    """A raw HTTP/1.1 keep-alive server on 127.0.0.1 with a misbehaviour:
    `healthy`, `reset` (resets 20% of requests before the head), `stall`
    (answers 10% of requests after 2 s) or `flap` (closes its listener for
    10 s out of every 30 s)."""

    def __init__(self, kind):
        super().__init__(daemon=True)
        self.kind = kind
        self.port = free_port()
        self.listener = None
        self.stopped = False
        self.random = random.Random(hash(kind))

    def run(self):
        start = time.monotonic()
        while not self.stopped:
            if self.kind == "flap":
                phase = (time.monotonic() - start) % 30.0
                if phase >= 20.0:
                    self.close_listener()
                    time.sleep(0.2)
                    continue
            if self.listener is None:
                self.listener = socket.socket()
                self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self.listener.bind(("127.0.0.1", self.port))
                self.listener.listen(512)
                self.listener.settimeout(0.2)
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def close_listener(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def serve(self, conn):
        conn.settimeout(30)
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(buffer) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                buffer = buffer[length:]
                if self.kind == "reset" and self.random.random() < 0.2:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if self.kind == "stall" and self.random.random() < 0.1:
                    time.sleep(2.0)
                body = self.kind.encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            return
        finally:
            conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- proxy

def proxy_config(upstreams, port, admin):
    servers = ", ".join(f'"127.0.0.1:{u.port}"' for u in upstreams)
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
admin = "127.0.0.1:{admin}"

[log]
access = false

[upstreams.app]
servers = [{servers}]
connect_timeout = "500ms"
response_timeout = "500ms"

[upstreams.app.retry]
max_attempts = 3
retry_on = ["connect-failure", "reset-before-response", "timeout"]
"""


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


# --------------------------------------------------------------- clients

class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.by = {}

    def add(self, method, outcome):
        with self.lock:
            key = (method, outcome)
            self.by[key] = self.by.get(key, 0) + 1

    def snapshot(self):
        with self.lock:
            return dict(self.by)


def client(port, until, counts, seed):
    rng = random.Random(seed)
    conn = None
    while time.monotonic() < until:
        if conn is None:
            conn = HTTPConnection("127.0.0.1", port, timeout=10)
        method = "POST" if rng.random() < POST_SHARE else "GET"
        body = b"x" * rng.randint(0, 4096) if method == "POST" else None
        try:
            conn.request(method, "/soak", body=body)
            response = conn.getresponse()
            response.read()
            counts.add(method, str(response.status))
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as e:  # a broken connection: count it, open another
            counts.add(method, type(e).__name__)
            conn.close()
            conn = None


# ------------------------------------------------------------------ main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = parser.parse_args()
    if args.minutes < 2:
        parser.error("--minutes must be at least 2 (the second and the last minute are compared)")

    upstreams = [Upstream(kind) for kind in ("healthy", "healthy", "reset", "stall", "flap")]
    for u in upstreams:
        u.start()
    port, admin = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="switchyard-soak-"))
    config = work / "soak.toml"
    config.write_text(proxy_config(upstreams, port, admin))
    proxy = subprocess.Popen([str(SWITCHYARD), "run", "-c", str(config)],
                             stdout=subprocess.DEVNULL, stderr=open(work / "stderr.log", "w"))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proxy.poll() is not None:
                log("soak: switchyard did not start; see " + str(work / "stderr.log"))
                return 2
            time.sleep(0.05)

    duration = args.minutes * 60
    started = time.monotonic()
    until = started + duration
    counts = Counts()
    threads = [threading.Thread(target=client, args=(port, until, counts, i), daemon=True)
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    samples = []
    while time.monotonic() < until:
        time.sleep(min(SAMPLE_EVERY, max(0.0, until - time.monotonic())))
        at = time.monotonic() - started
        rss, fds = sample(proxy.pid)
        samples.append({"at_s": round(at, 1), "rss_kib": rss, "fds": fds})
        done = sum(counts.snapshot().values())
        log(f"soak: {at:6.0f} s  rss {rss} KiB  fds {fds}  requests {done}")
    for t in threads:
        t.join(timeout=15)
    proxy.send_signal(signal.SIGTERM)
    proxy.wait(timeout=40)
    for u in upstreams:
        u.stopped = True

    def mean(key, lo, hi):
        values = [s[key] for s in samples if lo <= s["at_s"] < hi]
        return sum(values) / len(values) if values else float("nan")

    second = {k: mean(k, 60, 120) for k in ("rss_kib", "fds")}
    last = {k: mean(k, duration - 60, duration + 1) for k in ("rss_kib", "fds")}
    flat = {k: last[k] <= second[k] * 1.10 for k in second}
    outcomes = counts.snapshot()
    get_errors = sum(n for (m, o), n in outcomes.items() if m == "GET" and o != "200")
    result = {
        "minutes": args.minutes,
        "requests": sum(outcomes.values()),
        "outcomes": {f"{m} {o}": n for (m, o), n in sorted(outcomes.items())},
        "get_errors": get_errors,
        "second_minute": second,
        "last_minute": last,
        "first_sample": samples[0] if samples else None,
        "last_sample": samples[-1] if samples else None,
        "flat": flat,
        "passed": all(flat.values()) and get_errors == 0,
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
