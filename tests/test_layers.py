"""Imports only go down (cli → runtime | trainers → compiler) and the compile path stays light:
the import-linter contracts in pyproject.toml, with no ignores, checked on the real import graph."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_contracts_have_no_ignores_and_cover_every_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert all("ignore_imports" not in contract for contract in config["contracts"])
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    named = {part.strip() for layer in layers for part in layer.split("|")}
    assert named == {"vilms.cli", "vilms.runtime", "vilms.trainers", "vilms.compiler"}
    assert set(config["root_packages"]) == named
