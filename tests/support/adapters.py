"""A run's adapter folder as the trainer leaves it (small files), and the store spec the
artifact store tests use (vilms.yaml's ``artifact_store`` with ``endpoint: env:S3_ENDPOINT``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from vilms.compiler.contracts.training_config import ArtifactStoreSpec


def spec_of(bucket: str, prefix: str = "/vilms") -> ArtifactStoreSpec:
    return ArtifactStoreSpec(uri=f"s3://{bucket}{prefix}", endpoint=None, endpoint_env="S3_ENDPOINT", region="us-east-1",
                             access_key_id_env="AWS_ACCESS_KEY_ID", secret_access_key_env="AWS_SECRET_ACCESS_KEY")


def safetensors(tensors: dict[str, list[float]]) -> bytes:
    """A valid safetensors file of float32 vectors (the format: u64 header length, JSON header, data)."""
    header, data = {}, b""
    for name, values in sorted(tensors.items()):
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": [len(values)], "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def write_adapter(folder: Path) -> Path:
    """A PEFT LoRA adapter folder as the trainer leaves it in artifacts/<run>/adapter/ (small)."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "task_type": "CAUSAL_LM"}, indent=2))
    (folder / "adapter_model.safetensors").write_bytes(safetensors({
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": [0.25 * i for i in range(64)],
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": [0.0] * 64}))
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 8192}')
    (folder / "README.md").write_text("# support-v1\n")
    return folder
