"""One training run end to end: pre-flight → run directory → recipe → records.

Everything that can be checked without a model is checked before the run directory is
created (config, dataset rows, dataset hash pin, mlflow availability), so bad input leaves
no partial artifacts.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from vilms.compiler.errors import ActionError, DatasetError, Diagnostic

from . import report, runs, tracking
from .config import TrainingConfig, load_training_config, training_config_path
from .datasets.validate import Dataset, load_dataset

RUN_CONFIG = "training.yaml"


def preflight(cfg: TrainingConfig) -> Dataset:
    dataset = load_dataset(cfg.dataset_path, cfg.dataset.format, display=cfg.dataset.path)
    if cfg.dataset.sha256 is not None and cfg.dataset.sha256 != dataset.sha256:
        raise DatasetError(
            [
                Diagnostic(
                    cfg.dataset.path,
                    0,
                    0,
                    "dataset.sha256",
                    f"content hash {dataset.sha256} does not match the pinned {cfg.dataset.sha256}",
                    hint="the dataset changed since it was pinned; review it and update the pin in vilms.yaml",
                )
            ]
        )
    tracking.require_mlflow(cfg.tracking_mlflow)
    return dataset


def _host() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _initial_record(cfg: TrainingConfig, run_id: str, dataset: Dataset) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "project": cfg.project,
        "adapter": cfg.adapter,
        "status": "running",
        "created_at": runs.utc_now(),
        "finished_at": None,
        "config_sha256": cfg.sha256,
        "config": RUN_CONFIG,
        "dataset": {
            "name": cfg.dataset.name,
            "path": cfg.dataset.path,
            "format": cfg.dataset.format,
            "sha256": dataset.sha256,
            "rows": len(dataset.rows),
        },
        "base_model": {
            "name": cfg.base_model.name,
            "source": cfg.base_model.source,
            "revision": cfg.base_model.revision,
            "family": cfg.base_model.family,
            "chat_template": cfg.base_model.chat_template,
        },
        "method": cfg.method,
        "lora": cfg.raw["lora"],
        "training": cfg.raw["training"],
        "hardware": {"profile": cfg.hardware, "host": _host()},
        "libraries": runs.library_versions(),
        "memory_estimate": cfg.memory_estimate,
        "gate": None,
        "approvals": [],
        "sessions": [],
    }


def train_adapter(project_file: Path, adapter: str, *, resume: bool = False, show_progress: bool = True) -> str:
    """Train ``adapter`` from ``generated/training/<adapter>.yaml``; return the run id."""
    project_root = project_file.resolve().parent
    cfg = load_training_config(training_config_path(project_file, adapter), project_root)
    if cfg.adapter != adapter:
        raise ActionError(f"{cfg.path} is for adapter {cfg.adapter!r}, not {adapter!r}")
    dataset = preflight(cfg)
    run_dir = runs.find_resumable(project_root, adapter) if resume else None
    if run_dir is not None:
        record = runs.read_record(run_dir)
        if record.get("config_sha256") != cfg.sha256:
            raise ActionError(
                f"the training config changed since run {run_dir.name} started", hint="start a new run without --resume"
            )
        if record.get("dataset", {}).get("sha256") != dataset.sha256:
            raise ActionError(
                f"the dataset changed since run {run_dir.name} started", hint="start a new run without --resume"
            )
        run_id = run_dir.name
    else:
        if resume:  # e.g. the first start of a Kubernetes Job that always passes --resume
            print(f"{adapter}: no unfinished run to resume; starting a new run", file=sys.stderr)
        run_id, run_dir = runs.create_run_dir(project_root, adapter)
        shutil.copyfile(cfg.path, run_dir / RUN_CONFIG)
        runs.write_record(run_dir, _initial_record(cfg, run_id, dataset))
        resume = False

    from .recipe import Interrupted, LoraRecipe

    session = {"started_at": runs.utc_now(), "resumed": resume, "pid": os.getpid()}
    record = runs.read_record(run_dir)
    record["status"] = "running"
    record["sessions"] = [*record.get("sessions", []), session]
    runs.write_record(run_dir, record)
    recipe = LoraRecipe(cfg, dataset, run_dir, resume=resume, show_progress=show_progress)
    try:
        result = recipe.run()
    except Interrupted:
        runs.update_record(run_dir, status="interrupted")
        raise
    except BaseException:
        runs.update_record(run_dir, status="failed")
        raise
    metrics = report.build_metrics(result.state, result.eval_loss, result.gate.perplexity, result.total_steps)
    metrics["train_examples"] = len(recipe.train_examples)
    metrics["eval_examples"] = len(recipe.eval_examples)
    report.write_metrics(run_dir, metrics)
    report.write_loss_curve(run_dir, result.state, f"{cfg.adapter} ({run_id})")
    record = runs.read_record(run_dir)
    record.update(
        status="completed",
        finished_at=runs.utc_now(),
        gate=result.gate.as_dict(),
        metrics={
            k: metrics[k]
            for k in (
                "eval_loss",
                "eval_perplexity",
                "tokens_per_second",
                "peak_rss_bytes",
                "wall_time_seconds",
                "steps",
            )
        },
    )
    runs.write_record(run_dir, record)
    tracking.log_run(
        cfg.tracking_mlflow,
        project_root,
        run_id,
        {"adapter": adapter, "method": cfg.method, "r": cfg.lora.r, **cfg.raw["training"]},
        metrics,
        [run_dir / "metrics.json", run_dir / "run.json", run_dir / "loss.png"],
    )
    return run_id
