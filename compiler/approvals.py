"""The approval log: ``.vilms/approvals/<adapter>.jsonl``, one ApprovalEntry per line (committed).

Every line is read through the contract (:mod:`vilms.compiler.contracts.approval_log`); a bad
line is reported as ``.vilms/approvals/<adapter>.jsonl:LINE:COL: path: message``. The
trainer appends the lines (:mod:`vilms.trainers.approval`).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

from vilms.compiler.contracts.approval_log import APPROVAL_LOG, ApprovalEntry
from vilms.compiler.errors import ActionError, Diagnostic, InvalidInputError
from vilms.compiler.layout import Layout


def shown(layout: Layout, adapter: str) -> str:
    """How messages name the adapter's log: ``.vilms/approvals/<adapter>.jsonl``."""
    return layout.approval_log(adapter).relative_to(layout.root).as_posix()


def read_approvals(layout: Layout, adapter: str) -> tuple[ApprovalEntry, ...]:
    """Every approval of ``adapter``'s runs, oldest first (none when there is no log)."""
    path, display = layout.approval_log(adapter), shown(layout, adapter)
    if not path.is_file():
        return ()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ActionError(f"cannot read the approval log {display}: {exc.strerror or exc}") from None
    return tuple(read_line(line.rstrip(b"\r"), display, number)
                 for number, line in enumerate(raw.split(b"\n"), 1) if line.strip())


def read_line(line: bytes, display: str, number: int) -> ApprovalEntry:
    """Line ``number`` of an approval log, through the contract; problems located in the file."""
    try:
        data = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _invalid(Diagnostic(display, number, exc.start + 1, "", "not valid UTF-8")) from None
    except ValueError as exc:
        raise _invalid(Diagnostic(display, number, exc.colno, "", f"not valid JSON ({exc.msg})")) from None
    if not isinstance(data, dict):
        raise _invalid(Diagnostic(display, number, 1, "", "expected a JSON object ({...}), one per line"))
    try:
        return APPROVAL_LOG.parse(line, display)
    except InvalidInputError as exc:
        moved = InvalidInputError([replace(d, line=d.line + number - 1 if d.line else number) for d in exc.diagnostics],
                                  hint=exc.hint)
        moved.message = exc.message
        raise moved from None


# characters JSON may hold raw but the loader (a YAML parser) refuses or reads as line breaks: DEL,
# the C1 controls (NEL included), U+2028/U+2029 and the non-characters U+FFFE/U+FFFF; written as
# \u escapes, which read back as the same text
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def line_of(entry: ApprovalEntry) -> bytes:
    """``entry`` as one line of the log (newline included): UTF-8, readable names, every character the
    loader would refuse escaped (a reason is free text)."""
    text = json.dumps(APPROVAL_LOG.data(entry), ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8") + b"\n"


def _invalid(*diagnostics: Diagnostic) -> InvalidInputError:
    return InvalidInputError(list(diagnostics), what=f"invalid {APPROVAL_LOG.kind} file",
                             hint=f"each line is one JSON object; {APPROVAL_LOG.remedy}")
