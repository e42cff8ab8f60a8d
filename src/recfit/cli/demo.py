"""``recfit demo``: the main job end to end on MovieLens 100K.

The demo trains one model, SVD++ (:data:`DEMO_MODEL`), so that it answers in seconds:
``model="auto"`` with its default budget would search every rating family for two
minutes on ml-100k (:func:`recfit.config.rating.default_budget`). SVD++ is what ``auto``
without a search (``budget`` 0) picks on data this size, and it has item vectors, so the
similar movies come from the model that made the recommendations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recfit.cli.common import errors
from recfit.config import RatingConfig
from recfit.config.rating import default_budget
from recfit.data import load_dataset, split_dataset
from recfit.runs import recommender_of, train_run
from recfit.tasks.rating import resolve_config

__all__ = ["DEMO_MODEL", "R1_REFERENCE", "demo"]

DEMO_MODEL = "svdpp"
"""The family the demo trains (see the module documentation)."""

R1_REFERENCE = {
    "fastai tutorial (older fastai, unseeded split)": 0.8115,
    "fastai 2.8.12, split seed 42 (2-core CPU, 31 s)": 0.846,
}
"""Published valid MSE for protocol R1 (ml-100k, random 20% validation), from docs/protocols.md."""

_console = Console()


def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="RECFIT_DATA_DIR", help="Folder holding ml-100k."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")] = Path(
        "runs/demo"
    ),
    user: Annotated[str, typer.Option(help="User whose top-10 to show.")] = "196",
    item: Annotated[str, typer.Option(help="Movie whose neighbours to show.")] = "Star Wars (1977)",
    epochs: Annotated[int | None, typer.Option(help="Override the number of epochs.")] = None,
) -> None:
    """Load MovieLens 100K, split it, train SVD++ (one model, in seconds), print metrics
    next to the published reference, and show recommendations and similar movies."""
    with errors():
        cfg = RatingConfig(
            dataset="ml-100k",
            data_dir=None if data_dir is None else str(data_dir),
            model=DEMO_MODEL,
        ).replace(epochs=epochs)
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir)
        s = data.summary()
        _console.rule("[bold]MovieLens 100K")
        _console.print(
            f"{s['ratings']:,} ratings · {s['users']:,} users · {s['items']:,} movies · "
            f"density {s['density']:.2%} · mean rating {s['rating_mean']:.3f}"
        )
        split = split_dataset(data, cfg.split, seed=cfg.seed, data_dir=cfg.data_dir)
        ss = split.summary()
        _console.print(
            f"split {ss['split']} (seed {cfg.seed}): {ss['train']:,} train / {ss['test']:,} "
            f"validation; {ss['cold_users']} cold users, {ss['cold_items']} cold items"
        )
        shown = resolve_config(cfg, split.train)  # the family's defaults, what opt "auto" becomes
        _console.rule(
            f"[bold]Training {shown.model} ({shown.n_factors} factors, {shown.epochs} epochs), "
            "protocol R1"
        )
        n_train = len(split.train_idx)
        _console.print(
            f"why {shown.model}: the demo trains one model to answer in seconds ({shown.model} is "
            "what model auto picks here without a search); `recfit train` with no flags "
            f"searches every rating family for {default_budget(n_train):.0f} s on these "
            f"{n_train:,} training ratings (model auto, budget by size) and keeps the best "
            "single model or a blend",
            markup=False,
        )
        result = train_run(cfg, out, data=data, force=True)  # the demo replaces its own run
        m = result.metrics
        table = Table(title="validation (protocol R1)")
        table.add_column("model")
        table.add_column("MSE", justify="right")
        table.add_column("RMSE", justify="right")
        table.add_row(
            f"recfit {result.config.model}, {m['fit_seconds']:.1f} s",
            f"{m['mse']:.4f}",
            f"{m['rmse']:.4f}",
            style="bold green",
        )
        for name, ref in R1_REFERENCE.items():
            table.add_row(name, f"{ref:.4f}", f"{ref**0.5:.4f}")
        _console.print(table)

        rec = recommender_of(result)
        recs = rec.recommend(user, n=10, exclude_seen=True).to_frame()
        _console.rule(f"[bold]Top 10 for user {user} (movies they rated are excluded)")
        _console.print(_frame_table(recs, "item", "title", "score", "predicted rating"))
        target = rec.resolve_item(item)
        sims = rec.similar_items([target], n=10).to_frame()
        _console.rule(f"[bold]The 10 movies most similar to {rec.title(target) or target}")
        _console.print(_frame_table(sims, "neighbour", "title", "score", "cosine"))
        _console.print(f"run directory: {result.out}  (try: recfit serve {result.out})")


def _frame_table(frame: Any, id_col: str, title_col: str, score_col: str, score_name: str) -> Table:
    table = Table(show_header=True, header_style="bold")
    for name, justify in (
        ("#", "right"),
        ("id", "right"),
        ("title", "left"),
        (score_name, "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for k, row in enumerate(frame.itertuples(index=False), start=1):
        d = row._asdict()
        table.add_row(str(k), str(d[id_col]), str(d[title_col] or ""), f"{d[score_col]:.3f}")
    return table
