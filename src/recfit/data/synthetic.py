"""MovieLens-shaped synthetic rating data of any size, fast and deterministic.

:func:`synthetic` draws (user, item) pairs with power-law (Zipf-like) user activity and
item popularity, without duplicate pairs, and rates them from a known low-rank taste
structure: ``mean + user bias + item bias + <user factors, item factors> + noise``,
mapped to the rating scale and rounded to whole (or half) stars. Timestamps increase
along each user's rows, and optional feature tables describe users (age, gender,
occupation) and items (title, year, genres). User factors depend partly on the user's
occupation and age group, item factors on the item's genres, so feature-aware models
have something to learn. The ratings are the same whether or not the feature tables
are asked for.

The ml-25m shape (25,000,095 ratings, 162,541 users, 59,047 items) takes well under a
minute and under 2 GB of memory: work is done in chunks, pairs are deduplicated through
one ``int64`` key ``user * n_items + item`` and a sort, and per-rating arrays are
``int32``/``float32``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from recfit.data.checks import check_rating_scale
from recfit.data.interactions import Interactions
from recfit.data.parquet import write_parquet
from recfit.data.vocab import Vocabulary
from recfit.errors import ConfigError

__all__ = ["GENRES", "OCCUPATIONS", "synthetic", "write_parquet"]

#: Genre names used for synthetic items (MovieLens 1M's list).
GENRES: tuple[str, ...] = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

#: Occupations used for synthetic users (MovieLens 100k's list).
OCCUPATIONS: tuple[str, ...] = (
    "administrator",
    "artist",
    "doctor",
    "educator",
    "engineer",
    "entertainment",
    "executive",
    "healthcare",
    "homemaker",
    "lawyer",
    "librarian",
    "marketing",
    "none",
    "other",
    "programmer",
    "retired",
    "salesman",
    "scientist",
    "student",
    "technician",
    "writer",
)

# MovieLens 1M age groups: (lowest age, highest age, share of users).
_AGE_GROUPS = ((7, 17, 0.04), (18, 24, 0.18), (25, 34, 0.35), (35, 44, 0.20), (45, 49, 0.09),
               (50, 55, 0.08), (56, 73, 0.06))  # fmt: skip
_GENRE_SHARE = np.array(
    [
        0.14,
        0.07,
        0.03,
        0.05,
        0.27,
        0.06,
        0.03,
        0.40,
        0.02,
        0.01,
        0.08,
        0.03,
        0.03,
        0.12,
        0.07,
        0.12,
        0.04,
        0.02,
    ]
)
# Time range of MovieLens 25M: 1995-01-09 .. 2019-11-21 (epoch seconds).
_T_START = 789_652_009
_T_END = 1_574_327_703
_CHUNK = 1 << 21  # rows per chunk when rating (about 2M)
_DRAW = 1 << 22  # pairs per chunk when drawing
_EXACT_PAIRS = 1 << 24  # all-pairs sampling below this many (user, item) cells
_MAX_ROUNDS = 60


def synthetic(
    n_ratings: int = 100_000,
    n_users: int = 943,
    n_items: int = 1682,
    *,
    n_factors: int = 8,
    noise: float = 0.5,
    rating_scale: tuple[float, float] = (1, 5),
    half_stars: bool = False,
    user_alpha: float = 1.0,
    item_alpha: float = 1.2,
    seed: int = 0,
    with_timestamps: bool = True,
    with_features: bool = False,
    name: str = "synthetic",
) -> Interactions:
    """MovieLens-shaped ratings with a known low-rank structure.

    User ids are ``1 .. n_users`` and item ids ``1 .. n_items`` (``int64``); every id
    has at least one rating when ``n_ratings >= n_users + n_items``. Rows are grouped by
    user, and each user's timestamps increase along their rows. Ratings sit on
    ``rating_scale`` in steps of 1 (or 0.5 with ``half_stars``); their distribution
    resembles MovieLens (mean about 3.5, standard deviation about 1 on a 1-5 scale).

    Args:
        n_ratings: number of distinct (user, item) ratings.
        n_users: number of users.
        n_items: number of items.
        n_factors: rank of the taste structure.
        noise: standard deviation of the Gaussian noise, in stars of a 1-5 scale
            (scaled with the width of ``rating_scale``).
        rating_scale: lowest and highest rating.
        half_stars: round to half stars instead of whole ones.
        user_alpha: power-law exponent of user activity (0 = uniform).
        item_alpha: power-law exponent of item popularity (0 = uniform).
        seed: the random seed; the same seed gives the same data.
        with_timestamps: add epoch-second timestamps (1995-2019).
        with_features: add user features (age, gender, occupation) and item features
            (title, year, genres as a tuple of names).
        name: the data's name.

    Returns:
        The ratings as :class:`~recfit.data.Interactions`. ``meta`` records the
        generator's parameters and its true global mean.

    Raises:
        ConfigError: a parameter is out of range, or more ratings are asked for than
            there are (user, item) pairs.

    Example:
        >>> d = synthetic(2000, 50, 40, seed=1)
        >>> len(d), d.n_users, d.n_items
        (2000, 50, 40)
        >>> bool(set(np.unique(d.rating).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0})
        True
        >>> np.array_equal(d.rating, synthetic(2000, 50, 40, seed=1).rating)
        True
    """
    lo, hi = _check_params(
        n_ratings, n_users, n_items, n_factors, noise, rating_scale, user_alpha, item_alpha
    )
    ss = np.random.SeedSequence(seed)
    rng_pairs, rng_latent, rng_order, rng_time, rng_noise = (
        np.random.default_rng(s) for s in ss.spawn(5)
    )

    # ---- who is active, what is popular (ranks permuted over ids)
    user_rank_to_id = rng_pairs.permutation(n_users)
    item_rank_to_id = rng_pairs.permutation(n_items)
    item_pop_rank = np.empty(n_items, dtype=np.int64)
    item_pop_rank[item_rank_to_id] = np.arange(n_items)

    # ---- latent structure (always drawn, so ratings do not depend on with_features)
    lat = _latent(rng_latent, n_users, n_items, n_factors, item_pop_rank)

    # ---- distinct (user, item) pairs as sorted int64 keys
    keys = _draw_pairs(
        rng_pairs, n_ratings, n_users, n_items, user_alpha, item_alpha,
        user_rank_to_id, item_rank_to_id,
    )  # fmt: skip
    user = (keys // n_items).astype(np.int32)
    item = (keys % n_items).astype(np.int32)
    del keys

    # ---- per-user time windows
    counts = np.bincount(user, minlength=n_users)
    starts = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    if with_timestamps:
        span = np.exp(rng_time.normal(math.log(30 * 86400), 2.0, size=n_users))
        span = np.clip(span, 60.0 * np.maximum(counts, 1), float(_T_END - _T_START))
        t0 = _T_START + rng_time.random(n_users) * (_T_END - _T_START - span)
    time_offset = np.empty(n_ratings, dtype=np.int32) if with_timestamps else None

    # ---- rate, chunk by chunk along user boundaries
    rating = np.empty(n_ratings, dtype=np.float32)
    step = 0.5 if half_stars else 1.0
    scale = (hi - lo) / 4.0
    pos = 0
    while pos < n_ratings:
        end = int(starts[np.searchsorted(starts, min(pos + _CHUNK, n_ratings), side="left")])
        end = max(end, pos + 1)
        u = user[pos:end]
        # shuffle each user's items so that time order is unrelated to item index
        local = (u - u[0]).astype(np.uint64) << np.uint64(32)
        perm = np.argsort(local | rng_order.integers(0, 1 << 32, end - pos, dtype=np.uint64))
        item[pos:end] = item[pos:end][perm]
        i = item[pos:end]
        x = lat["mu"] + lat["bu"][u] + lat["bi"][i]
        x += np.einsum("ij,ij->i", lat["P"][u], lat["Q"][i])
        x += np.float32(noise) * rng_noise.standard_normal(end - pos, dtype=np.float32)
        x = np.float32(lo) + (x - np.float32(1.0)) * np.float32(scale)
        x = np.float32(lo) + np.round((x - np.float32(lo)) / np.float32(step)) * np.float32(step)
        rating[pos:end] = np.clip(x, lo, hi)
        if time_offset is not None:
            gaps = rng_time.exponential(size=end - pos)
            cs = np.cumsum(gaps)
            first = starts[u[0] : u[-1] + 2] - pos  # group boundaries inside the chunk
            before = np.concatenate(([0.0], cs))[first]  # cumsum before each group
            grp = u - u[0]
            total = before[1:] - before[:-1] + rng_time.exponential(size=len(first) - 1)
            frac = (cs - before[:-1][grp]) / total[grp]  # in (0, 1), increasing
            t = t0[u] + frac * span[u]
            time_offset[pos:end] = (t - _T_START).astype(np.int32)
        pos = end

    users = Vocabulary(np.arange(1, n_users + 1, dtype=np.int64), name="user")
    items = Vocabulary(np.arange(1, n_items + 1, dtype=np.int64), name="item")
    user_features = item_features = None
    if with_features:
        user_features, item_features = _feature_tables(lat, n_items)
    meta: dict[str, Any] = {
        "generator": "recfit.data.synthetic",
        "seed": seed,
        "n_factors": n_factors,
        "noise": noise,
        "user_alpha": user_alpha,
        "item_alpha": item_alpha,
        "half_stars": half_stars,
    }
    return Interactions(
        user=user,
        item=item,
        rating=rating,
        users=users,
        items=items,
        time_offset=time_offset,
        time_origin=_T_START if with_timestamps else 0,
        user_features=user_features,
        item_features=item_features,
        rating_scale=(lo, hi),
        name=name,
        meta=meta,
    )


def _check_params(
    n_ratings: int,
    n_users: int,
    n_items: int,
    n_factors: int,
    noise: float,
    rating_scale: tuple[float, float],
    user_alpha: float,
    item_alpha: float,
) -> tuple[float, float]:
    for pname, value in (("n_ratings", n_ratings), ("n_users", n_users), ("n_items", n_items),
                         ("n_factors", n_factors)):  # fmt: skip
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"expected {pname} to be a positive integer, received {value!r}")
    if n_ratings > n_users * n_items:
        raise ConfigError(
            f"expected n_ratings <= n_users * n_items = {n_users * n_items}, received {n_ratings}"
        )
    if n_users >= 1 << 31 or n_items >= 1 << 31:
        raise ConfigError(f"expected fewer than 2**31 users and items, received {n_users, n_items}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ConfigError(f"expected noise >= 0, received {noise!r}")
    for pname, a in (("user_alpha", user_alpha), ("item_alpha", item_alpha)):
        if not (math.isfinite(a) and 0 <= a <= 5):
            raise ConfigError(f"expected {pname} in [0, 5], received {a!r}")
    scale = check_rating_scale(rating_scale)
    if scale is None:
        raise ConfigError("expected rating_scale=(low, high), received None")
    return scale


# ---------------------------------------------------------------------- popularity
def _offset(n: int) -> float:
    """Zipf-Mandelbrot offset: flattens the head so the top rank is not absurdly large."""
    return max(1.0, 0.01 * n)


def _zipf_cdf(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """CDF over ranks ``[0, n)`` of the continuous density ``(x + b) ** -alpha``."""
    b = _offset(n)
    if abs(alpha - 1.0) < 1e-9:
        return np.asarray(np.log((x + b) / b) / math.log((n + b) / b))
    e = 1.0 - alpha
    return np.asarray(((x + b) ** e - b**e) / ((n + b) ** e - b**e))


def _zipf_ranks(rng: np.random.Generator, size: int, n: int, alpha: float) -> np.ndarray:
    """``size`` ranks in ``[0, n)`` drawn by inverting :func:`_zipf_cdf` (vectorised)."""
    b = _offset(n)
    v = rng.random(size)
    if abs(alpha - 1.0) < 1e-9:
        x = b * np.exp(v * math.log((n + b) / b)) - b
    else:
        e = 1.0 - alpha
        x = (b**e + v * ((n + b) ** e - b**e)) ** (1.0 / e) - b
    r = x.astype(np.int64)
    np.clip(r, 0, n - 1, out=r)
    return r


def _zipf_probs(n: int, alpha: float) -> np.ndarray:
    edges = _zipf_cdf(np.arange(n + 1, dtype=np.float64), n, alpha)
    p = np.diff(edges)
    return np.asarray(p / p.sum())


def _draw_pairs(
    rng: np.random.Generator,
    n_ratings: int,
    n_users: int,
    n_items: int,
    user_alpha: float,
    item_alpha: float,
    user_rank_to_id: np.ndarray,
    item_rank_to_id: np.ndarray,
) -> np.ndarray:
    """Sorted distinct ``int64`` keys ``user * n_items + item``."""
    # One guaranteed pair per user and per item, so every id occurs (when there is room).
    guarantee = n_ratings >= n_users + n_items
    g_item = item_rank_to_id[_zipf_ranks(rng, n_users, n_items, item_alpha)]
    g_user = user_rank_to_id[_zipf_ranks(rng, n_items, n_users, user_alpha)]
    if guarantee:
        g = np.concatenate(
            (np.arange(n_users, dtype=np.int64) * n_items + g_item,
             g_user.astype(np.int64) * n_items + np.arange(n_items, dtype=np.int64))
        )  # fmt: skip
        g = _sorted_unique(g)
    else:
        g = np.zeros(0, dtype=np.int64)
    need = n_ratings - len(g)

    if n_users * n_items <= _EXACT_PAIRS:
        # Weighted sampling without replacement over all cells (Efraimidis-Spirakis).
        pu = np.empty(n_users)
        pu[user_rank_to_id] = _zipf_probs(n_users, user_alpha)
        pi = np.empty(n_items)
        pi[item_rank_to_id] = _zipf_probs(n_items, item_alpha)
        score = rng.exponential(size=n_users * n_items) / np.outer(pu, pi).ravel()
        score[g] = -1.0
        chosen = (
            np.argpartition(score, n_ratings - 1)[:n_ratings]
            if n_ratings < len(score)
            else (np.arange(len(score)))
        )
        return np.sort(chosen.astype(np.int64))

    have = np.zeros(0, dtype=np.int64)
    yield_rate = 1.0
    for _ in range(_MAX_ROUNDS):
        short = need - len(have)
        if short <= 0:
            break
        m = int(short / max(yield_rate, 0.02) * 1.05) + 1024
        drawn = [have]
        for lo in range(0, m, _DRAW):
            size = min(_DRAW, m - lo)
            u = user_rank_to_id[_zipf_ranks(rng, size, n_users, user_alpha)]
            i = item_rank_to_id[_zipf_ranks(rng, size, n_items, item_alpha)]
            k = u.astype(np.int64) * n_items + i
            if guarantee:  # drop draws that are guaranteed pairs
                k = k[(g_item[u] != i) & (g_user[i] != u)]
            drawn.append(k)
        before = len(have)
        have = _sorted_unique(np.concatenate(drawn))
        del drawn
        yield_rate = max((len(have) - before) / m, 1e-6)
    else:
        raise ConfigError(
            f"expected a sparser shape: could not draw {n_ratings} distinct pairs from "
            f"{n_users} users x {n_items} items with these alphas; lower user_alpha/item_alpha"
        )
    excess = len(have) - need
    if excess > 0:
        drop = rng.choice(len(have), size=excess, replace=False)
        mask = np.ones(len(have), dtype=bool)
        mask[drop] = False
        have = have[mask]
    if len(g):
        have = np.sort(np.concatenate((have, g)))
    return have


def _sorted_unique(k: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.sort + mask; much faster than np.unique here)."""
    k = np.sort(k)
    if len(k) < 2:
        return k
    keep = np.empty(len(k), dtype=bool)
    keep[0] = True
    np.not_equal(k[1:], k[:-1], out=keep[1:])
    return k[keep]


# ---------------------------------------------------------------------- latent structure
def _latent(
    rng: np.random.Generator, n_users: int, n_items: int, k: int, item_pop_rank: np.ndarray
) -> dict[str, Any]:
    """Categories, factors and biases (float32) of users and items."""
    age_p = np.array([g[2] for g in _AGE_GROUPS])
    age_group = rng.choice(len(_AGE_GROUPS), size=n_users, p=age_p / age_p.sum())
    lows = np.array([g[0] for g in _AGE_GROUPS])
    highs = np.array([g[1] for g in _AGE_GROUPS])
    age = lows[age_group] + (rng.random(n_users) * (highs - lows + 1)[age_group]).astype(np.int64)
    gender = rng.random(n_users) < 0.71  # True = "M"
    occupation = rng.integers(0, len(OCCUPATIONS), size=n_users)
    n_g = len(GENRES)
    genres = rng.random((n_items, n_g)) < _GENRE_SHARE
    none = ~genres.any(axis=1)
    genres[none, 7 if n_g > 7 else 0] = True  # an item without genres is a Drama
    year = np.clip(2019 - rng.exponential(14.0, size=n_items).astype(np.int64), 1902, 2019)

    s = (0.36 / k) ** 0.25  # so that <P_u, Q_i> has standard deviation ~0.6
    occ_emb = rng.standard_normal((len(OCCUPATIONS), k))
    age_emb = rng.standard_normal((len(_AGE_GROUPS), k))
    genre_emb = rng.standard_normal((n_g, k))
    P = s * (
        math.sqrt(0.25) * occ_emb[occupation]
        + math.sqrt(0.15) * age_emb[age_group]
        + math.sqrt(0.6) * rng.standard_normal((n_users, k))
    )
    gsum = (genres @ genre_emb) / np.sqrt(genres.sum(axis=1, keepdims=True))
    Q = s * (math.sqrt(0.5) * gsum + math.sqrt(0.5) * rng.standard_normal((n_items, k)))
    bu = 0.45 * rng.standard_normal(n_users)
    # popular items are rated a little higher, as in MovieLens
    pop = -np.log1p(item_pop_rank.astype(np.float64))
    pop = (pop - pop.mean()) / (pop.std() + 1e-12)
    bi = 0.45 * rng.standard_normal(n_items) + 0.2 * pop
    return {
        "mu": np.float32(3.35),
        "P": P.astype(np.float32),
        "Q": Q.astype(np.float32),
        "bu": bu.astype(np.float32),
        "bi": bi.astype(np.float32),
        "age": age,
        "gender": gender,
        "occupation": occupation,
        "genres": genres,
        "year": year,
    }


def _feature_tables(lat: dict[str, Any], n_items: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    users = pd.DataFrame(
        {
            "age": lat["age"].astype(np.int64),
            "gender": np.where(lat["gender"], "M", "F").astype(object),
            "occupation": np.asarray(OCCUPATIONS, dtype=object)[lat["occupation"]],
        }
    )
    names = np.asarray(GENRES, dtype=object)
    genres = lat["genres"]
    year = lat["year"]
    items = pd.DataFrame(
        {
            "title": [f"Synthetic Movie {j + 1} ({year[j]})" for j in range(n_items)],
            "year": year.astype(np.int64),
            "genres": [tuple(names[row].tolist()) for row in genres],
        }
    )
    return users, items
