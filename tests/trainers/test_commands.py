"""The click commands: usage errors, exit codes, cheap import, `train --all -j N`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.runs import write_run
from vilms.cli.main import run as main
from vilms.compiler.contracts.contract import API_VERSION
from vilms.compiler.contracts.run_record import RUN_RECORD
from vilms.compiler.layout import Layout

from .conftest import write_project


def test_commands_module_does_not_import_torch() -> None:
    code = (
        "import sys, vilms.cli.main; "
        "bad = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes', 'numpy') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["train", "-f", str(tmp_path / "vilms.yaml")]) == 2
    assert "give either ADAPTER or --all" in capsys.readouterr().err
    assert main(["train", "a", "--all"]) == 2
    assert main(["train", "a", "-j", "2"]) == 2
    assert main(["export"]) == 2  # click: missing argument


def test_missing_training_config_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "vilms.yaml").write_text("project: x\n")
    assert main(["train", "nope", "-f", str(tmp_path / "vilms.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"training config not found: {tmp_path / 'generated' / 'training' / 'nope.yaml'}" in err and "vilms build" in err
    assert "Traceback" not in err


def test_data_check_and_manifest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a b", "completion": "c"}\n{"prompt": "x", "completion": 3}\n')
    assert main(["data", "check", str(path), "--format", "completion"]) == 1
    assert f"{path}:2:1: completion: expected a string, got a number" in capsys.readouterr().err
    path.write_text('{"prompt": "a b", "completion": "c"}\n')
    assert main(["data", "check", str(path), "--format", "completion"]) == 0
    assert (
        main(
            [
                "data",
                "manifest",
                str(path),
                "--format",
                "completion",
                "--source",
                "crm",
                "--license",
                "internal",
                "--confidence",
                "0.8",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "d.jsonl.manifest.json").read_text())
    assert manifest["rows"] == 1 and manifest["provenance"]["source"] == "crm" and manifest["name"] == "d"


def test_approve_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "vilms.yaml").write_text("project: x\n")
    file = ["-f", str(tmp_path / "vilms.yaml")]
    run_id = "sup-20261120T091500Z-1a2b3c"
    write_run(tmp_path, run_id, gate="failed")
    assert main(["approve", run_id, "--reason", "ok", *file]) == 1
    assert "on_fail is reject" in capsys.readouterr().err
    write_run(tmp_path, run_id, gate="needs_approval")
    assert main(["approve", run_id, "--reason", "checked by hand", *file]) == 0
    assert capsys.readouterr().out.startswith(f"approved {run_id} by ")
    record = RUN_RECORD.load(Layout(tmp_path).run_record(run_id))
    assert record.releasable and record.approvals[0].reason == "checked by hand"
    assert main(["approve", "not-a-run", "--reason", "x", *file]) == 1
    assert "not a run id: 'not-a-run'" in capsys.readouterr().err
    Layout(tmp_path).run_record(run_id).write_text(json.dumps({"apiVersion": API_VERSION, "kind": "RunRecord"}))
    assert main(["approve", run_id, "--reason", "x", *file]) == 1
    err = capsys.readouterr().err
    assert "run.json:1:1: missing required key 'adapter'" in err and "Traceback" not in err


@pytest.mark.heavy
def test_train_all_in_parallel(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    small = {"training": {"max_steps": 12, "save_steps": 4, "eval_steps": 6}}
    project = write_project(tmp_path / "proj", tiny_model, small, adapter="alpha")
    write_project(tmp_path / "proj", tiny_model, small, adapter="beta")
    proc = subprocess.run(
        [sys.executable, "-m", "vilms", "train", "--all", "-j", "2", "-f", str(project)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "VILMS_TORCH_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "alpha: ok" in proc.stdout and "beta: ok" in proc.stdout
    run_dirs = sorted((tmp_path / "proj" / "artifacts").iterdir())
    assert [d.name.split("-2")[0] for d in run_dirs] == ["alpha", "beta"]
    for run in run_dirs:
        record = RUN_RECORD.load(run / "run.json")
        assert record.status == "completed" and record.run_id == run.name
        assert run.name.startswith(record.adapter + "-")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["steps"] == 12
        assert (run / "adapter" / "adapter_model.safetensors").is_file()
        assert not list(run.rglob(".tmp*"))
