"""Face detector registry: BlazeFace short / full range (default, offline, Apache-2.0) and OpenCV Haar (fallback).

Every detector takes an 8-bit BGR image and returns :class:`Detection` s in original-image pixels. ``auto``
trusts the fast short-range model when it is sure (large, high-scoring faces: the webcam case) and otherwise
runs the full-range model (plus tiles for wide or large photos), because short-range misses faces under about
15 % of the image side while full-range costs about 3x more (numbers in docs/results_pipeline.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x, y, w, h in pixels
    score: float | None = None
    landmarks: list[tuple[float, float]] | None = None  # BlazeFace: right eye, left eye, nose, mouth, ears


class Detector:
    name = "base"
    #: crop expansion this detector's boxes need; None = the model card's (detector boxes are tight faces)
    crop_expand: float | None = None

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:  # pragma: no cover - interface
        raise NotImplementedError


class BlazeFaceDetector(Detector):
    def __init__(self, variant: str = "short", min_score: float | None = None, backend: str = "auto",
                 threads: int | None = None):
        from .blazeface import BlazeFace

        self.name = f"blazeface_{variant}"
        self.model = BlazeFace(self.name, min_score=min_score, backend=backend, threads=threads)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        return [Detection(tuple(float(v) for v in box), score, [(float(x), float(y)) for x, y in kp])
                for box, score, kp in self.model.detect(image_bgr)]


class HaarDetector(Detector):
    """OpenCV's frontal-face Haar cascade; slower and less accurate, kept as a dependency-free fallback."""

    name = "haar"

    def __init__(self, max_side: int = 640, min_neighbors: int = 5, **_):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise FileNotFoundError(f"{path}: OpenCV Haar cascade could not be loaded")
        self.max_side = max_side
        self.min_neighbors = min_neighbors

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
        h, w = gray.shape
        scale = min(1.0, self.max_side / max(h, w))  # huge images: detect on a downscaled copy
        if scale < 1:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=self.min_neighbors,
                                              minSize=(24, 24))
        return [Detection((x / scale, y / scale, bw / scale, bh / scale), None, None) for x, y, bw, bh in faces]


def _iou(a, b) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


def merge_detections(dets: list[Detection], iou_thr: float = 0.3) -> list[Detection]:
    """Greedy NMS across detectors: keep the higher-scoring box of any overlapping pair."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -(d.score or 0.0)):
        if all(_iou(d.box, k.box) <= iou_thr for k in kept):
            kept.append(d)
    return kept


#: smallest tile worth running: the full-range model's input side (a smaller tile is only upsampled)
MIN_TILE = 192
#: most tiles one image may cost; a larger image gets larger tiles instead of more of them
MAX_TILES = 16


def _starts(n: int, side: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``side`` covering ``n`` pixels with ``overlap``."""
    if side >= n:
        return [0]
    step = max(1, int(side * (1 - overlap)))
    out = list(range(0, n - side + 1, step))
    if out[-1] + side < n:
        out.append(n - side)
    return out


def tiles(h: int, w: int, side: int, overlap: float = 0.25, min_side: int = MIN_TILE,
          max_tiles: int = MAX_TILES) -> list[tuple[int, int, int]]:
    """Square tiles (x, y, side) covering an image with some overlap; one tile when the image fits.

    The count is bounded whatever the shape: tiles are at least ``min_side`` (clipped to the image, so a
    thin strip gets a few wide windows, not one per pixel) and grow until at most ``max_tiles`` cover it."""
    side = max(int(side), min_side, 1)
    while True:
        xs = _starts(w, side, overlap)
        ys = _starts(h, side, overlap)
        if len(xs) * len(ys) <= max_tiles:
            return [(x, y, side) for y in ys for x in xs]
        side = int(side * 1.25) + 1


def detect_tiled(det: Detector, image_bgr: np.ndarray, side: int, min_score: float = 0.6) -> list[Detection]:
    """Run ``det`` on overlapping square tiles: BlazeFace letterboxes to 128 / 192 px, so a face that is small
    in a wide or large photo becomes too small to find; a tile keeps it at a usable size. At most
    :data:`MAX_TILES` tiles, with a cancellation checkpoint between them."""
    from .cancel import checkpoint

    h, w = image_bgr.shape[:2]
    out = []
    for x, y, s in tiles(h, w, side):
        checkpoint()
        for d in det.detect(image_bgr[y:y + s, x:x + s]):
            if (d.score or 0.0) < min_score:  # many tiles = many chances for a false positive: ask for more
                continue
            bx, by, bw, bh = d.box
            lm = [(lx + x, ly + y) for lx, ly in d.landmarks] if d.landmarks else None
            out.append(Detection((bx + x, by + y, bw, bh), d.score, lm))
    return out


class AutoDetector(Detector):
    """Short-range BlazeFace when it is sure (every face large and scored >= ``sure``); otherwise full-range
    on the whole image (and on square tiles for wide or large images), keeping the short-range boxes it
    confirms. The fast path serves webcam-like frames; the slow one photos with small faces."""

    name = "auto"

    def __init__(self, small_face: float = 0.2, sure: float = 0.75, tile: bool = True, **kw):
        self.short = BlazeFaceDetector("short", **kw)
        self.full = BlazeFaceDetector("full", **kw)
        self.small_face, self.sure, self.tile = small_face, sure, tile

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        dets = self.short.detect(image_bgr)
        h, w = image_bgr.shape[:2]
        big = self.small_face * max(h, w)

        def trusted(d: Detection) -> bool:  # where short-range is strong: large faces, high score
            return max(d.box[2], d.box[3]) >= big and (d.score or 0.0) >= self.sure

        if dets and all(trusted(d) for d in dets):
            return sorted(dets, key=lambda d: (d.box[0], d.box[1]))
        from .cancel import checkpoint

        checkpoint()
        full = self.full.detect(image_bgr)
        if self.tile and (max(h, w) > 1.5 * min(h, w) or min(h, w) >= 800):
            full += detect_tiled(self.full, image_bgr, min(h, w) if min(h, w) < 800 else min(h, w) // 2)
        # other short-range boxes (small or unsure: most of its false positives) count only if full-range agrees
        keep = [d for d in dets if trusted(d) or any(_iou(d.box, f.box) > 0.3 for f in full)]
        return sorted(merge_detections(keep + full), key=lambda d: (d.box[0], d.box[1]))


class WholeImageDetector(Detector):
    """No detection: every image already is one face crop (FER-2013, CK+ or AffectNet style, an aligned
    dataset). The box is the image's centred square, cut as is (no expansion), so a crop is read exactly as
    training read it. BlazeFace finds only ~63 % of tight 48 px FER crops upscaled into a frame
    (benchmarks/robustness.py --photo): for crops, this is the right "detector"."""

    name = "none"
    crop_expand = 1.0

    def __init__(self, **_kw):
        pass

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        h, w = image_bgr.shape[:2]
        s = min(h, w)
        return [Detection(((w - s) / 2.0, (h - s) / 2.0, float(s), float(s)), 1.0, None)]


DETECTORS: dict[str, Callable[..., Detector]] = {
    "auto": AutoDetector,
    "blazeface_short": lambda **kw: BlazeFaceDetector("short", **kw),
    "blazeface_full": lambda **kw: BlazeFaceDetector("full", **kw),
    "haar": HaarDetector,
    "none": WholeImageDetector,
}


def list_detectors() -> list[str]:
    return list(DETECTORS)


def create_detector(name: str = "auto", **kw) -> Detector:
    """Build a detector by name; unknown names list the available ones."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}")
    if name == "haar":
        return HaarDetector(**{k: v for k, v in kw.items() if k in ("max_side", "min_neighbors")})
    return DETECTORS[name](**kw)


def utkface_detector() -> Callable[[np.ndarray], list[Detection]]:
    """The detector UTKFace crops are cut with (short-range BlazeFace, one thread), for
    :func:`emotionlab.data.utkface.load_utkface`, which takes it as a callable (data never imports inference)."""
    return create_detector("blazeface_short", threads=1).detect
