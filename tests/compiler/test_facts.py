"""One home per fact: ports, container paths and engine defaults live in compiler/facts/ and
nowhere else in the Python sources (the tests may spell them out where they assert on output)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vilms.compiler.facts import llamacpp, ollama, vllm
from vilms.compiler.memory.serving import GGUF_BPW

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("cli", "compiler", "runtime", "trainers")
FACTS = REPO / "compiler" / "facts"
COPY = re.compile(
    r"\b(8000|8080|8101|11434)\b"  # ports
    r"|(?<![\w.])(/vilms/|/etc/vilms|/hf-cache|/model-cache|/ollama/models|/workspace\b)"  # container paths
    r"|[\"']/health[\"']|/healthz|/readyz"  # probe paths
    r"|[\"']q4_K_M[\"']|[\"']q4_k_m[\"'](?!\s*:)"  # default quantisations (not GGUF_BPW's keys)
    r"|\(1, 8, 16, 32, 64"  # vLLM's LoRA rank buckets
    r"|(?i:utili[sz]ation)\w*\s*=\s*0\.\d"  # vLLM's gpu-memory-utilization
)
# copies in modules other workers own, to be replaced by imports from compiler/facts there
TOLERATED = {
    "compiler/validate/engines.py": 'weights.ollama_from(model, "q4_K_M")',
}


def _copies() -> list[str]:
    found = []
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            if FACTS in path.parents:
                continue
            rel = path.relative_to(REPO).as_posix()
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if COPY.search(line) and not any(t in line for t in TOLERATED.get(rel, "").split("|") if t):
                    found.append(f"{rel}:{n}: {line.strip()}")
    return found


def test_facts_are_not_copied_into_the_sources():
    assert _copies() == []


def test_the_guard_sees_a_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    (tmp_path / "compiler").mkdir()
    (tmp_path / "compiler" / "x.py").write_text('PORT = 11434\nQ = "q4_K_M"\nBPW = {"q4_k_m": 4.85}\n')
    assert _copies() == ["compiler/x.py:1: PORT = 11434", 'compiler/x.py:2: Q = "q4_K_M"']


@pytest.mark.parametrize(("engine", "default"), [("ollama", ollama.DEFAULT_QUANT), ("llamacpp", llamacpp.DEFAULT_QUANT)])
def test_default_quantizations_are_values_vilms_yaml_accepts(engine, default):
    schema = json.loads((REPO / "compiler" / "schema" / "vilms-v1.schema.json").read_text(encoding="utf-8"))
    assert default in schema["$defs"]["model"]["properties"]["quantization"]["properties"][engine]["enum"]
    assert default.lower() in GGUF_BPW  # the memory planner can size it


def test_vllm_facts_match_the_flag_table():
    from tests.support.validators import VLLM_FLAGS_FILE

    flags = {f["dest"]: f for f in json.loads(VLLM_FLAGS_FILE.read_text(encoding="utf-8"))["flags"]}
    assert int(flags["port"]["default"]) == vllm.PORT
    assert tuple(int(c) for c in flags["max_lora_rank"]["choices"]) == vllm.MAX_LORA_RANKS
    assert 0 < vllm.JETSON_MEMORY_UTILIZATION < vllm.GPU_MEMORY_UTILIZATION <= 1


def test_ollama_pulls_a_gguf_repository_at_the_default_quantization():
    from vilms.compiler import weights

    model = {"source": "hf:org/m", "gguf": "hf:org/m-GGUF"}
    assert weights.ollama_from(model) == weights.ollama_from(model, ollama.DEFAULT_QUANT) == "hf.co/org/m-GGUF:Q4_K_M"


def test_gateway_defaults_named_in_the_schema_are_the_resolver_s():
    """The schema's descriptions quote defaults for editors; compiler/resolve.py holds them."""
    from vilms.compiler.resolve import GATEWAY_DEFAULTS

    schema = json.loads((REPO / "compiler" / "schema" / "vilms-v1.schema.json").read_text())
    quoted = {name: m.group(1) for name, spec in schema["$defs"]["gateway"]["properties"].items()
              if (m := re.search(r"\(default (\d[\w.]*)\)", spec.get("description", "")))}
    assert quoted.keys() >= {"first_byte_timeout", "request_timeout", "write_timeout", "max_response", "eject_after"}
    for name, text in quoted.items():
        default = GATEWAY_DEFAULTS[name]
        assert (float(text) == default) if isinstance(default, (int, float)) else (text == default), name
