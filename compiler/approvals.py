"""The approval log: ``.vilms/approvals/<adapter>.jsonl``, one ApprovalEntry per line (committed).

Every line is read through the contract (:mod:`vilms.compiler.contracts.approval_log`); a bad
line is reported as ``.vilms/approvals/<adapter>.jsonl:LINE:COL: path: message``. The
trainer appends the lines (:mod:`vilms.trainers.approval`).
"""

from __future__ import annotations

import json
import re

from vilms.compiler.contracts.approval_log import APPROVAL_LOG, ApprovalEntry
from vilms.compiler.errors import InvalidInputError
from vilms.compiler.jsonl_log import json_object, on_line, read_log
from vilms.compiler.layout import Layout


def shown(layout: Layout, adapter: str) -> str:
    """How messages name the adapter's log: ``.vilms/approvals/<adapter>.jsonl``."""
    return layout.approval_log(adapter).relative_to(layout.root).as_posix()


def read_approvals(layout: Layout, adapter: str) -> tuple[ApprovalEntry, ...]:
    """Every approval of ``adapter``'s runs, oldest first (none when there is no log)."""
    return read_log(layout.approval_log(adapter), shown(layout, adapter), "approval log", read_line)


def read_line(line: bytes, display: str, number: int) -> ApprovalEntry:
    """Line ``number`` of an approval log, through the contract; problems located in the file."""
    json_object(line, display, number, APPROVAL_LOG)
    try:
        return APPROVAL_LOG.parse(line, display)
    except InvalidInputError as exc:
        raise on_line(exc, number) from None


# characters JSON may hold raw but the loader (a YAML parser) refuses or reads as line breaks: DEL,
# the C1 controls (NEL included), U+2028/U+2029 and the non-characters U+FFFE/U+FFFF; written as
# \u escapes, which read back as the same text
_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")


def line_of(entry: ApprovalEntry) -> bytes:
    """``entry`` as one line of the log (newline included): UTF-8, readable names, every character the
    loader would refuse escaped (a reason is free text)."""
    text = json.dumps(APPROVAL_LOG.data(entry), ensure_ascii=False)
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8") + b"\n"

