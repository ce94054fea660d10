"""The one exception root of ViLMS and its narrow subclasses.

Every error a user can cause derives from :class:`VilmsError`. The CLI boundary
(:mod:`vilms.cli.main`) is the only place that catches them and maps them to
exit codes; nothing below it prints or exits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class ExitCode(IntEnum):
    """The one exit-code table of every `vilms` command."""

    OK = 0
    FAILED = 1  # invalid input, or an action that could not be carried out
    USAGE = 2  # the command line itself is wrong
    # `vilms train`: the run completed but its gate failed or needs a human approval; retrying
    # cannot change that (the Helm training Job's podFailurePolicy fails the Job on it)
    GATE = 3
    # generated/ is not what vilms.yaml compiles to (content, type or mode): `build --check`,
    # `diff --exit-code`, and `apply`/`up` refusing a stale tree; distinct from invalid input (1)
    DRIFT = 4
    INTERRUPTED = 130  # Ctrl-C / SIGINT (128 + 2)


# a command that fails also writes the error it printed to the file this names (when set):
# `vilms train --all` runs each adapter as `vilms train ADAPTER` and shows each one's error
ERROR_FILE_ENV = "VILMS_ERROR_FILE"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One located problem in an input file: ``file:line:col: path: message``."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str | None = field(default=None, compare=False)

    def render(self) -> str:
        """One line (plus hint and any table the message carries); user text in it cannot
        write control or bidi characters to the terminal: they are shown escaped (``\\x00``)."""
        file, path = printable(self.file), printable(self.path)
        where = f"{file}:{self.line}:{self.column}" if self.line else file
        message = printable(self.message, lines=True)
        text = f"{where}: {path}: {message}" if self.path else f"{where}: {message}"
        if self.hint:
            text += f"\n  hint: {printable(self.hint, lines=True)}"
        return text

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every character a terminal would not show as itself (controls, bidi
    overrides, zero-width and other format characters, separators) escaped as Python does:
    ``\\x00``, ``\\u202e``. ``lines=True`` keeps line breaks (a message's own table)."""
    if text.isprintable():
        return text
    if lines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class VilmsError(Exception):
    """Root of every error ViLMS reports to a user. Exit code 1 unless said otherwise."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        """The message and hint for a terminal; user text in them (paths, names) cannot write
        control or bidi characters: they are shown escaped, as in diagnostics."""
        message = printable(self.message, lines=True)
        return message + (f"\n  hint: {printable(self.hint, lines=True)}" if self.hint else "")


class GateError(VilmsError):
    """A run trained to the end and its evaluation gate did not pass (exit code 3)."""

    exit_code = ExitCode.GATE


class UsageError(VilmsError):
    """The command line itself is wrong (exit code 2)."""

    exit_code = ExitCode.USAGE


class InvalidInputError(VilmsError):
    """An input file is invalid; carries every diagnostic found, sorted."""

    def __init__(self, diagnostics: list[Diagnostic], *, what: str | None = None, hint: str | None = None) -> None:
        self.diagnostics = sorted(diagnostics)
        count = len(self.diagnostics)
        summary = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__(f"{what}: {summary}" if what else summary, hint=hint)

    def render(self) -> str:
        lines = [d.render() for d in self.diagnostics]
        lines.append(self.message + (f"\n  hint: {self.hint}" if self.hint else ""))
        return "\n".join(lines)


class StaleOutputError(VilmsError):
    """``vilms build --check``: generated/ differs from what the input compiles to (exit code 4)."""

    exit_code = ExitCode.DRIFT


class ActionError(VilmsError):
    """An action (train, export, apply, serve, ...) could not be carried out."""


class DatasetError(InvalidInputError):
    """A dataset file is invalid (located by file and line)."""


class NotFitError(VilmsError):
    """A deployment or a training run does not fit its hardware profile's memory."""
