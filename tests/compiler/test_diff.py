"""`vilms diff`: what a build would change, against generated/ on disk or at a git ref; text,
markdown and JSON; terraform's --exit-code; never writes, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.compiler.minimal import MINIMAL
from vilms.compiler.diff import compare, render_json, render_markdown, render_text

RELEASED = MINIMAL.replace("    hardware: gpu1\n", "    hardware: gpu1\n    release: support-v1-20261120T091500Z-5c4b3a\n", 1)
RENAMED = MINIMAL.replace("  gpu: {hardware: gpu1, target: compose, engine: vllm}", "  box: {hardware: gpu1, target: compose, engine: vllm}")


def snapshot_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def built(project, vilms):
    """A project whose generated/ is fresh; returns its vilms.yaml."""
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    return path


def test_no_change(built, vilms):
    result = vilms("diff", "-f", str(built))
    assert result.code == 0, result.err
    assert result.out.startswith("no changes: generated/ matches")
    assert vilms("diff", "--exit-code", "-f", str(built)).code == 0


def test_a_change_is_a_unified_diff_and_nothing_is_written(built, vilms):
    out = built.parent / "generated"
    before = snapshot_tree(out)
    built.write_text(RELEASED)
    result = vilms("diff", "-f", str(built))
    assert result.code == 0, result.err
    text = result.out
    assert "--- a/generated/gpu/gateway/routes.yaml\n+++ b/generated/gpu/gateway/routes.yaml\n" in text
    assert "\n-      path: null\n-      released: false\n-      run: null\n+      path: /vilms/artifacts/" in text
    assert "/adapter\n+      released: true\n+      run: support-v1-" in text
    assert "@@ -" in text
    # the manifest comes last, summarised: no wall of hashes
    manifest_at = text.index("generated/manifest.json (modified, summarised):")
    assert manifest_at > text.rindex("+++ b/generated/")
    assert "  input sha256: " in text and re.search(r"file hashes: \d+ changed, 0 added, 0 removed", text)
    assert '"files"' not in text
    assert text.splitlines()[-1] == f"{text.count('+++ b/') + 1} files changed, 0 added, 0 removed"
    assert snapshot_tree(out) == before
    assert vilms("build", "--check", "-f", str(built)).code == 4  # still stale: diff wrote nothing


def test_exit_code_follows_terraform(built, vilms):
    built.write_text(RELEASED)
    assert vilms("diff", "--exit-code", "-f", str(built)).code == 4
    assert vilms("diff", "-f", str(built)).code == 0
    assert vilms("diff", "--exit-code", "--format", "json", "-f", str(built)).code == 4
    built.write_text(MINIMAL.replace("context: 8192", "context: big"))
    invalid = vilms("diff", "--exit-code", "-f", str(built))
    assert invalid.code == 1


def test_added_and_removed_files(built, vilms):
    before = snapshot_tree(built.parent / "generated")
    gpu_files = sorted(f"generated/{p}" for p in before if p.startswith("gpu/"))
    built.write_text(RENAMED)
    result = vilms("diff", "--format", "json", "-f", str(built))
    assert result.code == 0, result.err
    data = json.loads(result.out)
    by_status: dict[str, list[str]] = {}
    for entry in data["changed"]:
        by_status.setdefault(entry["status"], []).append(entry["path"])
    assert by_status["removed"] == gpu_files
    assert by_status["added"] == [p.replace("generated/gpu/", "generated/box/", 1) for p in gpu_files]
    assert by_status["modified"] == ["generated/manifest.json"]
    assert data["summary"] == {"files": len(before), "modified": 1, "added": len(gpu_files), "removed": len(gpu_files),
                               "unchanged": len(before) - 1 - len(gpu_files)}
    text = vilms("diff", "-f", str(built)).out
    assert f"--- /dev/null\n+++ b/{by_status['added'][0]}\n" in text
    assert f"--- a/{gpu_files[0]}\n+++ /dev/null\n" in text
    assert text.splitlines()[-1] == f"1 file changed, {len(gpu_files)} added, {len(gpu_files)} removed"


def test_json_format(built, vilms):
    built.write_text(RELEASED)
    data = json.loads(vilms("diff", "--format", "json", "-f", str(built)).out)
    assert data["against"] is None
    paths = [c["path"] for c in data["changed"]]
    assert paths[-1] == "generated/manifest.json" and paths[:-1] == sorted(paths[:-1])
    # a release changes the routes only: vLLM loads the adapter at run time, its config stays;
    # in the compose file only the gateway's routes digest changes (so `up` recreates the gateway)
    assert not [p for p in paths if "/vllm/" in p], paths
    compose = next(c for c in data["changed"] if c["path"] == "generated/gpu/docker-compose.yaml")
    changed = [line for line in compose["diff"].splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 2 and all("vilms.dev/routes-sha256: " in line for line in changed), changed
    routes = next(c for c in data["changed"] if c["path"] == "generated/gpu/gateway/routes.yaml")
    assert routes["status"] == "modified" and routes["additions"] == 4 and routes["deletions"] == 4
    assert "+      released: true\n" in routes["diff"] and routes["omitted_lines"] == 0 and not routes["summarised"]
    assert set(data["summary"]) == {"files", "modified", "added", "removed", "unchanged"}
    assert data["summary"]["modified"] == len(paths)


def test_markdown_format_is_a_pr_comment(built, vilms):
    built.write_text(RELEASED)
    md = vilms("diff", "--format", "markdown", "-f", str(built)).out
    lines = md.splitlines()
    assert lines[0] == "<!-- vilms-diff project=demo -->"
    assert lines[1].startswith("### `vilms diff`: ") and lines[1].endswith("files changed, 0 added, 0 removed")
    assert "| file | change | lines |" in lines and "|---|---|---|" in lines
    assert "| `generated/gpu/gateway/routes.yaml` | modified | +4 -4 |" in lines
    assert "| `generated/manifest.json` | modified | summarised |" in lines
    assert md.count("<details>") == md.count("</details>") == md.count("| modified |")
    assert "<summary><code>generated/gpu/gateway/routes.yaml</code>: modified (+4 -4)</summary>" in md
    assert md.count("```diff") == md.count("| modified |") - 1  # every file but the summarised manifest
    assert vilms("build", "-f", str(built)).code == 0
    no_change = vilms("diff", "--format", "markdown", "-f", str(built)).out
    assert no_change.startswith("<!-- vilms-diff project=demo -->\n### `vilms diff`: no changes") and "<details>" not in no_change


def test_long_diffs_are_truncated_per_file(built, vilms):
    built.write_text(RENAMED)
    text = vilms("diff", "--max-lines", "2", "-f", str(built)).out
    assert "more diff lines not shown (raise --max-lines, or 0 for all)" in text
    full = vilms("diff", "--max-lines", "0", "-f", str(built)).out
    assert "not shown" not in full and len(full) > len(text)
    data = json.loads(vilms("diff", "--format", "json", "--max-lines", "2", "-f", str(built)).out)
    added = [c for c in data["changed"] if c["status"] == "added"]
    assert all(c["diff"].count("\n") <= 2 for c in added)
    assert any(c["omitted_lines"] > 0 for c in added)
    assert vilms("diff", "--max-lines", "-1", "-f", str(built)).code == 2  # click usage error


def test_invalid_vilms_yaml_is_located_not_a_traceback(built, vilms):
    out = built.parent / "generated"
    before = snapshot_tree(out)
    built.write_text(MINIMAL.replace("context: 8192", "context: big"))
    result = vilms("diff", "-f", str(built))
    assert result.code == 1
    assert "vilms.yaml:12:14: models.qwen2.5-1.5b.context: must be an integer" in result.err
    assert "Traceback" not in result.err and result.out == ""
    assert snapshot_tree(out) == before


def test_secrets_never_appear(built, vilms):
    built.write_text(RELEASED)
    secret = "sk-do-not-print-0123456789"
    result = vilms("diff", "--format", "json", "-f", str(built), env={"VILMS_API_KEYS": secret})
    assert result.code == 0 and secret not in result.out


# --- against a git ref


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args],
                          cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path, vilms):
    """A git repo whose project lives in a subfolder, with generated/ committed."""
    root = tmp_path / "repo"
    proj = root / "proj"
    proj.mkdir(parents=True)
    (proj / "vilms.yaml").write_text(MINIMAL)
    assert vilms("build", "-f", str(proj / "vilms.yaml")).code == 0
    (root / "generated").mkdir()  # a generated/ of another project at the top: never mixed in
    (root / "generated" / "other.txt").write_text("not ours\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return proj / "vilms.yaml"


def test_against_a_committed_ref(repo, vilms):
    repo.write_text(RELEASED)
    assert vilms("build", "-f", str(repo)).code == 0
    on_disk = vilms("diff", "--exit-code", "-f", str(repo))
    assert on_disk.code == 0 and on_disk.out.startswith("no changes")
    result = vilms("diff", "--against", "HEAD", "--exit-code", "-f", str(repo), cwd=repo.parent)
    assert result.code == 4, result.err
    assert "+++ b/generated/gpu/gateway/routes.yaml" in result.out and "other.txt" not in result.out
    data = json.loads(vilms("diff", "--against", "main", "--format", "json", "-f", str(repo)).out)
    assert data["against"] == "main"
    assert {c["status"] for c in data["changed"]} == {"modified"}
    md = vilms("diff", "--against", "main", "--format", "markdown", "-f", str(repo)).out
    assert md.startswith("<!-- vilms-diff project=demo -->\n### `vilms diff` against `main`: ")
    git(repo.parent.parent, "add", "-A")
    git(repo.parent.parent, "commit", "-q", "-m", "release")
    same = vilms("diff", "--against", "HEAD", "--exit-code", "-f", str(repo))
    assert same.code == 0 and "generated/ at HEAD matches" in same.out
    assert vilms("diff", "--against", "HEAD~1", "--exit-code", "-f", str(repo)).code == 4


def test_against_a_ref_without_generated_lists_everything_as_added(repo, vilms):
    root = repo.parent.parent
    git(root, "rm", "-r", "-q", "--cached", "proj/generated")
    git(root, "commit", "-q", "-m", "untrack")
    data = json.loads(vilms("diff", "--against", "HEAD", "--format", "json", "-f", str(repo)).out)
    assert data["summary"]["added"] == data["summary"]["files"] and data["summary"]["modified"] == 0


def test_unknown_ref(repo, vilms):
    for ref in ("no-such-branch", "--output=/tmp/x"):
        result = vilms("diff", f"--against={ref}", "--exit-code", "-f", str(repo))
        assert result.code == 1, result
        assert ("unknown git ref" in result.err or "invalid git ref" in result.err) and "Traceback" not in result.err


def test_not_a_git_repo(built, vilms):
    env = {"GIT_CEILING_DIRECTORIES": str(built.parent.parent)}
    result = vilms("diff", "--against", "main", "--exit-code", "-f", str(built), env=env)
    assert result.code == 1
    assert "is not inside a git repository" in result.err and "hint:" in result.err and "Traceback" not in result.err


def test_git_missing(built, vilms, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    result = vilms("diff", "--against", "main", "-f", str(built), env={"PATH": str(empty)})
    assert result.code == 1 and "git is not installed" in result.err and "Traceback" not in result.err


# --- the comparison itself


def test_compare_is_deterministic_and_handles_edge_cases():
    old = {"b.txt": b"one\ntwo\n", "a.txt": b"x\n", "gone.txt": b"bye\n", "manifest.json": b"not json", "nl.txt": b"a\nb"}
    new = {"a.txt": b"x\n", "b.txt": b"one\n2\n", "new.txt": b"hi\n", "manifest.json": b"{}", "nl.txt": b"a\nb\n",
           "bin.dat": b"\xff\x00"}
    report = compare(old, new)
    assert [(c.path, c.status) for c in report.changes] == [
        ("b.txt", "modified"), ("bin.dat", "added"), ("gone.txt", "removed"), ("new.txt", "added"), ("nl.txt", "modified"),
        ("manifest.json", "modified"),
    ]
    assert report.unchanged == 1
    text = render_text(report)
    assert "-b\n\\ No newline at end of file\n+b\n" in text
    assert "generated/bin.dat (added, summarised):\n  binary file differs" in text
    assert "+++ b/generated/manifest.json" in text  # an unreadable manifest is diffed in full
    assert render_text(report) == render_text(compare(dict(reversed(old.items())), dict(reversed(new.items()))))
    assert json.loads(render_json(report))["summary"]["removed"] == 1
    assert "````diff" not in render_markdown(report)
    fenced = render_markdown(compare({"r.md": b"```\n"}, {"r.md": b"```py\n"}))
    assert "````diff" in fenced  # a longer fence than any backtick run inside


def test_an_empty_file_added_or_removed_is_called_empty():
    from vilms.compiler.diff import compare, render_text

    assert "generated/a/empty.txt (added, summarised):\n  empty file\n" in render_text(compare({}, {"a/empty.txt": b""}))
    assert "(removed, summarised):\n  empty file\n" in render_text(compare({"a/empty.txt": b""}, {}))
