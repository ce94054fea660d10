"""Training against a real MLflow tracking server (and an OTLP receiver): what a run logs, as it
happens; a run stopped by SIGTERM is FAILED and its resume continues the same MLflow run; a
server that is down does not stop, hang or lose the run."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mlflow_server import MlflowServer
from tests.support.otlp_receiver import Receiver
from vilms.compiler.facts import telemetry as facts

from .conftest import write_project

pytestmark = pytest.mark.heavy
pytest.importorskip("mlflow.server", reason="the tests' tracking server is the full mlflow package (dev extra)")

SECRET = "s3cr3t-token"
URI_ENV = "VILMS_TEST_MLFLOW_URI"




def _mlflow(experiment: str = "acme") -> dict[str, object]:
    return {"tracking": {"mlflow": {"tracking_uri": None, "tracking_uri_env": URI_ENV, "experiment": experiment,
                                    "registered_model": "tiny-v1", "registry_alias": "production"}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield srv
    srv.stop()


def _secret_uri(srv: MlflowServer) -> str:
    return f"http://vilms:{SECRET}@127.0.0.1:{srv.port}"


def _only_run(root: Path) -> Path:
    (run,) = [p for p in (root / "artifacts").iterdir() if p.is_dir()]
    return run


def _mlflow_run(srv: MlflowServer, run_dir: Path):  # noqa: ANN202
    saved = json.loads((run_dir / "mlflow-run.json").read_text())
    return srv.client().get_run(saved["run_id"])


def _history(srv: MlflowServer, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in srv.client().get_metric_history(run_id, key))


def test_a_run_is_tracked_live_on_a_server_and_over_otlp(server: MlflowServer, tiny_model: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    from vilms.trainers.trainer import train_adapter

    with Receiver() as receiver:
        telemetry = {"telemetry": {"endpoint": receiver.url, "endpoint_env": None,
                                   "headers_env": {"authorization": "VILMS_TEST_OTLP_TOKEN"}, "interval_s": 1,
                                   "metrics": True, "traces": False}}
        project = write_project(tmp_path / "proj", tiny_model, {**_mlflow(), **telemetry})
        monkeypatch.setenv(URI_ENV, _secret_uri(server))
        monkeypatch.setenv("VILMS_TEST_OTLP_TOKEN", "Bearer " + SECRET)
        run_id = train_adapter(project, "tiny-v1", show_progress=False)
        points = receiver.samples()
        headers = [r.headers for r in receiver.received]
    run_dir = _only_run(project.parent)
    run = _mlflow_run(server, run_dir)
    client = server.client()

    assert run.info.status == "FINISHED" and run.info.run_name == run_id
    tags = run.data.tags
    assert tags[facts.MLFLOW_RUN_TAG] == run_id and tags["vilms.adapter"] == "tiny-v1"
    assert tags["vilms.base_model"] == "tiny" and tags["vilms.gate"] == "passed" and tags["vilms.status"] == "completed"
    params = run.data.params
    assert params["training.max_steps"] == "40" and params["lora.r"] == "8" and params["adapter"] == "tiny-v1"
    assert params["dataset.path"] == "data/support.jsonl" and params["tracking.mlflow.tracking_uri"] == "null"
    # the dataset as an input: digest from its sha256, source its path
    record = json.loads((run_dir / "run.json").read_text())
    (inp,) = run.inputs.dataset_inputs
    sha = record["dataset"]["sha256"]
    assert inp.dataset.name == "support" and inp.dataset.digest == sha[:36]
    assert json.loads(inp.dataset.source) == {"uri": "data/support.jsonl", "sha256": sha}
    assert json.loads(inp.dataset.profile)["rows"] == 64
    # step metrics: every logging_steps (5) of 40 steps, in order
    loss = _history(server, run.info.run_id, "train_loss")
    assert [s for s, _ in loss] == list(range(5, 41, 5))
    local = dict(json.loads((run_dir / "metrics.json").read_text())["train_loss"]["history"])
    assert all(math.isclose(v, local[s], rel_tol=1e-6) for s, v in loss)
    for key in ("learning_rate", "grad_norm", "tokens_per_second", "peak_rss_bytes"):
        values = _history(server, run.info.run_id, key)
        assert [s for s, _ in values] == list(range(5, 41, 5)), key
        assert all(v > 0 for _, v in values[:-1]) and values[-1][1] >= 0, key  # cosine schedule: lr 0 at the end
    assert [s for s, _ in _history(server, run.info.run_id, "eval_loss")] == [20, 40]
    ((_, ppl),) = _history(server, run.info.run_id, "eval_perplexity")[-1:]
    assert math.isclose(ppl, record["gate"]["perplexity"], rel_tol=1e-6)
    assert _history(server, run.info.run_id, "gate_passed") == [(40, 1.0)]
    # artifacts: the adapter folder, metrics.json, run.json, the loss plot
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert top == {"adapter", "metrics.json", "run.json", "loss.png"}
    assert "adapter/adapter_model.safetensors" in {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    # OTLP: the trainer's instruments, with the run's attributes and the configured header
    names = {p.name for p in points}
    assert {"vilms.train.loss", "vilms.train.learning_rate", "vilms.train.grad_norm", "vilms.train.throughput",
            "vilms.train.peak_rss", "vilms.train.steps", "vilms.train.eval.loss", "vilms.train.eval.perplexity",
            "vilms.train.gate"} <= names
    loss_points = [p for p in points if p.name == "vilms.train.loss"]
    assert loss_points[-1].attributes == {"adapter": "tiny-v1", "run_id": run_id, "base_model": "tiny"}
    assert loss_points[-1].resource["service.name"] == facts.TRAINER_SERVICE
    assert math.isclose(loss_points[-1].value, loss[-1][1], rel_tol=1e-6)
    assert max(p.value for p in points if p.name == "vilms.train.steps") == 40
    assert [p.attributes["status"] for p in points if p.name == "vilms.train.gate"][-1] == "passed"
    assert {p.unit for p in points if p.name == "vilms.train.peak_rss"} == {"By"}
    assert all(h.get("authorization") == "Bearer " + SECRET for h in headers)
    # the secrets are in no output and no file of the run
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


LONG = {"training": {"max_steps": 80, "save_steps": 5, "eval_steps": 40, "logging_steps": 5}}


def _env(uri: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VILMS_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", URI_ENV: uri}


def _train(project: Path, uri: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "vilms", "train", "tiny-v1", "-f", str(project), "--no-progress", *extra],
        env=_env(uri), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for(what: str, check, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited before {what}: {proc.stdout.read().decode() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.05)


def _logged_steps(srv: MlflowServer, project: Path) -> list[int]:
    runs = list((project.parent / "artifacts").glob("*/mlflow-run.json"))
    if not runs:
        return []
    try:
        return [s for s, _ in _history(srv, json.loads(runs[0].read_text())["run_id"], "train_loss")]
    except Exception:  # noqa: BLE001 — the server is down or the run not yet there
        return []


def test_sigterm_fails_the_mlflow_run_and_resume_continues_it(server: MlflowServer, tiny_model: Path,
                                                              tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", tiny_model, {**_mlflow("resume"), **LONG})
    proc = _train(project, _secret_uri(server))
    _wait_for("logged steps", lambda: len(_logged_steps(server, project)) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and b"SIGTERM" in out, out.decode()
    run_dir = _only_run(project.parent)
    first = _mlflow_run(server, run_dir)
    assert first.info.status == "FAILED" and first.data.tags["vilms.status"] == "interrupted"
    before = _history(server, first.info.run_id, "train_loss")
    assert before and before[-1][0] < 80
    assert not server.client().list_artifacts(first.info.run_id)  # an unfinished run uploads nothing

    proc = _train(project, _secret_uri(server), "--resume")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()
    assert SECRET.encode() not in out
    again = _mlflow_run(server, run_dir)
    assert again.info.run_id == first.info.run_id  # the same MLflow run
    assert again.info.status == "FINISHED" and again.data.tags["vilms.status"] == "completed"
    steps = [s for s, _ in _history(server, again.info.run_id, "train_loss")]
    assert steps == sorted(set(steps)) and steps[: len(before)] == [s for s, _ in before] and steps[-1] == 80
    assert len(server.client().search_runs([again.info.experiment_id])) == 1


def test_a_server_killed_mid_run_gets_every_metric_once_it_is_back(tiny_model: Path, tmp_path: Path) -> None:
    srv = MlflowServer(tmp_path / "mlflow").start()
    try:
        project = write_project(tmp_path / "proj", tiny_model, {**_mlflow("outage"), **LONG})
        proc = _train(project, srv.url)
        _wait_for("logged steps", lambda: len(_logged_steps(srv, project)) >= 1, proc)
        srv.stop()
        time.sleep(2)  # the trainer keeps going without it
        assert proc.poll() is None
        srv.start()  # same port, same store
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode()
        text = out.decode()
        assert text.count("is unreachable") <= 1  # warned once (or never, when no send fell in the gap)
        run_dir = _only_run(project.parent)
        run = _mlflow_run(srv, run_dir)
        assert run.info.status == "FINISHED", text
        assert [s for s, _ in _history(srv, run.info.run_id, "train_loss")] == list(range(5, 81, 5))
        assert not (run_dir / "mlflow-unsent.jsonl").exists()
    finally:
        srv.stop()


def test_a_server_that_never_answers_leaves_the_metrics_in_the_run_folder(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from tests.support.s3_server import free_port
    from vilms.trainers.trainer import train_adapter

    project = write_project(tmp_path / "proj", tiny_model, _mlflow("down"))
    monkeypatch.setenv(URI_ENV, f"http://vilms:{SECRET}@127.0.0.1:{free_port()}")  # nothing listens there
    began = time.monotonic()
    train_adapter(project, "tiny-v1", show_progress=False)
    took = time.monotonic() - began
    _, err = capfd.readouterr()
    run_dir = _only_run(project.parent)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and took < 120
    assert err.count("is unreachable") == 1 and "mlflow-unsent.jsonl" in err
    assert SECRET not in err and f"MLflow at ${URI_ENV} is unreachable" in err  # named by its variable, never its value
    kept = [json.loads(line) for line in (run_dir / "mlflow-unsent.jsonl").read_text().splitlines()]
    assert [i["s"] for i in kept if i.get("k") == "train_loss"] == list(range(5, 41, 5))
    assert {"tag": "vilms.status", "v": "completed"} in kept and {"tag": "vilms.gate", "v": "passed"} in kept


def test_two_processes_log_once_from_rank_0(server: MlflowServer, tiny_model: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "proj", tiny_model, {**_mlflow("ddp"), "training": {"max_steps": 20}})
    proc = _train(project, _secret_uri(server), "--nproc-per-node", "2")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()
    run = _mlflow_run(server, _only_run(project.parent))
    assert run.info.status == "FINISHED"
    assert [s for s, _ in _history(server, run.info.run_id, "train_loss")] == [5, 10, 15, 20]  # once per step
    assert len(server.client().search_runs([run.info.experiment_id])) == 1
    assert len(run.inputs.dataset_inputs) == 1


def test_a_run_that_crashes_is_failed_in_mlflow_with_what_it_logged(server: MlflowServer, tiny_model: Path,
                                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vilms.trainers.recipe import LoraRecipe
    from vilms.trainers.trainer import train_adapter

    real_save = LoraRecipe._save_checkpoint

    def save_then_break(self: LoraRecipe) -> None:
        real_save(self)
        if self.state.step >= 10:
            raise OSError("disk full")

    monkeypatch.setattr(LoraRecipe, "_save_checkpoint", save_then_break)
    monkeypatch.setenv(URI_ENV, server.url)
    project = write_project(tmp_path / "proj", tiny_model, _mlflow("crash"))
    with pytest.raises(OSError, match="disk full"):
        train_adapter(project, "tiny-v1", show_progress=False)
    run_dir = _only_run(project.parent)
    run = _mlflow_run(server, run_dir)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    assert run.info.status == "FAILED" and run.data.tags["vilms.status"] == "failed"
    assert [s for s, _ in _history(server, run.info.run_id, "train_loss")] == [5]  # step 10 broke before its log
    assert "vilms.gate" not in run.data.tags and not server.client().list_artifacts(run.info.run_id)
