"""``recfit data``: inspect, split and synthesise rating data.

``DATASET`` is a MovieLens name (``ml-100k``, ``ml-1m``, ...), the path of a CSV, TSV
or Parquet file whose columns are chosen with ``--user/--item/--rating/--timestamp/
--weight``, or a folder: an extracted MovieLens release (or the folder holding one), or
a folder holding exactly one rating file. ``--duplicates`` applies to every source.
Errors print one red line and exit with code 2.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recfit.cli.common import Flag, errors, with_flags
from recfit.data.interactions import Interactions
from recfit.data.io import write_parquet
from recfit.data.sources import load_dataset, split_dataset
from recfit.data.synthetic import synthetic
from recfit.errors import ConfigError

__all__ = ["app"]

app = typer.Typer(help="Inspect, split and synthesise rating data.", no_args_is_help=True)


SOURCE_FLAGS = (
    Flag("data_dir", Path | None, None, "Folder holding the MovieLens releases."),
    Flag("user", str, "user", "User id column (files)."),
    Flag("item", str, "item", "Item id column (files)."),
    Flag("rating", str, "rating", "Rating column (files)."),
    Flag("timestamp", str | None, None, "Timestamp column (files)."),
    Flag("weight", str | None, None, "Weight column (files)."),
    Flag("duplicates", str, "error", "Repeated (user, item) pairs: error, last or mean."),
)
"""Where the ratings come from and how a file's columns are read (``load_dataset``'s
keyword arguments), shared by every command."""
DatasetArg = Annotated[
    str, typer.Argument(help="MovieLens name, rating file, or a folder holding either.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


@app.callback()
def _data() -> None:
    """Inspect, split and synthesise rating data."""


def _fmt_count(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.1f}"


def _info_summary(data: Interactions) -> dict[str, Any]:
    s = data.summary()
    s["sparsity"] = 1.0 - float(s["density"])
    s["rating_scale"] = list(data.rating_scale) if data.rating_scale is not None else None
    s["user_features"] = s.get("user_features", [])
    s["item_features"] = s.get("item_features", [])
    return s


def _two_columns(title: str) -> Table:
    """A table of names (bold) and values (right-aligned), without a header."""
    t = Table(title=title, show_header=False)
    t.add_column("", style="bold")
    t.add_column("", justify="right")
    return t


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d")


@app.command()
@with_flags(SOURCE_FLAGS, into="source")
def info(dataset: DatasetArg, as_json: JsonOpt = False, *, source: dict[str, Any]) -> None:
    """Counts, sparsity, rating histogram, activity quantiles and features of a dataset."""
    with errors():
        data = load_dataset(dataset, **source)
        s = _info_summary(data)
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    console = Console()
    t = _two_columns(f"{s['name']}")
    t.add_row("ratings", f"{s['ratings']:,}")
    t.add_row("users", f"{s['users']:,} ({s['users_with_ratings']:,} with ratings)")
    t.add_row("items", f"{s['items']:,} ({s['items_with_ratings']:,} with ratings)")
    t.add_row("density", f"{s['density']:.4%}")
    t.add_row("sparsity", f"{s['sparsity']:.4%}")
    t.add_row("rating mean", f"{s['rating_mean']:.3f}")
    t.add_row("rating range", f"{s['rating_min']:g} .. {s['rating_max']:g}")
    if s["rating_scale"] is not None:
        t.add_row("rating scale", f"{s['rating_scale'][0]:g} .. {s['rating_scale'][1]:g}")
    if "time_min" in s:
        t.add_row("time", f"{_iso(s['time_min'])} .. {_iso(s['time_max'])}")
    t.add_row("weighted", "yes" if s["weighted"] else "no")
    t.add_row("bytes per rating", f"{s['bytes_per_rating']:.1f}")
    t.add_row("user features", ", ".join(s["user_features"]) or "none")
    t.add_row("item features", ", ".join(s["item_features"]) or "none")
    console.print(t)

    hist: dict[str, int] = s["rating_histogram"]
    h = Table(title="rating histogram")
    h.add_column("rating", justify="right")
    h.add_column("count", justify="right")
    h.add_column("share", justify="right")
    h.add_column("")
    top = max(hist.values()) if hist else 1
    shown = list(hist.items())
    if len(shown) > 20:  # continuous ratings: show only the 20 most frequent values
        shown = sorted(sorted(shown, key=lambda kv: -kv[1])[:20], key=lambda kv: float(kv[0]))
    for value, count in shown:
        bar = "█" * max(1 if count else 0, round(30 * count / top))
        h.add_row(value, f"{count:,}", f"{count / max(1, s['ratings']):.1%}", bar)
    console.print(h)

    q = Table(title="ratings per user / per item (quantiles)")
    q.add_column("")
    for k in s["user_activity_quantiles"]:
        q.add_column(k, justify="right")
    q.add_row("user activity", *(_fmt_count(v) for v in s["user_activity_quantiles"].values()))
    q.add_row("item popularity", *(_fmt_count(v) for v in s["item_popularity_quantiles"].values()))
    console.print(q)


@app.command()
@with_flags(SOURCE_FLAGS, into="source")
def split(
    dataset: DatasetArg,
    spec: Annotated[
        str,
        typer.Option(
            "--split",
            help="random:F, user:F, temporal:F, last:K, kfold:K:J, or u1..u5/ua/ub (ml-100k).",
        ),
    ] = "random:0.2",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 42,
    cold: Annotated[
        str, typer.Option("--cold", help="Test users/items unseen in train: keep or drop.")
    ] = "keep",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write train.parquet and test.parquet here.")
    ] = None,
    as_json: JsonOpt = False,
    *,
    source: dict[str, Any],
) -> None:
    """Split a dataset and print the summary; with --out, write the two parts as Parquet."""
    with errors():
        if cold not in ("keep", "drop"):
            raise ConfigError(f"expected --cold keep or drop, received {cold!r}")
        data = load_dataset(dataset, **source)
        sp = split_dataset(data, spec, seed=seed, cold=cold, data_dir=source["data_dir"])  # type: ignore[arg-type]
        summary: dict[str, Any] = dict(sp.summary())
        summary["seed"] = seed
        written: list[str] = []
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            for part, d in (("train", sp.train), ("test", sp.test)):
                target = out / f"{part}.parquet"
                write_parquet(d, target)
                written.append(str(target))
            summary["written"] = written
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    console = Console()
    t = _two_columns(f"split {summary.get('split', spec)} of {dataset}")
    for key, value in summary.items():
        if key == "written":
            continue
        t.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    console.print(t)
    for path in written:
        console.print(f"wrote {escape(path)}")


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    ratings: Annotated[int, typer.Option("--ratings", help="Number of ratings.")] = 100_000,
    users: Annotated[int, typer.Option("--users", help="Number of users.")] = 943,
    items: Annotated[int, typer.Option("--items", help="Number of items.")] = 1682,
    factors: Annotated[int, typer.Option("--factors", help="Rank of the taste structure.")] = 8,
    noise: Annotated[float, typer.Option("--noise", help="Noise (stars on a 1-5 scale).")] = 0.5,
    half_stars: Annotated[bool, typer.Option("--half-stars", help="Round to half stars.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
) -> None:
    """Generate MovieLens-shaped synthetic ratings and write them as Parquet."""
    console = Console()
    with errors():
        console.print(f"generating {ratings:,} ratings for {users:,} users x {items:,} items ...")
        t0 = time.perf_counter()
        data = synthetic(
            ratings, users, items, n_factors=factors, noise=noise, seed=seed,
            half_stars=half_stars, rating_scale=(0.5, 5) if half_stars else (1, 5),
        )  # fmt: skip
        t1 = time.perf_counter()
        out.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(data, out)
        t2 = time.perf_counter()
    size = out.stat().st_size
    console.print(
        f"generated in {t1 - t0:.2f} s; wrote {escape(str(out))} ({size / 1e6:.1f} MB) in {t2 - t1:.2f} s"
    )
