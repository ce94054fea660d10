"""Every generated docker-compose.yaml passes the real Docker Compose v2 binary and the compose-spec schema,
and is what an operator would write by hand (healthchecks, conditions, limits, GPUs, secrets)."""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePosixPath

import pytest

from tests.support.projects import artefacts, compiled_in_memory
from tests.support.validators import (
    compose_config_errors,
    compose_required_vars,
    compose_resolved,
    compose_schema_errors,
    load_yaml,
)
from vilms.compiler.modelfile_syntax import parse

COMPOSE = artefacts(lambda rel: rel.endswith("/docker-compose.yaml"))
IDS = [f"{p}:{r}" for p, r in COMPOSE]


def _data(project: str, rel: str) -> dict:
    return load_yaml(compiled_in_memory(project)[rel])


def test_fixture_set_covers_every_compose_flavour():
    kinds = set()
    for project, rel in COMPOSE:
        data = _data(project, rel)
        engines = {"ollama" if "ollama" in s else "vllm" if s.startswith("vllm") else s for s in data["services"]}
        runtimes = {s.get("runtime") for s in data["services"].values()}
        gpu = any("reservations" in s.get("deploy", {}).get("resources", {}) for s in data["services"].values())
        kinds.add(("ollama" in engines, "vllm" in engines, "nvidia" in runtimes, gpu))
    assert (True, False, True, False) in kinds  # Jetson + Ollama
    assert (False, True, False, True) in kinds  # GPU + vLLM
    assert (True, False, False, False) in kinds  # CPU + Ollama


@pytest.mark.parametrize(("project", "rel"), COMPOSE, ids=IDS)
def test_docker_compose_config_accepts(project, rel, generated_tree):
    path = generated_tree(project) / rel
    assert compose_config_errors(path) == []


@pytest.mark.parametrize(("project", "rel"), COMPOSE, ids=IDS)
def test_compose_spec_schema_accepts(project, rel):
    assert compose_schema_errors(_data(project, rel)) == []


@pytest.mark.parametrize(("project", "rel"), COMPOSE, ids=IDS)
def test_required_secrets_fail_loudly_when_unset(project, rel, generated_tree):
    """Secrets are only ${NAME:?message}: compose refuses to start without them."""
    path = generated_tree(project) / rel
    text = path.read_text()
    required = re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*):\?", text)
    for name in required:
        env = {v: "x" for v in compose_required_vars(text) if v != name}
        errors = compose_config_errors(path, env)
        assert errors and name in errors[0], f"{name} unset must be an error"


@pytest.mark.parametrize(("project", "rel"), COMPOSE, ids=IDS)
def test_compose_is_what_an_expert_writes(project, rel, generated_tree):
    data = _data(project, rel)
    resolved = compose_resolved(generated_tree(project) / rel)
    services = data["services"]
    assert "gateway" in services
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "no"), name
        if service["restart"] == "no":
            continue  # one-shot init
        assert "healthcheck" in service, name
        limits = service["deploy"]["resources"]["limits"]
        assert "memory" in limits, name
        for port in resolved["services"][name].get("ports", []):
            assert port.get("host_ip") in ("127.0.0.1", None), port
    # depends_on with conditions: the gateway starts only once engines are ready
    gw = services["gateway"]
    assert gw["depends_on"] and all("condition" in c for c in gw["depends_on"].values())
    # named volumes for caches, declared at the top level
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in data.get("volumes", {}), source
    # environment values never carry a literal secret
    for service in services.values():
        for key, value in service.get("environment", {}).items():
            if any(word in key for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
                assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*(:\?[^}]*|:-)\}", value), (key, value)


@pytest.mark.parametrize(("project", "rel"), COMPOSE, ids=IDS)
def test_accelerators(project, rel):
    """GPU hosts reserve devices (driver nvidia); Jetson uses runtime nvidia with an L4T image."""
    from vilms.compiler.images import JETPACK_L4T

    data = _data(project, rel)
    routes = load_yaml(compiled_in_memory(project)[rel.replace("docker-compose.yaml", "gateway/routes.yaml")])
    kind = routes["hardware"]["kind"]
    engines = {n: s for n, s in data["services"].items() if n != "gateway" and s.get("restart") != "no"}
    assert engines
    for name, service in engines.items():
        reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
        if kind == "gpu":
            [device] = reservations["devices"]
            pinned = name.startswith("vllm")  # each vLLM engine on GPUs of its own; Ollama takes the host's
            assert set(device) == {"driver", "capabilities", "device_ids" if pinned else "count"}
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
            assert "runtime" not in service
        elif kind == "jetson":
            assert service["runtime"] == "nvidia", name
            tag = service["image"].rsplit(":", 1)[1]
            assert any(l4t in tag for l4t in JETPACK_L4T.values()), service["image"]
            assert "reservations" not in service.get("deploy", {}).get("resources", {})
        else:
            assert "runtime" not in service and not reservations


VLLM_GPU_COMPOSE = [(p, r) for p, r in COMPOSE
                    if load_yaml(compiled_in_memory(p)[r.replace("docker-compose.yaml", "gateway/routes.yaml")])["hardware"]["kind"] == "gpu"
                    and any(n.startswith("vllm") for n in _data(p, r)["services"])]


@pytest.mark.parametrize(("project", "rel"), VLLM_GPU_COMPOSE, ids=[f"{p}:{r}" for p, r in VLLM_GPU_COMPOSE])
def test_vllm_engines_and_replicas_get_gpus_of_their_own(project, rel, generated_tree):
    """Each vLLM engine (each replica too) is pinned to distinct GPUs, as many as its tensor ×
    pipeline parallel, within the host's; replicas share the model's DNS name (a network alias
    the gateway discovers), publish no port and set no container_name."""
    files = compiled_in_memory(project)
    dep = rel.split("/")[0]
    routes = load_yaml(files[f"{dep}/gateway/routes.yaml"])
    services = {n: s for n, s in _data(project, rel)["services"].items() if n.startswith("vllm")}
    taken: list[str] = []
    names: dict[str, list[str]] = {}
    for name, service in services.items():
        ids = service["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
        config = load_yaml(files[service["volumes"][0].split(":")[0].replace("./", f"{dep}/", 1)])
        assert len(ids) == config["tensor-parallel-size"] * config.get("pipeline-parallel-size", 1), name
        taken.extend(ids)
        aliases = service.get("networks", {}).get("default", {}).get("aliases", [name])
        names.setdefault(aliases[0], []).append(name)
        assert "ports" not in service and "container_name" not in service and "replicas" not in service["deploy"]
    assert len(taken) == len(set(taken)) and all(0 <= int(i) < _host_gpus(project, dep) for i in taken)
    hosts = {b["discovery"]["host"] for b in routes["backends"].values() if b["engine"] == "vllm"}
    assert hosts == set(names)  # every discovery name answers with its replicas' containers
    resolved = compose_resolved(generated_tree(project) / rel)["services"]
    for host, replicas in names.items():
        if len(replicas) > 1:
            assert all(resolved[r]["networks"]["default"]["aliases"] == [host] for r in replicas)


@pytest.mark.parametrize(("project", "rel"), COMPOSE, ids=IDS)
def test_vllm_engines_with_adapters_accept_them_at_run_time(project, rel):
    """The gateway loads released adapters with /v1/load_lora_adapter, which vLLM serves only
    with VLLM_ALLOW_RUNTIME_LORA_UPDATING set; engines without adapters do not get it."""
    files = compiled_in_memory(project)
    for name, service in _data(project, rel)["services"].items():
        if not name.startswith("vllm"):
            continue
        config = load_yaml(files[service["volumes"][0].split(":")[0].replace("./", f"{rel.split('/')[0]}/", 1)])
        runtime = service["environment"].get("VLLM_ALLOW_RUNTIME_LORA_UPDATING")
        assert runtime == ("True" if config.get("enable-lora") else None), name


def _host_gpus(project: str, dep: str) -> int:
    import tempfile
    from pathlib import Path

    from tests.support.projects import projects, source_of
    from vilms.compiler.pipeline import compile_plan

    with tempfile.TemporaryDirectory() as tmp:
        _doc, plan = compile_plan(source_of(next(p for p in projects() if p.name == project), Path(tmp)))
    return plan.deployments[dep].hardware.gpus


def test_a_fixture_runs_replicas_on_compose():
    assert any(len(set(_data(p, r)["services"]) - {"gateway"}) > len({
        b for b in load_yaml(compiled_in_memory(p)[r.replace("docker-compose.yaml", "gateway/routes.yaml")])["backends"]})
        for p, r in VLLM_GPU_COMPOSE)


OLLAMA_COMPOSE = [(p, r) for p, r in COMPOSE if "ollama" in _data(p, r)["services"]]


@pytest.mark.parametrize(("project", "rel"), OLLAMA_COMPOSE, ids=[f"{p}:{r}" for p, r in OLLAMA_COMPOSE])
def test_ollama_init_creates_every_modelfile(project, rel):
    data = _data(project, rel)
    files = compiled_in_memory(project)
    dep = rel.split("/")[0]
    modelfiles = sorted(r.rsplit("/", 1)[1] for r in files if r.startswith(f"{dep}/ollama/"))
    script = " ".join(data["services"]["ollama-init"]["command"])
    for name in modelfiles:
        assert f"ollama/{name}" in script
    # every local file a Modelfile names (FROM/ADAPTER, relative to the Modelfile) is mounted in the init container
    init_dir = PurePosixPath(f"/vilms/generated/{dep}/ollama")
    targets = [PurePosixPath(m.split(":")[1]) for m in data["services"]["ollama-init"]["volumes"]]
    for name in modelfiles:
        for command in parse(files[f"{dep}/ollama/{name}"].decode()):
            if command.name in ("model", "adapter") and command.args.startswith("."):
                path = PurePosixPath(posixpath.normpath(init_dir / command.args))
                assert any(path == t or t in path.parents for t in targets), (name, str(path))
    assert data["services"]["ollama-init"]["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert data["services"]["gateway"]["depends_on"]["ollama-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize(("jetpack", "engine", "ok"), [("6.2", "ollama", True), ("6.2", "vllm", True), ("5.1", "ollama", True),
                                                        ("5.1", "vllm", False), ("6.0", "vllm", False), ("4.6", "ollama", False)])
def test_jetson_needs_an_image_built_for_its_l4t(jetpack, engine, ok, tmp_path):
    """No image for the board's JetPack is a located validate-time error, never ``image: null``."""
    from vilms.compiler.images import image_for
    from vilms.compiler.pipeline import diagnostics

    file = tmp_path / "vilms.yaml"
    file.write_text(f"""apiVersion: vilms/v1
project: jp
hardware:
  board: {{kind: jetson, memory: 64GiB, jetpack: "{jetpack}"}}
models:
  m: {{source: "hf:org/model", ollama: "m:1b", family: llama, params: 1B, context: 2048, chat_template: llama3}}
aliases:
  chat: m
deployments:
  edge: {{hardware: board, target: compose, engine: {engine}}}
""")
    found = diagnostics(file)
    assert (image_for(engine, "jetson", jetpack) is not None) == ok
    if ok:
        assert found == []
    else:
        assert [(d.line, d.path) for d in found] == [(4, "hardware.board.jetpack")], [d.render() for d in found]
        assert "JetPack" in found[0].message
