#!/usr/bin/env python3
"""Benchmark the ViLMS gateway against direct access and two peers, Portkey and LiteLLM, on one machine.

    python bench/gateway.py [--quick] [--skip-portkey] [--skip-litellm] [--json FILE]

Starts a fake vLLM backend (tests/runtime/gateway_fakes.py), the gateway
(``python -m vilms serve``) and, side by side in the same run, two peers installed under
the cache dir (each skipped with a message when it cannot be installed or started):

* Portkey's gateway: ``npm install @portkey-ai/gateway`` into ``<cache>/portkey``, run with
  ``node build/start-server.js --port=N --headless`` from the package folder, and routed to
  the fake backend per request with ``x-portkey-provider: openai`` and
  ``x-portkey-custom-host: http://127.0.0.1:PORT/v1``. ``@hono/node-server`` is pinned to
  1.14.1: with the newer versions npm picks, Portkey 1.15.2 answers every streaming request
  with a 500 (``TypeError: immutable``, Portkey-AI/gateway#1389);
* LiteLLM's proxy: ``pip install 'litellm[proxy]'`` into its own venv, ``<cache>/litellm``.

Drives each with wrk (``apt-get install -y wrk``) at concurrency 1, 16 and 64
(``--concurrency``), non-streaming and streaming; prints req/s, p50/p99 and CPU per request
of every target, the latency the gateway adds over direct, the gateway's RSS, and a
resilience run (two backend replicas, one killed with SIGKILL mid-run, failed requests
counted). Targets are printed with PASS/FAIL.

OpenTelemetry metrics: a second gateway (``vilms+otel``) with ``telemetry.otlp`` metrics on,
exporting every second (the shortest interval) to an OTLP/HTTP receiver on 127.0.0.1 (in this
process: tests/support/otlp_receiver.py), is measured against the plain gateway in alternating
rounds (``--otel-rounds``, ABBA order, so a neighbour's load hits both alike): ``vilms (otel off)``
and ``vilms+otel``; the target is the on/off ratio of CPU per request, at most 1.10 at every
point, taken as the median over the rounds of each round's ratio (a burst of load from
elsewhere spoils one round, not the point; the summed ratio is printed beside it). Needs the ``otel`` extra (``--skip-otel`` or a missing extra leaves it out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: its helper modules
from procs import free_port, spawn, stop, wait_http  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "runtime" / "gateway_fakes.py"
OTEL_CPU_RATIO = 1.10  # OTel metrics on: CPU per request at most this times off
OTEL_INTERVAL_S = 1.0  # export interval of the vilms+otel gateway (telemetry.otlp.interval's minimum)
MODEL = "qwen2.5-1.5b"
LITELLM_KEY = "sk-vilms-bench"
PORTKEY_VERSION = "1.15.2"
PORTKEY_PINS = {"@hono/node-server": "1.14.1"}  # newer: every streaming answer is a 500 (Portkey-AI/gateway#1389)
CPU_TARGET_US = 84.0  # ViLMS's CPU per proxied request, non-streaming at c=16
BODY = {"model": "chat", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16}


@dataclass
class Point:
    target: str
    stream: bool
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us_per_req: float  # CPU (user+sys) of the process under test per request: robust to a busy box
    backend_cpu_us_per_req: float  # the fake backend's CPU per request, whichever way it was reached


def start_fake(port: int) -> subprocess.Popen:
    proc = spawn([sys.executable, str(FAKES), "vllm", "--port", str(port), "--model", MODEL])
    if not wait_http(f"http://127.0.0.1:{port}/health", 15):
        raise SystemExit("fake backend did not start")
    return proc


def write_routes(path: Path, endpoints: list[str], otlp: str | None = None) -> None:
    """The routes table through its contract, as `vilms build` writes one; ``otlp``: a receiver's
    base URL, for OTLP metrics export every :data:`OTEL_INTERVAL_S`."""
    from vilms.compiler.contracts.routes import (
        ROUTES,
        Backend,
        GatewayRoutes,
        GatewaySettings,
        HardwareInfo,
        Route,
    )
    from vilms.compiler.contracts.telemetry import OtlpSpec

    telemetry = None if otlp is None else OtlpSpec(endpoint=otlp, endpoint_env=None, headers_env={},
                                                   interval_s=OTEL_INTERVAL_S, metrics=True, traces=False)

    routes = GatewayRoutes(
        deployment="bench",
        hardware=HardwareInfo(name="bench", kind="cpu", memory_bytes=16 * 2**30),
        gateway=GatewaySettings(api_keys_env=None, keys={}, ops_key_env=None, telemetry=telemetry, retries=2,
                                connect_timeout_s=2.0, read_timeout_s=30.0, first_byte_timeout_s=30.0,
                                request_timeout_s=120.0, write_timeout_s=30.0, max_body_bytes=8388608,
                                max_response_bytes=16 << 20, max_queue=1024, cooldown_s=30.0, eject_after=5, discovery_interval_s=5.0,
                                balance="round_robin", on_overlong_prompt="reject"),
        backends={"vllm": Backend(id="vllm", engine="vllm", endpoints=tuple(endpoints), api_key_env=None,
                                          discovery=None, runtime_lora=False)},
        aliases={"chat": Route(name="chat", backend="vllm", model=MODEL, adapter=None, context=8192,
                               max_output_tokens=2048, system=None, params={}, fallbacks=(), task="chat")},
    )
    path.write_bytes(ROUTES.dump(routes, source=None))


def start_gateway(routes: Path, port: int, log: Path) -> subprocess.Popen:
    proc = spawn([sys.executable, "-m", "vilms", "serve", "--routes", str(routes), "--port", str(port),
                  "--quiet"], log=log)
    if not wait_http(f"http://127.0.0.1:{port}/healthz", 20):
        raise SystemExit(f"gateway did not start; see {log}")
    return proc


def ensure_litellm(cache: Path) -> Path | None:
    venv = cache / "litellm"
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing LiteLLM's proxy into {venv} (one time, ~1-2 min) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"LiteLLM skipped: could not install litellm[proxy] ({exc})")
        return None
    return exe if exe.exists() else None


def start_litellm(exe: Path, backend_port: int, port: int, workdir: Path) -> subprocess.Popen | None:
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: chat\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{backend_port}/v1\n"
        "      api_key: fake\n"
        "litellm_settings:\n  drop_params: true\n"
    )
    env = {"LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    log = workdir / "litellm.log"
    proc = spawn([str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)], env=env, log=log)
    if not wait_http(f"http://127.0.0.1:{port}/health/liveliness", 90):
        print(f"LiteLLM skipped: proxy did not start (see {log})")
        stop(proc)
        return None
    return proc


def ensure_portkey(cache: Path) -> Path | None:
    """Portkey's gateway installed with npm under ``cache``: the package folder, or None (with a message)."""
    root = cache / "portkey"
    package = root / "node_modules" / "@portkey-ai" / "gateway"
    if (package / "build" / "start-server.js").exists() and (root / "package.json").exists() and \
            json.loads((root / "package.json").read_text()).get("overrides") == PORTKEY_PINS:
        return package
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("Portkey skipped: node and npm are needed (Node.js 18 or newer)")
        return None
    print(f"installing Portkey's gateway {PORTKEY_VERSION} into {root} with npm (one time, ~10 s) ...", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps({"private": True, "overrides": PORTKEY_PINS}))
    try:
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error",
                        f"@portkey-ai/gateway@{PORTKEY_VERSION}"], cwd=root, check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"Portkey skipped: could not install @portkey-ai/gateway ({exc})")
        return None
    if not (package / "build" / "start-server.js").exists():
        print(f"Portkey skipped: {package / 'build' / 'start-server.js'} missing after npm install")
        return None
    return package


def start_portkey(package: Path, port: int, workdir: Path) -> subprocess.Popen | None:
    log = workdir / "portkey.log"
    # --port=N (the script reads only that form); --headless: no UI routes, no log-streaming page.
    proc = spawn(["node", "build/start-server.js", f"--port={port}", "--headless"], env={"NODE_ENV": "production"},
                 log=log, cwd=package)
    if not wait_http(f"http://127.0.0.1:{port}/", 30):
        print(f"Portkey skipped: its gateway did not start (see {log})")
        stop(proc)
        return None
    return proc


def portkey_headers(backend_port: int) -> dict[str, str]:
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"http://127.0.0.1:{backend_port}/v1",
            "Authorization": "Bearer fake"}


def check_answers(url: str, model: str, headers: dict[str, str]) -> str | None:
    """One request each way through ``url``; None when both answers are right, else what was wrong."""
    for stream in (False, True):
        body = json.dumps({**BODY, "model": model, "stream": stream}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                text = resp.read().decode()
        except (OSError, urllib.error.HTTPError) as exc:
            return f"stream={int(stream)}: {exc}"
        ok = text.rstrip().endswith("data: [DONE]") if stream else '"Hello from the fake server."' in text
        if not ok:
            return f"stream={int(stream)}: unexpected answer {text[:200]!r}"
    return None


def wrk_script(workdir: Path, stream: bool, headers: dict[str, str], name: str, model: str = "chat") -> Path:
    body = json.dumps({**BODY, "model": model, "stream": stream})
    lines = 'wrk.headers["Content-Type"] = "application/json"\n'
    for key, value in headers.items():
        lines += f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}\n"
    path = workdir / f"post-{name}-{int(stream)}.lua"
    path.write_text(f'wrk.method = "POST"\n{lines}wrk.body = {json.dumps(body)}\n')
    return path


def parse_duration_ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk_counts(out: str) -> tuple[int, int]:
    """(requests, failed requests: non-2xx responses and socket errors) from wrk's report."""
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return total, errors


def run_wrk(url: str, script: Path, concurrency: int, seconds: float, timeout_s: int = 10) -> tuple[float, float, float, int, int]:
    threads = min(2, concurrency)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s",
                          "--latency", "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = parse_duration_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = parse_duration_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    total, errors = wrk_counts(out)
    return rps, p50, p99, total, errors


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass
class Target:
    url: str
    headers: dict[str, str]
    pid: int
    model: str = "chat"  # direct and Portkey address the backend by its own model name
    timeout_s: int = 10


PEERS = ("portkey", "litellm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s per point instead of 5 s")
    parser.add_argument("--seconds", type=float, default=None, help="duration of each load point")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated wrk connection counts")
    parser.add_argument("--skip-portkey", action="store_true")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-otel", action="store_true", help="no vilms+otel gateway (OTLP metrics export on)")
    parser.add_argument("--otel-rounds", type=int, default=6, help="alternating off/on rounds per point")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vilms" / "bench")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (Debian/Ubuntu) or brew install wrk")
        return 2
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    levels = [int(c) for c in args.concurrency.split(",") if c]
    work = Path(tempfile.mkdtemp(prefix="vilms-bench-"))
    procs: list[subprocess.Popen] = []
    points: list[Point] = []
    round_ratios: dict[tuple[bool, int], list[float]] = {}
    receiver = None
    try:
        backend_port, gw_port = free_port(), free_port()
        procs.append(start_fake(backend_port))
        backend_pid = procs[0].pid
        routes = work / "routes.yaml"
        write_routes(routes, [f"http://127.0.0.1:{backend_port}"])
        gateway = start_gateway(routes, gw_port, work / "gateway.log")
        procs.append(gateway)
        targets: dict[str, Target] = {
            "direct": Target(f"http://127.0.0.1:{backend_port}/v1/chat/completions", {}, backend_pid, MODEL),
            "vilms": Target(f"http://127.0.0.1:{gw_port}/v1/chat/completions", {}, gateway.pid),
        }
        otel: Target | None = None
        receiver = None if args.skip_otel else start_receiver()
        if receiver is not None:
            otel_port = free_port()
            write_routes(work / "routes-otel.yaml", [f"http://127.0.0.1:{backend_port}"], otlp=receiver.url)
            otel_proc = start_gateway(work / "routes-otel.yaml", otel_port, work / "gateway-otel.log")
            procs.append(otel_proc)
            otel = Target(f"http://127.0.0.1:{otel_port}/v1/chat/completions", {}, otel_proc.pid)
            problem = check_answers(otel.url, otel.model, otel.headers)
            if problem:
                raise SystemExit(f"vilms+otel: wrong answer ({problem})")
        if args.skip_portkey:
            print("Portkey skipped (--skip-portkey)")
        else:
            package = ensure_portkey(args.cache_dir)
            if package is not None:
                pport = free_port()
                portkey = start_portkey(package, pport, work)
                if portkey is not None:
                    procs.append(portkey)
                    targets["portkey"] = Target(f"http://127.0.0.1:{pport}/v1/chat/completions",
                                                portkey_headers(backend_port), portkey.pid, MODEL)
        if args.skip_litellm:
            print("LiteLLM skipped (--skip-litellm)")
        else:
            exe = ensure_litellm(args.cache_dir)
            if exe is not None:
                lport = free_port()
                litellm = start_litellm(exe, backend_port, lport, work)
                if litellm is not None:
                    procs.append(litellm)
                    targets["litellm"] = Target(f"http://127.0.0.1:{lport}/v1/chat/completions",
                                                {"Authorization": f"Bearer {LITELLM_KEY}"},
                                                _litellm_pid(litellm.pid), timeout_s=30)
        for name in list(targets):  # a peer that answers wrongly would look fast: check before measuring
            target = targets[name]
            problem = check_answers(target.url, target.model, target.headers)
            if problem:
                if name in PEERS:
                    print(f"{name} skipped: wrong answers through it ({problem})")
                    del targets[name]
                else:
                    raise SystemExit(f"{name}: wrong answer ({problem})")
        for stream in (False, True):
            for name, target in targets.items():
                script = wrk_script(work, stream, target.headers, name, target.model)
                run_wrk(target.url, script, 4, 1.0, target.timeout_s)  # warm-up: connections, caches, JIT
                for concurrency in levels:
                    secs = seconds if name != "litellm" else max(seconds, 3.0)
                    cpu0, backend0 = cpu_seconds(target.pid), cpu_seconds(backend_pid)
                    rps, p50, p99, total, errors = run_wrk(target.url, script, concurrency, secs, target.timeout_s)
                    cpu = (cpu_seconds(target.pid) - cpu0) / max(total, 1) * 1e6
                    backend_cpu = (cpu_seconds(backend_pid) - backend0) / max(total, 1) * 1e6
                    points.append(Point(name, stream, concurrency, rps, p50, p99, total, errors, cpu, backend_cpu))
                    proxy = "" if name == "direct" else f"  proxy CPU {cpu:6.0f} us/req"
                    print(f"{name:8s} stream={int(stream)} c={concurrency:<3d} {rps:9.0f} req/s  "
                          f"p50 {p50:8.2f} ms  p99 {p99:8.2f} ms  errors {errors}  "
                          f"backend CPU {backend_cpu:4.0f} us/req{proxy}", flush=True)
        if otel is not None:
            ab, round_ratios = otel_ab(work, targets["vilms"], otel, backend_pid, levels, seconds,
                                       max(2, args.otel_rounds))
            points += ab
        rss, peak = rss_mb(gateway.pid)
        resilience = resilience_run(work, seconds)
    finally:
        for proc in reversed(procs):
            stop(proc)  # SIGTERM: the vilms+otel gateway sends its final export
        if receiver is not None:
            receiver.__exit__()
    exports = None if receiver is None else len(receiver.received)
    if exports is not None:
        print(f"OTLP receiver: {exports} metric exports from the vilms+otel gateway")
    return report(points, rss, peak, resilience, args.json, exports, round_ratios)


OTEL_OFF, OTEL_ON = "vilms (otel off)", "vilms+otel"


def otel_ab(work: Path, off: Target, on: Target, backend_pid: int, levels: list[int], seconds: float,
            rounds: int) -> tuple[list[Point], dict[tuple[bool, int], list[float]]]:
    """OTLP metrics export off vs on, in alternating rounds (ABBA) of ``seconds / 2`` each, per point;
    also each round's on/off ratio of CPU per request."""
    out: list[Point] = []
    ratios: dict[tuple[bool, int], list[float]] = {}
    slice_s = max(1.0, seconds / 2)
    for stream in (False, True):
        scripts = {name: wrk_script(work, stream, t.headers, name.replace(" ", "_"), t.model)
                   for name, t in ((OTEL_OFF, off), (OTEL_ON, on))}
        for name, target in ((OTEL_OFF, off), (OTEL_ON, on)):
            run_wrk(target.url, scripts[name], 4, 1.0, target.timeout_s)  # warm-up
        for concurrency in levels:
            acc = {OTEL_OFF: [0.0, 0.0, 0, 0, [], [], []], OTEL_ON: [0.0, 0.0, 0, 0, [], [], []]}
            for r in range(rounds):
                order = ((OTEL_OFF, off), (OTEL_ON, on)) if r % 4 in (0, 3) else ((OTEL_ON, on), (OTEL_OFF, off))
                per_req: dict[str, float] = {}
                for name, target in order:
                    cpu0, backend0 = cpu_seconds(target.pid), cpu_seconds(backend_pid)
                    rps, p50, p99, total, errors = run_wrk(target.url, scripts[name], concurrency, slice_s,
                                                           target.timeout_s)
                    a = acc[name]
                    a[0] += cpu_seconds(target.pid) - cpu0
                    a[1] += cpu_seconds(backend_pid) - backend0
                    a[2] += total
                    a[3] += errors
                    a[4].append(rps)
                    a[5].append(p50)
                    a[6].append(p99)
                    per_req[name] = (cpu_seconds(target.pid) - cpu0) / max(total, 1)
                ratios.setdefault((stream, concurrency), []).append(per_req[OTEL_ON] / max(per_req[OTEL_OFF], 1e-12))
            for name, (cpu, backend, total, errors, rps, p50, p99) in acc.items():
                point = Point(name, stream, concurrency, sum(rps) / len(rps), sorted(p50)[len(p50) // 2], max(p99),
                              total, errors, cpu / max(total, 1) * 1e6, backend / max(total, 1) * 1e6)
                out.append(point)
                print(f"{name:16s} stream={int(stream)} c={concurrency:<3d} {point.rps:9.0f} req/s  "
                      f"{rounds} rounds  errors {errors}  proxy CPU {point.cpu_us_per_req:6.0f} us/req", flush=True)
    return out, ratios


def start_receiver():  # type: ignore[no-untyped-def]
    """The tests' OTLP/HTTP metrics receiver on 127.0.0.1, in a thread; None without the otel extra."""
    sys.path.insert(0, str(REPO))
    try:
        from tests.support.otlp_receiver import Receiver
    except ImportError as exc:
        print(f"vilms+otel skipped: the otel extra is not installed ({exc})")
        return None
    return Receiver().__enter__()


def _litellm_pid(launcher: int) -> int:
    """The `litellm` console script may exec or fork the server; measure the busiest process."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return kids[0] if kids else launcher


def resilience_run(work: Path, seconds: float) -> dict[str, float]:
    """Two replicas behind the gateway; SIGKILL one a third of the way in; count failures."""
    ports = [free_port(), free_port()]
    replicas = [start_fake(p) for p in ports]
    routes = work / "routes-ha.yaml"
    write_routes(routes, [f"http://127.0.0.1:{p}" for p in ports])
    gw_port = free_port()
    gateway = start_gateway(routes, gw_port, work / "gateway-ha.log")
    script = wrk_script(work, False, {}, "resilience")
    duration = max(3.0, seconds * 3)
    try:
        wrk = subprocess.Popen(["wrk", "-t2", "-c16", f"-d{round(duration)}s", "--timeout=10s", "--latency", "-s", str(script),
                                f"http://127.0.0.1:{gw_port}/v1/chat/completions"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(duration / 3)
        replicas[0].kill()  # SIGKILL: in-flight requests on it die mid-response
        out, _ = wrk.communicate(timeout=duration + 30)
    finally:
        stop(gateway)
        for replica in replicas:
            stop(replica)
    total, errors = wrk_counts(out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    print(f"resilience: {total} requests over {duration:.0f} s at c=16 ({rps:.0f} req/s), one of two replicas "
          f"SIGKILLed at {duration / 3:.1f} s: {errors} failed")
    return {"requests": total, "failed": errors, "rps": rps, "seconds": duration}


def report(points: list[Point], rss: float, peak: float, resilience: dict[str, float], out: Path | None,
           otel_exports: int | None = None, round_ratios: dict[tuple[bool, int], list[float]] | None = None) -> int:
    def find(target: str, stream: bool, c: int) -> Point | None:
        return next((p for p in points if p.target == target and p.stream == stream and p.concurrency == c), None)

    levels = sorted({p.concurrency for p in points})
    names = list(dict.fromkeys(p.target for p in points))
    print("\n=== side by side: req/s, p50 / p99 ms, CPU per request of the process under test ===")
    print("| | " + " | ".join(f"c={c} req/s | p50 / p99 | CPU/req" for c in levels) + " |")
    print("|---|" + "---|---|---|" * len(levels))
    for stream in (False, True):
        for name in names:
            cells = []
            for c in levels:
                p = find(name, stream, c)
                cells.append("-| - | -" if p is None else
                             f"{p.rps:.0f} | {p.p50_ms:.2f} / {p.p99_ms:.2f} | {_us(p.cpu_us_per_req)}")
            print(f"| {name}{', streaming' if stream else ''} | " + " | ".join(cells) + " |")
    print("\n=== added latency (vilms - direct) ===")
    for stream in (False, True):
        for c in levels:
            d, v = find("direct", stream, c), find("vilms", stream, c)
            if d and v:
                print(f"stream={int(stream)} c={c:<3d} p50 +{v.p50_ms - d.p50_ms:6.2f} ms  p99 +{v.p99_ms - d.p99_ms:6.2f} ms"
                      f"  req/s {v.rps:7.0f} vs direct {d.rps:7.0f}")
    print(f"gateway RSS {rss:.1f} MB (peak {peak:.1f} MB)")
    checks: list[tuple[str, str, bool | None]] = []
    for peer, label in (("portkey", "Portkey"), ("litellm", "LiteLLM")):
        pairs = [(v, p) for v in points if v.target == "vilms" and (p := find(peer, v.stream, v.concurrency))]
        name = f"ahead of {label}: more req/s, every point"
        if not pairs:
            checks.append((name, f"{label} not measured", None))
            continue
        worst_v, worst_p = min(pairs, key=lambda vp: vp[0].rps / max(vp[1].rps, 1e-9))
        ratio = worst_v.rps / max(worst_p.rps, 1e-9)
        checks.append((name, f"lowest {ratio:.1f}x (stream={int(worst_v.stream)} c={worst_v.concurrency}: "
                             f"{worst_v.rps:.0f} vs {worst_p.rps:.0f})", all(v.rps > p.rps for v, p in pairs)))
        cpu = [p.cpu_us_per_req / max(v.cpu_us_per_req, 1e-9) for v, p in pairs]
        checks.append((f"ahead of {label}: less CPU per request", f"{min(cpu):.0f}-{max(cpu):.0f}x less", min(cpu) > 1))
    lite, vil = find("litellm", False, 16), find("vilms", False, 16)
    if lite and vil:
        ratio = vil.rps / lite.rps if lite.rps else float("inf")
        checks.append((">= 20x LiteLLM req/s at c=16", f"{ratio:.1f}x ({vil.rps:.0f} vs {lite.rps:.0f})", ratio >= 20))
    else:
        checks.append((">= 20x LiteLLM req/s at c=16", "LiteLLM not measured at c=16", None))
    if vil:
        checks.append((f"CPU per request <= {CPU_TARGET_US:.0f} us (c=16)", f"{vil.cpu_us_per_req:.0f} us",
                       vil.cpu_us_per_req <= CPU_TARGET_US))
    else:
        checks.append((f"CPU per request <= {CPU_TARGET_US:.0f} us (c=16)", "c=16 not measured", None))
    d1, v1 = find("direct", False, 1), find("vilms", False, 1)
    checks.append(("added p50 <= 0.5 ms at c=1", f"{v1.p50_ms - d1.p50_ms:.3f} ms" if d1 and v1 else "c=1 not measured",
                   v1.p50_ms - d1.p50_ms <= 0.5 if d1 and v1 else None))
    d64, v64 = find("direct", False, 64), find("vilms", False, 64)
    checks.append(("p99 at c=64 within 5 ms of direct",
                   f"+{v64.p99_ms - d64.p99_ms:.2f} ms" if d64 and v64 else "c=64 not measured",
                   v64.p99_ms - d64.p99_ms <= 5.0 if d64 and v64 else None))
    failed = sum(p.errors for p in points if p.target in ("vilms", OTEL_OFF, OTEL_ON))
    checks.append(("0 failed requests through ViLMS", f"{failed} failed", failed == 0))
    checks.append(otel_check(points, otel_exports, round_ratios or {}))
    checks.append(("RSS <= 100 MB", f"{peak:.1f} MB peak", peak <= 100))
    checks.append(("0 failed requests, one of two replicas killed", f"{int(resilience['failed'])} failed",
                   resilience["failed"] == 0))
    print("\n=== targets ===")
    for name, value, ok in checks:
        print(f"{'SKIP' if ok is None else verdict(ok)}  {name:48s} {value}")
    if out:
        out.write_text(json.dumps({"points": [asdict(p) for p in points], "rss_mb": rss, "rss_peak_mb": peak,
                                   "resilience": resilience,
                                   "targets": [{"name": n, "value": v, "ok": ok} for n, v, ok in checks]}, indent=2))
    return 0 if all(ok is not False for _, _, ok in checks) else 1


def otel_check(points: list[Point], exports: int | None,
               round_ratios: dict[tuple[bool, int], list[float]]) -> tuple[str, str, bool | None]:
    """OTel metrics on vs off, same run: per point the median of the rounds' CPU-per-request
    ratios; the target holds when the worst point's median is within the bound."""
    name = f"OTel metrics on: CPU/req <= {OTEL_CPU_RATIO:.2f}x off"
    pairs = [(off, on) for off in points if off.target == OTEL_OFF
             for on in points if on.target == OTEL_ON and (on.stream, on.concurrency) == (off.stream, off.concurrency)]
    if not pairs:
        return name, "vilms+otel not measured", None
    if not exports:
        return name, "no export reached the receiver", False
    print("\n=== OTel metrics export on vs off (CPU per request of the gateway) ===")
    medians = []
    for off, on in pairs:
        summed = on.cpu_us_per_req / max(off.cpu_us_per_req, 1e-9)
        rounds = sorted(round_ratios.get((off.stream, off.concurrency), [summed]))
        median = statistics.median(rounds)
        medians.append((median, off))
        print(f"stream={int(off.stream)} c={off.concurrency:<3d} off {_us(off.cpu_us_per_req)}  on {_us(on.cpu_us_per_req)}"
              f"  summed ratio {summed:.3f}  median of {len(rounds)} rounds {median:.3f}"
              f"  (rounds {' '.join(f'{r:.2f}' for r in rounds)})")
    worst, at = max(medians, key=lambda m: m[0])
    return name, f"worst median {worst:.3f}x (stream={int(at.stream)} c={at.concurrency}), {exports} exports", \
        worst <= OTEL_CPU_RATIO


def _us(value: float) -> str:
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} µs"


if __name__ == "__main__":
    sys.exit(main())
