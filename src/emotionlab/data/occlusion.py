"""Occlusion masks as plain functions (seed 004): forehead, eyes, lower face, and landmark-based shapes.

Each function returns a boolean (H, W) mask, True where the face is hidden. Regions follow seed 004 on
aligned 48x48 FER crops: forehead = top quarter, eyes = the quarter band below it, lower face = bottom half.
"""
from __future__ import annotations

import cv2
import numpy as np


def forehead_mask(h: int, w: int | None = None) -> np.ndarray:
    w = w or h
    m = np.zeros((h, w), bool)
    m[: h // 4] = True
    return m


def eyes_mask(h: int, w: int | None = None) -> np.ndarray:
    w = w or h
    m = np.zeros((h, w), bool)
    m[h // 4: h // 2] = True
    return m


def lower_face_mask(h: int, w: int | None = None) -> np.ndarray:
    w = w or h
    m = np.zeros((h, w), bool)
    m[h // 2:] = True
    return m


def medical_mask_from_landmarks(h: int, w: int, landmarks: np.ndarray) -> np.ndarray:
    """A surgical-mask shape from face landmarks (crop coordinates): nose tip down to below the mouth.

    ``landmarks`` are BlazeFace-style keypoints (right eye, left eye, nose tip, mouth, right ear, left ear);
    only the first four are used.
    """
    lm = np.asarray(landmarks, np.float32).reshape(-1, 2)
    if len(lm) < 4:
        raise ValueError("medical_mask_from_landmarks needs at least 4 landmarks (eyes, nose, mouth)")
    re, le, nose, mouth = lm[:4]
    eye_dist = float(np.linalg.norm(le - re)) or w / 3
    top = nose[1] - 0.15 * eye_dist
    left, right = min(re[0], le[0]) - 0.55 * eye_dist, max(re[0], le[0]) + 0.55 * eye_dist
    bottom = mouth[1] + 0.9 * eye_dist
    poly = np.array([[left, top], [right, top], [right, bottom - 0.3 * eye_dist], [(left + right) / 2, bottom],
                     [left, bottom - 0.3 * eye_dist]], np.int32)
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [poly], 1)
    return m.astype(bool)


MASKS = {
    "forehead": forehead_mask,
    "eyes": eyes_mask,
    "mouth": lower_face_mask,
    "lower": lower_face_mask,
}


def get_mask(name: str, h: int, w: int | None = None) -> np.ndarray | None:
    """Mask by name; ``none`` gives None. Unknown names raise with the list of known ones."""
    if name in ("none", "", None):
        return None
    if name not in MASKS:
        raise KeyError(f"unknown occlusion {name!r}; known: none, {', '.join(MASKS)}")
    return MASKS[name](h, w)


def apply_mask(images: np.ndarray, mask: np.ndarray | None, fill: int = 0) -> np.ndarray:
    """Return a copy of uint8 images (N,H,W) with the masked region set to ``fill`` (black, like a patch)."""
    if mask is None:
        return images
    out = np.array(images, copy=True)
    out[..., mask] = fill
    return out
