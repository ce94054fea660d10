"""`vilms init --project NAME`: the name filled in by ruamel.yaml's round trip, every comment and
every other byte of the starter kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.yaml_variants import one_line_changed
from vilms.compiler.load import parse
from vilms.compiler.starter import starter_text

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = (REPO / "templates" / "starter" / "vilms.yaml").read_text(encoding="utf-8")


def test_init_project_changes_only_the_project_line_and_builds(tmp_path, vilms):
    result = vilms("init", "--project", "acme", cwd=tmp_path)
    assert result.code == 0, result.err
    text = (tmp_path / "vilms.yaml").read_text(encoding="utf-8")
    assert one_line_changed(TEMPLATE, text)
    assert "project: acme                  # lower-case letters, digits and '-'\n" in text  # the comment stays in its column
    assert vilms("build", cwd=tmp_path).code == 0


def test_init_without_project_writes_the_starter_as_shipped(tmp_path, vilms):
    assert vilms("init", cwd=tmp_path).code == 0
    assert (tmp_path / "vilms.yaml").read_text(encoding="utf-8") == TEMPLATE


# names the schema allows that YAML would read as something else unless quoted
@pytest.mark.parametrize("name", ["null", "true", "1e3", "0x1f", "0o17", "123", "0", "yes", "nan", "1-2", "a" * 40])
def test_a_project_name_is_written_as_a_string(name):
    text = starter_text(name)
    assert one_line_changed(TEMPLATE, text)
    assert parse(text.encode(), file=Path("vilms.yaml"), display_name="vilms.yaml").data["project"] == name


@pytest.mark.parametrize("name", ["Acme", "my project", "-acme", "acme-", "a" * 41, "acme\nkind: x", "acme\n", ""])
def test_a_bad_project_name_is_refused_before_anything_is_written(tmp_path, vilms, name):
    result = vilms("init", "--project", name, cwd=tmp_path)
    assert result.code == 2, result
    assert f"--project {name!r} is not a project name: A Kubernetes DNS-1123 label" in result.err
    assert "hint: for example --project acme" in result.err and "Traceback" not in result.err
    assert list(tmp_path.iterdir()) == []
