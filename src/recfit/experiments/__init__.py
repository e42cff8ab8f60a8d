"""Repeated experiments: named configurations × seeds, mean ± 2σ, paired comparisons.

One run is an anecdote. :func:`run_experiments` calls a user-supplied ``runner(name,
config, seed) -> {metric: value}`` for every configuration and seed, and collects an
:class:`ExperimentResults` with a tidy table of all runs, a summary (mean, standard
deviation with ``ddof=1``, and a ±2σ interval per configuration and metric), a paired
comparison against a baseline (per-seed differences, their mean and its 95% Student-t
interval for the number of seeds, so two or three seeds are not read as significant),
CSV / JSON / text output and a bar chart with ±2σ error bars.

Same splits per seed: the *runner* owns the data. It must derive everything random
from ``seed`` alone (the split with ``seed``, model initialisation and batch order with
``seed`` or numbers derived from it), and never from the configuration's name, so that
every configuration sees the same split for a given seed. Differences between
configurations are then paired by seed, which removes the split-to-split variation
from the comparison. :func:`seeds_for` gives the seeds.

Resuming: with ``out_dir``, each finished ``(config, seed)`` run is appended to
``out_dir/runs.jsonl`` (flushed and synced) the moment it finishes. Run the same
comparison again with the same ``out_dir`` and finished runs are read back, not redone.
A run whose configuration changed since it was recorded raises :class:`ConfigError`
(use a new ``out_dir``).

A comparison spec can live in TOML (:func:`load_compare_config`)::

    baseline = "none"
    runs = 10
    seed = 0

    [base]
    model = "classifier"
    epochs = 5

    [configs.none]
    imbalance = "none"

    [configs.smote]
    imbalance = "smote"
    epochs = 6          # overrides base

Example:
    >>> def runner(name, config, seed):
    ...     return {"accuracy": config["level"] + 0.01 * (seed % 3)}
    >>> res = run_experiments(
    ...     {"a": {"level": 0.40}, "b": {"level": 0.45}},
    ...     runner,
    ...     seeds_for(3),
    ...     progress=False,
    ...     baseline="a",
    ... )
    >>> res.summary()[["config", "metric", "n", "mean"]].round(3).to_dict("records")[1]
    {'config': 'b', 'metric': 'accuracy', 'n': 3, 'mean': 0.46}
    >>> round(float(res.paired("a", "accuracy").summary.loc[0, "mean"]), 6)
    0.05
"""

from recfit.experiments.records import RUNS_FILE, Runner, RunRecord, seeds_for
from recfit.experiments.results import (
    CONFIDENCE,
    ExperimentResults,
    Interval,
    PairedComparison,
    t_multiplier,
)
from recfit.experiments.running import load_results, run_experiments
from recfit.experiments.spec import CompareSpec, load_compare_config

__all__ = [
    "CONFIDENCE",
    "RUNS_FILE",
    "CompareSpec",
    "ExperimentResults",
    "Interval",
    "PairedComparison",
    "RunRecord",
    "Runner",
    "load_compare_config",
    "load_results",
    "run_experiments",
    "seeds_for",
    "t_multiplier",
]
