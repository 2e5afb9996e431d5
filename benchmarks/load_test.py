"""Load benchmark for `emotionlab serve` (not a test): concurrent clients on loopback posting one 640x480
single-face JPEG to /v1/faces; reports req/s, p50 / p99 latency, errors and the server's memory over the run.

    python benchmarks/load_test.py --requests 2000 --concurrency 8           # starts its own server
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --pid 1234    # an already running server

Only loopback addresses are accepted. The target of issue 8 on 2 cores: >= 50 req/s at p99 < 200 ms, memory
flat over 10,000 requests, zero errors.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def sample_jpeg(photo: Path | None) -> bytes:
    """A 640x480 JPEG of one face: the sample photo letterboxed (aspect kept), quality 85."""
    import cv2

    photo = photo or next((p for p in (REPO / "examples" / "grace_hopper.jpg", REPO / "examples" / "astronaut.jpg")
                           if p.exists()), None)
    if photo is None:
        raise SystemExit("no sample photo: pass --image PATH (a photo with one face)")
    img = cv2.imread(str(photo))
    if img is None:
        raise SystemExit(f"{photo}: not a readable image")
    h, w = img.shape[:2]
    s = min(640 / w, 480 / h)
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    y0, x0 = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (Linux /proc), None where unavailable."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workers: int, threads: int, model: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from emotionlab.cli import main; main(sys.argv[1:])",
                             "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                             "--threads", str(threads), "--model", model, "--log-level", "warning"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not start in 120 s")


async def run_load(url: str, body: bytes, total: int, concurrency: int, duration: float, pid: int | None,
                   warmup: int) -> dict:
    import httpx

    lat: list[float] = []
    errors: dict[str, int] = {}
    faces_seen: dict[int, int] = {}
    mem: list[tuple[int, float, float]] = []  # (requests done, seconds, RSS MB)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        headers = {"content-type": "image/jpeg"}
        for _ in range(warmup):
            await client.post("/v1/faces", content=body, headers=headers)
        issued = 0
        cpu0, client_cpu0 = cpu_seconds(pid), time.process_time()
        t0 = time.perf_counter()
        stop_at = t0 + duration

        async def worker():
            nonlocal issued
            while issued < total and time.perf_counter() < stop_at:
                issued += 1
                s = time.perf_counter()
                try:
                    r = await client.post("/v1/faces", content=body, headers=headers)
                    ok = r.status_code == 200
                    if ok:
                        n = len(r.json()["faces"])
                        faces_seen[n] = faces_seen.get(n, 0) + 1
                    else:
                        errors[f"http {r.status_code}"] = errors.get(f"http {r.status_code}", 0) + 1
                except (httpx.HTTPError, ValueError, KeyError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    ok = False
                if ok:
                    lat.append((time.perf_counter() - s) * 1000)

        async def sampler():
            while True:
                if pid is not None:
                    m = rss_mb(pid)
                    if m is not None:
                        mem.append((len(lat), time.perf_counter() - t0, m))
                await asyncio.sleep(1.0)

        samp = asyncio.create_task(sampler())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu1, client_cpu1 = cpu_seconds(pid), time.process_time()
        samp.cancel()
    if pid is not None and (m := rss_mb(pid)) is not None:
        mem.append((len(lat), elapsed, m))
    a = np.array(lat) if lat else np.array([np.nan])
    res = {
        "requests": len(lat) + sum(errors.values()), "ok": len(lat), "errors": errors, "seconds": round(elapsed, 2),
        "req_per_s": round(len(lat) / elapsed, 1), "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p90_ms": round(float(np.percentile(a, 90)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(np.max(a)), 1), "faces_per_response": faces_seen, "concurrency": concurrency,
        "image_bytes": len(body),
        # CPU cost per request: with a shared CPU, capacity on N free cores is about N * 1000 / this
        "server_cpu_ms_per_request": (round((cpu1 - cpu0) * 1000 / max(1, len(lat)), 2)
                                      if cpu0 is not None and cpu1 is not None else None),
        "client_cpu_ms_per_request": round((client_cpu1 - client_cpu0) * 1000 / max(1, len(lat)), 2),
    }
    if len(mem) >= 2:
        rss = [m for _, _, m in mem]
        # growth per 1,000 requests from a least-squares line over the samples after the first 10%
        tail = mem[len(mem) // 10:]
        x = np.array([d for d, _, _ in tail], float)
        y = np.array([m for _, _, m in tail], float)
        slope = float(np.polyfit(x, y, 1)[0]) * 1000 if np.ptp(x) > 0 else 0.0
        res["memory_mb"] = {"start": round(rss[0], 1), "end": round(rss[-1], 1), "max": round(max(rss), 1),
                            "growth_per_1k_requests": round(slope, 2), "samples": len(mem)}
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="Running server (loopback only); default: start one.")
    p.add_argument("--pid", type=int, help="PID of --url's server, to sample its memory.")
    p.add_argument("--requests", type=int, default=2000, help="Total requests (bounded).")
    p.add_argument("--duration", type=float, default=300, help="Stop after this many seconds at most.")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--image", type=Path, help="Photo with one face (default examples/grace_hopper.jpg).")
    p.add_argument("--workers", type=int, default=2, help="Server inference threads (own server only).")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (own server only).")
    p.add_argument("--model", default="default", help="Face model (own server only).")
    p.add_argument("--json", type=Path, help="Also write the result here.")
    a = p.parse_args(argv)
    if a.requests < 1 or a.concurrency < 1 or a.duration <= 0:
        p.error("--requests, --concurrency and --duration must be positive")
    body = sample_jpeg(a.image)
    proc = None
    if a.url:
        host = urlparse(a.url).hostname
        if host not in LOOPBACK:
            p.error(f"--url host {host!r} is not loopback; this benchmark only targets this machine")
        url, pid = a.url.rstrip("/"), a.pid
    else:
        proc, url = start_server(a.workers, a.threads, a.model)
        pid = proc.pid
    try:
        res = asyncio.run(run_load(url, body, a.requests, a.concurrency, a.duration, pid, a.warmup))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    res.update(url=url, cpu_count=os.cpu_count(), load_avg_1m=round(os.getloadavg()[0], 2),
               server={"workers": a.workers, "threads": a.threads, "model": a.model} if proc else None)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
