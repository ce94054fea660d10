#!/usr/bin/env python3
"""Post `vilms diff --format markdown` as a pull-request comment, or update the one posted before.

Called by the composite action (action.yml) after vilms is installed; standard library only.
The comment's first line is vilms's hidden marker (``<!-- vilms-diff project=NAME -->``): the
script lists the pull request's comments (GitHub REST API, paginated), PATCHes the first one
whose first line is that marker, and otherwise POSTs a new one. Outside a pull request (no
number) it only prints the comment. The token is read from GITHUB_TOKEN and never printed.

    python ci/pr_comment.py --file vilms.yaml --against origin/main [--pr N] [--max-chars N]

Environment: GITHUB_TOKEN, GITHUB_REPOSITORY (owner/name), GITHUB_API_URL (default
https://api.github.com), GITHUB_EVENT_PATH (the pull request number when --pr is not given),
GITHUB_STEP_SUMMARY (the comment is appended there too, when set).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

MARKER_PREFIX = "<!-- vilms-diff"
PER_PAGE = 100
TIMEOUT = 30  # seconds per API request


class Failure(Exception):
    """One line for the job log; the script exits 1."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", default="vilms.yaml")
    parser.add_argument("--against", required=True, help="the git ref to compare generated/ with (the PR's base)")
    parser.add_argument("--pr", type=int, help="pull request number (default: from GITHUB_EVENT_PATH)")
    parser.add_argument("--max-chars", type=int, default=60_000)
    args = parser.parse_args(argv)
    try:
        body = diff_markdown(args.file, args.against, args.max_chars)
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            with open(summary, "a", encoding="utf-8") as out:
                out.write(body)
        number = args.pr or pr_number(os.environ.get("GITHUB_EVENT_PATH"))
        if number is None:
            print("not a pull request: the comment is not posted\n" + body)
            return 0
        action, comment_id = upsert(api_url(), repository(), number, body, token())
        print(f"{action} comment {comment_id} on pull request #{number}")
        return 0
    except Failure as exc:
        print(f"vilms pr comment: {exc}", file=sys.stderr)
        return 1


def diff_markdown(file: str, against: str, max_chars: int) -> str:
    command = [sys.executable, "-m", "vilms", "diff", "-f", file, "--against", against, "--format", "markdown",
               "--max-chars", str(max_chars)]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise Failure(f"`vilms diff --against {against}` failed (exit {proc.returncode}); see above")
    if not proc.stdout.startswith(MARKER_PREFIX):
        raise Failure("`vilms diff --format markdown` printed no marker line; is vilms older than this action?")
    return proc.stdout


def pr_number(event_path: str | None) -> int | None:
    if not event_path:
        return None
    try:
        with open(event_path, encoding="utf-8") as f:
            event = json.load(f)
    except (OSError, ValueError) as exc:
        raise Failure(f"cannot read the event file {event_path}: {exc}") from None
    number = (event.get("pull_request") or {}).get("number")
    return int(number) if number else None


def api_url() -> str:
    return os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")


def repository() -> str:
    repo = os.environ.get("GITHUB_REPOSITORY", "")
    if repo.count("/") != 1:
        raise Failure("GITHUB_REPOSITORY must be owner/name")
    return repo


def token() -> str:
    value = os.environ.get("GITHUB_TOKEN", "")
    if not value:
        raise Failure("GITHUB_TOKEN is not set (give the job `permissions: pull-requests: write`)")
    return value


def upsert(api: str, repo: str, number: int, body: str, auth: str) -> tuple[str, int]:
    """Update the comment carrying ``body``'s marker line, else create one: ("updated"|"created", id)."""
    marker = body.split("\n", 1)[0]
    existing = find_comment(api, repo, number, marker, auth)
    if existing is not None:
        request(api, f"/repos/{repo}/issues/comments/{existing}", auth, method="PATCH", payload={"body": body})
        return "updated", existing
    created = request(api, f"/repos/{repo}/issues/{number}/comments", auth, method="POST", payload={"body": body})
    return "created", int(created["id"])


def find_comment(api: str, repo: str, number: int, marker: str, auth: str) -> int | None:
    page = 1
    while True:
        comments = request(api, f"/repos/{repo}/issues/{number}/comments?per_page={PER_PAGE}&page={page}", auth)
        for comment in comments:
            if (comment.get("body") or "").split("\n", 1)[0].strip() == marker:
                return int(comment["id"])
        if len(comments) < PER_PAGE:
            return None
        page += 1


def request(api: str, path: str, auth: str, *, method: str = "GET", payload: dict | None = None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(api + path, data=data, method=method, headers={
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {auth}",
        "X-GitHub-Api-Version": "2022-11-28",
        "Content-Type": "application/json",
        "User-Agent": "vilms-pr-comment",
    })
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200].replace(auth, "***")
        raise Failure(f"{method} {path.split('?')[0]}: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise Failure(f"{method} {path.split('?')[0]}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
