"""Run the `fer` package (pip ``fer==25.10.3``) on the crops and frames that compare_peers.py wrote.

Runs inside ``benchmarks/.venv-fer`` (TensorFlow lives there, not in emotionlab's venv)::

    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_eval.py INPUT.npz [--out OUT.json] [--threads 1]
        [--keras] [--offsets 10,10] [--repeat 3]

INPUT.npz holds ``crops`` (N,48,48) uint8 face crops and optionally ``frames`` (F,H,W,3) uint8 BGR.

Classification goes through fer's public ``FER.detect_emotions(img, face_rectangles=[(0, 0, w, h)])`` on each
crop (made BGR), exactly as fer handles a face its detector found: square the box, grow it by ``offsets``
(default 10 px each side; the part outside the crop is filled by fer's 40 px constant border of the mean of
the bottom rows), grayscale, resize to 64x64, scale to [-1, 1], classify. ``detect_emotions`` rounds scores
to 2 decimals, which creates argmax ties, so we also record the unrounded classifier output by wrapping
``_classify_emotions`` on the instance (it still runs fer's own code). The arrays fer fed its classifier are
kept and re-run as one batch through fer's ``_classify_emotions`` to measure its batch throughput.

Prints one JSON object on stdout (and writes it to --out): fer's label order, per-crop probabilities, timings.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fer_common
import numpy as np


def classify_crops(det, crops: np.ndarray) -> dict:
    """Per-crop ``detect_emotions`` with the face box = the whole crop; returns probabilities and timings."""
    import cv2

    captured_in: list[np.ndarray] = []
    captured_out: list[np.ndarray] = []
    original = det._classify_emotions

    def capture(gray_faces):
        out = original(gray_faces)
        captured_in.append(np.array(gray_faces, copy=True))
        captured_out.append(np.asarray(out, dtype=np.float32))
        return out

    det._classify_emotions = capture  # instance attribute shadows the method; fer's code path is unchanged
    h, w = crops.shape[1:3]
    bgr = [cv2.cvtColor(c, cv2.COLOR_GRAY2BGR) for c in crops]
    for im in bgr[:5]:  # warm-up (XNNPACK / Keras tracing)
        det.detect_emotions(im, face_rectangles=[(0, 0, w, h)])
    captured_in.clear()
    captured_out.clear()
    times = np.empty(len(crops))
    rounded = np.zeros((len(crops), 7), np.float32)
    labels = fer_common.fer_labels()
    for i, im in enumerate(bgr):
        t0 = time.perf_counter()
        res = det.detect_emotions(im, face_rectangles=[(0, 0, w, h)])
        times[i] = time.perf_counter() - t0
        if len(res) != 1:
            raise SystemExit(f"error: crop {i}: fer returned {len(res)} faces for one given box, expected 1")
        rounded[i] = [res[0]["emotions"][k] for k in labels]
    det._classify_emotions = original
    if len(captured_out) != len(crops):
        raise SystemExit(f"error: captured {len(captured_out)} classifier calls for {len(crops)} crops")
    probs = np.concatenate(captured_out, 0)
    inputs = np.concatenate(captured_in, 0)

    # Batch throughput of fer's own classifier call on exactly the inputs it built above.
    bs = 256
    t0 = time.perf_counter()
    batch_out = [np.asarray(original(inputs[i:i + bs]), np.float32) for i in range(0, len(inputs), bs)]
    batch_s = time.perf_counter() - t0
    batch_probs = np.concatenate(batch_out, 0) if batch_out else probs[:0]
    ms = times * 1000.0
    return {
        "labels": labels,
        "probs": probs.tolist(),
        "rounded_argmax": rounded.argmax(1).tolist(),
        "classifier_input_shape": list(inputs.shape[1:]),
        "classifier_input_range": [float(inputs.min()), float(inputs.max())] if len(inputs) else None,
        "ms_per_face": float(ms.mean()) if len(ms) else None,
        "p50_ms_per_face": float(np.percentile(ms, 50)) if len(ms) else None,
        "batch_size": bs,
        "batch_ms_per_face": 1000.0 * batch_s / max(1, len(inputs)),
        "batch_max_abs_diff": float(np.abs(batch_probs - probs).max()) if len(probs) else 0.0,
        "n": len(crops),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("npz", help="input .npz with 'crops' (N,48,48) uint8 and optional 'frames' (F,H,W,3) uint8")
    ap.add_argument("--out", help="also write the JSON result here")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for TensorFlow / TFLite / OpenCV")
    ap.add_argument("--keras", action="store_true",
                    help="use fer's float Keras .hdf5 model instead of its default quantized TFLite model")
    ap.add_argument("--offsets", default="10,10", help="fer's box offsets x,y in pixels (fer default 10,10)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the frames")
    ap.add_argument("--no-frames", action="store_true", help="skip the end-to-end frame timing")
    args = ap.parse_args(argv)
    try:
        offsets = tuple(int(v) for v in args.offsets.split(","))
        assert len(offsets) == 2
    except (ValueError, AssertionError):
        raise SystemExit(f"error: --offsets {args.offsets!r}: expected two integers 'x,y', e.g. 10,10") from None

    fer_common.pin_threads(args.threads)
    warnings.filterwarnings("ignore")
    data = fer_common.load_npz(args.npz)
    det = fer_common.make_fer(args.threads, use_tflite=not args.keras, offsets=offsets)
    result: dict = {"peer": "fer", "model": "keras hdf5 (float)" if args.keras else "tflite (quantized, fer default)",
                    "offsets": list(offsets), "threads": args.threads, "versions": fer_common.versions()}
    if "crops" in data:
        crops = data["crops"]
        if crops.ndim != 3 or crops.dtype != np.uint8:
            raise SystemExit(f"error: {args.npz}: 'crops' has shape {crops.shape} dtype {crops.dtype}, "
                             "expected (N, H, W) uint8 grayscale")
        result["classify"] = classify_crops(det, crops)
    if "frames" in data and not args.no_frames:
        frames = fer_common.check_frames(data["frames"], args.npz)
        groups = data.get("frame_faces")
        boxes = data.get("frame_boxes")
        result["frames"] = {}
        keys = sorted(set(groups.tolist())) if groups is not None else [None]
        for k in keys:
            sel = np.ones(len(frames), bool) if k is None else groups == k
            result["frames"][str(k if k is not None else "all")] = fer_common.time_frames(
                det, frames[sel], args.repeat, boxes=None if boxes is None else boxes[sel])
    fer_common.emit(result, args.out)


if __name__ == "__main__":
    main()
