"""``artifacts/<run_id>/run.json`` (kind RunRecord): what a training run was made from and how it ended.

Written by the trainer (:mod:`vilms.trainers.runs`: `vilms train`, `vilms approve`,
`vilms export`), always as a whole new record written atomically; read by the trainer
(resume, approve, export), the CLI and the compiler, which asks whether a run may be
released (:mod:`vilms.compiler.runs`).

The settings a run trained with are not repeated here: the run keeps a copy of its
training config beside the record (``config``, with its ``config_sha256``).

JSON has no infinity or NaN. A measurement that is not a finite number (an eval loss
that diverged, a perplexity that overflowed) is written as null and its dotted path is
listed in ``non_finite``; a null that is not listed there means "not measured".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vilms.compiler.record import record
from vilms.compiler.reporter import Reporter
from vilms.compiler.run_ids import adapter_of

from .contract import Contract

RELEASABLE = ("passed", "approved")  # gate statuses a completed run may be released with


@record
class Session:
    """One start of the trainer on this run (the first, then one per ``--resume``)."""

    started_at: str
    resumed: bool
    pid: int


@record
class DatasetUsed:
    name: str
    path: str
    format: str
    sha256: str  # of the content the run trained on
    rows: int


@record
class BaseModelUsed:
    name: str
    source: str
    revision: str | None
    family: str
    chat_template: str


@record
class Host:
    """The machine the run started on."""

    platform: str
    machine: str
    cpu_count: int | None
    torch_device: str | None  # cuda | cpu; null: torch not importable
    gpu: str | None  # name of CUDA device 0


@record
class HardwareUsed:
    profile: str | None  # the config's hardware profile; null: none named, trained on the host
    host: Host


@record
class DistributedUsed:
    """How the run's processes shared the work (the same for every session: resuming needs the same world)."""

    strategy: str  # ddp | fsdp
    backend: str  # nccl | gloo | none (one process, no process group)
    world_size: int  # processes over all nodes
    nnodes: int
    nproc_per_node: int
    per_device_batch: int  # training.batch_size
    gradient_accumulation_steps: int
    global_batch: int  # per_device_batch × world_size × gradient_accumulation_steps

    @property
    def equation(self) -> str:
        return (f"{self.per_device_batch} per device × {self.world_size} processes × "
                f"{self.gradient_accumulation_steps} accumulation = {self.global_batch}")


@record
class RegressionOutcome:
    prompt: str
    expected: str
    mode: str  # substring | exact
    answer: str
    passed: bool


@record
class GateRecord:
    status: str  # passed | failed | needs_approval | approved
    eval_loss: float | None  # mean held-out token loss; null: not measured (or see non_finite)
    perplexity: float | None  # exp(eval_loss); null: not measured (or see non_finite)
    max_eval_perplexity: float | None
    perplexity_passed: bool | None  # null: no ceiling
    regression: tuple[RegressionOutcome, ...]
    on_fail: str  # reject | approval
    reasons: tuple[str, ...]  # why the gate did not pass; empty when it passed


@record
class Approval:
    """A human decision (`vilms approve`) that releases a run whose gate asked for one."""

    who: str
    reason: str
    at: str
    from_status: str


@record
class Metrics:
    """The run's headline numbers (metrics.json beside the record has the histories)."""

    steps: int
    train_examples: int
    eval_examples: int
    tokens_per_second: float | None
    peak_rss_bytes: int
    wall_time_seconds: float


@record
class VllmCheck:
    """Can vLLM serve the adapter (rank bucket, no modules_to_save, no DoRA, known targets)?"""

    compatible: bool
    max_lora_rank: int | None
    problems: tuple[str, ...]


@record
class ExportRecord:
    """What the last `vilms export` wrote."""

    at: str
    merged_dtype: str
    gguf_outtype: str | None  # null: no GGUF written
    quantize: tuple[str, ...]
    vllm: VllmCheck
    notes: tuple[str, ...]
    files: Mapping[str, str]  # run-relative path → sha256


@record
class RunRecord:
    run_id: str
    project: str
    adapter: str
    # running | interrupted | failed | completed, or abandoned: unfinished and never to be resumed
    # (a newer run of the adapter started or was resumed; `vilms train --resume` marks it)
    status: str
    created_at: str
    finished_at: str | None  # set when the run completed
    config: str  # the run's copy of its training config, relative to the run folder
    config_sha256: str
    dataset: DatasetUsed
    base_model: BaseModelUsed
    method: str
    hardware: HardwareUsed
    distributed: DistributedUsed | None  # null: recorded before ViLMS trained across processes (one process)
    libraries: Mapping[str, str | None]  # distribution → version; null: not installed
    sessions: tuple[Session, ...]
    gate: GateRecord | None  # set when the run completed
    metrics: Metrics | None  # set when the run completed
    approvals: tuple[Approval, ...]
    export: ExportRecord | None  # set by `vilms export`
    non_finite: tuple[str, ...]  # measurements that were inf or NaN, written as null

    @property
    def gate_status(self) -> str | None:
        return None if self.gate is None else self.gate.status

    @property
    def releasable(self) -> bool:
        """A completed run whose gate passed or that a human approved."""
        return self.status == "completed" and self.gate_status in RELEASABLE


def finite(value: float | None, path: str, non_finite: list[str]) -> float | None:
    """``value`` as the record writes it: a finite float, or None (and ``path`` noted when it was inf or NaN)."""
    if value is None:
        return None
    if not math.isfinite(value):
        non_finite.append(path)
        return None
    return float(value)


def _check(record: RunRecord, report: Reporter) -> None:
    if adapter_of(record.run_id) != record.adapter:
        report.error(("adapter",), f"run {record.run_id!r} is not a run of adapter {record.adapter!r}")
    done = record.status == "completed"
    for key in ("finished_at", "gate", "metrics"):
        if (getattr(record, key) is None) == done:
            report.error((key,), f"must be {'set' if done else 'null'} when status is {record.status}")
    dist = record.distributed
    if dist is not None:
        if dist.world_size != dist.nnodes * dist.nproc_per_node:
            report.error(("distributed", "world_size"),
                         f"{dist.world_size} is not nnodes × nproc_per_node = {dist.nnodes * dist.nproc_per_node}")
        if dist.global_batch != dist.per_device_batch * dist.world_size * dist.gradient_accumulation_steps:
            report.error(("distributed", "global_batch"),
                         "must be per_device_batch × world_size × gradient_accumulation_steps")
    if record.export is not None and not done:
        report.error(("export",), f"must be null when status is {record.status}")
    approved = record.gate_status == "approved"
    if approved and not record.approvals:
        report.error(("approvals",), "gate status approved needs the approval that decided it")
    if record.approvals and not approved:
        report.error(("approvals",), f"lists an approval but the gate status is {record.gate_status}")
    for index, path in enumerate(record.non_finite):
        if _at(record, path) is not None:
            report.error(("non_finite", index), f"{path} is listed as not finite but holds a number")


def _at(record: RunRecord, path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = getattr(value, part, None)
    return value


RUN_RECORD = Contract(
    kind="RunRecord",
    root=RunRecord,
    schema_file="run-record.schema.json",
    format="json",
    remedy="train the adapter again (`vilms train`)",
    check=_check,
)
