"""Face pipeline: BlazeFace port, detectors, recognizer, bad input, video + tracking, ONNX export, drawing.

Everything runs on the sample photos in examples/ and on a random (untrained) emonet_t saved as a run
directory, so no test depends on training; classification labels are therefore not asserted, only shapes,
schemas and agreement between backends.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from emotionlab.data.errors import DataError

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
ASTRONAUT = EXAMPLES / "astronaut.jpg"
ASTRO_BOX = (178, 81, 94, 94)  # mediapipe 0.10.21 short-range: (178, 83, 95, 95)
FER7 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]

torch.set_num_threads(1)


def iou(a, b) -> float:
    from emotionlab.inference.detectors import _iou

    return _iou(a, b)


def make_run_dir(path: Path) -> Path:
    """A random emonet_t saved like a training run (best.safetensors + best.json card)."""
    from emotionlab.data.preprocess import PreprocessConfig
    from emotionlab.models import create_model
    from emotionlab.training.checkpoint import save_weights

    torch.manual_seed(0)
    m = create_model("emonet_t", num_classes=7).eval()
    path.mkdir(parents=True, exist_ok=True)
    save_weights(m, path / "best.safetensors")
    card = {"format": "emotionlab-model/1", "name": "random_emonet_t", "arch": "emonet_t", "arch_kwargs": {},
            "num_classes": 7, "label_set": "fer7", "labels": FER7, "in_size": 48, "in_chans": 1,
            "preprocess": PreprocessConfig().to_dict()}
    (path / "best.json").write_text(json.dumps(card))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("run") / "random_t")


@pytest.fixture(scope="module")
def rec(run_dir, tmp_path_factory):
    from emotionlab.inference import FaceEmotionRecognizer

    with pytest.MonkeyPatch.context() as mp:  # the ONNX export cache goes to the session's temp dir
        mp.setenv("EMOTIONLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield FaceEmotionRecognizer(str(run_dir))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    img = cv2.imread(str(ASTRONAUT))
    assert img is not None
    return img


# ----------------------------------------------------------------------------------------- detection
@pytest.mark.parametrize("name", ["blazeface_short", "blazeface_full", "haar", "auto"])
def test_detector_finds_the_face_and_nothing_in_blank_or_noise(name, astronaut):
    from emotionlab.inference import create_detector

    det = create_detector(name)
    found = det.detect(astronaut)
    assert len(found) == 1
    assert iou(found[0].box, ASTRO_BOX) > 0.5
    blank = np.full((480, 640, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3)).astype(np.uint8)
    assert det.detect(blank) == []
    assert det.detect(noise) == []


def test_blazeface_matches_mediapipe_and_gives_landmarks(astronaut):
    """Boxes recorded from mediapipe 0.10.21 (solutions.face_detection) on the same photos."""
    from emotionlab.inference import create_detector

    mp_boxes = {("blazeface_short", "astronaut.jpg"): (178, 83, 95, 95),
                ("blazeface_full", "astronaut.jpg"): (174, 68, 104, 104),
                ("blazeface_short", "grace_hopper.jpg"): (171, 147, 194, 194),
                ("blazeface_full", "grace_hopper.jpg"): (166, 128, 200, 200)}
    for (name, file), ref in mp_boxes.items():
        d = create_detector(name).detect(cv2.imread(str(EXAMPLES / file)))
        assert len(d) == 1 and iou(d[0].box, ref) > 0.85, (name, file, d)
        assert len(d[0].landmarks) == 6 and 0.5 < d[0].score <= 1.0
        # right eye is left of the left eye in the image, both above the mouth
        (rx, ry), (lx, ly), _, (_, my) = d[0].landmarks[:4]
        assert rx < lx and max(ry, ly) < my


def test_blazeface_torch_and_onnx_backends_agree(astronaut):
    from emotionlab.inference.blazeface import BlazeFace

    for name in ("blazeface_short", "blazeface_full"):
        t, o = BlazeFace(name, backend="torch"), BlazeFace(name, backend="onnx")
        assert o.backend == "onnxruntime"
        x, *_ = t.preprocess(astronaut)
        rt, ct = t._run(x)
        ro, co = o._run(x)
        assert np.abs(rt - ro).max() < 1e-2 and np.abs(ct - co).max() < 1e-3


def test_auto_detector_finds_small_faces_in_a_group_photo():
    from emotionlab.inference import create_detector

    img = cv2.imread(str(EXAMPLES / "group_collage.jpg"))
    assert len(create_detector("blazeface_short").detect(img)) < 5
    assert len(create_detector("auto").detect(img)) == 5


def test_unknown_detector_is_a_clear_error():
    from emotionlab.inference import create_detector

    with pytest.raises(ValueError, match="available: auto"):
        create_detector("retinaface")


# ----------------------------------------------------------------------------------------- recognizer
def test_face_dict_schema(rec):
    faces = rec.predict(str(ASTRONAUT))
    assert len(faces) == 1
    f = faces[0]
    d = json.loads(json.dumps(f.to_dict()))
    assert set(d) == {"box", "label", "scores", "landmarks", "detection_score"}
    assert len(d["box"]) == 4 and all(isinstance(v, int) for v in d["box"])
    assert list(d["scores"]) == FER7 and abs(sum(d["scores"].values()) - 1) < 1e-5
    assert d["label"] == max(d["scores"], key=d["scores"].get)
    assert len(d["landmarks"]) == 6 and 0 < d["detection_score"] <= 1
    assert f.crop.shape == (48, 48) and f.crop.dtype == np.uint8
    assert rec.labels == FER7 and rec.model_name == "random_emonet_t"


def test_no_face_gives_empty_list(rec):
    assert rec.predict(np.full((200, 300), 90, np.uint8)) == []


def test_image_formats_rgba_16bit_gray_and_exif(rec, astronaut, tmp_path):
    from PIL import Image

    ref = rec.predict(astronaut)[0]
    bgra = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = 200
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    cv2.imwrite(str(tmp_path / "16bit.png"), astronaut.astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "gray.png"), cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY))
    # pixels stored rotated 90 degrees counter-clockwise, EXIF orientation 6 says "rotate clockwise to view"
    rgb = Image.fromarray(cv2.cvtColor(cv2.rotate(astronaut, cv2.ROTATE_90_COUNTERCLOCKWISE), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(tmp_path / "exif.jpg", exif=exif.tobytes(), quality=92)
    for name in ("rgba.png", "16bit.png", "gray.png", "exif.jpg"):
        faces = rec.predict(tmp_path / name)
        assert len(faces) == 1, name
        assert iou(faces[0].box, ref.box) > 0.7, (name, faces[0].box, ref.box)
    # the same kinds of arrays, passed directly
    for arr in (bgra, astronaut.astype(np.uint16) * 257, cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)):
        assert len(rec.predict(arr)) == 1


def test_predict_batch_classifies_all_faces_in_one_call(rec, monkeypatch):
    calls = []
    orig = rec.classify

    def spy(x):
        calls.append(len(x))
        return orig(x)

    monkeypatch.setattr(rec, "classify", spy)
    out = rec.predict_batch([EXAMPLES / "astronaut.jpg", EXAMPLES / "group_collage.jpg"])
    assert [len(f) for f in out] == [1, 5]
    assert calls == [6]


def test_bad_files_raise_clear_data_errors(rec, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="empty"):
        rec.predict(tmp_path / "empty.jpg")
    with pytest.raises(DataError, match="not a readable image"):
        rec.predict(tmp_path / "text.png")


def test_onnx_and_torch_backends_agree(rec, run_dir):
    from emotionlab.inference import FaceEmotionRecognizer

    assert rec.backend == "onnxruntime"
    rt = FaceEmotionRecognizer(str(run_dir), backend="torch", detector="haar")
    x = np.random.default_rng(1).standard_normal((5, 1, 48, 48)).astype(np.float32)
    assert np.abs(rec.classify(x) - rt.classify(x)).max() < 1e-5


def test_export_onnx_dynamic_batch_and_card(run_dir, tmp_path):
    import onnx
    import onnxruntime as ort

    from emotionlab.models.onnx import export_onnx

    path = export_onnx(str(run_dir), tmp_path / "m.onnx")
    assert path.exists() and path.with_suffix(".json").exists()
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["labels"] == FER7 and card["onnx"]["max_abs_diff_vs_torch"] < 1e-4
    m = onnx.load(str(path))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7):
        assert sess.run(None, {"input": np.zeros((n, 1, 48, 48), np.float32)})[0].shape == (n, 7)


# ----------------------------------------------------------------------------------------- video + tracking
def _write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()


def _two_face_frames(astronaut: np.ndarray, n: int = 8) -> list[np.ndarray]:
    face = cv2.resize(astronaut[20:240, 120:340], (150, 150))
    frames = []
    for i in range(n):
        f = np.full((240, 480, 3), 150, np.uint8)
        f[40 + i:190 + i, 10 + 3 * i:160 + 3 * i] = face
        f[50:200, 300 - 2 * i:450 - 2 * i] = cv2.flip(face, 1)
        frames.append(f)
    return frames


def test_video_gives_annotated_mp4_timeline_and_stable_ids(rec, astronaut, tmp_path):
    import csv

    from emotionlab.inference.video import process_video

    vid = tmp_path / "clip.mp4"
    _write_video(vid, _two_face_frames(astronaut))
    res = process_video(rec, vid, tmp_path / "out", stride=1, smoothing=0.5)
    assert res.error is None and res.frames == 8
    cap = cv2.VideoCapture(res.outputs["video"])
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()
    with open(res.outputs["timeline"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16
    ids_left = {r["face_id"] for r in rows if int(r["x"]) < 240}
    ids_right = {r["face_id"] for r in rows if int(r["x"]) >= 240}
    assert len(ids_left) == 1 and len(ids_right) == 1 and ids_left != ids_right
    assert {"frame", "time", "face_id", "x", "y", "w", "h", "label", "p_happy"} <= set(rows[0])
    assert Path(res.outputs["plot"]).stat().st_size > 1000
    # stride: every other frame only
    res2 = process_video(rec, vid, None, stride=2)
    assert res2.frames == 4


def test_corrupt_and_truncated_videos(rec, astronaut, tmp_path):
    from emotionlab.inference.video import process_video

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    with pytest.raises(DataError, match="not a readable video"):
        process_video(rec, bad, tmp_path / "o")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        process_video(rec, empty, tmp_path / "o")


def test_tracker_keeps_ids_when_order_changes_and_smooths():
    from emotionlab.inference import Face
    from emotionlab.inference.tracking import FaceTracker

    def face(x, happy):
        return Face(box=(x, 10, 50, 50), label="happy", scores={"happy": happy, "sad": 1 - happy})

    tr = FaceTracker(smoothing=0.5)
    a, b = face(0, 0.9), face(200, 0.2)
    tr.update([a, b])
    b2, a2 = face(205, 0.2), face(4, 0.1)  # swapped order, moved a little; a's raw score drops
    tr.update([b2, a2])
    assert (a2.face_id, b2.face_id) == (a.face_id, b.face_id)
    assert a2.scores["happy"] == pytest.approx(0.5)  # 0.5 * 0.9 + 0.5 * 0.1
    assert a2.label == "happy" or a2.label == "sad"
    c = face(400, 0.5)
    tr.update([c])
    assert c.face_id not in (a.face_id, b.face_id)
    with pytest.raises(ValueError):
        FaceTracker(smoothing=1.0)


# ----------------------------------------------------------------------------------------- drawing
def test_draw_faces_and_debug_inset(rec, astronaut):
    from emotionlab.inference.draw import draw_faces

    faces = rec.predict(astronaut)
    plain = draw_faces(astronaut, faces)
    dbg = draw_faces(astronaut, faces, debug=True)
    assert plain.shape == astronaut.shape and not np.array_equal(plain, astronaut)
    assert not np.array_equal(dbg, plain)  # the inset is there
    x, y, w, _ = faces[0].box
    assert not np.array_equal(plain[y, x:x + w], astronaut[y, x:x + w])  # the box's top edge is drawn
    assert np.array_equal(astronaut, cv2.imread(str(ASTRONAUT)))  # input untouched


def test_custom_label_colours_are_the_same_in_every_process():
    import os
    import subprocess
    import sys

    code = "from emotionlab.inference.draw import color_for; print(color_for('bored'), color_for('contempt'))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1  # str hash is salted per process; the colour of a custom label must not be


def test_truncated_video_writes_what_it_decoded(rec, astronaut, tmp_path):
    from emotionlab.inference.video import process_video

    full = tmp_path / "full.avi"
    vw = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for i in range(10):
        vw.write(np.roll(astronaut, 3 * i, axis=1))
    vw.release()
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.55)])
    res = process_video(rec, cut, tmp_path / "out")
    assert 0 < res.frames < 10
    assert "stopped at frame" in res.error and "decoded part was written" in res.error
    assert Path(res.outputs["video"]).exists() and Path(res.outputs["timeline"]).exists()


def test_huge_image_is_downscaled_for_detection(rec, astronaut):
    big = cv2.resize(astronaut, (4096, 4096), interpolation=cv2.INTER_LINEAR)
    faces = rec.predict(big)
    assert len(faces) == 1
    assert iou(faces[0].box, tuple(v * 8 for v in ASTRO_BOX)) > 0.7  # boxes come back in original pixels


@pytest.mark.slow
def test_detector_recall_on_pasted_utkface_chips(shared_data):
    """A small version of benchmarks/bench_pipeline.py: real faces at known places, 10 frames + 10 empty."""
    import importlib.util

    from emotionlab.inference import create_detector

    spec = importlib.util.spec_from_file_location("bench_pipeline", REPO / "benchmarks" / "bench_pipeline.py")
    bp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)
    chips = sorted((shared_data / "utkface" / "UTKFace").glob("*.jpg"))[:500]
    if not chips:
        pytest.skip("UTKFace chips not found")
    frames, gts = bp.make_frames(chips, 10, seed=1)
    det = create_detector("auto")
    r = bp.score([[(*d.box, d.score) for d in det.detect(f)] for f in frames], gts, 10)
    assert r["recall_140-240px"] >= 0.8 and r["fp_per_empty_frame"] <= 0.3, r


def test_video_timeline_has_gender_columns_only_when_asked(run_dir, astronaut, tmp_path):
    import csv

    from emotionlab.inference import FaceEmotionRecognizer
    from emotionlab.inference.video import process_video, write_timeline
    from emotionlab.models.hub import resolve

    try:
        resolve("gender")
    except FileNotFoundError:
        pytest.skip("shipped gender model absent")
    vid = tmp_path / "clip.mp4"
    _write_video(vid, _two_face_frames(astronaut, n=3))
    rec_g = FaceEmotionRecognizer(str(run_dir), attributes=("emotion", "gender"), backend="torch")
    res = process_video(rec_g, vid, tmp_path / "out", smoothing=0.0)
    with open(res.outputs["timeline"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and {"gender", "p_gender_male", "p_gender_female"} <= set(rows[0])
    for r in rows:
        p = {k: float(r[f"p_gender_{k}"]) for k in ("male", "female")}
        assert r["gender"] == max(p, key=p.get) and abs(sum(p.values()) - 1) < 1e-3
    plain = write_timeline([{"frame": 0, "label": "happy"}], tmp_path / "t.csv", ["happy"])
    assert "gender" not in plain.read_text().splitlines()[0]


def test_detector_none_reads_a_crop_exactly_as_the_dataset_path():
    import cv2

    from emotionlab.data.preprocess import prepare_crops
    from emotionlab.inference import FaceEmotionRecognizer

    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    rec = FaceEmotionRecognizer("fast", detector="none", backend="torch")
    # a 96x96 upscale of the crop: centre square = whole image, no expansion, resized back to 48
    big = cv2.cvtColor(cv2.resize(crop, (96, 96), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    faces = rec.predict(big)
    assert len(faces) == 1 and faces[0].box == (0, 0, 96, 96)
    expect = rec.classify(prepare_crops(crop[None], rec.pre))[0]
    got = np.array([faces[0].scores[k] for k in rec.labels])
    np.testing.assert_allclose(got, expect, atol=1e-5)
    # a wide image: the centred square is the face
    wide = np.zeros((48, 80, 3), np.uint8)
    wide[:, 16:64] = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    f = rec.predict(wide)
    assert len(f) == 1 and f[0].box == (16, 0, 48, 48)
    np.testing.assert_allclose(np.array([f[0].scores[k] for k in rec.labels]), expect, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_recognizer_tta_averages_the_views_evaluate_scores(run_dir, backend):
    from emotionlab.data.preprocess import prepare_crops
    from emotionlab.inference import FaceEmotionRecognizer
    from emotionlab.models.hub import load_model
    from emotionlab.training.engine import predict_proba

    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (3, 48, 48)).astype(np.uint8)
    plain = FaceEmotionRecognizer(str(run_dir), detector="none", backend=backend)
    flip = FaceEmotionRecognizer(str(run_dir), detector="none", backend=backend, tta="flip")
    x = prepare_crops(crops, plain.pre)
    want = (plain.classify(x) + plain.classify(np.ascontiguousarray(x[..., ::-1]))) / 2
    # an untrained model: scores differ from uniform by ~1e-4, so the tolerances are far below that
    np.testing.assert_allclose(flip.classify(x), want, rtol=0, atol=1e-6)
    assert np.abs(flip.classify(x) - plain.classify(x)).max() > 5e-6  # the mirror view did count
    lm = load_model(str(run_dir))
    ten = FaceEmotionRecognizer(str(run_dir), detector="none", backend=backend, tta="ten")
    got, ref = ten.classify(x), predict_proba(lm.model, crops, lm.preprocess, tta="ten")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert np.abs(got - flip.classify(x)).max() > 5e-6  # the shifted views did count
    assert "tta ten" in ten.describe()
    with pytest.raises(ValueError, match="unknown tta"):
        FaceEmotionRecognizer(str(run_dir), detector="none", tta="mirror")
