"""The command lines the local runner builds from a plan: llama-server when one is found,
else llama-cpp-python's server with a config file; no process is started here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from vilms.compiler.contracts.local_plan import LocalGateway, LocalPlan, Lora, Server, Weights
from vilms.compiler.errors import ActionError
from vilms.compiler.layout import Layout
from vilms.runtime.local.launch import GATEWAY, find_llama_server, launches

RUN_A = "artifacts/faq-v1-20261120T091500Z-5c4b3a/gguf/adapter.gguf"
RUN_B = "artifacts/support-v1-20261121T080000Z-0a0b0c/gguf/adapter.gguf"


def project(root: Path, *loras: str) -> LocalPlan:
    for path in ("models/tiny.gguf", "generated/dev/gateway/routes.yaml", *loras):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(b"")
    server = Server(name="llamacpp-tiny", model_alias="tiny", model=Weights(file="models/tiny.gguf", hf=None),
                    context=256, threads=2, gpu_layers=0, parallel=3,
                    lora=tuple(Lora(adapter=Path(f).parts[1].split("-2026")[0], file=f) for f in loras),
                    host="127.0.0.1", port=8101)
    return LocalPlan(deployment="dev", servers=(server,),
                     gateway=LocalGateway(host="127.0.0.1", port=8080, routes="dev/gateway/routes.yaml"))


def test_llama_server_loads_every_adapter_unapplied_with_a_context_per_slot(tmp_path):
    binary = tmp_path / "bin" / "llama-server"
    server, gateway = launches(project(tmp_path, RUN_A, RUN_B), Layout(tmp_path), tmp_path / "run", llama_server=binary)
    assert server.argv == (
        str(binary), "--model", str(tmp_path / "models/tiny.gguf"), "--alias", "tiny", "--ctx-size", "768",
        "--parallel", "3", "--threads", "2", "--n-gpu-layers", "0", "--host", "127.0.0.1", "--port", "8101", "--no-webui",
        "--lora", f"{RUN_A},{RUN_B}", "--lora-init-without-apply")
    assert (server.health_url, server.files, server.note) == ("http://127.0.0.1:8101/health", (), None)
    assert server.lora == (RUN_A, RUN_B)  # what its GET /lora-adapters must report, in slot order
    assert gateway.kind == GATEWAY and gateway.argv[1:4] == ("-m", "vilms", "serve")
    assert gateway.argv[4:6] == ("--routes", str(tmp_path / "run" / "routes.yaml"))  # the supervisor's copy
    plain, _ = launches(project(tmp_path), Layout(tmp_path), tmp_path / "run", llama_server=binary)
    assert "--lora" not in plain.argv and "--lora-init-without-apply" not in plain.argv


def test_without_llama_server_each_adapter_is_a_model_entry_of_llama_cpp_python(tmp_path):
    server, _ = launches(project(tmp_path, RUN_A, RUN_B), Layout(tmp_path), tmp_path / "run", llama_server=None)
    config = tmp_path / "run" / "llamacpp-tiny.json"
    assert server.argv == (sys.executable, "-m", "llama_cpp.server", "--config_file", str(config))
    ((path, content),) = server.files
    assert path == config and not config.exists()  # written by the supervisor, at each start
    entry = {"model": str(tmp_path / "models/tiny.gguf"), "n_ctx": 256, "n_threads": 2, "n_gpu_layers": 0}
    assert json.loads(content) == {"host": "127.0.0.1", "port": 8101, "interrupt_requests": False, "models": [
        {**entry, "model_alias": "tiny"},
        {**entry, "model_alias": "faq-v1", "lora_path": str(tmp_path / RUN_A)},
        {**entry, "model_alias": "support-v1", "lora_path": str(tmp_path / RUN_B)}]}
    assert server.health_url == "http://127.0.0.1:8101/v1/models"
    assert server.note is not None and "reloads the model whenever a request selects another adapter" in server.note
    plain, _ = launches(project(tmp_path), Layout(tmp_path), tmp_path / "run", llama_server=None)
    assert plain.note is None  # nothing to switch


def test_a_missing_adapter_file_names_the_adapter_and_the_export(tmp_path):
    plan = project(tmp_path, RUN_A)
    (tmp_path / RUN_A).unlink()
    with pytest.raises(ActionError) as err:
        launches(plan, Layout(tmp_path), tmp_path / "run", llama_server=None)
    assert err.value.message.startswith(f"llamacpp-tiny: LoRA file {RUN_A} of adapter faq-v1 does not exist")
    assert err.value.hint == "export the released run as GGUF: vilms export faq-v1-20261120T091500Z-5c4b3a --gguf"


def test_llama_server_is_found_by_variable_then_on_path(tmp_path):
    tool = tmp_path / "bin" / "llama-server"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    with pytest.raises(ActionError) as err:
        find_llama_server({"VILMS_LLAMA_SERVER": str(tool), "PATH": ""})
    assert err.value.message == f"VILMS_LLAMA_SERVER={tool} is not an executable file"
    tool.chmod(0o755)
    assert find_llama_server({"VILMS_LLAMA_SERVER": str(tool), "PATH": ""}) == tool
    assert find_llama_server({"PATH": str(tool.parent)}) == tool
    assert find_llama_server({"VILMS_LLAMA_SERVER": " ", "PATH": str(tmp_path)}) is None


def test_with_the_run_key_servers_require_it_and_only_the_gateway_gets_it(tmp_path):
    key = "k" * 43
    native, gateway = launches(project(tmp_path), Layout(tmp_path), tmp_path / "run", llama_server=Path("/bin/ls"),
                               key=key)
    assert native.argv[-2:] == ("--api-key-file", str(tmp_path / "run" / "engine.key"))  # never the key itself
    assert key not in " ".join(native.argv) and key not in repr(native)
    assert native.probe_headers == {"Authorization": f"Bearer {key}"} and gateway.probe_headers == {}
    python, _ = launches(project(tmp_path), Layout(tmp_path), tmp_path / "run", llama_server=None, key=key)
    ((_, content),) = python.files
    assert json.loads(content)["api_key"] == key
    base = {"PATH": "/usr/bin", "HOME": "/h", "LC_ALL": "C", "CUDA_VISIBLE_DEVICES": "0", "GGML_CUDA_NO_PINNED": "1",
            "VILMS_API_KEYS": "a,b", "VILMS_OPS_KEY": "o", "MY_NAMED_KEY": "n", "AWS_SECRET_ACCESS_KEY": "s",
            "HF_TOKEN": "t", "VILMS_ENGINE_KEY": "stale"}
    assert python.environment(base) == {"PATH": "/usr/bin", "HOME": "/h", "LC_ALL": "C", "CUDA_VISIBLE_DEVICES": "0",
                                        "GGML_CUDA_NO_PINNED": "1"}
    assert gateway.environment(base) == {**base, "VILMS_ENGINE_KEY": key}


def test_the_engine_key_file_is_private_and_new_at_each_rotation(tmp_path):
    import stat

    from vilms.runtime.local import engine_key

    first = engine_key.rotate(tmp_path / "run")
    path = engine_key.key_file(tmp_path / "run")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == first + "\n"
    assert engine_key.current(tmp_path / "run") == first == engine_key.read(tmp_path / "run")
    assert engine_key.rotate(tmp_path / "run") != first
    assert engine_key.read(tmp_path / "none") is None


def test_two_servers_on_a_two_cpu_box_get_one_thread_each_and_the_deployments_gpu_layers(tmp_path):
    import yaml
    from local_project import write_project

    from vilms.compiler.pipeline import compile_plan
    from vilms.compiler.render.local import local_plan

    file = write_project(tmp_path, gateway_port=18997)  # hardware box: cpus 2
    doc = yaml.safe_load(file.read_text())
    doc["hardware"]["box"].update(kind="jetson", jetpack="6.0")  # a cpu profile has no GPU to offload to
    doc["models"]["tiny2"] = {**doc["models"]["tiny"]}
    doc["aliases"]["chat2"] = "tiny2"
    doc["deployments"]["dev"]["gpu_layers"] = 3
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    _, plan = compile_plan(file)
    local = local_plan(plan, plan.deployments["dev"])
    assert [(s.name, s.threads, s.gpu_layers) for s in local.servers] == [("llamacpp-tiny", 1, 3), ("llamacpp-tiny2", 1, 3)]
    (tmp_path / "generated/dev/gateway").mkdir(parents=True)
    (tmp_path / "generated/dev/gateway/routes.yaml").write_text("")
    native = launches(local, Layout(tmp_path), tmp_path / "run", llama_server=Path("/bin/ls"))[:2]
    for server in native:  # llama-server's spelling: -t/--threads, -ngl/--gpu-layers/--n-gpu-layers
        argv = list(server.argv)
        assert argv[argv.index("--threads") + 1] == "1" and argv[argv.index("--n-gpu-layers") + 1] == "3"
    python = launches(local, Layout(tmp_path), tmp_path / "run", llama_server=None)[:2]
    for server in python:  # llama-cpp-python's ModelSettings: n_threads, n_gpu_layers
        (model, *_) = json.loads(server.files[0][1])["models"]
        assert (model["n_threads"], model["n_gpu_layers"]) == (1, 3)
