"""Shared fixtures: a tiny data set made from the example images, and weights trained on it."""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from benchmarks.app_process import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SHIPPED = ROOT / "weights"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_fixture_data(folder: Path, size: int = 64) -> Path:
    """8 variants (rotations x flip) of each example image, each its own lesion: 56 small images."""
    ex = pd.read_csv(EXAMPLES / "examples.csv", dtype=str, keep_default_na=False)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for r in ex.itertuples():
        base = Image.open(EXAMPLES / r.file).convert("RGB").resize((size, size))
        for k in range(8):
            img = base.rotate(90 * (k % 4))
            if k >= 4:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            name = f"{r.image_id}_v{k}"
            img.save(folder / "images" / f"{name}.jpg", quality=90)
            rows.append({"image_id": name, "file": f"images/{name}.jpg", "diagnosis": r.diagnosis, "label4": r.label4,
                         "age": r.age, "sex": r.sex, "site": r.site, "lesion_id": f"L_{name}"})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder


def train_args(data: Path, run: Path, *extra: str):
    from training.train import get_args_parser
    # a 0.1 M-parameter timm network: these tests are about the pipeline, not MobileNetV4 (which the shipped
    # weights' tests cover)
    return get_args_parser().parse_args(["--data", str(data), "--output", str(run), "--epochs", "1",
                                         "--batch-size", "8", "--size", "64", "--cache-size", "64", "--threads", "2",
                                         "--backbone", "test_efficientnet", *extra])


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory) -> Path:
    return make_fixture_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_run(fixture_data, tmp_path_factory) -> Path:
    """One real (tiny) run of the training command: run folder with weights/ calibrated and evaluated."""
    from training.train import main
    run = tmp_path_factory.mktemp("run")
    main(train_args(fixture_data, run))
    return run


@pytest.fixture(scope="session")
def trained_weights(trained_run) -> Path:
    return trained_run / "weights"


@pytest.fixture(scope="session")
def shipped():
    """The classifier from the shipped weights/ folder, shared by the whole session: tests only read it.
    A test that changes a classifier (its runner, its config) takes `classifier`, a copy of its own."""
    from model import load_classifier
    return load_classifier(SHIPPED)


@pytest.fixture
def classifier(shipped):
    """A copy of `shipped` for one test to change: its own attributes, config and other dicts and lists.
    The network and the runner are shared: replace them on the copy, never change them in place."""
    clf = copy.copy(shipped)
    for name, value in vars(shipped).items():
        if isinstance(value, (dict, list)):
            setattr(clf, name, copy.deepcopy(value))
    return clf


@pytest.fixture(autouse=True)
def shipped_stays_as_loaded(request):
    """Every test that uses `shipped` leaves it as it found it, so no result depends on the order of the tests.
    (Changes undone by monkeypatch are undone before this check.)"""
    if "shipped" not in request.fixturenames:
        yield
        return
    clf = request.getfixturevalue("shipped")
    attributes, config = dict(vars(clf)), json.dumps(clf.config, sort_keys=True)
    yield
    changed = sorted(k for k in attributes.keys() | vars(clf).keys() if vars(clf).get(k) is not attributes.get(k))
    assert not changed, f"the test replaced these attributes of the shared classifier: {changed}"
    assert json.dumps(clf.config, sort_keys=True) == config, "the test changed the shared classifier's config"
    assert not clf.model.training, "the test left the shared network in training mode"


@pytest.fixture(scope="session")
def example_images() -> pd.DataFrame:
    ex = pd.read_csv(EXAMPLES / "examples.csv", dtype=str, keep_default_na=False)
    ex["path"] = [str(EXAMPLES / f) for f in ex["file"]]
    return ex


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app on a free port; Gradio's upload folder (GRADIO_TEMP_DIR) is a tmp folder.

    The first import of app fixes the folder of Gradio's cache; uploads must land in that same folder.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_uploads")))
        import app
        mp.setenv("GRADIO_TEMP_DIR", app.demo.GRADIO_CACHE)
        app.demo.launch(**app.LAUNCH, prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                        quiet=True)
        yield app
        app.demo.close()


@pytest.fixture(scope="module")
def upload_dir(app) -> Path:
    return Path(app.demo.GRADIO_CACHE)

