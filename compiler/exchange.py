"""Swap two folders in one step: Linux ``renameat2(RENAME_EXCHANGE)``, through ctypes.

After :func:`exchange` either both paths have their old content or both have the other's;
no signal, crash or power cut can leave one of the names missing. Where the kernel, the C
library or the file system cannot do it, :func:`exchange` returns False and the caller
falls back to two renames.
"""

from __future__ import annotations

import errno
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# the kernel, the C library or the file system cannot exchange: not an error, a fallback
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


@cache
def _renameat2() -> Any:
    """The C function, or None; looked up on first use (ctypes is not needed to compile)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # the C library Python runs on: glibc 2.28+, musl 1.2.2+
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap what ``a`` and ``b`` name (both must exist). False when unsupported here;
    raises :class:`OSError` for any other failure."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))
