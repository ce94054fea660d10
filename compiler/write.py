"""Stage 5, write: swap a fully built tree into ``generated/``, or check it is up to date.

The tree is written to a temporary sibling folder and swapped in only when every file was
written (Kapitan's compile-then-swap), so a failed build never leaves a half-written
``generated/``. The swap is one ``renameat2(RENAME_EXCHANGE)`` where Linux offers it, else
two renames with SIGINT and SIGTERM held back between them: after any interruption
``generated/`` is the complete old tree or the complete new one. Leftover temporary folders
of builds that died are removed by the next build. A file or a symbolic link standing at
``generated/`` is refused, never replaced. Files no longer produced disappear with the old
tree. ``manifest.json`` records the input hash, the vilms version and every file's sha256.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vilms.compiler.contracts.build_manifest import BUILD_MANIFEST, BuildInput, BuildManifest
from vilms.compiler.errors import ActionError
from vilms.compiler.exchange import exchange
from vilms.compiler.layout import MANIFEST
from vilms.compiler.tree_drift import Drift, diff_tree  # noqa: F401 - the write stage's check, by type and mode as git compares


def vilms_version() -> str:
    from vilms.compiler import __version__

    return __version__


def with_manifest(files: dict[str, bytes], input_sha256: str, source_name: str) -> dict[str, bytes]:
    manifest = BuildManifest(
        generator="vilms",
        vilms_version=vilms_version(),
        input=BuildInput(file=source_name, sha256=input_sha256),
        files={path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    )
    return {**files, MANIFEST: BUILD_MANIFEST.dump(manifest)}


def write_tree(out_dir: Path, files: dict[str, bytes]) -> None:
    """Replace ``out_dir`` with exactly ``files``, in one step; raises :class:`ActionError`."""
    check_out_dir(out_dir)
    remove_leftovers(out_dir)
    with _sigterm_cleans_up():
        staging: Path | None = None
        retired: Path | None = None
        try:
            staging = _stage(out_dir, files)
            _pause("staged")
            with _signals_held():
                retired = _swap(staging, out_dir)
            _pause("swapped")
        except OSError as exc:
            raise _write_error(out_dir, exc) from None
        finally:  # success or not: the tree that is not generated/ goes (staging, or the old tree)
            rest = retired or staging
            if rest is not None and rest.exists():
                _remove_tree(rest)


def leftovers(out_dir: Path) -> list[Path]:
    """Temporary folders of ``out_dir`` whose build is no longer running (it was killed)."""
    try:
        entries = list(out_dir.parent.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        kind, _, rest = entry.name.removeprefix(f".{out_dir.name}.").partition("-")
        if kind in ("new", "old") and entry.name.startswith(f".{out_dir.name}.") and not process_running(rest.partition("-")[0]):
            if entry.is_dir() and not entry.is_symlink():
                found.append(entry)
    return sorted(found)


def remove_leftovers(out_dir: Path) -> None:
    for folder in leftovers(out_dir):
        _remove_tree(folder)


def check_out_dir(out_dir: Path) -> None:
    """Refuse (ActionError) when something other than a folder stands where ``out_dir`` goes."""
    if out_dir.is_symlink():
        raise ActionError(f"{out_dir} is a symbolic link; vilms writes generated/ as a folder of its own and never replaces a link",
                          hint="remove the link (what it points to is not touched), then build again")
    if out_dir.exists() and not out_dir.is_dir():
        raise ActionError(f"{out_dir} is a file, not a folder; vilms writes its output there",
                          hint="move the file away (vilms never deletes it), then build again")


def _stage(out_dir: Path, files: dict[str, bytes]) -> Path:
    """Every file written to a new sibling folder named after this process."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-{os.getpid()}-", dir=out_dir.parent))
    except OSError as exc:
        raise _write_error(out_dir, exc) from None
    try:
        for rel, data in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, 0o644)
        os.chmod(staging, 0o755)
        for folder in staging.rglob("*"):
            if folder.is_dir():
                os.chmod(folder, 0o755)
    except OSError as exc:
        _remove_tree(staging)
        raise _write_error(out_dir, exc) from None
    except BaseException:
        _remove_tree(staging)
        raise
    return staging


def _swap(staging: Path, out_dir: Path) -> Path | None:
    """Put ``staging`` at ``out_dir``; the path now holding the old tree (to remove), if any."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return None
    if _pause_at() != "between-renames" and exchange(staging, out_dir):
        return staging
    retired = staging.with_name(staging.name.replace(".new-", ".old-", 1))
    os.rename(out_dir, retired)
    _pause("between-renames")
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(retired, out_dir)
        raise
    return retired


def _write_error(out_dir: Path, exc: OSError) -> ActionError:
    if exc.errno == errno.ENOSPC:
        hint = "free some disk space, then build again"
    else:
        hint = f"{out_dir.parent} must be writable: vilms writes generated/ beside vilms.yaml"
    return ActionError(f"cannot write {out_dir}: {exc.strerror or exc}", hint=hint)


def process_running(pid: str) -> bool:
    if not pid.isdigit():
        return False  # not a name this version gives: left by an older vilms
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, as another user
        return True
    return True


def _remove_tree(path: Path) -> None:
    """Remove a tree of ours, even with read-only folders in it; never follows a link."""

    def writable_then_retry(function, name, _exc_info) -> None:  # noqa: ANN001 - shutil's callback
        try:
            os.chmod(os.path.dirname(name), 0o700)
            function(name)
        except OSError:
            pass

    shutil.rmtree(path, onerror=writable_then_retry)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (pending) until the block ends; they are delivered then."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signals to hold
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Terminated(BaseException):
    """SIGTERM arrived while writing: clean up, then die of SIGTERM as the sender expects."""


@contextmanager
def _sigterm_cleans_up() -> Iterator[None]:
    """Turn SIGTERM (whose default kills at once) into an exception while this block runs,
    so the temporary folder is removed; then die of SIGTERM. A handler someone else set is
    left alone, and so is any thread but the main one (only it may set handlers)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def terminated(_signum: int, _frame: object) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None  # only if SIGTERM was blocked by our caller
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# A test hook: VILMS_TEST_WRITE_PAUSE=<step> makes the write stage say so on stderr and wait
# there for a line on stdin (or its end), so a test can signal a real build at that point.
# Steps: "staged" (new tree written, nothing swapped), "swapped" (new tree in place, old one
# not yet removed), "between-renames" (takes the two-rename path and waits between them, with
# SIGINT and SIGTERM held).
PAUSE_ENV = "VILMS_TEST_WRITE_PAUSE"


def _pause_at() -> str | None:
    return os.environ.get(PAUSE_ENV)


def _pause(step: str) -> None:
    if _pause_at() == step:
        sys.stderr.write(f"vilms: paused at {step}\n")
        sys.stderr.flush()
        sys.stdin.readline()
