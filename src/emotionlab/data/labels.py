"""Label sets as data: canonical orders, folder-name aliases and mapping tables between datasets.

Every other module gets class names from here, never from scattered string literals.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of class names; the index of a name is its integer label."""

    name: str
    labels: tuple[str, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        key = canonical_name(label)
        if key not in self.labels:
            raise KeyError(f"label {label!r} is not in label set {self.name} {list(self.labels)}")
        return self.labels.index(key)

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and canonical_name(label) in self.labels


FER7 = LabelSet(
    "fer7",
    ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    "FER-2013 (Goodfellow et al. 2013), integer labels 0..6 in this order",
)
# FER+ column order in fer2013new.csv is neutral, happiness, surprise, sadness, anger, disgust, fear, contempt;
# we keep the FER7 order and append contempt so that FER7 indices stay valid.
FERPLUS8 = LabelSet(
    "ferplus8",
    ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt"),
    "FER+ (Barsoum et al. 2016): FER7 plus contempt",
)
CKPLUS7 = LabelSet(
    "ckplus7",
    ("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"),
    "CK+ (Lucey et al. 2010) emotion codes 1..7 in this order",
)
AFFECTNET8 = LabelSet(
    "affectnet8",
    ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"),
    "AffectNet (Mollahosseini et al. 2017) expression codes 0..7",
)

# Not an emotion: UTKFace's apparent binary gender annotation (0 male, 1 female), for the gender model only.
GENDER2 = LabelSet(
    "gender2",
    ("male", "female"),
    "UTKFace (Zhang et al. 2017) apparent binary gender codes 0 (male), 1 (female)",
)

LABEL_SETS: dict[str, LabelSet] = {ls.name: ls for ls in (FER7, FERPLUS8, CKPLUS7, AFFECTNET8, GENDER2)}

# Folder names and dataset spellings -> canonical names.
ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happiness": "happy", "happy": "happy", "joy": "happy",
    "sadness": "sad", "sad": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral", "calm": "neutral",
    "contempt": "contempt", "contemptuous": "contempt",
}


def canonical_name(name: str) -> str:
    """Map a dataset or folder spelling (``Happiness``, ``surprised``) to its canonical label name."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def get_label_set(name: str | LabelSet) -> LabelSet:
    if isinstance(name, LabelSet):
        return name
    key = name.strip().lower().replace("-", "").replace("_", "").replace("+", "plus")
    for ls in LABEL_SETS.values():
        if ls.name == key:
            return ls
    raise KeyError(f"unknown label set {name!r}; known: {', '.join(LABEL_SETS)}")


def mapping_table(src: LabelSet | str, dst: LabelSet | str) -> dict[str, str | None]:
    """Explicit class mapping between two label sets; a class with no counterpart maps to None."""
    s, d = get_label_set(src), get_label_set(dst)
    return {lab: (lab if lab in d.labels else None) for lab in s.labels}


def index_map(src: LabelSet | str, dst: LabelSet | str) -> list[int]:
    """Index map for converting integer labels; -1 marks classes with no counterpart in ``dst``."""
    s, d = get_label_set(src), get_label_set(dst)
    table = mapping_table(s, d)
    return [d.labels.index(t) if t is not None else -1 for t in (table[lab] for lab in s.labels)]
