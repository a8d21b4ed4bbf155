"""Two weights folders on the same validation rows, answered as the app answers them: the figures the shipping
rule of docs/training.md reads (dermoscopy of the HAM10000 and ISIC archive collections, phone photos, and each
collection on its own).

    python -m training.compare_weights --candidate runs/long/weights --baseline runs/init \
        --data ../shared/data/skin-lesions ../shared/data/isic2017 \
        --clinical-data ../shared/data/skin-photos runs/phone-skin

Both are answered on the candidate's split file (the baseline's may lack rows added since), `--split val` by
default. `--size` answers the candidate at another input size (the network is fully convolutional).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.checkpoint import load_model, metadata_spec, read_config
from model.classifier import Classifier
from training.evaluate import as_app_answers, photo_type_report, split_rows

SUBSETS = {
    "dermoscopy (HAM10000 + ISIC archive)": lambda df: (df["photo_type"] == "dermoscopic")
    & df["source_group"].isin(["HAM10000", "ISIC archive"]),
    "phone photos": lambda df: df["photo_type"] == "clinical",
    "HAM10000": lambda df: (df["photo_type"] == "dermoscopic") & (df["source_group"] == "HAM10000"),
    "ISIC archive": lambda df: (df["photo_type"] == "dermoscopic") & (df["source_group"] == "ISIC archive"),
    "ISIC 2017": lambda df: df["source_group"] == "ISIC 2017",
}
DERMOSCOPIC_COLLECTIONS = ("HAM10000", "ISIC archive", "ISIC 2017")
KEYS = ("melanoma_auc", "malignant_auc", "sensitivity_malignant_flagged", "benign_flagged", "lesions_refused",
        "photo_type_accuracy")


def figures(weights: Path, rows, size: int | None = None) -> dict:
    model, config, gate = load_model(weights)
    if size:
        config["preprocessing"] = {**config["preprocessing"], "input_size": size}
    answers = as_app_answers(Classifier(model, config, gate, device="cpu"), rows)
    out = {}
    for name, select in SUBSETS.items():
        m = select(rows).to_numpy()
        if m.any():
            r = photo_type_report(rows[m], answers[m])
            out[name] = {"n": r["n"], **{k: r.get(k) for k in KEYS}, **{k + "_ci95": r.get(k + "_ci95")
                                                                         for k in ("melanoma_auc", "malignant_auc")}}
    return out


def by_collection(c: dict, b: dict) -> dict:
    """The third run's rule (docs/training.md): each dermoscopic collection on its own, so that telling the
    collections apart earns nothing. The mean of their melanoma AUCs at least the baseline's, none below the lower
    end of the baseline's 95 % interval; pooled dermoscopic and phone malignant AUC at least the baseline's."""
    names = [n for n in DERMOSCOPIC_COLLECTIONS if n in c and n in b]
    mean = {who: sum(f[n]["melanoma_auc"] for n in names) / len(names) for who, f in (("c", c), ("b", b))}
    derm, phone = "dermoscopy (HAM10000 + ISIC archive)", "phone photos"
    return {"collections": names,
            "mean_melanoma_auc": {"candidate": mean["c"], "baseline": mean["b"]},
            "mean_melanoma_auc_not_lower": mean["c"] >= mean["b"],
            "no_collection_below_baseline_interval": all(c[n]["melanoma_auc"] >= b[n]["melanoma_auc_ci95"][0]
                                                         for n in names),
            "dermoscopy_malignant_auc_not_lower": c[derm]["malignant_auc"] >= b[derm]["malignant_auc"],
            "phone_malignant_auc_not_lower": c[phone]["malignant_auc"] >= b[phone]["malignant_auc"]}


def main(args):
    cand = Path(args.candidate)
    rows = split_rows(args.data, args.clinical_data, metadata_spec(read_config(cand)), cand / "split.csv", args.split)
    result = {"split": args.split, "candidate": str(cand), "baseline": str(args.baseline), "size": args.size,
              "candidate_figures": figures(cand, rows, args.size),
              "baseline_figures": figures(Path(args.baseline), rows)}
    c, b = result["candidate_figures"], result["baseline_figures"]
    derm, phone = "dermoscopy (HAM10000 + ISIC archive)", "phone photos"
    result["rule"] = {
        "dermoscopy_melanoma_auc_not_lower": c[derm]["melanoma_auc"] >= b[derm]["melanoma_auc"],
        "dermoscopy_malignant_auc_not_lower": c[derm]["malignant_auc"] >= b[derm]["malignant_auc"],
        "phone_malignant_auc_not_lower": c[phone]["malignant_auc"] >= b[phone]["malignant_auc"]}
    result["rule_by_collection"] = by_collection(c, b)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidate", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--clinical-data", nargs="*", default=[])
    p.add_argument("--split", default="val")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--out", default=None)
    main(p.parse_args())
