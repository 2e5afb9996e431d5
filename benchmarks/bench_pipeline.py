"""Face detector recall / false positives / speed on frames with known face boxes, and the BlazeFace port check.

    .venv/bin/python benchmarks/bench_pipeline.py [--data PATH] [--frames 100] [--json OUT]
        [--mediapipe-python /tmp/mpvenv/bin/python]

Frames: 640x480 textured backgrounds with 1-4 UTKFace chips (aligned 200x200 face photos, from
``$EMOTIONLAB_DATA/utkface/UTKFace`` or ``../shared/data``) pasted at sides 40-240 px, plus the same number of
frames without faces (false positives per frame). A detection is a hit when its centre lies in the central half
of a pasted chip and its side is 0.3-1.1 of the chip's side. With ``--mediapipe-python`` (a throwaway venv with
``mediapipe==0.10.21``) the same frames also go through MediaPipe's own BlazeFace, to check the port.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
W, H = 640, 480

MP_SCRIPT = r"""
import json, sys, numpy as np, mediapipe as mp
d = np.load(sys.argv[1]); frames = d["frames"]; out = {}
for sel, name in ((0, "mediapipe_short"), (1, "mediapipe_full")):
    res = []
    with mp.solutions.face_detection.FaceDetection(model_selection=sel, min_detection_confidence=0.5) as det:
        for f in frames:
            r = det.process(np.ascontiguousarray(f[:, :, ::-1]))
            boxes = []
            for x in (r.detections or []):
                b = x.location_data.relative_bounding_box
                boxes.append([b.xmin * f.shape[1], b.ymin * f.shape[0], b.width * f.shape[1], b.height * f.shape[0],
                              float(x.score[0])])
            res.append(boxes)
    out[name] = res
json.dump(out, open(sys.argv[2], "w"))
"""


from emotionlab.data.paths import default_data_root  # noqa: E402  (the one default-data rule)


def make_frames(chips: list[Path], n: int, seed: int):
    import cv2

    rng = np.random.default_rng(seed)
    frames, gts = [], []
    for i in range(2 * n):
        bg = rng.integers(40, 220, size=(H // 16, W // 16, 3)).astype(np.uint8)
        img = cv2.GaussianBlur(cv2.resize(bg, (W, H), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
        for _ in range(6):  # some non-face structure
            p = rng.integers(0, [W, H, W, H])
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), tuple(int(c) for c in rng.integers(0, 255, 3)),
                          int(rng.integers(2, 8)))
        boxes: list[tuple[int, int, int]] = []
        k = int(rng.integers(1, 5)) if i < n else 0
        tries = 0
        while len(boxes) < k and tries < 200:
            tries += 1
            s = int(rng.integers(40, 241))
            x, y = int(rng.integers(0, W - s)), int(rng.integers(0, H - s))
            if any(x < bx + bs and bx < x + s and y < by + bs and by < y + s for bx, by, bs in boxes):
                continue
            chip = cv2.imread(str(chips[int(rng.integers(len(chips)))]))
            img[y:y + s, x:x + s] = cv2.resize(chip, (s, s), interpolation=cv2.INTER_AREA)
            boxes.append((x, y, s))
        frames.append(img)
        gts.append(boxes)
    return np.stack(frames), gts


def match(dets: list, gts: list[tuple[int, int, int]]) -> tuple[list[bool], int]:
    """-> (hit per ground-truth chip, false positives)."""
    hit = [False] * len(gts)
    fp = 0
    for d in dets:
        x, y, w, h = d[:4]
        cx, cy, side = x + w / 2, y + h / 2, max(w, h)
        ok = False
        for j, (gx, gy, s) in enumerate(gts):
            if (gx + s / 4 <= cx <= gx + 3 * s / 4 and gy + s / 4 <= cy <= gy + 3 * s / 4
                    and 0.3 * s <= side <= 1.1 * s and not hit[j]):
                hit[j] = ok = True
                break
        fp += not ok
    return hit, fp


def score(all_dets: list[list], gts: list, n_pos: int) -> dict:
    sizes = {"40-80": (40, 80), "80-140": (80, 140), "140-240": (140, 241)}
    hits, fps_pos, fps_neg = [], 0, 0
    for i, (dets, g) in enumerate(zip(all_dets, gts)):
        h, fp = match(dets, g)
        hits += [(s, hh) for (_, _, s), hh in zip(g, h)]
        if i < n_pos:
            fps_pos += fp
        else:
            fps_neg += fp
    out = {"recall": round(float(np.mean([hh for _, hh in hits])), 4), "faces": len(hits),
           "fp_per_face_frame": round(fps_pos / n_pos, 3), "fp_per_empty_frame": round(fps_neg / (len(gts) - n_pos), 3)}
    for name, (lo, hi) in sizes.items():
        sel = [hh for s, hh in hits if lo <= s < hi]
        out[f"recall_{name}px"] = round(float(np.mean(sel)), 4) if sel else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=100, help="frames with faces (as many without)")
    ap.add_argument("--detectors", default="auto,blazeface_short,blazeface_full,haar")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mediapipe-python", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from emotionlab.inference import create_detector

    root = (args.data or default_data_root()) / "utkface" / "UTKFace"
    chips = sorted(root.glob("*.jpg"))
    if not chips:
        raise SystemExit(f"error: {root}: no UTKFace .jpg chips; pass --data PATH")
    frames, gts = make_frames(chips, args.frames, args.seed)
    report = {"command": " ".join(["benchmarks/bench_pipeline.py", *(argv if argv is not None else sys.argv[1:])]),
              "frames_with_faces": args.frames, "frames_without": args.frames, "threads": args.threads, "detectors": {}}
    for name in args.detectors.split(","):
        det = create_detector(name)
        for f in frames[:3]:
            det.detect(f)
        dets, times = [], []
        for f in frames:
            t0 = time.perf_counter()
            ds = det.detect(f)
            times.append(time.perf_counter() - t0)
            dets.append([(*d.box, d.score) for d in ds])
        r = score(dets, gts, args.frames)
        r["ms_per_frame"] = round(1000 * float(np.mean(times)), 2)
        r["ms_p50"] = round(1000 * float(np.median(times)), 2)
        report["detectors"][name] = r
        report.setdefault("_dets", {})[name] = dets
        print(name, r, file=sys.stderr, flush=True)
    if args.mediapipe_python:
        with tempfile.TemporaryDirectory() as td:
            np.savez(Path(td) / "f.npz", frames=frames)
            (Path(td) / "mp.py").write_text(MP_SCRIPT)
            subprocess.run([str(args.mediapipe_python), str(Path(td) / "mp.py"), str(Path(td) / "f.npz"),
                            str(Path(td) / "o.json")], check=True, capture_output=True)
            mp_res = json.loads((Path(td) / "o.json").read_text())
        from emotionlab.inference.detectors import _iou

        for mp_name, ours in (("mediapipe_short", "blazeface_short"), ("mediapipe_full", "blazeface_full")):
            report["detectors"][mp_name] = score(mp_res[mp_name], gts, args.frames)
            if ours in report["_dets"]:
                ious, same_count = [], 0
                for a, b in zip(report["_dets"][ours], mp_res[mp_name]):
                    same_count += len(a) == len(b)
                    for bb in b:
                        ious.append(max([_iou(aa[:4], bb[:4]) for aa in a], default=0.0))
                report["detectors"][mp_name]["port_agreement"] = {
                    "frames_same_count": round(same_count / len(frames), 4),
                    "mean_best_iou": round(float(np.mean(ious)), 4) if ious else None,
                    "share_iou_over_0.7": round(float(np.mean(np.asarray(ious) > 0.7)), 4) if ious else None}
            print(mp_name, report["detectors"][mp_name], file=sys.stderr)
    report.pop("_dets", None)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["detectors"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
