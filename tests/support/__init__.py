"""Shared test helpers (validator wrappers around the real consumer tools)."""
