"""Labelled videos -> an image-folder dataset of grayscale frames (how seed 002 built its eNTERFACE'05 set).

The label of a video comes from its parent folder name (through the alias table) or from a regular
expression with a named group ``label`` matched on the file name. eNTERFACE'05 two-letter codes
(``s1_an_1.avi``: an, di, fe, ha, sa, su) are understood as well. Each kept frame is centre-cropped to a
square, turned grayscale and resized with the shared preprocessing, and written as
``OUT/<class>/<video>_f<frame>.png``; ``OUT/frames.csv`` records video, frame index and time of every PNG.
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError
from .labels import FER7, LabelSet, canonical_name, get_label_set
from .preprocess import resize, to_gray

VIDEO_EXTS = {".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv"}
ENTERFACE_CODES = {"an": "angry", "di": "disgust", "fe": "fear", "ha": "happy", "sa": "sad", "su": "surprise"}


@dataclass
class FramesReport:
    videos: int
    frames: int
    per_class: dict[str, int]
    skipped_videos: list[str]
    manifest: Path


def list_videos(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "not a directory of videos")
    vids = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS)
    if not vids:
        raise DataError(root, "no videos found (extensions: " + ", ".join(sorted(VIDEO_EXTS)) + ")")
    return vids


def video_label(path: Path, ls: LabelSet, pattern: re.Pattern | None) -> str | None:
    """Canonical class name for a video, or None when its name / folder is not a class of ``ls``."""
    if pattern is not None:
        m = pattern.search(path.name)
        if m is None:
            return None
        raw = m.group("label")
    else:
        raw = path.parent.name
    name = canonical_name(raw)
    if name not in ls.labels:
        name = ENTERFACE_CODES.get(raw.strip().lower(), name)
    return name if name in ls.labels else None


def square_gray(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre square crop of a whole frame, grayscale, at ``size`` (no face detection)."""
    g = to_gray(frame)
    h, w = g.shape
    s = min(h, w)
    g = g[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return resize(g, size)


def extract_frames(videos_dir: str | os.PathLike, out: str | os.PathLike, every: int | None = None,
                   fps: float | None = None, pattern: str | None = None, size: int = 48,
                   label_set: LabelSet | str = FER7, ignore_unknown: bool = False,
                   progress: Callable[[int], None] | None = None) -> FramesReport:
    """Write sampled frames of every labelled video; ``every`` N frames or ``fps`` frames per second."""
    if every is not None and fps is not None:
        raise ValueError("pass either --every N or --fps F, not both")
    if every is not None and every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    if fps is not None and fps <= 0:
        raise ValueError(f"--fps must be > 0, got {fps}")
    if size < 8:
        raise ValueError(f"--size must be >= 8 pixels, got {size}")
    ls = get_label_set(label_set)
    rx = None
    if pattern is not None:
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"--pattern {pattern!r} is not a valid regular expression: {e}") from None
        if "label" not in rx.groupindex:
            raise ValueError(f"--pattern {pattern!r} needs a named group (?P<label>...)")
    videos = list_videos(videos_dir)
    labelled: list[tuple[Path, str]] = []
    unknown: list[str] = []
    for v in videos:
        lab = video_label(v, ls, rx)
        if lab is None:
            unknown.append(str(v.relative_to(videos_dir)))
        else:
            labelled.append((v, lab))
    if unknown and not ignore_unknown:
        how = f"file names matching --pattern {pattern!r}" if rx else "parent folder names"
        raise DataError(videos_dir, f"no {ls.name} label in the {how} of {len(unknown)} video(s): "
                                    f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''} "
                                    "(rename, pass --pattern, or --ignore-unknown)")
    if not labelled:
        raise DataError(videos_dir, "no labelled videos")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "frames.csv"
    counts = {c: 0 for c in ls.labels}
    skipped: list[str] = []
    total = 0
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "video", "frame", "time_s"])
        for v, lab in labelled:
            cap = cv2.VideoCapture(str(v))
            if not cap.isOpened():
                skipped.append(f"{v}: cannot open video")
                continue
            vfps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            if fps is not None and vfps <= 0:
                cap.release()
                raise DataError(v, "video reports no frame rate; use --every N instead of --fps")
            d = out / lab
            d.mkdir(exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(v.relative_to(videos_dir).with_suffix("")))
            idx, n_written, next_t = 0, 0, 0.0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                t = idx / vfps if vfps > 0 else 0.0
                if fps is not None:
                    take = t + 1e-9 >= next_t
                    if take:
                        next_t += 1.0 / fps
                else:
                    take = idx % (every or 1) == 0
                if take:
                    p = d / f"{stem}_f{idx:06d}.png"
                    if not cv2.imwrite(str(p), square_gray(frame, size)):
                        raise DataError(p, "could not write PNG")
                    w.writerow([str(p.relative_to(out)), lab, str(v), idx, round(t, 4)])
                    n_written += 1
                idx += 1
            cap.release()
            if idx == 0:
                skipped.append(f"{v}: no decodable frames")
            counts[lab] += n_written
            total += n_written
            if progress:
                progress(1)
    return FramesReport(len(labelled), total, {k: v for k, v in counts.items() if v}, skipped, manifest)
