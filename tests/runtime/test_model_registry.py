"""The MLflow Model Registry follows `vilms rollout` and `vilms rollback`, against a real
`mlflow server` (SQLite backend store, local artifact root, 127.0.0.1; tests/support/mlflow_server.py),
checked through MLflow's own client.

Each test makes its own adapter (the registered model is named after it) and experiment, and
creates the MLflow runs as the trainer does: tagged vilms.run_id, the adapter folder logged
as artifact path adapter/.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compiler.minimal import MINIMAL
from tests.support import mlflow_server
from tests.support.adapters import write_adapter
from tests.support.runs import write_run
from tests.support.s3_server import free_port
from vilms.cli.main import run
from vilms.compiler.contracts.training_config import MlflowSpec
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import Layout
from vilms.runtime import model_registry
from vilms.runtime.model_registry import Registry, open_registry
from vilms.runtime.model_registry import client as registry_client

pytestmark = pytest.mark.timeout(180)

URI_ENV = "MLFLOW_TRACKING_SERVER"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = mlflow_server.MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield started
    started.stop()


@pytest.fixture
def env(server, monkeypatch):
    monkeypatch.setenv(URI_ENV, server.url)
    return server


@pytest.fixture
def project(tmp_path) -> SimpleNamespace:
    return make_project(tmp_path)


def make_project(tmp_path: Path) -> SimpleNamespace:
    """A project whose adapter (a fresh name) tracks to $MLFLOW_TRACKING_SERVER, experiment of its own."""
    tag = uuid.uuid4().hex[:8]
    adapter, experiment = f"sup-{tag}", f"exp-{tag}"
    text = MINIMAL.replace("support-v1", adapter).replace(
        "    hardware: gpu1\n",
        f"    hardware: gpu1\n    tracking: {{mlflow: {{uri: env:{URI_ENV}, experiment: {experiment}}}}}\n", 1)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "support.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    file = tmp_path / "vilms.yaml"
    file.write_text(text)
    runs = [f"{adapter}-2026120{day}T091500Z-{day}a2b3c" for day in range(1, 5)]
    return SimpleNamespace(root=tmp_path, file=file, adapter=adapter, experiment=experiment, runs=runs)


def trained(server, project, run_id: str, *, gate: str = "passed", adapter_files: bool = True) -> str:
    """The run's record in artifacts/ and its MLflow run as the trainer leaves it; returns the MLflow run id."""
    write_run(project.root, run_id, gate=gate)
    client = server.client()
    found = client.get_experiment_by_name(project.experiment)
    experiment = found.experiment_id if found else client.create_experiment(project.experiment)
    mlflow_run = client.create_run(experiment, run_name=run_id, tags={"vilms.run_id": run_id}).info.run_id
    if adapter_files:
        client.log_artifacts(mlflow_run, str(write_adapter(Layout(project.root).run(run_id) / "adapter")), "adapter")
    client.set_terminated(mlflow_run)
    return mlflow_run


def vilms(capsys, *args: str) -> SimpleNamespace:
    capsys.readouterr()  # only what the command prints (MLflow's client prints links when the test ends a run)
    code = run(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(code=code, out=out.out, err=out.err)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("project.lock", ".gitignore")}


def versions(server, model: str) -> dict[str, SimpleNamespace]:
    return {v.version: v for v in server.client().search_model_versions(f"name = '{model}'")}


def alias(server, model: str, name: str = "production") -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(server.client().get_model_version_by_alias(model, name).version)
    except MlflowException:
        return None


def test_rollout_registers_the_run_and_moves_the_alias(env, project, capsys, monkeypatch):
    r1 = project.runs[0]
    mlflow_run = trained(env, project, r1)
    netloc = env.url.split("://")[1]
    monkeypatch.setenv(URI_ENV, f"http://vilms:s3cret-token@{netloc}")  # credentials in the URI: sent, never shown
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 0, result.err
    assert "s3cret" not in result.out + result.err and netloc not in result.out + result.err
    found = versions(env, project.adapter)
    assert list(found) == ["1"]
    version = found["1"]
    assert version.source == f"runs:/{mlflow_run}/adapter" and version.run_id == mlflow_run
    assert version.tags == {"vilms.run_id": r1, "vilms.gate": "passed"}
    assert alias(env, project.adapter) == "1"
    assert f"MLflow registry: {r1} registered as version 1 of {project.adapter}" in result.out
    assert f"MLflow registry: {project.adapter}@production → version 1 (was unset)" in result.out
    assert result.out.index("registered as version 1") < result.out.index(f"release null → {r1}")
    assert f"release: {r1}" in project.file.read_text()


def test_rollout_rollback_move_the_alias_there_and_back(env, project, capsys):
    r1, r2 = project.runs[:2]
    trained(env, project, r1)
    trained(env, project, r2, gate="approved")
    assert vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file)).code == 0
    result = vilms(capsys, "rollout", project.adapter, r2, "-f", str(project.file))
    assert result.code == 0, result.err
    assert alias(env, project.adapter) == "2"
    assert versions(env, project.adapter)["2"].tags == {"vilms.run_id": r2, "vilms.gate": "approved", "vilms.approver": "ana"}
    assert f"{project.adapter}@production → version 2 (was version 1)" in result.out

    back = vilms(capsys, "rollback", project.adapter, "-f", str(project.file))
    assert back.code == 0, back.err
    assert alias(env, project.adapter) == "1" and f"release: {r1}" in project.file.read_text()
    assert f"MLflow registry: {r1} already version 1 of {project.adapter}" in back.out
    assert f"{project.adapter}@production → version 1 (was version 2)" in back.out

    unreleased = vilms(capsys, "rollback", project.adapter, "-f", str(project.file))  # back to null: no alias
    assert unreleased.code == 0, unreleased.err
    assert alias(env, project.adapter) is None and "release: null" in project.file.read_text()
    assert f"{project.adapter}@production removed (was version 1)" in unreleased.out
    assert sorted(versions(env, project.adapter)) == ["1", "2"]  # versions stay; only the alias moves


def test_rollout_is_idempotent_in_the_registry(env, project, capsys):
    r1, r2 = project.runs[:2]
    trained(env, project, r1)
    trained(env, project, r2)
    for run_id in (r1, r1, r2, r1):  # the second is a no-op in vilms.yaml; the last is a rollout back to r1
        result = vilms(capsys, "rollout", project.adapter, run_id, "-f", str(project.file))
        assert result.code == 0, result.err
    assert sorted(versions(env, project.adapter)) == ["1", "2"]  # r1 is version 1, whatever happened after
    assert alias(env, project.adapter) == "1"
    assert "already on version 1" not in result.out and "→ version 1 (was version 2)" in result.out
    again = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert f"{project.adapter} already releases {r1}" in again.out
    assert f"{project.adapter}@production already on version 1" in again.out


def test_rollback_registers_a_run_that_never_was(env, project, capsys, monkeypatch):
    r1, r2 = project.runs[:2]
    trained(env, project, r1)
    trained(env, project, r2)
    skipped = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file), "--skip-registry")
    assert skipped.code == 0, skipped.err
    assert "--skip-registry: the MLflow Model Registry was not changed" in skipped.err
    assert versions(env, project.adapter) == {}
    assert vilms(capsys, "rollout", project.adapter, r2, "-f", str(project.file)).code == 0
    back = vilms(capsys, "rollback", project.adapter, "-f", str(project.file))
    assert back.code == 0, back.err
    assert f"MLflow registry: {r1} registered as version 2 of {project.adapter}" in back.out
    assert alias(env, project.adapter) == "2" and versions(env, project.adapter)["2"].tags["vilms.run_id"] == r1


_OPS = st.lists(st.one_of(st.tuples(st.just("rollout"), st.integers(0, 2)), st.just(("rollback", 0))), min_size=1, max_size=6)


@given(ops=_OPS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_alias_always_follows_what_vilms_yaml_releases(env, capsys, ops):
    """Any sequence of rollouts and rollbacks: after each command the alias is on the version of
    the run vilms.yaml releases (unset at null), and each run has exactly one version."""
    import yaml

    with tempfile.TemporaryDirectory() as folder:
        project = make_project(Path(folder))
        for run_id in project.runs[:3]:
            trained(env, project, run_id)
        for op, which in ops:
            args = ["rollout", project.adapter, project.runs[which]] if op == "rollout" else ["rollback", project.adapter]
            result = vilms(capsys, *args, "-f", str(project.file))
            assert result.code == 0 or "nothing to roll back to" in result.err, result.err
            release = yaml.safe_load(project.file.read_text())["adapters"][project.adapter].get("release")
            found = versions(env, project.adapter)
            by_run = {v.tags["vilms.run_id"]: number for number, v in found.items()}
            assert len(by_run) == len(found)  # one version per run
            assert alias(env, project.adapter) == (None if release is None else by_run[release])


def test_a_server_that_is_down_refuses_the_rollout_and_changes_nothing(env, project, capsys, monkeypatch):
    r1 = project.runs[0]
    trained(env, project, r1)
    before = tree(project.root)
    port = free_port()  # nothing listens there
    monkeypatch.setenv(URI_ENV, f"http://vilms:s3cret-token@127.0.0.1:{port}")
    started = time.monotonic()
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert time.monotonic() - started < 30
    assert result.code == 1 and "Traceback" not in result.err
    assert f"cannot reach the MLflow server in ${URI_ENV}" in result.err and "connection refused" in result.err
    assert "not released: " in result.err and "were not changed" in result.err
    assert "s3cret" not in result.out + result.err and str(port) not in result.out + result.err
    assert tree(project.root) == before  # vilms.yaml byte-identical, no generated/, no history
    assert versions(env, project.adapter) == {}


def test_a_server_that_never_answers_is_given_up_within_the_timeout(env, project, capsys, monkeypatch):
    """Every call is bounded: a server that accepts and then says nothing costs REQUEST_TIMEOUT_S
    per attempt (1 s here; 10 s in production), not MLflow's 120 s times 8 attempts."""
    import socket

    r1 = project.runs[0]
    trained(env, project, r1)
    before = tree(project.root)
    silent = socket.create_server(("127.0.0.1", 0), backlog=16)  # the kernel accepts; nobody reads or answers
    try:
        monkeypatch.setattr(registry_client, "REQUEST_TIMEOUT_S", 1)
        monkeypatch.setenv(URI_ENV, f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
        took = time.monotonic() - started
    finally:
        silent.close()
    assert result.code == 1 and "Traceback" not in result.err
    assert f"cannot reach the MLflow server in ${URI_ENV}" in result.err and "(timed out)" in result.err
    assert took < 15, took  # (1 + MAX_RETRIES) attempts of 1 s, a 1 s backoff, and the compile
    assert tree(project.root) == before


@pytest.mark.parametrize("status, said", [
    (401, "refused finding the MLflow run of {run}: not authorized (UNAUTHENTICATED)"),
    (403, "refused finding the MLflow run of {run}: not authorized (PERMISSION_DENIED)"),
    (503, "while finding the MLflow run of {run} (it answered with server errors (HTTP 5xx))"),
    (404, "while finding the MLflow run of {run} (HTTP 404: is the URI the tracking server's base URL?)"),
])
def test_a_proxy_in_front_of_the_server_answering_errors(env, project, capsys, monkeypatch, status, said):
    """An HTML error page from a proxy (auth, gateway down, wrong path): one line, the page not quoted."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Proxy(BaseHTTPRequestHandler):
        def _answer(self):
            body = b"<html><body>" + b"x" * 5000 + b"</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    r1 = project.runs[0]
    write_run(project.root, r1)
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv(URI_ENV, f"http://127.0.0.1:{proxy.server_address[1]}")
        result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert result.code == 1 and "Traceback" not in result.err
    assert said.format(run=r1) in result.err
    assert "xxxxxxxxxx" not in result.err and len(result.err) < 1500


def test_a_server_that_is_down_refuses_the_rollback_and_changes_nothing(env, project, capsys, monkeypatch):
    """Also a rollback to null, where no version is registered first: the registry must answer before the edit."""
    r1, r2 = project.runs[:2]
    trained(env, project, r1)
    trained(env, project, r2)
    for run_id in (r1, r2):
        assert vilms(capsys, "rollout", project.adapter, run_id, "-f", str(project.file)).code == 0
    monkeypatch.setenv(URI_ENV, f"http://127.0.0.1:{free_port()}")
    for _ in range(2):  # to r1, then (after the registry is back) to null
        before = tree(project.root)
        result = vilms(capsys, "rollback", project.adapter, "-f", str(project.file))
        assert result.code == 1 and "Traceback" not in result.err
        assert f"cannot reach the MLflow server in ${URI_ENV}" in result.err and "not rolled back: " in result.err
        assert tree(project.root) == before
        monkeypatch.setenv(URI_ENV, env.url)
        assert vilms(capsys, "rollback", project.adapter, "-f", str(project.file)).code == 0
        monkeypatch.setenv(URI_ENV, f"http://127.0.0.1:{free_port()}")
    assert "release: null" in project.file.read_text()
    assert alias(env, project.adapter) is None


def test_skip_registry_releases_through_an_outage_and_says_how_to_resync(env, project, capsys, monkeypatch):
    r1 = project.runs[0]
    trained(env, project, r1)
    monkeypatch.setenv(URI_ENV, f"http://127.0.0.1:{free_port()}")
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file), "--skip-registry")
    assert result.code == 0, result.err
    resync = f"vilms rollout {project.adapter} {r1} -f {project.file}"
    assert f"{project.adapter}@production may not be on {r1} yet. To bring it in line, run `{resync}`" in result.err
    monkeypatch.setenv(URI_ENV, env.url)
    again = vilms(capsys, *resync.split()[1:])
    assert again.code == 0, again.err
    assert alias(env, project.adapter) == "1"


def test_an_alias_move_that_fails_after_the_edit_says_how_to_resync(env, project, capsys, monkeypatch):
    """The server dies between registering the version and moving the alias: vilms.yaml is
    written (it is the truth), the command fails naming the command that brings the registry in line."""
    from mlflow import MlflowClient

    r1 = project.runs[0]
    trained(env, project, r1)
    gguf = project.file.parent / "artifacts" / r1 / "gguf" / "adapter.gguf"  # what --apply's engine needs
    gguf.parent.mkdir(parents=True, exist_ok=True)
    gguf.write_bytes(b"GGUF")
    point = Registry.point

    def server_gone(self, version):
        dead = f"http://127.0.0.1:{free_port()}"
        self.client = MlflowClient(tracking_uri=dead, registry_uri=dead)
        return point(self, version)

    monkeypatch.setattr(Registry, "point", server_gone)
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file), "--apply", "--yes")
    assert result.code == 1 and "Traceback" not in result.err
    assert f"now release {r1}, but {project.adapter}@production was not moved" in result.err
    assert f"run `vilms rollout {project.adapter} {r1} -f {project.file} --apply` once the server answers " \
           "(nothing was deployed; that command deploys too)" in result.err
    assert "applied" not in result.out
    assert f"release: {r1}" in project.file.read_text()
    assert alias(env, project.adapter) is None
    monkeypatch.setattr(Registry, "point", point)
    assert vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file)).code == 0
    assert alias(env, project.adapter) == "1"


def test_a_run_the_server_does_not_know_is_a_located_error(env, project, capsys):
    r1 = project.runs[0]
    write_run(project.root, r1)  # trained here, but never tracked
    before = tree(project.root)
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 1 and "Traceback" not in result.err
    line = next(n for n, text in enumerate(project.file.read_text().splitlines(), 1) if "tracking:" in text)
    assert f"vilms.yaml:{line}:" in result.err
    assert f"adapters.{project.adapter}.tracking.mlflow.experiment: cannot register {r1}" in result.err
    assert f"there is no experiment '{project.experiment}' tagged vilms.run_id={r1}" in result.err
    assert "hint: was the run trained without tracking.mlflow" in result.err and "--skip-registry" in result.err
    assert tree(project.root) == before

    trained(env, project, project.runs[1])  # the experiment exists now, without r1
    before = tree(project.root)
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 1 and f"experiment '{project.experiment}' has no run tagged vilms.run_id={r1}" in result.err
    assert tree(project.root) == before


def test_of_several_mlflow_runs_tagged_with_the_run_the_finished_one_is_registered(env, project, capsys):
    """A crashed attempt left a FAILED MLflow run without the adapter, and a later one is still RUNNING
    (say, a stray resume): the FINISHED run that holds the adapter is the version."""
    r1 = project.runs[0]
    finished = trained(env, project, r1)
    client = env.client()
    experiment = client.get_experiment_by_name(project.experiment).experiment_id
    crashed = client.create_run(experiment, run_name=r1, tags={"vilms.run_id": r1}).info.run_id
    client.set_terminated(crashed, status="FAILED")
    client.create_run(experiment, run_name=r1, tags={"vilms.run_id": r1})  # newest, RUNNING
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 0, result.err
    assert versions(env, project.adapter)["1"].run_id == finished


def test_a_run_without_its_adapter_artifacts_is_refused(env, project, capsys):
    r1 = project.runs[0]
    mlflow_run = trained(env, project, r1, adapter_files=False)
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 1 and f"its MLflow run {mlflow_run} has no adapter/ artifacts" in result.err
    assert versions(env, project.adapter) == {}


def test_an_unset_uri_variable_is_a_located_error(project, capsys, monkeypatch):
    monkeypatch.delenv(URI_ENV, raising=False)
    r1 = project.runs[0]
    write_run(project.root, r1)
    before = tree(project.root)
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 1 and "Traceback" not in result.err
    assert f"adapters.{project.adapter}.tracking.mlflow.uri: env:{URI_ENV} is not set" in result.err
    assert f"hint: export {URI_ENV}=<the tracking server's URL>" in result.err
    assert tree(project.root) == before


@pytest.mark.parametrize("value", ["not-a-url", "ftp://u:s3cret@host/x", "https://u:s3cret@[::1", "sqlite:////tmp/x.db",
                                   "http://", "databricks"])
def test_a_uri_variable_holding_no_server_url_is_refused_unquoted(project, capsys, monkeypatch, value):
    monkeypatch.setenv(URI_ENV, value)
    r1 = project.runs[0]
    write_run(project.root, r1)
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 1 and "Traceback" not in result.err
    assert f"adapters.{project.adapter}.tracking.mlflow.uri: ${URI_ENV} does not hold a tracking server URL" in result.err
    assert value not in result.err and "s3cret" not in result.err


def test_rollback_of_an_invalid_vilms_yaml_is_reported_by_the_rollback(project, capsys):
    """The registry's check before a rollback leaves an invalid file to the rollback's own located report."""
    project.file.write_text(project.file.read_text().replace("lora: {r: 16}", "lora: {r: -1}"))
    result = vilms(capsys, "rollback", project.adapter, "-f", str(project.file))
    assert result.code == 1 and "Traceback" not in result.err
    assert f"nothing to roll back to: no release history for {project.adapter}" in result.err


def test_mlflow_missing_names_the_track_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    spec = MlflowSpec(tracking_uri="http://127.0.0.1:5000", tracking_uri_env=None, experiment="e",
                      registered_model="support-v1", registry_alias="production")
    with pytest.raises(ActionError) as caught:
        open_registry("support-v1", spec, tmp_path, {})
    assert "needs mlflow, which is not installed" in caught.value.message
    assert "pip install 'vilms[track]'" in caught.value.hint


def test_mlflow_true_follows_in_the_projects_own_store(project, capsys, monkeypatch):
    """`tracking: {mlflow: true}`: no server; the registry of mlruns/ beside vilms.yaml follows the release."""
    from mlflow import MlflowClient

    text = project.file.read_text()
    project.file.write_text(text.replace(f"{{mlflow: {{uri: env:{URI_ENV}, experiment: {project.experiment}}}}}",
                                         f"{{mlflow: true, experiment: {project.experiment}}}"))
    uri = (project.root / "mlruns").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the trainer opens it
    local = SimpleNamespace(client=lambda: MlflowClient(tracking_uri=uri, registry_uri=uri))
    r1 = project.runs[0]
    trained(local, project, r1)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    result = vilms(capsys, "rollout", project.adapter, r1, "-f", str(project.file))
    assert result.code == 0, result.err
    assert alias(local, project.adapter) == "1"
    assert f"{project.adapter}@production → version 1 (was unset)" in result.out


def test_a_local_store_resolves_beside_vilms_yaml(tmp_path):
    spec = MlflowSpec(tracking_uri="file:mlruns", tracking_uri_env=None, experiment="e",
                      registered_model="support-v1", registry_alias="production")
    assert model_registry.tracking_uri("support-v1", spec, tmp_path, {}) == (tmp_path / "mlruns").resolve().as_uri()


_URL_PART = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=", min_size=1,
                    max_size=30)


@given(user=_URL_PART, password=_URL_PART, host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5})?", fullmatch=True))
@settings(max_examples=200, deadline=None)
def test_messages_never_quote_the_tracking_uri(user, password, host):
    uri = f"https://{user}:{password}@{host}:5000/mlflow"
    spec = MlflowSpec(tracking_uri=None, tracking_uri_env="MLFLOW_URI", experiment="e", registered_model="m",
                      registry_alias="production")
    registry = Registry("m", spec, client=None, where=model_registry.where("m", spec), uri=uri)
    said = registry._scrub(f"API request to {uri}/api/2.0/mlflow/runs/search failed with exception "
                           f"HTTPConnectionPool(host='{host}', port=5000): Max retries exceeded; {user}:{password}@{host}")
    assert uri not in said and f"{user}:{password}@" not in said and f":{password}@" not in said
    assert said.startswith("API request to <tracking server>/api/2.0/mlflow/runs/search failed")
