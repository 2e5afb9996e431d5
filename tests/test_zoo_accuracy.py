"""benchmarks/zoo_accuracy.py: trains through the public CLI, evaluates on PrivateTest, reuses finished runs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("zoo_accuracy", ROOT / "benchmarks" / "zoo_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_zoo_accuracy_table_and_reuse(tiny_fer_csv, tmp_path):
    mod = _load()
    out, js, md = tmp_path / "runs", tmp_path / "zoo.json", tmp_path / "zoo.md"
    argv = ["--data", str(tiny_fer_csv), "--models", "simple_cnn@20", "--epochs", "1", "--max-train", "0",
            "--threads", "1", "--batch-size", "8", "--out", str(out), "--json", str(js), "--md", str(md)]
    assert mod.main(argv) == 0
    row = json.loads(js.read_text())["rows"][0]
    assert row["model"] == "simple_cnn@20" and row["in_size"] == 20 and row["params"] == 225_799
    assert 0.0 <= row["test_accuracy"] <= 1.0 and row["epochs"] == 1 and row["wall_seconds"] > 0
    assert "--split PrivateTest" in row["commands"][1] and "--in-size 20" in row["commands"][0]
    assert "`simple_cnn@20`" in md.read_text()
    # A finished run (eval.json present) is reused, not retrained.
    assert mod.main(argv) == 0
    assert json.loads(js.read_text())["rows"][0]["wall_seconds"] is None
