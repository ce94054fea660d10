"""Copy-truncate rotation of the local runner's process logs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from vilms.runtime.local.logfiles import rotate_if_large


def _write(writer: subprocess.Popen, log: Path, text: str, size: int) -> None:
    """Have the writer append ``text``; return once ``log`` has ``size`` bytes."""
    assert writer.stdin is not None
    writer.stdin.write(text)
    writer.stdin.flush()
    deadline = time.monotonic() + 5
    while log.stat().st_size != size and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_large_log_moves_to_dot_1_and_its_writer_keeps_appending_at_the_start(tmp_path):
    log = tmp_path / "llamacpp-tiny.log"
    writer = subprocess.Popen([sys.executable, "-c", "import sys\nfor line in sys.stdin: print(line, end='', flush=True)"],
                              stdin=subprocess.PIPE, stdout=open(log, "ab"), text=True)  # noqa: SIM115
    try:
        _write(writer, log, "x" * 99 + "\n" + "y" * 99 + "\n", 200)
        assert not rotate_if_large(log, max_bytes=200)  # at the limit: kept
        _write(writer, log, "z" * 99 + "\n", 300)
        assert rotate_if_large(log, max_bytes=200)
        assert (tmp_path / "llamacpp-tiny.log.1").read_text() == "x" * 99 + "\n" + "y" * 99 + "\n" + "z" * 99 + "\n"
        assert log.read_bytes() == b""
        _write(writer, log, "after\n", 6)
        assert log.read_bytes() == b"after\n"  # at the new end: no hole of NUL bytes
    finally:
        writer.stdin.close()  # type: ignore[union-attr]
        writer.wait(10)


def test_a_missing_log_is_not_an_error(tmp_path):
    assert rotate_if_large(tmp_path / "nothing.log", max_bytes=1) is False
