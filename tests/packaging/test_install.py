"""`pip install .` (not editable) into a fresh venv gives a working `vilms` whose templates
come from the wheel, and `vilms build -f some/dir/vilms.yaml` writes beside that file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    # build from a copy: setuptools writes build/ and *.egg-info into the source folder
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "generated", "__pycache__", "build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                   check=True, capture_output=True, text=True)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    wheel = next(dist.glob("vilms-*.whl"))
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], check=True, capture_output=True, text=True)
    return env_dir


def test_wheel_ships_templates_and_schema_under_the_vilms_namespace(installed):
    wheel = next((installed.parent / "dist").glob("vilms-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "vilms/compiler/schema/vilms-v1.schema.json" in names
    assert "vilms/templates/helm/chart/Chart.yaml" in names
    assert "vilms/templates/ollama/Modelfile.j2" in names
    assert "vilms/templates/helm/chart/.helmignore" in names
    assert not [n for n in names if n.split("/")[0] in {"cli", "compiler", "runtime", "trainers", "templates"}]
    assert "vilms/compiler/contracts/schemas/gateway-routes.schema.json" in names
    assert "vilms/__main__.py" in names and "vilms/__init__.py" not in names  # `vilms` stays a namespace


def test_installed_cli_builds_a_project_elsewhere(installed, tmp_path):
    project = tmp_path / "some" / "dir"
    project.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "mixed" / "vilms.yaml", project / "vilms.yaml")
    cwd = tmp_path / "other"
    cwd.mkdir()
    out = subprocess.run([str(installed / "bin" / "vilms"), "build", "-f", "../some/dir/vilms.yaml"],
                         cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    generated = project / "generated"
    assert (generated / "cluster" / "helm" / "templates" / "vllm-deployment.yaml").is_file()
    assert (generated / "edge" / "ollama" / "qwen2.5-1.5b.Modelfile").is_file()
    assert not (cwd / "generated").exists()
    # identical to what the source tree builds
    from vilms.compiler.pipeline import compile_files

    expected = compile_files(REPO / "examples" / "mixed" / "vilms.yaml")[2]
    actual = {p.relative_to(generated).as_posix(): p.read_bytes() for p in generated.rglob("*") if p.is_file()}
    assert actual == expected
    version = subprocess.run([str(installed / "bin" / "vilms"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and "0.1.0" in version.stdout
    module = subprocess.run([str(installed / "bin" / "python"), "-m", "vilms", "--version"], cwd=cwd,
                            capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout == version.stdout
