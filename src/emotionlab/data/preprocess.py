"""The one preprocessing path shared by training, evaluation, inference and the server.

A face box from a detector is expanded and squared (FER-2013 crops include forehead and chin), the image is
turned to 8-bit grayscale, the crop is resized to the model's input size, and pixels are normalized with the
model's mean / std. Dataset images that are already face crops skip the box step but use the same
``to_gray`` / ``resize`` / ``normalize`` calls.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

# Pixel statistics of the FER-2013 Training split (see `emotionlab data stats`), in [0, 1] units.
FER_MEAN = 0.5077
FER_STD = 0.2550


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything needed to turn an image region into a model input; stored in every model card."""

    size: int = 48
    expand: float = 1.15  # side of the square crop relative to the detector box's larger side
    shift_y: float = 0.0  # move the crop centre down by this fraction of the box height
    mean: float = FER_MEAN
    std: float = FER_STD

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "PreprocessConfig":
        d = d or {}
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def to_uint8(image: np.ndarray) -> np.ndarray:
    """16-bit, float ([0, 1] or [0, 255]) or other integer pixels -> uint8, channels untouched."""
    img = np.asarray(image)
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype in (np.float32, np.float64):
        scale = 255.0 if img.max(initial=0) <= 1.0 else 1.0
        return np.clip(img * scale, 0, 255).astype(np.uint8)
    if img.dtype != np.uint8:
        return np.clip(img, 0, 255).astype(np.uint8)
    return img


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any OpenCV-style image (gray, BGR, BGRA, 8 or 16 bit, float) -> uint8 grayscale."""
    img = to_uint8(image)
    if img.ndim == 3:
        if img.shape[2] == 1:
            img = img[:, :, 0]
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            raise ValueError(f"image has {img.shape[2]} channels, expected 1, 3 or 4")
    elif img.ndim != 2:
        raise ValueError(f"image has shape {img.shape}, expected (H,W) or (H,W,C)")
    return np.ascontiguousarray(img)


def square_box(box, expand: float = 1.15, shift_y: float = 0.0) -> tuple[int, int, int]:
    """(x, y, w, h) -> (x0, y0, side) of the expanded square crop (may extend past the image)."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * expand
    cx, cy = x + w / 2.0, y + h / 2.0 + shift_y * h
    side_i = max(1, int(round(side)))
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side_i


def eye_roll(landmarks) -> float:
    """Head roll in degrees from detector keypoints (BlazeFace order: right eye, left eye, ...): the angle of
    the line from the subject's right eye (image left) to the left eye; 0.0 without keypoints."""
    if landmarks is None or len(landmarks) < 2:
        return 0.0
    (rx, ry), (lx, ly) = landmarks[0], landmarks[1]
    dx, dy = float(lx) - float(rx), float(ly) - float(ry)
    if not (np.isfinite(dx) and np.isfinite(dy)) or (dx == 0 and dy == 0):
        return 0.0
    return float(np.degrees(np.arctan2(dy, dx)))


def crop_face(gray: np.ndarray, box, cfg: PreprocessConfig = PreprocessConfig(), roll: float = 0.0) -> np.ndarray:
    """Crop the expanded square around ``box`` from a grayscale image and resize it to ``cfg.size``.

    Parts of the square outside the image are filled by replicating the border, as a FER crop would
    never contain black bars. ``roll`` (degrees, :func:`eye_roll`) turns the square with the head, so the
    eyes come out level, as FER-2013's crops are (deepface's ``align=True`` does the same).
    """
    x0, y0, side = square_box(box, cfg.expand, cfg.shift_y)
    h, w = gray.shape[:2]
    if abs(roll) >= 1.0 and np.isfinite(roll):  # below a degree, rotating only blurs
        x0, y0 = max(min(x0, w - 1), 1 - side), max(min(y0, h - 1), 1 - side)  # the box must touch the image
        c = (x0 + side / 2.0, y0 + side / 2.0)
        m = cv2.getRotationMatrix2D(c, float(roll), 1.0)
        m[0, 2] += side / 2.0 - c[0]
        m[1, 2] += side / 2.0 - c[1]
        crop = cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return resize(crop, cfg.size)
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - w), max(0, y0 + side - h)
    crop = gray[max(0, y0):min(h, y0 + side), max(0, x0):min(w, x0 + side)]
    if crop.size == 0:
        raise ValueError(f"face box {tuple(box)} lies outside the {w}x{h} image")
    if pad_l or pad_t or pad_r or pad_b:
        crop = cv2.copyMakeBorder(crop, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    return resize(crop, cfg.size)


def resize(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a square-ish grayscale crop to (size, size); INTER_AREA shrinks without aliasing."""
    if gray.shape[0] == size and gray.shape[1] == size:
        return gray
    interp = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def normalize(images: np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """uint8 (N,H,W) or (H,W) -> float32 (N,1,H,W) with the model's mean / std."""
    arr = np.asarray(images)
    if arr.ndim == 2:
        arr = arr[None]
    out = arr.astype(np.float32) * (1.0 / 255.0)
    out -= cfg.mean
    out *= 1.0 / cfg.std
    return out[:, None]


def prepare_faces(image: np.ndarray, boxes, cfg: PreprocessConfig = PreprocessConfig(),
                  rolls=None) -> tuple[np.ndarray, np.ndarray]:
    """Image + face boxes (+ optional head rolls in degrees, see :func:`crop_face`) -> (model input
    (N,1,S,S) float32, the uint8 crops the model sees (N,S,S))."""
    gray = to_gray(image)
    rolls = [0.0] * len(boxes) if rolls is None else list(rolls)
    crops = [crop_face(gray, b, cfg, r) for b, r in zip(boxes, rolls)]
    if not crops:
        return np.zeros((0, 1, cfg.size, cfg.size), np.float32), np.zeros((0, cfg.size, cfg.size), np.uint8)
    crops_arr = np.stack(crops)
    return normalize(crops_arr, cfg), crops_arr


def prepare_crops(crops: np.ndarray, cfg: PreprocessConfig = PreprocessConfig()) -> np.ndarray:
    """Already-cropped faces (N,H,W) uint8 (dataset images) -> model input at ``cfg.size``."""
    crops = np.asarray(crops)
    if crops.ndim == 2:
        crops = crops[None]
    if crops.shape[1] != cfg.size or crops.shape[2] != cfg.size:
        crops = np.stack([resize(c, cfg.size) for c in crops])
    return normalize(crops, cfg)
