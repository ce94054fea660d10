"""Microsoft Presidio's pattern recognizers, run directly (no NLP engine, nothing downloaded).

Presidio's ``AnalyzerEngine`` wants a spaCy model for its NLP artefacts; the pattern
recognizers do not need one: ``analyze(text, entities, nlp_artifacts=None)`` runs their
regular expressions and checksum validation (Luhn for cards, Base58Check
and Bech32 for Bitcoin addresses, the SSA's rules for US SSNs). A result below
``MIN_SCORE`` (Presidio's "weak" patterns, such as any 9 digits for an SSN) is dropped.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from .base import Candidate

MIN_SCORE = 0.5
_PLACEHOLDER = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdifrx]")


class WithoutValues(logging.Filter):
    """Keeps a log message's template and drops its arguments.

    Presidio logs some candidates' text (``Failed to validate text %s`` for an IBAN it could not
    check); a dataset's values must never reach a log, so its logger prints ``…`` instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = _PLACEHOLDER.sub("…", str(record.msg))
            record.args = ()
        return True


PRESIDIO_LOGGER = logging.getLogger("presidio-analyzer")
if not any(isinstance(f, WithoutValues) for f in PRESIDIO_LOGGER.filters):
    PRESIDIO_LOGGER.addFilter(WithoutValues())


class PresidioLayer:
    """One recognizer; ``gate`` is a cheap regex a string must match before Presidio runs."""

    def __init__(
        self,
        recognizer: Any,
        kind: str,
        priority: int,
        gate: str,
        accept: Callable[[str], bool] | None = None,
        not_after: str = "",
    ) -> None:
        self.recognizer = recognizer
        self.entities = list(recognizer.supported_entities)
        self.kind = kind
        self.priority = priority
        self.gate = re.compile(gate)
        self.accept = accept
        self.not_after = not_after  # characters that may not precede a match (+ before a phone)

    def __call__(self, text: str) -> Iterator[Candidate]:
        if not self.gate.search(text):
            return
        for result in self.recognizer.analyze(text, self.entities, None):
            if result.score < MIN_SCORE:
                continue
            if result.start > 0 and text[result.start - 1] in self.not_after:
                continue
            if self.accept is not None and not self.accept(text[result.start : result.end]):
                continue
            yield Candidate(self.priority, result.start, result.end, self.kind)


_ML = ("transformers", "torch")


def recognizers() -> ModuleType:
    """``presidio_analyzer.predefined_recognizers``, imported without its ML engines.

    Presidio's package imports its transformers NLP engine (and so torch) whenever they are
    installed — 5 s or more with the ``train`` extra — although the pattern recognizers use
    neither. While it is first imported, ``transformers`` and ``torch`` read as missing (its
    ``try: import`` falls back); both import normally afterwards.
    """
    blocked = [name for name in _ML if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import presidio_analyzer.predefined_recognizers as module
    finally:
        for name in blocked:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    return module


def _card(text: str) -> bool:
    """Not a 13-digit run that is a valid EAN-13 (product barcodes; 13-digit cards are old Visa only)."""
    from stdnum import ean

    digits = re.sub(r"\D", "", text)
    return not (len(digits) == 13 and ean.is_valid(digits))


def layers() -> tuple[PresidioLayer, ...]:
    r = recognizers()
    CreditCardRecognizer, CryptoRecognizer = r.CreditCardRecognizer, r.CryptoRecognizer  # noqa: N806
    UsSsnRecognizer = r.UsSsnRecognizer  # noqa: N806

    return (
        PresidioLayer(CreditCardRecognizer(), "credit_card", 60, r"\d(?:[ -]?\d){12}", accept=_card, not_after="+"),
        PresidioLayer(UsSsnRecognizer(), "us_ssn", 58, r"\d{3}[- .]\d{2}[- .]\d{4}"),
        PresidioLayer(CryptoRecognizer(), "crypto_wallet", 62, r"(?:bc1|[13])[a-zA-HJ-NP-Z0-9]{25}"),
    )
