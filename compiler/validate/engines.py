"""Semantic pass: engines, targets, hardware and adapters that can actually work together."""

from __future__ import annotations

from vilms.compiler import weights
from vilms.compiler.document import Document
from vilms.compiler.images import image_for, jetpacks_with_image
from vilms.compiler.modelfile_syntax import why_unrepresentable
from vilms.compiler.reporter import Reporter
from vilms.compiler.shorthand import alias_entry, served_aliases
from vilms.compiler.suggest import did_you_mean

# engines each target can run
TARGET_ENGINES = {"compose": ("ollama", "vllm"), "helm": ("vllm", "ray"), "local": ("llamacpp",)}
VLLM_ENGINES = ("vllm", "ray")  # engines that run vLLM (Ray Serve LLM runs it inside Ray), with its LoRA rules
CUDA_KINDS = ("gpu", "jetson")
VLLM_MAX_LORA_RANK = 512
EMBEDDING_MODULES = ("embed_tokens", "lm_head", "wte", "wpe", "word_embeddings")


def check(doc: Document, report: Reporter) -> None:
    data = doc.data
    hardware = data.get("hardware", {})
    models = data.get("models", {})
    adapters = data.get("adapters", {})
    aliases = data.get("aliases", {})

    for name, profile in hardware.items():
        if profile.get("nodes", 1) > 1 and profile["kind"] != "gpu":
            report.error(("hardware", name, "nodes"), f"nodes apply to kind gpu, not {profile['kind']!r}",
                         hint="a jetson or cpu profile is one machine; remove nodes")

    for name, adapter in adapters.items():
        base = ("adapters", name)
        hw = hardware.get(adapter.get("hardware", ""))
        training = adapter.get("training", {})
        model = models.get(adapter["base"])
        if model and training.get("seq_len", 0) > model["context"]:
            report.error(base + ("training", "seq_len"),
                         f"seq_len {training['seq_len']} exceeds the context of model {adapter['base']!r} ({model['context']})")
        if model and not weights.trainable(model):
            report.error(base + ("base",), f"model {adapter['base']!r} has no transformers weights to train on ({model['source']})",
                         hint=f"give models.{adapter['base']} an hf: or file: (safetensors folder) source; keep GGUF/Ollama in gguf: / ollama:")
        if model and model.get("task") == "embedding":
            report.error(base + ("base",), "LoRA adapters are trained on chat models, not embedding models")
        if training.get("engine") == "ray" and hw is not None and hw["kind"] == "jetson":
            report.error(base + ("training", "engine"), "Ray Train runs on gpu or cpu profiles; a Jetson trains in one process",
                         hint="remove training.engine (torchrun), or train on a gpu or cpu profile")

    for name, raw in aliases.items():
        entry = alias_entry(raw)
        model = models.get(entry["model"], {})
        if model.get("task") == "embedding" and (entry.get("system") or entry.get("adapter")):
            report.error(("aliases", name), "an embedding model takes no system prompt or adapter", at_key=True)

    for dep_name, dep in data.get("deployments", {}).items():
        base = ("deployments", dep_name)
        target, engine = dep["target"], dep["engine"]
        if engine not in TARGET_ENGINES[target]:
            report.error(base + ("engine",), f"target {target!r} cannot run engine {engine!r}",
                         hint=f"target {target} runs: {', '.join(TARGET_ENGINES[target])}")
        hw = hardware.get(dep["hardware"])
        if engine == "vllm" and hw is not None and hw["kind"] not in CUDA_KINDS:
            report.error(base + ("engine",), f"vLLM needs a CUDA GPU or a Jetson; hardware {dep['hardware']!r} is {hw['kind']!r}",
                         hint="use engine: llamacpp (target local) or engine: ollama (target compose) on CPU machines")
        if engine == "ray" and hw is not None and hw["kind"] != "gpu":
            report.error(base + ("engine",), f"Ray Serve LLM runs vLLM on GPU nodes; hardware {dep['hardware']!r} is {hw['kind']!r}",
                         hint="use a gpu profile, or engine: llamacpp (target local) / ollama (target compose) on this hardware")
        if engine == "ray" and "artifact_store" not in data and any(
                alias_entry(data.get("aliases", {}).get(a, {})).get("adapter") for a in served_aliases(data, dep) if a in aliases):
            report.error(base + ("engine",), "Ray Serve LLM loads LoRA adapters from an object store, and vilms.yaml has no artifact_store",
                         hint="add artifact_store: {uri: s3://<bucket>/<prefix>} (credentials as env: references); "
                              "`vilms rollout` pushes each release there")
        if "replicas" in dep and target == "local":
            report.error(base + ("replicas",), "replicas need target helm or compose; the local runner runs one of each process")
        if "autoscale" in dep and target != "helm":
            report.error(base + ("autoscale",), "autoscale applies to target helm only")
        if "engine_port" in dep and target != "local":
            report.error(base + ("engine_port",), "engine_port applies to target local only; compose and helm "
                                                  "keep engines on their own networks")
        if "ingress" in dep and target != "helm":
            report.error(base + ("ingress",), "ingress applies to target helm only")
        for key in ("threads", "gpu_layers"):
            if key in dep and target != "local":
                report.error(base + (key,), f"{key} applies to target local only (the llama.cpp servers `vilms up` runs)")
        for key in ("kube_context", "namespace"):
            if key in dep and target != "helm":
                report.error(base + (key,), f"{key} applies to target helm only")
        if dep.get("gpu_layers", 0) not in (0, None) and hw is not None and hw["kind"] == "cpu":
            report.error(base + ("gpu_layers",), f"hardware {dep['hardware']!r} is a cpu profile, which has no GPU to offload layers to",
                         hint="remove gpu_layers, or use a gpu or jetson hardware profile")
        if hw is not None and hw["kind"] == "jetson" and engine in ("ollama", "vllm") and image_for(engine, "jetson", hw["jetpack"]) is None:
            supported = ", ".join(jetpacks_with_image(engine)) or "none"
            report.error(("hardware", dep["hardware"], "jetpack"),
                         f"no {engine} container image matches JetPack {hw['jetpack']} (deployment {dep_name!r})",
                         hint=f"JetPack releases with a {engine} image: {supported}")
        autoscale = dep.get("autoscale", {})
        if autoscale.get("min", 1) > autoscale.get("max", autoscale.get("min", 1)):
            report.error(base + ("autoscale",), "autoscale.min is greater than autoscale.max")
        _check_serving(data, dep_name, dep, hw, report)

        for alias in served_aliases(data, dep):
            if alias not in aliases:
                continue
            entry = alias_entry(aliases[alias])
            model_name = entry["model"]
            model = models.get(model_name)
            if model is None:
                continue
            _check_weights(model_name, model, engine, dep_name, report)
            if dep.get("context", 0) > model["context"]:
                report.error(base + ("context",), f"context {dep['context']} exceeds the context of model {model_name!r} ({model['context']})")
            adapter_name = entry.get("adapter")
            if adapter_name in adapters:
                _check_adapter_servable(adapter_name, adapters[adapter_name], engine, dep_name, report)
            if engine == "ollama" and adapter_name:
                _check_modelfile_values(alias, entry, dep_name, report)


def _check_serving(data: dict, dep_name: str, dep: dict, hw: dict | None, report: Reporter) -> None:
    """``serving:``, ``update:``, ``monitoring:`` and replicas against the engine, target and board.
    Parallelism against the model and the GPUs is the placement's (``compiler/memory/placement.py``)."""
    base = ("deployments", dep_name)
    target, engine = dep["target"], dep["engine"]
    kind = hw["kind"] if hw is not None else None
    for key in ("update", "monitoring"):
        if key in dep and target != "helm":
            report.error(base + (key,), f"{key} applies to target helm only")
    if "update" in dep and engine == "ray":
        report.error(base + ("update",), "update is the rolling update of vLLM Deployments; KubeRay rolls a RayService itself",
                     hint="remove update:")
    if dep.get("replicas", 1) > 1 and target == "compose" and (engine == "ollama" or kind == "jetson"):
        report.error(base + ("replicas",),
                     f"a compose deployment runs one {'Ollama server' if engine == 'ollama' else 'vLLM engine per model on the Jetson'} "
                     "per host: replicas cannot be more than 1",
                     hint="drop replicas, or serve the model with engine vllm on a gpu profile (compose) or target helm")
    serving = dep.get("serving", {})
    if not serving:
        return
    if engine not in VLLM_ENGINES:
        report.error(base + ("serving",), f"serving settings apply to engines vllm and ray, not {engine!r}", at_key=True,
                     hint="remove serving:, or use engine: vllm")
        return
    aliases = data.get("aliases", {})
    served = sorted({alias_entry(aliases[a])["model"] for a in served_aliases(data, dep) if a in aliases})
    for model_name, settings in serving.items():
        at = base + ("serving", model_name)
        if model_name not in served:
            report.error(at, f"deployment {dep_name!r} does not serve model {model_name!r}{did_you_mean(model_name, served)}",
                         at_key=True, hint=f"it serves: {', '.join(served) or 'nothing'}")
            continue
        if kind == "jetson":
            for key in ("gpus", "tensor_parallel", "pipeline_parallel", "replicas"):
                if settings.get(key, 1) > 1:
                    report.error(at + (key,), f"a Jetson has one integrated GPU: {key} cannot be more than 1",
                                 hint=f"remove {key}, or serve this model from a gpu profile")
        autoscale = settings.get("autoscale")
        if autoscale is not None:
            if target != "helm":
                report.error(at + ("autoscale",), "autoscale applies to target helm only (a KEDA ScaledObject)",
                             hint="compose runs the declared replicas; remove autoscale")
            elif "monitoring" not in dep and engine == "vllm":  # Ray Serve autoscales on its own queue
                report.error(at + ("autoscale",), "autoscale reads vLLM's queue from Prometheus: the deployment needs monitoring:",
                             hint=f"add monitoring: {{}} to deployments.{dep_name} (or set its prometheus_url)")
            if autoscale.get("min", 0) > autoscale["max"]:
                report.error(at + ("autoscale", "min"), f"autoscale.min {autoscale['min']} is greater than autoscale.max {autoscale['max']}")


def _check_modelfile_values(alias: str, entry: dict, dep_name: str, report: Reporter) -> None:
    """Values baked into the derived model's Modelfile must survive Ollama's parser unchanged."""
    base = ("aliases", alias)
    hint = ("Ollama's Modelfile has no escapes; remove the character, or serve this alias "
            "from a vLLM or llama.cpp deployment (the gateway sends any system prompt)")
    if "system" in entry:
        reason = why_unrepresentable("system", entry["system"])
        if reason:
            report.error(base + ("system",), f"deployment {dep_name!r} (engine 'ollama') cannot write this system prompt into a Modelfile: {reason}", hint=hint)
    for i, stop in enumerate(entry.get("params", {}).get("stop", [])):
        reason = why_unrepresentable("stop", stop)
        if reason:
            report.error(base + ("params", "stop", i), f"deployment {dep_name!r} (engine 'ollama') cannot write this stop string into a Modelfile: {reason}", hint=hint)


def _check_weights(name: str, model: dict, engine: str, dep_name: str, report: Reporter) -> None:
    where = f"engine {engine!r} (deployment {dep_name!r})"
    path = ("models", name, "source")
    if engine in VLLM_ENGINES and not weights.vllm_loadable(model):
        report.error(path, f"{where} loads transformers weights, not {model['source'].split(':')[0]}: or GGUF",
                     hint="use an hf:<org>/<repo> source or a file: folder of safetensors")
    elif engine == "llamacpp" and weights.gguf_weights(model) is None:
        report.error(path, f"{where} needs GGUF weights",
                     hint=f"add gguf: hf:<org>/<repo of GGUF files> (or file:<path>.gguf) to models.{name}")
    elif engine == "ollama" and weights.ollama_from(model, "q4_K_M") is None:
        report.error(path, f"{where} needs an Ollama tag or GGUF weights",
                     hint=f"add ollama: <library tag> or gguf: hf:<org>/<repo of GGUF files> to models.{name}")


def _check_adapter_servable(name: str, adapter: dict, engine: str, dep_name: str, report: Reporter) -> None:
    lora = adapter["lora"]
    base = ("adapters", name, "lora")
    where = f"engine {engine!r} (deployment {dep_name!r})"
    if lora.get("use_dora"):
        report.error(base + ("use_dora",), f"{where} cannot serve DoRA adapters", hint="set use_dora: false")
    if lora.get("modules_to_save"):
        report.error(base + ("modules_to_save",), f"{where} cannot serve adapters with modules_to_save",
                     hint="train a plain LoRA adapter (vLLM supports modules_to_save = None only)")
    for i, module in enumerate(lora.get("target_modules", [])):
        if module.split(".")[-1] in EMBEDDING_MODULES:
            report.error(base + ("target_modules", i), f"{where} cannot serve LoRA on {module!r} (embedding or lm_head)",
                         hint="target attention/MLP projections such as q_proj, k_proj, v_proj, o_proj")
    if engine in VLLM_ENGINES and lora["r"] > VLLM_MAX_LORA_RANK:
        report.error(base + ("r",), f"rank {lora['r']} is above vLLM's largest max-lora-rank ({VLLM_MAX_LORA_RANK})",
                     hint="use r ≤ 512")
