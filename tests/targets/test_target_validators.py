"""The validators themselves: each one rejects a broken artefact, so a green run means something."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from tests.support.projects import compiled_in_memory, write_compiled
from tests.support.validators import (
    compose_config_errors,
    compose_schema_errors,
    helm_lint,
    helm_render,
    kube_validate,
    load_yaml,
    manifests,
    modelfile_roundtrip,
    vllm_flag_errors,
)
from vilms.compiler.modelfile_syntax import Command, ModelfileSyntaxError, parse, quote, render, representable


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_compiled("fx-gpu-compose-vllm", tmp_path_factory.mktemp("validators"))


def _compose(tree):
    return load_yaml((tree / "box/docker-compose.yaml").read_text())


def _write_compose(tree, data, name):
    import yaml

    path = tree / "box" / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_compose_binary_rejects_undefined_volume_and_dependency(tree):
    data = _compose(tree)
    data["services"]["gateway"]["volumes"].append("nowhere:/x")
    assert compose_config_errors(_write_compose(tree, data, "bad-volume.yaml"))
    data = _compose(tree)
    data["services"]["gateway"]["depends_on"]["ghost"] = {"condition": "service_healthy"}
    assert compose_config_errors(_write_compose(tree, data, "bad-dep.yaml"))


def test_compose_binary_needs_required_secrets(tree):
    assert compose_config_errors(tree / "box/docker-compose.yaml", env={})


def test_compose_schema_lists_every_error():
    errors = compose_schema_errors({"services": {"a": {"image": 3, "restart": "sometimes", "bogus": 1}}})
    assert len(errors) >= 2


def test_helm_lint_and_kube_validate_catch_broken_charts(tmp_path):
    tree = write_compiled("fx-helm-full", tmp_path)
    chart = tmp_path / "chart"
    shutil.copytree(tree / "prod/helm", chart)
    values = load_yaml((chart / "values.yaml").read_text())
    (chart / "templates" / "broken.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: {}\n")
    assert helm_lint(chart, values)
    docs = manifests(helm_render(tree / "prod/helm", values))
    bad = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    bad["spec"]["template"]["spec"]["containers"][0]["bogusField"] = True
    assert kube_validate([bad])
    bad = copy.deepcopy(next(d for d in docs if d["kind"] == "Service"))
    bad["spec"]["ports"][0]["port"] = "eighty"
    assert kube_validate([bad])


def test_vllm_flag_errors_catch_unknown_flags_arity_types_and_choices():
    good = load_yaml(compiled_in_memory("fx-gpu-compose-vllm")["box/vllm/llama3.1-8b.yaml"])
    assert vllm_flag_errors(good) == []
    cases = {
        "unknown": {**good, "max-lora-ranks": 16},
        "choice": {**good, "max-lora-rank": 100},
        "type": {**good, "tensor-parallel-size": "two"},
        "arity": {**good, "dtype": ["auto", "half"]},
        "list": {**good, "served-model-name": "x"},
        "switch": {**good, "enable-lora": "yes"},
        "dtype": {**good, "dtype": "fp4"},
        "lora-form": {**good, "lora-modules": ["a=/p"]},
        "lora-keys": {**good, "lora-modules": [json.dumps({"name": "a", "path": "/p"})]},
        "no-rank": {k: v for k, v in good.items() if k != "max-lora-rank"},
        "flag-like": {**good, "served-model-name": ["--port"]},
    }
    for name, config in cases.items():
        assert vllm_flag_errors(config), name


def test_modelfile_roundtrip_catches_non_canonical_and_broken_files():
    assert modelfile_roundtrip("FROM x\nSYSTEM hello\n") == []
    assert modelfile_roundtrip('FROM x\nSYSTEM "hello"\n')  # parses, but Ollama writes it bare
    assert modelfile_roundtrip("FROM x\nBOGUS y\n")
    assert modelfile_roundtrip('FROM x\nSYSTEM """never closed\n')
    assert modelfile_roundtrip("SYSTEM no from\n")


# --- the parser port against Ollama's parser/parser.go behaviour (cases from parser_test.go's spirit)

def test_parser_follows_ollamas_state_machine():
    assert parse("FROM foo\nPARAMETER num_ctx 4096\n") == [Command("model", "foo"), Command("num_ctx", "4096")]
    assert parse("from foo\nparameter stop <|x|>\n") == [Command("model", "foo"), Command("stop", "<|x|>")]
    assert parse("# c\nFROM foo # not a comment\n") == [Command("model", "foo # not a comment")]
    assert parse('FROM foo\nTEMPLATE """{{ .Prompt }}\n"x"\n"""\n')[1] == Command("template", '{{ .Prompt }}\n"x"\n')
    assert parse('FROM foo\nSYSTEM "  spaced  "\n')[1] == Command("system", "  spaced  ")
    assert parse("FROM foo\nMESSAGE user hi there\n")[1] == Command("message", "user: hi there")
    assert parse("\ufeffFROM foo\n") == [Command("model", "foo")]
    assert parse("FROM foo\r\nSYSTEM x\r\n") == [Command("model", "foo"), Command("system", "x")]
    assert parse("FROM foo\nSYSTEM a\x00b\u202ec\n")[1] == Command("system", "abc")  # non-printable runes dropped
    assert parse("FROM foo\nSYSTEM a\tb\n")[1] == Command("system", "a\tb")
    for text, message in [("FROM foo\nMESSAGE robot hi\n", "message role"), ("FROM foo\nFOO bar\n", "command must be one of"),
                          ("FROM foo\nPARAMETER num-ctx 1\n", "unexpected EOF"), ("PARAMETER x 1\n", "no FROM line"),
                          ('FROM foo\nSYSTEM "open\n', "unexpected EOF"), ("FROM\n", "command must be one of")]:
        with pytest.raises(ModelfileSyntaxError, match=message):
            parse(text)


def test_writer_quotes_like_ollama():
    assert quote("plain") == "plain"
    assert quote("two\nlines") == '"two\nlines"'
    assert quote(' lead') == '" lead"'
    assert quote('say "hi"\nok') == '"""say "hi"\nok"""'
    cmds = [Command("model", "m"), Command("system", "a\nb"), Command("message", "assistant: ok"), Command("stop", "</s>")]
    assert parse(render(cmds)) == cmds
    assert not representable("system", "a\rb") and not representable("system", '"q"') and representable("system", 'a"""b')
