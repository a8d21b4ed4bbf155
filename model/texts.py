"""The words a person reads, in one place: one JSON file per language in model/locales/.

The library returns codes (a risk level, warning and refusal ids) and, for convenience, their English words;
the app shows the words of the reader's language for the same codes. `words(key, lang, **values)` fills in
{placeholders}; a language that lacks a key falls back to English, so a new language can be added one
file at a time (see the README).
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


def languages() -> list[str]:
    return sorted(p.stem for p in LOCALES.glob("*.json"))


def words(key: str, lang: str = DEFAULT, **values) -> str:
    return table(lang)[key].format(**values)
