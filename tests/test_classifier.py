"""The model -> probabilities core (``emotionlab.models.classifier``): backends agree, TTA is the mean of its
views, the softmax is stable, sessions use the threads they are given, and the core stays in the models layer."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from emotionlab.models.classifier import FaceClassifier, ort_session, softmax, to_input, tta_views

MODEL = "emonet_f_robust_fer2013"  # the smallest shipped float model (`fast`'s float source)


@pytest.fixture(scope="module")
def loaded():
    from emotionlab.models.hub import load_model

    return load_model(MODEL)


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 48, 48)).astype(np.float32)


def test_torch_and_onnx_backends_agree_on_a_shipped_model(loaded):
    onnx = FaceClassifier(loaded, backend="onnx")
    pt = FaceClassifier(loaded, backend="torch")
    assert (onnx.backend, pt.backend) == ("onnxruntime", "torch")
    assert onnx.labels == pt.labels == loaded.labels and onnx.preprocess == loaded.preprocess
    x = _x(5)
    a, b = onnx.probs(x), pt.probs(x)
    assert a.shape == (5, len(loaded.labels)) and a.dtype == np.float32
    assert np.abs(a - b).max() < 1e-4
    assert FaceClassifier(loaded).backend == "onnxruntime"  # auto on CPU: ONNX Runtime


def test_flip_tta_is_the_mean_of_the_two_views(loaded):
    x = _x(4, seed=1)
    for backend in ("torch", "onnx"):
        plain = FaceClassifier(loaded, backend=backend)
        flip = FaceClassifier(loaded, backend=backend, tta="flip")
        want = (plain.probs(x) + plain.probs(np.ascontiguousarray(x[..., ::-1]))) / 2
        np.testing.assert_allclose(flip.probs(x), want, rtol=0, atol=1e-6)
        assert np.abs(flip.probs(x) - plain.probs(x)).max() > 1e-6  # the mirror view counted


def test_predict_proba_is_probs_of_to_input_whatever_the_batch(loaded):
    faces = np.random.default_rng(2).integers(0, 256, (7, 48, 48), dtype=np.uint8)
    clf = FaceClassifier(loaded, backend="torch", tta="flip")
    want = clf.probs(to_input(torch.from_numpy(faces), loaded.preprocess).numpy())
    np.testing.assert_allclose(clf.predict_proba(faces, batch_size=3), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(faces, batch_size=256), want, rtol=0, atol=1e-6)
    assert clf.predict_proba(faces[:0]).shape == (0, len(loaded.labels))
    bare = FaceClassifier.from_module(loaded.model, loaded.preprocess, tta="flip")  # a model in training
    np.testing.assert_allclose(bare.predict_proba(faces), want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        clf.predict_proba(faces, batch_size=0)


def test_bad_backend_and_tta_are_clear_errors(loaded):
    with pytest.raises(ValueError, match="unknown backend"):
        FaceClassifier(loaded, backend="tensorrt")
    with pytest.raises(ValueError, match="unknown tta"):
        FaceClassifier(loaded, tta="twice")
    with pytest.raises(ValueError, match="threads"):
        FaceClassifier(loaded, threads=-1)
    assert len(tta_views(torch.zeros(2, 1, 8, 8), "ten")) == 10


def test_softmax_rows_sum_to_one_and_survive_huge_logits():
    z = np.array([[1e300, -1e300, 0.0], [3.0, 3.0, 3.0], [-1e308, -1e308, -1e308], [1e38, 1e38 - 1e32, -5.0]])
    p = softmax(z)
    assert p.dtype == np.float32 and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p[0], [1, 0, 0], atol=1e-7)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, atol=1e-7)
    np.testing.assert_allclose(p[2], [1 / 3] * 3, atol=1e-7)
    r = np.random.default_rng(0).standard_normal((3, 5, 7))
    np.testing.assert_allclose(softmax(r + 1e4, dtype=np.float64), softmax(r, dtype=np.float64), atol=1e-12)
    np.testing.assert_allclose(softmax(r, axis=0, dtype=np.float64).sum(0), 1.0, atol=1e-12)


def test_ort_session_honours_threads(loaded):
    from emotionlab.models.onnx import cached_model_onnx

    path = cached_model_onnx(loaded)
    for n in (1, 3, 0):
        opts = ort_session(path, threads=n).get_session_options()
        assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (n, 1)
    assert FaceClassifier(loaded, backend="onnx", threads=2)._sess.get_session_options().intra_op_num_threads == 2
    assert FaceClassifier(loaded, backend="onnx")._sess.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match="threads"):
        ort_session(path, threads=-1)


def test_the_core_imports_nothing_above_the_models_layer():
    code = ("import sys, emotionlab.models.classifier, emotionlab.models.onnx; "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('emotionlab.') "
            "and m.count('.') >= 1}))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert set(eval(out)) <= {"data", "models"}, out
