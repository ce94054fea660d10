"""National identifiers (python-stdnum checksums), passports and dates of birth.

IBANs and national IDs are found by their shape and kept only when python-stdnum validates them:
Spanish DNI/NIE (check letter), Italian codice fiscale (check character), French NIR (mod 97),
Indian Aadhaar (Verhoeff; written in groups of four with spaces), Swedish personnummer (Luhn), German Steuer-IdNr (ISO 7064, only
after a keyword), UK National Insurance numbers (Presidio's pattern; no checksum exists).
Passport numbers have no public checksum for most countries, so they are found only after a
keyword (passport, Reisepass, passeport, pasaporte), as are dates of birth (born, DOB, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from .base import Candidate, RegexDetector

_MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS},?\s+\d{{4}}|{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)

PASSPORT = RegexDetector(
    "passport",
    re.compile(
        r"(?i:passport|reisepass|passeport|pasaporte)(?:[\s-]*(?i:no\.?|nr\.?|number|num[ée]ro|n[º°o]\.?|#|id))?"
        r"\s*[:#]?\s*(?-i:([A-Z0-9]{6,10}))(?![\w-])"
    ),
    accept=lambda s: any(c.isdigit() for c in s),
    group=1,
    priority=57,
)
DATE_OF_BIRTH = RegexDetector(
    "date_of_birth",
    re.compile(
        r"(?i:\b(?:born(?:\s+on)?|date\s+of\s+birth|d\.?o\.?b\.?|birth\s*date|birthday|geboren(?:\s+am)?|"
        r"geburtsdatum|n[ée]e?\s+le)\b)\s*[:\-]?\s*(" + _DATE + r")(?![\w])"
    ),
    group=1,
    priority=57,
)


class _Iban:
    """IBANs by python-stdnum (country format + mod 97), any case, grouped or not.

    A candidate runs over every following group of letters and digits; the longest prefix that
    ends at a group boundary and validates is the IBAN, so "AT48 2415 8683 4497 8690 Bank" gives
    the account and keeps the word.
    """

    pattern = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){11,36}")

    def __init__(self) -> None:
        from stdnum import iban

        self.is_valid = iban.is_valid

    def __call__(self, text: str) -> Iterator[Candidate]:
        for match in self.pattern.finditer(text):
            value, start = match.group(), match.start()
            glued = match.end() < len(text) and text[match.end()].isalnum()
            cuts = [] if glued else [len(value)]
            cuts += [i for i in range(len(value) - 1, 14, -1) if value[i] == " "]
            for cut in cuts:
                if self.is_valid(value[:cut]):
                    yield Candidate(65, start, start + cut, "iban")
                    break


def _checked(kind: str, regex: str, *validators: Callable[[str], bool], priority: int = 55) -> RegexDetector:
    return RegexDetector(kind, re.compile(regex), accept=lambda s: any(v(s) for v in validators), priority=priority)


def layers() -> tuple[Callable[[str], Iterator[Candidate]], ...]:
    from stdnum.de import idnr
    from stdnum.es import dni, nie
    from stdnum.fr import nir
    from stdnum.in_ import aadhaar
    from stdnum.it import codicefiscale
    from stdnum.se import personnummer

    from .presidio import PresidioLayer, recognizers

    return (
        _Iban(),
        PASSPORT,
        DATE_OF_BIRTH,
        _checked("national_id", r"(?<![\w-])(?:\d{8}-?[A-Z]|[XYZ]-?\d{7}-?[A-Z])(?![\w-])", dni.is_valid, nie.is_valid),
        _checked("national_id", r"(?<![\w-])[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z](?![\w-])", codicefiscale.is_valid),
        _checked("national_id", r"(?<![\w-])[12] ?\d{2} ?\d{2} ?(?:\d{2}|2A|2B) ?\d{3} ?\d{3} ?\d{2}(?![\w-])", nir.is_valid),
        _checked("national_id", r"(?<![\w-])[2-9]\d{3} \d{4} \d{4}(?![\w-])", aadhaar.is_valid),
        _checked("national_id", r"(?<![\w-])(?:\d{2})?\d{6}[-+]\d{4}(?![\w-])", personnummer.is_valid),
        RegexDetector(
            "national_id",
            re.compile(r"(?i:steuer-?id(?:entifikationsnummer)?|idnr|tax\s+id)\.?\s*:?\s*(\d{2} ?\d{3} ?\d{3} ?\d{3})\b"),
            accept=idnr.is_valid,
            group=1,
            priority=55,
        ),
        PresidioLayer(recognizers().UkNinoRecognizer(), "national_id", 55, r"[A-Za-z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Da-d]"),
    )
