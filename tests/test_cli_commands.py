"""The `vilms` group loads a command's module only when that command runs, and its table names
every command each cli module defines (so none is unreachable and none is listed twice)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from vilms.cli.main import COMMANDS


def test_the_command_table_is_every_command_of_the_cli_modules():
    defined = {}
    for module in sorted({m for m, _help in COMMANDS.values()}):
        for command in importlib.import_module(f"vilms.cli.{module}").COMMANDS:
            assert command.name not in defined, command.name
            defined[command.name] = module
    assert defined == {name: module for name, (module, _help) in COMMANDS.items()}


def test_a_command_loads_only_its_own_module():
    code = ("import sys\nfrom vilms.cli.main import run\nrun(['schema'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('vilms.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['vilms.cli.exits', 'vilms.cli.main', 'vilms.cli.options', 'vilms.cli.paths', 'vilms.cli.project']"
