"""Static int8 quantization of a face model's ONNX graph, shipped as its own model next to the float weights.

Why: on a CPU without AVX-512 ONNX Runtime runs EmoNet-F near the core's FP32 FMA peak (~1.5-1.8 ms per face),
so the ``fast`` budget (1 ms) holds only at a third of its FLOPs in float. int8 (QDQ, per-channel weights,
uint8 activations, ranges calibrated on training faces) runs the same network in ~0.9 ms.

One detail matters for accuracy: without AVX-VNNI, ONNX Runtime's u8 x s8 convolutions use ``VPMADDUBSW``,
which adds two u8 x s8 products into a saturating int16. The first convolution (one input channel: raw pixels
that fill the whole uint8 range, times large first-layer weights) saturates and costs 3-4 points on FER-2013;
keeping that one cheap convolution in float (``exclude="first_conv"``) removes the loss (measured in
``benchmarks/int8_check.py``). The graph that is quantized is the one the pipeline runs
(``cached_model_onnx``); the result is what gets shipped and scored, so the card's metrics are the int8 graph's.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..models.card import ModelCard

#: what ``exclude`` accepts: keep these nodes in float
EXCLUDE_CHOICES = ("none", "first_conv", "first_conv+fc")
METHODS = ("minmax", "entropy", "percentile")


def _excluded_nodes(model_path: Path, exclude: str) -> list[str]:
    import onnx

    if exclude not in EXCLUDE_CHOICES:
        raise ValueError(f"exclude={exclude!r}: expected one of {', '.join(EXCLUDE_CHOICES)}")
    if exclude == "none":
        return []
    g = onnx.load(str(model_path)).graph
    inputs = {i.name for i in g.input}
    names = [n.name for n in g.node if n.op_type == "Conv" and inputs & set(n.input)]
    if not names:
        raise ValueError(f"{model_path}: no Conv reads the graph input; exclude='{exclude}' does not apply")
    if exclude == "first_conv+fc":
        names += [n.name for n in g.node if n.op_type in ("Gemm", "MatMul")]
    return names


def quantize_int8(src_onnx: Path, out: Path, calib: np.ndarray, *, exclude: str = "first_conv",
                  reduce_range: bool = False, per_channel: bool = True, method: str = "minmax",
                  batch: int = 32) -> dict:
    """Quantize ``src_onnx`` (float, input ``(N, C, S, S)`` normalized) to a QDQ int8 graph at ``out``.

    ``calib``: model inputs (already normalized, float32) whose activation ranges set the scales. Returns the
    settings, for the model card.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(METHODS)}")
    calib = np.ascontiguousarray(calib, np.float32)
    if calib.ndim != 4 or len(calib) == 0:
        raise ValueError(f"calibration inputs must be a non-empty (N, C, S, S) array, got shape {calib.shape}")
    from ..models.onnx import ort_session

    in_name = ort_session(src_onnx).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(calib):
                return None
            self.i += batch
            return {in_name: calib[self.i - batch:self.i]}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src_onnx), str(pre))
        nodes = _excluded_nodes(pre, exclude)
        cm = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[method]
        q = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=cm, nodes_to_exclude=nodes)
        shutil.move(str(q), str(out))
    return {"format": "ONNX QDQ", "weights": "int8, per-channel" if per_channel else "int8, per-tensor",
            "activations": "uint8, per-tensor", "calibration": method, "calibration_faces": int(len(calib)),
            "reduce_range": bool(reduce_range), "float_nodes": nodes, "exclude": exclude,
            "onnxruntime": ort.__version__}


def machine_description() -> str:
    """CPU model, cores and the SIMD level that decides int8 / float speed (AVX-512, VNNI, AVX2)."""
    import os
    import platform

    cpu, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu is None:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    simd = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2" if flags else "SIMD unknown")
    if flags:
        simd += ", VNNI" if flags & {"avx512_vnni", "avx_vnni"} else ", no VNNI"
    return f"{cpu}, {os.cpu_count()} cores, {simd}"


def graph_latency_ms(path: Path, in_shape: tuple[int, int, int], runs: int = 300, threads: int = 1,
                     batch: int = 1, seed: int = 0) -> float:
    """Median ms per face of one ONNX graph, ``batch`` faces per call, on ``threads`` threads (random input)."""
    import time

    from ..models.onnx import ort_session

    sess = ort_session(path, threads)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(seed).standard_normal((batch, *in_shape)).astype(np.float32)
    for _ in range(20):
        sess.run(None, {name: x})
    ts = []
    for _ in range(max(20, runs // batch)):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts) * 1000 / batch)


def quantize_model(model: str, calib_images_u8: np.ndarray, out_dir: Path, name: str, *,
                   exclude: str = "first_conv", reduce_range: bool = False, method: str = "minmax",
                   calibration_source: str = "", notes: str = "") -> Path:
    """Write ``<out_dir>/<name>.onnx`` (int8) and ``<name>.json`` (the source's card + ``onnx_graph``).

    The card points at the source's float weights (``"weights"``) when they lie in ``out_dir`` already (a shipped
    model quantized into the package), else the weights are copied as ``<name>.safetensors``. PyTorch paths
    (explanations, fine-tuning, ``--backend torch``) use those float weights; ONNX Runtime runs the int8 graph.
    """
    from ..data.cache import file_hash
    from ..data.preprocess import prepare_crops
    from ..models.hub import load_model
    from ..models.onnx import cached_model_onnx

    lm = load_model(model)
    if lm.card.get("members"):
        raise ValueError(f"{model}: an ensemble has no weights of its own and runs its members in float; "
                         "int8 ensembles are not supported (quantize a member to run it alone)")
    if lm.card.get("onnx_graph"):
        raise ValueError(f"{model}: already an int8 graph ({lm.card['onnx_graph']['file']}); quantize its float "
                         "source instead")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = prepare_crops(np.asarray(calib_images_u8), lm.preprocess)
    graph = out_dir / f"{name}.onnx"
    spec = quantize_int8(cached_model_onnx(lm), graph, calib, exclude=exclude, reduce_range=reduce_range,
                         method=method)
    if calibration_source:
        spec["calibration_source"] = calibration_source
    # the source's card without its test metrics and shipping state (those belong to the float weights)
    card = ModelCard.from_dict(lm.card, lm.card_path or model).without("metrics", "status", "shipped", "reproduce",
                                                                       "weights")
    card.name = name
    card.quantized_from = lm.name
    card.notes = notes or (f"int8 ONNX graph of {lm.name} (static quantization, "
                           f"{exclude.replace('_', ' ')} kept in float); see onnx_graph and metrics")
    if lm.card.get("notes"):
        card.set("source_notes", lm.card["notes"])
    if lm.weights.parent.resolve() == out_dir.resolve():
        card.weights = lm.weights.name
    else:
        shutil.copyfile(lm.weights, out_dir / f"{name}.safetensors")
    card.onnx_graph = {"file": graph.name, "sha256": file_hash(graph, "sha256"), "precision": "int8", **spec,
                       "note": "ONNX Runtime (the CPU backend of the pipeline, serve and evaluate) runs this "
                               "graph; --backend torch runs the float weights it was quantized from"}
    return card.write(out_dir / f"{name}.json")
