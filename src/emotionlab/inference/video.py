"""Video in and out: frame iteration, annotated MP4, per-frame timeline (CSV / Parquet) and an emotion plot.

A corrupt or truncated video stops at the last decodable frame: what was decoded is written, and the result
carries a clear error message instead of a traceback.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..data.decode import DecodeLimits, check_shape
from ..data.errors import DataError

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def open_capture(source) -> cv2.VideoCapture:
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        cap = cv2.VideoCapture(int(source))
        if not cap.isOpened():
            raise DataError(f"camera {source}", "cannot open the camera (no device, or in use by another program)")
        return cap
    path = Path(source)
    if not path.exists():
        raise DataError(path, "no such file")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(path, "not a readable video (corrupt, truncated or unsupported codec)")
    return cap


def check_video_frames(cap: cv2.VideoCapture, source, limits: DecodeLimits | None = None) -> None:
    """Refuse a video whose frames are over the decode guard's pixel or aspect limits, before any frame is
    decoded (the same rule as for images: :func:`emotionlab.data.decode.check_shape`)."""
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if w > 0 and h > 0:  # 0: the container does not say; frames are checked as they come
        check_shape(w, h, source, limits or DecodeLimits.local())


def iter_frames(source, stride: int = 1, limits: DecodeLimits | None = None
                ) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time in seconds, BGR frame) for every ``stride``-th frame; frames over ``limits``
    (default :meth:`DecodeLimits.local`) are refused with a ``DataError``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    cap = open_capture(source)
    lim = limits or DecodeLimits.local()
    try:
        check_video_frames(cap, source, lim)
    except DataError:
        cap.release()
        raise
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if fps > 0 else 30.0
    idx = 0
    try:
        while True:
            if idx % stride == 0:
                ok, frame = cap.read()
                if not ok:
                    break
                if frame.shape[0] * frame.shape[1] > lim.max_pixels:  # a container that lied about its size
                    check_shape(frame.shape[1], frame.shape[0], source, lim)
                yield idx, idx / fps, frame
            else:
                if not cap.grab():
                    break
            idx += 1
    finally:
        cap.release()


@dataclass
class VideoResult:
    path: str
    frames: int = 0
    faces: int = 0
    expected_frames: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    rows: list[dict] = field(default_factory=list, repr=False)


def process_video(recognizer, path: str | os.PathLike, out_dir: Path | None, stride: int = 1,
                  smoothing: float = 0.5, progress=None) -> VideoResult:
    """Run the recognizer over a video; write ``<stem>.annotated.mp4``, ``<stem>.timeline.csv`` and
    ``<stem>.emotions.png`` into ``out_dir`` (if given). Never raises for a video that breaks mid-way."""
    from .draw import draw_faces

    path = Path(path)
    cap = open_capture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    res = VideoResult(str(path), expected_frames=expected)
    writer = None
    last_idx = -1
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for fr in recognizer.stream(str(path), stride=stride, smoothing=smoothing):
            last_idx = fr.index
            res.frames += 1
            res.faces += len(fr.faces)
            for f in fr.faces:
                row = {"frame": fr.index, "time": round(fr.time, 4), "face_id": f.face_id, "x": f.box[0],
                       "y": f.box[1], "w": f.box[2], "h": f.box[3], "label": f.label}
                row.update({f"p_{k}": round(v, 5) for k, v in f.scores.items()})
                if getattr(f, "gender", None) is not None:  # attributes=("emotion", "gender")
                    row["gender"] = f.gender["label"]
                    row.update({f"p_gender_{k}": round(v, 5) for k, v in f.gender["scores"].items()})
                res.rows.append(row)
            if out_dir is not None:
                if writer is None:
                    h, w = fr.frame.shape[:2]
                    mp4 = out_dir / f"{path.stem}.annotated.mp4"
                    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps / stride, (w, h))
                    if not writer.isOpened():
                        raise DataError(mp4, "cannot open an MP4 writer (mp4v codec unavailable)")
                    res.outputs["video"] = str(mp4)
                writer.write(draw_faces(fr.frame, fr.faces))
            if progress is not None:
                progress(fr.index, expected)
    except DataError as e:
        res.error = str(e)
    except cv2.error as e:
        res.error = f"{path}: decoding failed after frame {last_idx}: {e}"
    finally:
        if writer is not None:
            writer.release()
    if res.error is None and res.frames == 0:
        res.error = f"{path}: no frame could be decoded (corrupt or empty video)"
    elif res.error is None and expected > 0 and last_idx + stride < expected - 1:
        res.error = (f"{path}: video stopped at frame {last_idx + 1} of {expected} (corrupt or truncated); "
                     "the decoded part was written")
    if out_dir is not None and res.frames:
        res.outputs["timeline"] = str(write_timeline(res.rows, out_dir / f"{path.stem}.timeline.csv",
                                                     recognizer.labels))
        res.outputs["plot"] = str(plot_timeline(res.rows, out_dir / f"{path.stem}.emotions.png", recognizer.labels,
                                                title=path.name))
    return res


def write_timeline(rows: list[dict], path: Path, labels: list[str]) -> Path:
    """Per-frame, per-face CSV (or Parquet when the suffix is .parquet and pyarrow is installed)."""
    cols = ["frame", "time", "face_id", "x", "y", "w", "h", "label"] + [f"p_{k}" for k in labels]
    extra = dict.fromkeys(k for r in rows for k in r if k.startswith(("gender", "p_gender_")))  # opt-in attributes
    cols += sorted(extra, key=lambda k: (k != "gender", k))
    if path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(rows, columns=cols).to_parquet(path)  # raises ImportError without pyarrow
        return path
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


def plot_timeline(rows: list[dict], path: Path, labels: list[str], title: str = "") -> Path:
    """One panel per tracked face: each class probability over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .draw import color_for

    ids = sorted({r["face_id"] for r in rows})[:6]
    n = max(1, len(ids))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n + 0.6), squeeze=False, sharex=True)
    for ax, fid in zip(axes[:, 0], ids or [None]):
        rs = [r for r in rows if r["face_id"] == fid]
        t = [r["time"] for r in rs]
        for lab in labels:
            b, g, r_ = color_for(lab)
            ax.plot(t, [r[f"p_{lab}"] for r in rs], label=lab, color=(r_ / 255, g / 255, b / 255))
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {fid}" if fid is not None else "no face")
    axes[0, 0].legend(ncol=min(4, len(labels)), fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"Emotions over time {title}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
