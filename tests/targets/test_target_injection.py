"""Injection corpus: hostile values in names, system prompts, stop strings, paths and hostnames either
round-trip literally through every artefact they reach (routes.yaml, Modelfile, compose after the real
binary's interpolation, Helm-rendered manifests, training config) or are rejected at validate time
with a located error."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.validators import (
    compose_config_errors,
    compose_resolved,
    compose_schema_errors,
    helm_render,
    kube_validate,
    load_yaml,
    manifests,
    modelfile_roundtrip,
)
from vilms.compiler.errors import InvalidInputError
from vilms.compiler.modelfile_syntax import parse, representable
from vilms.compiler.pipeline import compile_files, diagnostics

CORPUS = [
    'double"quote', "single'quote", "'", '""', '"quoted"', '"', "line\nbreak", "cr\rreturn", "crlf\r\nline",
    "trailing newline\n", "${HOME}", "${VILMS_API_KEYS:?boom}", "$(reboot)", "$$ double dollar", "`id`",
    "{{ .System }}", "}}{{", '{{- fail "x" -}}', '"""triple"""', '"""', 'multi\nline with """ inside',
    ";rm -rf /", "a && b", "a | b", "back\\slash", "\\n literal backslash-n", "nul\x00byte", "rtl\u202eoverride",
    "x" * 5000, "  leading and trailing  ", "\ttab-led", "key: value", "- item", "*alias", "&anchor x",
    '!!python/object/apply:os.system ["id"]', "%TAG ! tag:", "---\nnext: doc", "...", "# comment",
    "<|im_end|>", "line\u2028separator", "emoji \U0001f680 ünïcödé", 'say "hi"\nthen', "@at %percent",
    "../../../etc/passwd", "/abs/path", "",
]
assert len(CORPUS) >= 30

FIELDS = ("alias-name", "model-name", "adapter-name", "system-ollama", "system-vllm", "stop-ollama",
          "stop-vllm", "dataset-path", "hostname", "regression-prompt", "secret-ref", "release", "gpu-type")

OLLAMA_BASE = {
    "apiVersion": "vilms/v1", "project": "inj",
    "hardware": {"orin": {"kind": "jetson", "memory": "16GiB", "jetpack": "6.2"}},
    "models": {"m": {"source": "hf:meta-llama/Llama-3.2-1B-Instruct", "ollama": "llama3.2:1b", "family": "llama", "context": 4096, "chat_template": "llama3"}},
    "datasets": {"d": {"path": "data/d.jsonl", "format": "chat"}},
    "adapters": {"a": {"base": "m", "dataset": "d", "method": "lora", "lora": {"r": 8}, "hardware": "orin",
                       "release": "a-20261101T091500Z-abcdef",
                       "gate": {"regression": [{"prompt": "hello", "expect_substring": "hi"}]}}},
    "aliases": {"chat": "m", "bot": {"model": "m", "adapter": "a", "system": "Be nice.",
                                     "params": {"stop": ["END"]}, "fallbacks": ["chat"]}},
    "deployments": {"edge": {"hardware": "orin", "target": "compose", "engine": "ollama"}},
    "gateway": {"api_keys": "env:INJ_KEYS"},
}
VLLM_BASE = {
    **copy.deepcopy(OLLAMA_BASE),
    "hardware": {"gpu": {"kind": "gpu", "gpus": 1, "gpu_memory": "80GiB", "memory": "256GiB"}},
    "models": {"m": {"source": "hf:org/model", "family": "llama", "context": 4096, "chat_template": "llama3"}},
    "deployments": {
        "box": {"hardware": "gpu", "target": "compose", "engine": "vllm"},
        "k8s": {"hardware": "gpu", "target": "helm", "engine": "vllm", "ingress": {"host": "llm.example.com"}},
    },
}
VLLM_BASE["adapters"]["a"]["hardware"] = "gpu"

# field → (base, where the value goes, diagnostic path prefix when rejected)
PLACEMENT = {
    "alias-name": (OLLAMA_BASE, "aliases"), "model-name": (OLLAMA_BASE, "models"),
    "adapter-name": (OLLAMA_BASE, "adapters"), "system-ollama": (OLLAMA_BASE, "aliases.bot.system"),
    "system-vllm": (VLLM_BASE, "aliases.bot.system"), "stop-ollama": (OLLAMA_BASE, "aliases.bot.params.stop"),
    "stop-vllm": (VLLM_BASE, "aliases.bot.params.stop"), "dataset-path": (VLLM_BASE, "datasets.d.path"),
    "hostname": (VLLM_BASE, "deployments.k8s.ingress.host"), "regression-prompt": (VLLM_BASE, "adapters.a.gate"),
    "secret-ref": (VLLM_BASE, "gateway.api_keys"), "release": (OLLAMA_BASE, "adapters.a.release"),
    "gpu-type": (VLLM_BASE, "hardware.gpu.gpu_type"),
}


def _rename(mapping: dict, old: str, new: str) -> dict:
    return {(new if k == old else k): v for k, v in mapping.items()}


def project(field: str, value: str) -> dict:
    base, _ = PLACEMENT[field]
    data = copy.deepcopy(base)
    bot = data["aliases"]["bot"]
    if field == "alias-name":
        data["aliases"] = _rename(data["aliases"], "bot", value)
    elif field == "model-name":
        data["models"] = _rename(data["models"], "m", value)
        data["adapters"]["a"]["base"] = value
        data["aliases"]["chat"] = value
        bot["model"] = value
    elif field == "adapter-name":
        data["adapters"] = _rename(data["adapters"], "a", value)
        bot["adapter"] = value
    elif field.startswith("system"):
        bot["system"] = value
    elif field.startswith("stop"):
        bot["params"]["stop"] = ["END", value]
    elif field == "dataset-path":
        data["datasets"]["d"]["path"] = value + ".jsonl"
    elif field == "hostname":
        data["deployments"]["k8s"]["ingress"]["host"] = value
    elif field == "regression-prompt":
        data["adapters"]["a"]["gate"]["regression"][0]["prompt"] = value
    elif field == "secret-ref":
        data["gateway"]["api_keys"] = "env:" + value
    elif field == "release":
        data["adapters"]["a"]["release"] = value
    elif field == "gpu-type":
        data["hardware"]["gpu"]["gpu_type"] = value
    return data


def _write(tmp_path: Path, data: dict) -> Path:
    file = tmp_path / "vilms.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    file.write_text(yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=10**9), encoding="utf-8")
    assert load_yaml(file.read_text(encoding="utf-8")) == data  # the input itself says what we mean
    return file


_COMPOSE_VERDICTS: dict[bytes, list[str]] = {}


def _compose_verdict(path: Path, blob: bytes) -> list[str]:
    """The real binary's and the schema's verdict on a compose file (cached by content: most
    corpus values never reach compose, so the file is the same for many cases)."""
    if blob not in _COMPOSE_VERDICTS:
        problems = compose_config_errors(path) + compose_schema_errors(load_yaml(blob))
        if not problems:
            assert "gateway" in compose_resolved(path)["services"]
        _COMPOSE_VERDICTS[blob] = problems
    return _COMPOSE_VERDICTS[blob]


def _alias_key(field: str, value: str) -> str:
    return value if field == "alias-name" else "bot"


CASES = [(f, v) for f in FIELDS for v in CORPUS]
IDS = [f"{f}-{i:02d}" for f in FIELDS for i in range(len(CORPUS))]


@pytest.mark.parametrize(("field", "value"), CASES, ids=IDS)
def test_hostile_value_round_trips_or_is_rejected_with_a_location(field, value, tmp_path):
    data = project(field, value)
    file = _write(tmp_path, data)
    found = diagnostics(file)
    if found:
        prefix = PLACEMENT[field][1]
        located = [d for d in found if d.line > 0 and d.column > 0]
        assert located == found, [d.render() for d in found]
        assert any(d.path.startswith(prefix.split(".")[0]) for d in found), [d.render() for d in found]
        # the gateway, Helm and the trainer carry any string: only the schema's length limits reject there
        if field == "system-vllm":
            assert len(value) > 20000, [d.render() for d in found]
        if field == "stop-vllm":
            assert not 1 <= len(value) <= 64, [d.render() for d in found]
        if field == "regression-prompt":
            assert value == "", [d.render() for d in found]
        if field == "system-ollama":
            assert not representable("system", value), "a representable system prompt must be accepted"
        return

    try:
        _doc, _plan, files = compile_files(file)
    except InvalidInputError as exc:  # pragma: no cover - validate and build must agree
        pytest.fail(f"validate accepted but build rejected: {exc.render()}")
    alias = _alias_key(field, value)
    for rel, blob in files.items():
        if rel.endswith("routes.yaml"):
            routes = load_yaml(blob)
            if field.startswith("system"):
                assert routes["aliases"][alias]["system"] == value
            if field.startswith("stop"):
                assert routes["aliases"][alias]["params"]["stop"] == ["END", value]
        if rel.endswith(".Modelfile"):
            text = blob.decode("utf-8")
            assert modelfile_roundtrip(text) == []
            commands = parse(text)
            if field == "system-ollama" and rel.endswith("/bot.Modelfile"):
                assert [c.args for c in commands if c.name == "system"] == [value]
            if field == "stop-ollama" and rel.endswith("/bot.Modelfile"):
                assert value in [c.args for c in commands if c.name == "stop"]
        if rel.startswith("training/") and field == "regression-prompt":
            assert load_yaml(blob)["gate"]["regression"][0]["prompt"] == value
        if rel.startswith("training/") and field == "dataset-path":
            assert load_yaml(blob)["dataset"]["path"] == value + ".jsonl"
    tree = tmp_path / "generated"
    for rel, blob in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(blob)
    for rel in files:
        if rel.endswith("docker-compose.yaml"):
            assert _compose_verdict(tree / rel, files[rel]) == []
        if rel.endswith("helm/values.yaml"):
            chart = (tree / rel).parent
            values = load_yaml(files[rel])
            docs = manifests(helm_render(chart, values))  # values.schema.json enforced; lint is covered per chart
            assert kube_validate(docs, versions=("1.35",)) == []
            cm = next(d for d in docs if d["kind"] == "ConfigMap" and "routes.yaml" in d.get("data", {}))
            routes = load_yaml(cm["data"]["routes.yaml"])
            assert routes == load_yaml(files[rel.replace("helm/values.yaml", "gateway/routes.yaml")])
            if field.startswith("system"):
                assert routes["aliases"][alias]["system"] == value
            if field.startswith("stop"):
                assert routes["aliases"][alias]["params"]["stop"] == ["END", value]


def test_representable_values_are_accepted_for_ollama(tmp_path):
    """The validator is not a blanket ban: every system prompt Ollama can carry is accepted."""
    accepted = [v for v in CORPUS if representable("system", v) and len(v) <= 20000]
    assert len(accepted) >= 20
    for i, value in enumerate(accepted):
        folder = tmp_path / str(i)
        folder.mkdir()
        assert diagnostics(_write(folder, project("system-ollama", value))) == []


def test_cli_reports_the_location_and_exits_1(tmp_path):
    file = _write(tmp_path, project("system-ollama", "cr\rreturn"))
    text = file.read_text()
    result = subprocess.run([sys.executable, "-m", "vilms", "validate", "-f", str(file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "system:" in l)
    assert f"vilms.yaml:{line}:" in result.stderr + result.stdout
