"""``generated/<deployment>/local.yaml`` (target local): the processes `vilms up` supervises.

One llama.cpp server (llama-cpp-python) per base model and per released adapter alias
(each adapter applied with ``lora_path``), and the gateway, all on 127.0.0.1. The file's
shape is the :mod:`~vilms.compiler.contracts.local_plan` contract.
"""

from __future__ import annotations

from vilms.compiler import layout, weights
from vilms.compiler.contracts.local_plan import SERVER_KIND, HfWeights, LocalGateway, LocalPlan, Server, Weights
from vilms.compiler.facts import llamacpp
from vilms.compiler.plan import Deployment, Plan
from vilms.compiler.render.routes import llamacpp_ports

HOST = "127.0.0.1"


def model_weights(plan: Plan, model_name: str) -> Weights:
    model = plan.models[model_name]
    gguf = weights.gguf_weights(model.weights)
    assert gguf is not None, "validation guarantees GGUF weights for llama.cpp"
    if gguf.startswith("file:"):
        return Weights(file=gguf[len("file:"):], hf=None)
    quant = model.quantization.get("llamacpp", llamacpp.DEFAULT_QUANT)
    return Weights(file=None, hf=HfWeights(repo=gguf[len("hf:"):], file_glob=f"*{quant}*.gguf"))


def local_plan(plan: Plan, dep: Deployment) -> LocalPlan:
    threads = dep.hardware.cpus or llamacpp.DEFAULT_THREADS
    servers = []
    for name, port in llamacpp_ports(dep).items():
        if name in dep.models:
            model_name, lora = name, ()
        else:  # a released adapter alias: its base model with the adapter applied
            alias = plan.aliases[name]
            model_name = alias.model
            release = plan.adapters[alias.adapter or ""].release
            assert release is not None, "llamacpp_ports lists released adapters only"
            lora = (layout.run_path(release, layout.RUN_ADAPTER_GGUF),)
        servers.append(Server(
            name=f"{SERVER_KIND}-{name}",
            model_alias=name,
            model=model_weights(plan, model_name),
            context=dep.context_of(model_name),
            threads=threads,
            parallel=dep.slots,
            lora=lora,
            host=HOST,
            port=port,
        ))
    return LocalPlan(
        deployment=dep.name,
        servers=tuple(servers),
        gateway=LocalGateway(host=HOST, port=dep.gateway_port, routes=layout.routes_path(dep.name)),
    )
