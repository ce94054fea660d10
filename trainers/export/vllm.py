"""Can vLLM serve this adapter? (rank bucket, no modules_to_save, no DoRA, known targets)."""

from __future__ import annotations

from typing import Any

from vilms.compiler.contracts.run_record import VllmCheck
from vilms.compiler.facts.vllm import MAX_LORA_RANKS

_UNSUPPORTED_TARGETS = ("lm_head", "embed_tokens")


def check_adapter(adapter_config: dict[str, Any]) -> VllmCheck:
    problems: list[str] = []
    rank = int(adapter_config.get("r", 0))
    ranks = [rank, *(int(v) for v in (adapter_config.get("rank_pattern") or {}).values())]
    top = max(ranks)
    bucket = next((b for b in MAX_LORA_RANKS if b >= top), None)
    if bucket is None:
        problems.append(f"rank {top} exceeds vLLM's largest --max-lora-rank {MAX_LORA_RANKS[-1]}")
    if adapter_config.get("modules_to_save"):
        problems.append("vLLM only supports modules_to_save being None")
    if adapter_config.get("use_dora"):
        problems.append("vLLM does not support DoRA adapters")
    targets = adapter_config.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    for target in targets:
        if any(t in target for t in _UNSUPPORTED_TARGETS):
            problems.append(f"target module {target!r} is not a supported vLLM LoRA weight")
    return VllmCheck(compatible=not problems, max_lora_rank=bucket, problems=tuple(problems))
