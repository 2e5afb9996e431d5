"""Post-hoc logit bias: the search, the bake into the classifier, and `maintain tune-bias`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.models import create_model
from emotionlab.training.calibrate import bake_logit_bias, score, tune_logit_bias


def _rare_class_logits(seed: int = 0):
    """3 classes; class 2 (10 % of the faces) ranks right but its logit sits 3.5 too low to ever win."""
    rng = np.random.default_rng(seed)
    y = np.array([0] * 140 + [1] * 130 + [2] * 30)
    z = 2.0 * np.eye(3)[y] + rng.normal(0, 0.4, (len(y), 3))
    z[:, 2] -= 3.5
    return np.stack([z, z + rng.normal(0, 0.1, z.shape)]), y  # two views


def test_tune_logit_bias_lets_a_never_predicted_class_win_and_leaves_others_at_zero():
    logits, y = _rare_class_logits()
    zero = np.zeros(3)
    assert score(logits, y, zero, "macro_f1") < 0.67  # class 2 is never predicted: its F1 is 0
    bias, sweep = tune_logit_bias(logits, y, [2], "macro_f1")
    assert 1.5 <= bias[2] <= 3.0 and bias[0] == bias[1] == 0
    assert score(logits, y, bias, "macro_f1") > score(logits, y, zero, "macro_f1") + 0.2
    assert max(r["macro_f1"] for r in sweep) == pytest.approx(score(logits, y, bias, "macro_f1"))
    both, _ = tune_logit_bias(logits, y, [0, 2], "macro_f1")
    assert both[2] > 1.0 and abs(both[0]) <= 0.5  # class 0 needs little: coordinate ascent keeps it small
    with pytest.raises(ValueError, match="unknown metric"):
        tune_logit_bias(logits, y, [2], "f1")


@pytest.mark.parametrize("arch", ["emonet_t", "mini_xception", "simple_cnn"])
def test_bake_shifts_the_logits_by_exactly_the_bias(arch):
    m = create_model(arch, num_classes=7).eval()
    x = torch.randn(3, 1, m.in_size, m.in_size)
    with torch.no_grad():
        before = m(x)
    b = np.array([0.0, 0.5, 0, 0, -1.0, 0, 2.0])
    bake_logit_bias(m, b, x)
    with torch.no_grad():
        assert torch.allclose(m(x) - before, torch.tensor(b, dtype=torch.float32).expand(3, 7), atol=1e-4)


def test_bake_refuses_a_head_whose_bias_is_normalized_away():
    m = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).eval()
    with torch.no_grad():
        m[1].running_var.fill_(4.0)
    w = m[0].bias.detach().clone()
    with pytest.raises(ValueError, match="did not shift the logits"):
        bake_logit_bias(m, np.array([1.0, 0, 0]), torch.randn(2, 4))
    assert torch.equal(m[0].bias, w)  # left as it was


def test_tune_bias_cli_writes_a_shippable_run_with_its_record(tiny_fer_csv, tmp_path):
    from emotionlab.training.config import TrainConfig
    from emotionlab.training.engine import fit

    run = tmp_path / "run"
    fit(TrainConfig.from_dict(dict(model="emonet_t", data=str(tiny_fer_csv), epochs=1, batch_size=8, lr=0.05,
                                   threads=1)), run)
    out = tmp_path / "adj"
    r = CliRunner().invoke(app, ["maintain", "tune-bias", str(run), "--data", str(tiny_fer_csv), "--classes",
                                 "disgust,fear", "--out", str(out), "--lo", "-0.5", "--hi", "0.5", "--step", "0.5"])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "best.json").read_text())
    assert card["schema_version"] == 1  # written through ModelCard
    rec = card["logit_bias"]
    assert set(rec["biases"]) == {"disgust", "fear"} and rec["layer"] == "fc.bias"
    assert all(v in (-0.5, 0.0, 0.5) for v in rec["biases"].values())
    assert rec["chosen_on"] == "PublicTest (23 faces)" and rec["command"].startswith("emotionlab")
    assert card["metrics"]["validation"]["accuracy"] == pytest.approx(rec["validation_after"]["accuracy"])
    assert "PrivateTest" not in card["metrics"]  # the source's test metrics belong to other weights
    src, adj = load_file(str(run / "best.safetensors")), load_file(str(out / "best.safetensors"))
    changed = [k for k in src if not torch.equal(src[k], adj[k])]
    assert changed in ([], ["fc.bias"])
    shift = (adj["fc.bias"] - src["fc.bias"]).numpy()
    assert shift[1] == pytest.approx(rec["biases"]["disgust"]) and shift[2] == pytest.approx(rec["biases"]["fear"])
    assert np.allclose(np.delete(shift, [1, 2]), 0)
    r = CliRunner().invoke(app, ["maintain", "tune-bias", str(run), "--data", str(tiny_fer_csv), "--classes",
                                 "disgust", "--out", str(out)])
    assert r.exit_code == 2 and "already holds a model" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["maintain", "tune-bias", str(run), "--data", str(tiny_fer_csv), "--classes",
                                 "contempt", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "contempt not among the model's labels" in " ".join(r.output.split())
