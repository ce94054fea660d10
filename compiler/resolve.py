"""Stage 3, resolve: a validated document → the immutable :class:`Plan`.

Applies defaults, picks what each deployment serves and under which upstream name,
and never touches the disk.
"""

from __future__ import annotations

from typing import Any

from vilms.compiler.contracts.telemetry import OtlpSpec
from vilms.compiler.contracts.training_config import ArtifactStoreSpec, MlflowSpec
from vilms.compiler.document import Document
from vilms.compiler.facts import gateway, gitops, llamacpp, ray, telemetry
from vilms.compiler.plan import (
    Adapter,
    Alias,
    ApiKey,
    ArgoCd,
    Dataset,
    Deployment,
    Flux,
    Gateway,
    GitOps,
    Hardware,
    Model,
    ModelServing,
    Plan,
    Source,
    Upstream,
    frozen,
)
from vilms.compiler.shorthand import alias_entry, served_aliases
from vilms.compiler.units import GIB, parse_params, parse_size

LORA_DEFAULTS = {"dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                 "use_rslora": False, "use_dora": False, "modules_to_save": []}
TRAINING_DEFAULTS = {
    "epochs": 3, "learning_rate": 2.0e-4, "batch_size": 4, "gradient_accumulation_steps": 1, "seq_len": 2048,
    "seed": 0, "warmup_ratio": 0.03, "lr_scheduler": "cosine", "weight_decay": 0.0, "save_steps": 50,
    "eval_steps": 50, "logging_steps": 10, "gradient_checkpointing": True, "max_steps": None,
    "strategy": "auto", "collective_timeout": 600.0, "max_restarts": 3, "engine": "torchrun",
}
ARTIFACT_STORE_DEFAULTS = {"region": "us-east-1", "access_key_id": "env:AWS_ACCESS_KEY_ID",
                           "secret_access_key": "env:AWS_SECRET_ACCESS_KEY"}
GATE_DEFAULTS = {"max_eval_perplexity": None, "regression": [], "on_fail": "approval"}
GATEWAY_DEFAULTS = {
    "retries": 2, "connect_timeout": 5.0, "read_timeout": 600.0, "max_body": "8MiB", "max_queue": 256,
    "cooldown": 30.0, "balance": "round_robin", "on_overlong_prompt": "reject", "port": gateway.PORT,
    "first_byte_timeout": 120.0, "request_timeout": 900.0, "write_timeout": 30.0, "max_response": "16MiB",
    "eject_after": 5, "discovery_interval": 5.0,
}
OTLP_DEFAULTS = {"interval": telemetry.EXPORT_INTERVAL_S, "metrics": True, "traces": True, "headers": {}}
UPDATE_DEFAULTS = {"max_surge": 1, "max_unavailable": 0}
# serving.<model>.autoscale.queue: waiting requests per replica that add a replica (KEDA for vLLM, Ray Serve for ray)
AUTOSCALE_QUEUE_DEFAULT = 5
MONITORING_DEFAULTS = {"prometheus_url": "http://prometheus-operated.monitoring.svc:9090", "dashboard": True}
DEFAULT_OS_RESERVE = {"jetson": GIB, "cpu": GIB, "gpu": 2 * GIB}


def resolve(doc: Document) -> Plan:
    data = doc.data
    hardware = {n: _hardware(n, h) for n, h in data.get("hardware", {}).items()}
    models = {n: _model(n, m) for n, m in data["models"].items()}
    datasets = {n: _dataset(n, d) for n, d in data.get("datasets", {}).items()}
    adapters = {n: _adapter(n, a, models[a["base"]], data["project"]) for n, a in data.get("adapters", {}).items()}
    aliases = {n: _alias(n, a) for n, a in data.get("aliases", {}).items()}
    deployments = {
        n: _deployment(n, d, data, hardware[d["hardware"]], models, adapters, aliases)
        for n, d in data.get("deployments", {}).items()
    }
    return Plan(
        project=data["project"],
        source_name=doc.file.name,
        input_sha256=doc.sha256,
        hardware=frozen(hardware),
        models=frozen(models),
        datasets=frozen(datasets),
        adapters=frozen(adapters),
        aliases=frozen(aliases),
        deployments=frozen(deployments),
        gateway=_gateway(data.get("gateway", {})),
        artifact_store=_artifact_store(data["artifact_store"]) if "artifact_store" in data else None,
        telemetry=_otlp(data["telemetry"]["otlp"]) if "otlp" in data.get("telemetry", {}) else None,
        gitops=_gitops(data["gitops"]) if "gitops" in data else None,
    )


def _gitops(g: dict[str, Any]) -> GitOps:
    argo, flux = g.get("argocd"), g.get("flux")
    return GitOps(
        repository=g["repository"],
        revision=g["revision"],
        path=g.get("path", ""),
        argocd=None if argo is None else ArgoCd(namespace=argo.get("namespace", gitops.ARGOCD_NAMESPACE),
                                                project=argo.get("project", gitops.ARGOCD_PROJECT),
                                                server=argo.get("server", gitops.ARGOCD_IN_CLUSTER)),
        flux=None if flux is None else Flux(namespace=flux.get("namespace", gitops.FLUX_NAMESPACE),
                                            interval=flux.get("interval", gitops.FLUX_INTERVAL),
                                            secret=flux.get("secret")),
    )


def _otlp(o: dict[str, Any]) -> OtlpSpec:
    merged = {**OTLP_DEFAULTS, **o}
    endpoint = merged["endpoint"]
    from_env = endpoint.startswith("env:")
    return OtlpSpec(
        endpoint=None if from_env else endpoint.rstrip("/"),
        endpoint_env=env_name(endpoint) if from_env else None,
        headers_env=frozen({name: env_name(ref) or "" for name, ref in merged["headers"].items()}),
        interval_s=float(merged["interval"]),
        metrics=merged["metrics"],
        traces=merged["traces"],
    )


def _mlflow(adapter: str, tracking: dict[str, Any], project: str) -> MlflowSpec | None:
    """``tracking.mlflow``: true is a store in the project (mlruns/), an object a tracking server."""
    spec = tracking.get("mlflow", False)
    if spec is False:
        return None
    server = spec if isinstance(spec, dict) else {}
    uri = server.get("uri", telemetry.MLFLOW_LOCAL_URI)
    return MlflowSpec(
        tracking_uri=None if uri.startswith("env:") else uri.rstrip("/"),
        tracking_uri_env=env_name(uri) if uri.startswith("env:") else None,
        experiment=server.get("experiment", tracking.get("experiment", project)),
        registered_model=adapter,
        registry_alias=server.get("alias", telemetry.MLFLOW_REGISTRY_ALIAS),
    )


def _artifact_store(a: dict[str, Any]) -> ArtifactStoreSpec:
    merged = {**ARTIFACT_STORE_DEFAULTS, **a}
    endpoint = merged.get("endpoint")
    from_env = endpoint is not None and endpoint.startswith("env:")
    return ArtifactStoreSpec(
        uri=merged["uri"].rstrip("/"),
        endpoint=None if endpoint is None or from_env else endpoint.rstrip("/"),
        endpoint_env=env_name(endpoint) if from_env else None,
        region=merged["region"],
        access_key_id_env=env_name(merged["access_key_id"]) or "",
        secret_access_key_env=env_name(merged["secret_access_key"]) or "",
    )


def env_name(ref: str | None) -> str | None:
    """``env:HF_TOKEN`` → ``HF_TOKEN``."""
    return ref[4:] if ref else None


def _hardware(name: str, h: dict[str, Any]) -> Hardware:
    kind = h["kind"]
    return Hardware(
        name=name,
        kind=kind,
        memory_bytes=parse_size(h["memory"]),
        cpus=h.get("cpus"),
        arch=h.get("arch", "arm64" if kind == "jetson" else "amd64"),
        jetpack=h.get("jetpack"),
        os_reserve_bytes=parse_size(h["os_reserve"]) if "os_reserve" in h else DEFAULT_OS_RESERVE[kind],
        gpus=h.get("gpus", 1 if kind == "jetson" else 0),
        gpu_memory_bytes=parse_size(h["gpu_memory"]) if "gpu_memory" in h else 0,
        gpu_type=h.get("gpu_type"),
        nodes=h.get("nodes", 1),
    )


def parse_source(text: str) -> Source:
    scheme, rest = text.split(":", 1)
    revision = None
    if scheme == "hf" and "@" in rest:
        rest, revision = rest.split("@", 1)
    return Source(scheme=scheme, ref=rest, revision=revision)


def _model(name: str, m: dict[str, Any]) -> Model:
    return Model(
        name=name,
        source=parse_source(m["source"]),
        family=m["family"],
        params=parse_params(m["params"]) if "params" in m else None,
        context=m["context"],
        chat_template=m.get("chat_template"),
        quantization=frozen(m.get("quantization", {})),
        dtype=m.get("dtype", "auto"),
        architecture=frozen(m["architecture"]) if "architecture" in m else None,
        task=m.get("task", "chat"),
        token_env=env_name(m.get("token")),
        weights=frozen({k: m[k] for k in ("source", "gguf", "ollama") if k in m}),
    )


def _dataset(name: str, d: dict[str, Any]) -> Dataset:
    return Dataset(
        name=name, path=d["path"], format=d["format"], sha256=d.get("sha256"),
        eval_fraction=d.get("eval_fraction", 0.1), provenance=frozen(d.get("provenance", {})),
        redact=tuple(d.get("redact", [])),
        region=d.get("region"),
    )


def _adapter(name: str, a: dict[str, Any], base: Model, project: str) -> Adapter:
    lora = {**LORA_DEFAULTS, "alpha": 2 * a["lora"]["r"], **a["lora"]}
    training = {**TRAINING_DEFAULTS, "seq_len": min(2048, base.context), **a.get("training", {})}
    return Adapter(
        name=name, base=a["base"], dataset=a["dataset"], method=a["method"],
        lora=frozen(lora), training=frozen(training), hardware=a.get("hardware"),
        gate=frozen({**GATE_DEFAULTS, **a.get("gate", {})}),
        export=frozen({"gguf": True, "quantize": [], **a.get("export", {})}),
        mlflow=_mlflow(name, a.get("tracking", {}), project),
        release=a.get("release"),
    )


def _alias(name: str, raw: Any) -> Alias:
    entry = alias_entry(raw)
    return Alias(
        name=name, model=entry["model"], adapter=entry.get("adapter"), system=entry.get("system"),
        params=frozen(entry.get("params", {})), fallbacks=tuple(entry.get("fallbacks", [])),
    )


def upstream_name(engine: str, alias: Alias, release: str | None) -> str:
    """The model name the gateway sends upstream for ``alias``.

    vLLM serves a released adapter under its run id (``release``): the gateway loads it
    into every engine under that name (/v1/load_lora_adapter), so a new release loads
    beside the old one before the old is unloaded; an unreleased adapter keeps its own
    name. Ray Serve LLM serves an adapter as ``<model>:<run id>``, loaded on demand from the
    artifact store, so a release is a new name and a routes change only. llama.cpp (one
    server per base model, every released adapter loaded) serves an adapter under its own name; Ollama serves one derived model per adapter alias, named
    after the alias.
    """
    if alias.adapter is None:
        return alias.model
    if engine == "vllm":
        return release or alias.adapter
    if engine == "ray":  # Ray Serve LLM: "<model_id>:<adapter>", loaded on demand from the artifact store's <run_id>/
        return f"{alias.model}{ray.ADAPTER_SEPARATOR}{release or alias.adapter}"
    return alias.adapter if engine == "llamacpp" else alias.name


def _deployment(name: str, d: dict[str, Any], data: dict[str, Any], hw: Hardware,
                models: dict[str, Model], adapters: dict[str, Adapter], aliases: dict[str, Alias]) -> Deployment:
    engine = d["engine"]
    served = tuple(sorted(served_aliases(data, d)))
    upstreams = {}
    for alias_name in served:
        alias = aliases[alias_name]
        model = models[alias.model]
        adapter = adapters.get(alias.adapter) if alias.adapter else None
        upstreams[alias_name] = Upstream(
            name=upstream_name(engine, alias, adapter.release if adapter else None),
            model=alias.model,
            adapter=alias.adapter,
            released=adapter is None or adapter.release is not None,
            context=min(d.get("context", model.context), model.context),
        )
    contexts: dict[str, int] = {}
    model_adapters: dict[str, set[str]] = {}
    for up in upstreams.values():
        contexts[up.model] = max(contexts.get(up.model, 0), up.context)
        if up.adapter:
            model_adapters.setdefault(up.model, set()).add(up.adapter)
    return Deployment(
        name=name, hardware=hw, target=d["target"], engine=engine, aliases=served,
        models=tuple(sorted(contexts)),
        upstreams=frozen(upstreams),
        contexts=frozen(contexts),
        model_adapters=frozen({m: tuple(sorted(a)) for m, a in model_adapters.items()}),
        replicas=d.get("replicas", 1),
        parallel=d.get("parallel"),
        gateway_port=d.get("gateway_port", data.get("gateway", {}).get("port", GATEWAY_DEFAULTS["port"])),
        engine_port=d.get("engine_port", llamacpp.FIRST_PORT),
        expose=d.get("expose", False),
        ingress=frozen(d["ingress"]) if "ingress" in d else None,
        autoscale=frozen(d.get("autoscale", {})),
        serving=frozen({m: _serving(s) for m, s in d.get("serving", {}).items()}),
        update=frozen({**UPDATE_DEFAULTS, **d.get("update", {})}),
        monitoring=frozen({**MONITORING_DEFAULTS, **d["monitoring"]}) if "monitoring" in d else None,
        threads=d.get("threads", hw.cpus or llamacpp.DEFAULT_THREADS),
        gpu_layers=_gpu_layers(d.get("gpu_layers"), hw),
        kube_context=d.get("kube_context"),
        namespace=d.get("namespace"),
    )


def _gpu_layers(given: int | str | None, hw: Hardware) -> int:
    if given is None:
        return 0 if hw.kind == "cpu" else llamacpp.ALL_GPU_LAYERS
    return llamacpp.ALL_GPU_LAYERS if given == "all" else int(given)


def _serving(s: dict[str, Any]) -> ModelServing:
    return ModelServing(gpus=s.get("gpus"), tensor_parallel=s.get("tensor_parallel"),
                        pipeline_parallel=s.get("pipeline_parallel"), replicas=s.get("replicas"),
                        max_num_seqs=s.get("max_num_seqs"), autoscale=frozen(s.get("autoscale", {})))


def _gateway(g: dict[str, Any]) -> Gateway:
    merged = {**GATEWAY_DEFAULTS, **g}
    return Gateway(
        api_keys_env=env_name(g.get("api_keys")),
        retries=merged["retries"],
        connect_timeout=float(merged["connect_timeout"]),
        read_timeout=float(merged["read_timeout"]),
        max_body_bytes=parse_size(merged["max_body"]),
        max_queue=merged["max_queue"],
        cooldown=float(merged["cooldown"]),
        balance=merged["balance"],
        on_overlong_prompt=merged["on_overlong_prompt"],
        port=merged["port"],
        first_byte_timeout=float(merged["first_byte_timeout"]),
        request_timeout=float(merged["request_timeout"]),
        write_timeout=float(merged["write_timeout"]),
        max_response_bytes=parse_size(merged["max_response"]),
        eject_after=merged["eject_after"],
        discovery_interval=float(merged["discovery_interval"]),
        ops_key_env=env_name(g.get("ops_key")),
        keys=frozen({name: ApiKey(name=name, env=env_name(spec["key"]) or "",
                                  aliases=tuple(spec["aliases"]) if "aliases" in spec else None,
                                  rpm=spec.get("rpm"), tpm=spec.get("tpm"))
                     for name, spec in g.get("keys", {}).items()}),
    )
