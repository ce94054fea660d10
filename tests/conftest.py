"""Shared fixtures: run the real `vilms` CLI in a subprocess, build example projects."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_vilms(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "vilms", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def vilms():
    return run_vilms


@pytest.fixture
def project(tmp_path: Path):
    """Write a vilms.yaml (text or bytes) into a fresh folder and return its path."""

    def make(content: str | bytes, name: str = "vilms.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    """llama.cpp's own server: ``$VILMS_LLAMA_SERVER``, else built once per machine from the
    installed llama-cpp-python's sdist (6.5-15 min on 2 cores) and cached (tests/support/llama_server.py)."""
    from tests.support.llama_server import llama_server

    try:
        return llama_server()
    except RuntimeError as exc:
        pytest.fail(str(exc))
