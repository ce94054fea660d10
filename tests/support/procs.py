"""Finding the processes a test started, by the paths in their command lines."""

from __future__ import annotations

from pathlib import Path


def processes_under(root: Path) -> dict[int, str]:
    """Live processes (zombies excluded) whose command line names a path under ``root``."""
    needle = str(root).encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle in cmdline and stat[stat.rindex(")") + 2] not in "ZX":
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found
