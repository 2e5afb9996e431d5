"""Model zoo, training and evaluation commands: what users need to list, show, train, evaluate and export models.

The release steps (ship, quantize, tune-bias, ensemble, last-epoch) are maintainer commands: ``emotionlab
maintain`` (``cli/maintain.py``); their old ``models`` names stay for one release as hidden aliases.
"""
from __future__ import annotations

import fnmatch
import functools
import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import bounds, checked, console, fail, out_console, print_json

models_app = typer.Typer(help="The model zoo: list architectures and shipped models.", no_args_is_help=True)
study_app = typer.Typer(help="Experiments across settings (seed 002's input-size table).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    _keep_old_release_names()
    app.add_typer(models_app, name="models")
    app.add_typer(study_app, name="study")
    app.command("train")(train)
    app.command("evaluate")(evaluate_cmd)
    app.command("cv")(cv)
    app.command("export")(export)


@models_app.command("list")
def models_list(pattern: str = typer.Argument("*", help="Shell-style filter, e.g. '*xception*'."),
                json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Architectures with parameters, input size and MFLOPs; shipped models marked default / fast."""
    from rich import box
    from rich.table import Table

    from ..models import count_mflops, count_params, create_model, get_entry, list_models
    from ..models.hub import aliases, read_card, shipped_models

    rows = []
    for name in list_models(pattern):
        e = get_entry(name)
        m = create_model(name)
        rows.append({"name": name, "kind": "architecture", "params": count_params(m), "in_size": e.default_size,
                     "mflops": round(count_mflops(m, e.default_size), 1), "description": e.description})
    al = aliases()
    for name, cpath in shipped_models().items():
        tags = [a for a, t in al.items() if t == name]
        if not any(fnmatch.fnmatch(n, pattern) for n in (name, *tags)):  # 'default' finds the default model
            continue
        try:
            card = read_card(cpath)
        except ValueError as e:  # a broken shipped card: one line naming the file and the field
            fail(str(e))
        acc = card.get("metrics", {}).get("PrivateTest", {}).get("accuracy")
        fp8 = " (FER+ labels, 8 classes)" if card.get("label_set") == "ferplus8" else ""
        desc = f"{card['arch']}; PrivateTest{fp8} acc {acc:.4f}" if acc else card["arch"]
        if card.get("onnx_graph"):
            desc += f"; int8 ONNX graph of {card.get('quantized_from', 'a float model')}"
        test = card.get("metrics", {}).get("test", {})
        if not acc and test.get("accuracy") is not None:  # attribute models (gender): UTKFace test split
            desc = (f"{card['arch']}; {card.get('task', '')}; UTKFace test acc {test['accuracy']:.4f}, adults "
                    f"{test.get('adults_accuracy', 0):.4f}; non-commercial research use only")
        rows.append({"name": name, "kind": "shipped" + (f" ({', '.join(tags)})" if tags else ""),
                     "params": card.get("params"), "in_size": card.get("in_size"), "mflops": card.get("mflops"),
                     "description": desc})
    if json_out:
        print_json(rows)
        return
    if not rows:
        fail(f"no architecture or shipped model matches {pattern!r}; `emotionlab models list` shows them all")
    t = Table(title="emotionlab models", box=box.SIMPLE_HEAD, pad_edge=False)
    # names are what users copy into --model: never cut them (on a narrow terminal the description wraps)
    t.add_column("name", no_wrap=True, min_width=max((len(r["name"]) for r in rows), default=4))
    t.add_column("kind", no_wrap=True, min_width=max((len(r["kind"]) for r in rows), default=4))
    for col in ("params", "px", "MFLOPs"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("description", min_width=16)
    for r in rows:  # exact parameter counts and FLOPs are in --json
        t.add_row(r["name"], r["kind"], f"{r['params'] / 1e6:.2f}M" if r["params"] else "", str(r["in_size"]),
                  f"{r['mflops']:.1f}" if r["mflops"] is not None else "", r["description"])
    out_console().print(t)  # the command's output: stdout, so it can be piped


@models_app.command("show")
def models_show(model: str = typer.Argument("default", help="Shipped name, alias, run directory or .safetensors."),
                json_out: bool = typer.Option(False, "--json", help="Print the whole model card as JSON."),
                split: Optional[str] = typer.Option(None, help="Metrics entry for the per-class table "
                                                               "(default: PrivateTest, else test).")) -> None:
    """A model's card: labels, preprocessing, training data and recipe, the command that made it, and its metrics
    per split with the per-class table."""
    from rich import box
    from rich.table import Table

    from ..models.hub import aliases, load_card, resolve

    try:
        wpath, cpath = resolve(model)
        card = load_card(model)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    name = card.get("name", wpath.stem)
    metrics = {k: v for k, v in card.get("metrics", {}).items() if isinstance(v, dict) and "accuracy" in v}
    if split and split not in metrics:
        fail(f"{name} has no metrics entry {split!r}; it has {', '.join(metrics) or 'none'}")
    if json_out:
        print_json(card)
        return
    tags = [a for a, t in aliases().items() if t == name and cpath.parent == wpath.parent]
    tr = card.get("training", {})
    recipe = tr.get("recipe", {})
    graph = card.get("onnx_graph")
    lines = [
        ("model", f"{name}" + (f" (alias {', '.join(tags)})" if tags else "")),
        ("architecture", f"{card.get('arch')}: {card.get('params', 0):,} parameters, {card.get('mflops', '?')} MFLOPs, "
                         f"{card.get('in_size')} px x {card.get('in_chans', 1)} channel(s)"),
        ("labels", f"{card.get('label_set', '?')}: {', '.join(card.get('labels', []))}"),
        ("preprocess", ", ".join(f"{k} {v}" for k, v in card.get("preprocess", {}).items())),
        ("files", f"{wpath}" + (f" + int8 graph {cpath.with_suffix('.onnx').name}" if graph else "")
                  + (f" (stored {card['storage']})" if isinstance(card.get("storage"), str) else "")),
    ]
    if card.get("quantized_from"):
        lines.append(("quantized from", str(card["quantized_from"])))
    if card.get("members"):  # an ensemble: its members' own cards hold their training
        lines.append(("members", ", ".join(f"{m.get('model')} (weight {m.get('weight', 1.0):g})"
                                           for m in card["members"])))
        lines.append(("combination", str(tr.get("selection", "weighted mean of the members' probabilities"))))
    elif tr:
        lines += [("training data", " + ".join(str(x) for x in (tr.get("data"), tr.get("ferplus")) if x)),
                  ("selection", str(tr.get("selection", ""))),
                  ("recipe", ", ".join(f"{k} {recipe[k]}" for k in ("epochs", "optimizer", "lr", "schedule",
                                                                      "batch_size", "init_from", "select")
                                       if recipe.get(k) not in (None, ""))),
                  ("trained", f"best epoch {tr.get('epochs_run', '?')} of {recipe.get('epochs', '?')} on "
                              f"{tr.get('hardware', '?')}, {tr.get('date', '?')}"),
                  ("command", str(tr.get("command", "")))]
    if card.get("logit_bias"):
        lb = card["logit_bias"]
        lines.append(("logit bias", ", ".join(f"{c} {v:+.2f}" for c, v in lb.get("biases", {}).items())
                      + f" on {lb.get('layer', '?')}, chosen on {lb.get('chosen_on', '?')}: {lb.get('command', '')}"))
    for key in ("task", "intended_use", "license", "known_biases", "group_gaps", "notes", "status", "shipped"):
        if card.get(key):
            lines.append((key.replace("_", " "), str(card[key])))
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for k, v in lines:
        t.add_row(k, escape(v))
    out = out_console()  # the card is the command's output: stdout, so it can be piped
    out.print(t)
    if metrics:
        m = Table(title="metrics", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("split", "accuracy", "macro-F1", "n", "ms/face"):
            m.add_column(col, justify="left" if col == "split" else "right", no_wrap=col == "split")
        for k, v in metrics.items():
            ms = v.get("ms_per_face")
            m.add_row(escape(k), f"{v['accuracy']:.4f}", f"{v['macro_f1']:.4f}" if "macro_f1" in v else "",
                      f"{v['n']:,}" if "n" in v else "", f"{ms:.2f}" if isinstance(ms, (int, float)) else "")
        out.print(m)
        if card.get("metrics", {}).get("evaluated"):
            out.print(f"metrics evaluated {card['metrics']['evaluated']}", highlight=False)
    key = split or next((k for k in ("PrivateTest", "test") if k in metrics), None)
    if key and metrics[key].get("per_class"):
        pc = Table(title=f"per class ({escape(key)})", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("class", "precision", "recall", "F1", "support"):
            pc.add_column(col, justify="left" if col == "class" else "right")
        for label, r in metrics[key]["per_class"].items():
            pc.add_row(escape(label), f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}",
                       f"{int(r['support']):,}")
        out.print(pc)


def train(
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Architecture name (see `emotionlab models list`); default emonet_s."),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="FER-2013 CSV(.gz) or an image folder."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config; flags override it."),
    epochs: Optional[int] = typer.Option(None, callback=bounds(1), help="Number of epochs."),
    out: Optional[Path] = typer.Option(None, help="Run directory (default runs/MODEL)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.json."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", callback=bounds(2)),
    lr: Optional[float] = typer.Option(None, "--lr", callback=bounds(0, lo_open=True)),
    optimizer: Optional[str] = typer.Option(None, help="sgd | adam | adamw"),
    schedule: Optional[str] = typer.Option(None, help="cosine | onecycle | step | plateau | none"),
    patience: Optional[int] = typer.Option(None, callback=bounds(0),
                                           help="Early stopping patience in epochs (0 = off)."),
    in_size: Optional[int] = typer.Option(None, "--in-size", callback=bounds(8), help="Input side in pixels."),
    ferplus: Optional[Path] = typer.Option(None, help="fer2013new.csv: FER+ votes as soft targets."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", callback=bounds(0, 1, hi_open=True)),
    class_weights: Optional[bool] = typer.Option(None, "--class-weights/--no-class-weights",
                                                 help="Inverse-frequency class weights in the loss."),
    class_weight_power: Optional[float] = typer.Option(
        None, "--class-weight-power", callback=bounds(0),
        help="Weights = (inverse frequency) ** POWER: 1 balanced, 0.5 milder."),
    balanced: Optional[bool] = typer.Option(None, "--balanced/--no-balanced", help="Class-balanced sampler."),
    occlude: Optional[float] = typer.Option(None, callback=bounds(0, 1),
                                            help="Probability of occlusion-mask augmentation."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    threads: Optional[int] = typer.Option(None, callback=bounds(1), help="CPU threads for torch."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N | mps"),
    max_train: Optional[int] = typer.Option(None, "--max-train", callback=bounds(1),
                                            help="Use at most N training images."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast."),
    bf16_auto: bool = typer.Option(False, "--bf16-auto",
                                   help="Time a training step in fp32 and in bf16 autocast on this machine and "
                                        "train with the faster (bf16 wins on CPUs with AMX); config.json records "
                                        "the choice."),
    time_budget: Optional[float] = typer.Option(
        None, "--time-budget", callback=bounds(0, lo_open=True),
        help="Wall-clock seconds for the run: --epochs becomes a cap and the run plans how "
             "many epochs fit (cosine still anneals); the model card records the plan."),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="Fine-tune: start from a shipped model, run directory or .safetensors of the "
                                  "same architecture (fresh optimizer and schedule, unlike --resume)."),
    teacher: Optional[list[str]] = typer.Option(
        None, "--teacher", help="Distill: a shipped model or run directory whose TTA-averaged probabilities on "
                                "the training faces join the targets; repeat for an ensemble of teachers."),
    teacher_tta: Optional[str] = typer.Option(None, "--teacher-tta",
                                              help="The teachers' views: flip (default) or ten (~5x the cost)."),
    distill_weight: Optional[float] = typer.Option(None, "--distill-weight", callback=bounds(0, 1),
                                                   help="Share of the teacher distribution in each target."),
    distill_temperature: Optional[float] = typer.Option(None, "--distill-temperature", callback=bounds(0, lo_open=True),
                                                        help="Soften the teacher distribution (T > 1)."),
    ema_decay: Optional[float] = typer.Option(None, "--ema-decay", callback=bounds(0, 1, hi_open=True),
                                              help="Validate, select and ship an exponential moving average of "
                                                   "the weights (e.g. 0.999); 0 = off."),
    select: Optional[str] = typer.Option(
        None, "--select", help="Validation metric that picks best.safetensors and drives early stopping and "
                               "plateau drops: accuracy (default) | macro_f1 (imbalanced label sets)."),
    label_set: Optional[str] = typer.Option(
        None, "--label-set", help="fer7 (default) | ferplus8 (with --ferplus: FER+'s 8 classes and labels on "
                                  "FER-2013 rows) | ckplus7 | affectnet8 (image folders)."),
) -> None:
    """Train a face model; FER-2013 trains on Training and selects on PublicTest (PrivateTest untouched)."""
    from ..training.config import TrainConfig
    from ..training.engine import fit

    if bf16_auto and bf16 is not None:
        fail("--bf16-auto measures which precision to use; give it or --bf16 / --no-bf16, not both")
    from ..data.outputs import check_input_path, check_output_dir
    from ..models.device import resolve_device

    with checked():  # flags first; --data after the config (whose values are checked first, and may name it)
        for flag, p in (("--config", config), ("--ferplus", ferplus)):
            if p is not None:
                check_input_path(p, flag, kind="file")
        if device is not None:
            resolve_device(device, "--device")
        if out is not None:
            check_output_dir(out, "--out")
    over = dict(model=model, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, schedule=schedule,
                patience=patience, in_size=in_size, ferplus=str(ferplus) if ferplus else None,
                label_smoothing=label_smoothing, class_weights=class_weights,
                class_weight_power=class_weight_power, balanced_sampler=balanced, seed=seed,
                threads=threads, device=device, max_train=max_train, compile=compile,
                bf16="auto" if bf16_auto else bf16,
                time_budget=time_budget, data=str(data) if data else None, init_from=init_from,
                teachers=list(teacher) if teacher else None, distill_weight=distill_weight,
                teacher_tta=teacher_tta, distill_temperature=distill_temperature, ema_decay=ema_decay,
                label_set=label_set, select=select)
    with checked():  # a bad config value: one line, also where cli.main is bypassed (CliRunner)
        if config:
            cfg = TrainConfig.from_yaml(config, **over)
        else:
            cfg = TrainConfig.from_dict({k: v for k, v in over.items() if v is not None})
    if occlude is not None:
        cfg.augment.occlude = occlude
    if not cfg.data:
        fail("no training data: pass --data PATH (a FER-2013 CSV or an image folder)")
    with checked():  # the config file's values too
        check_input_path(cfg.data, "--data" if data is not None else f"{config}: data")
        resolve_device(cfg.device, "--device" if device is not None else f"{config}: device")
        check_output_dir(out or Path("runs") / cfg.model, "--out")
    if cfg.batch_size % 2:
        fail(f"--batch-size {cfg.batch_size} is odd; use an even size (torch 2.13 CPU channels_last crash)")
    out = out or Path("runs") / cfg.model
    res = fit(cfg, out, resume=resume, console=console)
    picked = "" if res["select"] == "accuracy" else f" (picked on macro-F1 {res['best_val_macro_f1']:.4f})"
    console.print(f"best validation accuracy {res['best_val_acc']:.4f} at epoch {res['best_epoch']}{picked}; "
                  f"model in {out}/best.safetensors")


def evaluate_cmd(
    model: str = typer.Option("default", "--model", "-m", help="Shipped name, run directory or .safetensors."),
    data: Path = typer.Option(..., "--data", "-d", help="FER-2013 CSV(.gz) or an image folder."),
    split: str = typer.Option("auto", help="Part to score: auto (the test split: FER-2013 PrivateTest, a "
                                            "folder's test/; all of data without splits) | all | PrivateTest | "
                                            "PublicTest | test | val | train. On data without splits, test / val "
                                            "name the seeded held-out 10 % that `train` holds out."),
    tta: str = typer.Option("none", help="Test-time augmentation: none | flip | ten."),
    detect: bool = typer.Option(False, "--detect", help="Folders of photos: detect the largest face first."),
    align: bool = typer.Option(False, "--align", help="With --detect (or UTKFace photos): turn each crop with the "
                                                      "head's roll from the eye keypoints, as `predict --align`."),
    occlude: Optional[str] = typer.Option(None, help="Comma list of masks: none,forehead,eyes,mouth."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the metrics JSON here ('-' = stdout)."),
    out: Optional[Path] = typer.Option(None, help="Directory for the confusion-matrix PNG (and occlusion chart)."),
    batch_size: int = typer.Option(256, "--batch-size", callback=bounds(1)),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed rows / unreadable images."),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help="Skip class folders not in the label set."),
    threads: Optional[int] = typer.Option(None, callback=bounds(1), help="CPU threads for torch."),
    ferplus: Optional[Path] = typer.Option(None, "--ferplus", help="fer2013new.csv: score against the FER+ "
                                           "majority label of 10 annotators instead of the FER-2013 label."),
    backend: str = typer.Option("auto", help="auto (int8 models through ONNX Runtime, as the pipeline runs "
                                             "them; others with PyTorch) | onnx | torch"),
) -> None:
    """Accuracy, macro / weighted F1, per-class metrics and the confusion matrix of a model on a split.

    The title and the JSON's ``split`` name the part scored. macro-F1 averages over the classes present in
    the data (``macro_f1_all_labels``: over every label). On a UTKFace folder (``--model gender``): the
    held-out test split, with accuracy by race and by age band, adults (20+) and children, and the gap
    between the best and worst group.
    """
    from ..data.outputs import check_input_path, check_output_dir, check_output_file
    from ..training.evaluation import check_evaluation_args, run_evaluation

    from ..inference.recognizer import TTA_MODES

    if tta not in TTA_MODES:
        fail(f"--tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
    with checked():  # before the model runs: the metrics must have somewhere to go
        check_input_path(data, "--data")
        if ferplus is not None:
            check_input_path(ferplus, "--ferplus", kind="file")
        if json_out is not None:
            check_output_file(json_out, "--json", allow_stdout=True)
        if out is not None:
            check_output_dir(out, "--out")
        check_evaluation_args(data, detect, occlude, ferplus, backend, align)  # flag combinations, before loading
    if threads:
        import torch

        torch.set_num_threads(threads)

    # the table is the command's output (stdout), unless the JSON goes there
    table_console = console if json_out is not None and str(json_out) == "-" else out_console()
    res = run_evaluation(model, data, split=split, tta=tta, detect=detect, occlude=occlude, out=out,
                         batch_size=batch_size, skip_bad=skip_bad, ignore_unknown=ignore_unknown,
                         ferplus=ferplus, backend=backend, console=table_console, align=align)
    if json_out is not None:
        if str(json_out) == "-":
            print_json(res)
        else:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(res, indent=2))
            console.print(f"metrics written to {json_out}")


def cv(
    model: str = typer.Option(..., "--model", "-m"),
    data: Path = typer.Option(..., "--data", "-d"),
    folds: int = typer.Option(5, callback=bounds(2), help="Number of stratified folds."),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    epochs: Optional[int] = typer.Option(None, callback=bounds(1)),
    out: Optional[Path] = typer.Option(None),
    max_train: Optional[int] = typer.Option(None, "--max-train", callback=bounds(1)),
    seed: int = typer.Option(0),
    json_out: Optional[Path] = typer.Option(None, "--json"),
) -> None:
    """Stratified k-fold cross-validation on the training part: mean ± std of every metric (seed 001)."""
    from ..data.outputs import check_input_path, check_output_dir, check_output_file
    from ..training.studies import cross_validate

    with checked():
        check_input_path(data, "--data")
        if config is not None:
            check_input_path(config, "--config", kind="file")
        check_output_dir(out or Path("runs") / f"cv-{model}", "--out")
        if json_out is not None:
            check_output_file(json_out, "--json")

    res = cross_validate(model, data, folds, config, epochs, out or Path("runs") / f"cv-{model}", max_train, seed,
                         console=console)
    if json_out:
        json_out.write_text(json.dumps(res, indent=2))
    else:
        print_json(res["summary"])


@study_app.command("input-size")
def study_input_size(
    model: str = typer.Option("simple_cnn", "--model", "-m"),
    data: Path = typer.Option(..., "--data", "-d"),
    sizes: str = typer.Option("20,50,100", help="Comma list of input sizes."),
    epochs: int = typer.Option(10, callback=bounds(1)),
    config: Optional[Path] = typer.Option(None, "--config", "-c"),
    out: Optional[Path] = typer.Option(None),
    max_train: Optional[int] = typer.Option(None, "--max-train", callback=bounds(1)),
    json_out: Optional[Path] = typer.Option(None, "--json"),
    from_runs: Optional[Path] = typer.Option(
        None, "--from-runs", help="Do not train: score DIR/<model>-<size> runs trained elsewhere (a lent GPU's, "
                                  "tools/device_train.py) on the test split here; their seconds per epoch and "
                                  "hardware come from the runs."),
) -> None:
    """Parameters, accuracy and seconds per epoch at each input size (seed 002's table)."""
    from ..training.studies import input_size_study

    try:
        px = [int(v) for v in sizes.split(",")]
    except ValueError:
        px = []
    if not px or min(px) < 8:
        fail(f"--sizes {sizes!r}: expected a comma list of input sides in pixels (>= 8), e.g. 20,50,100")
    from ..data.outputs import check_input_path, check_output_dir, check_output_file

    with checked():
        check_input_path(data, "--data")
        for flag, p in (("--config", config), ("--from-runs", from_runs)):
            if p is not None:
                check_input_path(p, flag, kind="file" if flag == "--config" else "dir")
        if from_runs is None:
            check_output_dir(out or Path("runs") / f"study-{model}", "--out")
        if json_out is not None:
            check_output_file(json_out, "--json")
    try:
        res = input_size_study(model, data, px, epochs, config,
                               out or Path("runs") / f"study-{model}", max_train, from_runs, console=console)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if json_out:
        json_out.write_text(json.dumps(res, indent=2))
    print_json(res)


def export(
    model: str = typer.Option("default", "--model", "-m"),
    format: str = typer.Option("onnx", "--format", help="onnx"),
    out: Optional[Path] = typer.Option(None, help="Output file (default: out/MODEL.onnx)."),
) -> None:
    """Export a model for deployment (ONNX, dynamic batch), checked against PyTorch."""
    from ..models.onnx import export_onnx

    if format != "onnx":
        fail(f"unknown format {format!r}; supported: onnx")
    from ..data.outputs import check_output_dir, check_output_file

    with checked():  # a .onnx path is the file; any other path is a folder for MODEL.onnx
        if out is not None:
            (check_output_file if out.suffix == ".onnx" else check_output_dir)(out, "--out")
    path = export_onnx(model, out)
    console.print(f"wrote {escape(str(path))}")


def _keep_old_release_names() -> None:
    """``emotionlab models ship|quantize|tune-bias|ensemble|last-epoch``: hidden aliases of ``emotionlab maintain
    ...`` for one release, each printing a one-line note that points to the new name (then doing the work)."""
    from .maintain import STEPS

    for name, step in STEPS.items():
        @functools.wraps(step)
        def old_name(*args, _name: str = name, _step=step, **kwargs):
            console.print(f"note: `emotionlab models {_name}` is now `emotionlab maintain {_name}`; the old name "
                          "goes away in the next release", highlight=False, soft_wrap=True)
            return _step(*args, **kwargs)

        models_app.command(name, hidden=True)(old_name)
