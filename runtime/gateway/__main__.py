"""``python -m vilms.runtime.gateway --routes FILE [--host H] [--port P]`` (the container entry point)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from vilms.compiler.errors import VilmsError

from .server import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vilms.runtime.gateway",
                                     description="ViLMS OpenAI-compatible gateway.")
    parser.add_argument("--routes", required=True, type=Path, help="routes.yaml written by `vilms build`")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = parser.parse_args(argv)
    if args.quiet:
        logging.getLogger("vilms.gateway.access").setLevel(logging.WARNING)
    try:
        run(args.routes, host=args.host, port=args.port)
    except VilmsError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
