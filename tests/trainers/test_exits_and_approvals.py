"""Exit codes (issue 15, item 5) and approvals in git (item 6).

`vilms train` exits ExitCode.GATE (3) when the run completed but its gate failed or needs approval,
with a hint that names `vilms approve` only when an approval can release the run; `vilms train --all`
prints each failing adapter's whole located error. `vilms approve` appends a line to
``.vilms/approvals/<adapter>.jsonl`` (committed) with who approved and where that identity came from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.runs import write_run
from vilms.cli.main import run as main
from vilms.compiler.approvals import read_approvals
from vilms.compiler.contracts.approval_log import ApprovalEntry
from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.errors import ExitCode, InvalidInputError
from vilms.compiler.layout import Layout
from vilms.trainers import approval
from vilms.trainers.trainer import Started

from .conftest import write_project

RUN = "sup-20261120T091500Z-1a2b3c"


def _no_git_identity(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No VILMS_APPROVER and no git identity anywhere (HOME elsewhere, no system config)."""
    monkeypatch.delenv(approval.APPROVER_ENV, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "no-gitconfig"))
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(key, raising=False)


# --- item 5: exit codes


def test_the_gate_exit_code_is_distinct_and_documented() -> None:
    assert int(ExitCode.GATE) == 3
    assert ExitCode.GATE not in (ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.INTERRUPTED)
    repo = Path(__file__).resolve().parents[2]
    assert "3 the gate of a trained run did not pass" in (repo / "README.md").read_text()
    assert "exit code 3" in (repo / "docs" / "training.md").read_text()


@pytest.mark.parametrize(("gate", "code"), [("passed", 0), ("needs_approval", 3), ("failed", 3)])
def test_train_exits_with_the_gate_code_when_the_gate_did_not_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], gate: str, code: int
) -> None:
    """The command's verdict on a run that trained (the training itself is replaced: the exit code is the CLI's)."""
    (tmp_path / "vilms.yaml").write_text("project: x\n")
    write_run(tmp_path, RUN, gate=gate)
    from vilms.trainers import trainer

    monkeypatch.setattr(trainer, "train", lambda *a, **k: Started(RUN))
    assert main(["train", "sup", "-f", str(tmp_path / "vilms.yaml")]) == code
    out, err = capsys.readouterr()
    assert f"sup: run {RUN} completed; gate {gate}" in out
    if gate == "needs_approval":
        assert f"run {RUN} did not pass its gate (needs_approval): eval perplexity 13.1 > 12.0" in err
        assert f"vilms approve {RUN} --reason" in err
    if gate == "failed":  # on_fail reject: no approval can release it, so the hint never offers one
        assert "did not pass its gate (failed)" in err and "vilms approve" not in err
        assert "on_fail is reject" in err


def test_approving_a_rejected_run_never_suggests_approve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vilms.yaml").write_text("project: x\n")
    write_run(tmp_path, RUN, gate="failed")
    assert main(["approve", RUN, "--reason", "please", "-f", str(tmp_path / "vilms.yaml")]) == 1
    err = capsys.readouterr().err
    assert "cannot be approved" in err and "vilms approve" not in err
    assert not Layout(tmp_path).approval_log("sup").exists()


def test_train_all_prints_each_failing_adapters_located_error(tmp_path: Path) -> None:
    """Both adapters fail before any model loads (bad rows): each one's whole error, located, is shown —
    not only "FAILED — 1 problem found" — and the command exits 1."""
    project = write_project(tmp_path / "proj", None, adapter="alpha", rows=[{"messages": "not a list"}])
    write_project(tmp_path / "proj", None, {"dataset": {"path": "data/beta.jsonl"}}, adapter="beta",
                  rows=[{"messages": [{"role": "user", "content": "hi"}]}, {"messages": [{"role": "wizard", "content": "x"}]}])
    proc = subprocess.run([sys.executable, "-m", "vilms", "train", "--all", "-j", "2", "-f", str(project)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "alpha: FAILED" in proc.stdout and "beta: FAILED" in proc.stdout
    assert "data/support.jsonl:1:" in proc.stderr and "messages" in proc.stderr
    assert "data/beta.jsonl:2:" in proc.stderr
    assert "2 of 2 adapters failed: alpha, beta" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("codes", "exit_code"), [((3, 3), 3), ((3, 1), 1), ((0, 3), 3), ((0, 0), 0)])
def test_train_all_exits_3_only_when_every_failure_is_a_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], codes: tuple[int, int],
    exit_code: int,
) -> None:
    from vilms.trainers import parallel

    results = [parallel.AdapterResult(name, code == 0, "some log\nlast line\n", code,
                                      f"{name}: the whole error\n  hint: what to do" if code else "")
               for name, code in zip(("alpha", "beta"), codes, strict=True)]
    monkeypatch.setattr(parallel, "train_all", lambda *a, **k: results)
    (tmp_path / "vilms.yaml").write_text("project: x\n")
    assert main(["train", "--all", "-f", str(tmp_path / "vilms.yaml")]) == exit_code
    out, err = capsys.readouterr()
    for name, code in zip(("alpha", "beta"), codes, strict=True):
        shown = {0: "ok — last line", 3: "gate not passed", 1: "FAILED"}[code]
        assert f"{name}: {shown}" in out
        assert (f"{name}: the whole error\n  hint: what to do" in err) is (code != 0)
    # without the error file (a child that crashed), the output's last lines stand in for it
    assert parallel.AdapterResult("x", False, "a\nb\n", 1, "").error == "a\nb"


# --- item 6: approvals in git


def test_approve_records_the_decision_under_vilms_with_the_approver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    _no_git_identity(monkeypatch, tmp_path / "home")
    monkeypatch.setenv(approval.APPROVER_ENV, "Ana Lima <ana@example.com>")
    (tmp_path / "vilms.yaml").write_text("project: x\n")
    write_run(tmp_path, RUN, gate="needs_approval")
    assert main(["approve", RUN, "--reason", "read all 40 answers", "-f", str(tmp_path / "vilms.yaml")]) == 0
    out = capsys.readouterr().out
    assert "by Ana Lima <ana@example.com> (from VILMS_APPROVER)" in out and ".vilms/approvals/sup.jsonl" in out
    (entry,) = read_approvals(Layout(tmp_path), "sup")
    assert (entry.run_id, entry.who, entry.identity, entry.reason, entry.from_status) == (
        RUN, "Ana Lima <ana@example.com>", "VILMS_APPROVER", "read all 40 answers", "needs_approval")
    assert entry.config_sha256 == "c" * 64
    record = RUN_RECORD.load(Layout(tmp_path).run_record(RUN))  # the run keeps its copy
    assert record.approvals[0].who == entry.who and record.approvals[0].at == entry.at and record.releasable
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    ignored = subprocess.run(["git", "check-ignore", "-q", ".vilms/approvals/sup.jsonl"], cwd=tmp_path, timeout=10,
                             capture_output=True)
    assert ignored.returncode == 1  # not ignored: it is meant to be committed


def test_the_approver_comes_from_git_then_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_git_identity(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("USER", "ci-runner")
    project = tmp_path / "proj"
    project.mkdir()
    assert approval.identity(project) == ("ci-runner", "USER")
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)
    subprocess.run(["git", "-C", str(project), "config", "user.name", "Bo Chen"], check=True, timeout=30)
    assert approval.identity(project) == ("Bo Chen", "git")
    subprocess.run(["git", "-C", str(project), "config", "user.email", "bo@example.com"], check=True, timeout=30)
    assert approval.identity(project) == ("Bo Chen <bo@example.com>", "git")
    monkeypatch.setenv(approval.APPROVER_ENV, "release-bot")
    assert approval.identity(project) == ("release-bot", "VILMS_APPROVER")


def _entry(i: int, reason: str = "ok") -> ApprovalEntry:
    return ApprovalEntry(at="2026-11-20T09:15:00Z", adapter="sup", run_id=f"sup-20261120T0915{i % 60:02d}Z-{i:06x}",
                         who=f"writer {i}", identity="VILMS_APPROVER", reason=reason, from_status="needs_approval",
                         config_sha256="c" * 64)


def test_two_approvals_of_one_run_at_once_record_one_decision(tmp_path: Path) -> None:
    """Each approval reads, decides and writes the run's record under the run's lock: of four racing
    `vilms approve` of one run, exactly one approves it; the others see it already approved; the log
    and the record agree."""
    (tmp_path / "vilms.yaml").write_text("project: x\n")
    write_run(tmp_path, RUN, gate="needs_approval")
    code = """
import sys, time
from pathlib import Path
from vilms.cli.main import run
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
sys.exit(run(["approve", sys.argv[3], "--reason", "race " + sys.argv[4], "-f", sys.argv[1]]))
"""
    start = __import__("time").time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "vilms.yaml"), str(start), RUN, str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, approval.APPROVER_ENV: f"approver {i}"}) for i in range(4)]
    results = [(p.wait(timeout=120), p.communicate(timeout=10)) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1, 1, 1], results
    assert all("is already approved" in err for code, (_, err) in results if code == 1)
    (entry,) = read_approvals(Layout(tmp_path), "sup")
    record = RUN_RECORD.load(Layout(tmp_path).run_record(RUN))
    assert [(a.who, a.reason) for a in record.approvals] == [(entry.who, entry.reason)]


def test_concurrent_approvals_never_lose_or_tear_a_line(tmp_path: Path) -> None:
    code = """
import sys
from pathlib import Path
from vilms.compiler.contracts.approval_log import ApprovalEntry
from vilms.compiler.layout import Layout
from vilms.trainers.approval import append_approval
base = int(sys.argv[2])
for i in range(base, base + 60):
    append_approval(Layout(Path(sys.argv[1])), ApprovalEntry(
        at="2026-11-20T09:15:00Z", adapter="sup", run_id=f"sup-20261120T0915{i % 60:02d}Z-{i:06x}", who=f"writer {i}",
        identity="VILMS_APPROVER", reason="x" * 3000, from_status="needs_approval", config_sha256="c" * 64))
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(w * 1000)]) for w in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    entries = read_approvals(Layout(tmp_path), "sup")
    assert sorted(e.who for e in entries) == sorted(f"writer {w * 1000 + i}" for w in range(4) for i in range(60))


def test_a_bad_line_is_reported_where_it_is(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    approval.append_approval(layout, _entry(1))
    log = layout.approval_log("sup")
    log.write_bytes(log.read_bytes() + b'{"apiVersion": "contracts.vilms.dev/v1", "kind": "ApprovalEntry", "at": 3}')
    with pytest.raises(InvalidInputError) as caught:
        read_approvals(layout, "sup")
    assert ".vilms/approvals/sup.jsonl:2:" in caught.value.render()
    approval.append_approval(layout, _entry(2))  # a hand-edited last line without its newline stays its own line
    lines = log.read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[-1] == b"" and b'"at": 3' in lines[1] and b"writer 2" in lines[2]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reason=st.text(min_size=1, max_size=300).filter(str.strip), who=st.text(min_size=1, max_size=80).filter(str.strip))
@example(reason="ok\x85then\u2028next\x9f\x7f \"quoted\" \\ end", who="Jos\u00e9 \U0001f600 <j@x.io>")
def test_any_reason_and_approver_round_trip_through_the_log(tmp_path: Path, reason: str, who: str) -> None:
    layout = Layout(tmp_path / "p")
    entry = ApprovalEntry(at="2026-11-20T09:15:00Z", adapter="sup", run_id=RUN, who=who, identity="VILMS_APPROVER",
                          reason=reason, from_status="needs_approval", config_sha256="c" * 64)
    log = approval.append_approval(layout, entry)
    assert read_approvals(layout, "sup")[-1] == entry
    assert all(json.loads(line)["kind"] == "ApprovalEntry" for line in log.read_text(encoding="utf-8").splitlines())
