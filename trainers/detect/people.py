"""Names and street addresses: a pattern layer, and an NER model when one is installed.

Without a model, names are found only in greetings and sign-offs ("Hi Anna,", "Dear Mr. Smith",
"Regards, John Doe") and addresses only as a house number plus a street word ("221B Baker
Street", "1600 Pennsylvania Avenue NW", "Hauptstraße 5", "12 rue de la Paix"). A name
elsewhere in a sentence is not found. When spaCy with a trained pipeline that has an ``ner``
component (``VILMS_SANITIZE_SPACY_MODEL``, default ``en_core_web_sm``) or GLiNER with a local
model (``VILMS_SANITIZE_GLINER_MODEL``, a folder) is installed, its person entities (and GLiNER's
street addresses) are added; nothing is downloaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from .base import Candidate, RegexDetector

_NAME = r"[A-ZÄÖÜÉ][a-zäöüßéèáíóúñç]+(?:['-][A-Z][a-z]+)?"
_TITLE = r"(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof|Herr|Frau|Mme|Mlle|M|Sr|Sra)\.?\s+)"
_GREETING = (
    r"(?:Hi|Hello|Hey|Dear|Good\s+(?:morning|afternoon|evening)|Thanks|Thank\s+you|Cheers|Regards|Best(?:\s+regards)?"
    r"|Kind\s+regards|Sincerely|Yours|Hallo|Liebe[rs]?|Sehr\s+geehrte[rs]?|Bonjour|Hola|Ciao)"
)
_NOT_NAMES = {
    "there", "all", "everyone", "everybody", "team", "folks", "guys", "world", "friend", "friends", "sir", "madam",
    "customer", "customers", "user", "users", "support", "admin", "again", "so", "very", "a", "the", "you", "for",
    "and", "in", "from", "both", "again.", "colleagues", "kollegen", "damen", "herren", "tout", "le",
    "monde", "hiring", "manager", "reviewer", "reviewers", "developer", "developers", "assistant", "bot", "again!",
}
_GREETING_NAME = re.compile(
    rf"\b{_GREETING}[,!]?\s+({_TITLE}?{_NAME}(?:\s+{_NAME}){{0,2}})(?=\s*(?:[,!.:;\n]|$))"
)
_STREET_WORDS = (
    r"(?:Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?"
    r"|Terrace|Square|Sq\.?|Parkway|Pkwy\.?|Highway|Hwy\.?|Crescent|Close|Row|Gardens)"
)
STREET_ADDRESS = RegexDetector(
    "street_address",
    re.compile(
        rf"(?<![\w.-])\d{{1,5}}[A-Za-z]?\s+(?:{_NAME}\s+){{1,3}}{_STREET_WORDS}(?:\s+(?:N|S|E|W|NE|NW|SE|SW))?(?![\w])"
        rf"|\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer)\s+\d{{1,4}}[a-z]?(?![\w])"
        r"|(?<![\w.-])\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai)"
        r"\s+(?:(?:de|du|des|la|le|l'|d')\s*)*[A-ZÀ-Ý][\w'-]+(?:\s+[A-ZÀ-Ý][\w'-]+){0,2}"
        r"|(?<![\w.-])(?:Calle|Avenida|Via|Piazza|Corso)\s+(?:(?:de|del|la|di)\s+)*[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+){0,2},?\s+\d{1,4}(?![\w])"
    ),
    priority=30,
)


def _greeting_names(text: str) -> Iterator[Candidate]:
    for match in _GREETING_NAME.finditer(text):
        name = match.group(1)
        if name.split()[-1].lower().rstrip(".") in _NOT_NAMES or name.split()[0].lower() in _NOT_NAMES:
            continue
        yield Candidate(30, match.start(1), match.end(1), "person")


class SpacyNer:
    """PERSON → person (``PER`` in the non-English pipelines), from a spaCy pipeline's entities."""

    LABELS = {"PERSON": "person", "PER": "person"}

    def __init__(self, nlp: Any) -> None:
        self.nlp = nlp

    def __call__(self, text: str) -> Iterator[Candidate]:
        for ent in self.nlp(text).ents:
            kind = self.LABELS.get(ent.label_)
            if kind is not None:
                yield Candidate(25, ent.start_char, ent.end_char, kind)


class GlinerNer:
    LABELS = {"person": "person", "street address": "street_address"}

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, text: str) -> Iterator[Candidate]:
        for ent in self.model.predict_entities(text, list(self.LABELS), threshold=0.5):
            yield Candidate(25, ent["start"], ent["end"], self.LABELS[ent["label"]])


def ner_layer() -> tuple[str, Callable[[str], Iterator[Candidate]]] | None:
    """The installed NER model as (description, layer), or None; never raises, never downloads."""
    name = os.environ.get("VILMS_SANITIZE_SPACY_MODEL", "en_core_web_sm")
    try:
        import spacy

        if spacy.util.is_package(name):
            nlp = spacy.load(name, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler"])
            if "ner" in nlp.pipe_names or "entity_ruler" in nlp.pipe_names:
                return f"spaCy {name}", SpacyNer(nlp)
    except (ImportError, OSError, ValueError):  # a broken optional model must not stop sanitising
        pass
    folder = os.environ.get("VILMS_SANITIZE_GLINER_MODEL")
    if folder and os.path.isdir(folder):
        try:
            from gliner import GLiNER

            return f"GLiNER {folder}", GlinerNer(GLiNER.from_pretrained(folder, local_files_only=True))
        except (ImportError, OSError, ValueError):
            pass
    return None


LAYERS = (_greeting_names, STREET_ADDRESS)
