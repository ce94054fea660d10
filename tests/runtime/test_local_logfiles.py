"""Copy-truncate rotation of the local runner's process logs."""

from __future__ import annotations

import subprocess
import sys
import time

from vilms.runtime.local.logfiles import rotate_if_large


def test_a_large_log_moves_to_dot_1_and_its_writer_keeps_appending_at_the_start(tmp_path):
    log = tmp_path / "llamacpp-tiny.log"
    writer = subprocess.Popen([sys.executable, "-c", "import sys\nfor line in sys.stdin: print(line, end='', flush=True)"],
                              stdin=subprocess.PIPE, stdout=open(log, "ab"), text=True)  # noqa: SIM115
    try:
        assert writer.stdin is not None
        writer.stdin.write("x" * 99 + "\n")
        writer.stdin.write("y" * 99 + "\n")
        writer.stdin.flush()
        for _ in range(100):
            if log.stat().st_size == 200:
                break
            time.sleep(0.02)
        assert not rotate_if_large(log, max_bytes=200)  # at the limit: kept
        writer.stdin.write("z" * 99 + "\n")
        writer.stdin.flush()
        for _ in range(100):
            if log.stat().st_size == 300:
                break
            time.sleep(0.02)
        assert rotate_if_large(log, max_bytes=200)
        assert (tmp_path / "llamacpp-tiny.log.1").read_text() == "x" * 99 + "\n" + "y" * 99 + "\n" + "z" * 99 + "\n"
        assert log.read_bytes() == b""
        writer.stdin.write("after\n")
        writer.stdin.flush()
        for _ in range(100):
            if log.stat().st_size:
                break
            time.sleep(0.02)
        assert log.read_bytes() == b"after\n"  # at the new end: no hole of NUL bytes
    finally:
        writer.stdin.close()  # type: ignore[union-attr]
        writer.wait(10)


def test_a_missing_log_is_not_an_error(tmp_path):
    assert rotate_if_large(tmp_path / "nothing.log", max_bytes=1) is False
