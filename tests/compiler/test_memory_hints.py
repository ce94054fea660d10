"""The fit check's hints name values vilms.yaml accepts (the planner's arithmetic is in test_memory.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.compiler.test_memory import GIB, QWEN25_7B, deployment, hardware, model, plan
from vilms.compiler import memory

SCHEMA = Path(__file__).resolve().parents[2] / "compiler" / "schema" / "vilms-v1.schema.json"


def _quantization_enum(engine: str) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    return schema["$defs"]["model"]["properties"]["quantization"]["properties"][engine]["enum"]


@pytest.mark.parametrize("engine", ["ollama", "llamacpp"])
def test_smaller_quantization_hint_is_spelt_as_the_engine_takes_it(engine: str) -> None:
    laptop = hardware("laptop", "cpu", memory=8 * GIB)
    m = model("big", QWEN25_7B, quant={engine: "q8_0"}, context=4096)
    dep = deployment(laptop, engine, [m], target="local" if engine == "llamacpp" else "compose")
    [problem] = memory.check_plan(plan([m], [laptop], deployments=[dep]))
    suggested = problem.hint.split("pick a smaller quantization (")[1].split(")")[0]
    assert suggested in _quantization_enum(engine)
