"""Stage 2, validate: every problem in a :class:`Document`, found at once and sorted.

The JSON Schema pass runs first; semantic passes run only on a document the schema
accepts, so they can rely on its shape. The memory-fit pass (:mod:`.fit`) needs the
resolved plan, so the pipeline runs it after resolve.
"""

from __future__ import annotations

from vilms.compiler.document import Document
from vilms.compiler.errors import Diagnostic
from vilms.compiler.reporter import Reporter
from vilms.compiler.validate import cluster, engines, files, gitops, names, references, releases, secrets
from vilms.compiler.validate.schema_pass import check_schema

SEMANTIC_PASSES = (references.check, names.check, engines.check, files.check, releases.check, cluster.check, gitops.check)


def diagnose(doc: Document) -> list[Diagnostic]:
    """All diagnostics for ``doc``, sorted by position. A plaintext secret is reported even
    when the schema pass failed: it should be rotated now, not after the typos are fixed."""
    report = Reporter(doc)
    check_schema(doc, report)
    secrets.check(doc, report)
    if not report.diagnostics:
        for check in SEMANTIC_PASSES:
            check(doc, report)
    return sorted(set(report.diagnostics))
