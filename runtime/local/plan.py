"""The local runner's input: ``generated/<deployment>/local.yaml`` (kind LocalPlan).

:func:`load_plan` reads it with the compiler's loader (so problems are located as
``local.yaml:LINE:COL: key.path: message``), checks its shape strictly and returns frozen
dataclasses. Every problem is reported at once in one :class:`ActionError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.document import Document, Path_, dotted
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.load import parse

PLAN_FILE = "local.yaml"


@dataclass(frozen=True)
class ModelRef:
    """Where a llama.cpp server's weights are: a project-relative file or a Hugging Face repo."""

    path: str | None = None
    hf_repo: str | None = None
    hf_file_glob: str | None = None


@dataclass(frozen=True)
class ServerSpec:
    """One llama.cpp server (llama-cpp-python) as local.yaml lists it."""

    name: str
    model_alias: str
    model: ModelRef
    context: int
    threads: int
    parallel: int
    lora: tuple[str, ...]
    host: str
    port: int


@dataclass(frozen=True)
class GatewaySpec:
    host: str
    port: int
    routes: str  # relative to generated/<deployment>/


@dataclass(frozen=True)
class LocalPlan:
    deployment: str
    servers: tuple[ServerSpec, ...]
    gateway: GatewaySpec
    file: Path  # absolute path of local.yaml
    sha256: str  # of its bytes: tells a running deployment from a newer build

    @property
    def routes_file(self) -> Path:
        return self.file.parent / self.gateway.routes


_TOP = {"apiVersion": "str", "kind": "str", "deployment": "str", "processes": "list", "gateway": "map"}
_SERVER = {"name": "str", "kind": "str", "model_alias": "str", "model": "map", "context": "int", "threads": "int",
           "parallel": "int", "lora": "list", "host": "str", "port": "port"}
_GATEWAY = {"host": "str", "port": "port", "routes": "str"}
_MODEL_KEYS = ({"path"}, {"hf_repo", "hf_file_glob"})


def load_plan(file: Path) -> LocalPlan:
    """Read and check ``file``; raise :class:`ActionError` naming every problem."""
    file = Path(file).resolve()
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ActionError(f"cannot read {file}: {exc.strerror or exc}", hint="run `vilms build`") from None
    name = str(file)
    try:
        doc = parse(raw, file=file, display_name=name)
    except InvalidInputError as exc:
        raise ActionError("invalid local plan:\n" + "\n".join(d.render() for d in exc.diagnostics),
                          hint="local.yaml is written by `vilms build`; run it again") from None
    check = _Checker(doc)
    plan = check.plan(file, hashlib.sha256(raw).hexdigest())
    if check.problems:
        count = len(check.problems)
        raise ActionError(f"invalid local plan ({count} problem{'s' if count != 1 else ''}):\n"
                          + "\n".join(sorted(check.problems)),
                          hint="local.yaml is written by `vilms build`; fix vilms.yaml and run it again")
    assert plan is not None
    return plan


class _Checker:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[str] = []

    def error(self, path: Path_, message: str) -> None:
        line, col = self.doc.locate(path, key=True)
        self.problems.append(f"{self.doc.display_name}:{line}:{col}: {dotted(path) or '(top)'}: {message}")

    def mapping(self, value: Any, path: Path_, fields: dict[str, str], required: bool = True) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {type(value).__name__}")
            return {}
        out: dict[str, Any] = {}
        for key in value:
            if key not in fields:
                self.error((*path, key), f"unknown key; allowed: {', '.join(sorted(fields))}")
        for key, kind in fields.items():
            if key not in value:
                if required:
                    self.error(path, f"missing required key {key!r}")
                continue
            out[key] = self.typed(value[key], (*path, key), kind)
        return out

    def typed(self, value: Any, path: Path_, kind: str) -> Any:
        ok = {
            "str": isinstance(value, str) and value != "",
            "int": isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            "port": isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535,
            "list": isinstance(value, list),
            "map": isinstance(value, dict),
        }[kind]
        if not ok:
            expected = {"str": "a non-empty string", "int": "a positive integer", "port": "a port number (1-65535)",
                        "list": "a list", "map": "a mapping"}[kind]
            self.error(path, f"expected {expected}, got {value!r}")
            return None
        return value

    def plan(self, file: Path, sha256: str) -> LocalPlan | None:
        top = self.mapping(self.doc.data, (), _TOP)
        if top.get("kind") not in (None, "LocalPlan"):
            self.error(("kind",), f"expected LocalPlan, got {top['kind']!r}")
        if top.get("apiVersion") not in (None, "vilms/v1"):
            self.error(("apiVersion",), f"expected vilms/v1, got {top['apiVersion']!r}")
        servers = []
        for i, item in enumerate(top.get("processes") or []):
            server = self.server(item, ("processes", i))
            if server is not None:
                servers.append(server)
        gw = self.mapping(top.get("gateway") or {}, ("gateway",), _GATEWAY)
        names = [s.name for s in servers] + ["gateway"]
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.error(("processes",), f"process name {name!r} is used twice")
        ports = [s.port for s in servers] + [gw.get("port")]
        for port in sorted({p for p in ports if p is not None and ports.count(p) > 1}):
            self.error(("processes",), f"port {port} is used twice")
        if self.problems or not top or len(gw) != len(_GATEWAY):
            return None
        return LocalPlan(deployment=top["deployment"], servers=tuple(servers), gateway=GatewaySpec(**gw),
                         file=file, sha256=sha256)

    def server(self, item: Any, path: Path_) -> ServerSpec | None:
        before = len(self.problems)
        fields = self.mapping(item, path, _SERVER)
        if fields.get("kind") not in (None, "llamacpp"):
            self.error((*path, "kind"), f"unsupported process kind {fields['kind']!r}; the local runner runs llamacpp")
        model = self.model(fields.get("model"), (*path, "model")) if fields.get("model") is not None else None
        lora = []
        for j, entry in enumerate(fields.get("lora") or []):
            lora.append(self.typed(entry, (*path, "lora", j), "str"))
        if len(self.problems) > before or model is None:
            return None
        return ServerSpec(name=fields["name"], model_alias=fields["model_alias"], model=model, context=fields["context"],
                          threads=fields["threads"], parallel=fields["parallel"], lora=tuple(lora),
                          host=fields["host"], port=fields["port"])

    def model(self, value: dict[str, Any], path: Path_) -> ModelRef | None:
        keys = set(value)
        if keys not in _MODEL_KEYS:
            self.error(path, "expected either {path} or {hf_repo, hf_file_glob}")
            return None
        fields = self.mapping(value, path, dict.fromkeys(keys, "str"))
        if len(fields) != len(keys) or any(v is None for v in fields.values()):
            return None
        return ModelRef(**fields)
