"""One fresh process, as a user's first command: import the model, load the weights, answer one photo, then a
batch for the peak memory. Prints its clock times as one line of JSON; benchmark.py's cold-start part runs it.

    python -m benchmarks.cold_start WEIGHTS IMAGE --age 65 --sex male --site back --batch 32 [--eager]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks.memory import peak_rss_mb


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights")
    p.add_argument("image")
    p.add_argument("--age", type=int)
    p.add_argument("--sex")
    p.add_argument("--site")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--eager", action="store_true", help="without ONNX Runtime: the fallback path, for comparison")
    return p


def main(args: argparse.Namespace) -> dict:
    started = time.time()
    if args.eager:
        sys.modules["onnxruntime"] = None  # makes `import onnxruntime` fail
    from model import load_classifier  # imported here: the import is one of the times measured
    imported = time.time()
    clf = load_classifier(args.weights)
    loaded = time.time()
    meta = (args.age, args.sex, args.site)
    clf.predict(args.image, *meta)
    answered = time.time()
    clf.predict_batch([args.image] * args.batch, *[[v] * args.batch for v in meta])
    return {"started": started, "imported": imported, "loaded": loaded, "answered": answered,
            "runner": clf.runner.name, "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    print(json.dumps(main(get_args_parser().parse_args())))
