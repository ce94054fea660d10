#!/usr/bin/env python3
"""`vilms rollout` + `vilms rollback` wall time, this ViLMS side by side with a baseline.

Each round copies the shipped vilms.yaml into a scratch git project, builds it, then times
N alternating rollouts of a new run id and rollbacks (one process each, as a user runs them).
What it measures is the release path: the lock, the journal and its fsyncs, the one-line edit,
the rebuild of generated/ and the history line. Run:
python bench/rollout.py [--rounds N] [--baseline COMMAND]
(COMMAND: how to run the other ViLMS, e.g. "/work/wt/base/.venv/bin/python -m vilms").
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ADAPTER = "support-v1"


def _run(cmd: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return elapsed


def measure(vilms: list[str], rounds: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="vilms-bench-rollout-") as tmp:
        root = Path(tmp)
        shutil.copy(REPO / "vilms.yaml", root / "vilms.yaml")
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        _run([*vilms, "build"], root)
        times: dict[str, list[float]] = {"rollout": [], "rollback": []}
        for i in range(rounds):
            run_id = f"{ADAPTER}-20261201T{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}Z-{i:06x}"
            times["rollout"].append(_run([*vilms, "rollout", ADAPTER, run_id, "--skip-registry"], root))
            times["rollback"].append(_run([*vilms, "rollback", ADAPTER, "--skip-registry"], root))
        return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--baseline", help="command that runs the baseline ViLMS")
    args = parser.parse_args()
    subjects = {"this": [sys.executable, "-m", "vilms"]}
    if args.baseline:
        subjects["baseline"] = shlex.split(args.baseline)
    print(f"{'subject':<10} {'command':<9} {'median s':>9} {'p90 s':>7} {'n':>3}")
    for name, vilms in subjects.items():
        for command, values in measure(vilms, args.rounds).items():
            p90 = sorted(values)[max(0, int(len(values) * 0.9) - 1)]
            print(f"{name:<10} {command:<9} {statistics.median(values):>9.3f} {p90:>7.3f} {len(values):>3}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
