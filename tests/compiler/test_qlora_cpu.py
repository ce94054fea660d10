"""QLoRA on a CPU profile: the compiler accepts it with the CPU planner's numbers, and refuses
what cannot fit with a located error and a hint (issue 15, item 2)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.compiler.minimal import MINIMAL
from tests.compiler.test_memory import adapter, hardware, model, plan
from vilms.compiler.memory import GIB, estimate_training

# SmolLM2-360M's config.json: small enough to fine-tune on a laptop's CPU
SMOLLM2 = ("    architecture: {layers: 32, hidden_size: 960, heads: 15, kv_heads: 5, head_dim: 64,"
           " intermediate_size: 2560, vocab_size: 49152, tie_word_embeddings: true}\n")


def cpu_project(method: str, memory: str = "16GiB", training: str = "{batch_size: 1, seq_len: 512}") -> str:
    text = MINIMAL.replace("    method: lora", f"    method: {method}", 1).replace("    hardware: gpu1\n", "    hardware: laptop\n")
    text = text.replace("{kind: cpu, memory: 16GiB", f"{{kind: cpu, memory: {memory}", 1)
    text = text.replace("    chat_template: chatml\n", "    chat_template: chatml\n" + SMOLLM2, 1)
    return text.replace("    lora: {r: 16}\n", f"    lora: {{r: 16}}\n    training: {training}\n", 1)


def build(tmp_path: Path, vilms, text: str, name: str):  # type: ignore[no-untyped-def]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "vilms.yaml").write_text(text, encoding="utf-8")
    return folder, vilms("build", "-f", "vilms.yaml", cwd=folder)


def test_qlora_on_a_cpu_profile_builds_with_the_cpu_planner(tmp_path: Path, vilms) -> None:  # type: ignore[no-untyped-def]
    folder, result = build(tmp_path, vilms, cpu_project("qlora"), "qlora")
    assert result.code == 0, result.err
    config = yaml.safe_load((folder / "generated" / "training" / "support-v1.yaml").read_text())
    assert config["method"] == "qlora" and config["quantization"]["load_in_4bit"] is True
    assert config["hardware"]["kind"] == "cpu"
    lora_folder, lora = build(tmp_path, vilms, cpu_project("lora"), "lora")
    assert lora.code == 0, lora.err
    lora_config = yaml.safe_load((lora_folder / "generated" / "training" / "support-v1.yaml").read_text())
    q, f = config["memory_estimate"], lora_config["memory_estimate"]
    # NF4 + double quant linears and fp32 embeddings against every weight in fp32
    assert q["weights_bytes"] < 0.5 * f["weights_bytes"]
    # QLoRA adds one layer's bf16 dequantisation copies to the same fp32 activations
    assert q["activations_bytes"] > f["activations_bytes"]
    assert q["total_bytes"] < f["total_bytes"]


def test_qlora_on_cpu_that_cannot_fit_is_a_located_error(tmp_path: Path, vilms) -> None:  # type: ignore[no-untyped-def]
    text = cpu_project("qlora", memory="2GiB", training="{batch_size: 8, seq_len: 2048}")
    folder, result = build(tmp_path, vilms, text, "small")
    assert result.code == 1
    assert "Traceback" not in result.err and "CUDA" not in result.err
    assert re.search(r"^vilms\.yaml:\d+:\d+: adapters\.support-v1\.hardware: training adapter 'support-v1' needs "
                     r"[\d.]+ GiB but hardware 'laptop' gives 1 GiB", result.err, re.M), result.err
    assert "hint: lower training.batch_size or training.seq_len" in result.err
    assert "fp32, checkpointing" in result.err  # the table says how the CPU activations were counted
    assert not (folder / "generated").exists()


def test_cpu_qlora_estimate_is_nf4_weights_and_fp32_activations() -> None:
    smol = {"layers": 32, "hidden_size": 960, "heads": 15, "kv_heads": 5, "head_dim": 64,
            "intermediate_size": 2560, "vocab_size": 49152, "tie_word_embeddings": True}
    laptop, gpu = hardware("laptop", "cpu", memory=16 * GIB), hardware("box", "gpu")
    m = model("m", smol)
    on_cpu = adapter(method="qlora", hw="laptop", batch_size=1, seq_len=512)
    on_gpu = adapter(method="qlora", hw="box", batch_size=1, seq_len=512)
    cpu = estimate_training(plan([m], [laptop, gpu], [on_cpu, on_gpu]), on_cpu)
    cuda = estimate_training(plan([m], [laptop, gpu], [on_cpu, on_gpu]), on_gpu)
    assert cpu.weights == cuda.weights  # NF4 on both; the rest fp32 (prepare_model_for_kbit_training)
    assert cpu.activations > 2 * cuda.activations  # fp32 and glibc's heap against bf16
    assert "fp32" in cpu.details["activations"] and "trainer process" in cpu.details["runtime"]
    assert cpu.fits
