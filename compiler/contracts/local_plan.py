"""``generated/<deployment>/local.yaml`` (kind LocalPlan): the processes `vilms up` supervises.

Written by :mod:`vilms.compiler.render.local`, read by the local runner
(:mod:`vilms.runtime.local`). One llama.cpp server per base model (entries of ``servers``),
each loading every released adapter of that model, and the gateway in front of them. Model
and LoRA paths are relative to the folder of vilms.yaml; the routes path is relative to
``generated/``.
"""

from __future__ import annotations

from vilms.compiler.document import Path_, dotted
from vilms.compiler.record import record
from vilms.compiler.reporter import Reporter

from .contract import Contract

GATEWAY_PROCESS = "gateway"  # the gateway's process name; no server may take it
SERVER_KIND = "llamacpp"  # what every server of a local plan runs (llama-server, else llama-cpp-python's)


@record
class HfWeights:
    """GGUF weights in a Hugging Face repository: the file of ``repo`` matching ``file_glob``."""

    repo: str
    file_glob: str


@record
class Weights:
    """Exactly one of: a GGUF file (relative to the folder of vilms.yaml), or Hugging Face weights."""

    file: str | None
    hf: HfWeights | None


@record
class Lora:
    """A LoRA adapter a server loads at start; its index in ``Server.lora`` is its slot."""

    adapter: str  # the adapter's name: the upstream model name of its aliases
    file: str  # the GGUF adapter, relative to the folder of vilms.yaml


@record
class Server:
    """One llama.cpp server: a base model and its released adapters, selected per request."""

    name: str  # its process name
    model_alias: str  # the model name it answers to (the gateway's upstream model)
    model: Weights
    context: int
    threads: int  # this server's share of the deployment's threads
    gpu_layers: int  # layers offloaded to a GPU; -1: all
    parallel: int
    lora: tuple[Lora, ...]  # in slot order (llama-server's --lora order)
    host: str
    port: int


@record
class LocalGateway:
    """Where the local gateway listens and which routes file it serves."""

    host: str
    port: int
    routes: str  # the deployment's routes.yaml, relative to generated/


@record
class LocalPlan:
    """Every process `vilms up` runs for one deployment."""

    deployment: str
    servers: tuple[Server, ...]
    gateway: LocalGateway


def _check(plan: LocalPlan, report: Reporter) -> None:
    names: dict[str, str] = {}  # process name → where it was first given
    ports: dict[int, str] = {}
    # the gateway first: its name is fixed, so a clash is reported at the server that has it
    entries: list[tuple[Path_, str, int]] = [(("gateway",), GATEWAY_PROCESS, plan.gateway.port)]
    entries += [(("servers", i), s.name, s.port) for i, s in enumerate(plan.servers)]
    for i, server in enumerate(plan.servers):
        if (server.model.file is None) == (server.model.hf is None):
            given = "both" if server.model.file is not None else "neither"
            report.error(("servers", i, "model"), f"give exactly one of file and hf; got {given}")
        adapters: dict[str, int] = {server.model_alias: -1}
        for j, lora in enumerate(server.lora):
            if lora.adapter in adapters:
                other = "the model alias" if adapters[lora.adapter] < 0 else f"lora {adapters[lora.adapter]}"
                report.error(("servers", i, "lora", j, "adapter"), f"name {lora.adapter!r} is already used by {other}")
            adapters.setdefault(lora.adapter, j)
    for at, name, port in entries:
        where = dotted(at)
        if name in names:
            report.error((*at, "name"), f"process name {name!r} is already used by {names[name]}")
        names.setdefault(name, where)
        if port in ports:
            report.error((*at, "port"), f"port {port} is already used by {ports[port]}")
        ports.setdefault(port, where)


LOCAL_PLAN = Contract(
    kind="LocalPlan",
    root=LocalPlan,
    schema_file="local-plan.schema.json",
    format="yaml",
    remedy="run `vilms build`",
    check=_check,
)
