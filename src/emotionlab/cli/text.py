"""Text emotion commands: ``emotionlab text`` (classify texts or a file) and ``emotionlab text-evaluate``."""
from __future__ import annotations

import contextlib
import csv
import sys
from pathlib import Path

import typer
from rich.markup import escape

from .common import bounds, checked, console, fail, print_json


def register(app: typer.Typer) -> None:
    app.command("text")(text_cmd)
    app.command("text-evaluate")(text_evaluate)


def _load(model: str):
    from ..text import load_text_model

    try:
        return load_text_model(model)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))


def text_cmd(
    texts: list[str] | None = typer.Argument(None, help="One or more texts to classify."),
    model: str = typer.Option("default", "--model", "-m",
                              help="Shipped text model (default, tweeteval, carer, goemotions, crowdflower) or a "
                                   "saved model path."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (one object per text) instead of tables."),
    file: Path | None = typer.Option(None, "--file", "-f", help="CSV / TSV (see --column) or TXT (one per line)."),
    column: str | None = typer.Option(None, "--column", "-c", help="Text column of --file (default: text, "
                                                                       "content, tweet or sentence)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Predictions CSV for --file (default: stdout)."),
    top_k: int | None = typer.Option(None, "--top-k", help="Show only the K best labels per text."),
    batch_size: int = typer.Option(256, "--batch-size", callback=bounds(1), help="Texts per model call with --file."),
) -> None:
    """Classify the emotion of short texts (tweets, messages) with a shipped or saved model.

    Texts longer than 10,000 characters are truncated to that length (documented handling). Empty texts are an
    error on the command line; in --file they get an empty label and an 'error' column, never dropped.
    """
    from ..data.errors import DataError

    if not texts and file is None:
        fail("give one or more texts, or --file PATH (see `emotionlab text --help`)")
    if texts and file is not None:
        fail("give texts or --file, not both")
    if top_k is not None and top_k < 1:
        fail("--top-k must be at least 1")
    if out is not None and file is None:
        fail("--out writes the predictions for --file; give --file PATH (texts on the command line print)")
    from ..data.outputs import check_input_path, check_output_file

    with checked():  # before the model loads
        if file is not None:
            check_input_path(file, "--file", kind="file")
        if out is not None:
            check_output_file(out, "--out")
    if file is None:
        for i, t in enumerate(texts):
            if not t.strip():
                fail(f"text {i + 1} is empty or whitespace only; nothing to classify")
    clf = _load(model)
    if file is not None:
        try:
            _classify_file(clf, file, column, out, batch_size)
        except DataError as e:
            fail(str(e))
        return
    preds = clf(texts, top_k=top_k)
    decided = clf.predict_labels(texts)
    if json_out:
        # multi-label: "label" is the best-scoring label over its threshold (None when no label passes)
        print_json([{"text": t, "label": d if not clf.multi_label else next((r["label"] for r in clf([t])[0]
                                                                             if r["label"] in d), None),
                     **({"labels": d} if clf.multi_label else {}), "scores": p, "model": clf.name}
                    for t, p, d in zip(texts, preds, decided)])
        return
    from rich.console import Console
    from rich.table import Table

    out_console = Console()
    for t, p, d in zip(texts, preds, decided):
        shown = t if len(t) <= 100 else t[:97] + "..."
        out_console.print(f"{escape(repr(shown))} -> [bold]{', '.join(d) if clf.multi_label else d}[/]", highlight=False)
        table = Table()
        table.add_column("label")
        table.add_column("score", justify="right")
        for r in p:
            table.add_row(r["label"], f"{r['score']:.3f}")
        out_console.print(table)
    console.print(f"model: {clf.name} ({clf.kind})", style="dim")


def _classify_file(clf, file: Path, column: str | None, out: Path | None, batch_size: int) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..text.datasets import read_text_column

    if not file.exists():
        fail(f"{file}: file not found")
    texts = read_text_column(file, column)
    ok = [i for i, t in enumerate(texts) if t.strip()]
    proba_rows: dict[int, list[float]] = {}
    decided: dict[int, object] = {}
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(f"classifying {escape(file.name)}", total=len(texts))
        bar.advance(task, len(texts) - len(ok))
        for s in range(0, len(ok), max(batch_size, 1)):
            idx = ok[s: s + batch_size]
            batch = [texts[i] for i in idx]
            p = clf.predict_proba(batch)
            d = clf.decide(p)
            for j, i in enumerate(idx):
                proba_rows[i] = [float(v) for v in p[j]]
                decided[i] = (";".join(clf.labels[k] for k in range(len(clf.labels)) if d[j][k])
                              if clf.multi_label else clf.labels[int(d[j])])
            bar.advance(task, len(idx))
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(out, "w", newline="", encoding="utf-8")) if out else sys.stdout
        w = csv.writer(fh)
        w.writerow(["row", "text", "label"] + [f"score_{lab}" for lab in clf.labels] + ["error"])
        for i, t in enumerate(texts):
            if i in proba_rows:
                w.writerow([i, t, decided[i]] + [f"{v:.5f}" for v in proba_rows[i]] + [""])
            else:
                w.writerow([i, t, ""] + [""] * len(clf.labels) + ["empty text"])
    n_bad = len(texts) - len(ok)
    msg = f"{len(ok)} texts classified with {clf.name}"
    if n_bad:
        msg += f"; {n_bad} empty rows kept with error 'empty text'"
    console.print(escape(msg + (f"; wrote {out}" if out else "")))


def text_evaluate(
    dataset: str = typer.Option(..., "--dataset", help="tweeteval | carer | goemotions | goemotions_ekman | "
                                                        "crowdflower | crowdflower13"),
    data: Path = typer.Option(..., "--data", "-d", help="The dataset folder, or the shared data root."),
    model: str | None = typer.Option(None, "--model", "-m",
                                        help="Shipped name or saved path (default: the model shipped for DATASET)."),
    split: str = typer.Option("test", help="train | val | test (GoEmotions' dev is 'val')."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
) -> None:
    """Accuracy, macro-F1, per-class metrics, confusion matrix and calibration error (``ece``, with the model's
    temperature, and ``ece_uncalibrated``) of a text model on a dataset split."""
    from ..data.errors import DataError
    from ..text.datasets import DATASETS, load_text_dataset
    from ..text.train import evaluate_model

    if dataset not in DATASETS:
        fail(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    try:
        splits = load_text_dataset(dataset, data)
    except DataError as e:
        fail(str(e))
    if split not in splits:
        fail(f"unknown split {split!r}; expected one of {', '.join(splits)}")
    clf = _load(model or dataset)
    ds = splits[split]
    if clf.labels != ds.labels:
        fail(f"model {clf.name!r} predicts {clf.labels} but {dataset} has labels {ds.labels}; "
             f"pick a model trained on {dataset}")
    m = evaluate_model(clf, ds)
    m.update({"model": clf.name, "kind": clf.kind, "dataset": dataset, "split": split})
    if json_out:
        print_json(m)
        return
    from rich.console import Console
    from rich.table import Table

    out_console = Console()
    head = f"{clf.name} on {dataset}/{split} (n={m['n']}): accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}"
    if "micro_f1" in m:
        head += f", micro-F1 {m['micro_f1']:.4f}"
    if "ece" in m:
        head += (f", ECE {m['ece']:.3f}" + (f" (uncalibrated {m['ece_uncalibrated']:.3f}, T={m['temperature']:g})"
                                           if m["temperature"] != 1.0 else ""))
    out_console.print(head, highlight=False)
    t = Table()
    for col in ("label", "precision", "recall", "f1", "support"):
        t.add_column(col, justify="left" if col == "label" else "right")
    for lab, r in m["per_class"].items():
        t.add_row(lab, f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", str(r["support"]))
    out_console.print(t)
    if "confusion_matrix" in m:
        out_console.print("confusion matrix (rows true, columns predicted"
                          + ("; rows with one gold label, argmax)" if clf.multi_label else ")"), highlight=False)
        cm = Table()
        cm.add_column("")
        for lab in ds.labels:
            cm.add_column(lab[:8], justify="right")
        for lab, row in zip(ds.labels, m["confusion_matrix"]):
            cm.add_row(lab, *[str(v) for v in row])
        out_console.print(cm)
