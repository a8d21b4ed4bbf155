"""Speed and memory of the classifier on the machine it runs on.

    python benchmarks/benchmark.py            # full figures (a few minutes on 2 cores)
    python benchmarks/benchmark.py --quick    # a short look, fewer repetitions
    python benchmarks/benchmark.py --skip app,alternatives --with-compile   # parts on and off

Parts, each measured in this run, side by side, on the same photo:
  latency       clf.predict (decode, preprocessing, metadata, model, checks) p50/p95, next to a plain eager
                timm mobilenetv4_conv_medium at 224 with torchvision resize + normalize, and next to
                clf.predict on the eager module; clf.explain (Grad-CAM) for reference. Rounds interleave the
                paths, so a busy machine slows them all alike and the ratios hold. Twice: on the example photo
                (--image) and on the same photo enlarged to a phone camera's 4032x3024, where decoding and
                resizing weigh more than the network.
  throughput    clf.predict_batch on 32 photos: images per second, fast path and eager.
  cli           `python -m model.predict` on a folder of 1,000 photos (copies of the examples), its loop in this
                process next to clf.predict_batch on the same files, and the whole command with its start-up.
  alternatives  the model alone through each inference path tried for model/runtime.py (eager,
                channels_last, BatchNorm folded, TorchScript freeze, ONNX Runtime, torch.compile with
                --with-compile): set-up time, batch 1 and batch 32 latency, difference from eager.
  cold_start    a fresh `python` process: import, load the weights, first answer; then a batch of 32 for the
                peak resident memory.
  app           `python app.py` in a subprocess on a free port, asked (api_name="/predict": photo, age, sex,
                site) through gradio_client and through the web page's own protocol (upload, queue, server-sent
                events), next to a do-nothing Gradio app with the same inputs and outputs: time to first answer,
                p50/p95, peak memory.
  cuda          with a GPU: latency and throughput in float32 and with autocast (float16).

Writes benchmarks/results/benchmark.json and benchmark.md (--out changes the folder). The parts live in
classifier_speed.py (latency, throughput, cli, cuda), inference_paths.py (alternatives), fresh_processes.py
(cold_start, app) and report.py (targets and markdown).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import timm
import torch

# `python benchmarks/benchmark.py` puts benchmarks/ on the path, not the repository root that holds the packages
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.classifier_speed import cli_throughput, cuda, latencies, throughput
from benchmarks.fresh_processes import app, cold_start
from benchmarks.inference_paths import alternatives
from benchmarks.memory import peak_rss_mb
from benchmarks.report import checks, markdown
from model import load_model
from model.checkpoint import read_config, write_config
from model.classifier import Classifier

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "examples" / "melanoma_ISIC_0026853.jpg"
PARTS = ("latency", "throughput", "cli", "alternatives", "cold_start", "app", "cuda")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__}
    for name in ("torchvision", "onnxruntime", "gradio"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "os": platform.platform(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()], **versions}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=ROOT / "weights")
    p.add_argument("--image", type=Path, default=IMAGE)
    p.add_argument("--runs", type=int, default=50, help="timed single-image calls per path")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batches", type=int, default=8, help="timed batches per path")
    p.add_argument("--cli-images", type=int, default=1000, help="photos in the folder given to the predict command")
    p.add_argument("--cold-runs", type=int, default=3, help="fresh processes for the cold start")
    p.add_argument("--app-requests", type=int, default=20)
    p.add_argument("--input-size", type=int, help="run the weights at this input size instead of config.json's "
                   "(to measure the shipped 160 px with placeholder weights trained at another size)")
    p.add_argument("--threads", type=int, help="torch and ONNX Runtime threads, here and in the subprocesses "
                   "(OMP_NUM_THREADS); default: torch's own choice")
    p.add_argument("--quick", action="store_true", help="runs 10, batches 2, cold runs 1, app requests 5")
    p.add_argument("--skip", default="", help=f"comma-separated parts to leave out: {', '.join(PARTS)}")
    p.add_argument("--with-compile", action="store_true",
                   help="also try torch.compile (minutes of compiling on 2 cores)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p


def resized_weights(weights: Path, size: int, folder: Path) -> Path:
    """A weights folder like `weights` whose config.json says input size `size` (the network is fully
    convolutional)."""
    for f in weights.iterdir():
        if f.name != "config.json":
            (folder / f.name).symlink_to(f.resolve())
    config = read_config(weights)
    config["preprocessing"]["input_size"] = size
    write_config(folder, config)
    return folder


def parts_to_skip(skip: str) -> set[str]:
    """--skip read, or the program stops with a message naming the parts."""
    parts = {s.strip() for s in skip.split(",") if s.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        sys.exit(f"--skip: unknown part(s) {', '.join(sorted(unknown))}; the parts are {', '.join(PARTS)}.")
    return parts


def measure(results: dict, name: str, fn: Callable[[], dict]) -> None:
    """results[name] = fn(), its duration said on stderr."""
    print(f"{name}...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    results[name] = fn()
    print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> dict:
    if not args.input_size:
        return run(args, args.weights, "config.json")
    with tempfile.TemporaryDirectory() as tmp:
        return run(args, resized_weights(args.weights, args.input_size, Path(tmp)), "--input-size, not config.json")


def run(args: argparse.Namespace, weights: Path, size_from: str) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for cold_start and app, which start new processes
    if args.quick:
        args.runs, args.warmup, args.batches, args.cold_runs, args.app_requests = 10, 2, 2, 1, 5
    skip = parts_to_skip(args.skip)
    results = {"command": " ".join(["python", "benchmarks/benchmark.py", *sys.argv[1:]]), "machine": machine(),
               "batch": args.batch}
    model, config, ood = load_model(weights)
    results["input_size"] = config["preprocessing"]["input_size"]
    results["weights"] = (f"{args.weights.resolve()} (sha256 {config.get('weights_sha256', '?')[:12]}), "
                          f"input size from {size_from}")
    clf = Classifier(model, config, ood, device="cpu")
    parts = {
        "latency": lambda: latencies(clf, args.image, args.runs, args.warmup),
        "throughput": lambda: throughput(clf, args.batch, args.batches),
        "cli": lambda: cli_throughput(clf, weights, args.cli_images, args.batch, 2 if args.quick else 3),
        "alternatives": lambda: alternatives(clf.model, results["input_size"], args.runs, args.batch,
                                             args.with_compile),
        "cold_start": lambda: cold_start(weights, args.image, args.cold_runs, args.batch),
        "app": lambda: app(weights, args.image, args.app_requests),
        "cuda": lambda: cuda(weights, args.image, args.runs, args.batch),
    }
    for name, fn in parts.items():
        if name not in skip and (name != "cuda" or torch.cuda.is_available()):
            measure(results, name, fn)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["peak_rss_mb_this_process"] = round(peak_rss_mb(os.getpid()))
    results["checks"] = checks(results)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M")
    write(results, args.out)
    print(markdown(results))
    return results


def write(results: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "benchmark.json").write_text(json.dumps(results, indent=2) + "\n")
    (folder / "benchmark.md").write_text(markdown(results) + "\n")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
