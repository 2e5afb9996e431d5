"""Fit a face model's temperature on its validation split and record it in the model card.

The validation split only (FER-2013 PublicTest; a folder's ``val/``): the test split stays for reporting, where
``evaluate`` shows the expected calibration error before and after. See ``models.calibration`` for the method.
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from ..models.calibration import calibration_report, fit_temperature


def model_probs(model: str, data: str | Path, split: str, ferplus: Path | None = None,
                batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, str]:
    """Uncalibrated probabilities and labels of ``model`` on a split (labels in the model's own order)
    -> (probs, labels, the name of the part scored)."""
    import torch

    from ..models.classifier import FaceClassifier
    from ..models.hub import load_model
    from .evaluation import _scored_part

    from ..data.utkface import is_utkface

    loaded = load_model(model)
    if Path(data).is_dir() and is_utkface(data):  # gender: UTKFace split and cropped as the model was trained
        from .fairness import utkface_as_trained

        part = utkface_as_trained(loaded, data).face_dataset(split)  # PublicTest -> val, PrivateTest -> test
        name = str(part.usage[0]) if len(part) else split
    else:
        part, _, name = _scored_part(loaded, data, split, ferplus, False, False)
    data_labels = list(part.label_set.labels)
    if data_labels != list(loaded.labels):
        raise ValueError(f"{loaded.name} has classes {loaded.labels} but the data has {data_labels}: a "
                         "temperature is fitted on data with the model's own classes")
    use_onnx = bool(loaded.card.get("onnx_graph"))
    clf = FaceClassifier(loaded, backend="onnx" if use_onnx else "torch", threads=torch.get_num_threads(),
                         calibrated=False)
    return clf.predict_proba(part.images, batch_size), np.asarray(part.labels), name


def fit_model_temperature(model: str, data: str | Path, fit_split: str = "PublicTest",
                          test_split: str | None = "PrivateTest", ferplus: Path | None = None) -> dict:
    """Fit on ``fit_split`` and report ECE / NLL on ``test_split`` before and after: the card's
    ``calibration`` entry."""
    p_fit, y_fit, fit_name = model_probs(model, data, fit_split, ferplus)
    t = fit_temperature(p_fit, y_fit)
    rec: dict = {"method": "temperature", "temperature": t, "fitted_on": f"{Path(data).name} [{fit_name}]",
                 "n_fit": int(len(y_fit)), "date": _dt.date.today().isoformat()}
    if test_split:
        p_test, y_test, test_name = model_probs(model, data, test_split, ferplus)
        rep = calibration_report(p_test, y_test, t)
        rec.update({"reported_on": f"{Path(data).name} [{test_name}]", "n_test": int(len(y_test)),
                    **{k: round(rep[k], 4) for k in ("ece_uncalibrated", "ece", "nll_uncalibrated", "nll")}})
    return rec


def write_calibration(card_path: Path, calibration: dict) -> None:
    """Store ``calibration`` in a card JSON file (atomic replace; every other field kept as it was)."""
    card = json.loads(Path(card_path).read_text())
    card["calibration"] = calibration
    tmp = Path(card_path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(card_path)
