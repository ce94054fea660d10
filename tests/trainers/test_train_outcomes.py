"""`vilms train` end to end on the tiny model (heavy): the issue-15 sequence that used to leave a project
stuck (SIGKILL, config change, fresh run, `--resume` forever refused), and the gate's exit code on a
real run whose gate rejects it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vilms.compiler.contracts.run_record import RUN_RECORD

from .conftest import write_project
from .test_resume import _env, _train, _wait_for_checkpoint

pytestmark = pytest.mark.heavy

LONG = {"training": {"max_steps": 200, "save_steps": 5, "eval_steps": 100, "batch_size": 2}}
SHORT = {"training": {"max_steps": 6, "save_steps": 3, "eval_steps": 6, "batch_size": 2}}


def _vilms(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vilms", *args, "-f", str(project)], capture_output=True, text=True,
                          timeout=300, env=_env())


def test_killed_run_then_config_change_never_blocks_resume(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    project = write_project(tmp_path / "proj", tiny_model, LONG)
    proc = _train(project, "--resume")  # as the Kubernetes Job runs it: always --resume
    _wait_for_checkpoint(project.parent, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (killed,) = list((project.parent / "artifacts").glob("tiny-v1-*"))
    assert RUN_RECORD.load(killed / "run.json").status == "running"  # nobody recorded the end
    leftover = killed / "checkpoints" / ".tmp-step-000099.dead01"  # a save the kill cut short
    leftover.mkdir()

    write_project(tmp_path / "proj-new", tiny_model, SHORT)  # the config changed: same project, new file
    config = project.parent / "generated" / "training" / "tiny-v1.yaml"
    config.write_bytes((tmp_path / "proj-new" / "generated" / "training" / "tiny-v1.yaml").read_bytes())
    first = _vilms(project, "train", "tiny-v1", "--resume", "--no-progress")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "marked abandoned" in first.stderr and "changed since" not in first.stderr
    assert RUN_RECORD.load(killed / "run.json").status == "abandoned" and not leftover.exists()

    again = _vilms(project, "train", "tiny-v1", "--resume", "--no-progress")  # nothing unfinished: a fresh run
    assert again.returncode == 0, again.stdout + again.stderr
    listed = _vilms(project, "runs", "tiny-v1", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["status"] for r in rows] == ["completed", "completed", "abandoned"]
    assert rows[-1]["run_id"] == killed.name and len({r["config_sha256"] for r in rows}) == 2


def test_a_rejecting_gate_exits_3_and_never_suggests_approve(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    strict = {**SHORT, "gate": {"max_eval_perplexity": 1.000001, "regression": [], "on_fail": "reject"}}
    project = write_project(tmp_path / "proj", tiny_model, strict)
    done = _vilms(project, "train", "tiny-v1", "--no-progress")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "completed; gate failed" in done.stdout and "did not pass its gate (failed): eval perplexity" in done.stderr
    assert "vilms approve" not in done.stderr and "on_fail is reject" in done.stderr
