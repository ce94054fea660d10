#!/usr/bin/env python3
"""Compile-path benchmark: Python start-up, a cold `vilms build` of the shipped example,
and synthetic projects of 250 / 500 / 1,000 models (2 aliases each, 4 deployments).

Each point is the median wall time of several cold runs (a fresh process and a fresh
output folder each time). Targets: example < 0.3 s; 1,000 models < 3 s; per-model cost
roughly constant (linear). Run: python bench/compile.py [--runs N] [--sizes 250,500,1000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_TARGET_S = 0.3
LARGE_TARGET_S = 3.0
LINEARITY_TOLERANCE = 1.5  # the marginal per-model cost between the two largest sizes may be at most
                           # 1.5x that between the two smallest (fixed costs cancel out)


def synthetic(models: int) -> str:
    lines = [
        "apiVersion: vilms/v1",
        "project: bench",
        "hardware:",
        "  orin: {kind: jetson, memory: 64GiB, jetpack: '6.2'}",
        "  box: {kind: gpu, gpus: 8, gpu_memory: 80GiB, memory: 2048GiB}",
        "  laptop: {kind: cpu, memory: 64GiB, cpus: 16}",
        "models:",
    ]
    for i in range(models):
        lines += [
            f"  m{i}:",
            f"    source: hf:org/model-{i}",
            f"    gguf: hf:org/model-{i}-GGUF",
            "    family: llama",
            "    context: 4096",
            "    chat_template: llama3",
        ]
    lines.append("aliases:")
    for i in range(models):
        lines.append(f"  a{i}: m{i}")
        lines.append(f"  b{i}: {{model: m{i}, system: 'Be brief.', params: {{temperature: 0.2}}, fallbacks: [a{i}]}}")
    lines.append("deployments:")
    quarter = max(1, models // 4)
    targets = [("edge", "orin", "compose", "ollama"), ("gpu", "box", "compose", "vllm"),
               ("dev", "laptop", "local", "llamacpp"), ("k8s", "box", "helm", "vllm")]
    for d, (name, hw, target, engine) in enumerate(targets):
        served = [f"a{i}" for i in range(d * quarter, (d + 1) * quarter)] + [f"b{i}" for i in range(d * quarter, (d + 1) * quarter)]
        lines.append(f"  {name}: {{hardware: {hw}, target: {target}, engine: {engine}, aliases: [{', '.join(served)}]}}")
    lines.append("gateway: {api_keys: env:VILMS_API_KEYS}")
    return "\n".join(lines) + "\n"


def vilms_command() -> list[str]:
    return [sys.executable, "-m", "vilms"]


def time_cmd(cmd: list[str], runs: int, prepare=None) -> float:
    samples = []
    for _ in range(runs):
        if prepare:
            prepare()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="250,500,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bare = time_cmd([sys.executable, "-c", "pass"], args.runs)
        imports = time_cmd([sys.executable, "-c", "import vilms.compiler.pipeline, vilms.cli.main"], args.runs)
        example = work / "example"
        example.mkdir()
        shutil.copy(REPO / "vilms.yaml", example / "vilms.yaml")
        clean = lambda: shutil.rmtree(example / "generated", ignore_errors=True)  # noqa: E731
        cold = time_cmd([*vilms_command(), "build", "-f", str(example / "vilms.yaml")], args.runs, clean)
        print(f"python start-up (bare)          {bare * 1000:8.1f} ms")
        print(f"import the compile path         {imports * 1000:8.1f} ms  (incl. start-up)")
        verdict = "PASS" if cold < EXAMPLE_TARGET_S else "FAIL"
        ok &= cold < EXAMPLE_TARGET_S
        print(f"vilms build, shipped example    {cold * 1000:8.1f} ms  target < {EXAMPLE_TARGET_S * 1000:.0f} ms  {verdict}")
        print()
        print(f"{'models':>7} {'files':>6} {'wall s':>8} {'per model ms':>13} {'marginal ms/model':>18}")
        marginals = []
        previous = None
        for n in sizes:
            folder = work / f"m{n}"
            folder.mkdir()
            (folder / "vilms.yaml").write_text(synthetic(n))
            clean_n = lambda f=folder: shutil.rmtree(f / "generated", ignore_errors=True)  # noqa: E731
            runs = max(1, args.runs // 2)
            wall = time_cmd([*vilms_command(), "build", "-f", str(folder / "vilms.yaml")], runs, clean_n)
            files = sum(1 for p in (folder / "generated").rglob("*") if p.is_file())
            cost = (wall - imports) / n
            marginal = ""
            if previous is not None:
                marginals.append((wall - previous[1]) / (n - previous[0]))
                marginal = f"{marginals[-1] * 1000:18.2f}"
            print(f"{n:>7} {files:>6} {wall:8.2f} {cost * 1000:13.2f} {marginal}")
            previous = (n, wall)
        largest_ok = previous is None or previous[1] < LARGE_TARGET_S
        ok &= largest_ok
        print()
        print(f"{sizes[-1]} models: {previous[1]:.2f} s, target < {LARGE_TARGET_S:.0f} s  {'PASS' if largest_ok else 'FAIL'}")
        if len(marginals) >= 2:
            ratio = marginals[-1] / marginals[0]
            linear = ratio <= LINEARITY_TOLERANCE
            ok &= linear
            print(f"marginal cost ratio, largest/smallest step: {ratio:.2f} (linear if ≤ {LINEARITY_TOLERANCE})  "
                  f"{'PASS' if linear else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
