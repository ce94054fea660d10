"""``python -m vilms``: the `vilms` command (this folder is installed as the ``vilms`` namespace's
``__main__``; see pyproject.toml)."""

from vilms.cli.main import main

main()
