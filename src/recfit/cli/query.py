"""``recfit recommend``, ``recfit similar`` and ``recfit predict``: queries on a run's bundle.

Items may be given by id or by title (exact, then case-insensitive; an ambiguous or
unknown title is an error listing the closest matches). Errors print one red line and
exit with code 2. Numbers are titled by what the model outputs (``predicted rating`` or
``score``, :data:`recfit.models.OUTPUT_TITLES`); a prediction answered by the baseline
(the user or item had no training ratings) is marked ``*`` with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recfit.cli.common import errors
from recfit.errors import ConfigError
from recfit.models import OUTPUT_TITLES
from recfit.recommender import Recommender

__all__ = ["predict", "recommend", "similar"]

_console = Console()

RunArg = Annotated[
    Path, typer.Argument(help="A run directory written by recfit train, or a bundle folder.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _load(run: Path) -> Any:
    return Recommender.load(run)


def _fmt(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 100 else f"{x:,.0f}"


def _title(kind: str) -> str:
    return OUTPUT_TITLES.get(kind, kind)


def recommend(
    run: RunArg,
    user: Annotated[
        list[str] | None, typer.Option("--user", "-u", help="User id (repeat for several).")
    ] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Items per user.")] = 10,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="Also recommend the user's training items.")
    ] = False,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Every user, streamed to --out (Parquet).")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Parquet file for --all-users.")
    ] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Users per chunk.")] = 1024,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Unknown users, or --rate with a family that cannot fold in, are an error "
            "(default: the popular list, saying why).",
        ),
    ] = False,
    rate: Annotated[
        list[str] | None,
        typer.Option(
            "--rate",
            "-r",
            help="A new user's rating ITEM=RATING, item by id or title (repeat): top-N by "
            "fold-in, the rated items excluded.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-N items of users (seen items excluded), of every user with --all-users, or of a
    new user described by a few ratings with --rate."""
    with errors():
        if out is not None and not all_users:
            raise ConfigError(
                f"expected --out only with --all-users (every user's list as Parquet), "
                f"received --out {out} without --all-users"
            )
        if rate:
            if user or all_users:
                raise ConfigError("expected either --rate or --user/--all-users, received both")
            rec = _load(run)
            r = rec.recommend_for_ratings(_ratings(rec, rate), n=n, exclude_rated=not include_seen)
            if strict and r.path != "fold_in":
                raise ConfigError(
                    f"expected a list folded in from the given ratings (--strict), received "
                    f"the popular fallback: {r.reason}"
                )
            if as_json:
                typer.echo(json.dumps(r.to_dict(), indent=2))
                return
            _show(r, f"top {n} for a new user ({len(rate)} ratings)", r.path)
            return
        if all_users:
            if out is None:
                raise ConfigError("expected --out FILE.parquet with --all-users, received none")
            if user:
                raise ConfigError("expected either --user or --all-users, received both")
            stats = _load(run).recommend_all(
                n, out, chunk_size=chunk_size, exclude_seen=not include_seen, with_titles=True
            )
            _console.print(
                f"wrote {stats['rows']:,} recommendations for {stats['users']:,} users to "
                f"{stats['path']} in {stats['seconds']:.1f} s"
            )
            return
        if not user:
            raise ConfigError("expected --user ID (or --all-users --out FILE), received none")
        rec = _load(run)
        res = rec.recommend(
            user,
            n=n,
            exclude_seen=not include_seen,
            on_unknown="error" if strict else "popular",
        )
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2))
            return
        for r in res:
            _show(r, f"top {n} for user {r.user}{' (seen excluded)' if not include_seen else ''}")


def _ratings(rec: Recommender, given: list[str]) -> list[tuple[Any, float]]:
    """``ITEM=RATING`` texts as (raw item id, rating) pairs (items by id or title)."""
    out = []
    for text in given:
        item, sep, value = text.rpartition("=")
        try:
            rating = float(value)
        except ValueError:
            rating = float("nan")
        if not sep or not item.strip() or rating != rating:
            raise ConfigError(f"expected --rate ITEM=RATING (a number), received {text!r}")
        out.append((rec.resolve_item(item.strip()), rating))
    return out


def _show(r: Any, title: str, path: str | None = None) -> None:
    """One :class:`~recfit.recommender.Recommendation` as a table, with its path and
    reason (``path``: shown even without a reason)."""
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("item", justify="right")
    table.add_column("title")
    table.add_column(_title(r.kind), justify="right")
    for k, s in enumerate(r.items, 1):
        table.add_row(str(k), str(s.id), s.title or "", _fmt(s.score))
    _console.print(table)
    if r.reason:
        _console.print(f"({r.path}: {r.reason})", style="yellow", markup=False)
    elif path is not None:
        _console.print(f"({path})", markup=False)


def similar(
    run: RunArg,
    item: Annotated[
        list[str] | None,
        typer.Option("--item", "-i", help="Item id or title (repeat for several)."),
    ] = None,
    user: Annotated[
        list[str] | None, typer.Option("--user", "-u", help="User id: similar users instead.")
    ] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Neighbours per query.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Items most similar to an item (by id or title), or users most similar to a user."""
    with errors():
        if bool(item) == bool(user):
            raise ConfigError("expected --item or --user (one of them), received " +
                              ("both" if item else "neither"))  # fmt: skip
        rec = _load(run)
        if item:
            res = rec.similar_items([rec.resolve_item(x) for x in item], n=n)
        else:
            res = rec.similar_users(user, n=n)
        if as_json:
            typer.echo(json.dumps(res.to_dict(), indent=2))
            return
        for r in res:
            label = f"{r.title} ({r.query})" if r.title else str(r.query)
            table = Table(title=f"{n} {res.kind}s most similar to {label}")
            table.add_column("#", justify="right")
            table.add_column(res.kind, justify="right")
            if res.kind == "item":
                table.add_column("title")
            direct = res.kind == "item" and rec.adapter.direct_item_similarity
            table.add_column("similarity" if direct else "cosine", justify="right")
            for k, s in enumerate(r.neighbours, 1):
                cells = [str(k), str(s.id)] + ([s.title or ""] if res.kind == "item" else [])
                table.add_row(*cells, f"{s.score:.3f}")
            if res.source:
                table.caption = f"answered by {res.source}"
            _console.print(table)


def predict(
    run: RunArg,
    user: Annotated[str, typer.Option("--user", "-u", help="User id.")],
    item: Annotated[
        list[str], typer.Option("--item", "-i", help="Item id or title (repeat for several).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Predicted rating (or, for a retrieval model, score) of a user for items (by id or
    title). Pairs whose user or item had no training ratings get the baseline, marked *."""
    with errors():
        rec = _load(run)
        ids = [rec.resolve_item(x) for x in item]
        res = rec.predictions(user, ids)
        if as_json:
            rows = [
                {
                    "user": user,
                    "item": i,
                    "title": rec.title(i),
                    "prediction": float(p),
                    "kind": res.kind,
                    "fallback": bool(f),
                    "reason": why,
                }
                for i, p, f, why in zip(ids, res.values, res.fallback, res.reasons, strict=True)
            ]
            typer.echo(json.dumps(rows, indent=2))
            return
        name = _title(res.kind)
        table = Table(title=f"{name}s of user {user}")
        table.add_column("item", justify="right")
        table.add_column("title")
        table.add_column(name, justify="right")
        notes = []
        for i, p, f, why in zip(ids, res.values, res.fallback, res.reasons, strict=True):
            table.add_row(str(i), rec.title(i) or "", f"{float(p):.3f}" + (" *" if f else ""))
            if f:
                notes.append(f"* item {i}: {why}")
        _console.print(table)
        for note in notes:
            _console.print(note, markup=False)
