"""The crash corpus: inputs and project states a hostile tester found that crashed `vilms build`
("internal error"), were accepted by `vilms validate` and broke a tool downstream, or lost data.

Each input now exits 1 with its exact located diagnostics (``vilms.yaml:L:C: path: message``
and hint), never a traceback, and a ``generated/`` that existed before is left untouched. The
project states (a file or a link at ``generated/``, a read-only folder, a build killed by a
signal, two builds at once) give a clear error, or leave ``generated/`` complete.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.compiler.minimal import MINIMAL
from tests.conftest import Result

M = MINIMAL
VILMS_COMMAND = [sys.executable, "-m", "vilms"]  # as tests/conftest.py's run_vilms, for Popen
FIT = "  hint: memory fit not checked: fix the problems above first\n"
FINITE = '  hint: write a finite number (or quote it if you mean the text: "{}")\n'
RANGE = "  hint: integers must be smaller than 2**63 (9223372036854775808) in magnitude\n"
PATH_HINT = "  hint: move the file under the folder of vilms.yaml\n"
SOURCE_HINT = "  hint: hf:<org>/<repo>[@<branch, tag or commit>] | ollama:<tag> | file:<path relative to vilms.yaml>.\n"
ALIAS_HINT = "  hint: YAML aliases (*name) are expanded where they are used; do not use them to multiply content\n"
ONE = "1 problem found\n"


def swap(old: str, new: str, text: str = M) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def params(entry: str) -> str:
    return swap("  chat: qwen2.5-1.5b", "  chat: {model: qwen2.5-1.5b, params: {%s}}" % entry)


def training(entry: str) -> str:
    return swap("    hardware: gpu1\n", "    hardware: gpu1\n    training: {%s}\n" % entry)


def gateway(entry: str) -> str:
    return swap("  api_keys: env:VILMS_API_KEYS", "  api_keys: env:VILMS_API_KEYS\n  %s" % entry)


def deployment(entry: str, name: str = "gpu") -> str:
    old = {"gpu": "engine: vllm}", "dev": "engine: llamacpp}"}[name]
    return swap(old, old[:-1] + ", " + entry + "}")


def serving(entry: str) -> str:
    return deployment("serving: {qwen2.5-1.5b: {%s}}" % entry)


ARCHITECTURE = "layers: 28, hidden_size: 1536, heads: 12, kv_heads: 2, head_dim: 128, intermediate_size: 8960, vocab_size: 151936"


def architecture(field: str) -> str:
    entry = re.sub(rf"\b{field}: (\d+)", rf"{field}: \1.0", ARCHITECTURE)
    return swap("    context: 8192\n", "    context: 8192\n    architecture: {%s}\n" % entry)


def source(ref: str) -> str:
    return swap("source: hf:Qwen/Qwen2.5-1.5B-Instruct", f"source: {ref}")


def invalid_source(ref: str) -> str:
    return f"vilms.yaml:9:13: models.qwen2.5-1.5b.source: '{ref}' is not a valid source\n" + SOURCE_HINT + ONE + FIT


# (id, vilms.yaml, the exact stderr of `vilms build`)
CASES: list[tuple[str, str, str]] = [
    # 1. numbers that are not finite: refused by the loader, where they stand
    ("nan-temperature", params("temperature: .nan"),
     "vilms.yaml:24:53: aliases.chat.params.temperature: .nan is not a finite number\n" + FINITE.format(".nan") + ONE),
    ("inf-repeat-penalty", params("repeat_penalty: .inf"),
     "vilms.yaml:24:56: aliases.chat.params.repeat_penalty: .inf is not a finite number\n" + FINITE.format(".inf") + ONE),
    ("nan-top-p-capitals", params("top_p: .NaN"),
     "vilms.yaml:24:47: aliases.chat.params.top_p: .NaN is not a finite number\n" + FINITE.format(".NaN") + ONE),
    ("inf-dropout", swap("lora: {r: 16}", "lora: {r: 16, dropout: .Inf}"),
     "vilms.yaml:21:28: adapters.support-v1.lora.dropout: .Inf is not a finite number\n" + FINITE.format(".Inf") + ONE),
    ("minus-inf-learning-rate", training("learning_rate: -.inf"),
     "vilms.yaml:23:31: adapters.support-v1.training.learning_rate: -.inf is not a finite number\n" + FINITE.format("-.inf") + ONE),
    ("inf-max-eval-perplexity", swap("    hardware: gpu1\n", "    hardware: gpu1\n    gate: {max_eval_perplexity: .inf}\n"),
     "vilms.yaml:23:33: adapters.support-v1.gate.max_eval_perplexity: .inf is not a finite number\n" + FINITE.format(".inf") + ONE),
    ("inf-read-timeout", gateway("read_timeout: .INF"),
     "vilms.yaml:31:17: gateway.read_timeout: .INF is not a finite number\n" + FINITE.format(".INF") + ONE),
    ("nan-connect-timeout", gateway("connect_timeout: .nan"),
     "vilms.yaml:31:20: gateway.connect_timeout: .nan is not a finite number\n" + FINITE.format(".nan") + ONE),
    ("overflowing-cooldown", gateway("cooldown: 1e999"),
     "vilms.yaml:31:13: gateway.cooldown: 1e999 is not a finite number\n" + FINITE.format("1e999") + ONE),
    ("plus-inf-eval-fraction", swap("format: chat}", "format: chat, eval_fraction: +.inf}"),
     "vilms.yaml:15:68: datasets.support.eval_fraction: +.inf is not a finite number\n" + FINITE.format("+.inf") + ONE),
    ("every-bad-number-at-once", gateway("read_timeout: .inf\n  cooldown: -.Inf\n  max_queue: 99999999999999999999"),
     "vilms.yaml:31:17: gateway.read_timeout: .inf is not a finite number\n" + FINITE.format(".inf")
     + "vilms.yaml:32:13: gateway.cooldown: -.Inf is not a finite number\n" + FINITE.format("-.Inf")
     + "vilms.yaml:33:14: gateway.max_queue: integer 99999999999999999999 is out of range\n" + RANGE + "3 problems found\n"),
    ("nan-where-text-is-meant", swap("project: demo", "project: .nan"),
     "vilms.yaml:2:10: project: .nan is not a finite number\n" + FINITE.format(".nan") + ONE),
    # 2. integers no int64 reader can take (and that Python refuses to convert past 4,300 digits)
    ("five-thousand-digits", swap("context: 8192", "context: " + "9" * 5000),
     "vilms.yaml:12:14: models.qwen2.5-1.5b.context: integer 999999999999… (5,000 characters) is out of range\n" + RANGE + ONE),
    ("two-to-the-63", training("seed: 9223372036854775808"),
     "vilms.yaml:23:22: adapters.support-v1.training.seed: integer 9223372036854775808 is out of range\n" + RANGE + ONE),
    ("minus-two-to-the-63", params("seed: -9223372036854775808"),
     "vilms.yaml:24:46: aliases.chat.params.seed: integer -9223372036854775808 is out of range\n" + RANGE + ONE),
    ("hex-too-big", params("max_tokens: 0x10000000000000000"),
     "vilms.yaml:24:52: aliases.chat.params.max_tokens: integer 0x10000000000000000 is out of range\n" + RANGE + ONE),
    ("octal-too-big", params("top_k: 0o1000000000000000000000"),
     "vilms.yaml:24:47: aliases.chat.params.top_k: integer 0o1000000000000000000000 is out of range\n" + RANGE + ONE),
    ("zero-padded-too-big", training("max_steps: 000" + "1" * 30),
     "vilms.yaml:23:27: adapters.support-v1.training.max_steps: integer 000111111111… (33 characters) is out of range\n" + RANGE + ONE),
    # 11. tabs and unclosed brackets, reported where they are
    ("tab-indent", "apiVersion: vilms/v1\nmodels:\n\tqwen: {}\n",
     "vilms.yaml:3:1: YAML syntax error: tabs are not allowed in indentation\n  hint: indent with spaces, not tabs\n" + ONE),
    ("tab-after-spaces", swap("    family: qwen2\n", "  \tfamily: qwen2\n"),
     "vilms.yaml:10:3: YAML syntax error: tabs are not allowed in indentation\n  hint: indent with spaces, not tabs\n" + ONE),
    ("unclosed-brace", swap("{kind: cpu, memory: 16GiB, cpus: 4}", "{kind: cpu, memory: 16GiB, cpus: 4"),
     "vilms.yaml:4:11: YAML syntax error: this '{' is never closed\n  hint: add the matching '}'\n" + ONE),
    ("unclosed-bracket", swap("fallbacks: [chat]}", "fallbacks: [chat}"),
     "vilms.yaml:25:70: YAML syntax error: this '[' is never closed\n  hint: add the matching ']'\n" + ONE),
    ("closed-brace-missing-comma", swap("  laptop: {kind: cpu, memory: 16GiB, cpus: 4}", "  laptop: {kind: cpu,\n    memory: 16GiB\n    cpus: 4}"),
     "vilms.yaml:6:9: YAML syntax error: did not find expected ',' or '}'\n  hint: separate the entries of a {...} or [...] with ','\n" + ONE),
    # 7. weights that leave the project, revisions that are paths
    ("gguf-absolute", swap("gguf: hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF", "gguf: file:/abs/model.gguf"),
     "vilms.yaml:8:11: models.qwen2.5-1.5b.gguf: file: gguf paths must be relative and stay inside the project folder\n"
     + PATH_HINT + ONE + FIT),
    ("gguf-escapes", swap("gguf: hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF", "gguf: file:../../../model.gguf"),
     "vilms.yaml:8:11: models.qwen2.5-1.5b.gguf: file: gguf paths must be relative and stay inside the project folder\n"
     + PATH_HINT + ONE + FIT),
    ("source-file-escapes", source("file:../weights"),
     "vilms.yaml:9:13: models.qwen2.5-1.5b.source: file: sources must be relative and stay inside the project folder\n"
     + PATH_HINT + ONE + FIT),
    ("revision-dotdot", source("hf:Qwen/Qwen2.5-1.5B-Instruct@../../x"), invalid_source("hf:Qwen/Qwen2.5-1.5B-Instruct@../../x")),
    ("revision-leading-slash", source("hf:Qwen/Qwen2.5-1.5B-Instruct@/main"), invalid_source("hf:Qwen/Qwen2.5-1.5B-Instruct@/main")),
    ("revision-double-slash", source("hf:Qwen/Qwen2.5-1.5B-Instruct@refs//pr"), invalid_source("hf:Qwen/Qwen2.5-1.5B-Instruct@refs//pr")),
    ("revision-trailing-slash", source("hf:Qwen/Qwen2.5-1.5B-Instruct@main/"), invalid_source("hf:Qwen/Qwen2.5-1.5B-Instruct@main/")),
    ("revision-dot-segment", source("hf:Qwen/Qwen2.5-1.5B-Instruct@a/./b"), invalid_source("hf:Qwen/Qwen2.5-1.5B-Instruct@a/./b")),
    # 6. names that collide with the layout of generated/
    ("deployment-named-training", swap("  gpu: {hardware", "  training: {hardware: gpu1, target: compose, engine: vllm}\n  gpu: {hardware"),
     "vilms.yaml:28:3: deployments.training: the name 'training' is reserved: vilms writes other files to generated/training\n"
     "  hint: rename the deployment; reserved names: manifest.json, training\n" + ONE + FIT),
    # 13. control and bidi characters in keys are shown escaped, never raw
    ("nul-and-rlo-in-key", swap("  chat: qwen2.5-1.5b", '  "ch\\0at\\u202e": qwen2.5-1.5b'),
     "vilms.yaml:24:3: aliases.ch\\x00at\\u202e: invalid name 'ch\\x00at\\u202e'\n"
     "  hint: Lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 63 characters.\n" + ONE + FIT),
    ("terminal-escape-in-key", swap("    family: qwen2\n", '    "\\e[31mfamily": qwen2\n'),
     "vilms.yaml:7:3: models.qwen2.5-1.5b: missing required key 'family'\n"
     "vilms.yaml:10:5: models.qwen2.5-1.5b.\\x1b[31mfamily: unknown key '\\x1b[31mfamily' (did you mean 'family'?)\n"
     "  hint: allowed keys here: architecture, chat_template, context, dtype, family, gguf, ollama, params, quantization, source, task, token\n"
     "2 problems found\n" + FIT),
    ("bidi-in-top-level-key", M + '"gate\\u202eway": {}\n',
     "vilms.yaml:31:1: gate\\u202eway: unknown key 'gate\\u202eway' (did you mean 'gateway'?)\n"
     "  hint: allowed keys here: adapters, aliases, apiVersion, artifact_store, datasets, deployments, gateway, gitops, hardware, models, project, telemetry\n" + ONE + FIT),
    # 5. aliases that multiply bytes: refused at the alias that crosses 16 MiB, before anything grows
    ("a-megabyte-referenced-3000-times",
     swap("  chat: qwen2.5-1.5b", "  chat: {model: qwen2.5-1.5b, params: {stop: [" + ", ".join(["*big"] * 3000) + "]}}",
          swap("project: demo", "project: &big " + "x" * (1 << 20))),
     "vilms.yaml:24:131: aliases.chat.params.stop[14]: document expands to more than 16 MiB at this alias\n" + ALIAS_HINT + ONE),
    ("a-prompt-shared-by-8000-aliases",
     swap("  chat: qwen2.5-1.5b", "  chat: {model: qwen2.5-1.5b, system: &p " + "y" * 20_000 + "}\n"
          + "".join(f"  a{i}: {{model: qwen2.5-1.5b, system: *p}}\n" for i in range(8000)).rstrip("\n")),
     "vilms.yaml:861:39: aliases.a836.system: document expands to more than 16 MiB at this alias\n" + ALIAS_HINT + ONE),
    # 14. serving settings that cannot work: located at the key, with what would
    ("serving-a-model-not-served", deployment("serving: {qwen2.5-1.5: {replicas: 2}}"),
     "vilms.yaml:28:66: deployments.gpu.serving.qwen2.5-1.5: deployment 'gpu' does not serve model 'qwen2.5-1.5' (did you mean 'qwen2.5-1.5b'?)\n"
     "  hint: it serves: qwen2.5-1.5b\n" + ONE + FIT),
    ("serving-on-llamacpp", deployment("serving: {qwen2.5-1.5b: {replicas: 2}}", "dev"),
     "vilms.yaml:27:60: deployments.dev.serving: serving settings apply to engines vllm and ray, not 'llamacpp'\n"
     "  hint: remove serving:, or use engine: vllm\n" + ONE + FIT),
    ("tensor-parallel-not-dividing-heads",
     swap("    context: 8192\n", "    context: 8192\n    architecture: {%s}\n" % ARCHITECTURE, serving("tensor_parallel: 3").replace("gpus: 1,", "gpus: 8,")),
     "vilms.yaml:29:98: deployments.gpu.serving.qwen2.5-1.5b.tensor_parallel: tensor parallel 3 does not divide the attention heads "
     "of 'qwen2.5-1.5b' (12 heads, 2 KV heads)\n  hint: vLLM accepts tensor_parallel 1, 2, 4, 6 on 8 GPU(s) per node\n" + ONE),
    ("gpus-not-tp-times-pp", serving("gpus: 3, tensor_parallel: 1, pipeline_parallel: 2").replace("gpus: 1,", "gpus: 8,"),
     "vilms.yaml:28:87: deployments.gpu.serving.qwen2.5-1.5b.gpus: gpus 3 is not tensor_parallel × pipeline_parallel (1 × 2 = 2)\n"
     "  hint: leave gpus out: it defaults to the product\n" + ONE),
    ("gpus-beyond-a-compose-host", serving("gpus: 2"),
     "vilms.yaml:28:87: deployments.gpu.serving.qwen2.5-1.5b.gpus: 2 GPUs per replica are more than the 1 GPU(s) of hardware 'gpu1': "
     "target compose runs on one host\n  hint: only target helm runs a model across nodes (a LeaderWorkerSet)\n" + ONE),
    ("nodes-on-a-cpu-profile", swap("cpus: 4}", "cpus: 4, nodes: 2}"),
     "vilms.yaml:4:54: hardware.laptop.nodes: nodes apply to kind gpu, not 'cpu'\n"
     "  hint: a jetson or cpu profile is one machine; remove nodes\n" + ONE + FIT),
    ("compose-replicas-beyond-the-gpus", deployment("replicas: 2"),
     "vilms.yaml:28:19: deployments.gpu.hardware: the vLLM engines of deployment 'gpu' need 2 GPUs (qwen2.5-1.5b 1 × 2 replicas) "
     "but hardware 'gpu1' has 1: on one host each engine gets GPUs of its own\n  hint: serve fewer models, lower replicas or "
     "serving.<model>.tensor_parallel, use a profile with more GPUs, or target helm\n" + ONE),
    ("engine-autoscale-on-compose", serving("autoscale: {max: 3}"),
     "vilms.yaml:28:92: deployments.gpu.serving.qwen2.5-1.5b.autoscale: autoscale applies to target helm only (a KEDA ScaledObject)\n"
     "  hint: compose runs the declared replicas; remove autoscale\n" + ONE + FIT),
    ("rolling-update-on-compose", deployment("update: {max_surge: 0, max_unavailable: 1}"),
     "vilms.yaml:28:64: deployments.gpu.update: update applies to target helm only\n" + ONE + FIT),
    ("ollama-replicas-on-compose",
     swap("  gpu: {hardware: gpu1, target: compose, engine: vllm}",
          "  gpu: {hardware: gpu1, target: compose, engine: vllm}\n  box: {hardware: laptop, target: compose, engine: ollama, replicas: 2}"),
     "vilms.yaml:29:70: deployments.box.replicas: a compose deployment runs one Ollama server per host: replicas cannot be more than 1\n"
     "  hint: drop replicas, or serve the model with engine vllm on a gpu profile (compose) or target helm\n" + ONE + FIT),
]

# 3. a float where an integer is meant, in every integer field of vilms/v1:
# (id, vilms.yaml, line:column, path, hint)
INTEGER_CASES: list[tuple[str, str, str, str, str]] = [
    ("hardware.cpus", swap("cpus: 4}", "cpus: 4.0}"), "4:44", "hardware.laptop.cpus", "write 4, not 4.0"),
    ("hardware.gpus", swap("gpus: 1,", "gpus: 1.0,"), "5:27", "hardware.gpu1.gpus", "write 1, not 1.0"),
    ("architecture.layers", architecture("layers"), "13:28", "models.qwen2.5-1.5b.architecture.layers", "write 28, not 28.0"),
    ("architecture.hidden_size", architecture("hidden_size"), "13:45", "models.qwen2.5-1.5b.architecture.hidden_size", "write 1536, not 1536.0"),
    ("architecture.heads", architecture("heads"), "13:58", "models.qwen2.5-1.5b.architecture.heads", "write 12, not 12.0"),
    ("architecture.kv_heads", architecture("kv_heads"), "13:72", "models.qwen2.5-1.5b.architecture.kv_heads", "write 2, not 2.0"),
    ("architecture.head_dim", architecture("head_dim"), "13:85", "models.qwen2.5-1.5b.architecture.head_dim", "write 128, not 128.0"),
    ("architecture.intermediate_size", architecture("intermediate_size"), "13:109",
     "models.qwen2.5-1.5b.architecture.intermediate_size", "write 8960, not 8960.0"),
    ("architecture.vocab_size", architecture("vocab_size"), "13:127", "models.qwen2.5-1.5b.architecture.vocab_size", "write 151936, not 151936.0"),
    ("model.context", swap("context: 8192", "context: 4096.0"), "12:14", "models.qwen2.5-1.5b.context", "write 4096, not 4096.0"),
    ("adapter.lora.r", swap("lora: {r: 16}", "lora: {r: 16.0}"), "21:15", "adapters.support-v1.lora.r", "write 16, not 16.0"),
    ("adapter.training.epochs", training("epochs: 3.0"), "23:24", "adapters.support-v1.training.epochs", "write 3, not 3.0"),
    ("adapter.training.max_steps", training("max_steps: 100.0"), "23:27", "adapters.support-v1.training.max_steps", "write 100, not 100.0"),
    ("adapter.training.batch_size", training("batch_size: 4.0"), "23:28", "adapters.support-v1.training.batch_size", "write 4, not 4.0"),
    ("adapter.training.gradient_accumulation_steps", training("gradient_accumulation_steps: 2.0"), "23:45",
     "adapters.support-v1.training.gradient_accumulation_steps", "write 2, not 2.0"),
    ("adapter.training.seq_len", training("seq_len: 1024.0"), "23:25", "adapters.support-v1.training.seq_len", "write 1024, not 1024.0"),
    ("adapter.training.seed", training("seed: 7.0"), "23:22", "adapters.support-v1.training.seed", "write 7, not 7.0"),
    ("adapter.training.save_steps", training("save_steps: 50.0"), "23:28", "adapters.support-v1.training.save_steps", "write 50, not 50.0"),
    ("adapter.training.eval_steps", training("eval_steps: 50.0"), "23:28", "adapters.support-v1.training.eval_steps", "write 50, not 50.0"),
    ("adapter.training.logging_steps", training("logging_steps: 10.0"), "23:31", "adapters.support-v1.training.logging_steps", "write 10, not 10.0"),
    ("adapter.training.max_restarts", training("max_restarts: 3.0"), "23:30", "adapters.support-v1.training.max_restarts", "write 3, not 3.0"),
    ("params.top_k", params("top_k: 40.0"), "24:47", "aliases.chat.params.top_k", "write 40, not 40.0"),
    ("params.seed", params("seed: 1.0"), "24:46", "aliases.chat.params.seed", "write 1, not 1.0"),
    ("params.max_tokens", params("max_tokens: 256.5"), "24:52", "aliases.chat.params.max_tokens", "write a whole number"),
    ("deployment.replicas", deployment("replicas: 2.0"), "28:66", "deployments.gpu.replicas", "write 2, not 2.0"),
    ("deployment.parallel", deployment("parallel: 4.0"), "28:66", "deployments.gpu.parallel", "write 4, not 4.0"),
    ("deployment.context", deployment("context: 4096.0"), "28:65", "deployments.gpu.context", "write 4096, not 4096.0"),
    ("deployment.gateway_port", deployment("gateway_port: 8080.0"), "28:70", "deployments.gpu.gateway_port", "write 8080, not 8080.0"),
    ("deployment.engine_port", deployment("engine_port: 8101.0", "dev"), "27:73", "deployments.dev.engine_port", "write 8101, not 8101.0"),
    ("deployment.threads", deployment("threads: 4.0", "dev"), "27:69", "deployments.dev.threads", "write 4, not 4.0"),
    ("deployment.autoscale.min", deployment("autoscale: {min: 1.0}"), "28:73", "deployments.gpu.autoscale.min", "write 1, not 1.0"),
    ("deployment.autoscale.max", deployment("autoscale: {max: 3.0}"), "28:73", "deployments.gpu.autoscale.max", "write 3, not 3.0"),
    ("deployment.autoscale.cpu_percent", deployment("autoscale: {cpu_percent: 70.0}"), "28:81",
     "deployments.gpu.autoscale.cpu_percent", "write 70, not 70.0"),
    ("deployment.autoscale.inflight", deployment("autoscale: {inflight: 8.0}"), "28:78", "deployments.gpu.autoscale.inflight", "write 8, not 8.0"),
    ("deployment.update.max_surge", deployment("update: {max_surge: 1.0}"), "28:76", "deployments.gpu.update.max_surge", "write 1, not 1.0"),
    ("deployment.update.max_unavailable", deployment("update: {max_unavailable: 0.0}"), "28:82",
     "deployments.gpu.update.max_unavailable", "write 0, not 0.0"),
    ("hardware.nodes", swap("gpus: 1,", "gpus: 1, nodes: 2.0,"), "5:37", "hardware.gpu1.nodes", "write 2, not 2.0"),
    ("modelServing.gpus", serving("gpus: 2.0"), "28:87", "deployments.gpu.serving.qwen2.5-1.5b.gpus", "write 2, not 2.0"),
    ("modelServing.tensor_parallel", serving("tensor_parallel: 2.0"), "28:98",
     "deployments.gpu.serving.qwen2.5-1.5b.tensor_parallel", "write 2, not 2.0"),
    ("modelServing.pipeline_parallel", serving("pipeline_parallel: 1.0"), "28:100",
     "deployments.gpu.serving.qwen2.5-1.5b.pipeline_parallel", "write 1, not 1.0"),
    ("modelServing.replicas", serving("replicas: 3.0"), "28:91", "deployments.gpu.serving.qwen2.5-1.5b.replicas", "write 3, not 3.0"),
    ("modelServing.max_num_seqs", serving("max_num_seqs: 64.0"), "28:95",
     "deployments.gpu.serving.qwen2.5-1.5b.max_num_seqs", "write 64, not 64.0"),
    ("modelServing.autoscale.min", serving("autoscale: {min: 1.0, max: 2}"), "28:98",
     "deployments.gpu.serving.qwen2.5-1.5b.autoscale.min", "write 1, not 1.0"),
    ("modelServing.autoscale.max", serving("autoscale: {max: 2.0}"), "28:98",
     "deployments.gpu.serving.qwen2.5-1.5b.autoscale.max", "write 2, not 2.0"),
    ("modelServing.autoscale.queue", serving("autoscale: {max: 2, queue: 5.0}"), "28:108",
     "deployments.gpu.serving.qwen2.5-1.5b.autoscale.queue", "write 5, not 5.0"),
    ("gateway.retries", gateway("retries: 2.0"), "31:12", "gateway.retries", "write 2, not 2.0"),
    ("gateway.max_queue", gateway("max_queue: 1e3"), "31:14", "gateway.max_queue", "write 1000, not 1000.0"),
    ("gateway.eject_after", gateway("eject_after: 5.0"), "31:16", "gateway.eject_after", "write 5, not 5.0"),
    ("gateway.port", gateway("port: 8080.0"), "31:9", "gateway.port", "write 8080, not 8080.0"),
]


def _prepared(project, content: str | bytes) -> tuple[Path, Path]:
    path = project(content)
    generated = path.parent / "generated"
    generated.mkdir()
    (generated / "keep.txt").write_text("untouched")
    return path, generated


def _refused(result: Result) -> None:
    assert result.code == 1, (result.out, result.err)
    everything = result.out + result.err
    assert "Traceback" not in everything and "internal error" not in everything, everything


@pytest.mark.parametrize("content,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_gets_its_exact_diagnostics(project, vilms, content, expected):
    path, generated = _prepared(project, content)
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == expected
    assert sorted(p.name for p in generated.iterdir()) == ["keep.txt"]
    assert not (path.parent / ".vilms").exists()


@pytest.mark.parametrize("content,where,path,hint", [c[1:] for c in INTEGER_CASES], ids=[c[0] for c in INTEGER_CASES])
def test_a_float_where_an_integer_is_meant_is_refused(project, vilms, content, where, path, hint):
    """Validate no longer calls these valid, and build never writes `4096.0` into an artefact."""
    file, generated = _prepared(project, content)
    located = f"vilms.yaml:{where}: {path}: must be an integer, not a number\n  hint: {hint}\n" + ONE
    result = vilms("validate", "-f", "vilms.yaml", cwd=file.parent)
    _refused(result)
    assert result.err == located + FIT
    result = vilms("build", "-f", "vilms.yaml", cwd=file.parent)
    _refused(result)
    assert result.err == located + FIT
    assert sorted(p.name for p in generated.iterdir()) == ["keep.txt"]


def test_every_integer_field_of_the_schema_is_in_the_corpus():
    from vilms.compiler.schema import schema

    found = set()
    for name, definition in schema()["$defs"].items():
        def walk(node: dict, prefix: str) -> None:
            for key, sub in node.get("properties", {}).items():
                if sub.get("type") == "integer" or "integer" in (sub.get("type") or []):
                    found.add(f"{prefix}.{key}")
                walk(sub, f"{prefix}.{key}")

        walk(definition, {"params": "params", "hardware": "hardware", "architecture": "architecture", "model": "model",
                          "adapter": "adapter", "deployment": "deployment", "gateway": "gateway"}.get(name, name))
    assert found == {c[0] for c in INTEGER_CASES}


def test_non_finite_numbers_are_refused_for_every_reader_of_vilms_files():
    """The loader is shared by the compiler, the gateway's routes loader and the trainer's config
    reader: none of them ever sees nan or inf."""
    from vilms.compiler.errors import InvalidInputError
    from vilms.runtime.gateway.routes import parse_routes

    with pytest.raises(InvalidInputError) as refused:
        parse_routes("apiVersion: vilms/v1\nkind: GatewayRoutes\ngateway: {read_timeout_s: .nan}\n", "routes.yaml")
    assert [d.render().splitlines()[0] for d in refused.value.diagnostics] == [
        "routes.yaml:3:27: gateway.read_timeout_s: .nan is not a finite number"]


# --- 4. long fallback chains


def _chain(length: int, *, cycle: bool) -> str:
    links = "".join(f"  c{i}: {{model: qwen2.5-1.5b, fallbacks: [c{i + 1}]}}\n" for i in range(length))
    last = f"  c{length}: {{model: qwen2.5-1.5b, fallbacks: [c0]}}" if cycle else f"  c{length}: qwen2.5-1.5b"
    return swap("  chat: qwen2.5-1.5b", "  chat: qwen2.5-1.5b\n" + links + last)


def test_a_fallback_chain_of_1000_aliases_builds_diffs_and_validates(project, vilms):
    path = project(_chain(1000, cycle=False))
    for command in (("validate",), ("build",), ("build", "--check"), ("diff",)):
        result = vilms(*command, "-f", "vilms.yaml", cwd=path.parent)
        assert result.code == 0, (command, result.err[-2000:])
    routes = (path.parent / "generated" / "dev" / "gateway" / "routes.yaml").read_text()
    assert "c999" in routes and "c1000" in routes


def test_a_fallback_cycle_of_1001_aliases_is_reported_once_and_shortened(project, vilms):
    path = project(_chain(1000, cycle=True))
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (
        "vilms.yaml:25:41: aliases.c0.fallbacks[0]: fallback cycle: c0 → c1 → c2 → … → c1000 → c0 (1,001 aliases)\n"
        "  hint: fallbacks must end at an alias without fallbacks\n" + ONE + FIT)


# --- 6. names that could collide inside generated/


def test_names_that_look_like_the_layout_build_without_collisions(project, vilms):
    """Deployments and adapters named after the files and folders of generated/: every artefact is
    written once (the renderer would fail loudly on a second file at one path)."""
    from vilms.compiler.pipeline import compile_files

    content = swap("  gpu: {hardware: gpu1, target: compose, engine: vllm}",
                   "  gpu: {hardware: gpu1, target: compose, engine: vllm}\n"
                   "  local: {hardware: laptop, target: local, engine: llamacpp}\n"
                   "  gateway: {hardware: gpu1, target: helm, engine: vllm}\n"
                   "  vllm: {hardware: gpu1, target: compose, engine: vllm}\n"
                   "  helm: {hardware: gpu1, target: helm, engine: vllm}\n"
                   "  docker-compose: {hardware: gpu1, target: compose, engine: vllm}\n"
                   "  ollama: {hardware: gpu1, target: compose, engine: vllm}")
    for adapter in ("local", "docker-compose", "manifest", "routes", "values", "helm"):
        content = content.replace("adapters:\n", f"adapters:\n  {adapter}:\n    base: qwen2.5-1.5b\n    dataset: support\n"
                                                 "    method: lora\n    lora: {r: 8}\n    hardware: gpu1\n", 1)
    path = project(content)
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    assert result.code == 0, result.err
    _doc, _plan, files = compile_files(path)
    written = {p.relative_to(path.parent / "generated").as_posix() for p in (path.parent / "generated").rglob("*") if p.is_file()}
    assert written == set(files)
    for adapter in ("local", "docker-compose", "manifest", "routes", "values", "helm", "support-v1"):
        assert f"training/{adapter}.yaml" in files
    for dep, leaf in (("local", "local.yaml"), ("gateway", "helm/values.yaml"), ("vllm", "docker-compose.yaml"),
                      ("helm", "helm/values.yaml"), ("docker-compose", "docker-compose.yaml"), ("ollama", "vllm/qwen2.5-1.5b.yaml")):
        assert f"{dep}/{leaf}" in files and f"{dep}/gateway/routes.yaml" in files


@pytest.mark.parametrize("paths", [("a/b.yaml", "a/b.yaml"), ("a", "a/b.yaml"), ("a/b.yaml", "a")])
def test_the_renderer_refuses_a_second_artefact_at_one_path(paths):
    from vilms.compiler.render import _Tree

    tree = _Tree()
    tree.put(paths[0], b"first")
    with pytest.raises(AssertionError) as clash:
        tree.put(paths[1], b"second")
    assert "names must not collide with the layout of generated/" in str(clash.value)


# --- 7. symbolic links out of the project


def test_a_dataset_linked_from_outside_the_project_is_refused(project, vilms, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.jsonl").write_text('{"messages": []}\n')
    path, generated = _prepared(project, M)
    (path.parent / "data").mkdir()
    (path.parent / "data" / "support.jsonl").symlink_to(outside / "secret.jsonl")
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (
        f"vilms.yaml:15:19: datasets.support.path: data/support.jsonl leads outside the project folder through a symbolic link "
        f"(to {(outside / 'secret.jsonl').resolve()})\n  hint: copy the file into the project instead of linking to it\n" + ONE + FIT)
    assert sorted(p.name for p in generated.iterdir()) == ["keep.txt"]


def test_a_linked_data_folder_and_a_link_loop_are_refused_links_inside_and_linked_weights_are_fine(project, vilms, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    content = swap("  support: {path: data/support.jsonl, format: chat}",
                   "  support: {path: data/support.jsonl, format: chat}\n  loop: {path: loop/x.jsonl, format: chat}\n"
                   "  inside: {path: alias.jsonl, format: chat}")
    path = project(content.replace("gguf: hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF", "gguf: file:weights/m.gguf"))  # weights may be linked in
    (path.parent / "data").symlink_to(outside)
    (path.parent / "loop").symlink_to(path.parent / "loop")
    (path.parent / "real.jsonl").write_text("")
    (path.parent / "alias.jsonl").symlink_to(path.parent / "real.jsonl")
    (path.parent / "weights").symlink_to("/")
    result = vilms("validate", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (
        f"vilms.yaml:15:19: datasets.support.path: data/support.jsonl leads outside the project folder through a symbolic link "
        f"(to {outside.resolve() / 'support.jsonl'})\n"
        "  hint: copy the file into the project instead of linking to it\n"
        "vilms.yaml:16:16: datasets.loop.path: loop/x.jsonl cannot be resolved (a loop of symbolic links)\n" + PATH_HINT
        + "2 problems found\n" + FIT)


def test_safe_revisions_build(project, vilms):
    for revision in ("main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567", "release-2024.01_rc-1"):
        path = project(source(f"hf:Qwen/Qwen2.5-1.5B-Instruct@{revision}"))
        result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
        assert result.code == 0, (revision, result.err)
        assert f"revision: {revision}" in (path.parent / "generated" / "training" / "support-v1.yaml").read_text()


# --- 8. what stands at generated/


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_file_at_generated_is_refused_and_kept(project, vilms):
    path = project(M)
    (path.parent / "generated").write_text("my notes\n")
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (f"{path.parent / 'generated'} is a file, not a folder; vilms writes its output there\n"
                          "  hint: move the file away (vilms never deletes it), then build again\n")
    assert (path.parent / "generated").read_text() == "my notes\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["generated", "vilms.yaml"]


@pytest.mark.parametrize("target", ["dangling", "folder"])
def test_a_link_at_generated_is_refused_and_kept(project, vilms, tmp_path_factory, target):
    path = project(M)
    real = tmp_path_factory.mktemp("elsewhere") / "real-output"
    if target == "folder":
        real.mkdir()
        (real / "mine.txt").write_text("kept")
    (path.parent / "generated").symlink_to(real)
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (f"{path.parent / 'generated'} is a symbolic link; vilms writes generated/ as a folder of its own "
                          "and never replaces a link\n  hint: remove the link (what it points to is not touched), then build again\n")
    assert (path.parent / "generated").is_symlink() and os.readlink(path.parent / "generated") == str(real)
    assert sorted(p.name for p in path.parent.iterdir()) == ["generated", "vilms.yaml"]
    if target == "folder":
        assert _tree(real) == {"mine.txt": b"kept"}


class ReadOnly:
    """A folder nothing may be created in: chmod for a normal user; root writes anywhere, so
    for root the folder is made immutable (chattr +i) instead."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root = os.geteuid() == 0
        self.strerror = os.strerror(1 if self.root else 13)  # EPERM, EACCES

    def __enter__(self) -> ReadOnly:
        if self.root:
            subprocess.run(["chattr", "+i", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o555)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.root:
            subprocess.run(["chattr", "-i", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o755)


def test_a_read_only_project_folder_is_a_clear_error(project, vilms):
    path = project(M)
    with ReadOnly(path.parent) as read_only:
        result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (f"cannot create {path.parent / '.vilms' / 'project.lock'}: {read_only.strerror}\n"
                          f"  hint: {path.parent} must be writable: vilms writes generated/ and .vilms/ beside vilms.yaml\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["vilms.yaml"]


def test_a_read_only_project_folder_with_its_state_folder_is_a_clear_error(project, vilms):
    path = project(M)
    assert vilms("build", "-f", "vilms.yaml", cwd=path.parent).code == 0
    before = _tree(path.parent / "generated")
    path.write_text(swap("context: 8192", "context: 4096"))
    with ReadOnly(path.parent) as read_only:
        result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (f"cannot write {path.parent / 'generated'}: {read_only.strerror}\n"
                          f"  hint: {path.parent} must be writable: vilms writes generated/ beside vilms.yaml\n")
    assert _tree(path.parent / "generated") == before
    assert sorted(p.name for p in path.parent.iterdir()) == [".vilms", "generated", "vilms.yaml"]


# --- 9. a build killed while it writes


def _start(path: Path, pause: str | None) -> subprocess.Popen:
    """A real `vilms build`; with ``pause`` it waits at that step of the write for a line on stdin."""
    env = {k: v for k, v in os.environ.items() if k != "VILMS_TEST_WRITE_PAUSE"}
    if pause:
        env["VILMS_TEST_WRITE_PAUSE"] = pause
    return subprocess.Popen([*VILMS_COMMAND, "build", "-f", "vilms.yaml"], cwd=path.parent, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_pause(proc: subprocess.Popen, step: str) -> None:
    line = proc.stderr.readline()
    assert line == f"vilms: paused at {step}\n", line + proc.stderr.read()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".generated."))


def _old_and_new(project) -> tuple[Path, dict[str, bytes], dict[str, bytes]]:
    from vilms.compiler.pipeline import compile_files

    path = project(M)
    assert run_build(path).code == 0
    old = _tree(path.parent / "generated")
    path.write_text(swap("context: 8192", "context: 4096"))
    new = compile_files(path)[2]
    assert new != old
    return path, old, new


def run_build(path: Path) -> Result:
    from tests.conftest import run_vilms

    return run_vilms("build", "-f", "vilms.yaml", cwd=path.parent)


# (where the build waits, the signal, which tree generated/ holds after, whether temporary folders stay)
KILLS = [
    ("staged", signal.SIGINT, "old", False),
    ("staged", signal.SIGTERM, "old", False),
    ("staged", signal.SIGKILL, "old", True),
    ("swapped", signal.SIGINT, "new", False),
    ("swapped", signal.SIGTERM, "new", False),
    ("swapped", signal.SIGKILL, "new", True),
    ("between-renames", signal.SIGINT, "new", False),  # the portable path holds the signal until both renames are done
    ("between-renames", signal.SIGTERM, "new", False),
    ("between-renames", signal.SIGKILL, "old", True),  # SIGKILL cannot be held: generated/ is missing; the next build restores
]


@pytest.mark.parametrize("step,sig,after,leftover", KILLS, ids=[f"{k[0]}-{k[1].name}" for k in KILLS])
def test_a_build_killed_while_writing_leaves_a_complete_tree(project, step, sig, after, leftover):
    path, old, new = _old_and_new(project)
    proc = _start(path, step)
    _wait_for_pause(proc, step)
    proc.send_signal(sig)
    time.sleep(0.2)  # let the signal land (or stay pending) before the build may go on
    _out, err = proc.communicate("go on\n", timeout=30)
    assert "Traceback" not in err and "internal error" not in err, err
    generated = path.parent / "generated"
    if step == "between-renames" and sig == signal.SIGKILL:
        assert not generated.exists()  # the one state only SIGKILL on a system without renameat2 reaches
    else:
        assert _tree(generated) == (old if after == "old" else new)
    assert bool(_leftovers(path.parent)) == leftover, _leftovers(path.parent)
    result = run_build(path)
    assert result.code == 0, result.err
    assert _tree(generated) == new
    assert _leftovers(path.parent) == []


def test_signals_at_random_moments_never_leave_a_partial_tree(project):
    """No pause: SIGINT, SIGTERM and SIGKILL at random moments of real builds."""
    import random

    path, old, new = _old_and_new(project)
    trees = [old, new]
    rng = random.Random(1234)
    for i in range(15):
        content = swap("context: 8192", f"context: {4096 + i}")
        path.write_text(content)
        proc = _start(path, None)
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal((signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[i % 3])
        proc.communicate("", timeout=30)
        from vilms.compiler.pipeline import compile_files

        current = compile_files(path)[2]
        tree = _tree(path.parent / "generated")
        assert tree in trees or tree == current, f"round {i}: a partial tree"
        trees = [tree, current]
    assert run_build(path).code == 0
    assert _leftovers(path.parent) == []


# --- 10. two builds at once


def test_a_second_build_while_one_writes_names_the_first(project, vilms):
    path = project(M)
    first = _start(path, "staged")
    try:
        _wait_for_pause(first, "staged")
        second = vilms("build", "-f", "vilms.yaml", cwd=path.parent, env={"VILMS_LOCK_WAIT": "0.3"})
        _refused(second)
        assert second.err == (
            f"another vilms command (pid {first.pid}) is writing this project; waited 0.3 s, try again when it ends\n"
            f"  hint: the lock is {path.parent / '.vilms' / 'project.lock'}; it is released when that command exits "
            "(wait longer with VILMS_LOCK_WAIT=SECONDS)\n")
        assert vilms("validate", "-f", "vilms.yaml", cwd=path.parent).code == 0  # readers take no lock
        check = vilms("build", "--check", "-f", "vilms.yaml", cwd=path.parent)
        assert check.code == 4 and "generated/manifest.json: missing" in check.err
    finally:
        first.communicate("go on\n", timeout=30)
    assert vilms("build", "-f", "vilms.yaml", cwd=path.parent).code == 0


def test_a_file_where_the_state_folder_goes_is_a_clear_error(project, vilms):
    path = project(M)
    (path.parent / ".vilms").write_text("mine\n")
    result = vilms("build", "-f", "vilms.yaml", cwd=path.parent)
    _refused(result)
    assert result.err == (f"{path.parent / '.vilms'} is not a folder; vilms keeps its project state there\n"
                          "  hint: move that file away, then try again\n")
    assert (path.parent / ".vilms").read_text() == "mine\n" and not (path.parent / "generated").exists()


def test_the_lock_is_reentrant_and_stays_out_of_git(tmp_path):
    from vilms.compiler.errors import ActionError
    from vilms.compiler.project_lock import project_lock

    releases = tmp_path / ".vilms" / "releases"
    releases.mkdir(parents=True)
    (releases / "support-v1.jsonl").write_text("{}\n")
    with project_lock(tmp_path):
        with project_lock(tmp_path):  # a caller that holds it (rollout) may call build
            pass
        holder = subprocess.run([sys.executable, "-c", "from pathlib import Path; from vilms.compiler.project_lock import "
                                 f"project_lock\nwith project_lock(Path({str(tmp_path)!r})): pass"],
                                capture_output=True, text=True, env={**os.environ, "VILMS_LOCK_WAIT": "0"})
        assert holder.returncode == 1 and f"ActionError: another vilms command (pid {os.getpid()})" in holder.stderr
    with project_lock(tmp_path):  # released
        pass
    assert (tmp_path / ".vilms" / ".gitignore").read_text() == (
        "# the lock and the journal of a command writing this project; never committed\nproject.lock\nrelease.journal.json\n")
    assert (releases / "support-v1.jsonl").read_text() == "{}\n"
    if subprocess.run(["git", "--version"], capture_output=True).returncode == 0:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path, capture_output=True, text=True).stdout
        assert sorted(status.splitlines()) == ["?? .vilms/.gitignore", "?? .vilms/releases/support-v1.jsonl"]
    (tmp_path / ".vilms" / ".gitignore").write_text("other\n")
    with project_lock(tmp_path):
        pass
    assert (tmp_path / ".vilms" / ".gitignore").read_text() == "other\nproject.lock\nrelease.journal.json\n"
    assert ActionError  # the error type a second holder gets (asserted across processes above)


# --- 12. characters YAML 1.1 readers would not keep, end to end

TRICKY = ["a\x85b", "two\nlines\x85then", "line\u2028separator", "para\u2029graph", "end\u2028", "c1\x9fcontrol", "del\x7f", "\n",
          "l1\n\n", "tab\there", "bom\ufeff", "bidi\u202e", "emoji \U0001f680", "nbsp\xa0x"]


def test_the_serializer_escapes_what_yaml_1_1_readers_would_fold():
    from vilms.compiler.serialize import PureDumper, load_yaml, to_yaml

    for value in ("a\x85b", "l1\nl2\u2028x", "x\u2029", "l1\nl2\x85"):
        for dumper in (None, PureDumper):
            text = to_yaml({"s": value}, source=None, dumper=dumper)
            assert not any(c in text.decode() for c in "\x85\u2028\u2029"), text
            assert text.startswith(b's: "') and load_yaml(text) == {"s": value}


def _quoted(value: str) -> str:
    """``value`` as a YAML double-quoted scalar with everything but printable ASCII escaped."""
    def escape(c: str) -> str:
        code = ord(c)
        if c in '"\\':
            return "\\" + c
        if 0x20 <= code < 0x7F:
            return c
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

    return '"' + "".join(escape(c) for c in value) + '"'


def test_tricky_characters_survive_helm_and_the_gateway_loader(project, vilms):
    from tests.support.validators import helm_render, load_yaml, manifests
    from vilms.runtime.gateway.routes import parse_routes

    entries = "".join(f"  s{i}: {{model: qwen2.5-1.5b, system: {_quoted(v)}, params: {{stop: [{_quoted(v)}]}}}}\n"
                      for i, v in enumerate(TRICKY))
    content = swap("  chat: qwen2.5-1.5b\n", "  chat: qwen2.5-1.5b\n" + entries).replace(
        "target: compose, engine: vllm}", "target: helm, engine: vllm}")
    path = project(content)
    assert vilms("build", "-f", "vilms.yaml", cwd=path.parent).code == 0
    generated = path.parent / "generated"
    for dep in ("dev", "gpu"):
        routes = parse_routes((generated / dep / "gateway" / "routes.yaml").read_text(encoding="utf-8"))
        for i, value in enumerate(TRICKY):
            assert routes.aliases[f"s{i}"].system == value
    docs = manifests(helm_render(generated / "gpu" / "helm"))
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap" and "routes.yaml" in d["data"]]
    text = config_map["data"]["routes.yaml"]
    assert text.encode("utf-8") == (generated / "gpu" / "gateway" / "routes.yaml").read_bytes()
    for reader in (lambda t: parse_routes(t).aliases, lambda t: load_yaml(t)["aliases"]):
        aliases = reader(text)
        for i, value in enumerate(TRICKY):
            alias = aliases[f"s{i}"]
            assert (alias.system if hasattr(alias, "system") else alias["system"]) == value


# --- 13. the terminal never gets raw control characters


def test_diagnostics_escape_what_a_terminal_would_interpret():
    from vilms.compiler.errors import Diagnostic, printable

    assert printable("a\x00b\u202ec\x1b[0m\u200b\U000e0001 é →") == "a\\x00b\\u202ec\\x1b[0m\\u200b\\U000e0001 é →"
    diag = Diagnostic("vilms\x07.yaml", 3, 4, "aliases.x\u202e", "bad\x00 value\n  table line", hint="fix\rit")
    assert diag.render() == "vilms\\x07.yaml:3:4: aliases.x\\u202e: bad\\x00 value\n  table line\n  hint: fix\\x0dit"


# --- 14. the memory-fit pass says when it did not run


def test_build_says_the_memory_fit_was_not_checked(project, vilms):
    too_big = swap("    params: 1.5B\n", "    params: 70B\n")
    result = vilms("build", "-f", str(project(too_big)))
    assert result.code == 1 and "deployment 'dev' needs 42.52 GiB" in result.err and "memory fit not checked" not in result.err
    result = vilms("build", "-f", str(project(swap("project: demo", "project: Demo", too_big))))
    _refused(result)
    assert result.err.endswith(ONE + FIT)
    assert "needs" not in result.err


def test_exchange_swaps_two_folders_in_one_step(tmp_path, monkeypatch):
    from vilms.compiler import exchange

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("from a")
    (b / "y").write_text("from b")
    assert exchange.exchange(a, b) is True  # Linux with glibc 2.28+ (the CI and the Jetsons)
    assert [p.name for p in a.iterdir()] == ["y"] and [p.name for p in b.iterdir()] == ["x"]
    with pytest.raises(FileNotFoundError):
        exchange.exchange(a, tmp_path / "missing")
    monkeypatch.setattr(exchange, "_renameat2", lambda: None)  # no renameat2: the caller falls back
    assert exchange.exchange(a, b) is False
    assert [p.name for p in a.iterdir()] == ["y"]
