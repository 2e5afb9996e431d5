"""Batch inference at scale (`emotionlab.inference.batch`, `emotionlab batch`): one row schema on every engine,
no input silently lost, the model built once per worker and never pickled."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_inference import EXAMPLES, FER7, make_run_dir
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.inference import FaceEmotionRecognizer
from emotionlab.inference.batch import BatchPredictor, columns, predict_dask, predict_local

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_run_dir(tmp_path_factory.mktemp("batch") / "random_t")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """Two photos (1 and 5 faces), a blank image (no face), a truncated file and a missing path."""
    d = tmp_path_factory.mktemp("batch_in")
    shutil.copy(EXAMPLES / "astronaut.jpg", d / "a.jpg")
    shutil.copy(EXAMPLES / "group_collage.jpg", d / "b.jpg")
    cv2.imwrite(str(d / "c_blank.png"), np.full((120, 160, 3), 128, np.uint8))
    (d / "d_truncated.jpg").write_bytes((EXAMPLES / "astronaut.jpg").read_bytes()[:300])
    return [str(d / n) for n in ("a.jpg", "b.jpg", "c_blank.png", "d_truncated.jpg")] + [str(d / "e_missing.jpg")]


def _check_rows(df: pd.DataFrame, inputs: list[str]) -> None:
    assert list(df.columns) == columns(FER7)
    assert list(dict.fromkeys(df["path"])) == inputs  # every input, in input order
    per = df.groupby("path", sort=False)
    assert per.size().tolist() == [1, 5, 1, 1, 1]
    assert df["n_faces"].tolist() == [1, 5, 5, 5, 5, 5, 0, 0, 0]
    assert df["face"].tolist()[:6] == [0, 0, 1, 2, 3, 4] and df["face"].isna().sum() == 3
    assert str(df["x"].dtype) == "Int64" and df["label"].isna().sum() == 3
    err = df.set_index("path")["error"]
    assert pd.isna(err[inputs[2]]) and "not a readable image" in err[inputs[3]] and "no such file" in err[inputs[4]]
    probs = df[[f"p_{k}" for k in FER7]].dropna().to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)


def test_rows_match_the_recognizer_and_keep_every_input(model_dir, inputs):
    df = predict_local(inputs, model=str(model_dir), chunk=2)
    _check_rows(df, inputs)
    rec = FaceEmotionRecognizer(model=str(model_dir))
    faces = rec.predict(inputs[1])
    got = df[df["path"] == inputs[1]]
    assert got[["x", "y", "w", "h"]].to_numpy().tolist() == [list(f.box) for f in faces]
    assert got["label"].tolist() == [f.label for f in faces]
    np.testing.assert_allclose(got[[f"p_{k}" for k in FER7]].to_numpy(float),
                               [[f.scores[k] for k in FER7] for f in faces], atol=1e-6)


def test_bytes_items_give_the_same_rows_as_paths(model_dir, inputs):
    """Spark's binaryFile source hands the executors bytes, not paths: both must read the same."""
    pred = BatchPredictor(model=str(model_dir))
    by_path = pred.rows(inputs[:4])
    by_bytes = pred.rows([(p, Path(p).read_bytes()) for p in inputs[:4]])
    assert by_path == by_bytes
    assert pred.rows([("x.jpg", b"")])[0]["error"] == "x.jpg: file is empty (0 bytes)"
    assert "a video" in pred.rows(["clip.mp4"])[0]["error"]


def test_predictor_builds_the_model_once_and_pickles_without_it(model_dir, inputs, monkeypatch):
    import emotionlab.inference.batch as batchmod
    import emotionlab.inference.recognizer as recmod

    monkeypatch.setattr(batchmod, "_PROCESS_RECOGNIZERS", {})  # earlier tests built this model in this process
    built = []
    orig = recmod.FaceEmotionRecognizer.__init__

    def counting(self, *a, **kw):
        built.append(1)
        orig(self, *a, **kw)

    monkeypatch.setattr(recmod.FaceEmotionRecognizer, "__init__", counting)
    pred = BatchPredictor(model=str(model_dir), batch=1)
    assert pred.columns() == columns(FER7) and not built  # the schema comes from the card alone
    pred.rows(inputs[:2])
    pred.rows(inputs[:1])
    assert len(built) == 1
    blob = pickle.dumps(pred)
    assert len(blob) < 2000  # parameters only: the weights travel with the package, not the task
    clone = pickle.loads(blob)
    assert clone._rec is None and clone.model == str(model_dir) and clone.batch == 1
    clone.rows(inputs[:1])  # an engine unpickles the function once per task: still one model per process
    assert len(built) == 1 and clone._rec is pred._rec
    BatchPredictor(model=str(model_dir), tta="flip").rows(inputs[:1])  # other parameters: their own model
    assert len(built) == 2


def test_map_pandas_is_what_spark_calls(model_dir, inputs):
    pred = BatchPredictor(model=str(model_dir))
    frames = [pd.DataFrame({"path": inputs[:2], "content": [Path(p).read_bytes() for p in inputs[:2]]}),
              pd.DataFrame({"path": inputs[2:]})]
    out = pd.concat(list(pred.map_pandas(frames)), ignore_index=True)
    _check_rows(out, inputs)
    with pytest.raises(ValueError, match="'path' column"):
        next(pred.map_pandas([pd.DataFrame({"file": inputs})]))


def test_local_processes_give_the_same_rows(model_dir, inputs):
    one = predict_local(inputs, model=str(model_dir))
    two = predict_local(inputs, workers=2, chunk=2, model=str(model_dir))
    pd.testing.assert_frame_equal(one, two)


def _recognizers_held() -> int:
    from emotionlab.inference import batch

    return len(batch._PROCESS_RECOGNIZERS)


def test_dask_on_a_distributed_cluster_gives_the_same_rows(model_dir, inputs):
    pytest.importorskip("dask.bag")
    distributed = pytest.importorskip("distributed")
    local = predict_local(inputs, model=str(model_dir))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        df = predict_dask(inputs, npartitions=5, client=client, model=str(model_dir))
        held = client.run(_recognizers_held)  # {worker address: models built there}
    pd.testing.assert_frame_equal(local, df)
    assert sorted(held.values()) in ([1, 1], [0, 1])  # 5 partitions, at most one model per worker process


def test_spark_mapinpandas_on_binaryfile(model_dir, inputs, tmp_path):
    """Runs where pyspark (and Java) are installed; CI installs neither (pyspark is ~450 MB)."""
    pytest.importorskip("pyspark")
    pytest.importorskip("pyarrow")
    if shutil.which("java") is None:
        pytest.skip("no java for Spark")
    import os
    import sys

    from pyspark.sql import SparkSession

    from emotionlab.inference.batch import predict_spark

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = SparkSession.builder.master("local[2]").appName("test").config("spark.ui.enabled", "false").getOrCreate()
    try:
        src = spark.read.format("binaryFile").load([p for p in inputs[:4]])
        got = predict_spark(src, model=str(model_dir)).toPandas()
    finally:
        spark.stop()
    got["path"] = got["path"].str.replace("file:", "", regex=False)
    got = got.sort_values(["path", "face"], na_position="last").reset_index(drop=True)
    want = predict_local(inputs[:4], model=str(model_dir))
    assert got["path"].tolist() == want["path"].tolist()
    np.testing.assert_allclose(got[[f"p_{k}" for k in FER7]].to_numpy(float),
                               want[[f"p_{k}" for k in FER7]].to_numpy(float), atol=1e-6)
    assert got["n_faces"].tolist() == want["n_faces"].tolist()


def test_batch_cli_dask_engine(model_dir, inputs, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "rows.jsonl"
    r = runner.invoke(app, ["batch", *inputs, "--out", str(out), "--model", str(model_dir), "--engine", "dask",
                            "--workers", "2", "--partitions", "3"])
    assert r.exit_code == 1, r.output
    df = pd.read_json(out, lines=True, dtype={"error": object})
    _check_rows(df.astype({c: "Int64" for c in ("face", "x", "y", "w", "h", "n_faces")}), inputs)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_batch_cli_writes_every_row_and_fails_on_bad_files(model_dir, inputs, tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"rows{suffix}"
    r = runner.invoke(app, ["batch", *inputs, "--out", str(out), "--model", str(model_dir)])
    assert r.exit_code == 1, r.output  # two inputs failed: reported, not hidden
    assert "5 image(s): 6 face(s), 1 without a face, 2 failed" in " ".join(r.stderr.split())
    df = {".csv": pd.read_csv, ".parquet": pd.read_parquet,
          ".jsonl": lambda p: pd.read_json(p, lines=True)}[suffix](out)
    assert len(df) == 9 and list(df.columns) == columns(FER7)


def test_batch_cli_rejects_bad_options(model_dir, inputs, tmp_path):
    for args, msg in [(["--engine", "ray"], "expected local, dask or spark"),
                      (["--out", str(tmp_path / "x.txt")], "expected a .csv, .parquet or .jsonl"),
                      (["--tta", "five"], "--tta 'five'"), (["--model", "nope"], "no model 'nope'")]:
        argv = ["batch", inputs[0], "--out", str(tmp_path / "r.csv"), "--model", str(model_dir), *args]
        r = runner.invoke(app, argv)
        assert r.exit_code != 0 and msg in " ".join(r.output.split()), (args, r.output)


def test_predict_csv_has_the_batch_schema(model_dir, inputs, tmp_path):
    """`predict --csv` and `batch` write the same columns; a faceless image keeps its row."""
    r = runner.invoke(app, ["predict", *inputs[:3], "--model", str(model_dir), "--csv", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    p = pd.read_csv(tmp_path / "p.csv")
    b = predict_local(inputs[:3], model=str(model_dir))
    assert list(p.columns) == list(b.columns) and len(p) == len(b) == 7
    assert p["n_faces"].tolist() == b["n_faces"].tolist()
    np.testing.assert_allclose(p["p_happy"].fillna(-1), b["p_happy"].astype(float).fillna(-1), atol=1e-4)
