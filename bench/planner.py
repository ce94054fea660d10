#!/usr/bin/env python3
"""The memory planner against measured CPU training: estimate vs peak RSS of the whole process.

For each cell of a grid (hidden, layers, seq_len, batch_size, gradient checkpointing, LoRA or
QLoRA) this writes a project around a tiny llama built locally (``vilms.trainers.tiny``), runs
``vilms build`` (the compiler's estimate lands in ``generated/training/<adapter>.yaml`` as
``memory_estimate.total_bytes``), then runs ``vilms train`` in a fresh child process with a
timeout and reads that child's peak RSS from the kernel (``os.wait4``'s ``ru_maxrss``: the whole
process, imports, tokenization, gate and save included). Each cell is PASS when the estimate
is within ±15 % of the measurement. Exit code 0 when every cell passes, 1 otherwise.

    python bench/planner.py [--quick] [--steps 3] [--timeout 300] [--json out.json] [--markdown]

Rows are long enough that every example fills ``seq_len`` (the planner's b·s assumption).
RSS does not depend on CPU contention; the seconds column does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
LIMIT = 0.15  # issue 15: every cell within ±15 %
ADAPTER = "bench"
ROWS = 48
HEADS, KV_HEADS = 4, 2  # build_tiny_llama's attention shape


@dataclass(frozen=True)
class Cell:
    hidden: int
    layers: int
    seq_len: int
    batch: int
    checkpointing: bool
    method: str = "lora"

    @property
    def name(self) -> str:
        return (f"{self.method} h{self.hidden} L{self.layers} s{self.seq_len} b{self.batch}"
                f"{' gc' if self.checkpointing else ''}")


# hidden 64–512, 2–8 layers, seq 128–1,024, batch 1–16, checkpointing on/off, LoRA and QLoRA
GRID = (
    Cell(64, 2, 128, 1, False),
    Cell(64, 2, 1024, 4, False),
    Cell(128, 4, 512, 8, False),
    Cell(128, 4, 512, 8, True),
    Cell(256, 4, 512, 8, False),
    Cell(256, 4, 512, 16, False),
    Cell(256, 4, 512, 16, True),
    Cell(256, 8, 256, 16, False),
    Cell(512, 2, 1024, 4, False),
    Cell(512, 4, 256, 8, True),
    Cell(512, 8, 128, 16, False),
    Cell(128, 4, 512, 8, False, "qlora"),
    Cell(256, 4, 512, 16, True, "qlora"),
    Cell(512, 4, 256, 8, False, "qlora"),
    Cell(512, 2, 1024, 16, True),  # tensors of 32-64 MiB: above glibc's largest mmap threshold
    Cell(512, 2, 1024, 16, False),
)
QUICK = (Cell(64, 2, 128, 2, False), Cell(64, 2, 128, 2, True, "qlora"))


def project_yaml(cell: Cell, vocab: int, steps: int) -> dict:
    return {
        "apiVersion": "vilms/v1",
        "project": "planner-bench",
        "hardware": {"box": {"kind": "cpu", "memory": "22GiB", "cpus": 2}},
        "models": {"tiny": {
            "source": "file:models/tiny", "family": "llama", "context": 4096, "chat_template": "chatml",
            "architecture": {"layers": cell.layers, "hidden_size": cell.hidden, "heads": HEADS, "kv_heads": KV_HEADS,
                             "intermediate_size": 2 * cell.hidden, "vocab_size": vocab, "tie_word_embeddings": False},
        }},
        "datasets": {"text": {"path": "data/text.jsonl", "format": "text"}},
        "adapters": {ADAPTER: {
            "base": "tiny", "dataset": "text", "method": cell.method, "hardware": "box",
            "lora": {"r": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
            "training": {"batch_size": cell.batch, "seq_len": cell.seq_len, "max_steps": steps,
                         "gradient_checkpointing": cell.checkpointing, "save_steps": steps, "eval_steps": steps,
                         "logging_steps": 1},
        }},
    }


def long_rows(seq_len: int) -> list[dict]:
    """Rows longer than ``seq_len`` tokens of the tiny tokenizer (≥ 1 character per token)."""
    from vilms.trainers.tiny import CORPUS_LINES

    text = " ".join(CORPUS_LINES)
    repeat = seq_len * 2 // len(text) + 2
    return [{"text": f"row {i}. " + text * repeat} for i in range(ROWS)]


def vilms(root: Path, *args: str, timeout: float) -> tuple[int, int, float, str]:
    """Run ``vilms ARGS`` in ``root``; (exit code, peak RSS bytes of the child, seconds, stderr tail)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "vilms", *args, "-f", str(root / "vilms.yaml")], cwd=root,
                                stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"})
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.send_signal(signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
        err.seek(0)
        tail = err.read().decode(errors="replace")[-1500:]
    return proc.returncode, int(usage.ru_maxrss) * 1024, time.perf_counter() - started, tail


def run_cell(cell: Cell, models: Path, work: Path, steps: int, timeout: float) -> dict:
    import yaml

    from vilms.trainers.tiny import build_tiny_llama

    model_dir = models / f"h{cell.hidden}-L{cell.layers}"
    if not (model_dir / "config.json").exists():
        build_tiny_llama(model_dir, hidden=cell.hidden, layers=cell.layers)
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    root = work / cell.name.replace(" ", "-")
    (root / "models").mkdir(parents=True)
    (root / "models" / "tiny").symlink_to(model_dir)
    (root / "data").mkdir()
    (root / "data" / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in long_rows(cell.seq_len)))
    (root / "vilms.yaml").write_text(yaml.safe_dump(project_yaml(cell, vocab, steps), sort_keys=False))
    code, _, _, err = vilms(root, "build", timeout=timeout)
    if code != 0:
        raise SystemExit(f"{cell.name}: vilms build failed ({code}):\n{err}")
    config = yaml.safe_load((root / "generated" / "training" / f"{ADAPTER}.yaml").read_text())
    estimate = int(config["memory_estimate"]["total_bytes"])
    code, peak, seconds, err = vilms(root, "train", ADAPTER, "--no-progress", timeout=timeout)
    if code != 0:
        return {**asdict(cell), "name": cell.name, "estimate": estimate, "measured": peak, "error": None,
                "ok": False, "seconds": round(seconds, 1), "failure": f"exit {code}: {err.strip().splitlines()[-1:]}"}
    error = (estimate - peak) / peak
    return {**asdict(cell), "name": cell.name, "estimate": estimate, "measured": peak, "error": error,
            "ok": abs(error) <= LIMIT, "seconds": round(seconds, 1)}


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def table(results: list[dict]) -> str:
    lines = ["| cell | method | hidden | layers | seq | batch | ckpt | estimate MiB | measured MiB | error | verdict |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for i, r in enumerate(results, 1):
        error = "—" if r["error"] is None else f"{r['error']:+.1%}"
        verdict = ("PASS" if r["ok"] else "FAIL") + (f" ({r['failure']})" if r.get("failure") else "")
        lines.append(f"| {i} | {r['method']} | {r['hidden']} | {r['layers']} | {r['seq_len']} | {r['batch']} | "
                     f"{'on' if r['checkpointing'] else 'off'} | {mib(r['estimate'])} | {mib(r['measured'])} | "
                     f"{error} | {verdict} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small cells (the smoke test)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per cell")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per child process")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--only", type=int, nargs="*", default=None, help="run only these grid cells (1-based)")
    args = parser.parse_args()
    cells = QUICK if args.quick else GRID
    if args.only:
        cells = tuple(cells[i - 1] for i in args.only)
    results = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vilms-planner-") as tmp:
        models, work = Path(tmp) / "models", Path(tmp) / "work"
        for cell in cells:
            result = run_cell(cell, models, work, args.steps, args.timeout)
            results.append(result)
            error = "—" if result["error"] is None else f"{result['error']:+.1%}"
            print(f"{cell.name:34s} estimate {mib(result['estimate']):>7s} MiB  measured {mib(result['measured']):>7s} MiB"
                  f"  {error:>7s}  {'PASS' if result['ok'] else 'FAIL'}  {result['seconds']:.0f}s"
                  + (f"  {result['failure']}" if result.get("failure") else ""), flush=True)
    passed = sum(r["ok"] for r in results)
    print()
    print(table(results))
    print(f"\n{passed}/{len(results)} cells within ±{LIMIT:.0%}; {time.perf_counter() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"limit": LIMIT, "cells": results}, indent=2))
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
