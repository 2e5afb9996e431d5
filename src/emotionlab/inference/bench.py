"""``emotionlab bench``: end-to-end speed of the face pipeline on synthetic 640x480 frames with 1 and 5 faces.

Frames are made by pasting real face photos (the sample photos shipped in ``emotionlab/inference/assets/faces``,
copies of the repository's ``examples/``, or ``--faces DIR``) onto a textured background, so detection and
classification do real work. Optionally the ``fer`` package is timed on the very same frames in its own venv
(``benchmarks/.venv-fer`` of a checkout, made by ``benchmarks/compare_peers.py``).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480
#: the sample photos the frames are made of when no --faces DIR is given: package data, so an installed wheel
#: benchmarks the same frames as a checkout
FACES_DIR = Path(__file__).resolve().parent / "assets" / "faces"


def default_faces_dir() -> Path:
    """The shipped sample photos; a clear error if this installation lacks them."""
    if not any(FACES_DIR.glob("*.jpg")):
        raise FileNotFoundError(f"{FACES_DIR}: no sample face photos in this installation; pass --faces DIR "
                                "with photos of faces")
    return FACES_DIR


def peer_paths(root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(fer venv python, fer_bench.py) of a checkout: ``root`` (default: the current directory) holds
    ``benchmarks/``. The installed package has neither: they exist only in a checkout."""
    root = Path(root) if root is not None else Path.cwd()
    return root / "benchmarks" / ".venv-fer" / "bin" / "python", root / "benchmarks" / "peers" / "fer_bench.py"


def face_sources(rec, faces_dir: Path) -> list[np.ndarray]:
    """Square BGR cuts around every face the recognizer's detector finds in the photos of ``faces_dir``."""
    from ..data.folders import list_images
    from .recognizer import load_image

    out = []
    for p in list_images(faces_dir):
        img = load_image(p)
        for d in rec.detect(img):
            x, y, w, h = d.box
            m = 0.6 * max(w, h)
            cx, cy = x + w / 2, y + h / 2
            s = int(max(w, h) + 2 * m)
            x0, y0 = int(cx - s / 2), int(cy - s / 2)
            if x0 < 0 or y0 < 0 or x0 + s > img.shape[1] or y0 + s > img.shape[0]:
                x0, y0 = max(0, x0), max(0, y0)
                s = min(s, img.shape[1] - x0, img.shape[0] - y0)
            out.append(img[y0:y0 + s, x0:x0 + s].copy())
    if not out:
        raise ValueError(f"{faces_dir}: no face found in its images to build benchmark frames")
    return out


def build_frames(sources: list[np.ndarray], k: int, n: int, seed: int = 0) -> tuple[np.ndarray, list[list]]:
    """n frames of 640x480 with k non-overlapping pasted faces; -> (frames, pasted boxes per frame)."""
    rng = np.random.default_rng(seed + k)
    frames, boxes = [], []
    for _ in range(n):
        bg = rng.integers(60, 190, size=(FRAME_H // 8, FRAME_W // 8, 3)).astype(np.uint8)
        img = cv2.GaussianBlur(cv2.resize(bg, (FRAME_W, FRAME_H), interpolation=cv2.INTER_LINEAR), (0, 0), 3)
        placed: list[tuple[int, int, int]] = []
        tries = 0
        side = 300 if k == 1 else 170  # cut side; the face is about half of it
        while len(placed) < k and tries < 500:
            tries += 1
            s = int(side * rng.uniform(0.85, 1.1))
            x, y = int(rng.integers(0, FRAME_W - s)), int(rng.integers(0, FRAME_H - s))
            if any(x < px + ps and px < x + s and y < py + ps and py < y + s for px, py, ps in placed):
                continue
            src = sources[int(rng.integers(len(sources)))]
            img[y:y + s, x:x + s] = cv2.resize(src, (s, s), interpolation=cv2.INTER_AREA)
            placed.append((x, y, s))
        frames.append(img)
        boxes.append(placed)
    return np.stack(frames), boxes


def _time(fn, items, repeat: int, warmup: int = 3) -> list[float]:
    for it in items[:warmup]:
        fn(it)
    times = []
    for _ in range(repeat):
        for it in items:
            t0 = time.perf_counter()
            fn(it)
            times.append(time.perf_counter() - t0)
    return times


def _stats(times: list[float], per: int = 1) -> dict:
    a = np.asarray(times) * 1000
    return {"ms": round(float(a.mean()), 3), "p50_ms": round(float(np.median(a)), 3),
            "p90_ms": round(float(np.percentile(a, 90)), 3), "fps": round(1000.0 / float(a.mean()) * per, 1)}


def run_fer_peer(frames: np.ndarray, threads: int, repeat: int, root: str | os.PathLike | None = None) -> dict:
    """Time fer's detect_emotions on the same frames via benchmarks/peers/fer_bench.py of a checkout (``root``,
    default the current directory; see :func:`peer_paths`), if its venv exists."""
    py, script = peer_paths(root)
    if not py.exists() or not script.exists():
        return {"measured": False, "reason": f"{py} not found: --peers uses a checkout's benchmarks/; run from "
                                             "its root after `python benchmarks/compare_peers.py --setup-only`"}
    with tempfile.TemporaryDirectory(prefix="el_bench_") as td:
        npz, out = Path(td) / "frames.npz", Path(td) / "fer.json"
        np.savez(npz, frames=frames)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        r = subprocess.run([str(py), str(script), str(npz), "--threads", str(threads), "--repeat", str(repeat),
                            "--out", str(out)], check=False, capture_output=True, text=True, env=env)
        if r.returncode != 0 or not out.exists():
            return {"measured": False,
                    "reason": "fer_bench.py failed: " + " | ".join(r.stderr.strip().splitlines()[-3:])}
        try:
            res = json.loads(out.read_text())
        except json.JSONDecodeError as e:
            return {"measured": False, "reason": f"fer_bench.py wrote unreadable JSON: {e}"}
    res["measured"] = True
    return res


def run_bench(rec, faces_dir: Path | None = None, n_frames: int = 20, repeat: int = 3, peers: bool = False,
              threads: int = 1, seed: int = 0, log=lambda s: None) -> dict:
    """All numbers of ``emotionlab bench`` as a dict (see docs/results_pipeline.md for the meaning)."""
    faces_dir = Path(faces_dir) if faces_dir is not None else default_faces_dir()
    sources = face_sources(rec, faces_dir)
    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                "threads": threads, "python": platform.python_version()},
                    "model": rec.model_name, "tta": rec.tta, "backend": rec.backend, "detector": rec.detector_name,
                    "frame": f"{FRAME_W}x{FRAME_H}", "frames_per_setting": n_frames, "repeat": repeat,
                    "faces_from": str(faces_dir), "e2e": {}}
    all_frames = []
    for k in (1, 5):
        frames, _ = build_frames(sources, k, n_frames, seed)
        all_frames.append(frames)
        found = [len(rec.predict_images([f])[0]) for f in frames]
        log(f"{k} face(s): timing end to end")
        e2e = _stats(_time(lambda f: rec.predict_images([f]), list(frames), repeat))
        det = _stats(_time(rec.detect, list(frames), repeat))
        report["e2e"][f"{k}_face"] = {**e2e, "detect_only": det, "faces_found_per_frame": float(np.mean(found)),
                                      "faces_pasted_per_frame": k}
    # classification alone: per-face latency (batch 1) and batch throughput, on crops of the pasted faces
    crops = np.stack([cv2.resize(cv2.cvtColor(s, cv2.COLOR_BGR2GRAY), (rec.pre.size, rec.pre.size),
                                 interpolation=cv2.INTER_AREA) for s in sources])
    one = [crops[i % len(crops)][None] for i in range(50)]
    report["classify_batch1"] = _stats(_time(rec.classify_crops, one, repeat))
    batch = np.stack([crops[i % len(crops)] for i in range(64)])
    bt = _time(rec.classify_crops, [batch] * 5, repeat, warmup=1)
    report["classify_batch64"] = {"ms_per_batch": round(1000 * float(np.mean(bt)), 3),
                                  "faces_per_s": round(64 / float(np.mean(bt)), 1)}
    if peers:
        log("fer: timing detect_emotions on the same frames (its own venv)")
        report["fer"] = {f"{k}_face": run_fer_peer(fr, threads, repeat) for k, fr in zip((1, 5), all_frames)}
        for k in (1, 5):
            f = report["fer"][f"{k}_face"]
            if f.get("measured"):
                report["e2e"][f"{k}_face"]["speedup_vs_fer"] = round(f["ms_per_frame"] / report["e2e"][f"{k}_face"]["ms"], 1)
    else:
        report["fer"] = {"measured": False, "reason": "not requested (pass --peers)"}
    return report
