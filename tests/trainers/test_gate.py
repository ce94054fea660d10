"""Gate decisions and the run record the compiler reads (no torch)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from vilms.compiler.errors import ActionError
from vilms.trainers import runs
from vilms.trainers.config import GateSpec, RegressionCase
from vilms.trainers.gate import check_answer, decide

RESET = RegressionCase("How do I reset my password?", "reset", None)
EXACT = RegressionCase("2+2?", None, "4")


def spec(on_fail: str = "approval", ceiling: float | None = 12.0) -> GateSpec:
    return GateSpec(max_eval_perplexity=ceiling, regression=(RESET, EXACT), on_fail=on_fail)


def test_all_checks_pass() -> None:
    result = decide(spec(), math.log(11.0), [check_answer(RESET, "Press reset."), check_answer(EXACT, " 4\n")])
    assert result.status == "passed" and result.reasons == ()
    assert result.perplexity == pytest.approx(11.0)


@pytest.mark.parametrize("on_fail,status", [("approval", "needs_approval"), ("reject", "failed")])
def test_failures_follow_on_fail(on_fail: str, status: str) -> None:
    result = decide(spec(on_fail), math.log(13.0), [check_answer(RESET, "Reset it"), check_answer(EXACT, "4")])
    assert result.status == status
    assert result.reasons == (
        "eval perplexity 13.000 > 12.0",
        "regression prompt 'How do I reset my password?': expected substring 'reset'",
    )


def test_exact_means_exact_after_strip() -> None:
    assert not check_answer(EXACT, "4.").passed
    assert check_answer(EXACT, "\n4 ").passed


def test_ceiling_without_held_out_rows_fails_and_no_ceiling_passes() -> None:
    assert decide(spec(), None, []).status == "needs_approval"
    assert decide(spec(ceiling=None), None, []).status == "passed"


def test_load_run_statuses(tmp_path: Path) -> None:
    run_id, path = runs.create_run_dir(tmp_path, "sup")
    runs.write_record(path, {"run_id": run_id, "adapter": "sup", "status": "running", "gate": None})
    status = runs.load_run(tmp_path, run_id)
    assert (status.status, status.gate_status, status.releasable) == ("running", None, False)
    runs.write_record(path, {"run_id": run_id, "adapter": "sup", "status": "completed", "gate": {"status": "passed"}})
    assert runs.load_run(tmp_path, run_id).releasable
    with pytest.raises(ActionError, match="passed its gate"):
        runs.approve(tmp_path, run_id, "why not")
    with pytest.raises(ActionError, match="no run record"):
        runs.load_run(tmp_path, "sup-20260101T000000Z-abcdef")
    with pytest.raises(ActionError, match="not a run id"):
        runs.load_run(tmp_path, "../etc")


def test_run_ids_are_unique(tmp_path: Path) -> None:
    ids = {runs.create_run_dir(tmp_path, "a")[0] for _ in range(50)}
    assert len(ids) == 50
