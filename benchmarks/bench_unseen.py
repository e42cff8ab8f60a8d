"""recfit's default on rating data its defaults were not chosen on.

``model="auto"`` at its default budget (``RatingConfig(seed=S)`` and nothing else: what
``recfit train`` runs with no flags) against each single recfit rating family at its
defaults, recfit's ALS, and Surprise's SVD, SVD++, BaselineOnly and KNNBaseline, on data
sets that none of recfit's defaults were chosen on. Every data set is built in memory from
the local MovieLens copies (nothing is written to disk), reproducibly:

* ``half-100k`` and ``shape-small``: the half-star proxies of ``bench_halfstar.py``
  (imported from it; read its docstring): ml-100k with half stars, and ml-latest-small's
  shape (610 ml-1m users, 100,836 ratings, 9,7xx items made by splitting movies into
  copies) with half stars. Ratings 0.5-5 in half steps.
* ``late-1m``: ml-1m's ratings made on or after 2001-01-01 (95,452 ratings, 1,177 users,
  3,405 items; the users who kept rating after the first eight months, median 38 ratings
  each, 1 to 1,014). Whole stars.
* ``sparse-1m``: 100,000 of ml-1m's ratings drawn at random (seed 0) from all 1,000,209
  (5,961 users with a median of 10 ratings, 3,326 items). Whole stars.

Each data set is split at random 80/20 by ``recfit.data.split.random_split`` with split
seeds 0, 1, 2 (the split ``recfit train --seed S`` makes; the seed also seeds training);
Surprise gets the same rows (its ``Reader`` on the data's rating scale), through
``benchmarks/peers/peer_surprise.py``'s algorithm table and trainset builder, run in the
Surprise virtual environment (``.bench/surprise``) as a subprocess.

Rows: ``auto`` (the default), ``family-<name>`` for every registered rating family but
``blend`` (``timesvdpp`` only where the data has timestamps), ``als-mf`` (``--model mf
--trainer als``, its defaults) and ``als-r1`` (ALS with BENCHMARKS.md's R1 settings:
``--model mf --trainer als --n-factors 32 --reg 0.4 --reg-exponent 0.75 --epochs 15``),
``surprise-<name>``. Every finished (data, seed, row) is appended at once to
``results/unseen.jsonl``; a rerun skips what is there (a failed row is recorded with its
error and not retried unless ``--retry-errors``). ``report`` writes ``unseen.json``,
``unseen.md`` and ``unseen.png``: RMSE mean over the seeds with a 95 % Student-t interval
(``mean ± t(0.975, n-1) · s / sqrt(n)``, ``grid.py``'s), the paired difference
default − row over the seeds both ran (its t-interval; below zero: the default is
better), wall seconds, the load average at start and end, the range of the predictions
and the rows answered by a fallback. auto's budget is wall-clock, so its figures depend
on the load of the moment: each auto record carries the load at its start and end.

The table of a data set is on the seeds every row of it ran; rows with more seeds are
listed after it. ``--auto-row NAME`` runs auto under another row name (the default rerun
on newer code beside the first run); ``report --default NAME,auto`` pairs every row with
the first of those a data set has, and auto's other rows are shown but not judged against.

Usage::

    nice -n 10 python benchmarks/bench_unseen.py run --data half-100k,shape-small --seeds 0,1,2
    python benchmarks/bench_unseen.py run --rows auto,surprise-SVD++ --data late-1m
    python benchmarks/bench_unseen.py run --data half-100k --rows auto-new --auto-row auto-new
    python benchmarks/bench_unseen.py report --default auto-new,auto
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
JSONL = RESULTS / "unseen.jsonl"
SURPRISE_PY = ROOT / ".bench" / "surprise" / "bin" / "python"

sys.path.insert(0, str(HERE / "peers"))
from grid import t_interval, verdict  # noqa: E402 (stdlib and NumPy only)

DATASETS: dict[str, str] = {
    "half-100k": "ml-100k, half of the users (seeded) lower each rating by 0.5 with "
    "probability 1/2 (bench_halfstar.py); 0.5-5",
    "shape-small": "ml-latest-small's shape from ml-1m (610 users, 100,836 ratings, movies "
    "split into copies to about 9,724 items), half stars as above (bench_halfstar.py); 0.5-5",
    "late-1m": "ml-1m's ratings on or after 2001-01-01 (95,452 ratings, 1,177 users, "
    "3,405 items); 1-5",
    "sparse-1m": "100,000 ml-1m ratings drawn at random (seed 0; 5,961 users, median 10 "
    "ratings each, 3,326 items); 1-5",
}
DEFAULT = "auto"
ALS: dict[str, dict[str, Any]] = {
    "als-mf": {"model": "mf", "trainer": "als"},
    "als-r1": {"model": "mf", "trainer": "als", "n_factors": 32, "reg": 0.4,
               "reg_exponent": 0.75, "epochs": 15},
}  # fmt: skip
SURPRISE = ("SVD", "SVD++", "BaselineOnly", "KNNBaseline")
LATE_FROM = 978_307_200
"""2001-01-01 00:00 UTC: ``late-1m`` keeps ml-1m's ratings from then on."""
SPARSE_N = 100_000


# ----------------------------------------------------------------------------- data
def build(name: str, data_dir: Path) -> Any:
    """The interactions of data set ``name`` (:data:`DATASETS`), built in memory."""
    sys.path.insert(0, str(HERE))
    import bench_halfstar as hs  # pandas and recfit: the project venv only

    if name == "half-100k":
        return hs.interactions(hs.half_stars(hs.read_ml100k(data_dir)), name)
    ml1m = hs.read_ml1m(data_dir)
    if name == "shape-small":
        return hs.interactions(hs.half_stars(hs.small_shape(ml1m)), name)
    if name == "late-1m":
        return hs.interactions(ml1m[ml1m.ts >= LATE_FROM].reset_index(drop=True), name)
    if name == "sparse-1m":
        rows = np.sort(np.random.default_rng(0).choice(len(ml1m), SPARSE_N, replace=False))
        return hs.interactions(ml1m.iloc[rows].reset_index(drop=True), name)
    raise SystemExit(f"expected a data set among {', '.join(DATASETS)}, received {name!r}")


def recfit_rows(has_time: bool, auto_row: str = DEFAULT) -> dict[str, dict[str, Any]]:
    """Row name -> ``RatingConfig`` fields for recfit's rows (the default first, named
    ``auto_row``)."""
    from recfit.models.registry import families

    rows: dict[str, dict[str, Any]] = {auto_row: {}}
    for f in families("rating"):
        if f.name != "blend" and (has_time or f.name != "timesvdpp"):
            rows[f"family-{f.name}"] = {"model": f.name}
    return {**rows, **ALS}


# ----------------------------------------------------------------------------- records
def key(r: dict[str, Any]) -> tuple[str, int, str]:
    """``(data, seed, row)`` of a record."""
    return (str(r["data"]), int(r["seed"]), str(r["row"]))


def load_records(path: Path = JSONL) -> list[dict[str, Any]]:
    """Every record of ``path`` (the last one wins for a repeated key; lines that are not
    whole JSON objects, e.g. one cut by a kill, are skipped)."""
    out: dict[tuple[str, int, str], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(r, dict) and {"data", "seed", "row"} <= r.keys():
                out[key(r)] = r
    return list(out.values())


def todo(
    wanted: Iterable[tuple[str, int, str]], records: list[dict[str, Any]], retry_errors: bool
) -> list[tuple[str, int, str]]:
    """The keys of ``wanted`` not finished in ``records`` (a failed one counts as finished
    unless ``retry_errors``), in order."""
    done = {key(r) for r in records if not (retry_errors and r.get("error"))}
    return [k for k in wanted if k not in done]


def append(rec: dict[str, Any], path: Path = JSONL) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def pred_checks(pred: np.ndarray, y: np.ndarray, scale: tuple[float, float]) -> dict[str, Any]:
    """RMSE recomputed from the predictions and with them clipped to the rating scale,
    their range, and how many fall outside the scale (by more than 1e-6) or are not finite.

    Example:
        >>> c = pred_checks(np.array([0.4, 3.0, 5.2]), np.array([1.0, 3.0, 5.0]), (0.5, 5.0))
        >>> c["n_outside"], c["pred_min"], c["pred_max"], round(c["rmse_check"], 4)
        (2, 0.4, 5.2, 0.3651)
        >>> round(c["rmse_clipped"], 4)
        0.2887
    """
    pred = np.asarray(pred, dtype=np.float64)
    finite = np.isfinite(pred)
    outside = finite & ((pred < scale[0] - 1e-6) | (pred > scale[1] + 1e-6))
    return {
        "rmse_check": float(np.sqrt(np.mean((pred - y) ** 2))),
        "rmse_clipped": float(np.sqrt(np.mean((np.clip(pred, *scale) - y) ** 2))),
        "pred_min": float(np.nanmin(pred)),
        "pred_max": float(np.nanmax(pred)),
        "n_outside": int(outside.sum()),
        "n_nonfinite": int((~finite).sum()),
    }


def base_record(name: str, seed: int, row: str) -> dict[str, Any]:
    return {"data": name, "seed": seed, "row": row, "load_start": round(os.getloadavg()[0], 2),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": HEAD}  # fmt: skip


def _head() -> str:
    """The checkout's commit when this process started (the tree may hold others' edits)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                             capture_output=True, timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


HEAD = _head()


# ----------------------------------------------------------------------------- running
def run_recfit(data: Any, name: str, seed: int, row: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One recfit row on one split: ``train_run`` with ``RatingConfig(seed=seed, **fields)``
    on ``data`` (its default split, random 80/20), checked against :func:`split_of`."""
    import torch

    from recfit.config import RatingConfig
    from recfit.runs import train_run

    rec = base_record(name, seed, row)
    rec.update(library="recfit", fields=fields, threads=torch.get_num_threads())
    t0 = time.perf_counter()
    try:
        res = train_run(RatingConfig(seed=seed, **fields), data=data, progress=False)
    except Exception as exc:  # a family failing on this data is a finding: recorded
        rec.update(error=f"{type(exc).__name__}: {exc}"[:500], wall=time.perf_counter() - t0)
        rec["load_end"] = round(os.getloadavg()[0], 2)
        return rec
    wall = time.perf_counter() - t0
    train_idx, test_idx = split_of(data, seed)
    if not (np.array_equal(res.split.train_idx, train_idx)
            and np.array_equal(res.split.test_idx, test_idx)):  # fmt: skip
        raise SystemExit(f"{name} seed {seed}: recfit's split is not random_split's")
    test = res.split.test
    m = res.metrics
    rec.update(
        rmse=float(m["rmse"]), mse=float(m["mse"]), mae=float(m["mae"]), wall=wall,
        fit_seconds=float(m["fit_seconds"]),
        compile_seconds=float(res.details.get("compile_seconds", 0.0)),
        n_fallback=int(m.get("n_fallback", 0)), resolved_model=res.config.model,
        load_end=round(os.getloadavg()[0], 2),
        **pred_checks(res.learner.predict(test), test.rating, data.rating_scale),
    )  # fmt: skip
    found = res.details.get("model_auto")
    if found:
        rec["auto"] = {k: found.get(k) for k in ("chosen", "by", "budget_seconds",
                                                 "search_seconds", "chosen_inner_rmse",
                                                 "inner_scores", "tuning_skipped",
                                                 "candidates")}  # fmt: skip
        rec["auto"]["blend"] = res.details.get("blend")
    return rec


def split_of(data: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)`` of the random 80/20 split with ``seed``."""
    from recfit.data.split import random_split

    s = random_split(data, 0.2, seed=seed)
    return s.train_idx, s.test_idx


def run_surprise(
    data: Any, name: str, seed: int, rows: list[str], timeout: float, path: Path = JSONL
) -> None:
    """Surprise's ``rows`` on one split, in its venv; each finished row appended at once."""
    train_idx, test_idx = split_of(data, seed)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "data.npz"
        np.savez(npz, user=data.user.astype(np.int64), item=data.item.astype(np.int64),
                 rating=data.rating.astype(np.float64), train=train_idx, test=test_idx)  # fmt: skip
        lo, hi = data.rating_scale
        cmd = [str(SURPRISE_PY), str(Path(__file__).resolve()), "surprise-worker", str(npz),
               ",".join(r.removeprefix("surprise-") for r in rows), str(seed), str(lo), str(hi)]  # fmt: skip
        left = list(rows)
        t0 = time.perf_counter()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                rec = {**base_record(name, seed, ""), **json.loads(line)}
                rec["data"], rec["library"] = name, "surprise"
                append(rec, path)
                left.remove(rec["row"])
                show(rec)
                if time.perf_counter() - t0 > timeout:
                    proc.kill()
            rc = proc.wait()
        for row in left:
            print(f"   {row}: not finished (worker exit {rc})", flush=True)


def surprise_worker(argv: list[str]) -> int:
    """In Surprise's venv: fit and score each algorithm on the npz's split, one JSON line
    each (peer_surprise.py's table and trainset builder)."""
    import surprise
    from peer_surprise import MODELS, _trainset

    npz, names, seed, lo, hi = argv[0], argv[1].split(","), int(argv[2]), *map(float, argv[3:5])
    z = np.load(npz)
    d = {k: z[k] for k in ("user", "item", "rating")}
    y = d["rating"][z["test"]]
    reader = surprise.Reader(rating_scale=(lo, hi))
    for name in names:
        load0 = os.getloadavg()[0]
        np.random.seed(seed)  # noqa: NPY002 (as peer_surprise.py)
        algo = MODELS[name](seed)
        t0 = time.perf_counter()
        algo.fit(_trainset(d, z["train"], reader))
        fit = time.perf_counter() - t0
        preds = [algo.predict(u, i) for u, i in zip(d["user"][z["test"]].tolist(),
                                                      d["item"][z["test"]].tolist(), strict=True)]  # fmt: skip
        pred = np.array([p.est for p in preds])
        rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
        rec = {"seed": seed, "row": f"surprise-{name}", "rmse": rmse, "mse": rmse**2,
               "mae": float(np.mean(np.abs(pred - y))), "fit_seconds": fit,
               "wall": time.perf_counter() - t0, "load_start": round(load0, 2),
               "load_end": round(os.getloadavg()[0], 2), "version": surprise.__version__,
               "n_fallback": int(sum(bool(p.details.get("was_impossible")) for p in preds)),
               **pred_checks(pred, y, (lo, hi))}  # fmt: skip
        print(json.dumps(rec), flush=True)
    return 0


def show(r: dict[str, Any]) -> None:
    if r.get("error"):
        print(f"   {r['data']} s{r['seed']} {r['row']}: ERROR {r['error']}", flush=True)
        return
    extra = ""
    if r.get("auto"):
        a = r["auto"]
        extra = f"  budget {a['budget_seconds']:g} s chose {a['chosen']}"
    print(f"   {r['data']} s{r['seed']} {r['row']:22s} rmse {r['rmse']:.4f}  wall "
          f"{r['wall']:6.1f} s  load {r['load_start']} -> {r['load_end']}  pred "
          f"[{r['pred_min']:.2f}, {r['pred_max']:.2f}] out {r['n_outside']} fallback "
          f"{r['n_fallback']}{extra}", flush=True)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    names = [n for n in args.data.split(",") if n]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    only = {r for r in args.rows.split(",") if r} if args.rows else None
    path = Path(args.jsonl)
    for seed in seeds:
        for name in names:
            if time.time() > args.stop_at:
                print("stop time reached: no new runs", flush=True)
                return 0
            data = build(name, Path(args.data_dir))
            rows = {**recfit_rows(data.time_offset is not None, args.auto_row),
                    **{f"surprise-{s}": {} for s in SURPRISE}}  # fmt: skip
            wanted = [(name, seed, r) for r in rows if only is None or r in only]
            left = [k[2] for k in todo(wanted, load_records(path), args.retry_errors)]
            print(f"-- {name} seed {seed}: {len(data):,} ratings, {data.n_users:,} users, "
                  f"{data.n_items:,} items; to run: {left}", flush=True)  # fmt: skip
            for row in [r for r in left if not r.startswith("surprise-")]:
                if time.time() > args.stop_at:
                    print("stop time reached: no new runs", flush=True)
                    return 0
                rec = run_recfit(data, name, seed, row, rows[row])
                append(rec, path)
                show(rec)
            sur = [r for r in left if r.startswith("surprise-")]
            if sur and time.time() <= args.stop_at:
                run_surprise(data, name, seed, sur, args.timeout, path)
    return 0


# ----------------------------------------------------------------------------- report
def summarise(records: list[dict[str, Any]], default_rows: str = DEFAULT) -> dict[str, Any]:
    """Per data set and row: the seeds, the mean RMSE and its 95 % t-interval, the paired
    difference default - row over the seeds both ran, wall and load; failed rows apart.

    Example:
        >>> recs = [{"data": "d", "seed": s, "row": r, "rmse": v, "wall": 1.0,
        ...          "load_start": 1.0, "load_end": 2.0}
        ...         for s, (a, b) in enumerate([(0.80, 0.82), (0.81, 0.84), (0.79, 0.83)])
        ...         for r, v in (("auto", a), ("x", b))]
        >>> s = summarise(recs)["d"]["rows"]["x"]
        >>> s["seeds"], round(s["mean"], 4), [round(v, 4) for v in s["paired"]]
        ([0, 1, 2], 0.83, [-0.03, -0.0548, -0.0052])
    """
    out: dict[str, Any] = {}
    for r in sorted(records, key=key):
        d = out.setdefault(r["data"], {"rows": {}, "errors": []})
        if r.get("error"):
            d["errors"].append({k: r.get(k) for k in ("seed", "row", "error")})
            continue
        d["rows"].setdefault(r["row"], {"by_seed": {}, "records": []})
        d["rows"][r["row"]]["by_seed"][int(r["seed"])] = float(r["rmse"])
        d["rows"][r["row"]]["records"].append(r)
    for d in out.values():
        present = [n for n in default_rows.split(",") if n in d["rows"]]
        d["default"] = present[0] if present else DEFAULT
        default = d["rows"].get(d["default"], {}).get("by_seed", {})
        for row in d["rows"].values():
            by = row.pop("by_seed")
            recs = row.pop("records")
            row["seeds"] = sorted(by)
            row["rmse"] = [by[s] for s in row["seeds"]]
            row["mean"], row["low"], row["high"] = t_interval(row["rmse"])
            shared = sorted(set(by) & set(default))
            diffs = [default[s] - by[s] for s in shared]
            row["paired_seeds"] = shared
            row["paired"] = list(t_interval(diffs)) if diffs else None
            row["wall_mean"] = float(np.mean([x["wall"] for x in recs]))
            loads = [x[k] for x in recs for k in ("load_start", "load_end")]
            row["load"] = [min(loads), max(loads)]
            for k in ("n_outside", "n_nonfinite", "n_fallback"):
                row[k] = max(int(x.get(k, 0)) for x in recs)
            row["pred_range"] = [min(x.get("pred_min", math.nan) for x in recs),
                                 max(x.get("pred_max", math.nan) for x in recs)]  # fmt: skip
            if any(x.get("auto") for x in recs):
                row["auto"] = [{"row": x["row"], "seed": x["seed"], "rmse": x["rmse"],
                                "wall": x["wall"], "commit": x.get("commit", ""),
                                "load": [x["load_start"], x["load_end"]], **x["auto"]}
                               for x in recs if x.get("auto")]  # fmt: skip
    return out


def peers(rows: dict[str, Any]) -> dict[str, Any]:
    """The rows the default is judged against: all but auto's (the default on other code)."""
    return {n: r for n, r in rows.items() if not n.startswith(DEFAULT)}


def on_common_seeds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the seeds that every row of their data set finished (so that the
    rows' means are over the same splits); failed records are kept.

    Example:
        >>> recs = [{"data": "d", "seed": s, "row": r} for r, ss in (("a", (0, 1, 2)),
        ...         ("b", (0, 1))) for s in ss]
        >>> sorted({r["seed"] for r in on_common_seeds(recs)})
        [0, 1]
    """
    seeds: dict[str, dict[str, set[int]]] = {}
    for r in records:
        if not r.get("error"):
            seeds.setdefault(r["data"], {}).setdefault(r["row"], set()).add(int(r["seed"]))
    common = {d: set.intersection(*rows.values()) for d, rows in seeds.items()}
    return [r for r in records if r.get("error") or int(r["seed"]) in common[r["data"]]]


def best_other(rows: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    others = list(peers(rows).items())
    return min(others, key=lambda nr: nr[1]["mean"]) if others else None


def fmt_ci(m: float, lo: float, hi: float) -> str:
    return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"


def markdown(summary: dict[str, Any], more: dict[str, Any] | None = None) -> str:
    """The report; ``summary`` on the seeds every row ran, ``more`` (optional) on all seeds:
    rows with more seeds than the table's are listed again after it."""
    lines = [
        "# The default on data it was not tuned on (`bench_unseen.py`)",
        "",
        "Test RMSE, random 80/20 splits, split seeds as listed; mean with a 95 % Student-t "
        "interval over the seeds; *default − row*: the paired difference over the seeds both "
        "ran, with its t-interval (below zero: the default is better). Wall: seconds of the "
        "whole run (auto: search + final fits; its budget is wall-clock, so it depends on the "
        "load shown). Pred: the range of the test predictions; out: predictions outside the "
        "rating scale; fb: test rows answered by a fallback (cold user or item).",
        "",
    ]
    for name, d in summary.items():
        rows, dr = d["rows"], d["default"]
        lines += [f"## {name}", "", DATASETS.get(name, ""), ""]
        autos = [a for r in rows.values() for a in r.get("auto", [])]
        for a in autos:
            blend = a.get("blend") or {}
            members = ", ".join(blend.get("members", [])) if isinstance(blend, dict) else ""
            lines.append(
                f"- {a['row']} seed {a['seed']}: RMSE {a['rmse']:.4f}, budget "
                f"{a['budget_seconds']:g} s (resolved by size), search "
                f"{a['search_seconds']:.0f} s, wall {a['wall']:.0f} s, load "
                f"{a['load'][0]} → {a['load'][1]}, chose {a['chosen']}"
                + (f" ({members})" if members else "")
                + (f", commit {a['commit']}" if a.get("commit") else "")
            )
        if autos:
            lines.append("")
        lines += [
            "| row | seeds | RMSE mean [95 % CI] | default − row [95 % CI] | wall s | load | pred | out | fb |",
            "|---|---|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for rname, r in sorted(rows.items(), key=lambda nr: nr[1]["mean"]):
            p = r["paired"]
            pcell = "—" if rname == dr or p is None else (
                f"{p[0]:+.4f} [{p[1]:+.4f}, {p[2]:+.4f}]"
            )  # fmt: skip
            label = f"**{rname}**" if rname == dr else rname
            lines.append(
                f"| {label} | {','.join(map(str, r['seeds']))} | "
                f"{fmt_ci(r['mean'], r['low'], r['high'])} | {pcell} | {r['wall_mean']:.1f} | "
                f"{r['load'][0]:.1f}–{r['load'][1]:.1f} | {r['pred_range'][0]:.2f}–"
                f"{r['pred_range'][1]:.2f} | {r['n_outside']} | {r['n_fallback']} |"
            )
        if dr in rows and peers(rows):
            bo = best_other(rows)
            assert bo is not None
            others = [(r["mean"], r["low"], r["high"]) for r in peers(rows).values()]
            dflt = rows[dr]
            v = verdict((dflt["mean"], dflt["low"], dflt["high"]), others)
            two = [r for r in peers(rows).values() if len(r["paired_seeds"]) >= 2]
            ahead = sum(1 for r in two if r["paired"][2] < 0)
            behind = sum(1 for r in two if r["paired"][1] > 0)
            lines += ["", f"Default: {v}; best other row {bo[0]} {bo[1]['mean']:.4f} "
                      f"(default − best {dflt['mean'] - bo[1]['mean']:+.4f}); paired interval "
                      f"below zero (default better) against {ahead} and above zero against "
                      f"{behind} of the {len(two)} other rows with two seeds or more in "
                      "common (auto's other rows, the default on other code, left out)."]  # fmt: skip
        extra = {n: r for n, r in (more or {}).get(name, {}).get("rows", {}).items()
                 if n in rows and r["seeds"] != rows[n]["seeds"]}  # fmt: skip
        if extra:
            lines += ["", "More seeds (each row on all the seeds it ran; paired with the "
                      "default over the seeds both ran):", ""]  # fmt: skip
            for n, r in extra.items():
                p = r["paired"]
                lines.append(
                    f"- {n}: seeds {','.join(map(str, r['seeds']))}, "
                    f"{fmt_ci(r['mean'], r['low'], r['high'])}"
                    + ("" if n == dr or p is None else
                       f"; default − row {p[0]:+.4f} [{p[1]:+.4f}, {p[2]:+.4f}] over seeds "
                       f"{','.join(map(str, r['paired_seeds']))}")
                )  # fmt: skip
        for e in d["errors"]:
            lines.append(f"- FAILED: {e['row']} seed {e['seed']}: {e['error']}")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in summary if summary[n]["rows"]]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rows = sorted(summary[name]["rows"].items(), key=lambda nr: -nr[1]["mean"])
        default_row = summary[name]["default"]
        y = np.arange(len(rows))
        means = np.array([r["mean"] for _, r in rows])
        err = np.array([[r["mean"] - r["low"] for _, r in rows],
                        [r["high"] - r["mean"] for _, r in rows]])  # fmt: skip
        colors = [
            "tab:red" if n == default_row else "tab:orange" if n.startswith("auto")
            else "tab:gray" if n.startswith("surprise") else "tab:blue"
            for n, _ in rows
        ]  # fmt: skip
        for k, c in enumerate(colors):
            ax.errorbar(means[k], y[k], xerr=err[:, k : k + 1], fmt="o", color=c, capsize=3)
        if default_row in summary[name]["rows"]:
            ax.axvline(summary[name]["rows"][default_row]["mean"], color="tab:red", ls=":", lw=1)
        ax.set_yticks(y, [n for n, _ in rows], fontsize=8)
        ax.set_title(name)
        ax.set_xlabel("test RMSE (95 % t-interval over seeds)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args: argparse.Namespace) -> int:
    records = load_records(Path(args.jsonl))
    summary = summarise(on_common_seeds(records), args.default)
    every = summarise(records, args.default)
    doc = {"datasets": DATASETS, "default": args.default, "summary": summary,
           "summary_all_seeds": every, "records": str(Path(args.jsonl).name)}  # fmt: skip
    out = Path(args.out)
    (out.with_suffix(".json")).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    (out.with_suffix(".md")).write_text(markdown(summary, every))
    if summary:
        plot(summary, out.with_suffix(".png"))
    print(markdown(summary, every))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["surprise-worker"]:
        return surprise_worker(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", default="half-100k,shape-small")
    r.add_argument("--seeds", default="0,1,2")
    r.add_argument("--rows", default="", help="comma-separated rows (default: all)")
    r.add_argument("--data-dir", default=os.environ.get("RECFIT_DATA_DIR", "/work/shared/datasets"))
    r.add_argument("--timeout", type=float, default=3600.0, help="Surprise worker, seconds")
    r.add_argument("--stop-at", type=float, default=math.inf,
                   help="a Unix time after which no new run starts")  # fmt: skip
    r.add_argument("--retry-errors", action="store_true")
    r.add_argument("--auto-row", default=DEFAULT,
                   help="the name of auto's row (e.g. auto@COMMIT: a rerun on newer code)")  # fmt: skip
    rep = sub.add_parser("report")
    rep.add_argument("--default", default=DEFAULT,
                     help="the row the others are paired with (a comma list: the first a data "
                          "set has)")  # fmt: skip
    rep.add_argument("--out", default=str(RESULTS / "unseen"), help="report files' stem")
    for q in (r, rep):
        q.add_argument("--jsonl", default=str(JSONL), help="the records file")
    args = p.parse_args(argv)
    return run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
