"""Hyper-parameter search (``recfit tune``): Optuna over a family's search space, every
trial scored on an inner validation cut of the training part only.

Example:
    >>> from recfit.config import RatingConfig
    >>> from recfit.data.synthetic import synthetic
    >>> d = synthetic(3000, 60, 50, seed=0)
    >>> cfg = RatingConfig(model="dot", n_factors=4, epochs=2, bs=64)
    >>> r = tune(cfg, d, n_trials=3, seed=0)
    >>> [t.state for t in r.trials], r.trials[0].default, type(r.best_config).__name__
    (['complete', 'complete', 'complete'], True, 'RatingConfig')
    >>> r.best_score == min(t.score for t in r.trials)
    True
"""

from recfit.tasks.tuning.result import TRIAL_STATES, Trial, TrialState, TuneResult
from recfit.tasks.tuning.search import PRUNE_MIN_TRIALS, search_space, should_prune, tune

__all__ = [
    "PRUNE_MIN_TRIALS",
    "TRIAL_STATES",
    "Trial",
    "TrialState",
    "TuneResult",
    "search_space",
    "should_prune",
    "tune",
]
