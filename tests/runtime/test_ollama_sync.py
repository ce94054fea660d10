"""`vilms apply` on compose + Ollama: derived models created on the running server through its API.

Against :class:`ollama_fake.FakeOllamaModels`, which keeps blobs and models as Ollama does
(digest-checked uploads, NDJSON create progress, layer pruning), on its own thread: the
apply client is synchronous, as in `vilms apply`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_fakes import free_port
from ollama_fake import FakeOllamaModels, serving

from vilms.compiler import layout
from vilms.compiler.errors import ActionError
from vilms.compiler.modelfile_syntax import parse
from vilms.runtime import ollama_sync
from vilms.runtime.ollama_sync import OllamaClient, create_request, sync

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "vilms"]
RUN = "support-v1-20261120T091500Z-5c4b3a"
NEXT_RUN = "support-v1-20261122T101500Z-7d6e5f"
BASES = ("qwen2.5-1.5b",)
SYSTEM = "You help customers of Acme. Answer briefly and politely."


def adapter(root: Path, run: str, content: bytes) -> str:
    """Put a run's GGUF adapter in artifacts/; its digest as Ollama names blobs."""
    path = root / layout.run_path(run, layout.RUN_ADAPTER_GGUF)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return "sha256:" + hashlib.sha256(content).hexdigest()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    shutil.copytree(REPO / "examples" / "mixed", root, ignore=shutil.ignore_patterns("generated"))
    subprocess.run([*CLI, "build", "-f", str(root / "vilms.yaml")], check=True, capture_output=True)
    return root


def _record(root: Path) -> dict:
    path = ollama_sync.record_path(root, "edge")
    return json.loads(path.read_text()) if path.exists() else {}


def test_apply_creates_the_derived_model_with_its_adapter_blob_and_parameters(project):
    digest = adapter(project, RUN, b"GGUF" + b"\x01" * 3000)
    with serving(FakeOllamaModels()) as fake:
        result = sync(project, "edge", BASES, OllamaClient(fake.url))
    assert result.created == ("support-bot",) and result.uploaded == (digest,)
    assert fake.creates == [{"model": "support-bot", "from": "qwen2.5-1.5b", "adapters": {"adapter.gguf": digest},
                             "system": SYSTEM, "parameters": {"num_ctx": 8192, "temperature": 0.2}, "stream": True}]
    assert fake.blobs[digest] == b"GGUF" + b"\x01" * 3000
    assert fake.store["support-bot:latest"].layers[-1] == digest
    assert fake.paths() == ["GET /api/tags", f"HEAD /api/blobs/{digest}", f"POST /api/blobs/{digest}", "POST /api/create"]
    assert set(_record(project)["models"]) == {"support-bot"}


def test_reapply_is_a_no_op_and_a_stored_blob_is_not_uploaded_again(project):
    digest = adapter(project, RUN, b"GGUF-adapter")
    with serving(FakeOllamaModels()) as fake:
        sync(project, "edge", BASES, OllamaClient(fake.url))
        fake.requests.clear()
        again = sync(project, "edge", BASES, OllamaClient(fake.url))
        assert again.created == () and again.unchanged == ("support-bot",)
        assert fake.paths() == ["GET /api/tags"]
        # the record lost (another machine applies): the model is created again, the blob is not re-sent
        ollama_sync.record_path(project, "edge").unlink()
        fake.requests.clear()
        third = sync(project, "edge", BASES, OllamaClient(fake.url))
    assert third.created == ("support-bot",) and third.uploaded == ()
    assert fake.paths() == ["GET /api/tags", f"HEAD /api/blobs/{digest}", "POST /api/create"]


def test_a_model_gone_from_the_server_is_created_again(project):
    adapter(project, RUN, b"GGUF-adapter")
    with serving(FakeOllamaModels()) as fake:
        sync(project, "edge", BASES, OllamaClient(fake.url))
        del fake.store["support-bot:latest"]  # e.g. the models volume was recreated
        again = sync(project, "edge", BASES, OllamaClient(fake.url))
        assert again.created == ("support-bot",)
        assert "support-bot:latest" in fake.store


def test_rollout_then_rollback_recreates_the_model_from_each_run(project):
    first = adapter(project, RUN, b"GGUF-first-run")
    second = adapter(project, NEXT_RUN, b"GGUF-second-run")
    file = str(project / "vilms.yaml")
    with serving(FakeOllamaModels()) as fake:
        sync(project, "edge", BASES, OllamaClient(fake.url))
        subprocess.run([*CLI, "rollout", "support-v1", NEXT_RUN, "-f", file], check=True, capture_output=True)
        rolled = sync(project, "edge", BASES, OllamaClient(fake.url))
        assert rolled.created == ("support-bot",) and rolled.uploaded == (second,)
        assert fake.store["support-bot:latest"].layers[-1] == second
        assert first not in fake.blobs  # Ollama prunes the replaced model's adapter layer
        subprocess.run([*CLI, "rollback", "support-v1", "-f", file], check=True, capture_output=True)
        back = sync(project, "edge", BASES, OllamaClient(fake.url))
    assert back.created == ("support-bot",) and back.uploaded == (first,)  # pruned, so sent again
    assert fake.store["support-bot:latest"].layers[-1] == first
    assert [c["adapters"]["adapter.gguf"] for c in fake.creates] == [first, second, first]


def test_only_derived_models_this_deployment_created_are_deleted(project):
    adapter(project, RUN, b"GGUF-adapter")
    with serving(FakeOllamaModels(models=("qwen2.5-1.5b", "mine"))) as fake:
        sync(project, "edge", BASES, OllamaClient(fake.url))
        path = project / "vilms.yaml"
        path.write_text(path.read_text().replace("engine: ollama, aliases: [chat, support-bot]", "engine: ollama, aliases: [chat]"))
        subprocess.run([*CLI, "build", "-f", str(path)], check=True, capture_output=True)
        result = sync(project, "edge", BASES, OllamaClient(fake.url))
    assert result.deleted == ("support-bot",)
    assert fake.names() == {"qwen2.5-1.5b:latest", "mine:latest"}  # the base and the user's own model stay
    assert _record(project) == {"models": {}}


def test_server_down_is_a_clear_error_and_nothing_is_recorded(project):
    adapter(project, RUN, b"GGUF-adapter")
    with pytest.raises(ActionError) as caught:
        sync(project, "edge", BASES, OllamaClient(f"http://127.0.0.1:{free_port()}"))
    assert "refused the connection" in caught.value.message and "docker compose" in caught.value.hint
    assert not ollama_sync.record_path(project, "edge").exists()


def test_a_stalling_server_is_a_timeout_error_and_nothing_is_recorded(project):
    adapter(project, RUN, b"GGUF-adapter")
    with serving(FakeOllamaModels(fault="stall")) as fake:
        with pytest.raises(ActionError) as caught:
            sync(project, "edge", BASES, OllamaClient(fake.url, timeout_s=0.5))
    assert "did not answer in time" in caught.value.message and "creating support-bot" in caught.value.message
    assert not ollama_sync.record_path(project, "edge").exists()


def test_a_failed_create_shows_the_servers_error_and_is_not_recorded(project):
    adapter(project, RUN, b"GGUF-adapter")
    with serving(FakeOllamaModels(models=())) as fake:  # the base model is missing
        with pytest.raises(ActionError) as caught:
            sync(project, "edge", BASES, OllamaClient(fake.url))
    assert "pull model manifest: file does not exist" in caught.value.message
    assert "qwen2.5-1.5b" in caught.value.hint
    assert not ollama_sync.record_path(project, "edge").exists()


def test_a_missing_adapter_file_is_located_and_nothing_is_sent(project):
    with serving(FakeOllamaModels()) as fake:
        with pytest.raises(ActionError) as caught:
            sync(project, "edge", BASES, OllamaClient(fake.url))
    assert caught.value.message.startswith("generated/edge/ollama/support-bot.Modelfile: ")
    assert f"artifacts/{RUN}/gguf/adapter.gguf does not exist" in caught.value.message
    assert fake.requests == []


def test_the_fake_rejects_a_blob_whose_bytes_do_not_match_its_digest(tmp_path):
    path = tmp_path / "adapter.gguf"
    path.write_bytes(b"GGUF-real")
    wrong = ollama_sync.Blob("adapter.gguf", path, "sha256:" + "0" * 64, path.stat().st_size)
    with serving(FakeOllamaModels()) as fake:
        with pytest.raises(ActionError) as caught:
            OllamaClient(fake.url).push_blob(wrong)
        assert "digest mismatch" in caught.value.message and "(400)" in caught.value.message
        assert wrong.digest not in fake.blobs


def test_credentials_in_the_url_never_reach_a_message():
    client = OllamaClient(f"http://user:s3cret@127.0.0.1:{free_port()}")
    with pytest.raises(ActionError) as caught:
        client.tags()
    assert "s3cret" not in caught.value.render() and client.url.startswith("http://127.0.0.1:")


def test_create_request_types_parameters_as_ollama_does(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    text = ('FROM base\nADAPTER ./a.gguf\nPARAMETER num_ctx 4096\nPARAMETER temperature 0.5\nPARAMETER stop "<|a|>"\n'
            'PARAMETER stop <|b|>\nPARAMETER use_mmap false\nMESSAGE user hi there\nLICENSE MIT\nTEMPLATE "{{ .Prompt }}"\n')
    request, blobs = create_request(parse(text), tmp_path)
    assert request == {"from": "base", "adapters": {"a.gguf": blobs[0].digest},
                       "parameters": {"num_ctx": 4096, "temperature": 0.5, "stop": ["<|a|>", "<|b|>"], "use_mmap": False},
                       "messages": [{"role": "user", "content": "hi there"}], "license": ["MIT"], "template": "{{ .Prompt }}"}
    with pytest.raises(ValueError, match="num_ctx"):
        create_request(parse("FROM base\nPARAMETER num_ctx lots\n"), tmp_path)


def test_compose_publishes_ollama_on_a_free_loopback_port_for_apply(project):
    from tests.support.validators import compose_required_vars, compose_resolved

    compose = project / "generated" / "edge" / "docker-compose.yaml"
    env = {name: "x" for name in compose_required_vars(compose.read_text())}
    ports = compose_resolved(compose, env)["services"]["ollama"]["ports"]
    assert [(p["host_ip"], p["target"], p.get("published", "")) for p in ports] == [("127.0.0.1", 11434, "")]


def test_a_damaged_record_stops_the_sync_with_its_path_before_the_server_is_changed(project):
    adapter(project, RUN, b"GGUF-adapter")
    path = ollama_sync.record_path(project, "edge")
    path.parent.mkdir(parents=True)
    path.write_text('{"models": ["support-bot"]}')
    with serving(FakeOllamaModels()) as fake:
        with pytest.raises(ActionError) as caught:
            sync(project, "edge", BASES, OllamaClient(fake.url))
    assert str(path) in caught.value.message and f"delete {path}" in caught.value.hint
    assert fake.creates == []


def test_a_deployment_without_derived_models_never_asks_for_the_server(project):
    path = project / "vilms.yaml"
    path.write_text(path.read_text().replace("engine: ollama, aliases: [chat, support-bot]", "engine: ollama, aliases: [chat]"))
    subprocess.run([*CLI, "build", "-f", str(path)], check=True, capture_output=True)

    def no_server() -> OllamaClient:
        raise AssertionError("the server was looked up")

    assert sync(project, "edge", BASES, no_server) == ollama_sync.SyncResult((), (), (), ())
