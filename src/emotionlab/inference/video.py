"""Video in and out: frame iteration, annotated MP4, per-frame timeline (CSV / Parquet) and an emotion plot.

A corrupt or truncated video stops at the last decodable frame: what was decoded is written, and the result
carries a clear error message instead of a traceback.
"""
from __future__ import annotations

import csv
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


class TimelineWriter:
    """Per-frame, per-face rows written as they come: CSV (flushed every ``flush_rows``), or Parquet in row
    groups of ``flush_rows`` when the suffix is .parquet (needs pyarrow). At most ``flush_rows`` rows are in
    memory whatever the length of the video."""

    def __init__(self, path: Path, labels: list[str], gender_labels: list[str] | None = None,
                 flush_rows: int = 2048):
        self.path, self.flush_rows = Path(path), int(flush_rows)
        self.cols = timeline_columns(labels, gender_labels)
        self.rows = 0
        self._buf: list[dict] = []
        self._pq = None
        if self.path.suffix == ".parquet":
            import pyarrow  # noqa: F401  (ImportError: the caller falls back to CSV)

            self._fh = None
        else:
            self._fh = open(self.path, "w", newline="")
            self._csv = csv.DictWriter(self._fh, fieldnames=self.cols, extrasaction="ignore")
            self._csv.writeheader()

    def write(self, rows: list[dict]) -> None:
        self._buf.extend(rows)
        self.rows += len(rows)
        if len(self._buf) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        if self._fh is not None:
            self._csv.writerows(self._buf)
            self._fh.flush()
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist([{c: r.get(c) for c in self.cols} for r in self._buf])
            if self._pq is None:
                self._pq = pq.ParquetWriter(str(self.path), table.schema)
            self._pq.write_table(table.cast(self._pq.schema))
        self._buf.clear()

    def close(self) -> None:
        self.flush()
        if self._fh is not None:
            self._fh.close()
        elif self._pq is not None:
            self._pq.close()

    def __enter__(self) -> "TimelineWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def timeline_columns(labels: list[str], gender_labels: list[str] | None = None) -> list[str]:
    cols = ["frame", "time", "face_id", "x", "y", "w", "h", "label"] + [f"p_{k}" for k in labels]
    if gender_labels:  # attributes=("emotion", "gender")
        cols += ["gender"] + sorted(f"p_gender_{k}" for k in gender_labels)
    return cols


def face_row(index: int, time: float, f) -> dict:
    row = {"frame": index, "time": round(time, 4), "face_id": f.face_id, "x": f.box[0], "y": f.box[1],
           "w": f.box[2], "h": f.box[3], "label": f.label}
    row.update({f"p_{k}": round(v, 5) for k, v in f.scores.items()})
    if getattr(f, "gender", None) is not None:
        row["gender"] = f.gender["label"]
        row.update({f"p_gender_{k}": round(v, 5) for k, v in f.gender["scores"].items()})
    return row


@dataclass
class VideoResult:
    path: str
    frames: int = 0
    faces: int = 0
    expected_frames: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    summary: dict = field(default_factory=dict, repr=False)  # per person (inference.summary)
    live: dict | None = None  # LiveStats.to_dict() for a stream or camera
    interrupted: bool = False  # Ctrl-C: what was processed is written


def process_video(recognizer, path, out_dir: Path | None, stride: int = 1, smoothing: float = 0.5,
                  progress=None, timeline: str = "csv", max_missed: int = 20, live=None,
                  summary: bool = False, on_event=None, limits: DecodeLimits | None = None) -> VideoResult:
    """Run the recognizer over a video file, a camera index or a network stream; write
    ``<stem>.annotated.mp4``, ``<stem>.timeline.csv`` (or ``.parquet``) and ``<stem>.emotions.png`` into
    ``out_dir`` (if given), and with ``summary`` ``<stem>.summary.json`` / ``.summary.png`` (per person).

    Everything is written as it goes: memory does not grow with the length of the video. ``live``:
    :class:`~emotionlab.inference.sources.LiveOptions` for streams and cameras (timeouts, reconnects,
    ``duration_s``). ``max_missed``: frames a face may be missing and keep its id. Never raises for a video
    that breaks mid-way, a stream that dies, or Ctrl-C (``interrupted``): what was processed is written."""
    from .draw import draw_faces
    from .sources import LiveSource, is_live, source_name
    from .summary import SummaryBuilder

    if timeline not in ("csv", "parquet"):
        raise ValueError(f"timeline must be csv or parquet, got {timeline!r}")
    src: object
    if is_live(path):
        src = LiveSource(path, live, limits, stride, on_event)  # DataError: cannot open
        stem, fps, expected, name = source_name(path), src.stats.fps_source or 25.0, 0, src.name
        frame_dt = 0.0  # measured between frames
    else:
        path = Path(path)
        cap = open_capture(path)
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
        src, stem, name, frame_dt = str(path), path.stem, str(path), stride / fps
    res = VideoResult(name, expected_frames=expected)
    gender = getattr(recognizer, "gender", None)
    summ = SummaryBuilder(recognizer.labels, frame_dt)
    writer = tl = None
    last_idx = -1
    written = 0  # frames in the annotated video
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        tl_path = out_dir / f"{stem}.timeline.{timeline}"
        try:
            tl = TimelineWriter(tl_path, recognizer.labels, gender.labels if gender is not None else None)
        except ImportError:
            if on_event is not None:
                on_event("pyarrow is not installed; the timeline is written as CSV")
            tl = TimelineWriter(tl_path.with_suffix(".csv"), recognizer.labels,
                                gender.labels if gender is not None else None)
    frames = recognizer.stream(src, stride=stride, smoothing=smoothing, max_missed=max_missed, limits=limits)
    file_end = live.duration_s if live is not None and not isinstance(src, LiveSource) else None
    cut = False  # a file stopped at --duration on purpose
    try:
        for fr in frames:
            if file_end is not None and fr.time >= file_end:
                cut = True
                break
            last_idx = fr.index
            res.frames += 1
            res.faces += len(fr.faces)
            summ.add(fr.time, fr.faces)
            if tl is not None:
                tl.write([face_row(fr.index, fr.time, f) for f in fr.faces])
            if out_dir is not None:
                if writer is None:
                    h, w = fr.frame.shape[:2]
                    mp4 = out_dir / f"{stem}.annotated.mp4"
                    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps / stride, (w, h))
                    if not writer.isOpened():
                        raise DataError(mp4, "cannot open an MP4 writer (mp4v codec unavailable)")
                    res.outputs["video"] = str(mp4)
                if fr.frame.shape[:2] == (h, w):  # a stream that changed size after a reconnect: not drawn
                    drawn = draw_faces(fr.frame, fr.faces)
                    copies = 1
                    if isinstance(src, LiveSource):  # keep the video in real time: repeat a frame over the
                        # gap left by frames dropped while inference lagged (at most 2 s: a reconnect jumps)
                        due = int(fr.time * fps / stride) + 1
                        copies = max(1, min(due - written, int(2 * fps / stride) + 1))
                    for _ in range(copies):
                        writer.write(drawn)
                    written += copies
            if progress is not None:
                progress(fr.index, expected)
    except KeyboardInterrupt:
        res.interrupted = True
    except DataError as e:
        res.error = str(e)
    except cv2.error as e:
        res.error = f"{name}: decoding failed after frame {last_idx}: {e}"
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
        if isinstance(src, LiveSource):
            src.close()
        if writer is not None:
            writer.release()
        if tl is not None:
            tl.close()
    if isinstance(src, LiveSource):
        res.live = src.stats.to_dict()
        if res.error is None and src.stats.error:
            res.error = src.stats.error
    if res.error is None and res.frames == 0 and not res.interrupted:
        res.error = f"{name}: no frame could be decoded (corrupt or empty video)"
    elif res.error is None and not (res.interrupted or cut) and expected > 0 and last_idx + stride < expected - 1:
        res.error = (f"{name}: video stopped at frame {last_idx + 1} of {expected} (corrupt or truncated); "
                     "the decoded part was written")
    res.summary = summ.result()
    if out_dir is not None and res.frames:
        res.outputs["timeline"] = str(tl.path)
        res.outputs["plot"] = str(summ.plot_curves(out_dir / f"{stem}.emotions.png", title=Path(stem).name))
        if summary:
            extra = {"source": name, **({"live": res.live} if res.live else {})}
            res.outputs["summary"] = str(summ.write_json(out_dir / f"{stem}.summary.json", extra))
            res.outputs["summary_plot"] = str(summ.plot_summary(out_dir / f"{stem}.summary.png", title=stem))
    elif tl is not None and not res.frames:
        tl.path.unlink(missing_ok=True)
    return res


def write_timeline(rows: list[dict], path: Path, labels: list[str]) -> Path:
    """Rows (dicts as :func:`face_row` makes them) -> CSV, or Parquet when the suffix is .parquet."""
    extra = sorted({k[len("p_gender_"):] for r in rows for k in r if k.startswith("p_gender_")})
    with TimelineWriter(path, labels, extra or None) as w:
        w.write(rows)
    return path
