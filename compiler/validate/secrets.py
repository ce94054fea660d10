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
        found.extend((("gateway", key), gateway[key]) for key in ("api_keys", "otel_endpoint") if key in gateway)
    models = data.get("models")
    if isinstance(models, dict):
        found.extend((("models", name, "token"), model["token"])
                     for name, model in models.items() if isinstance(model, dict) and "token" in model)
    return [(path, value) for path, value in found if isinstance(value, str)]


def check(doc: Document, report: Reporter) -> None:
    for path, value in secret_fields(doc.data):
        if ENV_REF.match(value):
            continue
        if value.startswith("env:"):
            report.error(path, "invalid environment variable name in secret reference",
                         hint="use env:NAME with NAME in upper case letters, digits and '_', e.g. env:VILMS_API_KEYS")
        else:
            report.error(path, "plaintext secret: this field takes a reference, never the secret itself",
                         hint="put the value in an environment variable and write env:NAME (e.g. env:VILMS_API_KEYS); rotate the exposed value")
