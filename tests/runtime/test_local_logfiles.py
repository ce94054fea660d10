"""The local runner's process logs: copy-truncate rotation, kept across runs, tail and follow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vilms.runtime.local.logfiles import KEEP, follow, rotate, rotate_if_large, tail


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


# -- kept across runs, read back --------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(runs=st.lists(st.binary(max_size=20), min_size=1, max_size=7))
def test_each_run_keeps_the_previous_runs_newest_first_at_most_keep(tmp_path_factory, runs):
    folder = tmp_path_factory.mktemp("logs")
    log = folder / "srv.log"
    for content in runs:
        rotate(log)
        assert log.read_bytes() == b""  # every run starts with an empty log
        log.write_bytes(content)
    rotate(log)
    kept = [c for c in runs if c][::-1][:KEEP]  # an empty run leaves nothing to keep
    assert [(folder / f"srv.log.{n}").read_bytes() for n in range(1, len(kept) + 1)] == kept
    assert not (folder / f"srv.log.{len(kept) + 1}").exists()


@settings(max_examples=30, deadline=None)
@given(lines=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30), max_size=50),
       n=st.integers(min_value=1, max_value=60))
def test_tail_is_the_last_n_lines(tmp_path_factory, lines, n):
    log = tmp_path_factory.mktemp("tail") / "srv.log"
    log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    assert tail(log, n) == lines[-n:]


def test_follow_reads_new_lines_across_truncation_and_replacement(tmp_path):
    import threading

    log = tmp_path / "srv.log"
    log.write_text("old line\n")
    seen: list[str] = []
    stop = threading.Event()
    reader = threading.Thread(target=lambda: seen.extend(follow(log, stop=stop.is_set, poll_s=0.02)), daemon=True)
    reader.start()
    time.sleep(0.3)
    with open(log, "a") as fh:
        fh.write("one\ntw")
    time.sleep(0.2)
    with open(log, "a") as fh:
        fh.write("o\n")  # a line written in two parts comes out whole
    time.sleep(0.2)
    os.truncate(log, 0)  # copy-truncate
    time.sleep(0.2)
    with open(log, "a") as fh:
        fh.write("three\n")
    time.sleep(0.2)
    rotate(log)  # a new run: the file is replaced
    time.sleep(0.2)
    with open(log, "a") as fh:
        fh.write("four\n")
    deadline = time.monotonic() + 5
    while "four" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(5)
    assert seen == ["one", "two", "three", "four"]
