"""The short model card: what the README and the app's "About the model" show, rendered from a weights folder's
config.json and record.json (checkpoint.read_card); training/model_card.py renders the full card with the same
helpers. The figures are never retyped."""
from __future__ import annotations

from .photo_types import name as photo_type_name


def pct(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def interval(r: dict, key: str) -> str:
    """"0.873 (0.81-0.92)": a figure with its 95 % interval."""
    if r.get(key) is None:
        return "-"
    ci = r.get(f"{key}_ci95")
    if not ci:
        return f"{r[key]:.3f}"
    return f"{r[key]:.3f} ({ci[0]:.2f}{' to ' if ci[0] < 0 else '-'}{ci[1]:.2f})"  # "-0.10-0.12" would mislead


ROWS = [("malignant vs benign AUC", "malignant_auc"), ("melanoma vs other lesions AUC", "melanoma_auc"),
        ("cancers flagged (moderate or high risk)", "sensitivity_malignant_flagged"),
        ("benign lesions called high risk", "benign_called_high"), ("benign lesions flagged", "benign_flagged"),
        ("lesions refused as out of scope", "lesions_refused"), ("plain skin called no lesion", "no_lesion_recall")]


def short_card(c: dict) -> str:
    """The test figures per photo type (and per dermoscopy collection), as the app answers, with 95 % intervals
    grouped by lesion or patient, and the non-skin pictures refused."""
    test = c.get("metrics", {}).get("test")
    if not test or not test.get("by_photo_type"):
        return "These weights have no test figures yet (python -m training.evaluate)."
    out = []
    for title, groups, unit in (("test split", test["by_photo_type"], None),
                                ("dermoscopy by collection", test.get("by_source", {}), "lesions")):
        if not groups:
            continue
        columns = [f"{photo_type_name(n) if unit is None else n} ({r['n']} images, {r['lesions_patients']} "
                   f"{unit or ('patients' if n == 'clinical' else 'lesions')})" for n, r in groups.items()]
        out += ["", f"| {title} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(groups)]
        out += [f"| {label} | " + " | ".join(interval(r, key) for r in groups.values()) + " |" for label, key in ROWS]
        recognised = " | ".join(pct(r.get("photo_type_accuracy")) for r in groups.values())
        out.append(f"| photo type recognised | {recognised} |")
    if oos := c["metrics"].get("out_of_scope"):
        out += ["", f"Pictures that are not skin refused: {oos['refused']} of {oos['images']}."]
    return "\n".join(out).strip()
