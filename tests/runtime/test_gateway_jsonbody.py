"""The JSON body limits: nesting depth checked on the bytes, exactly, whatever the strings hold."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from vilms.runtime.gateway.apierrors import ApiError
from vilms.runtime.gateway.jsonbody import MAX_JSON_DEPTH, parse_json, too_deep


def depth(value: object) -> int:
    """The reference: containers on the longest path, the value itself included."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


TRICKY = ['[', ']', '{', '}', '"', '\\', '\\"', '"]', '[[[', '\\\\', '\\\\"', '', 'x"y', '}}]]', 'é[', '\u2028',
          '\\u005b', '\n', '"[', '\\]']


def random_json(rng: random.Random, budget: int) -> object:
    kind = rng.randrange(7)
    if budget <= 0 or kind < 2:
        return rng.choice([rng.choice(TRICKY) + rng.choice(TRICKY), rng.randint(-5, 10**6), 1.5e-3, None, True])
    if kind < 4:
        return [random_json(rng, budget - 1) for _ in range(rng.randrange(4))]
    return {rng.choice(TRICKY) + str(i): random_json(rng, budget - 1) for i in range(rng.randrange(4))}


def test_too_deep_matches_the_reference_on_random_json_with_hostile_strings():
    rng = random.Random(20261130)
    for _ in range(3000):
        value = random_json(rng, rng.randrange(12))
        for raw in (orjson.dumps(value), json.dumps(value, indent=rng.choice([None, 1])).encode(),
                    json.dumps(value, ensure_ascii=False).encode()):
            real = depth(value)
            for limit in (max(real - 1, 0), real, real + 1):
                assert too_deep(raw, limit) == (real > limit), (raw, real, limit)


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 254, 1023, 1024])
def test_bodies_past_the_limit_are_400_and_at_the_limit_pass(levels):
    def nested(n: int) -> bytes:  # n levels, the body included
        return b'{"a": ' * n + b"1" + b"}" * n

    assert parse_json(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    with pytest.raises(ApiError) as caught:
        parse_json(nested(levels))
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


def test_brackets_inside_strings_do_not_count():
    raw = orjson.dumps({"messages": [{"role": "user", "content": "[" * 5000 + "{" * 5000}]})
    assert parse_json(raw)["messages"][0]["content"].startswith("[[[")
