"""`vilms logs [-f] [NAME]` as functions: which log files, their last lines, and following them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from vilms.compiler.errors import UsageError

from .logfiles import follow as follow_file
from .logfiles import tail
from .observe import running_deployments
from .project import Project, deployment_in_view

SUPERVISOR = "supervisor"
QUEUE_LINES = 1000  # lines waiting to be printed while following several logs: memory stays bounded


def log_files(file: Path, deployment: str | None, name: str | None) -> list[tuple[str, Path]]:
    """(process name, log file) of ``name``, or of every process that has a log (the supervisor's last)."""
    project = Project.at(file)
    dep = deployment_in_view(project, deployment, running=running_deployments(project))
    if dep is None:
        raise UsageError("no local deployment is built or running", hint="vilms build, then vilms up")
    run_dir = project.run_dir(dep)
    found = sorted(p.name[:-len(".log")] for p in run_dir.logs.glob("*.log")) if run_dir.logs.is_dir() else []
    found = [n for n in found if n != SUPERVISOR] + ([SUPERVISOR] if SUPERVISOR in found else [])
    if name is None:
        if not found:
            raise UsageError(f"deployment {dep} has no logs yet", hint=f"vilms up {dep}")
        return [(n, run_dir.log(n)) for n in found]
    if name not in found:
        raise UsageError(f"deployment {dep} has no log of {name!r}",
                         hint=f"logs: {', '.join(found)}" if found else f"vilms up {dep}")
    return [(name, run_dir.log(name))]


def print_logs(files: list[tuple[str, Path]], *, lines: int, follow: bool, echo: Callable[[str], None]) -> None:
    """The last ``lines`` of each file (prefixed with its name when there are several), then,
    with ``follow``, new lines as they come until KeyboardInterrupt."""
    prefix = len(files) > 1
    for name, path in files:
        if prefix:
            echo(f"==> {name} ({path}) <==")
        for line in tail(path, lines) if lines else []:
            echo(line)
    if not follow:
        return
    if len(files) == 1:
        for line in follow_file(files[0][1]):
            echo(line)
        return
    done = threading.Event()
    lines_in: queue.Queue[str] = queue.Queue(maxsize=QUEUE_LINES)

    def pump(name: str, path: Path) -> None:
        for line in follow_file(path, stop=done.is_set):
            lines_in.put(f"{name} | {line}")

    for name, path in files:
        threading.Thread(target=pump, args=(name, path), daemon=True).start()
    try:
        while True:
            try:
                echo(lines_in.get(timeout=0.5))
            except queue.Empty:
                continue
    finally:
        done.set()
