"""Leave-source-out: how far a recipe's figures fall on a collection it never saw (another clinic's camera,
population and habits), against its own sources' test split. Validation on the training sources does not
show this; an unseen clinic does.

    python -m training.train ... --hold-out-source "ISIC archive" --output runs/lso-new --no-finalize
    python -m training.leave_source_out --run "new recipe=runs/lso-new" --run "current recipe=runs/lso-current" \
        --data ../shared/data/skin-lesions --clinical-data ../shared/data/skin-photos runs/phone-skin \
        --out weights/comparison/leave_source_out.json --weights weights/

Each run's best epoch (chosen on validation, which holds no row of the held-out source) is evaluated on the
test split of the other sources and on every row of the held-out one; the record keeps both reports and the
drop, with lesion-grouped 95 % intervals.

That drop mixes two things: what leaving the source out costs, and how much harder the held-out source is than
the others (its own mix of lesions). `--reference NAME=RUN` separates them: RUN is the same recipe trained
with every source on the same split; both networks are tested on the same photos, the held-out source's rows
of that split's test part, and the record gets the gap between them (with a paired, lesion-grouped interval).

    python -m training.train ... --output runs/lso-ref --no-finalize      # the same command, no --hold-out-source
    python -m training.leave_source_out --run "dermoscopy only=runs/lso-current" \
        --reference "dermoscopy only=runs/lso-ref" --data ../shared/data/skin-lesions
"""
from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np

from model.checkpoint import load_model, metadata_spec, save_metrics
from training.data import lesion_groups
from training.evaluate import evaluate, outputs_from_disk, split_rows
from training.fitting import softmax
from training.metrics import auc, grouped_interval, malignant_scores, melanoma_scores


def compare(run: Path, data, clinical_data) -> dict:
    args = json.loads((run / "args.json").read_text())
    weights, split = run / "best", run / "split.csv"
    in_source = evaluate(weights, data, clinical_data, split_file=split, split_name="test")[0]["report"]
    held_out = evaluate(weights, data, clinical_data, split_file=split, split_name="held_out")[0]["report"]
    kept = ("melanoma_auc", "malignant_auc", "macro_auc", "balanced_accuracy_lesions",
            "melanoma_auc_ci95", "malignant_auc_ci95", "n")
    return {"held_out_source": args["hold_out_source"], "args": args,
            "in_source_test": {k: in_source[k] for k in kept},
            "held_out": {k: held_out[k] for k in kept},
            "melanoma_auc_drop": in_source["melanoma_auc"] - held_out["melanoma_auc"],
            "malignant_auc_drop": in_source["malignant_auc"] - held_out["malignant_auc"]}


def same_population(run: Path, reference: Path, data, clinical_data) -> dict:
    """The run (trained without its held-out source) and the reference (the same recipe trained with every
    source) on the same photos: the held-out source's rows of the reference's test split."""
    source = json.loads((run / "args.json").read_text())["hold_out_source"]
    df = split_rows(data, clinical_data, None, reference / "split.csv", "test")
    df = df[df["source_group"] == source].reset_index(drop=True)
    probs = {}
    for name, folder in (("trained_without", run), ("trained_with", reference)):
        model, config, _ = load_model(folder / "best")
        probs[name] = softmax(outputs_from_disk(model, df, config["preprocessing"], metadata_spec(config)).logits)
    out = {"source": source, "rows": "its rows of the reference run's test split", "n": int(len(df))}
    return out | auc_gap(df["label"].to_numpy(), lesion_groups(df).to_numpy(), probs)


def auc_gap(y, groups, probs: dict[str, np.ndarray]) -> dict:
    """Melanoma and malignant AUC of probs["trained_with"] and probs["trained_without"] on the same rows, and
    the gap between them, each with a lesion-grouped 95 % interval (the gap's paired: both on each draw)."""
    out = {}
    for key, scores in (("melanoma_auc", melanoma_scores), ("malignant_auc", malignant_scores)):
        def value(name, i=slice(None), scores=scores):
            return auc(*scores(y[i], probs[name][i]))
        for name in probs:
            out.setdefault(name, {})[key] = value(name)
            out[name][f"{key}_ci95"] = grouped_interval(partial(value, name), groups)
        out[f"{key}_drop"] = value("trained_with") - value("trained_without")
        out[f"{key}_drop_ci95"] = grouped_interval(lambda i: value("trained_with", i) - value("trained_without", i),
                                                   groups)
    return out


def main(args):
    runs = dict(r.rsplit("=", 1) for r in args.run)  # a name may hold "=", a path seldom does
    references = dict(r.rsplit("=", 1) for r in args.reference)
    if unknown := set(references) - set(runs):
        raise SystemExit(f"--reference {sorted(unknown)} names no --run; runs: {sorted(runs)}")
    record = {name: compare(Path(run), args.data, args.clinical_data) for name, run in runs.items()}
    for name, reference in references.items():
        record[name]["same_population"] = same_population(Path(runs[name]), Path(reference), args.data,
                                                          args.clinical_data)
    print(json.dumps({n: {k: v for k, v in r.items() if k != "args"} for n, r in record.items()}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    if args.weights:  # the drop beside the shipped figures, where the app's "About the model" reads them
        save_metrics(args.weights, "leave_source_out", {
            name: {"held_out_source": r["held_out_source"],
                   "melanoma_auc_in_source": r["in_source_test"]["melanoma_auc"],
                   "melanoma_auc_held_out": r["held_out"]["melanoma_auc"], "melanoma_auc_drop": r["melanoma_auc_drop"]}
            for name, r in record.items()})


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN",
                   help="a run trained with --hold-out-source")
    p.add_argument("--reference", action="append", default=[], metavar="NAME=RUN",
                   help="the same recipe as --run NAME, trained with every source on the same split")
    p.add_argument("--data", required=True, nargs="+")
    p.add_argument("--clinical-data", nargs="*", default=[])
    p.add_argument("--out", default=None, help="JSON record to write (e.g. weights/comparison/leave_source_out.json)")
    p.add_argument("--weights", default=None, help="also add the drops to this weights folder's config.json")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
