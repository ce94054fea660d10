"""An Ollama Modelfile for the exported GGUF, from the chat template used in training.

Values are quoted with Ollama's canonical rule (``parser.Command.String``): a value with a
newline or a leading/trailing space is wrapped in triple quotes when it contains a double
quote, otherwise in double quotes; everything else is written bare. A value containing a
triple quote cannot be represented and is rejected.
"""

from __future__ import annotations

from vilms.compiler.errors import ActionError

from ..chat_templates import ChatTemplate


def quote(value: str) -> str:
    if '"""' in value:
        raise ActionError("a Modelfile value cannot contain three double quotes in a row")
    if "\n" in value or value != value.strip(" "):
        if '"' in value:
            return f'"""{value}"""'
        return f'"{value}"'
    return value


def render_modelfile(
    template: ChatTemplate,
    model_file: str = "./model.gguf",
    num_ctx: int | None = None,
    adapter_file: str | None = None,
    system: str | None = None,
) -> str:
    lines = [f"FROM {model_file}"]
    if adapter_file:
        lines.append(f"ADAPTER {adapter_file}")
    lines.append(f"TEMPLATE {quote(template.ollama)}")
    if system:
        lines.append(f"SYSTEM {quote(system)}")
    for stop in template.stop:
        lines.append(f"PARAMETER stop {quote(stop)}")
    if num_ctx:
        lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"
