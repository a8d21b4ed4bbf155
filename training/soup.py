"""A network on the straight line between two: (1 - alpha) x the start + alpha x a run fine-tuned from it.

    python -m training.soup --start weights --run runs/long5 --alpha 0.5 --output runs/soup50
    python -m training.calibrate --run runs/soup50 --no-test

For a fine-tune that stays in its start's basin, the networks in between often keep both ends' strengths and
stand a change of collection better than either end (WiSE-FT, Wortsman et al. 2022). Every tensor is
interpolated, batch-norm statistics included; a tensor only the run has (a head the start lacks) is kept as the
run has it. The output is a run folder (best/, and the run's args.json, split.csv, summary.csv, command.txt) that
`training.calibrate` finalizes like any other; its record says how it was made.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from model.checkpoint import load_model, read_record, save_weights
from training.calibrate import COMMAND_FILE

RUN_FILES = ("args.json", "split.csv", "summary.csv", "resumes.jsonl")


def interpolate(start: dict, end: dict, alpha: float) -> dict:
    """(1 - alpha) x start + alpha x end for every floating-point tensor of `end`; counters and tensors that
    `start` lacks come from `end`."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    out = {}
    for name, tensor in end.items():
        other = start.get(name)
        if other is not None and other.shape != tensor.shape:
            raise ValueError(f"{name} is {tuple(other.shape)} in the start and {tuple(tensor.shape)} in the run: "
                             "the two networks are not the same architecture")
        blend = other is not None and tensor.is_floating_point()
        out[name] = torch.lerp(other.to(tensor.dtype), tensor, alpha) if blend else tensor.clone()
    return out


def soup(start: Path, run: Path, alpha: float, output: Path) -> Path:
    start_model, start_config, _ = load_model(start)
    model, config, _ = load_model(run / "best")
    if start_config["architecture"].get("backbone") != config["architecture"].get("backbone"):
        raise SystemExit(f"{start} is a {start_config['architecture'].get('backbone')}, {run} a "
                         f"{config['architecture'].get('backbone')}: only networks of one architecture mix")
    if start_config["metadata"] != config["metadata"]:
        raise SystemExit(f"{start} and {run} encode the metadata differently: their metadata layers do not mix")
    model.load_state_dict(interpolate(start_model.state_dict(), model.state_dict(), alpha))
    output.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copyfile(run / name, output / name)
    record = read_record(run / "best")
    # the run's validation figures are its best epoch's, not this network's: kept under the interpolation
    training = {"interpolation": {"start": str(start), "run": str(run), "alpha": alpha,
                                  "start_command": read_record(start).get("training", {}).get("command"),
                                  "run_best_epoch": record.get("training", {})}}
    save_weights(model, output / "best", {**config, **record, "training": training})
    command = f"python -m training.soup --start {start} --run {run} --alpha {alpha} --output {output}"
    if (run / COMMAND_FILE).is_file():
        command = f"{(run / COMMAND_FILE).read_text().strip()}; {command}"
    (output / COMMAND_FILE).write_text(command + "\n")
    print(f"{1 - alpha:g} x {start} + {alpha:g} x {run / 'best'} -> {output / 'best'}")
    return output


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", required=True, help="the weights folder the run was fine-tuned from")
    p.add_argument("--run", required=True, help="run folder of training.train (best/, split.csv, args.json)")
    p.add_argument("--alpha", type=float, required=True, help="0: the start, 1: the run's best epoch")
    p.add_argument("--output", required=True, help="the new run folder")
    return p


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    try:
        soup(Path(args.start), Path(args.run), args.alpha, Path(args.output))
    except ValueError as e:
        raise SystemExit(str(e)) from None
