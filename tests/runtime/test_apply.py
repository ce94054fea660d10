"""`vilms apply`: the commands per target, the stale-output guard, confirmation, failures.

No Docker engine or cluster here: `docker` and `helm` are stand-ins on PATH that record
their arguments. The `docker` stand-in first runs the real Compose v2 binary's
`config -q` on the file it is given, so a file (or environment) Compose would reject
fails the apply as it would for real; `docker compose port` answers with the address of
a fake Ollama (``ollama_fake.FakeOllamaModels``) that keeps models and blobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gateway_fakes import free_port
from ollama_fake import FakeOllamaModels, serving

from tests.support.validators import compose_binary, compose_required_vars
from vilms.compiler import layout

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "vilms"]

FAKE = """#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(json.dumps({{"tool": {tool!r}, "args": args, "cwd": os.getcwd()}}) + "\\n")
if {tool!r} == "docker" and args[:2] == ["compose", "--file"]:
    check = subprocess.run([{compose!r}, "-f", args[2], "config", "-q"], capture_output=True, text=True)
    if check.returncode:
        sys.stderr.write(check.stderr)
        sys.exit(check.returncode)
    if args[3:4] == ["port"] and os.environ.get("FAKE_OLLAMA_ADDR"):
        print(os.environ["FAKE_OLLAMA_ADDR"])
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    shutil.copytree(REPO / "examples" / "mixed", root, ignore=shutil.ignore_patterns("generated"))
    subprocess.run([*CLI, "build", "-f", str(root / "vilms.yaml")], check=True, capture_output=True)
    return root


RUN = "support-v1-20261120T091500Z-5c4b3a"


@pytest.fixture
def ollama(project: Path):  # type: ignore[no-untyped-def]
    """The edge deployment's Ollama, answered by a fake that `docker compose port` points at; the
    released run's adapter in artifacts/. Yields the fake and the environment for the stand-ins."""
    gguf = project / layout.run_path(RUN, layout.RUN_ADAPTER_GGUF)
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF-adapter-of-the-released-run")
    with serving(FakeOllamaModels()) as fake:
        yield fake, {"FAKE_OLLAMA_ADDR": f"127.0.0.1:{fake.port}"}


def _tools(tmp_path: Path, names: tuple[str, ...] = ("docker", "helm")) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir(exist_ok=True)
    for tool in names:
        script = bin_dir / tool
        script.write_text(FAKE.format(python=sys.executable, log=str(log), tool=tool, compose=str(compose_binary())))
        script.chmod(0o755)
    return bin_dir, log


def _apply(root: Path, *args: str, path: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PATH": path, **(env or {})}
    return subprocess.run([*CLI, "apply", *args, "-f", str(root / "vilms.yaml")], capture_output=True, text=True,
                          env=environ, stdin=subprocess.DEVNULL, timeout=120)


def _compose_env(root: Path, deployment: str) -> dict[str, str]:
    text = (root / "generated" / deployment / "docker-compose.yaml").read_text()
    return {name: "set-for-test" for name in compose_required_vars(text)}


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_dry_run_prints_one_command_per_target_and_runs_nothing(project, tmp_path):
    bin_dir, log = _tools(tmp_path)
    result = _apply(project, "--dry-run", path=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "$ docker compose --file generated/edge/docker-compose.yaml up --detach --remove-orphans --wait" in out
    assert "$ helm upgrade --install acme-cluster generated/cluster/helm --rollback-on-failure --wait=watcher --timeout 15m" in out
    assert "$ vilms up dev -f vilms.yaml" in out and "vilms down" not in out  # up applies a new build in place
    assert out.count("then: create new or changed derived models on the running Ollama") == 1  # edge only
    assert out.index("cluster (helm)") < out.index("dev (local)") < out.index("edge (compose)")  # sorted
    assert _calls(log) == []


def test_apply_runs_compose_and_helm_in_the_project_folder(project, tmp_path, ollama):
    bin_dir, log = _tools(tmp_path)
    env = {**_compose_env(project, "edge"), **_compose_env(project, "gpu-box"), **ollama[1]}
    for name in ("edge", "cluster"):
        result = _apply(project, name, "--yes", path=f"{bin_dir}:{os.environ['PATH']}", env=env)
        assert result.returncode == 0, result.stderr
    calls = _calls(log)
    assert [c["tool"] for c in calls] == ["docker", "docker", "helm"]
    assert calls[0]["args"] == ["compose", "--file", "generated/edge/docker-compose.yaml", "up", "--detach",
                                "--remove-orphans", "--wait"]
    assert calls[1]["args"] == ["compose", "--file", "generated/edge/docker-compose.yaml", "port", "ollama", "11434"]
    assert calls[2]["args"][:7] == ["upgrade", "--install", "acme-cluster", "generated/cluster/helm",
                                    "--rollback-on-failure", "--wait=watcher", "--timeout"]
    assert {Path(c["cwd"]).resolve() for c in calls} == {project.resolve()}


def test_compose_rejecting_the_environment_fails_the_apply(project, tmp_path):
    bin_dir, _log = _tools(tmp_path)
    required = compose_required_vars((project / "generated" / "edge" / "docker-compose.yaml").read_text())
    assert required, "the edge example references a secret"
    env = {k: v for k, v in os.environ.items() if k not in required}
    result = subprocess.run([*CLI, "apply", "edge", "--yes", "-f", str(project / "vilms.yaml")], capture_output=True,
                            text=True, env={**env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert required[0] in result.stderr  # the preflight names the missing variable, before compose runs
    assert "not applied" in result.stderr and "Traceback" not in result.stderr


def test_stale_generated_is_refused_before_anything_runs(project, tmp_path):
    bin_dir, log = _tools(tmp_path)
    (project / "generated" / "edge" / "docker-compose.yaml").write_text("# edited by hand\n")
    result = _apply(project, "--yes", path=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 4  # the drift code of `build --check`
    assert "generated/edge/docker-compose.yaml" in result.stderr and "vilms build" in result.stderr
    assert _calls(log) == []


def test_without_a_terminal_apply_needs_yes(project, tmp_path):
    bin_dir, log = _tools(tmp_path)
    result = _apply(project, "edge", path=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 2 and "--yes" in result.stderr
    assert _calls(log) == []


def test_unknown_deployment_is_a_usage_error(project, tmp_path):
    bin_dir, _ = _tools(tmp_path)
    result = _apply(project, "nope", "--dry-run", path=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 2 and "no deployment 'nope'" in result.stderr and "cluster, dev, edge" in result.stderr


def test_missing_tool_and_failing_tool_are_clear_errors(project, tmp_path):
    bin_dir, log = _tools(tmp_path, names=("docker",))  # the only program on this PATH: no helm
    result = _apply(project, "cluster", "--yes", path=str(bin_dir))
    assert result.returncode == 1 and "`helm` is not installed" in result.stderr and "Helm 4" in result.stderr
    bin_dir, log = _tools(tmp_path)
    result = _apply(project, "cluster", "--yes", path=f"{bin_dir}:{os.environ['PATH']}", env={"FAKE_EXIT": "3"})
    assert result.returncode == 1 and "exited 3" in result.stderr and "Traceback" not in result.stderr


NEXT_RUN = "support-v1-20261122T101500Z-7d6e5f"


def _without_local_adapter(project: Path) -> None:
    """The mixed example with support-bot served by compose and Helm only (its dev box pulls hf: weights)."""
    path = project / "vilms.yaml"
    path.write_text(path.read_text().replace("target: local, engine: llamacpp, aliases: [chat, support-bot]",
                                             "target: local, engine: llamacpp, aliases: [chat]"))
    subprocess.run([*CLI, "build", "-f", str(path)], check=True, capture_output=True)


def test_rollout_apply_deploys_what_serves_the_adapter(project, tmp_path, ollama):
    _without_local_adapter(project)
    fake, fake_env = ollama
    gguf = project / layout.run_path(NEXT_RUN, layout.RUN_ADAPTER_GGUF)
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF-adapter-of-the-next-run")
    (project / layout.run_path(NEXT_RUN, layout.RUN_ADAPTER)).mkdir()  # what gpu-box's vLLM loads
    bin_dir, log = _tools(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", **_compose_env(project, "edge"),
           **_compose_env(project, "gpu-box"), **fake_env}
    result = subprocess.run([*CLI, "rollout", "support-v1", NEXT_RUN, "--apply", "--yes", "-f", str(project / "vilms.yaml")],
                            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"release: {NEXT_RUN}" in (project / "vilms.yaml").read_text()
    calls = _calls(log)
    assert [(c["tool"], c["args"][2]) for c in calls] == [
        ("helm", "acme-cluster"), ("docker", "generated/edge/docker-compose.yaml"),
        ("docker", "generated/edge/docker-compose.yaml"), ("docker", "generated/gpu-box/docker-compose.yaml")]
    assert "applied 3 deployments" in result.stdout
    assert [c["adapters"] for c in fake.creates] == [{"adapter.gguf": "sha256:" + hashlib.sha256(gguf.read_bytes()).hexdigest()}]


def test_rollout_apply_without_a_terminal_needs_yes_and_changes_nothing(project, tmp_path):
    before = (project / "vilms.yaml").read_bytes()
    bin_dir, log = _tools(tmp_path)
    result = subprocess.run([*CLI, "rollback", "support-v1", "--apply", "-f", str(project / "vilms.yaml")],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode == 2 and "--yes" in result.stderr
    assert (project / "vilms.yaml").read_bytes() == before and _calls(log) == []


def test_a_symlinked_vilms_yaml_applies_the_tree_beside_the_real_file(project, tmp_path, ollama):
    """The compiler writes generated/ beside the real file; apply must deploy that tree, not one beside the link."""
    link_dir = tmp_path / "elsewhere"
    (link_dir / "generated" / "edge").mkdir(parents=True)
    (link_dir / "generated" / "edge" / "docker-compose.yaml").write_text("services: {stale: {image: old}}\n")
    (link_dir / "vilms.yaml").symlink_to(project / "vilms.yaml")
    bin_dir, log = _tools(tmp_path)
    result = _apply(link_dir, "edge", "--yes", path=f"{bin_dir}:{os.environ['PATH']}",
                    env={**_compose_env(project, "edge"), **ollama[1]})
    assert result.returncode == 0, result.stderr
    assert {Path(c["cwd"]).resolve() for c in _calls(log)} == {project.resolve()}
    assert ollama_sync_record(project).exists() and not ollama_sync_record(link_dir).exists()


def ollama_sync_record(root: Path) -> Path:
    return root / layout.RUNNER / "edge" / layout.OLLAMA_RECORD


def test_apply_creates_derived_models_on_the_running_ollama_and_restarts_nothing(project, tmp_path, ollama):
    fake, fake_env = ollama
    bin_dir, log = _tools(tmp_path)
    env = {**_compose_env(project, "edge"), **fake_env}
    first = _apply(project, "edge", "--yes", path=f"{bin_dir}:{os.environ['PATH']}", env=env)
    assert first.returncode == 0, first.stderr
    assert "1 created, 0 unchanged, 0 deleted" in first.stdout
    assert fake.names() == {"qwen2.5-1.5b:latest", "support-bot:latest"}
    assert fake.creates[0]["model"] == "support-bot" and fake.creates[0]["from"] == "qwen2.5-1.5b"
    again = _apply(project, "edge", "--yes", path=f"{bin_dir}:{os.environ['PATH']}", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 created, 1 unchanged, 0 deleted" in again.stdout and len(fake.creates) == 1
    subcommands = [c["args"][3] for c in _calls(log)]
    assert subcommands == ["up", "port", "up", "port"]  # compose converges; no restart, stop or down


def test_ollama_url_skips_the_port_lookup_and_names_one_server(project, tmp_path, ollama):
    fake, _ = ollama
    bin_dir, log = _tools(tmp_path)
    path = f"{bin_dir}:{os.environ['PATH']}"
    result = _apply(project, "edge", "--yes", "--ollama-url", fake.url, path=path, env=_compose_env(project, "edge"))
    assert result.returncode == 0, result.stderr
    assert [c["args"][3] for c in _calls(log)] == ["up"] and "support-bot:latest" in fake.names()
    refused = _apply(project, "cluster", "--dry-run", path=path, env={"VILMS_OLLAMA_URL": fake.url})
    assert refused.returncode == 2 and "--ollama-url names one Ollama server" in refused.stderr


def test_an_unreachable_ollama_fails_the_apply_with_a_hint(project, tmp_path, ollama):
    bin_dir, _log = _tools(tmp_path)
    result = _apply(project, "edge", "--yes", "--ollama-url", f"http://127.0.0.1:{free_port()}",
                    path=f"{bin_dir}:{os.environ['PATH']}", env=_compose_env(project, "edge"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "applying edge: Ollama at" in result.stderr and "docker compose --file generated/edge/docker-compose.yaml up -d" in result.stderr
    assert not ollama_sync_record(project).exists()
