"""Training metrics as they happen: to MLflow (``tracking.mlflow``) and over OTLP (``telemetry.otlp``).

:func:`open_tracker` gives rank 0 of a run a :class:`Tracker`; the recipe calls :meth:`Tracker.step`
every ``logging_steps`` and :meth:`Tracker.evaluated` after each evaluation, the trainer
:meth:`Tracker.finish` once the session ends (completed, failed or interrupted). Nothing here
blocks the training loop on the network (:mod:`.sender`, the SDK's periodic reader).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.training_config import TRAINING_CONFIG

from . import mlflow_run, otel

STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "FAILED"}  # ViLMS run status → MLflow


def require(job: Any, environ: Mapping[str, str] = os.environ) -> None:
    """Pre-flight: the clients the config asks for are installed, the MLflow URI's variable is set."""
    mlflow_run.require(job.config.tracking.mlflow, job.root, environ)
    otel.require(job.config.telemetry)


class Tracker:
    """Where a run's metrics go; with neither MLflow nor OTLP configured every call is a no-op."""

    def __init__(self, mlflow: mlflow_run.MlflowRun | None = None, otlp: otel.OtelMetrics | None = None) -> None:
        self.mlflow = mlflow
        self.otlp = otlp

    def step(self, step: int, values: Mapping[str, float]) -> None:
        """One logged optimizer step; ``values`` by their MLflow keys (facts.telemetry.TRAINER)."""
        clean = {k: float(v) for k, v in values.items() if v is not None}
        if self.mlflow is not None:
            self.mlflow.log_metrics(step, clean)
        if self.otlp is not None:
            self.otlp.record(step, clean)

    def evaluated(self, step: int, eval_loss: float | None) -> None:
        if eval_loss is None:
            return
        values = {"eval_loss": eval_loss, "eval_perplexity": math.exp(min(eval_loss, 700.0))}
        if self.mlflow is not None:
            self.mlflow.log_metrics(step, values)
        if self.otlp is not None:
            self.otlp.record(step, values)

    def finish(self, status: str, *, step: int, gate_status: str | None = None, artifacts: Sequence[Path] = ()) -> None:
        """End this session: the gate's verdict, the run's status, the artifacts (completed runs)."""
        if gate_status is not None:
            passed = 1.0 if gate_status in ("passed", "approved") else 0.0
            if self.mlflow is not None:
                self.mlflow.log_metrics(step, {"gate_passed": passed})
            if self.otlp is not None:
                self.otlp.record(step, {"gate_passed": passed}, {"status": gate_status})
        try:
            if self.otlp is not None:
                self.otlp.close()
        finally:
            if self.mlflow is not None:
                tags = {"vilms.status": status, **({"vilms.gate": gate_status} if gate_status else {})}
                self.mlflow.set_tags(tags)
                self.mlflow.finish(STATUS[status], artifacts if status == "completed" else ())


def open_tracker(job: Any, run_id: str, run_dir: Path, dataset: Any, *, start_step: int = 0,
                 environ: Mapping[str, str] = os.environ) -> Tracker:
    """The tracker of ``run_id`` (rank 0 only). A resumed run continues its MLflow run."""
    cfg = job.config
    label = cfg.adapter
    attributes = {"adapter": cfg.adapter, "run_id": run_id, "base_model": cfg.base_model.name}
    secrets = [v for v in (cfg.telemetry.headers(environ).values() if cfg.telemetry else ()) if v]
    mlflow = None
    if cfg.tracking.mlflow is not None:
        uri = mlflow_run.tracking_uri(cfg.tracking.mlflow, job.root, environ)  # checked by require()
        mlflow = _guarded(label, "MLflow tracking", lambda: mlflow_run.MlflowRun(
            cfg.tracking.mlflow, uri, run_dir, vilms_run_id=run_id, label=label, secrets=secrets,
            tags={"vilms.adapter": cfg.adapter, "vilms.base_model": cfg.base_model.name,
                  "vilms.method": cfg.method},
            config=TRAINING_CONFIG.data(cfg),
            dataset=mlflow_run.dataset_input(
                cfg.dataset.name, cfg.dataset.path, dataset.sha256, len(dataset.rows), dataset.size_bytes,
                _provenance(dataset.path)),
        ))
    otlp = _guarded(label, "OTLP metrics", lambda: otel.OtelMetrics.from_spec(cfg.telemetry, environ, attributes, label))
    if otlp is not None:
        otlp.start_at(start_step)
    return Tracker(mlflow, otlp)


def _guarded(label: str, what: str, make: Any) -> Any:
    """``make()``, or None with a one-line warning: a client that cannot start must not stop the training
    (the message names the exception's type only: its text may quote the URI or a header)."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001
        print(f"{label}: {what} is off for this session: {type(exc).__name__}", file=sys.stderr)
        return None


def tag_run(run_dir: Path, project_root: Path, tags: Mapping[str, str], environ: Mapping[str, str] = os.environ) -> bool | None:
    """Set ``tags`` on the MLflow run of an ended run (e.g. who approved it). None: the run is not tracked
    in MLflow; False: the server could not be reached (the run record stays the source of truth)."""
    from vilms.compiler.layout import RUN_CONFIG

    try:
        spec = TRAINING_CONFIG.load(run_dir / RUN_CONFIG).tracking.mlflow
    except Exception:  # noqa: BLE001 — a run folder from an older ViLMS: nothing to mirror
        return None
    run_id = mlflow_run.saved_run_id(run_dir)
    if spec is None or run_id is None:
        return None
    try:
        uri = mlflow_run.tracking_uri(spec, project_root, environ)
        from mlflow import MlflowClient
        from mlflow.entities import RunTag

        mlflow_run.configure_client(uri)
        MlflowClient(tracking_uri=uri).log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    except Exception:  # noqa: BLE001 — unset variable, no client, server down: said by the caller
        return False
    return True


def _provenance(dataset_path: Path) -> dict[str, Any]:
    from ..datasets.manifest import manifest_path

    try:
        return dict(json.loads(manifest_path(dataset_path).read_text(encoding="utf-8")).get("provenance") or {})
    except (OSError, ValueError, AttributeError):
        return {}
