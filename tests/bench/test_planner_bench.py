"""bench/planner.py runs end to end on its two smallest cells (``--quick``), so it cannot rot.

Checks that each cell builds a project, trains it in a child process and compares the
compiler's estimate with that child's peak RSS; the ±15 % verdict is the bench's, not this test's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.heavy


def test_planner_bench_quick(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "planner.json"
    proc = subprocess.run([sys.executable, "bench/planner.py", "--quick", "--steps", "2", "--timeout", "240",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    cells = json.loads(out.read_text())["cells"]
    assert [c["method"] for c in cells] == ["lora", "qlora"]
    for cell in cells:
        assert "failure" not in cell, cell  # the child trained
        assert cell["measured"] > 300 * 2**20 and cell["estimate"] > 300 * 2**20
        assert cell["ok"] == (abs(cell["error"]) <= 0.15)
    assert "| cell | method |" in proc.stdout and "cells within ±15%" in proc.stdout
