"""Apparent gender: UTKFace reader, MD5-grouped stratified split, fairness report, recognizer / predict
attributes, evaluate JSON and explain on a gender model. Tiny synthetic UTKFace folders made here; random or
one-epoch models, so no test depends on the shipped weights' accuracy.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.errors import DataError
from emotionlab.data.split import group_stratified_split
from emotionlab.data.utkface import (
    AGE_BANDS,
    RACES,
    AmbiguousName,
    age_band,
    dedupe,
    load_utkface,
    parse_name,
    scan_utkface,
    utkface_splits,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.jpg"
runner = CliRunner()
BAND_AGES = (5, 15, 30, 50, 70)


def _chip(gender: int, seed: int) -> bytes:
    """An 80x80 JPEG whose gender is learnable: a bright band at the top (0) or bottom (1), plus noise."""
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 120, size=(80, 80, 3)).astype(np.uint8)
    img[5:25] = 230 if gender == 0 else img[5:25]
    img[55:75] = 230 if gender == 1 else img[55:75]
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def make_utkface(root: Path, per_stratum: int = 2, csv_file: bool = True) -> dict:
    """A UTKFace-like folder: every gender x race x age band, 3 ambiguous names, one odd-but-valid name,
    a duplicate group with agreeing labels and one whose copies disagree on gender."""
    d = root / "UTKFace"
    d.mkdir(parents=True)
    rows, k = [], 0
    for g in (0, 1):
        for r in range(5):
            for age in BAND_AGES:
                for j in range(per_stratum):
                    name = f"{age + j}_{g}_{r}_2017011{k:010d}.jpg.chip.jpg"
                    data = _chip(g, k)
                    (d / name).write_bytes(data)
                    rows.append((name, age + j, g, r))
                    k += 1
    dup_src = rows[0][0]
    same = "31_0_1_20170109999999991.jpg.chip.jpg"  # same bytes, same gender, other age / race
    (d / same).write_bytes((d / dup_src).read_bytes())
    rows.append((same, 31, 0, 1))
    conflict_a, conflict_b = "25_0_2_20170109999999992.jpg.chip.jpg", "26_1_2_20170109999999993.jpg.chip.jpg"
    data = _chip(0, 999)
    (d / conflict_a).write_bytes(data)
    (d / conflict_b).write_bytes(data)
    rows += [(conflict_a, 25, 0, 2), (conflict_b, 26, 1, 2)]
    odd = "24_0_1_20170116220224657 .jpg.chip.jpg"  # a space before .jpg: odd but unambiguous
    (d / odd).write_bytes(_chip(0, 1000))
    rows.append((odd, 24, 0, 1))
    ambiguous = ["39_1_20170116174525125.jpg.chip.jpg", "61_1_20170109142408075.jpg.chip.jpg",
                 "61_1_20170109150557335.jpg.chip.jpg"]
    for name in ambiguous:
        (d / name).write_bytes(_chip(1, 2000 + len(name)))
    if csv_file:
        with open(root / "utkface_labels.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "age", "gender", "race", "flag", "md5", "bytes", "dup_count"])
            for name, a, g, r in rows:
                w.writerow([name, a, g, r, "ok", "x", 0, 1])
            for name in ambiguous:
                w.writerow([name, name.split("_")[0], "", "", "missing_field_gender_ambiguous", "y", 0, 1])
    return {"n": len(rows), "ambiguous": ambiguous, "dup": (dup_src, same), "conflict": (conflict_a, conflict_b),
            "odd": odd}


@pytest.fixture(scope="module")
def utk(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("utk") / "utkface"
    return root, make_utkface(root)


# ------------------------------------------------------------------------------------------------ reader
def test_parse_name_fields_odd_ambiguous_and_bad():
    assert parse_name("100_1_0_20170112213001988.jpg.chip.jpg") == (100, 1, 0)
    assert parse_name("24_0_1_20170116220224657 .jpg.chip.jpg") == (24, 0, 1)
    assert parse_name("55_0_0_20170116232725357jpg.chip.jpg") == (55, 0, 0)
    with pytest.raises(AmbiguousName, match="3 fields"):
        parse_name("39_1_20170116174525125.jpg.chip.jpg")
    for bad, msg in [("x_0_0_1.jpg.chip.jpg", "age"), ("30_2_0_1.jpg.chip.jpg", "gender"),
                     ("30_0_7_1.jpg.chip.jpg", "race"), ("30_0.jpg", "fields")]:
        with pytest.raises(ValueError, match=msg):
            parse_name(bad)
    assert [age_band(a) for a in (0, 9, 10, 19, 20, 39, 40, 59, 60, 116)] == [
        "0-9", "0-9", "10-19", "10-19", "20-39", "20-39", "40-59", "40-59", "60+", "60+"]


def test_scan_reports_the_three_ambiguous_names_never_silently(utk):
    root, info = utk
    idx = scan_utkface(root)
    assert len(idx) == info["n"]
    assert sorted(d["file"] for d in idx.dropped) == sorted(info["ambiguous"])
    assert all("ambiguous" in d["reason"] for d in idx.dropped)
    assert info["odd"] in idx.files
    assert idx.csv_check["duplicate_groups_agree"] is False  # the CSV here has placeholder md5s


def test_bad_input_is_a_clear_data_error(tmp_path, utk):
    root, _ = utk
    with pytest.raises(DataError, match="not found"):
        scan_utkface(tmp_path / "missing")
    bad = tmp_path / "bad"
    make_utkface(bad, per_stratum=1, csv_file=False)
    (bad / "UTKFace" / "abc_0_0_20170101.jpg.chip.jpg").write_bytes(_chip(0, 1))
    with pytest.raises(DataError, match=r"abc_0_0_20170101\.jpg\.chip\.jpg.*age field"):
        scan_utkface(bad)
    idx = scan_utkface(bad, skip_bad=True)
    assert any(d["file"].startswith("abc_") and "bad name" in d["reason"] for d in idx.dropped)
    (bad / "UTKFace" / "abc_0_0_20170101.jpg.chip.jpg").unlink()
    (bad / "UTKFace" / "30_0_0_20170101.jpg.chip.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        scan_utkface(bad)
    (bad / "UTKFace" / "30_0_0_20170101.jpg.chip.jpg").unlink()
    # the labels CSV must agree with the names
    src = (root / "utkface_labels.csv").read_text().splitlines()
    name = src[1].split(",")[0]
    src[1] = src[1].replace(f"{name},{src[1].split(',')[1]},", f"{name},99,", 1)
    (bad / "utkface_labels.csv").write_text("\n".join(src) + "\n")
    (bad / "UTKFace" / name).write_bytes(_chip(0, 5))
    with pytest.raises(DataError, match=r"utkface_labels\.csv:2: .*age is 99"):
        scan_utkface(bad)


def test_dedupe_excludes_gender_conflicts_and_keeps_one_copy(utk):
    root, info = utk
    idx = scan_utkface(root)
    keep, rep = dedupe(idx)
    kept = {idx.files[i] for i in keep}
    assert rep["duplicate_groups"] == 2 and rep["gender_conflict_groups"] == 1
    assert rep["gender_conflict_files"] == 2 and not set(info["conflict"]) & kept
    assert len(set(info["dup"]) & kept) == 1
    assert len({idx.md5[i] for i in keep}) == len(keep) == rep["kept"]
    assert sorted(rep["conflicts"][0]["files"]) == sorted(info["conflict"])


# ------------------------------------------------------------------------------------------------- split
def test_group_split_never_straddles_and_is_seeded():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 300, size=1000).astype(str)  # many rows share a group
    strata = np.asarray([f"{int(g) % 2}|{int(g) % 5}" for g in groups])
    tr, va, te = group_stratified_split(groups, strata, 0.1, 0.2, seed=3)
    assert len(tr) + len(va) + len(te) == 1000
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)
    g = [set(groups[i]) for i in (tr, va, te)]
    assert not g[0] & g[1] and not g[0] & g[2] and not g[1] & g[2]
    n_groups = len(set(groups))
    assert abs(len(g[2]) - 0.2 * n_groups) <= 1 and abs(len(g[1]) - 0.1 * n_groups) <= 1
    again = group_stratified_split(groups, strata, 0.1, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    other = group_stratified_split(groups, strata, 0.1, 0.2, seed=4)
    assert not np.array_equal(te, other[2])


def test_group_split_is_stratified():
    groups = np.arange(2000).astype(str)
    strata = np.asarray(["a"] * 1000 + ["b"] * 600 + ["c"] * 300 + ["d"] * 100)
    _, _, te = group_stratified_split(groups, strata, 0.1, 0.2, seed=0)
    share = {k: (strata[te] == k).mean() for k in "abcd"}
    assert share == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}, abs=0.01)


def test_utkface_split_md5_never_straddles_and_covers_every_stratum(utk):
    root, info = utk
    idx = scan_utkface(root)
    parts, rep = utkface_splits(idx, seed=0, val_frac=0.1, test_frac=0.2)
    md5 = {k: set(idx.md5[v]) for k, v in parts.items()}
    assert not md5["train"] & md5["test"] and not md5["train"] & md5["val"] and not md5["val"] & md5["test"]
    used = np.concatenate(list(parts.values()))
    assert len(used) == len(set(used)) == rep["kept"]
    files = {idx.files[i] for i in used}
    assert not set(info["conflict"]) & files
    te = parts["test"]
    # 20% of 100 groups = 20: both genders, all races and all age bands appear in the test part
    assert set(idx.gender[te]) == {0, 1} and set(idx.race[te]) == set(range(5))
    assert {age_band(int(a)) for a in idx.age[te]} == {b for b, _, _ in AGE_BANDS}
    assert rep["split"]["n_test"] == len(te) and len(rep["split"]["test_md5_sha1"]) == 40


def test_load_utkface_chip_mode_and_face_dataset(utk):
    root, _ = utk
    u = load_utkface(root, size=32, crop="chip")
    assert u.images.shape[1:] == (32, 32) and u.images.dtype == np.uint8
    assert set(u.usage) == {"train", "val", "test"}
    ds = u.face_dataset("train")
    assert list(ds.label_set.labels) == ["male", "female"] and len(ds) == int((u.usage == "train").sum())
    assert ds.extra["card"]["split"]["seed"] == 0 and "non-commercial" in ds.extra["card"]["license"]
    with pytest.raises(DataError, match="no split"):
        u.mask("PublicTestX")


# ---------------------------------------------------------------------------------------------- fairness
def test_group_report_numbers():
    from emotionlab.training.fairness import group_report, wilson

    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    p = np.array([0, 1, 0, 0, 0, 1, 1, 1])
    age = np.array([5, 15, 25, 45, 65, 30, 30, 30])
    race = np.array([0, 0, 1, 1, 2, 2, 3, 4])
    r = group_report(y, p, age, race)
    assert r["accuracy"] == 0.75 and r["by_race"]["white"]["accuracy"] == 1.0
    assert r["by_race"]["black"]["accuracy"] == 0.5 and r["by_race"]["indian"]["accuracy"] == 0.0
    assert r["gap_race"] == 1.0 and r["gaps"]["race"]["worst"] == "indian"
    assert r["by_age"]["0-9"]["n"] == 1 and r["by_age"]["20-39"]["accuracy"] == pytest.approx(3 / 4)
    assert r["adults"]["n"] == 6 and r["adults_accuracy"] == pytest.approx(4 / 6)
    assert r["children"]["accuracy"] == 1.0
    assert set(r["by_race"]) == set(RACES) and set(r["by_age"]) == {b for b, _, _ in AGE_BANDS}
    lo, hi = wilson(9, 10)
    assert 0.59 < lo < 0.6 and 0.98 < hi < 0.99


# ---------------------------------------------------------------------------- training, evaluate, explain
@pytest.fixture(scope="module")
def gender_run(utk, tmp_path_factory) -> Path:
    """One epoch of emonet_t on the synthetic UTKFace folder, through the real training path."""
    from emotionlab.training.config import TrainConfig
    from emotionlab.training.engine import fit

    root, _ = utk
    out = tmp_path_factory.mktemp("gender_run")
    cfg = TrainConfig(model="emonet_t", data=str(root), label_set="gender2", epochs=1, batch_size=16, threads=1,
                      channels_last=False)
    fit(cfg, out, command="test")
    return out


def test_training_card_records_split_crop_and_license(gender_run):
    card = json.loads((gender_run / "best.json").read_text())
    assert card["labels"] == ["male", "female"] and card["num_classes"] == 2
    tr = card["training"]
    assert tr["dataset"] == "UTKFace" and "non-commercial" in tr["license"]
    assert tr["crop"]["mode"] == "detect" and tr["split"]["seed"] == 0 and tr["split"]["test_md5_sha1"]
    assert "val split" in tr["selection"]


def test_evaluate_json_on_utkface(utk, gender_run, tmp_path):
    root, _ = utk
    out = tmp_path / "gender_eval.json"
    r = runner.invoke(app, ["evaluate", "--model", str(gender_run), "--data", str(root), "--json", str(out),
                            "--threads", "1"])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    for key in ("accuracy", "by_race", "by_age", "gap_race", "gap_age", "gap", "adults_accuracy", "children",
                "by_gender", "held_out", "ece", "ece_uncalibrated", "temperature"):
        assert key in res, key
    assert res["crop"]["mode"] == "detect" and "align" not in res["crop"]
    # --align: the same split, cropped turned with the head's roll (the predict --align code path)
    r = runner.invoke(app, ["evaluate", "--model", str(gender_run), "--data", str(root), "--json", str(out),
                            "--threads", "1", "--align"])
    assert r.exit_code == 0, r.output
    aligned = json.loads(out.read_text())
    assert aligned["crop"]["align"] is True and aligned["n"] == res["n"] and aligned["held_out"] is True
    assert set(res["by_age"]) == {"0-9", "10-19", "20-39", "40-59", "60+"} and set(res["by_race"]) == set(RACES)
    assert res["held_out"] is True and res["split"] == "test"
    assert res["n"] == sum(g["n"] for g in res["by_race"].values())
    accs = [g["accuracy"] for g in res["by_race"].values() if g["n"]]
    assert res["gap_race"] == pytest.approx(max(accs) - min(accs))
    # an emotion model is refused on UTKFace with a clear message
    from test_inference import make_run_dir

    emo = make_run_dir(tmp_path / "emo")
    r = runner.invoke(app, ["evaluate", "--model", str(emo), "--data", str(root)])
    assert r.exit_code != 0 and "gender" in str(r.exception) + r.output


def test_explain_methods_on_the_gender_model(gender_run, tmp_path):
    from emotionlab.explain import METHODS

    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), cv2.cvtColor(cv2.imdecode(np.frombuffer(_chip(1, 7), np.uint8), 1), cv2.COLOR_BGR2GRAY))
    out = tmp_path / "ex"
    r = runner.invoke(app, ["explain", str(crop), "--model", str(gender_run), "--method", "all", "--target", "female",
                            "--out", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "explanations.json").read_text())
    assert {x["method"] for x in rows} == set(METHODS)
    assert all(x["target"] == "female" and set(x["scores"]) == {"male", "female"} for x in rows)
    assert all(cv2.imread(x["file"]) is not None for x in rows)


def test_shipped_gender_model_explains_if_present(tmp_path):
    from emotionlab.explain import explain
    from emotionlab.models.hub import load_model, resolve

    try:
        resolve("gender")
    except FileNotFoundError:
        pytest.skip("no shipped gender model")
    lm = load_model("gender")
    assert lm.labels == ["male", "female"] and "non-commercial" in json.dumps(lm.card)
    x = torch.randn(1, lm.preprocess.size, lm.preprocess.size)
    for method in ("saliency", "guided-backprop", "gradcam"):
        hm, _, probs = explain(lm.model, x, method, target=1)
        assert hm.shape == (lm.preprocess.size, lm.preprocess.size) and np.isfinite(hm).all()
        assert len(probs) == 2


# ----------------------------------------------------------------------------- recognizer and predict CLI
@pytest.fixture(scope="module")
def emotion_run(tmp_path_factory) -> Path:
    from test_inference import make_run_dir

    return make_run_dir(tmp_path_factory.mktemp("emo") / "random_t")


def test_recognizer_gender_attribute_off_by_default(emotion_run, gender_run):
    from emotionlab.inference import FaceEmotionRecognizer
    from emotionlab.inference.recognizer import parse_attributes

    plain = FaceEmotionRecognizer(str(emotion_run), backend="torch")
    both = FaceEmotionRecognizer(str(emotion_run), backend="torch", attributes=("emotion", "gender"),
                                 gender_model=str(gender_run))
    f0, f1 = plain.predict(ASTRONAUT)[0], both.predict(ASTRONAUT)[0]
    assert f0.gender is None and "gender" not in f0.to_dict()
    assert f0.to_dict() == {k: v for k, v in f1.to_dict().items() if k != "gender"}  # emotion unchanged
    g = f1.to_dict()["gender"]
    assert set(g) == {"label", "scores"} and list(g["scores"]) == ["male", "female"]
    assert g["label"] == max(g["scores"], key=g["scores"].get) and sum(g["scores"].values()) == pytest.approx(1)
    assert "gender model" in both.describe()
    assert parse_attributes("emotion, gender") == ("emotion", "gender")
    with pytest.raises(ValueError, match="unknown attribute"):
        parse_attributes("emotion,age")
    with pytest.raises(ValueError, match="must include 'emotion'"):
        FaceEmotionRecognizer(str(emotion_run), backend="torch", attributes=("gender",))


def test_recognizer_gender_onnx_matches_torch(emotion_run, gender_run):
    from emotionlab.inference import FaceEmotionRecognizer

    kw = {"attributes": ("emotion", "gender"), "gender_model": str(gender_run)}
    a = FaceEmotionRecognizer(str(emotion_run), backend="torch", **kw).predict(ASTRONAUT)[0].gender
    rec = FaceEmotionRecognizer(str(emotion_run), backend="onnx", **kw)
    assert rec.gender.backend == "onnxruntime"
    b = rec.predict(ASTRONAUT)[0].gender
    assert a["label"] == b["label"]
    assert all(abs(a["scores"][k] - b["scores"][k]) < 1e-4 for k in a["scores"])


def test_predict_cli_attributes(emotion_run, gender_run, tmp_path):
    args = ["predict", str(ASTRONAUT), "--json", "--model", str(emotion_run), "--backend", "torch"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    face = json.loads(r.stdout.splitlines()[0])["faces"][0]
    assert "gender" not in face
    r = runner.invoke(app, args + ["--attributes", "emotion,gender", "--gender-model", str(gender_run),
                                   "--csv", str(tmp_path / "f.csv")])
    assert r.exit_code == 0, r.output
    face_g = json.loads(r.stdout.splitlines()[0])["faces"][0]
    assert face_g["gender"]["label"] in ("male", "female") and set(face_g["gender"]["scores"]) == {"male", "female"}
    assert {k: v for k, v in face_g.items() if k != "gender"} == face
    with open(tmp_path / "f.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["gender"] == face_g["gender"]["label"] and "p_gender_female" in rows[0]
    r = runner.invoke(app, args + ["--attributes", "emotion,age"])
    assert r.exit_code != 0 and "unknown attribute" in r.output
