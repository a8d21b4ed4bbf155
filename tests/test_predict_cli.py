"""python -m model.predict: a folder or a CSV in, one CSV row per photo out. Bad files become rows with their
error, a stopped run resumes without writing a photo twice, and two processes under torch.distributed give
the single-process CSV. Runs against the shipped weights and never looks at which class wins."""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from broken_weights import BREAKAGES, broken_weights
from conftest import EXAMPLES, ROOT, free_port
from PIL import Image

from model import predict

PROBS = ["prob_melanoma", "prob_other_cancer", "prob_benign", "prob_no_lesion"]
RISKS = {"high", "moderate", "low", "uncertain", "out_of_scope"}
PHOTOS = sorted(EXAMPLES.glob("*.jpg"))


@pytest.fixture(autouse=True)
def shipped_classifier(monkeypatch, shipped):
    """In this process the CLI reuses the session's classifier instead of loading the weights again."""
    monkeypatch.setattr(predict, "load_classifier", lambda weights, device: shipped)


def cli(*argv: str) -> pd.DataFrame:
    args = predict.get_args_parser().parse_args([str(a) for a in argv])
    predict.main(args)
    return read(args.out)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def photo_folder(folder: Path) -> Path:
    """Good photos (one nested two levels down, one PNG), a truncated JPEG, an empty file, a text file and
    a hidden file."""
    (folder / "visit 2" / "close-ups").mkdir(parents=True)
    for i, src in enumerate(PHOTOS[:4]):
        shutil.copy(src, folder / f"p{i}.jpg")
    Image.open(PHOTOS[4]).save(folder / "visit 2" / "close-ups" / "spot.png")
    (folder / "visit 2" / "broken.jpg").write_bytes(PHOTOS[5].read_bytes()[:400])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("left arm, 3 mm, itches\n")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return folder


BAD = {"visit 2/broken.jpg": "damaged", "empty.jpg": "empty", "notes.txt": "not an image"}


def check_good_row(row, clf, path, age=None, sex=None, site=None):
    """Probabilities of a distribution, label its top class (empty when refused, with the reason beside it), the
    same answer as clf.predict on that photo."""
    probs = [float(row[c]) for c in PROBS]
    assert math.isclose(sum(probs), 1, abs_tol=1e-4) and all(0 <= p <= 1 for p in probs)
    assert row["risk"] in RISKS and row["in_scope"] in {"True", "False"} and row["error"] == ""
    assert row["label"] == (clf.classes[probs.index(max(probs))] if row["in_scope"] == "True" else "")
    assert row["photo_type"] in {"", *clf.photo_types}
    ref = clf.predict(path, age, sex, site)
    assert row["refusal_reason"] == (ref.refusal_reason or "") and row["in_scope"] == str(ref.in_scope)
    assert all(math.isclose(p, ref.probabilities[c], abs_tol=1e-4)
               for p, c in zip(probs, clf.classes, strict=True)), row["file"]
    assert row["risk"] == ref.risk and row["warnings"] == "; ".join(ref.warnings)


def test_folder_recursive_with_bad_files(tmp_path, shipped):
    folder = photo_folder(tmp_path / "photos")
    rows = cli(folder, "--out", tmp_path / "predictions.csv", "--batch", "3")
    assert list(rows.columns) == ["file", *PROBS, "label", "risk", "in_scope", "refusal_reason", "photo_type",
                                  "warnings", "error"]
    expected = sorted([f"p{i}.jpg" for i in range(4)] + ["visit 2/close-ups/spot.png", *BAD])
    assert rows["file"].tolist() == expected   # one row per file, sorted, hidden files left out
    for row in rows.to_dict("records"):
        if row["file"] in BAD:
            assert BAD[row["file"]] in row["error"].lower(), row
            assert all(row[c] == "" for c in PROBS + ["label", "risk", "refusal_reason"])
            assert str(tmp_path) not in row["error"]
        else:
            check_good_row(row, shipped, folder / row["file"])


def test_a_refused_picture_keeps_its_probabilities_but_no_label(tmp_path, shipped):
    """A filter on the label counts answers only: a picture that is not skin has the reason instead."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (300, 300), (200, 150, 120)).save(folder / "flat.png")
    shutil.copy(PHOTOS[0], folder / "spot.jpg")
    rows = cli(folder, "--out", tmp_path / "p.csv").set_index("file")
    flat = rows.loc["flat.png"]
    assert flat["risk"] == "out_of_scope" and flat["in_scope"] == "False"
    assert flat["label"] == "" and flat["refusal_reason"] == "flat"
    assert math.isclose(sum(float(flat[c]) for c in PROBS), 1, abs_tol=1e-4)
    for name, row in rows.iterrows():
        check_good_row(row, shipped, folder / name)


def test_csv_with_metadata_columns(tmp_path, shipped):
    (tmp_path / "img").mkdir()
    for src in PHOTOS[:3]:
        shutil.copy(src, tmp_path / "img" / src.name)
    names = [f"img/{p.name}" for p in PHOTOS[:3]]
    table = pd.DataFrame([
        {"image": names[2], "patient_age": "71", "gender": "male", "body_site": "back", "note": "x"},
        {"image": names[0], "patient_age": "", "gender": "", "body_site": "", "note": ""},
        {"image": names[1], "patient_age": "abc", "gender": "female", "body_site": "face", "note": ""},
        {"image": names[1], "patient_age": "35", "gender": "female", "body_site": "the moon", "note": ""},
        {"image": "img/gone.jpg", "patient_age": "50", "gender": "", "body_site": "", "note": ""},
        {"image": names[1], "patient_age": "35", "gender": "Female", "body_site": "FACE", "note": ""},
    ])
    table.to_csv(tmp_path / "list.csv", index=False)
    rows = cli(tmp_path / "list.csv", "--out", tmp_path / "out" / "p.csv", "--batch", "4", "--file-col", "image",
               "--age-col", "patient_age", "--sex-col", "gender", "--site-col", "body_site")
    assert rows["file"].tolist() == table["image"].tolist()   # the CSV's order, one row per CSV row
    for row, meta in zip(rows.to_dict("records"), table.to_dict("records"), strict=True):
        if meta["patient_age"] == "abc":
            assert "Age must be a number" in row["error"] and row["prob_melanoma"] == ""
        elif meta["body_site"] == "the moon":
            assert "Unknown body site" in row["error"]
        elif meta["image"].endswith("gone.jpg"):
            assert row["error"] == "No such file: img/gone.jpg."
        else:
            check_good_row(row, shipped, tmp_path / meta["image"], meta["patient_age"], meta["gender"],
                           meta["body_site"])
    # the metadata was read: the same photo with and without it gets different probabilities
    first = rows.iloc[0][PROBS].astype(float).tolist()
    bare = shipped.predict(tmp_path / names[2]).probabilities
    assert max(abs(a - bare[c]) for a, c in zip(first, shipped.classes, strict=True)) > 1e-4


@pytest.mark.parametrize("argv, message", [
    (["--age-col", "years"], "no column 'years'"),
    (["--file-col", "path"], "no column 'path'"),
], ids=["missing-metadata-column", "missing-file-column"])
def test_csv_column_that_is_not_there(tmp_path, argv, message):
    pd.DataFrame({"file": ["a.jpg"], "age": ["3"]}).to_csv(tmp_path / "list.csv", index=False)
    with pytest.raises(SystemExit, match=message):
        cli(tmp_path / "list.csv", "--out", tmp_path / "p.csv", *argv)


def test_resume_skips_the_rows_already_written(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    full = cli(folder, "--out", tmp_path / "full.csv", "--batch", "2")
    # An interrupted run: 3 rows written (marked, so a recomputed row would show), then a line cut short.
    out = tmp_path / "resumed.csv"
    partial = full.iloc[:3].copy()
    partial["warnings"] = "written before the stop"
    partial.to_csv(out, index=False)
    with open(out, "a") as f:
        f.write(full.iloc[3]["file"] + ",0.12")
    rows = cli(folder, "--out", out, "--batch", "2")
    assert rows["file"].tolist() == full["file"].tolist()   # every file once, in order
    assert (rows["warnings"].iloc[:3] == "written before the stop").all()
    pd.testing.assert_frame_equal(rows.iloc[3:].reset_index(drop=True), full.iloc[3:].reset_index(drop=True))
    assert cli(folder, "--out", out).equals(rows)   # a third run has nothing left to do


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_resume_after_a_kill(tmp_path, stop):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(60):
        shutil.copy(PHOTOS[i % len(PHOTOS)], folder / f"{i:03d}.jpg")
    out = tmp_path / "p.csv"
    # The run waits 10 minutes after each batch it writes: the signal lands after the first batch, however fast
    # or slow the machine is.
    proc = subprocess.Popen([sys.executable, "-m", "model.predict", str(folder), "--out", str(out), "--batch", "2"],
                            cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", SKINLESION_PREDICT_PAUSE_S="600"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # a shell's background job ignores Ctrl-C, and so would the child: give it the default
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 3):
        time.sleep(0.05)
    proc.send_signal(stop)
    stderr = proc.communicate()[1]
    if stop == signal.SIGINT:
        assert "Stopped." in stderr and "Traceback" not in stderr, stderr[-2000:]
    before = out.read_bytes()
    written = before[:before.rfind(b"\n") + 1].count(b"\n") - 1
    assert written == 2, f"the run was stopped elsewhere than after its first batch: {stderr[-2000:]}"
    rows = cli(folder, "--out", out)
    assert rows["file"].tolist() == [f"{i:03d}.jpg" for i in range(60)] and (rows["error"] == "").all()
    # the rows of the killed run kept as they were
    assert out.read_bytes().startswith(before[:before.rfind(b"\n") + 1])


def test_two_processes_give_the_single_process_csv(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    single = cli(folder, "--out", tmp_path / "single.csv", "--batch", "2")
    out = tmp_path / "two.csv"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), "-m", "model.predict", str(folder), "--out", str(out),
                           "--batch", "2", "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    two = read(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "single.csv", "two.csv"]   # parts merged away
    assert two.drop(columns=PROBS).equals(single.drop(columns=PROBS))
    good = single["error"] == ""
    assert good.sum() == 5
    diff = (two.loc[good, PROBS].astype(float) - single.loc[good, PROBS].astype(float)).abs().to_numpy().max()
    assert diff < 1e-4


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_broken_weights_folder_is_a_clean_error(tmp_path, monkeypatch, breakage):
    from model import load_classifier
    monkeypatch.setattr(predict, "load_classifier", load_classifier)  # the real loading, not the session's copy
    weights = broken_weights(tmp_path / "weights", breakage)
    with pytest.raises(SystemExit, match=str(weights)):
        cli(EXAMPLES, "--out", tmp_path / "p.csv", "--weights", weights)


def test_a_broken_weights_folder_stops_the_command_with_its_message_and_no_traceback(tmp_path):
    weights = broken_weights(tmp_path / "weights", "not_json")
    done = subprocess.run([sys.executable, "-m", "model.predict", str(EXAMPLES), "--out", str(tmp_path / "p.csv"),
                           "--weights", str(weights)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "is not valid JSON" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "p.csv").exists()
