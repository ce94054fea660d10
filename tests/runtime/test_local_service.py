"""`vilms up --install-service`: the systemd unit's text (snapshot), a strict parse of it, and
`systemd-analyze verify` where systemd's tools are installed. Nothing is enabled or started."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from local_project import API_KEY, KEYS_ENV, processes_under, write_project

from tests.conftest import run_vilms
from vilms.runtime.local.service_unit import install_service, quote, unit_text

ROOT = Path("/srv/projects/demo")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("service")
    write_project(root, gateway_port=18998)
    assert run_vilms("build", cwd=root).code == 0
    return root


def strict_parse(text: str) -> configparser.ConfigParser:
    """systemd's unit syntax, as strictly as configparser reads it: sections, no duplicate
    key or section, no interpolation, keys kept as written."""
    parser = configparser.ConfigParser(strict=True, interpolation=None, delimiters=("=",),
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_the_unit_runs_up_in_the_foreground_and_down_as_exec_stop(snapshot):
    text = unit_text(project="demo", deployment="dev", file=ROOT / "vilms.yaml", python="/opt/venv/bin/python",
                     env_file=Path("/home/me/.config/vilms/vilms-demo-dev.env"), system=False)
    assert text == snapshot
    unit = strict_parse(text)
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    assert service["Type"] == "simple" and service["Restart"] == "on-failure"
    assert service["WorkingDirectory"] == str(ROOT)
    assert service["ExecStart"].endswith('up "dev" --file "/srv/projects/demo/vilms.yaml" --foreground')
    assert service["ExecStop"] == '"/opt/venv/bin/python" -m vilms down "dev" --file "/srv/projects/demo/vilms.yaml"'
    assert service["EnvironmentFile"] == "/home/me/.config/vilms/vilms-demo-dev.env"
    assert unit["Install"]["WantedBy"] == "default.target"
    system = strict_parse(unit_text(project="demo", deployment="dev", file=ROOT / "vilms.yaml", python="/p",
                                    env_file=Path("/etc/vilms/x.env"), system=True))
    assert system["Install"]["WantedBy"] == "multi-user.target"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30))
def test_exec_arguments_are_quoted_for_systemd(arg):
    quoted = quote(arg)
    assert quoted.startswith('"') and quoted.endswith('"')
    inner = quoted[1:-1]
    # every quote and backslash escaped, every % doubled: unquoting gives the argument back
    out, i = "", 0
    while i < len(inner):
        if inner[i] == "\\":
            out, i = out + inner[i + 1], i + 2
        elif inner[i] == "%":
            assert inner[i + 1] == "%"
            out, i = out + "%", i + 2
        else:
            assert inner[i] != '"'
            out, i = out + inner[i], i + 1
    assert out == arg


def test_install_service_writes_the_unit_names_the_keys_and_starts_nothing(built, tmp_path, monkeypatch):
    monkeypatch.setenv(KEYS_ENV, API_KEY)
    unit = install_service(built / "vilms.yaml", "dev", system=False, unit_dir=tmp_path / "units",
                           env_dir=tmp_path / "env")
    assert unit.path == tmp_path / "units" / "vilms-local-test-dev.service" and unit.path.read_text() == unit.text
    assert unit.env_file == tmp_path / "env" / "vilms-local-test-dev.env" and not unit.env_file.exists()
    assert unit.env_names == (KEYS_ENV,)  # the engine key is not the user's: `vilms up` makes it
    assert API_KEY not in unit.text and "VILMS_ENGINE_KEY" not in unit.text
    parsed = strict_parse(unit.text)
    assert parsed["Service"]["WorkingDirectory"] == str(built.resolve())
    assert unit.commands[1] == "systemctl --user enable --now vilms-local-test-dev.service"
    assert not processes_under(built) and not (built / ".vilms" / "run" / "dev" / "state.json").exists()


def test_systemd_analyze_verifies_the_unit(built, tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed; the strict parse above still runs")
    unit = install_service(built / "vilms.yaml", "dev", system=True, unit_dir=tmp_path, env_dir=tmp_path)
    unit.env_file.write_text(f"{KEYS_ENV}=x\n")
    check = subprocess.run([tool, "verify", str(unit.path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and check.stderr.strip() == "", check.stderr


def test_the_cli_prints_what_to_enable(built, tmp_path):
    env = {KEYS_ENV: API_KEY, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    result = run_vilms("up", "dev", "--install-service", cwd=built, env=env)
    assert result.code == 0, result.err
    written = tmp_path / ".config" / "systemd" / "user" / "vilms-local-test-dev.service"
    assert f"wrote {written}" in result.out and written.is_file()
    assert f"put {KEYS_ENV}=... in {tmp_path}/.config/vilms/vilms-local-test-dev.env" in result.out
    assert "systemctl --user enable --now vilms-local-test-dev.service" in result.out
    assert not processes_under(built)
    wrong = run_vilms("up", "dev", "--system", cwd=built, env=env)
    assert wrong.code != 0 and "--system goes with --install-service" in wrong.err
