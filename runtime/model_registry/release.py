"""The Model Registry follows a release: what `vilms rollout` and `vilms rollback` do with
MLflow, and in which order (docs/releases.md, "MLflow Model Registry").

vilms.yaml is the truth and the registry follows it. Before anything is written
(:meth:`FollowRelease.prepare`, called with the artifact-store push), the run's version is found
or registered and tagged: a failure there refuses the release and changes no file. After
vilms.yaml and generated/ are written (:meth:`FollowRelease.follow`), the alias moves; if that
fails, the error says the files changed and which command brings the registry in line (rolling
out the run vilms.yaml releases changes no file and only moves the alias).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from vilms.compiler.contracts.training_config import MlflowSpec
from vilms.compiler.document import dotted
from vilms.compiler.errors import Diagnostic, InvalidInputError, VilmsError
from vilms.compiler.layout import Layout
from vilms.compiler.load import load
from vilms.compiler.pipeline import display_name, plan_document
from vilms.compiler.plan import Plan
from vilms.compiler.rollout import ReleaseChange

from .client import Registry, SettingError, Version, open_registry, release_tags


class FollowRelease:
    """The MLflow Model Registry's part of `vilms rollout` / `vilms rollback` for one adapter.

    Before anything is written (:meth:`prepare`, from the publish callback): the run's version is
    found or registered and tagged; a failure there changes nothing. After vilms.yaml and
    generated/ are written (:meth:`follow`): the alias moves. vilms.yaml is the truth: should the
    move fail, the error says the files changed and which command brings the registry in line
    (rolling out the run vilms.yaml releases only moves the alias)."""

    def __init__(self, file: Path, adapter: str, *, skip: bool, apply_: bool, echo: Callable[..., None]) -> None:
        """``skip``: --skip-registry; ``apply_``: the command deploys after (said in the resync
        command); ``echo(text, err=False)`` prints a line."""
        self.file, self.adapter, self.skip, self.apply_, self.echo = file, adapter, skip, apply_, echo
        self.spec: MlflowSpec | None = None
        self.registry: Registry | None = None
        self.version: Version | None = None
        self.prepared = False

    def check(self) -> None:
        """Before a rollback (whose target may be null, where nothing is registered first): the
        registry must answer, so an outage refuses the rollback instead of failing after the edit."""
        try:
            self.spec = self._spec(self._plan())
        except InvalidInputError:
            return  # the rollback itself reports what is wrong with vilms.yaml, located
        if self.spec is None or self.skip:
            return
        try:
            self._open()
            self.registry.current()
        except VilmsError as exc:
            error = self._located(exc)
            error.message += f"\nnot rolled back: {self.file} and generated/ were not changed"
            raise error from None

    def prepare(self, plan: Plan, run_id: str) -> None:
        """Before anything is written: the version of ``run_id`` (found or registered, tagged)."""
        self.prepared = True
        self.spec = self._spec(plan)
        if self.spec is None or self.skip:
            return
        try:
            self._open()
            self.version = self.registry.prepare(run_id, self._tags(run_id))
        except VilmsError as exc:
            error = self._located(exc)
            error.message += f"\nnot released: {self.file} and generated/ were not changed"
            raise error from None
        done = "registered as" if self.version.created else "already"
        self.echo(f"MLflow registry: {run_id} {done} version {self.version.version} of {self.version.model}")

    def follow(self, change: ReleaseChange) -> None:
        """After vilms.yaml is written (or left as it was): move the alias to the release."""
        if not self.prepared and self.spec is None:  # nothing was published: the release is unchanged, or null
            self.spec = self._spec(self._plan())
        if self.spec is None:
            return
        target = f"{self.spec.registered_model}@{self.spec.registry_alias}"
        if self.skip:
            self.echo(f"warning: --skip-registry: the MLflow Model Registry was not changed; {target} may not be on "
                       f"{change.after or 'nothing'} yet. {self._resync(change)}", err=True)
            return
        try:
            if self.registry is None:
                self._open()
            if change.after is not None and self.version is None:
                self.version = self.registry.prepare(change.after, self._tags(change.after))
                self.echo(f"MLflow registry: {change.after} is version {self.version.version} of {self.version.model}")
            pointed = self.registry.point(self.version if change.after is not None else None)
        except VilmsError as exc:
            error = self._located(exc)
            if change.changed:
                error.message += (f"\n{self.file} and generated/ now release {change.after or 'null'}, "
                                  f"but {target} was not moved. {self._resync(change)}")
            raise error from None
        self.echo(pointed.summary())

    def _resync(self, change: ReleaseChange) -> str:
        if change.after is not None:
            command = f"vilms rollout {self.adapter} {change.after} -f {self.file}" + (" --apply" if self.apply_ else "")
            deploy = " (nothing was deployed; that command deploys too)" if self.apply_ and not self.skip else ""
            return f"To bring it in line, run `{command}` once the server answers{deploy}."
        return (f"To bring it in line, remove the alias once the server answers: "
                f"MlflowClient().delete_registered_model_alias({self.spec.registered_model!r}, {self.spec.registry_alias!r}).")

    def _located(self, exc: VilmsError) -> VilmsError:
        """A problem of a tracking.mlflow setting, as a diagnostic at its place in vilms.yaml."""
        if not isinstance(exc, SettingError):
            return exc
        doc = load(self.file, display_name(self.file))
        path = ("adapters", self.adapter, "tracking", "mlflow", exc.key)
        line, column = doc.locate(path)
        return InvalidInputError([Diagnostic(doc.display_name, line, column, dotted(path), exc.message, exc.hint)])

    def _spec(self, plan: Plan) -> MlflowSpec | None:
        found = plan.adapters.get(self.adapter)
        return None if found is None else found.mlflow

    def _plan(self) -> Plan:
        return plan_document(load(self.file, display_name(self.file)), fit=False)

    def _open(self) -> None:
        self.registry = open_registry(self.adapter, self.spec, Layout.of(self.file).root, os.environ)

    def _tags(self, run_id: str) -> dict[str, str]:
        return release_tags(Layout.of(self.file), run_id)
