"""The gateway's input: ``generated/<deployment>/gateway/routes.yaml``, read through its contract
(:mod:`vilms.compiler.contracts.routes`): strictly validated, every problem located."""

from __future__ import annotations

from pathlib import Path

from vilms.compiler.contracts.routes import ROUTES, GatewayRoutes


def load_routes(path: Path) -> GatewayRoutes:
    """Read and validate a routes file; raise InvalidInputError listing every problem."""
    return ROUTES.load(Path(path))


def parse_routes(text: str, file: str = "routes.yaml") -> GatewayRoutes:
    """Validate routes YAML given as text (``file`` is only used in messages)."""
    return ROUTES.parse(text.encode("utf-8"), file)
