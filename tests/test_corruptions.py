"""Stress-test corruptions (explain/corruptions.py) and the robustness benchmark on tiny data."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from emotionlab.explain.corruptions import (CORRUPTIONS, contrast, corrupt, gamma, low_resolution, rotation)

ROOT = Path(__file__).resolve().parents[1]


def faces(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 48, 48)).astype(np.uint8)
    x[:, 10:20, 10:38] = 240  # structure that blur / rotation / resolution must move
    return x


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_keeps_shape_dtype_and_is_deterministic(name):
    x = faces()
    y1, y2 = corrupt(x, name), corrupt(x, name)
    assert y1.shape == x.shape and y1.dtype == np.uint8
    np.testing.assert_array_equal(y1, y2)
    if name == "clean":
        np.testing.assert_array_equal(y1, x)
    else:
        assert np.abs(y1.astype(int) - x).mean() > 1.0, name


def test_neutral_severities_are_identities():
    x = faces()
    np.testing.assert_array_equal(gamma(x, 1.0), x)
    np.testing.assert_array_equal(contrast(x, 1.0), x)
    np.testing.assert_array_equal(rotation(x, 0.0), x)
    np.testing.assert_array_equal(low_resolution(x, 48), x)


def test_severity_orders_the_damage():
    x = faces()
    err = {n: np.abs(corrupt(x, n).astype(int) - x).mean() for n in CORRUPTIONS}
    assert err["lowres_16"] > err["lowres_24"] and err["blur_2"] > err["blur_1"]
    assert err["noise_25"] > err["noise_10"] and err["jpeg_10"] > err["jpeg_20"] and err["tilt_30"] > err["tilt_15"]


def test_bad_input_and_unknown_name_are_clear_errors():
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(faces(), "fog")
    with pytest.raises(ValueError, match="uint8 crops"):
        corrupt(faces().astype(np.float32), "blur_1")


def test_robustness_benchmark_table(tiny_fer_csv, tmp_path):
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "benchmarks" / "robustness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    assert mod.main(["--data", str(tiny_fer_csv), "--models", "fast", "--corruptions", "clean,blur_2,tilt_30",
                     "--photo", "--json", str(js), "--md", str(md)]) == 0
    res = json.loads(js.read_text())
    assert set(res["rows"]) == {"clean", "blur_2", "tilt_30", "photo"}
    assert res["n"] == 70 // 3 and 0.0 <= res["rows"]["photo"]["detected"] <= 1.0
    for row in res["rows"].values():
        assert 0.0 <= row["models"]["fast"]["accuracy"] <= 1.0
    assert "`blur_2`" in md.read_text() and "mean of the corruptions" in md.read_text()


def _bench(name):
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts share robustness.default_data, as when run
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_face_ensembles_picks_on_publictest(tiny_fer_csv, tmp_path):
    js = tmp_path / "e.json"
    assert _bench("face_ensembles").main(["--data", str(tiny_fer_csv), "--models",
                                          "fast,emonet_f_robust_fer2013",
                                          "--weights", "1,2", "--threads", "1", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    # fast alone, its float source alone, and the pair at anchor weights 1 and 2
    assert len(res["rows"]) == 4
    assert res["best"]["PublicTest"] == max(r["PublicTest"] for r in res["rows"])


def test_int8_check_reports_both_graphs(tiny_fer_csv, tmp_path):
    js = tmp_path / "q.json"
    md = tmp_path / "q.md"
    assert _bench("int8_check").main(["--data", str(tiny_fer_csv), "--models", "emonet_f_robust_fer2013",
                                      "--configs", "base,first_conv", "--rounds", "1", "--json", str(js),
                                      "--md", str(md)]) == 0
    res = json.loads(js.read_text())
    rows = {r["config"]: r for r in res["rows"]}
    assert set(rows) == {"float", "base", "first_conv"}
    for r in rows.values():
        assert r["ms_per_face"] > 0 and 0.0 <= r["PublicTest"] <= 1.0 and 0.0 <= r["PrivateTest"] <= 1.0
    assert rows["base"]["float_nodes"] == [] and len(rows["first_conv"]["float_nodes"]) == 1
    assert 0 < rows["first_conv"]["calibration_faces"] <= 70  # capped at the tiny training split
    assert md.read_text().count("| emonet_f_robust_fer2013 |") == 3
    with pytest.raises(SystemExit):
        _bench("int8_check").main(["--data", str(tiny_fer_csv), "--configs", "nope"])
