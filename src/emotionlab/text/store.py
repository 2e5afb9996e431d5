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
    return cfg, load_file(str(st))


def backend_arrays(cfg: dict, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of one single-model config (``cfg["prefix"]`` stripped) out of a file's arrays."""
    p = cfg["prefix"]
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}
