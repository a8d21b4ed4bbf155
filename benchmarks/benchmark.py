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

Writes benchmarks/results/benchmark.json and benchmark.md (--out changes the folder).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import resolve_model_data_config
from torch import nn
from torchvision.transforms import v2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model import load_model  # noqa: E402
from model import predict  # noqa: E402
from model.checkpoint import read_config, write_config  # noqa: E402
from model.classifier import Classifier  # noqa: E402
from model.runtime import EagerRunner, OnnxRunner, export_onnx, max_difference  # noqa: E402
from benchmarks.load_test import free_port, stop_app  # noqa: E402

IMAGE = ROOT / "examples" / "melanoma_ISIC_0026853.jpg"
META = (65, "male", "back")  # age, sex, site, as a person would type them
PARTS = ("latency", "throughput", "cli", "alternatives", "cold_start", "app", "cuda")
TARGETS = {"latency_ratio": 0.7, "images_per_s": 40.0, "cold_start_s": 10.0, "peak_rss_mb": 1200.0, "app_p50_ms": 120.0,
           "cli_ratio": 0.8}


# ---- small helpers --------------------------------------------------------------------------------------

def summary(seconds: list[float]) -> dict:
    p50, p95 = np.percentile(seconds, [50, 95])
    return {"p50_ms": round(1000 * float(p50), 2), "p95_ms": round(1000 * float(p95), 2), "n": len(seconds)}


def interleaved(paths: dict, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each path, the paths taking turns in every round."""
    times = {name: [] for name in paths}
    for r in range(warmup + rounds):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


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


# ---- latency and throughput ----------------------------------------------------------------------------

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
    baseline, eager = timm_baseline(), EagerRunner(clf.model)
    times = interleaved({
        "predict": lambda: clf.predict(image, *META),
        "predict_eager": with_runner(clf, eager, lambda: clf.predict(image, *META)),
        "timm_224_baseline": lambda: baseline(image),
    }, runs, warmup)
    out = {name: summary(t) for name, t in times.items()}
    out["explain"] = summary(interleaved({"explain": lambda: clf.explain(image, *META)}, max(3, runs // 5), 1)["explain"])
    out["ratio_predict_to_baseline"] = round(out["predict"]["p50_ms"] / out["timm_224_baseline"]["p50_ms"], 3)
    out["ratio_predict_to_predict_eager"] = round(out["predict"]["p50_ms"] / out["predict_eager"]["p50_ms"], 3)
    out["runner"] = clf.runner.name
    with Image.open(image) as im:
        out["photo"] = f"{image.name}, {im.size[0]}x{im.size[1]}"
    return out


def latencies(clf: Classifier, image: Path, runs: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return {"example": latency(clf, image, runs, warmup),
                "phone": latency(clf, phone_photo(image, Path(tmp)), max(3, runs // 2), min(warmup, 2))}


def throughput(clf: Classifier, batch: int, repeats: int) -> dict:
    paths = sorted((ROOT / "examples").glob("*.jpg"))
    paths = [paths[i % len(paths)] for i in range(batch)]
    n = len(paths)
    eager = EagerRunner(clf.model)
    times = interleaved({
        "predict_batch": lambda: clf.predict_batch(paths, [META[0]] * n, [META[1]] * n, [META[2]] * n),
        "predict_batch_eager": with_runner(clf, eager, lambda: clf.predict_batch(paths, [META[0]] * n, [META[1]] * n, [META[2]] * n)),
    }, repeats, 1)
    return {"batch": batch, **{name: {**summary(t), "images_per_s": round(batch / float(np.median(t)), 1)}
                               for name, t in times.items()}}


def cli_throughput(clf: Classifier, weights: Path, n: int, batch: int, rounds: int) -> dict:
    """The predict command on n photos: its loop (listing, reading and checking each file, the network, the CSV)
    next to clf.predict_batch on the same files, batch for batch; then the whole command in a fresh process.
    Each path's fastest round counts: a pass takes a minute here, and other work on the machine slows a pass
    by more than the difference between the paths (one more check of the decoded image, the CSV)."""
    sources = sorted((ROOT / "examples").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "photos", Path(tmp) / "predictions.csv"
        folder.mkdir()
        paths = [folder / f"{i:04d}.jpg" for i in range(n)]
        for i, path in enumerate(paths):
            shutil.copy(sources[i % len(sources)], path)

        def cli():
            out.unlink(missing_ok=True)
            predict.run(clf, predict.list_folder(folder), out, batch)
        times = interleaved({"predict_batch": lambda: [clf.predict_batch(paths[i:i + batch]) for i in range(0, n, batch)],
                             "cli": cli}, rounds, 0)
        out.unlink()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "model.predict", str(folder), "--out", str(out), "--batch", str(batch),
                        "--weights", str(weights), "--device", "cpu"], cwd=ROOT, check=True, capture_output=True)
        command = time.perf_counter() - start
    rates = {name: round(n / min(t), 1) for name, t in times.items()}
    return {"images": n, "batch": batch, "rounds": rounds, "predict_batch_images_per_s": rates["predict_batch"],
            "cli_images_per_s": rates["cli"], "ratio": round(rates["cli"] / rates["predict_batch"], 3),
            "command_s": round(command, 1), "command_images_per_s": round(n / command, 1)}


# ---- the inference paths tried for model/runtime.py --------------------------------------------------------

def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy with every BatchNorm2d that follows a Conv2d folded into it (timm names the pairs as below)."""
    model = copy.deepcopy(model)
    pairs = [("conv", "bn"), ("conv_stem", "bn1"), ("conv_head", "norm_head"), ("conv_exp", "bn1"),
             ("conv_pwl", "bn2"), ("conv_dw", "bn1"), ("conv_pw", "bn2")]
    for module in list(model.modules()):
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            # timm's BatchNormAct2d also holds the activation: keep it
            setattr(module, bn_name, nn.Sequential(bn.drop, bn.act) if hasattr(bn, "act") else nn.Identity())
    return model


def alternatives(model: nn.Module, size: int, runs: int, batch: int, with_compile: bool) -> dict:
    meta_dim = model.args.meta_dim
    g = torch.Generator().manual_seed(0)
    inputs = {b: (torch.randn(b, 3, size, size, generator=g), torch.randn(b, meta_dim, generator=g)) for b in (1, batch)}
    channels_last = {b: (x.contiguous(memory_format=torch.channels_last), m) for b, (x, m) in inputs.items()}
    threads = torch.get_num_threads()

    def traced():
        with torch.no_grad():
            ts = torch.jit.trace(model, inputs[1])
        ts = torch.jit.optimize_for_inference(torch.jit.freeze(ts))
        return lambda x, m: (None, None, ts(x, m))

    def compiled():
        fn = torch.compile(EagerRunner(model).__call__)
        with torch.inference_mode():
            fn(*inputs[1])  # compiling happens on the first call: part of the set-up time
        return fn

    builders = {
        "eager": (lambda: EagerRunner(model), inputs),
        "eager channels_last": (lambda: EagerRunner(copy.deepcopy(model).to(memory_format=torch.channels_last)), channels_last),
        "BatchNorm folded": (lambda: EagerRunner(fold_batchnorm(model)), inputs),
        "BatchNorm folded + channels_last": (
            lambda: EagerRunner(fold_batchnorm(model).to(memory_format=torch.channels_last)), channels_last),
        "TorchScript trace + freeze": (traced, inputs),
        f"ONNX Runtime, {threads} thread{'s' if threads > 1 else ''} (kept)": (lambda: OnnxRunner(export_onnx(model, size, meta_dim)), inputs),
        "ONNX Runtime, 1 thread": (lambda: OnnxRunner(export_onnx(model, size, meta_dim), threads=1), inputs),
    }
    if with_compile:
        builders["torch.compile (inductor)"] = (compiled, inputs)
    runners, setup, errors = {}, {}, {}
    for name, (build, _) in builders.items():
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runners[name] = build()
            setup[name] = round(time.perf_counter() - start, 2)
        except Exception as e:  # a path that fails here is reported, not fatal
            errors[name] = f"{type(e).__name__}: {e}"[:300]
    eager = EagerRunner(model)
    out = {}
    with torch.inference_mode():
        reference = eager(*inputs[batch])
        for b, rounds in ((1, runs), (batch, max(2, runs // 10))):
            times = interleaved({name: (lambda r=runner, i=builders[name][1][b]: r(*i)) for name, runner in runners.items()},
                                rounds, 1)
            for name, t in times.items():
                out.setdefault(name, {"setup_s": setup[name]})[f"batch_{b}"] = summary(t)
        for name, runner in runners.items():
            fast = runner(*builders[name][1][batch])
            pairs = [(f, r) for f, r in zip(fast, reference) if f is not None]
            out[name]["max_difference"] = float(max_difference(*zip(*pairs)))
    base = out["eager"]
    for name, r in out.items():
        r["ratio_to_eager_batch_1"] = round(r["batch_1"]["p50_ms"] / base["batch_1"]["p50_ms"], 3)
        r[f"images_per_s_batch_{batch}"] = round(batch / (r[f"batch_{batch}"]["p50_ms"] / 1000), 1)
    for name, e in errors.items():
        out[name] = {"error": e}
    return out


# ---- fresh processes -------------------------------------------------------------------------------------

COLD = """
import json, sys, time
started = time.time()
sys.path.insert(0, {root!r})
if {eager!r}:
    sys.modules["onnxruntime"] = None  # the fallback path, for comparison
from model import load_classifier
imported = time.time()
clf = load_classifier({weights!r})
loaded = time.time()
clf.predict({image!r}, *{meta!r})
answered = time.time()
clf.predict_batch([{image!r}] * {batch}, *[[v] * {batch} for v in {meta!r}])
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"started": started, "imported": imported, "loaded": loaded, "answered": answered,
                  "runner": clf.runner.name, "peak_rss_mb": peak / 1024}}))
"""


def cold_start(weights: Path, image: Path, runs: int, batch: int) -> dict:
    out = {}
    for label, eager in (("fast", False), ("eager_fallback", True)):
        results = []
        for _ in range(runs if not eager else 1):
            code = COLD.format(root=str(ROOT), eager=eager, weights=str(weights), image=str(image), meta=META, batch=batch)
            t0 = time.time()
            done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                return {"error": done.stderr[-2000:]}
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results.append({"to_first_answer_s": round(r["answered"] - t0, 2), "interpreter_s": round(r["started"] - t0, 2),
                            "import_s": round(r["imported"] - r["started"], 2), "load_s": round(r["loaded"] - r["imported"], 2),
                            "first_predict_s": round(r["answered"] - r["loaded"], 2), "runner": r["runner"],
                            "peak_rss_mb": round(r["peak_rss_mb"])})
        out[label] = {"runs": results, "to_first_answer_s": float(np.median([r["to_first_answer_s"] for r in results])),
                      "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}
    out["note"] = f"Target check: the median of the runs. Peak RSS includes a batch of {batch} after the first answer"
    return out


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


# A Gradio app with the same inputs and outputs as app.py whose handler does nothing: the cost of Gradio and
# of the client alone, measured beside the real app.
NOOP_APP = """
import gradio as gr
LABEL = {"label": "Benign lesion", "confidences": [{"label": "Benign lesion", "confidence": 1.0}]}
with gr.Blocks() as demo:
    inputs = [gr.Image(type="filepath"), gr.Number(), gr.Dropdown(["male"]), gr.Dropdown(["back"]), gr.State(None)]
    outputs = [gr.Label(), gr.Markdown(), gr.Image(), inputs[-1]]
    gr.Button().click(lambda *a: (LABEL, "nothing done", None, None), inputs, outputs, api_name="predict",
                      preprocess=False, postprocess=False)
demo.queue(default_concurrency_limit=2, max_size=32).launch()
"""


@contextmanager
def served(argv: list[str], env: dict, folder: Path):
    """A Gradio app started as `argv` on a free port; yields (url, seconds until it answered /config)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_TEMP_DIR=str(folder),
               GRADIO_ANALYTICS_ENABLED="False", **env)
    log_path = folder / f"app-{port}.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            if proc.poll() is not None or time.perf_counter() - t0 > 180:
                raise RuntimeError("the app did not start:\n" + log_path.read_text(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(url + "/config", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        yield url, time.perf_counter() - t0, proc
    finally:
        stop_app(proc)


class WebClient:
    """What the app's web page does for one Analyze, over HTTP: upload the photo, join the queue, read the
    server-sent events until the answer. gradio_client does the same but polls its own message queue every
    50 ms (gradio_client/utils.py), which adds its own tens of milliseconds to every answer."""

    def __init__(self, url: str, api_name: str = "predict"):
        import httpx
        self.url, self.http = url, httpx.Client(timeout=60)
        config = self.http.get(url + "/config").json()
        dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
        self.fn_index, self.n_inputs = dep["id"], len(dep["inputs"])

    def __call__(self, image: Path, *values):
        with open(image, "rb") as f:
            paths = self.http.post(self.url + "/gradio_api/upload", files={"files": (image.name, f, "image/jpeg")}).json()
        photo = {"path": paths[0], "orig_name": image.name, "meta": {"_type": "gradio.FileData"}}
        data = [photo, *values] + [None] * (self.n_inputs - 1 - len(values))  # None: the session's gr.State
        session = uuid.uuid4().hex
        self.http.post(self.url + "/gradio_api/queue/join", json={
            "data": data, "fn_index": self.fn_index, "session_hash": session, "event_data": None}).raise_for_status()
        with self.http.stream("GET", self.url + "/gradio_api/queue/data", params={"session_hash": session}) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        if not msg.get("success"):
                            raise RuntimeError(f"the app answered with an error: {msg.get('output')}")
                        return msg["output"]["data"]
        raise RuntimeError("the event stream ended without an answer")

    def close(self):
        self.http.close()


def app(weights: Path, image: Path, requests: int) -> dict:
    """app.py in a subprocess, asked through gradio_client and through the web page's own protocol (WebClient),
    next to a do-nothing Gradio app with the same inputs and outputs (what Gradio and each client cost alone)."""
    if not (ROOT / "app.py").is_file():
        return {"skipped": "no app.py"}
    from gradio_client import Client, handle_file
    out = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                served([sys.executable, "app.py"], {"SKINLESION_WEIGHTS": str(weights)}, Path(tmp)) as (url, up, proc), \
                served([sys.executable, "-c", NOOP_APP], {}, Path(tmp)) as (noop_url, _, _):
            t0 = time.perf_counter() - up
            clients = {"app": Client(url, verbose=False, download_files=False),
                       "noop": Client(noop_url, verbose=False, download_files=False)}
            web = {"app": WebClient(url), "noop": WebClient(noop_url)}
            answer = web["app"](image, *META)
            if not (isinstance(answer[0], dict) and answer[0].get("confidences")):
                raise RuntimeError(f"no probabilities in the answer: {str(answer)[:300]}")
            first = time.perf_counter() - t0
            paths = {}
            for name in ("app", "noop"):
                paths[f"{name}_gradio_client"] = lambda c=clients[name]: c.predict(handle_file(str(image)), *META, api_name="/predict")
                paths[f"{name}_web"] = lambda w=web[name]: w(image, *META)
            times = interleaved(paths, requests, 2)
            out = {"up_s": round(up, 2), "to_first_answer_s": round(first, 2), **{k: summary(v) for k, v in times.items()},
                   "peak_rss_mb": round(peak_rss_mb(proc.pid))}
            for w in web.values():
                w.close()
    except Exception as e:  # reported, not fatal
        return {"error": f"{type(e).__name__}: {e}"[:1000]}
    return out


# ---- GPU ---------------------------------------------------------------------------------------------------

def cuda(weights: Path, image: Path, runs: int, batch: int) -> dict:
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


# ---- report ------------------------------------------------------------------------------------------------

def checks(results: dict) -> list[dict]:
    rows = []
    lat, thr, cold, app_r, cli = (results.get(k) or {} for k in ("latency", "throughput", "cold_start", "app", "cli"))
    for r in lat.values():
        rows.append({"what": f"clf.predict p50 / timm 224 eager p50 ({r['photo']})", "value": r["ratio_predict_to_baseline"],
                     "target": f"<= {TARGETS['latency_ratio']}", "ok": r["ratio_predict_to_baseline"] <= TARGETS["latency_ratio"]})
    if "predict_batch" in thr:
        v = thr["predict_batch"]["images_per_s"]
        rows.append({"what": f"clf.predict_batch, batch {thr['batch']} (images/s)", "value": v,
                     "target": f">= {TARGETS['images_per_s']:.0f}", "ok": v >= TARGETS["images_per_s"]})
    if cli:
        rows.append({"what": f"predict CLI / clf.predict_batch, {cli['images']} photos (images/s ratio)", "value": cli["ratio"],
                     "target": f">= {TARGETS['cli_ratio']}", "ok": cli["ratio"] >= TARGETS["cli_ratio"]})
    if "fast" in cold:
        v = cold["fast"]["to_first_answer_s"]
        rows.append({"what": "cold start to first answer (s)", "value": v, "target": f"<= {TARGETS['cold_start_s']:.0f}",
                     "ok": v <= TARGETS["cold_start_s"]})
        v = cold["fast"]["peak_rss_mb"]
        rows.append({"what": "peak RSS, load + predict + batch (MB)", "value": v, "target": f"<= {TARGETS['peak_rss_mb']:.0f}",
                     "ok": v <= TARGETS["peak_rss_mb"]})
    if "app_web" in app_r:
        v = app_r["app_web"]["p50_ms"]
        rows.append({"what": "app end to end p50, web page protocol (ms)", "value": v,
                     "target": f"<= {TARGETS['app_p50_ms']:.0f}", "ok": v <= TARGETS["app_p50_ms"]})
        v, floor = app_r["app_gradio_client"]["p50_ms"], app_r["noop_gradio_client"]["p50_ms"]
        rows.append({"what": f"app end to end p50, gradio_client (ms; a do-nothing app: {floor})", "value": v,
                     "target": f"<= {TARGETS['app_p50_ms']:.0f}", "ok": v <= TARGETS["app_p50_ms"]})
    if "peak_rss_mb" in app_r:
        v = app_r["peak_rss_mb"]
        rows.append({"what": "peak RSS of app.py (MB)", "value": v, "target": f"<= {TARGETS['peak_rss_mb']:.0f}",
                     "ok": v <= TARGETS["peak_rss_mb"]})
    return rows


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Benchmark", "", f"Run {results['finished']}, `{results['command']}`.", "",
             "| machine | |", "| --- | --- |",
             f"| CPU | {m['cpu']} |", f"| cores (logical) | {m['cores']} |", f"| torch threads | {m['torch_threads']} |",
             f"| memory | {m['memory_gb']} GB |", f"| GPU | {m['gpu'] or 'none'} |",
             f"| torch / torchvision / timm | {m['torch']} / {m['torchvision']} / {m['timm']} |",
             f"| onnxruntime / gradio / python | {m['onnxruntime']} / {m['gradio']} / {m['python']} |",
             f"| load average at start / end | {m['load_average_at_start']} / {m['load_average_at_end']} |",
             f"| weights | {results['weights']} |", f"| model input size | {results['input_size']} px |", ""]
    if max(m["load_average_at_start"][0], m["load_average_at_end"][0]) > 0.5 * m["cores"]:
        lines += ["**The machine was busy during this run: absolute times are inflated; the side-by-side ratios hold better.**", ""]
    rows = checks(results)
    if rows:
        lines += ["## Targets", "", "| what | value | target | |", "| --- | ---: | --- | --- |"]
        lines += [f"| {r['what']} | {r['value']} | {r['target']} | {'pass' if r['ok'] else 'FAIL'} |" for r in rows]
        lines.append("")
    for lat in (results.get("latency") or {}).values():
        lines += [f"## Single image, {lat['photo']} (ms)", "", "| path | p50 | p95 |", "| --- | ---: | ---: |"]
        names = {"predict": f"clf.predict ({lat['runner']})", "predict_eager": "clf.predict (eager module)",
                 "timm_224_baseline": "timm eager at 224 + torchvision resize/normalize", "explain": "clf.explain (Grad-CAM)"}
        lines += [f"| {label} | {lat[k]['p50_ms']} | {lat[k]['p95_ms']} |" for k, label in names.items()]
        lines += ["", (f"clf.predict / baseline: {lat['ratio_predict_to_baseline']}; "
                       f"clf.predict / clf.predict on eager: {lat['ratio_predict_to_predict_eager']}"), ""]
    thr = results.get("throughput")
    if thr:
        lines += [f"## Batch of {thr['batch']} photos", "", "| path | images/s | p50 ms |", "| --- | ---: | ---: |"]
        lines += [f"| clf.{k} | {thr[k]['images_per_s']} | {thr[k]['p50_ms']} |" for k in ("predict_batch", "predict_batch_eager")]
        lines.append("")
    cli = results.get("cli")
    if cli:
        lines += [f"## Batch predictions CLI, {cli['images']} photos, batch {cli['batch']}", "", "| path | images/s |",
                  "| --- | ---: |", f"| clf.predict_batch on the files | {cli['predict_batch_images_per_s']} |",
                  f"| `python -m model.predict` loop (list, read, check, predict, write the CSV) | {cli['cli_images_per_s']} |",
                  f"| the whole command in a fresh process ({cli['command_s']} s, start-up included) | {cli['command_images_per_s']} |",
                  "", f"CLI loop / predict_batch: {cli['ratio']} (fastest of {cli['rounds']} interleaved rounds each).", ""]
    alt = results.get("alternatives")
    if alt:
        b = results["batch"]
        lines += ["## Inference paths tried (model only, random input)", "",
                  f"| path | set-up s | batch 1 p50 ms | / eager | batch {b} images/s | max difference |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in alt.items():
            if "error" in r:
                lines.append(f"| {name} | failed: {r['error'][:80]} | | | | |")
            else:
                lines.append(f"| {name} | {r['setup_s']} | {r['batch_1']['p50_ms']} | {r['ratio_to_eager_batch_1']} | "
                             f"{r[f'images_per_s_batch_{b}']} | {r['max_difference']:.1e} |")
        lines += ["", "max difference: largest |fast - eager| of features and logits, relative to max(1, |eager|).", ""]
    cold = results.get("cold_start")
    if cold:
        lines += ["## Cold start (fresh process)", ""]
        if "error" in cold:
            lines += ["```", cold["error"], "```", ""]
        else:
            lines += ["| path | to first answer s | interpreter | import | load | first predict | peak RSS MB |",
                      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
            for label in ("fast", "eager_fallback"):
                for r in cold[label]["runs"]:
                    lines.append(f"| {r['runner']} | {r['to_first_answer_s']} | {r['interpreter_s']} | {r['import_s']} | "
                                 f"{r['load_s']} | {r['first_predict_s']} | {r['peak_rss_mb']} |")
            lines += ["", cold["note"] + ".", ""]
    a = results.get("app")
    if a:
        lines += ["## The app end to end (photo + age, sex, site; Grad-CAM heatmap included)", ""]
        if "app_web" in a:
            lines += [f"app.py up in {a['up_s']} s, first answer at {a['to_first_answer_s']} s, peak RSS {a['peak_rss_mb']} MB.", "",
                      "| client | app.py p50 ms | p95 ms | do-nothing Gradio app p50 ms | p95 ms |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            for client, label in (("web", "the web page's protocol (HTTP upload, queue, server-sent events)"),
                                  ("gradio_client", "gradio_client")):
                r, n = a[f"app_{client}"], a[f"noop_{client}"]
                lines.append(f"| {label} | {r['p50_ms']} | {r['p95_ms']} | {n['p50_ms']} | {n['p95_ms']} |")
            lines += ["", "The do-nothing app has the same inputs and outputs and returns at once: its times are what "
                      "Gradio and the client cost by themselves.", ""]
        else:
            lines += ["```", a.get("error") or a.get("skipped"), "```", ""]
    c = results.get("cuda")
    if c:
        lines += [f"## GPU: {c['device']}", "", "| precision | p50 ms | p95 ms | images/s |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {k} | {c[k]['latency']['p50_ms']} | {c[k]['latency']['p95_ms']} | {c[k]['images_per_s']} |"
                  for k in ("float32", "autocast_float16")]
        lines.append("")
    return "\n".join(lines)


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
    p.add_argument("--with-compile", action="store_true", help="also try torch.compile (minutes of compiling on 2 cores)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p


def resized_weights(weights: Path, size: int, folder: Path) -> Path:
    """A weights folder like `weights` whose config.json says input size `size` (the network is fully convolutional)."""
    for f in weights.iterdir():
        if f.name != "config.json":
            (folder / f.name).symlink_to(f.resolve())
    config = read_config(weights)
    config["preprocessing"]["input_size"] = size
    write_config(folder, config)
    return folder


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
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS)
    if unknown:
        sys.exit(f"--skip: unknown part(s) {', '.join(sorted(unknown))}; the parts are {', '.join(PARTS)}.")
    results = {"command": " ".join(["python", "benchmarks/benchmark.py", *sys.argv[1:]]), "machine": machine(),
               "batch": args.batch}
    model, config, ood = load_model(weights)
    results["input_size"] = config["preprocessing"]["input_size"]
    results["weights"] = f"{args.weights.resolve()} (sha256 {config.get('weights_sha256', '?')[:12]}), input size from {size_from}"
    clf = Classifier(model, config, ood, device="cpu")

    def part(name, fn):
        if name in skip:
            return
        print(f"{name}...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[name] = fn()
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    part("latency", lambda: latencies(clf, args.image, args.runs, args.warmup))
    part("throughput", lambda: throughput(clf, args.batch, args.batches))
    part("cli", lambda: cli_throughput(clf, weights, args.cli_images, args.batch, 2 if args.quick else 3))
    part("alternatives", lambda: alternatives(clf.model, results["input_size"], args.runs, args.batch, args.with_compile))
    part("cold_start", lambda: cold_start(weights, args.image, args.cold_runs, args.batch))
    part("app", lambda: app(weights, args.image, args.app_requests))
    if torch.cuda.is_available():
        part("cuda", lambda: cuda(weights, args.image, args.runs, args.batch))
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["peak_rss_mb_this_process"] = round(peak_rss_mb(os.getpid()))
    results["checks"] = checks(results)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "benchmark.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
