"""`emotionlab data ...` commands through Typer's CliRunner, plus the dedup / stats / frames building blocks."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_fer_rows
from emotionlab.cli import app
from emotionlab.data.fer2013 import load_fer2013, write_fer_csv


def run(*args: str):
    # a wide console keeps Rich from wrapping the messages the tests look for
    return CliRunner().invoke(app, ["data", *map(str, args)], env={"COLUMNS": "1000"})


def _smooth_faces(n: int, seed: int) -> np.ndarray:
    """Distinct smooth images (blurred noise): their perceptual hashes are far apart."""
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, 48, 48)).astype(np.uint8)
    return np.stack([cv2.GaussianBlur(im, (0, 0), 3) for im in imgs])


@pytest.fixture
def dup_csv(tmp_path) -> Path:
    """24 distinct faces + row 24 = copy of row 0 in PrivateTest (leak), row 25 = copy of row 1 with another
    label (conflict), row 26 = row 2 with faint noise (near duplicate only)."""
    imgs = _smooth_faces(24, 7)
    labels = np.arange(24) % 7
    usage = np.array(["Training"] * 20 + ["PublicTest"] * 2 + ["PrivateTest"] * 2)
    noisy = imgs[2].astype(int)
    noisy[::7, ::5] += 2
    imgs = np.concatenate([imgs, imgs[[0, 1]], np.clip(noisy, 0, 255).astype(np.uint8)[None]])
    labels = np.concatenate([labels, [labels[0], (labels[1] + 1) % 7, labels[2]]])
    usage = np.concatenate([usage, ["PrivateTest", "Training", "Training"]])
    p = tmp_path / "dup.csv"
    write_fer_csv(p, imgs, labels, usage)
    return p


# ---------------------------------------------------------------- stats


def test_stats_json_counts_mean_std_and_plot(tiny_fer_csv, tmp_path):
    plot = tmp_path / "cb.png"
    res = run("stats", tiny_fer_csv, "--json", "--plot", plot)
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    images, labels, usage = make_fer_rows(70)
    assert {k: v["n"] for k, v in st["splits"].items()} == {"Training": 24, "PublicTest": 23, "PrivateTest": 23}
    tr = usage == "Training"
    assert st["splits"]["Training"]["per_class"] == {
        n: int(c) for n, c in zip(("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
                                  np.bincount(labels[tr], minlength=7))}
    px = images[tr].astype(np.float64) / 255
    assert st["mean"] == pytest.approx(px.mean(), abs=1e-6) and st["std"] == pytest.approx(px.std(), abs=1e-6)
    assert st["stats_split"] == "Training"
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[0] > 100


def test_stats_table_on_folder_and_errors(tmp_path):
    root = tmp_path / "f"
    for i, cls in enumerate(["happy", "happy", "sad"]):
        (root / cls).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / cls / f"{i}.png"), np.full((48, 48), 51, np.uint8))
    res = run("stats", root, "--no-plot")
    assert res.exit_code == 0, res.output
    assert "pixel mean 0.2000" in res.output and "over all" in res.output
    res = run("stats", tmp_path / "missing.csv")
    assert res.exit_code == 2 and "missing.csv" in res.output and "not found" in res.output
    (root / "bored").mkdir()
    cv2.imwrite(str(root / "bored" / "x.png"), np.zeros((48, 48), np.uint8))
    res = run("stats", root, "--no-plot")
    assert res.exit_code == 2 and "bored" in res.output
    res = run("stats", root, "--no-plot", "--ignore-unknown", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["total"]["n"] == 3


def test_stats_skip_bad_reports_count(tmp_path, tiny_fer_csv):
    lines = tiny_fer_csv.read_text().splitlines()
    lines[5] = "3,1 2 3,Training"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    res = run("stats", bad, "--json", "--no-plot")
    assert res.exit_code == 2 and "bad.csv:6" in res.output and "3 pixel values" in res.output
    res = run("stats", bad, "--json", "--no-plot", "--skip-bad")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["skipped"] == 1 and "skipped 1 bad row" in res.output


# ---------------------------------------------------------------- dedup


def test_near_pairs_matches_brute_force():
    from emotionlab.data.dedup import hamming, near_pairs

    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, size=300, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    for k in range(40):  # plant pairs 0..5 bits apart
        flips = rng.choice(64, size=k % 6, replace=False)
        mask = np.uint64(sum(1 << int(b) for b in flips))
        h = np.r_[h, h[k] ^ mask]
    for t in (0, 3, 5):
        i, j = np.triu_indices(len(h), 1)
        d = hamming(h[i], h[j])
        brute = {(a, b) for a, b, x in zip(i.tolist(), j.tolist(), d.tolist()) if x <= t}
        got = {tuple(p) for p in near_pairs(h, t).tolist()}
        assert got == brute and len(got) >= 7
    with pytest.raises(ValueError, match="threshold 40"):
        near_pairs(h, 40)


def test_phash_equals_reference_dct_hash():
    """Same bits as the textbook pHash: cv2.dct of the 32x32 resize, 8x8 low block against its median."""
    from emotionlab.data.dedup import phash

    imgs = np.concatenate([_smooth_faces(20, 9), make_fer_rows(14)[0]])
    ref = []
    for im in imgs:
        d = cv2.dct(cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64))[:8, :8]
        ref.append(int("".join("1" if b else "0" for b in (d > np.median(d)).reshape(-1)), 2))
    np.testing.assert_array_equal(phash(imgs, chunk=16), np.array(ref, dtype=np.uint64))


def test_phash_is_stable_under_noise_and_differs_between_faces():
    from emotionlab.data.dedup import hamming, phash

    imgs = _smooth_faces(6, 3)
    noisy = np.clip(imgs.astype(int) + np.random.default_rng(1).integers(-2, 3, imgs.shape), 0, 255).astype(np.uint8)
    a, b = phash(imgs), phash(noisy)
    assert a.dtype == np.uint64 and a.shape == (6,)
    assert hamming(a, b).max() <= 4
    i, j = np.triu_indices(6, 1)
    assert hamming(a[i], a[j]).min() > 12


def test_dedup_exact_near_leakage_conflicts_and_drop(dup_csv, tmp_path):
    groups = tmp_path / "groups.csv"
    res = run("dedup", dup_csv, "--json", "--groups", groups)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    ex = s["exact"]
    assert (ex["groups"], ex["rows"], ex["redundant_rows"]) == (2, 4, 2)
    assert ex["cross_split_groups"] == 1 and ex["cross_split_pairs"] == {"PrivateTest~Training": 1}
    assert ex["conflicting_label_groups"] == 1 and ex["conflicting_label_rows"] == 2
    assert "near" not in s
    with open(groups) as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["row"]) for r in rows) == [0, 1, 24, 25]
    action = {int(r["row"]): r["action"] for r in rows}
    assert action == {0: "drop", 24: "keep", 1: "drop", 25: "drop"}  # test copy kept; conflict dropped whole

    clean = tmp_path / "clean.csv"
    res = run("dedup", dup_csv, "--near", "--json", "--groups", groups, "--drop", clean)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["near"]["groups"] == 3 and s["near"]["rows_beyond_exact"] == 2 and s["near"]["threshold"] == 4
    assert s["drop"]["kept"] == 27 - 4 and s["drop"]["dropped_per_split"] == {
        "Training": 4, "PublicTest": 0, "PrivateTest": 0}
    kept = load_fer2013(clean)
    orig = load_fer2013(dup_csv)
    keep_rows = [r for r in range(27) if r not in (0, 1, 25, 26)]
    np.testing.assert_array_equal(kept.images, orig.images[keep_rows])
    np.testing.assert_array_equal(kept.labels, orig.labels[keep_rows])
    with open(groups) as f:
        kinds = {int(r["row"]): r["kind"] for r in csv.DictReader(f)}
    assert kinds[2] == kinds[26] == "near" and kinds[0] == "exact"

    res = run("dedup", dup_csv, "--near", "--threshold", "99")
    assert res.exit_code == 2 and "threshold 99" in res.output


# ---------------------------------------------------------------- split


def test_split_stratified_seeded_and_folds(tiny_fer_csv, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run("split", tiny_fer_csv, "--out", a, "--seed", "1", "--folds", "5").exit_code == 0
    assert run("split", tiny_fer_csv, "--out", b, "--seed", "1").exit_code == 0
    assert run("split", tiny_fer_csv, "--out", c, "--seed", "2").exit_code == 0
    sa, sb, sc = (json.loads((d / "splits.json").read_text()) for d in (a, b, c))
    parts = [set(sa[k]) for k in ("train", "val", "test")]
    assert sum(map(len, parts)) == 70 and set.union(*parts) == set(range(70))
    assert (len(parts[0]), len(parts[1]), len(parts[2])) == (56, 7, 7)
    assert sa["counts"]["test"]["per_class"] == {k: 1 for k in sa["counts"]["test"]["per_class"]}  # stratified
    assert sa["train"] == sb["train"] and sa["test"] != sc["test"]
    folds = json.loads((a / "folds.json").read_text())["folds"]
    assert len(folds) == 5
    vals = [set(f["val"]) for f in folds]
    assert set.union(*vals) == set(range(70)) and sum(map(len, vals)) == 70
    assert all(not (set(f["train"]) & set(f["val"])) for f in folds)

    w = tmp_path / "w"
    res = run("split", tiny_fer_csv, "--out", w, "--within", "Training", "--val", "0.25", "--test", "0")
    assert res.exit_code == 2 and "validation part of 6 rows cannot hold all 7 classes" in res.output
    assert run("split", tiny_fer_csv, "--out", w, "--within", "Training", "--val", "0.3", "--test", "0").exit_code == 0
    sw = json.loads((w / "splits.json").read_text())
    training_rows = set(np.flatnonzero(make_fer_rows(70)[2] == "Training").tolist())
    assert set(sw["train"]) | set(sw["val"]) == training_rows and sw["test"] == []
    res = run("split", tiny_fer_csv, "--out", w, "--val", "0.6", "--test", "0.5")
    assert res.exit_code == 2 and "--val" in res.output
    res = run("split", tiny_fer_csv, "--out", w, "--within", "Holdout")
    assert res.exit_code == 2 and "Holdout" in res.output


# ---------------------------------------------------------------- export


def test_export_round_trip_is_exact(tiny_fer_csv, tmp_path):
    out = tmp_path / "folders"
    res = run("export", tiny_fer_csv, out)
    assert res.exit_code == 0, res.output
    assert (out / "PrivateTest" / "neutral" / "00020.png").exists()  # row 20: label 6, usage index 2
    assert len(list(out.rglob("*.png"))) == 70
    back = tmp_path / "back.csv.gz"
    res = run("export", out, back)
    assert res.exit_code == 0, res.output
    a, b = load_fer2013(tiny_fer_csv), load_fer2013(back)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.usage.tolist() == b.usage.tolist()
    res = run("export", tiny_fer_csv, out)
    assert res.exit_code == 2 and "not empty" in res.output
    res = run("export", out, tmp_path / "back.txt")
    assert res.exit_code == 2 and ".csv" in res.output


def test_export_without_usage_has_no_split_level(tmp_path):
    images, labels, _ = make_fer_rows(7)
    write_fer_csv(tmp_path / "n.csv", images, labels)
    assert run("export", tmp_path / "n.csv", tmp_path / "o").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(
        ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"])
    assert run("export", tmp_path / "o", tmp_path / "n2.csv").exit_code == 0
    assert (tmp_path / "n2.csv").read_text() == (tmp_path / "n.csv").read_text()


# ---------------------------------------------------------------- frames


def _video(path: Path, n: int = 10, fps: float = 10.0, size=(64, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        w.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    w.release()


def test_frames_from_folder_labels_every_and_fps(tmp_path):
    vids = tmp_path / "vids"
    _video(vids / "Happiness" / "a.avi")
    _video(vids / "sad" / "b.avi")
    out = tmp_path / "frames"
    res = run("frames", vids, "--out", out, "--every", "3")
    assert res.exit_code == 0, res.output
    happy = sorted((out / "happy").glob("*.png"))
    assert [p.name for p in happy] == [f"Happiness_a_f{i:06d}.png" for i in (0, 3, 6, 9)]
    img = cv2.imread(str(happy[1]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (48, 48) and abs(int(img.mean()) - 60) <= 4  # frame 3 was filled with 60
    with open(out / "frames.csv") as f:
        man = list(csv.DictReader(f))
    assert len(man) == 8 and man[1]["frame"] == "3" and float(man[1]["time_s"]) == pytest.approx(0.3)
    from emotionlab.data.folders import load_folder

    assert len(load_folder(out)) == 8

    out2 = tmp_path / "f2"
    assert run("frames", vids, "--out", out2, "--fps", "5", "--size", "32").exit_code == 0
    got = sorted(p.name for p in (out2 / "sad").glob("*.png"))
    assert got == [f"sad_b_f{i:06d}.png" for i in (0, 2, 4, 6, 8)]
    assert cv2.imread(str(out2 / "sad" / got[0]), cv2.IMREAD_UNCHANGED).shape == (32, 32)
    res = run("frames", vids, "--out", out2, "--fps", "5", "--every", "2")
    assert res.exit_code == 2 and "not both" in res.output


def test_frames_pattern_enterface_codes_and_unknown(tmp_path):
    vids = tmp_path / "flat"
    _video(vids / "s1_an_1.avi", n=2)
    _video(vids / "s2_su_3.avi", n=2)
    _video(vids / "s3_xx_1.avi", n=2)
    out = tmp_path / "o"
    res = run("frames", vids, "--out", out, "--pattern", r"s\d+_(?P<label>[a-z]+)_")
    assert res.exit_code == 2 and "s3_xx_1.avi" in res.output
    res = run("frames", vids, "--out", out, "--pattern", r"s\d+_(?P<label>[a-z]+)_", "--ignore-unknown")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["angry", "surprise"]
    res = run("frames", vids, "--out", out, "--pattern", r"s(\d+)")
    assert res.exit_code == 2 and "(?P<label>" in res.output


# ---------------------------------------------------------------- relabel / review


def test_relabel_applies_checked_changes_with_audit(tiny_fer_csv, tmp_path):
    ch = tmp_path / "changes.csv"
    ch.write_text("row,old,new,reason\n0,angry,happy,looks happy\n8,1,Sadness,\n")
    out = tmp_path / "re.csv"
    res = run("relabel", tiny_fer_csv, "--changes", ch, "--out", out)
    assert res.exit_code == 0, res.output
    a, b = load_fer2013(tiny_fer_csv), load_fer2013(out)
    assert b.labels[0] == 3 and b.labels[8] == 4
    same = np.r_[1:8, 9:70]
    np.testing.assert_array_equal(a.labels[same], b.labels[same])
    np.testing.assert_array_equal(a.images, b.images)
    with open(out) as f:
        recs = list(csv.DictReader(f))
    assert (recs[0]["relabel_from"], recs[0]["reason"]) == ("0", "looks happy")
    assert recs[8]["relabel_from"] == "1" and recs[1]["relabel_from"] == ""

    ch.write_text("row,old,new\n0,angry,happy\n3,angry,sad\n")  # row 3 is 'happy'
    res = run("relabel", tiny_fer_csv, "--changes", ch, "--out", out)
    assert res.exit_code == 2 and "changes.csv:3" in res.output and "data has 3 (happy)" in res.output
    ch.write_text("row,old,new\n500,angry,happy\n")
    res = run("relabel", tiny_fer_csv, "--changes", ch, "--out", out)
    assert res.exit_code == 2 and "changes.csv:2" in res.output and "row 500" in res.output
    ch.write_text("row,old,new\n0,angry,happy\n0,angry,sad\n")
    res = run("relabel", tiny_fer_csv, "--changes", ch, "--out", out)
    assert res.exit_code == 2 and "changed twice" in res.output
    ch.write_text("row,old,new\n0,angry,bored\n")
    res = run("relabel", tiny_fer_csv, "--changes", ch, "--out", out)
    assert res.exit_code == 2 and "changes.csv:2" in res.output and "'bored'" in res.output
    ch.write_text("line,from,to\n0,0,3\n")
    res = run("relabel", tiny_fer_csv, "--changes", ch, "--out", out)
    assert res.exit_code == 2 and "changes.csv:1" in res.output


def test_review_ferplus_proposes_strong_disagreements(tiny_fer_csv, tmp_path):
    ds = load_fer2013(tiny_fer_csv)
    votes = np.zeros((70, 10), int)
    col = {"angry": 4, "disgust": 5, "fear": 6, "happy": 1, "sad": 3, "surprise": 2, "neutral": 0}
    names = ds.label_set.labels
    for i, y in enumerate(ds.labels):
        votes[i, col[names[y]]] = 10  # FER+ agrees everywhere ...
    votes[0] = 0
    votes[0, [1, 0]] = [8, 2]  # ... but row 0 (angry) is 8/10 happy: proposed
    votes[1] = 0
    votes[1, [1, 0]] = [6, 4]  # row 1 (disgust) 6/10 happy: below --min-share 0.7
    votes[2] = 0
    votes[2, 7] = 10  # contempt: never proposed for FER7
    lines = ["Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"]
    lines += [f"{u},x.png," + ",".join(map(str, v)) for u, v in zip(ds.usage, votes)]
    fp = tmp_path / "fer2013new.csv"
    fp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cand.csv"
    res = run("review", tiny_fer_csv, "--ferplus", fp, "--out", out, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["candidates"] == 1
    with open(out) as f:
        cand = list(csv.DictReader(f))
    assert cand == [{"row": "0", "old": "angry", "new": "happy", "reason": "FER+ 8/10 votes happy"}]
    relabelled = tmp_path / "r.csv"
    assert run("relabel", tiny_fer_csv, "--changes", out, "--out", relabelled).exit_code == 0
    assert load_fer2013(relabelled).labels[0] == 3


def test_dedup_on_image_folder_names_paths_and_drops_to_folder(tmp_path):
    imgs = _smooth_faces(4, 11)
    root = tmp_path / "faces"
    for split, cls, name, im in [("train", "happy", "a.png", imgs[0]), ("train", "sad", "b.png", imgs[1]),
                                 ("test", "happy", "a_copy.png", imgs[0]), ("test", "fear", "c.png", imgs[2]),
                                 ("train", "fear", "d.png", imgs[3])]:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / split / cls / name), im)
    groups, clean = tmp_path / "g.csv", tmp_path / "clean"
    res = run("dedup", root, "--json", "--groups", groups, "--drop", clean)
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["exact"]["groups"] == 1 and s["exact"]["cross_split_pairs"] == {"test~train": 1}
    with open(groups) as f:
        rows = {Path(r["path"]).name: r["action"] for r in csv.DictReader(f)}
    assert rows == {"a.png": "drop", "a_copy.png": "keep"}
    assert sorted(str(p.relative_to(clean)) for p in clean.rglob("*.png")) == [
        "test/fear/c.png", "test/happy/a_copy.png", "train/fear/d.png", "train/sad/b.png"]
