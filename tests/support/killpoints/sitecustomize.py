"""Loaded by Python at start when this folder is on PYTHONPATH: SIGKILL this process at the
``VILMS_KILL_AT``-th write step (a rename, an fsync, a file written, an exchange, an unlink)
inside ``VILMS_KILL_UNDER`` (the project folder), as a power cut or ``kill -9`` would.

Without ``VILMS_KILL_AT`` nothing is patched. Each step also appends its name to
``VILMS_KILL_LOG`` (when set), so a test can see how many steps a command has.
"""

import os
import signal
from pathlib import Path

_AT = int(os.environ.get("VILMS_KILL_AT", "0") or 0)
_UNDER = os.environ.get("VILMS_KILL_UNDER", "")
_LOG = os.environ.get("VILMS_KILL_LOG", "")
_count = 0


def _step(name, *paths):
    global _count
    if paths and not any(str(p).startswith(_UNDER) for p in paths if isinstance(p, (str, os.PathLike))):
        return
    _count += 1
    if _LOG:
        with open(_LOG, "a") as fh:
            fh.write(f"{_count} {name}\n")
    if _count == _AT:
        os.kill(os.getpid(), signal.SIGKILL)


def _wrap(owner, attr, name, paths):
    original = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        if not kwargs.get("dir_fd"):  # shutil.rmtree's unlinks are clean-up, not steps
            _step(name, *paths(args))
        return original(*args, **kwargs)

    setattr(owner, attr, wrapper)


if _AT or _LOG:
    _wrap(os, "replace", "os.replace", lambda a: a[:2])
    _wrap(os, "rename", "os.rename", lambda a: a[:2])
    _wrap(os, "fsync", "os.fsync", lambda a: ())
    _wrap(os, "unlink", "os.unlink", lambda a: a[:1])
    _wrap(Path, "write_bytes", "Path.write_bytes", lambda a: a[:1])
    import vilms.compiler.exchange as _exchange  # before vilms.compiler.write binds it

    _wrap(_exchange, "exchange", "exchange", lambda a: a[:2])
