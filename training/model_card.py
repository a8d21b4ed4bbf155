"""Print the README's model card (markdown) from a weights folder's config.json and record.json: the figures are
never retyped.

    python -m training.model_card --weights weights/ [--teacher runs/teacher/teacher.json ...]
        [--compare "MobileNetV4 from scratch=runs/scratch/weights"]

A --compare row reads a weights folder's config.json, or a JSON record of another run (weights/comparison/):
{"test": <report>, "tta": <report>, "command": ..., "note": ...}, kept so that a row survives its run folder.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.card import interval, pct, short_card
from model.checkpoint import read_card
from model.photo_types import fitted, types_with_own_values


def report_header(first_column: str) -> list[str]:
    """The header of a table of row() lines."""
    return [f"| {first_column} | melanoma AUC | malignant vs benign AUC | macro AUC (4 classes) | "
            "balanced acc. (3 lesion classes) | no-lesion recall | ECE |",
            "|---|---|---|---|---|---|---|"]


def row(name: str, r: dict) -> str:
    no_lesion = r.get("no_lesion_recall", r.get("no_lesion", {}).get("sensitivity"))
    return (f"| {name} | {pct(r.get('melanoma_auc'))} | {pct(r.get('malignant_auc'))} | {pct(r.get('macro_auc'))} | "
            f"{pct(r.get('balanced_accuracy_lesions'))} | {pct(no_lesion)} | {pct(r.get('ece'))} |")


def comparison_record(path: Path) -> dict:
    """{"report", "tta"} test figures of a weights folder or of a saved JSON record."""
    if path.is_dir():
        test = read_card(path)["metrics"]["test"]
        return {"report": test["report"], "tta": test.get("tta")}
    rec = json.loads(path.read_text())
    return {"report": rec["test"], "tta": rec.get("tta")}


def photo_type_rows(by_type: dict, first_column: str = "photo type") -> list[str]:
    """One row per photo type (or collection): the figures a user of that kind of photo meets
    (training/evaluate.photo_type_report)."""
    out = [f"| {first_column} | test images (lesions / patients) | malignant vs benign AUC "
           "| melanoma vs other lesions AUC | cancers flagged (moderate or high) | benign lesions called high "
           "| lesions refused | plain skin called no lesion | photo type recognised |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, r in by_type.items():
        out.append(f"| {name} | {r['n']} ({r['lesions_patients']}) | {interval(r, 'malignant_auc')} "
                   f"| {interval(r, 'melanoma_auc')} | {interval(r, 'sensitivity_malignant_flagged')} "
                   f"| {interval(r, 'benign_called_high')} | {interval(r, 'lesions_refused')} "
                   f"| {interval(r, 'no_lesion_recall')} | {pct(r.get('photo_type_accuracy'))} |")
    return out


def auc_pair_row(name: str, a: dict, b: dict, gaps: dict) -> str:
    """| name | melanoma AUC of a | of b | gaps' melanoma drop | the same three for malignant |"""
    cells = [cell for key in ("melanoma_auc", "malignant_auc")
             for cell in (interval(a, key), interval(b, key), interval(gaps, f"{key}_drop"))]
    return f"| {name} | " + " | ".join(cells) + " |"


def leave_source_out_rows(record: dict) -> list[str]:
    out = ["| recipe | melanoma AUC, test split of the training sources | melanoma AUC, held-out source | drop | "
           "malignant AUC, training sources | malignant AUC, held-out source | drop |", "|---|---|---|---|---|---|---|"]
    out += [auc_pair_row(name, r["in_source_test"], r["held_out"], r) for name, r in record.items()]
    same = {name: r["same_population"] for name, r in record.items() if "same_population" in r}
    if same:
        first = next(iter(same.values()))
        out += ["", f"The same photos, the recipe trained with and without the {first['source']} images (its "
                    f"{first['n']} rows of the test split; the drop's interval is paired, lesion-grouped). This drop "
                    "is what leaving the source out costs; the one above adds how much harder that source is:", "",
                "| recipe | melanoma AUC, trained with it | trained without | drop | malignant AUC, trained with it "
                "| trained without | drop |", "|---|---|---|---|---|---|---|"]
        out += [auc_pair_row(name, s["trained_with"], s["trained_without"], s) for name, s in same.items()]
    return out


def code_list(paths: list[str]) -> str:
    return ", ".join(f"`{f}`" for f in paths)


def data_paragraph(c: dict) -> str:
    """Where the images come from, how they are split, which metadata is hidden."""
    d = c.get("data", {})
    folders = d.get("folders", {"dermoscopic": [d.get("source", "?")]})
    hidden = "; ".join(f"{', '.join(v)} in {k}" for k, v in d.get("hidden_metadata", {}).items())
    text = (f"**Data.** {d.get('rows', '?')} images: dermoscopy from {code_list(folders.get('dermoscopic', []))}"
            " (HAM10000 and ISIC archive, plus lesion-free skin patches)")
    if folders.get("clinical"):
        text += (f", phone photos from {code_list(folders['clinical'])} (PAD-UFES-20, plus plain-skin "
                 "crops cut from their corners by `python -m training.skin_crops`)")
    split = ", ".join(f"{k} {v}" for k, v in d.get("split", {}).items())
    text += f"; split {d.get('split_rule', '')}: {split}."
    if hidden:
        text += f" Metadata whose missingness follows the label is hidden, in training and evaluation: {hidden}."
    return text


def training_paragraph(c: dict) -> str:
    t = c.get("training", {})
    return (f"**Training.** `{t.get('command') or 'python -m training.train ...'}`; {t.get('epochs')} epochs, "
            f"seed {t.get('seed')}, {round(t.get('seconds', 0) / 60)} min on {t.get('hardware')} "
            f"(torch {t.get('torch')}); " + epoch_sentence(t) +
            f" Input {c['preprocessing']['input_size']} px, centre square crop."
            + photo_head_sentence(c))


def epoch_sentence(t: dict) -> str:
    """Which epoch ships: the run's best, or a network on the line between it and its start (training/soup.py)."""
    mix = t.get("interpolation")
    if not mix:
        return f"best epoch {t.get('best_epoch')} by validation score."
    best = mix.get("run_best_epoch", {}).get("best_epoch")
    start = f" (made by `{mix['start_command']}`)" if mix.get("start_command") else ""
    return (f"the network shipped is {1 - mix['alpha']:g} x the weights it started from, `{mix['start']}`{start}, "
            f"+ {mix['alpha']:g} x its best epoch ({best}, by validation score), chosen by validation "
            "(docs/training.md).")


def photo_head_sentence(c: dict) -> str:
    """Which photo-type head calibration kept (training/calibrate.py), with its validation accuracies."""
    head = c.get("photo_type")
    if not head:
        return ""

    def accuracies(a: dict) -> str:
        return ", ".join(f"{name} {value:.1%}" for name, value in a.items())

    return (f" Photo-type head: {head['head']}, chosen by {head['chosen_by']} (the trained head: "
            f"{accuracies(head['val_accuracy_trained_head'])}; a class-balanced logistic regression on the train "
            f"features: {accuracies(head['val_accuracy_refit_head'])}).")


def comparison_table(c: dict, teachers: list[Path], compare: list[tuple[str, Path]]) -> list[str]:
    """The dermoscopy test split: the teachers, the other runs on the same split, then the shipped model."""
    test = c["metrics"]["test"]
    out = [f"**Dermoscopy test split** ({test['n']} images, never used to choose anything):", ""]
    out += report_header("model")
    for teacher in teachers:
        tj = json.loads(Path(teacher).read_text())
        what = tj.get("method", "frozen network + logistic regression")
        out.append(row(f"teacher: ImageNet {tj['backbone']}, {what} ({tj['input_size']} px)", tj["test"]))
        if "test_tta" in tj:
            out.append(row(f"the same teacher, {tj.get('tta', '4-flip test-time augmentation')}", tj["test_tta"]))
    for name, path in compare:  # other runs on the same split, e.g. without the teacher
        other = comparison_record(Path(path))
        out.append(row(name, other["report"]))
        if other.get("tta"):
            out.append(row(f"{name}, 4-flip test-time augmentation", other["tta"]))
    out.append(row(f"**shipped: {c['architecture']['backbone']} + metadata**", test["report"]))
    if "tta" in test:
        out.append(row("shipped, 4-flip test-time augmentation", test["tta"]))
    return out


def metadata_rows(c: dict) -> list[str]:
    """A table of training.metadata_ablation's answers or, without one, two more rows of the comparison table."""
    ablation, m = c["metrics"].get("metadata_ablation"), c["metrics"]["test"].get("metadata")
    if ablation:
        return ["", f"**Metadata** (the {ablation['rows']} test rows that have age, sex and site; "
                    "`python -m training.metadata_ablation`):", "",
                *report_header("answer"),
                row("shipped network, with the metadata", ablation["network_with_metadata"]),
                row("shipped network, metadata hidden (a photo-only request)", ablation["network_metadata_hidden"]),
                row("image-only model: a head trained without metadata on the network's image features",
                    ablation["image_only_head"]),
                row("the same kind of head with the metadata added to its input", ablation["image_and_metadata_head"])]
    if m:
        with_metadata = f"the same, only the {m['rows_with_metadata']} test rows with age, sex and site"
        return [row(with_metadata, m["with_metadata"]),
                row("those rows with the metadata hidden (image only)", m["metadata_hidden"])]
    return []


def photo_type_section(by_type: dict) -> list[str]:
    return ["", "**By photo type** (test split, answered exactly as the app answers: photo type, per-type temperature, "
                "thresholds and gate; 95 % intervals from 1,000 resamples of lesions, or patients for phone photos):",
            "", *photo_type_rows(by_type)]


def by_source_section(by_source: dict) -> list[str]:
    return ["", "**Dermoscopy by collection** (the same answers, the dermoscopic test rows of each collection; a "
                "clinic the model never saw may resemble either):", "", *photo_type_rows(by_source, "collection")]


def leave_source_out_section(path: Path) -> list[str]:
    record = json.loads(Path(path).read_text())
    source = next(iter(record.values()))["held_out_source"]
    return ["", f"**Leave-source-out** (the {source} images kept out of training and validation, then tested on; "
                "a short protocol, the same for each recipe: `python -m training.leave_source_out`):",
            "", *leave_source_out_rows(record)]


def per_class_section(c: dict) -> list[str]:
    """The bootstrap intervals of the two AUCs, then one row per class."""
    rep = c["metrics"]["test"]["report"]
    melanoma, malignant = rep["melanoma_auc_ci95"], rep["malignant_auc_ci95"]
    out = ["", f"95 % bootstrap intervals (1,000 resamples): melanoma AUC {pct(melanoma[0])}-{pct(melanoma[1])}, "
               f"malignant AUC {pct(malignant[0])}-{pct(malignant[1])}.",
           "",
           "| class | test images | sensitivity (top class) | specificity | AUC (one vs rest) |",
           "|---|---|---|---|---|"]
    for k in c["classes"]:
        r = rep[k["id"]]
        out.append(f"| {k['name']} | {r['n']} | {pct(r['sensitivity'])} | {pct(r['specificity'])} | {pct(r['auc'])} |")
    return out


def calibration_section(c: dict) -> list[str]:
    """The temperature, the operating points and the risk levels they make."""
    rep = c["metrics"]["test"]["report"]
    th = c.get("thresholds", {})
    out = ["", f"**Calibration.** Temperature {c['calibration']['temperature']:.3f}, fitted on the validation split: "
               f"test ECE {pct(rep['ece_before_calibration'])} before, {pct(rep['ece'])} after "
               "(`weights/reliability.png`).", ""]
    out += ["**Operating points** (chosen on the validation split for sensitivity >= 0.90; "
            "the app's \"have it checked\" level):", "",
            "| score | threshold | test sensitivity | test specificity |", "|---|---|---|---|"]
    for name in ("melanoma", "malignant"):
        o = rep.get(f"{name}_operating_point")
        if o:
            what = " (melanoma + other cancer)" if name == "malignant" else ""
            out.append(f"| {name} probability{what} | {o['threshold']:.4f} | {pct(o['sensitivity'])} "
                       f"| {pct(o['specificity'])} |")
    out += ["", f"Risk levels: **high** when the melanoma probability >= {th.get('melanoma_high', 0):.3f} "
                f"or the malignant one >= {th.get('malignant_high', 0):.3f} (validation specificity 0.95); "
                "**moderate** at the operating points above; "
                f"**uncertain** when no class reaches {th.get('uncertain_max_prob', 0.5)}; otherwise **low**."]
    return out


def photo_type_thresholds(c: dict) -> list[str]:
    """A paragraph per photo type that has its own temperature and thresholds."""
    out = []
    for name in types_with_own_values(c, "thresholds"):
        th_type, cal = fitted(c, "thresholds", name), fitted(c, "calibration", name)
        out += ["", f"**{name.capitalize()} photos** have their own temperature ({cal.get('temperature', 0):.3f}) "
                    "and thresholds, fitted on their validation rows: moderate when the malignant probability >= "
                    f"{th_type.get('malignant', 0):.3f} (sensitivity 0.90), high when it is >= "
                    f"{th_type.get('malignant_high', 0):.3f} or the melanoma one >= "
                    f"{th_type.get('melanoma_high', 0):.3f} (specificity 0.95); the melanoma \"have it checked\" "
                    "threshold is that of dermoscopy, as their validation rows hold too few melanomas to choose one. "
                    "The photo-type head's answer picks which set applies."]
    return out


def ood_section(c: dict) -> list[str]:
    """The out-of-scope gate, its lesions wrongly refused and (training.ood_check) its non-skin pictures refused."""
    ood, oos = c["metrics"]["test"].get("ood"), c["metrics"].get("out_of_scope")
    if not ood:
        return []
    gate = c["ood"]
    split = "train and validation" if gate.get("cheap_limits_fitted_on") else "validation"
    text = (f"**Out-of-scope gate.** {gate['method']}; threshold {gate['threshold']:.3f} "
            f"({gate.get('quantile_on_val', 0.99):.1%} quantile on the validation split), plus cheap checks: a flat "
            f"picture, a skin-coloured share under {gate.get('skin_fraction_min', 0):.3f} ({split} 1st percentile) "
            f"or pixel noise (sharpness over {gate.get('sharpness_max', 0):.3f}, {split} 99.5th percentile). "
            f"Test lesions wrongly refused: {ood['test_lesions_refused']:.1%}.")
    if note := gate.get("imagenet_measure"):
        limits = ", ".join(f"{name} {fitted(c, 'ood', name)['imagenet_max']:.3f}" for name in c.get("photo_types") or
                           [None] if "imagenet_max" in fitted(c, "ood", name))
        text += f" A picture is also refused as not skin by the {note} (limits: {limits})."
    if oos:
        text += (f" Non-skin pictures refused: {oos['refused']}/{oos['images']} ({oos['refused_share']:.0%}; "
                 "`python -m training.ood_check`).")
    return ["", text]


def card(weights: Path, teachers: list[Path] = (), compare: list[tuple[str, Path]] = (),
         leave_source_out: Path | None = None) -> str:
    """The full model card (docs/model_card.md), section by section."""
    c = read_card(weights)
    by_type = c["metrics"]["test"].get("by_photo_type")
    out = [data_paragraph(c), "", training_paragraph(c), ""]
    out += comparison_table(c, teachers, compare)
    out += metadata_rows(c)
    if by_type:
        out += photo_type_section(by_type)
    if by_source := c["metrics"]["test"].get("by_source"):
        out += by_source_section(by_source)
    if leave_source_out:
        out += leave_source_out_section(leave_source_out)
    out += per_class_section(c)
    out += calibration_section(c)
    out += photo_type_thresholds(c)
    out += ood_section(c)
    return "\n".join(out)


def summary(weights: Path, leave_source_out: Path | None = None) -> str:
    """The README's short model card (model/card.py), and the leave-source-out drop."""
    out = [short_card(read_card(weights))]
    if leave_source_out:
        record = json.loads(Path(leave_source_out).read_text())
        source = next(iter(record.values()))["held_out_source"]
        out += ["", f"Leave-source-out (the {source} images kept out of training, a short run per recipe):", ""]
        out += leave_source_out_rows(record)
    return "\n".join(out)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights")
    p.add_argument("--teacher", action="append", default=[], help="a teacher.json to add as a row (repeatable)")
    p.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="a row for another weights folder evaluated on the same split (repeatable)")
    p.add_argument("--leave-source-out", default=None, help="record of training.leave_source_out")
    p.add_argument("--summary", action="store_true", help="print the README's short model card instead")
    a = p.parse_args()
    if a.summary:
        print(summary(Path(a.weights), a.leave_source_out))
    else:
        compare = [(n, Path(d)) for n, d in (x.split("=", 1) for x in a.compare)]
        print(card(Path(a.weights), [Path(t) for t in a.teacher], compare, a.leave_source_out))
