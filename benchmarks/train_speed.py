"""Training images/s on this machine: the data pipeline (cached uint8 -> augmented tensor) and the training
step (forward, backward, AdamW) timed apart, at several input sizes and memory layouts; with --compile, also
the channels-last step through torch.compile (the first step, which compiles, is timed apart).

    python -m benchmarks.train_speed --sizes 160 192 224 --threads 2 [--compile]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from model.image import train_transform
from model.network import ModelArgs, SkinLesionNet


def step_speed(model, size: int, batch: int, steps: int, channels_last: bool, compile_: bool = False,
               first: dict | None = None) -> float:
    """Training images/s over `steps` steps after a first, untimed one (its seconds go to first["s"])."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model = model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    forward = torch.compile(model) if compile_ else model
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    meta, y = torch.randn(batch, 16), torch.randint(0, 4, (batch,))
    model.train()
    t0 = time.perf_counter()
    for i in range(steps + 1):
        if i == 1:
            if first is not None:
                first["s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
        loss = F.cross_entropy(forward(x, meta), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def data_speed(size: int, n: int) -> float:
    pre = {"input_size": size, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bicubic"}
    tf = train_transform(pre)
    images = torch.randint(0, 255, (16, 3, max(size, 224), max(size, 224)), dtype=torch.uint8)
    t0 = time.perf_counter()
    for i in range(n):
        tf(images[i % 16])
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 224])
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time the channels-last step under torch.compile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SkinLesionNet(ModelArgs(photo_types=2))
    rows = []
    for size in args.sizes:
        row = {"size": size, "data_images_per_s": round(data_speed(size, 200), 1)}
        for cl in (False, True):
            row["step_images_per_s" + ("_channels_last" if cl else "")] = round(
                step_speed(model, size, args.batch, args.steps, cl), 1)
        if args.compile:
            first = {}
            row["step_images_per_s_compiled"] = round(
                step_speed(model, size, args.batch, args.steps, True, compile_=True, first=first), 1)
            row["compile_s"] = first["s"]
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
