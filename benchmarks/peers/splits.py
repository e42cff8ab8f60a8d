"""Write the shared split files once: row positions into the original ratings files.

Every library in the peer comparison reads these, so all of them train and test on
identical rows. One ``.npz`` per protocol part under ``benchmarks/results/splits``
(arrays ``train`` and ``test``, sorted int64 row positions into ``u.data`` or
``ratings.dat``), plus ``manifest.json`` with sizes and the source file's size.

- R1: ml-100k, random 20% test, split seeds 42, 7 and 1 (NumPy ``default_rng(seed)``).
- R2: ml-100k, the canonical ``u1.base`` / ``u1.test`` (mapped to ``u.data`` rows).
- R3: ml-100k, 5 folds of one random permutation (seed 0).
- R4: ml-1m, random 10% test, split seeds 0, 1 and 2 (the rows of recfit's
  ``random:0.1`` split with those seeds: the same permutation of the file's rows).
- R5: ml-1m, 5 folds of one random permutation (seed 0).
- T1: ml-100k, random 80/20 of all ratings (seed 0).
- T2: ml-1m, the ratings >= 4 only, random 80/20 of them (seed 0).

Usage: ``python benchmarks/peers/splits.py [--force]``. Existing files are kept unless
``--force`` (or the source file changed size).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SPLITS, data_dir, load_ratings, ratings_file

#: every split file :func:`all_splits` writes (without the ``.npz``)
SPLIT_NAMES: tuple[str, ...] = (
    *(f"R1_seed{s}" for s in (42, 7, 1)),
    "R2_u1",
    *(f"R3_fold{i}" for i in range(5)),
    *(f"R4_seed{s}" for s in (0, 1, 2)),
    *(f"R5_fold{i}" for i in range(5)),
    "T1_seed0",
    "T2_seed0",
)


def random_rows(n: int, test_frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_frac)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def kfold_rows(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    perm = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(perm, k)
    return [
        (np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i])), np.sort(folds[i]))
        for i in range(k)
    ]


def u1_rows(d: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    key = d["user"] * 100_000 + d["item"]
    order = np.argsort(key)
    out = []
    for name in ("u1.base", "u1.test"):
        arr = np.loadtxt(data_dir() / "ml-100k" / name, dtype=np.int64)
        k = arr[:, 0] * 100_000 + arr[:, 1]
        pos = np.searchsorted(key[order], k)
        rows = order[pos]
        if not np.array_equal(key[rows], k):
            raise SystemExit(f"{name}: a (user, item) pair is not in u.data")
        out.append(np.sort(rows))
    return out[0], out[1]


def all_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    small = load_ratings("ml-100k")
    big = load_ratings("ml-1m")
    n_small, n_big = len(small["user"]), len(big["user"])
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for seed in (42, 7, 1):
        out[f"R1_seed{seed}"] = random_rows(n_small, 0.2, seed)
    out["R2_u1"] = u1_rows(small)
    for i, pair in enumerate(kfold_rows(n_small, 5, 0)):
        out[f"R3_fold{i}"] = pair
    for seed in (0, 1, 2):
        out[f"R4_seed{seed}"] = random_rows(n_big, 0.1, seed)
    for i, pair in enumerate(kfold_rows(n_big, 5, 0)):
        out[f"R5_fold{i}"] = pair
    out["T1_seed0"] = random_rows(n_small, 0.2, 0)
    pos = np.flatnonzero(big["rating"] >= 4)
    tr, te = random_rows(len(pos), 0.2, 0)
    out["T2_seed0"] = (pos[tr], pos[te])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    SPLITS.mkdir(parents=True, exist_ok=True)
    sizes = {ds: ratings_file(ds).stat().st_size for ds in ("ml-100k", "ml-1m")}
    manifest_path = SPLITS / "manifest.json"
    if manifest_path.exists() and not args.force:
        old = json.loads(manifest_path.read_text())
        names = set(old.get("splits", {}))
        if (
            old.get("source_bytes") == sizes
            and names >= set(SPLIT_NAMES)
            and all((SPLITS / f"{name}.npz").exists() for name in names)
        ):
            print(f"splits up to date in {SPLITS}")
            return
    manifest: dict[str, object] = {"source_bytes": sizes, "splits": {}}
    for name, (train, test) in all_splits().items():
        if np.intersect1d(train, test).size:
            raise SystemExit(f"{name}: train and test overlap")
        np.savez_compressed(SPLITS / f"{name}.npz", train=train, test=test)
        manifest["splits"][name] = {"train": len(train), "test": len(test)}  # type: ignore[index]
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(manifest['splits'])} split files to {SPLITS}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
