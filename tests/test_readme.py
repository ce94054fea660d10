"""README starts with exactly two commands; .ci/run runs the second; docs name real paths."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < 20, "README must start with its command block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert "vilms build" in commands[0] and commands[0].endswith("vilms demo")
    assert "pytest" in commands[1]


def test_ci_runs_readmes_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci


def test_architecture_page_names_only_existing_paths():
    text = (REPO / "docs" / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:compiler|runtime|templates|trainers|tests|bench|docs)/[^`\s]*)`", text))
    assert len(paths) > 15
    missing = sorted(p for p in paths if not (REPO / p.rstrip("/")).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_status_page_names_only_existing_paths():
    text = (REPO / "docs" / "status.md").read_text()
    paths = set(re.findall(r"`((?:compiler|runtime|templates|trainers)/[^`\s]*)`", text))
    missing = sorted(p for p in paths if not (REPO / p.rstrip("/")).exists())
    assert not missing, missing
