"""Batch inference that scales out: one picklable predictor, rows in one fixed schema, on any engine.

Why this shape: on a cluster the model must be built once per worker process (not once per image, and not
shipped from the driver: the weights travel inside the installed package, the task carries only the
parameters), every input must give at least one row (a face per row; an image without a face or an unreadable
file gives one row saying so, never a silent gap), and every engine must return the same columns so that a
laptop run and a cluster run can be compared row by row. The same :class:`BatchPredictor` runs

* locally over processes (:func:`predict_local`, ``emotionlab batch --engine local --workers N``),
* on Dask (:func:`predict_dask`: a bag's ``map_partitions``, any scheduler or a ``distributed`` cluster),
* on Spark (:func:`predict_spark`: ``DataFrame.mapInPandas`` over a ``path`` column or Spark's
  ``binaryFile`` source, whose ``content`` bytes are decoded on the executors, so they need no shared disk).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..data.decode import DecodeLimits

Item = str | os.PathLike | tuple[str, bytes]

_BASE = ["path", "face", "x", "y", "w", "h", "label", "score"]


def columns(labels: list[str], gender_labels: list[str] | None = None) -> list[str]:
    """The row schema: ``path, face, x, y, w, h, label, score, p_<label>..., [gender, p_gender_<g>...],
    n_faces, error`` (``emotionlab predict --csv`` writes the same columns)."""
    g = ["gender", *[f"p_gender_{k}" for k in gender_labels]] if gender_labels else []
    return [*_BASE, *[f"p_{k}" for k in labels], *g, "n_faces", "error"]


_TYPES = {"path": "string", "face": "int", "x": "int", "y": "int", "w": "int", "h": "int", "label": "string",
          "gender": "string", "n_faces": "int", "error": "string"}  # every other column: a probability


def spark_schema(labels: list[str], gender_labels: list[str] | None = None) -> str:
    """The row schema as a Spark DDL string (``mapInPandas``'s ``schema``)."""
    return ", ".join(f"`{c}` {_TYPES.get(c, 'double')}" for c in columns(labels, gender_labels))


def face_rows(path: str, faces: list[dict], labels: list[str], gender_labels: list[str] | None = None,
              error: str | None = None) -> list[dict[str, Any]]:
    """One input's result (faces as ``Face.to_dict()``) -> its rows: one per face, or one row with empty face
    fields when it has none (``n_faces`` 0, or ``error`` set)."""
    cols = columns(labels, gender_labels)
    if not faces:
        return [{**dict.fromkeys(cols), "path": path, "n_faces": 0, "error": error}]
    rows = []
    for i, f in enumerate(faces):
        r: dict[str, Any] = {"path": path, "face": int(f.get("face_id", i)),
                             **dict(zip(("x", "y", "w", "h"), (int(v) for v in f["box"]))),
                             "label": f["label"], "score": float(f["scores"][f["label"]]),
                             **{f"p_{k}": float(f["scores"][k]) for k in labels}}
        if gender_labels:
            g = f.get("gender")
            r["gender"] = g["label"] if g else None
            r.update({f"p_gender_{k}": (float(g["scores"][k]) if g else None) for k in gender_labels})
        r.update({"n_faces": len(faces), "error": error})
        rows.append(r)
    return rows


def to_frame(rows: list[dict], cols: list[str]) -> Any:
    """Rows -> pandas DataFrame in ``cols`` order; integer columns stay integers where a face is missing
    (pandas' nullable ``Int64``), probabilities stay floats (NaN) even in a partition without a face."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=cols)
    return df.astype({c: {"int": "Int64", "string": object}.get(_TYPES.get(c, ""), "float64") for c in cols})


_PROCESS_RECOGNIZERS: dict[tuple, Any] = {}  # one recognizer per parameter set and process


class BatchPredictor:
    """A picklable ``items -> rows`` function that builds its :class:`FaceEmotionRecognizer` lazily, once per
    process. Parameters are stored as given (scikit-learn style); pickling carries them, not the model.

    Items are paths, or ``(name, encoded_bytes)`` pairs. ``batch`` images are classified per call.
    """

    def __init__(self, model: str = "default", detector: str = "auto", backend: str = "auto", threads: int = 1,
                 tta: str = "none", attributes: tuple[str, ...] | str = ("emotion",), gender_model: str = "gender",
                 batch: int = 16, limits: DecodeLimits | None = None):
        self.model = model
        self.detector = detector
        self.backend = backend
        self.threads = threads
        self.tta = tta
        self.attributes = attributes
        self.gender_model = gender_model
        self.batch = batch
        self.limits = limits
        self._rec = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_rec"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._rec = None

    # -- the recognizer, built on first use in each process
    @property
    def recognizer(self):
        """This process's recognizer for these parameters. Engines unpickle the task's function once per task
        (Dask, Spark), so the cache is per process, keyed by the parameters, not per object."""
        if self._rec is None:
            key = (self.model, self.detector, self.backend, self.threads, self.tta, str(self.attributes),
                   self.gender_model)
            if key not in _PROCESS_RECOGNIZERS:
                import cv2
                import torch

                from .recognizer import FaceEmotionRecognizer

                torch.set_num_threads(self.threads)
                cv2.setNumThreads(self.threads)
                _PROCESS_RECOGNIZERS[key] = FaceEmotionRecognizer(
                    model=self.model, detector=self.detector, backend=self.backend, threads=self.threads,
                    tta=self.tta, attributes=self.attributes, gender_model=self.gender_model)
            self._rec = _PROCESS_RECOGNIZERS[key]
        return self._rec

    @property
    def labels(self) -> list[str]:
        return self.recognizer.labels

    @property
    def gender_labels(self) -> list[str] | None:
        g = self.recognizer.gender
        return list(g.labels) if g is not None else None

    def columns(self) -> list[str]:
        """The output columns, read from the model cards (no model is built)."""
        return columns(*_labels_of(self))

    # -- items -> rows
    def rows(self, items: Iterable[Item]) -> list[dict[str, Any]]:
        """Rows for every item, in order; a bad item gives an ``error`` row and the others go on. Images stream
        through :meth:`FaceEmotionRecognizer.predict_iter`: at most ``batch`` decoded at a time."""
        from ..data.errors import DataError
        from .video import VIDEO_EXTS

        rec, labels, glabels = self.recognizer, self.labels, self.gender_labels

        def named() -> Iterator[tuple[str, Any]]:
            for item in items:
                name, data = (str(item[0]), item[1]) if isinstance(item, tuple) else (str(item), None)
                if Path(name).suffix.lower() in VIDEO_EXTS:
                    data = DataError(name, "a video: `emotionlab predict` gives its per-frame timeline; batch "
                                           "reads images")
                yield name, (name if data is None else data)

        out: list[dict] = []
        for r in rec.predict_iter(named(), batch=self.batch, limits=self.limits):
            out.extend(face_rows(r.name, [f.to_dict() for f in r.faces or ()], labels, glabels, error=r.detail))
        return out

    __call__ = rows  # Dask: ``bag.map_partitions(predictor)``

    def map_pandas(self, frames: Iterable[Any]) -> Iterator[Any]:
        """Spark ``mapInPandas``: DataFrames with a ``path`` column (and optionally ``content`` bytes, as
        Spark's ``binaryFile`` source gives) -> DataFrames of rows in :meth:`columns` order."""

        for df in frames:
            if "path" not in df.columns:
                raise ValueError(f"batch input needs a 'path' column; got columns {list(df.columns)}")
            if "content" in df.columns:
                items = [(str(p), bytes(c) if c is not None else b"") for p, c in zip(df["path"], df["content"])]
            else:
                items = [str(p) for p in df["path"]]
            yield to_frame(self.rows(items), columns(self.labels, self.gender_labels))  # labels of the built model


# ----------------------------------------------------------------------------------------------- engines
_WORKER: BatchPredictor | None = None


def _init_worker(predictor: BatchPredictor) -> None:
    global _WORKER
    _WORKER = predictor


def _work(chunk: list[Item]) -> list[dict]:
    assert _WORKER is not None
    return _WORKER.rows(chunk)


def _chunks(items: list[Item], n: int) -> list[list[Item]]:
    return [items[i:i + n] for i in range(0, len(items), n)]


def predict_local(items: Iterable[Item], workers: int = 1, chunk: int = 64, progress=None,
                  **predictor_kw) -> Any:
    """Rows for every item as a pandas DataFrame, over ``workers`` processes (each builds the model once).

    ``progress(n_items_done)`` is called after each chunk. Workers are spawned (not forked: torch and ONNX
    Runtime thread pools do not survive a fork), so a script that calls this with ``workers > 1`` needs the
    usual ``if __name__ == "__main__":`` guard."""

    items = list(items)
    pred = BatchPredictor(**predictor_kw)
    rows: list[dict] = []
    if workers <= 1:
        for c in _chunks(items, chunk):
            rows += pred.rows(c)
            if progress:
                progress(len(c))
        return to_frame(rows, pred.columns())
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    chunks = _chunks(items, chunk)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(pred,)) as ex:
        for c, r in zip(chunks, ex.map(_work, chunks)):
            rows += r
            if progress:
                progress(len(c))
    return to_frame(rows, pred.columns())


def predict_dask(items: Iterable[Item], npartitions: int | None = None, scheduler: str | None = "processes",
                 client: Any = None, **predictor_kw) -> Any:
    """Rows for every item on Dask: a bag of items, ``map_partitions(BatchPredictor)``, gathered into a pandas
    DataFrame in input order. ``client``: a ``distributed.Client`` (its cluster runs the tasks); otherwise
    ``scheduler`` (``processes``, ``threads``, ``sync``)."""
    try:
        import dask.bag as db
    except ImportError as e:
        raise ImportError("the dask engine needs dask: pip install 'dask[distributed]'") from e

    items = list(items)
    pred = BatchPredictor(**predictor_kw)
    bag = db.from_sequence(items, npartitions=npartitions or max(1, min(len(items), 2 * (os.cpu_count() or 1))))
    out = bag.map_partitions(pred)
    rows = out.compute() if client is not None else out.compute(scheduler=scheduler)
    return to_frame(list(rows), pred.columns())


def _labels_of(pred: BatchPredictor) -> tuple[list[str], list[str] | None]:
    """Labels from the model cards alone, so the driver does not need to build a recognizer."""
    from ..models.hub import load_card
    from .recognizer import parse_attributes

    labels = list(load_card(pred.model)["labels"])
    glabels = (list(load_card(pred.gender_model)["labels"])
               if "gender" in parse_attributes(pred.attributes) else None)
    return labels, glabels


def predict_spark(df: Any, **predictor_kw) -> Any:
    """A Spark DataFrame with ``path`` (and optionally ``content``, e.g. ``spark.read.format("binaryFile")``)
    -> a Spark DataFrame of rows (lazy: the executors run it when an action or a write asks)."""
    pred = BatchPredictor(**predictor_kw)
    cols = [c for c in ("path", "content") if c in df.columns]
    if "path" not in cols:
        raise ValueError(f"predict_spark needs a 'path' column; got {df.columns}")
    return df.select(*cols).mapInPandas(pred.map_pandas, schema=spark_schema(*_labels_of(pred)))
