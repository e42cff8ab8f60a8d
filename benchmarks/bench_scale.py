"""Training speed at scale: synthetic ml-25m shape, DotBias with 64 factors.

Generates the ml-25m shape (25,000,095 ratings, 162,541 users, 59,047 items;
``recfit.data.synthetic(..., seed=0)``), trains one Learner on all of it with what
``recfit train`` would pick (bs from :func:`recfit.train.sparse.auto_batch_size`, the
row-wise AdamW of :mod:`recfit.train.sparse`) and prints, for each of ``--runs`` epochs,
the epoch's seconds (batch permutation included), ratings/s, ratings/s per thread, and
at the end the medians, the peak RSS of the process and the load average. The
memory-bound reference (docs/protocols.md) for an SGD step with 64 float32 factors
is 10-20 M ratings/s per core; an Adam step moves three times the bytes per touched row
(parameter, first and second moment).

``--reference`` (on by default) also times, after each epoch and on the same threads, a
plain SGD loop over the same ratings and tables (dot product, then both rows updated in
place, no bias, penalty or optimiser state, rows prefetched as the kernel does; threads
split the ratings and may race): the cost of touching each rating's two rows once, in a shuffled order, which
the row-wise step cannot beat. Its ratings/s and the step's fraction of it are printed
with the load average of the same moment, so the ratio holds on a busy machine.

Usage::

    python benchmarks/bench_scale.py [--runs 3] [--threads 2] [--bs 0] [--dense]
        [--ratings 25000095] [--no-reference]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

from recfit.config import RatingConfig
from recfit.data.synthetic import synthetic
from recfit.models import DotBias
from recfit.tasks.common import batch_and_lr
from recfit.tasks.rating import resolve_config
from recfit.train import Learner
from recfit.train.execution import Execution


def sgd_kernel() -> object:
    """The plain SGD loop (numba, compiled on first call; threads split the ratings)."""
    from numba import njit

    from recfit.train._kernels_numba import prefetch_row

    @njit(nogil=True, fastmath=True)  # type: ignore[untyped-decorator]
    def sgd_part(c, sync, parts, users, items, ratings, uf, itf, lr):  # type: ignore[no-untyped-def]
        n = users.shape[0]
        k = uf.shape[1]
        lo, hi = n * c // parts, n * (c + 1) // parts
        for j in range(lo, hi):
            a = j + 6
            if a < hi:
                prefetch_row(uf, users[a])
                prefetch_row(itf, items[a])
            pu = uf[users[j]]
            qi = itf[items[j]]
            x = 0.0
            for f in range(k):
                x += pu[f] * qi[f]
            e = lr * (x - ratings[j])
            for f in range(k):
                p = pu[f]
                pu[f] = p - e * qi[f]
                qi[f] = qi[f] - e * p

    return sgd_part


def reference(data: object, threads: int) -> float:
    """Seconds of the plain SGD loop over every rating (see the module docstring)."""
    import numpy as np

    from recfit.train import kernels

    fn = sgd_kernel()
    cols = data.columns  # type: ignore[attr-defined]
    perm = kernels.permutation(len(cols["user"]), 0)  # an epoch's order, as the step sees it
    users, items = (
        kernels.take(cols["user"].numpy(), perm),
        kernels.take(cols["item"].numpy(), perm),
    )
    ratings = kernels.take(cols["rating"].numpy(), perm).astype(np.float32)
    rng = np.random.default_rng(0)
    uf = kernels.huge_zeros((int(users.max()) + 1, 64))
    itf = kernels.huge_zeros((int(items.max()) + 1, 64))
    uf[:] = rng.normal(0, 0.01, uf.shape)
    itf[:] = rng.normal(0, 0.01, itf.shape)
    sync = np.zeros(2, np.int64)
    args = (threads, users[:1000], items[:1000], ratings[:1000], uf, itf, np.float32(1e-3))
    kernels._WORKERS.run(fn, 1, sync, args)  # compile
    t = time.perf_counter()
    kernels._WORKERS.run(fn, threads, sync, (threads, users, items, ratings, *args[4:]))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="epochs timed (median reported)")
    ap.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    ap.add_argument("--bs", type=int, default=0, help="0: auto_batch_size")
    ap.add_argument("--ratings", type=int, default=25_000_095)
    ap.add_argument("--dense", action="store_true", help="force the dense AdamW path")
    ap.add_argument("--opt", default="auto", help="auto (what recfit train picks), adam, adagrad")
    ap.add_argument("--no-reference", action="store_true", help="skip the plain SGD loop")
    args = ap.parse_args()
    threads = args.threads or torch.get_num_threads()
    t = time.perf_counter()
    data = synthetic(args.ratings, 162_541, 59_047, seed=0, with_timestamps=False)
    gen_s = time.perf_counter() - t
    cfg = RatingConfig(dataset="synthetic", n_factors=64, bs=args.bs)
    if args.opt != "auto":
        cfg = cfg.replace(opt=args.opt)
    cfg = resolve_config(cfg, data)  # opt, lr, wd, reg as recfit train would use them
    bs, lr = batch_and_lr(cfg, len(data))
    model = DotBias(data.n_users, data.n_items, n_factors=64, seed=0)
    learn = Learner(
        model, data, None, bs=bs, wd=cfg.wd, reg=cfg.reg, opt=cfg.opt, seed=0, progress=False,
        execution=Execution(num_threads=threads, row_wise=False if args.dense else "auto"),
    )  # fmt: skip
    print(
        f"data: {len(data):,} ratings, {data.n_users:,} users, {data.n_items:,} items "
        f"(generated in {gen_s:.1f} s); DotBias 64, opt {cfg.opt}, bs {bs}, lr {lr:g}, "
        f"wd {cfg.wd:g}, reg {cfg.reg:g}, threads {threads}"
    )
    secs, fracs = [], []
    for run in range(args.runs):
        load = os.getloadavg()[0]
        learn.fit(1, lr)
        secs.append(learn.fit_seconds)
        ref = ""
        if not args.no_reference:
            ref_s = reference(learn._train_td, threads)
            fracs.append(ref_s / learn.fit_seconds)
            ref = (f"; plain SGD loop {ref_s:.2f} s ({len(data) / ref_s:,.0f} ratings/s), "
                   f"step at {fracs[-1]:.0%} of it")  # fmt: skip
        print(
            f"  epoch {run}: {learn.fit_seconds:.2f} s, {len(data) / learn.fit_seconds:,.0f} "
            f"ratings/s, {len(data) / learn.fit_seconds / threads:,.0f} per thread, "
            f"train loss {learn.history[-1]['train_loss']:.4f}{ref} (load average {load:.2f})",
            flush=True,
        )
    med = statistics.median(secs)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"median epoch {med:.2f} s; {len(data) / med:,.0f} ratings/s; "
        f"{len(data) / med / threads:,.0f} ratings/s per thread (memory-bound SGD limit "
        f"10-20 M/s/core); optimiser {type(learn.opt).__name__}"
        f"{' (compiled step)' if learn.compiled else ''}; "
        f"peak RSS {rss_gb:.2f} GB; load average {os.getloadavg()[0]:.2f}"
    )
    if fracs:
        print(f"step / plain SGD loop (median): {statistics.median(fracs):.0%}")


if __name__ == "__main__":
    main()
