"""The gateway's input contract: ``generated/<deployment>/gateway/routes.yaml``.

:func:`load_routes` parses and validates the file strictly (unknown keys, wrong types,
dangling references) and returns frozen dataclasses. Every problem is reported at once,
as ``routes.yaml:LINE:COL: key.path: message``, inside one :class:`ActionError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vilms.compiler.document import Document
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.load import parse

ENGINES = ("ollama", "vllm", "llamacpp")
BALANCE = ("round_robin", "least_inflight")
OVERLONG = ("reject", "truncate")
TASKS = ("chat", "embedding")
# Default sampling parameters an alias may carry (OpenAI names, plus the common extras).
PARAM_TYPES: dict[str, str] = {
    "temperature": "number",
    "top_p": "number",
    "top_k": "int",
    "min_p": "number",
    "seed": "int",
    "stop": "stop",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "repetition_penalty": "number",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Hardware:
    name: str
    kind: str
    memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    api_keys_env: str | None = None
    retries: int = 2
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_queue: int = 256
    cooldown_s: float = 30.0
    balance: str = "round_robin"
    on_overlong_prompt: str = "reject"
    otel_endpoint_env: str | None = None


@dataclass(frozen=True, slots=True)
class Backend:
    id: str
    engine: str
    endpoints: tuple[str, ...]
    api_key_env: str | None = None


@dataclass(frozen=True, slots=True)
class Adapter:
    name: str
    released: bool


@dataclass(frozen=True, slots=True)
class Alias:
    name: str
    backend: str
    model: str
    context: int
    max_output_tokens: int
    adapter: Adapter | None = None
    system: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    fallbacks: tuple[str, ...] = ()
    task: str = "chat"

    @property
    def servable(self) -> bool:
        """False while the alias's adapter is declared but not released."""
        return self.adapter is None or self.adapter.released


@dataclass(frozen=True, slots=True)
class Routes:
    deployment: str
    hardware: Hardware
    gateway: GatewaySettings
    backends: dict[str, Backend]
    aliases: dict[str, Alias]
    source: str = "routes.yaml"


class _Checker:
    """Collects every problem of one document, with positions."""

    def __init__(self, file: str, doc: Document) -> None:
        self.file = file
        # dotted key path → position, for the messages; the compiler's loader keeps them by tuple
        self.positions = {".".join(map(str, p)): pos for p, pos in doc.key_positions.items()}
        self.problems: list[tuple[int, int, str, str]] = []

    def where(self, path: str) -> tuple[int, int]:
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path.rpartition(".")[0]
        return (0, 0)

    def error(self, path: str, message: str) -> None:
        line, col = self.where(path)
        self.problems.append((line, col, path, message))

    def mapping(self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_kind(value)}")
            return {}
        allowed = set(required) | set(optional)
        for key in value:
            if key not in allowed:
                hint = _closest(str(key), allowed)
                extra = f" (did you mean {hint!r}?)" if hint else ""
                self.error(_join(path, str(key)), f"unknown key{extra}; allowed: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in value:
                self.error(path, f"missing required key {key!r}")
        return value

    def typed(self, value: Any, path: str, kind: str, *, minimum: float | None = None, choices: tuple[str, ...] = ()) -> Any:
        ok = {
            "str": lambda v: isinstance(v, str) and v != "",
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
            "bool": lambda v: isinstance(v, bool),
            "env": lambda v: isinstance(v, str) and bool(_ENV_NAME.match(v)),
            "stop": lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
        }[kind]
        if not ok(value):
            names = {"str": "a non-empty string", "int": "an integer", "number": "a number", "bool": "true or false",
                     "env": "an environment variable name", "stop": "a string or a list of strings"}
            self.error(path, f"expected {names[kind]}, got {_kind(value)} {value!r}")
            return None
        if choices and value not in choices:
            self.error(path, f"must be one of {', '.join(choices)}; got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.error(path, f"must be at least {minimum:g}; got {value!r}")
            return None
        return value

    def optional(self, mapping: dict, key: str, path: str, kind: str, default: Any, **kw: Any) -> Any:
        if key not in mapping or (mapping[key] is None and default is None):
            return default
        value = self.typed(mapping[key], _join(path, key), kind, **kw)
        return default if value is None else value


def load_routes(path: Path) -> Routes:
    """Read and validate a routes file; raise :class:`ActionError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ActionError(f"cannot read routes file {path}: {exc.strerror or exc}",
                          hint="run `vilms build` to generate it, or pass --routes FILE") from None
    return parse_routes(text, str(path))


def parse_routes(text: str, file: str = "routes.yaml") -> Routes:
    """Validate routes YAML given as text (``file`` is only used in messages)."""
    try:
        doc = parse(text.encode("utf-8"), file=Path(file), display_name=file)
    except InvalidInputError as exc:
        raise ActionError("invalid routes file:\n" + "\n".join(d.render() for d in exc.diagnostics),
                          hint="regenerate it with `vilms build`") from None
    check = _Checker(file, doc)
    routes = _check_document(check, doc.data, file)
    if check.problems:
        lines = []
        for line, col, key, message in sorted(check.problems):
            where = f"{file}:{line}:{col}" if line else file
            lines.append(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        count = len(lines)
        raise ActionError(f"invalid routes file ({count} problem{'s' if count != 1 else ''}):\n" + "\n".join(lines),
                          hint="routes.yaml is generated by `vilms build`; fix vilms.yaml and rebuild")
    assert routes is not None
    return routes


def _check_document(c: _Checker, doc: Any, file: str) -> Routes | None:
    top = c.mapping(doc, "", ("apiVersion", "kind", "deployment", "gateway", "backends", "aliases"), ("hardware",))
    if not top:
        return None
    if top.get("apiVersion", "vilms/v1") != "vilms/v1":
        c.error("apiVersion", f"must be 'vilms/v1'; got {top.get('apiVersion')!r}")
    if top.get("kind", "GatewayRoutes") != "GatewayRoutes":
        c.error("kind", f"must be 'GatewayRoutes'; got {top.get('kind')!r}")
    deployment = c.typed(top.get("deployment", "?"), "deployment", "str") or "?"
    hardware = _check_hardware(c, top.get("hardware"))
    gateway = _check_gateway(c, top.get("gateway", {}))
    backends = _check_backends(c, top.get("backends", {}))
    aliases = _check_aliases(c, top.get("aliases", {}), backends)
    return Routes(deployment=deployment, hardware=hardware, gateway=gateway, backends=backends,
                  aliases=aliases, source=file)


def _check_hardware(c: _Checker, raw: Any) -> Hardware:
    if raw is None:
        return Hardware(name="unknown", kind="unknown", memory_bytes=None)
    m = c.mapping(raw, "hardware", ("name", "kind"), ("memory_bytes",))
    return Hardware(
        name=c.optional(m, "name", "hardware", "str", "unknown"),
        kind=c.optional(m, "kind", "hardware", "str", "unknown"),
        memory_bytes=c.optional(m, "memory_bytes", "hardware", "int", None, minimum=1),
    )


def _check_gateway(c: _Checker, raw: Any) -> GatewaySettings:
    d = GatewaySettings()
    fields = ("api_keys_env", "retries", "connect_timeout_s", "read_timeout_s", "max_body_bytes", "max_queue",
              "cooldown_s", "balance", "on_overlong_prompt", "otel_endpoint_env")
    m = c.mapping(raw, "gateway", (), fields)
    p = "gateway"
    return GatewaySettings(
        api_keys_env=c.optional(m, "api_keys_env", p, "env", None),
        retries=c.optional(m, "retries", p, "int", d.retries, minimum=0),
        connect_timeout_s=float(c.optional(m, "connect_timeout_s", p, "number", d.connect_timeout_s, minimum=0.001)),
        read_timeout_s=float(c.optional(m, "read_timeout_s", p, "number", d.read_timeout_s, minimum=0.001)),
        max_body_bytes=c.optional(m, "max_body_bytes", p, "int", d.max_body_bytes, minimum=1),
        max_queue=c.optional(m, "max_queue", p, "int", d.max_queue, minimum=1),
        cooldown_s=float(c.optional(m, "cooldown_s", p, "number", d.cooldown_s, minimum=0)),
        balance=c.optional(m, "balance", p, "str", d.balance, choices=BALANCE),
        on_overlong_prompt=c.optional(m, "on_overlong_prompt", p, "str", d.on_overlong_prompt, choices=OVERLONG),
        otel_endpoint_env=c.optional(m, "otel_endpoint_env", p, "env", None),
    )


def _check_backends(c: _Checker, raw: Any) -> dict[str, Backend]:
    if not isinstance(raw, dict) or not raw:
        c.error("backends", "expected a non-empty mapping of backend ids")
        return {}
    out: dict[str, Backend] = {}
    for bid, spec in raw.items():
        p = f"backends.{bid}"
        m = c.mapping(spec, p, ("engine", "endpoints"), ("api_key_env",))
        engine = c.optional(m, "engine", p, "str", None, choices=ENGINES)
        endpoints = _check_endpoints(c, m.get("endpoints"), f"{p}.endpoints")
        key_env = c.optional(m, "api_key_env", p, "env", None)
        if engine and endpoints:
            out[str(bid)] = Backend(id=str(bid), engine=engine, endpoints=endpoints, api_key_env=key_env)
    return out


def _check_endpoints(c: _Checker, raw: Any, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        c.error(path, "expected a non-empty list of base URLs such as http://host:port")
        return ()
    urls: list[str] = []
    for index, url in enumerate(raw):
        p = f"{path}[{index}]"
        if not isinstance(url, str):
            c.error(p, f"expected a URL string, got {_kind(url)}")
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            c.error(p, f"expected an http(s)://host[:port] URL; got {url!r}")
            continue
        if parts.query or parts.fragment:
            c.error(p, f"a base URL takes no query or fragment; got {url!r}")
            continue
        if parts.path.rstrip("/").endswith("/v1"):
            c.error(p, f"give the base URL without the /v1 suffix; got {url!r}")
            continue
        if url.rstrip("/") in urls:
            c.error(p, f"duplicate endpoint {url!r}")
            continue
        urls.append(url.rstrip("/"))
    return tuple(urls)


def _check_aliases(c: _Checker, raw: Any, backends: dict[str, Backend]) -> dict[str, Alias]:
    if not isinstance(raw, dict) or not raw:
        c.error("aliases", "expected a non-empty mapping of alias names")
        return {}
    out: dict[str, Alias] = {}
    required = ("backend", "model", "context")
    optional = ("adapter", "max_output_tokens", "system", "params", "fallbacks", "task")
    for name, spec in raw.items():
        p = f"aliases.{name}"
        m = c.mapping(spec, p, required, optional)
        if not m:
            continue
        backend = c.optional(m, "backend", p, "str", None)
        if backend is not None and backend not in backends:
            hint = _closest(backend, set(backends))
            c.error(f"{p}.backend", f"unknown backend {backend!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        model = c.optional(m, "model", p, "str", None)
        context = c.optional(m, "context", p, "int", None, minimum=16)
        max_out = c.optional(m, "max_output_tokens", p, "int", None, minimum=1)
        if context is not None and max_out is not None and max_out > context:
            c.error(f"{p}.max_output_tokens", f"must not exceed context ({context}); got {max_out}")
        adapter = _check_adapter(c, m.get("adapter"), f"{p}.adapter")
        system = c.optional(m, "system", p, "str", None)
        params = _check_params(c, m.get("params"), f"{p}.params")
        fallbacks = _check_fallbacks(c, m.get("fallbacks"), f"{p}.fallbacks", str(name), set(raw))
        task = c.optional(m, "task", p, "str", "chat", choices=TASKS)
        if backend in backends and model and context:
            out[str(name)] = Alias(
                name=str(name), backend=backend, model=model, context=context,
                max_output_tokens=max_out if max_out is not None else context,
                adapter=adapter, system=system, params=params, fallbacks=fallbacks, task=task,
            )
    return out


def _check_adapter(c: _Checker, raw: Any, path: str) -> Adapter | None:
    if raw is None:
        return None
    m = c.mapping(raw, path, ("name", "released"), ())
    name = c.optional(m, "name", path, "str", None)
    released = m.get("released")
    if "released" in m and not isinstance(released, bool):
        c.error(f"{path}.released", f"expected true or false, got {released!r}")
    return Adapter(name=name, released=released) if name and isinstance(released, bool) else None


def _check_params(c: _Checker, raw: Any, path: str) -> tuple[tuple[str, Any], ...]:
    if raw is None:
        return ()
    m = c.mapping(raw, path, (), tuple(PARAM_TYPES))
    out = []
    for key in sorted(m):
        if key in PARAM_TYPES:
            value = c.typed(m[key], f"{path}.{key}", PARAM_TYPES[key])
            if value is not None:
                out.append((key, value))
    return tuple(out)


def _check_fallbacks(c: _Checker, raw: Any, path: str, own: str, names: set) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        c.error(path, f"expected a list of alias names, got {_kind(raw)}")
        return ()
    out: list[str] = []
    for index, item in enumerate(raw):
        p = f"{path}[{index}]"
        if not isinstance(item, str):
            c.error(p, f"expected an alias name, got {_kind(item)}")
        elif item == own:
            c.error(p, "an alias cannot fall back to itself")
        elif item not in names:
            hint = _closest(item, names)
            c.error(p, f"unknown alias {item!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
        elif item in out:
            c.error(p, f"{item!r} is listed twice")
        else:
            out.append(item)
    return tuple(out)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
                              int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _closest(word: str, options: set) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, sorted(str(o) for o in options), n=1, cutoff=0.7)
    return found[0] if found else None

