"""Model cards follow one schema (``emotionlab.models.card.ModelCard``): every shipped card loads unchanged, a bad
card is refused with one line naming its file and field, and each place that builds cards writes the schema."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.models.card import SCHEMA_VERSION, CardError, ModelCard
from emotionlab.models.hub import WEIGHTS_DIR, load_card, load_model, shipped_models

runner = CliRunner()
SHIPPED = sorted(p for p in WEIGHTS_DIR.glob("*.json") if p.name != "aliases.json")


def _minimal() -> dict:
    from emotionlab.data.preprocess import PreprocessConfig

    return {"format": "emotionlab-model/1", "name": "m", "arch": "emonet_t", "num_classes": 2,
            "labels": ["a", "b"], "in_size": 48, "preprocess": PreprocessConfig().to_dict()}


def test_there_are_shipped_cards_to_check():
    assert len(SHIPPED) >= len(set(shipped_models())) >= 4 and set(shipped_models()) <= {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_card_loads_and_round_trips_unchanged(path):
    raw = json.loads(path.read_text())
    card = ModelCard.read(path)
    assert card.schema_version == 1  # written before the field existed: read as version 1
    out = json.loads(card.to_json())
    assert out.pop("schema_version") == SCHEMA_VERSION
    assert out == raw  # nothing dropped, nothing added, extra fields (task, license, ...) kept
    assert load_card(path) == raw  # the hub's reader hands on the card as it is


def test_extra_fields_are_preserved_in_order():
    d = {**_minimal(), "zeta": 1, "task": {"k": [1, 2]}, "alpha": "x"}
    card = ModelCard.from_dict(d)
    assert card.extra == {"zeta": 1, "task": {"k": [1, 2]}, "alpha": "x"}
    assert list(card.to_dict())[-3:] == ["zeta", "task", "alpha"]
    card.set("task", None)
    card.set("arch", "emonet_n")
    assert "task" not in card.to_dict() and card.arch == "emonet_n"


@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.pop("labels"), "field 'labels' is missing"),
    (lambda d: d.pop("arch"), "field 'arch' is missing"),
    (lambda d: d.update(in_size="48"), "field 'in_size' must be the input side"),
    (lambda d: d.update(in_size=True), "field 'in_size'"),
    (lambda d: d.update(num_classes=3), "'num_classes' is 3 but 'labels' names 2"),
    (lambda d: d.update(labels=[]), "field 'labels' must be a non-empty list"),
    (lambda d: d.pop("preprocess"), "field 'preprocess' is missing"),
    (lambda d: d.update(preprocess=None), "field 'preprocess' must be an object"),
    (lambda d: d.update(format="emotionlab-model/9"), "field 'format' must be one of"),
    (lambda d: d.update(schema_version=2), "newer than this emotionlab reads"),
    (lambda d: d.update(schema_version="1"), "field 'schema_version' must be a positive integer"),
    (lambda d: d.update(metrics=[1]), "field 'metrics' must be an object"),
    (lambda d: d.update(weights="../../etc/x.safetensors"), "field 'weights' must be a .safetensors file name"),
    (lambda d: d.update(in_chans=0), "field 'in_chans'"),
])
def test_a_bad_card_names_its_file_and_field(tmp_path, edit, needle):
    d = _minimal()
    edit(d)
    path = tmp_path / "best.json"
    path.write_text(json.dumps(d))
    with pytest.raises(CardError, match=f"^{tmp_path / 'best.json'}: .*") as e:
        ModelCard.read(path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_not_an_object_and_not_json_are_refused(tmp_path):
    p = tmp_path / "best.json"
    p.write_text("[1, 2]")
    with pytest.raises(CardError, match="must be a JSON object, got list"):
        ModelCard.read(p)
    p.write_text('{"arch": ')
    with pytest.raises(CardError, match="not a JSON model card"):
        ModelCard.read(p)


def test_an_ensemble_card_needs_members_not_weights():
    d = {"format": "emotionlab-ensemble/1", "arch": "ensemble", "labels": ["a", "b"], "in_size": 48}
    with pytest.raises(CardError, match="field 'members' is missing"):
        ModelCard.from_dict(d)
    card = ModelCard.from_dict({**d, "members": [{"model": "x", "weight": 1.0}]})
    assert card.is_ensemble and card.preprocess is None


def test_loading_a_run_with_a_bad_card_is_one_clear_error(tmp_path):
    """The hub's loaders check the card before building anything; the CLI prints one line and exits 2."""
    from test_inference import make_run_dir

    run = make_run_dir(tmp_path / "run")
    card = json.loads((run / "best.json").read_text())
    card["num_classes"] = "seven"
    (run / "best.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"best.json: field 'num_classes' must be a positive integer"):
        load_model(run)
    r = runner.invoke(app, ["models", "show", str(run)])
    assert r.exit_code == 2 and "field 'num_classes'" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1


def test_write_refuses_a_card_that_would_not_load(tmp_path):
    card = ModelCard.from_dict(_minimal())
    card.labels = ["only-one"]  # num_classes still 2
    with pytest.raises(CardError, match="'num_classes' is 2 but 'labels' names 1"):
        card.write(tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def test_numpy_values_are_written_as_plain_json(tmp_path):
    import numpy as np

    card = ModelCard.from_dict(_minimal())
    card.metrics = {"validation": {"accuracy": np.float32(0.5), "n": np.int64(3)}}
    card.write(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["metrics"]["validation"] == {"accuracy": 0.5, "n": 3}


# --------------------------------------------------------------------------------- the places that build cards
def _schema_card(path: Path) -> dict:
    d = json.loads(path.read_text())
    assert d["schema_version"] == SCHEMA_VERSION, f"{path}: not written through ModelCard"
    ModelCard.from_dict(d, path)
    return d


def test_training_last_epoch_and_ensemble_cards_follow_the_schema(tiny_fer_csv, tmp_path):
    from emotionlab.training.config import TrainConfig
    from emotionlab.training.engine import fit

    cfg = dict(model="emonet_t", data=str(tiny_fer_csv), epochs=1, batch_size=8, lr=0.05, threads=1)
    fit(TrainConfig.from_dict(cfg), tmp_path / "a")
    fit(TrainConfig.from_dict(dict(cfg, seed=1, time_budget=100)), tmp_path / "b")
    for run in ("a", "b"):
        d = _schema_card(tmp_path / run / "best.json")
        assert d["training"]["recipe"]["model"] == "emonet_t" and "validation" in d["metrics"]
    r = runner.invoke(app, ["maintain", "last-epoch", str(tmp_path / "a"), "--out", str(tmp_path / "last")])
    assert r.exit_code == 0, r.output
    assert "last epoch (1)" in _schema_card(tmp_path / "last" / "best.json")["training"]["selection"]
    r = runner.invoke(app, ["maintain", "ensemble", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                            str(tmp_path / "ens")])
    assert r.exit_code == 0, r.output
    d = _schema_card(tmp_path / "ens" / "ensemble.json")
    assert [m["model"] for m in d["members"]] == ["../a", "../b"]


def test_old_release_names_still_work_with_a_note(tmp_path):
    """`emotionlab models last-epoch` etc. run the `maintain` command for one release, hidden from the help."""
    r = runner.invoke(app, ["models", "last-epoch", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "`emotionlab models last-epoch` is now `emotionlab maintain last-epoch`" in r.stderr
    assert "missing" in r.stderr.splitlines()[-1]  # and then the same check as the new name
    help_text = runner.invoke(app, ["models", "--help"], env={"COLUMNS": "200"}).output
    assert "list" in help_text and all(f" {n} " not in help_text for n in ("ship", "quantize", "tune-bias"))
    assert runner.invoke(app, ["maintain", "--help"]).exit_code == 0


@pytest.mark.parametrize("args, needle", [
    (["maintain", "ship", "WS/run", "--name", "../evil"], "--name '../evil'"),
    (["maintain", "ship", "WS/run", "--name", "aliases"], "--name 'aliases'"),
    (["maintain", "quantize", "fast", "--name", "a/b", "--data", "WS/x.csv"], "--name 'a/b'"),
    (["maintain", "tune-bias", "fast", "--data", "WS/x.csv", "--classes", "happy", "--out", "WS/o", "--metric", "f2"],
     "--metric 'f2'"),
    (["maintain", "last-epoch", "WS/run", "--out", "WS/o", "--weights", "both"], "--weights 'both'"),
    (["maintain", "quantize", "fast", "--name", "q", "--data", "WS/x.csv", "--method", "mse"], "--method 'mse'"),
])
def test_maintain_flag_mistakes_are_one_line_before_any_work(tmp_path, args, needle):
    r = runner.invoke(app, [a.replace("WS", str(tmp_path)) for a in args])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and needle in lines[0], r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
