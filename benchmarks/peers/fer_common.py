"""Shared helpers for the scripts that run the `fer` package inside its own venv (benchmarks/.venv-fer).

These scripts import only what that venv has (numpy, OpenCV, TensorFlow, fer), never emotionlab, so that the
peer runs exactly as its users would run it. Threads are pinned *before* TensorFlow is imported: on a shared
2-core machine an unpinned TF would grab every core and make the comparison meaningless.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def pin_threads(threads: int) -> None:
    """Limit TensorFlow / TFLite / OpenCV / BLAS to ``threads`` CPU threads (call before importing fer)."""
    n = str(max(1, int(threads)))
    for var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS"):
        os.environ[var] = n
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import cv2

    cv2.setNumThreads(int(n))


def make_fer(threads: int = 1, use_tflite: bool = True, offsets: tuple[int, int] = (10, 10)):
    """A ``fer.fer.FER`` with its default OpenCV Haar detector (``mtcnn=False``) and ``threads`` threads.

    fer caches one class-level TFLite interpreter created without ``num_threads``; we pre-fill that cache
    with an interpreter of the same bundled model file but a fixed thread count, which changes nothing
    else in fer's code path.
    """
    import logging

    import pkg_resources
    import tensorflow as tf
    from fer.fer import FER

    logging.getLogger("fer").setLevel(logging.WARNING)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if use_tflite and FER._tflite_interpreter_cache is None:
        path = pkg_resources.resource_filename("fer", "data/emotion_model_quantized.tflite")
        interp = tf.lite.Interpreter(model_path=path, num_threads=threads)
        interp.allocate_tensors()
        FER._tflite_interpreter_cache = interp
    return FER(mtcnn=False, use_tflite=use_tflite, offsets=tuple(offsets))


def fer_labels() -> list[str]:
    """fer's class order (index -> name), read from fer itself rather than assumed."""
    from fer.fer import FER

    lab = FER._get_labels()
    return [lab[i] for i in range(len(lab))]


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"error: {p}: file not found (expected an .npz written by benchmarks/compare_peers.py)")
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def check_frames(frames: np.ndarray, path: str) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise SystemExit(f"error: {path}: 'frames' has shape {frames.shape} dtype {frames.dtype}, "
                         "expected (N, H, W, 3) uint8 BGR")
    return frames


def matched_faces(found, truth, iou_thr: float = 0.3) -> int:
    """How many true faces (x, y, w, h; rows with w < 0 are padding) have their own found box with IoU >= thr.

    Used by both sides of the comparison (fer here, emotionlab in compare_peers.py), so "faces found"
    counts real faces, not false positives elsewhere in the frame.
    """
    def iou(a, b) -> float:
        iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)

    free = [tuple(float(v) for v in f) for f in found]
    n = 0
    for t in truth:
        if t[2] < 0:
            continue
        scores = [iou(t, f) for f in free]
        if scores and max(scores) >= iou_thr:
            free.pop(int(np.argmax(scores)))
            n += 1
    return n


def summarize(ms: np.ndarray, found: np.ndarray, matched: np.ndarray | None = None) -> dict:
    """Mean / p50 / p90 ms per frame, fps, and faces found (and matched to the pasted faces) per frame."""
    mean = float(ms.mean()) if len(ms) else float("nan")
    out = {"ms_per_frame": mean, "fps": 1000.0 / mean if len(ms) else float("nan"),
           "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
           "p90_ms": float(np.percentile(ms, 90)) if len(ms) else None,
           "faces_found_per_frame": float(found.mean()) if len(found) else 0.0}
    if matched is not None:
        out["faces_matched_per_frame"] = float(matched.mean()) if len(matched) else 0.0
    return out


def time_frames(det, frames: np.ndarray, repeat: int = 3, warmup: int = 2, groups: np.ndarray | None = None,
                boxes: np.ndarray | None = None) -> dict:
    """End-to-end ``detect_emotions`` (Haar detection + classification) per frame, as fer's users call it.

    Every frame is processed ``repeat`` times after ``warmup`` untimed calls; we report the mean and
    percentiles of per-frame wall time and how many faces fer found (and, given the pasted ``boxes``
    (F, K, 4), how many of those it found), so a fast time can't hide missed faces. With ``groups``
    (faces pasted per frame) the same measurements are also summarized per group.
    """
    for i in range(min(warmup, len(frames))):
        det.detect_emotions(frames[i])
    times, found, matched, gid = [], [], [], []
    for _ in range(repeat):
        for i, f in enumerate(frames):
            t0 = time.perf_counter()
            res = det.detect_emotions(f)
            times.append(time.perf_counter() - t0)
            found.append(len(res))
            if boxes is not None:
                matched.append(matched_faces([r["box"] for r in res], boxes[i]))
            gid.append(i)
    ms, found_a, gid_a = np.asarray(times) * 1000.0, np.asarray(found), np.asarray(gid, dtype=np.int64)
    matched_a = np.asarray(matched) if boxes is not None else None
    out = {**summarize(ms, found_a, matched_a), "frames": len(frames), "repeat": int(repeat)}
    if groups is not None:
        g = np.asarray(groups)[gid_a] if len(gid_a) else np.asarray([])
        out["by_faces"] = {
            str(k): {**summarize(ms[g == k], found_a[g == k], None if matched_a is None else matched_a[g == k]),
                     "frames": int((groups == k).sum())}
            for k in sorted(set(np.asarray(groups).tolist()))}
    return out


def versions() -> dict:
    import cv2
    import fer
    import tensorflow as tf

    return {"fer": fer.__version__, "tensorflow": tf.__version__, "opencv": cv2.__version__,
            "numpy": np.__version__, "python": sys.version.split()[0]}


def emit(obj: dict, out: str | None) -> None:
    """Write the JSON result to ``out`` (if given) and to stdout; logs go to stderr only."""
    text = json.dumps(obj, indent=2)
    if out:
        Path(out).write_text(text + "\n")
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
