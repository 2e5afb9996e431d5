"""Face pipeline commands: ``predict`` (images, folders, videos), ``webcam`` and ``bench``."""
from __future__ import annotations

import csv
import json
import os
import sys
from itertools import groupby
from pathlib import Path

import typer
from rich.markup import escape

from ..data.decode import DecodeLimits
from .common import bounds, checked, console, fail, print_json


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("webcam")(webcam)
    app.command("bench")(bench)
    app.command("batch")(batch)


def _set_threads(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def _check_pipeline(detector: str, backend: str, tta: str) -> None:
    """The pipeline's names, refused before any input is listed or model loaded."""
    from ..inference.detectors import list_detectors
    from ..inference.recognizer import TTA_MODES

    if tta not in TTA_MODES:
        fail(f"--tta {tta!r}: expected one of {', '.join(TTA_MODES)}")
    if detector not in list_detectors():
        fail(f"--detector {detector!r}: expected one of {', '.join(list_detectors())}")
    if backend not in ("auto", "onnx", "torch"):
        fail(f"--backend {backend!r}: expected auto, onnx or torch")


def _recognizer(model: str, detector: str, device: str, backend: str, threads: int,
                attributes: tuple[str, ...] = ("emotion",), gender_model: str = "gender", tta: str = "none",
                min_confidence: float | None = None, align: bool = False):
    from ..inference import FaceEmotionRecognizer

    _check_pipeline(detector, backend, tta)
    try:
        rec = FaceEmotionRecognizer(model=model, detector=detector, device=device, backend=backend,
                                    threads=threads, attributes=attributes, gender_model=gender_model, tta=tta,
                                    min_confidence=min_confidence, align=align)
    except FileNotFoundError as e:
        fail(f"{e}\n(no usable emotion model: pass --model RUN_DIR of a trained run, or ship one as 'default')")
    console.print(f"[bold]using[/] {escape(rec.describe())}", highlight=False)
    if getattr(rec, "backend_error", None):
        console.print(f"[yellow]ONNX Runtime unavailable, using PyTorch:[/] {rec.backend_error}", highlight=False)
    return rec


def expand_inputs(paths: list, videos: bool = True) -> list[tuple]:
    """Files and folders (recursive) -> (file, path relative to its input root) for images (and videos).
    With ``videos``, live sources (stream URLs, and camera indexes that are not files here) stay as their
    string: ``(source, Path(name for its outputs))``.

    Files named one by one are always kept (a missing or unreadable one fails individually later); the other
    files found in folders are left out by extension, and said so on the console (nothing silently dropped).
    """
    from ..data.folders import IMAGE_EXTS
    from ..inference.video import VIDEO_EXTS

    from ..inference.sources import is_camera, is_network_source, source_name

    exts = IMAGE_EXTS | VIDEO_EXTS if videos else IMAGE_EXTS
    out, other = [], []
    for p in paths:
        if videos and isinstance(p, str) and (is_network_source(p) or (is_camera(p) and not Path(p).exists())):
            out.append((p, Path(source_name(p))))
            continue
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
            out += [(f, f.relative_to(p)) for f in files if f.suffix.lower() in exts]
            other += [f for f in files if f.suffix.lower() not in exts and not f.name.startswith(".")]
        else:
            out.append((p, Path(p.name)))
    if other:
        kinds = "images or videos" if videos else "images"
        shown = ", ".join(str(f) for f in other[:3]) + (", ..." if len(other) > 3 else "")
        console.print(f"[yellow]left out {len(other)} file(s) in the folders that are not {kinds} by extension:[/] "
                      f"{escape(shown)}", highlight=False)
    return out


def predict(
    paths: list[str] = typer.Argument(..., help="Image files, folders (searched recursively), videos, camera "
                                                 "indexes (0) and live streams (rtsp://, http(s)://, udp://...)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per input on stdout."),
    csv_out: Path | None = typer.Option(None, "--csv", help="Write one row per face to this CSV file."),
    out: Path | None = typer.Option(None, "--out", help="Directory for annotated images / videos, timelines, plots."),
    model: str = typer.Option("default", "--model", "-m", help="Shipped model, alias or run directory."),
    detector: str = typer.Option("auto", help="auto | blazeface_short | blazeface_full | haar | none (each "
                                              "image already is one face crop, read as in training)"),
    backend: str = typer.Option("auto", help="auto (ONNX Runtime on CPU) | onnx | torch"),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N | mps | auto"),
    threads: int = typer.Option(1, callback=bounds(1), help="CPU threads for inference."),
    batch: int = typer.Option(16, callback=bounds(1), help="Images classified per batched call."),
    stride: int = typer.Option(1, callback=bounds(1), help="Videos: process every N-th frame."),
    smoothing: float = typer.Option(0.5, callback=bounds(0, 1, hi_open=True),
                                    help="Videos: EMA weight of past scores per tracked face, in [0, 1) (0 = off)."),
    timeline: str = typer.Option("csv", help="Videos: timeline format csv | parquet (parquet needs pyarrow)."),
    debug: bool = typer.Option(False, "--debug", help="Annotated images get the model's-eye inset."),
    attributes: str = typer.Option("emotion", "--attributes",
                                   help="emotion (default) or emotion,gender: adds each face's apparent binary "
                                        "gender {label, scores} (research use; see the gender model card)."),
    gender_model: str = typer.Option("gender", "--gender-model", help="Model for the gender attribute."),
    tta: str = typer.Option("none", "--tta", help="Test-time augmentation of the classifier: none | flip "
                                                  "(2x its time) | ten (10x); averaged probabilities."),
    min_confidence: float | None = typer.Option(None, "--min-confidence", callback=bounds(0, 1, hi_open=True),
                                                help="Label a face 'uncertain' when its top calibrated score is "
                                                     "below P (docs/results_calibration.md: accuracy vs coverage)."),
    align: bool = typer.Option(False, "--align", help="Turn each crop with the head's roll (BlazeFace eye "
                                                      "keypoints); +1 point at 30 deg tilt, noise below."),
    max_pixels: int = typer.Option(DecodeLimits.local().max_pixels, "--max-pixels", callback=bounds(1),
                                   help="Largest image (width x height) decoded; larger ones are refused "
                                        "from their header, before decoding."),
    duration: float | None = typer.Option(None, "--duration", callback=bounds(0, lo_open=True),
                                          help="Videos and streams: stop after S seconds (stream: wall clock; "
                                               "file: video time). Ctrl-C also ends a stream cleanly."),
    track_gap: int = typer.Option(20, "--track-gap", callback=bounds(0, 100_000),
                                  help="Videos: processed frames a face may go undetected and keep its id."),
    summary: bool = typer.Option(False, "--summary", help="Videos and streams: write <name>.summary.json and "
                                                          ".summary.png per person (needs --out)."),
    read_timeout: float = typer.Option(5.0, "--read-timeout", callback=bounds(0, 3600, lo_open=True),
                                       help="Streams: seconds without a frame before the stream counts as lost."),
    reconnect: int = typer.Option(5, "--reconnect", callback=bounds(0, 1000),
                                  help="Streams: reopen attempts (with backoff) after a loss; 0 ends at the first."),
    rtsp_transport: str = typer.Option("tcp", "--rtsp-transport",
                                       help="rtsp:// streams: tcp (default; works through NATs and firewalls) or "
                                            "udp (for servers and cameras that only offer RTP over UDP)."),
) -> None:
    """Detect faces and classify their emotions; bad files are reported one by one and counted."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..inference.video import VIDEO_EXTS

    from ..inference.sources import LiveOptions

    limits = DecodeLimits.local(max_pixels=max_pixels)
    if timeline not in ("csv", "parquet"):
        fail(f"--timeline {timeline!r}: expected csv or parquet")
    if summary and out is None:
        fail("--summary writes files: give --out DIR")
    if rtsp_transport not in ("tcp", "udp"):
        fail(f"--rtsp-transport {rtsp_transport!r}: expected tcp or udp")
    live = LiveOptions(read_timeout_s=read_timeout, reconnect_tries=reconnect, duration_s=duration,
                       rtsp_transport=rtsp_transport)
    vopts = {"stride": stride, "smoothing": smoothing, "timeline": timeline, "max_missed": track_gap,
             "live": live, "summary": summary, "limits": limits}
    _check_pipeline(detector, backend, tta)
    from ..data.outputs import check_output_dir, check_output_file
    from ..models.device import resolve_device

    with checked():  # before any model is loaded: a wrong output path must not lose the results
        device = resolve_device(device, "--device")
        if csv_out is not None:
            check_output_file(csv_out, "--csv")
        if out is not None:
            check_output_dir(out, "--out")
    from ..inference.recognizer import parse_attributes

    try:
        attrs = parse_attributes(attributes)
    except ValueError as e:
        fail(f"--attributes {attributes!r}: {e}")
    _set_threads(threads)
    items = expand_inputs(paths)
    if not items:
        fail("no images or videos found in " + ", ".join(map(str, paths)))
    rec = _recognizer(model, detector, device, backend, threads, attrs, gender_model, tta, min_confidence, align)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results: list[dict] = []  # one per input, in input order
    failures = 0
    stopped = False  # Ctrl-C during a file: the rest is not started, what was done is written
    n_faces = 0

    def emit(res: dict) -> None:
        results.append(res)
        if json_out:
            sys.stdout.write(json.dumps(res) + "\n")
            sys.stdout.flush()

    show = len(items) > 1 and console.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not show, transient=True) as prog:
        task = prog.add_task("predict", total=len(items))
        runs = groupby(items, key=lambda it: isinstance(it[0], str) or it[0].suffix.lower() in VIDEO_EXTS)
        for is_video, run in runs:
            run = list(run)
            if is_video:
                for path, rel in run:
                    res = _predict_video(rec, path, rel, out, vopts)
                    n_faces += res.get("faces_detected", 0)
                    failures += "error" in res
                    emit(res)
                    prog.advance(task)
                    if res.pop("_stop", False):
                        stopped = True
                        break
                if stopped:
                    break
                continue
            # images stream through the library's one batched path: at most `batch` decoded at a time
            for r in rec.predict_iter(((str(p), p) for p, _ in run), batch=batch, limits=limits):
                path, rel = run[r.index]
                if not r.ok:
                    failures += 1
                    console.print(f"[red]failed[/] {escape(str(r.detail))}", highlight=False)
                    emit({"path": str(path), "error": r.detail, "faces": []})
                else:
                    n_faces += len(r.faces)
                    res = {"path": str(path), "faces": [f.to_dict() for f in r.faces]}
                    if out is not None:
                        res["annotated"] = str(_save_annotated(r.image, r.faces, out / rel, debug))
                    emit(res)
                r.image = None
                prog.advance(task)

    gender_labels = rec.gender.labels if getattr(rec, "gender", None) is not None else None
    if csv_out is not None:
        _write_csv(csv_out, results, rec.labels, gender_labels)
    if not json_out:
        _print_table(results, gender_labels is not None)
    ok = len(results) - failures
    console.print(f"{len(results)} input(s): {ok} ok, {failures} failed; {n_faces} face(s); model {rec.model_name}"
                  + (f"; outputs in {out}" if out is not None else ""), highlight=False)
    if stopped:
        console.print("[yellow]stopped by Ctrl-C; the outputs of what was processed are written[/]")
        raise typer.Exit(130)
    if failures:
        raise typer.Exit(1)


def batch(
    paths: list[str] = typer.Argument(..., help="Image files and folders (recursive); with --engine spark, any "
                                                "path or URI Spark reads (binaryFile: local, HDFS, S3...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Rows: .csv, .parquet or .jsonl (Spark: a folder of "
                                                      ".csv / .parquet parts)."),
    engine: str = typer.Option("local", help="local (processes on this machine) | dask | spark"),
    workers: int = typer.Option(1, callback=bounds(1),
                                help="local, or dask without --scheduler: worker processes on this machine "
                                     "(each builds the model once)."),
    scheduler: str | None = typer.Option(None, help="dask: the address of a running cluster's scheduler "
                                                    "(tcp://host:8786)."),
    partitions: int | None = typer.Option(None, callback=bounds(1), help="dask / spark: number of partitions."),
    model: str = typer.Option("default", "--model", "-m", help="Shipped model, alias or run directory."),
    detector: str = typer.Option("auto", help="auto | blazeface_short | blazeface_full | haar | none"),
    backend: str = typer.Option("auto", help="auto (ONNX Runtime on CPU) | onnx | torch"),
    threads: int = typer.Option(1, callback=bounds(1), help="CPU threads per worker."),
    tta: str = typer.Option("none", "--tta", help="none | flip | ten"),
    attributes: str = typer.Option("emotion", "--attributes", help="emotion or emotion,gender"),
) -> None:
    """Batch inference at scale: one row per face (and per image without one), on local processes, Dask or Spark.

    The model is built once per worker process from the installed package; nothing is downloaded."""
    from ..inference.recognizer import parse_attributes

    if engine not in ("local", "dask", "spark"):
        fail(f"--engine {engine!r}: expected local, dask or spark")
    _check_pipeline(detector, backend, tta)  # before any worker starts
    try:
        attrs = parse_attributes(attributes)
    except ValueError as e:
        fail(f"--attributes {attributes!r}: {e}")
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".jsonl"):
        fail(f"--out {out}: expected a .csv, .parquet or .jsonl path")
    if engine == "spark" and suffix == ".jsonl":
        fail("--engine spark writes .csv or .parquet folders")
    from ..data.outputs import check_output_dir, check_output_file

    with checked():  # before any worker starts: the rows must have somewhere to go
        (check_output_dir if engine == "spark" else check_output_file)(out, "--out")
    kw = dict(model=model, detector=detector, backend=backend, threads=threads, tta=tta, attributes=attrs)
    try:
        from ..models.hub import load_card

        load_card(model)  # a wrong name fails here, not in every worker
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if engine == "spark":
        _batch_spark(paths, out, partitions, kw)
        return
    items = [str(f) for f, _ in expand_inputs([Path(p) for p in paths], videos=False)]  # bad files: error rows
    if not items:
        fail("no images found in " + ", ".join(paths))
    console.print(f"[bold]batch[/] {len(items)} image(s), engine {engine}, model {escape(str(model))}", highlight=False)
    if engine == "dask":
        from ..inference.batch import predict_dask

        client = cluster = None
        try:
            from distributed import Client, LocalCluster

            if scheduler is None:  # no cluster given: one of --workers processes on this machine
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
            client = Client(scheduler or cluster)
            df = predict_dask(items, npartitions=partitions, client=client, **kw)
        except ImportError:
            fail("the dask engine needs dask and distributed: pip install 'dask[distributed]'")
        finally:
            for c in (client, cluster):
                if c is not None:
                    c.close()
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from ..inference.batch import predict_local

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, disable=not console.is_terminal, transient=True) as prog:
            task = prog.add_task("batch", total=len(items))
            df = predict_local(items, workers=workers, progress=lambda n: prog.advance(task, n), **kw)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(out, index=False, float_format="%.4f")
    elif suffix == ".jsonl":
        df.to_json(out, orient="records", lines=True)
    else:
        try:
            df.to_parquet(out, index=False)
        except ImportError:
            fail("writing .parquet needs pyarrow (pip install pyarrow); or use --out rows.csv")
    errors = df[df["error"].notna()]["path"].nunique()
    no_face = int((df["error"].isna() & (df["n_faces"] == 0)).sum())
    console.print(f"{df['path'].nunique()} image(s): {int(df['face'].notna().sum())} face(s), {no_face} without "
                  f"a face, {errors} failed; rows in {out}", highlight=False)
    if errors:
        raise typer.Exit(1)


def _batch_spark(paths: list[str], out: Path, partitions: int | None, kw: dict) -> None:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        fail("the spark engine needs pyspark (pip install pyspark pyarrow), or run under spark-submit")
    from ..data.folders import IMAGE_EXTS
    from ..inference.batch import predict_spark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local[*]: workers use this environment's Python
    spark = SparkSession.builder.appName("emotionlab-batch").getOrCreate()
    glob = "*.{" + ",".join(sorted({e.lstrip('.') for e in IMAGE_EXTS} | {e.lstrip('.').upper() for e in IMAGE_EXTS})) + "}"
    src = (spark.read.format("binaryFile").option("pathGlobFilter", glob).option("recursiveFileLookup", "true")
           .load(list(paths)))
    if partitions:
        src = src.repartition(partitions)
    rows = predict_spark(src, **kw)
    w = rows.write.mode("overwrite")
    (w.option("header", "true").csv if out.suffix.lower() == ".csv" else w.parquet)(str(out))
    console.print(f"rows written by Spark to {escape(str(out))}/", highlight=False)


def _save_annotated(img, faces, dest: Path, debug: bool) -> Path:
    import cv2

    from ..inference.draw import draw_faces

    dest = dest.with_suffix(".jpg") if dest.suffix.lower() not in (".jpg", ".jpeg", ".png") else dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dest), draw_faces(img, faces, debug=debug)):
        raise OSError(f"{dest}: could not write the annotated image")
    return dest


def _predict_video(rec, path, rel: Path, out: Path | None, vopts: dict) -> dict:
    """One video file, camera or stream through :func:`emotionlab.inference.video.process_video`; its JSON
    line (per-track mean scores from the per-person summary, live statistics)."""
    from ..data.errors import DataError
    from ..inference.sources import is_live, redact
    from ..inference.video import process_video

    vout = (out / rel).parent if out is not None else None
    live = isinstance(path, str) and is_live(path)
    name = redact(path) if live else str(path)

    def event(msg: str) -> None:
        console.print(f"[yellow]{escape(msg)}[/]", highlight=False)

    if live:
        console.print(f"reading {escape(name)} live (Ctrl-C ends it; the outputs are written)", highlight=False)
    try:
        res = process_video(rec, path, vout, on_event=event, **vopts)
    except DataError as e:
        console.print(f"[red]failed[/] {escape(str(e))}", highlight=False)
        return {"path": name, "error": str(e), "faces": []}
    faces = [{"face_id": p["face_id"], "frames": p["frames"], "box": p["last_box"], "label":
              max(p["mean_scores"], key=p["mean_scores"].get), "scores": p["mean_scores"]}
             for p in res.summary.get("people", [])]
    d = {"path": name, "type": "stream" if live else "video", "frames": res.frames, "faces_detected": res.faces,
         "faces": faces, "outputs": res.outputs}
    if res.live is not None:
        d["live"] = res.live
        lv = res.live
        console.print(f"{escape(name)}: {lv['frames_processed']} frame(s) processed at {lv['fps_processed']:.1f}/s, "
                      f"{lv['frames_dropped']} dropped while inference lagged, {lv['reconnects']} reconnect(s); "
                      f"ended: {lv['ended']}", highlight=False)
    if res.interrupted:
        d["interrupted"] = True
        d["_stop"] = not live  # Ctrl-C is how a live run ends; in a list of files it stops the rest
    if res.error:
        d["error"] = res.error
        console.print(f"[red]failed[/] {escape(res.error)}", highlight=False)
    return d


def _write_csv(path: Path, results: list[dict], labels: list[str], gender_labels: list[str] | None = None) -> None:
    """One row per face, and one for each input without a face or with an error (``n_faces`` 0): the schema of
    ``emotionlab batch`` (``emotionlab.inference.batch.columns``); probabilities with 4 decimals."""
    from ..inference.batch import columns, face_rows

    path.parent.mkdir(parents=True, exist_ok=True)
    cols = columns(labels, gender_labels)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in results:
            for row in face_rows(r["path"], r["faces"], labels, gender_labels, r.get("error")):
                w.writerow(["" if row[c] is None else f"{row[c]:.4f}" if isinstance(row[c], float) else row[c]
                            for c in cols])


def _print_table(results: list[dict], gender: bool = False) -> None:
    from rich.table import Table

    t = Table(title="faces")
    cols = ["file", "face box (x, y, w, h)", "label", "top score"] + (["apparent gender"] if gender else [])
    for col in cols:
        t.add_column(col)
    pad = [""] * (len(cols) - 2)
    for r in results:
        name = escape(str(r["path"]))  # file names are text, not markup: 'IMG [copy].jpg' stays as it is
        if r.get("error") and not r["faces"]:
            t.add_row(name, "[red]error[/]", *pad)
        elif not r["faces"]:
            t.add_row(name, "no face", *pad)
        for f in r["faces"]:
            g = f.get("gender")
            extra = ([f"{g['label']} {g['scores'][g['label']]:.2f}" if g else ""] if gender else [])
            t.add_row(name, ", ".join(map(str, f["box"])), f["label"], f"{f['scores'][f['label']]:.3f}", *extra)
    # the table is the command's main output: stdout, so it can be piped (wide when piped: no wrapped paths)
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 200).print(t)


def webcam(
    camera: int = typer.Option(0, "--camera", callback=bounds(0), help="Camera index."),
    debug: bool = typer.Option(False, "--debug", help="Show the normalized face the model sees and all scores."),
    model: str = typer.Option("default", "--model", "-m"),
    detector: str = typer.Option("auto"),
    backend: str = typer.Option("auto"),
    smoothing: float = typer.Option(0.5, callback=bounds(0, 1, hi_open=True),
                                    help="EMA weight of past scores per tracked face, in [0, 1) (0 = off)."),
    threads: int = typer.Option(1, callback=bounds(1)),
) -> None:
    """Live camera window with boxes, labels and probability bars (q or Esc quits)."""
    import time

    import cv2

    from ..inference.draw import draw_faces

    from ..data.errors import DataError

    _set_threads(threads)
    rec = _recognizer(model, detector, "cpu", backend, threads)
    frames = rec.stream(camera, smoothing=smoothing)
    t0, n = time.perf_counter(), 0
    try:
        for fr in frames:
            img = draw_faces(fr.frame, fr.faces, debug=debug)
            n += 1
            fps = n / max(1e-6, time.perf_counter() - t0)
            cv2.putText(img, f"{fps:.0f} fps", (img.shape[1] - 90, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (255, 255, 255), 1, cv2.LINE_AA)
            cv2.imshow("emotionlab", img)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
    except DataError as e:
        fail(str(e))
    except KeyboardInterrupt:
        pass
    except cv2.error as e:
        fail(f"this OpenCV build cannot open a window ({str(e).strip().splitlines()[-1]}); install the GUI build "
             "`opencv-python` instead of `opencv-python-headless`, or run `emotionlab predict VIDEO --out DIR`")
    finally:
        try:
            cv2.destroyAllWindows()
        except cv2.error:
            pass


def bench(
    model: str = typer.Option("default", "--model", "-m"),
    detector: str = typer.Option("auto"),
    backend: str = typer.Option("auto"),
    threads: int = typer.Option(1, callback=bounds(1), help="CPU threads (ours and fer's)."),
    frames: int = typer.Option(20, callback=bounds(1), help="Frames per setting (1 face, 5 faces)."),
    repeat: int = typer.Option(3, callback=bounds(1), help="Timed passes over the frames."),
    faces: Path | None = typer.Option(None, help="Folder of face photos to paste (default: the sample photos "
                                                 "shipped with the package, copies of examples/)."),
    peers: bool = typer.Option(False, "--peers", help="Also time the `fer` package on the same frames."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report JSON here ('-' = stdout)."),
    tta: str = typer.Option("none", "--tta", help="Time the classifier with test-time augmentation: none | "
                                                  "flip | ten (what `predict --tta` costs)."),
) -> None:
    """End-to-end fps on 640x480 frames with 1 and 5 faces, per-face latency and batch throughput."""
    from rich.table import Table

    from ..data.outputs import check_input_path, check_output_file
    from ..inference.bench import run_bench

    with checked():
        if faces is not None:
            check_input_path(faces, "--faces", kind="dir")
        if json_out is not None:
            check_output_file(json_out, "--json", allow_stdout=True)
    _check_pipeline(detector, backend, tta)
    from ..inference.bench import default_faces_dir

    with checked():  # before the model loads: the frames need face photos
        faces = faces if faces is not None else default_faces_dir()
    _set_threads(threads)
    rec = _recognizer(model, detector, "cpu", backend, threads, tta=tta)
    rep = run_bench(rec, faces, frames, repeat, peers, threads, log=lambda s: console.print(s, highlight=False))
    if json_out is not None:
        if str(json_out) == "-":
            print_json(rep)
            return
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(rep, indent=2))
    t = Table(title=f"emotionlab bench ({rep['model']}, {rep['backend']}, detector {rep['detector']}, "
                    f"{threads} thread(s))")
    for col in ("setting", "ms / frame", "fps", "detect ms", "faces found", "fer ms / frame", "speed-up"):
        t.add_column(col)
    for k in ("1_face", "5_face"):
        e = rep["e2e"][k]
        f = rep["fer"].get(k, {}) if isinstance(rep["fer"], dict) else {}
        t.add_row(k.replace("_", " "), f"{e['ms']:.2f}", f"{e['fps']:.0f}", f"{e['detect_only']['ms']:.2f}",
                  f"{e['faces_found_per_frame']:.2f}/{e['faces_pasted_per_frame']}",
                  f"{f['ms_per_frame']:.1f}" if f.get("measured") else "-",
                  f"{e['speedup_vs_fer']}x" if "speedup_vs_fer" in e else "-")
    from rich.console import Console

    Console().print(t)
    b1, b64 = rep["classify_batch1"], rep["classify_batch64"]
    console.print(f"classify one face: {b1['ms']:.3f} ms (p90 {b1['p90_ms']:.3f}); batch of 64: "
                  f"{b64['faces_per_s']:.0f} faces/s", highlight=False)
    fer = rep["fer"]
    if not peers or not all(v.get("measured") for v in fer.values() if isinstance(v, dict)):
        reason = fer.get("reason") if "reason" in fer else next((v.get("reason") for v in fer.values()
                                                                 if isinstance(v, dict) and v.get("reason")), "")
        console.print(f"fer was not measured: {reason}", highlight=False)
