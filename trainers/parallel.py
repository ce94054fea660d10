"""``vilms train --all -j N``: every adapter, one after another or N processes at a time.

Each adapter trains in its own process (``python -m vilms train ADAPTER``) with
its own run directory; run ids are unique and every artifact is written atomically, so
parallel runs cannot corrupt each other's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vilms.compiler.errors import ERROR_FILE_ENV, ActionError, ExitCode
from vilms.compiler.layout import TRAINING, Layout

from .job import adapters


@dataclass(frozen=True)
class AdapterResult:
    adapter: str
    ok: bool
    output: str
    returncode: int = 0
    error_text: str = ""  # the error `vilms train ADAPTER` printed, exactly (empty: none)

    @property
    def gate_refused(self) -> bool:
        """The adapter trained to the end but its gate failed or needs approval (ExitCode.GATE)."""
        return self.returncode == ExitCode.GATE

    @property
    def error(self) -> str:
        """The adapter's whole error: what it printed as its error, else its output's last lines."""
        if self.error_text.strip():
            return self.error_text.strip()
        tail = self.output.strip().splitlines()[-20:]
        return "\n".join(tail) if tail else f"exit code {self.returncode}, no output"

    def summary(self) -> str:
        last = self.output.strip().splitlines()[-1] if self.output.strip() else ""
        outcome = "ok" if self.ok else "gate not passed" if self.gate_refused else "FAILED"
        return f"{self.adapter}: {outcome}" + (f" — {last}" if last and self.ok else "")


def list_adapters(project_file: Path) -> list[str]:
    layout = Layout.of(project_file)
    found = adapters(layout)
    if not found:
        raise ActionError(f"no training configs in {layout.in_generated(TRAINING)}", hint="run `vilms build` first")
    return found


def train_all(
    project_file: Path, *, jobs: int = 1, resume: bool = False, show_progress: bool = False
) -> list[AdapterResult]:
    adapters = list_adapters(project_file)
    threads = os.environ.get("VILMS_TORCH_THREADS") or str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**os.environ, "VILMS_TORCH_THREADS": threads}
    pending = list(adapters)
    running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
    results: dict[str, AdapterResult] = {}
    with tempfile.TemporaryDirectory(prefix="vilms-train-all-") as folder:
        errors = Path(folder)
        _run_all(project_file, pending, running, results, env, jobs, resume, errors)
    return [results[a] for a in adapters]


def _run_all(project_file: Path, pending: list[str], running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]],
             results: dict[str, AdapterResult], env: dict[str, str], jobs: int, resume: bool, errors: Path) -> None:
    while pending or running:
        while pending and len(running) < jobs:
            adapter = pending.pop(0)
            cmd = [
                sys.executable,
                "-m",
                "vilms",
                "train",
                adapter,
                "-f",
                str(project_file),
                "--no-progress",
            ] + (["--resume"] if resume else [])
            log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty child can never block
            error = errors / f"{adapter}.error"
            child_env = {**env, ERROR_FILE_ENV: str(error)}
            running[adapter] = (subprocess.Popen(cmd, env=child_env, stdout=log, stderr=subprocess.STDOUT), log)
        for adapter, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.seek(0)
                output = log.read().decode("utf-8", "replace")
                log.close()
                error = errors / f"{adapter}.error"
                text = error.read_text(encoding="utf-8", errors="replace") if error.is_file() else ""
                results[adapter] = AdapterResult(adapter, proc.returncode == 0, output, proc.returncode, text)
                del running[adapter]
        time.sleep(0.1)
