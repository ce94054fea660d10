"""`vilms demo`: README's first command ends with it, so it must work on a fresh machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.procs import processes_under

CLI = [sys.executable, "-m", "vilms"]


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = subprocess.run([*CLI, "demo", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "was not made by `vilms demo`" in result.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.heavy
@pytest.mark.timeout(900)
def test_demo_runs_the_whole_loop_and_leaves_nothing_running(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("llama_cpp")
    root = tmp_path / "demo"
    # as README's first command runs it: a folder relative to the working directory
    result = subprocess.run([*CLI, "demo", "--dir", "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in ("$ vilms build", "$ vilms train support-v1", "--gguf", "$ vilms rollout support-v1",
                 "$ vilms up dev", "$ vilms down dev"):
        assert step in out
    # one server for the base model; the adapter is selected per request on it
    assert "chat         -> llamacpp-tiny" in out and "support-bot  -> llamacpp-tiny" in out
    assert out.count("HTTP 200") == 2
    run_id = next(p.name for p in (root / "artifacts").iterdir())
    assert f"release: {run_id}" in (root / "vilms.yaml").read_text()
    assert (root / "artifacts" / run_id / "gguf" / "adapter.gguf").is_file()
    status = subprocess.run([*CLI, "status", "dev", "--format", "json", "-f", str(root / "vilms.yaml")],
                            capture_output=True, text=True)
    assert all(p["state"] == "stopped" for p in json.loads(status.stdout)["processes"]), status.stdout
    assert not processes_under(root)  # no llama.cpp server, gateway or supervisor left behind
    # a second run replaces the folder it made before
    again = subprocess.run([*CLI, "demo", "--dir", str(root)], capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
