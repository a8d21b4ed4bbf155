"""The training pipeline on the tiny fixture: smoke run, evaluation, split, bad rows, kill -9 + resume, DDP."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, free_port, train_args

from model import load_classifier
from model.checkpoint import read_config, read_record, write_record
from training.data import DataError, make_split, read_metadata


def test_training_produces_weights_that_load(trained_run, example_images):
    weights = trained_run / "weights"
    clf = load_classifier(weights)
    r = clf.predict(example_images["path"][0], age=50, sex="female", site="back")
    assert abs(sum(r.probabilities.values()) - 1) < 1e-5
    cfg = clf.config
    assert cfg["calibration"]["temperature"] > 0
    assert {"melanoma", "malignant", "melanoma_high", "malignant_high"} <= set(cfg["thresholds"])
    assert cfg["ood"]["threshold"] > 0 and clf.ood
    assert "metrics" not in cfg and "training" not in cfg and "method" not in cfg["ood"]  # settings only
    assert read_record(weights)["metrics"]["test"]["report"]["n"] > 0
    summary = pd.read_csv(trained_run / "summary.csv")
    assert list(summary["epoch"]) == [0] and "val_macro_auc" in summary
    assert (trained_run / "split.csv").is_file() and (trained_run / "checkpoint.pt").is_file()
    for png in ("roc.png", "confusion_matrix.png", "reliability.png", "training_curves.png"):
        assert (weights / png).stat().st_size > 1000


def test_the_cheap_checks_limits_come_from_the_train_and_validation_images(trained_run, fixture_data):
    """They learn nothing from the data, so the train images count too: a quantile of 5x as many photos."""
    from model import ood
    from model.image import open_image
    from model.quality import check
    split = pd.read_csv(trained_run / "split.csv")
    seen = split.loc[split["split"].isin(["train", "val"]), "image_id"]
    skin = [check(open_image(fixture_data / "images" / f"{i}.jpg")).skin_fraction for i in seen]
    limits = read_config(trained_run / "weights")["ood"]
    assert limits["skin_fraction_min"] == pytest.approx(np.quantile(skin, ood.SKIN_QUANTILE), rel=1e-6)
    assert limits["level"] == ood.LEVEL
    assert read_record(trained_run / "weights")["notes"]["ood"]["quantile_on_val"] == ood.QUANTILE


@pytest.fixture
def weights_without_metrics(trained_weights, tmp_path) -> Path:
    """A copy of the trained weights (the commands write into their folder) whose record has no metrics yet,
    so a figure found there afterwards was written by the command under test."""
    folder = tmp_path / "weights"
    shutil.copytree(trained_weights, folder)
    record = read_record(folder)
    del record["metrics"]
    write_record(folder, record)
    return folder


def test_evaluate_is_pure_and_its_command_writes(weights_without_metrics, fixture_data):
    from training.evaluate import evaluate, get_args_parser, main
    weights = weights_without_metrics
    before = {p.name: p.read_bytes() for p in weights.iterdir()}
    out, _ = evaluate(weights, fixture_data)
    assert {p.name: p.read_bytes() for p in weights.iterdir()} == before  # nothing written
    rep = out["report"]
    assert rep["n"] == len(pd.read_csv(weights / "split.csv").query("split == 'test'"))
    assert 0 <= rep["balanced_accuracy"] <= 1 and len(rep["confusion_matrix"]) == 4
    assert sum(map(sum, rep["confusion_matrix"])) == rep["n"]
    main(get_args_parser().parse_args(["--weights", str(weights), "--data", str(fixture_data)]))
    assert read_record(weights)["metrics"]["test"]["n"] == rep["n"]
    assert read_config(weights) == json.loads(before["config.json"])  # the settings are never rewritten


def test_metadata_ablation_command(weights_without_metrics, fixture_data):
    from training.evaluate import evaluate
    from training.metadata_ablation import ablation
    weights = weights_without_metrics
    out = ablation(weights, fixture_data)
    reference = evaluate(weights, fixture_data)[0]["metadata"]
    assert out["rows"] == reference["rows_with_metadata"] > 0
    assert out["network_with_metadata"] == reference["with_metadata"]
    assert out["network_metadata_hidden"] == reference["metadata_hidden"]
    for name in ("image_only_head", "image_and_metadata_head"):
        assert 0 <= out[name]["balanced_accuracy"] <= 1 and 0 <= out[name]["ece"] <= 1
    assert read_record(weights)["metrics"]["metadata_ablation"]["rows"] == out["rows"]


def test_model_card_comes_from_config(trained_weights, tmp_path):
    from training.model_card import card
    record = tmp_path / "old_run.json"
    record.write_text(json.dumps({"test": {"melanoma_auc": 0.4321, "malignant_auc": 0.5}}))
    text = card(trained_weights, compare=[("another run", trained_weights), ("a recorded run", record)])
    rep = read_record(trained_weights)["metrics"]["test"]["report"]
    assert "| another run |" in text and "**shipped:" in text and "**Operating points**" in text
    assert f"| {rep['melanoma_auc']:.3f} |" in text
    assert "| a recorded run | 0.432 | 0.500 | - |" in text


def test_dermoscopy_is_reported_by_collection(fixture_data, trained_weights, tmp_path):
    """With two dermoscopy collections, the test figures come per collection too, and the model card shows them."""
    from training.evaluate import evaluate, write_evaluation
    from training.model_card import card
    data, weights = tmp_path / "data", tmp_path / "weights"
    shutil.copytree(fixture_data, data)
    shutil.copytree(trained_weights, weights)
    meta = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    meta["source"] = np.where(meta["image_id"].str.endswith(("_v0", "_v1", "_v2")), "ISIC archive (test)", "HAM10000")
    meta.to_csv(data / "metadata.csv", index=False)
    results, arrays = evaluate(weights, [data])
    write_evaluation(weights, results, arrays)
    by_source = results["by_source"]
    split = pd.read_csv(weights / "split.csv").merge(meta[["image_id", "source"]])
    counts = split.loc[split["split"] == "test", "source"].str.split(" ").str[0].value_counts()
    assert {k: v["n"] for k, v in by_source.items()} == {"ISIC archive": counts["ISIC"], "HAM10000": counts["HAM10000"]}
    heading = "**Dermoscopy by collection**"
    assert heading in card(weights) and heading not in card(trained_weights)


def test_split_is_by_lesion_and_stratified():
    rows = []
    for i in range(200):
        label = i % 4
        rows.append({"image_id": f"a{i}", "lesion_id": f"L{i // 2}", "label": label})
    df = pd.DataFrame(rows)
    s1, s2 = make_split(df, seed=1), make_split(df, seed=1)
    assert s1.equals(s2)
    assert df.groupby("lesion_id").apply(lambda g: s1[g.index].nunique()).max() == 1  # a lesion never straddles
    assert 0.6 < (s1 == "train").mean() < 0.8 and (s1 == "test").any() and (s1 == "val").any()


def test_bad_rows_are_named(fixture_data, tmp_path):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "images").symlink_to(fixture_data / "images")  # the shared images, only read
    df = pd.read_csv(fixture_data / "metadata.csv", dtype=str, keep_default_na=False)
    df.loc[1, "file"] = "images/missing.jpg"
    df.loc[2, "label4"] = "tumour"
    df.loc[3, "age"] = "forty"
    (data / "broken.jpg").write_bytes(b"not an image")
    df.loc[4, "file"] = "broken.jpg"
    df.to_csv(data / "metadata.csv", index=False)
    with pytest.raises(DataError) as e:
        read_metadata(data)
    msg = str(e.value)
    for line, what in ((3, "not found"), (4, "unknown label"), (5, "Age"), (6, "cannot be read")):
        assert f"line {line} " in msg and what in msg, (line, what, msg)
    assert "--skip-bad-rows" in msg
    assert len(read_metadata(data, skip_bad_rows=True)) == len(df) - 4


def _train_cmd(data, run, *extra):
    return [sys.executable, "-m", "training.train", "--data", str(data), "--output", str(run), "--batch-size", "4",
            "--size", "64", "--cache-size", "64", "--threads", "1", "--no-finalize", *extra]


def test_kill_then_resume(fixture_data, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_train_cmd(fixture_data, run, "--epochs", "4"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoint.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert ckpt.exists(), "no checkpoint was written"
    time.sleep(0.5)  # now inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = pd.read_csv(run / "summary.csv")["epoch"].tolist()
    assert done and done[-1] < 3, "the run finished before it could be killed"
    out = subprocess.run(_train_cmd(fixture_data, run, "--epochs", "4", "--resume"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resumed from" in out.stdout
    assert pd.read_csv(run / "summary.csv")["epoch"].tolist() == [0, 1, 2, 3]


def test_ddp_two_cpu_processes(fixture_data, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "training.train", *_train_cmd(fixture_data, run, "--epochs", "1")[3:]]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary["epoch"]) == [0]
    assert (run / "best" / "model.safetensors").is_file()
    load_classifier(run / "best")


@pytest.mark.parametrize("teacher_args", [["--epochs", "1"], ["--tune-from", "0", "--tta"]], ids=["tuned", "logistic"])
def test_teacher_then_distilled_student(fixture_data, tmp_path, teacher_args):
    from training import teacher
    teacher.main(teacher.get_args_parser().parse_args([
        "--data", str(fixture_data), "--output", str(tmp_path / "teacher"), "--split-from", str(tmp_path / "student"),
        "--size", "64", *teacher_args]))
    npz = tmp_path / "teacher" / "teacher.npz"
    info = json.loads((tmp_path / "teacher" / "teacher.json").read_text())
    assert npz.is_file() and info["test"]["n"] > 0 and info["test_tta"]["n"] == info["test"]["n"]
    z = np.load(npz)
    assert np.allclose(z["probs"].sum(1), 1, atol=1e-4) and z["features"].shape == (len(z["image_id"]), 1280)
    out = subprocess.run(_train_cmd(fixture_data, tmp_path / "student", "--epochs", "1", "--teacher", str(npz)),
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = pd.read_csv(tmp_path / "student" / "summary.csv").iloc[0]
    assert row["train_kd"] > 0 and row["train_feat"] > 0   # both distillation losses were used


def test_teacher_of_several_folders_and_phone_photos(fixture_data, tmp_path):
    """A teacher over dermoscopic and phone folders answers every row the student trains on, keeps the split it
    was given (copied, never rewritten), and a student learns its features alone (--kd-alpha 0)."""
    from training import teacher
    phone = _phone_fixture(fixture_data, tmp_path / "phone")
    student = tmp_path / "student"   # a split made by a teacher of the dermoscopic folder alone, as before
    teacher.main(teacher.get_args_parser().parse_args([
        "--data", str(fixture_data), "--output", str(tmp_path / "first"), "--split-from", str(student),
        "--size", "64", "--tune-from", "0"]))
    before = (student / "split.csv").read_bytes()
    teacher.main(teacher.get_args_parser().parse_args([
        "--data", str(fixture_data), "--clinical-data", str(phone), "--output", str(tmp_path / "teacher"),
        "--split-from", str(student), "--size", "64", "--tune-from", "0"]))
    assert (student / "split.csv").read_bytes() == before
    z = np.load(tmp_path / "teacher" / "teacher.npz")
    ids = set(z["image_id"])
    assert any(i.startswith("phone_") for i in ids) and any(not i.startswith("phone_") for i in ids)
    split = pd.read_csv(tmp_path / "teacher" / "split.csv", dtype=str).set_index("image_id")["split"]
    saved = pd.read_csv(student / "split.csv", dtype=str).set_index("image_id")["split"]
    assert set(split.index) == ids and (split[saved.index] == saved).all()   # the student's rows keep their side
    out = subprocess.run(_train_cmd(fixture_data, tmp_path / "run", "--clinical-data", str(phone), "--epochs", "1",
                                    "--split-from", str(tmp_path / "teacher"), "--teacher",
                                    str(tmp_path / "teacher" / "teacher.npz"), "--kd-alpha", "0"),
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    row = pd.read_csv(tmp_path / "run" / "summary.csv").iloc[0]
    # the loss is the labels' plus the features' (default weight 0.5) and the photo type's (0.2): no soft targets
    assert row["train_feat"] > 0 and row["train_loss"] == pytest.approx(
        row["train_ce"] + 0.5 * row["train_feat"] + 0.2 * row["train_photo"], rel=1e-4)


def test_teacher_leave_source_out(fixture_data, tmp_path):
    """A teacher trained without one source: that source's rows are neither trained on nor used to choose its
    head, and the record reports them apart."""
    from training import teacher
    data = tmp_path / "data"
    shutil.copytree(fixture_data, data)
    meta = pd.read_csv(data / "metadata.csv", dtype=str, keep_default_na=False)
    held = meta["image_id"].str.endswith(("_v0", "_v1"))
    meta["source"] = np.where(held, "ISIC archive (test)", "HAM10000 (test)")
    meta.to_csv(data / "metadata.csv", index=False)
    run = tmp_path / "teacher"
    teacher.main(teacher.get_args_parser().parse_args([
        "--data", str(data), "--output", str(run), "--size", "64", "--tune-from", "0",
        "--hold-out-source", "ISIC archive"]))
    split = pd.read_csv(run / "split.csv").set_index("image_id")["split"]
    is_held = split.index.str.endswith(("_v0", "_v1"))
    assert (split[is_held] == "held_out").all() and (split[~is_held] != "held_out").all()
    info = json.loads((run / "teacher.json").read_text())
    assert info["held_out"]["n"] == is_held.sum() and info["test"]["n"] == (split == "test").sum()
    # the same-population gap: a second head fitted with every source, both on the source's test rows
    same = info["same_population"]
    assert 0 < same["n"] < is_held.sum()
    gap = same["trained_with"]["malignant_auc"] - same["trained_without"]["malignant_auc"]
    assert same["malignant_auc_drop"] == pytest.approx(gap, nan_ok=True)


def test_teacher_trunk_and_tail_are_the_whole_network():
    import timm

    from training.teacher import d4, split_at
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    trunk, tail = split_at(net, 5)
    with torch.inference_mode():
        assert torch.allclose(tail(trunk(x)), net(x), atol=1e-5)
    views = [d4(x, k) for k in range(8)]
    assert all(not torch.equal(a, b) for i, a in enumerate(views) for b in views[i + 1:])   # 8 different views
    assert torch.equal(d4(x, 0), x)


def test_metadata_missing_by_label_is_hidden_per_source():
    from training.data import hide_shortcuts
    n = 40
    df = pd.DataFrame({"label": [0] * n + [2] * n, "source_group": "A",
                       "age_value": [None] * 30 + [50.0] * 10 + [60.0] * n,   # missing for 3 in 4 melanomas only
                       "sex_value": ["male"] * (2 * n),
                       "site_value": [None] * 3 + ["back"] * (2 * n - 3)})  # missing for 3 in 40: kept
    other = df.assign(source_group="B", age_value=55.0)
    out = hide_shortcuts(pd.concat([df, other], ignore_index=True))
    assert out.attrs["hidden_metadata"] == {"A": ["age"]}
    assert out.loc[out["source_group"] == "A", "age_value"].isna().all()
    assert (out.loc[out["source_group"] == "B", "age_value"] == 55.0).all()
    assert out["sex_value"].notna().all() and out["site_value"].notna().sum() == 2 * (2 * n - 3)


def test_split_extends_to_new_rows_and_keeps_the_saved_ones(tmp_path):
    from training.data import load_or_make_split
    old = pd.DataFrame({"image_id": [f"a{i}" for i in range(80)], "lesion_id": [f"L{i}" for i in range(80)],
                        "label": [i % 4 for i in range(80)], "label4": "benign"})
    saved = load_or_make_split(old, tmp_path, seed=0)
    new = pd.DataFrame({"image_id": [f"p{i}" for i in range(40)], "lesion_id": [f"P{i // 2}" for i in range(40)],
                        "label": [i % 3 for i in range(40)], "label4": "benign"})
    both = pd.concat([old, new], ignore_index=True)
    with pytest.raises(DataError):
        load_or_make_split(both, tmp_path, seed=0)
    split = load_or_make_split(both, tmp_path, seed=0, extend=True)
    assert split[:80].tolist() == saved.tolist()               # an earlier test split stays unseen
    assert set(split[80:]) == {"train", "val", "test"}
    assert new.assign(s=split[80:].values).groupby("lesion_id")["s"].nunique().max() == 1
    assert load_or_make_split(both, tmp_path, seed=0).tolist() == split.tolist()   # written, so it is reused


def test_the_split_does_not_follow_the_training_seed(fixture_data, tmp_path):
    """Runs of other seeds share one validation split (their weights may be averaged and judged on it); only
    --split-seed draws another."""
    from training.train import load_data
    splits = {}
    for name, extra in {"s1": ("--seed", "1"), "s2": ("--seed", "2"), "other": ("--split-seed", "5")}.items():
        _, split, _ = load_data(train_args(fixture_data, tmp_path / name, *extra), tmp_path / name, 0, 1)
        splits[name] = split.tolist()
    assert splits["s1"] == splits["s2"]
    assert splits["other"] != splits["s1"]


def dark(image: torch.Tensor) -> float:
    """The fraction of dark pixels."""
    return (image.float().mean(0) < 120).float().mean().item()


def test_phone_style_changes_the_look_not_the_format():
    import random

    from training.restyle import PhoneStyle
    image = torch.full((3, 96, 96), 180, dtype=torch.uint8)
    image[:, 30:66, 30:66] = torch.tensor([90, 50, 40], dtype=torch.uint8).view(3, 1, 1)   # a dark spot
    for seed in range(5):
        random.seed(seed)
        torch.manual_seed(seed)
        out = PhoneStyle()(image)
        assert out.shape == image.shape and out.dtype == torch.uint8 and not torch.equal(out, image)
    # shrunk to half its side, with no other change: the spot keeps about a quarter of its area
    plain = PhoneStyle(inner=(1.0, 1.0), spot_scale=(0.5, 0.5), light=0, cast=0, p_blur=0, perspective=0)
    assert 0.1 * dark(image) < dark(plain(image)) < 0.4 * dark(image)


def _phone_fixture(fixture_data: Path, folder: Path) -> Path:
    """The fixture's images again, as if they were phone photos: their own ids and patients."""
    df = pd.read_csv(fixture_data / "metadata.csv", dtype=str, keep_default_na=False)
    folder.mkdir()
    (folder / "images").symlink_to(fixture_data / "images")
    df.assign(image_id="phone_" + df["image_id"], lesion_id="P_" + df["lesion_id"],
              source="PAD-UFES-20 smartphone photo").to_csv(folder / "metadata.csv", index=False)
    return folder


def test_training_with_phone_photos(fixture_data, tmp_path):
    from training.model_card import card, summary
    from training.train import main
    phone = _phone_fixture(fixture_data, tmp_path / "phone")
    run = tmp_path / "run"
    main(train_args(fixture_data, run, "--clinical-data", str(phone), "--restyle", "0.5", "--clinical-repeat", "2",
                    "--balance-collections", "--diagnosis-weight", "0.3", "--ink", "0.5", "--skin-tone", "0.5"))
    config, record = read_config(run / "weights"), read_record(run / "weights")
    assert config["photo_types"] == ["dermoscopic", "clinical"]
    assert config["architecture"]["diagnoses"] == 9
    assert 0 <= record["photo_type_head"]["val_accuracy_refit_head"]["balanced"] <= 1
    for section in ("calibration", "thresholds", "ood"):
        assert set(config[section]["by_photo_type"]) == {"clinical"}, section
    assert config["thresholds"]["by_photo_type"]["clinical"]["malignant"] > 0
    by_type = record["metrics"]["test"]["by_photo_type"]
    assert by_type["clinical"]["n"] == (pd.read_csv(run / "split.csv").query("split == 'test'")["image_id"]
                                        .str.startswith("phone_").sum())
    assert 0 <= by_type["clinical"]["photo_type_accuracy"] <= 1
    epochs = pd.read_csv(run / "summary.csv")
    assert {"val_clinical_malignant_auc", "val_photo_type_accuracy", "train_photo"} <= set(epochs.columns)
    clf = load_classifier(run / "weights")
    r = clf.predict(phone / "images" / pd.read_csv(phone / "metadata.csv")["file"][0].split("/")[-1], age=40)
    assert r.photo_type in ("dermoscopic", "clinical")
    text = summary(run / "weights")
    assert "| test split | Dermoscopy image (" in text and "Phone or camera photo (" in text
    text = card(run / "weights")
    assert "**By photo type**" in text and "**Clinical photos** have their own temperature" in text


def test_leave_source_out(fixture_data, tmp_path):
    """A source held out is neither trained on nor validated on, and is tested on as a split of its own."""
    from training.leave_source_out import compare
    from training.train import main
    phone = _phone_fixture(fixture_data, tmp_path / "phone")
    run = tmp_path / "lso"
    main(train_args(fixture_data, run, "--clinical-data", str(phone), "--hold-out-source", "PAD-UFES-20",
                    "--no-finalize"))
    split = pd.read_csv(run / "split.csv")
    held = split["image_id"].str.startswith("phone_")
    assert (split.loc[held, "split"] == "held_out").all() and (split.loc[~held, "split"] != "held_out").all()
    record = compare(run, [fixture_data], [phone])
    assert record["held_out"]["n"] == held.sum() and record["in_source_test"]["n"] == (split["split"] == "test").sum()
    # evaluating run/best on test and on held-out rows writes nothing there: no plot titled "test split"
    # can show held-out figures (the drop itself is checked on hand-made answers below)
    assert not (run / "best" / "roc.png").exists() and "metrics" not in read_record(run / "best")


def test_leave_source_out_same_population(fixture_data, trained_run, tmp_path, monkeypatch):
    """With a reference run (the recipe trained with every source), both networks are tested on the held-out
    source's test rows of the reference's split, and the gap between them is what leaving the source out cost."""
    from training import leave_source_out
    from training.inference import Outputs
    run, reference = tmp_path / "without", tmp_path / "with"
    for folder in (run, reference):
        shutil.copytree(trained_run / "best", folder / "best")
    (run / "args.json").write_text(json.dumps({"hold_out_source": "unknown"}))  # the fixture rows have no source
    split = pd.read_csv(trained_run / "split.csv")
    split.to_csv(reference / "split.csv", index=False)
    calls = []

    def outputs(model, df, pre, spec):  # the reference ranks every row right, the run every row wrong
        calls.append(df["image_id"].tolist())
        onehot = np.eye(4, dtype=np.float32)[df["label"].to_numpy()]
        sign = 1.0 if len(calls) == 2 else -1.0
        return Outputs(np.zeros((len(df), 8), np.float32), np.zeros((len(df), 6), np.float32), sign * 10 * onehot, None)

    monkeypatch.setattr(leave_source_out, "outputs_from_disk", outputs)
    out = leave_source_out.same_population(run, reference, [fixture_data], [])
    test_ids = split.loc[split["split"] == "test", "image_id"].tolist()
    assert calls[0] == calls[1] and sorted(calls[0]) == sorted(test_ids) and out["n"] == len(test_ids)
    assert out["trained_with"]["melanoma_auc"] == 1.0 and out["trained_without"]["melanoma_auc"] == 0.0
    assert out["melanoma_auc_drop"] == 1.0 and out["melanoma_auc_drop_ci95"] == [1.0, 1.0]
    assert out["malignant_auc_drop"] == 1.0


def test_model_card_shows_the_same_population_drop_only_where_measured():
    from training.model_card import leave_source_out_rows
    figures = {"melanoma_auc": 0.9, "malignant_auc": 0.8}
    run = {"held_out_source": "ISIC archive", "in_source_test": figures, "held_out": figures,
           "melanoma_auc_drop": 0.0, "malignant_auc_drop": 0.0}
    same = {"source": "ISIC archive", "n": 220, "trained_with": {"melanoma_auc": 0.82, "malignant_auc": 0.72},
            "trained_without": {"melanoma_auc": 0.62, "malignant_auc": 0.63}, "melanoma_auc_drop": 0.2,
            "melanoma_auc_drop_ci95": [0.12, 0.28], "malignant_auc_drop": 0.09, "malignant_auc_drop_ci95": [0.03, 0.16]}
    assert not any("trained with it" in line for line in leave_source_out_rows({"a": run}))
    rows = leave_source_out_rows({"a": run, "b": {**run, "same_population": same}})
    assert "| b | 0.820 | 0.620 | 0.200 (0.12-0.28) | 0.720 | 0.630 | 0.090 (0.03-0.16) |" in rows
    assert not any(line.startswith("| a | 0.8") for line in rows[rows.index("|---|---|---|---|---|---|---|", 3):])
    same["malignant_auc_drop_ci95"] = [-0.1, 0.12]   # a negative bound is not written as "-0.10-0.12"
    assert "| 0.090 (-0.10 to 0.12) |" in leave_source_out_rows({"b": {**run, "same_population": same}})[-1]


def test_the_diagnosis_head_shapes_the_features_and_the_rows_map_onto_it():
    """The fine-grained diagnoses (PAD-UFES-20 and ISIC 2017 names mapped onto HAM10000's) are a training target
    whose loss reaches the backbone; an unknown diagnosis is not learned."""
    from model import MetadataSpec, ModelArgs, SkinLesionNet
    from training.data import DIAGNOSES, IGNORE, diagnosis_index
    from training.train import Student
    assert [diagnosis_index(d, 2) for d in ("NEV", "SEK", "nv", "DF")] == [DIAGNOSES.index(n) for n in
                                                                          ("NV", "BKL", "NV", "DF")]
    assert diagnosis_index("ACK", 1) == DIAGNOSES.index("AKIEC") and diagnosis_index("", 2) == IGNORE
    assert diagnosis_index("NORMAL_SKIN_PATCH", 3) == DIAGNOSES.index("NONE")
    torch.manual_seed(0)
    spec = MetadataSpec()
    model = SkinLesionNet(ModelArgs(backbone="test_efficientnet", meta_dim=spec.dim, diagnoses=len(DIAGNOSES)))
    meta = torch.tensor([spec.unknown()] * 2)
    *_, diagnosis_logits = Student(model, torch.nn.Identity())(torch.randn(2, 3, 64, 64), meta)
    torch.nn.functional.cross_entropy(diagnosis_logits, torch.tensor([0, 4])).backward()
    assert model.diagnosis_head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_a_better_photo_type_head_replaces_the_trained_one():
    """On features where one direction tells the photo type, a trained head that reads the wrong direction is
    replaced by the refitted one, which then answers from the network; a head that is already right stays."""
    from model import MetadataSpec, ModelArgs, SkinLesionNet
    from training.inference import Outputs
    from training.photo_head import choose_photo_head
    rng = np.random.default_rng(0)
    model = SkinLesionNet(ModelArgs(meta_dim=MetadataSpec().dim, photo_types=2))
    d = model.feature_dim

    def outputs(n):
        kind = rng.integers(0, 2, n)
        x = rng.standard_normal((n, d)).astype(np.float32)
        x[:, 0] += 4 * kind
        return Outputs(x, np.zeros((n, 6), np.float32), np.zeros((n, 4), np.float32), None), kind

    (train, kind_tr), (val, kind_va) = outputs(3000), outputs(300)
    for right in (False, True):
        with torch.no_grad():
            model.photo_head.weight.zero_()
            model.photo_head.weight[1, 0 if right else 1] = 1.0
            model.photo_head.bias.copy_(torch.tensor([0.0, -2.0 if right else 0.0]))
        val.photo_logits = model.photo_head(torch.from_numpy(val.features)).detach().numpy()
        record = choose_photo_head(model, train, val, kind_tr, kind_va)
        assert (record["head"] == "as trained") == right, record
        predicted = model.photo_head(torch.from_numpy(val.features)).argmax(1).numpy()
        kept = max(record["val_accuracy_trained_head"]["balanced"], record["val_accuracy_refit_head"]["balanced"])
        balanced = np.mean([(predicted[kind_va == k] == k).mean() for k in (0, 1)])
        assert balanced == pytest.approx(kept) and balanced > 0.85


def test_the_refitted_photo_type_head_weighs_both_types_equally():
    """Phone photos are few: a refit that followed the raw mix would call nearly every photo dermoscopic. Here 5 %
    of the rows are the second type, told by one weak direction; the class-balanced refit still finds most."""
    from model import MetadataSpec, ModelArgs, SkinLesionNet
    from training.inference import Outputs
    from training.photo_head import choose_photo_head
    rng = np.random.default_rng(2)
    model = SkinLesionNet(ModelArgs(meta_dim=MetadataSpec().dim, photo_types=2))

    def outputs(n):
        kind = (rng.random(n) < 0.05).astype(int)
        x = np.zeros((n, model.feature_dim), np.float32)
        x[:, 0] = rng.standard_normal(n) + 1.5 * kind
        return Outputs(x, np.zeros((n, 6), np.float32), np.zeros((n, 4), np.float32), np.zeros((n, 2))), kind

    (train, kind_tr), (val, kind_va) = outputs(4000), outputs(2000)
    refit = choose_photo_head(model, train, val, kind_tr, kind_va)["val_accuracy_refit_head"]
    assert refit["clinical"] > 0.6 and refit["dermoscopic"] > 0.6, refit


def test_two_runs_with_one_seed_give_the_same_summary(fixture_data, tmp_path):
    """The record rebuilds: the same command twice gives the same epochs (every random draw is seeded: torch,
    numpy and Python's random, which drives metadata dropout, restyle, ink and skin tone). A resume keeps the
    first args.json and records itself; the checkpoint holds the arguments and the RNG states."""
    from training.train import main
    extra = ("--backbone", "test_efficientnet", "--epochs", "2", "--no-finalize", "--restyle", "0.5", "--ink", "0.5",
             "--skin-tone", "0.5", "--balance-collections")
    for name in ("a", "b"):
        main(train_args(fixture_data, tmp_path / name, *extra))
    timing = ["epoch_s", "train_images_per_s"]
    a, b = (pd.read_csv(tmp_path / n / "summary.csv").drop(columns=timing) for n in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)
    first = (tmp_path / "a" / "args.json").read_text()
    main(train_args(fixture_data, tmp_path / "a", *extra, "--resume", "--lr", "1e-4"))
    assert (tmp_path / "a" / "args.json").read_text() == first
    assert "--lr" in (tmp_path / "a" / "resumes.jsonl").read_text()
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert ck["args"]["seed"] == 0 and {"torch", "numpy", "python"} <= set(ck["rng"])


def test_collection_weights_give_every_collection_the_same_label_mix():
    """Hand-worked: melanoma is 1 of 4 rows in A and 2 of 4 in B, 3 of 8 overall; weighted, it is 3/8 in both."""
    from training.data import collection_weights
    df = pd.DataFrame({"source_group": ["A"] * 4 + ["B"] * 4, "label": [0, 2, 2, 2, 0, 0, 2, 2]})
    w = collection_weights(df)
    assert w == pytest.approx([1.5, 5 / 6, 5 / 6, 5 / 6, 0.75, 0.75, 1.25, 1.25])
    for group in "AB":
        rows = (df["source_group"] == group).to_numpy()
        assert w[rows & (df["label"] == 0).to_numpy()].sum() / w[rows].sum() == pytest.approx(3 / 8)
        assert w[rows].sum() == pytest.approx(4)  # each collection keeps its weight


def test_the_flagged_share_by_diagnosis_counts_each_diagnosis_on_its_own():
    """Two naevi (one flagged), one keratosis (flagged), one melanoma (not flagged, refused), one plain skin."""
    import pandas as pd

    from training.data import DIAGNOSES
    from training.evaluate import photo_type_report
    dx = ["NV", "NV", "BKL", "MEL", "NONE"]
    df = pd.DataFrame({"label": [2, 2, 2, 0, 3], "lesion_id": ["a", "b", "c", "d", ""],
                       "image_id": list("vwxyz"), "photo_type": "dermoscopic",
                       "diagnosis_index": [DIAGNOSES.index(d) for d in dx]})
    p = [[0.1, 0.1, 0.7, 0.1], [0.3, 0.1, 0.5, 0.1], [0.2, 0.3, 0.4, 0.1], [0.6, 0.1, 0.2, 0.1], [0, 0, 0.1, 0.9]]
    answers = pd.DataFrame(p, columns=["melanoma", "other_cancer", "benign", "no_lesion"])
    answers["risk"] = ["low", "moderate", "high", "out_of_scope", "low"]
    answers["in_scope"] = [True, True, True, False, True]
    answers["photo_type"] = "dermoscopic"
    r = photo_type_report(df, answers)
    assert r["flagged_by_diagnosis"] == {"NV": {"n": 2, "flagged": 0.5}, "BKL": {"n": 1, "flagged": 1.0},
                                         "MEL": {"n": 1, "flagged": 0.0}}


def test_a_gate_on_both_spaces_is_calibrated_applied_and_chosen_by_the_development_set(trained_run, fixture_data,
                                                                                        tmp_path, capsys):
    """calibrate --gate-spaces style features ships a gate the Classifier applies (its distance is the larger
    scaled one), and training.gate_choice compares the three choices with each type's threshold refitted."""
    from model import ood
    from training import calibrate, gate_choice
    from training.ood_check import development_images
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    calibrate.main(calibrate.get_args_parser().parse_args(["--run", str(run), "--no-test",
                                                           "--gate-spaces", "style", "features"]))
    clf = load_classifier(run / "weights")
    assert clf.config["ood"]["spaces"] == ["style", "features"] and ood.space(clf.ood, "features") is not None
    assert "--gate-spaces style features" in read_record(run / "weights")["training"]["command"] or \
        read_record(run / "weights")["training"]["command"] is None
    image = fixture_data / "images" / sorted(os.listdir(fixture_data / "images"))[0]
    pred = clf.predict(image)
    pils, x, meta = clf._prepare([image], [None], [None], [None])
    _, feats, style, _ = clf.runner(x, meta)
    by_space = [float(ood.distance(v.float(), ood.space(clf.ood, n))[0] / ood.space(clf.ood, n)["scale"])
                for n, v in (("style", style), ("features", feats))]
    assert pred.ood_distance == pytest.approx(max(by_space), rel=1e-4)
    out = tmp_path / "choice.json"
    gate_choice.main(argparse.Namespace(weights=str(run / "weights"), data=[str(fixture_data)], clinical_data=[],
                                        out=str(out)))
    report = json.loads(out.read_text())
    assert [c["spaces"] for c in report["choices"]] == [list(c) for c in gate_choice.CHOICES]
    most = max(c["development_refused"] for c in report["choices"])
    assert all(c["development_pictures"] == len(development_images()) for c in report["choices"])
    assert report["chosen"] == min((c["spaces"] for c in report["choices"] if c["development_refused"] == most),
                                   key=len)


def test_the_non_skin_pictures_are_each_file_whole_and_cropped_plus_drawn_shapes(tmp_path):
    from PIL import Image

    from training import nonskin
    Image.new("RGBA", (200, 120), (0, 0, 0, 0)).save(tmp_path / "stamp.png")          # transparent clip art
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (90, 300), (10, 120, 30)).save(tmp_path / "sub" / "wall.jpg")
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    (tmp_path / "notes.txt").write_text("skipped")
    pics = nonskin.pictures(tmp_path, shapes=6)
    assert len(pics) == 2 * (1 + nonskin.CROPS) + 6
    assert all(p.mode == "RGB" for p in pics)
    assert len(pics[0].getcolors()) == 1            # the transparent stamp over one plain colour
    toned = nonskin.recoloured([tmp_path / "sub" / "wall.jpg"], n=3)
    assert len(toned) == 1 and toned[0].size == (90, 300) and toned[0].getpixel((45, 150)) != (10, 120, 30)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="holds no picture"):
        nonskin.pictures(empty)


def test_the_non_skin_measure_is_calibrated_applied_and_tried_by_the_gate_choice(trained_run, fixture_data,
                                                                                   tmp_path, capsys):
    """calibrate --non-skin ships the measure and its limit for each photo type; the Classifier refuses with
    "no_skin" exactly the pictures over that limit; training.gate_choice --non-skin tries each choice with it."""
    from PIL import Image

    from model import ood
    from model.quality import check
    from training import calibrate, gate_choice
    run, pictures = tmp_path / "run", tmp_path / "not-skin"
    shutil.copytree(trained_run, run)
    pictures.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)).save(
            pictures / f"{i}.png")
    calibrate.main(calibrate.get_args_parser().parse_args(["--run", str(run), "--no-test", "--gate-spaces",
                                                           "style", "features", "--non-skin", str(pictures)]))
    clf = load_classifier(run / "weights")
    assert clf.config["ood"]["nonskin_max"] == pytest.approx(clf.fitted("ood", None)["nonskin_max"])
    assert clf.config["ood"]["non_skin"]["pictures"] == 12 * (1 + 2) + 200
    images = [fixture_data / "images" / f for f in sorted(os.listdir(fixture_data / "images"))[:6]]
    images += [Image.open(pictures / "0.png"), Image.new("RGB", (200, 200), (40, 160, 220))]
    preds = clf.predict_batch(images)
    pils, x, meta = clf._prepare(images, [None] * 8, [None] * 8, [None] * 8)
    _, feats, style, _ = clf.runner(x, meta)
    scores = ood.nonskin(style, clf.ood)
    checked = 0
    for pil, pred, score in zip(pils, preds, scores, strict=True):
        q, limits = check(pil), clf.fitted("ood", pred.photo_type)
        cheap = ood.refusal(q, None, {k: v for k, v in limits.items() if k not in ("threshold", "nonskin_max")})
        if cheap is None:
            assert (pred.refusal_reason == "no_skin") == (float(score) > limits["nonskin_max"])
            checked += 1
    assert checked >= 3
    out = tmp_path / "choice.json"
    gate_choice.main(argparse.Namespace(weights=str(run / "weights"), data=[str(fixture_data)], clinical_data=[],
                                        non_skin=str(pictures), out=str(out)))
    report = json.loads(out.read_text())
    assert [(c["spaces"], c["non_skin"]) for c in report["choices"]] == \
        [(list(c), m) for m in (False, True) for c in gate_choice.CHOICES]
    assert all(bool(c["nonskin_max"]) == c["non_skin"] for c in report["choices"])
    best = max(report["choices"], key=lambda c: (c["development_refused"], -len(c["spaces"]) - c["non_skin"]))
    assert (report["chosen"], report["chosen_non_skin"]) == (best["spaces"], best["non_skin"])


def test_the_gate_of_a_weights_folder_is_refitted_with_skin_tones_and_the_non_skin_measure(
        trained_weights, fixture_data, tmp_path, capsys):
    """python -m training.nonskin: the distance refitted with recoloured train photos in groups of their own, the
    non-skin measure added, each photo type's limits refitted; the network and the calibration stay as they were."""
    from PIL import Image

    from model import ood
    from model.checkpoint import load_model
    from training import nonskin
    pictures, out = tmp_path / "not-skin", tmp_path / "refit"
    pictures.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8).repeat(5, 0).repeat(5, 1)).save(
            pictures / f"{i}.png")
    nonskin.main(argparse.Namespace(weights=str(trained_weights), out=str(out), pictures=str(pictures),
                                    photo_head=False, toned_groups=True, no_colour_box=False, wide_colour_box=False,
                                    data=[str(fixture_data)], clinical_data=[]))
    before, after = load_model(trained_weights), load_model(out)
    assert after[1]["calibration"] == before[1]["calibration"] and after[1]["thresholds"] == before[1]["thresholds"]
    net_before, net_after = before[0].state_dict(), after[0].state_dict()
    assert all(torch.equal(net_before[k], net_after[k]) for k in net_before)
    tensors = after[2]
    assert ood.nonskin(torch.zeros(1, tensors["mean"].numel()), tensors) is not None
    assert len(tensors["centres"]) > len(before[2]["centres"])          # the recoloured photos' own groups
    limits = load_classifier(out).fitted("ood", None)
    assert {"threshold", "nonskin_max"} <= set(limits) and limits["threshold"] != before[1]["ood"]["threshold"]
    assert "recoloured" in read_record(out)["notes"]["ood"]["refit"]


def test_the_wide_colour_box_replaces_the_box_in_every_photo_type(trained_weights, fixture_data, tmp_path):
    """--wide-colour-box: each photo type's skin-colour limit is the wide box's, at the box's quantile of its own
    train and validation photos; the box itself then refuses nothing; nothing else of the gate changes."""
    from PIL import Image

    from model import ood
    from model.checkpoint import load_model, metadata_spec
    from model.quality import check
    from training import nonskin
    from training.evaluate import split_rows
    out = tmp_path / "wide"
    nonskin.main(argparse.Namespace(weights=str(trained_weights), out=str(out), pictures=None, photo_head=False,
                                    toned_groups=False, no_colour_box=False, wide_colour_box=True,
                                    data=[str(fixture_data)], clinical_data=[]))
    (_, before, t_before), (_, after, t_after) = load_model(trained_weights), load_model(out)
    assert all(torch.equal(t_before[k], t_after[k]) for k in t_before)
    spec = metadata_spec(before)
    rows = pd.concat([split_rows([str(fixture_data)], [], spec, trained_weights / "split.csv", s)
                      for s in ("train", "val")], ignore_index=True)
    first = (before.get("photo_types") or [None])[0]            # the tiny fixture: dermoscopy, one photo type
    mine = rows if first is None else rows[rows["photo_type"] == first]
    shares = [check(Image.open(path)).skin_fraction_wide for path in mine["path"]]
    assert after["ood"]["skin_fraction_wide_min"] == pytest.approx(np.quantile(shares, ood.SKIN_QUANTILE))
    assert after["ood"]["skin_fraction_min"] == 0.0 and after["ood"]["threshold"] != 0
    assert "wide skin-colour box" in read_record(out)["notes"]["ood"]["refit"]


def test_the_collection_probe_tells_collections_apart_only_where_the_features_do(trained_weights, fixture_data):
    from training import collection_probe
    rng = np.random.default_rng(0)
    collections = np.repeat(["HAM10000", "ISIC archive"], 100)
    groups = np.arange(200) // 2                      # two images per lesion
    marked = rng.normal(0, 1, (200, 8))
    marked[:, 0] += np.where(collections == "HAM10000", 3.0, -3.0)
    assert collection_probe.probe(marked, collections, groups) > 0.95
    assert collection_probe.probe(rng.normal(0, 1, (200, 8)), collections, groups) < 0.65
    args = argparse.Namespace(weights=str(trained_weights), baseline=[], data=[str(fixture_data)], split=None,
                              split_name="val", out=None)
    with pytest.raises(SystemExit, match="one collection only"):
        collection_probe.main(args)


def test_interpolation_is_the_straight_line_and_keeps_what_only_the_run_has():
    from training.soup import interpolate
    start = {"w": torch.zeros(3), "n": torch.tensor(5)}
    end = {"w": torch.full((3,), 4.0), "n": torch.tensor(9), "new_head": torch.ones(2)}
    out = interpolate(start, end, 0.25)
    assert torch.allclose(out["w"], torch.full((3,), 1.0))
    assert out["n"].item() == 9 and torch.equal(out["new_head"], end["new_head"])  # counters, new tensors: the run's
    assert torch.equal(interpolate(start, end, 0.0)["w"], start["w"])
    with pytest.raises(ValueError, match="not the same architecture"):
        interpolate({"w": torch.zeros(2)}, end, 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        interpolate(start, end, 1.5)


def test_the_average_of_several_runs_is_their_mean_and_only_of_one_architecture():
    from training.soup import average
    a = {"w": torch.zeros(3), "n": torch.tensor(5)}
    b = {"w": torch.full((3,), 4.0), "n": torch.tensor(9)}
    out = average([a, b])
    assert torch.allclose(out["w"], torch.full((3,), 2.0)) and out["n"].item() == 5   # counters: the first run's
    with pytest.raises(ValueError, match="not the same architecture"):
        average([a, {"w": torch.zeros(2), "n": torch.tensor(1)}])


def test_a_soup_of_two_runs_interpolates_their_mean_and_needs_one_split(trained_run, tmp_path):
    from model.checkpoint import load_model, save_weights
    from training import soup
    model, config, _ = load_model(trained_run / "best")
    record = read_record(trained_run / "best")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02)
    other = tmp_path / "other"
    save_weights(model, other / "best", {**config, **record})
    shutil.copyfile(trained_run / "split.csv", other / "split.csv")
    out = soup.soup(trained_run / "best", [trained_run, other], 1.0, tmp_path / "soup")
    mixed = load_model(out / "best")[0].state_dict()
    best = load_model(trained_run / "best")[0].state_dict()
    name = next(k for k, v in best.items() if v.is_floating_point() and "running" not in k)
    assert torch.allclose(mixed[name], best[name] + 0.01, atol=1e-6)          # the mean of the two runs
    assert read_record(out / "best")["training"]["interpolation"]["runs_averaged"] == [str(trained_run), str(other)]
    assert f"--run {trained_run} {other}" in (out / "command.txt").read_text()
    (other / "split.csv").write_text("image_id,label4,split\nx,benign,val\n")
    with pytest.raises(SystemExit, match="different splits"):
        soup.soup(trained_run / "best", [trained_run, other], 1.0, tmp_path / "soup2")


def test_an_interpolated_network_is_a_run_folder_that_calibrates(trained_run, fixture_data, tmp_path):
    from model.checkpoint import load_model, read_card, save_weights
    from training import calibrate, soup
    from training.model_card import training_paragraph
    model, config, _ = load_model(trained_run / "best")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # a nearby network, as a fine-tune is
    save_weights(model, tmp_path / "start", config)
    out = soup.soup(tmp_path / "start", trained_run, 0.25, tmp_path / "soup")
    mixed = load_model(out / "best")[0].state_dict()
    best = load_model(trained_run / "best")[0].state_dict()
    name = next(k for k, v in best.items() if v.is_floating_point() and "running" not in k)
    assert torch.allclose(mixed[name], best[name] + 0.0075, atol=1e-6)
    assert read_record(out / "best")["training"]["interpolation"]["alpha"] == 0.25
    assert "training.soup" in (out / "command.txt").read_text()
    calibrate.main(calibrate.get_args_parser().parse_args(["--run", str(out), "--no-test"]))
    record = read_record(out / "weights")["training"]
    assert record["interpolation"]["start"] == str(tmp_path / "start") and "training.soup" in record["command"]
    assert "thresholds" in read_config(out / "weights")
    assert "0.75 x the weights it started from" in training_paragraph(read_card(out / "weights"))


@pytest.fixture(scope="module")
def measured(trained_weights, fixture_data, tmp_path_factory):
    """The ImageNet non-skin measure fitted on the tiny trained weights (a small untrained timm backbone in place of
    the ImageNet one) and written into a copy of them: (its report, the written folder). The test pictures are
    never read."""
    from PIL import Image

    from training import ood_check, pretrained_nonskin
    folder = tmp_path_factory.mktemp("measure")
    for i in range(4):
        Image.new("RGB", (120, 90), (20 + 60 * i, 160, 40)).save(folder / f"green{i}.png")
    natural = ood_check.natural_images
    ood_check.natural_images = lambda: pytest.fail("the test pictures were read")
    try:
        args = pretrained_nonskin.get_args_parser().parse_args([
            "--weights", str(trained_weights), "--pictures", str(folder), "--data", str(fixture_data),
            "--backbone", "test_efficientnet", "--side", "64", "--skin-rows", "20", "--recoloured", "4",
            "--other", "40", "--write", str(folder / "weights")])
        report = pretrained_nonskin.measure(args)
    finally:
        ood_check.natural_images = natural
    return report, folder / "weights"


def test_the_pretrained_non_skin_measure_adds_to_the_gate_and_is_written_as_measured(measured):
    from model import load_classifier
    from training import ood_check, pretrained_nonskin
    r, written = measured
    dev = r["development"]
    assert dev["pictures"] == len(ood_check.development_images())
    assert max(dev["refused_by_gate"], dev["refused_by_measure"]) <= dev["refused_with_measure"] <= dev["pictures"]
    assert set(dev["through_both"]) <= set(dev["through_gate"])
    assert len(dev["through_gate"]) == dev["pictures"] - dev["refused_by_gate"]
    for figures in r["validation_lesions"].values():
        assert figures["refused_by_gate"] <= figures["refused_with_measure"] <= 1.0
    assert set(r["limits"]) <= {"dermoscopic", "clinical", pretrained_nonskin.ANY}
    assert r["fitted_on"]["not_skin"] == 40 and 4 < r["fitted_on"]["skin"] <= 24
    assert r["side"] == 64
    # the written weights answer as the measurement says: the app refuses what the gate or the measure refuse
    app = r["app"]
    assert app["development_refused"] == dev["refused_with_measure"]
    assert sorted(app["development_through"]) == sorted(dev["through_both"])
    for group, figures in app["validation_lesions"].items():
        assert figures["refused"] == pytest.approx(r["validation_lesions"][group]["refused_with_measure"],
                                                   abs=1.01 / max(1, figures["lesions"]))
    clf = load_classifier(written)
    assert clf.skin is not None and clf.skin_side == 64
    assert clf.config["ood"]["imagenet"] == {"backbone": "test_efficientnet", "side": 64}


def with_limit(weights: Path, tmp_path: Path, limit: float) -> Path:
    """A copy of `weights` whose ImageNet measure limit is `limit` for every photo type."""
    import shutil

    from model.checkpoint import read_config, write_config
    out = tmp_path / f"limit{limit}"
    shutil.copytree(weights, out)
    config = read_config(out)
    config["ood"]["imagenet_max"] = limit
    for section in config["ood"].get("by_photo_type", {}).values():
        section["imagenet_max"] = limit
    write_config(out, config)
    return out


def test_the_imagenet_measure_refuses_over_its_limit_and_nothing_else(measured, trained_weights, fixture_data,
                                                                       tmp_path):
    from model import load_classifier
    photos = sorted(fixture_data.rglob("*.jpg"))[:6]
    assert photos
    without = load_classifier(trained_weights).predict_batch(photos)
    lenient = load_classifier(with_limit(measured[1], tmp_path, float("inf"))).predict_batch(photos)
    strict = load_classifier(with_limit(measured[1], tmp_path, -1e9)).predict_batch(photos)
    for a, b, c in zip(without, lenient, strict, strict=True):
        assert (b.in_scope, b.refusal_reason, b.risk) == (a.in_scope, a.refusal_reason, a.risk)
        assert not c.in_scope and c.risk == "out_of_scope"
        # the measure is checked with the skin checks, before the distance: "no skin found"
        assert c.refusal_reason == ("no_skin" if a.refusal_reason in (None, "unlike_training") else a.refusal_reason)


def test_the_imagenet_measure_runs_on_onnx_runtime_with_the_eager_numbers(measured):
    from model import load_classifier, skin_measure
    from model.checkpoint import load_model
    from model.runtime import OnnxRunner
    clf = load_classifier(measured[1])
    assert isinstance(clf.skin, OnnxRunner)
    _, config, tensors = load_model(measured[1])
    eager, side = skin_measure.from_weights(config["ood"], tensors)
    x = torch.rand(3, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(clf.skin(x)[0], eager(x), atol=1e-4)


def test_evaluation_counts_the_imagenet_measure_among_the_gate_refusals(measured, trained_weights, fixture_data,
                                                                         tmp_path):
    from training.evaluate import evaluate
    plain = evaluate(trained_weights, fixture_data)[0]["ood"]["test_lesions_refused"]
    lenient = evaluate(with_limit(measured[1], tmp_path, float("inf")), fixture_data)[0]["ood"]
    strict = evaluate(with_limit(measured[1], tmp_path, -1e9), fixture_data)[0]["ood"]
    assert lenient["test_lesions_refused"] == plain
    assert strict["test_lesions_refused"] == 1.0 and strict["test_lesions_refused_by_cheap_checks"] == 1.0


def test_a_toned_refit_without_the_colour_box_keeps_the_imagenet_measure(measured, fixture_data, tmp_path):
    from model import skin_measure
    from model.checkpoint import load_model
    from training import nonskin
    out = tmp_path / "toned"
    nonskin.main(argparse.Namespace(weights=str(measured[1]), out=str(out), pictures=None, toned_groups=True,
                                    photo_head=False, no_colour_box=True, wide_colour_box=False,
                                    data=[str(fixture_data)], clinical_data=[]))
    (_, before, t_before), (_, after, t_after) = load_model(measured[1]), load_model(out)
    kept = [k for k in t_before if k.startswith(skin_measure.PREFIX)]
    assert kept and all(torch.equal(t_before[k], t_after[k]) for k in kept)
    assert len(t_after["centres"]) > len(t_before["centres"])            # the recoloured photos' own groups
    sections = [after["ood"], *after["ood"].get("by_photo_type", {}).values()]
    assert all(s["skin_fraction_min"] == 0.0 for s in sections if "skin_fraction_min" in s)
    assert before["ood"]["skin_fraction_min"] > 0.0
    assert after["ood"]["imagenet_max"] == before["ood"]["imagenet_max"] and after["ood"]["imagenet"] == \
        before["ood"]["imagenet"]
    assert "no skin-colour box" in read_record(out)["notes"]["ood"]["refit"]
    # the app built from it runs the measure: a photo it takes is refused as "no skin" over the measure's limit
    photos = sorted(fixture_data.rglob("*.jpg"))[:6]
    taken = [p for p, a in zip(photos, load_classifier(out).predict_batch(photos), strict=True)
             if a.refusal_reason in (None, "unlike_training")]
    (tmp_path / "strict").mkdir()
    strict = load_classifier(with_limit(out, tmp_path / "strict", -1e9)).predict_batch(taken)
    assert taken and all(not c.in_scope and c.refusal_reason == "no_skin" for c in strict)
