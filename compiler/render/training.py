"""``generated/training/<adapter>.yaml``: everything the trainer reads, and nothing else."""

from __future__ import annotations

from typing import Any

from vilms.compiler.plan import Adapter, Plan

QLORA_QUANTIZATION = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_compute_dtype": "bfloat16",
}


def training_config(plan: Plan, adapter: Adapter, memory_estimate: dict[str, int] | None = None) -> dict[str, Any]:
    model = plan.models[adapter.base]
    dataset = plan.datasets[adapter.dataset]
    hw = plan.hardware.get(adapter.hardware) if adapter.hardware else None
    lora = adapter.lora
    return {
        "apiVersion": "vilms/v1",
        "kind": "TrainingConfig",
        "project": plan.project,
        "adapter": adapter.name,
        "base_model": {
            "name": model.name,
            "source": f"{model.source.scheme}:{model.source.ref}",
            "revision": model.source.revision,
            "family": model.family,
            "chat_template": model.chat_template or "tokenizer",
        },
        "dataset": {
            "name": dataset.name,
            "path": dataset.path,
            "format": dataset.format,
            "sha256": dataset.sha256,
            "eval_fraction": dataset.eval_fraction,
        },
        "method": adapter.method,
        "lora": {
            "r": lora["r"],
            "lora_alpha": lora["alpha"],
            "lora_dropout": lora["dropout"],
            "target_modules": list(lora["target_modules"]),
            "bias": "none",
            "use_rslora": lora["use_rslora"],
        },
        "quantization": dict(QLORA_QUANTIZATION) if adapter.method == "qlora" else None,
        "training": dict(adapter.training),
        "gate": {
            "max_eval_perplexity": adapter.gate["max_eval_perplexity"],
            "regression": [dict(r) for r in adapter.gate["regression"]],
            "on_fail": adapter.gate["on_fail"],
        },
        "hardware": None if hw is None else {
            "name": hw.name, "kind": hw.kind, "memory_bytes": hw.memory_bytes,
            "gpu_memory_bytes": hw.gpu_memory_bytes, "gpus": hw.gpus,
        },
        "export": {"gguf": adapter.export["gguf"], "quantize": list(adapter.export["quantize"])},
        "tracking": {"mlflow": {"tracking_uri": "file:mlruns", "experiment": adapter.tracking.get("experiment", plan.project)}
                     if adapter.tracking["mlflow"] else None},
        "memory_estimate": memory_estimate,
    }
