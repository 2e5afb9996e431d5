"""People across frames: ids through misses, occlusions and crossings; per-person summaries in bounded memory."""
from __future__ import annotations

import csv
import json
import math

import cv2
import numpy as np
import pytest

from emotionlab.inference.recognizer import Face
from emotionlab.inference.summary import SummaryBuilder, summarize_timeline
from emotionlab.inference.tracking import FaceTracker

FER7 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _face(x: float, y: float = 50, size: int = 60, happy: float = 0.6) -> dict:
    scores = dict.fromkeys(FER7, (1 - happy) / 6)
    scores["happy"] = happy
    return {"box": (int(x), int(y), size, size), "scores": scores, "label": "happy"}


def test_a_moving_face_missed_for_several_frames_keeps_its_id():
    tr = FaceTracker(max_missed=10, smoothing=0.0)
    ids = []
    for i in range(30):
        if 10 <= i < 17:  # missed 7 frames while it moves 7 x 12 = 84 px, more than its size
            tr.update([])
            continue
        f = _face(20 + 12 * i)
        tr.update([f])
        ids.append(f["face_id"])
    assert len(set(ids)) == 1


def test_two_faces_crossing_keep_their_ids_when_one_hides_the_other():
    tr = FaceTracker(max_missed=10, smoothing=0.0)
    left, right = set(), set()
    for i in range(40):
        a, b = 20 + 10 * i, 420 - 10 * i  # a goes right, b goes left, on the same row
        faces = []
        if abs(a - b) > 40:  # while they overlap, b is in front and a is not seen
            faces.append(fa := _face(a))
        else:
            fa = None
        faces.append(fb := _face(b))
        tr.update(faces[::-1] if i % 2 else faces)  # detection order carries no meaning
        if fa is not None:
            left.add(fa["face_id"])
        right.add(fb["face_id"])
    assert len(left) == 1 and len(right) == 1 and left != right


def test_a_face_gone_longer_than_the_gap_gets_a_new_id_and_a_jump_in_size_is_not_the_same_face():
    tr = FaceTracker(max_missed=3, smoothing=0.0)
    f1 = _face(100)
    tr.update([f1])
    for _ in range(4):
        tr.update([])
    f2 = _face(100)
    tr.update([f2])
    assert f2["face_id"] != f1["face_id"]
    big = _face(95, size=150)  # same place, 2.5x the size: another person stepping in front
    tr.update([big])
    assert big["face_id"] != f2["face_id"]


def test_tracker_refuses_bad_settings():
    for kw in (dict(max_missed=-1), dict(max_missed=1.5), dict(smoothing=1.0), dict(velocity=2.0)):
        with pytest.raises(ValueError):
            FaceTracker(**kw)


# ---------------------------------------------------------------------------------------------- summaries
def _scores(top: str, p: float) -> dict:
    s = dict.fromkeys(FER7, (1 - p) / 6)
    s[top] = p
    return s


def test_summary_shares_dominant_time_on_screen_and_strongest_moments():
    b = SummaryBuilder(FER7, frame_dt=0.1, top_k=2, min_gap_s=1.0)
    for i in range(100):  # person 0: 10 s, happy 70 % of the time; person 1 from 5 s, always sad
        t = i * 0.1
        lab = "happy" if i < 70 else "angry"
        p = 0.95 if i == 20 else 0.9 if i == 21 else 0.6  # 2.0 s is the peak; 2.1 s is the same moment
        p = 0.99 if i == 80 else p  # anger peaks at 8.0 s
        faces = [Face((0, 0, 10, 10), lab, _scores(lab, p), face_id=0)]
        if i >= 50:
            faces.append(Face((50, 0, 10, 10), "sad", _scores("sad", 0.8), face_id=1))
        b.add(t, faces)
    res = b.result()
    assert res["frames"] == 100 and math.isclose(res["duration_s"], 10.0)
    p0, p1 = res["people"]
    assert math.isclose(p0["time_on_screen_s"], 10.0) and math.isclose(p1["time_on_screen_s"], 5.0)
    assert p0["share"]["happy"] == pytest.approx(0.7) and p0["share"]["angry"] == pytest.approx(0.3)
    assert p0["dominant"] == "happy" and p1["dominant"] == "sad" and p1["share"]["sad"] == 1.0
    assert [(m["time"], m["emotion"]) for m in p0["strongest_moments"]] == [(8.0, "angry"), (2.0, "happy")]
    assert p0["peaks"]["happy"] == {"time": 2.0, "score": 0.95}
    assert p1["first_seen_s"] == 5.0 and p1["last_seen_s"] == pytest.approx(9.9)


def test_summary_memory_is_bounded_whatever_the_length(tmp_path):
    b = SummaryBuilder(FER7, frame_dt=0.04, max_points=50)
    for i in range(20_000):
        b.add(i * 0.04, [{"face_id": 3, "box": (0, 0, 9, 9), "label": "neutral",
                          "scores": _scores("neutral", 0.5 + 0.4 * math.sin(i / 500))}])
    person = b.people[3]
    assert len(person.n) <= 50 and sum(person.n) == 20_000  # every frame counted, few points kept
    t, probs = person.curve()
    assert np.all(np.diff(t) > 0) and probs.shape == (len(t), 7) and np.allclose(probs.sum(1), 1)
    js = b.write_json(tmp_path / "s.json", {"source": "x"})
    d = json.loads(js.read_text())
    assert d["source"] == "x" and d["people"][0]["frames"] == 20_000
    assert not list(tmp_path.glob(".*.tmp"))
    for png in (b.plot_curves(tmp_path / "c.png"), b.plot_summary(tmp_path / "s.png")):
        assert cv2.imread(str(png)) is not None


def test_a_crowd_of_passers_by_is_capped_and_counted_not_kept_forever():
    b = SummaryBuilder(FER7, frame_dt=0.1, max_people=3)
    for i in range(200):  # face 0 stays the whole time; a new passer-by every 2 frames, each seen twice
        faces = [Face((0, 0, 10, 10), "happy", _scores("happy", 0.7), face_id=0),
                 Face((50, 0, 10, 10), "sad", _scores("sad", 0.7), face_id=1000 + i // 2)]
        b.add(i * 0.1, faces)
    res = b.result()
    assert len(b.people) <= 3 and 0 in b.people  # the long-lived person is never the one forgotten
    assert res["people_evicted"] == 100 - 2 and res["max_people"] == 3
    assert res["evicted_time_on_screen_s"] == pytest.approx(98 * 0.2)
    kept = {p["face_id"]: p for p in res["people"]}
    assert kept[0]["time_on_screen_s"] == pytest.approx(20.0) and 1099 in kept
    with pytest.raises(ValueError, match="max_people"):
        SummaryBuilder(FER7, max_people=0)


def test_video_summary_from_the_api_and_from_its_timeline(tmp_path):
    from test_streams import StubRecognizer

    from emotionlab.inference.sources import LiveOptions
    from emotionlab.inference.video import process_video

    vid = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(30):
        vw.write(np.full((48, 64, 3), 200 if i < 20 else 30, np.uint8))  # bright (happy) 2 s, then dark (sad)
    vw.release()
    res = process_video(StubRecognizer(), vid, tmp_path / "out", smoothing=0.0, summary=True)
    assert res.error is None and res.frames == 30
    s = json.loads((tmp_path / "out" / "clip.summary.json").read_text())
    (p,) = s["people"]
    assert p["time_on_screen_s"] == pytest.approx(3.0) and p["dominant"] == "happy"
    assert p["share"]["happy"] == pytest.approx(2 / 3, abs=0.01) and p["share"]["sad"] == pytest.approx(1 / 3, abs=0.01)
    again = summarize_timeline(res.outputs["timeline"], frame_dt=0.1).result()
    assert again["people"][0]["share"] == p["share"]
    with open(res.outputs["timeline"]) as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 30
    # --duration on a file is video time: the first second, and no "truncated" error
    short = process_video(StubRecognizer(), vid, tmp_path / "o2", live=LiveOptions(duration_s=1.0))
    assert short.frames == 10 and short.error is None


def test_summarize_timeline_refuses_a_csv_that_is_not_a_timeline(tmp_path):
    from emotionlab.data.errors import DataError

    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not an emotionlab timeline"):
        summarize_timeline(bad)
