"""`vilms rollout` / `vilms rollback`: change the run an adapter serves, then rebuild.

Three parts, in order:

* **edit**: vilms.yaml is edited as text, never re-dumped: the positions of the composed
  YAML nodes say which characters hold ``adapters.<name>.release``; only that scalar is
  replaced (keeping its quoting style), or one ``release:`` entry is inserted into the
  adapter's mapping (block or flow style). The edited text must load to exactly the old
  data with the new release, or nothing is written.
* **history**: ``.vilms/releases/<adapter>.jsonl`` beside vilms.yaml, one JSON line per
  change; rollback undoes the latest rollout that is still in effect.
* **change**: validate (adapter, run id, a local run's gate), compile the edited text in
  memory, and only when that succeeds write generated/ and vilms.yaml, then the history.
  A refused change leaves every file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vilms.compiler.diff import DiffReport, compare, read_disk_tree, render_stat
from vilms.compiler.document import Document, Path_, dotted
from vilms.compiler.errors import ActionError, Diagnostic, InvalidInputError, VilmsError
from vilms.compiler.load import compose, load, parse
from vilms.compiler.pipeline import OUTPUT_DIR, display_name, plan_document, render_files
from vilms.compiler.plan import Plan
from vilms.compiler.suggest import did_you_mean
from vilms.compiler.validate.releases import RUN_ID
from vilms.compiler.write import write_tree

HISTORY_DIR = Path(".vilms") / "releases"
ACTIONS = ("rollout", "rollback")
BY_HAND = "set adapters.{adapter}.release in vilms.yaml by hand, then run `vilms build`"


# --- edit: replace one scalar, or insert one entry, in the YAML text


@dataclass(frozen=True)
class Edit:
    text: str
    inserted_line: int | None  # 1-based line added to the file, when release: was absent


def set_release(text: str, adapter: str, value: str | None) -> Edit:
    """``text`` with ``adapters.<adapter>.release`` set to ``value``, every other byte kept."""
    root = compose(text)
    adapters = _entry(root, "adapters")
    if adapters is None or not isinstance(adapters[1], MappingNode):
        raise ActionError("vilms.yaml has no adapters: mapping")
    found = _entry(adapters[1], adapter)
    if found is None:
        raise ActionError(f"unknown adapter {adapter!r}")
    key, mapping = found
    _own(key, mapping, f"adapters.{adapter}")
    if not isinstance(mapping, MappingNode):
        raise ActionError(f"adapters.{adapter} is not a mapping", hint=BY_HAND.format(adapter=adapter))
    release = _entry(mapping, "release")
    if release is not None:
        return Edit(_replace_scalar(text, *release, value, adapter), None)
    if mapping.flow_style:
        return _insert_flow(text, mapping, value, adapter)
    return _insert_block(text, mapping, value, adapter)


def _entry(node: Node | None, name: str) -> tuple[ScalarNode, Node] | None:
    if not isinstance(node, MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, ScalarNode) and key.value == name:
            return key, value
    return None


def _own(key: Node, value: Node, where: str) -> None:
    """Refuse a value that is an alias (``*name``): its text lives elsewhere in the file."""
    if value.start_mark.index < key.end_mark.index:
        raise ActionError(f"{where} is a YAML alias (*name); rollout will not edit the anchored original",
                          hint="write the value out in place, or edit vilms.yaml by hand")


def _replace_scalar(text: str, key: ScalarNode, node: Node, value: str | None, adapter: str) -> str:
    where = f"adapters.{adapter}.release"
    _own(key, node, where)
    start, end = node.start_mark.index, node.end_mark.index
    if not isinstance(node, ScalarNode) or node.style in ("|", ">") or node.start_mark.line != node.end_mark.line:
        raise ActionError(f"{where} is not a one-line scalar", hint=BY_HAND.format(adapter=adapter))
    if text[start:start + 1] in ("&", "!"):
        raise ActionError(f"{where} carries a YAML anchor or tag; rollout will not edit it", hint=BY_HAND.format(adapter=adapter))
    if start == end:  # `release:` with nothing after it (null)
        colon = text.index(":", key.end_mark.index)
        return text[:colon + 1] + " " + _scalar(value, None) + text[colon + 1:]
    return text[:start] + _scalar(value, node.style) + text[end:]


PLAIN_SAFE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")


def _scalar(value: str | None, style: str | None) -> str:
    """``value`` as YAML, in the quoting style the old value had (``null`` is always plain)."""
    if value is None:
        return "null"
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' or not PLAIN_SAFE.match(value) or value.lower() in ("null", "true", "false"):
        return json.dumps(value)
    return value


def _insert_block(text: str, mapping: MappingNode, value: str | None, adapter: str) -> Edit:
    if not mapping.value:
        raise ActionError(f"adapters.{adapter} is empty", hint=BY_HAND.format(adapter=adapter))
    indent = mapping.value[0][0].start_mark.column
    leaf = _last_leaf(mapping, adapter)
    pos = leaf.end_mark.index
    if pos < mapping.value[-1][0].end_mark.index:
        raise ActionError(f"the last entry of adapters.{adapter} ends in a YAML alias; rollout cannot tell where the mapping ends",
                          hint=BY_HAND.format(adapter=adapter))
    newline = "\r\n" if "\r\n" in text else "\n"
    if leaf.end_mark.column != 0:  # the rest of the leaf's line (a trailing comment) stays with it
        eol = text.find("\n", pos)
        pos = len(text) if eol < 0 else eol + 1
    while pos < len(text):  # comment lines indented under the last entry stay with it
        eol = text.find("\n", pos)
        line = text[pos:] if eol < 0 else text[pos:eol]
        if not line.lstrip().startswith("#") or len(line) - len(line.lstrip(" ")) <= indent:
            break
        pos = len(text) if eol < 0 else eol + 1
    prefix = newline if pos == len(text) and not text.endswith("\n") else ""
    line = f"{prefix}{' ' * indent}release: {_scalar(value, None)}{newline}"
    return Edit(text[:pos] + line + text[pos:], text.count("\n", 0, pos) + 1 + (1 if prefix else 0))


def _last_leaf(node: Node, adapter: str) -> Node:
    """The node whose text ends the block collection ``node``."""
    while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        if isinstance(node, MappingNode):
            key, child = node.value[-1]
            _own(key, child, f"the last entry of adapters.{adapter}")
        else:
            child = node.value[-1]
        node = child
    return node


def _insert_flow(text: str, mapping: MappingNode, value: str | None, adapter: str) -> Edit:
    entry = f"release: {_scalar(value, None)}"
    if not mapping.value:
        pos = text.index("{", mapping.start_mark.index) + 1
        return Edit(text[:pos] + entry + text[pos:], None)
    key, last = mapping.value[-1]
    _own(key, last, f"the last entry of adapters.{adapter}")
    pos = last.end_mark.index
    return Edit(text[:pos] + ", " + entry + text[pos:], None)


# --- history: .vilms/releases/<adapter>.jsonl


def history_path(project_root: Path, adapter: str) -> Path:
    return project_root / HISTORY_DIR / f"{adapter}.jsonl"


def read_history(project_root: Path, adapter: str) -> list[dict[str, Any]]:
    path = history_path(project_root, adapter)
    if not path.is_file():
        return []
    shown = (HISTORY_DIR / path.name).as_posix()
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise ActionError(f"{shown}:{number}: not valid JSON ({exc.msg})", hint="fix or remove that line") from None
        if not isinstance(entry, dict) or entry.get("action") not in ACTIONS or not {"from", "to"} <= set(entry):
            raise ActionError(f"{shown}:{number}: not a release record",
                              hint='each line is {"at": ..., "adapter": ..., "from": ..., "to": ..., "action": "rollout"|"rollback"}')
        entries.append(entry)
    return entries


def open_history(project_root: Path, adapter: str) -> tuple[Path, BinaryIO]:
    """The adapter's history file, opened for appending: opened *before* anything changes, so
    a history that cannot be written refuses the change instead of leaving it unrecorded."""
    path = history_path(project_root, adapter)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path, path.open("ab+")
    except OSError as exc:
        raise ActionError(f"cannot write the release history {path}: {exc.strerror or exc}",
                          hint=f"{HISTORY_DIR}/ must be a writable folder beside vilms.yaml") from None


def append_history(path: Path, fh: BinaryIO, adapter: str, before: str | None, after: str | None,
                   action: str) -> None:
    entry = {"at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "adapter": adapter,
             "from": before, "to": after, "action": action}
    lead = b""
    if path.stat().st_size:
        fh.seek(-1, os.SEEK_END)
        lead = b"" if fh.read(1) == b"\n" else b"\n"
    fh.write(lead + json.dumps(entry).encode("utf-8") + b"\n")
    fh.flush()


def rollback_target(history: list[dict[str, Any]], current: str | None) -> tuple[bool, str | None]:
    """What a rollback from ``current`` returns to: ``(found, release)``.

    The history replays as a stack of rollouts still in effect: a rollback removes the
    rollout it undid, so rolling back twice from r3 goes to r2, then r1 (not back to r3).
    The target is the ``from`` of the latest remaining rollout whose ``to`` is ``current``.
    """
    live: list[dict[str, Any]] = []
    for entry in history:
        if entry["action"] == "rollout":
            live.append(entry)
            continue
        for i in range(len(live) - 1, -1, -1):
            if live[i]["to"] == entry["from"] and live[i]["from"] == entry["to"]:
                del live[i]
                break
    for entry in reversed(live):
        if entry["to"] == current:
            return True, entry["from"]
    return False, None


# --- change: validate, compile in memory, write both, record


@dataclass(frozen=True)
class ReleaseChange:
    adapter: str
    action: str  # rollout | rollback
    before: str | None
    after: str | None
    file: Path
    line: int  # where release: is in vilms.yaml now
    serving: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (alias, deployments) serving the adapter
    diff: DiffReport | None = None  # None: nothing changed
    history: Path | None = None
    warnings: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.diff is not None


def rollout(file: Path, adapter: str, run_id: str) -> ReleaseChange:
    """Set ``adapters.<adapter>.release: <run_id>`` in ``file`` and rebuild generated/."""
    doc, raw = _read(file)
    current = _current(doc, adapter)
    if current == run_id:  # nothing to change; what serves it still matters to --apply
        return ReleaseChange(adapter, "rollout", current, run_id, file, _release_line(doc, adapter),
                             serving=_serving(plan_document(doc), adapter))
    return _change(file, doc, raw, adapter, current, run_id, "rollout")


def rollback(file: Path, adapter: str) -> ReleaseChange:
    """Set ``adapters.<adapter>.release`` back to what it was before the current rollout."""
    doc, raw = _read(file)
    current = _current(doc, adapter)
    history = read_history(doc.root, adapter)
    shown = (HISTORY_DIR / f"{adapter}.jsonl").as_posix()
    if not history:
        raise ActionError(f"nothing to roll back to: no release history for {adapter} ({shown} beside {doc.display_name})",
                          hint=BY_HAND.format(adapter=adapter))
    found, target = rollback_target(history, current)
    if not found:
        raise ActionError(f"nothing to roll back to: {shown} has no rollout of {adapter} to {_show(current)}",
                          hint=BY_HAND.format(adapter=adapter))
    return _change(file, doc, raw, adapter, current, target, "rollback")


def _read(file: Path) -> tuple[Document, bytes]:
    doc = load(file, display_name(file))
    raw = doc.file.read_bytes()
    if hashlib.sha256(raw).hexdigest() != doc.sha256:
        raise ActionError(f"{doc.display_name} changed while it was read; try again")
    return doc, raw


def _current(doc: Document, adapter: str) -> str | None:
    adapters = doc.data.get("adapters")
    if not isinstance(adapters, dict) or adapter not in adapters:
        names = adapters if isinstance(adapters, dict) else {}
        path: Path_ = ("adapters",) if isinstance(adapters, dict) else ()
        listed = f"adapters: {', '.join(sorted(names))}" if names else "declare it under adapters: first"
        raise _refused(doc, path, f"unknown adapter {adapter!r}{did_you_mean(adapter, names)}", listed, at_key=True)
    spec = adapters[adapter]
    current = spec.get("release") if isinstance(spec, dict) else None
    if current is not None and not isinstance(current, str):
        raise _refused(doc, ("adapters", adapter, "release"), "must be a run id or null", BY_HAND.format(adapter=adapter))
    return current


def _refused(doc: Document, path: Path_, message: str, hint: str | None, *, at_key: bool = False) -> InvalidInputError:
    line, column = doc.locate(path, key=at_key)
    return InvalidInputError([Diagnostic(doc.display_name, line, column, dotted(path), message, hint)])


def _check_run(doc: Document, adapter: str, run_id: str) -> list[str]:
    """Refuse a run id that is malformed, of another adapter, or a local run whose gate did
    not pass; warn when the run is not in artifacts/ here (the compiler takes it on trust)."""
    path: Path_ = ("adapters", adapter, "release")
    if path not in doc.value_positions:
        path = ("adapters", adapter)
    match = RUN_ID.match(run_id)
    if not match:
        raise _refused(doc, path, f"{run_id!r} is not a run id", f"run ids look like {adapter}-20261123T152000Z-1a2b3c (see artifacts/)")
    if match.group("adapter") != adapter:
        raise _refused(doc, path, f"run {run_id!r} was trained for adapter {match.group('adapter')!r}, not {adapter!r}",
                       f"runs of {adapter} are named {adapter}-<UTC time>-<hex>")
    runs = doc.root / "artifacts"
    if (runs / run_id / "run.json").is_file():
        from vilms.trainers.runs import load_run  # stdlib only

        try:
            run = load_run(doc.root, run_id)
        except VilmsError as exc:
            raise _refused(doc, path, f"run {run_id!r} cannot be read: {exc.message}", exc.hint) from None
        if not run.releasable:
            raise _refused(doc, path, f"run {run_id!r} cannot be released: status {run.status}, gate {run.gate_status or 'not evaluated'}",
                           f"release a run whose gate passed, or record a decision with `vilms approve {run_id} --reason ...`")
        return []
    local = sorted(p.name for p in runs.glob(f"{adapter}-*") if RUN_ID.match(p.name)) if runs.is_dir() else []
    note = f"artifacts/{run_id}/run.json is not here, so its gate was not checked (releasing it by name)"
    return [note + did_you_mean(run_id, local)]


def _change(file: Path, doc: Document, raw: bytes, adapter: str, current: str | None, target: str | None,
            action: str) -> ReleaseChange:
    warnings = _check_run(doc, adapter, target) if target is not None else []
    bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
    text = raw.decode("utf-8")[len(bom):]
    edit = set_release(text, adapter, target)
    new_raw = (bom + edit.text).encode("utf-8")
    try:
        new_doc = parse(new_raw, file=doc.file, display_name=doc.display_name)
    except InvalidInputError:
        new_doc = None
    if new_doc is None or not _same_but_release(doc.data, new_doc.data, adapter, target):
        raise ActionError(f"could not edit {doc.display_name} safely (the edit changed more than the release)",
                          hint=BY_HAND.format(adapter=adapter))
    plan, files = _compile(new_doc, doc, edit, adapter)
    out_dir = doc.root / OUTPUT_DIR
    on_disk = read_disk_tree(out_dir)
    report = compare(on_disk, files)
    warnings += _stale_note(doc, on_disk)
    history, fh = open_history(doc.root, adapter)
    with fh:
        _write(doc, raw, new_raw, out_dir, files, changed=bool(report.changes))
        append_history(history, fh, adapter, current, target, action)
    return ReleaseChange(adapter, action, current, target, file, _release_line(new_doc, adapter),
                         serving=_serving(plan, adapter), diff=report, history=history, warnings=tuple(warnings))


def _same_but_release(old: Any, new: Any, adapter: str, target: str | None) -> bool:
    expected = dict(old)
    adapters = dict(expected["adapters"])
    adapters[adapter] = {**adapters[adapter], "release": target}
    expected["adapters"] = adapters
    return _canonical(expected) == _canonical(new)


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=repr)


def _compile(new_doc: Document, doc: Document, edit: Edit, adapter: str) -> tuple[Plan, dict[str, bytes]]:
    """The build pipeline on text not yet written; diagnostics point into the file on disk."""
    try:
        plan = plan_document(new_doc)
    except InvalidInputError as exc:
        error = InvalidInputError([_on_disk(d, doc, edit, adapter) for d in exc.diagnostics])
        error.message += f"; {doc.display_name} and {OUTPUT_DIR}/ were not changed"
        raise error from None
    return plan, render_files(new_doc, plan)


def _on_disk(diag: Diagnostic, doc: Document, edit: Edit, adapter: str) -> Diagnostic:
    """A diagnostic of the edited text, located in the file as it still is on disk."""
    inserted = edit.inserted_line
    if inserted is None or diag.line < inserted:
        return diag
    if diag.line == inserted:
        line, column = doc.locate(("adapters", adapter), key=True)
        return replace(diag, line=line, column=column)
    return replace(diag, line=diag.line - 1)


def _stale_note(doc: Document, on_disk: dict[str, bytes]) -> list[str]:
    """Warn when generated/ did not match vilms.yaml before the change (the diff shows both)."""
    try:
        before = render_files(doc, plan_document(doc))  # the file as it is on disk, already parsed
    except InvalidInputError:
        return []
    if before == on_disk:
        return []
    return [f"{OUTPUT_DIR}/ was not up to date before this change; the diff below includes the rebuild"]


def _write(doc: Document, raw: bytes, new_raw: bytes, out_dir: Path, files: dict[str, bytes], *, changed: bool) -> None:
    """generated/ first, then vilms.yaml by rename: a failure leaves vilms.yaml as it was."""
    target = doc.file
    mode = target.stat().st_mode & 0o7777
    fd, staged = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(new_raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(staged, mode)
        if target.read_bytes() != raw:
            raise ActionError(f"{doc.display_name} changed during the rollout; nothing was written, try again")
        if changed:
            write_tree(out_dir, files)
        os.replace(staged, target)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise


def _release_line(doc: Document, adapter: str) -> int:
    return doc.locate(("adapters", adapter, "release"))[0]


def _serving(plan: Plan, adapter: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    by_alias: dict[str, list[str]] = {}
    for dep_name, dep in sorted(plan.deployments.items()):
        for alias, upstream in sorted(dep.upstreams.items()):
            if upstream.adapter == adapter:
                by_alias.setdefault(alias, []).append(dep_name)
    return tuple((alias, tuple(deps)) for alias, deps in sorted(by_alias.items()))


def _show(release: str | None) -> str:
    return release if release is not None else "null"


def describe(change: ReleaseChange) -> str:
    """What `vilms rollout` / `vilms rollback` print."""
    where = f"{change.file}:{change.line}"
    if change.diff is None:
        return f"{change.adapter} already releases {_show(change.after)} ({where}); nothing to do"
    lines = [f"{change.adapter}: release {_show(change.before)} → {_show(change.after)} ({where})"]
    if change.serving:
        lines += [f"served as alias {alias} on deployments {', '.join(deps)}" for alias, deps in change.serving]
    else:
        lines.append(f"no alias serves {change.adapter} yet (add an alias with adapter: {change.adapter})")
    if change.after is None:
        lines.append("unreleased: its aliases answer through their fallbacks")
    lines.append(f"{OUTPUT_DIR}/: {render_stat(change.diff)}" if not change.diff.changes
                 else f"{OUTPUT_DIR}/:\n{render_stat(change.diff)}")
    if change.history is not None:
        lines.append(f"recorded in {HISTORY_DIR.as_posix()}/{change.history.name}")
    lines.append("next: review `git diff` (vilms.yaml, generated/, .vilms/), commit, and deploy generated/; "
                 "the gateway reloads its routes without a restart")
    return "\n".join(lines)
