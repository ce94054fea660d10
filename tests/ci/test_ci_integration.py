"""CI integration: the pre-commit hook's entry, the composite action and its comment script
(run against a scratch git repository and a fake GitHub REST API on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from tests.compiler.minimal import MINIMAL

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ci" / "pr_comment.py"
BIN = Path(sys.executable).parent  # where the `vilms` console script is installed


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _build(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "vilms", "build", "-f", "vilms.yaml"], cwd=root, check=True, capture_output=True)


# --- pre-commit


def _hook() -> dict:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "vilms-build-check"]
    return hook


def test_the_hook_watches_vilms_yaml_and_generated_only():
    hook = _hook()
    assert hook["pass_filenames"] is False and hook["language"] == "python"
    files = re.compile(hook["files"])
    for path in ("vilms.yaml", "generated/manifest.json", "generated/dev/gateway/routes.yaml", "proj/vilms.yaml",
                 "proj/generated/dev/local.yaml"):
        assert files.search(path), path
    for path in ("README.md", "my-vilms.yaml.bak", "src/generator.py", "vilms.yaml.orig"):
        assert not files.search(path), path


def test_the_hook_entry_is_green_when_clean_and_red_after_a_hand_edit(tmp_path):
    (tmp_path / "vilms.yaml").write_text(MINIMAL)
    _build(tmp_path)
    entry = shlex.split(_hook()["entry"]) + list(_hook().get("args", []))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    clean = subprocess.run(entry, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    (tmp_path / "generated" / "dev" / "local.yaml").write_text("edited by hand\n")
    edited = subprocess.run(entry, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert edited.returncode == 4 and "generated/dev/local.yaml: differs" in edited.stderr


# --- the action


def test_action_yml_is_a_composite_action_calling_the_script():
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert {"name", "description", "runs"} <= set(action)
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    for step in steps:  # a composite step is either `uses` or `run` with its shell
        assert ("uses" in step) != ("run" in step), step
        if "run" in step:
            assert step["shell"] == "bash"
            assert "${{" not in step["run"], "inputs reach the shell through env only"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert '"$GITHUB_ACTION_PATH/ci/pr_comment.py"' in runs and (REPO / "ci" / "pr_comment.py").is_file()
    assert "vilms build --check" in runs
    used_inputs = set(re.findall(r"inputs\.([\w-]+)", (REPO / "action.yml").read_text()))
    assert used_inputs <= set(action["inputs"]), used_inputs - set(action["inputs"])
    try:  # SchemaStore's schema of action.yml, when check-jsonschema (which vendors it) is installed
        from importlib.resources import files

        import jsonschema
        schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("github-actions.json").read_text())
    except ModuleNotFoundError:
        return
    jsonschema.validate(action, schema)


class FakeGitHub:
    """Issue comments of one repository: list (paginated), create, update."""

    def __init__(self, repo: str, token: str) -> None:
        self.repo, self.token = repo, token
        self.comments: dict[int, list[dict]] = {}
        self.next_id = 1000
        self.requests: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, code: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                fake.requests.append((method, url.path))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._reply(401, {"message": "Bad credentials"})
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length)) if length else None
                prefix = f"/repos/{fake.repo}/issues/"
                if not url.path.startswith(prefix):
                    return self._reply(404, {"message": "Not Found"})
                parts = url.path[len(prefix):].split("/")
                if method == "GET" and len(parts) == 2 and parts[1] == "comments":
                    query = parse_qs(url.query)
                    per_page, page = int(query.get("per_page", ["30"])[0]), int(query.get("page", ["1"])[0])
                    listed = fake.comments.get(int(parts[0]), [])
                    return self._reply(200, listed[(page - 1) * per_page: page * per_page])
                if method == "POST" and len(parts) == 2 and parts[1] == "comments":
                    return self._reply(201, fake.add(int(parts[0]), payload["body"]))
                if method == "PATCH" and parts[0] == "comments" and len(parts) == 2:
                    for listed in fake.comments.values():
                        for comment in listed:
                            if comment["id"] == int(parts[1]):
                                comment["body"] = payload["body"]
                                return self._reply(200, comment)
                return self._reply(404, {"message": "Not Found"})

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, number: int, body: str) -> dict:
        self.next_id += 1
        comment = {"id": self.next_id, "body": body}
        self.comments.setdefault(number, []).append(comment)
        return comment

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github():
    fake = FakeGitHub("acme/models", "tok-secret-123")
    yield fake
    fake.close()


@pytest.fixture
def pr_repo(tmp_path):
    """main holds a built project; the checked-out branch changes the context and rebuilds."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "vilms.yaml").write_text(MINIMAL)
    _build(root)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "base")
    _git(root, "checkout", "-q", "-b", "feature")
    (root / "vilms.yaml").write_text(MINIMAL.replace("context: 8192", "context: 4096"))
    _build(root)
    return root


def _run_script(root: Path, github: FakeGitHub, *, event: Path | None = None, token: str | None = None, **extra: str):
    env = {**os.environ, "GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": github.repo,
           "GITHUB_TOKEN": token or github.token, **extra}
    env.pop("GITHUB_EVENT_PATH", None)
    if event is not None:
        env["GITHUB_EVENT_PATH"] = str(event)
    return subprocess.run([sys.executable, str(SCRIPT), "--file", "vilms.yaml", "--against", "main"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_script_creates_the_comment_then_updates_the_same_one(pr_repo, github, tmp_path):
    for i in range(120):  # other people's comments: the marker is found past the first page
        github.add(7, f"comment {i}")
    github.add(7, "<!-- vilms-diff project=other -->\nanother project's diff")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    summary = tmp_path / "summary.md"

    first = _run_script(pr_repo, github, event=event, GITHUB_STEP_SUMMARY=str(summary))
    assert first.returncode == 0, first.stderr
    ours = [c for c in github.comments[7] if c["body"].startswith("<!-- vilms-diff project=demo -->\n")]
    assert len(ours) == 1 and f"created comment {ours[0]['id']} on pull request #7" in first.stdout
    assert "generated/dev/local.yaml" in ours[0]["body"] and "against `main`" in ours[0]["body"]
    assert summary.read_text() == ours[0]["body"]

    (pr_repo / "vilms.yaml").write_text(MINIMAL.replace("context: 8192", "context: 2048"))
    _build(pr_repo)
    second = _run_script(pr_repo, github, event=event)
    assert second.returncode == 0, second.stderr
    assert f"updated comment {ours[0]['id']} on pull request #7" in second.stdout
    assert len(github.comments[7]) == 122  # 120 + the other project's + ours, updated in place
    assert "2048" in ours[0]["body"] and github.comments[7][120]["body"].endswith("another project's diff")
    assert ("POST", f"/repos/{github.repo}/issues/7/comments") in github.requests
    assert sum(1 for m, _ in github.requests if m == "POST") == 1


def test_the_script_outside_a_pull_request_only_prints(pr_repo, github):
    result = _run_script(pr_repo, github)
    assert result.returncode == 0 and result.stdout.startswith("not a pull request")
    assert github.requests == []


def test_a_bad_token_is_one_line_and_never_echoed(pr_repo, github, tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    result = _run_script(pr_repo, github, event=event, token="tok-wrong-456")
    assert result.returncode == 1 and "HTTP 401" in result.stderr and "Traceback" not in result.stderr
    assert "tok-wrong-456" not in result.stderr + result.stdout
