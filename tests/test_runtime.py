"""The fast inference path (model/runtime.py) gives the eager module's numbers.

Tolerance: probabilities within 1e-4 absolute; features and logits within 1e-4 of max(1, largest value),
because float32 sums in a different order differ in the last bits of large numbers (the placeholder
weights give logits of about 1e4).
"""
from __future__ import annotations

import sys

import pytest
import torch

from model.runtime import EagerRunner, OnnxRunner, optimize

TOL = 1e-4

pytest.importorskip("onnxruntime")


def assert_close(fast: torch.Tensor, eager: torch.Tensor):
    scale = max(1.0, float(eager.abs().max()))
    assert fast.shape == eager.shape
    assert float((fast - eager).abs().max()) <= TOL * scale


@pytest.fixture(scope="module")
def eager(shipped):
    return EagerRunner(shipped.model)


def test_shipped_classifier_uses_onnxruntime_on_cpu(shipped):
    if shipped.device.type != "cpu":
        pytest.skip("the fast path is for CPU")
    assert isinstance(shipped.runner, OnnxRunner)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("metadata", ["random", "unknown"])
def test_random_inputs_match_eager(shipped, eager, batch, metadata):
    size = shipped.config["preprocessing"]["input_size"]
    g = torch.Generator().manual_seed(batch)
    image = torch.randn(batch, 3, size, size, generator=g)
    if metadata == "random":
        meta = torch.randn(batch, shipped.spec.dim, generator=g)
    else:
        meta = torch.tensor([shipped.spec.encode(None, None, None)] * batch, dtype=torch.float32)
    with torch.inference_mode():
        (m_fast, f_fast, s_fast, l_fast), (m_eager, f_eager, s_eager, l_eager) = (shipped.runner(image, meta),
                                                                                  eager(image, meta))
    assert f_fast.shape == (batch, shipped.model.feature_dim)
    assert m_fast.ndim == 4 and m_fast.shape[0] == batch
    assert s_fast.shape == (batch, shipped.ood["mean"].shape[0])
    assert_close(m_fast, m_eager)
    assert_close(f_fast, f_eager)
    assert_close(s_fast, s_eager)
    assert_close(l_fast, l_eager)
    t = shipped.fitted("calibration", None).get("temperature", 1.0)
    assert_close(torch.softmax(l_fast / t, 1), torch.softmax(l_eager / t, 1))


@pytest.mark.parametrize("with_metadata", [True, False])
def test_example_images_match_eager(shipped, classifier, eager, example_images, with_metadata):
    ex = example_images
    n = len(ex)
    ages, sexes, sites = (ex["age"], ex["sex"], ex["site"]) if with_metadata else (None, None, None)
    fast = shipped.predict_batch(list(ex["path"]), ages, sexes, sites)
    classifier.runner = eager
    slow = classifier.predict_batch(list(ex["path"]), ages, sexes, sites)
    assert len(fast) == len(slow) == n
    for a, b in zip(fast, slow, strict=True):
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in shipped.classes) <= TOL
        assert a.label == b.label and a.risk == b.risk and a.in_scope == b.in_scope
        if b.heatmap is not None:
            assert float(abs(a.heatmap - b.heatmap).max()) <= 1e-3
        if b.ood_distance is not None:
            assert abs(a.ood_distance - b.ood_distance) <= TOL * max(1.0, b.ood_distance)


def test_single_image_matches_batch(shipped, example_images):
    row = example_images.iloc[0]
    one = shipped.predict(row["path"], row["age"], row["sex"], row["site"])
    many = shipped.predict_batch(list(example_images["path"]), example_images["age"], example_images["sex"],
                                 example_images["site"])
    assert max(abs(one.probabilities[c] - many[0].probabilities[c]) for c in shipped.classes) <= TOL


def test_falls_back_to_eager_without_onnxruntime(shipped, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    runner = optimize(shipped.model, shipped.config["preprocessing"]["input_size"], "cpu")
    assert isinstance(runner, EagerRunner)


def test_falls_back_to_eager_when_outputs_differ(shipped, monkeypatch, caplog):
    """ONNX Runtime's own outputs, with the logits moved a little: every shape right, the numbers not."""
    right = OnnxRunner.__call__

    def off(self, image, meta):
        maps, features, style, logits = right(self, image, meta)
        return maps, features, style, logits + 1e-3

    monkeypatch.setattr(OnnxRunner, "__call__", off)
    with caplog.at_level("WARNING", logger="model.runtime"):
        runner = optimize(shipped.model, shipped.config["preprocessing"]["input_size"], "cpu")
    assert isinstance(runner, EagerRunner)
    assert "differ" in caplog.text  # the outputs-differ branch, not a failure of the export or the run


class SlowRunner:
    """A runner that takes its time (so concurrent calls pile up) and can be told to fail once."""
    name = "slow"

    def __init__(self, runner, fail_once=False):
        self.runner, self.fail_once, self.calls = runner, fail_once, []

    def __call__(self, image, meta):
        import time
        self.calls.append(len(image))
        time.sleep(0.05)
        if self.fail_once:
            self.fail_once = False
            raise RuntimeError("the network failed")
        return self.runner(image, meta)


def test_batching_runner_gives_each_caller_its_own_answer(shipped, classifier, example_images):
    from concurrent.futures import ThreadPoolExecutor

    from model.batching import BatchingRunner
    ex = example_images
    args = list(zip(ex["path"], ex["age"], ex["sex"], ex["site"], strict=True)) * 3
    direct = [shipped.predict(*a) for a in args]
    slow = SlowRunner(shipped.runner)
    classifier.runner = BatchingRunner(slow, max_batch=8)
    with ThreadPoolExecutor(8) as pool:
        batched = list(pool.map(lambda a: classifier.predict(*a), args))
    assert max(slow.calls) > 1 and max(slow.calls) <= 8 and sum(slow.calls) == len(args)
    for a, b in zip(direct, batched, strict=True):
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in shipped.classes) <= TOL
        assert a.label == b.label and a.in_scope == b.in_scope
        assert (a.heatmap is None) == (b.heatmap is None)
        if a.heatmap is not None:
            assert float(abs(a.heatmap - b.heatmap).max()) <= 1e-3


def test_batching_runner_error_reaches_the_callers_and_it_goes_on(shipped):
    from model.batching import BatchingRunner
    size = shipped.config["preprocessing"]["input_size"]
    image, meta = torch.zeros(1, 3, size, size), torch.zeros(1, shipped.spec.dim)
    runner = BatchingRunner(SlowRunner(shipped.runner, fail_once=True))
    with pytest.raises(RuntimeError, match="the network failed"):
        runner(image, meta)
    *_, logits = runner(image, meta)
    assert logits.shape == (1, 4) and torch.isfinite(logits).all()
