"""Ensembles of face models as one model: the weighted mean of the members' class probabilities.

Why a module and not a loop in each caller: ``evaluate``, the recognizer, TTA, the service and ONNX export all
take one ``nn.Module`` that maps a normalized batch to logits. The ensemble returns ``log(sum_i w_i p_i)``, whose
softmax is exactly the weighted mean of the members' probabilities, so every caller scores and serves it
unchanged and a test-time-augmented ensemble averages the same probabilities as ``benchmarks/face_ensembles.py``.

An ensemble's model card has no weights file of its own: it names its members (shipped names, or card paths
relative to the card) and their weights::

    {"format": "emotionlab-ensemble/1", "arch": "ensemble",
     "members": [{"model": "emonet_m_fer2013", "weight": 1.0}, {"model": "emonet_m_s1_fer2013", "weight": 1.0}],
     "labels": [...], "num_classes": 7, "in_size": 48, "in_chans": 1, "preprocess": {...}, ...}
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .card import ENSEMBLE_FORMAT, ModelCard

#: what a member's card must share with the others: the ensemble feeds them one input batch
SHARED_KEYS = ("labels", "in_size", "in_chans", "preprocess")


class ProbEnsemble(nn.Module):
    """``log(sum_i w_i softmax(m_i(x)))`` with the weights normalized to sum 1."""

    arch = "ensemble"

    def __init__(self, members: list[nn.Module], weights: list[float]):
        super().__init__()
        if not members or len(members) != len(weights):
            raise ValueError(f"an ensemble needs one weight per member (got {len(members)} members, "
                             f"{len(weights)} weights)")
        if any(not w > 0 for w in weights):
            raise ValueError(f"ensemble weights must be positive, got {weights}")
        self.members = nn.ModuleList(members)
        w = torch.tensor([float(x) for x in weights], dtype=torch.float32)
        self.register_buffer("weights", w / w.sum())
        m0 = members[0]
        self.in_size, self.in_chans = getattr(m0, "in_size", None), getattr(m0, "in_chans", 1)
        self.num_classes = getattr(m0, "num_classes", None)
        self.arch_kwargs: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = 0
        for w, m in zip(self.weights, self.members):
            p = p + w * F.softmax(m(x).float(), dim=1)
        return torch.log(p.clamp_min(1e-12))


def is_ensemble_card(card: dict) -> bool:
    return isinstance(card, dict) and card.get("format") == ENSEMBLE_FORMAT


def member_refs(card: dict, card_path: Path) -> list[tuple[str, float]]:
    """(model reference, weight) of each member; a reference that is a path is read relative to the card."""
    members = card.get("members")
    if not isinstance(members, list) or not members:
        raise ValueError(f"{card_path}: field 'members' must be a non-empty list of {{model, weight}}")
    out = []
    for i, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("model"), str):
            raise ValueError(f"{card_path}: members[{i}] must be {{\"model\": NAME_OR_PATH, \"weight\": W}}, "
                             f"got {m!r}")
        ref = m["model"]
        if "/" in ref or ref.endswith(".json"):  # a path: relative to the card, so a run folder can move
            p = Path(ref)
            ref = str(p if p.is_absolute() else (Path(card_path).parent / p))
        try:
            w = float(m.get("weight", 1.0))
        except (TypeError, ValueError):
            raise ValueError(f"{card_path}: members[{i}].weight must be a number, got {m.get('weight')!r}") from None
        out.append((ref, w))
    return out


def check_members(cards: list[tuple[str, dict]], where: str) -> None:
    """Members must share labels (in order), input size, channels and preprocessing: they see one batch."""
    (n0, c0), rest = cards[0], cards[1:]
    if is_ensemble_card(c0) or any(is_ensemble_card(c) for _, c in rest):
        raise ValueError(f"{where}: a member is itself an ensemble; list its members instead")
    for n, c in rest:
        for k in SHARED_KEYS:
            if c.get(k) != c0.get(k):
                raise ValueError(f"{where}: member {n} has {k} {c.get(k)!r} but {n0} has {c0.get(k)!r}; an "
                                 f"ensemble's members must share {', '.join(SHARED_KEYS)}")


def ensemble_card(members: list[tuple[str, float]], name: str, cards: list[tuple[str, dict]]) -> dict:
    """The card of a new ensemble from its members' (name, card); metrics come later (``maintain ship``)."""
    c0 = cards[0][1]
    return ModelCard(
        format=ENSEMBLE_FORMAT,
        name=name,
        arch="ensemble",
        members=[{"model": ref, "weight": float(w)} for ref, w in members],
        num_classes=c0["num_classes"],
        label_set=c0.get("label_set"),
        labels=list(c0["labels"]),
        in_size=c0["in_size"],
        in_chans=c0.get("in_chans", 1),
        preprocess=c0.get("preprocess"),
        params=sum(int(c.get("params") or 0) for _, c in cards),
        mflops=round(sum(float(c.get("mflops") or 0) for _, c in cards), 2),
        training={"members": {c.get("name", n): c.get("training", {}) for n, c in cards},
                  "selection": "each member: its own card; the ensemble: weighted mean of probabilities"},
    ).to_dict()
