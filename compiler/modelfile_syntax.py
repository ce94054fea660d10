"""Ollama's Modelfile grammar: the canonical writer and a parser that follows ``parser/parser.go``.

The writer quotes exactly like Ollama's ``Command.String``/``quote`` so that output
round-trips with ``ollama show --modelfile``. The parser is a state machine mirroring
Ollama's (states nil, name, value, parameter, message, comment), used to check every
generated Modelfile and to reject values Ollama cannot represent.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter", "message", "requires")
ERR_INVALID_COMMAND = "command must be one of " + ", ".join(f'"{c}"' for c in COMMANDS[:-1]) + f', or "{COMMANDS[-1]}"'
ERR_MESSAGE_ROLE = 'message role must be one of "system", "user", or "assistant"'

MESSAGE_ROLES = ("system", "user", "assistant")
# api/types.go Options + Runner (current) — anything else is an error in api.FormatParams
PARAMETERS = (
    "num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "num_keep", "seed", "num_predict",
    "top_k", "top_p", "min_p", "typical_p", "repeat_last_n", "temperature", "repeat_penalty",
    "presence_penalty", "frequency_penalty", "stop", "draft_num_predict",
)


class ModelfileSyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"(line {line}): {message}" if line else message)
        self.line = line


@dataclass(frozen=True)
class Command:
    name: str  # "model" for FROM, lower-case command, or the PARAMETER name
    args: str

    def __str__(self) -> str:
        if self.name == "model":
            return f"FROM {self.args}"
        if self.name in ("license", "template", "system", "adapter", "renderer", "parser", "requires", "draft"):
            return f"{self.name.upper()} {quote(self.args)}"
        if self.name == "message":
            role, _, message = self.args.partition(": ")
            return f"MESSAGE {role} {quote(message)}"
        return f"PARAMETER {self.name} {quote(self.args)}"


def quote(value: str) -> str:
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        if '"' in value:
            return f'"""{value}"""'
        return f'"{value}"'
    return value


def unquote(value: str) -> tuple[str, bool]:
    if value[:3] == '"""':
        if len(value) >= 6 and value[-3:] == '"""':
            return value[3:-3], True
        return "", False
    if value[:1] == '"':
        if len(value) >= 2 and value[-1] == '"':
            return value[1:-1], True
        return "", False
    return value, True


def _is_space(c: str) -> bool:
    return c in (" ", "\t")


def _is_newline(c: str) -> bool:
    return c in ("\r", "\n")


def _is_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _go_trim_space(s: str) -> str:
    return s.strip(" \t\n\r\v\f\x85\xa0")


def _printable(c: str) -> bool:
    # strconv.IsPrint: letters, marks, numbers, punctuation, symbols and ASCII space
    return c == " " or c.isprintable()


NIL, NAME, VALUE, PARAMETER, MESSAGE, COMMENT = range(6)


def parse(text: str) -> list[Command]:
    """Parse a Modelfile the way Ollama does; raise :class:`ModelfileSyntaxError`."""
    if text.startswith("\ufeff"):
        text = text[1:]
    commands: list[Command] = []
    state, line, buf, role, name = NIL, 1, "", "", ""
    for c in text:
        if _is_newline(c):
            line += 1
        nxt, c2 = _next_state(c, state, line)
        if nxt != state:
            if state == NAME:
                word = buf.lower()
                if word not in COMMANDS:
                    raise ModelfileSyntaxError(line, ERR_INVALID_COMMAND)
                if word == "from":
                    name = "model"
                elif word == "parameter":
                    nxt = PARAMETER
                elif word == "message":
                    nxt = MESSAGE
                    name = word
                else:
                    name = word
            elif state == PARAMETER:
                name = buf
            elif state == MESSAGE:
                if buf not in MESSAGE_ROLES:
                    raise ModelfileSyntaxError(line, ERR_MESSAGE_ROLE)
                role = buf
            elif state == VALUE:
                value, ok = unquote(_go_trim_space(buf))
                if not ok or _is_space(c):
                    buf += c
                    continue
                if role:
                    value = f"{role}: {value}"
                    role = ""
                commands.append(Command(name, value))
            buf = ""
            state = nxt
        if c2 and _printable(c2):
            buf += c2
    if state == VALUE:
        value, ok = unquote(_go_trim_space(buf))
        if not ok:
            raise ModelfileSyntaxError(0, "unexpected EOF (unterminated quote)")
        if role:
            value = f"{role}: {value}"
        commands.append(Command(name, value))
    elif state not in (NIL, COMMENT):
        raise ModelfileSyntaxError(0, "unexpected EOF")
    if not any(cmd.name == "model" for cmd in commands):
        raise ModelfileSyntaxError(0, "no FROM line")
    return commands


def _next_state(c: str, state: int, line: int) -> tuple[int, str]:
    if state == NIL:
        if c == "#":
            return COMMENT, ""
        if _is_space(c) or _is_newline(c):
            return NIL, ""
        return NAME, c
    if state == NAME:
        if _is_alpha(c):
            return NAME, c
        if _is_space(c):
            return VALUE, ""
        raise ModelfileSyntaxError(line, ERR_INVALID_COMMAND)
    if state == VALUE:
        if _is_newline(c) or _is_space(c):
            return NIL, c
        return VALUE, c
    if state in (PARAMETER, MESSAGE):
        ok = _is_alpha(c) or (state == PARAMETER and (c.isdigit() and c.isascii() or c == "_"))
        if ok:
            return state, c
        if _is_space(c):
            return VALUE, ""
        # Go returns io.ErrUnexpectedEOF here, wrapped without a line number
        raise ModelfileSyntaxError(0, "unexpected EOF")
    if state == COMMENT:
        return (NIL, "") if _is_newline(c) else (COMMENT, "")
    raise ModelfileSyntaxError(line, "invalid state")


def render(commands: list[Command]) -> str:
    return "".join(f"{cmd}\n" for cmd in commands)


def representable(name: str, value: str) -> bool:
    """True when ``value`` survives Ollama's writer and parser unchanged."""
    return why_unrepresentable(name, value) is None


def why_unrepresentable(name: str, value: str) -> str | None:
    """None when ``value`` survives Ollama's writer and parser unchanged, else the reason in words.

    Ollama's Modelfile has no escapes: a value is written bare, or between ``"`` or ``\"\"\"``
    when it has a newline or a leading/trailing space, and the parser drops every
    character that is not printable.
    """
    cmd = Command(name, value)
    try:
        parsed = parse(f"FROM base\n{cmd}\n")
    except ModelfileSyntaxError as exc:
        parsed = None
        error = str(exc)
    if parsed is not None and parsed[1:] == [cmd]:
        return None
    for c in value:
        if c == "\r":
            return "it contains a carriage return (Ollama reads it as a line break)"
        if not (_printable(c) or c in "\n\t"):
            return f"it contains U+{ord(c):04X}, a character Ollama's parser drops"
    if ("\n" in value or value.startswith(" ") or value.endswith(" ")) and '"""' in value:
        return 'it needs quoting (newline or edge space) and contains """, which Ollama cannot quote'
    if value[:1] == "\t" or value[-1:] == "\t":
        return "it starts or ends with a tab, which Ollama trims"
    if value.startswith('"'):
        return 'it starts with ", which Ollama reads as an opening quote'
    return "Ollama would read it back differently" + (f" ({error})" if parsed is None else "")
