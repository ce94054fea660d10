"""What a GGUF file says about itself, checked against vilms.yaml before any server starts.

Only the header is read (``gguf.GGUFReader`` maps the file and parses its key/value metadata
and tensor table; no tensor data is read). ``general.architecture`` must be one the model's
``family`` allows (:data:`~vilms.compiler.facts.llamacpp.GGUF_ARCHITECTURES`), and neither the
model's ``context`` nor the context a server runs may exceed ``<arch>.context_length``, the
context the weights were trained for (n_ctx_train): llama.cpp would run it, and the output past
that length is garbage, so it is an error. A file that is not a GGUF, or is cut short, is a
one-line error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.errors import ActionError
from vilms.compiler.facts.llamacpp import GGUF_ARCHITECTURES

ARCHITECTURE_KEY = "general.architecture"
CONTEXT_KEY = "{arch}.context_length"
MAGIC = b"GGUF"


@dataclass(frozen=True)
class GgufHeader:
    architecture: str
    context_length: int | None  # n_ctx_train; None when the file does not say


def read_header(path: Path) -> GgufHeader:
    """The architecture and trained context of the GGUF at ``path``; :class:`ActionError`
    (one line, naming the file) when it is unreadable, not a GGUF, or truncated."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(MAGIC))
    except OSError as exc:
        raise ActionError(f"{path}: cannot read the GGUF file: {exc.strerror or exc}",
                          hint="check the file's permissions") from None
    if magic != MAGIC:
        raise ActionError(f"{path}: not a GGUF file (it does not start with the GGUF magic)",
                          hint=_REPLACE_HINT)
    import gguf  # imported late: only `vilms up` needs it

    try:
        reader = gguf.GGUFReader(str(path), "r")
        arch = _string(reader, ARCHITECTURE_KEY)
        context = _int(reader, CONTEXT_KEY.format(arch=arch)) if arch is not None else None
    except Exception:  # GGUFReader raises ValueError, IndexError, struct errors … on a cut file
        raise ActionError(f"{path}: truncated or corrupt GGUF file ({path.stat().st_size} bytes): its metadata "
                          "or tensor table ends early or is malformed", hint=_REPLACE_HINT) from None
    if arch is None:
        raise ActionError(f"{path}: the GGUF file has no {ARCHITECTURE_KEY}", hint=_REPLACE_HINT)
    return GgufHeader(architecture=arch, context_length=context)


_REPLACE_HINT = "download or convert the model's GGUF again (the file may be incomplete)"


def _field(reader, key: str):  # type: ignore[no-untyped-def]
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    return field.parts[field.data[0]]


def _string(reader, key: str) -> str | None:  # type: ignore[no-untyped-def]
    part = _field(reader, key)
    return None if part is None else bytes(part).decode("utf-8", errors="replace")


def _int(reader, key: str) -> int | None:  # type: ignore[no-untyped-def]
    part = _field(reader, key)
    return None if part is None or len(part) != 1 else int(part[0])


@dataclass(frozen=True)
class Mismatch:
    """One way a GGUF disagrees with vilms.yaml; ``at`` is the vilms.yaml path to fix."""

    at: tuple[str | int, ...]
    message: str
    hint: str


def compare(header: GgufHeader, *, file: str, model: str, family: str, model_context: int,
            deployment: str, served_context: int) -> list[Mismatch]:
    """What in vilms.yaml contradicts the GGUF's ``header``; ``file`` is how to name it."""
    out: list[Mismatch] = []
    allowed = GGUF_ARCHITECTURES.get(family, (family,))
    if header.architecture not in allowed:
        out.append(Mismatch(("models", model, "family"),
                            f"model {model} has family {family}, but {file} is a {header.architecture} model "
                            f"(general.architecture; {family} allows {', '.join(allowed)})",
                            f"set the model's family to match the GGUF, or point gguf:/source: at a {family} GGUF"))
    trained = header.context_length
    if trained is not None and model_context > trained:
        out.append(Mismatch(("models", model, "context"),
                            f"model {model} declares context {model_context}, but {file} was trained for "
                            f"{trained} tokens ({header.architecture}.context_length)",
                            f"set models.{model}.context to at most {trained}"))
    elif trained is not None and served_context > trained:
        out.append(Mismatch(("deployments", deployment),
                            f"deployment {deployment} serves {model} with context {served_context}, but {file} "
                            f"was trained for {trained} tokens ({header.architecture}.context_length)",
                            f"serve at most {trained} tokens of context, then `vilms build`"))
    return out
