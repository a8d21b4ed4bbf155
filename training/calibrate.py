"""After training: calibrate on the validation split, fit the out-of-scope gate, ship a weights folder.

    python -m training.calibrate --run runs/phone     # a run trained with --no-finalize

- temperature: one scalar T minimising the validation NLL of softmax(logits / T);
- thresholds: melanoma and malignant probabilities at validation sensitivity 0.90 ("have it checked") and
  at validation specificity 0.95 ("see a dermatologist soon");
- out-of-scope gate: Mahalanobis distance of the backbone's pooled features to the nearest (class, photo type)
  centre, in a whitened PCA space of the within-group covariance (train split); the threshold is the 99th
  percentile of the validation distances, so ~1 % of real lesions would be refused; with --non-skin FOLDER also
  the learned non-skin measure (training/nonskin.py), the two limits then sharing that share.
- photo-type head: a logistic regression on the train split's features is fitted beside the trained head, and
  the one with the higher balanced validation accuracy is kept (config.json's "photo_type" section says which).
The first three are fitted per photo type (dermoscopic, clinical) on that type's validation rows; config.json
keeps the dermoscopic values at the top of each section and the others under "by_photo_type".
The test split is touched only by training/evaluate.py, which runs last.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model import ood
from model.checkpoint import CLASSES, NO_LESION, load_model, metadata_spec, read_record, save_weights
from model.image import eval_transform, open_image
from model.quality import check
from training import nonskin
from training.data import PHOTO_TYPES, SkinDataset, cache_side, load_images, read_sources
from training.evaluate import evaluate, write_evaluation
from training.fitting import fit_temperature, softmax
from training.inference import network_outputs
from training.metrics import malignant_scores, melanoma_scores, threshold_for_sensitivity, threshold_for_specificity
from training.photo_head import choose_photo_head

SENSITIVITY = 0.90       # "have it checked"
SPECIFICITY = 0.95       # "see a dermatologist soon"
UNCERTAIN_MAX_PROB = 0.5
GATE_SPACES = ("style",)  # what the gate measures unless --gate-spaces says otherwise (model/ood.py)
COMMAND_FILE = "command.txt"  # the training command, written by training.train into its run folder


def fit_thresholds(y, p, base: dict | None = None) -> dict:
    """Operating points on validation rows: "have it checked" at sensitivity 0.90, "see a dermatologist soon"
    at specificity 0.95. With `base` (the dermoscopy thresholds) only what the rows can support is fitted:
    phone photos have few melanomas, so their melanoma thresholds stay those of dermoscopy, and only the
    "soon" one is raised where phone photos of other lesions would otherwise cross it."""
    mel_y, mel_s = melanoma_scores(y, p)
    mal_y, mal_s = malignant_scores(y, p)
    if base is None:
        return {"melanoma": threshold_for_sensitivity(mel_y, mel_s, SENSITIVITY),
                "malignant": threshold_for_sensitivity(mal_y, mal_s, SENSITIVITY),
                "melanoma_high": threshold_for_specificity(mel_y, mel_s, SPECIFICITY),
                "malignant_high": threshold_for_specificity(mal_y, mal_s, SPECIFICITY),
                "uncertain_max_prob": UNCERTAIN_MAX_PROB}
    lesion = y != NO_LESION
    melanoma_high = threshold_for_specificity(mel_y[lesion], mel_s[lesion], SPECIFICITY)
    return {"malignant": threshold_for_sensitivity(mal_y, mal_s, SENSITIVITY),
            "malignant_high": threshold_for_specificity(mal_y, mal_s, SPECIFICITY),
            "melanoma_high": max(base["melanoma_high"], melanoma_high)}


def calibrate(model, df, split, cache, spec, pre, gate_spaces=GATE_SPACES, non_skin=None) -> tuple[dict, dict]:
    """(config sections: calibration, thresholds, ood; the tensors of the out-of-scope gate), fitted on the
    validation split, per photo type where the data has more than one (the first type's values are the defaults).
    The gate measures `gate_spaces` (model/ood.py: "style", "features"), and with `non_skin` (a folder of pictures
    that are not skin) the learned non-skin measure too."""
    transform = eval_transform(pre)
    parts = {}
    for name in ("train", "val"):
        m = (split == name).to_numpy(copy=True)
        parts[name] = SkinDataset(df[m], cache[torch.from_numpy(m)], transform, spec)
    train, val = network_outputs(model, parts["train"]), network_outputs(model, parts["val"])
    y_tr, y_va = parts["train"].labels.numpy(), parts["val"].labels.numpy()
    kind_tr, kind_va = parts["train"].photo_types.numpy(), parts["val"].photo_types.numpy()
    # the gate: one centre per (class, photo type), so phone photos are not measured against dermoscopy
    ood_tensors = ood.fit_spaces({name: getattr(train, name) for name in gate_spaces}, y_tr + len(CLASSES) * kind_tr)
    d_va = ood.score({name: torch.from_numpy(getattr(val, name)) for name in gate_spaces}, ood_tensors).numpy()
    ns_va = None
    if non_skin:
        others = nonskin.pictures(non_skin)
        ood_tensors.update(nonskin.measure(model, pre, spec, train.style, parts["train"].df["path"].to_numpy(),
                                           others))
        ns_va = ood.nonskin(torch.from_numpy(val.style), ood_tensors).numpy()
    # the cheap checks' limits: from the train and validation photos (see model/ood.py)
    paths = np.concatenate([parts["train"].df["path"].to_numpy(), parts["val"].df["path"].to_numpy()])
    qualities = np.array([check(open_image(path)) for path in paths], dtype=object)
    kind_all = np.concatenate([kind_tr, kind_va])
    sections = {"calibration": {"fitted_on": "validation split"},
                "thresholds": {"chosen_on": f"validation split: sensitivity {SENSITIVITY} for the plain thresholds, "
                                            f"specificity {SPECIFICITY} for the _high ones"},
                "ood": {"method": f"Mahalanobis distance to the nearest (class, photo type) centre, whitened PCA "
                                  f"({ood.COMPONENTS} components) of the train split's style (mean and standard "
                                  f"deviation over space of each channel) at backbone feature level {ood.LEVEL}"
                                  + (", and of the pooled features; each over its median train distance, the "
                                     "larger of the two" if "features" in gate_spaces else ""),
                        "level": ood.LEVEL, "spaces": list(gate_spaces), "quantile_on_val": ood.QUANTILE,
                        "cheap_limits_fitted_on": "train and validation splits"}}
    if non_skin:
        sections["ood"].update(non_skin={
            "method": "class-balanced logistic regression on the standardised style: the train split's photos "
                      f"and {nonskin.RECOLOURED} of them recoloured to a random MST shade, against pictures that "
                      "are not skin (training/nonskin.py); the distance and this measure each at the "
                      f"{ood.SPLIT_QUANTILE} quantile of the validation rows", "pictures": len(others)})
    if train.photo_logits is not None and len(set(kind_tr)) > 1 and len(set(kind_va)) > 1:
        sections["photo_type"] = choose_photo_head(model, train, val, kind_tr, kind_va)
    for k, name in enumerate(PHOTO_TYPES):
        m = kind_va == k
        if not m.any():
            continue
        t = fit_temperature(val.logits[m], y_va[m])
        p = softmax(val.logits[m] / t)
        fitted = {"calibration": {"temperature": t},
                  "thresholds": fit_thresholds(y_va[m], p, None if k == 0 else sections["thresholds"]),
                  "ood": ood.fit_limits(d_va[m], list(qualities[kind_all == k]), None if ns_va is None else ns_va[m])}
        for section, values in fitted.items():
            if k == 0:
                sections[section].update(values)
            else:
                sections[section].setdefault("by_photo_type", {})[name] = values
    return sections, ood_tensors


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def training_record(record: dict, args, seconds: float, command: str | None) -> dict:
    """record.json's "training" section: how the weights were made (`record`: the best epoch's)."""
    return {**record.get("training", {}), "command": command, "args": vars(args), "seed": args.seed,
            "epochs": args.epochs, "seconds": round(seconds), "hardware": hardware(), "torch": torch.__version__,
            "git_commit": git_commit(), "finished": time.strftime("%Y-%m-%d %H:%M")}


def data_record(args, df: pd.DataFrame, split: pd.Series) -> dict:
    """config.json's "data" section: what the weights were trained on and how it was split."""
    folders = {"dermoscopic": [str(d) for d in args.data],
               "clinical": [str(d) for d in getattr(args, "clinical_data", [])]}
    return {"folders": folders, "rows": int(len(df)),
            "rows_by_photo_type": {k: int(v) for k, v in df["photo_type"].value_counts().items()},
            "split": {k: int(v) for k, v in split.value_counts().items()},
            "split_rule": "by lesion_id (the patient for phone photos; rows without one are their own lesion), "
                          "stratified by the lesion's most serious label, 70/15/15, seeded",
            "hidden_metadata": df.attrs.get("hidden_metadata", {}),
            "licence": "HAM10000 (Tschandl et al. 2018), ISIC Archive and ISIC 2017 challenge (Codella et al. 2018) "
                       "images, CC BY-NC; PAD-UFES-20 (Pacheco et al. 2020), CC BY 4.0; see README"}


def training_command(run: Path) -> str | None:
    """The command that trained the run (RUN/command.txt, written by training.train), if it is there."""
    path = run / COMMAND_FILE
    return path.read_text().strip() if path.is_file() else None


def finalize(run: Path, args, df, split, cache, seconds: float, out: Path | None = None, command: str | None = None,
             test: bool = True, gate_spaces=GATE_SPACES, non_skin=None):
    """Calibrate the best epoch on the validation split, ship it as a weights folder, evaluate it on test (unless
    `test` is False: a shipping rule decides on validation figures first, then the test split is read once)."""
    model, config, _ = load_model(run / "best")
    sections, ood_tensors = calibrate(model, df, split, cache, metadata_spec(config), config["preprocessing"],
                                      gate_spaces, non_skin)
    command = command or training_command(run)
    training = training_record(read_record(run / "best"), args, seconds, command)
    if (run / "resumes.jsonl").is_file():  # each resume's arguments: the record of how the run really went
        training["resumes"] = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    config.update(**sections, training=training, data=data_record(args, df, split))
    out = Path(out or run / "weights")
    save_weights(model, out, config, extra=ood_tensors)
    (out / "split.csv").write_bytes((run / "split.csv").read_bytes())
    print(f"calibrated: {json.dumps(sections, indent=1)}\nweights in {out}")
    if test:
        results, arrays = evaluate(out, args.data, getattr(args, "clinical_data", []), split_file=out / "split.csv")
        write_evaluation(out, results, arrays, summary=run / "summary.csv")


def spaces_option(spaces, non_skin=None) -> str:
    return ("" if tuple(spaces) == GATE_SPACES else " --gate-spaces " + " ".join(spaces)) + \
        (f" --non-skin {non_skin}" if non_skin else "")


def main(args):
    """Finalize a run trained with --no-finalize: the same data folders, split and image cache as training."""
    run = Path(args.run)
    train_args = json.loads((run / "args.json").read_text())
    if (run / "checkpoint.pt").is_file():  # the arguments of the last resume, which finished the run
        train_args.update(torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True).get("args", {}))
    train_args = argparse.Namespace(**train_args)
    spec = metadata_spec(load_model(run / "best")[1])
    df = read_sources(train_args.data, getattr(train_args, "clinical_data", []), skip_bad_rows=True, spec=spec)
    split = pd.read_csv(run / "split.csv", dtype=str).set_index("image_id")["split"]
    split = df["image_id"].map(split).rename("split")
    cache = load_images(df["path"], cache_side(train_args))
    summary = pd.read_csv(run / "summary.csv")
    command = training_command(run)
    options = spaces_option(args.gate_spaces, args.non_skin)
    finalize(run, train_args, df, split, cache, seconds=float(summary["epoch_s"].sum()),
             command=f"{command}; python -m training.calibrate --run {run}{options}" if command else None,
             test=args.test,
             gate_spaces=tuple(args.gate_spaces), non_skin=args.non_skin)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="run folder of training.train (best/, split.csv, args.json)")
    p.add_argument("--gate-spaces", nargs="+", choices=ood.SPACES, default=list(GATE_SPACES),
                   help="what the out-of-scope gate measures (model/ood.py)")
    p.add_argument("--non-skin", default=None, metavar="FOLDER",
                   help="fit the gate's learned non-skin measure on this folder's pictures (training/nonskin.py)")
    p.add_argument("--no-test", dest="test", action="store_false",
                   help="calibrate only; read the test split later with training.evaluate")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
