"""Live sources: network streams (``rtsp://``, ``http(s)://`` MJPEG / MPEG-TS / HLS, ``udp://``...) and cameras.

A live source does not wait for us. A reader thread decodes frames as they come and keeps only the newest
one; when inference is slower than the source, the older frames are dropped (and counted) instead of piling
up, so the answer is about *now* and memory stays at one frame. Every wait is bounded: opening and reading
go through OpenCV's FFmpeg backend with its open and read timeouts (a dead stream makes ``read()`` return
instead of hanging), and the consumer has its own watchdog on top. A stream that stalls or closes is
reopened with exponential backoff, a bounded number of times, then the iteration ends with a message that
says why (:attr:`LiveStats.error`). Frames go through the decode guard's shape rule
(:func:`emotionlab.data.decode.check_shape`) like every image.

Why OpenCV's FFmpeg backend and not PyAV: it is already a dependency (PyAV would be a new one) and it has
the same FFmpeg demuxers; on loopback it opened an MPEG-TS stream over HTTP in 0.8 s and over UDP in 0.9 s
(FFmpeg's probing, the same in both) and its read timeout fired on time (docs/results_video.md).
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..data.decode import DecodeLimits, check_shape
from ..data.errors import DataError

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "tcp", "srt")


def is_network_source(source: object) -> bool:
    """``scheme://...`` with a scheme FFmpeg reads as a live network stream."""
    if not isinstance(source, str) or "://" not in source:
        return False
    return source.split("://", 1)[0].lower() in NETWORK_SCHEMES


def is_camera(source: object) -> bool:
    """A camera index: an int, or a string of digits."""
    return (isinstance(source, int) and not isinstance(source, bool)) or (isinstance(source, str)
                                                                           and source.isdigit())


def is_live(source: object) -> bool:
    return is_network_source(source) or is_camera(source)


def redact(source: object) -> str:
    """The source as it may be printed: a password in ``rtsp://user:pass@host`` becomes ``***``."""
    s = str(source)
    if not is_network_source(s):
        return f"camera {s}" if is_camera(source) else s
    try:
        u = urlsplit(s)
    except ValueError:
        return s.split("://", 1)[0] + "://<unparsable address>"
    if u.password is not None:
        host = u.hostname or ""
        netloc = f"{u.username}:***@{host}" + (f":{u.port}" if u.port else "")
        return urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
    return s


def source_name(source: object) -> str:
    """A file-name-safe stem for a live source's outputs: ``udp_127.0.0.1_5000``, ``camera0``."""
    if is_camera(source):
        return f"camera{int(source)}"
    u = urlsplit(str(source))
    base = f"{u.scheme}_{u.hostname or ''}" + (f"_{u.port}" if u.port else "")
    path = u.path.strip("/").rsplit("/", 1)[-1]
    if path:
        base += "_" + path.rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:80] or "stream"


def _positive(name: str, v: float | None, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


RTSP_TRANSPORTS = ("tcp", "udp")
_OPEN_LOCK = threading.Lock()  # OpenCV reads its FFmpeg options from the environment at open time


@dataclass(frozen=True)
class LiveOptions:
    """How long a live source may keep us waiting, and how hard we try to get it back."""

    open_timeout_s: float = 10.0  # connecting + FFmpeg's probing of the first packets
    read_timeout_s: float = 5.0  # no packet for this long: the stream is lost (reconnect)
    reconnect_tries: int = 5  # reopen attempts after a loss, then give up; 0: end at the first loss
    backoff_s: float = 0.5  # wait before the first reopen; doubles each try ...
    backoff_max_s: float = 8.0  # ... up to this
    duration_s: float | None = None  # stop after this many seconds (None: until the source ends)
    rtsp_transport: str = "tcp"  # rtsp:// only: tcp (interleaved, through NATs) or udp (what some servers want)

    def __post_init__(self) -> None:
        if self.rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(f"rtsp_transport must be one of {', '.join(RTSP_TRANSPORTS)}, got "
                             f"{self.rtsp_transport!r}")
        _positive("open_timeout_s", self.open_timeout_s)
        _positive("read_timeout_s", self.read_timeout_s)
        _positive("backoff_s", self.backoff_s)
        _positive("backoff_max_s", self.backoff_max_s)
        _positive("duration_s", self.duration_s, allow_none=True)
        if isinstance(self.reconnect_tries, bool) or not isinstance(self.reconnect_tries, int) \
                or not 0 <= self.reconnect_tries <= 1000:
            raise ValueError(f"reconnect_tries must be an integer in [0, 1000], got {self.reconnect_tries!r}")

    def backoff(self, attempt: int) -> float:
        """Wait before reopen number ``attempt`` (1-based)."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1))

    def watchdog_s(self) -> float:
        """Longest the consumer waits with no sign of life from the reader (a read the timeout missed)."""
        return self.read_timeout_s + self.open_timeout_s + self.backoff_max_s + 2.0


@dataclass
class LiveStats:
    """What happened to a live source; final once the iteration ends."""

    frames_read: int = 0  # decoded from the source
    frames_processed: int = 0  # handed to the consumer (inference)
    frames_dropped: int = 0  # decoded, then replaced by a newer frame (or the end) before the consumer took it
    reconnects: int = 0
    fps_source: float = 0.0  # what the stream says about itself (0: it does not say)
    width: int = 0
    height: int = 0
    elapsed_s: float = 0.0
    active_s: float = 0.0  # start to the end of the last frame's processing: no wait for a source that went quiet
    ended: str = ""  # duration | stopped | source_ended | gave_up | refused | stalled
    error: str | None = None  # one sentence when the stream ended on its own terms, not ours

    @property
    def fps_processed(self) -> float:
        """Frames processed per second of active time (the final wait for a stalled source is not counted)."""
        t = self.active_s if self.active_s > 0 else self.elapsed_s
        return self.frames_processed / t if t > 0 else 0.0

    def to_dict(self) -> dict:
        return {"frames_read": self.frames_read, "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped, "reconnects": self.reconnects,
                "fps_source": round(self.fps_source, 3), "fps_processed": round(self.fps_processed, 3),
                "elapsed_s": round(self.elapsed_s, 3), "active_s": round(self.active_s, 3), "ended": self.ended,
                "error": self.error}


@contextlib.contextmanager
def _ffmpeg_options(value: str | None):
    """Set ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` around one open (None: leave it alone). OpenCV asks FFmpeg for RTSP
    over TCP unless that variable says otherwise and reads it when it opens; it is process-wide, so serialized."""
    if value is None:
        yield
        return
    key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    with _OPEN_LOCK:
        before = os.environ.get(key)
        os.environ[key] = value
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


def open_live_capture(source, options: LiveOptions):
    """An opened ``cv2.VideoCapture`` for a network URL (FFmpeg, with timeouts) or a camera, or None."""
    import cv2

    if is_camera(source):
        cap = cv2.VideoCapture(int(source))
    else:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.read_timeout_s * 1000)]
        udp = str(source).lower().startswith("rtsp") and options.rtsp_transport != "tcp"
        with _ffmpeg_options(f"rtsp_transport;{options.rtsp_transport}" if udp else None):
            cap = cv2.VideoCapture(str(source), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        return None
    return cap


class LiveSource:
    """Iterate ``(frame index, seconds since the first frame, BGR frame)`` of a live source, newest first.

    ``stride``: hand over every N-th decoded frame (the others are skipped on purpose, not counted as
    dropped). ``on_event``: called with one line on each loss / reconnect (the CLI prints them). ``opener``:
    ``(source, options) -> capture or None`` (tests inject a fake). Use as a context manager, or call
    :meth:`close`; :meth:`stop` may be called from any thread (a signal handler, a UI)."""

    def __init__(self, source, options: LiveOptions | None = None, limits: DecodeLimits | None = None,
                 stride: int = 1, on_event: Callable[[str], None] | None = None,
                 opener: Callable | None = None):
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        self.source, self.name = source, redact(source)
        self.options = options or LiveOptions()
        self.limits = limits or DecodeLimits.local()
        self.stride, self.on_event = stride, on_event
        self._opener = opener or open_live_capture
        self.stats = LiveStats()
        self._cond = threading.Condition()
        self._slot: tuple[int, float, np.ndarray] | None = None
        self._stop = threading.Event()
        self._done = False
        self._activity = time.monotonic()
        self._t0: float | None = None
        self._thread: threading.Thread | None = None
        self._cap = self._opener(source, self.options)  # the first open is synchronous: a typo fails fast
        if self._cap is None:
            what = "camera (no device, or in use)" if is_camera(source) else \
                f"stream (no answer within {self.options.open_timeout_s:g} s, or not a video stream)"
            raise DataError(self.name, f"cannot open the {what}")
        self._describe(self._cap)

    def _describe(self, cap) -> None:
        import cv2

        self.stats.fps_source = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(self.stats.fps_source) or not 0 < self.stats.fps_source < 1000:
            self.stats.fps_source = 0.0
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if w > 0 and h > 0:
            check_shape(w, h, self.name, self.limits)
            self.stats.width, self.stats.height = w, h

    # -- reader thread ------------------------------------------------------------------------------------
    def _event(self, msg: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(msg)
            except Exception:  # a broken printer must not kill the reader
                pass

    def _end(self, ended: str, error: str | None = None) -> None:
        with self._cond:
            if not self.stats.ended:
                self.stats.ended, self.stats.error = ended, error
            self._done = True
            self._cond.notify_all()

    def _read_until_lost(self, cap) -> bool:
        """Publish frames until the capture fails; True if at least one frame came."""
        got = False
        while not self._stop.is_set():
            ok, frame = cap.read()
            if not ok or frame is None:
                return got
            got = True
            n = self.stats.frames_read
            self.stats.frames_read += 1
            now = time.monotonic()
            self._activity = now
            if n % self.stride:
                continue
            try:
                check_shape(int(frame.shape[1]), int(frame.shape[0]), self.name, self.limits)
            except DataError as e:  # a stream that changed to an absurd size mid-way
                self._end("refused", str(e))
                return got
            if self._t0 is None:
                self._t0 = now
            with self._cond:
                if self._slot is not None:
                    self.stats.frames_dropped += 1
                self._slot = (n, now - self._t0, frame)
                self._cond.notify_all()
        return got

    def _run(self) -> None:
        cap, attempt = self._cap, 0
        try:
            while not self._stop.is_set():
                if cap is not None:
                    if self._read_until_lost(cap):
                        attempt = 0
                    cap.release()
                    cap = self._cap = None
                if self._stop.is_set() or self._done:
                    break
                attempt += 1
                if attempt > self.options.reconnect_tries:
                    tries = self.options.reconnect_tries
                    if tries == 0:
                        self._end("source_ended", None)
                    else:
                        self._end("gave_up", f"{self.name}: the stream stopped and did not come back after "
                                             f"{tries} reconnect attempt(s); ending with what was received")
                    break
                wait = self.options.backoff(attempt)
                self._event(f"{self.name}: stream lost; reconnecting in {wait:.1f} s "
                            f"(try {attempt} of {self.options.reconnect_tries})")
                self._activity = time.monotonic() + wait
                if self._stop.wait(wait):
                    break
                self.stats.reconnects += 1
                self._activity = time.monotonic() + self.options.open_timeout_s
                cap = self._cap = self._opener(self.source, self.options)
                if cap is not None:
                    self._event(f"{self.name}: reconnected")
        except Exception as e:  # the reader must always end the iteration, never leave it waiting
            self._end("refused", f"{self.name}: reading failed: {e}")
        finally:
            if cap is not None:
                cap.release()
            self._end("stopped" if self._stop.is_set() else "source_ended")

    # -- consumer -----------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        if self._thread is not None:
            raise RuntimeError("a LiveSource can be iterated once")
        start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"live:{self.name}", daemon=True)
        self._thread.start()
        deadline = start + self.options.duration_s if self.options.duration_s else math.inf
        watchdog = self.options.watchdog_s()
        last_done = None  # when the consumer finished with the last frame (it asks for the next one)
        try:
            while True:
                with self._cond:
                    while self._slot is None and not self._done:
                        now = time.monotonic()
                        if now >= deadline:
                            break
                        if now - self._activity > watchdog:
                            self.stats.ended = "stalled"
                            self.stats.error = (f"{self.name}: no frame and no answer for {watchdog:g} s; "
                                                "ending with what was received")
                            self._done = True
                            break
                        self._cond.wait(min(0.25, deadline - now))
                    if time.monotonic() >= deadline:
                        if not self.stats.ended:
                            self.stats.ended = "duration"
                        break
                    item, self._slot = self._slot, None
                if item is None:  # done, nothing left
                    break
                self.stats.frames_processed += 1
                last_done = None
                yield item
                last_done = time.monotonic()
                if time.monotonic() >= deadline:
                    self.stats.ended = self.stats.ended or "duration"
                    break
        finally:
            now = time.monotonic()
            self.stats.elapsed_s = now - start
            if self.stats.frames_processed:  # closed mid-frame (the consumer stopped): that frame counts to now
                self.stats.active_s = (last_done or now) - start
            self.close()

    def stop(self) -> None:
        """End the iteration at the next frame (thread-safe)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the reader and release the source; waits at most the read timeout for the reader."""
        if not self.stats.ended:
            self.stats.ended = "stopped"
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(self.options.read_timeout_s + 1.0)
        elif t is None and self._cap is not None:  # opened, never iterated
            self._cap.release()
            self._cap = None
        with self._cond:  # a frame decoded but never handed over (the run ended first) counts as dropped
            if self._slot is not None:
                self.stats.frames_dropped += 1
                self._slot = None

    def __enter__(self) -> "LiveSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
