"""``model="auto"`` with a time budget on protocols R4, R2 and R1, beside the default.

For each protocol and split seed, the same run prints (through
:func:`recfit.runs.train_run`, exactly what ``recfit train --budget B`` does):

* ``default``: ``recfit train`` with no flag (``budget`` 0: svdpp on ml-100k, dot on
  ml-1m), its test RMSE (MSE) and fit seconds;
* ``auto``: ``recfit train --budget B``: test RMSE (MSE), what auto chose, its inner
  RMSE, the search's seconds, the final fit's seconds, the wall seconds of the whole run
  (search + final fit; data loading excluded) and the load average at its start and end;
  then every candidate auto tried with its inner RMSE and seconds;
* the medians over the seeds, and the published figures of the protocol
  (``docs/protocols.md``).

Test rows are evaluated once, after the choice; auto chooses on an inner cut of the
training part only.

Usage::

    python benchmarks/bench_auto.py [--part r4|r2|r1|all] [--seeds 0] [--budget 600]
                                    [--data-dir DIR] [--no-default] [--json OUT] [--hog N]

``--hog N`` runs each auto run beside N pure-Python spinning processes in a session of
their own (another user's work: ``bench_contention.py``'s hog), to check that the
wall-clock budget holds under load: the printout gives the seconds left at the final fits'
deadline and the members whose final fit was cut.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from _args import add_data_dir
from bench_contention import start_hog, stop_hog  # the same hog as the contention benchmark
from recfit.config import RatingConfig
from recfit.data.sources import load_dataset
from recfit.runs import train_run

PROTOCOLS: dict[str, tuple[str, str, str]] = {
    "r4": ("ml-1m", "random:0.1", "R4 ml-1m random 90/10"),
    "r2": ("ml-100k", "u1", "R2 ml-100k u1"),
    "r1": ("ml-100k", "random:0.2", "R1 ml-100k random 80/20"),
}
PUBLISHED: dict[str, str] = {
    "r4": "GLocal-K 0.8227, Sparse FC 0.824, CF-NADE 0.829, I-AutoRec 0.831, BiasedMF 0.845 "
    "(target <= 0.822 in 10 min)",
    "r2": "GLocal-K 0.8889, GC-MC 0.910 (target <= 0.889)",
    "r1": "fastai collab MSE ~0.81 (target MSE <= 0.78)",
}


def _one(cfg: RatingConfig, data: Any, hog: int = 0) -> dict[str, Any]:
    procs = start_hog(hog, new_session=True) if hog else []
    try:
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = train_run(cfg, data=data, progress=False)
        wall = time.perf_counter() - t0
    finally:
        stop_hog(procs)
    auto = res.details.get("model_auto", {})
    return {
        "rmse": res.metrics["rmse"],
        "mse": res.metrics["mse"],
        "fit_seconds": res.metrics["fit_seconds"],
        "wall_seconds": wall,
        "load": (load0, os.getloadavg()[0]),
        "hog": hog,
        "model": res.config.model,
        "auto": auto,
        "blend": res.details.get("blend"),
    }


def bench(
    part: str, seeds: list[int], budget: float, data_dir: str, default: bool, hog: int = 0
) -> list[Any]:
    dataset, split, label = PROTOCOLS[part]
    data = load_dataset(dataset, data_dir=data_dir)
    rows: list[Any] = []
    for seed in seeds:
        base = {"dataset": dataset, "data_dir": data_dir, "split": split, "seed": seed}
        row: dict[str, Any] = {"protocol": part, "seed": seed, "budget": budget}
        if default:
            d = _one(RatingConfig(**base, budget=0), data)  # the size rule, no search
            row["default"] = d
            print(
                f"{label} seed {seed} default ({d['model']}): RMSE {d['rmse']:.4f} "
                f"(MSE {d['mse']:.4f}) fit {d['fit_seconds']:.1f} s, load {d['load'][0]:.2f}",
                flush=True,
            )
        a = _one(RatingConfig(**base, budget=budget), data, hog)
        row["auto"] = a
        info = a["auto"]
        print(
            f"{label} seed {seed} auto (budget {budget:g} s): RMSE {a['rmse']:.4f} "
            f"(MSE {a['mse']:.4f}); chose {info.get('chosen')} (inner RMSE "
            f"{info.get('chosen_inner_rmse') or float('nan'):.4f}); search "
            f"{info.get('search_seconds', 0):.0f} s + final fit {a['fit_seconds']:.0f} s = "
            f"wall {a['wall_seconds']:.0f} s; load {a['load'][0]:.2f} -> {a['load'][1]:.2f}"
            + (f"; under a hog of {hog} spinning processes" if hog else ""),
            flush=True,
        )
        final = info.get("final_fits") or {}
        if final:
            print(
                f"    compile {info.get('compile_seconds', 0):.1f} s apart; final fits: "
                f"{final.get('seconds_left_at_the_deadline', float('nan')):.1f} s left at the "
                f"deadline; cut, kept the inner-cut model: "
                f"{final.get('cut_kept_the_inner_cut_model') or 'none'}",
                flush=True,
            )
        for c in info.get("candidates", []):
            score = f"{c['rmse']:.4f}" if "rmse" in c else c["state"]
            note = f" ({c['note']})" if c.get("note") else ""
            if c.get("seeds", 1) > 1:  # seeds averaged: the inner RMSE after each
                note += (
                    f" [{c['seeds']} seeds: " + " > ".join(f"{x:.4f}" for x in c["bag_rmse"]) + "]"
                )
            print(f"    {c['label']:<18} {score:>8}  {c['seconds']:7.1f} s{note}"[:200])
        if a["blend"]:
            b = a["blend"]
            ws = ", ".join(f"{m} {w:.3f}" for m, w in zip(b["members"], b["weights"], strict=True))
            print(f"    blend: {ws}; intercept {b['intercept']:.3f}")
            for m, s in zip(b["members"], b.get("member_settings", []), strict=False):
                shown = {k: s[k] for k in ("samples", "burn_in", "epochs", "n_factors") if k in s}
                print(f"      {m}: {shown}")
            plan = info.get("blend", {})
            print(
                f"    trained again on the whole training part: "
                f"{plan.get('trained_again_on_the_whole_training_part')}; kept from the "
                f"inner cut: {plan.get('kept_from_the_inner_cut')}",
                flush=True,
            )
        rows.append(row)
    rm = [r["auto"]["rmse"] for r in rows]
    print(
        f"{label}: auto median RMSE {statistics.median(rm):.4f} (MSE "
        f"{statistics.median(rm) ** 2:.4f}) over seeds {seeds}; median wall "
        f"{statistics.median(r['auto']['wall_seconds'] for r in rows):.0f} s; published: "
        f"{PUBLISHED[part]}",
        flush=True,
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_data_dir(ap)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--part", default="all", choices=["r4", "r2", "r1", "all"])
    ap.add_argument("--no-default", action="store_true", help="skip the default run")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    ap.add_argument(
        "--hog", type=int, default=0,
        help="run auto under this many pure-Python spinning processes (another session's "
        "work; bench_contention.py's hog): the wall-clock budget under load",
    )  # fmt: skip
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = ["r4", "r2", "r1"] if args.part == "all" else [args.part]
    out = []
    for part in parts:
        out += bench(part, seeds, args.budget, args.data_dir, not args.no_default, args.hog)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
