"""iALS's default fit (ridge chosen on an inner cut) against implicit 0.7.3's ALS on T2.

Both fit the same matrix: T2's shared training rows (``benchmarks/results/splits``:
ml-1m, ratings >= 4, random 80/20 of the positives, seed 0) as a binary users x items
matrix, 64 factors, 15 sweeps / iterations. recfit runs three ways: ``default`` (no
``reg``: the ridge is chosen on an inner cut of the training positives, as
``recfit train --task topn --model ials`` does), ``fixed`` (the ridge the default chose,
given: the sweeps alone) and implicit's ``AlternatingLeastSquares`` (its defaults, CG
solver) in the interpreter ``--implicit-python``. Per thread count, ``--reps`` rounds run
the three in turn, each in a fresh process that fits twice: the first fit in the process
(recfit's kernels compiled or loaded from the cache before, timed apart) and a second,
warm one. The table gives the median wall seconds of each over the rounds, the ratios to
implicit's (the same rounds), Recall@20 / NDCG@20 on T2's test rows
(``common.ranking_metrics``, training items excluded) and the load average before and
after. recfit's threads are at
most the requested ones and only the cores not busy with other processes (reported).

Usage::

    python benchmarks/bench_ials_default.py [--threads 1,2] [--reps 3]
        [--implicit-python .bench/implicit/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def t2_matrix() -> tuple[Any, tuple[Any, Any, Any, Any]]:
    """T2's binary training matrix and ``(test users, test items, train users, train
    items)`` as indices."""
    import numpy as np
    import scipy.sparse as sp

    sys.path.insert(0, str(HERE / "peers"))
    from common import encode, load_ratings, load_split

    d = load_ratings("ml-1m")
    users, u = encode(d["user"])
    items, i = encode(d["item"])
    train, test = load_split("T2", "seed0")
    x = sp.csr_matrix(
        (np.ones(len(train), np.float32), (u[train], i[train])), shape=(len(users), len(items))
    )
    x.sum_duplicates()
    x.sort_indices()
    return x, (u[test], i[test], u[train], i[train])


def worker(lib: str, n_threads: int) -> dict[str, Any]:
    import numpy as np

    x, (tu, ti, ru, ri) = t2_matrix()
    from common import ranking_metrics  # on the path t2_matrix set

    times: list[float] = []
    out: dict[str, Any] = {"lib": lib}
    for _ in range(2):  # the first fit in the process, then a warm one
        if lib == "implicit":
            from implicit.als import AlternatingLeastSquares

            m = AlternatingLeastSquares(
                factors=64, iterations=15, random_state=0, num_threads=n_threads
            )
            t0 = time.perf_counter()
            m.fit(x, show_progress=False)
            times.append(time.perf_counter() - t0)
            uf, vf = np.asarray(m.user_factors), np.asarray(m.item_factors)
            out["threads"] = n_threads
        else:
            import torch

            from recfit.models.ials import IALS, load_kernels

            torch.set_num_threads(n_threads)
            out["compile_seconds"] = load_kernels()[1]
            reg = None if lib == "default" else float(os.environ["BENCH_REG"])
            model = IALS(*x.shape, reg=reg)
            t0 = time.perf_counter()
            model.fit_positives(x)
            times.append(time.perf_counter() - t0)
            uf, vf = model.user_factors.numpy(), model.item_factors.numpy()
            out.update(threads=model.fit_info["threads"], reg=model.fit_info["reg"])
            inner = model.fit_info.get("inner", {})
            out["inner"] = {k: round(v["recall"], 4) for k, v in inner.items()}
    m = ranking_metrics(uf @ vf.T, tu, ti, ru, ri, n_bootstrap=0)
    out.update(first=times[0], warm=times[1], **m)
    return out


def run_worker(python: str, lib: str, n_threads: int, reg: float) -> dict[str, Any]:
    env = dict(os.environ, BENCH_REG=str(reg), OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [python, __file__, "--worker", lib, "--threads", str(n_threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"{lib} worker failed:\n{res.stderr[-3000:]}")
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--implicit-python", default=str(ROOT / ".bench/implicit/bin/python"))
    ap.add_argument("--worker", choices=["default", "fixed", "implicit"])
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, int(a.threads))))
        return
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for n in (int(t) for t in a.threads.split(",")):
        runs: dict[str, list[dict[str, Any]]] = {"default": [], "fixed": [], "implicit": []}
        for _ in range(a.reps):
            d = run_worker(sys.executable, "default", n, 0.0)
            runs["default"].append(d)
            runs["fixed"].append(run_worker(sys.executable, "fixed", n, d["reg"]))
            runs["implicit"].append(run_worker(a.implicit_python, "implicit", n, 0.0))
        print(f"  {n} thread(s) done, load average {os.getloadavg()}", flush=True)
        ref = {w: statistics.median(r[w] for r in runs["implicit"]) for w in ("first", "warm")}
        for lib, rs in runs.items():
            med = {w: statistics.median(r[w] for r in rs) for w in ("first", "warm")}
            rows.append((n, lib, rs, med, {w: med[w] / ref[w] for w in med}))
    print("| threads asked (used) | fit | first fit: median s (runs), / implicit "
          "| warm fit: median s (runs), / implicit | Recall@20 | NDCG@20 |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n, lib, rs, med, ratio in rows:
        r = rs[-1]
        name = {"default": f"recfit ials default (reg chosen: {r.get('reg', '')})",
                "fixed": f"recfit ials reg={r.get('reg', '')} given",
                "implicit": "implicit 0.7.3 ALS"}[lib]  # fmt: skip
        cells = [
            f"{med[w]:.3f} ({', '.join(f'{x[w]:.2f}' for x in rs)}), {ratio[w]:.2f}"
            for w in ("first", "warm")
        ]
        print(f"| {n} ({r['threads']}) | {name} | {cells[0]} | {cells[1]} "
              f"| {r['recall@20']:.4f} | {r['ndcg@20']:.4f} |")  # fmt: skip
    print(f"inner Recall@20 of the default's walk: {rows[0][2][-1].get('inner')}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
