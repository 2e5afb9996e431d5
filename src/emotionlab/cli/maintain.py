"""``emotionlab maintain``: release steps for maintainers (turning trained runs into shipped models).

Thin shells over :mod:`emotionlab.training.release`: the flags are checked here, before any work; the steps
themselves, and the cards they write, live in the library. Users need none of these: ``emotionlab models``
lists and shows the models, ``train`` / ``evaluate`` / ``export`` make and check them.

The old names (``emotionlab models ship``, ``quantize``, ``tune-bias``, ``ensemble``, ``last-epoch``) still work
for one release, hidden from ``models --help``, with a one-line note pointing here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import typer
from rich.markup import escape

from .common import bounds, checked, console, fail

maintain_app = typer.Typer(
    help="Maintainer release steps: a run's last epoch, logit bias, ensembles, shipping into the package, int8 "
         "graphs. Users need none of these.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(maintain_app, name="maintain")


def _run(step: Callable, /, *args, **kwargs):
    """A release step: a mistake it finds (``ValueError`` / ``FileNotFoundError``) is one error line, exit 2."""
    try:
        return step(*args, **kwargs)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    except RuntimeError as e:  # an internal check that failed: not the user's mistake, but still one line
        fail(str(e), code=1)


def _check_name(name: str) -> None:
    """A shipped model's name becomes file names in the weights folder: a plain name, never a path."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name) or name == "aliases" or name.endswith(".json"):
        fail(f"--name {name!r}: expected a plain model name such as emonet_s_fer2013 (letters, digits, _ . -)")


@maintain_app.command("last-epoch")
def last_epoch(
    run: Path = typer.Argument(..., help="Training run directory (last.safetensors + last.json + best.json)."),
    out: Path = typer.Option(..., "--out", help="Directory for the model (best.safetensors + best.json)."),
    weights: str = typer.Option("auto", "--weights", help="ema | model | auto (ema when the run kept one)."),
) -> None:
    """Make a model of a run's last epoch, for when the best-validation epoch is not the one to keep (a
    robustness stage chosen on clean + corrupted accuracy): every command that takes a run directory takes it."""
    from ..data.outputs import check_input_path, check_output_dir
    from ..training.release import last_epoch as step

    if weights not in ("auto", "ema", "model"):
        fail(f"--weights {weights!r}: expected ema, model or auto")
    with checked():
        check_input_path(run, "RUN", kind="dir")
        check_output_dir(out, "--out")
    card = _run(step, run, out, weights)
    val = (card.metrics or {}).get("validation", {})
    console.print(f"{escape((card.training or {}).get('selection', ''))} -> {escape(str(out))} "
                  f"(validation accuracy {val.get('accuracy', float('nan')):.4f})")


@maintain_app.command("tune-bias")
def tune_bias(
    model: str = typer.Argument(..., help="Model to adjust: shipped name, alias or run directory."),
    data: Path = typer.Option(..., "--data", help="Dataset whose validation split (FER-2013 PublicTest) picks the "
                                                  "bias; the test split is never read."),
    classes: str = typer.Option(..., "--classes", help="Comma list of the classes to bias, e.g. contempt."),
    out: Path = typer.Option(..., "--out", help="Run directory for the adjusted model (ship it with "
                                                "`maintain ship`)."),
    ferplus: Optional[Path] = typer.Option(None, "--ferplus", help="fer2013new.csv: needed for 8-class FER+ models "
                                                                   "(validation on the FER+ majority labels)."),
    metric: str = typer.Option("macro_f1", help="Validation metric to maximize: macro_f1 | accuracy."),
    tta: str = typer.Option("flip", help="Views the choice is scored with: none | flip | ten."),
    lo: float = typer.Option(-1.0, callback=bounds(), help="Smallest bias tried."),
    hi: float = typer.Option(3.0, callback=bounds(), help="Largest bias tried."),
    step: float = typer.Option(0.1, callback=bounds(0, lo_open=True), help="Grid step."),
) -> None:
    """Post-hoc logit bias for rare classes (picked on validation, baked into the classifier)."""
    from ..data.outputs import check_input_path, check_output_dir
    from ..inference.recognizer import TTA_MODES
    from ..training.release import tune_bias as run_step

    if (out / "best.safetensors").exists():
        fail(f"{out} already holds a model; choose a new --out")
    if hi < lo:
        fail(f"--lo {lo} --hi {hi}: expected lo <= hi")
    if metric not in ("macro_f1", "accuracy"):
        fail(f"--metric {metric!r}: expected macro_f1 or accuracy")
    if tta not in TTA_MODES:
        fail(f"--tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
    with checked():
        check_input_path(data, "--data")
        if ferplus is not None:
            check_input_path(ferplus, "--ferplus", kind="file")
        check_output_dir(out, "--out")
    rec = _run(run_step, model, data, classes.split(","), out, ferplus=ferplus, metric=metric, tta=tta, lo=lo,
               hi=hi, step=step)
    before, after = rec["validation_before"], rec["validation_after"]
    console.print(f"{rec['source']}: {', '.join(f'{c} {b:+.2f}' for c, b in rec['biases'].items())} on "
                  f"{escape(rec['layer'])}; {rec['split']} ({tta}) accuracy {before['accuracy']:.4f} -> "
                  f"{after['accuracy']:.4f}, macro-F1 {before['macro_f1']:.4f} -> {after['macro_f1']:.4f}; "
                  f"{escape(str(out))}/best.safetensors (ship it with `emotionlab maintain ship`)", highlight=False)


@maintain_app.command("ensemble")
def ensemble(
    members: list[str] = typer.Argument(..., help="Two or more models: shipped names, aliases, run directories."),
    out: Path = typer.Option(..., "--out", help="Directory for the ensemble's card (ensemble.json)."),
    weight: list[float] = typer.Option([], "--weight", callback=bounds(0, lo_open=True),
                                       help="One per member, in order (default: all 1)."),
    name: Optional[str] = typer.Option(None, "--name", help="Name in the card (default: the directory's name)."),
) -> None:
    """Combine face models into one: the weighted mean of their probabilities. `evaluate`, `predict`, `serve`,
    `export` and `maintain ship` take the directory like any model; the members' weights stay where they are."""
    from ..data.outputs import check_output_dir
    from ..training.release import make_ensemble

    if len(members) < 2:
        fail(f"an ensemble needs at least two members, got {len(members)}")
    if weight and len(weight) != len(members):
        fail(f"--weight given {len(weight)} times for {len(members)} members: give one per member or none")
    with checked():
        check_output_dir(out, "--out")
    path = _run(make_ensemble, members, out, list(weight) or None, name)
    import json

    refs = [(m["model"], m["weight"]) for m in json.loads(path.read_text())["members"]]
    console.print(f"ensemble of {len(refs)} ({', '.join(f'{r} x{w:g}' for r, w in refs)}) -> "
                  f"{escape(str(path))}")


@maintain_app.command("ship")
def ship(
    run: Path = typer.Argument(..., help="Run directory with best.safetensors + best.json."),
    name: str = typer.Option(..., "--name", help="Shipped model name, e.g. emonet_s_fer2013."),
    alias: list[str] = typer.Option([], "--alias", help="Public alias to point at it (default, fast)."),
    data: Optional[Path] = typer.Option(None, "--data", help="FER-2013 CSV: record PublicTest / PrivateTest metrics "
                                                             "(a UTKFace folder: test metrics by race / age)."),
    status: str = typer.Option("final", help="final | provisional (written into the card)."),
    ferplus: Optional[Path] = typer.Option(None, "--ferplus", help="fer2013new.csv: also record PrivateTest "
                                           "accuracy against the FER+ majority labels."),
    fp16: bool = typer.Option(False, "--fp16", help="Store tensors of >= 4096 elements as float16 (half the "
                                                    "bytes); the recorded metrics are those of the stored file."),
) -> None:
    """Copy a trained run into the package's weights with its card and test metrics."""
    from ..data.outputs import check_input_path
    from ..models.hub import resolve
    from ..training.release import ship as run_step

    if status not in ("final", "provisional"):
        fail(f"--status {status!r}: expected final or provisional")
    _check_name(name)
    with checked():
        for flag, p in (("--data", data), ("--ferplus", ferplus)):
            if p is not None:
                check_input_path(p, flag)
        resolve(run)
    dest = _run(run_step, run, name, alias=alias, data=data, status=status, ferplus=ferplus, fp16=fp16,
                log=console.print)
    console.print(f"shipped {name} -> {escape(str(dest.parent))}")


@maintain_app.command("quantize")
def quantize(
    model: str = typer.Argument(..., help="Float model to quantize: shipped name, alias or run directory."),
    name: str = typer.Option(..., "--name", help="Name of the int8 model, e.g. emonet_f_robust_int8_fer2013."),
    data: Path = typer.Option(..., "--data", help="FER-2013 CSV: calibration faces from Training; PublicTest / "
                                                  "PrivateTest metrics of the int8 graph go into its card."),
    calibration: int = typer.Option(512, callback=bounds(1),
                                    help="Training faces (seeded random sample) that set the int8 ranges."),
    exclude: str = typer.Option("first_conv", help="Nodes kept in float: none | first_conv | first_conv+fc "
                                                   "(first_conv avoids int16 saturation on CPUs without VNNI)."),
    reduce_range: bool = typer.Option(False, "--reduce-range", help="7-bit weights (the other saturation cure)."),
    method: str = typer.Option("minmax", help="Calibration: minmax | entropy | percentile."),
    out: Optional[Path] = typer.Option(None, help="Directory to write into (default: the package's weights)."),
    alias: list[str] = typer.Option([], "--alias", help="Public alias to point at it (fast)."),
    ferplus: Optional[Path] = typer.Option(None, "--ferplus", help="fer2013new.csv: also score PrivateTest "
                                           "against the FER+ majority labels."),
    seed: int = typer.Option(0),
    notes: str = typer.Option("", help="Why this model exists / was chosen (written into the card)."),
) -> None:
    """Static int8 ONNX graph of a model, scored and latency-timed, shipped beside its weights."""
    from ..data.outputs import check_input_path, check_output_dir
    from ..inference.quantize import EXCLUDE_CHOICES, METHODS
    from ..training.release import quantize as run_step

    _check_name(name)
    if exclude not in EXCLUDE_CHOICES:
        fail(f"--exclude {exclude!r}: expected one of {', '.join(EXCLUDE_CHOICES)}")
    if method not in METHODS:
        fail(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    with checked():
        check_input_path(data, "--data")
        if ferplus is not None:
            check_input_path(ferplus, "--ferplus", kind="file")
        if out is not None:
            check_output_dir(out, "--out")
    cpath, lat = _run(run_step, model, name, data, calibration=calibration, exclude=exclude,
                      reduce_range=reduce_range, method=method, out=out, alias=alias, ferplus=ferplus, seed=seed,
                      notes=notes, log=console.print)
    console.print(f"{name}: int8 {lat['int8_ms_per_face']:.3f} ms/face vs float {lat['float_ms_per_face']:.3f} "
                  f"(1 thread, batch 1) -> {escape(str(cpath))}")


#: the release steps, by name: `emotionlab models NAME` keeps them for one release (hidden, with a note)
STEPS = {"last-epoch": last_epoch, "tune-bias": tune_bias, "ensemble": ensemble, "ship": ship, "quantize": quantize}
