"""Training configuration: a dataclass, small YAML files under ``configs/``, CLI flags override both."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from .augment import AugmentConfig


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "onecycle", "step", "plateau", "none")
SELECT_METRICS = ("accuracy", "macro_f1")  # validation metrics a run can be selected on
TEACHER_TTA = ("flip", "ten")  # test-time views of a distillation teacher (models.classifier.tta_views)
_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict}


def _coerce(where: str, key: str, value, type_str: str):
    """``value`` as the field's declared type, or a ValueError naming the key and what was expected.

    Why: YAML reads ``lr: 1e-3`` as the *string* '1e-3' (YAML 1.1 wants a dot), and a wrong type used to
    surface as a traceback from deep inside torch after the dataset had been loaded.
    """
    names = [t.strip() for t in type_str.split("|")]
    if value is None:
        if "None" in names:
            return None
        raise ValueError(f"{where}: {key} is empty; expected {type_str}")
    for name in names:
        want = _TYPES.get(name.split("[")[0])
        if want is None:
            return value  # a nested type (tuple[float, float], AugmentConfig): checked by its own code
        if want is bool:
            if isinstance(value, bool):
                return value
            continue
        if isinstance(value, bool):
            continue  # True is an int to Python, not to a training recipe
        if want is float and isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, want):
            return value
        if want in (int, float) and isinstance(value, str):
            try:
                num = float(value)
            except ValueError:
                continue
            if want is float:
                return num
            if num.is_integer():
                return int(num)
    raise ValueError(f"{where}: {key} is {value!r} ({type(value).__name__}); expected {type_str}")


def _check_types(cls, d: dict, where: str) -> dict:
    types = {f.name: str(f.type) for f in fields(cls)}
    return {k: _coerce(where, k, v, types[k]) for k, v in d.items()}


@dataclass
class TrainConfig:
    model: str = "emonet_s"
    model_kwargs: dict = field(default_factory=dict)
    data: str = ""
    label_set: str = "fer7"
    in_size: int | None = None
    ferplus: str | None = None  # path to fer2013new.csv: FER+ votes become soft targets
    ferplus_weight: float = 0.5  # target = w * FER+ distribution + (1 - w) * FER-2013 one-hot
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | onecycle | step | plateau | none
    milestones: list = field(default_factory=lambda: [])  # epochs for 'step' (seed 000 dropped twice)
    gamma: float = 0.1
    plateau_patience: int = 3
    warmup_epochs: float = 1.0
    patience: int = 0  # early stopping on the selection metric; 0 = off
    #: the validation metric that picks ``best.safetensors`` and drives early stopping and plateau drops:
    #: ``accuracy`` (the field's headline) or ``macro_f1`` (imbalanced label sets: FER+ contempt, disgust)
    select: str = "accuracy"
    #: wall-clock seconds for the whole run: ``epochs`` becomes a cap and the run plans how many epochs fit from
    #: its measured epoch time (cosine: re-planned while the first quarter runs, later only shortened, so the
    #: schedule still ends annealed inside a fixed slot such as a lent GPU's 10-minute command; plateau / none:
    #: re-planned at the recent epoch time all along, stopping before an epoch would overrun)
    time_budget: float | None = None
    label_smoothing: float = 0.0
    class_weights: bool = False  # inverse-frequency weights in the loss
    #: weights = (inverse frequency) ** power: 1 = fully balanced classes, 0.5 = a milder push toward rare classes
    #: (FER+ contempt is 50x rarer than neutral: full weights trade many neutral faces for a few contempt ones)
    class_weight_power: float = 1.0
    balanced_sampler: bool = False  # sample batches class-balanced instead
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    channels_last: bool = True
    #: bf16 autocast: true / false, or ``auto``: time a few training steps both ways on this machine and keep the
    #: faster (bf16 trains ~1.6-1.9x faster on CPUs with AMX, slower on AVX2 or AVX-512 without AMX); the
    #: choice replaces ``auto`` in the run's config.json, so ``--resume`` and the model card keep it
    bf16: bool | str = False
    compile: bool = False
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    max_train: int | None = None  # cap the training set (quick experiments, tests)
    val_tta: bool = False
    skip_bad: bool = False
    align: bool = False  # photos (UTKFace): roll-align each detected crop, as `predict --align`
    #: start from these weights (a shipped name such as ``fast``, a run directory or a .safetensors file) instead
    #: of a random init: fine-tuning, unlike ``--resume``, starts a fresh optimizer and schedule
    init_from: str | None = None
    #: knowledge distillation: shipped names / run directories whose TTA-averaged probabilities on the training
    #: faces (computed once, cached in the run directory) become part of every target
    teachers: list = field(default_factory=lambda: [])
    distill_weight: float = 0.5  # target = w * teacher distribution + (1 - w) * (FER+ / one-hot target)
    distill_temperature: float = 1.0  # > 1 softens the teacher distribution (Hinton et al. 2015)
    #: the teachers' test-time views: 'flip' (2 views) or 'ten' (5 shifts x flip: a better teacher, ~5x its cost,
    #: paid once since the probabilities are cached)
    teacher_tta: str = "flip"
    #: exponential moving average of the weights, updated every step (timm's ModelEmaV2): > 0 turns it on
    #: (0.999 is typical for a few thousand steps); validation, ``best.safetensors`` and the card then use the
    #: averaged weights. The decay ramps up as min(decay, (1 + n) / (10 + n)) so short runs are not dominated
    #: by the initial weights.
    ema_decay: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config keys {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        aug = d.pop("augment", None) or {}
        if isinstance(aug, AugmentConfig):
            aug = aug.to_dict()
        aug_known = {f.name for f in fields(AugmentConfig)}
        if set(aug) - aug_known:
            raise ValueError(f"unknown augment keys {sorted(set(aug) - aug_known)}; known: {sorted(aug_known)}")
        if "scale" in aug:
            sc = aug["scale"]
            if not (isinstance(sc, (list, tuple)) and len(sc) == 2):
                raise ValueError(f"training config: augment.scale is {sc!r}; expected [min, max], e.g. [0.9, 1.1]")
            aug["scale"] = tuple(_coerce("training config", "augment.scale", v, "float") for v in sc)
        aug = _check_types(AugmentConfig, aug, "training config: augment")
        d = _check_types(cls, d, "training config")
        for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("select", SELECT_METRICS),
                             ("teacher_tta", TEACHER_TTA)):
            if key in d and d[key] not in allowed:
                raise ValueError(f"training config: unknown {key} {d[key]!r}; use {', '.join(allowed)}")
        if isinstance(d.get("bf16"), str) and d["bf16"] != "auto":
            raise ValueError(f"training config: bf16 is {d['bf16']!r}; expected true, false or auto")
        return cls(augment=AugmentConfig(**aug), **d)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "TrainConfig":
        d = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping of training options")
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)
