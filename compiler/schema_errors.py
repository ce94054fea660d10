"""JSON Schema errors → located diagnostics, one plain English sentence each.

Modelled on docker/compose v1's validation: walk all errors (not just the first),
translate each validator into plain words with its key path, and point at the line.
Used for vilms.yaml (:mod:`vilms.compiler.validate.schema_pass`) and for every contract
file (:mod:`vilms.compiler.contracts`).
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from vilms.compiler.reporter import Reporter
from vilms.compiler.suggest import did_you_mean

_TYPE_NAMES = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "object": "a mapping", "array": "a list", "null": "null",
}


def _is_integer(_checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JSON Schema counts 4096.0 as an integer; ViLMS does not: an engine given "4096.0"
# where it parses an int refuses to start, so a float is refused where an integer is meant.
StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def strict_validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A draft 2020-12 validator for ``schema`` whose integers are never floats."""
    return StrictValidator(schema)


def report_errors(validator: Draft202012Validator, data: Any, report: Reporter) -> None:
    """Every error of ``data`` against ``validator``'s schema, into ``report``."""
    for error in validator.iter_errors(data):
        translate(error, report)


def translate(error: ValidationError, report: Reporter) -> None:
    path = tuple(error.absolute_path)
    kind = error.validator
    value = error.instance
    sub = error.schema if isinstance(error.schema, dict) else {}

    if kind in ("oneOf", "anyOf"):
        branch = _best_branch(error)
        if branch:
            for inner in branch:
                translate(inner, report)
            return
        report.error(path, f"must be {_describe_alternatives(error.validator_value)}, not {type_phrase(value)}")
        return
    if "propertyNames" in error.schema_path:
        pattern_schema = error.schema
        hint = pattern_schema.get("description") if isinstance(pattern_schema, dict) else None
        report.error(path + (str(value),), f"invalid name {value!r}", hint=hint, at_key=True)
        return
    if kind == "additionalProperties":
        allowed = set(sub.get("properties", {}))
        moved = sub.get("x-vilms-moved", {})
        for key in sorted(set(value) - allowed):
            if key in moved:
                report.error(path + (key,), f"{key!r} has moved", hint=f"write it as {moved[key]}", at_key=True)
                continue
            report.error(
                path + (key,), f"unknown key {key!r}{did_you_mean(key, allowed)}",
                hint=f"allowed keys here: {', '.join(sorted(allowed))}" if allowed and len(allowed) <= 16 else None,
                at_key=True,
            )
        return
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else str(error.validator_value)
        where = path if path else ()
        report.error(where, f"missing required key {missing!r}", hint=_field_hint(sub, missing), at_key=bool(path))
        return
    if kind == "type":
        expected = error.validator_value
        expected = expected if isinstance(expected, list) else [expected]
        words = " or ".join(_TYPE_NAMES.get(t, t) for t in expected)
        hint = None
        if "string" in expected and isinstance(value, (int, float)) and not isinstance(value, bool):
            hint = f'quote it: "{value}"'
        elif "integer" in expected and isinstance(value, float):
            hint = f"write {int(value)}, not {value}" if value.is_integer() else "write a whole number"
        report.error(path, f"must be {words}, not {type_phrase(value)}", hint=hint)
        return
    if kind == "enum":
        options = [str(o) for o in error.validator_value]
        got = value if isinstance(value, str) else type_phrase(value)
        suggestion = did_you_mean(str(value), options) if isinstance(value, str) else ""
        report.error(path, f"{got!r} is not one of {', '.join(options)}{suggestion}")
        return
    if kind == "const":
        report.error(path, f"must be {error.validator_value!r}")
        return
    if kind == "pattern":
        if isinstance(value, str) and _USERINFO.search(value):
            report.error(path, f"{_short(value)!r}: a URL here takes no credentials",
                         hint=sub.get("x-vilms-credentials-hint",
                                      "pass them by reference: an env:NAME value (e.g. an authorization header) or the "
                                      "client's own variables; rotate the exposed password"))
            return
        named = [part for part in path if isinstance(part, str)]
        what = "value" if not named else (f"entry of {named[-1]}" if isinstance(path[-1], int) else named[-1])
        report.error(path, f"{_short(value)!r} is not a valid {what}", hint=sub.get("description"))
        return
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "greater than", "exclusiveMaximum": "less than"}[kind]
        report.error(path, f"must be {words} {error.validator_value} (got {value})")
        return
    if kind in ("minItems", "maxItems", "minProperties", "minLength", "maxLength"):
        words = {
            "minItems": f"must list at least {error.validator_value} item(s)",
            "maxItems": f"must list at most {error.validator_value} items",
            "minProperties": f"must define at least {error.validator_value} entry",
            "minLength": "must not be empty" if error.validator_value == 1 else f"must be at least {error.validator_value} characters",
            "maxLength": f"must be at most {error.validator_value} characters",
        }[kind]
        report.error(path, words)
        return
    if kind == "uniqueItems":
        report.error(path, "must not list the same item twice")
        return
    report.error(path, error.message)


def _best_branch(error: ValidationError) -> list[ValidationError] | None:
    """For oneOf/anyOf: the errors of the branch whose type matches the value, if exactly one does."""
    value = error.instance
    branches = error.validator_value
    matching = [i for i, b in enumerate(branches) if isinstance(b, dict) and _type_matches(b.get("type"), value)]
    if error.validator == "oneOf" and not matching and all(isinstance(b, dict) and "required" in b for b in branches):
        keys = [b["required"][0] for b in branches]
        present = [k for k in keys if k in value] if isinstance(value, dict) else []
        msg = f"set exactly one of {', '.join(keys)}" + (f" (found {', '.join(present)})" if present else "")
        return [ValidationError(msg, validator="custom", path=error.absolute_path, instance=value)]
    if len(matching) != 1:
        return None
    index = matching[0]
    inner = [e for e in error.context if e.schema_path and e.schema_path[0] == index]
    return inner or None


def _type_matches(expected: Any, value: Any) -> bool:
    if expected is None:
        return False
    expected = expected if isinstance(expected, list) else [expected]
    return _type_of_json(value) in expected or (_type_of_json(value) == "integer" and "number" in expected)


def _type_of_json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def type_phrase(value: Any) -> str:
    """How a message names the JSON type of ``value``: "a string", "an integer", "a mapping", ..."""
    return _TYPE_NAMES.get(_type_of_json(value), "a value")


def _describe_alternatives(branches: list[Any]) -> str:
    words = []
    for b in branches:
        if isinstance(b, dict) and "type" in b:
            words.append(_TYPE_NAMES.get(b["type"], b["type"]) if isinstance(b["type"], str) else "a value")
    return " or ".join(words) or "valid"


def _field_hint(sub: dict, key: str) -> str | None:
    prop = sub.get("properties", {}).get(key, {})
    return prop.get("description") if isinstance(prop, dict) else None


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")  # user:password@ in a URL
_QUERY = re.compile(r"(?<=://)([^\s?#]*)\?[^\s#]*")  # ?token=... after a URL's path


def _short(value: Any) -> str:
    """The value as an error shows it: cut at 60 characters, credentials and the query of a URL masked."""
    text = _QUERY.sub(r"\1?***", _USERINFO.sub("***@", str(value)))
    return text if len(text) <= 60 else text[:57] + "..."
