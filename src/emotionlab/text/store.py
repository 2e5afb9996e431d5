"""Text model files: ``<path>.json`` (config, vocabularies, card) + ``<path>.safetensors`` (arrays); no pickle.

Kept apart from the classifier so that a backend can read a saved model (a fine-tune starting from another
fine-tune's layers) without importing the classifier that imports it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

KINDS = ("naive_bayes", "tfidf_lr", "tfidf_svm", "embed_lr", "embed_mlp", "finetune", "ensemble")
FORMAT_VERSION = 1


def write_model_files(path: str | os.PathLike, cfg: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``path.json`` + ``path.safetensors`` (``path`` without suffix; a folder gets ``model.*``)."""
    from safetensors.numpy import save_file

    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    elif path.is_dir():
        path = path / "model"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path) + ".safetensors")
    Path(str(path) + ".json").write_text(json.dumps(cfg, ensure_ascii=False))
    return Path(str(path) + ".json")


def update_config(path: str | os.PathLike, **fields) -> Path:
    """Replace top-level fields of a saved model's JSON (atomically; the safetensors file is untouched): how a
    fitted temperature (``card``) and the thresholds moved with it are stored without rewriting the weights."""
    path = Path(path)
    path = path.with_suffix(".json") if path.suffix else Path(str(path) + ".json")
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg.update(fields)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def read_model_files(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(config, arrays) of a saved model: a ``.json`` file, its stem, or a folder holding ``model.json``."""
    from safetensors.numpy import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "model.json"
    if path.suffix != ".json":
        path = Path(str(path) + ".json") if not path.suffix else path.with_suffix(".json")
    st = path.with_suffix(".safetensors")
    for f in (path, st):
        if not f.exists():
            raise FileNotFoundError(f"{f}: text model file not found")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a text model config ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("kind") not in KINDS:
        raise ValueError(f"{path}: not a text model config (field 'kind' must be one of {KINDS})")
    validate_config(cfg, path)
    return cfg, load_file(str(st))


def validate_config(cfg: dict, source: str | os.PathLike = "text model", where: str = "") -> None:
    """The text model schema (``format`` 1), checked on load: one ``ValueError`` naming the file and the field.

    Why: a hand-edited or truncated config used to fail deep inside a backend (a KeyError, a shape mismatch) or,
    worse, load and answer with thresholds for other labels. Fields: ``format`` (≤ this code's), ``kind``,
    ``labels`` (non-empty, distinct strings), ``multi_label`` (bool), ``thresholds`` (null, or one finite number
    in [0, 1] per label), ``card`` (an object; its ``calibration.temperature`` a number in [0.01, 100]), ``params``
    (an object); ensembles: ``members`` (configs with the same labels) and one finite ``weights`` entry >= 0 each.
    """
    import math

    def bad(field: str, expected: str) -> ValueError:
        return ValueError(f"{source}: field '{where}{field}' must be {expected}, got {cfg.get(field)!r:.80}")

    fmt = cfg.get("format")
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise bad("format", "a positive integer")
    if fmt > FORMAT_VERSION:
        raise ValueError(f"{source}: text model format {fmt} is newer than this emotionlab reads "
                         f"({FORMAT_VERSION}); upgrade emotionlab")
    if cfg.get("kind") not in KINDS:
        raise bad("kind", f"one of {', '.join(KINDS)}")
    labels = cfg.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels) \
            or len(set(labels)) != len(labels):
        raise bad("labels", "a non-empty list of distinct label names")
    if not isinstance(cfg.get("multi_label"), bool):
        raise bad("multi_label", "true or false")
    th = cfg.get("thresholds")
    if th is not None and (not isinstance(th, list) or len(th) != len(labels) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and 0 <= t <= 1
            for t in th)):
        raise bad("thresholds", f"null or {len(labels)} numbers in [0, 1] (one per label)")
    card = cfg.get("card", {})
    if not isinstance(card, dict):
        raise bad("card", "an object")
    cal = card.get("calibration")
    if cal is not None:
        t = cal.get("temperature") if isinstance(cal, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.01 <= t <= 100:
            raise ValueError(f"{source}: field '{where}card.calibration.temperature' must be a finite number in "
                             f"[0.01, 100], got {t!r}")
    if not isinstance(cfg.get("params", {}), dict):
        raise bad("params", "an object")
    if cfg["kind"] == "ensemble":
        members, weights = cfg.get("members"), cfg.get("weights")
        if not isinstance(members, list) or not members or not all(isinstance(m, dict) for m in members):
            raise bad("members", "a non-empty list of member configs")
        if not isinstance(weights, list) or len(weights) != len(members) or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0
                for w in weights) or sum(weights) <= 0:
            raise bad("weights", f"{len(members)} finite numbers >= 0 (one per member), not all 0")
        for i, m in enumerate(members):
            validate_config(m, source, f"{where}members[{i}].")
            if m["labels"] != labels:
                raise ValueError(f"{source}: field '{where}members[{i}].labels' must equal the ensemble's labels")


def backend_arrays(cfg: dict, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of one single-model config (``cfg["prefix"]`` stripped) out of a file's arrays."""
    p = cfg["prefix"]
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}
