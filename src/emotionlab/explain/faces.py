"""Heat maps for image files: face crops are explained as they are, photos go through the face detector.

Why the split: a FER-style crop (small and square) has no face box to find, and running a detector on it
would fail or re-crop it; a photo needs the same detection + ``prepare_faces`` path as ``predict``, so the
map shows what the model saw for that face.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.labels import canonical_name
from ..data.occlusion import apply_mask
from ..data.preprocess import PreprocessConfig, prepare_crops, prepare_faces, resize, square_box, to_gray
from .maps import METHODS, explain, overlay
from .occlusion_study import OCCLUSIONS, face_occlusion

CROP_MAX_SIDE = 100
CROP_MAX_ASPECT = 1.25


def is_face_crop(image: np.ndarray, max_side: int = CROP_MAX_SIDE, max_aspect: float = CROP_MAX_ASPECT) -> bool:
    """True for an image that already is a face crop: both sides <= ``max_side`` px and roughly square."""
    h, w = image.shape[:2]
    return max(h, w) <= max_side and max(h, w) / max(1, min(h, w)) <= max_aspect


def resolve_target(target: str | int | None, labels: Sequence[str]) -> int | None:
    """A class name (any dataset spelling) or index -> index into ``labels``; None stays None."""
    if target is None:
        return None
    if isinstance(target, int) or (isinstance(target, str) and target.strip().lstrip("-").isdigit()):
        i = int(target)
        if not 0 <= i < len(labels):
            raise ValueError(f"--target {i} is out of range: the model has {len(labels)} classes "
                             f"({', '.join(labels)})")
        return i
    name = canonical_name(str(target))
    if name not in labels:
        raise ValueError(f"--target {target!r} is not a class of this model; use one of {', '.join(labels)}")
    return list(labels).index(name)


@dataclass
class FaceInput:
    """One face to explain: the uint8 crop at the model's size and where it came from."""

    crop: np.ndarray
    box: tuple[int, int, int, int] | None = None
    detection_score: float | None = None
    source: str = "crop"
    landmarks: np.ndarray | None = None  # (K,2) in crop pixels, when the detector gave them


def landmarks_in_crop(landmarks, box, cfg: PreprocessConfig) -> np.ndarray:
    """Detector landmarks in image pixels -> pixels of the (S,S) crop that ``crop_face`` cuts around ``box``."""
    x0, y0, side = square_box(box, cfg.expand, cfg.shift_y)
    lm = np.asarray(landmarks, np.float32).reshape(-1, 2)
    return (lm - np.array([x0, y0], np.float32)) * (cfg.size / side)


def faces_in_image(image: np.ndarray, loaded, recognizer=None, path: str = "") -> list[FaceInput]:
    """Crops to explain: the image itself if it is a face crop, else every face the detector finds."""
    pre = loaded.preprocess
    if is_face_crop(image):
        return [FaceInput(resize(to_gray(image), pre.size), None, None, "crop")]
    if recognizer is None:
        raise ValueError(f"{path or 'image'}: a {image.shape[1]}x{image.shape[0]} photo needs face detection "
                         "(emotionlab.inference); pass face crops (<= 100 px, roughly square) instead")
    faces = recognizer.predict(image)
    out = []
    for f in faces:
        crop = getattr(f, "crop", None)
        if crop is None or np.asarray(crop).shape != (pre.size, pre.size):
            _, crops = prepare_faces(image, [f.box], pre)  # the one preprocessing path
            crop = crops[0]
        lms = getattr(f, "landmarks", None)
        out.append(FaceInput(np.asarray(crop, np.uint8), tuple(int(v) for v in f.box),
                             getattr(f, "detection_score", None), "detector",
                             landmarks_in_crop(lms, f.box, pre) if lms else None))
    return out


def make_recognizer(model: str, detector: str = "auto", device: str = "cpu"):
    """The face pipeline, created only when a photo needs it (it loads the detector)."""
    try:
        from ..inference import FaceEmotionRecognizer
    except ImportError as e:
        raise ValueError(f"face detection is not available ({e}); pass face crops (<= 100 px) instead") from None
    # PyTorch backend: the maps need the torch model anyway, and an ONNX export would only cost time here.
    return FaceEmotionRecognizer(model=model, detector=detector, device=device, backend="torch")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def render(crop_u8: np.ndarray, heatmap: np.ndarray, size: int = 192, caption: Sequence[str] | str = ()) -> np.ndarray:
    """Overlay upscaled for viewing (48 px is too small to read), with caption lines below it."""
    big = cv2.resize(crop_u8, (size, size), interpolation=cv2.INTER_CUBIC)
    hm = cv2.resize(np.asarray(heatmap, np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img = overlay(big, np.clip(hm, 0, 1))
    lines = [caption] if isinstance(caption, str) else list(caption)
    if lines:
        strip = np.full((18 * len(lines) + 4, size, 3), 255, np.uint8)
        for k, line in enumerate(lines):
            cv2.putText(strip, line, (4, 15 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        img = np.vstack([img, strip])
    return img


@dataclass
class ExplainResult:
    image: str
    face: int
    method: str
    predicted: str
    target: str
    scores: dict[str, float]
    file: str
    box: list[int] | None = None
    detection_score: float | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d["seconds"] = round(self.seconds, 4)
        return {**d, **self.extra}


def explain_images(paths: Sequence[str | os.PathLike], loaded, methods: Sequence[str], out_dir: str | Path,
                   target: str | int | None = None, recognizer_factory=None, size: int = 192,
                   occlude: str = "none") -> list[dict]:
    """Explain every face of every image with every method; write one overlay PNG each + ``explanations.json``.

    ``recognizer_factory()`` builds the face detector on first need (photos only). ``occlude`` hides part of
    each face first (``forehead``, ``eyes``, ``mouth``, or ``medical`` from the landmarks) to see where the
    model looks when that part is missing.
    """
    import time

    from ..data.folders import read_image

    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; use one of {', '.join(METHODS)}")
    labels = loaded.labels
    tgt = resolve_target(target, labels)
    if occlude not in OCCLUSIONS:
        raise ValueError(f"unknown occlusion {occlude!r}; use one of {', '.join(OCCLUSIONS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recognizer = None
    results: list[ExplainResult] = []
    for p in paths:
        p = Path(p)
        image = read_image(p)
        if not is_face_crop(image) and recognizer is None and recognizer_factory is not None:
            recognizer = recognizer_factory()
        faces = faces_in_image(image, loaded, recognizer, str(p))
        for i, face in enumerate(faces):
            mask, mask_from = face_occlusion(occlude, face.crop.shape[0], face.landmarks)
            crop = apply_mask(face.crop[None], mask)[0]
            x = torch.from_numpy(prepare_crops(crop[None], loaded.preprocess))
            for method in methods:
                t0 = time.perf_counter()
                hm, pred, probs = explain(loaded.model, x[0], method, target=tgt)
                dt = time.perf_counter() - t0
                ti = pred if tgt is None else tgt
                tag = f"_{occlude}" if occlude != "none" else ""
                name = f"{_safe(p.stem)}_face{i}{tag}_{method}_{labels[ti]}.png"
                caption = [f"{method}: {labels[ti]}", f"predicted {labels[pred]} {probs[pred]:.2f}"]
                if occlude != "none":
                    caption.append(f"{occlude} mask ({mask_from})")
                cv2.imwrite(str(out / name), render(crop, hm, size, caption))
                results.append(ExplainResult(str(p), i, method, labels[pred], labels[ti],
                                             {lab: round(float(s), 5) for lab, s in zip(labels, probs)},
                                             str(out / name), list(face.box) if face.box else None,
                                             face.detection_score, dt,
                                             {"source": face.source, "occlude": occlude,
                                              "mask_from": mask_from}))
        if not faces:
            results.append(ExplainResult(str(p), -1, "", "", "", {}, "", extra={"source": "detector",
                                                                                  "note": "no face found"}))
    rows = [r.to_dict() for r in results]
    (out / "explanations.json").write_text(json.dumps(rows, indent=2))
    return rows
