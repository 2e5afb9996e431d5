"""``explain`` (heat maps for images) and ``explain-dataset`` (per-class average maps and examples)."""
from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from .common import bounds, checked, console, fail, print_json


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_cmd)
    app.command("explain-dataset")(explain_dataset_cmd)


def _methods(method: str) -> list[str]:
    from ..explain import METHODS

    names = list(METHODS) if method.strip() == "all" else [m.strip() for m in method.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        fail(f"--method {method!r}: use {', '.join(METHODS)}, a comma list of them, or 'all'")
    return names


def _threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def explain_cmd(
    images: list[Path] = typer.Argument(..., help="Face crops (<= 100 px, used as they are) or photos (detected)."),
    model: str = typer.Option("default", "--model", "-m", help="Shipped name, run directory or .safetensors."),
    method: str = typer.Option("gradcam", "--method", help="saliency | guided-backprop | gradcam (comma list or 'all')."),
    target: str | None = typer.Option(None, "--target", help="Class to explain (default: the predicted one)."),
    out: Path = typer.Option(Path("out/explain"), "--out", "-o", help="Directory for the overlay PNGs."),
    detector: str = typer.Option("auto", help="Face detector for photos (see `emotionlab predict`)."),
    occlude: str = typer.Option("none", help="Hide part of each face first: none | forehead | eyes | mouth | "
                                              "medical (surgical-mask shape from the detector's landmarks)."),
    size: int = typer.Option(192, callback=bounds(16), help="Side of the written overlays in pixels."),
    threads: int | None = typer.Option(None, callback=bounds(1), help="CPU threads for torch."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout."),
) -> None:
    """Heat-map overlay PNGs on the face crop for the predicted (or --target) class."""
    from ..explain.faces import explain_images, make_recognizer
    from ..models.hub import load_model

    methods = _methods(method)
    missing = [str(p) for p in images if not p.exists()]
    if missing:
        fail(f"image not found: {', '.join(missing)}")
    from ..data.outputs import check_output_dir

    with checked():
        check_output_dir(out, "--out")
    _threads(threads)
    loaded = load_model(model)
    files = []
    for p in images:
        if p.is_dir():
            from ..data.folders import list_images

            files += list_images(p)
        else:
            files.append(p)
    rows = explain_images(files, loaded, methods, out, target=target, size=size, occlude=occlude,
                          recognizer_factory=lambda: make_recognizer(model, detector))
    if json_out:
        print_json(rows)
    for r in rows:
        if r["face"] < 0:
            console.print(f"{escape(str(r['image']))}: no face found")
        else:
            console.print(escape(f"{r['image']} face {r['face']}: {r['method']} for {r['target']} "
                                 f"(predicted {r['predicted']} {r['scores'][r['predicted']]:.2f}) -> {r['file']}"),
                          highlight=False)
    console.print(f"{sum(r['face'] >= 0 for r in rows)} overlays in {escape(str(out))} (index: {escape(str(out / 'explanations.json'))})")


def explain_dataset_cmd(
    data: Path = typer.Option(..., "--data", "-d", help="FER-2013 CSV(.gz) or an image folder."),
    model: str = typer.Option("default", "--model", "-m", help="Shipped name, run directory or .safetensors."),
    split: str = typer.Option("PrivateTest", help="Split to explain (PrivateTest, PublicTest, test, all...)."),
    per_class: int = typer.Option(50, "--per-class", callback=bounds(1), help="Faces per true class in the averages."),
    method: str = typer.Option("saliency,gradcam", "--method", help="Maps to average (comma list or 'all')."),
    examples: int = typer.Option(3, callback=bounds(0), help="Correct and wrong example faces per class."),
    out: Path = typer.Option(Path("out/explain-dataset"), "--out", "-o", help="Directory for the figures."),
    seed: int = typer.Option(0, help="Seed for picking the faces."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed rows / unreadable images."),
    threads: int | None = typer.Option(None, callback=bounds(1), help="CPU threads for torch."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Per-class average maps in one figure grid, plus correct and wrong examples per class."""
    from ..data.loader import load_dataset, scored_part
    from ..explain.dataset import explain_dataset
    from ..models.hub import load_model

    methods = _methods(method)
    from ..data.outputs import check_input_path, check_output_dir

    with checked():
        check_input_path(data, "--data")
        check_output_dir(out, "--out")
    _threads(threads)
    loaded = load_model(model)
    ds = load_dataset(data, size=loaded.preprocess.size, label_set=loaded.card.get("label_set", "fer7"),
                      skip_bad=skip_bad)
    part, part_name = scored_part(ds, split)  # the title names the part explained
    ds_labels = list(part.label_set.labels)
    if ds_labels != loaded.labels:
        fail(f"{data}: labels {ds_labels} do not match the model's {loaded.labels}")
    summary = explain_dataset(loaded, part.images, part.labels, out, per_class=per_class, methods=methods,
                              examples=examples, seed=seed,
                              title=f"{loaded.name} on {os.path.basename(str(data))} {part_name}")
    if json_out:
        print_json(summary)
    for lab, info in summary["classes"].items():
        acc = f"{info['accuracy']:.2f}" if info["accuracy"] is not None else "-"
        console.print(f"{lab:>10}: n={info['n']:3d}  accuracy {acc}", highlight=False)
    console.print(f"wrote {out / 'average_maps.png'}, {out / 'examples.png'}, {out / 'summary.json'}")
