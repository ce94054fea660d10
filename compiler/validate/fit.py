"""The memory-fit pass: runs on the resolved plan, after every other pass accepted the document.

One located diagnostic, with the estimate table, per deployment or training run that does
not fit its hardware profile; for training, one GPU's share under the chosen strategy
(``adapters.<a>.training.strategy`` when declared, else ``adapters.<a>.hardware``).
"""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.errors import Diagnostic
from vilms.compiler.memory import check_plan
from vilms.compiler.plan import Plan
from vilms.compiler.reporter import Reporter


def check_fit(doc: Document, plan: Plan) -> list[Diagnostic]:
    report = Reporter(doc)
    for problem in check_plan(plan):
        table = "".join("\n  " + line for line in problem.table.splitlines())
        report.error(problem.path, problem.message + table, hint=problem.hint)
    return sorted(report.diagnostics)
