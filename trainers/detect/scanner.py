"""All detectors in one scanner: ``Scanner.find(text)`` → non-overlapping findings."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

from vilms.compiler.errors import UsageError

from . import network, people, secrets
from .base import Candidate, Finding, resolve

# Regions whose national phone formats are tried when a dataset names none (--region): the
# ones the corpus covers. A dataset from elsewhere should name its own.
DEFAULT_REGIONS = ("US", "GB", "DE", "FR", "IN")
_DIGIT = re.compile(r"\d")
MIN_LENGTH = 6  # the shortest finding: an email a@b.co or a greeting "Hi Al,"
_MEMO_LENGTH = 40  # short strings repeat (keys, roles, stock replies): their findings are memoised
_MEMO_SIZE = 4096


def check_regions(regions: Iterable[str]) -> tuple[str, ...]:
    """ISO 3166 alpha-2 codes that libphonenumber knows, upper-cased; a bad one is a UsageError."""
    import phonenumbers

    known = phonenumbers.SUPPORTED_REGIONS
    out = []
    for region in regions:
        code = region.strip().upper()
        if code not in known:
            raise UsageError(
                f"--region {region!r}: not a region libphonenumber knows",
                hint="an ISO 3166-1 alpha-2 code such as US, GB, DE, FR or IN",
            )
        if code not in out:
            out.append(code)
    return tuple(out)


class Scanner:
    def __init__(
        self,
        layers: Iterable[Callable[[str], Iterator[Candidate]]],
        digit_layers: Iterable[Callable[[str], Iterator[Candidate]]],
        token_layers: Iterable[Callable[[str], Iterator[Candidate]]],
        ner: str | None,
        min_length: int = MIN_LENGTH,
    ) -> None:
        self.layers = tuple(layers)
        self.digit_layers = tuple(digit_layers)  # run only on strings that contain a digit
        self.token_layers = tuple(token_layers)  # only on strings with a token-shaped run (TOKEN_GATE)
        self.ner = ner  # the NER model in use, for the report
        self.min_length = min_length  # 1 with user patterns or an NER model: they may match less
        self._memo: dict[str, list[Finding]] = {}

    def find(self, text: str) -> list[Finding]:
        if len(text) < self.min_length:
            return []
        if len(text) > _MEMO_LENGTH:
            return self._scan(text)
        found = self._memo.get(text)
        if found is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            found = self._memo[text] = self._scan(text)
        return list(found)

    def _scan(self, text: str) -> list[Finding]:
        candidates: list[Candidate] = []
        for layer in self.layers:
            candidates.extend(layer(text))
        if _DIGIT.search(text):
            for layer in self.digit_layers:
                candidates.extend(layer(text))
        if secrets.TOKEN_GATE.search(text):
            for layer in self.token_layers:
                candidates.extend(layer(text))
        return resolve(candidates) if candidates else []


@lru_cache(maxsize=8)
def _library_layers(regions: tuple[str, ...], spacy_model: str) -> tuple[tuple, tuple, tuple, str | None]:
    from . import identifiers, presidio
    from .phones import PhoneLayer

    digit_layers = (*presidio.layers(), *identifiers.layers(), network.IPV4, PhoneLayer(regions))
    ner = people.ner_layer(spacy_model)  # after Presidio, which imports spaCy without torch
    layers = (*secrets.OWN, network.EMAIL, network.IPV6, *people.LAYERS)
    if ner is not None:
        layers = (*layers, ner[1])
    token_layers = (*secrets.TOKENS, *secrets.detect_secrets_layers())
    return layers, digit_layers, token_layers, ner[0] if ner else None


def build_scanner(extra: Iterable[Callable[[str], Iterator[Candidate]]] = (), regions: Iterable[str] = DEFAULT_REGIONS) -> Scanner:
    """The full scanner; ``extra`` (user patterns) run first and win every overlap."""
    spacy_model = os.environ.get(people.SPACY_MODEL_ENV) or people.DEFAULT_SPACY_MODEL
    layers, digit_layers, token_layers, ner = _library_layers(check_regions(regions), spacy_model)
    extra = tuple(extra)
    return Scanner((*extra, *layers), digit_layers, token_layers, ner, min_length=1 if extra or ner else MIN_LENGTH)
