"""keras-rs two-tower retrieval on protocol T1 (ml-100k, shared random 80/20), JAX backend.

The keras-rs "deep recommender" setup of docs/protocols.md: a query tower over user id, age
bucket, gender, gender x age cross and occupation, a candidate tower over movie id,
title tokens and genres (bags as mean embeddings), both ending in dense layers (1 layer:
(32,); 2: (64, 32); 3: (128, 64, 32), ReLU between), trained with MSE on the rating
rescaled to [0, 1] against the towers' dot product, Adagrad 0.05, batch 1000, 30 epochs.
Retrieval uses ``keras_rs.layers.BruteForceRetrieval`` (top 100 of the whole catalogue,
seen items NOT excluded); top-100 accuracy = share of 5-star test ratings whose movie
is in the user's top 100 (checked against ``common.topk_accuracy``). Runs in
``.bench/keras``; set ``BENCH_THREADS`` (default 1) to limit XLA's CPU threads.

Usage: ``python benchmarks/peers/peer_keras_rs.py T1 [--quick] [--models 1,2,3]``
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
if os.environ.get("BENCH_THREADS", "1") == "1":
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )

import jax
import keras
import keras_rs
import numpy as np
from keras import ops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    common_args,
    data_dir,
    emit,
    encode,
    load_ratings,
    load_split,
    selected,
    topk_accuracy,
    wanted,
)

DEPTHS = {"1": (32,), "2": (64, 32), "3": (128, 64, 32)}
AGE_BOUNDARIES = [18, 25, 35, 45, 50, 56]  # TFDS movielens's bucketized_user_age


class Tower(keras.layers.Layer):
    """Looks up a row's feature codes and bags, embeds them, then dense layers."""

    def __init__(
        self,
        cats: list[np.ndarray],
        bags: list[np.ndarray],
        layer_sizes: tuple[int, ...],
        dim: int = 32,
        **kw: object,
    ) -> None:
        super().__init__(**kw)
        self._cats = [np.asarray(c, dtype="int32") for c in cats]
        self._bags = [np.asarray(b, dtype="float32") for b in bags]
        self.embeds = [keras.layers.Embedding(int(c.max()) + 1, dim) for c in self._cats]
        self.bag_proj = [keras.layers.Dense(dim, use_bias=False) for _ in self._bags]
        self.dense = [
            keras.layers.Dense(n, activation="relu" if j < len(layer_sizes) - 1 else None)
            for j, n in enumerate(layer_sizes)
        ]

    def call(self, idx: object) -> object:
        idx = ops.reshape(ops.cast(idx, "int32"), (-1,))
        parts = [
            e(ops.take(ops.convert_to_tensor(c), idx))
            for e, c in zip(self.embeds, self._cats, strict=True)
        ]
        parts += [
            p(ops.take(ops.convert_to_tensor(b), idx, axis=0))
            for p, b in zip(self.bag_proj, self._bags, strict=True)
        ]
        x = ops.concatenate(parts, axis=-1)
        for layer in self.dense:
            x = layer(x)
        return x


def features(users: np.ndarray, items: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    folder = data_dir() / "ml-100k"
    info = {}
    for line in (folder / "u.user").read_text(encoding="latin-1").splitlines():
        uid, age, gender, occ, _ = line.split("|")
        info[int(uid)] = (int(age), gender, occ)
    age = np.array([info[u][0] for u in users])
    bucket = np.digitize(age, AGE_BOUNDARIES)
    gender = np.array([info[u][1] == "M" for u in users], dtype=np.int64)
    _, occ = encode(np.array([info[u][2] for u in users]))
    user_cats = [np.arange(len(users)), bucket, gender, gender * 7 + bucket, occ]
    meta = {}
    for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
        f = line.split("|")
        meta[int(f[0])] = (f[1], np.array(f[5:24], dtype=np.float32))
    tokens = [re.findall(r"[a-z0-9]+", meta[i][0].lower()) for i in items]
    vocab = {t: j for j, t in enumerate(sorted({t for ts in tokens for t in ts}))}
    title = np.zeros((len(items), len(vocab)), dtype=np.float32)
    for r, ts in enumerate(tokens):
        for t in ts:
            title[r, vocab[t]] += 1.0
    title /= np.maximum(title.sum(1, keepdims=True), 1.0)
    genres = np.stack([meta[i][1] for i in items])
    genres /= np.maximum(genres.sum(1, keepdims=True), 1.0)
    return user_cats, [np.arange(len(items))], [], [title, genres]  # type: ignore[return-value]


def main() -> None:
    protocol = sys.argv[1]
    if protocol != "T1":
        raise SystemExit(f"expected protocol T1, received {protocol}")
    args = common_args(sys.argv[2:])
    d = load_ratings("ml-100k")
    users, u = encode(d["user"])
    items, i = encode(d["item"])
    user_cats, item_cats, user_bags, item_bags = features(users, items)
    y = ((d["rating"] - 1.0) / 4.0).astype(np.float32)
    for depth, sizes in DEPTHS.items():
        if not wanted(args, depth) or (args.quick and not args.models and depth != "1"):
            continue
        for part in selected(args, protocol):
            train_rows, test_rows = load_split(protocol, part)
            keras.utils.set_random_seed(0)
            q = Tower(user_cats, user_bags, sizes, name="query")
            c = Tower(item_cats, item_bags, sizes, name="candidate")
            ui = keras.Input((1,), dtype="int32", name="user")
            ii = keras.Input((1,), dtype="int32", name="item")
            score = keras.layers.Dot(axes=1)([q(ui), c(ii)])
            model = keras.Model([ui, ii], score)
            model.compile(optimizer=keras.optimizers.Adagrad(0.05), loss="mse")
            x = [u[train_rows, None].astype(np.int32), i[train_rows, None].astype(np.int32)]
            t0 = time.perf_counter()
            model.fit(x, y[train_rows], batch_size=1000, epochs=30, shuffle=True, verbose=0)
            fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            uv = np.asarray(q(np.arange(len(users), dtype=np.int32)))
            iv = np.asarray(c(np.arange(len(items), dtype=np.int32)))
            retrieval = keras_rs.layers.BruteForceRetrieval(k=100, return_scores=False)
            retrieval.update_candidates(iv)
            top = np.asarray(retrieval(uv))
            five = test_rows[d["rating"][test_rows] >= 5]
            acc = float(np.mean((top[u[five]] == i[five][:, None]).any(axis=1)))
            check = topk_accuracy(uv @ iv.T, u[five], i[five])
            emit(
                "keras-rs", keras_rs.__version__, protocol, part,
                f"two-tower, MSE objective, {depth} layer(s) {sizes}",
                {"top_100_accuracy": acc}, fit, variant=f"mse-{depth}",
                numpy_check=check, keras=keras.__version__, jax=jax.__version__,
                backend=keras.backend.backend(), eval_seconds=time.perf_counter() - t1,
            )  # fmt: skip


if __name__ == "__main__":
    main()
