"""`vilms apply` never takes a healthy local deployment down: with its key variable unset, a
running deployment (the real runner: a llama.cpp server on a tiny GGUF and the gateway) is
refused before anything is stopped, whether the build changed or not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from local_project import API_KEY, KEYS_ENV, chat, free_port, kill_all_under, require_llamacpp_port, write_project

from vilms.compiler.contracts.runner_state import RUNNER_STATE

pytest.importorskip("llama_cpp")
pytest.importorskip("httptools")
pytest.importorskip("gguf")

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(180)]
CLI = [sys.executable, "-m", "vilms"]


def _vilms(root: Path, *args: str, keys: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KEYS_ENV}
    if keys:
        env[KEYS_ENV] = API_KEY
    return subprocess.run([*CLI, *args], cwd=root, env=env, capture_output=True, text=True, timeout=150,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def running(tmp_path):
    require_llamacpp_port()
    root = tmp_path / "project"
    port = free_port()
    write_project(root, gateway_port=port)
    assert _vilms(root, "build").returncode == 0
    up = _vilms(root, "up")
    assert up.returncode == 0, up.stderr
    yield root, port
    _vilms(root, "down", "--timeout", "20")
    assert not kill_all_under(root)


def _pids(root: Path) -> dict[str, int | None]:
    state = RUNNER_STATE.load(root / ".vilms" / "run" / "dev" / "state.json")
    return {"supervisor": state.supervisor.pid, **{p.name: p.pid for p in state.processes}}


def test_apply_with_the_key_unset_leaves_the_running_deployment_up(running):
    root, port = running
    before = _pids(root)
    result = _vilms(root, "apply", "--yes", keys=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"dev: its gateway reads {KEYS_ENV}" in result.stderr
    assert "no deployment was started, stopped or changed" in result.stderr
    shutil.copy(root / "vilms.yaml", root / "vilms.yaml.bak")
    text = (root / "vilms.yaml").read_text()
    (root / "vilms.yaml").write_text(text.replace("gateway:\n", "gateway:\n  retries: 1\n", 1))
    assert _vilms(root, "build").returncode == 0  # a new build, as after a rollout
    again = _vilms(root, "apply", "--yes", keys=False)
    assert again.returncode == 1 and "no deployment was started, stopped or changed" in again.stderr
    assert _pids(root) == before  # nothing restarted
    assert chat(port)[0] == 200  # and it still serves
