"""bench/qlora_cpu.py runs end to end on the smallest llama, so it cannot rot (timings are the bench's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.heavy


def test_qlora_cpu_bench_smoke() -> None:
    pytest.importorskip("peft")
    pytest.importorskip("bitsandbytes")
    proc = subprocess.run([sys.executable, "bench/qlora_cpu.py", "--steps", "2", "--repeats", "1", "--hidden", "64",
                           "--layers", "2", "--timeout", "240"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = re.findall(r"^  (lora|qlora-bf16|qlora-fp32) +median step +([\d.]+) ms CPU", proc.stdout, re.M)
    assert [name for name, _ in rows] == ["lora", "qlora-bf16", "qlora-fp32"], proc.stdout
    assert all(float(ms) > 0 for _, ms in rows)
