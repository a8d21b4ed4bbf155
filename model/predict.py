"""Predictions for a folder of photos, or a CSV that lists them, written to a CSV: the app's model without the app.

    python -m model.predict photos/ --out predictions.csv
    python -m model.predict photos.csv --out predictions.csv --file-col file --age-col age --sex-col sex --site-col site
    torchrun --nproc_per_node 4 -m model.predict photos/ --out predictions.csv    # 4 GPUs, or 4 processes on CPU

A folder is read recursively (hidden files and folders left out); a CSV names one photo per row, relative to
the CSV's folder, with optional age, sex and site columns. The output has one row per photo, in the input's
order: file, the four probabilities, label, risk, in_scope, refusal_reason, photo_type, warnings and error.
A photo the model refuses (not a close-up of skin: risk out_of_scope) keeps its probabilities, but its label is
left empty, so that a filter on the label counts only answers, and refusal_reason says why (a code of
model.ood.REFUSALS). A photo that cannot be read, or a row with an impossible age, sex or site, gets its
message in `error` and empty probabilities; the run goes on.

Rows are appended and flushed after every batch, so a run that is stopped and started again with the same
--out skips the photos already written and loses at most one batch. Under torchrun each process takes every
N-th photo still to do and appends to OUT.part<rank>; when all are done, rank 0 merges the parts into OUT.
The folder or CSV and --out must be on a file system that all the processes see.

SKINLESION_PREDICT_PAUSE_S=S waits S seconds after each batch is written: the tests stop a run there, midway.
"""
from __future__ import annotations

import argparse
import csv
import glob
import io
import os
import re
import sys
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from .checkpoint import DEFAULT_WEIGHTS, CheckpointError
from .classifier import Classifier, Prediction, load_classifier, resolve_device
from .image import open_image


@dataclass
class Item:
    file: str                   # as the output names it: relative to the folder, or as written in the CSV
    path: Path
    age: str | None = None
    sex: str | None = None
    site: str | None = None


# ---- inputs ------------------------------------------------------------------------------------------------

def list_folder(folder: Path) -> list[Item]:
    files = (p for p in folder.rglob("*") if p.is_file())
    names = sorted(p.relative_to(folder).as_posix() for p in files)
    return [Item(name, folder / name) for name in names if not any(part.startswith(".") for part in name.split("/"))]


def read_csv_items(table: Path, file_col: str, age_col: str | None, sex_col: str | None,
                   site_col: str | None) -> list[Item]:
    """Rows of the CSV. A metadata column named on the command line must exist; the default names may be absent."""
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:  # -sig: the byte-order mark Excel writes
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames or [], list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise SystemExit(f"{table.name} is not a readable CSV file (UTF-8 text): {e}.") from None
    columns = {}
    for key, name, default in (("file", file_col, "file"), ("age", age_col, "age"), ("sex", sex_col, "sex"),
                               ("site", site_col, "site")):
        if (name or default) in header:
            columns[key] = name or default
        elif key == "file" or name:
            raise SystemExit(f"{table.name} has no column {name or default!r} "
                             f"(its columns: {', '.join(header) or 'none'}). Name the column with --{key}-col.")
    items = []
    for row in rows:
        value = (row.get(columns["file"]) or "").strip()
        meta = {key: row.get(col) for key, col in columns.items() if key != "file"}
        items.append(Item(value, table.parent / value, **meta))
    return items


def list_inputs(args) -> list[Item]:
    source = args.input
    if source.is_dir():
        return list_folder(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return read_csv_items(source, args.file_col, args.age_col, args.sex_col, args.site_col)
    raise SystemExit(f"{source} is neither a folder of photos nor a .csv file that lists them.")


# ---- one batch -----------------------------------------------------------------------------------------------

def columns(classes: list[str]) -> list[str]:
    return ["file", *[f"prob_{c}" for c in classes], "label", "risk", "in_scope", "refusal_reason", "photo_type",
            "warnings", "error"]


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_item(clf: Classifier, item: Item):
    """(image, age, sex, site), or ValueError with a message for the person who owns the file."""
    if not item.file:
        raise ValueError("No file name in this row.")
    if not item.path.is_file():
        raise ValueError(f"No such file: {item.file}.")
    meta = clf.spec.parse_age(item.age), clf.spec.parse_sex(item.sex), clf.spec.parse_site(item.site)
    try:
        image = open_image(item.path)
    except ValueError as e:  # ImageError; an OSError's text can hold the full path: show the user's own name
        raise ValueError(str(e).replace(str(item.path), item.file)) from None
    except Exception as e:  # a decoder failing in a way Pillow does not wrap: still one bad file, not a stopped run
        raise ValueError(f"This file could not be read as an image ({type(e).__name__}).") from None
    return (image, *meta)


def result_row(item: Item, p: Prediction) -> dict:
    return {"file": item.file, **{f"prob_{c}": f"{v:.6f}" for c, v in p.probabilities.items()},
            "label": p.label if p.in_scope else "", "risk": p.risk, "in_scope": p.in_scope,
            "refusal_reason": p.refusal_reason or "", "photo_type": p.photo_type or "",
            "warnings": "; ".join(one_line(w) for w in p.warnings), "error": ""}


def predict_rows(clf: Classifier, items: list[Item]) -> list[dict]:
    """Output rows in the order of `items`. Bad files are weeded out first: predict_batch refuses a whole batch."""
    rows, good = [None] * len(items), []
    for i, item in enumerate(items):
        try:
            good.append((i, *read_item(clf, item)))
        except ValueError as e:
            rows[i] = {"file": item.file, "error": one_line(e)}
    if good:
        index, images, ages, sexes, sites = zip(*good, strict=True)
        for i, p in zip(index, clf.predict_batch(list(images), ages, sexes, sites), strict=True):
            rows[i] = result_row(items[i], p)
    return rows


# ---- the output file: resume, parts, merge --------------------------------------------------------------------

def read_rows(path: Path, header: list[str]) -> tuple[list[dict], int]:
    """The rows of an earlier run and the byte length they fill. A last line cut short by a kill is left out."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    size = data.rfind(b"\n") + 1
    if size == 0:
        return [], 0
    reader = csv.DictReader(io.StringIO(data[:size].decode("utf-8", errors="replace")))
    if reader.fieldnames != header:
        raise SystemExit(f"{path.name} exists and does not hold predictions of these weights (its columns differ). "
                         "Choose another --out, or delete the file to start again.")
    return list(reader), size


def part_files(out: Path) -> list[Path]:
    pattern = re.compile(re.escape(out.name) + r"\.part\d+")
    return sorted(p for p in out.parent.glob(glob.escape(out.name) + ".part*") if pattern.fullmatch(p.name))


def append(path: Path, keep: int, header: list[str], batches):
    """Append the rows of each batch after the first `keep` bytes of `path`, flushed batch by batch."""
    with open(path, "r+" if keep else "w", newline="", encoding="utf-8") as f:
        f.truncate(keep)
        f.seek(keep)
        writer = csv.DictWriter(f, header, lineterminator="\n")
        if not keep:
            writer.writeheader()
        for rows in batches:
            writer.writerows(rows)
            f.flush()


def merge(out: Path, items: list[Item], header: list[str]) -> list[dict]:
    """OUT and its parts -> OUT, one row per input in the input's order; rows of files no longer in the input last."""
    parts = part_files(out)
    found = defaultdict(deque)
    for path in [out, *parts]:
        for row in read_rows(path, header)[0]:
            found[row["file"]].append(row)
    rows = [found[it.file].popleft() for it in items if found[it.file]]
    rows += [row for queue in found.values() for row in queue]
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out)
    for path in parts:
        path.unlink()
    return rows


# ---- the run -----------------------------------------------------------------------------------------------------

def run(clf: Classifier, items: list[Item], out: Path, batch: int, rank: int = 0, world: int = 1) -> list[dict] | None:
    """Predict what is not yet in `out` (or its parts); this rank's share goes to its part. Rank 0 returns the rows."""
    header = columns(clf.classes)
    mine = out if world == 1 else out.with_name(f"{out.name}.part{rank}")
    done, keep = Counter(), 0
    for path in dict.fromkeys([out, *part_files(out), mine]):
        rows, size = read_rows(path, header)
        done.update(row["file"] for row in rows)
        if path == mine:
            keep = size
    todo = []
    for item in items:
        if done[item.file]:
            done[item.file] -= 1
        else:
            todo.append(item)
    if world > 1:
        dist.barrier()  # every rank has read the earlier rows before any rank writes
    share = todo[rank::world]
    bar = tqdm(total=len(share), unit="photo", disable=rank != 0, desc=f"rank 0 of {world}" if world > 1 else None)
    pause = float(os.environ.get("SKINLESION_PREDICT_PAUSE_S") or 0)

    def batches():
        for start in range(0, len(share), batch):
            rows = predict_rows(clf, share[start:start + batch])
            bar.update(len(rows))
            yield rows
            time.sleep(pause)  # after the batch was written (append asks for the next one once it has flushed)
    append(mine, keep, header, batches())
    bar.close()
    if world > 1:
        dist.barrier()  # all parts are complete
    if rank != 0:
        return None
    rows = merge(out, items, header)
    errors = sum(bool(row["error"]) for row in rows)
    print(f"{out.name}: {len(rows)} rows, {len(items) - len(todo)} from an earlier run, {errors} with an error "
          "(see its error column).", file=sys.stderr)
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Predictions for a folder of photos, or a CSV listing them, into a CSV.")
    p.add_argument("input", type=Path, metavar="PHOTOS_DIR_OR_CSV")
    p.add_argument("--out", type=Path, required=True, help="the output CSV; run again with the same --out to resume")
    p.add_argument("--file-col", default="file", help="CSV input: the column of photo paths, relative to the CSV")
    p.add_argument("--age-col", help="CSV input: the age column (default: 'age' when there is one)")
    p.add_argument("--sex-col", help="CSV input: the sex column (default: 'sex' when there is one)")
    p.add_argument("--site-col", help="CSV input: the body-site column (default: 'site' when there is one)")
    p.add_argument("--batch", type=int, default=32, help="photos per network call")
    p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu, cuda, cuda:1 ...")
    return p


def main(args: argparse.Namespace) -> list[dict] | None:
    if args.batch < 1:
        raise SystemExit("--batch must be at least 1.")
    if args.out.is_dir():
        raise SystemExit(f"--out {args.out} is a folder; give the name of the CSV file to write.")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = resolve_device(args.device)
    if world > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    items = list_inputs(args)
    try:
        clf = load_classifier(args.weights, str(device))
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if world == 1:
        try:
            return run(clf, items, args.out, args.batch)
        except KeyboardInterrupt:
            raise SystemExit(f"\nStopped. The rows written so far are in {args.out.name}; "
                             "run the same command again to go on.") from None
    # A long timeout: ranks wait at the final barrier for the slowest one, which may take hours on a big archive.
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=24),
                            device_id=device if device.type == "cuda" else None)
    try:
        return run(clf, items, args.out, args.batch, rank, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
