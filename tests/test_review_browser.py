"""End-to-end: `emotionlab review` serving a small review, the page in headless Chromium, keys pressed, and the
decisions read back from SQLite. Needs Debian's chromium, node and tests/e2e/node_modules; skips otherwise."""
from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_e2e_browser import CHROMIUM, E2E, REPO, _free_port


def _requirements() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not shutil.which("node"):
        return "node is not installed"
    if not (E2E / "node_modules" / "playwright-core").exists():
        return "tests/e2e/node_modules is missing (cd tests/e2e && npm install)"
    return None


def test_keys_on_the_review_page_become_sqlite_rows(tmp_path, tiny_fer_csv):
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    import httpx

    issues = tmp_path / "label_issues.csv"
    with open(issues, "w", newline="") as f:  # tiny_fer_csv: the label of row r is r % 7
        w = csv.writer(f)
        w.writerow(["index", "given", "suggested", "score", "kind", "split", "top3"])
        w.writerow(["3", "happy", "sad", "0.9", "label", "Training", "sad:0.8;happy:0.1;angry:0.05"])
        w.writerow(["8", "disgust", "angry", "0.8", "label", "Training", "angry:0.7;disgust:0.2;fear:0.05"])
        w.writerow(["12", "surprise", "neutral", "0.7", "label", "Training", "neutral:0.6;surprise:0.3;sad:0.05"])
        w.writerow(["20", "neutral", "sad", "0.6", "label", "Training", "sad:0.5;neutral:0.3;fear:0.1"])
    db = tmp_path / "review.sqlite"
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from emotionlab.cli import main; main(sys.argv[1:])",
                             "review", "--issues", str(issues), "--data", str(tiny_fer_csv), "--db", str(db),
                             "--reviewer", "e2e", "--port", str(port)],
                            cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"review server exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()}")
            try:
                if httpx.get(url + "api/state", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail("review server did not answer in 60 s")
            time.sleep(0.3)
        shot = tmp_path / "review.png"
        r = subprocess.run(["node", str(E2E / "review.mjs"), url, str(shot)], cwd=E2E, capture_output=True,
                           text=True, timeout=120, check=False)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert r.returncode == 0, f"browser run failed:\n{r.stdout}\n{r.stderr}"
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["external_requests"] == [] and res["console_errors"] == [], res
    assert res["given"] == "happy"
    # k on row 3, 1 (angry) on row 8, d on row 12, u brings row 12 back, s skips it
    assert res["faces"] == ["3", "8", "12", "20", "12"], res
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT face, old, new, action, reviewer, undone FROM decisions ORDER BY id").fetchall()
    assert rows == [("3", "happy", "happy", "keep", "e2e", 0), ("8", "disgust", "angry", "relabel", "e2e", 0),
                    ("12", "surprise", None, "drop", "e2e", 1), ("12", "surprise", None, "skip", "e2e", 0)], rows
    assert shot.stat().st_size > 5000
