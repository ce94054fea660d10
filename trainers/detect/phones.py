"""Phone numbers through libphonenumber (``phonenumbers``), international and national.

A candidate is a run of digits and separators that does not touch a letter, digit, ``-``,
``/`` or ``.`` on either side (so ``ORD-2024-0001-7788`` and version numbers are not
candidates). ``+CC …`` numbers must be possible for their country (the right length: a
number in a range not yet allocated is still a phone); national numbers must be valid for
one of the dataset's regions and — where that region dials a trunk prefix ``0`` — start
with it, except for mobiles written in groups where the custom is to drop it (India:
``98765 43210``). Dates, times and IPv4-like runs are never phones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .base import Candidate

_CANDIDATE = re.compile(
    r"(?<![\w+\-/.:])"
    r"(?:\+|00)?\(?\d{1,5}\)?(?:[ .\-/]{0,2}\(?\d{1,6}\)?){1,7}"
    r"(?![\w\-/]|\.\d|:\d)"
)
_MOBILE_WITHOUT_TRUNK = {"IN"}  # regions whose mobiles are written without the trunk 0
_NOT_A_PHONE = re.compile(
    r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|(?:\d{1,3}\.){3}\d{1,3}"
)


class PhoneLayer:
    def __init__(self, regions: tuple[str, ...]) -> None:
        import phonenumbers

        self.pn = phonenumbers
        self.regions = []
        for region in regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            self.regions.append((region, (meta.national_prefix or "") if meta is not None else ""))

    def _valid(self, text: str) -> bool:
        pn = self.pn
        digits = re.sub(r"\D", "", text)
        if not 7 <= len(digits) <= 15 or _NOT_A_PHONE.fullmatch(text):
            return False
        international = text.startswith("+")  # 00-prefixed numbers are parsed per region (its IDD)
        for region, trunk in [(None, "")] if international else self.regions:
            try:
                number = pn.parse(text, region)
            except pn.NumberParseException:
                continue
            if international:  # "+CC" and the right length for that country: a phone, allocated or not
                return pn.is_possible_number(number) and pn.region_code_for_country_code(number.country_code) != "ZZ"
            if not pn.is_valid_number(number):
                continue
            if trunk != "0" or digits.startswith("0"):
                return True
            if (
                region in _MOBILE_WITHOUT_TRUNK
                and not text.isdigit()  # written in groups: a bare 10-digit run may be an epoch or an id
                and pn.number_type(number) == pn.PhoneNumberType.MOBILE
            ):
                return True
        return False

    def __call__(self, text: str) -> Iterator[Candidate]:
        for match in _CANDIDATE.finditer(text):
            value = match.group(0).rstrip(" .-/")
            if value.count("(") != value.count(")"):
                value = value.lstrip("(") if value.count("(") > value.count(")") else value
            if self._valid(value):
                start = match.start() + (match.group(0).find(value))
                yield Candidate(40, start, start + len(value), "phone")
