#!/usr/bin/env python3
"""The local runner's health probe (vilms.runtime.local.health.probe): what one probe costs.

Starts a small HTTP/1.1 server in its own process (200 on /health, like llama.cpp's), then
times (1) a warm loop of probes in one process: median, p99 and mean per probe against the
server, and against a closed port; (2) a timeout: a server that accepts but never answers
must be given up on after timeout_s; (3) a cold `vilms status`-like process: import plus
one probe. Run: python bench/probe.py [--probes N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SERVER = textwrap.dedent("""
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = b'{"status": "ok"}' if self.path == "/health" else b"not found"
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(probe, url: str, count: int, timeout_s: float) -> tuple[list[float], set]:
    times, answers = [], set()
    for _ in range(count):
        t0 = time.perf_counter()
        answers.add(probe(url, timeout_s=timeout_s))
        times.append(time.perf_counter() - t0)
    return times, answers


def show(label: str, times: list[float], answers: set) -> None:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{label:32} median {statistics.median(times) * 1e6:7.0f} µs  p99 {p99 * 1e6:7.0f} µs  "
          f"mean {statistics.fmean(times) * 1e6:7.0f} µs  answers {sorted(map(str, answers))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    args = parser.parse_args()
    from vilms.runtime.local.health import probe

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    hung = socket.socket()
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/health"
        probe(url, timeout_s=2.0)  # warm up: imports, first connection
        show("warm probe, server answers", *timed(probe, url, args.probes, 2.0))
        show("warm probe, 404", *timed(probe, f"http://127.0.0.1:{port}/nope", args.probes // 4, 2.0))
        show("warm probe, port closed", *timed(probe, f"http://127.0.0.1:{free_port()}/health", args.probes // 4, 2.0))
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # accepts (the kernel does), never answers
        t0 = time.perf_counter()
        answer = probe(f"http://127.0.0.1:{hung.getsockname()[1]}/health", timeout_s=0.3)
        print(f"{'server never answers, 0.3 s':32} gave up after {time.perf_counter() - t0:.3f} s: {answer!r}")
        cold = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"from vilms.runtime.local.health import probe; assert probe({url!r}) is None"],
                           check=True, cwd=REPO)
            cold.append(time.perf_counter() - t0)
        baseline = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import vilms.compiler.errors"], check=True, cwd=REPO)
            baseline.append(time.perf_counter() - t0)
        print(f"{'cold process: import + 1 probe':32} median {statistics.median(cold) * 1e3:.0f} ms "
              f"(a process importing only vilms.compiler.errors: {statistics.median(baseline) * 1e3:.0f} ms)")
    finally:
        hung.close()
        server.kill()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
