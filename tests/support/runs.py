"""A run record as the trainer writes it (contract RunRecord), for tests that need a run in
``artifacts/`` without training one: rollout, release validation, approve."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from vilms.compiler.contracts.run_record import (
    RUN_RECORD,
    Approval,
    BaseModelUsed,
    DatasetUsed,
    DistributedUsed,
    GateRecord,
    HardwareUsed,
    Host,
    Metrics,
    RunRecord,
    Session,
)
from vilms.compiler.layout import RUN_CONFIG, Layout
from vilms.compiler.run_ids import adapter_of

AT = "2026-11-20T09:15:00Z"
DONE = "2026-11-20T10:15:00Z"


def run_record(run_id: str, *, status: str = "completed", gate: str | None = "passed", project: str = "acme") -> RunRecord:
    """A valid record of ``run_id``; ``gate`` is the gate status (None: not evaluated; needs status != completed)."""
    adapter = adapter_of(run_id)
    assert adapter is not None, run_id
    done = status == "completed"
    gate_record = None if gate is None else GateRecord(
        status=gate, eval_loss=2.1, perplexity=8.2, max_eval_perplexity=12.0, perplexity_passed=gate != "failed",
        regression=(), on_fail="reject" if gate == "failed" else "approval",
        reasons=() if gate in ("passed", "approved") else ("eval perplexity 13.1 > 12.0",),
    )
    approvals = (Approval(who="ana", reason="read the answers", at=DONE, from_status="needs_approval"),) if gate == "approved" else ()
    return RunRecord(
        run_id=run_id, project=project, adapter=adapter, status=status, created_at=AT, finished_at=DONE if done else None,
        config=RUN_CONFIG, config_sha256="c" * 64,
        dataset=DatasetUsed(name="support", path="data/support.jsonl", format="chat", sha256="d" * 64, rows=32),
        base_model=BaseModelUsed(name="qwen2.5-1.5b", source="hf:Qwen/Qwen2.5-1.5B-Instruct", revision=None, family="qwen2",
                                 chat_template="chatml"),
        method="qlora",
        hardware=HardwareUsed(profile="a100", host=Host(platform="Linux", machine="x86_64", cpu_count=8, torch_device="cuda",
                                                          gpu="NVIDIA A100")),
        distributed=DistributedUsed(strategy="ddp", backend="nccl", world_size=2, nnodes=1, nproc_per_node=2,
                                    per_device_batch=4, gradient_accumulation_steps=2, global_batch=16),
        libraries={"python": "3.11.7", "torch": "2.13.0", "gguf": None},
        sessions=(Session(started_at=AT, resumed=False, pid=4242),),
        gate=gate_record,
        metrics=Metrics(steps=60, train_examples=28, eval_examples=4, tokens_per_second=812.5, peak_rss_bytes=2**29,
                        wall_time_seconds=3600.0) if done else None,
        approvals=approvals, export=None, non_finite=(),
    )


def write_run(root: Path, run_id: str, *, status: str = "completed", gate: str | None = "passed", **changes: object) -> Path:
    """``artifacts/<run_id>/run.json`` under ``root`` (fields in ``changes`` replaced); returns the file."""
    path = Layout(root).run_record(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(RUN_RECORD.dump(replace(run_record(run_id, status=status, gate=gate), **changes)))
    return path
