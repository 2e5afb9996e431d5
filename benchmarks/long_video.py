"""Constant memory on a long video: resident memory of ``emotionlab predict VIDEO --out DIR`` over the run.

Makes (or reuses) a 640x480 test video with a face moving over ffmpeg's ``testsrc2`` pattern, runs the real CLI
in a child process, samples its resident set size (RSS) every ``--every`` seconds with psutil, and reports the
first-minute and last-minute medians, the maximum, and the throughput (frames decoded and processed per second
of wall time). The timeline and the annotated video are written as the run goes; the RSS curve is the proof that
nothing per frame is kept.

    python benchmarks/long_video.py --minutes 60 --stride 15 [--video PATH] [--json out.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

FACE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def make_video(path: Path, minutes: float, fps: int = 25) -> None:
    """640x480 testsrc2 with a 160 px face gliding over it (mpeg4: encodes at several hundred fps)."""
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=640x480:rate={fps}:duration={minutes * 60:g}", "-loop", "1", "-i", str(FACE),
                    "-filter_complex", "[1]crop=220:220:120:20,scale=160:160[f];"
                    "[0][f]overlay=x='200+100*sin(t/3)':y='150+50*sin(t/5)':shortest=1",
                    "-c:v", "mpeg4", "-q:v", "6", str(path)], check=True)


def plot_rss(rep: dict, path: Path) -> Path:
    """The resident memory of the ``predict`` process over the run (what "constant memory" means here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, mb = zip(*rep["rss_curve"])
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    ax.plot([x / 60 for x in t], mb, lw=1.2)
    ax.set_xlabel("wall time (min)")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(0, max(mb) * 1.15)
    ax.grid(alpha=0.3)
    ax.set_title(f"{rep['video']}, --stride {rep['stride']}: resident memory of emotionlab predict", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--stride", type=int, default=15)
    ap.add_argument("--every", type=float, default=5.0, help="RSS sample period (s)")
    ap.add_argument("--video", type=Path, default=None, help="reuse this video instead of making one")
    ap.add_argument("--model", default="default")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None, help="PNG of the resident memory over the run")
    a = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed to make the video")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        video = a.video or d / "long.mp4"
        if a.video is None:
            t = time.perf_counter()
            make_video(video, a.minutes)
            print(f"made {video} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        out = d / "out"
        cmd = [sys.executable, "-c", "from emotionlab.cli import main; main()", "predict", str(video), "--out", str(out), "--stride",
               str(a.stride), "--summary", "--json", "--model", a.model]
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        proc = psutil.Process(p.pid)
        samples = []
        while p.poll() is None:
            try:
                samples.append((round(time.perf_counter() - t0, 1), proc.memory_info().rss / 2**20))
            except psutil.NoSuchProcess:
                break
            time.sleep(a.every)
        stdout, stderr = p.communicate()
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"predict failed ({p.returncode}): {stderr[-2000:]}")
        res = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")][0]
        with open(res["outputs"]["timeline"]) as fh:
            rows = sum(1 for _ in csv.reader(fh)) - 1
        sizes = {k: os.path.getsize(v) for k, v in res["outputs"].items()}
    first = [m for t, m in samples if 20 <= t <= 80] or [m for _, m in samples[: len(samples) // 3]]  # the first minute after the model is loaded
    last = [m for t, m in samples if t >= wall - 60]
    frames_total = res["frames"] * a.stride
    rep = {"command": " ".join(["emotionlab"] + cmd[3:]), "video": f"{a.minutes:g} min 640x480 25 fps mpeg4",
           "stride": a.stride, "wall_s": round(wall, 1), "frames_processed": res["frames"],
           "processed_fps": round(res["frames"] / wall, 2), "decoded_fps": round(frames_total / wall, 1),
           "video_s_per_wall_s": round(frames_total / 25 / wall, 2), "timeline_rows": rows,
           "faces_detected": res["faces_detected"], "people": len(res["faces"]), "output_bytes": sizes,
           "rss_mb": {"first_minute_median": round(statistics.median(first), 1) if first else None,
                      "last_minute_median": round(statistics.median(last), 1) if last else None,
                      "max": round(max(m for _, m in samples), 1), "samples": len(samples)},
           "rss_curve": [(t, round(m, 1)) for t, m in samples]}
    if first and last:
        rep["rss_mb"]["last_minus_first"] = round(rep["rss_mb"]["last_minute_median"] -
                                                  rep["rss_mb"]["first_minute_median"], 1)
    if a.plot:
        plot_rss(rep, a.plot)
    text = json.dumps(rep, indent=2)
    if a.json:
        a.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
