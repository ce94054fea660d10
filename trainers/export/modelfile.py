"""An Ollama Modelfile for the exported GGUF, from the chat template used in training.

Written with the compiler's Modelfile writer (Ollama's canonical quoting) and checked
with its parser, so a value Ollama cannot represent is refused instead of written.
"""

from __future__ import annotations

from vilms.compiler.chat_templates import ChatTemplate
from vilms.compiler.errors import ActionError
from vilms.compiler.modelfile_syntax import Command, ModelfileSyntaxError, parse, render


def render_modelfile(
    template: ChatTemplate,
    model_file: str = "./model.gguf",
    num_ctx: int | None = None,
    adapter_file: str | None = None,
    system: str | None = None,
) -> str:
    commands = [Command("model", model_file)]
    if adapter_file:
        commands.append(Command("adapter", adapter_file))
    commands.append(Command("template", template.ollama))
    if system:
        commands.append(Command("system", system))
    commands.extend(Command("stop", stop) for stop in template.stop)
    if num_ctx:
        commands.append(Command("num_ctx", str(num_ctx)))
    text = render(commands)
    try:
        same = parse(text) == commands
    except ModelfileSyntaxError:
        same = False
    if not same:
        raise ActionError("the Modelfile cannot represent these values (Ollama's quoting has no escapes)",
                          hint="remove triple quotes, carriage returns and control characters from the system prompt")
    return text
