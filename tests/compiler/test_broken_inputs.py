"""A corpus of broken vilms.yaml files: each exits 1 with a located, readable message,
never a traceback, and never touches generated/."""

from __future__ import annotations

import re

import pytest

from tests.compiler.minimal import MINIMAL

M = MINIMAL


def swap(old: str, new: str) -> str:
    assert old in M, old
    return M.replace(old, new, 1)


LOCATED = re.compile(r"^vilms\.yaml:\d+:\d+: ", re.M)

# (id, content, expected fragment of the message, expected line or None)
CASES: list[tuple[str, str | bytes, str, int | None]] = [
    # --- YAML syntax and encoding
    ("empty-file", "", "file is empty", 1),
    ("only-comments", "# nothing here\n", "file is empty", 1),
    ("tab-indent", "apiVersion: vilms/v1\nmodels:\n\tqwen: {}\n", "YAML syntax error", 3),
    ("unclosed-flow", swap("{kind: cpu, memory: 16GiB, cpus: 4}", "{kind: cpu, memory: 16GiB"), "YAML syntax error", None),
    ("bad-indent", swap("    family: qwen2\n", "      family: qwen2\n"), "YAML syntax error", 10),
    ("unclosed-quote", swap("project: demo", 'project: "demo'), "YAML syntax error", None),
    ("duplicate-top-key", M + "project: again\n", "duplicate key 'project'", 31),
    ("duplicate-nested-key", swap("    context: 8192\n", "    context: 8192\n    context: 4096\n"), "duplicate key 'context'", 13),
    ("non-utf8", M.encode() + b"# caf\xe9\n", "not valid UTF-8", 31),
    ("top-level-list", "- a\n- b\n", "top level must be a mapping", 1),
    ("top-level-scalar", "hello\n", "top level must be a mapping", 1),
    ("non-string-key", swap("  laptop:", "  42:"), "keys must be strings", 4),
    ("alias-bomb", "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
     "more than 200,000 nodes", None),
    ("python-tag", swap("project: demo", "project: !!python/object:os.system demo"), "", None),
    # --- wrong types and values
    ("apiversion-wrong", swap("apiVersion: vilms/v1", "apiVersion: vilms/v2"), "apiVersion: must be 'vilms/v1'", 1),
    ("missing-models", M.split("models:")[0], "missing required key 'models'", 1),
    ("context-string", swap("context: 8192", "context: big"), "models.qwen2.5-1.5b.context: must be an integer", 12),
    ("context-too-small", swap("context: 8192", "context: 12"), "must be at least 256", 12),
    ("memory-bad-unit", swap("memory: 16GiB, cpus: 4", "memory: 16 gigs, cpus: 4"), "is not a valid memory", 4),
    ("jetpack-number", swap("  laptop: {kind: cpu, memory: 16GiB, cpus: 4}", '  orin: {kind: jetson, memory: 8GiB, jetpack: 6.2}\n  laptop: {kind: cpu, memory: 16GiB, cpus: 4}'), 'quote it: "6.2"', 4),
    ("jetson-needs-jetpack", swap("  laptop: {kind: cpu, memory: 16GiB, cpus: 4}", "  orin: {kind: jetson, memory: 8GiB}\n  laptop: {kind: cpu, memory: 16GiB, cpus: 4}"), "missing required key 'jetpack'", 4),
    ("kind-typo", swap("{kind: cpu,", "{kind: cpus,"), "'cpus' is not one of jetson, cpu, gpu (did you mean 'cpu'?)", 4),
    ("engine-typo", swap("engine: llamacpp}", "engine: llama.cpp}"), "did you mean 'llamacpp'?", 27),
    ("method-enum", swap("method: lora", "method: dora"), "'dora' is not one of lora, qlora", 20),
    ("rank-zero", swap("lora: {r: 16}", "lora: {r: 0}"), "must be at least 1", 21),
    ("alias-wrong-type", swap("  chat: qwen2.5-1.5b", "  chat: 42"), "aliases.chat: must be a string or a mapping", 24),
    ("source-bad", swap("source: hf:Qwen/Qwen2.5-1.5B-Instruct", "source: https://evil.example/model"), "is not a valid source", 9),
    ("regression-both", swap("    hardware: gpu1\n", "    hardware: gpu1\n    gate: {regression: [{prompt: hi, expect_exact: a, expect_substring: b}]}\n"), "set exactly one of expect_substring, expect_exact", None),
    # --- unknown keys with typos
    ("unknown-top-key", M + "gatway: {}\n", "unknown key 'gatway' (did you mean 'gateway'?)", 31),
    ("unknown-model-key", swap("    family: qwen2\n", "    familly: qwen2\n"), "unknown key 'familly' (did you mean 'family'?)", 10),
    ("unknown-deploy-key", swap("engine: vllm}", "engine: vllm, replica: 2}"), "unknown key 'replica' (did you mean 'replicas'?)", 28),
    ("camel-case-key", swap("  api_keys: env:VILMS_API_KEYS", "  apiKeys: env:VILMS_API_KEYS"), "unknown key 'apiKeys'", 30),
    # --- dangling references
    ("unknown-adapter-base", swap("    base: qwen2.5-1.5b", "    base: qwen-1.5b"), "adapters.support-v1.base: unknown model 'qwen-1.5b' (did you mean 'qwen2.5-1.5b'?)", 18),
    ("unknown-dataset", swap("    dataset: support", "    dataset: suport"), "unknown dataset 'suport' (did you mean 'support'?)", 19),
    ("unknown-hardware", swap("{hardware: laptop,", "{hardware: lapto,"), "unknown hardware profile 'lapto'", 27),
    ("unknown-alias-model", swap("  chat: qwen2.5-1.5b", "  chat: qwen3"), "aliases.chat: unknown model 'qwen3'", 24),
    ("unknown-alias-adapter", swap("adapter: support-v1,", "adapter: support-v2,"), "unknown adapter 'support-v2'", 25),
    ("unknown-fallback", swap("fallbacks: [chat]", "fallbacks: [chta]"), "unknown alias 'chta' (did you mean 'chat'?)", 25),
    ("unknown-deploy-alias", swap("engine: llamacpp}", "engine: llamacpp, aliases: [chat, bot]}"), "unknown alias 'bot'", 27),
    ("fallback-not-served", swap("engine: llamacpp}", "engine: llamacpp, aliases: [support-bot]}"), "falls back to 'chat', which this deployment does not serve", 27),
    # --- cycles and mismatches
    ("fallback-cycle", swap("  chat: qwen2.5-1.5b", "  chat: {model: qwen2.5-1.5b, fallbacks: [support-bot]}"), "fallback cycle: chat → support-bot → chat", 24),
    ("fallback-self", swap("fallbacks: [chat]", "fallbacks: [support-bot]"), "cannot fall back to itself", 25),
    ("adapter-base-mismatch", swap("  chat: qwen2.5-1.5b", "  chat: qwen2.5-1.5b\n  other: {model: qwen0, adapter: support-v1}").replace("models:\n", "models:\n  qwen0: {source: 'hf:Qwen/Qwen2.5-0.5B', family: qwen2, context: 4096}\n", 1), "was trained on model 'qwen2.5-1.5b', but this alias serves 'qwen0'", None),
    # --- ports
    ("engine-port-on-compose", swap("engine: vllm}", "engine: vllm, engine_port: 9000}"), "engine_port applies to target local only", 28),
    ("engine-port-hits-gateway", swap("engine: llamacpp}", "engine: llamacpp, engine_port: 8080}"), "gateway_port 8080 is also one of the llama.cpp ports 8080", 27),
    ("engine-port-past-65535", swap("engine: llamacpp}", "engine: llamacpp, engine_port: 65535}").replace("  chat: qwen2.5-1.5b\n", "  chat: qwen2.5-1.5b\n  small: qwen0\n", 1).replace("models:\n", "models:\n  qwen0: {source: 'hf:Qwen/Qwen2.5-0.5B', gguf: 'hf:Qwen/Qwen2.5-0.5B-GGUF', family: qwen2, context: 4096}\n", 1), "need ports 65535-65536, past 65535", 29),
    ("engine-port-too-low", swap("engine: llamacpp}", "engine: llamacpp, engine_port: 80}"), "engine_port", 27),
    # --- per-target deployment settings
    ("threads-on-compose", swap("engine: vllm}", "engine: vllm, threads: 4}"), "threads applies to target local only", 28),
    ("gpu-layers-on-cpu", swap("engine: llamacpp}", "engine: llamacpp, gpu_layers: 8}"), "has no GPU to offload layers to", 27),
    ("gpu-layers-float", swap("engine: llamacpp}", "engine: llamacpp, gpu_layers: 1.5}"), "gpu_layers", 27),
    ("threads-zero", swap("engine: llamacpp}", "engine: llamacpp, threads: 0}"), "threads", 27),
    ("namespace-on-local", swap("engine: llamacpp}", "engine: llamacpp, namespace: llm}"), "namespace applies to target helm only", 27),
    ("kube-context-on-compose", swap("engine: vllm}", "engine: vllm, kube_context: prod}"), "kube_context applies to target helm only", 28),
    ("namespace-not-dns", swap("target: compose, engine: vllm}", "target: helm, engine: vllm, namespace: Prod_NS}"), "namespace", 28),
    ("gitops-without-helm", M + "gitops: {repository: 'https://github.com/acme/llm.git', revision: main, argocd: {}}\n",
     "gitops writes Argo CD and Flux objects for helm deployments, and there is none", 31),
    ("gitops-without-controller", M + "gitops: {repository: 'https://github.com/acme/llm.git', revision: main}\n", "gitops", 31),
    # --- engine x hardware
    ("vllm-on-cpu", swap("  gpu: {hardware: gpu1, target: compose, engine: vllm}", "  gpu: {hardware: laptop, target: compose, engine: vllm}"), "vLLM needs a CUDA GPU or a Jetson", 28),
    # QLoRA trains on CPU; a 1.5B at batch 4 × 2048 (fp32 logits over a 152k vocabulary) does not fit 15 GiB
    ("qlora-on-cpu-does-not-fit", swap("    method: lora", "    method: qlora").replace("    hardware: gpu1\n", "    hardware: laptop\n"), "training adapter 'support-v1' needs", 22),
    ("target-engine", swap("target: local, engine: llamacpp", "target: helm, engine: ollama"), "target 'helm' cannot run engine 'ollama'", 27),
    ("ollama-source-on-vllm", swap("source: hf:Qwen/Qwen2.5-1.5B-Instruct", "source: ollama:qwen2.5:1.5b"), "loads transformers weights, not ollama: or GGUF", 9),
    ("vllm-dora", swap("lora: {r: 16}", "lora: {r: 16, use_dora: true}"), "cannot serve DoRA adapters", 21),
    ("vllm-rank-too-big", swap("lora: {r: 16}", "lora: {r: 1024}"), "above vLLM's largest max-lora-rank", 21),
    ("lm-head-target", swap("lora: {r: 16}", "lora: {r: 16, target_modules: [q_proj, lm_head]}"), "cannot serve LoRA on 'lm_head'", 21),
    # --- unsafe names
    ("name-uppercase", swap("  chat: qwen2.5-1.5b", "  Chat: qwen2.5-1.5b"), "invalid name 'Chat'", 24),
    ("name-space", swap("  chat: qwen2.5-1.5b", '  "chat bot": qwen2.5-1.5b'), "invalid name 'chat bot'", 24),
    ("name-shell", swap("  chat: qwen2.5-1.5b", '  "chat;rm -rf /": qwen2.5-1.5b'), "invalid name", 24),
    ("name-newline", swap("  chat: qwen2.5-1.5b", '  "chat\\nx": qwen2.5-1.5b'), "invalid name", 24),
    ("deployment-dots", swap("  dev: {hardware", "  dev.box: {hardware"), "invalid name 'dev.box'", 27),
    ("name-windows-reserved", swap("  support: {path", "  con: {path").replace("dataset: support", "dataset: con"), "reserved file name", 15),
    ("k8s-collision", swap("  chat: qwen2.5-1.5b", "  chat: qwen2.5-1.5b").replace("models:\n", "models:\n  qwen2-5-1-5b: {source: 'hf:Qwen/Qwen2.5-1.5B', family: qwen2, context: 4096}\n", 1), "both become 'qwen2-5-1-5b'", None),
    ("dataset-escapes", swap("path: data/support.jsonl", "path: ../../etc/passwd.jsonl"), "must be relative and stay inside the project", 15),
    # --- plaintext secrets
    ("secret-literal", swap("api_keys: env:VILMS_API_KEYS", "api_keys: sk-live-0123456789abcdef"), "plaintext secret", 30),
    ("secret-bad-env", swap("api_keys: env:VILMS_API_KEYS", "api_keys: env:vilms-keys"), "invalid environment variable name", 30),
    ("hf-token-literal", swap("    family: qwen2\n", "    family: qwen2\n    token: hf_abcdefghijklmnopqrstuvwxyz012345\n"), "plaintext secret", 11),
]


@pytest.mark.parametrize("content,fragment,line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_input_is_reported(project, vilms, content, fragment, line):
    path = project(content)
    generated = path.parent / "generated"
    generated.mkdir()
    (generated / "keep.txt").write_text("untouched")
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err + result.out
    assert fragment in result.err
    assert LOCATED.search(result.err), result.err
    if line is not None:
        assert re.search(rf"^vilms\.yaml:{line}:\d+: ", result.err, re.M), result.err
    assert sorted(p.name for p in generated.iterdir()) == ["keep.txt"]
    assert "sk-live-0123456789abcdef" not in result.err and "hf_abcdefghijklmnop" not in result.err


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


def test_fifty_megabyte_file_is_refused(project, vilms):
    path = project(M + "#" + "x" * (50 * 1024 * 1024) + "\n")
    result = vilms("validate", "-f", str(path))
    assert result.code == 1
    assert "vilms.yaml:1:1: file is 50.0 MiB; the limit is 4 MiB" in result.err
    assert "Traceback" not in result.err


def test_missing_file(tmp_path, vilms):
    result = vilms("build", cwd=tmp_path)
    assert result.code == 1
    assert "vilms.yaml: file not found" in result.err
    assert "vilms init" in result.err


def test_all_errors_reported_at_once_and_sorted(project, vilms):
    content = swap("    base: qwen2.5-1.5b", "    base: nope").replace("fallbacks: [chat]", "fallbacks: [nada]").replace("{hardware: laptop,", "{hardware: nohw,")
    result = vilms("validate", "-f", str(project(content)))
    lines = [l for l in result.err.splitlines() if LOCATED.match(l)]
    assert len(lines) == 3
    numbers = [int(l.split(":")[1]) for l in lines]
    assert numbers == sorted(numbers)
    assert result.err.endswith("3 problems found\n  hint: memory fit not checked: fix the problems above first\n")


def test_json_format(project, vilms):
    import json

    result = vilms("validate", "-f", str(project(swap("    base: qwen2.5-1.5b", "    base: qwen-1.5b"))), "--format", "json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["valid"] is False
    (diag,) = report["diagnostics"]
    assert diag["path"] == "adapters.support-v1.base" and diag["line"] == 18 and diag["column"] == 11
    assert "did you mean 'qwen2.5-1.5b'" in diag["message"]
    assert report["hint"] == "memory fit not checked: fix the problems above first"


def test_plaintext_secret_is_reported_alongside_schema_errors(project, vilms):
    content = swap("api_keys: env:VILMS_API_KEYS", "api_keys: sk-live-0123456789abcdef").replace("context: 8192", "context: big")
    result = vilms("validate", "-f", str(project(content)))
    assert "plaintext secret" in result.err and "must be an integer" in result.err
    assert "sk-live" not in result.err
