"""MLflow's client of one adapter's registered model, which `vilms rollout` and `vilms rollback`
keep in line with vilms.yaml: its alias (``production`` by default) on the version of the run
vilms.yaml releases.

A run's version is ``runs:/<mlflow run>/adapter`` (the trainer logs the adapter folder there and
tags its MLflow run :data:`~vilms.compiler.facts.telemetry.MLFLOW_RUN_TAG` = the ViLMS run id),
registered under the adapter's name. :meth:`Registry.prepare` finds or registers that version
(never twice for one run) and tags it; :meth:`Registry.point` moves the alias (or removes it
when the release becomes null). The commands call ``prepare`` before they write anything and
``point`` after vilms.yaml is written (:mod:`.release`; docs/releases.md).

Every call is bounded: MLflow's HTTP client gets :data:`REQUEST_TIMEOUT_S` per request and at
most :data:`MAX_RETRIES` retry, instead of its default of 7 retries with backoff (minutes). The
tracking URI can hold credentials (``env:NAME``): no message names it, only where it comes from.
mlflow is imported lazily (the ``track`` extra).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.contracts.training_config import MlflowSpec
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.facts import telemetry as facts
from vilms.compiler.layout import Layout

REQUEST_TIMEOUT_S = facts.MLFLOW_REQUEST_TIMEOUT_S
MAX_RETRIES = 1  # then give up: an outage is reported in seconds, not after minutes of backoff
BACKOFF_FACTOR = 1
ADAPTER_ARTIFACT = "adapter"  # the artifact path of the adapter folder in the trainer's MLflow run
# tags `vilms rollout` sets on a version
TAG_RUN = facts.MLFLOW_RUN_TAG
TAG_GATE = "vilms.gate"  # the gate status of the run (passed, approved, ...); "unchecked" when the run is not here
TAG_APPROVER = "vilms.approver"  # who approved it (`vilms approve`), when a human did
UNCHECKED = "unchecked"
MAX_QUOTED = 300  # characters of an MLflow error quoted in a message (a proxy's HTML error page is not)

_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")  # user:password@ in any URL a message quotes
# what an env:NAME may hold: the schema's URL (http(s), host, port, path), plus user:password@
SERVER_URL = re.compile(r"^https?://([^/@\s]+@)?[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?$")


class SettingError(ActionError):
    """A release the registry cannot follow because of what ``adapters.<a>.tracking.mlflow.<key>``
    in vilms.yaml says (an unset variable, an experiment without the run): the command locates it."""

    def __init__(self, message: str, *, key: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key


@dataclass(frozen=True)
class Version:
    """The registered version of one ViLMS run."""

    model: str
    version: str
    run_id: str  # the ViLMS run
    mlflow_run: str
    created: bool  # registered now (False: it was already)


@dataclass(frozen=True)
class Pointed:
    """Where the alias was and is."""

    model: str
    alias: str
    before: str | None  # version, None: the alias was not set
    after: str | None  # version, None: the alias is removed (release null)

    def summary(self) -> str:
        was = f"version {self.before}" if self.before else "unset"
        if self.after is None:
            return f"MLflow registry: {self.model}@{self.alias} removed (was {was})"
        if self.before == self.after:
            return f"MLflow registry: {self.model}@{self.alias} already on version {self.after}"
        return f"MLflow registry: {self.model}@{self.alias} → version {self.after} (was {was})"


def where(adapter: str, spec: MlflowSpec) -> str:
    """How messages name the tracking server: where its URI is written, never the URI."""
    key = f"adapters.{adapter}.tracking.mlflow"
    if spec.tracking_uri_env:
        return f"the MLflow server in ${spec.tracking_uri_env} ({key}.uri)"
    if spec.tracking_uri and not spec.tracking_uri.startswith("file:"):
        return f"the MLflow server of {key}.uri"
    return f"the MLflow store of {key} (mlruns/ beside vilms.yaml)"


def tracking_uri(adapter: str, spec: MlflowSpec, project_root: Path, environ: Mapping[str, str]) -> str:
    """The URI from vilms.yaml or its environment variable; ``file:`` relative to the project."""
    uri = spec.uri(project_root, environ)
    if spec.tracking_uri_env:
        if uri is None:
            raise SettingError(f"env:{spec.tracking_uri_env} is not set, so the MLflow Model Registry cannot follow "
                               "this release", key="uri",
                               hint=f"export {spec.tracking_uri_env}=<the tracking server's URL>, "
                                    "or pass --skip-registry to release without the Model Registry")
        if not SERVER_URL.match(uri):
            raise SettingError(f"${spec.tracking_uri_env} does not hold a tracking server URL (http(s)://host[:port][/path]); "
                               "its value is not shown", key="uri",
                               hint=f"set {spec.tracking_uri_env} to the server's URL, e.g. https://mlflow.example.com")
        return uri.rstrip("/")
    return str(uri)


def release_tags(layout: Layout, run_id: str) -> dict[str, str]:
    """The version's tags: the run id, its gate status and approver from ``artifacts/<run>/run.json``
    (gate ``unchecked`` when the run is not here, as `vilms rollout` warns)."""
    tags = {TAG_RUN: run_id, TAG_GATE: UNCHECKED}
    path = layout.run_record(run_id)
    if not path.is_file():
        return tags
    try:
        record = RUN_RECORD.load(path)
    except InvalidInputError:
        return tags  # rollout has already refused an unreadable record of a run it releases
    tags[TAG_GATE] = record.gate_status or UNCHECKED
    if record.approvals:
        tags[TAG_APPROVER] = record.approvals[-1].who
    return tags


def open_registry(adapter: str, spec: MlflowSpec, project_root: Path, environ: Mapping[str, str]) -> Registry:
    uri = tracking_uri(adapter, spec, project_root, environ)
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ActionError(f"adapters.{adapter}.tracking.mlflow: releasing to the MLflow Model Registry needs mlflow, "
                          "which is not installed",
                          hint="pip install 'vilms[track]', or pass --skip-registry to release without it") from None
    return Registry(adapter, spec, MlflowClient(tracking_uri=uri, registry_uri=uri), where(adapter, spec), uri)


class Registry:
    """The registered model of one adapter on one tracking server."""

    def __init__(self, adapter: str, spec: MlflowSpec, client: Any, where: str, uri: str) -> None:
        self.adapter = adapter
        self.spec = spec
        self.client = client
        self.where = where
        self._file_store = uri.startswith("file:")
        netloc = uri.split("://", 1)[-1].split("/", 1)[0]
        userinfo = netloc.rpartition("@")[0]
        # longest first: the URI, its host part, its user:password
        self._secrets = tuple(sorted({s for s in (uri, netloc, userinfo) if s}, key=len, reverse=True))

    @property
    def model(self) -> str:
        return self.spec.registered_model

    @property
    def alias(self) -> str:
        return self.spec.registry_alias

    # --- the two steps of a release

    def prepare(self, run_id: str, tags: Mapping[str, str]) -> Version:
        """The version of ``run_id``: found (one per run) or registered from ``runs:/<id>/adapter``,
        with ``tags`` set on it. Changes no alias."""
        mlflow_run = self._mlflow_run(run_id)
        with self._call(f"reading the versions of registered model {self.model!r}"):
            self._ensure_model()
            existing = self.client.search_model_versions(f"name = '{_quoted(self.model)}' and run_id = '{mlflow_run}'")
        if existing:
            version, created = str(min(int(v.version) for v in existing)), False
        else:
            with self._call(f"registering run {run_id} as a version of {self.model!r}"):
                made = self.client.create_model_version(self.model, f"runs:/{mlflow_run}/{ADAPTER_ARTIFACT}",
                                                        run_id=mlflow_run, tags=dict(tags), await_creation_for=0)
            version, created = str(made.version), True
        if not created:
            with self._call(f"tagging version {version} of {self.model!r}"):
                for key, value in sorted(tags.items()):
                    self.client.set_model_version_tag(self.model, version, key, value)
        return Version(self.model, version, run_id, mlflow_run, created)

    def point(self, version: Version | None) -> Pointed:
        """Move the alias to ``version``; None removes it (the adapter is unreleased)."""
        before = self.current()
        with self._call(f"moving alias {self.alias!r} of {self.model!r}"):
            if version is not None and before != version.version:
                self.client.set_registered_model_alias(self.model, self.alias, version.version)
            elif version is None and before is not None:
                self.client.delete_registered_model_alias(self.model, self.alias)
        return Pointed(self.model, self.alias, before, None if version is None else version.version)

    def current(self) -> str | None:
        """The version the alias points at; None when it is not set (or the model does not exist)."""
        from mlflow.exceptions import MlflowException

        try:
            with _bounded(self._file_store):
                return str(self.client.get_model_version_by_alias(self.model, self.alias).version)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise self._error(exc, f"reading alias {self.alias!r} of {self.model!r}") from None

    # --- helpers

    def _mlflow_run(self, run_id: str) -> str:
        """The MLflow run the trainer tagged with ``run_id``, which must hold the adapter folder."""
        experiment = self.spec.experiment
        with self._call(f"finding the MLflow run of {run_id}"):
            found = self.client.get_experiment_by_name(experiment)
            runs = [] if found is None else self.client.search_runs(
                [found.experiment_id], f"tags.`{TAG_RUN}` = '{_quoted(run_id)}'", max_results=10,
                order_by=["attributes.start_time DESC"])
        if not runs:
            there = f"experiment {experiment!r} has no run" if found is not None else f"there is no experiment {experiment!r}"
            raise SettingError(f"cannot register {run_id} in the MLflow Model Registry: {there} tagged "
                               f"{TAG_RUN}={run_id} at {self.where}", key="experiment",
                               hint="was the run trained without tracking.mlflow, or against another tracking server or "
                                    "experiment? pass --skip-registry to release it without the registry")
        run = next((r for r in runs if r.info.status == "FINISHED"), runs[0])
        with self._call(f"listing the artifacts of the MLflow run of {run_id}"):
            files = self.client.list_artifacts(run.info.run_id, ADAPTER_ARTIFACT)
        if not files:
            raise ActionError(f"cannot register {run_id}: its MLflow run {run.info.run_id} has no {ADAPTER_ARTIFACT}/ "
                              f"artifacts at {self.where}",
                              hint="the trainer logs the adapter folder when the run completes; "
                                   "pass --skip-registry to release it without the registry")
        return str(run.info.run_id)

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                raise
            try:
                self.client.create_registered_model(
                    self.model, description=f"Released runs of the ViLMS adapter {self.adapter} (vilms rollout)")
            except MlflowException as race:
                if getattr(race, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            with _bounded(self._file_store):
                yield
        except MlflowException as exc:
            raise self._error(exc, what) from None

    def _error(self, exc: Any, what: str) -> ActionError:
        code = getattr(exc, "error_code", None) or ""
        full = self._scrub(str(getattr(exc, "message", exc)))
        lowered = full.lower()  # classified on all of it, quoted in part
        text = full if len(full) <= MAX_QUOTED else full[:MAX_QUOTED] + "…"
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or " 401 " in full or " 403 " in full:
            return ActionError(f"{self.where} refused {what}: not authorized ({code or 'HTTP 401/403'})",
                               hint="check the credentials MLflow's client sends: MLFLOW_TRACKING_USERNAME and "
                                    "MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN, or user:password@ in the URI")
        if "API request to" in full and code in ("", "INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "ENDPOINT_NOT_FOUND"):
            if "timed out" in lowered or "timeout" in lowered:
                reason = "timed out"
            elif "refused" in lowered:
                reason = "connection refused"
            elif "error responses" in lowered or "error code 5" in lowered:
                reason = "it answered with server errors (HTTP 5xx)"
            elif "error code 404" in lowered:
                reason = "HTTP 404: is the URI the tracking server's base URL?"
            else:
                reason = "no answer"
            return ActionError(f"cannot reach {self.where} while {what} ({reason})",
                               hint="start the tracking server or fix its URI; or pass --skip-registry "
                                    "to release without the Model Registry")
        return ActionError(f"{self.where} refused {what}: {text}")

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<tracking server>")
        return _USERINFO.sub("***@", text)


def _quoted(value: str) -> str:
    """A value inside a single-quoted MLflow filter string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


@contextmanager
def _bounded(file_store: bool = False) -> Iterator[None]:
    """MLflow's HTTP client with bounded waits and quiet loggers, for the duration of a call.
    ``file_store``: the project's own ``mlruns/`` (``mlflow: true``), which MLflow 3 opens only
    when asked to (its file backend is in maintenance mode); the trainer writes it the same way."""
    settings = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT_S), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(MAX_RETRIES),
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(BACKOFF_FACTOR)}
    if file_store:
        settings["MLFLOW_ALLOW_FILE_STORE"] = "true"
    saved = {name: os.environ.get(name) for name in settings}
    logger = logging.getLogger("mlflow")
    level = logger.level
    os.environ.update(settings)
    logger.setLevel(logging.ERROR)  # MLflow's INFO/WARNING lines may quote the tracking URI
    try:
        yield
    finally:
        logger.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
