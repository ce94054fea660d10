"""The per-run engine key: llama.cpp servers of a local deployment answer only the gateway.

Each fresh `vilms up` makes a new random key (:func:`rotate`) in the run folder,
``.vilms/run/<deployment>/engine.key``, mode 0600 (never in generated/, never on a command
line, never logged). llama-server reads it with ``--api-key-file``; llama-cpp-python's server
gets it as ``api_key`` in its config file (also 0600, in the run folder); the gateway gets it in
:data:`~vilms.compiler.facts.llamacpp.ENGINE_KEY_ENV`, which the routes name as the llama.cpp
backends' ``api_key_env``, and sends it as ``Authorization: Bearer``. Health probes send it
too (llama-server's /health is public; llama-cpp-python's /v1/models is not).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from vilms.compiler.errors import ActionError

KEY_FILE = "engine.key"
PRIVATE = 0o600
KEY_BYTES = 32


def key_file(run_folder: Path) -> Path:
    return run_folder / KEY_FILE


def write_private(path: Path, content: bytes) -> None:
    """Write ``path`` (mode 0600 from its creation) through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(content)
    temp.replace(path)


def rotate(run_folder: Path) -> str:
    """A new key for a fresh start of the deployment."""
    key = secrets.token_urlsafe(KEY_BYTES)
    try:
        write_private(key_file(run_folder), key.encode() + b"\n")
    except OSError as exc:
        raise ActionError(f"cannot write the engine key in {run_folder}: {exc.strerror or exc}",
                          hint="check the permissions of the .vilms/ folder beside vilms.yaml") from None
    return key


def current(run_folder: Path) -> str:
    """The key of the run: the one in the run folder, or a new one when there is none."""
    try:
        key = key_file(run_folder).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        key = ""
    return key or rotate(run_folder)


def read(run_folder: Path) -> str | None:
    """The key of a running deployment, for probes from another command (`vilms status`)."""
    try:
        return key_file(run_folder).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def bearer(key: str | None) -> tuple[tuple[str, str], ...]:
    return (("Authorization", f"Bearer {key}"),) if key else ()
