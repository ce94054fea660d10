"""``generated/training/<adapter>.yaml``: everything the trainer reads, and nothing else.

Builds the :class:`~vilms.compiler.contracts.training_config.TrainingConfig` of one
adapter; :func:`vilms.compiler.render.render` writes it with ``TRAINING_CONFIG.dump``.
"""

from __future__ import annotations

from collections.abc import Mapping

from vilms.compiler.contracts.training_config import (
    BaseModel,
    DatasetRef,
    DistributedSpec,
    ExportSpec,
    GateSpec,
    HardwareSpec,
    LoraSpec,
    MemoryEstimate,
    QuantSpec,
    RegressionCase,
    TrackingSpec,
    TrainingConfig,
    TrainingSpec,
)
from vilms.compiler.memory.strategy import choose_strategy, default_nproc_per_node, max_nproc_per_node
from vilms.compiler.plan import Adapter, Plan

# QLoRA's recipe: NF4 with double quantisation, bf16 compute
QLORA_QUANTIZATION = QuantSpec(
    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype="bfloat16"
)


def training_config(plan: Plan, adapter: Adapter, memory_estimate: Mapping[str, int] | None = None) -> TrainingConfig:
    model = plan.models[adapter.base]
    dataset = plan.datasets[adapter.dataset]
    hw = plan.hardware[adapter.hardware] if adapter.hardware else None
    lora, t, gate = adapter.lora, adapter.training, adapter.gate
    strategy = choose_strategy(plan, adapter)
    return TrainingConfig(
        project=plan.project,
        adapter=adapter.name,
        base_model=BaseModel(
            name=model.name,
            source=f"{model.source.scheme}:{model.source.ref}",
            revision=model.source.revision,
            family=model.family,
            chat_template=model.chat_template or "tokenizer",
        ),
        dataset=DatasetRef(
            name=dataset.name, path=dataset.path, format=dataset.format, sha256=dataset.sha256,
            eval_fraction=float(dataset.eval_fraction),
        ),
        method=adapter.method,
        lora=LoraSpec(
            r=lora["r"], lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
            target_modules=tuple(lora["target_modules"]), bias="none", use_rslora=lora["use_rslora"],
        ),
        quantization=QLORA_QUANTIZATION if adapter.method == "qlora" else None,
        training=TrainingSpec(
            epochs=t["epochs"], max_steps=t["max_steps"], learning_rate=float(t["learning_rate"]), batch_size=t["batch_size"],
            gradient_accumulation_steps=t["gradient_accumulation_steps"], seq_len=t["seq_len"], seed=t["seed"],
            warmup_ratio=float(t["warmup_ratio"]), lr_scheduler=t["lr_scheduler"], weight_decay=float(t["weight_decay"]),
            save_steps=t["save_steps"], eval_steps=t["eval_steps"], logging_steps=t["logging_steps"],
            gradient_checkpointing=t["gradient_checkpointing"],
        ),
        distributed=DistributedSpec(
            strategy=strategy.name, declared=t["strategy"], reason=strategy.reason, nnodes=hw.nodes if hw else 1,
            nproc_per_node=default_nproc_per_node(hw), max_nproc_per_node=max_nproc_per_node(hw),
            collective_timeout_s=float(t["collective_timeout"]), max_restarts=t["max_restarts"], engine=t["engine"],
        ),
        gate=GateSpec(
            max_eval_perplexity=_float_or_none(gate["max_eval_perplexity"]),
            regression=tuple(
                RegressionCase(prompt=r["prompt"], expect_substring=r.get("expect_substring"), expect_exact=r.get("expect_exact"))
                for r in gate["regression"]
            ),
            on_fail=gate["on_fail"],
        ),
        hardware=None if hw is None else HardwareSpec(
            name=hw.name, kind=hw.kind, memory_bytes=hw.memory_bytes, gpu_memory_bytes=hw.gpu_memory_bytes, gpus=hw.gpus,
            cpus=hw.cpus, nodes=hw.nodes,
        ),
        export=ExportSpec(gguf=adapter.export["gguf"], quantize=tuple(adapter.export["quantize"])),
        artifact_store=plan.artifact_store,
        tracking=TrackingSpec(mlflow=adapter.mlflow),
        telemetry=plan.telemetry,
        memory_estimate=None if memory_estimate is None else MemoryEstimate(**memory_estimate),
    )


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)
