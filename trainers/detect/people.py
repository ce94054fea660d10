"""Names and street addresses: a pattern layer, and an NER model when one is installed.

Without a model, names are found only in greetings and sign-offs ("Hi Anna,", "Dear Mr. Smith",
"Regards, John Doe") and addresses only as a house number plus a street word ("221B Baker
Street", "1600 Pennsylvania Avenue NW", "Hauptstraße 5", "12 rue de la Paix"). A name
elsewhere in a sentence is not found. When a spaCy pipeline with an ``ner`` (or
``entity_ruler``) component is installed — ``VILMS_SANITIZE_SPACY_MODEL``, a package name or a
folder, default ``en_core_web_sm`` — its PERSON entities are added; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from .base import Candidate, RegexDetector

_NAME = r"[A-ZÄÖÜÉ][a-zäöüßéèáíóúñç]+(?:['-][A-Z][a-z]+)?"
_TITLE = r"(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof|Herr|Frau|Mme|Mlle|M|Sr|Sra)\.?\s+)"
_SALUTATION = (  # directly before a name: "Hi Anna", "Dear Mr. Smith", "Thanks Anna!"
    r"(?:Hi|Hello|Hey|Dear|Good\s+(?:morning|afternoon|evening)|Thanks|Thank\s+you|Hallo|Liebe[rs]?"
    r"|Sehr\s+geehrte[rs]?|Bonjour|Hola|Ciao)[,!]?\s+"
)
_SIGN_OFF = (  # before a name only after a comma or a line break: "Best,\nAnna", "Kind regards, Jo Lee"
    r"(?:Best(?:\s+[Rr]egards|\s+[Ww]ishes)?|Kind\s+[Rr]egards|Warm\s+[Rr]egards|Regards|Cheers|Sincerely"
    r"|Yours(?:\s+sincerely|\s+truly)?|Thanks|Many\s+thanks|Viele\s+Grüße|Cordialement)(?:,\s*|\s*\n\s*)"
)
_NOT_NAMES = {
    "there", "all", "everyone", "everybody", "team", "folks", "guys", "world", "friend", "friends", "sir", "sirs",
    "madam", "madams", "customer", "customers", "user", "users", "support", "admin", "again", "so", "very", "a",
    "the", "you", "for", "and", "in", "from", "both", "colleagues", "kollegen", "damen", "herren", "tout", "le",
    "monde", "hiring", "manager", "reviewer", "reviewers", "developer", "developers", "assistant", "bot", "mate",
    "siri", "alexa", "cortana", "kitty", "python", "regards", "wishes", "ladies", "gentlemen", "dad", "mom", "mum",
}
_GREETING_NAME = re.compile(
    rf"\b(?:{_SALUTATION}|{_SIGN_OFF})({_TITLE}?{_NAME}(?:\s+{_NAME}){{0,2}})(?=\s*(?:[,!.:;\n]|$))"
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


SPACY_MODEL_ENV = "VILMS_SANITIZE_SPACY_MODEL"
DEFAULT_SPACY_MODEL = "en_core_web_sm"


def ner_layer(model: str) -> tuple[str, Callable[[str], Iterator[Candidate]]] | None:
    """The spaCy pipeline ``model`` (an installed package or a folder) as (description, layer).

    None when spaCy or the pipeline is not installed, or the pipeline finds no entities; a
    pipeline is never downloaded.
    """
    try:  # look for the pipeline before importing spaCy (which would import torch through thinc)
        if not os.path.isdir(model) and (not model.isidentifier() or importlib.util.find_spec(model) is None):
            return None
        import spacy

        nlp = spacy.load(model, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler"])
    except (ImportError, OSError, ValueError):  # a broken optional model must not stop sanitising
        return None
    if not {"ner", "entity_ruler"} & set(nlp.pipe_names):
        return None
    return f"spaCy {model}", SpacyNer(nlp)


LAYERS = (_greeting_names, STREET_ADDRESS)
