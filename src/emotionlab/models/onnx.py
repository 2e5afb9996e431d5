"""ONNX export of emotion models (dynamic batch, opset 17), checked against PyTorch, plus a hash-keyed cache,
and the one builder of ONNX Runtime sessions (``ort_session``).

ONNX Runtime is the default CPU backend of the face pipeline: the loaded model is exported once to the user
cache (``emotionlab.data.cache.cache_dir()/onnx``), keyed by the weights' content hash, so retraining or a new
shipped model never reuses a stale graph. It lives in the models layer so that ``models.classifier`` (and so
evaluation, explain, calibration) can run the served graph without importing ``inference``.
"""
from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

OPSET = 17


def ort_session(path: str | os.PathLike, threads: int = 1):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (0: ONNX Runtime's default, one per core).

    Why one builder: the pipeline runs one session per worker, and a worker must use the threads it was given,
    not every core (``inter_op`` stays 1: these graphs are a single chain of ops)."""
    import onnxruntime as ort

    if int(threads) < 0:
        raise ValueError(f"threads must be >= 0 (0: ONNX Runtime's default), got {threads}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


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
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, in_chans, in_size, in_size),
                                                                     dtype=np.float32))
    with torch.inference_mode():
        ref = model.eval()(x).float().numpy()
    sess = ort_session(path, threads=0)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != ref.shape:
        raise RuntimeError(f"{path}: ONNX output shape {got.shape} != PyTorch {ref.shape}")
    return float(np.abs(got - ref).max())


def export_onnx(model_name_or_path: str, out: Path | None = None, atol: float = 1e-3) -> Path:
    """Export a shipped / trained model to ONNX next to a copy of its model card; raise if outputs disagree."""
    from ..models.card import ModelCard
    from ..models.hub import load_model

    lm = load_model(model_name_or_path, "cpu")
    out = Path(out) if out is not None else Path("out") / f"{lm.name}.onnx"
    if out.suffix != ".onnx":
        out = out / f"{lm.name}.onnx" if out.is_dir() or not out.suffix else out.with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    in_chans, in_size = int(lm.card.get("in_chans", 1)), int(lm.card["in_size"])
    graph = shipped_graph(lm)
    if graph is not None:  # an int8 model: its graph is the product (the float weights are its source)
        shutil.copyfile(graph, out)
        card = ModelCard.from_dict(lm.card, lm.card_path or lm.name)
        card.set("onnx", {"opset": OPSET, "precision": "int8 (QDQ)", "copied_from": graph.name,
                          "input": f"input (batch, {in_chans}, {in_size}, {in_size}) float32, normalized",
                          "output": "logits (batch, num_classes)"})
        card.write(out.with_suffix(".json"))
        return out
    _export_module(lm.model, in_chans, in_size, out)
    diff = verify_onnx(lm.model, out, in_chans, in_size)
    if diff > atol:
        raise RuntimeError(f"{out}: ONNX and PyTorch outputs differ by {diff:.2e} (> {atol:g})")
    card = ModelCard.from_dict(lm.card, lm.card_path or lm.name)  # the model's card, with the export's record
    card.set("onnx", {"opset": OPSET, "input": f"input (batch, {in_chans}, {in_size}, {in_size}) float32, "
                                               "normalized",
                      "output": "logits (batch, num_classes)", "max_abs_diff_vs_torch": diff})
    card.write(out.with_suffix(".json"))
    return out


def cached_onnx(key: str, weights: Path | Sequence[Path], export: Callable[[Path], None]) -> Path:
    """Path of an ONNX file for ``weights`` (one file, or all of an ensemble's) in the cache, exporting it
    (atomically) on first use."""
    import hashlib

    from ..data.cache import cache_dir, file_hash

    files = [weights] if isinstance(weights, (str, os.PathLike)) else list(weights)
    digest = file_hash(files[0])[:16] if len(files) == 1 else hashlib.sha1(
        "".join(file_hash(f) for f in files).encode()).hexdigest()[:16]
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


_VERIFIED: dict[tuple[str, int], str] = {}


def shipped_graph(lm) -> Path | None:
    """The model's own ONNX graph (``card["onnx_graph"]``: an int8 graph beside its card), checked against the
    card's sha256, or None for a float model (whose graph is exported from the weights)."""
    g = lm.card.get("onnx_graph")
    if not g:
        return None
    if lm.card_path is None or not isinstance(g, dict) or "file" not in g or "sha256" not in g:
        raise ValueError(f"{lm.card_path or lm.name}: field 'onnx_graph' needs 'file' and 'sha256' and a card path")
    path = Path(lm.card_path).with_name(str(g["file"]))
    if Path(g["file"]).name != g["file"] or not path.exists():
        raise FileNotFoundError(f"{lm.card_path}: its ONNX graph {g['file']!r} is missing beside the card")
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _VERIFIED:
        from ..data.cache import file_hash

        _VERIFIED[key] = file_hash(path, "sha256")
    if _VERIFIED[key] != g["sha256"]:
        raise ValueError(f"{path}: sha256 {_VERIFIED[key][:16]}... does not match its model card "
                         f"({str(g['sha256'])[:16]}...): the graph was changed or damaged; re-run "
                         "`emotionlab maintain quantize`")
    return path


def cached_model_onnx(lm) -> Path:
    """ONNX file for a hub ``LoadedModel``: its shipped int8 graph if the card names one, else the float graph
    exported from the weights (cached by their hash), verified once when exported."""
    shipped = shipped_graph(lm)
    if shipped is not None:
        return shipped
    in_chans, in_size = int(lm.card.get("in_chans", 1)), int(lm.card["in_size"])

    def export(path: Path) -> None:
        _export_module(lm.model, in_chans, in_size, path)
        diff = verify_onnx(lm.model, path, in_chans, in_size)
        if diff > 1e-3:
            raise RuntimeError(f"ONNX export of {lm.name} differs from PyTorch by {diff:.2e}")

    return cached_onnx(f"model-{lm.name}", list(lm.weight_files) or [Path(lm.weights)], export)
