"""The search: Optuna's TPE sampler over the families' search spaces, each trial trained
on the training part less an inner validation cut and scored on that cut.

The held-out part of a split never reaches :func:`tune`: it gets the training part only
(and, optionally, the rows to score on, which must come from training data too). The
first trial of each family is the config's own values (where the search space holds
them), so the best trial is never worse on the inner cut than what the user had.

Pruning (:func:`should_prune`) stops a trial at the end of an epoch when its inner
metric is worse than the median of the complete trials *at the same share of their
schedule* (epoch 3 of 10 against epoch 6 of 20), so a long schedule is not stopped for
being early in its warm-up. Trials of a trainer that reports no epochs to callbacks (ALS
sweeps, a closed-form fit) run to the end.
"""

from __future__ import annotations

import importlib
import math
import os
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from recfit.config import BaseTrainConfig
from recfit.data.interactions import Interactions, encode_time
from recfit.data.split import Split
from recfit.errors import CancelFitException, ConfigError, RecfitError
from recfit.metrics.registry import metric_info
from recfit.models.registry import family
from recfit.models.search import Param
from recfit.tasks.common import Task, get_task, inner_cut
from recfit.tasks.tuning.result import Trial, TrialState, TuneResult
from recfit.train.callbacks import Callback

if TYPE_CHECKING:
    from collections.abc import Iterator

    import optuna

    from recfit.train.learner import Learner

__all__ = ["PRUNE_MIN_TRIALS", "search_space", "should_prune", "tune"]

C = TypeVar("C", bound=BaseTrainConfig)

_TRIAL_ERRORS = (RecfitError, MemoryError)
"""What ends one trial as ``failed`` without ending the search: an invalid or diverging
setting (a :class:`~recfit.errors.RecfitError`), a model too big for memory (torch says so
by a ``RuntimeError``: :func:`_out_of_memory`). Anything else is a bug and ends the
search."""

PRUNE_MIN_TRIALS = 4
"""Complete trials needed before pruning starts (fewer: no median to compare with)."""
PRUNE_WARMUP_EPOCHS = 1
"""Epochs every trial trains before it can be pruned."""
PRUNE_MIN_SHARE = 0.5
"""The share of its schedule a trial trains before it can be pruned. Earlier, a larger
model still behind a small one is stopped: on R4 (seed 2) pruning from the second epoch
on stopped 170 of 195 trials, most at epoch 2 of 4-9, and the search ended 0.0009 from
the default, where seeds 0 and 1 (fewer trials) had found 200-factor models 0.004-0.005
better."""
PRUNE_RULE = (
    f"median at the same share of the schedule, after {PRUNE_WARMUP_EPOCHS} epoch(s), "
    f"{PRUNE_MIN_SHARE:.0%} of the schedule and {PRUNE_MIN_TRIALS} complete trials"
)


def tune(
    cfg: C,
    train: Interactions,
    *,
    valid: Interactions | None = None,
    budget_s: float = 600.0,
    n_trials: int | None = None,
    seed: int = 0,
    families: Sequence[str] | None = None,
    prune: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    space: Mapping[str, Param] | None = None,
    keep: Callable[[Learner, Split], Any] | None = None,
) -> TuneResult[C]:
    """Search the hyper-parameters of ``cfg``'s model (or of ``families``) on an inner
    validation cut of ``train``.

    Args:
        cfg: a task config (:class:`~recfit.config.RatingConfig`...) holding the fixed
            settings; the searched fields start from its values.
        train: the training part only (never the rows a result is reported on).
        valid: the rows to score trials on (sharing ``train``'s vocabularies); ``None``:
            a share ``cfg.inner_valid`` of ``train`` cut at random by ``cfg.seed``.
        budget_s: seconds for the whole search: no trial starts after it, and an SGD
            trial still running is stopped (state ``"timeout"``).
        n_trials: stop after this many trials (``None``: the budget decides).
        seed: the sampler's seed (with ``n_trials`` and a budget that does not run out,
            the same seed gives the same trials).
        families: the families to search (``None``: ``cfg.model``; ``auto`` resolves as
            a run would, but by its rule without a search of its own:
            :meth:`~recfit.config.base.BaseTrainConfig.without_search`).
        prune: stop unpromising trials at an epoch end (:func:`should_prune`).
        progress: show Optuna's progress bar.
        log: called with one line per finished trial.
        space: the fields to search and their ranges instead of each family's
            ``search`` (fields a family does not read are left out).
        keep: called with the trained Learner of each complete trial that scores better
            than every trial before it, and the split trials train on (``train_idx``) and
            are scored on (``test_idx``); what it returns for the best trial is
            :attr:`TuneResult.kept` (only the best so far is held: its predictions and
            model, say, without training the best configuration again).

    Returns:
        the :class:`TuneResult`; ``best_config`` is a config of ``cfg``'s class. Ctrl-C
        ends the search early and keeps the trials that completed
        (``result.extra["interrupted"]``).

    Raises:
        ConfigError: an unknown family, ``valid`` of other vocabularies, a training part
            too small to cut, a bad budget, or no trial that completed.
    """
    _load_optuna()
    import optuna  # heavy: loaded when a search runs (off this stack: _load_optuna)

    if not budget_s > 0 or (n_trials is not None and n_trials < 1):
        raise ConfigError(
            f"expected budget_s > 0 and n_trials >= 1 (or None), received budget_s "
            f"{budget_s!r} and n_trials {n_trials!r}"
        )
    t0 = time.monotonic()
    deadline = t0 + float(budget_s)
    task: Task[C] = get_task(cfg.task)
    fit = _fit_split(cfg, train, valid)
    names = list(families) if families else [cfg.model]
    bases = {b.model: b for b in (_base(task, cfg, n, fit) for n in names)}
    spaces = {n: search_space(b, space) for n, b in bases.items()}
    metric = _metric(cfg)
    mode = metric_info(metric).direction
    multi = len(bases) > 1
    if not any(spaces.values()):  # nothing to search: each family's own values, once
        n_trials = min(n_trials or len(bases), len(bases))
    trials: list[Trial] = []
    held: list[tuple[int, float, Any]] = []  # keep's value for the best trial so far

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("family", list(bases)) if multi else next(iter(bases))
        sp = spaces[name]
        params = {k: _suggest(trial, f"{name}.{k}" if multi else k, p) for k, p in sp.items()}
        default = bool(trial.user_attrs.get("default"))
        watch = _Watch(trial, metric, deadline, trials, mode, prune)
        started = time.monotonic()

        def record(state: TrialState, score: float | None = None, note: str = "") -> None:
            t = Trial(trial.number, name, params, score, time.monotonic() - started, state,
                      tuple(watch.curve), watch.epochs, default, note)  # fmt: skip
            trials.append(t)
            if log is not None:
                log(_line(t, metric))

        if not sp and not default:  # a family with nothing to tune: its defaults, once
            record("pruned", note="no search space: its own values were tried")
            raise optuna.TrialPruned("no search space")
        try:
            tcfg = bases[name].replace(**params)
            watch.epochs = tcfg.epochs if tcfg.applies("epochs") and _has_epochs(tcfg) else None
            learner = task.build(tcfg, fit, [watch], False)
            learner = task.fit(learner, tcfg)
            if watch.stopped is not None:
                record(watch.stopped, note=watch.note)
                raise optuna.TrialPruned(watch.note)
            value = float(task.evaluate(learner, tcfg, fit)[0][metric])
        except _TRIAL_ERRORS as exc:  # this setting fails; the search goes on
            record("failed", note=f"{type(exc).__name__}: {exc}")
            raise
        except RuntimeError as exc:
            if not _out_of_memory(exc):
                raise  # a bug: the search ends
            record("failed", note=f"out of memory: {exc}")
            raise MemoryError(str(exc)) from exc
        except KeyboardInterrupt:
            record("failed", note="interrupted")
            raise
        if not math.isfinite(value):
            record("failed", note=f"{metric} is {value}")
            raise ConfigError(f"expected a finite {metric}, received {value}")
        record("complete", value)
        if keep is not None and (not held or _better(value, held[0][1], mode)):
            held.clear()  # the previous best's predictions and model go first
            held.append((trial.number, value, keep(learner, fit)))
        return value

    interrupted = False
    with _quiet():
        study = optuna.create_study(
            direction="minimize" if mode == "min" else "maximize",
            sampler=_sampler(seed),
            pruner=optuna.pruners.NopPruner(),  # the rule is ours (should_prune)
        )
        for name, base in bases.items():
            start = _defaults(base, spaces[name], f"{name}." if multi else "")
            if multi:
                start["family"] = name
            study.enqueue_trial(start, user_attrs={"default": True})
        try:
            study.optimize(
                objective,
                n_trials=n_trials,
                timeout=max(0.0, deadline - time.monotonic()),
                catch=_TRIAL_ERRORS,
                show_progress_bar=progress,
            )
        except KeyboardInterrupt:  # Ctrl-C ends the search; what completed is kept
            interrupted = True
    done = [t for t in trials if t.state == "complete"]
    if not done and interrupted:
        raise KeyboardInterrupt
    if not done:
        states = ", ".join(f"{t.number} {t.state} ({t.note})" for t in trials) or "none"
        raise ConfigError(
            f"expected at least one trial to complete within budget_s {budget_s:g}, "
            f"received trials: {states}"
        )
    result: TuneResult[C] = TuneResult(
        best_config=cfg,
        best_score=math.nan,
        trials=trials,
        metric=metric,
        mode=mode,
        seconds=time.monotonic() - t0,
        budget_s=float(budget_s),
        seed=seed,
        fit_rows=len(fit.train_idx),
        valid_rows=len(fit.test_idx),
        pruned_by=PRUNE_RULE if prune else "",
        extra={
            "load_average": os.getloadavg()[0],
            "families": list(bases),
            "interrupted": interrupted,
        },
    )
    best = result.best_trial
    result.best_config = bases[best.family].replace(**best.params)
    result.best_score = float(best.score or math.nan)
    if held and held[0][0] == best.number:
        result.kept = held[0][2]
    return result


def _better(value: float, than: float, mode: str) -> bool:
    return value < than if mode == "min" else value > than


_OOM_WORDS = (
    "out of memory",
    "not enough memory",
    "can't allocate memory",
    "cannot allocate memory",
    "defaultcpuallocator",
)
"""What torch's allocators say when memory runs out (lower case): CUDA's "out of
memory", Windows' "not enough memory" and Linux's "DefaultCPUAllocator: can't allocate
memory ... (Cannot allocate memory)"."""


def _out_of_memory(exc: RuntimeError) -> bool:
    """Whether torch's ``RuntimeError`` says that memory ran out (CUDA's
    ``OutOfMemoryError`` is one; the CPU allocator's is a plain ``RuntimeError``)."""
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or any(w in text for w in _OOM_WORDS)


# ------------------------------------------------------------------ the search space
def search_space(
    cfg: BaseTrainConfig, space: Mapping[str, Param] | None = None
) -> dict[str, Param]:
    """The fields searched for ``cfg``'s model: ``space`` or its family's ``search``,
    less the fields this run does not read (``lr`` with ALS...), each range widened to
    hold ``cfg``'s own value (the first trial's).

    Example:
        >>> from recfit.config import RatingConfig
        >>> sorted(search_space(RatingConfig(model="mf", trainer="als")))
        ['epochs', 'n_factors', 'reg']
        >>> search_space(RatingConfig(model="dot", n_factors=4))["n_factors"].low
        4
    """
    full = family(cfg.model).search if space is None else space
    bad = [k for k, p in full.items() if not isinstance(p, Param)]
    if bad:
        raise ConfigError(f"expected a Param for each searched field, received {bad}")
    return {k: _widened(p, getattr(cfg, k)) for k, p in full.items() if cfg.applies(k)}


def _widened(p: Param, value: Any) -> Param:
    """``p`` stretched to hold ``value`` (a choice added; a log range only to a value >
    0; a value of the wrong kind leaves it as it is)."""
    if p.contains(value):
        return p
    if p.kind == "choice":
        return replace(p, choices=(*(p.choices or ()), value))
    if not isinstance(value, int | float) or isinstance(value, bool) or (p.log and value <= 0):
        return p
    if p.kind == "int" and value != int(value):
        return p
    low, high = float(p.low or 0.0), float(p.high or 0.0)
    v = int(value) if p.kind == "int" else float(value)
    return replace(p, low=min(low, v) if p.kind == "float" else int(min(low, v)),
                   high=max(high, v) if p.kind == "float" else int(max(high, v)))  # fmt: skip


def _base(task: Task[C], cfg: C, name: str, fit: Split) -> C:
    """``cfg`` for the family ``name`` (its settings that this family does not read
    left out), made concrete for the trials' training rows (``auto`` values chosen, the
    model without a search of its own)."""
    if name != cfg.model:
        fam = family(name)  # an unknown name: ConfigError listing the known ones
        probe = cfg.validated({"model": name})
        given = cfg.model_dump(exclude_unset=True)
        keep = {
            k: v
            for k, v in given.items()
            if k not in ("model", "trainer") and probe.applies(k) and k in type(cfg).model_fields
        }
        if given.get("trainer") in fam.trainers:
            keep["trainer"] = given["trainer"]
        cfg = cfg.validated({**keep, "model": name})
    # the search is this one: an ``auto`` that would choose by its own takes its rule
    return task.prepare(cfg.without_search(), fit)


def _defaults(cfg: BaseTrainConfig, space: Mapping[str, Param], prefix: str) -> dict[str, Any]:
    """The config's own values of the searched fields that their ranges hold, by the
    names the sampler knows them by (the first trial's values)."""
    out: dict[str, Any] = {}
    for k, p in space.items():
        v = getattr(cfg, k)
        if p.kind == "choice" and v in (p.choices or ()):
            out[prefix + k] = _choice_key(v)
        elif p.kind != "choice" and p.contains(v):
            out[prefix + k] = int(v) if p.kind == "int" else float(v)
    return out


def _suggest(trial: optuna.Trial, name: str, p: Param) -> Any:
    if p.kind == "choice":
        choices = list(p.choices or ())
        keys = [_choice_key(c) for c in choices]
        return choices[keys.index(trial.suggest_categorical(name, keys))]
    lo, hi = float(p.low or 0.0), float(p.high or 0.0)
    if p.kind == "int":
        return trial.suggest_int(name, int(lo), int(hi), log=p.log)
    return trial.suggest_float(name, lo, hi, log=p.log)


def _choice_key(v: Any) -> Any:
    """A choice as Optuna stores it (``None``, bool, int, float, str; others as text)."""
    return v if v is None or isinstance(v, bool | int | float | str) else repr(v)


# ------------------------------------------------------------------ data
def _fit_split(cfg: BaseTrainConfig, train: Interactions, valid: Interactions | None) -> Split:
    """What trials train on (``train_idx``) and are scored on (``test_idx``)."""
    if valid is None:
        whole = Split(train, np.arange(len(train), dtype=np.int64), np.zeros(0, np.int64), "train")
        return inner_cut(cfg, whole)
    if len(valid.users) != len(train.users) or len(valid.items) != len(train.items):
        raise ConfigError(
            f"expected valid rows indexed by train's vocabularies ({train.n_users} users, "
            f"{train.n_items} items), received {valid.n_users} users and {valid.n_items} items"
        )
    n, m = len(train), len(valid)
    offset, origin = None, 0
    if train.timestamp is not None and valid.timestamp is not None:
        offset, origin = encode_time(np.concatenate([train.timestamp, valid.timestamp]))
    weight = None
    if train.weight is not None or valid.weight is not None:
        weight = np.concatenate([train.weights(), valid.weights()])
    data = replace(
        train,
        user=np.concatenate([train.user, valid.user]),
        item=np.concatenate([train.item, valid.item]),
        rating=np.concatenate([train.rating, valid.rating]),
        weight=weight,
        time_offset=offset,
        time_origin=origin,
    )
    return Split(data, np.arange(n, dtype=np.int64), np.arange(n, n + m, dtype=np.int64), "valid")


def _metric(cfg: BaseTrainConfig) -> str:
    """The metric trials are scored by: ``rmse`` for a rating monitor of squared error,
    else ``cfg.monitor``."""
    return "rmse" if cfg.monitor in ("mse", "rmse") else cfg.monitor


def _has_epochs(cfg: BaseTrainConfig) -> bool:
    """Whether the trainer reports epochs to callbacks (the Learner's loop)."""
    return cfg.trainer == "sgd"


# ------------------------------------------------------------------ pruning and the clock
def should_prune(
    curve: Sequence[float],
    epochs: int,
    finished: Sequence[tuple[Sequence[float], int]],
    *,
    mode: str = "min",
    min_trials: int = PRUNE_MIN_TRIALS,
    warmup: int = PRUNE_WARMUP_EPOCHS,
    min_share: float = PRUNE_MIN_SHARE,
) -> bool:
    """Whether a trial whose inner metric after each epoch so far is ``curve`` (of
    ``epochs`` planned) should stop: it is worse than the median of the ``finished``
    trials (``(curve, epochs)`` each) at the same share of their schedule.

    Never before ``warmup`` epochs and a share ``min_share`` of the schedule, at the
    last epoch, or with fewer than ``min_trials`` finished trials to compare with.

    Example:
        >>> done = [([1.0, 0.9, 0.8, 0.7], 4)] * 4
        >>> should_prune([1.2, 1.1], 4, done), should_prune([1.2, 0.85], 4, done)
        (True, False)
        >>> should_prune([1.2, 1.1, 1.0, 0.95], 8, done)  # 4 of 8: against epoch 2 of 4
        True
        >>> should_prune([1.2, 1.1], 8, done)  # a quarter of its schedule: too early
        False
        >>> should_prune([1.2], 4, done), should_prune([1.2, 1.1], 4, done[:3])
        (False, False)
    """
    e = len(curve)
    value = curve[-1] if curve else math.nan
    if e <= warmup or e >= epochs or e < min_share * epochs or math.isnan(value):
        return False
    share = e / epochs
    others = []
    for c, n in finished:
        k = max(1, math.ceil(share * n - 1e-9))
        if k <= len(c) and not math.isnan(c[k - 1]):
            others.append(c[k - 1])
    if len(others) < min_trials:
        return False
    med = statistics.median(others)
    return value > med if mode == "min" else value < med


class _Watch(Callback):
    """Records the inner metric after each epoch, reports it to Optuna, and stops the
    fit when the pruning rule says so or the budget has run out."""

    order = 60

    def __init__(
        self,
        trial: optuna.Trial,
        metric: str,
        deadline: float,
        trials: list[Trial],
        mode: str,
        prune: bool,
    ) -> None:
        self.trial, self.metric, self.deadline, self.trials = trial, metric, deadline, trials
        self.mode, self.prune = mode, prune
        self.curve: list[float] = []
        self.epochs: int | None = None
        self.stopped: TrialState | None = None
        self.note = ""

    def _out_of_time(self) -> None:
        if time.monotonic() > self.deadline:
            self.stopped = "timeout"
            self.note = f"the budget ran out in epoch {len(self.curve)}"
            raise CancelFitException(self.note)

    def after_batch(self) -> None:
        self._out_of_time()

    def after_steps(
        self, lrs: Sequence[float], moms: Sequence[float], losses: Sequence[float]
    ) -> None:
        """An epoch run as one compiled kernel (no batch events): the clock is checked
        after it, and the fit keeps its fast path."""
        self._out_of_time()

    def after_epoch(self) -> None:
        rec = self.learn.history[-1] if self.learn.history else {}
        value = float(rec.get(self.metric, math.nan))
        self.curve.append(value)
        if not math.isnan(value):
            self.trial.report(value, len(self.curve) - 1)
        if self.prune and self.epochs is not None:
            finished = [(t.curve, t.epochs or 0) for t in self.trials if t.state == "complete"]
            if should_prune(self.curve, self.epochs, finished, mode=self.mode):
                self.stopped = "pruned"
                self.note = f"pruned after epoch {len(self.curve)} of {self.epochs}"
                raise CancelFitException(self.note)
        self._out_of_time()


def _line(t: Trial, metric: str) -> str:
    """One log line for a finished trial."""
    what = f"{metric} {t.score:.4f}" if t.score is not None else t.state
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in t.params.items())  # fmt: skip
    extra = f" ({t.note})" if t.note and t.state != "complete" else ""
    return f"trial {t.number} {t.family}: {what} in {t.seconds:.1f} s [{params}]{extra}"


def _sampler(seed: int) -> optuna.samplers.TPESampler:
    """TPE modelling the searched fields jointly (``multivariate``; ``group``: each
    family's fields apart), seeded."""
    _load_optuna()
    import optuna

    with warnings.catch_warnings():  # both options are marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """Optuna's own log at ERROR for the search (its per-trial INFO lines are ours)."""
    _load_optuna()
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _load_optuna() -> None:
    """Import optuna (heavy: not with this module, which every CLI command imports) on a
    thread of its own, once. Its import keeps the traceback of an optional import it
    cannot make (redis), and that traceback's frames hold every frame on the importing
    stack: imported from a search's own stack, it would pin the first search's data and
    models, and its callers'. A fresh thread's stack holds none of them. Where the import
    fails, the caller's ``import optuna`` raises the error."""
    if "optuna" in sys.modules:
        return

    def load() -> None:
        with suppress(ImportError):  # raised again by the caller's import, where it is seen
            importlib.import_module("optuna")

    t = threading.Thread(target=load, name="recfit-import-optuna", daemon=True)
    t.start()
    t.join()
