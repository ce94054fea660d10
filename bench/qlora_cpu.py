#!/usr/bin/env python3
"""LoRA vs QLoRA training speed on CPU, on the same tiny llama and batches.

Sets the trainer's recipe up (``LoraRecipe``: loader, PEFT, bitsandbytes) in a fresh process
per run, alternating LoRA, QLoRA with bf16 compute (what ``vilms build`` writes) and QLoRA
with fp32 compute, and times its optimizer steps after two warm-up steps: the median CPU time
per step (one torch thread; what a shared machine disturbs least) and the wall time.

    python bench/qlora_cpu.py [--steps 30] [--repeats 3] [--hidden 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
VARIANTS = {
    "lora": {"method": "lora", "quantization": None},
    "qlora-bf16": {"method": "qlora", "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                                       "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16"}},
    "qlora-fp32": {"method": "qlora", "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                                       "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "float32"}},
}


def worker(model_dir: Path, workdir: Path, variant: str, steps: int) -> dict:
    """Set the trainer's recipe up, then time its optimizer steps: wall and CPU seconds (CPU time
    is what a shared machine disturbs least)."""
    import time

    from vilms.compiler.layout import Layout
    from vilms.trainers.job import job_for
    from vilms.trainers.recipe import LoraRecipe
    from vilms.trainers.tiny import write_tiny_project
    from vilms.trainers.trainer import preflight

    changes = {**VARIANTS[variant], "training": {"max_steps": steps + 2, "batch_size": 4, "seq_len": 128}}
    project = write_tiny_project(workdir, model_dir, changes)
    job = job_for(Layout.of(project), "tiny-v1")
    recipe = LoraRecipe(job, preflight(job), workdir / "run", show_progress=False)
    recipe.setup()
    losses = [recipe._optimizer_step()[0] for _ in range(2)]  # warm-up (first steps allocate)
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        losses.append(recipe._optimizer_step()[0])
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"step_ms": statistics.median(wall) * 1000, "cpu_ms": statistics.median(cpu) * 1000, "loss": losses[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--worker", nargs=4, metavar=("MODEL", "WORKDIR", "VARIANT", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model, workdir, variant, steps = args.worker
        print(json.dumps(worker(Path(model), Path(workdir), variant, int(steps))))
        return 0
    from vilms.trainers.tiny import build_tiny_llama

    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="vilms-qlora-cpu-") as tmp:
        model = build_tiny_llama(Path(tmp) / "model", hidden=args.hidden, layers=args.layers)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
               "VILMS_TORCH_THREADS": os.environ.get("VILMS_TORCH_THREADS", "1")}
        for repeat in range(args.repeats):
            for variant in VARIANTS:
                out = subprocess.run([sys.executable, str(HERE), "--worker", str(model), f"{tmp}/{variant}-{repeat}",
                                      variant, str(args.steps)], capture_output=True, text=True, env=env,
                                     timeout=args.timeout, check=True)
                results[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    lora = statistics.median(r["cpu_ms"] for r in results["lora"])
    print(f"tiny llama h{args.hidden} L{args.layers}, batch 4 × 128 tokens, {args.steps} steps × {args.repeats} runs, "
          f"{os.environ.get('VILMS_TORCH_THREADS', '1')} thread(s)")
    for variant, runs in results.items():
        ms = statistics.median(r["cpu_ms"] for r in runs)
        wall = statistics.median(r["step_ms"] for r in runs)
        print(f"  {variant:11s} median step {ms:7.1f} ms CPU ({1000 / ms:6.1f} steps/s), {wall:7.1f} ms wall  "
              f"×{ms / lora:.2f} of LoRA  loss after {args.steps + 2} steps {runs[-1]['loss']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
