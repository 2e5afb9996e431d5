"""ONNX export of emotion models (dynamic batch, opset 17), checked against PyTorch, plus a hash-keyed cache.

ONNX Runtime is the default CPU backend of the face pipeline: the loaded model is exported once to the user
cache (``emotionlab.data.cache.cache_dir()/onnx``), keyed by the weights' content hash, so retraining or a new
shipped model never reuses a stale graph.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

OPSET = 17


def _export_module(model: torch.nn.Module, in_chans: int, in_size: int, path: Path) -> None:
    """TorchScript-based exporter: the dynamo one needs onnxscript, which is not a dependency."""
    import warnings

    x = torch.randn(2, in_chans, in_size, in_size)
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)


def verify_onnx(model: torch.nn.Module, path: Path, in_chans: int, in_size: int, batch: int = 3,
                seed: int = 0) -> float:
    """Max |ONNX - PyTorch| on random input (a batch size unlike the export's, to prove the batch is dynamic)."""
    import onnxruntime as ort

    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, in_chans, in_size, in_size),
                                                                     dtype=np.float32))
    with torch.inference_mode():
        ref = model.eval()(x).float().numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != ref.shape:
        raise RuntimeError(f"{path}: ONNX output shape {got.shape} != PyTorch {ref.shape}")
    return float(np.abs(got - ref).max())


def export_onnx(model_name_or_path: str, out: Path | None = None, atol: float = 1e-3) -> Path:
    """Export a shipped / trained model to ONNX next to a copy of its model card; raise if outputs disagree."""
    from ..models.hub import load_model

    lm = load_model(model_name_or_path, "cpu")
    out = Path(out) if out is not None else Path("out") / f"{lm.name}.onnx"
    if out.suffix != ".onnx":
        out = out / f"{lm.name}.onnx" if out.is_dir() or not out.suffix else out.with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    in_chans, in_size = int(lm.card.get("in_chans", 1)), int(lm.card["in_size"])
    _export_module(lm.model, in_chans, in_size, out)
    diff = verify_onnx(lm.model, out, in_chans, in_size)
    if diff > atol:
        raise RuntimeError(f"{out}: ONNX and PyTorch outputs differ by {diff:.2e} (> {atol:g})")
    card = dict(lm.card)
    card["onnx"] = {"opset": OPSET, "input": f"input (batch, {in_chans}, {in_size}, {in_size}) float32, normalized",
                    "output": "logits (batch, num_classes)", "max_abs_diff_vs_torch": diff}
    out.with_suffix(".json").write_text(json.dumps(card, indent=2))
    return out


def cached_onnx(key: str, weights: Path, export: Callable[[Path], None]) -> Path:
    """Path of an ONNX file for ``weights`` in the cache, exporting it (atomically) on first use."""
    from ..data.cache import cache_dir, file_hash

    digest = file_hash(weights)[:16]
    d = cache_dir() / "onnx"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{key}-{digest}-op{OPSET}-torch{torch.__version__.split('+')[0]}.onnx"
    if path.exists() and path.stat().st_size > 0:
        return path
    tmp = path.with_name(path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")  # server threads race
    try:
        export(tmp)
        shutil.move(str(tmp), str(path))
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def cached_model_onnx(lm) -> Path:
    """ONNX file for a hub ``LoadedModel`` (cached by its weights' hash), verified once when exported."""
    in_chans, in_size = int(lm.card.get("in_chans", 1)), int(lm.card["in_size"])

    def export(path: Path) -> None:
        _export_module(lm.model, in_chans, in_size, path)
        diff = verify_onnx(lm.model, path, in_chans, in_size)
        if diff > 1e-3:
            raise RuntimeError(f"ONNX export of {lm.name} differs from PyTorch by {diff:.2e}")

    return cached_onnx(f"model-{lm.name}", Path(lm.weights), export)
