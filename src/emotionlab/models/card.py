"""The face model card: one schema for every JSON card beside a face model's weights.

Why a dataclass: five places build cards (training, ``last-epoch``, ``tune-bias``, ``quantize``, ensembles) and
``ship`` edits them; each used to write its own dict. ``ModelCard`` names the fields every loader relies on, checks
them when a card is read (one error naming the card file and the field), and keeps any other field as it was
(``extra``), so cards written by older or newer code round-trip without losing what they record.

Cards written before ``schema_version`` existed (every card shipped up to 2026-12-06) read as version 1. A card
with a newer version than this code knows is refused with a message that says so. Text models keep their card
inside their own config format, checked on load the same way by ``emotionlab.text.store.validate_config``; the
face detectors' asset files are another format.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the version this code writes and the newest it reads
SCHEMA_VERSION = 1
MODEL_FORMAT = "emotionlab-model/1"
ENSEMBLE_FORMAT = "emotionlab-ensemble/1"
FORMATS = (MODEL_FORMAT, ENSEMBLE_FORMAT)


class CardError(ValueError):
    """A model card that does not follow the schema (a ``ValueError``: the CLI prints it as one line)."""


#: optional fields: name -> (accepted types, what the error says is expected)
_OPTIONAL: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a string"),
    "label_set": ((str,), "a string"),
    "in_chans": ((int,), "a positive integer"),
    "arch_kwargs": ((dict,), "an object"),
    "params": ((int,), "an integer"),
    "mflops": ((int, float), "a number"),
    "training": ((dict,), "an object"),
    "metrics": ((dict,), "an object"),
    "status": ((str,), "a string"),
    "shipped": ((str,), "a date string"),
    "notes": ((str,), "a string"),
    "weights": ((str,), "a .safetensors file name"),
    "storage": ((str,), "a string"),
    "members": ((list,), "a list of {model, weight}"),
    "onnx_graph": ((dict,), "an object"),
    "quantized_from": ((str,), "a string"),
    "logit_bias": ((dict,), "an object"),
    "float_metrics": ((dict,), "an object"),
    "reproduce": ((list,), "a list of commands"),
}


@dataclass(kw_only=True)
class ModelCard:
    """A face model's card. Required: ``arch``, ``labels``, ``in_size`` (and ``num_classes`` and ``preprocess``
    for a model with weights; ``members`` for an ensemble). Optional fields are ``None`` when absent and are not
    written then; ``extra`` holds every field the schema does not name (``task``, ``license``, ...). The fields
    are declared in the order the cards lay them out."""

    schema_version: int = SCHEMA_VERSION
    format: str = MODEL_FORMAT
    name: str | None = None
    arch: str
    arch_kwargs: dict | None = None
    members: list | None = None
    num_classes: int | None = None
    label_set: str | None = None
    labels: list[str]
    in_size: int
    in_chans: int | None = None
    preprocess: dict | None = None
    params: int | None = None
    mflops: float | None = None
    training: dict | None = None
    storage: str | None = None
    notes: str | None = None
    quantized_from: str | None = None
    weights: str | None = None
    onnx_graph: dict | None = None
    logit_bias: dict | None = None
    metrics: dict | None = None
    float_metrics: dict | None = None
    status: str | None = None
    shipped: str | None = None
    reproduce: list | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ reading
    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "model card") -> ModelCard:
        """Check ``data`` (a parsed card) against the schema; ``source`` (the file) names it in errors."""
        where = str(source)
        if not isinstance(data, dict):
            raise CardError(f"{where}: a model card must be a JSON object, got {type(data).__name__}")

        def bad(key: str, expected: str) -> CardError:
            if key not in data:
                return CardError(f"{where}: field {key!r} is missing (expected {expected})")
            return CardError(f"{where}: field {key!r} must be {expected}, got {data[key]!r:.80}")

        version = data.get("schema_version", 1)  # cards before the field existed are version 1
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise bad("schema_version", "a positive integer")
        if version > SCHEMA_VERSION:
            raise CardError(f"{where}: field 'schema_version' is {version}, newer than this emotionlab reads "
                            f"({SCHEMA_VERSION}); upgrade emotionlab to use this model")
        fmt = data.get("format", MODEL_FORMAT)
        if fmt not in FORMATS:
            raise bad("format", f"one of {', '.join(FORMATS)}")
        ensemble = fmt == ENSEMBLE_FORMAT
        if not isinstance(data.get("arch"), str) or not data["arch"]:
            raise bad("arch", "an architecture name (see `emotionlab models list`)")
        labels = data.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise bad("labels", "a non-empty list of class names")
        if not _posint(data.get("in_size")):
            raise bad("in_size", "the input side in pixels (a positive integer)")
        if "num_classes" in data or not ensemble:
            if not _posint(data.get("num_classes")):
                raise bad("num_classes", "a positive integer")
            if data["num_classes"] != len(labels):
                raise CardError(f"{where}: field 'num_classes' is {data['num_classes']} but 'labels' names "
                                f"{len(labels)} classes")
        if not ensemble and not isinstance(data.get("preprocess"), dict):
            raise bad("preprocess", "an object (size, mean, std, ...)")
        if ensemble and (not isinstance(data.get("members"), list) or not data["members"]):
            raise bad("members", "a non-empty list of {model, weight}")
        for key, (types, expected) in _OPTIONAL.items():
            v = data.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, types)):
                raise bad(key, expected)
        if data.get("in_chans") is not None and not _posint(data["in_chans"]):
            raise bad("in_chans", "a positive integer")
        if isinstance(data.get("weights"), str) and (Path(data["weights"]).name != data["weights"]
                                                     or not data["weights"].endswith(".safetensors")):
            raise bad("weights", "a .safetensors file name beside the card")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw = {k: v for k, v in data.items() if k in known}
        kw["schema_version"] = version
        return cls(**kw, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def from_json(cls, text: str, source: str | os.PathLike = "model card") -> ModelCard:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise CardError(f"{source}: not a JSON model card ({e})") from None
        return cls.from_dict(data, source)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelCard:
        """The card in ``path``, checked; a missing or unreadable file or a bad field names ``path``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CardError(f"{path}: cannot read the model card ({e})") from None
        return cls.from_json(text, path)

    # ------------------------------------------------------------------------------------------ writing
    def to_dict(self) -> dict:
        """The card as written: the schema's fields in order (absent optional ones left out), then the extra
        fields in their own order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra":
                continue
            if v is not None:
                out[f.name] = v
        for k, v in self.extra.items():
            if k not in out:
                out[k] = v
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_plain)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the card atomically (a temporary file renamed over ``path``): a reader never sees half a card."""
        self.check(path)
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def check(self, source: str | os.PathLike = "model card") -> ModelCard:
        """Validate the card as it would be read back (a builder's mistake fails at write time, not at load)."""
        return ModelCard.from_dict(json.loads(self.to_json()), source)

    # ------------------------------------------------------------------------------------------ access
    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style read of any field, schema or extra: ``card.get("task")``."""
        return self.to_dict().get(key, default)

    def set(self, key: str, value: Any) -> None:
        """Set a field by name: a schema field's attribute, else an extra field (``None`` removes it)."""
        if key in {f.name for f in dataclasses.fields(self)} - {"extra"}:
            setattr(self, key, value)
        elif value is None:
            self.extra.pop(key, None)
        else:
            self.extra[key] = value

    def without(self, *keys: str) -> ModelCard:
        """A copy with the named fields removed (a derived model does not inherit its source's metrics, ...)."""
        d = {k: v for k, v in json.loads(self.to_json()).items() if k not in keys}
        return ModelCard.from_dict(d)

    @property
    def is_ensemble(self) -> bool:
        return self.format == ENSEMBLE_FORMAT


def _plain(v: Any) -> Any:
    """numpy scalars and arrays (metrics computed with numpy) as plain JSON values, paths as strings; anything else
    as its text, like ``training.checkpoint.write_json`` (a card is never lost to an odd value in a recipe)."""
    if hasattr(v, "tolist"):
        return v.tolist()
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def _posint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def validate_card(data: Any, source: str | os.PathLike = "model card") -> dict:
    """Check a parsed card (a dict, as the loaders hand it on) and return it unchanged."""
    ModelCard.from_dict(data, source)
    return data
