#!/usr/bin/env python3
"""Live-metrics cost on the training loop: what one logged step costs the training thread with
MLflow tracking on (a real ``mlflow server`` on 127.0.0.1, and one that is down) vs off, side by
side in the same run, and how long the background sender takes to deliver everything.

A logged step hands 6 values to the tracker (loss, lr, grad norm, tokens/s, peak RSS, eval).
PASS when the median per-call cost with MLflow on stays under ``LIMIT_US`` (the loop never waits
for the network: a CPU step of the tiny model takes ~10 ms, a 7B GPU step ~1 s).

    python bench/tracking.py [--steps 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # the repo root: tests.trainers.mlflow_server

LIMIT_US = 200.0
VALUES = {"train_loss": 1.25, "learning_rate": 3e-4, "grad_norm": 0.8, "tokens_per_second": 1500.0,
          "peak_rss_bytes": 1.5e9}


def measure(tracker, steps: int) -> list[float]:  # noqa: ANN001
    costs = []
    for step in range(1, steps + 1):
        began = time.perf_counter()
        tracker.step(step, VALUES)
        if step % 10 == 0:
            tracker.evaluated(step, 1.1)
        costs.append((time.perf_counter() - began) * 1e6)
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tests.support.mlflow_server import MlflowServer
    from tests.support.s3_server import free_port
    from vilms.compiler.contracts.training_config import MlflowSpec
    from vilms.trainers.tracking import Tracker, mlflow_run

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = MlflowServer(root / "server").start()
        print(f"mlflow server started in {server.started_in_s:.1f} s")
        rows: dict[str, list[float]] = {"off (no tracking)": [], "mlflow on (server up)": [],
                                        "mlflow on (server down)": []}
        drain: list[float] = []
        try:
            for repeat in range(args.repeats):
                for name in rows:
                    run_dir = root / f"{repeat}-{list(rows).index(name)}"
                    run_dir.mkdir()
                    if name.startswith("off"):
                        tracker = Tracker()
                    else:
                        uri = server.url if "up" in name else f"http://127.0.0.1:{free_port()}"
                        spec = MlflowSpec(tracking_uri=uri, tracking_uri_env=None, experiment="bench",
                                          registered_model="a", registry_alias="production")
                        tracker = Tracker(mlflow_run.MlflowRun(spec, uri, run_dir, vilms_run_id=run_dir.name, label="bench",
                                                               tags={}, config={"x": 1}, dataset=None))
                    rows[name] += measure(tracker, args.steps)
                    if tracker.mlflow is not None:
                        began = time.perf_counter()
                        tracker.mlflow.finish("FINISHED", [], down_timeout_s=0.5)
                        if "up" in name:
                            drain.append(time.perf_counter() - began)
        finally:
            server.stop()
    print(f"{args.steps} logged steps × {args.repeats} repeats; cost to the training thread per logged step:")
    for name, costs in rows.items():
        costs.sort()
        print(f"  {name:26s} median {statistics.median(costs):8.1f} µs   p99 {costs[int(len(costs) * 0.99)]:8.1f} µs")
    print(f"  sending what was left at the end (server up): median {statistics.median(drain):.2f} s")
    on = statistics.median(rows["mlflow on (server up)"])
    ok = on < LIMIT_US and statistics.median(rows["mlflow on (server down)"]) < LIMIT_US
    print(("PASS" if ok else "FAIL") + f": median with MLflow on {on:.1f} µs (limit {LIMIT_US:.0f} µs)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
