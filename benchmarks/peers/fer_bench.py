"""End-to-end speed of the `fer` package on given frames, for ``emotionlab bench --peers``.

Runs inside ``benchmarks/.venv-fer``::

    benchmarks/.venv-fer/bin/python benchmarks/peers/fer_bench.py FRAMES.npz [--threads 1] [--repeat 3]

FRAMES.npz holds ``frames`` (F,H,W,3) uint8 BGR (e.g. 640x480). Each frame goes through
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
    res = fer_common.time_frames(det, frames, args.repeat, args.warmup)
    res.update(threads=args.threads, versions=fer_common.versions())
    fer_common.emit(res, args.out)


if __name__ == "__main__":
    main()
