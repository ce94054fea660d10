"""`vilms build --check`, `vilms diff` and `apply`'s guard compare generated/ as git does (lstat:
regular file, executable bit, symbolic link), and drift (exit 4) is not invalid input (exit 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.compiler.minimal import MINIMAL

ROUTES = "dev/gateway/routes.yaml"


@pytest.fixture
def built(project, vilms):
    path = project(MINIMAL)
    assert vilms("build", "-f", str(path)).code == 0
    return path


def _chmod_x(out: Path) -> None:
    target = out / ROUTES
    target.chmod(0o755)


def _symlink_same_content(out: Path) -> None:
    target = out / ROUTES
    copy = out.parent / "routes-copy.yaml"
    copy.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(copy)


def _dangling_symlink(out: Path) -> None:
    target = out / ROUTES
    target.unlink()
    target.symlink_to(out.parent / "no-such-file.yaml")


def _folder_instead_of_file(out: Path) -> None:
    target = out / ROUTES
    target.unlink()
    target.mkdir()
    (target / "inner.yaml").write_text("x: 1\n")


CASES = {
    "chmod +x": (_chmod_x, "executable (mode 100755, not 100644)", "mode 100755 → 100644"),
    "symlink to identical content": (_symlink_same_content, "a symbolic link (to ", "symbolic link (to "),
    "dangling symlink": (_dangling_symlink, "a dangling symbolic link (to ", "symbolic link (to "),
    "folder instead of a file": (_folder_instead_of_file, "a folder, not a file", "generated/dev/gateway/routes.yaml/inner.yaml"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_diff_and_build_agree_on_type_and_mode(built, vilms, case):
    edit, check_says, diff_says = CASES[case]
    out = built.parent / "generated"
    edit(out)
    check = vilms("build", "--check", "-f", str(built))
    assert check.code == 4, check.err
    assert f"generated/{ROUTES}: {check_says}" in check.err and "Traceback" not in check.err
    diff = vilms("diff", "--exit-code", "-f", str(built))
    assert diff.code == 4, (diff.out, diff.err)
    assert diff_says in diff.out
    # `vilms build` replaces what stands there with the regular file (a link's target is untouched)
    assert vilms("build", "-f", str(built)).code == 0
    assert vilms("build", "--check", "-f", str(built)).code == 0
    assert vilms("diff", "--exit-code", "-f", str(built)).code == 0
    info = os.lstat(out / ROUTES)
    assert oct(info.st_mode & 0o777) == oct(0o644) and not (out / ROUTES).is_symlink()
    if case == "symlink to identical content":
        assert (built.parent / "routes-copy.yaml").exists()


def test_generated_as_a_symlink_is_drift_and_build_refuses_it(built, vilms):
    out = built.parent / "generated"
    real = built.parent / "elsewhere"
    shutil.move(out, real)
    out.symlink_to(real)
    check = vilms("build", "--check", "-f", str(built))
    assert check.code == 4, check.err
    assert "generated/: a symbolic link (to " in check.err and "not a folder" in check.err
    diff = vilms("diff", "--exit-code", "-f", str(built))
    assert diff.code == 4 and "generated/ is a symbolic link" in diff.out, diff.out
    refused = vilms("build", "-f", str(built))
    assert refused.code == 1 and "symbolic link" in refused.err and "hint:" in refused.err
    assert out.is_symlink() and (real / ROUTES).is_file()  # neither the link nor its target touched


def test_invalid_input_is_not_drift(built, vilms):
    built.write_text(MINIMAL.replace("target: local", "target: nowhere"))
    check = vilms("build", "--check", "-f", str(built))
    assert check.code == 1, check.err
    assert "vilms.yaml:" in check.err and "Traceback" not in check.err
    assert vilms("diff", "--exit-code", "-f", str(built)).code == 1


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_a_committed_executable_bit_shows_against_the_ref(built, vilms):
    root = built.parent
    _git(root, "init", "-q", "-b", "main")
    (root / "generated" / ROUTES).chmod(0o755)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "x")
    assert "100755" in _git(root, "ls-files", "-s", f"generated/{ROUTES}")
    result = vilms("diff", "--against", "HEAD", "--exit-code", "-f", str(built))
    assert result.code == 4 and f"generated/{ROUTES}" in result.out and "mode 100755 → 100644" in result.out


def test_an_unknown_ref_in_a_shallow_clone_says_how_to_fetch_it(built, vilms, tmp_path):
    root = built.parent
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "one")
    (root / "note.txt").write_text("x")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "two")
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", "--depth=1", f"file://{root}", str(clone))
    result = vilms("diff", "--against", "HEAD~1", "-f", str(clone / "vilms.yaml"))
    assert result.code == 1 and "unknown git ref 'HEAD~1'" in result.err, result.err
    assert "this clone is shallow" in result.err and "git fetch --depth=50 origin HEAD~1" in result.err
    assert "fetch-depth: 0" in result.err
