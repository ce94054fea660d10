"""The compile pipeline, as one programmatic API the CLI is a thin layer over."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vilms.compiler.digest import sha256_file
from vilms.compiler.document import Document
from vilms.compiler.errors import Diagnostic, InvalidInputError, StaleOutputError
from vilms.compiler.journal import pending, recover, stale_temps
from vilms.compiler.layout import GENERATED, JOURNAL, MANIFEST, Layout
from vilms.compiler.load import load
from vilms.compiler.memory import training_estimates
from vilms.compiler.plan import Plan
from vilms.compiler.project_lock import project_lock
from vilms.compiler.render import render
from vilms.compiler.resolve import resolve
from vilms.compiler.validate import diagnose
from vilms.compiler.validate.fit import check_fit
from vilms.compiler.validate.ports import check_ports
from vilms.compiler.write import Drift, check_out_dir, diff_tree, leftovers, remove_leftovers, with_manifest, write_tree

# the memory-fit pass needs a valid document: say that it did not run, not that everything fits
FIT_NOT_CHECKED = "memory fit not checked: fix the problems above first"


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    files: dict[str, bytes]
    changed: tuple[Drift, ...]
    plan: Plan
    recovered: str | None = None  # what was done to finish a release a killed command left


def display_name(file: Path) -> str:
    """How diagnostics name the input: as given, relative when possible."""
    return str(file) if not file.is_absolute() else file.name


def problems(file: Path) -> InvalidInputError | None:
    """Every problem of ``file`` (load errors included) as the error a build would raise, or None."""
    try:
        compile_plan(file)
    except InvalidInputError as exc:
        return exc
    return None


def diagnostics(file: Path) -> list[Diagnostic]:
    """Every problem of ``file`` (load errors included), without raising for invalid input."""
    error = problems(file)
    return error.diagnostics if error else []


def compile_plan(file: Path, *, fit: bool = True) -> tuple[Document, Plan]:
    """load → validate → resolve → check memory fit (unless ``fit=False``, for `vilms explain`,
    which shows the estimate either way); raises :class:`InvalidInputError`."""
    doc = load(file, display_name(file))
    return doc, plan_document(doc, fit=fit)


def plan_document(doc: Document, *, fit: bool = True) -> Plan:
    """validate → resolve → check memory fit, for a document already loaded (or parsed from text)."""
    found = diagnose(doc)
    if found:
        checks_fit = fit and (doc.data.get("deployments") or doc.data.get("adapters"))
        raise InvalidInputError(found, hint=FIT_NOT_CHECKED if checks_fit else None)
    plan = resolve(doc)
    found = check_ports(doc, plan) + (check_fit(doc, plan) if fit else [])
    if found:
        raise InvalidInputError(found)
    return plan


def render_files(doc: Document, plan: Plan) -> dict[str, bytes]:
    """Every file of generated/, manifest included."""
    return with_manifest(render(plan, memory_estimates=training_estimates(plan)), doc.sha256, plan.source_name)


def compile_files(file: Path) -> tuple[Document, Plan, dict[str, bytes]]:
    doc, plan = compile_plan(file)
    return doc, plan, render_files(doc, plan)


@contextmanager
def locked(file: Path) -> Iterator[str | None]:
    """Hold the project's write lock (waiting for another writer, bounded), and first recover
    what a killed command left (:mod:`vilms.compiler.journal`); yields what was recovered.
    Read vilms.yaml and the history only inside: they are the truth from then on."""
    layout = Layout.of(file)
    with project_lock(layout.root):
        yield recover(layout, rebuild)


def rebuild(file: Path) -> None:
    """Make generated/ what ``file`` compiles to now (call with the project lock held)."""
    doc, _plan, files = compile_files(file)
    out_dir = doc.root / GENERATED
    check_out_dir(out_dir)
    remove_leftovers(out_dir)
    if diff_tree(out_dir, files):
        write_tree(out_dir, files)


def build(file: Path, *, check: bool = False) -> BuildResult:
    doc, plan, files = compile_files(file)
    out_dir = doc.root / GENERATED
    drift = diff_tree(out_dir, files)
    layout = Layout(doc.root)
    if check:
        if pending(layout):
            raise StaleOutputError(f"a release was interrupted ({JOURNAL} is there): vilms.yaml, {GENERATED}/ and the history may disagree",
                                   hint="run `vilms build`: it completes or undoes that release")
        if drift:
            lines = [f"{GENERATED}/{d.path}: {d.state}" for d in drift]
            raise StaleOutputError(
                f"{GENERATED}/ is not what {doc.display_name} compiles to:\n  " + "\n  ".join(lines)
                + _built_by_another_version(out_dir),
                hint=f"run `vilms build` and commit the result; never edit {GENERATED}/ by hand",
            )
    elif drift or leftovers(out_dir) or pending(layout) or stale_temps(layout):
        check_out_dir(out_dir)
        # one writer at a time: a build that waited for a rollout (or recovered a release) compiles
        # again what is there now; else what it compiled is still what vilms.yaml compiles to
        with locked(file) as recovered:
            if recovered is not None or not _unchanged(file, doc):
                doc, plan, files = compile_files(file)
            remove_leftovers(out_dir)
            drift = diff_tree(out_dir, files)
            if drift:
                write_tree(out_dir, files)
        return BuildResult(out_dir=out_dir, files=files, changed=tuple(drift), plan=plan, recovered=recovered)
    return BuildResult(out_dir=out_dir, files=files, changed=tuple(drift), plan=plan)


def _unchanged(file: Path, doc: Document) -> bool:
    """Whether ``file`` still holds the bytes ``doc`` was compiled from."""
    try:
        return sha256_file(file) == doc.sha256
    except OSError:  # gone or unreadable now: compiling again reports it, located
        return False


def _built_by_another_version(out_dir: Path) -> str:
    """A line saying which ViLMS wrote ``out_dir``, when it was not this one (else nothing)."""
    from vilms.compiler.contracts.build_manifest import BUILD_MANIFEST
    from vilms.compiler.write import vilms_version

    try:
        built = BUILD_MANIFEST.load(out_dir / MANIFEST).vilms_version
    except InvalidInputError as exc:
        written_by_other = any(d.path == "apiVersion" for d in exc.diagnostics)
        return f"\n{GENERATED}/ was written by another ViLMS version" if written_by_other else ""
    if built == vilms_version():
        return ""
    return f"\n{GENERATED}/ was written by ViLMS {built}; this is ViLMS {vilms_version()}"
