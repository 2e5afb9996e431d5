"""``emotionlab review``: review the faces `data issues` flagged in a local page; ``review export`` writes the
CHANGES.csv that `data relabel` applies."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .common import console, fail, print_json

review_app = typer.Typer(help="Review flagged labels in the browser (keyboard), decisions kept in SQLite.",
                         invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")


@review_app.callback()
def review(
    ctx: typer.Context,
    issues: Optional[Path] = typer.Option(None, "--issues", help="label_issues.csv from `emotionlab data issues`."),
    data: Optional[Path] = typer.Option(None, "--data", help="The data the issues were found in (CSV or folder)."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite file of decisions (created; reopened to resume)."),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help="Your name, stored with every decision."),
    ferplus: Optional[Path] = typer.Option(None, "--ferplus", help="FER+ votes (default: fer2013new.csv beside a "
                                                                   "FER-2013 CSV, when there)."),
    kind: list[str] = typer.Option([], "--kind", help="Only flags of this kind (label, duplicate, outlier); "
                                                      "repeat it. Default: all."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface (0.0.0.0 exposes the page to the network)."),
    port: int = typer.Option(8001, "--port", help="TCP port."),
    labels: str = typer.Option("fer7", "--labels", help="Label set for image folders."),
) -> None:
    """Serve the review page: one face at a time, keys k keep / a accept / 1-9 relabel / d drop / s skip /
    u undo."""
    if ctx.invoked_subcommand is not None:
        return
    from ..data.errors import DataError
    from ..data.ferplus import load_ferplus
    from ..data.loader import load_dataset
    from ..data.outputs import check_input_path, check_output_file
    from ..training.label_issues import KINDS

    missing = [f for f, v in (("--issues", issues), ("--data", data), ("--db", db), ("--reviewer", reviewer))
               if v is None]
    if missing:
        fail(f"missing {', '.join(missing)}: `emotionlab review --issues DIR/label_issues.csv --data PATH "
             "--db review.sqlite --reviewer NAME`")
    if not reviewer.strip():
        fail("--reviewer is empty; give your name (it is stored with every decision)")
    bad = [k for k in kind if k not in KINDS]
    if bad:
        fail(f"--kind {bad[0]!r}: expected one of {', '.join(KINDS)}")
    if not 0 <= port <= 65535:
        fail(f"--port {port} is not a TCP port (0..65535)")
    import uvicorn

    from ..serve.review import ReviewStore, create_review_app, file_digest, load_items

    try:
        check_input_path(issues, "--issues", kind="file")
        check_input_path(data, "--data")
        check_output_file(db, "--db")
        votes = None
        fp = ferplus
        if fp is None and data.is_file() and (data.parent / "fer2013new.csv").exists():
            fp = data.parent / "fer2013new.csv"
        with console.status(f"loading {escape(str(data))}"):
            ds = load_dataset(data, label_set=labels)
            if fp is not None and ds.rows is not None:
                check_input_path(fp, "--ferplus", kind="file")
                votes = load_ferplus(fp)
        items = load_items(issues, ds, tuple(kind) or None, votes)
        store = ReviewStore(db, reviewer.strip(), file_digest(issues), str(issues))
    except (DataError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    app = create_review_app(items, ds.images, ds.label_set.labels, store, title=issues.name)
    nxt = store.next_item(len(items))
    console.print(f"reviewing {len(items):,} flagged faces at http://{host}:{port}/ "
                  f"({'all decided' if nxt is None else f'resuming at face {nxt + 1}'}; decisions in "
                  f"{escape(str(db))}; Ctrl+C to stop)", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@review_app.command("export")
def export(
    db: Path = typer.Option(..., "--db", help="The review's SQLite file."),
    out: Path = typer.Option(..., "--out", help="CHANGES.csv to write (row,old,new,reason) for `data relabel`."),
    drops: Optional[Path] = typer.Option(None, "--drops", help="Drop list (row,label,reason); default "
                                                               "OUT_drops.csv, written only when faces were dropped."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Write the reviewed relabels as CHANGES.csv (and the dropped faces as a drop list)."""
    from ..data.errors import DataError
    from ..data.outputs import check_input_path, check_output_file
    from ..serve.review import ReviewStore

    try:
        check_input_path(db, "--db", kind="file")
        check_output_file(out, "--out", suffixes=(".csv",))
        if drops is not None:
            check_output_file(drops, "--drops", suffixes=(".csv",))
        store = ReviewStore(db)
        summary = store.export(out, drops)
        store.close()
    except (DataError, ValueError) as e:
        fail(str(e))
    if json_out:
        print_json(summary)
        return
    console.print(f"{summary['relabelled']:,} relabel(s) -> {escape(str(out))}; {summary['dropped']:,} dropped"
                  + (f" -> {escape(summary['drops'])}" if "drops" in summary else "")
                  + f"; {summary['kept']:,} kept, {summary['skipped']:,} skipped", highlight=False)
