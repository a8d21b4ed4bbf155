"""Weights folders broken in the ways a download, a copy or an old version of the code can break them."""
from __future__ import annotations

import json
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent.parent / "weights"
BREAKAGES = ["no_config", "not_json", "corrupt_weights", "unknown_backbone", "no_metadata"]


def broken_weights(folder: Path, breakage: str) -> Path:
    """A copy of the shipped weights folder (config.json and model.safetensors) with one thing wrong."""
    folder.mkdir(parents=True)
    config = json.loads((SHIPPED / "config.json").read_text())
    weights = (SHIPPED / "model.safetensors").read_bytes()
    if breakage == "corrupt_weights":
        weights = weights[: len(weights) // 2]  # a download cut short: its sha256 no longer matches
    elif breakage == "unknown_backbone":
        config["architecture"]["backbone"] = "no_such_network"
    elif breakage == "no_metadata":
        config["metadata"] = {}
    (folder / "model.safetensors").write_bytes(weights)
    if breakage == "not_json":
        (folder / "config.json").write_text('{"classes": [')
    elif breakage != "no_config":
        (folder / "config.json").write_text(json.dumps(config))
    return folder

