"""Drawing of results onto frames: boxes, labels, probability bars and the debug inset.

Kept separate from the webcam window loop so that it can be tested and reused for annotated images and video.
"""
from __future__ import annotations

import zlib

import cv2
import numpy as np

# One BGR colour per FER7-style label; other labels (custom folders) get a colour from a stable hash of the name,
# the same in every run (Python's str hash is salted per process).
COLORS = {"angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160), "happy": (40, 200, 240),
          "sad": (200, 120, 40), "surprise": (0, 150, 255), "neutral": (190, 190, 190), "contempt": (90, 90, 150)}


def color_for(label: str) -> tuple[int, int, int]:
    if label in COLORS:
        return COLORS[label]
    h = zlib.crc32(label.encode("utf-8"))
    return (h % 200 + 40, (h // 200) % 200 + 40, (h // 40000) % 200 + 40)


def _text(img, s: str, org, scale: float, color, thick: int = 1) -> None:
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def draw_bars(img: np.ndarray, scores: dict[str, float], x: int, y: int, width: int = 110, row: int = 14) -> None:
    """Horizontal probability bars, one row per class, highest first."""
    H, W = img.shape[:2]
    for i, (lab, p) in enumerate(sorted(scores.items(), key=lambda kv: -kv[1])):
        yy = y + i * row
        if yy + row > H or x + width > W or x < 0 or yy < 0:
            break
        cv2.rectangle(img, (x, yy), (x + width, yy + row - 3), (50, 50, 50), -1)
        cv2.rectangle(img, (x, yy), (x + int(width * p), yy + row - 3), color_for(lab), -1)
        _text(img, f"{lab[:8]} {p:.2f}", (x + 2, yy + row - 5), 0.33, (255, 255, 255))


def draw_faces(frame: np.ndarray, faces, bars: bool = True, debug: bool = False) -> np.ndarray:
    """Return a copy of ``frame`` (8-bit BGR) with every face drawn; ``debug`` adds the model's-eye inset."""
    out = frame.copy()
    H, W = out.shape[:2]
    scale = max(0.4, min(1.2, max(H, W) / 900))
    for f in faces:
        x, y, w, h = f.box
        col = color_for(f.label)
        cv2.rectangle(out, (x, y), (x + w, y + h), col, max(1, round(2 * scale)))
        tag = f"{f.label} {f.scores[f.label]:.2f}" + (f" #{f.face_id}" if f.face_id is not None else "")
        _text(out, tag, (x, max(12, y - 6)), 0.5 * scale, col, max(1, round(scale)))
        if f.landmarks:
            for lx, ly in f.landmarks:
                cv2.circle(out, (int(lx), int(ly)), max(1, int(2 * scale)), (0, 255, 0), -1)
        if bars:
            bx = x + w + 4 if x + w + 4 + 110 <= W else max(0, x - 114)
            draw_bars(out, f.scores, bx, y)
    if debug and faces:
        draw_debug_inset(out, faces[0])
    return out


def draw_debug_inset(img: np.ndarray, face, size: int = 144) -> None:
    """Top-left inset: the normalized crop the model sees (upscaled) and the full distribution beside it."""
    H, W = img.shape[:2]
    if face.crop is None or H < size + 8 or W < size + 130:
        return
    crop = cv2.resize(face.crop, (size, size), interpolation=cv2.INTER_NEAREST)
    img[4:4 + size, 4:4 + size] = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    cv2.rectangle(img, (4, 4), (4 + size, 4 + size), (255, 255, 255), 1)
    _text(img, "model input", (8, 18), 0.4, (255, 255, 255))
    draw_bars(img, face.scores, 10 + size, 4, width=116, row=max(14, size // max(1, len(face.scores))))
