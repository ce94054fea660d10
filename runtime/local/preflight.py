"""Checks `vilms up` runs on the compiled project before any server starts: each server's
GGUF header against vilms.yaml (:mod:`.gguf_check`), then the deployment's memory estimate
against MemAvailable (:mod:`.memory_check`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vilms.compiler.contracts.local_plan import LocalPlan
from vilms.compiler.errors import Diagnostic, InvalidInputError

from . import gguf_check, memory_check
from .launch import model_file
from .project import Project


@dataclass(frozen=True)
class Preflight:
    ignore_memory: bool = False  # `vilms up --ignore-memory`
    meminfo: Path = memory_check.MEMINFO
    proc: Path = memory_check.PROC
    replacing: Sequence[int] = field(default=())  # pids of the running servers a new build replaces


def check(project: Project, plan: LocalPlan, options: Preflight = Preflight()) -> None:
    """Raise :class:`InvalidInputError` (located in vilms.yaml) for a GGUF that contradicts it,
    :class:`ActionError` for an unreadable GGUF or a deployment that does not fit in memory."""
    from vilms.compiler.memory.placement import estimate_deployment
    from vilms.compiler.pipeline import compile_plan

    doc, compiled = compile_plan(project.file)
    dep = compiled.deployments[plan.deployment]
    found: list[Diagnostic] = []
    for server in plan.servers:
        model = compiled.models[server.model_alias]
        path = model_file(server, project.root)
        header = gguf_check.read_header(path)
        shown = server.model.file or path.name
        for bad in gguf_check.compare(header, file=shown, model=model.name, family=model.family,
                                      model_context=model.context, deployment=dep.name,
                                      served_context=server.context):
            line, column = doc.locate(bad.at)
            found.append(Diagnostic(doc.display_name, line, column, ".".join(map(str, bad.at)), bad.message,
                                    hint=bad.hint))
    if found:
        raise InvalidInputError(found, what=f"the GGUF weights of deployment {dep.name} do not match "
                                             f"{doc.display_name}")
    offloads = dep.hardware.kind == "gpu" and dep.gpu_layers != 0
    if options.ignore_memory or offloads:
        return
    _, total = estimate_deployment(compiled, dep)
    memory_check.check_fits(total, deployment=dep.name, available=memory_check.mem_available(options.meminfo),
                            reclaimed=memory_check.rss(options.replacing, options.proc))
