"""The CLI surface: init, schema, validate, explain, exit codes, lazy heavy commands."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema

from tests.compiler.minimal import MINIMAL


def test_init_writes_a_starter_that_builds(tmp_path, vilms):
    result = vilms("init", cwd=tmp_path)
    assert result.code == 0, result.err
    text = (tmp_path / "vilms.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=")
    assert text.count("\n#") >= 5  # commented
    assert vilms("build", cwd=tmp_path).code == 0
    again = vilms("init", cwd=tmp_path)
    assert again.code == 1 and "already exists" in again.err and "--force" in again.err


def test_schema_is_draft_2020_12_and_strict(vilms):
    result = vilms("schema")
    assert result.code == 0
    schema = json.loads(result.out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, node.get("description", node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


def test_shipped_vilms_yaml_has_the_modeline(vilms):
    from pathlib import Path

    first = (Path(__file__).resolve().parents[2] / "vilms.yaml").read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")


def test_validate_ok(project, vilms):
    result = vilms("validate", "-f", str(project(MINIMAL)))
    assert result.code == 0 and "valid" in result.out
    result = vilms("validate", "-f", str(project(MINIMAL)), "--format", "json")
    assert json.loads(result.out) == {"valid": True, "diagnostics": [], "hint": None}


def test_usage_errors_exit_2(vilms):
    assert vilms("build", "--no-such-flag").code == 2
    assert vilms("frobnicate").code == 2


def test_explain(project, vilms):
    path = project(MINIMAL)
    result = vilms("explain", "gpu", "-f", str(path))
    assert result.code == 0, result.err
    assert "engine vllm" in result.out and "support-bot" in result.out and "not released" in result.out
    bad = vilms("explain", "gpo", "-f", str(path))
    assert bad.code == 2 and "did you mean 'gpu'" in bad.err


def test_help_lists_heavy_commands_without_importing_them(vilms):
    result = vilms("--help")
    assert result.code == 0
    for name in ("build", "validate", "schema", "init", "explain", "serve", "train", "export", "approve", "data"):
        assert name in result.out


def test_compile_path_never_imports_heavy_modules(tmp_path):
    (tmp_path / "vilms.yaml").write_text(MINIMAL)
    code = (
        "import sys\n"
        "from vilms.cli.main import main\n"
        "try:\n"
        "    main(['build', '-f', sys.argv[1]])\n"
        "except SystemExit:\n"
        "    pass\n"
        "main_mods = {'validate', 'build', 'schema'}\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers', 'peft', 'bitsandbytes', 'aiohttp', 'httptools', 'orjson', 'uvloop', 'llama_cpp', 'numpy', 'gguf'})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "vilms.yaml")], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stdout
    assert (tmp_path / "generated" / "manifest.json").is_file()


def test_internal_errors_are_short_not_tracebacks(project, monkeypatch, capsys):
    import pytest

    from vilms.cli import main as cli
    from vilms.compiler import pipeline

    def boom(*_a, **_k):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(pipeline, "build", boom)
    monkeypatch.delenv("VILMS_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["build", "-f", str(project(MINIMAL))])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaboom" in err and "Traceback" not in err


def test_a_missing_extra_is_named_not_a_traceback(tmp_path):
    (tmp_path / "vilms.yaml").write_text(MINIMAL)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "support.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if the train extra were not installed\n"
        "from vilms.cli.main import main\n"
        "main(['build', '-f', sys.argv[1]])\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "vilms.yaml")], capture_output=True, check=False)
    run = subprocess.run([sys.executable, "-c", code.replace("'build', '-f', sys.argv[1]", "'train', 'support-v1', '-f', sys.argv[1]"),
                          str(tmp_path / "vilms.yaml")], capture_output=True, text=True)
    assert run.returncode == 1
    assert "this command needs torch, which is not installed" in run.stderr and "pip install 'vilms[train]'" in run.stderr
    assert "Traceback" not in run.stderr


def test_explain_shows_a_deployment_that_does_not_fit(project, vilms):
    path = project(MINIMAL.replace("laptop: {kind: cpu, memory: 16GiB, cpus: 4}", "laptop: {kind: cpu, memory: 2GiB, cpus: 4}"))
    assert vilms("build", "-f", str(path)).code == 1
    result = vilms("explain", "dev", "-f", str(path))
    assert result.code == 0, result.err
    assert "DOES NOT FIT" in result.out
