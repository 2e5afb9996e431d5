"""The label review app (API through TestClient), its SQLite audit trail, resume, undo, and the export that
`data relabel` applies; CLI mistakes end in one line."""
from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from emotionlab.cli import app as cli_app
from emotionlab.data.loader import load_dataset

ISSUES = [  # index, given, suggested, score, kind, split, top3 (rows of make_fer_rows: label = row % 7)
    ("3", "happy", "sad", "0.91", "label", "Training", "sad:0.800;happy:0.100;angry:0.050"),
    ("8", "disgust", "angry", "0.80", "label", "Training", "angry:0.700;disgust:0.200;fear:0.050"),
    ("12", "surprise", "neutral", "0.70", "label", "Training", "neutral:0.600;surprise:0.300;sad:0.050"),
    ("8", "disgust", "angry", "0.40", "duplicate", "Training", "angry:0.700;disgust:0.200;fear:0.050"),
    ("20", "neutral", "sad", "1.00", "outlier", "Training", "sad:0.500;angry:0.200;fear:0.100"),
]


def run(*args):
    return CliRunner().invoke(cli_app, [*map(str, args)], env={"COLUMNS": "1000"})


@pytest.fixture
def review_files(tmp_path, tiny_fer_csv) -> tuple[Path, Path]:
    issues = tmp_path / "label_issues.csv"
    with open(issues, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "given", "suggested", "score", "kind", "split", "top3"])
        w.writerows(ISSUES)
    return issues, tiny_fer_csv


def _client(issues: Path, data: Path, db: Path, reviewer: str = "ann") -> TestClient:
    from emotionlab.serve.review import ReviewStore, create_review_app, file_digest, load_items

    ds = load_dataset(data)
    items = load_items(issues, ds)
    store = ReviewStore(db, reviewer, file_digest(issues), str(issues))
    return TestClient(create_review_app(items, ds.images, ds.label_set.labels, store))


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT item, face, old, new, action, reviewer, undone FROM decisions ORDER BY id").fetchall()


def test_items_page_and_image(review_files, tmp_path):
    issues, data = review_files
    c = _client(issues, data, tmp_path / "r.sqlite")
    st = c.get("/api/state").json()
    assert st["total"] == 4 and st["next"] == 0 and st["decided"] == 0  # row 8 twice -> reviewed once
    assert st["labels"][:2] == ["angry", "disgust"] and st["reviewer"] == "ann"
    it = c.get("/api/items/0").json()
    assert it["face"] == "3" and it["given"] == "happy" and it["suggested"] == "sad"
    assert it["top3"][0] == {"label": "sad", "p": 0.8} and it["decision"] is None
    img = c.get("/api/items/0/image.png")
    assert img.headers["content-type"] == "image/png" and img.content[:4] == b"\x89PNG"
    import cv2

    face = cv2.imdecode(np.frombuffer(img.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(face, load_dataset(data).images[3])
    assert "Label review" in c.get("/").text
    assert c.get("/api/items/99").status_code == 404


def test_decisions_undo_resume_and_export(review_files, tmp_path):
    issues, data = review_files
    db = tmp_path / "r.sqlite"
    c = _client(issues, data, db)
    assert c.post("/api/decide", json={"item": 0, "action": "relabel", "new": "sad"}).json()["next"] == 1
    assert c.post("/api/decide", json={"item": 1, "action": "skip"}).json()["next"] == 2
    assert c.post("/api/decide", json={"item": 2, "action": "drop"}).json()["next"] == 3
    p = c.post("/api/decide", json={"item": 3, "action": "keep"}).json()
    assert p["next"] == 1 and p["decided"] == 3  # the skipped face comes back at the end
    assert c.post("/api/undo").json()["undone"] == 3
    assert c.get("/api/state").json()["next"] == 3
    rows = _rows(db)
    assert rows[0] == (0, "3", "happy", "sad", "relabel", "ann", 0)
    assert rows[2][4] == "drop" and rows[3][6] == 1  # undone, not deleted: the audit trail keeps it
    # a second session (another reviewer) resumes where the review stopped
    c2 = _client(issues, data, db, reviewer="bob")
    assert c2.get("/api/state").json()["next"] == 3
    assert c2.post("/api/undo").json()["undone"] is None  # bob has nothing to undo; ann's decisions stay
    c2.post("/api/decide", json={"item": 1, "action": "relabel", "new": "angry"})
    out = tmp_path / "CHANGES.csv"
    r = run("review", "export", "--db", db, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    with open(out, newline="") as f:
        ch = list(csv.DictReader(f))
    assert [(x["row"], x["old"], x["new"]) for x in ch] == [("3", "happy", "sad"), ("8", "disgust", "angry")]
    assert "bob" in ch[1]["reason"] and "ann" in ch[0]["reason"]
    drops = list(csv.DictReader(open(tmp_path / "CHANGES_drops.csv", newline="")))
    assert [(x["row"], x["label"]) for x in drops] == [("12", "surprise")]
    # the export is what `data relabel` applies
    relabelled = tmp_path / "relabelled.csv"
    r = run("data", "relabel", data, "--changes", out, "--out", relabelled)
    assert r.exit_code == 0, r.output
    new = load_dataset(relabelled)
    assert new.labels[3] == 4 and new.labels[8] == 0 and new.labels[12] == 5


def test_bad_requests_are_clear(review_files, tmp_path):
    issues, data = review_files
    c = _client(issues, data, tmp_path / "r.sqlite")
    r = c.post("/api/decide", json={"item": 0, "action": "relabel", "new": "bored"})
    assert r.status_code == 400 and "bored" in r.json()["detail"]
    r = c.post("/api/decide", json={"item": 0, "action": "burn"})
    assert r.status_code == 400 and "burn" in r.json()["detail"]
    assert c.post("/api/decide", json={"item": -1, "action": "keep"}).status_code == 404
    assert _rows(tmp_path / "r.sqlite") == []


def test_issues_that_do_not_fit_the_data_are_refused(review_files, tmp_path):
    from emotionlab.data.errors import DataError
    from emotionlab.serve.review import ReviewStore, file_digest, load_items

    issues, data = review_files
    ds = load_dataset(data)
    bad = tmp_path / "bad.csv"
    bad.write_text("index,given,suggested,score,kind\n999,happy,sad,0.5,label\n")
    with pytest.raises(DataError, match="999"):
        load_items(bad, ds)
    bad.write_text("index,given,suggested,score,kind\n3,angry,sad,0.5,label\n")
    with pytest.raises(DataError, match="given is angry but the data has happy"):
        load_items(bad, ds)
    bad.write_text("index,given,suggested,score,kind\n3,happy,sad,nan,label\n")
    with pytest.raises(DataError, match="finite"):
        load_items(bad, ds)
    ReviewStore(tmp_path / "r.sqlite", "ann", file_digest(issues), "a")
    with pytest.raises(DataError, match="another issues file"):
        ReviewStore(tmp_path / "r.sqlite", "ann", file_digest(bad), "b")


def test_review_cli_mistakes(review_files, tmp_path):
    issues, data = review_files
    r = run("review", "--issues", issues, "--data", data, "--db", tmp_path / "r.sqlite")
    assert r.exit_code == 2 and "--reviewer" in r.output
    r = run("review", "--issues", issues, "--data", data, "--db", tmp_path / "r.sqlite", "--reviewer", "a",
            "--kind", "typo")
    assert r.exit_code == 2 and "typo" in r.output
    r = run("review", "--issues", tmp_path / "nope.csv", "--data", data, "--db", tmp_path / "r.sqlite",
            "--reviewer", "a")
    assert r.exit_code == 2 and "nope.csv" in r.output
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all, just bytes" * 10)
    r = run("review", "export", "--db", junk, "--out", tmp_path / "c.csv")
    assert r.exit_code == 2 and "junk.sqlite" in r.output and "Traceback" not in r.output
    r = run("review", "export", "--db", tmp_path / "missing.sqlite", "--out", tmp_path / "c.csv")
    assert r.exit_code == 2 and "not found" in r.output
    assert not (tmp_path / "missing.sqlite").exists()


def test_folder_faces_are_named_by_path(tmp_path):
    import cv2

    from emotionlab.serve.review import load_items

    root = tmp_path / "faces"
    imgs = np.random.default_rng(0).integers(0, 255, (4, 48, 48)).astype(np.uint8)
    for i, lab in enumerate(["happy", "happy", "sad", "sad"]):
        (root / lab).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / lab / f"{i}.png"), imgs[i])
    ds = load_dataset(root)
    p = ds.paths[0]
    issues = tmp_path / "i.csv"
    issues.write_text(f"index,given,suggested,score,kind\n{p},{ds.label_set.labels[ds.labels[0]]},angry,0.9,label\n")
    items = load_items(issues, ds)
    assert len(items) == 1 and items[0].pos == 0 and items[0].face == p


def test_issue_rows_match_the_fixture_labels(tiny_fer_csv):
    from emotionlab.data.labels import FER7

    ds = load_dataset(tiny_fer_csv)
    assert all(FER7.labels[int(ds.labels[int(r)])] == given for r, given, *_ in ISSUES)


def test_folder_issues_match_when_the_folder_is_named_another_way(tmp_path, monkeypatch):
    import cv2

    from emotionlab.serve.review import load_items

    root = tmp_path / "faces"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    img = np.random.default_rng(1).integers(0, 255, (48, 48)).astype(np.uint8)
    cv2.imwrite(str(root / "happy" / "a.png"), img)
    cv2.imwrite(str(root / "sad" / "b.png"), img[::-1])
    monkeypatch.chdir(tmp_path)
    rel = load_dataset(Path("faces"))  # the review names the folder relatively
    issues = tmp_path / "i.csv"
    issues.write_text(f"index,given,suggested,score,kind\n{root / 'sad' / 'b.png'},sad,happy,0.9,label\n")
    items = load_items(issues, rel)
    assert rel.label_set.labels[int(rel.labels[items[0].pos])] == "sad"
