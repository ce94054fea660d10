"""Optional MLflow logging (``tracking.mlflow`` in the training config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vilms.compiler.contracts.training_config import MlflowSpec
from vilms.compiler.errors import ActionError


def require_mlflow(settings: MlflowSpec | None) -> None:
    """Fail before training, not after, when tracking is asked for but mlflow is missing."""
    if settings is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ActionError(
            "tracking.mlflow is set but the mlflow package is not installed",
            hint="pip install mlflow, or set tracking.mlflow to null",
        ) from None


def log_run(
    settings: MlflowSpec | None,
    project_root: Path,
    run_id: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    artifacts: list[Path],
) -> None:
    if settings is None:
        return
    import mlflow

    uri = settings.tracking_uri
    if uri.startswith("file:") and not uri.startswith("file:/"):
        uri = (project_root / uri[len("file:") :]).resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name=run_id):
        mlflow.log_params({k: str(v) for k, v in params.items()})
        for step, loss in metrics["train_loss"]["history"]:
            mlflow.log_metric("train_loss", loss, step=step)
        for step, loss in metrics["eval_history"]:
            mlflow.log_metric("eval_loss", loss, step=step)
        for key in ("eval_loss", "eval_perplexity", "tokens_per_second", "peak_rss_bytes", "wall_time_seconds"):
            if metrics.get(key) is not None:
                mlflow.log_metric(key, float(metrics[key]))
        for path in artifacts:
            if path.exists():
                mlflow.log_artifact(str(path))
