"""A real MLflow tracking server for the tests: ``mlflow server`` with a SQLite backend store and
a local artifact root (artifacts proxied by the server), on 127.0.0.1, a free port.

:func:`start` waits for ``GET /health`` to answer ``OK`` (bounded by :data:`START_TIMEOUT_S`);
the server dies with the test process (PR_SET_PDEATHSIG) and :meth:`MlflowServer.stop` kills it
and everything it forked (its own process group).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.support.s3_server import free_port

START_TIMEOUT_S = 90.0  # a cold start imports MLflow's server and migrates the SQLite schema: ~10 s on a busy machine
STOP_TIMEOUT_S = 10.0
# no background job runner (7 huey consumers: GenAI evaluation jobs the tests never use, CPU they need)
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_TRACKING_URI": ""}


def _in_own_group_dying_with_the_tests() -> None:
    """In the child: its own process group (stop() kills the workers too), and SIGTERM when the
    test process dies, even if it is killed (Linux prctl)."""
    import ctypes

    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class MlflowServer:
    url: str
    root: Path  # holds mlflow.db, artifacts/ and server.log
    process: subprocess.Popen

    def client(self):
        """MLflow's own client of this server (the tests' view: what the trainer logs, what rollout registered)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(root: Path) -> MlflowServer:
    """``mlflow server`` storing everything under ``root``; returns once /health answers."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with (root / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **SERVER_ENV},
                                   preexec_fn=_in_own_group_dying_with_the_tests)
    server = MlflowServer(f"http://127.0.0.1:{port}", root, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _healthy(server.url):
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode} before it answered:\n{server.log()}")
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"mlflow server did not answer /health within {START_TIMEOUT_S} s:\n{server.log()}")
        time.sleep(0.2)
    return server
