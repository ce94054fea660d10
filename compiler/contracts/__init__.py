"""Contracts: every file that crosses a package boundary, one module each.

Each module holds the file's frozen dataclass tree and its :class:`~.contract.Contract`
(kind, shipped JSON Schema in ``schemas/``, format). The compiler or runtime that writes
the file serialises the dataclass with ``CONTRACT.dump``; every reader loads it with
``CONTRACT.load``, which validates and reports problems located, ``file:line:col: path:
message``. Readers hold no defaults: the writer writes every key.
"""
