"""`vilms rollout`, `rollback` and `export --push` with the artifact store (moto's S3 server,
started here): a release on a Ray deployment pushes and verifies the run before it edits
`release:`; a store that fails leaves vilms.yaml, generated/ and the history as they were."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.compiler.minimal import MINIMAL
from tests.support import s3_server
from tests.support.adapters import spec_of, write_adapter
from tests.support.runs import write_run
from vilms.cli.main import run
from vilms.compiler.facts.store import MANIFEST
from vilms.compiler.layout import Layout
from vilms.runtime.artifact_store import ArtifactStore, connect

pytestmark = pytest.mark.timeout(120)

ADAPTER = "support-v1"
R1, R2 = "support-v1-20261201T091500Z-1a2b3c", "support-v1-20261202T091500Z-4d5e6f"
DEPLOYMENTS = ("  dev: {hardware: laptop, target: local, engine: llamacpp}\n"
               "  gpu: {hardware: gpu1, target: compose, engine: vllm}\n")
RAY = "  k8s: {hardware: gpu1, target: helm, engine: ray}\n"


def make_project(tmp_path: Path, bucket: str, *, ray: bool = True) -> Path:
    deployments = RAY if ray else DEPLOYMENTS
    text = MINIMAL.replace(DEPLOYMENTS, deployments)
    if ray:
        text += f"artifact_store: {{uri: s3://{bucket}/vilms, endpoint: env:S3_ENDPOINT}}\n"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "support.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    path = tmp_path / "vilms.yaml"
    path.write_text(text)
    return path


def trained(root: Path, run_id: str) -> Path:
    """A completed run whose gate passed, with its adapter folder."""
    write_run(root, run_id)
    return write_adapter(Layout(root).run(run_id) / "adapter")


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("project.lock", ".gitignore")}


def vilms(capsys, *args: str) -> SimpleNamespace:
    code = run(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(code=code, out=out.out, err=out.err)


@pytest.fixture
def env(s3, monkeypatch):
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


def store(s3, bucket: str) -> ArtifactStore:
    return ArtifactStore(connect(spec_of(bucket), s3.env()))


def test_rollout_on_ray_pushes_and_verifies_then_releases(tmp_path, bucket, env, capsys):
    project = make_project(tmp_path, bucket)
    trained(tmp_path, R1)
    result = vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project))
    assert result.code == 0, result.err
    uri = f"s3://{bucket}/vilms/{R1}"
    assert f"artifact store: {uri}/ pushed 4 of 4 files; verified sha256 of 4 files" in result.out
    manifest = store(env, bucket).verify(R1, tmp_path / "artifacts" / R1 / "adapter")
    assert f"manifest sha256 {manifest.sha256}" in result.out
    assert result.out.index("artifact store:") < result.out.index(f"{ADAPTER}: release null → {R1}")
    assert f"release: {R1}" in project.read_text()
    routes = (tmp_path / "generated" / "k8s" / "gateway" / "routes.yaml").read_text()
    assert f"path: {uri}" in routes and f"qwen2.5-1.5b:{R1}" in routes


def test_rollout_with_a_failing_store_changes_nothing(tmp_path, bucket, env, capsys, monkeypatch):
    project = make_project(tmp_path, bucket)
    trained(tmp_path, R1)
    before = tree(tmp_path)
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{s3_server.free_port()}")  # nothing listens there
    started = time.monotonic()
    result = vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project))
    assert time.monotonic() - started < 30
    assert result.code == 1 and "Traceback" not in result.err
    assert "cannot reach the artifact store at http://127.0.0.1:" in result.err
    assert f"not released: Ray deployment k8s loads {R1} from the artifact store; {project} and generated/ were not changed" in result.err
    assert tree(tmp_path) == before  # vilms.yaml byte-identical, no generated/, no history


def test_rollout_with_a_wrong_secret_changes_nothing_and_hides_it(tmp_path, bucket, env, capsys, monkeypatch):
    project = make_project(tmp_path, bucket)
    trained(tmp_path, R1)
    before = tree(tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-" + uuid.uuid4().hex)
    result = vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project))
    assert result.code == 1 and "SignatureDoesNotMatch" in result.err
    assert "not-the-secret-" not in result.err + result.out and env.secret_access_key not in result.err
    assert tree(tmp_path) == before


def test_rollout_of_a_run_only_in_the_store_verifies_it(tmp_path, bucket, env, capsys):
    project = make_project(tmp_path, bucket)
    store(env, bucket).push(R1, write_adapter(tmp_path / "elsewhere"))  # trained and pushed on another machine
    result = vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project))
    assert result.code == 0, result.err
    assert f"artifact store: s3://{bucket}/vilms/{R1}/ already in the store; verified sha256 of 4 files" in result.out


def test_rollout_of_a_run_neither_here_nor_stored_is_refused(tmp_path, bucket, env, capsys):
    project = make_project(tmp_path, bucket)
    before = tree(tmp_path)
    result = vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project))
    assert result.code == 1
    assert f"run {R1} is neither here (artifacts/{R1}/adapter/) nor in the artifact store (s3://{bucket}/vilms/{R1}/)" in result.err
    assert f"vilms export {R1} --push" in result.err
    assert tree(tmp_path) == before


def test_rollback_pushes_the_older_run_when_the_store_lost_it(tmp_path, bucket, env, capsys):
    project = make_project(tmp_path, bucket)
    trained(tmp_path, R1)
    trained(tmp_path, R2)
    assert vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project)).code == 0
    assert vilms(capsys, "rollout", ADAPTER, R2, "-f", str(project)).code == 0
    client = env.client()
    for item in client.list_objects_v2(Bucket=bucket, Prefix=f"vilms/{R1}/")["Contents"]:
        client.delete_object(Bucket=bucket, Key=item["Key"])
    result = vilms(capsys, "rollback", ADAPTER, "-f", str(project))
    assert result.code == 0, result.err
    assert f"artifact store: s3://{bucket}/vilms/{R1}/ pushed 4 of 4 files" in result.out
    assert f"release: {R1}" in project.read_text()
    assert client.head_object(Bucket=bucket, Key=f"vilms/{R1}/{MANIFEST}")


def test_rollout_without_ray_does_not_touch_a_store(tmp_path, bucket, capsys, monkeypatch):
    for name in ("S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    project = make_project(tmp_path, bucket, ray=False)
    trained(tmp_path, R1)
    (Layout(tmp_path).run(R1) / "gguf").mkdir()
    (Layout(tmp_path).run(R1) / "gguf" / "adapter.gguf").write_bytes(b"GGUF")
    result = vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project))
    assert result.code == 0, result.err
    assert "artifact store" not in result.out + result.err


def test_rollout_on_ray_without_boto3_names_the_extra(tmp_path, bucket, env, capsys, monkeypatch):
    project = make_project(tmp_path, bucket)
    trained(tmp_path, R1)
    before = tree(tmp_path)
    for name in [m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "s3transfer")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "boto3", None)
    result = vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project))
    assert result.code == 1 and "pip install 'vilms[store]'" in result.err
    assert tree(tmp_path) == before


def test_export_push_without_a_store_is_a_usage_error(tmp_path, bucket, capsys):
    project = make_project(tmp_path, bucket, ray=False)
    result = vilms(capsys, "export", R1, "--push", "-f", str(project))
    assert result.code == 2
    assert "--push needs an artifact_store" in result.err and "add artifact_store: {uri: s3://" in result.err


def test_export_push_checks_the_credentials_before_exporting(tmp_path, bucket, env, capsys, monkeypatch):
    project = make_project(tmp_path, bucket)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    result = vilms(capsys, "export", R1, "--push", "-f", str(project))
    assert result.code == 1 and "$AWS_ACCESS_KEY_ID, which is not set" in result.err
    assert not (tmp_path / "artifacts").exists()


def test_export_push_pushes_after_the_export_and_prints_uri_and_digest(tmp_path, bucket, env, capsys, monkeypatch):
    """The export itself (merge, GGUF) is tested in tests/trainers/test_export.py; here it is a
    stand-in that records it ran, so the order and the push are what is checked."""
    from vilms.trainers.export import pipeline

    project = make_project(tmp_path, bucket)
    trained(tmp_path, R1)
    exported = []

    def export_run(layout, run_id, **_):
        assert store(env, bucket).manifest(run_id) is None  # nothing pushed before the export
        exported.append(run_id)
        return SimpleNamespace(files={}, vllm=SimpleNamespace(compatible=True, max_lora_rank=16), notes=())

    monkeypatch.setattr(pipeline, "export_run", export_run)
    result = vilms(capsys, "export", R1, "--push", "-f", str(project))
    assert result.code == 0, result.err
    manifest = store(env, bucket).verify(R1, tmp_path / "artifacts" / R1 / "adapter")
    assert exported == [R1]
    assert f"artifact store: s3://{bucket}/vilms/{R1}/ pushed 4 of 4 files" in result.out
    assert f"manifest sha256 {manifest.sha256}" in result.out


def _helm_stand_in(tmp_path: Path, monkeypatch) -> Path:
    """A `helm` on PATH that records its arguments (no cluster here)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "helm-calls"
    bin_dir.mkdir()
    helm = bin_dir / "helm"
    helm.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    helm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_apply_refuses_a_ray_release_missing_from_the_store(tmp_path, bucket, env, capsys, monkeypatch):
    """A release: set by hand and built (never pushed) would answer 503 after the deploy: apply refuses
    before helm runs, naming the run and how to push it."""
    project = make_project(tmp_path, bucket)
    project.write_text(project.read_text().replace("    hardware: gpu1\n", f"    hardware: gpu1\n    release: {R1}\n", 1))
    trained(tmp_path, R1)
    assert vilms(capsys, "build", "-f", str(project)).code == 0
    calls = _helm_stand_in(tmp_path, monkeypatch)
    dry = vilms(capsys, "apply", "--dry-run", "-f", str(project))
    assert dry.code == 0 and f"first: check that {R1} is in s3://{bucket}/vilms/" in dry.out
    result = vilms(capsys, "apply", "--yes", "-f", str(project))
    assert result.code == 1 and "Traceback" not in result.err
    assert f"not applied: Ray Serve LLM loads released runs from the artifact store, and it lacks {R1} (deployment k8s)" in result.err
    assert f"vilms export {R1} --push" in result.err
    assert not calls.exists()  # helm never ran


def test_apply_deploys_a_ray_release_that_is_in_the_store(tmp_path, bucket, env, capsys, monkeypatch):
    project = make_project(tmp_path, bucket)
    trained(tmp_path, R1)
    assert vilms(capsys, "rollout", ADAPTER, R1, "-f", str(project)).code == 0  # pushes the run first
    calls = _helm_stand_in(tmp_path, monkeypatch)
    result = vilms(capsys, "apply", "--yes", "-f", str(project))
    assert result.code == 0, result.err
    assert calls.read_text().split()[:4] == ["upgrade", "--install", "demo-k8s", "generated/k8s/helm"]
    store(env, bucket).client.delete_object(Bucket=bucket, Key=f"vilms/{R1}/{MANIFEST}")  # the store lost it
    calls.unlink()
    lost = vilms(capsys, "apply", "--yes", "-f", str(project))
    assert lost.code == 1 and R1 in lost.err and not calls.exists()
