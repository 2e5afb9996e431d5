"""The models behind the routes: a pool of face recognizers (one per worker thread) and the named text models."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..inference.cancel import checkpoint
from .errors import ApiError
from .settings import ServeSettings


class FacePool:
    """One face recognizer per worker thread (created lazily, or all at start with preload), so concurrent
    requests never share a detector.

    An injected ``instance`` is shared by every worker instead, so it must be thread-safe. When a worker is
    stuck past its deadline, :meth:`replace_holder` adds a slot (built only if it is needed) so the
    replacement thread is not starved, and the stuck thread gives one slot back when it ends.
    """

    def __init__(self, size: int, factory: Callable[[], Any] | None = None, instance: Any = None):
        self.factory, self.instance = factory, instance
        self._cond = threading.Condition()
        self._idle: list[Any] = [instance] * int(size)  # None = a slot not built yet
        self._holding: dict[int, Any] = {}  # thread ident -> the recognizer (or None while building) it holds
        self._replaced: set[int] = set()  # holders that got a replacement slot
        self.model_name: str | None = getattr(instance, "model_name", None)
        self.labels: list[str] | None = list(instance.labels) if instance is not None else None
        self.tta: str | None = getattr(instance, "tta", None)  # what the loaded recognizers really do

    def _make(self):
        if self.factory is None:
            raise ApiError(503, "model_unavailable", "no face recognizer configured")
        try:
            rec = self.factory()
        except (FileNotFoundError, ImportError, ValueError, KeyError) as e:
            raise ApiError(503, "model_unavailable", f"face model could not be loaded: {e}") from e
        self.model_name, self.labels, self.tta = rec.model_name, list(rec.labels), getattr(rec, "tta", None)
        return rec

    def run(self, fn: Callable[[Any], Any]):
        """Borrow a recognizer for the duration of ``fn(recognizer)`` (blocks only if all are busy; a
        cancelled job stops waiting)."""
        me = threading.get_ident()
        with self._cond:
            while not self._idle:
                self._cond.wait(0.1)
                checkpoint()
            rec = self._idle.pop()  # built ones are at the end: a spare slot is built only when needed
            self._holding[me] = rec
        try:
            checkpoint()  # abandoned while it waited: give the recognizer back without running
            if rec is None:
                rec = self._make()
            return fn(rec)
        finally:
            with self._cond:
                self._holding.pop(me, None)
                if me in self._replaced:  # a slot was added in this one's place: the total goes back down
                    self._replaced.discard(me)
                    if rec is not None and None in self._idle:
                        self._idle.remove(None)  # keep the built recognizer, drop the unbuilt spare
                        self._idle.append(rec)
                else:
                    self._idle.append(rec)
                self._cond.notify()

    def replace_holder(self, thread_ident: int) -> None:
        """``thread_ident`` is stuck holding a recognizer: add a slot so its replacement can work."""
        with self._cond:
            if thread_ident in self._holding and thread_ident not in self._replaced:
                self._replaced.add(thread_ident)
                self._idle.insert(0, self.instance)  # None (built lazily) unless one instance is shared
                self._cond.notify()

    def preload(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
        built: list[Any] = []
        try:
            for r in idle:
                built.append(r if r is not None else self._make())
        finally:
            with self._cond:
                self._idle.extend(built + idle[len(built):])
                self._cond.notify_all()


class TextModels:
    """Named text models, loaded once on demand; calls to one model are serialized (tokenizers are not
    thread-safe), different models run in parallel."""

    def __init__(self, settings: ServeSettings, instance: Any = None, loader: Callable[[str], Any] | None = None):
        self.settings = settings
        self.allowed = tuple(dict.fromkeys((settings.text_model, *settings.text_models)))
        self._loader = loader
        self._models: dict[str, Any] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._load_lock = threading.Lock()
        if instance is not None:
            self._models["default"] = instance
            self._models[settings.text_model] = instance
            name = getattr(instance, "name", None)
            if isinstance(name, str):
                self._models[name] = instance
                self.allowed = tuple(dict.fromkeys((*self.allowed, name)))

    def check_name(self, name: str | None) -> str:
        key = name or "default"
        if key not in self.allowed:
            raise ApiError(404, "unknown_model", f"text model {key[:80]!r} is not served here; available: "
                                                 f"{', '.join(self.allowed)}")
        return key

    def get(self, name: str | None):
        key = self.check_name(name)
        with self._load_lock:
            if key not in self._models:
                target = self.settings.text_model if key == "default" else key
                loader = self._loader
                if loader is None:
                    try:
                        from ..text import load_text_model as loader
                    except ImportError as e:
                        raise ApiError(503, "model_unavailable", f"text models are not installed: {e}") from e
                try:
                    self._models[key] = loader(target)
                except (FileNotFoundError, ImportError, ValueError, KeyError, OSError) as e:
                    raise ApiError(503, "model_unavailable", f"text model {target!r} could not be loaded: {e}") from e
            model = self._models[key]
            lock = self._locks.setdefault(id(model), threading.Lock())
        return model, lock

    def predict(self, name: str | None, texts: list[str]) -> dict:
        model, lock = self.get(name)
        with lock:
            checkpoint()  # abandoned while it waited for the model
            try:
                preds = model(texts)  # per text: [{"label", "score"}], best first
            except ValueError as e:
                raise ApiError(422, "invalid_text", str(e)) from e
        return {"model": getattr(model, "name", name or "default"), "labels": list(model.labels),
                "multi_label": bool(getattr(model, "multi_label", False)),
                "predictions": [[{"label": str(p["label"]), "score": float(p["score"])} for p in ps] for ps in preds]}
