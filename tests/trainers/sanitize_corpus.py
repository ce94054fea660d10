"""A deterministic corpus for the sanitiser: planted items of 22 kinds and clean look-alike rows.

``planted()`` → [(kind, value, row)], each row holding exactly one item (in a message, a nested
field or a JSON key); ``clean()`` → rows with no PII or secret that look like some (order ids,
versions, timestamps, hashes, prices, ISBNs, failing checksums, greetings without names, ...).
The values are generated from their formats (checksums computed here), seeded, so every run
and the bench see the same corpus. Run as a script to write it out as JSONL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import sys
from collections.abc import Callable
from typing import Any

SEED = 15
PER_KIND = 25
STRUCTURED = (  # kinds with a defined format; names and addresses are prose
    "email", "phone", "ipv4", "ipv6", "credit_card", "iban", "us_ssn", "passport", "national_id", "crypto_wallet",
    "url_credentials", "aws_access_key", "github_token", "slack_token", "openai_key", "stripe_access_key", "jwt",
    "private_key", "secret", "date_of_birth",
)
PROSE = ("person", "street_address")
CONTEXTUAL = ("passport", "secret", "date_of_birth", "url_credentials")  # found only with their keyword / URL
FIRST = ["Anna", "John", "Maria", "Lukas", "Sofia", "Ahmed", "Priya", "Chen", "Olga", "Pierre", "Emma", "Noah",
         "Fatima", "Carlos", "Yuki", "Liam", "Mia", "Arjun", "Elena", "Tom"]
LAST = ["Smith", "Müller", "Garcia", "Rossi", "Dubois", "Kowalski", "Sharma", "Nguyen", "Johnson", "Schmidt",
        "Brown", "Martin", "Silva", "Novak", "Weber", "Taylor", "Khan", "Fischer", "Lopez", "Meyer"]
STREETS = ["Baker", "Main", "Oak", "Maple", "Elm", "High", "Church", "Park", "Pennsylvania", "Sunset", "King", "Mill"]
SUFFIX = ["Street", "Avenue", "Road", "Lane", "Drive", "Boulevard", "St.", "Ave", "Way", "Place"]


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def _luhn_broken(rng: random.Random) -> str:
    card = luhn_complete("4", 16, rng)
    return card[:-1] + str((int(card[-1]) + 1) % 10)


def _ean13(rng: random.Random) -> str:
    body = "40" + "".join(rng.choice(string.digits) for _ in range(10))
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def _digits(rng: random.Random, n: int, first: str = string.digits) -> str:
    return rng.choice(first) + "".join(rng.choice(string.digits) for _ in range(n - 1))


def _group(value: str, size: int = 4, sep: str = " ") -> str:
    return sep.join(value[i : i + size] for i in range(0, len(value), size))


def _iban(rng: random.Random) -> str:
    country, bban = rng.choice([
        ("DE", _digits(rng, 18)),
        ("GB", "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 14)),
        ("NL", "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 10)),
        ("AT", _digits(rng, 16)),
    ])
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    value = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    value = _group(value) if rng.random() < 0.6 else value
    return value.lower() if rng.random() < 0.15 else value


def _phone(rng: random.Random) -> str:
    return rng.choice([
        lambda: f"+49 30 {_digits(rng, 8, '123456789')}",
        lambda: f"030 {_digits(rng, 7, '23456789')}",
        lambda: f"+49 151 {_digits(rng, 8)}",
        lambda: f"089 {_digits(rng, 8, '23456789')}",
        lambda: f"+91 {_digits(rng, 5, '6789')} {_digits(rng, 5)}",
        lambda: f"{_digits(rng, 5, '9')} {_digits(rng, 5)}",
        lambda: f"+44 20 7946 0{_digits(rng, 3)}",
        lambda: f"020 7946 0{_digits(rng, 3)}",
        lambda: f"07700 900{_digits(rng, 3)}",
        lambda: f"+1 {rng.choice(['212', '415', '646', '312', '617'])} {_digits(rng, 3, '23456789')} {_digits(rng, 4)}",
        lambda: f"({rng.choice(['212', '415', '206'])}) {_digits(rng, 3, '23456789')}-{_digits(rng, 4)}",
        lambda: f"{rng.choice(['617', '312'])}-{_digits(rng, 3, '23456789')}-{_digits(rng, 4)}",
        lambda: f"+33 1 {_group(_digits(rng, 8), 2)}",
        lambda: f"06 {_group(_digits(rng, 8), 2)}",
        lambda: f"+1-{rng.choice(['212', '646'])}-{_digits(rng, 3, '23456789')}-{_digits(rng, 4)}",
        lambda: f"(030) {_digits(rng, 7, '23456789')}",
        lambda: f"+44 (0)20 7946 0{_digits(rng, 3)}",
        lambda: f"0049 30 {_digits(rng, 7, '23456789')}",
        lambda: f"{rng.choice(['212', '415'])}.{_digits(rng, 3, '23456789')}.{_digits(rng, 4)}",
        lambda: f"+91-{_digits(rng, 5, '6789')}-{_digits(rng, 5)}",
        lambda: f"+33 6 {_group(_digits(rng, 8), 2)}",
    ])()


def _ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _btc(rng: random.Random) -> str:
    payload = bytes([rng.choice([0, 5])]) + rng.randbytes(20)
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32_polymod(values: list[int]) -> int:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _bech32(rng: random.Random) -> str:
    """A segwit v0 address (BIP 173): witness version 0 + 20-byte program, with its checksum."""
    program = rng.randbytes(20)
    bits = int.from_bytes(program, "big")
    data = [0] + [(bits >> (5 * i)) & 31 for i in reversed(range(32))]
    hrp = [ord(c) >> 5 for c in "bc"] + [0] + [ord(c) & 31 for c in "bc"]
    polymod = _bech32_polymod(hrp + data + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return "bc1" + "".join(_BECH32[d] for d in data + checksum)


def _national_id(rng: random.Random) -> str:
    from stdnum import verhoeff
    from stdnum.it import codicefiscale

    kind = rng.randrange(5)
    if kind == 0:  # Spanish DNI
        n = rng.randint(10_000_000, 99_999_999)
        return f"{n}{'TRWAGMYFPDXBNJZSQVHLCKE'[n % 23]}"
    if kind == 1:  # Indian Aadhaar, Verhoeff check digit
        body = _digits(rng, 11, "23456789")
        return _group(body + verhoeff.calc_check_digit(body))
    if kind == 2:  # Italian codice fiscale
        letters = "".join(rng.choice(string.ascii_uppercase) for _ in range(6))
        body = f"{letters}{rng.randint(40, 99)}{rng.choice('ABCDEHLMPRST')}{rng.randint(1, 28):02d}H501"
        return body + codicefiscale.calc_check_digit(body)
    if kind == 3:  # French NIR, key = 97 - n mod 97
        body = f"{rng.choice('12')}{rng.randint(40, 99):02d}{rng.randint(1, 12):02d}75{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
        return f"{body}{97 - int(body) % 97:02d}"
    return f"{rng.choice(['AB', 'CE', 'JG', 'PR'])} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.choice('ABCD')}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _private_key(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    lines = "\n".join(base64.b64encode(rng.randbytes(48)).decode() for _ in range(3))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    month = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"][m - 1]
    return rng.choice([f"{d:02d}/{m:02d}/{y}", f"{y}-{m:02d}-{d:02d}", f"{d} {month} {y}", f"{month} {d}, {y}",
                       f"{d:02d}.{m:02d}.{y}"])


# kind → (value generator, sentence templates; {v} is the value)
KINDS: dict[str, tuple[Callable[[random.Random], str], list[str]]] = {
    "email": (lambda r: f"{r.choice(FIRST).lower()}.{r.choice(LAST).lower().replace('ü', 'u')}{r.randint(1, 99)}@"
              f"{r.choice(['example.com', 'mail.acme-corp.co.uk', 'uni-berlin.de', 'corp.io'])}",
              ["Please write to {v} about the refund.", "My address is {v}", "cc {v}, thanks"]),
    "phone": (_phone, ["Call me on {v} tomorrow.", "My number: {v}", "Reach the office at {v}, ask for Sam."]),
    "ipv4": (lambda r: f"{r.choice([10, 172, 192, 81, 203])}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
             ["The login came from {v} at night.", "Server IP {v}", "blocked {v} after 5 tries"]),
    "ipv6": (lambda r: ":".join(f"{r.randint(0, 65535):x}" for _ in range(8)) if r.random() < 0.5
             else f"2001:db8::{r.randint(1, 65535):x}",
             ["Client address {v} was rate limited.", "ipv6={v}"]),
    "credit_card": (lambda r: (lambda c: r.choice([c, _group(c), _group(c, 4, "-")]) if len(c) == 16
                               else r.choice([c, f"{c[:4]} {c[4:10]} {c[10:]}"]))(
        r.choice([luhn_complete("4", 16, r), luhn_complete(r.choice(["51", "53", "55"]), 16, r),
                  luhn_complete(r.choice(["34", "37"]), 15, r), luhn_complete("6011", 16, r)])),
        ["Charge my card {v} please.", "card number {v}, exp 09/27"]),
    "iban": (_iban, ["Transfer it to {v} by Friday.", "IBAN: {v}"]),
    "us_ssn": (_ssn, ["My SSN is {v}.", "social security number {v} on the form"]),
    "passport": (lambda r: r.choice([f"X{_digits(r, 8)}", _digits(r, 9), f"C{_token(r, 8, string.ascii_uppercase + string.digits)}1",
                                      f"{r.randint(10, 99)}AB{_digits(r, 5)}"]),
                 ["passport number {v}", "Passport: {v}", "Reisepass-Nr. {v}", "my passport no. {v} expires soon"]),
    "national_id": (_national_id, ["ID {v} on file.", "national id: {v}", "Documento {v}"]),
    "crypto_wallet": (lambda r: _bech32(r) if r.random() < 0.4 else _btc(r), ["Send the BTC to {v}.", "wallet {v}"]),
    "url_credentials": (lambda r: f"{r.choice(['alice', 'svc_app', 'admin'])}:{_token(r, 12)}",
                        ["Connect with postgres://{v}@db.internal:5432/main", "curl https://{v}@api.example.com/v1"]),
    "aws_access_key": (lambda r: "AKIA" + _token(r, 16, string.ascii_uppercase + string.digits),
                       ["aws key {v} leaked", "export AWS_ACCESS_KEY_ID={v}"]),
    "github_token": (lambda r: "ghp_" + _token(r, 36), ["token {v} for CI", "use {v}"]),
    "slack_token": (lambda r: f"xoxb-{_digits(r, 12)}-{_digits(r, 13)}-{_token(r, 24)}", ["slack bot {v}"]),
    "openai_key": (lambda r: "sk-proj-" + _token(r, 40), ["OPENAI_API_KEY is {v}", "key {v}"]),
    "stripe_access_key": (lambda r: "sk_live_" + _token(r, 24), ["stripe {v} in prod"]),
    "jwt": (lambda r: ".".join([_b64url(b'{"alg":"HS256","typ":"JWT"}'),
                                _b64url(json.dumps({"sub": str(r.randint(1, 10**9)), "exp": r.randint(1, 2**31)}).encode()),
                                _b64url(r.randbytes(32))]),
            ["Authorization: Bearer {v}", "session {v}"]),
    "private_key": (_private_key, ["here is the key:\n{v}\nkeep it safe"]),
    "secret": (lambda r: _token(r, 6) + str(r.randint(10, 99)) + _token(r, 6), ["password: {v}", "db_password={v}"]),
    "date_of_birth": (_date, ["I was born on {v}.", "DOB: {v}", "date of birth {v}"]),
    "person": (lambda r: r.choice([r.choice(FIRST), f"{r.choice(FIRST)} {r.choice(LAST)}", f"Mr. {r.choice(LAST)}",
                                   f"Frau {r.choice(LAST)}"]),
               ["Hi {v}, thanks for the quick reply.", "Dear {v},\nyour order shipped.", "Hello {v}! How are you?",
                "Thanks,\n{v}", "Best regards, {v}"]),
    "street_address": (lambda r: r.choice([
        f"{r.randint(1, 9999)} {r.choice(STREETS)} {r.choice(SUFFIX)}",
        f"{r.choice(['Haupt', 'Linden', 'Goethe', 'Bahnhof', 'Schiller'])}{r.choice(['straße', 'str.', 'weg', 'allee'])} {r.randint(1, 200)}",
        f"{r.randint(1, 150)} rue de la {r.choice(['Paix', 'Gare', 'République'])}",
    ]), ["Ship it to {v}, 2nd floor.", "I live at {v} since May.", "Address: {v}"]),
}
PII_KINDS = tuple(KINDS)


def _place(kind: str, sentence: str, value: str, index: int) -> dict[str, Any]:
    where = index % 4
    if where == 0:
        return {"messages": [{"role": "user", "content": sentence}, {"role": "assistant", "content": "Thanks, noted."}]}
    if where == 1:
        return {"messages": [{"role": "user", "content": "Quick question."},
                             {"role": "assistant", "content": f"Sure. {sentence}"}]}
    if where == 2:
        return {"prompt": "Summarise the ticket.", "completion": "Done.", "meta": {"notes": [sentence]}}
    key = sentence if kind in CONTEXTUAL else value
    return {"text": "ticket", "meta": {key: "as given by the user"}}  # the item is in a JSON key


def planted() -> list[tuple[str, str, dict[str, Any]]]:
    rng = random.Random(SEED)
    items = []
    for kind, (make, templates) in KINDS.items():
        for i in range(PER_KIND):
            value = make(rng)
            sentence = templates[i % len(templates)].format(v=value)
            items.append((kind, value, _place(kind, sentence, value, i if kind not in PROSE else 0)))
    for value in ("+49 30 12345678", "+91 98765 43210", "030 1234567"):  # the numbers the issue saw missed
        items.append(("phone", value, _place("phone", f"Call {value} today.", value, 0)))
    return items


CLEAN_TEMPLATES: list[Callable[[random.Random], str]] = [
    lambda r: f"Order ORD-{r.randint(2019, 2026)}-{r.randint(1, 9999):04d}-{r.randint(1000, 9999)} has shipped.",
    lambda r: f"Invoice INV-{r.randint(2019, 2026)}-{r.randint(1, 999999):06d} is due on {r.randint(2019, 2026)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}.",
    lambda r: f"Version {r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)} fixes the crash; v{r.randint(1, 5)}.{r.randint(0, 20)} is next.",
    lambda r: f"The job started at {r.randint(2020, 2026)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z and took {r.randint(1, 600)} s.",
    lambda r: f"Meeting on {r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{r.randint(2020, 2026)} at {r.randint(8, 18)}:{r.choice(['00', '15', '30', '45'])} in room {r.randint(100, 999)}.",
    lambda r: f"Commit {r.randbytes(20).hex()} fixed it; see also {r.randbytes(4).hex()[:7]}.",
    lambda r: f"sha256: {r.randbytes(32).hex()}",
    lambda r: f"md5 {r.randbytes(16).hex()} matches the mirror.",
    lambda r: f"Request id {'-'.join(r.randbytes(n).hex() for n in (4, 2, 2, 2, 6))} failed with 503.",
    lambda r: f"It costs ${r.randint(1, 9)},{r.randint(100, 999)}.{r.randint(10, 99)} or €{r.randint(10, 999)},{r.randint(10, 99)} in the EU.",
    lambda r: f"ISBN 978-{r.randint(0, 1)}-{r.randint(100, 999)}-{r.randint(10000, 99999)}-{r.randint(0, 9)} is the second edition.",
    lambda r: f"Tracking number 1Z{_token(r, 6, string.ascii_uppercase + string.digits)}{_digits(r, 10)} arrives Monday.",
    lambda r: f"Card ending in {r.randint(1000, 9999)} was declined; the number {_luhn_broken(r)} is not a card.",
    lambda r: f"Sensor read {r.uniform(-40, 60):.2f} °C and {r.randint(0, 100)} % humidity at {r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}.",
    lambda r: f"Open http://localhost:{r.randint(1024, 65535)}/docs or https://docs.example.com/v{r.randint(1, 3)}/api?page={r.randint(1, 99)}.",
    lambda r: f"Pod web-{r.randbytes(5).hex()[:10]}-{_token(r, 5, string.ascii_lowercase + string.digits)} restarted {r.randint(1, 9)} times.",
    lambda r: f"Set max_tokens to {r.choice([256, 512, 1024, 4096])} and temperature {r.random():.1f} for model qwen2.5-{r.choice([0.5, 1.5, 7])}b-instruct.",
    lambda r: f"Hi there, thanks for reaching out about ticket #{r.randint(10000, 99999)}.",
    lambda r: f"Dear customer, your subscription renews on {r.choice(['Monday', 'Friday'])}.",
    lambda r: f"Hello team! Sprint {r.randint(1, 60)} ends on {r.choice(['Friday', 'Tuesday'])}.",
    lambda r: f"The password must be at least {r.randint(8, 16)} characters; the token limit is {r.randint(1000, 9000)}.",
    lambda r: f"Call getUserById({r.randint(1, 999)}) from the AccountSettingsController in file src/app/{_token(r, 6, string.ascii_lowercase)}.py line {r.randint(1, 999)}.",
    lambda r: f"SKU {r.randint(10000, 99999)}-{_token(r, 2, string.ascii_uppercase)} is out of stock; EAN {_ean13(r)} is the next batch.",
    lambda r: f"The ratio is {r.randint(1, 32)}:{r.randint(1, 9)} and the score ended {r.randint(0, 5)}-{r.randint(0, 5)}.",
    lambda r: f"Python {r.choice([3])}.{r.randint(8, 13)}.{r.randint(0, 12)} on build {r.randint(10, 11)}.0.{r.randint(10000, 22999)}.{r.randint(100, 9999)}.",
    lambda r: f"We sold {r.randint(1, 999)},{r.randint(100, 999)},{r.randint(100, 999)} units in Q{r.randint(1, 4)} {r.randint(2019, 2026)}.",
    lambda r: f"Chapter {r.randint(1, 30)}.{r.randint(1, 9)}.{r.randint(1, 9)} covers LoRA ranks 8, 16 and 32.",
    lambda r: f"Reference {r.randint(2019, 2026)}-{r.randint(1000, 9999)}-{r.randint(1000, 9999)} was closed.",
    lambda r: f"Step {r.randint(1, 9)}: open Settings, then Street View, then press Enter.",
    lambda r: f"Case {r.randint(100000, 999999)} was escalated to tier {r.randint(1, 3)} on {r.randint(1, 28)} March.",
    lambda r: f"Color #{r.randbytes(3).hex()} on a {r.randint(100, 1920)}x{r.randint(100, 1080)} canvas.",
    lambda r: f"Latency p50 {r.randint(1, 900)} ms, p99 {r.randint(1000, 9000)} ms over {r.randint(10000, 99999)} requests.",
    lambda r: f"Firmware {r.randint(1, 9)}.{r.randint(0, 20)}.{r.randint(0, 9)}.{r.randint(0, 99)} is out; v{r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)} was pulled.",
    lambda r: f"Logo: data:image/png;base64,{base64.b64encode(r.randbytes(60)).decode()}",
    lambda r: f"The event at epoch {r.randint(1_600_000_000, 1_800_000_000)} took {r.randint(1, 999)} ms.",
    lambda r: f"Role arn:aws:iam::{_digits(r, 12)}:role/deploy-{r.randint(1, 9)} can read the bucket.",
    lambda r: f"Pull image@sha256:{r.randbytes(32).hex()} before the rollout.",
    lambda r: f"{r.choice(['Good morning', 'Hello', 'Hi'])} {r.choice(['team', 'everyone', 'all', 'folks'])}, the build is green.",
    lambda r: f"We trained on {r.randint(1, 99)} {r.randint(100, 999)} {r.randint(100, 999)} tokens ({r.randint(1, 9)} 000 000 words).",
    lambda r: f"See {r.choice(STREETS)} {r.choice(['Street', 'Avenue'])} on the map for the {r.choice(['parade', 'market'])}.",
    lambda r: r.choice([f"Best Practices, part {r.randint(2, 9)}: pin your versions.", "Dear Sirs, please find the report attached.",
                        f"Write a Hello World program in {r.choice(['Go', 'Rust', 'C'])}.", "Cheers Mate! The deploy worked.",
                        "Best Regards, Support", f"Hey Siri, set a timer for {r.randint(2, 30)} minutes."]),
]


def clean(count: int = 640) -> list[dict[str, Any]]:
    rng = random.Random(SEED + 1)
    rows = []
    for i in range(count):
        text = CLEAN_TEMPLATES[i % len(CLEAN_TEMPLATES)](rng)
        rows.append({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "Understood."}]})
    return rows


def rows() -> list[dict[str, Any]]:
    """Planted rows first, then the clean ones."""
    return [row for _, _, row in planted()] + clean()


if __name__ == "__main__":
    for row in rows():
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
