"""Honest evaluation output (#35): macro-F1 over the classes present, `evaluate` names the part it scored
(all of a folder without splits by default), tables meant to be read go to stdout, flag combinations are
refused before any model or data is loaded, and the installed package never reaches back into the checkout."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import REPO
from emotionlab.cli import app

PKG = REPO / "src" / "emotionlab"
runner = CliRunner()
LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


# ------------------------------------------------------------------------------------------- macro-F1
def test_macro_f1_averages_over_the_classes_present_and_keeps_the_all_label_figure():
    from emotionlab.training.metrics import classification_metrics, summary_table

    y = np.repeat(np.arange(6), 3)  # CK+-like: no neutral (class 6) in the data
    m = classification_metrics(y, y, LABELS)  # every face right
    assert m["macro_f1"] == pytest.approx(1.0)  # not 6/7: an absent class is no error of the model
    assert m["macro_f1_all_labels"] == pytest.approx(6 / 7)
    assert m["macro_f1_classes"] == LABELS[:6]
    assert m["per_class"]["neutral"]["support"] == 0
    wrong = y.copy()
    wrong[0] = 6  # predicting the absent class still costs the true class its recall
    m = classification_metrics(y, wrong, LABELS)
    assert m["macro_f1"] < 1.0 and m["accuracy"] == pytest.approx(17 / 18)
    from rich.console import Console

    con = Console(width=200, record=True)
    con.print(summary_table(m, "t"))
    assert "over the 6 classes present" in con.export_text()


def test_macro_f1_is_unchanged_when_every_class_is_present():
    """FER-2013's splits have all 7 classes: the number every shipped card records stays the same."""
    from sklearn.metrics import f1_score

    from emotionlab.training.metrics import classification_metrics

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 300), rng.integers(0, 7, 300)
    m = classification_metrics(y, p, LABELS)
    assert m["macro_f1"] == m["macro_f1_all_labels"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["macro_f1_classes"] == LABELS


def test_shipped_cards_macro_f1_is_the_mean_over_present_classes():
    """Every recorded metrics entry with a per-class table: the new definition reproduces its macro_f1."""
    checked = 0
    for card in sorted((PKG / "weights").glob("*.json")):
        for key, m in json.loads(card.read_text()).get("metrics", {}).items():
            if not (isinstance(m, dict) and "macro_f1" in m and isinstance(m.get("per_class"), dict)):
                continue
            f1 = [v["f1"] for v in m["per_class"].values() if v["support"] > 0]
            assert np.mean(f1) == pytest.approx(m["macro_f1"], abs=1e-9), (card.name, key)
            checked += 1
    if not checked:
        pytest.skip("no shipped card with a per-class table in this checkout")


# ------------------------------------------------------------------------- which part evaluate scores
def _folder(root: Path, per_class: int = 10, split: str | None = None) -> Path:
    rng = np.random.default_rng(1)
    for k, lab in enumerate(LABELS):
        d = root / split / lab if split else root / lab
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from test_inference import make_run_dir

    return make_run_dir(tmp_path_factory.mktemp("run") / "random_t")


def test_evaluate_on_a_folder_without_splits_scores_every_image_and_says_so(run, tmp_path):
    data = _folder(tmp_path / "faces")
    r = runner.invoke(app, ["evaluate", "--model", str(run), "--data", str(data), "--json", "-"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["n"] == 70 and res["split"] == "all"  # every image, not a seeded 10 % called PrivateTest
    assert "[all]" in " ".join(r.stderr.split()) and "PrivateTest" not in r.output
    r = runner.invoke(app, ["evaluate", "--model", str(run), "--data", str(data)], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "[all]" in r.stdout  # the table is the output: stdout
    # a held-out part only when asked for by name, and named as what it is
    r = runner.invoke(app, ["evaluate", "--model", str(run), "--data", str(data), "--split", "test", "--json", "-"])
    res = json.loads(r.stdout)
    assert res["n"] == 7 and res["split"].startswith("held-out test: seeded 10 %")
    from emotionlab.data.loader import load_dataset, scored_part, train_val_test

    ds = load_dataset(data)
    part, name = scored_part(ds, "test")
    assert name == res["split"] and part.paths == train_val_test(ds)[2].paths  # what training held out


def test_evaluate_scores_the_test_split_by_default_and_refuses_guessing(run, tmp_path):
    from emotionlab.data.errors import DataError
    from emotionlab.training.evaluation import run_evaluation

    data = _folder(_folder(tmp_path / "split", 2, "train"), 1, "test")
    res = run_evaluation(str(run), data, quiet=True)
    assert (res["n"], res["split"]) == (7, "test")
    assert run_evaluation(str(run), data, split="all", quiet=True)["n"] == 21
    no_test = _folder(_folder(tmp_path / "tv", 2, "train"), 1, "val")
    with pytest.raises(DataError, match="no test split to score by default"):
        run_evaluation(str(run), no_test, quiet=True)


def test_evaluate_detect_names_the_part_it_scored(run, tmp_path):
    from emotionlab.training.evaluation import run_evaluation

    data = tmp_path / "photos" / "happy"
    data.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "astronaut.jpg", data / "a.jpg")
    res = run_evaluation(str(run), data.parent, detect=True, quiet=True)
    assert (res["split"], res["n"], res["n_errors"]) == ("all", 1, 0)


# ------------------------------------------------------------------ refusals before the work
@pytest.fixture
def no_loading(monkeypatch):
    """Any model or training-data load fails the test: the refusal must come first."""
    import emotionlab.models.hub as hub
    import emotionlab.training.engine as engine

    def boom(*a, **k):
        raise AssertionError("loaded before the refusal")

    monkeypatch.setattr(hub, "load_model", boom)
    monkeypatch.setattr(engine, "load_training_data", boom)


@pytest.mark.parametrize("extra, message", [
    (["--detect", "--occlude", "eyes"], "--occlude works on dataset crops, not with --detect"),
    (["--detect", "--ferplus", "VOTES"], "--ferplus relabels FER-2013 rows"),
    (["--ferplus", "VOTES"], "--ferplus needs FER-2013 rows"),
    (["--occlude", "eyes,nose"], "unknown mask(s) ['nose']"),
    (["--occlude", "eyes,eyes"], "names a mask twice"),
])
def test_evaluate_refuses_flag_combinations_before_loading(tmp_path, no_loading, extra, message):
    data = _folder(tmp_path / "faces", 1)
    votes = tmp_path / "fer2013new.csv"
    votes.write_text("Usage,Image name\n")
    args = ["evaluate", "--data", str(data)] + [str(votes) if a == "VOTES" else a for a in extra]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.stderr.split()) and "loaded before" not in r.output


def test_evaluate_detect_on_a_file_is_refused_before_loading(tiny_fer_csv, no_loading):
    r = runner.invoke(app, ["evaluate", "--data", str(tiny_fer_csv), "--detect"])
    assert r.exit_code == 2 and "--detect needs a folder of photos" in r.stderr


def test_train_refuses_recipe_combinations_before_reading_data(tmp_path, monkeypatch):
    import emotionlab.training.engine as engine
    from emotionlab.training.config import TrainConfig
    from test_inference import make_run_dir

    monkeypatch.setattr(engine, "load_training_data", lambda *a, **k: pytest.fail("data read before refusal"))
    base = dict(data=str(tmp_path / "any.csv"), epochs=1, threads=1)
    with pytest.raises(ValueError, match="time_budget needs schedule"):
        engine.fit(TrainConfig.from_dict(dict(base, schedule="onecycle", time_budget=10)), tmp_path / "a")
    teacher = make_run_dir(tmp_path / "teacher")  # fer7 emonet_t at 48 px
    with pytest.raises(ValueError, match="the student is trained on"):
        engine.fit(TrainConfig.from_dict(dict(base, model="emonet_t", label_set="ckplus7",
                                              teachers=[str(teacher)])), tmp_path / "b")
    with pytest.raises(ValueError, match="--init-from .* it is emonet_t at 48 px, the run trains emonet_n"):
        engine.fit(TrainConfig.from_dict(dict(base, model="emonet_n", init_from=str(teacher))), tmp_path / "c")


@pytest.mark.parametrize("flag, value", [("--detector", "nope"), ("--backend", "tensorrt"), ("--tta", "x")])
def test_predict_refuses_pipeline_names_before_loading(no_loading, flag, value):
    r = runner.invoke(app, ["predict", str(REPO / "examples" / "astronaut.jpg"), flag, value])
    assert r.exit_code == 2 and f"{flag} {value!r}" in r.stderr and "loaded before" not in r.output


# ------------------------------------------------------------------------------------ stdout tables
def test_models_list_and_data_stats_tables_go_to_stdout(tiny_fer_csv, tmp_path):
    r = runner.invoke(app, ["models", "list", "*xception*"])
    assert r.exit_code == 0 and "mini_xception" in r.stdout and "mini_xception" not in r.stderr
    r = runner.invoke(app, ["data", "stats", str(tiny_fer_csv), "--no-plot"])
    assert r.exit_code == 0 and "PrivateTest" in r.stdout and "pixel mean" in r.stdout


def test_models_show_prints_the_card_on_stdout():
    from emotionlab.models.hub import aliases

    if "default" not in aliases():
        pytest.skip("no shipped default model in this checkout")
    r = runner.invoke(app, ["models", "show", "default"], env={"COLUMNS": "160"})
    assert r.exit_code == 0 and "architecture" in r.stdout and "architecture" not in r.stderr


# ------------------------------------------------------------- the package stays inside the package
def _upward_steps(node: ast.AST) -> int | None:
    """For ``Path(__file__)[.resolve()].parent...`` / ``.parents[k]`` chains: how many folders up from the
    module's own folder the chain ends (0 = that folder); None for anything else."""
    ups, cur = 0, node
    while True:
        if isinstance(cur, ast.Attribute) and cur.attr == "parent":
            ups, cur = ups + 1, cur.value
        elif (isinstance(cur, ast.Subscript) and isinstance(cur.value, ast.Attribute)
              and cur.value.attr == "parents" and isinstance(cur.slice, ast.Constant)):
            ups, cur = ups + cur.slice.value + 1, cur.value.value
        elif isinstance(cur, ast.Call) and isinstance(cur.func, ast.Attribute) and cur.func.attr in ("resolve",
                                                                                                       "absolute"):
            cur = cur.func.value
        elif (isinstance(cur, ast.Call) and isinstance(cur.func, ast.Name) and cur.func.id == "Path"
              and len(cur.args) == 1 and isinstance(cur.args[0], ast.Name) and cur.args[0].id == "__file__"):
            return ups - 1 if ups else None  # Path(__file__).parent is the module's own folder
        else:
            return None


def test_no_module_resolves_a_path_above_the_package():
    """Every ``Path(__file__)`` chain in src/emotionlab ends inside the package folder."""
    found = []
    for py in sorted(PKG.rglob("*.py")):
        depth = len(py.parent.relative_to(PKG).parts)  # folders between the module and the package root
        for node in ast.walk(ast.parse(py.read_text(), str(py))):
            up = _upward_steps(node)
            if up is not None:
                found.append(py)
                assert up <= depth, f"{py.relative_to(REPO)}:{node.lineno} resolves {up} folders up, above the package"
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "dirname":
                assert "__file__" not in ast.unparse(node), f"{py.relative_to(REPO)}:{node.lineno}: os.path on __file__"
    assert found  # the scan sees the package's own data paths (weights, assets, static)


def test_a_copy_of_the_package_outside_the_checkout_needs_nothing_from_it(tmp_path):
    """Behavioural: the package's code (no weights) copied elsewhere and run from outside any checkout finds its
    bench faces in itself and looks for data where the user says, never in this repository."""
    site = tmp_path / "site"
    shutil.copytree(PKG, site / "emotionlab", ignore=shutil.ignore_patterns(
        "weights", "*.safetensors", "*.onnx", "__pycache__", "*.pyc"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import json, emotionlab\n"
            "from emotionlab.data.paths import default_data_root\n"
            "from emotionlab.inference.bench import default_faces_dir, peer_paths\n"
            "print(json.dumps({'pkg': emotionlab.__file__, 'data': str(default_data_root().resolve()),"
            " 'faces': str(default_faces_dir()), 'peer': str(peer_paths()[1])}))")
    env = {k: v for k, v in os.environ.items() if k not in ("EMOTIONLAB_DATA", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["pkg"].startswith(str(site))
    assert Path(got["faces"]).parent.parent.parent == site / "emotionlab" and any(Path(got["faces"]).glob("*.jpg"))
    for key in ("data", "peer"):
        assert not got[key].startswith(str(REPO)), (key, got[key])


def test_shipped_bench_faces_are_the_examples():
    """The bench frames from a wheel are the frames of a checkout: the shipped photos equal examples/."""
    from emotionlab.inference.bench import default_faces_dir

    shipped = {p.name: p.read_bytes() for p in default_faces_dir().glob("*.jpg")}
    assert shipped == {p.name: p.read_bytes() for p in (REPO / "examples").glob("*.jpg")}


def test_default_data_root_is_found_from_the_current_directory(monkeypatch, tmp_path):
    from emotionlab.data.paths import checkout_root, default_data_root

    monkeypatch.delenv("EMOTIONLAB_DATA", raising=False)
    monkeypatch.chdir(REPO / "benchmarks")  # anywhere inside the checkout
    assert checkout_root() == REPO and default_data_root() == REPO.parent / "shared" / "data"
    monkeypatch.chdir(tmp_path)  # outside any checkout: relative to where the user is
    assert checkout_root() is None and default_data_root() == Path("..") / "shared" / "data"
