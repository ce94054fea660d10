"""``python -m vilms.cli``: the `vilms` command."""

from vilms.cli.main import main

main()
