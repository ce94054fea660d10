"""`vilms status DEPLOYMENT` for compose and Helm deployments (the local runner's is in serving.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vilms.compiler.errors import ExitCode, VilmsError
from vilms.compiler.layout import Layout

from .exits import exit_with


def show(file: Path, deployment: str, fmt: str) -> bool:
    """Print the status of ``deployment`` when it is a compose or Helm one; False for local ones."""
    from vilms.compiler.pipeline import compile_plan
    from vilms.runtime.apply import helm_kube_args
    from vilms.runtime.deployed import compose_status, helm_status

    try:
        _doc, plan = compile_plan(file, fit=False)
    except VilmsError:
        return False  # the local runner's status reports from its state files, without a valid vilms.yaml
    dep = plan.deployments.get(deployment)
    if dep is None or dep.target not in ("compose", "helm"):
        return False
    root = Layout.of(file).root
    if dep.target == "helm":
        report = helm_status(root, plan.project, deployment, helm_kube_args(dep.kube_context, dep.namespace))
    else:
        report = compose_status(root, deployment)
    if fmt == "json":
        click.echo(json.dumps(report.as_json(), indent=2, sort_keys=True))
    else:
        click.echo(f"deployment {deployment} ({dep.target}): {report.state}")
        click.echo(f"  git (generated/):  manifest sha256:{report.expected[:12]}")
        engine = f"manifest sha256:{report.running[:12]}" if report.running else "manifest not recorded"
        verdict = {True: "current", False: "differs: run `vilms apply " + deployment + "`", None: "cannot tell"}[report.current]
        click.echo(f"  {dep.target}:  {engine} ({verdict})")
        for s in report.services:
            click.echo(f"  {s['service']}: {s['state']}" + (f" ({s['health']})" if s["health"] else ""))
    if report.current is not True and not (report.current is None and report.services
                                           and all(s["state"] == "running" for s in report.services)):
        exit_with(ExitCode.FAILED)
    return True
