"""``generated/<deployment>/ollama/<name>.Modelfile``: one per served model, one per adapter alias.

Ollama keeps one ADAPTER per model, so each released adapter alias becomes a derived
model (FROM the base) with its own Modelfile; ``num_ctx`` is always set because
Ollama's /v1 API ignores context size.
"""

from __future__ import annotations

from vilms.compiler import weights
from vilms.compiler.chat_templates import get_template
from vilms.compiler.facts import ollama
from vilms.compiler.modelfile_syntax import Command, parse
from vilms.compiler.plan import Deployment, Model, Plan
from vilms.compiler.render.jinja import render_text

# alias params → Ollama PARAMETER names
PARAM_NAMES = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
    "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "seed": "seed", "max_tokens": "num_predict",
}
ARTIFACTS_FROM_MODELFILE = "../../../artifacts"  # generated/<dep>/ollama/ → project root


def ollama_from(model: Model) -> str:
    source = weights.ollama_from(model.weights, model.quantization.get("ollama", ollama.DEFAULT_QUANT))
    assert source is not None, "validation guarantees Ollama-loadable weights"
    return source


def adapter_gguf(run_id: str) -> str:
    return f"{ARTIFACTS_FROM_MODELFILE}/{run_id}/gguf/adapter.gguf"


def _stops(model: Model, extra: tuple[str, ...]) -> list[str]:
    """A derived model's ``stop`` list: Ollama replaces (not extends) the base model's list when a
    Modelfile sets ``stop``, so the chat template's own stop tokens come first, then the alias's."""
    fmt = get_template(model.chat_template or "")
    out: list[str] = []
    for stop in (*(fmt.stop if fmt else ()), *extra):
        if stop not in out:
            out.append(stop)
    return out


def _number(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def modelfiles(plan: Plan, dep: Deployment) -> dict[str, str]:
    """File name → Modelfile text for one Ollama deployment."""
    out: dict[str, str] = {}
    for model_name in dep.models:
        model = plan.models[model_name]
        commands = [Command("model", ollama_from(model))]
        fmt = get_template(model.chat_template or "")
        if fmt:
            commands.append(Command("template", fmt.ollama))
        commands.append(Command("num_ctx", str(dep.context_of(model_name))))
        if fmt:
            commands.extend(Command("stop", s) for s in fmt.stop)
        out[f"{model_name}.Modelfile"] = _text(plan, f"base model {model_name} ({model.source})", commands)
    for alias_name in dep.aliases:
        up = dep.upstreams[alias_name]
        if not up.adapter or not up.released:
            continue
        alias = plan.aliases[alias_name]
        adapter = plan.adapters[up.adapter]
        commands = [Command("model", up.model), Command("adapter", adapter_gguf(adapter.release or ""))]
        if alias.system is not None:
            commands.append(Command("system", alias.system))
        commands.append(Command("num_ctx", str(up.context)))
        for key, value in sorted(alias.params.items()):
            if key == "stop":
                commands.extend(Command("stop", s) for s in _stops(plan.models[up.model], value))
            else:
                commands.append(Command(PARAM_NAMES[key], _number(value)))
        out[f"{alias_name}.Modelfile"] = _text(plan, f"alias {alias_name}: {up.model} + adapter {up.adapter} (run {adapter.release})", commands)
    return out


def _text(plan: Plan, purpose: str, commands: list[Command]) -> str:
    text = render_text("ollama/Modelfile.j2", source=plan.source_name, purpose=purpose, commands=[str(c) for c in commands])
    if parse(text) != commands:
        raise AssertionError(f"Modelfile does not round-trip: {purpose}")
    return text
