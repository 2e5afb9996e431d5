"""Identity switches on synthetic clips with known tracks: faces moving, crossing, missed, hidden for a few frames.

Each clip is 640x480, ``--frames`` long, with four faces (the sample photos shipped with the package): two cross
each other on the same row (the one in front hides the other while they overlap), two drift and bounce; each
face is hidden for a few frames now and then (an occlusion of 2-8 frames; a face behind another is hidden
while they overlap), and the detector misses a face
at random (``--miss``). Two ways to get the detections:

* ``boxes``: the true boxes with jitter, minus the misses and the hidden faces (the tracker alone);
* ``render``: the faces are pasted into frames and the real detector (``auto``) finds them (end to end).

Identity switches: for each true track, the number of times the id given to it changes between two frames
where it was detected (the CLEAR-MOT count); new ids: how many ids were handed out (4 is perfect). Compared with
the tracker this project had before (greedy IoU matching on the last box, no motion), at the same gap.

    python benchmarks/tracking_switches.py [--seeds 5] [--frames 300] [--gap 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from emotionlab.inference.detectors import _iou
from emotionlab.inference.tracking import FaceTracker

FACES = Path(__file__).resolve().parents[1] / "src" / "emotionlab" / "inference" / "assets" / "faces"
W, H, S = 640, 480, 110  # canvas and face size


class LegacyTracker(FaceTracker):
    """The tracker before #36: greedy IoU / centroid matching on each track's last box, no motion model."""

    def _match(self, faces):
        pairs = []
        for fi, f in enumerate(faces):
            box = f["box"]
            fc = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
            for t in self.tracks:
                iou = _iou(box, t.box)
                tc = np.array([t.box[0] + t.box[2] / 2, t.box[1] + t.box[3] / 2])
                dist = float(np.linalg.norm(fc - tc)) / max(1.0, max(t.box[2], t.box[3]))
                if iou >= self.iou or dist <= self.centroid:
                    pairs.append((-iou, dist, fi, t))
        pairs.sort(key=lambda p: (p[0], p[1]))
        used_f, used_t, out = set(), set(), {}
        for _, _, fi, t in pairs:
            if fi in used_f or t.face_id in used_t:
                continue
            used_f.add(fi)
            used_t.add(t.face_id)
            out[fi] = t
        return out


def make_tracks(frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(frames, 4, 4) true boxes and (frames, 4) visibility (hidden: an occlusion of 2-8 frames)."""
    boxes = np.zeros((frames, 4, 4))
    t = np.arange(frames)
    speed = rng.uniform(3.0, 5.0)
    # 0 and 1 cross on the same row (they meet in the middle, twice per pass)
    span = W - S
    x0 = span * (0.5 + 0.5 * np.sin(t * speed / span * 2 + rng.uniform(0, 0.3)))
    x1 = np.clip(span - x0 + rng.uniform(-10, 10), 0, span)
    boxes[:, 0] = np.stack([x0, np.full(frames, 60.0), np.full(frames, S), np.full(frames, S)], 1)
    boxes[:, 1] = np.stack([x1, np.full(frames, 75.0), np.full(frames, S), np.full(frames, S)], 1)
    for k in (2, 3):  # drifting and bouncing in the lower half
        p = np.array([rng.uniform(0, W - S), rng.uniform(230, H - S)])
        v = rng.uniform(-4, 4, 2)
        for i in range(frames):
            boxes[i, k] = [p[0], p[1], S, S]
            p += v
            for d, hi in ((0, W - S), (1, H - S)):
                if not (0 if d == 0 else 230) <= p[d] <= hi:
                    v[d] = -v[d]
                    p[d] = np.clip(p[d], 0 if d == 0 else 230, hi)
    visible = np.ones((frames, 4), bool)
    for k in range(4):
        i = int(rng.integers(10, 40))
        while i < frames:
            visible[i:i + int(rng.integers(2, 9)), k] = False
            i += int(rng.integers(40, 90))
    return boxes, visible


def front_hides_back(boxes: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Where two faces overlap a lot, the one in front (the higher index, pasted last) hides the other."""
    vis = visible.copy()
    for i in range(len(boxes)):
        for a in range(4):
            for b in range(a + 1, 4):
                if visible[i, b] and _iou(boxes[i, a], boxes[i, b]) > 0.25:
                    vis[i, a] = False
    return vis


def detections_boxes(boxes, vis, miss: float, rng) -> list[list[tuple]]:
    out = []
    for i in range(len(boxes)):
        dets = []
        for k in range(4):
            if vis[i, k] and rng.random() >= miss:
                x, y, w, h = boxes[i, k]
                s = 1 + rng.normal(0, 0.04)
                dets.append((x + rng.normal(0, 3), y + rng.normal(0, 3), w * s, h * s))
        rng.shuffle(dets)
        out.append(dets)
    return out


def detections_render(boxes, visible, miss: float, rng, detector) -> list[list[tuple]]:
    """Paste the faces that are not hidden (1 after 0: in front), detect with the real detector."""
    faces = []
    for p in sorted(FACES.glob("*.jpg")):  # each photo's face, cut with a margin (the detector finds it)
        img = cv2.imread(str(p))
        if "group" in p.name or img is None:
            continue
        d = max(detector.detect(img), key=lambda d: d.box[2] * d.box[3])
        x, y, w, h = d.box
        m = 0.35 * max(w, h)
        x0, y0 = int(max(0, x - m)), int(max(0, y - m))
        x1, y1 = int(min(img.shape[1], x + w + m)), int(min(img.shape[0], y + h + m))
        faces.append(cv2.resize(img[y0:y1, x0:x1], (S, S)))
    faces = (faces + [cv2.flip(f, 1) for f in faces])[:4]
    bg = np.full((H, W, 3), 120, np.uint8)
    cv2.randn(bg, (120, 120, 120), (25, 25, 25))
    out = []
    for i in range(len(boxes)):
        f = bg.copy()
        for k in (0, 1, 2, 3):  # 1 is pasted after 0: it is in front
            if visible[i, k]:
                x, y = int(boxes[i, k, 0]), int(boxes[i, k, 1])
                f[y:y + S, x:x + S] = faces[k]
        out.append([d.box for d in detector.detect(f) if rng.random() >= miss])
    return out


def _centre(b) -> np.ndarray:
    return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])


def _centre_dist(a, b) -> float:
    return float(np.linalg.norm(_centre(a) - _centre(b)))


def _inside(det, true) -> bool:
    """The detection's centre lies in the inner 80 % of the true (pasted photo) box: a detector's face box is
    tighter than the photo, so IoU would not say it is that face."""
    cx, cy = _centre(det)
    x, y, w, h = true
    return x + 0.1 * w <= cx <= x + 0.9 * w and y + 0.1 * h <= cy <= y + 0.9 * h


def switches(boxes, vis, dets, tracker) -> dict:
    """Run the tracker; give each true box the tracked face whose centre is nearest (inside it); count the id
    changes per true track."""
    last = [None] * 4
    n_sw, found, total, ids = 0, 0, 0, set()
    for i, ds in enumerate(dets):
        faces = [{"box": tuple(float(v) for v in d), "scores": {"a": 1.0}, "label": "a"} for d in ds]
        tracker.update(faces)
        ids.update(f["face_id"] for f in faces)
        for k in range(4):
            if not vis[i, k]:
                continue
            total += 1
            best = min(faces, key=lambda f: _centre_dist(f["box"], boxes[i, k]), default=None)
            if best is None or not _inside(best["box"], boxes[i, k]):
                continue
            found += 1
            if last[k] is not None and best["face_id"] != last[k]:
                n_sw += 1
            last[k] = best["face_id"]
    return {"switches": n_sw, "ids": len(ids), "matched": found, "visible": total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--gaps", default="5,10,20", help="track gaps (max_missed) to compare, for both trackers")
    ap.add_argument("--miss", type=float, default=0.1, help="chance the detector misses a visible face")
    ap.add_argument("--modes", default="boxes,render")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    gaps = [int(g) for g in a.gaps.split(",")]
    detector = None
    rep: dict = {"frames": a.frames, "seeds": a.seeds, "miss": a.miss, "true_tracks": 4, "results": {}}
    for mode in a.modes.split(","):
        keys = ("switches", "ids", "matched", "visible")
        tot = {f"{name}/gap{g}": dict.fromkeys(keys, 0) for g in gaps for name in ("legacy", "new")}
        for seed in range(a.seeds):
            rng = np.random.default_rng(seed)
            boxes, visible = make_tracks(a.frames, rng)
            vis = front_hides_back(boxes, visible)
            if mode == "boxes":
                dets = detections_boxes(boxes, vis, a.miss, rng)
            else:
                if detector is None:
                    from emotionlab.inference.detectors import create_detector

                    detector = create_detector("auto", threads=1)
                dets = detections_render(boxes, visible, a.miss, rng, detector)
            for g in gaps:
                for name, cls in (("legacy", LegacyTracker), ("new", FaceTracker)):
                    r = switches(boxes, vis, dets, cls(max_missed=g, smoothing=0.0))
                    for k in keys:
                        tot[f"{name}/gap{g}"][k] += r[k]
        for v in tot.values():
            v["ids_per_true_track"] = round(v["ids"] / (4 * a.seeds), 2)
            v["switches_per_1000_frames"] = round(1000 * v["switches"] / (a.frames * a.seeds), 2)
        rep["results"][mode] = tot
        for k, v in tot.items():
            print(f"{mode:7s} {k:14s} switches {v['switches']:3d}  ids/true track {v['ids_per_true_track']:.2f}  "
                  f"matched {v['matched']}/{v['visible']}", file=sys.stderr)
    text = json.dumps(rep, indent=2)
    if a.json:
        a.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
