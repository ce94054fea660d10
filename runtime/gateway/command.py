"""`vilms serve --deployment NAME`: run the gateway on a deployment's compiled routes.

Imports nothing heavy at module level; the server's modules load only when it starts.
"""

from __future__ import annotations

from pathlib import Path

import click

from vilms.compiler.errors import UsageError


@click.command("serve")
@click.option("--deployment", "deployment", required=True, help="The deployment whose routes to serve.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("-f", "--file", "file", type=click.Path(path_type=Path, dir_okay=False), default=Path("vilms.yaml"),
              show_default=True, help="The vilms.yaml whose generated/ folder holds the routes.")
def serve(deployment: str, host: str, port: int, file: Path) -> None:
    """Run the OpenAI-compatible gateway for DEPLOYMENT (reads generated/DEPLOYMENT/gateway/routes.yaml)."""
    root = file.resolve().parent  # generated/ lies beside the real file, as the compiler writes it
    routes = root / "generated" / deployment / "gateway" / "routes.yaml"
    if not routes.is_file():
        built = sorted(p.parent.parent.name for p in (root / "generated").glob("*/gateway/routes.yaml"))
        raise UsageError(
            f"no routes for deployment {deployment!r}: {routes} does not exist",
            hint=f"deployments built: {', '.join(built)}" if built else "run `vilms build` first",
        )
    from vilms.runtime.gateway.server import run

    run(routes, host=host, port=port)
