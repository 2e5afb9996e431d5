"""Calibration beyond the face models: multi-label temperatures, text models carrying one, and roll alignment
reaching the photo paths of evaluation and training data (issue #36)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from emotionlab.models.calibration import (apply_temperature_multilabel, ece_multilabel,
                                           fit_temperature_multilabel, multilabel_calibration_report)
from emotionlab.text import TextEmotionClassifier
from emotionlab.text.datasets import TextDataset
from emotionlab.text.store import update_config
from emotionlab.text.train import evaluate_model

from test_text import LABELS, make_corpus


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _overconfident_multilabel(n=3000, k=6, true_t=2.0, seed=0):
    """Targets drawn from sigmoid(z); the model reports sigmoid(z * true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(-1.0, 1.5, (n, k))
    y = (rng.random((n, k)) < _sigmoid(z)).astype(np.uint8)
    return _sigmoid(z * true_t), y


def test_multilabel_temperature_is_recovered_and_lowers_ece():
    p, y = _overconfident_multilabel()
    t = fit_temperature_multilabel(p, y)
    assert 1.7 < t < 2.3
    q = apply_temperature_multilabel(p, t)
    assert ece_multilabel(q, y) < 0.5 * ece_multilabel(p, y)
    rep = multilabel_calibration_report(p, y, t)
    assert rep["nll"] < rep["nll_uncalibrated"] and rep["ece"] < rep["ece_uncalibrated"]
    # monotonic per score, and 1 / T is its exact inverse
    order = np.argsort(p.ravel())
    assert np.all(np.diff(q.ravel()[order]) >= -1e-7)
    assert np.allclose(apply_temperature_multilabel(q, 1.0 / t), p, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf")])
def test_multilabel_temperature_refuses_garbage(bad):
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature_multilabel(np.full((2, 3), 0.5), bad)
    with pytest.raises(ValueError, match="NaN"):
        ece_multilabel(np.array([[np.nan, 0.5]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="at least 20"):
        fit_temperature_multilabel(np.full((5, 3), 0.5), np.zeros((5, 3)))


@pytest.fixture(scope="module")
def fitted():
    (xt, yt), (xv, yv) = make_corpus(150, 0), make_corpus(60, 1)
    clf = TextEmotionClassifier("tfidf_lr", name="t", C=50.0).fit(xt, np.asarray(LABELS)[yt], labels=LABELS)
    return clf, (xv, yv)


def test_text_model_fits_a_temperature_on_validation_and_keeps_its_decisions(fitted, tmp_path):
    clf, (xv, yv) = fitted
    raw = clf.predict_proba(xv)
    cal = clf.fit_temperature(xv, yv)
    assert cal["temperature"] == clf.temperature != 1.0
    assert clf.card["calibration"]["n_fit"] == len(xv)
    q = clf.predict_proba(xv)
    assert not np.allclose(q, raw) and np.array_equal(q.argmax(1), raw.argmax(1))
    assert np.allclose(q.sum(1), 1.0, atol=1e-5)
    m = evaluate_model(clf, TextDataset(list(xv), yv, LABELS, False, "toy"))
    assert m["temperature"] == clf.temperature and m["ece"] <= m["ece_uncalibrated"] + 1e-9
    # the temperature travels with the saved model, and a new fit drops it (it belonged to the old weights)
    clf.save(tmp_path / "m")
    back = TextEmotionClassifier.load(tmp_path / "m")
    assert back.temperature == clf.temperature and np.allclose(back.predict_proba(xv), q, atol=1e-6)
    back.fit(xv, np.asarray(LABELS)[yv], labels=LABELS)
    assert back.temperature == 1.0 and "calibration" not in back.card


def test_a_bad_temperature_in_a_text_card_is_an_error_naming_the_model(fitted, tmp_path):
    clf, (xv, _) = fitted
    path = clf.save(tmp_path / "bad")
    cfg = json.loads(path.read_text())
    update_config(path, card={**cfg["card"], "calibration": {"temperature": -1}})
    with pytest.raises(ValueError, match="calibration.temperature"):
        TextEmotionClassifier.load(path).predict_proba(xv)
    assert path.with_suffix(".safetensors").exists() and not path.with_suffix(".json.tmp").exists()


def test_multilabel_text_thresholds_move_with_the_temperature(tmp_path):
    texts, y = make_corpus(180, 0)
    ym = np.zeros((len(y), 3), np.uint8)
    ym[np.arange(len(y)), y] = 1
    ym[::4, (y[::4] + 1) % 3] = 1  # some texts carry two labels
    clf = TextEmotionClassifier("tfidf_lr", C=30.0).fit(texts[:120], ym[:120], labels=LABELS,
                                                       val=(texts[120:], ym[120:]))
    assert clf.multi_label and clf.thresholds is not None
    before = clf.predict(texts)
    clf.fit_temperature(texts[120:], ym[120:])
    assert clf.temperature != 1.0
    assert np.array_equal(clf.predict(texts), before)  # every decision kept
    m = evaluate_model(clf, TextDataset(texts[120:], ym[120:], LABELS, True, "toy"))
    assert {"ece", "ece_uncalibrated", "temperature"} <= set(m)


# ------------------------------------------------------------------ roll alignment on the photo paths
class _Det:
    def __init__(self, box, landmarks):
        self.box, self.landmarks, self.score = box, landmarks, 0.9


def test_utkface_detect_crops_align_from_the_eye_keypoints(tmp_path):
    from emotionlab.data.utkface import _detect_crops

    img = np.zeros((200, 200, 3), np.uint8)
    cv2.circle(img, (80, 100), 3, (255, 255, 255), -1)
    cv2.circle(img, (120, 120), 3, (255, 255, 255), -1)
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), img)
    pad = 100  # 0.5 * 200: the border _detect_crops adds

    def detect(big):
        return [_Det((60 + pad, 70 + pad, 80, 80), [(80 + pad, 100 + pad), (120 + pad, 120 + pad)])]

    def eye_rows(crop):
        ys, xs = np.nonzero(crop > 100)
        return ys[xs < crop.shape[1] / 2].mean(), ys[xs >= crop.shape[1] / 2].mean()

    upright, _ = _detect_crops([path], 96, detect)
    aligned, _ = _detect_crops([path], 96, detect, align=True)
    l0, r0 = eye_rows(upright[0])
    l1, r1 = eye_rows(aligned[0])
    assert abs(r0 - l0) > 10 and abs(r1 - l1) < 2


def test_evaluate_align_needs_photos(tmp_path):
    from emotionlab.training.evaluation import check_evaluation_args

    csv = tmp_path / "fer.csv"
    csv.write_text("emotion,pixels,Usage\n")
    with pytest.raises(ValueError, match="--align .*--detect"):
        check_evaluation_args(csv, detect=False, align=True)
    folder = tmp_path / "photos"
    folder.mkdir()
    assert check_evaluation_args(folder, detect=True, align=True) == []


def test_training_config_knows_align():
    from emotionlab.training.config import TrainConfig

    assert TrainConfig().align is False and TrainConfig(align=True).align is True


# ------------------------------------------------------------------ the text model schema, checked on load
@pytest.mark.parametrize("field, value, needle", [
    ("format", 99, "format 99 is newer"),
    ("format", "one", "'format'"),
    ("labels", [], "'labels'"),
    ("labels", ["joy", "joy", "anger"], "'labels'"),
    ("multi_label", "no", "'multi_label'"),
    ("thresholds", [0.5, 0.5], "'thresholds'"),
    ("thresholds", [0.5, float("nan"), 0.5], "'thresholds'"),
    ("card", [], "'card'"),
    ("card", {"calibration": {"temperature": 0}}, "card.calibration.temperature"),
    ("params", "C=1", "'params'"),
])
def test_a_text_config_off_the_schema_is_refused_naming_file_and_field(fitted, tmp_path, field, value, needle):
    clf, _ = fitted
    path = clf.save(tmp_path / "m")
    update_config(path, **{field: value})
    with pytest.raises(ValueError, match=needle) as e:
        TextEmotionClassifier.load(path)
    assert str(path) in str(e.value)


def test_an_ensemble_config_checks_its_weights_and_members(fitted, tmp_path):
    clf, _ = fitted
    ens = TextEmotionClassifier.ensemble([clf, clf], [0.5, 0.5])
    path = ens.save(tmp_path / "ens")
    cfg = json.loads(path.read_text())
    assert TextEmotionClassifier.load(path).labels == LABELS
    update_config(path, weights=[0.5])
    with pytest.raises(ValueError, match="'weights'"):
        TextEmotionClassifier.load(path)
    members = cfg["members"]
    members[1] = {**members[1], "labels": ["a", "b", "c"]}
    update_config(path, weights=[0.5, 0.5], members=members)
    with pytest.raises(ValueError, match=r"members\[1\].labels"):
        TextEmotionClassifier.load(path)


def test_every_shipped_text_model_follows_the_schema():
    from emotionlab.text.hub import shipped_text_models
    from emotionlab.text.store import validate_config

    for name, path in shipped_text_models().items():
        validate_config(json.loads(path.read_text()), path)


def test_refitting_a_temperature_moves_multilabel_thresholds_from_the_old_one():
    texts, y = make_corpus(180, 2)
    ym = np.zeros((len(y), 3), np.uint8)
    ym[np.arange(len(y)), y] = 1
    ym[::3, (y[::3] + 2) % 3] = 1
    clf = TextEmotionClassifier("tfidf_lr", C=30.0).fit(texts[:120], ym[:120], labels=LABELS,
                                                       val=(texts[120:], ym[120:]))
    before = clf.predict(texts)
    clf.fit_temperature(texts[120:], ym[120:])
    th1 = clf.thresholds.copy()
    clf.fit_temperature(texts[120:], ym[120:])  # same data again: same T, same thresholds (not moved twice)
    assert np.allclose(clf.thresholds, th1, atol=1e-6) and np.array_equal(clf.predict(texts), before)
