"""Semantic pass: an adapter's ``release`` names a run of that adapter, and a run found in
``artifacts/`` may only be released when its evaluation gate passed or a human approved it.

Artefacts are not in git, so a run that is not present locally is taken on trust (CI builds
without artifacts); one that is present is checked.
"""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.errors import VilmsError
from vilms.compiler.layout import Layout
from vilms.compiler.reporter import Reporter
from vilms.compiler.run_ids import adapter_of, example_for


def check(doc: Document, report: Reporter) -> None:
    for name, adapter in doc.data.get("adapters", {}).items():
        run_id = adapter.get("release")
        if run_id is None:
            continue
        path = ("adapters", name, "release")
        owner = adapter_of(run_id)
        if owner is None:
            report.error(path, f"{run_id!r} is not a run id", hint=f"run ids look like {example_for(name)} (see artifacts/)")
            continue
        if owner != name:
            report.error(path, f"run {run_id!r} was trained for adapter {owner!r}, not {name!r}")
            continue
        if Layout(doc.root).run_record(run_id).is_file():
            _check_local_run(doc, report, path, run_id)


def _check_local_run(doc: Document, report: Reporter, path: tuple, run_id: str) -> None:
    from vilms.compiler.runs import release_hint, release_status

    try:
        run = release_status(doc.root, run_id)
    except VilmsError as exc:
        report.error(path, f"run {run_id!r} cannot be read: {exc.message}")
        return
    if not run.releasable:
        gate = run.gate_status or "not evaluated"
        report.error(path, f"run {run_id!r} cannot be released: status {run.status}, gate {gate}",
                     hint=release_hint(run_id, run.status, run.gate_status))
