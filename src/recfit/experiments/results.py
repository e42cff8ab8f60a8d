"""The results of a comparison: tables, summaries with intervals, paired differences against
a baseline, CSV / JSON / text output and a bar chart."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from recfit.errors import ConfigError, UnknownMetricError
from recfit.experiments.records import RunRecord
from recfit.metrics.registry import metric_info

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CONFIDENCE", "ExperimentResults", "Interval", "PairedComparison", "t_multiplier"]

Interval = Literal["std", "sem"]
"""Which interval: ``"std"`` is the spread of single runs, ``mean ± 2σ`` with σ the
standard deviation over seeds (``ddof=1``); ``"sem"`` is the 95% confidence interval of
the mean, ``mean ± t·std/√n`` with Student's t for ``n - 1`` degrees of freedom
(:func:`t_multiplier`: 12.7 for two seeds, so two seeds rarely show a difference)."""


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
    from scipy.stats import t as student_t  # scipy.stats takes 0.8 s to import: only here

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
        from recfit.plots import plot_comparison  # matplotlib is heavy: only when drawing

        self._check_metric(metric)
        summ = self.summary(interval)
        summ = summ[summ.metric == metric].set_index("config").loc[list(self.configs)]
        return plot_comparison(
            summ,
            metric,
            baseline=self.baseline,
            interval=interval,
            n_seeds=len(self.seeds),
            ax=ax,
            title=title,
        )

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
