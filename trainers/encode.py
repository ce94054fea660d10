"""Rows → token ids + labels, with the loss only on what the model should learn.

* chat: the chat template is applied to the whole conversation; labels cover only the
  assistant turns (content and end-of-turn marker). Each assistant span is found by
  rendering the conversation up to that turn with and without it, so any prefix-stable
  template works, including a tokenizer's own.
* completion: ``prompt + completion + eos``; labels cover the completion and eos.
* text: ``text + eos``; labels cover everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vilms.compiler.errors import ActionError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def render_chat(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    full = render_chat(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render_chat(tokenizer, messages[:index], add_generation_prompt=True)
        upto = render_chat(tokenizer, messages[: index + 1])
        if not full.startswith(upto) or not upto.startswith(before):
            raise ActionError(
                "the chat template is not prefix-stable, so assistant tokens cannot be located",
                hint="use one of the built-in templates (chatml, llama3, mistral, gemma, phi3)",
            )
        spans.append((len(before), len(upto)))
    return full, spans


def encode_row(tokenizer: Any, row: dict[str, Any], fmt: str, seq_len: int) -> Example:
    eos = tokenizer.eos_token or ""
    if fmt == "chat":
        text, spans = _assistant_spans(tokenizer, row["messages"])
    elif fmt == "completion":
        text = row["prompt"] + row["completion"] + eos
        spans = [(len(row["prompt"]), len(text))]
    else:
        text = row["text"] + eos
        spans = [(0, len(text))]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = []
    for token_id, (start, end) in zip(ids, enc["offset_mapping"], strict=True):
        inside = any(s <= start < e or (start == end and s < end <= e and start >= s) for s, e in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return Example(tuple(ids[:seq_len]), tuple(labels[:seq_len]))


def encode_rows(
    tokenizer: Any, rows: list[dict[str, Any]] | tuple[dict[str, Any], ...], fmt: str, seq_len: int
) -> list[Example]:
    examples = [encode_row(tokenizer, row, fmt, seq_len) for row in rows]
    return [ex for ex in examples if ex.trained_tokens > 0]
