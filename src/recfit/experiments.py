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

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from recfit.errors import ConfigError, DataError, UnknownMetricError
from recfit.metrics.registry import metric_info

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
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

Runner = Callable[[str, Any, int], Mapping[str, float]]
"""``runner(name, config, seed) -> {metric: value}``."""

Interval = Literal["std", "sem"]
"""Which interval: ``"std"`` is the spread of single runs, ``mean ± 2σ`` with σ the
standard deviation over seeds (``ddof=1``); ``"sem"`` is the 95% confidence interval of
the mean, ``mean ± t·std/√n`` with Student's t for ``n - 1`` degrees of freedom
(:func:`t_multiplier`: 12.7 for two seeds, so two seeds rarely show a difference)."""

RUNS_FILE = "runs.jsonl"


def seeds_for(n: int, base_seed: int = 0) -> list[int]:
    """``n`` distinct seeds, ``base_seed, base_seed + 1, …`` (a prefix of any longer list).

    Ten runs extend five: ``seeds_for(10)`` starts with ``seeds_for(5)``, so a resumed
    comparison with more runs reuses the finished ones.

    Example:
        >>> seeds_for(3, base_seed=42)
        [42, 43, 44]
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"expected a number of runs >= 1, received {n!r}")
    return list(range(int(base_seed), int(base_seed) + n))


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class RunRecord:
    """One finished run: a configuration, a seed, its metrics and its wall time."""

    config: str
    seed: int
    metrics: dict[str, float]
    seconds: float
    fingerprint: str = ""

    def to_json(self) -> str:
        """One JSON line (NaN written as ``NaN``)."""
        return json.dumps(
            {
                "config": self.config,
                "seed": self.seed,
                "metrics": self.metrics,
                "seconds": self.seconds,
                "fingerprint": self.fingerprint,
            }
        )


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "model_dump"):
        return _jsonable(obj.model_dump())
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


def _fingerprint(config: Any) -> str:
    text = json.dumps(_jsonable(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_metrics(out: Any, name: str, seed: int) -> dict[str, float]:
    if not isinstance(out, Mapping) or not out:
        raise DataError(
            "expected the runner to return a non-empty mapping of metric name to number, "
            f"received {type(out).__name__} for config {name!r}, seed {seed}"
        )
    metrics: dict[str, float] = {}
    for key, value in out.items():
        if not isinstance(key, str) or isinstance(value, bool):
            raise DataError(
                f"expected metric name (str) -> number, received {key!r}: {value!r} "
                f"for config {name!r}, seed {seed}"
            )
        try:
            metrics[key] = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"expected a number for metric {key!r}, received {value!r} "
                f"for config {name!r}, seed {seed}",
                column=key,
            ) from None
    return metrics


def _read_runs(path: Path) -> list[RunRecord]:
    """Records in ``path``; a torn last line (an interrupted write) is cut off."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[RunRecord] = []
    good = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good += len(line) + 1
            continue
        try:
            d = json.loads(line)
            rec = RunRecord(
                config=str(d["config"]),
                seed=int(d["seed"]),
                metrics={str(k): float(v) for k, v in d["metrics"].items()},
                seconds=float(d.get("seconds", math.nan)),
                fingerprint=str(d.get("fingerprint", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            if i == len(lines) - 1:  # torn final write: drop it
                with path.open("r+b") as fh:
                    fh.truncate(good)
                break
            raise DataError(
                f"expected one JSON run record per line, received {line[:80]!r}",
                file=str(path),
                row=i,
            ) from None
        records.append(rec)
        good += len(line) + 1
    return records


def _append(path: Path, record: RunRecord) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(record.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------- running
def run_experiments(
    configs: Mapping[str, Any],
    runner: Runner,
    seeds: Sequence[int],
    out_dir: Path | str | None = None,
    progress: bool = True,
    baseline: str | None = None,
) -> ExperimentResults:
    """Run every configuration with every seed and collect the metrics.

    Runs go seed by seed (all configurations for the first seed, then the next), so
    an interrupted comparison has complete pairs for its finished seeds.

    Args:
        configs: configuration name → anything the runner understands (a dict, a
            dataclass, …). Names order the tables and the chart.
        runner: ``runner(name, config, seed) -> {metric: value}``. It must use the same
            split for a seed whatever the configuration (see the module docstring).
        seeds: distinct integer seeds, e.g. :func:`seeds_for(10) <seeds_for>`.
        out_dir: where ``runs.jsonl`` is kept; finished runs found there are reused.
        progress: show a progress bar (tqdm, on stderr).
        baseline: the configuration that :meth:`ExperimentResults.paired` and the text
            table compare against.

    Returns:
        An :class:`ExperimentResults` over ``configs × seeds``.

    Raises:
        ConfigError: no configurations, repeated seeds, an unknown baseline, or
            ``out_dir`` holding runs of a configuration that has since changed.

    Example:
        >>> res = run_experiments({"x": 1}, lambda n, c, s: {"m": c * s}, [1, 2], progress=False)
        >>> res.runs["value"].tolist()
        [1.0, 2.0]
    """
    names = list(configs)
    if not names:
        raise ConfigError("expected at least one configuration, received none")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"expected non-empty string configuration names, received {name!r}")
    seed_list = [_as_seed(s) for s in seeds]
    if not seed_list:
        raise ConfigError("expected at least one seed, received none")
    if len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"expected distinct seeds, received {seed_list}")
    if baseline is not None and baseline not in configs:
        raise ConfigError(f"expected baseline among {names}, received {baseline!r}")
    fingerprints = {name: _fingerprint(configs[name]) for name in names}

    done: dict[tuple[str, int], RunRecord] = {}
    path: Path | None = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / RUNS_FILE
        for rec in _read_runs(path):
            if rec.config in fingerprints and rec.seed in seed_list:
                if rec.fingerprint and rec.fingerprint != fingerprints[rec.config]:
                    raise ConfigError(
                        f"expected the runs in {str(path)!r} to come from the same "
                        f"configuration {rec.config!r}, received a changed configuration "
                        "(use a new out_dir, or remove that file to start over)"
                    )
                done[(rec.config, rec.seed)] = rec

    todo = [(n, s) for s in seed_list for n in names if (n, s) not in done]
    total = len(names) * len(seed_list)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=total - len(todo), desc="compare", disable=not progress)
    try:
        for name, seed in todo:
            bar.set_postfix_str(f"{name} seed {seed}")
            t0 = time.perf_counter()
            try:
                out_metrics = runner(name, configs[name], seed)
            except BaseException as exc:
                exc.add_note(
                    f"recfit: {len(done)} of {total} runs finished"
                    + (f" and saved in {str(path)!r}; rerun to resume" if path else "")
                )
                raise
            rec = RunRecord(
                name,
                seed,
                _check_metrics(out_metrics, name, seed),
                time.perf_counter() - t0,
                fingerprints[name],
            )
            if path is not None:
                _append(path, rec)
            done[(name, seed)] = rec
            bar.update(1)
    finally:
        bar.close()
    records = tuple(done[(n, s)] for s in seed_list for n in names)
    return ExperimentResults(records, tuple(names), tuple(seed_list), baseline)


def _as_seed(s: Any) -> int:
    if isinstance(s, bool) or not isinstance(s, int | np.integer):
        raise ConfigError(f"expected integer seeds, received {s!r}")
    return int(s)


def load_results(out_dir: Path | str, baseline: str | None = None) -> ExperimentResults:
    """Read back the runs recorded in ``out_dir/runs.jsonl`` (in the order recorded).

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = run_experiments({"a": 0}, lambda n, c, s: {"m": s}, [3], d, progress=False)
        >>> load_results(d).runs["value"].tolist()
        [3.0]
    """
    path = Path(out_dir) / RUNS_FILE
    if not path.exists():
        raise ConfigError(f"expected a results file, received no {str(path)!r}")
    records = _read_runs(path)
    last = {(r.config, r.seed): r for r in records}
    names = list(dict.fromkeys(r.config for r in records))
    seeds = list(dict.fromkeys(r.seed for r in records))
    if baseline is not None and baseline not in names:
        raise ConfigError(f"expected baseline among {names}, received {baseline!r}")
    return ExperimentResults(tuple(last.values()), tuple(names), tuple(seeds), baseline)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class PairedComparison:
    """Per-seed differences ``config - baseline`` of one metric.

    Attributes:
        baseline: the reference configuration.
        metric: the metric compared.
        differences: one row per seed (index ``seed``), one column per other config.
        summary: per config: ``n`` paired seeds, ``mean`` difference, ``std`` (ddof=1),
            ``sem``, the interval ``lo``/``hi`` (``"sem"``: the 95% Student-t interval of
            the mean; ``"std"``: mean ∓ 2σ),
            ``interval`` (its kind) and ``excludes_zero``.
    """

    baseline: str
    metric: str
    differences: pd.DataFrame
    summary: pd.DataFrame


CONFIDENCE = 0.95
"""Confidence level of the paired intervals (``interval="sem"``)."""


def t_multiplier(n: int, confidence: float = CONFIDENCE) -> float:
    """Student's t quantile for a two-sided ``confidence`` interval of a mean of ``n``
    values (``n - 1`` degrees of freedom); NaN below two values.

    With few seeds it is much wider than 2: 12.7 for two seeds, 4.3 for three, 2.26 for
    ten.

    Example:
        >>> round(t_multiplier(2), 2), round(t_multiplier(10), 2), t_multiplier(1)
        (12.71, 2.26, nan)
    """
    if n < 2:
        return math.nan
    from scipy.stats import t as student_t

    return float(student_t.ppf(0.5 + confidence / 2.0, n - 1))


def _stats(values: np.ndarray, interval: Interval) -> dict[str, float | int]:
    v = values[np.isfinite(values)]
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    sem = std / math.sqrt(n) if n > 1 else math.nan
    half = 2.0 * std if interval == "std" else t_multiplier(n) * sem
    return {"n": n, "mean": mean, "std": std, "sem": sem, "lo": mean - half, "hi": mean + half}


def _check_interval(interval: str) -> None:
    if interval not in ("std", "sem"):
        raise ConfigError(f"expected interval 'std' or 'sem', received {interval!r}")


@dataclass(frozen=True, eq=False)
class ExperimentResults:
    """Every run of a comparison, with summaries, paired differences, output and a chart.

    Attributes:
        records: the finished runs, seed-major.
        configs: configuration names, in order.
        seeds: the seeds, in order.
        baseline: the reference configuration for paired comparisons, if any.
    """

    records: tuple[RunRecord, ...]
    configs: tuple[str, ...]
    seeds: tuple[int, ...]
    baseline: str | None = None

    # ------------------------------------------------------------------ tables
    @property
    def metrics(self) -> list[str]:
        """Metric names in the order they first appear."""
        return list(dict.fromkeys(m for r in self.records for m in r.metrics))

    @property
    def runs(self) -> pd.DataFrame:
        """Tidy table of every run: columns ``config``, ``seed``, ``metric``, ``value``."""
        rows = [(r.config, r.seed, m, v) for r in self.records for m, v in r.metrics.items()]
        return pd.DataFrame(rows, columns=["config", "seed", "metric", "value"]).astype(
            {"seed": "int64", "value": "float64"}
        )

    def wide(self) -> pd.DataFrame:
        """One row per run (``config``, ``seed``, ``seconds``) with one column per metric."""
        rows = [
            {"config": r.config, "seed": r.seed, "seconds": r.seconds, **r.metrics}
            for r in self.records
        ]
        return pd.DataFrame(rows, columns=["config", "seed", "seconds", *self.metrics])

    def _values(self, config: str, metric: str) -> dict[int, float]:
        return {
            r.seed: r.metrics[metric]
            for r in self.records
            if r.config == config and metric in r.metrics
        }

    def _check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise ConfigError(f"expected a metric among {self.metrics}, received {metric!r}")

    def summary(self, interval: Interval = "std") -> pd.DataFrame:
        """Per configuration and metric: ``n``, ``mean``, ``std`` (ddof=1), ``sem``, ``lo``, ``hi``.

        ``lo``/``hi`` are ``mean ∓ 2σ`` with ``σ`` the standard deviation over seeds
        (``interval="std"``, the default: the error bars of single runs), or the 95%
        Student-t interval of the mean (``"sem"``, :func:`t_multiplier`). With one seed
        ``std`` is NaN.
        """
        _check_interval(interval)
        rows = []
        for name in self.configs:
            for metric in self.metrics:
                vals = np.array(list(self._values(name, metric).values()), dtype=np.float64)
                rows.append({"config": name, "metric": metric, **_stats(vals, interval)})
        cols = ["config", "metric", "n", "mean", "std", "sem", "lo", "hi"]
        return pd.DataFrame(rows, columns=cols).astype({"n": "int64"})

    def paired(
        self, baseline: str | None, metric: str, interval: Interval = "sem"
    ) -> PairedComparison:
        """Differences ``config - baseline`` of ``metric`` on the seeds both have.

        Args:
            baseline: the reference configuration (``None``: the results' own baseline).
            metric: the metric to compare.
            interval: ``"sem"`` (default): ``mean ± t·std/√n``, the 95% Student-t
                interval of the mean difference over the ``n`` paired seeds (``t`` for
                ``n - 1`` degrees of freedom); ``"std"``: ``mean ± 2·std``, the spread of
                single paired runs.

        Example:
            >>> recs = tuple(
            ...     RunRecord(c, s, {"acc": v}, 0.0)
            ...     for c, vals in {"a": [0.40, 0.42, 0.41], "b": [0.43, 0.44, 0.45]}.items()
            ...     for s, v in enumerate(vals)
            ... )
            >>> p = ExperimentResults(recs, ("a", "b"), (0, 1, 2)).paired("a", "acc")
            >>> p.differences["b"].round(2).tolist(), round(float(p.summary.loc[0, "mean"]), 3)
            ([0.03, 0.02, 0.04], 0.03)
        """
        _check_interval(interval)
        base = self.baseline if baseline is None else baseline
        if base is None or base not in self.configs:
            raise ConfigError(f"expected a baseline among {list(self.configs)}, received {base!r}")
        self._check_metric(metric)
        ref = self._values(base, metric)
        diffs: dict[str, pd.Series] = {}
        rows = []
        for name in self.configs:
            if name == base:
                continue
            vals = self._values(name, metric)
            common = [s for s in self.seeds if s in vals and s in ref]
            d = pd.Series([vals[s] - ref[s] for s in common], index=common, dtype="float64")
            diffs[name] = d
            st = _stats(d.to_numpy(), interval)
            rows.append(
                {
                    "config": name,
                    "baseline": base,
                    "metric": metric,
                    **st,
                    "interval": interval,
                    "excludes_zero": bool(st["lo"] > 0 or st["hi"] < 0),
                }
            )
        differences = pd.DataFrame(diffs, index=pd.Index(list(self.seeds), name="seed"))
        cols = ["config", "baseline", "metric", "n", "mean", "std", "sem", "lo", "hi"]
        summary = pd.DataFrame(rows, columns=[*cols, "interval", "excludes_zero"])
        return PairedComparison(base, metric, differences, summary.astype({"n": "int64"}))

    # ------------------------------------------------------------------ output
    def table(self, metrics: Sequence[str] | None = None, digits: int = 4) -> str:
        """A readable text table: ``mean ± 2σ`` per configuration and metric, then the
        paired differences against the baseline (when there is one).

        Example:
            >>> recs = tuple(RunRecord(c, s, {"acc": 0.4 + 0.1 * (c == "b") + 0.01 * s}, 0.0)
            ...              for s in range(3) for c in ("a", "b"))
            >>> print(ExperimentResults(recs, ("a", "b"), (0, 1, 2), baseline="a").table(digits=3))
            mean ± 2σ over 3 seeds (σ: standard deviation, ddof=1)
            config  acc
            a       0.410 ± 0.020
            b       0.510 ± 0.020
            <BLANKLINE>
            paired difference vs a over 3 seeds (mean [lo, hi]: 95% Student-t interval of the mean, t = 4.30 for 2 degrees of freedom)
            config  acc
            b       +0.100 [+0.100, +0.100] *
            <BLANKLINE>
            * interval excludes 0 (significant at 95% over 3 seeds)
        """
        names = list(metrics) if metrics is not None else self.metrics
        for m in names:
            self._check_metric(m)
        summ = self.summary("std")
        cells: dict[str, list[str]] = {}
        for name in self.configs:
            row = []
            for m in names:
                s = summ[(summ.config == name) & (summ.metric == m)].iloc[0]
                row.append(f"{s['mean']:.{digits}f} ± {2 * s['std']:.{digits}f}")
            cells[name] = row
        header = ["config", *(_titled(m) for m in names)]
        lines = [
            f"mean ± 2σ over {len(self.seeds)} seeds (σ: standard deviation, ddof=1)",
            *_grid(header, [[n, *cells[n]] for n in self.configs]),
        ]
        if self.baseline is not None and len(self.configs) > 1:
            body: dict[str, list[str]] = {n: [] for n in self.configs if n != self.baseline}
            n_pairs: set[int] = set()
            for m in names:
                p = self.paired(self.baseline, m).summary
                for _, s in p.iterrows():
                    n_pairs.add(int(s["n"]))
                    star = " *" if s["excludes_zero"] else ""
                    body[s["config"]].append(
                        f"{s['mean']:+.{digits}f} [{s['lo']:+.{digits}f}, {s['hi']:+.{digits}f}]{star}"
                    )
            n_p = max(n_pairs) if len(n_pairs) == 1 else None
            seeds = f"{n_p} seeds" if n_p is not None else f"{sorted(n_pairs)} seeds"
            t_txt = (
                f", t = {t_multiplier(n_p):.2f} for {n_p - 1} degrees of freedom"
                if n_p is not None and n_p > 1
                else ""
            )
            lines += [
                "",
                f"paired difference vs {self.baseline} over {seeds} (mean [lo, hi]: 95% "
                f"Student-t interval of the mean{t_txt})",
                *_grid(header, [[n, *v] for n, v in body.items()]),
                "",
                f"* interval excludes 0 (significant at 95% over {seeds})",
            ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_csv(self, path: Path | str, which: Literal["summary", "runs"] = "summary") -> Path:
        """Write the summary (default) or the tidy runs table as CSV; returns the path."""
        if which not in ("summary", "runs"):
            raise ConfigError(f"expected which 'summary' or 'runs', received {which!r}")
        frame = self.summary() if which == "summary" else self.runs
        p = Path(path)
        frame.to_csv(p, index=False)
        return p

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain JSON-able data (NaN becomes ``None``)."""
        out: dict[str, Any] = {
            "configs": list(self.configs),
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "metrics": self.metrics,
            "runs": [
                {"config": r.config, "seed": r.seed, "seconds": r.seconds, "metrics": r.metrics}
                for r in self.records
            ],
            "summary": self.summary().to_dict("records"),
        }
        if self.baseline is not None and len(self.configs) > 1:
            out["paired"] = {
                m: self.paired(self.baseline, m).summary.to_dict("records") for m in self.metrics
            }
        return _nan_to_none(out)  # type: ignore[no-any-return]

    def to_json(self, path: Path | str) -> Path:
        """Write :meth:`to_dict` as JSON; returns the path."""
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return p

    def plot(
        self,
        metric: str,
        interval: Interval = "std",
        *,
        ax: Axes | None = None,
        title: str | None = None,
    ) -> Figure:
        """Bar chart of ``metric`` per configuration with ±2σ error bars.

        The baseline's bar is drawn darker. Save with ``fig.savefig("acc.png")``.
        Drawn with matplotlib's object API on the Agg canvas (headless, no pyplot).

        Example:
            >>> recs = tuple(RunRecord(c, s, {"acc": 0.4 + 0.01 * s}, 0.0)
            ...              for s in range(3) for c in ("a", "b"))
            >>> fig = ExperimentResults(recs, ("a", "b"), (0, 1, 2)).plot("acc")
            >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
            ['a', 'b']
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self._check_metric(metric)
        summ = self.summary(interval)
        summ = summ[summ.metric == metric].set_index("config").loc[list(self.configs)]
        if ax is None:
            fig = Figure(
                figsize=(max(4.0, 1.1 * len(self.configs) + 1.5), 3.6), layout="constrained"
            )
            FigureCanvasAgg(fig)
            ax = fig.add_subplot()
        else:
            fig = ax.get_figure()  # type: ignore[assignment]
        means = summ["mean"].to_numpy()
        err = (summ["hi"] - summ["mean"]).to_numpy()
        colors = ["#1f4e79" if n == self.baseline else "#6fa8dc" for n in self.configs]
        x = np.arange(len(self.configs))
        ax.bar(x, means, yerr=np.nan_to_num(err), capsize=5, color=colors, edgecolor="black")
        ax.set_xticks(x, list(self.configs), rotation=20 if len(self.configs) > 4 else 0)
        ax.set_ylabel(metric)
        kind = "± 2σ, standard deviation" if interval == "std" else "95% Student-t interval"
        ax.set_title(title or f"{metric}: mean {kind} over {len(self.seeds)} seeds")
        for xi, m, e in zip(x, means, np.nan_to_num(err), strict=True):
            ax.annotate(
                f"{m:.3f}",
                (xi, m + e),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=8,
            )
        return fig

    def save(self, out_dir: Path | str, metrics: Sequence[str] | None = None) -> dict[str, Path]:
        """Write ``summary.csv``, ``runs.csv``, ``results.json``, ``results.txt`` and one
        ``<metric>.png`` chart per metric into ``out_dir``; returns the paths by name."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        names = list(metrics) if metrics is not None else self.metrics
        paths = {
            "summary.csv": self.to_csv(out / "summary.csv"),
            "runs.csv": self.to_csv(out / "runs.csv", "runs"),
            "results.json": self.to_json(out / "results.json"),
        }
        txt = out / "results.txt"
        txt.write_text(self.table(names) + "\n", encoding="utf-8")
        paths["results.txt"] = txt
        for m in names:
            png = out / f"{_safe_name(m)}.png"
            self.plot(m).savefig(png, dpi=120)
            paths[png.name] = png
        return paths


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "metric"


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj


def _titled(metric: str) -> str:
    """``metric`` with its direction (↑ higher is better, ↓ lower) when recfit knows it."""
    try:
        return f"{metric} {metric_info(metric).arrow}"
    except UnknownMetricError:
        return metric


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


# --------------------------------------------------------------------------- TOML spec
_TOP_KEYS = ("base", "configs", "baseline", "runs", "seed", "metrics", "title")


@dataclass(frozen=True)
class CompareSpec:
    """A comparison read from TOML by :func:`load_compare_config`.

    Attributes:
        configs: name → the ``[base]`` table deep-merged with ``[configs.NAME]``.
        base: the ``[base]`` table.
        overrides: name → the ``[configs.NAME]`` table as written.
        baseline: the reference configuration (``baseline = "..."``), if any.
        runs: the number of seeds (``runs = 10``), if given.
        seed: the first seed (``seed = 0`` by default).
        metrics: metrics to report and chart (``metrics = [...]``), if given.
        title: a title for the report, if given.
        path: the file it came from.
    """

    configs: dict[str, dict[str, Any]]
    base: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    baseline: str | None
    runs: int | None
    seed: int
    metrics: list[str] | None
    title: str | None
    path: Path

    def seeds(self, runs: int | None = None) -> list[int]:
        """:func:`seeds_for` with ``runs`` (or the file's ``runs``) from ``seed``."""
        n = runs if runs is not None else self.runs
        if n is None:
            raise ConfigError(
                f"expected runs in {str(self.path)!r} or as an argument, received none"
            )
        return seeds_for(n, self.seed)

    def run(
        self,
        runner: Runner,
        runs: int | None = None,
        out_dir: Path | str | None = None,
        progress: bool = True,
    ) -> ExperimentResults:
        """:func:`run_experiments` over this spec's configurations and seeds."""
        return run_experiments(
            self.configs, runner, self.seeds(runs), out_dir, progress, self.baseline
        )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def load_compare_config(path: Path | str) -> CompareSpec:
    """Read a comparison spec: a ``[base]`` table and one ``[configs.NAME]`` table per
    configuration, each overriding ``base`` (nested tables merge key by key).

    Top-level keys: ``base``, ``configs``, ``baseline``, ``runs``, ``seed``, ``metrics``,
    ``title``. Keys inside the configuration tables are not checked here: the runner
    that consumes a configuration rejects the keys it does not know.

    Raises:
        ConfigError: the file is missing, is not valid TOML (the message names the file
            and line), or its top-level shape is wrong.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "compare.toml"
        >>> _ = p.write_text('''
        ... baseline = "a"
        ... [base]
        ... epochs = 5
        ... [configs.a]
        ... [configs.b]
        ... epochs = 7
        ... ''')
        >>> spec = load_compare_config(p)
        >>> spec.configs, spec.baseline
        ({'a': {'epochs': 5}, 'b': {'epochs': 7}}, 'a')
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"expected a readable comparison file, received {str(p)!r}: {exc}"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        where = f"file {str(p)!r}" + (f", line {m.group(1)}" if m else "")
        raise ConfigError(f"expected valid TOML, received an error: {exc} ({where})") from exc
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(
            f"expected top-level keys among {list(_TOP_KEYS)}, received {unknown} (file {str(p)!r})"
        )
    base = data.get("base", {})
    if not isinstance(base, dict):
        raise ConfigError(f"expected [base] to be a table, received {base!r} (file {str(p)!r})")
    configs = data.get("configs")
    if not isinstance(configs, dict) or not configs:
        raise ConfigError(
            f"expected at least one [configs.NAME] table, received none (file {str(p)!r})"
        )
    overrides: dict[str, dict[str, Any]] = {}
    for name, table in configs.items():
        if not isinstance(table, dict):
            raise ConfigError(
                f"expected [configs.{name}] to be a table, received {table!r} (file {str(p)!r})"
            )
        overrides[name] = table
    baseline = data.get("baseline")
    if baseline is not None and baseline not in overrides:
        raise ConfigError(
            f"expected baseline among {list(overrides)}, received {baseline!r} (file {str(p)!r})"
        )
    runs = data.get("runs")
    if runs is not None and (not isinstance(runs, int) or isinstance(runs, bool) or runs < 1):
        raise ConfigError(f"expected runs >= 1, received {runs!r} (file {str(p)!r})")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"expected an integer seed, received {seed!r} (file {str(p)!r})")
    metrics = data.get("metrics")
    if metrics is not None and (
        not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics)
    ):
        raise ConfigError(
            f"expected metrics as a list of names, received {metrics!r} (file {str(p)!r})"
        )
    title = data.get("title")
    return CompareSpec(
        configs={name: _merge(base, over) for name, over in overrides.items()},
        base=base,
        overrides=overrides,
        baseline=baseline,
        runs=runs,
        seed=seed,
        metrics=metrics,
        title=None if title is None else str(title),
        path=p,
    )
