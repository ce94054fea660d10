"""The release history (.vilms/releases/<adapter>.jsonl) as a contract: every line written and
read through ReleaseHistoryEntry, problems located at the line and column of the file, lines
of the previous version (no apiVersion) read as the legacy shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vilms.compiler import run_ids
from vilms.compiler.contracts.registry import all_contracts
from vilms.compiler.contracts.release_history import RELEASE_HISTORY, ReleaseHistoryEntry
from vilms.compiler.errors import InvalidInputError
from vilms.compiler.journal import append_line
from vilms.compiler.layout import Layout
from vilms.compiler.rollout.history import entry, history_line, open_history, read_history, rollback_target

R1, R2 = "a-20261121T091500Z-1a2b3c", "a-20261122T091500Z-2a2b3c"
SHOWN = ".vilms/releases/a.jsonl"


def v1(**keys) -> str:
    """One line as this version writes it, ``keys`` changed."""
    data = {"apiVersion": "contracts.vilms.dev/v1", "kind": "ReleaseHistoryEntry", "at": "2026-11-23T15:20:00Z",
            "adapter": "a", "from": None, "to": R1, "action": "rollout", **keys}
    return json.dumps(data)


def legacy(**keys) -> str:
    """One line as the previous version wrote it: no apiVersion, no kind."""
    data = {"at": "2026-11-23T15:20:00Z", "adapter": "a", "from": None, "to": R1, "action": "rollout", **keys}
    return json.dumps(data)


def history_file(tmp_path: Path, *lines: str, raw: bytes | None = None) -> Layout:
    layout = Layout(tmp_path)
    layout.releases.mkdir(parents=True)
    layout.history("a").write_bytes(raw if raw is not None else "".join(line + "\n" for line in lines).encode())
    return layout


def append_history(layout: Layout, record) -> None:
    """As rollout appends: the file opened (created) first, then the line at its end."""
    path, fh = open_history(layout, "a")
    with fh:
        size = fh.seek(0, 2)
    append_line(path, size, history_line(record))


def test_what_is_written_is_read_back(tmp_path):
    layout = Layout(tmp_path)
    records = [entry("a", None, R1, "rollout"), entry("a", R1, R2, "rollout"), entry("a", R2, R1, "rollback")]
    for record in records:
        append_history(layout, record)
    lines = layout.history("a").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["ReleaseHistoryEntry"] * 3
    assert list(json.loads(lines[0])) == ["apiVersion", "kind", "at", "adapter", "from", "to", "action", "digest"]  # `from`, not `from_`
    assert read_history(layout, "a") == tuple(records)
    assert rollback_target(read_history(layout, "a"), R1) == (True, None)


def test_a_line_without_a_final_newline_is_not_joined(tmp_path):
    layout = history_file(tmp_path, raw=v1().encode())  # e.g. cut by an editor
    append_history(layout, entry("a", R1, R2, "rollout"))
    assert [e.to for e in read_history(layout, "a")] == [R1, R2]


# (lines of the file, the line and the text whose first character the diagnostic points at, the rest)
LOCATED = [
    ("not-json", [v1(), "{not json"], 2, "not", "not valid JSON (Expecting property name enclosed in double quotes)"),
    ("not-an-object", [v1(), "", "  [1, 2]"], 3, "[", "expected a JSON object"),
    ("unknown-action", [v1(), v1(action="rollup")], 2, '"rollup"', "action: 'rollup' is not one of rollout, rollback (did you mean 'rollout'?)"),
    ("not-a-run-id", [v1(to="latest")], 1, '"latest"', "to: 'latest' is not a valid to"),
    ("unknown-key", [v1(), v1(note="x")], 2, '"note"', "note: unknown key 'note'"),
    ("missing-key", ['{"apiVersion": "contracts.vilms.dev/v1", "kind": "ReleaseHistoryEntry", "at": "2026-11-23T15:20:00Z", '
                     '"adapter": "a", "from": null, "action": "rollout"}'], 1, "{", "missing required key 'to'"),
    ("another-version", [v1(), v1(), v1(apiVersion="contracts.vilms.dev/v2")], 3, '"contracts.vilms.dev/v2"',
     "apiVersion: written by another ViLMS version (apiVersion 'contracts.vilms.dev/v2'); this ViLMS reads contracts.vilms.dev/v1"),
    ("another-kind", [v1(kind="RunRecord")], 1, '"RunRecord"', "kind: this is a 'RunRecord' file, not a 'ReleaseHistoryEntry'"),
    # the contract's check hook: rules between keys
    ("run-of-another-adapter", [v1(to="b-20261121T091500Z-1a2b3c")], 1, '"b-2026',
     "to: run 'b-20261121T091500Z-1a2b3c' is not a run of adapter 'a'"),
    ("no-change", [v1(**{"from": R1})], 1, f'"to": "{R1}', f"to: equals from ('{R1}'); a history line records a change"),
    # legacy lines are checked by the same contract, located in the line as written
    ("legacy-unknown-action", [legacy(action="undo")], 1, '"undo"', "action: 'undo' is not one of rollout, rollback"),
    ("legacy-missing-key", ['{"at": "2026-11-23T15:20:00Z", "adapter": "a", "to": null, "action": "rollback"}'], 1, "{",
     "missing required key 'from'"),
    ("legacy-duplicate-key", [legacy(), '{"at": "x", "at": "y"}'], 2, '"at": "y"', "at: duplicate key 'at'"),
]


@pytest.mark.parametrize("lines,number,at,message", [c[1:] for c in LOCATED], ids=[c[0] for c in LOCATED])
def test_a_bad_line_is_located_in_the_file(tmp_path, lines, number, at, message):
    layout = history_file(tmp_path, *lines)
    with pytest.raises(InvalidInputError) as caught:
        read_history(layout, "a")
    rendered = caught.value.render()
    column = lines[number - 1].index(at) + 1
    if at.startswith('"to": '):
        column += len('"to": ')
    assert f"{SHOWN}:{number}:{column}: {message}" in rendered, rendered
    assert "invalid ReleaseHistoryEntry file: 1 problem found" in rendered and "\n  hint: " in rendered


def test_lines_of_the_previous_version_are_read_as_the_legacy_shape(tmp_path):
    """History committed by the previous version (no apiVersion/kind) keeps working, mixed with new lines."""
    layout = history_file(tmp_path, legacy(), legacy(**{"from": R1, "to": R2}), "", v1(**{"from": R2, "to": R1, "action": "rollback"}))
    assert read_history(layout, "a") == (
        ReleaseHistoryEntry("2026-11-23T15:20:00Z", "a", None, R1, "rollout", None),
        ReleaseHistoryEntry("2026-11-23T15:20:00Z", "a", R1, R2, "rollout", None),
        ReleaseHistoryEntry("2026-11-23T15:20:00Z", "a", R2, R1, "rollback", None),
    )


def test_crlf_and_a_bom_are_read(tmp_path):
    layout = history_file(tmp_path, raw=b"\xef\xbb\xbf" + legacy().encode() + b"\r\n" + v1(**{"from": R1, "to": R2}).encode() + b"\r\n")
    assert [e.to for e in read_history(layout, "a")] == [R1, R2]


def test_no_file_is_no_history(tmp_path):
    assert read_history(Layout(tmp_path), "a") == ()


def test_the_schema_holds_the_run_id_and_name_patterns_of_vilms_yaml():
    schema = RELEASE_HISTORY.schema
    assert schema["properties"]["to"]["pattern"] == run_ids.PATTERN
    vilms_v1 = json.loads((Path(run_ids.__file__).parent / "schema" / "vilms-v1.schema.json").read_text())
    assert schema["properties"]["adapter"]["pattern"] == vilms_v1["$defs"]["name"]["pattern"]
    assert RELEASE_HISTORY in all_contracts()
