"""The classifier timed in this process: one photo, a batch, the predict command, and the GPU when there is one.
Each figure comes with a comparison measured in the same rounds (see timing.interleaved)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import resolve_model_data_config
from torchvision.transforms import v2

from benchmarks.timing import interleaved, summary
from model import load_model, predict
from model.classifier import Classifier
from model.runtime import EagerRunner

ROOT = Path(__file__).resolve().parent.parent
META = (65, "male", "back")  # age, sex, site, as a person would type them


def example_photos() -> list[Path]:
    return sorted((ROOT / "examples").glob("*.jpg"))


def timm_baseline():
    """The reference: plain eager timm at 224 (1000 classes, as published) with torchvision resize + normalize."""
    net = timm.create_model("mobilenetv4_conv_medium", pretrained=False).eval()
    cfg = resolve_model_data_config(net)
    transform = v2.Compose([
        v2.Resize((224, 224), interpolation=v2.InterpolationMode(cfg["interpolation"]), antialias=True),
        v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg["mean"], cfg["std"]),
    ])

    @torch.inference_mode()
    def run(path):
        return net(transform(Image.open(path).convert("RGB"))[None])
    return run


def with_runner(clf: Classifier, runner, fn):
    """Call fn with clf temporarily running `runner` (the eager comparison in the same process)."""
    def call():
        fast, clf.runner = clf.runner, runner
        try:
            return fn()
        finally:
            clf.runner = fast
    return call


def phone_photo(image: Path, folder: Path) -> Path:
    """`image` enlarged to 4032x3024 (a 12-megapixel phone photo), saved as JPEG like a camera would."""
    path = folder / "phone_4032x3024.jpg"
    Image.open(image).convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def latency(clf: Classifier, image: Path, runs: int, warmup: int) -> dict:
    """clf.predict next to clf.predict on the eager module and the timm baseline; clf.explain for reference."""
    baseline, eager = timm_baseline(), EagerRunner(clf.model)
    times = interleaved({
        "predict": lambda: clf.predict(image, *META),
        "predict_eager": with_runner(clf, eager, lambda: clf.predict(image, *META)),
        "timm_224_baseline": lambda: baseline(image),
    }, runs, warmup)
    out = {name: summary(t) for name, t in times.items()}
    explain = interleaved({"explain": lambda: clf.explain(image, *META)}, max(3, runs // 5), 1)["explain"]
    out["explain"] = summary(explain)
    out["ratio_predict_to_baseline"] = round(out["predict"]["p50_ms"] / out["timm_224_baseline"]["p50_ms"], 3)
    out["ratio_predict_to_predict_eager"] = round(out["predict"]["p50_ms"] / out["predict_eager"]["p50_ms"], 3)
    out["runner"] = clf.runner.name
    with Image.open(image) as im:
        out["photo"] = f"{image.name}, {im.size[0]}x{im.size[1]}"
    return out


def latencies(clf: Classifier, image: Path, runs: int, warmup: int) -> dict:
    """latency() on the example photo and on the same photo at a phone camera's size."""
    with tempfile.TemporaryDirectory() as tmp:
        return {"example": latency(clf, image, runs, warmup),
                "phone": latency(clf, phone_photo(image, Path(tmp)), max(3, runs // 2), min(warmup, 2))}


def throughput(clf: Classifier, batch: int, repeats: int) -> dict:
    """clf.predict_batch on `batch` example photos, fast path and eager: images per second."""
    photos = example_photos()
    paths = [photos[i % len(photos)] for i in range(batch)]
    meta = [[v] * batch for v in META]

    def ask():
        return clf.predict_batch(paths, *meta)
    times = interleaved({"predict_batch": ask, "predict_batch_eager": with_runner(clf, EagerRunner(clf.model), ask)},
                        repeats, 1)
    return {"batch": batch, **{name: {**summary(t), "images_per_s": round(batch / float(np.median(t)), 1)}
                               for name, t in times.items()}}


def photo_folder(folder: Path, n: int) -> list[Path]:
    """`folder` filled with n copies of the example photos, 0000.jpg, 0001.jpg, ..."""
    sources = example_photos()
    folder.mkdir()
    paths = [folder / f"{i:04d}.jpg" for i in range(n)]
    for i, path in enumerate(paths):
        shutil.copy(sources[i % len(sources)], path)
    return paths


def predict_command_seconds(folder: Path, out: Path, weights: Path, batch: int) -> float:
    """`python -m model.predict` on the folder in a fresh process, start-up included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "model.predict", str(folder), "--out", str(out), "--batch", str(batch),
                    "--weights", str(weights), "--device", "cpu"], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def cli_throughput(clf: Classifier, weights: Path, n: int, batch: int, rounds: int) -> dict:
    """The predict command on n photos: its loop (listing, reading and checking each file, the network, the CSV)
    next to clf.predict_batch on the same files, batch for batch; then the whole command in a fresh process.
    Each path's fastest round counts: a pass takes a minute here, and other work on the machine slows a pass
    by more than the difference between the paths (one more check of the decoded image, the CSV)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "photos", Path(tmp) / "predictions.csv"
        paths = photo_folder(folder, n)

        def batches():
            return [clf.predict_batch(paths[i:i + batch]) for i in range(0, n, batch)]

        def cli():
            out.unlink(missing_ok=True)
            predict.run(clf, predict.list_folder(folder), out, batch)
        times = interleaved({"predict_batch": batches, "cli": cli}, rounds, 0)
        out.unlink()
        command = predict_command_seconds(folder, out, weights, batch)
    rates = {name: round(n / min(t), 1) for name, t in times.items()}
    return {"images": n, "batch": batch, "rounds": rounds, "predict_batch_images_per_s": rates["predict_batch"],
            "cli_images_per_s": rates["cli"], "ratio": round(rates["cli"] / rates["predict_batch"], 3),
            "command_s": round(command, 1), "command_images_per_s": round(n / command, 1)}


def cuda(weights: Path, image: Path, runs: int, batch: int) -> dict:
    """On the GPU, in float32 and with autocast (float16): one photo's latency, a batch's images per second."""
    model, config, ood = load_model(weights)
    clf = Classifier(model, config, ood, device="cuda")
    paths = [image] * batch
    meta = [[v] * batch for v in META]
    out = {"device": torch.cuda.get_device_name(0)}
    for label, amp in (("float32", False), ("autocast_float16", True)):
        def one(amp=amp):
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                clf.predict(image, *META)
            torch.cuda.synchronize()

        def many(amp=amp):
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                clf.predict_batch(paths, *meta)
            torch.cuda.synchronize()
        t1 = interleaved({"one": one}, runs, 3)["one"]
        tb = interleaved({"many": many}, max(3, runs // 5), 1)["many"]
        out[label] = {"latency": summary(t1), "batch": batch, "images_per_s": round(batch / float(np.median(tb)), 1)}
    return out
