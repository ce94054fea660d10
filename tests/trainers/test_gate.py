"""Gate decisions (no torch)."""

from __future__ import annotations

import math

import pytest

from vilms.compiler.contracts.training_config import GateSpec, RegressionCase
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
