"""Protocol T2 (ml-1m, ratings >= 4 as positives, random 80/20 of those positives).

1. Recall@20, NDCG@20 and HitRate@20 with each user's training items excluded, with 95%
   per-user bootstrap intervals (1,000 resamples), for the two-tower model (in-batch
   softmax with log-Q correction, the ml-1m user and movie features) and the popularity
   baseline. Target: the two-tower model beats popularity with non-overlapping intervals.
2. Speed of a full-catalogue evaluation of ml-1m (6,040 users x 3,706 items: tower
   vectors, exact top-100 with exclusions, ranking report with bootstrap). Target < 5 s,
   median of 5 runs.
3. The top-N families the registry has (task ``topn``: popularity, itemknn, ease, ials,
   bpr, and ``model="auto"``), each through ``recfit.runs.train_run`` with a
   ``TopNConfig`` on the same positives and split: Recall@20, NDCG@20, HitRate@20 with
   95 % per-user intervals (``tasks.topn_eval.evaluate_topn``), fit seconds; then the
   speed of ``evaluate_topn`` on the best of them (ks 10/20/50, 1,000 bootstraps),
   median of ``--eval-runs`` runs. Targets: best Recall@20 >= 0.30 and NDCG@20 >= 0.34,
   fit <= 3 s.

4. Speed of the two-tower training step (``--only step``): the T2 preset's step (towers,
   in-batch softmax with log-Q and accidental hits removed, backward, Adam) with recfit's
   fused softmax over the batch's distinct candidates against the reference (autograd
   through the dense masked ``B x B`` logit matrix, ``cross_entropy``), in the same run,
   medians of ``--step-runs`` blocks of 20 steps (wall and CPU time: on a shared machine
   the CPU time is the steadier figure), at 1 thread and at PyTorch's setting.
5. Speed of the whole T2 preset fit (``--only fit``): ``--fit-runs`` repetitions (default
   3), each a fresh process fitting the preset (its threads from the thread policy),
   then implicit's ALS (64 factors, 15 iterations) on the same split in its own venv
   (``.bench/implicit``, see benchmarks/peers/README.md; skipped when absent) as the
   reference of the same run. Printed per fit: wall and CPU seconds, the threads, the
   runnable count and load average at its start, Recall@20; then the medians and the
   ratio recfit / implicit. ``--against REV`` adds, in each repetition, the same fit by
   the code of commit REV (``git archive``), and the ratios old / new of wall and CPU
   time. Target: the preset fit <= 10 s at Recall@20 0.2658.

Reference (docs/protocols.md): implicit ALS (64 factors, 15 iterations) Recall@20 0.238,
NDCG@20 0.267 on one such split. The machine's load average is printed (it is shared).

Usage:
    python benchmarks/bench_t2.py [--data-dir DIR] [--seed 0] [--epochs N] [--eval-runs 5]
                                  [--only two-tower|topn|step|fit] [--families ease,ials]
                                  [--step-runs 3] [--fit-runs 3] [--against REV]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from recfit.data import movielens
from recfit.data.sources import make_split
from recfit.tasks.retrieval import (
    evaluate_popularity,
    evaluate_retrieval,
    filter_positives,
    t2_config,
    train_retrieval,
)
from recfit.tasks.retrieval.training import _build

KEYS = ("recall@20", "ndcg@20", "hit_rate@20")


def find_data_dir(arg: str | None) -> Path:
    for cand in (arg, os.environ.get("RECFIT_DATA_DIR"), "../shared/datasets"):
        if cand and (Path(cand) / "ml-1m" / "ratings.dat").exists():
            return Path(cand)
    raise SystemExit("ml-1m not found: pass --data-dir or set RECFIT_DATA_DIR")


def load() -> str:
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} CPUs"


def row(name: str, rep: dict[str, Any]) -> str:
    cells = []
    for k in KEYS:
        lo, hi = rep[f"{k}_ci"]
        cells.append(f"{k} {rep[k]:.4f} [{lo:.4f}, {hi:.4f}]")
    return f"  {name:<11} " + "  ".join(cells)


def topn(data_dir: Path, seed: int, wanted: list[str] | None, eval_runs: int) -> None:
    """Section 3: the registered top-N families through train_run, then evaluate_topn's speed."""
    from recfit.config import TopNConfig
    from recfit.models.registry import families
    from recfit.runs import train_run
    from recfit.tasks.topn_eval import evaluate_topn

    names = [f.name for f in families("topn")] + ["auto"]
    names = [n for n in names if wanted is None or n in wanted]
    print(f"\n3. Top-N families ({', '.join(names)}), training items excluded")
    best: tuple[float, Any] | None = None
    for name in names:
        cfg = TopNConfig(
            model=name, dataset="ml-1m", data_dir=str(data_dir), positive_min_rating=4.0,
            split="random:0.2", seed=seed, device="cpu",
        )  # fmt: skip
        res = train_run(cfg, progress=False)
        rep = {**res.details, **res.metrics}
        label = name if name != "auto" else f"auto={res.config.model}"
        print(row(label, rep) + f"  fit {res.metrics['fit_seconds']:.2f} s")
        if best is None or rep["recall@20"] > best[0]:
            best = (rep["recall@20"], res)
    if best is None:
        return
    res = best[1]
    times = []
    for _ in range(eval_runs):
        rep = evaluate_topn(res.learner.model, res.split.train, res.split.test, seed=seed)
        times.append(rep["eval_seconds"])
    med = statistics.median(times)
    print(
        f"  evaluate_topn ({res.config.model}; ks 10/20/50, 1,000 bootstraps, "
        f"{rep['n_queries']} users): median {med:.3f} s over {len(times)} runs"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override the T2 preset")
    ap.add_argument("--eval-runs", type=int, default=5)
    ap.add_argument("--only", choices=("two-tower", "topn", "step", "fit"), default=None)
    ap.add_argument("--step-runs", type=int, default=3)
    ap.add_argument("--fit-runs", type=int, default=3)
    ap.add_argument("--against", default=None, help="fit: also the code of this commit")
    ap.add_argument("--families", default=None, help="top-N families, comma-separated")
    args = ap.parse_args()
    data_dir = find_data_dir(args.data_dir)
    print(f"T2 on ml-1m (positives: rating >= 4), {load()}")
    if args.only in ("step", "fit"):
        (step_speed if args.only == "step" else fit_speed)(data_dir, args)
        print(f"\nafter: {load()}")
        return
    if args.only != "topn":
        two_tower(data_dir, args)
    if args.only != "two-tower":
        wanted = args.families.split(",") if args.families else None
        topn(data_dir, args.seed, wanted, args.eval_runs)
    print(f"\nafter: {load()}")


def two_tower(data_dir: Path, args: Any) -> None:
    """Sections 1 and 2: the two-tower model against popularity; evaluation speed."""
    data = movielens("ml-1m", data_dir=data_dir, download=False)
    cfg = t2_config(seed=args.seed)
    if args.epochs is not None:
        cfg = cfg.replace(epochs=args.epochs)
    res = train_retrieval(cfg, data, "random:0.2")
    split = res.split
    pop = evaluate_popularity(split.train, split.test, exclude_seen=True, ks=(20,), seed=args.seed)
    print(
        f"\n1. train {len(split.train):,} / test {len(split.test):,} positives, "
        f"{res.report['n_queries']} test users, exclude_seen={res.report['exclude_seen']}"
    )
    print(f"   two-tower: {cfg.epochs} epochs, batch {cfg.bs}, {cfg.opt} lr {cfg.lr}, "
          f"layers {cfg.layer_sizes}, fit {res.metrics['fit_seconds']:.1f} s")  # fmt: skip
    print(row("two-tower", res.report))
    print(row("popularity", pop))
    for k in KEYS:
        apart = res.report[f"{k}_ci"][0] > pop[f"{k}_ci"][1]
        print(f"  {k}: intervals {'do not overlap [PASS]' if apart else 'overlap [FAIL]'}")

    print("\n2. Full-catalogue evaluation, 6,040 x 3,706, top-100, exclusions, 1,000 bootstraps")
    times = []
    for _ in range(args.eval_runs):
        rep = evaluate_retrieval(
            res.model, split.test, train=split.train, exclude_seen=True, ks=(10, 20, 100)
        )
        times.append(rep["eval_seconds"])
    med = statistics.median(times)
    print(f"  median {med:.3f} s over {len(times)} runs [{'PASS' if med < 5 else 'FAIL'} < 5 s]")


def _reference_loss(loss: Any) -> Any:
    """The in-batch softmax through autograd over the dense masked logit matrix."""

    def ref(output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q, c = loss._vectors(batch)
        s = loss.logits(q, c, batch["item"], batch.get("weight"), None)
        return torch.nn.functional.cross_entropy(s, torch.arange(len(s)), reduction="none")

    return ref


def step_speed(data_dir: Path, args: Any) -> None:
    """Section 4: milliseconds per T2 training step, fused softmax against the reference."""
    data = movielens("ml-1m", data_dir=data_dir, download=False)
    cfg = t2_config(seed=args.seed, n_bootstrap=0)
    split = make_split(filter_positives(data, 4.0), "random:0.2", seed=args.seed)
    learner = _build(cfg, split.train, split.test, [], False)
    model, fused = learner.model, learner.loss_func
    start = {k: v.clone() for k, v in model.state_dict().items()}
    n_steps = cfg.epochs * -(-len(split.train) // cfg.bs)
    user = torch.as_tensor(split.train.user).long()
    item = torch.as_tensor(split.train.item).long()
    print(
        f"\n4. T2 training step (batch {cfg.bs}; {n_steps} steps in a {cfg.epochs}-epoch fit), {load()}"
    )
    for n_threads in (1, torch.get_num_threads()):
        torch.set_num_threads(n_threads)
        per: dict[str, float] = {}
        for name, loss in (("reference", _reference_loss(fused)), ("fused", fused)):
            model.load_state_dict(start)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            gen = torch.Generator().manual_seed(args.seed)
            times, cpu = [], []
            for r in range(args.step_runs + 1):  # the first block warms up
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(20):
                    idx = torch.randint(0, len(user), (cfg.bs,), generator=gen)
                    b = {"user": user[idx], "item": item[idx], "weight": torch.ones(cfg.bs)}
                    out = model(b)
                    value = loss(out, b).mean()
                    opt.zero_grad(set_to_none=True)
                    value.backward()
                    opt.step()
                if r:
                    times.append((time.perf_counter() - t0) / 20 * 1000)
                    cpu.append((time.process_time() - c0) / 20 * 1000)
            per[name] = statistics.median(times)
            print(f"  {n_threads} thread(s) {name:<9}: median {per[name]:.1f} ms/step "
                  f"(CPU {statistics.median(cpu):.1f} ms/step; ~{per[name] * n_steps / 1000:.0f} s "
                  f"per fit)  {load()}")  # fmt: skip
        print(f"  {n_threads} thread(s): reference / fused = {per['reference'] / per['fused']:.2f}")
    torch.set_num_threads(max(1, os.cpu_count() or 1))


FIT_CHILD = r"""
import json, os, sys, time
from recfit._cpu import running_now
before = {"running": running_now(), "load": os.getloadavg()[0]}
import torch
from recfit.data import movielens
from recfit.tasks.retrieval import t2_config, train_retrieval
from recfit.train import Callback
seen, cpu = set(), []

class Spy(Callback):
    def before_fit(self):
        cpu.append(time.process_time())

    def after_batch(self):
        seen.add(torch.get_num_threads())

    def after_fit(self):
        cpu.append(time.process_time())

data = movielens("ml-1m", data_dir=sys.argv[1], download=False)
cfg = t2_config(seed=int(sys.argv[2]), n_bootstrap=0)
if int(sys.argv[3]):
    cfg = cfg.replace(epochs=int(sys.argv[3]))
res = train_retrieval(cfg, data, "random:0.2", callbacks=[Spy()])
print(json.dumps({"fit": res.metrics["fit_seconds"], "cpu": cpu[-1] - cpu[0], "threads": sorted(seen),
                  "recall": res.metrics["recall@20"], **before}))
"""

IMPLICIT = Path(__file__).resolve().parent.parent / ".bench" / "implicit" / "bin" / "python"


def _implicit_als(data_dir: Path) -> dict[str, Any] | None:
    """implicit's ALS on T2's shared split, in its own venv (None when not installed)."""
    if not IMPLICIT.exists():
        return None
    peer = Path(__file__).resolve().parent / "peers" / "peer_implicit.py"
    out = subprocess.run(
        [str(IMPLICIT), str(peer), "T2", "--quick", "--models", "ALS"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "RECFIT_DATA_DIR": str(data_dir)},
    )  # fmt: skip
    rec: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return rec


def _fit_child(data_dir: Path, args: Any, src: Path | None) -> dict[str, Any]:
    """One T2 preset fit in a fresh process (``src``: the package tree to import)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    out = subprocess.run(
        [sys.executable, "-c", FIT_CHILD, str(data_dir), str(args.seed), str(args.epochs or 0)],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    rec: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return rec


def _tree_at(rev: str, into: Path) -> Path:
    """The ``src`` folder of the commit ``rev``, unpacked under ``into``."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def fit_speed(data_dir: Path, args: Any) -> None:
    """Section 5: whole T2 preset fits (fresh processes) against implicit's ALS and, with
    ``--against REV``, the same fit by the code of commit REV, interleaved."""
    print(f"\n5. T2 preset fit, {args.fit_runs} runs, each against implicit ALS"
          f"{f' and commit {args.against}' if args.against else ''}, {load()}")  # fmt: skip
    fits: list[float] = []
    cpus: list[float] = []
    peers: list[float] = []
    olds: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        old_src = _tree_at(args.against, Path(tmp)) if args.against else None
        for r in range(args.fit_runs):
            runs = [("recfit T2 preset", None)]
            if old_src is not None:
                runs.append((f"at {args.against}", old_src))
            for label, src in runs:
                rec = _fit_child(data_dir, args, src)
                if src is None:
                    fits.append(rec["fit"])
                    cpus.append(rec["cpu"])
                else:
                    olds.append((rec["fit"], rec["cpu"]))
                print(f"  run {r} {label}: fit {rec['fit']:.2f} s (CPU {rec['cpu']:.2f} s), "
                      f"threads {rec['threads']}, other runnable {rec['running']}, "
                      f"load {rec['load']:.2f}, recall@20 {rec['recall']:.4f}", flush=True)  # fmt: skip
            peer = _implicit_als(data_dir)
            if peer is not None:
                peers.append(peer["fit_seconds"])
                print(f"  run {r} implicit ALS: fit {peer['fit_seconds']:.2f} s, recall@20 "
                      f"{peer['metrics']['recall@20']:.4f}, {load()}", flush=True)  # fmt: skip
    med = statistics.median(fits)
    print(f"  recfit T2 preset fit: median {med:.2f} s over {len(fits)} "
          f"[{'PASS' if med <= 10 else 'FAIL'} <= 10 s]")  # fmt: skip
    if olds:
        wall = statistics.median(o[0] / f for o, f in zip(olds, fits, strict=True))
        cpu = statistics.median(o[1] / c for o, c in zip(olds, cpus, strict=True))
        print(f"  at {args.against}: median {statistics.median(o[0] for o in olds):.2f} s; "
              f"old / new: median ratio {wall:.2f} (wall), {cpu:.2f} (CPU)")  # fmt: skip
    if peers:
        pm = statistics.median(peers)
        ratio = statistics.median(a / b for a, b in zip(fits, peers, strict=True))
        print(f"  implicit ALS fit: median {pm:.2f} s; recfit / implicit: median ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
