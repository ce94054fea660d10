#!/usr/bin/env python3
"""What the gateway's JSON nesting limit costs per request body (``runtime/gateway/jsonbody.py``).

    python bench/json_depth.py

Times ``orjson.loads`` (what the gateway did before the limit) and the depth check that
``parse_json`` adds after it, on a 2 KB chat, a 2 KB chat with tools, and 8 MiB bodies: one
long string, 60k messages, token-id arrays. Prints the best of 7 runs in µs.
"""

from __future__ import annotations

import timeit

import orjson

from vilms.runtime.gateway.jsonbody import MAX_JSON_DEPTH, too_deep

MIB8 = 8 << 20


def bodies() -> dict[str, bytes]:
    msgs = [{"role": "system", "content": "You are a helpful assistant. " * 4}] + [
        {"role": "user" if i % 2 == 0 else "assistant",
         "content": "Tell me about the weather in Paris in spring, please. " * 3} for i in range(9)]
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}},
                                               "b": {"type": "integer"}}, "required": ["a"]}
    return {
        "chat 2 KB": orjson.dumps({"model": "chat", "messages": msgs, "max_tokens": 256, "temperature": 0.7}),
        "chat + 8 tools 2 KB": orjson.dumps({"model": "chat", "messages": msgs[:4], "tools": [
            {"type": "function", "function": {"name": f"f{i}", "parameters": schema}} for i in range(8)]}),
        "8 MiB, one string": orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "x" * MIB8}]}),
        "8 MiB, 60k messages": orjson.dumps({"model": "chat", "messages": [
            {"role": "user", "content": "hello there " * 10} for _ in range(MIB8 // 150)]}),
        "8 MiB, token arrays": orjson.dumps({"model": "embed", "input": [
            [i % 50000 for i in range(256)] for _ in range(MIB8 // 1400 * 3 // 2)]}),
    }


def best(fn, number: int) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def main() -> None:
    for name, raw in bodies().items():
        number = 20000 if len(raw) < 100_000 else 5
        loads = best(lambda raw=raw: orjson.loads(raw), number)
        added = best(lambda raw=raw: too_deep(raw, MAX_JSON_DEPTH), number)
        print(f"{name:22s} {len(raw) / 1024:6.0f} KiB  orjson.loads {loads:9.1f} µs  depth check +{added:8.1f} µs"
              f"  ({100 * added / loads:.0f} %)")


if __name__ == "__main__":
    main()
