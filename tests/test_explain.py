"""Heat maps, guided-backprop hygiene, occlusion study and the explain CLIs, on tiny random models."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import make_fer_rows
from torch import nn

from emotionlab.data.occlusion import apply_mask, get_mask
from emotionlab.explain import METHODS, explain, find_gradcam_layer, guided_relus, overlay
from emotionlab.models import create_model

torch.set_num_threads(1)
ARCHS = ("emonet_t", "mini_xception", "seed_cnn")


def _model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name).eval()


def _input(seed: int = 0, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, size, size, generator=g)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def _save_run(model: nn.Module, run: Path) -> Path:
    """A run directory that ``load_model`` accepts: best.safetensors + a model card like training writes."""
    from emotionlab.data.preprocess import PreprocessConfig
    from emotionlab.training.checkpoint import save_weights, write_json

    run.mkdir(parents=True, exist_ok=True)
    save_weights(model, run / "best.safetensors")
    write_json(run / "best.json", {
        "format": "emotionlab-model/1", "name": f"test-{model.arch}", "arch": model.arch, "arch_kwargs": {},
        "num_classes": 7, "label_set": "fer7",
        "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        "in_size": model.in_size, "in_chans": 1, "preprocess": PreprocessConfig(size=model.in_size).to_dict()})
    return run


# ------------------------------------------------------------------------------------------------ maps
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_map_shape_range_and_finite(arch, method):
    model = _model(arch)
    hm, pred, probs = explain(model, _input(), method)
    assert hm.shape == (48, 48) and hm.dtype == np.float32
    assert np.isfinite(hm).all() and hm.min() >= 0 and hm.max() <= 1
    assert 0 <= pred < 7 and probs.shape == (7,) and abs(probs.sum() - 1) < 1e-5
    assert pred == int(np.argmax(probs))
    if method != "gradcam":  # gradients of a random net are never all zero; Grad-CAM may be (ReLU of < 0)
        assert hm.max() == pytest.approx(1.0)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_map_depends_on_target_class(arch, method):
    model = _model(arch)
    x = _input(1)
    maps, _, _ = explain(model, x.expand(7, -1, -1, -1), method, target=list(range(7)))  # class c in row c
    assert any(not np.allclose(maps[0], m, atol=1e-4) for m in maps[1:])
    # a label name selects the same class as its index
    by_name = explain(model, x, method, target="happy", labels=["angry", "disgust", "fear", "happy", "sad",
                                                                  "surprise", "neutral"])[0]
    np.testing.assert_allclose(by_name, maps[3], atol=1e-4)  # batched vs single conv: float noise only


def test_batch_matches_single_inputs():
    model = _model("emonet_t")
    x = torch.stack([_input(i)[0:1] for i in range(3)])  # (3,1,48,48)
    maps, preds, probs = explain(model, x, "saliency", target=[0, 3, 5])
    assert maps.shape == (3, 48, 48) and preds.shape == (3,) and probs.shape == (3, 7)
    for i, t in enumerate([0, 3, 5]):
        np.testing.assert_allclose(maps[i], explain(model, x[i], "saliency", target=t)[0], atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    model = _model("emonet_t")
    with pytest.raises(ValueError, match="unknown explanation method"):
        explain(model, _input(), "lime")
    with pytest.raises(ValueError, match="out of range"):
        explain(model, _input(), "saliency", target=7)
    with pytest.raises(ValueError, match="unknown target class"):
        explain(model, _input(), "saliency", target="joy", labels=["angry", "happy"])
    with pytest.raises(TypeError, match="normalized float"):
        explain(model, torch.zeros(1, 48, 48, dtype=torch.uint8), "saliency")


@pytest.mark.parametrize("arch", ARCHS)
def test_guided_backprop_restores_model_and_removes_hooks(arch):
    model = _model(arch)
    x = _input(2).unsqueeze(0)
    relus_before = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert relus_before and all(m.inplace for _, m in relus_before)  # the zoo's ReLUs are in-place
    with torch.no_grad():
        before = model(x).clone()
    hooks_before = _hook_count(model)
    explain(model, x, "guided-backprop")
    explain(model, x, "gradcam")
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, after)  # bit-identical forward output
    assert _hook_count(model) == hooks_before == 0
    relus_after = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert [(n, id(m)) for n, m in relus_after] == [(n, id(m)) for n, m in relus_before]
    assert torch.nn.functional.relu.__name__ == "relu"
    assert not model.training


def test_guided_relus_swaps_inplace_relus_and_restores_on_error():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3), nn.ReLU())
    originals = [model[1], model[3]]
    with pytest.raises(RuntimeError, match="boom"), guided_relus(model) as n:
        assert n == 2 and not any(isinstance(m, nn.ReLU) for m in model)
        raise RuntimeError("boom")
    assert [model[1], model[3]] == originals


def test_guided_backprop_differs_from_plain_gradient_and_is_positive_guided():
    """Guided backprop zeroes negative gradients at every ReLU, so it must differ from saliency."""
    model = _model("seed_cnn")
    x = _input(3)
    g, _, _ = explain(model, x, "guided-backprop", target=0)
    s, _, _ = explain(model, x, "saliency", target=0)
    assert not np.allclose(g, s, atol=1e-3)


def test_functional_relu_models_are_guided():
    class FunctionalNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            return self.fc(torch.nn.functional.relu(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    net = FunctionalNet().eval()
    x = torch.randn(1, 1, 8, 8)
    g, _, _ = explain(net, x, "guided-backprop", target=0)
    s, _, _ = explain(net, x, "saliency", target=0)
    assert not np.allclose(g, s)


def test_gradcam_layer_is_last_spatial_feature_map():
    emonet = _model("emonet_t")
    assert find_gradcam_layer(emonet, _input()) is emonet.stages  # not the shortcut or SE 1x1 convs
    mx = _model("mini_xception")
    assert find_gradcam_layer(mx, _input()) is mx.head
    hm, _, _ = explain(emonet, _input(), "gradcam", target_layer="stages.2")  # by name, 6x6 map
    assert hm.shape == (48, 48)
    with pytest.raises(ValueError, match="no layer"):
        explain(emonet, _input(), "gradcam", target_layer="nope")


def test_overlay_is_bgr_at_crop_size():
    crop = np.full((48, 48), 128, np.uint8)
    hm = np.zeros((12, 12), np.float32)
    hm[:6] = 1.0
    img = overlay(crop, hm)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert not np.array_equal(img[0, 0], img[47, 0])  # hot top, cold bottom


# ------------------------------------------------------------------------------------------- occlusion
def test_masks_hit_the_right_rows():
    f, e, m = get_mask("forehead", 48), get_mask("eyes", 48), get_mask("mouth", 48)
    assert f[:12].all() and not f[12:].any()
    assert e[12:24].all() and not e[:12].any() and not e[24:].any()
    assert m[24:].all() and not m[:24].any()
    imgs = np.full((2, 48, 48), 200, np.uint8)
    out = apply_mask(imgs, e)
    assert (out[:, 12:24] == 0).all() and (out[:, :12] == 200).all() and (imgs == 200).all()
    with pytest.raises(KeyError, match="unknown occlusion"):
        get_mask("nose", 48)


class BandModel(nn.Module):
    """A perfect classifier for ``make_fer_rows`` faces: class k's logit is the brightness of rows 6k..6k+6,
    so hiding a band of rows must break exactly the classes whose band lies under the mask."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.in_size, self.num_classes = 48, 7

    def forward(self, x):
        return torch.stack([x[:, 0, 6 * k:6 * k + 6].mean((1, 2)) for k in range(7)], 1) * self.scale


def _loaded(arch: str = "emonet_t"):
    from emotionlab.data.preprocess import PreprocessConfig
    from emotionlab.models.hub import LoadedModel

    model = BandModel().eval() if arch == "band" else _model(arch)
    card = {"name": f"test-{arch}", "labels": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
            "preprocess": PreprocessConfig(size=model.in_size).to_dict()}
    return LoadedModel(model, card, Path("test.safetensors"))


def test_occlusion_table_structure_and_files(tmp_path):
    from emotionlab.explain.occlusion_study import occlusion_markdown, occlusion_table

    images, labels, _ = make_fer_rows(28)
    masks = ["none", "forehead", "eyes", "mouth"]
    table = occlusion_table(_loaded("band"), images, labels, masks, out_dir=tmp_path)
    assert list(table) == masks
    for name, met in table.items():
        for key in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "labels", "n",
                    "per_class_accuracy"):
            assert key in met, (name, key)
        assert met["n"] == 28 and np.asarray(met["confusion_matrix"]).sum() == 28
        assert set(met["per_class_accuracy"]) == set(met["labels"])
        assert met["per_class_accuracy"]["happy"] == met["per_class"]["happy"]["recall"]
    # bands: angry/disgust rows 0-11 (forehead), fear/happy 12-23 (eyes), sad/surprise/neutral 24-41 (mouth)
    hidden = {"none": set(), "forehead": {"angry", "disgust"}, "eyes": {"fear", "happy"},
              "mouth": {"sad", "surprise", "neutral"}}
    for name, classes in hidden.items():
        pca = table[name]["per_class_accuracy"]
        assert {lab for lab, acc in pca.items() if acc == 0.0} == classes, name
        assert all(acc == 1.0 for lab, acc in pca.items() if lab not in classes), name
    assert table["none"]["accuracy"] == 1.0 and table["eyes"]["accuracy"] == pytest.approx(20 / 28)
    md = (tmp_path / "occlusion.md").read_text()
    assert md == occlusion_markdown(table, title=md.splitlines()[0][4:])
    for m in masks:
        assert f"| {m} |" in md
    assert "| mask | accuracy | weighted F1 | Δ acc | angry |" in md
    assert "| eyes | 71.4 |" in md and "| -28.6 |" in md
    assert cv2.imread(str(tmp_path / "occlusion.png")) is not None
    assert json.loads((tmp_path / "occlusion.json").read_text())["eyes"]["n"] == 28


def test_occlusion_table_matches_manual_masking():
    from emotionlab.explain.occlusion_study import occlusion_table
    from emotionlab.training.engine import predict_proba

    loaded = _loaded("mini_xception")
    images, labels, _ = make_fer_rows(14, seed=3)
    table = occlusion_table(loaded, images, labels, ["eyes"])
    manual = predict_proba(loaded.model, apply_mask(images, get_mask("eyes", 48)), loaded.preprocess).argmax(1)
    assert table["eyes"]["accuracy"] == pytest.approx(float((manual == labels).mean()))


def test_occlusion_table_rejects_bad_input():
    from emotionlab.explain.occlusion_study import occlusion_table

    images, labels, _ = make_fer_rows(7)
    with pytest.raises(KeyError, match="unknown occlusion"):
        occlusion_table(_loaded(), images, labels, ["none", "nose"])
    with pytest.raises(ValueError, match="labels"):
        occlusion_table(_loaded(), images, labels[:3], ["none"])
    with pytest.raises(ValueError, match="uint8"):
        occlusion_table(_loaded(), images.astype(np.float32), labels, ["none"])


# ------------------------------------------------------------------------------------------------- CLI
def test_explain_cli_on_crops(tmp_path):
    from typer.testing import CliRunner

    from emotionlab.cli import app

    run = _save_run(_model("emonet_t"), tmp_path / "run")
    images, _, _ = make_fer_rows(2)
    paths = []
    for i, im in enumerate(images):
        p = tmp_path / f"face{i}.png"
        cv2.imwrite(str(p), im)
        paths.append(str(p))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["explain", *paths, "--model", str(run), "--method", "saliency,gradcam",
                                   "--target", "Happiness", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "explanations.json").read_text())
    assert len(rows) == 4 and {r["method"] for r in rows} == {"saliency", "gradcam"}
    assert all(r["target"] == "happy" and r["source"] == "crop" for r in rows)
    for r in rows:
        img = cv2.imread(r["file"])
        assert img is not None and img.shape[1] == 192
    res = CliRunner().invoke(app, ["explain", paths[0], "--model", str(run), "--target", "joyful",
                                   "--out", str(out)])
    assert res.exit_code != 0 and "not a class" in str(res.exception) + res.output
    odd = tmp_path / "maps [red]v2"  # printed as it is, not read as console markup
    res = CliRunner().invoke(app, ["explain", paths[0], "--model", str(run), "--out", str(odd)])
    assert res.exit_code == 0 and f"overlays in {odd} (index: {odd}/explanations.json)" in " ".join(res.output.split())


def test_explain_cli_bad_method_and_missing_file(tmp_path):
    from typer.testing import CliRunner

    from emotionlab.cli import app

    res = CliRunner().invoke(app, ["explain", str(tmp_path / "x.png"), "--method", "lime"])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["explain", str(tmp_path / "missing.png"), "--method", "saliency"])
    assert res.exit_code == 2


def test_explain_dataset_cli(tmp_path, tiny_fer_csv):
    from typer.testing import CliRunner

    from emotionlab.cli import app

    run = _save_run(_model("mini_xception"), tmp_path / "run")
    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["explain-dataset", "--data", str(tiny_fer_csv), "--model", str(run),
                                   "--split", "PrivateTest", "--per-class", "2", "--examples", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["classes"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert all(c["n"] <= 2 for c in summary["classes"].values()) and summary["n"] > 0
    with np.load(out / "maps.npz") as z:
        assert z["mean_face"].shape == (7, 48, 48) and z["mean_gradcam"].shape == (7, 48, 48)
        assert np.isfinite(z["mean_saliency"]).all() and z["mean_saliency"].max() <= 1
    for f in ("average_maps.png", "examples.png"):
        assert cv2.imread(str(out / f)) is not None


def test_landmarks_map_into_crop_and_medical_mask_covers_mouth_not_eyes():
    from emotionlab.data.preprocess import PreprocessConfig, crop_face
    from emotionlab.explain.faces import landmarks_in_crop
    from emotionlab.explain.occlusion_study import TEMPLATE_LANDMARKS, face_occlusion

    cfg = PreprocessConfig(size=48, expand=1.15)
    box = (100, 60, 80, 80)
    # a bright dot at a landmark must land on the same crop pixel as the mapped landmark
    img = np.zeros((300, 300), np.uint8)
    img[118:123, 158:163] = 255  # centre (160, 120)
    (lx, ly), = landmarks_in_crop([(160.0, 120.0)], box, cfg)
    crop = crop_face(img, box, cfg)
    yy, xx = np.unravel_index(np.argmax(crop), crop.shape)
    assert abs(xx - lx) <= 1.5 and abs(yy - ly) <= 1.5
    mask, src = face_occlusion("medical", 48)
    assert src == "template" and mask.dtype == bool
    (rex, rey), (lex, ley), (nx, ny), (mx, my) = (TEMPLATE_LANDMARKS * 48).astype(int)
    assert mask[my, mx] and mask[ny + 3, nx] and not mask[rey, rex] and not mask[ley, lex]
    lm = TEMPLATE_LANDMARKS * 48 + np.array([0, 4], np.float32)  # detector landmarks take precedence
    mask2, src2 = face_occlusion("medical", 48, lm)
    assert src2 == "landmarks" and not np.array_equal(mask, mask2)
    with pytest.raises(KeyError, match="unknown occlusion"):
        face_occlusion("scarf", 48)


def test_occlusion_table_medical_template():
    from emotionlab.explain.occlusion_study import face_occlusion, occlusion_table
    from emotionlab.training.engine import predict_proba

    images, labels, _ = make_fer_rows(14)
    table = occlusion_table(_loaded("band"), images, labels, ["none", "medical"])
    pca = table["medical"]["per_class_accuracy"]
    assert pca["angry"] == 1.0 and pca["disgust"] == 1.0  # forehead bands stay visible
    loaded = _loaded("mini_xception")
    table = occlusion_table(loaded, images, labels, ["medical"])
    masked = apply_mask(images, face_occlusion("medical", 48)[0])
    assert (masked[:, 40, 24] == 0).all() and (masked[:, 5, 24] == images[:, 5, 24]).all()
    manual = predict_proba(loaded.model, masked, loaded.preprocess).argmax(1)
    assert table["medical"]["accuracy"] == pytest.approx(float((manual == labels).mean()))


def test_explain_cli_occlude(tmp_path):
    from typer.testing import CliRunner

    from emotionlab.cli import app

    run = _save_run(_model("emonet_t"), tmp_path / "run")
    p = tmp_path / "face.png"
    cv2.imwrite(str(p), np.full((48, 48), 200, np.uint8))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["explain", str(p), "--model", str(run), "--method", "saliency",
                                   "--occlude", "eyes", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (row,) = json.loads((out / "explanations.json").read_text())
    assert row["occlude"] == "eyes" and "_eyes_" in row["file"]
    img = cv2.imread(row["file"])
    # the eye band (rows 12-23 of 48, x4 in the 192 px overlay) is darker than the forehead
    assert img[60:84].mean() < img[10:40].mean()
