"""The inference path: ONNX Runtime on CPU, the eager PyTorch module on GPU or when ONNX Runtime is missing.

A runner is called as `runner(image, meta) -> (maps, features, style, logits)`: the last spatial feature maps
(for Grad-CAM, see gradcam.py), the pooled image features (for the photo-type head), the style of an earlier
level (for the out-of-scope gate, see ood.py) and the logits, the same numbers as `model.forward_levels` /
`model.pool_maps` / `ood.style` / `model.forward_head`. One backbone pass gives everything a request needs:
Grad-CAM only back-propagates through the small head, in eager PyTorch.

Why ONNX Runtime: on a 2-core CPU it ran this network 2.5-3x faster than eager PyTorch, batch 1 and 32,
where channels_last, BatchNorm folding and TorchScript freezing gained 10-30% and torch.compile took minutes
to compile (benchmarks/benchmark.py measures them side by side). Its graph optimiser folds BatchNorm into
the convolutions and picks blocked memory layouts by itself. The graph is exported in memory at load, in
under a second: nothing is cached on disk, so it can never be stale. The gate's ImageNet measure
(skin_measure.py) goes the same way (`optimize_module`).
"""
from __future__ import annotations

import importlib.util
import io
import logging
import warnings
from contextlib import contextmanager

import torch
from torch import nn

from . import ood

log = logging.getLogger(__name__)

# Float32 reorders sums: allow this much difference, relative to the largest logit (or 1, whichever is larger).
RTOL = 1e-5


class EagerRunner:
    """The plain PyTorch path (GPU, or CPU without ONNX Runtime)."""
    name = "eager"

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return run_all(self.model, image, meta)


def run_all(model: nn.Module, image: torch.Tensor, meta: torch.Tensor) -> tuple[torch.Tensor, ...]:
    maps, earlier = model.forward_levels(image, ood.LEVEL)
    feats = model.pool_maps(maps)
    return maps, feats, ood.style(earlier), model.forward_head(feats, meta)


class _AllOutputs(nn.Module):
    """What gets exported: one graph with the three outputs, so the backbone runs once."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image, meta):
        return run_all(self.model, image, meta)


OUTPUTS = ("maps", "features", "style", "logits")


def export_onnx(model: nn.Module, input_size: int, meta_dim: int) -> bytes:
    """The eval-mode network as an ONNX graph (inputs image, meta; outputs OUTPUTS), any batch size."""
    image, meta = torch.zeros(2, 3, input_size, input_size), torch.zeros(2, meta_dim)
    return export_graph(_AllOutputs(model), (image, meta), ("image", "meta"), OUTPUTS)


def export_graph(module: nn.Module, example: tuple[torch.Tensor, ...], input_names, output_names) -> bytes:
    """An eval-mode module as an ONNX graph, dynamic in the batch dimension of every input and output.

    The TorchScript-based exporter is used because it takes about a second here where the torch.export-based
    one takes twenty: export time is start-up time. Its deprecation warning is expected and silenced.
    """
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, buf, dynamo=False, opset_version=17,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes={name: {0: "batch"} for name in (*input_names, *output_names)})
    return buf.getvalue()


class OnnxRunner:
    """ONNX Runtime on CPU, with all graph optimisations and as many threads as torch uses.

    Its threads sleep between calls instead of spinning: spinning threads took the cores from the PyTorch
    work that follows in the same request (Grad-CAM, the next photo's preprocessing) and made both slower.
    """
    name = "onnxruntime"

    def __init__(self, onnx_model: bytes, threads: int | None = None):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])

    def __call__(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The graph's inputs in their order (image, meta for the network) -> its outputs in their order."""
        inputs = {i.name: t.contiguous().numpy() for i, t in zip(self.session.get_inputs(), tensors, strict=True)}
        return tuple(torch.from_numpy(o) for o in self.session.run(None, inputs))


def max_difference(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> float:
    """The largest absolute difference between two runners' outputs, relative to max(1, |values|)."""
    return max(float((x - y).abs().max() / max(1.0, float(y.abs().max()))) for x, y in zip(a, b, strict=True))


@contextmanager
def one_thread():
    """Set-up runs a single small forward pass: one thread does it as fast, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def optimize(model: nn.Module, input_size: int, device: torch.device | str = "cpu"):
    """The fastest runner for `model` (eval mode, on `device`) that gives the eager module's numbers.

    On CPU: ONNX Runtime, checked once against eager on a random input; eager if onnxruntime is not
    installed, the export fails or the check does not pass. On GPU: eager with channels_last.
    """
    device = torch.device(device)
    if device.type != "cpu":
        return EagerRunner(model.to(memory_format=torch.channels_last))
    meta_dim = model.args.meta_dim
    generator = torch.Generator().manual_seed(0)
    example = (torch.randn(1, 3, input_size, input_size, generator=generator),
               torch.randn(1, meta_dim, generator=generator))
    return fastest(EagerRunner(model), lambda: export_onnx(model, input_size, meta_dim), example)


class EagerModule:
    """Any module as a runner: a tuple of its outputs."""
    name = "eager"

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.module(*tensors)
        return out if isinstance(out, tuple) else (out,)


def optimize_module(module: nn.Module, example: tuple[torch.Tensor, ...], input_names, output_names,
                    device: torch.device | str = "cpu"):
    """`optimize` for any other eval-mode module (the gate's ImageNet measure): a runner of it on `device`, whose
    outputs are always a tuple; `example` is a batch of one of its inputs."""
    eager = EagerModule(module)
    if torch.device(device).type != "cpu":
        return eager
    return fastest(eager, lambda: export_graph(module, example, input_names, output_names), example)


def fastest(eager, export, example: tuple[torch.Tensor, ...]):
    """ONNX Runtime on the graph `export()` returns, if it runs and gives `eager`'s numbers on `example`; else
    `eager`. Any failure here must cost speed, never the answer."""
    if importlib.util.find_spec("onnxruntime") is None:
        log.info("onnxruntime is not installed: running the model in eager PyTorch (slower).")
        return eager
    threads = torch.get_num_threads()
    try:
        with one_thread():
            runner = OnnxRunner(export(), threads)
            with torch.inference_mode():
                difference = max_difference(runner(*example), eager(*example))
    except Exception as e:
        log.warning("ONNX Runtime could not run the model (%s): running it in eager PyTorch.", e)
        return eager
    if not difference <= RTOL:
        log.warning("ONNX Runtime's outputs differ from PyTorch's by %.2g: running the model in eager PyTorch.",
                    difference)
        return eager
    return runner
