"""The compiler's outputs are what the runtimes accept: every generated routes.yaml loads in
the gateway, every local.yaml in the local runner, every generated training config in the
trainer (shipped project, examples and the target-test fixtures)."""

from __future__ import annotations

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
        assert all(lora.startswith("artifacts/") and lora.endswith("/gguf/adapter.gguf") for lora in server.lora)


@pytest.mark.parametrize("project,rel", TRAINING, ids=[f"{p}:{r}" for p, r in TRAINING])
def test_trainer_accepts_generated_training_configs(project, rel, tmp_path):
    from vilms.trainers.config import load_training_config

    generated = write_compiled(project, tmp_path)
    config = load_training_config(generated / rel, project_root=tmp_path)
    assert config is not None


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
