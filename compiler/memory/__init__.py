"""The memory planner: does a deployment or a training run fit its hardware profile?

Estimates are arithmetic on the resolved plan (stdlib only, no I/O). Formulas follow
``reference/training.md`` §8; every constant says where it comes from, and
``tests/compiler/test_memory.py`` holds the results to published measurements.

One concept per module: ``shapes`` (a model's dimensions, from its architecture or
borrowed by size), ``estimate`` (the per-component record), ``serving`` (each engine's
needs and budget), ``placement`` (GPUs, tensor and pipeline parallel and replicas of each
served model), ``training`` (the trainer's recipe, per GPU under DDP or FSDP), ``strategy``
(``training.strategy``, ``auto`` resolved from those estimates), ``report`` (tables, explain
lines) and ``check`` (every workload of a plan that does not fit).
"""

from __future__ import annotations

from vilms.compiler.memory.check import check_plan
from vilms.compiler.memory.estimate import GIB, Estimate
from vilms.compiler.memory.placement import Placement, deployment_fits, estimate_deployment, estimate_serving, placements
from vilms.compiler.memory.report import explain_lines, format_table
from vilms.compiler.memory.serving import estimate_model
from vilms.compiler.memory.shapes import Shape
from vilms.compiler.memory.strategy import Strategy, choose_strategy, training_estimates
from vilms.compiler.memory.training import VILMS_TRAINER, Recipe, estimate_training

__all__ = [
    "GIB", "VILMS_TRAINER", "Estimate", "Placement", "Recipe", "Shape", "Strategy", "check_plan", "choose_strategy",
    "deployment_fits", "estimate_deployment", "estimate_model", "estimate_serving", "estimate_training",
    "explain_lines", "format_table", "placements", "training_estimates",
]
