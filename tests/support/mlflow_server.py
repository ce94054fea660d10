"""A real MLflow tracking server for the tests: ``mlflow server`` with a SQLite backend store and
a local artifact root (artifacts proxied by the server), on 127.0.0.1, a free port.

:meth:`MlflowServer.start` waits for ``GET /health`` (bounded by :data:`START_TIMEOUT_S`); the
server dies with the test process (PR_SET_PDEATHSIG); :meth:`MlflowServer.stop` kills it and
everything it forked (its own process group). It can be started again on the same port and
store: a tracking server that goes down mid-run and comes back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.s3_server import _die_with_the_tests, free_port

START_TIMEOUT_S = 90.0  # a cold start imports the server and migrates the SQLite schema: 6 s quiet, ~25 s on busy cores
# no background job runner (7 huey consumers for GenAI evaluation jobs the tests never use, CPU they need);
# no proxied multipart uploads; the server's own tracking URI never inherited from the test's environment
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
              "MLFLOW_TRACKING_URI": ""}


class MlflowServer:
    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root  # holds mlflow.db, artifacts/ and server.log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0

    def start(self) -> MlflowServer:
        self.root.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with (self.root / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                 "--artifacts-destination", str(self.root / "artifacts"), "--serve-artifacts",
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_the_tests, env={**os.environ, **SERVER_ENV},
            )
        deadline = began + START_TIMEOUT_S
        while not self._healthy():
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server not healthy within {START_TIMEOUT_S} s: {self.log_tail()}")
            time.sleep(0.1)
        self.started_in_s = time.monotonic() - began
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server and its workers (its own process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, 9)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.process = None

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def client(self):  # noqa: ANN201 - mlflow is imported lazily
        """MLflow's own client of this server (the tests' view: what the trainer logged, what rollout registered)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)
