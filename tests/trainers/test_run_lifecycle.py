"""Runs never get stuck (issue 15, item 4): `vilms train --resume` resumes the newest unfinished run of
the current config and dataset; every other unfinished run nobody trains is marked abandoned; a run a
live process trains is never touched; temp leftovers of killed writes go on the next start; `vilms runs`
lists it all. No model is trained here: the run is picked exactly as `vilms train` picks it (open_run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.runs import write_run
from vilms.cli.main import run as main
from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.layout import Layout
from vilms.trainers import record, run_locks, runs
from vilms.trainers.datasets.validate import load_dataset
from vilms.trainers.job import TrainingJob, job_for
from vilms.trainers.trainer import close_run, open_run

from .conftest import write_project

ADAPTER = "tiny-v1"
OLD, MID, NEW = (f"{ADAPTER}-2026112{i}T091500Z-{i}a2b3c" for i in (1, 2, 3))


def _project(tmp_path: Path) -> tuple[Layout, TrainingJob]:
    layout = Layout.of(write_project(tmp_path, None))
    return layout, job_for(layout, ADAPTER)


def _open(layout: Layout, job: TrainingJob, resume: bool = True) -> tuple[str, bool]:
    dataset = load_dataset(job.dataset_path, job.config.dataset.format)
    used = record.distributed_used(job, nnodes=1, nproc_per_node=1, backend="none")
    run_id, _, current, resuming = open_run(layout, job, dataset, resume, used)
    close_run(layout, run_id)
    assert current.status == "running"
    return run_id, resuming


def _unfinished(layout: Layout, job: TrainingJob, run_id: str, status: str, *, config: str | None = None,
                day: int = 1) -> None:
    """A run of ``job`` (or of another config) as a killed trainer leaves it."""
    dataset = load_dataset(job.dataset_path, job.config.dataset.format)
    write_run(layout.root, run_id, status=status, gate=None, project="acme",
              config_sha256=config or job.sha256, created_at=f"2026-11-2{day}T09:15:00Z",
              dataset=replace(record.started(job, run_id, dataset, record.distributed_used(
                  job, nnodes=1, nproc_per_node=1, backend="none")).dataset))
    # write_run's record trained on 2 processes; this one on 1, as _open resumes it
    rec = RUN_RECORD.load(layout.run_record(run_id))
    runs.save_record(layout.run(run_id), replace(rec, distributed=record.distributed_used(
        job, nnodes=1, nproc_per_node=1, backend="none")))


def _status(layout: Layout, run_id: str) -> str:
    return RUN_RECORD.load(layout.run_record(run_id)).status


def test_a_config_change_after_a_kill_does_not_block_resume(tmp_path: Path) -> None:
    """The issue's sequence: a run killed (still `running`), the config changed, `--resume` again:
    today's code refuses with "the training config changed"; now a new run starts and the old one
    is marked abandoned, and the next `--resume` resumes the new run."""
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "running", config="c" * 64)  # SIGKILL: nobody recorded the end
    run_id, resuming = _open(layout, job)
    assert not resuming and run_id != OLD and _status(layout, OLD) == "abandoned"
    runs.save_record(layout.run(run_id), record.ended(runs.read_record(layout, run_id), "interrupted"))
    again, resuming = _open(layout, job)
    assert (again, resuming) == (run_id, True)
    record_now = runs.read_record(layout, run_id)
    assert [s.resumed for s in record_now.sessions] == [False, True]


def test_resume_takes_the_newest_run_of_the_current_config_not_the_newest_run(tmp_path: Path) -> None:
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "interrupted", day=1)
    _unfinished(layout, job, MID, "failed", day=2)  # the same config: newest of it, resumed
    _unfinished(layout, job, NEW, "interrupted", config="e" * 64, day=3)  # newer, but another config
    run_id, resuming = _open(layout, job)
    assert (run_id, resuming) == (MID, True)
    assert (_status(layout, OLD), _status(layout, NEW)) == ("abandoned", "abandoned")
    assert runs.unfinished(layout, ADAPTER) == [runs.read_record(layout, MID)]


def test_a_fresh_run_supersedes_unfinished_runs_and_completed_runs_stay(tmp_path: Path) -> None:
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "interrupted")
    write_run(layout.root, MID, created_at="2026-11-22T09:15:00Z")  # completed
    run_id, resuming = _open(layout, job, resume=False)
    assert not resuming and run_id not in (OLD, MID)
    assert (_status(layout, OLD), _status(layout, MID)) == ("abandoned", "completed")
    # an abandoned run is never resumed again, and a Job with --resume and nothing to resume starts fresh
    runs.save_record(layout.run(run_id), record.ended(runs.read_record(layout, run_id), "interrupted"))
    assert _open(layout, job) == (run_id, True)


def test_old_records_and_abandoned_ones_load(tmp_path: Path) -> None:
    """The status is a contract change: records written before it (no abandoned) load unchanged."""
    for status in ("running", "interrupted", "failed", "abandoned"):
        path = write_run(tmp_path, OLD, status=status, gate=None)
        assert RUN_RECORD.load(path).status == status
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "status": "stuck"}))
    with pytest.raises(InvalidInputError) as caught:
        RUN_RECORD.load(path)
    assert "status" in caught.value.render() and "abandoned" in caught.value.render()


def _hold_in_child(layout: Layout, run_id: str) -> subprocess.Popen[str]:
    """Another process that trains ``run_id``: holds its lock until killed."""
    code = ("import sys, time; from pathlib import Path; from vilms.compiler.layout import Layout;"
            "from vilms.trainers import run_locks;"
            "assert run_locks.hold(Layout(Path(sys.argv[1])), sys.argv[2]); print('held', flush=True); time.sleep(120)")
    child = subprocess.Popen([sys.executable, "-c", code, str(layout.root), run_id], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_run_another_process_trains_is_never_touched(tmp_path: Path) -> None:
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "running", config="c" * 64, day=1)  # live, another config
    _unfinished(layout, job, MID, "running", day=2)  # live, this config
    leftover = layout.run(MID) / "checkpoints" / ".tmp-step-000010.x1y2"
    leftover.mkdir(parents=True)
    child = _hold_in_child(layout, OLD)
    other = _hold_in_child(layout, MID)
    try:
        assert run_locks.is_live(layout, OLD) and run_locks.holder(layout, OLD) == child.pid
        with pytest.raises(ActionError, match=f"run {MID} of {ADAPTER} is being trained by another process \\(pid {other.pid}\\)"):
            _open(layout, job)
        run_id, resuming = _open(layout, job, resume=False)  # a deliberate second run: allowed, touches neither
        assert not resuming and (_status(layout, OLD), _status(layout, MID)) == ("running", "running")
        assert leftover.is_dir()  # a live run's temp files are its own
    finally:
        for proc in (child, other):
            proc.kill()
            proc.wait(timeout=10)
    # killed (SIGKILL): the kernel dropped the locks; the next --resume takes the newest run of this config
    assert not run_locks.is_live(layout, OLD)
    assert _open(layout, job) == (run_id, True)
    assert (_status(layout, OLD), _status(layout, MID)) == ("abandoned", "abandoned")
    assert not leftover.exists()


def test_leftovers_of_killed_writes_are_removed_when_the_run_is_resumed(tmp_path: Path) -> None:
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "interrupted")
    folder = layout.run(OLD)
    kept = folder / "checkpoints" / "step-000010"
    kept.mkdir(parents=True)
    (kept / "state.json").write_text("{}")
    made = [folder / "checkpoints" / ".tmp-step-000020.ab12cd", folder / "checkpoints" / ".old-step-000010.4242",
            folder / ".run.json.k2j3.tmp", folder / "merged" / ".model.safetensors.77.tmp"]
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".tmp"):
            path.write_bytes(b"half")
        else:
            path.mkdir()
            (path / "optimizer.pt").write_bytes(b"half")
    assert runs.leftovers(folder) == sorted(made)
    assert _open(layout, job) == (OLD, True)
    assert runs.leftovers(folder) == [] and (kept / "state.json").is_file() and (folder / "run.json").is_file()


def test_two_trainers_started_at_once_never_pick_the_same_run(tmp_path: Path) -> None:
    """Four `--resume` starts race for one interrupted run: exactly one resumes it; the others see it is
    trained (an error naming the run) — none resumes it twice, none abandons it."""
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "interrupted")
    code = """
import sys, time
from pathlib import Path
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.layout import Layout
from vilms.trainers import record
from vilms.trainers.datasets.validate import load_dataset
from vilms.trainers.job import job_for
from vilms.trainers.trainer import open_run
layout = Layout(Path(sys.argv[1]))
job = job_for(layout, "tiny-v1")
dataset = load_dataset(job.dataset_path, job.config.dataset.format)
used = record.distributed_used(job, nnodes=1, nproc_per_node=1, backend="none")
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    run_id, _, _, resuming = open_run(layout, job, dataset, True, used)
    print("resumed" if resuming else "new", run_id, flush=True)
    time.sleep(3)  # still training while the others pick
except ActionError as exc:
    print("refused", exc.message, flush=True)
"""
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", code, str(layout.root), str(start)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    resumed = [o for o in outs if o.startswith("resumed")]
    assert resumed == [f"resumed {OLD}"], outs
    assert all(o.startswith(f"refused run {OLD} of {ADAPTER} is being trained") for o in outs if o not in resumed), outs
    assert _status(layout, OLD) == "running"


def test_vilms_runs_lists_status_gate_release_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "running", day=1)  # killed: no trainer holds it
    write_run(layout.root, MID, gate="needs_approval", created_at="2026-11-22T09:15:00Z")
    write_run(layout.root, NEW, created_at="2026-11-23T09:15:00Z")
    write_run(layout.root, "other-20261124T091500Z-4a2b3c", created_at="2026-11-24T09:15:00Z")
    file = layout.root / "vilms.yaml"
    file.write_text(f"apiVersion: vilms/v1\nproject: acme\nadapters:\n  {ADAPTER}:\n    release: {NEW}\n")
    assert main(["runs", ADAPTER, "-f", str(file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "GATE", "RELEASED", "STARTED", "CONFIG"]
    assert [line.split()[0] for line in lines[1:]] == [NEW, MID, OLD]  # newest first, only this adapter
    assert lines[1].split() == [NEW, "completed", "passed", "yes", "2026-11-23T09:15:00Z", "c" * 12]
    assert lines[2].split()[1:4] == ["completed", "needs_approval", "-"]
    assert "running (no trainer)" in lines[3]
    assert main(["runs", "--format", "json", "-f", str(file)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in rows][0] == "other-20261124T091500Z-4a2b3c" and len(rows) == 4
    assert rows[1] == {"run_id": NEW, "adapter": ADAPTER, "status": "completed", "live": False, "gate": "passed",
                       "released": True, "started": "2026-11-23T09:15:00Z", "config_sha256": "c" * 64}
    assert main(["runs", "nothing", "-f", str(file)]) == 0
    assert capsys.readouterr().out.strip() == "no runs of nothing under artifacts/"


def test_a_killed_lock_holder_frees_the_run(tmp_path: Path) -> None:
    """The lock is the kernel's: SIGKILL frees it (no stale lock files to clean by hand); lock files stay
    out of git and out of artifacts/ (which holds only runs)."""
    layout = Layout(tmp_path)
    child = _hold_in_child(layout, OLD)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    shown = layout.run_lock(OLD).relative_to(tmp_path).as_posix()
    assert subprocess.run(["git", "check-ignore", "-q", shown], cwd=tmp_path, timeout=10).returncode == 0
    assert not layout.artifacts.exists()
    assert run_locks.is_live(layout, OLD) and not run_locks.hold(layout, OLD)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    assert not run_locks.is_live(layout, OLD) and run_locks.hold(layout, OLD)
    run_locks.release(layout, OLD)


def test_an_unreadable_record_never_blocks_a_start_and_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layout, job = _project(tmp_path)
    _unfinished(layout, job, OLD, "interrupted")
    broken = layout.run_record(MID)
    broken.parent.mkdir(parents=True)
    broken.write_text('{"apiVersion": "contracts.vilms.dev/v1", "kind": "RunRecord"}')  # edited by hand
    assert _open(layout, job) == (OLD, True)
    err = capsys.readouterr().err
    assert f"run {MID} is left alone: its record cannot be read" in err and "Traceback" not in err
    assert broken.read_text() == '{"apiVersion": "contracts.vilms.dev/v1", "kind": "RunRecord"}'
    assert main(["runs", ADAPTER, "-f", str(layout.root / "vilms.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split() == [MID, "unreadable", "-", "-", "-", "-"]
