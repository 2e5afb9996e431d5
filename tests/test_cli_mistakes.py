"""Every user mistake on the command line is one error line naming the flag and the value, exit code 2, before
any work: no model built, no dataset read, no output written (issue 34)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from emotionlab.cli import app
from emotionlab.data.outputs import PathError, check_input_path, check_output_dir, check_output_file
from emotionlab.models.device import available_devices, resolve_device

runner = CliRunner()


@pytest.fixture
def ws(tmp_path) -> Path:
    """A workspace: a tiny PNG, a file, a folder, a placeholder dataset path (never read) and a text file."""
    cv2.imwrite(str(tmp_path / "face.png"), np.full((32, 32, 3), 128, np.uint8))
    (tmp_path / "file.txt").write_text("x\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "data.csv").write_text("emotion,pixels,Usage\n")
    (tmp_path / "texts.txt").write_text("hello\n")
    return tmp_path


@pytest.fixture
def no_work(monkeypatch):
    """Any model build, dataset read, evaluation, training or text model load fails the test loudly."""
    import emotionlab.data.loader
    import emotionlab.inference
    import emotionlab.models.hub
    import emotionlab.text
    import emotionlab.training.engine
    import emotionlab.training.evaluation

    def forbidden(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    for mod, name in [(emotionlab.inference, "FaceEmotionRecognizer"), (emotionlab.models.hub, "load_model"),
                      (emotionlab.data.loader, "load_dataset"), (emotionlab.training.evaluation, "run_evaluation"),
                      (emotionlab.training.engine, "fit"), (emotionlab.text, "load_text_model")]:
        monkeypatch.setattr(mod, name, forbidden)


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def invoke_mistake(ws: Path, args: list[str], *needles: str) -> str:
    """Run a wrong command; check exit 2, no traceback, nothing written, and one error line holding the needles."""
    before = _files(ws)
    r = runner.invoke(app, [a.replace("WS", str(ws)) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n.replace("WS", str(ws)) in lines[0], (n, lines[0])
    assert _files(ws) == before, "the command wrote something"
    return lines[0]


@pytest.mark.parametrize("args, needles", [
    (["predict", "WS/face.png", "--out", "WS/file.txt"], ["--out WS/file.txt", "is a file"]),
    (["predict", "WS/face.png", "--csv", "WS/folder"], ["--csv WS/folder", "is a folder"]),
    (["predict", "WS/face.png", "--csv", "WS/file.txt/faces.csv"], ["--csv WS/file.txt/faces.csv", "is a file"]),
    (["evaluate", "--data", "WS/data.csv", "--json", "WS/folder"], ["--json WS/folder", "is a folder"]),
    (["evaluate", "--data", "WS/data.csv", "--out", "WS/file.txt"], ["--out WS/file.txt", "is a file"]),
    (["batch", "WS/face.png", "--out", "WS/file.txt/rows.csv"], ["--out WS/file.txt/rows.csv", "cannot create"]),
    (["bench", "--json", "WS/folder"], ["--json WS/folder", "is a folder"]),
    (["text", "--file", "WS/texts.txt", "--out", "WS/folder"], ["--out WS/folder", "is a folder"]),
    (["train", "--data", "WS/data.csv", "--out", "WS/file.txt"], ["--out WS/file.txt", "is a file"]),
    (["explain", "WS/face.png", "--out", "WS/file.txt"], ["--out WS/file.txt", "is a file"]),
    (["data", "split", "WS/data.csv", "--out", "WS/file.txt"], ["--out WS/file.txt", "is a file"]),
    (["data", "dedup", "WS/data.csv", "--groups", "WS/folder"], ["--groups WS/folder", "is a folder"]),
    (["data", "stats", "WS/data.csv", "--plot", "WS/folder/new/plot.txt"], ["--plot", ".png"]),
    (["maintain", "ensemble", "a", "b", "--out", "WS/file.txt"], ["--out WS/file.txt", "is a file"]),
])
def test_output_path_mistakes_fail_before_any_work(ws, no_work, args, needles):
    invoke_mistake(ws, args, *needles)


@pytest.mark.parametrize("args, flag_value", [
    (["predict", "WS/face.png", "--threads", "0"], "--threads 0"),
    (["predict", "WS/face.png", "--batch", "0"], "--batch 0"),
    (["predict", "WS/face.png", "--stride", "0"], "--stride 0"),
    (["predict", "WS/face.png", "--smoothing", "nan"], "--smoothing nan"),
    (["evaluate", "--data", "WS/data.csv", "--batch-size", "0"], "--batch-size 0"),
    (["train", "--data", "WS/data.csv", "--lr", "inf"], "--lr inf"),
    (["train", "--data", "WS/data.csv", "--epochs", "-1"], "--epochs -1"),
    (["maintain", "ensemble", "a", "b", "--out", "WS/e", "--weight", "1", "--weight", "nan"], "--weight nan"),
    (["maintain", "tune-bias", "a", "--data", "WS/data.csv", "--classes", "happy", "--out", "WS/t", "--step", "nan"],
     "--step nan"),
    (["serve", "--face-weight", "nan"], "--face-weight nan"),
    (["serve", "--workers", "0"], "--workers 0"),
    (["text", "hello", "--batch-size", "0"], "--batch-size 0"),
    (["webcam", "--camera", "-1"], "--camera -1"),
    (["data", "dedup", "WS/data.csv", "--threshold", "-1"], "--threshold -1"),
    (["data", "frames", "WS/folder", "--out", "WS/fr", "--fps", "inf"], "--fps inf"),
])
def test_bad_numbers_fail_with_the_flag_and_value(ws, no_work, args, flag_value):
    line = invoke_mistake(ws, args, flag_value)
    assert "expected" in line


@pytest.mark.parametrize("args, needles", [
    (["predict", "WS/face.png", "--device", "nope"], ["--device 'nope'", "usable here: cpu"]),
    (["predict", "WS/face.png", "--device", "cuda:99"], ["--device 'cuda:99'", "usable here: cpu"]),
    (["train", "--data", "WS/data.csv", "--device", "tpu"], ["--device 'tpu'", "usable here: cpu"]),
])
def test_unknown_or_unusable_devices(ws, no_work, args, needles):
    invoke_mistake(ws, args, *needles)


@pytest.mark.parametrize("args, needles", [
    (["text", "--file", "WS/folder"], ["--file WS/folder", "is a folder"]),
    (["text", "--file", "WS/missing.txt"], ["--file WS/missing.txt", "not found"]),
    (["evaluate", "--data", "WS/missing.csv"], ["--data WS/missing.csv", "not found"]),
    (["evaluate", "--data", "WS/data.csv", "--tta", "nope"], ["--tta 'nope'"]),
    (["evaluate", "--data", "WS/data.csv", "--align"], ["--align", "--detect"]),
    (["predict", "rtsp://127.0.0.1:1/x", "--rtsp-transport", "sctp"], ["--rtsp-transport 'sctp'"]),
    (["bench", "--faces", "WS/missing"], ["--faces WS/missing", "not found"]),
    (["data", "review", "WS/data.csv", "--ferplus", "WS/missing.csv"], ["--ferplus WS/missing.csv", "not found"]),
    (["explain-dataset", "--data", "WS/missing.csv"], ["--data WS/missing.csv", "not found"]),
])
def test_missing_or_wrong_kind_of_input(ws, no_work, args, needles):
    invoke_mistake(ws, args, *needles)


def test_cuda_without_a_gpu_names_what_is_usable():
    if "cuda:0" in available_devices():
        pytest.skip("a CUDA GPU is usable here")
    with pytest.raises(ValueError, match=r"--device 'cuda': .*\(usable here: cpu"):
        resolve_device("cuda", "--device")


def test_resolve_device_names():
    assert resolve_device("cpu") == resolve_device(" CPU ") == resolve_device("cpu:0") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    for bad in ("nope", "cuda:x", "gpu", ""):
        with pytest.raises(ValueError, match="not a device; expected cpu, cuda, cuda:N, mps or auto"):
            resolve_device(bad)


def test_path_checks_create_nothing(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert check_output_file(tmp_path / "new" / "deeper" / "rows.csv", suffixes=(".csv",)).name == "rows.csv"
    assert check_output_file(f) == f and check_output_file("-", allow_stdout=True) == Path("-")
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    cases = [(lambda: check_output_file(tmp_path, "--csv"), "is a folder"),
             (lambda: check_output_file(tmp_path / "rows.txt", "--out", suffixes=(".csv",)), "expected a .csv file"),
             (lambda: check_output_file(f / "x.csv", "--csv"), "is a file, not a folder"),
             (lambda: check_output_dir(f, "--out"), "is a file, not a folder"),
             (lambda: check_output_dir(f / "sub" / "dir", "--out"), "cannot create this folder"),
             (lambda: check_input_path(tmp_path / "nope", "--data"), "not found"),
             (lambda: check_input_path(tmp_path, "--file", kind="file"), "is a folder")]
    for call, msg in cases:
        with pytest.raises(PathError, match=msg) as e:
            call()
        assert isinstance(e.value, ValueError) and str(e.value).startswith(("--", "--data", "--file"))
