"""What a search returns: each trial (:class:`Trial`) and the outcome (:class:`TuneResult`),
with the table, plot and files ``recfit tune`` writes.

Example:
    >>> from recfit.config import RatingConfig
    >>> t = [Trial(0, "dot", {"lr": 0.01}, 0.9, 1.0, "complete", curve=(1.0, 0.9), default=True),
    ...      Trial(1, "dot", {"lr": 0.1}, None, 0.4, "pruned", curve=(1.2,))]
    >>> r = TuneResult(RatingConfig(model="dot", lr=0.01), 0.9, t, "rmse", "min")
    >>> r.table()[["number", "state", "score", "lr"]].to_dict("list")
    {'number': [0, 1], 'state': ['complete', 'pruned'], 'score': [0.9, nan], 'lr': [0.01, 0.1]}
    >>> r.counts()
    {'complete': 1, 'pruned': 1, 'failed': 0, 'timeout': 0}
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import pandas as pd

from recfit._fs import atomic_write
from recfit.config import BaseTrainConfig
from recfit.config.io import to_toml

__all__ = ["TRIAL_STATES", "Trial", "TrialState", "TuneResult"]

C = TypeVar("C", bound=BaseTrainConfig)

TrialState = Literal["complete", "pruned", "failed", "timeout"]
"""How a trial ended: trained to the end and scored, stopped early by the pruning rule,
failed (an invalid or diverging setting: :attr:`Trial.note` says why), or stopped when
the time budget ran out."""
TRIAL_STATES: tuple[TrialState, ...] = ("complete", "pruned", "failed", "timeout")


@dataclass(frozen=True)
class Trial:
    """One configuration tried by :func:`~recfit.tasks.tuning.tune`.

    Attributes:
        number: its place in the search, from 0.
        family: the model family it trained.
        params: the values of the searched config fields.
        score: the inner-validation metric after training (``complete`` trials only;
            ``None`` otherwise: a stopped trial's last value is in ``curve``).
        seconds: wall-clock seconds (building, training and scoring).
        state: ``"complete"``, ``"pruned"``, ``"failed"`` or ``"timeout"``.
        curve: the inner metric after each epoch (empty for a trainer that reports no
            epochs to callbacks: ALS, a closed-form fit).
        epochs: the epochs the setting asked for (``None``: it has no epochs).
        default: the trial of the config's own values (tried first).
        note: why it failed or was stopped.
    """

    number: int
    family: str
    params: dict[str, Any]
    score: float | None
    seconds: float
    state: TrialState
    curve: tuple[float, ...] = ()
    epochs: int | None = None
    default: bool = False
    note: str = ""


@dataclass
class TuneResult(Generic[C]):
    """The outcome of a search.

    Attributes:
        best_config: the best trial's configuration (a config of the searched config's
            class: train it with ``recfit train --config best.toml`` or
            :func:`recfit.runs.train_run`).
        best_score: its inner-validation score.
        trials: every trial, in order.
        metric: the metric scored (``rmse`` for the rating task).
        mode: ``"min"`` or ``"max"`` (the metric's direction).
        seconds: wall-clock seconds of the whole search.
        budget_s: the time budget it had.
        seed: the sampler's seed.
        fit_rows, valid_rows: rows trials trained on and were scored on.
        pruned_by: the pruning rule (empty: none).
        kept: what the search's ``keep`` returned for the best trial (``None``: no
            ``keep``).
    """

    best_config: C
    best_score: float
    trials: list[Trial]
    metric: str
    mode: Literal["min", "max"]
    seconds: float = 0.0
    budget_s: float = math.inf
    seed: int = 0
    fit_rows: int = 0
    valid_rows: int = 0
    pruned_by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    kept: Any = field(default=None, repr=False)

    @property
    def best_trial(self) -> Trial:
        """The complete trial with the best score (the first of equals)."""
        done = [t for t in self.trials if t.state == "complete" and t.score is not None]
        sign = 1.0 if self.mode == "min" else -1.0
        return min(done, key=lambda t: (sign * float(t.score or 0.0), t.number))

    @property
    def default_score(self) -> float | None:
        """The inner score of the config's own values (``None``: not scored)."""
        return next((t.score for t in self.trials if t.default), None)

    def counts(self) -> dict[str, int]:
        """Trials by state."""
        return {s: sum(t.state == s for t in self.trials) for s in TRIAL_STATES}

    def table(self) -> pd.DataFrame:
        """One row per trial: ``number``, ``family``, ``state``, ``score``, ``seconds``,
        ``epochs_done``, ``default``, ``best`` and one column per searched field."""
        best = self.best_trial.number if self.counts()["complete"] else -1
        rows = []
        for t in self.trials:
            rows.append(
                {
                    "number": t.number,
                    "family": t.family,
                    "state": t.state,
                    "score": math.nan if t.score is None else t.score,
                    "seconds": round(t.seconds, 3),
                    "epochs_done": len(t.curve),
                    "default": t.default,
                    "best": t.number == best,
                    **{k: _cell(v) for k, v in t.params.items()},
                    "note": t.note,
                }
            )
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        """The table as Markdown, best first, with a one-line summary above it."""
        df = self.table()
        df = df.assign(_k=df["score"] * (1 if self.mode == "min" else -1))
        df = df.sort_values(["_k", "number"], na_position="last").drop(columns=["_k", "note"])
        head = (
            f"{len(self.trials)} trials in {self.seconds:.0f} s (budget {self.budget_s:g} s): "
            + ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
            + f". Inner {self.metric} ({'lower' if self.mode == 'min' else 'higher'} is "
            f"better) on {self.valid_rows:,} rows cut from the training part; "
            f"best {self.best_score:.4f}"
        )
        if self.default_score is not None:
            head += f", the config's own values {self.default_score:.4f}"
        cols = list(df.columns)
        lines = [head + ".", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in df.itertuples(index=False):
            lines.append("| " + " | ".join(_md(v) for v in row) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path | None = None) -> Any:
        """The figure of the search (each trial's score by number with the best so far,
        and each trial's inner metric by epoch); saved to ``path`` when given.
        Returns the :class:`matplotlib.figure.Figure`."""
        from recfit.plots import plot_trials  # matplotlib: imported when drawing

        fig = plot_trials([asdict(t) for t in self.trials], self.metric, self.mode)
        if path is not None:
            fig.savefig(path, dpi=100)
        return fig

    def summary(self) -> dict[str, Any]:
        """What the search did, as JSON-able values (``tune.json``)."""
        best = self.best_trial
        return {
            "metric": self.metric,
            "mode": self.mode,
            "best_score": self.best_score,
            "best_trial": best.number,
            "best_family": best.family,
            "best_params": best.params,
            "default_score": self.default_score,
            "trials": self.counts(),
            "seconds": self.seconds,
            "budget_s": self.budget_s,
            "seed": self.seed,
            "fit_rows": self.fit_rows,
            "valid_rows": self.valid_rows,
            "pruning": self.pruned_by or None,
            "chosen_on": "an inner validation cut of the training part only",
            **self.extra,
        }

    def write(self, out: str | Path) -> dict[str, Path]:
        """Write ``trials.csv``, ``trials.md``, ``trials.png``, ``best.toml`` (runnable by
        ``recfit train --config``) and ``tune.json`` into the folder ``out`` (created);
        returns their paths by name."""
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        paths = {n: d / n for n in ("trials.csv", "trials.md", "trials.png", "best.toml",
                                    "tune.json")}  # fmt: skip
        atomic_write(paths["trials.csv"], self.table().to_csv(index=False))
        atomic_write(paths["trials.md"], self.markdown())
        head = (
            f"# chosen by recfit tune: trial {self.best_trial.number} of {len(self.trials)}, "
            f"inner {self.metric} {self.best_score:.4f}\n"
        )
        atomic_write(paths["best.toml"], head + to_toml(self.best_config))
        atomic_write(paths["tune.json"], json.dumps(self.summary(), indent=2, default=str) + "\n")
        self.plot(paths["trials.png"])
        return paths


def _cell(v: Any) -> Any:
    """A parameter value as a table cell (sequences as text)."""
    return str(v) if isinstance(v, list | tuple) else v


def _md(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)
