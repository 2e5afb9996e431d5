"""Data commands: stats, dedup, split, export, frames, relabel, review.

Every command takes a FER-2013 CSV (.csv / .csv.gz) or an image folder (``root/[split/]class/*.png``) through
:func:`emotionlab.data.loader.load_dataset`; bad input ends with one line naming the file, line and problem.
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.markup import escape

from ..data.outputs import check_input_path, check_output_dir, check_output_file
from .common import bounds, console, fail, out_console, print_json

data_app = typer.Typer(help="Inspect, clean, split and convert face datasets (FER-2013 CSV or image folders).",
                       no_args_is_help=True)

LABELS_HELP = "Label set for image folders: fer7 | ferplus8 | ckplus7 | affectnet8."
SKIP_HELP = "Skip malformed CSV rows / unreadable images and report how many, instead of failing."
UNKNOWN_HELP = "Skip class folders that are not in the label set instead of failing."


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Bad input becomes one clean error line (also under CliRunner, which bypasses ``cli.main``)."""
    from ..data.errors import DataError

    try:
        yield
    except (DataError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    except KeyError as e:
        fail(str(e.args[0]) if e.args else str(e))


@contextlib.contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr; yields an ``advance(n)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n: prog.advance(task, n)


def _load(path: Path, labels: str = "fer7", skip_bad: bool = False, ignore_unknown: bool = False,
          size: int = 48):
    from ..data.loader import load_dataset

    with console.status(f"loading {escape(str(path))} (the first load of a big CSV parses it once, then it is cached)"):
        ds = load_dataset(path, size=size, label_set=labels, skip_bad=skip_bad, ignore_unknown=ignore_unknown)
    if ds.skipped:
        console.print(f"[yellow]skipped {ds.skipped} bad row(s)/image(s)[/]; first: "
                      + escape("; ".join(ds.extra.get("bad_examples", [])[:3])), highlight=False)
    return ds


@data_app.command("stats")
def stats(
    path: Path = typer.Argument(..., help="FER-2013 CSV(.gz) or image folder."),
    json_out: bool = typer.Option(False, "--json", help="Print the statistics as JSON on stdout."),
    plot: Path = typer.Option(Path("out/class_balance.png"), "--plot", help="Class-balance bar chart PNG."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Do not write the bar chart."),
    labels: str = typer.Option("fer7", "--labels", help=LABELS_HELP),
    size: int = typer.Option(48, "--size", callback=bounds(8), help="Folders: images are resized to this side first."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_HELP),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help=UNKNOWN_HELP),
) -> None:
    """Images per class per split, pixel mean / std (normalization statistics) and a class-balance chart."""
    from ..data.preprocess import FER_MEAN, FER_STD
    from ..data.stats import dataset_stats, plot_class_balance

    with _errors():
        if not no_plot:
            check_output_file(plot, "--plot", suffixes=(".png",))
        ds = _load(path, labels, skip_bad, ignore_unknown, size)
        st = dataset_stats(ds)
        if not no_plot:
            st["plot"] = str(plot_class_balance(st, plot))
    if json_out:
        print_json(st)
        return
    from rich.table import Table

    classes = list(st["total"]["per_class"])
    t = Table(title=f"{escape(str(path))} ({st['total']['n']:,} images, label set {st['label_set']})")
    t.add_column("split")
    t.add_column("n", justify="right")
    for c in classes:
        t.add_column(c, justify="right")
    for name, s in {**st["splits"], "total": st["total"]}.items():
        t.add_row(name, f"{s['n']:,}", *(f"{s['per_class'][c]:,}" for c in classes))
    out = out_console()  # the table is the command's output: stdout, so it can be piped
    out.print(t)
    out.print(f"pixel mean {st['mean']:.4f}, std {st['std']:.4f} over {st['stats_split']} "
              f"(preprocess defaults FER_MEAN {FER_MEAN}, FER_STD {FER_STD})")
    if "plot" in st:
        console.print(f"bar chart: {st['plot']}")


@data_app.command("dedup")
def dedup(
    path: Path = typer.Argument(..., help="FER-2013 CSV(.gz) or image folder."),
    near: bool = typer.Option(False, "--near", help="Also group near duplicates by 64-bit perceptual hash."),
    threshold: int = typer.Option(4, "--threshold", callback=bounds(0, 12),
                                  help="Near duplicates: max Hamming distance (0..12)."),
    groups: Path = typer.Option(Path("out/duplicates.csv"), "--groups", help="CSV with one line per grouped row."),
    drop: Optional[Path] = typer.Option(None, "--drop",
                                        help="Write a cleaned copy here (.csv/.csv.gz, or a folder for PNGs)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    labels: str = typer.Option("fer7", "--labels", help=LABELS_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_HELP),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help=UNKNOWN_HELP),
) -> None:
    """Exact (content hash) and near (pHash) duplicate groups, cross-split leakage and label conflicts.

    --drop policy: groups with conflicting labels are dropped whole; every other group keeps one row, the
    first in the highest-ranked split (PrivateTest/test > PublicTest/val > Training/train), so no test image
    keeps a copy in Training.
    """
    from ..data.dedup import drop_plan, find_duplicates, write_groups_csv

    with _errors():
        check_output_file(groups, "--groups")
        if drop is not None:
            if drop.name.endswith(".csv") or drop.name.endswith(".csv.gz"):
                check_output_file(drop, "--drop")
            else:
                check_output_dir(drop, "--drop")
        ds = _load(path, labels, skip_bad, ignore_unknown)
        t0 = time.perf_counter()
        with _progress("hashing", len(ds) * (2 if near else 1)) as adv:
            res = find_duplicates(ds, near=near, threshold=threshold, progress=adv)
        keep = drop_plan(ds, res)
        write_groups_csv(groups, ds, res, keep)
        summary = {"source": str(path), **res.summary, "groups_csv": str(groups),
                   "seconds": round(time.perf_counter() - t0, 2)}
        if drop is not None:
            summary["drop"] = _write_clean(ds, keep, drop)
    if json_out:
        print_json(summary)
        return
    for kind in ("exact", "near"):
        if kind not in summary:
            continue
        s = summary[kind]
        extra = f" (threshold {s['threshold']}, {s['rows_beyond_exact']} rows beyond exact)" if kind == "near" else ""
        console.print(f"[bold]{kind}[/]{extra}: {s['groups']:,} groups covering {s['rows']:,} rows "
                      f"({s['redundant_rows']:,} redundant); {s['cross_split_groups']:,} groups cross splits "
                      f"{s['cross_split_pairs']}; {s['conflicting_label_groups']:,} groups "
                      f"({s['conflicting_label_rows']:,} rows) have conflicting labels", highlight=False)
    console.print(f"groups: {groups}")
    if "drop" in summary:
        d = summary["drop"]
        console.print(f"cleaned copy: {d['path']} ({d['kept']:,} kept, {d['dropped']:,} dropped)")


def _write_clean(ds, keep: np.ndarray, out: Path) -> dict:
    from ..data.export import export_folders
    from ..data.fer2013 import write_fer_csv

    sub = ds.subset(np.flatnonzero(keep))
    with console.status(f"writing the cleaned copy to {escape(str(out))}"):
        if out.name.endswith(".csv") or out.name.endswith(".csv.gz"):
            out.parent.mkdir(parents=True, exist_ok=True)
            has_usage = not all(u in ("Unspecified", "all") for u in sub.usage.tolist())
            write_fer_csv(out, sub.images, sub.labels, sub.usage if has_usage else None)
        else:
            export_folders(sub, out)
    dropped = {}
    for u in ds.splits:
        dropped[u] = int(((ds.usage == u) & ~keep).sum())
    return {"path": str(out), "kept": int(keep.sum()), "dropped": int((~keep).sum()), "dropped_per_split": dropped}


@data_app.command("split")
def split(
    path: Path = typer.Argument(..., help="FER-2013 CSV(.gz) or image folder."),
    out: Path = typer.Option(Path("out/splits"), "--out", help="Folder for splits.json (and folds.json)."),
    val: float = typer.Option(0.1, "--val", help="Validation fraction."),
    test: float = typer.Option(0.1, "--test", help="Test fraction."),
    folds: int = typer.Option(0, "--folds", help="Also write K stratified folds (0 = none)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same indices."),
    within: Optional[str] = typer.Option(None, "--within",
                                         help="Only split the rows of this split (e.g. Training)."),
    labels: str = typer.Option("fer7", "--labels", help=LABELS_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_HELP),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help=UNKNOWN_HELP),
) -> None:
    """Seeded, stratified train/val/test index files and k-fold files.

    Indices are 0-based data rows of the CSV (header excluded), or positions in the sorted file list of a
    folder (listed under "paths").
    """
    from ..data.split import kfold_indices, stratified_split

    with _errors():
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise ValueError(f"--val {val} and --test {test} must be fractions in [0, 1) summing below 1")
        if folds == 1 or folds < 0:
            raise ValueError(f"--folds must be 0 (none) or >= 2, got {folds}")
        check_output_dir(out, "--out")
        ds = _load(path, labels, skip_bad, ignore_unknown)
        if within:
            ds = ds.split(within)
        rows = ds.rows if ds.rows is not None else np.arange(len(ds))
        names = ds.label_set.labels
        tr, va, te = stratified_split(ds.labels, val, test, seed)
        parts = {"train": tr, "val": va, "test": te}
        doc = {"source": str(path), "seed": seed, "val_frac": val, "test_frac": test, "within": within,
               "n": int(len(ds)), "index": "csv data row" if ds.rows is not None else "sorted file position",
               "counts": {k: {"n": int(len(v)), "per_class": dict(zip(names, np.bincount(
                   ds.labels[v], minlength=len(names)).tolist()))} for k, v in parts.items()},
               **{k: rows[v].tolist() for k, v in parts.items()}}
        if ds.paths:
            doc["paths"] = ds.paths
        out.mkdir(parents=True, exist_ok=True)
        (out / "splits.json").write_text(json.dumps(doc))
        written = [str(out / "splits.json")]
        if folds:
            counts = np.bincount(ds.labels)
            if counts[counts > 0].min() < folds:
                raise ValueError(f"--folds {folds}: some class has only {counts[counts > 0].min()} image(s)")
            fl = kfold_indices(ds.labels, folds, seed)
            (out / "folds.json").write_text(json.dumps({
                "source": str(path), "seed": seed, "k": folds, "within": within,
                "folds": [{"train": rows[a].tolist(), "val": rows[b].tolist()} for a, b in fl]}))
            written.append(str(out / "folds.json"))
    console.print(f"train {len(tr):,} / val {len(va):,} / test {len(te):,}" + (f", {folds} folds" if folds else "")
                  + f"; wrote {', '.join(written)}")


@data_app.command("export")
def export(
    src: Path = typer.Argument(..., help="FER-2013 CSV(.gz) -> folder, or image folder -> CSV."),
    out: Path = typer.Argument(..., help="Output folder (from a CSV) or .csv/.csv.gz file (from a folder)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty output folder."),
    labels: str = typer.Option("fer7", "--labels", help=LABELS_HELP),
    size: int = typer.Option(48, "--size", callback=bounds(8), help="Folder -> CSV: image side (FER-2013 is 48)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_HELP),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help=UNKNOWN_HELP),
) -> None:
    """FER CSV to OUT/<split>/<class>/<row>.png, and image folders back to a FER CSV (lossless for 48x48)."""
    from ..data.export import export_folders, folder_to_csv

    with _errors():
        if src.is_dir() and not any(src.glob("fer2013.csv*")):
            check_output_file(out, "OUT", suffixes=(".csv", ".csv.gz"))
            ds = _load(src, labels, skip_bad, ignore_unknown, size)
            folder_to_csv(ds, out)
        else:
            check_output_dir(out, "OUT")
            ds = _load(src, labels, skip_bad, ignore_unknown)
            with _progress("writing PNGs", len(ds)) as adv:
                export_folders(ds, out, overwrite=overwrite, progress=adv)
    console.print(f"wrote {len(ds):,} images to {escape(str(out))}")


@data_app.command("frames")
def frames(
    videos_dir: Path = typer.Argument(..., help="Folder of labelled videos."),
    out: Path = typer.Option(..., "--out", help="Output image folder (OUT/<class>/*.png + frames.csv)."),
    every: Optional[int] = typer.Option(None, "--every", callback=bounds(1), help="Keep every N-th frame."),
    fps: Optional[float] = typer.Option(None, "--fps", callback=bounds(0, lo_open=True),
                                        help="Keep F frames per second of video."),
    pattern: Optional[str] = typer.Option(None, "--pattern",
                                          help="Regex with a (?P<label>...) group on the file name; "
                                               "default: the parent folder name is the label."),
    size: int = typer.Option(48, "--size", callback=bounds(8), help="Side of the square grayscale frames."),
    labels: str = typer.Option("fer7", "--labels", help=LABELS_HELP),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help="Skip videos without a known label."),
) -> None:
    """Turn labelled videos into an image-folder dataset (all frames unless --every / --fps)."""
    from ..data.frames import extract_frames, list_videos

    with _errors():
        check_output_dir(out, "--out")
        n = len(list_videos(videos_dir))
        with _progress("videos", n) as adv:
            rep = extract_frames(videos_dir, out, every=every, fps=fps, pattern=pattern, size=size,
                                 label_set=labels, ignore_unknown=ignore_unknown, progress=adv)
    for s in rep.skipped_videos:
        console.print(f"[yellow]skipped[/] {escape(str(s))}", highlight=False)
    console.print(f"{rep.frames:,} frames from {rep.videos} videos: {rep.per_class}; manifest {rep.manifest}")


@data_app.command("relabel")
def relabel(
    path: Path = typer.Argument(..., help="FER-2013 CSV(.gz)."),
    changes: Path = typer.Option(..., "--changes", help="CSV with row,old,new[,reason] (row = 0-based data row)."),
    out: Path = typer.Option(..., "--out", help="Relabelled CSV (.csv/.csv.gz) with relabel_from,reason columns."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_HELP),
) -> None:
    """Apply a reviewed list of label corrections; each `old` must match, the output keeps an audit trail."""
    from ..data.relabel import apply_changes, read_changes, write_relabelled_csv

    with _errors():
        if path.is_dir():
            raise ValueError(f"{path}: relabel works on FER CSVs; convert a folder with `emotionlab data export` "
                             "first")
        if not (out.name.endswith(".csv") or out.name.endswith(".csv.gz")):
            raise ValueError(f"{out}: expected an output file ending in .csv or .csv.gz")
        if out.resolve() == path.resolve():
            raise ValueError(f"{out}: refusing to overwrite the input; choose another --out")
        check_input_path(changes, "--changes", kind="file")
        check_output_file(out, "--out")
        ds = _load(path, skip_bad=skip_bad)
        ch = read_changes(changes, ds.label_set)
        new, prev, reasons = apply_changes(ds, ch, changes)
        with console.status(f"writing {escape(str(out))}"):
            write_relabelled_csv(out, ds, new, prev, reasons)
    console.print(f"{int((prev >= 0).sum()):,} label(s) changed ({len(ch)} listed); wrote {escape(str(out))}")
    if ds.skipped:
        console.print(f"[yellow]note:[/] the {ds.skipped} malformed row(s) skipped by --skip-bad are not in {escape(str(out))}, "
                      "so its row numbers after them differ from the source (and from fer2013new.csv)")


@data_app.command("review")
def review(
    path: Path = typer.Argument(..., help="FER-2013 CSV(.gz)."),
    ferplus: Path = typer.Option(..., "--ferplus", help="fer2013new.csv (FER+ votes, row-aligned)."),
    out: Path = typer.Option(Path("out/changes_ferplus.csv"), "--out", help="Candidate CHANGES.csv."),
    min_share: float = typer.Option(0.7, "--min-share", callback=bounds(0, 1, lo_open=True),
                                    help="FER+ majority must hold this share of votes."),
    json_out: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> None:
    """List rows whose FER-2013 label disagrees with a strong FER+ majority: a CHANGES.csv to review."""
    from collections import Counter

    from ..data.ferplus import load_ferplus
    from ..data.relabel import review_ferplus, write_changes_csv

    with _errors():
        check_input_path(ferplus, "--ferplus", kind="file")
        check_output_file(out, "--out")
        ds = _load(path)
        votes = load_ferplus(ferplus)
        cand = review_ferplus(ds, votes, min_share)
        write_changes_csv(out, cand)
    pairs = Counter(f"{c['old']}->{c['new']}" for c in cand)
    summary = {"candidates": len(cand), "min_share": min_share, "out": str(out),
               "top_changes": dict(pairs.most_common(10))}
    if json_out:
        print_json(summary)
    else:
        console.print(f"{len(cand):,} candidate changes (FER+ majority >= {min_share:.0%} of votes) -> {escape(str(out))}; "
                      f"most common: {dict(pairs.most_common(5))}")


@data_app.command("issues")
def issues(
    data: Path = typer.Option(..., "--data", help="FER-2013 CSV(.gz) or image folder (class subfolders)."),
    out: Path = typer.Option(..., "--out", help="Folder for label_issues.csv, label_issues.png and issues.json."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split (default: Training when the data "
                                                               "has it, else every image)."),
    folds: int = typer.Option(5, "--folds", callback=bounds(2, 50), help="Folds of the small out-of-fold model."),
    model: Optional[str] = typer.Option(None, "--model", help="Score with this model instead (shipped name, run "
                                                              "dir or .safetensors); it must not have trained on "
                                                              "these faces."),
    seed: int = typer.Option(0, "--seed", help="Fold assignment seed."),
    per_class: int = typer.Option(8, "--per-class", callback=bounds(1, 50), help="Contact sheet: flags per class."),
    outlier_quantile: float = typer.Option(0.002, "--outlier-quantile", callback=bounds(0, 0.5),
                                           help="Share of faces farthest from the rest flagged as outliers."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    labels: str = typer.Option("fer7", "--labels", help=LABELS_HELP),
    skip_bad: bool = typer.Option(False, "--skip-bad", help=SKIP_HELP),
    ignore_unknown: bool = typer.Option(False, "--ignore-unknown", help=UNKNOWN_HELP),
) -> None:
    """Rank likely label errors (out-of-fold probabilities + confident learning), conflicting near duplicates and
    outliers (blank / far from every other face): label_issues.csv and a contact sheet, to review with
    `emotionlab review`."""
    from ..training.label_issues import (contact_sheet, find_label_issues, model_probs, trained_on,
                                         write_issues_csv)

    with _errors():
        check_input_path(data, "--data")
        check_output_dir(out, "--out")
        if model is not None:
            from ..models.hub import resolve

            resolve(model)  # a wrong name is one line now, not after loading the data
        ds = _load(data, labels, skip_bad, ignore_unknown)
        if split is not None:
            ds = ds.split(split)
        elif "Training" in ds.splits or "train" in ds.splits:
            split = "Training" if "Training" in ds.splits else "train"
            ds = ds.split(split)
        t0 = time.perf_counter()
        probs = None
        if model is not None:
            with console.status(f"scoring {len(ds):,} faces with {escape(model)}"):
                probs, card = model_probs(ds, model)
            warn = trained_on(card, data, split)
            if warn:
                console.print(f"[yellow]warning:[/] {escape(warn)}", highlight=False)
        with console.status("finding label issues") as st:
            res = find_label_issues(ds, folds=folds, seed=seed, pred_probs=probs, outlier_quantile=outlier_quantile,
                                    progress=lambda s: st.update(f"finding label issues: {s}"))
        out.mkdir(parents=True, exist_ok=True)
        csv_path = write_issues_csv(out / "label_issues.csv", ds, res)
        png = contact_sheet(out / "label_issues.png", ds, res, per_class=per_class)
        np.save(out / "pred_probs.npy", res.pred_probs)
        summary = {"data": str(data), "split": split or "all", "model": model or "hog+logreg out-of-fold",
                   "seed": seed, **res.summary, "skipped_unreadable": int(ds.skipped),
                   "seconds": round(time.perf_counter() - t0, 1), "issues_csv": str(csv_path),
                   "contact_sheet": str(png), "pred_probs": str(out / "pred_probs.npy")}
        (out / "issues.json").write_text(json.dumps(summary, indent=2))
    if json_out:
        print_json(summary)
        return
    f = summary["flags"]
    console.print(f"{len(ds):,} faces ({summary['split']}): {f['label']:,} label, {f['duplicate']:,} duplicate, "
                  f"{f['outlier']:,} outlier flags; probabilities {summary['probs_accuracy']:.1%} accurate; "
                  f"wrote {escape(str(csv_path))} and {escape(str(png))}", highlight=False)
