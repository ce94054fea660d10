"""`vilms status` for compose and Helm deployments: what git says should run next to what the
engine reports.

What should run is the deployment's manifest hash: the sha256 over its generated files (each
path and the sha256 of its bytes, sorted). `vilms apply` records it in the Helm release's
description; ``helm status -o json`` reports it back. Compose keeps no such record, so for
compose only the services' states are the engine's (``docker compose ps --all --format json``).
Without the CLI on PATH the engine's side is "unknown: <tool> not installed".
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vilms.compiler import layout

DESCRIPTION = "vilms manifest sha256:{sha}"
_RECORDED = re.compile(r"vilms manifest sha256:([0-9a-f]{64})")
TIMEOUT_S = 30


def manifest_sha256(root: Path, deployment: str) -> str:
    """The sha256 of ``generated/<deployment>/``: every file's path and content hash, sorted."""
    folder = root / layout.GENERATED / deployment
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else ():
        rel = path.relative_to(folder).as_posix()
        digest.update(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class DeployedStatus:
    deployment: str
    target: str
    expected: str  # the manifest hash of generated/
    running: str | None  # the manifest hash the engine reports (None: not recorded or unknown)
    state: str  # what the engine says, in a few words; "unknown: ..." without it
    services: list[dict[str, str]] = field(default_factory=list)

    @property
    def current(self) -> bool | None:
        return None if self.running is None else self.running == self.expected

    def as_json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "target": self.target, "expected_manifest": self.expected,
                "engine_manifest": self.running, "current": self.current, "state": self.state,
                "services": self.services}


def _run(argv: list[str], root: Path) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, "", type(exc).__name__
    return done.returncode, done.stdout, done.stderr


def _said(stderr: str, stdout: str) -> str:
    return ((stderr.strip().splitlines() or stdout.strip().splitlines() or ["no output"])[-1])[:200]


def helm_status(root: Path, project: str, deployment: str, kube: tuple[str, ...]) -> DeployedStatus:
    expected = manifest_sha256(root, deployment)
    if shutil.which("helm") is None:
        return DeployedStatus(deployment, "helm", expected, None, "unknown: helm not installed")
    code, out, err = _run(["helm", "status", f"{project}-{deployment}", *kube, "-o", "json"], root)
    if code != 0:
        return DeployedStatus(deployment, "helm", expected, None, f"unknown: helm status said: {_said(err, out)}")
    try:
        data = json.loads(out)
        info = data.get("info") or {}
        description, status = str(info.get("description", "")), str(info.get("status", "unknown"))
        revision = data.get("version")
    except (ValueError, AttributeError):
        return DeployedStatus(deployment, "helm", expected, None, "unknown: helm status printed no JSON")
    found = _RECORDED.search(description)
    state = f"{status} (revision {revision})" + ("" if found else f": {description or 'no description'}")
    return DeployedStatus(deployment, "helm", expected, found.group(1) if found else None, state)


def compose_status(root: Path, deployment: str) -> DeployedStatus:
    expected = manifest_sha256(root, deployment)
    if shutil.which("docker") is None:
        return DeployedStatus(deployment, "compose", expected, None, "unknown: docker not installed")
    file = str(Path(layout.GENERATED, layout.compose_path(deployment)))
    code, out, err = _run(["docker", "compose", "--file", file, "ps", "--all", "--format", "json"], root)
    if code != 0:
        return DeployedStatus(deployment, "compose", expected, None, f"unknown: docker compose ps said: {_said(err, out)}")
    services = []
    try:  # Compose v2.21+ prints one JSON object per line; older versions one array
        text = out.strip()
        rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
        for row in rows:
            services.append({"service": str(row.get("Service", "")), "state": str(row.get("State", "")),
                             "health": str(row.get("Health", "")), "status": str(row.get("Status", ""))})
    except (ValueError, AttributeError):
        return DeployedStatus(deployment, "compose", expected, None, "unknown: docker compose ps printed no JSON")
    running = sum(s["state"] == "running" for s in services)
    state = f"{running}/{len(services)} services running" if services else "not running"
    return DeployedStatus(deployment, "compose", expected, None, state, sorted(services, key=lambda s: s["service"]))
