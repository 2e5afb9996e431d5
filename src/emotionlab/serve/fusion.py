"""Late fusion of a face prediction and a text prediction over one shared label space.

Face and text models are trained on different label sets, so each distribution is first mapped onto the
**shared label space = FER7** (angry, disgust, fear, happy, sad, surprise, neutral), the face models' own
space, and the two are then averaged with configurable weights and renormalized:

    fused = (face_weight * face_fer7 + text_weight * text_fer7) / (face_weight + text_weight)

Only the ratio of the weights matters; they are normalized by dividing by the larger one first, so any pair
of finite numbers >= 0 (1e308 and 1e308, 5e-324 and 1e-323) gives a distribution that sums to 1. A side that
is absent (no face found, no text sent) or has weight 0 drops out and the other one is the
result. Mapping of each label set onto FER7 (one source label -> one FER7 label, its score moves there):

==============  ==========================================================================================
face FER+       FER7 labels map to themselves; ``contempt`` -> disgust
TweetEval       anger -> angry, joy -> happy, **optimism -> happy** (a positive-valence label; FER7 has no
                better home for it), sadness -> sad
CARER           anger -> angry, fear -> fear, joy -> happy, **love -> happy**, sadness -> sad,
                surprise -> surprise
GoEmotions      Ekman grouping of the GoEmotions paper (Demszky et al. 2020): anger/annoyance/disapproval ->
                angry; disgust -> disgust; fear/nervousness -> fear; joy/amusement/approval/excitement/
                gratitude/love/optimism/relief/pride/admiration/desire/caring -> happy; sadness/
                disappointment/embarrassment/grief/remorse -> sad; surprise/realization/confusion/curiosity
                -> surprise; neutral -> neutral
CrowdFlower     anger/hate -> angry; worry -> fear; happiness/fun/enthusiasm/love/relief -> happy;
                sadness -> sad; surprise -> surprise; neutral/empty/boredom -> neutral
==============  ==========================================================================================

A label with no mapping is never dropped silently: its score is reported under ``unmapped`` and the
mapped part is renormalized. Multi-label text models (GoEmotions) give independent sigmoid scores; after
mapping they are normalized to sum to 1 so that they weigh the same as a softmax distribution.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping

SHARED_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

_GROUPS: dict[str, tuple[str, ...]] = {
    "angry": ("angry", "anger", "annoyance", "disapproval", "hate", "mad"),
    "disgust": ("disgust", "disgusted", "contempt"),
    "fear": ("fear", "fearful", "afraid", "scared", "nervousness", "worry"),
    "happy": ("happy", "happiness", "joy", "amusement", "approval", "excitement", "gratitude", "love",
              "optimism", "relief", "pride", "admiration", "desire", "caring", "fun", "enthusiasm"),
    "sad": ("sad", "sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "surprised", "realization", "confusion", "curiosity"),
    "neutral": ("neutral", "calm", "empty", "boredom"),
}
# Source label (lower case) -> shared label.
LABEL_MAP: dict[str, str] = {src: dst for dst, srcs in _GROUPS.items() for src in srcs}


def to_shared(scores: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Scores over any label set -> (distribution over SHARED_LABELS summing to 1, unmapped scores).

    The distribution is all zeros when no label maps or every mapped score is 0.
    """
    out = dict.fromkeys(SHARED_LABELS, 0.0)
    unmapped: dict[str, float] = {}
    for label, score in scores.items():
        s = float(score)
        if s < 0:
            raise ValueError(f"score for {label!r} is negative ({s}); expected probabilities")
        dst = LABEL_MAP.get(label.strip().lower())
        if dst is None:
            unmapped[label] = s
        else:
            out[dst] += s
    total = sum(out.values())
    if total > 0:
        out = {k: v / total for k, v in out.items()}
    return out, unmapped


def normalize_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights -> the same ratios summing to 1, without overflow or underflow (divide by the largest first).

    Raises ValueError for a weight that is not a finite number >= 0, or when all are 0.
    """
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not (math.isfinite(w) and w >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {w}")
    top = max((float(w) for w in weights.values()), default=0.0)
    if not top > 0:
        raise ValueError("the weights are all 0")
    scaled = {k: float(w) / top for k, w in weights.items()}  # in [0, 1], the largest exactly 1
    total = sum(scaled.values())  # in [1, len(weights)]
    return {k: v / total for k, v in scaled.items()}


def _topk_to_scores(preds: Iterable[Mapping]) -> dict[str, float]:
    """Text contract ``[{"label", "score"}, ...]`` -> {label: score}."""
    return {str(p["label"]): float(p["score"]) for p in preds}


def fuse(face_scores: Mapping[str, float] | None, text_preds: Iterable[Mapping] | Mapping[str, float] | None,
         face_weight: float = 0.5, text_weight: float = 0.5) -> dict:
    """Weighted late fusion; returns the fused distribution, its label, the weights used and what went in.

    ``text_preds`` is one text's prediction list (``[{"label", "score"}]``) or a {label: score} mapping.
    Raises ValueError when the weights are invalid or neither side has anything to fuse.
    """
    normalize_weights({"face_weight": face_weight, "text_weight": text_weight})  # validates both
    parts: list[tuple[str, float, dict[str, float]]] = []
    unmapped: dict[str, dict[str, float]] = {}
    inputs: dict[str, dict[str, float] | None] = {"face": None, "text": None}
    if face_scores is not None:
        dist, um = to_shared(face_scores)
        inputs["face"] = dist
        if um:
            unmapped["face"] = um
        if sum(dist.values()) > 0:
            parts.append(("face", float(face_weight), dist))
    if text_preds is not None:
        scores = dict(text_preds) if isinstance(text_preds, Mapping) else _topk_to_scores(text_preds)
        dist, um = to_shared(scores)
        inputs["text"] = dist
        if um:
            unmapped["text"] = um
        if sum(dist.values()) > 0:
            parts.append(("text", float(text_weight), dist))
    if not parts:
        raise ValueError("nothing to fuse: no face was found and no text was given")
    try:
        weights = normalize_weights({n: w for n, w, _ in parts})
    except ValueError:
        raise ValueError(f"the weights of the available inputs ({', '.join(n for n, _, _ in parts)}) are all 0"
                         ) from None
    fused = {k: sum(weights[n] * d[k] for n, _, d in parts) for k in SHARED_LABELS}
    label = max(fused, key=fused.get)
    return {
        "label": label,
        "scores": fused,
        "labels": list(SHARED_LABELS),
        "weights": weights,
        "inputs": inputs,
        "unmapped": unmapped,
    }
