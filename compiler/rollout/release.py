"""`vilms rollout` / `vilms rollback`: change the run an adapter serves, then rebuild.

Validate (adapter, run id, a local run's gate), edit the text (:mod:`.edit`), compile the
edited text in memory, and only when that succeeds write generated/ and vilms.yaml, then
record the change (:mod:`.history`). The edited text must load to exactly the old data
with the new release, or nothing is written. A refused change leaves every file as it was.
All of it runs under the project lock, after recovering what a killed command left; the
writes are framed by an intent journal (:mod:`vilms.compiler.journal`), so a kill at any
point is completed or undone by the next command.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vilms.compiler.diff import DiffReport, compare, read_disk_tree, render_stat
from vilms.compiler.document import Document, Path_, dotted
from vilms.compiler.errors import ActionError, Diagnostic, InvalidInputError, VilmsError
from vilms.compiler.journal import Intent, append_line, begin, finish, recover
from vilms.compiler.layout import GENERATED, RELEASES, RUN_RECORD, Layout, run_path
from vilms.compiler.load import load, parse
from vilms.compiler.pipeline import display_name, locked, plan_document, rebuild, render_files
from vilms.compiler.plan import Plan
from vilms.compiler.run_ids import RUN_ID, adapter_of, example_for
from vilms.compiler.runs import release_hint, release_status
from vilms.compiler.suggest import did_you_mean, typo_of
from vilms.compiler.write import write_tree

from .edit import BY_HAND, Edit, set_release
from .history import entry, history_line, open_history, read_history, rollback_target, run_digest, shown

# called with the compiled plan and the run about to be released, after every check and before
# anything is written: `vilms rollout` pushes the run to the artifact store here (Ray deployments);
# an error it raises leaves every file as it was
Publish = Callable[[Plan, str], None]


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


def rollout(file: Path, adapter: str, run_id: str, *, publish: Publish | None = None, force: bool = False) -> ReleaseChange:
    """Set ``adapters.<adapter>.release: <run_id>`` in ``file`` and rebuild generated/, holding
    the project's write lock from the read to the last write (no other build or release between)."""
    with locked(file) as recovered:
        return _noted(_rollout(file, adapter, run_id, publish, force), recovered)


def rollback(file: Path, adapter: str, *, publish: Publish | None = None) -> ReleaseChange:
    """Set ``adapters.<adapter>.release`` back to what it was before the current rollout (under
    the project's write lock, as :func:`rollout`)."""
    with locked(file) as recovered:
        return _noted(_rollback(file, adapter, publish), recovered)


def _noted(change: ReleaseChange, recovered: str | None) -> ReleaseChange:
    return replace(change, warnings=(recovered, *change.warnings)) if recovered else change


def _rollout(file: Path, adapter: str, run_id: str, publish: Publish | None, force: bool) -> ReleaseChange:
    doc, raw = _read(file)
    current = _current(doc, adapter)
    if current == run_id:  # nothing to change; what serves it still matters to --apply
        return ReleaseChange(adapter, "rollout", current, run_id, file, _release_line(doc, adapter),
                             serving=_serving(plan_document(doc), adapter))
    return _change(file, doc, raw, adapter, current, run_id, "rollout", publish, force=force)


def _rollback(file: Path, adapter: str, publish: Publish | None) -> ReleaseChange:
    doc, raw = _read(file)
    current = _current(doc, adapter)
    layout = Layout(doc.root)
    history = read_history(layout, adapter)
    if not history:
        raise ActionError(f"nothing to roll back to: no release history for {adapter} ({shown(layout, adapter)} beside {doc.display_name})",
                          hint=BY_HAND.format(adapter=adapter))
    found, target = rollback_target(history, current)
    if not found:
        raise ActionError(f"nothing to roll back to: {shown(layout, adapter)} has no rollout of {adapter} to {_show(current)}",
                          hint=BY_HAND.format(adapter=adapter))
    return _change(file, doc, raw, adapter, current, target, "rollback", publish, force=True)  # a run from the history


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


def _check_run(doc: Document, adapter: str, run_id: str, *, force: bool) -> list[str]:
    """Refuse a run id that is malformed, of another adapter, or a local run whose gate did
    not pass; warn when the run is not in artifacts/ here (the compiler takes it on trust),
    and refuse it, unless ``force``, when a local run of the adapter has a close name (a typo)."""
    path: Path_ = ("adapters", adapter, "release")
    if path not in doc.value_positions:
        path = ("adapters", adapter)
    owner = adapter_of(run_id)
    if owner is None:
        raise _refused(doc, path, f"{run_id!r} is not a run id", f"run ids look like {example_for(adapter)} (see artifacts/)")
    if owner != adapter:
        raise _refused(doc, path, f"run {run_id!r} was trained for adapter {owner!r}, not {adapter!r}",
                       f"runs of {adapter} are named {adapter}-<UTC time>-<hex>")
    project = Layout(doc.root)
    if project.run_record(run_id).is_file():
        try:
            run = release_status(project, run_id)
        except VilmsError as exc:
            raise _refused(doc, path, f"run {run_id!r} cannot be read: {exc.message}", exc.hint) from None
        if not run.releasable:
            raise _refused(doc, path, f"run {run_id!r} cannot be released: status {run.status}, gate {run.gate_status or 'not evaluated'}",
                           release_hint(run_id, run.status, run.gate_status))
        return []
    runs = project.artifacts
    local = sorted(p.name for p in runs.glob(f"{adapter}-*") if RUN_ID.match(p.name)) if runs.is_dir() else []
    suggestion = typo_of(run_id, local)
    if suggestion is not None and not force:
        raise _refused(doc, path, f"run {run_id!r} is not in artifacts/ here, but {suggestion!r} is: a typo?",
                       f"roll out {suggestion}, or pass --force to release {run_id} by name (trained elsewhere)")
    note = f"{run_path(run_id, RUN_RECORD)} is not here, so its gate was not checked (releasing it by name)"
    return [note + did_you_mean(run_id, local)]


def _change(file: Path, doc: Document, raw: bytes, adapter: str, current: str | None, target: str | None,
            action: str, publish: Publish | None = None, *, force: bool = False) -> ReleaseChange:
    warnings = _check_run(doc, adapter, target, force=force) if target is not None else []
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
    out_dir = doc.root / GENERATED
    on_disk = read_disk_tree(out_dir)
    report = compare(on_disk, files)
    warnings += _stale_note(doc, on_disk)
    if publish is not None and target is not None:
        publish(plan, target)
    layout = Layout(doc.root)
    history, fh = open_history(layout, adapter)  # a history that cannot be written refuses the change
    with fh:
        size = fh.seek(0, os.SEEK_END)
    line = history_line(entry(adapter, current, target, action, run_digest(layout, target)))
    begin(layout, Intent(pid=os.getpid(), action=action, adapter=adapter, file=doc.file.name,
                         before_sha256=hashlib.sha256(raw).hexdigest(), after_sha256=hashlib.sha256(new_raw).hexdigest(),
                         history=history.relative_to(layout.root).as_posix(), history_size=size, line=line))
    try:
        _write(doc, raw, new_raw, out_dir, files, changed=bool(report.changes))
        append_line(history, size, line)
    except BaseException:
        _undo(layout)
        raise
    finish(layout)
    return ReleaseChange(adapter, action, current, target, file, _release_line(new_doc, adapter),
                         serving=_serving(plan, adapter), diff=report, history=history, warnings=tuple(warnings))


def _undo(layout: Layout) -> None:
    """A write failed (not a kill): complete or undo the change now, as the next command would."""
    try:
        recover(layout, rebuild)
    except (VilmsError, OSError):
        pass  # the journal stays; the next command that takes the lock recovers it


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
        error.message += f"; {doc.display_name} and {GENERATED}/ were not changed"
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
    return [f"{GENERATED}/ was not up to date before this change; the diff below includes the rebuild"]


def _write(doc: Document, raw: bytes, new_raw: bytes, out_dir: Path, files: dict[str, bytes], *, changed: bool) -> None:
    """generated/ first, then vilms.yaml by rename: a failure leaves vilms.yaml as it was."""
    target = doc.file
    mode = target.stat().st_mode & 0o7777
    # named after this process, so a later command knows when its writer is gone (compiler/journal.py)
    fd, staged = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
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
    lines.append(f"{GENERATED}/: {render_stat(change.diff)}" if not change.diff.changes
                 else f"{GENERATED}/:\n{render_stat(change.diff)}")
    if change.history is not None:
        lines.append(f"recorded in {RELEASES}/{change.history.name}")
    lines.append("next: review `git diff` (vilms.yaml, generated/, .vilms/), commit, and deploy generated/; "
                 "the gateway reloads its routes without a restart")
    return "\n".join(lines)
