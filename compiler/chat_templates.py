"""Chat formats: the Ollama TEMPLATE (Go text/template) and stop tokens of each.

One table, so the Modelfile's TEMPLATE and ``stop`` always agree with the chat
template a model (and its adapters) were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatFormat:
    template: str
    stop: tuple[str, ...]


FORMATS: dict[str, ChatFormat] = {
    "chatml": ChatFormat(
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n",
        ("<|im_start|>", "<|im_end|>"),
    ),
    "llama3": ChatFormat(
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
        "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    ),
    "mistral": ChatFormat(
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }} [/INST]{{ .Response }}</s>",
        ("[INST]", "[/INST]", "</s>"),
    ),
    "gemma": ChatFormat(
        "<start_of_turn>user\n{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}<end_of_turn>\n"
        "<start_of_turn>model\n{{ .Response }}<end_of_turn>\n",
        ("<start_of_turn>", "<end_of_turn>"),
    ),
    "phi3": ChatFormat(
        "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
        "{{ if .Prompt }}<|user|>\n{{ .Prompt }}<|end|>\n{{ end }}"
        "<|assistant|>\n{{ .Response }}<|end|>\n",
        ("<|end|>", "<|user|>", "<|assistant|>"),
    ),
}
