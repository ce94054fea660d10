"""`vilms build`: output beside the input, atomic swap, pruning, --check, determinism."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

import pytest

from tests.compiler.minimal import MINIMAL
from tests.support.runs import write_run
from vilms.compiler.errors import ActionError

REPO = Path(__file__).resolve().parents[2]


def test_build_writes_beside_the_file_from_another_directory(project, vilms, tmp_path):
    path = project(MINIMAL)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = vilms("build", "-f", str(path), cwd=elsewhere)
    assert result.code == 0, result.err
    out = path.parent / "generated"
    assert (out / "manifest.json").is_file()
    assert (out / "dev" / "local.yaml").is_file()
    assert (out / "gpu" / "docker-compose.yaml").is_file()
    assert (out / "gpu" / "vllm" / "qwen2.5-1.5b.yaml").is_file()
    assert (out / "training" / "support-v1.yaml").is_file()
    assert not (elsewhere / "generated").exists()


def test_manifest_lists_every_file_with_its_hash(project, vilms):
    import hashlib

    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    out = path.parent / "generated"
    manifest = json.loads((out / "manifest.json").read_text())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert manifest["input"] == {"file": "vilms.yaml", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_check_passes_when_fresh_and_names_each_edited_file(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    assert vilms("build", "--check", "-f", str(path)).code == 0
    out = path.parent / "generated"
    (out / "dev" / "local.yaml").write_text("edited by hand\n")
    (out / "stray.txt").write_text("x")
    (out / "gpu" / "docker-compose.yaml").unlink()
    result = vilms("build", "--check", "-f", str(path))
    assert result.code == 4
    assert "generated/dev/local.yaml: differs" in result.err
    assert "generated/gpu/docker-compose.yaml: missing" in result.err
    assert "generated/stray.txt: unexpected" in result.err
    # --check never writes
    assert (out / "dev" / "local.yaml").read_text() == "edited by hand\n"


def test_stale_files_are_pruned(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    out = path.parent / "generated"
    assert (out / "gpu").is_dir()
    path.write_text(MINIMAL.replace("  gpu: {hardware: gpu1, target: compose, engine: vllm}\n", ""))
    assert vilms("build", "-f", str(path)).code == 0
    assert not (out / "gpu").exists()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".generated")]


def test_failed_build_leaves_generated_untouched(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    out = path.parent / "generated"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    path.write_text(MINIMAL.replace("context: 8192", "context: nope"))
    assert vilms("build", "-f", str(path)).code == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_write_failure_midway_keeps_old_tree(project, monkeypatch):
    from vilms.compiler import write

    path = project(MINIMAL)
    from vilms.compiler.pipeline import build

    build(path)
    out = path.parent / "generated"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = Path.write_bytes
    calls = {"n": 0}

    def flaky(self, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    path.write_text(MINIMAL.replace("context: 8192", "context: 4096"))
    with pytest.raises(ActionError) as failed:
        write.write_tree(out, {"a.txt": b"1", "b.txt": b"2", "c.txt": b"3", "d.txt": b"4"})
    assert failed.value.render() == f"cannot write {out}: No space left on device\n  hint: free some disk space, then build again"
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".generated")]


@pytest.mark.parametrize("example", ["mixed", "gpu-cluster"])
def test_output_is_byte_identical_across_runs_and_hash_seeds(tmp_path, vilms, example):
    trees = []
    for seed in ("0", "4242", "random"):
        work = tmp_path / f"run-{seed}"
        shutil.copytree(REPO / "examples" / example, work, ignore=shutil.ignore_patterns("generated"))
        assert vilms("build", "-f", str(work / "vilms.yaml"), env={"PYTHONHASHSEED": seed}).code == 0
        out = work / "generated"
        trees.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0] == trees[1] == trees[2]


def test_no_absolute_paths_hostnames_or_timestamps(tmp_path, vilms):
    work = tmp_path / "mixed"
    shutil.copytree(REPO / "examples" / "mixed", work, ignore=shutil.ignore_patterns("generated"))
    assert vilms("build", "-f", str(work / "vilms.yaml")).code == 0
    host = socket.gethostname()
    stamp = re.compile(rb"20\d\d-\d\d-\d\d[T ]\d\d:\d\d")
    for file in (work / "generated").rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            assert str(tmp_path).encode() not in data, file
            assert str(Path.home()).encode() + b"/" not in data, file
            assert host.encode() not in data or len(host) < 4, file
            assert not stamp.search(data), file


def test_shipped_generated_is_up_to_date(vilms):
    result = vilms("build", "--check", "-f", str(REPO / "vilms.yaml"))
    assert result.code == 0, result.err


def test_secrets_never_land_in_generated(project, vilms):
    path = project(MINIMAL)
    result = vilms("build", "-f", str(path), env={"VILMS_API_KEYS": "sk-super-secret-value"})
    assert result.code == 0
    for file in (path.parent / "generated").rglob("*"):
        if file.is_file():
            assert b"sk-super-secret-value" not in file.read_bytes()
    compose = (path.parent / "generated" / "gpu" / "docker-compose.yaml").read_text()
    assert "${VILMS_API_KEYS:?" in compose


def test_writes_no_group_or_world_writable_files(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    for file in (path.parent / "generated").rglob("*"):
        assert not os.stat(file).st_mode & 0o022


def test_build_refuses_a_dataset_whose_content_changed_since_it_was_pinned(project, vilms):
    import hashlib

    path = project(MINIMAL)
    data = path.parent / "data" / "support.jsonl"
    data.parent.mkdir()
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    pinned = hashlib.sha256(data.read_bytes()).hexdigest()
    path.write_text(MINIMAL.replace("format: chat}", f"format: chat, sha256: {pinned}}}"))
    assert vilms("build", "-f", str(path)).code == 0
    data.write_text(data.read_text() + '{"messages": [{"role": "user", "content": "new"}, {"role": "assistant", "content": "row"}]}\n')
    result = vilms("build", "-f", str(path))
    assert result.code == 1
    assert "datasets.support.sha256: content of data/support.jsonl changed since it was pinned" in result.err
    assert "vilms data manifest" in result.err


def _released(run_id: str) -> str:
    return MINIMAL.replace("    hardware: gpu1\n", f"    hardware: gpu1\n    release: {run_id}\n", 1)


def test_release_must_name_a_run_of_that_adapter(project, vilms):
    result = vilms("validate", "-f", str(project(_released("other-20261123T152000Z-1a2b3c"))))
    assert result.code == 1
    assert "adapters.support-v1.release: run 'other-20261123T152000Z-1a2b3c' was trained for adapter 'other'" in result.err


@pytest.mark.parametrize("gate,ok", [("passed", True), ("approved", True), ("needs_approval", False), ("failed", False)])
def test_a_local_run_is_released_only_when_its_gate_allows(project, vilms, gate, ok):
    run_id = "support-v1-20261123T152000Z-1a2b3c"
    path = project(_released(run_id))
    write_run(path.parent, run_id, gate=gate)
    result = vilms("validate", "-f", str(path))
    assert (result.code == 0) is ok, result.err
    if not ok:
        assert f"run '{run_id}' cannot be released: status completed, gate {gate}" in result.err
        # only a gate that asked for a human decision can be approved; reject means train again
        assert (f"vilms approve {run_id}" in result.err) is (gate == "needs_approval")
        if gate == "failed":
            assert "on_fail is reject" in result.err


def test_check_names_the_version_that_wrote_generated(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    manifest = path.parent / "generated" / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "vilms_version": "0.0.1"}))
    result = vilms("build", "--check", "-f", str(path))
    assert result.code == 4
    assert "generated/manifest.json: differs\ngenerated/ was written by ViLMS 0.0.1; this is ViLMS " in result.err
    manifest.write_text(json.dumps({**data, "apiVersion": "vilms/v1"}))
    result = vilms("build", "--check", "-f", str(path))
    assert "generated/manifest.json: differs\ngenerated/ was written by another ViLMS version\n" in result.err


def test_named_keys_reach_the_routes_and_the_containers(project, vilms):
    """gateway.keys: each key's variable reaches compose and Helm as a required secret; its scope
    is cut to the aliases each deployment serves; literal keys and shared variables are refused."""
    import yaml

    text = MINIMAL.replace("  api_keys: env:VILMS_API_KEYS", "  api_keys: env:VILMS_API_KEYS\n  ops_key: env:VILMS_OPS_KEY\n"
                           "  keys:\n    ci: {key: env:CI_KEY, aliases: [chat], rpm: 60}\n    bot: {key: env:BOT_KEY, tpm: 1000}")
    path = project(text)
    assert vilms("build", "-f", str(path)).code == 0
    routes = yaml.safe_load((path.parent / "generated" / "dev" / "gateway" / "routes.yaml").read_text())
    assert routes["gateway"]["keys"] == {"bot": {"env": "BOT_KEY", "aliases": None, "rpm": None, "tpm": 1000},
                                         "ci": {"env": "CI_KEY", "aliases": ["chat"], "rpm": 60, "tpm": None}}
    assert routes["gateway"]["ops_key_env"] == "VILMS_OPS_KEY"
    compose = yaml.safe_load((path.parent / "generated" / "gpu" / "docker-compose.yaml").read_text())
    env = compose["services"]["gateway"]["environment"]
    assert {"BOT_KEY", "CI_KEY", "VILMS_API_KEYS", "VILMS_OPS_KEY"} <= set(env) and env["CI_KEY"].startswith("${CI_KEY:?")
    shared = text.replace("key: env:BOT_KEY", "key: env:CI_KEY")
    result = vilms("validate", "-f", str(project(shared)))
    assert result.code == 1 and "gateway.keys.ci.key: reads the same variable as gateway.keys.bot" in result.err
    literal = text.replace("key: env:BOT_KEY", "key: sk-live-0123456789abcdef")
    result = vilms("validate", "-f", str(project(literal)))
    assert "gateway.keys.bot.key: plaintext secret" in result.err and "sk-live" not in result.err
    unknown = text.replace("aliases: [chat]", "aliases: [chta]")
    result = vilms("validate", "-f", str(project(unknown)))
    assert "gateway.keys.ci.aliases[0]: unknown alias 'chta' (did you mean 'chat'?)" in result.err
