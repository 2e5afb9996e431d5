"""End-to-end speed of the `fer` package on given frames, for ``emotionlab bench --peers``.

Runs inside ``benchmarks/.venv-fer``::

    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_bench.py FRAMES.npz [--threads 1] [--repeat 3]

FRAMES.npz holds ``frames`` (F,H,W,3) uint8 BGR (e.g. 640x480) and optionally ``frame_faces`` (F,) ints
(faces per frame; adds a ``by_faces`` entry with the same timing per group) and ``frame_boxes`` (F,K,4) x,y,w,h
of the pasted faces, -1 rows as padding (adds ``faces_matched_per_frame``). Each frame goes through
``FER(mtcnn=False).detect_emotions(frame)`` (fer's default OpenCV Haar detector + its bundled classifier).
Prints JSON ``{"ms_per_frame": ..., "fps": ..., "p50_ms": ..., "p90_ms": ..., "frames": ..., "repeat": ...,
"faces_found_per_frame": ..., "threads": ..., "versions": {...}}`` on stdout.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fer_common


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("npz", help="input .npz with 'frames' (F,H,W,3) uint8 BGR")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for TensorFlow / TFLite / OpenCV")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the frames")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    ap.add_argument("--out", help="also write the JSON result here")
    args = ap.parse_args(argv)
    fer_common.pin_threads(args.threads)
    warnings.filterwarnings("ignore")
    data = fer_common.load_npz(args.npz)
    if "frames" not in data:
        raise SystemExit(f"error: {args.npz}: no 'frames' array (has {sorted(data)}); expected (F,H,W,3) uint8 BGR")
    frames = fer_common.check_frames(data["frames"], args.npz)
    det = fer_common.make_fer(args.threads)
    groups = data.get("frame_faces")  # faces pasted per frame: also report timing per group
    if groups is not None and len(groups) != len(frames):
        raise SystemExit(f"error: {args.npz}: 'frame_faces' has {len(groups)} entries for {len(frames)} frames")
    boxes = data.get("frame_boxes")  # pasted face boxes (F, K, 4): also count faces found at those places
    if boxes is not None and (boxes.ndim != 3 or len(boxes) != len(frames) or boxes.shape[2] != 4):
        raise SystemExit(f"error: {args.npz}: 'frame_boxes' has shape {boxes.shape}, expected ({len(frames)}, K, 4)")
    res = fer_common.time_frames(det, frames, args.repeat, args.warmup, groups, boxes)
    res.update(threads=args.threads, versions=fer_common.versions())
    fer_common.emit(res, args.out)


if __name__ == "__main__":
    main()
