"""Apply an alias's defaults to a request: system prompt and sampling params (client wins)."""

from __future__ import annotations

from typing import Any

from vilms.compiler.contracts.routes import Route


def apply_defaults(body: dict[str, Any], alias: Route, kind: str) -> None:
    """Mutate ``body``: fill params the client did not send; prepend the alias's system prompt
    to a chat that has no system message. ``kind`` is chat, completions or embeddings."""
    if kind == "embeddings":
        return
    for key, value in alias.params.items():
        if key not in body:
            body[key] = list(value) if isinstance(value, tuple) else value
    if kind == "chat" and alias.system:
        messages = body.get("messages")
        if isinstance(messages, list) and not any(
            isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages
        ):
            body["messages"] = [{"role": "system", "content": alias.system}, *messages]
