"""Which request fields reach a llama.cpp server (llama-server, llama-cpp-python's server).

A llama.cpp server takes engine-specific fields the OpenAI API does not have, and some of
them crash it: a malformed GBNF ``grammar`` (``root ::= (``) or a huge repetition count
(``[a-z ]{20000}``) kills the process with SIGSEGV, and the gateway would pass the same
request on to the fallback. The gateway forwards only fields it vouches for:

* OpenAI fields (:data:`CHAT_FIELDS`, :data:`COMPLETION_FIELDS`, :data:`EMBEDDING_FIELDS`)
  and the sampling fields an alias's ``params`` may set (``top_k``, ``min_p``,
  ``repeat_penalty``) pass, some of them checked (below);
* grammar fields (:data:`REFUSED`: ``grammar``, ``json_schema``) are refused with a 400
  ``unsupported_parameter``: the gateway cannot tell a grammar that crashes the engine from
  one that does not without running it;
* any other field is dropped (named in ``x-vilms-trimmed: dropped=a+b``).

Checked: ``response_format`` is ``text``, ``json_object`` or ``json_schema`` whose schema is
at most :data:`MAX_SCHEMA_BYTES` with no count (``minLength``, ``maxItems`` ...) above
:data:`MAX_SCHEMA_COUNT` (llama.cpp turns a schema into a grammar, counts into repetitions);
``logit_bias`` maps at most :data:`MAX_LOGIT_BIAS` token ids to numbers in [-100, 100];
``stop`` holds at most :data:`MAX_STOP` strings.
"""

from __future__ import annotations

from typing import Any

import orjson

from .apierrors import ApiError

_COMMON = frozenset(("model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
                     "top_p", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "seed", "n", "user",
                     "logprobs", "top_k", "min_p", "repeat_penalty"))
CHAT_FIELDS = _COMMON | {"messages", "response_format", "tools", "tool_choice", "top_logprobs"}
COMPLETION_FIELDS = _COMMON | {"prompt", "suffix", "echo", "best_of"}
EMBEDDING_FIELDS = frozenset(("model", "input", "user", "encoding_format", "dimensions"))
FIELDS = {"chat": CHAT_FIELDS, "completions": COMPLETION_FIELDS, "embeddings": EMBEDDING_FIELDS}
REFUSED = frozenset(("grammar", "json_schema"))
MAX_SCHEMA_BYTES = 16 * 1024
MAX_SCHEMA_COUNT = 256  # minLength, maxLength, minItems, maxItems, minProperties, maxProperties
MAX_LOGIT_BIAS = 300  # OpenAI's own limit
MAX_STOP = 4  # OpenAI's own limit
_COUNTS = frozenset(("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
                     "minContains", "maxContains"))


def vouch(body: dict[str, Any], kind: str) -> list[str]:
    """Check and trim ``body`` (mutated) for a llama.cpp server; return notes for ``x-vilms-trimmed``."""
    refused = sorted(REFUSED.intersection(body))
    if refused:
        raise ApiError(400, f"'{refused[0]}' is not accepted: the gateway cannot check that a grammar is safe for the "
                       "engine. Use response_format json_object or json_schema instead.", param=refused[0],
                       code="unsupported_parameter")
    allowed = FIELDS[kind]
    dropped = sorted(key for key in body if key not in allowed)
    for key in dropped:
        del body[key]
    if "response_format" in body:
        _response_format(body["response_format"])
    if "logit_bias" in body:
        _logit_bias(body["logit_bias"])
    stop = body.get("stop")
    if isinstance(stop, list) and len(stop) > MAX_STOP:
        raise ApiError(400, f"'stop' holds at most {MAX_STOP} strings.", param="stop", code="invalid_value")
    return [f"dropped={'+'.join(dropped)}"] if dropped else []


def _response_format(value: Any) -> None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return
    if kind == "json_object":  # llama-cpp-python also takes a "schema" here
        if "schema" in value:
            _schema(value["schema"])
        return
    if kind == "json_schema":
        spec = value.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            _schema(spec["schema"])
            return
    raise ApiError(400, "'response_format' must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                   "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}.",
                   param="response_format", code="invalid_value")


def _schema(schema: Any) -> None:
    if not isinstance(schema, dict):
        raise ApiError(400, "The JSON schema of 'response_format' must be an object.", param="response_format",
                       code="invalid_value")
    if len(orjson.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise ApiError(400, f"The JSON schema of 'response_format' exceeds {MAX_SCHEMA_BYTES // 1024} KiB.",
                       param="response_format", code="invalid_value")
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, item in node.items():
                if key in _COUNTS and not (type(item) is int and 0 <= item <= MAX_SCHEMA_COUNT):
                    raise ApiError(400, f"The JSON schema of 'response_format' sets {key} = {item!r}; the gateway "
                                   f"accepts counts from 0 to {MAX_SCHEMA_COUNT}.", param="response_format",
                                   code="invalid_value")
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)


def _logit_bias(value: Any) -> None:
    ok = isinstance(value, dict) and len(value) <= MAX_LOGIT_BIAS and all(
        isinstance(k, str) and k.isdigit() and len(k) <= 9
        and type(v) in (int, float) and -100 <= v <= 100 for k, v in value.items())
    if not ok:
        raise ApiError(400, f"'logit_bias' maps at most {MAX_LOGIT_BIAS} token ids to numbers from -100 to 100.",
                       param="logit_bias", code="invalid_value")
