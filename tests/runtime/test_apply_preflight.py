"""`vilms apply` checks every deployment before touching any, reports partial applies, passes
Helm 4's rollback-on-failure, wait, kube context and namespace; `vilms rollout` refuses a run
lacking what an engine needs; `vilms status` of compose and Helm deployments.

No Docker engine or cluster: `docker` and `helm` are stand-ins first on PATH that record their
argv. The `helm` stand-in keeps the release's description as Helm does and answers
`helm status -o json` in Helm's shape; `docker compose ps --format json` answers one JSON object
per line, as Compose v2.21+.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vilms.compiler import layout
from vilms.runtime.deployed import manifest_sha256
from vilms.runtime.preflight import required_vars

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "vilms"]
RUN = "support-v1-20261120T091500Z-5c4b3a"
NEXT_RUN = "support-v1-20261122T101500Z-7d6e5f"

FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
state = {state!r}
with open({log!r}, "a") as log:
    log.write(json.dumps({{"tool": {tool!r}, "args": args}}) + "\\n")
if {tool!r} == "helm" and args[:1] == ["upgrade"]:
    with open(state, "w") as f:
        f.write(args[args.index("--description") + 1])
if {tool!r} == "helm" and args[:1] == ["status"]:
    if not os.path.exists(state):
        sys.stderr.write("Error: release: not found\\n")
        sys.exit(1)
    desc = open(state).read()
    print(json.dumps({{"name": args[1], "namespace": "llm", "version": 3, "config": {{}},
                      "info": {{"first_deployed": "2026-12-01T10:00:00Z", "last_deployed": "2026-12-01T11:00:00Z",
                               "deleted": "", "description": desc, "status": "deployed", "notes": ""}}}}))
if {tool!r} == "docker" and "ps" in args:
    for svc in ("gateway", "ollama"):
        print(json.dumps({{"Name": "acme-edge-" + svc + "-1", "Service": svc, "State": "running",
                          "Health": "healthy", "Status": "Up 2 minutes (healthy)", "Project": "acme-edge"}}))
fail = os.environ.get("FAKE_FAIL_ON", "")
if fail and fail in " ".join(args):
    sys.stderr.write("simulated failure\\n")
    sys.exit(3)
"""


def _tools(tmp_path: Path) -> tuple[str, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("docker", "helm"):
        script = bin_dir / tool
        script.write_text(FAKE.format(python=sys.executable, log=str(log), tool=tool, state=str(tmp_path / "helm-release")))
        script.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}", log


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _edit(root: Path, old: str, new: str) -> None:
    path = root / "vilms.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    subprocess.run([*CLI, "build", "-f", str(path)], check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    shutil.copytree(REPO / "examples" / "mixed", root, ignore=shutil.ignore_patterns("generated"))
    subprocess.run([*CLI, "build", "-f", str(root / "vilms.yaml")], check=True, capture_output=True)
    gguf = root / layout.run_path(RUN, layout.RUN_ADAPTER_GGUF)
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF-adapter")
    (root / layout.run_path(RUN, layout.RUN_ADAPTER)).mkdir()
    return root


def _run(root: Path, *args: str, path: str, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()):
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    environ.update({"PATH": path, **(env or {})})
    return subprocess.run([*CLI, *args, "-f", str(root / "vilms.yaml")], capture_output=True, text=True, env=environ,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_an_unset_key_refuses_every_deployment_before_any_is_touched(project, tmp_path):
    """dev (local) needs VILMS_API_KEYS and its model: the whole apply is refused, every problem
    listed, and neither compose, Helm nor `vilms up`/`down` of dev runs (a running dev stays up)."""
    path, log = _tools(tmp_path)
    (project / layout.run_path(RUN, layout.RUN_ADAPTER_GGUF)).unlink()
    result = _run(project, "apply", "--yes", path=path, drop=("VILMS_API_KEYS",), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    err = result.stderr
    assert "no deployment was started, stopped or changed" in err
    assert "dev: its gateway reads VILMS_API_KEYS" in err and "edge: its compose file reads ${VILMS_API_KEYS}" in err
    assert "gpu-box: its compose file reads ${VILMS_API_KEYS}" in err
    assert f"vilms export {RUN} --gguf" in err  # edge's Ollama and dev's llama.cpp need the GGUF
    assert "dev (local)" in result.stdout and _calls(log) == []
    assert not (project / layout.RUNNER / "dev").exists()  # `vilms up dev` never ran


def test_a_missing_tool_is_found_before_other_deployments_run(project, tmp_path):
    path, log = _tools(tmp_path)
    (tmp_path / "bin" / "helm").unlink()
    result = _run(project, "apply", "--yes", path=str(tmp_path / "bin"), env={"VILMS_API_KEYS": "k"})
    assert result.returncode == 1 and "cluster: `helm` is not installed" in result.stderr and "Helm 4" in result.stderr
    assert _calls(log) == []


def test_one_failure_reports_applied_failed_skipped_and_names_only_the_failed(project, tmp_path):
    _edit(project, "  dev: {hardware: laptop, target: local, engine: llamacpp, aliases: [chat, support-bot]}\n", "")
    path, log = _tools(tmp_path)
    env = {"VILMS_API_KEYS": "k", "FAKE_FAIL_ON": "generated/edge/docker-compose.yaml up"}
    result = _run(project, "apply", "--yes", path=path, env=env)
    assert result.returncode == 1, result.stderr
    assert "summary:\n  cluster: applied\n  edge: FAILED\n  gpu-box: skipped" in result.stdout
    hint = result.stderr.split("hint:")[-1]
    assert "`vilms apply edge`" in hint and "cluster" not in hint and "gpu-box" not in hint
    assert "`vilms apply` again" not in result.stderr
    assert [c["tool"] for c in _calls(log)] == ["helm", "docker"]  # gpu-box never ran
    as_json = _run(project, "apply", "--yes", "--format", "json", path=path, env=env)
    assert json.loads(as_json.stdout) == {"applied": ["cluster"], "failed": ["edge"], "skipped": ["gpu-box"]}


def test_helm_gets_rollback_on_failure_wait_context_namespace_and_the_manifest(project, tmp_path):
    _edit(project, "cluster: {hardware: a100, target: helm,", "cluster: {kube_context: prod-eu, namespace: llm, hardware: a100, target: helm,")
    path, log = _tools(tmp_path)
    result = _run(project, "apply", "cluster", "--yes", path=path)
    assert result.returncode == 0, result.stderr
    [call] = _calls(log)
    sha = manifest_sha256(project, "cluster")
    assert call["args"] == ["upgrade", "--install", "acme-cluster", "generated/cluster/helm", "--kube-context", "prod-eu",
                            "--namespace", "llm", "--create-namespace", "--rollback-on-failure", "--wait=watcher",
                            "--timeout", "15m", "--description", f"vilms manifest sha256:{sha}"]
    status = _run(project, "status", "cluster", "--format", "json", path=path)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["expected_manifest"] == report["engine_manifest"] == sha and report["current"] is True
    assert _calls(log)[-1]["args"] == ["status", "acme-cluster", "--kube-context", "prod-eu", "--namespace", "llm", "-o", "json"]
    _edit(project, "replicas: 2", "replicas: 3")  # git now says something else should run
    text = _run(project, "status", "cluster", path=path)
    assert text.returncode == 1 and "differs: run `vilms apply cluster`" in text.stdout
    assert f"sha256:{manifest_sha256(project, 'cluster')[:12]}" in text.stdout and f"sha256:{sha[:12]}" in text.stdout


def test_status_without_the_cli_or_release_says_unknown(project, tmp_path):
    result = _run(project, "status", "cluster", path="/nonexistent")
    assert result.returncode == 1 and "unknown: helm not installed" in result.stdout
    path, _log = _tools(tmp_path)
    result = _run(project, "status", "cluster", path=path)
    assert result.returncode == 1 and "unknown: helm status said: Error: release: not found" in result.stdout


def test_compose_status_reads_ps_json(project, tmp_path):
    path, log = _tools(tmp_path)
    result = _run(project, "status", "edge", "--format", "json", path=path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "2/2 services running" and report["expected_manifest"] == manifest_sha256(project, "edge")
    assert [s["service"] for s in report["services"]] == ["gateway", "ollama"]
    assert _calls(log)[0]["args"] == ["compose", "--file", "generated/edge/docker-compose.yaml", "ps", "--all", "--format", "json"]


def test_rollout_apply_of_a_run_without_its_gguf_is_refused_before_anything_changes(project, tmp_path):
    path, log = _tools(tmp_path)
    (project / layout.run_path(NEXT_RUN, layout.RUN_ADAPTER)).mkdir(parents=True)  # PEFT adapter, no GGUF
    before = (project / "vilms.yaml").read_bytes()
    history = project / ".vilms" / "releases" / "support-v1.jsonl"
    history_before = history.read_bytes() if history.exists() else None
    generated = {p: p.read_bytes() for p in (project / "generated").rglob("*") if p.is_file()}
    result = _run(project, "rollout", "support-v1", NEXT_RUN, "--apply", "--yes", "--skip-registry", path=path,
                  env={"VILMS_API_KEYS": "k"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"not released: {NEXT_RUN}" in result.stderr and f"vilms export {NEXT_RUN} --gguf" in result.stderr
    assert "dev:" in result.stderr and "edge:" in result.stderr
    assert (project / "vilms.yaml").read_bytes() == before
    assert (history.read_bytes() if history.exists() else None) == history_before
    assert {p: p.read_bytes() for p in (project / "generated").rglob("*") if p.is_file()} == generated
    assert _calls(log) == []


@given(st.lists(st.tuples(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                          st.sampled_from(["", ":-x", "-x", ":+x", "+x", ":?msg", "?msg"])), max_size=6))
def test_required_vars_are_those_without_a_default(refs):
    text = "services:\n" + "".join(f"  a{i}: {{image: '${{{name}{op}}}', c: '$${{{name}}}'}}\n"
                                   for i, (name, op) in enumerate(refs))
    want = sorted({name for name, op in refs if op in ("", ":?msg", "?msg")})
    assert required_vars(text) == want
