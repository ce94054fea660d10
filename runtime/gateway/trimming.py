"""Fit a request to what the alias's backend serves on this hardware profile.

* ``max_tokens`` / ``max_completion_tokens`` are clamped to the alias's
  ``max_output_tokens`` and to what is left of the context after the prompt; when the
  client sends neither, ``max_tokens`` is set to that clamp (a default, not reported).
* Prompts longer than the context are rejected (400 ``context_length_exceeded``) or,
  with ``on_overlong_prompt: truncate``, shortened: the oldest non-system chat messages
  are dropped first, then the remaining text is cut keeping its end.

Token counts are **estimates**, cheap and deliberately pessimistic for English:
``ceil(utf8_bytes / 3)`` per text, plus 4 tokens per chat message and 3 for the reply
priming, and ``IMAGE_TOKENS`` per image part. English averages ~4 characters per token,
so the estimate runs ~30 % high there; CJK text (3 UTF-8 bytes, ~1 token per
character) comes out about right. It is not a tokenizer: a prompt the estimate rejects
may in fact have fitted.
"""

from __future__ import annotations

from typing import Any

from vilms.compiler.contracts.routes import Route

from .apierrors import ApiError

MESSAGE_TOKENS = 4
PRIMING_TOKENS = 3
IMAGE_TOKENS = 1024
MIN_OUTPUT_TOKENS = 1


def estimate_text(text: str) -> int:
    return -(-len(text.encode("utf-8", "surrogatepass")) // 3)


def estimate_content(content: Any) -> int:
    if isinstance(content, str):
        return estimate_text(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "text" and isinstance(part.get("text"), str):
                    total += estimate_text(part["text"])
                elif part.get("type") in ("image_url", "input_image", "image"):
                    total += IMAGE_TOKENS
            elif isinstance(part, str):
                total += estimate_text(part)
        return total
    return 0


def estimate_messages(messages: list) -> int:
    total = PRIMING_TOKENS
    for message in messages:
        if isinstance(message, dict):
            total += MESSAGE_TOKENS + estimate_content(message.get("content"))
            if message.get("tool_calls"):
                total += estimate_text(repr(message["tool_calls"]))
    return total


def estimate_prompt(prompt: Any) -> int:
    if isinstance(prompt, str):
        return estimate_text(prompt)
    if isinstance(prompt, list):
        if all(isinstance(p, int) for p in prompt):
            return len(prompt)
        return max((estimate_prompt(p) for p in prompt), default=0)
    return 0


def estimate_request(kind: str, body: dict[str, Any]) -> int:
    """The gateway's estimate of a request's prompt tokens (what a key's tpm is charged when
    the engine reports no usage)."""
    if kind == "chat":
        messages = body.get("messages")
        return estimate_messages(messages) if isinstance(messages, list) else 0
    return estimate_prompt(body.get("input" if kind == "embeddings" else "prompt"))


def fit_request(body: dict[str, Any], alias: Route, kind: str, mode: str) -> list[str]:
    """Mutate ``body`` to fit ``alias``; return notes for ``x-vilms-trimmed`` (empty: unchanged)."""
    notes: list[str] = []
    if kind == "embeddings":
        _fit_embedding_input(body, alias, mode, notes)
        return notes
    if kind == "chat":
        prompt_tokens = _fit_messages(body, alias, mode, notes)
    else:
        prompt_tokens = _fit_completion_prompt(body, alias, mode, notes)
    _clamp_output(body, alias, prompt_tokens, notes)
    return notes


def _budget(alias: Route) -> int:
    return alias.context - MIN_OUTPUT_TOKENS


def _overlong(alias: Route, estimate: int, param: str) -> ApiError:
    return ApiError(
        400,
        f"This alias serves a context of {alias.context} tokens; the prompt is about {estimate} tokens "
        f"(estimated) and leaves no room for output. Shorten the prompt or use an alias with a longer context.",
        code="context_length_exceeded", param=param,
    )


def _fit_messages(body: dict[str, Any], alias: Route, mode: str, notes: list[str]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list.", param="messages")
    estimate = estimate_messages(messages)
    budget = _budget(alias)
    if estimate <= budget:
        return estimate
    if mode != "truncate":
        raise _overlong(alias, estimate, "messages")
    kept = list(messages)
    dropped = 0
    # Drop the oldest non-system messages, never the last one.
    index = 0
    while estimate > budget and index < len(kept) - 1:
        message = kept[index]
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            index += 1
            continue
        kept.pop(index)
        dropped += 1
        estimate = estimate_messages(kept)
    if dropped:
        notes.append(f"messages_dropped={dropped}")
    if estimate > budget:
        cut = _cut_last_text(kept, estimate - budget)
        if cut is None:
            raise _overlong(alias, estimate, "messages")
        notes.append(f"prompt_cut_chars={cut}")
        estimate = estimate_messages(kept)
        if estimate > budget:
            raise _overlong(alias, estimate, "messages")
    body["messages"] = kept
    return estimate


def _cut_last_text(messages: list, excess_tokens: int) -> int | None:
    """Cut the start of the longest string content, keeping its end; return chars removed."""
    target = None
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            if target is None or len(message["content"]) > len(target["content"]):
                target = message
    if target is None:
        return None
    text = target["content"]
    keep_tokens = estimate_text(text) - excess_tokens
    if keep_tokens <= 0:
        return None
    new = _tail(text, keep_tokens)
    target_index = messages.index(target)
    messages[target_index] = {**target, "content": new}
    return len(text) - len(new)


def _tail(text: str, tokens: int) -> str:
    """The longest suffix of ``text`` whose estimate is at most ``tokens``."""
    limit = tokens * 3
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[len(data) - limit:].decode("utf-8", "ignore")


def _head(text: str, tokens: int) -> str:
    limit = tokens * 3
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _fit_completion_prompt(body: dict[str, Any], alias: Route, mode: str, notes: list[str]) -> int:
    prompt = body.get("prompt")
    if prompt is None or prompt == "" or prompt == []:
        raise ApiError(400, "'prompt' is required.", param="prompt")
    estimate = estimate_prompt(prompt)
    budget = _budget(alias)
    if estimate <= budget:
        return estimate
    if mode != "truncate" or not isinstance(prompt, str):
        raise _overlong(alias, estimate, "prompt")
    new = _tail(prompt, budget)
    notes.append(f"prompt_cut_chars={len(prompt) - len(new)}")
    body["prompt"] = new
    return estimate_prompt(new)


def _fit_embedding_input(body: dict[str, Any], alias: Route, mode: str, notes: list[str]) -> None:
    value = body.get("input")
    if value is None or value == "" or value == []:
        raise ApiError(400, "'input' is required.", param="input")
    items = value if isinstance(value, list) and not all(isinstance(v, int) for v in value) else [value]
    over = [i for i, item in enumerate(items) if estimate_prompt(item) > alias.context]
    if not over:
        return
    if mode != "truncate" or not all(isinstance(items[i], str) for i in over):
        raise ApiError(400, f"Input {over[0]} is about {estimate_prompt(items[over[0]])} tokens (estimated); "
                            f"this alias embeds at most {alias.context}.",
                       code="context_length_exceeded", param="input")
    cut = [(_head(item, alias.context) if i in over else item) for i, item in enumerate(items)]
    body["input"] = cut if isinstance(value, list) else cut[0]
    notes.append(f"inputs_cut={len(over)}")


def _clamp_output(body: dict[str, Any], alias: Route, prompt_tokens: int, notes: list[str]) -> None:
    limit = max(MIN_OUTPUT_TOKENS, min(alias.max_output_tokens, alias.context - prompt_tokens))
    present = False
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ApiError(400, f"'{key}' must be a positive integer.", param=key)
        present = True
        if value > limit:
            body[key] = limit
            notes.append(f"{key}={value}->{limit}")
    if not present:
        body["max_tokens"] = limit
