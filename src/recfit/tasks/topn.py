"""The top-N task: rank items for users from positives, measured by full-catalogue ranking.

Positives are clicks, plays or purchases (a file with no rating column: each row is a
positive of value 1; a count column as ``rating_col`` with ``confidence="value"``), or
ratings at or above ``positive_min_rating``. They are chosen *before* splitting, so every
split protocol holds out positives: ``random:0.2`` (a random share), ``last:1`` (each
user's latest by time), ``users:0.1:0.8`` (strong generalisation: held-out users scored
from the positives they are given), or ``--train``/``--test`` files.

A top-N family (``popularity``, ``itemknn``, ``ease``, ``ials``, ``bpr``: task ``topn`` in
the registry) is built from the config and the training positives, trained by its trainer
(:func:`recfit.train.trainers.trainer_for`, ``closed_form`` for all of them) and ranked
against every item the user has not seen in training. ``model="auto"`` picks the family
by an inner validation cut of the training positives (:func:`choose_family`): never by
held-out rows.

Example:
    >>> from recfit.config import TopNConfig
    >>> from recfit.data.synthetic import synthetic
    >>> d = synthetic(2000, 60, 40, seed=0)
    >>> sp = TOPN.load_split(TopNConfig(model="popularity", seed=0), d)
    >>> round(len(sp.test_idx) / len(sp.data), 1)
    0.2
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from recfit.config import TopNConfig
from recfit.config.topn import FAMILY_SETTINGS
from recfit.data.columns import ReadOptions
from recfit.data.interactions import Interactions
from recfit.data.positives import select_positives
from recfit.data.sources import load_dataset
from recfit.data.split import Split
from recfit.errors import ConfigError, DataError
from recfit.models.base import RatingModel
from recfit.models.registry import family
from recfit.models.topn import TopNModel
from recfit.tasks.common import Callbacks, Metrics, Task, register_task
from recfit.tasks.topn_eval import evaluate_topn
from recfit.train.learner import Learner
from recfit.train.trainers import FitSpec, trainer_for

__all__ = [
    "TOPN",
    "TopNTask",
    "build_topn",
    "choose_family",
    "load_positives",
    "topn_learner",
    "topn_report",
]

AUTO_METRIC = "ndcg@20"
"""What ``model="auto"`` compares the families by on the inner validation cut."""
AUTO_INNER = 0.1
"""The share of training positives ``model="auto"`` holds out to compare families."""
AUTO_MAX_ITEMS: dict[str, int] = {"ease": 20_000}
"""Catalogue sizes above which ``model="auto"`` leaves a family out (EASE holds and
inverts a dense items x items matrix: 1.6 GB of float32 at 20,000 items)."""


# ------------------------------------------------------------------ data
def _read_options(cfg: TopNConfig) -> ReadOptions:
    """The column options of a top-N run: a file without the rating column is implicit
    data unless ``rating_col`` was given; repeated pairs add up, except under a rating
    threshold (a sum of ratings is no rating)."""
    return {
        "user": cfg.user_col,
        "item": cfg.item_col,
        "rating": cfg.rating_col,
        "timestamp": cfg.timestamp_col,
        "weight": cfg.weight_col,
        "implicit_if_missing": "rating_col" not in cfg.model_fields_set,
        "duplicates": "error" if cfg.positive_min_rating is not None else "sum",
    }


def load_positives(
    cfg: TopNConfig, dataset: str | None = None, data: Interactions | None = None
) -> Interactions:
    """The positives of ``dataset`` (default ``cfg.dataset``; or of ``data``): rows of
    weight > 0 rated at least ``cfg.positive_min_rating`` (every row when it is none).

    Raises:
        DataError: the file cannot be read; values that cannot be confidences
            (``confidence="value"``: negative or NaN values, naming file, row and
            column); implicit data under a rating threshold; no positive left.
    """
    if data is None:
        data = load_dataset(
            cfg.dataset if dataset is None else dataset,
            data_dir=cfg.data_dir,
            **_read_options(cfg),
        )
    source = data.meta.get("source", data.name)
    if data.meta.get("implicit") and cfg.positive_min_rating is not None:
        raise DataError(
            f"expected a rating column {cfg.rating_col!r} for positive_min_rating "
            f"{cfg.positive_min_rating:g}, received implicit data (no rating column)",
            file=str(source),
            column=cfg.rating_col,
        )
    if cfg.confidence == "value":
        bad = data.rating < 0
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"expected non-negative values as confidence, received {float(data.rating[row])!r}",
                file=str(source),
                row=row,
                column=cfg.rating_col,
            )
    pos = select_positives(data, cfg.positive_min_rating)
    if not len(pos):
        raise DataError(
            f"expected positives (ratings >= {cfg.positive_min_rating}), received none of "
            f"{len(data)} rows",
            file=str(source),
        )
    meta = {**pos.meta, "positives": {"rows": len(data), "positives": len(pos),
                                      "min_rating": cfg.positive_min_rating,
                                      "implicit": bool(data.meta.get("implicit", False))}}  # fmt: skip
    return replace(pos, meta=meta)


# ------------------------------------------------------------------ build, fit, choose
def _floats(report: dict[str, Any]) -> dict[str, float]:
    """The metrics of an :func:`evaluate_topn` report (``name@k`` values; the intervals
    and the protocol stay in the details)."""
    return {
        k: float(v)
        for k, v in report.items()
        if "@" in k and not k.endswith("_ci") and isinstance(v, float)
    }


def _topn_model(model: RatingModel) -> TopNModel:
    if not isinstance(model, TopNModel):  # the registry's topn families are TopNModels
        raise ConfigError(f"expected a top-N model, received {type(model).__name__}")
    return model


def build_topn(cfg: TopNConfig, train: Interactions) -> RatingModel:
    """A fresh model of the family ``cfg.model`` (not ``auto``) sized for ``train``."""
    fam = family(cfg.model)
    return fam.build(fam.settings(cfg), train)


def topn_learner(
    cfg: TopNConfig, train: Interactions, callbacks: Callbacks = (), progress: bool | None = False
) -> Learner:
    """A fresh model of ``cfg.model`` for ``train`` in a Learner (the trainers' common
    ground: history, timing, checks). A top-N family trains by its own fit, so the
    Learner's SGD penalties are not read (``wd`` and ``reg`` 0 there; ``reg`` is a family
    setting)."""
    model = build_topn(cfg, train)
    return Learner(
        model, train, None, wd=0.0, reg=0.0, device=cfg.device, seed=cfg.seed,
        callbacks=callbacks, progress=progress, metrics=(),
    )  # fmt: skip


def _fit(cfg: TopNConfig, train: Interactions) -> RatingModel:
    learner = topn_learner(cfg, train)
    trainer_for(cfg.trainer).fit(learner, FitSpec.from_config(cfg))
    return learner.model


def choose_family(cfg: TopNConfig, train: Interactions) -> tuple[TopNConfig, dict[str, Any]]:
    """``cfg`` with ``model="auto"`` made concrete: each candidate family
    (:meth:`TopNConfig.candidate_families`) is fitted on 90 % of the training positives
    (cut at random by ``cfg.seed``) and ranks the other 10 %; the best by
    :data:`AUTO_METRIC` wins (ties: the first candidate). Returns the resolved config and
    what was compared (for ``metrics.json``).

    Raises:
        ConfigError: too few training positives for the cut.
    """
    if cfg.model != "auto":
        return cfg.resolve_model(big=False), {}
    rng = np.random.default_rng([cfg.seed, 0x70B])
    n_inner = round(AUTO_INNER * len(train))
    if n_inner < 1 or n_inner >= len(train):
        raise ConfigError(
            f"expected enough training positives for model 'auto' to compare families on "
            f"an inner cut of {AUTO_INNER:.0%}, received {len(train)}"
        )
    inner = np.zeros(len(train), dtype=bool)
    inner[rng.choice(len(train), size=n_inner, replace=False)] = True
    fit_part, inner_part = train.take(~inner), train.take(inner)
    k = int(AUTO_METRIC.split("@")[1])
    scores: dict[str, float] = {}
    seconds: dict[str, float] = {}
    best: TopNConfig | None = None
    skipped: dict[str, str] = {}
    for fam in cfg.candidate_families():
        cap = AUTO_MAX_ITEMS.get(fam.name)
        if cap is not None and train.n_items > cap:
            skipped[fam.name] = f"{train.n_items} items > {cap}"
            continue
        cand = _as_family(cfg, fam.name)
        t0 = time.perf_counter()
        model = _fit(cand, fit_part)
        rep = evaluate_topn(_topn_model(model), fit_part, inner_part, ks=(k,), n_bootstrap=0)
        seconds[fam.name] = time.perf_counter() - t0
        scores[fam.name] = rep[AUTO_METRIC]
        if best is None or scores[fam.name] > scores[best.model]:
            best = cand
    if best is None:
        raise ConfigError(
            f"expected a top-N family model 'auto' can train on {train.n_items} items, "
            f"received only {skipped}; name a model"
        )
    info = {
        "chosen": best.model,
        "by": f"{AUTO_METRIC} on an inner cut of {AUTO_INNER:.0%} of the training positives "
        f"(seed {cfg.seed})",
        "inner_scores": scores,
        "inner_seconds": seconds,
        **({"skipped": skipped} if skipped else {}),
    }
    return best, info


def _as_family(cfg: TopNConfig, name: str) -> TopNConfig:
    """``cfg`` (of model ``auto``) for the family ``name``: the family settings given for
    other candidates dropped, the family's defaults filled in."""
    reads = family(name).reads
    data = {
        k: v
        for k, v in cfg.model_dump(exclude_unset=True).items()
        if k not in FAMILY_SETTINGS or k in reads
    }
    return TopNConfig.validated({**data, "model": name}).resolve_model(big=False)


# ------------------------------------------------------------------ the task
class TopNTask(Task[TopNConfig]):
    """The top-N task's steps (:class:`~recfit.tasks.common.Task`)."""

    name = "topn"
    unit = "positives"

    def __init__(self) -> None:
        self._auto: dict[TopNConfig, dict[str, Any]] = {}

    def read_data(
        self, cfg: TopNConfig, data: Interactions | None, dataset: str | None, data_dir: str | None
    ) -> Interactions:
        """The positives of ``data`` or ``dataset`` (:func:`load_positives`): the top-N
        task splits the positives (by ``cfg.split``, or the training file's against the
        test file's, test rows of unknown users or items dropped and counted)."""
        if data_dir is not None:
            cfg = cfg.replace(data_dir=data_dir)
        return load_positives(cfg, dataset, data)

    def measure(
        self, model: RatingModel, cfg: TopNConfig, split: Split, part: str
    ) -> dict[str, float]:
        """Ranking metrics of ``part`` (on the training part, nothing is excluded)."""
        report = self._report(model, cfg, split, part)
        return _floats(report)

    def _report(
        self, model: RatingModel, cfg: TopNConfig, split: Split, part: str
    ) -> dict[str, Any]:
        fold_in = getattr(split, "fold_in", None)
        test = split.test if part == "test" else split.train
        return evaluate_topn(
            _topn_model(model), split.train, test, ks=tuple(cfg.eval_ks),
            exclude_seen=cfg.exclude_seen and part == "test", n_bootstrap=cfg.n_bootstrap,
            seed=cfg.seed, fold_in=fold_in if fold_in is not None and len(fold_in) else None,
        )  # fmt: skip

    def prepare(self, cfg: TopNConfig, split: Split, *, distributed: bool = False) -> TopNConfig:
        if split.data.meta.get("positives", {}).get("implicit") and cfg.rating_col is not None:
            # the data had no rating column: a stored config says so (re-runs read it so)
            cfg = TopNConfig.validated({**cfg.model_dump(exclude_unset=True), "rating_col": None})
        resolved, info = choose_family(cfg, split.train)
        if info:
            self._auto[resolved] = info
        return resolved

    def build(
        self, cfg: TopNConfig, fit: Split, callbacks: Callbacks, progress: bool | None
    ) -> Learner:
        return topn_learner(cfg, fit.train, callbacks, progress)

    def fit(self, learner: Learner, cfg: TopNConfig) -> Learner:
        return trainer_for(cfg.trainer).fit(learner, FitSpec.from_config(cfg))

    def evaluate(self, learner: Learner, cfg: TopNConfig, split: Split) -> Metrics:
        report = self._report(learner.model, cfg, split, "test")
        metrics = _floats(report)
        details = {k: v for k, v in report.items() if k not in metrics}
        details["positives"] = split.data.meta.get("positives", {})
        auto = self._auto.pop(cfg, None)
        if auto:
            details["model_auto"] = auto
        fit_info = getattr(learner.model, "fit_info", None)
        if fit_info:
            details["fit_info"] = fit_info
        return metrics, details

    def artefacts(self, learner: Learner, cfg: TopNConfig, split: Split, out: Path) -> None:
        """``topn.md``: the protocol and each metric with its interval (from the run's
        ``metrics.json``; evaluated here when there is none)."""
        path = out / "metrics.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
        else:
            metrics, details = self.evaluate(learner, cfg, split)
            data = {**metrics, "details": details}
        (out / "topn.md").write_text(topn_report(cfg, data), encoding="utf-8")


def topn_report(cfg: TopNConfig, metrics: dict[str, Any]) -> str:
    """A short Markdown report of a top-N run's ``metrics.json`` content."""
    details = metrics.get("details", {})
    pos = details.get("positives", {})
    what = (
        "every row (implicit data)"
        if pos.get("implicit")
        else "every row"
        if cfg.positive_min_rating is None
        else f"ratings >= {cfg.positive_min_rating:g}"
    )
    lines = [
        f"# Top-N run: {cfg.model} on {cfg.dataset}",
        "",
        f"- positives: {what}; {pos.get('positives', '?')} of {pos.get('rows', '?')} rows; "
        f"confidence {cfg.confidence}",
        f"- split: {cfg.split}"
        + (f" ({cfg.test_file})" if cfg.test_file else "")
        + f", seed {cfg.seed}; users evaluated: {details.get('n_queries', '?')}",
        f"- ranked against the whole catalogue, training items "
        f"{'excluded' if cfg.exclude_seen else 'included'}; intervals: 95 % bootstrap over "
        f"users ({cfg.n_bootstrap} resamples)",
    ]
    auto = details.get("model_auto")
    if auto:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in auto["inner_scores"].items())
        lines.append(f"- model auto chose {auto['chosen']} by {auto['by']}: {scores}")
    lines += ["", "| metric | value | 95 % interval |", "|---|---|---|"]
    for k in cfg.eval_ks:
        for name in ("recall", "ndcg", "map", "hit_rate", "coverage", "mean_popularity"):
            key = f"{name}@{k}"
            if key not in metrics:
                continue
            ci = details.get(f"{key}_ci")
            shown = f"{ci[0]:.4f} to {ci[1]:.4f}" if ci else ""
            lines.append(f"| {key} | {metrics[key]:.4f} | {shown} |")
    return "\n".join(lines) + "\n"


TOPN = TopNTask()
register_task(TOPN)
