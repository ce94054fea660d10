"""``generated/<deployment>/local.yaml`` (target local): the processes `vilms up` supervises.

One llama.cpp server (llama-cpp-python) per base model and per released adapter alias
(each adapter applied with ``lora_path``), and the gateway, all on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

from vilms.compiler import weights
from vilms.compiler.facts import llamacpp
from vilms.compiler.plan import Deployment, Plan
from vilms.compiler.render.routes import llamacpp_ports


def model_file(plan: Plan, model_name: str) -> dict[str, Any]:
    model = plan.models[model_name]
    gguf = weights.gguf_weights(model.weights)
    assert gguf is not None, "validation guarantees GGUF weights for llama.cpp"
    quant = model.quantization.get("llamacpp", llamacpp.DEFAULT_QUANT)
    if gguf.startswith("file:"):
        return {"path": gguf[5:]}
    return {"hf_repo": gguf[3:], "hf_file_glob": f"*{quant}*.gguf"}


def local_plan(plan: Plan, dep: Deployment) -> dict[str, Any]:
    ports = llamacpp_ports(dep)
    threads = dep.hardware.cpus or llamacpp.DEFAULT_THREADS
    processes = []
    for name, port in ports.items():
        if name in dep.models:
            model_name, lora = name, []
        else:  # a released adapter alias: its base model with the adapter applied
            alias = plan.aliases[name]
            model_name = alias.model
            lora = [f"artifacts/{plan.adapters[alias.adapter or ''].release}/gguf/adapter.gguf"]
        processes.append({
            "name": f"llamacpp-{name}",
            "kind": "llamacpp",
            "model_alias": name,
            "model": model_file(plan, model_name),
            "context": dep.context_of(model_name),
            "threads": threads,
            "parallel": dep.slots,
            "lora": lora,
            "host": "127.0.0.1",
            "port": port,
        })
    return {
        "apiVersion": "vilms/v1",
        "kind": "LocalPlan",
        "deployment": dep.name,
        "processes": processes,
        "gateway": {"host": "127.0.0.1", "port": dep.gateway_port, "routes": "gateway/routes.yaml"},
    }
