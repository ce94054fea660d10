"""`vilms init` writes the .gitignore and .gitattributes a project needs (compiler/git_files.py),
appending to existing files, once; git then ignores every temp/state file vilms may leave and
merges the release history with merge=union."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from vilms.compiler.git_files import ATTRIBUTES, IGNORED

LEFT_BEHIND = [".generated.new-123-abcd/manifest.json", ".generated.old-123-abcd/x.yaml", ".vilms.yaml.123-abcd.tmp",
               ".vilms.yaml.abcd.tmp", ".vilms.yaml.tmp", ".vilms/project.lock", ".vilms/release.journal.json",
               ".vilms/release.journal.json.123.tmp", ".vilms/run/dev/state.json", ".vilms/locks/a.run.lock",
               "artifacts/support-v1-20261121T091500Z-1a2b3c/run.json"]
COMMITTED = ["vilms.yaml", "generated/manifest.json", ".vilms/releases/support-v1.jsonl", ".vilms/approvals/support-v1.jsonl",
             ".gitignore", ".gitattributes"]


def init(folder, *args):
    return subprocess.run([sys.executable, "-m", "vilms", "init", "-f", str(folder / "vilms.yaml"), *args],
                          capture_output=True, text=True)


def test_init_writes_both_files_and_is_idempotent(tmp_path):
    (tmp_path / ".gitignore").write_text("node_modules/")  # the user's, no final newline
    result = init(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(and .gitignore, .gitattributes)" in result.stdout
    ignore = (tmp_path / ".gitignore").read_text()
    assert ignore.startswith("node_modules/\n# vilms (`vilms init`): ")
    assert ignore.splitlines()[2:] == list(IGNORED)
    assert (tmp_path / ".gitattributes").read_text().splitlines()[1:] == list(ATTRIBUTES)
    before = {name: (tmp_path / name).read_bytes() for name in (".gitignore", ".gitattributes")}
    assert init(tmp_path, "--force").returncode == 0
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # nothing appended twice


def test_a_line_missing_from_an_existing_file_is_appended_alone(tmp_path):
    (tmp_path / ".gitattributes").write_text(f"*.png binary\n{ATTRIBUTES[0]}\n")
    assert init(tmp_path).returncode == 0
    assert (tmp_path / ".gitattributes").read_text() == (
        f"*.png binary\n{ATTRIBUTES[0]}\n# vilms (`vilms init`): append-only logs: a merge keeps the lines of both sides\n{ATTRIBUTES[1]}\n")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_ignores_what_vilms_leaves_and_union_merges_the_history(tmp_path):
    assert init(tmp_path).returncode == 0
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for rel in LEFT_BEHIND + COMMITTED:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("x\n")
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True).stdout
    assert sorted(line[3:] for line in status.splitlines()) == sorted(COMMITTED)
    attr = subprocess.run(["git", "check-attr", "merge", ".vilms/releases/support-v1.jsonl"], cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout
    assert attr.strip() == ".vilms/releases/support-v1.jsonl: merge: union"
