"""The JSON Schema pass of vilms.yaml: every schema error, located and in plain words."""

from __future__ import annotations

from functools import lru_cache

from jsonschema import Draft202012Validator

from vilms.compiler.document import Document
from vilms.compiler.reporter import Reporter
from vilms.compiler.schema import schema
from vilms.compiler.schema_errors import report_errors, strict_validator


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return strict_validator(schema())


def check_schema(doc: Document, report: Reporter) -> None:
    report_errors(_validator(), doc.data, report)
