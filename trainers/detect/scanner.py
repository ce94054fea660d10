"""All detectors in one scanner: ``Scanner.find(text)`` → non-overlapping findings."""

from __future__ import annotations

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
        ner: str | None,
    ) -> None:
        self.layers = tuple(layers)
        self.digit_layers = tuple(digit_layers)  # run only on strings that contain a digit
        self.ner = ner  # the NER model in use, for the report

    def find(self, text: str) -> list[Finding]:
        candidates: list[Candidate] = []
        for layer in self.layers:
            candidates.extend(layer(text))
        if _DIGIT.search(text):
            for layer in self.digit_layers:
                candidates.extend(layer(text))
        return resolve(candidates) if candidates else []


@lru_cache(maxsize=8)
def _library_layers(regions: tuple[str, ...]) -> tuple[tuple, tuple, str | None]:
    from . import identifiers, presidio
    from .phones import PhoneLayer

    ner = people.ner_layer()
    layers = (*secrets.OWN, *secrets.detect_secrets_layers(), network.EMAIL, network.IPV6, *people.LAYERS)
    if ner is not None:
        layers = (*layers, ner[1])
    digit_layers = (*presidio.layers(), *identifiers.layers(), network.IPV4, PhoneLayer(regions))
    return layers, digit_layers, ner[0] if ner else None


def build_scanner(extra: Iterable[Callable[[str], Iterator[Candidate]]] = (), regions: Iterable[str] = DEFAULT_REGIONS) -> Scanner:
    """The full scanner; ``extra`` (user patterns) run first and win every overlap."""
    layers, digit_layers, ner = _library_layers(check_regions(regions))
    return Scanner((*extra, *layers), digit_layers, ner)
