"""Live sources: the newest-frame reader, drops, timeouts, reconnects, and real loopback streams served by ffmpeg.

The loopback tests serve a 3-second MPEG-TS clip with ``ffmpeg -re`` over HTTP (``-listen 1``) and UDP, and read
it live through the library and the CLI; they are skipped when ffmpeg is missing (CI installs it). A stub
recognizer (one face per frame, no model) keeps them about the stream, not the network. Every wait is bounded.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emotionlab.data.errors import DataError
from emotionlab.inference.recognizer import Face, FaceEmotionRecognizer
from emotionlab.inference.sources import (LiveOptions, LiveSource, is_live, is_network_source, redact,
                                          source_name)

FER7 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
pytestmark = pytest.mark.timeout(120)


class StubRecognizer:
    """One face in the middle of every frame, happy when bright; ``delay`` seconds per frame (a slow model)."""

    labels = FER7
    gender = None
    stream = FaceEmotionRecognizer.stream

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def predict_images(self, images):
        out = []
        for img in images:
            if self.delay:
                time.sleep(self.delay)
            h, w = img.shape[:2]
            scores = dict.fromkeys(FER7, 0.05)
            scores["happy" if img.mean() > 100 else "sad"] = 0.7
            out.append([Face((w // 4, h // 4, w // 2, h // 2), max(scores, key=scores.get), scores)])
        return out


# ------------------------------------------------------------------------- a fake capture (no ffmpeg needed)
class FakeCap:
    """``n`` frames (``shape``), each after ``every`` seconds; then read() fails, or blocks if ``hang``."""

    def __init__(self, n: int | None, every: float = 0.0, shape=(48, 64, 3), hang: bool = False):
        self.n, self.every, self.shape, self.hang, self.i = n, every, shape, hang, 0
        self.released = False

    def isOpened(self):
        return True

    def get(self, prop):
        return 0.0

    def read(self):
        if self.n is not None and self.i >= self.n:
            if self.hang:
                time.sleep(3600)
            return False, None
        if self.every:
            time.sleep(self.every)
        self.i += 1
        return True, np.full(self.shape, self.i % 256, np.uint8)

    def release(self):
        self.released = True


def opener_from(caps: list):
    """An opener that hands out ``caps`` in order (None: that open fails), then fails."""
    it = iter(caps)

    def open_(source, options):
        return next(it, None)

    return open_


FAST = dict(open_timeout_s=1.0, read_timeout_s=0.5, backoff_s=0.01, backoff_max_s=0.02)


def test_newest_frame_wins_and_every_frame_is_processed_or_counted_as_dropped():
    src = LiveSource("rtsp://cam.local/live", LiveOptions(reconnect_tries=0, **FAST),
                     opener=opener_from([FakeCap(120, every=0.001)]))
    seen = []
    for idx, t, frame in src:
        seen.append(idx)
        time.sleep(0.01)  # inference slower than the source
    st = src.stats
    assert st.frames_read == 120 and st.ended == "source_ended" and st.error is None
    assert st.frames_dropped > 0 and st.frames_processed == len(seen)
    assert st.frames_processed + st.frames_dropped == st.frames_read  # nothing lost without being counted
    assert seen == sorted(seen) and seen[-1] == 119  # in order, and the last frame is the newest one


def test_stride_skips_on_purpose_without_counting_drops():
    src = LiveSource("udp://127.0.0.1:1", LiveOptions(reconnect_tries=0, **FAST), stride=3,
                     opener=opener_from([FakeCap(30, every=0.002)]))
    seen = [idx for idx, _, _ in src]
    assert all(i % 3 == 0 for i in seen) and src.stats.frames_processed + src.stats.frames_dropped == 10


def test_reconnects_with_backoff_then_gives_up_with_a_clear_message():
    events = []
    caps = [FakeCap(5), None, FakeCap(5)]  # loses the stream, one failed reopen, back, then gone for good
    src = LiveSource("http://user:secret@cam.local:8080/video.mjpg", LiveOptions(reconnect_tries=3, **FAST),
                     on_event=events.append, opener=opener_from(caps))
    frames = [idx for idx, _, _ in src]
    st = src.stats
    assert st.frames_read == 10 and len(frames) >= 2
    assert st.reconnects == 2 + 3  # one failed reopen, one good, then three failed before giving up
    assert st.ended == "gave_up" and "did not come back after 3 reconnect attempt(s)" in st.error
    assert any("reconnecting in" in e for e in events) and any("reconnected" in e for e in events)
    assert all("secret" not in e for e in events) and "secret" not in st.error  # the password is not printed


def test_a_read_that_never_returns_is_ended_by_the_watchdog():
    opts = LiveOptions(open_timeout_s=0.2, read_timeout_s=0.2, backoff_s=0.01, backoff_max_s=0.05,
                       reconnect_tries=1)
    src = LiveSource("rtsp://cam/x", opts, opener=opener_from([FakeCap(3, hang=True)]))
    t = time.monotonic()
    n = sum(1 for _ in src)
    assert n >= 1 and src.stats.ended == "stalled" and "no frame and no answer" in src.stats.error
    assert time.monotonic() - t < 30  # bounded (the watchdog is ~2.5 s here)


def test_fps_counts_active_time_not_the_final_wait_for_a_dead_source():
    opts = LiveOptions(open_timeout_s=0.2, read_timeout_s=0.2, backoff_s=0.01, backoff_max_s=0.05,
                       reconnect_tries=1)
    src = LiveSource("rtsp://cam/x", opts, opener=opener_from([FakeCap(4, every=0.01, hang=True)]))
    n = sum(1 for _ in src)
    st = src.stats
    assert n >= 1 and st.ended == "stalled"
    assert 0 < st.active_s < 1.0 < st.elapsed_s  # the ~2.5 s watchdog wait is in elapsed, not in active
    assert st.fps_processed == pytest.approx(st.frames_processed / st.active_s)
    assert st.to_dict()["active_s"] == round(st.active_s, 3)


def test_duration_and_stop_end_an_endless_source():
    src = LiveSource("udp://127.0.0.1:9", LiveOptions(duration_s=0.3, **FAST),
                     opener=opener_from([FakeCap(None, every=0.005)]))
    n = sum(1 for _ in src)
    assert n > 0 and src.stats.ended == "duration" and src.stats.error is None
    src2 = LiveSource("udp://127.0.0.1:9", LiveOptions(**FAST), opener=opener_from([FakeCap(None, every=0.005)]))
    threading.Timer(0.3, src2.stop).start()
    assert sum(1 for _ in src2) > 0 and src2.stats.ended == "stopped"


def test_open_failure_and_absurd_frames_are_refused():
    with pytest.raises(DataError, match=r"rtsp://u:\*\*\*@h/x: cannot open the stream"):
        LiveSource("rtsp://u:pw@h/x", LiveOptions(**FAST), opener=opener_from([None]))
    src = LiveSource("udp://h:1", LiveOptions(**FAST), opener=opener_from([FakeCap(5, shape=(1, 4000, 3))]))
    assert sum(1 for _ in src) == 0
    assert src.stats.ended == "refused" and "aspect ratio" in src.stats.error


def test_options_and_names():
    for bad in (dict(read_timeout_s=0), dict(open_timeout_s=math.nan), dict(duration_s=-1),
                dict(reconnect_tries=-1), dict(backoff_s=math.inf)):
        with pytest.raises(ValueError):
            LiveOptions(**bad)
    assert LiveOptions(backoff_s=0.5, backoff_max_s=3).backoff(1) == 0.5
    assert LiveOptions(backoff_s=0.5, backoff_max_s=3).backoff(5) == 3
    assert is_network_source("RTSP://x") and is_network_source("https://x/a.m3u8")
    assert not is_network_source("clip.mp4") and not is_network_source("file:///a.mp4")
    assert is_live(0) and is_live("2") and not is_live(True)
    assert redact("rtsp://admin:hunter2@10.0.0.5:554/s") == "rtsp://admin:***@10.0.0.5:554/s"
    assert source_name("http://127.0.0.1:8080/live/index.m3u8") == "http_127.0.0.1_8080_index"
    assert source_name(1) == "camera1"


# ----------------------------------------------------------------------------------------- real loopback
def _free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether a TCP socket listens on the port (read from /proc: connecting would use up -listen 1)."""
    try:
        text = Path("/proc/net/tcp").read_text()
    except OSError:
        return True  # no /proc: the opener's timeout covers it
    return any(ln.split()[1].endswith(f":{port:04X}") and ln.split()[3] == "0A" for ln in text.splitlines()[1:])


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path_factory.mktemp("clip") / "clip.ts"
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=25:duration=3", "-c:v", "mpeg2video", "-q:v", "5", "-g", "5",
                    "-f", "mpegts", str(path)], check=True, timeout=60)
    return path


def _serve(clip: Path, url: str, loop: bool = False, listen: bool = False) -> subprocess.Popen:
    args = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re"] + (["-stream_loop", "-1"] if loop else [])
    args += ["-i", str(clip), "-c", "copy"] + (["-listen", "1"] if listen else []) + ["-f", "mpegts", url]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if listen:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        deadline = time.monotonic() + 10
        while not _listening(port) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
    return p


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait(timeout=10)


@needs_ffmpeg
def test_http_mpegts_stream_is_read_live_with_outputs_and_summary(clip, tmp_path):
    from emotionlab.inference.video import process_video

    port = _free_port()
    srv = _serve(clip, f"http://127.0.0.1:{port}", listen=True)
    try:
        res = process_video(StubRecognizer(), f"http://127.0.0.1:{port}", tmp_path,
                            live=LiveOptions(open_timeout_s=5, read_timeout_s=2, reconnect_tries=0), summary=True)
    finally:
        _stop(srv)
    assert res.error is None and res.live["ended"] == "source_ended", res
    assert res.live["frames_read"] >= 60 and res.frames == res.live["frames_processed"] > 0  # 75 sent
    assert res.live["frames_processed"] + res.live["frames_dropped"] == res.live["frames_read"]
    rows = Path(res.outputs["timeline"]).read_text().splitlines()
    assert len(rows) == 1 + res.frames and rows[0].startswith("frame,time,face_id")
    summ = json.loads(Path(res.outputs["summary"]).read_text())
    assert summ["source"] == f"http://127.0.0.1:{port}" and len(summ["people"]) == 1
    assert summ["live"]["frames_read"] == res.live["frames_read"]
    assert Path(res.outputs["video"]).stat().st_size > 0 and Path(res.outputs["summary_plot"]).exists()


@needs_ffmpeg
def test_annotated_video_of_a_lagging_stream_keeps_real_time(clip, tmp_path):
    """Inference slower than the 25 fps source drops frames; the annotated MP4 repeats frames over those gaps so
    it lasts as long as the stream did, not the number of processed frames / 25."""
    import cv2

    from emotionlab.inference.video import process_video

    port = _free_port()
    srv = _serve(clip, f"http://127.0.0.1:{port}", listen=True)
    try:
        res = process_video(StubRecognizer(delay=0.08), f"http://127.0.0.1:{port}", tmp_path,
                            live=LiveOptions(open_timeout_s=5, read_timeout_s=2, reconnect_tries=0))
    finally:
        _stop(srv)
    assert res.live["frames_dropped"] > 10, res.live
    cap = cv2.VideoCapture(res.outputs["video"])
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert fps == pytest.approx(25, abs=0.5) and n > res.frames * 1.5  # filled, not one frame per processed
    assert 2.0 < n / fps < 4.0  # the 3 s clip lasts about 3 s


RTSP_SERVER = shutil.which("rtsp-server-perl")  # Debian's rtsp-server-perl: a relay (sources push, clients read)


@pytest.mark.skipif(FFMPEG is None or RTSP_SERVER is None, reason="needs ffmpeg and rtsp-server-perl (apt)")
def test_rtsp_stream_through_a_real_rtsp_server(clip, tmp_path):
    """ffmpeg pushes the clip to Debian's RTSP server, which serves RTP over UDP only: read with
    ``rtsp_transport="udp"``; the default TCP transport gets a clear refusal, not a hang."""
    from emotionlab.inference.video import process_video

    cport, sport = _free_port(), _free_port()
    rtp = 20000 + (cport % 20000)
    srv = subprocess.Popen([RTSP_SERVER, "--clientport", str(cport), "--serverport", str(sport),
                            "--rtp_start_port", str(rtp), "--client_listen_address", "127.0.0.1",
                            "--source_listen_address", "127.0.0.1", "--loglevel", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    push = None
    try:
        deadline = time.monotonic() + 15
        while not (_listening(cport) and _listening(sport)) and time.monotonic() < deadline:
            time.sleep(0.1)
        push = subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
                                 str(clip), "-c", "copy", "-f", "rtsp", f"rtsp://127.0.0.1:{sport}/live"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # the push announces the stream
        url = f"rtsp://127.0.0.1:{cport}/live"
        with pytest.raises(DataError, match="cannot open the stream"):
            LiveSource(url, LiveOptions(open_timeout_s=3, read_timeout_s=2, reconnect_tries=0))
        res = process_video(StubRecognizer(), url, tmp_path,
                            live=LiveOptions(open_timeout_s=5, read_timeout_s=2, reconnect_tries=1, duration_s=2.5,
                                             rtsp_transport="udp"))
    finally:
        for p in (push, srv):
            if p is not None:
                _stop(p)
    assert res.error is None and res.live["ended"] == "duration", res
    assert res.live["frames_read"] >= 20 and res.frames == res.live["frames_processed"] > 0
    assert res.live["frames_processed"] + res.live["frames_dropped"] == res.live["frames_read"]
    assert len(Path(res.outputs["timeline"]).read_text().splitlines()) == 1 + res.frames
    with pytest.raises(ValueError, match="rtsp_transport"):
        LiveOptions(rtsp_transport="sctp")


@needs_ffmpeg
def test_udp_stream_with_a_slow_model_drops_the_backlog(clip):
    port = _free_port(socket.SOCK_DGRAM)
    srv = _serve(clip, f"udp://127.0.0.1:{port}?pkt_size=1316")
    try:
        src = LiveSource(f"udp://127.0.0.1:{port}", LiveOptions(open_timeout_s=5, read_timeout_s=1,
                                                                reconnect_tries=0))
        got = [(fr.index, fr.dropped, len(fr.faces)) for fr in StubRecognizer(delay=0.1).stream(src)]
    finally:
        _stop(srv)
    st = src.stats
    assert st.frames_read >= 30 and st.ended == "source_ended"  # UDP joins mid-stream: the start may be missed
    assert st.frames_dropped > 0 and got[-1][1] == st.frames_dropped  # 10 frames/s of inference vs 25 sent
    assert all(n == 1 for _, _, n in got) and [i for i, _, _ in got] == sorted(i for i, _, _ in got)


@needs_ffmpeg
def test_udp_stall_and_resume_reconnects(clip):
    port = _free_port(socket.SOCK_DGRAM)
    url = f"udp://127.0.0.1:{port}"
    first = _serve(clip, url + "?pkt_size=1316")
    events = []
    src = LiveSource(url, LiveOptions(open_timeout_s=4, read_timeout_s=0.8, reconnect_tries=2, backoff_s=0.2),
                     on_event=events.append)
    second = None

    def resume():  # the sender goes away after its 3 s clip; a new one starts 1.5 s later
        nonlocal second
        first.wait(timeout=20)
        time.sleep(1.5)
        second = _serve(clip, url + "?pkt_size=1316")

    th = threading.Thread(target=resume)
    th.start()
    try:
        n = sum(1 for _ in StubRecognizer().stream(src))
    finally:
        th.join(timeout=30)
        for p in (first, second):
            if p is not None:
                _stop(p)
    st = src.stats
    assert any("reconnected" in e for e in events), events
    assert st.frames_read > 75 and n > 0  # more than one 3 s clip (75 frames): the second one came through
    assert st.ended == "gave_up" and "did not come back after 2" in st.error


def _cli(args: list[str], **kw) -> subprocess.Popen:
    code = "from emotionlab.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "300"}, **kw)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from test_inference import make_run_dir

    return make_run_dir(tmp_path_factory.mktemp("streams") / "random_t")


@needs_ffmpeg
def test_cli_source_killed_mid_stream_ends_cleanly_with_outputs(clip, model_dir, tmp_path):
    port = _free_port()
    srv = _serve(clip, f"http://127.0.0.1:{port}", loop=True, listen=True)
    out = tmp_path / "out"
    p = _cli(["predict", f"http://127.0.0.1:{port}", "--out", str(out), "--summary", "--json", "--model",
              str(model_dir), "--reconnect", "1", "--read-timeout", "1"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.glob("*.annotated.mp4")):  # frames are flowing
            time.sleep(0.1)
        time.sleep(1.0)
        _stop(srv)  # the source dies mid-stream; nobody brings it back
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
        _stop(srv)
    assert p.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert "did not come back after 1 reconnect attempt(s)" in " ".join(stderr.split())
    row = json.loads([ln for ln in stdout.splitlines() if ln.startswith("{")][0])
    assert row["type"] == "stream" and row["frames"] > 0 and row["live"]["ended"] == "gave_up"
    timeline = Path(row["outputs"]["timeline"]).read_text().splitlines()
    assert timeline[0].startswith("frame,time,face_id")
    assert json.loads(Path(row["outputs"]["summary"]).read_text())["frames"] == row["frames"]


@needs_ffmpeg
def test_cli_ctrl_c_ends_a_live_stream_cleanly_with_outputs(clip, model_dir, tmp_path):
    port = _free_port(socket.SOCK_DGRAM)
    srv = _serve(clip, f"udp://127.0.0.1:{port}?pkt_size=1316", loop=True)
    out = tmp_path / "out"
    p = _cli(["predict", f"udp://127.0.0.1:{port}", "--out", str(out), "--json", "--model", str(model_dir)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(out.glob("*.annotated.mp4")):
            time.sleep(0.1)
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        _stop(srv)
    assert p.returncode == 0, stderr
    assert "Traceback" not in stderr
    row = json.loads([ln for ln in stdout.splitlines() if ln.startswith("{")][0])
    assert row["interrupted"] is True and row["frames"] > 0 and "error" not in row
    assert len(Path(row["outputs"]["timeline"]).read_text().splitlines()) >= 1


def test_cli_refuses_a_dead_address_in_bounded_time(model_dir, tmp_path):
    port = _free_port()  # nothing listens there: connection refused
    p = _cli(["predict", f"http://127.0.0.1:{port}/live.ts", "--model", str(model_dir), "--json"])
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 1 and "Traceback" not in stderr
    assert f"http://127.0.0.1:{port}/live.ts: cannot open the stream" in " ".join(stderr.split())
