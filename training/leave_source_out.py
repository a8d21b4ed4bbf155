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
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from model.checkpoint import save_metrics
from training.evaluate import evaluate


def compare(run: Path, data, clinical_data) -> dict:
    args = json.loads((run / "args.json").read_text())
    weights, split = run / "best", run / "split.csv"
    in_source = evaluate(weights, data, clinical_data, split_file=split, split_name="test")["report"]
    held_out = evaluate(weights, data, clinical_data, split_file=split, split_name="held_out")["report"]
    kept = ("melanoma_auc", "malignant_auc", "macro_auc", "balanced_accuracy_lesions",
            "melanoma_auc_ci95", "malignant_auc_ci95", "n")
    return {"held_out_source": args["hold_out_source"], "args": args,
            "in_source_test": {k: in_source[k] for k in kept},
            "held_out": {k: held_out[k] for k in kept},
            "melanoma_auc_drop": in_source["melanoma_auc"] - held_out["melanoma_auc"],
            "malignant_auc_drop": in_source["malignant_auc"] - held_out["malignant_auc"]}


def main(args):
    runs = (r.rsplit("=", 1) for r in args.run)  # a name may hold "=", a path seldom does
    record = {name: compare(Path(run), args.data, args.clinical_data) for name, run in runs}
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
    p.add_argument("--data", required=True, nargs="+")
    p.add_argument("--clinical-data", nargs="*", default=[])
    p.add_argument("--out", default=None, help="JSON record to write (e.g. weights/comparison/leave_source_out.json)")
    p.add_argument("--weights", default=None, help="also add the drops to this weights folder's config.json")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
