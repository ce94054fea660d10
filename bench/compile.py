#!/usr/bin/env python3
"""Compile-path benchmark: Python start-up, a cold `vilms build` of the shipped example,
and synthetic projects of 250 / 500 / 1,000 models (2 aliases each, 4 deployments).

Each point is the median wall time of several cold runs (a fresh process and a fresh
output folder each time). Targets: example < 0.3 s; 1,000 models < 3 s; per-model cost
roughly constant (linear). Run: python bench/compile.py [--runs N] [--sizes 250,500,1000]
[--baseline COMMAND]: with a baseline (another ViLMS, e.g. a worktree of an older commit),
every point is measured for both, runs interleaved, with the ratio.
"""

from __future__ import annotations

import argparse
import os
import shlex
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
        # vLLM on one compose host pins each engine to a GPU of its own: at most the box's 8 models
        end = d * quarter + (min(quarter, 8) if (target, engine) == ("compose", "vllm") else quarter)
        served = [f"a{i}" for i in range(d * quarter, end)] + [f"b{i}" for i in range(d * quarter, end)]
        lines.append(f"  {name}: {{hardware: {hw}, target: {target}, engine: {engine}, aliases: [{', '.join(served)}]}}")
    lines.append("gateway: {api_keys: env:VILMS_API_KEYS}")
    return "\n".join(lines) + "\n"


def vilms_command() -> list[str]:
    return [sys.executable, "-m", "vilms"]


# as an installed ViLMS runs: with bytecode caches (some shells set PYTHONDONTWRITEBYTECODE,
# which would time compiling every module's source instead)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_cmds(cmds: list[list[str]], runs: int, prepare=None) -> list[float]:
    """Median wall time of each command (after one warm-up run each, which writes the bytecode
    caches), the commands' runs interleaved so load hits all alike."""
    samples: list[list[float]] = [[] for _ in cmds]
    for cmd in cmds:
        if prepare:
            prepare()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
    for _ in range(runs):
        for i, cmd in enumerate(cmds):
            if prepare:
                prepare()
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
            samples[i].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="250,500,1000")
    parser.add_argument("--baseline", metavar="COMMAND",
                        help="another ViLMS to measure beside this one, as the command that runs it, e.g. "
                             "'/tmp/base/.venv/bin/python -m vilms.compiler.cli' (a worktree of an older commit)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sides = [("this", vilms_command())] + ([("baseline", shlex.split(args.baseline))] if args.baseline else [])
    cmds = [cmd for _name, cmd in sides]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (bare,) = time_cmds([[sys.executable, "-c", "pass"]], args.runs)
        startup = time_cmds([[*cmd, "--version"] for cmd in cmds], args.runs)
        example = work / "example"
        example.mkdir()
        shutil.copy(REPO / "vilms.yaml", example / "vilms.yaml")
        clean = lambda: shutil.rmtree(example / "generated", ignore_errors=True)  # noqa: E731
        cold = time_cmds([[*cmd, "build", "-f", str(example / "vilms.yaml")] for cmd in cmds], args.runs, clean)
        print(f"{'':32} " + "".join(f"{name:>12}" for name, _ in sides) + ("   this/baseline" if len(sides) > 1 else ""))
        _row("python start-up (bare)", [bare] * len(sides), "ms")
        _row("vilms --version (start-up)", startup, "ms")
        _row("vilms build, shipped example", cold, "ms")
        verdict = "PASS" if cold[0] < EXAMPLE_TARGET_S else "FAIL"
        ok &= cold[0] < EXAMPLE_TARGET_S
        print(f"shipped example: {cold[0] * 1000:.0f} ms, target < {EXAMPLE_TARGET_S * 1000:.0f} ms  {verdict}")
        print()
        marginals = []
        previous = None
        for n in sizes:
            folder = work / f"m{n}"
            folder.mkdir()
            (folder / "vilms.yaml").write_text(synthetic(n))
            clean_n = lambda f=folder: shutil.rmtree(f / "generated", ignore_errors=True)  # noqa: E731
            runs = max(1, args.runs // 2)
            walls = time_cmds([[*cmd, "build", "-f", str(folder / "vilms.yaml")] for cmd in cmds], runs, clean_n)
            _row(f"vilms build, {n} models", walls, "s")
            if previous is not None:
                marginals.append((walls[0] - previous[1]) / (n - previous[0]))
            previous = (n, walls[0])
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


def _row(label: str, values: list[float], unit: str) -> None:
    scale = 1000 if unit == "ms" else 1
    cells = "".join(f"{v * scale:9.{1 if unit == 'ms' else 2}f} {unit:<2}" for v in values)
    ratio = f"   {values[0] / values[1]:.2f}x" if len(values) > 1 and values[1] else ""
    print(f"{label:32} {cells}{ratio}")


if __name__ == "__main__":
    sys.exit(main())
