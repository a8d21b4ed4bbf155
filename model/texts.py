"""The words a person reads, in one place: one JSON file per language in model/locales/.

The library returns codes (a risk level, warning and refusal ids) and, for convenience, their English words;
the app shows the words of the reader's language for the same codes. `words(key, lang, **values)` fills in
{placeholders}; a language that lacks a key falls back to English, so a new language can be added one
file at a time (see the README). The medical terms of every language follow locales/GLOSSARY.md.

Which language: `language(accept_language)` reads the browser's Accept-Language header the way Gradio's page
picks its own locale from the browser, so the page's fixed texts and the answers computed on the server agree:
the browser's first language, ours when we have it, else one of ours with the same base language (pt-PT and pt
read pt-BR, es-MX reads es), else English.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALES = Path(__file__).resolve().parent / "locales"
DEFAULT = "en"


@cache
def table(lang: str = DEFAULT) -> dict[str, str]:
    """All texts of one language (`en`, `pt-BR`, `es`...), English for what it lacks."""
    english = json.loads((LOCALES / f"{DEFAULT}.json").read_text(encoding="utf-8"))
    path = LOCALES / f"{lang}.json"
    if lang == DEFAULT or not path.is_file():
        return english
    return {**english, **json.loads(path.read_text(encoding="utf-8"))}


@cache
def languages() -> list[str]:
    return sorted(p.stem for p in LOCALES.glob("*.json"))


def words(key: str, lang: str = DEFAULT, **values) -> str:
    return table(lang)[key].format(**values)


def number(x: float, digits: int, lang: str = DEFAULT) -> str:
    """x with `digits` decimals and the language's decimal mark ("0,873" in pt-BR and es)."""
    return f"{x:.{digits}f}".replace(".", words("decimal_mark", lang))


def has(key: str) -> bool:
    """Whether the texts hold `key` (in English, so in every language)."""
    return key in table(DEFAULT)


def base(tag: str) -> str:
    return tag.split("-")[0].lower()


def match(tag: str) -> str:
    """One of our languages for a BCP 47 tag: the same tag, else the same base language, else English."""
    by_tag = {lang.lower(): lang for lang in languages()}
    if tag.lower() in by_tag:
        return by_tag[tag.lower()]
    return next((lang for lang in languages() if base(lang) == base(tag)), DEFAULT)


def language(accept_language: str | None) -> str:
    """The language to answer in, from an Accept-Language header ("pt-BR,pt;q=0.9,en;q=0.8"): its first tag."""
    first = (accept_language or "").split(",")[0].split(";")[0].strip()
    return match(first) if first and first != "*" else DEFAULT


def locales() -> dict[str, str]:
    """Each locale the page may be shown in -> our language for it: ours, and the bare base language of each
    regional one that has no file of its own ("pt" -> "pt-BR"), as Gradio picks "pt" for a pt-PT browser."""
    codes = {lang: lang for lang in languages()}
    for lang in languages():
        codes.setdefault(base(lang), lang)
    return codes


class Message(ValueError):
    """A ValueError a person reads: its text is the English words of `key`; say(lang) gives them in another
    language. The library raises these for bad input (model.ImageError is one), so the app can translate them."""

    def __init__(self, key: str, **values):
        super().__init__(words(key, **values))
        self.key, self.values = key, values

    def say(self, lang: str = DEFAULT) -> str:
        return words(self.key, lang, **self.values)
