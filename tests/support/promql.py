"""A small PromQL reader for the dashboard checks: tokens, then every selector and grouping.

Not a full parser: enough of the grammar the dashboards use (selectors with matchers, range
and subquery brackets, functions, aggregations with ``by``/``without`` before or after their
argument, binary operators with ``on``/``ignoring``/``group_left``/``group_right``, numbers,
strings, durations) plus Grafana's variables (``$x``, ``${x}``, ``[[x]]``, ``$__rate_interval``).
Anything it does not know is an error, so a typo in a function name fails as loudly as one in
a metric name. There is no well-kept PromQL parser on PyPI (the candidates are query
builders and HTTP clients), and promtool is not installed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# prometheus/promql/parser/functions.go (Prometheus 3.x), the functions a dashboard may call
FUNCTIONS = frozenset("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp clamp_max clamp_min
cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta deriv exp floor
histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar histogram_sum
holt_winters double_exponential_smoothing hour idelta increase irate label_join label_replace last_over_time ln log10
log2 mad_over_time max_over_time min_over_time minute month predict_linear present_over_time quantile_over_time rad
rate resets round scalar sgn sin sinh sort sort_desc sort_by_label sort_by_label_desc sqrt stddev_over_time
stdvar_over_time sum_over_time tan tanh time timestamp vector year
""".split())
AGGREGATIONS = frozenset("sum avg min max count stddev stdvar topk bottomk quantile count_values group limitk limit_ratio".split())
GROUPING = frozenset("by without".split())
MATCHING = frozenset("on ignoring group_left group_right".split())
KEYWORDS = frozenset("bool offset and or unless atan2".split())

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[A-Za-z_][A-Za-z0-9_:.]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z_][A-Za-z0-9_]*\]\])
  | (?P<duration>(?:[0-9]+(?:ms|s|m|h|d|w|y))+)
  | (?P<number>(?:[0-9]*\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]:@])
""", re.VERBOSE)


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(expr: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r} at {pos} of {expr!r}")
        if m.lastgroup != "space":
            out.append(Token(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    return out


@dataclass
class Selector:
    metric: str
    labels: set[str] = field(default_factory=set)  # label names in its {matchers}


@dataclass
class Query:
    selectors: list[Selector]
    groupings: list[tuple[set[str], list[str]]]  # (labels of a by/without/on/ignoring clause, metrics it groups)
    functions: list[str]


def _close(tokens: list[Token], i: int, open_: str, close: str) -> int:
    """Index of the token closing the bracket opened at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].text == open_:
            depth += 1
        elif tokens[j].text == close:
            depth -= 1
            if depth == 0:
                return j
    raise PromQLError(f"unbalanced {open_!r} at {tokens[i].pos}")


def _label_list(tokens: list[Token], i: int) -> tuple[set[str], int]:
    """``( a, b )`` at ``i`` → ({a, b}, index after ``)``)."""
    if i >= len(tokens) or tokens[i].text != "(":
        raise PromQLError("a grouping clause needs a label list in ( )")
    end = _close(tokens, i, "(", ")")
    names = [t for t in tokens[i + 1:end] if t.text != ","]
    for t in names:
        if t.kind != "ident":
            raise PromQLError(f"{t.text!r} is not a label name")
    return {t.text for t in names}, end + 1


def _matchers(tokens: list[Token], i: int) -> tuple[set[str], int]:
    """``{ a="x", b=~"y" }`` at ``i`` → ({a, b}, index after ``}``)."""
    end = _close(tokens, i, "{", "}")
    inner = tokens[i + 1:end]
    labels: set[str] = set()
    k = 0
    while k < len(inner):
        if k + 2 >= len(inner) or inner[k].kind != "ident" or inner[k + 1].text not in ("=", "!=", "=~", "!~") \
                or inner[k + 2].kind not in ("string", "variable"):
            raise PromQLError(f"bad matcher near {inner[k].text!r}")
        labels.add(inner[k].text)
        k += 3
        if k < len(inner):
            if inner[k].text != ",":
                raise PromQLError(f"expected ',' between matchers, got {inner[k].text!r}")
            k += 1
    return labels, end + 1


def _balanced(tokens: list[Token]) -> None:
    stack: list[Token] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for t in tokens:
        if t.text in "([{":
            stack.append(t)
        elif t.text in pairs:
            if not stack or stack.pop().text != pairs[t.text]:
                raise PromQLError(f"unbalanced {t.text!r} at {t.pos}")
    if stack:
        raise PromQLError(f"unclosed {stack[-1].text!r} at {stack[-1].pos}")


def parse(expr: str) -> Query:
    tokens = tokenize(expr)
    _balanced(tokens)
    selectors: list[Selector] = []
    groupings: list[tuple[set[str], tuple[int, int]]] = []
    functions: list[str] = []
    where: list[int] = []  # token index of each selector
    i = 0
    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1].text if i + 1 < len(tokens) else None
        if t.text == "[":  # range or subquery: a duration or variable, optionally :step
            end = _close(tokens, i, "[", "]")
            if any(x.kind not in ("duration", "variable") and x.text != ":" for x in tokens[i + 1:end]) or end == i + 1:
                raise PromQLError(f"bad range at {t.pos}")
            i = end + 1
            continue
        if t.kind != "ident":
            i += 1
            continue
        word = t.text
        if word in AGGREGATIONS and nxt in ("(", "by", "without"):
            j = i + 1
            labels: set[str] | None = None
            if tokens[j].text in GROUPING:
                labels, j = _label_list(tokens, j + 1)
            arg_end = _close(tokens, j, "(", ")")
            if labels is None and arg_end + 1 < len(tokens) and tokens[arg_end + 1].text in GROUPING:
                labels, _ = _label_list(tokens, arg_end + 2)
            if labels is not None:
                groupings.append((labels, (j, arg_end)))
            i += 1
            continue
        if word in GROUPING or word in MATCHING:
            if word in GROUPING:  # recorded with its aggregation above
                if i == 0 or not (tokens[i - 1].text == ")" or tokens[i - 1].text in AGGREGATIONS):
                    raise PromQLError(f"{word!r} outside an aggregation")
                _, i = _label_list(tokens, i + 1)
                continue
            if nxt == "(":
                labels, after = _label_list(tokens, i + 1)
                groupings.append((labels, (0, len(tokens) - 1)))  # vector matching: both sides
                i = after
                continue
            i += 1
            continue
        if nxt == "(" and word not in KEYWORDS:
            if word not in FUNCTIONS:
                raise PromQLError(f"unknown function {word!r}")
            functions.append(word)
            i += 1
            continue
        if word in KEYWORDS:
            i += 1
            continue
        sel = Selector(word)
        i += 1
        if i < len(tokens) and tokens[i].text == "{":
            sel.labels, i = _matchers(tokens, i)
        selectors.append(sel)
        where.append(i - 1)
    # a bare {matchers} selector without a metric name is not used by the dashboards: refuse it
    for k, t in enumerate(tokens):
        if t.text == "{" and (k == 0 or tokens[k - 1].kind != "ident"):
            raise PromQLError(f"a selector without a metric name at {t.pos}")
    resolved = [(labels, [s.metric for s, w in zip(selectors, where, strict=True) if lo <= w <= hi]) for labels, (lo, hi) in groupings]
    return Query(selectors, resolved, functions)


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<expr>.+),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$", re.S)


def parse_variable_query(query: str) -> tuple[Query | None, str]:
    """Grafana's ``label_values(expr, label)`` → (the parsed expr, the label)."""
    m = _LABEL_VALUES.match(query)
    if m is None:
        raise PromQLError(f"not a label_values() query: {query!r}")
    return (parse(m["expr"]) if m["expr"] else None), m["label"]


def legend_labels(legend: str) -> set[str]:
    return set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend))
