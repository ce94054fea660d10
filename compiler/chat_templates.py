"""Chat templates: one definition per name, rendered three ways.

The same :class:`ChatTemplate` gives the Jinja template used in training (set on the
tokenizer and written into GGUF metadata), the Ollama Go ``TEMPLATE`` and the stop
tokens of every Modelfile (the compiler's and the exporter's), so what a model was
trained on is what it is served with. Data only: the compile path imports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    jinja: str
    ollama: str
    stop: tuple[str, ...]
    special_tokens: tuple[str, ...]


_CHATML_JINJA = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CHATML_OLLAMA = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
)

_LLAMA3_JINJA = (
    "{{ '<|begin_of_text|>' }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
_LLAMA3_OLLAMA = (
    "<|begin_of_text|>{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)

_MISTRAL_JINJA = (
    "{{ '<s>' }}"
    "{% set system = messages[0]['content'] + '\n\n' if messages and messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + '</s>' }}{% endif %}"
    "{% endfor %}"
)
_MISTRAL_OLLAMA = (
    '<s>{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}[INST] '
    "{{ if and (eq $i 1) $.System }}{{ $.System }}\n\n{{ end }}{{ $m.Content }} [/INST]"
    '{{- else if eq $m.Role "assistant" }}{{ $m.Content }}</s>{{- end }}{{- end }}'
)

_GEMMA_JINJA = (
    "{{ '<bos>' }}"
    "{% set system = messages[0]['content'] + '\n\n' if messages and messages[0]['role'] == 'system' else '' %}"
    "{% for message in messages if message['role'] != 'system' %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\n' + (system if loop.first else '') + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
_GEMMA_OLLAMA = (
    '<bos>{{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}<start_of_turn>user\n'
    "{{ if and (eq $i 1) $.System }}{{ $.System }}\n\n{{ end }}{{ $m.Content }}<end_of_turn>\n"
    '{{- else if eq $m.Role "assistant" }}<start_of_turn>model\n{{ $m.Content }}<end_of_turn>\n'
    "{{- end }}{{- end }}<start_of_turn>model\n"
)

_PHI3_JINJA = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
_PHI3_OLLAMA = "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n"

TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate(
        "chatml", _CHATML_JINJA, _CHATML_OLLAMA, ("<|im_end|>", "<|im_start|>"), ("<|im_start|>", "<|im_end|>")
    ),
    "llama3": ChatTemplate(
        "llama3",
        _LLAMA3_JINJA,
        _LLAMA3_OLLAMA,
        ("<|eot_id|>", "<|start_header_id|>"),
        ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    "mistral": ChatTemplate("mistral", _MISTRAL_JINJA, _MISTRAL_OLLAMA, ("</s>", "[INST]"), ("<s>", "</s>")),
    "gemma": ChatTemplate(
        "gemma",
        _GEMMA_JINJA,
        _GEMMA_OLLAMA,
        ("<end_of_turn>", "<start_of_turn>"),
        ("<bos>", "<start_of_turn>", "<end_of_turn>"),
    ),
    "phi3": ChatTemplate(
        "phi3",
        _PHI3_JINJA,
        _PHI3_OLLAMA,
        ("<|end|>", "<|user|>", "<|assistant|>"),
        ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
    ),
}


def get_template(name: str) -> ChatTemplate | None:
    """The built-in template called ``name``; ``None`` for ``tokenizer`` (use the tokenizer's own)."""
    return TEMPLATES.get(name)
