"""Per-person summaries of a video or stream, built as frames go by, in memory bounded per person.

For each tracked face (``face_id``): the time on screen, the share of that time in each emotion (by the
smoothed label), the dominant emotion, the mean scores, each emotion's peak (time and score) and the
strongest moments (the highest non-neutral scores, at least ``min_gap_s`` apart). The probability curves
kept for the plot are merged pairwise whenever they pass ``max_points``, so an hour costs what a minute
does. A face that leaves and comes back after more than the tracker's gap gets a new id: it is summarised
as a new person.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _get(face, key: str):
    return face[key] if isinstance(face, dict) else getattr(face, key)


@dataclass
class _Person:
    face_id: int
    labels: list[str]
    max_points: int
    first: float = 0.0
    last: float = 0.0
    frames: int = 0
    on_screen: float = 0.0
    box: tuple = ()
    label_time: dict[str, float] = field(default_factory=dict)
    score_sum: np.ndarray | None = None
    peaks: dict[str, tuple[float, float]] = field(default_factory=dict)  # emotion -> (score, time)
    moments: list[dict] = field(default_factory=list)
    # downsampled curve: each point is a (sum of times, sum of score vectors, count) bucket
    t_sum: list[float] = field(default_factory=list)
    p_sum: list[np.ndarray] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    bucket: int = 1  # frames per curve point; doubles when the curve is full

    def add(self, t: float, dt: float, scores: dict[str, float], label: str, box, top_k: int, min_gap: float,
            neutral: str | None) -> None:
        p = np.array([float(scores.get(k, 0.0)) for k in self.labels], np.float64)
        if self.frames == 0:
            self.first, self.score_sum = t, np.zeros(len(self.labels))
        self.frames += 1
        self.last, self.box = t, tuple(int(v) for v in box)
        self.on_screen += dt
        self.label_time[label] = self.label_time.get(label, 0.0) + dt
        self.score_sum += p
        for k, v in zip(self.labels, p):
            if v > self.peaks.get(k, (-1.0, 0.0))[0]:
                self.peaks[k] = (float(v), t)
        self._moment(t, p, top_k, min_gap, neutral)
        if self.n and self.n[-1] < self.bucket:
            self.t_sum[-1] += t
            self.p_sum[-1] += p
            self.n[-1] += 1
        else:
            self.t_sum.append(t)
            self.p_sum.append(p.copy())
            self.n.append(1)
        if len(self.n) > self.max_points:  # merge neighbours: half the points, twice the frames each
            self.t_sum = [a + b for a, b in zip(self.t_sum[0::2], self.t_sum[1::2])] + \
                ([self.t_sum[-1]] if len(self.t_sum) % 2 else [])
            self.p_sum = [a + b for a, b in zip(self.p_sum[0::2], self.p_sum[1::2])] + \
                ([self.p_sum[-1]] if len(self.p_sum) % 2 else [])
            self.n = [a + b for a, b in zip(self.n[0::2], self.n[1::2])] + ([self.n[-1]] if len(self.n) % 2 else [])
            self.bucket *= 2

    def _moment(self, t: float, p: np.ndarray, top_k: int, min_gap: float, neutral: str | None) -> None:
        """Keep the ``top_k`` strongest non-neutral moments, one per ``min_gap_s`` window (online, bounded)."""
        cand = [(v, k) for k, v in zip(self.labels, p) if k != neutral]
        if not cand or top_k <= 0:
            return
        score, emo = max(cand)
        near = [m for m in self.moments if abs(m["time"] - t) < min_gap]
        if near:
            if all(score > m["score"] for m in near):
                self.moments = [m for m in self.moments if m not in near]
            else:
                return
        elif len(self.moments) >= top_k and score <= self.moments[-1]["score"]:
            return
        self.moments.append({"time": round(t, 3), "emotion": emo, "score": round(float(score), 4)})
        self.moments.sort(key=lambda m: -m["score"])
        del self.moments[top_k:]

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        n = np.array(self.n, np.float64)
        return np.array(self.t_sum) / n, np.stack(self.p_sum) / n[:, None]

    def to_dict(self) -> dict:
        total = self.on_screen or 1e-9
        share = {k: round(self.label_time.get(k, 0.0) / total, 4) for k in self.labels}
        mean = self.score_sum / max(1, self.frames)
        return {"face_id": self.face_id, "time_on_screen_s": round(self.on_screen, 3),
                "first_seen_s": round(self.first, 3), "last_seen_s": round(self.last, 3), "frames": self.frames,
                "dominant": max(share, key=share.get), "share": share,
                "mean_scores": {k: round(float(v), 4) for k, v in zip(self.labels, mean)},
                "peaks": {k: {"time": round(t, 3), "score": round(s, 4)} for k, (s, t) in self.peaks.items()},
                "strongest_moments": list(self.moments), "last_box": list(self.box)}


class SummaryBuilder:
    """Feed it frames (``add(time, faces)``, faces carrying ``face_id``, ``scores``, ``label``, ``box``);
    ``result()`` gives the per-person summary. ``frame_dt``: the nominal time between two processed frames
    (stride / fps); the measured gap is used instead when it is larger (a live stream's dropped frames),
    up to ``max_dt_s`` (a reconnect gap is not time on screen)."""

    def __init__(self, labels: list[str], frame_dt: float = 0.0, max_points: int = 400, top_k: int = 3,
                 min_gap_s: float = 1.0, max_dt_s: float = 1.0, neutral: str | None = "neutral",
                 max_people: int = 1000):
        self.labels, self.frame_dt, self.max_points = list(labels), float(frame_dt), int(max_points)
        self.top_k, self.min_gap, self.max_dt, self.neutral = int(top_k), float(min_gap_s), float(max_dt_s), neutral
        if max_people < 1:
            raise ValueError(f"max_people must be at least 1, got {max_people}")
        self.max_people = int(max_people)  # a crowd over hours: memory stays bounded (~25 KB a person)
        self.evicted, self.evicted_s = 0, 0.0
        self.people: dict[int, _Person] = {}
        self.frames = 0
        self.first_t: float | None = None
        self.last_t: float | None = None

    def add(self, t: float, faces: Iterable) -> None:
        t = float(t)
        dt = self.frame_dt
        if self.last_t is not None and t > self.last_t:
            dt = min(self.max_dt, max(dt, t - self.last_t)) if dt else min(self.max_dt, t - self.last_t)
        self.frames += 1
        self.first_t = t if self.first_t is None else self.first_t
        self.last_t = t
        for f in faces:
            fid = _get(f, "face_id")
            fid = -1 if fid is None else int(fid)
            p = self.people.get(fid)
            if p is None:
                if len(self.people) >= self.max_people:
                    self._evict(t)
                p = self.people[fid] = _Person(fid, self.labels, self.max_points)
            p.add(t, dt, _get(f, "scores"), _get(f, "label"), _get(f, "box"), self.top_k, self.min_gap, self.neutral)

    def _evict(self, t: float) -> None:
        """Make room: forget the person with the least time on screen among those not in the current frame
        (counted in ``people_evicted`` / ``evicted_time_on_screen_s``, never silently)."""
        gone = [p for p in self.people.values() if p.last < t] or list(self.people.values())
        victim = min(gone, key=lambda p: (p.on_screen, p.last))
        self.evicted += 1
        self.evicted_s += victim.on_screen
        del self.people[victim.face_id]

    def result(self) -> dict:
        dur = (self.last_t - self.first_t + self.frame_dt) if self.first_t is not None else 0.0
        people = sorted((p.to_dict() for p in self.people.values()), key=lambda d: d["face_id"])
        out = {"labels": self.labels, "frames": self.frames, "duration_s": round(dur, 3), "people": people}
        if self.evicted:
            out.update({"people_evicted": self.evicted, "evicted_time_on_screen_s": round(self.evicted_s, 3),
                        "max_people": self.max_people})
        return out

    def write_json(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Atomic write (a temporary file renamed into place): a reader never sees half a summary."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({**(extra or {}), **self.result()}, indent=2))
        os.replace(tmp, path)
        return path

    def plot_curves(self, path: str | os.PathLike, title: str = "", max_people: int = 6) -> Path:
        """One panel per person (the longest on screen first): each class probability over time."""
        plt = _pyplot()
        from .draw import color_for

        people = sorted(self.people.values(), key=lambda p: -p.on_screen)[:max_people]
        n = max(1, len(people))
        fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n + 0.6), squeeze=False, sharex=True)
        for ax, p in zip(axes[:, 0], people or [None]):
            if p is not None:
                t, probs = p.curve()
                for j, lab in enumerate(self.labels):
                    b, g, r = color_for(lab)
                    ax.plot(t, probs[:, j], label=lab, color=(r / 255, g / 255, b / 255))
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"face {p.face_id}" if p is not None else "no face")
        if people:
            axes[0, 0].legend(ncol=min(4, len(self.labels)), fontsize=7, loc="upper right")
        axes[-1, 0].set_xlabel("time (s)")
        fig.suptitle(f"Emotions over time {title}".strip())
        return _save(fig, plt, path)

    def plot_summary(self, path: str | os.PathLike, title: str = "", max_people: int = 8) -> Path:
        """Per person: a bar of the share of time in each emotion, with the time on screen and the
        strongest moment in its label."""
        plt = _pyplot()
        from .draw import color_for

        res = sorted(self.result()["people"], key=lambda d: -d["time_on_screen_s"])[:max_people]
        fig, ax = plt.subplots(figsize=(8, 0.6 * max(1, len(res)) + 1.4))
        for i, d in enumerate(res):
            left = 0.0
            for lab in self.labels:
                w = d["share"][lab]
                b, g, r = color_for(lab)
                ax.barh(i, w, left=left, color=(r / 255, g / 255, b / 255), label=lab if i == 0 else None)
                left += w
            m = d["strongest_moments"][0] if d["strongest_moments"] else None
            note = f"  {d['time_on_screen_s']:.0f} s" + (f"; peak {m['emotion']} {m['score']:.2f} @ {m['time']:.1f} s"
                                                        if m else "")
            ax.text(1.01, i, note, va="center", fontsize=7)
        ax.set_yticks(range(len(res)), [f"face {d['face_id']}" for d in res])
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of time on screen")
        ax.invert_yaxis()
        if res:
            ax.legend(ncol=min(4, len(self.labels)), fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0))
        fig.suptitle(f"Who felt what {title}".strip(), y=0.995)
        return _save(fig, plt, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def summarize(frames: Iterable, labels: list[str], frame_dt: float = 0.0, **kw) -> SummaryBuilder:
    """Summarise :class:`FrameResult` s as they come (``FaceEmotionRecognizer.stream(...)``); the frames are
    not kept. ``kw``: :class:`SummaryBuilder` options."""
    b = SummaryBuilder(labels, frame_dt, **kw)
    for fr in frames:
        b.add(fr.time, fr.faces)
    return b


def summarize_timeline(path: str | os.PathLike, frame_dt: float = 0.0, **kw) -> SummaryBuilder:
    """Summarise a timeline CSV written by ``emotionlab predict VIDEO --out DIR`` (read row by row)."""
    path = Path(path)
    with open(path, newline="") as fh:
        rd = csv.DictReader(fh)
        labels = [c[2:] for c in (rd.fieldnames or []) if c.startswith("p_") and not c.startswith("p_gender_")]
        if not labels or not {"time", "face_id", "label"} <= set(rd.fieldnames or []):
            from ..data.errors import DataError

            raise DataError(path, "not an emotionlab timeline (needs time, face_id, label and p_* columns)")
        b = SummaryBuilder(labels, frame_dt, **kw)
        cur_t, faces = None, []
        for r in rd:
            t = float(r["time"])
            if cur_t is not None and t != cur_t:
                b.add(cur_t, faces)
                faces = []
            cur_t = t
            faces.append({"face_id": int(r["face_id"]), "label": r["label"],
                          "scores": {k: float(r[f"p_{k}"]) for k in labels},
                          "box": [int(float(r.get(k) or 0)) for k in ("x", "y", "w", "h")]})
        if cur_t is not None:
            b.add(cur_t, faces)
    return b
