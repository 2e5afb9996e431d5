"""`emotionlab predict / bench / webcam` on the sample photos with a random model: schemas, bad files, outputs."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest
from test_inference import EXAMPLES, FER7, _two_face_frames, _write_video, make_run_dir
from typer.testing import CliRunner

from emotionlab.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("cli") / "random_t")


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_predict_json_schema_bad_files_counted_and_batch_continues(model_dir, tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLES / "astronaut.jpg", d / "a_good.jpg")
    shutil.copy(EXAMPLES / "group_collage.jpg", d / "sub" / "group.jpg")
    (d / "b_empty.jpg").write_bytes(b"")
    (d / "c_truncated.jpg").write_bytes((EXAMPLES / "astronaut.jpg").read_bytes()[:200])
    (d / "d_text.png").write_text("this is not an image")
    r = runner.invoke(app, ["predict", str(d), str(tmp_path / "missing.jpg"), "--json", "--model", str(model_dir),
                            "--csv", str(tmp_path / "faces.csv"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    rows = _json_lines(r.stdout)
    assert len(rows) == 6
    by = {Path(x["path"]).name: x for x in rows}
    good = by["a_good.jpg"]
    assert "error" not in good and len(good["faces"]) == 1
    f = good["faces"][0]
    assert {"box", "label", "scores"} <= set(f) and len(f["box"]) == 4 and list(f["scores"]) == FER7
    assert len(by["group.jpg"]["faces"]) == 5
    for name, msg in [("b_empty.jpg", "empty"), ("c_truncated.jpg", "not a readable image"),
                      ("d_text.png", "not a readable image"), ("missing.jpg", "no such file")]:
        assert msg in by[name]["error"], by[name]
    assert "6 input(s): 2 ok, 4 failed; 6 face(s)" in " ".join(r.stderr.split())
    assert "random_emonet_t" in r.stderr  # says which model it uses
    assert (tmp_path / "out" / "a_good.jpg").exists() and (tmp_path / "out" / "sub" / "group.jpg").exists()
    with open(tmp_path / "faces.csv") as fh:
        table = list(csv.DictReader(fh))
    assert sum(1 for t in table if t["label"]) == 6 and sum(1 for t in table if t["error"]) == 4


def test_predict_table_and_annotated_images(model_dir, tmp_path):
    r = runner.invoke(app, ["predict", str(EXAMPLES / "astronaut.jpg"), "--model", str(model_dir),
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "astronaut.jpg" in r.stdout and "178, 81, 94, 94" in r.stdout
    img = cv2.imread(str(tmp_path / "astronaut.jpg"))
    assert img is not None and img.shape == (512, 512, 3)


def test_predict_prints_file_names_with_brackets_as_they_are(model_dir, tmp_path):
    import shutil

    photo = tmp_path / "IMG [min, max].jpg"
    shutil.copy(EXAMPLES / "astronaut.jpg", photo)
    r = runner.invoke(app, ["predict", str(photo), str(tmp_path / "gone [red]x.jpg"), "--model", str(model_dir)])
    assert "IMG [min, max].jpg" in r.stdout and "178, 81, 94, 94" in r.stdout
    assert "gone [red]x.jpg: no such file" in " ".join(r.output.split())  # not 'gone x.jpg' (lines may wrap)


def test_folders_say_which_files_they_leave_out(model_dir, tmp_path):
    import shutil

    (tmp_path / "in" / "sub").mkdir(parents=True)
    shutil.copy(EXAMPLES / "astronaut.jpg", tmp_path / "in" / "sub" / "a.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not a photo")
    (tmp_path / "in" / ".DS_Store").write_bytes(b"\0")  # hidden files are not worth a line
    r = runner.invoke(app, ["predict", str(tmp_path / "in"), "--model", str(model_dir)])
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "1 input(s): 1 ok" in out
    assert "left out 1 file(s) in the folders that are not images or videos by extension" in out
    assert "notes.txt" in out and ".DS_Store" not in out


def test_predict_video(model_dir, tmp_path):
    vid = tmp_path / "clip.mp4"
    _write_video(vid, _two_face_frames(cv2.imread(str(EXAMPLES / "astronaut.jpg")), 6))
    r = runner.invoke(app, ["predict", str(vid), "--json", "--model", str(model_dir), "--out",
                            str(tmp_path / "o"), "--stride", "2", "--smoothing", "0.3"])
    assert r.exit_code == 0, r.output
    (row,) = _json_lines(r.stdout)
    assert row["type"] == "video" and row["frames"] == 3 and len(row["faces"]) == 2
    assert {f["face_id"] for f in row["faces"]} == {0, 1}
    for k in ("video", "timeline", "plot"):
        assert Path(row["outputs"][k]).exists()


def test_predict_video_summary_duration_and_track_gap(model_dir, tmp_path):
    vid = tmp_path / "clip.mp4"
    _write_video(vid, _two_face_frames(cv2.imread(str(EXAMPLES / "astronaut.jpg")), 6))  # 10 fps
    r = runner.invoke(app, ["predict", str(vid), "--json", "--model", str(model_dir), "--out", str(tmp_path / "o"),
                            "--summary", "--duration", "0.4", "--track-gap", "5"])
    assert r.exit_code == 0, r.output
    (row,) = _json_lines(r.stdout)
    assert row["frames"] == 4 and "error" not in row  # 0.0 .. 0.3 s: stopped on purpose, not "truncated"
    s = json.loads(Path(row["outputs"]["summary"]).read_text())
    assert s["source"] == str(vid) and len(s["people"]) == 2
    for p in s["people"]:
        assert p["frames"] == 4 and p["time_on_screen_s"] == pytest.approx(0.4)
        assert abs(sum(p["share"].values()) - 1) < 1e-3 and p["dominant"] in FER7
    assert Path(row["outputs"]["summary_plot"]).stat().st_size > 1000


@pytest.mark.parametrize("args, flag", [(["--duration", "nan"], "--duration"), (["--duration", "0"], "--duration"),
                                        (["--track-gap", "-1"], "--track-gap"),
                                        (["--read-timeout", "0"], "--read-timeout"),
                                        (["--reconnect", "-2"], "--reconnect"), (["--summary"], "--summary")])
def test_stream_and_video_flags_are_checked_before_work(model_dir, tmp_path, args, flag):
    r = runner.invoke(app, ["predict", str(EXAMPLES / "astronaut.jpg"), "--model", str(model_dir), *args])
    assert r.exit_code == 2 and flag in r.stderr and "Traceback" not in r.output
    assert "using" not in r.stderr  # refused before the model was loaded


def test_predict_without_a_model_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["predict", str(EXAMPLES / "astronaut.jpg"), "--model", str(tmp_path / "nope")])
    assert r.exit_code == 2
    assert "no model" in r.stderr and "--model" in r.stderr


def test_bench_reports_fps_and_says_fer_not_measured(model_dir, tmp_path):
    r = runner.invoke(app, ["bench", "--model", str(model_dir), "--frames", "2", "--repeat", "1",
                            "--json", str(tmp_path / "b.json")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "b.json").read_text())
    for k in ("1_face", "5_face"):
        e = rep["e2e"][k]
        assert e["fps"] > 0 and e["detect_only"]["ms"] > 0 and e["faces_pasted_per_frame"] in (1, 5)
    assert rep["e2e"]["1_face"]["faces_found_per_frame"] == 1.0
    assert rep["classify_batch64"]["faces_per_s"] > 0
    assert "fer was not measured" in r.stderr


def test_webcam_without_camera_fails_cleanly(model_dir):
    r = runner.invoke(app, ["webcam", "--camera", "7", "--model", str(model_dir)])
    assert r.exit_code != 0
    assert "camera 7" in (r.stderr + str(r.exception))


def test_predict_tta_flip_runs_and_a_bad_mode_is_named(model_dir):
    r = runner.invoke(app, ["predict", str(EXAMPLES / "astronaut.jpg"), "--json", "--model", str(model_dir),
                            "--tta", "flip"])
    assert r.exit_code == 0, r.output
    (row,) = _json_lines(r.stdout)
    assert len(row["faces"]) == 1 and abs(sum(row["faces"][0]["scores"].values()) - 1) < 1e-4
    assert "tta flip" in r.stderr
    r = runner.invoke(app, ["predict", str(EXAMPLES / "astronaut.jpg"), "--model", str(model_dir), "--tta", "x"])
    assert r.exit_code != 0 and "--tta 'x'" in r.stderr
