"""End-to-end browser test: `emotionlab serve` with the shipped model, the demo page in headless Chromium with a
fake webcam that plays a bundled sample photo, and a label drawn over the live video.

Needs Debian's chromium, ffmpeg, node and `tests/e2e/node_modules` (`.ci/run` installs them); skips with the
reason otherwise. The screenshot is saved in the pytest tmp dir and copied to out/e2e.png.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
E2E = REPO / "tests" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _requirements() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not shutil.which("node"):
        return "node is not installed"
    if not shutil.which("ffmpeg"):
        return "ffmpeg is not installed (apt-get install ffmpeg)"
    if not (E2E / "node_modules" / "playwright-core").exists():
        return "tests/e2e/node_modules is missing (cd tests/e2e && npm install)"
    try:
        from emotionlab.inference import FaceEmotionRecognizer  # noqa: F401
        from emotionlab.models.hub import resolve

        resolve("default")
    except (ImportError, FileNotFoundError) as e:
        return f"no face pipeline / shipped default model yet: {e}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sample_photo() -> Path:
    for name in ("grace_hopper.jpg", "astronaut.jpg"):
        if (REPO / "examples" / name).exists():
            return REPO / "examples" / name
    photos = sorted((REPO / "examples").glob("*.jpg")) + sorted((REPO / "examples").glob("*.png"))
    if not photos:
        pytest.skip("no sample photo in examples/")
    return photos[0]


def _make_y4m(photo: Path, out: Path) -> Path:
    """A 2 s, 640x480 fake-webcam clip of one still photo (letterboxed, not stretched)."""
    vf = "scale=640:480:force_original_aspect_ratio=decrease,pad=640:480:(ow-iw)/2:(oh-ih)/2,format=yuv420p"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(photo), "-t", "2", "-r", "15",
                    "-vf", vf, str(out)], check=True, timeout=60)
    return out


@contextmanager
def serving(tmp_path: Path):
    """`emotionlab serve` on a free loopback port in a subprocess; yields its URL once /health answers."""
    import httpx

    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from emotionlab.cli import main; main(sys.argv[1:])", "serve", "--host", "127.0.0.1", "--port",
                                 str(port), "--workers", "2", "--threads", "1", "--log-level", "warning"],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    pytest.fail(f"server did not answer /health in 90 s:\n{log_path.read_text()}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_label_appears_over_live_video(tmp_path):
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    from emotionlab.inference import FaceEmotionRecognizer

    labels = set(FaceEmotionRecognizer().labels)
    photo = _sample_photo()
    y4m = _make_y4m(photo, tmp_path / "face.y4m")
    shot = tmp_path / "e2e.png"
    with serving(tmp_path) as url:
        r = subprocess.run(["node", str(E2E / "live.mjs"), url + "/", str(y4m), str(shot), "3", str(photo)], cwd=E2E,
                           capture_output=True, text=True, timeout=150, check=False)
    assert r.returncode == 0, f"browser run failed:\n{r.stdout}\n{r.stderr}"
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print("e2e:", res)
    assert res["label"] in labels, res
    assert res["external_requests"] == [], "the page fetched something that is not on this server"
    assert res["debug_crops"] >= 1
    assert res["upload_labels"] and set(res["upload_labels"]) <= labels, "no label over the uploaded image"
    assert res["docs_operations"] >= 4, "the Swagger UI docs did not render"
    assert res["fps"] > 0
    from emotionlab.serve.fusion import SHARED_LABELS

    fused = res.get("fused", "").lower()
    assert any(lab in fused for lab in SHARED_LABELS), f"no fused label shown: {fused!r}"
    assert shot.exists() and shot.stat().st_size > 10_000
    out = REPO / "out"
    out.mkdir(exist_ok=True)
    shutil.copy(shot, out / "e2e.png")
