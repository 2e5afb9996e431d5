"""Face tracking across video frames: stable ids through missed detections, short occlusions and crossings.

Each track remembers its last box and its velocity (an average of the centre's motion per processed frame).
A frame's faces are matched to where each track is *predicted* to be (last box + velocity x frames since it was
seen), by one optimal assignment (Hungarian, on IoU and centre distance relative to the face size), so two
faces that cross keep their ids, and a face missed for a few frames is found again where it went. A track
survives ``max_missed`` processed frames without a match (the CLI's ``--track-gap``); a face that comes back
after a longer gap gets a new id.

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
    vx: float = 0.0  # centre motion per processed frame (pixels)
    vy: float = 0.0
    hits: int = 1

    def predicted(self) -> tuple[float, float, float, float]:
        """Where the face should be now: the last box moved by the velocity for the frames it was not seen."""
        k = self.missed + 1
        x, y, w, h = self.box
        return (x + self.vx * k, y + self.vy * k, w, h)


class FaceTracker:
    """``iou``: overlap with the predicted box that is a match on its own; ``centroid``: else the largest
    centre distance, in face sizes, that may still match (it widens by ``growth`` per missed frame, a face
    may have sped up); ``max_missed``: processed frames a track may go unmatched and keep its id."""

    def __init__(self, iou: float = 0.3, max_missed: int = 10, smoothing: float = 0.5, centroid: float = 0.5,
                 first_id: int = 0, growth: float = 0.25, max_scale: float = 1.8, velocity: float = 0.5):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if isinstance(max_missed, bool) or not isinstance(max_missed, (int, np.integer)) or max_missed < 0:
            raise ValueError(f"max_missed must be an integer >= 0, got {max_missed!r}")
        if not 0.0 <= velocity <= 1.0:
            raise ValueError(f"velocity must be in [0, 1], got {velocity}")
        self.iou, self.max_missed, self.smoothing, self.centroid = iou, int(max_missed), smoothing, centroid
        self.growth, self.max_scale, self.velocity = growth, max_scale, velocity
        self.tracks: list[Track] = []
        self._next = int(first_id)  # the stream's page shows ids: it counts from 1

    def _cost(self, box, t: Track) -> float | None:
        """Cost of giving ``box`` to track ``t`` (lower is better), or None when it cannot be that face."""
        px, py, pw, ph = t.predicted()
        w, h = box[2], box[3]
        scale = max(w, pw) / max(1.0, min(w, pw))
        if scale > self.max_scale:  # a face does not double in size between two frames it was seen in
            return None
        iou = _iou(box, (px, py, pw, ph))
        dx = (box[0] + w / 2) - (px + pw / 2)
        dy = (box[1] + h / 2) - (py + ph / 2)
        dist = float(np.hypot(dx, dy)) / max(1.0, max(pw, ph))
        if iou < self.iou and dist > self.centroid * (1.0 + self.growth * t.missed):
            return None
        return (1.0 - iou) + dist

    def _match(self, faces) -> dict[int, Track]:
        """One optimal assignment of faces to tracks over the allowed pairs."""
        if not faces or not self.tracks:
            return {}
        from scipy.optimize import linear_sum_assignment

        big = 1e6
        cost = np.full((len(faces), len(self.tracks)), big)
        for fi, f in enumerate(faces):
            box = tuple(float(v) for v in _get(f, "box"))
            for ti, t in enumerate(self.tracks):
                c = self._cost(box, t)
                if c is not None:
                    cost[fi, ti] = c + 0.05 * t.missed  # between equals, the track seen most recently
        rows, cols = linear_sum_assignment(cost)
        return {int(fi): self.tracks[ti] for fi, ti in zip(rows, cols) if cost[fi, ti] < big}

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
                k = t.missed + 1  # frames since it was last seen
                vx = ((box[0] + box[2] / 2) - (t.box[0] + t.box[2] / 2)) / k
                vy = ((box[1] + box[3] / 2) - (t.box[1] + t.box[3] / 2)) / k
                b = self.velocity if t.hits > 1 else 1.0  # the first motion seen is the best guess there is
                t.vx, t.vy = (1 - b) * t.vx + b * vx, (1 - b) * t.vy + b * vy
                t.scores = {k_: a * t.scores.get(k_, v) + (1 - a) * v for k_, v in scores.items()}
                tot = sum(t.scores.values()) or 1.0
                t.scores = {k_: v / tot for k_, v in t.scores.items()}
                t.box = box
                t.missed = 0
                t.hits += 1
            seen.add(t.face_id)
            _set(f, "face_id", t.face_id)
            _set(f, "scores", dict(t.scores))
            _set(f, "label", max(t.scores, key=t.scores.get))
        for t in self.tracks:
            if t.face_id not in seen:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
