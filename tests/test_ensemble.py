"""Face-model ensembles: one model whose probabilities are the weighted mean of its members'."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.labels import get_label_set
from emotionlab.data.preprocess import PreprocessConfig
from emotionlab.models import create_model
from emotionlab.models.ensemble import ProbEnsemble
from emotionlab.models.hub import load_model
from emotionlab.training.checkpoint import save_weights

LABELS = list(get_label_set("fer7").labels)


def make_run(d, seed: int, labels=LABELS, size: int = 48):
    """A run directory (best.safetensors + best.json) of an untrained emonet_t with its own random weights."""
    torch.manual_seed(seed)
    m = create_model("emonet_t", num_classes=len(labels), in_size=size)
    d.mkdir(parents=True)
    save_weights(m, d / "best.safetensors")
    card = {"name": d.name, "arch": "emonet_t", "arch_kwargs": {}, "num_classes": len(labels), "labels": labels,
            "in_size": size, "in_chans": 1, "preprocess": PreprocessConfig(size=size).to_dict(), "params": 1,
            "mflops": 2.0}
    (d / "best.json").write_text(json.dumps(card))
    return d


def test_ensemble_softmax_is_the_weighted_mean_of_member_probabilities(tmp_path):
    a, b = (load_model(make_run(tmp_path / n, s)).model for n, s in (("a", 0), ("b", 1)))
    ens = ProbEnsemble([a, b], [3.0, 1.0]).eval()
    x = torch.randn(5, 1, 48, 48)
    with torch.no_grad():
        pa, pb = a(x).softmax(1), b(x).softmax(1)
        got = ens(x).softmax(1)
    assert not torch.allclose(pa, pb, atol=1e-3)  # two different members, or the test proves nothing
    torch.testing.assert_close(got, 0.75 * pa + 0.25 * pb, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        ProbEnsemble([a, b], [1.0, 0.0])


def test_cli_ensemble_loads_evaluates_and_moves_with_its_members(tmp_path, tiny_fer_csv):
    runs = tmp_path / "runs"
    make_run(runs / "a", 0)
    make_run(runs / "b", 1)
    runner = CliRunner()
    res = runner.invoke(app, ["maintain", "ensemble", str(runs / "a"), str(runs / "b"), "--weight", "2",
                              "--weight", "1", "--out", str(runs / "ens")])
    assert res.exit_code == 0, res.output
    card = json.loads((runs / "ens" / "ensemble.json").read_text())
    assert [m["model"] for m in card["members"]] == ["../a", "../b"]  # relative: the folder can move
    assert [m["weight"] for m in card["members"]] == [2.0, 1.0] and card["labels"] == LABELS

    moved = tmp_path / "elsewhere"
    shutil.copytree(runs, moved)
    shutil.rmtree(runs)
    lm = load_model(moved / "ens")
    assert isinstance(lm.model, ProbEnsemble)
    assert {p.parent.name for p in lm.weight_files} == {"a", "b"}
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        want = (2 * load_model(moved / "a").model(x).softmax(1) + load_model(moved / "b").model(x).softmax(1)) / 3
        torch.testing.assert_close(lm.model(x).softmax(1), want, atol=1e-6, rtol=1e-5)

    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["evaluate", "--model", str(moved / "ens"), "--data", str(tiny_fer_csv),
                              "--split", "PrivateTest", "--json", str(out)])
    assert res.exit_code == 0, res.output
    ev = json.loads(out.read_text())
    assert ev["n"] == 23 and 0.0 <= ev["accuracy"] <= 1.0 and ev["labels"] == LABELS


def test_ensemble_members_must_share_labels_and_input(tmp_path):
    make_run(tmp_path / "a", 0)
    make_run(tmp_path / "b", 1, labels=LABELS[::-1])
    make_run(tmp_path / "c", 2, size=40)
    runner = CliRunner()
    res = runner.invoke(app, ["maintain", "ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                              str(tmp_path / "e1")])
    assert res.exit_code == 2 and "labels" in res.output and "member" in res.output
    res = runner.invoke(app, ["maintain", "ensemble", str(tmp_path / "a"), str(tmp_path / "c"), "--out",
                              str(tmp_path / "e2")])
    assert res.exit_code == 2 and "in_size" in res.output
    res = runner.invoke(app, ["maintain", "ensemble", str(tmp_path / "a"), "--out", str(tmp_path / "e3")])
    assert res.exit_code == 2 and "at least two" in res.output
    res = runner.invoke(app, ["maintain", "ensemble", str(tmp_path / "a"), str(tmp_path / "a"), "--weight", "1",
                              "--out", str(tmp_path / "e4")])
    assert res.exit_code == 2 and "one per member" in res.output
    # a hand-edited card whose member is missing names the card and the member
    card = tmp_path / "bad" / "ensemble.json"
    card.parent.mkdir()
    card.write_text(json.dumps({"format": "emotionlab-ensemble/1", "arch": "ensemble", "labels": LABELS,
                                "in_size": 48, "members": [{"model": "../a"}, {"model": "../gone"}]}))
    with pytest.raises(FileNotFoundError, match=r"ensemble.json: member .*gone"):
        load_model(card.parent)


def test_ensemble_exports_to_onnx_and_its_cache_key_follows_member_weights(tmp_path):
    from emotionlab.models.onnx import cached_model_onnx, export_onnx

    make_run(tmp_path / "a", 0)
    make_run(tmp_path / "b", 1)
    res = CliRunner().invoke(app, ["maintain", "ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                                   str(tmp_path / "ens")])
    assert res.exit_code == 0, res.output
    path = export_onnx(str(tmp_path / "ens"), tmp_path / "onnx")
    assert json.loads(path.with_suffix(".json").read_text())["onnx"]["max_abs_diff_vs_torch"] < 1e-3
    first = cached_model_onnx(load_model(tmp_path / "ens"))
    make_run(tmp_path / "b2", 5)  # retrain a member in place: the cached graph must not be reused
    shutil.copyfile(tmp_path / "b2" / "best.safetensors", tmp_path / "b" / "best.safetensors")
    second = cached_model_onnx(load_model(tmp_path / "ens"))
    assert first != second and first.exists() and second.exists()


def test_shipping_an_ensemble_needs_shipped_members(tmp_path):
    make_run(tmp_path / "a", 0)
    make_run(tmp_path / "b", 1)
    runner = CliRunner()
    assert runner.invoke(app, ["maintain", "ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                               str(tmp_path / "ens")]).exit_code == 0
    res = runner.invoke(app, ["maintain", "ship", str(tmp_path / "ens"), "--name", "never_shipped"])
    assert res.exit_code == 2 and "ship each of them first" in res.output
    from emotionlab.models.hub import WEIGHTS_DIR

    assert not (WEIGHTS_DIR / "never_shipped.json").exists()


def test_ensemble_of_shipped_names_pins_aliases(tmp_path):
    from emotionlab.models.hub import aliases

    res = CliRunner().invoke(app, ["maintain", "ensemble", "fast", "emonet_f_robust_fer2013",
                                   "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    card = json.loads((tmp_path / "e" / "ensemble.json").read_text())
    assert [m["model"] for m in card["members"]] == [aliases()["fast"], "emonet_f_robust_fer2013"]
    lm = load_model(tmp_path / "e")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 48, 48), dtype=np.float32))
    with torch.no_grad():
        assert torch.allclose(lm.model(x).softmax(1).sum(1), torch.ones(2), atol=1e-5)


def test_gradcam_of_an_ensemble_uses_every_member(tmp_path):
    """Two copies of one model: each member's map gets half the gradient of the ensemble's score, so the
    ensemble's Grad-CAM equals the single model's Grad-CAM of its log-probability. With two different members
    the map differs from the last member's alone (what the last-feature-map rule alone would explain)."""
    import copy

    import torch.nn.functional as F

    from emotionlab.explain.maps import gradcam

    a = load_model(make_run(tmp_path / "a", 0)).model
    b = load_model(make_run(tmp_path / "b", 1)).model
    x = torch.rand(2, 1, 48, 48)
    twin = ProbEnsemble([a, copy.deepcopy(a)], [1.0, 1.0]).eval()
    got, pred, _ = gradcam(twin, x)
    want, want_pred, _ = gradcam(a, x, head=lambda o: F.log_softmax(o, 1))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
    assert torch.equal(pred, want_pred)
    mixed = ProbEnsemble([a, b], [1.0, 1.0]).eval()
    both, pred, _ = gradcam(mixed, x)
    only_b, _, _ = gradcam(mixed, x, target=pred, target_layer=f"members.1.{_last_layer_name(mixed.members[1], x)}")
    assert both.shape == (2, 48, 48) and float(both.min()) >= 0 and float(both.max()) <= 1
    assert not torch.allclose(both, only_b, atol=1e-3)  # member 0's map counts too


def _last_layer_name(model, x):
    from emotionlab.explain.maps import find_gradcam_layer

    layer = find_gradcam_layer(model, x)
    return next(n for n, m in model.named_modules() if m is layer)
