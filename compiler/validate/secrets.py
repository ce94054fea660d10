"""Semantic pass: secrets are only ever references (env:NAME), never literal values.

Messages never repeat the offending value: it may be a real key.
"""

from __future__ import annotations

import re

from vilms.compiler.document import Document
from vilms.compiler.reporter import Reporter

ENV_REF = re.compile(r"^env:[A-Z_][A-Z0-9_]{0,127}$")


def secret_fields(data: dict) -> list[tuple[tuple, str]]:
    """Every (path, value) of a string field that holds a secret reference.

    Defensive about shapes: this pass runs even on a document the schema rejected, so a
    plaintext key is reported at once, whatever else is wrong."""
    found = []
    gateway = data.get("gateway")
    if isinstance(gateway, dict):
        found.extend((("gateway", key), gateway[key]) for key in ("api_keys", "ops_key") if key in gateway)
        keys = gateway.get("keys")
        if isinstance(keys, dict):
            found.extend((("gateway", "keys", name, "key"), spec["key"])
                         for name, spec in keys.items() if isinstance(spec, dict) and "key" in spec)
    store = data.get("artifact_store")
    if isinstance(store, dict):
        found.extend((("artifact_store", key), store[key]) for key in ("access_key_id", "secret_access_key") if key in store)
    telemetry = data.get("telemetry")
    otlp = telemetry.get("otlp") if isinstance(telemetry, dict) else None
    headers = otlp.get("headers") if isinstance(otlp, dict) else None
    if isinstance(headers, dict):
        found.extend((("telemetry", "otlp", "headers", name), value) for name, value in headers.items())
    models = data.get("models")
    if isinstance(models, dict):
        found.extend((("models", name, "token"), model["token"])
                     for name, model in models.items() if isinstance(model, dict) and "token" in model)
    return [(path, value) for path, value in found if isinstance(value, str)]


def check(doc: Document, report: Reporter) -> None:
    _check_shared_keys(doc.data, report)
    for path, value in secret_fields(doc.data):
        if ENV_REF.match(value):
            continue
        if value.startswith("env:"):
            report.error(path, "invalid environment variable name in secret reference",
                         hint="use env:NAME with NAME in upper case letters, digits and '_', e.g. env:VILMS_API_KEYS")
        else:
            report.error(path, "plaintext secret: this field takes a reference, never the secret itself",
                         hint="put the value in an environment variable and write env:NAME (e.g. env:VILMS_API_KEYS); rotate the exposed value")


def _check_shared_keys(data: dict, report: Reporter) -> None:
    """Each named key reads a variable of its own (and not gateway.api_keys'): a request's key
    must name one scope and one budget."""
    gateway = data.get("gateway")
    keys = gateway.get("keys") if isinstance(gateway, dict) else None
    if not isinstance(keys, dict):
        return
    owner: dict[str, str] = {}
    if isinstance(gateway.get("api_keys"), str):
        owner[gateway["api_keys"]] = "gateway.api_keys"
    for name, spec in sorted(keys.items()):
        ref = spec.get("key") if isinstance(spec, dict) else None
        if not isinstance(ref, str):
            continue
        if ref in owner:
            report.error(("gateway", "keys", name, "key"), f"reads the same variable as {owner[ref]}",
                         hint="give every named key a variable of its own")
        else:
            owner[ref] = f"gateway.keys.{name}"
