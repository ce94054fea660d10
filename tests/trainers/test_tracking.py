"""MLflow logging is wired through mlflow's public API (a recording stand-in, no server)."""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.training_config import MlflowSpec
from vilms.trainers.tracking import log_run, require_mlflow


def test_log_run_calls_mlflow(tmp_path: Path, monkeypatch: Any) -> None:
    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("mlflow")
    fake.set_tracking_uri = lambda uri: calls.append(("uri", uri))  # type: ignore[attr-defined]
    fake.set_experiment = lambda name: calls.append(("experiment", name))  # type: ignore[attr-defined]

    @contextmanager
    def start_run(run_name: str):  # type: ignore[no-untyped-def]
        calls.append(("start", run_name))
        yield
        calls.append(("end", run_name))

    fake.start_run = start_run  # type: ignore[attr-defined]
    fake.log_params = lambda p: calls.append(("params", p))  # type: ignore[attr-defined]
    fake.log_metric = lambda k, v, step=None: calls.append(("metric", (k, v, step)))  # type: ignore[attr-defined]
    fake.log_artifact = lambda p: calls.append(("artifact", Path(p).name))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", fake)

    require_mlflow(MlflowSpec(tracking_uri="file:mlruns", tracking_uri_env=None, experiment="acme", registered_model="tiny-v1", registry_alias="production"))
    (tmp_path / "metrics.json").write_text("{}")
    metrics = {
        "train_loss": {"history": [[1, 2.0], [2, 1.5]]},
        "eval_history": [[2, 1.7]],
        "eval_loss": 1.7,
        "eval_perplexity": 5.47,
        "tokens_per_second": 100.0,
        "peak_rss_bytes": 1,
        "wall_time_seconds": 3.0,
    }
    log_run(
        MlflowSpec(tracking_uri="file:mlruns", tracking_uri_env=None, experiment="acme", registered_model="tiny-v1", registry_alias="production"),
        tmp_path,
        "sup-1",
        {"r": 8},
        metrics,
        [tmp_path / "metrics.json", tmp_path / "missing.png"],
    )
    assert calls[0] == ("uri", (tmp_path / "mlruns").resolve().as_uri())
    assert calls[1:3] == [("experiment", "acme"), ("start", "sup-1")]
    assert ("params", {"r": "8"}) in calls
    assert ("metric", ("train_loss", 1.5, 2)) in calls and ("metric", ("eval_loss", 1.7, 2)) in calls
    assert ("metric", ("eval_perplexity", 5.47, None)) in calls
    assert [c for c in calls if c[0] == "artifact"] == [("artifact", "metrics.json")]
    assert calls[-1] == ("end", "sup-1")


def test_no_tracking_is_a_no_op() -> None:
    require_mlflow(None)
    log_run(None, Path("."), "x", {}, {}, [])
