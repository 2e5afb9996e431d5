"""Training engine: augmentation, checkpoints / resume, schedules, evaluation and the CLI, on tiny data."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.training.augment import AugmentConfig, augment_batch, mix_batch, occlusion
from emotionlab.training.config import TrainConfig
from emotionlab.training.engine import build_scheduler, fit, param_groups, soft_cross_entropy, tta_views

runner = CliRunner()


def tiny_cfg(data, **kw) -> TrainConfig:
    base = dict(model="mini_xception", data=str(data), epochs=2, batch_size=8, lr=0.05, schedule="cosine",
                warmup_epochs=0.5, threads=1)
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_augment_keeps_shape_and_changes_pixels():
    x = torch.randn(8, 1, 48, 48)
    g = torch.Generator().manual_seed(0)
    y = augment_batch(x, AugmentConfig(noise=0.1, erase=1.0), g)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(x, y)


def test_flip_only_is_exact_mirror():
    x = torch.randn(16, 1, 8, 8)
    cfg = AugmentConfig(flip=1.0, rotate=0.0, scale=(1.0, 1.0), translate=0.0)
    y = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(y, x.flip(-1), atol=1e-5)


def test_occlusion_hides_exactly_one_band():
    x = torch.ones(32, 1, 48, 48)
    y = occlusion(x, 1.0, 0.0, torch.Generator().manual_seed(1))
    for img in y[:, 0]:
        zero_rows = (img == 0).all(1).nonzero().flatten().tolist()
        assert zero_rows in (list(range(0, 12)), list(range(12, 24)), list(range(24, 48)))


def test_mixup_targets_stay_distributions():
    x = torch.randn(8, 1, 16, 16)
    t = torch.eye(7)[torch.arange(8) % 7]
    _, y = mix_batch(x, t, AugmentConfig(mixup=0.4, cutmix=0.5), torch.Generator().manual_seed(0))
    assert torch.allclose(y.sum(1), torch.ones(8))


def test_soft_cross_entropy_equals_hard_ce_for_one_hot():
    logits = torch.randn(5, 7)
    y = torch.tensor([0, 3, 6, 2, 1])
    ce = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(soft_cross_entropy(logits, torch.eye(7)[y]), ce, atol=1e-6)


def test_per_layer_l2_groups():
    from emotionlab.models import create_model

    groups = param_groups(create_model("seed_cnn"), 1e-4)
    decays = sorted({g["weight_decay"] for g in groups})
    assert decays == [0.0, 1e-4, 1e-3]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "plateau", "none"])
def test_schedules_build(schedule):
    m = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    cfg = TrainConfig(epochs=4, schedule=schedule)
    sched, unit = build_scheduler(opt, cfg, 10)
    assert unit in ("step", "epoch", "plateau", "none")


def test_tta_view_counts():
    x = torch.randn(2, 1, 48, 48)
    assert len(tta_views(x, "none")) == 1 and len(tta_views(x, "flip")) == 2 and len(tta_views(x, "ten")) == 10


def test_fit_writes_artifacts_and_learns(tiny_fer_csv, tmp_path):
    out = tmp_path / "run"
    res = fit(tiny_cfg(tiny_fer_csv, epochs=3), out)
    for f in ("best.safetensors", "best.json", "last.safetensors", "last.json", "history.csv", "curves.png",
              "config.json"):
        assert (out / f).exists(), f
    card = json.loads((out / "best.json").read_text())
    assert card["arch"] == "mini_xception" and card["labels"][0] == "angry"
    assert card["preprocess"]["size"] == 48 and "command" in card["training"]
    assert res["epochs_run"] == 3


def test_resume_continues_from_last_epoch(tiny_fer_csv, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), out)
    state1 = json.loads((out / "last.json").read_text())
    assert state1["epoch"] == 0
    res = fit(tiny_cfg(tiny_fer_csv, epochs=2), out, resume=True)
    state2 = json.loads((out / "last.json").read_text())
    assert state2["epoch"] == 1 and len(state2["history"]) == 2 and res["epochs_run"] == 2


def test_loss_class_weights_invert_frequency_to_the_given_power():
    from emotionlab.training.engine import loss_class_weights

    counts = np.array([100.0, 400.0, 25.0])
    full = loss_class_weights(counts)
    assert full.mean() == pytest.approx(1.0) and full[2] / full[0] == pytest.approx(4.0)  # 4x rarer -> 4x weight
    half = loss_class_weights(counts, 0.5)
    assert half.mean() == pytest.approx(1.0) and half[2] / half[0] == pytest.approx(2.0)
    assert np.allclose(loss_class_weights(counts, 0.0), 1.0)


def test_select_macro_f1_picks_and_records_the_best_macro_f1_epoch(tiny_fer_csv, tmp_path):
    out = tmp_path / "run"
    res = fit(tiny_cfg(tiny_fer_csv, epochs=4, lr=0.1, select="macro_f1"), out)
    rows = list(csv.DictReader(open(out / "history.csv")))
    f1 = [float(r["val_macro_f1"]) for r in rows]
    assert res["best_epoch"] == 1 + int(np.argmax(f1))  # the first epoch with the highest macro-F1
    assert res["best_val_macro_f1"] == pytest.approx(max(f1))
    assert res["best_val_acc"] == pytest.approx(float(rows[res["best_epoch"] - 1]["val_acc"]))
    card = json.loads((out / "best.json").read_text())
    assert card["training"]["selection"].startswith("best validation macro-F1")
    assert card["metrics"]["validation"]["macro_f1"] == pytest.approx(max(f1))
    res = fit(tiny_cfg(tiny_fer_csv, epochs=5), out, resume=True)  # the recipe, select included, is the run's
    assert res["select"] == "macro_f1"


def test_resume_restores_weights_exactly(tiny_fer_csv, tmp_path):
    from safetensors.torch import load_file

    from emotionlab.models import create_model
    from emotionlab.training.checkpoint import load_checkpoint
    from emotionlab.training.engine import build_optimizer

    out = tmp_path / "run"
    cfg = tiny_cfg(tiny_fer_csv, epochs=1, optimizer="adam", lr=1e-3)
    fit(cfg, out)
    m = create_model("mini_xception")
    opt = build_optimizer(m, cfg)
    sched, _ = build_scheduler(opt, cfg, 2)
    load_checkpoint(out, m, opt, sched)
    saved = load_file(str(out / "last.safetensors"))
    for k, v in m.state_dict().items():
        assert torch.equal(v, saved[f"model.{k}"])
    assert len(opt.state) > 0  # Adam moments came back


def test_train_cli_and_evaluate_cli(tiny_fer_csv, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--model", "mini_xception", "--data", str(tiny_fer_csv), "--epochs", "1",
                            "--batch-size", "8", "--out", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    js = tmp_path / "m.json"
    r = runner.invoke(app, ["evaluate", "--model", str(out), "--data", str(tiny_fer_csv), "--split", "PrivateTest",
                            "--json", str(js), "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    m = json.loads(js.read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "labels", "n", "model", "data"):
        assert key in m
    assert m["n"] == 23  # rows i % 3 == 2 of 70
    assert np.asarray(m["confusion_matrix"]).sum() == 23
    assert (tmp_path / "ev" / "confusion.png").exists()


def test_train_cli_rejects_odd_batch(tiny_fer_csv, tmp_path):
    r = runner.invoke(app, ["train", "--data", str(tiny_fer_csv), "--batch-size", "7", "--out", str(tmp_path)])
    assert r.exit_code != 0


def test_config_rejects_unknown_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: emonet_t\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_yaml(p)


def test_config_values_are_type_checked_before_any_data_is_read(tmp_path, tiny_fer_csv, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("model: simple_cnn\nlr: 1e-3\nepochs: '3'\naugment:\n  rotate: 10\n  scale: [1, 1.2]\n")
    cfg = TrainConfig.from_yaml(p)  # YAML reads 1e-3 as a string; numbers given as strings are numbers
    assert (cfg.lr, cfg.epochs, cfg.augment.rotate, cfg.augment.scale) == (0.001, 3, 10.0, (1.0, 1.2))
    assert isinstance(cfg.lr, float) and isinstance(cfg.epochs, int)
    for text, msg in [("lr: fast", r"lr is 'fast' \(str\); expected float"),
                      ("epochs: yes", r"epochs is True \(bool\); expected int"),
                      ("epochs: 2.5", r"epochs is 2.5 \(float\); expected int"),
                      ("schedule: cosin", "unknown schedule 'cosin'; use cosine"),
                      ("optimizer: adm", "unknown optimizer 'adm'"),
                      ("select: f1", "unknown select 'f1'; use accuracy, macro_f1"),
                      ("augment:\n  scale: 1.1", r"augment.scale is 1.1; expected \[min, max\]"),
                      ("augment:\n  flip: maybe", r"augment: flip is 'maybe' \(str\); expected float")]:
        p.write_text(f"model: simple_cnn\n{text}\n")
        with pytest.raises(ValueError, match=msg):
            TrainConfig.from_yaml(p)
    from emotionlab.cli import main

    p.write_text("model: simple_cnn\nlr: fast\n")
    with pytest.raises(SystemExit) as ex:  # the config is checked first: not a complaint about the missing data
        main(["train", "--config", str(p), "--data", str(tmp_path / "missing.csv")])
    out = " ".join(capsys.readouterr().err.split())
    assert ex.value.code == 2 and "lr is 'fast'" in out and "missing.csv" not in out
    p.write_text("model: simple_cnn\naugment:\n  scale: 1.1\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(p), "--data", str(tiny_fer_csv)])
    assert "expected [min, max], e.g. [0.9, 1.1]" in " ".join(capsys.readouterr().err.split())  # not markup


def test_bf16_auto_times_a_copy_and_records_its_choice(tiny_fer_csv, tmp_path):
    from emotionlab.models import create_model
    from emotionlab.training.engine import choose_bf16

    model = create_model("mini_xception")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 1, 48, 48)
    rng = torch.get_rng_state()
    use, speed = choose_bf16(model, x, 7, torch.device("cpu"), rounds=1, margin=0.0)
    assert use is True and speed["fp32_img_s"] > 0 and speed["bf16_img_s"] > 0
    assert choose_bf16(model, x, 7, torch.device("cpu"), rounds=1, margin=float("inf"))[0] is False
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BN stats kept
    assert torch.equal(rng, torch.get_rng_state())  # so the run's shuffles and dropout do not depend on it
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--model", "mini_xception", "--data", str(tiny_fer_csv), "--epochs", "1",
                            "--batch-size", "8", "--out", str(out), "--threads", "1", "--bf16-auto"])
    assert r.exit_code == 0, r.output
    assert "bf16 auto: o" in r.output
    chosen = json.loads((out / "config.json").read_text())["bf16"]
    assert isinstance(chosen, bool)  # resume and the card see what ran, not "auto"
    assert json.loads((out / "best.json").read_text())["training"]["recipe"]["bf16"] is chosen
    r = runner.invoke(app, ["train", "--data", str(tiny_fer_csv), "--bf16-auto", "--no-bf16", "--out", str(out)])
    assert r.exit_code != 0 and "not both" in r.output
    with pytest.raises(ValueError, match="bf16 is 'fast'; expected true, false or auto"):
        TrainConfig.from_dict({"bf16": "fast"})


def test_subnormal_weights_are_zero_in_saved_and_loaded_models(tiny_fer_csv, tmp_path):
    from safetensors.torch import load_file, save_file

    from emotionlab.models.hub import load_model
    from emotionlab.training.checkpoint import save_weights

    out = tmp_path / "run"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), out)
    # fit puts the CPU in flush-to-zero / denormals-are-zero mode: a subnormal operand counts as 0
    assert float(torch.tensor([1e-39]) * 1.0) == 0.0
    sd = load_file(str(out / "best.safetensors"))
    name = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 10)
    # bit patterns of 1e-40, -3e-39 (subnormal), 1e-30, 0 and 2.0: in flush-to-zero mode a float store would give 0
    sd[name].view(-1)[:5].view(torch.int32)[:] = torch.tensor([0x000116C2, -0x7FFFFFFF - 1 + 0x0020AAC8,
                                                               0x0DA24260, 0, 0x40000000], dtype=torch.int32)
    save_file(sd, str(out / "best.safetensors"))  # as a model trained elsewhere would arrive
    lm = load_model(out)
    got = lm.model.state_dict()[name].view(-1)[:5].view(torch.int32).tolist()
    assert got == [0, 0, 0x0DA24260, 0, 0x40000000]
    live = lm.model.state_dict()[name].view(-1)
    live.view(torch.int32)[0] = 0x000116C2  # 1e-40 written as bits: flush-to-zero mode would round a store to 0
    save_weights(lm.model, tmp_path / "w.safetensors")
    assert int(load_file(str(tmp_path / "w.safetensors"))[name].view(-1).view(torch.int32)[0]) == 0
    assert int(live.view(torch.int32)[0]) == 0x000116C2  # saving does not touch the live model
    from emotionlab.models.registry import flush_subnormals

    half = {"w": torch.tensor([1e-6, 1.0], dtype=torch.float16)}  # 1e-6 is subnormal in float16, normal in float32
    assert flush_subnormals(half) == 0 and float(half["w"][0]) > 0  # shipped float16 weights are kept as they are


def test_cv_reports_mean_and_std(tiny_fer_csv, tmp_path):
    from emotionlab.training.studies import cross_validate

    res = cross_validate("mini_xception", tiny_fer_csv, folds=2, epochs=1, out=tmp_path / "cv",
                         batch_size=4)
    s = res["summary"]
    assert len(res["folds"]) == 2 and set(s["accuracy"]) == {"mean", "std"}
    assert "angry" in s["per_class"]


def test_packed_dataset_roundtrip_and_training_split(tiny_fer_csv, tmp_path):
    from emotionlab.data.fer2013 import load_fer2013
    from emotionlab.data.loader import load_dataset, pack_dataset, train_val_test

    ds = load_fer2013(tiny_fer_csv)
    ds.soft = np.eye(7, dtype=np.float32)[ds.labels]
    keep = np.flatnonzero(ds.usage != "PrivateTest")
    p = pack_dataset(ds.subset(keep), tmp_path / "p.npz")
    back = load_dataset(p)
    assert np.array_equal(back.images, ds.images[keep]) and np.array_equal(back.labels, ds.labels[keep])
    assert back.soft is not None and "PrivateTest" not in set(back.usage.tolist())
    tr, va, te = train_val_test(back)
    assert te is None and len(tr) + len(va) == len(keep)


FERPLUS_COLS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
FER7_TO_COL = {0: 4, 1: 5, 2: 6, 3: 1, 4: 3, 5: 2, 6: 0}


def _write_votes(path: Path, usage, votes) -> Path:
    lines = ["Usage,Image name," + ",".join(FERPLUS_COLS)] + [f"{u},x.png," + ",".join(map(str, v))
                                                             for u, v in zip(usage, votes)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ferplus_relabel_for_evaluation_counts_every_excluded_row(tiny_fer_csv, tmp_path):
    from emotionlab.data.errors import DataError
    from emotionlab.data.fer2013 import load_fer2013
    from emotionlab.data.loader import eval_split
    from emotionlab.training.evaluation import ferplus_relabel

    ds = load_fer2013(tiny_fer_csv)
    votes = np.zeros((len(ds), 10), np.int64)
    for i, y in enumerate(ds.labels):
        votes[i, FER7_TO_COL[int(y)]] = 10  # agrees with FER-2013 ...
    test_rows = np.flatnonzero(ds.usage == "PrivateTest")
    a, b, c, d = test_rows[:4]
    votes[a] = 0
    votes[a, 1] = 9  # ... except: 9/10 happy -> relabelled
    votes[a, 0] = 1
    votes[b] = 0
    votes[b, 7] = 10  # contempt: outside FER7, excluded
    votes[c] = 0
    votes[c, [0, 1]] = [5, 5]  # tie: no majority, excluded
    votes[d] = 0
    votes[d, 9] = 10  # not a face, excluded
    fp = _write_votes(tmp_path / "fer2013new.csv", ds.usage, votes)
    part = eval_split(ds, "PrivateTest")
    out, info = ferplus_relabel(part, fp)
    assert info["kept"] == len(part) - 3 == len(out)
    assert (info["excluded_other_class"], info["excluded_no_majority"]) == (1, 2)
    assert info["changed_vs_fer2013"] == (0 if ds.labels[a] == 3 else 1)
    assert out.labels[list(out.rows).index(a)] == 3
    _write_votes(fp, ds.usage[:4], votes[:4])  # too few rows for the data
    with pytest.raises(DataError, match="rows"):
        ferplus_relabel(part, fp)


def test_ferplus8_training_and_evaluation_use_the_annotators_labels(tiny_fer_csv, tmp_path, capsys):
    """label_set ferplus8 on FER-2013 rows: FER+ labels over 8 classes (contempt too), the FER+ row policy
    (not-a-face out, no majority kept for training only), a FER7 model as the start, an honest evaluation."""
    from emotionlab.cli import main
    from emotionlab.data.errors import DataError
    from emotionlab.data.fer2013 import load_fer2013
    from emotionlab.data.ferplus import ferplus_dataset, load_ferplus
    from emotionlab.models.hub import load_model
    from emotionlab.training.engine import fit
    from emotionlab.training.evaluation import run_evaluation
    from test_inference import make_run_dir

    ds = load_fer2013(tiny_fer_csv)
    votes = np.zeros((len(ds), 10), np.int64)
    for i, y in enumerate(ds.labels):
        votes[i, FER7_TO_COL[int(y)]] = 8
        votes[i, 0 if y != 6 else 1] += 2
    by = {u: np.flatnonzero(ds.usage == u) for u in ("Training", "PublicTest", "PrivateTest")}
    t = by["Training"]
    votes[t[:3]] = [0, 0, 0, 0, 0, 0, 0, 10, 0, 0]  # contempt: a class of its own now
    votes[t[3]] = [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]  # no majority: kept for training (top vote)
    votes[t[4]] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]  # not a face: left out
    votes[by["PublicTest"][0]] = [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]  # no majority: not scored on validation
    p = by["PrivateTest"]
    votes[p[:2]] = [0, 0, 0, 0, 0, 0, 0, 10, 0, 0]
    votes[p[2]] = [0, 0, 0, 0, 0, 0, 0, 0, 10, 0]  # unknown: not scored
    fp = _write_votes(tmp_path / "fer2013new.csv", ds.usage, votes)

    tr = ferplus_dataset(ds.split("Training"), load_ferplus(fp))
    assert len(tr) == len(t) - 1 and tr.label_set.name == "ferplus8" and tr.soft.shape == (len(tr), 8)
    assert list(tr.labels[:3]) == [7, 7, 7] and tr.extra["ferplus"]["no_majority_kept"] == 1
    y6 = int(ds.labels[t[6]])  # 8 votes for its FER-2013 class, 2 for neutral (happy for neutral faces)
    assert np.allclose(tr.soft[5], np.eye(8)[y6] * 0.8 + np.eye(8)[6 if y6 != 6 else 3] * 0.2)

    start = make_run_dir(tmp_path / "fer7_start")
    cfg = TrainConfig(model="emonet_t", data=str(tiny_fer_csv), ferplus=str(fp), label_set="ferplus8",
                      init_from=str(start), epochs=1, batch_size=8, lr=0.01, ferplus_weight=1.0, warmup_epochs=0,
                      channels_last=False, threads=1)
    res = fit(cfg, tmp_path / "run")
    err = " ".join(capsys.readouterr().err.split())
    assert f"train {len(t) - 1} val {len(by['PublicTest']) - 1}" in err
    assert "re-initialized for 8 classes" in err
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert card["label_set"] == "ferplus8" and card["labels"][-1] == "contempt"
    assert card["training"]["ferplus_rows"]["val"]["excluded_no_majority"] == 1
    assert "FER+ majority labels of FER-2013 PublicTest" in card["training"]["selection"]
    m = load_model(str(tmp_path / "run")).model
    assert res["best_epoch"] == 1 and m(torch.zeros(2, 1, 48, 48)).shape == (2, 8)
    with pytest.raises(DataError, match="8-class FER\\+ model: score it against the FER\\+ labels"):
        run_evaluation(str(tmp_path / "run"), tiny_fer_csv, quiet=True)
    ev = run_evaluation(str(tmp_path / "run"), tiny_fer_csv, ferplus=fp, quiet=True)
    assert ev["n"] == len(p) - 1 and ev["labels"][-1] == "contempt"
    assert ev["per_class"]["contempt"]["support"] == 2
    from emotionlab.training.studies import cross_validate

    ycfg = tmp_path / "cv.yaml"
    ycfg.write_text(f"label_set: ferplus8\nferplus: {fp}\nferplus_weight: 1.0\nwarmup_epochs: 0\nthreads: 1\n")
    cv = cross_validate("emonet_t", tiny_fer_csv, folds=2, config=ycfg, epochs=1, out=tmp_path / "cv", batch_size=4)
    assert "contempt" in cv["summary"]["per_class"] and cv["summary"]["n"] == len(t) - 1  # FER+ rows and classes
    fp7 = TrainConfig(model="emonet_t", data=str(tiny_fer_csv), label_set="ferplus8", epochs=1)
    with pytest.raises(ValueError, match="needs the FER\\+ votes"):
        fit(fp7, tmp_path / "run2")
    with pytest.raises(SystemExit):  # a FER7 start of another architecture is still refused, in one line
        main(["train", "--model", "emonet_n", "--data", str(tiny_fer_csv), "--init-from", str(start),
              "--epochs", "1", "--out", str(tmp_path / "run3")])
    assert "it is emonet_t at 48 px, the run trains emonet_n" in " ".join(capsys.readouterr().err.split())


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_epoch_planner_follows_the_rate_early_then_only_shrinks():
    from emotionlab.training.engine import EpochPlanner

    clock = FakeClock()
    p = EpochPlanner(100.0, max_epochs=300, clock=clock)
    clock.t = 10.0  # 10 s per epoch: 10 fit
    assert p.after_epoch(1) == 10
    clock.t = 12.0  # faster now (a GPU neighbour finished): 2 epochs in 12 s -> 16 fit, still early: grows
    assert p.after_epoch(2) == 16
    clock.t = 40.0  # past the first quarter: a faster rate (5 s an epoch) no longer stretches the plan...
    assert p.after_epoch(8) == 16
    clock.t = 90.0  # ...but a slower one shrinks it
    assert p.after_epoch(9) == 10
    clock.t = 101.0  # out of time: the plan ends at the epochs already run
    assert p.after_epoch(10) == 10


def test_epoch_planner_without_horizon_regrows_after_slow_epochs_and_stops_at_the_budget():
    """Plateau runs: slow epochs beside another job shrink the plan, the recovered rate grows it back."""
    from emotionlab.training.engine import EpochPlanner

    clock = FakeClock()
    p = EpochPlanner(1000.0, max_epochs=300, clock=clock, anneal=False)
    for done in range(1, 4):  # 3 epochs at 10 s: 970 s left / 10 s -> 97 more
        clock.t += 10.0
        planned = p.after_epoch(done)
    assert planned == 100
    for done in range(4, 7):  # 3 slow epochs at 30 s (a neighbour): 880 s left / 30 s -> 29 more
        clock.t += 30.0
        planned = p.after_epoch(done)
    assert planned == 6 + 29
    for done in range(7, 10):  # the neighbour ends, 10 s again: 850 s left / 10 s -> 85 more (cosine would not grow)
        clock.t += 10.0
        planned = p.after_epoch(done)
    assert planned == 9 + 85
    clock.t = 995.0  # 5 s left, less than one epoch: stop now instead of overrunning
    assert p.after_epoch(10) == 10
    anneal = EpochPlanner(1000.0, max_epochs=300, clock=FakeClock())
    anneal.clock.t = 995.0
    assert anneal.after_epoch(10) == 11  # with a horizon: one more epoch while time is left (unchanged)


def test_time_budget_plans_epochs_and_records_them(tiny_fer_csv, tmp_path):
    out = tmp_path / "run"
    res = fit(tiny_cfg(tiny_fer_csv, epochs=500, time_budget=0.5), out)
    card = json.loads((out / "best.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert 1 <= res["epochs_run"] < 500
    assert card["training"]["recipe"]["epochs"] == cfg["epochs"] == res["epochs_run"]


def test_resume_takes_the_new_time_budget(tiny_fer_csv, tmp_path):
    """--resume --time-budget B: B bounds this invocation (the saved run had none), as --epochs does."""
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), out)
    res = fit(tiny_cfg(tiny_fer_csv, epochs=400, time_budget=0.3), out, resume=True)
    assert 2 <= res["epochs_run"] < 400
    assert json.loads((out / "config.json").read_text())["time_budget"] == 0.3


def test_time_budget_rejects_fixed_step_schedules(tiny_fer_csv, tmp_path):
    with pytest.raises(ValueError, match="time_budget"):
        fit(tiny_cfg(tiny_fer_csv, schedule="onecycle", time_budget=10), tmp_path / "run")


def test_init_from_starts_at_the_given_weights(tiny_fer_csv, tmp_path):
    from emotionlab.models.hub import load_model

    src = tmp_path / "src"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), src)
    # lr 0: the fine-tuned run must keep the source weights exactly (BN running stats aside)
    dst = tmp_path / "dst"
    fit(tiny_cfg(tiny_fer_csv, epochs=1, lr=0.0, warmup_epochs=0, init_from=str(src)), dst)
    a, b = load_model(src).model.state_dict(), load_model(dst).model.state_dict()
    for k in a:
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(a[k], b[k]), k
    # a random init differs: the test above is not vacuous
    fresh = tmp_path / "fresh"
    fit(tiny_cfg(tiny_fer_csv, epochs=1, lr=0.0, warmup_epochs=0, seed=5), fresh)
    c = load_model(fresh).model.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and "running" not in k)


def test_init_from_rejects_another_architecture(tiny_fer_csv, tmp_path):
    src = tmp_path / "src"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), src)
    with pytest.raises(ValueError, match="mini_xception"):
        fit(tiny_cfg(tiny_fer_csv, model="emonet_t", epochs=1, init_from=str(src)), tmp_path / "dst")


def test_distillation_mixes_teacher_probabilities_into_targets(tiny_fer_csv, tmp_path, monkeypatch):
    import emotionlab.training.engine as eng
    from emotionlab.data.loader import load_dataset, train_val_test
    from emotionlab.models.hub import load_model

    teacher = tmp_path / "teacher"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), teacher)
    seen = {}
    real = eng._targets

    def spy(ds, k, cfg, t=None):
        seen["teacher"], seen["targets"] = t, real(ds, k, cfg, t)
        return seen["targets"]

    monkeypatch.setattr(eng, "_targets", spy)
    out = tmp_path / "student"
    fit(tiny_cfg(tiny_fer_csv, epochs=1, teachers=[str(teacher)], distill_weight=0.25), out)
    ds = load_dataset(str(tiny_fer_csv), size=48)
    train = train_val_test(ds)[0]
    lm = load_model(teacher)
    expect = eng.predict_proba(lm.model, train.images, lm.preprocess, 256, "flip")
    np.testing.assert_allclose(seen["teacher"], expect, atol=1e-5)
    onehot = np.eye(7, dtype=np.float32)[train.labels]
    np.testing.assert_allclose(seen["targets"].numpy(), 0.25 * expect + 0.75 * onehot, atol=1e-5)
    cached = list(out.glob("teacher_probs_*.npy"))
    assert len(cached) == 1
    # resume reuses the cache instead of running the teacher again
    import emotionlab.models.hub as hub

    monkeypatch.setattr(hub, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    fit(tiny_cfg(tiny_fer_csv, epochs=2, teachers=[str(teacher)], distill_weight=0.25), out, resume=True)


def test_ten_crop_teacher_gets_its_own_cache_and_bad_views_are_refused(tiny_fer_csv, tmp_path):
    import emotionlab.training.engine as eng
    from emotionlab.data.loader import load_dataset, train_val_test
    from emotionlab.models.hub import load_model

    teacher = tmp_path / "teacher"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), teacher)
    ds = load_dataset(str(tiny_fer_csv), size=48)
    train = train_val_test(ds)[0]
    out = tmp_path / "student"
    out.mkdir()
    lm = load_model(teacher)
    probs = {}
    for tta in ("flip", "ten"):
        cfg = tiny_cfg(tiny_fer_csv, teachers=[str(teacher)], teacher_tta=tta)
        probs[tta] = eng.teacher_targets(cfg, train, lm.labels, 48, torch.device("cpu"), out)
        expect = eng.predict_proba(lm.model, train.images, lm.preprocess, 256, tta)
        np.testing.assert_allclose(probs[tta], expect, atol=1e-5)
    assert len(list(out.glob("teacher_probs_*.npy"))) == 2  # one cache per view set
    assert not np.allclose(probs["flip"], probs["ten"])
    with pytest.raises(ValueError, match="teacher_tta"):
        tiny_cfg(tiny_fer_csv, teachers=[str(teacher)], teacher_tta="five")


def test_soften_matches_temperature_softmax():
    from emotionlab.training.engine import soften

    logits = torch.randn(5, 7)
    p = torch.softmax(logits, 1).numpy()
    np.testing.assert_allclose(soften(p, 3.0), torch.softmax(logits / 3.0, 1).numpy(), atol=1e-5)
    assert soften(p, 1.0) is p


def test_models_ship_fp16_halves_large_tensors_and_records_metrics(tiny_fer_csv, tmp_path, monkeypatch):
    import emotionlab.models.hub as hub
    from safetensors.torch import load_file

    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "weights")
    run = tmp_path / "run"
    fit(tiny_cfg(tiny_fer_csv, model="emonet_t", epochs=1), run)
    size = (run / "best.safetensors").stat().st_size  # a limit the float32 file breaks and its half fits
    monkeypatch.setattr(hub, "MAX_SHIPPED_FILE_BYTES", int(size * 0.7))
    r = runner.invoke(app, ["maintain", "ship", str(run), "--name", "tiny_t"])
    assert r.exit_code == 2 and "try --fp16" in " ".join(r.output.split())
    r = runner.invoke(app, ["maintain", "ship", str(run), "--name", "tiny_t", "--fp16", "--data", str(tiny_fer_csv)])
    assert r.exit_code == 0, r.output
    sd = load_file(str(tmp_path / "weights" / "tiny_t.safetensors"))
    big = [k for k, v in sd.items() if v.numel() >= 4096]
    assert big and all(sd[k].dtype == torch.float16 for k in big)
    assert all(v.dtype != torch.float16 for v in sd.values() if v.numel() < 4096)
    card = json.loads((tmp_path / "weights" / "tiny_t.json").read_text())
    assert card["schema_version"] == 1 and card["name"] == "tiny_t" and card["status"] == "final"
    assert "float16" in card["storage"] and card["metrics"]["PrivateTest"]["n"] > 0
    full, half = hub.load_model(run).model, hub.load_model("tiny_t").model
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(half(x), 1), torch.softmax(full(x), 1), atol=2e-2, rtol=0)


def test_degrade_changes_only_the_chosen_share_and_keeps_flat_faces_flat():
    from emotionlab.training.augment import degrade

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 48, 48)
    y = degrade(x, 0.5, g)
    changed = (y - x).abs().flatten(1).amax(1) > 1e-4
    assert 0.35 < changed.float().mean() < 0.65  # about half the faces
    assert torch.equal(degrade(x, 0.0, g), x)
    # every degradation keeps a uniform face uniform (no border artefacts, brightness shift aside)
    flat = torch.full((64, 1, 48, 48), 0.7)
    z = degrade(flat, 1.0, torch.Generator().manual_seed(1))
    assert torch.allclose(z - z.mean(dim=(2, 3), keepdim=True), torch.zeros_like(z), atol=1e-5)


def test_degrade_blur_and_resolution_remove_fine_detail():
    from emotionlab.training.augment import _gauss_blur

    x = torch.zeros(1, 1, 48, 48)
    x[..., ::2, :] = 1.0  # a 1-pixel stripe pattern: pure high frequency
    assert _gauss_blur(x, 1.5)[..., 8:-8, 8:-8].std() < 0.01 * x.std()  # interior: no border effects
    lo = torch.nn.functional.interpolate(torch.nn.functional.interpolate(x, size=(24, 24), mode="area"),
                                         size=(48, 48), mode="bilinear", align_corners=False)
    assert lo.std() < 0.01 * x.std()  # 24 px cannot hold a 2-pixel period


def test_ema_follows_the_ramped_decay_formula():
    from emotionlab.training.engine import make_ema

    m = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(0.0)
    ema = make_ema(m, 0.9)
    expect = 0.0
    for n, w in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            m.weight.fill_(w)
        ema.update_parameters(m)
        if n > 0:  # the first update copies; then d = min(0.9, (1 + n') / (10 + n')) with n' updates so far
            d = min(0.9, (1 + n) / (10 + n))
            expect = d * expect + (1 - d) * w
        else:
            expect = w
        assert ema.module.weight[0, 0].item() == pytest.approx(expect, rel=1e-6)
    assert expect < 4.0  # an average, not the last weights
    with pytest.raises(ValueError, match="ema_decay"):
        make_ema(m, 1.5)


def test_fit_with_ema_selects_the_average_and_resumes_it(tiny_fer_csv, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    fit(tiny_cfg(tiny_fer_csv, epochs=1, ema_decay=0.99), out)
    last, best = load_file(str(out / "last.safetensors")), load_file(str(out / "best.safetensors"))
    assert "ema.n_averaged" in last and int(last["ema.n_averaged"]) > 1
    k = next(k for k in best if k.endswith("weight") and best[k].ndim == 4)
    assert torch.equal(best[k], last[f"ema.module.{k}"])  # shipped weights are the average ...
    assert not torch.equal(best[k], last[f"model.{k}"])  # ... not the raw last step
    n1 = int(last["ema.n_averaged"])
    fit(tiny_cfg(tiny_fer_csv, epochs=2, ema_decay=0.99), out, resume=True)
    assert int(load_file(str(out / "last.safetensors"))["ema.n_averaged"]) == 2 * n1  # continued, not restarted
    # a checkpoint without an average cannot silently start one from the resumed weights
    from emotionlab.models import create_model
    from emotionlab.training.checkpoint import load_checkpoint
    from emotionlab.training.engine import build_optimizer, make_ema

    cfg = tiny_cfg(tiny_fer_csv, epochs=1)
    fit(cfg, tmp_path / "plain")
    m = create_model("mini_xception")
    opt = build_optimizer(m, cfg)
    with pytest.raises(ValueError, match="no weight average"):
        load_checkpoint(tmp_path / "plain", m, opt, None, make_ema(m, 0.99))


def test_last_epoch_export_is_what_the_run_validated_and_a_checkpoint_is_not_a_model(tiny_fer_csv, tmp_path):
    from safetensors.torch import load_file

    from emotionlab.models.hub import load_model, resolve
    from emotionlab.training.checkpoint import export_last_epoch

    run = tmp_path / "run"
    fit(tiny_cfg(tiny_fer_csv, epochs=2, ema_decay=0.99), run)
    last = load_file(str(run / "last.safetensors"))
    history = json.loads((run / "last.json").read_text())["history"]
    for weights, prefix in (("auto", "ema.module."), ("model", "model.")):
        out = export_last_epoch(run, tmp_path / weights, weights)
        lm = load_model(out)
        sd = lm.model.state_dict()
        assert sd and all(torch.equal(v, last[prefix + k]) for k, v in sd.items())
        card = json.loads((out / "best.json").read_text())
        assert "last epoch (2)" in card["training"]["selection"] and card["training"]["epochs_run"] == 2
    # the exported average is the model whose validation accuracy the last history row records
    assert card["metrics"]["validation"]["accuracy"] == history[-1]["val_acc"]
    auto = load_model(tmp_path / "auto").model.state_dict()
    assert any(not torch.equal(v, sd[k]) for k, v in auto.items())  # ema and raw weights differ
    with pytest.raises(ValueError, match="must not be the run"):
        export_last_epoch(run, run)
    with pytest.raises(ValueError, match="maintain last-epoch"):
        resolve(run / "last.safetensors")
    plain = tmp_path / "plain"
    fit(tiny_cfg(tiny_fer_csv, epochs=1), plain)
    r = runner.invoke(app, ["maintain", "last-epoch", str(plain), "--out", str(tmp_path / "p"), "--weights", "ema"])
    assert r.exit_code != 0 and "no ema weights" in " ".join(r.output.split())  # rich may wrap the line
    r = runner.invoke(app, ["maintain", "last-epoch", str(plain), "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "best.safetensors").exists()


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1] if p.parent.name == "zoo"
                                                                            else p.parent)))
def test_every_shipped_config_parses_and_builds_its_model(path):
    """A typo in a config (a key, a schedule, a model name) would otherwise surface minutes into a lent GPU's
    only command."""
    from emotionlab.data.labels import get_label_set
    from emotionlab.models import create_model

    cfg = TrainConfig.from_yaml(path)
    assert cfg.schedule in ("cosine", "onecycle", "step", "plateau", "none")
    assert cfg.optimizer in ("sgd", "adam", "adamw") and cfg.batch_size % 2 == 0
    m = create_model(cfg.model, num_classes=len(get_label_set(cfg.label_set)), in_size=cfg.in_size,
                     **cfg.model_kwargs)
    if cfg.in_size:
        assert m.in_size == cfg.in_size
    if path.parent.name == "zoo" or path.stem.endswith("_gpu"):  # run under tools/device_train.py's --time-budget
        assert cfg.schedule in ("cosine", "plateau", "none"), "time budgets need cosine, plateau or none"


def test_input_size_study_trains_each_size_and_rescores_runs_from_elsewhere(tiny_fer_csv, tmp_path):
    from emotionlab.training.studies import input_size_study

    cfg = tmp_path / "s.yaml"
    cfg.write_text("batch_size: 8\nthreads: 1\nwarmup_epochs: 0\n")
    res = input_size_study("simple_cnn", tiny_fer_csv, [20, 50], 1, cfg, tmp_path / "study")
    rows = {r["size"]: r for r in res["rows"]}
    assert set(rows) == {20, 50} and rows[50]["params"] > rows[20]["params"]  # the dense layer grows with the size
    # the runs as a lent GPU would bring them back: no training, the same test accuracy, the runs' own timing
    r = CliRunner().invoke(app, ["study", "input-size", "--model", "simple_cnn", "--data", str(tiny_fer_csv),
                                 "--sizes", "20,50", "--from-runs", str(tmp_path / "study"),
                                 "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    again = {x["size"]: x for x in json.loads((tmp_path / "s.json").read_text())["rows"]}
    for s in (20, 50):
        assert again[s]["test_accuracy"] == rows[s]["test_accuracy"]
        assert again[s]["seconds_per_epoch"] == pytest.approx(rows[s]["seconds_per_epoch"])
        assert again[s]["hardware"] == rows[s]["hardware"]
    r = CliRunner().invoke(app, ["study", "input-size", "--data", str(tiny_fer_csv), "--sizes", "100",
                                 "--from-runs", str(tmp_path / "study")])
    assert r.exit_code != 0 and "not a finished run" in " ".join(r.output.split())
    for bad in ("20,abc", "", "2"):
        r = CliRunner().invoke(app, ["study", "input-size", "--data", str(tiny_fer_csv), "--sizes", bad])
        assert r.exit_code == 2 and "expected a comma list of input sides" in " ".join(r.output.split())
