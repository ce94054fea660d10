"""Every generated Modelfile parses with the port of Ollama's parser, is in Ollama's canonical form,
uses only valid PARAMETER names, sets num_ctx, and agrees with the model's chat template."""

from __future__ import annotations

import pytest

from tests.support.projects import artefacts, compiled_in_memory
from tests.support.validators import load_yaml, modelfile_roundtrip
from vilms.compiler.chat_templates import TEMPLATES
from vilms.compiler.modelfile_syntax import MESSAGE_ROLES, PARAMETERS, parse

MODELFILES = artefacts(lambda rel: rel.endswith(".Modelfile"))
IDS = [f"{p}:{r}" for p, r in MODELFILES]
COMMAND_NAMES = {"model", "license", "template", "system", "adapter", "message", "requires"}


def _text(project, rel) -> str:
    return compiled_in_memory(project)[rel].decode("utf-8")


def test_modelfiles_cover_base_and_adapter_models():
    texts = [_text(p, r) for p, r in MODELFILES]
    assert any("\nADAPTER " in t for t in texts)
    assert any("\nTEMPLATE " in t for t in texts)
    assert any("\nSYSTEM " in t for t in texts)


@pytest.mark.parametrize(("project", "rel"), MODELFILES, ids=IDS)
def test_parses_and_round_trips(project, rel):
    assert modelfile_roundtrip(_text(project, rel)) == []


@pytest.mark.parametrize(("project", "rel"), MODELFILES, ids=IDS)
def test_parameters_and_context(project, rel):
    commands = parse(_text(project, rel))
    params = [c for c in commands if c.name not in COMMAND_NAMES]
    for c in params:
        assert c.name in PARAMETERS, c.name
    num_ctx = [int(c.args) for c in params if c.name == "num_ctx"]
    assert len(num_ctx) == 1
    dep = rel.split("/")[0]
    routes = load_yaml(compiled_in_memory(project)[f"{dep}/gateway/routes.yaml"])
    name = rel.rsplit("/", 1)[1][: -len(".Modelfile")]
    contexts = [a["context"] for n, a in routes["aliases"].items() if n == name or a["model"] == name]
    assert num_ctx[0] == max(contexts)
    for c in commands:
        if c.name == "message":
            assert c.args.split(": ", 1)[0] in MESSAGE_ROLES


@pytest.mark.parametrize(("project", "rel"), MODELFILES, ids=IDS)
def test_template_and_stop_follow_the_chat_template(project, rel):
    commands = parse(_text(project, rel))
    files = compiled_in_memory(project)
    dep = rel.split("/")[0]
    froms = [c.args for c in commands if c.name == "model"]
    assert len(froms) == 1
    local = f"{dep}/ollama/{froms[0]}.Modelfile"
    if local in files:  # a derived adapter model: inherits TEMPLATE and stop from its base
        assert not any(c.name == "template" for c in commands)
        base_stops = [c.args for c in parse(files[local].decode()) if c.name == "stop"]
        assert base_stops, "the base model sets its stop tokens"
        own = [c.args for c in commands if c.name == "stop"]
        if own:  # Ollama replaces the inherited list: it must still hold the template's stops
            assert own[: len(base_stops)] == base_stops
        return
    template = next(c.args for c in commands if c.name == "template")
    fmt = next((f for f in TEMPLATES.values() if f.ollama == template), None)
    assert fmt is not None, "TEMPLATE is one of the known chat formats"
    stops = [c.args for c in commands if c.name == "stop"]
    assert stops[: len(fmt.stop)] == list(fmt.stop)
    for token in fmt.stop:
        assert token in template or token in ("<|start_header_id|>", "[INST]", "<start_of_turn>", "<|user|>", "<|assistant|>", "<|im_start|>")
