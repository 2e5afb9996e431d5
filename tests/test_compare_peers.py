"""benchmarks/compare_peers.py: frame building, label mapping and report tables; the fer run itself only
when its venv (benchmarks/.venv-fer) exists. Nothing here installs anything."""
from __future__ import annotations

import importlib.util
import json
import subprocess

import numpy as np
import pytest
from conftest import REPO, make_fer_rows

FER_PY = REPO / "benchmarks" / ".venv-fer" / "bin" / "python"


@pytest.fixture(scope="module")
def cp():
    spec = importlib.util.spec_from_file_location("compare_peers", REPO / "benchmarks" / "compare_peers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_to_fer7_reorders_by_name_and_rejects_missing_classes(cp):
    probs = np.array([[0.1, 0.2, 0.3, 0.05, 0.05, 0.1, 0.1, 0.1]], np.float32)
    affectnet = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"]
    out = cp.to_fer7(probs, affectnet)
    # FER7 order: angry, disgust, fear, happy, sad, surprise, neutral
    np.testing.assert_allclose(out, [[0.1, 0.1, 0.05, 0.2, 0.3, 0.05, 0.1]], rtol=1e-6)
    with pytest.raises(ValueError, match="lack FER7 classes"):
        cp.to_fer7(probs[:, :3], ["neutral", "happy", "sad"])


def test_matched_faces_counts_each_pasted_face_once(cp):
    truth = np.array([(0, 0, 100, 100), (200, 0, 100, 100), (-1, -1, -1, -1)])
    match = cp.fer_common.matched_faces
    assert match([(5, 5, 100, 100)], truth) == 1
    assert match([(5, 5, 100, 100), (10, 10, 90, 90)], truth) == 1  # two boxes on one face count once
    assert match([(5, 5, 100, 100), (195, 5, 100, 100), (400, 400, 50, 50)], truth) == 2
    assert match([(400, 300, 100, 100)], truth) == 0 and match([], truth) == 0


def test_build_frames_puts_every_face_where_haar_finds_it(cp):
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    sources, desc = cp.frame_sources(np.zeros((1, 48, 48), np.uint8), str(REPO / "examples"))
    assert sources and "examples" in desc
    frames, counts, boxes = cp.build_frames(sources, (1, 5), n_frames=1, seed=0)
    assert frames.shape == (2, 480, 640, 3) and frames.dtype == np.uint8
    assert counts.tolist() == [1, 5]
    assert (boxes[0, 1:] == -1).all() and (boxes[1] >= 0).all()
    for f, k in zip(frames, counts):
        assert len(cascade.detectMultiScale(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), **cp.HAAR)) == k


def test_frame_sources_rejects_a_missing_folder(cp, tmp_path):
    with pytest.raises(SystemExit, match="not a folder"):
        cp.frame_sources(np.zeros((1, 48, 48), np.uint8), str(tmp_path / "nope"))


def test_markdown_reports_ratio_and_errors(cp):
    timing = {"1": {"ms_per_frame": 80.0, "fps": 12.5, "faces_found_per_frame": 1.0}}
    report = {
        "data": "x.csv", "machine": {"cpu": "cpu", "cores": 2, "threads_used": 1, "load_average_at_start": [0, 0, 0],
                                     "date": "2026-11-22"},
        "classification": {"n": 3, "rows": [
            {"model": "fer", "runtime": "TF", "accuracy": 0.5, "macro_f1": 0.4, "ms_per_face": 1.0,
             "batch_ms_per_face": 0.9},
            {"model": "fast", "runtime": "", "error": "not available: no model 'fast'"}]},
        "end_to_end": {"frames_per_setting": 1, "repeat": 1, "rows": {
            "fer": timing, "emotionlab default": {"1": {**timing["1"], "ms_per_frame": 10.0, "fps": 100.0}},
            "emotionlab fast": {"error": "not measured"}}},
    }
    md = cp.markdown(report)
    assert "| fer | TF | 50.0% | 0.400 |" in md
    assert "not available: no model 'fast'" in md
    assert "| emotionlab default | 1 | 1.00 | 10.0 | – | 100.0 | 8.00× |" in md


@pytest.mark.skipif(not FER_PY.exists(), reason="peer venv benchmarks/.venv-fer not created "
                                               "(python benchmarks/compare_peers.py --setup-only)")
def test_fer_eval_runs_on_crops_and_frames(cp, tmp_path):
    images, labels, _ = make_fer_rows(7)
    sources, _ = cp.frame_sources(images, str(REPO / "examples"))
    frames, counts, boxes = cp.build_frames(sources, (1,), n_frames=1, seed=1)
    npz = tmp_path / "in.npz"
    np.savez(npz, crops=images, labels=labels, frames=frames, frame_faces=counts, frame_boxes=boxes)
    res = cp.run_fer(npz, threads=1, extra=["--repeat", "1"])
    cl = res["classify"]
    probs = np.asarray(cl["probs"])
    assert probs.shape == (7, 7) and np.allclose(probs.sum(1), 1, atol=1e-2)
    assert cl["labels"][0] == "angry" and cl["classifier_input_shape"] == [64, 64]
    assert res["frames"]["1"]["faces_found_per_frame"] == 1.0 and res["frames"]["1"]["ms_per_frame"] > 0
    assert res["frames"]["1"]["faces_matched_per_frame"] == 1.0
    # fer_bench.py: the interface the pipeline's `emotionlab bench --peers` calls
    out = subprocess.run([str(FER_PY), str(REPO / "benchmarks" / "peers" / "fer_bench.py"), str(npz), "--repeat", "1"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    bench = json.loads(out.stdout)
    assert bench["fps"] == pytest.approx(1000.0 / bench["ms_per_frame"])
    assert bench["by_faces"]["1"]["frames"] == 1 and bench["by_faces"]["1"]["faces_matched_per_frame"] == 1.0


def test_fer_bench_rejects_npz_without_frames(tmp_path):
    if not FER_PY.exists():
        pytest.skip("peer venv benchmarks/.venv-fer not created")
    npz = tmp_path / "crops_only.npz"
    np.savez(npz, crops=np.zeros((1, 48, 48), np.uint8))
    out = subprocess.run([str(FER_PY), str(REPO / "benchmarks" / "peers" / "fer_bench.py"), str(npz)],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "no 'frames' array" in out.stderr
