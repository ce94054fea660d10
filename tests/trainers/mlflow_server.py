"""A real MLflow tracking server for the tests: ``mlflow server`` on 127.0.0.1, a free port, a SQLite
backend store and a local artifact root (served by the server: ``--serve-artifacts``).

It can be stopped and started again on the same port and store, as a server that goes down
mid-run and comes back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.s3_server import _die_with_the_tests, free_port

START_TIMEOUT_S = 60.0  # on 2 busy cores it starts in ~6 s


class MlflowServer:
    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0

    def start(self) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "server.log").open("ab")
        began = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", str(self.root / "artifacts"), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_the_tests,
            env={**os.environ, "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"},
        )
        log.close()
        deadline = began + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server not healthy within {START_TIMEOUT_S} s: {self.log_tail()}")
            time.sleep(0.1)
        self.started_in_s = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Kill the server and its workers (its own process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.process = None

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def client(self):  # noqa: ANN201 - mlflow is imported lazily
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri)
