"""Commands that change what runs: rollout, rollback, apply."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vilms.compiler.errors import UsageError, VilmsError
from vilms.compiler.layout import Layout

from .options import APPLY, DEPLOYMENT, FILE, OLLAMA_URL, SKIP_REGISTRY, YES, output_format


@click.command()
@click.argument("adapter")
@click.argument("run_id")
@FILE
@APPLY
@YES
@OLLAMA_URL
@SKIP_REGISTRY
@click.option("--force", is_flag=True, help="Release RUN_ID by name even though a run in artifacts/ here has a close name.")
def rollout(adapter: str, run_id: str, file: Path, apply_: bool, yes: bool, ollama_url: str | None,
            skip_registry: bool, force: bool) -> None:
    """Release RUN_ID for ADAPTER: edit its release: in vilms.yaml and rebuild generated/.

    When a Ray deployment serves ADAPTER, RUN_ID is first pushed to the artifact store and
    verified; if that fails, nothing is changed. When ADAPTER has tracking.mlflow, RUN_ID's
    version in the MLflow Model Registry is found or registered first, and the alias moved to
    it after vilms.yaml is written. Rolling out the run already released only does the latter.
    A RUN_ID not in artifacts/ whose name is close to one there is refused unless --force."""
    from vilms.compiler.rollout import rollout as run_rollout

    _can_confirm(apply_, yes)
    registry = _registry(file, adapter, skip_registry, apply_)
    change = run_rollout(file, adapter, run_id, publish=_publisher(file, adapter, registry, apply_), force=force)
    _released(change, file, apply_, yes, ollama_url, registry)


@click.command()
@click.argument("adapter")
@FILE
@APPLY
@YES
@OLLAMA_URL
@SKIP_REGISTRY
def rollback(adapter: str, file: Path, apply_: bool, yes: bool, ollama_url: str | None, skip_registry: bool) -> None:
    """Set ADAPTER's release: back to the run before the current rollout, and rebuild.

    When a Ray deployment serves ADAPTER, that run must be in the artifact store: it is pushed
    again from artifacts/ if the store lost it, and verified; if that fails, nothing is changed.
    When ADAPTER has tracking.mlflow, the registry's alias moves back to that run's version
    (registered if it never was)."""
    from vilms.compiler.rollout import rollback as run_rollback

    _can_confirm(apply_, yes)
    registry = _registry(file, adapter, skip_registry, apply_)
    registry.check()
    change = run_rollback(file, adapter, publish=_publisher(file, adapter, registry, apply_))
    _released(change, file, apply_, yes, ollama_url, registry)


@click.command()
@DEPLOYMENT
@FILE
@click.option("--dry-run", is_flag=True, help="Print the commands; run nothing.")
@YES
@OLLAMA_URL
@output_format("text", "json")
def apply(deployment: str | None, file: Path, dry_run: bool, yes: bool, ollama_url: str | None, fmt: str) -> None:
    """Deploy generated/ for DEPLOYMENT (default: every deployment): compose, Helm or local.

    Every deployment is checked first (tools, environment, model and adapter files); one
    problem refuses the whole apply. Then they are applied in order; after a failure the rest
    are skipped, and the summary (``--format json``: on stdout) lists applied, failed, skipped."""
    apply_deployments(file, [deployment] if deployment else None, yes=yes, dry_run=dry_run, ollama_url=ollama_url,
                      fmt=fmt)


def apply_deployments(file: Path, only: list[str] | None, *, yes: bool, dry_run: bool = False,
                      ollama_url: str | None = None, fmt: str = "text") -> None:
    """Check, print, confirm and run the apply steps of ``only`` (every deployment when None)."""
    from vilms.runtime.apply import check_ollama_url, check_store, checked_plan, plan_apply, preflight, run_step

    plan = checked_plan(file)
    steps = plan_apply(plan, file, only)
    check_ollama_url(steps, ollama_url)
    say = (lambda text: click.echo(text, err=True)) if fmt == "json" else click.echo
    for step in steps:
        say(f"{step.deployment} ({step.target}):")
        if step.first:
            say(f"  first: {step.first}")
        for command in step.commands:
            say(f"  $ {shlex.join(command)}")
        if step.then:
            say(f"  then: {step.then}")
    if dry_run:
        return
    if not yes:
        _can_confirm(True, yes, what="apply")
    preflight(plan, file, steps)  # every deployment, before any is touched
    check_store(steps)  # before the confirmation: a run missing from the store fails the whole apply
    if not yes:
        click.confirm("Apply?", abort=True)
    root = Layout.of(file).root
    applied: list[str] = []
    failed: VilmsError | None = None
    failed_name = ""
    for step in steps:
        try:
            run_step(step, root, say, ollama_url=ollama_url)
        except VilmsError as exc:
            failed, failed_name = exc, step.deployment
            break
        applied.append(step.deployment)
    skipped = [s.deployment for s in steps[len(applied) + (1 if failed else 0):]]
    _summary(applied, [failed_name] if failed else [], skipped, fmt, say)
    if failed is not None:
        failed.message = f"{failed.message}\nnot applied: {failed_name}" + (
            f"; skipped, not attempted: {', '.join(skipped)} (then `vilms apply` each)" if skipped else "") + (
            f"; applied and left running: {', '.join(applied)}" if applied else "")
        failed.hint = (f"{failed.hint}; " if failed.hint else "") + f"then `vilms apply {failed_name}`"
        raise failed


def _summary(applied: list[str], failed: list[str], skipped: list[str], fmt: str, say: Callable[[str], None]) -> None:
    if fmt == "json":
        click.echo(json.dumps({"applied": applied, "failed": failed, "skipped": skipped}, sort_keys=True))
        return
    rows = [(n, "applied") for n in applied] + [(n, "FAILED") for n in failed] + [(n, "skipped") for n in skipped]
    if failed or skipped:
        say("summary:")
        for name, what in rows:
            say(f"  {name}: {what}")
    else:
        say(f"applied {len(applied)} deployment{'s' if len(applied) != 1 else ''}")


def _publisher(file: Path, adapter: str, registry: Any, apply_: bool) -> Callable[[Any, str], None]:
    """What rollout and rollback run before they write anything: when a Ray deployment serves
    ``adapter``, the run must be in the artifact store (pushed from artifacts/ if it is here,
    then verified), because Ray Serve LLM loads it from there on the next request. Before that
    (a few quick calls, where a push may take minutes), with tracking.mlflow, the run's version
    in the Model Registry is found or registered. First of all, what a serving engine needs of
    the run must be here (``compiler/release_needs.py``): with ``--apply`` a run lacking it is
    refused; without, deploying happens elsewhere (where the artefacts are), and `vilms apply`
    checks it there."""

    def publish(plan: Any, run_id: str) -> None:
        from vilms.compiler.release_needs import refuse_missing

        if apply_:
            refuse_missing(plan, Layout.of(file).root, adapter, run_id, file)  # before the registry or anything else
        registry.prepare(plan, run_id)
        _publish_to_store(plan, run_id)

    def _publish_to_store(plan: Any, run_id: str) -> None:
        from vilms.runtime.artifact_store import open_store, ray_deployments
        from vilms.runtime.artifact_store import publish as publish_run

        deployments = ray_deployments(plan, adapter)
        if not deployments:
            return
        try:
            published = publish_run(open_store(plan.artifact_store), Layout.of(file), run_id)
        except VilmsError as exc:
            who = f"Ray deployments {', '.join(deployments)} load" if len(deployments) > 1 else f"Ray deployment {deployments[0]} loads"
            exc.message += f"\nnot released: {who} {run_id} from the artifact store; {file} and generated/ were not changed"
            raise
        click.echo(published.summary())

    return publish


def _registry(file: Path, adapter: str, skip: bool, apply_: bool) -> Any:
    """The MLflow Model Registry's part of the release (``runtime/model_registry/``)."""
    from vilms.runtime.model_registry import FollowRelease

    return FollowRelease(file, adapter, skip=skip, apply_=apply_, echo=click.echo)


def _can_confirm(apply_: bool, yes: bool, what: str = "--apply") -> None:
    """Refuse before changing anything when a confirmation could not be asked for."""
    if apply_ and not yes and not sys.stdin.isatty():
        raise UsageError(f"{what} changes running systems and there is no terminal to confirm on",
                         hint="review with `vilms apply --dry-run`, then pass --yes")


def _released(change: Any, file: Path, apply_: bool, yes: bool, ollama_url: str | None, registry: Any) -> None:
    from vilms.compiler.rollout import describe

    for warning in change.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(describe(change))
    registry.follow(change)
    if apply_:
        deployments = sorted({dep for _alias, deps in change.serving for dep in deps})
        if not deployments:
            click.echo("no deployment serves this adapter: nothing to apply")
            return
        apply_deployments(file, deployments, yes=yes, ollama_url=ollama_url)


COMMANDS = (rollout, rollback, apply)
