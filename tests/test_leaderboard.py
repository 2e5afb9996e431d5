"""docs/RESULTS.md is generated from the model cards and docs/results/*.json: it must match a fresh render, show
each shipped alias with its card's numbers, and its command must fail in one line on bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emotionlab.models.hub import aliases, load_card
from emotionlab.models.leaderboard import main, render_leaderboard, write_leaderboard

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_results_md_is_up_to_date_with_the_cards():
    assert (DOCS / "RESULTS.md").read_text() == render_leaderboard(DOCS), (
        "docs/RESULTS.md is stale: run python -m emotionlab.models.leaderboard --out docs/RESULTS.md")


def test_every_alias_has_a_row_with_its_cards_numbers():
    text = render_leaderboard(DOCS)
    for alias, name in aliases().items():
        card = load_card(name)
        m = card["metrics"]
        acc = (m.get("PrivateTest") or m.get("test"))["accuracy"]
        rows = [ln for ln in text.splitlines() if ln.startswith(f"| `{name}` |") and f"**`{alias}`**" in ln]
        assert rows, f"no row for {alias} = {name}"
        if "PrivateTest" in m:
            assert any(f"{100 * acc:.1f} %" in r and m["evaluated"] in r for r in rows), (alias, rows)
        else:
            assert f"| all | all faces | {100 * acc:.1f} % |" in text


def test_retired_cards_and_benchmark_records_are_rendered(tmp_path):
    docs = tmp_path / "docs"
    (docs / "model_cards" / "retired").mkdir(parents=True)
    (docs / "results").mkdir()
    card = load_card("emonet_f_robust_fer2013")
    card["name"] = "old_net"
    card["metrics"]["PrivateTest"]["accuracy"] = 0.4321
    (docs / "model_cards" / "retired" / "old_net.json").write_text(json.dumps(card))
    (docs / "results" / "bench.json").write_text(json.dumps({
        "title": "A bench", "command": "python benchmarks/x.py", "machine": "Intel Xeon, 2 cores, no GPU",
        "date": "2026-12-06", "tables": [{"columns": ["a", "b"], "rows": [["x", "1.5 ms"]]}]}))
    text = write_leaderboard(docs / "RESULTS.md")
    assert (docs / "RESULTS.md").read_text() == text
    assert "| `old_net` | retired" in text and "43.2 %" in text
    assert "## A bench" in text and "`python benchmarks/x.py`" in text and "| x | 1.5 ms |" in text
    assert main(["--check", str(docs / "RESULTS.md")]) == 0
    (docs / "results" / "bench.json").write_text(json.dumps({
        "title": "A bench", "command": "c", "date": "2026-12-07", "tables": []}))
    assert main(["--check", str(docs / "RESULTS.md")]) == 1  # a changed record makes the page stale


def test_bad_inputs_fail_in_one_line(tmp_path, capsys):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS / "results", docs / "results")
    (docs / "results" / "broken.json").write_text("{not json")
    assert main(["--out", str(docs / "RESULTS.md")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.json" in err
    assert not (docs / "RESULTS.md").exists()
    assert main(["--out", str(tmp_path / "missing" / "RESULTS.md")]) == 2
    with pytest.raises(SystemExit):
        main([])


def test_rows_name_release_steps_as_users_type_them_today():
    from emotionlab.models.leaderboard import _short, render_leaderboard

    assert _short(".venv/bin/emotionlab models quantize a --name b") == "emotionlab maintain quantize a --name b"
    assert _short("emotionlab models list") == "emotionlab models list"
    text = render_leaderboard()
    for step in ("ship", "quantize", "tune-bias", "ensemble", "last-epoch"):
        assert f"emotionlab models {step}" not in text
