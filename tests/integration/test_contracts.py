"""The compiler's outputs are what the runtimes accept: every generated routes.yaml loads in
the gateway, every generated training config loads in the trainer (shipped project,
examples and the target-test fixtures)."""

from __future__ import annotations

import pytest

from tests.support.projects import artefacts, compiled_in_memory, write_compiled

ROUTES = artefacts(lambda rel: rel.endswith("/gateway/routes.yaml"))
TRAINING = artefacts(lambda rel: rel.startswith("training/"))


def test_every_kind_is_covered():
    assert len(ROUTES) >= 8 and len(TRAINING) >= 5


@pytest.mark.parametrize("project,rel", ROUTES, ids=[f"{p}:{r}" for p, r in ROUTES])
def test_gateway_accepts_generated_routes(project, rel):
    from vilms.runtime.gateway.routes import parse_routes

    routes = parse_routes(compiled_in_memory(project)[rel].decode(), rel)
    assert routes.aliases, rel
    for alias in routes.aliases.values():
        assert alias.backend in routes.backends
        assert set(alias.fallbacks) <= set(routes.aliases)


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
