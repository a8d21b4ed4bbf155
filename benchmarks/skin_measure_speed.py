"""What the gate's ImageNet non-skin measure (model/skin_measure.py) costs clf.predict: one photo, a weights folder
without the measure and the same with it, beside the eager timm MobileNetV4 baseline at 224 px, all taking turns in
the same rounds (timing.interleaved).

    python benchmarks/skin_measure_speed.py --without runs/shipped-ext --with runs/weights-imagenet \
        --out benchmarks/results/skin_measure_speed.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.classifier_speed import META, example_photos, phone_photo, timm_baseline  # noqa: E402
from benchmarks.timing import interleaved, summary  # noqa: E402
from model import load_classifier  # noqa: E402


def measure_cost(without: Path, with_measure: Path, image: Path, runs: int, warmup: int) -> dict:
    plain, gated, baseline = load_classifier(without), load_classifier(with_measure), timm_baseline()
    if gated.skin is None:
        raise SystemExit(f"{with_measure} has no ImageNet non-skin measure: "
                         "python -m training.pretrained_nonskin ... --write FOLDER makes one")
    times = interleaved({"predict_without_measure": lambda: plain.predict(image, *META),
                         "predict_with_measure": lambda: gated.predict(image, *META),
                         "timm_224_baseline": lambda: baseline(image)}, runs, warmup)
    out = {name: summary(t) for name, t in times.items()}
    base = out["timm_224_baseline"]["p50_ms"]
    for name in ("predict_without_measure", "predict_with_measure"):
        out[f"ratio_{name}_to_baseline"] = round(out[name]["p50_ms"] / base, 3)
    out["measure_runner"] = gated.skin.name if hasattr(gated.skin, "name") else type(gated.skin).__name__
    out["photo"] = image.name
    return out


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    image = example_photos()[0]
    with tempfile.TemporaryDirectory() as tmp:
        report = {"threads": args.threads,
                  "example": measure_cost(args.without, args.with_measure, image, args.runs, args.warmup),
                  "phone": measure_cost(args.without, args.with_measure, phone_photo(image, Path(tmp)),
                                        max(3, args.runs // 2), min(args.warmup, 2))}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--without", type=Path, required=True, help="a weights folder without the measure")
    p.add_argument("--with", dest="with_measure", type=Path, required=True)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    main(p.parse_args())
