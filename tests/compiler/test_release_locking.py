"""Releases under concurrency and kill -9: two rollouts at once both land (the second waits for
the project lock and reads vilms.yaml after the first), and a rollout or build killed at any
write step leaves a project the next command makes consistent (compiler/journal.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compiler.minimal import MINIMAL
from vilms.compiler.errors import ExitCode
from vilms.compiler.pipeline import build
from vilms.compiler.rollout import rollback, rollout

REPO = Path(__file__).resolve().parents[2]
KILLPOINTS = REPO / "tests" / "support" / "killpoints"
A, B = "support-v1", "support-v2"
# a second adapter, served by an alias of its own
TWO = MINIMAL.replace("aliases:\n", f"  {B}:\n    base: qwen2.5-1.5b\n    dataset: support\n    method: lora\n    lora: {{r: 8}}\n    hardware: gpu1\naliases:\n", 1) \
             .replace("fallbacks: [chat]}\n", f"fallbacks: [chat]}}\n  second-bot: {{model: qwen2.5-1.5b, adapter: {B}}}\n", 1)


def run_id(adapter: str, i: int) -> str:
    return f"{adapter}-20261121T09{i // 60:02d}{i % 60:02d}Z-{i:06x}"


def start(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vilms", *args, "-f", str(path)], cwd=path.parent,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def releases(path: Path) -> dict[str, str | None]:
    from vilms.compiler.load import load

    return {name: spec.get("release") for name, spec in load(path).data["adapters"].items()}


def history(path: Path, adapter: str) -> list[tuple[str | None, str | None, str]]:
    file = path.parent / ".vilms" / "releases" / f"{adapter}.jsonl"
    lines = file.read_text().splitlines() if file.exists() else []
    return [(e["from"], e["to"], e["action"]) for e in map(json.loads, lines)]


def leftovers(root: Path) -> list[str]:
    """Temp files and folders vilms writes beside vilms.yaml and in .vilms/, and the journal."""
    names = [p.name for p in root.iterdir() if p.name.startswith((".generated.", ".vilms.yaml."))]
    names += [p.name for p in (root / ".vilms").iterdir() if p.name.startswith("release.journal")] if (root / ".vilms").is_dir() else []
    return sorted(names)


def consistent(path: Path) -> None:
    """generated/ is what vilms.yaml compiles to (as `vilms build --check`), nothing is left over."""
    build(path, check=True)
    assert leftovers(path.parent) == []


@pytest.fixture
def two(tmp_path):
    path = tmp_path / "vilms.yaml"
    path.write_text(TWO)
    build(path)
    return path


def test_two_rollouts_at_once_both_land(two):
    """Different adapters: both releases end in vilms.yaml, each history has its line. The same
    adapter: serialised, the second's history `from` is the first one's run."""
    expected = {A: [], B: []}
    current: dict[str, str | None] = {A: None, B: None}
    for i in range(1, 13):
        if i % 2:  # different adapters
            runs = [(A, run_id(A, i)), (B, run_id(B, i))]
        else:  # the same adapter, two runs
            runs = [(A, run_id(A, i)), (A, run_id(A, 100 + i))]
        procs = [start(two, "rollout", adapter, run) for adapter, run in runs]
        outs = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        if i % 2:
            for adapter, run in runs:
                expected[adapter].append((current[adapter], run, "rollout"))
                current[adapter] = run
        else:
            got = history(two, A)[-2:]
            first, second = got[0][1], got[1][1]
            assert {first, second} == {run for _a, run in runs}
            assert got == [(current[A], first, "rollout"), (first, second, "rollout")]  # serialised
            expected[A] += got
            current[A] = second
        assert releases(two) == current, f"round {i}"
        assert history(two, A) == expected[A] and history(two, B) == expected[B], f"round {i}"
        consistent(two)


def kill_at(path: Path, n: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(KILLPOINTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "VILMS_KILL_AT": str(n), "VILMS_KILL_UNDER": str(path.parent)}
    return subprocess.run([sys.executable, "-m", "vilms", *args, "-f", str(path)], cwd=path.parent, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_rollout_killed_at_any_write_is_completed_or_undone_by_the_next_command(tmp_path):
    """SIGKILL at every write step of a rollout (journal, vilms.yaml's temp file, generated/'s
    files and swap, the old tree's removal, the rename, the history line, the journal's removal);
    then the next command (build, or rollback) recovers: vilms.yaml, generated/ and the history
    agree, no temp file is left, and a rollback goes back to the right run."""
    r1, r2 = run_id(A, 1), run_id(A, 2)
    seen = set()
    for n in range(1, 60):
        root = tmp_path / f"k{n}"
        root.mkdir()
        path = root / "vilms.yaml"
        path.write_text(MINIMAL)
        build(path)
        rollout(path, A, r1)
        before = path.read_bytes()
        result = kill_at(path, n, "rollout", A, r2)
        if result.returncode == 0:
            break
        assert result.returncode == -9, result.stderr
        if n % 2:
            change = build(path)
            assert change.recovered is None or "recovered an interrupted rollout" in change.recovered
            now = releases(path)[A]
            seen.add(now)
            assert history(path, A) == [(None, r1, "rollout")] + ([(r1, r2, "rollout")] if now == r2 else [])
            if now == r1:
                assert path.read_bytes() == before
            consistent(path)
            change = rollback(path, A)
            assert change.after == (r1 if now == r2 else None)
        else:  # the next command is the rollback itself
            change = rollback(path, A)
            now = change.before
            seen.add(now)
            assert change.after == (r1 if now == r2 else None), (n, change)
            assert history(path, A)[:-1] == [(None, r1, "rollout")] + ([(r1, r2, "rollout")] if now == r2 else [])
        consistent(path)
    else:
        pytest.fail("the rollout never completed")
    assert n > 15 and seen == {r1, r2}  # killed at every step, some before vilms.yaml changed and some after


def test_a_build_killed_at_any_write_is_repaired_by_the_next_build(tmp_path):
    for n in range(1, 40):
        root = tmp_path / f"k{n}"
        root.mkdir()
        path = root / "vilms.yaml"
        path.write_text(MINIMAL)
        build(path)
        path.write_text(MINIMAL.replace("context: 8192", "context: 4096"))
        result = kill_at(path, n, "build")
        if result.returncode == 0:
            break
        assert result.returncode == -9, result.stderr
        build(path)
        consistent(path)
    else:
        pytest.fail("the build never completed")
    assert n > 5


def test_a_stale_temp_file_of_a_dead_writer_is_removed_and_a_live_ones_kept(two):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    root = two.parent
    (root / f".vilms.yaml.{dead}-abc.tmp").write_text("half")
    (root / ".vilms.yaml.oldstyle.tmp").write_text("half")  # an older vilms put no pid in it
    (root / f".vilms.yaml.{os.getpid()}-abc.tmp").write_text("mine")  # a live writer's
    (root / ".vilms").mkdir(exist_ok=True)
    (root / ".vilms" / f"release.journal.json.{dead}.tmp").write_text("{")
    build(two)
    assert leftovers(root) == [f".vilms.yaml.{os.getpid()}-abc.tmp"]


def test_an_interrupted_release_fails_build_check_until_recovered(two):
    journal = two.parent / ".vilms" / "release.journal.json"
    path = two
    rollout(path, A, run_id(A, 1))
    journal.write_text(json.dumps({"pid": 1, "action": "rollout", "adapter": A, "file": "vilms.yaml",
                                   "before_sha256": "0" * 64, "after_sha256": "1" * 64,
                                   "history": f".vilms/releases/{A}.jsonl", "history_size": 0, "line": "{}"}))
    result = subprocess.run([sys.executable, "-m", "vilms", "build", "--check", "-f", str(path)], capture_output=True, text=True)
    # what is on disk may not be what vilms.yaml compiles to: drift's code, fixed by `vilms build`
    assert result.returncode == ExitCode.DRIFT and "a release was interrupted (.vilms/release.journal.json is there)" in result.stderr
    result = subprocess.run([sys.executable, "-m", "vilms", "build", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warning: recovered an interrupted rollout of support-v1 (pid 1): vilms.yaml was changed since" in result.stderr
    assert not journal.exists() and len(history(path, A)) == 1  # the history left as it is
    consistent(path)
