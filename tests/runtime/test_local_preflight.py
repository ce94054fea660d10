"""What `vilms up` checks before any server starts: the GGUF header against vilms.yaml and
the memory estimate against MemAvailable (read from a meminfo file the test writes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from local_project import API_KEY, KEYS_ENV, free_port, processes_under, write_project
from tiny_gguf import write_tiny_llama

from tests.conftest import run_vilms
from vilms.compiler.errors import ActionError, InvalidInputError
from vilms.runtime.local import gguf_check, memory_check
from vilms.runtime.local.preflight import Preflight
from vilms.runtime.local.start import up

pytest.importorskip("gguf")

ENV = {KEYS_ENV: API_KEY}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("preflight-template")
    file = write_project(root, gateway_port=free_port())
    doc = yaml.safe_load(file.read_text())
    doc["deployments"]["dev"]["engine_port"] = free_port()  # not 8101: other test runs may hold it
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_vilms("build", cwd=root).code == 0
    return root


@pytest.fixture
def project(template, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(template, root)
    monkeypatch.setenv(KEYS_ENV, API_KEY)
    return root


def meminfo(tmp_path: Path, available_kib: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       16000000 kB\nMemFree:         1000 kB\nMemAvailable:   {available_kib} kB\n")
    return path


def edit(root: Path, change) -> None:  # type: ignore[no-untyped-def]
    file = root / "vilms.yaml"
    doc = yaml.safe_load(file.read_text())
    change(doc)
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_vilms("build", cwd=root).code == 0


def test_up_refuses_a_deployment_larger_than_mem_available(project, tmp_path):
    with pytest.raises(ActionError) as err:
        up(project / "vilms.yaml", "dev", preflight=Preflight(meminfo=meminfo(tmp_path, 1024)))
    assert err.value.message.startswith("deployment dev needs about ")
    assert "but this machine has 0.00 GiB available (MemAvailable)" in err.value.message
    assert "--ignore-memory" in (err.value.hint or "")
    assert not processes_under(project) and not (project / ".vilms" / "run" / "dev" / "state.json").exists()


def test_ignore_memory_skips_only_the_memory_check(project, tmp_path):
    from vilms.compiler.contracts.local_plan import LOCAL_PLAN
    from vilms.runtime.local.preflight import check
    from vilms.runtime.local.project import Project

    proj = Project.at(project / "vilms.yaml")
    plan = LOCAL_PLAN.load(proj.plan_file("dev"))
    check(proj, plan, Preflight(ignore_memory=True, meminfo=meminfo(tmp_path, 1024)))
    check(proj, plan, Preflight(meminfo=meminfo(tmp_path, 10**9)))  # 1 TB available: fits
    assert "--ignore-memory" in run_vilms("up", "--help", cwd=project, env=ENV).out


def test_running_servers_a_new_build_replaces_count_as_available(tmp_path):
    from vilms.compiler.memory.estimate import Estimate

    need = Estimate(label="x", weights=300 * 1024 * 1024, budget=None)
    with pytest.raises(ActionError):
        memory_check.check_fits(need, deployment="dev", available=200 * 1024 * 1024)
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "status").write_text("Name:\tllama\nVmRSS:\t  204800 kB\n")
    held = memory_check.rss([42, 43], proc)  # 43 is gone
    assert held == 200 * 1024 * 1024
    memory_check.check_fits(need, deployment="dev", available=200 * 1024 * 1024, reclaimed=held)


@given(st.integers(min_value=0, max_value=2**40), st.sampled_from(["kB", ""]))
def test_mem_available_is_read_in_bytes(tmp_path_factory, value, unit):
    path = tmp_path_factory.mktemp("m") / "meminfo"
    path.write_text(f"MemTotal: 1 kB\nMemAvailable: {value} {unit}\n".replace(" \n", "\n"))
    assert memory_check.mem_available(path) == value * (1024 if unit else 1)


def test_mem_available_unknown_skips_the_check(tmp_path):
    assert memory_check.mem_available(tmp_path / "absent") is None
    (tmp_path / "m").write_text("MemTotal: 1 kB\n")
    assert memory_check.mem_available(tmp_path / "m") is None


def test_a_gguf_of_another_architecture_is_refused_located(project, tmp_path):
    edit(project, lambda d: d["models"]["tiny"].update(family="qwen2"))
    with pytest.raises(InvalidInputError) as err:
        up(project / "vilms.yaml", "dev", preflight=Preflight(meminfo=meminfo(tmp_path, 10**9)))
    (diag,) = err.value.diagnostics
    assert diag.render().startswith(f"vilms.yaml:{diag.line}:{diag.column}: models.tiny.family: "
                                    "model tiny has family qwen2, but models/tiny.gguf is a llama model")
    assert diag.line > 1 and "family" in (project / "vilms.yaml").read_text().splitlines()[diag.line - 1]
    assert "set the model's family" in (diag.hint or "")
    assert not processes_under(project)


def test_a_context_above_the_trained_context_is_refused(project, tmp_path):
    edit(project, lambda d: d["models"]["tiny"].update(context=1024))  # the tiny GGUF says 512
    result = run_vilms("up", cwd=project, env=ENV)
    assert result.code == 1 and "Traceback" not in result.err
    assert "models.tiny.context: model tiny declares context 1024, but models/tiny.gguf was trained for 512 tokens" \
        in result.err
    assert "set models.tiny.context to at most 512" in result.err
    assert not processes_under(project)


def test_a_truncated_gguf_is_a_one_line_error(project):
    model = project / "models" / "tiny.gguf"
    model.write_bytes(model.read_bytes()[:3000])
    result = run_vilms("up", cwd=project, env=ENV)
    assert result.code == 1 and "Traceback" not in result.err
    first, *rest = result.err.strip().splitlines()
    assert f"{model}: truncated or corrupt GGUF file (3000 bytes)" in first
    assert len(rest) == 1 and "hint:" in rest[0]
    assert not processes_under(project)


@given(st.integers(min_value=0, max_value=400))
def test_any_cut_of_a_gguf_header_is_an_action_error(tmp_path_factory, cut):
    folder = tmp_path_factory.mktemp("g")
    whole = write_tiny_llama(folder / "t.gguf").read_bytes()
    path = folder / "cut.gguf"
    path.write_bytes(whole[:cut * 50])
    with pytest.raises(ActionError) as err:
        gguf_check.read_header(path)
    assert str(path) in err.value.message and "\n" not in err.value.message


def test_not_a_gguf_names_the_magic(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(ActionError, match="not a GGUF file"):
        gguf_check.read_header(path)


def test_serving_above_the_trained_context_is_an_error():
    header = gguf_check.GgufHeader(architecture="llama", context_length=512)
    ok = dict(file="m.gguf", model="m", family="smollm", model_context=512, deployment="dev")
    assert gguf_check.compare(header, **ok, served_context=512) == []
    (bad,) = gguf_check.compare(header, **ok, served_context=2048)
    assert bad.at == ("deployments", "dev") and "serves m with context 2048" in bad.message
