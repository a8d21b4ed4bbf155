"""The model alone through each inference path tried for model/runtime.py (eager, channels_last, BatchNorm folded,
TorchScript freeze, ONNX Runtime, torch.compile on request): set-up time, batch 1 and batch N latency, and how far
each path's answers are from eager's."""
from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from benchmarks.timing import interleaved, summary
from model.runtime import EagerRunner, OnnxRunner, export_onnx, max_difference

# name -> (build the runner, its inputs by batch size)
Candidates = dict[str, tuple[Callable, dict[int, tuple[torch.Tensor, torch.Tensor]]]]


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


def candidates(model: nn.Module, size: int, batch: int, with_compile: bool) -> Candidates:
    """Every path to try, with seeded random inputs of batch 1 and `batch` (channels_last for the paths that
    want them)."""
    meta_dim = model.args.meta_dim
    g = torch.Generator().manual_seed(0)
    inputs = {b: (torch.randn(b, 3, size, size, generator=g), torch.randn(b, meta_dim, generator=g))
              for b in (1, batch)}
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

    def channels_last_copy(m: nn.Module) -> nn.Module:
        return m.to(memory_format=torch.channels_last)

    paths = {
        "eager": (lambda: EagerRunner(model), inputs),
        "eager channels_last": (lambda: EagerRunner(channels_last_copy(copy.deepcopy(model))), channels_last),
        "BatchNorm folded": (lambda: EagerRunner(fold_batchnorm(model)), inputs),
        "BatchNorm folded + channels_last": (
            lambda: EagerRunner(channels_last_copy(fold_batchnorm(model))), channels_last),
        "TorchScript trace + freeze": (traced, inputs),
        f"ONNX Runtime, {threads} thread{'s' if threads > 1 else ''} (kept)": (
            lambda: OnnxRunner(export_onnx(model, size, meta_dim)), inputs),
        "ONNX Runtime, 1 thread": (lambda: OnnxRunner(export_onnx(model, size, meta_dim), threads=1), inputs),
    }
    if with_compile:
        paths["torch.compile (inductor)"] = (compiled, inputs)
    return paths


def build(paths: Candidates) -> tuple[dict, dict, dict]:
    """(runners, set-up seconds, errors) by name; a path that fails to build is reported, not fatal."""
    runners, setup, errors = {}, {}, {}
    for name, (build_runner, _) in paths.items():
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runners[name] = build_runner()
            setup[name] = round(time.perf_counter() - start, 2)
        except Exception as e:
            errors[name] = f"{type(e).__name__}: {e}"[:300]
    return runners, setup, errors


def difference(fast: tuple, reference: tuple) -> float:
    """max_difference over the outputs the fast path gives (TorchScript gives the logits only)."""
    pairs = [(f, r) for f, r in zip(fast, reference, strict=True) if f is not None]
    return float(max_difference(*zip(*pairs, strict=True)))


def alternatives(model: nn.Module, size: int, runs: int, batch: int, with_compile: bool) -> dict:
    paths = candidates(model, size, batch, with_compile)
    runners, setup, errors = build(paths)
    out = {}
    with torch.inference_mode():
        reference = EagerRunner(model)(*paths["eager"][1][batch])
        for b, rounds in ((1, runs), (batch, max(2, runs // 10))):
            times = interleaved({name: partial(runner, *paths[name][1][b]) for name, runner in runners.items()},
                                rounds, 1)
            for name, t in times.items():
                out.setdefault(name, {"setup_s": setup[name]})[f"batch_{b}"] = summary(t)
        for name, runner in runners.items():
            out[name]["max_difference"] = difference(runner(*paths[name][1][batch]), reference)
    base = out["eager"]
    for r in out.values():
        r["ratio_to_eager_batch_1"] = round(r["batch_1"]["p50_ms"] / base["batch_1"]["p50_ms"], 3)
        r[f"images_per_s_batch_{batch}"] = round(batch / (r[f"batch_{batch}"]["p50_ms"] / 1000), 1)
    for name, e in errors.items():
        out[name] = {"error": e}
    return out
