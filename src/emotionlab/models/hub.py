"""Pretrained models that ship inside the package, and loading of any trained run, with no network.

A model is a safetensors weight file plus a JSON model card (architecture, labels, input size, preprocessing,
recipe, metrics). ``weights/aliases.json`` maps the public names ``default`` and ``fast`` to shipped files.
A card may name its weights file (``"weights": "other.safetensors"``, beside the card) so that an int8 ONNX
graph of a shipped model (``"onnx_graph"``, see ``emotionlab.inference.quantize``) shares the float weights
it was quantized from instead of shipping a second copy. An ensemble's card (``emotionlab.models.ensemble``) names
shipped members instead of weights, so `default` can be several models at the cost of one card.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.preprocess import PreprocessConfig
from .card import validate_card
from .ensemble import ProbEnsemble, check_members, is_ensemble_card, member_refs
from .registry import create_model, flush_subnormals, list_models

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
#: no file shipped inside the package may exceed this ("each file <= 25 MB", read in decimal megabytes)
MAX_SHIPPED_FILE_BYTES = 25_000_000


@dataclass
class LoadedModel:
    model: nn.Module
    card: dict
    weights: Path
    card_path: Path | None = None
    #: every weights file the model computes with (an ensemble: its members'), for caches keyed on content
    weight_files: tuple[Path, ...] = ()

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def preprocess(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.card.get("preprocess"))

    @property
    def name(self) -> str:
        return self.card.get("name", self.weights.stem)


def aliases() -> dict[str, str]:
    p = WEIGHTS_DIR / "aliases.json"
    return json.loads(p.read_text()) if p.exists() else {}


def weights_of(card_path: Path) -> Path:
    """The safetensors file of a model card: the card's ``weights`` entry (a file name beside the card), else the
    card's own name with ``.safetensors``. An ensemble's card has no weights of its own: it is returned itself."""
    card_path = Path(card_path)
    ref = None
    if card_path.exists():
        try:
            card = json.loads(card_path.read_text())
            if is_ensemble_card(card):
                return card_path
            ref = card.get("weights")
        except (ValueError, AttributeError) as e:
            raise ValueError(f"{card_path}: not a JSON model card ({e})") from e
    if ref is None:
        return card_path.with_suffix(".safetensors")
    if not isinstance(ref, str) or Path(ref).name != ref or not ref.endswith(".safetensors"):
        raise ValueError(f"{card_path}: field 'weights' must be a .safetensors file name beside the card, got {ref!r}")
    return card_path.with_name(ref)


def shipped_models() -> dict[str, Path]:
    """Shipped model name -> card path."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.json")) if p.name != "aliases.json"
            and weights_of(p).exists()}


def resolve(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    """-> (weights .safetensors, model card .json) for a shipped name, alias, file or run directory."""
    s = str(name_or_path)
    al = aliases()
    if s in al:
        s = al[s]
    shipped = shipped_models()
    if s in shipped:
        return weights_of(shipped[s]), shipped[s]
    p = Path(s)
    if p.is_dir():
        for stem in ("best", "model"):
            if (p / f"{stem}.safetensors").exists() and (p / f"{stem}.json").exists():
                return p / f"{stem}.safetensors", p / f"{stem}.json"
        if (p / "ensemble.json").exists():  # `emotionlab maintain ensemble --out DIR`
            return p / "ensemble.json", p / "ensemble.json"
        raise FileNotFoundError(f"{p}: no best.safetensors + best.json model (or ensemble.json) in this directory")
    if p.suffix == ".safetensors" and p.exists():
        card = p.with_suffix(".json")
        if not card.exists():
            raise FileNotFoundError(f"{p}: its model card {card.name} is missing beside it")
        if p.name == "last.safetensors" and (p.parent / "best.json").exists():
            raise ValueError(f"{p} is a training checkpoint (the last epoch's weights, optimizer and RNG state), "
                             f"not a model: pass the run directory {p.parent} for its best epoch, or make a model "
                             f"of the last epoch with `emotionlab maintain last-epoch {p.parent} --out DIR`")
        return p, card
    if p.suffix == ".json" and p.exists():
        return weights_of(p), p
    hint = ""
    if s in list_models():
        hint = f" ({s!r} is an architecture: train it with `emotionlab train --model {s}` and pass the run directory)"
    known = sorted(set(al) | set(shipped))
    raise FileNotFoundError(f"no model {s!r}{hint}. Shipped: {', '.join(known) or 'none yet'}; "
                            "or give a run directory / .safetensors path")


def read_card(card_path: str | os.PathLike) -> dict:
    """The card in ``card_path``, checked against the schema (``models.card.ModelCard``): a card with a missing or
    bad field is refused with one error naming the file and the field."""
    try:
        card = json.loads(Path(card_path).read_text())
    except ValueError as e:
        raise ValueError(f"{card_path}: not a JSON model card ({e})") from None
    return validate_card(card, card_path)


def load_card(name_or_path: str | os.PathLike = "default") -> dict:
    """The model card of a shipped name, alias, file or run directory, without building the model."""
    return read_card(resolve(name_or_path)[1])


def load_model(name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu",
               _depth: int = 0) -> LoadedModel:
    """Load a shipped or trained model for inference (eval mode). Weights never go through pickle."""
    from safetensors.torch import load_file

    wpath, cpath = resolve(name_or_path)
    card = read_card(cpath)
    if is_ensemble_card(card):
        return _load_ensemble(card, Path(cpath), device, _depth)
    model = create_model(card["arch"], num_classes=card["num_classes"], in_size=card["in_size"],
                         in_chans=card.get("in_chans", 1), **card.get("arch_kwargs", {}))
    sd = load_file(str(wpath))
    flush_subnormals(sd)  # weights saved before 2026-12-05 or trained elsewhere: keep CPU inference at full speed
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{wpath}: weights do not fit {card['arch']} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval().to(device)
    return LoadedModel(model, card, Path(wpath), Path(cpath), (Path(wpath),))


def _load_ensemble(card: dict, cpath: Path, device, depth: int) -> LoadedModel:
    """An ensemble card's members, loaded and checked to share labels, input and preprocessing."""
    if depth > 0:
        raise ValueError(f"{cpath}: a member of an ensemble is itself an ensemble; list its members instead")
    refs = member_refs(card, cpath)
    members = []
    for ref, _ in refs:
        try:
            members.append(load_model(ref, device, _depth=depth + 1))
        except (FileNotFoundError, ValueError) as e:
            raise type(e)(f"{cpath}: member {ref!r}: {e}") from e
    check_members([(m.name, m.card) for m in members], str(cpath))
    for k in ("labels", "in_size"):
        if card.get(k) != members[0].card.get(k):
            raise ValueError(f"{cpath}: field {k!r} is {card.get(k)!r} but its members have "
                             f"{members[0].card.get(k)!r}")
    model = ProbEnsemble([m.model for m in members], [w for _, w in refs]).eval().to(device)
    files = tuple(f for m in members for f in m.weight_files)
    return LoadedModel(model, card, cpath, cpath, files)


def best_available() -> str | None:
    """The best model that exists: the 'default' alias, else None."""
    try:
        resolve("default")
        return "default"
    except FileNotFoundError:
        return None
