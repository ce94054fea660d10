"""Hypothesis strategies for vilms.yaml: coherent projects (every reference resolves) and hostile
values to plant in them. Documents drawn straight from the vilms/v1 schema come from
hypothesis-jsonschema in the tests."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

NAME = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z")
# engine → hardware kinds it runs on, and the targets it deploys to
ENGINES = {"llamacpp": (("cpu", "gpu"), ("local",)), "ollama": (("cpu", "gpu", "jetson"), ("compose",)),
           "vllm": (("gpu", "jetson"), ("compose", "helm"))}


@st.composite
def hardware(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "memory": f"{draw(st.sampled_from([8, 16, 64, 256]))}GiB"}
    if kind == "gpu":
        out |= {"gpus": draw(st.integers(1, 8)), "gpu_memory": f"{draw(st.sampled_from([24, 48, 80]))}GiB"}
    if kind == "jetson":
        out["jetpack"] = "6.2"
    if kind == "cpu" and draw(st.booleans()):
        out["cpus"] = draw(st.integers(1, 64))
    return out


@st.composite
def model(draw: st.DrawFn) -> dict[str, Any]:
    repo = draw(st.sampled_from(["Qwen/Qwen2.5-0.5B-Instruct", "meta-llama/Llama-3.2-1B-Instruct", "org/m"]))
    out: dict[str, Any] = {
        "source": f"hf:{repo}",
        "gguf": f"hf:{repo}-GGUF",
        "family": draw(st.sampled_from(["llama", "qwen2", "mistral", "smollm"])),
        "params": draw(st.sampled_from(["135M", "0.5B", "1.5B", "3B", "8B"])),
        "context": draw(st.sampled_from([2048, 4096, 8192])),
    }
    if draw(st.booleans()):
        out["chat_template"] = draw(st.sampled_from(["chatml", "llama3", "mistral"]))
    return out


PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                    max_size=40)


@st.composite
def project(draw: st.DrawFn) -> dict[str, Any]:
    """A vilms.yaml whose references all resolve, each engine on hardware it runs on; it may still
    not fit its hardware's memory (a located error)."""
    model_names = draw(st.lists(NAME, min_size=1, max_size=3, unique=True))
    kinds = ("cpu", "gpu", "jetson")
    doc: dict[str, Any] = {
        "apiVersion": "vilms/v1",
        "project": draw(NAME),
        "hardware": {f"{kind}-box": draw(hardware(kind)) for kind in kinds},
        "models": {n: draw(model()) for n in model_names},
        "datasets": {"data": {"path": "data/train.jsonl", "format": draw(st.sampled_from(["chat", "completion", "text"]))}},
    }
    adapters = {}
    for i in range(draw(st.integers(0, 2))):
        method = draw(st.sampled_from(["lora", "qlora"]))
        adapter: dict[str, Any] = {
            "base": draw(st.sampled_from(model_names)), "dataset": "data", "method": method,
            "lora": {"r": draw(st.sampled_from([4, 8, 16, 64]))},
            "training": {"epochs": draw(st.integers(1, 3)), "seq_len": draw(st.sampled_from([128, 512, 2048])),
                         "batch_size": draw(st.integers(1, 4)), "learning_rate": draw(st.sampled_from([1e-4, 2e-4]))},
        }
        if method == "qlora" or draw(st.booleans()):
            adapter["hardware"] = "gpu-box" if method == "qlora" else draw(st.sampled_from([f"{k}-box" for k in kinds]))
        if draw(st.booleans()):
            adapter["release"] = f"adapter-{i}-20261123T152000Z-1a2b3c"
        adapters[f"adapter-{i}"] = adapter
    if adapters:
        doc["adapters"] = adapters
    aliases: dict[str, Any] = {f"m-{m}": m for m in model_names}
    for name, adapter in adapters.items():
        aliases[f"a-{name}"] = {"model": adapter["base"], "adapter": name, "fallbacks": [f"m-{adapter['base']}"],
                                "params": {"temperature": draw(st.sampled_from([0.0, 0.2, 1.5]))}}
        if draw(st.booleans()):
            aliases[f"a-{name}"]["system"] = draw(PRINTABLE)
    doc["aliases"] = aliases
    deployments = {}
    for i in range(draw(st.integers(1, 3))):
        engine = draw(st.sampled_from(sorted(ENGINES)))
        hw_kinds, targets = ENGINES[engine]
        target = draw(st.sampled_from(targets))
        deployments[f"d{i}"] = {"hardware": f"{draw(st.sampled_from(hw_kinds))}-box", "target": target, "engine": engine}
        if target != "local" and draw(st.booleans()):
            deployments[f"d{i}"]["replicas"] = draw(st.integers(1, 4))
    doc["deployments"] = deployments
    if draw(st.booleans()):
        doc["gateway"] = {"api_keys": "env:VILMS_API_KEYS", "retries": draw(st.integers(0, 5))}
    return doc


HOSTILE = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 10**30, -(10**30), 10**19, 4096.0, 2.0, -1, 0, 1e308, -0.0,
                     "", " ", "\u0085", "\u2028", "\u202e", "\x00", "x" * 5000, "env:", "file:/etc/passwd",
                     "file:../../x.gguf", "hf:org/repo@../../x", "../../etc", "training", "manifest.json", True,
                     None, [], {}, [[[[[[[[[[[]]]]]]]]]]], {"a": {"b": {"c": {"d": None}}}}]),
    st.text(max_size=30),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``value`` (mapping keys and list indices)."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += paths(child, prefix + (index,))
    return out


def planted(doc: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with ``value`` at ``path`` (the root itself is never replaced)."""
    import copy

    out = copy.deepcopy(doc)
    target: Any = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out
