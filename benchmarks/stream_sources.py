"""OpenCV's FFmpeg backend vs PyAV for live sources: time to open and decode rate, on loopback streams.

Serves a 640x480 MPEG-TS clip with ffmpeg over HTTP (``-listen 1``) and UDP, then opens it with each reader
and decodes as fast as frames come (no inference): open latency (connect + FFmpeg's probing), time to the
first frame, frames per second over the clip (real time: ``-re``, so about the clip's 25 fps when the reader
keeps up). PyAV is measured only when importable (``--av-path`` adds a folder to ``sys.path``: it is not a
dependency). Then the full live pipeline (``LiveSource`` + a recognizer) reports processed and dropped frames,
over HTTP, UDP and, where Debian's ``rtsp-server-perl`` is installed, RTSP (RTP over UDP through that relay).

    python benchmarks/stream_sources.py [--av-path DIR] [--model default] [--seconds 8]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORT = 18700


def make_clip(path: Path, seconds: float) -> None:
    face = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=640x480:rate=25:duration={seconds}", "-i", str(face), "-filter_complex",
                    "[1]crop=220:220:120:20,scale=160:160[f];[0][f]overlay=x='200+100*sin(t)':y=150",
                    "-c:v", "mpeg2video", "-q:v", "4", "-f", "mpegts", str(path)], check=True)


class _Procs(list):
    """The processes serving one stream (ffmpeg; for RTSP also the relay), killed together."""

    def kill(self) -> None:
        for p in self:
            p.kill()

    def wait(self) -> None:
        for p in self:
            p.wait()


def serve(clip: Path, kind: str, port: int) -> tuple[_Procs, str]:
    """Serve ``clip`` live: http (ffmpeg -listen), udp (ffmpeg pushes MPEG-TS), or rtsp (ffmpeg pushes to Debian's
    rtsp-server-perl relay, which serves RTP over UDP: read with ``rtsp_transport="udp"``)."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy"]
    if kind == "rtsp":
        relay = subprocess.Popen(["rtsp-server-perl", "--clientport", str(port), "--serverport", str(port + 500),
                                  "--rtp_start_port", str(port + 1000), "--loglevel", "1"], **quiet)
        time.sleep(1.5)
        push = subprocess.Popen(base + ["-f", "rtsp", f"rtsp://127.0.0.1:{port + 500}/live"], **quiet)
        time.sleep(1.0)
        return _Procs([push, relay]), f"rtsp://127.0.0.1:{port}/live"
    url = f"http://127.0.0.1:{port}" if kind == "http" else f"udp://127.0.0.1:{port}"
    out = [url] if kind == "http" else [url + "?pkt_size=1316"]
    args = base + (["-listen", "1"] if kind == "http" else []) + ["-f", "mpegts"] + out
    p = subprocess.Popen(args, **quiet)
    time.sleep(0.4)
    return _Procs([p]), url


def read_opencv(url: str) -> dict:
    import cv2

    t0 = time.perf_counter()
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000,
                                                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, 3000])
    t_open = time.perf_counter() - t0
    n, t_first = 0, None
    while cap.isOpened():
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
        t_first = t_first or time.perf_counter() - t0
    t = time.perf_counter() - t0
    cap.release()
    return {"open_s": round(t_open, 3), "first_frame_s": round(t_first or 0, 3), "frames": n,
            "fps": round(n / max(1e-9, t - (t_first or 0)), 1)}


def read_av(url: str) -> dict:
    import av

    t0 = time.perf_counter()
    c = av.open(url, timeout=(10.0, 3.0))
    t_open = time.perf_counter() - t0
    n, t_first = 0, None
    try:
        for fr in c.decode(video=0):
            fr.to_ndarray(format="bgr24")
            n += 1
            t_first = t_first or time.perf_counter() - t0
    except av.error.FFmpegError:
        pass
    t = time.perf_counter() - t0
    c.close()
    return {"open_s": round(t_open, 3), "first_frame_s": round(t_first or 0, 3), "frames": n,
            "fps": round(n / max(1e-9, t - (t_first or 0)), 1)}


def live_pipeline(clip: Path, kind: str, port: int, model: str) -> dict:
    from emotionlab.inference import FaceEmotionRecognizer
    from emotionlab.inference.sources import LiveOptions, LiveSource

    rec = FaceEmotionRecognizer(model, threads=1)
    p, url = serve(clip, kind, port)
    try:
        src = LiveSource(url, LiveOptions(read_timeout_s=2.0, reconnect_tries=0,
                                          rtsp_transport="udp" if kind == "rtsp" else "tcp"))
        faces = 0
        for fr in rec.stream(src):
            faces += len(fr.faces)
        st = src.stats.to_dict()
        st["faces"] = faces
        return st
    finally:
        p.kill()
        p.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--av-path", default=None, help="folder holding a PyAV install (not a dependency)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to serve the clip")
    if a.av_path:
        sys.path.insert(0, a.av_path)
    readers = {"opencv": read_opencv}
    try:
        import av  # noqa: F401

        readers["pyav"] = read_av
    except ImportError:
        print("PyAV not importable: measuring OpenCV only", file=sys.stderr)
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.ts"
        make_clip(clip, a.seconds)
        rep: dict = {"machine": platform.processor() or platform.machine(), "clip": f"640x480 25 fps "
                     f"{a.seconds:g} s MPEG-2 in MPEG-TS, served by ffmpeg -re", "readers": {}, "pipeline": {}}
        port = PORT
        for name, fn in readers.items():
            for kind in ("http", "udp"):
                port += 1
                p, url = serve(clip, kind, port)
                try:
                    rep["readers"][f"{name}/{kind}"] = fn(url)
                finally:
                    p.kill()
                    p.wait()
                print(name, kind, rep["readers"][f"{name}/{kind}"], file=sys.stderr)
        kinds = ("http", "udp") + (("rtsp",) if shutil.which("rtsp-server-perl") else ())
        for kind in kinds:
            port += 1
            rep["pipeline"][kind] = live_pipeline(clip, kind, port, a.model)
            print("pipeline", kind, rep["pipeline"][kind], file=sys.stderr)
    print(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
