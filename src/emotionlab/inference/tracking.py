"""Face tracking across video frames: stable ids by IoU (centroid distance as a fallback) and EMA smoothing.

Per-frame emotion scores flicker; an exponential moving average per track (``smoothing`` = weight of the past,
0 = off) steadies the label without hiding real changes for long. Faces are ``Face`` objects or the
service's JSON dicts (``box``, ``scores``, ``label``, ``face_id`` keys), so the video CLI and the WebSocket
stream share one tracker.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .detectors import _iou


def _get(face: Any, key: str) -> Any:
    return face[key] if isinstance(face, MutableMapping) else getattr(face, key)


def _set(face: Any, key: str, value: Any) -> None:
    if isinstance(face, MutableMapping):
        face[key] = value
    else:
        setattr(face, key, value)


@dataclass
class Track:
    face_id: int
    box: tuple[int, int, int, int]
    scores: dict[str, float]
    missed: int = 0


class FaceTracker:
    def __init__(self, iou: float = 0.3, max_missed: int = 10, smoothing: float = 0.5, centroid: float = 0.5,
                 first_id: int = 0):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.iou, self.max_missed, self.smoothing, self.centroid = iou, max_missed, smoothing, centroid
        self.tracks: list[Track] = []
        self._next = int(first_id)  # the stream's page shows ids: it counts from 1

    def _match(self, faces) -> dict[int, Track]:
        """Greedy assignment, best pairs first; centroid distance (relative to box size) breaks IoU ties."""
        pairs = []
        for fi, f in enumerate(faces):
            box = _get(f, "box")
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

    def update(self, faces) -> None:
        """Assign ``face_id`` to each face (in place) and replace its scores / label by the smoothed ones."""
        matched = self._match(faces)
        a = self.smoothing
        seen = set()
        for fi, f in enumerate(faces):
            t = matched.get(fi)
            box, scores = tuple(_get(f, "box")), _get(f, "scores")
            if t is None:
                t = Track(self._next, box, dict(scores))
                self._next += 1
                self.tracks.append(t)
            else:
                t.scores = {k: a * t.scores.get(k, v) + (1 - a) * v for k, v in scores.items()}
                tot = sum(t.scores.values()) or 1.0
                t.scores = {k: v / tot for k, v in t.scores.items()}
                t.box = box
                t.missed = 0
            seen.add(t.face_id)
            _set(f, "face_id", t.face_id)
            _set(f, "scores", dict(t.scores))
            _set(f, "label", max(t.scores, key=t.scores.get))
        for t in self.tracks:
            if t.face_id not in seen:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
