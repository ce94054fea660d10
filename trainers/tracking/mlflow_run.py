"""One ViLMS run as one MLflow run, sent from a background thread (:mod:`.sender`).

The MLflow run is found or created on the first delivery: by the id saved in the run folder
(:data:`RUN_FILE`), else by the tag :data:`~vilms.compiler.facts.telemetry.MLFLOW_RUN_TAG`, else
created with the params (the resolved training config), the dataset input and the run's tags.
A resumed run (``vilms train --resume``) therefore continues the same MLflow run. Every call is
bounded (:data:`HTTP_TIMEOUT_S`, no client-side retries: the sender retries). A server that is
down delays the metrics, never the training; what never reaches it is kept in the run folder
(:data:`SPILL_FILE`) and sent by the next session of the run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.training_config import MlflowSpec
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import telemetry as facts

from ..atomic import write_json
from . import params as flat
from .redact import redact, secrets_of_uri, shown_uri
from .sender import Rejected, Sender, read_spill

RUN_FILE = "mlflow-run.json"  # in the run folder: the MLflow run this run logs to
SPILL_FILE = "mlflow-unsent.jsonl"  # in the run folder: metrics and tags MLflow has not received yet
SENDING_FILE = "mlflow-unsent.sending.jsonl"  # an earlier session's spill while this one sends it (kept until sent)
HTTP_TIMEOUT_S = facts.MLFLOW_REQUEST_TIMEOUT_S
FINISH_TIMEOUT_S = 60.0  # at the end of a session: time to send what is still queued
FINISH_DOWN_TIMEOUT_S = 20.0  # ... while the server is down: time for it to come back
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log_batch limits
MAX_DIGEST = 36  # MLflow's limit on a dataset digest


def tracking_uri(spec: MlflowSpec, project_root: Path, environ: Mapping[str, str]) -> str:
    """The tracking URI: from the file or the environment; ``file:`` paths are relative to the project."""
    uri = spec.uri(project_root, environ)
    if uri is None:
        raise ActionError(
            f"tracking.mlflow.uri is env:{spec.tracking_uri_env} but {spec.tracking_uri_env} is not set",
            hint=f"export {spec.tracking_uri_env}=https://your-mlflow-server (or set tracking.mlflow: true for a "
                 "store in the project)",
        )
    return uri


def require(spec: MlflowSpec | None, project_root: Path, environ: Mapping[str, str]) -> None:
    """Fail before training, not after: the client is installed and the URI's variable is set."""
    if spec is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ActionError(
            "tracking.mlflow is set but the mlflow package is not installed",
            hint="pip install 'vilms[track]' (the MLflow client), or remove tracking.mlflow",
        ) from None
    tracking_uri(spec, project_root, environ)


def configure_client(uri: str) -> None:
    """Bound every request; never print the server's URL (it may hold credentials)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT_S))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if uri.startswith("file:"):  # `tracking.mlflow: true`: the project's own store, as before MLflow 3.7
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def dataset_input(name: str, path: str, sha256: str, rows: int, size_bytes: int,
                  provenance: Mapping[str, Any]) -> Any:
    """The run's training data as an MLflow dataset input (no pandas: the entity itself)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source = {"uri": path, "sha256": sha256}
    profile = {"sha256": sha256, "rows": rows, "bytes": size_bytes, "provenance": dict(provenance)}
    return DatasetInput(
        Dataset(name=name, digest=sha256[:MAX_DIGEST], source_type="local", source=json.dumps(source, sort_keys=True),
                schema=None, profile=json.dumps(profile, sort_keys=True)),
        tags=[InputTag("mlflow.data.context", "training")],
    )


class MlflowRun:
    def __init__(
        self,
        spec: MlflowSpec,
        uri: str,
        run_dir: Path,
        *,
        vilms_run_id: str,
        tags: Mapping[str, str],
        config: Mapping[str, Any],
        dataset: Any,
        label: str,
        secrets: Sequence[str] = (),
    ) -> None:
        from mlflow import MlflowClient

        configure_client(uri)
        self.spec = spec
        self.run_dir = run_dir
        self.vilms_run_id = vilms_run_id
        self._label = label
        self._shown = shown_uri(uri) if not spec.tracking_uri_env else f"${spec.tracking_uri_env}"
        self._secrets = [*secrets_of_uri(uri), *secrets, *([uri] if spec.tracking_uri_env else [])]
        self._client = MlflowClient(tracking_uri=uri)
        self._tags = {facts.MLFLOW_RUN_TAG: vilms_run_id, **tags}
        self._config = config
        self._dataset = dataset
        self._lock = threading.Lock()
        self.run_id: str | None = saved_run_id(run_dir)
        self._ready = False  # the run was made whole in this session
        self._carried = self._carry_over(run_dir)  # earlier sessions' undelivered items go first
        self._handled = 0  # items delivered (or refused and spilled) so far
        carried = self._carried
        self.sender = Sender(self._deliver, run_dir / SPILL_FILE, batch=MAX_METRICS,
                             on_down=self._on_down, on_up=self._on_up, on_rejected=self._on_rejected)
        self.sender.submit([{"open": True}, *carried])

    # ------------------------------------------------------------ the sender's thread
    def _deliver(self, items: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.exceptions import RestException

        try:
            self._send(items)
        except RestException as exc:
            status = exc.get_http_status_code()
            if 400 <= status < 500 and status not in (408, 429):  # refused, not unavailable: retrying cannot help
                self._handle(len(items))  # the sender spills them
                raise Rejected(f"HTTP {status} {exc.error_code}") from exc
            raise
        self._handle(len(items))

    def _carry_over(self, run_dir: Path) -> list[Any]:
        """Move what earlier sessions could not send aside (kept on disk until this session sent it)."""
        sending, spill = run_dir / SENDING_FILE, run_dir / SPILL_FILE
        items = [i for i in read_spill(sending) + read_spill(spill) if "open" not in i]
        if spill.exists() or sending.exists():
            sending.with_suffix(".tmp").write_text("".join(json.dumps(i, sort_keys=True) + "\n" for i in items),
                                                   encoding="utf-8")
            sending.with_suffix(".tmp").replace(sending)
            spill.unlink(missing_ok=True)
        return items

    def _handle(self, count: int) -> None:
        before = self._handled
        self._handled += count
        if before < 1 + len(self._carried) <= self._handled:  # the open marker and every carried item are through
            (self.run_dir / SENDING_FILE).unlink(missing_ok=True)

    def _send(self, items: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._ensure_run()
        metrics = [Metric(i["k"], float(i["v"]), int(i["t"]), int(i["s"])) for i in items if "k" in i]
        tags = [RunTag(i["tag"], str(i["v"])) for i in items if "tag" in i]
        for start in range(0, max(len(metrics), 1), MAX_METRICS):
            chunk = metrics[start:start + MAX_METRICS]
            if chunk or (start == 0 and tags):
                self._client.log_batch(run_id, metrics=chunk, tags=tags[:MAX_TAGS] if start == 0 else [])
        for start in range(MAX_TAGS, len(tags), MAX_TAGS):
            self._client.log_batch(run_id, tags=tags[start:start + MAX_TAGS])

    def _ensure_run(self) -> str:
        """The MLflow run, found or created, then made whole once per session: params and dataset input
        (a session that died while setting it up left them out), status RUNNING (a resumed run was FAILED)."""
        with self._lock:
            if self.run_id is None:
                self.run_id = self._find_run() or self._client.create_run(
                    self._experiment_id(), run_name=self.vilms_run_id, tags=dict(self._tags)).info.run_id
                write_json(self.run_dir / RUN_FILE, {"run_id": self.run_id})
            if not self._ready:
                self._make_whole(self._client.get_run(self.run_id))
                self._ready = True
            return self.run_id

    def _make_whole(self, run: Any) -> None:
        from mlflow.entities import Param

        if not run.data.params:
            params = [Param(k, v) for k, v in flat.flatten(self._config).items()]
            for start in range(0, len(params), MAX_PARAMS):
                self._client.log_batch(run.info.run_id, params=params[start:start + MAX_PARAMS])
        if self._dataset is not None and not run.inputs.dataset_inputs:
            self._client.log_inputs(run.info.run_id, datasets=[self._dataset])
        if run.info.status != "RUNNING":
            self._client.update_run(run.info.run_id, status="RUNNING")

    def _experiment_id(self) -> str:
        found = self._client.get_experiment_by_name(self.spec.experiment)
        return found.experiment_id if found else self._client.create_experiment(self.spec.experiment)

    def _find_run(self) -> str | None:
        runs = self._client.search_runs(
            [self._experiment_id()], f"tags.`{facts.MLFLOW_RUN_TAG}` = '{self.vilms_run_id}'", max_results=1)
        return runs[0].info.run_id if runs else None

    def _on_down(self, exc: BaseException) -> None:
        print(f"{self._label}: MLflow at {self._shown} is unreachable ({self._why(exc)}); training continues, "
              "metrics wait and are sent when it is back", file=sys.stderr)

    def _on_rejected(self, exc: Rejected) -> None:
        print(f"{self._label}: MLflow at {self._shown} refused the run's metrics ({self._why(exc)}); they are kept in "
              f"{self.run_dir / SPILL_FILE}; training continues", file=sys.stderr)

    def _on_up(self, sent: int) -> None:
        print(f"{self._label}: MLflow at {self._shown} is reachable again; queued metrics sent", file=sys.stderr)

    def _why(self, exc: BaseException) -> str:
        text = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, self._secrets)
        return text if len(text) <= 300 else text[:297] + "..."

    # ------------------------------------------------------------ the training's thread
    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self.sender.submit([{"k": k, "v": float(v), "s": int(step), "t": now} for k, v in values.items()])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.sender.submit([{"tag": k, "v": v} for k, v in tags.items()])

    def finish(self, status: str, artifacts: Sequence[Path], timeout_s: float = FINISH_TIMEOUT_S,
               down_timeout_s: float = FINISH_DOWN_TIMEOUT_S) -> None:
        """Send what is queued, then the artifacts, then end the MLflow run with ``status`` (FINISHED,
        FAILED). What cannot be sent stays in the run folder, and the message says where."""
        spilled = self.sender.close(timeout_s, grace_s=HTTP_TIMEOUT_S + 1, down_timeout_s=down_timeout_s)
        (self.run_dir / SENDING_FILE).unlink(missing_ok=True)  # sent, or spilled again with the rest
        if spilled:
            print(f"{self._label}: MLflow at {self._shown} did not receive {spilled} metric(s) and tag(s): kept in "
                  f"{self.run_dir / SPILL_FILE}; the next session of this run (--resume) sends them", file=sys.stderr)
        if self.run_id is None or self.sender.down:  # never reached, or down now: the run folder has everything
            return
        try:
            for path in artifacts:
                if path.is_dir():
                    self._client.log_artifacts(self.run_id, str(path), path.name)
                elif path.exists():
                    self._client.log_artifact(self.run_id, str(path))
            self._client.set_terminated(self.run_id, status)
        except Exception as exc:  # noqa: BLE001 — the run is complete on disk; MLflow only mirrors it
            print(f"{self._label}: MLflow at {self._shown} failed while ending the run ({self._why(exc)}); "
                  f"its artifacts are in {self.run_dir}", file=sys.stderr)


def saved_run_id(run_dir: Path) -> str | None:
    try:
        return str(json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
