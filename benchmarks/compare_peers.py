"""Side-by-side accuracy and speed of emotionlab's models and the `fer` package, on identical inputs, in one run.

    .venv/bin/python benchmarks/compare_peers.py [--data PATH] [--models default,fast] [--limit N]
        [--threads 1] [--setup-only] [--json OUT] [--markdown OUT]

1. Creates ``benchmarks/.venv-fer`` on first use (``fer==25.10.3`` with ``--no-deps`` plus TensorFlow CPU,
   OpenCV, pandas, Pillow and setuptools<81 from the package registry). TensorFlow never enters our venv.
2. Classification on FER-2013 PrivateTest: the same 48x48 crops go to every model. fer runs in a subprocess
   inside its venv (``benchmarks/peers/fer_eval.py``) on an .npz this script writes; its outputs are mapped to
   FER7 by label name. Ours: PyTorch via ``hub.load_model`` + ``engine.predict_proba``, and ONNX Runtime via
   ``models.onnx.export_onnx`` when it exists.
3. End to end on 640x480 BGR frames with 1 and 5 faces (upscaled PrivateTest crops pasted on a textured
   background, or face images from ``--faces DIR``): fer's ``detect_emotions`` (Haar detector, mtcnn=False) vs
   ``emotionlab.inference.FaceEmotionRecognizer().predict`` (when it exists), on the same frames.
4. Prints Markdown tables (stdout) and writes everything to ``--json``.

Compute is kept modest on purpose (both sides pinned to ``--threads`` CPU threads, default 1), so numbers
are comparable with each other, not with unpinned runs.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FER_VENV = REPO / "benchmarks" / ".venv-fer"
PEERS = REPO / "benchmarks" / "peers"


def _load_fer_common():
    """benchmarks/peers/fer_common.py: numpy-only helpers shared with the scripts run inside the fer venv."""
    spec = importlib.util.spec_from_file_location("fer_common", PEERS / "fer_common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fer_common = _load_fer_common()
FER_PIN = "fer==25.10.3"
FER_DEPS = ["tensorflow-cpu", "opencv-python-headless<5", "pandas", "pillow", "setuptools<81"]
FRAME_W, FRAME_H = 640, 480
# fer's Haar settings (FER() defaults): frames are accepted only if this detector finds every pasted face,
# so fer is never timed on a frame where it skipped work because it missed a face.
HAAR = {"scaleFactor": 1.1, "minNeighbors": 5, "minSize": (50, 50)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- fer venv
def fer_python(venv: Path = FER_VENV) -> Path:
    return venv / "bin" / "python"


def fer_venv_ok(venv: Path = FER_VENV) -> bool:
    py = fer_python(venv)
    if not py.exists():
        return False
    r = subprocess.run([str(py), "-c", "import warnings; warnings.filterwarnings('ignore'); from fer.fer import FER"],
                       check=False, capture_output=True, text=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return r.returncode == 0


def ensure_fer_venv(venv: Path = FER_VENV) -> Path:
    """Create the peer venv if it is missing or broken; return its python. Installs from the package registry."""
    if fer_venv_ok(venv):
        return fer_python(venv)
    base = shutil.which("python3") or sys.executable
    log(f"creating {venv} (fer + TensorFlow CPU; about 1 GB, a few minutes)")
    if not fer_python(venv).exists():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(fer_python(venv)), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", FER_PIN], check=True)
    subprocess.run(pip + FER_DEPS, check=True)
    if not fer_venv_ok(venv):
        raise SystemExit(f"error: {venv}: `from fer.fer import FER` still fails after installing; "
                         f"delete the folder and re-run with --setup-only to see pip's output")
    return fer_python(venv)


def run_fer(npz: Path, threads: int, extra: list[str], venv: Path = FER_VENV) -> dict:
    """Run fer_eval.py in the fer venv; its stderr (TensorFlow logs) is kept only for error messages."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [str(fer_python(venv)), str(PEERS / "fer_eval.py"), str(npz), "--out", str(out), "--threads",
           str(threads), *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        out.unlink(missing_ok=True)
        tail = "\n".join(r.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"fer_eval.py failed (exit {r.returncode}): {' '.join(cmd)}\n{tail}")
    res = json.loads(out.read_text())
    out.unlink(missing_ok=True)
    res["wall_s"] = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------------------------------- data
from emotionlab.data.paths import default_fer2013_csv  # noqa: E402  (the one default-data rule)


def load_private_test(path: Path, limit: int, seed: int):
    """FER-2013 PrivateTest (or a seeded random subset of ``limit`` rows, kept in file order)."""
    from emotionlab.data.loader import load_dataset

    ds = load_dataset(path)
    test = ds.split("PrivateTest")
    if limit and limit < len(test):
        idx = np.sort(np.random.default_rng(seed).choice(len(test), limit, replace=False))
        test = test.subset(idx)
    return test


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth, slightly coloured gradient with mild noise: not a flat image a detector could shortcut."""
    yy, xx = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    base = 90 + 60 * (xx / FRAME_W) + 30 * np.sin(yy / 57.0 + rng.uniform(0, 6))
    img = np.stack([base + rng.uniform(-15, 15) for _ in range(3)], -1)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _haar():
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def face_patches(faces_dir: Path, context: float = 1.6) -> list[tuple[np.ndarray, float]]:
    """Square BGR patches around every face fer's Haar settings find in the photos of ``faces_dir``.

    Each patch spans ``context`` times the face box (hair, neck, background: what a camera shows around a
    face), mirrored at photo borders; returns (patch, face side / patch side) pairs, plus their mirror images.
    """
    import cv2

    from emotionlab.data.folders import list_images, read_image

    haar = _haar()
    out = []
    for p in list_images(faces_dir):
        img = read_image(p)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        for x, y, w, h in haar.detectMultiScale(gray, flags=cv2.CASCADE_SCALE_IMAGE, **HAAR):
            side = round(max(w, h) * context)
            x0, y0 = int(x + w / 2 - side / 2), int(y + h / 2 - side / 2)
            pad = max(0, -x0, -y0, x0 + side - img.shape[1], y0 + side - img.shape[0])
            big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) if pad else img
            patch = big[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side].copy()
            out += [(patch, 1.0 / context), (cv2.flip(patch, 1), 1.0 / context)]
    return out


def frame_sources(crops: np.ndarray, faces: str | None) -> tuple[list[tuple[np.ndarray, float]], str]:
    """What to paste into frames: face photos from a folder (default ``examples/``), or ``fer`` crops."""
    if faces != "fer":
        folder = Path(faces) if faces else REPO / "examples"
        if faces and not folder.is_dir():
            raise SystemExit(f"error: --faces {faces}: not a folder (expected a folder of photos, or 'fer')")
        patches = face_patches(folder) if folder.is_dir() else []
        if patches:
            return patches, f"{len(patches) // 2} faces (+ mirror images) cut with 1.6x context from {folder}"
        if faces:
            raise SystemExit(f"error: --faces {faces}: OpenCV's Haar cascade found no face in these photos")
    return [(c, 1.0) for c in crops], "upscaled FER-2013 PrivateTest crops"


def build_frames(sources: list[tuple[np.ndarray, float]], per_frame: tuple[int, ...] = (1, 5), n_frames: int = 10,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """640x480 BGR frames with k pasted faces each -> (frames, faces per frame, face boxes (F, max_k, 4)).

    Faces are 180 px for one face and 110 px for five (one person close to a webcam, or a small group);
    box rows beyond k are -1. A frame is kept only if fer's Haar settings find exactly k faces in it, so fer
    is never timed on a frame where it skipped work because it missed a face.
    """
    import cv2

    rng = np.random.default_rng(seed)
    haar = _haar()
    order = rng.permutation(len(sources))
    pos = 0
    frames, counts, boxes = [], [], []
    kmax = max(per_frame)
    for k in per_frame:
        face_side = 180 if k == 1 else 110
        made, attempts = 0, 0
        while made < n_frames:
            attempts += 1
            if attempts > 50 * n_frames:
                raise RuntimeError(f"could not build {n_frames} frames with {k} Haar-detectable faces "
                                   f"(made {made} in {attempts} attempts); try --faces with other photos")
            img = _background(rng)
            picks = [sources[order[(pos + i) % len(order)]] for i in range(k)]
            pos += k
            sides = [min(round(face_side / frac), FRAME_H - 20) for _, frac in picks]
            if k == 1:
                s = sides[0]
                cells = [(int(rng.integers(10, FRAME_W - s - 10)), int(rng.integers(10, FRAME_H - s - 10)))]
            else:
                cw, ch = FRAME_W // 3, FRAME_H // 2
                picked = rng.choice(6, k, replace=False)
                cells = [(int(c % 3) * cw + int(rng.integers(0, max(1, cw - s))),
                          int(c // 3) * ch + int(rng.integers(0, max(1, ch - s)))) for c, s in zip(picked, sides)]
            fb = []
            for (patch, frac), s, (x, y) in zip(picks, sides, cells):
                face = cv2.resize(patch, (s, s), interpolation=cv2.INTER_AREA if patch.shape[0] > s else cv2.INTER_CUBIC)
                if face.ndim == 2:
                    face = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
                img[y:y + s, x:x + s] = face
                f = s * frac
                fb.append((int(x + (s - f) / 2), int(y + (s - f) / 2), int(f), int(f)))
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            if len(haar.detectMultiScale(gray, flags=cv2.CASCADE_SCALE_IMAGE, **HAAR)) != k:
                continue
            frames.append(img)
            counts.append(k)
            boxes.append(fb + [(-1, -1, -1, -1)] * (kmax - k))
            made += 1
    return np.stack(frames), np.asarray(counts, np.int64), np.asarray(boxes, np.int64)


# ----------------------------------------------------------------------------------------------- ours
def to_fer7(probs: np.ndarray, labels: list[str]) -> np.ndarray:
    """Reorder a model's class probabilities to FER7; classes outside FER7 (e.g. contempt) are dropped."""
    from emotionlab.data.labels import FER7, canonical_name

    names = [canonical_name(x) for x in labels]
    missing = [x for x in FER7.labels if x not in names]
    if missing:
        raise ValueError(f"model labels {labels} lack FER7 classes {missing}; cannot score on FER-2013")
    return probs[:, [names.index(x) for x in FER7.labels]]


def _latency(fn, items, warmup: int = 5) -> float:
    """Mean ms per call of ``fn(item)`` after a few untimed warm-up calls."""
    for it in items[:warmup]:
        fn(it)
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return 1000.0 * (time.perf_counter() - t0) / max(1, len(items))


def eval_ours(name: str, crops: np.ndarray, y: np.ndarray, latency_n: int, threads: int, tmp: Path) -> list[dict]:
    """PyTorch (and ONNX Runtime when available) rows for one model: accuracy, macro-F1, ms/face."""
    from emotionlab.data.labels import FER7
    from emotionlab.data.preprocess import normalize, resize
    from emotionlab.models.hub import load_model
    from emotionlab.training.engine import predict_proba
    from emotionlab.training.metrics import classification_metrics

    lm = load_model(name)
    pre = lm.preprocess
    x = crops if crops.shape[1] == pre.size else np.stack([resize(c, pre.size) for c in crops])
    rows = []

    t0 = time.perf_counter()
    probs = predict_proba(lm.model, x, pre, batch_size=256)
    batch_ms = 1000.0 * (time.perf_counter() - t0) / len(x)
    single = [x[i:i + 1] for i in range(min(latency_n, len(x)))]
    lat = _latency(lambda a: predict_proba(lm.model, a, pre, batch_size=1), single)
    m = classification_metrics(y, to_fer7(probs, lm.labels).argmax(1), FER7.labels)
    base = {"model": name, "arch": lm.card.get("arch"), "params": lm.card.get("params"), "labels": lm.labels,
            "weights": str(lm.weights)}
    rows.append({**base, "runtime": f"PyTorch {__import__('torch').__version__}", "accuracy": m["accuracy"],
                 "macro_f1": m["macro_f1"], "ms_per_face": lat, "batch_ms_per_face": batch_ms, "n": m["n"],
                 "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}})

    try:
        from emotionlab.models.classifier import softmax
        from emotionlab.models.onnx import export_onnx, ort_session
    except ImportError as e:
        rows.append({**base, "runtime": "ONNX Runtime", "error": f"not measured: {e}"})
        return rows
    try:
        import onnxruntime as ort

        path = export_onnx(name, tmp / f"{Path(str(name)).name}.onnx")
        sess = ort_session(path, threads)
        iname = sess.get_inputs()[0].name
        inp = normalize(x, pre)
        t0 = time.perf_counter()
        logits = np.concatenate([sess.run(None, {iname: inp[i:i + 256]})[0] for i in range(0, len(inp), 256)])
        ort_batch = 1000.0 * (time.perf_counter() - t0) / len(inp)
        oprobs = softmax(logits, axis=1, dtype=np.float64)
        ort_lat = _latency(lambda i: sess.run(None, {iname: normalize(x[i], pre)}), list(range(len(single))))
        om = classification_metrics(y, to_fer7(oprobs, lm.labels).argmax(1), FER7.labels)
        rows.append({**base, "runtime": f"ONNX Runtime {ort.__version__}", "accuracy": om["accuracy"],
                     "macro_f1": om["macro_f1"], "ms_per_face": ort_lat, "batch_ms_per_face": ort_batch,
                     "n": om["n"], "max_abs_prob_diff_vs_torch": float(np.abs(oprobs - probs).max())})
    except Exception as e:  # noqa: BLE001 - reported in the table, never hidden
        rows.append({**base, "runtime": "ONNX Runtime", "error": f"{type(e).__name__}: {e}"})
    return rows


def make_recognizer(name: str, threads: int, detector: str = "auto"):
    """``FaceEmotionRecognizer(model=name, detector=detector)`` with its default backend, pinned to ``threads``."""
    import inspect

    from emotionlab.inference import FaceEmotionRecognizer

    kw = {"model": name, "detector": detector}
    if "threads" in inspect.signature(FaceEmotionRecognizer).parameters:
        kw["threads"] = threads
    return FaceEmotionRecognizer(**kw)


def time_recognizer(rec, frames: np.ndarray, counts: np.ndarray, repeat: int, boxes: np.ndarray | None = None,
                    warmup: int = 2) -> dict:
    """``rec.predict(frame)`` per frame, measured and summarized exactly as fer_common.time_frames does for fer."""
    out = {}
    for k in sorted(set(counts.tolist())):
        idx = np.flatnonzero(counts == k)
        for i in idx[:warmup]:
            rec.predict(frames[i])
        times, found, matched = [], [], []
        for _ in range(repeat):
            for i in idx:
                t0 = time.perf_counter()
                faces = rec.predict(frames[i])
                times.append(time.perf_counter() - t0)
                found.append(len(faces))
                if boxes is not None:
                    matched.append(fer_common.matched_faces([f.box for f in faces], boxes[i]))
        out[str(k)] = {**fer_common.summarize(np.asarray(times) * 1000.0, np.asarray(found),
                                              np.asarray(matched) if boxes is not None else None),
                       "frames": len(idx), "repeat": repeat, "model_name": getattr(rec, "model_name", None),
                       "backend": getattr(rec, "backend", None), "detector": getattr(rec, "detector_name", None)}
    return out


def best_round(rounds: list[dict]) -> dict:
    """Per face count, the round with the lowest mean ms/frame: background load only ever adds time."""
    best: dict = {}
    for r in rounds:
        for k, v in r.items():
            if k not in best or v["ms_per_frame"] < best[k]["ms_per_frame"]:
                best[k] = {**v, "rounds": len(rounds)}
    return best


def end_to_end(fer_first: dict, frames_npz: Path, frames: np.ndarray, counts: np.ndarray, boxes: np.ndarray,
               names: list[str], args) -> dict:
    """fer and our recognizers, alternating for ``--rounds`` rounds on the same frames; best round per side."""
    rows: dict = {"fer": [fer_first]}
    recs: dict = {}
    detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    for name in names:
        for det in detectors:
            key = f"emotionlab {name}" + (f" [{det}]" if detectors != ["auto"] else "")
            try:
                recs[key] = make_recognizer(name, args.threads, det)
                rows[key] = []
            except ImportError as ex:
                rows[key] = {"error": f"not measured (FaceEmotionRecognizer unavailable: {ex})"}
            except (FileNotFoundError, ValueError) as ex:
                rows[key] = {"error": f"not available: {ex}"}
    for r in range(args.rounds):
        if r > 0:
            log(f"end to end: round {r + 1}/{args.rounds}")
            rows["fer"].append(run_fer(frames_npz, args.threads, ["--repeat", str(args.repeat)])["frames"])
        for key, rec in recs.items():
            rows[key].append(time_recognizer(rec, frames, counts, args.repeat, boxes))
    all_rounds = {k: v for k, v in rows.items() if isinstance(v, list)}
    return {"frames_per_setting": args.frames, "repeat": args.repeat, "rounds": args.rounds,
            "rows": {k: (best_round(v) if isinstance(v, list) else v) for k, v in rows.items()},
            "all_rounds": all_rounds}


# ----------------------------------------------------------------------------------------------- report
def machine_info(threads: int) -> dict:
    from emotionlab.inference.quantize import machine_description

    return {"cpu": machine_description(), "cores": os.cpu_count(), "threads_used": threads,
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()], "python": platform.python_version(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _f(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def markdown(report: dict) -> str:
    c = report["classification"]
    lines = [(f"**Classification**, FER-2013 PrivateTest, n = {c['n']} identical 48×48 crops "
              f"(`{report['data']}`), {report['machine']['threads_used']} CPU thread(s):"), "",
             "| model | runtime | accuracy | macro-F1 | ms/face (batch 1) | ms/face (batch 256) |",
             "|---|---|---:|---:|---:|---:|"]
    for r in c["rows"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r.get('runtime', '')} | {r['error']} | | | |")
        else:
            lines.append(f"| {r['model']} | {r['runtime']} | {100 * r['accuracy']:.1f}% | {r['macro_f1']:.3f} | "
                         f"{_f(r.get('ms_per_face'), '.2f')} | {_f(r.get('batch_ms_per_face'), '.3f')} |")
    e = report.get("end_to_end")
    if e:
        lines += ["", (f"**End to end**, {FRAME_W}×{FRAME_H} BGR frames ({e['frames_per_setting']} per setting × "
                       f"{e['repeat']} passes, best of {e.get('rounds', 1)} alternating rounds; "
                       f"{report.get('frame_source', '')}; every frame checked to have all faces found by fer's "
                       "Haar settings):"), "",
                  ("| system | faces/frame | faces found (at pasted faces) | ms/frame (mean) | ms/frame (p50) | fps "
                   "| speed-up vs fer |"),
                  "|---|---:|---:|---:|---:|---:|---:|"]
        fer_ms = {k: v["ms_per_frame"] for k, v in e["rows"].get("fer", {}).items() if isinstance(v, dict)}
        for system, per_k in e["rows"].items():
            if "error" in per_k:
                lines.append(f"| {system} | | | {per_k['error']} | | | |")
                continue
            for k, v in per_k.items():
                ratio = fer_ms.get(k, float("nan")) / v["ms_per_frame"] if system != "fer" else 1.0
                found = f"{v['faces_found_per_frame']:.2f}"
                if v.get("faces_matched_per_frame") is not None:
                    found += f" ({v['faces_matched_per_frame']:.2f})"
                lines.append(f"| {system} | {k} | {found} | {v['ms_per_frame']:.1f} | "
                             f"{_f(v.get('p50_ms'), '.1f')} | {v['fps']:.1f} | {ratio:.2f}× |")
    m = report["machine"]
    lines += ["", (f"Machine: {m['cpu']}, load average at start {m['load_average_at_start']}; "
                   f"{m['date']}; fer {report.get('fer_versions', {}).get('fer', '?')} / TensorFlow "
                   f"{report.get('fer_versions', {}).get('tensorflow', '?')}.")]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="FER-2013 CSV(.gz) (default $EMOTIONLAB_DATA/fer2013/fer2013.csv.gz or ../shared/data/...)")
    ap.add_argument("--models", default="default,fast", help="comma-separated shipped names or run directories")
    ap.add_argument("--limit", type=int, default=0, help="use a seeded random subset of N PrivateTest crops (0 = all)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every system (torch, ORT, TF, OpenCV)")
    ap.add_argument("--latency-n", type=int, default=500, help="crops timed one at a time for ms/face (batch 1)")
    ap.add_argument("--frames", type=int, default=10, help="frames per setting (1 face, 5 faces)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the frames")
    ap.add_argument("--detectors", default="auto",
                    help="our face detectors to time end to end, comma-separated (see FaceEmotionRecognizer)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="end-to-end rounds alternating fer and ours; the fastest round of each is reported")
    ap.add_argument("--faces", default=None,
                    help="folder of photos whose faces are pasted into the frames (default examples/), or 'fer' "
                         "for upscaled PrivateTest crops")
    ap.add_argument("--save-frames", type=Path, default=None, help="also save the frames as an .npz")
    ap.add_argument("--fer-keras", action="store_true", help="also score fer's float Keras model (slow: ~50 ms/face)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end frame timing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--setup-only", action="store_true", help="only create benchmarks/.venv-fer and exit")
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the Markdown tables here")
    args = ap.parse_args(argv)
    for opt in ("limit", "latency_n", "frames", "repeat", "rounds", "threads"):
        if getattr(args, opt) < (0 if opt == "limit" else 1):
            ap.error(f"--{opt.replace('_', '-')} {getattr(args, opt)}: expected an integer >= "
                     f"{0 if opt == 'limit' else 1}")

    ensure_fer_venv()
    if args.setup_only:
        log(f"fer venv ready: {fer_python()}")
        return 0

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    data = args.data or default_fer2013_csv()
    if not Path(data).exists():
        raise SystemExit(f"error: {data}: FER-2013 not found; pass --data PATH to fer2013.csv(.gz) "
                         "or set EMOTIONLAB_DATA")
    report: dict = {"command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
                    "data": str(data), "machine": machine_info(args.threads)}
    test = load_private_test(Path(data), args.limit, args.seed)
    crops, y = test.images, test.labels
    log(f"PrivateTest: {len(y)} crops; building frames")
    with tempfile.TemporaryDirectory(prefix="compare_peers_") as td:
        tmp = Path(td)
        payload = {"crops": crops, "labels": y}
        frames = counts = None
        if not args.no_e2e:
            sources, report["frame_source"] = frame_sources(crops, args.faces)
            frames, counts, boxes = build_frames(sources, (1, 5), args.frames, args.seed)
            payload.update(frames=frames, frame_faces=counts, frame_boxes=boxes)
            if args.save_frames:
                np.savez_compressed(args.save_frames, frames=frames, frame_faces=counts, frame_boxes=boxes)
                log(f"wrote {args.save_frames} (input for benchmarks/peers/fer_bench.py)")
        npz = tmp / "inputs.npz"
        np.savez(npz, **payload)

        rows: list[dict] = []
        log("fer: default settings (TFLite model, offsets 10 px) + end-to-end frames")
        fer_main = run_fer(npz, args.threads, ["--repeat", str(args.repeat)])
        report["fer_versions"] = fer_main["versions"]
        log("fer: offsets 0 (the box is exactly the 48x48 crop)")
        fer_tight = run_fer(npz, args.threads, ["--offsets", "0,0", "--no-frames"])
        variants = [("fer (default, offsets 10 px)", fer_main), ("fer (offsets 0: box = crop)", fer_tight)]
        if args.fer_keras:
            log("fer: Keras float model, offsets 0")
            variants.append(("fer Keras float (offsets 0)", run_fer(npz, args.threads,
                                                                   ["--keras", "--offsets", "0,0", "--no-frames"])))
        from emotionlab.data.labels import FER7
        from emotionlab.training.metrics import classification_metrics

        for label, res in variants:
            cl = res["classify"]
            p = to_fer7(np.asarray(cl["probs"], np.float32), cl["labels"])
            m = classification_metrics(y, p.argmax(1), FER7.labels)
            rounded = classification_metrics(y, np.asarray(cl["rounded_argmax"]), FER7.labels)
            rows.append({"model": label, "runtime": f"TF {res['versions']['tensorflow']} {res['model']}",
                         "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "ms_per_face": cl["ms_per_face"],
                         "batch_ms_per_face": cl["batch_ms_per_face"], "n": m["n"],
                         "accuracy_from_rounded_scores": rounded["accuracy"],
                         "per_class_f1": {k: v["f1"] for k, v in m["per_class"].items()}})

        model_names = [s.strip() for s in args.models.split(",") if s.strip()]
        for name in model_names:
            log(f"ours: {name}")
            try:
                rows += eval_ours(name, crops, y, args.latency_n, args.threads, tmp)
            except FileNotFoundError as e:
                rows.append({"model": name, "runtime": "", "error": f"not available: {e}"})
        report["classification"] = {"n": len(y), "rows": rows}

        if frames is not None:
            frames_npz = tmp / "frames.npz"
            np.savez(frames_npz, frames=frames, frame_faces=counts, frame_boxes=boxes)
            report["end_to_end"] = end_to_end(fer_main["frames"], frames_npz, frames, counts, boxes, model_names,
                                              args)

    md = markdown(report)
    print(md)
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
