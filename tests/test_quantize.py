"""int8 models: `emotionlab maintain quantize`, the shipped graph beside shared float weights, every backend.

Quantization runs on a random emonet_n saved as a run directory and on random calibration faces, so nothing
here depends on training or on the real data (except the last test, which checks the shipped files).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_inference import FER7

torch.set_num_threads(1)


def _float_model(path: Path, stem: str = "best") -> Path:
    """A random emonet_n with BN statistics of real-ish inputs (so its logits are not flat), saved as a run."""
    from emotionlab.data.preprocess import PreprocessConfig
    from emotionlab.models import create_model
    from emotionlab.training.checkpoint import save_weights

    torch.manual_seed(0)
    m = create_model("emonet_n", num_classes=7)
    m.train()
    with torch.no_grad():  # BN running stats from a few batches: activations keep a sane scale
        for _ in range(3):
            m(torch.randn(32, 1, 48, 48))
    m.eval()
    path.mkdir(parents=True, exist_ok=True)
    save_weights(m, path / f"{stem}.safetensors")
    card = {"format": "emotionlab-model/1", "name": f"random_n_{stem}", "arch": "emonet_n", "arch_kwargs": {},
            "num_classes": 7, "label_set": "fer7", "labels": FER7, "in_size": 48, "in_chans": 1,
            "preprocess": PreprocessConfig().to_dict(), "metrics": {"PrivateTest": {"accuracy": 0.5}}}
    (path / f"{stem}.json").write_text(json.dumps(card))
    return path


def _faces(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (n, 48, 48)).astype(np.float32)
    img[:, 12:36, 12:36] *= 0.5  # some structure: a darker centre
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from emotionlab.inference.quantize import quantize_model

    root = tmp_path_factory.mktemp("q")
    run = _float_model(root / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOTIONLAB_CACHE", str(root / "cache"))
        card = quantize_model(str(run), _faces(64), root / "ship", "rand_int8", calibration_source="test faces")
    return run, card


def test_quantize_writes_int8_graph_card_and_weights(quantized):
    import onnx

    from emotionlab.data.cache import file_hash

    run, cpath = quantized
    card = json.loads(cpath.read_text())
    graph = cpath.with_suffix(".onnx")
    g = card["onnx_graph"]
    assert g["file"] == graph.name and g["sha256"] == file_hash(graph, "sha256") and g["precision"] == "int8"
    assert card["quantized_from"] == "random_n_best" and "metrics" not in card  # float metrics are not the graph's
    assert (cpath.parent / "rand_int8.safetensors").exists()  # source outside the directory: weights copied
    assert g["calibration_faces"] == 64 and g["calibration_source"] == "test faces"
    assert card["notes"].startswith("int8 ONNX graph of random_n_best")
    m = onnx.load(str(graph))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    # the first convolution (reads the graph input) stays float: its input is not quantized
    first = next(n for n in m.graph.node if n.op_type == "Conv" and "input" in n.input)
    assert first.name in g["float_nodes"]


def test_int8_graph_tracks_the_float_model(quantized, monkeypatch, tmp_path):
    from emotionlab.data.preprocess import prepare_crops
    from emotionlab.models.onnx import cached_model_onnx
    from emotionlab.models.hub import load_model

    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    run, cpath = quantized
    lm = load_model(str(cpath))
    assert cached_model_onnx(lm) == cpath.with_suffix(".onnx")  # the shipped graph, not a fresh float export
    x = prepare_crops(_faces(32, seed=5), lm.preprocess)
    with torch.inference_mode():
        ref = lm.model(torch.from_numpy(x)).numpy()
    import onnxruntime as ort

    s = ort.InferenceSession(str(cached_model_onnx(lm)), providers=["CPUExecutionProvider"])
    got = s.run(None, {"input": x})[0]
    spread = np.abs(ref - ref.mean(1, keepdims=True)).mean()
    assert not np.allclose(got, ref, atol=1e-6)  # it really is a different (quantized) computation
    assert np.abs(got - ref).mean() < 0.1 * spread, (np.abs(got - ref).mean(), spread)  # measured: ~2 %
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9


def test_shared_weights_pointer_when_quantized_beside_the_source(tmp_path, monkeypatch):
    from emotionlab.inference.quantize import quantize_model
    from emotionlab.models.hub import resolve

    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    ship = _float_model(tmp_path / "ship", stem="src_model")
    cpath = quantize_model(str(ship / "src_model.json"), _faces(32), ship, "src_int8")
    card = json.loads(cpath.read_text())
    assert card["weights"] == "src_model.safetensors" and not (ship / "src_int8.safetensors").exists()
    w, c = resolve(str(cpath))
    assert w == ship / "src_model.safetensors" and c == cpath
    with pytest.raises(ValueError, match="already an int8 graph"):
        quantize_model(str(cpath), _faces(32), ship, "twice")


def test_damaged_or_missing_graph_and_bad_weights_field_are_clear_errors(quantized, tmp_path):
    from emotionlab.models.onnx import cached_model_onnx
    from emotionlab.models.hub import load_model, resolve

    _, cpath = quantized
    d = tmp_path / "copy"
    shutil.copytree(cpath.parent, d)
    graph = d / "rand_int8.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256 .* does not match its model card"):
        cached_model_onnx(load_model(str(d / "rand_int8.json")))
    graph.unlink()
    with pytest.raises(FileNotFoundError, match="rand_int8.onnx.* missing beside the card"):
        cached_model_onnx(load_model(str(d / "rand_int8.json")))
    card = json.loads((d / "rand_int8.json").read_text())
    card["weights"] = "../elsewhere.safetensors"
    (d / "rand_int8.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="'weights' must be a .safetensors file name beside the card"):
        resolve(str(d / "rand_int8.json"))


def test_evaluate_recognizer_and_export_use_the_int8_graph(quantized, tiny_fer_csv, tmp_path, monkeypatch):
    import onnxruntime as ort

    from emotionlab.inference import FaceEmotionRecognizer
    from emotionlab.models.classifier import FaceClassifier
    from emotionlab.models.onnx import export_onnx
    from emotionlab.models.hub import load_model
    from emotionlab.training.engine import predict_proba
    from emotionlab.training.evaluation import run_evaluation

    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    _, cpath = quantized
    auto = run_evaluation(str(cpath), tiny_fer_csv, split="PrivateTest", quiet=True)
    forced = run_evaluation(str(cpath), tiny_fer_csv, split="PrivateTest", quiet=True, backend="torch")
    assert auto["backend"] == "onnxruntime" and forced["backend"] == "torch" and auto["n"] == forced["n"] > 0
    with pytest.raises(ValueError, match="unknown backend"):
        run_evaluation(str(cpath), tiny_fer_csv, quiet=True, backend="tensorrt")

    lm = load_model(str(cpath))
    faces = _faces(6, seed=3)
    p_int8 = FaceClassifier(lm, backend="onnx").predict_proba(faces)
    p_flip = FaceClassifier(lm, backend="onnx", tta="flip").predict_proba(faces)
    assert p_int8.shape == (6, 7) and np.allclose(p_int8.sum(1), 1, atol=1e-5)
    assert not np.allclose(p_int8, p_flip)  # the flip view was used
    assert not np.allclose(p_int8, predict_proba(lm.model, faces, lm.preprocess), atol=1e-6)

    rec = FaceEmotionRecognizer(str(cpath), detector="haar")
    assert rec.backend == "onnxruntime"
    x = np.random.default_rng(2).standard_normal((3, 1, 48, 48)).astype(np.float32)
    direct = ort.InferenceSession(str(cpath.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    logits = direct.run(None, {"input": x})[0]
    e = np.exp(logits - logits.max(1, keepdims=True))
    assert np.allclose(rec.classify(x), e / e.sum(1, keepdims=True), atol=1e-5)

    out = export_onnx(str(cpath), tmp_path / "exported.onnx")
    assert out.read_bytes() == cpath.with_suffix(".onnx").read_bytes()
    assert json.loads(out.with_suffix(".json").read_text())["onnx"]["precision"].startswith("int8")


def test_quantize_cli_scores_times_and_aliases(tiny_fer_csv, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from emotionlab.cli import app

    monkeypatch.setenv("EMOTIONLAB_CACHE", str(tmp_path / "cache"))
    run = _float_model(tmp_path / "run")
    out = tmp_path / "ship"
    res = CliRunner().invoke(app, ["maintain", "quantize", str(run), "--name", "cli_int8", "--data", str(tiny_fer_csv),
                                   "--calibration", "10", "--out", str(out), "--alias", "fast"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    card = json.loads((out / "cli_int8.json").read_text())
    assert card["schema_version"] == 1  # written through ModelCard
    assert set(card["metrics"]) >= {"PublicTest", "PrivateTest", "PrivateTest+tta_flip", "evaluated"}
    assert card["metrics"]["PrivateTest"]["backend"] == "onnxruntime"
    lat = card["onnx_graph"]["latency"]
    assert lat["int8_ms_per_face"] > 0 and lat["float_ms_per_face"] > 0
    assert card["float_metrics"] == {"PrivateTest": 0.5}
    assert json.loads((out / "aliases.json").read_text()) == {"fast": "cli_int8"}
    bad = CliRunner().invoke(app, ["maintain", "quantize", str(run), "--name", "x", "--data", str(tiny_fer_csv),
                                   "--calibration", "100000", "--out", str(out)])
    assert bad.exit_code != 0 and "--calibration 100000: expected 1.." in bad.output


def test_shipped_int8_models_verify_and_keep_the_first_conv_float():
    """Every shipped int8 graph matches its card's sha256, shares existing float weights and keeps the first
    convolution in float (the AVX2 saturation fix, see emotionlab.inference.quantize)."""
    from emotionlab.models.onnx import shipped_graph
    from emotionlab.models.hub import load_model, shipped_models

    int8 = [n for n, c in shipped_models().items() if json.loads(c.read_text()).get("onnx_graph")]
    for name in int8:
        lm = load_model(name)
        path = shipped_graph(lm)
        assert path is not None and path.exists()
        g = lm.card["onnx_graph"]
        assert g["exclude"] in ("first_conv", "first_conv+fc") and g["float_nodes"]
        assert lm.card["metrics"]["PrivateTest"]["backend"] == "onnxruntime"
