"""The words a person reads (model/texts.py, model/locales/): every language says everything English says, with
the same placeholders, in the glossary's medical terms, and the reader's language is picked as Gradio picks it."""
from __future__ import annotations

import json
import re
import string

import pytest

from model import texts
from model.texts import LOCALES, language, languages, locales, table, words

ENGLISH = json.loads((LOCALES / "en.json").read_text(encoding="utf-8"))
OTHERS = [lang for lang in languages() if lang != "en"]


def own(lang: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))


def placeholders(text: str) -> list[tuple[str, str]]:
    return sorted({(name, spec) for _, name, spec, _ in string.Formatter().parse(text) if name is not None})


def test_the_languages_of_the_issue_are_there():
    assert {"en", "pt-BR", "es"} <= set(languages())


@pytest.mark.parametrize("lang", OTHERS)
def test_every_language_says_all_that_english_says_with_the_same_placeholders(lang):
    theirs = own(lang)
    lacks, extra = set(ENGLISH) - set(theirs), set(theirs) - set(ENGLISH)
    assert not lacks and not extra, f"{lang}.json lacks {lacks}, has extra {extra}"
    for key, text in ENGLISH.items():
        assert theirs[key].strip(), f"{lang}: {key} is empty"
        assert placeholders(theirs[key]) == placeholders(text), f"{lang}: {key} fills in other values than English"


def glossary() -> tuple[list[str], list[list[str]]]:
    """The language tags of GLOSSARY.md's columns and its rows of terms."""
    lines = [line for line in (LOCALES / "GLOSSARY.md").read_text(encoding="utf-8").splitlines()
             if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    tags = [re.search(r"\((.+)\)", cell).group(1) for cell in header]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return tags, rows


def test_the_glossary_has_a_column_for_every_language():
    tags, rows = glossary()
    assert tags[0] == "en" and set(tags) == set(languages())
    assert all(len(r) == len(tags) for r in rows) and len(rows) >= 10


@pytest.mark.parametrize("lang", OTHERS)
def test_every_language_uses_the_glossarys_terms(lang):
    """Wherever an English text uses a term of the glossary, the translation uses the glossary's term for it.
    Longer terms first ("dermoscopy image" before "dermoscopy"); cells with a comma or slash are guidance only."""
    tags, rows = glossary()
    terms = sorted(((r[0], r[tags.index(lang)]) for r in rows if not re.search(r"[,/]", r[0])),
                   key=lambda t: -len(t[0]))
    theirs, misses = table(lang), []
    for key, text in ENGLISH.items():
        left = re.sub(r"\{[^}]*\}", " ", text)  # a placeholder's name is not a word of the text
        for english, term in terms:
            pattern = re.compile(rf"\b{re.escape(english)}\b", re.IGNORECASE)
            if pattern.search(left):
                left = pattern.sub(" ", left)
                if term.lower() not in theirs[key].lower():
                    misses.append(f"{key}: '{english}' should read '{term}'")
    assert not misses, "\n".join(misses)


@pytest.mark.parametrize("header, lang", [
    ("pt-BR,pt;q=0.9,en-US;q=0.8", "pt-BR"), ("pt-PT", "pt-BR"), ("pt", "pt-BR"), ("es-MX,es;q=0.9", "es"),
    ("es", "es"), ("EN-us", "en"), ("en-GB,pt-BR;q=0.5", "en"),
    ("fr-FR,pt-BR;q=0.9", "en"),  # Gradio's page goes by the first language only: so do the answers
    ("*", "en"), ("", "en"), (None, "en"),
])
def test_the_readers_language_is_the_first_one_of_the_browser(header, lang):
    assert language(header) == lang


def test_the_page_knows_the_bare_language_of_each_regional_one():
    """Gradio shows a pt-PT browser the "pt" locale: it must find the Brazilian texts there."""
    assert locales()["pt"] == "pt-BR" and locales()["pt-BR"] == "pt-BR" and locales()["es"] == "es"


def test_a_missing_key_falls_back_to_english_and_values_are_filled_in(tmp_path, monkeypatch):
    (tmp_path / "en.json").write_text(json.dumps({"a": "Hello {name}", "b": "Bye"}), encoding="utf-8")
    (tmp_path / "xx.json").write_text(json.dumps({"a": "Olá {name}"}), encoding="utf-8")
    monkeypatch.setattr(texts, "LOCALES", tmp_path)
    texts.table.cache_clear()
    texts.languages.cache_clear()
    try:
        assert words("a", "xx", name="Ana") == "Olá Ana" and words("b", "xx") == "Bye"
        assert languages() == ["en", "xx"]
    finally:
        texts.table.cache_clear()
        texts.languages.cache_clear()


@pytest.mark.parametrize("lang", languages())
def test_bad_input_is_told_in_the_readers_language(lang):
    """The library's messages for bad input carry their key, so the app can say them in any language."""
    from model import open_image
    from model.metadata import MetadataSpec
    with pytest.raises(ValueError) as e:
        MetadataSpec().parse_age(500)
    assert e.value.say(lang) == words("input.age_range", lang, low=0, high=120, value=500)
    with pytest.raises(ValueError) as e:
        open_image(b"these are my notes, not a photo")
    assert e.value.say(lang) == words("image.unsupported", lang) and str(e.value) == words("image.unsupported")
