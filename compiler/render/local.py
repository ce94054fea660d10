"""``generated/<deployment>/local.yaml`` (target local): the processes `vilms up` supervises.

One llama.cpp server per base model, loading every released adapter of that model (its
slot is its index, selected per request by the gateway), and the gateway, all on
127.0.0.1. The file's shape is the :mod:`~vilms.compiler.contracts.local_plan` contract.
"""

from __future__ import annotations

from vilms.compiler import layout, weights
from vilms.compiler.contracts.local_plan import SERVER_KIND, HfWeights, LocalGateway, LocalPlan, Lora, Server, Weights
from vilms.compiler.facts import llamacpp
from vilms.compiler.plan import Deployment, Plan
from vilms.compiler.render.routes import llamacpp_adapters, llamacpp_ports

HOST = "127.0.0.1"


def model_weights(plan: Plan, model_name: str) -> Weights:
    model = plan.models[model_name]
    gguf = weights.gguf_weights(model.weights)
    assert gguf is not None, "validation guarantees GGUF weights for llama.cpp"
    if gguf.startswith("file:"):
        return Weights(file=gguf[len("file:"):], hf=None)
    quant = model.quantization.get("llamacpp", llamacpp.DEFAULT_QUANT)
    return Weights(file=None, hf=HfWeights(repo=gguf[len("hf:"):], file_glob=f"*{quant}*.gguf"))


def _lora(plan: Plan, adapter: str) -> Lora:
    release = plan.adapters[adapter].release
    assert release is not None, "llamacpp_adapters lists released adapters only"
    return Lora(adapter=adapter, file=layout.run_path(release, layout.RUN_ADAPTER_GGUF))


def local_plan(plan: Plan, dep: Deployment) -> LocalPlan:
    ports = llamacpp_ports(dep)
    threads = max(1, dep.threads // max(1, len(ports)))  # the deployment's threads, split evenly
    servers = tuple(
        Server(
            name=f"{SERVER_KIND}-{model_name}",
            model_alias=model_name,
            model=model_weights(plan, model_name),
            context=dep.context_of(model_name),
            threads=threads,
            gpu_layers=dep.gpu_layers,
            parallel=dep.slots,
            lora=tuple(_lora(plan, adapter) for adapter in llamacpp_adapters(dep, model_name)),
            host=HOST,
            port=port,
        )
        for model_name, port in ports.items()
    )
    return LocalPlan(
        deployment=dep.name,
        servers=servers,
        gateway=LocalGateway(host=HOST, port=dep.gateway_port, routes=layout.routes_path(dep.name)),
    )
