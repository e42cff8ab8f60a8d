"""Load test of ``recfit serve``: concurrent clients on loopback against an ml-1m model.

Starts ``python -m recfit serve BUNDLE`` in a subprocess on 127.0.0.1 (an ephemeral
port), then runs ``--clients`` concurrent clients (asyncio + httpx, one keep-alive
connection each) for ``--seconds`` seconds, each sending ``GET /recommend?user=U&n=10``
for random known users back to back (closed loop). Prints requests/s, p50/p90/p99/max
latency and the error count (non-200 answers and transport errors). Target: 0 errors
and p99 under 50 ms.

Without ``--bundle`` it first trains DotBias for ``--epochs`` epochs on ml-1m (random
90/10 split) into a temporary run directory. The client and the server share the
machine's CPU, so on a small machine the figures are a lower bound.

Usage:
    python benchmarks/bench_server.py [--bundle RUN_OR_BUNDLE] [--data-dir DIR]
        [--clients 50] [--seconds 30] [--epochs 1] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(data_dir: str | None, epochs: int, out: Path) -> Path:
    from recfit.config import RatingConfig
    from recfit.runs import train_run

    cfg = RatingConfig(
        dataset="ml-1m", data_dir=data_dir, split="random:0.1", epochs=epochs, seed=0, budget=0
    )  # budget 0: model auto by size (dot here), no search
    t0 = time.perf_counter()
    res = train_run(cfg, out, progress=False)
    print(
        f"trained dot on ml-1m ({epochs} epoch(s)) in {time.perf_counter() - t0:.1f} s, "
        f"valid rmse {res.metrics['rmse']:.4f}"
    )
    return out


def _user_ids(bundle: Path) -> list[str]:
    from recfit.data.vocab import Vocabulary
    from recfit.recommender import bundle_path

    users = Vocabulary.from_json((bundle_path(bundle) / "users.json").read_text("utf-8"))
    return [str(u) for u in users.ids.tolist()]


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not answer /health in time")


async def _client(
    url: str, users: list[str], n: int, stop: float, seed: int, lat: list[float], errs: list[str]
) -> None:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as c:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                r = await c.get("/recommend", params={"user": rng.choice(users), "n": n})
                ok = r.status_code == 200 and len(r.json()["items"]) == n
                if not ok:
                    errs.append(f"HTTP {r.status_code}: {r.text[:120]}")
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                errs.append(f"{type(exc).__name__}: {exc}")
                ok = False
            if ok:
                lat.append(time.perf_counter() - t0)


async def _load(
    url: str, users: list[str], clients: int, seconds: float, n: int
) -> tuple[list[float], list[str], float]:
    lat: list[float] = []
    errs: list[str] = []
    t0 = time.perf_counter()
    stop = t0 + seconds
    await asyncio.gather(
        *(_client(url, users, n, stop, seed, lat, errs) for seed in range(clients))
    )
    return lat, errs, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, help="a run directory or bundle (default: train one)")
    ap.add_argument("--data-dir", default=os.environ.get("RECFIT_DATA_DIR"))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--json", action="store_true", help="also print one JSON line")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="recfit-bench-server-") as tmp:
        bundle = args.bundle or _train(args.data_dir, args.epochs, Path(tmp) / "run")
        users = _user_ids(bundle)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [
            sys.executable, "-m", "recfit", "serve", str(bundle), "--host", "127.0.0.1",
            "--port", str(port), "--torch-threads", str(args.torch_threads),
            "--no-report", "--log-level", "warning", "--workers", str(args.workers),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        try:
            _wait_ready(url, proc)
            if args.warmup > 0:
                asyncio.run(_load(url, users, args.clients, args.warmup, args.n))
            lat, errs, wall = asyncio.run(_load(url, users, args.clients, args.seconds, args.n))
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    ms = np.asarray(lat) * 1000
    total = len(lat) + len(errs)
    p50, p90, p99 = (float(np.percentile(ms, q)) if len(ms) else float("nan") for q in (50, 90, 99))
    worst = float(ms.max()) if len(ms) else float("nan")
    print(
        f"GET /recommend (n={args.n}) on ml-1m ({len(users):,} users), {args.clients} clients, {args.workers} worker(s), "
        f"{wall:.1f} s, {os.cpu_count()} CPUs shared by client and server"
    )
    print(f"  requests   {total:,}  ({total / wall:,.0f} req/s)")
    print(f"  latency    p50 {p50:.1f} ms  p90 {p90:.1f} ms  p99 {p99:.1f} ms  max {worst:.1f} ms")
    print(f"  errors     {len(errs)}")
    for e in sorted(set(errs))[:5]:
        print(f"    {e}")
    verdict = "met" if not errs and p99 < 50 else "NOT met"
    print(f"  target (0 errors, p99 < 50 ms): {verdict}")
    if args.json:
        print(
            json.dumps(
                {
                    "requests": total,
                    "rps": total / wall,
                    "p50_ms": p50,
                    "p90_ms": p90,
                    "p99_ms": p99,
                    "max_ms": worst,
                    "errors": len(errs),
                    "clients": args.clients,
                    "seconds": wall,
                }
            )
        )


if __name__ == "__main__":
    main()
