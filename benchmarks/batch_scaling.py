"""Batch-inference throughput per engine and worker count, on copies of the sample photos.

    .venv/bin/python benchmarks/batch_scaling.py [--images 400] [--model default] [--workers 1,2]
        [--engines local,dask] [--json out/batch_scaling.json]

Why: `emotionlab batch` promises that adding workers adds throughput (each worker builds the model once, the
tasks carry only parameters). This measures images/s and faces/s end to end (decode, detect, classify, rows),
model start-up included, so a user can see what one more core or one more Dask worker buys.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    from emotionlab.inference.batch import predict_dask, predict_local

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--engines", default="local,dask")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    photos = sorted((ROOT / "examples").glob("*.jpg"))
    tmp = Path(tempfile.mkdtemp(prefix="emotionlab_batch_"))
    items = []
    for i in range(args.images):
        src = photos[i % len(photos)]
        dst = tmp / f"{i:05d}_{src.name}"
        shutil.copy(src, dst)
        items.append(str(dst))
    rows = []
    try:
        for engine in args.engines.split(","):
            for w in (int(x) for x in args.workers.split(",")):
                t0 = time.perf_counter()
                if engine == "local":
                    df = predict_local(items, workers=w, model=args.model)
                else:
                    from distributed import Client, LocalCluster

                    with LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cl, Client(cl) as client:
                        t0 = time.perf_counter()  # cluster start-up is not the engine's per-job cost
                        df = predict_dask(items, npartitions=4 * w, client=client, model=args.model)
                dt = time.perf_counter() - t0
                faces = int(df["face"].notna().sum())
                row = {"engine": engine, "workers": w, "images": len(items), "faces": faces, "seconds": round(dt, 2),
                       "images_per_s": round(len(items) / dt, 1), "faces_per_s": round(faces / dt, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": args.model, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
