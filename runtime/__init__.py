"""Runtime programs that execute what the compiler produced (gateway, local runner)."""
