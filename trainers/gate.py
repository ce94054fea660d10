"""The evaluation gate: held-out perplexity + regression prompts → passed / failed / needs_approval.

* perplexity = exp(mean token loss on the held-out split, assistant tokens only); checked
  against ``gate.max_eval_perplexity`` when set (a gate with a ceiling but no held-out
  rows fails: nothing was measured).
* each regression prompt is sent as a user turn through the training chat template and
  answered greedily; ``expect_substring`` must occur in the answer (case-sensitive),
  ``expect_exact`` must equal the stripped answer.
* all checks pass → ``passed``; otherwise ``gate.on_fail`` decides: ``reject`` → ``failed``,
  ``approval`` → ``needs_approval`` (``vilms approve`` can then release it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vilms.compiler.contracts.run_record import RegressionOutcome
from vilms.compiler.contracts.training_config import GateSpec, RegressionCase


@dataclass(frozen=True)
class GateResult:
    """The gate's decision with its measurements as computed (the perplexity may be inf;
    :func:`vilms.trainers.record.completed` writes such values as null)."""

    status: str  # passed | failed | needs_approval
    eval_loss: float | None
    perplexity: float | None
    max_eval_perplexity: float | None
    perplexity_passed: bool | None
    regression: tuple[RegressionOutcome, ...]
    on_fail: str
    reasons: tuple[str, ...]


def perplexity(loss: float | None) -> float | None:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf


def check_answer(case: RegressionCase, answer: str) -> RegressionOutcome:
    if case.expect_exact is not None:
        return RegressionOutcome(
            case.prompt, case.expect_exact, "exact", answer, answer.strip() == case.expect_exact.strip()
        )
    expected = case.expect_substring or ""
    return RegressionOutcome(case.prompt, expected, "substring", answer, expected in answer)


def decide(spec: GateSpec, eval_loss: float | None, regression: list[RegressionOutcome]) -> GateResult:
    ppl = perplexity(eval_loss)
    reasons: list[str] = []
    ppl_ok: bool | None = None
    if spec.max_eval_perplexity is not None:
        if ppl is None:
            ppl_ok = False
            reasons.append("no held-out rows to measure perplexity on")
        else:
            ppl_ok = ppl <= spec.max_eval_perplexity
            if not ppl_ok:
                reasons.append(f"eval perplexity {ppl:.3f} > {spec.max_eval_perplexity}")
    for result in regression:
        if not result.passed:
            reasons.append(f"regression prompt {result.prompt!r}: expected {result.mode} {result.expected!r}")
    if not reasons:
        status = "passed"
    else:
        status = "failed" if spec.on_fail == "reject" else "needs_approval"
    return GateResult(
        status=status,
        eval_loss=eval_loss,
        perplexity=ppl,
        max_eval_perplexity=spec.max_eval_perplexity,
        perplexity_passed=ppl_ok,
        regression=tuple(regression),
        on_fail=spec.on_fail,
        reasons=tuple(reasons),
    )


def generate_answer(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 64, *, synced: bool = False) -> str:
    """Greedy answer to ``prompt`` sent as a user turn through the training chat template."""
    import torch

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(
        next(model.parameters()).device
    )
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **({"synced_gpus": True} if synced else {}),  # FSDP: every rank runs every forward pass
        )
    if was_training:
        model.train()
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def run_regression(model: Any, tokenizer: Any, spec: GateSpec, *, synced: bool = False) -> list[RegressionOutcome]:
    results = []
    for case in spec.regression:
        expected = case.expect_exact if case.expect_exact is not None else case.expect_substring or ""
        budget = max(32, len(tokenizer(expected, add_special_tokens=False)["input_ids"]) + 16)
        results.append(check_answer(case, generate_answer(model, tokenizer, case.prompt, budget, synced=synced)))
    return results
