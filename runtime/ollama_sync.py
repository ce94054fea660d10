"""Bring a running Ollama server's derived models in line with ``generated/<dep>/ollama/``.

A derived model is an adapter alias: a Modelfile ``FROM`` a base model with an
``ADAPTER``. ``vilms apply`` calls :func:`sync` after ``docker compose up`` so a release
or rollback never restarts the server: for each derived model whose create request is
new or changed it uploads the adapter as a blob (``HEAD /api/blobs/<digest>``, then
``POST`` the bytes, streamed, when the server lacks it) and creates the model with
``POST /api/create`` on the running server, as ``ollama create`` does
(``parser/parser.go`` ``CreateRequest``, ``cmd/cmd.go``, ``server/create.go``). Derived
models this command created for the deployment and no longer generated are deleted
(``DELETE /api/delete``); nothing else on the server is touched.

What was created is recorded per deployment in ``.vilms/run/<dep>/ollama-models.json``
(name → digest of the create request, adapter bytes included), written after each
successful create or delete, so a re-apply with nothing changed sends no create and no
upload, and a failed create is never recorded.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vilms.compiler import layout
from vilms.compiler.digest import sha256_file
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import ollama
from vilms.compiler.modelfile_syntax import Command, ModelfileSyntaxError, parse

TIMEOUT_S = 60.0  # connect, and the longest silence on any read or write, of every call
MAX_BODY = 1 << 20  # a JSON answer (tags, an error)
MAX_LINE = 64 << 10  # one line of the create progress stream
MAX_LINES = 100_000  # a create that streams more progress than this is not making progress
CHUNK = 1 << 20  # bytes sent from an adapter file at a time (upload)
START_HINT = "start it with `docker compose --file generated/<deployment>/docker-compose.yaml up -d`, or pass --ollama-url"

# api/types.go Options and Runner: how api.FormatParams types each PARAMETER
_INT = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "draft_num_predict", "num_keep",
                  "seed", "num_predict", "top_k", "repeat_last_n"})
_FLOAT = frozenset({"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                    "frequency_penalty"})
_BOOL = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
         "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?i:inf|infinity|nan)")


@dataclass(frozen=True)
class Blob:
    """A local file the server needs as a blob: its name in the create request, path, digest."""

    name: str
    path: Path
    digest: str  # "sha256:<hex>"
    size: int


@dataclass(frozen=True)
class Derived:
    """One derived model: its Ollama name, Modelfile and the create request built from it."""

    name: str
    modelfile: str  # project-relative, for messages
    request: dict[str, Any]  # without "model" and "stream"
    blobs: tuple[Blob, ...]

    @property
    def key(self) -> str:
        """What decides whether the server's copy is current: the request, adapter digests included."""
        return "sha256:" + hashlib.sha256(json.dumps(self.request, sort_keys=True).encode()).hexdigest()


def derived_models(root: Path, deployment: str, bases: tuple[str, ...]) -> list[Derived]:
    """The derived models of ``deployment``: every generated Modelfile but the base models', sorted."""
    folder = root / layout.GENERATED / layout.ollama_dir(deployment)
    out = []
    base_files = {f"{b}.Modelfile" for b in bases}
    for path in sorted(folder.glob("*.Modelfile")) if folder.is_dir() else ():
        if path.name not in base_files:
            out.append(_derived(root, path))
    return out


def _derived(root: Path, path: Path) -> Derived:
    rel = path.relative_to(root).as_posix()
    try:
        commands = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ModelfileSyntaxError) as exc:
        raise ActionError(f"{rel}: cannot read this Modelfile: {exc}", hint="run `vilms build` to regenerate it") from None
    try:
        request, blobs = create_request(commands, path.parent)
    except ValueError as exc:
        raise ActionError(f"{rel}: {exc}", hint="run `vilms build` to regenerate it") from None
    except FileNotFoundError as exc:
        missing = Path(exc.filename or "")
        shown = os.path.relpath(missing, root) if missing.is_absolute() else str(missing)
        raise ActionError(f"{rel}: its adapter {shown} does not exist here",
                          hint="copy the released run's folder into artifacts/ (or train it), then apply again") from None
    return Derived(path.name[: -len(".Modelfile")], rel, request, blobs)


def create_request(commands: list[Command], folder: Path) -> tuple[dict[str, Any], tuple[Blob, ...]]:
    """The body of ``POST /api/create`` for a Modelfile in ``folder``, as ``ollama create`` builds it.

    ``FROM`` names a model on the server (ViLMS's derived models are FROM a base model);
    ``ADAPTER`` is a local GGUF sent as a blob and named by its file name. Raises
    ValueError for what Ollama would refuse, FileNotFoundError for a missing adapter.
    """
    request: dict[str, Any] = {}
    blobs: list[Blob] = []
    params: dict[str, Any] = {}
    licenses: list[str] = []
    messages: list[dict[str, str]] = []
    for cmd in commands:
        if cmd.name == "model":
            if (folder / cmd.args).exists() or cmd.args.startswith(("/", "./", "../", "~")):
                raise ValueError(f"FROM {cmd.args}: a derived model is FROM a model on the server, not a file")
            request["from"] = cmd.args
        elif cmd.name == "adapter":
            path = Path(os.path.expanduser(cmd.args))
            path = Path(os.path.normpath(path if path.is_absolute() else folder / path))
            blob = _blob(path)
            blobs = [blob]  # Ollama keeps the last ADAPTER (one adapter per model)
            request["adapters"] = {blob.name: blob.digest}
        elif cmd.name in ("template", "system", "renderer", "parser"):
            request[cmd.name] = cmd.args
        elif cmd.name == "license":
            licenses.append(cmd.args)
        elif cmd.name == "message":
            role, _, content = cmd.args.partition(": ")
            messages.append({"role": role, "content": content})
        elif cmd.name in ("draft", "requires"):
            raise ValueError(f"{cmd.name.upper()} is not something ViLMS writes into a derived model")
        else:
            _param(params, cmd.name, cmd.args)
    if params:
        request["parameters"] = params
    if licenses:
        request["license"] = licenses
    if messages:
        request["messages"] = messages
    return request, tuple(blobs)


def _param(params: dict[str, Any], name: str, value: str) -> None:
    """api.FormatParams: typed by the Options field; ``stop`` accumulates, others keep the last."""
    if name == "stop":
        params.setdefault("stop", []).append(value)
    elif name in _INT and _GO_INT.fullmatch(value):
        params[name] = int(value)
    elif name in _FLOAT and _GO_FLOAT.fullmatch(value):
        params[name] = float(value)
    elif name == "use_mmap" and value in _BOOL:
        params[name] = _BOOL[value]
    elif name in _INT | _FLOAT | {"use_mmap"}:
        raise ValueError(f"PARAMETER {name} {value}: not a valid value for {name}")
    else:
        raise ValueError(f"unknown parameter '{name}'")


def _blob(path: Path) -> Blob:
    digest = sha256_file(path)  # FileNotFoundError names the path
    return Blob(path.name, path, f"sha256:{digest}", path.stat().st_size)


# --- the server


class OllamaClient:
    """Ollama's native API over plain HTTP: every call bounded in time and in what it reads."""

    def __init__(self, url: str, *, timeout_s: float = TIMEOUT_S, start_hint: str = START_HINT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ActionError(f"Ollama URL {shown_url(url)!r} is not an http(s) URL", hint=f"e.g. http://127.0.0.1:{ollama.PORT}")
        self.url = shown_url(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout_s
        self._start_hint = start_hint

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout, blocksize=CHUNK)

    def _call(self, method: str, path: str, what: str, body: Any = None, headers: dict[str, str] | None = None,
              on_response: Callable[[http.client.HTTPResponse], Any] | None = None) -> Any:
        conn = self._connection()
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers or {})
            response = conn.getresponse()
            if on_response is not None:
                return on_response(response)
            return response.status, _read(response, MAX_BODY, what, self.url)
        except TimeoutError:
            raise ActionError(f"Ollama at {self.url} did not answer in time ({self._timeout:g}s without a byte) while {what}",
                              hint="see `docker compose logs ollama` (the server may be busy loading a model); "
                                   "run `vilms apply` again") from None
        except ConnectionRefusedError:
            raise ActionError(f"Ollama at {self.url} refused the connection while {what}",
                              hint=f"is the deployment up? {self._start_hint}") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ActionError(f"Ollama at {self.url} is unreachable while {what}: {reason}",
                              hint=f"is the deployment up? {self._start_hint}") from None
        finally:
            conn.close()

    def tags(self) -> set[str]:
        """The names of the models on the server (``name:tag``)."""
        status, body = self._call("GET", "/api/tags", "listing models")
        data = _json(body, self.url, "listing models")
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise ActionError(f"Ollama at {self.url} answered GET /api/tags with {status}: {_error_of(data, body)}",
                              hint="is that address an Ollama server?")
        return {m["name"] for m in data["models"] if isinstance(m, dict) and isinstance(m.get("name"), str)}

    def has_blob(self, digest: str) -> bool:
        status, body = self._call("HEAD", f"/api/blobs/{digest}", f"checking blob {digest[:19]}")
        if status in (200, 404):
            return status == 200
        raise ActionError(f"Ollama at {self.url} answered HEAD /api/blobs/{digest} with {status}",
                          hint="is that address an Ollama server?")

    def push_blob(self, blob: Blob) -> None:
        what = f"uploading {blob.path.name} ({blob.size} bytes)"
        try:
            fh = blob.path.open("rb")
        except OSError as exc:
            raise ActionError(f"cannot read {blob.path}: {exc.strerror}", hint="run `vilms apply` again once the file is back") from None
        with fh:
            status, body = self._call("POST", f"/api/blobs/{blob.digest}", what, body=fh,
                                      headers={"Content-Length": str(blob.size), "Content-Type": "application/octet-stream"})
        if status not in (200, 201):
            raise ActionError(f"Ollama at {self.url} refused {blob.path.name} ({status}): {_error_of(_json(body, self.url, what, strict=False), body)}",
                              hint="if the file changed while uploading, run `vilms apply` again")

    def create(self, name: str, request: dict[str, Any]) -> None:
        """``POST /api/create`` and read its NDJSON progress to ``success`` or an ``error`` line."""
        what = f"creating {name}"
        body = json.dumps({"model": name, **request, "stream": True}).encode()

        def progress(response: http.client.HTTPResponse) -> None:
            if response.status != 200:
                raw = _read(response, MAX_BODY, what, self.url)
                raise ActionError(f"Ollama at {self.url} could not create {name} ({response.status}): "
                                  f"{_error_of(_json(raw, self.url, what, strict=False), raw)}", hint=self._create_hint(request))
            for line in _lines(response, what, self.url):
                data = _json(line, self.url, what)
                if isinstance(data, dict) and "error" in data:
                    raise ActionError(f"Ollama at {self.url} could not create {name}: {_error_of(data, line)}",
                                      hint=self._create_hint(request))
                if isinstance(data, dict) and data.get("status") == "success":
                    return
            raise ActionError(f"Ollama at {self.url} ended the answer to {what} without success",
                              hint="see `docker compose logs ollama`; run `vilms apply` again")

        self._call("POST", "/api/create", what, body=body, headers={"Content-Type": "application/json"},
                   on_response=progress)

    def _create_hint(self, request: dict[str, Any]) -> str:
        return (f"the base model {request.get('from', '')!r} must be on the server (the deployment's ollama-init "
                f"creates it; {self._start_hint}) and the adapter a GGUF LoRA of that base")

    def delete(self, name: str) -> None:
        """``DELETE /api/delete``; a model already gone is fine."""
        status, body = self._call("DELETE", "/api/delete", f"deleting {name}", body=json.dumps({"model": name}).encode(),
                                  headers={"Content-Type": "application/json"})
        if status not in (200, 404):
            raise ActionError(f"Ollama at {self.url} could not delete {name} ({status}): "
                              f"{_error_of(_json(body, self.url, 'deleting', strict=False), body)}",
                              hint="see `docker compose logs ollama`; run `vilms apply` again")


def shown_url(url: str) -> str:
    """``url`` without credentials, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


def _read(response: http.client.HTTPResponse, limit: int, what: str, url: str) -> bytes:
    data = response.read(limit + 1)
    if len(data) > limit:
        raise ActionError(f"Ollama at {url} sent more than {limit} bytes while {what}", hint="is that address an Ollama server?")
    return data


def _lines(response: http.client.HTTPResponse, what: str, url: str) -> Iterator[bytes]:
    for _ in range(MAX_LINES):
        line = response.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            raise ActionError(f"Ollama at {url} sent a progress line over {MAX_LINE} bytes while {what}",
                              hint="is that address an Ollama server?")
        if line.strip():
            yield line
    raise ActionError(f"Ollama at {url} sent more than {MAX_LINES} progress lines while {what}",
                      hint="see `docker compose logs ollama`")


def _json(raw: bytes, url: str, what: str, *, strict: bool = True) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        if not strict:
            return None
        raise ActionError(f"Ollama at {url} answered with something that is not JSON while {what}",
                          hint="is that address an Ollama server?") from None


def _error_of(data: Any, raw: bytes) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"][:500]
    return raw[:200].decode("utf-8", "replace") or "(no body)"


# --- what this deployment created


def record_path(root: Path, deployment: str) -> Path:
    return root / layout.RUNNER / deployment / layout.OLLAMA_RECORD


def read_record(path: Path) -> dict[str, str]:
    """Name → create key of the derived models ``vilms apply`` created for one deployment."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ActionError(f"{path}: cannot read: {exc}", hint=f"delete {path}; the next apply recreates every derived model") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in models.items()):
        raise ActionError(f"{path}: not a record of Ollama models ({{\"models\": {{name: key}}}})",
                          hint=f"delete {path}; the next apply recreates every derived model")
    return dict(models)


def _write_record(path: Path, models: dict[str, str]) -> None:
    """Replace the record in one step (temp file + rename)."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"models": dict(sorted(models.items()))}, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ActionError(f"cannot write {path}: {exc.strerror}",
                          hint="the server has the change; free the disk or fix the permissions, then apply again") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def full_name(name: str) -> str:
    """Ollama's name for ``name``: the tag defaults to ``latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass(frozen=True)
class SyncResult:
    created: tuple[str, ...]
    unchanged: tuple[str, ...]
    deleted: tuple[str, ...]
    uploaded: tuple[str, ...]  # blob digests sent


def sync(root: Path, deployment: str, bases: tuple[str, ...], server: OllamaClient | Callable[[], OllamaClient],
         echo: Callable[[str], None] = lambda _line: None) -> SyncResult:
    """Create new or changed derived models on the server, delete the ones this deployment created
    that are no longer generated; record each step once the server confirmed it. ``server`` may be
    a function that finds the server: it is called only when there is something to compare."""
    wanted = derived_models(root, deployment, bases)  # every local check before the server is asked
    path = record_path(root, deployment)
    record = read_record(path)
    if not wanted and not record:
        return SyncResult((), (), (), ())
    client = server if isinstance(server, OllamaClient) else server()
    present = client.tags()
    created, unchanged, deleted, uploaded = [], [], [], []
    for model in wanted:
        if record.get(model.name) == model.key and full_name(model.name) in present:
            unchanged.append(model.name)
            continue
        for blob in model.blobs:
            if not client.has_blob(blob.digest):
                echo(f"  ollama: uploading {blob.path.relative_to(root).as_posix() if blob.path.is_relative_to(root) else blob.name}")
                client.push_blob(blob)
                uploaded.append(blob.digest)
        echo(f"  ollama: creating {model.name} ({model.modelfile})")
        client.create(model.name, model.request)
        record[model.name] = model.key
        _write_record(path, record)
        created.append(model.name)
    names = {m.name for m in wanted}
    for name in sorted(set(record) - names):
        echo(f"  ollama: deleting {name} (no longer generated)")
        client.delete(name)
        del record[name]
        _write_record(path, record)
        deleted.append(name)
    if unchanged:
        echo(f"  ollama: unchanged: {', '.join(unchanged)}")
    return SyncResult(tuple(created), tuple(unchanged), tuple(deleted), tuple(uploaded))
