"""A network on the straight line between two: (1 - alpha) x the start + alpha x a run fine-tuned from it.

    python -m training.soup --start weights --run runs/long5 --alpha 0.5 --output runs/soup50
    python -m training.calibrate --run runs/soup50 --no-test

With several runs (fine-tunes of the same start, e.g. other seeds), their best epochs are first averaged,
tensor by tensor (a uniform model soup, Wortsman et al. 2022), and the average takes the run's place:

    python -m training.soup --start weights --run runs/a runs/b --alpha 0.7 --output runs/soup70

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


def average(states: list[dict]) -> dict:
    """The tensor-by-tensor mean of several state dicts of one architecture; counters come from the first."""
    first = states[0]
    for other in states[1:]:
        if other.keys() != first.keys() or any(other[k].shape != v.shape for k, v in first.items()):
            raise ValueError("the runs are not the same architecture: their weights do not average")
    return {name: torch.stack([s[name] for s in states]).mean(0) if tensor.is_floating_point() else tensor.clone()
            for name, tensor in first.items()}


def _check_mixable(a: Path, a_config: dict, b: Path, b_config: dict):
    if a_config["architecture"].get("backbone") != b_config["architecture"].get("backbone"):
        raise SystemExit(f"{a} is a {a_config['architecture'].get('backbone')}, {b} a "
                         f"{b_config['architecture'].get('backbone')}: only networks of one architecture mix")
    if a_config["metadata"] != b_config["metadata"]:
        raise SystemExit(f"{a} and {b} encode the metadata differently: their metadata layers do not mix")


def soup(start: Path, runs: Path | list[Path], alpha: float, output: Path) -> Path:
    runs = [runs] if isinstance(runs, Path) else list(runs)
    run = runs[0]  # its split, args and curve go with the output
    start_model, start_config, _ = load_model(start)
    model, config, _ = load_model(run / "best")
    _check_mixable(start, start_config, run, config)
    states = [model.state_dict()]
    for other in runs[1:]:
        other_model, other_config, _ = load_model(other / "best")
        _check_mixable(run, config, other, other_config)
        if (other / "split.csv").is_file() and (run / "split.csv").is_file() \
                and (other / "split.csv").read_bytes() != (run / "split.csv").read_bytes():
            raise SystemExit(f"{run} and {other} were trained on different splits: their average has no "
                             "honest validation split")
        states.append(other_model.state_dict())
    end = average(states) if len(states) > 1 else states[0]
    model.load_state_dict(interpolate(start_model.state_dict(), end, alpha))
    output.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copyfile(run / name, output / name)
    record = read_record(run / "best")
    # the runs' validation figures are their best epochs', not this network's: kept under the interpolation
    interpolation = {"start": str(start), "run": str(run), "alpha": alpha,
                     "start_command": read_record(start).get("training", {}).get("command"),
                     "run_best_epoch": record.get("training", {})}
    if len(runs) > 1:
        interpolation["runs_averaged"] = [str(r) for r in runs]
        interpolation["runs_best_epochs"] = [read_record(r / "best").get("training", {}) for r in runs]
    save_weights(model, output / "best", {**config, **record, "training": {"interpolation": interpolation}})
    run_list = " ".join(str(r) for r in runs)
    command = f"python -m training.soup --start {start} --run {run_list} --alpha {alpha} --output {output}"
    commands = [(r / COMMAND_FILE).read_text().strip() for r in runs if (r / COMMAND_FILE).is_file()]
    (output / COMMAND_FILE).write_text("; ".join([*commands, command]) + "\n")
    mean = f"the mean of {run_list}" if len(runs) > 1 else str(run / "best")
    print(f"{1 - alpha:g} x {start} + {alpha:g} x {mean} -> {output / 'best'}")
    return output


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", required=True, help="the weights folder the run was fine-tuned from")
    p.add_argument("--run", required=True, nargs="+",
                   help="run folder(s) of training.train (best/, split.csv, args.json); several are averaged first")
    p.add_argument("--alpha", type=float, required=True, help="0: the start, 1: the run's best epoch")
    p.add_argument("--output", required=True, help="the new run folder")
    return p


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    try:
        soup(Path(args.start), [Path(r) for r in args.run], args.alpha, Path(args.output))
    except ValueError as e:
        raise SystemExit(str(e)) from None
