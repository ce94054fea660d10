"""``artifacts/<run_id>/run.json`` (kind RunRecord): built by the trainer as a dataclass, written
whole through its contract, read by every reader through it (no torch needed here)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.runs import run_record, write_run
from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.contracts.training_config import GateSpec, RegressionCase
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.compiler.layout import Layout
from vilms.compiler.runs import release_status
from vilms.trainers import record, runs
from vilms.trainers.approval import approve
from vilms.trainers.checkpoint import TrainerState
from vilms.trainers.datasets.validate import load_dataset
from vilms.trainers.gate import check_answer, decide
from vilms.trainers.job import job_for
from vilms.trainers.report import build_metrics

from .conftest import write_project

RUN = "tiny-v1-20261120T091500Z-1a2b3c"
SHOWN = f"artifacts/{RUN}/run.json"
CEILING = GateSpec(max_eval_perplexity=12.0, regression=(RegressionCase("hi", "hello", None),), on_fail="approval")


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def trained(tmp_path: Path, eval_loss: float | None) -> tuple[Layout, Path]:
    """A run of the tiny project through the record's stages, as train_adapter writes them (no model)."""
    layout = Layout.of(write_project(tmp_path / "proj", None))
    job = job_for(layout, "tiny-v1")
    dataset = load_dataset(job.dataset_path, "chat")
    run_id, path = runs.create_run(layout, "tiny-v1")
    started = record.started(job, run_id, dataset, record.distributed_used(job, nnodes=1, nproc_per_node=2, backend="gloo"))
    runs.save_record(path, started)
    gate = decide(CEILING, eval_loss, [check_answer(CEILING.regression[0], "hello there")])
    state = TrainerState(step=3, tokens_seen=300, elapsed_seconds=1.5, peak_rss_bytes=2**20, train_history=[[1, 2.0, 0.1]])
    metrics = {**build_metrics(state, eval_loss, gate.perplexity, 3), "train_examples": 28, "eval_examples": 4}
    runs.save_record(path, record.completed(started, gate, metrics))
    return layout, path


def test_a_record_the_trainer_writes_loads_in_every_reader(tmp_path: Path) -> None:
    layout, path = trained(tmp_path, math.log(11.0))
    loaded = RUN_RECORD.load(path / "run.json")
    assert loaded == runs.load_record(path) == runs.read_record(layout, path.name)
    assert loaded.status == "completed" and loaded.gate_status == "passed" and loaded.releasable
    assert loaded.gate is not None and loaded.gate.perplexity == pytest.approx(11.0) and loaded.non_finite == ()
    assert loaded.config_sha256 == job_for(layout, "tiny-v1").sha256
    assert loaded.hardware.profile == "laptop" and loaded.libraries["python"]
    assert [s.resumed for s in loaded.sessions] == [False]
    status = release_status(layout, path.name)
    assert (status.status, status.gate_status, status.releasable) == ("completed", "passed", True)
    assert release_status(layout.root, path.name) == status


@pytest.mark.parametrize("loss,flagged", [(800.0, ("gate.perplexity",)), (math.nan, ("gate.eval_loss", "gate.perplexity"))],
                         ids=["perplexity-overflows", "loss-diverged"])
def test_non_finite_measurements_are_written_as_null_and_flagged(tmp_path: Path, loss: float, flagged: tuple[str, ...]) -> None:
    _, path = trained(tmp_path, loss)
    text = (path / "run.json").read_text()
    data = _strict_json(text)  # no Infinity, no NaN
    assert isinstance(data, dict) and data["non_finite"] == list(flagged)
    assert data["gate"]["perplexity"] is None and data["gate"]["status"] == "needs_approval"
    loaded = RUN_RECORD.load(path / "run.json")
    assert loaded.gate is not None and loaded.gate.perplexity is None and loaded.non_finite == flagged
    assert loaded.gate.reasons[0] == "eval perplexity inf > 12.0"


def test_the_writer_refuses_a_raw_non_finite_number(tmp_path: Path) -> None:
    path = write_run(tmp_path, RUN).parent
    before = (path / "run.json").read_bytes()
    good = RUN_RECORD.load(path / "run.json")
    assert good.gate is not None
    with pytest.raises(AssertionError, match=r"non-finite numbers at gate\.perplexity"):
        runs.save_record(path, replace(good, gate=replace(good.gate, perplexity=math.inf)))
    assert (path / "run.json").read_bytes() == before


def _broken(tmp_path: Path, edit) -> tuple[list[str], str | None, str]:
    file = write_run(tmp_path, RUN)
    data = json.loads(file.read_text())
    edit(data)
    text = json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n"
    file.write_text(text)
    with pytest.raises(InvalidInputError) as info:
        RUN_RECORD.load(file, SHOWN)
    return [d.render().split("\n")[0] for d in info.value.diagnostics], info.value.hint, text


def _at(text: str, needle: str, part: str) -> str:
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines, 1) if needle in line)
    return f"{SHOWN}:{n}:{lines[n - 1].index(part) + 1}"


def test_a_hand_broken_record_gives_exact_located_messages(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["colour"] = "blue"
        data["metrics"]["steps"] = "sixty"
        del data["dataset"]["rows"]

    errs, hint, text = _broken(tmp_path, edit)
    colour, dataset, sixty = _at(text, '"colour"', '"colour"'), _at(text, '"dataset"', '"dataset"'), _at(text, '"sixty"', '"sixty"')
    assert errs == [
        f"{colour}: colour: unknown key 'colour'",
        f"{dataset}: dataset: missing required key 'rows'",
        f"{sixty}: metrics.steps: must be an integer, not a string",
    ]
    assert hint == "ViLMS writes this file; do not edit it by hand: train the adapter again (`vilms train`)"


def test_a_record_of_another_version_is_refused_as_such(tmp_path: Path) -> None:
    errs, hint, text = _broken(tmp_path, lambda data: data.update(apiVersion="vilms/v1"))
    where = _at(text, "vilms/v1", '"vilms/v1"')
    assert errs == [f"{where}: apiVersion: written by another ViLMS version "
                    "(apiVersion 'vilms/v1'); this ViLMS reads contracts.vilms.dev/v1"]
    assert hint == "train the adapter again (`vilms train`) with this version of ViLMS"


def test_infinity_written_by_python_json_is_refused(tmp_path: Path) -> None:
    errs, _, text = _broken(tmp_path, lambda data: data["gate"].update(perplexity=math.inf))
    assert errs == [f"{_at(text, 'Infinity', 'Infinity')}: gate.perplexity: must be a number or null, not a string"]


def test_cross_field_rules(tmp_path: Path) -> None:
    def edit(data: dict) -> None:
        data["adapter"] = "other"
        data["gate"] = None
        data["approvals"] = [{"who": "ana", "reason": "ok", "at": "2026-11-20T10:15:00Z", "from_status": "needs_approval"}]
        data["non_finite"] = ["metrics.tokens_per_second"]

    errs, _, _ = _broken(tmp_path, edit)
    assert [e.split(": ", 1)[1] for e in errs] == [
        f"adapter: run '{RUN}' is not a run of adapter 'other'",
        "approvals: lists an approval but the gate status is None",
        "gate: must be set when status is completed",
        "non_finite[0]: metrics.tokens_per_second is listed as not finite but holds a number",
    ]


@pytest.mark.parametrize(
    "status,gate,releasable",
    [("completed", "passed", True), ("completed", "approved", True), ("completed", "needs_approval", False),
     ("completed", "failed", False), ("running", None, False), ("interrupted", None, False)],
)
def test_release_status(tmp_path: Path, status: str, gate: str | None, releasable: bool) -> None:
    write_run(tmp_path, RUN, status=status, gate=gate)
    found = release_status(tmp_path, RUN)
    assert (found.adapter, found.status, found.gate_status, found.releasable) == ("tiny-v1", status, gate, releasable)


def test_release_status_refusals_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="not a run id: '../etc'"):
        release_status(tmp_path, "../etc")
    with pytest.raises(ActionError, match="no run record at"):
        release_status(tmp_path, RUN)
    file = write_run(tmp_path, RUN)
    file.write_text(file.read_text().replace('"status": "completed"', '"status": "done"').replace('"rows": 32', '"rows": 0'))
    with pytest.raises(ActionError) as info:
        release_status(tmp_path, RUN)
    assert info.value.message == f"{file}:{_line(file, 'rows')}:13: dataset.rows: must be at least 1 (got 0) (and 1 more)"
    other = "tiny-v1-20261120T091500Z-ffffff"
    write_run(tmp_path, RUN)
    (tmp_path / "artifacts" / RUN).rename(tmp_path / "artifacts" / other)
    with pytest.raises(ActionError, match=f"records run '{RUN}', not '{other}'"):
        release_status(tmp_path, other)


def _line(file: Path, key: str) -> int:
    return next(i for i, line in enumerate(file.read_text().splitlines(), 1) if f'"{key}"' in line)


def test_approve_replaces_the_record(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    write_run(tmp_path, RUN, gate="passed")
    with pytest.raises(ActionError, match="passed its gate"):
        approve(layout, RUN, "why not")
    write_run(tmp_path, RUN, gate="failed")
    with pytest.raises(ActionError, match="on_fail is reject"):
        approve(layout, RUN, "why not")
    write_run(tmp_path, RUN, status="running", gate=None)
    with pytest.raises(ActionError, match="has not finished its evaluation"):
        approve(layout, RUN, "why not")
    write_run(tmp_path, RUN, gate="needs_approval")
    with pytest.raises(ActionError, match="must not be empty"):
        approve(layout, RUN, "  ")
    decision, _ = approve(layout, RUN, "read every answer")
    loaded = runs.read_record(layout, RUN)
    assert loaded.gate_status == "approved" and loaded.approvals == (decision,) and loaded.releasable
    assert decision.reason == "read every answer" and decision.from_status == "needs_approval" and decision.who
    assert loaded == replace(run_record(RUN, gate="needs_approval"), gate=loaded.gate, approvals=(decision,))
    with pytest.raises(ActionError, match="already approved"):
        approve(layout, RUN, "again")


def test_unfinished_lists_the_runs_that_may_be_resumed_newest_first(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert runs.unfinished(layout, "tiny-v1") == []
    older, newer, done, gone = (f"tiny-v1-2026112{i}T091500Z-{i}a2b3c" for i in (1, 2, 3, 4))
    write_run(tmp_path, older, status="interrupted", gate=None, created_at="2026-11-21T09:15:00Z")
    write_run(tmp_path, newer, status="failed", gate=None, created_at="2026-11-22T09:15:00Z")
    write_run(tmp_path, done, created_at="2026-11-23T09:15:00Z")
    write_run(tmp_path, gone, status="abandoned", gate=None, created_at="2026-11-24T09:15:00Z")
    write_run(tmp_path, "tiny-v1-x-20261124T091500Z-4a2b3c", status="running", gate=None)  # another adapter
    assert [r.run_id for r in runs.unfinished(layout, "tiny-v1")] == [newer, older]
    found = runs.unfinished(layout, "tiny-v1")[0]
    assert record.resumed(found).sessions[-1].resumed and record.resumed(found).status == "running"


def test_run_ids_are_unique_and_folders_exclusive(tmp_path: Path) -> None:
    made = {runs.create_run(Layout(tmp_path), "a") for _ in range(50)}
    assert len({run_id for run_id, _ in made}) == 50
    assert all(path.is_dir() and path.name == run_id for run_id, path in made)
