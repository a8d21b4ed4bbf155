"""The short model card: what the README and the app's "About the model" show, rendered from a weights folder's
config.json and record.json (checkpoint.read_card); training/model_card.py renders the full card with the same
helpers. The figures are never retyped."""
from __future__ import annotations

from .photo_types import name as photo_type_name
from .texts import DEFAULT, number, words


def pct(x, lang: str = DEFAULT) -> str:
    return "-" if x is None else number(x, 3, lang)


def interval(r: dict, key: str, lang: str = DEFAULT) -> str:
    """"0.873 (0.81-0.92)": a figure with its 95 % interval."""
    if r.get(key) is None:
        return "-"
    ci = r.get(f"{key}_ci95")
    if not ci:
        return number(r[key], 3, lang)
    lo, hi = number(ci[0], 2, lang), number(ci[1], 2, lang)
    return f"{number(r[key], 3, lang)} ({lo}{' to ' if ci[0] < 0 else '-'}{hi})"  # "-0.10-0.12" would mislead


# the figures of the short card, in order; their names are the texts card.<key>
ROWS = ["malignant_auc", "melanoma_auc", "sensitivity_malignant_flagged", "benign_called_high", "benign_flagged",
        "lesions_refused", "no_lesion_recall"]


def short_card(c: dict, lang: str = DEFAULT) -> str:
    """The test figures per photo type (and per dermoscopy collection), as the app answers, with 95 % intervals
    grouped by lesion or patient, and the non-skin pictures refused; its words in `lang`."""
    test = c.get("metrics", {}).get("test")
    if not test or not test.get("by_photo_type"):
        return words("card.none", lang)
    out = []
    for title, groups, by_type in (("card.test_split", test["by_photo_type"], True),
                                   ("card.by_collection", test.get("by_source", {}), False)):
        if not groups:
            continue
        columns = [words("card.column", lang, name=photo_type_name(n, lang) if by_type else n, images=r["n"],
                         groups=r["lesions_patients"],
                         unit=words("card.unit.patients" if by_type and n == "clinical" else "card.unit.lesions",
                                    lang))
                   for n, r in groups.items()]
        out += ["", f"| {words(title, lang)} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(groups)]
        out += [f"| {words(f'card.{key}', lang)} | " + " | ".join(interval(r, key, lang) for r in groups.values())
                + " |" for key in ROWS]
        recognised = " | ".join(pct(r.get("photo_type_accuracy"), lang) for r in groups.values())
        out.append(f"| {words('card.photo_type_accuracy', lang)} | {recognised} |")
    if oos := c["metrics"].get("out_of_scope"):
        out += ["", words("card.non_skin", lang, refused=oos["refused"], images=oos["images"])]
    return "\n".join(out).strip()
