"""``python -m vilms.runtime.local --file F --deployment D``: the detached supervisor `vilms up` starts.

It reads the same local.yaml the command checked, supervises until SIGTERM (`vilms down`)
and exits 0, or exits 1 when the start failed (the error is in state.json for `vilms up`).
Its own log is ``.vilms/run/<deployment>/logs/supervisor.log``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vilms.compiler.errors import VilmsError

from .launch import launches
from .plan import load_plan
from .policy import RestartPolicy
from .project import Project
from .supervisor import START_TIMEOUT_S, Supervisor, configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vilms.runtime.local", description="ViLMS local runner supervisor.")
    parser.add_argument("--file", required=True, type=Path, help="the project's vilms.yaml")
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--lock-fd", type=int, default=None, help="the run's lock, taken by `vilms up` and inherited")
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT_S, help="seconds each process may take to serve")
    parser.add_argument("--restart-backoff", type=float, default=RestartPolicy.backoff_s)
    parser.add_argument("--give-up-after", type=int, default=RestartPolicy.give_up_after)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        project = Project.at(args.file)
        plan = load_plan(project.plan_file(args.deployment))
        supervisor = Supervisor(plan, launches(plan, project.file.parent), project.run_dir(args.deployment), project.file,
                                policy=RestartPolicy(backoff_s=args.restart_backoff, give_up_after=args.give_up_after),
                                start_timeout_s=args.timeout, cwd=project.file.parent)
        return supervisor.run(lock=args.lock_fd)
    except VilmsError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
