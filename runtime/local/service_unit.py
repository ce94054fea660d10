"""`vilms up DEPLOYMENT --install-service`: a systemd unit that brings a local deployment back
after a reboot.

The unit runs ``vilms up DEPLOYMENT --foreground`` (the supervisor stays the unit's main
process: Type=simple), ``vilms down`` as ExecStop, Restart=on-failure, in the folder of
vilms.yaml. The keys the gateway reads come from an EnvironmentFile the user writes (mode
0600); the unit names it and never holds a value. A user unit by default
(``~/.config/systemd/user``), a system unit with ``--system`` (``/etc/systemd/system``).
Nothing is enabled or started: `vilms` prints the systemctl commands.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.contracts.routes import ROUTES
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import systemd
from vilms.compiler.facts.llamacpp import ENGINE_KEY_ENV

from .plan import routes_file
from .project import Project

USER_UNITS = Path(systemd.USER_UNITS)
SYSTEM_UNITS = Path(systemd.SYSTEM_UNITS)
USER_ENV_DIR = Path(systemd.USER_ENV_DIR)
SYSTEM_ENV_DIR = Path(systemd.SYSTEM_ENV_DIR)
RESTART_SEC = systemd.RESTART_SEC
STOP_TIMEOUT_S = systemd.STOP_TIMEOUT_S
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Service:
    name: str  # the unit's file name, vilms-<project>-<deployment>.service
    path: Path  # where it is written
    env_file: Path  # the EnvironmentFile the user fills in
    env_names: tuple[str, ...]  # the variables it must set (the gateway's keys)
    system: bool
    text: str

    @property
    def commands(self) -> tuple[str, ...]:
        """What the user runs to enable it (never run by vilms)."""
        ctl = "systemctl" if self.system else "systemctl --user"
        out = (f"{ctl} daemon-reload", f"{ctl} enable --now {self.name}")
        if not self.system:
            out += ("loginctl enable-linger  # user units start at boot only with lingering",)
        return out


def unit_name(project: str, deployment: str) -> str:
    return f"vilms-{_name_part(project)}-{_name_part(deployment)}.service"


def _name_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)


def quote(arg: str) -> str:
    """One argument of an Exec line: double-quoted, with systemd's escapes (``%`` is a specifier)."""
    if _UNSAFE.search(arg):
        raise ActionError(f"cannot write a systemd unit for a path with a control character: {arg!r}",
                          hint="move the project to a folder whose path has none")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def _path(value: Path) -> str:
    """A path setting (WorkingDirectory, EnvironmentFile): taken literally except ``%``."""
    text = str(value)
    if _UNSAFE.search(text):
        raise ActionError(f"cannot write a systemd unit for a path with a control character: {text!r}",
                          hint="move the project to a folder whose path has none")
    return text.replace("%", "%%")


def unit_text(*, project: str, deployment: str, file: Path, python: str, env_file: Path, system: bool) -> str:
    vilms = f"{quote(python)} -m vilms"
    target = f"{quote(deployment)} --file {quote(str(file))}"
    lines = [
        "# written by `vilms up --install-service`; the keys live in the EnvironmentFile, never here",
        "[Unit]",
        f"Description=ViLMS local deployment {deployment} of project {project}",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"WorkingDirectory={_path(file.parent)}",
        f"EnvironmentFile={_path(env_file)}",
        f"ExecStart={vilms} up {target} --foreground",
        f"ExecStop={vilms} down {target}",
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "KillMode=mixed",
        "",
        "[Install]",
        f"WantedBy={'multi-user.target' if system else 'default.target'}",
    ]
    return "\n".join(lines) + "\n"


def service(project: Project, deployment: str, project_name: str, *, system: bool,
            unit_dir: Path | None = None, env_dir: Path | None = None, python: str | None = None) -> Service:
    """The unit for ``deployment`` (built and current: the caller checked), not yet written."""
    from vilms.compiler.contracts.local_plan import LOCAL_PLAN

    plan = LOCAL_PLAN.load(project.plan_file(deployment))
    routes = ROUTES.load(routes_file(project.layout, plan))
    names = [*routes.gateway.secret_envs, *(b.api_key_env for b in routes.backends.values())]
    env_names = tuple(sorted({n for n in names if n is not None and n != ENGINE_KEY_ENV}))
    name = unit_name(project_name, deployment)
    folder = (unit_dir or (SYSTEM_UNITS if system else USER_UNITS)).expanduser()
    env_file = (env_dir or (SYSTEM_ENV_DIR if system else USER_ENV_DIR)).expanduser() / (name.removesuffix(".service")
                                                                                           + ".env")
    text = unit_text(project=project_name, deployment=deployment, file=project.file,
                     python=python or sys.executable, env_file=env_file, system=system)
    return Service(name=name, path=folder / name, env_file=env_file, env_names=env_names, system=system, text=text)


def install(unit: Service) -> None:
    """Write the unit file (through a temporary file and a rename); never enables it."""
    try:
        unit.path.parent.mkdir(parents=True, exist_ok=True)
        temp = unit.path.with_name(unit.path.name + ".tmp")
        temp.write_text(unit.text, encoding="utf-8")
        os.replace(temp, unit.path)
    except OSError as exc:
        hint = "run it as root, or leave out --system for a user unit" if unit.system else \
            f"check the permissions of {unit.path.parent}"
        raise ActionError(f"cannot write {unit.path}: {exc.strerror or exc}", hint=hint) from None


def install_service(file: Path, deployment: str | None, *, system: bool, unit_dir: Path | None = None,
                    env_dir: Path | None = None) -> Service:
    """Check the deployment as `vilms up` does first (a current build), then write its unit."""
    from vilms.compiler.pipeline import compile_plan

    from .project import deployment_to_start

    project = Project.at(file)
    name = deployment_to_start(project, deployment)
    _, plan = compile_plan(project.file)
    unit = service(project, name, plan.project, system=system, unit_dir=unit_dir, env_dir=env_dir)
    install(unit)
    return unit
