"""Temperature scaling, ECE and the classifier applying a card's temperature (models.calibration)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from emotionlab.data.preprocess import PreprocessConfig
from emotionlab.models.calibration import (apply_temperature, calibration_report, ece, fit_temperature,
                                           reliability, temperature_of)
from emotionlab.models.classifier import FaceClassifier, softmax
from emotionlab.models.hub import LoadedModel


def _overconfident(n: int = 4000, k: int = 5, true_t: float = 2.5, seed: int = 0):
    """Labels drawn from softmax(z); the model reports softmax(z * true_t): over-confident by true_t."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, k))
    p_true = softmax(z, axis=1).astype(np.float64)
    y = np.array([rng.choice(k, p=row / row.sum()) for row in p_true])
    return softmax(z * true_t, axis=1), y


def test_fit_recovers_the_overconfidence_and_lowers_ece_without_changing_the_winner():
    p, y = _overconfident()
    t = fit_temperature(p, y)
    assert 2.1 < t < 2.9
    q = apply_temperature(p, t)
    assert np.array_equal(q.argmax(1), p.argmax(1))
    assert np.allclose(q.sum(1), 1.0, atol=1e-5)
    assert ece(q, y) < 0.5 * ece(p, y)
    rep = calibration_report(p, y, t)
    assert rep["ece"] < rep["ece_uncalibrated"] and rep["nll"] < rep["nll_uncalibrated"]
    assert sum(rep["reliability"]["count"]) == len(y)


def test_a_calibrated_model_keeps_temperature_near_one():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, (3000, 4))
    p = softmax(z, axis=1)
    y = np.array([rng.choice(4, p=row / row.sum()) for row in p.astype(np.float64)])
    assert 0.85 < fit_temperature(p, y) < 1.15


def test_reliability_bins_and_perfect_calibration():
    p = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 10)
    y = np.array([0] * 9 + [1] + [0] * 6 + [1] * 4)  # 90 % and 60 % right: perfectly calibrated
    assert ece(p, y, bins=10) == pytest.approx(0.0, abs=1e-9)
    r = reliability(p, y, bins=10)
    assert r["count"][8] == 10 and r["count"][5] == 10 and r["accuracy"][8] == pytest.approx(0.9)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "warm", None])
def test_bad_temperatures_are_refused(bad):
    with pytest.raises(ValueError, match="temperature"):
        temperature_of({"name": "m", "calibration": {"temperature": bad}})
    if bad is not None and not isinstance(bad, str):
        with pytest.raises(ValueError):
            apply_temperature(np.full((2, 2), 0.5), bad)


@pytest.mark.parametrize("bad", [1e-300, 1e6, True])
def test_absurd_card_temperatures_are_refused_before_they_turn_scores_into_nan(bad):
    with pytest.raises(ValueError, match=r"calibration.temperature must be a finite number in \[0.01, 100\]"):
        temperature_of({"name": "m", "calibration": {"temperature": bad}})
    with pytest.raises(ValueError, match="calibration must be an object"):
        temperature_of({"name": "m", "calibration": "hot"})
    assert temperature_of({"name": "m"}) == 1.0 and temperature_of({"calibration": {"temperature": 0.5}}) == 0.5


def test_fit_refuses_bad_inputs():
    with pytest.raises(ValueError, match="at least 20"):
        fit_temperature(np.full((5, 2), 0.5), np.zeros(5, int))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.full((30, 2), np.nan), np.zeros(30, int))
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(np.full((30, 2), 0.5), np.full(30, 3))


def test_classifier_applies_the_cards_temperature_and_can_be_asked_not_to():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 3))
    pre = PreprocessConfig()
    card = {"name": "tiny", "labels": ["a", "b", "c"], "num_classes": 3, "preprocess": pre.to_dict(),
            "calibration": {"temperature": 2.0}}
    loaded = LoadedModel(net, card, Path("<tiny>"))
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    cal = FaceClassifier(loaded, backend="torch").predict_proba(faces)
    raw = FaceClassifier(loaded, backend="torch", calibrated=False).predict_proba(faces)
    assert np.allclose(cal, apply_temperature(raw, 2.0), atol=1e-5)
    assert not np.allclose(cal, raw, atol=1e-3) and np.array_equal(cal.argmax(1), raw.argmax(1))
    assert temperature_of({"name": "x"}) == 1.0


def test_evaluate_reports_ece_before_and_after_and_draws_the_diagram(tmp_path):
    """A run directory whose card carries a temperature: evaluate's JSON has both ECEs and a reliability PNG."""
    import json

    import cv2
    from test_inference import make_run_dir

    from emotionlab.training.evaluation import run_evaluation

    run = make_run_dir(tmp_path / "run_t")
    card_path = next(run.glob("*.json"))
    card = json.loads(card_path.read_text())
    card["calibration"] = {"temperature": 3.0}
    card_path.write_text(json.dumps(card))
    rng = np.random.default_rng(0)
    labels = card["labels"]
    for lab in labels:
        (tmp_path / "faces" / lab).mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(tmp_path / "faces" / lab / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    res = run_evaluation(str(run), tmp_path / "faces", out=tmp_path / "out", quiet=True)
    assert res["temperature"] == 3.0 and 0 <= res["ece"] <= 1 and 0 <= res["ece_uncalibrated"] <= 1
    assert res["ece"] != res["ece_uncalibrated"]
    assert sum(res["reliability"]["count"]) == res["n"] == 5 * len(labels)
    assert (tmp_path / "out" / "reliability.png").stat().st_size > 1000


def test_min_confidence_answers_uncertain_and_refuses_garbage(tmp_path):
    from test_inference import make_run_dir

    from emotionlab.inference import FaceEmotionRecognizer

    run = make_run_dir(tmp_path / "run_u")
    face = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    plain = FaceEmotionRecognizer(str(run), detector="none").predict(face)[0]
    top = max(plain.scores.values())
    assert plain.label != "uncertain" and plain.score == pytest.approx(top)
    unsure = FaceEmotionRecognizer(str(run), detector="none", min_confidence=min(0.999, top + 1e-3)).predict(face)[0]
    assert unsure.label == "uncertain" and unsure.scores == plain.scores and unsure.score == pytest.approx(top)
    sure = FaceEmotionRecognizer(str(run), detector="none", min_confidence=top - 1e-3).predict(face)[0]
    assert sure.label == plain.label
    for bad in (1.0, -0.1, float("nan"), "high"):
        with pytest.raises(ValueError, match="min_confidence"):
            FaceEmotionRecognizer(str(run), detector="none", min_confidence=bad)
