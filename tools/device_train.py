"""Run several trainings side by side on one lent GPU inside one command, and bring the results back.

A lent GPU gives one ~10-minute command and returns at most 8 files of <= 16 MiB from ``$OUT``. So this driver
starts every job as its own ``emotionlab train`` process (small 48 px models leave an H200 mostly idle; several
processes fill it), gives each the same ``--time-budget`` so every cosine schedule ends annealed in time, retries a
job once without bf16 / channels_last if it dies in its first minute, kills anything still running at the
deadline, and packs every run (best weights with large tensors in float16, model card, history, curves, log)
into one tar split into <= 15 MiB parts. Here, ``cat results.tar.part* | tar x`` restores ``runs/<job>/``.

    python3 tools/device_train.py --data .device/fer_trainval.npz --out $OUT --budget 480 \\
        --job m_nomix=configs/emonet_m_gpu_nomix.yaml --job f_plain=configs/emonet_f_gpu.yaml
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PART_BYTES = 15 * 2**20


def launch(name: str, cfg: Path, args, runs: Path, budget: float, safe: bool = False) -> subprocess.Popen:
    """One job = one process running ``worker`` (``fit`` directly: no CLI layer to differ on the GPU's stack)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", f"{name}={cfg}", "--data", args.data,
           "--out", str(args.out), "--runs", str(runs), "--device", args.device, "--budget", f"{budget:.0f}",
           "--threads", str(args.threads)] + (["--max-train", str(args.max_train)] if args.max_train else []) + (
           ["--safe"] if safe else [])
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1", COLUMNS="200")
    log = open(runs / f"{name}.log", "a")
    log.write(("# retry without bf16 / channels_last\n" if safe else "") + " ".join(cmd) + "\n")
    log.flush()
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def worker(spec: str, args) -> int:
    from emotionlab.training.config import TrainConfig
    from emotionlab.training.engine import fit

    name, cfg_path = spec.split("=", 1)
    cfg = TrainConfig.from_yaml(cfg_path, data=args.data, device=args.device, time_budget=args.budget,
                                threads=args.threads, max_train=args.max_train)
    if args.safe:  # the retry: without the two options most likely to break on an untested GPU stack
        cfg.bf16, cfg.channels_last = False, False
    rel = os.path.relpath(cfg_path, REPO)
    command = (f"emotionlab train --config {rel} --data {args.data} --device {args.device} "
               f"--time-budget {args.budget:g}" + (" --no-bf16 (channels_last: false)" if args.safe else ""))
    res = fit(cfg, args.runs / name, command=command)
    print(f"{name}: best validation accuracy {res['best_val_acc']:.4f} at epoch {res['best_epoch']} of "
          f"{res['epochs_run']}, {res['img_s']:.0f} img/s, {res['hardware']}", flush=True)
    return 0


def last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.exists() else []
    return lines[-1][:160] if lines else ""


def to_half(src: Path, dst: Path) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from emotionlab.training.checkpoint import save_half

    save_half(src, dst)


def pack(runs: Path, names: list[str], out: Path) -> list[Path]:
    tar_path = runs / "results.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in names:
            d = runs / name
            if (d / "best.safetensors").exists():
                to_half(d / "best.safetensors", runs / f"{name}.half.safetensors")
                tar.add(runs / f"{name}.half.safetensors", f"{name}/best.safetensors")
            for f in ("best.json", "config.json", "history.csv", "curves.png"):
                if (d / f).exists():
                    tar.add(d / f, f"{name}/{f}")
            if (runs / f"{name}.log").exists():
                tar.add(runs / f"{name}.log", f"{name}/train.log")
    data = tar_path.read_bytes()
    parts = []
    for i in range(0, len(data), PART_BYTES):
        p = out / f"results.tar.part{i // PART_BYTES:02d}"
        p.write_bytes(data[i:i + PART_BYTES])
        parts.append(p)
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--job", action="append", help="NAME=CONFIG.yaml (repeatable)")
    ap.add_argument("--budget", type=float, default=480, help="training seconds per job (--time-budget)")
    ap.add_argument("--grace", type=float, default=60, help="seconds past the budget before jobs are killed")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/emotionlab_runs"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--safe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args)
    if not args.job:
        ap.error("give at least one --job NAME=CONFIG.yaml")
    jobs = dict(j.split("=", 1) for j in args.job)
    args.runs.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    deadline = t0 + args.budget + args.grace
    procs = {n: launch(n, REPO / c, args, args.runs, args.budget) for n, c in jobs.items()}
    started = {n: t0 for n in jobs}
    retried: set[str] = set()
    last_report = 0.0
    while any(p.poll() is None for p in procs.values()):
        time.sleep(2)
        now = time.monotonic()
        for n, p in list(procs.items()):
            rc = p.poll()
            if rc not in (None, 0) and n not in retried and now - started[n] < 90:
                print(f"[{now - t0:5.0f}s] {n} died (rc {rc}) in its first minute: {last_line(args.runs / f'{n}.log')}",
                      flush=True)
                retried.add(n)
                started[n] = now
                procs[n] = launch(n, REPO / jobs[n], args, args.runs, args.budget - (now - t0), safe=True)
        if now - last_report > 30:
            last_report = now
            for n in procs:
                print(f"[{now - t0:5.0f}s] {n}: {last_line(args.runs / f'{n}.log')}", flush=True)
        if now > deadline:
            for n, p in procs.items():
                if p.poll() is None:
                    print(f"[{now - t0:5.0f}s] {n}: past the deadline, killed", flush=True)
                    p.kill()
            break
    for p in procs.values():
        p.wait()
    summary = [f"{n}: rc {p.returncode}; {last_line(args.runs / f'{n}.log')}" for n, p in procs.items()]
    parts = pack(args.runs, list(jobs), args.out)
    (args.out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"packed {len(parts)} part(s), {sum(p.stat().st_size for p in parts) / 2**20:.1f} MiB, "
          f"{time.monotonic() - t0:.0f} s in all", flush=True)
    return 0 if all(p.returncode == 0 for p in procs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
