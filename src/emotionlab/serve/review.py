"""Review flagged labels in the browser: one face at a time, keyboard decisions, every decision in SQLite.

``emotionlab data issues`` writes ``label_issues.csv``; this app shows each flagged face large with its given
label, the model's top three and (for FER-2013) the FER+ votes, and records keep / relabel / drop / skip per
face, with the reviewer's name and the time, in a SQLite file. Nothing is ever deleted from it: undo marks the
reviewer's last decision undone, so the file is the audit trail, and the review resumes at the first face
without a decision. :meth:`ReviewStore.export` turns the decisions into the ``CHANGES.csv`` that
``emotionlab data relabel`` applies (relabels only) and a drop list.

The app is a small FastAPI app of its own (the service in :mod:`emotionlab.serve.app` loads models; this one
needs none), bound to 127.0.0.1 by the CLI.
"""
from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from ..data.errors import DataError
from ..data.fer2013 import FaceDataset
from ..data.labels import LabelSet

STATIC_DIR = Path(__file__).resolve().parent / "static"
ACTIONS = ("keep", "relabel", "drop", "skip")
REQUIRED = ("index", "given", "suggested", "score", "kind")


@dataclass
class ReviewItem:
    """One flagged face: its id in the data (CSV row or file path), labels as names, and where its pixels are."""

    k: int
    face: str
    given: str
    suggested: str
    score: float
    kind: str
    pos: int
    top3: list[tuple[str, float]] = field(default_factory=list)
    ferplus: dict[str, int] | None = None


def _parse_top3(text: str) -> list[tuple[str, float]]:
    out = []
    for part in (text or "").split(";"):
        name, _, p = part.partition(":")
        try:
            out.append((name.strip(), float(p)))
        except ValueError:
            continue
    return out


def load_items(issues: str | os.PathLike, ds: FaceDataset, kinds: tuple[str, ...] | None = None,
               ferplus=None) -> list[ReviewItem]:
    """Read ``label_issues.csv`` and find each face in ``ds`` (by CSV row or file path); a face flagged twice
    (label and duplicate) is reviewed once, at its first place. Errors name the file and line."""
    path = Path(issues)
    ls: LabelSet = ds.label_set
    if ds.paths:  # the same folder named another way (relative / absolute) still matches
        where = {p: i for i, p in enumerate(ds.paths)}
        where.update({str(Path(p).resolve()): i for i, p in enumerate(ds.paths)})
    else:
        rows = ds.rows if ds.rows is not None else np.arange(len(ds))
        where = {str(int(r)): i for i, r in enumerate(rows)}
    items: list[ReviewItem] = []
    seen: set[str] = set()
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror}") from None
    with f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise DataError(path, f"header is {header}, expected label_issues.csv columns {list(REQUIRED)} "
                                  f"(missing {missing})", line=1)
        col = {c: header.index(c) for c in header}
        for lineno, rec in enumerate(reader, start=2):
            if not rec or all(not c.strip() for c in rec):
                continue
            if len(rec) < len(header):
                raise DataError(path, f"has {len(rec)} fields, expected {len(header)}", line=lineno)
            face = rec[col["index"]].strip()
            if ds.paths and face not in where:
                face = str(Path(face).resolve())
            kind = rec[col["kind"]].strip()
            if kinds and kind not in kinds:
                continue
            if face in seen:
                continue
            if face not in where:
                raise DataError(path, f"face {face!r} is not in the data {ds.source} (is it the same file and split "
                                      "that `data issues` read?)", line=lineno)
            given, sug = rec[col["given"]].strip(), rec[col["suggested"]].strip()
            for name, v in (("given", given), ("suggested", sug)):
                if v not in ls:
                    raise DataError(path, f"{name} is {v!r}, expected one of {list(ls.labels)}", line=lineno)
            given, sug = ls.labels[ls.index(given)], ls.labels[ls.index(sug)]
            pos = where[face]
            if ls.labels[int(ds.labels[pos])] != given:
                raise DataError(path, f"face {face}: given is {given} but the data has "
                                      f"{ls.labels[int(ds.labels[pos])]} (relabelled since the issues were found?)",
                                line=lineno)
            try:
                score = float(rec[col["score"]])
            except ValueError:
                raise DataError(path, f"score is {rec[col['score']]!r}, expected a number", line=lineno) from None
            if not np.isfinite(score):
                raise DataError(path, f"score is {score}, expected a finite number", line=lineno)
            top3 = _parse_top3(rec[col["top3"]]) if "top3" in col else []
            item = ReviewItem(len(items), face, given, sug, score, kind, pos, top3)
            if ferplus is not None and ds.rows is not None:
                from ..data.ferplus import VOTE_COLUMNS

                r = int(ds.rows[pos])
                if r < len(ferplus.votes):
                    item.ferplus = {c: int(v) for c, v in zip(VOTE_COLUMNS, ferplus.votes[r])}
            items.append(item)
            seen.add(face)
    if not items:
        raise DataError(path, "no flagged faces to review" + (f" of kind {', '.join(kinds)}" if kinds else ""))
    return items


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item INTEGER NOT NULL,
    face TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT,
    action TEXT NOT NULL CHECK (action IN ('keep', 'relabel', 'drop', 'skip')),
    time TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    kind TEXT,
    score REAL,
    undone INTEGER NOT NULL DEFAULT 0
);
"""


class ReviewStore:
    """The decisions of a review in SQLite. One connection behind a lock (the app's handlers run in threads);
    every write is its own transaction, so a killed server loses nothing that was answered."""

    def __init__(self, db: str | os.PathLike, reviewer: str = "", issues_digest: str | None = None,
                 issues_name: str = ""):
        self.path = Path(db)
        self.reviewer = reviewer
        self._lock = threading.Lock()
        try:
            self._con = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._con.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise DataError(self.path, f"not a review database ({e})") from None
        if issues_digest is not None:
            row = self._con.execute("SELECT value FROM meta WHERE key='issues_sha256'").fetchone()
            if row is None:
                self._con.execute("INSERT INTO meta VALUES ('issues_sha256', ?), ('issues_file', ?)",
                                  (issues_digest, issues_name))
            elif row[0] != issues_digest:
                name = self._con.execute("SELECT value FROM meta WHERE key='issues_file'").fetchone()
                raise DataError(self.path, f"holds the review of another issues file ({name[0] if name else '?'}); "
                                           "use a new --db for this one")

    def close(self) -> None:
        self._con.close()

    def decide(self, item: ReviewItem, action: str, new: str | None = None) -> None:
        if action not in ACTIONS:
            raise ValueError(f"action {action!r}, expected one of {ACTIONS}")
        if action == "keep":
            new = item.given
        elif action in ("drop", "skip"):
            new = None
        with self._lock:
            self._con.execute(
                "INSERT INTO decisions (item, face, old, new, action, time, reviewer, kind, score) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item.k, item.face, item.given, new, action, time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 self.reviewer, item.kind, item.score))

    def undo(self) -> int | None:
        """Mark this reviewer's last live decision undone; returns its item (None: nothing to undo)."""
        with self._lock:
            row = self._con.execute("SELECT id, item FROM decisions WHERE undone=0 AND reviewer=? "
                                    "ORDER BY id DESC LIMIT 1", (self.reviewer,)).fetchone()
            if row is None:
                return None
            self._con.execute("UPDATE decisions SET undone=1 WHERE id=?", (row[0],))
            return int(row[1])

    def current(self) -> dict[int, sqlite3.Row]:
        """item -> its latest live decision (any reviewer)."""
        with self._lock:
            cur = self._con.execute("SELECT d.* FROM decisions d JOIN (SELECT item, MAX(id) AS id FROM decisions "
                                    "WHERE undone=0 GROUP BY item) m ON d.id = m.id")
            cols = [c[0] for c in cur.description]
            return {int(r[0 + cols.index("item")]): dict(zip(cols, r)) for r in cur.fetchall()}

    def next_item(self, n_items: int) -> int | None:
        """The first face without a decision, else the first skipped one; None when all are decided."""
        cur = self.current()
        for k in range(n_items):
            if k not in cur:
                return k
        for k in range(n_items):
            if cur[k]["action"] == "skip":
                return k
        return None

    def export(self, changes: str | os.PathLike, drops: str | os.PathLike | None = None) -> dict:
        """CHANGES.csv (``row,old,new,reason``: the relabels, as ``data relabel`` reads them) and, when any face
        was dropped, a drop list (``row,label,reason``). Written to temporary files, then renamed."""
        cur = self.current()
        rel = [d for _, d in sorted(cur.items()) if d["action"] == "relabel" and d["new"] != d["old"]]
        dropped = [d for _, d in sorted(cur.items()) if d["action"] == "drop"]

        def reason(d: dict) -> str:
            return f"review by {d['reviewer']} at {d['time']} ({d['kind']} flag, score {d['score']:.3f})"

        def write(path: Path, header: list[str], rows: list[list]) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
            os.replace(tmp, path)

        changes = Path(changes)
        write(changes, ["row", "old", "new", "reason"], [[d["face"], d["old"], d["new"], reason(d)] for d in rel])
        out = {"changes": str(changes), "relabelled": len(rel), "dropped": len(dropped),
               "kept": sum(d["action"] == "keep" for d in cur.values()),
               "skipped": sum(d["action"] == "skip" for d in cur.values())}
        if dropped:
            dp = Path(drops) if drops else changes.with_name(changes.stem + "_drops.csv")
            write(dp, ["row", "label", "reason"], [[d["face"], d["old"], reason(d)] for d in dropped])
            out["drops"] = str(dp)
        return out


class Decision(BaseModel):
    """A decision posted by the page: ``new`` only for ``relabel``."""

    item: int
    action: str
    new: str | None = None


def face_png(image: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image, np.uint8))
    if not ok:  # pragma: no cover - a uint8 array always encodes
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def create_review_app(items: list[ReviewItem], images: np.ndarray, labels: list[str] | tuple[str, ...],
                      store: ReviewStore, title: str = ""):
    """The review page and its JSON API over ``items`` (``images[item.pos]`` is each face)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, JSONResponse, Response
    app = FastAPI(title="emotionlab review", docs_url=None, redoc_url=None, openapi_url=None)
    labels = list(labels)

    def _item(k: int) -> ReviewItem:
        if not 0 <= k < len(items):
            raise HTTPException(404, f"no item {k}; items are 0..{len(items) - 1}")
        return items[k]

    def _progress() -> dict:
        cur = store.current()
        nxt = store.next_item(len(items))
        return {"total": len(items), "decided": sum(d["action"] != "skip" for d in cur.values()), "next": nxt}

    @app.exception_handler(HTTPException)
    async def _http_error(_, exc: HTTPException):
        return JSONResponse({"error": "bad_request" if exc.status_code == 400 else "not_found",
                             "detail": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "review.html", media_type="text/html")

    @app.get("/api/state")
    def state():
        return {"reviewer": store.reviewer, "labels": labels, "title": title, **_progress()}

    @app.get("/api/items/{k}")
    def item(k: int):
        it = _item(k)
        d = store.current().get(k)
        return {"item": k, "face": it.face, "given": it.given, "suggested": it.suggested, "score": it.score,
                "kind": it.kind, "top3": [{"label": n, "p": p} for n, p in it.top3], "ferplus": it.ferplus,
                "decision": None if d is None else {"action": d["action"], "new": d["new"],
                                                    "reviewer": d["reviewer"], "time": d["time"]}}

    @app.get("/api/items/{k}/image.png")
    def image(k: int):
        return Response(face_png(images[_item(k).pos]), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/decide")
    def decide(d: Decision):
        it = _item(d.item)
        if d.action not in ACTIONS:
            raise HTTPException(400, f"action {d.action!r}: expected one of {', '.join(ACTIONS)}")
        new = None
        if d.action == "relabel":
            if d.new not in labels:
                raise HTTPException(400, f"new label {d.new!r}: expected one of {labels}")
            new = d.new
        store.decide(it, d.action, new)
        return _progress()

    @app.post("/api/undo")
    def undo():
        k = store.undo()
        return {"undone": k, **_progress()}

    return app
