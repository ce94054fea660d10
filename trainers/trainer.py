"""One training run end to end: pre-flight → run directory → recipe → records.

Everything that can be checked without a model is checked before the run directory is
created (config, dataset rows, dataset hash pin, mlflow availability), so bad input leaves
no partial artifacts.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from vilms.compiler.errors import ActionError, DatasetError, Diagnostic
from vilms.compiler.layout import RUN_CONFIG, RUN_RECORD, Layout

from . import record, report, runs, tracking
from .datasets.validate import Dataset, load_dataset
from .job import TrainingJob, job_for


def preflight(job: TrainingJob) -> Dataset:
    cfg = job.config
    dataset = load_dataset(job.dataset_path, cfg.dataset.format, display=cfg.dataset.path)
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
    tracking.require_mlflow(cfg.tracking.mlflow)
    return dataset


def train_adapter(project_file: Path, adapter: str, *, resume: bool = False, show_progress: bool = True) -> str:
    """Train ``adapter`` from ``generated/training/<adapter>.yaml``; return the run id."""
    layout = Layout.of(project_file)
    job = job_for(layout, adapter)
    cfg = job.config
    dataset = preflight(job)
    previous = runs.find_resumable(layout, adapter) if resume else None
    if previous is not None:
        if previous.config_sha256 != job.sha256:
            raise ActionError(
                f"the training config changed since run {previous.run_id} started", hint="start a new run without --resume"
            )
        if previous.dataset.sha256 != dataset.sha256:
            raise ActionError(
                f"the dataset changed since run {previous.run_id} started", hint="start a new run without --resume"
            )
        run_id, run_dir = previous.run_id, layout.run(previous.run_id)
        current = record.resumed(previous)
    else:
        if resume:  # e.g. the first start of a Kubernetes Job that always passes --resume
            print(f"{adapter}: no unfinished run to resume; starting a new run", file=sys.stderr)
        run_id, run_dir = runs.create_run(layout, adapter)
        shutil.copyfile(job.file, run_dir / RUN_CONFIG)
        current = record.started(
            job, run_id, dataset, record.distributed_used(job, nnodes=1, nproc_per_node=1, backend="none")
        )
    runs.save_record(run_dir, current)

    from .recipe import Interrupted, LoraRecipe

    recipe = LoraRecipe(job, dataset, run_dir, resume=previous is not None, show_progress=show_progress)
    try:
        result = recipe.run()
    except Interrupted:
        runs.save_record(run_dir, record.ended(current, "interrupted"))
        raise
    except BaseException:
        runs.save_record(run_dir, record.ended(current, "failed"))
        raise
    metrics = report.build_metrics(result.state, result.eval_loss, result.gate.perplexity, result.total_steps)
    metrics["train_examples"] = len(recipe.train_examples)
    metrics["eval_examples"] = len(recipe.eval_examples)
    report.write_metrics(run_dir, metrics)
    report.write_loss_curve(run_dir, result.state, f"{cfg.adapter} ({run_id})")
    runs.save_record(run_dir, record.completed(current, result.gate, metrics))
    tracking.log_run(
        cfg.tracking.mlflow,
        layout.root,
        run_id,
        {"adapter": adapter, "method": cfg.method, "r": cfg.lora.r, **asdict(cfg.training)},
        metrics,
        [run_dir / "metrics.json", run_dir / RUN_RECORD, run_dir / "loss.png"],
    )
    return run_id
