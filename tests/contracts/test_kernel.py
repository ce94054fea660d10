"""The contract kernel: every contract's dataclass tree and shipped schema say the same thing, every
key is required (readers keep no defaults), data round-trips through the codec, and a reader
refuses files of another kind or version with a located message."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

from vilms.compiler.contracts.codec import KEY, from_data, is_name, key_of, name_field, to_data
from vilms.compiler.contracts.contract import API_VERSION
from vilms.compiler.contracts.registry import all_contracts
from vilms.compiler.errors import InvalidInputError

CONTRACTS = all_contracts()
IDS = [c.kind for c in CONTRACTS]


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = schema["$defs"][name]
    return node


def _branches(schema: dict, node: dict) -> list[dict]:
    node = _resolve(schema, node)
    if "oneOf" in node or "anyOf" in node:
        return [b for branch in node.get("oneOf", node.get("anyOf")) for b in _branches(schema, branch)]
    return [node]


def _json_types(schema: dict, node: dict) -> set[str]:
    out: set[str] = set()
    for branch in _branches(schema, node):
        kind = branch.get("type")
        if kind is None and "const" in branch:
            kind = {str: "string", bool: "boolean", int: "integer"}[type(branch["const"])]
        if kind is None and "enum" in branch:
            kind = sorted({{str: "string", int: "integer", type(None): "null"}[type(v)] for v in branch["enum"]})
        out |= set(kind if isinstance(kind, list) else [kind])
    return out


def _agree(schema: dict, node: dict, kind: Any, where: str, problems: list[str], nullable: bool = False) -> None:
    """Does schema ``node`` describe exactly the values the codec reads into ``kind``?"""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args and "null" not in _json_types(schema, node):
            problems.append(f"{where}: the dataclass allows None, the schema does not allow null")
        non_null = [b for b in _branches(schema, node) if b.get("type") != "null"]
        if len(non_null) == 1 and len(_branches(schema, node)) > 1:
            node = non_null[0]
        _agree(schema, node, options[0], where, problems, nullable=type(None) in args)
        return
    if "null" in _json_types(schema, node) and kind is not Any and not nullable:
        problems.append(f"{where}: the schema allows null, the dataclass field is not optional")
    node = _resolve(schema, node)
    if kind is Any:
        return
    if dataclasses.is_dataclass(kind):
        if _json_types(schema, node) - {"null"} != {"object"} or node.get("additionalProperties") is not False:
            problems.append(f"{where}: a dataclass must be a closed object (additionalProperties: false)")
            return
        fields = {key_of(f): f for f in dataclasses.fields(kind) if not is_name(f)}
        properties = {k: v for k, v in node.get("properties", {}).items() if where or k not in ("apiVersion", "kind")}
        if set(fields) != set(properties):
            problems.append(f"{where or '(top)'}: fields {sorted(set(fields) - set(properties))} not in the schema, "
                            f"schema keys {sorted(set(properties) - set(fields))} not in the dataclass")
        if set(node.get("required", ())) != set(node.get("properties", {})):
            problems.append(f"{where or '(top)'}: every key must be required (readers keep no defaults)")
        hints = typing.get_type_hints(kind)
        for key, field in fields.items():
            if key in properties:
                _agree(schema, properties[key], hints[field.name], f"{where}.{key}".lstrip("."), problems)
        return
    if origin is tuple:
        if _json_types(schema, node) - {"null"} != {"array"}:
            problems.append(f"{where}: a tuple must be an array")
        else:
            _agree(schema, node.get("items", {}), args[0], f"{where}[]", problems)
        return
    if origin in (Mapping, dict):
        if _json_types(schema, node) - {"null"} != {"object"}:
            problems.append(f"{where}: a mapping must be an object")
        elif args[1] is not Any:
            value = node.get("additionalProperties")
            if not isinstance(value, dict):
                problems.append(f"{where}: a mapping of {args[1]} needs additionalProperties: <schema>")
            else:
                _agree(schema, value, args[1], f"{where}.*", problems)
        return
    expected = {int: {"integer"}, float: {"number"}, str: {"string"}, bool: {"boolean"}}[kind]
    if _json_types(schema, node) - {"null"} != expected and not (kind is float and _json_types(schema, node) - {"null"} == {"number", "integer"}):
        problems.append(f"{where}: {kind.__name__} field, schema types {sorted(_json_types(schema, node))}")


def test_every_contract_is_registered_once():
    assert len({c.kind for c in CONTRACTS}) == len(CONTRACTS) >= 2
    assert len({c.schema_file for c in CONTRACTS}) == len(CONTRACTS)


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_schema_is_valid_and_names_its_kind_and_version(contract):
    Draft202012Validator.check_schema(contract.schema)
    assert contract.schema["properties"]["apiVersion"] == {"const": API_VERSION}
    assert contract.schema["properties"]["kind"] == {"const": contract.kind}


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_dataclass_and_schema_agree(contract):
    problems: list[str] = []
    _agree(contract.schema, contract.schema, contract.root, "", problems)
    assert problems == []


def test_the_agreement_check_sees_drift():
    schema = {"type": "object", "additionalProperties": False, "required": ["a"],
              "properties": {"a": {"type": "number"}, "b": {"type": "string"}, "c": {"type": "string"}}}
    problems: list[str] = []
    _agree(schema, schema, _Shape, "", problems)
    assert any("schema keys ['c']" in p for p in problems)
    assert any("every key must be required" in p for p in problems)
    assert any("a: int field" in p for p in problems)
    assert any("b: the dataclass allows None" in p for p in problems)


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                                  HealthCheck.data_too_large])
@given(data=st.data())
def test_valid_data_round_trips_through_the_codec(contract, data):
    document = data.draw(from_schema(contract.schema))
    value = from_data(contract.root, {k: v for k, v in document.items() if k not in ("apiVersion", "kind")})
    again = contract.data(value)
    assert contract.problems(again) == []
    assert _numbers_as_float(again) == _numbers_as_float(document)


def _numbers_as_float(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_float(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


@pytest.mark.parametrize("contract", CONTRACTS, ids=IDS)
def test_a_file_of_another_version_or_kind_is_refused_located(contract, tmp_path):
    other = "OtherKind"
    text = "{\n  \"apiVersion\": \"contracts.vilms.dev/v0\",\n  \"kind\": \"%s\"\n}\n"
    with pytest.raises(InvalidInputError) as err:
        contract.parse((text % contract.kind).encode(), "f.json")
    assert err.value.render().splitlines()[0] == (
        f"f.json:2:17: apiVersion: written by another ViLMS version (apiVersion 'contracts.vilms.dev/v0'); "
        f"this ViLMS reads {API_VERSION}")
    assert err.value.render().endswith(f"hint: {contract.remedy} with this version of ViLMS")
    with pytest.raises(InvalidInputError) as err:
        contract.parse((text % other).encode(), "f.json")
    assert err.value.render().splitlines()[0] == f"f.json:3:11: kind: this is a 'OtherKind' file, not a '{contract.kind}'"
    with pytest.raises(InvalidInputError) as err:
        contract.load(tmp_path / "missing.json")
    assert err.value.render().splitlines()[0] == f"{tmp_path / 'missing.json'}: file not found"
    with pytest.raises(InvalidInputError) as err:
        contract.parse(b"- a list\n", "f.yaml")
    assert err.value.render().splitlines()[0].startswith("f.yaml:")


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str = name_field()
    source: str = dataclasses.field(metadata={KEY: "from"})
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Book:
    entries: Mapping[str, _Entry]


@dataclasses.dataclass(frozen=True)
class _Shape:
    a: int
    b: str | None


def test_codec_renames_keys_and_fills_name_fields():
    book = from_data(_Book, {"entries": {"a": {"from": "x", "tags": ["t"]}}})
    assert book.entries["a"] == _Entry(name="a", source="x", tags=("t",))
    assert to_data(book) == {"entries": {"a": {"from": "x", "tags": ["t"]}}}
    with pytest.raises(TypeError):
        book.entries["b"] = book.entries["a"]  # read-only


def test_a_json_contract_names_json_in_its_syntax_errors():
    from vilms.compiler.contracts.runner_state import RUNNER_STATE

    with pytest.raises(InvalidInputError) as err:
        RUNNER_STATE.parse(b'{"apiVersion": "x",\n  "kind": [}\n', "state.json")
    first = err.value.render().splitlines()[0]
    assert first.startswith("state.json:2:") and "JSON syntax error" in first and "YAML" not in err.value.render()


def test_a_writer_never_writes_inf_or_nan():
    from vilms.compiler.contracts.build_manifest import BUILD_MANIFEST
    from vilms.compiler.contracts.routes import ROUTES
    from vilms.compiler.serialize import to_json

    routes = ROUTES.parse((__import__("pathlib").Path(__file__).parents[2] / "generated" / "dev" / "gateway" / "routes.yaml")
                          .read_bytes(), "routes.yaml")
    broken = dataclasses.replace(routes, gateway=dataclasses.replace(routes.gateway, read_timeout_s=float("inf")))
    with pytest.raises(AssertionError, match=r"GatewayRoutes: not a finite number at gateway\.read_timeout_s"):
        ROUTES.dump(broken)
    with pytest.raises(ValueError):
        to_json({"x": float("nan")})
    assert BUILD_MANIFEST.kind == "BuildManifest"


def test_error_messages_cannot_write_control_characters_to_the_terminal():
    from vilms.compiler.errors import ActionError

    rendered = ActionError("cannot read /tmp/\x1b[31mred\u202e", hint="see \x00").render()
    assert "\x1b" not in rendered and "\u202e" not in rendered and "\x00" not in rendered
    assert rendered == "cannot read /tmp/\\x1b[31mred\\u202e\n  hint: see \\x00"
