"""The compiler's outputs are what the runtimes accept: every generated routes.yaml loads in
the gateway, every local.yaml in the local runner, every generated training config in the
trainer (shipped project, examples and the target-test fixtures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.projects import artefacts, compiled_in_memory, write_compiled

ROUTES = artefacts(lambda rel: rel.endswith("/gateway/routes.yaml"))
TRAINING = artefacts(lambda rel: rel.startswith("training/"))
LOCAL_PLANS = artefacts(lambda rel: rel.endswith("/local.yaml"))


def test_every_kind_is_covered():
    assert len(ROUTES) >= 8 and len(TRAINING) >= 5 and len(LOCAL_PLANS) >= 3


@pytest.mark.parametrize("project,rel", ROUTES, ids=[f"{p}:{r}" for p, r in ROUTES])
def test_gateway_accepts_generated_routes(project, rel):
    from vilms.runtime.gateway.routes import parse_routes

    routes = parse_routes(compiled_in_memory(project)[rel].decode(), rel)
    assert routes.aliases, rel
    for alias in routes.aliases.values():
        assert alias.backend in routes.backends
        assert set(alias.fallbacks) <= set(routes.aliases)


@pytest.mark.parametrize("project,rel", LOCAL_PLANS, ids=[f"{p}:{r}" for p, r in LOCAL_PLANS])
def test_local_runner_accepts_generated_local_plans(project, rel, tmp_path):
    from vilms.compiler.contracts.local_plan import LOCAL_PLAN
    from vilms.compiler.contracts.registry import contract_for
    from vilms.compiler.layout import Layout
    from vilms.runtime.local.plan import routes_file

    assert contract_for(rel) is LOCAL_PLAN
    generated = write_compiled(project, tmp_path)
    plan = LOCAL_PLAN.load(generated / rel)  # the runner's only way in
    assert plan.deployment == rel.split("/")[0] and plan.servers
    assert routes_file(Layout(tmp_path), plan).is_file()  # the gateway's routes, where the plan says
    for server in plan.servers:
        assert (server.model.file is None) != (server.model.hf is None)
        assert all(lora.file.startswith("artifacts/") and lora.file.endswith("/gguf/adapter.gguf") for lora in server.lora)
        assert [lora.adapter for lora in server.lora] == sorted({lora.adapter for lora in server.lora})  # slot order


@pytest.mark.parametrize("project,rel", TRAINING, ids=[f"{p}:{r}" for p, r in TRAINING])
def test_trainer_accepts_generated_training_configs(project, rel, tmp_path):
    from vilms.compiler.contracts.registry import contract_for
    from vilms.compiler.contracts.training_config import TRAINING_CONFIG
    from vilms.trainers.job import read_job

    assert contract_for(rel) is TRAINING_CONFIG
    generated = write_compiled(project, tmp_path)
    job = read_job(generated / rel, tmp_path)
    assert job.config.adapter == Path(rel).stem
    assert TRAINING_CONFIG.dump(job.config, source="vilms.yaml") == (generated / rel).read_bytes()  # nothing lost


def _with_adapter(lora: str, training: str, gate: str) -> str:
    from tests.compiler.minimal import MINIMAL

    return MINIMAL.replace("    lora: {r: 16}\n    hardware: gpu1\n", f"    lora: {lora}\n    training: {training}\n    gate: {gate}\n")


# every bound vilms.yaml allows for an adapter compiles into a config the trainer accepts
# (r stops at 512: the fixture's vLLM deployment serves the adapter)
BOUNDS = {
    "lowest": _with_adapter(
        "{r: 1, alpha: 0.001, dropout: 0, target_modules: [q_proj]}",
        "{epochs: 1, max_steps: 1, learning_rate: 1.0e-9, batch_size: 1, gradient_accumulation_steps: 1, seq_len: 16, seed: 0,"
        " warmup_ratio: 0, lr_scheduler: constant, weight_decay: 0, save_steps: 1, eval_steps: 1, logging_steps: 1,"
        " gradient_checkpointing: false}",
        "{max_eval_perplexity: 1.0e-9, regression: [{prompt: a, expect_exact: ''}], on_fail: reject}",
    ),
    "highest": _with_adapter(
        "{r: 512, alpha: 1.0e9, dropout: 0.9, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj],"
        " use_rslora: true}",
        "{epochs: 1000, max_steps: 100000000, learning_rate: 1, batch_size: 4096, gradient_accumulation_steps: 4096,"
        " seq_len: 8192, seed: 4294967295, warmup_ratio: 1, lr_scheduler: linear, weight_decay: 10, save_steps: 100000,"
        " eval_steps: 100000, logging_steps: 100000}",
        "{max_eval_perplexity: 1.0e9, regression: [{prompt: a, expect_substring: b}], on_fail: approval}",
    ).replace("support: {path: data/support.jsonl, format: chat}",
                                                       "support: {path: data/support.jsonl, format: chat, eval_fraction: 0.5}"),
}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_every_adapter_bound_compiles_into_a_config_the_trainer_reads(name, tmp_path):
    from vilms.compiler.contracts.training_config import TRAINING_CONFIG
    from vilms.compiler.pipeline import compile_files

    (tmp_path / "vilms.yaml").write_text(BOUNDS[name])
    files = compile_files(tmp_path / "vilms.yaml")[2]
    config = TRAINING_CONFIG.parse(files["training/support-v1.yaml"], "training/support-v1.yaml")
    assert config.hardware is None and config.lora.r in (1, 512)


def test_run_ids_and_chat_templates_are_one_fact():
    from vilms.compiler.chat_templates import TEMPLATES
    from vilms.compiler.contracts.run_record import RUN_RECORD
    from vilms.compiler.contracts.training_config import TRAINING_CONFIG
    from vilms.compiler.run_ids import PATTERN

    assert RUN_RECORD.schema["properties"]["run_id"]["pattern"] == PATTERN
    templates = sorted([*TEMPLATES, "tokenizer"])
    assert TRAINING_CONFIG.schema["properties"]["base_model"]["properties"]["chat_template"]["enum"] == templates
    assert RUN_RECORD.schema["properties"]["base_model"]["properties"]["chat_template"]["enum"] == templates


def test_every_alias_param_reaches_the_gateway(tmp_path):
    """All sampling params vilms.yaml allows are accepted by the gateway's routes loader."""
    from tests.compiler.minimal import MINIMAL
    from vilms.compiler.pipeline import compile_files
    from vilms.compiler.schema import schema
    from vilms.runtime.gateway.routes import parse_routes

    names = sorted(schema()["$defs"]["params"]["properties"])
    values = {"stop": ["x"], "seed": 1, "top_k": 5, "max_tokens": 64}
    params = ", ".join(f"{n}: {values.get(n, 0.5)!r}".replace("'", '"') for n in names)
    text = MINIMAL.replace("fallbacks: [chat]}", f"fallbacks: [chat], params: {{{params}}}}}")
    (tmp_path / "vilms.yaml").write_text(text)
    files = compile_files(tmp_path / "vilms.yaml")[2]
    routes = parse_routes(files["dev/gateway/routes.yaml"].decode())
    sent = dict(routes.aliases["support-bot"].params)
    assert len(sent) == len(names) - 1  # max_tokens becomes the alias's max_output_tokens
    assert routes.aliases["support-bot"].max_output_tokens == 64


def test_every_generated_contract_file_satisfies_its_schema():
    """Writers do not check the schema on every write (docs/architecture.md): this does, for
    every contract file the shipped project, the examples and the fixtures compile to."""
    from tests.support.projects import projects
    from vilms.compiler.contracts.registry import contract_for
    from vilms.compiler.load import parse

    checked = 0
    for project in projects():
        for rel, data in compiled_in_memory(project.name).items():
            contract = contract_for(rel)
            if contract is None:
                continue
            document = parse(data, file=Path(rel), display_name=rel).data
            assert contract.problems(document) == [], (project.name, rel)
            checked += 1
    assert checked >= 20
