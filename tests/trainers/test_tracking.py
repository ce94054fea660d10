"""The tracking pieces without a model: the background sender, params, redaction, the URI,
one MLflow run against a real server (down, then up), the OTLP metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vilms.compiler.contracts.telemetry import OtlpSpec
from vilms.compiler.contracts.training_config import MlflowSpec
from vilms.compiler.errors import ActionError
from vilms.compiler.facts import telemetry as facts
from vilms.trainers.tracking import mlflow_run, params
from vilms.trainers.tracking.redact import redact, secrets_of_uri, shown_uri
from vilms.trainers.tracking.sender import Sender, read_spill

from .conftest import write_project


def _spec(uri: str | None = None, env: str | None = None, experiment: str = "acme") -> MlflowSpec:
    return MlflowSpec(tracking_uri=uri, tracking_uri_env=env, experiment=experiment, registered_model="tiny-v1",
                      registry_alias="production")


# ------------------------------------------------------------------ the sender
class Flaky:
    """A receiver that fails the deliveries whose number is in ``failures`` (and records the rest)."""

    def __init__(self, failures: set[int] = frozenset(), always: bool = False) -> None:  # type: ignore[assignment]
        self.failures, self.always = failures, always
        self.calls = 0
        self.got: list[Any] = []

    def __call__(self, items: Sequence[Any]) -> None:
        self.calls += 1
        if self.always or self.calls in self.failures:
            raise ConnectionError("refused")
        self.got.extend(items)


@settings(max_examples=25, deadline=None)
@given(batches=st.lists(st.integers(1, 30), min_size=1, max_size=8), failures=st.sets(st.integers(1, 12), max_size=6),
       batch=st.integers(1, 16))
def test_every_item_is_delivered_once_in_order_despite_failures(tmp_path_factory: pytest.TempPathFactory,
                                                                batches: list[int], failures: set[int], batch: int) -> None:
    spill = tmp_path_factory.mktemp("s") / "unsent.jsonl"
    sink = Flaky(failures)
    downs: list[BaseException] = []
    ups: list[int] = []
    sender = Sender(sink, spill, batch=batch, retry_s=(0.001,), on_down=downs.append, on_up=ups.append)
    items = []
    for size in batches:
        chunk = [len(items) + i for i in range(size)]
        items.extend(chunk)
        sender.submit(chunk)
    assert sender.close(timeout_s=20) == 0
    assert sink.got == items and not spill.exists()
    assert len(downs) == len(ups) <= len(failures)  # each outage is reported once, and its end


def test_a_receiver_that_never_answers_costs_bounded_time_and_loses_nothing(tmp_path: Path) -> None:
    sink = Flaky(always=True)
    downs: list[BaseException] = []
    sender = Sender(sink, tmp_path / "unsent.jsonl", retry_s=(0.01,), on_down=downs.append)
    sender.submit([{"k": "loss", "v": 1.0, "s": s} for s in range(50)])
    began = time.monotonic()
    assert sender.close(timeout_s=30, down_timeout_s=0.3) == 50
    assert time.monotonic() - began < 5
    assert len(downs) == 1 and sink.calls > 1
    assert read_spill(tmp_path / "unsent.jsonl") == [{"k": "loss", "v": 1.0, "s": s} for s in range(50)]


def test_a_full_buffer_spills_to_the_file_instead_of_blocking(tmp_path: Path) -> None:
    gate = threading.Event()
    got: list[int] = []

    def slow(items: Sequence[int]) -> None:
        gate.wait(5)
        got.extend(items)

    sender = Sender(slow, tmp_path / "unsent.jsonl", batch=2, capacity=10)
    began = time.monotonic()
    sender.submit(list(range(100)))
    assert time.monotonic() - began < 1  # never waits for the receiver
    gate.set()
    spilled = sender.close(timeout_s=10)
    assert sorted(got + read_spill(tmp_path / "unsent.jsonl")) == list(range(100)) and spilled == 90


def test_a_torn_last_line_of_the_spill_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "u.jsonl").write_text('{"k": "a"}\n{"k": "b"}\n{"k": ')
    assert read_spill(tmp_path / "u.jsonl") == [{"k": "a"}, {"k": "b"}]
    assert read_spill(tmp_path / "missing.jsonl") == []


# ------------------------------------------------------------------ params
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_configs = st.recursive(_scalars | st.lists(_scalars, max_size=3),
                        lambda inner: st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=4),
                        max_leaves=30).filter(lambda v: isinstance(v, dict))


@given(_configs)
def test_params_are_flat_bounded_and_deterministic(config: dict[str, Any]) -> None:
    flat = params.flatten(config)
    assert flat == params.flatten(json.loads(json.dumps(config)))  # same config, same params
    assert all(isinstance(v, str) and len(v) <= params.MAX_VALUE for v in flat.values())
    for key, value in flat.items():  # each key walks down to a leaf that prints as its value
        node: Any = config
        for part in key.split("."):
            node = node[part]
        assert not isinstance(node, dict) or node == {}
        assert value == (node if isinstance(node, str) else params._text(node))


def test_long_params_are_cut_to_mlflows_limit() -> None:
    flat = params.flatten({"gate": {"regression": ["x" * 5000, "y" * 5000]}, "training": {"seed": 7, "lr": None}})
    assert len(flat["gate.regression"]) == params.MAX_VALUE and flat["gate.regression"].endswith("…")
    assert flat["training.seed"] == "7" and flat["training.lr"] == "null"


# ------------------------------------------------------------------ secrets and the URI
@given(user=st.from_regex(r"[a-z]{1,8}", fullmatch=True), password=st.from_regex(r"[A-Za-z0-9_~-]{6,20}", fullmatch=True))
def test_credentials_in_a_uri_never_show(user: str, password: str) -> None:
    uri = f"https://{user}:{password}@mlflow.example.com:5000/base"
    assert password not in shown_uri(uri) and shown_uri(uri) == "https://***@mlflow.example.com:5000/base"
    message = f"API request to {uri}/api/2.0/x failed; auth {user}:{password}"
    assert password not in redact(message, secrets_of_uri(uri))


def test_an_env_uri_that_is_unset_is_a_clear_error_before_training(tmp_path: Path) -> None:
    spec = _spec(env="MLFLOW_URI_FOR_TEST")
    with pytest.raises(ActionError) as caught:
        mlflow_run.tracking_uri(spec, tmp_path, {})
    assert "MLFLOW_URI_FOR_TEST is not set" in str(caught.value) and "export MLFLOW_URI_FOR_TEST" in caught.value.hint
    assert mlflow_run.tracking_uri(spec, tmp_path, {"MLFLOW_URI_FOR_TEST": " http://h:1 "}) == "http://h:1"
    assert mlflow_run.tracking_uri(_spec("file:mlruns"), tmp_path, {}) == (tmp_path / "mlruns").resolve().as_uri()


def test_train_refuses_an_unset_uri_variable_and_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vilms.trainers.trainer import train_adapter

    monkeypatch.delenv("MLFLOW_URI_FOR_TEST", raising=False)
    project = write_project(tmp_path / "proj", None, {"tracking": {"mlflow": {
        "tracking_uri": None, "tracking_uri_env": "MLFLOW_URI_FOR_TEST", "experiment": "acme",
        "registered_model": "tiny-v1", "registry_alias": "production"}}})
    with pytest.raises(ActionError, match="MLFLOW_URI_FOR_TEST is not set"):
        train_adapter(project, "tiny-v1", show_progress=False)
    assert not (project.parent / "artifacts").exists() or not any((project.parent / "artifacts").iterdir())


# ------------------------------------------------------------------ one MLflow run, a real server
@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("mlflow.server", reason="the tests' tracking server is the full mlflow package (dev extra)")
    from tests.support.mlflow_server import MlflowServer

    srv = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield srv
    srv.stop()


def _dataset() -> Any:
    return mlflow_run.dataset_input("support", "data/support.jsonl", "ab" * 32, 3, 120, {"source": "crm export"})


def _open(uri: str, run_dir: Path, experiment: str) -> mlflow_run.MlflowRun:
    return mlflow_run.MlflowRun(_spec(uri, experiment=experiment), uri, run_dir, vilms_run_id="tiny-v1-1",
                                label="tiny-v1", tags={"vilms.adapter": "tiny-v1"}, config={"training": {"seed": 7}},
                                dataset=_dataset())


def test_metrics_of_a_session_the_server_missed_reach_it_with_the_next_session(
        mlflow_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from tests.support.s3_server import free_port

    first = _open(f"http://127.0.0.1:{free_port()}", run_dir, "missed")  # nothing listens there
    for step in (5, 10):
        first.log_metrics(step, {"train_loss": 2.0 / step})
    first.finish("FAILED", [], down_timeout_s=0.5)
    err = capsys.readouterr().err
    assert err.count("is unreachable") == 1 and "mlflow-unsent.jsonl" in err
    assert not (run_dir / mlflow_run.RUN_FILE).exists()

    # a session killed before it could send them (SIGKILL: no finish) leaves them on disk
    dead = free_port()
    killed = _open(f"http://127.0.0.1:{dead}", run_dir, "missed")
    killed.log_metrics(12, {"train_loss": 2.0 / 12})
    assert not (run_dir / mlflow_run.SPILL_FILE).exists()
    assert [i["s"] for i in read_spill(run_dir / mlflow_run.SENDING_FILE) if "k" in i] == [5, 10]

    # the server is reachable again: the resumed session sends the earlier sessions' metrics first
    second = _open(mlflow_server.url, run_dir, "missed")
    second.log_metrics(15, {"train_loss": 0.1})
    (run_dir / "metrics.json").write_text("{}")
    second.finish("FINISHED", [run_dir / "metrics.json"])
    client = mlflow_server.client()
    run = client.get_run(json.loads((run_dir / mlflow_run.RUN_FILE).read_text())["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[facts.MLFLOW_RUN_TAG] == "tiny-v1-1"
    assert run.data.params == {"training.seed": "7"}
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train_loss"))
    assert history == [(5, 0.4), (10, 0.2), (15, 0.1)]
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest == ("ab" * 32)[:36] and json.loads(inp.dataset.profile)["provenance"] == {"source": "crm export"}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]
    assert not (run_dir / mlflow_run.SPILL_FILE).exists() and not (run_dir / mlflow_run.SENDING_FILE).exists()


def test_a_lost_run_file_finds_the_mlflow_run_by_its_tag(mlflow_server: Any, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = _open(mlflow_server.url, run_dir, "lost")
    first.log_metrics(1, {"train_loss": 1.0})
    first.finish("FAILED", [])
    created = json.loads((run_dir / mlflow_run.RUN_FILE).read_text())["run_id"]
    (run_dir / mlflow_run.RUN_FILE).unlink()
    second = _open(mlflow_server.url, run_dir, "lost")
    second.log_metrics(2, {"train_loss": 0.5})
    second.finish("FINISHED", [])
    assert json.loads((run_dir / mlflow_run.RUN_FILE).read_text())["run_id"] == created
    assert mlflow_server.client().get_run(created).info.status == "FINISHED"



def test_a_run_a_dead_session_left_half_set_up_is_made_whole(mlflow_server: Any, tmp_path: Path) -> None:
    client = mlflow_server.client()
    experiment = client.create_experiment("half")
    half = client.create_run(experiment, tags={facts.MLFLOW_RUN_TAG: "tiny-v1-1"})  # no params, no dataset
    client.set_terminated(half.info.run_id, "FAILED")
    tracked = _open(mlflow_server.url, tmp_path, "half")
    tracked.log_metrics(1, {"train_loss": 1.0})
    tracked.finish("FINISHED", [])
    run = client.get_run(half.info.run_id)
    assert tracked.run_id == half.info.run_id and run.info.status == "FINISHED"
    assert run.data.params == {"training.seed": "7"} and len(run.inputs.dataset_inputs) == 1

# ------------------------------------------------------------------ OTLP
def test_the_trainer_instruments_reach_an_otlp_receiver(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed")
    from tests.support.otlp_receiver import Receiver
    from vilms.trainers.tracking.otel import OtelMetrics

    with Receiver() as receiver:
        spec = OtlpSpec(endpoint=None, endpoint_env="OTLP_FOR_TEST", headers_env={"x-token": "OTLP_TOKEN_FOR_TEST"},
                        interval_s=60.0, metrics=True, traces=False)
        env = {"OTLP_FOR_TEST": receiver.url + "/", "OTLP_TOKEN_FOR_TEST": "t0ken"}
        attributes = {"adapter": "a", "run_id": "a-1", "base_model": "m"}
        metrics = OtelMetrics.from_spec(spec, env, attributes, "a")
        assert metrics is not None
        metrics.start_at(10)  # a resumed run: steps up to 10 were counted before
        metrics.record(15, {"train_loss": 1.5, "peak_rss_bytes": 2048.0, "tokens_per_second": 99.0})
        metrics.record(20, {"train_loss": 1.25, "eval_loss": 1.1})
        metrics.record(20, {"gate_passed": 1.0}, {"status": "passed"})
        metrics.close()
        points = receiver.samples()
        first = receiver.received[0]
    assert first.path == "/v1/metrics" and first.headers.get("x-token") == "t0ken"
    by_name = {p.name: p for p in points}
    assert by_name["vilms.train.loss"].value == 1.25 and by_name["vilms.train.loss"].attributes == attributes
    assert by_name["vilms.train.steps"].value == 10  # 20 − the 10 counted before
    assert by_name["vilms.train.peak_rss"].unit == "By" and by_name["vilms.train.throughput"].unit == "{token}/s"
    assert by_name["vilms.train.gate"].attributes == {**attributes, "status": "passed"}
    assert by_name["vilms.train.eval.loss"].value == 1.1
    assert by_name["vilms.train.loss"].resource["service.name"] == facts.TRAINER_SERVICE
    emitted = {i.name for i in facts.TRAINER if i.mlflow_key not in ("gpu_peak_memory_bytes", "learning_rate",
                                                                       "grad_norm", "eval_perplexity")}
    assert emitted <= set(by_name)


def test_an_unset_otlp_endpoint_variable_turns_otlp_metrics_off(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("opentelemetry.sdk.metrics", reason="the otel extra is not installed")
    from vilms.trainers.tracking.otel import OtelMetrics

    spec = OtlpSpec(endpoint=None, endpoint_env="OTLP_FOR_TEST", headers_env={}, interval_s=15.0, metrics=True,
                    traces=True)
    assert OtelMetrics.from_spec(spec, {}, {}, "a") is None
    assert "OTLP_FOR_TEST, which is not set" in capsys.readouterr().err


def test_an_approval_tags_the_runs_mlflow_run(mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from tests.support.runs import write_run
    from vilms.compiler.contracts.training_config import TRAINING_CONFIG
    from vilms.compiler.layout import RUN_CONFIG, Layout
    from vilms.trainers.approval import approve
    from vilms.trainers.tiny import tiny_training_config

    monkeypatch.setenv("VILMS_APPROVER", "ana")
    monkeypatch.setenv("MLFLOW_URI_FOR_TEST", mlflow_server.url)
    cfg = tiny_training_config()
    cfg = replace(cfg, tracking=replace(cfg.tracking, mlflow=_spec(env="MLFLOW_URI_FOR_TEST", experiment="approvals")))
    run_dir = write_run(tmp_path, "tiny-v1-20261201T060000Z-abc123", gate="needs_approval").parent
    (run_dir / RUN_CONFIG).write_bytes(TRAINING_CONFIG.dump(cfg))
    tracked = _open(mlflow_server.url, run_dir, "approvals")
    tracked.set_tags({"vilms.gate": "needs_approval"})
    tracked.finish("FINISHED", [])
    approve(Layout(tmp_path), "tiny-v1-20261201T060000Z-abc123", "read the answers")
    run = mlflow_server.client().get_run(tracked.run_id)
    assert run.data.tags["vilms.gate"] == "approved" and run.data.tags["vilms.approver"] == "ana"

    monkeypatch.delenv("MLFLOW_URI_FOR_TEST")  # an approval still succeeds when MLflow cannot be told, and says so
    write_run(tmp_path, "tiny-v1-20261201T060000Z-abc123", gate="needs_approval")
    approve(Layout(tmp_path), "tiny-v1-20261201T060000Z-abc123", "again")
    assert "could not be tagged" in capsys.readouterr().err


def test_mlflow_true_keeps_the_projects_own_store(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = mlflow_run.tracking_uri(_spec(facts.MLFLOW_LOCAL_URI), tmp_path, {})
    run_dir = tmp_path / "artifacts" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "adapter").mkdir()
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    tracked = _open(uri, run_dir, "acme")
    tracked.log_metrics(5, {"train_loss": 1.0})
    tracked.finish("FINISHED", [run_dir / "adapter"])
    run = MlflowClient(tracking_uri=uri).get_run(tracked.run_id)
    assert (tmp_path / "mlruns").is_dir() and run.info.status == "FINISHED"
    assert run.data.metrics == {"train_loss": 1.0}
    assert [a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id, "adapter")] == [
        "adapter/adapter_config.json"]


def test_a_refused_batch_is_kept_and_does_not_block_the_next(tmp_path: Path) -> None:
    from vilms.trainers.tracking.sender import Rejected

    got: list[int] = []
    refusals: list[Rejected] = []

    def picky(items: Sequence[int]) -> None:
        if any(i < 0 for i in items):
            raise Rejected("HTTP 400 INVALID_PARAMETER_VALUE")
        got.extend(items)

    sender = Sender(picky, tmp_path / "unsent.jsonl", batch=1, on_rejected=refusals.append)
    sender.submit([1, -2, 3, -4, 5])
    assert sender.close(timeout_s=10) == 2
    assert got == [1, 3, 5] and read_spill(tmp_path / "unsent.jsonl") == [-2, -4] and len(refusals) == 1


def test_a_batch_the_server_refuses_is_kept_and_the_run_still_ends(mlflow_server: Any, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tracked = _open(mlflow_server.url, run_dir, "refused")
    tracked.log_metrics(1, {"bad key!": 1.0})  # MLflow refuses the name: HTTP 400
    deadline = time.monotonic() + 30
    while tracked.sender.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    tracked.log_metrics(2, {"train_loss": 0.5})
    tracked.finish("FINISHED", [])
    run = mlflow_server.client().get_run(tracked.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"train_loss": 0.5}
    assert [i["k"] for i in read_spill(run_dir / mlflow_run.SPILL_FILE) if "k" in i] == ["bad key!"]
    assert "refused the run's metrics (HTTP 400 INVALID_PARAMETER_VALUE)" in capsys.readouterr().err


def test_the_tracking_bench_runs() -> None:
    """bench/tracking.py end to end for a few steps, so it cannot rot (not its figures)."""
    import subprocess
    import sys

    pytest.importorskip("mlflow.server", reason="the bench's tracking server is the full mlflow package (dev extra)")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "bench/tracking.py", "--steps", "50", "--repeats", "1"], cwd=repo,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "mlflow on (server up)" in proc.stdout and ("PASS" in proc.stdout or "FAIL" in proc.stdout)


def test_a_client_that_cannot_start_leaves_training_on_and_quotes_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    from vilms.trainers.tracking import _guarded

    def broken() -> None:
        raise ValueError("bad scheme in https://vilms:s3cr3t@mlflow.example.com")

    assert _guarded("tiny-v1", "MLflow tracking", broken) is None
    err = capsys.readouterr().err
    assert "tiny-v1: MLflow tracking is off for this session: ValueError" in err and "s3cr3t" not in err
