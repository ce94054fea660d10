"""Semantic pass: ``gitops:`` names a revision git accepts, a folder inside the repository, an interval
Flux can keep to, and release names Helm accepts. The schema fixes the characters; this pass the rest."""

from __future__ import annotations

import re

from vilms.compiler.document import Document
from vilms.compiler.facts import gitops as facts
from vilms.compiler.facts.helm import HELM_RELEASE_NAME_MAX
from vilms.compiler.naming import helm_release_name
from vilms.compiler.reporter import Reporter

_UNIT_S = {"s": 1, "m": 60, "h": 3600}
_INTERVAL = re.compile(r"^([0-9]+)([smh])$")


def check(doc: Document, report: Reporter) -> None:
    g = doc.data.get("gitops")
    if g is None:
        return
    problem = revision_problem(g["revision"])
    if problem:
        report.error(("gitops", "revision"), f"{g['revision']!r} is not a git revision: {problem}",
                     hint="name a branch (main), a tag as refs/tags/v1.2.0, or a 40-hex commit")
    if "path" in g and any(part in (".", "..") for part in g["path"].split("/")):
        report.error(("gitops", "path"), f"{g['path']!r} leaves or repeats its folder ('.' or '..')",
                     hint="write the folder of vilms.yaml from the repository root, e.g. deploy/llm; "
                          "leave path out when vilms.yaml is at the root")
    interval = g.get("flux", {}).get("interval")
    seconds = interval_seconds(interval) if interval else None
    if seconds is not None and not facts.FLUX_INTERVAL_MIN_S <= seconds <= facts.FLUX_INTERVAL_MAX_S:
        report.error(("gitops", "flux", "interval"),
                     f"{interval!r} is {'too short' if seconds < facts.FLUX_INTERVAL_MIN_S else 'too long'} a reconcile interval",
                     hint=f"write {facts.FLUX_INTERVAL_MIN_S}s to 24h, e.g. {facts.FLUX_INTERVAL} (the default)")
    project = doc.data.get("project", "")
    for name, dep in doc.data.get("deployments", {}).items():
        release = helm_release_name(project, name)
        if dep.get("target") == "helm" and len(release) > HELM_RELEASE_NAME_MAX:
            report.error(("deployments", name),
                         f"the Helm release {release!r} would be {len(release)} characters (Helm's limit: {HELM_RELEASE_NAME_MAX})",
                         hint="shorten the project or deployment name", at_key=True)


def revision_problem(revision: str) -> str | None:
    """What git check-ref-format refuses in ``revision`` (the schema has already refused other characters)."""
    if ".." in revision:
        return "'..' is not allowed"
    if "//" in revision or revision.endswith("/"):
        return "an empty path component"
    if revision.endswith("."):
        return "it ends with '.'"
    for part in revision.split("/"):
        if part.startswith("."):
            return f"component {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"component {part!r} ends with '.lock'"
    return None


def interval_seconds(interval: str) -> int | None:
    match = _INTERVAL.match(interval)
    return None if match is None else int(match.group(1)) * _UNIT_S[match.group(2)]
