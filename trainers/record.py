"""The run record's contents at each stage of a run: started, resumed, ended, completed.

Each function returns a new :class:`~vilms.compiler.contracts.run_record.RunRecord`;
:func:`vilms.trainers.runs.save_record` writes it. Measurements that are inf or NaN become
null and are listed in ``non_finite`` (JSON has neither).
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import replace
from importlib import metadata
from typing import Any

from vilms.compiler.clock import utc_now
from vilms.compiler.contracts.run_record import (
    BaseModelUsed,
    DatasetUsed,
    DistributedUsed,
    GateRecord,
    HardwareUsed,
    Host,
    Metrics,
    RunRecord,
    Session,
    finite,
)
from vilms.compiler.layout import RUN_CONFIG

from .datasets.validate import Dataset
from .gate import GateResult
from .job import TrainingJob

# distributions whose versions every record keeps (python's own is added)
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "safetensors",
    "tokenizers",
    "gguf",
    "llama_cpp_python",
    "numpy",
    "vilms",
)


def session(*, resumed: bool) -> Session:
    return Session(started_at=utc_now(), resumed=resumed, pid=os.getpid())


def distributed_used(job: TrainingJob, *, nnodes: int, nproc_per_node: int, backend: str) -> DistributedUsed:
    """How a run of ``job`` spreads over ``nnodes`` × ``nproc_per_node`` processes."""
    t, world = job.config.training, nnodes * nproc_per_node
    return DistributedUsed(
        strategy=job.config.distributed.strategy, backend=backend, world_size=world, nnodes=nnodes,
        nproc_per_node=nproc_per_node, per_device_batch=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        global_batch=t.batch_size * world * t.gradient_accumulation_steps,
    )


def started(job: TrainingJob, run_id: str, dataset: Dataset, distributed: DistributedUsed) -> RunRecord:
    """The record of a new run, written before training starts."""
    cfg = job.config
    base = cfg.base_model
    return RunRecord(
        run_id=run_id,
        project=cfg.project,
        adapter=cfg.adapter,
        status="running",
        created_at=utc_now(),
        finished_at=None,
        config=RUN_CONFIG,
        config_sha256=job.sha256,
        dataset=DatasetUsed(name=cfg.dataset.name, path=cfg.dataset.path, format=cfg.dataset.format,
                            sha256=dataset.sha256, rows=len(dataset.rows)),
        base_model=BaseModelUsed(name=base.name, source=base.source, revision=base.revision, family=base.family,
                                 chat_template=base.chat_template),
        method=cfg.method,
        hardware=HardwareUsed(profile=cfg.hardware.name if cfg.hardware else None, host=host()),
        distributed=distributed,
        libraries=library_versions(),
        sessions=(session(resumed=False),),
        gate=None,
        metrics=None,
        approvals=(),
        export=None,
        non_finite=(),
    )


def resumed(record: RunRecord) -> RunRecord:
    return replace(record, status="running", sessions=(*record.sessions, session(resumed=True)))


def abandoned(record: RunRecord) -> RunRecord:
    """An unfinished run that will never be resumed: a newer run of its adapter was started or resumed."""
    return replace(record, status="abandoned")


def ended(record: RunRecord, status: str) -> RunRecord:
    """An unfinished run stopped: ``interrupted`` (a signal; resumable) or ``failed``."""
    return replace(record, status=status)


def completed(record: RunRecord, gate: GateResult, metrics: dict[str, Any]) -> RunRecord:
    """The run trained and was evaluated: ``metrics`` is what metrics.json holds."""
    flagged: list[str] = []
    gate_record = GateRecord(
        status=gate.status,
        eval_loss=finite(gate.eval_loss, "gate.eval_loss", flagged),
        perplexity=finite(gate.perplexity, "gate.perplexity", flagged),
        max_eval_perplexity=gate.max_eval_perplexity,
        perplexity_passed=gate.perplexity_passed,
        regression=gate.regression,
        on_fail=gate.on_fail,
        reasons=gate.reasons,
    )
    numbers = Metrics(
        steps=metrics["steps"],
        train_examples=metrics["train_examples"],
        eval_examples=metrics["eval_examples"],
        tokens_per_second=finite(metrics["tokens_per_second"], "metrics.tokens_per_second", flagged),
        peak_rss_bytes=metrics["peak_rss_bytes"],
        wall_time_seconds=metrics["wall_time_seconds"],
    )
    return replace(record, status="completed", finished_at=utc_now(), gate=gate_record, metrics=numbers,
                   non_finite=tuple(flagged))


def host() -> Host:
    device = gpu = None
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    except ImportError:
        pass
    return Host(platform=platform.platform(), machine=platform.machine(), cpu_count=os.cpu_count(),
                torch_device=device, gpu=gpu)


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
