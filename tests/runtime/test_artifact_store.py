"""The artifact store against a real S3-compatible server (moto's, started here on 127.0.0.1,
signatures enforced), through the production client code: push, verify, fetch, idempotence,
tampering, interrupted pushes, credentials and an unreachable endpoint."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.adapters import safetensors, spec_of, write_adapter
from vilms.compiler.errors import ActionError
from vilms.compiler.facts.store import MANIFEST
from vilms.compiler.run_ids import PATTERN
from vilms.runtime.artifact_store import ArtifactStore, Timeouts, Transfer, connect
from vilms.runtime.artifact_store.manifest import safe_name
from vilms.runtime.artifact_store.store import _checked, object_key

pytestmark = pytest.mark.timeout(120)

RUN = "support-v1-20261201T091500Z-1a2b3c"
UPLOADS = ("PutObject", "CreateMultipartUpload", "UploadPart")


def open_store(s3, bucket: str, **env: str) -> ArtifactStore:
    return ArtifactStore(connect(spec_of(bucket), s3.env(**env)))


@pytest.fixture
def adapter(tmp_path) -> Path:
    return write_adapter(tmp_path / "artifacts" / RUN / "adapter")


def keys(s3, bucket: str) -> dict[str, bytes]:
    client = s3.client()
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def count_uploads(store: ArtifactStore) -> list[str]:
    """Every upload request the store's own client sends from now on (operation names)."""
    seen: list[str] = []
    for operation in UPLOADS:
        store.client.meta.events.register(f"before-call.s3.{operation}", lambda model, **_: seen.append(model.name))
    return seen


def test_push_verify_fetch_round_trip(s3, bucket, adapter, tmp_path):
    store = open_store(s3, bucket)
    pushed = store.push(RUN, adapter)
    files = sorted(p.name for p in adapter.iterdir())
    assert pushed.uri == f"s3://{bucket}/vilms/{RUN}" and sorted(pushed.uploaded) == files and pushed.skipped == ()
    stored = keys(s3, bucket)
    # flat under <prefix>/<run_id>/, as Ray Serve LLM loads a PEFT folder, plus the manifest
    assert sorted(stored) == sorted([f"vilms/{RUN}/{name}" for name in files] + [f"vilms/{RUN}/{MANIFEST}"])
    for name in files:
        assert stored[f"vilms/{RUN}/{name}"] == (adapter / name).read_bytes()
    manifest = json.loads(stored[f"vilms/{RUN}/{MANIFEST}"])
    assert manifest["run_id"] == RUN and sorted(manifest["files"]) == files
    assert manifest["files"]["README.md"] == {"sha256": pushed.manifest.files["README.md"].sha256, "size": 13}
    assert store.verify(RUN, adapter) == pushed.manifest
    assert store.verify(RUN) == pushed.manifest  # against the manifest alone
    dest = tmp_path / "fetched" / RUN
    assert store.fetch(RUN, dest) == pushed.manifest
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == {p.name: p.read_bytes() for p in adapter.iterdir()}
    assert [p.name for p in dest.parent.iterdir()] == [RUN]  # no staging folder left
    with pytest.raises(ActionError, match="already exists"):
        store.fetch(RUN, dest)


def test_push_again_uploads_nothing(s3, bucket, adapter):
    store = open_store(s3, bucket)
    store.push(RUN, adapter)
    before = {item["Key"]: item["LastModified"] for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    uploads = count_uploads(store)
    again = store.push(RUN, adapter)
    assert uploads == [] and again.uploaded == () and sorted(again.skipped) == sorted(p.name for p in adapter.iterdir())
    after = {item["Key"]: item["LastModified"] for item in s3.client().list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before


def test_large_file_goes_up_in_parts(s3, bucket, adapter):
    (adapter / "adapter_model.safetensors").write_bytes(safetensors({"w": [1.5] * (6 << 18)}))  # 6 MiB
    store = ArtifactStore(connect(spec_of(bucket), s3.env()), Transfer(threshold=5 << 20, part=5 << 20, concurrency=2))
    uploads = count_uploads(store)
    store.push(RUN, adapter)
    assert uploads.count("CreateMultipartUpload") == 1 and uploads.count("UploadPart") == 2
    size = (adapter / "adapter_model.safetensors").stat().st_size
    assert size > 6 << 20 and store.verify(RUN, adapter).files["adapter_model.safetensors"].size == size


@pytest.mark.parametrize("tamper", ["same size", "longer"])
def test_a_tampered_object_fails_verify_and_fetch_naming_it(s3, bucket, adapter, tmp_path, tamper):
    store = open_store(s3, bucket)
    store.push(RUN, adapter)
    original = (adapter / "adapter_model.safetensors").read_bytes()
    changed = original[:-4] + b"\x00\x00\x80\x7f" if tamper == "same size" else original + b"\x00" * 8
    s3.client().put_object(Bucket=bucket, Key=f"vilms/{RUN}/adapter_model.safetensors", Body=changed)
    for check in (lambda: store.verify(RUN, adapter), lambda: store.verify(RUN), lambda: store.fetch(RUN, tmp_path / "out")):
        with pytest.raises(ActionError) as caught:
            check()
        assert f"s3://{bucket}/vilms/{RUN}/adapter_model.safetensors" in caught.value.message
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_an_interrupted_push_writes_no_manifest_and_resumes(s3, bucket, adapter):
    from botocore.exceptions import ConnectionClosedError

    store = open_store(s3, bucket)

    def drop(params, **_):
        if params["url_path"].endswith("/adapter_model.safetensors"):
            raise ConnectionClosedError(endpoint_url=s3.endpoint)

    store.client.meta.events.register("before-call.s3.PutObject", drop)
    with pytest.raises(ActionError, match="adapter_model.safetensors"):
        store.push(RUN, adapter)
    stored = keys(s3, bucket)
    assert f"vilms/{RUN}/adapter_config.json" in stored and f"vilms/{RUN}/{MANIFEST}" not in stored
    assert store.manifest(RUN) is None
    with pytest.raises(ActionError, match=f"run {RUN} is not in the artifact store"):
        store.verify(RUN)
    store.client.meta.events.unregister("before-call.s3.PutObject", drop)
    resumed = store.push(RUN, adapter)
    assert resumed.uploaded == ("adapter_model.safetensors", "tokenizer_config.json")  # in name order, after
    assert resumed.skipped == ("README.md", "adapter_config.json")
    store.verify(RUN, adapter)


def test_different_content_under_the_same_run_is_refused(s3, bucket, adapter):
    store = open_store(s3, bucket)
    store.push(RUN, adapter)
    (adapter / "README.md").write_text("# changed\n")
    uploads = count_uploads(store)
    with pytest.raises(ActionError, match="different content: README.md differs") as caught:
        store.push(RUN, adapter)
    assert "immutable" in caught.value.hint and uploads == []
    with pytest.raises(ActionError, match="README.md differs"):
        store.verify(RUN, adapter)


def test_a_half_pushed_run_with_other_content_is_refused(s3, bucket, adapter):
    s3.client().put_object(Bucket=bucket, Key=f"vilms/{RUN}/README.md", Body=b"someone else's\n")
    s3.client().put_object(Bucket=bucket, Key=f"vilms/{RUN}/notes.txt", Body=b"stray\n")
    store = open_store(s3, bucket)
    with pytest.raises(ActionError, match="notes.txt"):
        store.push(RUN, adapter)
    s3.client().delete_object(Bucket=bucket, Key=f"vilms/{RUN}/notes.txt")
    with pytest.raises(ActionError, match="README.md is already stored with different content"):
        store.push(RUN, adapter)
    assert store.manifest(RUN) is None


def test_a_folder_marker_is_not_a_file(s3, bucket, adapter):
    s3.client().put_object(Bucket=bucket, Key=f"vilms/{RUN}/", Body=b"")  # what some consoles create for a "folder"
    store = open_store(s3, bucket)
    store.push(RUN, adapter)
    assert store.verify(RUN, adapter).files.keys() == {p.name for p in adapter.iterdir()}


@pytest.mark.parametrize("manifest", [
    {"format": "vilms.dev/adapter-manifest/v1", "run_id": RUN, "files": {"../../etc/passwd": {"sha256": "0" * 64, "size": 1}}},
    {"format": "vilms.dev/adapter-manifest/v1", "run_id": RUN, "files": {".hidden": {"sha256": "0" * 64, "size": 1}}},
    {"format": "vilms.dev/adapter-manifest/v1", "run_id": "other-20261201T091500Z-1a2b3c", "files": {"a": {"sha256": "0" * 64, "size": 1}}},
    {"format": "vilms.dev/adapter-manifest/v1", "run_id": RUN, "files": {"a": {"sha256": "xyz", "size": 1}}},
    {"format": "vilms.dev/adapter-manifest/v1", "run_id": RUN, "files": {"a": {"sha256": "0" * 64, "size": True}}},
    {"format": "v0", "run_id": RUN, "files": {"a": {"sha256": "0" * 64, "size": 1}}},
    [],
])
def test_a_hostile_manifest_is_refused_before_anything_is_written(s3, bucket, tmp_path, manifest):
    s3.client().put_object(Bucket=bucket, Key=f"vilms/{RUN}/{MANIFEST}", Body=json.dumps(manifest).encode())
    store = open_store(s3, bucket)
    with pytest.raises(ActionError, match=f"vilms/{RUN}/{MANIFEST} is not a valid ViLMS manifest"):
        store.fetch(RUN, tmp_path / "out" / RUN)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("missing", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_ENDPOINT"])
def test_a_missing_variable_is_named(s3, bucket, missing):
    env = s3.env()
    del env[missing]
    with pytest.raises(ActionError) as caught:
        connect(spec_of(bucket), env)
    text = caught.value.render()
    assert f"${missing}, which is not set" in text and f"export {missing}" in text
    assert s3.secret_access_key not in text


def test_a_wrong_secret_is_refused_without_showing_it(s3, bucket, adapter):
    wrong = "wJalrXUtnFEMI-not-the-secret-" + uuid.uuid4().hex
    store = open_store(s3, bucket, AWS_SECRET_ACCESS_KEY=wrong)
    with pytest.raises(ActionError) as caught:
        store.push(RUN, adapter)
    text = caught.value.render()
    assert "refused" in text and "SignatureDoesNotMatch" in text
    assert "$AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY" in text
    assert wrong not in text and s3.secret_access_key not in text


def test_a_missing_bucket_is_named(s3, adapter):
    store = open_store(s3, "no-such-bucket-here")
    with pytest.raises(ActionError, match="bucket 'no-such-bucket-here' does not exist"):
        store.push(RUN, adapter)


def test_an_endpoint_that_never_answers_fails_in_bounded_time(adapter):
    """A listener whose accept queue is full drops SYNs: the connect times out (no network needed)."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        for _ in range(4):  # fill the backlog (Linux queues backlog + 1)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        env = {"S3_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
        store = ArtifactStore(connect(spec_of("acme"), env, Timeouts(connect=0.5, read=0.5, attempts=2)))
        started = time.monotonic()
        try:
            with pytest.raises(ActionError) as caught:
                store.push(RUN, adapter)
        finally:
            for filler in fillers:
                filler.close()
    assert time.monotonic() - started < 10
    text = caught.value.render()
    assert f"cannot reach the artifact store at http://127.0.0.1:{port}" in text and "$S3_ENDPOINT" in text
    assert "Connect timeout" in text
    assert "s3cr3t-value" not in text and "Traceback" not in text


@given(st.text(max_size=120))
def test_only_run_ids_name_a_folder_in_the_store(text):
    try:
        checked = _checked(text)
    except ActionError:
        return
    assert checked == text and "/" not in text and text not in (".", "..") and not text.startswith(".")


@given(st.from_regex(PATTERN, fullmatch=True), st.sampled_from(["", "/vilms", "/a/b.c/d_e"]))
def test_every_run_id_is_one_key_segment(run_id, prefix):
    spec = spec_of("acme", prefix)
    expected = f"{prefix.strip('/')}/{run_id}/adapter_config.json".lstrip("/")
    assert object_key(spec, run_id, "adapter_config.json") == expected
    assert spec.run_uri(run_id) == f"s3://acme{prefix}/{run_id}"  # where Ray Serve LLM looks: the same folder


@given(st.text(alphabet=st.sampled_from("ab./\\_-~:\x00 "), max_size=24))
def test_a_safe_name_stays_inside_the_folder(name):
    if not safe_name(name):
        return
    base = Path("/srv/run")
    assert (base / name).resolve().is_relative_to(base) and ".." not in name.split("/") and name != MANIFEST


def test_a_download_slower_than_the_floor_is_given_up(s3, bucket, adapter, monkeypatch):
    from vilms.compiler.facts import store as facts

    store = open_store(s3, bucket)
    store.push(RUN, adapter)
    monkeypatch.setattr(facts, "READ_TIMEOUT_S", -1.0)  # the deadline has passed when the first block arrives
    monkeypatch.setattr(facts, "MIN_BYTES_PER_S", 10**12)
    with pytest.raises(ActionError, match=f"vilms/{RUN}/README.md: the download is slower than"):
        store.verify(RUN)
