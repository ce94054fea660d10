"""`vilms apply`'s checks before it touches any deployment: every problem of every selected
deployment, found at once, so a missing tool, variable or file never stops a healthy one.

Per deployment: its tool on PATH (docker, helm); the environment variables it reads without a
default (compose: ``${NAME}`` / ``${NAME:?...}`` in its compose file; local: the keys its
gateway's routes name); the files its engine loads (local: the GGUF model and every LoRA file
of local.yaml; every engine: what it needs of each released run, ``compiler/release_needs``).
Only names are read from the environment, never values.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler import layout
from vilms.compiler.contracts.local_plan import LOCAL_PLAN
from vilms.compiler.contracts.routes import ROUTES
from vilms.compiler.errors import ActionError, VilmsError
from vilms.compiler.facts.llamacpp import ENGINE_KEY_ENV
from vilms.compiler.plan import Plan
from vilms.compiler.release_needs import released_needs

# ${NAME}, ${NAME?msg}, ${NAME:?msg} need the variable; ${NAME-x}, ${NAME:-x}, ${NAME+x}, ${NAME:+x} do not.
# `$$` is a literal dollar.
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-+?])?")
INSTALL = {"docker": "install Docker with Compose v2 (`docker compose`)",
           "helm": "install Helm 4 (https://helm.sh/docs/intro/install/)"}


@dataclass(frozen=True)
class Problem:
    deployment: str
    message: str
    hint: str


def required_vars(compose_text: str) -> list[str]:
    """The variables a compose file interpolates without a default, sorted."""
    out = set()
    for match in _VAR.finditer(compose_text):
        name, op = match.group(1), match.group(2)
        if name and (op is None or op.endswith("?")):
            out.add(name)
    return sorted(out)


def check(plan: Plan, names: list[str], targets: Mapping[str, tuple[str, str]], root: Path,
          env: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of the deployments ``names``; ``targets``: each one's (target, tool)."""
    env = os.environ if env is None else env
    problems: list[Problem] = []
    for name in names:
        target, tool = targets[name]
        if tool in INSTALL and shutil.which(tool, path=env.get("PATH")) is None:
            problems.append(Problem(name, f"`{tool}` is not installed (not on PATH)", INSTALL[tool]))
        if target == "compose":
            problems += _compose_env(name, root, env)
        if target == "local":
            problems += _local(name, root, env)
        for need in released_needs(plan, name):
            if need.missing_in(root):
                problems.append(Problem(name, need.message(), need.hint))
    return problems


def refuse(problems: list[Problem]) -> ActionError:
    """One error listing every problem with its hint; nothing was started or stopped."""
    deployments = sorted({p.deployment for p in problems})
    lines = [f"not applied: {len(problems)} problem{'s' if len(problems) != 1 else ''} in "
             f"{', '.join(deployments)}; no deployment was started, stopped or changed"]
    for p in problems:
        lines.append(f"  {p.deployment}: {p.message}\n    hint: {p.hint}")
    return ActionError("\n".join(lines), hint="fix these, then run the same command again")


def _unset(names: list[str], env: Mapping[str, str]) -> list[str]:
    return sorted({n for n in names if not env.get(n, "").strip()})


def _compose_env(name: str, root: Path, env: Mapping[str, str]) -> list[Problem]:
    path = root / layout.GENERATED / layout.compose_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(name, f"cannot read {layout.GENERATED}/{layout.compose_path(name)} ({exc})", "run `vilms build`")]
    unset = _unset(required_vars(text), env)
    return [Problem(name, f"its compose file reads ${{{var}}} from the environment, and it is unset or empty",
                    f"export {var}=... before `vilms apply`") for var in unset]


def _local(name: str, root: Path, env: Mapping[str, str]) -> list[Problem]:
    from vilms.runtime.local.launch import model_file

    lay = layout.Layout(root)
    try:
        plan = LOCAL_PLAN.load(lay.local_plan(name))
        routes = ROUTES.load(lay.in_generated(plan.gateway.routes))
    except VilmsError as exc:
        return [Problem(name, exc.message, exc.hint or "run `vilms build`")]
    problems = []
    # the engine key is not the user's: `vilms up` makes one per run and gives it to the gateway
    names = [*routes.gateway.secret_envs,
             *(b.api_key_env for b in routes.backends.values() if b.api_key_env and b.api_key_env != ENGINE_KEY_ENV)]
    for var in _unset(names, env):
        problems.append(Problem(name, f"its gateway reads {var} from the environment, and it is unset or empty",
                                f"export {var}=key1,key2 before `vilms apply` (or set gateway.api_keys: null in vilms.yaml)"))
    for server in plan.servers:
        try:
            model_file(server, root)  # what `vilms up` opens: the file, or the cached Hugging Face download
        except ActionError as exc:
            problems.append(Problem(name, exc.message, exc.hint or "run `vilms build`"))
    return problems
