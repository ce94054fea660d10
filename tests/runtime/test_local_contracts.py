"""The local runner's two files as contracts: ``generated/<dep>/local.yaml`` (LocalPlan, written
by the compiler) and ``.vilms/run/<dep>/state.json`` (RunnerState, written by the supervisor).

What the writers produce loads in the readers; hand-broken files give the exact located
message; and `vilms status` / `down` / `up` keep working, and say so, while the state file
cannot be read (corrupt, or written by another ViLMS version).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import pytest

from tests.compiler.minimal import MINIMAL
from tests.conftest import REPO, run_vilms
from vilms.compiler.contracts.codec import from_data, key_of, to_data
from vilms.compiler.contracts.contract import API_VERSION
from vilms.compiler.contracts.local_plan import LOCAL_PLAN, LocalPlan
from vilms.compiler.contracts.registry import all_contracts, contract_for
from vilms.compiler.contracts.runner_state import RUNNER_STATE, RunnerState
from vilms.compiler.errors import InvalidInputError

PLAN = f"""\
apiVersion: {API_VERSION}
kind: LocalPlan
deployment: dev
gateway:
  host: 127.0.0.1
  port: 8080
  routes: dev/gateway/routes.yaml
servers:
- name: llamacpp-tiny
  model_alias: tiny
  model: {{file: models/tiny.gguf, hf: null}}
  context: 256
  threads: 2
  gpu_layers: 0
  parallel: 1
  lora: []
  host: 127.0.0.1
  port: 8101
- name: llamacpp-qwen2.5-1.5b
  model_alias: qwen2.5-1.5b
  model:
    file: null
    hf: {{repo: Qwen/Qwen2.5-1.5B-Instruct-GGUF, file_glob: '*q4_k_m*.gguf'}}
  context: 8192
  threads: 2
  gpu_layers: 0
  parallel: 1
  lora: [{{adapter: support-v1, file: artifacts/support-v1-20261120T091500Z-5c4b3a/gguf/adapter.gguf}}, {{adapter: faq-v2, file: artifacts/faq-v2-20261121T080000Z-0a0b0c/gguf/adapter.gguf}}]
  host: 127.0.0.1
  port: 8102
"""

STATE = {
    "apiVersion": API_VERSION,
    "kind": "RunnerState",
    "status": "running",
    "deployment": "dev",
    "project": "/srv/acme/vilms.yaml",
    "plan_sha256": "ab" * 32,
    "routes_sha256": "cd" * 32,
    "started_at": "2026-11-30T10:55:39Z",
    "gateway_url": "http://127.0.0.1:8080",
    "logs": "/srv/acme/.vilms/run/dev/logs",
    "supervisor": {"pid": 4242, "ticks": 123456},
    "processes": [
        {"name": "llamacpp-tiny", "kind": "llamacpp", "host": "127.0.0.1", "port": 8101, "url": "http://127.0.0.1:8101",
         "health_url": "http://127.0.0.1:8101/v1/models", "pid": 4243, "ticks": 123460, "state": "running",
         "restarts": 0, "started_at": "2026-11-30T10:55:39Z", "last_exit": None, "exit_reason": None,
         "log": "/srv/acme/.vilms/run/dev/logs/llamacpp-tiny.log"},
        {"name": "gateway", "kind": "gateway", "host": "127.0.0.1", "port": 8080, "url": "http://127.0.0.1:8080",
         "health_url": "http://127.0.0.1:8080/readyz", "pid": None, "ticks": None, "state": "restarting",
         "restarts": 1, "started_at": "2026-11-30T10:55:40Z", "last_exit": -9, "exit_reason": "exited with signal SIGKILL",
         "log": "/srv/acme/.vilms/run/dev/logs/gateway.log"},
    ],
    "error": None,
}
STATE_FILE = "/p/.vilms/run/dev/state.json"


def state_text(**changes: object) -> str:
    """STATE as the supervisor writes it (sorted keys, 2-space indent), with top-level ``changes``."""
    return json.dumps({**STATE, **changes}, indent=2, sort_keys=True) + "\n"


def plan_error(text: str) -> str:
    with pytest.raises(InvalidInputError) as err:
        LOCAL_PLAN.parse(text.encode(), "generated/dev/local.yaml")
    assert err.value.message.startswith("invalid LocalPlan file")
    return err.value.render()


def state_error(text: str) -> str:
    with pytest.raises(InvalidInputError) as err:
        RUNNER_STATE.parse(text.encode(), STATE_FILE)
    assert err.value.message.startswith("invalid RunnerState file")
    return err.value.render()


# -- LocalPlan ---------------------------------------------------------------------------

def test_the_committed_local_plan_loads_in_the_runner():
    path = REPO / "generated" / "dev" / "local.yaml"
    assert contract_for("dev/local.yaml") is LOCAL_PLAN
    plan = LOCAL_PLAN.load(path)
    assert plan.deployment == "dev" and plan.gateway.routes == "dev/gateway/routes.yaml"
    (server,) = plan.servers
    assert server.model.file is None and server.model.hf is not None
    assert server.model.hf.repo == "Qwen/Qwen2.5-1.5B-Instruct-GGUF" and server.port == 8101 and server.lora == ()


def test_a_plan_round_trips_through_its_contract():
    plan = LOCAL_PLAN.parse(PLAN.encode(), "local.yaml")
    tiny, bot = plan.servers
    assert tiny.model.file == "models/tiny.gguf" and tiny.model.hf is None
    assert bot.model.hf is not None and bot.model.hf.file_glob == "*q4_k_m*.gguf"
    assert [(lora.adapter, lora.file) for lora in bot.lora] == [
        ("support-v1", "artifacts/support-v1-20261120T091500Z-5c4b3a/gguf/adapter.gguf"),
        ("faq-v2", "artifacts/faq-v2-20261121T080000Z-0a0b0c/gguf/adapter.gguf")]
    assert LOCAL_PLAN.parse(LOCAL_PLAN.dump(plan), "again.yaml") == plan


def test_an_adapter_name_is_used_once_per_server():
    text = PLAN.replace("adapter: faq-v2", "adapter: support-v1")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:28:113: servers[1].lora[1].adapter: name 'support-v1' is already used by lora 0")
    text = PLAN.replace("adapter: faq-v2", "adapter: qwen2.5-1.5b")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:28:113: servers[1].lora[1].adapter: name 'qwen2.5-1.5b' is already used by the model alias")


def test_the_renderer_writes_the_release_path_from_the_layout(tmp_path):
    from vilms.compiler.pipeline import compile_files

    file = tmp_path / "vilms.yaml"
    file.write_text(MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    release: support-v1-20261120T091500Z-5c4b3a\n"))
    files = compile_files(file)[2]
    plan = LOCAL_PLAN.parse(files["dev/local.yaml"], "dev/local.yaml")
    (server,) = plan.servers  # one server per base model; its released adapters ride along
    assert server.model_alias == "qwen2.5-1.5b"
    assert [(lora.adapter, lora.file) for lora in server.lora] == [
        ("support-v1", "artifacts/support-v1-20261120T091500Z-5c4b3a/gguf/adapter.gguf")]


def test_a_base_models_released_adapters_share_its_server_each_in_its_slot(tmp_path):
    from vilms.compiler.contracts.routes import ROUTES
    from vilms.compiler.pipeline import compile_files

    faq = """  faq-v1:
    base: qwen2.5-1.5b
    dataset: support
    method: lora
    lora: {r: 8}
    hardware: gpu1
    release: faq-v1-20261121T080000Z-0a0b0c
  draft-v1:
    base: qwen2.5-1.5b
    dataset: support
    method: lora
    lora: {r: 8}
    hardware: gpu1
aliases:
  faq-bot: {model: qwen2.5-1.5b, adapter: faq-v1}
  faq-terse: {model: qwen2.5-1.5b, adapter: faq-v1, system: Be terse.}
  draft-bot: {model: qwen2.5-1.5b, adapter: draft-v1, fallbacks: [chat]}
"""
    text = MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    release: support-v1-20261120T091500Z-5c4b3a\n")
    file = tmp_path / "vilms.yaml"
    file.write_text(text.replace("aliases:\n", faq))
    files = compile_files(file)[2]
    (server,) = LOCAL_PLAN.parse(files["dev/local.yaml"], "dev/local.yaml").servers
    assert [(lora.adapter, lora.file.split("/")[1]) for lora in server.lora] == [
        ("faq-v1", "faq-v1-20261121T080000Z-0a0b0c"), ("support-v1", "support-v1-20261120T091500Z-5c4b3a")]
    routes = ROUTES.parse(files["dev/gateway/routes.yaml"], "routes.yaml")
    assert list(routes.backends) == ["llamacpp-qwen2.5-1.5b"]
    assert routes.backends["llamacpp-qwen2.5-1.5b"].endpoints == (f"http://127.0.0.1:{server.port}",)
    picked = {name: (r.backend, r.model, r.adapter.slot if r.adapter else None) for name, r in routes.aliases.items()}
    assert picked == {
        "chat": ("llamacpp-qwen2.5-1.5b", "qwen2.5-1.5b", None),
        "draft-bot": ("llamacpp-qwen2.5-1.5b", "draft-v1", None),  # not released: not loaded, no slot
        "faq-bot": ("llamacpp-qwen2.5-1.5b", "faq-v1", 0),
        "faq-terse": ("llamacpp-qwen2.5-1.5b", "faq-v1", 0),  # two aliases, one adapter, one slot
        "support-bot": ("llamacpp-qwen2.5-1.5b", "support-v1", 1),
    }


def test_an_unknown_key_is_located():
    text = PLAN.replace("  parallel: 1\n  lora: []\n", "  parallel: 1\n  colour: red\n  lora: []\n")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:16:3: servers[0].colour: unknown key 'colour' (did you mean 'lora'?)")


def test_a_wrong_type_is_located():
    assert plan_error(PLAN.replace("  threads: 2\n", "  threads: two\n", 1)).splitlines()[0] == (
        "generated/dev/local.yaml:13:12: servers[0].threads: must be an integer, not a string")


def test_a_duplicate_port_is_located_at_the_second_use():
    text = PLAN.replace("port: 8102", "port: 8101")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:30:9: servers[1].port: port 8101 is already used by servers[0]")
    text = PLAN.replace("port: 8101", "port: 8080")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:18:9: servers[0].port: port 8080 is already used by gateway")


def test_a_duplicate_process_name_is_located():
    text = PLAN.replace("name: llamacpp-qwen2.5-1.5b", "name: llamacpp-tiny")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:19:9: servers[1].name: process name 'llamacpp-tiny' is already used by servers[0]")
    text = PLAN.replace("name: llamacpp-tiny", "name: gateway")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:9:9: servers[0].name: process name 'gateway' is already used by gateway")


def test_weights_are_a_file_or_a_repo_never_both():
    text = PLAN.replace("    file: null\n", "    file: models/other.gguf\n")
    assert plan_error(text).splitlines()[0] == (
        "generated/dev/local.yaml:22:5: servers[1].model: give exactly one of file and hf; got both")
    text = PLAN.replace("routes: dev/gateway/routes.yaml", "routes: ../../etc/passwd")
    assert plan_error(text).splitlines()[0] == "generated/dev/local.yaml:7:11: gateway.routes: '../../etc/passwd' is not a valid routes"


def test_a_plan_of_another_version_says_rebuild():
    with pytest.raises(InvalidInputError) as err:
        LOCAL_PLAN.parse(PLAN.replace(f"apiVersion: {API_VERSION}", "apiVersion: vilms/v1").encode(), "generated/dev/local.yaml")
    assert err.value.render() == (
        "generated/dev/local.yaml:1:13: apiVersion: written by another ViLMS version (apiVersion 'vilms/v1'); "
        f"this ViLMS reads {API_VERSION}\n"
        "invalid LocalPlan file: 1 problem found\n"
        "  hint: run `vilms build` with this version of ViLMS")


# -- RunnerState -------------------------------------------------------------------------

def test_a_state_file_loads_with_typed_attributes():
    state = RUNNER_STATE.parse(state_text().encode(), STATE_FILE)
    assert state.supervisor.pid == 4242 and state.supervisor.ticks == 123456
    tiny, gateway = state.processes
    assert (tiny.name, tiny.pid, tiny.state) == ("llamacpp-tiny", 4243, "running")
    assert gateway.pid is None and gateway.last_exit == -9
    assert RUNNER_STATE.dump(state).decode() == state_text()  # what the supervisor writes, byte for byte


def test_the_supervisor_writes_a_state_file_its_readers_load(tmp_path):
    """A real supervisor, a real child (a tiny HTTP server), the real state.json."""
    from vilms.compiler.contracts.local_plan import LocalGateway, Server, Weights
    from vilms.runtime.local.launch import Launch
    from vilms.runtime.local.plan import plan_sha256
    from vilms.runtime.local.state import RunDir
    from vilms.runtime.local.supervisor import Supervisor

    port = _free_port()
    script = tmp_path / "serve.py"
    script.write_text("import http.server, sys\n"
                      "class H(http.server.BaseHTTPRequestHandler):\n"
                      "    def do_GET(self): self.send_response(200); self.end_headers()\n"
                      "    def log_message(self, *a): pass\n"
                      "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")
    launch = Launch("llamacpp-tiny", "llamacpp", (sys.executable, str(script), str(port)), "127.0.0.1", port, "/")
    plan = LocalPlan("dev", (Server("llamacpp-tiny", "tiny", Weights("m.gguf", None), 256, 1, 0, 1, (), "127.0.0.1", port),),
                     LocalGateway("127.0.0.1", _free_port(), "dev/gateway/routes.yaml"))
    run_dir = RunDir(tmp_path / ".vilms" / "run" / "dev")
    supervisor = Supervisor(plan, [launch], run_dir, tmp_path / "vilms.yaml", start_timeout_s=10)
    seen: list[RunnerState] = []

    def ready(state: RunnerState) -> None:
        seen.append(RUNNER_STATE.load(run_dir.state_file))  # what every reader does
        supervisor.stopping = True

    assert supervisor.run(ready) == 0  # signal handlers: the main thread
    (state,) = seen
    assert state.status == "running" and state.deployment == "dev" and state.plan_sha256 == plan_sha256(plan)
    assert state.supervisor.pid == os.getpid() and state.error is None and state.gateway_url is None
    (child,) = state.processes
    assert child.state == "running" and child.pid and child.port == port and child.log == str(run_dir.log("llamacpp-tiny"))
    assert not run_dir.state_file.exists()  # an orderly stop removes it


def test_a_new_build_restarts_only_the_processes_whose_command_line_changed(tmp_path):
    """SIGUSR1 (what `vilms up` sends for a newer local.yaml): a changed process restarts, a new
    one starts, a removed one stops, an unchanged one keeps its pid."""
    import threading

    from vilms.compiler.contracts.local_plan import LocalGateway, Server, Weights
    from vilms.runtime.local.launch import Launch
    from vilms.runtime.local.plan import plan_sha256
    from vilms.runtime.local.processes import alive
    from vilms.runtime.local.state import RunDir
    from vilms.runtime.local.supervisor import RELOAD_SIGNAL, Supervisor

    script = tmp_path / "serve.py"
    script.write_text("import http.server, sys\n"
                      "class H(http.server.BaseHTTPRequestHandler):\n"
                      "    def do_GET(self): self.send_response(200); self.end_headers()\n"
                      "    def log_message(self, *a): pass\n"
                      "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n")

    def launch(name: str, *extra: str) -> Launch:
        port = ports[name]
        return Launch(name, "llamacpp", (sys.executable, str(script), str(port), *extra), "127.0.0.1", port, "/")

    def plan_of(*names: str) -> LocalPlan:
        return LocalPlan("dev", tuple(Server(n, n, Weights("m.gguf", None), 256, 1, 0, 1, (), "127.0.0.1", ports[n])
                                      for n in names), LocalGateway("127.0.0.1", _free_port(), "dev/gateway/routes.yaml"))

    ports = {name: _free_port() for name in ("kept", "changed", "gone", "new")}
    old, new = plan_of("kept", "changed", "gone"), plan_of("kept", "changed", "new")
    run_dir = RunDir(tmp_path / ".vilms" / "run" / "dev")
    supervisor = Supervisor(old, [launch("kept"), launch("changed"), launch("gone")], run_dir, tmp_path / "vilms.yaml",
                            start_timeout_s=10, reload=lambda: (new, [launch("kept"), launch("changed", "-v"), launch("new")]))
    seen: list[RunnerState] = []

    def watch() -> None:  # until the supervisor serves the new build
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = RUNNER_STATE.load(run_dir.state_file)
            if state.plan_sha256 == plan_sha256(new) and all(p.state == "running" for p in state.processes):
                seen.append(state)
                break
            time.sleep(0.05)
        supervisor.stopping = True

    def ready(state: RunnerState) -> None:
        seen.append(state)
        os.kill(os.getpid(), RELOAD_SIGNAL)
        threading.Thread(target=watch, daemon=True).start()

    assert supervisor.run(ready) == 0
    before, after = ({p.name: p.pid for p in state.processes} for state in seen)
    assert list(after) == ["kept", "changed", "new"]
    assert after["kept"] == before["kept"] and after["changed"] != before["changed"]
    assert not alive(before["gone"]) and not alive(before["changed"])
    assert "stopped for a new build (exit signal SIGTERM)" in run_dir.log("changed").read_text()
    assert "stopped for a new build" not in run_dir.log("kept").read_text()


def test_an_unknown_key_in_state_is_located():
    text = state_text(supervisor={"pid": 4242, "ticks": 123456, "user": "root"})
    assert state_error(text).splitlines()[0] == f"{STATE_FILE}:50:5: supervisor.user: unknown key 'user'"


def test_a_wrong_type_in_state_is_located():
    processes = [dict(STATE["processes"][0], restarts="0"), STATE["processes"][1]]  # type: ignore[index]
    assert state_error(state_text(processes=processes)).splitlines()[0] == (
        f"{STATE_FILE}:20:19: processes[0].restarts: must be an integer, not a string")


def test_a_duplicate_port_in_state_is_located():
    processes = [STATE["processes"][0], dict(STATE["processes"][1], port=8101)]  # type: ignore[index]
    assert state_error(state_text(processes=processes)).splitlines()[0] == (
        f"{STATE_FILE}:35:15: processes[1].port: port 8101 is already used by processes[0]")


def test_state_rules_between_fields():
    assert state_error(state_text(status="failed")).splitlines()[0] == f"{STATE_FILE}:4:12: error: a failed start says why; got null"
    processes = [dict(STATE["processes"][0], state="stopped"), STATE["processes"][1]]  # type: ignore[index]
    assert state_error(state_text(processes=processes)).splitlines()[0] == (
        f"{STATE_FILE}:18:14: processes[0].pid: a stopped process has no pid; got 4243")


def test_a_state_file_of_another_version_says_so():
    text = state_text(apiVersion="contracts.vilms.dev/v0")
    assert state_error(text) == (
        f"{STATE_FILE}:2:17: apiVersion: written by another ViLMS version (apiVersion 'contracts.vilms.dev/v0'); "
        f"this ViLMS reads {API_VERSION}\n"
        "invalid RunnerState file: 1 problem found\n"
        "  hint: stop the deployment (`vilms down`) and start it again (`vilms up`) with this version of ViLMS")


def test_a_truncated_state_file_is_located():
    assert state_error(state_text()[:200]).splitlines()[0].startswith(f"{STATE_FILE}:8:7: ")


def test_every_key_of_the_dataclasses_is_in_the_schema_and_required():
    """The writer writes every key, the reader keeps no defaults: the dataclass tree and the
    schema name the same keys, all required."""
    for contract in all_contracts():
        if contract not in (LOCAL_PLAN, RUNNER_STATE):
            continue
        top = dict(contract.schema, properties={k: v for k, v in contract.schema["properties"].items()
                                                if k not in ("apiVersion", "kind")})
        _agree(contract.root, top, contract.schema, contract.kind)


def _agree(kind: typing.Any, node: dict, schema: dict, where: str) -> None:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        keys = {key_of(f): f for f in dataclasses.fields(kind)}
        props = node["properties"]
        assert set(props) == set(keys), (where, set(props) ^ set(keys))
        assert node["additionalProperties"] is False and set(node["required"]) >= set(keys), where
        for key, f in keys.items():
            _agree(hints[f.name], props[key], schema, f"{where}.{key}")
    elif origin is tuple:
        _agree(args[0], node["items"], schema, f"{where}[]")


# -- the commands, while the state file cannot be read ------------------------------------

@pytest.fixture
def built(tmp_path) -> Path:
    (tmp_path / "vilms.yaml").write_text(MINIMAL)
    assert run_vilms("build", cwd=tmp_path).code == 0
    return tmp_path


def _run_dir(root: Path) -> Path:
    path = root / ".vilms" / "run" / "dev"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _assert_clean(result) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err


def test_status_with_a_corrupt_state_file_and_no_supervisor_says_so_and_cleans_it(built):
    state = _run_dir(built) / "state.json"
    state.write_text('{"status": "running", "processes": [')
    result = run_vilms("status", cwd=built)
    _assert_clean(result)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == "deployment dev: stopped (its supervisor had died; stale state cleaned)"
    assert lines[1] == "its state file could not be read, and was removed:"
    assert lines[2].startswith(f"  {state}:2:1: ") and "syntax error" in lines[2]
    assert "llamacpp-qwen2.5-1.5b  stopped" in result.out  # the planned processes, as before
    assert not state.exists()
    assert run_vilms("status", cwd=built).out.splitlines()[0] == "deployment dev: stopped"


def test_down_with_a_state_file_of_another_version_and_no_supervisor(built):
    state = _run_dir(built) / "state.json"
    state.write_text(state_text(apiVersion="contracts.vilms.dev/v0"))
    result = run_vilms("down", cwd=built)
    _assert_clean(result)
    assert result.code == 0
    assert result.out.splitlines()[0] == "deployment dev is not running; cleaned the stale state its dead supervisor left"
    assert "written by another ViLMS version (apiVersion 'contracts.vilms.dev/v0')" in result.out
    assert not state.exists()


HOLDS_THE_LOCK = """\
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0); os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def foreign_supervisor(built):
    """A process holding the run's lock, as a supervisor of another ViLMS version would,
    beside a state file this version cannot read."""
    run_dir = _run_dir(built)
    proc = subprocess.Popen([sys.executable, "-c", HOLDS_THE_LOCK, str(run_dir / "lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    (run_dir / "state.json").write_text(state_text(apiVersion="contracts.vilms.dev/v0"))
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_status_of_a_supervised_deployment_with_an_unreadable_state_file(built, foreign_supervisor):
    result = run_vilms("status", cwd=built)
    _assert_clean(result)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == f"deployment dev: unknown, NOT healthy (supervisor pid {foreign_supervisor.pid})"
    assert lines[1] == "its state file cannot be read (`vilms down dev` still stops it):"
    assert "apiVersion: written by another ViLMS version (apiVersion 'contracts.vilms.dev/v0')" in lines[2]
    report = json.loads(run_vilms("status", "--format", "json", cwd=built).out)
    assert report["status"] == "unknown" and report["supervisor_pid"] == foreign_supervisor.pid
    assert "another ViLMS version" in report["state_file_problem"] and report["healthy"] is False
    assert (built / ".vilms" / "run" / "dev" / "state.json").exists()  # it may be running: nothing removed


def test_up_refuses_to_join_a_supervisor_whose_state_it_cannot_read(built, foreign_supervisor):
    result = run_vilms("up", cwd=built, env={"VILMS_API_KEYS": "k"})
    _assert_clean(result)
    assert result.code == 1
    assert "deployment dev is supervised, but its state file cannot be read:" in result.err
    assert "written by another ViLMS version" in result.err and "`vilms down dev`" in result.err
    assert foreign_supervisor.poll() is None


def test_down_stops_a_supervisor_whose_state_it_cannot_read(built, foreign_supervisor):
    result = run_vilms("down", "--timeout", "10", cwd=built)
    _assert_clean(result)
    assert result.code == 0
    assert result.out.splitlines()[0] == "stopped deployment dev"
    assert "written by another ViLMS version" in result.out
    assert foreign_supervisor.wait(timeout=10) == -signal.SIGTERM
    assert not (built / ".vilms" / "run" / "dev" / "state.json").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_codec_and_the_contract_agree_on_a_full_state():
    state = from_data(RunnerState, {k: v for k, v in STATE.items() if k not in ("apiVersion", "kind")})
    assert to_data(state) == {k: v for k, v in STATE.items() if k not in ("apiVersion", "kind")}
